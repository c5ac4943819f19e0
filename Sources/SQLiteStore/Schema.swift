import CallbackStore

/// The database layout, versioned with `PRAGMA user_version`.
///
/// Devices are looked up through `callback_devices` (one row per callback and device id) rather than
/// `json_each(device_ids)`: `--device-id` is then an index lookup instead of a scan that parses every
/// body's device list. `device_ids` keeps the full list (with kinds) as JSON for people using `sqlite3`.
///
/// `callbacks_duplicate_of` is partial: it serves purge and foreign-key checks (repeats only), and
/// being unusable for `duplicate_of IS NULL` it keeps listings on the time indexes, newest first,
/// instead of sorting every first delivery.
///
/// `id` is AUTOINCREMENT so an id is never reused after retention purges the newest rows:
/// `messages show 42` always means the same delivery.
///
/// Repeats are found through `callbacks_request_id`: the dedup key covers the request id, so rows
/// with one key share one request id. An index on the key itself (version 1) put every insert on a
/// random page of a second random-keyed index, and each such page costs a 4 KiB WAL frame per
/// commit; only callbacks without a request id keep a (partial) index on the key.
///
/// Version 3 adds `journal_position`: how far the journal has been indexed, written in the same
/// transaction as the rows it covers, so that start-up knows where to resume.
enum Schema {
    static let version: Int32 = 3
    /// "TSLC": marks the file as a thingspace-listener callback database.
    static let applicationID: Int32 = 0x5453_4C43

    static let createSchema = """
        CREATE TABLE callbacks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            received_at INTEGER NOT NULL,
            service TEXT NOT NULL,
            request_id TEXT,
            device_ids TEXT NOT NULL DEFAULT '[]',
            status TEXT,
            callback_count INTEGER,
            remote_address TEXT NOT NULL,
            dedup_key TEXT NOT NULL,
            duplicate_of INTEGER REFERENCES callbacks(id),
            body TEXT NOT NULL
        );
        CREATE INDEX callbacks_dedup_key_without_request_id ON callbacks(dedup_key) WHERE request_id IS NULL;
        CREATE INDEX callbacks_service_received_at ON callbacks(service, received_at);
        CREATE INDEX callbacks_request_id ON callbacks(request_id, received_at);
        CREATE INDEX callbacks_received_at ON callbacks(received_at);
        CREATE INDEX callbacks_duplicate_of ON callbacks(duplicate_of) WHERE duplicate_of IS NOT NULL;
        CREATE TABLE callback_devices (
            device_id TEXT NOT NULL,
            callback_id INTEGER NOT NULL REFERENCES callbacks(id) ON DELETE CASCADE,
            PRIMARY KEY (device_id, callback_id)
        ) WITHOUT ROWID;
        CREATE INDEX callback_devices_callback_id ON callback_devices(callback_id);
        \(journalPositionTable)
        """

    /// One row once anything was indexed from the journal: the last id indexed and where the next
    /// record starts (the segment's first id and the byte offset in it).
    static let journalPositionTable = """
        CREATE TABLE IF NOT EXISTS journal_position (
            singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
            last_id INTEGER NOT NULL,
            segment INTEGER NOT NULL,
            offset INTEGER NOT NULL
        );
        """

    /// Settings of every connection: a modest page cache for the service's memory budget.
    static let connectionPragmas = """
        PRAGMA foreign_keys = ON;
        PRAGMA cache_size = -2000;
        """

    /// Settings of the writing connection (the journal engine's indexer). NORMAL: SQLite does not
    /// fsync the WAL at commit, since the journal holds every record until the index is durable;
    /// `SQLiteCallbackStore.checkpointIndex()` syncs the WAL, copies it and syncs the database
    /// file. SQLite's automatic checkpoint is off: its errors (a failed fsync among them) would
    /// go unseen. The WAL is truncated to 64 MiB after checkpoints, so a large purge does not
    /// leave a huge file behind.
    static let writerPragmas = """
        PRAGMA journal_mode = WAL;
        PRAGMA synchronous = NORMAL;
        PRAGMA wal_autocheckpoint = 0;
        PRAGMA journal_size_limit = 67108864;
        """

    /// What an opened file holds.
    enum State: Equatable {
        /// The current schema.
        case current
        /// An older version's schema, which `migrate` brings up to date; it can be read as it is.
        case older(Int32)
        /// Nothing at all: the schema may be created.
        case empty
    }

    /// From version 1: the full index on dedup_key gives way to the partial one.
    static let migrateFromVersion1 = """
        DROP INDEX IF EXISTS callbacks_dedup_key;
        CREATE INDEX IF NOT EXISTS callbacks_dedup_key_without_request_id ON callbacks(dedup_key) WHERE request_id IS NULL;
        """

    /// Checks that the file is ours (or empty) and not from a newer version. Changes nothing, so a
    /// foreign database is rejected before any setting (such as WAL) is written to it.
    static func validate(_ connection: SQLiteConnection) throws(CallbackStoreError) -> State {
        let path = connection.path
        let found = Int32(truncatingIfNeeded: try connection.scalarInt64("PRAGMA user_version") ?? 0)
        let application = Int32(truncatingIfNeeded: try connection.scalarInt64("PRAGMA application_id") ?? 0)
        if application != 0, application != applicationID {
            throw .notACallbackDatabase(path: path)
        }
        if found > version {
            throw .schemaTooNew(path: path, found: found, supported: version)
        }
        if found == version {
            return .current
        }
        if found >= 1 {
            return .older(found)
        }
        let objects = try connection.scalarInt64("SELECT count(*) FROM sqlite_schema") ?? 0
        if objects > 0 {
            throw .notACallbackDatabase(path: path)
        }
        return .empty
    }

    /// Brings an older schema up to date; another process may have raced us to it.
    static func migrate(_ connection: SQLiteConnection) throws(CallbackStoreError) {
        try connection.transaction(.immediate) { () throws(CallbackStoreError) in
            guard case .older(let found) = try validate(connection) else { return }
            if found == 1 {
                try connection.execute(migrateFromVersion1)
            }
            if found <= 2 {
                try connection.execute(journalPositionTable)
            }
            try connection.execute("PRAGMA user_version = \(version);")
        }
    }

    /// Creates the schema in an empty database; another process may have raced us to it.
    static func create(_ connection: SQLiteConnection) throws(CallbackStoreError) {
        try connection.transaction(.immediate) { () throws(CallbackStoreError) in
            guard try validate(connection) == .empty else { return }
            try connection.execute(createSchema)
            try connection.execute("PRAGMA application_id = \(applicationID); PRAGMA user_version = \(version);")
        }
    }
}
