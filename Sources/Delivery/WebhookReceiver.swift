// The other end of a destination, for trying delivery on one machine (`receive-test`): an HTTP
// handler that verifies every request as a Standard Webhooks receiver must, answers the way it is
// told to (fail the first N events, always answer some status, send Retry-After) so that a
// sender's retries can be watched, and reports each event or refusal as one line. Here, not in
// the executable, so that its answers are tested on a real socket with the sender's own signing.
import HTTP1
import HTTPServer
import JSON
import Synchronization
import Vocabulary

public final class WebhookReceiver: HTTPRequestHandler, Sendable {
    /// How verified events are answered; refused requests always get 400 or 401.
    public struct Behaviour: Sendable, Equatable {
        /// Answer 500 to this many verified events first (every attempt counts).
        public var failFirst = 0
        /// The answer to every other verified event; nil answers 204.
        public var status: Int?
        /// `Retry-After` (seconds) on every answer to a verified event that is not 2xx.
        public var retryAfterSeconds: Int?

        public init(failFirst: Int = 0, status: Int? = nil, retryAfterSeconds: Int? = nil) {
            self.failFirst = failFirst
            self.status = status
            self.retryAfterSeconds = retryAfterSeconds
        }
    }

    /// A verified event and how it was answered.
    public struct Event: Sendable, Equatable {
        public var webhook: VerifiedWebhook
        /// 1 at the first arrival of this `webhook-id`, 2 at its first retry, and so on.
        public var attempt: Int
        /// Verified events received so far, this one included.
        public var sequence: Int
        public var summary: EventSummary
        public var body: [UInt8]
        public var answer: Int
        /// Why the answer is what it is, when it was asked for (`failing 1 of 2 as asked`).
        public var note: String?

        /// `verified webhook-id=17 timestamp=… type=… id=17 service=… requestId=… status=… → 204`.
        public var line: String {
            var parts = ["verified", "webhook-id=" + WebhookReceiver.printable(webhook.id)]
            parts.append("timestamp=" + WebhookReceiver.isoSeconds(webhook.timestamp))
            let fields: [(String, String?)] = [
                ("type", summary.type), ("id", summary.dataID), ("service", summary.service),
                ("requestId", summary.requestID), ("status", summary.status),
            ]
            for case (let name, let value?) in fields { parts.append(name + "=" + WebhookReceiver.printable(value)) }
            var line = parts.joined(separator: " ") + " → \(answer)"
            var notes: [String] = []
            if attempt > 1 { notes.append("attempt \(attempt)") }
            if webhook.secretIndex > 0 { notes.append("signed with secret \(webhook.secretIndex + 1)") }
            if let note { notes.append(note) }
            if !notes.isEmpty { line += " (" + notes.joined(separator: ", ") + ")" }
            return line
        }
    }

    /// A request that is not a verified event, and its answer.
    public struct Refusal: Sendable, Equatable {
        /// The request's `webhook-id`, when it has one.
        public var id: String?
        public var reason: String
        public var answer: Int

        /// `refused webhook-id=17: no signature matches: … → 401`.
        public var line: String {
            let who = id.map { " webhook-id=" + WebhookReceiver.printable($0) } ?? ""
            return "refused\(who): \(reason) → \(answer)"
        }
    }

    public enum Report: Sendable, Equatable {
        case accepted(Event)
        case refused(Refusal)

        public var line: String {
            switch self {
            case .accepted(let event): event.line
            case .refused(let refusal): refusal.line
            }
        }
    }

    public let verifier: WebhookVerifier
    public let behaviour: Behaviour
    private let now: @Sendable () -> Int64
    private let report: @Sendable (Report) -> Void
    /// Verified events so far, and arrivals per `webhook-id` (forgotten past `rememberedIDs`).
    private let counts = Mutex<(sequence: Int, attempts: [String: Int])>((0, [:]))
    private static let rememberedIDs = 100_000

    /// `report` is called once per request, on the connection's queue, before the answer is sent.
    /// `now` gives Unix seconds (the wall clock unless a test sets it).
    public init(
        verifier: WebhookVerifier, behaviour: Behaviour = Behaviour(),
        now: @escaping @Sendable () -> Int64 = { WebhookVerifier.currentUnixSeconds() },
        report: @escaping @Sendable (Report) -> Void
    ) {
        self.verifier = verifier
        self.behaviour = behaviour
        self.now = now
        self.report = report
    }

