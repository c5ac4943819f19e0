// `delivery.destinations` through real files: defaults, every field, each bad field named by its
// exact key, secrets from the credentials directory and the environment, and no secret in any
// error or description.
import Delivery
import Foundation
import Testing

@testable import ListenerApp

@Suite struct ConfigurationDeliveryTests {
    static let secret = WebhookSecret(key: Array(0..<32))
    static let previous = WebhookSecret(key: Array(100..<140))
    static let other = WebhookSecret(key: Array(200..<224))

    /// A file with `destinations` (JSON text of the list) and nothing else.
    static func file(_ destinations: String) -> String { #"{"delivery": {"destinations": \#(destinations)}}"# }

    static func minimal(name: String = "orders", secret: String? = ConfigurationDeliveryTests.secret.encoded) -> String {
        #"{"name": "\#(name)", "url": "https://hooks.example.com/thingspace""# + (secret.map { #", "secret": "\#($0)""# } ?? "") + "}"
    }

    @Test func noDestinationsByDefault() async throws {
        #expect(try await ConfigurationLoading.load(nil).delivery.destinations.isEmpty)
        #expect(try await ConfigurationLoading.load(#"{"delivery": {}}"#).delivery.destinations.isEmpty)
        #expect(try await ConfigurationLoading.load(Self.file("[]")).delivery.destinations.isEmpty)
        #expect(try await ConfigurationLoading.load(Self.file("null")).delivery.destinations.isEmpty)
    }

    @Test func aDestinationTakesTheDocumentedDefaults() async throws {
        let destinations = try await ConfigurationLoading.load(Self.file("[\(Self.minimal())]")).delivery.destinations
        #expect(destinations == [Destination(name: "orders", url: "https://hooks.example.com/thingspace", secret: Self.secret)])
        let destination = try #require(destinations.first)
        #expect(destination.services == nil && destination.accepts(service: "AnyService"))
        #expect(destination.previousSecret == nil)
        #expect(!destination.includeDuplicates)
        #expect(destination.timeout == .seconds(15))
        #expect(destination.maxInFlight == 16)
        #expect(destination.ordering == .none)
        #expect(destination.retrySchedule == [5, 300, 1800, 7200, 18000, 36000, 36000].map { .seconds($0) })
        #expect(destination.maxAge == .seconds(72 * 3600))
    }

    @Test func everyFieldIsRead() async throws {
        let json = Self.file(
            """
            [
              {
                "name": "orders_v2",
                "url": "http://10.0.0.5:8080/hooks/thingspace?source=listener",
                "services": ["CarrierService", " DeviceUsage "],
                "secret": "\(Self.secret.encoded)",
                "previousSecret": "\(Self.previous.encoded)",
                "includeDuplicates": true,
                "timeoutSeconds": 2.5,
                "maxInFlight": 1024,
                "ordering": "device",
                "retrySchedule": [0, 1.5, 604800],
                "maxAgeHours": 0.5
              },
              {"name": "Audit-Log", "url": "https://audit.example.com/", "secret": "\(Self.other.encoded)", "retrySchedule": [],
               "previousSecret": null, "maxInFlight": 1, "timeoutSeconds": 300, "ordering": "none", "maxAgeHours": 87600}
            ]
            """)
        let destinations = try await ConfigurationLoading.load(json).delivery.destinations
        #expect(
            destinations == [
                Destination(
                    name: "orders_v2", url: "http://10.0.0.5:8080/hooks/thingspace?source=listener",
                    services: ["CarrierService", "DeviceUsage"], secret: Self.secret, previousSecret: Self.previous,
                    includeDuplicates: true, timeout: .milliseconds(2500), maxInFlight: 1024, ordering: .device,
                    retrySchedule: [.zero, .milliseconds(1500), .seconds(7 * 24 * 3600)], maxAge: .seconds(1800)),
                Destination(
                    name: "Audit-Log", url: "https://audit.example.com/", services: nil, secret: Self.other, previousSecret: nil,
                    includeDuplicates: false, timeout: .seconds(300), maxInFlight: 1, ordering: .none, retrySchedule: [],
                    maxAge: .seconds(87600 * 3600)),
            ])
    }

