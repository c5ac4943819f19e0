import CallbackStore
import HTTP1
import HTTPServer
import Logging
import TestSupport
import Testing

@testable import ListenerApp

/// The intake handler's checks, in order, and the answer each gives: called
/// in process on requests built here, with the in-memory store behind it.
@Suite struct IntakeAdmissionTests {
    let directory: TemporaryDirectory
    let handler: CallbackHandler
    let writer = InMemoryCallbackStore()

    init() throws {
        directory = try TemporaryDirectory()
        var callbacks = ListenerConfiguration.Callbacks()
        callbacks.username = "listener-user"
        callbacks.password = Secret("listener-pass")
        callbacks.allowedSources = [CIDR("10.1.0.0/16")!]
        callbacks.trustedProxies = [CIDR("127.0.0.1/32")!]
        handler = CallbackHandler(
            pathPrefix: "/callbacks", policy: IntakePolicy(callbacks), writer: writer,
            metrics: ListenerMetrics(services: callbacks.services), logger: LogCapture().logger())
    }

    func request(
        _ method: String = "POST", _ target: String = "/callbacks/CarrierService", contentType: String? = "application/json",
        forwardedFor: String? = "10.1.2.3", body: [UInt8] = callbackBody()
    ) -> HTTPRequest {
        var headers: HTTPHeaders = ["Host": "listener"]
        if let contentType { headers.add(name: "Content-Type", value: contentType) }
        if let forwardedFor { headers.add(name: "X-Forwarded-For", value: forwardedFor) }
        return HTTPRequest(
            head: HTTPRequestHead(method: method, target: target, version: .http1_1, headers: headers, keepAlive: true),
            body: body)
    }

    func verdict(_ request: HTTPRequest, peer: String = "127.0.0.1") -> (RejectionReason?, Int?) {
        let context = HTTPRequestContext(connectionID: 1, remoteAddress: peer, remotePort: 40000)
        switch handler.admit(request, context: context, policy: handler.currentPolicy) {
        case .reject(let reason, let status, _, _, _): return (reason, status.code)
        case .store: return (nil, nil)
        }
    }

    @Test func aGoodCallbackIsStored() {
        #expect(verdict(request()) == (nil, nil))
    }

    /// Each request fails every check from one point on: the first failing check answers.
    @Test func checksRunInOrder() {
        let everythingWrong = request("GET", "/elsewhere", contentType: "text/plain", forwardedFor: "192.0.2.1", body: Array("x".utf8))
        #expect(verdict(everythingWrong) == (.sourceNotAllowed, 403))
        var fromAllowed = everythingWrong
        fromAllowed.head.headers.replaceOrAdd(name: "X-Forwarded-For", value: "10.1.9.9")
        #expect(verdict(fromAllowed) == (.unknownService, 404))
        fromAllowed.head.target = "/callbacks/DeviceUsage"
        #expect(verdict(fromAllowed) == (.methodNotAllowed, 405))
        fromAllowed.head.method = "POST"
        #expect(verdict(fromAllowed) == (.unsupportedMediaType, 415))
        fromAllowed.head.headers.replaceOrAdd(name: "Content-Type", value: "Application/JSON; charset=utf-8")
        #expect(verdict(fromAllowed) == (.invalidJSON, 400))
        fromAllowed.body = callbackBody(password: "wrong")
        #expect(verdict(fromAllowed) == (.badCredentials, 403))
        fromAllowed.body = callbackBody()
        #expect(verdict(fromAllowed) == (nil, nil))
    }

    @Test func methodNotAllowedSaysWhichIs() {
        let context = HTTPRequestContext(connectionID: 1, remoteAddress: "127.0.0.1", remotePort: 1)
        guard
            case .reject(_, _, _, let headers, let service) = handler.admit(request("PUT"), context: context, policy: handler.currentPolicy)
        else {
            Issue.record("PUT was admitted")
            return
        }
        #expect(headers["Allow"] == "POST")
        #expect(service == "CarrierService")
    }

    /// X-Forwarded-For is believed only from a trusted proxy, read right to left.
    @Test func forwardedForOnlyFromTrustedProxies() {
        let policy = handler.currentPolicy
        #expect(policy.clientAddress(peer: "127.0.0.1", forwardedFor: ["10.1.2.3"]) == "10.1.2.3")
        // Not a trusted peer: its header is ignored.
        #expect(policy.clientAddress(peer: "192.0.2.7", forwardedFor: ["10.1.2.3"]) == "192.0.2.7")
        #expect(verdict(request(forwardedFor: "10.1.2.3"), peer: "192.0.2.7") == (.sourceNotAllowed, 403))
        // A client cannot prepend its way in: the nearest untrusted hop counts.
        #expect(policy.clientAddress(peer: "127.0.0.1", forwardedFor: ["10.1.2.3, 192.0.2.8"]) == "192.0.2.8")
        #expect(policy.clientAddress(peer: "127.0.0.1", forwardedFor: ["10.1.2.3", "192.0.2.8, 127.0.0.1"]) == "192.0.2.8")
        #expect(policy.clientAddress(peer: "127.0.0.1", forwardedFor: []) == "127.0.0.1")
    }

    @Test func credentialsAndThePreviousPassword() {
        var policy = handler.currentPolicy
        #expect(policy.acceptsCredentials(username: "listener-user", password: "listener-pass"))
        #expect(!policy.acceptsCredentials(username: "listener-user", password: "listener-pas"))
        #expect(!policy.acceptsCredentials(username: "listener-user", password: "listener-pass!"))
        #expect(!policy.acceptsCredentials(username: "listener-user", password: "listener-pasS"))
        #expect(!policy.acceptsCredentials(username: "listener-usr", password: "listener-pass"))
        #expect(!policy.acceptsCredentials(username: nil, password: "listener-pass"))
        #expect(!policy.acceptsCredentials(username: "listener-user", password: nil))
        #expect(!policy.acceptsCredentials(username: "listener-user", password: "old-pass"))
        policy.previousPassword = Secret("old-pass")
        #expect(policy.acceptsCredentials(username: "listener-user", password: "old-pass"))
        #expect(policy.acceptsCredentials(username: "listener-user", password: "listener-pass"))
        #expect(!policy.acceptsCredentials(username: "other", password: "old-pass"))
    }

    /// The comparison looks at every byte and at the lengths, wherever they differ.
    @Test func constantTimeComparison() {
        #expect(constantTimeEquals("", ""))
        #expect(constantTimeEquals("abc", "abc"))
        #expect(!constantTimeEquals("abc", "abd"))
        #expect(!constantTimeEquals("abc", "xbc"))
        #expect(!constantTimeEquals("abc", "ab"))
        #expect(!constantTimeEquals("ab", "abc"))
        #expect(!constantTimeEquals("abc\u{0}", "abc"))
        #expect(!constantTimeEquals("é", "e\u{301}"))
    }

    @Test func theStoredBodyHasThePasswordRedacted() throws {
        guard
            case .store(let callback) = handler.admit(
                request(), context: HTTPRequestContext(connectionID: 1, remoteAddress: "127.0.0.1", remotePort: 1),
                policy: handler.currentPolicy)
        else {
            Issue.record("not admitted")
            return
        }
        let body = String(decoding: callback.body, as: UTF8.self)
        #expect(!body.contains("listener-pass"))
        #expect(body.contains("\"password\":\"<redacted>\""))
        #expect(callback.remoteAddress == "10.1.2.3")
        #expect(callback.service == "CarrierService")
    }
}
