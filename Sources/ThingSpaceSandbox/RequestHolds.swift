// A fault seam for concurrency tests: hold the answers to the next N
// requests of a route until all N are open at once, then answer them
// together. Whether N requests through one client were ever in flight at
// the same time is then a count (`maxHeldAtOnce`), not a timing.
import Dispatch
import HTTP1
import HTTPServer
import Synchronization

final class RequestHolds: Sendable {
    private struct Hold {
        var id: UInt64
        var remaining: Int
        var timeout: Duration
        var held: [(responder: HTTPResponder, response: HTTPResponse)] = []
    }

    private struct State {
        var nextID: UInt64 = 0
        var holds: [SandboxRoute: Hold] = [:]
        var maxHeld: [SandboxRoute: Int] = [:]
    }

    private let state = Mutex(State())

    func holdNext(_ route: SandboxRoute, count: Int, timeout: Duration) {
        let released: [(responder: HTTPResponder, response: HTTPResponse)] = state.withLock { state in
            state.nextID += 1
            let previous = state.holds[route]?.held ?? []
            state.holds[route] = count > 0 ? Hold(id: state.nextID, remaining: count, timeout: timeout) : nil
            state.maxHeld[route] = 0
            return previous
        }
        for (responder, response) in released { responder.respond(response) }
    }

    func maxHeldAtOnce(_ route: SandboxRoute) -> Int { state.withLock { $0.maxHeld[route] ?? 0 } }

    /// Answers now, or holds the answer if `route` is being held.
    func respond(_ route: SandboxRoute?, _ response: HTTPResponse, with responder: HTTPResponder) {
        enum Decision {
            case now, held
            case release([(responder: HTTPResponder, response: HTTPResponse)])
            case first(UInt64, Duration)
        }
        let decision: Decision = state.withLock { state in
            guard let route, var hold = state.holds[route], hold.remaining > 0 else { return .now }
            hold.remaining -= 1
            hold.held.append((responder, response))
            state.maxHeld[route] = max(state.maxHeld[route] ?? 0, hold.held.count)
            if hold.remaining == 0 {
                state.holds[route] = nil
                return .release(hold.held)
            }
            state.holds[route] = hold
            return hold.held.count == 1 ? .first(hold.id, hold.timeout) : .held
        }
        switch decision {
        case .now:
            responder.respond(response)
        case .held:
            break
        case let .release(all):
            for (responder, response) in all { responder.respond(response) }
        case let .first(id, timeout):
            // Never hang a test that fails: after `timeout`, answer what is held and stop holding.
            let (seconds, attoseconds) = timeout.components
            let nanoseconds = Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)
            DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(nanoseconds)) { [self] in
                let late: [(responder: HTTPResponder, response: HTTPResponse)] = state.withLock { state in
                    guard let route, let hold = state.holds[route], hold.id == id else { return [] }
                    state.holds[route] = nil
                    return hold.held
                }
                for (responder, response) in late { responder.respond(response) }
            }
        }
    }
}
