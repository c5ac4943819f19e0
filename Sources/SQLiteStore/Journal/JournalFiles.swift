// The journal's contact with the file system, in one place: the system calls whose failures
// decide durability (fdatasync, fsync, posix_fallocate, pwrite) go through `JournalIO`, so
// tests inject failures into the real writer and scanner rather than into a mock (the seam the
// SQLite writer's `sync` hook set the pattern for). `JournalDirectory` lists, creates and
// deletes segments; creating one makes it durable (file and directory fsynced) before any
// record goes in, so a later fdatasync of appended records needs no metadata update.
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The system calls the journal's durability rests on. Each returns 0 or an errno value
/// (`pwrite`: the byte count, or minus an errno value).
struct JournalIO: Sendable {
    var fdatasync: @Sendable (_ fd: Int32) -> Int32
    var fsync: @Sendable (_ fd: Int32) -> Int32
    var fallocate: @Sendable (_ fd: Int32, _ offset: Int64, _ length: Int64) -> Int32
    var pwrite: @Sendable (_ fd: Int32, _ bytes: UnsafeRawBufferPointer, _ offset: Int64) -> Int

    static let system = JournalIO(
        fdatasync: systemFdatasync, fsync: systemFsync, fallocate: systemFallocate, pwrite: systemPwrite)

    /// True for the errors that mean "no room": the append fails, but the writer goes on.
    static func isFull(_ code: Int32) -> Bool { code == ENOSPC || code == EDQUOT || code == EFBIG }

    /// Writes all of `bytes` at `offset`, resuming after short writes and EINTR. Returns the bytes
    /// written and, on failure, the errno value.
    func writeFully(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64) -> (written: Int, error: Int32?) {
        var written = 0
        while written < bytes.count {
            let result = pwrite(fd, UnsafeRawBufferPointer(rebasing: bytes[written...]), offset + Int64(written))
            if result > 0 {
                written += result
            } else if result == -Int(EINTR) {
                continue
            } else {
                return (written, result == 0 ? EIO : Int32(-result))
            }
        }
        return (written, nil)
    }

    /// Overwrites `[offset, offset + count)` with zeros.
    func writeZeros(_ fd: Int32, at offset: Int64, count: Int64) -> Int32? {
        let chunk = [UInt8](repeating: 0, count: Int(min(count, 1 << 20)))
        var done: Int64 = 0
        while done < count {
            let length = Int(min(Int64(chunk.count), count - done))
            let error = chunk.withUnsafeBytes { writeFully(fd, UnsafeRawBufferPointer(rebasing: $0[0..<length]), at: offset + done).error }
            if let error { return error }
            done += Int64(length)
        }
        return nil
    }
}

private func openFile(_ path: String, _ flags: Int32) -> Int32 { open(path, flags) }
private func systemFdatasync(_ fd: Int32) -> Int32 { fdatasync(fd) == 0 ? 0 : errno }
private func systemFsync(_ fd: Int32) -> Int32 { fsync(fd) == 0 ? 0 : errno }
private func systemFallocate(_ fd: Int32, _ offset: Int64, _ length: Int64) -> Int32 { posix_fallocate(fd, off_t(offset), off_t(length)) }
private func systemPwrite(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, _ offset: Int64) -> Int {
    let written = pwrite(fd, bytes.baseAddress, bytes.count, off_t(offset))
    return written >= 0 ? written : -Int(errno)
}

/// An open segment file; the descriptor closes when the last user lets go.
final class SegmentFile: Sendable {
    let path: String
    let firstID: Int64
    let fd: Int32

    init(path: String, firstID: Int64, fd: Int32) {
        self.path = path
        self.firstID = firstID
        self.fd = fd
    }

    static func open(path: String, firstID: Int64, writable: Bool) throws(JournalError) -> SegmentFile {
        let fd = openFile(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)
        guard fd >= 0 else { throw .ioError(path: path, operation: "open", errno: errno) }
        return SegmentFile(path: path, firstID: firstID, fd: fd)
    }

