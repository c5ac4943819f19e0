// The durability engine: a callback is acknowledged once its journal record (and every record
// before it) is fdatasynced; SQLite is the index, filled behind the acknowledgements in large
// transactions with the journal position in the same transaction. Three threads, pipelined:
//
// 1. the writer appends everything waiting in one write (ids assigned there);
// 2. the sync thread fdatasyncs once for every group appended since, then answers them;
// 3. the indexer inserts synced records into SQLite, links repeats, checkpoints, and deletes
//    segments once everything in them is durable in SQLite.
//
// Fail-stop: a failed fsync or write anywhere (journal, SQLite, directory) is never retried as if
// nothing happened. Everything not yet acknowledged fails (503), `onFatal` is called once (the
// service logs one critical line and exits non-zero), and the next start recovers from what is
// really on disk. A full disk fails the groups it hits and recovers by itself.
import CallbackStore
import Foundation
import Logging
import Synchronization
import Vocabulary

public final class JournalStore: CallbackIntake, CallbackMaintenance {
    public typealias FatalHandler = @Sendable (CallbackStoreError) -> Void

    /// Reported to the observer after a group's completions were called (`committed`, `failed`)
    /// and after each index transaction (`indexed`), on the engine's threads.
    public enum Event: Sendable, Hashable {
        /// A group was appended and fdatasynced, and its callbacks answered.
        case committed(batchSize: Int, duration: Duration)
        /// A group was answered with `error` (a full disk, or everything after a fatal error).
        case failed(batchSize: Int, duration: Duration, error: CallbackStoreError)
        /// The indexer stored `records`, `duplicates` of them linked as repeats.
        case indexed(records: Int, duplicates: Int)
    }

    /// Called for each `Event`, for metrics; keep it short.
    public typealias Observer = @Sendable (Event) -> Void

    private let engine: Engine

    /// Recovers (scans the journal from where the index got to, cuts a torn tail, indexes the
    /// rest) and starts the three threads. Throws, naming the file and offset, on damage.
    public init(
        databasePath: String, capacity: Int = 4096, maxQueuedBytes: Int = 4 << 20,
        segmentSize: Int = 64 << 20, logger: Logger, observer: JournalStore.Observer? = nil,
        onFatal: @escaping FatalHandler
    ) throws(CallbackStoreError) {
        engine = try Engine(
            databasePath: databasePath, capacity: capacity, maxQueuedBytes: maxQueuedBytes, segmentSize: segmentSize,
            io: .system, logger: logger, observer: observer, onFatal: onFatal)
    }

    /// With the journal's file-system calls replaced (tests inject failed syncs here).
    init(
        databasePath: String, segmentSize: Int = JournalWriter.defaultSegmentSize, io: JournalIO, logger: Logger,
        onFatal: @escaping FatalHandler
    ) throws(CallbackStoreError) {
        engine = try Engine(
            databasePath: databasePath, capacity: 4096, maxQueuedBytes: 4 << 20, segmentSize: segmentSize, io: io,
            logger: logger, observer: nil, onFatal: onFatal)
    }

    deinit { engine.close() }

    public func submit(_ callback: NewCallback, completion: @escaping Completion) -> Bool {
        engine.submit(callback, completion: completion)
    }

    public var isFailing: Bool { engine.isFailing }
    /// Advances only while both the writer and the indexer turn: a journal stuck in fdatasync or an
    /// index stuck on a lock both stop it (for the systemd watchdog).
    public var progressHeartbeat: UInt64 { engine.combinedHeartbeat }
    public var statistics: IntakeStatistics { engine.statistics }
    public func close() { engine.close() }

    public func purge(olderThan cutoff: Int64) async throws(CallbackStoreError) -> Int {
        try await engine.purge(olderThan: cutoff)
    }

    /// A reader beside the engine: its own read-only connection, woken by the indexer.
    public func reader() throws(CallbackStoreError) -> any CallbackReader {
        JournalReader(store: try SQLiteCallbackStore(path: engine.databasePath, readOnly: true), progress: engine.progress)
    }

    /// How far the index trails the acknowledgements: records acknowledged but not yet queryable,
    /// and for how long the oldest of them has waited.
    public var indexLag: (records: Int64, milliseconds: Int64) { engine.progress.lag }
}

