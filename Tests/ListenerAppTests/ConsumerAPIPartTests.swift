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
        let stored = try TestClient(port: port).post("/callbacks/CarrierService", json: callbackBody(requestID: requestID))
        #expect(stored.status == 200)
        let api = try TestClient(port: apiPort)
        let answer = try api.get("/v1/callbacks?requestId=\(requestID)&wait=10", headers: ["Authorization: Bearer part-token"])
        #expect(answer.status == 200)
        #expect(answer.bodyText.contains(#""requestId":"\#(requestID)""#))
        #expect(try api.get("/v1/callbacks").status == 401)
        // An open stream shows in the gauge.
        let stream = try TestClient(port: apiPort)
        try stream.sendRequest("GET", "/v1/stream", headers: ["Authorization: Bearer part-token"])
        #expect(try stream.readHead().status == 200)
        #expect(
            eventually {
                String(decoding: listener.service.metrics.exposition(), as: UTF8.self).contains("consumer_api_open_streams 1")
            })
        // The callback port does not serve the API.
        #expect(try TestClient(port: port).get("/v1/callbacks", headers: ["Authorization: Bearer part-token"]).status != 200)
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

    @Test func readsItsKeysFromTheConfigurationWithTheTokensSecret() async throws {
        let directory = try TemporaryDirectory()
        let path = try directory.write(
            "config.json", #"{"api": {"enabled": true, "host": "127.0.0.1", "port": 9191, "tokens": ["a", " b "]}}"#)
        let configuration = try ListenerConfiguration(source: try await ConfigurationSource.load(configPath: path, environment: [:]))
        #expect(configuration.api.enabled && configuration.api.host == "127.0.0.1" && configuration.api.port == 9191)
        #expect(configuration.api.tokens.map(\.value) == ["a", "b"])
        #expect("\(configuration.api.tokens)" == "[<redacted>, <redacted>]" || !"\(configuration.api.tokens)".contains("a"))
        let environment = try ListenerConfiguration(
            source: try await ConfigurationSource.load(
                configPath: nil, environment: ["THINGSPACE_LISTENER_API_ENABLED": "true", "THINGSPACE_LISTENER_API_TOKENS": "x,y"]))
        #expect(environment.api.enabled && environment.api.tokens.map(\.value) == ["x", "y"])
        let secrets = try TemporaryDirectory()
        _ = try secrets.write("api-tokens", "from-credentials\n")
        let credentials = try ListenerConfiguration(
            source: try await ConfigurationSource.load(configPath: path, environment: ["CREDENTIALS_DIRECTORY": secrets.path]))
        #expect(credentials.api.tokens.map(\.value) == ["from-credentials"])
    }
}
