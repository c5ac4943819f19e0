// The journal writer on real files: ids continue across reopening, batches roll to new
// segments, segments are preallocated, a failed sync stops the writer for good (fault seams on
// the real writer), a full disk does not, and append and sync may run on two threads at once.
import CallbackStore
import Foundation
import Synchronization
import TestSupport
import Testing

@testable import SQLiteStore

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct JournalWriterTests {
    @Test func appendSyncReopenContinuesIDs() throws {
        let directory = try TemporaryDirectory()
        let journal = directory.journal()
        do {
            let writer = try JournalWriter(directory: journal, continuingAt: nil, firstID: 100, segmentSize: 64 << 10)
            #expect(try writer.append([journalCallback(1), journalCallback(2)]) == [100, 101])
            #expect(try writer.append([]) == [])
            #expect(try writer.append([journalCallback(3)]) == [102])
            try writer.sync()
            #expect(writer.end.nextID == 103)
        }
        let (writer, records) = try reopenWriter(journal, segmentSize: 64 << 10)
        #expect(records.map(\.id) == [100, 101, 102])
        #expect(records.map(\.callback) == [journalCallback(1), journalCallback(2), journalCallback(3)])
        #expect(try writer.append([journalCallback(4)]) == [103])
        try writer.sync()
        let (again, _) = try scanAll(journal)
        #expect(again.map(\.id) == [100, 101, 102, 103])
        #expect(try journal.segments().count == 1)
    }

    @Test func aBatchThatDoesNotFitRollsToANewSegment() throws {
        let directory = try TemporaryDirectory()
        let journal = directory.journal()
        let segmentSize = 4096
        let writer = try JournalWriter(directory: journal, continuingAt: nil, segmentSize: segmentSize)
        var ids: [Int64] = []
        // About 200 bytes a frame: 20 batches of 3 need several segments.
        for batch in 0..<20 { ids += try writer.append((0..<3).map { journalCallback(batch * 3 + $0, bodySize: 120) }) }
        try writer.sync()
        #expect(ids == Array(1...60))
        let segments = try journal.segments()
        #expect(segments.count > 2)
        // Each batch whole in one segment: every segment starts at a batch boundary.
        #expect(segments.allSatisfy { ($0.firstID - 1) % 3 == 0 })
        let (records, scanner) = try scanAll(journal)
        #expect(records.map(\.id) == Array(1...60))
        #expect(scanner.tail == .clean)
        for segment in segments { #expect(try FileManager.default.attributesOfItem(atPath: segment.path)[.size] as? Int == segmentSize) }
    }

    /// Before the first record goes into a new segment the old one is on disk, so an older
    /// segment never has a torn tail (recovery may call any bad record in it damage).
    @Test func rollingSyncsTheOldSegmentFirst() throws {
        let directory = try TemporaryDirectory()
        let syncs = FaultPlan(error: 0)
        let journal = directory.journal(io: JournalIO.system.failing(fdatasync: syncs))
        let writer = try JournalWriter(directory: journal, continuingAt: nil, segmentSize: 4096)
        _ = try writer.append([journalCallback(1, bodySize: 3000)])
        #expect(syncs.count == 0)
        _ = try writer.append([journalCallback(2, bodySize: 3000)])
        #expect(syncs.count == 1)
        #expect(try journal.segments().map(\.firstID) == [1, 2])
    }

    @Test func aBatchLargerThanASegmentGetsASegmentOfItsSize() throws {
        let directory = try TemporaryDirectory()
        let journal = directory.journal()
        let writer = try JournalWriter(directory: journal, continuingAt: nil, segmentSize: 4096)
        // The first batch does not fit the empty first segment: it grows instead (a new segment would take its name).
        #expect(try writer.append([journalCallback(1, bodySize: 10_000)]) == [1])
        #expect(try writer.append([journalCallback(2, bodySize: 10_000), journalCallback(3)]) == [2, 3])
        #expect(try writer.append([journalCallback(4)]) == [4])
        try writer.sync()
        #expect(try journal.segments().map(\.firstID) == [1, 2, 4])
        let (records, _) = try scanAll(journal)
        #expect(records.map(\.id) == [1, 2, 3, 4])
        #expect(records[1].callback == journalCallback(2, bodySize: 10_000))
    }

    @Test func aNewSegmentIsPreallocated() throws {
        let directory = try TemporaryDirectory()
        let segmentSize = 4 << 20
        let writer = try JournalWriter(directory: directory.journal(), continuingAt: nil, segmentSize: segmentSize)
        var info = stat()
        #expect(stat(directory.journal().segmentPath(firstID: 1), &info) == 0)
        #expect(Int(info.st_size) == segmentSize)
        #expect(Int(info.st_blocks) * 512 >= segmentSize, "st_blocks \(info.st_blocks)")
        withExtendedLifetime(writer) {}
    }

    @Test func afterOneFailedSyncTheWriterRefusesEverything() throws {
        let directory = try TemporaryDirectory()
        let plan = FaultPlan(error: EIO)
        let journal = directory.journal(io: JournalIO.system.failing(fdatasync: plan))
        let writer = try JournalWriter(directory: journal, continuingAt: nil, segmentSize: 64 << 10)
        _ = try writer.append([journalCallback(1)])
        try writer.sync()
        _ = try writer.append([journalCallback(2)])
        plan.fail(nextCallsFrom: plan.count + 1)
        let path = journal.segmentPath(firstID: 1)
        #expect(throws: JournalError.syncFailed(path: path, errno: EIO)) { try writer.sync() }
        #expect(writer.stoppedBy?.isFatal == true)
        // fdatasync works again (the fsyncgate case: it would now report success); the writer still refuses.
        #expect(throws: JournalError.syncFailed(path: path, errno: EIO)) { try writer.append([journalCallback(3)]) }
        #expect(throws: JournalError.syncFailed(path: path, errno: EIO)) { try writer.sync() }
        #expect(writer.end.nextID == 3)
    }

    @Test func aFailedDirectoryFsyncWhileRollingStopsTheWriter() throws {
        let directory = try TemporaryDirectory()
        let plan = FaultPlan(error: EIO)
        let journal = directory.journal(io: JournalIO.system.failing(fsync: plan))
        let writer = try JournalWriter(directory: journal, continuingAt: nil, segmentSize: 4096)
        _ = try writer.append([journalCallback(1, bodySize: 3000)])
        // The next batch rolls: fsync of the new file, then of the directory (fails).
        plan.fail(nextCallsFrom: plan.count + 2)
        #expect(throws: JournalError.syncFailed(path: journal.path, errno: EIO)) { try writer.append([journalCallback(2, bodySize: 3000)]) }
        #expect(throws: JournalError.syncFailed(path: journal.path, errno: EIO)) { try writer.append([journalCallback(3)]) }
        #expect(throws: JournalError.syncFailed(path: journal.path, errno: EIO)) { try writer.sync() }
    }

    @Test func aFullDiskFailsTheAppendButNotTheWriter() throws {
        let directory = try TemporaryDirectory()
        let plan = FaultPlan(error: ENOSPC)
        let journal = directory.journal(io: JournalIO.system.failing(fallocate: plan))
        let writer = try JournalWriter(directory: journal, continuingAt: nil, segmentSize: 4096)
        #expect(try writer.append([journalCallback(1, bodySize: 3000)]) == [1])
        plan.fail(nextCallsFrom: plan.count + 1)
        #expect(throws: JournalError.full(path: journal.segmentPath(firstID: 2), errno: ENOSPC)) {
            try writer.append([journalCallback(2, bodySize: 3000)])
        }
        #expect(!FileManager.default.fileExists(atPath: journal.segmentPath(firstID: 2)))
        #expect(writer.stoppedBy == nil)
        // Space again: the same id is used, nothing was skipped.
        #expect(try writer.append([journalCallback(2, bodySize: 3000)]) == [2])
        try writer.sync()
        #expect(try scanAll(journal).0.map(\.id) == [1, 2])
    }

    @Test func aFullDiskPartWayThroughAWriteLeavesNothingReadable() throws {
        let directory = try TemporaryDirectory()
        // 0: pass through; 1: write half of what is asked, then 2: report ENOSPC once.
        let mode = Atomic<Int>(0)
        var io = JournalIO.system
        let real = io.pwrite
        io.pwrite = { fd, bytes, offset in
            switch mode.load(ordering: .relaxed) {
            case 1:
                mode.store(2, ordering: .relaxed)
                return real(fd, UnsafeRawBufferPointer(rebasing: bytes[0..<bytes.count / 2]), offset)
            case 2:
                mode.store(0, ordering: .relaxed)
                return -Int(ENOSPC)
            default:
                return real(fd, bytes, offset)
            }
        }
        let journal = directory.journal(io: io)
        let writer = try JournalWriter(directory: journal, continuingAt: nil, segmentSize: 64 << 10)
        _ = try writer.append([journalCallback(1)])
        let end = writer.end
        mode.store(1, ordering: .relaxed)
        #expect(throws: JournalError.full(path: journal.segmentPath(firstID: 1), errno: ENOSPC)) {
            try writer.append([journalCallback(2), journalCallback(3)])
        }
        #expect(writer.end == end)
        // The half that landed was zeroed again: a crash now would recover record 1 only.
        let bytes = try fileBytes(journal.segmentPath(firstID: 1))
        #expect(bytes[end.offset...].allSatisfy { $0 == 0 })
        #expect(try scanAll(directory.journal()).0.map(\.id) == [1])
        #expect(try writer.append([journalCallback(4)]) == [2])
        try writer.sync()
        #expect(try scanAll(directory.journal()).0.map(\.callback) == [journalCallback(1), journalCallback(4)])
    }

    /// Append on one thread, sync on another, at once, as the intake pipelines them.
    @Test func appendAndSyncMayRunOnTwoThreads() throws {
        let directory = try TemporaryDirectory()
        let journal = directory.journal()
        let writer = try JournalWriter(directory: journal, continuingAt: nil, segmentSize: 16 << 10)
        let appended = Mutex<[Int64]>([])
        let done = Atomic<Bool>(false)
        let syncer = Thread {
            while !done.load(ordering: .acquiring) {
                try? writer.sync()
            }
            try? writer.sync()
        }
        let finished = DispatchSemaphore(value: 0)
        let appender = Thread {
            for batch in 0..<200 {
                let ids = (try? writer.append([journalCallback(batch), journalCallback(batch + 1000)])) ?? []
                appended.withLock { $0 += ids }
            }
            done.store(true, ordering: .releasing)
            finished.signal()
        }
        syncer.start()
        appender.start()
        #expect(finished.wait(timeout: .now() + 60) == .success)
        while !syncer.isFinished { usleep(1000) }
        #expect(appended.withLock { $0 } == Array(1...400))
        #expect(writer.stoppedBy == nil)
        let (records, _) = try scanAll(journal)
        #expect(records.map(\.id) == Array(1...400))
    }

    /// Two appends at once break the contract: the second traps (an exit test, in a child process)
    /// instead of interleaving two batches' ids.
    @Test func twoAppendsAtOnceTrap() async {
        await #expect(processExitsWith: .failure) {
            let directory = try! TemporaryDirectory()
            let inside = DispatchSemaphore(value: 0)
            let release = DispatchSemaphore(value: 0)
            let hold = Atomic<Bool>(false)
            var io = JournalIO.system
            let real = io.pwrite
            io.pwrite = { fd, bytes, offset in
                if hold.exchange(false, ordering: .relaxed) {
                    inside.signal()
                    _ = release.wait(timeout: .now() + 10)
                }
                return real(fd, bytes, offset)
            }
            let writer = try! JournalWriter(directory: directory.journal(io: io), continuingAt: nil, segmentSize: 64 << 10)
            hold.store(true, ordering: .relaxed)
            Thread { _ = try? writer.append([journalCallback(1)]) }.start()
            inside.wait()
            _ = try? writer.append([journalCallback(2)])  // traps: the other thread is inside
            release.signal()
        }
    }
}
