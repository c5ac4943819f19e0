// swift-tools-version: 6.2
import PackageDescription

// Module layout and dependency direction: see README.md ("Architecture").
// HTTP1 depends on nothing; HTTPServer on HTTP1; CallbackStore stands alone;
// ThingSpace on HTTPClient (libcurl); ListenerApp wires everything; the
// executable only parses arguments.
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "thingspace-listener",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "thingspace-listener", targets: ["thingspace-listener"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // System-library shims: headers plus wrappers for the C APIs Swift
        // cannot call directly (variadic curl_easy_setopt, SQLITE_TRANSIENT).
        // libcurl is loaded on first use (see CCurl.h), so it is not linked.
        .target(name: "CCurl", linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "CSQLite", linkerSettings: [.linkedLibrary("sqlite3")]),

        .target(name: "HTTP1", swiftSettings: strict),
        .target(
            name: "HTTPServer",
            dependencies: ["HTTP1", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .target(
            name: "CallbackStore",
            dependencies: ["CSQLite", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // The libcurl client every outbound caller shares, and the retry policy.
        .target(name: "HTTPClient", dependencies: ["CCurl"], swiftSettings: strict),
        .target(
            name: "ThingSpace",
            dependencies: ["HTTPClient", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // A local simulator of ThingSpace (token, session, callbacks API and
        // callback delivery) for `make run`, the `sandbox` command and tests.
        .target(
            name: "ThingSpaceSandbox",
            dependencies: ["HTTP1", "HTTPServer", "HTTPClient", "ThingSpace", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .target(
            name: "ListenerApp",
            dependencies: [
                "HTTP1", "HTTPServer", "CallbackStore", "ThingSpace", "ThingSpaceSandbox",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "thingspace-listener",
            dependencies: [
                "ListenerApp", "CallbackStore", "HTTPClient", "ThingSpace", "ThingSpaceSandbox",
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

        .testTarget(name: "HTTP1Tests", dependencies: ["HTTP1"], swiftSettings: strict),
        .testTarget(name: "HTTPServerTests", dependencies: ["HTTPServer", "HTTP1"], swiftSettings: strict),
        .testTarget(
            name: "CallbackStoreTests",
            dependencies: ["CallbackStore", "CSQLite", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ThingSpaceTests",
            dependencies: ["ThingSpace", "ThingSpaceSandbox", "HTTPClient", "HTTPServer", "HTTP1", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ListenerAppTests",
            dependencies: [
                "ListenerApp", "HTTP1", "HTTPServer", "CallbackStore", "ThingSpace", "ThingSpaceSandbox",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Start the real binary; it is built before the tests run (see Makefile).
        .testTarget(
            name: "EndToEndTests",
            dependencies: ["ThingSpaceSandbox", "ThingSpace", "HTTP1", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // Against real loopback servers (HTTPServer): concurrency, reuse, errors; the retry policy.
        .testTarget(
            name: "HTTPClientTests",
            dependencies: ["HTTPClient", "HTTPServer", "HTTP1", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
    ]
)
