// `store rebuild-index`: a fresh SQLite index from the journal segments still present, the old
// database moved aside (never deleted: callbacks whose segments were already removed are only
// in it). Only while nothing else has the store open: see `StoreUsage`.
import CallbackStore
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// What a rebuild did.
public struct IndexRebuild: Sendable {
    public var indexed = 0
    /// The ids indexed, as contiguous ranges (more than one when segments are missing between).
    public var ranges: [ClosedRange<Int64>] = []
    /// Where the old database (and its -wal, -shm) went; nil when there was none.
    public var movedTo: [String] = []
    /// An unacknowledged tail the next start cuts, or other things worth saying.
    public var notes: [String] = []
}

public struct IndexRebuildError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

public enum IndexRebuilder {
    /// Records per SQLite transaction.
    static let batch = 10_000

    /// Reads every segment once to check it (nothing is moved when one is damaged), moves the old
    /// database aside to `<path>.damaged-<timestamp>`, creates a fresh one and indexes every record.
    /// The caller checks first that the service is stopped (`StoreUsage.holder`).
    public static func rebuild(databasePath: String, now: Date = Date()) throws(IndexRebuildError) -> IndexRebuild {
        let directory = JournalDirectory(path: JournalDirectory.path(besideDatabase: databasePath))
        var result = IndexRebuild()
        // 1. Check: every segment readable, nothing damaged.
        let segments: [JournalDirectory.Entry]
        do { segments = try directory.segments() } catch { throw IndexRebuildError(message: "cannot list the journal: \(error)") }
        guard !segments.isEmpty else {
            throw IndexRebuildError(
                message: "no journal segments in \(directory.path): there is nothing to rebuild the index from; nothing was changed")
        }
        var damage: [String] = []
        do {
            try walkJournal(directory) { event in
                switch event {
                case .record: break
                case .damaged(let path, let offset, let reason): damage.append("\(path) at byte \(offset): \(reason)")
                case .gap(let ids, let before):
                    result.notes.append(
                        "no segment holds ids \(ids.lowerBound)–\(ids.upperBound) (before \(before)): callbacks among them are only in the old database"
                    )
                case .vanished(let path): damage.append("\(path) was removed while it was read: is the service running?")
                case .tail(let tail):
                    if tail != .clean { result.notes.append("\(tail); the service cuts it at its next start (it was never acknowledged)") }
                }
            }
        } catch {
            throw IndexRebuildError(message: "cannot read the journal: \(error); nothing was changed")
        }
        guard damage.isEmpty else {
            throw IndexRebuildError(
                message: "the journal is damaged, so nothing was changed:\n  " + damage.joined(separator: "\n  ")
                    + "\nrestore the segment from a backup, or move it out of \(directory.path) (its callbacks are then only in the old "
                    + "database) and run `store rebuild-index` again")
        }

        // 2. Move the old database aside.
        let stamp = timestamp(now)
        let aside = "\(databasePath).damaged-\(stamp)"
        for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: databasePath + suffix) {
            guard rename(databasePath + suffix, aside + suffix) == 0 else {
                let reason = String(cString: strerror(errno))
                throw IndexRebuildError(
                    message: "cannot move \(databasePath + suffix) to \(aside + suffix): \(reason)"
                        + (result.movedTo.isEmpty ? "; nothing was changed" : "; already moved: \(result.movedTo.joined(separator: ", "))"))
            }
            result.movedTo.append(aside + suffix)
        }
        syncDirectory(of: databasePath)

