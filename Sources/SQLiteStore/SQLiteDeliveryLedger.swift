import CallbackStore
import Foundation

/// The delivery ledger of the one-machine backend: its own SQLite file (`deliveries.sqlite` beside
/// the index), so that delivery never waits on the indexer's transactions or checkpoints, and
/// `store rebuild-index` leaves it alone.
///
/// Durability: WAL with `synchronous = NORMAL`. A power cut may lose the newest updates; each such
/// loss only repeats attempts (with the same webhook-id), never skips one, because a record is
/// written before its callback's cursor moves past it and `delivered` is written after the
/// receiver's 2xx. Commands that change the ledger by hand (`deliveries retry`, `replay`,
/// `enable`) open it with `synchronous = FULL`. Fail-stop, as the journal: after an I/O error the
/// ledger refuses every call, and its own checkpoints (never SQLite's automatic one, whose errors
/// nobody would see) stop.
public final class SQLiteDeliveryLedger: DeliveryLedger, @unchecked Sendable {
    static let applicationID: Int32 = 0x5453_444C  // "TSDL"
    static let version: Int32 = 1
    /// How often the WAL is copied into the file (and on close): rarely, since each checkpoint
    /// syncs twice and shares the disk with the journal's fdatasyncs.
    static let checkpointInterval: Duration = .seconds(5)

    public let path: String
    private let lock = NSLock()
    private var connection: SQLiteConnection?
    private var broken: CallbackStoreError?
    private var lastCheckpoint = ContinuousClock.now

    /// `deliveries.sqlite` in the database's directory.
    public static func path(besideDatabase database: String) -> String {
        (URL(fileURLWithPath: database).deletingLastPathComponent().path as NSString).appendingPathComponent("deliveries.sqlite")
    }

