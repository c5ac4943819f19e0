// Field sections (the header section and the trailer section): finding where
// one ends, then parsing its lines strictly (RFC 9112 §5, RFC 9110 §5).
//
// Finding the end only measures: a section is validated once it is complete,
// so the error for a given input never depends on how it was split.

/// Where the search for the end of a field section stands, kept between
/// appends so no byte is searched twice. Offsets are relative to the first
/// unconsumed byte of the parser's buffer.
struct SectionScan: Sendable, Equatable {
    var lineStart: Int
    var searchFrom: Int

    init(at offset: Int) {
        lineStart = offset
        searchFrom = offset
    }

    /// The offset just past the empty line that ends the section starting at
    /// `sectionStart`, or nil when more bytes are needed. Throws `tooLarge`
    /// as soon as the section (counted through its final CRLF) must exceed `limit`.
    mutating func findEnd(
        in bytes: UnsafeBufferPointer<UInt8>, sectionStart: Int, limit: Int, tooLarge: HTTPParseError
    ) throws(HTTPParseError) -> Int? {
        while true {
            guard let lf = ASCII.firstIndex(of: ASCII.lf, in: bytes, from: searchFrom, to: bytes.count) else {
                searchFrom = bytes.count
                // The final LF is not here yet, so the section is longer than this.
                if bytes.count - sectionStart >= limit { throw tooLarge }
                return nil
            }
            if lf + 1 - sectionStart > limit { throw tooLarge }
            let length = lf - lineStart
            if length == 0 || (length == 1 && bytes[lineStart] == ASCII.cr) { return lf + 1 }
            lineStart = lf + 1
            searchFrom = lf + 1
        }
    }
}

/// What the header fields say about framing, the connection and
/// expectations, gathered while the fields are parsed.
struct FramingFields {
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

    /// Notes one field; `value` is already trimmed and validated.
    mutating func note(
        _ bytes: UnsafeBufferPointer<UInt8>, name: Range<Int>, value: Range<Int>
    ) throws(HTTPParseError) {
        switch name.count {
        case 4 where ASCII.equalsIgnoringCase(bytes, name, "host"):
            hostCount += 1
            for index in value where !ASCII.isHostByte(bytes[index]) { throw .invalidHost }
        case 6 where ASCII.equalsIgnoringCase(bytes, name, "expect"):
            for element in ListElements(bytes, value) where !element.isEmpty {
                if ASCII.equalsIgnoringCase(bytes, element, "100-continue") {
                    expectsContinue = true
                } else {
                    hasUnsupportedExpectation = true
                }
            }
        case 10 where ASCII.equalsIgnoringCase(bytes, name, "connection"):
            for element in ListElements(bytes, value) {
                if ASCII.equalsIgnoringCase(bytes, element, "close") { connectionClose = true }
                if ASCII.equalsIgnoringCase(bytes, element, "keep-alive") { connectionKeepAlive = true }
            }
        case 14 where ASCII.equalsIgnoringCase(bytes, name, "content-length"):
            try noteContentLength(bytes, value)
        case 17 where ASCII.equalsIgnoringCase(bytes, name, "transfer-encoding"):
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
        default:
            break
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

enum FieldLines {
    /// Parses the complete field section `bytes[start..<end]` (`end` is past
    /// the final empty line) into `headers`, noting framing fields when
    /// `framing` is given.
    static func parse(
        _ bytes: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int,
        maxCount: Int, tooMany: HTTPParseError,
        into headers: inout HTTPHeaders, framing: inout FramingFields, noteFraming: Bool
    ) throws(HTTPParseError) {
        var lineStart = start
        while lineStart < end {
            // The section is complete, so every line has its LF.
            let lf = ASCII.firstIndex(of: ASCII.lf, in: bytes, from: lineStart, to: end) ?? end - 1
            guard lf > lineStart, bytes[lf - 1] == ASCII.cr else { throw .bareLineFeed }
            let lineEnd = lf - 1
            if lineEnd == lineStart { return }  // the empty line
            if headers.count >= maxCount { throw tooMany }

            if ASCII.isWhitespace(bytes[lineStart]) { throw .obsoleteLineFolding }
            guard let colon = ASCII.firstIndex(of: ASCII.colon, in: bytes, from: lineStart, to: lineEnd) else {
                throw .missingColon
            }
            if colon == lineStart { throw .invalidFieldName }
            if ASCII.isWhitespace(bytes[colon - 1]) { throw .whitespaceBeforeColon }
            for index in lineStart..<colon where !ASCII.isTokenByte(bytes[index]) { throw .invalidFieldName }
            for index in (colon + 1)..<lineEnd where !ASCII.isFieldValueByte(bytes[index]) {
                throw .invalidFieldValue
            }
            let name = lineStart..<colon
            let value = ASCII.trimmingWhitespace(bytes, (colon + 1)..<lineEnd)
            if noteFraming { try framing.note(bytes, name: name, value: value) }
            headers.add(name: ASCII.string(bytes, name), value: ASCII.string(bytes, value))
            lineStart = lf + 1
        }
    }
}
