import CallbackStore
import Foundation
import Synchronization
import TestSupport
import Testing
import Vocabulary

@testable import SQLiteStore

/// The journal engine as a whole: acknowledgement after the journal's fdatasync, fail-stop on a
/// failed one, recovery from what is on disk, the index rebuilt, segments removed behind it.
@Suite struct JournalStoreTests {
    /// Submits and waits for every outcome, in order.
    func submitAll(_ store: JournalStore, _ callbacks: [NewCallback]) async -> [Result<CommitReceipt, CallbackStoreError>] {
        await withTaskGroup(of: (Int, Result<CommitReceipt, CallbackStoreError>).self) { group in
            for (index, callback) in callbacks.enumerated() {
                group.addTask {
                    let result = await withCheckedContinuation {
                        (done: CheckedContinuation<Result<CommitReceipt, CallbackStoreError>, Never>) in
                        if !store.submit(callback, completion: { done.resume(returning: $0) }) { done.resume(returning: .failure(.closed)) }
                    }
                    return (index, result)
                }
            }
            var results = [Result<CommitReceipt, CallbackStoreError>?](repeating: nil, count: callbacks.count)
            for await (index, result) in group { results[index] = result }
            return results.map { $0! }
        }
    }

    func acknowledgedIDs(_ results: [Result<CommitReceipt, CallbackStoreError>]) -> [Int64] {
        results.compactMap { try? $0.get().id }
    }

    @Test func aFailedFdatasyncStopsTheStoreAndTheNextStartKeepsEveryAcknowledgedCallback() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("callbacks.sqlite")
        let plan = FaultPlan(error: EIO)
        let fatal = Collector<String>()
        let store = try JournalStore(
            databasePath: path, segmentSize: 64 << 10, io: JournalIO.system.failing(fdatasync: plan), logger: LogCapture().logger(),
            onFatal: { fatal.append("\($0)") })
        let before = await submitAll(store, (0..<50).map { journalCallback($0) })
        let acknowledged = acknowledgedIDs(before)
        #expect(acknowledged.count == 50)
        // The next fdatasync fails: nothing of what follows is acknowledged.
        plan.fail(nextCallsFrom: plan.count + 1, count: 1_000)
        let after = await submitAll(store, (50..<80).map { journalCallback($0) })
        #expect(acknowledgedIDs(after).isEmpty)
        #expect(after.allSatisfy { if case .failure = $0 { true } else { false } })
        #expect(fatal.values.count == 1)
        #expect(fatal.values.first?.contains("fsync") == true)
        #expect(store.isFailing)
        #expect(!store.submit(journalCallback(99)) { _ in Issue.record("completion after the store stopped") })
        store.close()

        // Restarted (the failing disk replaced): every acknowledged callback is there, once.
        let restarted = try JournalStore(
            databasePath: path, segmentSize: 64 << 10, io: .system, logger: LogCapture().logger(), onFatal: { _ in })
        let reader = try restarted.reader()
        for id in acknowledged { #expect(try reader.callback(id: id) != nil) }
        let all = try reader.callbacks(after: 0, limit: 1_000, includeDuplicates: true)
        #expect(Set(all.map(\.requestID)).count == all.count)
        // Ids go on after what is really on disk.
        let next = await submitAll(restarted, [journalCallback(100)])
        #expect(try next[0].get().id > (all.map(\.id).max() ?? 0))
        restarted.close()
    }

    @Test func aFullDiskFailsTheGroupAndRecoversByItself() async throws {
        let directory = try TemporaryDirectory()
        let writes = FaultPlan(error: ENOSPC)
        var io = JournalIO.system
        let realWrite = io.pwrite
        io.pwrite = { fd, bytes, offset in writes.next().map { -Int($0) } ?? realWrite(fd, bytes, offset) }
        let fatal = Collector<String>()
        let store = try JournalStore(
            databasePath: directory.file("callbacks.sqlite"), segmentSize: 64 << 10, io: io, logger: LogCapture().logger(),
            onFatal: { fatal.append("\($0)") })
        writes.fail(nextCallsFrom: writes.count + 1)
        let refused = await submitAll(store, [journalCallback(1)])
        guard case .failure(.full) = refused[0] else {
            Issue.record("expected .full, got \(refused[0])")
            return
        }
        #expect(store.isFailing)
        let stored = await submitAll(store, [journalCallback(2)])
        #expect(try stored[0].get().id == 1)  // the refused one used no id
        #expect(!store.isFailing)
        #expect(fatal.values.isEmpty)
        store.close()
    }

