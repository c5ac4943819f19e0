// Appends callbacks to the journal: ids assigned here, one pwrite per batch, and a separate
// `sync` so the caller can pipeline (write group N+1 while group N is being fdatasynced on
// another thread). Fail-stop: after one failed fsync or write nobody knows what is on disk, so
// the writer refuses every later call with that same error; the process exits and the
// start-up scan (`JournalScanner`) recovers what is really there. A full disk is not fatal.
import CallbackStore
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Where the journal goes on: a segment (by its first id), a byte offset in it, and the id the
/// record there will have. Also what the indexer stores as "indexed up to here".
struct JournalPosition: Sendable, Hashable, CustomStringConvertible {
    var segmentFirstID: Int64
    var offset: Int
    var nextID: Int64

    var description: String { "\(JournalSegmentHeader.fileName(firstID: segmentFirstID)) byte \(offset) (next id \(nextID))" }
}

/// Threading contract (checked at run time: a second thread inside either call traps):
/// - `append` is called by one thread at a time (the intake's writer thread);
/// - `sync` is called by one thread at a time, which may be another one, while `append` runs;
/// - `sync` makes durable every append that *returned* before `sync` was called; an id is
///   acknowledged only after such a `sync` returned without throwing.
///
/// Batches are kept whole in one segment: a batch that does not fit in the rest of the current
/// segment goes to a new one (created and made durable first). Before the first record goes into
/// the new segment, the old one is fdatasynced, so an older segment never has a torn tail and
/// recovery can treat any bad record in it as damage. A batch larger than a whole segment gets a
/// segment of its own, preallocated to its size.
final class JournalWriter: Sendable {
    static let defaultSegmentSize = 64 << 20

    let directory: JournalDirectory
    let segmentSize: Int

    private struct AppendState {
        var segment: SegmentFile
        var offset: Int
        /// The file's size: the batch must end within it.
        var capacity: Int
        var nextID: Int64
    }

    private struct Shared {
        /// Segments written since the last sync took them.
        var unsynced: [SegmentFile] = []
        /// Set once by a fatal error; every later call throws it.
        var stopped: JournalError?
        var end: JournalPosition
    }

    private let appending = ExclusiveUse("the journal writer's append")
    private let syncing = ExclusiveUse("the journal writer's sync")
    /// Owned by the appending thread (the lock is never contended; it makes the class Sendable).
    private let state: Mutex<AppendState>
    private let shared: Mutex<Shared>

    /// Opens the journal for appending where a scan ended (`JournalScanner.end`, after `cutTail()`),
    /// or, when the journal holds no segment (`end` nil), creates its first segment starting at `firstID`.
    init(
        directory: JournalDirectory, continuingAt end: JournalPosition?, firstID: Int64 = 1,
        segmentSize: Int = JournalWriter.defaultSegmentSize
    ) throws(JournalError) {
        precondition(segmentSize > JournalSegmentHeader.size + JournalFrame.headerSize, "a segment must hold a record")
        self.directory = directory
        self.segmentSize = segmentSize
        let segment: SegmentFile
        let position: JournalPosition
        var capacity: Int
        if let end {
            segment = try SegmentFile.open(
                path: directory.segmentPath(firstID: end.segmentFirstID), firstID: end.segmentFirstID, writable: true)
            capacity = Int(try segment.size())
            // A segment cut short (a truncated copy, or created before a larger size was configured)
            // is preallocated again; if there is no room, batches go to a new segment instead.
            if capacity < segmentSize {
                let result = directory.io.fallocate(segment.fd, 0, Int64(segmentSize))
                if result == 0 {
                    let synced = directory.io.fsync(segment.fd)
                    guard synced == 0 else { throw .syncFailed(path: segment.path, errno: synced) }
                    capacity = segmentSize
                } else if !JournalIO.isFull(result) {
                    throw .ioError(path: segment.path, operation: "preallocate", errno: result)
                }
            }
            precondition(end.offset >= JournalSegmentHeader.size && end.offset <= capacity, "\(end) is not inside its segment")
            position = end
        } else {
            segment = try directory.createSegment(firstID: firstID, size: Int64(segmentSize))
            capacity = segmentSize
            position = JournalPosition(segmentFirstID: firstID, offset: JournalSegmentHeader.size, nextID: firstID)
        }
        state = Mutex(AppendState(segment: segment, offset: position.offset, capacity: capacity, nextID: position.nextID))
        shared = Mutex(Shared(end: position))
    }

    /// Where the next append goes: after the last record appended (durable or not).
    var end: JournalPosition { shared.withLock { $0.end } }

    /// The fatal error that stopped the writer, if any.
    var stoppedBy: JournalError? { shared.withLock { $0.stopped } }

