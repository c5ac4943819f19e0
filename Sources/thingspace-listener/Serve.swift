import ArgumentParser
import Foundation
import ListenerApp
import Logging

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the callback listener (the service).",
        discussion: """
            Opens the store, listens for callbacks, registers with ThingSpace when configured, \
            and runs until SIGTERM or SIGINT (then deregisters, drains and exits 0). \
            SIGHUP reloads callback credentials, allowed sources and the log level.
            """
    )

    @OptionGroup var config: ConfigOption

    func run() async throws {
        // Trapped first: systemd may send SIGHUP or SIGTERM as soon as it reads READY=1.
        let signals = await ProcessSignals()
        let path = config.resolvedPath
        let configuration = try await loadConfiguration(path)
        let logLevel = bootstrapLogging(configuration.logging)
        let logger = Logger(label: "thingspace-listener")
        let service = ListenerService(
            configuration: configuration,
            reload: { () async throws(ConfigurationError) -> ListenerConfiguration in
                try ListenerConfiguration(source: try await ConfigurationSource.load(configPath: path))
            },
            logger: logger, logLevel: logLevel, signals: signals
        )
        do {
            try await service.run()
        } catch {
            logger.critical("\(error)")
            throw ExitCode(1)
        }
    }
}

/// `--config PATH`, shared by every command that reads the configuration.
struct ConfigOption: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "JSON configuration file. Default: $CONFIGURATION_DIRECTORY/thingspace-listener.json under systemd, else none (environment and defaults only).",
            valueName: "path"
        )
    )
    var config: String?

    var resolvedPath: String? {
        if let config { return config }
        if let directory = ProcessInfo.processInfo.environment["CONFIGURATION_DIRECTORY"] {
            let candidate = directory + "/thingspace-listener.json"
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
        }
        return nil
    }
}

/// Loads and validates the configuration for `use`; a problem ends the process with one line naming the key.
func loadConfiguration(_ path: String?, for use: ConfigurationUse = .serve) async throws -> ListenerConfiguration {
    do {
        return try ListenerConfiguration(source: try await ConfigurationSource.load(configPath: path), for: use)
    } catch {
        FileHandle.standardError.write(Data("thingspace-listener: \(error)\n".utf8))
        throw ExitCode(78)  // EX_CONFIG: systemd's Restart=on-failure will not loop on it forever
    }
}

/// Every logger follows the returned level (a reload changes it) unless given its own.
@discardableResult
func bootstrapLogging(_ settings: ListenerConfiguration.Logging) -> LogLevelControl {
    let level = LogLevelControl(settings.level)
    LoggingSystem.bootstrap { label in
        ListenerLogHandler(label: label, format: settings.format, level: level)
    }
    return level
}
