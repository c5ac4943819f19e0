// Which instance leads, among those on one database: a lease row renewed by the leader (by the
// database's clock), heartbeats of every instance, a notification when the leader lets go. The
// leader's duties (registering with ThingSpace, retention, feeding deliveries) are advisory: an
// instance that cannot renew stops leading before its lease could have expired at the database,
// by its own monotonic clock, so that two never lead at once; deliveries are fenced apart from
// this, by their own leases.
import CallbackStore
import Dispatch
import Foundation
import Logging
import Synchronization
import Vocabulary

public final class InstanceCoordinator: Sendable {
    public let instanceID: String
    public let leaseDuration: Duration
    public let renewInterval: Duration
    private let settings: PostgreSQLSettings
    private let logger: Logger
    private let onChange: @Sendable (Bool) -> Void
    /// For the heartbeat row: which machine, which process.
    private let host: String
    /// The connection, used under this lock only (renewals, the notification wait, the count, stop).
    private let link = Mutex(ConnectionLink())
    /// Leadership; never held across I/O, so `isLeader` and the fence never wait on the network.
    private let state = Mutex(State())
    /// Runs onChange in the order of the changes, outside every lock.
    private let changes = DispatchQueue(label: "InstanceCoordinator.onChange")
    private let onChangesQueue = DispatchSpecificKey<Bool>()
    /// The fence's timers: a queue of its own (its own thread when needed), never the global pool,
    /// where blocking work elsewhere can hold a timer back for seconds.
    private let fences = DispatchQueue(label: "InstanceCoordinator.fence")

    static let releaseChannel = "thingspace_listener_leader_released"
    /// The longest a follower waits between reconnection attempts.
    static let maximumBackoff: Duration = .seconds(2)
    /// The longest the renewing thread holds the connection while waiting for a notification.
    static let waitSlice: Duration = .milliseconds(100)
    /// How often the leader deletes the rows of instances gone for a day.
    static let cleanupInterval: Duration = .seconds(60)

    private struct State {
        var started = false
        var finished = false
        var leading = false
        /// When this instance stops counting itself leader without another renewal (monotonic).
        var fenceAt = ContinuousClock.now
        var lastCleanup: ContinuousClock.Instant?
    }

    public init(
        settings: PostgreSQLSettings, instanceID: String, logger: Logger, leaseDuration: Duration = .seconds(10),
        renewInterval: Duration = .seconds(2), onChange: @escaping @Sendable (Bool) -> Void
    ) {
        self.settings = settings
        self.instanceID = instanceID
        self.logger = logger
        self.leaseDuration = leaseDuration
        self.renewInterval = renewInterval
        self.onChange = onChange
        // gethostname, not ProcessInfo.hostName, which may wait on DNS.
        var name = [CChar](repeating: 0, count: 256)
        let named = gethostname(&name, name.count - 1) == 0
        host = named ? String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "unknown"
        changes.setSpecific(key: onChangesQueue, value: true)
    }

    /// Time taken off the lease for the fence: timer latency, and whoever acts on onChange(false).
    var fencingMargin: Duration { max(leaseDuration / 5, .milliseconds(100)) }

    /// Whether this instance leads now (and its lease has not run out by its own clock).
    public var isLeader: Bool {
        state.withLock { $0.leading && !$0.finished && ContinuousClock.now < $0.fenceAt }
    }

    /// Connects, migrates the schema, writes this instance's heartbeat and tries once to lead, so
    /// that a lone instance leads when this returns (onChange(true) called by then); then renews
    /// on a thread of its own.
    public func start() throws(CallbackStoreError) {
        let first = state.withLock { state in
            defer { state.started = true }
            return !state.started && !state.finished
        }
        guard first else { return }
        do throws(CallbackStoreError) {
            try link.withLock { link throws(CallbackStoreError) in
                let connection = try Self.connect(settings, leaseDuration: leaseDuration)
                try PostgreSQLSchema.migrate(connection, location: settings.description)
                link.connection = connection
            }
            try renew()
        } catch {
            link.withLock { link in
                link.connection?.close()
                link.connection = nil
            }
            state.withLock { $0.started = false }
            throw error
        }
        let thread = Thread { [self] in run() }
        thread.name = "InstanceCoordinator"
        thread.start()
        changes.sync {}
    }