    /// Assigns consecutive ids to `callbacks`, frames them and writes them with one pwrite.
    /// Nothing is durable until a later `sync()` returns. On `.full` nothing was appended and no id
    /// was used; any other error is fatal and stops the writer.
    func append(_ callbacks: [NewCallback]) throws(JournalError) -> [Int64] {
        try appending.run { () throws(JournalError) -> [Int64] in
            try throwIfStopped()
            guard !callbacks.isEmpty else { return [] }
            return try state.withLock { (state) throws(JournalError) -> [Int64] in
                var frames: [UInt8] = []
                frames.reserveCapacity(callbacks.reduce(0) { $0 + JournalFrame.headerSize + JournalPayload.estimatedSize($1) })
                let first = state.nextID
                for (index, callback) in callbacks.enumerated() {
                    try JournalFrame.append(JournalRecord(id: first + Int64(index), callback: callback), to: &frames)
                }
                if state.offset + frames.count > state.capacity { try makeRoom(for: frames.count, in: &state) }
                try write(frames, in: state)
                state.offset += frames.count
                state.nextID += Int64(callbacks.count)
                let end = JournalPosition(segmentFirstID: state.segment.firstID, offset: state.offset, nextID: state.nextID)
                let segment = state.segment
                shared.withLock { shared in
                    shared.end = end
                    if !shared.unsynced.contains(where: { $0 === segment }) { shared.unsynced.append(segment) }
                }
                return Array(first..<state.nextID)
            }
        }
    }

    /// Whether a write at the end would go through now: rewrites one of the zeros already there
    /// (the segment is preallocated, so nothing changes on disk). For an idle writer after a full disk.
    func hasRoom() -> Bool {
        appending.run { () -> Bool in
            guard shared.withLock({ $0.stopped }) == nil else { return false }
            return state.withLock { state in
                guard state.offset < state.capacity else { return false }
                var zero: UInt8 = 0
                let result = withUnsafeBytes(of: &zero) { directory.io.pwrite(state.segment.fd, $0, Int64(state.offset)) }
                return result == 1
            }
        }
    }

    /// fdatasyncs every segment written since the last sync. A failure stops the writer for good.
    func sync() throws(JournalError) {
        try syncing.run { () throws(JournalError) in
            try throwIfStopped()
            let segments = shared.withLock { shared in
                defer { shared.unsynced.removeAll() }
                return shared.unsynced
            }
            for segment in segments {
                let result = directory.io.fdatasync(segment.fd)
                if result != 0 { try stop(.syncFailed(path: segment.path, errno: result)) }
            }
        }
    }

    private func throwIfStopped() throws(JournalError) {
        if let stopped = shared.withLock({ $0.stopped }) { throw stopped }
    }

    /// Latches a fatal error (the first one wins) and throws it.
    private func stop(_ error: JournalError) throws(JournalError) -> Never {
        let first = shared.withLock { shared in
            if shared.stopped == nil { shared.stopped = error }
            return shared.stopped!
        }
        throw first
    }

    /// Grows the current segment when it holds no record yet (a new segment would take its name),
    /// else syncs it and rolls to a new one sized for at least `count` bytes.
    private func makeRoom(for count: Int, in state: inout AppendState) throws(JournalError) {
        let needed = JournalSegmentHeader.size + count
        if state.offset == JournalSegmentHeader.size {
            let result = directory.io.fallocate(state.segment.fd, 0, Int64(needed))
            guard result == 0 else {
                if JournalIO.isFull(result) { throw .full(path: state.segment.path, errno: result) }
                try stop(.writeFailed(path: state.segment.path, errno: result))
            }
            let synced = directory.io.fsync(state.segment.fd)
            if synced != 0 { try stop(.syncFailed(path: state.segment.path, errno: synced)) }
            state.capacity = needed
            return
        }
        let synced = directory.io.fdatasync(state.segment.fd)
        if synced != 0 { try stop(.syncFailed(path: state.segment.path, errno: synced)) }
        let segment: SegmentFile
        do {
            segment = try directory.createSegment(firstID: state.nextID, size: Int64(max(segmentSize, needed)))
        } catch {
            if error.isFatal { try stop(error) }
            throw error
        }
        state.segment = segment
        state.offset = JournalSegmentHeader.size
        state.capacity = max(segmentSize, needed)
    }

    private func write(_ frames: [UInt8], in state: AppendState) throws(JournalError) {
        let fd = state.segment.fd
        let (written, error) = frames.withUnsafeBytes { directory.io.writeFully(fd, $0, at: Int64(state.offset)) }
        guard let error else { return }
        guard JournalIO.isFull(error) else { try stop(.writeFailed(path: state.segment.path, errno: error)) }
        // Out of room part way: put the zeros back, so that no part of this batch (answered as failed)
        // can be read as records if the process stops before the next append overwrites it.
        if written > 0, let zeroing = directory.io.writeZeros(fd, at: Int64(state.offset), count: Int64(written)) {
            try stop(.writeFailed(path: state.segment.path, errno: zeroing))
        }
        throw .full(path: state.segment.path, errno: error)
    }
}
