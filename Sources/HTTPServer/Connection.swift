import HTTP1
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One accepted socket. Every member is touched only on `loop.queue`
/// (hence `@unchecked Sendable`, checked at each entry point); responders
/// from other queues hop there.
/// The loop reports readiness through `handle(events:)`; the connection
/// asks for reads while it can take requests and for writability only while
/// a write would block.
///
/// Requests are numbered in arrival order; responses wait in `owed` until
/// every earlier one has been serialized, so they leave in request order. A
/// streamed response stays at the front of `owed` while it streams (its head
/// sent, its pieces taken from its writer as they come), holding back the ones
/// after it until it ends.
final class Connection: @unchecked Sendable {
    let id: UInt64
    let fd: Int32
    let loop: IOLoop
    private let core: ServerCore
    private var settings: ConnectionSettings { core.settings }
    /// The bound of each stream's unsent bytes (read from any thread: constant).
    let maxStreamBacklog: Int

    private var parser: HTTPRequestParser
    private var state: ConnectionState
    private var context: HTTPRequestContext
    private var peer: sockaddr_storage

    /// The loop's token for this socket (nil until registered).
    private var token: UInt64?
    /// The readiness the loop watches for: `Epoll.readable` and/or `.writable`.
    private var watchedEvents: UInt32 = 0
    /// The socket's send buffer is full; waiting for writability.
    private var isWriteBlocked = false

    /// Serialized bytes not yet written, from `outboundOffset`.
    private var outbound: [UInt8] = []
    private var outboundOffset = 0
    private var hasUnwrittenOutput: Bool { outboundOffset < outbound.count }

    /// A request whose response is not serialized yet; `owed[0]` belongs to
    /// `nextResponseSequence`.
    private struct OwedResponse {
        var keepAlive: Bool
        var version: HTTPVersion
        var isHeadRequest: Bool
        var answer: HTTPAnswer?
    }

    /// The streamed response at the front of `owed`, once its head is serialized.
    private struct ActiveStream {
        var writer: HTTPBodyWriter
        var framing: HTTPResponseSerializer.StreamFraming
        /// A HEAD request, or a status without a body: the pieces are dropped.
        var isBodiless: Bool
    }
    private var activeStream: ActiveStream?
    private var owed: [OwedResponse] = []
    private var nextRequestSequence: UInt64 = 0
    private var nextResponseSequence: UInt64 = 0
    /// `nextResponseSequence` when the read phase was last updated: a change
    /// means responses went out, which restarts the idle clock.
    private var responsesAtLastPhaseUpdate: UInt64 = 0

    /// The request being read asked for `100 Continue`, not sent yet.
    private var continueOwed = false
    /// Guards against re-entering the parse loop from a handler that answers inline.
    private var isProcessingInput = false
    /// The server is shutting down: the request being read is the last.
    private var isDraining = false

    init(fd: Int32, id: UInt64, peer: sockaddr_storage, loop: IOLoop, core: ServerCore) {
        self.fd = fd
        self.id = id
        self.peer = peer
        self.loop = loop
        self.core = core
        self.maxStreamBacklog = core.settings.maxStreamBacklog
        self.parser = HTTPRequestParser(limits: core.settings.limits)
        self.state = ConnectionState(now: monotonicNanoseconds())
        self.context = HTTPRequestContext(connectionID: id, remoteAddress: "", remotePort: 0)
    }

    // MARK: Lifecycle

    /// Registers with the loop and starts reading. On `loop.queue`.
    func start() {
        loop.checkConfined()
        let (address, port) = Socket.describe(peer)
        context.remoteAddress = address
        context.remotePort = port
        guard let token = loop.register(self, fd: fd, events: Epoll.readable) else {
            log(.debug, "connection refused: cannot watch the socket", ["error": "\(HTTPServerError.describe(errno))"])
            state.close()
            closeDescriptor()
            return
        }
        self.token = token
        watchedEvents = Epoll.readable
        log(.trace, "connection opened", ["connection.remote": "\(address):\(port)"])
        if core.isDraining.load(ordering: .relaxed) {
            terminate(reason: "server is shutting down")
        }
    }

