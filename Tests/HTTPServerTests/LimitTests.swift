import Dispatch
import HTTP1
import HTTPServer
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Each configured limit and timeout, over real sockets with small values.
@Suite struct LimitTests {
    @Test func headerSectionTooLargeGets431() throws {
        let configuration = testConfiguration { $0.limits.maxHeaderBytes = 256 }
        try withServer(configuration) { _, port in
            let client = try TestClient(port: port)
            try client.send(request(headers: ["X-Big: " + String(repeating: "a", count: 1000)]))
            let response = try client.readResponse()
            #expect(response.status == 431)
            #expect(response.closes)
            #expect(try client.waitForClose())
        }
    }

    @Test func bodyTooLargeGets413() throws {
        let configuration = testConfiguration { $0.limits.maxBodyBytes = 100 }
        try withServer(configuration) { _, port in
            let client = try TestClient(port: port)
            try client.send(request("POST", "/", body: String(repeating: "b", count: 500)))
            let response = try client.readResponse()
            #expect(response.status == 413)
            #expect(response.closes)
            #expect(try client.waitForClose())
        }
    }

    @Test func chunkedBodyTooLargeGets413() throws {
        let configuration = testConfiguration { $0.limits.maxBodyBytes = 100 }
        try withServer(configuration) { _, port in
            let client = try TestClient(port: port)
            let chunk = String(repeating: "c", count: 80)
            try client.send("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n50\r\n\(chunk)\r\n50\r\n\(chunk)\r\n0\r\n\r\n")
            let response = try client.readResponse()
            #expect(response.status == 413)
            #expect(try client.waitForClose())
        }
    }

    @Test func requestLineTooLongGets414() throws {
        let configuration = testConfiguration { $0.limits.maxRequestLineBytes = 64 }
        try withServer(configuration) { _, port in
            let client = try TestClient(port: port)
            try client.send(request("GET", "/" + String(repeating: "p", count: 200)))
            let response = try client.readResponse()
            #expect(response.status == 414)
            #expect(try client.waitForClose())
        }
    }

    @Test func incompleteHeadGets408AfterTheHeaderTimeout() throws {
        let configuration = testConfiguration { $0.headerReadTimeout = .milliseconds(500) }
        try withServer(configuration) { _, port in
            let client = try TestClient(port: port)
            try client.send("GET / HTTP/1.1\r\nHost: t\r\n")
            let response = try client.readResponse()
            #expect(response.status == 408)
            #expect(response.closes)
            #expect(try client.waitForClose())
        }
    }

    @Test func trickledHeadStillTimesOut() throws {
        // Each byte arrives before the timeout, the whole head does not.
        let configuration = testConfiguration { $0.headerReadTimeout = .milliseconds(600) }
        try withServer(configuration) { _, port in
            let client = try TestClient(port: port)
            var gotTimeout = false
            for byte in "GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".utf8 {
                do { try client.send([byte]) } catch {
                    gotTimeout = true
                    break
                }
                usleep(100_000)
                var probe: UInt8 = 0
                if recv(client.fd, &probe, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) > 0 {
                    gotTimeout = true
                    break
                }
            }
            #expect(gotTimeout)
            #expect(try client.readResponse().status == 408)
        }
    }

    @Test func incompleteBodyGets408AfterTheBodyTimeout() throws {
        let configuration = testConfiguration { $0.bodyReadTimeout = .milliseconds(500) }
        try withServer(configuration) { _, port in
            let client = try TestClient(port: port)
            try client.send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
            let response = try client.readResponse()
            #expect(response.status == 408)
            #expect(try client.waitForClose())
        }
    }

    @Test func idleConnectionIsClosedSilently() throws {
        let configuration = testConfiguration { $0.idleTimeout = .milliseconds(500) }
        try withServer(configuration) { server, port in
            let client = try TestClient(port: port)
            try client.send(request())
            #expect(try client.readResponse().status == 200)
            #expect(try client.waitForClose())
            #expect(eventually { server.openConnections == 0 })
        }
    }

    @Test func silentNewConnectionIsClosedAfterTheHeaderTimeout() throws {
        let configuration = testConfiguration { $0.headerReadTimeout = .milliseconds(500) }
        try withServer(configuration) { _, port in
            let client = try TestClient(port: port)
            #expect(try client.waitForClose())
        }
    }

    @Test func peerThatNeverReadsIsDisconnectedAfterTheWriteTimeout() throws {
        let configuration = testConfiguration { $0.writeTimeout = .milliseconds(500) }
        let big = [UInt8](repeating: 0x41, count: 64 * 1024 * 1024)
        let handler = HTTPClosureHandler { _, _, responder in
            responder.respond(HTTPResponse(status: .ok, body: big))
        }
        try withServer(configuration, handler: handler) { server, port in
            let client = try TestClient(port: port, receiveBuffer: 4096)
            try client.send(request())
            #expect(eventually { server.openConnections == 1 })
            // Never read: the server must give up on its own.
            #expect(eventually(within: .seconds(15)) { server.openConnections == 0 })
        }
    }

    @Test func connectionsBeyondTheLimitAreShed() throws {
        let configuration = testConfiguration { $0.maxConnections = 2 }
        try withServer(configuration) { server, port in
            let first = try TestClient(port: port)
            let second = try TestClient(port: port)
            try first.send(request("GET", "/1"))
            try second.send(request("GET", "/2"))
            #expect(try first.readResponse().status == 200)
            #expect(try second.readResponse().status == 200)
            let third = try TestClient(port: port)
            #expect(try third.waitForClose())
            #expect(eventually { server.openConnections == 2 })
            // The first two still work.
            try first.send(request("GET", "/again"))
            #expect(try first.readResponse().status == 200)
        }
    }

    @Test func invalidConfigurationIsRefusedWithAMessage() {
        let configuration = testConfiguration { $0.maxPipelinedRequests = 0 }
        let server = HTTPServer(configuration: configuration, handler: echoHandler, logger: testLogger)
        #expect(throws: HTTPServerError.invalidConfiguration("maxPipelinedRequests must be positive, got 0")) {
            try server.start()
        }
    }
}