    func size() throws(JournalError) -> Int64 {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .ioError(path: path, operation: "stat", errno: errno) }
        return Int64(info.st_size)
    }

    /// Fills `buffer` from `offset`; fewer bytes only at the end of the file. Returns the count read.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws(JournalError) -> Int {
        var done = 0
        while done < buffer.count {
            let result = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if result > 0 {
                done += result
            } else if result == 0 {
                break
            } else if errno != EINTR {
                throw .ioError(path: path, operation: "read", errno: errno)
            }
        }
        return done
    }

    deinit { close(fd) }
}

/// The directory of segments, `journal/` next to the database by default.
struct JournalDirectory: Sendable {
    let path: String
    var io: JournalIO

    init(path: String, io: JournalIO = .system) {
        self.path = path
        self.io = io
    }

    /// `journal` in the database's directory.
    static func path(besideDatabase database: String) -> String {
        (URL(fileURLWithPath: database).deletingLastPathComponent().path as NSString).appendingPathComponent("journal")
    }

    struct Entry: Sendable, Hashable {
        var firstID: Int64
        var path: String
    }

    func segmentPath(firstID: Int64) -> String { path + "/" + JournalSegmentHeader.fileName(firstID: firstID) }

    /// The segments, oldest first; files whose names are not a segment's are ignored.
    /// A missing directory holds no segments.
    func segments() throws(JournalError) -> [Entry] {
        guard let directory = opendir(path) else {
            if errno == ENOENT { return [] }
            throw .ioError(path: path, operation: "list", errno: errno)
        }
        defer { closedir(directory) }
        var entries: [Entry] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if let firstID = JournalSegmentHeader.firstID(fileName: name) {
                entries.append(Entry(firstID: firstID, path: path + "/" + name))
            }
        }
        return entries.sorted { $0.firstID < $1.firstID }
    }

    /// fsync of the directory itself, so that a created or removed name is durable.
    func syncDirectory() throws(JournalError) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .ioError(path: path, operation: "open", errno: errno) }
        defer { close(fd) }
        let result = io.fsync(fd)
        guard result == 0 else { throw .syncFailed(path: path, errno: result) }
    }

    /// Creates the directory (and makes its name durable) when it is missing.
    func createIfMissing() throws(JournalError) {
        if mkdir(path, 0o750) == 0 {
            let parent = JournalDirectory(path: (path as NSString).deletingLastPathComponent, io: io)
            try parent.syncDirectory()
        } else if errno != EEXIST {
            throw .ioError(path: path, operation: "create the directory", errno: errno)
        }
    }

    /// Creates segment `firstID`: header written, `size` bytes preallocated, the file and the
    /// directory fsynced. On ENOSPC the file is removed again and `.full` thrown.
    func createSegment(firstID: Int64, size: Int64) throws(JournalError) -> SegmentFile {
        try createIfMissing()
        let file = segmentPath(firstID: firstID)
        let fd = open(file, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw .ioError(path: file, operation: "create", errno: errno) }
        let segment = SegmentFile(path: file, firstID: firstID, fd: fd)
        let allocated = io.fallocate(fd, 0, size)
        if allocated != 0 {
            unlink(file)
            throw JournalIO.isFull(allocated)
                ? .full(path: file, errno: allocated) : .ioError(path: file, operation: "preallocate", errno: allocated)
        }
        let header = JournalSegmentHeader(firstID: firstID, preallocatedSize: size).encoded()
        if let error = header.withUnsafeBytes({ io.writeFully(fd, $0, at: 0).error }) {
            unlink(file)
            throw JournalIO.isFull(error) ? .full(path: file, errno: error) : .writeFailed(path: file, errno: error)
        }
        let synced = io.fsync(fd)
        guard synced == 0 else { throw .syncFailed(path: file, errno: synced) }
        try syncDirectory()
        return segment
    }

    /// Removes every segment whose records all have ids ≤ `id` (known from the next segment's
    /// first id), never the newest one, then fsyncs the directory. Returns the removed paths.
    @discardableResult
    func deleteSegments(through id: Int64) throws(JournalError) -> [String] {
        let entries = try segments()
        var removed: [String] = []
        for (entry, next) in zip(entries, entries.dropFirst()) where next.firstID - 1 <= id {
            guard unlink(entry.path) == 0 || errno == ENOENT else { throw .ioError(path: entry.path, operation: "remove", errno: errno) }
            removed.append(entry.path)
        }
        if !removed.isEmpty { try syncDirectory() }
        return removed
    }
}