    /// Instances other than this one whose heartbeat is fresh (3 leases at most).
    public func otherInstancesAlive() throws(CallbackStoreError) -> Int {
        // Silent for a whole lease: dead, or cut off long enough to have stopped leading (it
        // registers again as soon as it leads, should it come back).
        let window = leaseDuration.inMilliseconds
        return try withConnection { connection throws(PostgreSQLError) in
            Int(
                try connection.query(
                    "SELECT count(*) FROM instances WHERE id <> $1 AND heartbeat_at > now() - $2 * interval '1 millisecond'",
                    [.text(instanceID), .int(window)]
                ).int(0, 0) ?? 0)
        }
    }

    /// Lets go of the lease (a follower, notified, takes over at once), deletes this instance's
    /// heartbeat and closes. Idempotent.
    public func stop() {
        let wasRunning = state.withLock { state in
            guard !state.finished else { return false }
            state.finished = true
            if state.leading { change(&state, to: false) }
            return state.started
        }
        guard wasRunning else { return }
        link.withLock { link in
            guard !link.closed else { return }
            link.closed = true
            var connection = link.connection
            link.connection = nil
            // A connection that broke unseen (a restart) gets one more try on a new one.
            for attempt in 0..<2 {
                if connection.map({ !$0.isUsable }) ?? true {
                    connection?.close()
                    connection = try? Self.connect(settings, leaseDuration: leaseDuration)
                }
                guard let current = connection else { break }
                do throws(PostgreSQLError) {
                    try release(on: current)
                    break
                } catch {
                    if attempt == 1 || !error.connectionLost {
                        logger.warning(
                            "could not release the leader lease; another instance takes over when it expires",
                            metadata: ["error": "\(error)"])
                        break
                    }
                }
            }
            connection?.close()
        }
        if DispatchQueue.getSpecific(key: onChangesQueue) != true { changes.sync {} }
    }

    /// Deletes the lease (notifying followers) and the heartbeat, in one transaction: a follower
    /// notified finds this instance gone from both tables.
    private func release(on connection: PostgreSQLConnection) throws(PostgreSQLError) {
        try connection.execute("BEGIN")
        do throws(PostgreSQLError) {
            try connection.query(
                """
                WITH released AS (DELETE FROM leader WHERE instance = $1 RETURNING instance)
                SELECT pg_notify('\(Self.releaseChannel)', instance) FROM released
                """, [.text(instanceID)])
            try connection.query("DELETE FROM instances WHERE id = $1", [.text(instanceID)])
            try connection.execute("COMMIT")
        } catch {
            if connection.isUsable { try? connection.execute("ROLLBACK") }
            throw error
        }
    }

    /// Stops renewing and closes the connection without releasing anything, as kill -9 would.
    @_spi(Testing) public func abandon() {
        state.withLock { state in
            state.finished = true
            state.leading = false
        }
        link.close()
    }

    // MARK: - Renewing

    private func run() {
        var backoff = Duration.milliseconds(100)
        var failing = false
        var nextRenewal = ContinuousClock.now + renewInterval
        while !state.withLock({ $0.finished }) {
            waitForRelease(until: nextRenewal)
            let attempted = ContinuousClock.now
            do throws(CallbackStoreError) {
                try renew()
                if failing { logger.info("renewing the instance lease again") }
                failing = false
                backoff = .milliseconds(100)
                nextRenewal = attempted + renewInterval
            } catch .closed {
                return
            } catch {
                if !failing {
                    logger.warning("cannot renew the instance lease; reconnecting", metadata: ["error": "\(error)"])
                } else {
                    logger.debug("cannot renew the instance lease", metadata: ["error": "\(error)"])
                }
                failing = true
                nextRenewal = ContinuousClock.now + backoff
                backoff = min(backoff * 2, max(Self.maximumBackoff, renewInterval))
            }
        }
    }

    /// Waits until `deadline` on the connection, and returns early when a follower hears that the
    /// leader let go, or when the connection broke (so that the next renewal reconnects at once).
    private func waitForRelease(until deadline: ContinuousClock.Instant) {
        while case let now = ContinuousClock.now, now < deadline, !state.withLock({ $0.finished }) {
            let slice = min(deadline - now, Self.waitSlice)
            let heard = link.withLock { link -> Heard in
                guard !link.closed, let connection = link.connection, connection.isUsable else { return .noConnection }
                do throws(PostgreSQLError) {
                    return try connection.notifications(waitingUpTo: slice).contains { $0.channel == Self.releaseChannel }
                        ? .release : .nothing
                } catch {
                    connection.close()
                    link.connection = nil
                    return .lost
                }
            }
            switch heard {
            case .release:
                guard !state.withLock({ $0.leading }) else { continue }
                logger.debug("the leader let go; trying to lead")
                return
            case .lost: return
            // Between reconnection attempts: their backoff sets the deadline.
            case .noConnection: Thread.sleep(forTimeInterval: slice.inSeconds)
            case .nothing: continue
            }
        }
    }

