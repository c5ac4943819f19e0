import Dispatch
public import HTTP1

/// Serves requests. Called on the connection's I/O queue: do little there, or
/// hop elsewhere and answer later through the responder.
public protocol HTTPRequestHandler: Sendable {
    func handle(_ request: HTTPRequest, context: HTTPRequestContext, responder: HTTPResponder)
}

/// Answers one request exactly once, from any thread or queue, at any later
/// time. A second answer is ignored; an answer after the connection closed is
/// discarded. Responses on one connection leave in request order whatever
/// order they are given in.
public struct HTTPResponder: Sendable {
    private enum Target: Sendable {
        case connection(Connection, sequence: UInt64)
        case closure(@Sendable (HTTPResponse) -> Void)
    }

    private let target: Target

    init(connection: Connection, sequence: UInt64) {
        target = .connection(connection, sequence: sequence)
    }

    /// A responder that passes the response to `deliver`: for driving a
    /// handler without a server. `deliver` sees every call, duplicates included.
    public init(_ deliver: @escaping @Sendable (HTTPResponse) -> Void) {
        target = .closure(deliver)
    }

    public func respond(_ response: HTTPResponse) {
        switch target {
        case .connection(let connection, let sequence):
            let loop = connection.loop
            if loop.isCurrent {
                connection.receive(response, sequence: sequence)
            } else {
                loop.deliver(response, to: connection, sequence: sequence)
            }
        case .closure(let deliver):
            deliver(response)
        }
    }
}

/// A handler made of a closure, for small servers and tests.
public struct HTTPClosureHandler: HTTPRequestHandler {
    private let body: @Sendable (HTTPRequest, HTTPRequestContext, HTTPResponder) -> Void

    public init(_ body: @escaping @Sendable (HTTPRequest, HTTPRequestContext, HTTPResponder) -> Void) {
        self.body = body
    }

    public func handle(_ request: HTTPRequest, context: HTTPRequestContext, responder: HTTPResponder) {
        body(request, context, responder)
    }
}