/// The threads and what they share. Each stage's state is guarded by its own condition.
final class Engine: @unchecked Sendable {
    /// A group appended by the writer, waiting for its fdatasync.
    private struct Group {
        var submissions: [WriterQueue.Submission]
        var ids: [Int64]
        var end: JournalPosition
        var started: ContinuousClock.Instant
    }

    /// Work for the indexer thread besides records: purges (the one writer of SQLite).
    typealias Job = @Sendable (SQLiteCallbackStore) -> Void

    /// Groups the writer may append ahead of the sync: one syncing, one waiting.
    static let groupsInFlight = 2
    /// The indexer takes at most this many records per transaction.
    static let indexBatch = 4096
    /// How often the indexer checkpoints SQLite and deletes journal segments it no longer needs.
    /// Often, so that each checkpoint's writes and fsyncs are small: once a second, the database
    /// file's fsync held the journal's fdatasync back for 30–40 ms (the p99); every 20 ms, about
    /// 5 ms (bench/RESULTS.md, "The checkpoint's tail").
    static let checkpointInterval: Duration = .milliseconds(20)
    static let idleTick: TimeInterval = 0.5

    let databasePath: String
    let progress = IndexProgress()
    let heartbeat = Atomic<UInt64>(0)
    let indexerHeartbeat = Atomic<UInt64>(0)
    private let heartbeatsSeen = Mutex((writer: UInt64(0), indexer: UInt64(0), combined: UInt64(0)))

    var combinedHeartbeat: UInt64 {
        let now = (heartbeat.load(ordering: .relaxed), indexerHeartbeat.load(ordering: .relaxed))
        return heartbeatsSeen.withLock { seen in
            if now.0 != seen.writer && now.1 != seen.indexer {
                seen = (now.0, now.1, seen.combined + 1)
            }
            return seen.combined
        }
    }
    private let logger: Logger
    private let onFatal: JournalStore.FatalHandler
    private let observer: JournalStore.Observer?
    private let directory: JournalDirectory
    private let journal: JournalWriter
    private let index: SQLiteCallbackStore

    private let intakeCondition = NSCondition()
    private var queue: WriterQueue  // intakeCondition

    private let syncCondition = NSCondition()
    private var appended: [Group] = []  // syncCondition
    private var writerDone = false  // syncCondition

    private let indexCondition = NSCondition()
    /// Synced groups waiting for the indexer, each with the journal position after it.
    private var synced: [(records: [JournalRecord], end: JournalPosition)] = []  // indexCondition
    private var jobs: [Job] = []  // indexCondition
    private var syncDone = false  // indexCondition

    private let failure = Mutex<CallbackStoreError?>(nil)
    private let diskFull = Atomic<Bool>(false)
    private let committedBatches = Atomic<UInt64>(0)
    private let committedCallbacks = Atomic<UInt64>(0)
    private let failedBatches = Atomic<UInt64>(0)
    private let failedCallbacks = Atomic<UInt64>(0)
    private let stopped = DispatchGroup()
    private let closing = Atomic<Bool>(false)

    init(
        databasePath: String, capacity: Int, maxQueuedBytes: Int, segmentSize: Int, io: JournalIO, logger: Logger,
        observer: JournalStore.Observer?, onFatal: @escaping JournalStore.FatalHandler
    ) throws(CallbackStoreError) {
        self.databasePath = databasePath
        self.logger = logger
        self.onFatal = onFatal
        self.observer = observer
        queue = WriterQueue(capacity: capacity, maxQueuedBytes: maxQueuedBytes)
        index = try SQLiteCallbackStore(path: databasePath, logger: logger)
        directory = JournalDirectory(path: JournalDirectory.path(besideDatabase: databasePath), io: io)
        do throws(CallbackStoreError) {
            do throws(JournalError) { try directory.createIfMissing() } catch { throw error.asStoreError }
            let recovered = try Self.recover(directory: directory, index: index, logger: logger)
            do throws(JournalError) {
                journal = try JournalWriter(
                    directory: directory, continuingAt: recovered.end, firstID: recovered.nextID, segmentSize: segmentSize)
            } catch {
                throw error.asStoreError
            }
            progress.acknowledged(upTo: recovered.nextID - 1)
            progress.indexed(upTo: recovered.nextID - 1)
        } catch {
            index.close()
            throw error
        }
        start("journal-writer") { [self] in writerLoop() }
        start("journal-sync") { [self] in syncLoop() }
        start("journal-indexer") { [self] in indexerLoop() }
    }

