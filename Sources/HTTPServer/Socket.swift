#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Thin wrappers over the socket calls the server makes. Linux first.
enum Socket {
    static let one: Int32 = 1

    static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) -> Bool {
        var value = value
        return setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) == 0
    }

    static func intOption(_ fd: Int32, _ level: Int32, _ name: Int32) -> Int32? {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(fd, level, name, &value, &length) == 0 ? value : nil
    }

    static func setNonBlocking(_ fd: Int32) -> Bool {
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0 else { return false }
        if flags & O_NONBLOCK == 0, fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0 { return false }
        let fdFlags = fcntl(fd, F_GETFD)
        if fdFlags >= 0, fdFlags & FD_CLOEXEC == 0 { _ = fcntl(fd, F_SETFD, fdFlags | FD_CLOEXEC) }
        return true
    }

    static func setNoDelay(_ fd: Int32) {
        _ = setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
    }

    /// The port a socket is bound to.
    static func localPort(_ fd: Int32) -> Int? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) == 0 }
        }
        return ok ? describe(storage).port : nil
    }

    /// The numeric address and port of a socket address; IPv4-mapped IPv6
    /// addresses are shown as IPv4.
    static func describe(_ storage: sockaddr_storage) -> (address: String, port: Int) {
        var storage = storage
        return withUnsafePointer(to: &storage) { pointer -> (String, Int) in
            switch Int32(pointer.pointee.ss_family) {
            case AF_INET:
                return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { in4 in
                    var address = in4.pointee.sin_addr
                    return (format(AF_INET, &address), Int(UInt16(bigEndian: in4.pointee.sin_port)))
                }
            case AF_INET6:
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { in6 in
                    var address = in6.pointee.sin6_addr
                    let port = Int(UInt16(bigEndian: in6.pointee.sin6_port))
                    let isMapped = withUnsafeBytes(of: &address) { bytes in
                        bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xFF && bytes[11] == 0xFF
                    }
                    if isMapped {
                        var v4 = in_addr()
                        withUnsafeBytes(of: &address) { bytes in
                            withUnsafeMutableBytes(of: &v4) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[12..<16])) }
                        }
                        return (format(AF_INET, &v4), port)
                    }
                    return (format(AF_INET6, &address), port)
                }
            default:
                return ("unknown", 0)
            }
        }
    }

    private static func format<Address>(_ family: Int32, _ address: inout Address) -> String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let ok = withUnsafePointer(to: &address) { inet_ntop(family, $0, &buffer, socklen_t(buffer.count)) != nil }
        guard ok else { return "unknown" }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// Creates a non-blocking listening socket on `host:port`, trying each
    /// address getaddrinfo returns until one binds.
    static func makeListeningSocket(host: String, port: Int, backlog: Int32) throws(HTTPServerError) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
            hints.ai_socktype = SOCK_STREAM
        #endif
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            let reason = status == 0 ? "no addresses" : String(cString: gai_strerror(status))
            throw .addressResolutionFailed(host: host, reason: reason)
        }
        defer { freeaddrinfo(first) }

        var lastError: HTTPServerError = .addressResolutionFailed(host: host, reason: "no usable addresses")
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let info = cursor {
            cursor = info.pointee.ai_next
            let family = info.pointee.ai_family
            guard family == AF_INET || family == AF_INET6 else { continue }
            #if canImport(Glibc)
                let type = Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue)
            #else
                let type = SOCK_STREAM
            #endif
            let fd = socket(family, type, 0)
            guard fd >= 0 else {
                lastError = .socketFailed(host: host, port: port, errno: errno)
                continue
            }
            _ = setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
            if family == AF_INET6 {
                // "::" means every address, IPv4 included (dual stack).
                let isWildcard = info.pointee.ai_addr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { in6 in
                    var address = in6.pointee.sin6_addr
                    return withUnsafeBytes(of: &address) { $0.allSatisfy { $0 == 0 } }
                }
                if isWildcard { _ = setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 0) }
            }
            guard bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
                lastError = .bindFailed(host: host, port: port, errno: errno)
                close(fd)
                continue
            }
            guard listen(fd, backlog) == 0 else {
                lastError = .listenFailed(host: host, port: port, errno: errno)
                close(fd)
                continue
            }
            return fd
        }
        throw lastError
    }

    /// Checks that an inherited descriptor is a listening stream socket and
    /// makes it non-blocking.
    static func adopt(_ fd: Int32) throws(HTTPServerError) {
        guard fd >= 0, fcntl(fd, F_GETFD) >= 0 else {
            throw .invalidListeningSocket(fd: fd, reason: "not an open file descriptor")
        }
        guard let type = intOption(fd, SOL_SOCKET, SO_TYPE) else {
            throw .invalidListeningSocket(fd: fd, reason: "not a socket")
        }
        #if canImport(Glibc)
            let stream = Int32(SOCK_STREAM.rawValue)
        #else
            let stream = SOCK_STREAM
        #endif
        guard type == stream else { throw .invalidListeningSocket(fd: fd, reason: "not a stream (TCP) socket") }
        guard intOption(fd, SOL_SOCKET, SO_ACCEPTCONN) == 1 else {
            throw .invalidListeningSocket(fd: fd, reason: "not listening (listen() was not called)")
        }
        guard setNonBlocking(fd) else {
            throw .invalidListeningSocket(fd: fd, reason: "cannot make it non-blocking: \(HTTPServerError.describe(errno))")
        }
    }
}

/// Nanoseconds on the monotonic clock (vDSO, no system call).
@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}

extension Duration {
    /// Whole nanoseconds, clamped to 0...UInt64.max.
    var clampedNanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0, attoseconds >= 0 || seconds > 0 else { return 0 }
        let (whole, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return .max }
        let fraction = attoseconds / 1_000_000_000
        return fraction >= 0 ? whole &+ UInt64(fraction) : whole &- UInt64(-fraction)
    }
}
