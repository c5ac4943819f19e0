import Testing

@testable import HTTP1

@Suite struct ResponseSerializerTests {
    /// Serializes and replaces the Date value with `<date>` after checking its format.
    private func serialize(
        _ response: HTTPResponse, version: HTTPVersion = .http1_1, keepAlive: Bool = true,
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> String {
        var buffer: [UInt8] = []
        HTTPResponseSerializer.serialize(response, version: version, keepAlive: keepAlive, into: &buffer)
        var text = String(decoding: buffer, as: UTF8.self)
        guard let start = text.firstRange(of: "\r\nDate: ") else {
            Issue.record("no Date field", sourceLocation: sourceLocation)
            return text
        }
        let valueStart = start.upperBound
        let valueEnd = text.index(valueStart, offsetBy: 29, limitedBy: text.endIndex) ?? text.endIndex
        let date = String(text[valueStart..<valueEnd])
        #expect(isIMFFixdate(date), "Date \(date)", sourceLocation: sourceLocation)
        text.replaceSubrange(valueStart..<valueEnd, with: "<date>")
        return text
    }

    /// `Sun, 06 Nov 1994 08:49:37 GMT`
    private func isIMFFixdate(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 29 else { return false }
        let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func digits(_ range: Range<Int>) -> Int? {
            var value = 0
            for index in range {
                guard bytes[index] >= 0x30 && bytes[index] <= 0x39 else { return nil }
                value = value * 10 + Int(bytes[index] - 0x30)
            }
            return value
        }
        func string(_ range: Range<Int>) -> String { String(decoding: bytes[range], as: UTF8.self) }
        guard days.contains(string(0..<3)), string(3..<5) == ", ",
            let day = digits(5..<7), (1...31).contains(day), bytes[7] == 0x20,
            months.contains(string(8..<11)), bytes[11] == 0x20,
            let year = digits(12..<16), year >= 2024, bytes[16] == 0x20,
            let hour = digits(17..<19), hour < 24, bytes[19] == 0x3A,
            let minute = digits(20..<22), minute < 60, bytes[22] == 0x3A,
            let second = digits(23..<25), second < 61, string(25..<29) == " GMT"
        else { return false }
        return true
    }

    @Test func okWithHeadersAndBodyKeepAlive() {
        let response = HTTPResponse(status: .ok, contentType: "application/json", body: "{\"ok\":true}")
        #expect(
            serialize(response) == """
                HTTP/1.1 200 OK\r
                Content-Type: application/json\r
                Date: <date>\r
                Content-Length: 11\r
                \r
                {"ok":true}
                """)
    }

