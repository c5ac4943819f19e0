// What a consumer API request asks for, read from its target and headers. Pure and strict: each
// bad parameter (malformed, out of range, repeated, unknown) is refused naming it, so a typo such
// as `requestID=` is a 400 rather than a filter silently dropped.
import CallbackStore
import HTTP1

/// A request the consumer API understood.
enum ConsumerAPIRequest: Equatable, Sendable {
    /// `GET /v1/callbacks`
    case list(ListQuery)
    /// `GET /v1/callbacks/ID`
    case callback(id: Int64)
    /// `GET /v1/stream`
    case stream(StreamQuery)

    struct ListQuery: Equatable, Sendable {
        var after: Int64 = 0
        var limit = ConsumerAPIRequest.defaultLimit
        var filter = CallbackFilter()
        /// Zero: answer at once.
        var wait: Duration = .zero
    }

    struct StreamQuery: Equatable, Sendable {
        /// From `Last-Event-ID` when the client reconnects, else `after`.
        var after: Int64 = 0
        var filter = CallbackFilter()
    }

    static let defaultLimit = 100
    static let maxLimit = 1000
    static let maxWaitSeconds = 60
}

/// Why a request is not one the API serves, with the answer it gets.
struct ConsumerAPIRefusal: Error, Equatable, Sendable {
    var status: HTTPStatus
    var message: String
    /// The parameter (or header) at fault, named in the error body.
    var parameter: String?
    var headers: HTTPHeaders = HTTPHeaders()

    static func badParameter(_ name: String, _ message: String) -> ConsumerAPIRefusal {
        ConsumerAPIRefusal(status: .badRequest, message: "\(name): \(message)", parameter: name)
    }
}

extension ConsumerAPIRequest {
    /// Routes and reads `head` (its method is checked by the caller).
    init(head: HTTPRequestHead) throws(ConsumerAPIRefusal) {
        let parameters = try Self.parameters(head.query)
        let path = head.path
        if path == "/v1/callbacks" {
            self = .list(try Self.listQuery(parameters))
        } else if path.hasPrefix("/v1/callbacks/") {
            let text = path.dropFirst("/v1/callbacks/".count)
            guard let id = Self.id(text), id > 0 else {
                throw .badParameter("id", "expected a callback id (a positive integer)")
            }
            try Self.refuseUnknown(parameters, allowed: [])
            self = .callback(id: id)
        } else if path == "/v1/stream" {
            self = .stream(try Self.streamQuery(parameters, lastEventID: head.headers.values(for: "Last-Event-ID")))
        } else {
            throw ConsumerAPIRefusal(status: .notFound, message: "no such resource; see /v1/callbacks and /v1/stream", parameter: nil)
        }
    }

    private static func listQuery(_ parameters: [(name: String, value: String)]) throws(ConsumerAPIRefusal) -> ListQuery {
        try refuseUnknown(parameters, allowed: ["after", "limit", "service", "requestId", "deviceId", "includeDuplicates", "wait"])
        var query = ListQuery()
        for (name, value) in parameters {
            switch name {
            case "after": query.after = try cursor(value, name: name)
            case "limit":
                guard let limit = Int(value), (1...maxLimit).contains(limit), value.utf8.allSatisfy(isDigit) else {
                    throw .badParameter(name, "expected an integer from 1 to \(maxLimit)")
                }
                query.limit = limit
            case "wait":
                guard let seconds = Double(value), seconds >= 0, seconds <= Double(maxWaitSeconds),
                    value.utf8.allSatisfy({ isDigit($0) || $0 == UInt8(ascii: ".") })
                else {
                    throw .badParameter(name, "expected seconds from 0 to \(maxWaitSeconds)")
                }
                query.wait = .milliseconds(Int64((seconds * 1000).rounded()))
            default: try applyFilter(name, value, to: &query.filter)
            }
        }
        return query
    }

