import CallbackStore
import Foundation
import HTTP1
import HTTPServer
import JSON
import Logging
import Synchronization
import ThingSpace
import Vocabulary

/// Receives ThingSpace callbacks: routes `POST {pathPrefix}/{Service}`,
/// checks source, method, route, media type, JSON and credentials (in that
/// order; README.md "What the listener accepts"), redacts
/// the password, and hands the message to the store's intake. It answers
/// 200 only once the intake reports it durable (the journal's fdatasync).
public final class CallbackHandler: HTTPRequestHandler {
    private let pathPrefix: String
    private let policy: Mutex<IntakePolicy>
    private let writer: any CallbackIntake
    private let metrics: ListenerMetrics
    private let logger: Logger

    public init(
        pathPrefix: String, policy: IntakePolicy, writer: any CallbackIntake, metrics: ListenerMetrics, logger: Logger
    ) {
        self.pathPrefix = pathPrefix
        self.policy = Mutex(policy)
        self.writer = writer
        self.metrics = metrics
        self.logger = logger
    }

    /// Replaces what the intake accepts (SIGHUP). Requests already checked keep their verdict.
    public func update(policy newPolicy: IntakePolicy) { policy.withLock { $0 = newPolicy } }

    var currentPolicy: IntakePolicy { policy.withLock { $0 } }

    public func handle(_ request: HTTPRequest, context: HTTPRequestContext, responder: HTTPResponder) {
        let policy = self.policy.withLock { $0 }
        switch admit(request, context: context, policy: policy) {
        case .reject(let reason, let status, let message, let headers, let service):
            metrics.rejected(reason)
            var log = logger
            log[metadataKey: "connection.id"] = "\(context.connectionID)"
            if let service { log[metadataKey: "callback.service"] = "\(service)" }
            log.notice(
                "callback rejected",
                metadata: [
                    "rejection.reason": "\(reason.rawValue)", "http.status": "\(status.code)",
                    "connection.remote": "\(context.remoteAddress)", "rejection.detail": "\(message)",
                ]
            )
            respond(responder, Self.errorResponse(status, message, headers: headers))
        case .store(let callback):
            let accepted = writer.submit(callback) { [metrics, logger] result in
                switch result {
                case .success(let receipt):
                    metrics.stored(service: callback.service, duplicate: receipt.duplicateOf != nil)
                    logger.debug(
                        "callback stored",
                        metadata: [
                            "callback.service": "\(callback.service)", "callback.request_id": "\(callback.requestID ?? "")",
                            "callback.id": "\(receipt.id)", "callback.duplicate_of": "\(receipt.duplicateOf.map(String.init) ?? "")",
                        ]
                    )
                    self.respond(responder, Self.storedResponse(receipt))
                case .failure:
                    // The writer logs the failure once per episode; nothing was acknowledged.
                    metrics.rejected(.storeUnavailable)
                    self.respond(
                        responder,
                        Self.errorResponse(.serviceUnavailable, "storage unavailable; retry later", headers: ["Retry-After": "5"]))
                }
            }
            if !accepted && writer.isFailing {
                // The store stopped (and said so once): not a full queue.
                metrics.rejected(.storeUnavailable)
                respond(
                    responder, Self.errorResponse(.serviceUnavailable, "storage unavailable; retry later", headers: ["Retry-After": "5"]))
            } else if !accepted {
                metrics.rejected(.queueFull)
                logger.warning("store queue full: answering 503", metadata: ["callback.service": "\(callback.service)"])
                respond(responder, Self.errorResponse(.serviceUnavailable, "busy; retry later", headers: ["Retry-After": "1"]))
            }
        }
    }

    private func respond(_ responder: HTTPResponder, _ response: HTTPResponse) {
        metrics.responded(status: response.status.code)
        responder.respond(response)
    }

    // MARK: Admission

    enum Admission {
        case reject(RejectionReason, HTTPStatus, String, headers: HTTPHeaders = HTTPHeaders(), service: String? = nil)
        case store(NewCallback)
    }

