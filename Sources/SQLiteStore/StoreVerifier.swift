// `store verify`: reads the journal and its SQLite index side by side and says whether they
// agree, changing nothing (it works while the service runs: a read-only connection, one read
// snapshot, the journal read without cutting its tail).
//
// What is consistent, given how the engine works:
// - SQLite passes `integrity_check` and `foreign_key_check` and has a schema this program knows;
// - every segment reads end to end (a bad record in an older segment is damage, naming file and
//   offset; a torn tail in the newest is what was never acknowledged, which the next start cuts);
// - every journal record up to the index's position is in the index with the same fields
//   (retention may have purged it: then it is older than every row still indexed);
// - records beyond the position are not yet indexed (normal while the service runs);
// - rows below the oldest segment's first id are only in the index (segments are removed once
//   SQLite holds their records durably); rows beyond the journal's last valid record are not.
import CallbackStore
import Foundation

/// One thing `store verify` found.
public struct StoreFinding: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable {
        /// A file holds what this program did not write: records or rows may be lost.
        case damage
        /// Journal and index disagree.
        case mismatch
        /// Worth knowing; consistent.
        case note
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { "\(kind.rawValue): \(message)" }
}

/// What `StoreVerifier.verify` found, with the counts for its summary.
public struct StoreVerification: Sendable {
    public var databasePath: String
    public var journalPath: String
    public var findings: [StoreFinding] = []
    public var segments = 0
    public var journalRecords = 0
    public var journalIDs: ClosedRange<Int64>?
    public var indexRows: Int64?
    /// The last id the index says it has indexed from the journal.
    public var indexedThrough: Int64?
    public var compared = 0
    public var notYetIndexed = 0
    public var purged = 0
    public var indexOnly: Int64 = 0

    /// No damage and no mismatch (notes allowed).
    public var isConsistent: Bool { !findings.contains { $0.kind != .note } }
    public var problems: [StoreFinding] { findings.filter { $0.kind != .note } }

    public var summary: String {
        var parts: [String] = []
        parts.append(
            "journal: \(segments) segment\(segments == 1 ? "" : "s"), \(journalRecords) record\(journalRecords == 1 ? "" : "s")"
                + (journalIDs.map { " (ids \($0.lowerBound)–\($0.upperBound))" } ?? ""))
        if let indexRows {
            parts.append(
                "index: \(indexRows) row\(indexRows == 1 ? "" : "s")" + (indexedThrough.map { ", indexed through id \($0)" } ?? ""))
        } else {
            parts.append("index: unreadable")
        }
        parts.append("compared \(compared)")
        if notYetIndexed > 0 { parts.append("not yet indexed: \(notYetIndexed)") }
        if purged > 0 { parts.append("purged by retention: \(purged)") }
        if indexOnly > 0 { parts.append("only in the index: \(indexOnly)") }
        let problems = self.problems.count
        let verdict = problems == 0 ? "consistent" : "NOT consistent: \(problems) problem\(problems == 1 ? "" : "s")"
        return "\(verdict) (\(parts.joined(separator: "; ")))"
    }
}

public enum StoreVerifier {
    /// Mismatch lines printed one by one before the rest is only counted.
    static let mismatchLines = 50

    /// Verifies the database at `databasePath` and the journal beside it. Never throws: what it
    /// cannot read is a finding.
    public static func verify(databasePath: String) -> StoreVerification {
        let directory = JournalDirectory(path: JournalDirectory.path(besideDatabase: databasePath))
        var run = Run(result: StoreVerification(databasePath: databasePath, journalPath: directory.path), directory: directory)
        run.verify()
        return run.result
    }
}

/// One verification's state.
private struct Run {
    var result: StoreVerification
    let directory: JournalDirectory
    var connection: SQLiteConnection?
    var position: JournalPosition?
    var minimumReceivedAt: Int64?
    var mismatches = 0
    var positionChecked = false
    var segmentPaths: [Int64: String] = [:]
    var listed: [JournalDirectory.Entry] = []
    var lastRecordID: Int64?
    var gaps: [ClosedRange<Int64>] = []
    var damagedSegments = 0
    var journalVerified = false

