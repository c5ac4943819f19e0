import CallbackStore
import Foundation
import HTTPServer
import Logging
import ServiceLifecycle
import Synchronization

/// Why `serve` could not start. One line each, naming what to fix.
public enum ListenerError: Error, CustomStringConvertible {
    case storeUnavailable(String)
    case listenFailed(String)
    case partFailed(String, String)

    public var description: String {
        switch self {
        case .storeUnavailable(let message): return "cannot open the store: \(message)"
        case .listenFailed(let message): return "cannot listen: \(message)"
        case .partFailed(let part, let message): return "\(part) failed: \(message)"
        }
    }
}

/// The `serve` composition. Started in this order, stopped in reverse:
/// store writer → coordination (PostgreSQL: heartbeat, leader lease) → retention → delivery → admin server → callback server →
/// consumer API (when `api.enabled`) → watchdog → status reporter → sandbox
/// (when configured) → registrar → readiness (READY=1). At the stop:
/// STOPPING=1, deregistration, the consumer API's long polls answered and
/// streams ended, the drain, delivery ends its attempts in flight, then the
/// store is flushed. Signals (one sequence: SIGTERM/SIGINT
/// stop, SIGHUP reloads) are handled beside the parts when `signals` is given;
/// in-process callers use `stop()` and `reload()` instead.
public final class ListenerService: Sendable {
    private let configuration: ListenerConfiguration
    private let logger: Logger
    private let composition: ServiceComposition
    private let reloader: LiveReload
    private let signals: ProcessSignals?
    private let callbackServer: CallbackServerPart
    private let consumerAPI: ConsumerAPIPart?
    private let adminServer: AdminServerPart?
    private let sandbox: SandboxPart?
    private let readiness: ReadinessPart
    let metrics: ListenerMetrics

    /// - Parameters:
    ///   - reload: reads the configuration afresh (SIGHUP).
    ///   - logLevel: the logging bootstrap's level, which a reload changes.
    ///   - signals: trapped before this is made, so none is lost during start-up; nil in process.
    ///   - onStoreFailure: what a fatal store failure does; nil: exit with `storeFailureExitStatus`.
    public init(
        configuration: ListenerConfiguration,
        reload: @escaping @Sendable () async throws(ConfigurationError) -> ListenerConfiguration,
        logger: Logger,
        logLevel: LogLevelControl? = nil,
        signals: ProcessSignals? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        onStoreFailure: (@Sendable () -> Void)? = nil
    ) {
        self.configuration = configuration
        self.logger = logger
        self.signals = signals
        let notifier = SystemdNotifier(environment: environment)
        let metrics = ListenerMetrics(services: configuration.callbacks.services)
        self.metrics = metrics
        let passed = SystemdNotifier.listeningSockets(environment: environment)

        // A failed fsync is fatal (PostgreSQL's data_sync_retry = off): the store has answered 503
        // to everything not acknowledged; give those answers a second to leave, then exit non-zero
        // so that systemd restarts the service and the start-up scan recovers from the disk.
        let onFatal: @Sendable (CallbackStoreError) -> Void = { _ in
            if let onStoreFailure {
                onStoreFailure()
            } else {
                DispatchQueue.global().asyncAfter(deadline: .now() + 1) { exit(ListenerService.storeFailureExitStatus) }
            }
        }
        let store = StorePart(configuration: configuration.storage, metrics: metrics, logger: logger, onFatal: onFatal)
        // Several instances on one PostgreSQL: one leads (registration, retention, feeding deliveries).
        let coordination = store.postgreSQLSettings.map { CoordinationPart(settings: $0, metrics: metrics, logger: logger) }
        if coordination == nil { metrics.setLeader(true) }
        // The delivery ledger fails stop as the store does.
        let deliveryMetrics = DeliveryMetrics(registry: metrics.registry)
        let delivery = DeliveryPart(
            configuration: configuration, store: store, coordination: coordination, metrics: deliveryMetrics, logger: logger,
            onFatal: onFatal)
        let callbackServer = CallbackServerPart(
            configuration: configuration, store: store, metrics: metrics,
            socket: passed.first(where: { $0.name != "admin" })?.descriptor, logger: logger
        )
        let sandbox =
            configuration.thingspace.sandbox ? SandboxPart(configuration: configuration, server: callbackServer, logger: logger) : nil
        let registrar = RegistrarPart(
            configuration: configuration, sandbox: sandbox, coordination: coordination, metrics: metrics, logger: logger)
        if !registrar.isEnabled { metrics.setRegistrationState(.off) }
        let readiness = ReadinessPart(notifier: notifier, registrar: registrar)

        var adminServer: AdminServerPart?
        if configuration.admin.enabled {
            let isRegistered: (@Sendable () -> Bool)? = registrar.isEnabled ? { @Sendable in registrar.isRegistered } : nil
            let probes = AdminHandler.Probes(
                isServing: { callbackServer.isServing },
                isStoreWritable: { !(store.opened.current?.intake.isFailing ?? true) },
                isRegistered: isRegistered,
                indexLag: { store.opened.current?.indexLag?() },
                deliveries: {
                    let statuses = delivery.statuses
                    deliveryMetrics.record(statuses)
                    return statuses
                }
            )
            adminServer = AdminServerPart(
                configuration: configuration.admin, handler: AdminHandler(metrics: metrics, probes: probes),
                socket: passed.first(where: { $0.name == "admin" })?.descriptor, logger: logger
            )
        }

        var parts: [any ListenerPart] = [store]
        if let coordination { parts.append(coordination) }
        if let retention = RetentionPart(configuration: configuration.storage, store: store, coordination: coordination, logger: logger) {
            parts.append(retention)
        }
        // Before the callback port opens: a new destination starts at the newest callback stored
        // before it, so none that arrives afterwards can be missed.
        parts.append(delivery)
        if let adminServer { parts.append(adminServer) }
        parts.append(callbackServer)
        let consumerAPI = ConsumerAPIPart(configuration: configuration, store: store, metrics: metrics, logger: logger)
        if let consumerAPI { parts.append(consumerAPI) }
        parts.append(WatchdogPart(notifier: notifier, environment: environment, server: callbackServer, store: store, logger: logger))
        parts.append(
            StatusReporterPart(
                notifier: notifier, server: callbackServer, registrar: registrar, coordination: coordination, metrics: metrics))
        if let sandbox { parts.append(sandbox) }
        parts.append(registrar)
        parts.append(readiness)

        composition = ServiceComposition(parts: parts, companions: signals.map { [$0] } ?? [], logger: logger)
        reloader = LiveReload(
            running: configuration, read: reload, handler: callbackServer.handler, registrar: registrar, delivery: delivery,
            logLevel: logLevel, notifier: notifier, logger: logger
        )
        self.callbackServer = callbackServer
        self.consumerAPI = consumerAPI
        self.adminServer = adminServer
        self.sandbox = sandbox
        self.readiness = readiness
    }

