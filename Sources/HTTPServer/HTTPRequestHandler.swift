import Dispatch
public import HTTP1

/// Serves requests. Called on the connection's I/O queue: do little there, or
/// hop elsewhere and answer later through the responder.
public protocol HTTPRequestHandler: Sendable {
    func handle(_ request: HTTPRequest, context: HTTPRequestContext, responder: HTTPResponder)
}

/// Answers one request exactly once, from any thread or queue, at any later
/// time: with a whole response (`respond`) or a streamed one (`stream`). A
/// second answer is ignored; an answer after the connection closed is
/// discarded. Responses on one connection leave in request order whatever
/// order they are given in; a stream holds back the responses after it until
/// it ends.
public struct HTTPResponder: Sendable {
    private enum Target: Sendable {
        case connection(Connection, sequence: UInt64)
        case closure(@Sendable (HTTPResponse) -> Void, streamed: (@Sendable ([UInt8]?) -> Void)?)
    }

    private let target: Target

    init(connection: Connection, sequence: UInt64) {
        target = .connection(connection, sequence: sequence)
    }

    /// A responder that passes the response to `deliver`: for driving a
    /// handler without a server. `deliver` sees every call, duplicates
    /// included; a streamed response's head comes to `deliver`, its pieces to
    /// `streamed` (then nil at its end).
    public init(_ deliver: @escaping @Sendable (HTTPResponse) -> Void, streamed: (@Sendable ([UInt8]?) -> Void)? = nil) {
        target = .closure(deliver, streamed: streamed)
    }

    public func respond(_ response: HTTPResponse) {
        switch target {
        case .connection(let connection, let sequence):
            let loop = connection.loop
            if loop.isCurrent {
                connection.receive(.whole(response), sequence: sequence)
            } else {
                loop.deliver(.whole(response), to: connection, sequence: sequence)
            }
        case .closure(let deliver, _):
            deliver(response)
        }
    }

    /// Answers with a body written later through the returned writer: `head`'s status and
    /// headers go out when the response's turn comes, with `Transfer-Encoding: chunked` (an
    /// HTTP/1.0 peer gets the body unframed and the connection closes after it); `head.body`,
    /// if any, is the first piece. Idle and read timeouts do not apply while it streams; the
    /// write timeout and the writer's backlog bound do. A graceful shutdown ends it cleanly.
    public func stream(_ head: HTTPResponse) -> HTTPBodyWriter {
        switch target {
        case .connection(let connection, let sequence):
            let writer = HTTPBodyWriter(sink: .connection(connection, sequence: sequence), maxBacklog: connection.maxStreamBacklog)
            if !head.body.isEmpty { writer.write(head.body) }
            var head = head
            head.body = []
            let loop = connection.loop
            if loop.isCurrent {
                connection.receive(.stream(head, writer), sequence: sequence)
            } else {
                loop.deliver(.stream(head, writer), to: connection, sequence: sequence)
            }
            return writer
        case .closure(let deliver, let streamed):
            var bare = head
            bare.body = []
            deliver(bare)
            let writer = HTTPBodyWriter(sink: .closure(streamed ?? { _ in }), maxBacklog: HTTPServerConfiguration().maxStreamBacklog)
            if !head.body.isEmpty { writer.write(head.body) }
            return writer
        }
    }
}

/// What a handler answered: a whole response, or the head of a stream and its writer.
enum HTTPAnswer: Sendable {
    case whole(HTTPResponse)
    case stream(HTTPResponse, HTTPBodyWriter)
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
