import HTTP1
import Testing

@testable import HTTPServer

/// The connection state machine's deadlines, without sockets.
@Suite struct ConnectionStateTests {
    let settings: ConnectionSettings = {
        var configuration = HTTPServerConfiguration()
        configuration.headerReadTimeout = .seconds(10)
        configuration.bodyReadTimeout = .seconds(30)
        configuration.idleTimeout = .seconds(60)
        configuration.writeTimeout = .seconds(20)
        return ConnectionSettings(configuration)
    }()
    let second: UInt64 = 1_000_000_000

    @Test func newConnectionGetsTheHeaderDeadlineFromAccept() {
        var state = ConnectionState(now: 0)
        #expect(state.overdue(at: 9 * second, settings: settings) == nil)
        #expect(state.overdue(at: 10 * second, settings: settings) == .close(reason: "no request received in time"))
        // Its first bytes do not restart the clock.
        state.enterReadPhase(.head, activity: false) { 5 * second }
        #expect(state.overdue(at: 10 * second, settings: settings) == .requestTimeout(reason: "header read timeout"))
    }

    @Test func laterReadsDoNotExtendAHeadOrBodyDeadline() {
        var state = ConnectionState(now: 0)
        state.enterReadPhase(.idle, activity: true) { 1 * second }
        state.enterReadPhase(.head, activity: false) { 2 * second }
        state.enterReadPhase(.head, activity: false) { 11 * second }
        #expect(state.overdue(at: 12 * second, settings: settings) == .requestTimeout(reason: "header read timeout"))
        state.enterReadPhase(.body, activity: false) { 12 * second }
        state.enterReadPhase(.body, activity: false) { 40 * second }
        #expect(state.overdue(at: 41 * second, settings: settings) == nil)
        #expect(state.overdue(at: 42 * second, settings: settings) == .requestTimeout(reason: "body read timeout"))
    }

    @Test func idleClockRestartsOnlyAfterResponses() {
        var state = ConnectionState(now: 0)
        state.enterReadPhase(.idle, activity: true) { 0 }
        state.enterReadPhase(.idle, activity: false) { 50 * second }  // stray empty lines
        #expect(state.overdue(at: 60 * second, settings: settings) == .close(reason: "idle timeout"))
        state.enterReadPhase(.idle, activity: true) { 55 * second }
        #expect(state.overdue(at: 60 * second, settings: settings) == nil)
    }

    @Test func awaitingTheHandlerHasNoReadDeadline() {
        var state = ConnectionState(now: 0)
        state.enterReadPhase(.awaitingResponses, activity: false) { 0 }
        #expect(state.overdue(at: 1_000 * second, settings: settings) == nil)
    }

    @Test func writeDeadlineRunsFromTheLastProgress() {
        var state = ConnectionState(now: 0)
        state.enterReadPhase(.awaitingResponses, activity: false) { 0 }
        state.writeBlocked(progressed: true, now: 1 * second)
        state.writeBlocked(progressed: false, now: 15 * second)
        #expect(state.overdue(at: 20 * second, settings: settings) == nil)
        #expect(state.overdue(at: 21 * second, settings: settings) == .abort(reason: "write timeout: peer is not reading"))
        state.writeBlocked(progressed: true, now: 20 * second)
        #expect(state.overdue(at: 21 * second, settings: settings) == nil)
        state.writeDrained()
        #expect(state.overdue(at: 100 * second, settings: settings) == nil)
    }

    @Test func finishingKeepsTheEarliestLastResponseAndLingersWithADeadline() {
        var state = ConnectionState(now: 0)
        state.finish(after: 5)
        state.finish(after: 3)
        #expect(state.lifecycle == .finishing(lastSequence: 3))
        #expect(!state.isLast(2) && state.isLast(3))
        // No read deadlines once finishing: the handler has the time it needs.
        #expect(state.overdue(at: 1_000 * second, settings: settings) == nil)
        state.startLingering(now: 1_000 * second)
        #expect(state.lifecycle == .lingering)
        #expect(state.overdue(at: 1_003 * second, settings: settings) == .close(reason: "linger deadline passed"))
        state.close()
        #expect(state.overdue(at: 2_000 * second, settings: settings) == nil)
    }

    @Test func durationsClampToNanoseconds() {
        #expect(Duration.milliseconds(1500).clampedNanoseconds == 1_500_000_000)
        #expect(Duration.seconds(-1).clampedNanoseconds == 0)
        #expect(Duration.seconds(Int64.max).clampedNanoseconds == .max)
    }
}
