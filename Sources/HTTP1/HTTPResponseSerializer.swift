// Writes responses as HTTP/1.1 bytes: status line, the response's headers,
// Date, Content-Length, Connection, then the body; or, for a response streamed
// as it is produced, the head with `Transfer-Encoding: chunked` and then each
// chunk as it comes (RFC 9112 §7.1).

import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

public enum HTTPResponseSerializer {
    public static let continue100: [UInt8] = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)

    /// Status line, the response's headers, Date (cached, refreshed once a
    /// second), Content-Length, and `Connection: close` when !keepAlive (or
    /// `Connection: keep-alive` for an HTTP/1.0 keep-alive client), then the body.
    ///
    /// The status line always says HTTP/1.1, the highest version this server
    /// speaks (RFC 9110 §2.5). Headers the serializer owns (Content-Length,
    /// Date, Connection, Transfer-Encoding) are skipped if the response has
    /// them; CR, LF and NUL in names and values become spaces, so a value
    /// can never start a new line. 1xx, 204 and 304 responses get neither
    /// Content-Length nor a body (RFC 9110 §8.6, §15).
    public static func serialize(_ response: HTTPResponse, version: HTTPVersion, keepAlive: Bool, into buffer: inout [UInt8]) {
        let code = response.status.code
        let hasBody = !(100...199).contains(code) && code != 204 && code != 304
        buffer.reserveCapacity(buffer.count + 160 + response.headers.count * 48 + (hasBody ? response.body.count : 0))

        appendStatusLineAndFields(of: response, to: &buffer)
        if hasBody {
            append("Content-Length: ", to: &buffer)
            appendDecimal(response.body.count, to: &buffer)
            append("\r\n", to: &buffer)
        }
        if !keepAlive {
            append("Connection: close\r\n", to: &buffer)
        } else if version == .http1_0 {
            append("Connection: keep-alive\r\n", to: &buffer)
        }
        append("\r\n", to: &buffer)
        if hasBody { buffer.append(contentsOf: response.body) }
    }

    /// The status line, the response's own fields (sanitised, minus those the serializer owns)
    /// and Date: what a whole response and a streamed one share.
    private static func appendStatusLineAndFields(of response: HTTPResponse, to buffer: inout [UInt8]) {
        append("HTTP/1.1 ", to: &buffer)
        appendDecimal(response.status.code, to: &buffer)
        buffer.append(ASCII.space)
        appendSanitized(response.status.reason, to: &buffer)
        append("\r\n", to: &buffer)
        for field in response.headers where !isOwnedBySerializer(field.name) {
            appendSanitized(field.name, to: &buffer)
            append(": ", to: &buffer)
            appendSanitized(field.value, to: &buffer)
            append("\r\n", to: &buffer)
        }
        append("Date: ", to: &buffer)
        DateCache.appendCurrent(to: &buffer)
        append("\r\n", to: &buffer)
    }

    /// How a streamed body is delimited.
    public enum StreamFraming: Sendable, Equatable {
        /// `Transfer-Encoding: chunked`: each piece is a chunk, the end is the last chunk and the
        /// connection may serve another request (HTTP/1.1).
        case chunked
        /// No framing: the body ends when the connection closes (HTTP/1.0 peers, which know no
        /// chunked coding; the head says `Connection: close`).
        case untilClose
    }

    /// The framing a streamed response to a request of `version` uses.
    public static func streamFraming(for version: HTTPVersion) -> StreamFraming {
        version.minor >= 1 ? .chunked : .untilClose
    }

    /// The head of a streamed response: status line, the response's headers, Date, then
    /// `Transfer-Encoding: chunked` (or, with `.untilClose`, `Connection: close` whatever
    /// `keepAlive` says), and `Connection` as `serialize` writes it. The response's body is not
    /// written: send it as the first piece. Statuses without a body (1xx, 204, 304) get neither
    /// framing header; their stream must end at once.
    public static func serializeStreamHead(
        _ response: HTTPResponse, version: HTTPVersion, keepAlive: Bool, framing: StreamFraming, into buffer: inout [UInt8]
    ) {
        let code = response.status.code
        let hasBody = !(100...199).contains(code) && code != 204 && code != 304
        buffer.reserveCapacity(buffer.count + 160 + response.headers.count * 48)
        appendStatusLineAndFields(of: response, to: &buffer)
        if hasBody && framing == .chunked { append("Transfer-Encoding: chunked\r\n", to: &buffer) }
        if !keepAlive || (hasBody && framing == .untilClose) {
            append("Connection: close\r\n", to: &buffer)
        } else if version == .http1_0 {
            append("Connection: keep-alive\r\n", to: &buffer)
        }
        append("\r\n", to: &buffer)
    }

    /// One piece of a streamed body, framed: `size-in-hex CRLF bytes CRLF` for `.chunked`, the
    /// bytes as they are for `.untilClose`. An empty piece writes nothing (an empty chunk would
    /// end the body).
    public static func appendChunk(_ bytes: [UInt8], framing: StreamFraming, into buffer: inout [UInt8]) {
        guard !bytes.isEmpty else { return }
        if framing == .chunked {
            appendHexadecimal(bytes.count, to: &buffer)
            append("\r\n", to: &buffer)
            buffer.append(contentsOf: bytes)
            append("\r\n", to: &buffer)
        } else {
            buffer.append(contentsOf: bytes)
        }
    }

    /// The end of a chunked body: the last chunk and an empty trailer section.
    public static let lastChunk: [UInt8] = Array("0\r\n\r\n".utf8)

    private static func appendHexadecimal(_ value: Int, to buffer: inout [UInt8]) {
        let digits: StaticString = "0123456789abcdef"
        var shift = (Int.bitWidth - value.leadingZeroBitCount + 3) / 4 * 4
        if shift == 0 {
            buffer.append(0x30)
            return
        }
        while shift > 0 {
            shift -= 4
            buffer.append(digits.utf8Start[(value >> shift) & 0xF])
        }
    }

    @inline(__always)
    private static func append(_ literal: StaticString, to buffer: inout [UInt8]) {
        buffer.append(contentsOf: UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }

    private static func appendDecimal(_ value: Int, to buffer: inout [UInt8]) {
        if value < 0 {  // never for a status or a length; written plainly all the same
            buffer.append(0x2D)
            appendDecimal(0 - value, to: &buffer)
            return
        }
        var digits:
            (
                UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8
            ) =
                (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var start = 20
        var rest = value
        withUnsafeMutableBytes(of: &digits) { raw in
            repeat {
                start -= 1
                raw[start] = UInt8(truncatingIfNeeded: 0x30 + rest % 10)
                rest /= 10
            } while rest > 0
            buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[start...]))
        }
    }

    private static func appendSanitized(_ text: String, to buffer: inout [UInt8]) {
        let start = buffer.count
        buffer.append(contentsOf: text.utf8)
        for index in start..<buffer.count {
            let byte = buffer[index]
            if byte == ASCII.cr || byte == ASCII.lf || byte == 0 { buffer[index] = ASCII.space }
        }
    }

    private static func isOwnedBySerializer(_ name: String) -> Bool {
        switch name.utf8.count {
        case 4: asciiCaseInsensitiveEquals(name, "Date")
        case 10: asciiCaseInsensitiveEquals(name, "Connection")
        case 14: asciiCaseInsensitiveEquals(name, "Content-Length")
        case 17: asciiCaseInsensitiveEquals(name, "Transfer-Encoding")
        default: false
        }
    }
}

