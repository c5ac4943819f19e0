import CallbackStore
import Foundation
import PostgresStore
import Synchronization
import TestSupport
import Testing

/// Two instances ("a" and "b") on one database: what claims promise beyond the contract suite.
@Suite struct SharedDeliveryLedgerTests {
    static func record(_ id: Int64, key: String? = nil) -> DeliveryRecord {
        DeliveryRecord(destination: "orders", callbackID: id, nextAttemptAt: 0, orderingKey: key, receivedAt: 1_000 + id)
    }

    static func delivered(_ record: DeliveryRecord) -> DeliveryRecord {
        var record = record
        record.state = .delivered
        record.attempts += 1
        record.nextAttemptAt = nil
        return record
    }

    static func due(_ ledger: PostgreSQLDeliveryLedger, limit: Int = 100, ordered: Bool = false) throws -> [Int64] {
        try ledger.due(destination: "orders", now: 10, limit: limit, excluding: [], onePerOrderingKey: ordered).map(\.callbackID)
    }

    static func isUnavailable(_ error: any Error) -> Bool {
        if case .unavailable? = error as? CallbackStoreError { return true }
        return false
    }

    @Test func concurrentClaimsHandEveryRecordToExactlyOneInstance() throws {
        let url = try PostgreSQLServer.shared().makeDatabase()
        let ledgers = try ["a", "b", "c", "d"].map { try PostgreSQLDeliveryLedger(settings: PostgreSQLSettings(url: url), instance: $0) }
        defer { for ledger in ledgers { ledger.close() } }
        #expect(ledgers.allSatisfy { $0.sharesWork })
        let count: Int64 = 2_000
        try ledgers[0].enqueue(destination: "orders", (1...count).map { Self.record($0) }, through: count)
        // All at once until nothing is due: a and b deliver what they claim, as the engine does;
        // c and d keep theirs in flight (left out of their next claims).
        let claims = onThreads(ledgers.count) { index -> Result<[Int64], CallbackStoreError> in
            let ledger = ledgers[index]
            var claimed: [Int64] = []
            do throws(CallbackStoreError) {
                for _ in 0..<1_000 {
                    let due = try ledger.due(
                        destination: "orders", now: 10, limit: 10, excluding: index < 2 ? [] : Set(claimed), onePerOrderingKey: false)
                    if due.isEmpty { break }
                    claimed += due.map(\.callbackID)
                    if index < 2 { try ledger.update(due.map(Self.delivered)) }
                }
            } catch {
                return .failure(error)
            }
            return .success(claimed)
        }
        let all = try claims.flatMap { try $0.get() }
        #expect(all.count == Int(count))
        #expect(Set(all) == Set(1...count))
        // In flight at c and d, and no one else's while their leases last.
        #expect(try ledgers[0].backlog(destination: "orders").pending == claims[2...].map { (try? $0.get().count) ?? 0 }.reduce(0, +))
        #expect(try Self.due(ledgers[0]).isEmpty)
    }

    @Test func aLeasedRecordGoesToNoOtherInstanceAndComesBackToItsOwner() throws {
        let url = try PostgreSQLServer.shared().makeDatabase()
        let a = try PostgreSQLDeliveryLedger(settings: PostgreSQLSettings(url: url), instance: "a")
        let b = try PostgreSQLDeliveryLedger(settings: PostgreSQLSettings(url: url), instance: "b")
        defer {
            a.close()
            b.close()
        }
        try a.enqueue(destination: "orders", (1...5).map { Self.record($0) }, through: 5)
        #expect(try Self.due(a, limit: 3) == [1, 2, 3])
        #expect(try Self.due(b) == [4, 5])
        // Each instance's own leases come back to it.
        #expect(try Self.due(b) == [4, 5])
        #expect(try Self.due(a) == [1, 2, 3])
        // In flight: left out, and still nobody else's.
        #expect(try a.due(destination: "orders", now: 10, limit: 10, excluding: [1, 2], onePerOrderingKey: false).map(\.callbackID) == [3])
    }

