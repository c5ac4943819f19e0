// The intake for several instances sharing one PostgreSQL database. Writer threads (one by
// default, `storage.postgresql.writers`), each with its own connection, take everything waiting
// and commit it in ONE transaction (group commit), a single statement calling
// `thingspace_listener_store` (ids, repeats and rows in one round trip): while a batch commits,
// the next accumulates. Groups of every writer and instance commit side by side (schema migration
// 5 serialises only the allocation of ids); readers hear of them from `CommitNotifier`, after
// COMMIT. A callback is acknowledged only after its transaction's COMMIT returned.
//
// More writers help where a COMMIT waits on the network (a synchronous standby); on a server
// short of CPU they only make groups smaller and each callback dearer (bench/RESULTS.md).
//
// An outage (server down, restarting, failing over, the connection cut) fails the batch with
// `.unavailable` (503; ThingSpace retries), and each writer reconnects with backoff. While none
// is connected, callbacks fail at once instead of waiting for the outage to end.
import CallbackStore
import Foundation
import Logging
import Synchronization
import Vocabulary

public final class PostgreSQLCallbackStore: CallbackIntake, CallbackMaintenance {
    /// Reported to the observer after a batch's completions were called, on the writer thread.
    public enum Event: Sendable {
        case committed(batchSize: Int, duration: Duration)
        case failed(batchSize: Int, duration: Duration, error: CallbackStoreError)
    }

    /// Called for each `Event`, for metrics; keep it short.
    public typealias Observer = @Sendable (Event) -> Void

    /// The channel notified after commits, with the highest id stored as the payload.
    public static let notificationChannel = "thingspace_listener_callbacks"
    /// The most callbacks in one transaction.
    static let batchLimit = 1024

    private let writer: Writer
    private let settings: PostgreSQLSettings

    /// Connects (an outage throws `.unavailable`: the caller retries), migrates the schema and
    /// starts `writers` writer threads, each with its own connection.
    public init(
        settings: PostgreSQLSettings, capacity: Int, writers: Int = 1, logger: Logger, observer: Observer? = nil
    ) throws(CallbackStoreError) {
        self.settings = settings
        var connections: [PostgreSQLConnection] = []
        do {
            connections.append(try PostgreSQLConnection(settings))
            try PostgreSQLSchema.migrate(connections[0], location: settings.description)
            while connections.count < max(1, writers) { connections.append(try PostgreSQLConnection(settings)) }
        } catch {
            for connection in connections { connection.close() }
            throw .from(error)
        }
        writer = Writer(
            connections: connections, notifier: CommitNotifier(settings: settings), settings: settings, capacity: capacity,
            logger: logger, observer: observer)
    }

    deinit { writer.close() }

    public func submit(_ callback: NewCallback, completion: @escaping Completion) -> Bool {
        writer.submit(callback, completion: completion)
    }

    public var isFailing: Bool { writer.isFailing }
    public var progressHeartbeat: UInt64 { writer.heartbeat.load(ordering: .relaxed) }
    public var statistics: IntakeStatistics { writer.statistics }
    public func close() { writer.close() }

    public func purge(olderThan cutoff: Int64) async throws(CallbackStoreError) -> Int {
        try await writer.purge(olderThan: cutoff)
    }

    /// A reader with a connection of its own.
    public func reader() throws(CallbackStoreError) -> any CallbackReader {
        try PostgreSQLCallbackReader(settings: settings)
    }
}

/// What the writer threads share with submitters (guarded by `condition`), and the threads.
private final class Writer: @unchecked Sendable {
    struct Submission {
        var callback: NewCallback
        var completion: CallbackIntake.Completion
    }

    /// Work other than a batch (a purge chunk), run by whichever thread takes it.
    typealias Job = (WriterThread) -> Void

    static let idleTick: TimeInterval = 0.25

    /// Threads with a connection: with none, what waits fails at once (nobody could commit it).
    let connected = Atomic<Int>(0)
    /// The last statement failed for a reason other than the connection (cleared by a commit).
    let statementsFail = Atomic<Bool>(false)
    let heartbeat = Atomic<UInt64>(0)
    let committedBatches = Atomic<UInt64>(0)
    let committedCallbacks = Atomic<UInt64>(0)
    let failedBatches = Atomic<UInt64>(0)
    let failedCallbacks = Atomic<UInt64>(0)

    let settings: PostgreSQLSettings
    let logger: Logger
    let observer: PostgreSQLCallbackStore.Observer?
    private let capacity: Int

