import CSQLite
import CallbackStore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// One SQLite connection with its prepared statements cached by SQL text.
/// Not thread-safe: use it from one thread at a time (checked: `ExclusiveUse`).
final class SQLiteConnection {
    enum TransactionKind {
        /// Takes the write lock at once, so a busy database is noticed before any work is done.
        case immediate
        /// A read snapshot.
        case deferred
    }

    let path: String
    private let exclusive: ExclusiveUse
    private var handle: OpaquePointer?
    private var statements: [String: OpaquePointer] = [:]

    /// `create`: a writable open may create the file.
    init(path: String, readOnly: Bool, create: Bool = true) throws(CallbackStoreError) {
        self.path = path
        exclusive = ExclusiveUse("the SQLite connection to \(path)")
        var db: OpaquePointer?
        let flags =
            readOnly ? SQLITE_OPEN_READONLY : create ? (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) : SQLITE_OPEN_READWRITE
        let code = sqlite3_open_v2(path, &db, flags, nil)
        guard code == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(code))
            sqlite3_close_v2(db)
            throw .openFailed(path: path, message: message)
        }
        handle = db
        sqlite3_extended_result_codes(db, 1)
    }

    deinit {
        close()
    }

    func close() {
        for statement in statements.values {
            sqlite3_finalize(statement)
        }
        statements.removeAll()
        if let handle {
            sqlite3_close_v2(handle)
        }
        handle = nil
    }

    /// Closes without the checkpoint SQLite runs when the last connection to a file closes: after
    /// a failed write or sync the WAL in memory may hold frames the disk lacks, and nothing of it
    /// may be copied into the database file. The next open recovers the WAL from what is on disk.
    func closeWithoutCheckpoint() {
        if let handle { _ = csqlite_disable_checkpoint_on_close(handle) }
        close()
    }

    /// Sets the busy timeout (milliseconds) for lock waits.
    func setBusyTimeout(milliseconds: Int32) throws(CallbackStoreError) {
        let db = try database()
        try check(sqlite3_busy_timeout(db, milliseconds))
    }

    /// Runs SQL that returns no rows of interest (DDL, pragmas); several statements may be given.
    func execute(_ sql: String) throws(CallbackStoreError) {
        try exclusive.run { () throws(CallbackStoreError) in
            let db = try database()
            try check(sqlite3_exec(db, sql, nil, nil, nil))
        }
    }

    /// The first column of the first row of a query without parameters.
    func scalarText(_ sql: String) throws(CallbackStoreError) -> String? {
        try withStatement(sql) { statement throws(CallbackStoreError) in
            try statement.step() ? statement.text(0) : nil
        }
    }

    func scalarInt64(_ sql: String) throws(CallbackStoreError) -> Int64? {
        try withStatement(sql) { statement throws(CallbackStoreError) in
            try statement.step() ? statement.int64(0) : nil
        }
    }

    /// Runs `body` with the cached statement for `sql`, then resets it and clears its bindings
    /// so it holds neither a read snapshot nor copies of bound bodies.
    func withStatement<Result>(
        _ sql: String,
        _ body: (SQLiteStatement) throws(CallbackStoreError) -> Result
    ) throws(CallbackStoreError) -> Result {
        try exclusive.run { () throws(CallbackStoreError) -> Result in
            let statement = try prepared(sql)
            defer {
                sqlite3_reset(statement.handle)
                sqlite3_clear_bindings(statement.handle)
            }
            return try body(statement)
        }
    }

    /// Like `withStatement`, for bodies that throw errors of any type (export callbacks).
    func withStatementUntyped<Result>(
        _ sql: String,
        _ body: (SQLiteStatement) throws -> Result
    ) throws -> Result {
        try exclusive.run { () throws -> Result in
            let statement = try prepared(sql)
            defer {
                sqlite3_reset(statement.handle)
                sqlite3_clear_bindings(statement.handle)
            }
            return try body(statement)
        }
    }

    /// Runs `body` in one transaction: committed when it returns, rolled back when it or the commit throws.
    func transaction<Result>(
        _ kind: TransactionKind,
        _ body: () throws(CallbackStoreError) -> Result
    ) throws(CallbackStoreError) -> Result {
        try exclusive.run { () throws(CallbackStoreError) -> Result in
            try run(kind == .immediate ? "BEGIN IMMEDIATE" : "BEGIN")
            do throws(CallbackStoreError) {
                let result = try body()
                try run("COMMIT")
                return result
            } catch {
                rollbackIfOpen()
                throw error
            }
        }
    }

    /// After FULL or IOERR SQLite may or may not have rolled back already; ROLLBACK only what is open.
    func rollbackIfOpen() {
        guard let handle, sqlite3_get_autocommit(handle) == 0 else { return }
        sqlite3_exec(handle, "ROLLBACK", nil, nil, nil)
    }

    /// Whether the database file was deleted or renamed since it was opened: writes would then go
    /// to a file nobody can find. (SQLite only notices this by itself in rollback-journal mode.)
    var hasMoved: Bool {
        guard let handle else { return false }
        var moved: Int32 = 0
        let code = sqlite3_file_control(handle, "main", SQLITE_FCNTL_HAS_MOVED, &moved)
        return code == SQLITE_OK && moved != 0
    }

    /// Rows changed by the last INSERT, UPDATE or DELETE.
    var changes: Int {
        handle.map { Int(sqlite3_changes64($0)) } ?? 0
    }

    // MARK: - Internals

    private func run(_ sql: String) throws(CallbackStoreError) {
        try withStatement(sql) { statement throws(CallbackStoreError) in
            while try statement.step() {}
        }
    }

    private func database() throws(CallbackStoreError) -> OpaquePointer {
        guard let handle else { throw .closed }
        return handle
    }

    private func prepared(_ sql: String) throws(CallbackStoreError) -> SQLiteStatement {
        let db = try database()
        if let cached = statements[sql] {
            return SQLiteStatement(handle: cached, path: path)
        }
        var statement: OpaquePointer?
        let code = sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard code == SQLITE_OK, let statement else {
            throw SQLiteConnection.error(code: code, database: db, path: path)
        }
        statements[sql] = statement
        return SQLiteStatement(handle: statement, path: path)
    }

    private func check(_ code: Int32) throws(CallbackStoreError) {
        guard code != SQLITE_OK else { return }
        throw SQLiteConnection.error(code: code, database: handle, path: path)
    }

    /// Maps an SQLite result code to an error a person can act on, adding the OS error (errno) when there is one.
    static func error(code: Int32, database: OpaquePointer?, path: String) -> CallbackStoreError {
        var message = database.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(code))
        let systemError = database.map { sqlite3_system_errno($0) } ?? 0
        let primary = code & 0xFF
        let osRelated = [SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_READONLY].contains(primary)
        if let name = extendedCodeNames[code] {
            message += " [\(name)]"
        }
        if osRelated, systemError != 0, let description = strerror(systemError) {
            message += ": \(String(cString: description))"
        }
        // A write refused by the file size limit (EFBIG) comes back as SQLITE_IOERR_WRITE, its errno
        // often lost by then; with a finite RLIMIT_FSIZE it is that limit, which passes as a full
        // disk does (the write changed nothing: no sync failed).
        if code == Int32(CSQLITE_IOERR_WRITE), Self.fileSizeIsLimited() {
            return .full(message: message + " (the file size limit, RLIMIT_FSIZE)")
        }
        switch primary {
        case SQLITE_FULL: return .full(message: message)
        case SQLITE_IOERR: return .ioError(message: message)
        case SQLITE_READONLY: return .readOnly(message: message)
        case SQLITE_BUSY, SQLITE_LOCKED: return .busy(message: message)
        case SQLITE_CORRUPT, SQLITE_NOTADB: return .corrupt(message: message)
        case SQLITE_CANTOPEN: return .openFailed(path: path, message: message)
        default: return .backend(message: "SQLite error \(code): \(message)")
        }
    }
}