    @Test func closeAddsConnectionClose() {
        let response = HTTPResponse(status: .badRequest, contentType: "text/plain", body: "bad\n")
        #expect(
            serialize(response, keepAlive: false) == """
                HTTP/1.1 400 Bad Request\r
                Content-Type: text/plain\r
                Date: <date>\r
                Content-Length: 4\r
                Connection: close\r
                \r
                bad

                """)
        #expect(serialize(response, version: .http1_0, keepAlive: false).contains("Connection: close\r\n"))
    }

    @Test func http10KeepAliveSaysSo() {
        let response = HTTPResponse(status: .ok)
        #expect(
            serialize(response, version: .http1_0, keepAlive: true) == """
                HTTP/1.1 200 OK\r
                Date: <date>\r
                Content-Length: 0\r
                Connection: keep-alive\r
                \r

                """)
    }

    @Test func noContentHasNoLengthAndNoBody() {
        let response = HTTPResponse(status: .noContent, body: Array("ignored".utf8))
        #expect(serialize(response) == "HTTP/1.1 204 No Content\r\nDate: <date>\r\n\r\n")
    }

    @Test func ownedHeadersAreNotDuplicated() {
        let response = HTTPResponse(
            status: .ok,
            headers: [
                "content-length": "99", "Date": "yesterday", "Connection": "upgrade", "Transfer-Encoding": "chunked",
                "X-Kept": "1",
            ],
            body: Array("abc".utf8))
        #expect(serialize(response) == "HTTP/1.1 200 OK\r\nX-Kept: 1\r\nDate: <date>\r\nContent-Length: 3\r\n\r\nabc")
    }

    @Test func lineBreaksInHeadersCannotSplitTheResponse() {
        let response = HTTPResponse(
            status: HTTPStatus(code: 200, reason: "O\r\nK"), headers: ["X-Evil": "a\r\nSet-Cookie: x=1", "X\nY": "z\u{0}"])
        #expect(
            serialize(response) == """
                HTTP/1.1 200 O  K\r
                X-Evil: a  Set-Cookie: x=1\r
                X Y: z \r
                Date: <date>\r
                Content-Length: 0\r
                \r

                """)
    }

    @Test func appendsToWhatIsInTheBuffer() {
        var buffer: [UInt8] = Array("previous".utf8)
        HTTPResponseSerializer.serialize(HTTPResponse(status: .notFound), version: .http1_1, keepAlive: true, into: &buffer)
        let text = String(decoding: buffer, as: UTF8.self)
        #expect(text.hasPrefix("previousHTTP/1.1 404 Not Found\r\n"))
        #expect(text.hasSuffix("Content-Length: 0\r\n\r\n"))
    }

    @Test func largeBodyAndLength() {
        let body = [UInt8](repeating: 0x41, count: 1_234_567)
        var buffer: [UInt8] = []
        HTTPResponseSerializer.serialize(HTTPResponse(status: .ok, body: body), version: .http1_1, keepAlive: true, into: &buffer)
        let head = String(decoding: buffer.prefix(200), as: UTF8.self)
        #expect(head.contains("\r\nContent-Length: 1234567\r\n\r\n"))
        #expect(buffer.suffix(body.count).elementsEqual(body))
    }

    private func streamHead(
        _ response: HTTPResponse, version: HTTPVersion = .http1_1, keepAlive: Bool = true
    ) -> String {
        var buffer: [UInt8] = []
        HTTPResponseSerializer.serializeStreamHead(
            response, version: version, keepAlive: keepAlive, framing: HTTPResponseSerializer.streamFraming(for: version), into: &buffer)
        var text = String(decoding: buffer, as: UTF8.self)
        guard let date = text.firstRange(of: "\r\nDate: ") else { return text }
        let end = text.index(date.upperBound, offsetBy: 29)
        text.replaceSubrange(date.upperBound..<end, with: "<date>")
        return text
    }

    @Test func streamHeadSaysChunkedAndNeverALength() {
        let response = HTTPResponse(
            status: .ok, headers: ["Content-Type": "text/event-stream", "Content-Length": "5", "Transfer-Encoding": "gzip"],
            body: Array("not written".utf8))
        #expect(
            streamHead(response) == """
                HTTP/1.1 200 OK\r
                Content-Type: text/event-stream\r
                Date: <date>\r
                Transfer-Encoding: chunked\r
                \r

                """)
        #expect(streamHead(response, keepAlive: false).hasSuffix("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"))
    }

    @Test func streamHeadForHTTP10IsUnframedAndCloses() {
        let head = streamHead(HTTPResponse(status: .ok), version: .http1_0, keepAlive: true)
        #expect(!head.contains("Transfer-Encoding"))
        #expect(head.hasSuffix("Connection: close\r\n\r\n"))
        #expect(!streamHead(HTTPResponse(status: .noContent)).contains("Transfer-Encoding"))
    }

    @Test(arguments: [(1, "1"), (10, "a"), (255, "ff"), (4096, "1000"), (65_537, "10001")])
    func chunksAreFramedWithTheirSizeInHex(_ size: Int, _ hex: String) {
        let piece = [UInt8](repeating: 0x78, count: size)
        var buffer: [UInt8] = []
        HTTPResponseSerializer.appendChunk(piece, framing: .chunked, into: &buffer)
        #expect(buffer == Array("\(hex)\r\n".utf8) + piece + [13, 10])
        var raw: [UInt8] = []
        HTTPResponseSerializer.appendChunk(piece, framing: .untilClose, into: &raw)
        #expect(raw == piece)
    }

    @Test func anEmptyPieceIsNoChunkAndTheLastChunkEndsTheBody() {
        var buffer: [UInt8] = []
        HTTPResponseSerializer.appendChunk([], framing: .chunked, into: &buffer)
        #expect(buffer.isEmpty)
        #expect(HTTPResponseSerializer.lastChunk == Array("0\r\n\r\n".utf8))
    }

    @Test func continue100IsExact() {
        #expect(HTTPResponseSerializer.continue100 == Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
    }

    @Test(arguments: [
        (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
        (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
        (4_102_444_799, "Thu, 31 Dec 2099 23:59:59 GMT"),
    ])
    func dateFormat(_ seconds: Int, _ expected: String) {
        #expect(String(decoding: DateCache.format(epochSeconds: seconds), as: UTF8.self) == expected)
    }
}
