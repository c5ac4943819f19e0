import Foundation

#if canImport(Glibc)
    import Glibc
#endif

public enum TestClientError: Error, CustomStringConvertible {
    case connectFailed(Int32)
    case timedOut
    case closedByPeer
    case reset
    case ioFailed(Int32)
    case malformed(String)

    public var description: String {
        switch self {
        case .connectFailed(let code): "connect failed: \(String(cString: strerror(code)))"
        case .timedOut: "timed out waiting for the server"
        case .closedByPeer: "the server closed the connection"
        case .reset: "the server reset the connection"
        case .ioFailed(let code): "I/O failed: \(String(cString: strerror(code)))"
        case .malformed(let what): "malformed response: \(what)"
        }
    }
}

/// A response as the test client read it.
public struct ClientResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }
    public var bodyText: String { String(decoding: body, as: UTF8.self) }
    public var closes: Bool { header("Connection")?.lowercased() == "close" }
}

/// A blocking socket client with receive/send timeouts, so no test can hang.
public final class TestClient {
    public let fd: Int32
    private var pending: [UInt8] = []

    public init(port: Int, host: String = "127.0.0.1", timeout: Duration = .seconds(5), receiveBuffer: Int32? = nil) throws {
        let isIPv6 = host.contains(":")
        fd = socket(isIPv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestClientError.connectFailed(errno) }
        let seconds = timeout.components.seconds
        var interval = timeval(tv_sec: Int(seconds), tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
        if var size = receiveBuffer {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        let result: Int32
        if isIPv6 {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = UInt16(port).bigEndian
            inet_pton(AF_INET6, host, &address.sin6_addr)
            result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        } else {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(port).bigEndian
            inet_pton(AF_INET, host, &address.sin_addr)
            result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        guard result == 0 else {
            let code = errno
            Glibc.close(fd)
            throw TestClientError.connectFailed(code)
        }
    }

    /// The same with a timeout in whole seconds.
    public convenience init(port: Int, host: String = "127.0.0.1", timeoutSeconds: Int) throws {
        try self.init(port: port, host: host, timeout: .seconds(timeoutSeconds))
    }

    deinit { Glibc.close(fd) }

    public var localPort: Int {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
    }

    public func send(_ text: String) throws { try send(Array(text.utf8)) }

    public func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if written < 0 {
                if errno == EINTR { continue }
                throw errno == EAGAIN ? TestClientError.timedOut : TestClientError.ioFailed(errno)
            }
            offset += written
        }
    }

    /// Half-closes: no more bytes from this side.
    public func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Closes with a reset (SO_LINGER 0) instead of a FIN.
    public func reset() {
        var option = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
        shutdown(fd, Int32(SHUT_RDWR))
    }

    /// Reads more bytes into `pending`.
    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count > 0 {
                pending.append(contentsOf: chunk[0..<count])
                return
            }
            if count == 0 { throw TestClientError.closedByPeer }
            switch errno {
            case EINTR: continue
            case EAGAIN: throw TestClientError.timedOut
            case ECONNRESET: throw TestClientError.reset
            default: throw TestClientError.ioFailed(errno)
            }
        }
    }

    /// Reads one response (a `100 Continue` counts as one).
    public func readResponse() throws -> ClientResponse {
        var response = try readHead()
        let status = response.status
        if status >= 200, status != 204, status != 304 {
            guard let lengthText = response.header("Content-Length"), let length = Int(lengthText) else {
                throw TestClientError.malformed("no Content-Length")
            }
            for _ in 0..<100_000 where pending.count < length { try fill() }
            guard pending.count >= length else { throw TestClientError.timedOut }
            response.body = Array(pending[0..<length])
            pending.removeFirst(length)
        }
        return response
    }

    /// Reads a response head only (status and headers): for streamed bodies, read next with
    /// `readChunk()`.
    public func readHead() throws -> ClientResponse {
        var headEnd: Int?
        for _ in 0..<10_000 {
            if let end = findHeadEnd() {
                headEnd = end
                break
            }
            try fill()
        }
        guard let headEnd else { throw TestClientError.malformed("head never ended") }
        let headText = String(decoding: pending[0..<headEnd], as: UTF8.self)
        pending.removeFirst(headEnd + 4)
        var lines = headText.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw TestClientError.malformed(statusLine)
        }
        var headers: [(name: String, value: String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { throw TestClientError.malformed(line) }
            headers.append((String(line[..<colon]), String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces)))
        }
        return ClientResponse(status: status, headers: headers, body: [])
    }

    /// Reads one chunk of a chunked body; nil for the last chunk (its trailer section read too).
    public func readChunk() throws -> [UInt8]? {
        let sizeLine = try readLine()
        let sizeText = sizeLine.split(separator: ";").first.map(String.init) ?? ""
        guard let size = Int(sizeText, radix: 16) else { throw TestClientError.malformed("chunk size line \(sizeLine)") }
        if size == 0 {
            while try !readLine().isEmpty {}  // trailers, then the empty line
            return nil
        }
        for _ in 0..<100_000 where pending.count < size + 2 { try fill() }
        guard pending.count >= size + 2 else { throw TestClientError.timedOut }
        let chunk = Array(pending[0..<size])
        guard pending[size] == 13, pending[size + 1] == 10 else { throw TestClientError.malformed("chunk without CRLF") }
        pending.removeFirst(size + 2)
        return chunk
    }

    /// Reads until the peer closes, returning everything after what was consumed.
    public func readToEnd() throws -> [UInt8] {
        while true {
            do { try fill() } catch TestClientError.closedByPeer { break }
        }
        defer { pending = [] }
        return pending
    }

    private func readLine() throws -> String {
        for _ in 0..<100_000 {
            if pending.count >= 2, let index = (0..<(pending.count - 1)).first(where: { pending[$0] == 13 && pending[$0 + 1] == 10 }) {
                let line = String(decoding: pending[0..<index], as: UTF8.self)
                pending.removeFirst(index + 2)
                return line
            }
            try fill()
        }
        throw TestClientError.malformed("line never ended")
    }

    private func findHeadEnd() -> Int? {
        guard pending.count >= 4 else { return nil }
        for index in 0...(pending.count - 4)
        where pending[index] == 13 && pending[index + 1] == 10 && pending[index + 2] == 13 && pending[index + 3] == 10 {
            return index
        }
        return nil
    }

    /// Whether the server closed the connection (EOF or reset) with nothing
    /// more to read; throws `timedOut` if it stays open.
    public func waitForClose() throws -> Bool {
        if !pending.isEmpty { return false }
        do {
            try fill()
            return false
        } catch TestClientError.closedByPeer {
            return true
        } catch TestClientError.reset {
            return true
        }
    }
}

extension TestClient {
    /// Sends one request without waiting for its response (read it with `readResponse()`).
    public func sendRequest(_ method: String, _ target: String, headers: [String] = [], body: [UInt8]? = nil) throws {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: localhost\r\n"
        for header in headers { head += header + "\r\n" }
        if let body { head += "Content-Length: \(body.count)\r\n" }
        try send(Array((head + "\r\n").utf8) + (body ?? []))
    }

    /// Sends one request and reads its response.
    public func exchange(
        _ method: String, _ target: String, headers: [String] = [], body: [UInt8]? = nil
    ) throws -> ClientResponse {
        try sendRequest(method, target, headers: headers, body: body)
        return try readResponse()
    }

    /// A JSON POST, as ThingSpace sends callbacks.
    public func post(_ path: String, json: [UInt8], headers: [String] = []) throws -> ClientResponse {
        try exchange("POST", path, headers: ["Content-Type: application/json"] + headers, body: json)
    }

    public func get(_ path: String, headers: [String] = []) throws -> ClientResponse {
        try exchange("GET", path, headers: headers)
    }
}
