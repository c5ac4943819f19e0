import Foundation
import Logging
import Synchronization
import TestSupport
import Testing

@testable import ListenerApp

@Suite struct ConfigurationTests {
    func load(_ json: String?, environment: [String: String] = [:]) async throws -> ListenerConfiguration {
        let directory = try TemporaryDirectory()
        let path = try json.map { try directory.write("config.json", $0) }
        return try ListenerConfiguration(source: try await ConfigurationSource.load(configPath: path, environment: environment))
    }

    @Test func defaultsMatchTheDocumentedContract() async throws {
        let configuration = try await load(nil)
        #expect(configuration.http.host == "127.0.0.1")
        #expect(configuration.http.port == 9001)
        #expect(configuration.http.pathPrefix == "/callbacks")
        #expect(configuration.http.maxBodyBytes == 1_048_576)
        #expect(configuration.storage.path == "var/callbacks.sqlite")
        #expect(configuration.storage.retentionDays == 0)
        #expect(configuration.callbacks.services == ["CarrierService", "DeviceUsage"])
        #expect(configuration.callbacks.username == nil)
        #expect(configuration.thingspace.baseURL == "https://thingspace.verizon.com/api")
        #expect(configuration.thingspace.deregisterOnShutdown)
        #expect(!configuration.thingspace.registrationEnabled)
        #expect(configuration.admin.enabled && configuration.admin.port == 9090)
    }

    @Test func environmentOverridesTheFileAndCredentialsFilesOverrideTheFile() async throws {
        let secrets = try TemporaryDirectory()
        _ = try secrets.write("callbacks-password", "from-credentials\n")
        let configuration = try await load(
            #"{"http": {"port": 9002, "host": "0.0.0.0"}, "callbacks": {"username": "u", "password": "from-file", "services": ["CarrierService"]}}"#,
            environment: [
                "THINGSPACE_LISTENER_HTTP_PORT": "9005",
                "THINGSPACE_LISTENER_CALLBACKS_ALLOWED_SOURCES": "192.0.2.0/24, 2001:db8::/32",
                "CREDENTIALS_DIRECTORY": secrets.path,
            ]
        )
        #expect(configuration.http.port == 9005)
        #expect(configuration.http.host == "0.0.0.0")
        #expect(configuration.callbacks.password?.value == "from-credentials")
        #expect(configuration.callbacks.services == ["CarrierService"])
        #expect(configuration.callbacks.allowedSources.map(\.description) == ["192.0.2.0/24", "2001:db8::/32"])
    }

