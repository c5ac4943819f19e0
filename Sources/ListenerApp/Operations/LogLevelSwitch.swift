import Logging
import Synchronization

/// The service-wide log level, changeable at run time (SIGHUP) for every
/// logger made by `ListenerLogHandler`.
public final class LogLevelSwitch: Sendable {
    public static let shared = LogLevelSwitch()
    private let raw = Atomic<Int>(2)
    private static let levels = Logger.Level.allCases

    public var level: Logger.Level {
        get { Self.levels[raw.load(ordering: .relaxed)] }
        set { raw.store(Self.levels.firstIndex(of: newValue) ?? 2, ordering: .relaxed) }
    }
}
