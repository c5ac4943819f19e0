import CallbackStore
import Dispatch
import Foundation
import HTTP1
import HTTPServer
import Logging
import Synchronization
import Vocabulary

/// Why `serve` could not start. One line each, naming what to fix.
public enum ListenerError: Error, CustomStringConvertible {
    case storeUnavailable(String)
    case listenFailed(String)

    public var description: String {
        switch self {
        case .storeUnavailable(let message): return "cannot open the store: \(message)"
        case .listenFailed(let message): return "cannot listen: \(message)"
        }
    }
}

/// The `serve` lifecycle, in order: open the store → listen (or adopt
/// systemd's sockets) → READY=1 → register with ThingSpace in the background.
/// On SIGTERM/SIGINT, in reverse: STOPPING=1 → deregister (bounded) → stop
/// accepting and drain in-flight requests (bounded) → flush the store → return.
/// SIGHUP reloads what can change live.
public final class ListenerService: Sendable {
    private let configuration: ListenerConfiguration
    private let reload: @Sendable () async throws(ConfigurationError) -> ListenerConfiguration
    private let logger: Logger
    private let notifier: SystemdNotifier
    private let environment: [String: String]
    private let draining = Atomic<Bool>(false)
    /// The callback port actually bound (useful with port 0), once listening.
    public let boundPort = Mutex<Int?>(nil)

    public init(
        configuration: ListenerConfiguration,
        reload: @escaping @Sendable () async throws(ConfigurationError) -> ListenerConfiguration,
        logger: Logger,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) {
        self.configuration = configuration
        self.reload = reload
        self.logger = logger
        self.environment = environment
        self.notifier = SystemdNotifier(environment: environment)
    }

