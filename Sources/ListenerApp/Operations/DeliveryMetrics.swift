import CallbackStore
import CoreMetrics
import Delivery
import Prometheus
import Synchronization
import Vocabulary

/// Per destination: delivered, attempts by outcome, dead-lettered, in flight, disabled, and the lag
/// (age of the oldest callback not yet delivered). Destinations come and go with reloads, so the
/// series are made on first use and kept.
final class DeliveryMetrics: Sendable {
    private let factory: PrometheusMetricsFactory
    private let counters = Mutex<[String: CoreMetrics.Counter]>([:])
    private let gauges = Mutex<[String: CoreMetrics.Gauge]>([:])
    private let attemptDurations = Mutex<[String: CoreMetrics.Timer]>([:])

    init(registry: PrometheusCollectorRegistry) {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .milliseconds(1), .milliseconds(5), .milliseconds(25), .milliseconds(100), .milliseconds(250), .seconds(1), .seconds(5),
            .seconds(15), .seconds(60),
        ]
        self.factory = factory
    }

    func observe(_ event: DeliveryEngine.Event) {
        switch event {
        case .attempted(let destination, let outcome, let duration):
            counter("delivery_attempts_total", destination, ("outcome", outcome.rawValue)).increment()
            let timer = attemptDurations.withLock { timers in
                if let timer = timers[destination] { return timer }
                let timer = CoreMetrics.Timer(
                    label: "delivery_attempt_duration_seconds", dimensions: [("destination", destination)], factory: factory)
                timers[destination] = timer
                return timer
            }
            timer.recordNanoseconds(duration.inNanoseconds)
        case .delivered(let destination):
            counter("deliveries_delivered_total", destination).increment()
        case .deadLettered(let destination):
            counter("deliveries_dead_lettered_total", destination).increment()
        case .disabled(let destination):
            gauge("delivery_disabled", destination).record(1)
        case .enabled(let destination):
            gauge("delivery_disabled", destination).record(0)
        }
    }

    /// The gauges, from the engine's view (read when /metrics is scraped).
    func record(_ statuses: [DestinationStatus]) {
        for status in statuses {
            gauge("delivery_in_flight", status.name).record(status.inFlight)
            gauge("delivery_disabled", status.name).record(status.disabled == nil ? 0 : 1)
            gauge("delivery_lag_seconds", status.name).record(Double(status.lagMilliseconds) / 1000)
            gauge("delivery_backlog", status.name, ("state", "pending")).record(status.backlog.pending)
            gauge("delivery_backlog", status.name, ("state", "retrying")).record(status.backlog.retrying)
            gauge("delivery_backlog", status.name, ("state", "dead")).record(status.backlog.dead)
        }
    }

    private func counter(_ label: String, _ destination: String, _ extra: (String, String)? = nil) -> CoreMetrics.Counter {
        series(counters, label, destination, extra) { CoreMetrics.Counter(label: label, dimensions: $0, factory: factory) }
    }

    private func gauge(_ label: String, _ destination: String, _ extra: (String, String)? = nil) -> CoreMetrics.Gauge {
        series(gauges, label, destination, extra) { CoreMetrics.Gauge(label: label, dimensions: $0, factory: factory) }
    }

    /// The series of `label` for the destination (and one more dimension), made on first use.
    private func series<Metric>(
        _ cache: borrowing Mutex<[String: Metric]>, _ label: String, _ destination: String, _ extra: (String, String)?,
        make: ([(String, String)]) -> Metric
    ) -> Metric {
        let dimensions = [("destination", destination)] + (extra.map { [$0] } ?? [])
        let key = ([label] + dimensions.map { "\($0.0)=\($0.1)" }).joined(separator: "|")
        return cache.withLock { cache in
            if let metric = cache[key] { return metric }
            let metric = make(dimensions)
            cache[key] = metric
            return metric
        }
    }
}
