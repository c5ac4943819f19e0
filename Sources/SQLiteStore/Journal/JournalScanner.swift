// Recovery: reads the journal as it really is on disk, from a position (where the index got to)
// or from the start, and decides where its valid tail ends. In the LAST segment a zero length
// word, a bad checksum, a torn frame or an unexpected id ends the valid tail: what follows was
// never acknowledged (nothing is acknowledged before its fdatasync, and the writer fdatasyncs a
// segment before it writes to the next), so `cutTail()` zeroes it. In an OLDER segment the same
// findings mean damage to records that were acknowledged: the scan throws, naming the file and
// the byte offset, and start-up must refuse. A record that passes its checksum but cannot be
// decoded is damage wherever it is.
import CallbackStore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Where the valid records end, as the scan found it.
enum JournalTail: Sendable, Hashable, CustomStringConvertible {
    /// Nothing after the last valid record but zeros (or the end of the file).
    case clean
    /// The last segment has bytes after its last valid record that are not a record; `cutTail()`
    /// zeroes them from `offset` to the end of the file.
    case torn(path: String, offset: Int, reason: String)
    /// The last segment's header is bad and it holds no valid record (a crash while it was being
    /// created); `cutTail()` removes the file.
    case unusableSegment(path: String, reason: String)

    var description: String {
        switch self {
        case .clean: "the journal ends cleanly"
        case .torn(let path, let offset, let reason): "the journal's valid records end in \(path) at byte \(offset): \(reason)"
        case .unusableSegment(let path, let reason): "the newest journal segment \(path) holds no record and its header is bad: \(reason)"
        }
    }
}

/// Reads records in order, one `next()` at a time, so a journal of any size is read in bounded
/// memory. Used by one thread (start-up). After `next()` returned nil: `tail` says how the valid
/// records end, `cutTail()` makes that the end on disk, then `end` and `nextID` say where the
/// writer goes on.
final class JournalScanner {
    let directory: JournalDirectory
    /// The segments found when the scanner opened, oldest first.
    let segments: [JournalDirectory.Entry]
    private(set) var tail: JournalTail = .clean
    /// After the last record `next()` returned (or where the scan started).
    private(set) var position: JournalPosition?
    /// The id the next record (read or appended) has.
    private(set) var nextID: Int64
    private(set) var isFinished = false

    private var index: Int
    private var cursor: Cursor?
    /// Where the previous segment's records ended, for the case the newest segment is removed.
    private var previousEnd: JournalPosition?
    private var startOffset: Int?

    private static let chunkSize = 1 << 20

    /// Opens `directory` to read from `start` (a `position` or `end` a scanner or writer gave
    /// earlier), or from the oldest segment. `firstID` is the next id of a journal without segments.
    init(directory: JournalDirectory, from start: JournalPosition? = nil, firstID: Int64 = 1) throws(JournalError) {
        self.directory = directory
        segments = try directory.segments()
        nextID = start?.nextID ?? segments.first?.firstID ?? firstID
        index = 0
        guard let start else {
            isFinished = segments.isEmpty
            return
        }
        if let found = segments.firstIndex(where: { $0.firstID == start.segmentFirstID }) {
            index = found
            startOffset = start.offset
            position = start
        } else if let later = segments.firstIndex(where: { $0.firstID > start.segmentFirstID }) {
            // The start's segment was deleted once everything in it was indexed: the next one
            // must begin with the next id.
            index = later
            guard segments[later].firstID == start.nextID else {
                throw .damaged(
                    path: segments[later].path, offset: 0,
                    reason: "it begins with id \(segments[later].firstID), but the index expects id \(start.nextID) next")
            }
        } else if let newest = segments.last {
            throw .damaged(
                path: newest.path, offset: 0, reason: "the index has read up to \(start), past the newest segment")
        } else {
            isFinished = true  // no journal at all: the writer starts afresh at start.nextID
        }
    }

    /// The next valid record, or nil at the end of the valid records (see `tail`).
    func next() throws(JournalError) -> JournalRecord? {
        while !isFinished {
            if cursor == nil {
                guard try openSegment() else { return nil }
            }
            if let record = try nextInSegment() { return record }
        }
        return nil
    }

    /// Reads to the end, visiting nothing: for `store verify` and tests.
    func scanToEnd() throws(JournalError) {
        while try next() != nil {}
    }

    /// Makes the end the scan found the end on disk: zeroes a torn tail and fdatasyncs it, or
    /// removes an unusable newest segment and fsyncs the directory.
    func cutTail() throws(JournalError) {
        precondition(isFinished, "cutTail() before the scan reached the end")
        switch tail {
        case .clean:
            return
        case .torn(let path, let offset, _):
            let file = try SegmentFile.open(path: path, firstID: 0, writable: true)
            let size = try file.size()
            if let error = directory.io.writeZeros(file.fd, at: Int64(offset), count: size - Int64(offset)) {
                throw .writeFailed(path: path, errno: error)
            }
            let synced = directory.io.fdatasync(file.fd)
            guard synced == 0 else { throw .syncFailed(path: path, errno: synced) }
        case .unusableSegment(let path, _):
            guard unlink(path) == 0 || errno == ENOENT else { throw .ioError(path: path, operation: "remove", errno: errno) }
            try directory.syncDirectory()
            position = previousEnd
        }
        tail = .clean
    }

    /// Where the writer goes on (`JournalWriter(continuingAt:)`): nil when there is no segment to
    /// continue, and the writer creates one starting at `nextID`.
    var end: JournalPosition? {
        precondition(isFinished && tail == .clean, "the writer may continue only after the scan ended and its tail was cut")
        return position
    }

