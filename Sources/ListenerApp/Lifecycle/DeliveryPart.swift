// Delivery to the configured destinations, started before the callback port opens and stopped
// after it closes. The ledger is opened when there is a destination (at start or on a reload), so
// a listener without destinations writes no delivery file. With PostgreSQL the ledger is shared
// by every instance: the leader feeds it and purges it, every instance claims attempts from it.
import CallbackStore
import Delivery
import Logging
import PostgresStore
import SQLiteStore
import Synchronization
import Vocabulary

final class DeliveryPart: ListenerPart {
    let name = "delivery"
    private let storage: ListenerConfiguration.Storage
    private let coordination: CoordinationPart?
    private let retentionDays: Int
    private let purgeTask = Mutex<Task<Void, Never>?>(nil)
    private let store: StorePart
    private let metrics: DeliveryMetrics
    private let logger: Logger
    private let onFatal: @Sendable (CallbackStoreError) -> Void
    private let initial: [Destination]
    private let engine = StartedValue<DeliveryEngine>()
    private let ledger = StartedValue<any DeliveryLedger>()
    /// Reloads and the stop, one at a time.
    private let changes = AsyncSerialGate()

    init(
        configuration: ListenerConfiguration, store: StorePart, coordination: CoordinationPart?, metrics: DeliveryMetrics,
        logger: Logger, onFatal: @escaping @Sendable (CallbackStoreError) -> Void
    ) {
        storage = configuration.storage
        self.coordination = coordination
        retentionDays = configuration.storage.retentionDays
        initial = configuration.delivery.destinations
        self.store = store
        self.metrics = metrics
        self.logger = logger
        self.onFatal = onFatal
    }

    func start() throws(ListenerError) {
        guard !initial.isEmpty else { return }
        let engine = try open()
        do {
            try engine.start(initial)
        } catch {
            throw .partFailed(name, "\(error)")
        }
    }

    /// A reload: destinations added, removed or changed take effect now; disabled ones are enabled.
    func reconfigure(_ destinations: [Destination]) async {
        await changes.run { [self] in
            do {
                if let engine = engine.current {
                    try await engine.reconfigure(destinations)
                } else if !destinations.isEmpty {
                    try open().start(destinations)
                }
            } catch {
                logger.error("delivery: reload not applied", metadata: ["error": "\(error)"])
            }
        }
    }

    var statuses: [DestinationStatus] { engine.current?.statuses ?? [] }

    func stop() async {
        purgeTask.withLock { $0?.cancel() }
        await changes.run { [self] in
            await engine.current?.stop()
            ledger.current?.close()
        }
    }

    private func open() throws(ListenerError) -> DeliveryEngine {
        let shared = storage.postgreSQLSettings.flatMap { settings in coordination.map { (settings, $0.instanceID) } }
        let location = shared.map { "\($0.0)" } ?? SQLiteDeliveryLedger.path(besideDatabase: storage.path)
        let reader: any CallbackReader
        let ledger: any DeliveryLedger
        do {
            reader = try store.opened.required(by: name).makeReader()
            if let (settings, instance) = shared {
                ledger = try PostgreSQLDeliveryLedger(
                    settings: settings, instance: instance, leaseDuration: Self.leaseDuration(for: initial))
            } else {
                ledger = try SQLiteDeliveryLedger(path: location)
            }
        } catch {
            throw .partFailed(name, "cannot open the delivery ledger \(location): \(error)")
        }
        let metrics = self.metrics
        let isLeader: @Sendable () -> Bool = { [coordination] in coordination?.isLeader ?? true }
        let engine = DeliveryEngine(
            ledger: ledger, reader: reader, logger: logger, observer: { metrics.observe($0) }, isLeader: isLeader, onFatal: onFatal)
        self.ledger.set(ledger)
        self.engine.set(engine)
        startPurging(ledger, isLeader: isLeader)
        return engine
    }

    /// How long a claimed attempt is this instance's before another may make it: longer than the
    /// slowest destination's timeout, so that only an instance that died loses its claims.
    static func leaseDuration(for destinations: [Destination]) -> Duration {
        (destinations.map(\.timeout).max() ?? .seconds(15)) + .seconds(15)
    }

    /// With `storage.retentionDays`, the records of callbacks retention deleted go too (hourly).
    private func startPurging(_ ledger: any DeliveryLedger, isLeader: @escaping @Sendable () -> Bool) {
        guard retentionDays > 0 else { return }
        let (days, logger) = (retentionDays, logger)
        let task = Task.detached {
            while !Task.isCancelled {
                guard isLeader() else {
                    try? await Task.sleep(for: .seconds(60))
                    continue
                }
                let cutoff = Timekeeping.wallClockMilliseconds() - Int64(days) * 86_400_000
                do {
                    let removed = try ledger.purge(receivedBefore: cutoff)
                    if removed > 0 { logger.info("retention: removed old delivery records", metadata: ["retention.removed": "\(removed)"]) }
                } catch {
                    logger.warning("retention of delivery records failed; will retry in an hour: \(error)")
                }
                try? await Task.sleep(for: .seconds(3600))
            }
        }
        purgeTask.withLock { $0 = task }
    }
}

/// Runs async bodies one after another.
final class AsyncSerialGate: Sendable {
    private let tail = Mutex<Task<Void, Never>?>(nil)

    func run(_ body: @escaping @Sendable () async -> Void) async {
        let task = tail.withLock { tail -> Task<Void, Never> in
            let previous = tail
            let next = Task {
                await previous?.value
                await body()
            }
            tail = next
            return next
        }
        await task.value
    }
}
