// swift-tools-version: 6.2
import PackageDescription

// Module layout and dependency direction: see README.md ("Architecture").
// HTTP1, JSON and Vocabulary depend on nothing; HTTPServer on HTTP1; HTTPClient on libcurl;
// CallbackStore stands alone (beside JSON and Vocabulary); ThingSpace on HTTPClient;
// Delivery on the store API, HTTPServer and HTTPClient; ListenerApp wires everything; the executable only parses arguments.
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "thingspace-listener",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "thingspace-listener", targets: ["thingspace-listener"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // System-library shims: headers plus wrappers for the C APIs Swift
        // cannot call directly (variadic curl_easy_setopt, SQLITE_TRANSIENT).
        // libcurl is loaded on first use (see CCurl.h), so it is not linked.
        .target(name: "CCurl", linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "CSQLite", linkerSettings: [.linkedLibrary("sqlite3")]),
        .target(name: "CPostgreSQL", linkerSettings: [.linkedLibrary("pq")]),

        .target(name: "HTTP1", swiftSettings: strict),
        // Strict RFC 8259 scanner, writer and string escaping: every JSON byte the
        // project reads or writes goes through it. Depends on nothing.
        .target(name: "JSON", swiftSettings: strict),
        // The few values every module must name the same way: DeviceID (one type from
        // the callback envelope to the stored record), the clocks and time conversions
        // (epoch ms, monotonic µs, Duration units, ISO 8601), and the redaction marker.
        // A module of its own because ThingSpace and CallbackStore both need DeviceID and
        // must not import each other, and none of it is JSON; it depends on nothing.
        .target(name: "Vocabulary", swiftSettings: strict),
        .target(
            name: "HTTPServer",
            dependencies: ["HTTP1", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // The store API: records, errors, the intake/reader/maintenance protocols, an in-memory store.
        .target(name: "CallbackStore", dependencies: ["JSON", "Vocabulary"], swiftSettings: strict),
        // The one-machine backend: the journal (group commit, fail-stop, recovery), SQLite as its index.
        .target(
            name: "SQLiteStore",
            dependencies: ["CallbackStore", "CSQLite", "JSON", "Vocabulary", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // The shared backend for several instances: PostgreSQL through libpq (group commit, repeats found
        // by a constraint, claims with SKIP LOCKED), and the leader lease and heartbeats that share duties.
        .target(
            name: "PostgresStore",
            dependencies: ["CallbackStore", "CPostgreSQL", "JSON", "Vocabulary", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // The libcurl client every outbound caller shares, and the retry policy.
        .target(name: "HTTPClient", dependencies: ["CCurl"], swiftSettings: strict),
        .target(
            name: "ThingSpace",
            dependencies: ["HTTPClient", "JSON", "Vocabulary", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // A local simulator of ThingSpace (token, session, callbacks API and
        // callback delivery) for `make run`, the `sandbox` command and tests.
        .target(
            name: "ThingSpaceSandbox",
            dependencies: [
                "HTTP1", "HTTPServer", "HTTPClient", "ThingSpace", "Vocabulary", .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Getting callbacks to the user's systems: destinations (Standard Webhooks signing, the retry
        // schedule, dead letters) and the consumer API (cursor, long poll, Server-Sent Events).
        .target(
            name: "Delivery",
            dependencies: [
                "CallbackStore", "HTTP1", "HTTPServer", "HTTPClient", "JSON", "Vocabulary",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "ListenerApp",
            dependencies: [
                "HTTP1", "HTTPServer", "HTTPClient", "CallbackStore", "SQLiteStore", "PostgresStore", "Delivery", "ThingSpace",
                "ThingSpaceSandbox", "JSON",
                "Vocabulary",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "thingspace-listener",
            dependencies: [
                "ListenerApp", "CallbackStore", "SQLiteStore", "PostgresStore", "Delivery", "HTTPClient", "HTTPServer", "HTTP1",
                "ThingSpace",
                "ThingSpaceSandbox", "JSON", "Vocabulary",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The bare HTTP server for bench/: reads the body, answers 200, stores nothing.
        .executableTarget(
            name: "http-bench-server",
            dependencies: ["HTTPServer", "HTTP1", .product(name: "Logging", package: "swift-log")],
            path: "bench/Server",
            swiftSettings: strict
        ),
        // The naive PostgreSQL peer for bench/ (issue 11): one autocommit INSERT per POST, a connection per request in flight.
        .executableTarget(
            name: "naive-postgres-peer",
            dependencies: ["HTTPServer", "HTTP1", "PostgresStore", .product(name: "Logging", package: "swift-log")],
            path: "bench/NaivePostgres",
            swiftSettings: strict
        ),

        .testTarget(name: "HTTP1Tests", dependencies: ["HTTP1"], swiftSettings: strict),
        .testTarget(name: "HTTPServerTests", dependencies: ["HTTPServer", "HTTP1", "TestSupport"], swiftSettings: strict),
        .testTarget(
            name: "SQLiteStoreTests",
            dependencies: [
                "SQLiteStore", "CallbackStore", "CSQLite", "Vocabulary", "TestSupport", .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The same tests for every backend: what the store API promises.
        .testTarget(
            name: "CallbackStoreContractTests",
            dependencies: [
                "CallbackStore", "SQLiteStore", "PostgresStore", "Vocabulary", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ThingSpaceTests",
            dependencies: [
                "ThingSpace", "ThingSpaceSandbox", "HTTPClient", "HTTPServer", "HTTP1", "Vocabulary", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // What tests share: temporary directories, the blocking client, polling, log capture,
        // a socket that never answers, running work on threads at once.
        .target(
            name: "TestSupport",
            dependencies: ["HTTPServer", "HTTP1", .product(name: "Logging", package: "swift-log")],
            path: "Tests/TestSupport",
            swiftSettings: strict
        ),
        .testTarget(
            name: "ListenerAppTests",
            dependencies: [
                "ListenerApp", "TestSupport", "SQLiteStore", "PostgresStore",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"), "HTTP1", "HTTPServer", "CallbackStore",
                "ThingSpace", "ThingSpaceSandbox",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Start the real binary; it is built before the tests run (see Makefile).
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "TestSupport", "ThingSpaceSandbox", "ThingSpace", "HTTP1", "Delivery", .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "DeliveryTests",
            dependencies: [
                "Delivery", "CallbackStore", "SQLiteStore", "HTTPServer", "HTTP1", "HTTPClient", "JSON", "Vocabulary", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Against a private PostgreSQL server (TestSupport's PostgreSQLServer): the connection, the schema,
        // leadership and heartbeats. What every backend promises is in CallbackStoreContractTests.
        .testTarget(
            name: "PostgresStoreTests",
            dependencies: ["PostgresStore", "CallbackStore", "Vocabulary", "TestSupport", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .testTarget(name: "JSONTests", dependencies: ["JSON"], swiftSettings: strict),
        .testTarget(name: "VocabularyTests", dependencies: ["Vocabulary"], swiftSettings: strict),
        // Against real loopback servers (HTTPServer): concurrency, reuse, errors; the retry policy.
        .testTarget(
            name: "HTTPClientTests",
            dependencies: ["HTTPClient", "HTTPServer", "HTTP1", "TestSupport", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
    ]
)
