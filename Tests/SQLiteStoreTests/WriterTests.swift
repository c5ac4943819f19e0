import CallbackStore
import Dispatch
import Foundation
import Logging
import Synchronization
import TestSupport
import Testing

@testable import SQLiteStore

@Suite("GroupCommitWriter")
struct WriterTests {
    @Test("2,000 submissions from 50 threads each complete once, with distinct stored ids")
    func concurrentSubmits() throws {
        try withTemporaryDirectory { directory in
            let probe = WriterProbe()
            let writer = probe.writer(store: try SQLiteCallbackStore(path: directory.databasePath))
            let log = CompletionLog()
            let refused = Atomic<Int>(0)
            DispatchQueue.concurrentPerform(iterations: 50) { thread in
                for index in 0..<40 {
                    let callback = makeCallback(requestID: "t\(thread)-\(index)", dedupKey: "t\(thread)-\(index)")
                    if !writer.submit(callback, completion: log.completion) {
                        refused.add(1, ordering: .relaxed)
                    }
                }
            }
            #expect(refused.load(ordering: .relaxed) == 0)
            #expect(log.wait(for: 2_000))
            writer.close()

            #expect(log.count == 2_000)
            let receipts = log.receipts
            #expect(receipts.count == 2_000)
            #expect(Set(receipts.map(\.id)).count == 2_000)
            #expect(probe.committedBatchSizes.reduce(0, +) == 2_000)
            #expect(writer.statistics.committedCallbacks == 2_000)
            #expect(writer.statistics.committedBatches == UInt64(probe.committedBatchSizes.count))

            let reader = try SQLiteCallbackStore(path: directory.databasePath, readOnly: true)
            defer { reader.close() }
            var stored = Set<Int64>()
            try reader.export(includeDuplicates: true) { stored.insert($0.id) }
            #expect(stored == Set(receipts.map(\.id)))
        }
    }

    @Test("callbacks that arrive during a commit are committed together in the next one")
    func groupCommitBatches() throws {
        try withTemporaryDirectory { directory in
            let probe = WriterProbe()
            let writer = probe.writer(store: try SQLiteCallbackStore(path: directory.databasePath))
            defer { writer.close() }
            let log = CompletionLog()

            probe.holdNextBatches(1)  // the first commit is "slow"
            #expect(writer.submit(makeCallback(requestID: "first", dedupKey: "first"), completion: log.completion))
            #expect(probe.waitForHold(1))
            for index in 0..<20 {
                #expect(writer.submit(makeCallback(requestID: "r\(index)", dedupKey: "k\(index)"), completion: log.completion))
            }
            #expect(writer.pendingCount == 20)
            probe.resume()

            #expect(log.wait(for: 21))
            #expect(probe.committedBatchSizes == [1, 20])
            #expect(Set(log.receipts.map(\.id)).count == 21)
        }
    }

    @Test("a full queue refuses at once, by count and by body bytes, and never calls that completion")
    func queueFullRefuses() throws {
        try withTemporaryDirectory { directory in
            let probe = WriterProbe()
            let writer = probe.writer(
                store: try SQLiteCallbackStore(path: directory.databasePath), capacity: 3, maxQueuedBytes: 1_000)
            defer { writer.close() }
            let log = CompletionLog()

            probe.holdNextBatches(1)
            #expect(writer.submit(makeCallback(dedupKey: "held"), completion: log.completion))
            #expect(probe.waitForHold(1))
            for index in 0..<3 {
                #expect(writer.submit(makeCallback(dedupKey: "k\(index)"), completion: log.completion))
            }
            #expect(!writer.submit(makeCallback(dedupKey: "one too many"), completion: log.completion))
            #expect(writer.pendingCount == 3)
            probe.resume()
            #expect(log.wait(for: 4))

            // By bytes: 600 + 600 exceeds 1,000, but one large callback alone is accepted.
            probe.holdNextBatches(1)
            #expect(writer.submit(makeCallback(dedupKey: "held again"), completion: log.completion))
            #expect(probe.waitForHold(2))
            let large = [UInt8](repeating: UInt8(ascii: " "), count: 600)
            #expect(writer.submit(makeCallback(dedupKey: "big1", body: large), completion: log.completion))
            #expect(!writer.submit(makeCallback(dedupKey: "big2", body: large), completion: log.completion))
            #expect(writer.submit(makeCallback(dedupKey: "small", body: Array("{}".utf8)), completion: log.completion))
            probe.resume()
            #expect(log.wait(for: 7))
            writer.close()
            #expect(log.count == 7)
            #expect(log.errors.isEmpty)
        }
    }

