import CallbackStore
import Delivery
import Foundation
import HTTP1
import SQLiteStore
import Synchronization
import TestSupport
import Testing

/// `/v1/callbacks`: tokens, routes, parameters, pages and their cursor, and the long poll, through
/// the real server and a real journal store.
@Suite struct ConsumerAPITests {
    @Test func aRequestWithoutAValidBearerTokenIs401() async throws {
        let api = try APIFixture()
        let responses = try await blocking {
            let client = try TestClient(port: api.port)
            return [
                try client.get("/v1/callbacks"),
                try client.get("/v1/callbacks", headers: ["Authorization: Bearer wrong-token"]),
                try client.get("/v1/callbacks", headers: ["Authorization: Basic dGVzdDp0ZXN0"]),
                try client.get("/v1/callbacks", headers: ["Authorization: Bearer "]),
                try client.get("/v1/callbacks", headers: ["Authorization: Bearer \(apiToken)x"]),
                try client.get("/v1/callbacks", headers: ["Authorization: Bearer \(apiToken)", "Authorization: Bearer \(apiToken)"]),
                try client.get("/no/such/path"),  // the token first: no route is revealed
                try client.get("/v1/stream"),
            ]
        }
        for (index, response) in responses.enumerated() {
            #expect(response.status == 401, "request \(index)")
            #expect(response.header("WWW-Authenticate")?.hasPrefix("Bearer") == true, "request \(index)")
            #expect(try jsonObject(response)["error"] as? String != nil)
        }
        #expect(responses[0].header("WWW-Authenticate")?.contains("invalid_token") == false)
        #expect(responses[1].header("WWW-Authenticate")?.contains(#"error="invalid_token""#) == true)
        // Either configured token works, the scheme in any case.
        let accepted = try await blocking {
            let client = try TestClient(port: api.port)
            return [
                try client.get("/v1/callbacks", headers: [bearer]).status,
                try client.get("/v1/callbacks", headers: ["Authorization: bearer another-token"]).status,
            ]
        }
        #expect(accepted == [200, 200])
    }

    @Test func routesMethodsAndMissingCallbacks() async throws {
        let api = try APIFixture()
        let id = try await api.commit(apiCallback()).receipt.id
        try await api.waitUntilIndexed(id)
        let expected = try api.dataObject(id)
        let (one, missing, unknown, post, brew, head) = try await blocking {
            let client = try TestClient(port: api.port)
            return (
                try client.get("/v1/callbacks/\(id)", headers: [bearer]),
                try client.get("/v1/callbacks/\(id + 1)", headers: [bearer]),
                try client.get("/v1/other", headers: [bearer]),
                try client.exchange("POST", "/v1/callbacks", headers: [bearer], body: Array("{}".utf8)),
                try client.exchange("BREW", "/v1/callbacks", headers: [bearer]),
                try { () throws -> ClientResponse in
                    try client.sendRequest("HEAD", "/v1/callbacks/\(id)", headers: [bearer])
                    return try client.readHead()
                }()
            )
        }
        #expect(one.status == 200)
        #expect(one.header("Content-Type") == "application/json")
        #expect(one.body == expected)  // exactly the export's object
        #expect(missing.status == 404)
        #expect(try jsonObject(missing)["parameter"] as? String == "id")
        #expect(unknown.status == 404)
        #expect(post.status == 405 && post.header("Allow") == "GET, HEAD")
        #expect(brew.status == 501)
        #expect(head.status == 200 && head.header("Content-Length") == String(expected.count))
    }