    private func start(_ name: String, _ body: @escaping @Sendable () -> Void) {
        stopped.enter()
        let thread = Thread { [stopped, self] in
            nameCurrentThread(name)
            self.ownThreads.withLock { $0.append(UInt(pthread_self())) }
            body()
            stopped.leave()
        }
        thread.start()
    }

    /// The engine's three threads: `close()` called on one of them (from a completion or the
    /// observer) must not wait for itself.
    private let ownThreads = Mutex<[UInt]>([])
    private var isOnOwnThread: Bool { ownThreads.withLock { $0.contains(UInt(pthread_self())) } }

    // MARK: Recovery

    /// Indexes what the journal holds beyond the index's position, cuts a torn tail, and says
    /// where the writer goes on. Ids continue after the index's highest one (a migrated database).
    private static func recover(
        directory: JournalDirectory, index: SQLiteCallbackStore, logger: Logger
    ) throws(CallbackStoreError) -> (end: JournalPosition?, nextID: Int64) {
        let position = try index.journalPosition()
        let firstID = try index.lastID() + 1
        do {
            let scanner = try JournalScanner(directory: directory, from: position, firstID: firstID)
            var batch: [JournalRecord] = []
            var indexed = 0
            while let record = try scanner.next() {
                batch.append(record)
                if batch.count >= indexBatch, let at = scanner.position {
                    _ = try index.index(batch, through: at)
                    indexed += batch.count
                    batch.removeAll(keepingCapacity: true)
                }
            }
            if !batch.isEmpty, let at = scanner.position {
                _ = try index.index(batch, through: at)
                indexed += batch.count
            }
            if scanner.tail != .clean {
                logger.warning("journal: cutting the unacknowledged tail", metadata: ["store.journal_tail": "\(scanner.tail)"])
                try scanner.cutTail()
            }
            if indexed > 0 {
                logger.notice("journal: indexed on start-up", metadata: ["store.recovered_records": "\(indexed)"])
            }
            if try index.checkpointIndex(), let through = scanner.end.map({ $0.nextID - 1 }) {
                try directory.deleteSegments(through: through)
            }
            return (scanner.end, scanner.nextID)
        } catch let error as JournalError {
            throw error.asStoreError
        } catch let error as CallbackStoreError {
            throw error
        } catch {
            throw .backend(message: "\(error)")
        }
    }

    // MARK: Intake

    func submit(_ callback: NewCallback, completion: @escaping CallbackIntake.Completion) -> Bool {
        intakeCondition.lock()
        defer { intakeCondition.unlock() }
        guard failure.withLock({ $0 }) == nil, queue.submit(.init(callback: callback, completion: completion)) else {
            return false
        }
        intakeCondition.signal()
        return true
    }

    var isFailing: Bool { failure.withLock { $0 } != nil || diskFull.load(ordering: .relaxed) }

    var statistics: IntakeStatistics {
        IntakeStatistics(
            committedBatches: committedBatches.load(ordering: .relaxed), committedCallbacks: committedCallbacks.load(ordering: .relaxed),
            failedBatches: failedBatches.load(ordering: .relaxed), failedCallbacks: failedCallbacks.load(ordering: .relaxed))
    }

    /// Drains: what was accepted is appended, synced and answered, then indexed and checkpointed.
    /// The indexer closes the index when it has indexed the last group. Called on one of the
    /// engine's own threads, this only asks them to stop.
    func close() {
        let first = !closing.exchange(true, ordering: .acquiringAndReleasing)
        if first {
            intakeCondition.lock()
            queue.requestStop()
            intakeCondition.broadcast()
            intakeCondition.unlock()
        }
        guard !isOnOwnThread else { return }
        stopped.wait()
    }

    func purge(olderThan cutoff: Int64) async throws(CallbackStoreError) -> Int {
        let result = await withCheckedContinuation { (done: CheckedContinuation<Result<Int, CallbackStoreError>, Never>) in
            indexCondition.lock()
            defer { indexCondition.unlock() }
            guard !syncDone else {
                done.resume(returning: .failure(.closed))
                return
            }
            jobs.append { [self] store in
                // After a fatal error nothing more is written, a purge included.
                if let error = failure.withLock({ $0 }) {
                    done.resume(returning: .failure(error))
                    return
                }
                done.resume(returning: Result { () throws(CallbackStoreError) -> Int in try store.purge(olderThan: cutoff) })
            }
            indexCondition.signal()
        }
        return try result.get()
    }