    @Test(arguments: [
        (#"{"http": {"port": 70000}}"#, "http.port"),
        (#"{"http": {"port": "nine"}}"#, "http.port"),
        (#"{"http": {"pathPrefix": "callbacks"}}"#, "http.pathPrefix"),
        (#"{"storage": {"retentionDays": -1}}"#, "storage.retentionDays"),
        (#"{"callbacks": {"services": ["Carrier Service"]}}"#, "callbacks.services"),
        (#"{"callbacks": {"allowedSources": ["10.0.0.0/33"]}}"#, "callbacks.allowedSources"),
        (#"{"callbacks": {"username": "u"}}"#, "callbacks.password"),
        (#"{"logging": {"level": "loud"}}"#, "logging.level"),
        (#"{"thingspace": {"register": true}}"#, "thingspace.accountName"),
        (#"{"thingspace": {"baseURL": "ftp://x"}}"#, "thingspace.baseURL"),
    ])
    func aBadValueNamesItsKey(json: String, key: String) async throws {
        await #expect {
            _ = try await load(json)
        } throws: { error in
            "\(error)".contains("configuration key \(key)")
        }
    }

    @Test func onlyServeNeedsTheCallbackBaseURL() async throws {
        // ThingSpace credentials turn registration on for `serve`, which then needs the
        // base URL; the callbacks commands do not register {callbackBaseURL}/{Service}.
        let credentials = #"{"thingspace": {"accountName": "a", "clientID": "c", "clientSecret": "s", "username": "u", "password": "p"}}"#
        let explicit =
            #"{"thingspace": {"register": true, "accountName": "a", "clientID": "c", "clientSecret": "s", "username": "u", "password": "p"}}"#
        for json in [credentials, explicit] {
            let directory = try TemporaryDirectory()
            let path = try directory.write("config.json", json)
            await #expect {
                _ = try ListenerConfiguration(source: try await ConfigurationSource.load(configPath: path, environment: [:]))
            } throws: { error in
                "\(error)".contains("configuration key thingspace.callbackBaseURL")
            }
            let forCommands = try ListenerConfiguration(
                source: try await ConfigurationSource.load(configPath: path, environment: [:]), for: .callbacksCommand)
            #expect(forCommands.thingspace.accountName == "a")
            #expect(forCommands.thingspace.callbackBaseURL == nil)
            #expect(forCommands.callbackURL(for: "CarrierService") == nil)
        }
    }

    @Test func aSecretNeverAppearsInTheError() async throws {
        let secret = String(repeating: "s3cr3t", count: 8)  // 48 characters: too long
        await #expect {
            _ = try await load(#"{"callbacks": {"username": "u", "password": "\#(secret)"}}"#)
        } throws: { error in
            "\(error)".contains("callbacks.password") && !"\(error)".contains("s3cr3t")
        }
        let configuration = try await load(#"{"callbacks": {"username": "u", "password": "hunter2"}}"#)
        #expect(!"\(configuration)".contains("hunter2"))
    }

    @Test func aMissingOrBrokenFileIsNamed() async throws {
        await #expect { _ = try await ConfigurationSource.load(configPath: "/nonexistent/config.json", environment: [:]) } throws: {
            "\($0)".contains("/nonexistent/config.json")
        }
        await #expect { _ = try await load("{not json") } throws: {
            "\($0)".hasSuffix("line 1, column 2: not valid JSON, expected a string")
        }
    }

    @Test func environmentNamesFollowTheKeys() {
        #expect(ConfigurationSource.environmentName(for: "http.pathPrefix") == "THINGSPACE_LISTENER_HTTP_PATH_PREFIX")
        #expect(ConfigurationSource.environmentName(for: "thingspace.clientSecret") == "THINGSPACE_LISTENER_THINGSPACE_CLIENT_SECRET")
    }
}

@Suite struct CIDRTests {
    @Test func matchesNetworksOfBothFamilies() throws {
        let v4 = try #require(CIDR("203.0.113.0/24"))
        #expect(v4.contains("203.0.113.77"))
        #expect(!v4.contains("203.0.114.1"))
        #expect(v4.contains("::ffff:203.0.113.5"))
        let v6 = try #require(CIDR("2001:db8::/32"))
        #expect(v6.contains("2001:db8:ffff::1"))
        #expect(!v6.contains("2001:db9::1"))
        #expect(!v6.contains("203.0.113.77"))
        let host = try #require(CIDR("198.51.100.7"))
        #expect(host.contains("198.51.100.7") && !host.contains("198.51.100.8"))
        #expect(try #require(CIDR("0.0.0.0/0")).contains("8.8.8.8"))
        for bad in ["", "10.0.0.0/", "10.0.0.0/33", "300.1.1.1", "::/129", "host.example", "10.0.0.0/-1"] {
            #expect(CIDR(bad) == nil, "\(bad)")
        }
    }
}

@Suite struct SHA256Tests {
    /// Every length around the block boundaries, against coreutils' sha256sum.
    @Test func matchesSha256sumAcrossBlockBoundaries() throws {
        for length in [55, 56, 63, 64, 65, 119, 120, 127, 128, 129, 300] {
            let message = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
            let input = Pipe()
            let output = Pipe()
            process.standardInput = input
            process.standardOutput = output
            try process.run()
            input.fileHandleForWriting.write(Data(message))
            try input.fileHandleForWriting.close()
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(SHA256.hexDigest(message) == String(text.prefix(64)), "length \(length)")
        }
    }

    @Test func knownVectors() {
        #expect(SHA256.hexDigest([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hexDigest(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            SHA256.hexDigest(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        )
    }
}

@Suite struct LogHandlerTests {
    @Test func textLinesCannotBeForgedWithControlCharacters() {
        let captured = Mutex<[UInt8]>([])
        let handler = ListenerLogHandler(
            label: "test", format: .text, level: LogLevelControl(), journald: true,
            output: LogOutput { line in captured.withLock { $0 += line } })
        var logger = Logger(label: "test") { _ in handler }
        logger.logLevel = .info
        logger.notice("callback rejected", metadata: ["detail": "member \"a\n<3>ERROR forged\" twice"])
        let text = captured.withLock { String(decoding: $0, as: UTF8.self) }
        #expect(text.hasPrefix("<5>NOTICE callback rejected"))
        #expect(text.split(separator: "\n").count == 1)
        #expect(text.contains("a\\n<3>ERROR forged"))
    }

    /// swift-log's contract: a logger's level is its own; the bootstrap's level is the default a reload changes.
    @Test func aLoggersLevelIsItsOwnAndTheBootstrapLevelIsTheDefault() {
        let captured = Mutex<[String]>([])
        let control = LogLevelControl(.info)
        let factory: @Sendable (String) -> ListenerLogHandler = { label in
            ListenerLogHandler(
                label: label, format: .text, level: control, journald: true,
                output: LogOutput { line in captured.withLock { $0.append(String(decoding: line, as: UTF8.self)) } })
        }
        var chatty = Logger(label: "chatty", factory: factory)
        let plain = Logger(label: "plain", factory: factory)
        chatty.logLevel = .debug
        #expect(plain.logLevel == .info)
        plain.debug("hidden")
        chatty.debug("shown")
        control.level = .error  // a reload
        #expect(plain.logLevel == .error)
        #expect(chatty.logLevel == .debug)
        plain.warning("hidden too")
        chatty.debug("still shown")
        #expect(captured.withLock { $0 }.map { $0.contains("shown") && !$0.contains("hidden") } == [true, true])
    }
}
