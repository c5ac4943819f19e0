import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Group commit in front of a store: one dedicated thread commits every callback waiting at that
/// moment in one transaction (one fsync), then reports each outcome.
///
/// `submit` never blocks on the disk: it appends under a short lock and signals the thread.
/// A store error fails the whole batch (nothing unsaved is acknowledged), is logged once per
/// failure episode, and later batches try again, so the writer recovers when the disk does.
public final class GroupCommitWriter: Sendable {
    public typealias Completion = @Sendable (Result<CommitReceipt, CallbackStoreError>) -> Void

    /// Reported to the observer on the writer thread after each batch's completions were called.
    public enum Event: Sendable, Hashable {
        case committed(batchSize: Int, duration: Duration)
        case failed(batchSize: Int, duration: Duration, error: CallbackStoreError)
    }

    public typealias Observer = @Sendable (Event) -> Void

    public struct Statistics: Sendable, Hashable {
        public var committedBatches: UInt64
        public var committedCallbacks: UInt64
        public var failedBatches: UInt64
        public var failedCallbacks: UInt64
    }

    /// How often an idle writer wakes up to advance `progressHeartbeat`.
    static let idleTick: TimeInterval = 0.5

    private let mailbox: WriterMailbox

    /// Starts the writer thread, which owns `store` from now on (do not use it elsewhere) and closes it.
    /// - Parameters:
    ///   - capacity: submissions that may wait; more are refused (answer 503 with Retry-After).
    ///   - maxQueuedBytes: body bytes that may wait, to bound memory; one callback is always accepted
    ///     into an empty queue. The writer holds at most about twice this: the waiting callbacks
    ///     and the batch being committed.
    ///   - observer: called on the writer thread after each batch, for metrics; keep it short.
    public init(
        store: SQLiteCallbackStore,
        capacity: Int = 4096,
        maxQueuedBytes: Int = 4 << 20,
        logger: Logger,
        observer: Observer? = nil
    ) {
        let mailbox = WriterMailbox(queue: WriterQueue(capacity: capacity, maxQueuedBytes: maxQueuedBytes))
        self.mailbox = mailbox
        let thread = Thread {
            var loop = WriterLoop(store: store, mailbox: mailbox, logger: logger, observer: observer)
            loop.run()
        }
        thread.name = "callback-store-writer"
        thread.start()
    }

    deinit {
        close()
    }

    /// Queues the callback and returns true; `completion` is then called exactly once, on the writer
    /// thread, after the commit (or failure) of the transaction holding it. Returns false at once,
    /// never calling `completion`, when the queue is full or the writer is closed.
    public func submit(_ callback: NewCallback, completion: @escaping Completion) -> Bool {
        mailbox.submit(WriterQueue.Submission(callback: callback, completion: completion))
    }

    /// Commits what is queued, stops the writer thread and closes the store. Idempotent.
    /// Called from a completion or the observer it only asks the writer to stop, without waiting.
    public func close() {
        mailbox.stop()
    }

    /// Advances while the writer loop runs, idle waits included (about twice a second); it stands
    /// still while a commit is stuck, e.g. in fsync. For the systemd watchdog.
    public var progressHeartbeat: UInt64 {
        mailbox.heartbeat.load(ordering: .relaxed)
    }

    public var pendingCount: Int {
        mailbox.pendingCount
    }

    /// True from a failed batch until the next successful one: the store cannot save (for readiness).
    public var isFailing: Bool {
        mailbox.isFailing.load(ordering: .relaxed)
    }

    public var statistics: Statistics {
        Statistics(
            committedBatches: mailbox.committedBatches.load(ordering: .relaxed),
            committedCallbacks: mailbox.committedCallbacks.load(ordering: .relaxed),
            failedBatches: mailbox.failedBatches.load(ordering: .relaxed),
            failedCallbacks: mailbox.failedCallbacks.load(ordering: .relaxed)
        )
    }
}

/// What the submitting threads and the writer thread share.
final class WriterMailbox: @unchecked Sendable {
    private let condition = NSCondition()
    private var queue: WriterQueue  // guarded by condition
    private var writerThread: pthread_t?  // guarded by condition

    let heartbeat = Atomic<UInt64>(0)
    let isFailing = Atomic<Bool>(false)
    let committedBatches = Atomic<UInt64>(0)
    let committedCallbacks = Atomic<UInt64>(0)
    let failedBatches = Atomic<UInt64>(0)
    let failedCallbacks = Atomic<UInt64>(0)

    init(queue: WriterQueue) {
        self.queue = queue
    }