    /// Readiness reported by the loop.
    func handle(events: UInt32) {
        loop.checkConfined()
        if events & (Epoll.error | Epoll.hangUp) != 0 {
            // Reset, or both directions shut down: nothing more can be delivered.
            terminate(reason: events & Epoll.error != 0 ? "connection reset" : "peer hung up")
            return
        }
        if events & Epoll.writable != 0 { writable() }
        if events & Epoll.readable != 0 { readable() }
    }

    /// Closes at once. `abort` discards unsent bytes with a reset (peer not
    /// reading, forced shutdown) instead of leaving them to the kernel. The
    /// producers of streams still owed hear `streamEnd`.
    func terminate(reason: String, abort: Bool = false, streamEnd: HTTPStreamEnd = .peerClosed) {
        loop.checkConfined()
        guard state.lifecycle != .closed else { return }
        log(.debug, "connection closed", ["connection.close_reason": "\(reason)"])
        state.close()
        for item in owed {
            if case .stream(_, let writer) = item.answer { writer.connectionEnded(streamEnd) }
        }
        activeStream = nil
        if let token { loop.unregister(fd: fd, token: token) }
        token = nil
        watchedEvents = 0
        if abort {
            var linger = linger(l_onoff: 1, l_linger: 0)
            _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
        }
        owed = []
        outbound = []
        outboundOffset = 0
        parser = HTTPRequestParser(limits: settings.limits)
        closeDescriptor()
    }

    private func closeDescriptor() {
        _ = close(fd)
        core.connectionClosed()
    }

    /// Shutdown began: close if idle, otherwise make the request in progress the last.
    func beginDrain() {
        loop.checkConfined()
        isDraining = true
        guard state.isServing else {
            endStreamsForShutdown()
            return
        }
        let midRequest = !parser.isIdle || parser.bufferedByteCount > 0
        if owed.isEmpty && !hasUnwrittenOutput && !midRequest {
            terminate(reason: "server is shutting down (idle)")
        } else if !owed.isEmpty || hasUnwrittenOutput {
            finishAfterOwedResponses()
        }
        // Otherwise a request is arriving; `dispatch` makes it the last.
        endStreamsForShutdown()
    }

    /// Streams end cleanly at shutdown: what their producers wrote goes out, then the last chunk.
    private func endStreamsForShutdown() {
        var ended = false
        for item in owed {
            if case .stream(_, let writer) = item.answer {
                writer.serverEnds(.shutdown)
                ended = true
            }
        }
        if ended { writeReadyResponses() }
    }

    /// Runs every sweep of the loop: enforces the deadlines.
    func checkTimeouts(now: UInt64) {
        loop.checkConfined()
        guard let action = state.overdue(at: now, settings: settings) else { return }
        switch action {
        case .close(let reason):
            terminate(reason: reason)
        case .abort(let reason):
            terminate(reason: reason, abort: true, streamEnd: .peerTooSlow)
        case .requestTimeout(let reason):
            reject(.requestTimeout, reason: reason)
        }
    }

    // MARK: Reading

    private func readable() {
        let buffer = loop.readBuffer
        // Bounded: a fast sender cannot monopolize the queue.
        for _ in 0..<4 {
            guard watchedEvents & Epoll.readable != 0 else { return }
            let count = read(fd, buffer.baseAddress, buffer.count)
            if count > 0 {
                if state.lifecycle == .lingering || (!state.isServing && activeStream != nil) {
                    // Discarded: lingering, or reading only to notice a stream's reader leaving.
                    if count < buffer.count { return }
                    continue
                }
                parser.append(UnsafeRawBufferPointer(start: buffer.baseAddress, count: count))
                processInput()
                if count < buffer.count { return }
            } else if count == 0 {
                peerClosedInput()
                return
            } else {
                let code = errno
                switch code {
                case EINTR: continue
                case EAGAIN, EWOULDBLOCK: return
                default:
                    terminate(reason: "read failed: \(HTTPServerError.describe(code))")
                    return
                }
            }
        }
    }

