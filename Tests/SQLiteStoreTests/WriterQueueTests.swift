import CallbackStore
import Testing

@testable import SQLiteStore

/// The bounded queue in front of the journal's writer thread.
@Suite struct WriterQueueTests {
    func submission(bodySize: Int) -> WriterQueue.Submission {
        WriterQueue.Submission(
            callback: makeCallback(body: [UInt8](repeating: UInt8(ascii: "x"), count: bodySize)),
            completion: { _ in Issue.record("a queue never calls a completion") })
    }

    /// Outside `#expect`, which cannot mutate its arguments.
    func submit(_ queue: inout WriterQueue, _ submission: WriterQueue.Submission) -> Bool { queue.submit(submission) }

    @Test func aFullQueueRefusesByCountAndByBodyBytesAndAlwaysTakesOneIntoAnEmptyQueue() {
        var byCount = WriterQueue(capacity: 3, maxQueuedBytes: 1_000)
        for _ in 0..<3 { #expect(submit(&byCount, submission(bodySize: 10))) }
        #expect(!submit(&byCount, submission(bodySize: 10)))
        #expect(byCount.pending.count == 3)

        var byBytes = WriterQueue(capacity: 100, maxQueuedBytes: 1_000)
        #expect(submit(&byBytes, submission(bodySize: 600)))
        #expect(!submit(&byBytes, submission(bodySize: 600)))
        #expect(submit(&byBytes, submission(bodySize: 400)))
        #expect(byBytes.pendingBytes == 1_000)

        // One callback larger than the limit still goes through an empty queue.
        var oversized = WriterQueue(capacity: 100, maxQueuedBytes: 1_000)
        #expect(submit(&oversized, submission(bodySize: 5_000)))
        #expect(!submit(&oversized, submission(bodySize: 1)))
    }

    @Test func everythingWaitingIsOneBatchAndStoppingDrainsFirst() {
        var queue = WriterQueue(capacity: 10, maxQueuedBytes: 1 << 20)
        guard case .wait = queue.next() else {
            Issue.record("an empty running queue waits")
            return
        }
        for _ in 0..<4 { #expect(submit(&queue, submission(bodySize: 10))) }
        queue.requestStop()
        #expect(queue.phase == .draining)
        #expect(!submit(&queue, submission(bodySize: 10)))  // refused once closing
        guard case .commit(let batch) = queue.next() else {
            Issue.record("what was queued is appended")
            return
        }
        #expect(batch.count == 4)
        #expect(queue.pendingBytes == 0)
        guard case .stop = queue.next() else {
            Issue.record("a drained queue stops")
            return
        }
        queue.markStopped()
        #expect(queue.phase == .stopped)
    }
}
