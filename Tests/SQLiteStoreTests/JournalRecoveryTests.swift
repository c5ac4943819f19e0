// The start-up scan on real files: a torn tail cut at every byte offset of the last records
// (truncated, zeroed or garbage after the cut), flipped bits in the last and in an older
// segment, an unexpected id, a newest segment whose creation did not finish, scanning from a
// position, and deleting segments as indexing moves on.
import CallbackStore
import Foundation
import TestSupport
import Testing

@testable import SQLiteStore

@Suite struct JournalRecoveryTests {
    static let segmentSize = 4096

    /// Segment 1 holds record 1 (large) alone; segment 2 records 2...6, one append (and sync) each.
    /// Returns the journal and the offset in segment 2 where each of its records starts, plus its end.
    private func makeJournal(in directory: TemporaryDirectory) throws -> (JournalDirectory, [Int]) {
        let journal = directory.journal()
        let writer = try JournalWriter(directory: journal, continuingAt: nil, segmentSize: Self.segmentSize)
        _ = try writer.append([journalCallback(1, bodySize: 3800)])
        var boundaries: [Int] = []
        for number in 2...6 {
            _ = try writer.append([journalCallback(number)])
            if boundaries.isEmpty { boundaries.append(JournalSegmentHeader.size) }
            boundaries.append(writer.end.offset)
        }
        try writer.sync()
        #expect(try journal.segments().map(\.firstID) == [1, 2])
        return (journal, boundaries)
    }

    enum Damage: CaseIterable { case truncated, zeroed, garbage }

    @Test(arguments: Damage.allCases)
    func aTornTailIsCutAtEveryOffsetOfTheLastTwoRecords(_ damage: Damage) throws {
        let directory = try TemporaryDirectory()
        let (journal, boundaries) = try makeJournal(in: directory)
        let original = try fileBytes(journal.segmentPath(firstID: 2))
        let lastTwo = boundaries[boundaries.count - 3]...boundaries[boundaries.count - 1]
        for cut in lastTwo {
            let copy = JournalDirectory(path: try copyJournal(journal.path, into: directory, name: "copy"))
            var bytes = original
            switch damage {
            case .truncated: bytes.removeSubrange(cut...)
            case .zeroed: bytes.replaceSubrange(cut..., with: repeatElement(0, count: bytes.count - cut))
            case .garbage: bytes.replaceSubrange(cut..., with: repeatElement(0xA5, count: bytes.count - cut))
            }
            try writeFileBytes(copy.segmentPath(firstID: 2), bytes)
            // Records 2... whose frames end at or before the cut survive.
            let kept = 1 + boundaries.dropFirst().filter { $0 <= cut }.count
            let (records, scanner) = try scanAll(copy)
            #expect(records.map(\.id) == Array(1...Int64(kept)), "\(damage) cut at \(cut)")
            #expect(records.last?.callback == journalCallback(kept, bodySize: kept == 1 ? 3800 : 40))
            let validEnd = boundaries[kept - 1]
            if case .torn(let path, let offset, _) = scanner.tail {
                #expect(path == copy.segmentPath(firstID: 2))
                #expect(offset == validEnd, "\(damage) cut at \(cut)")
            } else {
                // Clean only when nothing but zeros (or the end of the file) follows the valid records.
                #expect(damage != .garbage && cut == validEnd, "\(damage) cut at \(cut): \(scanner.tail)")
            }
            try scanner.cutTail()
            #expect(scanner.end == JournalPosition(segmentFirstID: 2, offset: validEnd, nextID: Int64(kept) + 1))
            let writer = try JournalWriter(directory: copy, continuingAt: scanner.end, segmentSize: Self.segmentSize)
            #expect(try writer.append([journalCallback(99)]) == [Int64(kept) + 1])
            try writer.sync()
            let (again, rescan) = try scanAll(copy)
            #expect(again.map(\.id) == Array(1...Int64(kept) + 1), "\(damage) cut at \(cut)")
            #expect(again.last?.callback == journalCallback(99))
            #expect(rescan.tail == .clean, "\(damage) cut at \(cut): \(rescan.tail)")
        }
    }

