import HTTP1
import Testing

/// One malformed input, the error it must raise and the status that error maps to.
struct RejectionCase: Sendable, CustomTestStringConvertible {
    var name: String
    var input: [UInt8]
    var error: HTTPParseError
    var status: Int
    var limits = HTTPLimits()

    init(_ name: String, _ input: String, _ error: HTTPParseError, _ status: Int, limits: HTTPLimits = HTTPLimits()) {
        self.name = name
        self.input = Array(input.utf8)
        self.error = error
        self.status = status
        self.limits = limits
    }

    init(_ name: String, bytes: [UInt8], _ error: HTTPParseError, _ status: Int) {
        self.name = name
        self.input = bytes
        self.error = error
        self.status = status
    }

    var testDescription: String { name }
}

private let host = "Host: h\r\n"
private let chunkedHead = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
private let small = HTTPLimits.with {
    $0.maxRequestLineBytes = 32
    $0.maxHeaderBytes = 64
    $0.maxHeaderCount = 3
    $0.maxBodyBytes = 10
}

let rejectionCases: [RejectionCase] = [
    // Request line.
    RejectionCase("method with a non-token byte", "G@T / HTTP/1.1\r\n\(host)\r\n", .invalidMethod, 400),
    RejectionCase("empty method", " / HTTP/1.1\r\n\(host)\r\n", .invalidMethod, 400),
    RejectionCase("method with a control byte", "GE\u{1}T / HTTP/1.1\r\n\(host)\r\n", .invalidMethod, 400),
    RejectionCase("request line without spaces", "GET\r\n\(host)\r\n", .invalidRequestLine, 400),
    RejectionCase("HTTP/0.9 style request line", "GET /\r\n\r\n", .invalidRequestLine, 400),
    // The target ends at the second space; what follows it is not a version.
    RejectionCase("space inside the target", "GET /a b HTTP/1.1\r\n\(host)\r\n", .invalidVersion, 400),
    RejectionCase("two spaces before the target", "GET  / HTTP/1.1\r\n\(host)\r\n", .invalidRequestTarget, 400),
    RejectionCase("tab inside the target", "GET /a\tb HTTP/1.1\r\n\(host)\r\n", .invalidRequestTarget, 400),
    RejectionCase("control byte in the target", "GET /a\u{1}b HTTP/1.1\r\n\(host)\r\n", .invalidRequestTarget, 400),
    RejectionCase("DEL in the target", "GET /a\u{7F} HTTP/1.1\r\n\(host)\r\n", .invalidRequestTarget, 400),
    RejectionCase("non-ASCII in the target", "GET /caf\u{E9} HTTP/1.1\r\n\(host)\r\n", .invalidRequestTarget, 400),
    RejectionCase("fragment in the target", "GET /a#b HTTP/1.1\r\n\(host)\r\n", .invalidRequestTarget, 400),
    RejectionCase("bad percent-escape", "GET /a%zz HTTP/1.1\r\n\(host)\r\n", .invalidRequestTarget, 400),
    RejectionCase("truncated percent-escape", "GET /a%2 HTTP/1.1\r\n\(host)\r\n", .invalidRequestTarget, 400),
    RejectionCase("asterisk-form for GET", "GET * HTTP/1.1\r\n\(host)\r\n", .invalidRequestTarget, 400),
    RejectionCase("authority-form", "CONNECT example.com:443 HTTP/1.1\r\n\(host)\r\n", .invalidRequestTarget, 400),
    RejectionCase("relative target", "GET a/b HTTP/1.1\r\n\(host)\r\n", .invalidRequestTarget, 400),
    // Absolute-form (RFC 9112 §3.2.2): http or https, then host[:port] with a host and no userinfo.
    RejectionCase("absolute-form with another scheme", "GET ftp://h/x HTTP/1.1\r\n\(host)\r\n", .invalidRequestTarget, 400),
    RejectionCase("absolute-form with one slash", "GET http:/h/x HTTP/1.1\r\n\(host)\r\n", .invalidRequestTarget, 400),
    RejectionCase("absolute-form without slashes", "GET http:h HTTP/1.1\r\n\(host)\r\n", .invalidRequestTarget, 400),
    RejectionCase("absolute-form with no authority", "GET http:// HTTP/1.1\r\n\(host)\r\n", .invalidRequestTarget, 400),
    RejectionCase("absolute-form with an empty host", "GET http:///x HTTP/1.1\r\n\(host)\r\n", .invalidRequestTarget, 400),
    RejectionCase("absolute-form with only a port", "GET http://:80/x HTTP/1.1\r\n\(host)\r\n", .invalidRequestTarget, 400),
    RejectionCase("absolute-form with userinfo", "GET http://u:p@h/x HTTP/1.1\r\n\(host)\r\n", .invalidRequestTarget, 400),
    RejectionCase("absolute-form with a bad port", "GET http://h:b/x HTTP/1.1\r\n\(host)\r\n", .invalidRequestTarget, 400),
    RejectionCase("absolute-form with an open IP-literal", "GET http://[::1/x HTTP/1.1\r\n\(host)\r\n", .invalidRequestTarget, 400),
    RejectionCase("absolute-form with a bad IP-literal", "GET http://[::1::2]/x HTTP/1.1\r\n\(host)\r\n", .invalidRequestTarget, 400),
    RejectionCase("absolute-form with a fragment", "GET http://h/x#f HTTP/1.1\r\n\(host)\r\n", .invalidRequestTarget, 400),
    RejectionCase("absolute-form with a bad escape in the host", "GET http://h%4/ HTTP/1.1\r\n\(host)\r\n", .invalidRequestTarget, 400),
    RejectionCase("absolute-form with a bad escape in the path", "GET http://h/%g0 HTTP/1.1\r\n\(host)\r\n", .invalidRequestTarget, 400),
    RejectionCase("lowercase version", "GET / http/1.1\r\n\(host)\r\n", .invalidVersion, 400),
    RejectionCase("version without minor", "GET / HTTP/1\r\n\(host)\r\n", .invalidVersion, 400),
    RejectionCase("two-digit minor", "GET / HTTP/1.10\r\n\(host)\r\n", .invalidVersion, 400),
    RejectionCase("HTTP/2.0", "GET / HTTP/2.0\r\n\(host)\r\n", .unsupportedVersion, 505),
    RejectionCase("HTTP/0.9", "GET / HTTP/0.9\r\n\(host)\r\n", .unsupportedVersion, 505),
    RejectionCase("HTTP/2 connection preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", .unsupportedVersion, 505),
    RejectionCase(
        "request line over the limit", "GET /\(String(repeating: "a", count: 27)) HTTP/1.1\r\n\r\n",
        .requestLineTooLong, 414, limits: small),
    RejectionCase(
        "request line over the limit with a bare LF",
        "GET /\(String(repeating: "a", count: 27)) HTTP/1.1\n\r\n", .requestLineTooLong, 414, limits: small),
    RejectionCase(
        "nine empty lines first", String(repeating: "\r\n", count: 9) + "GET / HTTP/1.1\r\n\(host)\r\n",
        .tooManyEmptyLinesBeforeRequest, 400),

    // Line endings.
    RejectionCase("bare LF after the request line", "GET / HTTP/1.1\n\(host)\r\n", .bareLineFeed, 400),
    RejectionCase("bare LF after a field", "GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", .bareLineFeed, 400),
    RejectionCase("bare LF as the empty line", "GET / HTTP/1.1\r\n\(host)\n", .bareLineFeed, 400),
    RejectionCase("bare LF before the request", "\nGET / HTTP/1.1\r\n\(host)\r\n", .bareLineFeed, 400),
    RejectionCase("bare CR inside a field value", "GET / HTTP/1.1\r\n\(host)X: a\rb\r\n\r\n", .invalidFieldValue, 400),

    // Field lines.
    RejectionCase("whitespace before the colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", .whitespaceBeforeColon, 400),
    RejectionCase("tab before the colon", "GET / HTTP/1.1\r\n\(host)X\t: y\r\n\r\n", .whitespaceBeforeColon, 400),
    RejectionCase("obs-fold", "GET / HTTP/1.1\r\n\(host)X: a\r\n b\r\n\r\n", .obsoleteLineFolding, 400),
    RejectionCase("obs-fold with a tab", "GET / HTTP/1.1\r\n\(host)X: a\r\n\tb\r\n\r\n", .obsoleteLineFolding, 400),
    RejectionCase("whitespace before the first field", "GET / HTTP/1.1\r\n \(host)\r\n", .obsoleteLineFolding, 400),
    RejectionCase("field without colon", "GET / HTTP/1.1\r\n\(host)NoColon\r\n\r\n", .missingColon, 400),
    RejectionCase("empty field name", "GET / HTTP/1.1\r\n\(host): v\r\n\r\n", .invalidFieldName, 400),
    RejectionCase("space inside a field name", "GET / HTTP/1.1\r\n\(host)X Y: v\r\n\r\n", .invalidFieldName, 400),
    RejectionCase("non-ASCII field name", "GET / HTTP/1.1\r\n\(host)X\u{E9}: v\r\n\r\n", .invalidFieldName, 400),
    RejectionCase("NUL in a field value", "GET / HTTP/1.1\r\n\(host)X: a\u{0}b\r\n\r\n", .invalidFieldValue, 400),
    RejectionCase("control byte in a field value", "GET / HTTP/1.1\r\n\(host)X: \u{1B}[0m\r\n\r\n", .invalidFieldValue, 400),
    RejectionCase("DEL in a field value", "GET / HTTP/1.1\r\n\(host)X: a\u{7F}\r\n\r\n", .invalidFieldValue, 400),
    RejectionCase(
        "header section over the limit",
        "GET / HTTP/1.1\r\n\(host)X: \(String(repeating: "v", count: 60))\r\n\r\n", .headerSectionTooLarge, 431,
        limits: small),
    RejectionCase(
        "too many header fields", "GET / HTTP/1.1\r\n\(host)A: 1\r\nB: 2\r\nC: 3\r\n\r\n", .tooManyHeaderFields, 431,
        limits: small),

    // Host.
    RejectionCase("HTTP/1.1 without Host", "GET / HTTP/1.1\r\nX: y\r\n\r\n", .missingHost, 400),
    RejectionCase("two Host fields", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", .multipleHost, 400),
    RejectionCase("two Host fields in HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", .multipleHost, 400),
    RejectionCase("Host with a space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", .invalidHost, 400),
    RejectionCase("Host with a path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", .invalidHost, 400),
    // uri-host [ ":" port ] (RFC 9112 §3.2, RFC 3986 §3.2.2).
    RejectionCase("Host with an open IP-literal", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", .invalidHost, 400),
    RejectionCase("Host with a port that is not digits", "GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", .invalidHost, 400),
    RejectionCase("Host with two ports", "GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n", .invalidHost, 400),
    RejectionCase("Host with bytes after an IP-literal", "GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", .invalidHost, 400),
    RejectionCase("Host with an IPv6 address unbracketed", "GET / HTTP/1.1\r\nHost: ::1\r\n\r\n", .invalidHost, 400),
    RejectionCase("Host with nine IPv6 groups", "GET / HTTP/1.1\r\nHost: [1:2:3:4:5:6:7:8:9]\r\n\r\n", .invalidHost, 400),
    RejectionCase("Host with two elisions", "GET / HTTP/1.1\r\nHost: [1::2::3]\r\n\r\n", .invalidHost, 400),
    RejectionCase("Host with a bad IPv4 tail", "GET / HTTP/1.1\r\nHost: [::ffff:1.2.3.256]\r\n\r\n", .invalidHost, 400),
    RejectionCase("Host with a letter in an IP-literal", "GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n", .invalidHost, 400),
    RejectionCase("Host with an empty IP-literal", "GET / HTTP/1.1\r\nHost: []\r\n\r\n", .invalidHost, 400),
    RejectionCase("Host with a bad escape", "GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n", .invalidHost, 400),
    RejectionCase("Host with userinfo", "GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", .invalidHost, 400),
    RejectionCase("Host with a second word", "GET / HTTP/1.1\r\nHost: h:80 x\r\n\r\n", .invalidHost, 400),

    // Framing.
    RejectionCase(
        "Content-Length with Transfer-Encoding",
        "POST / HTTP/1.1\r\n\(host)Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        .contentLengthWithTransferEncoding, 400),
    RejectionCase(
        "differing Content-Length fields", "POST / HTTP/1.1\r\n\(host)Content-Length: 3\r\nContent-Length: 4\r\n\r\n",
        .conflictingContentLength, 400),
    RejectionCase(
        "differing Content-Length list", "POST / HTTP/1.1\r\n\(host)Content-Length: 3, 4\r\n\r\n",
        .conflictingContentLength, 400),
    RejectionCase(
        "Content-Length not a number", "POST / HTTP/1.1\r\n\(host)Content-Length: abc\r\n\r\n",
        .invalidContentLength, 400),
    RejectionCase(
        "negative Content-Length", "POST / HTTP/1.1\r\n\(host)Content-Length: -1\r\n\r\n",
        .invalidContentLength, 400),
    RejectionCase(
        "signed Content-Length", "POST / HTTP/1.1\r\n\(host)Content-Length: +1\r\n\r\n",
        .invalidContentLength, 400),
    RejectionCase(
        "Content-Length with inner space", "POST / HTTP/1.1\r\n\(host)Content-Length: 1 2\r\n\r\n",
        .invalidContentLength, 400),
    RejectionCase(
        "empty Content-Length", "POST / HTTP/1.1\r\n\(host)Content-Length:\r\n\r\n",
        .invalidContentLength, 400),
    RejectionCase(
        "Content-Length with empty element", "POST / HTTP/1.1\r\n\(host)Content-Length: 1,\r\n\r\n",
        .invalidContentLength, 400),
    RejectionCase(
        "hex Content-Length", "POST / HTTP/1.1\r\n\(host)Content-Length: 0x5\r\n\r\n",
        .invalidContentLength, 400),
    RejectionCase("gzip alone", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: gzip\r\n\r\n", .chunkedNotFinalCoding, 400),
    RejectionCase(
        "chunked then gzip", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked, gzip\r\n\r\n",
        .chunkedNotFinalCoding, 400),
    RejectionCase(
        "chunked twice", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        .chunkedNotFinalCoding, 400),
    RejectionCase(
        "empty Transfer-Encoding", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding:\r\n\r\n",
        .chunkedNotFinalCoding, 400),
    RejectionCase(
        "chunked with a parameter", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked;q=1\r\n\r\n",
        .chunkedNotFinalCoding, 400),
    RejectionCase(
        "gzip then chunked", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: gzip, chunked\r\n\r\n",
        .unsupportedTransferCoding, 501),
    RejectionCase(
        "unknown coding then chunked", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: foo\r\nTransfer-Encoding: chunked\r\n\r\n",
        .unsupportedTransferCoding, 501),
    RejectionCase(
        "Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        .transferEncodingInHTTP10, 400),
    RejectionCase(
        "unsupported expectation", "POST / HTTP/1.1\r\n\(host)Expect: 200-ok\r\nContent-Length: 1\r\n\r\nx",
        .unsupportedExpectation, 417),
    RejectionCase(
        "100-continue with a parameter", "POST / HTTP/1.1\r\n\(host)Expect: 100-continue;a=b\r\n\r\n",
        .unsupportedExpectation, 417),
    RejectionCase(
        "declared body over the limit", "POST / HTTP/1.1\r\n\(host)Content-Length: 11\r\n\r\n",
        .bodyTooLarge, 413, limits: small),
    RejectionCase(
        "huge Content-Length", "POST / HTTP/1.1\r\n\(host)Content-Length: 99999999999999999999999999\r\n\r\n",
        .bodyTooLarge, 413),

    // Chunked body.
    RejectionCase("chunk size not hex", chunkedHead + "zz\r\n", .invalidChunkSize, 400),
    RejectionCase("empty chunk size", chunkedHead + "\r\n", .invalidChunkSize, 400),
    RejectionCase("negative chunk size", chunkedHead + "-1\r\n", .invalidChunkSize, 400),
    RejectionCase("0x chunk size", chunkedHead + "0x5\r\nhello\r\n", .invalidChunkSize, 400),
    RejectionCase("whitespace after the size", chunkedHead + "5 \r\nhello\r\n0\r\n\r\n", .invalidChunkSize, 400),
    RejectionCase("space before the size", chunkedHead + " 5\r\nhello\r\n0\r\n\r\n", .invalidChunkSize, 400),
    RejectionCase(
        "control byte in an extension", chunkedHead + "5;a=\u{1}\r\nhello\r\n0\r\n\r\n",
        .invalidChunkExtension, 400),
    // chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ) (RFC 9112 §7.1.1).
    RejectionCase("two words as an extension name", chunkedHead + "6d;a b\r\n", .invalidChunkExtension, 400),
    RejectionCase("comma in an extension", chunkedHead + "65;a,b\r\n", .invalidChunkExtension, 400),
    RejectionCase(
        "obs-text as an extension value", bytes: Array((chunkedHead + "64;a=").utf8) + [0xFF] + Array("\r\n".utf8),
        .invalidChunkExtension, 400),
    RejectionCase("unterminated quoted extension value", chunkedHead + "72;a=\"b\r\n", .invalidChunkExtension, 400),
    RejectionCase("empty extension name", chunkedHead + "6e;\r\n", .invalidChunkExtension, 400),
    RejectionCase("extension with no name before =", chunkedHead + "5;=v\r\n", .invalidChunkExtension, 400),
    RejectionCase("extension with an empty value", chunkedHead + "5;a=\r\n", .invalidChunkExtension, 400),
    RejectionCase("extension with two values", chunkedHead + "5;a=b=c\r\n", .invalidChunkExtension, 400),
    RejectionCase("extension with whitespace at the end", chunkedHead + "5;a \r\n", .invalidChunkExtension, 400),
    RejectionCase("bytes after a quoted extension value", chunkedHead + "5;a=\"b\"c\r\n", .invalidChunkExtension, 400),
    RejectionCase("control byte in a quoted extension value", chunkedHead + "5;a=\"\u{1}\"\r\n", .invalidChunkExtension, 400),
    RejectionCase("bare LF after the size", chunkedHead + "5\nhello\r\n0\r\n\r\n", .bareLineFeed, 400),
    RejectionCase("chunk data without CRLF", chunkedHead + "5\r\nhelloXX0\r\n\r\n", .missingChunkTerminator, 400),
    RejectionCase("chunk data with LF only", chunkedHead + "5\r\nhello\n0\r\n\r\n", .missingChunkTerminator, 400),
    RejectionCase("chunk data with CR only", chunkedHead + "5\r\nhello\r0\r\n\r\n", .missingChunkTerminator, 400),
    RejectionCase("chunk data longer than the size", chunkedHead + "3\r\nhello\r\n0\r\n\r\n", .missingChunkTerminator, 400),
    RejectionCase("chunk-size overflow", chunkedHead + "ffffffffffffffffffffffffffffffff\r\n", .bodyTooLarge, 413),
    RejectionCase("chunk-size just over Int", chunkedHead + "8000000000000000\r\n", .bodyTooLarge, 413),
    RejectionCase(
        "chunks over the limit", chunkedHead + "8\r\n12345678\r\n3\r\nabc\r\n0\r\n\r\n", .bodyTooLarge, 413,
        limits: small),
    RejectionCase(
        "chunk-size line too long", chunkedHead + "1;" + String(repeating: "x", count: 5000) + "\r\nx\r\n0\r\n\r\n",
        .chunkLineTooLong, 400),
    RejectionCase("bare LF in the trailers", chunkedHead + "0\r\nA: b\n\r\n", .bareLineFeed, 400),
]

@Suite struct RequestParserErrorTests {
    @Test(arguments: rejectionCases)
    func rejectsWithThePreciseErrorAtEverySplit(_ rejection: RejectionCase) {
        let outcome = parseEverySplit(rejection.input, limits: rejection.limits)
        #expect(outcome.error == rejection.error)
        #expect(outcome.error?.status.code == rejection.status)
    }

    @Test func everyErrorHasAStatusAndAMessage() {
        for rejection in rejectionCases {
            #expect([400, 413, 414, 417, 431, 501, 505].contains(rejection.error.status.code))
            #expect(!rejection.error.description.isEmpty)
        }
    }

    @Test func overLimitContentLengthFailsBeforeAnyBodyByte() {
        var parser = HTTPRequestParser(limits: small)
        parser.append(Array("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n".utf8))
        #expect(throws: HTTPParseError.bodyTooLarge) { try parser.next() }
    }

    @Test func unsupportedExpectationFailsInsteadOfAHead() {
        var parser = HTTPRequestParser()
        parser.append(Array("POST / HTTP/1.1\r\nHost: h\r\nExpect: 103-early\r\nContent-Length: 5\r\n\r\n".utf8))
        #expect(throws: HTTPParseError.unsupportedExpectation) { try parser.next() }
    }

    @Test func longRequestLineFailsBeforeItsEnd() {
        var parser = HTTPRequestParser(limits: small)
        parser.append(Array("GET /".utf8) + Array(repeating: UInt8(ascii: "a"), count: 27))
        #expect(throws: Never.self) { try parser.next() }  // 32 bytes: still within the limit
        parser.append([UInt8(ascii: "a")])
        #expect(throws: HTTPParseError.requestLineTooLong) { try parser.next() }
    }

    @Test func requestLineExactlyAtTheLimitIsAccepted() {
        let line = "GET /" + String(repeating: "a", count: 18) + " HTTP/1.1"  // 32 bytes
        #expect(line.utf8.count == 32)
        let outcome = parseEverySplit(line + "\r\nHost: h\r\n\r\n", limits: small)
        #expect(outcome.error == nil)
        #expect(outcome.requests.count == 1)
    }

    @Test func endlessHeaderSectionFailsBeforeItsEnd() {
        var parser = HTTPRequestParser(limits: small)
        parser.append(Array("GET / HTTP/1.1\r\n".utf8))
        for _ in 0..<63 {
            parser.append([UInt8(ascii: "a")])
            #expect(throws: Never.self) { try parser.next() }
        }
        parser.append([UInt8(ascii: "a")])
        #expect(throws: HTTPParseError.headerSectionTooLarge) { try parser.next() }
    }

    @Test func headerSectionExactlyAtTheLimitIsAccepted() {
        // The header section is counted through the empty line: 64 bytes here.
        let field = "X: " + String(repeating: "v", count: 64 - 2 - 9 - 5) + "\r\n"
        let text = "GET / HTTP/1.1\r\n" + host + field + "\r\n"
        #expect((host + field + "\r\n").utf8.count == 64)
        #expect(parseEverySplit(text, limits: small).requests.count == 1)
    }

    @Test func bodyExactlyAtTheLimitIsAccepted() {
        let fixed = parseEverySplit("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789", limits: small)
        #expect(fixed.requests.first?.body.count == 10)
        let chunked = parseEverySplit(chunkedHead + "7\r\n0123456\r\n3\r\n789\r\n0\r\n\r\n", limits: small)
        #expect(chunked.requests.first?.body.count == 10)
    }

    @Test func errorsCarryNoRequestBytes() {
        // Messages may be logged; they must not echo a field value (credentials).
        let outcome = parse("GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Basic c2VjcmV0\u{1}\r\n\r\n")
        #expect(outcome.error == .invalidFieldValue)
        #expect(!String(describing: outcome.error).contains("c2VjcmV0"))
    }
}
