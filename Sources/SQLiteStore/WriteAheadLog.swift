#if canImport(Glibc)
    import CallbackStore
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
        try Self.sync(descriptor, path: path)
    }

    /// After a failed fdatasync the kernel marks the pages it could not write as clean: they stay in
    /// memory, so SQLite sees every frame, but a later fdatasync does not write them again, and a
    /// power cut would cut the WAL's checksum chain at the first lost frame, taking every frame after
    /// it (later acknowledged commits included). Writing the whole file back over itself dirties
    /// every page again; once the fdatasync that follows succeeds, the WAL on disk is the WAL in
    /// memory. Call with the database's write lock held, so that no frame is added meanwhile.
    func rewrite() throws(CallbackStoreError) {
        // The file this descriptor holds, even if its name now leads elsewhere (or nowhere).
        var writable = open("/proc/self/fd/\(descriptor)", O_RDWR | O_CLOEXEC)
        if writable < 0 { writable = open(path, O_RDWR | O_CLOEXEC) }
        guard writable >= 0 else { throw Self.error("open", path: path, code: errno) }
        defer { close(writable) }
        let chunk = 1 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate() }
        var offset: off_t = 0
        while true {
            let count = pread(writable, buffer, chunk, offset)
            if count < 0 {
                if errno == EINTR { continue }
                throw Self.error("read", path: path, code: errno)
            }
            if count == 0 { break }
            var written = 0
            while written < count {
                let result = pwrite(writable, buffer + written, count - written, offset + off_t(written))
                if result < 0 {
                    if errno == EINTR { continue }
                    throw Self.error("write", path: path, code: errno)
                }
                written += result
            }
            offset += off_t(count)
        }
        try Self.sync(writable, path: path)
    }

    private static func sync(_ descriptor: Int32, path: String) throws(CallbackStoreError) {
        while fdatasync(descriptor) != 0 {
            let code = errno
            if code == EINTR { continue }
            throw error("fdatasync", path: path, code: code)
        }
    }

    private static func error(_ operation: String, path: String, code: Int32) -> CallbackStoreError {
        let message = "\(operation) of \(path): \(String(cString: strerror(code)))"
        switch code {
        case ENOSPC, EDQUOT: return .full(message: message)
        case EROFS: return .readOnly(message: message)
        default: return .ioError(message: message)
        }
    }
}
