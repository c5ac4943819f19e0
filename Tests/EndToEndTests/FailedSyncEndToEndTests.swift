// Issue 10's proof: under load, one fdatasync fails the way Linux fails it (faultfs: the file is
// reverted to its last synced content, EIO once, the next sync succeeds); after kill -9 and a normal
// restart every callback answered 200 must be stored, the database intact, and nothing stored twice
// unless linked as a repeat. Through the real binary, many times, at random moments.
//
// The engine before the journal (SQLite's WAL, repaired after a failed sync) failed 13 of 33 such
// trials (Tests/FaultInjection/README.md); the journal engine stops at the failed sync instead.
import Foundation
import Synchronization
import TestSupport
import Testing

/// Trials per test: THINGSPACE_FAULT_TRIALS (default 4; `make test` runs 4 of each kind).
private let trialCount = Int(ProcessInfo.processInfo.environment["THINGSPACE_FAULT_TRIALS"] ?? "") ?? 4

@Suite(.serialized) struct FailedSyncEndToEndTests {
    /// Trials failing one fdatasync of the index's WAL, each at a random moment of the load (no new
    /// trial starts after about a minute).
    @Test
    func everyAcknowledgedCallbackSurvivesAFailedWALSync() throws {
        try runTrials(count: trialCount, match: "callbacks.sqlite-wal", budget: .seconds(60))
    }

    /// Trials failing one fdatasync of a journal segment: the store stops (exit 75) and the next
    /// start recovers from what is on disk.
    @Test
    func everyAcknowledgedCallbackSurvivesAFailedJournalSync() throws {
        try runTrials(count: trialCount, match: "*.seg", budget: .seconds(60))
    }

    /// A failed fdatasync of the database file itself: SQLite's checkpoint syncs it.
    @Test
    func everyAcknowledgedCallbackSurvivesAFailedDatabaseSync() throws {
        let count = Int(ProcessInfo.processInfo.environment["THINGSPACE_FAULT_DB_TRIALS"] ?? "") ?? 2
        try runTrials(count: count, match: "callbacks.sqlite", budget: .seconds(30))
    }

    private func runTrials(count: Int, match: String, budget: Duration) throws {
        let started = ContinuousClock.now
        var outcomes: [FaultTrialOutcome] = []
        for trial in 0..<count where ContinuousClock.now - started < budget {
            let outcome = try runFaultTrial(number: trial, match: match)
            print(outcome.summary)
            outcomes.append(outcome)
        }
        let injected = outcomes.filter { $0.injection != nil }
        let failed = injected.filter { !$0.problems.isEmpty }
        print(
            "fault trials on \(match): \(outcomes.count) run, \(injected.count) with the fault injected, \(failed.count) failed"
                + (failed.isEmpty ? "" : " (trials \(failed.map { String($0.number) }.joined(separator: ", ")))"))
        #expect(!injected.isEmpty, "no trial injected the fault")
        for outcome in injected {
            #expect(outcome.problems.isEmpty, "\(outcome.summary)")
        }
    }
}

/// What one trial saw.
struct FaultTrialOutcome {
    var number: Int
    var match: String
    var triggerAfter: Int
    var acknowledged = 0
    var statuses: [Int: Int] = [:]
    /// The shim's log line for the failure it injected; nil if no matching sync came after the trigger.
    var injection: String?
    /// What the service logged about it (errors, recoveries), a few lines.
    var serviceNotes: [String] = []
    var problems: [String] = []

    var summary: String {
        let statusText = statuses.keys.sorted().map { "\($0)×\(statuses[$0]!)" }.joined(separator: " ")
        var text = "trial \(number) [\(match), fault after \(triggerAfter) acks]: \(acknowledged) acknowledged (\(statusText)); "
        text += injection.map { "fault: \($0.split(separator: " ", maxSplits: 1).last ?? "")" } ?? "fault NOT injected"
        if !serviceNotes.isEmpty { text += "; service: " + serviceNotes.joined(separator: " | ") }
        text += problems.isEmpty ? "; OK" : "; PROBLEMS: " + problems.joined(separator: "; ")
        return text
    }
}

private struct Acknowledgement: Sendable {
    var requestID: String
    var id: Int
}

