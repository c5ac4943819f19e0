// Several instances on one PostgreSQL share the duties that must have one owner: registering
// with ThingSpace, retention and feeding deliveries. This part keeps this instance's heartbeat
// and competes for the leader lease (PostgresStore's InstanceCoordinator); the parts that own a
// duty ask it whether they lead and hear when that changes. With the SQLite store there is one
// instance, which always leads, and this part is not made.
import Foundation
import Logging
import PostgresStore
import Synchronization

final class CoordinationPart: ListenerPart {
    let name = "coordination"
    let instanceID: String
    private let settings: PostgreSQLSettings
    private let metrics: ListenerMetrics
    private let logger: Logger
    private let coordinator = StartedValue<InstanceCoordinator>()
    private let observers = Mutex<[@Sendable (Bool) -> Void]>([])
    private let leading = Atomic<Bool>(false)

    init(settings: PostgreSQLSettings, metrics: ListenerMetrics, logger: Logger) {
        self.settings = settings
        self.metrics = metrics
        self.logger = logger
        let host = ProcessInfo.processInfo.hostName
        instanceID = "\(host):\(getpid()):\(UUID().uuidString.prefix(8).lowercased())"
        metrics.setLeader(false)
    }

    func start() throws(ListenerError) {
        let coordinator = InstanceCoordinator(
            settings: settings, instanceID: instanceID, logger: logger,
            onChange: { [weak self] leading in self?.changed(leading) })
        do {
            try coordinator.start()
        } catch {
            throw .partFailed(name, "\(error)")
        }
        self.coordinator.set(coordinator)
        logger.info("instance started", metadata: ["instance.id": "\(instanceID)"])
    }

    /// Gives up the lease at once (another instance takes over within one renewal) and removes
    /// this instance's heartbeat, so that the last instance to stop knows it is the last.
    func stop() { coordinator.current?.stop() }

    var isLeader: Bool { leading.load(ordering: .acquiring) }

    /// Calls `observer` on every change of leadership, and at once if this instance leads now.
    func onLeadershipChange(_ observer: @escaping @Sendable (Bool) -> Void) {
        observers.withLock { $0.append(observer) }
        if isLeader { observer(true) }
    }

    /// Other instances with a fresh heartbeat; nil when the database cannot say (then nobody
    /// deregisters: a registration left in place is harmless, one removed under a running
    /// instance loses callbacks).
    func otherInstancesAlive() -> Int? {
        guard let coordinator = coordinator.current else { return nil }
        do {
            return try coordinator.otherInstancesAlive()
        } catch {
            logger.warning("cannot tell whether other instances are running: \(error)")
            return nil
        }
    }

    private func changed(_ leading: Bool) {
        self.leading.store(leading, ordering: .releasing)
        metrics.setLeader(leading)
        for observer in observers.withLock({ $0 }) { observer(leading) }
    }
}