    private let condition = NSCondition()
    private var pending: [Submission] = []  // condition
    private var jobs: [Job] = []  // condition
    private var stopping = false  // condition
    private var running = 0  // condition: threads not finished yet

    private let threadIDs = Mutex<[pthread_t]>([])

    let notifier: CommitNotifier

    init(
        connections: [PostgreSQLConnection], notifier: CommitNotifier, settings: PostgreSQLSettings, capacity: Int, logger: Logger,
        observer: PostgreSQLCallbackStore.Observer?
    ) {
        self.notifier = notifier
        self.settings = settings
        self.capacity = max(1, capacity)
        self.logger = logger
        self.observer = observer
        running = connections.count
        connected.store(connections.count, ordering: .relaxed)
        for (index, connection) in connections.enumerated() {
            let writerThread = WriterThread(writer: self, connection: connection)
            let thread = Thread { [self] in
                Thread.current.name = "pg-writer-\(index)"
                threadIDs.withLock { $0.append(pthread_self()) }
                writerThread.run()
                condition.lock()
                running -= 1
                if running == 0 { notifier.close() }
                condition.broadcast()
                condition.unlock()
            }
            thread.start()
        }
    }

    var statistics: IntakeStatistics {
        IntakeStatistics(
            committedBatches: committedBatches.load(ordering: .relaxed), committedCallbacks: committedCallbacks.load(ordering: .relaxed),
            failedBatches: failedBatches.load(ordering: .relaxed), failedCallbacks: failedCallbacks.load(ordering: .relaxed))
    }

    var isFailing: Bool { connected.load(ordering: .relaxed) == 0 || statementsFail.load(ordering: .relaxed) }

    func submit(_ callback: NewCallback, completion: @escaping CallbackIntake.Completion) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !stopping, pending.count < capacity else { return false }
        pending.append(Submission(callback: callback, completion: completion))
        // One wake-up per group, not per callback: the first one waiting takes what follows too.
        if pending.count == 1 { condition.signal() }
        return true
    }

    /// Commits what was accepted, then stops the threads and closes their connections. From a
    /// writer thread itself (a completion or the observer), only asks them to stop.
    func close() {
        let onWriterThread = threadIDs.withLock { $0.contains { pthread_equal($0, pthread_self()) != 0 } }
        condition.lock()
        defer { condition.unlock() }
        stopping = true
        condition.broadcast()
        while !onWriterThread && running > 0 { condition.wait() }
    }

    typealias PurgeResult = CheckedContinuation<Result<Int, CallbackStoreError>, Never>

    func purge(olderThan cutoff: Int64) async throws(CallbackStoreError) -> Int {
        let result = await withCheckedContinuation { (done: PurgeResult) in
            condition.lock()
            defer { condition.unlock() }
            guard !stopping else { return done.resume(returning: .failure(.closed)) }
            jobs.append(purgeJob(olderThan: cutoff, purgedSoFar: 0, done: done))
            condition.signal()
        }
        return try result.get()
    }

    /// One chunk, then the next one queued behind the batches waiting by then: callbacks never
    /// wait for a whole purge, only for a chunk.
    private func purgeJob(olderThan cutoff: Int64, purgedSoFar: Int, done: PurgeResult) -> Job {
        { [self] thread in
            do throws(CallbackStoreError) {
                let deleted = try thread.purgeChunk(olderThan: cutoff)
                guard deleted > 0 else { return done.resume(returning: .success(purgedSoFar)) }
                condition.lock()
                jobs.append(purgeJob(olderThan: cutoff, purgedSoFar: purgedSoFar + deleted, done: done))
                condition.signal()
                condition.unlock()
            } catch {
                done.resume(returning: .failure(error))
            }
        }
    }

    /// Everything waiting (up to `batchLimit`) for one thread, and the jobs; `nil` once stopping
    /// with nothing left. Waits up to `idleTick` for work. `all`: everything, without waiting.
    func take(all: Bool = false) -> (batch: [Submission], jobs: [Job])? {
        condition.lock()
        defer { condition.unlock() }
        while !all && pending.isEmpty && jobs.isEmpty && !stopping {
            if !condition.wait(until: Date(timeIntervalSinceNow: Self.idleTick)) { break }
        }
        let batch = all ? pending : Array(pending.prefix(PostgreSQLCallbackStore.batchLimit))
        pending.removeFirst(batch.count)
        let taken = jobs
        jobs = []
        if stopping && batch.isEmpty && taken.isEmpty && pending.isEmpty { return nil }
        // More than one batch waits: wake another thread for the rest.
        if !pending.isEmpty { condition.signal() }
        return (batch, taken)
    }

    /// A thread without a connection waits for its next attempt: woken early by work only when
    /// no other thread could take it. A submitter's wake-up that reached it is passed on to all,
    /// so that a connected thread takes the work now rather than at its idle tick.
    func waitDisconnected(for wait: Duration, othersConnected: Bool) {
        condition.lock()
        defer { condition.unlock() }
        let work = !pending.isEmpty || !jobs.isEmpty
        if othersConnected && work { condition.broadcast() }
        if othersConnected || (!work && !stopping) {
            _ = condition.wait(until: Date(timeIntervalSinceNow: max(0, wait.seconds)))
        }
    }

    var isStopping: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopping
    }

    func fail(_ batch: [Submission], _ error: CallbackStoreError, started: ContinuousClock.Instant) {
        guard !batch.isEmpty else { return }
        for submission in batch { submission.completion(.failure(error)) }
        failedBatches.add(1, ordering: .relaxed)
        failedCallbacks.add(UInt64(batch.count), ordering: .relaxed)
        observer?(.failed(batchSize: batch.count, duration: ContinuousClock.now - started, error: error))
    }
}

