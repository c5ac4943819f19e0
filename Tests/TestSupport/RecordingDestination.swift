import Dispatch
import Foundation
import HTTP1
import HTTPServer
import Logging
import Synchronization

/// A destination written for the test: a real HTTP server on loopback that records every request
/// and answers as `answer` says (status, headers, or never: the request hangs until the server stops).
public final class RecordingDestination: Sendable {
    public struct Received: Sendable {
        public var id: String
        public var timestamp: String
        public var signature: String
        public var userAgent: String
        public var contentType: String
        public var body: [UInt8]
        public var arrivedAt: ContinuousClock.Instant
        public var callbackID: Int64 { Int64(id) ?? -1 }
        public var bodyText: String { String(decoding: body, as: UTF8.self) }
    }

    public enum Answer: Sendable {
        case status(Int, headers: [(String, String)] = [])
        /// 200 after this long: a slow receiver, behind which a backlog builds.
        case slow(Duration)
        case hang
    }

    private let server: HTTPServer
    private let received = Collector<Received>()
    public let port: Int

    public init(_ answer: @escaping @Sendable (Received, _ attempt: Int) -> Answer = { _, _ in .status(204) }) throws {
        var configuration = HTTPServerConfiguration()
        configuration.port = 0
        configuration.ioQueueCount = 2
        configuration.idleTimeout = .seconds(60)
        let received = self.received
        server = HTTPServer(
            configuration: configuration,
            handler: HTTPClosureHandler { request, _, responder in
                let headers = request.head.headers
                let message = Received(
                    id: headers["webhook-id"] ?? "", timestamp: headers["webhook-timestamp"] ?? "",
                    signature: headers["webhook-signature"] ?? "", userAgent: headers["User-Agent"] ?? "",
                    contentType: headers["Content-Type"] ?? "", body: request.body, arrivedAt: .now)
                let attempt = received.appendAndCount(message) { $0.id == message.id }
                switch answer(message, attempt) {
                case .status(let code, let extra):
                    responder.respond(
                        HTTPResponse(status: HTTPStatus(code: code, reason: "Test"), headers: HTTPHeaders(extra), body: []))
                case .slow(let delay):
                    DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(delay / .milliseconds(1)))) {
                        responder.respond(HTTPResponse(status: .ok))
                    }
                case .hang:
                    break
                }
            }, logger: Logger(label: "receiver") { _ in SwiftLogNoOpLogHandler() })
        try server.start()
        port = server.localPort ?? -1
    }

    deinit {
        let done = DispatchSemaphore(value: 0)
        server.shutdown(gracePeriod: .zero) { done.signal() }
        done.wait()
    }

    public var url: String { "http://127.0.0.1:\(port)/hooks" }
    public var all: [Received] { received.values }
    /// Callback ids in the order they arrived.
    public var ids: [Int64] { all.map(\.callbackID) }
}

extension Collector where Value == RecordingDestination.Received {
    /// Appends, then counts the values (the new one included) that `matching` accepts.
    fileprivate func appendAndCount(_ value: Value, matching: (Value) -> Bool) -> Int {
        append(value)
        return values.count(where: matching)
    }
}