    // MARK: The writer thread

    private func writerLoop() {
        while let batch = nextBatch() {
            let started = ContinuousClock.now
            if let error = failure.withLock({ $0 }) {
                fail(batch, error, started: started)
                continue
            }
            waitForRoomInFlight()
            do throws(JournalError) {
                let ids = try journal.append(batch.map(\.callback))
                endDiskFullEpisode()
                syncCondition.lock()
                appended.append(Group(submissions: batch, ids: ids, end: journal.end, started: started))
                syncCondition.signal()
                syncCondition.unlock()
            } catch {
                if case .full = error {
                    if !diskFull.exchange(true, ordering: .relaxed) {
                        logger.error("store cannot append to the journal: \(error)", metadata: ["store.path": "\(databasePath)"])
                    }
                    fail(batch, .full(message: "\(error)"), started: started)
                } else {
                    fail(batch, stop(error.asStoreError), started: started)
                }
            }
        }
        syncCondition.lock()
        writerDone = true
        syncCondition.signal()
        syncCondition.unlock()
    }

    private func nextBatch() -> [WriterQueue.Submission]? {
        while true {
            intakeCondition.lock()
            heartbeat.add(1, ordering: .relaxed)
            let next = queue.next()
            switch next {
            case .commit(let batch):
                intakeCondition.unlock()
                return batch
            case .stop:
                queue.markStopped()
                intakeCondition.unlock()
                return nil
            case .wait:
                let woken = intakeCondition.wait(until: Date(timeIntervalSinceNow: Self.idleTick))
                intakeCondition.unlock()
                // Idle while the disk was full: find out whether it has room again, without traffic.
                if !woken && diskFull.load(ordering: .relaxed) && journal.hasRoom() { endDiskFullEpisode() }
            }
        }
    }

    private func endDiskFullEpisode() {
        if diskFull.exchange(false, ordering: .relaxed) {
            logger.notice("Storing callbacks recovered: the journal takes appends again", metadata: ["store.path": "\(databasePath)"])
        }
    }

    private func waitForRoomInFlight() {
        syncCondition.lock()
        while appended.count >= Self.groupsInFlight && failure.withLock({ $0 }) == nil { syncCondition.wait() }
        syncCondition.unlock()
    }

    // MARK: The sync thread

    private func syncLoop() {
        while true {
            syncCondition.lock()
            while appended.isEmpty && !writerDone { syncCondition.wait() }
            let groups = appended
            appended = []
            let done = writerDone && groups.isEmpty
            syncCondition.broadcast()  // room in flight
            syncCondition.unlock()
            if done { break }
            if let error = failure.withLock({ $0 }) {
                for group in groups { fail(group.submissions, error, started: group.started) }
                continue
            }
            do throws(JournalError) {
                try journal.sync()
            } catch {
                let fatal = stop(error.asStoreError)
                for group in groups { fail(group.submissions, fatal, started: group.started) }
                continue
            }
            // Durable: answer, then hand the records to the indexer.
            var records: [JournalRecord] = []
            for group in groups {
                for (submission, id) in zip(group.submissions, group.ids) {
                    submission.completion(.success(CommitReceipt(id: id, duplicateOf: nil)))
                    records.append(JournalRecord(id: id, callback: submission.callback))
                }
                committedBatches.add(1, ordering: .relaxed)
                committedCallbacks.add(UInt64(group.ids.count), ordering: .relaxed)
                observer?(.committed(batchSize: group.ids.count, duration: ContinuousClock.now - group.started))
            }
            if let last = groups.last {
                progress.acknowledged(upTo: last.end.nextID - 1)
                indexCondition.lock()
                synced.append((records, last.end))
                indexCondition.signal()
                indexCondition.unlock()
            }
        }
        indexCondition.lock()
        syncDone = true
        indexCondition.signal()
        indexCondition.unlock()
    }

    // MARK: The indexer thread

