// The listener's long-running parts, each started and stopped by the
// composition (ServiceComposition). A part that needs another (the callback
// server needs the store's writer) is given it and reads it once it is up:
// the order guarantees it is.
import CallbackStore
import Dispatch
import Foundation
import HTTPServer
import Logging
import PostgresStore
import SQLiteStore
import Synchronization

/// What a part makes in `start` and others read afterwards.
final class StartedValue<Value: Sendable>: Sendable {
    private let value = Mutex<Value?>(nil)
    func set(_ new: Value?) { value.withLock { $0 = new } }
    var current: Value? { value.withLock { $0 } }
    /// For parts that start later: the composition's order guarantees it.
    func required(by part: String) -> Value {
        guard let current else { preconditionFailure("\(part) started before the part it depends on") }
        return current
    }
}

/// What a backend gives the service once open: the one writer, which takes
/// callbacks and does maintenance, and how far its index trails (nil: it does not).
struct OpenedStore: Sendable {
    let intake: any CallbackIntake
    let maintenance: any CallbackMaintenance
    let indexLag: (@Sendable () -> (records: Int64, milliseconds: Int64))?
    /// A reader of its own for each part that reads (delivery, the consumer API).
    let makeReader: @Sendable () throws(CallbackStoreError) -> any CallbackReader
}

/// Opens the store; nothing is acknowledged without it. SQLite: the journal, with SQLite as its
/// index (recovering what the journal holds beyond the index first); a failed fsync is fatal
/// (`onFatal`: the process exits non-zero and systemd restarts it; the start-up scan recovers
/// from what is really on disk). PostgreSQL: connects and migrates, waiting up to
/// `connectPatience` for a server that is not up yet; an outage later is a 503 until it is back.
final class StorePart: ListenerPart {
    let name = "store"
    private let configuration: ListenerConfiguration.Storage
    private let metrics: ListenerMetrics
    private let logger: Logger
    private let onFatal: @Sendable (CallbackStoreError) -> Void
    let opened = StartedValue<OpenedStore>()
    static let connectPatience: Duration = .seconds(30)

    init(
        configuration: ListenerConfiguration.Storage, metrics: ListenerMetrics, logger: Logger,
        onFatal: @escaping @Sendable (CallbackStoreError) -> Void
    ) {
        self.configuration = configuration
        self.metrics = metrics
        self.logger = logger
        self.onFatal = onFatal
    }

    /// The PostgreSQL connection settings (`storage.postgresql`), when that is the backend.
    var postgreSQLSettings: PostgreSQLSettings? { configuration.postgreSQLSettings }

    func start() async throws(ListenerError) {
        switch configuration.backend {
        case .sqlite: try openJournal()
        case .postgresql: try await openPostgreSQL()
        }
    }

    private func openJournal() throws(ListenerError) {
        let store: JournalStore
        do {
            store = try JournalStore(
                databasePath: configuration.path, capacity: configuration.queueCapacity, logger: logger,
                observer: { [metrics] event in
                    switch event {
                    case .committed(let size, let duration): metrics.committed(batchSize: size, duration: duration)
                    case .indexed(_, let duplicates): metrics.duplicatesIndexed(duplicates)
                    case .failed: break
                    }
                },
                onFatal: onFatal)
        } catch {
            throw .storeUnavailable("\(configuration.path): \(error)")
        }
        opened.set(
            OpenedStore(
                intake: store, maintenance: store, indexLag: { store.indexLag },
                makeReader: { () throws(CallbackStoreError) in try store.reader() }))
    }