    /// Parses what is buffered and hands complete requests to the handler,
    /// up to the pipelining limit.
    private func processInput() {
        guard !isProcessingInput else { return }
        isProcessingInput = true
        defer { isProcessingInput = false }
        while state.isServing && owed.count < settings.maxPipelinedRequests {
            let event: HTTPParserEvent?
            do {
                event = try parser.next()
            } catch {
                reject(error.status, reason: "invalid request: \(error)")
                return
            }
            guard let event else { break }
            switch event {
            case .head(let head):
                continueOwed = head.expectation == .continue100 && head.version.minor >= 1
            case .request(let request):
                continueOwed = false
                dispatch(request)
            }
        }
        if appendContinueIfDue() { flush() }
        guard state.isServing else { return }
        updateReadPhase()
        updateInterest()
    }

    private func dispatch(_ request: HTTPRequest) {
        let sequence = nextRequestSequence
        nextRequestSequence += 1
        let keepAlive = request.head.keepAlive && !isDraining
        owed.append(
            OwedResponse(
                keepAlive: keepAlive, version: request.head.version,
                isHeadRequest: request.head.method == "HEAD", answer: nil))
        if !keepAlive { state.finish(after: sequence) }
        core.handler.handle(request, context: context, responder: HTTPResponder(connection: self, sequence: sequence))
    }

    /// Answers an unusable request (parse error, timeout) and closes after it.
    private func reject(_ status: HTTPStatus, reason: String) {
        guard state.isServing else { return }
        log(.debug, "request rejected", ["http.status": "\(status.code)", "rejection.reason": "\(reason)"])
        let sequence = nextRequestSequence
        nextRequestSequence += 1
        let response = HTTPResponse(
            status: status, headers: ["Content-Type": "text/plain; charset=utf-8"],
            body: Array("\(status.code) \(status.reason)\n".utf8))
        owed.append(OwedResponse(keepAlive: false, version: .http1_1, isHeadRequest: false, answer: .whole(response)))
        continueOwed = false
        state.finish(after: sequence)
        updateInterest()
        writeReadyResponses()
    }

    /// The peer shut down its sending side.
    private func peerClosedInput() {
        switch state.lifecycle {
        case .lingering:
            terminate(reason: "peer closed")
        case .serving:
            let midRequest = !parser.isIdle || parser.bufferedByteCount > 0
            if midRequest {
                terminate(reason: "peer closed mid-request")
            } else if hasOwedStream {
                // A stream's reader closing is the end of it (as most servers take a FIN); nobody
                // half-closes to read an endless body.
                terminate(reason: "peer closed during a streamed response")
            } else if owed.isEmpty && !hasUnwrittenOutput {
                terminate(reason: "peer closed")
            } else {
                // Half-close after sending requests: answer them, then close.
                finishAfterOwedResponses()
            }
        case .finishing:
            if hasOwedStream {
                terminate(reason: "peer closed during a streamed response")
            } else {
                updateInterest()
            }
        case .closed:
            updateInterest()
        }
    }

    private var hasOwedStream: Bool {
        owed.contains { if case .stream = $0.answer { true } else { false } }
    }

    private func finishAfterOwedResponses() {
        guard nextRequestSequence > 0 else { return }
        state.finish(after: nextRequestSequence - 1)
        updateInterest()
        if owed.isEmpty && !hasUnwrittenOutput { startLingering() }
    }

    private func updateReadPhase() {
        let phase: ReadPhase
        if parser.isIdle && parser.bufferedByteCount == 0 {
            if !owed.isEmpty || hasUnwrittenOutput {
                phase = .awaitingResponses
            } else {
                phase = nextRequestSequence == 0 ? .fresh : .idle
            }
        } else if owed.count >= settings.maxPipelinedRequests {
            phase = .awaitingResponses
        } else {
            phase = parser.isReadingBody ? .body : .head
        }
        let activity = responsesAtLastPhaseUpdate != nextResponseSequence
        responsesAtLastPhaseUpdate = nextResponseSequence
        state.enterReadPhase(phase, activity: activity, now: monotonicNanoseconds)
    }

