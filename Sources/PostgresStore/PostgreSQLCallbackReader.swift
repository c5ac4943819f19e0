// Reads what every instance stored, with the SQLite reader's semantics (filters, newest first,
// the cursor's `next`, stats by UTC day). One connection behind a lock, reopened on the next call
// after it broke; never creates or migrates. Waits are woken by the writers' NOTIFY, heard on one
// listening connection per reader, so any number of waiting tasks cost one connection.
import CallbackStore
import Foundation
import Synchronization

public final class PostgreSQLCallbackReader: CallbackReader, @unchecked Sendable {
    private let settings: PostgreSQLSettings
    private let lock = NSLock()
    private var connection: PostgreSQLConnection?  // lock
    private var isClosed = false  // lock
    private let listener: ArrivalListener

    /// Connects and checks that the service created the schema (`.notInitialized` when not,
    /// `.schemaTooNew` when a newer version did); an outage throws `.unavailable`.
    public init(settings: PostgreSQLSettings) throws(CallbackStoreError) {
        self.settings = settings
        listener = ArrivalListener(settings: settings)
        lock.lock()
        defer { lock.unlock() }
        connection = try Self.connect(settings)
    }

    deinit { close() }

    /// Closes the connections; later calls throw `.closed`. Idempotent.
    public func close() {
        lock.lock()
        isClosed = true
        connection?.close()
        connection = nil
        lock.unlock()
        listener.stop()
    }

    private static func connect(_ settings: PostgreSQLSettings) throws(CallbackStoreError) -> PostgreSQLConnection {
        do {
            let connection = try PostgreSQLConnection(settings)
            let version = try PostgreSQLSchema.version(connection)
            if version == 0 {
                connection.close()
                throw CallbackStoreError.notInitialized(path: settings.description)
            }
            if version > PostgreSQLSchema.currentVersion {
                connection.close()
                throw CallbackStoreError.schemaTooNew(
                    path: settings.description, found: Int32(version), supported: Int32(PostgreSQLSchema.currentVersion))
            }
            return connection
        } catch {
            throw .from(error)
        }
    }

    /// Runs `body` on the connection, one call at a time; a broken connection is dropped, and the
    /// next call connects again.
    private func withConnection<Result>(
        _ body: (PostgreSQLConnection) throws(PostgreSQLError) -> Result
    ) throws(CallbackStoreError) -> Result {
        lock.lock()
        defer { lock.unlock() }
        if isClosed { throw .closed }
        let connection: PostgreSQLConnection
        if let open = self.connection {
            connection = open
        } else {
            connection = try Self.connect(settings)
            self.connection = connection
        }
        do {
            return try body(connection)
        } catch {
            if !connection.isUsable || error.connectionLost {
                connection.close()
                self.connection = nil
            } else {
                // A statement of a read transaction failed: end the transaction.
                try? connection.execute("ROLLBACK")
            }
            throw error.storeError
        }
    }

    /// Builds `$n` placeholders in the order parameters are added.
    private struct Parameters {
        var values: [PostgreSQLValue] = []
        mutating func add(_ value: PostgreSQLValue) -> String {
            values.append(value)
            return "$\(values.count)"
        }
    }

    /// The conditions of `filter` (its `limit` aside), prefixed with `table.` when given.
    private static func conditions(_ filter: CallbackFilter, _ parameters: inout Parameters) -> [String] {
        var conditions: [String] = []
        if let service = filter.service { conditions.append("service = \(parameters.add(.text(service)))") }
        if let requestID = filter.requestID { conditions.append("request_id = \(parameters.add(.text(requestID)))") }
        // `@>` so the GIN index on device_ids serves it.
        if let device = filter.deviceID { conditions.append("device_ids @> ARRAY[\(parameters.add(.text(device)))::text]") }
        if let since = filter.since { conditions.append("received_at >= \(parameters.add(.int(since)))") }
        if !filter.includeDuplicates { conditions.append("duplicate_of IS NULL") }
        return conditions
    }

