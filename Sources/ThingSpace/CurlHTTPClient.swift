// A small blocking HTTP client over one libcurl easy handle.
//
// One handle per client, reused across calls so libcurl keeps its
// connection cache (curl_easy_reset keeps live connections, DNS and TLS
// session caches). A mutex serialises calls: one transfer at a time.
import CCurl
import Synchronization

/// libcurl is loaded and initialised once per process, before the first handle
/// (Swift runs a global's initialiser exactly once, thread-safely): nil when it
/// worked, else what failed.
private let curlLoadError: String? = ccurl_load().map { String(cString: $0) }

/// A transport failure: the request got no HTTP answer (or an unusable one).
/// `message` is libcurl's own text; URLs we build carry no secrets.
public struct CurlTransportError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case timedOut
        case couldNotResolveHost
        case couldNotConnect
        case tls
        case responseTooLarge
        case invalidRequest
        case other
    }

    public var kind: Kind
    /// The CURLcode, or -1 for a request refused before libcurl saw it.
    public var curlCode: Int
    public var message: String

    public init(kind: Kind, curlCode: Int, message: String) {
        self.kind = kind
        self.curlCode = curlCode
        self.message = message
    }

    public var description: String { "HTTP transport error (curl \(curlCode)): \(message)" }
}

public final class CurlHTTPClient: Sendable {
    public enum Method: String, Sendable {
        case get = "GET"
        case post = "POST"
        case put = "PUT"
        case delete = "DELETE"
    }

    public struct Request: Sendable {
        public var method: Method
        public var url: String
        /// Sent exactly as given. libcurl's `Expect: 100-continue` is always
        /// suppressed, and so is its default form Content-Type when none is given.
        public var headers: [(name: String, value: String)]
        public var body: [UInt8]

        public init(method: Method, url: String, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
            self.method = method
            self.url = url
            self.headers = headers
            self.body = body
        }
    }

    public struct Response: Sendable {
        public var status: Int
        /// Header fields of the final response, in received order.
        public var headers: [(name: String, value: String)]
        public var body: [UInt8]

        public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
            self.status = status
            self.headers = headers
            self.body = body
        }

        /// The first value of the header `name` (ASCII case-insensitive).
        public func headerValue(_ name: String) -> String? {
            headers.first { $0.name.lowercased() == name.lowercased() }?.value
        }
    }

    public let connectTimeout: Duration
    public let totalTimeout: Duration
    public let maxResponseBytes: Int
    private let handle: Mutex<EasyHandle>

    /// - Parameters:
    ///   - connectTimeout: limit for the TCP and TLS handshakes.
    ///   - totalTimeout: limit for the whole transfer.
    ///   - maxResponseBytes: a larger response body fails with `.responseTooLarge`.
    /// TLS peers and host names are always verified; redirects are never
    /// followed; libcurl's proxy environment variables are honoured.
    public init(connectTimeout: Duration = .seconds(10), totalTimeout: Duration = .seconds(30), maxResponseBytes: Int = 4 << 20) {
        self.connectTimeout = connectTimeout
        self.totalTimeout = totalTimeout
        self.maxResponseBytes = maxResponseBytes
        self.handle = Mutex(EasyHandle())
    }

    deinit {
        handle.withLock { $0.cleanup() }
    }

    /// Performs one exchange. Any HTTP status is a response; only a transport
    /// failure throws. Blocks the calling thread; one call at a time.
    public func send(_ request: Request) throws(CurlTransportError) -> Response {
        if let curlLoadError {
            throw CurlTransportError(kind: .other, curlCode: -1, message: curlLoadError)
        }
        try Self.validate(request)
        let limits = TransferLimits(
            connectTimeoutMS: connectTimeout.wholeMilliseconds,
            totalTimeoutMS: totalTimeout.wholeMilliseconds,
            maxResponseBytes: maxResponseBytes
        )
        return try handle.withLock { (easy: inout EasyHandle) throws(CurlTransportError) -> Response in
            try easy.perform(request, limits: limits)
        }
    }

    /// Refuses what would corrupt the request line or header section.
    private static func validate(_ request: Request) throws(CurlTransportError) {
        func invalid(_ message: String) -> CurlTransportError {
            CurlTransportError(kind: .invalidRequest, curlCode: -1, message: message)
        }
        let lowered = request.url.lowercased()
        guard lowered.hasPrefix("http://") || lowered.hasPrefix("https://") else {
            throw invalid("URL must start with http:// or https://")
        }
        if request.url.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) {
            throw invalid("URL contains a space or control character")
        }
        for field in request.headers {
            if field.name.isEmpty || field.name.utf8.contains(where: { $0 <= 0x20 || $0 == UInt8(ascii: ":") || $0 >= 0x7F }) {
                throw invalid("header name '\(field.name)' is not a token")
            }
            if field.value.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0 }) {
                throw invalid("header '\(field.name)' has a line break in its value")
            }
        }
    }
}

