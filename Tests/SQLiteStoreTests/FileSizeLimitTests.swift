import CallbackStore
import Foundation
import Logging
import SQLiteStore
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("GroupCommitWriter under a file size limit")
struct FileSizeLimitTests {
    /// What `prlimit --fsize` does to the service: with SIGXFSZ ignored, writes past the limit fail
    /// with EFBIG. Run in a child process, since the limit applies to the whole process.
    @Test("RLIMIT_FSIZE lowered: the batch fails and nothing of it is stored; raised: the writer recovers")
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
        let quiet = Logger(label: "child") { _ in SwiftLogNoOpLogHandler() }
        let probe = WriterProbe()
        let writer = probe.writer(store: try SQLiteCallbackStore(path: directory.databasePath), logger: quiet)
        let log = CompletionLog()
        var original = rlimit()
        check(getrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &original) == 0, "getrlimit")
        check(writer.submit(makeCallback(requestID: "before", dedupKey: "before"), completion: log.completion), "submit before")
        check(log.wait(for: 1), "first commit")

        // Hold the writer before its next commit, then lower the limit below every file's size.
        probe.holdNextBatches(1)
        check(writer.submit(makeCallback(requestID: "lost0", dedupKey: "lost0"), completion: log.completion), "submit lost0")
        check(probe.waitForHold(1), "held")
        var lowered = original
        lowered.rlim_cur = 1_024
        check(setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &lowered) == 0, "setrlimit lower")
        for index in 1...2 {
            check(
                writer.submit(makeCallback(requestID: "lost\(index)", dedupKey: "lost\(index)"), completion: log.completion), "submit lost")
        }
        probe.holdNextBatches(1)
        probe.resume()
        check(probe.waitForHold(2), "first failed commit")
        check(probe.failedBatchSizes == [1], "a failed batch of 1, got \(probe.failedBatchSizes)")
        probe.holdNextBatches(1)
        check(writer.submit(makeCallback(requestID: "after", dedupKey: "after"), completion: log.completion), "submit after")
        probe.resume()
        check(probe.waitForHold(3), "second failed commit")
        check(probe.failedBatchSizes == [1, 2], "failed batches of 1 and 2, got \(probe.failedBatchSizes)")
        check(log.errors.count == 3, "3 failures, got \(log.all)")
        for error in log.errors {
            switch error {
            case .ioError(let message): check(message.contains("SQLITE_IOERR"), "the failed operation named: \(message)")
            case .full: break
            default: check(false, "an I/O or disk-full error, got \(error)")
            }
        }
        check(writer.isFailing, "isFailing during the episode")

        // Raise it again: the next batch commits (after reopening the connection).
        check(setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &original) == 0, "setrlimit raise")
        probe.resume()
        check(log.wait(for: 5), "all completions")
        check(log.receipts.count == 2, "2 commits, got \(log.all)")
        check(!writer.isFailing, "recovered")
        writer.close()

        let reader = try SQLiteCallbackStore(path: directory.databasePath, readOnly: true)
        defer { reader.close() }
        let stored = try reader.query(CallbackFilter(includeDuplicates: true)).compactMap(\.requestID)
        check(Set(stored) == ["before", "after"], "stored \(stored)")
        check(try sqliteValue(directory.databasePath, "PRAGMA integrity_check") == "ok", "integrity")
    }

    static func check(_ condition: Bool, _ step: String) {
        guard !condition else { return }
        FileHandle.standardError.write(Data("failed: \(step)\n".utf8))
        exit(0)
    }
}