    public func query(_ filter: CallbackFilter) throws(CallbackStoreError) -> [StoredCallback] {
        guard filter.limit > 0 else { return [] }
        var parameters = Parameters()
        let conditions = Self.conditions(filter, &parameters)
        let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        let sql = """
            SELECT \(CallbackRows.columns) FROM callbacks \(whereClause)
            ORDER BY received_at DESC, id DESC LIMIT \(parameters.add(.int(Int64(filter.limit))))
            """
        return try callbacks(sql, parameters.values)
    }

    public func callback(id: Int64) throws(CallbackStoreError) -> StoredCallback? {
        try callbacks("SELECT \(CallbackRows.columns) FROM callbacks WHERE id = $1", [.int(id)]).first
    }

    public func callbacks(after id: Int64, limit: Int, includeDuplicates: Bool) throws(CallbackStoreError) -> [StoredCallback] {
        guard limit > 0 else { return [] }
        let duplicates = includeDuplicates ? "" : "AND duplicate_of IS NULL"
        return try callbacks(
            "SELECT \(CallbackRows.columns) FROM callbacks WHERE id > $1 AND id <= $3 \(duplicates) ORDER BY id LIMIT $2",
            [.int(id), .int(Int64(limit))], belowHorizon: true)
    }

    /// With `belowHorizon`, the statement's last parameter is the horizon, read first (a later
    /// snapshot then sees every id up to it that will ever exist).
    private func callbacks(
        _ sql: String, _ parameters: [PostgreSQLValue], belowHorizon: Bool = false
    ) throws(CallbackStoreError) -> [StoredCallback] {
        let result = try withConnection { connection throws(PostgreSQLError) -> Result<[StoredCallback], CallbackStoreError> in
            let horizon: [PostgreSQLValue] = belowHorizon ? [.int(try PostgreSQLSchema.horizon(on: connection))] : []
            let rows = try connection.query(sql, parameters + horizon)
            return Result { () throws(CallbackStoreError) in try CallbackRows.read(rows) }
        }
        return try result.get()
    }

    /// The page of what lies at or below the horizon, read first: every id up to it has committed
    /// or never will, so `next` passes exactly what the page examined, and nothing can appear
    /// later below it.
    public func page(after id: Int64, matching filter: CallbackFilter, limit: Int) throws(CallbackStoreError) -> CallbackPage {
        guard limit > 0 else { return CallbackPage(callbacks: [], next: id) }
        var parameters = Parameters()
        let after = parameters.add(.int(id))
        let limitParameter = parameters.add(.int(Int64(limit)))
        let conditions = ["id > \(after)"] + Self.conditions(filter, &parameters)
        let sql = """
            SELECT \(CallbackRows.columns) FROM callbacks WHERE \(conditions.joined(separator: " AND ")) AND id <= $\(parameters.values.count + 1)
            ORDER BY id LIMIT \(limitParameter)
            """
        let result = try withConnection { connection throws(PostgreSQLError) -> Result<CallbackPage, CallbackStoreError> in
            let horizon = try PostgreSQLSchema.horizon(on: connection)
            let rows = try connection.query(sql, parameters.values + [.int(horizon)])
            return Result { () throws(CallbackStoreError) in
                let callbacks = try CallbackRows.read(rows)
                if callbacks.count == limit, let last = callbacks.last { return CallbackPage(callbacks: callbacks, next: last.id) }
                return CallbackPage(callbacks: callbacks, next: max(id, horizon))
            }
        }
        return try result.get()
    }

    /// Every count from one snapshot (a repeatable-read transaction). Keys sort bytewise (`C`), with
    /// no status first, as in SQLite.
    public func stats() throws(CallbackStoreError) -> CallbackStats {
        try withConnection { connection throws(PostgreSQLError) in
            try connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            let totals = try Self.counts("SELECT NULL::text, count(*), count(duplicate_of) FROM callbacks", connection)
            let byService = try Self.counts(
                "SELECT service, count(*), count(duplicate_of) FROM callbacks GROUP BY service ORDER BY service COLLATE \"C\"", connection)
            let byStatus = try Self.counts(
                "SELECT status, count(*), count(duplicate_of) FROM callbacks GROUP BY status ORDER BY status COLLATE \"C\" NULLS FIRST",
                connection)
            // Whole seconds first, as SQLite's date(received_at / 1000, 'unixepoch').
            let byDay = try Self.counts(
                """
                SELECT day, count(*), count(duplicate_of) FROM (
                    SELECT to_char(timestamp '1970-01-01' + (received_at / 1000) * interval '1 second', 'YYYY-MM-DD') AS day,
                        duplicate_of
                    FROM callbacks) AS days
                GROUP BY day ORDER BY day COLLATE "C"
                """, connection)
            try connection.execute("COMMIT")
            return CallbackStats(
                total: totals.first?.count ?? 0, duplicates: totals.first?.duplicates ?? 0, byService: byService, byStatus: byStatus,
                byDay: byDay)
        }
    }

