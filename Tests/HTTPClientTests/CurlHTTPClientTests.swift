import HTTP1
import HTTPClient
import TestSupport
import Testing

@Suite("libcurl HTTP client")
struct CurlHTTPClientTests {
    @Test func refusedConnectionIsATypedTransportError() throws {
        let socket = try SilentSocket(listening: false)
        let client = CurlHTTPClient(connectTimeout: .seconds(2), totalTimeout: .seconds(3))
        #expect {
            _ = try client.send(.init(method: .get, url: "http://127.0.0.1:\(socket.port)/x"))
        } throws: { error in
            guard let error = error as? CurlTransportError else { return false }
            return error.kind == .couldNotConnect && error.curlCode == 7 && !error.message.isEmpty
        }
    }

    @Test func silentServerTimesOut() throws {
        let socket = try SilentSocket(listening: true)
        let client = CurlHTTPClient(connectTimeout: .seconds(2), totalTimeout: .milliseconds(300))
        #expect {
            _ = try client.send(.init(method: .post, url: "http://127.0.0.1:\(socket.port)/x", body: Array("{}".utf8)))
        } throws: { error in
            (error as? CurlTransportError)?.kind == .timedOut
        }
    }

    @Test func malformedRequestsAreRefusedBeforeSending() {
        let client = CurlHTTPClient()
        let requests: [CurlHTTPClient.Request] = [
            .init(method: .get, url: "file:///etc/passwd"),
            .init(method: .get, url: "http://127.0.0.1/a b"),
            .init(method: .get, url: "http://127.0.0.1/", headers: [(name: "X-A", value: "1\r\nX-Injected: 2")]),
            .init(method: .get, url: "http://127.0.0.1/", headers: [(name: "Bad Name", value: "1")]),
        ]
        for request in requests {
            #expect {
                _ = try client.send(request)
            } throws: { error in
                (error as? CurlTransportError)?.kind == .invalidRequest
            }
        }
    }
}

@Suite("libcurl HTTP client against a loopback server")
struct CurlHTTPClientLoopbackTests {
    @Test func requestAndResponseRoundTrip() throws {
        let server = try LoopbackServer()
        defer { server.stop() }
        let client = CurlHTTPClient()
        let response = try client.send(
            .init(
                method: .put, url: server.url + "/a?b=1",
                headers: [(name: "X-Test", value: "yes"), (name: "Content-Type", value: "text/plain")],
                body: Array("hello".utf8)))
        #expect(response.status == 200)
        #expect(response.body == Array("hello".utf8))
        #expect(response.headerValue("x-seen-method") == "PUT")
        let seen = try #require(server.seen.first)
        #expect(seen.method == "PUT")
        #expect(seen.target == "/a?b=1")
        #expect(seen.headers["X-Test"] == "yes")
        #expect(seen.headers["Expect"] == nil)
    }

    /// Fails with one handle behind a mutex: the second request would not
    /// leave before the first is answered, so never K open at once.
    @Test func severalRequestsAreInFlightAtOnceThroughOneClient() throws {
        let parallel = 4
        let server = try LoopbackServer(holdUntil: parallel)
        defer { server.stop() }
        let client = CurlHTTPClient(maxIdleHandles: 2)
        let url = server.url
        let statuses = onThreads(parallel) { index in
            (try? client.send(.init(method: .get, url: url + "/\(index)")))?.status
        }
        #expect(statuses == Array(repeating: 200, count: parallel))
        #expect(server.maxOpen == parallel)
        #expect(Set(server.seen.map(\.connectionID)).count == parallel)
        // Handles beyond the idle cap were released.
        #expect(client.idleHandleCount == 2)
    }

    @Test func asyncSendsAreInFlightAtOnce() async throws {
        let parallel = 6
        let server = try LoopbackServer(holdUntil: parallel)
        defer { server.stop() }
        let client = CurlHTTPClient()
        let url = server.url
        // More transfers than the cooperative pool has threads: none may block it.
        let statuses = await withTaskGroup(of: Int?.self) { group in
            for index in 0..<parallel {
                group.addTask { (try? await client.send(.init(method: .get, url: url + "/\(index)")))?.status }
            }
            var statuses: [Int?] = []
            for await status in group { statuses.append(status) }
            return statuses
        }
        #expect(statuses == Array(repeating: 200, count: parallel))
        #expect(server.maxOpen == parallel)
    }