    @Test("a store failure fails the whole batch, is logged once, and the writer recovers")
    func failureAndRecovery() throws {
        try withTemporaryDirectory { directory in
            let store = try SQLiteCallbackStore(path: directory.databasePath)
            let probe = WriterProbe()
            let logs = LogCapture()
            let logger = logs.logger("capture")
            let writer = probe.writer(store: store, logger: logger)
            defer { writer.close() }
            let log = CompletionLog()
            let body = [UInt8](repeating: UInt8(ascii: "x"), count: 20_000)  // needs new pages

            #expect(writer.submit(makeCallback(requestID: "before", dedupKey: "before"), completion: log.completion))
            #expect(log.wait(for: 1))

            // While the next commit is held, cap the file at its current size on the writer's
            // connection (the writer thread waits): no batch can grow it, as on a full disk.
            probe.holdNextBatches(1)
            #expect(writer.submit(makeCallback(requestID: "lost0", dedupKey: "lost0", body: body), completion: log.completion))
            #expect(probe.waitForHold(1))
            try store.executeForTesting("PRAGMA max_page_count = 1")
            for index in 1...2 {
                #expect(
                    writer.submit(makeCallback(requestID: "lost\(index)", dedupKey: "lost\(index)", body: body), completion: log.completion)
                )
            }
            probe.holdNextBatches(1)  // hold again before the next batch
            probe.resume()
            #expect(probe.waitForHold(2))

            #expect(probe.failedBatchSizes == [1])
            #expect(log.count == 2)
            #expect(log.errors.count == 1)
            #expect(writer.isFailing)

            // The second failing batch is not logged again.
            probe.holdNextBatches(1)
            #expect(writer.submit(makeCallback(requestID: "after", dedupKey: "after", body: body), completion: log.completion))
            probe.resume()
            #expect(probe.waitForHold(3))
            #expect(probe.failedBatchSizes == [1, 2])
            #expect(log.errors.count == 3)
            #expect(log.errors.allSatisfy { if case .full = $0 { true } else { false } })
            #expect(log.errors.allSatisfy { !$0.description.contains("xxxx") && $0.description.contains("free disk space") })
            #expect(writer.isFailing)

            // The disk "has space again".
            try store.executeForTesting("PRAGMA max_page_count = 1073741823")
            probe.resume()
            #expect(log.wait(for: 5))
            #expect(log.receipts.count == 2)
            #expect(!writer.isFailing)
            writer.close()

            let errorLogs = logs.all.filter { $0.level >= .error }
            #expect(errorLogs.count == 1)
            #expect(logs.all.filter { $0.message.contains("recovered") }.count == 1)
            #expect(!logs.all.contains { $0.metadata.description.contains("xxxx") })
            #expect(writer.statistics.failedBatches == 2)
            #expect(writer.statistics.failedCallbacks == 3)

            let reader = try SQLiteCallbackStore(path: directory.databasePath, readOnly: true)
            defer { reader.close() }
            let stored = try reader.query(CallbackFilter(limit: 10, includeDuplicates: true)).compactMap(\.requestID)
            #expect(Set(stored) == ["before", "after"])
        }
    }

    @Test("a batch is acknowledged only after its sync, and the next one is written while it syncs")
    func acknowledgesAfterSyncAndPipelines() throws {
        try withTemporaryDirectory { directory in
            let gate = SyncGate()
            let probe = WriterProbe()
            let writer = probe.writer(store: try SQLiteCallbackStore(path: directory.databasePath), sync: gate.sync)
            defer { writer.close() }
            let log = CompletionLog()

            gate.holdNext()
            #expect(writer.submit(makeCallback(requestID: "a"), completion: log.completion))
            #expect(gate.waitForHeld())
            #expect(writer.submit(makeCallback(requestID: "b"), completion: log.completion))
            // b is committed (a reader sees both rows) while a's sync is held, and neither is acknowledged.
            let reader = try SQLiteCallbackStore(path: directory.databasePath, readOnly: true)
            defer { reader.close() }
            #expect(eventually(within: .seconds(20)) { (try? reader.stats().total) == 2 })
            #expect(log.count == 0)
            #expect(probe.committedBatchSizes.isEmpty)

            gate.release()
            #expect(log.wait(for: 2))
            #expect(log.receipts.count == 2)
            #expect(gate.calls == 2)
            #expect(probe.committedBatchSizes == [1, 1])
        }
    }

    @Test("a failed sync fails its batch, is logged once per episode, and a good sync ends it")
    func failedSync() throws {
        try withTemporaryDirectory { directory in
            let gate = SyncGate()
            let logs = LogCapture()
            let logger = logs.logger("capture")
            let writer = WriterProbe().writer(
                store: try SQLiteCallbackStore(path: directory.databasePath), logger: logger, sync: gate.sync)
            defer { writer.close() }
            let log = CompletionLog()

            gate.failNext(2)
            #expect(writer.submit(makeCallback(requestID: "a"), completion: log.completion))
            #expect(log.wait(for: 1))
            #expect(eventually(within: .seconds(20)) { writer.isFailing })
            #expect(writer.submit(makeCallback(requestID: "b"), completion: log.completion))
            #expect(log.wait(for: 2))
            #expect(log.errors.count == 2)
            #expect(log.errors.allSatisfy { if case .ioError = $0 { true } else { false } })
            #expect(writer.isFailing)

            #expect(writer.submit(makeCallback(requestID: "c"), completion: log.completion))
            #expect(log.wait(for: 3))
            #expect(log.receipts.count == 1)
            #expect(eventually(within: .seconds(20)) { !writer.isFailing })
            writer.close()

            #expect(logs.all.filter { $0.level >= .error }.count == 1)
            #expect(logs.all.filter { $0.message.contains("recovered") }.count == 1)
            #expect(writer.statistics.failedBatches == 2)
            #expect(writer.statistics.committedCallbacks == 1)
        }
    }

    @Test("batches committed behind a failed sync fail too, even when their own sync would work, until the WAL is whole on disk again")
    func failedSyncPoisonsWhatFollows() throws {
        try withTemporaryDirectory { directory in
            let gate = SyncGate()
            let logs = LogCapture()
            let logger = logs.logger("capture")
            let store = try SQLiteCallbackStore(path: directory.databasePath, logger: logger)
            let writer = WriterProbe().writer(store: store, logger: logger, sync: gate.sync)
            defer { writer.close() }
            let log = CompletionLog()

            gate.holdNext()
            gate.failNext(1)
            #expect(writer.submit(makeCallback(requestID: "a"), completion: log.completion))
            #expect(gate.waitForHeld())
            #expect(writer.submit(makeCallback(requestID: "b"), completion: log.completion))
            let reader = try SQLiteCallbackStore(path: directory.databasePath, readOnly: true)
            #expect(eventually(within: .seconds(20)) { (try? reader.stats().total) == 2 })  // b is committed behind a
            reader.close()
            gate.release()  // a's sync fails
            #expect(log.wait(for: 2))
            #expect(log.errors.count == 2)
            #expect(gate.calls == 1)  // b failed without a sync of its own
            #expect(eventually(within: .seconds(20)) { writer.isFailing })

            // The next batch first writes the WAL back whole and syncs it, then commits and syncs.
            #expect(writer.submit(makeCallback(requestID: "c"), completion: log.completion))
            #expect(log.wait(for: 3))
            #expect(log.receipts.count == 1)
            #expect(gate.calls == 2)
            #expect(eventually(within: .seconds(20)) { !writer.isFailing })
            writer.close()
            #expect(logs.all.contains { $0.message.contains("written back and synced after a failed fdatasync") })
            #expect(logs.all.filter { $0.level >= .error }.count == 1)
            #expect(logs.all.filter { $0.message.contains("recovered") }.count == 1)
        }
    }

    @Test("after a failed sync no background checkpoint copies the WAL until it is whole on disk again")
    func failedSyncPausesCheckpoints() throws {
        try withTemporaryDirectory { directory in
            let path = directory.databasePath
            let gate = SyncGate()
            let writer = WriterProbe().writer(store: try SQLiteCallbackStore(path: path), sync: gate.sync)
            defer { writer.close() }
            let log = CompletionLog()
            let body = [UInt8](repeating: UInt8(ascii: " "), count: 200_000)

            let sizeBefore = try fileSize(path)
            gate.failNext(1)
            #expect(writer.submit(makeCallback(requestID: "a", body: body), completion: log.completion))
            #expect(log.wait(for: 1))
            Thread.sleep(forTimeInterval: 0.3)  // six checkpoint rounds
            #expect(try fileSize(path) == sizeBefore)

            #expect(writer.submit(makeCallback(requestID: "b"), completion: log.completion))
            #expect(log.wait(for: 2))
            #expect(log.receipts.count == 1)
            #expect(eventually(within: .seconds(20)) { ((try? fileSize(path)) ?? 0) > sizeBefore + 150_000 })
        }
    }

    @Test("committed pages reach the database file in the background, long before the WAL's own checkpoint")
    func checkpointsInTheBackground() throws {
        try withTemporaryDirectory { directory in
            let path = directory.databasePath
            let writer = GroupCommitWriter(store: try SQLiteCallbackStore(path: path), logger: testLogger)
            defer { writer.close() }
            let sizeBefore = try fileSize(path)
            let log = CompletionLog()
            // About 100 pages: far below the 2,000 pages of the writer's automatic checkpoint.
            let body = [UInt8](repeating: UInt8(ascii: " "), count: 4_000)
            for index in 0..<100 {
                #expect(writer.submit(makeCallback(requestID: "r\(index)", body: body), completion: log.completion))
            }
            #expect(log.wait(for: 100))
            #expect(eventually(within: .seconds(20)) { ((try? fileSize(path)) ?? 0) > sizeBefore + 300_000 })
        }
    }

    @Test("a database file removed under the writer is recreated at its path, nothing goes to the lost file")
    func reopensAfterTheFileMoved() throws {
        try withTemporaryDirectory { directory in
            let path = directory.databasePath
            let logs = LogCapture()
            let logger = logs.logger("capture")
            let writer = GroupCommitWriter(store: try SQLiteCallbackStore(path: path, logger: logger), logger: testLogger)
            defer { writer.close() }
            let log = CompletionLog()
            #expect(writer.submit(makeCallback(requestID: "r1", dedupKey: "1"), completion: log.completion))
            #expect(log.wait(for: 1))

            try FileManager.default.moveItem(atPath: path, toPath: directory.path + "/rotated.db")
            #expect(writer.submit(makeCallback(requestID: "r2", dedupKey: "2"), completion: log.completion))
            #expect(log.wait(for: 2))
            #expect(log.receipts.count == 2)
            #expect(logs.all.contains { $0.level == .warning && $0.message.contains("moved or deleted") })
            writer.close()

            let reader = try SQLiteCallbackStore(path: path, readOnly: true)
            defer { reader.close() }
            #expect(try reader.query(CallbackFilter()).compactMap(\.requestID) == ["r2"])
            #expect(try sqliteValue(directory.path + "/rotated.db", "SELECT group_concat(request_id) FROM callbacks") == "r1")
        }
    }

    @Test("close commits what is queued, refuses new submissions and is idempotent")
    func closeCommitsPending() throws {
        try withTemporaryDirectory { directory in
            let probe = WriterProbe()
            let writer = probe.writer(store: try SQLiteCallbackStore(path: directory.databasePath))
            let log = CompletionLog()
            probe.holdNextBatches(1)
            #expect(writer.submit(makeCallback(dedupKey: "held"), completion: log.completion))
            #expect(probe.waitForHold(1))
            for index in 0..<10 {
                #expect(writer.submit(makeCallback(dedupKey: "k\(index)"), completion: log.completion))
            }

            let closed = DispatchSemaphore(value: 0)
            Thread.detachNewThread {
                writer.close()
                closed.signal()
            }
            // Once close() has begun, submissions are refused; those accepted before are committed.
            var accepted = 11
            #expect(
                eventually(within: .seconds(20)) {
                    if writer.submit(makeCallback(dedupKey: "late\(accepted)"), completion: log.completion) {
                        accepted += 1
                        return false
                    }
                    return true
                })
            probe.resume()
            #expect(closed.wait(timeout: .now() + 30) == .success)

            #expect(log.count == accepted)
            #expect(log.receipts.count == accepted)
            writer.close()
            #expect(!writer.submit(makeCallback(dedupKey: "after close"), completion: log.completion))

            let reader = try SQLiteCallbackStore(path: directory.databasePath, readOnly: true)
            defer { reader.close() }
            #expect(try reader.stats().total == accepted)
        }
    }

    @Test("close from a completion does not deadlock; the heartbeat advances while idle")
    func closeFromCompletionAndHeartbeat() throws {
        try withTemporaryDirectory { directory in
            let writer = GroupCommitWriter(store: try SQLiteCallbackStore(path: directory.databasePath), logger: testLogger)
            let start = writer.progressHeartbeat
            #expect(eventually(within: .seconds(20)) { writer.progressHeartbeat > start + 1 })

            let done = DispatchSemaphore(value: 0)
            #expect(
                writer.submit(makeCallback()) { result in
                    writer.close()
                    if case .success = result { done.signal() }
                })
            #expect(done.wait(timeout: .now() + 30) == .success)
            writer.close()
            #expect(!writer.submit(makeCallback()) { _ in })
        }
    }
}

private func fileSize(_ path: String) throws -> Int {
    (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
}
