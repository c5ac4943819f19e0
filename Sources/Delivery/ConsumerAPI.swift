// The pull side of delivery: the user's applications read stored callbacks by cursor, wait for
// the one their request to ThingSpace will bring (a long poll on its requestId), or follow every
// new one as Server-Sent Events. Served on a port of its own by the strict HTTP server, behind
// bearer tokens.
//
// Threads: the handler is called on an I/O queue and only parses there. Store reads run one at a
// time on a serial queue of their own (a reader is one SQLite connection); waiting is async on
// the concurrency pool, which never sleeps a thread or blocks it on a lock held for a read. One
// task (the arrival hub) waits on the store for new callbacks and wakes every poll and stream
// that wants them. Everything is bounded: long polls and streams in number (503 beyond), a wait
// to 60 s, a response's size, what a stream holds unsent.
import CallbackStore
import Dispatch
import HTTP1
import HTTPServer
import JSON
import Logging
import Synchronization

public final class ConsumerAPIHandler: HTTPRequestHandler {
    /// How much the API takes on at once.
    public struct Limits: Sendable {
        /// Long polls (`wait` above 0) waiting at once; more get 503.
        public var maxLongPolls = 256
        /// Open streams; more get 503.
        public var maxStreams = 64
        /// A comment is sent on a stream that has had nothing else for this long.
        public var keepaliveInterval: Duration = .seconds(15)
        /// A response stops adding callbacks past this many bytes (at least one is always sent).
        public var maxResponseBytes = 8 << 20
        /// Callbacks read per store call (a page of `/v1/callbacks` may take several).
        public var readBatch = 64
        /// A stream reads no further while this many of its bytes are unsent (the peer is slow);
        /// the server cuts it at its own bound (HTTPServerConfiguration.maxStreamBacklog) or at the
        /// write timeout.
        public var streamHighWater = 256 << 10

        public init() {}
    }

    private let tokens: [ConsumerAPIToken]
    private let reader: any CallbackReader
    private let limits: Limits
    private let logger: Logger
    private let reads = DispatchQueue(label: "ConsumerAPI.reads")
    private let hub: ArrivalHub
    private let work = WorkRegistry()
    private let longPolls = Atomic<Int>(0)
    private let streams = Atomic<Int>(0)
    private let onLoadChange: (@Sendable (_ streams: Int, _ longPolls: Int) -> Void)?

    /// - Parameters:
    ///   - tokens: the accepted bearer tokens; empty refuses every request.
    ///   - reader: where callbacks are read.
    ///   - arrivals: the reader the hub waits on; give it a connection of its own (nil: `reader`).
    ///   - onLoadChange: hears the open streams and waiting long polls whenever either changes (a gauge).
    public init(
        tokens: [ConsumerAPIToken], reader: any CallbackReader, arrivals: (any CallbackReader)? = nil, limits: Limits = Limits(),
        logger: Logger, onLoadChange: (@Sendable (_ streams: Int, _ longPolls: Int) -> Void)? = nil
    ) {
        self.onLoadChange = onLoadChange
        self.tokens = tokens
        self.reader = reader
        self.limits = limits
        self.logger = logger
        self.hub = ArrivalHub(reader: arrivals ?? reader, logger: logger)
    }

    /// Starts waiting for new callbacks (before the port opens).
    public func start() { hub.start() }

    /// Answers every long poll now with what it has, finishes every stream, and stops the hub.
    /// Call before the server's graceful shutdown, so that no request waits out the grace period.
    public func stop() {
        work.stopAll()
        hub.stop()
    }

    /// Streams open now (for a gauge).
    public var openStreams: Int { streams.load(ordering: .relaxed) }
    /// Long polls waiting now.
    public var waitingLongPolls: Int { longPolls.load(ordering: .relaxed) }

    // MARK: Requests

