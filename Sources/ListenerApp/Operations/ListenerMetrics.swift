import CoreMetrics
import Foundation
import Prometheus
import Synchronization
import Vocabulary

/// Why an intake request was refused; a metric dimension and a log field.
public enum RejectionReason: String, Sendable, CaseIterable {
    case sourceNotAllowed = "source_not_allowed"
    case unsupportedMediaType = "unsupported_media_type"
    case invalidJSON = "invalid_json"
    case badCredentials = "bad_credentials"
    case unknownService = "unknown_service"
    case methodNotAllowed = "method_not_allowed"
    case methodNotImplemented = "method_not_implemented"
    case queueFull = "queue_full"
    case storeUnavailable = "store_unavailable"
}

/// The service's metrics, kept in its own Prometheus registry and exposed by
/// the admin listener's `/metrics`. Every series is created up front so the hot
/// path only increments.
public final class ListenerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let responses: [Int: CoreMetrics.Counter]
    private let otherResponses: CoreMetrics.Counter
    private let stored: [String: CoreMetrics.Counter]
    private let duplicates: CoreMetrics.Counter
    private let indexLagRecords: CoreMetrics.Gauge
    private let indexLagMilliseconds: CoreMetrics.Gauge
    private let rejected: [RejectionReason: CoreMetrics.Counter]
    private let commitLatency: CoreMetrics.Timer
    private let batchSize: CoreMetrics.Recorder
    private let openConnections: CoreMetrics.Gauge
    private let registrationState: [RegistrationStateName: CoreMetrics.Gauge]
    private let consumerStreams: CoreMetrics.Gauge
    private let consumerLongPolls: CoreMetrics.Gauge

    public enum RegistrationStateName: String, Sendable, CaseIterable {
        case off, registering, registered, failed, deregistered
    }

    private let leader: CoreMetrics.Gauge
    public init(services: [String]) {
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(250), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
            .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .seconds(1),
        ]
        factory.defaultValueHistogramBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
        let codes = [200, 400, 403, 404, 405, 408, 413, 414, 415, 417, 431, 500, 501, 503, 505]
        responses = Dictionary(
            uniqueKeysWithValues: codes.map {
                ($0, CoreMetrics.Counter(label: "http_responses_total", dimensions: [("status", String($0))], factory: factory))
            })
        otherResponses = CoreMetrics.Counter(label: "http_responses_total", dimensions: [("status", "other")], factory: factory)
        stored = Dictionary(
            uniqueKeysWithValues: services.map {
                ($0, CoreMetrics.Counter(label: "callbacks_stored_total", dimensions: [("service", $0)], factory: factory))
            })
        duplicates = CoreMetrics.Counter(label: "callbacks_duplicates_total", factory: factory)
        indexLagRecords = CoreMetrics.Gauge(label: "store_index_lag_records", factory: factory)
        indexLagMilliseconds = CoreMetrics.Gauge(label: "store_index_lag_milliseconds", factory: factory)
        rejected = Dictionary(
            uniqueKeysWithValues: RejectionReason.allCases.map {
                ($0, CoreMetrics.Counter(label: "callbacks_rejected_total", dimensions: [("reason", $0.rawValue)], factory: factory))
            })
        commitLatency = CoreMetrics.Timer(label: "store_commit_duration_seconds", factory: factory)
        batchSize = CoreMetrics.Recorder(label: "store_commit_batch_size", aggregate: true, factory: factory)
        openConnections = CoreMetrics.Gauge(label: "http_open_connections", factory: factory)
        registrationState = Dictionary(
            uniqueKeysWithValues: RegistrationStateName.allCases.map {
                ($0, CoreMetrics.Gauge(label: "registration_state", dimensions: [("state", $0.rawValue)], factory: factory))
            })
        consumerStreams = CoreMetrics.Gauge(label: "consumer_api_open_streams", factory: factory)
        consumerLongPolls = CoreMetrics.Gauge(label: "consumer_api_waiting_long_polls", factory: factory)
        leader = CoreMetrics.Gauge(label: "instance_leader", factory: factory)
    }

    /// 1 while this instance holds the shared duties (always, with one machine's SQLite store).
    func setLeader(_ leading: Bool) { leader.record(leading ? 1 : 0) }

    func responded(status: Int) { (responses[status] ?? otherResponses).increment() }
    /// Acknowledged callbacks not yet queryable, and how long the oldest of them has waited.
    func setIndexLag(records: Int64, milliseconds: Int64) {
        indexLagRecords.record(records)
        indexLagMilliseconds.record(milliseconds)
    }

    /// Repeats found by the journal's indexer, behind the acknowledgements.
    func duplicatesIndexed(_ count: Int) {
        if count > 0 { duplicates.increment(by: count) }
    }

    func stored(service: String, duplicate: Bool) {
        stored[service]?.increment()
        if duplicate { duplicates.increment() }
    }
    func rejected(_ reason: RejectionReason) { rejected[reason]?.increment() }
    func committed(batchSize size: Int, duration: Duration) {
        batchSize.record(size)
        commitLatency.recordNanoseconds(duration.inNanoseconds)
    }
    func setOpenConnections(_ count: Int) { openConnections.record(count) }
    func setRegistrationState(_ state: RegistrationStateName) {
        for (name, gauge) in registrationState { gauge.record(name == state ? 1 : 0) }
    }

    /// The consumer API's open streams and waiting long polls.
    func setConsumerAPILoad(streams: Int, longPolls: Int) {
        consumerStreams.record(streams)
        consumerLongPolls.record(longPolls)
    }

    /// The Prometheus text exposition.
    public func exposition() -> [UInt8] { registry.emitToBuffer() }
}
