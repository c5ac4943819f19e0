import CallbackStore
import Foundation
import Logging
import Synchronization
import TestSupport
import Vocabulary

@testable import SQLiteStore

extension TemporaryDirectory {
    /// Where the tests put the store.
    var databasePath: String { file("callbacks.db") }
}

/// Runs `body` with a fresh temporary directory, removed afterwards.
func withTemporaryDirectory<Result>(_ body: (TemporaryDirectory) throws -> Result) throws -> Result {
    let directory = try TemporaryDirectory()
    return try withExtendedLifetime(directory) { try body(directory) }
}

/// A callback with sensible defaults; the body names the request id so rows are told apart.
func makeCallback(
    receivedAt: Int64 = 1_700_000_000_000,
    service: String = "CarrierService",
    requestID: String? = "req-1",
    devices: [DeviceID] = [DeviceID(id: "990003425730535", kind: "imei")],
    status: String? = "Success",
    callbackCount: Int? = 1,
    dedupKey: String? = nil,
    body: [UInt8]? = nil
) -> NewCallback {
    let request = requestID ?? "none"
    return NewCallback(
        receivedAt: receivedAt,
        service: service,
        requestID: requestID,
        deviceIDs: devices,
        status: status,
        callbackCount: callbackCount,
        remoteAddress: "127.0.0.1",
        dedupKey: dedupKey ?? "key-\(request)-\(service)",
        body: body ?? Array(#"{"requestId":"\#(request)","password":"[REDACTED]"}"#.utf8)
    )
}

let testLogger = Logger(label: "CallbackStoreTests")

/// Collects completions from any thread.
final class CompletionLog: Sendable {
    private let results = Mutex<[Result<CommitReceipt, CallbackStoreError>]>([])

    var completion: GroupCommitWriter.Completion {
        { [self] result in results.withLock { $0.append(result) } }
    }

    var count: Int { results.withLock { $0.count } }
    var all: [Result<CommitReceipt, CallbackStoreError>] { results.withLock { $0 } }

    var receipts: [CommitReceipt] {
        all.compactMap { try? $0.get() }
    }

    var errors: [CallbackStoreError] {
        all.compactMap {
            if case .failure(let error) = $0 { return error }
            return nil
        }
    }

    /// Waits (bounded) until `expected` completions arrived.
    func wait(for expected: Int) -> Bool {
        eventually(within: .seconds(20)) { count >= expected }
    }
}

/// Records the writer's events; can hold the writer thread just before its next commits until
/// released, so submissions pile up behind a "slow" commit.
final class WriterProbe: Sendable {
    private let events = Mutex<[GroupCommitWriter.Event]>([])
    private let holdNext = Mutex<Int>(0)
    private let holdsBegun = Mutex<Int>(0)
    private let release = DispatchSemaphore(value: 0)

    var observer: GroupCommitWriter.Observer {
        { [self] event in events.withLock { $0.append(event) } }
    }

    /// Runs on the writer thread before each commit.
    var beforeCommit: @Sendable () -> Void {
        { [self] in
            let hold = holdNext.withLock { count in
                guard count > 0 else { return false }
                count -= 1
                return true
            }
            if hold {
                holdsBegun.withLock { $0 += 1 }
                _ = release.wait(timeout: .now() + 30)
            }
        }
    }

    /// A writer on `store` that this probe observes and can hold; `sync` makes each batch durable.
    func writer(
        store: SQLiteCallbackStore,
        capacity: Int = 4096,
        maxQueuedBytes: Int = 4 << 20,
        logger: Logger = testLogger,
        sync: @escaping GroupCommitWriter.Sync = { writeAheadLog throws(CallbackStoreError) in try writeAheadLog.sync() }
    ) -> GroupCommitWriter {
        GroupCommitWriter(
            store: store, capacity: capacity, maxQueuedBytes: maxQueuedBytes, logger: logger, observer: observer,
            beforeCommit: beforeCommit, sync: sync)
    }

    /// The next `count` commits wait, each until `resume()`.
    func holdNextBatches(_ count: Int = 1) {
        holdNext.withLock { $0 += count }
    }

    /// Waits (bounded) until the writer thread is held for the `number`th time (counting from 1).
    func waitForHold(_ number: Int) -> Bool {
        eventually(within: .seconds(20)) { holdsBegun.withLock { $0 } >= number }
    }

    func resume() {
        release.signal()
    }

    var all: [GroupCommitWriter.Event] { events.withLock { $0 } }

    var committedBatchSizes: [Int] {
        all.compactMap {
            if case .committed(let size, _) = $0 { return size }
            return nil
        }
    }

    var failedBatchSizes: [Int] {
        all.compactMap {
            if case .failed(let size, _, _) = $0 { return size }
            return nil
        }
    }
}

/// Stands in for the WAL fsync: can hold the next syncs until released, and fail them, as a slow
/// or failing disk would; otherwise really syncs.
final class SyncGate: Sendable {
    private struct State {
        var toHold = 0
        var toFail = 0
        var held = 0
        var calls = 0
    }

    private let state = Mutex(State())
    private let released = DispatchSemaphore(value: 0)

    var sync: GroupCommitWriter.Sync {
        { [self] writeAheadLog throws(CallbackStoreError) in
            let (hold, fail) = state.withLock { state in
                state.calls += 1
                let hold = state.toHold > 0
                let fail = state.toFail > 0
                if hold {
                    state.toHold -= 1
                    state.held += 1
                }
                if fail { state.toFail -= 1 }
                return (hold, fail)
            }
            if hold { _ = released.wait(timeout: .now() + 30) }
            if fail { throw .ioError(message: "fdatasync of \(writeAheadLog.path): Input/output error") }
            try writeAheadLog.sync()
        }
    }

    func holdNext() { state.withLock { $0.toHold += 1 } }
    func failNext(_ count: Int) { state.withLock { $0.toFail += count } }
    func release() { released.signal() }
    var calls: Int { state.withLock { $0.calls } }

    /// Waits (bounded) until a sync is being held.
    func waitForHeld() -> Bool { eventually(within: .seconds(20)) { state.withLock { $0.held } > 0 } }
}
