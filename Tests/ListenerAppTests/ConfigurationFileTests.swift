// The configuration file as the strict scanner reads it: where a broken file is broken (never
// what it says), repeated keys, lists of objects outside `delivery.destinations`, and values of
// every JSON type reaching the typed look-ups.
import Foundation
import Logging
import TestSupport
import Testing

@testable import ListenerApp

@Suite struct ConfigurationFileTests {
    @Test(arguments: [
        // A missing comma on line 4: the error points at the second member.
        ("{\n  \"http\": {\n    \"port\": 9001\n    \"host\": \"x\"\n  }\n}", 4, 5, "',' or '}' in an object"),
        (#"{"http": {"port": 9001,}}"#, 1, 24, "a string"),
        ("", 1, 1, "a JSON object"),
        ("{not json", 1, 2, "a string"),
        (#"[{"http": {}}]"#, 1, 1, "a JSON object ({...})"),
        ("{\"a\": \"\u{e9}t\u{e9}\", \"b\": tru}", 1, 22, "true"),  // columns count characters, not bytes
        (#"{"http": {"port": 9001}} trailing"#, 1, 26, "the end of the document"),
        // The 65th object opens at column 385.
        (String(repeating: #"{"a": "#, count: 70) + "1" + String(repeating: "}", count: 70), 1, 385, "at most 64 nested objects and lists"),
    ])
    func aBrokenFileNamesTheLineAndColumn(json: String, line: Int, column: Int, expected: String) async throws {
        let text = try #require(await ConfigurationLoading.errorText(json))
        #expect(text.hasPrefix("configuration file "), "\(text)")
        #expect(text.hasSuffix(", line \(line), column \(column): not valid JSON, expected \(expected)"), "\(text)")
    }

    @Test func aBrokenFileNeverQuotesItsContent() async throws {
        for json in [
            #"{"callbacks": {"password": "hunter2" "next": 1}}"#,
            #"{"callbacks": {"password": "hunter2\q"}}"#,
            "{\"callbacks\": {\"password\": \"hunter2\u{1}\"}}",
            #"{"callbacks": {"password": hunter2}}"#,
        ] {
            let text = try #require(await ConfigurationLoading.errorText(json))
            #expect(text.contains("line 1, column") && !text.contains("hunter2"), "\(text)")
        }
        // Invalid UTF-8 inside a string: the position, not the bytes.
        let directory = try TemporaryDirectory()
        let path = directory.file("config.json")
        try Data(#"{"callbacks": {"password": "hunt"#.utf8 + [0xC3, 0x28] + #"er2"}}"#.utf8).write(to: URL(fileURLWithPath: path))
        await #expect {
            _ = try await ConfigurationSource.load(configPath: path, environment: [:])
        } throws: { error in
            "\(error)".hasSuffix("line 1, column 33: not valid JSON, expected valid UTF-8") && !"\(error)".contains("hunt")
        }
    }

    @Test(arguments: [
        (#"{"http": {"port": 9002, "port": 9003}}"#, "http.port"),
        (#"{"http": {}, "http": {}}"#, "http"),
        (#"{"delivery": {"destinations": [{"name": "a"}, {"url": "u", "url": "v"}]}}"#, "delivery.destinations[1].url"),
        (#"{"x": {"y": [[{"z": 1, "z": 2}]]}}"#, "x.y[0][0].z"),
    ])
    func aRepeatedKeyIsRefusedWithItsPath(json: String, key: String) async throws {
        let text = try #require(await ConfigurationLoading.errorText(json))
        #expect(text == "configuration key \(key): set twice in the same object")
    }

    @Test func aListOfObjectsElsewhereIsNoLongerAFileError() async throws {
        // An unknown section is ignored like any unknown key, whatever it holds.
        let configuration = try await ConfigurationLoading.load(
            #"{"extra": [{"a": 1}, {"b": [1, "x", null]}], "http": {"port": 9002, "mixed": [1, "a"]}}"#)
        #expect(configuration.http.port == 9002)
        // Where a known key holds one, the key is named.
        for (json, key) in [
            (#"{"callbacks": {"services": [{"name": "CarrierService"}]}}"#, "callbacks.services"),
            (#"{"callbacks": {"services": ["CarrierService", 1]}}"#, "callbacks.services"),
            (#"{"callbacks": {"allowedSources": {"ipv4": "10.0.0.0/8"}}}"#, "callbacks.allowedSources"),
            (#"{"http": {"port": [9001]}}"#, "http.port"),
            (#"{"http": 9001}"#, "http"),
            (#"{"delivery": ["x"]}"#, "delivery"),
        ] {
            let text = try #require(await ConfigurationLoading.errorText(json))
            #expect(text.hasPrefix("configuration key \(key): expected "), "\(text)")
        }
    }

    @Test func valuesOfEveryJSONTypeReachTheirKeys() async throws {
        let bom = "\u{FEFF}"
        let configuration = try await ConfigurationLoading.load(
            bom + """
                {
                  "http": {"port": 9002.0, "idleTimeout": 1.5, "headerReadTimeout": 5, "maxBodyBytes": 2e3, "pathPrefix": "/cb"},
                  "storage": {"retentionDays": null},
                  "callbacks": {"services": ["CarrierService"], "allowedSources": []},
                  "thingspace": {"sandbox": true, "deregisterOnShutdown": false, "callbackBaseURL": "http://127.0.0.1:9002/cb"},
                  "logging": {"level": "debug"}
                }
                """)
        #expect(configuration.http.port == 9002)
        #expect(configuration.http.idleTimeout == 1.5)
        #expect(configuration.http.headerReadTimeout == 5)
        #expect(configuration.http.maxBodyBytes == 2000)
        #expect(configuration.http.pathPrefix == "/cb")
        #expect(configuration.storage.retentionDays == 0)
        #expect(configuration.callbacks.services == ["CarrierService"])
        #expect(configuration.callbacks.allowedSources.isEmpty)
        #expect(configuration.thingspace.sandbox && !configuration.thingspace.deregisterOnShutdown)
        #expect(configuration.logging.level == .debug)
        // JSON's types are kept: a number is not a flag, a flag is not a number.
        for (json, key) in [
            (#"{"thingspace": {"sandbox": 1}}"#, "thingspace.sandbox"),
            (#"{"http": {"port": true}}"#, "http.port"),
            (#"{"http": {"port": 9001.5}}"#, "http.port"),
            (#"{"http": {"host": 127}}"#, "http.host"),
        ] {
            let text = try #require(await ConfigurationLoading.errorText(json))
            #expect(text.hasPrefix("configuration key \(key): expected "), "\(text)")
        }
    }

    @Test func theEnvironmentStillWinsOverTheFile() async throws {
        let configuration = try await ConfigurationLoading.load(
            #"{"http": {"port": 9002}, "callbacks": {"services": [{"not": "a string"}]}}"#,
            environment: ["THINGSPACE_LISTENER_HTTP_PORT": "9003", "THINGSPACE_LISTENER_CALLBACKS_SERVICES": "DeviceUsage"])
        #expect(configuration.http.port == 9003)
        #expect(configuration.callbacks.services == ["DeviceUsage"])
    }

    @Test func aFileThatCannotBeReadIsNamed() async throws {
        let directory = try TemporaryDirectory()
        for path in ["/nonexistent/config.json", directory.path] {
            await #expect {
                _ = try await ConfigurationSource.load(configPath: path, environment: [:])
            } throws: { error in
                "\(error)" == "configuration file \(path): no such file, or not readable"
            }
        }
        await #expect {
            _ = try await ConfigurationSource.load(configPath: nil, environment: ["CREDENTIALS_DIRECTORY": "/nonexistent/credentials"])
        } throws: { error in
            "\(error)".contains("/nonexistent/credentials") && "\(error)".contains("$CREDENTIALS_DIRECTORY")
        }
    }

    /// The repository's example files load: the demo as it is, production with its secrets in credentials files.
    @Test func theExampleFilesLoad() async throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../config").standardized
        let demo = try ListenerConfiguration(
            source: try await ConfigurationSource.load(
                configPath: directory.appendingPathComponent("thingspace-listener.json").path, environment: [:]))
        #expect(demo.thingspace.sandbox)
        let secrets = try TemporaryDirectory()
        for name in ["callbacks-password", "thingspace-clientSecret", "thingspace-password"] { try secrets.write(name, "s3cret\n") }
        try secrets.write("api-tokens", "token-1\n")
        let production = try ListenerConfiguration(
            source: try await ConfigurationSource.load(
                configPath: directory.appendingPathComponent("production.json").path, environment: ["CREDENTIALS_DIRECTORY": secrets.path]))
        #expect(production.thingspace.registrationEnabled)
        #expect(production.delivery.destinations.isEmpty)
        #expect(!production.api.enabled && production.api.port == 9091 && production.api.tokens.map(\.value) == ["token-1"])
    }

    @Test func namesOfEnvironmentVariablesAndCredentialsFilesFollowTheProviders() async throws {
        #expect(ConfigurationSource.environmentName(for: "delivery.secrets.v2Hook") == "THINGSPACE_LISTENER_DELIVERY_SECRETS_V2HOOK")
        #expect(
            ConfigurationSource.environmentName(for: "delivery.secrets.ordersHook") == "THINGSPACE_LISTENER_DELIVERY_SECRETS_ORDERS_HOOK")
        #expect(ConfigurationSource.environmentName(for: "delivery.secrets.my-hook_2") == "THINGSPACE_LISTENER_DELIVERY_SECRETS_MY_HOOK_2")
        #expect(ConfigurationSource.credentialsFileName(for: "callbacks.password") == "callbacks-password")
        #expect(ConfigurationSource.credentialsFileName(for: "delivery.previousSecrets.my_hook-2") == "delivery-previousSecrets-my_hook-2")
        // The names are the ones swift-configuration's providers really read.
        for key in ["callbacks.previousPassword", "thingspace.clientSecret"] {
            let fromEnvironment = try await ConfigurationLoading.source(
                nil, environment: [ConfigurationSource.environmentName(for: key): "v1"])
            #expect(try fromEnvironment.string(key) == "v1")
            let fromFile = try await ConfigurationLoading.source(
                nil, credentials: [ConfigurationSource.credentialsFileName(for: key): "v2\n"])
            #expect(try fromFile.string(key) == "v2")
        }
    }
}
