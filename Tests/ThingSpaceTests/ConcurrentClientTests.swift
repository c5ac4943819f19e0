import Foundation
import HTTP1
import TestSupport
import Testing
import ThingSpace
import ThingSpaceSandbox

extension Result where Failure == any Error {
    var thingSpaceError: ThingSpaceError? {
        if case let .failure(error) = self { return error as? ThingSpaceError }
        return nil
    }
}

@Suite("Connectivity Callbacks client used by several threads at once")
struct ConcurrentClientTests {
    let account = TestSecrets.accountName
    let parallel = 4

    /// Fails with the lock held across the network: then the calls of one
    /// client run one at a time and never `parallel` are open at once.
    @Test func concurrentCallsShareOneSignInAndRunInParallel() throws {
        let fixture = try SandboxFixture()
        let client = fixture.makeClient()
        // The token answer is held a while, so every caller needs a token while
        // the first is being fetched: each sending its own would show here.
        fixture.sandbox.holdNext(.token, count: 2, timeout: .milliseconds(500))
        fixture.sandbox.holdNext(.list, count: parallel)
        let account = self.account
        let results = onThreads(parallel) { _ in Result { try client.list(accountName: account) } }
        for result in results { #expect(try result.get() == []) }
        #expect(fixture.entries(.token).count == 1)
        #expect(fixture.entries(.login).count == 1)
        #expect(fixture.entries(.list).count == parallel)
        #expect(fixture.sandbox.maxHeldAtOnce(.list) == parallel)
        // One token and one session throughout.
        #expect(Set(fixture.entries(.list).map { $0.headers["VZ-M2M-Token"] ?? "" }).count == 1)
        fixture.finish()
    }

    @Test func concurrentRefusalsRenewTheSessionOnce() throws {
        let fixture = try SandboxFixture()
        let client = fixture.makeClient()
        _ = try client.list(accountName: account)
        fixture.sandbox.expireSessions()
        // All calls are refused together; one fresh token and session serve them all.
        fixture.sandbox.holdNext(.list, count: parallel)
        fixture.sandbox.holdNext(.token, count: 2, timeout: .milliseconds(500))
        let account = self.account
        let results = onThreads(parallel) { _ in Result { try client.list(accountName: account) } }
        for result in results { #expect(try result.get() == []) }
        #expect(fixture.sandbox.maxHeldAtOnce(.list) == parallel)
        #expect(fixture.entries(.list).map(\.status).filter { $0 == 401 }.count == parallel)
        #expect(fixture.entries(.list).map(\.status).filter { $0 == 200 }.count == parallel + 1)
        #expect(fixture.entries(.token).count == 2)
        #expect(fixture.entries(.login).count == 2)
        fixture.finish()
    }

    @Test func concurrentCallsWithARefusedLoginLogInOnce() throws {
        let fixture = try SandboxFixture()
        var wrong = TestSecrets.credentials
        wrong.password = "WRONG-PASSWORD-2222"
        let client = fixture.makeClient(credentials: wrong)
        fixture.sandbox.holdNext(.login, count: 2, timeout: .milliseconds(500))
        let account = self.account
        let expected = ThingSpaceError.invalidCredentials(
            kind: .sessionLogin, status: 400,
            errorCode: "UnifiedWebService.REQUEST_FAILED.SessionLogin.InvalidCredentials", errorMessage: "Invalid username or password")
        let results = onThreads(parallel) { _ in Result { try client.list(accountName: account) } }
        for result in results { #expect(result.thingSpaceError == expected) }
        #expect(fixture.entries(.login).count == 1)
        #expect(fixture.sandbox.failedLoginCount == 1)
        // Latched: later calls, concurrent or not, never log in again.
        let later = onThreads(parallel) { _ in Result { try client.authenticate() } }
        for result in later { #expect(result.thingSpaceError == expected) }
        #expect(fixture.entries(.login).count == 1)
        #expect(fixture.sandbox.failedLoginCount == 1)
        fixture.finish(extraSecrets: ["WRONG-PASSWORD-2222"])
    }

    @Test func aFailedSignInIsSharedByItsWaiters() throws {
        // A 5xx at login is retried, but waiters take the leader's outcome
        // rather than each sending a login of its own at once.
        let fixture = try SandboxFixture(client: { $0.maxAttempts = 1 })
        let client = fixture.makeClient()
        fixture.sandbox.holdNext(.token, count: 2, timeout: .milliseconds(500))
        fixture.sandbox.failNext(.token, status: 503)
        let account = self.account
        let results = onThreads(parallel) { _ in Result { try client.list(accountName: account) } }
        #expect(fixture.entries(.token).count == 1)
        for result in results {
            #expect(
                result.thingSpaceError
                    == .api(status: 503, errorCode: "UnifiedWebService.INTERNAL_ERROR", errorMessage: "Service temporarily unavailable"))
        }
        #expect(try client.list(accountName: account) == [])
        fixture.finish()
    }
}
