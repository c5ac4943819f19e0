import CallbackStore
import Dispatch
import Foundation
import Logging
@_spi(Testing) import PostgresStore
import Synchronization
import TestSupport
import Testing

/// What onChange was told, in order.
final class LeadershipChanges: Sendable {
    private let values = Mutex<[Bool]>([])

    func record(_ leading: Bool) { values.withLock { $0.append(leading) } }

    var all: [Bool] { values.withLock { $0 } }

    /// true, false, true…: one call per change, never the same twice in a row.
    var alternates: Bool { all.enumerated().allSatisfy { $0.element == ($0.offset % 2 == 0) } }
}

/// Coordinators on one database, each with its own application_name (to find its backend).
struct Instances {
    let coordinators: [InstanceCoordinator]
    let changes: [LeadershipChanges]
    /// What every coordinator logged, for a failing expectation's comment.
    let log = LogCapture()

    init(url: String, count: Int, leaseDuration: Duration = .seconds(2), renewInterval: Duration = .milliseconds(300)) {
        var coordinators: [InstanceCoordinator] = []
        var changes: [LeadershipChanges] = []
        for index in 0..<count {
            let recorded = LeadershipChanges()
            changes.append(recorded)
            coordinators.append(
                InstanceCoordinator(
                    settings: PostgreSQLSettings(url: url, applicationName: Self.applicationName(index)), instanceID: "instance-\(index)",
                    logger: log.logger("instance-\(index)"), leaseDuration: leaseDuration,
                    renewInterval: renewInterval, onChange: { recorded.record($0) }))
        }
        self.coordinators = coordinators
        self.changes = changes
    }

    static func applicationName(_ index: Int) -> String { "coordinator-test-\(index)" }

    var leaders: [Int] { coordinators.indices.filter { coordinators[$0].isLeader } }

    func stopAll() { for coordinator in coordinators { coordinator.stop() } }

    /// Samples every 10 ms for `limit` or until `done`: the most that led at one moment.
    func mostLeadingAtOnce(within limit: Duration, until done: () -> Bool = { false }) -> Int {
        let deadline = ContinuousClock.now + limit
        var most = 0
        while ContinuousClock.now < deadline {
            most = max(most, leaders.count)
            if done() { break }
            usleep(10_000)
        }
        return max(most, leaders.count)
    }
}

