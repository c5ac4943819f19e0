// A real HTTP server on loopback (the project's HTTPServer) that records
// which connection each request came on and can hold its answers until a
// number of requests are open at once: concurrency becomes a count.
import Dispatch
import Foundation
import HTTP1
import HTTPServer
import Logging
import Synchronization

final class LoopbackServer: Sendable {
    struct Seen: Sendable {
        var connectionID: UInt64
        var method: String
        var target: String
        var headers: HTTPHeaders
        var body: [UInt8]
    }

    private struct State {
        var seen: [Seen] = []
        var held: [(HTTPResponder, HTTPResponse)] = []
        var maxOpen = 0
        var holding: Bool
    }

    private final class Shared: Sendable {
        let state: Mutex<State>
        init(_ initial: State) { state = Mutex(initial) }
    }

    private let server: HTTPServer
    private let shared: Shared

    /// - Parameters:
    ///   - holdUntil: answers are held until this many requests are open at
    ///     once, then all given together; once the count was reached (or
    ///     `timeout` after the first held request, so a failing test does not
    ///     hang) every later request is answered at once. 1: never hold.
    init(holdUntil target: Int = 1, timeout: Duration = .seconds(5)) throws {
        let shared = Shared(State(holding: target > 1))
        self.shared = shared
        var configuration = HTTPServerConfiguration()
        configuration.port = 0
        configuration.ioQueueCount = 2
        let logger = Logger(label: "loopback") { _ in SwiftLogNoOpLogHandler() }
        server = HTTPServer(
            configuration: configuration,
            handler: HTTPClosureHandler { request, context, responder in
                let seen = Seen(
                    connectionID: context.connectionID, method: request.head.method, target: request.head.target,
                    headers: request.head.headers, body: request.body)
                var headers: HTTPHeaders = ["Content-Type": "text/plain", "X-Seen-Method": request.head.method]
                if let retryAfter = request.head.headers["X-Answer-Retry-After"] { headers.add(name: "Retry-After", value: retryAfter) }
                let response = HTTPResponse(status: .ok, headers: headers, body: request.body.isEmpty ? Array("ok".utf8) : request.body)
                enum Next {
                    case answer
                    case hold(first: Bool)
                    case release([(HTTPResponder, HTTPResponse)])
                }
                let next: Next = shared.state.withLock { state in
                    state.seen.append(seen)
                    guard state.holding else {
                        state.maxOpen = max(state.maxOpen, 1)
                        return .answer
                    }
                    state.held.append((responder, response))
                    state.maxOpen = max(state.maxOpen, state.held.count)
                    guard state.held.count >= target else { return .hold(first: state.held.count == 1) }
                    state.holding = false
                    defer { state.held.removeAll() }
                    return .release(state.held)
                }
                switch next {
                case .answer:
                    responder.respond(response)
                case let .hold(first):
                    guard first else { break }
                    let (seconds, attoseconds) = timeout.components
                    let nanoseconds = Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)
                    DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(nanoseconds)) {
                        let late = shared.state.withLock { state in
                            state.holding = false
                            defer { state.held.removeAll() }
                            return state.held
                        }
                        for (responder, response) in late { responder.respond(response) }
                    }
                case let .release(all):
                    for (responder, response) in all { responder.respond(response) }
                }
            }, logger: logger)
        try server.start()
    }

    var url: String { "http://127.0.0.1:\(server.localPort ?? 0)" }
    var seen: [Seen] { shared.state.withLock { $0.seen } }
    /// The most requests open (received, not yet answered) at once.
    var maxOpen: Int { shared.state.withLock { $0.maxOpen } }

    func stop() {
        let done = DispatchSemaphore(value: 0)
        server.shutdown(gracePeriod: .milliseconds(200)) { done.signal() }
        _ = done.wait(timeout: .now() + .seconds(3))
    }
}
