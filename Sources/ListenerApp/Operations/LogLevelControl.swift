import Logging
import Synchronization

/// The level that loggers made by one logging bootstrap follow unless they
/// were given a level of their own: swift-log's contract keeps a logger's
/// level its own, so a service-wide change (SIGHUP) lives here, in the
/// factory, not in a handler's setter.
public final class LogLevelControl: Sendable {
    private let raw: Atomic<Int>
    private static let levels = Logger.Level.allCases

    public init(_ level: Logger.Level = .info) {
        raw = Atomic(Self.levels.firstIndex(of: level) ?? 2)
    }

    public var level: Logger.Level {
        get { Self.levels[raw.load(ordering: .relaxed)] }
        set { raw.store(Self.levels.firstIndex(of: newValue) ?? 2, ordering: .relaxed) }
    }
}
