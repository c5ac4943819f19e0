import Foundation
import HTTPClient
import Logging
import Synchronization
import ThingSpace
import Vocabulary

/// Keeps this listener registered with ThingSpace for every configured
/// service. Start-up: for each service, List; keep a registration with our URL
/// and credentials, otherwise Deregister what is there and Register ours,
/// retrying in the background with backoff until success or shutdown. A
/// login refused for its credentials stops the attempts (five failed logins
/// lock the account). Shutdown: Deregister what we hold, bounded in time.
final class Registrar: Sendable {
    enum ServiceState: Sendable, Equatable {
        case pending, registered
        case failed(String)
        case deregistered
    }

    private let accountName: String
    private let targets: [(service: String, request: RegisterCallbackRequest)]
    private let client: ConnectivityCallbacksClient
    private let shutdownClient: ConnectivityCallbacksClient
    /// Live: a reload may change it before a rolling restart.
    private let deregisterOnShutdown: Atomic<Bool>
    private let metrics: ListenerMetrics
    private let logger: Logger

    private struct State {
        var services: [String: ServiceState] = [:]
        var stopping = false
        var gaveUp = false
    }
    private let state = Mutex(State())
    /// Wakes the backoff sleep early at shutdown.
    private let wake = NSCondition()
    private let finished = DispatchSemaphore(value: 0)
    private let started = Atomic<Bool>(false)

    /// What `stop` deregisters.
    enum Release: Sendable {
        /// What this process registered (one instance alone).
        case held
        /// Every configured service: the last of several instances, whichever of them registered.
        case every
        /// Nothing: other instances still receive callbacks at the registered URL.
        case nothing(reason: String)
    }

    /// The registrar for these settings (the sandbox's, when it runs), or nil
    /// (with one log line saying how to turn it on) when registration is off.
    static func make(
        thingspace: ListenerConfiguration.ThingSpace, callbacks: ListenerConfiguration.Callbacks, metrics: ListenerMetrics, logger: Logger
    ) -> Registrar? {
        guard thingspace.registrationEnabled else {
            logger.notice(
                "registration with ThingSpace is off: set thingspace.accountName, clientID, clientSecret, username, password and callbackBaseURL (or thingspace.sandbox: true to try it locally)"
            )
            metrics.setRegistrationState(.off)
            return nil
        }
        guard let accountName = thingspace.accountName, let clientID = thingspace.clientID,
            let clientSecret = thingspace.clientSecret, let username = thingspace.username, let password = thingspace.password,
            let base = thingspace.callbackBaseURL
        else {
            logger.error("registration is on but ThingSpace credentials are incomplete; registration is off")
            metrics.setRegistrationState(.off)
            return nil
        }
        let credentials = ThingSpaceCredentials(
            clientID: clientID, clientSecret: clientSecret.value, username: username, password: password.value)
        var clientConfiguration = ThingSpaceClientConfiguration()
        clientConfiguration.baseURL = thingspace.baseURL
        clientConfiguration.totalTimeout = .seconds(10)
        var shutdownConfiguration = clientConfiguration
        shutdownConfiguration.maxAttempts = 2
        shutdownConfiguration.retryBaseDelay = .milliseconds(250)
        let targets = callbacks.services.map { service in
            (
                service,
                RegisterCallbackRequest(
                    name: service, url: (base.hasSuffix("/") ? String(base.dropLast()) : base) + "/" + service,
                    username: callbacks.username, password: callbacks.password?.value
                )
            )
        }
        return Registrar(
            accountName: accountName, targets: targets,
            client: ConnectivityCallbacksClient(configuration: clientConfiguration, credentials: credentials, logger: logger),
            shutdownClient: ConnectivityCallbacksClient(configuration: shutdownConfiguration, credentials: credentials, logger: logger),
            deregisterOnShutdown: thingspace.deregisterOnShutdown, metrics: metrics, logger: logger
        )
    }

    private init(
        accountName: String, targets: [(service: String, request: RegisterCallbackRequest)],
        client: ConnectivityCallbacksClient, shutdownClient: ConnectivityCallbacksClient, deregisterOnShutdown: Bool,
        metrics: ListenerMetrics, logger: Logger
    ) {
        self.accountName = accountName
        self.targets = targets
        self.client = client
        self.shutdownClient = shutdownClient
        self.deregisterOnShutdown = Atomic(deregisterOnShutdown)
        self.metrics = metrics
        self.logger = logger
        state.withLock { state in for target in targets { state.services[target.service] = .pending } }
    }

    func setDeregisterOnShutdown(_ value: Bool) { deregisterOnShutdown.store(value, ordering: .relaxed) }

    var isRegistered: Bool { state.withLock { $0.services.values.allSatisfy { $0 == .registered } } }

    var stateDescription: String {
        state.withLock { state in
            let registered = state.services.values.filter { $0 == .registered }.count
            if state.gaveUp { return "registration stopped (credentials refused)" }
            return "registered \(registered)/\(state.services.count) services"
        }
    }

    /// Registers every service on a background thread (blocking libcurl calls).
    func start() {
        guard !started.exchange(true, ordering: .relaxed) else { return }
        metrics.setRegistrationState(.registering)
        let thread = Thread { [self] in
            registerAll()
            finished.signal()
        }
        thread.name = "thingspace-registrar"
        thread.start()
    }

    /// Until every service is registered or the service stops: never gives up on its own.
    static let retryPolicy = RetryPolicy.unlimited(baseDelay: .seconds(1), maxDelay: .seconds(60))

