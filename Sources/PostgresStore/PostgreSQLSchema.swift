// The tables, created and migrated by the service: a versioned migrations table, each migration
// applied once in its own transaction under an advisory lock, so that instances starting at once
// migrate once (the second waits, then finds the work done). A database migrated by a newer
// version is refused, never written.
import CallbackStore

public enum PostgreSQLSchema {
    /// The advisory lock key under which migrations run (any constant of the program's own).
    static let migrationLock: Int64 = 0x7473_6C5F_6D69_6772  // "tsl_migr"

    /// Migrations in order; a migration once released is never edited, only followed by another.
    static let migrations: [(version: Int, name: String, sql: String)] = [
        (
            1, "callbacks",
            """
            CREATE TABLE callback_ids (
                singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                last_id bigint NOT NULL
            );
            INSERT INTO callback_ids (last_id) VALUES (0);
            CREATE TABLE callbacks (
                id bigint PRIMARY KEY,
                received_at bigint NOT NULL,
                service text NOT NULL,
                request_id text,
                device_ids text[] NOT NULL,
                devices text NOT NULL,
                status text,
                callback_count integer,
                remote_address text NOT NULL,
                dedup_key text NOT NULL,
                duplicate_of bigint,
                body bytea NOT NULL
            );
            CREATE INDEX callbacks_request_id ON callbacks (request_id, id);
            CREATE INDEX callbacks_service ON callbacks (service, id);
            CREATE INDEX callbacks_received_at ON callbacks (received_at);
            CREATE INDEX callbacks_dedup_key ON callbacks (dedup_key, id);
            CREATE INDEX callbacks_device_ids ON callbacks USING gin (device_ids);
            CREATE TABLE first_deliveries (
                dedup_key text PRIMARY KEY,
                callback_id bigint NOT NULL
            );
            """
        ),
        (
            2, "deliveries",
            """
            CREATE TABLE deliveries (
                destination text NOT NULL,
                callback_id bigint NOT NULL,
                state text NOT NULL CHECK (state IN ('pending', 'retrying', 'delivered', 'dead')),
                attempts integer NOT NULL DEFAULT 0,
                next_attempt_at bigint,
                ordering_key text,
                received_at bigint NOT NULL,
                last_attempt_at bigint,
                last_status integer,
                last_error text,
                lease_owner text,
                lease_until bigint,
                PRIMARY KEY (destination, callback_id)
            );
            CREATE INDEX deliveries_due ON deliveries (destination, next_attempt_at, callback_id)
                WHERE state IN ('pending', 'retrying');
            CREATE INDEX deliveries_ordering ON deliveries (destination, ordering_key, callback_id)
                WHERE state IN ('pending', 'retrying');
            CREATE INDEX deliveries_dead ON deliveries (destination, callback_id) WHERE state = 'dead';
            CREATE INDEX deliveries_received_at ON deliveries (received_at);
            CREATE TABLE delivery_cursors (
                destination text PRIMARY KEY,
                through bigint NOT NULL
            );
            CREATE TABLE disabled_destinations (
                destination text PRIMARY KEY,
                disabled_at bigint NOT NULL,
                reason text NOT NULL
            );
            """
        ),
        (
            3, "instances",
            """
            CREATE TABLE instances (
                id text PRIMARY KEY,
                host text NOT NULL,
                pid integer NOT NULL,
                started_at timestamptz NOT NULL DEFAULT now(),
                heartbeat_at timestamptz NOT NULL DEFAULT now()
            );
            CREATE TABLE leader (
                singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                instance text NOT NULL,
                expires_at timestamptz NOT NULL
            );
            """
        ),
    ]

    public static var currentVersion: Int { migrations.last!.version }

    /// Creates what is missing, one migration per transaction; returns the versions applied now.
    @discardableResult
    public static func migrate(_ connection: PostgreSQLConnection, location: String) throws(CallbackStoreError) -> [Int] {
        do {
            var applied: [Int] = []
            try connection.execute("BEGIN")
            do {
                try connection.query("SELECT pg_advisory_xact_lock($1)", [.int(migrationLock)])
                try connection.execute(
                    """
                    CREATE TABLE IF NOT EXISTS thingspace_listener_migrations (
                        version integer PRIMARY KEY,
                        name text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now()
                    )
                    """)
                let found = try connection.query("SELECT coalesce(max(version), 0) FROM thingspace_listener_migrations").int(0, 0) ?? 0
                guard found <= currentVersion else {
                    throw CallbackStoreError.schemaTooNew(path: location, found: Int32(found), supported: Int32(currentVersion))
                }
                for migration in migrations where migration.version > found {
                    try connection.execute(migration.sql)
                    try connection.query(
                        "INSERT INTO thingspace_listener_migrations (version, name) VALUES ($1, $2)",
                        [.int(Int64(migration.version)), .text(migration.name)])
                    applied.append(migration.version)
                }
                try connection.execute("COMMIT")
            } catch {
                try? connection.execute("ROLLBACK")
                throw error
            }
            return applied
        } catch let error as CallbackStoreError {
            throw error
        } catch let error as PostgreSQLError {
            throw error.storeError
        } catch {
            throw .backend(message: "\(error)")
        }
    }

    /// Whether the service has created the schema here (for read-only commands).
    public static func version(_ connection: PostgreSQLConnection) throws(PostgreSQLError) -> Int {
        let exists = try connection.query("SELECT to_regclass('thingspace_listener_migrations') IS NOT NULL").bool(0, 0) ?? false
        guard exists else { return 0 }
        return Int(try connection.query("SELECT coalesce(max(version), 0) FROM thingspace_listener_migrations").int(0, 0) ?? 0)
    }
}

extension PostgreSQLError {
    /// The store API's words for it: an outage passes (503, reconnect); a full disk too; the rest is the backend's.
    public var storeError: CallbackStoreError {
        if isOutage { return .unavailable(message: description) }
        switch sqlState {
        case "53100"?: return .full(message: description)
        case "58030"?: return .ioError(message: description)
        case "XX001"?, "XX002"?: return .corrupt(message: description)
        case "55P03"?: return .busy(message: description)
        default: return .backend(message: description)
        }
    }
}
