// What the journal tests share: a journal in a temporary directory, callbacks told apart by
// their number, copies of a journal to damage, and reading a whole journal back.
import CallbackStore
import Foundation
import Synchronization
import TestSupport
import Vocabulary

@testable import SQLiteStore

/// A callback whose request id and body carry `number`, so records are told apart.
func journalCallback(_ number: Int, bodySize: Int = 40) -> NewCallback {
    var body = Array(#"{"requestId":"r-\#(number)"}"#.utf8)
    if body.count < bodySize { body += [UInt8](repeating: UInt8(ascii: " "), count: bodySize - body.count) }
    return makeCallback(requestID: "r-\(number)", body: body)
}

extension TemporaryDirectory {
    var journalPath: String { file("journal") }
    func journal(io: JournalIO = .system) -> JournalDirectory { JournalDirectory(path: journalPath, io: io) }
}

/// Everything a fresh scan reads from `directory`, the scanner kept for its tail and end.
func scanAll(_ directory: JournalDirectory, from start: JournalPosition? = nil) throws -> ([JournalRecord], JournalScanner) {
    let scanner = try JournalScanner(directory: directory, from: start)
    var records: [JournalRecord] = []
    while let record = try scanner.next() { records.append(record) }
    return (records, scanner)
}

/// Opens a writer where a scan of `directory` ends (cutting a torn tail first).
func reopenWriter(_ directory: JournalDirectory, segmentSize: Int) throws -> (JournalWriter, [JournalRecord]) {
    let (records, scanner) = try scanAll(directory)
    try scanner.cutTail()
    let writer = try JournalWriter(directory: directory, continuingAt: scanner.end, firstID: scanner.nextID, segmentSize: segmentSize)
    return (writer, records)
}

func fileBytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

func writeFileBytes(_ path: String, _ bytes: [UInt8]) throws { try Data(bytes).write(to: URL(fileURLWithPath: path)) }

/// Copies every file of `source` into a fresh directory inside `parent` and returns it.
func copyJournal(_ source: String, into parent: TemporaryDirectory, name: String) throws -> String {
    let target = parent.file(name)
    try? FileManager.default.removeItem(atPath: target)
    try FileManager.default.copyItem(atPath: source, toPath: target)
    return target
}

/// Counts calls of one system call and fails chosen ones.
final class FaultPlan: Sendable {
    private let calls = Mutex<Int>(0)
    private let failing: Mutex<Set<Int>>
    let error: Int32

    init(failCalls: Set<Int> = [], error: Int32) {
        failing = Mutex(failCalls)
        self.error = error
    }

    var count: Int { calls.withLock { $0 } }
    func fail(nextCallsFrom first: Int, count: Int = 1) { failing.withLock { $0.formUnion(first..<first + count) } }

    /// The error for this call, or nil to let it through.
    func next() -> Int32? {
        let call = calls.withLock { calls in
            calls += 1
            return calls
        }
        return failing.withLock { $0.contains(call) } ? error : nil
    }
}

extension JournalIO {
    func failing(fdatasync plan: FaultPlan) -> JournalIO {
        var io = self
        let real = self.fdatasync
        io.fdatasync = { fd in plan.next() ?? real(fd) }
        return io
    }

    func failing(fsync plan: FaultPlan) -> JournalIO {
        var io = self
        let real = self.fsync
        io.fsync = { fd in plan.next() ?? real(fd) }
        return io
    }

    func failing(fallocate plan: FaultPlan) -> JournalIO {
        var io = self
        let real = self.fallocate
        io.fallocate = { fd, offset, length in plan.next() ?? real(fd, offset, length) }
        return io
    }
}
