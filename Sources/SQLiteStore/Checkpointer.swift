import CallbackStore
import Foundation
import Logging
import Synchronization

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
    private var connection: SQLiteConnection?
    /// The WAL, opened with the connection: after a failed checkpoint its fdatasync tells whether
    /// the WAL itself lost a write (each descriptor open at the time hears of it).
    private var writeAheadLog: WriteAheadLog?
    /// Read by the writer before each commit: never behind the lock a checkpoint holds.
    private let walNeedsRepair = Atomic<Bool>(false)

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
        closeConnection()
    }

    /// Checkpoints again from the next round (on a new connection) unless paused for another reason.
    func resume(_ reason: PauseReasons) {
        condition.lock()
        defer { condition.unlock() }
        pausedFor.remove(reason)
    }

    /// Whether a checkpoint found since the last call that the WAL lost a write: it needs repair.
    func takeWALFailure() -> Bool {
        walNeedsRepair.exchange(false, ordering: .acquiringAndReleasing)
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
        closeConnection()
        isStopped = true
        condition.broadcast()
    }

    /// Under the lock: a PASSIVE checkpoint takes a few milliseconds at most.
    private func checkpoint() {
        do {
            if connection == nil {
                // Never creates the file: the writer decides what lives at `path`.
                let opened = try SQLiteConnection(path: path, readOnly: false, create: false)
                connection = opened
                guard let walPath = opened.writeAheadLogPath else { throw CallbackStoreError.openFailed(path: path, message: "no WAL") }
                writeAheadLog = try WriteAheadLog(path: walPath)
            }
            try connection?.execute("PRAGMA wal_checkpoint(PASSIVE)")
        } catch {
            // The writer reports a failing disk; this retries with a fresh connection. But if the
            // WAL itself lost a write, nothing is copied from it until the writer has repaired it.
            logger.debug("WAL checkpoint failed", metadata: ["error": "\(error)"])
            if let writeAheadLog, (try? writeAheadLog.sync()) == nil {
                pausedFor.insert(.walRepair)
                walNeedsRepair.store(true, ordering: .releasing)
            }
            closeConnection()
        }
    }

    private func closeConnection() {
        connection?.close()
        connection = nil
        writeAheadLog = nil
    }
}
