import CallbackStore
import Foundation
import TestSupport
import Testing
import Vocabulary

@testable import SQLiteStore

/// The index side of the journal engine: rows stored under the ids the journal assigned, with the
/// position in the same transaction, and a replay from an older position storing nothing twice.
@Suite struct JournalIndexTests {
    /// The position after the record with id `lastID`, in segment `segment` at byte `offset`.
    func Position(lastID: Int64, segment: Int64, offset: Int) -> JournalPosition {
        JournalPosition(segmentFirstID: segment, offset: offset, nextID: lastID + 1)
    }

    func record(_ id: Int64, _ callback: NewCallback) -> JournalRecord { JournalRecord(id: id, callback: callback) }

    @Test func storesTheJournalsIDsWithThePositionAfterThem() throws {
        try withTemporaryDirectory { directory in
            let store = try SQLiteCallbackStore(path: directory.databasePath)
            #expect(try store.journalPosition() == nil)
            let records = [record(7, makeCallback(requestID: "a")), record(8, makeCallback(requestID: "b"))]
            let receipts = try store.index(records, through: Position(lastID: 8, segment: 1, offset: 4096))
            #expect(receipts == [CommitReceipt(id: 7, duplicateOf: nil), CommitReceipt(id: 8, duplicateOf: nil)])
            #expect(try store.callback(id: 7)?.requestID == "a")
            #expect(try store.callback(id: 8)?.requestID == "b")
            #expect(try store.journalPosition() == Position(lastID: 8, segment: 1, offset: 4096))
            store.close()
            let reopened = try SQLiteCallbackStore(path: directory.databasePath, readOnly: true)
            #expect(try reopened.journalPosition() == Position(lastID: 8, segment: 1, offset: 4096))
            #expect(try reopened.lastID() == 8)
        }
    }

    @Test func repeatsAreLinkedByTheIndexer() throws {
        try withTemporaryDirectory { directory in
            let store = try SQLiteCallbackStore(path: directory.databasePath)
            let first = makeCallback(requestID: "r", dedupKey: "k")
            let receipts = try store.index(
                [record(1, first), record(2, makeCallback(requestID: "other")), record(3, first)],
                through: Position(lastID: 3, segment: 1, offset: 1))
            #expect(receipts.map(\.duplicateOf) == [nil, nil, 1])
            let later = try store.index([record(4, first)], through: Position(lastID: 4, segment: 1, offset: 2))
            #expect(later == [CommitReceipt(id: 4, duplicateOf: 1)])
        }
    }

    @Test func aReplayFromAnOlderPositionStoresNothingTwice() throws {
        try withTemporaryDirectory { directory in
            let store = try SQLiteCallbackStore(path: directory.databasePath)
            let records = (1...5).map { record(Int64($0), makeCallback(requestID: "r\($0 % 2)", dedupKey: "k\($0 % 2)")) }
            let once = try store.index(Array(records[0..<3]), through: Position(lastID: 3, segment: 1, offset: 300))
            // The journal is scanned again from the start (the position commit was lost, say).
            let again = try store.index(records, through: Position(lastID: 5, segment: 1, offset: 500))
            #expect(Array(again[0..<3]) == once)
            #expect(try store.stats().total == 5)
            #expect(try store.callbacks(after: 0, limit: 10, includeDuplicates: true).map(\.id) == [1, 2, 3, 4, 5])
            #expect(try store.callback(id: 5)?.duplicateOf == 1)
            #expect(try store.journalPosition()?.nextID == 6)
            #expect(try sqliteValue(directory.databasePath, "SELECT count(*) FROM callback_devices") == "5")
        }
    }

    @Test func aVersion2DatabaseGainsThePositionTable() throws {
        try withTemporaryDirectory { directory in
            let path = directory.databasePath
            do {
                let store = try SQLiteCallbackStore(path: path)
                _ = try store.insert([makeCallback(requestID: "old")])
                store.close()
            }
            // What version 2 left: no journal_position table.
            try sqliteExecute(path, "DROP TABLE journal_position; PRAGMA user_version = 2;")
            let store = try SQLiteCallbackStore(path: path)
            #expect(try sqliteValue(path, "PRAGMA user_version") == "3")
            #expect(try store.journalPosition() == nil)
            _ = try store.index([record(2, makeCallback(requestID: "new"))], through: Position(lastID: 2, segment: 2, offset: 64))
            #expect(try store.query(CallbackFilter(limit: 10)).map(\.requestID) == ["new", "old"])
        }
    }
}
