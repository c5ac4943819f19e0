import Delivery
import Foundation
import Synchronization
import TestSupport
import Testing

private let token = "e2e-consumer-token"
private let authorization = "Authorization: Bearer \(token)"

/// A listener with the consumer API on (all ports ephemeral), and its API port.
private func listenerWithAPI() throws -> (ListenerFixture, apiPort: Int) {
    let listener = try ListenerFixture(extraConfiguration: #", "api": {"enabled": true, "port": 0, "tokens": ["\#(token)"]}"#)
    return (listener, try listener.process.waitForConsumerAPIPort())
}

/// POSTs a callback and returns its id and when the 200 arrived.
private func post(_ client: TestClient, requestID: String) throws -> (id: Int64, at: ContinuousClock.Instant) {
    let response = try client.post("/callbacks/CarrierService", json: callbackBody(requestID: requestID))
    let at = ContinuousClock.now
    guard response.status == 200,
        let object = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any],
        let id = (object["id"] as? NSNumber)?.int64Value
    else { throw ProcessError.didNotStart("callback not stored: \(response.status) \(response.bodyText)") }
    return (id, at)
}

/// A child process whose stdout is collected line by line as it comes (PipeLines).
private final class LineReader: Sendable {
    let process = Process()
    private let lines: PipeLines

    init(_ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: listenerBinary)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("THINGSPACE_LISTENER_") }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        lines = PipeLines(reading: output.fileHandleForReading)
    }

    var output: [String] { lines.lines }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

@Suite(.serialized) struct ConsumerAPIEndToEndTests {
    @Test func withoutTheTokenTheAPIAnswers401AndTheCallbackPortDoesNotServeIt() throws {
        let (listener, apiPort) = try listenerWithAPI()
        let client = try TestClient(port: apiPort, timeoutSeconds: 10)
        for headers in [[], ["Authorization: Bearer not-the-token"], ["Authorization: Basic \(Data("u:p".utf8).base64EncodedString())"]] {
            let response = try client.get("/v1/callbacks", headers: headers)
            #expect(response.status == 401, "\(headers)")
            #expect(response.header("WWW-Authenticate")?.hasPrefix("Bearer") == true)
        }
        #expect(try client.get("/v1/callbacks", headers: [authorization]).status == 200)
        #expect(apiPort != listener.port)
        #expect(try TestClient(port: listener.port, timeoutSeconds: 10).get("/v1/callbacks", headers: [authorization]).status == 404)
        listener.process.signal(SIGTERM)
        #expect(listener.process.waitForExit() == 0)
        #expect(!listener.process.logLines.contains { $0.contains(token) })
    }

    @Test func aWaitOnARequestIDReturnsItsCallbackAsSoonAsItIsStored() throws {
        let (listener, apiPort) = try listenerWithAPI()
        let callbacks = try TestClient(port: listener.port, timeoutSeconds: 10)
        var delays: [Duration] = []
        for round in 0..<5 {
            let requestID = "e2e-\(round)-\(UUID().uuidString)"
            let waited = Mutex<(ClientResponse, ContinuousClock.Instant)?>(nil)
            let waiter = Thread {
                do {
                    let client = try TestClient(port: apiPort, timeoutSeconds: 40)
                    let response = try client.get("/v1/callbacks?requestId=\(requestID)&wait=30", headers: [authorization])
                    waited.withLock { $0 = (response, ContinuousClock.now) }
                } catch {
                    Issue.record("the long poll failed: \(error)")
                }
            }
            waiter.start()
            Thread.sleep(forTimeInterval: 0.3)  // the poll is waiting
            _ = try post(callbacks, requestID: "someone-else-\(round)")  // does not end it
            let (id, acknowledgedAt) = try post(callbacks, requestID: requestID)
            #expect(eventually(within: .seconds(20)) { waited.withLock { $0 != nil } })
            let (response, answeredAt) = try #require(waited.withLock { $0 })
            delays.append(answeredAt - acknowledgedAt)
            #expect(response.status == 200)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
            let found = try #require(object["callbacks"] as? [[String: Any]])
            #expect(found.count == 1)
            #expect((found.first?["id"] as? NSNumber)?.int64Value == id)
            #expect(found.first?["requestId"] as? String == requestID)
            #expect((object["next"] as? NSNumber)?.int64Value == id)
            if round == 0 {
                // The object is the export's line.
                let exported = try #require(try listener.export().first { $0["requestId"] as? String == requestID })
                #expect(NSDictionary(dictionary: exported).isEqual(to: found[0]))
            }
        }
        let sorted = delays.sorted()
        // The 200 and the long poll's answer leave the service within a few milliseconds of each
        // other, over two sockets read by two threads: either may be read first.
        print("e2e long poll on a requestId: answer read \(sorted[2]) (median), \(sorted[4]) (max) after the 200 was read, 5 rounds")
        #expect(sorted.last! < .seconds(2))
    }

