// The HTTP client every outbound caller shares (registrar, ThingSpace
// client, sandbox deliveries, later webhook forwarding), over libcurl.
//
// Many callers at once: each transfer takes an easy handle out of a small
// pool under a short lock, runs without any lock, and puts the handle back.
// A handle keeps its own connection cache, so handing back the most
// recently used one first keeps sequential calls on one connection; when
// none is free a new one is made, and at most `maxIdleHandles` are kept.
import CCurl
import Synchronization

/// libcurl is loaded and initialised once per process, before the first handle
/// (Swift runs a global's initialiser exactly once, thread-safely): nil when it
/// worked, else what failed. Nothing maps libcurl until the first `send`.
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

/// Safe to share: any number of threads (or tasks, through the `async`
/// `send`) may call it at once, each transfer on a connection of its own.
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

        /// The wait `Retry-After` asks for (either form), if it is there and valid.
        public var retryAfter: Duration? { parseRetryAfter(headerValue("Retry-After")) }
    }

    public let connectTimeout: Duration
    public let totalTimeout: Duration
    public let maxResponseBytes: Int
    /// Idle handles (each with its connection cache) kept for reuse.
    public let maxIdleHandles: Int
    private let pool: HandlePool

    /// - Parameters:
    ///   - connectTimeout: limit for the TCP and TLS handshakes.
    ///   - totalTimeout: limit for the whole transfer.
    ///   - maxResponseBytes: a larger response body fails with `.responseTooLarge`.
    ///   - maxIdleHandles: how many idle easy handles (and so live
    ///     connections) to keep; more transfers than that may still run at once.
    /// TLS peers and host names are always verified; redirects are never
    /// followed; libcurl's proxy environment variables are honoured.
    public init(
        connectTimeout: Duration = .seconds(10), totalTimeout: Duration = .seconds(30),
        maxResponseBytes: Int = 4 << 20, maxIdleHandles: Int = 8
    ) {
        self.connectTimeout = connectTimeout
        self.totalTimeout = totalTimeout
        self.maxResponseBytes = maxResponseBytes
        self.maxIdleHandles = max(maxIdleHandles, 0)
        self.pool = HandlePool(maxIdle: max(maxIdleHandles, 0))
    }

    /// Performs one exchange. Any HTTP status is a response; only a transport
    /// failure throws. Blocks the calling thread for the whole transfer (up
    /// to `totalTimeout`); other threads' calls run meanwhile.
    public func send(_ request: Request) throws(CurlTransportError) -> Response {
        if let curlLoadError {
            throw CurlTransportError(kind: .other, curlCode: -1, message: curlLoadError)
        }
        try Self.validate(request)
        let limits = TransferLimits(
            connectTimeoutMS: connectTimeout.curlMilliseconds,
            totalTimeoutMS: totalTimeout.curlMilliseconds,
            maxResponseBytes: maxResponseBytes
        )
        let easy = try pool.checkOut()
        defer { pool.checkIn(easy) }
        return try easy.perform(request, limits: limits)
    }

    /// The same exchange for async code: the blocking transfer runs on a
    /// thread of the client's transfer threads, never on the Swift
    /// concurrency pool, and the task is resumed with its outcome.
    /// Cancelling the task does not abort a transfer already started.
    public func send(_ request: Request) async throws(CurlTransportError) -> Response {
        let outcome = await withCheckedContinuation { (continuation: CheckedContinuation<Result<Response, CurlTransportError>, Never>) in
            TransferThreads.shared.run {
                let result: Result<Response, CurlTransportError>
                do throws(CurlTransportError) {
                    result = .success(try self.send(request))
                } catch {
                    result = .failure(error)
                }
                continuation.resume(returning: result)
            }
        }
        return try outcome.get()
    }

    /// The same exchange for callers that keep their own queue (the delivery workers): the transfer
    /// runs on a transfer thread and `completion` is called there, with no hop through a task.
    public func send(_ request: Request, completion: @escaping @Sendable (Result<Response, CurlTransportError>) -> Void) {
        TransferThreads.shared.run {
            do throws(CurlTransportError) {
                completion(.success(try self.send(request)))
            } catch {
                completion(.failure(error))
            }
        }
    }

    /// Idle handles held now (for tests and metrics).
    public var idleHandleCount: Int { pool.idleCount }

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

/// The reusable easy handles of one client. The lock guards only the list:
/// it is held to take or return a handle, never during a transfer.
final class HandlePool: Sendable {
    private let idle = Mutex<[EasyHandle]>([])
    private let maxIdle: Int

    init(maxIdle: Int) { self.maxIdle = maxIdle }

    /// The most recently returned handle (its connection is the likeliest
    /// to be alive), or a new one. Call only once libcurl is loaded.
    func checkOut() throws(CurlTransportError) -> EasyHandle {
        if let reused = idle.withLock({ $0.popLast() }) { return reused }
        guard let fresh = EasyHandle() else {
            throw CurlTransportError(kind: .other, curlCode: -1, message: "curl_easy_init failed (out of memory?)")
        }
        return fresh
    }

    /// Keeps `easy` for reuse unless enough are idle; a surplus handle is
    /// cleaned up (closing its connections) outside the lock.
    func checkIn(_ easy: EasyHandle) {
        // The surplus comes out of the closure and is released after the unlock.
        _ = idle.withLock { list -> EasyHandle? in
            guard list.count < maxIdle else { return easy }
            list.append(easy)
            return nil
        }
    }

    var idleCount: Int { idle.withLock { $0.count } }
}

extension Duration {
    /// Whole milliseconds, at least 1 for any positive duration (libcurl reads 0 as "no limit"),
    /// unlike Vocabulary's `inMilliseconds`.
    var curlMilliseconds: Int {
        let (seconds, attoseconds) = components
        let ms = Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
        return self > .zero ? max(ms, 1) : 0
    }
}
