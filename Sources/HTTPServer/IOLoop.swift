import Dispatch
import HTTP1
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

private let nextLoopIdentity = Atomic<Int>(1)

/// A serial queue that owns a share of the connections.
///
/// Its connections' sockets sit in one epoll set, and one DispatchSource
/// watches that set: a readiness turn on the queue collects every ready
/// socket at once (one epoll_wait) and serves them all. A DispatchSource per
/// socket would cost two epoll_ctl calls, an ioctl and a thread wake-up per
/// request; this costs them per turn.
///
/// The loop also owns a read buffer its connections share (one read at a
/// time on a serial queue), and a coarse sweep that enforces their
/// deadlines, far cheaper than a timer per connection.
/// Members other than `lastSweep` are touched only on `queue`.
final class IOLoop: @unchecked Sendable {
    static let sweepInterval: DispatchTimeInterval = .milliseconds(250)
    /// Events taken per epoll_wait.
    static let eventCapacity = 256
    /// epoll_wait calls per readiness turn (Dispatch starts another turn
    /// while sockets stay ready). Measured with bench/run on 2 cores: 1 round
    /// gave p99 ≈ 1 ms, 16 rounds p99 ≈ 3-4 ms at the same requests/s, as a
    /// loop that keeps polling starves the threads that feed it.
    static let pollRoundsPerTurn = 1
    private static let identityKey = DispatchSpecificKey<Int>()

    let queue: DispatchQueue
    let readBuffer: UnsafeMutableRawBufferPointer
    /// Monotonic time of the last sweep, read by the heartbeat.
    let lastSweep = Atomic<UInt64>(0)
    private let identity: Int
    /// The readiness set, or -1 (with `setupError`) if it could not be created.
    private let epollFD: Int32
    let setupError: Int32?
    private let events: UnsafeMutableRawPointer
    private var readiness: (any DispatchSourceRead)?
    private var sweepTimer: (any DispatchSourceTimer)?

    /// Responses given on other threads, delivered in one hop to `queue` per batch rather than one
    /// dispatch (and often one thread wake-up) per response: a store commit answers dozens at once.
    private let inbox = Mutex<[(connection: Connection, sequence: UInt64, answer: HTTPAnswer)]>([])

    /// Connections by slot; an epoll token is the slot and its generation,
    /// so an event for a closed connection never reaches its successor.
    private var slots: [Connection?] = []
    private var generations: [UInt32] = []
    private var freeSlots: [Int] = []
    private(set) var connectionCount = 0

    init(index: Int, readBufferSize: Int = 64 * 1024) {
        identity = nextLoopIdentity.add(1, ordering: .relaxed).oldValue
        queue = DispatchQueue(label: "HTTPServer.io.\(index)")
        queue.setSpecific(key: Self.identityKey, value: identity)
        readBuffer = .allocate(byteCount: readBufferSize, alignment: 16)
        events = .allocate(byteCount: Self.eventCapacity * Epoll.eventStride, alignment: 8)
        let fd = Epoll.create()
        epollFD = fd
        setupError = fd < 0 ? errno : nil
    }

    deinit {
        readBuffer.deallocate()
        events.deallocate()
        if epollFD >= 0 { _ = close(epollFD) }
    }

    /// From any thread: hands the response to its connection on `queue`.
    func deliver(_ answer: HTTPAnswer, to connection: Connection, sequence: UInt64) {
        let isFirst = inbox.withLock { inbox in
            inbox.append((connection, sequence, answer))
            return inbox.count == 1
        }
        if isFirst {
            queue.async { [self] in deliverInbox() }
        }
    }

    private func deliverInbox() {
        checkConfined()
        let delivered = inbox.withLock { inbox in
            defer { inbox.removeAll(keepingCapacity: true) }
            return inbox
        }
        for item in delivered {
            item.connection.receive(item.answer, sequence: item.sequence)
        }
    }

    /// Whether the caller runs on this loop's queue.
    var isCurrent: Bool {
        DispatchQueue.getSpecific(key: Self.identityKey) == identity
    }

