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
/// every earlier one has been serialized, so they leave in request order.
final class Connection: @unchecked Sendable {
    let id: UInt64
    let fd: Int32
    let loop: IOLoop
    private let core: ServerCore
    private var settings: ConnectionSettings { core.settings }

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
        var response: HTTPResponse?
    }
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
    /// reading, forced shutdown) instead of leaving them to the kernel.
    func terminate(reason: String, abort: Bool = false) {
        loop.checkConfined()
        guard state.lifecycle != .closed else { return }
        log(.debug, "connection closed", ["connection.close_reason": "\(reason)"])
        state.close()
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
        guard state.isServing else { return }
        let midRequest = !parser.isIdle || parser.bufferedByteCount > 0
        if owed.isEmpty && !hasUnwrittenOutput && !midRequest {
            terminate(reason: "server is shutting down (idle)")
        } else if !owed.isEmpty || hasUnwrittenOutput {
            finishAfterOwedResponses()
        }
        // Otherwise a request is arriving; `dispatch` makes it the last.
    }

    /// Runs every sweep of the loop: enforces the deadlines.
    func checkTimeouts(now: UInt64) {
        loop.checkConfined()
        guard let action = state.overdue(at: now, settings: settings) else { return }
        switch action {
        case .close(let reason):
            terminate(reason: reason)
        case .abort(let reason):
            terminate(reason: reason, abort: true)
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
                if state.lifecycle == .lingering {
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
                isHeadRequest: request.head.method == "HEAD", response: nil))
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
        owed.append(OwedResponse(keepAlive: false, version: .http1_1, isHeadRequest: false, response: response))
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
            } else if owed.isEmpty && !hasUnwrittenOutput {
                terminate(reason: "peer closed")
            } else {
                // Half-close after sending requests: answer them, then close.
                finishAfterOwedResponses()
            }
        case .finishing, .closed:
            updateInterest()
        }
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
            if isWriteBlocked { wanted = Epoll.writable }
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
    func receive(_ response: HTTPResponse, sequence: UInt64) {
        loop.checkConfined()
        guard state.lifecycle != .closed, sequence >= nextResponseSequence, sequence < nextRequestSequence else {
            return  // the connection is gone, or this request was already answered
        }
        let index = Int(sequence - nextResponseSequence)
        guard owed[index].response == nil else { return }  // answered twice
        owed[index].response = response
        writeReadyResponses()
    }

    /// Serializes every response whose predecessors are out, then writes.
    private func writeReadyResponses() {
        guard let first = owed.first, first.response != nil else { return }
        while let next = owed.first, let response = next.response {
            let keepAlive = next.keepAlive && !state.isLast(nextResponseSequence)
            let start = outbound.count
            HTTPResponseSerializer.serialize(response, version: next.version, keepAlive: keepAlive, into: &outbound)
            let code = response.status.code
            if next.isHeadRequest && !(100...199).contains(code) && code != 204 && code != 304 {
                // Same head as for GET (Content-Length included), no body.
                outbound.removeLast(min(response.body.count, outbound.count - start))
            }
            owed.removeFirst()
            nextResponseSequence += 1
        }
        _ = appendContinueIfDue()
        flush()
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