    func submit(_ submission: WriterQueue.Submission) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard queue.submit(submission) else { return false }
        condition.signal()
        return true
    }

    var pendingCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return queue.pending.count
    }

    /// On the writer thread: blocks until there is work; nil when the writer
    /// must stop. While the store is failing, an idle tick returns an empty
    /// batch: a cue to probe the store, so recovery shows without traffic.
    func nextBatch() -> [WriterQueue.Submission]? {
        condition.lock()
        defer { condition.unlock() }
        if writerThread == nil {
            writerThread = pthread_self()
        }
        while true {
            heartbeat.add(1, ordering: .relaxed)
            switch queue.next() {
            case .commit(let batch): return batch
            case .stop: return nil
            case .wait:
                let woken = condition.wait(until: Date(timeIntervalSinceNow: GroupCommitWriter.idleTick))
                if !woken && isFailing.load(ordering: .relaxed) { return [] }
            }
        }
    }

    /// Asks the writer to drain and stop, then waits for it unless called on the writer thread.
    func stop() {
        condition.lock()
        defer { condition.unlock() }
        queue.requestStop()
        condition.broadcast()
        if let writerThread, pthread_equal(writerThread, pthread_self()) != 0 {
            return
        }
        while queue.phase != .stopped {
            condition.wait()
        }
    }

    /// On the writer thread, last.
    func markStopped() {
        condition.lock()
        defer { condition.unlock() }
        queue.markStopped()
        condition.broadcast()
    }
}

/// The writer thread's loop; its state belongs to that thread alone.
private struct WriterLoop {
    /// A run of failed batches, logged once when it starts and once when it ends.
    private struct FailureEpisode {
        var started: ContinuousClock.Instant
        var batches = 0
        var callbacks = 0
        var lastError: CallbackStoreError
    }

    let store: SQLiteCallbackStore
    let mailbox: WriterMailbox
    let logger: Logger
    let observer: GroupCommitWriter.Observer?
    private var episode: FailureEpisode?

    init(store: SQLiteCallbackStore, mailbox: WriterMailbox, logger: Logger, observer: GroupCommitWriter.Observer?) {
        self.store = store
        self.mailbox = mailbox
        self.logger = logger
        self.observer = observer
    }

    mutating func run() {
        while let batch = mailbox.nextBatch() {
            if batch.isEmpty { probe() } else { commit(batch) }
        }
        store.close()
        mailbox.markStopped()
    }

    private mutating func commit(_ batch: [WriterQueue.Submission]) {
        let clock = ContinuousClock()
        let start = clock.now
        do {
            let receipts = try store.insert(batch.map(\.callback))
            let duration = clock.now - start
            for (submission, receipt) in zip(batch, receipts) {
                submission.completion(.success(receipt))
            }
            mailbox.committedBatches.add(1, ordering: .relaxed)
            mailbox.committedCallbacks.add(UInt64(batch.count), ordering: .relaxed)
            endEpisode(now: clock.now)
            observer?(.committed(batchSize: batch.count, duration: duration))
        } catch {
            let duration = clock.now - start
            for submission in batch {
                submission.completion(.failure(error))
            }
            mailbox.failedBatches.add(1, ordering: .relaxed)
            mailbox.failedCallbacks.add(UInt64(batch.count), ordering: .relaxed)
            recordFailure(error, batchSize: batch.count, now: clock.now)
            observer?(.failed(batchSize: batch.count, duration: duration, error: error))
        }
    }

    /// Ends a failure episode as soon as a write succeeds again; a probe that
    /// fails changes nothing (the episode was logged when it began).
    private mutating func probe() {
        guard episode != nil, (try? store.probeWrite()) != nil else { return }
        endEpisode(now: ContinuousClock().now)
    }

    private mutating func recordFailure(_ error: CallbackStoreError, batchSize: Int, now: ContinuousClock.Instant) {
        if episode == nil {
            episode = FailureEpisode(started: now, lastError: error)
            mailbox.isFailing.store(true, ordering: .relaxed)
            logger.error(
                "Storing callbacks failed; answering 503 until the store works again",
                metadata: ["error": "\(error)", "batch.size": "\(batchSize)"]
            )
        }
        episode?.batches += 1
        episode?.callbacks += batchSize
        episode?.lastError = error
    }

    private static func seconds(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        return String(format: "%.1f", Double(seconds) + Double(attoseconds) / 1e18)
    }

    private mutating func endEpisode(now: ContinuousClock.Instant) {
        guard let ended = episode else { return }
        episode = nil
        mailbox.isFailing.store(false, ordering: .relaxed)
        logger.notice(
            "Storing callbacks recovered",
            metadata: [
                "failed.batches": "\(ended.batches)",
                "failed.callbacks": "\(ended.callbacks)",
                "outage.seconds": "\(Self.seconds(now - ended.started))",
                "last.error": "\(ended.lastError)",
            ]
        )
    }
}
