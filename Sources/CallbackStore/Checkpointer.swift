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
/// share the `-wal` and `-shm` names.
final class Checkpointer: @unchecked Sendable {
    static let interval: TimeInterval = 0.05

    private let path: String
    private let logger: Logger
    private let condition = NSCondition()
    // Guarded by condition:
    private var isStopping = false
    private var isStopped = false
    private var isPaused = false
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

    /// Closes the connection now, waiting for a checkpoint in progress, and checkpoints no more
    /// until `resume()`.
    func pause() {
        condition.lock()
        defer { condition.unlock() }
        isPaused = true
        connection?.close()
        connection = nil
    }

    /// Checkpoints again from the next round, on a new connection.
    func resume() {
        condition.lock()
        defer { condition.unlock() }
        isPaused = false
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
            if !isPaused { checkpoint() }
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
            // The writer reports a failing disk; this only retries with a fresh connection.
            logger.debug("WAL checkpoint failed; retrying", metadata: ["error": "\(error)"])
            connection?.close()
            connection = nil
        }
    }
}
