import CallbackStore
import Delivery
import Foundation
import HTTP1
import HTTPServer
import SQLiteStore
import Synchronization
import TestSupport
import Testing

/// `/v1/stream`: the event format, new callbacks as they are stored, resuming after
/// `Last-Event-ID` under load, keepalive, limits and the stop.
@Suite struct ConsumerAPIStreamTests {
    @Test func eventsCarryTheIDTheTypeAndTheExportsObject() async throws {
        let api = try APIFixture()
        let ids = try await api.commitAll([apiCallback(requestID: "one"), apiCallback("DeviceUsage", requestID: "two")])
        try await api.waitUntilIndexed(ids[1])
        let objects = try ids.map { try api.dataObject($0) }
        let (head, chunks, events) = try await blocking { () -> (ClientResponse?, [[UInt8]], [ServerSentEvent]) in
            let stream = try EventStreamClient(port: api.port, path: "/v1/stream")
            let events = [try stream.next(), try stream.next()].compactMap { $0 }
            return (stream.head, stream.chunks, events)
        }
        #expect(head?.status == 200)
        #expect(head?.header("Content-Type") == "text/event-stream; charset=utf-8")
        #expect(head?.header("Transfer-Encoding") == "chunked")
        #expect(head?.header("Cache-Control") == "no-store")
        // The wire format, exactly: a retry hint, then one event per callback.
        let raw = String(decoding: chunks.joined(), as: UTF8.self)
        let expected =
            "retry: 1000\n\n"
            + zip(ids, objects).map { "id: \($0)\nevent: callback\ndata: \(String(decoding: $1, as: UTF8.self))\n\n" }.joined()
        #expect(raw == expected)
        #expect(events.map(\.id) == ids.map { String($0) })
        #expect(events.allSatisfy { $0.event == "callback" })
        #expect(events.map { Array($0.data.utf8) } == objects)
    }

    @Test func aNewCallbackReachesAnOpenStreamSoonAfterItsCommit() async throws {
        let api = try APIFixture()
        let stream = try await blocking { try EventStreamClient(port: api.port, path: "/v1/stream?service=DeviceUsage") }
        #expect(await eventuallyAsync { api.handler.openStreams == 1 })
        var delays: [Duration] = []
        for round in 0..<10 {
            // One the filter leaves out, then one it lets through.
            _ = try await api.commit(apiCallback("CarrierService", requestID: "skip-\(round)"))
            let reading = Task { try await blocking { (try stream.next(), ContinuousClock.now) } }
            let (receipt, committedAt) = try await api.commit(apiCallback("DeviceUsage", requestID: "round-\(round)"))
            let (event, arrivedAt) = try await reading.value
            #expect(event?.id == String(receipt.id))
            delays.append(arrivedAt - committedAt)
        }
        let sorted = delays.sorted()
        print("stream: a new callback arrived after its commit in median \(sorted[sorted.count / 2]), max \(sorted.last!) (10 rounds)")
        #expect(sorted.last! < .seconds(2))
        stream.close()
        #expect(await eventuallyAsync { api.handler.openStreams == 0 })
    }

    @Test func resumingAfterLastEventIDWhileCallbacksAreStoredLosesAndRepeatsNothing() async throws {
        let api = try APIFixture()
        let total = 2_000
        // Four submitters at once, for the whole test.
        let storing = Task {
            try await withThrowingTaskGroup(of: [Int64].self) { group in
                for submitter in 0..<4 {
                    group.addTask {
                        try await api.commitAll((0..<(total / 4)).map { apiCallback(requestID: "load-\(submitter)-\($0)") })
                    }
                }
                return try await group.reduce(into: [Int64]()) { $0 += $1 }
            }
        }
        let received = try await blocking { () -> (ids: [Int64], reconnects: Int) in
            var ids: [Int64] = []
            var lastEventID: String?
            var reconnects = 0
            let deadline = ContinuousClock.now + .seconds(120)
            while ids.count < total && ContinuousClock.now < deadline {
                let headers = [bearer] + (lastEventID.map { ["Last-Event-ID: \($0)"] } ?? [])
                // The first connection's `after` stays in the URL, as an EventSource keeps it.
                let stream = try EventStreamClient(port: api.port, path: "/v1/stream?after=0", headers: headers)
                // Cut each connection after a few hundred events, mid-stream.
                let cutAfter = 150 + (reconnects * 97) % 300
                var taken = 0
                while taken < cutAfter && ids.count < total, let event = try stream.next() {
                    ids.append(Int64(event.id ?? "") ?? -1)
                    taken += 1
                }
                // The last event handled (events read with it in the same chunk but not handled are
                // as good as lost with the connection).
                lastEventID = ids.last.map { String($0) } ?? lastEventID
                stream.close()
                reconnects += 1
            }
            return (ids, reconnects)
        }
        let stored = try await storing.value.sorted()
        print("stream resume: \(received.ids.count) events over \(received.reconnects) connections while \(total) callbacks were stored")
        #expect(received.reconnects > 3)
        #expect(received.ids == stored)  // every id once, in order: no gap, no repeat
    }

