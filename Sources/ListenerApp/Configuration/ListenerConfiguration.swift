import Delivery
import Foundation
import Logging
import PostgresStore
import ThingSpace
import Vocabulary

/// A value that must never be printed: its descriptions are redacted.
public struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    public let value: String
    public init(_ value: String) { self.value = value }
    public var description: String { Redaction.marker }
    public var debugDescription: String { Redaction.marker }
}

/// Every setting of the service, validated. README.md ("Configuration")
/// documents each key, its environment variable and its default.
public struct ListenerConfiguration: Sendable {
    public struct HTTP: Sendable {
        public var host = "127.0.0.1"
        public var port = 9001
        public var pathPrefix = "/callbacks"
        public var maxBodyBytes = 1024 * 1024
        public var maxHeaderBytes = 16 * 1024
        public var maxConnections = 4096
        public var headerReadTimeout = 10.0
        public var bodyReadTimeout = 30.0
        public var idleTimeout = 60.0
        public var writeTimeout = 30.0
        public var shutdownGracePeriod = 10.0
    }

    public struct Storage: Sendable {
        /// `sqlite` (one machine, the default) or `postgresql` (several instances on one database).
        public enum Backend: String, Sendable { case sqlite, postgresql }
        public var backend = Backend.sqlite
        public var path = "var/callbacks.sqlite"
        public var retentionDays = 0
        public var queueCapacity = 4096
        /// `storage.postgresql.url` (libpq URI or conninfo) and its password (a secret, kept out of the URL).
        public var postgresql: PostgreSQL?

        public struct PostgreSQL: Sendable {
            public var url: String
            public var password: Secret?
            /// `storage.postgresql.writers`: groups of one instance committing side by side.
            public var writers = PostgreSQL.defaultWriters

            public static let defaultWriters = 1
            public static let writerLimit = 64
        }
    }

    public struct Callbacks: Sendable {
        public var services = ["CarrierService", "DeviceUsage"]
        public var username: String?
        public var password: Secret?
        public var previousPassword: Secret?
        public var allowedSources: [CIDR] = []
        public var trustedProxies: [CIDR] = []
    }

    public struct ThingSpace: Sendable {
        public var baseURL = "https://thingspace.verizon.com/api"
        public var accountName: String?
        public var clientID: String?
        public var clientSecret: Secret?
        public var username: String?
        public var password: Secret?
        public var callbackBaseURL: String?
        /// nil: register when credentials are present.
        public var register: Bool?
        public var deregisterOnShutdown = true
        public var sandbox = false

        public var hasCredentials: Bool {
            clientID != nil && clientSecret != nil && username != nil && password != nil && accountName != nil
        }
        /// Whether `serve` registers its URL: explicitly asked, or credentials present.
        public var registrationEnabled: Bool { register ?? (hasCredentials || sandbox) }
    }

    public enum LogFormat: String, Sendable { case text, json }

    public struct Logging: Sendable {
        public var level: Logger.Level = .info
        public var format: LogFormat = .text
        public init(level: Logger.Level = .info, format: LogFormat = .text) {
            self.level = level
            self.format = format
        }
    }

    public struct Admin: Sendable {
        public var enabled = true
        public var host = "127.0.0.1"
        public var port = 9090
    }

    /// Where stored callbacks are pushed (`delivery.destinations`).
    public struct Delivery: Sendable {
        public var destinations: [Destination] = []
    }

    /// The consumer API (`api.*`): pull callbacks by cursor, long poll, or stream them.
    public struct API: Sendable {
        public var enabled = false
        public var host = "127.0.0.1"
        public var port = 9091
        /// Bearer tokens; the API refuses to start without one.
        public var tokens: [Secret] = []
    }

    public var http = HTTP()
    public var storage = Storage()
    public var callbacks = Callbacks()
    public var thingspace = ThingSpace()
    public var logging = Logging()
    public var admin = Admin()
    public var delivery = Delivery()
    public var api = API()

    public init() {}

    /// The URL registered with ThingSpace for `service`.
    public func callbackURL(for service: String) -> String? {
        guard let base = thingspace.callbackBaseURL else { return nil }
        return (base.hasSuffix("/") ? String(base.dropLast()) : base) + "/" + service
    }
}

/// What the configuration is loaded for, which decides the keys that must be
/// present: `serve` registers `{callbackBaseURL}/{Service}`, so it needs the
/// base URL when registration is on; the `callbacks` commands talk to
/// ThingSpace's API with the account's credentials and need no base URL
/// (`callbacks register` without `--url` asks for it itself).
public enum ConfigurationUse: Sendable {
    case serve
    case callbacksCommand
}

