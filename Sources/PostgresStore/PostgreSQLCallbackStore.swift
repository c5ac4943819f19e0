// The intake for several instances sharing one PostgreSQL database. One writer thread owns the
// connection and commits everything waiting in ONE transaction (group commit), a single statement
// calling `thingspace_listener_store` (ids, repeats, rows and the NOTIFY in one round trip): while
// a batch commits, the next accumulates. The groups of several instances commit side by side
// (schema migration 5 serialises only the allocation of ids). A callback is acknowledged only
// after its transaction's COMMIT returned.
//
// One writer per instance: on a server short of CPU, more writers only make groups smaller and
// each callback dearer (measured with 2 and 3 writers: 20 to 25 % fewer callbacks per second).
//
// An outage (server down, restarting, failing over, the connection cut) fails the batch with
// `.unavailable` (503; ThingSpace retries), and the writer reconnects with backoff. While it is
// disconnected, callbacks fail at once instead of waiting for the outage to end.
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

    /// The channel every commit notifies, with the highest id it stored as the payload (the store
    /// function names it too).
    public static let notificationChannel = "thingspace_listener_callbacks"
    /// The most callbacks in one transaction.
    static let batchLimit = 1024

    private let writer: Writer
    private let settings: PostgreSQLSettings

    /// Connects (an outage throws `.unavailable`: the caller retries), migrates the schema and
    /// starts the writer thread.
    public init(settings: PostgreSQLSettings, capacity: Int, logger: Logger, observer: Observer? = nil) throws(CallbackStoreError) {
        self.settings = settings
        let connection: PostgreSQLConnection
        do {
            connection = try PostgreSQLConnection(settings)
        } catch {
            throw error.storeError
        }
        try PostgreSQLSchema.migrate(connection, location: settings.description)
        writer = Writer(connection: connection, settings: settings, capacity: capacity, logger: logger, observer: observer)
    }

    deinit { writer.close() }

    public func submit(_ callback: NewCallback, completion: @escaping Completion) -> Bool {
        writer.submit(callback, completion: completion)
    }

    public var isFailing: Bool { writer.isFailing.load(ordering: .relaxed) }
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

/// The writer thread and what it shares with submitters (guarded by `condition`).
private final class Writer: @unchecked Sendable {
    struct Submission {
        var callback: NewCallback
        var completion: CallbackIntake.Completion
    }

    typealias Job = (PostgreSQLConnection?) -> Void

    static let idleTick: TimeInterval = 0.25
    static let firstBackoff: Duration = .milliseconds(250)
    static let longestBackoff: Duration = .seconds(5)
    /// Rows deleted per purge transaction: each holds the allocation lock, so commits wait at most one chunk.
    static let purgeChunk = 5_000

    let isFailing = Atomic<Bool>(false)
    let heartbeat = Atomic<UInt64>(0)
    private let committedBatches = Atomic<UInt64>(0)
    private let committedCallbacks = Atomic<UInt64>(0)
    private let failedBatches = Atomic<UInt64>(0)
    private let failedCallbacks = Atomic<UInt64>(0)

    private let settings: PostgreSQLSettings
    private let capacity: Int
    private let logger: Logger
    private let observer: PostgreSQLCallbackStore.Observer?

    private let condition = NSCondition()
    private var pending: [Submission] = []  // condition
    private var jobs: [Job] = []  // condition
    private var stopping = false  // condition
    private var threadDone = false  // condition

    /// The writer thread's alone.
    private var connection: PostgreSQLConnection?
    private var backoff = Writer.firstBackoff
    private var nextAttempt = ContinuousClock.now
    private var lastReconnectFailure: String?

    private let threadID = Mutex<pthread_t?>(nil)

    init(
        connection: PostgreSQLConnection, settings: PostgreSQLSettings, capacity: Int, logger: Logger,
        observer: PostgreSQLCallbackStore.Observer?
    ) {
        self.connection = connection
        self.settings = settings
        self.capacity = max(1, capacity)
        self.logger = logger
        self.observer = observer
        let thread = Thread { [self] in
            Thread.current.name = "pg-writer"
            threadID.withLock { $0 = pthread_self() }
            run()
            condition.lock()
            threadDone = true
            condition.broadcast()
            condition.unlock()
        }
        thread.start()
    }

    var statistics: IntakeStatistics {
        IntakeStatistics(
            committedBatches: committedBatches.load(ordering: .relaxed), committedCallbacks: committedCallbacks.load(ordering: .relaxed),
            failedBatches: failedBatches.load(ordering: .relaxed), failedCallbacks: failedCallbacks.load(ordering: .relaxed))
    }

