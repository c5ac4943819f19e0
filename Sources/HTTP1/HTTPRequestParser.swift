// The incremental request parser: a state machine over an internal byte
// buffer. Bytes arrive in any chunks; `next()` yields the head of each request
// as soon as it is complete and acceptable, then the whole request once its
// body (and trailers) have arrived.
//
//   head ──(Content-Length)──▶ fixedBody ───────────────────────────────┐
//     │                                                                 ▼
//     └──(chunked)──▶ chunkSizeLine ⇄ chunkData → chunkDataEnd    request ──▶ head
//                          └──(size 0)──▶ trailers ─────────────────────┘
//
// Any error moves to `failed`, which keeps throwing the same error.

public enum HTTPParserEvent: Sendable, Equatable {
    /// The head is complete and acceptable; emitted before any body byte is
    /// needed (the server uses it for 100-continue and body timeouts).
    case head(HTTPRequestHead)
    /// The complete request: head, whole de-chunked body, trailers.
    case request(HTTPRequest)
}

public struct HTTPRequestParser: Sendable {
    private enum Phase: Sendable, Equatable {
        case head(HeadScan)
        case fixedBody(length: Int)
        case chunkSizeLine(searchFrom: Int)
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers(SectionScan)
        case failed(HTTPParseError)
    }

    /// Progress through a head. Offsets are relative to `readIndex`.
    private struct HeadScan: Sendable, Equatable {
        var emptyLinesSkipped = 0
        /// Just past the request line's LF, once it has been found.
        var requestLineEnd: Int?
        var lines = SectionScan(at: 0)
    }

    /// Empty lines tolerated before a request line (RFC 9112 §2.2).
    private static let maxLeadingEmptyLines = 8
    /// Longest chunk-size line, extensions and CRLF included.
    static let maxChunkLineBytes = 4096
    /// Consumed bytes kept before the buffer is compacted.
    private static let compactionThreshold = 4096

    private let limits: HTTPLimits
    private var buffer: [UInt8] = []
    /// The first byte not yet consumed; every offset in `phase` is relative to it.
    private var readIndex = 0
    private var phase = Phase.head(HeadScan())
    /// The emitted head whose body is being read.
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var trailers = HTTPHeaders()

