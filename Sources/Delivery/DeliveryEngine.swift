// Every configured destination's worker, started and stopped together, and changed live on a
// reload: a new destination starts, a removed one stops, a changed one restarts with its ledger
// state intact, and each one disabled by a 410 is enabled again.
import CallbackStore
import Logging
import Synchronization
import Vocabulary

public final class DeliveryEngine: Sendable {
    public enum Event: Sendable {
        case attempted(destination: String, outcome: AttemptOutcome, duration: Duration)
        case delivered(destination: String)
        case deadLettered(destination: String)
        case disabled(destination: String)
        case enabled(destination: String)
    }

    /// Hears every event, on the worker's queue: keep it short (metrics).
    public typealias Observer = @Sendable (Event) -> Void

    /// How long stopping waits for attempts in flight before leaving them to the next start.
    public static let stopGracePeriod: Duration = .seconds(5)

    private let ledger: any DeliveryLedger
    private let reader: any CallbackReader
    private let clock: @Sendable () -> Int64
    private let logger: Logger
    private let observer: Observer?
    private let onFatal: @Sendable (CallbackStoreError) -> Void
    private let isLeader: @Sendable () -> Bool
    private let workers = Mutex<[String: DestinationWorker]>([:])

    /// `clock`: UTC milliseconds (tests move time). `isLeader`: with a ledger shared by several
    /// instances, whether this one feeds new callbacks in. `onFatal`: the ledger failed (the service
    /// exits and its restart resumes from what is on disk).
    public init(
        ledger: any DeliveryLedger, reader: any CallbackReader, logger: Logger,
        clock: @escaping @Sendable () -> Int64 = { Timekeeping.wallClockMilliseconds() }, observer: Observer? = nil,
        isLeader: @escaping @Sendable () -> Bool = { true }, onFatal: @escaping @Sendable (CallbackStoreError) -> Void
    ) {
        self.isLeader = isLeader
        self.ledger = ledger
        self.reader = reader
        self.clock = clock
        self.logger = logger
        self.observer = observer
        self.onFatal = onFatal
    }

    /// Starts the destinations (none: nothing to do).
    public func start(_ destinations: [Destination]) throws(CallbackStoreError) {
        try apply(destinations, enableAll: false)
    }

    /// A reload: starts, stops or restarts what changed, and enables every destination again.
    public func reconfigure(_ destinations: [Destination]) async throws(CallbackStoreError) {
        let current = workers.withLock { $0 }
        let wanted = Dictionary(destinations.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        for (name, worker) in current where wanted[name] != worker.destination {
            await worker.stop(grace: Self.stopGracePeriod)
            _ = workers.withLock { $0.removeValue(forKey: name) }
            logger.info("destination stopped (reload)", metadata: ["delivery.destination": "\(name)"])
        }
        try apply(destinations, enableAll: true)
    }

    public func stop(grace: Duration = DeliveryEngine.stopGracePeriod) async {
        let all = workers.withLock { workers in
            defer { workers.removeAll() }
            return Array(workers.values)
        }
        await withTaskGroup(of: Void.self) { group in
            for worker in all { group.addTask { await worker.stop(grace: grace) } }
        }
    }

    /// Every running destination's state, by name.
    public var statuses: [DestinationStatus] {
        workers.withLock { $0.values.map(\.currentStatus) }.sorted { $0.name < $1.name }
    }

    private func apply(_ destinations: [Destination], enableAll: Bool) throws(CallbackStoreError) {
        for destination in destinations {
            if enableAll, try ledger.disabled(destination: destination.name) != nil {
                try ledger.setDisabled(destination: destination.name, nil)
                logger.notice("destination enabled again (reload)", metadata: ["delivery.destination": "\(destination.name)"])
                observer?(.enabled(destination: destination.name))
                workers.withLock { $0[destination.name] }?.enable()
            }
            guard workers.withLock({ $0[destination.name] }) == nil else { continue }
            let worker = DestinationWorker(
                destination: destination, ledger: ledger, reader: reader, clock: clock, logger: logger, observer: observer,
                isLeader: isLeader, onFatal: onFatal)
            try worker.start()
            workers.withLock { $0[destination.name] = worker }
        }
    }
}
