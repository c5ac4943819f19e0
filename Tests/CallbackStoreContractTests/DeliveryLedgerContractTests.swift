import CallbackStore
import Foundation
import PostgresStore
import SQLiteStore
import TestSupport
import Testing

/// Every ledger backend, through the protocol only.
enum LedgerBackend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case memory, sqlite, postgresql
    var testDescription: String { rawValue }
}

final class LedgerUnderTest: Sendable {
    let ledger: any DeliveryLedger
    let path: String?
    private let directory: TemporaryDirectory

    init(_ backend: LedgerBackend) throws {
        directory = try TemporaryDirectory()
        switch backend {
        case .memory:
            ledger = InMemoryDeliveryLedger()
            path = nil
        case .sqlite:
            let path = directory.file("deliveries.sqlite")
            ledger = try SQLiteDeliveryLedger(path: path)
            self.path = path
        case .postgresql:
            // A database of its own per test, on the server the test process shares.
            let url = try PostgreSQLServer.shared().makeDatabase()
            ledger = try PostgreSQLDeliveryLedger(settings: PostgreSQLSettings(url: url), instance: "contract")
            path = nil
        }
    }

    deinit { ledger.close() }
}

func pending(_ id: Int64, to destination: String = "orders", key: String? = nil, due: Int64? = 0) -> DeliveryRecord {
    DeliveryRecord(destination: destination, callbackID: id, nextAttemptAt: due, orderingKey: key, receivedAt: 1_000 + id)
}

@Suite struct DeliveryLedgerContractTests {
    @Test(arguments: LedgerBackend.allCases)
    func enqueueMovesTheCursorOnlyForward(_ backend: LedgerBackend) throws {
        let subject = try LedgerUnderTest(backend)
        let ledger = subject.ledger
        #expect(try ledger.cursor(destination: "orders") == nil)
        try ledger.enqueue(destination: "orders", [pending(1), pending(3)], through: 5)
        #expect(try ledger.cursor(destination: "orders") == 5)
        try ledger.enqueue(destination: "orders", [], through: 4)
        #expect(try ledger.cursor(destination: "orders") == 5)
        #expect(try ledger.cursor(destination: "billing") == nil)
        // An existing record is left as it is.
        var delivered = pending(1)
        delivered.state = .delivered
        delivered.attempts = 1
        try ledger.update([delivered])
        try ledger.enqueue(destination: "orders", [pending(1)], through: 6)
        #expect(try ledger.record(destination: "orders", callbackID: 1)?.state == .delivered)
    }

    @Test(arguments: LedgerBackend.allCases)
    func dueIsEarliestFirstAndLeavesOutWhatIsInFlightAndFinal(_ backend: LedgerBackend) throws {
        let subject = try LedgerUnderTest(backend)
        let ledger = subject.ledger
        try ledger.enqueue(
            destination: "orders",
            [pending(1, due: 30), pending(2, due: 10), pending(3, due: 10), pending(4, due: 99), pending(5, due: 5)],
            through: 5)
        try ledger.enqueue(destination: "billing", [pending(6, to: "billing")], through: 6)
        var dead = pending(5, due: 5)
        dead.state = .dead
        try ledger.update([dead])
        let due = try ledger.due(destination: "orders", now: 50, limit: 10, excluding: [3], onePerOrderingKey: false)
        #expect(due.map(\.callbackID) == [2, 1])
        #expect(try ledger.due(destination: "orders", now: 50, limit: 1, excluding: [], onePerOrderingKey: false).map(\.callbackID) == [2])
        #expect(try ledger.nextAttemptAt(destination: "orders") == 10)
    }

