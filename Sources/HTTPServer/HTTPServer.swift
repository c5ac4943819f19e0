import Dispatch
import HTTP1
public import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An HTTP/1.1 server on non-blocking sockets and Dispatch.
///
/// One accept queue (a DispatchSource per listening socket) takes
/// connections and spreads them over `ioQueueCount` serial queues; each
/// connection lives on one of them, its socket in that queue's epoll set
/// (watched by one DispatchSource, see IOLoop). The handler is called on
/// that queue and may answer from anywhere, later.
/// Figures: bench/RESULTS.md.
public final class HTTPServer: Sendable {
    public let configuration: HTTPServerConfiguration
    private let core: ServerCore
    private let loops: [IOLoop]
    private let acceptor: Acceptor
    private let boundPort = Atomic<Int>(-1)

    public init(configuration: HTTPServerConfiguration, handler: any HTTPRequestHandler, logger: Logger) {
        self.configuration = configuration
        let core = ServerCore(configuration: configuration, handler: handler, logger: logger)
        let loops = (0..<max(1, configuration.ioQueueCount)).map { IOLoop(index: $0) }
        self.core = core
        self.loops = loops
        self.acceptor = Acceptor(core: core, loops: loops)
    }

    /// Binds and listens on `configuration.host`/`port` (IPv4 or IPv6,
    /// SO_REUSEADDR, non-blocking) and starts accepting.
    public func start() throws(HTTPServerError) {
        try configuration.validate()
        try checkLoops()
        try beginStarting()
        let fd: Int32
        do {
            fd = try Socket.makeListeningSocket(
                host: configuration.host, port: configuration.port, backlog: configuration.backlog)
        } catch {
            abandonStarting()
            throw error
        }
        serve(listening: [fd])
    }

    /// Adopts sockets that already listen (systemd socket activation,
    /// `LISTEN_FDS`) instead of binding. The server owns and closes them.
    public func start(listeningSockets: [Int32]) throws(HTTPServerError) {
        try configuration.validate()
        try checkLoops()
        guard !listeningSockets.isEmpty else { throw .noListeningSockets }
        for fd in listeningSockets { try Socket.adopt(fd) }
        try beginStarting()
        serve(listening: listeningSockets)
    }

    /// The bound port (of the first listening socket), once started.
    public var localPort: Int? {
        let port = boundPort.load(ordering: .acquiring)
        return port >= 0 ? port : nil
    }

    /// Connections accepted and not yet closed.
    public var openConnections: Int {
        max(0, core.openConnections.load(ordering: .relaxed))
    }

    /// Advances about four times a second while the accept queue turns and
    /// every I/O queue has swept its connections within the last 2 s; stops
    /// when something is wedged (for the systemd watchdog).
    public var acceptLoopHeartbeat: UInt64 {
        core.heartbeat.load(ordering: .relaxed)
    }

    /// Graceful shutdown: stop accepting, close idle connections, let
    /// requests in progress finish (their responses carry `Connection:
    /// close`) for up to `gracePeriod`, then close the rest. `completion`
    /// runs once every socket is closed (at once if the server never started).
    public func shutdown(gracePeriod: Duration, completion: @escaping @Sendable () -> Void) {
        enum Step { case drain, wait, completeNow }
        let step = core.phase.withLock { phase -> Step in
            switch phase {
            case .created, .stopped:
                phase = .stopped
                return .completeNow
            case .starting:
                // start() runs on another thread; it begins the drain when done.
                phase = .startingThenDrain(gracePeriod, [completion])
                return .wait
            case .startingThenDrain(let grace, let completions):
                phase = .startingThenDrain(grace, completions + [completion])
                return .wait
            case .running:
                phase = .draining([completion])
                return .drain
            case .draining(var completions):
                completions.append(completion)
                phase = .draining(completions)
                return .wait
            }
        }
        switch step {
        case .completeNow:
            completion()
        case .wait:
            break
        case .drain:
            beginDrain(gracePeriod: gracePeriod)
        }
    }

    // MARK: Internals

    private func checkLoops() throws(HTTPServerError) {
        if let code = loops.lazy.compactMap(\.setupError).first { throw .eventSetupFailed(errno: code) }
    }

    private func beginStarting() throws(HTTPServerError) {
        try core.phase.withLock { phase throws(HTTPServerError) in
            switch phase {
            case .created: phase = .starting
            case .starting, .startingThenDrain, .running: throw .alreadyStarted
            case .draining, .stopped: throw .alreadyShutDown
            }
        }
    }

    /// start() failed: back to `created`, or stopped if shutdown() came meanwhile.
    private func abandonStarting() {
        let completions = core.phase.withLock { phase -> [@Sendable () -> Void] in
            if case .startingThenDrain(_, let completions) = phase {
                phase = .stopped
                return completions
            }
            phase = .created
            return []
        }
        for completion in completions { completion() }
    }

    private func serve(listening fds: [Int32]) {
        // A peer that vanishes must cost an EPIPE, not the process.
        signal(SIGPIPE, SIG_IGN)
        boundPort.store(Socket.localPort(fds[0]) ?? -1, ordering: .releasing)
        for loop in loops {
            loop.queue.sync { loop.start() }
        }
        let acceptor = self.acceptor
        acceptor.queue.sync { acceptor.start(listening: fds) }
        let requestedDrain = core.phase.withLock { phase -> Duration? in
            if case .startingThenDrain(let grace, let completions) = phase {
                phase = .draining(completions)
                return grace
            }
            phase = .running
            return nil
        }
        core.logger.info(
            "HTTP server listening",
            metadata: ["http.host": "\(configuration.host)", "http.port": "\(localPort ?? -1)", "http.io_queues": "\(loops.count)"])
        if let requestedDrain { beginDrain(gracePeriod: requestedDrain) }
    }

    private func beginDrain(gracePeriod: Duration) {
        let core = self.core
        let loops = self.loops
        let acceptor = self.acceptor
        // Stop the loops' timers once everything is closed.
        core.phase.withLock { phase in
            if case .draining(let completions) = phase {
                let cleanup: @Sendable () -> Void = {
                    for loop in loops { loop.queue.async { loop.stop() } }
                    acceptor.queue.async { acceptor.stopHeartbeat() }
                }
                phase = .draining([cleanup] + completions)
            }
        }
        core.isDraining.store(true, ordering: .releasing)
        core.logger.info("HTTP server shutting down", metadata: ["http.open_connections": "\(openConnections)"])
        acceptor.queue.async { acceptor.stop() }
        for loop in loops {
            loop.queue.async { loop.beginDrain() }
        }
        let deadline = DispatchTime.now() + .nanoseconds(Int(min(gracePeriod.clampedNanoseconds, UInt64(Int.max))))
        acceptor.queue.asyncAfter(deadline: deadline) {
            guard core.openConnections.load(ordering: .acquiring) > 0 else { return }
            core.logger.info(
                "shutdown grace period over; closing remaining connections",
                metadata: ["http.open_connections": "\(core.openConnections.load(ordering: .relaxed))"])
            for loop in loops {
                loop.queue.async { loop.closeAll() }
            }
        }
        // Nothing may have been open at all.
        core.finishIfDrained()
    }
}
