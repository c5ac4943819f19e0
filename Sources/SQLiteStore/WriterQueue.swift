import CallbackStore

/// The bounded queue in front of the journal's writer thread and the writer's lifecycle, as a
/// plain value. `JournalStore`'s engine guards it with a lock; every transition is a method here.
///
///     running ──close()──▶ draining ──queue empty──▶ stopped
///        submissions accepted   refused; the writer     the writer thread
///        while below capacity   appends what is queued  has exited
struct WriterQueue {
    enum Phase: Equatable {
        case running
        case draining
        case stopped
    }

    struct Submission {
        var callback: NewCallback
        var completion: CallbackIntake.Completion
    }

    /// What the writer thread does next.
    enum Next {
        case commit([Submission])
        case wait
        case stop
    }

    let capacity: Int
    let maxQueuedBytes: Int
    private(set) var phase = Phase.running
    private(set) var pending: [Submission] = []
    private(set) var pendingBytes = 0

    init(capacity: Int, maxQueuedBytes: Int) {
        self.capacity = max(1, capacity)
        self.maxQueuedBytes = max(1, maxQueuedBytes)
    }

    /// Queues the submission, or refuses it when closing or full (by count, or by body bytes,
    /// though one callback is always accepted into an empty queue).
    mutating func submit(_ submission: Submission) -> Bool {
        guard phase == .running, pending.count < capacity else { return false }
        let size = submission.callback.body.count
        guard pending.isEmpty || pendingBytes + size <= maxQueuedBytes else { return false }
        pending.append(submission)
        pendingBytes += size
        return true
    }

    /// Takes EVERY waiting submission at once: they become one journal write and one fdatasync.
    mutating func next() -> Next {
        if !pending.isEmpty {
            let batch = pending
            pending = []
            pendingBytes = 0
            return .commit(batch)
        }
        return phase == .running ? .wait : .stop
    }

    mutating func requestStop() {
        if phase == .running {
            phase = .draining
        }
    }

    mutating func markStopped() {
        phase = .stopped
    }
}
