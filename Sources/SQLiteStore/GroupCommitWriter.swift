import CallbackStore
import Foundation
import Logging
import Synchronization
import Vocabulary

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Group commit in front of a store, in two pipelined stages on two dedicated threads:
///
/// 1. the writer thread commits every callback waiting at that moment in one transaction, without
///    waiting for the disk (`SQLiteCallbackStore.insertUnsynced`);
/// 2. the sync thread fsyncs the WAL (`WriteAheadLog.sync`), then reports each outcome.
///
/// So batch N+1 is written while batch N is synced, and nothing is acknowledged before it is on
/// disk. At most three committed batches are in flight (one syncing, one waiting for the next
/// sync, one the writer holds until there is room): beyond that the queue fills, and a stuck disk
/// shows as 503s and a still heartbeat.
///
/// `submit` never blocks on the disk: it appends under a short lock and signals the thread.
/// A store error fails the whole batch (nothing unsaved is acknowledged), is logged once per
/// failure episode, and later batches try again, so the writer recovers when the disk does.
/// A failed fsync also fails every batch committed after it, whatever their own fsync says, until
/// the store has recovered (`SQLiteCallbackStore.recoverFromFailedSync`). A failed batch may
/// still be in the database: it was answered 503, and its retry is stored as a repeat of it.
public final class GroupCommitWriter: CallbackIntake, CallbackMaintenance {
    /// Reported to the observer after each batch's completions were called: a commit failure on the
    /// writer thread, the rest on the sync thread.
    public enum Event: Sendable, Hashable {
        case committed(batchSize: Int, duration: Duration)
        case failed(batchSize: Int, duration: Duration, error: CallbackStoreError)
        /// The journal engine's indexer stored `records`, `duplicates` of them linked as repeats.
        case indexed(records: Int, duplicates: Int)
    }

    public typealias Observer = @Sendable (Event) -> Void

    /// How often an idle writer wakes up to advance `progressHeartbeat`.
    static let idleTick: TimeInterval = 0.5

    /// Makes a committed batch durable; tests replace it to hold or fail the sync.
    typealias Sync = @Sendable (WriteAheadLog) throws(CallbackStoreError) -> Void

    private let mailbox: WriterMailbox

    /// Starts the writer thread, which owns `store` from now on (do not use it elsewhere) and closes it.
    /// - Parameters:
    ///   - capacity: submissions that may wait; more are refused (answer 503 with Retry-After).
    ///   - maxQueuedBytes: body bytes that may wait, to bound memory; one callback is always accepted
    ///     into an empty queue. The writer holds at most about four times this: the waiting
    ///     callbacks and up to three committed batches in flight.
    ///   - observer: called on the writer's threads after each batch, for metrics; keep it short.
    public convenience init(
        store: SQLiteCallbackStore,
        capacity: Int = 4096,
        maxQueuedBytes: Int = 4 << 20,
        logger: Logger,
        observer: Observer? = nil
    ) {
        self.init(store: store, capacity: capacity, maxQueuedBytes: maxQueuedBytes, logger: logger, observer: observer) {
            writeAheadLog throws(CallbackStoreError) in try writeAheadLog.sync()
        }
    }

    /// `beforeCommit` runs on the writer thread before each commit (tests hold the writer there).
    init(
        store: SQLiteCallbackStore,
        capacity: Int = 4096,
        maxQueuedBytes: Int = 4 << 20,
        logger: Logger,
        observer: Observer? = nil,
        beforeCommit: (@Sendable () -> Void)? = nil,
        sync: @escaping Sync
    ) {
        let mailbox = WriterMailbox(queue: WriterQueue(capacity: capacity, maxQueuedBytes: maxQueuedBytes))
        self.mailbox = mailbox
        let outcomes = Outcomes(mailbox: mailbox, logger: logger, observer: observer)
        let checkpointer = store.startCheckpointing()
        // An fdatasync that failed before this writer existed is reported to nobody now.
        store.noteFailedSync(.startUp)
        let syncStage = SyncStage(sync: sync, outcomes: outcomes) { checkpointer?.pause(.walRepair) }
        let writerThread = Thread {
            nameCurrentThread("store-writer")
            mailbox.registerOwnThread()
            let loop = WriterLoop(
                store: store, mailbox: mailbox, syncStage: syncStage, outcomes: outcomes,
                beforeCommit: beforeCommit)
            loop.run()
        }
        let syncThread = Thread {
            nameCurrentThread("store-sync")
            mailbox.registerOwnThread()
            syncStage.run()
        }
        syncThread.start()
        writerThread.start()
    }

