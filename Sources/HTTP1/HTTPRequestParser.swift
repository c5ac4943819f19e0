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
// Heads, chunk-size lines and trailers are checked byte by byte as they
// arrive (RequestLineScan, FieldSectionScan, ChunkLineScan), so garbage is
// refused at its first bad byte instead of holding the connection until a
// timeout; the verdict never depends on how the bytes were split.
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
    /// The scans' progress lives in stored properties (`headScan`,
    /// `chunkLine`, `trailerScan`), not in payloads: a small enum is cheap to
    /// switch on and assign, and each scan is updated in place.
    private enum Phase: Sendable, Equatable {
        case head
        case fixedBody(length: Int)
        case chunkSizeLine
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
        case failed(HTTPParseError)
    }

    /// Progress through a head. Offsets are relative to `readIndex`.
    private struct HeadScan: Sendable, Equatable {
        var emptyLinesSkipped = 0
        var line = RequestLineScan()
        /// Just past the request line's LF, once it has been found.
        var requestLineEnd: Int?
        var section = FieldSectionScan(at: 0)
        var framing = FramingFields()
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
    private var phase = Phase.head
    private var headScan = HeadScan()
    /// The head's fields so far, collected as each line is checked.
    private var headFields = HTTPHeaders()
    private var chunkLine = ChunkLineScan()
    private var trailerScan = FieldSectionScan(at: 0)
    /// The emitted head whose body is being read.
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    /// The trailer fields so far.
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
        guard case .head = phase else { return false }
        return headScan.requestLineEnd == nil && readIndex == buffer.count
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
            case .head:
                return try readHead()
            case .fixedBody(let length):
                guard buffer.count - readIndex >= length else { return nil }
                if length > 0 { body = Array(buffer[readIndex..<(readIndex + length)]) }
                readIndex += length
                return finishRequest()
            case .chunkSizeLine:
                guard try readChunkSizeLine() else { return nil }
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
                chunkLine = ChunkLineScan()
                phase = .chunkSizeLine
            case .trailers:
                guard try readTrailers() else { return nil }
                return finishRequest()
            case .failed(let error):
                throw error
            }
        }
    }

    // MARK: Head

    private mutating func readHead() throws(HTTPParseError) -> HTTPParserEvent? {
        // Nothing unconsumed, so nothing new to scan (the common call between requests).
        guard readIndex < buffer.count else { return nil }
        // Leading CRLFs before a request line are skipped, a few at most.
        while headScan.requestLineEnd == nil, headScan.line.position == 0, readIndex < buffer.count {
            let first = buffer[readIndex]
            if first == ASCII.lf { throw .bareLineFeed }
            guard first == ASCII.cr else { break }
            guard readIndex + 1 < buffer.count else { return nil }
            guard buffer[readIndex + 1] == ASCII.lf else { break }
            headScan.emptyLinesSkipped += 1
            if headScan.emptyLinesSkipped > Self.maxLeadingEmptyLines { throw .tooManyEmptyLinesBeforeRequest }
            readIndex += 2
        }

        let limits = self.limits
        let offset = readIndex
        // The scan updates `headScan` and `headFields` in place (no copy in
        // and out per call); they are disjoint from `buffer`.
        let parsed: (head: HTTPRequestHead, length: Int)? = try buffer.withUnsafeBufferPointer { whole throws(HTTPParseError) in
            let bytes = UnsafeBufferPointer(rebasing: whole[offset...])
            guard let end = try scanHead(bytes, limits) else { return nil }
            let headers = headFields
            headFields = HTTPHeaders()
            let head = try RequestHeadParser.build(
                bytes, line: headScan.line, headers: headers, framing: headScan.framing, limits: limits)
            return (head, end)
        }
        guard let (head, length) = parsed else { return nil }
        headScan = HeadScan()
        readIndex += length
        self.head = head
        if head.isChunked {
            chunkLine = ChunkLineScan()
            phase = .chunkSizeLine
        } else {
            phase = .fixedBody(length: head.contentLength ?? 0)
        }
        return .head(head)
    }

    /// The length of the head (through its empty line), or nil when more bytes
    /// are needed; throws at the first byte that makes the head invalid.
    private mutating func scanHead(_ bytes: UnsafeBufferPointer<UInt8>, _ limits: HTTPLimits) throws(HTTPParseError) -> Int? {
        if headScan.requestLineEnd == nil {
            guard let lineEnd = try headScan.line.scan(bytes, maxLength: limits.maxRequestLineBytes) else { return nil }
            headScan.requestLineEnd = lineEnd
            headScan.section = FieldSectionScan(at: lineEnd)
            headFields.reserveCapacity(16)
        }
        return try headScan.section.scan(
            bytes, limit: limits.maxHeaderBytes, tooLarge: .headerSectionTooLarge, maxCount: limits.maxHeaderCount,
            tooMany: .tooManyHeaderFields, framing: &headScan.framing, noteFraming: true, into: &headFields)
    }

    // MARK: Chunked body

    /// Reads one chunk-size line; false when more bytes are needed.
    private mutating func readChunkSizeLine() throws(HTTPParseError) -> Bool {
        let offset = readIndex
        let maxSize = limits.maxBodyBytes - body.count
        let length: Int? = try buffer.withUnsafeBufferPointer { whole throws(HTTPParseError) in
            try chunkLine.scan(UnsafeBufferPointer(rebasing: whole[offset...]), maxSize: maxSize, maxLength: Self.maxChunkLineBytes)
        }
        guard let length else { return false }
        readIndex += length
        if chunkLine.size == 0 {
            trailerScan = FieldSectionScan(at: 0)
            phase = .trailers
        } else {
            phase = .chunkData(remaining: chunkLine.size)
        }
        return true
    }

    /// Reads the trailer section into `trailers`; false when more bytes are needed.
    private mutating func readTrailers() throws(HTTPParseError) -> Bool {
        let limits = self.limits
        let offset = readIndex
        let end: Int? = try buffer.withUnsafeBufferPointer { whole throws(HTTPParseError) in
            var unused = FramingFields()
            return try trailerScan.scan(
                UnsafeBufferPointer(rebasing: whole[offset...]), limit: limits.maxTrailerBytes, tooLarge: .trailerSectionTooLarge,
                maxCount: limits.maxHeaderCount, tooMany: .tooManyTrailerFields, framing: &unused, noteFraming: false,
                into: &trailers)
        }
        guard let end else { return false }
        readIndex += end
        return true
    }

    // MARK: Completion and buffer

    private mutating func finishRequest() -> HTTPParserEvent? {
        guard let head else { return nil }  // unreachable: a body phase always follows a head
        let request = HTTPRequest(head: head, body: body, trailers: trailers)
        self.head = nil
        body = []
        trailers = HTTPHeaders()
        phase = .head
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
