import Foundation
import Glibc
import TestSupport
import Testing

@testable import ListenerApp

/// The consumer API inside `serve`: its own port beside the callback port, reading what the
/// callback port stored; refused without a token or on the callback port.
@Suite(.serialized) struct ConsumerAPIPartTests {
    @Test func servesWhatTheCallbackPortStoredOnAPortOfItsOwn() async throws {
        let listener = try await InProcessListener {
            $0.api.enabled = true
            $0.api.port = 0
            $0.api.tokens = [Secret("part-token")]
        }
        let port = try await listener.started()
        let apiPort = try #require(listener.service.consumerAPIPort)
        #expect(apiPort != port)
        let requestID = "part-\(UUID().uuidString)"
        let metrics = listener.service.metrics
        // The sockets on threads of their own: the API's waits need the concurrency pool.
        let (stored, answer, unauthorized, onCallbackPort, streamHead, gaugeShown) = try await blocking {
            let stored = try TestClient(port: port).post("/callbacks/CarrierService", json: callbackBody(requestID: requestID))
            let api = try TestClient(port: apiPort)
            let answer = try api.get("/v1/callbacks?requestId=\(requestID)&wait=10", headers: ["Authorization: Bearer part-token"])
            let unauthorized = try api.get("/v1/callbacks")
            // The callback port does not serve the API.
            let onCallbackPort = try TestClient(port: port).get("/v1/callbacks", headers: ["Authorization: Bearer part-token"])
            // An open stream shows in the gauge.
            let stream = try TestClient(port: apiPort)
            try stream.sendRequest("GET", "/v1/stream", headers: ["Authorization: Bearer part-token"])
            let streamHead = try stream.readHead()
            let gaugeShown = eventually {
                String(decoding: metrics.exposition(), as: UTF8.self).contains("consumer_api_open_streams 1")
            }
            return (stored, answer, unauthorized, onCallbackPort, streamHead, gaugeShown)
        }
        #expect(stored.status == 200)
        #expect(answer.status == 200)
        #expect(answer.bodyText.contains(#""requestId":"\#(requestID)""#))
        #expect(unauthorized.status == 401)
        #expect(onCallbackPort.status != 200)
        #expect(streamHead.status == 200)
        #expect(gaugeShown)
        try await listener.stop()
        #expect(!listener.logs.lines.contains { $0.contains("part-token") })
        #expect(listener.logs.lines.contains { $0.contains("consumer API listening") })
    }

    @Test func refusesToStartWithoutAToken() async throws {
        let listener = try await InProcessListener {
            $0.api.enabled = true
            $0.api.port = 0
            $0.api.tokens = []
        }
        await #expect(throws: ListenerError.self) { _ = try await listener.started() }
        guard case .failure(.partFailed(let part, let message)) = await listener.outcome else {
            Issue.record("expected partFailed, got \(await listener.outcome)")
            return
        }
        #expect(part == "consumer API")
        #expect(message.contains("api.tokens"))
        #expect(listener.service.consumerAPIPort == nil)
    }

    @Test func refusesTheCallbackPort() async throws {
        let free = try InProcessListener.occupyPort()
        close(free.fd)
        let listener = try await InProcessListener {
            $0.http.port = free.port
            $0.api.enabled = true
            $0.api.port = free.port
            $0.api.tokens = [Secret("t")]
        }
        await #expect(throws: ListenerError.self) { _ = try await listener.started() }
        guard case .failure(.partFailed(_, let message)) = await listener.outcome else {
            Issue.record("expected partFailed, got \(await listener.outcome)")
            return
        }
        #expect(message.contains("callback port"))
    }

    @Test func isOffUnlessEnabled() async throws {
        let listener = try await InProcessListener { $0.api.tokens = [Secret("t")] }
        _ = try await listener.started()
        #expect(listener.service.consumerAPIPort == nil)
        try await listener.stop()
    }
}
