import ArgumentParser
import Delivery
import Foundation
import HTTP1
import HTTPServer
import ListenerApp
import Logging
import Synchronization

/// The other end of `send-test` and of a destination: a local endpoint that checks Standard
/// Webhooks signatures and prints each event, like `stripe listen`.
struct ReceiveTest: AsyncParsableCommand {
    static let secretVariable = "THINGSPACE_LISTENER_RECEIVE_SECRET"

    static let configuration = CommandConfiguration(
        commandName: "receive-test",
        abstract: "Receive signed webhooks on a local endpoint, verify them (Standard Webhooks) and print each event.",
        discussion: """
            Every POST (any path) must carry webhook-id, webhook-timestamp (Unix seconds, within \
            --tolerance of now) and webhook-signature (v1, + base64 HMAC-SHA256 of \
            "{id}.{timestamp}.{body}"; several space-separated, one must match a secret). \
            A verified event is printed on stdout as one line (--json: its body) and answered 204, \
            or as --fail-first and --status say; a refused one is printed on stderr with the reason \
            and answered 400 (malformed) or 401 (old, new or wrong signature). \
            The secret (whsec_ + base64) comes from --secret-file or --secret (repeatable, e.g. the \
            new and the previous secret during a rotation), else from $\(secretVariable) \
            (whitespace-separated). --secret is visible to every user of the machine in `ps`: \
            prefer --secret-file or the environment variable.
            """
    )

