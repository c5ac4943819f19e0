import Foundation
import Synchronization
import TestSupport
import Testing

@Suite(.serialized) struct DurabilityEndToEndTests {
    /// Under continuous load, `kill -9` the service; after a restart every
    /// callback that was answered 200 must be in the export. Five rounds.
    @Test func everyAcknowledgedCallbackSurvivesKillNine() throws {
        let listener = try ListenerFixture()
        var acknowledged = Set<String>()
        for round in 0..<5 {
            let port = listener.port
            let roundAcknowledged = Mutex<[String]>([])
            let stop = Atomic<Bool>(false)
            let group = DispatchGroup()
            for worker in 0..<8 {
                DispatchQueue.global().async(group: group) {
                    guard let client = try? TestClient(port: port, timeoutSeconds: 5) else { return }
                    // Bounded: at most 5,000 requests per worker per round.
                    for index in 0..<5_000 where !stop.load(ordering: .relaxed) {
                        let id = "crash-\(round)-\(worker)-\(index)"
                        guard let response = try? client.post("/callbacks/CarrierService", json: callbackBody(requestID: id)) else {
                            return
                        }
                        if response.status == 200 { roundAcknowledged.withLock { $0.append(id) } }
                    }
                }
            }
            // Let the load run, then kill without warning while requests are in flight.
            let deadline = ContinuousClock.now + .seconds(3)
            while ContinuousClock.now < deadline && roundAcknowledged.withLock({ $0.count }) < 300 {
                Thread.sleep(forTimeInterval: 0.01)
            }
            listener.process.signal(SIGKILL)
            listener.process.waitForExit()
            stop.store(true, ordering: .relaxed)
            #expect(group.wait(timeout: .now() + 30) == .success)
            let ids = roundAcknowledged.withLock { $0 }
            #expect(!ids.isEmpty, "round \(round) acknowledged nothing")
            acknowledged.formUnion(ids)

            try listener.start()
            let stored = Set(try listener.export().compactMap { $0["requestId"] as? String })
            let lost = acknowledged.subtracting(stored)
            #expect(lost.isEmpty, "round \(round): \(lost.count) acknowledged callbacks lost, e.g. \(lost.prefix(3))")
        }
    }

    /// When the disk refuses writes (here RLIMIT_FSIZE lowered on the running
    /// service, as a full disk would), callbacks get 503 and nothing false is
    /// acknowledged; once writes work again, the service recovers by itself.
    @Test func aStoreFailureAnswers503AndRecovers() throws {
        let listener = try ListenerFixture()
        let client = try TestClient(port: listener.port, timeoutSeconds: 10)
        #expect(try client.post("/callbacks/CarrierService", json: callbackBody(requestID: "ok-1")).status == 200)

        #expect(try setFileSizeLimit(pid: listener.process.pid, "1"))
        var failedIDs: [String] = []
        for index in 0..<3 {
            let id = "during-failure-\(index)"
            let response = try client.post("/callbacks/CarrierService", json: callbackBody(requestID: id))
            #expect(response.status == 503)
            #expect(response.header("Retry-After") != nil)
            failedIDs.append(id)
        }
        #expect(listener.process.logLines.filter { $0.contains("store") && ($0.contains("ERROR") || $0.contains("error")) }.count >= 1)

        #expect(try TestClient(port: listener.adminPort, timeoutSeconds: 10).get("/readyz").status == 503)
        #expect(try setFileSizeLimit(pid: listener.process.pid, "unlimited"))
        // With no callback arriving, the writer's idle probe shows the recovery.
        do {
            try waitUntil("/readyz to recover without traffic", timeout: .seconds(10)) {
                (try? TestClient(port: listener.adminPort, timeoutSeconds: 10).get("/readyz").status) == 200
            }
        } catch {
            let readiness = try? TestClient(port: listener.adminPort, timeoutSeconds: 10).get("/readyz")
            Issue.record("\(error); /readyz: \(readiness?.bodyText ?? "no answer"); log: \(listener.process.logLines.suffix(12))")
            throw error
        }
        #expect(listener.process.logLines.contains { $0.contains("Storing callbacks recovered") })
        var recovered = false
        for attempt in 0..<50 where !recovered {
            let response = try client.post("/callbacks/CarrierService", json: callbackBody(requestID: "after-\(attempt)"))
            recovered = response.status == 200
            if !recovered { Thread.sleep(forTimeInterval: 0.1) }
        }
        #expect(recovered)
        let stored = Set(try listener.export().compactMap { $0["requestId"] as? String })
        #expect(stored.contains("ok-1"))
        #expect(stored.isDisjoint(with: failedIDs))
    }
}

/// Sets RLIMIT_FSIZE of a running process (util-linux's prlimit).
func setFileSizeLimit(pid: Int32, _ value: String) throws -> Bool {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
    process.arguments = ["--pid", String(pid), "--fsize=\(value):unlimited"]
    try process.run()
    process.waitUntilExit()
    return process.terminationStatus == 0
}
