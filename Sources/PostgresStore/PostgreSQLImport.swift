// `store migrate`: copies every callback of another store (the SQLite one) into an empty
// PostgreSQL database, ids, links and every field as they are, in ONE transaction: a copy that
// fails leaves the target as empty as it found it.
import CallbackStore

public enum PostgreSQLImport {
    /// Callbacks read from the source per page (and inserted per statement).
    static let pageSize = 1_000

    /// Migrates the target's schema, refuses a target that already holds callbacks, copies in id
    /// order and sets the id counter past the highest id copied. `progress` hears the running
    /// count after each page. Returns how many callbacks were copied.
    public static func copy(
        from reader: any CallbackReader, to settings: PostgreSQLSettings, progress: (Int) -> Void
    ) throws(CallbackStoreError) -> Int {
        let connection: PostgreSQLConnection
        do { connection = try PostgreSQLConnection(settings) } catch { throw error.storeError }
        defer { connection.close() }
        try PostgreSQLSchema.migrate(connection, location: settings.description)
        do {
            try connection.execute("BEGIN")
            // No store of any instance commits while the copy runs.
            try PostgreSQLSchema.lockOutGroups(on: connection)
            guard try connection.query("SELECT EXISTS (SELECT 1 FROM callbacks)").bool(0, 0) != true else {
                try? connection.execute("ROLLBACK")
                throw CallbackStoreError.backend(
                    message: "\(settings.description) already holds callbacks; `store migrate` copies only into an empty database")
            }
            var copied = 0
            var cursor: Int64 = 0
            while true {
                let page = try reader.callbacks(after: cursor, limit: pageSize, includeDuplicates: true)
                guard let last = page.last else { break }
                try CallbackRows.insert(page, on: connection)
                copied += page.count
                cursor = last.id
                progress(copied)
            }
            // The first delivery of each key is its oldest row (repeats link to it); with no
            // callbacks, any row left here is stale.
            try connection.query("DELETE FROM first_deliveries")
            try connection.query(
                """
                INSERT INTO first_deliveries (dedup_key, callback_id)
                SELECT DISTINCT ON (dedup_key) dedup_key, id FROM callbacks ORDER BY dedup_key, id
                """)
            // Not transactional: a copy failing after this leaves only a gap in the ids.
            try connection.query(
                "SELECT setval('callback_id_counter', greatest(last_value, $1), true) FROM callback_id_counter", [.int(cursor)])
            try connection.execute("COMMIT")
            return copied
        } catch {
            try? connection.execute("ROLLBACK")
            throw .from(error)
        }
    }
}
