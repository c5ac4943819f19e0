import CallbackStore
import Foundation
import TestSupport
import Testing
import Vocabulary

@testable import SQLiteStore

@Suite("SQLiteCallbackStore")
struct StoreTests {
    @Test("creates its directory and schema in WAL mode, and reopens what it stored")
    func createsSchemaAndReopens() throws {
        try withTemporaryDirectory { directory in
            let path = directory.path + "/nested/deeper/callbacks.db"
            let store = try SQLiteCallbackStore(path: path)
            let receipts = try store.insert([makeCallback()])
            store.close()

            #expect(try sqliteValue(path, "PRAGMA journal_mode") == "wal")
            #expect(try sqliteValue(path, "PRAGMA user_version") == "3")
            let columns = try sqliteRows(path, "SELECT name FROM pragma_table_info('callbacks') ORDER BY cid").map { $0[0] }
            #expect(
                columns == [
                    "id", "received_at", "service", "request_id", "device_ids", "status", "callback_count",
                    "remote_address", "dedup_key", "duplicate_of", "body",
                ])
            let indexes = Set(try sqliteRows(path, "SELECT name FROM sqlite_schema WHERE type = 'index'").compactMap { $0[0] })
            #expect(
                indexes.isSuperset(of: [
                    "callbacks_dedup_key_without_request_id", "callbacks_service_received_at", "callbacks_request_id",
                    "callbacks_received_at",
                ]))

