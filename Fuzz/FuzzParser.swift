// libFuzzer entry point for the HTTP/1.1 request parser. Compiled together
// with Sources/HTTP1/*.swift into one module by Fuzz/run (so no import).
//
// For every input it checks, and traps on any violation:
//   1. Splitting: parsing the input whole, split in two at an offset derived
//      from the input, and in chunks whose sizes derive from the input, all
//      give the same events and the same error.
//   2. Event shape: heads and requests alternate, each request carries the
//      head emitted before it, bodies respect the limit and Content-Length.
//   3. Round trip: each parsed request, written back out canonically
//      (re-chunked when it was chunked), parses to an equal request.
//   4. The serializer, fed the parsed headers and body, writes a head whose
//      only line breaks are its own CRLFs.
// Limits alternate between the defaults and small ones, so every limit is hit.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzParserTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    var random = FuzzRandom(seed: fnv1a(input))
    let limits = random.next() & 1 == 0 ? HTTPLimits() : FuzzRandom.smallLimits

    let whole = fuzzParse(input, limits: limits, chunkSizes: nil)
    let splitAt = Int(random.next() % UInt64(input.count + 1))
    let split = fuzzParse(input, limits: limits, chunkSizes: [splitAt])
    var sizes: [Int] = []
    var covered = 0
    while covered < input.count {
        let piece = 1 + Int(random.next() % (random.next() & 1 == 0 ? 8 : 300))
        sizes.append(piece)
        covered += piece
    }
    let chunked = fuzzParse(input, limits: limits, chunkSizes: sizes)
    guard whole == split else { fatalError("split at \(splitAt) differs: \(whole) vs \(split)") }
    guard whole == chunked else { fatalError("chunks \(sizes) differ: \(whole) vs \(chunked)") }

    checkEventShape(whole, limits: limits)
    for event in whole.events {
        guard case .request(let request) = event else { continue }
        checkRoundTrip(request, limits: limits)
        checkSerializer(request)
    }
    return 0
}

struct FuzzOutcome: Equatable {
    var events: [HTTPParserEvent] = []
    var error: HTTPParseError?
    var endedIdle = false
}

/// Feeds `input` in pieces (`chunkSizes` are lengths; nil means whole) and drains events.
func fuzzParse(_ input: [UInt8], limits: HTTPLimits, chunkSizes: [Int]?) -> FuzzOutcome {
    var parser = HTTPRequestParser(limits: limits)
    var outcome = FuzzOutcome()
    var start = 0
    var pieces = chunkSizes ?? [input.count]
    pieces.append(input.count)  // whatever is left
    for length in pieces where start <= input.count {
        let end = min(input.count, start + length)
        input[start..<end].withUnsafeBytes { parser.append($0) }
        start = end
        do {
            var drained = 0
            while let event = try parser.next() {
                outcome.events.append(event)
                drained += 1
                // Each event consumes at least one byte, apart from a head with its empty body.
                guard drained <= 2 * input.count + 2 else { fatalError("next() does not stop") }
            }
        } catch {
            outcome.error = error
            return outcome
        }
        if start == input.count { break }
    }
    guard parser.bufferedByteCount >= 0, parser.bufferedByteCount <= input.count else {
        fatalError("bufferedByteCount \(parser.bufferedByteCount) out of range")
    }
    outcome.endedIdle = parser.isIdle
    if parser.isIdle && parser.isReadingBody { fatalError("idle while reading a body") }
    return outcome
}

func checkEventShape(_ outcome: FuzzOutcome, limits: HTTPLimits) {
    var pendingHead: HTTPRequestHead?
    for event in outcome.events {
        switch event {
        case .head(let head):
            guard pendingHead == nil else { fatalError("two heads in a row") }
            guard head.version == .http1_0 || head.version == .http1_1 else { fatalError("version \(head.version)") }
            guard head.isChunked == (head.contentLength == nil) else { fatalError("framing \(head)") }
            if let length = head.contentLength, length < 0 || length > limits.maxBodyBytes {
                fatalError("content length \(length) accepted")
            }
            guard head.headers.count <= limits.maxHeaderCount else { fatalError("too many headers accepted") }
            pendingHead = head
        case .request(let request):
            guard let head = pendingHead, head == request.head else { fatalError("request without its head") }
            guard request.body.count <= limits.maxBodyBytes else { fatalError("body over the limit") }
            if let length = head.contentLength, request.body.count != length { fatalError("body length differs") }
            if !head.isChunked && request.trailers.count != 0 { fatalError("trailers without chunked") }
            pendingHead = nil
        }
    }
}

/// Writes `request` out canonically and parses it again; it must come back equal.
func checkRoundTrip(_ request: HTTPRequest, limits: HTTPLimits) {
    let head = request.head
    var bytes = Array("\(head.method) \(head.target) \(head.version)\r\n".utf8)
    for field in head.headers {
        bytes += Array("\(field.name): \(field.value)\r\n".utf8)
    }
    bytes += [13, 10]
    if head.isChunked {
        if !request.body.isEmpty {
            bytes += Array("\(String(request.body.count, radix: 16))\r\n".utf8) + request.body + [13, 10]
        }
        bytes += Array("0\r\n".utf8)
        for field in request.trailers {
            bytes += Array("\(field.name): \(field.value)\r\n".utf8)
        }
        bytes += [13, 10]
    } else {
        bytes += request.body
    }
    // The canonical form may be a little longer (": " after each name), so
    // give the limits room; the content must still be accepted.
    var roomy = limits
    roomy.maxRequestLineBytes = max(limits.maxRequestLineBytes, bytes.count)
    roomy.maxHeaderBytes = max(limits.maxHeaderBytes, bytes.count)
    roomy.maxTrailerBytes = max(limits.maxTrailerBytes, bytes.count)
    let again = fuzzParse(bytes, limits: roomy, chunkSizes: nil)
    guard again.error == nil, again.events.count == 2, again.events[1] == .request(request) else {
        fatalError("round trip differs: \(request) became \(again)")
    }
}

/// The serializer must never let a header or reason break a line.
func checkSerializer(_ request: HTTPRequest) {
    let response = HTTPResponse(
        status: HTTPStatus(code: 200 + request.body.count % 300, reason: request.head.target),
        headers: request.head.headers, body: request.body)
    var buffer: [UInt8] = []
    HTTPResponseSerializer.serialize(response, version: request.head.version, keepAlive: request.head.keepAlive, into: &buffer)
    // Every CR and LF in the head is part of a CRLF, up to the first empty line.
    var index = 0
    while index + 1 < buffer.count {
        let byte = buffer[index]
        if byte == 10 { fatalError("bare LF in the response head") }
        if byte == 13 {
            guard buffer[index + 1] == 10 else { fatalError("bare CR in the response head") }
            if index + 3 < buffer.count, buffer[index + 2] == 13, buffer[index + 3] == 10 { return }
            index += 2
            continue
        }
        if byte == 0 { fatalError("NUL in the response head") }
        index += 1
    }
    fatalError("response head has no end")
}

func fnv1a(_ bytes: [UInt8]) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes {
        hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
    }
    return hash
}

/// xorshift64*: a deterministic stream from the input's hash.
struct FuzzRandom {
    var state: UInt64

    init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }

    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }

    static let smallLimits: HTTPLimits = {
        var limits = HTTPLimits()
        limits.maxRequestLineBytes = 64
        limits.maxHeaderBytes = 128
        limits.maxHeaderCount = 4
        limits.maxBodyBytes = 64
        limits.maxTrailerBytes = 48
        return limits
    }()
}
