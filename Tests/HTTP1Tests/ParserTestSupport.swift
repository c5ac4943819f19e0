import Testing

@testable import HTTP1

/// What feeding some bytes to a parser produced: every event in order, and
/// the error that stopped it, if any.
struct ParseOutcome: Equatable, CustomStringConvertible {
    var events: [HTTPParserEvent] = []
    var error: HTTPParseError?
    /// Whether the parser was idle once everything was fed (and it did not fail).
    var endedIdle = false

    var requests: [HTTPRequest] {
        events.compactMap { if case .request(let request) = $0 { request } else { nil } }
    }

    var heads: [HTTPRequestHead] {
        events.compactMap { if case .head(let head) = $0 { head } else { nil } }
    }

    var description: String { "events: \(events.count), requests: \(requests.count), error: \(String(describing: error))" }
}

/// Feeds `bytes` in pieces that end at each of `cuts` (ascending offsets),
/// draining events after each piece.
func parse(_ bytes: [UInt8], cuts: [Int] = [], limits: HTTPLimits = HTTPLimits()) -> ParseOutcome {
    var parser = HTTPRequestParser(limits: limits)
    var outcome = ParseOutcome()
    var start = 0
    for end in cuts + [bytes.count] where end >= start {
        bytes[start..<end].withUnsafeBytes { parser.append($0) }
        start = end
        do {
            // Bounded: each event consumes input, so there are fewer than bytes.count + 2.
            for _ in 0...(bytes.count + 2) {
                guard let event = try parser.next() else { break }
                outcome.events.append(event)
            }
        } catch {
            outcome.error = error
            return outcome
        }
    }
    outcome.endedIdle = parser.isIdle
    return outcome
}

func parse(_ text: String, limits: HTTPLimits = HTTPLimits()) -> ParseOutcome {
    parse(Array(text.utf8), limits: limits)
}

/// Parses `bytes` whole, split in two at every offset, and one byte at a
/// time; records an issue unless every way gives the same outcome. Returns
/// the outcome of the whole parse.
@discardableResult
func parseEverySplit(
    _ bytes: [UInt8], limits: HTTPLimits = HTTPLimits(), sourceLocation: SourceLocation = #_sourceLocation
) -> ParseOutcome {
    let whole = parse(bytes, limits: limits)
    for offset in 0...bytes.count {
        let split = parse(bytes, cuts: [offset], limits: limits)
        if split != whole {
            Issue.record("split at \(offset) gave \(split), whole gave \(whole)", sourceLocation: sourceLocation)
            break
        }
    }
    let byteByByte = parse(bytes, cuts: Array(0..<bytes.count), limits: limits)
    #expect(byteByByte == whole, "byte by byte", sourceLocation: sourceLocation)
    return whole
}

@discardableResult
func parseEverySplit(
    _ text: String, limits: HTTPLimits = HTTPLimits(), sourceLocation: SourceLocation = #_sourceLocation
) -> ParseOutcome {
    parseEverySplit(Array(text.utf8), limits: limits, sourceLocation: sourceLocation)
}

extension HTTPHeaders {
    var pairs: [String] { fields.map { "\($0.name): \($0.value)" } }
}

extension HTTPLimits {
    static func with(_ change: (inout HTTPLimits) -> Void) -> HTTPLimits {
        var limits = HTTPLimits()
        change(&limits)
        return limits
    }
}
