// The store as the rest of the program sees it, whatever keeps the bytes:
// one intake (a single writer per store, group commit), any number of
// readers, and maintenance that goes through the writer too. A backend
// implements these three protocols and passes the contract suite
// (Tests/CallbackStoreContractTests); nothing here knows SQL or files.
import Vocabulary

/// Where the callback handler hands what it admitted. One per store: it owns every write.
public protocol CallbackIntake: AnyObject, Sendable {
    typealias Completion = @Sendable (Result<CommitReceipt, CallbackStoreError>) -> Void

    /// Queues the callback and returns true; `completion` is then called exactly once, on a thread
    /// of the store's, when the callback (and every one submitted before it) is durable, or failed.
    /// Returns false at once, never calling `completion`, when the queue is full or the store closed.
    func submit(_ callback: NewCallback, completion: @escaping Completion) -> Bool

    /// True from a failed write until the next successful one (for readiness and 503s).
    var isFailing: Bool { get }

    /// Advances while the writer makes progress, idle included; stands still while it is stuck
    /// (for the systemd watchdog).
    var progressHeartbeat: UInt64 { get }

    var statistics: IntakeStatistics { get }

    /// Makes durable what was accepted, stops the writer and releases the store. Idempotent.
    func close()
}

/// Counters of an intake since it started.
public struct IntakeStatistics: Sendable, Hashable {
    public var committedBatches: UInt64
    public var committedCallbacks: UInt64
    public var failedBatches: UInt64
    public var failedCallbacks: UInt64

    public init(committedBatches: UInt64 = 0, committedCallbacks: UInt64 = 0, failedBatches: UInt64 = 0, failedCallbacks: UInt64 = 0) {
        self.committedBatches = committedBatches
        self.committedCallbacks = committedCallbacks
        self.failedBatches = failedBatches
        self.failedCallbacks = failedCallbacks
    }
}

/// Reads what is stored while the intake writes (in this process or another).
public protocol CallbackReader: Sendable {
    /// Callbacks matching every field set in `filter`, newest first, at most `filter.limit`.
    func query(_ filter: CallbackFilter) throws(CallbackStoreError) -> [StoredCallback]

    func callback(id: Int64) throws(CallbackStoreError) -> StoredCallback?

    /// Callbacks with an id above `id`, in id order, at most `limit`: the cursor that export and
    /// consumers page with. Ids only grow, so nothing stored later can appear before the cursor.
    func callbacks(after id: Int64, limit: Int, includeDuplicates: Bool) throws(CallbackStoreError) -> [StoredCallback]

    /// The callbacks above `id` that match `filter` (service, requestID, deviceID, since,
    /// includeDuplicates; its `limit` is not used), in id order, at most `limit`: the cursor the
    /// consumer API pages and waits with. `next` is past every id examined, read in the same
    /// view as the page: the last callback's id when the page is full, else the highest id
    /// stored (or `id`, if higher). Ids are assigned in order and become visible in order, so
    /// passing `next` as `after` later never skips a callback and never rescans one that did not
    /// match.
    func page(after id: Int64, matching filter: CallbackFilter, limit: Int) throws(CallbackStoreError) -> CallbackPage

    /// Counts by service, status and UTC day, from one consistent view.
    func stats() throws(CallbackStoreError) -> CallbackStats

    /// The highest id stored; 0 when nothing is.
    func lastID() throws(CallbackStoreError) -> Int64

    /// Waits until a callback with an id above `id` is stored (true) or `timeout` passes (false).
    /// The default polls `lastID`; a backend that hears of its own commits wakes at once.
    func waitForCallbacks(after id: Int64, timeout: Duration) async throws(CallbackStoreError) -> Bool
}

extension CallbackReader {
    public func waitForCallbacks(after id: Int64, timeout: Duration) async throws(CallbackStoreError) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while true {
            if try lastID() > id { return true }
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: min(.milliseconds(25), deadline - ContinuousClock.now))
        }
    }

    /// Calls `row` for every callback stored when the export starts, in id order, a page at a time
    /// (constant memory, and no long read that would hold the writer back). Rethrows what `row` throws.
    public func export(includeDuplicates: Bool, pageSize: Int = 256, _ row: (StoredCallback) throws -> Void) throws {
        let last = try lastID()
        var cursor: Int64 = 0
        while cursor < last {
            let page = try callbacks(after: cursor, limit: pageSize, includeDuplicates: includeDuplicates)
            for callback in page where callback.id <= last { try row(callback) }
            guard let end = page.last?.id, page.count == pageSize, end < last else { return }
            cursor = end
        }
    }
}

/// One page of the cursor (`CallbackReader.page`).
public struct CallbackPage: Sendable, Hashable {
    /// In id order.
    public var callbacks: [StoredCallback]
    /// The cursor to pass as `after` next time.
    public var next: Int64

    public init(callbacks: [StoredCallback], next: Int64) {
        self.callbacks = callbacks
        self.next = next
    }
}

extension CallbackFilter {
    /// Whether `callback` matches every field set (`limit` aside).
    public func matches(_ callback: StoredCallback) -> Bool {
        (includeDuplicates || callback.duplicateOf == nil)
            && (service == nil || callback.service == service)
            && (requestID == nil || callback.requestID == requestID)
            && (deviceID == nil || callback.deviceIDs.contains { $0.id == deviceID })
            && (since == nil || callback.receivedAt >= since!)
    }
}

/// What retention needs; implemented by the store's one writer, so that nothing else writes.
public protocol CallbackMaintenance: Sendable {
    /// Deletes callbacks received before `cutoff` (UTC milliseconds) and returns how many. A kept
    /// repeat whose first delivery goes is relinked to the oldest kept delivery of its key.
    func purge(olderThan cutoff: Int64) async throws(CallbackStoreError) -> Int
}