    /// Runs every part until `stop()` or a stop signal; throws when a part
    /// could not start (the ones already started are stopped first).
    public func run() async throws(ListenerError) {
        for ignored in [SIGPIPE, SIGXFSZ] { signal(ignored, SIG_IGN) }  // EPIPE and EFBIG come back as errors instead
        signals?.handle(
            with: ProcessSignals.Handlers(
                stop: { [self] name in
                    logger.info("stopping", metadata: ["process.signal": "\(name)"])
                    readiness.announceStopping()
                    await composition.shutdown()
                },
                serving: { [composition] in await composition.waitUntilStarted() },
                reload: { [reloader] in await reloader.reload() }
            )
        )
        do {
            try await composition.run()
        } catch let failure as PartFailedToStart {
            if let error = failure.underlying as? ListenerError { throw error }
            throw .partFailed(failure.part, "\(failure.underlying)")
        } catch {
            throw .partFailed("service", "\(error)")
        }
        logger.info("stopped")
    }

    /// Waits until every part is up: true, or false when start-up failed or was stopped.
    public func waitUntilServing() async -> Bool { await composition.waitUntilStarted() }

    /// Stops gracefully, as SIGTERM does.
    public func stop() async {
        readiness.announceStopping()
        await composition.shutdown()
    }

    /// Re-reads the configuration and applies what can change live, as SIGHUP does.
    public func reload() async { await reloader.reload() }

    /// The callback port actually bound (useful with port 0), once listening.
    public var callbackPort: Int? { callbackServer.localPort }

    /// The exit status after a fatal store failure (EX_TEMPFAIL): systemd restarts on it.
    public static let storeFailureExitStatus: Int32 = 75
    /// The consumer API's port, once listening (nil when `api.enabled` is false).
    public var consumerAPIPort: Int? { consumerAPI?.localPort }
    /// The admin port, once listening.
    public var adminPort: Int? { adminServer?.server.localPort }
    /// The in-process sandbox, when it runs.
    var sandboxHost: SandboxHost? { sandbox?.host.current }
}
