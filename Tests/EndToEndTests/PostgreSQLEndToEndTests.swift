import Foundation
import Synchronization
import TestSupport
import Testing
import ThingSpaceSandbox

/// One `serve` process of several on one PostgreSQL database, in a directory of its own.
final class PostgreSQLInstance {
    let directory: TemporaryDirectory
    let configPath: String
    let url: String
    private let environment: [String: String]
    private(set) var process: ListenerProcess!
    private(set) var port = 0
    private(set) var adminPort = 0

    /// `extra`: JSON members appended to the configuration's top level.
    init(url: String, extra: String = "", environment: [String: String] = [:]) throws {
        directory = try TemporaryDirectory()
        self.url = url
        self.environment = environment
        configPath = directory.file("config.json")
        let json = """
            {
              "http": {"host": "127.0.0.1", "port": 0, "shutdownGracePeriod": 5},
              "storage": {"backend": "postgresql", "postgresql": {"url": "\(url)"}},
              "callbacks": {"username": "listener-user", "password": "listener-pass"},
              "admin": {"port": 0}\(extra)
            }
            """
        try json.write(toFile: configPath, atomically: true, encoding: .utf8)
        try start()
    }

    func start() throws {
        process = try ListenerProcess(arguments: ["serve", "--config", configPath], environment: environment)
        port = try process.waitForCallbackPort()
        adminPort = try process.waitForAdminPort()
    }

    func metric(_ name: String) -> String? {
        guard let text = try? TestClient(port: adminPort, timeoutSeconds: 5).get("/metrics").bodyText else { return nil }
        return text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.map { String($0.dropFirst(name.count + 1)) }
    }

    var isLeading: Bool { metric("instance_leader").flatMap(Double.init) == 1 }
}

/// Every callback stored in the database, repeats included, as `messages export` prints them.
func exportPostgreSQL(_ url: String, environment: [String: String] = [:]) throws -> [[String: Any]] {
    let result = try runListenerCommand(["messages", "export", "--database", url, "--include-duplicates"], environment: environment)
    guard result.status == 0 else { throw ProcessError.didNotStart("export failed: \(result.stderr)") }
    return try result.stdout.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
}

/// Posts distinct callbacks from `workers` threads to `ports` (worker i to port i mod count) until
/// `stop` is set or a request fails (the instance went away), keeping the requestIds answered 200.
final class SpreadLoad: Sendable {
    let acknowledged = Mutex<[String]>([])
    let unavailable = Mutex<[ClientResponse]>([])
    private let stop = Atomic<Bool>(false)
    private let group = DispatchGroup()

    init(ports: [Int], workers: Int, prefix: String, keepGoingOnErrors: Bool = false) {
        for worker in 0..<workers {
            let port = ports[worker % ports.count]
            DispatchQueue.global().async(group: group) { [self] in
                var client = try? TestClient(port: port, timeoutSeconds: 10)
                // Bounded: at most 20,000 requests per worker.
                for index in 0..<20_000 where !stop.load(ordering: .relaxed) {
                    let id = "\(prefix)-\(worker)-\(index)"
                    guard let current = client,
                        let response = try? current.post("/callbacks/CarrierService", json: callbackBody(requestID: id))
                    else {
                        guard keepGoingOnErrors else { return }
                        Thread.sleep(forTimeInterval: 0.05)
                        client = try? TestClient(port: port, timeoutSeconds: 10)
                        continue
                    }
                    if response.status == 200 {
                        acknowledged.withLock { $0.append(id) }
                    } else if response.status == 503 {
                        unavailable.withLock { $0.append(response) }
                        Thread.sleep(forTimeInterval: 0.01)
                    }
                }
            }
        }
    }

    var count: Int { acknowledged.withLock { $0.count } }

    func finish() -> Bool {
        stop.store(true, ordering: .relaxed)
        return group.wait(timeout: .now() + 30) == .success
    }
}

