// Request and response values shared by the parser, the serializer and the
// server. Plain values, no Foundation: they live on the hot path.

/// The protocol version of a request. A request line's `HTTP/1.x` with
/// x > 1 is served as 1.1 (RFC 9110 §2.5); other majors are refused (505).
public struct HTTPVersion: Sendable, Hashable, CustomStringConvertible {
    public var major: Int
    public var minor: Int
    public init(major: Int, minor: Int) {
        self.major = major
        self.minor = minor
    }
    public static let http1_0 = HTTPVersion(major: 1, minor: 0)
    public static let http1_1 = HTTPVersion(major: 1, minor: 1)
    public var description: String { "HTTP/\(major).\(minor)" }
}

/// An ordered list of header fields. Names keep their received spelling;
/// look-ups ignore ASCII case.
public struct HTTPHeaders: Sendable, Equatable, Sequence, ExpressibleByDictionaryLiteral {
    public private(set) var fields: [(name: String, value: String)]

    public init() { fields = [] }
    public init(_ fields: [(String, String)]) { self.fields = fields.map { (name: $0.0, value: $0.1) } }
    public init(dictionaryLiteral elements: (String, String)...) { self.init(elements) }

    public var count: Int { fields.count }
    public mutating func add(name: String, value: String) { fields.append((name: name, value: value)) }
    public mutating func reserveCapacity(_ minimumCapacity: Int) { fields.reserveCapacity(minimumCapacity) }
    public mutating func replaceOrAdd(name: String, value: String) {
        fields.removeAll { asciiCaseInsensitiveEquals($0.name, name) }
        fields.append((name: name, value: value))
    }
    public mutating func remove(name: String) { fields.removeAll { asciiCaseInsensitiveEquals($0.name, name) } }

    /// The first value of the field `name`, or nil.
    public subscript(name: String) -> String? {
        for field in fields where asciiCaseInsensitiveEquals(field.name, name) { return field.value }
        return nil
    }
    /// Every value of the field `name`, in received order.
    public func values(for name: String) -> [String] {
        fields.filter { asciiCaseInsensitiveEquals($0.name, name) }.map(\.value)
    }
    public func contains(_ name: String) -> Bool { self[name] != nil }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> { fields.makeIterator() }

    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        lhs.fields.count == rhs.fields.count
            && zip(lhs.fields, rhs.fields).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }
}

/// ASCII-only case-insensitive comparison (field names are tokens).
@inlinable
public func asciiCaseInsensitiveEquals(_ a: String, _ b: String) -> Bool {
    var ai = a.utf8.makeIterator()
    var bi = b.utf8.makeIterator()
    while true {
        switch (ai.next(), bi.next()) {
        case (nil, nil): return true
        case let (x?, y?):
            if x == y { continue }
            let lx = (x >= 65 && x <= 90) ? x | 0x20 : x
            let ly = (y >= 65 && y <= 90) ? y | 0x20 : y
            if lx != ly { return false }
        default: return false
        }
    }
}

/// What a request's `Expect` field asks for.
public enum HTTPExpectation: Sendable, Equatable {
    case none
    case continue100
    /// Any other expectation: answered 417.
    case unsupported(String)
}

/// The request line and header section of a request, with the framing the
/// parser derived from them.
public struct HTTPRequestHead: Sendable, Equatable {
    public var method: String
    /// The request-target exactly as received: origin-form (`/path?query`),
    /// absolute-form (`http://host/path?query`) or `*` (OPTIONS). See `path`.
    public var target: String
    public var version: HTTPVersion
    public var headers: HTTPHeaders
    /// Whether the connection stays open after this exchange (HTTP/1.1
    /// default yes unless `Connection: close`; HTTP/1.0 only with
    /// `Connection: keep-alive`).
    public var keepAlive: Bool
    public var expectation: HTTPExpectation
    /// The declared body length; nil for a chunked body.
    public var contentLength: Int?
    public var isChunked: Bool

    public init(
        method: String, target: String, version: HTTPVersion, headers: HTTPHeaders,
        keepAlive: Bool, expectation: HTTPExpectation = .none, contentLength: Int? = 0, isChunked: Bool = false
    ) {
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.keepAlive = keepAlive
        self.expectation = expectation
        self.contentLength = contentLength
        self.isChunked = isChunked
    }

    /// The path of the target, without the query: for origin-form the part
    /// before "?", for absolute-form (`http://host/path?query`, RFC 9112
    /// §3.2.2) the path after the authority, "/" when it is empty. Route on
    /// this, never on `target`.
    public var path: Substring {
        let utf8 = target.utf8
        var start = utf8.startIndex
        if let authority = absoluteFormAuthority { start = authority.upperBound }
        var end = start
        while end != utf8.endIndex, utf8[end] != UInt8(ascii: "?") { end = utf8.index(after: end) }
        if start == end && start != utf8.startIndex { return "/" }
        return target[start..<end]
    }

    /// Whether the method is one this server knows: those of RFC 9110 §9.3
    /// and PATCH (RFC 5789). A known method a resource does not allow is
    /// answered 405; any other (a valid token such as `BREW`) 501, since the
    /// server implements it for no resource (RFC 9110 §9.1, §15.6.2).
    /// Methods are case-sensitive: `get` is not GET.
    public var isKnownMethod: Bool {
        switch method {
        case "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH": true
        default: false
        }
    }

