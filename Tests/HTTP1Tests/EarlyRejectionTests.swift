import Testing

@testable import HTTP1

// A malformed head, chunk-size line or trailer section is refused as soon as
// the byte that makes it invalid arrives, not when its line or section ends:
// otherwise garbage holds the connection until the header (or body) timeout.

/// Input whose byte at `decidingIndex` is the first that makes it invalid;
/// what follows it would, with the old end-of-section checks, still be awaited.
struct EarlyCase: Sendable, CustomTestStringConvertible {
    var name: String
    var input: [UInt8]
    var decidingIndex: Int
    var error: HTTPParseError
    var limits = HTTPLimits()

    /// `before` is valid so far, `deciding` the byte that is not; `after` is
    /// whatever may follow (often nothing: the line or section never ends).
    init(
        _ name: String, _ before: String, _ deciding: UInt8, _ after: String = "", _ error: HTTPParseError,
        limits: HTTPLimits = HTTPLimits()
    ) {
        self.name = name
        input = Array(before.utf8) + [deciding] + Array(after.utf8)
        decidingIndex = before.utf8.count
        self.error = error
        self.limits = limits
    }

    var testDescription: String { name }
}

private let chunked = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
private let head = "GET / HTTP/1.1\r\nHost: h\r\n"

private func byte(_ character: Unicode.Scalar) -> UInt8 { UInt8(character.value) }

let earlyCases: [EarlyCase] = [
    // Request line.
    EarlyCase("control byte in the method", "GE", 0x01, "T / HTTP/1.1\r\n", .invalidMethod),
    EarlyCase("separator in the method", "G", byte("@"), "T / HTTP/1.1\r\n", .invalidMethod),
    EarlyCase("space first", "", byte(" "), "/ HTTP/1.1\r\n", .invalidMethod),
    EarlyCase("binary garbage", "", 0x16, "\u{3}\u{1}\u{2}\0", .invalidMethod),
    EarlyCase("control byte in the target", "GET /a", 0x01, "b HTTP/1.1\r\n", .invalidRequestTarget),
    EarlyCase("bad escape in the target", "GET /a%4", byte("g"), " HTTP/1.1\r\n", .invalidRequestTarget),
    EarlyCase("fragment in the target", "GET /a", byte("#"), "b HTTP/1.1\r\n", .invalidRequestTarget),
    EarlyCase("relative target", "GET a", byte("/"), "b HTTP/1.1\r\n", .invalidRequestTarget),
    EarlyCase("scheme other than http", "GET ftp", byte(":"), "//h/ HTTP/1.1\r\n", .invalidRequestTarget),
    EarlyCase("userinfo in the target", "GET http://user", byte("@"), "h/ HTTP/1.1\r\n", .invalidRequestTarget),
    EarlyCase("empty host in the target", "GET http://", byte("/"), "x HTTP/1.1\r\n", .invalidRequestTarget),
    EarlyCase("lowercase version", "GET / ", byte("h"), "ttp/1.1\r\n", .invalidVersion),
    EarlyCase("bad version minor", "GET / HTTP/1.", byte("x"), "\r\n", .invalidVersion),
    EarlyCase("two-digit minor", "GET / HTTP/1.1", byte("0"), "\r\n", .invalidVersion),
    EarlyCase("HTTP/2", "GET / HTTP/", byte("2"), ".0\r\n", .unsupportedVersion),
    EarlyCase("bare LF after the request line", "GET / HTTP/1.1", byte("\n"), "Host: h\r\n", .bareLineFeed),
    EarlyCase("request line without a version", "GET /", byte("\r"), "\n", .invalidRequestLine),

    // Header section.
    EarlyCase("control byte in a field name", head + "X", 0x01, ": y\r\n", .invalidFieldName),
    EarlyCase("separator in a field name", head + "X", byte("("), ": y\r\n", .invalidFieldName),
    EarlyCase("non-ASCII in a field name", head + "X", 0xC3, "\u{A9}: y\r\n", .invalidFieldName),
    EarlyCase("whitespace before the colon", head + "X ", byte(":"), " y\r\n", .whitespaceBeforeColon),
    EarlyCase("space inside a field name", head + "X ", byte("Y"), ": y\r\n", .invalidFieldName),
    EarlyCase("field line without colon", head + "NoColon", byte("\r"), "\n\r\n", .missingColon),
    EarlyCase("obs-fold", head + "X: a\r\n", byte(" "), "b\r\n", .obsoleteLineFolding),
    EarlyCase("NUL in a field value", head + "X: a", 0x00, "b\r\n", .invalidFieldValue),
    EarlyCase("bare CR in a field value", head + "X: a\r", byte("b"), "\r\n", .invalidFieldValue),
    EarlyCase("bare LF after a field", head + "X: a", byte("\n"), "Y: b\r\n", .bareLineFeed),
    EarlyCase("Host with two ports", "GET / HTTP/1.1\r\nHost: a:1", byte(":"), "2\r\n", .invalidHost),
    EarlyCase("Host with a port that is not digits", "GET / HTTP/1.1\r\nHost: a:", byte("b"), "\r\n", .invalidHost),
    EarlyCase("Host with an open IP-literal", "GET / HTTP/1.1\r\nHost: [::1", byte("\r"), "\n", .invalidHost),
    EarlyCase("Host with a second word", "GET / HTTP/1.1\r\nHost: a ", byte("b"), "\r\n", .invalidHost),
    EarlyCase("Content-Length with a letter", head + "Content-Length: 1", byte("x"), "\r\n", .invalidContentLength),
    EarlyCase(
        "too many header fields", "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n", byte("C"), ": 3\r\n", .tooManyHeaderFields,
        limits: HTTPLimits.with { $0.maxHeaderCount = 2 }),

    // Chunk-size lines.
    EarlyCase("chunk size not hex", chunked, byte("z"), "\r\n", .invalidChunkSize),
    EarlyCase("chunk size then junk", chunked + "5", byte("x"), "\r\n", .invalidChunkSize),
    EarlyCase("two words as an extension name", chunked + "6d;a ", byte("b"), "\r\n", .invalidChunkExtension),
    EarlyCase("comma in an extension", chunked + "65;a", byte(","), "b\r\n", .invalidChunkExtension),
    EarlyCase("obs-text as an extension value", chunked + "64;a=", 0xFF, "\r\n", .invalidChunkExtension),
    EarlyCase("unterminated quoted extension value", chunked + "72;a=\"b", byte("\r"), "\n", .invalidChunkExtension),
    EarlyCase("empty extension name", chunked + "6e;", byte("\r"), "\n", .invalidChunkExtension),
    EarlyCase("chunk size line ending in a bare LF", chunked + "5", byte("\n"), "hello", .bareLineFeed),

    // Trailer section.
    EarlyCase("control byte in a trailer name", chunked + "0\r\nA", 0x01, ": b\r\n", .invalidFieldName),
    EarlyCase("obs-fold in the trailers", chunked + "0\r\nA: b\r\n", byte("\t"), "c\r\n", .obsoleteLineFolding),
    EarlyCase("control byte in a trailer value", chunked + "0\r\nA: ", 0x7F, "\r\n", .invalidFieldValue),
]