/// Every acknowledged callback is stored, and no requestId has two first deliveries.
func expectStoredOnce(_ acknowledged: Set<String>, in rows: [[String: Any]], sourceLocation: SourceLocation = #_sourceLocation) {
    let stored = Set(rows.compactMap { $0["requestId"] as? String })
    let lost = acknowledged.subtracting(stored)
    #expect(lost.isEmpty, "\(lost.count) acknowledged callbacks lost, e.g. \(lost.prefix(3))", sourceLocation: sourceLocation)
    var firsts: [String: Int] = [:]
    for row in rows where row["duplicateOf"] == nil || row["duplicateOf"] is NSNull {
        firsts[row["requestId"] as? String ?? "", default: 0] += 1
    }
    let twice = firsts.filter { $0.value > 1 }
    #expect(twice.isEmpty, "stored twice as firsts: \(twice.keys.prefix(3))", sourceLocation: sourceLocation)
    let ids = rows.compactMap { $0["id"] as? Int }
    #expect(Set(ids).count == ids.count, "an id was given twice", sourceLocation: sourceLocation)
}

@Suite(.serialized) struct PostgreSQLEndToEndTests {
    /// Two instances take load at once; one of them is killed with SIGKILL, in turn, five times.
    @Test func twoInstancesUnderLoadLoseNothingAcrossFiveKills() throws {
        let url = try PostgreSQLServer.shared().makeDatabase()
        let instances = [try PostgreSQLInstance(url: url), try PostgreSQLInstance(url: url)]
        var acknowledged = Set<String>()
        for round in 0..<5 {
            let load = SpreadLoad(ports: instances.map(\.port), workers: 8, prefix: "kill-\(round)")
            try waitUntil("load on both instances", timeout: .seconds(20)) { load.count >= 400 }
            let victim = instances[round % 2]
            victim.process.signal(SIGKILL)
            victim.process.waitForExit()
            // The survivor goes on alone for a moment.
            let before = load.count
            Thread.sleep(forTimeInterval: 0.3)
            #expect(load.finish())
            #expect(load.count > before, "round \(round): the surviving instance stopped acknowledging")
            acknowledged.formUnion(load.acknowledged.withLock { $0 })
            try victim.start()
        }
        let rows = try exportPostgreSQL(url)
        expectStoredOnce(acknowledged, in: rows)
    }

    /// The same callback posted to both instances at the same moment: both deliveries are stored,
    /// and exactly one is linked as the repeat of the other (a constraint decides, not a read).
    @Test func theSameCallbackAtBothInstancesIsLinkedOnce() throws {
        let url = try PostgreSQLServer.shared().makeDatabase()
        let instances = [try PostgreSQLInstance(url: url), try PostgreSQLInstance(url: url)]
        let ports = instances.map(\.port)
        let pairs = 40
        let statuses = Mutex<[Int]>([])
        for pair in 0..<pairs {
            let body = callbackBody(requestID: "same-\(pair)")
            let start = DispatchSemaphore(value: 0)
            let group = DispatchGroup()
            for port in ports {
                DispatchQueue.global().async(group: group) {
                    start.wait()
                    let client = try? TestClient(port: port, timeoutSeconds: 10)
                    let status = (try? client?.post("/callbacks/CarrierService", json: body).status) ?? -1
                    statuses.withLock { $0.append(status) }
                }
            }
            start.signal()
            start.signal()
            #expect(group.wait(timeout: .now() + 20) == .success)
        }
        #expect(statuses.withLock { $0 }.allSatisfy { $0 == 200 })
        let rows = try exportPostgreSQL(url)
        let byRequest = Dictionary(grouping: rows) { $0["requestId"] as? String ?? "" }
        #expect(byRequest.count == pairs)
        for (requestID, deliveries) in byRequest {
            #expect(deliveries.count == 2, "\(requestID): \(deliveries.count) deliveries")
            let firsts = deliveries.filter { $0["duplicateOf"] == nil || $0["duplicateOf"] is NSNull }
            #expect(firsts.count == 1, "\(requestID): \(firsts.count) first deliveries")
            if let first = firsts.first?["id"] as? Int,
                let repeatOf = deliveries.first(where: { ($0["id"] as? Int) != first })?["duplicateOf"] as? Int
            {
                #expect(repeatOf == first)
            }
        }
    }

