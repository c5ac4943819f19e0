// Why the journal could not do what was asked, in words an operator can act on. Two kinds
// matter to the caller: a failed fsync or write stops the writer for good (after it nobody
// knows what is on disk, so the process exits and the start-up scan recovers from what is
// really there, as PostgreSQL does with data_sync_retry = off); a full disk does not.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

enum JournalError: Error, Sendable, Hashable, CustomStringConvertible {
    /// fsync or fdatasync of a segment or of the journal directory failed. Fatal: the writer refuses
    /// every later call with this same error; exit, and let the start-up scan recover.
    case syncFailed(path: String, errno: Int32)
    /// A write failed for a reason other than a full disk. Fatal like `syncFailed`: the bytes at the
    /// tail are unknown until the start-up scan reads them.
    case writeFailed(path: String, errno: Int32)
    /// No space left (ENOSPC, EDQUOT, EFBIG) while writing or preallocating. Not fatal: nothing was
    /// appended, no id was used, and a later append may succeed.
    case full(path: String, errno: Int32)
    /// Opening, reading, listing or removing a journal file failed.
    case ioError(path: String, operation: String, errno: Int32)
    /// A segment holds bytes the journal did not write where valid records must be (an older segment,
    /// or a record that passes its checksum but cannot be decoded). Start-up must refuse.
    case damaged(path: String, offset: Int, reason: String)
    /// One callback encodes to more than a frame can carry (4 GiB).
    case recordTooLarge(bytes: Int)

    /// True when the writer has stopped for good: the process must exit and recover by scanning.
    var isFatal: Bool {
        switch self {
        case .syncFailed, .writeFailed: true
        default: false
        }
    }

    var description: String {
        switch self {
        case .syncFailed(let path, let code):
            "fsync of \(path) failed (\(Self.name(code))); what is on disk is unknown, so the journal stops: "
                + "the service must restart, and recovery keeps what is really on disk; check the disk (dmesg)"
        case .writeFailed(let path, let code):
            "writing \(path) failed (\(Self.name(code))); the journal stops: the service must restart, "
                + "and recovery keeps what is really on disk; check the disk (dmesg)"
        case .full(let path, let code):
            "the journal cannot grow at \(path) (\(Self.name(code))); free disk space or raise the limit, appending resumes by itself"
        case .ioError(let path, let operation, let code):
            "cannot \(operation) \(path) (\(Self.name(code))); check that the journal directory exists and is readable and "
                + "writable by the service user"
        case .damaged(let path, let offset, let reason):
            "the journal segment \(path) is damaged at byte \(offset): \(reason); acknowledged callbacks may be in it, "
                + "so start-up refuses: restore the segment from a backup, or move it aside and run `store rebuild-index`"
        case .recordTooLarge(let bytes):
            "a callback of \(bytes) bytes is too large for a journal record (at most 4 GiB)"
        }
    }

    static func name(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return "errno \(code): \(String(cString: text))"
    }
}