    /// Reads only while serving below the pipelining limit with writes
    /// flowing, or while lingering; waits for writability only while blocked.
    private func updateInterest() {
        guard let token else { return }
        var wanted: UInt32 = 0
        switch state.lifecycle {
        case .serving:
            if isWriteBlocked {
                wanted = Epoll.writable
            } else if owed.count < settings.maxPipelinedRequests {
                wanted = Epoll.readable
            }
        case .finishing:
            if isWriteBlocked {
                wanted = Epoll.writable
            } else if activeStream != nil {
                wanted = Epoll.readable  // the peer's close ends the stream
            }
        case .lingering:
            wanted = Epoll.readable
        case .closed:
            return
        }
        guard wanted != watchedEvents else { return }
        guard loop.setEvents(wanted, fd: fd, token: token) else {
            terminate(reason: "cannot watch the socket: \(HTTPServerError.describe(errno))")
            return
        }
        watchedEvents = wanted
    }

    // MARK: Writing

    /// Takes the handler's answer for request `sequence`. On `loop.queue`.
    func receive(_ answer: HTTPAnswer, sequence: UInt64) {
        loop.checkConfined()
        guard state.lifecycle != .closed, sequence >= nextResponseSequence, sequence < nextRequestSequence else {
            // The connection is gone, or this request was already answered.
            if case .stream(_, let writer) = answer { writer.connectionEnded(.peerClosed) }
            return
        }
        let index = Int(sequence - nextResponseSequence)
        guard owed[index].answer == nil else {  // answered twice
            if case .stream(_, let writer) = answer { writer.connectionEnded(.peerClosed) }
            return
        }
        owed[index].answer = answer
        if isDraining, case .stream(_, let writer) = answer { writer.serverEnds(.shutdown) }
        writeReadyResponses()
    }

    /// The writer of the stream for request `sequence` has pieces or its end. On `loop.queue`.
    func pumpStream(sequence: UInt64) {
        loop.checkConfined()
        // Not streaming yet (an earlier response is still out) or gone: its turn takes the pieces.
        guard activeStream != nil, sequence == nextResponseSequence, state.lifecycle != .closed else { return }
        writeReadyResponses()
    }

    /// The stream for request `sequence` holds more than its bound unsent. On `loop.queue`.
    func abortStream(sequence: UInt64) {
        loop.checkConfined()
        guard state.lifecycle != .closed, sequence >= nextResponseSequence, sequence < nextRequestSequence else { return }
        terminate(
            reason: "streamed response backlog over \(maxStreamBacklog) bytes: peer not reading", abort: true, streamEnd: .peerTooSlow)
    }

    /// Serializes every response whose predecessors are out, then writes. A stream at the front
    /// sends its head once, then whatever its writer holds; it leaves the front when it ends.
    private func writeReadyResponses() {
        guard let first = owed.first, first.answer != nil else { return }
        while let next = owed.first, let answer = next.answer {
            switch answer {
            case .whole(let response):
                let keepAlive = next.keepAlive && !state.isLast(nextResponseSequence)
                let start = outbound.count
                HTTPResponseSerializer.serialize(response, version: next.version, keepAlive: keepAlive, into: &outbound)
                if next.isHeadRequest && Self.hasBody(response.status) {
                    // Same head as for GET (Content-Length included), no body.
                    outbound.removeLast(min(response.body.count, outbound.count - start))
                }
                owed.removeFirst()
                nextResponseSequence += 1
            case .stream(let head, let writer):
                if activeStream == nil { startStream(head, writer, next) }
                guard pumpActiveStream() else {
                    flush()
                    return
                }
            }
        }
        _ = appendContinueIfDue()
        flush()
    }

    private static func hasBody(_ status: HTTPStatus) -> Bool {
        !(100...199).contains(status.code) && status.code != 204 && status.code != 304
    }

    /// The stream's head goes out; a response without a body ends at once.
    private func startStream(_ head: HTTPResponse, _ writer: HTTPBodyWriter, _ owed: OwedResponse) {
        let framing = HTTPResponseSerializer.streamFraming(for: owed.version)
        let keepAlive = owed.keepAlive && !state.isLast(nextResponseSequence)
        HTTPResponseSerializer.serializeStreamHead(head, version: owed.version, keepAlive: keepAlive, framing: framing, into: &outbound)
        let bodiless = owed.isHeadRequest || !Self.hasBody(head.status)
        if bodiless {
            writer.serverEnds(.finished)
        } else if framing == .untilClose {
            state.finish(after: nextResponseSequence)  // the close is the end of the body
        }
        activeStream = ActiveStream(writer: writer, framing: framing, isBodiless: bodiless)
    }