extension SQLiteConnection {
    static func fileSizeIsLimited() -> Bool {
        var limit = rlimit()
        return getrlimit(Int32(RLIMIT_FSIZE.rawValue), &limit) == 0 && limit.rlim_cur != rlim_t.max
    }
}

/// Names of the extended codes a person may meet, to tell what failed (SQLite's own messages say
/// only "disk I/O error" or "attempt to write a readonly database").
private let extendedCodeNames: [Int32: String] = [
    Int32(CSQLITE_IOERR_READ): "SQLITE_IOERR_READ",
    Int32(CSQLITE_IOERR_SHORT_READ): "SQLITE_IOERR_SHORT_READ",
    Int32(CSQLITE_IOERR_WRITE): "SQLITE_IOERR_WRITE",
    Int32(CSQLITE_IOERR_FSYNC): "SQLITE_IOERR_FSYNC",
    Int32(CSQLITE_IOERR_DIR_FSYNC): "SQLITE_IOERR_DIR_FSYNC",
    Int32(CSQLITE_IOERR_TRUNCATE): "SQLITE_IOERR_TRUNCATE",
    Int32(CSQLITE_IOERR_FSTAT): "SQLITE_IOERR_FSTAT",
    Int32(CSQLITE_IOERR_LOCK): "SQLITE_IOERR_LOCK",
    Int32(CSQLITE_IOERR_SHMOPEN): "SQLITE_IOERR_SHMOPEN",
    Int32(CSQLITE_IOERR_SHMSIZE): "SQLITE_IOERR_SHMSIZE",
    Int32(CSQLITE_IOERR_SHMMAP): "SQLITE_IOERR_SHMMAP",
    Int32(CSQLITE_IOERR_DELETE): "SQLITE_IOERR_DELETE",
    Int32(CSQLITE_READONLY_DBMOVED): "SQLITE_READONLY_DBMOVED",
    Int32(CSQLITE_READONLY_CANTINIT): "SQLITE_READONLY_CANTINIT",
    Int32(CSQLITE_READONLY_RECOVERY): "SQLITE_READONLY_RECOVERY",
    Int32(CSQLITE_CANTOPEN_ISDIR): "SQLITE_CANTOPEN_ISDIR",
]

