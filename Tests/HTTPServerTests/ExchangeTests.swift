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

/// Requests and responses over real sockets: keep-alive, pipelining, bodies,
/// 100-continue, errors.
@Suite struct ExchangeTests {
    @Test func keepAliveServesTwoRequestsOnOneConnection() throws {
        let handler = HTTPClosureHandler { request, context, responder in
            responder.respond(HTTPResponse(status: .ok, contentType: "text/plain", body: "\(context.connectionID) \(request.head.target)"))
        }
        try withServer(handler: handler) { server, port in
            let client = try TestClient(port: port)
            try client.send(request("GET", "/one"))
            let first = try client.readResponse()
            try client.send(request("GET", "/two"))
            let second = try client.readResponse()
            #expect(first.status == 200 && second.status == 200)
            #expect(!first.closes && !second.closes)
            let firstID = first.bodyText.split(separator: " ").first
            let secondID = second.bodyText.split(separator: " ").first
            #expect(firstID == secondID)
            #expect(first.bodyText.hasSuffix("/one") && second.bodyText.hasSuffix("/two"))
            #expect(server.openConnections == 1)
        }
    }

    @Test func pipelinedResponsesKeepRequestOrderWhenAnsweredOutOfOrder() throws {
        // The first request is answered last, from other queues.
        let handler = HTTPClosureHandler { request, _, responder in
            let delays = ["/1": 300, "/2": 150, "/3": 0]
            let delay = delays[request.head.target] ?? 0
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(delay)) {
                responder.respond(HTTPResponse(status: .ok, contentType: "text/plain", body: request.head.target))
            }
        }
        try withServer(handler: handler) { _, port in
            let client = try TestClient(port: port)
            try client.send(request("GET", "/1") + request("GET", "/2") + request("GET", "/3"))
            let bodies = try (0..<3).map { _ in try client.readResponse().bodyText }
            #expect(bodies == ["/1", "/2", "/3"])
        }
    }

    @Test func chunkedBodyIsDechunked() throws {
        try withServer { _, port in
            let client = try TestClient(port: port)
            try client.send(
                "POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            let response = try client.readResponse()
            #expect(response.status == 200)
            #expect(response.bodyText == "POST /c hello world")
        }
    }

    @Test func expectContinueGets100ThenTheResponse() throws {
        try withServer { _, port in
            let client = try TestClient(port: port)
            try client.send("POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
            let interim = try client.readResponse()
            #expect(interim.status == 100)
            try client.send("ping")
            let final = try client.readResponse()
            #expect(final.status == 200)
            #expect(final.bodyText == "POST /e ping")
        }
    }

    @Test func expectContinueOverTheBodyLimitGets413WithoutTheBody() throws {
        let configuration = testConfiguration { $0.limits.maxBodyBytes = 1024 }
        try withServer(configuration) { _, port in
            let client = try TestClient(port: port)
            try client.send("POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
            let response = try client.readResponse()
            #expect(response.status == 413)
            #expect(response.closes)
            #expect(try client.waitForClose())
        }
    }

    @Test func unsupportedExpectationGets417() throws {
        try withServer { _, port in
            let client = try TestClient(port: port)
            try client.send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: foo\r\n\r\nhi")
            let response = try client.readResponse()
            #expect(response.status == 417)
            #expect(response.closes)
            #expect(try client.waitForClose())
        }
    }

    @Test func parseErrorGetsItsStatusConnectionCloseAndAClose() throws {
        try withServer { _, port in
            let client = try TestClient(port: port)
            try client.send("GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n")
            let response = try client.readResponse()
            #expect(response.status == 400)
            #expect(response.closes)
            #expect(try client.waitForClose())
        }
    }

    @Test func parseErrorAfterAGoodRequestAnswersBothInOrder() throws {
        try withServer { _, port in
            let client = try TestClient(port: port)
            try client.send(request("GET", "/ok") + "NOT A REQUEST\r\n\r\n")
            let first = try client.readResponse()
            let second = try client.readResponse()
            #expect(first.status == 200 && !first.closes)
            #expect(second.status == 400 && second.closes)
            #expect(try client.waitForClose())
        }
    }

    @Test func connectionCloseRequestIsTheLast() throws {
        try withServer { _, port in
            let client = try TestClient(port: port)
            try client.send(request("GET", "/a", headers: ["Connection: close"]) + request("GET", "/b"))
            let response = try client.readResponse()
            #expect(response.status == 200 && response.closes)
            #expect(try client.waitForClose())
        }
    }

    @Test func http10WithoutKeepAliveCloses() throws {
        try withServer { _, port in
            let client = try TestClient(port: port)
            try client.send("GET /old HTTP/1.0\r\n\r\n")
            let response = try client.readResponse()
            #expect(response.status == 200)
            #expect(try client.waitForClose())
        }
    }

    @Test func headRequestGetsHeadersWithoutBody() throws {
        try withServer { _, port in
            let client = try TestClient(port: port)
            try client.send(request("HEAD", "/h") + request("GET", "/after"))
            // readResponse would read the HEAD's Content-Length as a body:
            // the next response's bytes must come right after the head.
            var head = [UInt8]()
            while !head.suffix(4).elementsEqual([13, 10, 13, 10]) {
                var byte: UInt8 = 0
                guard recv(client.fd, &byte, 1, 0) == 1 else {
                    Issue.record("connection ended")
                    return
                }
                head.append(byte)
            }
            let headText = String(decoding: head, as: UTF8.self)
            #expect(headText.hasPrefix("HTTP/1.1 200"))
            #expect(headText.contains("Content-Length: 8"))  // "HEAD /h "
            let next = try client.readResponse()
            #expect(next.bodyText == "GET /after ")
        }
    }

    @Test func secondAnswerToARequestIsIgnored() throws {
        let handler = HTTPClosureHandler { request, _, responder in
            responder.respond(HTTPResponse(status: .ok, contentType: "text/plain", body: "first \(request.head.target)"))
            responder.respond(HTTPResponse(status: .internalServerError, contentType: "text/plain", body: "second"))
        }
        try withServer(handler: handler) { _, port in
            let client = try TestClient(port: port)
            try client.send(request("GET", "/a"))
            let first = try client.readResponse()
            try client.send(request("GET", "/b"))
            let second = try client.readResponse()
            #expect(first.bodyText == "first /a")
            #expect(second.bodyText == "first /b")
        }
    }

    @Test func answerAfterTheConnectionDiedIsDiscarded() throws {
        let received = DispatchSemaphore(value: 0)
        let answered = DispatchSemaphore(value: 0)
        let handler = HTTPClosureHandler { request, _, responder in
            if request.head.target == "/late" {
                received.signal()
                DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(300)) {
                    responder.respond(HTTPResponse(status: .ok))
                    answered.signal()
                }
            } else {
                responder.respond(HTTPResponse(status: .ok, contentType: "text/plain", body: "alive"))
            }
        }
        try withServer(handler: handler) { server, port in
            do {
                let client = try TestClient(port: port)
                try client.send(request("GET", "/late"))
                #expect(received.wait(timeout: .now() + 5) == .success)
                client.reset()
            }
            #expect(answered.wait(timeout: .now() + 5) == .success)
            let client = try TestClient(port: port)
            try client.send(request("GET", "/next"))
            #expect(try client.readResponse().bodyText == "alive")
            #expect(eventually { server.openConnections == 1 })
        }
    }

    @Test func halfClosedClientStillGetsItsResponses() throws {
        // Answers after the EOF has arrived, so the server knows the last one is last.
        let handler = HTTPClosureHandler { request, _, responder in
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(200)) {
                responder.respond(HTTPResponse(status: .ok, contentType: "text/plain", body: "GET \(request.head.target) "))
            }
        }
        try withServer(handler: handler) { _, port in
            let client = try TestClient(port: port)
            try client.send(request("GET", "/1") + request("GET", "/2"))
            client.shutdownWrite()
            #expect(try client.readResponse().bodyText == "GET /1 ")
            let last = try client.readResponse()
            #expect(last.bodyText == "GET /2 ")
            #expect(last.closes)
            #expect(try client.waitForClose())
        }
    }

    @Test func eofMidRequestClosesWithoutResponse() throws {
        try withServer { server, port in
            let client = try TestClient(port: port)
            try client.send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
            client.shutdownWrite()
            #expect(try client.waitForClose())
            #expect(eventually { server.openConnections == 0 })
        }
    }

    @Test func clientResetMidBodyLeavesTheServerServing() throws {
        try withServer { server, port in
            for _ in 0..<5 {
                let client = try TestClient(port: port)
                try client.send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + String(repeating: "x", count: 5000))
                client.reset()
            }
            #expect(eventually { server.openConnections == 0 })
            let client = try TestClient(port: port)
            try client.send(request("POST", "/after", body: "ok"))
            #expect(try client.readResponse().bodyText == "POST /after ok")
        }
    }

    @Test func contextCarriesThePeerAddressAndPort() throws {
        let handler = HTTPClosureHandler { _, context, responder in
            responder.respond(HTTPResponse(status: .ok, contentType: "text/plain", body: "\(context.remoteAddress) \(context.remotePort)"))
        }
        try withServer(handler: handler) { _, port in
            let client = try TestClient(port: port)
            try client.send(request())
            #expect(try client.readResponse().bodyText == "127.0.0.1 \(client.localPort)")
        }
    }

    @Test func pipeliningBeyondTheLimitIsServedInOrder() throws {
        let configuration = testConfiguration { $0.maxPipelinedRequests = 2 }
        let handler = HTTPClosureHandler { request, _, responder in
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(10)) {
                responder.respond(HTTPResponse(status: .ok, contentType: "text/plain", body: request.head.target))
            }
        }
        try withServer(configuration, handler: handler) { _, port in
            let client = try TestClient(port: port)
            try client.send((0..<10).map { request("GET", "/\($0)") }.joined())
            let bodies = try (0..<10).map { _ in try client.readResponse().bodyText }
            #expect(bodies == (0..<10).map { "/\($0)" })
        }
    }
}
