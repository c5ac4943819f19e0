import Foundation
import HTTP1
import HTTPClient
import TestSupport
import Testing
import ThingSpace
import ThingSpaceSandbox

@Suite("Sandbox callback delivery")
struct DeliveryTests {
    let account = TestSecrets.accountName

    /// A sandbox that sends one sample after each registration, resending fast.
    private func deliveringFixture(_ configure: @escaping (inout SandboxConfiguration) -> Void = { _ in }) throws -> SandboxFixture {
        try SandboxFixture(sandbox: { configuration in
            configuration.deliverSamples = true
            configuration.sampleInterval = nil
            configuration.resendInterval = .milliseconds(50)
            configuration.deliveryTimeout = .seconds(3)
            configure(&configuration)
        })
    }

    private func register(_ fixture: SandboxFixture, url: String) throws {
        _ = try fixture.makeClient().register(
            accountName: account,
            request: RegisterCallbackRequest(
                name: "CarrierService", url: url, username: "listener-user", password: TestSecrets.callbackPassword))
    }

    @Test func unacknowledgedCallbackIsResentUpToTheThreshold() throws {
        let fixture = try deliveringFixture()
        let listener = try TestListener(logger: fixture.logs.logger("listener")) { _ in (503, .zero) }
        defer { listener.stop() }
        try register(fixture, url: listener.url)

        #expect(!"\(fixture.sandbox.registrations)".contains(TestSecrets.callbackPassword))
        #expect(eventually { fixture.sandbox.deliveries.count >= 4 })
        // Several resend intervals later, still four: the threshold stops it.
        Thread.sleep(forTimeInterval: 0.3)
        let deliveries = fixture.sandbox.deliveries
        #expect(deliveries.map(\.callbackCount) == [1, 2, 3, 4])
        #expect(deliveries.allSatisfy { $0.outcome == .status(503) && !$0.acknowledged })
        #expect(Set(deliveries.map(\.requestId)).count == 1)

        let received = listener.requests
        #expect(received.count == 4)
        for (index, request) in received.enumerated() {
            #expect(request.head.method == "POST")
            #expect(request.head.target == "/callbacks/CarrierService")
            #expect(request.head.headers["User-Agent"] == "Verizon's callback service")
            #expect(request.head.headers["Content-Type"] == "application/json")
            #expect(request.head.headers["Authorization"] == nil)
            let body = try #require(jsonObject(request.body))
            #expect(body["username"] as? String == "listener-user")
            #expect(body["password"] as? String == TestSecrets.callbackPassword)
            #expect(body["callbackCount"] as? Int == index + 1)
            #expect(body["maxCallbackThreshold"] as? Int == 4)
            #expect(body["requestId"] as? String == deliveries[0].requestId)
            #expect(body["status"] as? String != nil)
            #expect(body["deviceIds"] is [[String: Any]])
        }
        fixture.finish()
    }

    @Test func acknowledgedCallbackIsNotResent() throws {
        let fixture = try deliveringFixture()
        let listener = try TestListener(logger: fixture.logs.logger("listener")) { index in (index == 0 ? 503 : 200, .zero) }
        defer { listener.stop() }
        try register(fixture, url: listener.url)

        #expect(eventually { fixture.sandbox.deliveries.count >= 2 })
        Thread.sleep(forTimeInterval: 0.3)
        let deliveries = fixture.sandbox.deliveries
        #expect(deliveries.map(\.callbackCount) == [1, 2])
        #expect(deliveries.map(\.outcome) == [.status(503), .status(200)])
        #expect(listener.requests.count == 2)
        fixture.finish()
    }

    @Test func slowAnswerCountsAsUnacknowledged() throws {
        let fixture = try deliveringFixture { configuration in
            configuration.deliveryTimeout = .milliseconds(500)
            configuration.maxCallbackThreshold = 2
        }
        let listener = try TestListener(logger: fixture.logs.logger("listener")) { index in (200, index == 0 ? .seconds(2) : .zero) }
        defer { listener.stop() }
        try register(fixture, url: listener.url)

        #expect(eventually { fixture.sandbox.deliveries.count >= 2 })
        let deliveries = fixture.sandbox.deliveries
        #expect(deliveries.map(\.outcome) == [.timedOut, .status(200)])
        #expect(deliveries.map(\.callbackCount) == [1, 2])
        fixture.finish()
    }

    @Test func deregisteredListenerGetsNothingMore() throws {
        let fixture = try deliveringFixture { $0.resendInterval = .milliseconds(300) }
        let listener = try TestListener(logger: fixture.logs.logger("listener")) { _ in (503, .zero) }
        defer { listener.stop() }
        try register(fixture, url: listener.url)
        #expect(eventually { fixture.sandbox.deliveries.count >= 1 })
        _ = try fixture.makeClient().deregister(accountName: account, serviceName: "CarrierService")
        Thread.sleep(forTimeInterval: 0.6)
        // The resends found no listener: the callback is lost, as on ThingSpace.
        #expect(fixture.sandbox.deliveries.count == 1)
        #expect(listener.requests.count == 1)
        #expect(fixture.sandbox.deliverSample(serviceName: "CarrierService") == false)
        fixture.finish()
    }

