import ArgumentParser
import CallbackStore
import Delivery
import Foundation
import ListenerApp
import PostgresStore
import SQLiteStore
import Vocabulary

struct Deliveries: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Where each callback stands with each destination; retry, replay, enable (beside the running service).",
        subcommands: [List.self, Retry.self, Replay.self, Enable.self]
    )
}

extension DatabaseOptions {
    /// The delivery ledger: beside the SQLite database, or the shared tables in PostgreSQL.
    /// `changing`: every commit synced (what a person asked for must not be lost to a power cut),
    /// and created when missing.
    func openLedger(changing: Bool) async throws -> any DeliveryLedger {
        switch try await location(for: .callbacksCommand) {
        case .sqlite(let database):
            let path = SQLiteDeliveryLedger.path(besideDatabase: database)
            guard changing || FileManager.default.fileExists(atPath: path) else {
                throw ValidationError("no delivery ledger at \(path) (no destination has run yet)")
            }
            do {
                return try SQLiteDeliveryLedger(path: path, durableCommits: true)
            } catch {
                throw ValidationError("cannot open \(path): \(error)")
            }
        case .postgresql(let settings):
            do {
                // Read first: a database the service never used is not created by a look at it.
                try PostgreSQLCallbackReader(settings: settings).close()
                return try PostgreSQLDeliveryLedger(settings: settings, instance: "cli:\(ProcessInfo.processInfo.hostName):\(getpid())")
            } catch {
                throw ValidationError("cannot open the delivery ledger in \(settings): \(error)")
            }
        }
    }

    /// A configured destination, by name.
    func destination(named name: String) async throws -> Destination {
        let destinations = try await loadConfiguration(config.resolvedPath, for: .callbacksCommand).delivery.destinations
        guard let destination = destinations.first(where: { $0.name == name }) else {
            let known = destinations.map(\.name).joined(separator: ", ")
            throw ValidationError("no destination named \(name) in the configuration (configured: \(known.isEmpty ? "none" : known))")
        }
        return destination
    }
}

extension DeliveryState: ExpressibleByArgument {}

extension Deliveries {
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List deliveries in callback id order, as a table.")
        @OptionGroup var database: DatabaseOptions
        @Option(help: "Only this destination.") var destination: String?
        @Option(help: "Only this state: pending, retrying, delivered or dead.") var state: DeliveryState?
        @Option(help: "Only callbacks with an id above this.") var after: Int64 = 0
        @Option(help: "At most this many rows.") var limit: Int = 50

        func validate() throws {
            guard limit > 0 else { throw ValidationError("--limit must be above 0") }
        }

        func run() async throws {
            let ledger = try await database.openLedger(changing: false)
            defer { ledger.close() }
            let records = try ledger.list(DeliveryFilter(destination: destination, state: state, afterID: after, limit: limit))
            let rows = records.map { record in
                [
                    String(record.callbackID), record.destination, record.state.rawValue, String(record.attempts),
                    record.nextAttemptAt.map { formatTimestamp($0) } ?? "-", record.lastAttemptAt.map { formatTimestamp($0) } ?? "-",
                    record.lastError ?? (record.lastStatus.map { "HTTP \($0)" } ?? "-"),
                ]
            }
            print(
                renderTable(
                    header: ["CALLBACK", "DESTINATION", "STATE", "ATTEMPTS", "NEXT ATTEMPT (UTC)", "LAST ATTEMPT (UTC)", "LAST RESULT"],
                    rows: rows))
            if records.isEmpty { print("(no deliveries match)") }
            for name in Set(records.map(\.destination)).sorted() {
                if let disabled = try ledger.disabled(destination: name) {
                    print("destination \(name) is disabled since \(formatTimestamp(disabled.at)): \(disabled.reason)")
                }
            }
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Attempt dead-lettered deliveries again, now, with a fresh schedule (the running service picks them up).")
        @OptionGroup var database: DatabaseOptions
        @Option(help: "The destination.") var destination: String
        @Option(help: "This callback's delivery (repeatable).") var id: [Int64] = []
        @Flag(help: "Every dead-lettered delivery of the destination.") var dead = false

        func validate() throws {
            guard id.isEmpty != !dead else { throw ValidationError("give --id N (one or more) or --dead") }
        }

        func run() async throws {
            let ledger = try await database.openLedger(changing: true)
            defer { ledger.close() }
            let count = try ledger.retry(destination: destination, ids: dead ? nil : id, now: Timekeeping.wallClockMilliseconds())
            print("\(count) dead-lettered deliver\(count == 1 ? "y" : "ies") to \(destination) will be attempted again")
            if count == 0 && !id.isEmpty { throw ExitCode(1) }
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Deliver again every matching callback received in a time range, delivered or not, with the same webhook-id.")
        @OptionGroup var database: DatabaseOptions
        @Option(help: "The destination (as configured: its services and includeDuplicates choose the callbacks).")
        var destination: String
        @Option(help: ArgumentHelp("Callbacks received at or after this time (ISO 8601).", valueName: "time")) var since: String
        @Option(help: ArgumentHelp("…and before this time (ISO 8601; default: now).", valueName: "time")) var until: String?

        func validate() throws {
            guard Timekeeping.milliseconds(iso8601: since) != nil else { throw ValidationError("--since: not an ISO 8601 time: \(since)") }
            if let until, Timekeeping.milliseconds(iso8601: until) == nil {
                throw ValidationError("--until: not an ISO 8601 time: \(until)")
            }
        }

        func run() async throws {
            let target = try await database.destination(named: destination)
            let start = Timekeeping.milliseconds(iso8601: since) ?? 0
            let end = until.flatMap { Timekeeping.milliseconds(iso8601: $0) } ?? Int64.max
            guard start < end else { throw ValidationError("--since must be before --until") }
            let store = try await database.openStore()
            let ledger = try await database.openLedger(changing: true)
            defer { ledger.close() }
            let now = Timekeeping.wallClockMilliseconds()
            var count = 0
            var batch: [DeliveryRecord] = []
            // In id order, a page at a time; each page is one transaction.
            try store.export(includeDuplicates: target.includeDuplicates) { callback in
                guard callback.receivedAt >= start, callback.receivedAt < end, target.accepts(service: callback.service) else { return }
                batch.append(
                    DeliveryRecord(
                        destination: target.name, callbackID: callback.id, nextAttemptAt: now,
                        orderingKey: callback.deviceIDs.first.map { "\($0.kind):\($0.id)" }, receivedAt: callback.receivedAt))
                if batch.count == 1_000 {
                    count += try ledger.replay(batch, now: now)
                    batch.removeAll(keepingCapacity: true)
                }
            }
            count += try ledger.replay(batch, now: now)
            print("\(count) callback\(count == 1 ? "" : "s") will be delivered again to \(target.name)")
        }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Enable a destination that a 410 Gone disabled (as a reload does).")
        @OptionGroup var database: DatabaseOptions
        @Option(help: "The destination.") var destination: String

        func run() async throws {
            let ledger = try await database.openLedger(changing: true)
            defer { ledger.close() }
            guard try ledger.disabled(destination: destination) != nil else {
                print("\(destination) is not disabled")
                return
            }
            try ledger.setDisabled(destination: destination, nil)
            print("\(destination) enabled; the running service resumes it within a second")
        }
    }
}
