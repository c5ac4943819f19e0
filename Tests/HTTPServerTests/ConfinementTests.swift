import Dispatch
import Testing

@testable import HTTPServer

/// A loop and its connections are confined to the loop's queue; touching
/// one from elsewhere stops the process (exit tests run in a child process).
@Suite struct ConfinementTests {
    @Test func aLoopIsUsedOnItsQueue() {
        let loop = IOLoop(index: 0)
        loop.queue.sync { loop.beginDrain() }
    }

    @Test func aLoopUsedOffItsQueueTraps() async {
        await #expect(processExitsWith: .failure) {
            IOLoop(index: 0).beginDrain()
        }
    }
}
