// `api.*` through real files: defaults, every key, bearer tokens from the file, the credentials
// directory and the environment, the tokens required once the API is on, ports that would collide,
// and no token in any error or description.
import Foundation
import Testing

@testable import ListenerApp

@Suite struct ConfigurationAPITests {
    @Test func theAPIIsOffByDefault() async throws {
        let api = try await ConfigurationLoading.load(nil).api
        #expect(!api.enabled)
        #expect(api.host == "127.0.0.1")
        #expect(api.port == 9091)
        #expect(api.tokens.isEmpty)
    }

    @Test func everyKeyIsRead() async throws {
        let api = try await ConfigurationLoading.load(
            #"{"api": {"enabled": true, "host": "::1", "port": 9100, "tokens": ["tok-1.A_b~c+d/e==", " second "]}}"#
        ).api
        #expect(api.enabled && api.host == "::1" && api.port == 9100)
        #expect(api.tokens == [Secret("tok-1.A_b~c+d/e=="), Secret("second")])
        // Loading twice gives the same.
        let again = try await ConfigurationLoading.load(
            #"{"api": {"enabled": true, "host": "::1", "port": 9100, "tokens": ["tok-1.A_b~c+d/e==", " second "]}}"#
        ).api
        #expect(again.tokens == api.tokens && again.host == api.host && again.port == api.port)
    }

    @Test func tokensComeFromTheCredentialsDirectoryAndTheEnvironment() async throws {
        let file = #"{"api": {"enabled": true, "tokens": ["from-file"]}}"#
        for (content, expected) in [("one\ntwo\n", ["one", "two"]), ("one,two", ["one", "two"]), ("\r\n only \r\n\n", ["only"])] {
            let api = try await ConfigurationLoading.load(file, credentials: ["api-tokens": content]).api
            #expect(api.tokens.map(\.value) == expected)
        }
        let fromEnvironment = try await ConfigurationLoading.load(
            file, environment: ["THINGSPACE_LISTENER_API_TOKENS": "env-1, env-2"], credentials: ["api-tokens": "from-credentials"]
        ).api
        #expect(fromEnvironment.tokens.map(\.value) == ["env-1", "env-2"])
        #expect(try await ConfigurationLoading.load(file).api.tokens.map(\.value) == ["from-file"])
    }

    @Test func anEnabledAPINeedsATokenAndSaysWhereToPutIt() async throws {
        for (json, environment) in [
            (#"{"api": {"enabled": true}}"#, [String: String]()),
            (#"{"api": {"enabled": true, "tokens": []}}"#, [:]),
            (#"{"api": {"enabled": true, "tokens": ["", " "]}}"#, [:]),
            (nil, ["THINGSPACE_LISTENER_API_ENABLED": "true"]),
        ] {
            let text = try #require(await ConfigurationLoading.errorText(json, environment: environment))
            #expect(
                text
                    == "configuration key api.tokens is required: api.enabled is true; set bearer tokens here, in the credentials file "
                    + "api-tokens (one per line) or in THINGSPACE_LISTENER_API_TOKENS (comma-separated)")
        }
        // Off, no token is needed.
        #expect(try await ConfigurationLoading.load(#"{"api": {"enabled": false}}"#).api.tokens.isEmpty)
    }

    @Test(arguments: [
        (#"{"api": {"enabled": "yes"}}"#, "api.enabled"),
        (#"{"api": {"enabled": 1}}"#, "api.enabled"),
        (#"{"api": {"host": "a b"}}"#, "api.host"),
        (#"{"api": {"host": ""}}"#, "api.host"),
        (#"{"api": {"port": 70000}}"#, "api.port"),
        (#"{"api": {"port": -1}}"#, "api.port"),
        (#"{"api": {"port": "x"}}"#, "api.port"),
        (#"{"api": {"tokens": ["has space"]}}"#, "api.tokens"),
        (#"{"api": {"tokens": ["=abc"]}}"#, "api.tokens"),
        (#"{"api": {"tokens": ["caf\u00e9"]}}"#, "api.tokens"),
        (#"{"api": {"tokens": [5]}}"#, "api.tokens"),
        (#"{"api": {"tokens": "one"}}"#, "api.tokens"),
        (#"{"api": {"tokens": [{"token": "one"}]}}"#, "api.tokens"),
        (#"{"api": 5}"#, "api"),
        // Ports the callback or admin listener already takes.
        (#"{"api": {"enabled": true, "tokens": ["t"], "port": 9001}}"#, "api.port"),
        (#"{"api": {"enabled": true, "tokens": ["t"], "port": 9090}}"#, "api.port"),
        (#"{"http": {"host": "0.0.0.0"}, "api": {"enabled": true, "tokens": ["t"], "port": 9001}}"#, "api.port"),
        (#"{"admin": {"host": "::"}, "api": {"enabled": true, "tokens": ["t"], "port": 9090}}"#, "api.port"),
        (#"{"api": {"enabled": true, "tokens": ["t"], "host": "localhost", "port": 9001}}"#, "api.port"),
        (#"{"api": {"enabled": true, "tokens": ["t"], "host": "::ffff:127.0.0.1", "port": 9001}}"#, "api.port"),
    ])
    func aBadValueNamesItsKey(json: String, key: String) async throws {
        let text = try #require(await ConfigurationLoading.errorText(json), "\(key) was accepted")
        #expect(text.hasPrefix("configuration key \(key): expected "), "\(text)")
    }

    @Test(arguments: [
        #"{"admin": {"enabled": false}, "api": {"enabled": true, "tokens": ["t"], "port": 9090}}"#,
        #"{"http": {"host": "10.0.0.1"}, "api": {"enabled": true, "tokens": ["t"], "port": 9001}}"#,
        #"{"http": {"host": "::1"}, "api": {"enabled": true, "tokens": ["t"], "port": 9001}}"#,
        #"{"http": {"port": 0}, "api": {"enabled": true, "tokens": ["t"], "port": 0}}"#,
        #"{"api": {"enabled": false, "port": 9001}}"#,
    ])
    func portsThatCannotCollideAreAccepted(json: String) async throws {
        #expect(try await ConfigurationLoading.load(json).api.tokens.count <= 1)
    }

    @Test func noTokenInAnyErrorOrDescription() async throws {
        for (json, environment, credentials) in [
            (#"{"api": {"tokens": ["good", "bad hunter2"]}}"#, [String: String](), [String: String]?.none),
            (nil, ["THINGSPACE_LISTENER_API_TOKENS": "good,bad\thunter2"], nil),
            (nil, [:], ["api-tokens": "good\nhunter2 bad\n"]),
        ] {
            let text = try #require(await ConfigurationLoading.errorText(json, environment: environment, credentials: credentials))
            #expect(text.hasPrefix("configuration key api.tokens: expected ") && !text.contains("hunter2"), "\(text)")
            #expect(!text.contains("good"))
        }
        let configuration = try await ConfigurationLoading.load(#"{"api": {"enabled": true, "tokens": ["hunter2token"]}}"#)
        for text in ["\(configuration)", "\(configuration.api)", String(reflecting: configuration.api)] {
            #expect(!text.contains("hunter2token"), "\(text)")
        }
    }
}