    /// Opens (creating it and its schema when missing) the ledger at `path`. `durableCommits`:
    /// every commit synced (the CLI's changes), instead of only at checkpoints.
    public init(path: String, durableCommits: Bool = false) throws(CallbackStoreError) {
        self.path = path
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                throw .openFailed(path: path, message: "cannot create its directory: \(error.localizedDescription)")
            }
        }
        let connection = try SQLiteConnection(path: path, readOnly: false)
        try connection.setBusyTimeout(milliseconds: SQLiteCallbackStore.busyTimeoutMilliseconds)
        try connection.execute(
            """
            PRAGMA journal_mode = WAL;
            PRAGMA synchronous = \(durableCommits ? "FULL" : "NORMAL");
            PRAGMA wal_autocheckpoint = 0;
            PRAGMA journal_size_limit = 16777216;
            PRAGMA cache_size = -1000;
            """)
        try connection.transaction(.immediate) { () throws(CallbackStoreError) in
            let application = Int32(truncatingIfNeeded: try connection.scalarInt64("PRAGMA application_id") ?? 0)
            let found = Int32(truncatingIfNeeded: try connection.scalarInt64("PRAGMA user_version") ?? 0)
            if application == 0, found == 0, (try connection.scalarInt64("SELECT count(*) FROM sqlite_schema") ?? 0) == 0 {
                try connection.execute(Self.schema)
                try connection.execute("PRAGMA application_id = \(Self.applicationID); PRAGMA user_version = \(Self.version);")
                return
            }
            guard application == Self.applicationID else {
                throw .openFailed(path: path, message: "not a delivery ledger of thingspace-listener")
            }
            guard found <= Self.version else { throw .schemaTooNew(path: path, found: found, supported: Self.version) }
        }
        self.connection = connection
    }

    static let schema = """
        CREATE TABLE delivery_cursors (
            destination TEXT PRIMARY KEY,
            through INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE deliveries (
            destination TEXT NOT NULL,
            callback_id INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('pending', 'retrying', 'delivered', 'dead')),
            attempts INTEGER NOT NULL,
            next_attempt_at INTEGER,
            ordering_key TEXT,
            received_at INTEGER NOT NULL,
            last_attempt_at INTEGER,
            last_status INTEGER,
            last_error TEXT,
            PRIMARY KEY (destination, callback_id)
        ) WITHOUT ROWID;
        CREATE INDEX deliveries_due ON deliveries(destination, next_attempt_at, callback_id)
            WHERE state IN ('pending', 'retrying');
        CREATE INDEX deliveries_waiting_by_key ON deliveries(destination, ordering_key, callback_id)
            WHERE state IN ('pending', 'retrying');
        CREATE INDEX deliveries_dead ON deliveries(destination, callback_id) WHERE state = 'dead';
        CREATE INDEX deliveries_received_at ON deliveries(received_at);
        CREATE TABLE destinations_disabled (
            destination TEXT PRIMARY KEY,
            at INTEGER NOT NULL,
            reason TEXT NOT NULL
        ) WITHOUT ROWID;
        """

    static let columns =
        "destination, callback_id, state, attempts, next_attempt_at, ordering_key, received_at, last_attempt_at, last_status, last_error"
    static let waiting = "state IN ('pending', 'retrying')"

    // MARK: - The protocol

    public func cursor(destination: String) throws(CallbackStoreError) -> Int64? {
        try withConnection { connection throws(CallbackStoreError) in
            try connection.withStatement("SELECT through FROM delivery_cursors WHERE destination = ?1") {
                statement throws(CallbackStoreError) in
                try statement.bind(1, destination)
                return try statement.step() ? statement.int64(0) : nil
            }
        }
    }

    /// Every destination the ledger knows (a cursor, a record or a 410), sorted: what `store migrate` copies.
    public func destinations() throws(CallbackStoreError) -> [String] {
        try withConnection { connection throws(CallbackStoreError) in
            try connection.withStatement(
                """
                SELECT destination FROM delivery_cursors UNION SELECT destination FROM deliveries
                UNION SELECT destination FROM destinations_disabled ORDER BY 1
                """
            ) { statement throws(CallbackStoreError) in
                var names: [String] = []
                while try statement.step() { if let name = statement.text(0) { names.append(name) } }
                return names
            }
        }
    }

    public func enqueue(destination: String, _ records: [DeliveryRecord], through cursor: Int64) throws(CallbackStoreError) {
        try write { connection throws(CallbackStoreError) in
            for record in records {
                try Self.write(record, into: connection, verb: "INSERT OR IGNORE")
            }
            try Self.moveCursor(of: destination, to: cursor, in: connection)
        }
    }

    private static func moveCursor(of destination: String, to cursor: Int64, in connection: SQLiteConnection) throws(CallbackStoreError) {
        try connection.withStatement(
            """
            INSERT INTO delivery_cursors (destination, through) VALUES (?1, ?2)
            ON CONFLICT (destination) DO UPDATE SET through = max(through, excluded.through)
            """
        ) { statement throws(CallbackStoreError) in
            try statement.bind(1, destination)
            try statement.bind(2, cursor)
            _ = try statement.step()
        }
    }

    public func due(
        destination: String, now: Int64, limit: Int, excluding: Set<Int64>, onePerOrderingKey: Bool
    ) throws(CallbackStoreError) -> [DeliveryRecord] {
        let headsOnly =
            onePerOrderingKey
            ? """
             AND (d.ordering_key IS NULL OR NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.destination = d.destination
                AND e.ordering_key = d.ordering_key AND e.\(Self.waiting) AND e.callback_id < d.callback_id))
            """ : ""
        let sql = """
            SELECT \(Self.columns) FROM deliveries d
            WHERE d.destination = ?1 AND d.\(Self.waiting) AND d.next_attempt_at <= ?2\(headsOnly)
            ORDER BY d.next_attempt_at, d.callback_id LIMIT ?3
            """
        return try withConnection { connection throws(CallbackStoreError) in
            try connection.withStatement(sql) { statement throws(CallbackStoreError) in
                try statement.bind(1, destination)
                try statement.bind(2, now)
                try statement.bind(3, limit + excluding.count)
                var records: [DeliveryRecord] = []
                while records.count < limit, try statement.step() {
                    let record = try Self.record(statement)
                    if !excluding.contains(record.callbackID) { records.append(record) }
                }
                return records
            }
        }
    }

    public func nextAttemptAt(destination: String) throws(CallbackStoreError) -> Int64? {
        try withConnection { connection throws(CallbackStoreError) in
            try connection.withStatement(
                "SELECT min(next_attempt_at) FROM deliveries WHERE destination = ?1 AND \(Self.waiting)"
            ) { statement throws(CallbackStoreError) in
                try statement.bind(1, destination)
                return try statement.step() ? statement.int64(0) : nil
            }
        }
    }

    public func update(_ records: [DeliveryRecord], cursor: (destination: String, through: Int64)?) throws(CallbackStoreError) {
        guard !records.isEmpty || cursor != nil else { return }
        try write { connection throws(CallbackStoreError) in
            for record in records { try Self.write(record, into: connection, verb: "INSERT OR REPLACE") }
            if let cursor { try Self.moveCursor(of: cursor.destination, to: cursor.through, in: connection) }
        }
    }

    public func record(destination: String, callbackID: Int64) throws(CallbackStoreError) -> DeliveryRecord? {
        try withConnection { connection throws(CallbackStoreError) in try Self.find(destination, callbackID, in: connection) }
    }

    public func list(_ filter: DeliveryFilter) throws(CallbackStoreError) -> [DeliveryRecord] {
        var conditions = ["callback_id > ?1"]
        if filter.destination != nil { conditions.append("destination = ?2") }
        switch filter.state {
        case .pending?, .retrying?: conditions.append("\(Self.waiting) AND state = ?3")
        case .some: conditions.append("state = ?3")
        case nil: break
        }
        let sql = """
            SELECT \(Self.columns) FROM deliveries WHERE \(conditions.joined(separator: " AND "))
            ORDER BY callback_id, destination LIMIT ?4
            """
        return try withConnection { connection throws(CallbackStoreError) in
            try connection.withStatement(sql) { statement throws(CallbackStoreError) in
                try statement.bind(1, filter.afterID)
                try statement.bind(2, filter.destination)
                try statement.bind(3, filter.state?.rawValue)
                try statement.bind(4, filter.limit)
                var records: [DeliveryRecord] = []
                while try statement.step() { records.append(try Self.record(statement)) }
                return records
            }
        }
    }

    public func backlog(destination: String) throws(CallbackStoreError) -> DeliveryBacklog {
        try withConnection { connection throws(CallbackStoreError) in
            var backlog = DeliveryBacklog()
            try connection.withStatement(
                """
                SELECT sum(state = 'pending'), sum(state = 'retrying'), min(received_at)
                FROM deliveries WHERE destination = ?1 AND \(Self.waiting)
                """
            ) { statement throws(CallbackStoreError) in
                try statement.bind(1, destination)
                guard try statement.step() else { return }
                backlog.pending = Int(statement.int64(0) ?? 0)
                backlog.retrying = Int(statement.int64(1) ?? 0)
                backlog.oldestWaitingReceivedAt = statement.int64(2)
            }
            try connection.withStatement(
                "SELECT count(*) FROM deliveries WHERE destination = ?1 AND state = 'dead'"
            ) { statement throws(CallbackStoreError) in
                try statement.bind(1, destination)
                if try statement.step() { backlog.dead = Int(statement.int64(0) ?? 0) }
            }
            return backlog
        }
    }

    public func retry(destination: String, ids: [Int64]?, now: Int64) throws(CallbackStoreError) -> Int {
        try write { connection throws(CallbackStoreError) in
            let revive = """
                UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?2
                WHERE destination = ?1 AND state = 'dead'
                """
            guard let ids else {
                return try connection.withStatement(revive) { statement throws(CallbackStoreError) in
                    try statement.bind(1, destination)
                    try statement.bind(2, now)
                    _ = try statement.step()
                    return connection.changes
                }
            }
            var count = 0
            for id in Set(ids) {
                count += try connection.withStatement(revive + " AND callback_id = ?3") { statement throws(CallbackStoreError) in
                    try statement.bind(1, destination)
                    try statement.bind(2, now)
                    try statement.bind(3, id)
                    _ = try statement.step()
                    return connection.changes
                }
            }
            return count
        }
    }

    public func replay(_ records: [DeliveryRecord], now: Int64) throws(CallbackStoreError) -> Int {
        try write { connection throws(CallbackStoreError) in
            for var record in records {
                if let existing = try Self.find(record.destination, record.callbackID, in: connection) {
                    record.lastAttemptAt = existing.lastAttemptAt
                    record.lastStatus = existing.lastStatus
                    record.lastError = existing.lastError
                }
                record.state = .pending
                record.attempts = 0
                record.nextAttemptAt = now
                try Self.write(record, into: connection, verb: "INSERT OR REPLACE")
            }
            return records.count
        }
    }

    public func disabled(destination: String) throws(CallbackStoreError) -> DestinationDisabled? {
        try withConnection { connection throws(CallbackStoreError) in
            try connection.withStatement(
                "SELECT at, reason FROM destinations_disabled WHERE destination = ?1"
            ) { statement throws(CallbackStoreError) in
                try statement.bind(1, destination)
                guard try statement.step(), let at = statement.int64(0) else { return nil }
                return DestinationDisabled(at: at, reason: statement.text(1) ?? "")
            }
        }
    }

    public func setDisabled(destination: String, _ disabled: DestinationDisabled?) throws(CallbackStoreError) {
        try write { connection throws(CallbackStoreError) in
            let sql =
                disabled == nil
                ? "DELETE FROM destinations_disabled WHERE destination = ?1"
                : "INSERT OR REPLACE INTO destinations_disabled (destination, at, reason) VALUES (?1, ?2, ?3)"
            try connection.withStatement(sql) { statement throws(CallbackStoreError) in
                try statement.bind(1, destination)
                if let disabled {
                    try statement.bind(2, disabled.at)
                    try statement.bind(3, disabled.reason)
                }
                _ = try statement.step()
            }
        }
    }

    public func purge(receivedBefore cutoff: Int64) throws(CallbackStoreError) -> Int {
        try write { connection throws(CallbackStoreError) in
            try connection.withStatement("DELETE FROM deliveries WHERE received_at < ?1") { statement throws(CallbackStoreError) in
                try statement.bind(1, cutoff)
                _ = try statement.step()
                return connection.changes
            }
        }
    }

    /// Checkpoints (so the file holds everything) and closes; later calls throw `.closed`.
    public func close() {
        lock.lock()
        defer { lock.unlock() }
        guard let connection else { return }
        if broken == nil {
            _ = try? connection.scalarInt64("PRAGMA wal_checkpoint(TRUNCATE)")
            connection.close()
        } else {
            connection.closeWithoutCheckpoint()
        }
        self.connection = nil
    }

    // MARK: - Internals

    private func withConnection<Result>(
        _ body: (SQLiteConnection) throws(CallbackStoreError) -> Result
    ) throws(CallbackStoreError) -> Result {
        lock.lock()
        defer { lock.unlock() }
        if let broken { throw broken }
        guard let connection else { throw .closed }
        do {
            return try body(connection)
        } catch {
            if error.requiresReopen { broken = error }
            throw error
        }
    }

    /// A write transaction, and now and then the checkpoint that makes the WAL's content durable in
    /// the database file; its errors are the ledger's errors.
    private func write<Result>(_ body: (SQLiteConnection) throws(CallbackStoreError) -> Result) throws(CallbackStoreError) -> Result {
        try withConnection { connection throws(CallbackStoreError) in
            let result = try connection.transaction(.immediate) { () throws(CallbackStoreError) in try body(connection) }
            let now = ContinuousClock.now
            if now - lastCheckpoint >= Self.checkpointInterval {
                lastCheckpoint = now
                _ = try connection.scalarInt64("PRAGMA wal_checkpoint(PASSIVE)")
            }
            return result
        }
    }

    private static func write(_ record: DeliveryRecord, into connection: SQLiteConnection, verb: String) throws(CallbackStoreError) {
        try connection.withStatement(
            "\(verb) INTO deliveries (\(columns)) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ) { statement throws(CallbackStoreError) in
            try statement.bind(1, record.destination)
            try statement.bind(2, record.callbackID)
            try statement.bind(3, record.state.rawValue)
            try statement.bind(4, record.attempts)
            try statement.bind(5, record.nextAttemptAt)
            try statement.bind(6, record.orderingKey)
            try statement.bind(7, record.receivedAt)
            try statement.bind(8, record.lastAttemptAt)
            try statement.bind(9, record.lastStatus)
            try statement.bind(10, record.lastError)
            _ = try statement.step()
        }
    }

    private static func find(_ destination: String, _ callbackID: Int64, in connection: SQLiteConnection) throws(CallbackStoreError)
        -> DeliveryRecord?
    {
        try connection.withStatement(
            "SELECT \(columns) FROM deliveries WHERE destination = ?1 AND callback_id = ?2"
        ) { statement throws(CallbackStoreError) in
            try statement.bind(1, destination)
            try statement.bind(2, callbackID)
            return try statement.step() ? try Self.record(statement) : nil
        }
    }

    private static func record(_ statement: SQLiteStatement) throws(CallbackStoreError) -> DeliveryRecord {
        guard let destination = statement.text(0), let id = statement.int64(1), let stateText = statement.text(2),
            let state = DeliveryState(rawValue: stateText), let attempts = statement.int64(3), let receivedAt = statement.int64(6)
        else { throw .corrupt(message: "a delivery record with missing or unknown fields") }
        return DeliveryRecord(
            destination: destination, callbackID: id, state: state, attempts: Int(attempts), nextAttemptAt: statement.int64(4),
            orderingKey: statement.text(5), receivedAt: receivedAt, lastAttemptAt: statement.int64(7),
            lastStatus: statement.int64(8).map(Int.init), lastError: statement.text(9))
    }
}