    private func registerAll() {
        var failures = 0
        while true {
            let delay = Self.retryPolicy.nextDelay(afterFailures: failures + 1, retryAfter: nil) ?? Self.retryPolicy.maxDelay
            var pending = false
            for target in targets where state.withLock({ $0.services[target.service] != .registered }) {
                if isStopping { return }
                do throws(ThingSpaceError) {
                    try ensureRegistered(target.service, target.request)
                    setState(target.service, .registered)
                } catch {
                    pending = true
                    setState(target.service, .failed(error.description))
                    if case .invalidCredentials = error {
                        state.withLock { $0.gaveUp = true }
                        metrics.setRegistrationState(.failed)
                        logger.error("registration stopped: \(error)")
                        return
                    }
                    logger.warning(
                        "registration failed; will retry",
                        metadata: [
                            "callback.service": "\(target.service)", "error": "\(error)",
                            "registration.retry_in_seconds": "\(delay.components.seconds)",
                        ])
                }
            }
            if !pending {
                metrics.setRegistrationState(.registered)
                logger.info(
                    "registered with ThingSpace", metadata: ["registration.services": "\(targets.map(\.service).joined(separator: ","))"])
                return
            }
            metrics.setRegistrationState(.failed)
            // The shared backoff (exponential, equal jitter, at most a minute); shutdown wakes it.
            failures += 1
            wake.lock()
            if !isStopping { _ = wake.wait(until: Date(timeIntervalSinceNow: delay.inSeconds)) }
            wake.unlock()
            if isStopping { return }
        }
    }

    /// List; keep an identical registration; otherwise replace it with ours.
    private func ensureRegistered(_ service: String, _ request: RegisterCallbackRequest) throws(ThingSpaceError) {
        let existing = try client.list(accountName: accountName).filter { $0.serviceName == service }
        if existing.contains(where: { Self.matches($0, request) }) {
            logger.info(
                "registration already in place; kept",
                metadata: ["callback.service": "\(service)", "registration.url": "\(redactingUserInfo(request.url))"])
            return
        }
        // Shutdown started while listing: register nothing that would then outlive us.
        guard !isStopping else { throw .network("stopping") }
        if !existing.isEmpty {
            logger.info(
                "replacing another registration",
                metadata: [
                    "callback.service": "\(service)", "registration.previous_url": "\(redactingUserInfo(existing.first?.url ?? ""))",
                ]
            )
            _ = try client.deregister(accountName: accountName, serviceName: service)
        }
        guard !isStopping else { throw .network("stopping") }
        _ = try client.register(accountName: accountName, request: request)  // the client logs it
    }

    static func matches(_ existing: ConnectivityManagementCallback, _ ours: RegisterCallbackRequest) -> Bool {
        func normalized(_ value: String?) -> String { value ?? "" }
        return normalized(existing.url) == ours.url && normalized(existing.username) == normalized(ours.username)
            && normalized(existing.password) == normalized(ours.password)
    }

    /// Stops registering and, when configured, deregisters what this process
    /// holds: about 10 s a call and 30 s in all (waiting for a call in flight
    /// included), then gives up so that shutdown goes on.
    func stop(releasing release: Release = .held) async {
        let deadline = DispatchTime.now() + 30
        state.withLock { $0.stopping = true }
        wakeRegistrationThread()
        // A call in flight may still complete a registration: let it land first
        // (libcurl's 10 s timeout bounds each call) so that we deregister it too.
        if started.load(ordering: .relaxed) { await wait(for: finished, until: min(deadline, .now() + 12)) }
        let held: [String]
        switch release {
        case .held: held = state.withLock { state in targets.map(\.service).filter { state.services[$0] == .registered } }
        case .every: held = targets.map(\.service)
        case .nothing(let reason):
            logger.notice("leaving registrations in place (\(reason))")
            return
        }
        guard deregisterOnShutdown.load(ordering: .relaxed), !held.isEmpty else {
            if !held.isEmpty { logger.notice("leaving registrations in place (thingspace.deregisterOnShutdown is false)") }
            return
        }
        let done = DispatchSemaphore(value: 0)
        let thread = Thread { [self] in
            for service in held where DispatchTime.now() < deadline {
                do throws(ThingSpaceError) {
                    _ = try shutdownClient.deregister(accountName: accountName, serviceName: service)
                    setState(service, .deregistered)  // the client logs it
                } catch {
                    logger.error("deregistration failed", metadata: ["callback.service": "\(service)", "error": "\(error)"])
                }
            }
            if DispatchTime.now() < deadline { try? shutdownClient.logout() }
            done.signal()
        }
        thread.name = "thingspace-deregistrar"
        thread.start()
        let completed = await wait(for: done, until: deadline)
        if !completed { logger.error("deregistration did not finish within 30 s; stopping anyway") }
        metrics.setRegistrationState(.deregistered)
    }

    /// Waits for `semaphore` without blocking the caller's task; false on timeout.
    @discardableResult
    private func wait(for semaphore: DispatchSemaphore, until deadline: DispatchTime) async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            DispatchQueue.global().async {
                continuation.resume(returning: semaphore.wait(timeout: deadline) == .success)
            }
        }
    }

    private func wakeRegistrationThread() {
        wake.lock()
        wake.broadcast()
        wake.unlock()
    }

    private var isStopping: Bool { state.withLock { $0.stopping } }

    private func setState(_ service: String, _ new: ServiceState) {
        state.withLock { $0.services[service] = new }
    }
}
