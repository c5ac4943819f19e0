import CallbackStore
import Delivery
import Foundation
import Synchronization
import TestSupport
import Testing

/// The Standard Webhooks reference library (PyPI `standardwebhooks`, through
/// Tests/Tools/standardwebhooks_check.py) in the interpreter `$STANDARDWEBHOOKS_PYTHON`, which
/// `make test` installs into .build/pyenv. Without the variable these tests are skipped; with
/// `REQUIRE_STANDARDWEBHOOKS=1` (as `make test` sets) they run, and fail if the library is missing.
enum ReferenceLibrary {
    static let python: String? = ProcessInfo.processInfo.environment["STANDARDWEBHOOKS_PYTHON"].flatMap { $0.isEmpty ? nil : $0 }
    static let isRequired = ProcessInfo.processInfo.environment["REQUIRE_STANDARDWEBHOOKS"] == "1"
    static let isEnabled = python != nil || isRequired
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Tools/standardwebhooks_check.py").path

    struct Outcome {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs the script with `arguments`, the secret in its environment and `body` in a file.
    static func run(_ arguments: [String], secret: WebhookSecret? = nil, body: [UInt8] = []) throws -> Outcome {
        let python = try #require(
            python, "REQUIRE_STANDARDWEBHOOKS=1 but STANDARDWEBHOOKS_PYTHON is not set: run `make test-tools` and pass its interpreter")
        let directory = try TemporaryDirectory()
        let bodyFile = directory.file("body")
        try Data(body).write(to: URL(fileURLWithPath: bodyFile))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script] + arguments + (arguments.first == "version" ? [] : ["--body-file", bodyFile])
        var environment = ProcessInfo.processInfo.environment
        environment["STANDARDWEBHOOKS_SECRET"] = secret?.encoded
        process.environment = environment
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let stderrData = Mutex(Data())
        let drained = DispatchGroup()
        DispatchQueue.global().async(group: drained) {
            let data = errors.fileHandleForReading.readDataToEndOfFile()
            stderrData.withLock { $0 = data }
        }
        let stdoutData = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        _ = drained.wait(timeout: .now() + 10)
        return Outcome(
            status: process.terminationStatus, stdout: String(decoding: stdoutData, as: UTF8.self).trimmingCharacters(in: .newlines),
            stderr: stderrData.withLock { String(decoding: $0, as: UTF8.self) })
    }

    static func verify(id: String, timestamp: Int64, signature: String, body: [UInt8], secret: WebhookSecret) throws -> Outcome {
        try run(["verify", "--id", id, "--timestamp", String(timestamp), "--signature", signature], secret: secret, body: body)
    }

    static func sign(id: String, timestamp: Int64, body: [UInt8], secret: WebhookSecret) throws -> String {
        let outcome = try run(["sign", "--id", id, "--timestamp", String(timestamp)], secret: secret, body: body)
        #expect(outcome.status == 0, "the reference library could not sign: \(outcome.stderr)")
        return outcome.stdout
    }
}

@Suite(
    .enabled(
        if: ReferenceLibrary.isEnabled,
        "the Standard Webhooks reference library is not set up: `make test` runs these tests (or `make test-tools`, then STANDARDWEBHOOKS_PYTHON=$PWD/.build/pyenv/bin/python swift test)"
    ))
struct WebhookVerifierReferenceTests {
    static let current = WebhookSecret(key: (0..<32).map { UInt8(($0 * 37 + 11) & 0xFF) })
    static let previous = WebhookSecret(key: (0..<48).map { UInt8(($0 * 91 + 3) & 0xFF) })
    static let stranger = WebhookSecret(key: Array(repeating: 0x5A, count: 24))