    public func run() async throws(ListenerError) {
        for ignored in [SIGPIPE, SIGXFSZ] { signal(ignored, SIG_IGN) }  // EPIPE and EFBIG come back as errors instead
        // Caught from here on: systemd may send SIGHUP or SIGTERM as soon as it reads READY=1.
        let signals = ServiceSignals()
        let metrics = ListenerMetrics(services: configuration.callbacks.services)

        // 1. The store: nothing is acknowledged without it.
        let store: SQLiteCallbackStore
        do {
            store = try SQLiteCallbackStore(path: configuration.storage.path)
        } catch {
            throw .storeUnavailable("\(configuration.storage.path): \(error)")
        }
        let writer = GroupCommitWriter(
            store: store, capacity: configuration.storage.queueCapacity, logger: logger,
            observer: { event in
                if case .committed(let size, let duration) = event { metrics.committed(batchSize: size, duration: duration) }
            }
        )
        let retention = RetentionSweeper(configuration: configuration.storage, logger: logger)
        retention?.start()

        // 2. The callback listener.
        let handler = CallbackHandler(
            pathPrefix: configuration.http.pathPrefix, policy: IntakePolicy(configuration.callbacks),
            writer: writer, metrics: metrics, logger: logger
        )
        let server = HTTPServer(configuration: configuration.serverConfiguration, handler: handler, logger: logger)
        let passed = SystemdNotifier.listeningSockets(environment: environment)
        let callbackSockets = passed.filter { $0.name != "admin" }.map(\.descriptor)
        do {
            if callbackSockets.isEmpty { try server.start() } else { try server.start(listeningSockets: callbackSockets) }
        } catch {
            writer.close()
            throw .listenFailed("\(configuration.http.host):\(configuration.http.port): \(error)")
        }
        boundPort.withLock { $0 = server.localPort }
        logger.info(
            "listening for callbacks",
            metadata: [
                "address": "\(callbackSockets.isEmpty ? "\(configuration.http.host):\(server.localPort ?? configuration.http.port)" : "systemd socket")",
                "path": "\(configuration.http.pathPrefix)/{\(configuration.callbacks.services.joined(separator: ","))}",
            ]
        )

        if configuration.callbacks.username == nil && configuration.callbacks.allowedSources.isEmpty {
            logger.warning(
                "callbacks.username/password and callbacks.allowedSources are not set: anyone who can reach the port can store callbacks"
            )
        }

        // 3. Registration with ThingSpace, in the background.
        let registrar = Registrar.make(configuration: configuration, metrics: metrics, logger: logger, boundPort: server.localPort)

        // 4. The admin listener.
        var admin: HTTPServer?
        if configuration.admin.enabled {
            let probes = AdminHandler.Probes(
                isServing: { [self] in !self.draining.load(ordering: .relaxed) },
                isStoreWritable: { !writer.isFailing },
                isRegistered: registrar.map { registrar in { @Sendable in registrar.isRegistered } }
            )
            var adminConfiguration = HTTPServerConfiguration()
            adminConfiguration.host = configuration.admin.host
            adminConfiguration.port = configuration.admin.port
            adminConfiguration.maxConnections = 64
            let adminServer = HTTPServer(
                configuration: adminConfiguration, handler: AdminHandler(metrics: metrics, probes: probes), logger: logger
            )
            do {
                if let socket = passed.first(where: { $0.name == "admin" }) {
                    try adminServer.start(listeningSockets: [socket.descriptor])
                } else {
                    try adminServer.start()
                }
                admin = adminServer
                logger.info("admin listener up", metadata: ["address": "\(configuration.admin.host):\(adminServer.localPort ?? 0)"])
            } catch {
                // Health and metrics are for operators; callbacks matter more.
                logger.error("admin listener not started: \(error)")
            }
        }

        notifier.notify("READY=1\nSTATUS=Serving callbacks; \(registrar == nil ? "registration off" : "registering")\nMAINPID=\(getpid())")
        let watchdog = Watchdog(notifier: notifier, environment: environment, server: server, writer: writer, logger: logger)
        watchdog?.start()
        let statusTimer = startStatusUpdates(registrar: registrar, server: server, metrics: metrics)
        registrar?.start()

        // 5. Serve until told to stop; reload on SIGHUP.
        let signal = await signals.waitForStop(onReload: { [self] in
            await self.reloadLiveSettings(handler: handler, registrar: registrar)
        })
        logger.info("stopping", metadata: ["signal": "\(signal)"])
        notifier.notify("STOPPING=1\nSTATUS=Stopping: deregistering, then draining")
        statusTimer.cancel()

        // 6. Reverse order.
        if let registrar { await registrar.stop() }
        draining.store(true, ordering: .relaxed)
        let grace = Duration.milliseconds(Int(configuration.http.shutdownGracePeriod * 1000))
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            server.shutdown(gracePeriod: grace) { done.resume() }
        }
        if let admin {
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                admin.shutdown(gracePeriod: .seconds(1)) { done.resume() }
            }
        }
        watchdog?.stop()
        retention?.stop()
        writer.close()
        logger.info("stopped")
    }

    /// SIGHUP: callback credentials, the allow-list, trusted proxies, the log
    /// level and `thingspace.deregisterOnShutdown` change live; anything else
    /// needs a restart and is named. While registered with ThingSpace, new
    /// callback credentials wait for a restart too: ThingSpace sends what was
    /// registered, and refusing it would lose its callbacks.
    private func reloadLiveSettings(handler: CallbackHandler, registrar: Registrar?) async {
        notifier.notify("RELOADING=1\nMONOTONIC_USEC=\(Timekeeping.monotonicMicroseconds())")
        defer { notifier.notify("READY=1") }
        let fresh: ListenerConfiguration
        do {
            fresh = try await reload()
        } catch {
            logger.error("reload refused, keeping the running configuration: \(error)")
            return
        }
        let old = configuration
        var policy = IntakePolicy(fresh.callbacks)
        policy.services = old.callbacks.services  // what is registered and counted
        var needRestart: [String] = []
        if registrar != nil && (fresh.callbacks.username != old.callbacks.username || fresh.callbacks.password != old.callbacks.password) {
            policy.username = old.callbacks.username
            policy.password = old.callbacks.password
            needRestart.append("callbacks.username/password (registered with ThingSpace; keep the old one as callbacks.previousPassword)")
        }
        handler.update(policy: policy)
        LogLevelSwitch.shared.level = fresh.logging.level
        registrar?.setDeregisterOnShutdown(fresh.thingspace.deregisterOnShutdown)

        let t = (old: old.thingspace, new: fresh.thingspace)
        let changed: [(String, Bool)] = [
            ("http.host/port", fresh.http.host != old.http.host || fresh.http.port != old.http.port),
            ("http.pathPrefix", fresh.http.pathPrefix != old.http.pathPrefix),
            ("http limits and timeouts", "\(fresh.http)" != "\(old.http)"),
            ("storage.*", "\(fresh.storage)" != "\(old.storage)"),
            ("callbacks.services", fresh.callbacks.services != old.callbacks.services),
            ("thingspace.* (other than deregisterOnShutdown)",
             t.new.baseURL != t.old.baseURL || t.new.accountName != t.old.accountName || t.new.clientID != t.old.clientID
                || t.new.clientSecret != t.old.clientSecret || t.new.username != t.old.username || t.new.password != t.old.password
                || t.new.callbackBaseURL != t.old.callbackBaseURL || t.new.register != t.old.register || t.new.sandbox != t.old.sandbox),
            ("logging.format", fresh.logging.format != old.logging.format),
            ("admin.*", fresh.admin.enabled != old.admin.enabled || fresh.admin.host != old.admin.host || fresh.admin.port != old.admin.port),
        ]
        needRestart += changed.filter(\.1).map(\.0)
        logger.notice(
            "configuration reloaded: callback credentials, allowed sources, trusted proxies, log level and deregisterOnShutdown are live",
            metadata: needRestart.isEmpty ? [:] : ["restart_needed_for": "\(needRestart.joined(separator: "; "))"]
        )
    }

    private func startStatusUpdates(registrar: Registrar?, server: HTTPServer, metrics: ListenerMetrics) -> any DispatchSourceTimer {
        let timer = DispatchSource.makeTimerSource(queue: .global(qos: .utility))
        timer.schedule(deadline: .now() + 5, repeating: 5)
        timer.setEventHandler { [notifier] in
            metrics.setOpenConnections(server.openConnections)
            let registration = registrar?.stateDescription ?? "registration off"
            notifier.notify("STATUS=Serving callbacks; \(registration); \(server.openConnections) connections open")
        }
        timer.resume()
        return timer
    }

    static func monotonicMicroseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1000
    }
}

