import Delivery
import Foundation
import Synchronization
import TestSupport
import Testing

let deliverySecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

/// `"delivery": {"destinations": [...]}` for ListenerFixture's extra configuration.
func deliveryConfiguration(_ destinations: [String]) -> String {
    #", "delivery": {"destinations": [\#(destinations.joined(separator: ", "))]}"#
}

func destinationJSON(_ name: String, _ receiver: RecordingDestination, _ extra: String = "") -> String {
    #"{"name": "\#(name)", "url": "\#(receiver.url)", "secret": "\#(deliverySecret)"\#(extra.isEmpty ? "" : ", " + extra)}"#
}

/// Posts callbacks from `connections` clients at once; returns the requestIds answered 200.
func postCallbacks(port: Int, count: Int, connections: Int = 1, prefix: String, device: @escaping @Sendable (Int) -> String? = { _ in nil })
    -> [String]
{
    let perConnection = (count + connections - 1) / connections
    // A thread per connection: the requests of all connections are open at once.
    return onThreads(connections) { connection -> [String] in
        guard let client = try? TestClient(port: port, timeoutSeconds: 10) else { return [] }
        var acknowledged: [String] = []
        for index in (connection * perConnection)..<min(count, (connection + 1) * perConnection) {
            let id = "\(prefix)-\(index)"
            var body = String(decoding: callbackBody(requestID: id), as: UTF8.self)
            if let device = device(index) { body = body.replacingOccurrences(of: "990013907835573", with: device) }
            guard let response = try? client.post("/callbacks/CarrierService", json: Array(body.utf8)) else { break }
            if response.status == 200 { acknowledged.append(id) }
        }
        return acknowledged
    }.flatMap { $0 }
}

/// Whether the Standard Webhooks reference library (PyPI `standardwebhooks`, set up by `make test`)
/// verifies a received message; nil when it is not set up and not required (plain `swift test`).
func verifiedByReferenceLibrary(_ message: RecordingDestination.Received, secret: String) throws -> Bool? {
    let environment = ProcessInfo.processInfo.environment
    guard let python = environment["STANDARDWEBHOOKS_PYTHON"], !python.isEmpty else {
        if environment["REQUIRE_STANDARDWEBHOOKS"] == "1" {
            Issue.record("REQUIRE_STANDARDWEBHOOKS=1 but STANDARDWEBHOOKS_PYTHON is not set")
        }
        return nil
    }
    let directory = try TemporaryDirectory()
    let bodyFile = directory.file("body")
    try Data(message.body).write(to: URL(fileURLWithPath: bodyFile))
    let script = repositoryRoot.appendingPathComponent("Tests/Tools/standardwebhooks_check.py").path
    let result = try runProcess(
        URL(fileURLWithPath: python),
        [
            script, "verify", "--id", message.id, "--timestamp", message.timestamp, "--signature", message.signature, "--body-file",
            bodyFile,
        ],
        environment: ["STANDARDWEBHOOKS_SECRET": secret], timeout: .seconds(30))
    if result.status == 3 { Issue.record("the reference library is not installed: \(result.stderr)") }
    return result.status == 0
}

/// The `data` object of a received webhook, parsed.
func webhookData(_ received: RecordingDestination.Received) -> [String: Any] {
    let object = (try? JSONSerialization.jsonObject(with: Data(received.body))) as? [String: Any]
    return object?["data"] as? [String: Any] ?? [:]
}

@Suite(.serialized) struct DeliveryEndToEndTests {
    @Test func everyCallbackIsDeliveredExactlyOnceSignedWhenAllGoesWell() throws {
        let receiver = try RecordingDestination()
        let listener = try ListenerFixture(extraConfiguration: deliveryConfiguration([destinationJSON("orders", receiver)]))
        let acknowledged = postCallbacks(port: listener.port, count: 400, connections: 8, prefix: "happy")
        #expect(acknowledged.count == 400)
        try waitUntil("400 deliveries") { receiver.all.count >= 400 }
        Thread.sleep(forTimeInterval: 0.5)
        #expect(receiver.all.count == 400, "exactly once each")
        #expect(Set(receiver.all.compactMap { webhookData($0)["requestId"] as? String }) == Set(acknowledged))
        for message in receiver.all {
            #expect((webhookData(message)["id"] as? NSNumber)?.int64Value == message.callbackID, "webhook-id is the stored callback's id")
            let timestamp = Int64(message.timestamp) ?? 0
            let expected = WebhookMessage.signature(
                id: message.id, timestamp: timestamp, body: message.body, secrets: [WebhookSecret(deliverySecret)!])
            #expect(message.signature == expected)
            #expect(!message.bodyText.contains("listener-pass"), "the callback password is redacted")
        }
        let list = try runListenerCommand([
            "deliveries", "list", "--database", listener.databasePath, "--state", "delivered", "--limit", "1000",
        ])
        #expect(list.status == 0)
        #expect(list.stdout.split(separator: "\n").count == 401, "a header and 400 rows")
        let metrics = try TestClient(port: listener.adminPort, timeoutSeconds: 5).get("/metrics").bodyText
        #expect(metrics.contains(#"deliveries_delivered_total{destination="orders"} 400"#))
        #expect(metrics.contains(#"delivery_attempts_total{destination="orders",outcome="delivered"} 400"#))
        expectNoSecret(in: listener.process.logLines, secrets: [deliverySecret, "listener-pass"])
        listener.process.signal(SIGTERM)
        #expect(listener.process.waitForExit() == 0)
    }

