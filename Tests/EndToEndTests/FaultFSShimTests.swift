// The faultfs shim itself (Tests/FaultInjection): a failing fdatasync leaves the file exactly as
// it was at its last successful sync, returns EIO once, and touches no other file. The fault trials
// (FailedSyncEndToEndTests) rely on this.
import Foundation
import TestSupport
import Testing

@Suite struct FaultFSShimTests {
    /// Runs the probe with the shim loaded; returns its output lines and the shim's log lines.
    private func probe(_ operations: [String], environment: [String: String]) throws -> (output: [String], log: [String]) {
        let build = try FaultFS.build()
        let result = try runCommand([build.probe] + operations, environment: environment, timeout: .seconds(30))
        #expect(result.status == 0, "probe failed: \(result.stderr)")
        let log = result.stderr.split(separator: "\n").map(String.init).filter { $0.hasPrefix("faultfs[") }
        return (result.stdout.split(separator: "\n").map(String.init), log)
    }

    @Test func aFailedSyncRevertsTheFileToItsLastSyncedContentOnce() throws {
        let directory = try TemporaryDirectory()
        let scratch = directory.file("scratch.dat")
        let other = directory.file("other.dat")
        let environment = try FaultFS.environment(match: "scratch.dat", failure: .atSync(2))
        let synced = "synced content, then overwritten"
        let (output, log) = try probe(
            [
                "open", "s", scratch, "rw",
                "pwrite", "s", "0", synced,
                "fdatasync", "s",
                // Overwritten, appended (write at the position, writev), cut, extended: all undone.
                "pwrite", "s", "0", "OVERWRITTEN",
                "write", "s", "appended",
                "writev", "s", "more", "bytes",
                "truncate", "s", "20",
                "pwrite", "s", "100", "far beyond the end",
                // Another file, synced in between, is passed through untouched.
                "open", "o", other, "rw",
                "write", "o", "other file",
                "fdatasync", "o",
                // Synced through a second, read-only descriptor (as the store syncs the WAL).
                "open", "r", scratch, "ro",
                "fdatasync", "r",
                "read", "s",
                "pwrite", "s", "0", "S",
                "fdatasync", "s",
                "read", "s",
            ], environment: environment)
        #expect(
            output == [
                "fdatasync s 0",
                "fdatasync o 0",
                "fdatasync r -1 EIO",
                "read s \(synced.utf8.count) \(synced)",
                "fdatasync s 0",
                "read s \(synced.utf8.count) S\(synced.dropFirst())",
            ])
        #expect(log.contains { $0.contains("injected EIO: fdatasync #2") && $0.contains("scratch.dat") })
        #expect(log.filter { $0.contains("injected EIO") }.count == 1)
        #expect(try String(contentsOfFile: scratch, encoding: .utf8) == "S\(synced.dropFirst())")
        #expect(try String(contentsOfFile: other, encoding: .utf8) == "other file")
    }

    /// Without a successful sync, the file reverts to what it held when the shim first saw it.
    @Test func aFileNeverSyncedRevertsToItsContentWhenOpened() throws {
        let directory = try TemporaryDirectory()
        let scratch = try directory.write("scratch.dat", "before")
        let environment = try FaultFS.environment(match: directory.path + "/", failure: .atSync(1))
        let (output, _) = try probe(
            ["open", "s", scratch, "rw", "write", "s", "AFTER-AND-LONGER", "fsync", "s", "fsync", "s"], environment: environment)
        #expect(output == ["fsync s -1 EIO", "fsync s 0"])
        #expect(try String(contentsOfFile: scratch, encoding: .utf8) == "before")
    }

    /// Threads appending and syncing at once (the shim's lock): one sync fails, and the file stays
    /// whole lines, each a write of its own.
    @Test func concurrentWritersSeeOneFailureAndAConsistentFile() throws {
        let directory = try TemporaryDirectory()
        let file = directory.file("lines.txt")
        let environment = try FaultFS.environment(match: "lines.txt", failure: .atSync(150))
        let (_, log) = try probe(["threads", "8", "50", file], environment: environment)
        #expect(log.filter { $0.contains("injected EIO") }.count == 1)
        let text = try String(contentsOfFile: file, encoding: .utf8)
        #expect(text.isEmpty || text.hasSuffix("\n"))
        let lines = text.split(separator: "\n")
        #expect(lines.allSatisfy { $0.hasPrefix("thread ") && $0.contains(" line ") })
        #expect(lines.count <= 400)
    }
}