    func admit(_ request: HTTPRequest, context: HTTPRequestContext, policy: IntakePolicy) -> Admission {
        let head = request.head
        // The source first: an address that may not post learns nothing, not even which paths exist.
        let client = policy.clientAddress(peer: context.remoteAddress, forwardedFor: head.headers.values(for: "X-Forwarded-For"))
        guard policy.isSourceAllowed(client) else {
            return .reject(.sourceNotAllowed, .forbidden, "source address not allowed")
        }
        // A method the server implements for no resource is 501 whatever the
        // path (RFC 9110 §9.1), so before the route; a known one is judged per
        // resource below (405).
        guard head.isKnownMethod else {
            return .reject(.methodNotImplemented, .notImplemented, "method not implemented; use POST")
        }
        // The path of the target, whether origin-form or absolute-form (RFC 9112 §3.2.2).
        guard let service = serviceName(in: head.path), policy.services.contains(service) else {
            return .reject(.unknownService, .notFound, "no such callback service")
        }
        guard head.method == "POST" else {
            return .reject(.methodNotAllowed, .methodNotAllowed, "use POST", headers: ["Allow": "POST"], service: service)
        }
        guard Self.isJSONMediaType(head.headers["Content-Type"]) else {
            return .reject(.unsupportedMediaType, .unsupportedMediaType, "Content-Type must be application/json", service: service)
        }
        let envelope: CallbackEnvelope
        do {
            envelope = try CallbackEnvelope(body: request.body)
        } catch {
            return .reject(.invalidJSON, .badRequest, error.description, service: service)
        }
        guard policy.acceptsCredentials(username: envelope.username, password: envelope.password) else {
            return .reject(.badCredentials, .forbidden, "callback credentials do not match", service: service)
        }
        var identity = Array(service.utf8)
        identity.append(0x0A)
        identity.append(contentsOf: envelope.identity)
        return .store(
            NewCallback(
                receivedAt: Timekeeping.wallClockMilliseconds(),
                service: service,
                requestID: envelope.requestID,
                deviceIDs: envelope.deviceIDs,
                status: envelope.status,
                callbackCount: envelope.callbackCount,
                remoteAddress: client,
                dedupKey: SHA256.hexDigest(identity),
                body: envelope.redacting(request.body)
            )
        )
    }

    /// `{pathPrefix}/{Service}` → `Service`; nil for any other path.
    func serviceName(in path: Substring) -> String? {
        // Bytes, not Characters: this runs for every request.
        let bytes = path.utf8
        guard bytes.starts(with: pathPrefix.utf8) else { return nil }
        let rest = bytes.dropFirst(pathPrefix.utf8.count)
        guard rest.first == UInt8(ascii: "/") else { return nil }
        let name = rest.dropFirst()
        guard !name.isEmpty, !name.contains(UInt8(ascii: "/")) else { return nil }
        return String(Substring(name))
    }

    /// `application/json`, any letter case, with optional parameters such as
    /// charset. Byte comparison: this runs for every request.
    static func isJSONMediaType(_ value: String?) -> Bool {
        guard let value else { return false }
        let expected = "application/json".utf8
        var bytes = value.utf8.makeIterator()
        for wanted in expected {
            guard let byte = bytes.next() else { return false }
            if (byte >= 65 && byte <= 90 ? byte | 0x20 : byte) != wanted { return false }
        }
        // Only optional whitespace, then parameters, may follow the type.
        while let byte = bytes.next() {
            if byte == UInt8(ascii: ";") { return true }
            if byte != UInt8(ascii: " ") && byte != UInt8(ascii: "\t") { return false }
        }
        return true
    }

    // MARK: Responses

    static func storedResponse(_ receipt: CommitReceipt) -> HTTPResponse {
        var json = JSONWriter(reservingCapacity: 64)
        json.beginObject()
        json.key("status")
        json.string("stored")
        json.key("id")
        json.integer(receipt.id)
        if let original = receipt.duplicateOf {
            json.key("duplicateOf")
            json.integer(original)
        }
        json.endObject()
        var response = HTTPResponse(status: .ok, contentType: "application/json", body: "")
        response.body = json.bytes
        return response
    }

    static func errorResponse(_ status: HTTPStatus, _ message: String, headers: HTTPHeaders = HTTPHeaders()) -> HTTPResponse {
        var response = HTTPResponse(status: status, contentType: "application/json", body: "")
        var json = JSONWriter(reservingCapacity: message.utf8.count + 16)
        json.beginObject()
        json.key("error")
        json.string(message)
        json.endObject()
        response.body = json.bytes
        for field in headers { response.headers.add(name: field.name, value: field.value) }
        return response
    }
}