    @Test func aFlippedBitInTheLastRecordOfTheLastSegmentEndsTheTailThere() throws {
        let directory = try TemporaryDirectory()
        let (journal, boundaries) = try makeJournal(in: directory)
        let path = journal.segmentPath(firstID: 2)
        var bytes = try fileBytes(path)
        let lastStart = boundaries[boundaries.count - 2]
        bytes[lastStart + 40] ^= 0x08
        try writeFileBytes(path, bytes)
        let (records, scanner) = try scanAll(journal)
        #expect(records.map(\.id) == [1, 2, 3, 4, 5])
        guard case .torn(path, lastStart, let reason) = scanner.tail else {
            Issue.record("tail: \(scanner.tail)")
            return
        }
        #expect(reason.contains("checksum"))
        #expect(scanner.tail.description.contains(path) && scanner.tail.description.contains("byte \(lastStart)"))
        try scanner.cutTail()
        #expect(try fileBytes(path)[lastStart...].allSatisfy { $0 == 0 })
        #expect(scanner.nextID == 6)
    }

    @Test func aFlippedBitInAnOlderSegmentRefusesNamingSegmentAndOffset() throws {
        let directory = try TemporaryDirectory()
        let (journal, _) = try makeJournal(in: directory)
        let older = journal.segmentPath(firstID: 1)
        let original = try fileBytes(older)
        // In record 1's payload, and in the header.
        for (byte, offset) in [(JournalSegmentHeader.size + 100, JournalSegmentHeader.size), (9, 0)] {
            var bytes = original
            bytes[byte] ^= 0x01
            try writeFileBytes(older, bytes)
            do {
                _ = try scanAll(journal)
                Issue.record("a damaged older segment was accepted")
            } catch let error as JournalError {
                guard case .damaged(older, offset, _) = error else {
                    Issue.record("\(error)")
                    continue
                }
                #expect(error.description.contains(older) && error.description.contains("byte \(offset)"))
            }
        }
    }

    @Test func aRecordWithAnUnexpectedIDEndsTheTail() throws {
        let directory = try TemporaryDirectory()
        let (journal, boundaries) = try makeJournal(in: directory)
        let path = journal.segmentPath(firstID: 2)
        var bytes = try fileBytes(path)
        // A well-formed frame whose id repeats the last one.
        var frame: [UInt8] = []
        try JournalFrame.append(JournalRecord(id: 6, callback: journalCallback(7)), to: &frame)
        let end = boundaries.last!
        bytes.replaceSubrange(end..<end + frame.count, with: frame)
        try writeFileBytes(path, bytes)
        let (records, scanner) = try scanAll(journal)
        #expect(records.map(\.id) == [1, 2, 3, 4, 5, 6])
        guard case .torn(path, end, let reason) = scanner.tail else {
            Issue.record("tail: \(scanner.tail)")
            return
        }
        #expect(reason.contains("id 6 where id 7"))
    }

    @Test func aGapBetweenSegmentsIsDamage() throws {
        let directory = try TemporaryDirectory()
        let journal = directory.journal()
        let writer = try JournalWriter(directory: journal, continuingAt: nil, segmentSize: Self.segmentSize)
        for number in 1...3 { _ = try writer.append([journalCallback(number, bodySize: 3000)]) }
        try writer.sync()
        try FileManager.default.removeItem(atPath: journal.segmentPath(firstID: 2))
        #expect(throws: JournalError.self) { try scanAll(journal) }
        do {
            _ = try scanAll(journal)
        } catch {
            guard case .damaged(journal.segmentPath(firstID: 3), 0, _) = error as? JournalError else {
                Issue.record("\(error)")
                return
            }
        }
    }