        // 3. A fresh index, filled in large transactions, each with the position after its last record.
        let store: SQLiteCallbackStore
        do {
            store = try SQLiteCallbackStore(path: databasePath)
        } catch {
            throw IndexRebuildError(message: "cannot create \(databasePath): \(error)" + movedNote(result))
        }
        defer { store.close() }
        do {
            var pending: [JournalRecord] = []
            var through: JournalPosition?
            func flush() throws {
                guard let position = through, !pending.isEmpty else { return }
                _ = try store.index(pending, through: position)
                result.indexed += pending.count
                pending.removeAll(keepingCapacity: true)
            }
            try walkJournal(directory) { event in
                guard case .record(let record, let after) = event else { return }
                if let last = result.ranges.last, last.upperBound + 1 == record.id {
                    result.ranges[result.ranges.count - 1] = last.lowerBound...record.id
                } else {
                    result.ranges.append(record.id...record.id)
                }
                pending.append(record)
                through = after
                if pending.count >= batch { try flush() }
            }
            try flush()
            guard try store.checkpointIndex() else {
                throw IndexRebuildError(message: "the new index could not be checkpointed: another process reads it")
            }
        } catch {
            throw IndexRebuildError(message: "rebuilding the index failed: \(error)" + movedNote(result))
        }
        return result
    }

    private static func movedNote(_ result: IndexRebuild) -> String {
        result.movedTo.isEmpty ? "" : "; the old database is at \(result.movedTo[0])"
    }

    /// `20260314T120000Z`: sorts as time does, and no character a shell or a file system minds.
    static func timestamp(_ date: Date) -> String {
        var time = time_t(date.timeIntervalSince1970)
        var parts = tm()
        gmtime_r(&time, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return
            "\(parts.tm_year + 1900)\(two(parts.tm_mon + 1))\(two(parts.tm_mday))T\(two(parts.tm_hour))\(two(parts.tm_min))\(two(parts.tm_sec))Z"
    }

    private static func syncDirectory(of path: String) {
        let parent = (path as NSString).deletingLastPathComponent
        let fd = open(parent.isEmpty ? "." : parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }
}

/// Whether another process has the store open, for commands that must run alone.
///
/// Two checks, both read-only. SQLite (in WAL mode) keeps a shared POSIX lock on the database
/// file's lock bytes for as long as a connection is open, idle or not: `F_GETLK` asks whether
/// anyone holds one, without taking it (the write lock, which `BEGIN IMMEDIATE` would test, is
/// held only during a transaction, so an idle service would pass that test). And, as `lsof`
/// would, `/proc/*/fd` is searched for a process holding the database or a journal segment open
/// (the service after the database file was deleted); processes of other users are seen only by root.
public enum StoreUsage {
    /// A sentence naming who has the store open, or nil when nobody seems to.
    public static func holder(databasePath: String) -> String? {
        if let pid = sqliteLockHolder(databasePath) {
            return "process \(pid)\(commandName(pid)) has the database \(databasePath) open (it holds SQLite's lock on it)"
        }
        let journal = JournalDirectory.path(besideDatabase: databasePath)
        let database = realPath(databasePath) ?? databasePath
        let journalPrefix = (realPath(journal) ?? journal) + "/"
        let me = getpid()
        guard let processes = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
        for name in processes {
            guard let pid = Int32(name), pid != me else { continue }
            guard let descriptors = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(name)/fd") else { continue }
            for descriptor in descriptors {
                guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(name)/fd/\(descriptor)") else {
                    continue
                }
                let file = target.hasSuffix(" (deleted)") ? String(target.dropLast(10)) : target
                if file == database || file.hasPrefix(journalPrefix) || file == database + "-wal" {
                    return "process \(pid)\(commandName(pid)) has \(target) open"
                }
            }
        }
        return nil
    }

    /// The pid holding a lock on SQLite's lock bytes (PENDING, RESERVED, SHARED: 512 bytes at 1 GiB).
    static func sqliteLockHolder(_ path: String) -> Int32? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var lock = flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        lock.l_start = 0x4000_0000
        lock.l_len = 512
        guard fcntl(fd, F_GETLK, &lock) == 0, lock.l_type != Int16(F_UNLCK) else { return nil }
        return lock.l_pid
    }

    private static func commandName(_ pid: Int32) -> String {
        guard let name = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8) else { return "" }
        return " (\(name.trimmingCharacters(in: .whitespacesAndNewlines)))"
    }

    private static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