    private func indexerLoop() {
        var lastCheckpoint = ContinuousClock.now
        var checkpointedThrough: Int64 = 0
        var indexedThrough = progress.indexedID
        var waitingSince: ContinuousClock.Instant?
        var checkpointWaitsForRoom = false
        while true {
            indexerHeartbeat.add(1, ordering: .relaxed)
            indexCondition.lock()
            while synced.isEmpty && jobs.isEmpty && !syncDone {
                _ = indexCondition.wait(until: Date(timeIntervalSinceNow: Self.idleTick))
                indexerHeartbeat.add(1, ordering: .relaxed)
                if ContinuousClock.now - lastCheckpoint >= Self.checkpointInterval && checkpointedThrough < indexedThrough { break }
            }
            // Whole groups, up to about `indexBatch` records: the position after the last one
            // is where this transaction leaves the journal.
            var records: [JournalRecord] = []
            var end: JournalPosition?
            var taken = 0
            while taken < synced.count, records.isEmpty || records.count + synced[taken].records.count <= Self.indexBatch {
                records += synced[taken].records
                end = synced[taken].end
                taken += 1
            }
            let pendingJobs = jobs
            jobs = []
            let finished = syncDone && synced.count == taken
            indexCondition.unlock()

            if failure.withLock({ $0 }) != nil {
                // Stopping: the next start indexes these from the journal.
                indexCondition.lock()
                synced.removeFirst(taken)
                indexCondition.unlock()
                for job in pendingJobs { job(index) }
                if finished { break }
                continue
            }
            if let end, !records.isEmpty {
                do throws(CallbackStoreError) {
                    let receipts = try index.index(records, through: end)
                    observer?(.indexed(records: receipts.count, duplicates: receipts.count { $0.duplicateOf != nil }))
                    indexCondition.lock()
                    synced.removeFirst(taken)
                    indexCondition.unlock()
                    indexedThrough = records.last!.id
                    progress.indexed(upTo: indexedThrough)
                    if let since = waitingSince {
                        waitingSince = nil
                        logger.notice(
                            "journal: indexing resumed", metadata: ["store.waited_seconds": "\((ContinuousClock.now - since).inSeconds)"])
                    }
                } catch {
                    switch error {
                    case .busy, .full:
                        // The journal holds them: index them once the lock is released or space freed.
                        if waitingSince == nil {
                            waitingSince = .now
                            logger.warning("journal: indexing waits; callbacks are still acknowledged", metadata: ["error": "\(error)"])
                        }
                        for job in pendingJobs { job(index) }
                        Thread.sleep(forTimeInterval: 0.1)
                        continue
                    default:
                        _ = stop(error)
                    }
                }
            }
            for job in pendingJobs { job(index) }
            if finished || ContinuousClock.now - lastCheckpoint >= Self.checkpointInterval {
                lastCheckpoint = .now
                if checkpointedThrough < indexedThrough || finished {
                    do throws(CallbackStoreError) {
                        if try index.checkpointIndex() {
                            checkpointWaitsForRoom = false
                            checkpointedThrough = indexedThrough
                            // Everything in these segments is durable in SQLite now.
                            do throws(JournalError) {
                                try directory.deleteSegments(through: checkpointedThrough)
                            } catch {
                                logger.warning("journal: old segments not removed; trying again later", metadata: ["error": "\(error)"])
                            }
                        }
                    } catch {
                        if case .full = error, !finished {
                            // A write refused for room (ENOSPC, the file size limit) leaves the WAL as
                            // it was, and the journal still holds every record: checkpoint again on the
                            // next turn. Only a failed sync leaves the disk unknown, and stops.
                            if !checkpointWaitsForRoom {
                                checkpointWaitsForRoom = true
                                logger.warning("journal: the index checkpoint waits for room", metadata: ["error": "\(error)"])
                            }
                        } else {
                            _ = stop(error)
                        }
                    }
                }
            }
            if finished { break }
        }
        index.close()
    }

    // MARK: Failure

    private func fail(_ batch: [WriterQueue.Submission], _ error: CallbackStoreError, started: ContinuousClock.Instant) {
        for submission in batch { submission.completion(.failure(error)) }
        failedBatches.add(1, ordering: .relaxed)
        failedCallbacks.add(UInt64(batch.count), ordering: .relaxed)
        observer?(.failed(batchSize: batch.count, duration: ContinuousClock.now - started, error: error))
    }