    /// The query of the target (after "?"), or nil without one.
    public var query: Substring? {
        guard let mark = target.utf8.firstIndex(of: UInt8(ascii: "?")) else { return nil }
        return target[target.utf8.index(after: mark)...]
    }

    /// The authority the request is for: that of an absolute-form target,
    /// which takes precedence over Host (RFC 9112 §3.2.2), else the Host value.
    public var authority: Substring? {
        if let range = absoluteFormAuthority { return target[range] }
        return headers["Host"].map { $0[...] }
    }

    /// Where the authority of an absolute-form target (`scheme://authority...`)
    /// lies in `target`; nil for the other forms.
    private var absoluteFormAuthority: Range<String.Index>? {
        let utf8 = target.utf8
        guard let first = utf8.first, first != UInt8(ascii: "/"), first != UInt8(ascii: "*"),
            let colon = utf8.firstIndex(of: UInt8(ascii: ":"))
        else { return nil }
        let rest = utf8[utf8.index(after: colon)...]
        guard rest.starts(with: "//".utf8) else { return nil }
        let start = utf8.index(colon, offsetBy: 3)
        var end = start
        while end != utf8.endIndex, utf8[end] != UInt8(ascii: "/"), utf8[end] != UInt8(ascii: "?") {
            end = utf8.index(after: end)
        }
        return start..<end
    }
}

/// A complete request: head, the whole body (de-chunked) and any trailers.
public struct HTTPRequest: Sendable, Equatable {
    public var head: HTTPRequestHead
    public var body: [UInt8]
    public var trailers: HTTPHeaders

    public init(head: HTTPRequestHead, body: [UInt8] = [], trailers: HTTPHeaders = HTTPHeaders()) {
        self.head = head
        self.body = body
        self.trailers = trailers
    }
}

public struct HTTPStatus: Sendable, Hashable, CustomStringConvertible {
    public var code: Int
    public var reason: String
    public init(code: Int, reason: String) {
        self.code = code
        self.reason = reason
    }
    public var description: String { "\(code) \(reason)" }

    public static let `continue` = HTTPStatus(code: 100, reason: "Continue")
    public static let ok = HTTPStatus(code: 200, reason: "OK")
    public static let noContent = HTTPStatus(code: 204, reason: "No Content")
    public static let badRequest = HTTPStatus(code: 400, reason: "Bad Request")
    public static let unauthorized = HTTPStatus(code: 401, reason: "Unauthorized")
    public static let forbidden = HTTPStatus(code: 403, reason: "Forbidden")
    public static let notFound = HTTPStatus(code: 404, reason: "Not Found")
    public static let methodNotAllowed = HTTPStatus(code: 405, reason: "Method Not Allowed")
    public static let requestTimeout = HTTPStatus(code: 408, reason: "Request Timeout")
    public static let lengthRequired = HTTPStatus(code: 411, reason: "Length Required")
    public static let contentTooLarge = HTTPStatus(code: 413, reason: "Content Too Large")
    public static let uriTooLong = HTTPStatus(code: 414, reason: "URI Too Long")
    public static let unsupportedMediaType = HTTPStatus(code: 415, reason: "Unsupported Media Type")
    public static let expectationFailed = HTTPStatus(code: 417, reason: "Expectation Failed")
    public static let tooManyRequests = HTTPStatus(code: 429, reason: "Too Many Requests")
    public static let requestHeaderFieldsTooLarge = HTTPStatus(code: 431, reason: "Request Header Fields Too Large")
    public static let internalServerError = HTTPStatus(code: 500, reason: "Internal Server Error")
    public static let notImplemented = HTTPStatus(code: 501, reason: "Not Implemented")
    public static let badGateway = HTTPStatus(code: 502, reason: "Bad Gateway")
    public static let serviceUnavailable = HTTPStatus(code: 503, reason: "Service Unavailable")
    public static let httpVersionNotSupported = HTTPStatus(code: 505, reason: "HTTP Version Not Supported")
}

/// A response to serialize. `Content-Length`, `Date` and `Connection` are
/// written by the serializer; do not set them here.
public struct HTTPResponse: Sendable, Equatable {
    public var status: HTTPStatus
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: HTTPStatus, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A small plain-text or JSON response.
    public init(status: HTTPStatus, contentType: String, body: String) {
        self.init(status: status, headers: ["Content-Type": contentType], body: Array(body.utf8))
    }
}

/// Bounds the parser enforces. Defaults suit a callback receiver on the
/// public internet: small heads, bodies up to 1 MiB.
public struct HTTPLimits: Sendable, Equatable {
    /// Longest request line (method, target, version; CRLF not counted); longer is 414.
    public var maxRequestLineBytes: Int = 8 * 1024
    /// Largest header section (after the request line, through the empty
    /// line that ends it); larger is 431.
    public var maxHeaderBytes: Int = 16 * 1024
    /// Most header fields; more is 431.
    public var maxHeaderCount: Int = 100
    /// Largest body (declared or de-chunked); larger is 413.
    public var maxBodyBytes: Int = 1024 * 1024
    /// Largest trailer section of a chunked body (through its final CRLF);
    /// larger is 431. Its field count is bounded by `maxHeaderCount`.
    public var maxTrailerBytes: Int = 4 * 1024

    public init() {}
}
