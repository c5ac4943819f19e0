import ArgumentParser
import CallbackStore
import Foundation
import ListenerApp
import ThingSpace

struct Messages: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Query and export the callbacks received (reads while the service writes).",
        subcommands: [List.self, Show.self, Export.self, Stats.self]
    )
}

/// Which database to read: `--database PATH`, else `storage.path` of the configuration.
struct DatabaseOptions: ParsableArguments {
    @OptionGroup var config: ConfigOption
    @Option(name: .long, help: ArgumentHelp("SQLite database to read (overrides storage.path).", valueName: "path"))
    var database: String?

    func openStore() async throws -> SQLiteCallbackStore {
        let path: String
        if let database { path = database } else { path = try await loadConfiguration(config.resolvedPath).storage.path }
        guard FileManager.default.fileExists(atPath: path) else {
            throw ValidationError("no database at \(path) (nothing received yet, or pass --database)")
        }
        do {
            return try SQLiteCallbackStore(path: path, readOnly: true)
        } catch {
            throw ValidationError("cannot open \(path): \(error)")
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
            if let since, parseISO8601(since) == nil { throw ValidationError("--since: not an ISO 8601 time: \(since)") }
        }

        func run() async throws {
            let store = try await database.openStore()
            var filter = CallbackFilter()
            filter.service = service
            filter.requestID = requestID
            filter.deviceID = deviceID
            filter.since = since.flatMap(parseISO8601)
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
            print(renderTable(header: ["ID", "RECEIVED (UTC)", "SERVICE", "STATUS", "COUNT", "REQUEST ID", "DEVICES", "DUPLICATE OF"], rows: table))
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
            let line = exportLine(row, includeRemote: true)
            let object = try JSONSerialization.jsonObject(with: Data(line))
            let pretty = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: pretty, as: UTF8.self))
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
                var line = exportLine(row, includeRemote: false)
                line.append(0x0A)
                output.write(line)
            }
            output.flush()
        }
    }

    struct Stats: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Count stored callbacks by service, status and day.")
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            let stats = try await database.openStore().stats()
            print("total \(stats.total), duplicates \(stats.duplicates)\n")
            print(renderTable(header: ["SERVICE", "COUNT", "DUPLICATES"], rows: stats.byService.map { [$0.key ?? "(none)", String($0.count), String($0.duplicates)] }))
            print()
            print(renderTable(header: ["STATUS", "COUNT", "DUPLICATES"], rows: stats.byStatus.map { [$0.key ?? "(none)", String($0.count), String($0.duplicates)] }))
            print()
            print(renderTable(header: ["DAY (UTC)", "COUNT", "DUPLICATES"], rows: stats.byDay.map { [$0.key ?? "(none)", String($0.count), String($0.duplicates)] }))
        }
    }
}

/// One callback as a JSON object; `body` is the stored JSON, byte for byte.
func exportLine(_ row: StoredCallback, includeRemote: Bool) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(row.body.count + 256)
    func key(_ name: String) {
        out.append(out.isEmpty ? UInt8(ascii: "{") : UInt8(ascii: ","))
        JSONEncoding.appendString(name, to: &out)
        out.append(UInt8(ascii: ":"))
    }
    func string(_ value: String?) {
        if let value { JSONEncoding.appendString(value, to: &out) } else { out += Array("null".utf8) }
    }
    key("id"); out += Array(String(row.id).utf8)
    key("receivedAt"); string(formatTimestamp(row.receivedAt, iso: true))
    key("service"); string(row.service)
    key("requestId"); string(row.requestID)
    key("deviceIds"); out.append(UInt8(ascii: "["))
    for (index, device) in row.deviceIDs.enumerated() {
        if index > 0 { out.append(UInt8(ascii: ",")) }
        out += Array("{\"id\":".utf8); string(device.id)
        out += Array(",\"kind\":".utf8); string(device.kind)
        out.append(UInt8(ascii: "}"))
    }
    out.append(UInt8(ascii: "]"))
    key("status"); string(row.status)
    key("callbackCount"); out += Array((row.callbackCount.map(String.init) ?? "null").utf8)
    key("duplicateOf"); out += Array((row.duplicateOf.map(String.init) ?? "null").utf8)
    if includeRemote {
        key("remoteAddress"); string(row.remoteAddress)
    }
    // A JSON line must be one line: raw CR/LF can only be insignificant
    // whitespace in valid JSON (inside strings they are escaped), so a space keeps the meaning.
    key("body"); out += row.body.map { $0 == 0x0A || $0 == 0x0D ? 0x20 : $0 }
    out.append(UInt8(ascii: "}"))
    return out
}