    @Test func samplesOnDemandAndPeriodically() throws {
        let fixture = try deliveringFixture { configuration in
            configuration.sampleInterval = .milliseconds(100)
        }
        let listener = try TestListener(logger: fixture.logs.logger("listener")) { _ in (200, .zero) }
        defer { listener.stop() }
        try register(fixture, url: listener.url)
        #expect(eventually { fixture.sandbox.deliveries.count >= 3 })
        #expect(fixture.sandbox.deliverSample(serviceName: "CarrierService"))
        let deliveries = fixture.sandbox.deliveries
        #expect(deliveries.allSatisfy { $0.acknowledged && $0.callbackCount == 1 })
        #expect(Set(deliveries.map(\.requestId)).count == deliveries.count)
        // Both CarrierService shapes appear: the success and the fault.
        let bodies = listener.requests.compactMap { jsonObject($0.body) }
        #expect(bodies.contains { $0["deviceResponse"] != nil && $0["status"] as? String == "Success" })
        #expect(bodies.contains { $0["faultResponse"] != nil && $0["status"] as? String == "Failed" })
        fixture.finish()
    }

    @Test func unreachableListenerIsRecordedAsFailed() throws {
        let fixture = try deliveringFixture { $0.maxCallbackThreshold = 2 }
        let closed = try SilentSocket(listening: false)
        try register(fixture, url: "http://127.0.0.1:\(closed.port)/callbacks/CarrierService")
        #expect(eventually { fixture.sandbox.deliveries.count >= 2 })
        let deliveries = fixture.sandbox.deliveries
        #expect(deliveries.count == 2)
        #expect(
            deliveries.allSatisfy {
                if case .failed = $0.outcome { return true }
                return false
            })
        fixture.finish()
    }
}

@Suite("Sandbox API edges")
struct SandboxEdgeTests {
    @Test func unknownPathsAndMethodsAreRefused() throws {
        let fixture = try SandboxFixture()
        let http = CurlHTTPClient()
        let base = fixture.sandbox.baseURL
        let missing = try http.send(.init(method: .get, url: base + "/m2m/v1/nothing"))
        #expect(missing.status == 404)
        let wrongMethod = try http.send(.init(method: .get, url: base + "/ts/v1/oauth2/token"))
        #expect(wrongMethod.status == 405)
        #expect(wrongMethod.headerValue("Allow") == "POST")
        let noToken = try http.send(.init(method: .get, url: base + "/m2m/v1/callbacks/\(TestSecrets.accountName)"))
        #expect(noToken.status == 401)
        #expect(jsonObject(noToken.body)?["fault"] != nil)
        let badGrant = try http.send(
            .init(
                method: .post, url: base + "/ts/v1/oauth2/token",
                headers: [
                    (name: "Authorization", value: "Basic " + Data("client-id-1:CLIENT-SECRET-7f3a".utf8).base64EncodedString()),
                    (name: "Content-Type", value: "application/x-www-form-urlencoded"),
                ],
                body: Array("grant_type=password".utf8)))
        #expect(badGrant.status == 400)
        #expect(fixture.sandbox.journal.map(\.route) == [nil, nil, .list, .token])
        fixture.finish()
    }

    @Test func invalidConfigurationIsRefused() {
        var configuration = SandboxConfiguration()
        configuration.sampleTemplates = ["CarrierService": ["[1, 2]"]]
        let sandbox = ThingSpaceSandbox(configuration: configuration, logger: LogCapture().logger("sandbox"))
        #expect(throws: SandboxError.invalidConfiguration("a sample template for CarrierService is not a JSON object")) {
            try sandbox.start()
        }
        configuration = SandboxConfiguration()
        configuration.accountNames = []
        #expect(throws: SandboxError.self) {
            try ThingSpaceSandbox(configuration: configuration, logger: LogCapture().logger("sandbox")).start()
        }
    }

    @Test func listenerPortsCanBeEnforced() throws {
        let fixture = try SandboxFixture(sandbox: { $0.enforceListenerPorts = true })
        let client = fixture.makeClient()
        #expect(
            throws: ThingSpaceError.api(
                status: 400, errorCode: "UnifiedWebService.INPUT_INVALID.Url",
                errorMessage: "Port 8080 is not accepted for callback listeners")
        ) {
            try client.register(
                accountName: TestSecrets.accountName, request: RegisterCallbackRequest(name: "CarrierService", url: "https://h:8080/cb"))
        }
        _ = try client.register(
            accountName: TestSecrets.accountName, request: RegisterCallbackRequest(name: "CarrierService", url: "https://h:9001/cb"))
        #expect(fixture.sandbox.registrations.map(\.url) == ["https://h:9001/cb"])
        fixture.finish()
    }
}