            let reopened = try SQLiteCallbackStore(path: path)
            defer { reopened.close() }
            #expect(try reopened.callback(id: receipts[0].id)?.callback == makeCallback())
            #expect(try reopened.insert([makeCallback(requestID: "req-2")])[0].id > receipts[0].id)
        }
    }

    @Test("stores every field, and the body byte for byte")
    func roundTripIsByteExact() throws {
        try withTemporaryDirectory { directory in
            let store = try SQLiteCallbackStore(path: directory.databasePath)
            defer { store.close() }
            let body = Array(
                "{ \"requestId\" : \"r-1\",\n\t\"password\":\"[REDACTED]\", \"note\": \"caf\u{E9} \u{2603} \\\"q\\\" \\u0000\", \"n\": 1.50e0 }  "
                    .utf8)
            let callback = NewCallback(
                receivedAt: 1_712_345_678_901,
                service: "DeviceUsage",
                requestID: "r-1",
                deviceIDs: [DeviceID(id: "89148000000000000001", kind: "iccid"), DeviceID(id: "a\"b\\c\n", kind: "m\u{01}dn")],
                status: nil,
                callbackCount: 3,
                remoteAddress: "2001:db8::1",
                dedupKey: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                body: body
            )
            let emptyBody = makeCallback(requestID: nil, devices: [], status: nil, callbackCount: nil, body: [])
            let receipts = try store.insert([callback, emptyBody])

            let stored = try #require(try store.callback(id: receipts[0].id))
            #expect(stored.callback == callback)
            #expect(stored.body == body)
            #expect(stored.duplicateOf == nil)
            #expect(try store.callback(id: receipts[1].id)?.callback == emptyBody)
            #expect(try store.callback(id: receipts[1].id + 100) == nil)

            // People query bodies and devices with the sqlite3 shell.
            let path = directory.databasePath
            #expect(try sqliteValue(path, "SELECT json_extract(body, '$.requestId') FROM callbacks WHERE id = \(receipts[0].id)") == "r-1")
            #expect(
                try sqliteValue(path, "SELECT json_extract(device_ids, '$[1].id') FROM callbacks WHERE id = \(receipts[0].id)")
                    == "a\"b\\c\n")
            #expect(
                try sqliteValue(path, "SELECT length(CAST(body AS BLOB)) FROM callbacks WHERE id = \(receipts[0].id)") == "\(body.count)")
            #expect(try sqliteValue(path, "SELECT typeof(body) FROM callbacks WHERE id = \(receipts[0].id)") == "text")
        }
    }

    @Test("a repeat links to the first delivery, within a batch and across batches")
    func duplicatesLinkToTheFirst() throws {
        try withTemporaryDirectory { directory in
            let store = try SQLiteCallbackStore(path: directory.databasePath)
            defer { store.close() }
            let first = try store.insert([
                makeCallback(dedupKey: "A"), makeCallback(dedupKey: "B"), makeCallback(dedupKey: "A"),
            ])
            #expect(first[0].duplicateOf == nil)
            #expect(first[1].duplicateOf == nil)
            #expect(first[2].duplicateOf == first[0].id)
            #expect(Set(first.map(\.id)).count == 3)

            let second = try store.insert([makeCallback(dedupKey: "A"), makeCallback(dedupKey: "B"), makeCallback(dedupKey: "C")])
            #expect(second[0].duplicateOf == first[0].id)
            #expect(second[1].duplicateOf == first[1].id)
            #expect(second[2].duplicateOf == nil)

            #expect(try store.callback(id: second[0].id)?.duplicateOf == first[0].id)
            #expect(try store.callback(id: first[0].id)?.isDuplicate == false)
        }
    }

    @Test("list filters by service, request id, device id, time and duplicates, newest first")
    func queryFilters() throws {
        try withTemporaryDirectory { directory in
            let store = try SQLiteCallbackStore(path: directory.databasePath)
            defer { store.close() }
            let imei = DeviceID(id: "111", kind: "imei")
            let iccid = DeviceID(id: "222", kind: "iccid")
            let mdn = DeviceID(id: "111", kind: "mdn")
            let ids = try store.insert([
                makeCallback(receivedAt: 1_000, service: "CarrierService", requestID: "r1", devices: [imei, iccid]),
                makeCallback(receivedAt: 2_000, service: "DeviceUsage", requestID: "r2", devices: [iccid]),
                makeCallback(receivedAt: 3_000, service: "CarrierService", requestID: "r3", devices: [mdn]),
                makeCallback(receivedAt: 4_000, service: "CarrierService", requestID: "r1", devices: [imei, iccid]),  // repeat of r1
                makeCallback(receivedAt: 5_000, service: "DeviceUsage", requestID: "r5", devices: []),
            ]).map(\.id)
            func list(_ filter: CallbackFilter) throws -> [Int64] { try store.query(filter).map(\.id) }

            #expect(try list(CallbackFilter()) == [ids[4], ids[2], ids[1], ids[0]])
            #expect(try list(CallbackFilter(includeDuplicates: true)) == ids.reversed())
            #expect(try list(CallbackFilter(service: "CarrierService")) == [ids[2], ids[0]])
            #expect(try list(CallbackFilter(service: "CarrierService", includeDuplicates: true)) == [ids[3], ids[2], ids[0]])
            #expect(try list(CallbackFilter(service: "Nope")) == [])
            #expect(try list(CallbackFilter(requestID: "r1", includeDuplicates: true)) == [ids[3], ids[0]])
            #expect(try list(CallbackFilter(requestID: "r2")) == [ids[1]])
            // A device id matches whatever its kind, and a callback naming it twice is listed once.
            #expect(try list(CallbackFilter(deviceID: "111", includeDuplicates: true)) == [ids[3], ids[2], ids[0]])
            #expect(try list(CallbackFilter(deviceID: "222")) == [ids[1], ids[0]])
            #expect(try list(CallbackFilter(deviceID: "333")) == [])
            #expect(try list(CallbackFilter(since: 3_000, includeDuplicates: true)) == [ids[4], ids[3], ids[2]])
            #expect(try list(CallbackFilter(limit: 2, includeDuplicates: true)) == [ids[4], ids[3]])
            #expect(try list(CallbackFilter(limit: 0)) == [])
            #expect(try list(CallbackFilter(service: "CarrierService", deviceID: "222", since: 1_500, includeDuplicates: true)) == [ids[3]])
            let listed = try store.query(CallbackFilter(requestID: "r3"))
            #expect(listed.first?.deviceIDs == [mdn])
        }
    }

    /// Every third request repeats the one before (the same request id, so the same default dedup key).
    static func exportRequestID(_ index: Int) -> String {
        index % 3 == 2 ? "r\(index - 1)" : "r\(index)"
    }

    @Test("export streams every row in id order, with or without repeats")
    func exportStreamsInIDOrder() throws {
        try withTemporaryDirectory { directory in
            let store = try SQLiteCallbackStore(path: directory.databasePath)
            defer { store.close() }
            // 3,000 rows, every third one a repeat: spans many export pages.
            var batch: [NewCallback] = []
            for index in 0..<3_000 {
                batch.append(makeCallback(receivedAt: Int64(index), requestID: Self.exportRequestID(index)))
                if batch.count == 500 {
                    _ = try store.insert(batch)
                    batch.removeAll()
                }
            }

            var all: [Int64] = []
            var allRequestIDs: [String] = []
            try store.export(includeDuplicates: true) { row in
                all.append(row.id)
                allRequestIDs.append(row.requestID ?? "")
            }
            #expect(all.count == 3_000)
            #expect(zip(all, all.dropFirst()).allSatisfy { $0 < $1 })
            #expect(allRequestIDs == (0..<3_000).map(Self.exportRequestID))

            var firsts: [StoredCallback] = []
            try store.export(includeDuplicates: false) { firsts.append($0) }
            #expect(firsts.count == 2_000)
            #expect(firsts.allSatisfy { $0.duplicateOf == nil })
            #expect(zip(firsts, firsts.dropFirst()).allSatisfy { $0.id < $1.id })
        }
    }

    @Test("export ends at the rows stored when it started, even while more arrive")
    func exportIsBoundedWhileWriting() throws {
        try withTemporaryDirectory { directory in
            let writer = try SQLiteCallbackStore(path: directory.databasePath)
            defer { writer.close() }
            _ = try writer.insert((0..<600).map { makeCallback(requestID: "r\($0)", dedupKey: "k\($0)") })
            let reader = try SQLiteCallbackStore(path: directory.databasePath, readOnly: true)
            defer { reader.close() }

            var exported = 0
            try reader.export(includeDuplicates: true) { _ in
                exported += 1
                // The service's indexer keeps writing while the CLI exports; WAL lets both proceed.
                if exported % 100 == 0 {
                    _ = try writer.insert([makeCallback(requestID: "late\(exported)", dedupKey: "late\(exported)")])
                }
            }
            #expect(exported == 600)
            #expect(try reader.stats().total == 606)
        }
    }

    @Test("export rethrows what the row handler throws and stops")
    func exportRethrows() throws {
        struct Stop: Error {}
        try withTemporaryDirectory { directory in
            let store = try SQLiteCallbackStore(path: directory.databasePath)
            defer { store.close() }
            _ = try store.insert((0..<10).map { makeCallback(requestID: "r\($0)", dedupKey: "k\($0)") })
            var seen = 0
            #expect(throws: Stop.self) {
                try store.export(includeDuplicates: true) { _ in
                    seen += 1
                    if seen == 3 { throw Stop() }
                }
            }
            #expect(seen == 3)
            // The store is still usable afterwards.
            #expect(try store.stats().total == 10)
        }
    }

    @Test("stats count by service, status and UTC day, with repeats")
    func statsCounts() throws {
        try withTemporaryDirectory { directory in
            let store = try SQLiteCallbackStore(path: directory.databasePath)
            defer { store.close() }
            let day1 = Int64(1_704_067_200_000)  // 2024-01-01T00:00:00Z
            let day2 = day1 + 86_400_000 - 1  // 2024-01-01T23:59:59.999Z
            let day3 = day1 + 86_400_000  // 2024-01-02T00:00:00Z
            _ = try store.insert([
                makeCallback(receivedAt: day1, service: "CarrierService", status: "Success", dedupKey: "a"),
                makeCallback(receivedAt: day2, service: "CarrierService", status: "Success", dedupKey: "a"),
                makeCallback(receivedAt: day3, service: "DeviceUsage", status: "Failed", dedupKey: "b"),
                makeCallback(receivedAt: day3, service: "DeviceUsage", status: nil, dedupKey: "c"),
            ])
            let stats = try store.stats()
            typealias Count = CallbackStats.Count
            #expect(stats.total == 4)
            #expect(stats.duplicates == 1)
            #expect(
                stats.byService == [
                    Count(key: "CarrierService", count: 2, duplicates: 1), Count(key: "DeviceUsage", count: 2, duplicates: 0),
                ])
            #expect(
                stats.byStatus == [
                    Count(key: nil, count: 1, duplicates: 0), Count(key: "Failed", count: 1, duplicates: 0),
                    Count(key: "Success", count: 2, duplicates: 1),
                ])
            #expect(
                stats.byDay == [
                    Count(key: "2024-01-01", count: 2, duplicates: 1), Count(key: "2024-01-02", count: 2, duplicates: 0),
                ])

            let empty = try SQLiteCallbackStore(path: directory.path + "/empty.db")
            defer { empty.close() }
            #expect(try empty.stats() == CallbackStats(total: 0, duplicates: 0, byService: [], byStatus: [], byDay: []))
        }
    }

    @Test("purge deletes old callbacks and their device rows, and relinks kept repeats")
    func purgeOldCallbacks() throws {
        try withTemporaryDirectory { directory in
            let store = try SQLiteCallbackStore(path: directory.databasePath)
            defer { store.close() }
            let device = DeviceID(id: "555", kind: "imei")
            let ids = try store.insert([
                makeCallback(receivedAt: 100, requestID: "a", devices: [device], dedupKey: "A"),
                makeCallback(receivedAt: 200, requestID: "b", devices: [device], dedupKey: "B"),
                makeCallback(receivedAt: 300, requestID: "a", devices: [device], dedupKey: "A"),
                makeCallback(receivedAt: 1_000, requestID: "a", devices: [device], dedupKey: "A"),
                makeCallback(receivedAt: 1_100, requestID: "a", devices: [device], dedupKey: "A"),
                makeCallback(receivedAt: 1_200, requestID: "c", devices: [device], dedupKey: "C"),
            ]).map(\.id)

            #expect(try store.purge(olderThan: 1_000) == 3)
            #expect(try store.purge(olderThan: 1_000) == 0)

            var kept: [StoredCallback] = []
            try store.export(includeDuplicates: true) { kept.append($0) }
            #expect(kept.map(\.id) == [ids[3], ids[4], ids[5]])
            // The oldest kept delivery of A is now the first; the other one repeats it.
            #expect(kept.map(\.duplicateOf) == [nil, ids[3], nil])
            #expect(try store.query(CallbackFilter(deviceID: "555", includeDuplicates: true)).map(\.id) == [ids[5], ids[4], ids[3]])
            #expect(try sqliteValue(directory.databasePath, "SELECT count(*) FROM callback_devices") == "3")
            #expect(try sqliteValue(directory.databasePath, "PRAGMA foreign_key_check") == nil)
            // A new repeat of A links to the new first.
            #expect(try store.insert([makeCallback(requestID: "a", dedupKey: "A")])[0].duplicateOf == ids[3])
        }
    }

    @Test("purge works through more rows than one chunk")
    func purgeManyRows() throws {
        try withTemporaryDirectory { directory in
            let store = try SQLiteCallbackStore(path: directory.databasePath)
            defer { store.close() }
            // 2,500 old rows (every fifth a repeat of an old one, every tenth repeated by a kept one), 10 new.
            let old = (0..<2_500).map { index in
                makeCallback(receivedAt: Int64(index), requestID: index % 5 == 4 ? "r\(index - 1)" : "r\(index)")
            }
            _ = try store.insert(old)
            let kept = try store.insert(
                (0..<10).map { index in
                    makeCallback(receivedAt: 10_000, requestID: "r\(index * 10)")
                })
            #expect(kept.allSatisfy { $0.duplicateOf != nil })

            #expect(try store.purge(olderThan: 10_000) == 2_500)
            let remaining = try store.query(CallbackFilter(limit: 100, includeDuplicates: true))
            #expect(Set(remaining.map(\.id)) == Set(kept.map(\.id)))
            #expect(remaining.allSatisfy { $0.duplicateOf == nil })
            #expect(try sqliteValue(directory.databasePath, "PRAGMA foreign_key_check") == nil)
        }
    }

    @Test("a read-only connection sees committed rows while the writer writes, and cannot write")
    func readerSeesCommittedRows() throws {
        try withTemporaryDirectory { directory in
            let writer = try SQLiteCallbackStore(path: directory.databasePath)
            defer { writer.close() }
            let reader = try SQLiteCallbackStore(path: directory.databasePath, readOnly: true)
            defer { reader.close() }
            #expect(try reader.stats().total == 0)

            let first = try writer.insert([makeCallback(requestID: "r1", dedupKey: "1")])
            #expect(try reader.callback(id: first[0].id)?.requestID == "r1")

            // A reader in the middle of an export does not block the writer, and keeps its page.
            var exported: [Int64] = []
            try reader.export(includeDuplicates: true) { row in
                exported.append(row.id)
                _ = try writer.insert([makeCallback(requestID: "r2", dedupKey: "2")])
            }
            #expect(exported == [first[0].id])
            #expect(try reader.query(CallbackFilter()).count == 2)

            #expect(throws: CallbackStoreError.self) { try reader.insert([makeCallback()]) }
            #expect(throws: CallbackStoreError.self) { try reader.purge(olderThan: Int64.max) }
        }
    }

    @Test("a version 1 database is read as it is, and migrated by the writer with its rows and repeats kept")
    func migratesFromVersion1() throws {
        try withTemporaryDirectory { directory in
            let path = directory.databasePath
            // The version 1 layout as released: a full index on dedup_key.
            try sqliteExecute(
                path,
                """
                PRAGMA journal_mode = WAL;
                CREATE TABLE callbacks (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, received_at INTEGER NOT NULL, service TEXT NOT NULL,
                    request_id TEXT, device_ids TEXT NOT NULL DEFAULT '[]', status TEXT, callback_count INTEGER,
                    remote_address TEXT NOT NULL, dedup_key TEXT NOT NULL,
                    duplicate_of INTEGER REFERENCES callbacks(id), body TEXT NOT NULL);
                CREATE INDEX callbacks_dedup_key ON callbacks(dedup_key);
                CREATE INDEX callbacks_service_received_at ON callbacks(service, received_at);
                CREATE INDEX callbacks_request_id ON callbacks(request_id, received_at);
                CREATE INDEX callbacks_received_at ON callbacks(received_at);
                CREATE INDEX callbacks_duplicate_of ON callbacks(duplicate_of) WHERE duplicate_of IS NOT NULL;
                CREATE TABLE callback_devices (
                    device_id TEXT NOT NULL, callback_id INTEGER NOT NULL REFERENCES callbacks(id) ON DELETE CASCADE,
                    PRIMARY KEY (device_id, callback_id)) WITHOUT ROWID;
                CREATE INDEX callback_devices_callback_id ON callback_devices(callback_id);
                INSERT INTO callbacks (received_at, service, request_id, remote_address, dedup_key, body)
                    VALUES (1000, 'CarrierService', 'old', '10.0.0.1', 'key-old', '{"requestId":"old"}'),
                           (2000, 'CarrierService', NULL, '10.0.0.1', 'key-none', '{}');
                PRAGMA application_id = 1414745155;
                PRAGMA user_version = 1;
                """)

            let reader = try SQLiteCallbackStore(path: path, readOnly: true)
            #expect(try reader.query(CallbackFilter()).compactMap(\.requestID) == ["old"])
            reader.close()
            #expect(try sqliteValue(path, "PRAGMA user_version") == "1")

            let store = try SQLiteCallbackStore(path: path)
            defer { store.close() }
            #expect(try sqliteValue(path, "PRAGMA user_version") == "3")
            let indexes = Set(try sqliteRows(path, "SELECT name FROM sqlite_schema WHERE type = 'index'").compactMap { $0[0] })
            #expect(!indexes.contains("callbacks_dedup_key"))
            #expect(indexes.contains("callbacks_dedup_key_without_request_id"))
            let receipts = try store.insert([
                makeCallback(requestID: "old", dedupKey: "key-old"),
                makeCallback(requestID: nil, dedupKey: "key-none"),
                makeCallback(requestID: "new", dedupKey: "key-new"),
            ])
            #expect(receipts.map(\.duplicateOf) == [1, 2, nil])
            #expect(try store.stats().total == 5)
        }
    }

    @Test("repeats without a request id are found by their key alone, never matching one with a request id")
    func repeatsWithoutRequestID() throws {
        try withTemporaryDirectory { directory in
            let store = try SQLiteCallbackStore(path: directory.databasePath)
            defer { store.close() }
            let first = try store.insert([
                makeCallback(requestID: nil, dedupKey: "K"), makeCallback(requestID: "r", dedupKey: "K2"),
            ])
            let repeats = try store.insert([
                makeCallback(requestID: nil, dedupKey: "K"), makeCallback(requestID: nil, dedupKey: "K2"),
                makeCallback(requestID: "r", dedupKey: "K2"),
            ])
            #expect(first.map(\.duplicateOf) == [nil, nil])
            #expect(repeats.map(\.duplicateOf) == [first[0].id, nil, first[1].id])
        }
    }

    @Test("a moved file whose WAL a reader holds is not replaced until the callbacks in it reach it")
    func movedFileKeepsItsWALUntilCheckpointed() throws {
        try withTemporaryDirectory { directory in
            let path = directory.databasePath
            let rotated = directory.path + "/rotated.db"
            let store = try SQLiteCallbackStore(path: path)
            defer { store.close() }
            _ = try store.insert([makeCallback(requestID: "before")])
            let reader = try HeldReadTransaction(path)
            try FileManager.default.moveItem(atPath: path, toPath: rotated)

            // The WAL cannot be emptied into the moved file while the reader holds it (5 s busy wait).
            #expect(throws: CallbackStoreError.self) { try store.insert([makeCallback(requestID: "refused")]) }
            #expect(!FileManager.default.fileExists(atPath: path))

            reader.end()
            _ = try store.insert([makeCallback(requestID: "after")])
            #expect(try sqliteValue(rotated, "SELECT group_concat(request_id) FROM callbacks") == "before")
            #expect(try sqliteValue(path, "SELECT group_concat(request_id) FROM callbacks") == "after")
        }
    }

    @Test("a path that is a symbolic link stores in the real file, with its WAL beside it")
    func symbolicLinkPath() throws {
        try withTemporaryDirectory { directory in
            let real = directory.path + "/real/callbacks.db"
            try SQLiteCallbackStore(path: real).close()
            let link = directory.path + "/link.db"
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: real)

            let store = try SQLiteCallbackStore(path: link)
            defer { store.close() }
            _ = try store.insert([makeCallback(requestID: "via-link")])
            #expect(FileManager.default.fileExists(atPath: real + "-wal"))
            #expect(!FileManager.default.fileExists(atPath: link + "-wal"))
            #expect(try sqliteValue(real, "SELECT request_id FROM callbacks") == "via-link")
        }
    }

    @Test("a database someone switched back to rollback journaling opens in WAL mode again")
    func reopensInWALModeAfterRollbackMode() throws {
        try withTemporaryDirectory { directory in
            let path = directory.databasePath
            try SQLiteCallbackStore(path: path).close()
            #expect(try sqliteValue(path, "PRAGMA journal_mode = DELETE") == "delete")
            #expect(!FileManager.default.fileExists(atPath: path + "-wal"))

            let store = try SQLiteCallbackStore(path: path)
            defer { store.close() }
            #expect(try store.insert([makeCallback()]).count == 1)
            #expect(try sqliteValue(path, "PRAGMA journal_mode") == "wal")
        }
    }

    @Test("opening refuses what it must not touch, with errors that say what to do")
    func openErrors() throws {
        try withTemporaryDirectory { directory in
            let missing = directory.path + "/missing.db"
            #expect(throws: CallbackStoreError.notInitialized(path: missing)) {
                try SQLiteCallbackStore(path: missing, readOnly: true)
            }
            #expect(!FileManager.default.fileExists(atPath: missing))

            let foreign = directory.path + "/foreign.db"
            _ = try sqliteRows(foreign, "CREATE TABLE people (name TEXT)")
            #expect(throws: CallbackStoreError.notACallbackDatabase(path: foreign)) {
                try SQLiteCallbackStore(path: foreign)
            }
            #expect(try sqliteValue(foreign, "PRAGMA journal_mode") == "delete")

            let newer = directory.path + "/newer.db"
            try SQLiteCallbackStore(path: newer).close()
            _ = try sqliteRows(newer, "PRAGMA user_version = 7")
            #expect(throws: CallbackStoreError.schemaTooNew(path: newer, found: 7, supported: Schema.version)) {
                try SQLiteCallbackStore(path: newer)
            }

            let blocker = directory.path + "/file"
            #expect(FileManager.default.createFile(atPath: blocker, contents: Data()))
            let underFile = blocker + "/callbacks.db"
            let error = #expect(throws: CallbackStoreError.self) { try SQLiteCallbackStore(path: underFile) }
            guard case .openFailed(let path, _) = error else {
                Issue.record("expected openFailed, got \(String(describing: error))")
                return
            }
            #expect(path == underFile)
            #expect(error?.description.contains(directory.path + "/file") == true)

            let store = try SQLiteCallbackStore(path: directory.databasePath)
            store.close()
            store.close()
            #expect(throws: CallbackStoreError.closed) { try store.insert([makeCallback()]) }
            #expect(throws: CallbackStoreError.closed) { try store.stats() }
        }
    }
}
