import Configuration
import Foundation
import SystemPackage

/// Why the configuration cannot be used. Each message names the key (its
/// JSON path) and never contains a value that could be secret.
public enum ConfigurationError: Error, Equatable, CustomStringConvertible {
    case unreadableFile(path: String, reason: String)
    case invalidValue(key: String, expected: String)
    case missingValue(key: String, reason: String)

    public var description: String {
        switch self {
        case .unreadableFile(let path, let reason):
            return "configuration file \(path): \(reason)"
        case .invalidValue(let key, let expected):
            return "configuration key \(key): expected \(expected)"
        case .missingValue(let key, let reason):
            return "configuration key \(key) is required: \(reason)"
        }
    }
}

/// The layered configuration sources, highest priority first: environment
/// variables (`THINGSPACE_LISTENER_` + the key in upper snake case), files in
/// the credentials directory (systemd's `$CREDENTIALS_DIRECTORY`; file name =
/// the key with dots as dashes, e.g. `callbacks-password`), then the JSON file.
/// Defaults live with the settings that use them.
public struct ConfigurationSource: Sendable {
    /// The environment-variable prefix, as a config key (encodes to `THINGSPACE_LISTENER_`).
    static let environmentPrefix: ConfigKey = "thingspaceListener"

    let reader: ConfigReader

    public init(reader: ConfigReader) { self.reader = reader }

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
                throw .unreadableFile(path: directory, reason: "credentials directory cannot be read")
            }
        }
        if let configPath {
            guard FileManager.default.isReadableFile(atPath: configPath) else {
                throw .unreadableFile(path: configPath, reason: "no such file, or not readable")
            }
            do {
                providers.append(try await FileProvider<JSONSnapshot>(filePath: FilePath(configPath)))
            } catch {
                // The parser's message may quote file content; keep only its kind.
                throw .unreadableFile(path: configPath, reason: "not a valid JSON object (\(type(of: error)))")
            }
        }
        return ConfigurationSource(reader: ConfigReader(providers: providers))
    }

    /// The environment variable that sets `key`, for documentation and messages.
    public static func environmentName(for key: String) -> String {
        var name = "THINGSPACE_LISTENER"
        for component in key.split(separator: ".") {
            name += "_"
            var previousWasLower = false
            for character in component {
                if character.isUppercase && previousWasLower { name += "_" }
                name += character.isLetter || character.isNumber ? character.uppercased() : "_"
                previousWasLower = character.isLowercase || character.isNumber
            }
        }
        return name
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
