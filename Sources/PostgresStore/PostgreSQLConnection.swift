// One libpq connection: connect (the password kept out of the connection string and of every
// message), run a statement with parameters, read rows in binary, wait for notifications. Not
// thread-safe, like the PGconn under it: each user keeps its own behind a lock or a queue.
import CPostgreSQL
import Foundation

/// Where and how to connect.
public struct PostgreSQLSettings: Sendable, Hashable, CustomStringConvertible {
    /// A libpq connection URI (`postgresql://…`) or conninfo string (`host=… dbname=…`), `sslmode` and the rest honoured.
    public var url: String
    /// From a credentials file or the environment; nil leaves it to the URL, `PGPASSWORD` or `PGPASSFILE`.
    public var password: String?
    public var applicationName: String

    public init(url: String, password: String? = nil, applicationName: String = "thingspace-listener") {
        self.url = url
        self.password = password
        self.applicationName = applicationName
    }

    /// Whether `location` names PostgreSQL rather than an SQLite file.
    public static func isPostgreSQL(_ location: String) -> Bool {
        location.hasPrefix("postgresql://") || location.hasPrefix("postgres://") || location.contains("=")
    }

    /// The URL without its password, for logs and messages.
    public var description: String { Self.redacted(url) }

    /// `postgresql://user:secret@host/db` → `postgresql://user:<redacted>@host/db`; `password=x` → `password=<redacted>`.
    public static func redacted(_ url: String) -> String {
        if let scheme = url.range(of: "://") {
            let rest = url[scheme.upperBound...]
            let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
            var result = String(url[..<scheme.upperBound])
            let authority = rest[..<authorityEnd]
            if let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") {
                result += authority[..<colon] + ":<redacted>" + authority[at...]
            } else {
                result += authority
            }
            var tail = String(rest[authorityEnd...])
            tail = tail.replacing(/([?&]password=)[^&]*/) { "\($0.1)<redacted>" }
            return result + tail
        }
        return url.replacing(/(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)/) { "\($0.1)<redacted>" }
    }
}

/// What libpq reported: SQLSTATE when the server answered, and whether the connection is gone.
public struct PostgreSQLError: Error, Sendable, Hashable, CustomStringConvertible {
    public var sqlState: String?
    public var message: String
    /// The connection is unusable (server down, restarted, network cut): reconnect.
    public var connectionLost: Bool

    public var description: String {
        (sqlState.map { "\($0): " } ?? "") + message
    }

    /// Class 08 (connection exception), 57P01–57P03 (shutdown, crash, cannot connect now), 53300
    /// (too many connections) and 25006 (read-only: a standby after failover) are outages that pass.
    public var isOutage: Bool {
        guard !connectionLost else { return true }
        guard let state = sqlState else { return false }
        return state.hasPrefix("08") || ["57P01", "57P02", "57P03", "53300", "25006", "40001", "40P01"].contains(state)
    }
}

/// A parameter, sent as text except bytes (bytea), which go in binary.
public enum PostgreSQLValue: Sendable, Hashable {
    case null
    case text(String)
    case int(Int64)
    case bytes([UInt8])
}

/// Rows of one statement, read in binary (`resultFormat` 1).
public struct PostgreSQLRows: ~Copyable {
    fileprivate let result: OpaquePointer

    public var count: Int { Int(PQntuples(result)) }
    public var affected: Int { Int(String(cString: PQcmdTuples(result))) ?? 0 }

    public func isNull(_ row: Int, _ column: Int) -> Bool { PQgetisnull(result, Int32(row), Int32(column)) == 1 }

    public func bytes(_ row: Int, _ column: Int) -> [UInt8]? {
        guard !isNull(row, column) else { return nil }
        let length = Int(PQgetlength(result, Int32(row), Int32(column)))
        guard length > 0, let value = PQgetvalue(result, Int32(row), Int32(column)) else { return [] }
        return value.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) }
    }

    public func string(_ row: Int, _ column: Int) -> String? { bytes(row, column).map { String(decoding: $0, as: UTF8.self) } }

    /// An int2, int4 or int8 column (big-endian in the binary format).
    public func int(_ row: Int, _ column: Int) -> Int64? {
        guard let bytes = bytes(row, column), [2, 4, 8].contains(bytes.count) else { return nil }
        var value: Int64 = bytes[0] & 0x80 != 0 ? -1 : 0
        for byte in bytes { value = (value << 8) | Int64(byte) }
        return value
    }

    public func bool(_ row: Int, _ column: Int) -> Bool? { bytes(row, column).map { $0.first == 1 } }

    deinit { PQclear(result) }
}

