import ArgumentParser
import Foundation
import ListenerApp
import SQLiteStore

/// The store's own maintenance: checking journal and index against each other, and rebuilding
/// the index from the journal.
struct Store: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Verify the store (journal and SQLite index), or rebuild the index from the journal.",
        discussion: """
            The store is a journal of segments (journal/ beside the database) with SQLite as its \
            index. Exit status: 0 consistent or done, 1 damage, mismatch or refusal (said on \
            stderr), 2 usage, 78 bad configuration.
            """,
        subcommands: [Verify.self, RebuildIndex.self]
    )
}

extension DatabaseOptions {
    /// `--database`, else `storage.path` of the configuration.
    func resolvedDatabasePath() async throws -> String {
        if let database { return database }
        return try await loadConfiguration(config.resolvedPath).storage.path
    }
}

func storeFailure(_ message: String) -> ExitCode {
    FileHandle.standardError.write(Data("thingspace-listener: \(message)\n".utf8))
    return ExitCode(1)
}

extension Store {
    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check journal and index against each other; changes nothing (safe while the service runs).",
            discussion: """
                Runs SQLite's integrity and foreign key checks, reads every journal segment end to \
                end, and compares every journal record the index says it holds with its row. \
                Prints one line per finding (damage, mismatch or note) and a summary. A torn tail \
                in the newest segment was never acknowledged: it is a note (the next start cuts \
                it), as are records not yet indexed and rows whose segments were removed.
                """)

        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            let path = try await database.resolvedDatabasePath()
            let verification = StoreVerifier.verify(databasePath: path)
            for finding in verification.findings { print(finding) }
            print("store verify: \(verification.summary)")
            guard verification.isConsistent else {
                let problems = verification.problems
                let first = problems.first.map { ": \($0)" } ?? ""
                throw storeFailure(
                    "store verify: \(path) and its journal are not consistent (\(problems.count) problem\(problems.count == 1 ? "" : "s"))\(first)"
                )
            }
        }
    }

    struct RebuildIndex: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rebuild-index",
            abstract: "Rebuild the SQLite index from the journal segments still present (the service must be stopped).",
            discussion: """
                Moves the database (and its -wal, -shm) aside to <path>.damaged-<timestamp>, never \
                deleting it, creates a fresh one and indexes every record of the journal. Callbacks \
                whose segments were already removed (everything indexed before the last checkpoints) \
                are only in the old database. Without --yes it says what it would do and exits 2.
                """)

        @OptionGroup var database: DatabaseOptions
        @Flag(help: "Do it (without: explain and exit 2).") var yes = false

        func run() async throws {
            let path = try await database.resolvedDatabasePath()
            let journal = (URL(fileURLWithPath: path).deletingLastPathComponent().path as NSString).appendingPathComponent("journal")
            guard yes else {
                FileHandle.standardError.write(
                    Data(
                        """
                        store rebuild-index would:
                          1. check that no process has \(path) or \(journal) open (stop the service first);
                          2. read every segment in \(journal) (nothing changes if one is damaged);
                          3. move \(path) (and -wal, -shm) aside to \(path).damaged-<timestamp>, never deleting it;
                          4. create a fresh \(path) and index every record of the segments still present.
                        Callbacks whose segments were already removed stay only in the old database.
                        Run it again with --yes to do it.

                        """.utf8))
                throw ExitCode(2)
            }
            if let holder = StoreUsage.holder(databasePath: path) {
                throw storeFailure("store rebuild-index: refused: \(holder); stop the service first (systemctl stop thingspace-listener)")
            }
            let rebuild: IndexRebuild
            do {
                rebuild = try IndexRebuilder.rebuild(databasePath: path)
            } catch {
                throw storeFailure("store rebuild-index: \(error)")
            }
            for note in rebuild.notes { print("note: \(note)") }
            if let moved = rebuild.movedTo.first {
                print(
                    "moved the old database to \(moved)"
                        + (rebuild.movedTo.count > 1
                            ? " (with its \(rebuild.movedTo.dropFirst().map { $0.hasSuffix("-wal") ? "-wal" : "-shm" }.joined(separator: ", ")))"
                            : ""))
            } else {
                print("there was no database at \(path): nothing moved aside")
            }
            let ranges = rebuild.ranges.map { $0.lowerBound == $0.upperBound ? "\($0.lowerBound)" : "\($0.lowerBound)–\($0.upperBound)" }
            print(
                "indexed \(rebuild.indexed) record\(rebuild.indexed == 1 ? "" : "s") into \(path)"
                    + (ranges.isEmpty ? " (the journal holds none)" : " (ids \(ranges.joined(separator: ", ")))"))
            if let first = rebuild.ranges.first?.lowerBound, first > 1 {
                let old = rebuild.movedTo.first.map { " (\($0))" } ?? ""
                print(
                    "warning: callbacks with ids below \(first) were in segments already removed: they are only in the old database\(old)"
                )
            } else if rebuild.ranges.isEmpty, let old = rebuild.movedTo.first {
                print("warning: every callback indexed before is only in the old database (\(old))")
            }
        }
    }
}