    private static func streamQuery(
        _ parameters: [(name: String, value: String)], lastEventID: [String]
    ) throws(ConsumerAPIRefusal) -> StreamQuery {
        try refuseUnknown(parameters, allowed: ["after", "service", "requestId", "deviceId", "includeDuplicates"])
        var query = StreamQuery()
        for (name, value) in parameters {
            if name == "after" {
                query.after = try cursor(value, name: name)
            } else {
                try applyFilter(name, value, to: &query.filter)
            }
        }
        guard lastEventID.count <= 1 else { throw .badParameter("Last-Event-ID", "given more than once") }
        if let resume = lastEventID.first {
            // A reconnecting EventSource keeps its URL (and its `after`): the header says where it got to.
            query.after = try cursor(resume.trimmingSpaces, name: "Last-Event-ID")
        }
        return query
    }

    private static func applyFilter(_ name: String, _ value: String, to filter: inout CallbackFilter) throws(ConsumerAPIRefusal) {
        switch name {
        case "service":
            guard !value.isEmpty else { throw .badParameter(name, "expected a service name such as CarrierService") }
            filter.service = value
        case "requestId":
            guard !value.isEmpty else { throw .badParameter(name, "expected a ThingSpace requestId") }
            filter.requestID = value
        case "deviceId":
            guard !value.isEmpty else { throw .badParameter(name, "expected a device id (IMEI, ICCID, MDN…)") }
            filter.deviceID = value
        case "includeDuplicates":
            switch value {
            case "true": filter.includeDuplicates = true
            case "false": filter.includeDuplicates = false
            default: throw .badParameter(name, "expected true or false")
            }
        default:
            throw .badParameter(name, "unknown parameter")
        }
    }

    private static func cursor(_ value: String, name: String) throws(ConsumerAPIRefusal) -> Int64 {
        guard let id = Self.id(value[...]) else { throw .badParameter(name, "expected a callback id (0 or a positive integer)") }
        return id
    }

    /// Decimal digits only (no sign, no spaces), within Int64.
    private static func id(_ text: Substring) -> Int64? {
        guard !text.isEmpty, text.utf8.count <= 19, text.utf8.allSatisfy(isDigit) else { return nil }
        return Int64(text)
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

    private static func refuseUnknown(_ parameters: [(name: String, value: String)], allowed: Set<String>) throws(ConsumerAPIRefusal) {
        if let unknown = parameters.first(where: { !allowed.contains($0.name) }) {
            throw .badParameter(unknown.name, allowed.isEmpty ? "this resource takes no parameters" : "unknown parameter")
        }
    }

    /// `name=value&…`, percent-decoded (`+` is a space, as in forms); a name twice is refused.
    static func parameters(_ query: Substring?) throws(ConsumerAPIRefusal) -> [(name: String, value: String)] {
        guard let query, !query.isEmpty else { return [] }
        var parameters: [(name: String, value: String)] = []
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let rawName = parts[0]
            guard let name = percentDecoded(rawName), !name.isEmpty else {
                throw .badParameter(String(decoding: rawName.utf8.prefix(64), as: UTF8.self), "malformed parameter name")
            }
            guard let value = percentDecoded(parts.count > 1 ? parts[1] : "") else {
                throw .badParameter(name, "malformed percent-encoding")
            }
            guard !parameters.contains(where: { $0.name == name }) else { throw .badParameter(name, "given more than once") }
            parameters.append((name, value))
        }
        return parameters
    }

    /// nil for a bad `%` escape or bytes that are not UTF-8.
    private static func percentDecoded(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "+"):
                bytes.append(0x20)
            case UInt8(ascii: "%"):
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else { return nil }
                bytes.append(high << 4 | low)
            default:
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: byte - 0x30
        case 0x41...0x46: byte - 0x41 + 10
        case 0x61...0x66: byte - 0x61 + 10
        default: nil
        }
    }
}

extension String {
    fileprivate var trimmingSpaces: String {
        var text = self[...]
        while text.first == " " || text.first == "\t" { text = text.dropFirst() }
        while text.last == " " || text.last == "\t" { text = text.dropLast() }
        return String(text)
    }
}