    /// Traps unless called on `queue`: the loop and its connections are
    /// confined to it, which is what makes their `@unchecked Sendable` true.
    @inline(__always)
    func checkConfined() {
        dispatchPrecondition(condition: .onQueue(queue))
    }

    /// Starts watching the readiness set and the sweep. On `queue`.
    func start() {
        checkConfined()
        precondition(epollFD >= 0, "IOLoop started without an epoll set")
        lastSweep.store(monotonicNanoseconds(), ordering: .relaxed)
        let source = DispatchSource.makeReadSource(fileDescriptor: epollFD, queue: queue)
        source.setEventHandler { [self] in serveReadySockets() }
        // Keeps the loop (and so the epoll descriptor) alive until Dispatch lets go of it.
        source.setCancelHandler { [self] in _ = self }
        readiness = source
        source.resume()

        let timer = DispatchSource.makeTimerSource(queue: queue)
        timer.schedule(deadline: .now() + Self.sweepInterval, repeating: Self.sweepInterval, leeway: .milliseconds(50))
        timer.setEventHandler { [self] in sweep() }
        sweepTimer = timer
        timer.resume()
    }

    /// Stops the readiness source and the sweep, once every connection is closed. On `queue`.
    func stop() {
        checkConfined()
        sweepTimer?.cancel()
        sweepTimer = nil
        readiness?.cancel()
        readiness = nil
    }

    // MARK: Registration (on `queue`)

    /// Adds a connection's socket to the readiness set; nil if epoll refused it.
    func register(_ connection: Connection, fd: Int32, events: UInt32) -> UInt64? {
        checkConfined()
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = free
        } else {
            slot = slots.count
            slots.append(nil)
            generations.append(0)
        }
        let token = UInt64(generations[slot]) << 32 | UInt64(slot)
        guard Epoll.add(epollFD, fd, events: events, token: token) else {
            freeSlots.append(slot)
            return nil
        }
        slots[slot] = connection
        connectionCount += 1
        return token
    }

    func setEvents(_ events: UInt32, fd: Int32, token: UInt64) -> Bool {
        Epoll.modify(epollFD, fd, events: events, token: token)
    }

    /// Removes a connection (before its socket is closed).
    func unregister(fd: Int32, token: UInt64) {
        checkConfined()
        let slot = Int(token & 0xFFFF_FFFF)
        guard slot < slots.count, UInt64(generations[slot]) == token >> 32, slots[slot] != nil else { return }
        _ = Epoll.remove(epollFD, fd)
        slots[slot] = nil
        generations[slot] &+= 1
        freeSlots.append(slot)
        connectionCount -= 1
    }

    private var liveConnections: [Connection] { slots.compactMap { $0 } }

    // MARK: Turns

    private func serveReadySockets() {
        checkConfined()
        for _ in 0..<Self.pollRoundsPerTurn {
            let count = Epoll.poll(epollFD, into: events, count: Int32(Self.eventCapacity))
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return }
            for index in 0..<Int(count) {
                let (flags, token) = Epoll.event(events, at: index)
                let slot = Int(token & 0xFFFF_FFFF)
                guard slot < slots.count, UInt64(generations[slot]) == token >> 32, let connection = slots[slot] else {
                    continue  // closed earlier in this turn
                }
                connection.handle(events: flags)
            }
        }
    }

    private func sweep() {
        checkConfined()
        let now = monotonicNanoseconds()
        lastSweep.store(now, ordering: .relaxed)
        for connection in liveConnections {
            connection.checkTimeouts(now: now)
        }
    }

    /// Shutdown began. On `queue`.
    func beginDrain() {
        checkConfined()
        for connection in liveConnections {
            connection.beginDrain()
        }
    }

    /// The grace period is over. On `queue`.
    func closeAll() {
        checkConfined()
        for connection in liveConnections {
            connection.terminate(reason: "shutdown grace period over", abort: true, streamEnd: .shutdown)
        }
    }
}
