import Foundation
import HTTP1
import HTTPClient
import TestSupport
import Testing
import ThingSpace
import ThingSpaceSandbox

@Suite("Connectivity Callbacks client against the sandbox")
struct CallbacksClientTests {
    let account = TestSecrets.accountName

    @Test func roundTripSendsTheDocumentedRequests() throws {
        let fixture = try SandboxFixture()
        let client = fixture.makeClient()

        #expect(try client.list(accountName: account) == [])
        let request = RegisterCallbackRequest(
            name: "CarrierService", url: "https://listener.example.com:9001/callbacks/CarrierService",
            username: "listener-user", password: TestSecrets.callbackPassword)
        let registered = try client.register(accountName: account, request: request)
        #expect(registered == CallbackActionResult(accountName: account, serviceName: "CarrierService"))
        let listed = try client.list(accountName: account)
        #expect(
            listed == [
                ConnectivityManagementCallback(
                    accountName: account, serviceName: "CarrierService", url: request.url,
                    username: "listener-user", password: TestSecrets.callbackPassword)
            ])
        let removed = try client.deregister(accountName: account, serviceName: "CarrierService")
        #expect(removed == CallbackActionResult(accountName: account, serviceName: "CarrierService"))
        #expect(try client.list(accountName: account) == [])

        let journal = fixture.sandbox.journal
        #expect(journal.map(\.route) == [.token, .login, .list, .register, .list, .deregister, .list])
        #expect(journal.allSatisfy { $0.status == 200 })

        // Token: Basic client credentials, form body.
        let token = journal[0]
        #expect(token.method == "POST")
        #expect(token.path == "/api/ts/v1/oauth2/token")
        let basic = Data("client-id-1:CLIENT-SECRET-7f3a".utf8).base64EncodedString()
        #expect(token.headers["Authorization"] == "Basic \(basic)")
        #expect(token.headers["Content-Type"] == "application/x-www-form-urlencoded")
        #expect(token.bodyText == "grant_type=client_credentials")

        // Session login: Bearer token, JSON username/password.
        let login = journal[1]
        #expect(login.method == "POST")
        #expect(login.path == "/api/m2m/v1/session/login")
        let bearer = try #require(login.headers["Authorization"])
        #expect(bearer.hasPrefix("Bearer sbx-at-"))
        #expect(login.headers["Content-Type"] == "application/json")
        let loginBody = try #require(jsonObject(login.body))
        #expect(loginBody.count == 2)
        #expect(loginBody["username"] as? String == "uws-user")
        #expect(loginBody["password"] as? String == "UWS-PASSWORD-91bd")

        // Callbacks calls: exactly the documented headers, one token and session throughout.
        let session = try #require(journal[2].headers["VZ-M2M-Token"])
        #expect(session.hasPrefix("sbx-st-"))
        for entry in journal[2...] {
            #expect(entry.headers["Accept"] == "application/json")
            #expect(entry.headers["Authorization"] == bearer)
            #expect(entry.headers["VZ-M2M-Token"] == session)
            #expect(entry.headers.values(for: "Authorization").count == 1)
        }
        #expect(journal[2].method == "GET")
        #expect(journal[2].path == "/api/m2m/v1/callbacks/0012345678-00001")
        #expect(journal[2].headers["Content-Type"] == nil)
        #expect(journal[2].body.isEmpty)

        let register = journal[3]
        #expect(register.method == "POST")
        #expect(register.path == "/api/m2m/v1/callbacks/0012345678-00001")
        #expect(register.headers["Content-Type"] == "application/json")
        let registerBody = try #require(jsonObject(register.body))
        #expect(Set(registerBody.keys) == ["name", "url", "username", "password"])
        #expect(registerBody["name"] as? String == "CarrierService")
        #expect(registerBody["url"] as? String == request.url)
        #expect(registerBody["username"] as? String == "listener-user")
        #expect(registerBody["password"] as? String == TestSecrets.callbackPassword)

