import CallbackStore
import Dispatch
import PostgresStore
import Synchronization
import TestSupport
import Testing

@Suite struct ConnectionTests {
    @Test func readsEveryColumnKindBackInBinary() throws {
        let url = try PostgreSQLServer.shared().makeDatabase()
        let connection = try PostgreSQLConnection(PostgreSQLSettings(url: url))
        let rows = try connection.query(
            "SELECT $1::bigint, $2::int, $3::text, $4::bytea, NULL::text, true, -5::smallint",
            [.int(-9_000_000_000), .int(42), .text("héllo"), .bytes([0, 1, 255, 0x5c])])
        #expect(rows.count == 1)
        #expect(rows.int(0, 0) == -9_000_000_000)
        #expect(rows.int(0, 1) == 42)
        #expect(rows.string(0, 2) == "héllo")
        #expect(rows.bytes(0, 3) == [0, 1, 255, 0x5c])
        #expect(rows.isNull(0, 4) && rows.bytes(0, 4) == nil)
        #expect(rows.bool(0, 5) == true)
        #expect(rows.int(0, 6) == -5)
    }

    @Test func anErrorCarriesItsSQLStateAndKeepsTheConnection() throws {
        let url = try PostgreSQLServer.shared().makeDatabase()
        let connection = try PostgreSQLConnection(PostgreSQLSettings(url: url))
        try connection.execute("CREATE TABLE t (k text PRIMARY KEY)")
        try connection.query("INSERT INTO t VALUES ($1)", [.text("a")])
        #expect(throws: PostgreSQLError.self) { try connection.query("INSERT INTO t VALUES ($1)", [.text("a")]) }
        do {
            try connection.query("INSERT INTO t VALUES ($1)", [.text("a")])
        } catch {
            #expect(error.sqlState == "23505" && !error.connectionLost && !error.isOutage)
        }
        #expect(connection.isUsable)
        #expect(try connection.query("SELECT count(*) FROM t").int(0, 0) == 1)
    }

    @Test func aTerminatedSessionIsReportedAsLost() throws {
        let server = try PostgreSQLServer.shared()
        let url = try server.makeDatabase()
        let connection = try PostgreSQLConnection(PostgreSQLSettings(url: url))
        try server.psql("postgres", "SELECT pg_terminate_backend(\(connection.backendPID))")
        do {
            try connection.query("SELECT 1")
            Issue.record("a terminated session answered")
        } catch {
            #expect(error.isOutage)
        }
        #expect(!connection.isUsable)
    }

    @Test func notificationsArriveOnTheListeningConnection() throws {
        let url = try PostgreSQLServer.shared().makeDatabase()
        let listener = try PostgreSQLConnection(PostgreSQLSettings(url: url))
        try listener.listen("arrivals")
        #expect(try listener.notifications(waitingUpTo: .milliseconds(20)).isEmpty)
        let writer = try PostgreSQLConnection(PostgreSQLSettings(url: url))
        try writer.query("SELECT pg_notify('arrivals', $1)", [.text("17")])
        var received: [PostgreSQLNotification] = []
        for _ in 0..<50 where received.isEmpty { received = try listener.notifications(waitingUpTo: .milliseconds(100)) }
        #expect(received == [PostgreSQLNotification(channel: "arrivals", payload: "17")])
    }

    @Test func aPasswordFromTheSettingsIsUsedAndNeverInTheMessage() throws {
        let server = try PostgreSQLServer.shared()
        _ = try server.makeDatabase()
        let url = server.url(database: "postgres", user: PostgreSQLServer.passwordUser)
        #expect(throws: PostgreSQLError.self) { try PostgreSQLConnection(PostgreSQLSettings(url: url)) }
        do {
            _ = try PostgreSQLConnection(PostgreSQLSettings(url: url, password: "wrong-password-xyz"))
            Issue.record("a wrong password was accepted")
        } catch {
            #expect(!error.description.contains("wrong-password-xyz"))
        }
        let connection = try PostgreSQLConnection(PostgreSQLSettings(url: url, password: PostgreSQLServer.password))
        #expect(try connection.query("SELECT current_user").string(0, 0) == PostgreSQLServer.passwordUser)
    }

    @Test func urlsAreRedactedForLogs() {
        #expect(
            PostgreSQLSettings.redacted("postgresql://app:s3cret@db.example:5432/listener?sslmode=require")
                == "postgresql://app:<redacted>@db.example:5432/listener?sslmode=require")
        #expect(
            PostgreSQLSettings.redacted("postgresql://db/listener?user=a&password=s3cret")
                == "postgresql://db/listener?user=a&password=<redacted>")
        #expect(PostgreSQLSettings.redacted("host=db password=s3cret dbname=x") == "host=db password=<redacted> dbname=x")
        #expect(PostgreSQLSettings.redacted("host=db password='s 3cret' dbname=x") == "host=db password=<redacted> dbname=x")
        #expect(PostgreSQLSettings.redacted("postgresql://app@db/listener") == "postgresql://app@db/listener")
    }
}

@Suite struct SchemaTests {
    @Test func instancesStartingAtOnceMigrateOnce() throws {
        let url = try PostgreSQLServer.shared().makeDatabase()
        let results = Mutex<[[Int]]>([])
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            do {
                let connection = try PostgreSQLConnection(PostgreSQLSettings(url: url))
                let applied = try PostgreSQLSchema.migrate(connection, location: "test")
                results.withLock { $0.append(applied) }
            } catch {
                failures.withLock { $0.append("\(error)") }
            }
        }
        #expect(failures.withLock { $0 } == [])
        let applied = results.withLock { $0 }.filter { !$0.isEmpty }
        #expect(applied == [Array(1...PostgreSQLSchema.currentVersion)])
        let connection = try PostgreSQLConnection(PostgreSQLSettings(url: url))
        #expect(try PostgreSQLSchema.version(connection) == PostgreSQLSchema.currentVersion)
    }

    @Test func aNewerSchemaIsRefused() throws {
        let url = try PostgreSQLServer.shared().makeDatabase()
        let connection = try PostgreSQLConnection(PostgreSQLSettings(url: url))
        try PostgreSQLSchema.migrate(connection, location: "test")
        try connection.query("INSERT INTO thingspace_listener_migrations (version, name) VALUES (999, 'future')")
        #expect(throws: CallbackStoreError.schemaTooNew(path: "test", found: 999, supported: Int32(PostgreSQLSchema.currentVersion))) {
            try PostgreSQLSchema.migrate(connection, location: "test")
        }
    }
}