    func submit(_ callback: NewCallback, completion: @escaping CallbackIntake.Completion) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !stopping, pending.count < capacity else { return false }
        pending.append(Submission(callback: callback, completion: completion))
        condition.signal()
        return true
    }

    /// Commits what was accepted, then stops the thread and closes the connection. From the writer
    /// thread itself (a completion or the observer), only asks it to stop.
    func close() {
        let onWriterThread = threadID.withLock { $0.map { pthread_equal($0, pthread_self()) != 0 } ?? false }
        condition.lock()
        defer { condition.unlock() }
        stopping = true
        condition.broadcast()
        while !onWriterThread && !threadDone { condition.wait() }
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
        { [self] connection in
            guard let connection else {
                return done.resume(returning: .failure(.unavailable(message: "not connected to PostgreSQL")))
            }
            do throws(CallbackStoreError) {
                let deleted = try purgeChunk(olderThan: cutoff, on: connection)
                guard deleted > 0 else { return done.resume(returning: .success(purgedSoFar)) }
                condition.lock()
                jobs.append(purgeJob(olderThan: cutoff, purgedSoFar: purgedSoFar + deleted, done: done))
                condition.unlock()
            } catch {
                done.resume(returning: .failure(error))
            }
        }
    }

    // MARK: The writer thread

    private func run() {
        while true {
            heartbeat.add(1, ordering: .relaxed)
            if connection == nil {
                condition.lock()
                let stop = stopping
                condition.unlock()
                // Closing: one last try, so that what was accepted is committed if it can be.
                if stop { reconnect() }
                if connection == nil {
                    // Nobody waits for the outage to end: what arrived while disconnected fails
                    // now (503, Retry-After), before a reconnect that may take its connect timeout.
                    let (batch, waitingJobs) = takeAll()
                    fail(batch, .unavailable(message: "not connected to PostgreSQL (reconnecting)"), started: .now)
                    for job in waitingJobs { job(nil) }
                    if stop { break }
                    if ContinuousClock.now >= nextAttempt { reconnect() }
                }
                if connection == nil {
                    condition.lock()
                    if pending.isEmpty && jobs.isEmpty && !stopping {
                        let wait = min(nextAttempt - ContinuousClock.now, .seconds(Self.idleTick))
                        _ = condition.wait(until: Date(timeIntervalSinceNow: max(0, wait.seconds)))
                    }
                    condition.unlock()
                    continue
                }
            }
            condition.lock()
            while pending.isEmpty && jobs.isEmpty && !stopping {
                if !condition.wait(until: Date(timeIntervalSinceNow: Self.idleTick)) { break }
            }
            let batch = Array(pending.prefix(PostgreSQLCallbackStore.batchLimit))
            pending.removeFirst(batch.count)
            let waitingJobs = jobs
            jobs = []
            let done = stopping && pending.isEmpty && batch.isEmpty && waitingJobs.isEmpty
            condition.unlock()
            if done { break }
            if batch.isEmpty && waitingJobs.isEmpty {
                checkIdleConnection()
                continue
            }
            if !batch.isEmpty { commit(batch) }
            for job in waitingJobs { job(connection) }
        }
        connection?.close()
        connection = nil
    }

    private func takeAll() -> ([Submission], [Job]) {
        condition.lock()
        defer { condition.unlock() }
        let taken = (pending, jobs)
        pending = []
        jobs = []
        return taken
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
            if isFailing.exchange(false, ordering: .relaxed) {
                logger.notice("Reconnected to PostgreSQL; storing callbacks resumes", metadata: ["store.url": "\(settings.description)"])
            }
        } catch {
            isFailing.store(true, ordering: .relaxed)
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

    /// The connection is gone: everything fails until `reconnect` succeeds.
    private func lost(_ error: PostgreSQLError) {
        if !isFailing.exchange(true, ordering: .relaxed) {
            logger.error(
                "Lost the connection to PostgreSQL; callbacks are refused (503) until it is back",
                metadata: ["error": "\(error)", "store.url": "\(settings.description)"])
        }
        connection?.close()
        connection = nil
        nextAttempt = .now + backoff
        backoff = min(backoff * 2, Self.longestBackoff)
    }

    private func commit(_ batch: [Submission]) {
        let started = ContinuousClock.now
        guard let connection else {
            return fail(batch, .unavailable(message: "not connected to PostgreSQL"), started: started)
        }
        do {
            let receipts = try Self.write(batch.map(\.callback), on: connection)
            isFailing.store(false, ordering: .relaxed)
            for (submission, receipt) in zip(batch, receipts) { submission.completion(.success(receipt)) }
            committedBatches.add(1, ordering: .relaxed)
            committedCallbacks.add(UInt64(batch.count), ordering: .relaxed)
            observer?(.committed(batchSize: batch.count, duration: ContinuousClock.now - started))
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
                    isFailing.store(true, ordering: .relaxed)
                    logger.error("Storing callbacks failed", metadata: ["error": "\(error)", "store.url": "\(settings.description)"])
                }
            }
            fail(batch, error.storeError, started: started)
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

    private func fail(_ batch: [Submission], _ error: CallbackStoreError, started: ContinuousClock.Instant) {
        guard !batch.isEmpty else { return }
        for submission in batch { submission.completion(.failure(error)) }
        failedBatches.add(1, ordering: .relaxed)
        failedCallbacks.add(UInt64(batch.count), ordering: .relaxed)
        observer?(.failed(batchSize: batch.count, duration: ContinuousClock.now - started, error: error))
    }

    // MARK: Purge

    /// Deletes up to `purgeChunk` callbacks received before `cutoff` in one transaction that holds
    /// the allocation lock and waits for the groups in flight (so no commit of any instance links a
    /// repeat to a row being deleted); a kept repeat whose first delivery goes is relinked to the
    /// oldest kept delivery of its key, which becomes the key's first delivery. Returns how many
    /// were deleted.
    private func purgeChunk(olderThan cutoff: Int64, on connection: PostgreSQLConnection) throws(CallbackStoreError) -> Int {
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
