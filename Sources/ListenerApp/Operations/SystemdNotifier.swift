import Foundation

/// sd_notify(3) without libsystemd: one datagram per state change to
/// `$NOTIFY_SOCKET` (a path, or an abstract name when it starts with '@').
/// Without the variable (not started by systemd) every call does nothing.
public final class SystemdNotifier: Sendable {
    private let address: [UInt8]?

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty,
            path.hasPrefix("/") || path.hasPrefix("@"), path.utf8.count < 108
        else {
            address = nil
            return
        }
        var bytes = Array(path.utf8)
        if bytes[0] == UInt8(ascii: "@") { bytes[0] = 0 }
        address = bytes
    }

    public var isActive: Bool { address != nil }

    /// Sends `state` (e.g. "READY=1\nSTATUS=serving"). Failures are ignored:
    /// notification is advisory and must never stop the service.
    public func notify(_ state: String) {
        guard let address else { return }
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return }
        defer { close(descriptor) }
        var socketAddress = sockaddr_un()
        socketAddress.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &socketAddress.sun_path) { path in
            for (index, byte) in address.enumerated() { path[index] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + address.count)
        let message = Array(state.utf8)
        _ = withUnsafePointer(to: &socketAddress) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketPointer in
                message.withUnsafeBytes { bytes in
                    sendto(descriptor, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), socketPointer, length)
                }
            }
        }
    }

    /// The watchdog interval systemd expects pings within, if it asked for any
    /// (`WATCHDOG_USEC`, for this process per `WATCHDOG_PID`).
    public static func watchdogInterval(environment: [String: String] = ProcessInfo.processInfo.environment) -> Duration? {
        guard let text = environment["WATCHDOG_USEC"], let microseconds = Int64(text), microseconds > 0 else { return nil }
        if let pid = environment["WATCHDOG_PID"], pid != String(getpid()) { return nil }
        return .microseconds(microseconds)
    }

    /// Listening sockets passed by systemd socket activation (`LISTEN_FDS`
    /// starting at fd 3, for this process per `LISTEN_PID`), with their
    /// `LISTEN_FDNAMES`; empty when not socket-activated.
    public static func listeningSockets(environment: [String: String] = ProcessInfo.processInfo.environment)
        -> [(descriptor: Int32, name: String)]
    {
        guard let pid = environment["LISTEN_PID"], pid == String(getpid()),
            let countText = environment["LISTEN_FDS"], let count = Int32(countText), count > 0
        else { return [] }
        let names = (environment["LISTEN_FDNAMES"] ?? "").split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        return (0..<count).map { offset in
            let descriptor = 3 + offset
            _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
            return (descriptor, Int(offset) < names.count ? names[Int(offset)] : "")
        }
    }
}