    /// One instance registers (the leader); when it is killed, the other takes over within 15 s and
    /// registers. Stopping one of two leaves the registration in place; stopping the last deregisters.
    @Test func theLeaderRegistersAnotherTakesOverAndTheLastToStopDeregisters() throws {
        let thingspace = try FakeThingSpace(deliverSamples: false)
        let url = try PostgreSQLServer.shared().makeDatabase()
        let first = try PostgreSQLInstance(url: url, extra: thingspace.configuration())
        try first.process.waitForLog("registered with ThingSpace")
        #expect(first.isLeading)
        let second = try PostgreSQLInstance(url: url, extra: thingspace.configuration())
        try second.process.waitForLog("instance started")
        Thread.sleep(forTimeInterval: 3)
        #expect(!second.isLeading)
        #expect(!second.process.logLines.contains { $0.contains("registered with ThingSpace") }, "a follower registered")

        first.process.signal(SIGKILL)
        first.process.waitForExit()
        let killed = ContinuousClock.now
        try second.process.waitForLog("registered with ThingSpace", timeout: .seconds(20))
        let takeover = ContinuousClock.now - killed
        #expect(takeover < .seconds(15), "took over after \(takeover)")
        #expect(second.isLeading)
        #expect(Set(thingspace.sandbox.registrations.map(\.serviceName)) == ["CarrierService", "DeviceUsage"])

        // The killed one comes back as a follower; stopping it leaves the registration in place.
        try first.start()
        try first.process.waitForLog("instance started")
        thingspace.sandbox.clearJournal()
        first.process.signal(SIGTERM)
        #expect(first.process.waitForExit(timeout: .seconds(30)) == 0)
        #expect(thingspace.sandbox.journal.filter { $0.route == .deregister }.isEmpty)
        #expect(first.process.logLines.contains { $0.contains("leaving registrations in place") })
        #expect(thingspace.sandbox.registrations.count == 2)

        // The last one deregisters.
        second.process.signal(SIGTERM)
        #expect(second.process.waitForExit(timeout: .seconds(40)) == 0)
        #expect(thingspace.sandbox.journal.filter { $0.route == .deregister }.count == 2)
        #expect(thingspace.sandbox.registrations.isEmpty)
        expectNoSecret(in: first.process.logLines + second.process.logLines, secrets: thingspace.secrets)
    }

    /// PostgreSQL restarted under load: 503 with Retry-After while it is down (nothing acknowledged
    /// that is not committed), `/readyz` says so, and the service recovers by itself. The password
    /// comes from the credentials directory and appears in no log line.
    @Test func aPostgreSQLRestartUnderLoadAnswers503AndRecovers() throws {
        let server = try PostgreSQLServer()
        let database = "restart_\(getpid())"
        try server.psql("postgres", "CREATE DATABASE \(database) OWNER \(PostgreSQLServer.passwordUser)")
        let url = server.url(database: database, user: PostgreSQLServer.passwordUser)
        let credentials = try TemporaryDirectory()
        try credentials.write("storage-postgresql-password", PostgreSQLServer.password)
        let instance = try PostgreSQLInstance(url: url, environment: ["CREDENTIALS_DIRECTORY": credentials.path])
        let load = SpreadLoad(ports: [instance.port], workers: 4, prefix: "restart", keepGoingOnErrors: true)
        try waitUntil("load before the restart") { load.count >= 200 }

        try server.stop(mode: "fast")
        try waitUntil("503s while PostgreSQL is down", timeout: .seconds(10)) { !load.unavailable.withLock { $0.isEmpty } }
        let readiness = try TestClient(port: instance.adminPort, timeoutSeconds: 5).get("/readyz")
        #expect(readiness.status == 503, "\(readiness.bodyText)")
        Thread.sleep(forTimeInterval: 1)
        try server.start()
        let atRestart = load.count
        try waitUntil("acknowledgements after the restart", timeout: .seconds(20)) { load.count > atRestart + 100 }
        try waitUntil("/readyz to recover", timeout: .seconds(10)) {
            (try? TestClient(port: instance.adminPort, timeoutSeconds: 5).get("/readyz").status) == 200
        }
        #expect(load.finish())
        #expect(instance.process.process.isRunning, "the service exited")
        #expect(load.unavailable.withLock { $0 }.allSatisfy { $0.header("Retry-After") != nil })

        let rows = try exportPostgreSQL(url, environment: ["THINGSPACE_LISTENER_STORAGE_POSTGRESQL_PASSWORD": PostgreSQLServer.password])
        expectStoredOnce(Set(load.acknowledged.withLock { $0 }), in: rows)
        expectNoSecret(in: instance.process.logLines, secrets: [PostgreSQLServer.password, "listener-pass"])
        instance.process.signal(SIGTERM)
        #expect(instance.process.waitForExit(timeout: .seconds(30)) == 0)
    }

