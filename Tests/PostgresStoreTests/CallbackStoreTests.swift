// What only a shared database brings: several instances on one database, a server that goes
// away, passwords, and the import from another store. What every backend promises is in
// CallbackStoreContractTests.
import CallbackStore
import Dispatch
import Foundation
import Logging
import Synchronization
import TestSupport
import Testing
import Vocabulary

@testable import PostgresStore

private func makeCallback(key: String = UUID().uuidString, requestID: String? = "r-1", at receivedAt: Int64 = 1_764_633_600_000)
    -> NewCallback
{
    NewCallback(
        receivedAt: receivedAt, service: "CarrierService", requestID: requestID,
        deviceIDs: [DeviceID(id: "89148000000800000001", kind: "iccid")], status: "Success", callbackCount: 1,
        remoteAddress: "192.0.2.10", dedupKey: key, body: Array(#"{"requestId":"r-1"}"#.utf8))
}

private func openStore(_ url: String, password: String? = nil) throws -> PostgreSQLCallbackStore {
    try PostgreSQLCallbackStore(settings: PostgreSQLSettings(url: url, password: password), capacity: 4096, logger: LogCapture().logger())
}

/// A session in a transaction holding the lock under which groups allocate ids: every group of
/// every instance waits until it commits.
private func holdingTheAllocationLock(_ url: String) throws -> PostgreSQLConnection {
    let holder = try PostgreSQLConnection(PostgreSQLSettings(url: url))
    try holder.execute("BEGIN")
    try holder.query("SELECT pg_advisory_xact_lock($1)", [.int(PostgreSQLSchema.allocationLock)])
    return holder
}

/// Submits every callback at once and waits (bounded) for every completion; a refused submit is `.closed`.
private func submitAll(
    _ intake: any CallbackIntake, _ callbacks: [NewCallback], timeout: Duration = .seconds(30)
) -> [Result<CommitReceipt, CallbackStoreError>] {
    let results = Mutex([Result<CommitReceipt, CallbackStoreError>?](repeating: nil, count: callbacks.count))
    let done = DispatchGroup()
    for (index, callback) in callbacks.enumerated() {
        done.enter()
        let accepted = intake.submit(callback) { result in
            results.withLock { $0[index] = result }
            done.leave()
        }
        if !accepted {
            results.withLock { $0[index] = .failure(.closed) }
            done.leave()
        }
    }
    _ = done.wait(timeout: .now() + .milliseconds(Int(timeout.components.seconds * 1000)))
    return results.withLock { $0.map { $0 ?? .failure(.backend(message: "no completion within \(timeout)")) } }
}

/// Every callback stored, in id order, read a page at a time.
private func everything(_ reader: any CallbackReader) throws -> [StoredCallback] {
    var all: [StoredCallback] = []
    while true {
        let page = try reader.callbacks(after: all.last?.id ?? 0, limit: 500, includeDuplicates: true)
        guard !page.isEmpty else { return all }
        all += page
    }
}

@Suite struct CallbackStoreTests {
    @Test func twoInstancesReceivingOneKeyAtOnceAgreeOnItsFirstDelivery() throws {
        let url = try PostgreSQLServer.shared().makeDatabase(prefix: "dedup")
        let stores = try [openStore(url), openStore(url)]
        defer { for store in stores { store.close() } }
        var receipts: [String: [CommitReceipt]] = [:]
        for round in 0..<30 {
            let keys = (0..<8).map { "round-\(round)-key-\($0)" }
            // Each instance receives every key twice (ThingSpace retrying), both at the same moment.
            let results = onThreads(2) { instance in submitAll(stores[instance], (keys + keys).map { makeCallback(key: $0) }) }
            for result in results {
                for (key, outcome) in zip(keys + keys, result) { receipts[key, default: []].append(try outcome.get()) }
            }
        }
        let reader = try stores[0].reader()
        let stored = Dictionary(uniqueKeysWithValues: try everything(reader).map { ($0.id, $0) })
        #expect(stored.count == 30 * 8 * 4)
        for (key, group) in receipts {
            let firsts = group.filter { $0.duplicateOf == nil }
            #expect(firsts.count == 1, "key \(key): \(group)")
            guard let first = firsts.first else { continue }
            #expect(first.id == group.map(\.id).min())
            #expect(group.allSatisfy { $0.id == first.id || $0.duplicateOf == first.id })
            // As stored, too.
            #expect(group.allSatisfy { stored[$0.id]?.duplicateOf == $0.duplicateOf && stored[$0.id]?.dedupKey == key })
        }
    }

    @Test func aCursorFollowingTwoInstancesUnderLoadSeesEveryCallbackOnceInOrder() async throws {
        let url = try PostgreSQLServer.shared().makeDatabase(prefix: "cursor")
        let stores = try [openStore(url), openStore(url)]
        defer { for store in stores { store.close() } }
        let reader = try stores[0].reader()
        let perInstance = 600
        async let submitted = blocking {
            onThreads(2) { instance in
                // Waves of 40, so that batches of both instances interleave.
                (0..<(perInstance / 40)).flatMap { _ in submitAll(stores[instance], (0..<40).map { _ in makeCallback() }) }
            }
        }
        var seen: [Int64] = []
        var cursor: Int64 = 0
        let deadline = ContinuousClock.now + .seconds(60)
        while seen.count < 2 * perInstance && ContinuousClock.now < deadline {
            let page = try reader.page(after: cursor, matching: CallbackFilter(includeDuplicates: true), limit: 13)
            #expect(page.next >= cursor)
            seen += page.callbacks.map(\.id)
            cursor = page.next
            if page.callbacks.isEmpty { _ = try await reader.waitForCallbacks(after: cursor, timeout: .milliseconds(200)) }
        }
        let ids = try await submitted.flatMap { try $0.map { try $0.get().id } }
        #expect(ids.count == 2 * perInstance)
        #expect(Set(ids).count == ids.count)
        #expect(seen == ids.sorted())
        #expect(try reader.page(after: cursor, matching: CallbackFilter(includeDuplicates: true), limit: 13).callbacks.isEmpty)
    }

    // Synchronous, threads only: nothing here waits for the (small) pool of Swift concurrency.
    @Test func aServerRestartedUnderLoadFailsWithUnavailableAndLosesNothingAcknowledged() throws {
        let server = try PostgreSQLServer()
        let url = try server.makeDatabase(prefix: "restart")
        let store = try openStore(url)
        defer { store.close() }
        let reader = try store.reader()
        let acknowledged = Collector<Int64>()
        let failures = Collector<CallbackStoreError>()
        let stop = Flag()
        let sawFailing = Flag()
        let loadDone = DispatchSemaphore(value: 0)
        let load = Thread {
            _ = onThreads(4) { _ in
                let started = ContinuousClock.now
                while !stop.isSet && ContinuousClock.now - started < .seconds(60) {
                    for result in submitAll(store, (0..<10).map { _ in makeCallback() }, timeout: .seconds(15)) {
                        switch result {
                        case .success(let receipt): acknowledged.append(receipt.id)
                        case .failure(let error): failures.append(error)
                        }
                    }
                    if store.isFailing { sawFailing.set() }
                }
            }
            loadDone.signal()
        }
        load.start()
        #expect(eventually(within: .seconds(10)) { acknowledged.values.count >= 100 })
        try server.restart()
        let afterRestart = acknowledged.values.count
        // Storing resumes by itself.
        #expect(eventually(within: .seconds(30)) { acknowledged.values.count >= afterRestart + 200 })
        stop.set()
        #expect(loadDone.wait(timeout: .now() + 90) == .success)
        #expect(!failures.values.isEmpty)
        #expect(failures.values.allSatisfy { if case .unavailable = $0 { true } else { false } }, "\(failures.values.prefix(3))")
        #expect(sawFailing.isSet)
        #expect(eventually(within: .seconds(10)) { !store.isFailing })
        // The reader's connection broke too: it reconnects on a later call.
        #expect(eventually(within: .seconds(10)) { (try? reader.lastID()) != nil })
        let stored = Set(try everything(reader).map(\.id))
        #expect(Set(acknowledged.values).isSubset(of: stored))
        #expect(store.statistics.failedCallbacks == UInt64(failures.values.count))
    }

    /// With one writer, and with three (each reconnects; none refuses while another is connected).
    @Test(arguments: [1, 3])
    func whileTheServerIsDownCallbacksFailPromptlyAndStoringResumesByItself(writers: Int) async throws {
        let server = try PostgreSQLServer()
        // The role that needs a password, given in the settings: it must be in no message or log line.
        let url = try server.makeDatabase(prefix: "down").replacing(
            "user=\(PostgreSQLServer.user) ", with: "user=\(PostgreSQLServer.passwordUser) ")
        let logs = LogCapture()
        let events = Collector<PostgreSQLCallbackStore.Event>()
        let store = try PostgreSQLCallbackStore(
            settings: PostgreSQLSettings(url: url, password: PostgreSQLServer.password), capacity: 4096, writers: writers,
            logger: logs.logger(), observer: { events.append($0) })
        defer { store.close() }
        let reader = try store.reader()
        // What blocks runs on threads of its own (`blocking`), never on the pool the waits need.
        let before = try await blocking { try submitAll(store, [makeCallback()])[0].get().id }
        try await blocking { try server.stop() }
        #expect(await eventuallyAsync(within: .seconds(10)) { store.isFailing })
        let heartbeat = store.progressHeartbeat
        let attempts = try await blocking {
            (0..<5).map { _ in
                let started = ContinuousClock.now
                let result = submitAll(store, [makeCallback()], timeout: .seconds(5))[0]
                return (ContinuousClock.now - started, result)
            }
        }
        for (elapsed, result) in attempts {
            #expect(elapsed < .seconds(1))
            guard case .failure(let error) = result, case .unavailable = error else {
                Issue.record("not unavailable while the server is down: \(result)")
                continue
            }
            #expect(!error.description.contains(PostgreSQLServer.password))
        }
        let readWhileDown = try await blocking { Result { () throws(CallbackStoreError) in try reader.lastID() } }
        guard case .failure(let readError) = readWhileDown, case .unavailable = readError else {
            Issue.record("the reader while the server is down: \(readWhileDown)")
            return
        }
        #expect(!readError.description.contains(PostgreSQLServer.password))
        // The writer turns while it reconnects (the watchdog must not fire).
        #expect(await eventuallyAsync(within: .seconds(5)) { store.progressHeartbeat > heartbeat + 2 })
        #expect(store.isFailing)
        try await blocking { try server.start() }
        let stored = try await blocking {
            var stored: Int64?
            _ = eventually(within: .seconds(20)) {
                stored = try? submitAll(store, [makeCallback()], timeout: .seconds(5))[0].get().id
                return stored != nil
            }
            return stored
        }
        let after = try #require(stored)
        #expect(after > before)
        #expect(!store.isFailing)
        // The reader follows: it reconnects, and its waits wake again.
        #expect(await eventuallyAsync(within: .seconds(10)) { (try? reader.lastID()) == after })
        async let woken = reader.waitForCallbacks(after: after, timeout: .seconds(20))
        try await Task.sleep(for: .milliseconds(100))
        _ = try await blocking { submitAll(store, [makeCallback()]) }
        #expect(try await woken)
        #expect(logs.lines.contains { $0.contains("Lost the connection") } && logs.lines.contains { $0.contains("Reconnected") })
        #expect(!logs.lines.contains { $0.contains(PostgreSQLServer.password) })
        let failedBatches = events.values.filter { if case .failed(_, _, .unavailable) = $0 { true } else { false } }
        #expect(failedBatches.count >= 5 && UInt64(failedBatches.count) == store.statistics.failedBatches)
    }

    @Test func thePasswordFromTheSettingsIsUsedAndAppearsInNoMessage() throws {
        let server = try PostgreSQLServer.shared()
        let url = try server.makeDatabase(prefix: "password").replacing(
            "user=\(PostgreSQLServer.user) ", with: "user=\(PostgreSQLServer.passwordUser) ")
        #expect(url.contains(PostgreSQLServer.passwordUser))
        for wrong in [nil, "wrong-secret-4711"] {
            do {
                _ = try openStore(url, password: wrong)
                Issue.record("connected without the right password")
            } catch {
                #expect(!"\(error)".contains("wrong-secret-4711"))
            }
        }
        let store = try openStore(url, password: PostgreSQLServer.password)
        defer { store.close() }
        let id = try submitAll(store, [makeCallback(key: "with-password")])[0].get().id
        let reader = try store.reader()
        #expect(try reader.callback(id: id)?.dedupKey == "with-password")

        // A password in the URL stays out of the message of a reader that finds no schema.
        let empty = try server.makeDatabase(prefix: "password_empty").replacing(
            "user=\(PostgreSQLServer.user) ", with: "user=\(PostgreSQLServer.passwordUser) password=\(PostgreSQLServer.password) ")
        do {
            _ = try PostgreSQLCallbackReader(settings: PostgreSQLSettings(url: empty))
            Issue.record("a reader opened an empty database")
        } catch {
            guard case .notInitialized = error else { throw error }
            #expect(!error.description.contains(PostgreSQLServer.password))
        }
    }

    @Test func aReaderNeverCreatesTheSchema() throws {
        let server = try PostgreSQLServer.shared()
        let settings = PostgreSQLSettings(url: try server.makeDatabase(prefix: "empty"))
        #expect(throws: CallbackStoreError.notInitialized(path: settings.description)) { try PostgreSQLCallbackReader(settings: settings) }
        #expect(throws: CallbackStoreError.notInitialized(path: settings.description)) { try PostgreSQLCallbackReader(settings: settings) }
        // Still nothing there: the reader created nothing.
        let connection = try PostgreSQLConnection(settings)
        #expect(try PostgreSQLSchema.version(connection) == 0)

        // A database a newer version migrated is refused by the reader and the store alike.
        try openStore(settings.url).close()
        try connection.query("INSERT INTO thingspace_listener_migrations (version, name) VALUES (99, 'from the future')")
        let tooNew = CallbackStoreError.schemaTooNew(
            path: settings.description, found: 99, supported: Int32(PostgreSQLSchema.currentVersion))
        #expect(throws: tooNew) { try PostgreSQLCallbackReader(settings: settings) }
        #expect(throws: tooNew) { try openStore(settings.url) }
    }

    @Test func whileABatchCommitsTheNextAccumulatesUpToTheCapacityAndCloseCommitsIt() throws {
        let url = try PostgreSQLServer.shared().makeDatabase(prefix: "capacity")
        let events = Collector<PostgreSQLCallbackStore.Event>()
        let store = try PostgreSQLCallbackStore(
            settings: PostgreSQLSettings(url: url), capacity: 4, logger: LogCapture().logger(), observer: { events.append($0) })
        // Another session holds the allocation lock: the store's first commit waits for it.
        let holder = try holdingTheAllocationLock(url)
        let results = Collector<Result<CommitReceipt, CallbackStoreError>>()
        #expect(store.submit(makeCallback()) { results.append($0) })
        let probe = try PostgreSQLConnection(PostgreSQLSettings(url: url))
        let waitingForTheLock =
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        #expect(eventually { (try? probe.query(waitingForTheLock).int(0, 0)) == 1 })
        for _ in 0..<4 { #expect(store.submit(makeCallback()) { results.append($0) }) }
        #expect(!store.submit(makeCallback()) { _ in Issue.record("completion of a refused submit") })
        #expect(results.values.isEmpty && !store.isFailing)

        let closed = Flag()
        let closer = Thread {
            store.close()
            closed.set()
        }
        closer.start()
        usleep(200_000)
        #expect(!closed.isSet)  // close waits for what was accepted
        #expect(!store.submit(makeCallback()) { _ in Issue.record("completion of a submit after close") })
        try holder.execute("COMMIT")
        #expect(eventually { closed.isSet })
        let receipts = try results.values.map { try $0.get() }
        #expect(receipts.map(\.id).sorted() == [1, 2, 3, 4, 5])
        #expect(store.statistics == IntakeStatistics(committedBatches: 2, committedCallbacks: 5))
        let sizes = events.values.compactMap { event -> Int? in if case .committed(let size, _) = event { size } else { nil } }
        #expect(sizes == [1, 4])
        store.close()  // idempotent
    }

    @Test func theImportKeepsIDsLinksAndFieldsAndRefusesATargetThatHoldsCallbacks() async throws {
        let source = InMemoryCallbackStore()
        var sent: [NewCallback] = []
        for (index, key) in ["a", "old", "a", "b", "a", "c", "b", "a"].enumerated() {
            var callback = makeCallback(
                key: key, requestID: index % 3 == 0 ? nil : "r-\(key)", at: index < 2 ? 1_000 : 5_000 + Int64(index))
            callback.deviceIDs = [DeviceID(id: "d-\(index)", kind: "imei"), DeviceID(id: "d,{\"x\"}", kind: "IMEI")]
            callback.status = index == 4 ? nil : "Status \(index)"
            callback.callbackCount = index == 5 ? nil : index
            callback.body = Array("{\"n\":\(index),\n\"password\":\"<redacted>\"}".utf8)
            sent.append(callback)
        }
        _ = submitAll(source, sent)
        // Ids no longer start at 1 (a purged database), and repeats link to what is kept.
        #expect(try await source.purge(olderThan: 2_000) == 2)
        let original = try everything(source)
        #expect(original.count == 6 && original.first?.id == 3 && original.contains { $0.duplicateOf != nil })

        let server = try PostgreSQLServer.shared()
        let settings = PostgreSQLSettings(url: try server.makeDatabase(prefix: "import"))
        let progress = Collector<Int>()
        #expect(try PostgreSQLImport.copy(from: source, to: settings, progress: { progress.append($0) }) == 6)
        #expect(progress.values.last == 6)
        let reader = try PostgreSQLCallbackReader(settings: settings)
        #expect(try everything(reader) == original)

        // The intake goes on after the highest id, and links a repeat to the imported first delivery.
        let store = try openStore(settings.url)
        let next = try submitAll(store, [makeCallback(key: "a"), makeCallback(key: "new")]).map { try $0.get() }
        store.close()
        let firstOfA = try #require(original.first { $0.dedupKey == "a" && $0.duplicateOf == nil })
        #expect(next.map(\.id) == [original.last!.id + 1, original.last!.id + 2])
        #expect(next[0].duplicateOf == firstOfA.id && next[1].duplicateOf == nil)

        // A target that holds callbacks is refused, and left as it was.
        #expect {
            try PostgreSQLImport.copy(from: source, to: settings, progress: { _ in })
        } throws: { error in
            guard case .backend(let message) = error as? CallbackStoreError else { return false }
            return message.contains("already holds callbacks")
        }
        #expect(try reader.lastID() == original.last!.id + 2)
        #expect(try everything(reader).count == 8)
    }

    @Test func anImportThatFailsHalfwayLeavesTheTargetEmpty() async throws {
        let source = InMemoryCallbackStore()
        _ = submitAll(source, (0..<10).map { _ in makeCallback() })
        let server = try PostgreSQLServer.shared()
        let settings = PostgreSQLSettings(url: try server.makeDatabase(prefix: "import_fails"))
        #expect(throws: CallbackStoreError.ioError(message: "the source failed")) {
            try PostgreSQLImport.copy(from: FailingAfterFirstPage(source: source), to: settings, progress: { _ in })
        }
        let reader = try PostgreSQLCallbackReader(settings: settings)
        #expect(try reader.lastID() == 0)
        // Nor was the id counter moved: a store starts at 1.
        let store = try openStore(settings.url)
        defer { store.close() }
        #expect(try submitAll(store, [makeCallback()])[0].get().id == 1)
    }

    @Test func aCallbackTheDatabaseCannotTakeFailsAloneAndTheStoreStaysHealthy() throws {
        let url = try PostgreSQLServer.shared().makeDatabase(prefix: "poison")
        let store = try openStore(url)
        defer { store.close() }
        // Held behind another session's lock, the next three submissions become one batch.
        let holder = try holdingTheAllocationLock(url)
        let first = Collector<Result<CommitReceipt, CallbackStoreError>>()
        #expect(store.submit(makeCallback()) { first.append($0) })
        let probe = try PostgreSQLConnection(PostgreSQLSettings(url: url))
        let waitingForTheLock =
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        #expect(eventually { (try? probe.query(waitingForTheLock).int(0, 0)) == 1 })
        var poisoned = makeCallback()
        poisoned.service = "Carrier\u{0}Service"  // text cannot hold NUL
        let results = Mutex<[Int: Result<CommitReceipt, CallbackStoreError>]>([:])
        let done = DispatchGroup()
        for (index, callback) in [makeCallback(), poisoned, makeCallback()].enumerated() {
            done.enter()
            #expect(
                store.submit(callback) { result in
                    results.withLock { $0[index] = result }
                    done.leave()
                })
        }
        try holder.execute("COMMIT")
        #expect(done.wait(timeout: .now() + 20) == .success)
        let outcome = results.withLock { $0 }
        #expect(try first.values.first?.get().id == 1)
        #expect((try? outcome[0]?.get().id) != nil && (try? outcome[2]?.get().id) != nil)
        guard case .failure(.backend)? = outcome[1] else {
            Issue.record("the poisoned callback: \(String(describing: outcome[1]))")
            return
        }
        #expect(!store.isFailing)
        // A failed transaction took no ids: the two stored took the next ones.
        #expect(try [outcome[0]?.get().id, outcome[2]?.get().id] == [2, 3])
        #expect(try store.reader().lastID() == 3)
    }

    @Test func manyWaitersShareOneListeningConnectionAndAreWokenByACommitOfAnotherInstance() async throws {
        let url = try PostgreSQLServer.shared().makeDatabase(prefix: "waiters")
        let writing = try openStore(url)
        defer { writing.close() }
        let other = try openStore(url)
        defer { other.close() }
        let reader = try other.reader()
        async let woken = withTaskGroup(of: Bool.self) { group in
            for _ in 0..<20 { group.addTask { (try? await reader.waitForCallbacks(after: 0, timeout: .seconds(20))) ?? false } }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        let probe = try PostgreSQLConnection(PostgreSQLSettings(url: url))
        let sessions = """
            SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'
            """
        // Two writers, the reader, its listener and this probe: the waiters add nothing. (Long:
        // synchronous tests running beside this one may hold the pool the waiters need.)
        #expect(await eventuallyAsync(within: .seconds(60)) { (try? probe.query(sessions).int(0, 0)) == 5 })
        try await Task.sleep(for: .milliseconds(200))
        #expect(try probe.query(sessions).int(0, 0) == 5)
        let submitted = ContinuousClock.now
        _ = try await blocking { submitAll(writing, [makeCallback()]) }
        #expect(await woken == Array(repeating: true, count: 20))
        #expect(ContinuousClock.now - submitted < .seconds(10))
    }

    @Test func aWriterThatLostItsConnectionLeavesTheWorkToTheOthers() async throws {
        let server = try PostgreSQLServer.shared()
        let url = try server.makeDatabase(prefix: "onelost")
        let store = try PostgreSQLCallbackStore(
            settings: PostgreSQLSettings(url: url), capacity: 4096, writers: 3, logger: LogCapture().logger())
        defer { store.close() }
        let probe = try PostgreSQLConnection(PostgreSQLSettings(url: url))
        let database = try probe.query("SELECT current_database()").string(0, 0)!
        let probePID = try probe.query("SELECT pg_backend_pid()").int(0, 0)!
        let admin = try PostgreSQLConnection(PostgreSQLSettings(url: server.url(database: "postgres")))
        // One writer's session ends and it cannot reconnect; the other two keep theirs.
        try admin.execute("ALTER DATABASE \(database) ALLOW_CONNECTIONS false")
        defer { try? admin.execute("ALTER DATABASE \(database) ALLOW_CONNECTIONS true") }
        try admin.query(
            """
            SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE datname = $1 AND backend_type = 'client backend' AND pid <> $2 LIMIT 1
            """, [.text(database), .int(probePID)])
        try await Task.sleep(for: .milliseconds(600))  // its idle check has noticed by now
        let timed = try await blocking {
            // One at a time, for a second: each is taken by whichever thread wakes first.
            (0..<40).map { _ -> (Result<CommitReceipt, CallbackStoreError>, Duration) in
                usleep(25_000)
                let started = ContinuousClock.now
                let result = submitAll(store, [makeCallback()], timeout: .seconds(10))[0]
                return (result, ContinuousClock.now - started)
            }
        }
        let results = timed.map(\.0)
        // Not at a connected writer's idle tick (250 ms): the disconnected one passes wake-ups on
        // (without that, 13 and 18 of 40 took over 150 ms in two runs).
        let slow = timed.filter { $0.1 > .milliseconds(150) }.count
        #expect(slow <= 4, "\(slow) of 40 took over 150 ms")
        let failed = results.filter { if case .failure = $0 { true } else { false } }
        #expect(failed.isEmpty, "\(failed.count) of 40 failed while two writers were connected: \(failed.first.map { "\($0)" } ?? "")")
        #expect(!store.isFailing)
    }

    @Test func commitsAreNotifiedAfterwardsWithTheHighestID() async throws {
        let url = try PostgreSQLServer.shared().makeDatabase(prefix: "notify")
        let store = try openStore(url)
        defer { store.close() }
        let (ids, heard) = try await blocking {
            let listener = try PostgreSQLConnection(PostgreSQLSettings(url: url))
            try listener.listen(PostgreSQLCallbackStore.notificationChannel)
            let ids = try submitAll(store, (0..<3).map { _ in makeCallback() }).map { try $0.get().id }
            var heard: [String] = []
            let deadline = ContinuousClock.now + .seconds(10)
            while heard.last != String(ids.max()!) && ContinuousClock.now < deadline {
                heard += try listener.notifications(waitingUpTo: .milliseconds(100)).map(\.payload)
            }
            return (ids, heard)
        }
        #expect(heard.last == String(ids.max()!))
        #expect(heard.allSatisfy { Int64($0).map { ids.contains($0) } == true })
    }

    /// A session that inserted a row of id `id` and has not committed: a group writing that id
    /// waits for it, past the allocation (in flight, holding nothing the next groups need).
    private func blockingID(_ id: Int64, _ url: String) throws -> PostgreSQLConnection {
        let blocker = try PostgreSQLConnection(PostgreSQLSettings(url: url))
        try blocker.execute("BEGIN")
        try blocker.query(
            """
            INSERT INTO callbacks (id, received_at, service, device_ids, devices, remote_address, dedup_key, body)
            VALUES ($1, 0, 'CarrierService', '{}', '[]', '192.0.2.1', 'blocker', '\\x7b7d')
            """, [.int(id)])
        return blocker
    }

    /// Two instances, or one with two writers.
    @Test(arguments: [false, true])
    func groupsCommitSideBySideAndReadersSeeThemOnlyInIDOrder(oneInstance: Bool) async throws {
        let url = try PostgreSQLServer.shared().makeDatabase(prefix: "parallel")
        let store = try PostgreSQLCallbackStore(
            settings: PostgreSQLSettings(url: url), capacity: 4096, writers: oneInstance ? 2 : 1, logger: LogCapture().logger())
        let other = oneInstance ? store : try openStore(url)
        defer { for store in [store, other] { store.close() } }
        let reader = try store.reader()
        let blocker = try blockingID(1, url)
        let first = Collector<Result<CommitReceipt, CallbackStoreError>>()
        #expect(other.submit(makeCallback()) { first.append($0) })
        let probe = try PostgreSQLConnection(PostgreSQLSettings(url: url))
        let waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        #expect(await eventuallyAsync { (try? probe.query(waiting).int(0, 0)) == 1 })

        // The next group commits while the first is still in flight: no waiting behind it.
        let second = try await blocking { try submitAll(store, [makeCallback()], timeout: .seconds(10))[0].get() }
        #expect(second.id == 2)
        #expect(first.values.isEmpty)
        // Committed, but below it id 1 may still appear: no reader shows it yet.
        #expect(try reader.callbacks(after: 0, limit: 10, includeDuplicates: true).isEmpty)
        #expect(try reader.lastID() == 0)
        #expect(try reader.page(after: 0, matching: CallbackFilter(includeDuplicates: true), limit: 10).next == 0)

        try blocker.execute("ROLLBACK")
        #expect(await eventuallyAsync { first.values.count == 1 })
        #expect(try first.values.first?.get().id == 1)
        #expect(try reader.callbacks(after: 0, limit: 10, includeDuplicates: true).map(\.id) == [1, 2])
        #expect(try reader.page(after: 0, matching: CallbackFilter(includeDuplicates: true), limit: 10).next == 2)
    }

    @Test func aGroupFailingWhileItAllocatesReleasesTheAllocationLock() async throws {
        let url = try PostgreSQLServer.shared().makeDatabase(prefix: "allocation")
        let failing = try openStore(url)
        defer { failing.close() }
        let admin = try PostgreSQLConnection(PostgreSQLSettings(url: url))
        // The function refuses ids past the limit after it took the lock.
        try admin.query("SELECT setval('callback_id_counter', $1)", [.int(PostgreSQLSchema.inFlightIDLimit - 1)])
        let refused = try await blocking { submitAll(failing, [makeCallback()], timeout: .seconds(10))[0] }
        guard case .failure(.backend(let message)) = refused else {
            Issue.record("expected the ids to be exhausted: \(refused)")
            return
        }
        #expect(message.contains("callback ids exhausted"))
        try admin.query("SELECT setval('callback_id_counter', 41)")
        // Another instance allocates at once (the failed session would hold the lock forever).
        let other = try openStore(url)
        defer { other.close() }
        let result = try await blocking { submitAll(other, [makeCallback()], timeout: .seconds(10))[0] }
        guard case .success(let stored) = result else {
            Issue.record("the other instance could not store: \(result)")
            failing.close()  // ends its session and so the lock: the other's close can finish
            return
        }
        #expect(stored.id == 42)
        #expect(try await blocking { try submitAll(failing, [makeCallback()], timeout: .seconds(10))[0].get() }.id == 43)
    }

    @Test func aPurgeWaitsForGroupsInFlightSoThatNoRepeatLinksToADeletedRow() async throws {
        let url = try PostgreSQLServer.shared().makeDatabase(prefix: "purgewait")
        let store = try openStore(url)
        defer { store.close() }
        let old = try await blocking { try submitAll(store, [makeCallback(key: "k", at: 1_000)])[0].get() }
        // A repeat of it, held in flight after it linked to the old row.
        let blocker = try blockingID(old.id + 1, url)
        let repeated = Collector<Result<CommitReceipt, CallbackStoreError>>()
        #expect(store.submit(makeCallback(key: "k", at: 9_000)) { repeated.append($0) })
        let probe = try PostgreSQLConnection(PostgreSQLSettings(url: url))
        let waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        #expect(await eventuallyAsync { (try? probe.query(waiting).int(0, 0)) == 1 })
        // Another instance's retention.
        let other = try openStore(url)
        defer { other.close() }
        async let purged = other.purge(olderThan: 2_000)
        #expect(await eventuallyAsync { (try? probe.query(waiting).int(0, 0)) == 2 })  // the purge waits too
        try blocker.execute("ROLLBACK")
        #expect(try await purged == 1)
        let receipt = try repeated.values.first?.get()
        #expect(receipt?.duplicateOf == old.id)  // linked when it was stored
        let reader = try store.reader()
        // Relinked by the purge that waited for it: the first delivery of its key now.
        #expect(try everything(reader).map(\.id) == [old.id + 1])
        #expect(try reader.callback(id: old.id + 1)?.duplicateOf == nil)
        #expect(try await blocking { try submitAll(store, [makeCallback(key: "k", at: 9_500)])[0].get() }.duplicateOf == old.id + 1)
    }

    @Test func aLongPurgeLetsCallbacksInBetweenItsChunksAndRelinksAcrossThem() async throws {
        let url = try PostgreSQLServer.shared().makeDatabase(prefix: "purge")
        let store = try openStore(url)
        defer { store.close() }
        // More than two chunks of old callbacks; the first delivery of "kept" among the oldest.
        let old = 10_500
        var seeded = try await blocking { try submitAll(store, [makeCallback(key: "kept", at: 1_000)]).map { try $0.get() } }
        for _ in 0..<(old / 500) {
            seeded += try await blocking { try submitAll(store, (0..<500).map { _ in makeCallback(at: 1_000) }).map { try $0.get() } }
        }
        let repeats = try await blocking {
            try submitAll(store, (0..<2).map { _ in makeCallback(key: "kept", at: 9_000) }).map { try $0.get() }
        }
        #expect(repeats.allSatisfy { $0.duplicateOf == seeded[0].id })

        // Another session holds the allocation lock, so the purge's first chunk waits; a callback
        // submitted meanwhile must be stored before the purge has finished, not after all of it.
        let holder = try holdingTheAllocationLock(url)
        let order = Collector<String>()
        async let purged = store.purge(olderThan: 2_000)
        let probe = try PostgreSQLConnection(PostgreSQLSettings(url: url))
        let waitingForTheLock =
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        #expect(await eventuallyAsync { (try? probe.query(waitingForTheLock).int(0, 0)) == 1 })
        let stored = Collector<CommitReceipt>()
        #expect(
            store.submit(makeCallback(at: 9_500)) { result in
                if case .success(let receipt) = result { stored.append(receipt) }
                order.append("stored")
            })
        try holder.execute("COMMIT")
        #expect(try await purged == old + 1)
        order.append("purged")
        #expect(order.values == ["stored", "purged"])

        let reader = try store.reader()
        #expect(try reader.callback(id: repeats[0].id)?.duplicateOf == nil)
        #expect(try reader.callback(id: repeats[1].id)?.duplicateOf == repeats[0].id)
        #expect(try everything(reader).map(\.id) == [repeats[0].id, repeats[1].id] + stored.values.map(\.id))
        let next = try await blocking { try submitAll(store, [makeCallback(key: "kept", at: 10_000)])[0].get() }
        #expect(next.duplicateOf == repeats[0].id)
    }
}

private final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .relaxed) }
    func set() { value.store(true, ordering: .relaxed) }
}

/// A source whose second page fails (a damaged file, say).
private struct FailingAfterFirstPage: CallbackReader {
    let source: InMemoryCallbackStore

    func query(_ filter: CallbackFilter) throws(CallbackStoreError) -> [StoredCallback] { try source.query(filter) }
    func callback(id: Int64) throws(CallbackStoreError) -> StoredCallback? { try source.callback(id: id) }
    func callbacks(after id: Int64, limit: Int, includeDuplicates: Bool) throws(CallbackStoreError) -> [StoredCallback] {
        guard id == 0 else { throw .ioError(message: "the source failed") }
        return try source.callbacks(after: id, limit: limit, includeDuplicates: includeDuplicates)
    }
    func page(after id: Int64, matching filter: CallbackFilter, limit: Int) throws(CallbackStoreError) -> CallbackPage {
        try source.page(after: id, matching: filter, limit: limit)
    }
    func stats() throws(CallbackStoreError) -> CallbackStats { try source.stats() }
    func lastID() throws(CallbackStoreError) -> Int64 { try source.lastID() }
}