    /// A crash while the newest segment was being created leaves a file without a valid header
    /// and without records: it is removed, and the writer goes on in the segment before.
    @Test func anUnfinishedNewestSegmentIsRemoved() throws {
        let directory = try TemporaryDirectory()
        let (journal, boundaries) = try makeJournal(in: directory)
        let unfinished = journal.segmentPath(firstID: 7)
        // Empty, or zeros (preallocated, header lost), or a torn header before zeros.
        for leftover in [[], [UInt8](repeating: 0, count: 100), Array("TSLJ".utf8) + [UInt8](repeating: 0, count: 4000)] {
            try writeFileBytes(unfinished, leftover)
            let (_, scanner) = try scanAll(journal)
            #expect(isUnusable(scanner.tail, unfinished), "\(leftover.count) bytes: \(scanner.tail)")
        }
        let (records, scanner) = try scanAll(journal)
        #expect(records.count == 6)
        guard case .unusableSegment(unfinished, _) = scanner.tail else {
            Issue.record("tail: \(scanner.tail)")
            return
        }
        try scanner.cutTail()
        #expect(!FileManager.default.fileExists(atPath: unfinished))
        #expect(scanner.end == JournalPosition(segmentFirstID: 2, offset: boundaries.last!, nextID: 7))
        let writer = try JournalWriter(directory: journal, continuingAt: scanner.end, segmentSize: Self.segmentSize)
        #expect(try writer.append([journalCallback(7)]) == [7])
        // A bad header before valid records is damage, not a crash's leftover.
        try writer.sync()
        var bytes = try fileBytes(journal.segmentPath(firstID: 2))
        bytes[0] = 0
        try writeFileBytes(journal.segmentPath(firstID: 2), bytes)
        #expect(throws: JournalError.self) { try scanAll(journal) }
    }

    @Test func scanningFromAPositionReadsOnlyWhatFollows() throws {
        let directory = try TemporaryDirectory()
        let (journal, boundaries) = try makeJournal(in: directory)
        let middle = JournalPosition(segmentFirstID: 2, offset: boundaries[2], nextID: 4)
        let (records, scanner) = try scanAll(journal, from: middle)
        #expect(records.map(\.id) == [4, 5, 6])
        #expect(scanner.position == JournalPosition(segmentFirstID: 2, offset: boundaries.last!, nextID: 7))
        // The end of segment 1 (as an indexer stores it), with segment 1 deleted since.
        let endOfFirst = JournalPosition(segmentFirstID: 1, offset: 3200, nextID: 2)
        #expect(try journal.deleteSegments(through: 1) == [journal.segmentPath(firstID: 1)])
        #expect(try scanAll(journal, from: endOfFirst).0.map(\.id) == [2, 3, 4, 5, 6])
        // An index that expects records the journal no longer has.
        #expect(throws: JournalError.self) { try scanAll(journal, from: JournalPosition(segmentFirstID: 1, offset: 100, nextID: 1)) }
    }

    @Test func deletingSegmentsKeepsTheNewestAndWhatIsNotCovered() throws {
        let directory = try TemporaryDirectory()
        let journal = directory.journal()
        let writer = try JournalWriter(directory: journal, continuingAt: nil, segmentSize: Self.segmentSize)
        for number in 1...8 { _ = try writer.append([journalCallback(number, bodySize: 1500)]) }
        try writer.sync()
        let firstIDs = try journal.segments().map(\.firstID)
        #expect(firstIDs == [1, 3, 5, 7])
        let (_, scanner) = try scanAll(journal)
        // Through 4: segments 1 (ids 1...2) and 3 (3...4) go; 5 (5...6) stays.
        #expect(try scanner.deleteSegments(through: 4).count == 2)
        #expect(try journal.segments().map(\.firstID) == [5, 7])
        // Through 5: segment 5 still holds 6.
        #expect(try journal.deleteSegments(through: 5) == [])
        // Through anything: the newest stays, the writer's current one.
        #expect(try journal.deleteSegments(through: .max) == [journal.segmentPath(firstID: 5)])
        #expect(try journal.segments().map(\.firstID) == [7])
        #expect(try writer.append([journalCallback(9)]) == [9])
        try writer.sync()
        #expect(try scanAll(journal).0.map(\.id) == [7, 8, 9])
    }

    private func isUnusable(_ tail: JournalTail, _ path: String) -> Bool {
        if case .unusableSegment(path, _) = tail { return true }
        return false
    }
}
