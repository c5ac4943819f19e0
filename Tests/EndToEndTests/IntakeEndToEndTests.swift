import Foundation
import Synchronization
import TestSupport
import Testing

/// A listener on ephemeral ports with its own database in a temporary directory.
final class ListenerFixture {
    let directory: String
    let configPath: String
    var databasePath: String { directory + "/callbacks.sqlite" }
    private(set) var process: ListenerProcess!
    private(set) var port = 0
    private(set) var adminPort = 0

    init(port: Int = 0, extraConfiguration: String = "", environment: [String: String] = [:]) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tsl-e2e-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        configPath = directory + "/config.json"
        let json = """
            {
              "http": {"host": "127.0.0.1", "port": \(port), "shutdownGracePeriod": 5},
              "storage": {"path": "\(directory)/callbacks.sqlite"},
              "callbacks": {"username": "listener-user", "password": "listener-pass", "previousPassword": "old-pass"},
              "admin": {"port": 0}\(extraConfiguration)
            }
            """
        try json.write(toFile: configPath, atomically: true, encoding: .utf8)
        try start(environment: environment)
    }

    func start(environment: [String: String] = [:]) throws {
        process = try ListenerProcess(arguments: ["serve", "--config", configPath], environment: environment)
        port = try process.waitForCallbackPort()
        adminPort = (try? process.waitForAdminPort(timeout: .seconds(5))) ?? 0  // 0: admin off in this test
    }

    func export(includeDuplicates: Bool = true) throws -> [[String: Any]] {
        var arguments = ["messages", "export", "--database", databasePath]
        if includeDuplicates { arguments.append("--include-duplicates") }
        let result = try runListenerCommand(arguments)
        guard result.status == 0 else { throw ProcessError.didNotStart("export failed: \(result.stderr)") }
        return try result.stdout.split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }
}

func callbackBody(requestID: String, password: String = "listener-pass", status: String = "Success", count: Int = 1) -> [UInt8] {
    Array(
        """
        {"username":"listener-user","password":"\(password)","requestId":"\(requestID)",\
        "deviceIds":[{"id":"990013907835573","kind":"imei"}],\
        "deviceResponse":{"activateResponse":{"state":"active","servicePlan":"M2M_4G"}},\
        "status":"\(status)","callbackCount":\(count),"maxCallbackThreshold":4}
        """.utf8)
}

@Suite(.serialized) struct IntakeEndToEndTests {
    @Test func eachFixtureIsStoredAndExportedWithItsPasswordRedacted() throws {
        let listener = try ListenerFixture()
        let client = try TestClient(port: listener.port, timeoutSeconds: 10)
        let fixtures = [
            ("CarrierService", "carrier-service-success.json"), ("CarrierService", "carrier-service-fault.json"),
            ("DeviceUsage", "device-usage-guessed.json"), ("CarrierService", "carrier-service-retry.json"),
        ]
        var ids: [Int] = []
        for (service, name) in fixtures {
            let response = try client.post("/callbacks/\(service)", json: try fixtureBody(name))
            #expect(response.status == 200, "\(name): \(response.bodyText)")
            let json = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
            ids.append(json?["id"] as? Int ?? -1)
        }
        let rows = try listener.export()
        #expect(rows.count == 4)
        for (row, (service, name)) in zip(rows, fixtures) {
            #expect(row["service"] as? String == service)
            let body = try #require(row["body"] as? [String: Any])
            let original = try JSONSerialization.jsonObject(with: Data(try fixtureBody(name))) as! [String: Any]
            #expect(body["password"] as? String == "<redacted>")
            #expect(body["requestId"] as? String == original["requestId"] as? String)
            #expect(row["requestId"] as? String == original["requestId"] as? String)
            #expect((row["receivedAt"] as? String)?.hasSuffix("Z") == true)
        }
        // The retry (4th) links to the first delivery; the others are originals.
        #expect(rows[3]["duplicateOf"] as? Int == ids[0])
        #expect(rows[0]["duplicateOf"] is NSNull)
        #expect(rows[1]["duplicateOf"] is NSNull)
        #expect((rows[2]["deviceIds"] as? [[String: String]])?.first?["kind"] == "imei")
        // Without duplicates the retry is left out.
        #expect(try listener.export(includeDuplicates: false).count == 3)
        // The password is nowhere in the database file.
        let database = try Data(contentsOf: URL(fileURLWithPath: listener.databasePath))
        let wal = (try? Data(contentsOf: URL(fileURLWithPath: listener.databasePath + "-wal"))) ?? Data()
        #expect(database.range(of: Data("listener-pass".utf8)) == nil)
        #expect(wal.range(of: Data("listener-pass".utf8)) == nil)
        #expect(!listener.process.logLines.joined().contains("listener-pass"))

        // The people-facing commands read the same rows.
        let list = try runListenerCommand(["messages", "list", "--database", listener.databasePath, "--service", "CarrierService"])
        #expect(list.status == 0)
        #expect(list.stdout.contains("076f7ea9-8230-49b1-9386-8dafaddc7d9e"))
        #expect(!list.stdout.contains("5d1a7c3e"))  // DeviceUsage filtered out
        #expect(!list.stdout.contains("\n\(ids[3]) "))  // the retry only with --include-duplicates
        let withRepeats = try runListenerCommand([
            "messages", "list", "--database", listener.databasePath, "--include-duplicates", "--device-id", "22211315718",
        ])
        #expect(withRepeats.stdout.split(separator: "\n").count == 3)  // header, first delivery, retry
        let stats = try runListenerCommand(["messages", "stats", "--database", listener.databasePath])
        #expect(stats.stdout.contains("total 4, duplicates 1"))
        #expect(stats.stdout.contains("Failed"))
        let badSince = try runListenerCommand(["messages", "list", "--database", listener.databasePath, "--since", "yesterday"])
        #expect(badSince.status == 2)
    }

