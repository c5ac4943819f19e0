import CallbackStore
import Foundation
import TestSupport
import Testing
import Vocabulary

@testable import SQLiteStore

/// `store verify` and `store rebuild-index` in-process: journal and index built by the journal's
/// own writer and indexer, then damaged one way at a time.
@Suite struct StoreVerifierTests {
    /// A journal of `count` records in small segments (several of them kept, as the service would
    /// between checkpoints), the first `indexed` of them in the index.
    @discardableResult
    func makeStore(_ directory: TemporaryDirectory, count: Int = 60, indexed: Int? = nil) throws -> [JournalRecord] {
        let journal = directory.journal()
        #expect(journal.path == JournalDirectory.path(besideDatabase: directory.databasePath))
        let writer = try JournalWriter(directory: journal, continuingAt: nil, segmentSize: 4 << 10)
        var records: [JournalRecord] = []
        var positions: [JournalPosition] = []
        for number in 0..<count {
            let callback = journalCallback(number)
            let ids = try writer.append([callback])
            try writer.sync()
            records.append(JournalRecord(id: ids[0], callback: callback))
            positions.append(writer.end)
        }
        let store = try SQLiteCallbackStore(path: directory.databasePath)
        defer { store.close() }
        let through = indexed ?? count
        if through > 0 {
            _ = try store.index(Array(records[0..<through]), through: positions[through - 1])
            #expect(try store.checkpointIndex())
        }
        return records
    }

    func segments(_ directory: TemporaryDirectory) throws -> [JournalDirectory.Entry] { try directory.journal().segments() }

