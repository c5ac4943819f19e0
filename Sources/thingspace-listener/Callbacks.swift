import ArgumentParser
import Foundation
import ListenerApp
import Logging
import ThingSpace

/// The three operations of the SDKs' ConnectivityCallbacksController, by hand.
struct Callbacks: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, register or deregister ThingSpace callback listeners by hand.",
        discussion: """
            Uses thingspace.* from the configuration (account, OAuth client, UWS user; secrets \
            from the credentials directory or environment). Exit status: 0 done, 2 usage, \
            3 ThingSpace API error (errorCode and errorMessage printed), 4 network or TLS failure.
            """,
        subcommands: [List.self, Register.self, Deregister.self]
    )

    struct Output: ParsableArguments {
        @Flag(help: "Print a table instead of JSON.") var table = false
        @Flag(name: .customLong("show-secrets"), help: "Print registered passwords in clear (they are redacted otherwise).")
        var showSecrets = false
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the listeners registered for the account.")
        @OptionGroup var config: ConfigOption
        @OptionGroup var output: Output

        func run() async throws {
            let api = try await CallbacksAPI(config.resolvedPath)
            let listed = try api.call { () throws(ThingSpaceError) in try api.client.list(accountName: api.accountName) }
            let callbacks = output.showSecrets ? listed : listed.map(\.redacted)
            if output.table {
                print(
                    renderTable(
                        header: ["SERVICE", "URL", "USERNAME", "PASSWORD"],
                        rows: callbacks.map { [$0.serviceName ?? "", $0.url ?? "", $0.username ?? "", $0.password ?? ""] }))
            } else {
                try printJSON(callbacks)
            }
        }
    }

    struct Register: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Register a listener URL for a service (replaces nothing: deregister first if one exists).")
        @OptionGroup var config: ConfigOption
        @OptionGroup var output: Output
        @Option(help: "Service name, e.g. CarrierService.") var service: String
        @Option(help: "The listener URL ThingSpace will POST to (default: {thingspace.callbackBaseURL}/{service}).")
        var url: String?
        @Option(help: "Username ThingSpace puts in each callback (default: callbacks.username).") var username: String?
        @Option(help: "Password ThingSpace puts in each callback (default: callbacks.password). Visible to `ps`: prefer --password-file.")
        var password: String?
        @Option(name: .customLong("password-file"), help: "Read the callback password from this file.") var passwordFile: String?

        func run() async throws {
            let api = try await CallbacksAPI(config.resolvedPath)
            // Only a register without --url needs the base URL, to form the URL.
            guard let url = url ?? api.configuration.callbackURL(for: service) else {
                throw ValidationError("missing --url: pass it, or set thingspace.callbackBaseURL to register {callbackBaseURL}/\(service)")
            }
            var secret = password
            if let passwordFile {
                guard let text = try? String(contentsOfFile: passwordFile, encoding: .utf8) else {
                    throw ValidationError("cannot read --password-file \(passwordFile)")
                }
                secret = text.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            let request = RegisterCallbackRequest(
                name: service, url: url, username: username ?? api.configuration.callbacks.username,
                password: secret ?? api.configuration.callbacks.password?.value)
            let result = try api.call { () throws(ThingSpaceError) in
                try api.client.register(accountName: api.accountName, request: request)
            }
            if output.table {
                print(renderTable(header: ["ACCOUNT", "SERVICE"], rows: [[result.accountName ?? "", result.serviceName ?? ""]]))
            } else {
                try printJSON(result)
            }
        }
    }

    struct Deregister: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Deregister the listener of a service.")
        @OptionGroup var config: ConfigOption
        @OptionGroup var output: Output
        @Option(help: "Service name, e.g. CarrierService.") var service: String

        func run() async throws {
            let api = try await CallbacksAPI(config.resolvedPath)
            let result = try api.call { () throws(ThingSpaceError) in
                try api.client.deregister(accountName: api.accountName, serviceName: service)
            }
            if output.table {
                print(renderTable(header: ["ACCOUNT", "SERVICE"], rows: [[result.accountName ?? "", result.serviceName ?? ""]]))
            } else {
                try printJSON(result)
            }
        }
    }
}

/// A callbacks client from the configuration, with the CLI's error mapping.
struct CallbacksAPI {
    let configuration: ListenerConfiguration
    let client: ConnectivityCallbacksClient
    let accountName: String

    init(_ path: String?) async throws {
        // Not `serve`'s requirements: no command here needs thingspace.callbackBaseURL to start.
        configuration = try await loadConfiguration(path, for: .callbacksCommand)
        let thingspace = configuration.thingspace
        var missing: [String] = []
        if thingspace.accountName == nil { missing.append("thingspace.accountName") }
        if thingspace.clientID == nil { missing.append("thingspace.clientID") }
        if thingspace.clientSecret == nil { missing.append("thingspace.clientSecret") }
        if thingspace.username == nil { missing.append("thingspace.username") }
        if thingspace.password == nil { missing.append("thingspace.password") }
        guard missing.isEmpty, let accountName = thingspace.accountName else {
            throw ValidationError("missing configuration: \(missing.joined(separator: ", "))")
        }
        self.accountName = accountName
        var clientConfiguration = ThingSpaceClientConfiguration()
        clientConfiguration.baseURL = thingspace.baseURL
        bootstrapLogging(ListenerConfiguration.Logging(level: .warning, format: configuration.logging.format))
        client = ConnectivityCallbacksClient(
            configuration: clientConfiguration,
            credentials: ThingSpaceCredentials(
                clientID: thingspace.clientID ?? "", clientSecret: thingspace.clientSecret?.value ?? "",
                username: thingspace.username ?? "", password: thingspace.password?.value ?? ""),
            logger: Logger(label: "thingspace-listener"))
    }

    func call<Result>(_ body: () throws(ThingSpaceError) -> Result) throws -> Result {
        do {
            return try body()
        } catch {
            FileHandle.standardError.write(Data("thingspace-listener: \(error)\n".utf8))
            switch error {
            case .network: throw ExitCode(4)
            case .invalidArgument: throw ExitCode(2)
            case .api, .invalidCredentials, .invalidResponse: throw ExitCode(3)
            }
        }
    }
}

func printJSON<Value: Encodable>(_ value: Value) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}