    deinit {
        close()
    }

    /// Queues the callback and returns true; `completion` is then called exactly once, on one of the
    /// writer's threads, once the transaction holding it is durable (or failed). Returns false at once,
    /// never calling `completion`, when the queue is full or the writer is closed.
    public func submit(_ callback: NewCallback, completion: @escaping Completion) -> Bool {
        mailbox.submit(WriterQueue.Submission(callback: callback, completion: completion))
    }

    /// Runs on the writer thread, between batches: the one writer makes every write, retention's too.
    public func purge(olderThan cutoff: Int64) async throws(CallbackStoreError) -> Int {
        let result = await withCheckedContinuation { (done: CheckedContinuation<Result<Int, CallbackStoreError>, Never>) in
            let queued = mailbox.perform { store, recover in
                done.resume(
                    returning: Result { () throws(CallbackStoreError) -> Int in
                        try recover()
                        return try store.purge(olderThan: cutoff)
                    })
            }
            if !queued { done.resume(returning: .failure(.closed)) }
        }
        return try result.get()
    }

    /// Commits what is queued, stops the writer thread and closes the store. Idempotent.
    /// Called from a completion or the observer it only asks the writer to stop, without waiting.
    public func close() {
        mailbox.stop()
    }

    /// Advances while the writer loop runs, idle waits included (about twice a second); it stands
    /// still while a commit is stuck, e.g. in fsync. For the systemd watchdog.
    public var progressHeartbeat: UInt64 {
        mailbox.heartbeat.load(ordering: .relaxed)
    }

    public var pendingCount: Int {
        mailbox.pendingCount
    }

    /// True from a failed batch until the next successful one: the store cannot save (for readiness).
    public var isFailing: Bool {
        mailbox.isFailing.load(ordering: .relaxed)
    }

    public var statistics: IntakeStatistics {
        IntakeStatistics(
            committedBatches: mailbox.committedBatches.load(ordering: .relaxed),
            committedCallbacks: mailbox.committedCallbacks.load(ordering: .relaxed),
            failedBatches: mailbox.failedBatches.load(ordering: .relaxed),
            failedCallbacks: mailbox.failedCallbacks.load(ordering: .relaxed)
        )
    }
}

/// What the submitting threads and the writer thread share.
final class WriterMailbox: @unchecked Sendable {
    /// Work other than a batch, run by the writer thread with the store and its failed-sync recovery.
    typealias Job = @Sendable (SQLiteCallbackStore, _ recover: () throws(CallbackStoreError) -> Void) -> Void

    enum Work {
        case batch([WriterQueue.Submission])
        /// Idle while the store is failing: a cue to probe it, so recovery shows without traffic.
        case probe
        case job(Job)
    }

    private let condition = NSCondition()
    private var queue: WriterQueue  // guarded by condition
    private var jobs: [Job] = []  // guarded by condition
    private var ownThreads: [pthread_t] = []  // the writer's and the sync thread; guarded by condition

    let heartbeat = Atomic<UInt64>(0)
    let isFailing = Atomic<Bool>(false)
    let committedBatches = Atomic<UInt64>(0)
    let committedCallbacks = Atomic<UInt64>(0)
    let failedBatches = Atomic<UInt64>(0)
    let failedCallbacks = Atomic<UInt64>(0)

    init(queue: WriterQueue) {
        self.queue = queue
    }

