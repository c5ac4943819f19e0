// Delivery to the configured destinations, started once the service serves (after READY=1) and
// stopped first. The ledger is opened when there is a destination (at start or on a reload), so a
// listener without destinations writes no delivery file.
import CallbackStore
import Delivery
import Logging
import SQLiteStore
import Synchronization
import Vocabulary

final class DeliveryPart: ListenerPart {
    let name = "delivery"
    private let storagePath: String
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
        configuration: ListenerConfiguration, store: StorePart, metrics: DeliveryMetrics, logger: Logger,
        onFatal: @escaping @Sendable (CallbackStoreError) -> Void
    ) {
        storagePath = configuration.storage.path
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
        let path = SQLiteDeliveryLedger.path(besideDatabase: storagePath)
        let reader: any CallbackReader
        let ledger: SQLiteDeliveryLedger
        do {
            reader = try store.opened.required(by: name).makeReader()
            ledger = try SQLiteDeliveryLedger(path: path)
        } catch {
            throw .partFailed(name, "cannot open the delivery ledger \(path): \(error)")
        }
        let metrics = self.metrics
        let engine = DeliveryEngine(
            ledger: ledger, reader: reader, logger: logger, observer: { metrics.observe($0) }, onFatal: onFatal)
        self.ledger.set(ledger)
        self.engine.set(engine)
        startPurging(ledger)
        return engine
    }

    /// With `storage.retentionDays`, the records of callbacks retention deleted go too (hourly).
    private func startPurging(_ ledger: SQLiteDeliveryLedger) {
        guard retentionDays > 0 else { return }
        let (days, logger) = (retentionDays, logger)
        let task = Task.detached {
            while !Task.isCancelled {
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