    @Option(help: "Address to listen on.") var host: String = "127.0.0.1"
    @Option(help: ArgumentHelp("Port to listen on (0 picks a free one; the line \"listening on …\" names it).", valueName: "port"))
    var port: Int = 9400
    @Option(
        help: ArgumentHelp(
            "A webhook secret (whsec_…). Visible to other users in `ps`: prefer --secret-file or $\(secretVariable).",
            valueName: "whsec_…"))
    var secret: [String] = []
    @Option(
        name: .customLong("secret-file"),
        help: ArgumentHelp("Read secrets from this file (whitespace-separated).", valueName: "path"))
    var secretFile: [String] = []
    @Option(help: ArgumentHelp("Seconds a webhook-timestamp may be before or after now.", valueName: "seconds"))
    var tolerance: Int = 300
    @Flag(help: "Print each verified event's body (one JSON document a line) instead of a summary line.") var json = false
    @Option(
        name: .customLong("fail-first"),
        help: ArgumentHelp("Answer 500 to the first N verified events (every attempt counts).", valueName: "N"))
    var failFirst: Int = 0
    @Option(help: ArgumentHelp("Answer CODE to every other verified event (e.g. 410, or 503 with --retry-after).", valueName: "code"))
    var status: Int?
    @Option(
        name: .customLong("retry-after"),
        help: ArgumentHelp("Send Retry-After: SECONDS with every non-2xx answer to a verified event.", valueName: "seconds"))
    var retryAfter: Int?

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0 to 65535") }
        guard (0...31_536_000).contains(tolerance) else { throw ValidationError("--tolerance must be 0 to 31536000 seconds") }
        guard failFirst >= 0 else { throw ValidationError("--fail-first must be 0 or more") }
        if let status, !(200...599).contains(status) { throw ValidationError("--status must be 200 to 599") }
        if let retryAfter {
            guard retryAfter >= 0 else { throw ValidationError("--retry-after must be 0 or more seconds") }
            guard failFirst > 0 || !(200...299).contains(status ?? 204) else {
                throw ValidationError("--retry-after goes on non-2xx answers: give --fail-first or a --status of 300 or more")
            }
        }
    }

    /// The secrets, from --secret and --secret-file, else the environment. Errors never quote one.
    func loadSecrets() throws -> [WebhookSecret] {
        var texts: [(source: String, text: String)] = secret.enumerated().map { ("--secret #\($0.offset + 1)", $0.element) }
        for path in secretFile {
            guard let contents = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ValidationError("cannot read --secret-file \(path)")
            }
            let words = contents.split(whereSeparator: \.isWhitespace).map(String.init)
            guard !words.isEmpty else { throw ValidationError("--secret-file \(path) is empty") }
            texts += words.enumerated().map { ("secret #\($0.offset + 1) in \(path)", $0.element) }
        }
        if texts.isEmpty, let variable = ProcessInfo.processInfo.environment[Self.secretVariable] {
            texts = variable.split(whereSeparator: \.isWhitespace).enumerated().map {
                ("secret #\($0.offset + 1) in $\(Self.secretVariable)", String($0.element))
            }
        }
        guard !texts.isEmpty else {
            throw ValidationError("no secret: give --secret-file PATH, $\(Self.secretVariable), or --secret")
        }
        return try texts.map { source, text in
            guard let secret = WebhookSecret(text) else {
                throw ValidationError("\(source) is not a Standard Webhooks secret (whsec_ + base64 of 24 to 64 bytes)")
            }
            return secret
        }
    }

    func run() async throws {
        let signals = await ProcessSignals()
        let secrets = try loadSecrets()
        bootstrapLogging(ListenerConfiguration.Logging(level: .warning))
        let output = ReceiveOutput()
        let json = json
        let receiver = WebhookReceiver(
            verifier: WebhookVerifier(secrets: secrets, tolerance: .seconds(tolerance)),
            behaviour: WebhookReceiver.Behaviour(failFirst: failFirst, status: status, retryAfterSeconds: retryAfter)
        ) { report in
            switch report {
            case .accepted(let event):
                // A verified body is one JSON object, where CR and LF can only be whitespace: one line each.
                output.accepted(json ? event.body.map { $0 == 0x0A || $0 == 0x0D ? 0x20 : $0 } : Array(event.line.utf8))
            case .refused:
                output.refused(report.line)
            }
        }
        var settings = HTTPServerConfiguration()
        settings.host = host
        settings.port = port
        settings.ioQueueCount = 1
        // A destination's body is an exported callback (up to the listener's 1 MiB) in an envelope.
        settings.limits.maxBodyBytes = 16 * 1024 * 1024
        let server = HTTPServer(configuration: settings, handler: receiver, logger: Logger(label: "receive-test"))
        do {
            try server.start()
        } catch {
            FileHandle.standardError.write(Data("thingspace-listener: receive-test: \(error)\n".utf8))
            throw ExitCode(1)
        }
        let address = host.contains(":") ? "[\(host)]" : host
        let keys = secrets.count == 1 ? "1 secret" : "\(secrets.count) secrets"
        output.note(
            "receive-test: listening on http://\(address):\(server.localPort ?? port)/ (Standard Webhooks, \(keys), tolerance \(tolerance) s); Ctrl-C stops"
        )
        _ = await signals.waitForStop()
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            server.shutdown(gracePeriod: .seconds(2)) { done.resume() }
        }
        let (verified, refused) = output.counts
        output.note("receive-test: stopped after \(verified) verified and \(refused) refused")
    }
}

/// Lines to stdout (verified events) and stderr (everything else), written whole and at once:
/// a test or a pipe sees each line as soon as the event is answered.
private final class ReceiveOutput: Sendable {
    private let state = Mutex<(verified: Int, refused: Int)>((0, 0))

    var counts: (verified: Int, refused: Int) { state.withLock { $0 } }

    func accepted(_ line: [UInt8]) {
        state.withLock { state in
            state.verified += 1
            try? FileHandle.standardOutput.write(contentsOf: Data(line + [0x0A]))
        }
    }

    func refused(_ line: String) {
        state.withLock { state in
            state.refused += 1
            try? FileHandle.standardError.write(contentsOf: Data((line + "\n").utf8))
        }
    }

    func note(_ line: String) {
        state.withLock { _ in try? FileHandle.standardError.write(contentsOf: Data((line + "\n").utf8)) }
    }
}
