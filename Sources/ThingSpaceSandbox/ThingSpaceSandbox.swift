// A local simulator of the ThingSpace endpoints the listener uses (token,
// session login/logout, list/register/deregister), on loopback, with
// callback delivery to registered listeners. For `make run`, the
// `sandbox` command, `thingspace.sandbox: true` and tests.
import Dispatch
import HTTP1
import HTTPServer
import Logging
import Synchronization
import ThingSpace

/// Usage: `let sandbox = ThingSpaceSandbox(configuration: .init(), logger: logger)`,
/// `try sandbox.start()`, point a `ConnectivityCallbacksClient` at
/// `sandbox.clientConfiguration` with `sandbox.credentials`, then `sandbox.stop()`.
public final class ThingSpaceSandbox: Sendable {
    public let configuration: SandboxConfiguration
    private let core: SandboxCore
    private let server: HTTPServer
    private let logger: Logger

    public init(configuration: SandboxConfiguration = SandboxConfiguration(), logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        let core = SandboxCore(configuration: configuration, logger: logger)
        self.core = core
        var serverConfiguration = configuration.server
        serverConfiguration.host = configuration.host
        serverConfiguration.port = configuration.port
        self.server = HTTPServer(configuration: serverConfiguration, handler: SandboxRequestHandler(core: core), logger: logger)
    }

    /// Starts listening; returns the bound port. Once only.
    @discardableResult
    public func start() throws(SandboxError) -> Int {
        try Self.validate(configuration)
        do {
            try server.start()
        } catch {
            throw .server(error)
        }
        let port = server.localPort ?? configuration.port
        logger.info(
            "ThingSpace sandbox listening",
            metadata: [
                "sandbox.base_url": "\(baseURL)", "sandbox.accounts": "\(configuration.accountNames)",
                "sandbox.deliver_samples": "\(configuration.deliverSamples)",
            ])
        return port
    }

    /// Stops serving (up to about 2 s) and stops delivering callbacks.
    public func stop() {
        core.deliverer.stop()
        let done = DispatchSemaphore(value: 0)
        server.shutdown(gracePeriod: .seconds(1)) { done.signal() }
        if done.wait(timeout: .now() + .seconds(3)) == .timedOut {
            logger.warning("ThingSpace sandbox did not stop within 3 s")
        }
        logger.info("ThingSpace sandbox stopped")
    }

    /// The bound port, once started.
    public var port: Int? { server.localPort }

    /// The base URL to give the client, e.g. `http://127.0.0.1:54321/api`
    /// (meaningful once started).
    public var baseURL: String {
        let port = server.localPort ?? configuration.port
        let host: String
        switch configuration.host {
        case "0.0.0.0", "": host = "127.0.0.1"
        case "::": host = "[::1]"
        case let literal where literal.contains(":"): host = "[\(literal)]"
        case let name: host = name
        }
        return "http://\(host):\(port)/api"
    }

    /// A client configuration pointing at this sandbox (other fields default).
    public var clientConfiguration: ThingSpaceClientConfiguration {
        var client = ThingSpaceClientConfiguration()
        client.baseURL = baseURL
        return client
    }

    /// The credentials the sandbox accepts.
    public var credentials: ThingSpaceCredentials { configuration.credentials }

    /// The first configured account name.
    public var accountName: String { configuration.accountNames.first ?? "" }

    // MARK: - Inspection

    /// Every request received (up to `recordLimit`), oldest first.
    public var journal: [SandboxJournalEntry] { core.store.state.withLock { $0.journal } }

    public func clearJournal() { core.store.state.withLock { $0.clearJournal() } }

    /// Listeners registered now, sorted by account and service.
    public var registrations: [SandboxRegistration] {
        core.store.state.withLock { Array($0.registrations.values) }
            .sorted { ($0.accountName, $0.serviceName) < ($1.accountName, $1.serviceName) }
    }

    /// Every delivery attempt (up to `recordLimit`), oldest first.
    public var deliveries: [SandboxDelivery] { core.store.state.withLock { $0.deliveries } }

    /// Whether five consecutive failed logins have locked the account.
    public var isLocked: Bool { core.store.state.withLock { $0.isLocked } }

    /// Consecutive failed logins so far.
    public var failedLoginCount: Int { core.store.state.withLock { $0.failedLogins } }

    // MARK: - Fault injection

    /// The next `count` requests to `route` get `status` (before any other
    /// check), with `body` if given, else a fitting error body (401: an
    /// expired session; 429, 5xx: a retry-later error).
    public func failNext(_ route: SandboxRoute, status: Int, count: Int = 1, body: String? = nil) {
        core.store.state.withLock { $0.failNext(route, status: status, count: count, body: body) }
    }

    /// Every session is refused from now on (as after 20 idle minutes).
    public func expireSessions() { core.store.state.withLock { $0.expireSessions() } }

    /// Every access token is refused from now on (as after an hour).
    public func expireTokens() { core.store.state.withLock { $0.expireTokens() } }