/// The IMF-fixdate of the current second (RFC 9110 §5.6.7), rebuilt when the
/// second changes. Shared by every connection, so behind a lock.
enum DateCache {
    private struct Entry {
        var second: Int = -1
        var text: [UInt8] = []
    }

    private static let entry = Mutex(Entry())

    static func appendCurrent(to buffer: inout [UInt8]) {
        let now = Int(time(nil))
        entry.withLock { entry in
            if entry.second != now {
                entry.text = format(epochSeconds: now)
                entry.second = now
            }
            buffer.append(contentsOf: entry.text)
        }
    }

    /// `Sun, 06 Nov 1994 08:49:37 GMT`
    static func format(epochSeconds: Int) -> [UInt8] {
        var seconds = time_t(epochSeconds)
        var parts = tm()
        _ = gmtime_r(&seconds, &parts)
        let days: [StaticString] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months: [StaticString] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        var text: [UInt8] = []
        text.reserveCapacity(29)
        func appendName(_ name: StaticString) {
            text.append(contentsOf: UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
        }
        func appendTwoDigits(_ value: Int32) {
            text.append(UInt8(truncatingIfNeeded: 0x30 + value / 10 % 10))
            text.append(UInt8(truncatingIfNeeded: 0x30 + value % 10))
        }
        appendName(days[Int(parts.tm_wday) % 7])
        appendName(", ")
        appendTwoDigits(parts.tm_mday)
        text.append(ASCII.space)
        appendName(months[Int(parts.tm_mon) % 12])
        text.append(ASCII.space)
        let year = parts.tm_year + 1900
        appendTwoDigits(year / 100)
        appendTwoDigits(year % 100)
        text.append(ASCII.space)
        appendTwoDigits(parts.tm_hour)
        text.append(0x3A)
        appendTwoDigits(parts.tm_min)
        text.append(0x3A)
        appendTwoDigits(parts.tm_sec)
        appendName(" GMT")
        return text
    }
}
