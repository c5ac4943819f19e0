// The delivery ledger in memory: for tests of the engine and the store-less layers above, and the
// reference the contract suite holds the other backends to.
import Synchronization

public final class InMemoryDeliveryLedger: DeliveryLedger {
    private struct State {
        var cursors: [String: Int64] = [:]
        var records: [String: [Int64: DeliveryRecord]] = [:]
        var disabled: [String: DestinationDisabled] = [:]
        var closed = false
    }

    private let state = Mutex(State())

    public init() {}

    private func withState<R>(_ body: (inout State) throws(CallbackStoreError) -> R) throws(CallbackStoreError) -> R {
        try state.withLock { state throws(CallbackStoreError) -> R in
            guard !state.closed else { throw .closed }
            return try body(&state)
        }
    }

    public func cursor(destination: String) throws(CallbackStoreError) -> Int64? {
        try withState { $0.cursors[destination] }
    }

    public func enqueue(destination: String, _ records: [DeliveryRecord], through cursor: Int64) throws(CallbackStoreError) {
        try withState { state in
            for record in records where state.records[destination]?[record.callbackID] == nil {
                state.records[destination, default: [:]][record.callbackID] = record
            }
            state.cursors[destination] = max(state.cursors[destination] ?? cursor, cursor)
        }
    }

    public func due(
        destination: String, now: Int64, limit: Int, excluding: Set<Int64>, onePerOrderingKey: Bool
    ) throws(CallbackStoreError) -> [DeliveryRecord] {
        try withState { state in
            let waiting = (state.records[destination] ?? [:]).values.filter { !$0.state.isFinal }
            var heads: [String: Int64] = [:]
            if onePerOrderingKey {
                for record in waiting {
                    guard let key = record.orderingKey else { continue }
                    heads[key] = min(heads[key] ?? record.callbackID, record.callbackID)
                }
            }
            return
                waiting
                .filter { record in
                    guard let next = record.nextAttemptAt, next <= now, !excluding.contains(record.callbackID) else { return false }
                    guard onePerOrderingKey, let key = record.orderingKey else { return true }
                    return heads[key] == record.callbackID
                }
                .sorted { ($0.nextAttemptAt ?? 0, $0.callbackID) < ($1.nextAttemptAt ?? 0, $1.callbackID) }
                .prefix(limit).map { $0 }
        }
    }

    public func nextAttemptAt(destination: String) throws(CallbackStoreError) -> Int64? {
        try withState { state in
            (state.records[destination] ?? [:]).values.filter { !$0.state.isFinal }.compactMap(\.nextAttemptAt).min()
        }
    }

    public func update(_ records: [DeliveryRecord]) throws(CallbackStoreError) {
        try withState { state in
            for record in records { state.records[record.destination, default: [:]][record.callbackID] = record }
        }
    }

    public func record(destination: String, callbackID: Int64) throws(CallbackStoreError) -> DeliveryRecord? {
        try withState { $0.records[destination]?[callbackID] }
    }

    public func list(_ filter: DeliveryFilter) throws(CallbackStoreError) -> [DeliveryRecord] {
        try withState { state in
            let destinations = filter.destination.map { [$0] } ?? Array(state.records.keys)
            return
                destinations
                .flatMap { (state.records[$0] ?? [:]).values }
                .filter { $0.callbackID > filter.afterID && (filter.state == nil || $0.state == filter.state) }
                .sorted { ($0.callbackID, $0.destination) < ($1.callbackID, $1.destination) }
                .prefix(filter.limit).map { $0 }
        }
    }

    public func backlog(destination: String) throws(CallbackStoreError) -> DeliveryBacklog {
        try withState { state in
            var backlog = DeliveryBacklog()
            for record in (state.records[destination] ?? [:]).values {
                switch record.state {
                case .pending: backlog.pending += 1
                case .retrying: backlog.retrying += 1
                case .dead: backlog.dead += 1
                case .delivered: continue
                }
                if !record.state.isFinal {
                    backlog.oldestWaitingReceivedAt = min(backlog.oldestWaitingReceivedAt ?? record.receivedAt, record.receivedAt)
                }
            }
            return backlog
        }
    }

    public func retry(destination: String, ids: [Int64]?, now: Int64) throws(CallbackStoreError) -> Int {
        try withState { state in
            let chosen = ids.map(Set.init)
            var count = 0
            for (id, var record) in state.records[destination] ?? [:] where record.state == .dead && chosen?.contains(id) ?? true {
                record.state = .pending
                record.attempts = 0
                record.nextAttemptAt = now
                state.records[destination]?[id] = record
                count += 1
            }
            return count
        }
    }

    public func replay(_ records: [DeliveryRecord], now: Int64) throws(CallbackStoreError) -> Int {
        try withState { state in
            for var record in records {
                let existing = state.records[record.destination]?[record.callbackID]
                record.state = .pending
                record.attempts = 0
                record.nextAttemptAt = now
                record.lastAttemptAt = existing?.lastAttemptAt
                record.lastStatus = existing?.lastStatus
                record.lastError = existing?.lastError
                state.records[record.destination, default: [:]][record.callbackID] = record
            }
            return records.count
        }
    }

    public func disabled(destination: String) throws(CallbackStoreError) -> DestinationDisabled? {
        try withState { $0.disabled[destination] }
    }

    public func setDisabled(destination: String, _ disabled: DestinationDisabled?) throws(CallbackStoreError) {
        try withState { $0.disabled[destination] = disabled }
    }

    public func purge(receivedBefore cutoff: Int64) throws(CallbackStoreError) -> Int {
        try withState { state in
            var count = 0
            for destination in state.records.keys {
                let before = state.records[destination]?.count ?? 0
                state.records[destination] = state.records[destination]?.filter { $0.value.receivedAt >= cutoff }
                count += before - (state.records[destination]?.count ?? 0)
            }
            return count
        }
    }

    public func close() {
        state.withLock { $0.closed = true }
    }
}