    private func openPostgreSQL() async throws(ListenerError) {
        guard let settings = postgreSQLSettings else { throw .storeUnavailable("storage.postgresql.url is not set") }
        let deadline = ContinuousClock.now + Self.connectPatience
        var delay: Duration = .milliseconds(250)
        while true {
            do {
                let store = try PostgreSQLCallbackStore(
                    settings: settings, capacity: configuration.queueCapacity,
                    writers: configuration.postgresql?.writers ?? ListenerConfiguration.Storage.PostgreSQL.defaultWriters, logger: logger,
                    observer: { [metrics] event in
                        if case .committed(let size, let duration) = event { metrics.committed(batchSize: size, duration: duration) }
                    })
                opened.set(
                    OpenedStore(
                        intake: store, maintenance: store, indexLag: nil,
                        makeReader: { () throws(CallbackStoreError) in try store.reader() }))
                logger.info("storing callbacks in PostgreSQL", metadata: ["storage.postgresql": "\(settings)"])
                return
            } catch {
                guard case .unavailable = error, ContinuousClock.now + delay < deadline, !Task.isCancelled else {
                    throw .storeUnavailable("\(settings): \(error)")
                }
                logger.warning("PostgreSQL is not answering yet; retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
    }

    func stop() {
        opened.current?.intake.close()
    }
}

extension ListenerConfiguration.Storage {
    /// libpq's settings for `storage.postgresql` (the password given apart from the URL), or nil.
    public var postgreSQLSettings: PostgreSQLSettings? {
        postgresql.map { PostgreSQLSettings(url: $0.url, password: $0.password?.value) }
    }
}

/// Deletes old callbacks hourly (`storage.retentionDays`).
final class RetentionPart: ListenerPart {
    let name = "retention"
    private let configuration: ListenerConfiguration.Storage
    private let store: StorePart
    private let logger: Logger
    // Dispatch sources are made in `start`: releasing one never resumed traps.
    private let sweeper = StartedValue<RetentionSweeper>()

    private let coordination: CoordinationPart?

    /// With `coordination`, only the leading instance sweeps.
    init?(configuration: ListenerConfiguration.Storage, store: StorePart, coordination: CoordinationPart?, logger: Logger) {
        guard configuration.retentionDays > 0 else { return nil }
        self.configuration = configuration
        self.store = store
        self.coordination = coordination
        self.logger = logger
    }

    func start() {
        let maintenance = store.opened.required(by: name).maintenance
        let isLeader: @Sendable () -> Bool = { [coordination] in coordination?.isLeader ?? true }
        sweeper.set(RetentionSweeper(configuration: configuration, maintenance: maintenance, isLeader: isLeader, logger: logger))
        sweeper.current?.start()
    }

    func stop() { sweeper.current?.stop() }
}

/// The callback port: the intake handler behind the strict HTTP server.
final class CallbackServerPart: ListenerPart {
    let name = "callback server"
    private let configuration: ListenerConfiguration
    private let store: StorePart
    private let metrics: ListenerMetrics
    private let logger: Logger
    private let socket: Int32?
    let server = StartedValue<HTTPServer>()
    let handler = StartedValue<CallbackHandler>()
    private let draining = Atomic<Bool>(false)
    private let started = Atomic<Bool>(false)

    /// - Parameter socket: a listening socket passed by systemd, if any.
    init(configuration: ListenerConfiguration, store: StorePart, metrics: ListenerMetrics, socket: Int32?, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.metrics = metrics
        self.socket = socket
        self.logger = logger
    }

    /// The bound port, once listening (useful with port 0).
    var localPort: Int? { server.current?.localPort }

    /// Accepting and not draining.
    var isServing: Bool { started.load(ordering: .relaxed) && !draining.load(ordering: .relaxed) }

    func start() throws(ListenerError) {
        let handler = CallbackHandler(
            pathPrefix: configuration.http.pathPrefix, policy: IntakePolicy(configuration.callbacks),
            writer: store.opened.required(by: name).intake, metrics: metrics, logger: logger
        )
        self.handler.set(handler)
        let server = HTTPServer(configuration: configuration.serverConfiguration, handler: handler, logger: logger)
        self.server.set(server)
        do {
            if let socket { try server.start(listeningSockets: [socket]) } else { try server.start() }
        } catch {
            throw .listenFailed("\(configuration.http.host):\(configuration.http.port): \(error)")
        }
        started.store(true, ordering: .relaxed)
        logger.info(
            "listening for callbacks",
            metadata: [
                "listener.address":
                    "\(socket == nil ? "\(configuration.http.host):\(server.localPort ?? configuration.http.port)" : "systemd socket")",
                "listener.path": "\(configuration.http.pathPrefix)/{\(configuration.callbacks.services.joined(separator: ","))}",
            ]
        )
        if configuration.callbacks.username == nil && configuration.callbacks.allowedSources.isEmpty {
            logger.warning(
                "callbacks.username/password and callbacks.allowedSources are not set: anyone who can reach the port can store callbacks"
            )
        }
    }

    /// Stops accepting and lets in-flight requests finish, within `http.shutdownGracePeriod`.
    func stop() async {
        draining.store(true, ordering: .relaxed)
        guard let server = server.current else { return }
        let grace = Duration.milliseconds(Int(configuration.http.shutdownGracePeriod * 1000))
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            server.shutdown(gracePeriod: grace) { done.resume() }
        }
    }
}

/// `/healthz`, `/readyz`, `/metrics` on their own port. Health and metrics
/// are for operators: a port that cannot be bound is logged, and callbacks
/// are served anyway. Started before the callback server and stopped after it,
/// so that `/healthz` reports the drain.
final class AdminServerPart: ListenerPart {
    let name = "admin server"
    private let configuration: ListenerConfiguration.Admin
    private let socket: Int32?
    private let logger: Logger
    let server: HTTPServer
    private let up = Atomic<Bool>(false)

    init(configuration: ListenerConfiguration.Admin, handler: AdminHandler, socket: Int32?, logger: Logger) {
        self.configuration = configuration
        self.socket = socket
        self.logger = logger
        var serverConfiguration = HTTPServerConfiguration()
        serverConfiguration.host = configuration.host
        serverConfiguration.port = configuration.port
        serverConfiguration.maxConnections = 64
        server = HTTPServer(configuration: serverConfiguration, handler: handler, logger: logger)
    }

    func start() {
        do {
            if let socket { try server.start(listeningSockets: [socket]) } else { try server.start() }
            up.store(true, ordering: .relaxed)
            logger.info("admin listener up", metadata: ["listener.address": "\(configuration.host):\(server.localPort ?? 0)"])
        } catch {
            logger.error("admin listener not started: \(error)")
        }
    }

    func stop() async {
        guard up.load(ordering: .relaxed) else { return }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            server.shutdown(gracePeriod: .seconds(1)) { done.resume() }
        }
    }
}

/// systemd's watchdog, pinged while the accept loop and the writer progress.
final class WatchdogPart: ListenerPart {
    let name = "watchdog"
    private let make: @Sendable () -> Watchdog?
    private let watchdog = StartedValue<Watchdog>()

