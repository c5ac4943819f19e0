import ArgumentParser
import CallbackStore
import Foundation
import JSON
import ListenerApp
import PostgresStore
import SQLiteStore
import Vocabulary

struct Messages: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Query and export the callbacks received (reads while the service writes).",
        subcommands: [List.self, Show.self, Export.self, Tail.self, Stats.self]
    )
}

/// Which database to read: `--database PATH|URL`, else the configuration's store.
struct DatabaseOptions: ParsableArguments {
    @OptionGroup var config: ConfigOption
    @Option(
        name: .long,
        help: ArgumentHelp(
            "SQLite database file, or a PostgreSQL URI or conninfo string (overrides storage.*); a PostgreSQL password comes from $THINGSPACE_LISTENER_STORAGE_POSTGRESQL_PASSWORD, PGPASSWORD or PGPASSFILE, never from the command line.",
            valueName: "path|url"))
    var database: String?

    /// Where the store is.
    enum Location {
        case sqlite(path: String)
        case postgresql(PostgreSQLSettings)
    }

    func location(for use: ConfigurationUse = .serve) async throws -> Location {
        if let database {
            guard PostgreSQLSettings.isPostgreSQL(database) else { return .sqlite(path: database) }
            return .postgresql(PostgreSQLSettings(url: database, password: try await ListenerConfiguration.postgreSQLPasswordWithoutFile()))
        }
        let storage = try await loadConfiguration(config.resolvedPath, for: use).storage
        if let settings = storage.postgreSQLSettings, storage.backend == .postgresql { return .postgresql(settings) }
        return .sqlite(path: storage.path)
    }

    /// The reader for the configured backend (SQLite: a read-only connection beside the service;
    /// PostgreSQL: a connection of its own, which never creates or migrates the schema).
    func openStore() async throws -> any CallbackReader {
        switch try await location() {
        case .sqlite(let path):
            guard FileManager.default.fileExists(atPath: path) else {
                throw ValidationError("no database at \(path) (nothing received yet, or pass --database)")
            }
            do {
                return try SQLiteCallbackStore(path: path, readOnly: true)
            } catch {
                throw ValidationError("cannot open \(path): \(error)")
            }
        case .postgresql(let settings):
            do {
                return try PostgreSQLCallbackReader(settings: settings)
            } catch {
                throw ValidationError("cannot read \(settings): \(error)")
            }
        }
    }
}

extension Messages {
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List received callbacks, newest first, as a table.")

        @OptionGroup var database: DatabaseOptions
        @Option(help: "Only this service (e.g. CarrierService).") var service: String?
        @Option(name: .customLong("request-id"), help: "Only this requestId.") var requestID: String?
        @Option(name: .customLong("device-id"), help: "Only callbacks naming this device id.") var deviceID: String?
        @Option(help: ArgumentHelp("Only callbacks received at or after this time (ISO 8601).", valueName: "time"))
        var since: String?
        @Option(help: "At most this many rows.") var limit: Int = 50
        @Flag(name: .customLong("include-duplicates"), help: "Also list repeated deliveries.") var includeDuplicates = false

        func validate() throws {
            guard limit > 0 else { throw ValidationError("--limit must be above 0") }
            if let since, Timekeeping.milliseconds(iso8601: since) == nil {
                throw ValidationError("--since: not an ISO 8601 time: \(since)")
            }
        }

        func run() async throws {
            let store = try await database.openStore()
            var filter = CallbackFilter()
            filter.service = service
            filter.requestID = requestID
            filter.deviceID = deviceID
            filter.since = since.flatMap { Timekeeping.milliseconds(iso8601: $0) }
            filter.limit = limit
            filter.includeDuplicates = includeDuplicates
            let rows = try store.query(filter)
            let table = rows.map { row in
                [
                    String(row.id), formatTimestamp(row.receivedAt), row.service, row.status ?? "-",
                    row.callbackCount.map(String.init) ?? "-", row.requestID ?? "-",
                    row.deviceIDs.map { "\($0.kind):\($0.id)" }.joined(separator: " "),
                    row.duplicateOf.map(String.init) ?? "",
                ]
            }
            print(
                renderTable(
                    header: ["ID", "RECEIVED (UTC)", "SERVICE", "STATUS", "COUNT", "REQUEST ID", "DEVICES", "DUPLICATE OF"], rows: table))
            if rows.isEmpty { print("(no callbacks match)") }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print one stored callback as pretty JSON.")
        @OptionGroup var database: DatabaseOptions
        @Argument(help: "The callback's id (see `messages list`).") var id: Int64

        func run() async throws {
            let store = try await database.openStore()
            guard let row = try store.callback(id: id) else {
                throw ValidationError("no callback with id \(id)")
            }
            // Metadata one field a line; the body exactly as stored (JSON tools
            // would rewrite its numbers and layout).
            let fields = topLevelMembers(row.jsonObject(includeRemoteAddress: true, includeBody: false))
            var text = "{\n"
            for field in fields { text += "  " + String(decoding: field, as: UTF8.self) + ",\n" }
            text += "  \"body\": " + String(decoding: row.body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) + "\n}"
            print(text)
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write every stored callback as JSON lines, oldest first (streams; constant memory)."
        )
        @OptionGroup var database: DatabaseOptions
        @Option(help: "Output format.") var format: ExportFormat = .jsonl
        @Flag(name: .customLong("include-duplicates"), help: "Also export repeated deliveries.") var includeDuplicates = false

        enum ExportFormat: String, ExpressibleByArgument { case jsonl }

        func run() async throws {
            let store = try await database.openStore()
            let output = BufferedOutput()
            try store.export(includeDuplicates: includeDuplicates) { row in
                var line = row.jsonObject()
                line.append(0x0A)
                try output.write(line)
            }
            try output.flush()
        }
    }