    private static func counts(_ sql: String, _ connection: PostgreSQLConnection) throws(PostgreSQLError) -> [CallbackStats.Count] {
        let rows = try connection.query(sql)
        return (0..<rows.count).map { row in
            CallbackStats.Count(key: rows.string(row, 0), count: Int(rows.int(row, 1) ?? 0), duplicates: Int(rows.int(row, 2) ?? 0))
        }
    }

    public func lastID() throws(CallbackStoreError) -> Int64 {
        try withConnection { connection throws(PostgreSQLError) in
            // One statement (the horizon an initplan, read once): its snapshot may predate the
            // horizon, which only hides a group that committed in between; for a cursor read that
            // would be a gap, here it is a later answer.
            try connection.query("SELECT coalesce(max(id), 0) FROM callbacks WHERE id <= (SELECT thingspace_listener_horizon())")
                .int(0, 0) ?? 0
        }
    }

    /// Woken by the NOTIFY of a commit; polls every 25 ms while the listening connection is down.
    public func waitForCallbacks(after id: Int64, timeout: Duration) async throws(CallbackStoreError) -> Bool {
        let deadline = ContinuousClock.now + timeout
        listener.start()
        while true {
            if try lastID() > id { return true }
            let now = ContinuousClock.now
            guard now < deadline else { return false }
            if listener.isListening {
                // In slices, so that a listener lost mid-wait falls back to polling.
                let woken = await listener.arrivals.wait(after: id, timeout: min(deadline - now, .seconds(1)))
                // Heard of an id this reader does not see yet (an older group still committing)
                // or any more (purged since): do not spin.
                if woken, try lastID() <= id { try? await Task.sleep(for: .milliseconds(25)) }
            } else {
                try? await Task.sleep(for: min(.milliseconds(25), deadline - now))
            }
        }
    }
}

/// One listening connection and the thread that reads it, feeding `arrivals`. Started by the
/// first wait; reconnects by itself.
private final class ArrivalListener: Sendable {
    let arrivals = ArrivalWaiters()
    private let settings: PostgreSQLSettings
    private let state = Mutex((started: false, stopped: false))
    private let listening = Atomic<Bool>(false)

    init(settings: PostgreSQLSettings) { self.settings = settings }

    var isListening: Bool { listening.load(ordering: .acquiring) }

    func start() {
        let first = state.withLock { state -> Bool in
            guard !state.started && !state.stopped else { return false }
            state.started = true
            return true
        }
        guard first else { return }
        let thread = Thread { [self] in
            Thread.current.name = "pg-listener"
            run()
        }
        thread.start()
    }

    func stop() { state.withLock { $0.stopped = true } }

    private var isStopped: Bool { state.withLock { $0.stopped } }

    private func run() {
        while !isStopped {
            do {
                let connection = try PostgreSQLConnection(settings)
                defer { connection.close() }
                try connection.listen(PostgreSQLCallbackStore.notificationChannel)
                // What was committed before LISTEN took effect.
                arrivals.stored(upTo: try connection.query("SELECT coalesce(max(id), 0) FROM callbacks").int(0, 0) ?? 0)
                listening.store(true, ordering: .releasing)
                while !isStopped {
                    for notification in try connection.notifications(waitingUpTo: .milliseconds(250)) {
                        if let id = Int64(notification.payload) { arrivals.stored(upTo: id) }
                    }
                }
            } catch {
                listening.store(false, ordering: .releasing)
                Thread.sleep(forTimeInterval: 0.25)
            }
        }
        listening.store(false, ordering: .releasing)
    }
}