    init(notifier: SystemdNotifier, environment: [String: String], server: CallbackServerPart, store: StorePart, logger: Logger) {
        make = {
            Watchdog(
                notifier: notifier, environment: environment, server: server.server.required(by: "watchdog"),
                writer: store.opened.required(by: "watchdog").intake, logger: logger)
        }
    }

    func start() {
        watchdog.set(make())
        watchdog.current?.start()
    }

    func stop() { watchdog.current?.stop() }
}

/// `STATUS=` for systemd every 5 s, and the open-connections gauge.
/// `timer` is set in `start` and read in `stop`, which the composition orders.
final class StatusReporterPart: ListenerPart, @unchecked Sendable {
    let name = "status reporter"
    private var timer: (any DispatchSourceTimer)?
    private let server: CallbackServerPart
    private let registrar: RegistrarPart
    private let coordination: CoordinationPart?
    private let notifier: SystemdNotifier
    private let metrics: ListenerMetrics

    init(
        notifier: SystemdNotifier, server: CallbackServerPart, registrar: RegistrarPart, coordination: CoordinationPart?,
        metrics: ListenerMetrics
    ) {
        self.server = server
        self.registrar = registrar
        self.coordination = coordination
        self.notifier = notifier
        self.metrics = metrics
    }

    func start() {
        let server = server.server.required(by: name)
        let timer = DispatchSource.makeTimerSource(queue: .global(qos: .utility))
        timer.setEventHandler { [registrar, coordination, notifier, metrics] in
            metrics.setOpenConnections(server.openConnections)
            let role = coordination.map { $0.isLeader ? "; leading instance" : "; standing by (another instance leads)" } ?? ""
            notifier.notify("STATUS=Serving callbacks; \(registrar.stateDescription); \(server.openConnections) connections open\(role)")
        }
        timer.schedule(deadline: .now() + 5, repeating: 5)
        timer.resume()
        self.timer = timer
    }

