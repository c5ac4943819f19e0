import CallbackStore
import HTTP1
import HTTPServer
import Logging
import Synchronization
import TestSupport
import Testing

@testable import ListenerApp

// Admission of the intake and the admin handler as a parsed request reaches
// them: routing on the target's path in absolute-form (RFC 9112 §3.2.2), and
// 501 for a method the server implements nowhere (RFC 9110 §9.1).

/// Parses `text` as a complete request, as the server would hand it over.
func parsedRequest(_ text: String) throws -> HTTPRequest {
    var parser = HTTPRequestParser()
    parser.append(Array(text.utf8))
    while let event = try parser.next() {
        if case .request(let request) = event { return request }
    }
    throw HTTPParseError.invalidRequestLine
}

private func post(_ target: String, method: String = "POST", body: String = #"{"requestId":"r-1","status":"Success"}"#) throws
    -> HTTPRequest
{
    try parsedRequest(
        "\(method) \(target) HTTP/1.1\r\nHost: listener.example.com\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
    )
}

/// A callback handler over the in-memory store.
final class IntakeFixture {
    let directory: TemporaryDirectory
    let handler: CallbackHandler
    let policy: IntakePolicy
    private let writer = InMemoryCallbackStore()

    init(allowedSources: [CIDR] = []) throws {
        directory = try TemporaryDirectory()
        let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        var callbacks = ListenerConfiguration.Callbacks()
        callbacks.allowedSources = allowedSources
        policy = IntakePolicy(callbacks)
        handler = CallbackHandler(
            pathPrefix: "/callbacks", policy: policy, writer: writer,
            metrics: ListenerMetrics(services: callbacks.services), logger: logger)
    }

    func admit(_ request: HTTPRequest, from address: String = "192.0.2.1") -> (status: Int, allow: String?, service: String?) {
        let context = HTTPRequestContext(connectionID: 1, remoteAddress: address, remotePort: 40000)
        switch handler.admit(request, context: context, policy: policy) {
        case .reject(_, let status, _, let headers, _): return (status.code, headers["Allow"], nil)
        case .store(let callback): return (200, nil, callback.service)
        }
    }

    deinit { writer.close() }
}

@Suite struct IntakeRoutingTests {
    @Test(arguments: [
        ("/callbacks/CarrierService", "CarrierService"),
        ("http://listener.example.com/callbacks/CarrierService", "CarrierService"),
        ("https://listener.example.com:443/callbacks/DeviceUsage?x=1", "DeviceUsage"),
        ("HTTP://[2001:db8::1]:9001/callbacks/DeviceUsage", "DeviceUsage"),
    ])
    func absoluteFormIsRoutedOnItsPath(target: String, service: String) throws {
        let fixture = try IntakeFixture()
        let verdict = fixture.admit(try post(target))
        #expect(verdict.status == 200)
        #expect(verdict.service == service)
    }

    @Test(arguments: ["http://listener.example.com/callbacks/Nope", "http://listener.example.com", "http://callbacks/CarrierService"])
    func absoluteFormWithAnotherPathIs404(target: String) throws {
        #expect(try IntakeFixture().admit(try post(target)).status == 404)
    }

    @Test(arguments: ["GET", "HEAD", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"])
    func aKnownMethodOtherThanPOSTIs405WithAllow(method: String) throws {
        let verdict = try IntakeFixture().admit(try post("/callbacks/CarrierService", method: method))
        #expect(verdict.status == 405)
        #expect(verdict.allow == "POST")
    }

    @Test(arguments: ["FOO", "BREW", "post", "Get", "PROPFIND"])
    func anUnknownMethodIs501WhateverThePath(method: String) throws {
        let fixture = try IntakeFixture()
        #expect(fixture.admit(try post("/callbacks/CarrierService", method: method)).status == 501)
        #expect(fixture.admit(try post("/callbacks/NoSuchService", method: method)).status == 501)
        #expect(fixture.admit(try post("http://h/callbacks/CarrierService", method: method)).status == 501)
    }

    @Test func aSourceNotAllowedIs403BeforeTheMethodIsLookedAt() throws {
        let fixture = try IntakeFixture(allowedSources: [try #require(CIDR("198.51.100.0/24"))])
        #expect(fixture.admit(try post("/callbacks/CarrierService", method: "BREW")).status == 403)
        #expect(fixture.admit(try post("/callbacks/CarrierService", method: "BREW"), from: "198.51.100.7").status == 501)
    }
}

@Suite struct AdminRoutingTests {
    private func answer(_ request: HTTPRequest) -> HTTPResponse? {
        let handler = AdminHandler(
            metrics: ListenerMetrics(services: ["CarrierService"]),
            probes: .init(isServing: { true }, isStoreWritable: { true }, isRegistered: nil))
        let response = Mutex<HTTPResponse?>(nil)
        handler.handle(
            request, context: HTTPRequestContext(connectionID: 1, remoteAddress: "127.0.0.1", remotePort: 1),
            responder: HTTPResponder { answer in response.withLock { $0 = answer } })
        return response.withLock { $0 }
    }

    @Test func absoluteFormIsRoutedOnItsPath() throws {
        let ready = answer(try parsedRequest("GET http://127.0.0.1:9090/readyz HTTP/1.1\r\nHost: 127.0.0.1:9090\r\n\r\n"))
        #expect(ready?.status == .ok)
        let health = answer(try parsedRequest("GET http://localhost/healthz?verbose HTTP/1.1\r\nHost: localhost\r\n\r\n"))
        #expect(health?.status == .ok)
    }

    @Test func methodsOtherThanGETAndHEAD() throws {
        let post = answer(try parsedRequest("POST /healthz HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"))
        #expect(post?.status == .methodNotAllowed)
        #expect(post?.headers["Allow"] == "GET, HEAD")
        let brew = answer(try parsedRequest("BREW /healthz HTTP/1.1\r\nHost: h\r\n\r\n"))
        #expect(brew?.status == .notImplemented)
    }
}
