import Logging
import Synchronization

/// The server's life. `draining` holds the shutdown completions.
enum ServerPhase {
    case created
    case starting
    /// shutdown() was called while start() ran; start() begins the drain when done.
    case startingThenDrain(Duration, [@Sendable () -> Void])
    case running
    case draining([@Sendable () -> Void])
    case stopped
}

/// What connections, loops and the acceptor share: the handler, settings,
/// counters and the shutdown bookkeeping. Holds no loop or connection.
final class ServerCore: Sendable {
    let handler: any HTTPRequestHandler
    let logger: Logger
    let settings: ConnectionSettings
    let maxConnections: Int

    /// Accepted and not yet closed (descriptor still open).
    let openConnections = Atomic<Int>(0)
    let openListeners = Atomic<Int>(0)
    let nextConnectionID = Atomic<UInt64>(1)
    let heartbeat = Atomic<UInt64>(0)
    let isDraining = Atomic<Bool>(false)
    let phase = Mutex<ServerPhase>(.created)

    init(configuration: HTTPServerConfiguration, handler: any HTTPRequestHandler, logger: Logger) {
        self.handler = handler
        self.logger = logger
        self.settings = ConnectionSettings(configuration)
        self.maxConnections = configuration.maxConnections
    }

    /// A connection's descriptor was closed. Any thread.
    func connectionClosed() {
        let remaining = openConnections.subtract(1, ordering: .acquiringAndReleasing).newValue
        if remaining == 0 && isDraining.load(ordering: .acquiring) { finishIfDrained() }
    }

    /// A listening descriptor was closed. Any thread.
    func listenerClosed() {
        let remaining = openListeners.subtract(1, ordering: .acquiringAndReleasing).newValue
        if remaining == 0 && isDraining.load(ordering: .acquiring) { finishIfDrained() }
    }

    /// Runs the shutdown completions once nothing is open any more.
    func finishIfDrained() {
        guard openConnections.load(ordering: .acquiring) == 0, openListeners.load(ordering: .acquiring) == 0 else {
            return
        }
        let completions = phase.withLock { phase -> [@Sendable () -> Void] in
            guard case .draining(let completions) = phase else { return [] }
            phase = .stopped
            return completions
        }
        for completion in completions { completion() }
    }
}
