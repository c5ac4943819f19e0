import CallbackStore
import Dispatch
import Logging
import Vocabulary

/// Deletes callbacks older than `storage.retentionDays`, at start and hourly,
/// through its own connection (SQLite serialises it with the writer).
/// The timer is set up once in `start`; nothing else mutates it.
final class RetentionSweeper: @unchecked Sendable {
    private let path: String
    private let days: Int
    private let logger: Logger
    private let timer: any DispatchSourceTimer

    init?(configuration: ListenerConfiguration.Storage, logger: Logger) {
        guard configuration.retentionDays > 0 else { return nil }
        path = configuration.path
        days = configuration.retentionDays
        self.logger = logger
        timer = DispatchSource.makeTimerSource(queue: .global(qos: .background))
    }

    func start() {
        timer.schedule(deadline: .now() + 1, repeating: 3600)
        timer.setEventHandler { [self] in sweep() }
        timer.resume()
    }

    func stop() { timer.cancel() }

    private func sweep() {
        let cutoff = Timekeeping.wallClockMilliseconds() - Int64(days) * 86_400_000
        do {
            let store = try SQLiteCallbackStore(path: path)
            let removed = try store.purge(olderThan: cutoff)
            if removed > 0 { logger.info("retention: removed old callbacks", metadata: ["retention.removed": "\(removed)", "retention.days": "\(days)"]) }
        } catch {
            logger.warning("retention sweep failed; will retry in an hour: \(error)")
        }
    }
}
