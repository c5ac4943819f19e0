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
final class Checkpointer: @unchecked Sendable {
    static let interval: TimeInterval = 0.05

    private let path: String
    private let logger: Logger
    private let condition = NSCondition()
    private var isStopping = false  // guarded by condition
    private var isStopped = false  // guarded by condition

    init(path: String, logger: Logger) {
        self.path = path
        self.logger = logger
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "callback-store-checkpoint"
        thread.start()
    }

    /// Ends the thread and waits for it, so its connection is closed before the writer's.
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
        var connection: SQLiteConnection?
        while waitForNextRound() {
            do {
                if connection == nil {
                    // Never creates the file: after a move the writer decides what lives at `path`.
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
        connection?.close()
        condition.lock()
        isStopped = true
        condition.broadcast()
        condition.unlock()
    }

    /// Waits `interval`; false once asked to stop.
    private func waitForNextRound() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if !isStopping {
            _ = condition.wait(until: Date(timeIntervalSinceNow: Self.interval))
        }
        return !isStopping
    }
}