    @Test func rejectionsHaveTheirStatusAndStoreNothing() throws {
        let listener = try ListenerFixture()
        let client = try TestClient(port: listener.port, timeoutSeconds: 10)
        let wrong = try client.post("/callbacks/CarrierService", json: callbackBody(requestID: "r-wrong", password: "nope"))
        #expect(wrong.status == 403)
        let notJSON = try TestClient(port: listener.port, timeoutSeconds: 10).post("/callbacks/CarrierService", json: Array("hello".utf8))
        #expect(notJSON.status == 400)
        let array = try TestClient(port: listener.port, timeoutSeconds: 10).post("/callbacks/CarrierService", json: Array("[1]".utf8))
        #expect(array.status == 400)
        let mediaType = try TestClient(port: listener.port, timeoutSeconds: 10).exchange(
            "POST", "/callbacks/CarrierService", headers: ["Content-Type: text/plain"], body: callbackBody(requestID: "r-media"))
        #expect(mediaType.status == 415)
        let unknown = try TestClient(port: listener.port, timeoutSeconds: 10).post(
            "/callbacks/NoSuchService", json: callbackBody(requestID: "r-404"))
        #expect(unknown.status == 404)
        let getClient = try TestClient(port: listener.port, timeoutSeconds: 10)
        let method = try getClient.get("/callbacks/CarrierService")
        #expect(method.status == 405)
        #expect(method.header("Allow") == "POST")
        // The previous password is still accepted during a rotation.
        let previous = try TestClient(port: listener.port, timeoutSeconds: 10).post(
            "/callbacks/CarrierService", json: callbackBody(requestID: "r-old", password: "old-pass"))
        #expect(previous.status == 200)
        let rows = try listener.export()
        #expect(rows.map { $0["requestId"] as? String } == ["r-old"])
        #expect(!listener.process.logLines.joined().contains("nope"))
    }

    @Test func fiftyConnectionsPostingTwoThousandCallbacksLeaveExactlyTwoThousand() throws {
        let listener = try ListenerFixture()
        let failures = Atomic<Int>(0)
        let port = listener.port
        DispatchQueue.concurrentPerform(iterations: 50) { connection in
            do {
                let client = try TestClient(port: port, timeoutSeconds: 10)
                for index in 0..<40 {
                    let response = try client.post("/callbacks/DeviceUsage", json: callbackBody(requestID: "load-\(connection)-\(index)"))
                    if response.status != 200 { failures.add(1, ordering: .relaxed) }
                }
            } catch {
                failures.add(1, ordering: .relaxed)
            }
        }
        #expect(failures.load(ordering: .relaxed) == 0)
        let rows = try listener.export()
        #expect(rows.count == 2000)
        #expect(Set(rows.compactMap { $0["requestId"] as? String }).count == 2000)
        #expect(rows.allSatisfy { $0["duplicateOf"] is NSNull })
    }

    @Test func sourceAllowListBelievesOnlyTrustedProxies() throws {
        // The callbacks.* object of the fixture is replaced by one with an allow-list.
        let listener = try ListenerFixture(extraConfiguration: "")
        listener.process.signal(SIGTERM)
        listener.process.waitForExit()
        let json = try String(contentsOfFile: listener.configPath, encoding: .utf8).replacingOccurrences(
            of: #""previousPassword": "old-pass"}"#,
            with: #""previousPassword": "old-pass", "allowedSources": ["192.0.2.0/24"], "trustedProxies": ["127.0.0.1/32"]}"#)
        try json.write(toFile: listener.configPath, atomically: true, encoding: .utf8)
        try listener.start()

        let direct = try TestClient(port: listener.port, timeoutSeconds: 10).post(
            "/callbacks/CarrierService", json: callbackBody(requestID: "direct"))
        #expect(direct.status == 403)
        // A source that may not post learns nothing about paths either.
        #expect(
            try TestClient(port: listener.port, timeoutSeconds: 10).post("/callbacks/NoSuchService", json: callbackBody(requestID: "probe"))
                .status == 403)
        let viaProxy = try TestClient(port: listener.port, timeoutSeconds: 10).post(
            "/callbacks/CarrierService", json: callbackBody(requestID: "via-proxy"),
            headers: ["X-Forwarded-For: 198.51.100.9, 192.0.2.44"])
        #expect(viaProxy.status == 200)
        // Only the rightmost untrusted hop counts: a client cannot smuggle an allowed address in front.
        let spoofed = try TestClient(port: listener.port, timeoutSeconds: 10).post(
            "/callbacks/CarrierService", json: callbackBody(requestID: "spoofed"),
            headers: ["X-Forwarded-For: 192.0.2.44, 198.51.100.9"])
        #expect(spoofed.status == 403)
        let rows = try listener.export()
        #expect(rows.map { $0["requestId"] as? String } == ["via-proxy"])
        let shown = try runListenerCommand([
            "messages", "show", String(rows.first?["id"] as? Int ?? 0), "--database", listener.databasePath,
        ])
        #expect(shown.stdout.contains("\"remoteAddress\":\"192.0.2.44\""))
    }

    @Test func sigtermDrainsAndExitsZero() throws {
        let listener = try ListenerFixture()
        #expect(
            try TestClient(port: listener.port, timeoutSeconds: 10).post(
                "/callbacks/CarrierService", json: callbackBody(requestID: "before-stop")
            ).status == 200)
        listener.process.signal(SIGTERM)
        #expect(listener.process.waitForExit() == 0)
        #expect(listener.process.logLines.contains { $0.contains("stopped") })
        #expect(try listener.export().count == 1)
    }
}
