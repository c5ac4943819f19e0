import ServiceLifecycle
import Synchronization
import UnixSignals

// SIGTERM, SIGINT and SIGHUP as one sequence, trapped from the moment this is
// made (before the store opens): systemd may send SIGHUP or SIGTERM as soon as
// it reads READY=1, and the default action would kill the process.
#if canImport(Glibc)
    import Glibc
#endif

/// Runs beside the composition's parts: a stop signal starts the graceful
/// shutdown; each SIGHUP runs `reload`, one at a time and only once every
/// part is up (a SIGHUP that arrives earlier is kept until then; several that
/// arrive during a reload make one more reload).
public final class ProcessSignals: Service {
    public struct Handlers: Sendable {
        /// A stop signal arrived (its name): the first one only.
        public var stop: @Sendable (String) async -> Void
        /// Waits until the service serves; false if it never will.
        public var serving: @Sendable () async -> Bool
        public var reload: @Sendable () async -> Void

        public init(
            stop: @escaping @Sendable (String) async -> Void,
            serving: @escaping @Sendable () async -> Bool = { true },
            reload: @escaping @Sendable () async -> Void = {}
        ) {
            self.stop = stop
            self.serving = serving
            self.reload = reload
        }
    }

    private let signals: UnixSignalsSequence
    private let handlers = Mutex<Handlers?>(nil)
    private let stopping = Atomic<Bool>(false)

    /// Traps the signals now; `handle(with:)` says what they do.
    public init() async {
        for number in [SIGTERM, SIGINT, SIGHUP] { signal(number, SIG_IGN) }
        signals = await UnixSignalsSequence(trapping: .sigterm, .sigint, .sighup)
    }

    /// For a command with nothing to compose: waits for SIGTERM or SIGINT (its name); SIGHUP does nothing.
    public func waitForStop() async -> String {
        for await signal in signals where signal != .sighup { return "\(signal)" }
        return "end of signals"
    }

    public func handle(with handlers: Handlers) { self.handlers.withLock { $0 = handlers } }

    public func run() async throws {
        guard let handlers = handlers.withLock({ $0 }) else { return }
        let (reloads, reloadRequested) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        await cancelWhenGracefulShutdown { [self] in
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await signal in self.signals {
                        if signal == .sighup {
                            reloadRequested.yield()
                        } else if !self.stopping.exchange(true, ordering: .relaxed) {
                            await handlers.stop("\(signal)")
                        }
                    }
                }
                group.addTask {
                    guard await handlers.serving() else { return }
                    for await _ in reloads {
                        // Stopping: READY=1 (the end of a reload) must not follow STOPPING=1.
                        if self.stopping.load(ordering: .relaxed) { return }
                        await handlers.reload()
                    }
                }
                await group.waitForAll()
            }
        }
        reloadRequested.finish()
    }
}