/// One trial: `serve` on a fresh database with faultfs failing the first sync of `match` after a
/// random number of acknowledgements; 8 clients (at most 3,000 callbacks or 8 s); kill -9; a
/// normal restart (no shim) and SIGTERM; then export, integrity check and the comparison.
func runFaultTrial(number: Int, match: String, clients: Int = 8, limit: Int = 3_000, duration: Duration = .seconds(8)) throws
    -> FaultTrialOutcome
{
    let directory = try TemporaryDirectory()
    let trigger = directory.file("faultfs-trigger")
    var outcome = FaultTrialOutcome(number: number, match: match, triggerAfter: Int.random(in: 100...1_800))
    let environment = try FaultFS.environment(match: match, failure: .afterTrigger(trigger))
    let listener = try ListenerFixture(environment: environment)
    #expect(listener.process.logLines.contains { $0.hasPrefix("faultfs[") && $0.contains("active") }, "the shim is not loaded")

    let port = listener.port
    let triggerAfter = outcome.triggerAfter
    let acknowledged = Mutex<[Acknowledgement]>([])
    let statuses = Mutex<[Int: Int]>([:])
    let issued = Atomic<Int>(0)
    let deadline = ContinuousClock.now + duration
    _ = onThreads(clients) { client in
        var connection = try? TestClient(port: port, timeoutSeconds: 5)
        while ContinuousClock.now < deadline {
            let index = issued.wrappingAdd(1, ordering: .relaxed).oldValue
            guard index < limit else { return }
            let requestID = "fault-\(number)-\(client)-\(index)"
            // A callback answered 503 is sent again, as ThingSpace would (a repeat may be stored twice, linked).
            for _ in 0..<3 {
                if connection == nil { connection = try? TestClient(port: port, timeoutSeconds: 5) }
                guard let current = connection else { return }  // the service is gone
                guard let response = try? current.post("/callbacks/CarrierService", json: callbackBody(requestID: requestID)) else {
                    statuses.withLock { $0[0, default: 0] += 1 }  // 0: no answer
                    connection = nil
                    continue
                }
                statuses.withLock { $0[response.status, default: 0] += 1 }
                if response.closes { connection = nil }
                if response.status == 200 {
                    let json = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any]
                    let count = acknowledged.withLock {
                        $0.append(Acknowledgement(requestID: requestID, id: json?["id"] as? Int ?? -1))
                        return $0.count
                    }
                    if count == triggerAfter { _ = FileManager.default.createFile(atPath: trigger, contents: nil) }
                    break
                }
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
    }
    let acks = acknowledged.withLock { $0 }
    outcome.acknowledged = acks.count
    outcome.statuses = statuses.withLock { $0 }

    // The service as it was, then killed without warning.
    let faultLog = listener.process.logLines
    outcome.injection = faultLog.first { $0.hasPrefix("faultfs[") && $0.contains("injected EIO") }
    let noteworthy = ["ERROR", "CRITICAL", "recovered", "WARNING"]
    var notes = faultLog.filter { line in !line.hasPrefix("faultfs[") && noteworthy.contains { line.contains($0) } }
    let stillRunning = listener.process.process.isRunning
    listener.process.signal(SIGKILL)
    listener.process.waitForExit()
    if !stillRunning { notes.append("exited by itself before the kill (status \(listener.process.process.terminationStatus))") }

    // A normal restart recovers; SIGTERM stops it.
    do {
        try listener.start()
        listener.process.signal(SIGTERM)
        let status = listener.process.waitForExit(timeout: .seconds(30))
        if status != 0 { outcome.problems.append("the restarted service exited with status \(status)") }
        notes += listener.process.logLines.filter { line in noteworthy.contains { line.contains($0) } }.prefix(3).map { "restart: \($0)" }
    } catch {
        outcome.problems.append("the service did not restart: \(String(describing: error).prefix(400))")
    }
    outcome.serviceNotes = Array(Set(notes.map { String($0.prefix(240)) })).sorted().prefix(6).map { $0 }

    outcome.problems += checkStoredCallbacks(databasePath: listener.databasePath, acknowledged: acks)
    return outcome
}

/// Every acknowledged callback stored under the id its 200 named, each stored once unless linked
/// as a repeat, the export all JSON, `PRAGMA integrity_check` ok.
private func checkStoredCallbacks(databasePath: String, acknowledged: [Acknowledgement]) -> [String] {
    var problems: [String] = []
    let export: (status: Int32, stdout: String, stderr: String)
    do {
        export = try runListenerCommand(
            ["messages", "export", "--include-duplicates", "--database", databasePath], timeout: .seconds(30))
    } catch {
        return ["export did not run: \(error)"]
    }
    if export.status != 0 { problems.append("export exited \(export.status): \(export.stderr.prefix(300))") }
    var rows: [[String: Any]] = []
    var notJSON: [Substring] = []
    for line in export.stdout.split(separator: "\n") {
        if let row = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] {
            rows.append(row)
        } else {
            notJSON.append(line)
        }
    }
    if !notJSON.isEmpty { problems.append("\(notJSON.count) export lines are not JSON objects, e.g. \(notJSON[0].prefix(120))") }

    var byRequestID: [String: [[String: Any]]] = [:]
    var byID: [Int: String] = [:]
    for row in rows {
        let requestID = row["requestId"] as? String ?? ""
        byRequestID[requestID, default: []].append(row)
        if let id = row["id"] as? Int { byID[id] = requestID }
    }
    let lost = acknowledged.filter { byRequestID[$0.requestID] == nil }
    if !lost.isEmpty {
        problems.append(
            "\(lost.count) of \(acknowledged.count) acknowledged callbacks missing from the export, e.g. "
                + lost.prefix(3).map { "\($0.requestID) (id \($0.id))" }.joined(separator: ", "))
    }
    let moved = acknowledged.filter { byRequestID[$0.requestID] != nil && byID[$0.id] != $0.requestID }
    if !moved.isEmpty {
        problems.append(
            "\(moved.count) acknowledged callbacks not under the id their 200 named, e.g. "
                + moved.prefix(3).map { "\($0.requestID): id \($0.id) holds \(byID[$0.id] ?? "nothing")" }.joined(separator: ", "))
    }
    let unlinked = byRequestID.filter { _, rows in rows.count > 1 && rows.filter { $0["duplicateOf"] as? Int == nil }.count > 1 }
    if !unlinked.isEmpty {
        problems.append(
            "\(unlinked.count) callbacks stored more than once without duplicateOf, e.g. \(unlinked.keys.sorted().prefix(3).joined(separator: ", "))"
        )
    }

    if let integrity = try? runCommand(["sqlite3", databasePath, "PRAGMA integrity_check;"], timeout: .seconds(30)) {
        let text = (integrity.stdout + integrity.stderr).trimmingCharacters(in: .whitespacesAndNewlines)
        if integrity.timedOut || integrity.status != 0 || text != "ok" {
            problems.append("integrity_check: \(text.split(separator: "\n").prefix(3).joined(separator: " | ").prefix(300))")
        }
    } else {
        problems.append("sqlite3 could not run (install it: make deps-test)")
    }
    return problems
}
