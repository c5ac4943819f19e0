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
        (
            4, "store function",
            // A group in ONE round trip (an autocommit statement is its own transaction): the id
            // counter's row lock, held to COMMIT, keeps ids visible in id order across instances;
            // the first delivery of each key claims it in first_deliveries, whose primary key
            // decides against every instance (each row then finds its first through that key's
            // index entry: a join would scan the table); the NOTIFY reaches listeners at COMMIT.
            """
            CREATE FUNCTION thingspace_listener_store(
                p_keys text[], p_received bigint[], p_services text[], p_request_ids text[], p_device_ids text[],
                p_devices text[], p_statuses text[], p_counts integer[], p_remotes text[], p_bodies bytea[])
            RETURNS TABLE (stored_id bigint, first_delivery bigint) LANGUAGE plpgsql AS $$
            DECLARE
                v_count integer := cardinality(p_keys);
                v_first bigint;
            BEGIN
                UPDATE callback_ids SET last_id = last_id + v_count RETURNING last_id - v_count + 1 INTO v_first;
                INSERT INTO first_deliveries (dedup_key, callback_id)
                    SELECT k.key, v_first + min(k.ordinal) - 1 FROM unnest(p_keys) WITH ORDINALITY AS k(key, ordinal) GROUP BY k.key
                    ON CONFLICT (dedup_key) DO NOTHING;
                INSERT INTO callbacks (id, duplicate_of, received_at, service, request_id, device_ids, devices, status,
                        callback_count, remote_address, dedup_key, body)
                    SELECT v_first + t.ordinal - 1,
                        nullif((SELECT f.callback_id FROM first_deliveries AS f WHERE f.dedup_key = t.key), v_first + t.ordinal - 1),
                        t.received, t.service,
                        t.request_id, t.device_ids::text[], t.devices, t.status, t.callback_count, t.remote, t.key, t.body
                    FROM unnest(p_keys, p_received, p_services, p_request_ids, p_device_ids, p_devices, p_statuses, p_counts,
                            p_remotes, p_bodies)
                        WITH ORDINALITY AS t(key, received, service, request_id, device_ids, devices, status, callback_count, remote, body, ordinal);
                PERFORM pg_notify('thingspace_listener_callbacks', (v_first + v_count - 1)::text);
                RETURN QUERY SELECT c.id, c.duplicate_of FROM callbacks AS c
                    WHERE c.id BETWEEN v_first AND v_first + v_count - 1 ORDER BY c.id;
            END
            $$;
            """
        ),
        (
            5, "parallel commits",
            // Groups of every writer and instance commit in parallel. Only the allocation is
            // serialised, under a session advisory lock released before the rows are written: the
            // ids (a non-transactional counter, so an aborted group leaves a gap), the group's
            // in-flight lock (held to COMMIT, keyed by its first id, taken BEFORE the counter shows
            // the ids), and the first deliveries (so the first delivery of a key is always its
            // lowest id). Readers see ids only up to `thingspace_listener_horizon()`: below the
            // lowest group still committing, so an id never appears below one already seen.
            // Retention and the import take the allocation lock and wait for groups in flight.
            // No NOTIFY here: PostgreSQL holds one lock for every notifying transaction from its
            // pre-commit through its WAL flush (notifications go out in commit order), which
            // would serialise the commits again; the store notifies after COMMIT instead.
            """
            CREATE SEQUENCE callback_id_counter AS bigint MINVALUE 0 NO CYCLE;
            SELECT setval('callback_id_counter', last_id, true) FROM callback_ids;
            DROP TABLE callback_ids;
            CREATE OR REPLACE FUNCTION thingspace_listener_store(
                p_keys text[], p_received bigint[], p_services text[], p_request_ids text[], p_device_ids text[],
                p_devices text[], p_statuses text[], p_counts integer[], p_remotes text[], p_bodies bytea[])
            RETURNS TABLE (stored_id bigint, first_delivery bigint) LANGUAGE plpgsql AS $$
            DECLARE
                v_count integer := cardinality(p_keys);
                v_first bigint;
            BEGIN
                PERFORM pg_advisory_lock(\(allocationLock));
                SELECT last_value + 1 INTO v_first FROM callback_id_counter;
                IF v_first + v_count >= \(inFlightIDLimit) THEN
                    RAISE EXCEPTION 'callback ids exhausted' USING ERRCODE = '54000';
                END IF;
                PERFORM pg_advisory_xact_lock(\(inFlightBase) + v_first);
                PERFORM pg_advisory_xact_lock_shared(\(maintenanceLock));
                PERFORM setval('callback_id_counter', v_first + v_count - 1, true);
                INSERT INTO first_deliveries (dedup_key, callback_id)
                    SELECT k.key, v_first + min(k.ordinal) - 1 FROM unnest(p_keys) WITH ORDINALITY AS k(key, ordinal)
                    GROUP BY k.key ORDER BY k.key
                    ON CONFLICT (dedup_key) DO NOTHING;
                PERFORM pg_advisory_unlock(\(allocationLock));
                INSERT INTO callbacks (id, duplicate_of, received_at, service, request_id, device_ids, devices, status,
                        callback_count, remote_address, dedup_key, body)
                    SELECT v_first + t.ordinal - 1,
                        nullif((SELECT f.callback_id FROM first_deliveries AS f WHERE f.dedup_key = t.key), v_first + t.ordinal - 1),
                        t.received, t.service,
                        t.request_id, t.device_ids::text[], t.devices, t.status, t.callback_count, t.remote, t.key, t.body
                    FROM unnest(p_keys, p_received, p_services, p_request_ids, p_device_ids, p_devices, p_statuses, p_counts,
                            p_remotes, p_bodies)
                        WITH ORDINALITY AS t(key, received, service, request_id, device_ids, devices, status, callback_count, remote, body, ordinal);
                RETURN QUERY SELECT c.id, c.duplicate_of FROM callbacks AS c
                    WHERE c.id BETWEEN v_first AND v_first + v_count - 1 ORDER BY c.id;
            END
            $$;
            CREATE FUNCTION thingspace_listener_horizon() RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
            DECLARE
                v_allocated bigint;
                v_in_flight bigint;
            BEGIN
                -- The counter first, then the locks: a group whose ids the counter shows already
                -- holds its lock, so every id up to the result has committed or will never be.
                SELECT last_value INTO v_allocated FROM callback_id_counter;
                SELECT min((((classid::bigint << 32) | objid::bigint)) - \(inFlightBase)) INTO v_in_flight FROM pg_locks
                    WHERE locktype = 'advisory' AND objsubid = 1 AND granted
                        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                        AND classid::bigint >> 16 = \(inFlightBase >> 48);
                RETURN least(v_allocated, v_in_flight - 1);
            END
            $$;
            """
        ),
    ]

    /// Serialises the allocation of ids (a session lock, released before a group's rows are written).
    static let allocationLock: Int64 = 0x7473_6C5F_616C_6C6F  // "tsl_allo"
    /// Held shared by every group until COMMIT; retention and the import take it exclusively, to
    /// wait for the groups in flight.
    static let maintenanceLock: Int64 = 0x7473_6C5F_6D61_696E  // "tsl_main"
    /// A group in flight holds `inFlightBase + its first id` until COMMIT (what the horizon reads);
    /// ids stay below `inFlightIDLimit` so that the key's top 16 bits are the tag alone.
    static let inFlightBase: Int64 = 0x7469 << 48  // "ti"
    static let inFlightIDLimit: Int64 = 1 << 48

    public static var currentVersion: Int { migrations.last!.version }

    /// In a transaction: no group of any instance allocates ids until it ends, and every group in
    /// flight has committed (or failed) when this returns. For retention and the import.
    static func lockOutGroups(on connection: PostgreSQLConnection) throws(PostgreSQLError) {
        try connection.query("SELECT pg_advisory_xact_lock($1)", [.int(allocationLock)])
        try connection.query("SELECT pg_advisory_xact_lock($1)", [.int(maintenanceLock)])
    }

    /// The highest id a reader may show: every id up to it has committed or never will.
    static func horizon(on connection: PostgreSQLConnection) throws(PostgreSQLError) -> Int64 {
        try connection.query("SELECT thingspace_listener_horizon()").int(0, 0) ?? 0
    }

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
        } catch {
            throw .from(error)
        }
    }

    /// Whether the service has created the schema here (for read-only commands).
    public static func version(_ connection: PostgreSQLConnection) throws(PostgreSQLError) -> Int {
        let exists = try connection.query("SELECT to_regclass('thingspace_listener_migrations') IS NOT NULL").bool(0, 0) ?? false
        guard exists else { return 0 }
        return Int(try connection.query("SELECT coalesce(max(version), 0) FROM thingspace_listener_migrations").int(0, 0) ?? 0)
    }
}

extension CallbackStoreError {
    /// What a block mixing the store's own errors and libpq's threw, in the store API's words.
    static func from(_ error: any Error) -> CallbackStoreError {
        switch error {
        case let error as CallbackStoreError: error
        case let error as PostgreSQLError: error.storeError
        default: .backend(message: "\(error)")
        }
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
