import Glibc
import Logging
import ServiceLifecycle
import Synchronization
import TestSupport
import Testing

@testable import ListenerApp

/// A part that records its start and stop in a shared journal.
private final class RecordingPart: ListenerPart {
    let name: String
    let journal: Collector<String>
    let failStart: Bool
    let startDelay: Duration
    /// When given, `start` signals `entered` and then waits for `release`.
    let gate: (entered: StartSignal, release: StartSignal)?

    init(
        _ name: String, journal: Collector<String>, failStart: Bool = false, startDelay: Duration = .zero,
        gate: (entered: StartSignal, release: StartSignal)? = nil
    ) {
        self.name = name
        self.journal = journal
        self.failStart = failStart
        self.startDelay = startDelay
        self.gate = gate
    }

    struct Refused: Error {}

    func start() async throws {
        try? await Task.sleep(for: startDelay)
        if let gate {
            gate.entered.succeed()
            _ = await gate.release.wait()
        }
        journal.append("start \(name)")
        if failStart { throw Refused() }
    }

    func stop() async { journal.append("stop \(name)") }
}

@Suite struct ServiceCompositionTests {
    let logger = LogCapture().logger()

    @Test func startsInOrderAndStopsInReverse() async throws {
        let journal = Collector<String>()
        // A slow first part: the next ones must still wait for it.
        let parts = [
            RecordingPart("store", journal: journal, startDelay: .milliseconds(100)),
            RecordingPart("server", journal: journal),
            RecordingPart("registrar", journal: journal),
        ]
        let composition = ServiceComposition(parts: parts, logger: logger)
        async let run: Void = composition.run()
        #expect(await composition.waitUntilStarted())
        #expect(journal.values == ["start store", "start server", "start registrar"])
        await composition.shutdown()
        try await run
        #expect(
            journal.values
                == ["start store", "start server", "start registrar", "stop registrar", "stop server", "stop store"])
    }

    @Test func aFailedStartStopsWhatStartedAndStartsNothingAfter() async throws {
        let journal = Collector<String>()
        let parts = [
            RecordingPart("store", journal: journal),
            RecordingPart("admin", journal: journal),
            RecordingPart("server", journal: journal, failStart: true),
            RecordingPart("watchdog", journal: journal),
            RecordingPart("registrar", journal: journal),
        ]
        let composition = ServiceComposition(parts: parts, logger: logger)
        await #expect(throws: PartFailedToStart.self) { try await composition.run() }
        #expect(journal.values == ["start store", "start admin", "start server", "stop admin", "stop store"])
        #expect(await composition.waitUntilStarted() == false)
    }

    @Test func aShutdownDuringStartUpStopsWhatStarted() async throws {
        let journal = Collector<String>()
        let gate = (entered: StartSignal(), release: StartSignal())
        let parts = [
            RecordingPart("store", journal: journal),
            RecordingPart("slow", journal: journal, gate: gate),
            RecordingPart("registrar", journal: journal),
        ]
        let composition = ServiceComposition(parts: parts, logger: logger)
        async let run: Void = composition.run()
        #expect(await gate.entered.wait())
        await composition.shutdown()  // while "slow" is still starting
        gate.release.succeed()
        try await run
        // Whether "registrar" started depends on which comes first, the group's
        // shutdown or the release; either way, nothing is left running.
        let entries = journal.values
        #expect(entries.first == "start store" && entries.last == "stop store")
        // Whatever started was stopped, and in reverse.
        let started = entries.filter { $0.hasPrefix("start") }.map { $0.dropFirst(6) }
        let stopped = entries.filter { $0.hasPrefix("stop") }.map { $0.dropFirst(5) }
        #expect(Array(stopped) == Array(started.reversed()))
    }
}

/// Signals arrive as one sequence; SIGHUPs never run reloads at the same time.
/// This traps SIGHUP in the test process (only SIGHUP is ever raised here). The waits are long:
/// end-to-end tests running beside it block threads of the concurrency pool on a loaded machine.
@Suite(.serialized) struct ProcessSignalsTests {
    @Test func reloadsRunOneAtATimeAndOnlyOnceServing() async throws {
        let signals = await ProcessSignals()
        let state = Mutex((running: 0, most: 0, count: 0))
        let serving = StartSignal()
        signals.handle(
            with: .init(
                stop: { _ in },
                serving: { await serving.wait() },
                reload: {
                    state.withLock {
                        $0.running += 1
                        $0.most = max($0.most, $0.running)
                    }
                    try? await Task.sleep(for: .milliseconds(150))
                    state.withLock {
                        $0.running -= 1
                        $0.count += 1
                    }
                }
            )
        )
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: [signals], logger: LogCapture().logger()))
        async let run: Void = group.run()
        try await Task.sleep(for: .milliseconds(100))
        // Before serving: kept, not run.
        kill(getpid(), SIGHUP)
        try await Task.sleep(for: .milliseconds(200))
        #expect(state.withLock { $0.count } == 0)
        serving.succeed()
        #expect(await eventuallyAsync(within: .seconds(60)) { state.withLock { $0.count } == 1 })
        // A burst during a reload: still one at a time.
        for _ in 0..<5 {
            kill(getpid(), SIGHUP)
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(await eventuallyAsync(within: .seconds(60)) { state.withLock { $0.count >= 2 && $0.running == 0 } })
        try await Task.sleep(for: .milliseconds(400))
        let final = state.withLock { $0 }
        #expect(final.most == 1)
        // Never more reloads than SIGHUPs (six); how many coalesce depends on timing.
        #expect(final.count >= 2 && final.count <= 6)
        await group.triggerGracefulShutdown()
        try await run
    }
}