    /// The byte offsets of the frames in a segment.
    func frameOffsets(_ path: String) throws -> [Int] {
        let bytes = try fileBytes(path)
        var offsets: [Int] = []
        var offset = JournalSegmentHeader.size
        while offset + 4 <= bytes.count {
            let length = Int(bytes[offset]) | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2]) << 16 | Int(bytes[offset + 3]) << 24
            if length == 0 { break }
            offsets.append(offset)
            offset += JournalFrame.headerSize + length
        }
        return offsets
    }

    @Test func aHealthyStoreVerifiesClean() throws {
        let directory = try TemporaryDirectory()
        let records = try makeStore(directory)
        #expect(try segments(directory).count >= 3)
        let result = StoreVerifier.verify(databasePath: directory.databasePath)
        #expect(result.isConsistent, "\(result.findings)")
        #expect(result.findings.isEmpty, "\(result.findings)")
        #expect(result.compared == records.count)
        #expect(result.journalRecords == records.count)
        #expect(result.indexedThrough == Int64(records.count))
        #expect(result.summary.hasPrefix("consistent"))
    }

    @Test func recordsBeyondTheIndexPositionAreNotYetIndexed() throws {
        let directory = try TemporaryDirectory()
        try makeStore(directory, count: 50, indexed: 30)
        let result = StoreVerifier.verify(databasePath: directory.databasePath)
        #expect(result.isConsistent, "\(result.findings)")
        #expect(result.notYetIndexed == 20)
        #expect(result.compared == 30)
        #expect(result.findings.contains { $0.message.contains("not yet indexed: 20 records") })
    }

    @Test func aFlippedBitInAnOlderSegmentIsDamageNamingFileAndOffset() throws {
        let directory = try TemporaryDirectory()
        try makeStore(directory)
        let oldest = try #require(try segments(directory).first)
        let offsets = try frameOffsets(oldest.path)
        let frame = offsets[2]
        var bytes = try fileBytes(oldest.path)
        bytes[frame + JournalFrame.headerSize + 5] ^= 0x04
        try writeFileBytes(oldest.path, bytes)

        let result = StoreVerifier.verify(databasePath: directory.databasePath)
        #expect(!result.isConsistent)
        let damage = result.findings.filter { $0.kind == .damage }
        #expect(damage.count == 1, "\(result.findings)")
        #expect(damage.first?.message.contains("\(oldest.path) at byte \(frame)") == true, "\(damage)")
        // The segments after it are still read and compared.
        #expect(result.compared == 60 - (offsets.count - 2), "\(result.summary)")
        #expect(!result.findings.contains { $0.kind == .mismatch }, "\(result.findings)")
    }

    @Test func aTornTailInTheNewestSegmentIsReportedButConsistent() throws {
        let directory = try TemporaryDirectory()
        try makeStore(directory)
        let newest = try #require(try segments(directory).last)
        let end = try #require(
            try frameOffsets(newest.path).last.map { offset in
                let bytes = try fileBytes(newest.path)
                return offset + JournalFrame.headerSize + Int(bytes[offset]) + Int(bytes[offset + 1]) << 8
            })
        var bytes = try fileBytes(newest.path)
        for (index, byte) in [0x40, 0, 0, 0, 0xDE, 0xAD, 0xBE, 0xEF, 61, 0].enumerated() { bytes[end + index] = UInt8(byte) }
        try writeFileBytes(newest.path, bytes)

        let before = bytes
        let result = StoreVerifier.verify(databasePath: directory.databasePath)
        #expect(result.isConsistent, "\(result.findings)")
        #expect(
            result.findings.contains { $0.kind == .note && $0.message.contains("unacknowledged tail in \(newest.path) from byte \(end)") },
            "\(result.findings)")
        #expect(try fileBytes(newest.path) == before, "verify must not cut the tail")
    }

    @Test func aRowChangedInSQLiteIsAMismatchNamingTheRecord() throws {
        let directory = try TemporaryDirectory()
        try makeStore(directory)
        try sqliteExecute(directory.databasePath, "UPDATE callbacks SET body = '{}', service = 'DeviceUsage' WHERE id = 7")
        let result = StoreVerifier.verify(databasePath: directory.databasePath)
        #expect(!result.isConsistent)
        #expect(result.problems.map(\.message) == ["record 7: the index differs from the journal in service, body"], "\(result.findings)")
    }

    @Test func aRowMissingFromTheIndexIsAMismatch() throws {
        let directory = try TemporaryDirectory()
        try makeStore(directory)
        try sqliteExecute(
            directory.databasePath, "DELETE FROM callback_devices WHERE callback_id = 12; DELETE FROM callbacks WHERE id = 12")
        let result = StoreVerifier.verify(databasePath: directory.databasePath)
        #expect(
            result.problems.map(\.message) == ["record 12 is missing from the index, which has indexed through id 60"], "\(result.findings)"
        )
    }

    @Test func indexRowsBeyondTheJournalAreAMismatch() throws {
        let directory = try TemporaryDirectory()
        try makeStore(directory)
        // The newest segment lost its last records after they were indexed.
        let newest = try #require(try segments(directory).last)
        let offsets = try frameOffsets(newest.path)
        var bytes = try fileBytes(newest.path)
        for index in offsets[offsets.count - 2]..<bytes.count { bytes[index] = 0 }
        try writeFileBytes(newest.path, bytes)
        let result = StoreVerifier.verify(databasePath: directory.databasePath)
        #expect(!result.isConsistent)
        #expect(result.problems.contains { $0.message.contains("2 index rows have ids beyond the journal's last valid record (id 58)") })
    }

    @Test func rowsBelowTheOldestSegmentAreOnlyInTheIndex() throws {
        let directory = try TemporaryDirectory()
        try makeStore(directory)
        let oldest = try #require(try segments(directory).first)
        try directory.journal().deleteSegments(through: try #require(try segments(directory).dropFirst().first).firstID - 1)
        #expect(try segments(directory).first?.firstID != oldest.firstID)
        let result = StoreVerifier.verify(databasePath: directory.databasePath)
        #expect(result.isConsistent, "\(result.findings)")
        #expect(result.indexOnly > 0)
    }

    @Test func aGarbageDatabaseIsDamageNotAHang() throws {
        let directory = try TemporaryDirectory()
        try makeStore(directory)
        var generator = SystemRandomNumberGenerator()
        try writeFileBytes(directory.databasePath, (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) })
        try? FileManager.default.removeItem(atPath: directory.databasePath + "-wal")
        try? FileManager.default.removeItem(atPath: directory.databasePath + "-shm")
        let started = ContinuousClock.now
        let result = StoreVerifier.verify(databasePath: directory.databasePath)
        #expect(ContinuousClock.now - started < .seconds(10))
        #expect(!result.isConsistent)
        #expect(result.problems.first?.message.contains("is damaged or is not a SQLite database") == true, "\(result.findings)")
        // The journal is still read.
        #expect(result.journalRecords == 60)
    }

    @Test func aMissingDatabaseIsReported() throws {
        let directory = try TemporaryDirectory()
        try makeStore(directory)
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: directory.databasePath + suffix) }
        let result = StoreVerifier.verify(databasePath: directory.databasePath)
        #expect(!result.isConsistent)
        #expect(result.problems.first?.message.contains("rebuild-index") == true)
    }

    @Test func verifyChangesNothingWhileTheEngineRuns() async throws {
        let directory = try TemporaryDirectory()
        let store = try JournalStore(databasePath: directory.databasePath, io: .system, logger: LogCapture().logger(), onFatal: { _ in })
        for number in 0..<40 {
            _ = await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                _ = store.submit(journalCallback(number)) { _ in done.resume() }
            }
        }
        let result = StoreVerifier.verify(databasePath: directory.databasePath)
        #expect(result.isConsistent, "\(result.findings)")
        #expect(result.journalRecords == 40)
        #expect(result.compared + result.notYetIndexed == 40)
        store.close()
        let after = StoreVerifier.verify(databasePath: directory.databasePath)
        #expect(after.isConsistent, "\(after.findings)")
        #expect(after.compared == 40)
    }

    // MARK: rebuild-index

    @Test func rebuildRestoresEveryRecordWithItsIDAndKeepsTheOldDatabase() throws {
        let directory = try TemporaryDirectory()
        let records = try makeStore(directory, count: 60, indexed: 45)
        try sqliteExecute(directory.databasePath, "UPDATE callbacks SET body = '{}' WHERE id = 3")
        let now = Date(timeIntervalSince1970: 1_773_489_600)  // 2026-03-14 12:00:00 UTC
        let rebuild = try IndexRebuilder.rebuild(databasePath: directory.databasePath, now: now)
        #expect(rebuild.indexed == 60)
        #expect(rebuild.ranges == [1...60])
        #expect(rebuild.movedTo.first == directory.databasePath + ".damaged-20260314T120000Z")
        #expect(FileManager.default.fileExists(atPath: directory.databasePath + ".damaged-20260314T120000Z"))

        let store = try SQLiteCallbackStore(path: directory.databasePath, readOnly: true)
        defer { store.close() }
        for record in records {
            let row = try #require(try store.callback(id: record.id))
            #expect(row.body == record.callback.body)
            #expect(row.requestID == record.callback.requestID)
        }
        #expect(try store.journalPosition()?.nextID == 61)
        let result = StoreVerifier.verify(databasePath: directory.databasePath)
        #expect(result.isConsistent, "\(result.findings)")
        #expect(result.compared == 60)
    }

    @Test func rebuildRefusesADamagedJournalAndMovesNothing() throws {
        let directory = try TemporaryDirectory()
        try makeStore(directory)
        let oldest = try #require(try segments(directory).first)
        var bytes = try fileBytes(oldest.path)
        bytes[JournalSegmentHeader.size + 30] ^= 0x01
        try writeFileBytes(oldest.path, bytes)
        #expect {
            try IndexRebuilder.rebuild(databasePath: directory.databasePath)
        } throws: { error in
            "\(error)".contains(oldest.path) && "\(error)".contains("nothing was changed")
        }
        #expect(FileManager.default.fileExists(atPath: directory.databasePath))
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).allSatisfy { !$0.contains(".damaged-") })
    }

    @Test func rebuildStepsOverAMissingSegmentAndSaysSo() throws {
        let directory = try TemporaryDirectory()
        let records = try makeStore(directory)
        let all = try segments(directory)
        try FileManager.default.removeItem(atPath: all[1].path)
        let rebuild = try IndexRebuilder.rebuild(databasePath: directory.databasePath)
        #expect(rebuild.ranges.count == 2)
        #expect(rebuild.ranges.first?.lowerBound == 1)
        #expect(rebuild.ranges.last?.upperBound == records.last?.id)
        #expect(rebuild.notes.contains { $0.contains("no segment holds ids \(all[1].firstID)–") })
    }
}