    /// The next `count` requests to `route` are answered only once all
    /// `count` are open at once, then together (or, if they never are, all
    /// held ones `timeout` after the first arrived, and holding stops).
    /// Replaces an earlier hold of `route`, answering what it held.
    public func holdNext(_ route: SandboxRoute, count: Int, timeout: Duration = .seconds(5)) {
        core.holds.holdNext(route, count: count, timeout: timeout)
    }

    /// The most requests to `route` held open at once since `holdNext` set
    /// its hold: `count` if that many were in flight together.
    public func maxHeldAtOnce(_ route: SandboxRoute) -> Int { core.holds.maxHeldAtOnce(route) }

    /// What Verizon support does for a locked account.
    public func unlockAccount() { core.store.state.withLock { $0.unlock() } }

    /// Sends one sample callback to the service's registered listener (with
    /// resends); false if none is registered.
    @discardableResult
    public func deliverSample(serviceName: String, accountName: String? = nil) -> Bool {
        core.deliverer.deliverSample(accountName: accountName ?? self.accountName, serviceName: serviceName)
    }

    private static func validate(_ configuration: SandboxConfiguration) throws(SandboxError) {
        if configuration.accountNames.isEmpty { throw .invalidConfiguration("accountNames is empty") }
        if configuration.maxCallbackThreshold < 1 { throw .invalidConfiguration("maxCallbackThreshold must be at least 1") }
        if configuration.maxFailedLogins < 1 { throw .invalidConfiguration("maxFailedLogins must be at least 1") }
        if configuration.recordLimit < 1 { throw .invalidConfiguration("recordLimit must be at least 1") }
        if configuration.deliveryTimeout <= .zero || configuration.resendInterval < .zero {
            throw .invalidConfiguration("deliveryTimeout must be positive and resendInterval not negative")
        }
        if let interval = configuration.sampleInterval, interval <= .zero {
            throw .invalidConfiguration("sampleInterval must be positive (or nil for one sample)")
        }
        if configuration.tokenLifetime <= .zero || configuration.sessionIdleLifetime <= .zero {
            throw .invalidConfiguration("tokenLifetime and sessionIdleLifetime must be positive")
        }
        for (service, templates) in configuration.sampleTemplates {
            for template in templates where !SampleCallbacks.isValidTemplate(template) {
                throw .invalidConfiguration("a sample template for \(service) is not a JSON object")
            }
        }
    }
}

/// The simulated service's state, behind one lock.
final class SandboxStore: Sendable {
    let state: Mutex<SandboxState>

    init(configuration: SandboxConfiguration) {
        state = Mutex(SandboxState(configuration: configuration))
    }
}

/// State and deliverer shared by the facade and the request handler.
final class SandboxCore: Sendable {
    let store: SandboxStore
    let deliverer: CallbackDeliverer
    let holds = RequestHolds()
    let logger: Logger
    let clock = ContinuousClock()

    init(configuration: SandboxConfiguration, logger: Logger) {
        let store = SandboxStore(configuration: configuration)
        self.store = store
        self.logger = logger
        self.deliverer = CallbackDeliverer(
            configuration: configuration, logger: logger,
            currentRegistration: { account, service in
                store.state.withLock { $0.registration(accountName: account, serviceName: service) }
            },
            record: { delivery in store.state.withLock { $0.record(delivery) } })
    }
}

struct SandboxRequestHandler: HTTPRequestHandler {
    let core: SandboxCore

    func handle(_ request: HTTPRequest, context: HTTPRequestContext, responder: HTTPResponder) {
        let now = core.clock.now
        let (response, event, locked) = core.store.state.withLock { state in
            let wasLocked = state.isLocked
            let (response, event) = state.handle(request, now: now)
            return (response, event, !wasLocked && state.isLocked)
        }
        let route = SandboxState.route(method: request.head.method, path: request.head.path).route
        core.holds.respond(route, response, with: responder)
        core.logger.debug(
            "Sandbox request",
            metadata: [
                "connection.id": "\(context.connectionID)", "http.method": "\(request.head.method)",
                "http.path": "\(request.head.path)", "http.status": "\(response.status.code)",
            ])
        if locked {
            core.logger.warning("Sandbox account locked after consecutive failed logins (unlockAccount() to reset)")
        }
        switch event {
        case let .registered(registration)?:
            core.logger.info(
                "Sandbox listener registered",
                metadata: [
                    "callback.service": "\(registration.serviceName)", "sandbox.account": "\(registration.accountName)",
                    "sandbox.url": "\(redactingUserInfo(registration.url))",
                ])
            core.deliverer.apply(.registered(registration))
        case let .deregistered(accountName, serviceName)?:
            core.logger.info(
                "Sandbox listener deregistered",
                metadata: [
                    "callback.service": "\(serviceName)", "sandbox.account": "\(accountName)",
                ])
            core.deliverer.apply(.deregistered(accountName: accountName, serviceName: serviceName))
        case nil:
            break
        }
    }
}
