import Configuration
import Foundation
import SystemPackage

/// Why the configuration cannot be used. Each message names the key (its
/// JSON path, e.g. `delivery.destinations[1].url`, lists counted from 0) or
/// the file and the line and column, and never contains a value that could
/// be secret.
public enum ConfigurationError: Error, Equatable, CustomStringConvertible {
    case unreadableFile(path: String, reason: String)
    /// Not JSON, or not a JSON object: where, and what the parser expected there (never the file's text).
    case invalidJSON(path: String, line: Int, column: Int, expected: String)
    case invalidValue(key: String, expected: String)
    case missingValue(key: String, reason: String)
    /// The same key twice in one object of the file.
    case duplicateKey(key: String)
    /// A key that is not a setting where it stands, e.g. a typo in a destination.
    case unknownKey(key: String, known: [String])

    public var description: String {
        switch self {
        case .unreadableFile(let path, let reason):
            return "configuration file \(path): \(reason)"
        case .invalidJSON(let path, let line, let column, let expected):
            return "configuration file \(path), line \(line), column \(column): not valid JSON, expected \(expected)"
        case .invalidValue(let key, let expected):
            return "configuration key \(key): expected \(expected)"
        case .missingValue(let key, let reason):
            return "configuration key \(key) is required: \(reason)"
        case .duplicateKey(let key):
            return "configuration key \(key): set twice in the same object"
        case .unknownKey(let key, let known):
            return "configuration key \(key): unknown here (known: \(known.joined(separator: ", ")))"
        }
    }
}

/// The layered configuration sources, highest priority first: environment
/// variables (`THINGSPACE_LISTENER_` + the key in upper snake case), files in
/// the credentials directory (systemd's `$CREDENTIALS_DIRECTORY`; file name =
/// the key with dots as dashes, e.g. `callbacks-password`), then the JSON file
/// (read by `ConfigurationFile`; `delivery.destinations` is kept aside as a tree).
/// Defaults live with the settings that use them.
public struct ConfigurationSource: Sendable {
    /// The environment-variable prefix, as a config key (encodes to `THINGSPACE_LISTENER_`).
    static let environmentPrefix: ConfigKey = "thingspaceListener"

    let reader: ConfigReader
    /// `delivery.destinations` as the file has it: swift-configuration holds no lists of objects.
    let destinations: ConfigurationJSON?
    /// Top-level members of the file that are values where a section (an object) belongs.
    let valueMembers: Set<String>

    public init(reader: ConfigReader) { self.init(reader: reader, destinations: nil, valueMembers: []) }

    init(reader: ConfigReader, destinations: ConfigurationJSON?, valueMembers: Set<String>) {
        self.reader = reader
        self.destinations = destinations
        self.valueMembers = valueMembers
    }

    /// Loads the sources. `configPath` nil means "no file": environment and
    /// credentials only.
    public static func load(
        configPath: String?,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) async throws(ConfigurationError) -> ConfigurationSource {
        var providers: [any ConfigProvider] = [
            EnvironmentVariablesProvider(environmentVariables: environment).prefixKeys(with: environmentPrefix)
        ]
        if let directory = environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty {
            do {
                providers.append(try await DirectoryFilesProvider(directoryPath: FilePath(directory)))
            } catch {
                throw .unreadableFile(path: directory, reason: "the credentials directory ($CREDENTIALS_DIRECTORY) cannot be read")
            }
        }
        var file = ConfigurationFile()
        if let configPath {
            guard FileManager.default.isReadableFile(atPath: configPath), let data = FileManager.default.contents(atPath: configPath)
            else {
                throw .unreadableFile(path: configPath, reason: "no such file, or not readable")
            }
            let bytes = [UInt8](data)
            do throws(ConfigurationFile.Problem) {
                file = try ConfigurationFile(bytes: bytes)
            } catch {
                switch error {
                case .syntax(let offset, let expected):
                    let (line, column) = ConfigurationFile.position(of: offset, in: bytes)
                    throw .invalidJSON(path: configPath, line: line, column: column, expected: expected)
                case .duplicateKey(let key):
                    throw .duplicateKey(key: key)
                case .unknownKey(let key, let known):
                    throw .unknownKey(key: key, known: known)
                }
            }
            providers.append(InMemoryProvider(name: configPath, values: file.values))
        }
        return ConfigurationSource(
            reader: ConfigReader(providers: providers), destinations: file.destinations, valueMembers: file.valueMembers)
    }

    /// The environment variable that sets `key`, for documentation and messages: swift-configuration's
    /// encoding (a lower-case letter followed by an upper-case one is a word boundary; any other
    /// character than a letter or digit becomes `_`).
    public static func environmentName(for key: String) -> String {
        var name = "THINGSPACE_LISTENER"
        for component in key.split(separator: ".") {
            name += "_"
            var previousWasLower = false
            for character in component {
                if character.isUppercase && previousWasLower { name += "_" }
                name += character.isLetter || character.isNumber ? character.uppercased() : "_"
                previousWasLower = character.isLowercase
            }
        }
        return name
    }

    /// The file in `$CREDENTIALS_DIRECTORY` that sets `key`: the key with dots as dashes
    /// (any other character than a letter, digit or dash becomes `_`).
    public static func credentialsFileName(for key: String) -> String {
        key.split(separator: ".").map { component in
            String(component.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "_" })
        }.joined(separator: "-")
    }

    // MARK: Typed look-ups: nil when absent, an error naming the key when present but wrong.

    func string(_ key: String, secret: Bool = false) throws(ConfigurationError) -> String? {
        try lookUp(key, expected: "a string") { try reader.requiredString(forKey: ConfigKey(key), isSecret: secret) }
    }

    func int(_ key: String) throws(ConfigurationError) -> Int? {
        try lookUp(key, expected: "an integer") { try reader.requiredInt(forKey: ConfigKey(key)) }
    }

    func double(_ key: String) throws(ConfigurationError) -> Double? {
        // JSON integers are not doubles to the reader: accept both spellings.
        if let integer = try? reader.requiredInt(forKey: ConfigKey(key)) { return Double(integer) }
        return try lookUp(key, expected: "a number") { try reader.requiredDouble(forKey: ConfigKey(key)) }
    }

    func bool(_ key: String) throws(ConfigurationError) -> Bool? {
        try lookUp(key, expected: "true or false") { try reader.requiredBool(forKey: ConfigKey(key)) }
    }

    func stringArray(_ key: String, secret: Bool = false) throws(ConfigurationError) -> [String]? {
        try lookUp(key, expected: "a list of strings") { try reader.requiredStringArray(forKey: ConfigKey(key), isSecret: secret) }
    }

    private func lookUp<Value>(
        _ key: String, expected: String, _ read: () throws -> Value
    ) throws(ConfigurationError) -> Value? {
        do {
            return try read()
        } catch {
            // swift-configuration's error type is not public; its "missing"
            // case is the one whose message says so.
            if String(describing: error).hasPrefix("Missing required config value") { return nil }
            throw .invalidValue(key: key, expected: expected)
        }
    }
}