    /// A destination on both instances: each callback, whichever instance stored it, is delivered
    /// once when all goes well (each attempt claimed by one instance), and the shared ledger says so.
    @Test func twoInstancesDeliverEachCallbackOnce() throws {
        let receiver = try RecordingDestination()
        let url = try PostgreSQLServer.shared().makeDatabase()
        let configuration = deliveryConfiguration([destinationJSON("orders", receiver)])
        let instances = [try PostgreSQLInstance(url: url, extra: configuration), try PostgreSQLInstance(url: url, extra: configuration)]
        let ports = instances.map(\.port)
        let acknowledged = onThreads(2) { index in postCallbacks(port: ports[index], count: 150, connections: 4, prefix: "hook-\(index)") }
            .flatMap { $0 }
        #expect(acknowledged.count == 300)
        try waitUntil("every callback delivered", timeout: .seconds(30)) { Set(receiver.ids).count == 300 }
        Thread.sleep(forTimeInterval: 1)
        let ids = receiver.ids
        #expect(ids.count == 300, "\(ids.count - Set(ids).count) repeated deliveries")
        let listed = try runListenerCommand(["deliveries", "list", "--database", url, "--state", "delivered", "--limit", "1000"])
        #expect(listed.status == 0, "\(listed.stderr)")
        #expect(listed.stdout.split(separator: "\n").filter { $0.contains("orders") }.count == 300, "\(listed.stdout.prefix(400))")

        // A replay by hand, the CLI on the shared ledger: each callback once more, by one instance.
        let replayed = try runListenerCommand([
            "deliveries", "replay", "--config", instances[0].configPath, "--destination", "orders", "--since", "2000-01-01T00:00:00Z",
        ])
        #expect(replayed.status == 0, "\(replayed.stderr)")
        #expect(replayed.stdout.contains("300 callbacks will be delivered again"), "\(replayed.stdout)")
        try waitUntil("every callback delivered again", timeout: .seconds(30)) { receiver.ids.count >= 600 }
        Thread.sleep(forTimeInterval: 1)
        let attempts = Dictionary(grouping: receiver.ids) { $0 }.mapValues(\.count)
        #expect(receiver.ids.count == 600 && attempts.values.allSatisfy { $0 == 2 }, "\(attempts.filter { $0.value != 2 }.prefix(5))")
    }