@Suite struct InstanceCoordinatorTests {
    @Test func ofThreeExactlyOneLeadsAndEachCountsTheOthers() throws {
        let url = try PostgreSQLServer.shared().makeDatabase()
        let instances = Instances(url: url, count: 3)
        defer { instances.stopAll() }
        for coordinator in instances.coordinators { try coordinator.start() }
        // The first to start was alone: it led when start returned, and told onChange by then.
        #expect(instances.leaders == [0])
        #expect(instances.changes[0].all == [true])
        // Several renewals later, still one.
        #expect(instances.mostLeadingAtOnce(within: .seconds(1)) == 1)
        #expect(instances.leaders == [0])
        #expect(instances.changes.map(\.all) == [[true], [], []])
        for coordinator in instances.coordinators { #expect(try coordinator.otherInstancesAlive() == 2) }
    }

    @Test func aStoppedLeaderHandsOverAtOnce() throws {
        let url = try PostgreSQLServer.shared().makeDatabase()
        // Renewals every 5 s: a takeover within a second is the notification's.
        let instances = Instances(url: url, count: 3, leaseDuration: .seconds(10), renewInterval: .seconds(5))
        defer { instances.stopAll() }
        for coordinator in instances.coordinators { try coordinator.start() }
        #expect(instances.leaders == [0])
        let stopped = ContinuousClock.now
        instances.coordinators[0].stop()
        #expect(instances.changes[0].all == [true, false])
        #expect(!instances.coordinators[0].isLeader)
        #expect(eventually(within: .milliseconds(1_500)) { instances.leaders.count == 1 }, "\(instances.log.lines)")
        #expect(ContinuousClock.now - stopped < .milliseconds(1_500))
        #expect(instances.mostLeadingAtOnce(within: .milliseconds(300)) == 1)
        let next = try #require(instances.leaders.first)
        #expect(next != 0)
        #expect(instances.changes[next].all == [true])
        #expect(try instances.coordinators[1].otherInstancesAlive() == 1)
        #expect(try instances.coordinators[2].otherInstancesAlive() == 1)
        // Idempotent.
        instances.coordinators[0].stop()
        #expect(instances.changes[0].all == [true, false])
    }

    @Test func theLeaderDeletesTheRowsOfInstancesGoneForADay() throws {
        let server = try PostgreSQLServer.shared()
        let url = try server.makeDatabase()
        let database = try #require(url.components(separatedBy: "dbname=").last)
        let instances = Instances(url: url, count: 2)
        defer { instances.stopAll() }
        // The first creates the schema and goes; two crashed instances are left behind.
        try instances.coordinators[0].start()
        instances.coordinators[0].stop()
        try server.psql(
            database,
            """
            INSERT INTO instances (id, host, pid, heartbeat_at) VALUES
                ('crashed-long-ago', 'h', 1, now() - interval '2 days'), ('crashed-lately', 'h', 2, now() - interval '1 hour')
            """)
        try instances.coordinators[1].start()
        #expect(instances.coordinators[1].isLeader)
        #expect(try server.psql(database, "SELECT id FROM instances ORDER BY id") == "crashed-lately\ninstance-1")
        // Neither is alive: their heartbeats are old.
        #expect(try instances.coordinators[1].otherInstancesAlive() == 0)
    }

    @Test func anAbandonedLeaderIsSucceededWithinFifteenSecondsByTheDefaults() throws {
        let url = try PostgreSQLServer.shared().makeDatabase()
        let instances = Instances(url: url, count: 3, leaseDuration: .seconds(10), renewInterval: .seconds(2))
        defer { instances.stopAll() }
        for coordinator in instances.coordinators { try coordinator.start() }
        #expect(instances.leaders == [0])
        let abandoned = ContinuousClock.now
        instances.coordinators[0].abandon()
        let most = instances.mostLeadingAtOnce(within: .seconds(15)) { instances.leaders.count == 1 }
        let elapsed = ContinuousClock.now - abandoned
        #expect(most <= 1)
        #expect(instances.leaders.count == 1 && !instances.leaders.contains(0))
        #expect(elapsed < .seconds(15))
        // Nothing was released: the lease had to run out first.
        #expect(elapsed > .seconds(5))
        // Its heartbeat stays behind (as a crash's would), but no longer counts once a lease old:
        // the last of the others to stop then deregisters.
        #expect(eventually(within: .seconds(11)) { (try? instances.coordinators[1].otherInstancesAlive()) == 1 })
        for changes in instances.changes { #expect(changes.alternates) }
    }

    @Test func aLeaderWhoseSessionIsKilledReconnectsAndTwoNeverLead() throws {
        let server = try PostgreSQLServer.shared()
        let url = try server.makeDatabase()
        let database = try #require(url.components(separatedBy: "dbname=").last)
        let instances = Instances(url: url, count: 2)
        defer { instances.stopAll() }
        for coordinator in instances.coordinators { try coordinator.start() }
        #expect(instances.leaders == [0])
        // This database's only: the other tests' coordinators have the same names.
        let name = Instances.applicationName(0)
        let backends = "SELECT pid FROM pg_stat_activity WHERE application_name = '\(name)' AND datname = '\(database)'"
        let before = try server.psql("postgres", backends)
        #expect(!before.isEmpty)
        try server.psql("postgres", "SELECT pg_terminate_backend(pid) FROM (\(backends)) AS coordinator")
        #expect(instances.mostLeadingAtOnce(within: .seconds(3)) == 1)
        #expect(instances.leaders.count == 1)
        // It came back on a session of its own.
        let after = try server.psql("postgres", backends)
        #expect(!after.isEmpty && after != before)
        for changes in instances.changes { #expect(changes.alternates) }
    }

    @Test func aLeaderWhoseSessionBrokeUnseenStillHandsOverOnStop() throws {
        let server = try PostgreSQLServer.shared()
        let url = try server.makeDatabase()
        let database = try #require(url.components(separatedBy: "dbname=").last)
        // Renewals every 5 s: a takeover within a second and a half is the notification's.
        let instances = Instances(url: url, count: 2, leaseDuration: .seconds(10), renewInterval: .seconds(5))
        defer { instances.stopAll() }
        for coordinator in instances.coordinators { try coordinator.start() }
        #expect(instances.leaders == [0])
        try server.psql(
            "postgres",
            """
            SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE application_name = '\(Instances.applicationName(0))' AND datname = '\(database)'
            """)
        instances.coordinators[0].stop()
        #expect(eventually(within: .milliseconds(1_500)) { instances.leaders == [1] }, "\(instances.log.lines)")
        #expect(try instances.coordinators[1].otherInstancesAlive() == 0)
    }

    @Test func aLeaderWhoseRenewalsHangStopsLeadingByItsOwnClock() throws {
        let server = try PostgreSQLServer.shared()
        let url = try server.makeDatabase()
        let database = try #require(url.components(separatedBy: "dbname=").last)
        let instances = Instances(url: url, count: 2)
        defer { instances.stopAll() }
        for coordinator in instances.coordinators { try coordinator.start() }
        #expect(instances.leaders == [0])
        // Every renewal waits behind this lock for 4 s, twice the lease: no answer, and no error either.
        let released = DispatchSemaphore(value: 0)
        let locker = Thread {
            _ = try? server.psql(database, "BEGIN; LOCK TABLE leader IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT")
            released.signal()
        }
        locker.start()
        let locked = ContinuousClock.now
        #expect(eventually(within: .seconds(3)) { instances.leaders.isEmpty })
        #expect(ContinuousClock.now - locked < .seconds(2))
        // isLeader turns false at the fence itself; onChange follows on the fence's timer.
        #expect(eventually(within: .milliseconds(500)) { instances.changes[0].all == [true, false] })
        #expect(released.wait(timeout: .now() + 15) == .success)
        #expect(instances.mostLeadingAtOnce(within: .seconds(10)) { instances.leaders.count == 1 } == 1)
        #expect(instances.leaders.count == 1)
        for changes in instances.changes { #expect(changes.alternates) }
    }

    @Test func whenTheServerStopsTheLeaderStopsLeadingWithinItsLeaseAndLeadershipReturnsAfter() throws {
        let server = try PostgreSQLServer()
        let url = try server.makeDatabase()
        let instances = Instances(url: url, count: 2)
        defer { instances.stopAll() }
        for coordinator in instances.coordinators { try coordinator.start() }
        #expect(instances.leaders == [0])
        try server.stop()
        let stopped = ContinuousClock.now
        #expect(eventually(within: .seconds(3)) { instances.leaders.isEmpty })
        #expect(ContinuousClock.now - stopped < .seconds(2))
        #expect(eventually(within: .milliseconds(500)) { instances.changes[0].all == [true, false] })
        #expect { try instances.coordinators[1].otherInstancesAlive() } throws: { error in
            if case .unavailable? = error as? CallbackStoreError { return true }
            return false
        }
        // Nobody leads while the server is down.
        #expect(instances.mostLeadingAtOnce(within: .seconds(1)) == 0)
        try server.start()
        #expect(instances.mostLeadingAtOnce(within: .seconds(15)) { instances.leaders.count == 1 } == 1)
        #expect(instances.leaders.count == 1)
        #expect(instances.mostLeadingAtOnce(within: .milliseconds(500)) == 1)
        for changes in instances.changes { #expect(changes.alternates) }
    }
}