    /// Each outcome the contract names, one destination each, in one service.
    @Test func failuresRetryAfterTimeoutsDeadLettersAndGoneBehaveAsTheContractSays() throws {
        let flaky = try RecordingDestination { _, attempt in attempt <= 2 ? .status(500) : .status(200) }
        let throttled = try RecordingDestination { _, attempt in attempt == 1 ? .status(503, headers: [("Retry-After", "2")]) : .status(200)
        }
        let slow = try RecordingDestination { _, attempt in attempt == 1 ? .hang : .status(200) }
        let broken = Flag(true)
        let dead = try RecordingDestination { _, _ in broken.isSet ? .status(500) : .status(200) }
        let gone = Flag(true)
        let disabled = try RecordingDestination { _, _ in gone.isSet ? .status(410) : .status(200) }
        let listener = try ListenerFixture(
            extraConfiguration: deliveryConfiguration([
                destinationJSON("flaky", flaky, #""retrySchedule": [0.2, 0.2, 60]"#),
                destinationJSON("throttled", throttled, #""retrySchedule": [0.1]"#),
                destinationJSON("slow", slow, #""timeoutSeconds": 1, "retrySchedule": [0.1]"#),
                destinationJSON("dead", dead, #""retrySchedule": [0.1]"#),
                destinationJSON("gone", disabled, #""maxInFlight": 1"#),
            ]))
        let acknowledged = postCallbacks(port: listener.port, count: 3, prefix: "outcomes")
        #expect(acknowledged.count == 3)

        try waitUntil("flaky: 3 attempts each") { flaky.all.count >= 9 }
        #expect(Dictionary(grouping: flaky.ids, by: { $0 }).values.allSatisfy { $0.count == 3 })

        try waitUntil("throttled: a second attempt") { Set(throttled.ids).count == 3 && throttled.all.count >= 6 }
        for id in Set(throttled.ids) {
            let attempts = throttled.all.filter { $0.callbackID == id }.map(\.arrivedAt)
            #expect(attempts.count == 2)
            #expect(attempts[1] - attempts[0] >= .milliseconds(1_900), "Retry-After: 2 is honoured, not the 0.1 s schedule")
        }

        try waitUntil("slow: the timed-out attempt made again") { slow.all.count >= 6 }
        let timedOut = try runListenerCommand(["deliveries", "list", "--database", listener.databasePath, "--destination", "slow"])
        #expect(timedOut.stdout.contains("delivered"))

        try waitUntil("dead: dead-lettered after 2 attempts each") {
            (try? runListenerCommand([
                "deliveries", "list", "--database", listener.databasePath, "--destination", "dead", "--state", "dead",
            ]))?
            .stdout.split(separator: "\n").count == 4
        }
        #expect(dead.all.count == 6)
        broken.set(false)
        let retry = try runListenerCommand(["deliveries", "retry", "--database", listener.databasePath, "--destination", "dead", "--dead"])
        #expect(retry.status == 0 && retry.stdout.contains("3 dead-lettered deliveries"))
        try waitUntil("dead: delivered after retry --dead") { dead.all.count >= 9 }

        try waitUntil("gone: disabled") {
            (try? TestClient(port: listener.adminPort, timeoutSeconds: 5).get("/readyz"))?.bodyText.contains("delivery gone:") == true
                && disabled.all.count >= 1
        }
        let readyz = try TestClient(port: listener.adminPort, timeoutSeconds: 5).get("/readyz")
        #expect(readyz.status == 200, "a destination that is down never makes the service unready")
        #expect(readyz.bodyText.contains("disabled"))
        Thread.sleep(forTimeInterval: 0.5)
        #expect(disabled.all.count == 1, "nothing more goes to a disabled destination")
        gone.set(false)
        let enable = try runListenerCommand(["deliveries", "enable", "--database", listener.databasePath, "--destination", "gone"])
        #expect(enable.status == 0)
        try waitUntil("gone: delivered once enabled") { Set(disabled.ids).count == 3 }

        let metrics = try TestClient(port: listener.adminPort, timeoutSeconds: 5).get("/metrics").bodyText
        #expect(metrics.contains(#"delivery_attempts_total{destination="flaky",outcome="http_error"} 6"#))
        #expect(metrics.contains(#"delivery_attempts_total{destination="throttled",outcome="throttled"} 3"#))
        #expect(metrics.contains(#"delivery_attempts_total{destination="slow",outcome="timeout"} 3"#))
        #expect(metrics.contains(#"deliveries_dead_lettered_total{destination="dead"} 3"#))
        #expect(metrics.contains(#"delivery_attempts_total{destination="gone",outcome="gone"} 1"#))
        listener.process.signal(SIGTERM)
        #expect(listener.process.waitForExit() == 0)
    }

    @Test func aReloadEnablesADisabledDestinationAndReplayResendsWithTheSameIDs() throws {
        let gone = Flag(true)
        let receiver = try RecordingDestination { _, _ in gone.isSet ? .status(410) : .status(200) }
        let listener = try ListenerFixture(extraConfiguration: deliveryConfiguration([destinationJSON("orders", receiver)]))
        let start = Date()
        #expect(postCallbacks(port: listener.port, count: 5, prefix: "replay").count == 5)
        try waitUntil("disabled") { receiver.all.count >= 1 }
        Thread.sleep(forTimeInterval: 0.3)
        gone.set(false)
        listener.process.signal(SIGHUP)
        try waitUntil("all delivered after the reload") { Set(receiver.ids).count == 5 }
        let firstRound = Set(receiver.ids)

        let since = ISO8601DateFormatter().string(from: start.addingTimeInterval(-1))
        let replay = try runListenerCommand([
            "deliveries", "replay", "--config", listener.configPath, "--destination", "orders", "--since", since,
        ])
        #expect(replay.status == 0, "\(replay.stderr)")
        #expect(replay.stdout.contains("5 callbacks will be delivered again"))
        try waitUntil("the replay delivered") { receiver.all.count(where: { $0.callbackID > 0 }) >= 6 + 5 - 1 }
        let counts = Dictionary(grouping: receiver.ids.filter(firstRound.contains), by: { $0 }).mapValues(\.count)
        #expect(counts.values.allSatisfy { $0 >= 2 }, "each delivered again, with its id: \(counts)")
        let future = ISO8601DateFormatter().string(from: Date().addingTimeInterval(3600))
        let none = try runListenerCommand([
            "deliveries", "replay", "--config", listener.configPath, "--destination", "orders", "--since", future,
        ])
        #expect(none.stdout.contains("0 callbacks"))
        let unknown = try runListenerCommand([
            "deliveries", "replay", "--config", listener.configPath, "--destination", "nope", "--since", since,
        ])
        #expect(unknown.status != 0 && unknown.stderr.contains("no destination named nope"))
    }

    @Test func oneDevicesCallbacksArriveInOrderUnderFailures() throws {
        let failedOnce = Mutex<Set<String>>([])
        let receiver = try RecordingDestination { message, _ in
            // Every device's third callback fails once.
            let data = webhookData(message)
            let requestID = data["requestId"] as? String ?? ""
            let index = Int(requestID.split(separator: "-").last ?? "") ?? 0
            if index / 4 == 2, failedOnce.withLock({ $0.insert(requestID).inserted }) { return .status(500) }
            return .status(200)
        }
        let listener = try ListenerFixture(
            extraConfiguration: deliveryConfiguration([
                destinationJSON("orders", receiver, #""ordering": "device", "retrySchedule": [0.3]"#)
            ]))
        let acknowledged = postCallbacks(port: listener.port, count: 40, connections: 1, prefix: "ordered") { "35000000000000\($0 % 4)" }
        #expect(acknowledged.count == 40)
        try waitUntil("40 delivered") { Set(receiver.ids).count == 40 }
        for device in 0..<4 {
            var order: [Int] = []
            for message in receiver.all {
                let data = webhookData(message)
                let devices = data["deviceIds"] as? [[String: Any]] ?? []
                guard devices.first?["id"] as? String == "35000000000000\(device)" else { continue }
                let index = Int((data["requestId"] as? String ?? "").split(separator: "-").last ?? "") ?? -1
                if order.last != index { order.append(index) }
            }
            #expect(order == Array(stride(from: device, to: 40, by: 4)), "device \(device): \(order)")
        }
        #expect(failedOnce.withLock { $0.count } == 4)
    }

    /// Intake alone first; then a reload adds a hanging destination and a fast one: intake goes on,
    /// and the fast one gets everything while the hanging one holds its `maxInFlight` attempts open.
    @Test func aHangingDestinationSlowsNeitherAnotherNorIntake() throws {
        let hanging = try RecordingDestination { _, _ in .hang }
        let fast = try RecordingDestination()
        let listener = try ListenerFixture()
        var started = ContinuousClock.now
        #expect(postCallbacks(port: listener.port, count: 1_000, connections: 8, prefix: "alone").count == 1_000)
        let alone = ContinuousClock.now - started

        let configuration = try String(contentsOfFile: listener.configPath, encoding: .utf8)
        let destinations = deliveryConfiguration([
            destinationJSON("hanging", hanging, #""timeoutSeconds": 30"#), destinationJSON("fast", fast),
        ])
        try String(configuration.dropLast(2) + destinations + "\n}\n").write(toFile: listener.configPath, atomically: true, encoding: .utf8)
        listener.process.signal(SIGHUP)
        try listener.process.waitForLog("delivering")

        started = ContinuousClock.now
        let acknowledged = postCallbacks(port: listener.port, count: 1_000, connections: 8, prefix: "hang")
        let beside = ContinuousClock.now - started
        #expect(acknowledged.count == 1_000)
        try waitUntil("the fast destination served", timeout: .seconds(20)) { Set(fast.ids).count == 1_000 }
        let lag = ContinuousClock.now - started - beside
        print(
            "1,000 callbacks from 8 connections: intake alone \(alone), beside the destinations \(beside); the fast one done \(lag) after the last 200"
        )
        #expect(
            Set(fast.all.compactMap { webhookData($0)["requestId"] as? String }) == Set(acknowledged), "only what came after the reload")
        #expect(hanging.all.count == 16, "maxInFlight attempts open on the hanging one, no more")
        listener.process.signal(SIGTERM)
        #expect(listener.process.waitForExit() == 0)
    }

    /// kill -9 while delivering, 5 rounds: every acknowledged callback is delivered at least once, and a
    /// repeat always carries the callback's own webhook-id.
    @Test func killNineDuringDeliveryLosesNothing() throws {
        // Slow enough that a backlog waits in the ledger at each kill.
        let receiver = try RecordingDestination { _, _ in .slow(.milliseconds(10)) }
        let listener = try ListenerFixture(
            extraConfiguration: deliveryConfiguration([destinationJSON("orders", receiver, #""maxInFlight": 4"#)]))
        var acknowledged = Set<String>()
        var backlogs: [Int] = []
        for round in 0..<5 {
            let port = listener.port
            let done = DispatchSemaphore(value: 0)
            let roundAcknowledged = Mutex<[String]>([])
            DispatchQueue.global().async {
                roundAcknowledged.withLock { $0 = postCallbacks(port: port, count: 2_000, connections: 4, prefix: "kill-\(round)") }
                done.signal()
            }
            try waitUntil("deliveries under way in round \(round)", timeout: .seconds(20)) {
                receiver.all.count { (webhookData($0)["requestId"] as? String)?.hasPrefix("kill-\(round)-") == true } >= 100
            }
            listener.process.signal(SIGKILL)
            listener.process.waitForExit()
            done.wait()
            let round = roundAcknowledged.withLock { $0 }
            let deliveredSoFar = Set(receiver.all.compactMap { webhookData($0)["requestId"] as? String })
            backlogs.append(round.count { !deliveredSoFar.contains($0) })
            acknowledged.formUnion(round)
            try listener.start()
        }
        #expect(backlogs.allSatisfy { $0 > 0 }, "each kill left callbacks to deliver: \(backlogs)")
        try waitUntil("every acknowledged callback delivered", timeout: .seconds(60)) {
            Set(receiver.all.compactMap { webhookData($0)["requestId"] as? String }).isSuperset(of: acknowledged)
        }
        var idOfRequest: [String: Int64] = [:]
        for message in receiver.all {
            let data = webhookData(message)
            guard let requestID = data["requestId"] as? String else { continue }
            #expect((data["id"] as? NSNumber)?.int64Value == message.callbackID)
            #expect(idOfRequest[requestID, default: message.callbackID] == message.callbackID, "\(requestID) under two ids")
            idOfRequest[requestID] = message.callbackID
        }
        let repeats = receiver.all.count - Set(receiver.ids).count
        print(
            "kill -9 × 5: \(acknowledged.count) acknowledged, \(receiver.all.count) deliveries, \(repeats) repeats, "
                + "at most \(backlogs.max() ?? 0) waiting at a kill")
        // Repeats are what was in flight (4) or answered in the few milliseconds before its outcome
        // was written, at each kill: far fewer than the callbacks waiting then.
        #expect(repeats <= 5 * 12, "\(repeats) repeats")
        listener.process.signal(SIGTERM)
        #expect(listener.process.waitForExit() == 0)
    }
}

final class Flag: Sendable {
    private let value: Atomic<Bool>
    init(_ value: Bool) { self.value = Atomic(value) }
    var isSet: Bool { value.load(ordering: .relaxed) }
    func set(_ new: Bool) { value.store(new, ordering: .relaxed) }
}