        #expect(journal[5].method == "DELETE")
        #expect(journal[5].path == "/api/m2m/v1/callbacks/0012345678-00001/name/CarrierService")
        #expect(journal[5].headers["Content-Type"] == nil)
        fixture.finish()
    }

    @Test func pathSegmentsArePercentEncoded() throws {
        let fixture = try SandboxFixture()
        let client = fixture.makeClient()
        #expect(try client.list(accountName: "00 12/34?x") == [])
        _ = try client.register(
            accountName: "00 12/34?x", request: RegisterCallbackRequest(name: "DeviceUsage", url: "http://127.0.0.1:9/x"))
        _ = try client.deregister(accountName: "00 12/34?x", serviceName: "DeviceUsage")
        let paths = fixture.sandbox.journal.filter { $0.route != .token && $0.route != .login }.map(\.path)
        #expect(
            paths == [
                "/api/m2m/v1/callbacks/00%2012%2F34%3Fx",
                "/api/m2m/v1/callbacks/00%2012%2F34%3Fx",
                "/api/m2m/v1/callbacks/00%2012%2F34%3Fx/name/DeviceUsage",
            ])
        fixture.finish()
    }

    @Test func emptyListBodyIsReallyEmptyOnTheWire() throws {
        let fixture = try SandboxFixture()
        let client = fixture.makeClient()
        try client.authenticate()
        let bearer = try #require(fixture.entries(.login).first?.headers["Authorization"])
        // Ask the sandbox directly: the answer has no body at all, not [].
        let raw = CurlHTTPClient()
        let login = try raw.send(
            .init(
                method: .post, url: fixture.sandbox.baseURL + "/m2m/v1/session/login",
                headers: [(name: "Authorization", value: bearer), (name: "Content-Type", value: "application/json")],
                body: Array(#"{"username":"uws-user","password":"UWS-PASSWORD-91bd"}"#.utf8)))
        let sessionToken = try #require(jsonObject(login.body)?["sessionToken"] as? String)
        let list = try raw.send(
            .init(
                method: .get, url: fixture.sandbox.baseURL + "/m2m/v1/callbacks/\(account)",
                headers: [(name: "Authorization", value: bearer), (name: "VZ-M2M-Token", value: sessionToken)]))
        #expect(list.status == 200)
        #expect(list.body.isEmpty)
        #expect(list.headerValue("Content-Length") == "0")
        #expect(try client.list(accountName: account) == [])
        fixture.finish(extraSecrets: [sessionToken])
    }

    @Test func errorBodyBecomesATypedError() throws {
        let fixture = try SandboxFixture()
        let client = fixture.makeClient()
        fixture.sandbox.failNext(
            .register, status: 400, body: #"{"errorCode":"REQUEST_FAILED.UnexpectedError","errorMessage":"Could not register"}"#)
        #expect(throws: ThingSpaceError.api(status: 400, errorCode: "REQUEST_FAILED.UnexpectedError", errorMessage: "Could not register")) {
            try client.register(accountName: account, request: RegisterCallbackRequest(name: "CarrierService", url: "https://h/cb"))
        }
        #expect(fixture.entries(.register).count == 1)

        // The sandbox's own validation answers in the same form.
        #expect(
            throws: ThingSpaceError.api(
                status: 400, errorCode: "UnifiedWebService.INPUT_INVALID.ServiceName", errorMessage: "Unknown service name 'NoSuchService'")
        ) {
            try client.register(accountName: account, request: RegisterCallbackRequest(name: "NoSuchService", url: "https://h/cb"))
        }
        #expect(
            throws: ThingSpaceError.api(
                status: 400, errorCode: "UnifiedWebService.REQUEST_FAILED.CallbackNotFound",
                errorMessage: "No callback is registered for service DeviceUsage")
        ) {
            try client.deregister(accountName: account, serviceName: "DeviceUsage")
        }
        #expect(throws: ThingSpaceError.self) { try client.list(accountName: "9999999999-99999") }
        fixture.finish()
    }

    @Test func invalidArgumentsNeverReachTheNetwork() throws {
        let fixture = try SandboxFixture()
        let client = fixture.makeClient()
        let long = String(repeating: "p", count: 41)
        #expect(throws: ThingSpaceError.self) {
            try client.register(
                accountName: account, request: RegisterCallbackRequest(name: "CarrierService", url: "https://h/cb", password: long))
        }
        #expect(throws: ThingSpaceError.invalidArgument("the account name '' is empty or contains a control character")) {
            try client.list(accountName: "")
        }
        #expect(throws: ThingSpaceError.self) { try client.deregister(accountName: account, serviceName: "..") }
        var empty = TestSecrets.credentials
        empty.password = ""
        // An empty password would only cost one of the five allowed failed logins.
        #expect(throws: ThingSpaceError.invalidArgument("the ThingSpace password is empty")) {
            try fixture.makeClient(credentials: empty).authenticate()
        }
        #expect(fixture.sandbox.journal.isEmpty)
        fixture.finish()
    }

    @Test func faultFormBecomesATypedError() throws {
        let fixture = try SandboxFixture()
        let client = fixture.makeClient()
        let fault =
            #"{"fault":{"code":"900901","message":"Invalid Credentials","description":"Invalid Credentials. Make sure you have given the correct access token"}}"#
        fixture.sandbox.failNext(.list, status: 401, count: 2, body: fault)
        #expect(throws: ThingSpaceError.api(status: 401, errorCode: "900901", errorMessage: "Invalid Credentials")) {
            try client.list(accountName: account)
        }
        // One fresh sign-in after the first refusal, then no more.
        #expect(fixture.entries(.list).count == 2)
        #expect(fixture.entries(.token).count == 2)
        #expect(fixture.entries(.login).count == 2)
        fixture.finish()
    }

    @Test func expiredSessionIsRenewedOnce() throws {
        let fixture = try SandboxFixture()
        let client = fixture.makeClient()
        _ = try client.list(accountName: account)
        fixture.sandbox.expireSessions()
        #expect(try client.list(accountName: account) == [])
        let journal = fixture.sandbox.journal
        #expect(journal.map(\.route) == [.token, .login, .list, .list, .token, .login, .list])
        #expect(journal.map(\.status) == [200, 200, 200, 401, 200, 200, 200])
        #expect(journal[3].headers["VZ-M2M-Token"] != journal[6].headers["VZ-M2M-Token"])
        fixture.finish()
    }

    @Test func sessionIdleExpiryOnTheServerIsRecovered() throws {
        let fixture = try SandboxFixture(sandbox: { $0.sessionIdleLifetime = .milliseconds(500) })
        let client = fixture.makeClient()
        _ = try client.list(accountName: account)
        Thread.sleep(forTimeInterval: 0.7)
        _ = try client.list(accountName: account)
        #expect(fixture.sandbox.journal.map(\.status) == [200, 200, 200, 401, 200, 200, 200])
        #expect(fixture.entries(.login).count == 2)
        fixture.finish()
    }

    @Test func idleSessionIsReplacedBeforeTheServerRefusesIt() throws {
        let fixture = try SandboxFixture(client: { $0.sessionIdleLifetime = .milliseconds(200) })
        let client = fixture.makeClient()
        _ = try client.list(accountName: account)
        Thread.sleep(forTimeInterval: 0.3)
        _ = try client.list(accountName: account)
        // A new session without a refused call first, and the token reused.
        #expect(fixture.sandbox.journal.map(\.route) == [.token, .login, .list, .login, .list])
        #expect(fixture.sandbox.journal.allSatisfy { $0.status == 200 })
        fixture.finish()
    }

    @Test func refusedLoginIsNeverRetried() throws {
        let fixture = try SandboxFixture()
        var wrong = TestSecrets.credentials
        wrong.password = "WRONG-PASSWORD-0000"
        let client = fixture.makeClient(credentials: wrong)
        let expected = ThingSpaceError.invalidCredentials(
            kind: .sessionLogin, status: 400,
            errorCode: "UnifiedWebService.REQUEST_FAILED.SessionLogin.InvalidCredentials", errorMessage: "Invalid username or password")
        #expect(throws: expected) { try client.list(accountName: account) }
        #expect(fixture.entries(.login).count == 1)
        // The refusal is remembered: later calls do not log in again.
        #expect(throws: expected) {
            try client.register(accountName: account, request: RegisterCallbackRequest(name: "CarrierService", url: "https://h/cb"))
        }
        #expect(throws: expected) { try client.authenticate() }
        #expect(fixture.entries(.login).count == 1)
        #expect(fixture.sandbox.failedLoginCount == 1)
        fixture.finish(extraSecrets: ["WRONG-PASSWORD-0000"])
    }

    @Test func refusedClientCredentialsAreNeverRetried() throws {
        let fixture = try SandboxFixture()
        var wrong = TestSecrets.credentials
        wrong.clientSecret = "WRONG-SECRET-0000"
        let client = fixture.makeClient(credentials: wrong)
        #expect(
            throws: ThingSpaceError.invalidCredentials(
                kind: .oauthClient, status: 401, errorCode: "invalid_client", errorMessage: "Client authentication failed")
        ) {
            try client.list(accountName: account)
        }
        #expect(throws: ThingSpaceError.self) { try client.list(accountName: account) }
        #expect(fixture.sandbox.journal.map(\.route) == [.token])
        fixture.finish(extraSecrets: ["WRONG-SECRET-0000"])
    }

    @Test func fiveFailedLoginsLockTheAccount() throws {
        let fixture = try SandboxFixture()
        var wrong = TestSecrets.credentials
        wrong.password = "WRONG-PASSWORD-1111"
        for _ in 1...5 {
            #expect(throws: ThingSpaceError.self) { try fixture.makeClient(credentials: wrong).authenticate() }
        }
        #expect(fixture.sandbox.isLocked)
        #expect(
            throws: ThingSpaceError.invalidCredentials(
                kind: .sessionLogin, status: 400, errorCode: "UnifiedWebService.REQUEST_FAILED.SessionLogin.AccountLocked",
                errorMessage: "The account is locked after 5 consecutive failed logins; contact M2M support to unlock it")
        ) {
            try fixture.makeClient().list(accountName: account)
        }
        #expect(fixture.entries(.login).count == 6)
        fixture.sandbox.unlockAccount()
        #expect(try fixture.makeClient().list(accountName: account) == [])
        fixture.finish(extraSecrets: ["WRONG-PASSWORD-1111"])
    }

    @Test func serverErrorsAreRetriedAndBounded() throws {
        let fixture = try SandboxFixture(client: { $0.maxAttempts = 4 })
        let client = fixture.makeClient()
        fixture.sandbox.failNext(.list, status: 503, count: 10)
        #expect(
            throws: ThingSpaceError.api(
                status: 503, errorCode: "UnifiedWebService.INTERNAL_ERROR", errorMessage: "Service temporarily unavailable")
        ) {
            try client.list(accountName: account)
        }
        #expect(fixture.entries(.list).count == 4)
        #expect(fixture.entries(.login).count == 1)
        fixture.finish()
    }

    @Test func serverErrorsThenSuccess() throws {
        let fixture = try SandboxFixture(client: { $0.maxAttempts = 4 })
        let client = fixture.makeClient()
        fixture.sandbox.failNext(.list, status: 500, count: 3)
        #expect(try client.list(accountName: account) == [])
        #expect(fixture.entries(.list).map(\.status) == [500, 500, 500, 200])
        fixture.finish()
    }

    @Test func tooManyRequestsIsRetried() throws {
        let fixture = try SandboxFixture()
        let client = fixture.makeClient()
        fixture.sandbox.failNext(.register, status: 429)
        _ = try client.register(accountName: account, request: RegisterCallbackRequest(name: "CarrierService", url: "https://h/cb"))
        #expect(fixture.entries(.register).map(\.status) == [429, 200])
        #expect(fixture.sandbox.registrations.count == 1)
        fixture.finish()
    }

    @Test func loginRetriesOnlyServerErrors() throws {
        let fixture = try SandboxFixture()
        fixture.sandbox.failNext(.token, status: 500)
        fixture.sandbox.failNext(.login, status: 502)
        try fixture.makeClient().authenticate()
        #expect(fixture.sandbox.journal.map(\.status) == [500, 200, 502, 200])

        fixture.sandbox.clearJournal()
        fixture.sandbox.failNext(.login, status: 429)
        #expect(
            throws: ThingSpaceError.api(status: 429, errorCode: "TooManyRequests", errorMessage: "Rate limit exceeded; try again later")
        ) {
            try fixture.makeClient().authenticate()
        }
        #expect(fixture.entries(.login).count == 1)
        fixture.finish()
    }

    @Test func networkErrorsAreRetriedThenReported() throws {
        let logs = LogCapture()
        let closed = try SilentSocket(listening: false)
        var configuration = ThingSpaceClientConfiguration(
            baseURL: "http://127.0.0.1:\(closed.port)/api", connectTimeout: .seconds(2), totalTimeout: .seconds(2),
            maxAttempts: 3, retryBaseDelay: .milliseconds(1), retryMaxDelay: .milliseconds(5))
        configuration.tokenRenewalMargin = .zero
        let client = ConnectivityCallbacksClient(
            configuration: configuration, credentials: TestSecrets.credentials, logger: logs.logger("client"))
        #expect {
            try client.list(accountName: account)
        } throws: { error in
            guard case ThingSpaceError.network = error else { return false }
            return true
        }
        #expect(logs.lines.filter { $0.contains("retrying") }.count == 2)
        #expect(!logs.lines.contains { $0.contains("CLIENT-SECRET-7f3a") || $0.contains("UWS-PASSWORD-91bd") })
    }

    @Test func tokenIsCachedAcrossCalls() throws {
        let fixture = try SandboxFixture()
        let client = fixture.makeClient()
        for _ in 1...3 { _ = try client.list(accountName: account) }
        #expect(fixture.sandbox.journal.map(\.route) == [.token, .login, .list, .list, .list])
        fixture.finish()
    }

    @Test func tokenIsRenewedWhenItExpires() throws {
        let fixture = try SandboxFixture(sandbox: { $0.tokenLifetime = .seconds(2) }, client: { $0.tokenRenewalMargin = .zero })
        let client = fixture.makeClient()
        _ = try client.list(accountName: account)
        Thread.sleep(forTimeInterval: 2.1)
        _ = try client.list(accountName: account)
        // Renewed before use: no refused call, the session kept.
        let journal = fixture.sandbox.journal
        #expect(journal.map(\.route) == [.token, .login, .list, .token, .list])
        #expect(journal.allSatisfy { $0.status == 200 })
        #expect(journal[2].headers["Authorization"] != journal[4].headers["Authorization"])
        #expect(journal[2].headers["VZ-M2M-Token"] == journal[4].headers["VZ-M2M-Token"])
        fixture.finish()
    }

    @Test func tokenRevokedEarlyIsReplaced() throws {
        let fixture = try SandboxFixture()
        let client = fixture.makeClient()
        _ = try client.list(accountName: account)
        fixture.sandbox.expireTokens()
        _ = try client.list(accountName: account)
        #expect(fixture.sandbox.journal.map(\.route) == [.token, .login, .list, .list, .token, .login, .list])
        #expect(fixture.sandbox.journal[3].status == 401)
        fixture.finish()
    }

    @Test func tokenRefusedAtLoginIsNotAFailedLogin() throws {
        // The client renews its session on every call; the gateway refuses
        // the cached token at login: fetch a new token, log in again.
        let fixture = try SandboxFixture(client: { $0.sessionIdleLifetime = .nanoseconds(1) })
        let client = fixture.makeClient()
        _ = try client.list(accountName: account)
        fixture.sandbox.expireTokens()
        _ = try client.list(accountName: account)
        let journal = fixture.sandbox.journal
        #expect(journal.map(\.route) == [.token, .login, .list, .login, .token, .login, .list])
        #expect(journal.map(\.status) == [200, 200, 200, 401, 200, 200, 200])
        #expect(fixture.sandbox.failedLoginCount == 0)
        fixture.finish()
    }

    @Test func logoutClosesTheSession() throws {
        let fixture = try SandboxFixture()
        let client = fixture.makeClient()
        try client.logout()  // nothing open: nothing sent
        #expect(fixture.sandbox.journal.isEmpty)
        _ = try client.list(accountName: account)
        try client.logout()
        let logout = try #require(fixture.entries(.logout).first)
        #expect(logout.method == "POST")
        #expect(logout.path == "/api/m2m/v1/session/logout")
        #expect(logout.status == 200)
        #expect(logout.headers["VZ-M2M-Token"] == fixture.entries(.list).first?.headers["VZ-M2M-Token"])
        _ = try client.list(accountName: account)
        #expect(fixture.sandbox.journal.map(\.route) == [.token, .login, .list, .logout, .login, .list])
        fixture.finish()
    }
}
