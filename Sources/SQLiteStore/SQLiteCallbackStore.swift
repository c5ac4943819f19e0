import CallbackStore
import Foundation
import Logging
import Vocabulary

/// Callbacks in one SQLite file (WAL): the journal engine's index, and what every reader reads.
///
/// One instance is one connection, used one call at a time. The writable one belongs to
/// `JournalStore`'s indexer, which alone writes (`index(_:through:)`, `purge`) and makes it
/// durable with `checkpointIndex()`; the CLI and `JournalReader` open their own, `readOnly`, and
/// read while the service writes.
///
/// Fail-stop: after an I/O, read-only or corruption error a writable store is broken for good
/// (every later call throws that error, and closing it copies nothing more into the database
/// file); the journal engine stops, and the next start recovers from the journal. A read-only
/// store closes its connection instead and opens a new one on the next call, so a reader keeps
/// working once the file is readable again.
public final class SQLiteCallbackStore: CallbackReader, @unchecked Sendable {
    /// How long a call waits for another connection's lock before failing with `.busy`.
    public static let busyTimeoutMilliseconds: Int32 = 5_000
    /// Rows per write transaction in `purge`.
    static let purgeChunkSize = 1_000

    public let path: String
    public let isReadOnly: Bool

    private var connection: SQLiteConnection?
    /// Why a writable store refuses every call: see the type's comment.
    private var broken: CallbackStoreError?
    /// Between noticing that the file was moved and having reopened it (logs the move once).
    private var isReopeningMovedFile = false
    private var hasLoggedMovedFileFailure = false
    private var isClosed = false
    private let decoder = JSONDecoder()
    /// Recursive: a call on the connection may make another (a statement inside a transaction).
    private let oneAtATime = NSRecursiveLock()
    private let logger: Logger

    /// Opens (and when writable creates, with its parent directory and schema, or migrates) the
    /// database at `path`. `logger` hears about reopening the file after it was moved or deleted.
    public init(
        path: String,
        readOnly: Bool = false,
        logger: Logger = Logger(label: "CallbackStore", factory: { _ in SwiftLogNoOpLogHandler() })
    ) throws(CallbackStoreError) {
        self.path = path
        self.isReadOnly = readOnly
        self.logger = logger
        if !readOnly {
            try Self.createParentDirectory(of: path)
        }
        _ = try openConnection()
    }

    /// Closes the connection; later calls throw `.closed`. Idempotent.
    public func close() {
        oneAtATime.lock()
        defer { oneAtATime.unlock() }
        isClosed = true
        dropConnection()
    }

    private func dropConnection() {
        connection?.close()
        connection = nil
    }

    // MARK: - Indexing the journal

    /// The indexer's write: `records` (ids assigned by the journal, ascending) and the position
    /// after them, in ONE transaction, so that the position never runs ahead of the rows. A record
    /// whose id is already stored is skipped: replaying the journal from an older position (after
    /// a crash lost an unsynced index commit) stores nothing twice. Repeats are linked here: each
    /// receipt's `duplicateOf` is the first stored callback with the same dedup key, an earlier
    /// record of `records` included. Not synced: durable with the next `checkpointIndex()`.
    func index(_ records: [JournalRecord], through position: JournalPosition) throws(CallbackStoreError) -> [CommitReceipt] {
        try reopenIfMoved()
        let receipts = try withConnection { connection throws(CallbackStoreError) in
            try connection.transaction(.immediate) { () throws(CallbackStoreError) in
                var receipts: [CommitReceipt] = []
                receipts.reserveCapacity(records.count)
                for record in records {
                    let stored = try connection.withStatement(SQL.duplicateOfByID) { statement throws(CallbackStoreError) in
                        try statement.bind(1, record.id)
                        return try statement.step() ? Optional(statement.int64(0)) : nil
                    }
                    if let stored {
                        receipts.append(CommitReceipt(id: record.id, duplicateOf: stored))
                    } else {
                        receipts.append(try Self.insert(record.callback, id: record.id, into: connection))
                    }
                }
                try connection.withStatement(SQL.saveJournalPosition) { statement throws(CallbackStoreError) in
                    try statement.bind(1, position.nextID - 1)
                    try statement.bind(2, position.segmentFirstID)
                    try statement.bind(3, position.offset)
                    _ = try statement.step()
                }
                return receipts
            }
        }
        return receipts
    }

