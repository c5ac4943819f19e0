// Threads for the blocking libcurl transfers of `async` sends. A transfer
// blocks its thread for up to its timeout; on the Swift concurrency pool
// (one thread per core) a few of them would stall every task. Here a
// transfer gets a thread of its own: an idle one if there is one, else a
// new one; a few idle threads are kept for a while for the next transfers.
import Foundation

final class TransferThreads: @unchecked Sendable {
    typealias Job = @Sendable () -> Void

    /// Enough idle threads for a delivery destination's attempts in flight: a thread made and
    /// ended per transfer costs more than the transfer on loopback.
    static let shared = TransferThreads(maxIdle: 64, idleLifetime: 30)

    private let maxIdle: Int
    private let idleLifetime: TimeInterval
    /// Guards `jobs` and `idle`; held only to hand a job over, never while one runs.
    private let condition = NSCondition()
    private var jobs: [Job] = []
    private var idle = 0

    init(maxIdle: Int, idleLifetime: TimeInterval) {
        self.maxIdle = maxIdle
        self.idleLifetime = idleLifetime
    }

    /// Runs `job` on a thread of its own, now (never queued behind another job).
    func run(_ job: @escaping Job) {
        condition.lock()
        if idle > jobs.count {
            // A waiting thread will take it.
            jobs.append(job)
            condition.signal()
            condition.unlock()
            return
        }
        condition.unlock()
        let thread = Thread { self.work(first: job) }
        thread.name = "http-client-transfer"
        thread.start()
    }

    private func work(first: @escaping Job) {
        var job: Job? = first
        while let current = job {
            current()
            job = nextJob()
        }
    }

    /// The next job, after waiting up to `idleLifetime`; nil to end the thread.
    private func nextJob() -> Job? {
        condition.lock()
        defer { condition.unlock() }
        guard idle < maxIdle else { return nil }
        idle += 1
        defer { idle -= 1 }
        let deadline = Date(timeIntervalSinceNow: idleLifetime)
        while jobs.isEmpty {
            if !condition.wait(until: deadline) { break }
        }
        return jobs.isEmpty ? nil : jobs.removeFirst()
    }
}
