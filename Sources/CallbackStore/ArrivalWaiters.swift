// Tasks waiting for a callback above some id (a long poll, a stream, a test), woken as soon as a
// store reports one, or when their time is up. One implementation for every backend that hears
// of its own commits.
import Synchronization

public final class ArrivalWaiters: Sendable {
    private struct Waiter {
        var token: UInt64
        var after: Int64
        var wake: CheckedContinuation<Void, Never>
    }

    private struct State {
        var latest: Int64 = 0
        var nextToken: UInt64 = 0
        var waiters: [Waiter] = []
        /// Waits whose time ran out before they were registered: they must not register.
        var abandoned: Set<UInt64> = []
    }

    private let state = Mutex(State())

    public init(latest: Int64 = 0) {
        state.withLock { $0.latest = latest }
    }

    /// The highest id reported stored.
    public var latest: Int64 { state.withLock { $0.latest } }

    /// Records that every id up to `id` is stored, and wakes the waiters it satisfies.
    public func stored(upTo id: Int64) {
        let woken = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard id > state.latest else { return [] }
            state.latest = id
            let woken = state.waiters.filter { $0.after < id }.map(\.wake)
            state.waiters.removeAll { $0.after < id }
            return woken
        }
        for waiter in woken { waiter.resume() }
    }

    /// Waits until an id above `after` is stored (true) or `timeout` passes (false).
    public func wait(after id: Int64, timeout: Duration) async -> Bool {
        let token = state.withLock { state -> UInt64 in
            state.nextToken += 1
            return state.nextToken
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withCheckedContinuation { (wake: CheckedContinuation<Void, Never>) in
                    let ready = self.state.withLock { state -> Bool in
                        if state.latest > id || state.abandoned.remove(token) != nil { return true }
                        state.waiters.append(Waiter(token: token, after: id, wake: wake))
                        return false
                    }
                    if ready { wake.resume() }
                }
            }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
            // The timer won: release this wait, whether it registered yet or not.
            let mine = state.withLock { state -> CheckedContinuation<Void, Never>? in
                if let index = state.waiters.firstIndex(where: { $0.token == token }) { return state.waiters.remove(at: index).wake }
                if state.latest <= id { state.abandoned.insert(token) }
                return nil
            }
            mine?.resume()
        }
        return state.withLock { state in
            state.abandoned.remove(token)
            return state.latest > id
        }
    }
}
