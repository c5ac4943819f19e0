// Turns a complete request head (request line, header section, empty line)
// into an HTTPRequestHead, deciding the body's framing (RFC 9112 §3, §6).

enum RequestHeadParser {
    /// Parses `bytes[0..<end]`, a complete head whose request line ends
    /// (LF included) at `requestLineEnd`.
    static func parse(
        _ bytes: UnsafeBufferPointer<UInt8>, requestLineEnd: Int, end: Int, limits: HTTPLimits
    ) throws(HTTPParseError) -> HTTPRequestHead {
        guard requestLineEnd >= 2, bytes[requestLineEnd - 2] == ASCII.cr else { throw .bareLineFeed }
        let lineEnd = requestLineEnd - 2

        // method SP request-target SP HTTP-version, single spaces.
        guard let firstSpace = ASCII.firstIndex(of: ASCII.space, in: bytes, from: 0, to: lineEnd) else {
            throw .invalidRequestLine
        }
        var lastSpace = lineEnd - 1
        while lastSpace > firstSpace, bytes[lastSpace] != ASCII.space { lastSpace -= 1 }
        guard lastSpace > firstSpace else { throw .invalidRequestLine }

        let version = try parseVersion(bytes, (lastSpace + 1)..<lineEnd)
        let method = 0..<firstSpace
        if method.isEmpty { throw .invalidMethod }
        for index in method where !ASCII.isTokenByte(bytes[index]) { throw .invalidMethod }
        let target = (firstSpace + 1)..<lastSpace
        try validateTarget(bytes, target, isOptions: ASCII.equalsCaseSensitive(bytes, method, "OPTIONS"))

        var headers = HTTPHeaders()
        headers.reserveCapacity(16)
        var framing = FramingFields()
        try FieldLines.parse(
            bytes, from: requestLineEnd, to: end, maxCount: limits.maxHeaderCount, tooMany: .tooManyHeaderFields,
            into: &headers, framing: &framing, noteFraming: true)

        if framing.hostCount > 1 { throw .multipleHost }
        if framing.hostCount == 0 && version == .http1_1 { throw .missingHost }

        var contentLength: Int? = framing.contentLength ?? 0
        if framing.hasTransferEncoding {
            if framing.contentLength != nil { throw .contentLengthWithTransferEncoding }
            if version == .http1_0 { throw .transferEncodingInHTTP10 }
            if !framing.lastCodingIsChunked || framing.chunkedCount != 1 { throw .chunkedNotFinalCoding }
            if framing.hasOtherCoding { throw .unsupportedTransferCoding }
            contentLength = nil
        }
        if let length = contentLength, length > limits.maxBodyBytes { throw .bodyTooLarge }

        // An HTTP/1.0 client cannot expect anything (RFC 9110 §10.1.1).
        var expectation = HTTPExpectation.none
        if version == .http1_1 {
            if framing.hasUnsupportedExpectation { throw .unsupportedExpectation }
            if framing.expectsContinue { expectation = .continue100 }
        }

        let keepAlive = version == .http1_1
            ? !framing.connectionClose
            : framing.connectionKeepAlive && !framing.connectionClose

        return HTTPRequestHead(
            method: ASCII.string(bytes, method), target: ASCII.string(bytes, target), version: version,
            headers: headers, keepAlive: keepAlive, expectation: expectation,
            contentLength: contentLength, isChunked: framing.hasTransferEncoding)
    }

    /// `HTTP/1.0` is 1.0; `HTTP/1.x` for any other digit is served as 1.1
    /// (RFC 9110 §2.5); another major is refused.
    private static func parseVersion(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) throws(HTTPParseError) -> HTTPVersion {
        guard range.count == 8,
            ASCII.equalsCaseSensitive(bytes, range.lowerBound..<(range.lowerBound + 5), "HTTP/"),
            ASCII.isDigit(bytes[range.lowerBound + 5]),
            bytes[range.lowerBound + 6] == 0x2E,
            ASCII.isDigit(bytes[range.lowerBound + 7])
        else { throw .invalidVersion }
        if bytes[range.lowerBound + 5] != 0x31 { throw .unsupportedVersion }
        return bytes[range.lowerBound + 7] == 0x30 ? .http1_0 : .http1_1
    }

    /// origin-form (`/path?query`), absolute-form (`scheme://...`), or `*`
    /// for OPTIONS. Authority-form (CONNECT) is refused: this is no proxy.
    private static func validateTarget(
        _ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, isOptions: Bool
    ) throws(HTTPParseError) {
        guard let first = range.first else { throw .invalidRequestTarget }
        if bytes[first] == ASCII.asterisk && range.count == 1 {
            if isOptions { return }
            throw .invalidRequestTarget
        }
        if bytes[first] != ASCII.slash {
            // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then "://"
            var index = first
            guard ASCII.lowercased(bytes[index]) &- 0x61 < 26 else { throw .invalidRequestTarget }
            while index < range.upperBound {
                let byte = bytes[index]
                if byte == ASCII.colon { break }
                guard ASCII.lowercased(byte) &- 0x61 < 26 || ASCII.isDigit(byte) || byte == 0x2B || byte == 0x2D
                    || byte == 0x2E
                else { throw .invalidRequestTarget }
                index += 1
            }
            guard range.upperBound - index >= 3, bytes[index + 1] == ASCII.slash, bytes[index + 2] == ASCII.slash else {
                throw .invalidRequestTarget
            }
        }
        var index = first
        while index < range.upperBound {
            let byte = bytes[index]
            guard ASCII.isTargetByte(byte) else { throw .invalidRequestTarget }
            if byte == ASCII.percent {
                guard range.upperBound - index >= 3,
                    ASCII.hexValue(bytes[index + 1]) != nil, ASCII.hexValue(bytes[index + 2]) != nil
                else { throw .invalidRequestTarget }
                index += 3
            } else {
                index += 1
            }
        }
    }
}
