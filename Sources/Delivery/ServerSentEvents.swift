// Server-Sent Events (WHATWG HTML, "Server-sent events"), both ways, pure: the encoder the
// consumer API writes its stream with, and an incremental parser (a value-type state machine like
// the HTTP1 parser: bytes in, events out, whatever the split) for the clients in this project
// and the tests. No Foundation, no I/O.

/// One event as the stream carries it.
public struct ServerSentEvent: Sendable, Hashable {
    /// The `id` field; the client sends the last one back as `Last-Event-ID` when it reconnects.
    public var id: String?
    /// The `event` field; nil means "message".
    public var event: String?
    /// The `data` lines, joined with LF.
    public var data: String

    public init(id: String? = nil, event: String? = nil, data: String) {
        self.id = id
        self.event = event
        self.data = data
    }
}

public enum ServerSentEvents {
    /// The media type of a stream.
    public static let contentType = "text/event-stream; charset=utf-8"

    /// `id: …`, `event: …`, one `data: …` line for each line of `data` (split at CRLF, CR or LF,
    /// which a field value cannot hold), then the empty line that dispatches it. CR, LF and NUL
    /// in `id` and `event` are dropped, so no value can start a field of its own.
    public static func encode(id: String?, event: String?, data: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(data.count + 48)
        if let id { appendField("id", sanitized(id), to: &bytes) }
        if let event { appendField("event", sanitized(event), to: &bytes) }
        var lineStart = 0
        var index = 0
        while index < data.count {
            let byte = data[index]
            if byte == 0x0A || byte == 0x0D {
                appendField("data", data[lineStart..<index], to: &bytes)
                if byte == 0x0D && index + 1 < data.count && data[index + 1] == 0x0A { index += 1 }
                lineStart = index + 1
            }
            index += 1
        }
        appendField("data", data[lineStart..<data.count], to: &bytes)
        bytes.append(0x0A)
        return bytes
    }

    /// A comment (`: text`): ignored by clients; keeps proxies and idle timers from closing the stream.
    public static func comment(_ text: String) -> [UInt8] {
        Array(": ".utf8) + sanitized(text) + [0x0A, 0x0A]
    }

    /// `retry: ms`: how long a client waits before reconnecting.
    public static func retry(milliseconds: Int) -> [UInt8] {
        Array("retry: \(max(0, milliseconds))\n\n".utf8)
    }

    private static func sanitized(_ text: String) -> [UInt8] {
        text.utf8.filter { $0 != 0x0A && $0 != 0x0D && $0 != 0 }
    }

    private static func appendField(_ name: StaticString, _ value: some Collection<UInt8>, to bytes: inout [UInt8]) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
        bytes.append(contentsOf: [0x3A, 0x20])
        bytes.append(contentsOf: value)
        bytes.append(0x0A)
    }
}

/// Reads a stream as the specification's "interpreting an event stream" does: lines end at CRLF,
/// CR or LF (a CR at the end of the input waits for the next byte); a leading BOM is skipped;
/// `:` lines are comments; `field: value` loses one space after the colon; unknown fields are
/// ignored; an empty line dispatches the event if it has data. `id` persists from event to event
/// (the last event id), and an `id` holding NUL is ignored. Bounded: a line longer than
/// `maxLineBytes`, or event data beyond `maxEventBytes`, is an error.
public struct ServerSentEventParser: Sendable {
    public enum ParseError: Error, Sendable, Hashable {
        case lineTooLong
        case eventTooLarge
    }

    public let maxLineBytes: Int
    public let maxEventBytes: Int
    /// The last event id seen (what a reconnecting client sends as `Last-Event-ID`).
    public private(set) var lastEventID: String?
    /// The last `retry` value seen, in milliseconds.
    public private(set) var retryMilliseconds: Int?

    private var line: [UInt8] = []
    private var lastWasCR = false
    /// Bytes of a BOM matched at the very start; nil once past it.
    private var bomMatched: Int? = 0
    private var data: [UInt8] = []
    private var hasData = false
    private var eventType: String?
    private var pending: [ServerSentEvent] = []

    private static let byteOrderMark: [UInt8] = [0xEF, 0xBB, 0xBF]

    public init(maxLineBytes: Int = 1 << 20, maxEventBytes: Int = 4 << 20) {
        self.maxLineBytes = maxLineBytes
        self.maxEventBytes = maxEventBytes
    }

    /// Feeds `bytes` and returns the events they complete, in order.
    public mutating func append(_ bytes: some Sequence<UInt8>) throws(ParseError) -> [ServerSentEvent] {
        defer { pending = [] }
        for byte in bytes {
            if let matched = bomMatched {
                if byte == Self.byteOrderMark[matched] {
                    bomMatched = matched + 1 == Self.byteOrderMark.count ? nil : matched + 1
                    continue
                }
                bomMatched = nil
                for partial in Self.byteOrderMark[0..<matched] { try take(partial) }
            }
            try take(byte)
        }
        return pending
    }

    private mutating func take(_ byte: UInt8) throws(ParseError) {
        if lastWasCR {
            lastWasCR = false
            if byte == 0x0A { return }  // the LF of a CRLF
        }
        switch byte {
        case 0x0D:
            lastWasCR = true
            try endLine()
        case 0x0A:
            try endLine()
        default:
            guard line.count < maxLineBytes else { throw .lineTooLong }
            line.append(byte)
        }
    }

    private mutating func endLine() throws(ParseError) {
        defer { line.removeAll(keepingCapacity: true) }
        if line.isEmpty {
            dispatch()
            return
        }
        if line[0] == 0x3A { return }  // a comment
        let name: ArraySlice<UInt8>
        var value: ArraySlice<UInt8>
        if let colon = line.firstIndex(of: 0x3A) {
            name = line[..<colon]
            value = line[(colon + 1)...]
            if value.first == 0x20 { value = value.dropFirst() }
        } else {
            name = line[...]
            value = []
        }
        switch String(decoding: name, as: UTF8.self) {
        case "data":
            if hasData { data.append(0x0A) }
            data.append(contentsOf: value)
            hasData = true
            guard data.count <= maxEventBytes else { throw .eventTooLarge }
        case "event":
            eventType = String(decoding: value, as: UTF8.self)
        case "id":
            if !value.contains(0) { lastEventID = String(decoding: value, as: UTF8.self) }
        case "retry":
            if !value.isEmpty, value.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                let milliseconds = Int(String(decoding: value, as: UTF8.self))
            {
                retryMilliseconds = milliseconds
            }
        default:
            break
        }
    }

    private mutating func dispatch() {
        defer {
            data = []
            hasData = false
            eventType = nil
        }
        guard hasData else { return }
        let type = eventType.flatMap { $0.isEmpty ? nil : $0 }
        pending.append(ServerSentEvent(id: lastEventID, event: type, data: String(decoding: data, as: UTF8.self)))
    }
}