/// One writer thread and its connection: commits the groups it takes, each in one statement, while
/// the other threads commit theirs (schema migration 5 serialises only the allocation of ids).
/// Confined to its thread once started.
private final class WriterThread: @unchecked Sendable {
    static let firstBackoff: Duration = .milliseconds(250)
    static let longestBackoff: Duration = .seconds(5)
    /// Rows deleted per purge transaction: each holds the allocation lock, so commits wait at most one chunk.
    static let purgeChunk = 5_000

    private let writer: Writer
    private var connection: PostgreSQLConnection?
    private var backoff = WriterThread.firstBackoff
    private var nextAttempt = ContinuousClock.now
    private var lastReconnectFailure: String?

    private var settings: PostgreSQLSettings { writer.settings }
    private var logger: Logger { writer.logger }

    init(writer: Writer, connection: PostgreSQLConnection) {
        self.writer = writer
        self.connection = connection
    }

    func run() {
        while true {
            writer.heartbeat.add(1, ordering: .relaxed)
            if connection == nil {
                let stop = writer.isStopping
                // Closing: one last try, so that what was accepted is committed if it can be.
                if stop { reconnect() }
                // With another thread connected, what waits is left to it.
                let othersConnected = writer.connected.load(ordering: .relaxed) > 0
                if connection == nil {
                    // Nobody waits for the outage to end: what arrived while disconnected fails
                    // now (503, Retry-After), before a reconnect that may take its connect timeout.
                    if !othersConnected, let (batch, waitingJobs) = writer.take(all: true) {
                        writer.fail(batch, .unavailable(message: "not connected to PostgreSQL (reconnecting)"), started: .now)
                        for job in waitingJobs { job(self) }
                    }
                    if stop { break }
                    if ContinuousClock.now >= nextAttempt { reconnect() }
                }
                if connection == nil {
                    writer.waitDisconnected(
                        for: min(nextAttempt - ContinuousClock.now, .seconds(Writer.idleTick)), othersConnected: othersConnected)
                    continue
                }
            }
            guard let (batch, waitingJobs) = writer.take() else { break }
            if batch.isEmpty && waitingJobs.isEmpty {
                checkIdleConnection()
                continue
            }
            if !batch.isEmpty { commit(batch) }
            for job in waitingJobs { job(self) }
        }
        connection?.close()
        connection = nil
    }

    /// Idle: notice a connection the server closed (a restart) now, rather than with a batch.
    private func checkIdleConnection() {
        guard let connection else { return }
        do {
            _ = try connection.notifications(waitingUpTo: .zero)
        } catch {
            lost(error)
        }
    }

    private func reconnect() {
        do {
            // libpq's shortest connect timeout: callbacks arriving meanwhile wait that long at most.
            connection = try PostgreSQLConnection(settings, connectTimeoutSeconds: 2)
            backoff = Self.firstBackoff
            lastReconnectFailure = nil
            if writer.connected.add(1, ordering: .relaxed).newValue == 1 {
                logger.notice("Reconnected to PostgreSQL; storing callbacks resumes", metadata: ["store.url": "\(settings.description)"])
            }
        } catch {
            nextAttempt = .now + backoff
            backoff = min(backoff * 2, Self.longestBackoff)
            // Once per reason, so that a lasting one (a changed password, a full server) is seen.
            if error.message != lastReconnectFailure {
                lastReconnectFailure = error.message
                logger.warning(
                    "Cannot reconnect to PostgreSQL yet; retrying", metadata: ["error": "\(error)", "store.url": "\(settings.description)"])
            }
        }
    }

