// The delivery ledger shared by every instance on one PostgreSQL database. The semantics are the
// SQLite ledger's, plus claims: `due` leases what it returns to this instance (by the database's
// clock, since the instances' clocks may differ), so that each attempt is made by one instance at a
// time, and a dead instance's attempts go to another once their leases expire.
import CallbackStore
import Synchronization
import Vocabulary

public final class PostgreSQLDeliveryLedger: DeliveryLedger {
    public let instance: String
    public let leaseDuration: Duration
    private let settings: PostgreSQLSettings
    /// One connection, replaced on the next call after it broke.
    private let link: Mutex<ConnectionLink>

    public var sharesWork: Bool { true }

    /// Connects and migrates the schema (idempotent). `instance` names this instance's leases.
    public init(settings: PostgreSQLSettings, instance: String, leaseDuration: Duration = .seconds(30)) throws(CallbackStoreError) {
        self.settings = settings
        self.instance = instance
        self.leaseDuration = leaseDuration
        let connection: PostgreSQLConnection
        do { connection = try PostgreSQLConnection(settings) } catch { throw error.storeError }
        try PostgreSQLSchema.migrate(connection, location: settings.description)
        link = Mutex(ConnectionLink(connection: connection))
    }

    static let columns =
        "destination, callback_id, state, attempts, next_attempt_at, ordering_key, received_at, last_attempt_at, last_status, last_error"
    /// The types of `columns`, for the parameters of a multi-row INSERT.
    static let columnTypes = ["text", "bigint", "text", "integer", "bigint", "text", "bigint", "bigint", "integer", "text"]
    static let waiting = "state IN ('pending', 'retrying')"
    /// The database's clock in UTC milliseconds: leases never depend on an instance's clock.
    static let databaseNow = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
    /// Rows per multi-row INSERT: far below the protocol's 65,535 parameters.
    static let rowsPerInsert = 500

    // MARK: - The protocol

    public func cursor(destination: String) throws(CallbackStoreError) -> Int64? {
        try withConnection { connection throws(PostgreSQLError) in
            let rows = try connection.query("SELECT through FROM delivery_cursors WHERE destination = $1", [.text(destination)])
            return rows.count > 0 ? rows.int(0, 0) : nil
        }
    }

    public func enqueue(destination: String, _ records: [DeliveryRecord], through cursor: Int64) throws(CallbackStoreError) {
        try transaction { connection throws(PostgreSQLError) in
            try Self.insert(records, into: connection, onConflict: "DO NOTHING")
            try Self.moveCursor(of: destination, to: cursor, in: connection)
        }
    }

    public func due(
        destination: String, now: Int64, limit: Int, excluding: Set<Int64>, onePerOrderingKey: Bool
    ) throws(CallbackStoreError) -> [DeliveryRecord] {
        guard limit > 0 else { return [] }
        // An earlier waiting record of the key holds a record back whoever leases it: one device's
        // callbacks go one at a time across all instances.
        let headsOnly =
            onePerOrderingKey
            ? """
             AND (c.ordering_key IS NULL OR NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.destination = c.destination
                AND e.ordering_key = c.ordering_key AND e.\(Self.waiting) AND e.callback_id < c.callback_id))
            """ : ""
        // One statement: rows another claim has locked are skipped, not waited for, and no two
        // instances can lease one record.
        let sql = """
            WITH chosen AS (
                SELECT c.destination, c.callback_id FROM deliveries c
                WHERE c.destination = $1 AND c.\(Self.waiting) AND c.next_attempt_at <= $2
                    AND NOT (c.callback_id = ANY ($4::bigint[]))
                    AND (c.lease_until IS NULL OR c.lease_owner = $5 OR c.lease_until <= \(Self.databaseNow))\(headsOnly)
                ORDER BY c.next_attempt_at, c.callback_id
                LIMIT $3
                FOR UPDATE OF c SKIP LOCKED
            )
            UPDATE deliveries d SET lease_owner = $5, lease_until = \(Self.databaseNow) + $6
            FROM chosen WHERE d.destination = chosen.destination AND d.callback_id = chosen.callback_id
            RETURNING \(Self.columns.split(separator: ", ").map { "d.\($0)" }.joined(separator: ", "))
            """
        let excluded = "{" + excluding.sorted().map(String.init).joined(separator: ",") + "}"
        let records = try withConnection { connection throws(PostgreSQLError) in
            let rows = try connection.query(
                sql,
                [
                    .text(destination), .int(now), .int(Int64(limit)), .text(excluded), .text(instance),
                    .int(max(1, leaseDuration.inMilliseconds)),
                ])
            return try Self.records(rows)
        }
        // RETURNING keeps no order.
        return records.sorted { ($0.nextAttemptAt ?? 0, $0.callbackID) < ($1.nextAttemptAt ?? 0, $1.callbackID) }
    }