    func submit(_ submission: WriterQueue.Submission) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard queue.submit(submission) else { return false }
        condition.signal()
        return true
    }

    var pendingCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return queue.pending.count
    }

    /// Queues `job` for the writer thread; false once the writer is stopping.
    func perform(_ job: @escaping Job) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard queue.phase == .running else { return false }
        jobs.append(job)
        condition.signal()
        return true
    }

    /// On the writer thread: blocks until there is work; nil when the writer must stop. A job runs
    /// before the next batch; jobs queued when the writer stops still run (they are answered).
    func nextWork() -> Work? {
        condition.lock()
        defer { condition.unlock() }
        while true {
            heartbeat.add(1, ordering: .relaxed)
            if !jobs.isEmpty { return .job(jobs.removeFirst()) }
            switch queue.next() {
            case .commit(let batch): return .batch(batch)
            case .stop: return nil
            case .wait:
                let woken = condition.wait(until: Date(timeIntervalSinceNow: GroupCommitWriter.idleTick))
                if !woken && isFailing.load(ordering: .relaxed) { return .probe }
            }
        }
    }

    /// First thing on each of the writer's threads: `stop()` called there must not wait for itself.
    func registerOwnThread() {
        condition.lock()
        defer { condition.unlock() }
        ownThreads.append(pthread_self())
    }

    /// Asks the writer to drain and stop, then waits for it unless called on one of its threads
    /// (from a completion or the observer).
    func stop() {
        condition.lock()
        defer { condition.unlock() }
        queue.requestStop()
        condition.broadcast()
        if ownThreads.contains(where: { pthread_equal($0, pthread_self()) != 0 }) {
            return
        }
        while queue.phase != .stopped {
            condition.wait()
        }
    }

    /// On the writer thread, last.
    func markStopped() {
        condition.lock()
        defer { condition.unlock() }
        queue.markStopped()
        condition.broadcast()
    }
}

/// The writer thread's loop.
private struct WriterLoop {
    let store: SQLiteCallbackStore
    let mailbox: WriterMailbox
    let syncStage: SyncStage
    let outcomes: Outcomes
    let beforeCommit: (@Sendable () -> Void)?

    func run() {
        // The start-up repair (see `GroupCommitWriter.init`), before any traffic; a failure leaves
        // it to the first batch.
        try? store.recoverFromFailedSync()
        var sequence: UInt64 = 0
        while let work = mailbox.nextWork() {
            switch work {
            case .probe:
                probe()
            case .batch(let batch):
                sequence += 1
                commit(batch, sequence: sequence)
            case .job(let job):
                job(store) { () throws(CallbackStoreError) in try recoverFromFailedSync() }
            }
        }
        syncStage.finish()
        // Closing the last connection checkpoints the WAL into the database and deletes it: only
        // once the WAL is whole on disk, if a failed sync left it otherwise.
        if syncStage.hasFailed { store.noteFailedSync() }
        try? store.recoverFromFailedSync()
        store.close()
        mailbox.markStopped()
    }

    private func commit(_ batch: [WriterQueue.Submission], sequence: UInt64) {
        beforeCommit?()
        let start = ContinuousClock.now
        do {
            try recoverFromFailedSync()
            let (receipts, writeAheadLog) = try store.insertUnsynced(batch.map(\.callback))
            syncStage.submit(
                SyncStage.Ticket(
                    batch: batch, receipts: receipts, writeAheadLog: writeAheadLog, started: start, sequence: sequence))
        } catch {
            outcomes.failed(batch, error: error, started: start, sequence: sequence)
        }
    }

    /// Ends a failure episode as soon as a write succeeds again; a probe that
    /// fails changes nothing (the episode was logged when it began).
    private func probe() {
        guard outcomes.isInEpisode else { return }
        // Nothing in flight: the probe's fdatasync must not take a failure a batch's sync should see.
        syncStage.waitUntilIdle()
        guard (try? recoverFromFailedSync()) != nil, (try? store.probeWrite()) != nil, !syncStage.hasFailed else { return }
        outcomes.endEpisode()
    }