    @Test func loadingTwiceGivesEqualDestinations() async throws {
        let json = Self.file("[\(Self.minimal()), \(Self.minimal(name: "b"))]")
        let first = try await ConfigurationLoading.load(json).delivery.destinations
        let second = try await ConfigurationLoading.load(json).delivery.destinations
        #expect(first == second && first.map(\.name) == ["orders", "b"])
        #expect(Set(first) == Set(second))
    }

    static let secret8Bytes = "whsec_c2VjcmV0MTI="  // "secret12": a valid base64 key, but too short

    @Test(arguments: [
        // The list and its elements.
        (#"{"delivery": {"destinations": {"name": "x"}}}"#, "delivery.destinations"),
        (#"{"delivery": {"destinations": "orders"}}"#, "delivery.destinations"),
        (file("[5]"), "delivery.destinations[0]"),
        (file("[\(minimal()), [1]]"), "delivery.destinations[1]"),
        // name
        (file(#"[{"url": "https://x.example"}]"#), "delivery.destinations[0].name"),
        (file("[\(minimal(name: "bad name"))]"), "delivery.destinations[0].name"),
        (file("[\(minimal(name: ""))]"), "delivery.destinations[0].name"),
        (file("[\(minimal(name: String(repeating: "a", count: 65)))]"), "delivery.destinations[0].name"),
        (file("[\(minimal(name: "a.b"))]"), "delivery.destinations[0].name"),
        (file(#"[{"name": 5, "url": "https://x.example"}]"#), "delivery.destinations[0].name"),
        (file("[\(minimal()), \(minimal())]"), "delivery.destinations[1].name"),
        (file("[\(minimal(name: "orders-hook")), \(minimal(name: "orders_hook"))]"), "delivery.destinations[1].name"),
        (file("[\(minimal(name: "ordersHook")), \(minimal(name: "ORDERS_HOOK"))]"), "delivery.destinations[1].name"),
        // url
        (file(#"[{"name": "a", "secret": "\#(secret.encoded)"}]"#), "delivery.destinations[0].url"),
        (file(#"[{"name": "a", "url": "ftp://x.example/", "secret": "\#(secret.encoded)"}]"#), "delivery.destinations[0].url"),
        (file(#"[{"name": "a", "url": "https://", "secret": "\#(secret.encoded)"}]"#), "delivery.destinations[0].url"),
        (file(#"[{"name": "a", "url": "hooks.example.com/x", "secret": "\#(secret.encoded)"}]"#), "delivery.destinations[0].url"),
        (file(#"[{"name": "a", "url": ["https://x.example"], "secret": "\#(secret.encoded)"}]"#), "delivery.destinations[0].url"),
        // secret and previousSecret
        (file("[\(minimal(secret: nil))]"), "delivery.destinations[0].secret"),
        (file("[\(minimal(secret: ""))]"), "delivery.destinations[0].secret"),
        (file("[\(minimal(secret: "not-a-secret"))]"), "delivery.destinations[0].secret"),
        (file("[\(minimal(secret: secret8Bytes))]"), "delivery.destinations[0].secret"),
        (file("[\(minimal(secret: String(secret.encoded.dropFirst(6))))]"), "delivery.destinations[0].secret"),
        (file(#"[{"name": "a", "url": "https://x.example", "secret": 5}]"#), "delivery.destinations[0].secret"),
        (field("previousSecret", #""whsec_!!""#), "delivery.destinations[0].previousSecret"),
        (field("previousSecret", "true"), "delivery.destinations[0].previousSecret"),
        // services
        (field("services", #"["Carrier Service"]"#), "delivery.destinations[0].services"),
        (field("services", #"["CarrierService", "CarrierService"]"#), "delivery.destinations[0].services"),
        (field("services", "[]"), "delivery.destinations[0].services"),
        (field("services", #""CarrierService""#), "delivery.destinations[0].services"),
        (field("services", #"[{"name": "CarrierService"}]"#), "delivery.destinations[0].services"),
        // the rest
        (field("includeDuplicates", #""yes""#), "delivery.destinations[0].includeDuplicates"),
        (field("includeDuplicates", "1"), "delivery.destinations[0].includeDuplicates"),
        (field("timeoutSeconds", "0"), "delivery.destinations[0].timeoutSeconds"),
        (field("timeoutSeconds", "-1"), "delivery.destinations[0].timeoutSeconds"),
        (field("timeoutSeconds", "300.5"), "delivery.destinations[0].timeoutSeconds"),
        (field("timeoutSeconds", "0.0001"), "delivery.destinations[0].timeoutSeconds"),
        (field("timeoutSeconds", #""15""#), "delivery.destinations[0].timeoutSeconds"),
        (field("maxInFlight", "0"), "delivery.destinations[0].maxInFlight"),
        (field("maxInFlight", "1025"), "delivery.destinations[0].maxInFlight"),
        (field("maxInFlight", "1.5"), "delivery.destinations[0].maxInFlight"),
        (field("maxInFlight", #""16""#), "delivery.destinations[0].maxInFlight"),
        (field("ordering", #""random""#), "delivery.destinations[0].ordering"),
        (field("ordering", "1"), "delivery.destinations[0].ordering"),
        (field("retrySchedule", "5"), "delivery.destinations[0].retrySchedule"),
        (field("retrySchedule", #"{"first": 5}"#), "delivery.destinations[0].retrySchedule"),
        (field("retrySchedule", "[5, -1]"), "delivery.destinations[0].retrySchedule[1]"),
        (field("retrySchedule", "[604801]"), "delivery.destinations[0].retrySchedule[0]"),
        (field("retrySchedule", #"[5, 300, "1800"]"#), "delivery.destinations[0].retrySchedule[2]"),
        (field("retrySchedule", "[5, null]"), "delivery.destinations[0].retrySchedule[1]"),
        (field("retrySchedule", "[1e400]"), "delivery.destinations[0].retrySchedule[0]"),
        (field("maxAgeHours", "0"), "delivery.destinations[0].maxAgeHours"),
        (field("maxAgeHours", "-72"), "delivery.destinations[0].maxAgeHours"),
        (field("maxAgeHours", "87601"), "delivery.destinations[0].maxAgeHours"),
        (field("maxAgeHours", #""72""#), "delivery.destinations[0].maxAgeHours"),
        // A typo is an error, never ignored.
        (field("retrySchedul", "[5]"), "delivery.destinations[0].retrySchedul"),
        (field("Secret", #""x""#), "delivery.destinations[0].Secret"),
        (file(#"[\#(minimal(name: "a")), \#(minimal(name: "b").dropLast()), "timeout": 5}]"#), "delivery.destinations[1].timeout"),
    ])
    func aBadFieldNamesItsExactKey(json: String, key: String) async throws {
        let text = try #require(await ConfigurationLoading.errorText(json), "\(key) was accepted")
        #expect(
            text.hasPrefix("configuration key \(key): ") || text.hasPrefix("configuration key \(key) is required: "),
            "\(text)")
        #expect(!text.contains(Self.secret.encoded.dropFirst(6)) && !text.contains("c2VjcmV0"), "\(text)")
    }

    /// The minimal destination with `name`: `value` (JSON text) added.
    static func field(_ name: String, _ value: String) -> String {
        file("[\(minimal().dropLast()), \"\(name)\": \(value)}]")
    }

    @Test func aTypoNamesTheKeyAndTheKnownOnes() async throws {
        let text = try #require(await ConfigurationLoading.errorText(Self.field("retrySchedul", "[5]")))
        #expect(
            text
                == "configuration key delivery.destinations[0].retrySchedul: unknown here (known: name, url, services, secret, "
                + "previousSecret, includeDuplicates, timeoutSeconds, maxInFlight, ordering, retrySchedule, maxAgeHours)")
    }

    /// `"destination"` for `"destinations"` would otherwise deliver nothing, silently.
    @Test func aTypoInTheDeliverySectionNamesTheKey() async throws {
        let text = try #require(await ConfigurationLoading.errorText(#"{"delivery": {"destination": []}}"#))
        #expect(text == "configuration key delivery.destination: unknown here (known: destinations, secrets, previousSecrets)")
    }

    @Test func secretsComeFromTheCredentialsDirectory() async throws {
        let json = Self.file(#"[{"name": "orders-v2", "url": "https://x.example/"}, \#(Self.minimal(name: "audit"))]"#)
        let configuration = try await ConfigurationLoading.load(
            json,
            credentials: [
                "delivery-secrets-orders-v2": Self.secret.encoded + "\n",
                "delivery-previousSecrets-orders-v2": Self.previous.encoded + "\n",
                "delivery-secrets-audit": Self.other.encoded,  // wins over the file's
            ])
        let destinations = configuration.delivery.destinations
        #expect(destinations.map(\.secret) == [Self.secret, Self.other])
        #expect(destinations.map(\.previousSecret) == [Self.previous, nil])
        // Without it, the error says where a secret may come from.
        let text = try #require(await ConfigurationLoading.errorText(json))
        #expect(
            text
                == "configuration key delivery.destinations[0].secret is required: set it here, in the credentials file "
                + "delivery-secrets-orders-v2 or in THINGSPACE_LISTENER_DELIVERY_SECRETS_ORDERS_V2")
    }

    @Test func secretsComeFromTheEnvironment() async throws {
        let json = Self.file(#"[{"name": "ordersHook", "url": "https://x.example/"}, {"name": "v2", "url": "https://y.example/"}]"#)
        let configuration = try await ConfigurationLoading.load(
            json,
            environment: [
                "THINGSPACE_LISTENER_DELIVERY_SECRETS_ORDERS_HOOK": Self.secret.encoded,
                "THINGSPACE_LISTENER_DELIVERY_PREVIOUS_SECRETS_ORDERS_HOOK": Self.previous.encoded,
                "THINGSPACE_LISTENER_DELIVERY_SECRETS_V2": Self.other.encoded,
            ],
            credentials: ["delivery-secrets-ordersHook": Self.other.encoded])  // the environment wins
        #expect(configuration.delivery.destinations.map(\.secret) == [Self.secret, Self.other])
        #expect(configuration.delivery.destinations.map(\.previousSecret) == [Self.previous, nil])
    }

    @Test func aBadSecretFromOutsideTheFileIsNamedWithoutItsValue() async throws {
        let json = Self.file(#"[{"name": "orders", "url": "https://x.example/", "secret": "\#(Self.secret.encoded)"}]"#)
        for (environment, credentials, key) in [
            (["THINGSPACE_LISTENER_DELIVERY_SECRETS_ORDERS": Self.secret8Bytes], [String: String]?.none, "delivery.secrets.orders"),
            ([:], ["delivery-secrets-orders": "hunter2hunter2\n"], "delivery.secrets.orders"),
            ([:], ["delivery-previousSecrets-orders": Self.secret8Bytes], "delivery.previousSecrets.orders"),
        ] {
            let text = try #require(await ConfigurationLoading.errorText(json, environment: environment, credentials: credentials))
            let file = ConfigurationSource.credentialsFileName(for: key)
            let variable = ConfigurationSource.environmentName(for: key)
            #expect(
                text
                    == "configuration key \(key) (credentials file \(file) or \(variable)): expected whsec_ followed by the base64 "
                    + "of a 24 to 64 byte key")
            #expect(!text.contains("c2VjcmV0") && !text.contains("hunter2"))
        }
    }

    @Test func destinationsCannotComeFromTheEnvironment() async throws {
        let text = try #require(
            await ConfigurationLoading.errorText(nil, environment: ["THINGSPACE_LISTENER_DELIVERY_DESTINATIONS": "orders"]))
        #expect(text.hasPrefix("configuration key delivery.destinations: expected a list of objects in the configuration file"))
    }

    @Test func noSecretInAnyDescription() async throws {
        let configuration = try await ConfigurationLoading.load(
            Self.file(
                #"[{"name": "a", "url": "https://x.example/", "secret": "\#(Self.secret.encoded)", "previousSecret": "\#(Self.previous.encoded)"}]"#
            )
        )
        let body = { (secret: WebhookSecret) in String(secret.encoded.dropFirst(6)) }
        for text in ["\(configuration)", "\(configuration.delivery)", String(reflecting: configuration.delivery.destinations)] {
            #expect(!text.contains(body(Self.secret)) && !text.contains(body(Self.previous)), "\(text)")
        }
    }
}