    /// A record another instance holds counts from the end of its lease: the engine need not look
    /// again before then (a hint only; `due` decides).
    public func nextAttemptAt(destination: String) throws(CallbackStoreError) -> Int64? {
        try withConnection { connection throws(PostgreSQLError) in
            try connection.query(
                """
                SELECT min(CASE WHEN lease_owner <> $2 AND lease_until > \(Self.databaseNow)
                                THEN greatest(next_attempt_at, lease_until) ELSE next_attempt_at END)
                FROM deliveries WHERE destination = $1 AND \(Self.waiting)
                """, [.text(destination), .text(instance)]
            ).int(0, 0)
        }
    }

    public func update(_ records: [DeliveryRecord], cursor: (destination: String, through: Int64)?) throws(CallbackStoreError) {
        guard !records.isEmpty || cursor != nil else { return }
        let cursorMove = cursor.map { ($0.destination, $0.through) }
        try transaction { connection throws(PostgreSQLError) in
            // The outcome ends the claim: the record is due again only by its schedule. A late outcome
            // of a lease that expired is dropped while another instance holds the record, or it would
            // end that claim in the middle of its attempt.
            try Self.insert(
                records, into: connection, leading: [.text(instance)],
                onConflict: """
                    DO UPDATE SET state = excluded.state, attempts = excluded.attempts, next_attempt_at = excluded.next_attempt_at,
                    ordering_key = excluded.ordering_key, received_at = excluded.received_at,
                    last_attempt_at = excluded.last_attempt_at, last_status = excluded.last_status, last_error = excluded.last_error,
                    lease_owner = NULL, lease_until = NULL
                    WHERE deliveries.lease_until IS NULL OR deliveries.lease_owner = $1 OR deliveries.lease_until <= \(Self.databaseNow)
                    """)
            if let (destination, through) = cursorMove { try Self.moveCursor(of: destination, to: through, in: connection) }
        }
    }

    public func record(destination: String, callbackID: Int64) throws(CallbackStoreError) -> DeliveryRecord? {
        try withConnection { connection throws(PostgreSQLError) in
            let rows = try connection.query(
                "SELECT \(Self.columns) FROM deliveries WHERE destination = $1 AND callback_id = $2",
                [.text(destination), .int(callbackID)])
            return try Self.records(rows).first
        }
    }

    public func list(_ filter: DeliveryFilter) throws(CallbackStoreError) -> [DeliveryRecord] {
        // COLLATE "C": byte order, as SQLite sorts, whatever the database's locale.
        let sql = """
            SELECT \(Self.columns) FROM deliveries
            WHERE callback_id > $1 AND ($2::text IS NULL OR destination = $2) AND ($3::text IS NULL OR state = $3)
            ORDER BY callback_id, destination COLLATE "C" LIMIT $4
            """
        return try withConnection { connection throws(PostgreSQLError) in
            let rows = try connection.query(
                sql,
                [
                    .int(filter.afterID), filter.destination.map { .text($0) } ?? .null, filter.state.map { .text($0.rawValue) } ?? .null,
                    .int(Int64(max(0, filter.limit))),
                ])
            return try Self.records(rows)
        }
    }

