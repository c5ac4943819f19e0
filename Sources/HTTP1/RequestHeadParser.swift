// The request line, checked one byte at a time as it arrives (so a bad method,
// target or version is refused at its first bad byte, not when a timeout
// ends the wait for the line), and the complete head turned into an
// HTTPRequestHead with the body's framing decided (RFC 9112 §3, §6).

/// Where the scan of the request line stands, kept between appends.
/// Offsets are relative to the request line's first byte.
struct RequestLineScan: Sendable, Equatable {
    private enum State: UInt8, Sendable {
        case method
        case targetStart
        /// origin-form path and query, and the path and query of absolute-form.
        case path
        case pathPercent1
        case pathPercent2
        case asterisk
        case scheme
        case schemeSlash1
        case schemeSlash2
        case authority
        case version
        /// CR after the version; LF must follow.
        case lineFeed
    }

    private var state = State.method
    private(set) var position = 0
    /// The method is `0..<methodEnd`.
    private(set) var methodEnd = 0
    private(set) var targetStart = 0
    private(set) var targetEnd = 0
    private var versionStart = 0
    private(set) var version = HTTPVersion.http1_1
    private var isAsterisk = false
    private var host = HostScan()

    /// Checks the bytes not looked at yet. Returns the offset just past the
    /// line's LF once it is complete, or nil when more bytes are needed.
    /// Throws at the first byte that cannot belong to a valid request line.
    mutating func scan(_ bytes: UnsafeBufferPointer<UInt8>, maxLength: Int) throws(HTTPParseError) -> Int? {
        var index = position
        let end = bytes.count
        defer { position = index }
        while index < end {
            let byte = bytes[index]
            // The line holds at most maxLength bytes before its CRLF.
            if index >= maxLength && state != .lineFeed && !(byte == ASCII.cr && index == maxLength) {
                throw .requestLineTooLong
            }
            switch state {
            case .method:
                // A token, in one tight loop (bounded by the length limit).
                let stop = min(end, maxLength)
                var next = index
                while next < stop, ASCII.isTokenByte(bytes[next]) { next += 1 }
                if next > index {
                    index = next
                    continue
                }
                if byte == ASCII.space {
                    guard index > 0 else { throw .invalidMethod }
                    methodEnd = index
                    targetStart = index + 1
                    state = .targetStart
                } else {
                    throw Self.lineError(byte, otherwise: .invalidMethod)
                }
            case .targetStart:
                if byte == ASCII.slash {
                    state = .path
                } else if byte == ASCII.asterisk {
                    state = .asterisk
                } else if ASCII.lowercased(byte) &- 0x61 < 26 {
                    state = .scheme
                } else {
                    throw Self.lineError(byte, otherwise: .invalidRequestTarget)
                }
            case .path:
                // The one long run of the line: a tight loop, bounded by the length limit.
                let stop = min(end, maxLength)
                var next = index
                while next < stop, ASCII.isTargetByte(bytes[next]) { next += 1 }
                if next > index {
                    index = next
                    continue
                }
                if byte == ASCII.percent {
                    state = .pathPercent1
                } else if byte == ASCII.space {
                    endTarget(at: index)
                } else {
                    throw Self.lineError(byte, otherwise: .invalidRequestTarget)
                }
            case .pathPercent1, .pathPercent2:
                guard ASCII.hexValue(byte) != nil else { throw Self.lineError(byte, otherwise: .invalidRequestTarget) }
                state = state == .pathPercent1 ? .pathPercent2 : .path
            case .asterisk:
                guard byte == ASCII.space else { throw Self.lineError(byte, otherwise: .invalidRequestTarget) }
                isAsterisk = true
                endTarget(at: index)
            case .scheme:
                // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ); only http and https name this server.
                if byte == ASCII.colon {
                    let scheme = targetStart..<index
                    guard ASCII.equalsIgnoringCase(bytes, scheme, "http") || ASCII.equalsIgnoringCase(bytes, scheme, "https")
                    else { throw .invalidRequestTarget }
                    state = .schemeSlash1
                } else if !(ASCII.lowercased(byte) &- 0x61 < 26 || ASCII.isDigit(byte) || byte == 0x2B || byte == 0x2D
                    || byte == 0x2E)
                {
                    throw Self.lineError(byte, otherwise: .invalidRequestTarget)
                }
            case .schemeSlash1, .schemeSlash2:
                guard byte == ASCII.slash else { throw Self.lineError(byte, otherwise: .invalidRequestTarget) }
                state = state == .schemeSlash1 ? .schemeSlash2 : .authority
            case .authority:
                // authority = host [ ":" port ]: an http(s) URI has a host and no userinfo (RFC 9110 §4.2).
                if byte == ASCII.slash || byte == ASCII.question || byte == ASCII.space {
                    guard host.isComplete, host.hasHost else { throw .invalidRequestTarget }
                    if byte == ASCII.space { endTarget(at: index) } else { state = .path }
                } else if !host.accept(bytes, at: index) {
                    throw Self.lineError(byte, otherwise: .invalidRequestTarget)
                }
            case .version:
                // The usual `HTTP/1.x` CR at once, when it is all here and within
                // the limit; anything else byte by byte, for the error at its byte.
                if index == versionStart, end - index > 8, index + 8 <= maxLength, Self.isHTTP1(bytes, at: index) {
                    version = bytes[index + 7] == 0x30 ? .http1_0 : .http1_1
                    state = .lineFeed
                    index += 9
                    continue
                }
                try scanVersion(byte, at: index - versionStart)
            case .lineFeed:
                guard byte == ASCII.lf else { throw .invalidVersion }
                // Checked once the version is known, so an HTTP/2 preface ("PRI * HTTP/2.0") gets 505.
                if isAsterisk && !ASCII.equalsCaseSensitive(bytes, 0..<methodEnd, "OPTIONS") {
                    throw .invalidRequestTarget
                }
                index += 1
                return index
            }
            index += 1
        }
        return nil
    }

