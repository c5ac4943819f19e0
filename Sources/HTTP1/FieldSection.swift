// Field sections (the header section and the trailer section): checked one
// byte at a time as bytes arrive, so a malformed line is refused at its first
// bad byte rather than when the section (or a timeout) ends, and each field
// collected as soon as its line is complete (RFC 9112 §5, RFC 9110 §5).
//
// Every verdict depends only on the bytes up to the one that decides it, and
// no byte past the size limit is ever looked at, so the error for a given
// input never depends on how it was split.

/// Where the scan of a field section stands, kept between appends so no byte
/// is looked at twice. Offsets are relative to the first unconsumed byte of
/// the parser's buffer.
struct FieldSectionScan: Sendable, Equatable {
    private enum State: UInt8, Sendable {
        /// At the first byte of a line.
        case lineStart
        case name
        /// Whitespace after a name: an error either way, which one depends on
        /// whether a colon follows.
        case nameWhitespace
        case value
        /// CR at the end of a value; LF must follow.
        case valueCR
        /// CR of the empty line that ends the section.
        case finalCR
    }

    /// The fields the parser looks at, told apart once, at the colon.
    fileprivate enum Kind: UInt8, Sendable {
        case other, host, contentLength, expect, connection, transferEncoding

        /// Whether the value is checked beyond field-value syntax while it arrives.
        var checksValue: Bool { self == .host || self == .contentLength }
    }

    /// Where a Host value stands: leading OWS, the host itself, trailing OWS.
    private enum HostPhase: UInt8, Sendable { case leading, host, trailing }

    let sectionStart: Int
    private var position: Int
    private var state = State.lineStart
    private var lineStart: Int
    private var colon = 0
    private var kind = Kind.other
    private var hostPhase = HostPhase.leading
    private var host = HostScan()
    /// Complete field lines so far.
    private(set) var count = 0

    init(at offset: Int) {
        sectionStart = offset
        position = offset
        lineStart = offset
    }

    /// Checks the bytes not looked at yet. Returns the offset just past the
    /// empty line that ends the section, or nil when more bytes are needed.
    /// Throws at the first byte that cannot belong to a valid section, and
    /// `tooLarge` as soon as the section (counted through its final CRLF) must
    /// exceed `limit`. Each complete field is added to `fields` and, with
    /// `noteFraming`, noted in `framing`.
    mutating func scan(
        _ bytes: UnsafeBufferPointer<UInt8>, limit: Int, tooLarge: HTTPParseError, maxCount: Int,
        tooMany: HTTPParseError, framing: inout FramingFields, noteFraming: Bool, into fields: inout HTTPHeaders
    ) throws(HTTPParseError) -> Int? {
        // Nothing past the limit is looked at: it could only be too much.
        let end = min(bytes.count, sectionStart + limit)
        var index = position
        // Locals, so the loop keeps them in registers; written back on the way out.
        var state = self.state
        var lineStart = self.lineStart
        var count = self.count
        defer {
            self.state = state
            self.lineStart = lineStart
            self.count = count
        }
        while index < end {
            let byte = bytes[index]
            switch state {
            case .lineStart:
                if byte == ASCII.cr {
                    state = .finalCR
                } else if byte == ASCII.lf {
                    throw .bareLineFeed
                } else {
                    if count >= maxCount { throw tooMany }
                    if ASCII.isWhitespace(byte) { throw .obsoleteLineFolding }
                    guard ASCII.isTokenByte(byte) else { throw .invalidFieldName }
                    lineStart = index
                    state = .name
                }
                index += 1
            case .name:
                while index < end, ASCII.isTokenByte(bytes[index]) { index += 1 }
                guard index < end else { break }
                let next = bytes[index]
                if next == ASCII.colon {
                    colon = index
                    kind = Self.kind(bytes, lineStart..<index)
                    if kind == .host {
                        hostPhase = .leading
                        host = HostScan()
                    }
                    state = .value
                } else if ASCII.isWhitespace(next) {
                    state = .nameWhitespace
                } else {
                    throw Self.nameError(next)
                }
                index += 1
            case .nameWhitespace:
                if byte == ASCII.colon { throw .whitespaceBeforeColon }
                guard ASCII.isWhitespace(byte) else { throw Self.nameError(byte) }
                index += 1
            case .value:
                if !kind.checksValue {
                    while index < end, ASCII.isFieldValueByte(bytes[index]) { index += 1 }
                    guard index < end else { break }
                } else {
                    while index < end, ASCII.isFieldValueByte(bytes[index]) {
                        // The long runs of a Host value (name, port) in tight loops; the rest byte by byte.
                        if kind == .host, hostPhase == .host {
                            let next = host.skipRun(bytes, from: index, to: end)
                            if next > index {
                                index = next
                                continue
                            }
                        }
                        try checkValueByte(bytes, at: index)
                        index += 1
                    }
                    guard index < end else { break }
                }
                let next = bytes[index]
                if next == ASCII.lf { throw .bareLineFeed }
                guard next == ASCII.cr else { throw .invalidFieldValue }
                if kind == .host && !host.isComplete { throw .invalidHost }
                state = .valueCR
                index += 1
            case .valueCR:
                guard byte == ASCII.lf else { throw .invalidFieldValue }  // a bare CR inside a value
                count += 1
                let value = ASCII.trimmingWhitespace(bytes, (colon + 1)..<(index - 1))
                if noteFraming && kind != .other { try framing.note(kind, bytes, value: value) }
                fields.add(name: ASCII.string(bytes, lineStart..<colon), value: ASCII.string(bytes, value))
                state = .lineStart
                index += 1
            case .finalCR:
                // A CR that starts a line and is not followed by LF begins no valid name.
                guard byte == ASCII.lf else { throw .invalidFieldName }
                position = index + 1
                return index + 1
            }
        }
        position = index
        if index - sectionStart >= limit { throw tooLarge }
        return nil
    }