    public func backlog(destination: String) throws(CallbackStoreError) -> DeliveryBacklog {
        // The waiting and the dead through their partial indexes, never the delivered.
        let sql = """
            SELECT count(*) FILTER (WHERE state = 'pending'), count(*) FILTER (WHERE state = 'retrying'), min(received_at),
                (SELECT count(*) FROM deliveries WHERE destination = $1 AND state = 'dead')
            FROM deliveries WHERE destination = $1 AND \(Self.waiting)
            """
        return try withConnection { connection throws(PostgreSQLError) in
            let rows = try connection.query(sql, [.text(destination)])
            return DeliveryBacklog(
                pending: Int(rows.int(0, 0) ?? 0), retrying: Int(rows.int(0, 1) ?? 0), dead: Int(rows.int(0, 3) ?? 0),
                oldestWaitingReceivedAt: rows.int(0, 2))
        }
    }

    public func retry(destination: String, ids: [Int64]?, now: Int64) throws(CallbackStoreError) -> Int {
        var sql = """
            UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = $2, lease_owner = NULL, lease_until = NULL
            WHERE destination = $1 AND state = 'dead'
            """
        var parameters: [PostgreSQLValue] = [.text(destination), .int(now)]
        if let ids {
            sql += " AND callback_id = ANY ($3::bigint[])"
            parameters.append(.text("{" + ids.map(String.init).joined(separator: ",") + "}"))
        }
        return try withConnection { connection throws(PostgreSQLError) in try connection.query(sql, parameters).affected }
    }

    public func replay(_ records: [DeliveryRecord], now: Int64) throws(CallbackStoreError) -> Int {
        let fresh = records.map { record in
            var record = record
            record.state = .pending
            record.attempts = 0
            record.nextAttemptAt = now
            return record
        }
        try transaction { connection throws(PostgreSQLError) in
            // An existing record keeps its last attempt's outcome; a new one takes what it was given.
            try Self.insert(
                fresh, into: connection,
                onConflict: """
                    DO UPDATE SET state = excluded.state, attempts = excluded.attempts, next_attempt_at = excluded.next_attempt_at,
                    ordering_key = excluded.ordering_key, received_at = excluded.received_at, lease_owner = NULL, lease_until = NULL
                    """)
        }
        return records.count
    }

    public func disabled(destination: String) throws(CallbackStoreError) -> DestinationDisabled? {
        try withConnection { connection throws(PostgreSQLError) in
            let rows = try connection.query(
                "SELECT disabled_at, reason FROM disabled_destinations WHERE destination = $1", [.text(destination)])
            guard rows.count > 0, let at = rows.int(0, 0) else { return nil }
            return DestinationDisabled(at: at, reason: rows.string(0, 1) ?? "")
        }
    }

    public func setDisabled(destination: String, _ disabled: DestinationDisabled?) throws(CallbackStoreError) {
        try withConnection { connection throws(PostgreSQLError) in
            if let disabled {
                try connection.query(
                    """
                    INSERT INTO disabled_destinations (destination, disabled_at, reason) VALUES ($1, $2, $3)
                    ON CONFLICT (destination) DO UPDATE SET disabled_at = excluded.disabled_at, reason = excluded.reason
                    """, [.text(destination), .int(disabled.at), .text(disabled.reason)])
            } else {
                try connection.query("DELETE FROM disabled_destinations WHERE destination = $1", [.text(destination)])
            }
        }
    }

    public func purge(receivedBefore cutoff: Int64) throws(CallbackStoreError) -> Int {
        try withConnection { connection throws(PostgreSQLError) in
            try connection.query("DELETE FROM deliveries WHERE received_at < $1", [.int(cutoff)]).affected
        }
    }

    /// Closes the connection; later calls throw `.closed`.
    public func close() {
        link.close()
    }

    // MARK: - Internals

    private func withConnection<Result: Sendable>(
        _ body: (PostgreSQLConnection) throws(PostgreSQLError) -> Result
    ) throws(CallbackStoreError) -> Result {
        try link.use(
            connecting: { () throws(CallbackStoreError) in
                do throws(PostgreSQLError) { return try PostgreSQLConnection(settings) } catch { throw error.storeError }
            }, body)
    }