    /// How far the journal is indexed; nil before anything was.
    func journalPosition() throws(CallbackStoreError) -> JournalPosition? {
        try withConnection { connection throws(CallbackStoreError) in
            try connection.withStatement(SQL.journalPosition) { statement throws(CallbackStoreError) in
                guard try statement.step(), let lastID = statement.int64(0), let segment = statement.int64(1),
                    let offset = statement.int64(2)
                else { return nil }
                return JournalPosition(segmentFirstID: segment, offset: Int(offset), nextID: lastID + 1)
            }
        }
    }

    /// Copies the index's WAL into the database file and syncs it (SQLite syncs the WAL, then the
    /// file): once this returns true, everything indexed before it is durable without the journal.
    /// False when a reader kept part of the WAL from being copied (try again later). Any error is
    /// fatal to the journal engine: a failed fsync is never retried as if nothing happened. The
    /// only checkpoint of a writable store: SQLite's automatic one, whose errors nobody would see,
    /// is off (`Schema.writerPragmas`).
    func checkpointIndex() throws(CallbackStoreError) -> Bool {
        try withConnection { connection throws(CallbackStoreError) in
            try connection.withStatement("PRAGMA wal_checkpoint(PASSIVE)") { statement throws(CallbackStoreError) in
                guard try statement.step() else { return false }
                // busy, frames in the WAL, frames copied
                return statement.int64(0) == 0 && statement.int64(1) == statement.int64(2)
            }
        }
    }

    /// Stores `callback` with the id the journal assigned, linked to the first stored delivery
    /// with its dedup key.
    private static func insert(
        _ callback: NewCallback,
        id: Int64,
        into connection: SQLiteConnection
    ) throws(CallbackStoreError) -> CommitReceipt {
        let lookup = callback.requestID == nil ? SQL.firstWithDedupKeyWithoutRequestID : SQL.firstWithDedupKey
        let duplicateOf = try connection.withStatement(lookup) { statement throws(CallbackStoreError) in
            try statement.bind(1, callback.dedupKey)
            if let requestID = callback.requestID {
                try statement.bind(2, requestID)
            }
            return try statement.step() ? statement.int64(0) : nil
        }
        try connection.withStatement(SQL.insertCallback) { statement throws(CallbackStoreError) in
            try statement.bind(1, callback.receivedAt)
            try statement.bind(2, callback.service)
            try statement.bind(3, callback.requestID)
            try statement.bind(4, DeviceIDList.encode(callback.deviceIDs))
            try statement.bind(5, callback.status)
            try statement.bind(6, callback.callbackCount)
            try statement.bind(7, callback.remoteAddress)
            try statement.bind(8, callback.dedupKey)
            try statement.bind(9, duplicateOf)
            try statement.bindText(10, bytes: callback.body)
            try statement.bind(11, id)
            _ = try statement.step()
        }
        for device in callback.deviceIDs {
            try connection.withStatement(SQL.insertDevice) { statement throws(CallbackStoreError) in
                try statement.bind(1, device.id)
                try statement.bind(2, id)
                _ = try statement.step()
            }
        }
        return CommitReceipt(id: id, duplicateOf: duplicateOf)
    }

    // MARK: - Maintenance

    /// Deletes callbacks received before `cutoff` (UTC milliseconds) and returns how many.
    ///
    /// Works in transactions of `purgeChunkSize` rows so that indexing waits at most one chunk.
    /// A kept repeat whose first delivery is purged is relinked to the oldest kept delivery with its
    /// key (which becomes the first), so `duplicateOf` always names a stored row. Not synced, like
    /// `index`: durable with the next `checkpointIndex()` (the journal cannot replay a purge, but
    /// a purge lost in a crash only leaves rows the next hourly purge deletes).
    public func purge(olderThan cutoff: Int64) throws(CallbackStoreError) -> Int {
        var purged = 0
        try reopenIfMoved()
        while true {
            let deleted = try withConnection { connection throws(CallbackStoreError) in
                try connection.transaction(.immediate) { () throws(CallbackStoreError) -> Int in
                    let lastID = try connection.withStatement(SQL.purgeChunkEnd) { statement throws(CallbackStoreError) in
                        try statement.bind(1, cutoff)
                        try statement.bind(2, Self.purgeChunkSize)
                        return try statement.step() ? statement.int64(0) : nil
                    }
                    guard let lastID else { return 0 }
                    for sql in [SQL.purgeRelink, SQL.purgeDevices, SQL.purgeCallbacks] {
                        try connection.withStatement(sql) { statement throws(CallbackStoreError) in
                            try statement.bind(1, cutoff)
                            try statement.bind(2, lastID)
                            _ = try statement.step()
                        }
                    }
                    return connection.changes
                }
            }
            guard deleted > 0 else { return purged }
            purged += deleted
        }
    }