    public init(limits: HTTPLimits = HTTPLimits()) {
        self.limits = limits
    }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        compactIfWorthwhile()
        // Typed, so the copy is one memcpy rather than a byte-by-byte loop.
        buffer.append(contentsOf: UnsafeBufferPointer(start: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), count: bytes.count))
    }

    /// Convenience for tests.
    public mutating func append<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
        compactIfWorthwhile()
        buffer.append(contentsOf: bytes)
    }

    /// True between requests with no byte of the next one buffered.
    public var isIdle: Bool {
        guard case .head(let scan) = phase else { return false }
        return scan.requestLineEnd == nil && readIndex == buffer.count
    }

    /// The head has been emitted and its body is not complete.
    public var isReadingBody: Bool {
        switch phase {
        case .fixedBody, .chunkSizeLine, .chunkData, .chunkDataEnd, .trailers: true
        case .head, .failed: false
        }
    }

    /// Received bytes not yet consumed by a parsed element.
    public var bufferedByteCount: Int { buffer.count - readIndex }

    /// The next event, or nil when more bytes are needed. Call repeatedly until
    /// nil (pipelined requests in one buffer). After a throw the parser is
    /// finished: every later call throws the same error.
    public mutating func next() throws(HTTPParseError) -> HTTPParserEvent? {
        if case .failed(let error) = phase { throw error }
        do {
            return try advance()
        } catch {
            phase = .failed(error)
            throw error
        }
    }

    private mutating func advance() throws(HTTPParseError) -> HTTPParserEvent? {
        while true {
            switch phase {
            case .head(let scan):
                return try readHead(scan)
            case .fixedBody(let length):
                guard buffer.count - readIndex >= length else { return nil }
                if length > 0 { body = Array(buffer[readIndex..<(readIndex + length)]) }
                readIndex += length
                return finishRequest()
            case .chunkSizeLine(let searchFrom):
                guard try readChunkSizeLine(searchFrom: searchFrom) else { return nil }
            case .chunkData(let remaining):
                let count = min(remaining, buffer.count - readIndex)
                if count == 0 { return nil }
                body.append(contentsOf: buffer[readIndex..<(readIndex + count)])
                readIndex += count
                phase = count == remaining ? .chunkDataEnd : .chunkData(remaining: remaining - count)
            case .chunkDataEnd:
                let available = buffer.count - readIndex
                if available >= 1 && buffer[readIndex] != ASCII.cr { throw .missingChunkTerminator }
                if available >= 2 && buffer[readIndex + 1] != ASCII.lf { throw .missingChunkTerminator }
                guard available >= 2 else { return nil }
                readIndex += 2
                phase = .chunkSizeLine(searchFrom: 0)
            case .trailers(let scan):
                guard try readTrailers(scan) else { return nil }
                return finishRequest()
            case .failed(let error):
                throw error
            }
        }
    }

    // MARK: Head

    private mutating func readHead(_ start: HeadScan) throws(HTTPParseError) -> HTTPParserEvent? {
        var scan = start
        // Leading CRLFs before a request line are skipped, a few at most.
        while scan.requestLineEnd == nil, scan.lines.searchFrom == 0, readIndex < buffer.count {
            let first = buffer[readIndex]
            if first == ASCII.lf { throw .bareLineFeed }
            guard first == ASCII.cr else { break }
            guard readIndex + 1 < buffer.count else {
                phase = .head(scan)
                return nil
            }
            guard buffer[readIndex + 1] == ASCII.lf else { break }
            scan.emptyLinesSkipped += 1
            if scan.emptyLinesSkipped > Self.maxLeadingEmptyLines { throw .tooManyEmptyLinesBeforeRequest }
            readIndex += 2
        }

        let limits = self.limits
        let offset = readIndex
        let parsed: (head: HTTPRequestHead, length: Int)? = try buffer.withUnsafeBufferPointer { whole throws(HTTPParseError) in
            let bytes = UnsafeBufferPointer(rebasing: whole[offset...])
            guard let end = try Self.findHeadEnd(bytes, &scan, limits), let requestLineEnd = scan.requestLineEnd else {
                return nil
            }
            return (try RequestHeadParser.parse(bytes, requestLineEnd: requestLineEnd, end: end, limits: limits), end)
        }
        guard let (head, length) = parsed else {
            phase = .head(scan)
            return nil
        }
        readIndex += length
        self.head = head
        phase = head.isChunked ? .chunkSizeLine(searchFrom: 0) : .fixedBody(length: head.contentLength ?? 0)
        return .head(head)
    }

    /// The length of the head (through its empty line), or nil when more bytes
    /// are needed. Only lengths are checked here; content is checked once complete.
    private static func findHeadEnd(
        _ bytes: UnsafeBufferPointer<UInt8>, _ scan: inout HeadScan, _ limits: HTTPLimits
    ) throws(HTTPParseError) -> Int? {
        if scan.requestLineEnd == nil {
            guard let lf = ASCII.firstIndex(of: ASCII.lf, in: bytes, from: scan.lines.searchFrom, to: bytes.count) else {
                scan.lines.searchFrom = bytes.count
                // A trailing CR may be the line's end; anything else belongs to the line.
                let partial = bytes.count - (bytes.last == ASCII.cr ? 1 : 0)
                if partial > limits.maxRequestLineBytes { throw .requestLineTooLong }
                return nil
            }
            let length = lf - (lf > 0 && bytes[lf - 1] == ASCII.cr ? 1 : 0)
            if length > limits.maxRequestLineBytes { throw .requestLineTooLong }
            scan.requestLineEnd = lf + 1
            scan.lines = SectionScan(at: lf + 1)
        }
        guard let requestLineEnd = scan.requestLineEnd else { return nil }
        return try scan.lines.findEnd(
            in: bytes, sectionStart: requestLineEnd, limit: limits.maxHeaderBytes, tooLarge: .headerSectionTooLarge)
    }

    // MARK: Chunked body

    /// Reads one chunk-size line; false when more bytes are needed.
    private mutating func readChunkSizeLine(searchFrom: Int) throws(HTTPParseError) -> Bool {
        let offset = readIndex
        let line: (length: Int, size: Int)? = try buffer.withUnsafeBufferPointer { whole throws(HTTPParseError) in
            let bytes = UnsafeBufferPointer(rebasing: whole[offset...])
            guard let lf = ASCII.firstIndex(of: ASCII.lf, in: bytes, from: searchFrom, to: bytes.count) else {
                if bytes.count >= Self.maxChunkLineBytes { throw .chunkLineTooLong }
                return nil
            }
            if lf + 1 > Self.maxChunkLineBytes { throw .chunkLineTooLong }
            return (lf + 1, try Self.parseChunkSize(bytes, lineFeed: lf))
        }
        guard let line else {
            phase = .chunkSizeLine(searchFrom: buffer.count - readIndex)
            return false
        }
        if line.size > limits.maxBodyBytes - body.count { throw .bodyTooLarge }
        readIndex += line.length
        phase = line.size == 0 ? .trailers(SectionScan(at: 0)) : .chunkData(remaining: line.size)
        return true
    }

    /// chunk-size [ chunk-ext ] CRLF, with the extensions skipped (RFC 9112 §7.1).
    /// A size too large for Int saturates; the body limit refuses it.
    private static func parseChunkSize(_ bytes: UnsafeBufferPointer<UInt8>, lineFeed lf: Int) throws(HTTPParseError) -> Int {
        guard lf >= 1, bytes[lf - 1] == ASCII.cr else { throw .bareLineFeed }
        let end = lf - 1
        var index = 0
        var size = 0
        while index < end, let digit = ASCII.hexValue(bytes[index]) {
            size = size > (Int.max - 15) / 16 ? Int.max : size * 16 + digit
            index += 1
        }
        if index == 0 { throw .invalidChunkSize }
        var afterSpace = index
        while afterSpace < end, ASCII.isWhitespace(bytes[afterSpace]) { afterSpace += 1 }
        if afterSpace < end {
            guard bytes[afterSpace] == ASCII.semicolon else { throw .invalidChunkSize }
            for position in (afterSpace + 1)..<end where !ASCII.isFieldValueByte(bytes[position]) {
                throw .invalidChunkExtension
            }
        } else if afterSpace != index {
            throw .invalidChunkSize  // whitespace with no extension after it
        }
        return size
    }

    /// Reads the trailer section; false when more bytes are needed.
    private mutating func readTrailers(_ start: SectionScan) throws(HTTPParseError) -> Bool {
        var scan = start
        let limits = self.limits
        let offset = readIndex
        var fields = HTTPHeaders()
        let end: Int? = try buffer.withUnsafeBufferPointer { whole throws(HTTPParseError) in
            let bytes = UnsafeBufferPointer(rebasing: whole[offset...])
            guard let end = try scan.findEnd(
                in: bytes, sectionStart: 0, limit: limits.maxTrailerBytes, tooLarge: .trailerSectionTooLarge)
            else { return nil }
            var unused = FramingFields()
            try FieldLines.parse(
                bytes, from: 0, to: end, maxCount: limits.maxHeaderCount, tooMany: .tooManyTrailerFields,
                into: &fields, framing: &unused, noteFraming: false)
            return end
        }
        guard let end else {
            phase = .trailers(scan)
            return false
        }
        readIndex += end
        trailers = fields
        return true
    }

    // MARK: Completion and buffer

    private mutating func finishRequest() -> HTTPParserEvent? {
        guard let head else { return nil }  // unreachable: a body phase always follows a head
        let request = HTTPRequest(head: head, body: body, trailers: trailers)
        self.head = nil
        body = []
        trailers = HTTPHeaders()
        phase = .head(HeadScan())
        return .request(request)
    }

    /// Drops consumed bytes: for free when all are consumed, otherwise only
    /// when the consumed prefix is large and outweighs what must move.
    private mutating func compactIfWorthwhile() {
        guard readIndex > 0 else { return }
        if readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            readIndex = 0
        } else if readIndex >= Self.compactionThreshold && readIndex >= buffer.count - readIndex {
            buffer.removeSubrange(0..<readIndex)
            readIndex = 0
        }
    }
}