    /// A long poll on one instance answers with a callback that another instance stored.
    @Test func aLongPollOnOneInstanceSeesACallbackStoredByTheOther() throws {
        let url = try PostgreSQLServer.shared().makeDatabase()
        let api = #", "api": {"enabled": true, "port": 0, "tokens": ["pg-e2e-token"]}"#
        let storing = try PostgreSQLInstance(url: url, extra: api)
        let polling = try PostgreSQLInstance(url: url, extra: api)
        let apiPort = try polling.process.waitForConsumerAPIPort()
        let answer = Mutex<ClientResponse?>(nil)
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            let response = try? TestClient(port: apiPort, timeoutSeconds: 30).get(
                "/v1/callbacks?requestId=across-1&wait=20", headers: ["Authorization: Bearer pg-e2e-token"])
            answer.withLock { $0 = response }
            done.signal()
        }
        Thread.sleep(forTimeInterval: 0.5)
        let posted = try TestClient(port: storing.port, timeoutSeconds: 10).post(
            "/callbacks/CarrierService", json: callbackBody(requestID: "across-1"))
        #expect(posted.status == 200)
        let acknowledgedAt = ContinuousClock.now
        #expect(done.wait(timeout: .now() + 25) == .success)
        let waited = ContinuousClock.now - acknowledgedAt
        let response = try #require(answer.withLock { $0 })
        #expect(response.status == 200)
        #expect(response.bodyText.contains(#""requestId":"across-1""#), "\(response.bodyText)")
        #expect(waited < .seconds(5), "the poll answered \(waited) after the 200")
    }

    /// `store migrate` copies a stopped SQLite store (ids, repeat links, the delivery ledger) into
    /// PostgreSQL; a listener on it goes on from there: ids continue, nothing is delivered again.
    @Test func storeMigrateMovesASQLiteStoreWithItsLedger() throws {
        let receiver = try RecordingDestination()
        let configuration = deliveryConfiguration([destinationJSON("orders", receiver)])
        let sqlite = try ListenerFixture(extraConfiguration: configuration)
        #expect(postCallbacks(port: sqlite.port, count: 40, connections: 4, prefix: "moved").count == 40)
        for number in 0..<5 {
            let response = try TestClient(port: sqlite.port, timeoutSeconds: 10).post(
                "/callbacks/CarrierService", json: callbackBody(requestID: "moved-\(number)"))
            #expect(response.status == 200)
        }
        try waitUntil("the first deliveries delivered", timeout: .seconds(30)) { Set(receiver.ids).count == 40 }
        sqlite.process.signal(SIGTERM)
        #expect(sqlite.process.waitForExit() == 0)

        let url = try PostgreSQLServer.shared().makeDatabase()
        let migrated = try runListenerCommand(["store", "migrate", "--config", sqlite.configPath, "--to", url])
        #expect(migrated.status == 0, "\(migrated.stdout)\(migrated.stderr)")
        #expect(migrated.stdout.contains("copied 45 callbacks"), "\(migrated.stdout)")
        #expect(migrated.stdout.contains("records of 1 destination"), "\(migrated.stdout)")

        // Every reading command answers the same from both stores.
        let commands = [
            ["messages", "export", "--include-duplicates"], ["messages", "list", "--request-id", "moved-3", "--include-duplicates"],
            ["messages", "list", "--limit", "100"], ["messages", "stats"], ["messages", "tail", "--lines", "7"],
            ["deliveries", "list", "--limit", "1000"], ["deliveries", "list", "--state", "delivered", "--after", "20"],
        ]
        for command in commands {
            let before = try runListenerCommand(command + ["--database", sqlite.databasePath])
            let after = try runListenerCommand(command + ["--database", url])
            #expect(before.status == 0 && after.status == 0, "\(before.stderr)\(after.stderr)")
            #expect(!before.stdout.isEmpty)
            #expect(after.stdout == before.stdout, "\(command.joined(separator: " ")) differs after the move")
        }
        let again = try runListenerCommand(["store", "migrate", "--config", sqlite.configPath, "--to", url])
        #expect(again.status == 1)
        #expect(again.stderr.contains("already holds"), "\(again.stderr)")

        let delivered = receiver.ids.count
        let instance = try PostgreSQLInstance(url: url, extra: configuration)
        let response = try TestClient(port: instance.port, timeoutSeconds: 10).post(
            "/callbacks/CarrierService", json: callbackBody(requestID: "after-the-move"))
        #expect(response.status == 200)
        #expect(response.bodyText.contains(#""id":46"#), "\(response.bodyText)")
        try waitUntil("the new callback delivered", timeout: .seconds(20)) { receiver.ids.contains(46) }
        Thread.sleep(forTimeInterval: 1)
        #expect(receiver.ids.count == delivered + 1, "callbacks delivered again after the move")
    }

    /// libpq's PGPASSFILE works for the service and the CLI alike, and the password is in no log line.
    @Test func thePasswordMayComeFromPGPASSFILE() throws {
        let server = try PostgreSQLServer.shared()
        let database = "passfile_\(getpid())"
        _ = try server.psql("postgres", "CREATE DATABASE \(database) OWNER \(PostgreSQLServer.passwordUser)")
        let url = server.url(database: database, user: PostgreSQLServer.passwordUser)
        let directory = try TemporaryDirectory()
        let passfile = directory.file("pgpass")
        try "*:*:*:\(PostgreSQLServer.passwordUser):\(PostgreSQLServer.password)\n".write(
            toFile: passfile, atomically: true, encoding: .utf8)
        chmod(passfile, 0o600)
        let environment = ["PGPASSFILE": passfile]
        let instance = try PostgreSQLInstance(url: url, environment: environment)
        let response = try TestClient(port: instance.port, timeoutSeconds: 10).post(
            "/callbacks/CarrierService", json: callbackBody(requestID: "passfile-1"))
        #expect(response.status == 200, "\(response.bodyText)")
        let rows = try exportPostgreSQL(url, environment: environment)
        #expect(rows.compactMap { $0["requestId"] as? String } == ["passfile-1"])
        // Without it, the CLI says why it cannot connect, naming no password.
        let refused = try runListenerCommand(["messages", "export", "--database", url])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("password"), "\(refused.stderr)")
        expectNoSecret(in: instance.process.logLines + [refused.stderr], secrets: [PostgreSQLServer.password])
        instance.process.signal(SIGTERM)
        #expect(instance.process.waitForExit(timeout: .seconds(30)) == 0)
    }
}