struct TransferLimits {
    var connectTimeoutMS: Int
    var totalTimeoutMS: Int
    var maxResponseBytes: Int
}

/// Owns the CURL easy handle; used only under the client's mutex.
private struct EasyHandle: ~Copyable {
    private var pointer: UnsafeMutableRawPointer?

    /// Made on the first transfer, once `send` has loaded libcurl.
    init() { pointer = nil }

    mutating func cleanup() {
        if let pointer { ccurl_easy_cleanup(pointer) }
        pointer = nil
    }

    mutating func perform(_ request: CurlHTTPClient.Request, limits: TransferLimits) throws(CurlTransportError) -> CurlHTTPClient.Response {
        if pointer == nil { pointer = ccurl_easy_init() }
        guard let easy = pointer else {
            throw CurlTransportError(kind: .other, curlCode: -1, message: "curl_easy_init failed (out of memory?)")
        }
        ccurl_easy_reset(easy)

        let collector = ResponseCollector(maxBodyBytes: limits.maxResponseBytes)
        var errorBuffer = [CChar](repeating: 0, count: ccurl_error_buffer_size() + 1)
        var headerList: UnsafeMutablePointer<curl_slist>? = nil
        defer { ccurl_slist_free_all(headerList) }

        for field in request.headers {
            headerList = ccurl_slist_append(headerList, "\(field.name): \(field.value)")
        }
        // Never wait for 100-continue; never send libcurl's default form type.
        headerList = ccurl_slist_append(headerList, "Expect:")
        if !request.headers.contains(where: { $0.name.lowercased() == "content-type" }) {
            headerList = ccurl_slist_append(headerList, "Content-Type:")
        }

        let code: CURLcode = withExtendedLifetime(collector) {
            errorBuffer.withUnsafeMutableBufferPointer { errorBytes in
                let context = Unmanaged.passUnretained(collector).toOpaque()
                var setup = [
                    ccurl_setopt_string(easy, CURLOPT_URL, request.url),
                    ccurl_setopt_string(easy, CURLOPT_PROTOCOLS_STR, "http,https"),
                    ccurl_setopt_long(easy, CURLOPT_NOSIGNAL, 1),
                    ccurl_setopt_long(easy, CURLOPT_FOLLOWLOCATION, 0),
                    ccurl_setopt_long(easy, CURLOPT_SSL_VERIFYPEER, 1),
                    ccurl_setopt_long(easy, CURLOPT_SSL_VERIFYHOST, 2),
                    ccurl_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, limits.connectTimeoutMS),
                    ccurl_setopt_long(easy, CURLOPT_TIMEOUT_MS, limits.totalTimeoutMS),
                    ccurl_setopt_pointer(easy, CURLOPT_ERRORBUFFER, errorBytes.baseAddress),
                    ccurl_setopt_data_callback(easy, CURLOPT_WRITEFUNCTION, collectBody),
                    ccurl_setopt_pointer(easy, CURLOPT_WRITEDATA, context),
                    ccurl_setopt_data_callback(easy, CURLOPT_HEADERFUNCTION, collectHeader),
                    ccurl_setopt_pointer(easy, CURLOPT_HEADERDATA, context),
                    ccurl_setopt_slist(easy, CURLOPT_HTTPHEADER, headerList),
                ]
                switch request.method {
                case .get:
                    setup.append(ccurl_setopt_long(easy, CURLOPT_HTTPGET, 1))
                case .post:
                    setup.append(ccurl_setopt_long(easy, CURLOPT_POST, 1))
                default:
                    setup.append(ccurl_setopt_string(easy, CURLOPT_CUSTOMREQUEST, request.method.rawValue))
                }
                if request.method == .post || !request.body.isEmpty {
                    // Size first, then COPYPOSTFIELDS copies exactly that many bytes.
                    setup.append(ccurl_setopt_off_t(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(request.body.count)))
                    if request.body.isEmpty {
                        setup.append(ccurl_setopt_string(easy, CURLOPT_COPYPOSTFIELDS, ""))
                    } else {
                        setup.append(request.body.withUnsafeBufferPointer { bytes in
                            ccurl_setopt_pointer(easy, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: bytes.baseAddress))
                        })
                    }
                }
                if let failed = setup.first(where: { $0 != CURLE_OK }) { return failed }
                return ccurl_easy_perform(easy)
            }
        }

        guard code == CURLE_OK else {
            if collector.bodyTooLarge {
                throw CurlTransportError(
                    kind: .responseTooLarge, curlCode: Int(code.rawValue),
                    message: "response body larger than \(limits.maxResponseBytes) bytes")
            }
            let detail = errorBuffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            let message = detail.isEmpty ? String(cString: ccurl_easy_strerror(code)) : detail
            throw CurlTransportError(kind: Self.kind(of: code), curlCode: Int(code.rawValue), message: message)
        }
        var status = 0
        _ = ccurl_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
        return CurlHTTPClient.Response(status: status, headers: collector.headers, body: collector.body)
    }

    private static func kind(of code: CURLcode) -> CurlTransportError.Kind {
        switch code {
        case CURLE_OPERATION_TIMEDOUT: .timedOut
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY: .couldNotResolveHost
        case CURLE_COULDNT_CONNECT: .couldNotConnect
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM,
             CURLE_SSL_CIPHER, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_ISSUER_ERROR:
            .tls
        case CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL: .invalidRequest
        default: .other
        }
    }
}

