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

    var completion: CallbackIntake.Completion {
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

extension SQLiteCallbackStore {
    /// Stores the batch in one transaction, as the journal's indexer would, with the next ids
    /// (a quick synchronous way to put rows in). Each receipt's `duplicateOf` is the first stored
    /// callback with the same dedup key, an earlier one of this batch included.
    func insert(_ batch: [NewCallback]) throws(CallbackStoreError) -> [CommitReceipt] {
        let first = try lastID() + 1
        let records = batch.enumerated().map { JournalRecord(id: first + Int64($0.offset), callback: $0.element) }
        return try index(records, through: JournalPosition(segmentFirstID: first, offset: 0, nextID: first + Int64(batch.count)))
    }
}
