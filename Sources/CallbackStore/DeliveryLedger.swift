// Where each stored callback stands with each destination: the durable queue of the delivery
// engine. The database is the truth (the engine keeps only what is in flight), so the CLI can
// retry and replay beside a running service, a restart resumes where the ledger says, and a
// backend shared by several instances can hand out the work. Losing the newest updates (a power
// cut before the ledger's sync) only repeats attempts, with the same webhook-id: never a loss.

/// A delivery's state. Pending and retrying are the ones still to attempt; delivered and dead are final.
public enum DeliveryState: String, Sendable, Hashable, CaseIterable {
    /// Not attempted yet.
    case pending
    /// Attempted and failed; the next attempt is at `nextAttemptAt`.
    case retrying
    case delivered
    /// Dead-lettered: out of attempts or too old. `deliveries retry --dead` revives it.
    case dead

    public var isFinal: Bool { self == .delivered || self == .dead }
}

/// One callback's delivery to one destination.
public struct DeliveryRecord: Sendable, Hashable {
    public var destination: String
    public var callbackID: Int64
    public var state: DeliveryState
    /// Attempts made (the first one included).
    public var attempts: Int
    /// UTC milliseconds; when the next attempt is due (pending and retrying only).
    public var nextAttemptAt: Int64?
    /// The callback's first device id, for ordering by device; nil when it names none.
    public var orderingKey: String?
    /// The callback's receivedAt (UTC ms): for the destination's maximum age and its lag.
    public var receivedAt: Int64
    public var lastAttemptAt: Int64?
    /// The HTTP status of the last attempt; nil for a transport failure or none yet.
    public var lastStatus: Int?
    /// Why the last attempt failed, in a few words ("timeout", "HTTP 500"); never a secret.
    public var lastError: String?

    public init(
        destination: String, callbackID: Int64, state: DeliveryState = .pending, attempts: Int = 0,
        nextAttemptAt: Int64?, orderingKey: String?, receivedAt: Int64, lastAttemptAt: Int64? = nil,
        lastStatus: Int? = nil, lastError: String? = nil
    ) {
        self.destination = destination
        self.callbackID = callbackID
        self.state = state
        self.attempts = attempts
        self.nextAttemptAt = nextAttemptAt
        self.orderingKey = orderingKey
        self.receivedAt = receivedAt
        self.lastAttemptAt = lastAttemptAt
        self.lastStatus = lastStatus
        self.lastError = lastError
    }
}

/// Why a destination is disabled (a 410 from it), until a reload or the CLI enables it again.
public struct DestinationDisabled: Sendable, Hashable {
    public var at: Int64
    public var reason: String

    public init(at: Int64, reason: String) {
        self.at = at
        self.reason = reason
    }
}

/// What `deliveries list` asks for; results in callback id order, after `afterID`.
public struct DeliveryFilter: Sendable, Hashable {
    public var destination: String?
    public var state: DeliveryState?
    public var afterID: Int64
    public var limit: Int

    public init(destination: String? = nil, state: DeliveryState? = nil, afterID: Int64 = 0, limit: Int = 100) {
        self.destination = destination
        self.state = state
        self.afterID = afterID
        self.limit = limit
    }
}

/// A destination's backlog for metrics and `/readyz` detail.
public struct DeliveryBacklog: Sendable, Hashable {
    public var pending: Int
    public var retrying: Int
    public var dead: Int
    /// receivedAt of the oldest callback not yet delivered (nor dead); nil when none waits.
    public var oldestWaitingReceivedAt: Int64?

    public init(pending: Int = 0, retrying: Int = 0, dead: Int = 0, oldestWaitingReceivedAt: Int64? = nil) {
        self.pending = pending
        self.retrying = retrying
        self.dead = dead
        self.oldestWaitingReceivedAt = oldestWaitingReceivedAt
    }
}

public protocol DeliveryLedger: AnyObject, Sendable {
    /// True when several instances take work from this ledger (a shared database): `due` then claims
    /// what it returns, for a lease, so that each attempt is made by one instance at a time, and
    /// only the leader feeds newly stored callbacks in as pending records.
    var sharesWork: Bool { get }

    /// The highest callback id the destination has looked at: every matching callback up to it has a
    /// record. nil for a destination never seen.
    func cursor(destination: String) throws(CallbackStoreError) -> Int64?

    /// Adds `records` (pending; one that exists is left as it is) and moves the cursor to `through`,
    /// in one transaction. The cursor never moves back.
    func enqueue(destination: String, _ records: [DeliveryRecord], through cursor: Int64) throws(CallbackStoreError)

    /// Pending and retrying records due at `now`, earliest first (then by id), at most `limit`,
    /// leaving out `excluding` (attempts in flight). With `onePerOrderingKey`, a record is due only
    /// when no earlier pending or retrying record has its ordering key: one device's callbacks go
    /// one at a time, in id order.
    func due(
        destination: String, now: Int64, limit: Int, excluding: Set<Int64>, onePerOrderingKey: Bool
    ) throws(CallbackStoreError) -> [DeliveryRecord]

    /// The earliest `nextAttemptAt` of the destination's pending and retrying records.
    func nextAttemptAt(destination: String) throws(CallbackStoreError) -> Int64?

    /// Writes the records' new state (outcomes of attempts) and, with `cursor`, moves that
    /// destination's cursor forward to it (never back), in one transaction.
    func update(_ records: [DeliveryRecord], cursor: (destination: String, through: Int64)?) throws(CallbackStoreError)

    func record(destination: String, callbackID: Int64) throws(CallbackStoreError) -> DeliveryRecord?

    func list(_ filter: DeliveryFilter) throws(CallbackStoreError) -> [DeliveryRecord]

    func backlog(destination: String) throws(CallbackStoreError) -> DeliveryBacklog

    /// Makes dead records (all of them, or those of `ids`) of the destination due at `now` again,
    /// with a fresh schedule; returns how many.
    func retry(destination: String, ids: [Int64]?, now: Int64) throws(CallbackStoreError) -> Int

    /// Makes the given records due at `now` with a fresh schedule, whatever their state (creating
    /// those that do not exist): a replay. Returns how many.
    func replay(_ records: [DeliveryRecord], now: Int64) throws(CallbackStoreError) -> Int

    func disabled(destination: String) throws(CallbackStoreError) -> DestinationDisabled?

    /// nil enables the destination.
    func setDisabled(destination: String, _ disabled: DestinationDisabled?) throws(CallbackStoreError)

    /// Deletes the records of callbacks received before `cutoff` (UTC ms; retention deleted them),
    /// returning how many.
    func purge(receivedBefore cutoff: Int64) throws(CallbackStoreError) -> Int

    func close()
}

extension DeliveryLedger {
    public var sharesWork: Bool { false }

    public func update(_ records: [DeliveryRecord]) throws(CallbackStoreError) { try update(records, cursor: nil) }
}