    // MARK: - Reading

    /// Callbacks matching every field set in `filter`, newest first, at most `filter.limit`.
    public func query(_ filter: CallbackFilter) throws(CallbackStoreError) -> [StoredCallback] {
        guard filter.limit > 0 else { return [] }
        return try withConnection { connection throws(CallbackStoreError) in
            try connection.withStatement(SQL.list(filter)) { statement throws(CallbackStoreError) in
                try statement.bind(1, filter.service)
                try statement.bind(2, filter.requestID)
                try statement.bind(3, filter.deviceID)
                try statement.bind(4, filter.since)
                try statement.bind(5, filter.limit)
                var callbacks: [StoredCallback] = []
                while try statement.step() {
                    callbacks.append(try read(statement))
                }
                return callbacks
            }
        }
    }

    public func callback(id: Int64) throws(CallbackStoreError) -> StoredCallback? {
        try withConnection { connection throws(CallbackStoreError) in
            try connection.withStatement(SQL.byID) { statement throws(CallbackStoreError) in
                try statement.bind(1, id)
                return try statement.step() ? read(statement) : nil
            }
        }
    }

    /// Callbacks with an id above `id`, in id order: the cursor `export` and consumers page with.
    /// Each page is one short read, so the service's WAL can be checkpointed during a long export.
    public func callbacks(after id: Int64, limit: Int, includeDuplicates: Bool) throws(CallbackStoreError) -> [StoredCallback] {
        guard limit > 0 else { return [] }
        return try withConnection { connection throws(CallbackStoreError) in
            try connection.withStatement(SQL.exportPage(includeDuplicates: includeDuplicates)) { statement throws(CallbackStoreError) in
                try statement.bind(1, id)
                try statement.bind(2, Int64.max)
                try statement.bind(3, limit)
                var rows: [StoredCallback] = []
                while try statement.step() { rows.append(try read(statement)) }
                return rows
            }
        }
    }

    /// The consumer cursor: the page and the highest id read in one read transaction, so `next`
    /// and the page are one view. Filters use the indexes (see `SQL.page`).
    public func page(after id: Int64, matching filter: CallbackFilter, limit: Int) throws(CallbackStoreError) -> CallbackPage {
        guard limit > 0 else { return CallbackPage(callbacks: [], next: id) }
        return try withConnection { connection throws(CallbackStoreError) in
            try connection.transaction(.deferred) { () throws(CallbackStoreError) in
                let rows = try connection.withStatement(SQL.page(filter)) { statement throws(CallbackStoreError) in
                    try statement.bind(1, id)
                    try statement.bind(2, filter.service)
                    try statement.bind(3, filter.requestID)
                    try statement.bind(4, filter.deviceID)
                    try statement.bind(5, filter.since)
                    try statement.bind(6, limit)
                    var rows: [StoredCallback] = []
                    while try statement.step() { rows.append(try read(statement)) }
                    return rows
                }
                if rows.count == limit, let last = rows.last { return CallbackPage(callbacks: rows, next: last.id) }
                let highest = try connection.scalarInt64("SELECT max(id) FROM callbacks") ?? 0
                return CallbackPage(callbacks: rows, next: max(id, highest))
            }
        }
    }

    /// The statement `page` runs for `filter`, for query-plan tests.
    static func pageQuery(_ filter: CallbackFilter) -> String { SQL.page(filter) }

    public func lastID() throws(CallbackStoreError) -> Int64 {
        try withConnection { connection throws(CallbackStoreError) in
            try connection.scalarInt64("SELECT max(id) FROM callbacks") ?? 0
        }
    }

