// One lifecycle for every long-running part: started in order, stopped in
// reverse, and one failure stops the rest. swift-service-lifecycle's
// ServiceGroup owns the reverse, one-at-a-time graceful shutdown; it starts
// all services at once, so each part here waits for the one before it to be
// up (store open before the port is bound, port bound before READY=1).
import Logging
import ServiceLifecycle
import Synchronization

/// A part of the running listener: the store writer, a server, the registrar…
/// A new part implements these two methods and is added to the composition.
public protocol ListenerPart: Sendable {
    /// Names the part in logs and errors.
    var name: String { get }
    /// Returns once the part is up (a port bound, a store open). A throw
    /// stops every part already started, in reverse order.
    func start() async throws
    /// Stops gracefully and within bounds; called only after `start` returned.
    func stop() async
}

/// Runs parts in order under one ServiceGroup, plus companions (such as the
/// signal handler) that run alongside, outside the order, and stop last.
public final class ServiceComposition: Sendable {
    private let group: ServiceGroup
    private let started: [StartSignal]

    public init(parts: [any ListenerPart], companions: [any Service] = [], logger: Logger) {
        var previous: StartSignal? = nil
        var signals: [StartSignal] = []
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = companions.map {
            .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup)
        }
        for part in parts {
            let signal = StartSignal()
            services.append(
                .init(
                    service: OrderedService(part: part, after: previous, started: signal, logger: logger),
                    successTerminationBehavior: .gracefullyShutdownGroup,
                    failureTerminationBehavior: .gracefullyShutdownGroup
                )
            )
            signals.append(signal)
            previous = signal
        }
        started = signals
        group = ServiceGroup(configuration: ServiceGroupConfiguration(services: services, logger: logger))
    }

    /// Runs until every part has stopped; rethrows the first failure.
    public func run() async throws {
        try await group.run()
    }

    /// Starts the graceful shutdown: the last part stops first.
    public func shutdown() async {
        await group.triggerGracefulShutdown()
    }

    /// Waits until every part is up (true), or until one failed or the
    /// composition began stopping before they all were (false).
    public func waitUntilStarted() async -> Bool {
        guard let last = started.last else { return true }
        return await last.wait()
    }
}

/// Why a part did not start, naming it.
public struct PartFailedToStart: Error, CustomStringConvertible {
    public var part: String
    public var underlying: any Error
    public var description: String { "\(underlying)" }
}

/// A part inside the group: waits for its predecessor, starts, waits for the
/// graceful shutdown, stops.
private struct OrderedService: Service {
    let part: any ListenerPart
    let after: StartSignal?
    let started: StartSignal
    let logger: Logger

    func run() async throws {
        if let after {
            let ready = await withGracefulShutdownHandler {
                await after.wait()
            } onGracefulShutdown: {
                after.abandon()
            }
            guard ready else {
                // Never started. The group stops parts one at a time, in
                // reverse, and takes a part that returns before its turn for a
                // crash: wait for that turn.
                started.fail()
                try? await gracefulShutdown()
                return
            }
        }
        guard !Task.isShuttingDownGracefully else {
            started.fail()
            return
        }
        do {
            try await part.start()
        } catch {
            started.fail()
            throw PartFailedToStart(part: part.name, underlying: error)
        }
        started.succeed()
        // Returns at the graceful shutdown; a cancellation (group torn down) stops as well.
        try? await gracefulShutdown()
        await part.stop()
    }
}

/// A one-shot "this part is up" latch: its successor waits on it, and so may
/// whoever needs the whole composition up (the reload handler, tests).
final class StartSignal: Sendable {
    private enum State {
        case pending([CheckedContinuation<Bool, Never>])
        case done(Bool)
    }
    private let state = Mutex(State.pending([]))

    func succeed() { resolve(true) }
    func fail() { resolve(false) }

    /// The waiters stop waiting (a shutdown began); a later outcome is still kept.
    func abandon() {
        let waiters = state.withLock { state -> [CheckedContinuation<Bool, Never>] in
            guard case .pending(let waiters) = state else { return [] }
            state = .pending([])
            return waiters
        }
        for waiter in waiters { waiter.resume(returning: false) }
    }

    func wait() async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let outcome = state.withLock { state -> Bool? in
                switch state {
                case .done(let outcome): return outcome
                case .pending(let waiters):
                    state = .pending(waiters + [continuation])
                    return nil
                }
            }
            if let outcome { continuation.resume(returning: outcome) }
        }
    }

    private func resolve(_ outcome: Bool) {
        let waiters = state.withLock { state -> [CheckedContinuation<Bool, Never>] in
            guard case .pending(let waiters) = state else { return [] }
            state = .done(outcome)
            return waiters
        }
        for waiter in waiters { waiter.resume(returning: outcome) }
    }
}