    init(result: StoreVerification, directory: JournalDirectory) {
        self.result = result
        self.directory = directory
    }

    mutating func add(_ kind: StoreFinding.Kind, _ message: String) { result.findings.append(StoreFinding(kind, message)) }

    mutating func verify() {
        let path = result.databasePath
        guard FileManager.default.fileExists(atPath: path) else {
            add(
                .damage,
                "no database at \(path): the index is missing; stop the service and run `store rebuild-index` "
                    + "to rebuild it from the journal")
            verifyJournal()
            return
        }
        do throws(CallbackStoreError) {
            let connection = try SQLiteConnection(path: path, readOnly: true)
            self.connection = connection
            defer {
                connection.close()
                self.connection = nil
            }
            try connection.setBusyTimeout(milliseconds: SQLiteCallbackStore.busyTimeoutMilliseconds)
            // One read snapshot for everything: the position and the rows agree with each other.
            try connection.execute("BEGIN")
            defer { connection.rollbackIfOpen() }
            guard try verifyDatabase(connection) else {
                self.connection = nil
                verifyJournal()
                return
            }
            verifyJournal()
            try verifyIndexOnlyRows(connection)
        } catch {
            add(.damage, Self.describe(error, path: path))
            connection = nil
            if !journalVerified { verifyJournal() }
        }
    }

    static func describe(_ error: CallbackStoreError, path: String) -> String {
        switch error {
        case .corrupt(let message):
            "the database \(path) is damaged or is not a SQLite database (\(message)); stop the service, move it aside "
                + "and run `store rebuild-index`, or restore it from a backup"
        case .notACallbackDatabase:
            "\(error)"
        case .busy(let message):
            "the database \(path) stayed locked by another process (\(message)); run `store verify` again"
        default:
            "cannot read the database \(path): \(error)"
        }
    }

    /// SQLite's own checks, the schema, the position. False when the rows cannot be compared.
    mutating func verifyDatabase(_ connection: SQLiteConnection) throws(CallbackStoreError) -> Bool {
        let state = try Schema.validate(connection)
        switch state {
        case .empty:
            add(.damage, "the database \(result.databasePath) holds no tables: it is not a callback database, or was never initialised")
            return false
        case .older(let version):
            add(.note, "schema version \(version) (this program writes \(Schema.version)): the service migrates it at its next start")
        case .current:
            break
        }
        var problems: [String] = []
        try connection.withStatement("PRAGMA integrity_check(20)") { statement throws(CallbackStoreError) in
            while try statement.step() { problems.append(statement.text(0) ?? "") }
        }
        if problems != ["ok"] {
            for problem in problems {
                add(.damage, "the database \(result.databasePath) fails SQLite's integrity check: \(problem)")
            }
        }
        var foreignKeys = 0
        try connection.withStatement("PRAGMA foreign_key_check") { statement throws(CallbackStoreError) in
            while try statement.step() {
                foreignKeys += 1
                if foreignKeys <= 20 {
                    add(
                        .mismatch,
                        "\(statement.text(0) ?? "?") row \(statement.int64(1).map(String.init) ?? "?") refers to a missing row of \(statement.text(2) ?? "?")"
                    )
                }
            }
        }
        if foreignKeys > 20 { add(.mismatch, "\(foreignKeys - 20) more rows refer to missing rows") }
        result.indexRows = try connection.scalarInt64("SELECT count(*) FROM callbacks") ?? 0
        minimumReceivedAt = try connection.scalarInt64("SELECT min(received_at) FROM callbacks")
        let hasPosition =
            try connection.scalarInt64("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'journal_position'") ?? 0
        if hasPosition > 0 {
            position = try connection.withStatement("SELECT last_id, segment, offset FROM journal_position WHERE singleton = 1") {
                statement throws(CallbackStoreError) in
                guard try statement.step(), let lastID = statement.int64(0), let segment = statement.int64(1),
                    let offset = statement.int64(2)
                else { return nil }
                return JournalPosition(segmentFirstID: segment, offset: Int(offset), nextID: lastID + 1)
            }
        }
        result.indexedThrough = position.map { $0.nextID - 1 }
        return true
    }

