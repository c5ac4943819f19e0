import CallbackStore
import Dispatch
import Foundation
import Testing

@testable import SQLiteStore

/// A connection used from two threads at once stops the process (an exit
/// test: it runs in a child process), instead of sharing a statement cache.
@Suite struct ExclusiveUseTests {
    @Test func oneThreadMayNestItsOwnUses() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("exclusive-\(UUID().uuidString).sqlite").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        nonisolated(unsafe) let connection = try SQLiteConnection(path: path, readOnly: false)
        let value = try connection.transaction(.deferred) { () throws(CallbackStoreError) -> Int64? in
            try connection.scalarInt64("SELECT 41 + 1")
        }
        #expect(value == 42)
        // Used from another thread afterwards: fine, one at a time.
        let other = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: Int64?
        Thread {
            result = try? connection.scalarInt64("SELECT 7")
            other.signal()
        }.start()
        #expect(other.wait(timeout: .now() + 10) == .success)
        #expect(result == 7)
    }

    @Test func twoThreadsAtOnceTrap() async {
        await #expect(processExitsWith: .failure) {
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("exclusive-\(UUID().uuidString).sqlite").path
            nonisolated(unsafe) let connection = try! SQLiteConnection(path: path, readOnly: false)
            let inside = DispatchSemaphore(value: 0)
            let release = DispatchSemaphore(value: 0)
            Thread {
                _ = try? connection.withStatement("SELECT 1") { _ in
                    inside.signal()
                    _ = release.wait(timeout: .now() + 10)
                }
            }.start()
            inside.wait()
            _ = try? connection.scalarInt64("SELECT 2")  // traps: the other thread is inside
            release.signal()
        }
    }
}