    public func handle(_ request: HTTPRequest, context: HTTPRequestContext, responder: HTTPResponder) {
        let id = request.head.headers[WebhookVerifier.idHeader].map(WebhookVerifier.excerpt)
        guard request.head.method == "POST" else {
            let refusal = Refusal(id: id, reason: "\(request.head.method) is not POST", answer: 405)
            report(.refused(refusal))
            var response = Self.textResponse(refusal.answer, "webhooks are POSTed here\n")
            response.headers.add(name: "Allow", value: "POST")
            responder.respond(response)
            return
        }
        let webhook: VerifiedWebhook
        do {
            webhook = try verifier.verify(headers: request.head.headers, body: request.body, now: now())
        } catch {
            refuse(Refusal(id: id, reason: error.description, answer: error.isMalformedRequest ? 400 : 401), responder)
            return
        }
        guard let summary = EventSummary(body: request.body) else {
            refuse(Refusal(id: id, reason: "the signature matches but the body is not a JSON object", answer: 400), responder)
            return
        }
        let (sequence, attempt) = counts.withLock { counts in
            counts.sequence += 1
            if counts.attempts.count >= Self.rememberedIDs && counts.attempts[webhook.id] == nil { counts.attempts.removeAll() }
            let attempt = (counts.attempts[webhook.id] ?? 0) + 1
            counts.attempts[webhook.id] = attempt
            return (counts.sequence, attempt)
        }
        var answer = behaviour.status ?? 204
        var note: String? = nil
        if sequence <= behaviour.failFirst {
            answer = 500
            note = "failing \(sequence) of \(behaviour.failFirst) as asked"
        } else if let status = behaviour.status {
            note = "answering \(status) as asked"
        }
        let event = Event(
            webhook: webhook, attempt: attempt, sequence: sequence, summary: summary, body: request.body, answer: answer, note: note)
        report(.accepted(event))
        var response =
            answer == 204
            ? HTTPResponse(status: .noContent)
            : Self.textResponse(answer, "verified webhook \(Self.printable(webhook.id)); answering \(answer)\n")
        if !(200...299).contains(answer), let seconds = behaviour.retryAfterSeconds {
            response.headers.add(name: "Retry-After", value: String(seconds))
        }
        responder.respond(response)
    }

    private func refuse(_ refusal: Refusal, _ responder: HTTPResponder) {
        report(.refused(refusal))
        responder.respond(Self.textResponse(refusal.answer, refusal.reason + "\n"))
    }

    // MARK: Text

    static func textResponse(_ code: Int, _ text: String) -> HTTPResponse {
        HTTPResponse(status: HTTPStatus(code: code, reason: reasonPhrase(code)), contentType: "text/plain; charset=utf-8", body: text)
    }

    static func reasonPhrase(_ code: Int) -> String {
        switch code {
        case 200: "OK"
        case 201: "Created"
        case 202: "Accepted"
        case 204: "No Content"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 410: "Gone"
        case 413: "Content Too Large"
        case 422: "Unprocessable Content"
        case 429: "Too Many Requests"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        default: "Status \(code)"
        }
    }

    /// A value as it goes into a line: as it is when it is plain visible ASCII, else a JSON string
    /// literal (so a value can neither hide in spaces nor start a line of its own).
    static func printable(_ text: String) -> String {
        if !text.isEmpty, text.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\"") }) { return text }
        var quoted: [UInt8] = []
        JSONString.append(text, to: &quoted)
        return String(decoding: quoted, as: UTF8.self)
    }

    /// `2026-05-03T03:09:37Z`, or the bare number for a time outside years 0 to 9999.
    static func isoSeconds(_ seconds: Int64) -> String {
        guard (-62_167_219_200...253_402_300_799).contains(seconds) else { return String(seconds) }
        let text = Timekeeping.iso8601(milliseconds: seconds * 1000)
        return text.hasSuffix(".000Z") ? String(text.dropLast(5)) + "Z" : text
    }
}

/// What the receiver prints of an event body: the Standard Webhooks `type` and `timestamp`, and
/// from `data` (an exported callback) its `id`, `service`, `requestId` and `status`. Members that
/// are absent, or not strings or numbers, are nil.
public struct EventSummary: Sendable, Equatable {
    public var type: String?
    public var timestamp: String?
    public var dataID: String?
    public var service: String?
    public var requestID: String?
    public var status: String?

    public init(
        type: String? = nil, timestamp: String? = nil, dataID: String? = nil, service: String? = nil, requestID: String? = nil,
        status: String? = nil
    ) {
        self.type = type
        self.timestamp = timestamp
        self.dataID = dataID
        self.service = service
        self.requestID = requestID
        self.status = status
    }

    /// nil when `body` is not one strict JSON object.
    public init?(body: [UInt8]) {
        var summary = EventSummary()
        let parsed = body.withUnsafeBufferPointer { bytes -> Bool in
            var scanner = JSONScanner(bytes)
            do {
                var data: Range<Int>?
                try scanner.scanTopLevelObject { name, range throws(JSONScanner.Failure) in
                    switch name {
                    case "type": summary.type = Self.scalar(bytes, range)
                    case "timestamp": summary.timestamp = Self.scalar(bytes, range)
                    case "data": data = range
                    default: break
                    }
                }
                if let data, bytes[data.lowerBound] == UInt8(ascii: "{") {
                    let inner = UnsafeBufferPointer(rebasing: bytes[data])
                    var dataScanner = JSONScanner(inner)
                    try dataScanner.scanTopLevelObject { name, range throws(JSONScanner.Failure) in
                        switch name {
                        case "id": summary.dataID = Self.scalar(inner, range)
                        case "service": summary.service = Self.scalar(inner, range)
                        case "requestId": summary.requestID = Self.scalar(inner, range)
                        case "status": summary.status = Self.scalar(inner, range)
                        default: break
                        }
                    }
                }
                return true
            } catch {
                return false
            }
        }
        guard parsed else { return nil }
        self = summary
    }

    /// A string's text or a number's digits; nil for anything else.
    private static func scalar(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> String? {
        guard let first = range.first.map({ bytes[$0] }) else { return nil }
        if first == UInt8(ascii: "\"") {
            var scanner = JSONScanner(UnsafeBufferPointer(rebasing: bytes[range]))
            return try? scanner.scanString()
        }
        guard first == UInt8(ascii: "-") || (first >= 0x30 && first <= 0x39) else { return nil }
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self)
    }
}
