import HTTP1
import HTTPServer
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Garbage is answered as soon as its first bad byte arrives, over real
/// sockets: the head (or chunk line, or trailer section) is left unfinished
/// and the timeouts are far longer than the client waits, so only an early
/// verdict can produce the 400.
@Suite struct MalformedInputTests {
    static let unfinished: [(String, [UInt8])] = [
        ("control byte in the method", Array("GE\u{1}T / HTTP/1.1\r\n".utf8)),
        ("binary garbage", [0x16, 0x03, 0x01, 0x02, 0x00]),
        ("bad version", Array("GET / HTTP/1.x".utf8)),
        ("invalid byte in a header name", Array("GET / HTTP/1.1\r\nHost: t\r\nX(: y".utf8)),
        ("bad Host", Array("GET / HTTP/1.1\r\nHost: a:1:2".utf8)),
        ("bad chunk extension", Array("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n6d;a b".utf8)),
        ("control byte in the trailers", Array("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA\u{1}".utf8)),
    ]

    @Test(arguments: unfinished)
    func unfinishedGarbageGets400BeforeAnyTimeout(_ name: String, _ bytes: [UInt8]) throws {
        let configuration = testConfiguration {
            $0.headerReadTimeout = .seconds(60)
            $0.bodyReadTimeout = .seconds(60)
        }
        try withServer(configuration) { _, port in
            let client = try TestClient(port: port, timeout: .seconds(5))
            try client.send(bytes)
            let response = try client.readResponse()
            #expect(response.status == 400, "\(name)")
            #expect(response.closes)
            #expect(try client.waitForClose())
        }
    }

    @Test func unknownMethodReachesTheHandlerAndAbsoluteFormItsPath() throws {
        // The parser takes any token as a method and absolute-form as a target;
        // what to answer is the handler's business (501, routing on `path`).
        let handler = HTTPClosureHandler { request, _, responder in
            responder.respond(HTTPResponse(status: .ok, contentType: "text/plain", body: "\(request.head.method) \(request.head.path)"))
        }
        try withServer(handler: handler) { _, port in
            let client = try TestClient(port: port)
            try client.send("BREW http://listener.example.com/callbacks/CarrierService?x HTTP/1.1\r\nHost: listener.example.com\r\n\r\n")
            let response = try client.readResponse()
            #expect(response.status == 200)
            #expect(response.bodyText == "BREW /callbacks/CarrierService")
        }
    }
}
