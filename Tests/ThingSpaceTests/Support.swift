import Dispatch
import Foundation
import HTTP1
import HTTPServer
import Logging
import Synchronization
import TestSupport
import Testing
import ThingSpace
import ThingSpaceSandbox

/// Secrets used by the tests: distinctive, so a leak is unmistakable.
enum TestSecrets {
    static let credentials = ThingSpaceCredentials(
        clientID: "client-id-1", clientSecret: "CLIENT-SECRET-7f3a",
        username: "uws-user", password: "UWS-PASSWORD-91bd")
    static let callbackPassword = "CALLBACK-PASSWORD-44e0"
    static let accountName = "0012345678-00001"
}

/// A sandbox with the test credentials, a client pointed at it, and a log
/// capture shared by both.
final class SandboxFixture {
    let logs = LogCapture()
    let sandbox: ThingSpaceSandbox
    let clientConfiguration: ThingSpaceClientConfiguration

    init(
        sandbox configure: (inout SandboxConfiguration) -> Void = { _ in },
        client configureClient: (inout ThingSpaceClientConfiguration) -> Void = { _ in }
    ) throws {
        var configuration = SandboxConfiguration()
        configuration.credentials = TestSecrets.credentials
        configuration.accountNames = [TestSecrets.accountName, "00 12/34?x"]
        configuration.deliverSamples = false
        configure(&configuration)
        sandbox = ThingSpaceSandbox(configuration: configuration, logger: logs.logger("sandbox"))
        try sandbox.start()
        var client = sandbox.clientConfiguration
        client.retryBaseDelay = .milliseconds(1)
        client.retryMaxDelay = .milliseconds(20)
        client.connectTimeout = .seconds(5)
        client.totalTimeout = .seconds(10)
        configureClient(&client)
        clientConfiguration = client
    }

    func makeClient(credentials: ThingSpaceCredentials = TestSecrets.credentials) -> ConnectivityCallbacksClient {
        ConnectivityCallbacksClient(configuration: clientConfiguration, credentials: credentials, logger: logs.logger("client"))
    }

    func entries(_ route: SandboxRoute) -> [SandboxJournalEntry] {
        sandbox.journal.filter { $0.route == route }
    }

    /// Stops the sandbox and checks that no secret reached any log line:
    /// the configured secrets, callback passwords, and every token value the
    /// journal saw on the wire.
    func finish(extraSecrets: [String] = [], sourceLocation: SourceLocation = #_sourceLocation) {
        let journal = sandbox.journal
        sandbox.stop()
        var secrets = [TestSecrets.credentials.clientSecret, TestSecrets.credentials.password, TestSecrets.callbackPassword]
        secrets += extraSecrets
        for entry in journal {
            if let authorization = entry.headers["Authorization"] {
                secrets.append(String(authorization.split(separator: " ").last ?? ""))
            }
            if let session = entry.headers["VZ-M2M-Token"] { secrets.append(session) }
        }
        let lines = logs.lines
        if ProcessInfo.processInfo.environment["PRINT_TEST_LOGS"] != nil { print(lines.joined(separator: "\n")) }
        #expect(!lines.isEmpty, "the test should have produced log lines", sourceLocation: sourceLocation)
        for secret in Set(secrets) where !secret.isEmpty {
            let leaks = lines.filter { $0.contains(secret) }
            #expect(leaks.isEmpty, "secret leaked into logs: \(leaks)", sourceLocation: sourceLocation)
        }
    }
}

/// A callback listener for delivery tests: records every request and
/// answers with the status `answer` picks (optionally after a delay).
final class TestListener: Sendable {
    let server: HTTPServer
    private let received = RequestLog()

    final class RequestLog: Sendable {
        let list = Mutex<[HTTPRequest]>([])
    }

    init(logger: Logger, answer: @escaping @Sendable (_ index: Int) -> (status: Int, delay: Duration)) throws {
        var configuration = HTTPServerConfiguration()
        configuration.port = 0
        configuration.ioQueueCount = 1
        let received = self.received
        server = HTTPServer(
            configuration: configuration,
            handler: HTTPClosureHandler { request, _, responder in
                let index = received.list.withLock { list in
                    list.append(request)
                    return list.count - 1
                }
                let (status, delay) = answer(index)
                let response = HTTPResponse(status: HTTPStatus(code: status, reason: "Test"), contentType: "text/plain", body: "ok")
                if delay > .zero {
                    let milliseconds = Int(delay.components.seconds) * 1000 + Int(delay.components.attoseconds / 1_000_000_000_000_000)
                    DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(milliseconds)) {
                        responder.respond(response)
                    }
                } else {
                    responder.respond(response)
                }
            }, logger: logger)
        try server.start()
    }

    var url: String { "http://127.0.0.1:\(server.localPort ?? 0)/callbacks/CarrierService" }
    var requests: [HTTPRequest] { received.list.withLock { $0 } }

    func stop() {
        let done = DispatchSemaphore(value: 0)
        server.shutdown(gracePeriod: .milliseconds(200)) { done.signal() }
        _ = done.wait(timeout: .now() + .seconds(3))
    }
}

func jsonObject(_ bytes: [UInt8]) -> [String: Any]? {
    (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any]
}
