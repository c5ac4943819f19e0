import Delivery
import Foundation
import HTTP1
import HTTPServer
import Logging
import Synchronization
import TestSupport
import Testing

/// The receiver receive-test runs, on a real server on 127.0.0.1, fed requests signed by the
/// sender's own `WebhookMessage`: its answers, and the lines it reports.
@Suite struct WebhookVerifierReceiverTests {
    static let secret = WebhookSecret(key: Array(100..<132))
    static let body = Array(
        #"{"type":"thingspace.callback","timestamp":"2026-05-28T20:26:40.000Z","data":{"id":17,"receivedAt":"2026-05-28T20:26:40.000Z","service":"CarrierService","requestId":"req 1","deviceIds":[],"status":"Success","callbackCount":1,"duplicateOf":null,"body":{}}}"#
            .utf8)

    /// A receiver on a free port, its reports kept in order.
    final class Running: Sendable {
        private final class Reports: Sendable { let list = Mutex<[WebhookReceiver.Report]>([]) }
        private let reports: Reports
        let server: HTTPServer
        var port: Int { server.localPort ?? -1 }
        var seen: [WebhookReceiver.Report] { reports.list.withLock { $0 } }

        init(secrets: [WebhookSecret] = [secret], behaviour: WebhookReceiver.Behaviour = .init(), now: Int64? = nil) throws {
            let reports = Reports()
            self.reports = reports
            var configuration = HTTPServerConfiguration()
            configuration.port = 0
            configuration.ioQueueCount = 1
            let handler = WebhookReceiver(
                verifier: WebhookVerifier(secrets: secrets), behaviour: behaviour, now: { now ?? WebhookVerifier.currentUnixSeconds() },
                report: { report in reports.list.withLock { $0.append(report) } })
            server = HTTPServer(
                configuration: configuration, handler: handler, logger: Logger(label: "receiver") { _ in SwiftLogNoOpLogHandler() })
            try server.start()
        }

        deinit { server.shutdown(gracePeriod: .zero) {} }
    }

    func post(
        _ port: Int, id: Int64 = 17, timestamp: Int64 = WebhookVerifier.currentUnixSeconds(), body: [UInt8] = body,
        secrets: [WebhookSecret] = [secret], edit: ([String]) -> [String] = { $0 }
    ) throws -> ClientResponse {
        let headers = WebhookMessage.headers(id: id, timestamp: timestamp, body: body, secrets: secrets).map { "\($0.name): \($0.value)" }
        return try TestClient(port: port).post("/hooks", json: body, headers: edit(headers))
    }