    mutating func verifyJournal() {
        journalVerified = true
        do {
            listed = try directory.segments()
        } catch {
            add(.damage, "cannot list the journal: \(error)")
            return
        }
        result.segments = listed.count
        guard !listed.isEmpty else {
            add(.note, "no journal segments in \(directory.path) (the service creates one at its next start)")
            return
        }
        for entry in listed { segmentPaths[entry.firstID] = entry.path }
        do {
            try walkJournal(directory) { event in self.visit(event) }
        } catch {
            add(.damage, "cannot read the journal: \(error)")
        }
        if mismatches > StoreVerifier.mismatchLines {
            add(.mismatch, "\(mismatches - StoreVerifier.mismatchLines) more records differ between the journal and the index")
        }
    }

    mutating func visit(_ event: JournalWalkEvent) {
        switch event {
        case .record(let record, let after):
            result.journalRecords += 1
            lastRecordID = record.id
            result.journalIDs = (result.journalIDs?.lowerBound ?? record.id)...record.id
            compare(record, after: after)
        case .damaged(let path, let offset, let reason):
            damagedSegments += 1
            add(.damage, "\(path) at byte \(offset): \(reason)")
        case .gap(let ids, let before):
            gaps.append(ids)
            add(.damage, "no segment holds ids \(ids.lowerBound)–\(ids.upperBound) (before \(before)): a segment is missing")
        case .vanished(let path):
            add(.note, "\(path) was removed while verifying (the service removes segments once the index holds them)")
        case .tail(let tail):
            switch tail {
            case .clean: break
            case .torn(let path, let offset, let reason):
                add(.note, "unacknowledged tail in \(path) from byte \(offset) (will be cut at next start): \(reason)")
            case .unusableSegment(let path, let reason):
                add(.note, "unacknowledged newest segment \(path), bad header and no records (will be removed at next start): \(reason)")
            }
        }
    }

    mutating func compare(_ record: JournalRecord, after: JournalPosition) {
        if let position, record.id == position.nextID - 1 {
            positionChecked = true
            if after != position {
                mismatch(
                    "the index's journal position (\(position)) does not follow record \(record.id), which ends at \(after)")
            }
        }
        guard let connection else { return }
        let row: Row?
        do throws(CallbackStoreError) {
            row = try Row.read(id: record.id, connection)
        } catch {
            mismatch("record \(record.id): cannot read its row: \(error)")
            return
        }
        guard let row else {
            if let position, record.id < position.nextID {
                if minimumReceivedAt.map({ record.callback.receivedAt < $0 }) ?? true {
                    result.purged += 1
                } else {
                    mismatch("record \(record.id) is missing from the index, which has indexed through id \(position.nextID - 1)")
                }
            } else {
                result.notYetIndexed += 1
            }
            return
        }
        result.compared += 1
        let differences = row.differences(from: record.callback)
        if !differences.isEmpty {
            mismatch("record \(record.id): the index differs from the journal in \(differences.joined(separator: ", "))")
        }
    }

    mutating func mismatch(_ message: String) {
        mismatches += 1
        if mismatches <= StoreVerifier.mismatchLines { add(.mismatch, message) }
    }