    /// The error for `byte` ending a field name where a colon belongs.
    @inline(__always)
    private static func nameError(_ byte: UInt8) -> HTTPParseError {
        if byte == ASCII.lf { return .bareLineFeed }
        if byte == ASCII.cr { return .missingColon }
        return .invalidFieldName
    }

    @inline(__always)
    private static func kind(_ bytes: UnsafeBufferPointer<UInt8>, _ name: Range<Int>) -> Kind {
        switch name.count {
        case 4 where ASCII.equalsIgnoringCase(bytes, name, "host"): .host
        case 6 where ASCII.equalsIgnoringCase(bytes, name, "expect"): .expect
        case 10 where ASCII.equalsIgnoringCase(bytes, name, "connection"): .connection
        case 14 where ASCII.equalsIgnoringCase(bytes, name, "content-length"): .contentLength
        case 17 where ASCII.equalsIgnoringCase(bytes, name, "transfer-encoding"): .transferEncoding
        default: .other
        }
    }

    /// The checks of a Host or Content-Length value that need no more than
    /// the bytes so far; `bytes[index]` is a field-value byte.
    @inline(__always)
    private mutating func checkValueByte(_ bytes: UnsafeBufferPointer<UInt8>, at index: Int) throws(HTTPParseError) {
        let byte = bytes[index]
        switch kind {
        case .other, .expect, .connection, .transferEncoding:
            break
        case .contentLength:
            guard ASCII.isDigit(byte) || byte == ASCII.comma || ASCII.isWhitespace(byte) else {
                throw .invalidContentLength
            }
        case .host:
            switch hostPhase {
            case .leading:
                if ASCII.isWhitespace(byte) { return }
                hostPhase = .host
                guard host.accept(bytes, at: index) else { throw .invalidHost }
            case .host:
                if ASCII.isWhitespace(byte) {
                    guard host.isComplete else { throw .invalidHost }
                    hostPhase = .trailing
                    return
                }
                guard host.accept(bytes, at: index) else { throw .invalidHost }
            case .trailing:
                guard ASCII.isWhitespace(byte) else { throw .invalidHost }
            }
        }
    }
}

/// What the header fields say about framing, the connection and
/// expectations, gathered while the fields are parsed.
struct FramingFields: Sendable, Equatable {
    var hostCount = 0
    var contentLength: Int?
    var hasTransferEncoding = false
    var chunkedCount = 0
    var lastCodingIsChunked = false
    var hasOtherCoding = false
    var connectionClose = false
    var connectionKeepAlive = false
    var expectsContinue = false
    var hasUnsupportedExpectation = false

    /// Notes one field of `kind`; `value` is already trimmed and validated.
    fileprivate mutating func note(
        _ kind: FieldSectionScan.Kind, _ bytes: UnsafeBufferPointer<UInt8>, value: Range<Int>
    ) throws(HTTPParseError) {
        switch kind {
        case .other:
            break
        case .host:
            hostCount += 1  // its syntax is checked while it arrives (FieldSectionScan)
        case .expect:
            for element in ListElements(bytes, value) where !element.isEmpty {
                if ASCII.equalsIgnoringCase(bytes, element, "100-continue") {
                    expectsContinue = true
                } else {
                    hasUnsupportedExpectation = true
                }
            }
        case .connection:
            for element in ListElements(bytes, value) {
                if ASCII.equalsIgnoringCase(bytes, element, "close") { connectionClose = true }
                if ASCII.equalsIgnoringCase(bytes, element, "keep-alive") { connectionKeepAlive = true }
            }
        case .contentLength:
            try noteContentLength(bytes, value)
        case .transferEncoding:
            hasTransferEncoding = true
            for element in ListElements(bytes, value) where !element.isEmpty {
                if ASCII.equalsIgnoringCase(bytes, element, "chunked") {
                    chunkedCount += 1
                    lastCodingIsChunked = true
                } else {
                    hasOtherCoding = true
                    lastCodingIsChunked = false
                }
            }
        }
    }

    /// `Content-Length: 5, 5` is one length (RFC 9110 §8.6); differing values are not.
    private mutating func noteContentLength(_ bytes: UnsafeBufferPointer<UInt8>, _ value: Range<Int>) throws(HTTPParseError) {
        for element in ListElements(bytes, value) {
            if element.isEmpty { throw .invalidContentLength }
            var length = 0
            for index in element {
                let byte = bytes[index]
                guard ASCII.isDigit(byte) else { throw .invalidContentLength }
                // Saturate: any length this large is over every limit.
                length = length > (Int.max - 9) / 10 ? Int.max : length * 10 + Int(byte &- 0x30)
            }
            if let previous = contentLength, previous != length { throw .conflictingContentLength }
            contentLength = length
        }
    }
}

/// The comma-separated elements of a list value, each trimmed of SP/HTAB
/// (possibly empty).
struct ListElements: Sequence, IteratorProtocol {
    let bytes: UnsafeBufferPointer<UInt8>
    let end: Int
    var start: Int
    var done = false

    init(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) {
        self.bytes = bytes
        end = range.upperBound
        start = range.lowerBound
    }

    mutating func next() -> Range<Int>? {
        if done { return nil }
        let comma = ASCII.firstIndex(of: ASCII.comma, in: bytes, from: start, to: end) ?? end
        let element = ASCII.trimmingWhitespace(bytes, start..<comma)
        if comma == end { done = true } else { start = comma + 1 }
        return element
    }
}
