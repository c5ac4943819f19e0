// A response body produced over time (Server-Sent Events, long downloads): the head goes out
// when the response's turn comes, the pieces as they are written, from any thread. The writer
// is the producer's side; the connection takes what it wrote on its own queue. What one stream
// may hold unsent is bounded: a peer that stops reading is disconnected, never buffered for.
import Dispatch
import Synchronization

/// Why a streamed response ended; the producer hears it once, through `HTTPBodyWriter.onEnd`.
public enum HTTPStreamEnd: Sendable, Hashable, CustomStringConvertible {
    /// The producer called `finish()`.
    case finished
    /// The peer closed or reset the connection, or a write to it failed.
    case peerClosed
    /// The peer did not read: the stream's backlog passed its bound, or the write timeout did.
    case peerTooSlow
    /// The server is shutting down: the stream was ended cleanly (or, past the grace period, cut).
    case shutdown

    public var description: String {
        switch self {
        case .finished: "finished"
        case .peerClosed: "peer closed"
        case .peerTooSlow: "peer not reading"
        case .shutdown: "server shutting down"
        }
    }
}

/// The producer's side of a streamed response (`HTTPResponder.stream`). Every member may be
/// used from any thread. Pieces leave in the order written, each as one chunk.
public final class HTTPBodyWriter: Sendable {
    enum Sink: Sendable {
        /// A server connection: `sequence` is the request's number on it.
        case connection(Connection, sequence: UInt64)
        /// A responder made of closures (tests): each piece, then nil at the end.
        case closure(@Sendable ([UInt8]?) -> Void)
    }

    private struct State {
        var pending: [[UInt8]] = []
        var pendingBytes = 0
        /// No more pieces: the producer finished, or the server ends the stream (shutdown).
        var closing = false
        var end: HTTPStreamEnd?
        var onEnd: [@Sendable (HTTPStreamEnd) -> Void] = []
        /// A hop to the connection's queue is on its way: later pieces ride along.
        var pumpScheduled = false
    }

    /// Bytes written and not yet sent (waiting here or in the connection's buffer) above which
    /// the peer counts as not reading: the connection is closed.
    public let maxBacklog: Int
    private let sink: Sink
    private let state = Mutex(State())
    /// Bytes of this stream in the connection's buffer not yet accepted by the socket.
    private let unsentInConnection = Atomic<Int>(0)

    init(sink: Sink, maxBacklog: Int) {
        self.sink = sink
        self.maxBacklog = maxBacklog
    }

    /// Whether pieces are still taken: neither finished nor ended by the peer or the server.
    public var isOpen: Bool { state.withLock { $0.end == nil } }

    /// Why the stream ended; nil while it is open.
    public var end: HTTPStreamEnd? { state.withLock { $0.end } }

    /// Bytes written and not yet accepted by the peer's socket (approximate while writes race).
    public var backlog: Int { state.withLock { $0.pendingBytes } + unsentInConnection.load(ordering: .relaxed) }

    /// Calls `handler` once when the stream ends (at once if it already has), on whichever thread
    /// ends it. Keep it short; it must not block.
    public func onEnd(_ handler: @escaping @Sendable (HTTPStreamEnd) -> Void) {
        let ended = state.withLock { state -> HTTPStreamEnd? in
            if let end = state.end { return end }
            state.onEnd.append(handler)
            return nil
        }
        if let ended { handler(ended) }
    }

    /// Queues `bytes` as the next piece; false (nothing queued) once the stream has ended. A piece
    /// that takes the backlog past `maxBacklog` ends the stream (`.peerTooSlow`) and closes the
    /// connection. Empty pieces are ignored.
    @discardableResult
    public func write(_ bytes: [UInt8]) -> Bool {
        enum Outcome {
            case refused, queued, schedule
            case overflow([@Sendable (HTTPStreamEnd) -> Void])
        }
        let outcome = state.withLock { state -> Outcome in
            guard state.end == nil, !state.closing else { return .refused }
            if bytes.isEmpty { return .queued }
            if state.pendingBytes + bytes.count + unsentInConnection.load(ordering: .relaxed) > maxBacklog {
                state.end = .peerTooSlow
                state.pending = []
                state.pendingBytes = 0
                defer { state.onEnd = [] }
                return .overflow(state.onEnd)
            }
            state.pending.append(bytes)
            state.pendingBytes += bytes.count
            if state.pumpScheduled { return .queued }
            state.pumpScheduled = true
            return .schedule
        }
        switch outcome {
        case .refused:
            return false
        case .queued:
            return true
        case .schedule:
            pump()
            return true
        case .overflow(let handlers):
            for handler in handlers { handler(.peerTooSlow) }
            if case .connection(let connection, let sequence) = sink {
                connection.loop.queue.async { connection.abortStream(sequence: sequence) }
            }
            return false
        }
    }

    /// Ends the body after what was written (the last chunk follows it). Idempotent.
    public func finish() {
        let handlers = state.withLock { state -> [@Sendable (HTTPStreamEnd) -> Void]? in
            guard state.end == nil else { return nil }
            state.end = .finished
            state.closing = true
            state.pumpScheduled = true
            defer { state.onEnd = [] }
            return state.onEnd
        }
        guard let handlers else { return }
        for handler in handlers { handler(.finished) }
        pump()
    }

    private func pump() {
        switch sink {
        case .connection(let connection, let sequence):
            // Always a hop, even from the connection's queue: the connection may be mid-turn.
            connection.loop.queue.async { connection.pumpStream(sequence: sequence) }
        case .closure(let deliver):
            let (pieces, closing) = takePending()
            for piece in pieces { deliver(piece) }
            if closing { deliver(nil) }
        }
    }

    // MARK: The connection's side (on its queue)

    /// The pieces written since the last call, and whether the body ends after them.
    func takePending() -> (pieces: [[UInt8]], closing: Bool) {
        state.withLock { state in
            defer {
                state.pending = []
                state.pendingBytes = 0
                state.pumpScheduled = false
            }
            return (state.pending, state.closing)
        }
    }

    /// The connection's buffer holds `count` unsent bytes of this stream.
    func reportUnsent(_ count: Int) {
        unsentInConnection.store(count, ordering: .relaxed)
    }

    /// The server ends the stream cleanly (shutdown, or a response without a body): what was
    /// written goes out, then the end.
    func serverEnds(_ reason: HTTPStreamEnd) {
        let handlers = state.withLock { state -> [@Sendable (HTTPStreamEnd) -> Void] in
            state.closing = true
            guard state.end == nil else { return [] }
            state.end = reason
            defer { state.onEnd = [] }
            return state.onEnd
        }
        for handler in handlers { handler(reason) }
    }

    /// The connection closed: nothing more can be sent.
    func connectionEnded(_ reason: HTTPStreamEnd) {
        let handlers = state.withLock { state -> [@Sendable (HTTPStreamEnd) -> Void] in
            state.closing = true
            state.pending = []
            state.pendingBytes = 0
            guard state.end == nil else { return [] }
            state.end = reason
            defer { state.onEnd = [] }
            return state.onEnd
        }
        unsentInConnection.store(0, ordering: .relaxed)
        for handler in handlers { handler(reason) }
    }
}