    /// After a failed fsync: once every batch handed over has been answered (the sync stage fails
    /// them all), the store makes its WAL whole on disk before anything new is committed.
    private func recoverFromFailedSync() throws(CallbackStoreError) {
        guard syncStage.hasFailed else { return }
        store.noteFailedSync()
        syncStage.waitUntilIdle()
        try store.recoverFromFailedSync()
        syncStage.clearFailure()
    }
}

/// The sync thread: fsyncs the WAL once for every batch committed since the last sync, then
/// acknowledges them in commit order.
///
/// A failed sync is sticky: every batch handed over after it fails without a sync (its frames
/// follow the failed ones in the WAL) until the writer has recovered the store and cleared it.
final class SyncStage: @unchecked Sendable {
    struct Ticket {
        var batch: [WriterQueue.Submission]
        var receipts: [CommitReceipt]
        var writeAheadLog: WriteAheadLog
        var started: ContinuousClock.Instant
        /// Commit order, to tell a success that came before a failure from one after it.
        var sequence: UInt64
    }

    static let maxWaiting = 1
    private let sync: GroupCommitWriter.Sync
    private let outcomes: Outcomes
    /// Called on the sync thread when a sync fails, before any completion.
    private let onFailure: @Sendable () -> Void
    private let condition = NSCondition()
    // Guarded by condition:
    private var waiting: [Ticket] = []
    private var isSyncing = false
    private var isFinished = false
    private var failure: CallbackStoreError?

    init(sync: @escaping GroupCommitWriter.Sync, outcomes: Outcomes, onFailure: @escaping @Sendable () -> Void) {
        self.sync = sync
        self.outcomes = outcomes
        self.onFailure = onFailure
    }

    /// On the writer thread: hands over a committed batch. Waits while another batch already waits
    /// for the next sync, which bounds what is in flight.
    func submit(_ ticket: Ticket) {
        condition.lock()
        defer { condition.unlock() }
        while waiting.count >= Self.maxWaiting {
            condition.wait()
        }
        waiting.append(ticket)
        condition.broadcast()
    }

    /// Whether a sync failed and the failure was not cleared yet.
    var hasFailed: Bool {
        condition.lock()
        defer { condition.unlock() }
        return failure != nil
    }

    /// On the writer thread: waits until every batch handed over has been answered.
    func waitUntilIdle() {
        condition.lock()
        defer { condition.unlock() }
        while !waiting.isEmpty || isSyncing {
            condition.wait()
        }
    }

    /// On the writer thread, once the store has recovered and nothing is in flight.
    func clearFailure() {
        condition.lock()
        defer { condition.unlock() }
        failure = nil
    }

    /// On the writer thread, last: waits until every batch handed over is acknowledged, then ends
    /// the sync thread.
    func finish() {
        condition.lock()
        isFinished = true
        condition.broadcast()
        condition.unlock()
        waitUntilIdle()
    }

    func run() {
        while let (tickets, earlierFailure) = next() {
            var failure = earlierFailure
            var synced: [ObjectIdentifier] = []
            for ticket in tickets where failure == nil && !synced.contains(ObjectIdentifier(ticket.writeAheadLog)) {
                do {
                    try sync(ticket.writeAheadLog)
                    synced.append(ObjectIdentifier(ticket.writeAheadLog))
                } catch {
                    failure = error
                }
            }
            if let failure, earlierFailure == nil {
                // Before any completion runs: the writer must not commit behind the failed frames,
                // nor the checkpointer copy them.
                condition.lock()
                self.failure = failure
                condition.unlock()
                onFailure()
            }
            for ticket in tickets {
                if let failure {
                    outcomes.failed(ticket.batch, error: failure, started: ticket.started, sequence: ticket.sequence)
                } else {
                    outcomes.committed(ticket)
                }
            }
            condition.lock()
            isSyncing = false
            condition.broadcast()
            condition.unlock()
        }
    }

    /// The next tickets, and the failure they inherit; nil once finished.
    private func next() -> ([Ticket], CallbackStoreError?)? {
        condition.lock()
        defer { condition.unlock() }
        while waiting.isEmpty {
            if isFinished { return nil }
            condition.wait()
        }
        let tickets = waiting
        waiting = []
        isSyncing = true
        condition.broadcast()
        return (tickets, failure)
    }
}