    /// Counts by service, status and UTC day, from one consistent snapshot.
    public func stats() throws(CallbackStoreError) -> CallbackStats {
        try withConnection { connection throws(CallbackStoreError) in
            try connection.transaction(.deferred) { () throws(CallbackStoreError) in
                let totals = try Self.counts(SQL.totals, connection)
                return CallbackStats(
                    total: totals.first?.count ?? 0,
                    duplicates: totals.first?.duplicates ?? 0,
                    byService: try Self.counts(SQL.countsByService, connection),
                    byStatus: try Self.counts(SQL.countsByStatus, connection),
                    byDay: try Self.counts(SQL.countsByDay, connection)
                )
            }
        }
    }

    private static func counts(
        _ sql: String,
        _ connection: SQLiteConnection
    ) throws(CallbackStoreError) -> [CallbackStats.Count] {
        try connection.withStatement(sql) { statement throws(CallbackStoreError) in
            var counts: [CallbackStats.Count] = []
            while try statement.step() {
                counts.append(
                    CallbackStats.Count(
                        key: statement.text(0),
                        count: Int(statement.int64(1) ?? 0),
                        duplicates: Int(statement.int64(2) ?? 0)
                    ))
            }
            return counts
        }
    }

    private func read(_ statement: SQLiteStatement) throws(CallbackStoreError) -> StoredCallback {
        let id = statement.int64(0) ?? 0
        guard let devices = DeviceIDList.decode(statement.bytes(5), decoder: decoder) else {
            throw .corrupt(message: "callback \(id): device_ids is not a JSON array of {\"id\", \"kind\"} objects")
        }
        let callback = NewCallback(
            receivedAt: statement.int64(2) ?? 0,
            service: statement.text(3) ?? "",
            requestID: statement.text(4),
            deviceIDs: devices,
            status: statement.text(6),
            callbackCount: statement.int64(7).map { Int(truncatingIfNeeded: $0) },
            remoteAddress: statement.text(8) ?? "",
            dedupKey: statement.text(9) ?? "",
            body: statement.bytes(10)
        )
        return StoredCallback(id: id, duplicateOf: statement.int64(1), callback: callback)
    }

    // MARK: - Connection

    /// Runs `body` on the connection, one call at a time: a reader is shared by tasks
    /// (`CallbackReader` is Sendable), a connection is not. After an error that may have broken
    /// the connection a reader reopens on the next call and a writer breaks (see the type).
    private func withConnection<Result>(
        _ body: (SQLiteConnection) throws(CallbackStoreError) -> Result
    ) throws(CallbackStoreError) -> Result {
        oneAtATime.lock()
        defer { oneAtATime.unlock() }
        let connection = try openConnection()
        do {
            return try body(connection)
        } catch {
            if error.requiresReopen {
                if isReadOnly {
                    dropConnection()
                } else if !connection.hasMoved {
                    // A moved file keeps its connection: `reopenIfMoved` must first empty its WAL into it.
                    broken = error
                    connection.closeWithoutCheckpoint()
                    self.connection = nil
                }
            }
            throw error
        }
    }

    /// Writes must reach the file at `path`: if it was moved or deleted (say, rotated by an operator),
    /// finish the old file and open, or create, the one at `path`.
    private func reopenIfMoved() throws(CallbackStoreError) {
        oneAtATime.lock()
        defer { oneAtATime.unlock() }
        guard let connection, connection.hasMoved else { return }
        if !isReopeningMovedFile {
            logger.warning(
                "The callback database was moved or deleted; reopening it at its path",
                metadata: ["store.path": "\(path)"]
            )
            isReopeningMovedFile = true
        }
        // SQLite does not checkpoint a moved file on close, and its WAL keeps the old name, which the
        // file created at `path` would take for its own: copy what the WAL holds into the moved file
        // and empty it first. Until that works nothing is written (the journal holds the records,
        // and the indexer tries again), rather than lose those rows or replay them into the new file.
        do throws(CallbackStoreError) {
            let busy = try connection.scalarInt64("PRAGMA wal_checkpoint(TRUNCATE)")
            guard busy == 0 else { throw .busy(message: "a reader holds the moved file's WAL") }
        } catch {
            if !hasLoggedMovedFileFailure {
                logger.error(
                    "Could not write the last callbacks into the moved database file; retrying",
                    metadata: ["store.path": "\(path)", "error": "\(error)"]
                )
                hasLoggedMovedFileFailure = true
            }
            throw error
        }
        isReopeningMovedFile = false
        hasLoggedMovedFileFailure = false
        dropConnection()
    }