/// Receives header lines and body bytes from libcurl's callbacks.
private final class ResponseCollector {
    let maxBodyBytes: Int
    var headers: [(name: String, value: String)] = []
    var body: [UInt8] = []
    var bodyTooLarge = false

    init(maxBodyBytes: Int) { self.maxBodyBytes = maxBodyBytes }

    func appendHeaderLine(_ bytes: UnsafeBufferPointer<UInt8>) {
        var line = Substring(decoding: bytes, as: UTF8.self)
        while let last = line.last, last == "\r" || last == "\n" || last == "\r\n" { line = line.dropLast() }
        if line.hasPrefix("HTTP/") {
            // A new response head (after a 1xx or a proxy's CONNECT answer).
            headers.removeAll()
            return
        }
        guard let colon = line.firstIndex(of: ":") else { return }
        let name = String(line[..<colon])
        let value = line[line.index(after: colon)...].trimmingSpaces()
        headers.append((name: name, value: value))
    }

    func appendBody(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard body.count + bytes.count <= maxBodyBytes else {
            bodyTooLarge = true
            return false
        }
        body.append(contentsOf: bytes)
        return true
    }
}

private let collectBody: ccurl_data_callback = { data, size, count, context in
    guard let context else { return 0 }
    let collector = Unmanaged<ResponseCollector>.fromOpaque(context).takeUnretainedValue()
    let length = size * count
    guard let data, length > 0 else { return length }
    let bytes = UnsafeBufferPointer(start: UnsafeRawPointer(data).assumingMemoryBound(to: UInt8.self), count: length)
    // Returning fewer bytes than given makes libcurl abort with CURLE_WRITE_ERROR.
    return collector.appendBody(bytes) ? length : 0
}

private let collectHeader: ccurl_data_callback = { data, size, count, context in
    guard let context else { return 0 }
    let collector = Unmanaged<ResponseCollector>.fromOpaque(context).takeUnretainedValue()
    let length = size * count
    guard let data, length > 0 else { return length }
    collector.appendHeaderLine(UnsafeBufferPointer(start: UnsafeRawPointer(data).assumingMemoryBound(to: UInt8.self), count: length))
    return length
}

extension Substring {
    func trimmingSpaces() -> String {
        var slice = self[...]
        while let first = slice.first, first == " " || first == "\t" { slice = slice.dropFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice = slice.dropLast() }
        return String(slice)
    }
}

extension Duration {
    /// Whole milliseconds, at least 1 for any positive duration (libcurl reads 0 as "no limit").
    var wholeMilliseconds: Int {
        let (seconds, attoseconds) = components
        let ms = Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
        return self > .zero ? max(ms, 1) : 0
    }
}
