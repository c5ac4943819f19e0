// What the configuration suites share: a real file in a temporary directory (and, when asked, a
// credentials directory), loaded the way `serve` loads it.
import Foundation
import TestSupport
import Testing

@testable import ListenerApp

enum ConfigurationLoading {
    /// Loads `json` (nil: no file) with `environment`, and `credentials` (file name → content) as
    /// `$CREDENTIALS_DIRECTORY` when given.
    static func load(
        _ json: String?, environment: [String: String] = [:], credentials: [String: String]? = nil,
        for use: ConfigurationUse = .serve
    ) async throws -> ListenerConfiguration {
        try ListenerConfiguration(source: try await source(json, environment: environment, credentials: credentials), for: use)
    }

    static func source(
        _ json: String?, environment: [String: String] = [:], credentials: [String: String]? = nil
    ) async throws -> ConfigurationSource {
        let directory = try TemporaryDirectory()
        let path = try json.map { try directory.write("config.json", $0) }
        var environment = environment
        var secrets: TemporaryDirectory?
        if let credentials {
            let directory = try TemporaryDirectory()
            for (name, content) in credentials { try directory.write(name, content) }
            environment["CREDENTIALS_DIRECTORY"] = directory.path
            secrets = directory
        }
        let source = try await ConfigurationSource.load(configPath: path, environment: environment)
        withExtendedLifetime((directory, secrets)) {}  // the files are read by now
        return source
    }

    /// The error text loading gives, or nil when it loads.
    static func errorText(
        _ json: String?, environment: [String: String] = [:], credentials: [String: String]? = nil
    ) async -> String? {
        do {
            _ = try await load(json, environment: environment, credentials: credentials)
            return nil
        } catch {
            return "\(error)"
        }
    }
}