/// A NOTIFY received on a channel this connection listens on.
public struct PostgreSQLNotification: Sendable, Hashable {
    public var channel: String
    public var payload: String

    public init(channel: String, payload: String) {
        self.channel = channel
        self.payload = payload
    }
}

public final class PostgreSQLConnection {
    private var connection: OpaquePointer?

    /// Connects, or throws with libpq's reason (which never holds the password).
    public init(_ settings: PostgreSQLSettings, connectTimeoutSeconds: Int = 5) throws(PostgreSQLError) {
        // Defaults first, so that the URL may override them; the password last, so that it wins.
        var pairs: [(String, String)] = [
            ("connect_timeout", "\(connectTimeoutSeconds)"), ("application_name", settings.applicationName),
            // A server that vanished (power cut, partition) is noticed in seconds, not hours.
            ("keepalives", "1"), ("keepalives_idle", "5"), ("keepalives_interval", "2"), ("keepalives_count", "3"),
            // …and a write the network swallowed gives up after 10 s instead of TCP's minutes.
            ("tcp_user_timeout", "10000"),
            ("dbname", settings.url),
        ]
        if let password = settings.password { pairs.append(("password", password)) }
        let connection = Self.withCStrings(pairs.map(\.0)) { keywords in
            Self.withCStrings(pairs.map(\.1)) { values in PQconnectdbParams(keywords, values, 1) }
        }
        guard let connection else { throw PostgreSQLError(message: "out of memory", connectionLost: true) }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = Self.trimmed(PQerrorMessage(connection))
            PQfinish(connection)
            // A refused password or a missing role or database is a setting to fix, not an outage
            // to wait out (libpq gives no SQLSTATE for a failed connection: its words tell).
            let refusals = [("authentication failed", "28P01"), ("no password supplied", "28P01"), ("does not exist", "3D000")]
            if let refusal = refusals.first(where: { message.contains($0.0) }) {
                throw PostgreSQLError(sqlState: refusal.1, message: message, connectionLost: false)
            }
            throw PostgreSQLError(message: message.isEmpty ? "cannot connect" : message, connectionLost: true)
        }
        // libpq prints NOTICEs ("relation … already exists, skipping") to stderr by default: the
        // service's output is its log, and nothing in a notice needs acting on.
        PQsetNoticeProcessor(connection, { _, _ in }, nil)
        self.connection = connection
        // Every message in English and timestamps in UTC, whatever the server's defaults.
        try execute("SET lc_messages TO 'C'; SET TIME ZONE 'UTC'")
    }

    deinit { close() }

    public func close() {
        if let connection { PQfinish(connection) }
        connection = nil
    }

    /// False once the connection broke: it must be replaced.
    public var isUsable: Bool { connection.map { PQstatus($0) == CONNECTION_OK } ?? false }

    /// The server's process id for this session (for tests that end it).
    public var backendPID: Int32 { connection.map { PQbackendPID($0) } ?? 0 }

    /// Runs one statement with `$1…` parameters and returns its rows (binary).
    @discardableResult
    public func query(_ sql: String, _ parameters: [PostgreSQLValue] = []) throws(PostgreSQLError) -> PostgreSQLRows {
        guard let connection else { throw PostgreSQLError(message: "the connection is closed", connectionLost: true) }
        var texts: [[CChar]?] = []
        var binaries: [[UInt8]?] = []
        var formats: [Int32] = []
        for parameter in parameters {
            switch parameter {
            case .null:
                texts.append(nil)
                binaries.append(nil)
                formats.append(0)
            case .text(let string):
                texts.append(Array(string.utf8CString))
                binaries.append(nil)
                formats.append(0)
            case .int(let value):
                texts.append(Array(String(value).utf8CString))
                binaries.append(nil)
                formats.append(0)
            case .bytes(let bytes):
                texts.append(nil)
                binaries.append(bytes)
                formats.append(1)
            }
        }
        let result = Self.withPointers(texts, binaries) { values, lengths in
            PQexecParams(connection, sql, Int32(parameters.count), nil, values, lengths, formats, 1)
        }
        return try check(result)
    }

    /// Runs one or more statements without parameters (the simple protocol: `BEGIN`, `COMMIT`, DDL).
    public func execute(_ sql: String) throws(PostgreSQLError) {
        guard let connection else { throw PostgreSQLError(message: "the connection is closed", connectionLost: true) }
        _ = try check(PQexec(connection, sql))
    }

    /// Starts listening on `channel` (an identifier of the program's own).
    public func listen(_ channel: String) throws(PostgreSQLError) { try execute("LISTEN \(channel)") }

    /// Waits up to `timeout` for the socket to be readable, then returns what has arrived.
    public func notifications(waitingUpTo timeout: Duration) throws(PostgreSQLError) -> [PostgreSQLNotification] {
        guard let connection, isUsable else { throw PostgreSQLError(message: "the connection is closed", connectionLost: true) }
        var received = drainNotifications(connection)
        guard received.isEmpty else { return received }
        var descriptor = pollfd(fd: PQsocket(connection), events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        let ready = poll(&descriptor, 1, milliseconds)
        if ready > 0 {
            guard PQconsumeInput(connection) == 1 else {
                throw PostgreSQLError(message: Self.trimmed(PQerrorMessage(connection)), connectionLost: !isUsable)
            }
            received = drainNotifications(connection)
        }
        guard isUsable else { throw PostgreSQLError(message: "the connection to PostgreSQL was lost", connectionLost: true) }
        return received
    }

    private func drainNotifications(_ connection: OpaquePointer) -> [PostgreSQLNotification] {
        var received: [PostgreSQLNotification] = []
        while let notice = PQnotifies(connection) {
            received.append(
                PostgreSQLNotification(channel: String(cString: notice.pointee.relname), payload: String(cString: notice.pointee.extra)))
            PQfreemem(notice)
        }
        return received
    }

    private func check(_ result: OpaquePointer?) throws(PostgreSQLError) -> PostgreSQLRows {
        guard let result else {
            throw PostgreSQLError(message: connection.map { Self.trimmed(PQerrorMessage($0)) } ?? "no result", connectionLost: !isUsable)
        }
        switch PQresultStatus(result) {
        case PGRES_TUPLES_OK, PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            return PostgreSQLRows(result: result)
        default:
            // 67 is PG_DIAG_SQLSTATE (the character C), a macro Swift does not import.
            let state = PQresultErrorField(result, 67).map { String(cString: $0) }
            let message = Self.trimmed(PQresultErrorMessage(result))
            PQclear(result)
            throw PostgreSQLError(sqlState: state, message: message.isEmpty ? "statement failed" : message, connectionLost: !isUsable)
        }
    }

    private static func trimmed(_ message: UnsafePointer<CChar>?) -> String {
        guard let message else { return "" }
        // libpq's messages end in a newline and may span lines ("DETAIL: …"): one line for logs.
        return String(cString: message).split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .joined(separator: "; ")
    }

    /// A NULL-terminated array of C strings, all in one buffer that outlives the call.
    private static func withCStrings<R>(_ strings: [String], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
        var storage: [CChar] = []
        var offsets: [Int] = []
        for string in strings {
            offsets.append(storage.count)
            storage.append(contentsOf: string.utf8CString)
        }
        return storage.withUnsafeBufferPointer { buffer in
            body(offsets.map { UnsafePointer(buffer.baseAddress! + $0) } + [nil])
        }
    }

    private static func withPointers<R>(
        _ texts: [[CChar]?], _ binaries: [[UInt8]?], _ body: ([UnsafePointer<CChar>?], [Int32]) -> R
    ) -> R {
        // Copies into one buffer that outlives the call, so every pointer stays valid.
        var storage: [UInt8] = []
        var offsets: [(offset: Int, length: Int)?] = []
        for (text, binary) in zip(texts, binaries) {
            if let text {
                offsets.append((storage.count, text.count - 1))
                storage.append(contentsOf: text.map { UInt8(bitPattern: $0) })
            } else if let binary {
                offsets.append((storage.count, binary.count))
                storage.append(contentsOf: binary)
            } else {
                offsets.append(nil)
            }
        }
        storage.append(0)
        return storage.withUnsafeBufferPointer { buffer in
            let base = UnsafeRawPointer(buffer.baseAddress!)
            let values = offsets.map { slot in slot.map { base.advanced(by: $0.offset).assumingMemoryBound(to: CChar.self) } }
            let lengths = offsets.map { Int32($0?.length ?? 0) }
            return body(values, lengths)
        }
    }
}