/// A prepared statement borrowed from a connection's cache.
struct SQLiteStatement {
    let handle: OpaquePointer
    let path: String

    func bind(_ index: Int32, _ value: Int64?) throws(CallbackStoreError) {
        guard let value else { return try bindNull(index) }
        try check(sqlite3_bind_int64(handle, index, value))
    }

    func bind(_ index: Int32, _ value: Int?) throws(CallbackStoreError) {
        try bind(index, value.map(Int64.init))
    }

    func bind(_ index: Int32, _ value: String?) throws(CallbackStoreError) {
        guard var value else { return try bindNull(index) }
        let code = value.withUTF8 { bytes in bindText(index, bytes) }
        try check(code)
    }

    /// Binds the bytes as TEXT, exactly as given (no re-encoding), so bodies are stored byte-exact.
    func bindText(_ index: Int32, bytes: [UInt8]) throws(CallbackStoreError) {
        let code = bytes.withUnsafeBufferPointer { bindText(index, $0) }
        try check(code)
    }

    private func bindText(_ index: Int32, _ bytes: UnsafeBufferPointer<UInt8>) -> Int32 {
        // A nil pointer would bind NULL; an empty buffer must bind the empty string.
        guard let base = bytes.baseAddress, !bytes.isEmpty else {
            return csqlite_bind_text64(handle, index, "", 0)
        }
        return base.withMemoryRebound(to: CChar.self, capacity: bytes.count) {
            csqlite_bind_text64(handle, index, $0, sqlite3_uint64(bytes.count))
        }
    }

    private func bindNull(_ index: Int32) throws(CallbackStoreError) {
        try check(sqlite3_bind_null(handle, index))
    }

    /// Advances: true when a row is available, false when done.
    func step() throws(CallbackStoreError) -> Bool {
        switch sqlite3_step(handle) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        case let code: throw SQLiteConnection.error(code: code, database: sqlite3_db_handle(handle), path: path)
        }
    }

    func isNull(_ column: Int32) -> Bool {
        sqlite3_column_type(handle, column) == SQLITE_NULL
    }

    func int64(_ column: Int32) -> Int64? {
        isNull(column) ? nil : sqlite3_column_int64(handle, column)
    }

    func text(_ column: Int32) -> String? {
        guard let text = sqlite3_column_text(handle, column) else { return nil }
        let count = Int(sqlite3_column_bytes(handle, column))
        return String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self)
    }

    /// The column's bytes as stored, without a terminating NUL.
    func bytes(_ column: Int32) -> [UInt8] {
        guard let text = sqlite3_column_text(handle, column) else { return [] }
        let count = Int(sqlite3_column_bytes(handle, column))
        return Array(UnsafeBufferPointer(start: text, count: count))
    }

    private func check(_ code: Int32) throws(CallbackStoreError) {
        guard code != SQLITE_OK else { return }
        throw SQLiteConnection.error(code: code, database: sqlite3_db_handle(handle), path: path)
    }
}

extension CallbackStoreError {
    /// Whether the connection may be broken: a reader reopens before the next attempt, a writer stops.
    var requiresReopen: Bool {
        switch self {
        case .ioError, .readOnly, .corrupt, .openFailed: true
        default: false
        }
    }
}