    private enum Heard {
        /// The leader let go: a follower tries at once.
        case release
        /// The connection just broke: reconnect at once (a killed session, a restart).
        case lost
        case noConnection
        case nothing
    }

    /// One renewal: the heartbeat, then the lease (taken when free or expired, by the database's clock).
    private func renew() throws(CallbackStoreError) {
        // Taken before the statements: the lease at the database ends no earlier than this + leaseDuration.
        let sent = ContinuousClock.now
        let lease = max(1, leaseDuration.inMilliseconds)
        let leads = try withConnection { connection throws(PostgreSQLError) in
            try connection.query(
                """
                INSERT INTO instances (id, host, pid) VALUES ($1, $2, $3)
                ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), host = excluded.host, pid = excluded.pid
                """, [.text(instanceID), .text(host), .int(Int64(getpid()))])
            return try connection.query(
                """
                INSERT INTO leader (singleton, instance, expires_at) VALUES (true, $1, now() + $2 * interval '1 millisecond')
                ON CONFLICT (singleton) DO UPDATE SET instance = excluded.instance, expires_at = excluded.expires_at
                WHERE leader.instance = excluded.instance OR leader.expires_at < now()
                RETURNING instance
                """, [.text(instanceID), .int(lease)]
            ).count == 1
        }
        let fenceAt = sent + leaseDuration - fencingMargin
        let cleanup = state.withLock { state -> Bool in
            guard !state.finished else { return false }
            let now = ContinuousClock.now
            // The fence passed before its timer ran: that term ended, whatever comes next.
            if state.leading, now >= state.fenceAt { change(&state, to: false) }
            // A renewal slower than the lease leads to nothing: the lease may be gone already.
            let leading = leads && now < fenceAt
            if leading { state.fenceAt = fenceAt }
            change(&state, to: leading)
            guard leading, state.lastCleanup.map({ now - $0 >= Self.cleanupInterval }) ?? true else { return false }
            state.lastCleanup = now
            return true
        }
        if leads { scheduleFence(at: fenceAt) }
        if cleanup {
            // Crashed instances leave their rows behind.
            _ = try withConnection { connection throws(PostgreSQLError) in
                try connection.query("DELETE FROM instances WHERE heartbeat_at < now() - interval '1 day'").affected
            }
        }
    }

    /// Stops leading at `fenceAt` unless a renewal moved the fence since.
    private func scheduleFence(at fenceAt: ContinuousClock.Instant) {
        let delay = max(.zero, fenceAt - ContinuousClock.now)
        fences.asyncAfter(deadline: .now() + .microseconds(Int(delay.inMicroseconds))) { [self] in
            let early = state.withLock { state -> Bool in
                guard state.fenceAt == fenceAt, state.leading, !state.finished else { return false }
                guard ContinuousClock.now >= fenceAt else { return true }
                logger.warning("stopped leading: the leader lease could not be renewed in time")
                change(&state, to: false)
                return false
            }
            // Dispatch's clock and ContinuousClock may differ by a hair: look again then.
            if early { scheduleFence(at: fenceAt) }
        }
    }

    /// Records a change of leadership and queues onChange, in order (called under the state lock).
    private func change(_ state: inout State, to leading: Bool) {
        guard state.leading != leading else { return }
        state.leading = leading
        if leading { logger.info("leading the instances", metadata: ["instance": "\(instanceID)"]) }
        notify(leading)
    }

    private func notify(_ leading: Bool) {
        let onChange = onChange
        changes.async { onChange(leading) }
    }

    private func withConnection<Result: Sendable>(
        _ body: (PostgreSQLConnection) throws(PostgreSQLError) -> Result
    ) throws(CallbackStoreError) -> Result {
        try link.use(connecting: { () throws(CallbackStoreError) in try Self.connect(settings, leaseDuration: leaseDuration) }, body)
    }

    /// A connection that listens for the leader's release.
    private static func connect(_ settings: PostgreSQLSettings, leaseDuration: Duration) throws(CallbackStoreError) -> PostgreSQLConnection
    {
        do throws(PostgreSQLError) {
            // A short timeout: the thread that renews must not sit in one attempt for long.
            let connection = try PostgreSQLConnection(settings, connectTimeoutSeconds: 2)
            // A renewal stuck behind a lock past the lease is worth nothing: give up and try again.
            try connection.execute("SET statement_timeout = \(max(1, leaseDuration.inMilliseconds))")
            try connection.listen(Self.releaseChannel)
            return connection
        } catch {
            throw error.storeError
        }
    }
}
