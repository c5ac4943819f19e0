public import HTTP1

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Where the server listens and how much it tolerates from clients.
public struct HTTPServerConfiguration: Sendable {
    /// An IPv4 or IPv6 literal, `"::"` / `"0.0.0.0"` for every address, or a
    /// host name (resolved with getaddrinfo; the first address that binds wins).
    public var host: String = "127.0.0.1"
    /// 0 asks the kernel for a free port; read it back from `HTTPServer.localPort`.
    public var port: Int = 9001
    public var backlog: Int32 = 1024
    public var limits: HTTPLimits = HTTPLimits()
    /// Connections beyond this are accepted and closed at once (load shedding).
    public var maxConnections: Int = 4096
    /// A request head not complete this long after the connection opened (or
    /// after its first byte on a kept-alive connection) gets 408 and a close.
    public var headerReadTimeout: Duration = .seconds(10)
    /// A body not complete this long after its head gets 408 and a close.
    public var bodyReadTimeout: Duration = .seconds(30)
    /// A kept-alive connection with nothing to do this long is closed silently.
    public var idleTimeout: Duration = .seconds(60)
    /// A peer that accepts no response bytes for this long is disconnected.
    public var writeTimeout: Duration = .seconds(30)
    /// Requests read ahead of their responses on one connection; beyond this
    /// the server stops reading until responses have been written.
    public var maxPipelinedRequests: Int = 16
    /// Bytes a streamed response may hold unsent (written by its producer, not yet taken by the
    /// peer's socket); beyond this the peer counts as not reading and is disconnected.
    public var maxStreamBacklog: Int = 1 << 20
    /// Serial queues that own the connections (connections are spread round-robin).
    public var ioQueueCount: Int = HTTPServerConfiguration.onlineProcessorCount

    public init() {}

    /// The number of CPUs online (at least 1).
    public static var onlineProcessorCount: Int {
        max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    func validate() throws(HTTPServerError) {
        func fail(_ message: String) -> HTTPServerError { .invalidConfiguration(message) }
        guard (0...65535).contains(port) else { throw fail("port \(port) is outside 0...65535") }
        guard backlog > 0 else { throw fail("backlog must be positive, got \(backlog)") }
        guard maxConnections > 0 else { throw fail("maxConnections must be positive, got \(maxConnections)") }
        guard maxPipelinedRequests > 0 else {
            throw fail("maxPipelinedRequests must be positive, got \(maxPipelinedRequests)")
        }
        guard maxStreamBacklog > 0 else { throw fail("maxStreamBacklog must be positive, got \(maxStreamBacklog)") }
        guard ioQueueCount > 0 else { throw fail("ioQueueCount must be positive, got \(ioQueueCount)") }
        let timeouts: [(String, Duration)] = [
            ("headerReadTimeout", headerReadTimeout), ("bodyReadTimeout", bodyReadTimeout),
            ("idleTimeout", idleTimeout), ("writeTimeout", writeTimeout),
        ]
        for (name, value) in timeouts where value <= .zero {
            throw fail("\(name) must be positive, got \(value)")
        }
    }
}

/// Who sent a request.
public struct HTTPRequestContext: Sendable {
    /// Unique within one server for its lifetime; the `connection.id` in logs.
    public var connectionID: UInt64
    /// Numeric IP without port ("127.0.0.1", "::1"); IPv4-mapped IPv6 shown as IPv4.
    public var remoteAddress: String
    public var remotePort: Int

    public init(connectionID: UInt64, remoteAddress: String, remotePort: Int) {
        self.connectionID = connectionID
        self.remoteAddress = remoteAddress
        self.remotePort = remotePort
    }
}

/// Why the server could not start.
public enum HTTPServerError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidConfiguration(String)
    case alreadyStarted
    case alreadyShutDown
    case addressResolutionFailed(host: String, reason: String)
    case socketFailed(host: String, port: Int, errno: Int32)
    case bindFailed(host: String, port: Int, errno: Int32)
    case listenFailed(host: String, port: Int, errno: Int32)
    case invalidListeningSocket(fd: Int32, reason: String)
    case noListeningSockets
    /// An I/O queue could not create its epoll set (Linux only; or out of descriptors).
    case eventSetupFailed(errno: Int32)

    public var description: String {
        switch self {
        case .invalidConfiguration(let message):
            return "invalid HTTP server configuration: \(message)"
        case .alreadyStarted:
            return "the HTTP server is already started; start() may be called once"
        case .alreadyShutDown:
            return "the HTTP server was shut down; create a new one"
        case .addressResolutionFailed(let host, let reason):
            return "cannot resolve listen host '\(host)': \(reason)"
        case .socketFailed(let host, let port, let code):
            return "cannot create a socket for \(Self.endpoint(host, port)): \(Self.describe(code))"
        case .bindFailed(let host, let port, let code):
            var message = "cannot bind \(Self.endpoint(host, port)): \(Self.describe(code))"
            if code == EADDRINUSE { message += "; another process is listening on that port" }
            if code == EACCES { message += "; ports below 1024 need privileges" }
            if code == EADDRNOTAVAIL { message += "; that address is not configured on this machine" }
            return message
        case .listenFailed(let host, let port, let code):
            return "cannot listen on \(Self.endpoint(host, port)): \(Self.describe(code))"
        case .invalidListeningSocket(let fd, let reason):
            return "file descriptor \(fd) is not a usable listening socket: \(reason)"
        case .noListeningSockets:
            return "no listening sockets were given (is LISTEN_FDS set by systemd?)"
        case .eventSetupFailed(let code):
            return "cannot create the I/O queues' epoll sets: \(Self.describe(code))"
        }
    }

    static func endpoint(_ host: String, _ port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    static func describe(_ code: Int32) -> String {
        "\(String(cString: strerror(code))) (errno \(code))"
    }
}