extension ListenerConfiguration {
    /// Reads and validates every key; the first bad one stops with an error naming it.
    public init(source: ConfigurationSource, for use: ConfigurationUse = .serve) throws(ConfigurationError) {
        self.init()
        let s = source
        for section in ["http", "storage", "callbacks", "thingspace", "logging", "admin", "delivery", "api"]
        where s.valueMembers.contains(section) {
            throw .invalidValue(key: section, expected: "an object of \(section).* settings")
        }

        if let v = try s.string("http.host") { http.host = try Self.host(v, key: "http.host") }
        if let v = try s.int("http.port") { http.port = try Self.port(v, key: "http.port") }
        if let v = try s.string("http.pathPrefix") {
            guard v.hasPrefix("/"), !v.hasSuffix("/") || v == "/", !v.contains("?"), !v.contains(" ") else {
                throw .invalidValue(key: "http.pathPrefix", expected: "a path starting with / and not ending with /")
            }
            http.pathPrefix = v == "/" ? "" : v
        }
        if let v = try s.int("http.maxBodyBytes") { http.maxBodyBytes = try Self.positive(v, key: "http.maxBodyBytes") }
        if let v = try s.int("http.maxHeaderBytes") {
            http.maxHeaderBytes = try Self.positive(v, key: "http.maxHeaderBytes")
        }
        if let v = try s.int("http.maxConnections") {
            http.maxConnections = try Self.positive(v, key: "http.maxConnections")
        }
        for (key, path) in [
            ("http.headerReadTimeout", \HTTP.headerReadTimeout), ("http.bodyReadTimeout", \HTTP.bodyReadTimeout),
            ("http.idleTimeout", \HTTP.idleTimeout), ("http.writeTimeout", \HTTP.writeTimeout),
            ("http.shutdownGracePeriod", \HTTP.shutdownGracePeriod),
        ] {
            if let v = try s.double(key) {
                guard v > 0, v <= 86_400 else { throw .invalidValue(key: key, expected: "seconds, above 0") }
                http[keyPath: path] = v
            }
        }

        if let v = try s.string("storage.path") {
            guard !v.isEmpty else { throw .invalidValue(key: "storage.path", expected: "a file path") }
            storage.path = v
        }
        if let v = try s.int("storage.retentionDays") {
            guard v >= 0 else { throw .invalidValue(key: "storage.retentionDays", expected: "0 (keep forever) or more days") }
            storage.retentionDays = v
        }
        if let v = try s.int("storage.queueCapacity") {
            storage.queueCapacity = try Self.positive(v, key: "storage.queueCapacity")
        }
        if let v = try s.string("storage.backend") {
            guard let backend = Storage.Backend(rawValue: v.lowercased()) else {
                throw .invalidValue(key: "storage.backend", expected: "sqlite or postgresql")
            }
            storage.backend = backend
        }
        let postgresURL = try s.string("storage.postgresql.url").flatMap(Self.nonEmpty)
        let postgresPassword = try s.string("storage.postgresql.password", secret: true).flatMap(Self.nonEmpty).map(Secret.init)
        if let postgresURL {
            guard PostgreSQLSettings.isPostgreSQL(postgresURL) else {
                throw .invalidValue(
                    key: "storage.postgresql.url", expected: "a postgresql:// URI or a conninfo string such as host=db dbname=listener")
            }
            storage.postgresql = Storage.PostgreSQL(url: postgresURL, password: postgresPassword)
        }
        if let v = try s.int("storage.postgresql.writers") {
            guard (1...Storage.PostgreSQL.writerLimit).contains(v) else {
                throw .invalidValue(key: "storage.postgresql.writers", expected: "1 to \(Storage.PostgreSQL.writerLimit) connections")
            }
            storage.postgresql?.writers = v
        }
        if storage.backend == .postgresql && storage.postgresql == nil {
            throw .missingValue(key: "storage.postgresql.url", reason: "storage.backend is postgresql")
        }

        if let v = try s.stringArray("callbacks.services") {
            let names = v.map { $0.trimmingCharacters(in: .whitespaces) }
            guard !names.isEmpty, names.allSatisfy(Self.isServiceName), Set(names).count == names.count else {
                throw .invalidValue(key: "callbacks.services", expected: "distinct service names such as CarrierService")
            }
            callbacks.services = names
        }
        callbacks.username = try Self.credential(s.string("callbacks.username"), key: "callbacks.username")
        callbacks.password = try Self.credential(s.string("callbacks.password", secret: true), key: "callbacks.password")
            .map(Secret.init)
        callbacks.previousPassword = try Self.credential(
            s.string("callbacks.previousPassword", secret: true), key: "callbacks.previousPassword"
        ).map(Secret.init)
        if callbacks.previousPassword != nil && callbacks.password == nil {
            throw .missingValue(key: "callbacks.password", reason: "callbacks.previousPassword is set")
        }
        if (callbacks.username == nil) != (callbacks.password == nil) {
            throw .missingValue(
                key: callbacks.username == nil ? "callbacks.username" : "callbacks.password",
                reason: "callback username and password go together"
            )
        }
        callbacks.allowedSources = try Self.networks(s.stringArray("callbacks.allowedSources"), key: "callbacks.allowedSources")
        callbacks.trustedProxies = try Self.networks(s.stringArray("callbacks.trustedProxies"), key: "callbacks.trustedProxies")

        if let v = try s.string("thingspace.baseURL") {
            thingspace.baseURL = try Self.url(v, key: "thingspace.baseURL")
        }
        thingspace.accountName = try s.string("thingspace.accountName").flatMap(Self.nonEmpty)
        thingspace.clientID = try s.string("thingspace.clientID").flatMap(Self.nonEmpty)
        thingspace.clientSecret = try s.string("thingspace.clientSecret", secret: true).flatMap(Self.nonEmpty).map(Secret.init)
        thingspace.username = try s.string("thingspace.username").flatMap(Self.nonEmpty)
        thingspace.password = try s.string("thingspace.password", secret: true).flatMap(Self.nonEmpty).map(Secret.init)
        if let v = try s.string("thingspace.callbackBaseURL").flatMap(Self.nonEmpty) {
            thingspace.callbackBaseURL = try Self.url(v, key: "thingspace.callbackBaseURL")
        }
        thingspace.register = try s.bool("thingspace.register")
        if let v = try s.bool("thingspace.deregisterOnShutdown") { thingspace.deregisterOnShutdown = v }
        if let v = try s.bool("thingspace.sandbox") { thingspace.sandbox = v }
        if thingspace.register == true && !thingspace.sandbox {
            for (key, present) in [
                ("thingspace.accountName", thingspace.accountName != nil),
                ("thingspace.clientID", thingspace.clientID != nil),
                ("thingspace.clientSecret", thingspace.clientSecret != nil),
                ("thingspace.username", thingspace.username != nil),
                ("thingspace.password", thingspace.password != nil),
                ("thingspace.callbackBaseURL", thingspace.callbackBaseURL != nil || use != .serve),
            ] where !present {
                throw .missingValue(key: key, reason: "thingspace.register is true")
            }
        }
        if use == .serve && thingspace.registrationEnabled && !thingspace.sandbox && thingspace.callbackBaseURL == nil {
            throw .missingValue(key: "thingspace.callbackBaseURL", reason: "registration is on (ThingSpace credentials are set)")
        }

        if let v = try s.string("logging.level") {
            guard let level = Logger.Level(rawValue: v.lowercased()) else {
                throw .invalidValue(key: "logging.level", expected: "trace, debug, info, notice, warning, error or critical")
            }
            logging.level = level
        }
        if let v = try s.string("logging.format") {
            guard let format = LogFormat(rawValue: v.lowercased()) else {
                throw .invalidValue(key: "logging.format", expected: "text or json")
            }
            logging.format = format
        }

        if let v = try s.bool("admin.enabled") { admin.enabled = v }
        if let v = try s.string("admin.host") { admin.host = try Self.host(v, key: "admin.host") }
        if let v = try s.int("admin.port") { admin.port = try Self.port(v, key: "admin.port") }

        delivery.destinations = try Self.destinations(from: s)
        api = try Self.api(from: s, http: http, admin: admin)
    }