    public func handle(_ request: HTTPRequest, context: HTTPRequestContext, responder: HTTPResponder) {
        let head = request.head
        guard authorized(head) else {
            logger.debug(
                "consumer API: request refused: no valid bearer token",
                metadata: ["connection.id": "\(context.connectionID)", "connection.remote": "\(context.remoteAddress)"])
            let error = head.headers["Authorization"] == nil ? "" : #", error="invalid_token""#
            responder.respond(
                Self.error(
                    ConsumerAPIRefusal(
                        status: .unauthorized, message: "a valid bearer token is required (Authorization: Bearer <token>)",
                        parameter: nil, headers: ["WWW-Authenticate": #"Bearer realm="thingspace-listener""# + error])))
            return
        }
        guard head.method == "GET" || head.method == "HEAD" else {
            let status: HTTPStatus = head.isKnownMethod ? .methodNotAllowed : .notImplemented
            responder.respond(
                Self.error(ConsumerAPIRefusal(status: status, message: "use GET", parameter: nil, headers: ["Allow": "GET, HEAD"])))
            return
        }
        let parsed: ConsumerAPIRequest
        do {
            parsed = try ConsumerAPIRequest(head: head)
        } catch {
            responder.respond(Self.error(error))
            return
        }
        switch parsed {
        case .callback(let id): one(id, responder)
        case .list(let query): list(query, responder)
        case .stream(let query): stream(query, responder)
        }
    }

    private func authorized(_ head: HTTPRequestHead) -> Bool {
        let values = head.headers.values(for: "Authorization")
        guard values.count == 1, let token = ConsumerAPIToken.bearer(values[0]) else { return false }
        return ConsumerAPIToken.accepts(token, among: tokens)
    }

    /// `GET /v1/callbacks/ID`
    private func one(_ id: Int64, _ responder: HTTPResponder) {
        reads.async { [reader] in
            do throws(CallbackStoreError) {
                guard let callback = try reader.callback(id: id) else {
                    responder.respond(
                        Self.error(ConsumerAPIRefusal(status: .notFound, message: "no callback with id \(id)", parameter: "id")))
                    return
                }
                responder.respond(Self.jsonResponse(callback.jsonObject()))
            } catch {
                responder.respond(Self.storeUnavailable(error))
            }
        }
    }

    /// `GET /v1/callbacks`: a page at once, or with `wait` the first page that holds anything.
    private func list(_ query: ConsumerAPIRequest.ListQuery, _ responder: HTTPResponder) {
        guard query.wait > .zero else {
            reads.async { [self] in
                do throws(CallbackStoreError) {
                    responder.respond(Self.listResponse(try collect(after: query.after, query.filter, limit: query.limit)))
                } catch {
                    responder.respond(Self.storeUnavailable(error))
                }
            }
            return
        }
        guard acquire(longPolls, limit: limits.maxLongPolls) else {
            responder.respond(Self.busy("too many long polls waiting; retry later"))
            return
        }
        let answered = Atomic<Bool>(false)
        let respond: @Sendable (HTTPResponse) -> Void = { response in
            if !answered.exchange(true, ordering: .relaxed) { responder.respond(response) }
        }
        work.run { [self] in
            defer { release(longPolls) }
            let deadline = ContinuousClock.now + query.wait
            var cursor = query.after
            while true {
                let from = cursor
                let result = await read { [self] () throws(CallbackStoreError) in try collect(after: from, query.filter, limit: query.limit)
                }
                switch result {
                case .failure(let error):
                    respond(Self.storeUnavailable(error))
                    return
                case .success(let page):
                    cursor = page.next
                    if page.count > 0 || ContinuousClock.now >= deadline || Task.isCancelled {
                        respond(Self.listResponse(page))
                        return
                    }
                }
                _ = await hub.wait(after: cursor, timeout: deadline - ContinuousClock.now)
            }
        }
    }

    /// `GET /v1/stream`: every callback after the cursor, then each new one, as events.
    private func stream(_ query: ConsumerAPIRequest.StreamQuery, _ responder: HTTPResponder) {
        guard acquire(streams, limit: limits.maxStreams) else {
            responder.respond(Self.busy("too many open streams; retry later"))
            return
        }
        let writer = responder.stream(
            HTTPResponse(
                status: .ok,
                headers: ["Content-Type": ServerSentEvents.contentType, "Cache-Control": "no-store", "X-Accel-Buffering": "no"],
                body: ServerSentEvents.retry(milliseconds: 1_000)))
        let limits = self.limits
        let task = work.run { [self] in
            defer { release(streams) }
            var cursor = query.after
            var lastWrite = ContinuousClock.now
            while writer.isOpen && !Task.isCancelled {
                // Read no further ahead of a slow peer than the high-water mark.
                if writer.backlog > limits.streamHighWater {
                    try? await Task.sleep(for: .milliseconds(20))
                    continue
                }
                let from = cursor
                let batch = await read { [self] () throws(CallbackStoreError) in try events(after: from, query.filter) }
                switch batch {
                case .failure(let error):
                    logger.warning("consumer API: a stream cannot read the store; retrying", metadata: ["error": "\(error)"])
                    try? await Task.sleep(for: .seconds(1))
                    continue
                case .success(let (bytes, next, full)):
                    cursor = next
                    if !bytes.isEmpty {
                        if !writer.write(bytes) { continue }  // ended: the loop stops
                        lastWrite = .now
                    }
                    if full { continue }  // catching up: read on at once
                }
                let quiet = ContinuousClock.now - lastWrite
                if quiet >= limits.keepaliveInterval {
                    writer.write(ServerSentEvents.comment("keepalive"))
                    lastWrite = .now
                    continue
                }
                _ = await hub.wait(after: cursor, timeout: limits.keepaliveInterval - quiet)
            }
            writer.finish()
        }
        // The peer gone, or the server stopping: the task stops waiting.
        writer.onEnd { _ in task.cancel() }
    }

    // MARK: Reading (on `reads`)

    /// A page of data objects after `after`, at most `limit` and about `maxResponseBytes`.
    private func collect(after: Int64, _ filter: CallbackFilter, limit: Int) throws(CallbackStoreError) -> EncodedPage {
        var page = EncodedPage(next: after)
        while page.count < limit {
            let wanted = min(limits.readBatch, limit - page.count)
            let read = try reader.page(after: page.next, matching: filter, limit: wanted)
            for callback in read.callbacks {
                let object = callback.jsonObject()
                if page.count > 0 && page.bytes.count + object.count > limits.maxResponseBytes {
                    return page  // `next` is the last one sent: the rest comes next time
                }
                if page.count > 0 { page.bytes.append(UInt8(ascii: ",")) }
                page.bytes += object
                page.count += 1
                page.next = callback.id
            }
            page.next = max(page.next, read.next)
            if read.callbacks.count < wanted { break }
        }
        return page
    }

    /// The events after `after` (one read batch), the cursor after them, and whether the batch was full.
    private func events(after: Int64, _ filter: CallbackFilter) throws(CallbackStoreError) -> ([UInt8], Int64, Bool) {
        let read = try reader.page(after: after, matching: filter, limit: limits.readBatch)
        var bytes: [UInt8] = []
        for callback in read.callbacks {
            bytes += ServerSentEvents.encode(id: String(callback.id), event: "callback", data: callback.jsonObject())
        }
        return (bytes, max(after, read.next), read.callbacks.count == limits.readBatch)
    }

    /// Runs `body` on `reads` and waits for it without holding a thread of the pool.
    private func read<Value: Sendable>(
        _ body: @escaping @Sendable () throws(CallbackStoreError) -> Value
    ) async -> Result<Value, CallbackStoreError> {
        await withCheckedContinuation { (done: CheckedContinuation<Result<Value, CallbackStoreError>, Never>) in
            reads.async { done.resume(returning: Result { () throws(CallbackStoreError) -> Value in try body() }) }
        }
    }

    private func acquire(_ counter: borrowing Atomic<Int>, limit: Int) -> Bool {
        if counter.add(1, ordering: .relaxed).newValue <= limit {
            reportLoad()
            return true
        }
        counter.subtract(1, ordering: .relaxed)
        return false
    }

    private func release(_ counter: borrowing Atomic<Int>) {
        counter.subtract(1, ordering: .relaxed)
        reportLoad()
    }

    private func reportLoad() {
        onLoadChange?(streams.load(ordering: .relaxed), longPolls.load(ordering: .relaxed))
    }

    // MARK: Responses

    /// Data objects joined with commas, and the cursor after them.
    struct EncodedPage: Sendable {
        var bytes: [UInt8] = []
        var count = 0
        var next: Int64
    }

    static func listResponse(_ page: EncodedPage) -> HTTPResponse {
        var json = JSONWriter(reservingCapacity: page.bytes.count + 32)
        json.beginObject()
        json.key("callbacks")
        json.beginArray()
        json.raw(page.bytes)
        json.endArray()
        json.key("next")
        json.integer(page.next)
        json.endObject()
        return jsonResponse(json.bytes)
    }

    static func jsonResponse(_ body: [UInt8]) -> HTTPResponse {
        HTTPResponse(status: .ok, headers: ["Content-Type": "application/json", "Cache-Control": "no-store"], body: body)
    }

    /// `{"error": message, "parameter": name}` with the refusal's status and headers.
    static func error(_ refusal: ConsumerAPIRefusal) -> HTTPResponse {
        var json = JSONWriter(reservingCapacity: refusal.message.utf8.count + 48)
        json.beginObject()
        json.key("error")
        json.string(refusal.message)
        if let parameter = refusal.parameter {
            json.key("parameter")
            json.string(parameter)
        }
        json.endObject()
        var response = HTTPResponse(status: refusal.status, headers: ["Content-Type": "application/json"], body: json.bytes)
        for field in refusal.headers { response.headers.add(name: field.name, value: field.value) }
        return response
    }

    static func busy(_ message: String) -> HTTPResponse {
        error(ConsumerAPIRefusal(status: .serviceUnavailable, message: message, parameter: nil, headers: ["Retry-After": "5"]))
    }

    static func storeUnavailable(_ failure: CallbackStoreError) -> HTTPResponse {
        error(
            ConsumerAPIRefusal(
                status: .serviceUnavailable, message: "the store cannot be read now; retry later", parameter: nil,
                headers: ["Retry-After": "5"]))
    }
}

/// One task that waits on the store for new callbacks, and wakes every poll and stream waiting
/// for them: the store is asked once however many wait.
final class ArrivalHub: Sendable {
    private let reader: any CallbackReader
    private let logger: Logger
    private let waiters = ArrivalWaiters()
    private let task = Mutex<Task<Void, Never>?>(nil)
    /// How long one wait on the store lasts before the hub asks again (it wakes on any arrival).
    static let storeWait: Duration = .seconds(5)

    init(reader: any CallbackReader, logger: Logger) {
        self.reader = reader
        self.logger = logger
    }

    func start() {
        let running = Task { [reader, waiters, logger] in
            var latest: Int64 = 0
            var failing = false
            while !Task.isCancelled {
                do throws(CallbackStoreError) {
                    _ = try await reader.waitForCallbacks(after: latest, timeout: Self.storeWait)
                    let highest = try reader.lastID()
                    if highest > latest {
                        latest = highest
                        waiters.stored(upTo: highest)
                    }
                    if failing {
                        failing = false
                        logger.notice("consumer API: reading the store again")
                    }
                } catch {
                    if !failing {
                        failing = true
                        logger.warning("consumer API: cannot wait for new callbacks; retrying", metadata: ["error": "\(error)"])
                    }
                    try? await Task.sleep(for: .seconds(1))
                }
            }
        }
        task.withLock { $0 = running }
    }

    func stop() {
        task.withLock { $0 }?.cancel()
    }

    /// Waits until a callback above `id` is known to be stored (true), `timeout` passes or the
    /// task is cancelled (false).
    func wait(after id: Int64, timeout: Duration) async -> Bool {
        guard timeout > .zero else { return waiters.latest > id }
        return await waiters.wait(after: id, timeout: timeout)
    }
}

/// The tasks of long polls and streams, so that a stop reaches every one.
final class WorkRegistry: Sendable {
    private struct State {
        var next: UInt64 = 0
        var running: [UInt64: Task<Void, Never>] = [:]
        var stopped = false
    }
    private let state = Mutex(State())

    /// Runs `body` in a task of its own (cancelled at once after `stopAll`).
    @discardableResult
    func run(_ body: @escaping @Sendable () async -> Void) -> Task<Void, Never> {
        // Registered before it can run (and remove itself).
        let (task, stopped) = state.withLock { state -> (Task<Void, Never>, Bool) in
            state.next += 1
            let key = state.next
            let task = Task { [self] in
                await body()
                _ = self.state.withLock { $0.running.removeValue(forKey: key) }
            }
            if !state.stopped { state.running[key] = task }
            return (task, state.stopped)
        }
        if stopped { task.cancel() }
        return task
    }

    func stopAll() {
        let tasks = state.withLock { state -> [Task<Void, Never>] in
            state.stopped = true
            return Array(state.running.values)
        }
        for task in tasks { task.cancel() }
    }
}
