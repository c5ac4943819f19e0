#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The Linux epoll calls, for the per-queue readiness sets (see IOLoop).
///
/// Swift's Glibc module does not include <sys/epoll.h>, so the three calls
/// are resolved with dlsym into `@convention(c)` pointers (a correct C
/// call, unlike `@_silgen_name`), and `struct epoll_event` is read and
/// written byte-wise: it is packed (12 bytes) on x86_64, 16 bytes elsewhere.
/// The constants are the kernel ABI's. A C shim target would make this
/// plain; it needs a Package.swift change.
enum Epoll {
    static let readable: UInt32 = 0x001  // EPOLLIN
    static let writable: UInt32 = 0x004  // EPOLLOUT
    static let error: UInt32 = 0x008  // EPOLLERR
    static let hangUp: UInt32 = 0x010  // EPOLLHUP
    private static let add: Int32 = 1  // EPOLL_CTL_ADD
    private static let delete: Int32 = 2  // EPOLL_CTL_DEL
    private static let modify: Int32 = 3  // EPOLL_CTL_MOD
    private static let closeOnExec: Int32 = 0o2000000  // EPOLL_CLOEXEC == O_CLOEXEC

    #if arch(x86_64)
        static let eventStride = 12
        private static let dataOffset = 4
    #else
        static let eventStride = 16
        private static let dataOffset = 8
    #endif

    private typealias CreateFunction = @convention(c) (Int32) -> Int32
    private typealias ControlFunction = @convention(c) (Int32, Int32, Int32, UnsafeMutableRawPointer?) -> Int32
    private typealias WaitFunction = @convention(c) (Int32, UnsafeMutableRawPointer?, Int32, Int32) -> Int32

    private struct Functions: @unchecked Sendable {
        let create: CreateFunction
        let control: ControlFunction
        let wait: WaitFunction
    }

    private static let functions: Functions? = {
        guard let library = dlopen(nil, RTLD_NOW),
            let create = dlsym(library, "epoll_create1"),
            let control = dlsym(library, "epoll_ctl"),
            let wait = dlsym(library, "epoll_wait")
        else { return nil }
        return Functions(
            create: unsafeBitCast(create, to: CreateFunction.self),
            control: unsafeBitCast(control, to: ControlFunction.self),
            wait: unsafeBitCast(wait, to: WaitFunction.self))
    }()

    /// A new epoll instance, or -1 with errno set (ENOSYS without epoll).
    static func create() -> Int32 {
        guard let functions else {
            errno = ENOSYS
            return -1
        }
        return functions.create(closeOnExec)
    }

    static func add(_ epollFD: Int32, _ fd: Int32, events: UInt32, token: UInt64) -> Bool {
        control(epollFD, add, fd, events: events, token: token)
    }

    static func modify(_ epollFD: Int32, _ fd: Int32, events: UInt32, token: UInt64) -> Bool {
        control(epollFD, modify, fd, events: events, token: token)
    }

    static func remove(_ epollFD: Int32, _ fd: Int32) -> Bool {
        control(epollFD, delete, fd, events: 0, token: 0)
    }

    private static func control(_ epollFD: Int32, _ operation: Int32, _ fd: Int32, events: UInt32, token: UInt64) -> Bool {
        guard let functions else { return false }
        // Room for one event of either layout, 8-byte aligned.
        var storage: (UInt64, UInt64) = (0, 0)
        return withUnsafeMutableBytes(of: &storage) { event in
            event.storeBytes(of: events, toByteOffset: 0, as: UInt32.self)
            event.storeBytes(of: token, toByteOffset: dataOffset, as: UInt64.self)
            return functions.control(epollFD, operation, fd, event.baseAddress) == 0
        }
    }

    /// Ready events into `buffer` (capacity `count` events), without blocking.
    static func poll(_ epollFD: Int32, into buffer: UnsafeMutableRawPointer, count: Int32) -> Int32 {
        guard let functions else { return -1 }
        return functions.wait(epollFD, buffer, count, 0)
    }

    /// The flags and token of event `index` in a buffer filled by `poll`.
    @inline(__always)
    static func event(_ buffer: UnsafeMutableRawPointer, at index: Int) -> (events: UInt32, token: UInt64) {
        let base = buffer + index * eventStride
        return (base.loadUnaligned(as: UInt32.self), base.loadUnaligned(fromByteOffset: dataOffset, as: UInt64.self))
    }
}
