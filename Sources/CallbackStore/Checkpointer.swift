import Foundation
import Logging

/// Copies the WAL into the database file (a PASSIVE checkpoint) on its own thread and connection,
/// every `interval`, so the writer's commits seldom stop for one.
///
/// Inside a commit, SQLite's automatic checkpoint held every callback behind it for the copy and
/// the database fsync: 3 ms several times a second under load, the whole p99. A PASSIVE
/// checkpoint takes no lock the writer needs. It cannot restart the WAL while commits keep
/// coming, so the writer keeps a large automatic threshold (`Schema.writerPragmas`) that restarts
/// it; by then nearly everything is copied, and that checkpoint is short.
///
/// Owned by the writing `SQLiteCallbackStore`, which pauses it (closing its connection) whenever it
/// drops its own, and resumes it once it has opened a new one: after the file was moved, no
/// connection may stay on the old file, or open the new one before the writer, since both files
/// share the `-wal` and `-shm` names. It is also paused from a failed fdatasync of the WAL (or an
/// I/O error of its own) until the WAL is whole on disk again (`WriteAheadLog.rewrite`): copying
/// frames the disk may lack into the database file could mix old and new pages after a power cut.
final class Checkpointer: @unchecked Sendable {
    struct PauseReasons: OptionSet {
        let rawValue: Int
        /// The store is between two connections.
        static let reopening = PauseReasons(rawValue: 1)
        /// The WAL on disk may lack frames the WAL in memory has.
        static let walRepair = PauseReasons(rawValue: 2)
    }

    static let interval: TimeInterval = 0.05

    private let path: String
    private let logger: Logger
    private let condition = NSCondition()
    // Guarded by condition:
    private var isStopping = false
    private var isStopped = false
    private var pausedFor: PauseReasons = []
    private var sawIOError = false
    private var connection: SQLiteConnection?

    init(path: String, logger: Logger) {
        self.path = path
        self.logger = logger
        let thread = Thread { [self] in
            nameCurrentThread("store-checkpt")
            run()
        }
        thread.start()
    }

    /// From any thread: closes the connection now, waiting for a checkpoint in progress, and
    /// checkpoints no more until resumed for every reason it was paused for.
    func pause(_ reason: PauseReasons) {
        condition.lock()
        defer { condition.unlock() }
        pausedFor.insert(reason)
        connection?.close()
        connection = nil
    }

    /// Checkpoints again from the next round (on a new connection) unless paused for another reason.
    func resume(_ reason: PauseReasons) {
        condition.lock()
        defer { condition.unlock() }
        pausedFor.remove(reason)
    }

    /// Whether a checkpoint failed with an I/O error since the last call: the WAL needs repair.
    func takeIOError() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        defer { sawIOError = false }
        return sawIOError
    }

    /// Ends the thread and waits for it, its connection closed.
    func stop() {
        condition.lock()
        defer { condition.unlock() }
        isStopping = true
        condition.broadcast()
        while !isStopped {
            condition.wait()
        }
    }

    private func run() {
        condition.lock()
        defer { condition.unlock() }
        while !isStopping {
            _ = condition.wait(until: Date(timeIntervalSinceNow: Self.interval))
            if isStopping { break }
            if pausedFor.isEmpty { checkpoint() }
        }
        connection?.close()
        connection = nil
        isStopped = true
        condition.broadcast()
    }

    /// Under the lock: a PASSIVE checkpoint takes a few milliseconds at most.
    private func checkpoint() {
        do {
            if connection == nil {
                // Never creates the file: the writer decides what lives at `path`.
                connection = try SQLiteConnection(path: path, readOnly: false, create: false)
            }
            try connection?.execute("PRAGMA wal_checkpoint(PASSIVE)")
        } catch {
            // The writer reports a failing disk. After an I/O error (the fsync of the WAL or the
            // database file failed) it also repairs the WAL before this checkpoints again; anything
            // else (the file moved, say) is retried with a fresh connection.
            logger.debug("WAL checkpoint failed", metadata: ["error": "\(error)"])
            connection?.close()
            connection = nil
            switch error {
            case .ioError, .full:
                pausedFor.insert(.walRepair)
                sawIOError = true
            default: break
            }
        }
    }
}