/// Feeds `input` one byte at a time; the index of the byte after which
/// `next()` first threw, and the error.
private func firstFailure(_ input: [UInt8], limits: HTTPLimits = HTTPLimits()) -> (index: Int, error: HTTPParseError)? {
    var parser = HTTPRequestParser(limits: limits)
    for (index, byte) in input.enumerated() {
        parser.append([byte])
        do {
            while try parser.next() != nil {}
        } catch {
            return (index, error)
        }
    }
    return nil
}

@Suite struct EarlyRejectionTests {
    @Test(arguments: earlyCases)
    func rejectedAtTheDecidingByteWithTheSameErrorAtEverySplit(_ early: EarlyCase) throws {
        let failure = try #require(firstFailure(early.input, limits: early.limits), "never rejected")
        #expect(failure.index == early.decidingIndex, "rejected at byte \(failure.index), not \(early.decidingIndex)")
        #expect(failure.error == early.error)
        // Nothing before the deciding byte fails, however it is split.
        let prefix = Array(early.input[..<early.decidingIndex])
        #expect(parseEverySplit(prefix, limits: early.limits).error == nil)
        // The verdict is the same whole, split anywhere, and byte by byte.
        #expect(parseEverySplit(early.input, limits: early.limits).error == early.error)
    }

    @Test func everyRejectionCaseFailsNoLaterThanItsHeadWouldEnd() {
        // Cut each rejection input just after the error: the parser needs no
        // more bytes (in particular not the end of the line or section) to refuse it.
        for rejection in rejectionCases {
            guard let failure = firstFailure(rejection.input, limits: rejection.limits) else {
                Issue.record("\(rejection.name): never rejected byte by byte")
                continue
            }
            #expect(failure.error == rejection.error, "\(rejection.name)")
            let cut = Array(rejection.input[...failure.index])
            #expect(parse(cut, limits: rejection.limits).error == rejection.error, "\(rejection.name)")
        }
    }

    @Test func aHTTP2PrefaceIsTold505BeforeItsTargetIsJudged() throws {
        // "PRI *" is no valid HTTP/1.1 request line, but the version decides first.
        let failure = try #require(firstFailure(Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)))
        #expect(failure.error == .unsupportedVersion)
        #expect(failure.index == "PRI * HTTP/".utf8.count)
    }

    @Test func longValidHeadsAreNotRejected() {
        // The byte-by-byte checks must not refuse anything valid along the way.
        let field = "X-Long: " + String(repeating: "v", count: 8000) + "\r\n"
        let text =
            "POST /callbacks/CarrierService?" + String(repeating: "q", count: 4000) + " HTTP/1.1\r\nHost: h\r\n" + field
            + "Transfer-Encoding: chunked\r\n\r\n3;" + String(repeating: "e", count: 3000) + "\r\nabc\r\n0\r\nT: v\r\n\r\n"
        let outcome = parse(Array(text.utf8), cuts: Array(stride(from: 1, to: text.utf8.count, by: 997)))
        #expect(outcome.error == nil)
        #expect(outcome.requests.first?.body == Array("abc".utf8))
    }
}