    /// The first fatal error wins: it is logged once, reported once, and fails everything after it.
    @discardableResult
    private func stop(_ error: CallbackStoreError) -> CallbackStoreError {
        let (first, isNew) = failure.withLock { current -> (CallbackStoreError, Bool) in
            if let current { return (current, false) }
            current = error
            return (error, true)
        }
        guard isNew else { return first }
        let cause: String
        switch first {
        case .ioError(let message), .full(let message), .corrupt(let message), .backend(let message): cause = message
        default: cause = "\(first)"
        }
        logger.critical(
            "\("the store stops after a failed disk write or sync (\(cause)); nothing unacknowledged was acknowledged, and the next start recovers from what is on disk: check the disk (dmesg)")",
            metadata: ["store.path": "\(databasePath)"])
        syncCondition.lock()
        syncCondition.broadcast()
        syncCondition.unlock()
        onFatal(first)
        return first
    }
}

/// What the indexer has made queryable, for readers in this process and the lag metric.
final class IndexProgress: Sendable {
    private struct State {
        var acknowledged: Int64 = 0
        /// Groups acknowledged and not yet indexed: their last id and when they were answered.
        var unindexed: [(lastID: Int64, at: ContinuousClock.Instant)] = []
    }
    private let state = Mutex(State())
    private let arrivals = ArrivalWaiters()

    var indexedID: Int64 { arrivals.latest }

    func acknowledged(upTo id: Int64) {
        state.withLock { state in
            guard id > state.acknowledged else { return }
            state.acknowledged = id
            state.unindexed.append((id, .now))
        }
    }

    func indexed(upTo id: Int64) {
        state.withLock { state in state.unindexed.removeAll { $0.lastID <= id } }
        arrivals.stored(upTo: id)
    }

    var lag: (records: Int64, milliseconds: Int64) {
        let indexed = arrivals.latest
        return state.withLock { state in
            (
                max(0, state.acknowledged - indexed),
                // An entry the indexer passed just now may not be removed yet: skip it.
                state.unindexed.first { $0.lastID > indexed }.map { (ContinuousClock.now - $0.at).inMilliseconds } ?? 0
            )
        }
    }

    /// Waits until an id above `id` is indexed (true) or `timeout` passes (false).
    func wait(after id: Int64, timeout: Duration) async -> Bool { await arrivals.wait(after: id, timeout: timeout) }
}

/// SQLite's view of the index, woken by the indexer instead of polling.
final class JournalReader: CallbackReader, @unchecked Sendable {
    private let store: SQLiteCallbackStore
    private let progress: IndexProgress

    init(store: SQLiteCallbackStore, progress: IndexProgress) {
        self.store = store
        self.progress = progress
    }

    func query(_ filter: CallbackFilter) throws(CallbackStoreError) -> [StoredCallback] { try store.query(filter) }
    func callback(id: Int64) throws(CallbackStoreError) -> StoredCallback? { try store.callback(id: id) }
    func callbacks(after id: Int64, limit: Int, includeDuplicates: Bool) throws(CallbackStoreError) -> [StoredCallback] {
        try store.callbacks(after: id, limit: limit, includeDuplicates: includeDuplicates)
    }
    func page(after id: Int64, matching filter: CallbackFilter, limit: Int) throws(CallbackStoreError) -> CallbackPage {
        try store.page(after: id, matching: filter, limit: limit)
    }
    func stats() throws(CallbackStoreError) -> CallbackStats { try store.stats() }
    func lastID() throws(CallbackStoreError) -> Int64 { try store.lastID() }

    func waitForCallbacks(after id: Int64, timeout: Duration) async throws(CallbackStoreError) -> Bool {
        if try lastID() > id { return true }
        _ = await progress.wait(after: id, timeout: timeout)
        return try lastID() > id
    }
}

/// Names the calling thread for `top -H`, `ps -L` and perf (Linux keeps 15 bytes). Set from the
/// thread itself: on Linux, Foundation passes a name to the kernel only for the current thread.
func nameCurrentThread(_ name: String) {
    Thread.current.name = name
}

extension JournalError {
    /// The store API's words for it.
    var asStoreError: CallbackStoreError {
        switch self {
        case .syncFailed, .writeFailed: .ioError(message: description)
        case .full: .full(message: description)
        case .ioError: .ioError(message: description)
        case .damaged: .corrupt(message: description)
        case .recordTooLarge: .backend(message: description)
        }
    }
}