    @Test func theIndexDeletedIsRebuiltFromTheSegments() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("callbacks.sqlite")
        // Large segments: nothing is deleted behind the index in this test.
        var store: JournalStore? = try JournalStore(
            databasePath: path, segmentSize: 1 << 20, io: .system, logger: LogCapture().logger(), onFatal: { _ in })
        let results = await submitAll(store!, (0..<200).map { journalCallback($0 % 150) })
        let ids = acknowledgedIDs(results).sorted()
        #expect(ids == Array(1...200))
        store!.close()
        store = nil
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }

        let rebuilt = try JournalStore(
            databasePath: path, segmentSize: 1 << 20, io: .system, logger: LogCapture().logger(), onFatal: { _ in })
        let reader = try rebuilt.reader()
        let rows = try reader.callbacks(after: 0, limit: 1_000, includeDuplicates: true)
        #expect(rows.map(\.id) == ids)
        #expect(rows.filter { $0.duplicateOf != nil }.count == 50)
        rebuilt.close()
    }

    @Test func segmentsAreRemovedOnceTheIndexHoldsThemDurably() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("callbacks.sqlite")
        let store = try JournalStore(
            databasePath: path, segmentSize: 16 << 10, io: .system, logger: LogCapture().logger(), onFatal: { _ in })
        let journal = JournalDirectory(path: JournalDirectory.path(besideDatabase: path))
        var seen = Set<Int64>()
        for round in 0..<10 {
            _ = await submitAll(store, (0..<20).map { journalCallback(round * 20 + $0, bodySize: 1_000) })
            seen.formUnion(try journal.segments().map(\.firstID))
        }
        #expect(seen.count > 3)  // the load did span many segments (whenever they were removed)
        #expect(await eventuallyAsync(within: .seconds(10)) { ((try? journal.segments().count) ?? 99) <= 2 })
        // The index lags the 200s by design (the newest segment is not removed): wait for it too.
        let reader = try store.reader()
        #expect(await eventuallyAsync(within: .seconds(10)) { (try? reader.lastID()) == 200 })
        store.close()
        // What remains still recovers to the same index.
        let reopened = try JournalStore(
            databasePath: path, segmentSize: 16 << 10, io: .system, logger: LogCapture().logger(), onFatal: { _ in })
        #expect(try reopened.reader().stats().total == 200)
        reopened.close()
    }

    /// `close()` from a completion (the sync thread) only asks the threads to stop; the close from
    /// outside then waits for them.
    @Test func closingFromACompletionDoesNotWaitForItself() async throws {
        let directory = try TemporaryDirectory()
        let store = try JournalStore(
            databasePath: directory.file("callbacks.sqlite"), segmentSize: 1 << 20, io: .system, logger: LogCapture().logger(),
            onFatal: { _ in })
        let answered = DispatchSemaphore(value: 0)
        #expect(
            store.submit(journalCallback(1)) { _ in
                store.close()
                answered.signal()
            })
        #expect(answered.wait(timeout: .now() + 10) == .success)
        store.close()
        #expect(!store.submit(journalCallback(2)) { _ in })
    }

    @Test func everyQuerySeesACallbackSoonAfterItsReceipt() async throws {
        let directory = try TemporaryDirectory()
        let store = try JournalStore(
            databasePath: directory.file("callbacks.sqlite"), segmentSize: 1 << 20, io: .system, logger: LogCapture().logger(),
            onFatal: { _ in })
        let reader = try store.reader()
        let receipt = try await submitAll(store, [journalCallback(1)])[0].get()
        #expect(try await reader.waitForCallbacks(after: receipt.id - 1, timeout: .seconds(5)))
        #expect(try reader.callback(id: receipt.id)?.requestID == "r-1")
        #expect(store.indexLag.records == 0)
        store.close()
    }
}