    private func openConnection() throws(CallbackStoreError) -> SQLiteConnection {
        if isClosed { throw .closed }
        if let broken { throw broken }
        if let connection { return connection }
        let opened = try Self.connect(path: path, readOnly: isReadOnly)
        connection = opened
        return opened
    }

    private static func connect(path: String, readOnly: Bool) throws(CallbackStoreError) -> SQLiteConnection {
        if readOnly, !FileManager.default.fileExists(atPath: path) {
            throw .notInitialized(path: path)
        }
        let connection = try SQLiteConnection(path: path, readOnly: readOnly)
        try connection.setBusyTimeout(milliseconds: busyTimeoutMilliseconds)
        try connection.execute(Schema.connectionPragmas)
        let state = try Schema.validate(connection)
        if readOnly {
            // Readers need no index that changed between versions.
            if state == .empty { throw .notInitialized(path: path) }
            return connection
        }
        try connection.execute(Schema.writerPragmas)
        let journalMode = try connection.scalarText("PRAGMA journal_mode")
        guard journalMode == "wal" else {
            throw .openFailed(path: path, message: "cannot switch to WAL journal mode (still \(journalMode ?? "unknown"))")
        }
        switch state {
        case .empty: try Schema.create(connection)
        case .older: try Schema.migrate(connection)
        case .current: break
        }
        return connection
    }

    private static func createParentDirectory(of path: String) throws(CallbackStoreError) {
        guard let slash = path.lastIndex(of: "/") else { return }
        let directory = String(path[..<slash])
        guard !directory.isEmpty else { return }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw .openFailed(path: path, message: "cannot create directory \(directory): \(error.localizedDescription)")
        }
    }
}

/// The store's SQL. Statements are prepared once per connection and cached.
private enum SQL {
    static let columns = """
        id, duplicate_of, received_at, service, request_id, device_ids, status, \
        callback_count, remote_address, dedup_key, body
        """

    /// Rows with one dedup key share one request id (the key covers it), so the lookup goes
    /// through the request id index; see `Schema`.
    static let firstWithDedupKey = "SELECT min(id) FROM callbacks WHERE request_id = ?2 AND dedup_key = ?1"
    static let firstWithDedupKeyWithoutRequestID = """
        SELECT min(id) FROM callbacks WHERE request_id IS NULL AND dedup_key = ?1
        """

    /// ?11: the id the journal assigned.
    static let insertCallback = """
        INSERT INTO callbacks (received_at, service, request_id, device_ids, status, callback_count, \
        remote_address, dedup_key, duplicate_of, body, id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
        """

    /// One row for a stored id: its duplicate_of (NULL for a first delivery); none for an id not stored.
    static let duplicateOfByID = "SELECT duplicate_of FROM callbacks WHERE id = ?1"

    static let saveJournalPosition = """
        INSERT INTO journal_position (singleton, last_id, segment, offset) VALUES (1, ?1, ?2, ?3) \
        ON CONFLICT (singleton) DO UPDATE SET last_id = excluded.last_id, segment = excluded.segment, offset = excluded.offset
        """

    static let journalPosition = "SELECT last_id, segment, offset FROM journal_position WHERE singleton = 1"

    /// A callback may name one device id twice (with different kinds); the lookup needs it once.
    static let insertDevice = "INSERT OR IGNORE INTO callback_devices (device_id, callback_id) VALUES (?1, ?2)"

    static let byID = "SELECT \(columns) FROM callbacks WHERE id = ?1"

    /// Parameters: ?1 service, ?2 request id, ?3 device id, ?4 since, ?5 limit (always bound).
    static func list(_ filter: CallbackFilter) -> String {
        var conditions: [String] = []
        if filter.service != nil { conditions.append("service = ?1") }
        if filter.requestID != nil { conditions.append("request_id = ?2") }
        if filter.deviceID != nil {
            conditions.append("id IN (SELECT callback_id FROM callback_devices WHERE device_id = ?3)")
        }
        if filter.since != nil { conditions.append("received_at >= ?4") }
        if !filter.includeDuplicates { conditions.append("duplicate_of IS NULL") }
        let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        return "SELECT \(columns) FROM callbacks \(whereClause) ORDER BY received_at DESC, id DESC LIMIT ?5"
    }

