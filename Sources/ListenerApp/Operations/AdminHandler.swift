import CallbackStore
import Delivery
import HTTP1
import HTTPServer
import Synchronization

/// The admin listener (separate port, loopback by default): `/healthz`,
/// `/readyz`, `/metrics`, routed on the target's path (origin- or absolute-form).
final class AdminHandler: HTTPRequestHandler {
    /// What `/readyz` reports; each part is asked when the request arrives.
    struct Probes: Sendable {
        var isServing: @Sendable () -> Bool
        var isStoreWritable: @Sendable () -> Bool
        /// nil when registration is off.
        var isRegistered: (@Sendable () -> Bool)?
        /// How far the store's index trails its acknowledgements; nil for a store without one.
        var indexLag: @Sendable () -> (records: Int64, milliseconds: Int64)? = { nil }
        /// The delivery destinations' state: detail only; a destination that is down never makes
        /// the service unready (intake must stay up).
        var deliveries: @Sendable () -> [DestinationStatus] = { [] }
    }

    private let metrics: ListenerMetrics
    private let probes: Probes

    init(metrics: ListenerMetrics, probes: Probes) {
        self.metrics = metrics
        self.probes = probes
    }

    func handle(_ request: HTTPRequest, context: HTTPRequestContext, responder: HTTPResponder) {
        guard request.head.method == "GET" || request.head.method == "HEAD" else {
            // 501 for a method implemented nowhere (RFC 9110 §9.1), 405 for a known one.
            let status: HTTPStatus = request.head.isKnownMethod ? .methodNotAllowed : .notImplemented
            responder.respond(HTTPResponse(status: status, headers: ["Allow": "GET, HEAD"]))
            return
        }
        switch request.head.path {
        case "/healthz":
            let serving = probes.isServing()
            responder.respond(text(serving ? .ok : .serviceUnavailable, serving ? "serving\n" : "draining\n"))
        case "/readyz":
            var problems: [String] = []
            if !probes.isServing() { problems.append("draining") }
            if !probes.isStoreWritable() { problems.append("store not writable") }
            if let registered = probes.isRegistered, !registered() { problems.append("not registered with ThingSpace") }
            // Detail, not a verdict: callbacks are acknowledged (durable) while the index catches up.
            var detail = ""
            if let lag = probes.indexLag() {
                metrics.setIndexLag(records: lag.records, milliseconds: lag.milliseconds)
                detail = "index lag: \(lag.records) records, \(lag.milliseconds) ms\n"
            }
            for status in probes.deliveries() {
                detail += "delivery \(status.name): \(status.inFlight) in flight, lag \(status.lagMilliseconds) ms"
                detail += ", \(status.backlog.pending) pending, \(status.backlog.retrying) retrying, \(status.backlog.dead) dead"
                if let disabled = status.disabled { detail += ", disabled (\(disabled.reason))" }
                if status.throttled { detail += ", waiting for Retry-After" }
                detail += "\n"
            }
            responder.respond(
                problems.isEmpty
                    ? text(.ok, "ready\n" + detail) : text(.serviceUnavailable, problems.joined(separator: "; ") + "\n" + detail)
            )
        case "/metrics":
            if let lag = probes.indexLag() { metrics.setIndexLag(records: lag.records, milliseconds: lag.milliseconds) }
            _ = probes.deliveries()  // brings the delivery gauges up to date
            responder.respond(
                HTTPResponse(
                    status: .ok, headers: ["Content-Type": "text/plain; version=0.0.4; charset=utf-8"],
                    body: metrics.exposition()
                )
            )
        default:
            responder.respond(text(.notFound, "not found\n"))
        }
    }

    private func text(_ status: HTTPStatus, _ body: String) -> HTTPResponse {
        HTTPResponse(status: status, contentType: "text/plain; charset=utf-8", body: body)
    }
}