    @Test func anIdleStreamGetsAKeepaliveComment() async throws {
        var limits = ConsumerAPIHandler.Limits()
        limits.keepaliveInterval = .milliseconds(200)
        let api = try APIFixture(limits: limits)
        let (chunks, took) = try await blocking { () -> ([String], Duration) in
            let stream = try EventStreamClient(port: api.port, path: "/v1/stream")
            let started = ContinuousClock.now
            let chunks = try (0..<3).map { _ in String(decoding: try stream.nextChunk() ?? [], as: UTF8.self) }
            return (chunks, ContinuousClock.now - started)
        }
        #expect(chunks == ["retry: 1000\n\n", ": keepalive\n\n", ": keepalive\n\n"])
        print("keepalive: two comments after \(took) at a 200 ms interval")
        #expect(took >= .milliseconds(300) && took < .seconds(10))
    }

    @Test func streamsBeyondTheLimitAre503AndStopFinishesTheOpenOnes() async throws {
        var limits = ConsumerAPIHandler.Limits()
        limits.maxStreams = 1
        let api = try APIFixture(limits: limits)
        let stream = try await blocking { try EventStreamClient(port: api.port, path: "/v1/stream") }
        #expect(await eventuallyAsync { api.handler.openStreams == 1 })
        let refused = try await blocking { try TestClient(port: api.port).get("/v1/stream", headers: [bearer]) }
        #expect(refused.status == 503)
        #expect(try jsonObject(refused)["error"] as? String != nil)
        let stopping = ContinuousClock.now
        await api.stop()
        // The stream ends cleanly: its last chunk, then the close.
        let ended = try await blocking { () -> Bool in
            while try stream.nextChunk() != nil {}
            return try stream.client.waitForClose()
        }
        #expect(ended)
        print("stop with a stream open: \(ContinuousClock.now - stopping)")
        #expect(await eventuallyAsync { api.handler.openStreams == 0 })
    }

    @Test func aStreamReadsNoFurtherAheadOfASlowPeerThanItsBound() async throws {
        var limits = ConsumerAPIHandler.Limits()
        limits.streamHighWater = 64 << 10
        limits.readBatch = 16
        let api = try APIFixture(limits: limits) { $0.maxStreamBacklog = 512 << 10 }
        // Large callbacks, so that a few fill the socket buffers.
        let padding = String(repeating: "p", count: 16_000)
        var callbacks: [NewCallback] = []
        for index in 0..<300 {
            var callback = apiCallback(requestID: "big-\(index)")
            callback.body = Array(#"{"requestId":"big-\#(index)","padding":"\#(padding)"}"#.utf8)
            callbacks.append(callback)
        }
        let ids = try await api.commitAll(callbacks)
        try await api.waitUntilIndexed(ids.last!)
        // A peer that sends its request and then reads nothing for a while, with a small receive buffer.
        let (openWhileIdle, rest) = try await blocking { () -> (Bool, Int) in
            let client = try TestClient(port: api.port, timeout: .seconds(10), receiveBuffer: 4096)
            try client.sendRequest("GET", "/v1/stream", headers: [bearer])
            _ = eventually { api.handler.openStreams == 1 }
            Thread.sleep(forTimeInterval: 2)
            // Still open: the stream stopped reading the store instead of passing the server's cut.
            let open = api.handler.openStreams == 1
            var events = 0
            var parser = ServerSentEventParser()
            _ = try client.readHead()
            while events < 300, let chunk = try client.readChunk() { events += try parser.append(chunk).count }
            return (open, events)
        }
        #expect(openWhileIdle)
        #expect(rest == 300)  // and once it reads, it gets every one
    }
}