    @Test func anExpiredLeaseLetsAnotherInstanceRetryAndAnOutcomeEndsTheLease() throws {
        let url = try PostgreSQLServer.shared().makeDatabase()
        let a = try PostgreSQLDeliveryLedger(settings: PostgreSQLSettings(url: url), instance: "a", leaseDuration: .milliseconds(300))
        let b = try PostgreSQLDeliveryLedger(settings: PostgreSQLSettings(url: url), instance: "b")
        defer {
            a.close()
            b.close()
        }
        try a.enqueue(destination: "orders", (1...3).map { Self.record($0) }, through: 3)
        let claimed = try a.due(destination: "orders", now: 10, limit: 10, excluding: [], onePerOrderingKey: false)
        #expect(claimed.map(\.callbackID) == [1, 2, 3])
        #expect(try Self.due(b).isEmpty)
        // a delivers 1 and fails 2 (due again at once): the outcome clears the lease, so 2 is b's now.
        var failed = claimed[1]
        failed.state = .retrying
        failed.attempts = 1
        failed.lastError = "HTTP 500"
        try a.update([Self.delivered(claimed[0]), failed])
        #expect(try Self.due(b) == [2])
        // 3 stays a's until its lease runs out (a "died"); then b retries it.
        #expect(eventually(within: .seconds(5)) { (try? Self.due(b)) == [2, 3] })
        // a's late outcome for 3 does not end b's claim in the middle of b's attempt.
        var late = claimed[2]
        late.state = .retrying
        late.attempts = 1
        try a.update([late])
        #expect(try b.record(destination: "orders", callbackID: 3)?.state == .pending)
        // b holds both now (30 s); the delivered one never comes back to anyone.
        #expect(try Self.due(a).isEmpty)
        try b.update(try b.due(destination: "orders", now: 10, limit: 10, excluding: [], onePerOrderingKey: false).map(Self.delivered))
        Thread.sleep(forTimeInterval: 0.4)
        #expect(try Self.due(a).isEmpty)
        #expect(try Self.due(b).isEmpty)
        #expect(try b.record(destination: "orders", callbackID: 1)?.state == .delivered)
        #expect(try b.nextAttemptAt(destination: "orders") == nil)
    }

    @Test func orderingKeysHoldAcrossInstances() throws {
        let url = try PostgreSQLServer.shared().makeDatabase()
        let a = try PostgreSQLDeliveryLedger(settings: PostgreSQLSettings(url: url), instance: "a")
        let b = try PostgreSQLDeliveryLedger(settings: PostgreSQLSettings(url: url), instance: "b")
        defer {
            a.close()
            b.close()
        }
        try a.enqueue(
            destination: "orders", [Self.record(1, key: "k"), Self.record(2, key: "k"), Self.record(3, key: "j"), Self.record(4)],
            through: 4)
        #expect(try Self.due(a, limit: 1, ordered: true) == [1])
        // 2 waits for 1, which a holds; j's head and the keyless one are b's.
        #expect(try Self.due(b, ordered: true) == [3, 4])
        #expect(try Self.due(b, ordered: true) == [3, 4])
        let first = try #require(try a.record(destination: "orders", callbackID: 1))
        try a.update([Self.delivered(first)])
        #expect(try Self.due(b, ordered: true) == [2, 3, 4])
        #expect(try Self.due(a, ordered: true).isEmpty)
    }

    @Test func anOutageIsUnavailableAndTheLedgerReconnectsAfterIt() throws {
        let server = try PostgreSQLServer()
        let url = try server.makeDatabase()
        let ledger = try PostgreSQLDeliveryLedger(settings: PostgreSQLSettings(url: url), instance: "a")
        defer { ledger.close() }
        try ledger.enqueue(destination: "orders", [Self.record(1)], through: 1)

        try server.stop()
        #expect { try ledger.cursor(destination: "orders") } throws: { Self.isUnavailable($0) }
        #expect { try Self.due(ledger) } throws: { Self.isUnavailable($0) }
        #expect { try ledger.enqueue(destination: "orders", [Self.record(2)], through: 2) } throws: { Self.isUnavailable($0) }
        try server.start()
        #expect(eventually(within: .seconds(10)) { (try? ledger.cursor(destination: "orders")) == 1 })
        #expect(try Self.due(ledger) == [1])

        // A restart breaks the connection under the ledger: one call fails, the next reconnects.
        try server.restart()
        var answers: [Bool] = []
        for _ in 0..<3 { answers.append((try? ledger.cursor(destination: "orders")) == 1) }
        #expect(answers.suffix(2) == [true, true])
        try ledger.enqueue(destination: "orders", [Self.record(2)], through: 2)
        #expect(try ledger.cursor(destination: "orders") == 2)
    }

    @Test func aClosedLedgerRefusesEveryCall() throws {
        let url = try PostgreSQLServer.shared().makeDatabase()
        let ledger = try PostgreSQLDeliveryLedger(settings: PostgreSQLSettings(url: url), instance: "a")
        ledger.close()
        #expect(throws: CallbackStoreError.closed) { try ledger.cursor(destination: "orders") }
        ledger.close()
    }
}
