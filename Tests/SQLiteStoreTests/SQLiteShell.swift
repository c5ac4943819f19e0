import CSQLite

/// Runs SQL on the database file through the SQLite C API, as a person with the `sqlite3` shell would.
/// Returns every row's columns as text.
func sqliteRows(_ path: String, _ sql: String) throws -> [[String?]] {
    var db: OpaquePointer?
    guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil) == SQLITE_OK, let db else {
        sqlite3_close_v2(db)
        throw ShellError(message: "cannot open \(path)")
    }
    defer { sqlite3_close_v2(db) }
    sqlite3_busy_timeout(db, 5_000)
    var statement: OpaquePointer?
    guard sqlite3_prepare_v2(db, sql, -1, &statement, nil) == SQLITE_OK, let statement else {
        throw ShellError(message: String(cString: sqlite3_errmsg(db)))
    }
    defer { sqlite3_finalize(statement) }
    var rows: [[String?]] = []
    while true {
        let code = sqlite3_step(statement)
        if code == SQLITE_DONE { return rows }
        guard code == SQLITE_ROW else { throw ShellError(message: String(cString: sqlite3_errmsg(db))) }
        rows.append(
            (0..<sqlite3_column_count(statement)).map { column in
                sqlite3_column_text(statement, column).map { String(cString: $0) }
            })
    }
}

func sqliteValue(_ path: String, _ sql: String) throws -> String? {
    try sqliteRows(path, sql).first?.first ?? nil
}

struct ShellError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// Runs a script of several statements, as `sqlite3 path < script` would.
func sqliteExecute(_ path: String, _ script: String) throws {
    var db: OpaquePointer?
    guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil) == SQLITE_OK, let db else {
        sqlite3_close_v2(db)
        throw ShellError(message: "cannot open \(path)")
    }
    defer { sqlite3_close_v2(db) }
    guard sqlite3_exec(db, script, nil, nil, nil) == SQLITE_OK else {
        throw ShellError(message: String(cString: sqlite3_errmsg(db)))
    }
}

/// A connection of its own holding a read transaction open, as a long `sqlite3` query would.
final class HeldReadTransaction {
    private var db: OpaquePointer?

    init(_ path: String) throws {
        guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, nil) == SQLITE_OK,
            sqlite3_exec(db, "BEGIN; SELECT count(*) FROM callbacks;", nil, nil, nil) == SQLITE_OK
        else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open \(path)"
            sqlite3_close_v2(db)
            throw ShellError(message: message)
        }
    }

    func end() {
        sqlite3_exec(db, "COMMIT", nil, nil, nil)
        sqlite3_close_v2(db)
        db = nil
    }

    deinit {
        if db != nil { end() }
    }
}