    /// Moves the active stream's pieces to `outbound`; true when the stream ended (its last chunk
    /// is queued and it left the front of `owed`).
    private func pumpActiveStream() -> Bool {
        guard let active = activeStream else { return false }
        let (pieces, closing) = active.writer.takePending()
        if !active.isBodiless {
            for piece in pieces { HTTPResponseSerializer.appendChunk(piece, framing: active.framing, into: &outbound) }
        }
        guard closing else { return false }
        if active.framing == .chunked && !active.isBodiless { outbound.append(contentsOf: HTTPResponseSerializer.lastChunk) }
        active.writer.reportUnsent(0)
        activeStream = nil
        owed.removeFirst()
        nextResponseSequence += 1
        return true
    }

    /// `100 Continue` goes out only after every earlier response, and only
    /// while the body is still to come.
    private func appendContinueIfDue() -> Bool {
        guard continueOwed, owed.isEmpty, state.isServing, parser.isReadingBody else { return false }
        continueOwed = false
        outbound.append(contentsOf: HTTPResponseSerializer.continue100)
        return true
    }

    private func flush() {
        switch state.lifecycle {
        case .serving, .finishing: break
        case .lingering, .closed: return
        }
        let startOffset = outboundOffset
        while outboundOffset < outbound.count {
            let written = outbound.withUnsafeBytes { bytes in
                send(fd, bytes.baseAddress! + outboundOffset, bytes.count - outboundOffset, Int32(MSG_NOSIGNAL))
            }
            if written > 0 {
                outboundOffset += written
                continue
            }
            let code = written == 0 ? EAGAIN : errno
            switch code {
            case EINTR:
                continue
            case EAGAIN, EWOULDBLOCK:
                state.writeBlocked(progressed: outboundOffset > startOffset, now: monotonicNanoseconds())
                isWriteBlocked = true
                activeStream?.writer.reportUnsent(outbound.count - outboundOffset)
                updateInterest()
                return
            default:
                terminate(reason: "write failed: \(HTTPServerError.describe(code))")
                return
            }
        }
        // Everything is out: keep a small buffer for the next response.
        if outbound.capacity > 64 * 1024 {
            outbound = []
        } else {
            outbound.removeAll(keepingCapacity: true)
        }
        outboundOffset = 0
        activeStream?.writer.reportUnsent(0)
        state.writeDrained()
        if isWriteBlocked {
            isWriteBlocked = false
            updateInterest()
        }
        responsesWritten()
    }

    private func responsesWritten() {
        if case .finishing = state.lifecycle {
            if owed.isEmpty && state.isLast(nextResponseSequence &- 1) && nextResponseSequence > 0 {
                startLingering()
            }
            return
        }
        guard state.isServing else { return }
        if isProcessingInput {
            return  // the parse loop that called the handler carries on
        }
        // Buffered pipelined requests may now fit under the limit.
        processInput()
    }

    private func writable() {
        guard isWriteBlocked, state.lifecycle != .closed else { return }
        flush()
    }

    /// Everything owed is written: send FIN, then read and discard until the
    /// peer closes too (or the linger deadline passes).
    private func startLingering() {
        state.startLingering(now: monotonicNanoseconds())
        _ = shutdown(fd, Int32(SHUT_WR))
        parser = HTTPRequestParser(limits: settings.limits)
        updateInterest()
    }

    // MARK: Logging

    private func log(
        _ level: Logger.Level, _ message: @autoclosure () -> Logger.Message,
        _ metadata: @autoclosure () -> Logger.Metadata = [:]
    ) {
        let logger = core.logger
        guard logger.logLevel <= level else { return }
        var metadata = metadata()
        metadata["connection.id"] = "\(id)"
        logger.log(level: level, message(), metadata: metadata)
    }
}