    /// The connection is gone: this thread takes nothing until `reconnect` succeeds, and when it
    /// was the last one connected, everything fails until one is back.
    private func lost(_ error: PostgreSQLError) {
        if writer.connected.subtract(1, ordering: .relaxed).newValue == 0 {
            logger.error(
                "Lost the connection to PostgreSQL; callbacks are refused (503) until it is back",
                metadata: ["error": "\(error)", "store.url": "\(settings.description)"])
        }
        connection?.close()
        connection = nil
        nextAttempt = .now + backoff
        backoff = min(backoff * 2, Self.longestBackoff)
    }

    private func commit(_ batch: [Writer.Submission]) {
        let started = ContinuousClock.now
        guard let connection else {
            return writer.fail(batch, .unavailable(message: "not connected to PostgreSQL"), started: started)
        }
        do {
            let receipts = try Self.write(batch.map(\.callback), on: connection)
            writer.statementsFail.store(false, ordering: .relaxed)
            for (submission, receipt) in zip(batch, receipts) { submission.completion(.success(receipt)) }
            if let last = receipts.last { writer.notifier.stored(upTo: last.id) }
            writer.committedBatches.add(1, ordering: .relaxed)
            writer.committedCallbacks.add(UInt64(batch.count), ordering: .relaxed)
            writer.observer?(.committed(batchSize: batch.count, duration: ContinuousClock.now - started))
        } catch {
            // A connection lost during COMMIT leaves the outcome unknown: the rows may be stored.
            // The batch fails all the same (never an acknowledgement that might be false); ThingSpace
            // retries, and a retry that finds its first delivery stored is linked as a repeat.
            if error.isOutage || !connection.isUsable {
                lost(error)
            } else {
                // The statement's transaction is over; the allocation lock is a session's, so a
                // failure between taking and releasing it must not leave it held.
                _ = try? connection.query("SELECT pg_advisory_unlock_all()")
                if error.isAboutOneCallback {
                    // One callback's data (a NUL in a text field, say) must not fail the others,
                    // nor the store's readiness: one transaction each finds the one it was.
                    if batch.count > 1 {
                        for submission in batch { commit([submission]) }
                        return
                    }
                    logger.warning("A callback could not be stored", metadata: ["error": "\(error)"])
                } else {
                    writer.statementsFail.store(true, ordering: .relaxed)
                    logger.error("Storing callbacks failed", metadata: ["error": "\(error)", "store.url": "\(settings.description)"])
                }
            }
            writer.fail(batch, error.storeError, started: started)
        }
    }