    func stop() { timer?.cancel() }
}

/// `thingspace.sandbox: true`: a ThingSpace simulator in this process, for the registrar to talk to.
final class SandboxPart: ListenerPart {
    let name = "sandbox"
    private let configuration: ListenerConfiguration
    private let server: CallbackServerPart
    private let logger: Logger
    let host = StartedValue<SandboxHost>()

    init(configuration: ListenerConfiguration, server: CallbackServerPart, logger: Logger) {
        self.configuration = configuration
        self.server = server
        self.logger = logger
    }

    func start() throws {
        host.set(try SandboxHost(configuration: configuration, listenerPort: server.localPort, logger: logger))
    }

    func stop() { host.current?.stop() }
}

/// Registers with ThingSpace (or the sandbox) in the background; deregisters at stop.
final class RegistrarPart: ListenerPart {
    let name = "registrar"
    private let configuration: ListenerConfiguration
    private let sandbox: SandboxPart?
    private let coordination: CoordinationPart?
    private let metrics: ListenerMetrics
    private let logger: Logger
    let registrar = StartedValue<Registrar>()
    /// Fixed before start: whether `/readyz` waits for registration.
    let isEnabled: Bool

    /// With `coordination` (several instances on one database), only the leader registers, from
    /// the moment it leads; the last instance to stop deregisters.
    init(
        configuration: ListenerConfiguration, sandbox: SandboxPart?, coordination: CoordinationPart?, metrics: ListenerMetrics,
        logger: Logger
    ) {
        self.configuration = configuration
        self.sandbox = sandbox
        self.coordination = coordination
        self.metrics = metrics
        self.logger = logger
        isEnabled = sandbox != nil || configuration.thingspace.registrationEnabled
    }

    func start() {
        var thingspace = configuration.thingspace
        if let sandbox { thingspace = sandbox.host.required(by: name).thingspaceSettings(overriding: thingspace) }
        let registrar = Registrar.make(thingspace: thingspace, callbacks: configuration.callbacks, metrics: metrics, logger: logger)
        self.registrar.set(registrar)
        guard let registrar else { return }
        if let coordination {
            coordination.onLeadershipChange { leading in if leading { registrar.start() } }
        } else {
            registrar.start()
        }
    }

    func stop() async {
        guard let registrar = registrar.current else { return }
        guard let coordination else { return await registrar.stop() }
        switch coordination.otherInstancesAlive() {
        case 0?: await registrar.stop(releasing: .every)
        case let others?: await registrar.stop(releasing: .nothing(reason: "\(others) other instance(s) on the database still run"))
        case nil: await registrar.stop(releasing: .nothing(reason: "the database cannot say whether other instances run"))
        }
    }

    /// A follower leaves registration to the leader: it counts as registered for readiness.
    var isRegistered: Bool {
        if let coordination, !coordination.isLeader { return true }
        return registrar.current?.isRegistered ?? false
    }
    var stateDescription: String {
        guard isEnabled else { return "registration off" }
        if let coordination, !coordination.isLeader { return "registration left to the leading instance" }
        return registrar.current?.stateDescription ?? "registering"
    }
}

/// READY=1 once everything before it is up; STOPPING=1 as the shutdown begins
/// (the last part is the first to stop).
final class ReadinessPart: ListenerPart {
    let name = "readiness"
    private let notifier: SystemdNotifier
    private let registrar: RegistrarPart
    private let stopping = Atomic<Bool>(false)

    init(notifier: SystemdNotifier, registrar: RegistrarPart) {
        self.notifier = notifier
        self.registrar = registrar
    }

    func start() {
        notifier.notify(
            "READY=1\nSTATUS=Serving callbacks; \(registrar.isEnabled ? "registering" : "registration off")\nMAINPID=\(getpid())")
    }

    /// Also said early, by the signal handler, so that systemd knows at once.
    func announceStopping() {
        guard !stopping.exchange(true, ordering: .relaxed) else { return }
        notifier.notify("STOPPING=1\nSTATUS=Stopping: deregistering, then draining")
    }

    func stop() { announceStopping() }
}