/// Reports outcomes (completions, statistics, observer) and logs failure episodes: a run of failed
/// batches is logged once when it starts and once when it ends. Used by both threads.
final class Outcomes: Sendable {
    private struct FailureEpisode {
        var started: ContinuousClock.Instant
        var batches = 0
        var callbacks = 0
        var lastError: CallbackStoreError
        /// The last failed batch: a success committed before it does not end the episode.
        var lastFailedSequence: UInt64
    }

    private let mailbox: WriterMailbox
    private let logger: Logger
    private let observer: GroupCommitWriter.Observer?
    private let episode = Mutex<FailureEpisode?>(nil)

    init(mailbox: WriterMailbox, logger: Logger, observer: GroupCommitWriter.Observer?) {
        self.mailbox = mailbox
        self.logger = logger
        self.observer = observer
    }

    var isInEpisode: Bool {
        episode.withLock { $0 != nil }
    }

    func committed(_ ticket: SyncStage.Ticket) {
        let duration = ContinuousClock.now - ticket.started
        for (submission, receipt) in zip(ticket.batch, ticket.receipts) {
            submission.completion(.success(receipt))
        }
        mailbox.committedBatches.add(1, ordering: .relaxed)
        mailbox.committedCallbacks.add(UInt64(ticket.batch.count), ordering: .relaxed)
        endEpisode(committedSequence: ticket.sequence)
        observer?(.committed(batchSize: ticket.batch.count, duration: duration))
    }

    func failed(
        _ batch: [WriterQueue.Submission], error: CallbackStoreError, started: ContinuousClock.Instant, sequence: UInt64
    ) {
        let duration = ContinuousClock.now - started
        for submission in batch {
            submission.completion(.failure(error))
        }
        mailbox.failedBatches.add(1, ordering: .relaxed)
        mailbox.failedCallbacks.add(UInt64(batch.count), ordering: .relaxed)
        let begins = episode.withLock { episode in
            let begins = episode == nil
            if begins {
                episode = FailureEpisode(started: .now, lastError: error, lastFailedSequence: sequence)
                // Under the lock, so that `isFailing` always says whether an episode is open.
                mailbox.isFailing.store(true, ordering: .relaxed)
            }
            episode?.batches += 1
            episode?.callbacks += batch.count
            episode?.lastError = error
            if let last = episode?.lastFailedSequence, sequence > last {
                episode?.lastFailedSequence = sequence
            }
            return begins
        }
        if begins {
            logger.error(
                "Storing callbacks failed; answering 503 until the store works again",
                metadata: ["error": "\(error)", "store.batch_size": "\(batch.count)"]
            )
        }
        observer?(.failed(batchSize: batch.count, duration: duration, error: error))
    }

    /// Ends the episode: after a probe (nil), or a batch committed after the last failed one.
    func endEpisode(committedSequence: UInt64? = nil) {
        let ended = episode.withLock { episode -> FailureEpisode? in
            guard let current = episode else { return nil }
            if let committedSequence, committedSequence < current.lastFailedSequence { return nil }
            episode = nil
            mailbox.isFailing.store(false, ordering: .relaxed)
            return current
        }
        guard let ended else { return }
        logger.notice(
            "Storing callbacks recovered",
            metadata: [
                "store.failed_batches": "\(ended.batches)",
                "store.failed_callbacks": "\(ended.callbacks)",
                "store.outage_seconds": "\(Self.seconds(.now - ended.started))",
                "store.last_error": "\(ended.lastError)",
            ]
        )
    }

    private static func seconds(_ duration: Duration) -> String {
        String(format: "%.1f", duration.inSeconds)
    }
}

/// Names the calling thread for `top -H`, `ps -L` and perf (Linux keeps 15 bytes). Set from the
/// thread itself: on Linux, Foundation passes a name to the kernel only for the current thread.
func nameCurrentThread(_ name: String) {
    Thread.current.name = name
}