    struct Tail: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the last callbacks as JSON lines (as export does), and with --follow each new one as it is stored.",
            discussion: """
                Reads the database read-only beside the running service. Without --follow it prints the \
                last --lines callbacks, oldest first, and exits; with --follow it goes on printing \
                callbacks as the service stores them (a fraction of a second behind its 200) until \
                interrupted.
                """
        )
        @OptionGroup var database: DatabaseOptions
        @Flag(name: [.customShort("f"), .long], help: "Keep printing new callbacks until interrupted.") var follow = false
        @Option(help: "Only this service (e.g. CarrierService).") var service: String?
        @Option(name: [.customShort("n"), .long], help: "How many of the last callbacks to print first.") var lines: Int = 10
        @Flag(name: .customLong("include-duplicates"), help: "Also print repeated deliveries.") var includeDuplicates = false

        /// How long one wait for new callbacks lasts before asking again.
        static let pollWait: Duration = .seconds(1)

        func validate() throws {
            guard lines >= 0 else { throw ValidationError("--lines must be 0 or more") }
            if let service, service.isEmpty { throw ValidationError("--service must name a service") }
        }

        func run() async throws {
            let store = try await database.openStore()
            let output = BufferedOutput()
            var filter = CallbackFilter(service: service, limit: max(lines, 1), includeDuplicates: includeDuplicates)
            // Everything up to `start` is the past: its last few, then the cursor goes on from there.
            let start = try store.lastID()
            if lines > 0 {
                filter.limit = lines
                let last = try store.query(filter).filter { $0.id <= start }.sorted { $0.id < $1.id }
                for row in last { try output.write(row.jsonObject() + [0x0A]) }
            }
            try output.flush()
            guard follow else { return }
            var cursor = start
            while !Task.isCancelled {
                let page = try store.page(after: cursor, matching: filter, limit: 256)
                for row in page.callbacks { try output.write(row.jsonObject() + [0x0A]) }
                try output.flush()
                cursor = page.next
                if page.callbacks.count < 256 {
                    _ = try await store.waitForCallbacks(after: cursor, timeout: Self.pollWait)
                }
            }
        }
    }

    struct Stats: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Count stored callbacks by service, status and day.")
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            let stats = try await database.openStore().stats()
            print("total \(stats.total), duplicates \(stats.duplicates)\n")
            print(
                renderTable(
                    header: ["SERVICE", "COUNT", "DUPLICATES"],
                    rows: stats.byService.map { [$0.key ?? "(none)", String($0.count), String($0.duplicates)] }))
            print()
            print(
                renderTable(
                    header: ["STATUS", "COUNT", "DUPLICATES"],
                    rows: stats.byStatus.map { [$0.key ?? "(none)", String($0.count), String($0.duplicates)] }))
            print()
            print(
                renderTable(
                    header: ["DAY (UTC)", "COUNT", "DUPLICATES"],
                    rows: stats.byDay.map { [$0.key ?? "(none)", String($0.count), String($0.duplicates)] }))
        }
    }
}

/// Each top-level member of an object `StoredCallback.jsonObject` wrote, as `"name":value`.
func topLevelMembers(_ object: [UInt8]) -> [[UInt8]] {
    var members: [[UInt8]] = []
    object.withUnsafeBufferPointer { buffer in
        var scanner = JSONScanner(buffer)
        try? scanner.scanTopLevelObject { name, range in
            var member: [UInt8] = []
            JSONString.append(name, to: &member)
            member.append(UInt8(ascii: ":"))
            member.append(contentsOf: buffer[range])
            members.append(member)
        }
    }
    return members
}
