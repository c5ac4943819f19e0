import CallbackStore
import Foundation
import Logging
import PostgresStore
import SQLiteStore
import Synchronization
import TestSupport
import Testing
import Vocabulary

/// Every backend, through the store API only.
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    /// `journal`: the journal engine with SQLite as its index, read through its reader.
    /// `postgresql`: a fresh database on the test process's private server.
    case memory, journal, postgresql
    var testDescription: String { rawValue }
}

/// A store opened for one test: the intake, a reader beside it, and maintenance.
final class StoreUnderTest: Sendable {
    let intake: any CallbackIntake
    let reader: any CallbackReader
    let maintenance: any CallbackMaintenance
    private let directory: TemporaryDirectory

    init(_ backend: Backend) throws {
        directory = try TemporaryDirectory()
        switch backend {
        case .memory:
            let store = InMemoryCallbackStore()
            (intake, reader, maintenance) = (store, store, store)
        case .journal:
            // Small segments, so that tests cross segment boundaries.
            let store = try JournalStore(
                databasePath: directory.file("contract.sqlite"), segmentSize: 64 << 10, logger: LogCapture().logger(),
                onFatal: { error in Issue.record("the journal stopped: \(error)") })
            (intake, reader, maintenance) = (store, try store.reader(), store)
        case .postgresql:
            let url = try PostgreSQLServer.shared().makeDatabase(prefix: "contract")
            let store = try PostgreSQLCallbackStore(settings: PostgreSQLSettings(url: url), capacity: 4096, logger: LogCapture().logger())
            (intake, reader, maintenance) = (store, try store.reader(), store)
        }
    }

    deinit { intake.close() }

    /// Submits in order and waits for every receipt.
    func store(_ callbacks: [NewCallback]) async throws -> [CommitReceipt] {
        var receipts: [CommitReceipt] = []
        for callback in callbacks {
            let result = await withCheckedContinuation { (done: CheckedContinuation<Result<CommitReceipt, CallbackStoreError>, Never>) in
                if !intake.submit(callback, completion: { done.resume(returning: $0) }) { done.resume(returning: .failure(.closed)) }
            }
            receipts.append(try result.get())
        }
        // A reader sees a callback soon after its receipt, not necessarily at once (an index may trail).
        if let last = receipts.map(\.id).max() {
            #expect(try await reader.waitForCallbacks(after: last - 1, timeout: .seconds(5)))
        }
        return receipts
    }

    /// The link as stored (a receipt may leave `duplicateOf` to the index).
    func duplicateOf(_ id: Int64) throws -> Int64? { try reader.callback(id: id)?.duplicateOf }
}

