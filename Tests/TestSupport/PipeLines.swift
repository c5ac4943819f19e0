import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A child's output, read line by line as it comes by a thread of its own doing blocking reads:
/// not a FileHandle readabilityHandler, whose teardown races libdispatch's epoll bookkeeping on
/// Linux (swift-corelibs-libdispatch#949) and once crashed the test process under load.
public final class PipeLines: Sendable {
    private final class State: Sendable {
        let value = Mutex<(lines: [String], partial: [UInt8], ended: Bool)>(([], [], false))
    }
    private let state = State()

    /// Reads `handle` (a pipe's reading end) until end of file.
    public init(reading handle: FileHandle) {
        let state = self.state
        let thread = Thread {
            let fd = handle.fileDescriptor
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { break }
                state.value.withLock { value in
                    value.partial += buffer[0..<count]
                    while let newline = value.partial.firstIndex(of: 0x0A) {
                        value.lines.append(String(decoding: value.partial[..<newline], as: UTF8.self))
                        value.partial.removeSubrange(...newline)
                    }
                }
            }
            state.value.withLock { $0.ended = true }
            withExtendedLifetime(handle) {}
        }
        thread.start()
    }

    public var lines: [String] { state.value.withLock { $0.lines } }
    /// The writing end is closed (the child exited) and everything was read.
    public var ended: Bool { state.value.withLock { $0.ended } }
}