    private func transaction<Result: Sendable>(
        _ body: (PostgreSQLConnection) throws(PostgreSQLError) -> Result
    ) throws(CallbackStoreError) -> Result {
        try withConnection { connection throws(PostgreSQLError) in
            try connection.execute("BEGIN")
            do throws(PostgreSQLError) {
                let result = try body(connection)
                try connection.execute("COMMIT")
                return result
            } catch {
                if connection.isUsable { try? connection.execute("ROLLBACK") }
                throw error
            }
        }
    }

    private static func moveCursor(of destination: String, to cursor: Int64, in connection: PostgreSQLConnection) throws(PostgreSQLError) {
        try connection.query(
            """
            INSERT INTO delivery_cursors (destination, through) VALUES ($1, $2)
            ON CONFLICT (destination) DO UPDATE SET through = greatest(delivery_cursors.through, excluded.through)
            """, [.text(destination), .int(cursor)])
    }

    /// Writes `records` a few hundred rows per statement. One row per key (the last given wins, as
    /// one after the other would), in key order, so that concurrent writers lock rows in one order.
    /// `leading`: parameters `$1…` of `onConflict`, before the rows'.
    private static func insert(
        _ records: [DeliveryRecord], into connection: PostgreSQLConnection, leading: [PostgreSQLValue] = [], onConflict: String
    ) throws(PostgreSQLError) {
        guard !records.isEmpty else { return }
        var latest: [DeliveryKey: DeliveryRecord] = [:]
        for record in records { latest[DeliveryKey(destination: record.destination, callbackID: record.callbackID)] = record }
        let ordered = latest.values.sorted { ($0.destination, $0.callbackID) < ($1.destination, $1.callbackID) }
        var start = 0
        while start < ordered.count {
            let chunk = ordered[start..<min(start + rowsPerInsert, ordered.count)]
            start += chunk.count
            var rows: [String] = []
            var parameters = leading
            for record in chunk {
                let first = parameters.count
                rows.append("(" + columnTypes.enumerated().map { "$\(first + $0.offset + 1)::\($0.element)" }.joined(separator: ", ") + ")")
                parameters += [
                    .text(record.destination), .int(record.callbackID), .text(record.state.rawValue), .int(Int64(record.attempts)),
                    optional(record.nextAttemptAt), record.orderingKey.map { .text($0) } ?? .null, .int(record.receivedAt),
                    optional(record.lastAttemptAt), optional(record.lastStatus.map(Int64.init)),
                    record.lastError.map { .text($0) } ?? .null,
                ]
            }
            let values = rows.joined(separator: ", ")
            try connection.query(
                "INSERT INTO deliveries (\(columns)) VALUES \(values) ON CONFLICT (destination, callback_id) \(onConflict)", parameters)
        }
    }

    private struct DeliveryKey: Hashable {
        var destination: String
        var callbackID: Int64
    }

    private static func optional(_ value: Int64?) -> PostgreSQLValue { value.map { .int($0) } ?? .null }

    /// Rows of `columns`, in their order.
    private static func records(_ rows: borrowing PostgreSQLRows) throws(PostgreSQLError) -> [DeliveryRecord] {
        var records: [DeliveryRecord] = []
        records.reserveCapacity(rows.count)
        for row in 0..<rows.count {
            guard let destination = rows.string(row, 0), let id = rows.int(row, 1), let stateText = rows.string(row, 2),
                let state = DeliveryState(rawValue: stateText), let attempts = rows.int(row, 3), let receivedAt = rows.int(row, 6)
            else {
                throw PostgreSQLError(sqlState: "XX001", message: "a delivery record with missing or unknown fields", connectionLost: false)
            }
            records.append(
                DeliveryRecord(
                    destination: destination, callbackID: id, state: state, attempts: Int(attempts), nextAttemptAt: rows.int(row, 4),
                    orderingKey: rows.string(row, 5), receivedAt: receivedAt, lastAttemptAt: rows.int(row, 7),
                    lastStatus: rows.int(row, 8).map(Int.init), lastError: rows.string(row, 9)))
        }
        return records
    }
}
