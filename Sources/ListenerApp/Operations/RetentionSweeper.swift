import CallbackStore
import Dispatch
import Logging
import Vocabulary

/// Deletes callbacks older than `storage.retentionDays`, at start and hourly,
/// through the store's one writer (nothing else writes the store). With several
/// instances on one database only the leader sweeps: one owner for each duty.
/// The timer is set up once in `start`; nothing else mutates it.
final class RetentionSweeper: @unchecked Sendable {
    private let maintenance: any CallbackMaintenance
    private let days: Int
    private let isLeader: @Sendable () -> Bool
    private let logger: Logger
    private let timer: any DispatchSourceTimer

    init?(
        configuration: ListenerConfiguration.Storage, maintenance: any CallbackMaintenance,
        isLeader: @escaping @Sendable () -> Bool = { true },
        logger: Logger
    ) {
        guard configuration.retentionDays > 0 else { return nil }
        self.maintenance = maintenance
        self.isLeader = isLeader
        days = configuration.retentionDays
        self.logger = logger
        timer = DispatchSource.makeTimerSource(queue: .global(qos: .background))
    }

    func start() {
        timer.schedule(deadline: .now() + 1, repeating: 3600)
        timer.setEventHandler { [self] in Task { await sweep() } }
        timer.resume()
    }

    func stop() { timer.cancel() }

    private func sweep() async {
        guard isLeader() else { return }
        let cutoff = Timekeeping.wallClockMilliseconds() - Int64(days) * 86_400_000
        do {
            let removed = try await maintenance.purge(olderThan: cutoff)
            if removed > 0 {
                logger.info("retention: removed old callbacks", metadata: ["retention.removed": "\(removed)", "retention.days": "\(days)"])
            }
        } catch {
            logger.warning("retention sweep failed; will retry in an hour: \(error)")
        }
    }
}
