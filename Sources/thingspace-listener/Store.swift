import ArgumentParser
import CallbackStore
import Foundation
import ListenerApp
import Logging
import PostgresStore
import SQLiteStore

/// The store's own maintenance: checking journal and index against each other, rebuilding the
/// index from the journal, and moving a store to PostgreSQL.
struct Store: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Verify the store (journal and SQLite index), rebuild the index from the journal, or move it to PostgreSQL.",
        discussion: """
            The store is a journal of segments (journal/ beside the database) with SQLite as its \
            index. Exit status: 0 consistent or done, 1 damage, mismatch or refusal (said on \
            stderr), 2 usage, 78 bad configuration.
            """,
        subcommands: [Verify.self, RebuildIndex.self, Migrate.self]
    )
}

extension DatabaseOptions {
    /// `--database`, else `storage.path` of the configuration: the SQLite backend's, which has a journal.
    func resolvedDatabasePath() async throws -> String {
        switch try await location() {
        case .sqlite(let path): return path
        case .postgresql(let settings):
            throw ValidationError(
                "\(settings) is PostgreSQL: verify and rebuild-index check the SQLite backend's journal and index; PostgreSQL keeps its own (its amcheck extension checks indexes)"
            )
        }
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

extension Store {
    struct Migrate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy the SQLite store (callbacks and delivery ledger) into PostgreSQL (the service must be stopped).",
            discussion: """
                Indexes what the journal holds beyond the index first (as a start of the service \
                would), then copies every callback with its id and repeat link in one transaction \
                (a failed copy leaves the target as it was), then the delivery ledger: each \
                destination's records, cursor and 410. The target must hold no callbacks; its \
                schema is created. The SQLite store is left as it was. The password comes from \
                $THINGSPACE_LISTENER_STORAGE_POSTGRESQL_PASSWORD, the credentials file \
                storage-postgresql-password, PGPASSWORD or PGPASSFILE.
                """)

        @OptionGroup var database: DatabaseOptions
        @Option(name: .long, help: ArgumentHelp("The PostgreSQL URI or conninfo string to copy into.", valueName: "url"))
        var to: String

        func run() async throws {
            let path = try await database.resolvedDatabasePath()
            guard PostgreSQLSettings.isPostgreSQL(to) else {
                throw ValidationError("--to must be a PostgreSQL URI (postgresql://…) or conninfo string (host=… dbname=…)")
            }
            let settings = PostgreSQLSettings(url: to, password: try await ListenerConfiguration.postgreSQLPasswordWithoutFile())
            guard FileManager.default.fileExists(atPath: path) else { throw storeFailure("store migrate: no database at \(path)") }
            if let holder = StoreUsage.holder(databasePath: path) {
                throw storeFailure("store migrate: refused: \(holder); stop the service first (systemctl stop thingspace-listener)")
            }
            do {
                try indexJournalTail(path)
                let ledgerPath = SQLiteDeliveryLedger.path(besideDatabase: path)
                let ledgers =
                    try FileManager.default.fileExists(atPath: ledgerPath)
                    ? (source: SQLiteDeliveryLedger(path: ledgerPath), target: openTargetLedger(settings)) : nil
                let copied = try PostgreSQLImport.copy(from: SQLiteCallbackStore(path: path, readOnly: true), to: settings) { done in
                    if done % 100_000 == 0 { print("copied \(done) callbacks…") }
                }
                print("copied \(copied) callback\(copied == 1 ? "" : "s") from \(path) to \(settings)")
                if let ledgers {
                    let (destinations, records) = try copyLedger(from: ledgers.source, to: ledgers.target)
                    print(
                        "copied the delivery ledger: \(records) record\(records == 1 ? "" : "s") of \(destinations) destination\(destinations == 1 ? "" : "s")"
                    )
                }
            } catch {
                throw storeFailure("store migrate: \(error)")
            }
            print("next: set storage.backend to \"postgresql\" and storage.postgresql.url, then start the service")
        }

        /// What a crash left in the journal beyond the index is indexed, as the service's start does.
        private func indexJournalTail(_ path: String) throws(CallbackStoreError) {
            var logger = Logger(label: "store-migrate")
            logger.logLevel = .warning
            let journal = try JournalStore(databasePath: path, logger: logger, onFatal: { _ in })
            journal.close()
        }

        /// The target's ledger, which must be empty: a copy into a used one would mix two histories.
        private func openTargetLedger(_ settings: PostgreSQLSettings) throws(CallbackStoreError) -> PostgreSQLDeliveryLedger {
            let ledger = try PostgreSQLDeliveryLedger(settings: settings, instance: "store-migrate:\(getpid())")
            guard try ledger.list(DeliveryFilter(limit: 1)).isEmpty else {
                throw .backend(message: "\(settings) already holds deliveries; migrate into an empty database")
            }
            return ledger
        }

        /// Each destination's records (state, attempts, schedule kept), cursor and 410, a page at a time.
        private func copyLedger(from source: SQLiteDeliveryLedger, to target: PostgreSQLDeliveryLedger) throws(CallbackStoreError) -> (
            destinations: Int, records: Int
        ) {
            let destinations = try source.destinations()
            var records = 0
            for destination in destinations {
                var after: Int64 = 0
                while true {
                    let page = try source.list(DeliveryFilter(destination: destination, afterID: after, limit: 1000))
                    guard let last = page.last else { break }
                    try target.update(page)
                    records += page.count
                    after = last.callbackID
                }
                if let cursor = try source.cursor(destination: destination) {
                    try target.enqueue(destination: destination, [], through: cursor)
                }
                if let disabled = try source.disabled(destination: destination) {
                    try target.setDisabled(destination: destination, disabled)
                }
            }
            source.close()
            target.close()
            return (destinations.count, records)
        }
    }
}
