import Dispatch
import Synchronization

private let nextLoopIdentity = Atomic<Int>(1)

/// A serial queue that owns a share of the connections, a read buffer they
/// all use (one read at a time on a serial queue), and a coarse sweep that
/// enforces their deadlines: far cheaper than a timer per connection.
/// Members other than `lastSweep` are touched only on `queue`.
final class IOLoop: @unchecked Sendable {
    static let sweepInterval: DispatchTimeInterval = .milliseconds(250)
    private static let identityKey = DispatchSpecificKey<Int>()

    let queue: DispatchQueue
    let readBuffer: UnsafeMutableRawBufferPointer
    /// Monotonic time of the last sweep, read by the heartbeat.
    let lastSweep = Atomic<UInt64>(0)
    private let identity: Int
    private var connections: [UInt64: Connection] = [:]
    private var sweepTimer: (any DispatchSourceTimer)?

    init(index: Int, readBufferSize: Int = 64 * 1024) {
        identity = nextLoopIdentity.add(1, ordering: .relaxed).oldValue
        queue = DispatchQueue(label: "HTTPServer.io.\(index)")
        queue.setSpecific(key: Self.identityKey, value: identity)
        readBuffer = .allocate(byteCount: readBufferSize, alignment: 16)
    }

    deinit {
        readBuffer.deallocate()
    }

    /// Whether the caller runs on this loop's queue.
    var isCurrent: Bool {
        DispatchQueue.getSpecific(key: Self.identityKey) == identity
    }

    var connectionCount: Int { connections.count }

    func register(_ connection: Connection) {
        connections[connection.id] = connection
    }

    func unregister(_ connection: Connection) {
        connections.removeValue(forKey: connection.id)
    }

    /// Starts the sweep. On `queue`.
    func start() {
        lastSweep.store(monotonicNanoseconds(), ordering: .relaxed)
        let timer = DispatchSource.makeTimerSource(queue: queue)
        timer.schedule(deadline: .now() + Self.sweepInterval, repeating: Self.sweepInterval, leeway: .milliseconds(50))
        timer.setEventHandler { [self] in sweep() }
        sweepTimer = timer
        timer.resume()
    }

    /// Stops the sweep. On `queue`.
    func stop() {
        sweepTimer?.cancel()
        sweepTimer = nil
    }

    private func sweep() {
        let now = monotonicNanoseconds()
        lastSweep.store(now, ordering: .relaxed)
        // Iterates a copy: closing a connection unregisters it.
        for connection in connections.values {
            connection.checkTimeouts(now: now)
        }
    }

    /// Shutdown began. On `queue`.
    func beginDrain() {
        for connection in connections.values {
            connection.beginDrain()
        }
    }

    /// The grace period is over. On `queue`.
    func closeAll() {
        for connection in connections.values {
            connection.terminate(reason: "shutdown grace period over", abort: true)
        }
    }
}