    @Test func aStreamReconnectingWithLastEventIDUnderLoadLosesAndRepeatsNothing() throws {
        let (listener, apiPort) = try listenerWithAPI()
        let total = 2_000
        let connections = 8
        let port = listener.port
        let acknowledged = Collector<Int64>()
        let posting = Thread {
            _ = onThreads(connections) { connection in
                do {
                    let client = try TestClient(port: port, timeoutSeconds: 30)
                    for index in 0..<(total / connections) {
                        acknowledged.append(try post(client, requestID: "load-\(connection)-\(index)").id)
                    }
                } catch {
                    Issue.record("posting failed: \(error)")
                }
            }
        }
        posting.start()
        var received: [Int64] = []
        var lastEventID: String?
        var connectionsMade = 0
        let deadline = ContinuousClock.now + .seconds(180)
        while received.count < total && ContinuousClock.now < deadline {
            let client = try TestClient(port: apiPort, timeoutSeconds: 20)
            try client.sendRequest(
                "GET", "/v1/stream?after=0", headers: [authorization] + (lastEventID.map { ["Last-Event-ID: \($0)"] } ?? []))
            let head = try client.readHead()
            #expect(head.status == 200 && head.header("Content-Type")?.hasPrefix("text/event-stream") == true)
            connectionsMade += 1
            var parser = ServerSentEventParser()
            let cutAfter = 200 + (connectionsMade * 131) % 400
            var taken = 0
            reading: while taken < cutAfter && received.count < total, let chunk = try client.readChunk() {
                for event in try parser.append(chunk) {
                    #expect(event.event == "callback")
                    received.append(Int64(event.id ?? "") ?? -1)
                    taken += 1
                }
                if taken >= cutAfter { break reading }
            }
            // Everything read was handled: the parser's last id is where this client got to.
            lastEventID = parser.lastEventID ?? lastEventID
            client.reset()
        }
        #expect(eventually(within: .seconds(60)) { acknowledged.values.count == total })
        let ids = acknowledged.values.sorted()
        print("e2e stream: \(received.count) events over \(connectionsMade) connections while \(total) callbacks were posted")
        #expect(connectionsMade > 3)
        #expect(received == ids)  // every acknowledged callback once, in id order
    }

    @Test func aNewCallbackReachesAnOpenStreamSoonAfterIts200() throws {
        let (listener, apiPort) = try listenerWithAPI()
        let stream = try TestClient(port: apiPort, timeoutSeconds: 20)
        try stream.sendRequest("GET", "/v1/stream?service=CarrierService", headers: [authorization])
        #expect(try stream.readHead().status == 200)
        var parser = ServerSentEventParser()
        #expect(try parser.append(try #require(try stream.readChunk())).isEmpty)  // the retry hint
        let port = listener.port
        var delays: [Duration] = []
        for round in 0..<20 {
            // Posted from another thread while this one waits on the stream.
            let acknowledged = Mutex<(id: Int64, at: ContinuousClock.Instant)?>(nil)
            let poster = Thread {
                do {
                    let client = try TestClient(port: port, timeoutSeconds: 10)
                    Thread.sleep(forTimeInterval: 0.02)
                    let result = try post(client, requestID: "live-\(round)")
                    acknowledged.withLock { $0 = result }
                } catch {
                    Issue.record("posting failed: \(error)")
                }
            }
            poster.start()
            var events: [ServerSentEvent] = []
            while events.isEmpty { events = try parser.append(try #require(try stream.readChunk())) }
            let arrivedAt = ContinuousClock.now
            #expect(eventually(within: .seconds(10)) { acknowledged.withLock { $0 != nil } })
            let (id, acknowledgedAt) = try #require(acknowledged.withLock { $0 })
            #expect(events.map(\.id) == [String(id)])
            delays.append(arrivedAt - acknowledgedAt)
        }
        let sorted = delays.sorted()
        print("e2e stream: a new callback's event read \(sorted[10]) (median), \(sorted[19]) (max) after its 200 was read, 20 rounds")
        #expect(sorted.last! < .seconds(2))
    }

    @Test func messagesTailFollowPrintsACallbackPostedAfterItStarted() throws {
        let (listener, _) = try listenerWithAPI()
        let callbacks = try TestClient(port: listener.port, timeoutSeconds: 10)
        let earlier = try (0..<3).map { try post(callbacks, requestID: "before-\($0)").id }
        // Without --follow: the last lines, oldest first, and exit.
        let once = try runListenerCommand(["messages", "tail", "--lines", "2", "--database", listener.databasePath])
        #expect(once.status == 0, "\(once.stderr)")
        let printed = once.stdout.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["id"] as? NSNumber
        }
        #expect(printed.map(\.int64Value) == Array(earlier.suffix(2)))

        let tail = try LineReader([
            "messages", "tail", "--follow", "--lines", "1", "--service", "CarrierService", "--database", listener.databasePath,
        ])
        // Its first line (the last stored) says it is reading.
        #expect(eventually(within: .seconds(20)) { tail.output.count == 1 })
        let requestID = "after-\(UUID().uuidString)"
        let (id, acknowledgedAt) = try post(callbacks, requestID: requestID)
        #expect(eventually(within: .seconds(20)) { tail.output.contains { $0.contains(requestID) } })
        print("e2e messages tail --follow: line seen \(ContinuousClock.now - acknowledgedAt) after the 200 (this test looks every 20 ms)")
        let line = try #require(tail.output.last)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect((object["id"] as? NSNumber)?.int64Value == id)
        #expect(object["body"] != nil && object["service"] as? String == "CarrierService")
        #expect(tail.process.isRunning)
        kill(tail.process.processIdentifier, SIGINT)
        tail.process.waitUntilExit()
        #expect(tail.output.count == 2)
    }
}