    /// The whole batch in one statement, its own transaction (`thingspace_listener_store`): one
    /// round trip and one WAL flush per group. The receipts in the batch's order.
    private static func write(_ callbacks: [NewCallback], on connection: PostgreSQLConnection) throws(PostgreSQLError) -> [CommitReceipt] {
        let rows = try connection.query(
            "SELECT stored_id, first_delivery FROM thingspace_listener_store($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            [
                BinaryArray.texts(callbacks.map(\.dedupKey)),
                BinaryArray.bigints(callbacks.map(\.receivedAt)),
                BinaryArray.texts(callbacks.map(\.service)),
                BinaryArray.texts(callbacks.map(\.requestID)),
                BinaryArray.texts(callbacks.map { CallbackRows.arrayLiteral($0.deviceIDs.map(\.id)) }),
                BinaryArray.texts(callbacks.map { CallbackRows.devicesJSON($0.deviceIDs) }),
                BinaryArray.texts(callbacks.map(\.status)),
                BinaryArray.int4s(callbacks.map { $0.callbackCount.map { Int32(clamping: $0) } }),
                BinaryArray.texts(callbacks.map(\.remoteAddress)),
                BinaryArray.make(callbacks.map(\.body), element: BinaryArray.byteaOID),
            ])
        guard rows.count == callbacks.count else {
            throw PostgreSQLError(message: "stored \(rows.count) of \(callbacks.count) callbacks", connectionLost: false)
        }
        return (0..<rows.count).map { CommitReceipt(id: rows.int($0, 0) ?? 0, duplicateOf: rows.int($0, 1)) }
    }

    // MARK: Purge

    /// Deletes up to `purgeChunk` callbacks received before `cutoff` in one transaction that holds
    /// the allocation lock and waits for the groups in flight (so no commit of any instance links a
    /// repeat to a row being deleted); a kept repeat whose first delivery goes is relinked to the
    /// oldest kept delivery of its key, which becomes the key's first delivery. Returns how many
    /// were deleted.
    func purgeChunk(olderThan cutoff: Int64) throws(CallbackStoreError) -> Int {
        guard let connection else { throw .unavailable(message: "not connected to PostgreSQL") }
        do {
            try connection.execute("BEGIN")
            try PostgreSQLSchema.lockOutGroups(on: connection)
            let deleted = try connection.query(
                """
                DELETE FROM callbacks WHERE id IN (
                    SELECT id FROM callbacks WHERE received_at < $1 ORDER BY id LIMIT $2)
                RETURNING dedup_key, duplicate_of IS NULL
                """, [.int(cutoff), .int(Int64(Self.purgeChunk))])
            var orphanedKeys = Set<String>()
            for row in 0..<deleted.count where deleted.bool(row, 1) == true {
                if let key = deleted.string(row, 0) { orphanedKeys.insert(key) }
            }
            if !orphanedKeys.isEmpty {
                let keys = BinaryArray.texts(Array(orphanedKeys))
                try connection.query(
                    """
                    UPDATE callbacks AS c SET duplicate_of = nullif(f.first, c.id)
                    FROM (SELECT dedup_key, min(id) AS first FROM callbacks WHERE dedup_key = ANY($1::text[]) GROUP BY dedup_key) AS f
                    WHERE c.dedup_key = f.dedup_key AND c.duplicate_of IS DISTINCT FROM nullif(f.first, c.id)
                    """, [keys])
                try connection.query("DELETE FROM first_deliveries WHERE dedup_key = ANY($1::text[])", [keys])
                try connection.query(
                    """
                    INSERT INTO first_deliveries (dedup_key, callback_id)
                    SELECT dedup_key, min(id) FROM callbacks WHERE dedup_key = ANY($1::text[]) GROUP BY dedup_key
                    """, [keys])
            }
            try connection.execute("COMMIT")
            return deleted.count
        } catch {
            if error.isOutage || !connection.isUsable {
                lost(error)
            } else {
                try? connection.execute("ROLLBACK")
            }
            throw error.storeError
        }
    }
}

/// Tells listening readers (any instance) of new ids, after COMMIT and off the writers' path: one
/// thread and connection, one NOTIFY at a time carrying the highest id committed so far, in its
/// own transaction with `synchronous_commit = off` (a notification lost in a crash costs a reader
/// a poll, never a callback). While the connection is down, notifications wait for it.
final class CommitNotifier: @unchecked Sendable {
    private let settings: PostgreSQLSettings
    private let condition = NSCondition()
    private var highest: Int64 = 0  // condition
    private var notified: Int64 = 0  // condition
    private var closing = false  // condition
    private var started = false  // condition

    init(settings: PostgreSQLSettings) { self.settings = settings }

    func stored(upTo id: Int64) {
        condition.lock()
        defer { condition.unlock() }
        guard !closing else { return }
        highest = max(highest, id)
        if !started {
            started = true
            let thread = Thread { [self] in
                Thread.current.name = "pg-notifier"
                run()
            }
            thread.start()
        }
        condition.signal()
    }

    /// Sends what is pending (bounded), then stops.
    func close() {
        condition.lock()
        closing = true
        condition.broadcast()
        condition.unlock()
    }

    private func run() {
        var connection: PostgreSQLConnection?
        defer { connection?.close() }
        while true {
            condition.lock()
            while highest == notified && !closing { condition.wait() }
            let id = highest
            let stop = closing
            condition.unlock()
            if id > notified {
                do {
                    if connection == nil {
                        let opened = try PostgreSQLConnection(settings, connectTimeoutSeconds: 2)
                        connection = opened
                        try opened.execute("SET synchronous_commit = off")
                    }
                    try connection?.query(
                        "SELECT pg_notify($1, $2)", [.text(PostgreSQLCallbackStore.notificationChannel), .text(String(id))])
                    condition.lock()
                    notified = id
                    condition.unlock()
                } catch {
                    connection?.close()
                    connection = nil
                    if stop { return }
                    Thread.sleep(forTimeInterval: 0.25)
                    continue
                }
            }
            if stop { return }
        }
    }
}

extension PostgreSQLError {
    /// Data exceptions (class 22: a NUL in text, an invalid byte sequence) and program limits
    /// (class 54: a value too large for an index): the fault of a callback, not of the store.
    fileprivate var isAboutOneCallback: Bool {
        guard let sqlState else { return false }
        return sqlState.hasPrefix("22") || sqlState.hasPrefix("54")
    }
}

extension Duration {
    fileprivate var seconds: TimeInterval {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