    private mutating func endTarget(at index: Int) {
        targetEnd = index
        versionStart = index + 1
        state = .version
    }

    /// `HTTP/1.0` is 1.0; `HTTP/1.x` for any other digit is served as 1.1
    /// (RFC 9110 §2.5); another major is refused as soon as its digit arrives.
    @inline(__always)
    private mutating func scanVersion(_ byte: UInt8, at offset: Int) throws(HTTPParseError) {
        switch offset {
        case 0..<5:
            // "HTTP/". A space here means the target had one: it ended at the first.
            let expected: UInt8 = offset == 0 ? 0x48 : offset < 3 ? 0x54 : offset == 3 ? 0x50 : ASCII.slash
            guard byte == expected else { throw Self.versionError(byte) }
        case 5:
            guard ASCII.isDigit(byte) else { throw Self.versionError(byte) }
            if byte != 0x31 { throw .unsupportedVersion }
        case 6:
            guard byte == 0x2E else { throw Self.versionError(byte) }
        case 7:
            guard ASCII.isDigit(byte) else { throw Self.versionError(byte) }
            version = byte == 0x30 ? .http1_0 : .http1_1
        default:
            if byte == ASCII.cr {
                state = .lineFeed
            } else {
                throw Self.versionError(byte)
            }
        }
    }

    /// Whether `bytes[index...]` starts with `HTTP/1.` DIGIT CR.
    @inline(__always)
    private static func isHTTP1(_ bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> Bool {
        ASCII.equalsCaseSensitive(bytes, index..<(index + 7), "HTTP/1.") && ASCII.isDigit(bytes[index + 7])
            && bytes[index + 8] == ASCII.cr
    }

    @inline(__always)
    private static func versionError(_ byte: UInt8) -> HTTPParseError {
        byte == ASCII.lf ? .bareLineFeed : .invalidVersion
    }

    /// A line ending where more of the line was due: LF alone is a bare LF,
    /// CR means the line has no version; anything else is `otherwise`.
    @inline(__always)
    private static func lineError(_ byte: UInt8, otherwise: HTTPParseError) -> HTTPParseError {
        if byte == ASCII.lf { return .bareLineFeed }
        if byte == ASCII.cr { return .invalidRequestLine }
        return otherwise
    }
}

enum RequestHeadParser {
    /// Builds the head from a complete head in `bytes`, already checked byte
    /// by byte: its request line (`line`) and its fields (collected in
    /// `headers`, noted in `framing`). Only checks that need the whole head
    /// are left.
    static func build(
        _ bytes: UnsafeBufferPointer<UInt8>, line: RequestLineScan, headers: HTTPHeaders,
        framing: FramingFields, limits: HTTPLimits
    ) throws(HTTPParseError) -> HTTPRequestHead {
        let version = line.version
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

        let keepAlive =
            version == .http1_1
            ? !framing.connectionClose
            : framing.connectionKeepAlive && !framing.connectionClose

        return HTTPRequestHead(
            method: ASCII.string(bytes, 0..<line.methodEnd), target: ASCII.string(bytes, line.targetStart..<line.targetEnd),
            version: version, headers: headers, keepAlive: keepAlive, expectation: expectation,
            contentLength: contentLength, isChunked: framing.hasTransferEncoding)
    }
}
