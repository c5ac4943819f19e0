#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The store's WAL file, held open only to make committed transactions durable.
///
/// The writing connection commits with `synchronous = NORMAL`, so SQLite does not fsync at commit;
/// `sync()` is the fsync that `FULL` would have done, done by whoever waits for it. On Linux,
/// fdatasync writes back the file's pages whichever descriptor wrote them, so a descriptor of our
/// own suffices, and `GroupCommitWriter` syncs one batch on another thread while the next is written.
/// Everything committed before `sync()` is called is on disk when it returns.
public final class WriteAheadLog: Sendable {
    public let path: String
    private let descriptor: Int32

    /// Opens the WAL file at `path` (`SQLiteConnection.writeAheadLogPath`); SQLite must have created
    /// it already (any transaction on a WAL-mode connection does).
    init(path: String) throws(CallbackStoreError) {
        self.path = path
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw .openFailed(path: path, message: String(cString: strerror(errno)))
        }
        self.descriptor = descriptor
    }

    deinit {
        close(descriptor)
    }

    /// Waits until every transaction committed so far is on disk.
    public func sync() throws(CallbackStoreError) {
        while fdatasync(descriptor) != 0 {
            let code = errno
            if code == EINTR { continue }
            let message = "fdatasync of \(path): \(String(cString: strerror(code)))"
            switch code {
            case ENOSPC, EDQUOT: throw .full(message: message)
            case EROFS: throw .readOnly(message: message)
            default: throw .ioError(message: message)
            }
        }
    }
}