    static func isServiceName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 64
            && name.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0)) }
    }

    private static func nonEmpty(_ value: String) -> String? { value.isEmpty ? nil : value }

    /// `storage.postgresql.password` from the environment or the credentials directory alone, as
    /// the service reads it, for a command given `--database URL` instead of a configuration file.
    public static func postgreSQLPasswordWithoutFile(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) async throws(ConfigurationError) -> String? {
        try await ConfigurationSource.load(configPath: nil, environment: environment)
            .string("storage.postgresql.password", secret: true).flatMap(nonEmpty)
    }

    static func host(_ value: String, key: String) throws(ConfigurationError) -> String {
        guard !value.isEmpty, !value.contains(" "), !value.contains("/") else {
            throw .invalidValue(key: key, expected: "an IP address or host name")
        }
        return value
    }

    static func port(_ value: Int, key: String) throws(ConfigurationError) -> Int {
        guard (0...65535).contains(value) else { throw .invalidValue(key: key, expected: "a port from 0 to 65535") }
        return value
    }

    private static func positive(_ value: Int, key: String) throws(ConfigurationError) -> Int {
        guard value > 0 else { throw .invalidValue(key: key, expected: "a number above 0") }
        return value
    }

    /// Callback credentials: ThingSpace accepts at most `RegisterCallbackRequest.maxCredentialLength` characters.
    private static func credential(_ value: String?, key: String) throws(ConfigurationError) -> String? {
        guard let value, !value.isEmpty else { return nil }
        let limit = RegisterCallbackRequest.maxCredentialLength
        guard value.count <= limit else { throw .invalidValue(key: key, expected: "at most \(limit) characters") }
        return value
    }

    private static func networks(_ values: [String]?, key: String) throws(ConfigurationError) -> [CIDR] {
        var result: [CIDR] = []
        for text in values ?? [] {
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            guard let network = CIDR(trimmed) else {
                throw .invalidValue(key: key, expected: "CIDR networks such as 192.0.2.0/24 or 2001:db8::/32")
            }
            result.append(network)
        }
        return result
    }

    private static func url(_ value: String, key: String) throws(ConfigurationError) -> String {
        guard let url = URL(string: value), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme),
            url.host != nil
        else {
            throw .invalidValue(key: key, expected: "an http:// or https:// URL")
        }
        return value.hasSuffix("/") ? String(value.dropLast()) : value
    }
}
