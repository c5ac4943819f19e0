import CallbackStore
import Foundation
import TestSupport
import Testing
import Vocabulary

@testable import SQLiteStore

/// The consumer cursor's statements, as SQLite plans them: each filter goes through an index,
/// none scans the table, and a page in id order needs no sort except for a request id's handful.
@Suite struct PageQueryPlanTests {
    /// `EXPLAIN QUERY PLAN` of the page statement for `filter`, one detail line each.
    private func plan(_ filter: CallbackFilter, path: String) throws -> [String] {
        try sqliteRows(path, "EXPLAIN QUERY PLAN " + SQLiteCallbackStore.pageQuery(filter)).compactMap { $0.last ?? nil }
    }

    @Test func everyFilterGoesThroughAnIndexAndNoneScansTheTable() throws {
        let directory = try TemporaryDirectory()
        let store = try SQLiteCallbackStore(path: directory.databasePath)
        defer { store.close() }
        // Enough rows, and repeats, that the planner has a table worth avoiding.
        _ = try store.insert(
            (0..<500).map { index in
                makeCallback(
                    receivedAt: 1_700_000_000_000 + Int64(index), service: index % 2 == 0 ? "CarrierService" : "DeviceUsage",
                    requestID: "req-\(index % 100)", devices: [DeviceID(id: "dev-\(index % 50)", kind: "imei")])
            })
        let path = directory.databasePath
        let cases: [(String, CallbackFilter, [String])] = [
            ("cursor", CallbackFilter(), ["SEARCH c USING INTEGER PRIMARY KEY (rowid>?)"]),
            ("cursor with repeats", CallbackFilter(includeDuplicates: true), ["SEARCH c USING INTEGER PRIMARY KEY (rowid>?)"]),
            ("service", CallbackFilter(service: "DeviceUsage"), ["SEARCH c USING INTEGER PRIMARY KEY (rowid>?)"]),
            ("since", CallbackFilter(since: 1_700_000_000_100), ["SEARCH c USING INTEGER PRIMARY KEY (rowid>?)"]),
            ("request id", CallbackFilter(requestID: "req-7"), ["SEARCH c USING INDEX callbacks_request_id (request_id=?)"]),
            (
                "request id and service", CallbackFilter(service: "CarrierService", requestID: "req-8"),
                ["SEARCH c USING INDEX callbacks_request_id (request_id=?)"]
            ),
            (
                "device id", CallbackFilter(deviceID: "dev-3"),
                ["SEARCH d USING PRIMARY KEY (device_id=? AND callback_id>?)", "SEARCH c USING INTEGER PRIMARY KEY (rowid=?)"]
            ),
            (
                "device id and request id", CallbackFilter(requestID: "req-3", deviceID: "dev-3"),
                ["SEARCH d USING PRIMARY KEY (device_id=? AND callback_id>?)", "SEARCH c USING INTEGER PRIMARY KEY (rowid=?)"]
            ),
        ]
        for (name, filter, expected) in cases {
            let lines = try plan(filter, path: path)
            #expect(!lines.contains { $0.hasPrefix("SCAN") }, "\(name): \(lines)")
            for line in expected { #expect(lines.contains(line), "\(name): \(lines)") }
            // In id order straight from the index, except a request id's few rows.
            if filter.requestID == nil || filter.deviceID != nil {
                #expect(!lines.contains { $0.contains("TEMP B-TREE") }, "\(name): \(lines)")
            }
        }
    }
}
