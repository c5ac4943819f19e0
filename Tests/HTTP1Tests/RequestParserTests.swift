import HTTP1
import Testing

/// Valid inputs: each must parse, and identically however it is split.
let validRequests: [String] = [
    "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "GET /callbacks?id=42&x=%2F HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: t/1\r\nAccept: */*\r\n\r\n",
    "POST /cb HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"a\":\"hello\"}",
    "POST /cb HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n6 ; x\r\n world\r\n0\r\nChecksum: abc\r\nX-Trailer:  two \r\n\r\n",
    "POST /cb HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
    "GET / HTTP/1.0\r\n\r\n",
    "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    "GET http://example.com/a?b HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
    "GET / HTTP/1.9\r\nHost: h\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\nabcde",
    "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    "GET / HTTP/1.1\r\nHost:\r\nX-Empty:\r\nX-Tabs:\t a \t\r\nX-Obs-Text: caf\u{E9}\r\n\r\n",
    // Chunk extensions (RFC 9112 §7.1.1), accepted and ignored.
    "POST /cb HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5 ; a = \"q\\\"x\"\r\nhello\r\n1;a;b=c\t;\td=\"\"\r\n!\r\n0;last\r\n\r\n",
    // Host values (RFC 3986 uri-host [":" port]).
    "GET / HTTP/1.1\r\nHost: [::1]:9001\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: [2001:db8::ffff:192.0.2.1]\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: [v1.fe:x]\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: 192.0.2.1:\r\n\r\n",
    "GET / HTTP/1.1\r\nHost:  %41b-c.d_e~!$&'()*+,;=  \r\n\r\n",
    // Absolute-form targets.
    "POST http://listener.example.com/callbacks/CarrierService HTTP/1.1\r\nHost: listener.example.com\r\nContent-Length: 0\r\n\r\n",
    "GET HTTPS://[::1]:8443?x=1 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n",
    // Pipelined: three requests of each framing in one buffer.
    "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
        + "POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody"
        + "POST /3 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        + "GET /4 HTTP/1.0\r\n\r\n",
]

@Suite struct RequestParserTests {
    @Test(arguments: validRequests)
    func validRequestParsesIdenticallyAtEverySplit(_ text: String) {
        let outcome = parseEverySplit(text)
        #expect(outcome.error == nil)
        #expect(!outcome.requests.isEmpty)
        #expect(outcome.heads.count == outcome.requests.count)
        #expect(outcome.endedIdle)
    }

    @Test func simpleGet() throws {
        let outcome = parse("GET /status?verbose=1 HTTP/1.1\r\nHost: example.com\r\nAccept:  */* \r\n\r\n")
        let request = try #require(outcome.requests.first)
        #expect(outcome.events.count == 2)
        #expect(outcome.events.first == .head(request.head))
        #expect(request.head.method == "GET")
        #expect(request.head.target == "/status?verbose=1")
        #expect(request.head.path == "/status")
        #expect(request.head.version == .http1_1)
        #expect(request.head.headers.pairs == ["Host: example.com", "Accept: */*"])
        #expect(request.head.keepAlive)
        #expect(request.head.contentLength == 0)
        #expect(!request.head.isChunked)
        #expect(request.head.expectation == .none)
        #expect(request.body.isEmpty)
        #expect(request.trailers.count == 0)
    }

    @Test func contentLengthBody() throws {
        let outcome = parse("POST /cb HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world")
        let request = try #require(outcome.requests.first)
        #expect(request.head.contentLength == 11)
        #expect(request.body == Array("hello world".utf8))
    }

    @Test func chunkedBodyWithExtensionsAndTrailers() throws {
        let outcome = parse(validRequests[3])
        let request = try #require(outcome.requests.first)
        #expect(request.head.isChunked)
        #expect(request.head.contentLength == nil)
        #expect(request.body == Array("hello world".utf8))
        #expect(request.trailers.pairs == ["Checksum: abc", "X-Trailer: two"])
    }

    @Test func headIsEmittedBeforeTheBodyArrives() throws {
        var parser = HTTPRequestParser()
        parser.append(Array("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n".utf8))
        guard case .head(let head) = try parser.next() else {
            Issue.record("expected a head")
            return
        }
        #expect(head.expectation == .continue100)
        #expect(parser.isReadingBody)
        #expect(!parser.isIdle)
        #expect(try parser.next() == nil)
        parser.append(Array("ab".utf8))
        #expect(try parser.next() == nil)
        #expect(parser.bufferedByteCount == 2)
        parser.append(Array("c".utf8))
        let event = try parser.next()
        #expect(event == .request(HTTPRequest(head: head, body: Array("abc".utf8))))
        #expect(!parser.isReadingBody)
        #expect(parser.isIdle)
        #expect(try parser.next() == nil)
    }

    @Test func chunkedHeadIsEmittedBeforeAnyChunk() throws {
        var parser = HTTPRequestParser()
        parser.append(Array("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".utf8))
        guard case .head(let head) = try parser.next() else {
            Issue.record("expected a head")
            return
        }
        #expect(head.isChunked)
        #expect(parser.isReadingBody)
        #expect(try parser.next() == nil)
    }

    @Test func idleAndBufferedStateBetweenRequests() throws {
        var parser = HTTPRequestParser()
        #expect(parser.isIdle)
        #expect(!parser.isReadingBody)
        #expect(parser.bufferedByteCount == 0)
        parser.append(Array("GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /next".utf8))
        #expect(!parser.isIdle)
        guard case .head = try parser.next() else {
            Issue.record("expected a head")
            return
        }
        guard case .request = try parser.next() else {
            Issue.record("expected a request")
            return
        }
        #expect(try parser.next() == nil)
        #expect(!parser.isIdle, "part of the next request is buffered")
        #expect(!parser.isReadingBody)
        #expect(parser.bufferedByteCount == "GET /next".utf8.count)
    }

    @Test func pipelinedRequestsComeOutInOrder() {
        let outcome = parse(validRequests.last ?? "")
        #expect(outcome.error == nil)
        #expect(outcome.requests.map(\.head.target) == ["/1", "/2", "/3", "/4"])
        #expect(outcome.requests.map(\.body) == [[], Array("body".utf8), Array("abc".utf8), []])
        #expect(outcome.requests.map(\.head.keepAlive) == [true, true, true, false])
        // Events alternate head, request.
        for (index, event) in outcome.events.enumerated() {
            switch event {
            case .head: #expect(index % 2 == 0)
            case .request: #expect(index % 2 == 1)
            }
        }
    }

    @Test func manyPipelinedRequestsInOddChunksSurviveBufferCompaction() {
        var stream: [UInt8] = []
        var expectedBodies: [[UInt8]] = []
        for index in 0..<600 {
            let body = Array(String(repeating: "x", count: index % 97).utf8)
            expectedBodies.append(body)
            if index % 3 == 0 {
                stream += Array("POST /\(index) HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
                if !body.isEmpty { stream += Array("\(String(body.count, radix: 16))\r\n".utf8) + body + [13, 10] }
                stream += Array("0\r\n\r\n".utf8)
            } else {
                stream += Array("POST /\(index) HTTP/1.1\r\nHost: h\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body
            }
        }
        for chunk in [1, 7, 1000, 5003, 70000] {
            let cuts = Array(stride(from: chunk, to: stream.count, by: chunk))
            let outcome = parse(stream, cuts: cuts)
            #expect(outcome.error == nil)
            #expect(outcome.requests.map(\.body) == expectedBodies, "chunk size \(chunk)")
            #expect(outcome.requests.map(\.head.target) == (0..<600).map { "/\($0)" })
            #expect(outcome.endedIdle)
        }
    }

    @Test func optionalWhitespaceAroundValuesIsTrimmed() throws {
        let request = try #require(parse(validRequests[13]).requests.first)
        #expect(request.head.headers.pairs == ["Host: ", "X-Empty: ", "X-Tabs: a", "X-Obs-Text: caf\u{E9}"])
    }

    @Test func obsTextThatIsNotUTF8IsKeptAsReplacementCharacters() throws {
        let bytes = Array("GET / HTTP/1.1\r\nHost: h\r\nX: a".utf8) + [0xFF, 0xC3] + Array("b\r\n\r\n".utf8)
        let request = try #require(parseEverySplit(bytes).requests.first)
        #expect(request.head.headers["X"] == "a\u{FFFD}\u{FFFD}b")
    }

    @Test func bodyOfOneMebibyteAtTheDefaultLimit() throws {
        let body = (0..<(1024 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let fixed = Array("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body
        let chunk =
            Array("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n80000\r\n".utf8)
            + body[..<524_288] + Array("\r\n80000\r\n".utf8) + body[524_288...] + Array("\r\n0\r\n\r\n".utf8)
        for input in [fixed, chunk] {
            let cuts = Array(stride(from: 1000, to: input.count, by: 65_536))
            let outcome = parse(input, cuts: cuts)
            #expect(outcome.error == nil)
            #expect(outcome.requests.first?.body == body)
        }
        let over = parse(
            Array("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n80000\r\n".utf8)
                + body[..<524_288] + Array("\r\n80001\r\n".utf8))
        #expect(over.error == .bodyTooLarge)
    }

    @Test func headersKeepOrderSpellingAndDuplicates() throws {
        let request = try #require(
            parse("GET / HTTP/1.1\r\nhOsT: h\r\nX-A: 1\r\nx-a: 2\r\n\r\n").requests.first)
        #expect(request.head.headers.pairs == ["hOsT: h", "X-A: 1", "x-a: 2"])
        #expect(request.head.headers["X-A"] == "1")
        #expect(request.head.headers.values(for: "x-A") == ["1", "2"])
    }

    @Test func repeatedIdenticalContentLengthIsOneLength() throws {
        let request = try #require(parse(validRequests[11]).requests.first)
        #expect(request.head.contentLength == 5)
        #expect(request.body == Array("abcde".utf8))
    }

    @Test func leadingEmptyLinesAreSkippedUpToEight() {
        let ok = parseEverySplit(String(repeating: "\r\n", count: 8) + "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(ok.requests.count == 1)
        let tooMany = parseEverySplit(String(repeating: "\r\n", count: 9) + "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(tooMany.error == .tooManyEmptyLinesBeforeRequest)
        #expect(tooMany.error?.status.code == 400)
        // The count starts again for each request (some clients send CRLF after a body).
        let between = parseEverySplit(
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx" + String(repeating: "\r\n", count: 8)
                + "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\ny" + String(repeating: "\r\n", count: 8)
                + "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(between.error == nil)
        #expect(between.requests.count == 3)
    }

    @Test func higherMinorVersionIsServedAsHTTP11() throws {
        let request = try #require(parse(validRequests[10]).requests.first)
        #expect(request.head.version == .http1_1)
    }

    @Test func absoluteFormAndAsteriskForm() throws {
        let absolute = try #require(parse(validRequests[8]).requests.first)
        #expect(absolute.head.target == "http://example.com/a?b")
        #expect(absolute.head.path == "/a")
        let asterisk = try #require(parse(validRequests[7]).requests.first)
        #expect(asterisk.head.method == "OPTIONS")
        #expect(asterisk.head.target == "*")
    }

    @Test(
        arguments: [
            // target, path, query, authority (Host is "fallback").
            ("http://listener.example.com/callbacks/CarrierService", "/callbacks/CarrierService", nil, "listener.example.com"),
            (
                "HTTP://Listener.Example.COM:9001/callbacks/DeviceUsage?x=1&y", "/callbacks/DeviceUsage", "x=1&y",
                "Listener.Example.COM:9001"
            ),
            ("https://h", "/", nil, "h"),
            ("http://h?q", "/", "q", "h"),
            ("http://[::1]:8080/a/b", "/a/b", nil, "[::1]:8080"),
            ("http://h:/a%2Fb", "/a%2Fb", nil, "h:"),
            ("/callbacks/CarrierService?x", "/callbacks/CarrierService", "x", "fallback"),
            ("/", "/", nil, "fallback"),
            ("/a?", "/a", "", "fallback"),
        ] as [(String, String, String?, String)])
    func absoluteFormExposesItsPathQueryAndAuthority(target: String, path: String, query: String?, authority: String) throws {
        let request = try #require(parseEverySplit("GET \(target) HTTP/1.1\r\nHost: fallback\r\n\r\n").requests.first)
        #expect(request.head.target == target)
        #expect(request.head.path == path[...])
        #expect(request.head.query.map(String.init) == query)
        // The target's authority takes precedence over Host (RFC 9112 §3.2.2).
        #expect(request.head.authority == authority[...])
    }

    @Test func absoluteFormStillNeedsHostInHTTP11() {
        // RFC 9112 §3.2: an HTTP/1.1 request needs Host whatever the target's form.
        #expect(parseEverySplit("GET http://h/ HTTP/1.1\r\n\r\n").error == .missingHost)
        #expect(parseEverySplit("GET http://h/ HTTP/1.0\r\n\r\n").requests.first?.head.path == "/")
    }

    @Test func validChunkExtensionsAreIgnored() throws {
        let request = try #require(parseEverySplit(validRequests[14]).requests.first)
        #expect(request.body == Array("hello!".utf8))
        #expect(request.trailers.count == 0)
    }

    @Test func emptyHostIsAllowedForAnOriginFormTarget() throws {
        // RFC 9112 §3.2: a target without an authority sends Host with an empty value.
        let request = try #require(parseEverySplit("GET / HTTP/1.1\r\nHost: \r\n\r\n").requests.first)
        #expect(request.head.headers["Host"] == "")
    }

    @Test func expectationIsIgnoredForHTTP10() throws {
        let request = try #require(
            parse("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx").requests.first)
        #expect(request.head.expectation == .none)
        let unsupported = parse("GET / HTTP/1.0\r\nExpect: something-else\r\n\r\n")
        #expect(unsupported.error == nil)
    }

    @Test func contentLengthIsZeroWithoutFraming() throws {
        // A request with neither Content-Length nor Transfer-Encoding has no body (RFC 9112 §6.3).
        let outcome = parse("POST / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(outcome.requests.count == 2)
        #expect(outcome.requests.first?.body == [])
    }

    @Test func failedParserKeepsThrowingTheSameError() {
        var parser = HTTPRequestParser()
        parser.append(Array("GET / HTTP/2.0\r\n\r\n".utf8))
        #expect(throws: HTTPParseError.unsupportedVersion) { try parser.next() }
        parser.append(Array("GET / HTTP/1.1\r\nHost: h\r\n\r\n".utf8))
        #expect(throws: HTTPParseError.unsupportedVersion) { try parser.next() }
        #expect(!parser.isIdle)
        #expect(!parser.isReadingBody)
    }

    @Test func parserIsAValue() throws {
        var first = HTTPRequestParser()
        first.append(Array("GET /a HTTP/1.1\r\nHost: h\r\n".utf8))
        var second = first
        first.append(Array("\r\n".utf8))
        second.append(Array("X: y\r\n\r\n".utf8))
        guard case .head(let a) = try first.next(), case .head(let b) = try second.next() else {
            Issue.record("expected heads")
            return
        }
        #expect(a.headers.pairs == ["Host: h"])
        #expect(b.headers.pairs == ["Host: h", "X: y"])
    }
}

@Suite struct KeepAliveTests {
    @Test(arguments: [
        ("GET / HTTP/1.1\r\nHost: h\r\n\r\n", true),
        ("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", false),
        ("GET / HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive, CLOSE\r\n\r\n", false),
        ("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nConnection: close\r\n\r\n", false),
        ("GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n", true),
        ("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", true),
        ("GET / HTTP/1.0\r\n\r\n", false),
        ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        ("GET / HTTP/1.0\r\nConnection: TE, Keep-Alive\r\n\r\n", true),
        ("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false),
        ("GET / HTTP/1.0\r\nKeep-Alive: timeout=5\r\n\r\n", false),
        ("GET / HTTP/1.2\r\nHost: h\r\n\r\n", true),
    ])
    func keepAliveRules(_ text: String, _ keepAlive: Bool) throws {
        let request = try #require(parseEverySplit(text).requests.first)
        #expect(request.head.keepAlive == keepAlive)
    }
}

@Suite struct TrailerTests {
    private func chunked(trailers: String) -> String {
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n" + trailers + "\r\n"
    }

    @Test func trailerSectionAtTheLimitIsAccepted() throws {
        // The trailer section is counted through its final CRLF.
        let line = "T: " + String(repeating: "v", count: 100 - 5) + "\r\n"  // 100 bytes
        let limits = HTTPLimits.with { $0.maxTrailerBytes = 102 }
        let request = try #require(parseEverySplit(chunked(trailers: line), limits: limits).requests.first)
        #expect(request.trailers.count == 1)
        let over = parseEverySplit(chunked(trailers: line), limits: HTTPLimits.with { $0.maxTrailerBytes = 101 })
        #expect(over.error == .trailerSectionTooLarge)
        #expect(over.error?.status.code == 431)
    }

    @Test func unterminatedTrailersFailOnceOverTheLimit() {
        var parser = HTTPRequestParser(limits: HTTPLimits.with { $0.maxTrailerBytes = 64 })
        parser.append(Array(chunked(trailers: "").utf8).dropLast(2))
        #expect(throws: Never.self) {
            while try parser.next() != nil {}
        }
        parser.append(Array(repeating: UInt8(ascii: "a"), count: 64))
        #expect(throws: HTTPParseError.trailerSectionTooLarge) { try parser.next() }
    }

    @Test func trailerFieldCountIsBounded() {
        let limits = HTTPLimits.with { $0.maxHeaderCount = 3 }
        let three = parseEverySplit(chunked(trailers: "A: 1\r\nB: 2\r\nC: 3\r\n"), limits: limits)
        #expect(three.requests.first?.trailers.count == 3)
        let four = parseEverySplit(chunked(trailers: "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n"), limits: limits)
        #expect(four.error == .tooManyTrailerFields)
        #expect(four.error?.status.code == 431)
    }

    @Test func trailerFieldsFollowFieldSyntax() {
        #expect(parseEverySplit(chunked(trailers: "A : 1\r\n")).error == .whitespaceBeforeColon)
        #expect(parseEverySplit(chunked(trailers: "A: 1\r\n folded\r\n")).error == .obsoleteLineFolding)
        #expect(parseEverySplit(chunked(trailers: "A: \u{1}\r\n")).error == .invalidFieldValue)
        #expect(parseEverySplit(chunked(trailers: "A: 1\n")).error == .bareLineFeed)
    }
}