    @Test func aSignedEventIsAnswered204AndReportedInOneLine() throws {
        let receiver = try Running()
        let response = try post(receiver.port)
        #expect(response.status == 204)
        #expect(response.body.isEmpty)
        let reports = receiver.seen
        guard case .accepted(let event) = try #require(reports.first) else {
            Issue.record("\(reports)")
            return
        }
        #expect(reports.count == 1)
        #expect(event.webhook.id == "17")
        #expect(event.attempt == 1)
        #expect(event.body == Self.body)
        #expect(
            event.summary
                == EventSummary(
                    type: "thingspace.callback", timestamp: "2026-05-28T20:26:40.000Z", dataID: "17", service: "CarrierService",
                    requestID: "req 1", status: "Success"))
        let line = event.line
        #expect(line.hasPrefix("verified webhook-id=17 timestamp=20"))
        #expect(line.hasSuffix(#"type=thingspace.callback id=17 service=CarrierService requestId="req 1" status=Success → 204"#), "\(line)")
        #expect(!line.contains("\n"))
    }

    @Test func aTamperedBodyIs401AndAMissingHeader400() throws {
        let receiver = try Running()
        var tampered = Self.body
        tampered[tampered.count - 5] = UInt8(ascii: "]")  // `{}}}` → `{]}}`: what was signed is not what is sent
        let headers = WebhookMessage.headers(
            id: 17, timestamp: WebhookVerifier.currentUnixSeconds(), body: Self.body, secrets: [Self.secret]
        )
        .map { "\($0.name): \($0.value)" }
        let forged = try TestClient(port: receiver.port).post("/hooks", json: tampered, headers: headers)
        #expect(forged.status == 401)
        #expect(forged.bodyText.contains("no signature matches"))
        let missing = try post(receiver.port) { $0.filter { !$0.hasPrefix("webhook-timestamp") } }
        #expect(missing.status == 400)
        #expect(missing.bodyText == "the webhook-timestamp header is missing\n")
        let lines = receiver.seen.map(\.line)
        #expect(lines.count == 2)
        #expect(lines.first?.hasPrefix("refused webhook-id=17: no signature matches") == true)
        #expect(lines.first?.hasSuffix("→ 401") == true)
        #expect(lines.last == "refused webhook-id=17: the webhook-timestamp header is missing → 400")
        for line in lines { #expect(!line.contains(Self.secret.encoded.dropFirst(6))) }
    }

    @Test func oldAndNewTimestampsAre401() throws {
        let now: Int64 = 1_780_000_000
        let receiver = try Running(now: now)
        #expect(try post(receiver.port, timestamp: now - 301).status == 401)
        #expect(try post(receiver.port, timestamp: now + 301).status == 401)
        #expect(try post(receiver.port, timestamp: now - 300).status == 204)
        let lines = receiver.seen.map(\.line)
        #expect(lines.count == 3)
        #expect(lines.first?.contains("too old") == true)
        #expect(lines.dropFirst().first?.contains("too new") == true)
    }

    @Test func aVerifiedBodyThatIsNotAJSONObjectIs400() throws {
        let receiver = try Running()
        let response = try post(receiver.port, body: Array("[1,2]".utf8))
        #expect(response.status == 400)
        #expect(receiver.seen.map(\.line) == ["refused webhook-id=17: the signature matches but the body is not a JSON object → 400"])
    }

    @Test func onlyPOSTIsAccepted() throws {
        let receiver = try Running()
        let response = try TestClient(port: receiver.port).get("/hooks")
        #expect(response.status == 405)
        #expect(response.header("Allow") == "POST")
        #expect(receiver.seen.map(\.line) == ["refused: GET is not POST → 405"])
    }

    @Test func theFirstEventsFailAsAskedAndRetriesAreCounted() throws {
        let receiver = try Running(behaviour: .init(failFirst: 2, retryAfterSeconds: 7))
        let answers = try (0..<3).map { _ in try post(receiver.port) }
        #expect(answers.map(\.status) == [500, 500, 204])
        #expect(answers.map { $0.header("Retry-After") } == ["7", "7", nil])
        let other = try post(receiver.port, id: 18)
        #expect(other.status == 204)
        let lines = receiver.seen.map(\.line)
        #expect(lines.count == 4)
        #expect(lines[0].hasSuffix("→ 500 (failing 1 of 2 as asked)"), "\(lines[0])")
        #expect(lines[1].hasSuffix("→ 500 (attempt 2, failing 2 of 2 as asked)"), "\(lines[1])")
        #expect(lines[2].hasSuffix("→ 204 (attempt 3)"), "\(lines[2])")
        #expect(lines[3].hasPrefix("verified webhook-id=18 "))
        #expect(lines[3].hasSuffix("→ 204"))
    }

    @Test func aFixedStatusAnswersEveryVerifiedEventButNotARefusedOne() throws {
        let receiver = try Running(behaviour: .init(status: 503, retryAfterSeconds: 30))
        let first = try post(receiver.port)
        #expect(first.status == 503)
        #expect(first.header("Retry-After") == "30")
        #expect(try post(receiver.port, id: 18).status == 503)
        let refused = try post(receiver.port, secrets: [WebhookSecret(key: Array(repeating: 9, count: 32))])
        #expect(refused.status == 401)
        #expect(refused.header("Retry-After") == nil)
        let gone = try Running(behaviour: .init(status: 410))
        let answer = try post(gone.port)
        #expect(answer.status == 410)
        #expect(answer.header("Retry-After") == nil)
        #expect(gone.seen.first?.line.hasSuffix("→ 410 (answering 410 as asked)") == true)
        let accepted = try Running(behaviour: .init(status: 200, retryAfterSeconds: 5))
        let ok = try post(accepted.port)
        #expect(ok.status == 200)
        #expect(ok.header("Retry-After") == nil)  // only on answers that are not 2xx
    }

    @Test func aRotatingSenderIsVerifiedWithEitherSecretAndSaysWhich() throws {
        let previous = WebhookSecret(key: Array(repeating: 0x42, count: 24))
        let receiver = try Running(secrets: [Self.secret, previous])
        #expect(try post(receiver.port, secrets: [Self.secret, previous]).status == 204)
        #expect(try post(receiver.port, id: 18, secrets: [previous]).status == 204)
        let lines = receiver.seen.map(\.line)
        #expect(lines.first?.hasSuffix("→ 204") == true)
        #expect(lines.last?.hasSuffix("→ 204 (signed with secret 2)") == true, "\(lines)")
    }

    @Test func valuesThatCouldForgeALineAreQuoted() throws {
        let body = Array(#"{"type":"x\ny","data":{"id":"a b","requestId":"\u001b[31m","status":"é"}}"#.utf8)
        let receiver = try Running()
        #expect(try post(receiver.port, body: body).status == 204)
        let line = try #require(receiver.seen.first?.line)
        #expect(line.contains(#"type="x\u000ay" id="a b" requestId="\u001b[31m" status="é""#), "\(line)")
        #expect(!line.contains("\n"))
        #expect(!line.utf8.contains(0x1B))
    }

    @Test func summariesReadWhatIsThereAndNothingElse() {
        #expect(EventSummary(body: Array("{}".utf8)) == EventSummary())
        #expect(EventSummary(body: Array(#"{"data":[1]}"#.utf8)) == EventSummary())
        #expect(
            EventSummary(body: Array(#"{"type":1.5e3,"data":{"id":-4,"status":null,"service":{"a":1}}}"#.utf8))
                == EventSummary(type: "1.5e3", dataID: "-4"))
        #expect(EventSummary(body: Array(#"{"a":1,"a":2}"#.utf8)) == nil)
        #expect(EventSummary(body: Array("not json".utf8)) == nil)
        #expect(EventSummary(body: []) == nil)
    }
}