    /// Parameters: ?1 the last id exported, ?2 the highest id when the export started, ?3 page size.
    static func exportPage(includeDuplicates: Bool) -> String {
        let duplicates = includeDuplicates ? "" : "AND duplicate_of IS NULL"
        return "SELECT \(columns) FROM callbacks WHERE id > ?1 AND id <= ?2 \(duplicates) ORDER BY id LIMIT ?3"
    }

    /// Parameters: ?1 after (the cursor), ?2 service, ?3 request id, ?4 device id, ?5 since,
    /// ?6 limit (always bound). One index decides each plan, the others' terms are written
    /// (`+column`) so SQLite does not reach for them: a device id walks its `callback_devices`
    /// rows from the cursor on, in id order (the primary key); else a request id its index
    /// entries (a handful of rows, sorted); else the rows after the cursor in id order, which at
    /// the head of the cursor are only the new ones (the service or time index would visit every
    /// row of the service, or of the period, on each poll).
    static func page(_ filter: CallbackFilter) -> String {
        let prefixed = columns.split(separator: ",").map { "c." + $0.trimmingCharacters(in: .whitespaces) }.joined(separator: ", ")
        var conditions: [String] = []
        let from: String
        if filter.deviceID != nil {
            from = "callback_devices AS d CROSS JOIN callbacks AS c ON c.id = d.callback_id"
            conditions.append("d.device_id = ?4 AND d.callback_id > ?1")
            if filter.requestID != nil { conditions.append("+c.request_id = ?3") }
        } else if filter.requestID != nil {
            from = "callbacks AS c"
            conditions.append("c.request_id = ?3 AND +c.id > ?1")
        } else {
            from = "callbacks AS c"
            conditions.append("c.id > ?1")
        }
        if filter.service != nil { conditions.append("+c.service = ?2") }
        if filter.since != nil { conditions.append("+c.received_at >= ?5") }
        if !filter.includeDuplicates { conditions.append("c.duplicate_of IS NULL") }
        let order = filter.deviceID != nil ? "d.callback_id" : "c.id"
        return "SELECT \(prefixed) FROM \(from) WHERE \(conditions.joined(separator: " AND ")) ORDER BY \(order) LIMIT ?6"
    }

    static let totals = "SELECT NULL, count(*), count(duplicate_of) FROM callbacks"
    static let countsByService = """
        SELECT service, count(*), count(duplicate_of) FROM callbacks GROUP BY service ORDER BY service
        """
    static let countsByStatus = """
        SELECT status, count(*), count(duplicate_of) FROM callbacks GROUP BY status ORDER BY status
        """
    static let countsByDay = """
        SELECT date(received_at / 1000, 'unixepoch') AS day, count(*), count(duplicate_of) \
        FROM callbacks GROUP BY day ORDER BY day
        """

    // Purge works on chunks: the rows received before ?1 (the cutoff) with id <= ?2 (the chunk's
    // last id). `+received_at` keeps SQLite on the rowid order, where the oldest rows come first.
    static let purgeChunkEnd = """
        SELECT max(id) FROM (SELECT id FROM callbacks WHERE +received_at < ?1 ORDER BY id LIMIT ?2)
        """
    static let purgeRelink = """
        UPDATE callbacks SET duplicate_of = nullif(
            (SELECT min(kept.id) FROM callbacks AS kept
             WHERE kept.request_id IS callbacks.request_id AND kept.dedup_key = callbacks.dedup_key AND NOT (kept.received_at < ?1 AND kept.id <= ?2)),
            callbacks.id)
        WHERE duplicate_of IN (SELECT id FROM callbacks WHERE +received_at < ?1 AND id <= ?2)
          AND NOT (received_at < ?1 AND id <= ?2)
        """
    static let purgeDevices = """
        DELETE FROM callback_devices
        WHERE callback_id IN (SELECT id FROM callbacks WHERE +received_at < ?1 AND id <= ?2)
        """
    static let purgeCallbacks = "DELETE FROM callbacks WHERE +received_at < ?1 AND id <= ?2"
}