    @Test func asyncSendReportsTransportErrors() async throws {
        let socket = try SilentSocket(listening: false)
        let client = CurlHTTPClient(connectTimeout: .seconds(2), totalTimeout: .seconds(3))
        await #expect {
            _ = try await client.send(.init(method: .get, url: "http://127.0.0.1:\(socket.port)/x"))
        } throws: { error in
            (error as? CurlTransportError)?.kind == .couldNotConnect
        }
        await #expect {
            _ = try await client.send(.init(method: .get, url: "ftp://127.0.0.1/x"))
        } throws: { error in
            (error as? CurlTransportError)?.kind == .invalidRequest
        }
    }

    @Test func sequentialRequestsReuseOneConnection() throws {
        let server = try LoopbackServer()
        defer { server.stop() }
        let client = CurlHTTPClient()
        for index in 0..<5 {
            let response = try client.send(.init(method: index.isMultiple(of: 2) ? .get : .post, url: server.url + "/\(index)", body: []))
            #expect(response.status == 200)
        }
        let connections = server.seen.map(\.connectionID)
        #expect(connections.count == 5)
        #expect(Set(connections).count == 1)
        #expect(client.idleHandleCount == 1)
    }

    @Test func reuseSurvivesConcurrentUse() throws {
        // After a burst on several handles, sequential calls still share a connection.
        let server = try LoopbackServer(holdUntil: 3)
        defer { server.stop() }
        let client = CurlHTTPClient()
        let url = server.url
        _ = onThreads(3) { index in (try? client.send(.init(method: .get, url: url + "/burst\(index)")))?.status }
        for index in 0..<3 { _ = try client.send(.init(method: .get, url: url + "/after\(index)")) }
        let after = server.seen.filter { $0.target.hasPrefix("/after") }.map(\.connectionID)
        #expect(after.count == 3)
        #expect(Set(after).count == 1)
        #expect(Set(server.seen.map(\.connectionID)).count == 3)
    }

    @Test func retryAfterIsReadFromTheResponse() throws {
        let server = try LoopbackServer()
        defer { server.stop() }
        let client = CurlHTTPClient()
        let response = try client.send(.init(method: .get, url: server.url, headers: [(name: "X-Answer-Retry-After", value: "12")]))
        #expect(response.retryAfter == .seconds(12))
    }

    @Test func responseLargerThanTheLimitFails() throws {
        let server = try LoopbackServer()
        defer { server.stop() }
        let client = CurlHTTPClient(maxResponseBytes: 8)
        #expect {
            _ = try client.send(.init(method: .post, url: server.url, body: Array(repeating: UInt8(ascii: "x"), count: 64)))
        } throws: { error in
            (error as? CurlTransportError)?.kind == .responseTooLarge
        }
        // The handle is usable again afterwards.
        #expect(try client.send(.init(method: .post, url: server.url, body: Array("small".utf8))).status == 200)
    }
}

/// `send(_:completion:)`, as the delivery workers use it: the completion on the transfer's thread.
@Suite("libcurl HTTP client, completion handlers")
struct CurlCompletionSendTests {
    func send(_ client: CurlHTTPClient, _ request: CurlHTTPClient.Request) async -> Result<CurlHTTPClient.Response, CurlTransportError> {
        await withCheckedContinuation { done in client.send(request) { done.resume(returning: $0) } }
    }

    @Test func manyTransfersAreInFlightAtOnceAndEachGetsItsOwnAnswer() async throws {
        let parallel = 40
        let server = try LoopbackServer(holdUntil: parallel)
        defer { server.stop() }
        let client = CurlHTTPClient(maxIdleHandles: parallel)
        let url = server.url
        let bodies = await withTaskGroup(of: (Int, String?).self) { group in
            for index in 0..<parallel {
                group.addTask {
                    let result = await send(client, .init(method: .post, url: url + "/\(index)", body: Array("body \(index)".utf8)))
                    return (index, (try? result.get()).map { String(decoding: $0.body, as: UTF8.self) })
                }
            }
            var bodies: [Int: String?] = [:]
            for await (index, body) in group { bodies[index] = body }
            return bodies
        }
        #expect(server.maxOpen == parallel, "all open at once")
        for index in 0..<parallel { #expect(bodies[index] == "body \(index)", "the echo of request \(index)") }
        #expect(Set(server.seen.map(\.target)) == Set((0..<parallel).map { "/\($0)" }))
        // The connections are kept: a second round opens none.
        let connections = Set(server.seen.map(\.connectionID))
        for index in 0..<10 { _ = await send(client, .init(method: .get, url: url + "/again\(index)")) }
        #expect(Set(server.seen.map(\.connectionID)).isSubset(of: connections))
    }

    @Test func transportErrorsAndTimeoutsComeBackTyped() async throws {
        let refused = try SilentSocket(listening: false)
        let silent = try SilentSocket(listening: true)
        let client = CurlHTTPClient(connectTimeout: .seconds(2), totalTimeout: .milliseconds(300))
        let failures = [
            await send(client, .init(method: .get, url: "http://127.0.0.1:\(refused.port)/x")),
            await send(client, .init(method: .post, url: "http://127.0.0.1:\(silent.port)/x", body: Array("{}".utf8))),
            await send(client, .init(method: .get, url: "ftp://127.0.0.1/x")),
        ].map { result -> CurlTransportError.Kind? in
            if case .failure(let error) = result { return error.kind }
            return nil
        }
        #expect(failures == [.couldNotConnect, .timedOut, .invalidRequest])
    }
}