    @Test func badParametersAre400NamingTheParameter() async throws {
        let api = try APIFixture()
        let cases: [(String, String)] = [
            ("/v1/callbacks?limit=0", "limit"), ("/v1/callbacks?limit=1001", "limit"), ("/v1/callbacks?limit=ten", "limit"),
            ("/v1/callbacks?limit=-5", "limit"), ("/v1/callbacks?after=-1", "after"), ("/v1/callbacks?after=1e3", "after"),
            ("/v1/callbacks?after=99999999999999999999", "after"), ("/v1/callbacks?wait=61", "wait"), ("/v1/callbacks?wait=-1", "wait"),
            ("/v1/callbacks?wait=soon", "wait"), ("/v1/callbacks?includeDuplicates=yes", "includeDuplicates"),
            ("/v1/callbacks?service=", "service"), ("/v1/callbacks?requestId=", "requestId"), ("/v1/callbacks?deviceId=", "deviceId"),
            ("/v1/callbacks?requestID=abc", "requestID"), ("/v1/callbacks?limit=1&limit=2", "limit"),
            ("/v1/callbacks?requestId=%C3%28", "requestId"), ("/v1/callbacks/abc", "id"), ("/v1/callbacks/0", "id"),
            ("/v1/callbacks/1?limit=1", "limit"), ("/v1/stream?limit=5", "limit"), ("/v1/stream?wait=5", "wait"),
            ("/v1/stream?after=x", "after"),
        ]
        let responses = try await blocking {
            let client = try TestClient(port: api.port)
            return try cases.map { try client.get($0.0, headers: [bearer]) }
        }
        for ((target, parameter), response) in zip(cases, responses) {
            #expect(response.status == 400, "\(target)")
            let body = try jsonObject(response)
            #expect(body["parameter"] as? String == parameter, "\(target): \(response.bodyText)")
            #expect((body["error"] as? String)?.hasPrefix(parameter) == true, "\(target): \(response.bodyText)")
        }
        let lastEventID = try await blocking {
            try TestClient(port: api.port).get("/v1/stream", headers: [bearer, "Last-Event-ID: twelve"])
        }
        #expect(lastEventID.status == 400)
        #expect(try jsonObject(lastEventID)["parameter"] as? String == "Last-Event-ID")
    }

    @Test func aPageHoldsTheExportsObjectsInIDOrderAndItsNextSkipsWhatWasExamined() async throws {
        let api = try APIFixture()
        let ids = try await api.commitAll([
            apiCallback(requestID: "x", device: "dev-a", key: "same"),
            apiCallback("DeviceUsage", requestID: "y", device: "dev-b"),
            apiCallback(requestID: "x", device: "dev-a", key: "same"),  // a repeat of the first
            apiCallback(requestID: "z", device: "dev-a"),
        ])
        try await api.waitUntilIndexed(ids[3])
        let objects = try ids.map { try api.dataObject($0) }
        let responses = try await blocking {
            let client = try TestClient(port: api.port)
            return try [
                "/v1/callbacks", "/v1/callbacks?includeDuplicates=true", "/v1/callbacks?limit=2", "/v1/callbacks?after=\(ids[1])&limit=1",
                "/v1/callbacks?requestId=y", "/v1/callbacks?requestId=y&after=\(ids[3])", "/v1/callbacks?service=DeviceUsage",
                "/v1/callbacks?deviceId=dev-a&includeDuplicates=true", "/v1/callbacks?requestId=x&includeDuplicates=false",
                "/v1/callbacks?requestId=nothing", "/v1/callbacks?service=Carrier%53ervice&deviceId=dev-a",
            ].map { try client.get($0, headers: [bearer]) }
        }
        #expect(responses.allSatisfy { $0.status == 200 })
        // The whole answer, byte for byte: the export's objects and the cursor.
        let firsts = [0, 1, 3].map { String(decoding: objects[$0], as: UTF8.self) }.joined(separator: ",")
        #expect(responses[0].bodyText == #"{"callbacks":[\#(firsts)],"next":\#(ids[3])}"#)
        #expect(try page(responses[1]) == (ids, ids[3]))
        #expect(try page(responses[2]) == ([ids[0], ids[1]], ids[1]))
        #expect(try page(responses[3]) == ([ids[3]], ids[3]))  // the repeat is skipped, and passed
        #expect(try page(responses[4]) == ([ids[1]], ids[3]))  // next: past every id examined
        #expect(try page(responses[5]) == ([], ids[3]))
        #expect(try page(responses[6]) == ([ids[1]], ids[3]))
        #expect(try page(responses[7]) == ([ids[0], ids[2], ids[3]], ids[3]))
        #expect(try page(responses[8]) == ([ids[0]], ids[3]))
        #expect(try page(responses[9]) == ([], ids[3]))
        #expect(try page(responses[10]) == ([ids[0], ids[3]], ids[3]))
    }