    /// Removes the segments whose records all have ids ≤ `id`, never the newest; see `JournalDirectory`.
    @discardableResult
    func deleteSegments(through id: Int64) throws(JournalError) -> [String] {
        try directory.deleteSegments(through: id)
    }

    private var isLast: Bool { index == segments.count - 1 }

    /// Opens `segments[index]` and checks its header; false when the scan ended there.
    private func openSegment() throws(JournalError) -> Bool {
        let entry = segments[index]
        let file = try SegmentFile.open(path: entry.path, firstID: entry.firstID, writable: false)
        let next = Cursor(file: file, size: Int(try file.size()))
        let headerBytes = try next.window(at: 0, minimum: JournalSegmentHeader.size)
        do throws(JournalSegmentHeader.Problem) {
            let header = try JournalSegmentHeader.decode(headerBytes)
            guard header.firstID == entry.firstID else { throw .nameMismatch(headerFirstID: header.firstID, nameFirstID: entry.firstID) }
        } catch {
            guard isLast, startOffset == nil else { throw .damaged(path: entry.path, offset: 0, reason: "bad segment header: \(error)") }
            // A crash while the segment was being created leaves a bad header but nothing except
            // zeros after it (the writer writes no record before the new file is fsynced): only
            // then may it go. Anything else after a bad header may be acknowledged records.
            var offset = JournalSegmentHeader.size
            while offset < next.size {
                let window = try next.window(at: offset, minimum: min(Self.chunkSize, next.size - offset))
                if let nonZero = window.firstIndex(where: { $0 != 0 }) {
                    throw .damaged(
                        path: entry.path, offset: 0,
                        reason: "bad segment header (\(error)), and byte \(offset + nonZero) after it is not zero: it may hold records")
                }
                offset += window.count
            }
            tail = .unusableSegment(path: entry.path, reason: error.description)
            isFinished = true
            return false
        }
        if startOffset == nil && entry.firstID != nextID {
            throw .damaged(
                path: entry.path, offset: 0, reason: "it begins with id \(entry.firstID), but the records before end at id \(nextID - 1)")
        }
        next.offset = startOffset ?? JournalSegmentHeader.size
        guard next.offset >= JournalSegmentHeader.size, next.offset <= next.size else {
            throw .damaged(path: entry.path, offset: next.offset, reason: "the position to read from lies outside the segment's records")
        }
        startOffset = nil
        position = JournalPosition(segmentFirstID: entry.firstID, offset: next.offset, nextID: nextID)
        cursor = next
        return true
    }

    private func nextInSegment() throws(JournalError) -> JournalRecord? {
        guard let cursor else { return nil }
        let path = cursor.file.path
        var wanted = 4
        while true {
            let remaining = cursor.size - cursor.offset
            let window = try cursor.window(at: cursor.offset, minimum: min(wanted, remaining))
            switch JournalFrame.inspect(window, remainingInFile: remaining) {
            case .needMore(let count):
                wanted = count
            case .end:
                if isLast {
                    isFinished = true
                } else {
                    previousEnd = position
                    index += 1
                    self.cursor = nil
                }
                return nil
            case .torn(let reason):
                try endOfValidRecords(path: path, offset: cursor.offset, reason: reason.description)
                return nil
            case .record(let id, let frameLength):
                guard id == nextID else {
                    try endOfValidRecords(path: path, offset: cursor.offset, reason: "the record has id \(id) where id \(nextID) belongs")
                    return nil
                }
                let callback: NewCallback
                do throws(JournalRecordError) {
                    callback = try JournalPayload.decode(UnsafeRawBufferPointer(rebasing: window[JournalFrame.headerSize..<frameLength]))
                } catch {
                    throw .damaged(
                        path: path, offset: cursor.offset, reason: "record \(id) passes its checksum but cannot be decoded: \(error)")
                }
                cursor.offset += frameLength
                nextID += 1
                position = JournalPosition(segmentFirstID: cursor.file.firstID, offset: cursor.offset, nextID: nextID)
                return JournalRecord(id: id, callback: callback)
            }
        }
    }

    private func endOfValidRecords(path: String, offset: Int, reason: String) throws(JournalError) {
        guard isLast else { throw .damaged(path: path, offset: offset, reason: reason) }
        tail = .torn(path: path, offset: offset, reason: reason)
        isFinished = true
    }

    /// A segment being read, through a buffer of a chunk (or one frame, if larger).
    private final class Cursor {
        let file: SegmentFile
        let size: Int
        var offset = 0
        private var buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 0, alignment: 8)
        private var bufferStart = 0
        private var bufferCount = 0

        init(file: SegmentFile, size: Int) {
            self.file = file
            self.size = size
        }

        deinit { buffer.deallocate() }

        /// The buffered bytes from `start` on: at least `minimum` of them (fewer only at the end of
        /// the file). Valid until the next call.
        func window(at start: Int, minimum: Int) throws(JournalError) -> UnsafeRawBufferPointer {
            let minimum = max(0, min(minimum, size - start))
            if start < bufferStart || start > bufferStart + bufferCount || start + minimum > bufferStart + bufferCount {
                let count = max(0, min(max(minimum, JournalScanner.chunkSize), size - start))
                if buffer.count < count {
                    buffer.deallocate()
                    buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 8)
                }
                bufferCount = try file.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count]), at: Int64(start))
                bufferStart = start
                guard bufferCount >= minimum else {
                    throw .ioError(path: file.path, operation: "read (it shrank while being read)", errno: EIO)
                }
            }
            return UnsafeRawBufferPointer(rebasing: buffer[(start - bufferStart)..<bufferCount])
        }
    }
}
