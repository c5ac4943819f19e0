import Dispatch
import Foundation
import Synchronization

/// Runs `body(0..<count)` on `count` threads of their own, all at once
/// (not on Dispatch's pool, which is as wide as the machine), and returns
/// the results in index order.
public func onThreads<T: Sendable>(_ count: Int, _ body: @escaping @Sendable (Int) -> T) -> [T] {
    let results = Mutex<[Int: T]>([:])
    let done = DispatchGroup()
    for index in 0..<count {
        done.enter()
        let thread = Thread {
            let result = body(index)
            results.withLock { $0[index] = result }
            done.leave()
        }
        thread.start()
    }
    done.wait()
    return results.withLock { all in (0..<count).map { all[$0]! } }
}

/// Runs blocking work (a socket read, a wait) on a thread of its own and awaits it: the
/// concurrency pool, as wide as the machine, stays free for the tasks of the code under test.
public func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (done: CheckedContinuation<T, any Error>) in
        let thread = Thread { done.resume(with: Result { try body() }) }
        thread.start()
    }
}
