// A store kept in memory: the reference the contract suite holds every
// backend to, and a real store for tests of the layers above that need no
// files. Not durable, so never used by `serve`.
import Dispatch
import Synchronization
import Vocabulary

public final class InMemoryCallbackStore: CallbackIntake, CallbackReader, CallbackMaintenance {
    private struct State {
        var rows: [StoredCallback] = []
        /// The first stored id of each dedup key.
        var firstOfKey: [String: Int64] = [:]
        var nextID: Int64 = 1
        var closed = false
        var statistics = IntakeStatistics()
    }

    private let state = Mutex(State())
    private let arrivals = ArrivalWaiters()
    private let heartbeat = Atomic<UInt64>(0)
    /// Completions run here, never on the submitter's thread, as with a real writer.
    private let completions = DispatchQueue(label: "InMemoryCallbackStore.completions")

    public init() {}

    // MARK: Intake

    public func submit(_ callback: NewCallback, completion: @escaping Completion) -> Bool {
        let receipt = state.withLock { state -> CommitReceipt? in
            guard !state.closed else { return nil }
            let id = state.nextID
            state.nextID += 1
            let original = state.firstOfKey[callback.dedupKey]
            if original == nil { state.firstOfKey[callback.dedupKey] = id }
            state.rows.append(StoredCallback(id: id, duplicateOf: original, callback: callback))
            state.statistics.committedBatches += 1
            state.statistics.committedCallbacks += 1
            return CommitReceipt(id: id, duplicateOf: original)
        }
        guard let receipt else { return false }
        heartbeat.add(1, ordering: .relaxed)
        arrivals.stored(upTo: receipt.id)
        completions.async { completion(.success(receipt)) }
        return true
    }

    public var isFailing: Bool { false }
    public var progressHeartbeat: UInt64 { heartbeat.load(ordering: .relaxed) }
    public var statistics: IntakeStatistics { state.withLock { $0.statistics } }

    public func close() {
        state.withLock { $0.closed = true }
        completions.sync {}  // every completion given so far has run
    }

    // MARK: Reading

    public func query(_ filter: CallbackFilter) throws(CallbackStoreError) -> [StoredCallback] {
        guard filter.limit > 0 else { return [] }
        let rows = state.withLock { $0.rows }.sorted { ($0.receivedAt, $0.id) > ($1.receivedAt, $1.id) }
        return Array(rows.lazy.filter(filter.matches).prefix(filter.limit))
    }

    public func callback(id: Int64) throws(CallbackStoreError) -> StoredCallback? {
        state.withLock { state in state.rows.first { $0.id == id } }
    }

    public func callbacks(after id: Int64, limit: Int, includeDuplicates: Bool) throws(CallbackStoreError) -> [StoredCallback] {
        guard limit > 0 else { return [] }
        let rows = state.withLock { $0.rows }
        return Array(rows.lazy.filter { $0.id > id && (includeDuplicates || $0.duplicateOf == nil) }.prefix(limit))
    }

    public func page(after id: Int64, matching filter: CallbackFilter, limit: Int) throws(CallbackStoreError) -> CallbackPage {
        // One lock: the page and the highest id are one view.
        let (rows, last) = state.withLock { state in (state.rows, state.rows.last?.id ?? 0) }
        guard limit > 0 else { return CallbackPage(callbacks: [], next: id) }
        let start = rows.partitionPoint { $0.id <= id }
        var found: [StoredCallback] = []
        for row in rows[start...] where filter.matches(row) {
            found.append(row)
            if found.count == limit { return CallbackPage(callbacks: found, next: row.id) }
        }
        return CallbackPage(callbacks: found, next: max(id, last))
    }

    public func stats() throws(CallbackStoreError) -> CallbackStats {
        let rows = state.withLock { $0.rows }
        func counts(_ key: (StoredCallback) -> String?) -> [CallbackStats.Count] {
            var tally: [String?: (Int, Int)] = [:]
            for row in rows {
                let current = tally[key(row)] ?? (0, 0)
                tally[key(row)] = (current.0 + 1, current.1 + (row.isDuplicate ? 1 : 0))
            }
            return tally.map { CallbackStats.Count(key: $0.key, count: $0.value.0, duplicates: $0.value.1) }
                .sorted { ($0.key ?? "") < ($1.key ?? "") || ($0.key == nil && $1.key != nil) }
        }
        return CallbackStats(
            total: rows.count, duplicates: rows.filter(\.isDuplicate).count,
            byService: counts { $0.service }, byStatus: counts { $0.status },
            byDay: counts { String(Timekeeping.iso8601(milliseconds: $0.receivedAt).prefix(10)) })
    }

    public func lastID() throws(CallbackStoreError) -> Int64 {
        state.withLock { $0.rows.last?.id ?? 0 }
    }

    public func waitForCallbacks(after id: Int64, timeout: Duration) async throws(CallbackStoreError) -> Bool {
        await arrivals.wait(after: id, timeout: timeout)
    }

    // MARK: Maintenance

    public func purge(olderThan cutoff: Int64) async throws(CallbackStoreError) -> Int {
        state.withLock { state in
            let before = state.rows.count
            state.rows.removeAll { $0.receivedAt < cutoff }
            // Relink: the oldest kept delivery of each key becomes its first.
            var first: [String: Int64] = [:]
            for index in state.rows.indices {
                let key = state.rows[index].dedupKey
                if let original = first[key] {
                    state.rows[index].duplicateOf = original
                } else {
                    first[key] = state.rows[index].id
                    state.rows[index].duplicateOf = nil
                }
            }
            state.firstOfKey = first
            return before - state.rows.count
        }
    }
}

extension Array {
    /// The index of the first element for which `isBefore` is false; the array is ordered so that
    /// `isBefore` holds for a prefix.
    fileprivate func partitionPoint(_ isBefore: (Element) -> Bool) -> Int {
        var low = 0
        var high = count
        while low < high {
            let middle = (low + high) / 2
            if isBefore(self[middle]) { low = middle + 1 } else { high = middle }
        }
        return low
    }
}
