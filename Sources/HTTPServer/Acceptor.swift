import Dispatch
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Accepts connections from the listening sockets and hands them to the
/// loops round-robin. Every member is touched only on `queue`.
final class Acceptor: @unchecked Sendable {
    /// How long accepting pauses when the process or system is out of descriptors.
    static let exhaustionBackoff: DispatchTimeInterval = .milliseconds(100)
    /// Accepts per readiness event, so one burst cannot hold the queue.
    static let acceptBatch = 64

    let queue = DispatchQueue(label: "HTTPServer.accept")
    private let core: ServerCore
    private let loops: [IOLoop]
    private var listeners: [(fd: Int32, source: any DispatchSourceRead)] = []
    private var isPaused = false
    /// Out of descriptors since the last successful accept (logs once per episode).
    private var isExhausted = false
    private var isStopped = false
    private var nextLoop = 0
    private var heartbeatTimer: (any DispatchSourceTimer)?

    init(core: ServerCore, loops: [IOLoop]) {
        self.core = core
        self.loops = loops
    }

    /// Starts accepting on `fds` (already listening and non-blocking). On `queue`.
    func start(listening fds: [Int32]) {
        dispatchPrecondition(condition: .onQueue(queue))
        core.openListeners.store(fds.count, ordering: .releasing)
        for fd in fds {
            let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
            source.setEventHandler { [self] in acceptConnections(from: fd) }
            source.setCancelHandler { [core] in
                _ = close(fd)
                core.listenerClosed()
            }
            listeners.append((fd, source))
            source.resume()
        }
        let timer = DispatchSource.makeTimerSource(queue: queue)
        timer.schedule(deadline: .now() + IOLoop.sweepInterval, repeating: IOLoop.sweepInterval, leeway: .milliseconds(50))
        timer.setEventHandler { [self] in beat() }
        heartbeatTimer = timer
        timer.resume()
    }

    /// Stops accepting and closes the listening sockets. On `queue`.
    func stop() {
        dispatchPrecondition(condition: .onQueue(queue))
        guard !isStopped else { return }
        isStopped = true
        for listener in listeners {
            listener.source.cancel()
            if isPaused { listener.source.resume() }
        }
        isPaused = false
        listeners = []
    }

    /// Stops the heartbeat once everything is closed. On `queue`.
    func stopHeartbeat() {
        heartbeatTimer?.cancel()
        heartbeatTimer = nil
    }

    /// Advances the heartbeat while this queue turns and every loop swept recently.
    private func beat() {
        let now = monotonicNanoseconds()
        let healthy = loops.allSatisfy { loop in
            let last = loop.lastSweep.load(ordering: .relaxed)
            return now < last || now - last < 2_000_000_000
        }
        if healthy { core.heartbeat.add(1, ordering: .relaxed) }
    }

    private func acceptConnections(from listenFD: Int32) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard !isStopped, !isPaused else { return }
        for _ in 0..<Self.acceptBatch {
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let fd = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    accept(listenFD, $0, &length)
                }
            }
            guard fd >= 0 else {
                let code = errno
                switch code {
                case EAGAIN, EWOULDBLOCK:
                    return
                case EINTR, ECONNABORTED, EPROTO, EPERM:
                    continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    if !isExhausted {
                        isExhausted = true
                        core.logger.warning(
                            "accept paused: out of resources; retrying every 100 ms",
                            metadata: ["error": "\(HTTPServerError.describe(code))"])
                    }
                    pauseAccepting()
                    return
                default:
                    core.logger.error("accept failed", metadata: ["error": "\(HTTPServerError.describe(code))"])
                    return
                }
            }
            if isExhausted {
                isExhausted = false
                core.logger.notice("accept resumed")
            }
            let open = core.openConnections.add(1, ordering: .acquiringAndReleasing).newValue
            if open > core.maxConnections {
                // Shed load: closing at once is cheaper than queueing work we cannot do.
                _ = close(fd)
                core.connectionClosed()
                core.logger.debug(
                    "connection shed: too many open connections", metadata: ["http.max_connections": "\(core.maxConnections)"])
                continue
            }
            // (accept4 is not visible from Swift's Glibc module: two fcntl calls instead.)
            _ = fcntl(fd, F_SETFL, O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            Socket.setNoDelay(fd)
            let id = core.nextConnectionID.add(1, ordering: .relaxed).oldValue
            let loop = loops[nextLoop]
            nextLoop = nextLoop + 1 == loops.count ? 0 : nextLoop + 1
            let connection = Connection(fd: fd, id: id, peer: storage, loop: loop, core: core)
            loop.queue.async { connection.start() }
        }
    }

    /// Out of descriptors: stop accepting for a moment, keep serving.
    private func pauseAccepting() {
        guard !isPaused, !isStopped else { return }
        isPaused = true
        for listener in listeners { listener.source.suspend() }
        queue.asyncAfter(deadline: .now() + Self.exhaustionBackoff) { [self] in
            guard isPaused, !isStopped else { return }
            isPaused = false
            for listener in listeners { listener.source.resume() }
        }
    }
}