/// SIGTERM, SIGINT and SIGHUP, caught from the start of `run`. A signal that
/// arrives before serving begins is kept: a stop ends the service as soon as it
/// serves, a reload runs then. Without this, a SIGHUP right after READY=1
/// (`systemctl reload`) would kill the process with the default action.
public final class ServiceSignals: Sendable {
    private struct State {
        var stop: String?
        var waiter: CheckedContinuation<String, Never>?
        var onReload: (@Sendable () async -> Void)?
        var reloadPending = false
    }
    private let state = Mutex(State())

    public init() {
        let queue = DispatchQueue(label: "thingspace-listener.signals")
        var sources: [any DispatchSourceSignal] = []
        for (number, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT"), (SIGHUP, "SIGHUP")] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { [self] in received(number, name: name) }
            source.resume()
            sources.append(source)
        }
        SignalSources.keep(sources)
    }


    private func received(_ number: Int32, name: String) {
        if number == SIGHUP {
            let onReload = state.withLock { state -> (@Sendable () async -> Void)? in
                guard state.stop == nil else { return nil }  // stopping: READY=1 must not follow STOPPING=1
                if state.onReload == nil { state.reloadPending = true }
                return state.onReload
            }
            if let onReload { Task { await onReload() } }
            return
        }
        let waiter = state.withLock { state -> CheckedContinuation<String, Never>? in
            guard state.stop == nil else { return nil }
            state.stop = name
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: name)
    }

    /// Waits for SIGTERM or SIGINT (returned), running `onReload` for each SIGHUP meanwhile.
    public func waitForStop(onReload: @escaping @Sendable () async -> Void = {}) async -> String {
        await withCheckedContinuation { (continuation: CheckedContinuation<String, Never>) in
            let (stop, reload) = state.withLock { state -> (String?, Bool) in
                state.onReload = onReload
                defer { state.reloadPending = false }
                if state.stop == nil { state.waiter = continuation }
                return (state.stop, state.reloadPending)
            }
            if reload { Task { await onReload() } }
            if let stop { continuation.resume(returning: stop) }
        }
    }
}

/// Signal sources must outlive the service that installs them.
private enum SignalSources {
    nonisolated(unsafe) static var retained: [any DispatchSourceSignal] = []
    static func keep(_ sources: [any DispatchSourceSignal]) { retained += sources }
}