    /// The rows no journal record was compared with, and where the position points.
    mutating func verifyIndexOnlyRows(_ connection: SQLiteConnection) throws(CallbackStoreError) {
        if result.notYetIndexed > 0 {
            add(.note, "not yet indexed: \(result.notYetIndexed) records (normal while the service runs; indexed at its next start)")
        }
        if result.purged > 0 {
            add(.note, "\(result.purged) journal records are no longer in the index: purged by retention (older than every indexed row)")
        }
        guard let oldest = listed.first else { return }
        result.indexOnly = try count(connection, "id < \(oldest.firstID)")
        if result.indexOnly > 0 {
            add(
                .note,
                "\(result.indexOnly) rows below id \(oldest.firstID) are only in the index (their segments were removed once indexed)")
        }
        let journalEnd = lastRecordID ?? (oldest.firstID - 1)
        if damagedSegments == 0 {
            let beyond = try count(connection, "id > \(journalEnd)")
            if beyond > 0 {
                add(
                    .mismatch,
                    "\(beyond) index rows have ids beyond the journal's last valid record (id \(journalEnd)): "
                        + "the journal lost records the index holds")
            }
        }
        for gap in gaps {
            let held = try count(connection, "id BETWEEN \(gap.lowerBound) AND \(gap.upperBound)")
            add(.note, "the index holds \(held) of the \(gap.count) ids \(gap.lowerBound)–\(gap.upperBound) that no segment holds")
        }
        guard let position else { return }
        if position.nextID < oldest.firstID {
            add(
                .damage,
                "ids \(position.nextID)–\(oldest.firstID - 1) are in neither the index (indexed through id \(position.nextID - 1)) "
                    + "nor the journal (its oldest segment begins with id \(oldest.firstID)); the service will refuse to start")
        } else if position.nextID - 1 > journalEnd, damagedSegments == 0 {
            add(
                .mismatch,
                "the index has indexed through id \(position.nextID - 1), beyond the journal's last valid record (id \(journalEnd))")
        } else if !positionChecked, segmentPaths[position.segmentFirstID] == nil, position.nextID != oldest.firstID {
            add(
                .mismatch,
                "the index's journal position (\(position)) names a removed segment, but the oldest one begins with id \(oldest.firstID)")
        }
    }

    func count(_ connection: SQLiteConnection, _ condition: String) throws(CallbackStoreError) -> Int64 {
        try connection.scalarInt64("SELECT count(*) FROM callbacks WHERE \(condition)") ?? 0
    }
}

/// The fields of an index row that come from the journal record.
private struct Row {
    var receivedAt: Int64?
    var service: String?
    var requestID: String?
    var deviceIDs: String?
    var status: String?
    var callbackCount: Int64?
    var remoteAddress: String?
    var dedupKey: String?
    var body: [UInt8]

    static let sql = """
        SELECT received_at, service, request_id, device_ids, status, callback_count, remote_address, dedup_key, body \
        FROM callbacks WHERE id = ?1
        """

    static func read(id: Int64, _ connection: SQLiteConnection) throws(CallbackStoreError) -> Row? {
        try connection.withStatement(sql) { statement throws(CallbackStoreError) in
            try statement.bind(1, id)
            guard try statement.step() else { return nil }
            return Row(
                receivedAt: statement.int64(0), service: statement.text(1), requestID: statement.text(2), deviceIDs: statement.text(3),
                status: statement.text(4), callbackCount: statement.int64(5), remoteAddress: statement.text(6),
                dedupKey: statement.text(7), body: statement.bytes(8))
        }
    }

    func differences(from callback: NewCallback) -> [String] {
        var fields: [String] = []
        if receivedAt != callback.receivedAt { fields.append("receivedAt") }
        if service != callback.service { fields.append("service") }
        if requestID != callback.requestID { fields.append("requestId") }
        if deviceIDs != DeviceIDList.encode(callback.deviceIDs) { fields.append("deviceIds") }
        if status != callback.status { fields.append("status") }
        if callbackCount != callback.callbackCount.map(Int64.init) { fields.append("callbackCount") }
        if remoteAddress != callback.remoteAddress { fields.append("remoteAddress") }
        if dedupKey != callback.dedupKey { fields.append("dedupKey") }
        if body != callback.body { fields.append("body") }
        return fields
    }
}