    @Test(arguments: LedgerBackend.allCases)
    func onePerOrderingKeyHoldsBackADevicesLaterCallbacks(_ backend: LedgerBackend) throws {
        let subject = try LedgerUnderTest(backend)
        let ledger = subject.ledger
        try ledger.enqueue(
            destination: "orders",
            [pending(1, key: "a"), pending(2, key: "b"), pending(3, key: "a"), pending(4), pending(5, key: "b")], through: 5)
        // 1 is retrying later: device a waits for it; b's head is 2; 4 names no device.
        var retrying = pending(1, key: "a", due: 1_000)
        retrying.state = .retrying
        retrying.attempts = 1
        try ledger.update([retrying])
        let due = try ledger.due(destination: "orders", now: 10, limit: 10, excluding: [], onePerOrderingKey: true)
        #expect(due.map(\.callbackID) == [2, 4])
        // Once 1 is dead (final), 3 may go.
        retrying.state = .dead
        try ledger.update([retrying])
        #expect(
            try ledger.due(destination: "orders", now: 10, limit: 10, excluding: [2], onePerOrderingKey: true).map(\.callbackID) == [3, 4])
    }

    @Test(arguments: LedgerBackend.allCases)
    func listBacklogRetryReplayAndPurge(_ backend: LedgerBackend) throws {
        let subject = try LedgerUnderTest(backend)
        let ledger = subject.ledger
        try ledger.enqueue(destination: "orders", (1...4).map { pending($0) }, through: 4)
        var records = try ledger.list(DeliveryFilter(destination: "orders"))
        #expect(records.map(\.callbackID) == [1, 2, 3, 4])
        records[0].state = .delivered
        records[1].state = .dead
        records[1].attempts = 8
        records[1].lastError = "HTTP 500"
        records[2].state = .dead
        try ledger.update(Array(records[0...2]))
        #expect(try ledger.list(DeliveryFilter(destination: "orders", state: .dead)).map(\.callbackID) == [2, 3])
        #expect(try ledger.list(DeliveryFilter(state: .pending)).map(\.callbackID) == [4])
        #expect(try ledger.list(DeliveryFilter(destination: "orders", afterID: 2, limit: 1)).map(\.callbackID) == [3])
        #expect(
            try ledger.backlog(destination: "orders") == DeliveryBacklog(pending: 1, retrying: 0, dead: 2, oldestWaitingReceivedAt: 1_004))

        #expect(try ledger.retry(destination: "orders", ids: [2, 9], now: 77) == 1)
        let revived = try #require(try ledger.record(destination: "orders", callbackID: 2))
        #expect(revived.state == .pending && revived.attempts == 0 && revived.nextAttemptAt == 77 && revived.lastError == "HTTP 500")
        #expect(try ledger.retry(destination: "orders", ids: nil, now: 78) == 1)
        #expect(try ledger.backlog(destination: "orders").dead == 0)

        // Replay: a delivered one and one never recorded.
        #expect(try ledger.replay([pending(1, due: nil), pending(9, due: nil)], now: 80) == 2)
        #expect(try ledger.record(destination: "orders", callbackID: 1)?.state == .pending)
        #expect(try ledger.record(destination: "orders", callbackID: 9)?.nextAttemptAt == 80)

        #expect(try ledger.purge(receivedBefore: 1_003) == 2)
        #expect(try ledger.list(DeliveryFilter()).map(\.callbackID) == [3, 4, 9])
    }

    @Test(arguments: LedgerBackend.allCases)
    func disabledUntilEnabled(_ backend: LedgerBackend) throws {
        let subject = try LedgerUnderTest(backend)
        let ledger = subject.ledger
        #expect(try ledger.disabled(destination: "orders") == nil)
        try ledger.setDisabled(destination: "orders", DestinationDisabled(at: 5, reason: "410 Gone"))
        #expect(try ledger.disabled(destination: "orders") == DestinationDisabled(at: 5, reason: "410 Gone"))
        #expect(try ledger.disabled(destination: "billing") == nil)
        try ledger.setDisabled(destination: "orders", nil)
        #expect(try ledger.disabled(destination: "orders") == nil)
    }

    @Test func theSQLiteLedgerKeepsItsStateAcrossOpens() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("deliveries.sqlite")
        do {
            let ledger = try SQLiteDeliveryLedger(path: path)
            try ledger.enqueue(destination: "orders", [pending(1), pending(2)], through: 2)
            ledger.close()
            #expect(throws: CallbackStoreError.closed) { try ledger.cursor(destination: "orders") }
        }
        let reopened = try SQLiteDeliveryLedger(path: path, durableCommits: true)
        defer { reopened.close() }
        #expect(try reopened.cursor(destination: "orders") == 2)
        #expect(try reopened.list(DeliveryFilter()).count == 2)
        // A file that is not a ledger is refused.
        let other = directory.file("other.sqlite")
        _ = try SQLiteCallbackStore(path: other)
        #expect(throws: CallbackStoreError.self) { try SQLiteDeliveryLedger(path: other) }
    }
}