    @Test func aLongPollAnswersAsSoonAsAMatchingCallbackIsStored() async throws {
        let api = try APIFixture()
        let before = try await api.commitAll([apiCallback(requestID: "earlier")])
        try await api.waitUntilIndexed(before[0])
        let requestID = "req-\(UUID().uuidString)"
        let answer = Task {
            try await blocking { () -> (ClientResponse, ContinuousClock.Instant) in
                let client = try TestClient(port: api.port, timeout: .seconds(30))
                let response = try client.get("/v1/callbacks?requestId=\(requestID)&wait=20", headers: [bearer])
                return (response, ContinuousClock.now)
            }
        }
        #expect(await eventuallyAsync { api.handler.waitingLongPolls == 1 })
        // Another request's callback does not end the wait…
        _ = try await api.commit(apiCallback(requestID: "someone-else"))
        try await Task.sleep(for: .milliseconds(300))
        #expect(api.handler.waitingLongPolls == 1)
        // …the awaited one does.
        let (receipt, committedAt) = try await api.commit(apiCallback(requestID: requestID))
        let (response, answeredAt) = try await answer.value
        let delay = answeredAt - committedAt
        print("long poll: answered \(delay) after the commit completed (the callback's 200)")
        #expect(delay < .seconds(2))
        #expect(try page(response) == ([receipt.id], receipt.id))
        #expect(await eventuallyAsync { api.handler.waitingLongPolls == 0 })
    }

    @Test func aLongPollAnswersEmptyWhenItsTimeIsUpWithTheCursorPastWhatArrived() async throws {
        let api = try APIFixture()
        let ids = try await api.commitAll([apiCallback(requestID: "a")])
        try await api.waitUntilIndexed(ids[0])
        let started = ContinuousClock.now
        let answer = Task {
            try await blocking { try TestClient(port: api.port).get("/v1/callbacks?requestId=wanted&wait=1.5", headers: [bearer]) }
        }
        #expect(await eventuallyAsync { api.handler.waitingLongPolls == 1 })
        let other = try await api.commit(apiCallback(requestID: "not-wanted")).receipt.id
        let response = try await answer.value
        let took = ContinuousClock.now - started
        print("long poll with nothing matching: answered after \(took) (wait=1.5)")
        #expect(took >= .seconds(1.4) && took < .seconds(10))
        #expect(try page(response) == ([], other))  // the non-matching arrival is behind the cursor
    }

    @Test func longPollsBeyondTheLimitAre503AndStopAnswersTheWaitingAtOnce() async throws {
        var limits = ConsumerAPIHandler.Limits()
        limits.maxLongPolls = 1
        let api = try APIFixture(limits: limits)
        let waiting = Task {
            try await blocking { try TestClient(port: api.port, timeout: .seconds(30)).get("/v1/callbacks?wait=30", headers: [bearer]) }
        }
        #expect(await eventuallyAsync { api.handler.waitingLongPolls == 1 })
        let refused = try await blocking { try TestClient(port: api.port).get("/v1/callbacks?wait=30", headers: [bearer]) }
        #expect(refused.status == 503 && refused.header("Retry-After") != nil)
        // Without `wait` there is no slot to take.
        #expect(try await blocking { try TestClient(port: api.port).get("/v1/callbacks", headers: [bearer]) }.status == 200)
        let stopping = ContinuousClock.now
        await api.stop()
        let answered = try await waiting.value
        #expect(answered.status == 200)
        #expect(try page(answered) == ([], 0))
        print("stop with a long poll waiting: \(ContinuousClock.now - stopping)")
        #expect(ContinuousClock.now - stopping < .seconds(5))
    }

    @Test func aLargePageIsCutAtTheResponseBoundAndGoesOnFromItsNext() async throws {
        var limits = ConsumerAPIHandler.Limits()
        limits.maxResponseBytes = 2_000
        let api = try APIFixture(limits: limits)
        let ids = try await api.commitAll((0..<20).map { apiCallback(requestID: "bulk-\($0)") })
        try await api.waitUntilIndexed(ids.last!)
        let pages = try await blocking { () -> [(ids: [Int64], next: Int64)] in
            let client = try TestClient(port: api.port)
            var cursor: Int64 = 0
            var pages: [(ids: [Int64], next: Int64)] = []
            while pages.count < 50 {
                let response = try client.get("/v1/callbacks?after=\(cursor)&limit=1000", headers: [bearer])
                #expect(response.body.count < 2_000 + 600)
                let found = try page(response)
                pages.append(found)
                if found.ids.isEmpty { break }
                cursor = found.next
            }
            return pages
        }
        #expect(pages.count > 2)
        #expect(pages.flatMap(\.ids) == ids)
    }
}
