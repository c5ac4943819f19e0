import CallbackStore
import Foundation
import Logging
import Synchronization
import TestSupport
import Testing

@testable import SQLiteStore

#if canImport(Glibc)
    import Glibc
#endif

@Suite("JournalStore under a file size limit")
struct FileSizeLimitTests {
    /// What `prlimit --fsize` does to the service: with SIGXFSZ ignored, writes past the limit fail
    /// with EFBIG, which the journal takes for a full disk. Run in a child process, since the limit
    /// applies to the whole process.
    @Test("RLIMIT_FSIZE lowered: appends fail as a full disk (503), nothing stops; raised: the store recovers by itself")
    func fileSizeLimitFailsThenRecovers() async {
        // The child reports a failed step on stderr; a crash fails the exit-status expectation.
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            try FileSizeLimitScenario.run()
        }
        #expect(result.map { String(decoding: $0.standardErrorContent, as: UTF8.self) } == "")
    }
}

/// Runs in the child process. A failed step is written to stderr, then the child exits with status 0
/// (Swift Testing hands the parent the child's stderr only when the exit status is as expected).
enum FileSizeLimitScenario {
    static func run() throws {
        signal(SIGXFSZ, SIG_IGN)
        let directory = try TemporaryDirectory()
        defer { withExtendedLifetime(directory) {} }
        let path = directory.databasePath
        let quiet = Logger(label: "child") { _ in SwiftLogNoOpLogHandler() }
        let fatal = Mutex<[String]>([])
        let store = try JournalStore(
            databasePath: path, segmentSize: 64 << 10, io: .system, logger: quiet,
            onFatal: { error in fatal.withLock { $0.append("\(error)") } })
        let log = CompletionLog()
        check(store.submit(makeCallback(requestID: "before", dedupKey: "before"), completion: log.completion), "submit before")
        check(log.wait(for: 1), "first commit")
        check(eventually(within: .seconds(20)) { store.indexLag.records == 0 }, "indexed")
        // Everything indexed copied into the database file and the WAL emptied, so that nothing
        // of SQLite's needs to grow while the limit is low (the journal holds what it lacks).
        check(try sqliteValue(path, "PRAGMA wal_checkpoint(TRUNCATE)") == "0", "checkpoint")

        var original = rlimit()
        check(getrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &original) == 0, "getrlimit")
        var lowered = original
        lowered.rlim_cur = 1  // below the end of every file, the journal segment's included
        check(setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &lowered) == 0, "setrlimit lower")
        for index in 0..<3 {
            check(
                store.submit(makeCallback(requestID: "lost\(index)", dedupKey: "lost\(index)"), completion: log.completion), "submit lost")
            check(log.wait(for: 2 + index), "refusal \(index)")
        }
        check(log.errors.count == 3, "3 refusals, got \(log.all)")
        for error in log.errors {
            guard case .full(let message) = error else { return check(false, "a disk-full error, got \(error)") }
            check(message.contains("File too large"), "the cause named: \(message)")
        }
        check(store.isFailing, "isFailing while the limit is low")

        // Raised again: the idle writer finds room by itself, and the next callback is stored.
        check(setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &original) == 0, "setrlimit raise")
        check(eventually(within: .seconds(20)) { !store.isFailing }, "recovered without traffic")
        check(store.submit(makeCallback(requestID: "after", dedupKey: "after"), completion: log.completion), "submit after")
        check(log.wait(for: 5), "all completions")
        check(log.receipts.map(\.id) == [1, 2], "the refused ones used no id, got \(log.all)")
        check(fatal.withLock { $0 }.isEmpty, "no fatal error: \(fatal.withLock { $0 })")
        store.close()

        // What a restart recovers: the two callbacks, nothing of the refused ones.
        let reopened = try JournalStore(databasePath: path, segmentSize: 64 << 10, io: .system, logger: quiet, onFatal: { _ in })
        let stored = try reopened.reader().query(CallbackFilter(includeDuplicates: true)).compactMap(\.requestID)
        check(Set(stored) == ["before", "after"], "stored \(stored)")
        reopened.close()
        check(try sqliteValue(path, "PRAGMA integrity_check") == "ok", "integrity")
    }

    static func check(_ condition: Bool, _ step: String) {
        guard !condition else { return }
        FileHandle.standardError.write(Data("failed: \(step)\n".utf8))
        exit(0)
    }
}