func callback(
    _ service: String = "CarrierService", requestID: String? = "r-1", key: String = UUID().uuidString,
    devices: [String] = ["89148000000800000001"], status: String? = "Success", at receivedAt: Int64 = 1_764_633_600_000
) -> NewCallback {
    NewCallback(
        receivedAt: receivedAt, service: service, requestID: requestID,
        deviceIDs: devices.map { DeviceID(id: $0, kind: "iccid") }, status: status, callbackCount: 1,
        remoteAddress: "192.0.2.10", dedupKey: key,
        body: Array(#"{"requestId":"\#(requestID ?? "")","status":"\#(status ?? "")","password":"<redacted>"}"#.utf8))
}

@Suite struct StoreContractTests {
    @Test(arguments: Backend.allCases)
    func storesAndReadsBackWhatWasSubmitted(_ backend: Backend) async throws {
        let store = try StoreUnderTest(backend)
        #expect(try store.reader.lastID() == 0)
        let submitted = [callback(requestID: "a"), callback("DeviceUsage", requestID: nil, status: nil), callback(requestID: "c")]
        let receipts = try await store.store(submitted)
        #expect(receipts.map(\.id) == receipts.map(\.id).sorted() && Set(receipts.map(\.id)).count == 3)
        #expect(try receipts.allSatisfy { try store.duplicateOf($0.id) == nil })
        for (receipt, sent) in zip(receipts, submitted) {
            let stored = try #require(try store.reader.callback(id: receipt.id))
            #expect(stored.callback == sent)
            #expect(stored.duplicateOf == nil)
        }
        #expect(try store.reader.callback(id: receipts.last!.id + 1) == nil)
        #expect(try store.reader.lastID() == receipts.last!.id)
        #expect(store.intake.statistics.committedCallbacks == 3)
    }

    @Test(arguments: Backend.allCases)
    func idsAreUniqueAndGrowUnderConcurrentSubmits(_ backend: Backend) async throws {
        let store = try StoreUnderTest(backend)
        let ids = try await withThrowingTaskGroup(of: [Int64].self) { group in
            for task in 0..<8 {
                group.addTask { try await store.store((0..<25).map { _ in callback(requestID: "t\(task)") }).map(\.id) }
            }
            return try await group.reduce(into: [Int64]()) { $0 += $1 }
        }
        #expect(Set(ids).count == 200)
        #expect(try store.reader.lastID() == ids.max())
        // One submitter's ids grow in its submission order.
        let own = try await store.store((0..<5).map { _ in callback() }).map(\.id)
        #expect(own == own.sorted() && own.first! > ids.max()!)
    }

    @Test(arguments: Backend.allCases)
    func repeatsAreLinkedToTheFirstDelivery(_ backend: Backend) async throws {
        let store = try StoreUnderTest(backend)
        let receipts = try await store.store([
            callback(key: "same"), callback(key: "other"), callback(key: "same"), callback(key: "same"),
        ])
        #expect(try receipts.map { try store.duplicateOf($0.id) } == [nil, nil, receipts[0].id, receipts[0].id])
        // A receipt names the link or leaves it to the index, never a wrong one.
        #expect(zip(receipts.map(\.duplicateOf), [nil, nil, receipts[0].id, receipts[0].id]).allSatisfy { $0 == nil || $0 == $1 })
        let firsts = try store.reader.query(CallbackFilter(limit: 10))
        #expect(firsts.map(\.id) == [receipts[1].id, receipts[0].id])
        #expect(try store.reader.query(CallbackFilter(limit: 10, includeDuplicates: true)).count == 4)
    }

    @Test(arguments: Backend.allCases)
    func queriesFilterAndListNewestFirst(_ backend: Backend) async throws {
        let store = try StoreUnderTest(backend)
        let day: Int64 = 86_400_000
        let r = try await store.store([
            callback("CarrierService", requestID: "x", devices: ["d1"], at: 1_000 * day),
            callback("DeviceUsage", requestID: "y", devices: ["d2", "d1"], at: 1_001 * day),
            callback("CarrierService", requestID: "y", devices: ["d3"], at: 1_002 * day),
        ])
        func ids(_ filter: CallbackFilter) throws -> [Int64] { try store.reader.query(filter).map(\.id) }
        #expect(try ids(CallbackFilter()) == [r[2].id, r[1].id, r[0].id])
        #expect(try ids(CallbackFilter(service: "CarrierService")) == [r[2].id, r[0].id])
        #expect(try ids(CallbackFilter(requestID: "y")) == [r[2].id, r[1].id])
        #expect(try ids(CallbackFilter(deviceID: "d1")) == [r[1].id, r[0].id])
        #expect(try ids(CallbackFilter(since: 1_001 * day)) == [r[2].id, r[1].id])
        #expect(try ids(CallbackFilter(service: "CarrierService", requestID: "y")) == [r[2].id])
        #expect(try ids(CallbackFilter(limit: 1)) == [r[2].id])
        #expect(try ids(CallbackFilter(limit: 0)) == [])
        #expect(try ids(CallbackFilter(requestID: "none")) == [])
    }

    @Test(arguments: Backend.allCases)
    func theCursorPagesInIDOrderAndExportSeesWhatWasStoredAtItsStart(_ backend: Backend) async throws {
        let store = try StoreUnderTest(backend)
        let r = try await store.store([callback(key: "k"), callback(), callback(key: "k"), callback(), callback()])
        let all = r.map(\.id)
        #expect(try store.reader.callbacks(after: 0, limit: 2, includeDuplicates: true).map(\.id) == Array(all[0..<2]))
        #expect(try store.reader.callbacks(after: all[1], limit: 10, includeDuplicates: true).map(\.id) == Array(all[2...]))
        #expect(try store.reader.callbacks(after: 0, limit: 10, includeDuplicates: false).map(\.id) == [all[0], all[1], all[3], all[4]])
        #expect(try store.reader.callbacks(after: all[4], limit: 10, includeDuplicates: true).isEmpty)

        var exported: [Int64] = []
        var storedDuring: [Int64] = []
        try store.reader.export(includeDuplicates: true, pageSize: 2) { row in
            exported.append(row.id)
            if exported.count == 1 {
                // Stored while the export runs: not part of it.
                let semaphore = DispatchSemaphore(value: 0)
                let ids = Mutex<[Int64]>([])
                _ = store.intake.submit(callback()) { result in
                    if case .success(let receipt) = result { ids.withLock { $0.append(receipt.id) } }
                    semaphore.signal()
                }
                _ = semaphore.wait(timeout: .now() + 10)
                storedDuring = ids.withLock { $0 }
            }
        }
        #expect(exported == all)
        #expect(storedDuring.count == 1 && storedDuring[0] > all.last!)
    }

    @Test(arguments: Backend.allCases)
    func aFilteredPageFollowsTheCursorAndItsNextPassesWhatWasExamined(_ backend: Backend) async throws {
        let store = try StoreUnderTest(backend)
        let day: Int64 = 86_400_000
        let r = try await store.store([
            callback("CarrierService", requestID: "x", key: "k", devices: ["d1"], at: 10 * day),
            callback("DeviceUsage", requestID: "y", devices: ["d2"], at: 11 * day),
            callback("CarrierService", requestID: "y", devices: ["d1", "d3"], at: 12 * day),
            callback("CarrierService", requestID: "x", key: "k", devices: ["d1"], at: 13 * day),  // a repeat of r[0]
            callback("CarrierService", requestID: "z", devices: ["d4"], at: 14 * day),
        ])
        let ids = r.map(\.id)
        let last = ids[4]
        func page(_ after: Int64, _ filter: CallbackFilter = CallbackFilter(), limit: Int = 10) throws -> ([Int64], Int64) {
            let page = try store.reader.page(after: after, matching: filter, limit: limit)
            return (page.callbacks.map(\.id), page.next)
        }
        // Unfiltered: first deliveries in id order; a page that is not full ends at the highest id.
        #expect(try page(0) == ([ids[0], ids[1], ids[2], ids[4]], last))
        #expect(try page(0, CallbackFilter(includeDuplicates: true), limit: 2) == ([ids[0], ids[1]], ids[1]))
        #expect(try page(ids[1], CallbackFilter(includeDuplicates: true), limit: 10) == ([ids[2], ids[3], ids[4]], last))
        // Filters: `next` passes every id examined, matching or not.
        #expect(try page(0, CallbackFilter(service: "DeviceUsage")) == ([ids[1]], last))
        #expect(try page(0, CallbackFilter(requestID: "y")) == ([ids[1], ids[2]], last))
        #expect(try page(0, CallbackFilter(requestID: "x", includeDuplicates: true)) == ([ids[0], ids[3]], last))
        #expect(try page(0, CallbackFilter(deviceID: "d1")) == ([ids[0], ids[2]], last))
        #expect(try page(0, CallbackFilter(deviceID: "d1", includeDuplicates: true)) == ([ids[0], ids[2], ids[3]], last))
        #expect(try page(0, CallbackFilter(service: "CarrierService", requestID: "y", deviceID: "d3")) == ([ids[2]], last))
        #expect(try page(0, CallbackFilter(since: 12 * day)) == ([ids[2], ids[4]], last))
        #expect(try page(0, CallbackFilter(requestID: "none")) == ([], last))
        // A full page ends at its last callback; the next one goes on from there.
        #expect(try page(0, CallbackFilter(deviceID: "d1"), limit: 1) == ([ids[0]], ids[0]))
        #expect(try page(ids[0], CallbackFilter(deviceID: "d1"), limit: 1) == ([ids[2]], ids[2]))
        #expect(try page(ids[2], CallbackFilter(deviceID: "d1"), limit: 1) == ([], last))
        // Past the end, or asking for nothing: the cursor stays.
        #expect(try page(last + 100) == ([], last + 100))
        #expect(try page(ids[1], limit: 0) == ([], ids[1]))
        // Later callbacks come after the cursor that was handed out.
        let later = try await store.store([callback("DeviceUsage", requestID: "y"), callback(requestID: "w")]).map(\.id)
        #expect(try page(last, CallbackFilter(requestID: "y")) == ([later[0]], later[1]))
    }

    @Test(arguments: Backend.allCases)
    func followingTheCursorWhileCallbacksAreStoredSeesEachMatchOnce(_ backend: Backend) async throws {
        let store = try StoreUnderTest(backend)
        let total = 300
        async let stored = store.store((0..<total).map { callback(requestID: $0 % 3 == 0 ? "mine" : "other-\($0)") })
        var seen: [Int64] = []
        var cursor: Int64 = 0
        var pages = 0
        let deadline = ContinuousClock.now + .seconds(30)
        while seen.count < total / 3 && ContinuousClock.now < deadline {
            let page = try store.reader.page(after: cursor, matching: CallbackFilter(requestID: "mine"), limit: 7)
            #expect(page.next >= cursor)
            seen += page.callbacks.map(\.id)
            cursor = page.next
            pages += 1
            if page.callbacks.isEmpty { _ = try await store.reader.waitForCallbacks(after: cursor, timeout: .milliseconds(200)) }
        }
        let receipts = try await stored
        let expected = receipts.enumerated().filter { $0.offset % 3 == 0 }.map(\.element.id)
        #expect(seen == expected)
        #expect(pages > 1)
        #expect(try store.reader.page(after: cursor, matching: CallbackFilter(requestID: "mine"), limit: 7).callbacks.isEmpty)
    }

    @Test(arguments: Backend.allCases)
    func statsCountByServiceStatusAndDay(_ backend: Backend) async throws {
        let store = try StoreUnderTest(backend)
        let day: Int64 = 86_400_000
        _ = try await store.store([
            callback("CarrierService", key: "a", status: "Success", at: 20_000 * day),
            callback("CarrierService", key: "a", status: "Success", at: 20_000 * day + 5),
            callback("DeviceUsage", status: nil, at: 20_001 * day),
        ])
        let stats = try store.reader.stats()
        #expect(stats.total == 3 && stats.duplicates == 1)
        #expect(
            stats.byService == [.init(key: "CarrierService", count: 2, duplicates: 1), .init(key: "DeviceUsage", count: 1, duplicates: 0)])
        #expect(stats.byStatus == [.init(key: nil, count: 1, duplicates: 0), .init(key: "Success", count: 2, duplicates: 1)])
        #expect(stats.byDay.map(\.key) == ["2024-10-04", "2024-10-05"])
        #expect(stats.byDay.map(\.count) == [2, 1])
    }

    @Test(arguments: Backend.allCases)
    func purgeDeletesOldCallbacksAndRelinksKeptRepeats(_ backend: Backend) async throws {
        let store = try StoreUnderTest(backend)
        let r = try await store.store([
            callback(key: "k", at: 1_000), callback(at: 1_500), callback(key: "k", at: 3_000), callback(key: "k", at: 4_000),
        ])
        #expect(try await store.maintenance.purge(olderThan: 2_000) == 2)
        #expect(try store.reader.callback(id: r[0].id) == nil)
        #expect(try store.reader.callback(id: r[2].id)?.duplicateOf == nil)  // now the first of its key
        #expect(try store.reader.callback(id: r[3].id)?.duplicateOf == r[2].id)
        #expect(try await store.maintenance.purge(olderThan: 2_000) == 0)
        // A new repeat links to the kept first.
        let next = try await store.store([callback(key: "k", at: 5_000)])
        #expect(try store.duplicateOf(next[0].id) == r[2].id)
    }

    @Test(arguments: Backend.allCases)
    func waitingForNewCallbacksWakesOnAStoreAndTimesOut(_ backend: Backend) async throws {
        let store = try StoreUnderTest(backend)
        #expect(try await store.reader.waitForCallbacks(after: 0, timeout: .milliseconds(100)) == false)
        let first = try await store.store([callback()])[0].id
        #expect(try await store.reader.waitForCallbacks(after: 0, timeout: .seconds(1)))
        async let woken = store.reader.waitForCallbacks(after: first, timeout: .seconds(20))
        try await Task.sleep(for: .milliseconds(100))
        _ = try await store.store([callback()])
        #expect(try await woken)
    }

    @Test(arguments: Backend.allCases)
    func aClosedIntakeRefuses(_ backend: Backend) async throws {
        let store = try StoreUnderTest(backend)
        _ = try await store.store([callback()])
        store.intake.close()
        store.intake.close()  // idempotent
        #expect(!store.intake.submit(callback()) { _ in Issue.record("completion of a refused submit") })
        #expect(try store.reader.lastID() == 1)
    }
}
