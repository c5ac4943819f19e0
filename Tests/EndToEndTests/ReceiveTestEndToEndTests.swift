import Foundation
import Synchronization
import TestSupport
import Testing

/// A running `thingspace-listener receive-test` with both of its streams kept line by line:
/// verified events on stdout, "listening on", refusals and the last words on stderr.
final class ReceiveTestProcess: @unchecked Sendable {
    enum Stream { case stdout, stderr }
    private let streams: (stdout: PipeLines, stderr: PipeLines)
    let process = Process()
    private let pipes = (stdout: Pipe(), stderr: Pipe())
    private(set) var port = 0

    init(_ arguments: [String], environment: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: listenerBinary)
        process.arguments = ["receive-test"] + arguments
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("THINGSPACE_LISTENER_") }
        env.merge(environment) { $1 }
        process.environment = env
        process.standardOutput = pipes.stdout
        process.standardError = pipes.stderr
        try process.run()
        streams = (PipeLines(reading: pipes.stdout.fileHandleForReading), PipeLines(reading: pipes.stderr.fileHandleForReading))
    }

    func lines(_ stream: Stream) -> [String] { stream == .stdout ? streams.stdout.lines : streams.stderr.lines }

    /// Waits for a line of `stream` containing `text`.
    @discardableResult
    func waitForLine(_ stream: Stream, containing text: String, timeout: Duration = .seconds(20)) throws -> String {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let line = lines(stream).first(where: { $0.contains(text) }) { return line }
            if !process.isRunning {
                Thread.sleep(forTimeInterval: 0.2)  // what it wrote last may still be in the pipe
                if let line = lines(stream).first(where: { $0.contains(text) }) { return line }
                throw ProcessError.didNotStart(
                    "receive-test exited \(process.terminationStatus); stderr:\n" + lines(.stderr).joined(separator: "\n"))
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        throw ProcessError.timedOut(
            "a line with \"\(text)\"; stdout:\n\(lines(.stdout).joined(separator: "\n"))\nstderr:\n\(lines(.stderr).joined(separator: "\n"))"
        )
    }

    /// Waits for "listening on http://HOST:PORT/" and returns the port.
    func waitUntilListening() throws -> Int {
        let line = try waitForLine(.stderr, containing: "listening on http://")
        let afterHost = try #require(
            line.split(separator: "listening on http://").last?.split(separator: "/").first?.split(separator: ":").last)
        port = try #require(Int(afterHost), "no port in \(line)")
        return port
    }

    /// Sends SIGINT and waits for the exit status (SIGKILL after the timeout).
    func stop(timeout: Duration = .seconds(20)) -> Int32 {
        kill(process.processIdentifier, SIGINT)
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        Thread.sleep(forTimeInterval: 0.1)  // the last lines may still be in the pipes
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// `whsec_` + base64 of `key`: a Standard Webhooks secret as the command takes it.
func webhookSecret(_ key: [UInt8]) -> String { "whsec_" + Data(key).base64EncodedString() }

/// The Standard Webhooks reference library (Tests/Tools/standardwebhooks_check.py) in
/// `$STANDARDWEBHOOKS_PYTHON`; `make test` sets it and REQUIRE_STANDARDWEBHOOKS=1, so that a
/// missing library fails the tests that need it instead of skipping them.
enum StandardWebhooksReference {
    static let python: String? = ProcessInfo.processInfo.environment["STANDARDWEBHOOKS_PYTHON"].flatMap { $0.isEmpty ? nil : $0 }
    static let isEnabled = python != nil || ProcessInfo.processInfo.environment["REQUIRE_STANDARDWEBHOOKS"] == "1"
    static let skipped: Comment =
        "the Standard Webhooks reference library is not set up: `make test` runs this (or `make test-tools`, then STANDARDWEBHOOKS_PYTHON=$PWD/.build/pyenv/bin/python swift test)"
    static let script = repositoryRoot.appendingPathComponent("Tests/Tools/standardwebhooks_check.py").path

    /// The `webhook-signature` value the reference library makes for this message.
    static func sign(id: String, timestamp: Int64, body: [UInt8], secret: String) throws -> String {
        let python = try #require(
            python, "REQUIRE_STANDARDWEBHOOKS=1 but STANDARDWEBHOOKS_PYTHON is not set: run `make test-tools` and pass its interpreter")
        let directory = try TemporaryDirectory()
        let bodyFile = directory.file("body")
        try Data(body).write(to: URL(fileURLWithPath: bodyFile))
        var environment = ProcessInfo.processInfo.environment
        environment["STANDARDWEBHOOKS_SECRET"] = secret
        let result = try runProcess(
            URL(fileURLWithPath: python), [script, "sign", "--id", id, "--timestamp", String(timestamp), "--body-file", bodyFile],
            environment: environment, timeout: .seconds(60))
        #expect(result.status == 0, "the reference library could not sign: \(result.stderr)")
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

@Suite(.serialized) struct ReceiveTestEndToEndTests {
    static let secret = webhookSecret(Array(0..<32))
    static let previous = webhookSecret(Array(repeating: 0x77, count: 24))
    static let body = Array(
        #"{"type":"thingspace.callback","timestamp":"2026-05-28T20:26:40.000Z","data":{"id":31,"service":"DeviceUsage","requestId":"r-31","status":"Success","note":"Grüße"}}"#
            .utf8)
    static var now: Int64 { Int64(Date().timeIntervalSince1970) }

    func headers(id: String, timestamp: Int64, signature: String) -> [String] {
        ["webhook-id: \(id)", "webhook-timestamp: \(timestamp)", "webhook-signature: \(signature)"]
    }

    // MARK: Without the reference library

    @Test func helpSaysTheSecretOptionIsVisibleToOtherUsers() throws {
        let result = try runListenerCommand(["receive-test", "--help"])
        #expect(result.status == 0)
        let help = result.stdout.replacingOccurrences(of: "\n", with: " ").split(separator: " ").joined(separator: " ")
        #expect(help.contains("--secret-file"))
        #expect(help.contains("THINGSPACE_LISTENER_RECEIVE_SECRET"))
        #expect(help.contains("Visible to other users in `ps`"), "\(result.stdout)")
        #expect(help.contains("--fail-first") && help.contains("--status") && help.contains("--retry-after") && help.contains("--json"))
    }

    @Test func aMissingOrInvalidSecretIsAUsageErrorThatDoesNotQuoteIt() throws {
        let none = try runListenerCommand(["receive-test", "--port", "0"])
        #expect(none.status == 2)
        #expect(none.stderr.contains("no secret"), "\(none.stderr)")
        let almost = webhookSecret(Array(40..<56))  // 16 bytes: fewer than the spec's 24
        let invalid = try runListenerCommand(
            ["receive-test", "--port", "0"], environment: ["THINGSPACE_LISTENER_RECEIVE_SECRET": almost], timeout: .seconds(20))
        #expect(invalid.status == 2)
        #expect(invalid.stderr.contains("is not a Standard Webhooks secret"), "\(invalid.stderr)")
        #expect(!invalid.stderr.contains(almost.dropFirst(6)) && !invalid.stdout.contains(almost.dropFirst(6)))
        let retryAfterAlone = try runListenerCommand(["receive-test", "--secret", Self.secret, "--retry-after", "5"])
        #expect(retryAfterAlone.status == 2)
        #expect(!retryAfterAlone.stderr.contains(Self.secret.dropFirst(6)))
    }

    @Test func malformedRequestsAre400AndWrongSignatures401WithTheReasonPrinted() throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write("secret", Self.secret + "\n")
        let receiver = try ReceiveTestProcess(["--port", "0", "--secret-file", file])
        let port = try receiver.waitUntilListening()
        let missing = try TestClient(port: port).post("/", json: Self.body, headers: ["webhook-id: 1", "webhook-timestamp: \(Self.now)"])
        #expect(missing.status == 400)
        #expect(missing.bodyText.contains("webhook-signature header is missing"))
        let zeros = "v1," + Data(count: 32).base64EncodedString()
        let wrong = try TestClient(port: port).post("/", json: Self.body, headers: headers(id: "2", timestamp: Self.now, signature: zeros))
        #expect(wrong.status == 401)
        let garbled = try TestClient(port: port).post(
            "/", json: Self.body, headers: headers(id: "3", timestamp: Self.now, signature: "v1,@@@"))
        #expect(garbled.status == 400)
        try receiver.waitForLine(.stderr, containing: "refused webhook-id=3:")
        let refusals = receiver.lines(.stderr).filter { $0.hasPrefix("refused") }
        #expect(
            refusals == [
                "refused webhook-id=1: the webhook-signature header is missing → 400",
                "refused webhook-id=2: no signature matches: the v1 signature was not made with the secret over this id, timestamp and body → 401",
                "refused webhook-id=3: webhook-signature entry 1 is not v1, followed by the base64 of a 32-byte HMAC-SHA256 → 400",
            ])
        #expect(receiver.lines(.stdout).isEmpty)
        #expect(receiver.stop() == 0)
        try receiver.waitForLine(.stderr, containing: "stopped after 0 verified and 3 refused")
        for line in receiver.lines(.stderr) { #expect(!line.contains(Self.secret.dropFirst(6))) }
    }

    @Test func secretsFromAFileOrTheEnvironmentStayOutOfTheCommandLine() throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write("secrets", "\(Self.secret)\n\(Self.previous)\n")
        let fromFile = try ReceiveTestProcess(["--port", "0", "--secret-file", file])
        let line = try fromFile.waitForLine(.stderr, containing: "listening on")
        #expect(line.contains("2 secrets"), "\(line)")
        let fromEnvironment = try ReceiveTestProcess(["--port", "0"], environment: ["THINGSPACE_LISTENER_RECEIVE_SECRET": Self.secret])
        #expect(try fromEnvironment.waitForLine(.stderr, containing: "listening on").contains("1 secret"))
        for running in [fromFile, fromEnvironment] {
            let commandLine = try String(contentsOfFile: "/proc/\(running.process.processIdentifier)/cmdline", encoding: .utf8)
            #expect(commandLine.contains("receive-test"))
            #expect(!commandLine.contains(Self.secret.dropFirst(6)) && !commandLine.contains(Self.previous.dropFirst(6)))
            #expect(running.stop() == 0)
        }
    }

    @Test func aTakenPortExits1NamingIt() throws {
        let first = try ReceiveTestProcess(["--port", "0", "--secret", Self.secret])
        let port = try first.waitUntilListening()
        let second = try runListenerCommand(["receive-test", "--port", String(port), "--secret", Self.secret], timeout: .seconds(30))
        #expect(second.status == 1)
        #expect(second.stderr.contains("cannot bind 127.0.0.1:\(port)"), "\(second.stderr)")
        #expect(first.stop() == 0)
    }

    // MARK: With the reference library

    @Test(.enabled(if: StandardWebhooksReference.isEnabled, StandardWebhooksReference.skipped))
    func referenceSignedEventsAreAcceptedAndTamperedOrOldOnesRefused() throws {
        let receiver = try ReceiveTestProcess(["--port", "0"], environment: ["THINGSPACE_LISTENER_RECEIVE_SECRET": Self.secret])
        let port = try receiver.waitUntilListening()
        let now = Self.now
        let signature = try StandardWebhooksReference.sign(id: "msg_31", timestamp: now, body: Self.body, secret: Self.secret)
        let accepted = try TestClient(port: port).post(
            "/hooks", json: Self.body, headers: headers(id: "msg_31", timestamp: now, signature: signature))
        #expect(accepted.status == 204, "\(accepted.bodyText)")
        let line = try receiver.waitForLine(.stdout, containing: "webhook-id=msg_31")
        #expect(line.hasPrefix("verified webhook-id=msg_31 timestamp="))
        #expect(line.hasSuffix("type=thingspace.callback id=31 service=DeviceUsage requestId=r-31 status=Success → 204"), "\(line)")

        var tampered = Self.body
        tampered[tampered.firstIndex(of: UInt8(ascii: "3"))!] = UInt8(ascii: "4")  // "id":31 → "id":41
        let forged = try TestClient(port: port).post(
            "/hooks", json: tampered, headers: headers(id: "msg_31", timestamp: now, signature: signature))
        #expect(forged.status == 401)
        let old = now - 600
        let oldSignature = try StandardWebhooksReference.sign(id: "msg_32", timestamp: old, body: Self.body, secret: Self.secret)
        let replayed = try TestClient(port: port).post(
            "/hooks", json: Self.body, headers: headers(id: "msg_32", timestamp: old, signature: oldSignature))
        #expect(replayed.status == 401)
        #expect(replayed.bodyText.contains("too old"), "\(replayed.bodyText)")
        try receiver.waitForLine(.stderr, containing: "refused webhook-id=msg_32: the webhook-timestamp \(old) is too old")
        #expect(try receiver.waitForLine(.stderr, containing: "refused webhook-id=msg_31").contains("no signature matches"))
        #expect(receiver.lines(.stdout).count == 1)
        #expect(receiver.stop() == 0)
    }

    @Test(.enabled(if: StandardWebhooksReference.isEnabled, StandardWebhooksReference.skipped))
    func jsonPrintsTheBodyAndARotationsPreviousSecretIsAccepted() throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write("secrets", "\(Self.secret) \(Self.previous)")
        let receiver = try ReceiveTestProcess(["--port", "0", "--secret-file", file, "--json"])
        let port = try receiver.waitUntilListening()
        let now = Self.now
        let byPrevious = try StandardWebhooksReference.sign(id: "msg_40", timestamp: now, body: Self.body, secret: Self.previous)
        let response = try TestClient(port: port).post(
            "/", json: Self.body, headers: headers(id: "msg_40", timestamp: now, signature: byPrevious))
        #expect(response.status == 204)
        let printed = try receiver.waitForLine(.stdout, containing: "thingspace.callback")
        #expect(Array(printed.utf8) == Self.body)
        #expect(receiver.stop() == 0)
    }

    @Test(.enabled(if: StandardWebhooksReference.isEnabled, StandardWebhooksReference.skipped))
    func failFirstAndStatusAnswerVerifiedEventsAsAsked() throws {
        let receiver = try ReceiveTestProcess(
            ["--port", "0", "--fail-first", "1", "--retry-after", "3"], environment: ["THINGSPACE_LISTENER_RECEIVE_SECRET": Self.secret])
        let port = try receiver.waitUntilListening()
        let now = Self.now
        let signature = try StandardWebhooksReference.sign(id: "msg_50", timestamp: now, body: Self.body, secret: Self.secret)
        let request = headers(id: "msg_50", timestamp: now, signature: signature)
        let first = try TestClient(port: port).post("/", json: Self.body, headers: request)
        #expect(first.status == 500)
        #expect(first.header("Retry-After") == "3")
        let retry = try TestClient(port: port).post("/", json: Self.body, headers: request)
        #expect(retry.status == 204)
        #expect(try receiver.waitForLine(.stdout, containing: "(attempt 2)").hasSuffix("→ 204 (attempt 2)"))
        #expect(receiver.lines(.stdout).first?.hasSuffix("→ 500 (failing 1 of 1 as asked)") == true)
        #expect(receiver.stop() == 0)

        let gone = try ReceiveTestProcess(
            ["--port", "0", "--status", "410"], environment: ["THINGSPACE_LISTENER_RECEIVE_SECRET": Self.secret])
        let gonePort = try gone.waitUntilListening()
        #expect(try TestClient(port: gonePort).post("/", json: Self.body, headers: request).status == 410)
        #expect(gone.stop() == 0)
    }
}