    /// Bodies a destination gets: an event for a stored callback, non-ASCII text, a large one.
    static func bodies() -> [(String, [UInt8])] {
        let callback = StoredCallback(
            id: 4711, duplicateOf: nil,
            callback: NewCallback(
                receivedAt: 1_780_000_000_123, service: "CarrierService", requestID: "595f5c44-c31c-4552-8670-020a1545a84d",
                status: "Success", callbackCount: 1, remoteAddress: "192.0.2.7", dedupKey: "k",
                body: Array(#"{"requestId":"595f5c44-c31c-4552-8670-020a1545a84d","status":"Success","password":"<redacted>"}"#.utf8)))
        let unicode = Array(#"{"type":"thingspace.callback","data":{"note":"Grüße, 東京, ☃ and 🛰️ \u2028","status":"Éxito"}}"#.utf8)
        let filler = String(repeating: "0123456789abcdef", count: 65_536)  // 1 MiB
        let large = Array(#"{"type":"thingspace.callback","data":{"blob":"\#(filler)","last":"ü"}}"#.utf8)
        return [("event", WebhookMessage.body(for: callback)), ("non-ASCII", unicode), ("1 MiB", large)]
    }

    @Test func theReferenceLibraryIsInstalled() throws {
        let outcome = try ReferenceLibrary.run(["version"])
        #expect(outcome.status == 0, "\(outcome.stderr)")
        #expect(outcome.stdout.split(separator: ".").count >= 2, "version: \(outcome.stdout)")
    }

    @Test func ourSignaturesVerifyWithTheReferenceLibrary() throws {
        let now = WebhookVerifier.currentUnixSeconds()
        for (name, body) in Self.bodies() {
            // Signed with two secrets, as during a rotation: the reference accepts with either one.
            let headers = WebhookMessage.headers(id: 4711, timestamp: now, body: body, secrets: [Self.current, Self.previous])
            let signature = try #require(headers.first { $0.name == "webhook-signature" }?.value)
            #expect(signature.split(separator: " ").count == 2)
            for secret in [Self.current, Self.previous] {
                let outcome = try ReferenceLibrary.verify(id: "4711", timestamp: now, signature: signature, body: body, secret: secret)
                #expect(outcome.status == 0, "\(name): \(outcome.stderr)")
            }
            // The oracle can say no: another secret, or one changed byte.
            let stranger = try ReferenceLibrary.verify(id: "4711", timestamp: now, signature: signature, body: body, secret: Self.stranger)
            #expect(stranger.status == 1, "\(name): \(stranger.stderr)")
            var tampered = body
            tampered[tampered.count - 2] = UInt8(ascii: "X")
            let changed = try ReferenceLibrary.verify(
                id: "4711", timestamp: now, signature: signature, body: tampered, secret: Self.current)
            #expect(changed.status == 1, "\(name): \(changed.stderr)")
        }
    }

    @Test func theReferenceLibrarysSignaturesVerifyHere() throws {
        let now = WebhookVerifier.currentUnixSeconds()
        let verifier = WebhookVerifier(secrets: [Self.current, Self.previous])
        for (name, body) in Self.bodies() {
            let id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
            let byCurrent = try ReferenceLibrary.sign(id: id, timestamp: now, body: body, secret: Self.current)
            let byPrevious = try ReferenceLibrary.sign(id: id, timestamp: now, body: body, secret: Self.previous)
            // Byte for byte what our sender writes.
            #expect(byCurrent == WebhookMessage.signature(id: id, timestamp: now, body: body, secrets: [Self.current]), "\(name)")
            let one = try verifier.verify(id: id, timestamp: String(now), signature: byPrevious, body: body, now: now)
            #expect(one.secretIndex == 1, "\(name)")
            let both = try verifier.verify(id: id, timestamp: String(now), signature: "\(byPrevious) \(byCurrent)", body: body, now: now)
            #expect(both.secretIndex == 0, "\(name)")
            #expect(throws: WebhookVerificationError.noSignatureMatches(signatures: 1, secrets: 2), "\(name)") {
                try verifier.verify(id: id, timestamp: String(now), signature: byCurrent, body: body + [0x0A], now: now)
            }
        }
    }
}
