// One destination's delivery loop, on a serial queue of its own: it feeds the ledger with the
// callbacks stored since its cursor, takes what is due, keeps up to `maxInFlight` attempts open,
// and writes each outcome back. A slow or hanging destination holds only its own queue and
// transfer threads, so it never slows intake or another destination. The ledger is the truth:
// what this keeps in memory (attempts in flight, outcomes not yet written, a small cache of
// callbacks) is lost harmlessly at a crash, as repeats with the same webhook-id.
import CallbackStore
import Dispatch
import HTTPClient
import Logging
import Synchronization
import Vocabulary

final class DestinationWorker: @unchecked Sendable {
    /// Callbacks read per feed step, and records asked of the ledger per refill.
    static let pageSize = 512
    /// Outcomes are written together: at the latest this long after the first of them.
    static let flushDelay: DispatchTimeInterval = .milliseconds(5)
    /// How often an idle worker looks at the ledger anyway (changes made by the CLI, a re-enable).
    static let pollInterval: Int64 = 1_000
    /// How often the backlog (for the lag gauge) is counted.
    static let backlogInterval: Int64 = 2_000

    let destination: Destination
    private let ledger: any DeliveryLedger
    private let reader: any CallbackReader
    private let client: CurlHTTPClient
    private let clock: @Sendable () -> Int64
    private let logger: Logger
    private let observer: DeliveryEngine.Observer?
    private let onFatal: @Sendable (CallbackStoreError) -> Void
    private let queue: DispatchQueue
    private let timer: any DispatchSourceTimer
    private let secrets: [WebhookSecret]
    private let headerTemplate: [(name: String, value: String)]

    // Confined to `queue`.
    private var cursor: Int64 = 0
    private var lastStoredID: Int64 = 0
    private var inFlight: Set<Int64> = []
    private var ready: [DeliveryRecord] = []
    private var unflushed: [Int64: DeliveryRecord] = [:]
    private var flushScheduled = false
    private var tickScheduled = false
    private var cache: [Int64: StoredCallback] = [:]
    private var pausedUntil: Int64 = 0
    private var disabled: DestinationDisabled?
    private var nextPoll: Int64 = 0
    private var nextBacklog: Int64 = 0
    private var stopping = false
    private var stopped: (@Sendable () -> Void)?
    private var failed = false
    /// Stopped: late completions are dropped (their attempts are made again after the restart).
    private var isFinished = false

    private let status: Mutex<DestinationStatus>
    private let watcher = Mutex<Task<Void, Never>?>(nil)

    init(
        destination: Destination, ledger: any DeliveryLedger, reader: any CallbackReader, clock: @escaping @Sendable () -> Int64,
        logger: Logger, observer: DeliveryEngine.Observer?, onFatal: @escaping @Sendable (CallbackStoreError) -> Void
    ) {
        self.destination = destination
        self.ledger = ledger
        self.reader = reader
        self.clock = clock
        self.observer = observer
        self.onFatal = onFatal
        var logger = logger
        logger[metadataKey: "delivery.destination"] = "\(destination.name)"
        self.logger = logger
        client = CurlHTTPClient(
            connectTimeout: min(destination.timeout, .seconds(10)), totalTimeout: destination.timeout, maxResponseBytes: 64 << 10,
            maxIdleHandles: destination.maxInFlight)
        queue = DispatchQueue(label: "delivery.\(destination.name)")
        timer = DispatchSource.makeTimerSource(queue: queue)
        secrets = [destination.secret] + (destination.previousSecret.map { [$0] } ?? [])
        headerTemplate = [("Content-Type", "application/json"), ("User-Agent", "thingspace-listener/\(ListenerVersion.current)")]
        status = Mutex(DestinationStatus(name: destination.name))
    }

    var currentStatus: DestinationStatus { status.withLock { $0 } }

    /// Reads where the destination stands (a new one starts at the newest stored callback: it gets
    /// what arrives from now on; `deliveries replay` sends older ones) and starts the loop.
    func start() throws(CallbackStoreError) {
        let last = try reader.lastID()
        let known = try ledger.cursor(destination: destination.name)
        if known == nil { try ledger.enqueue(destination: destination.name, [], through: last) }
        let disabled = try ledger.disabled(destination: destination.name)
        queue.sync {
            cursor = known ?? last
            lastStoredID = last
            self.disabled = disabled
            publishStatus()
        }
        timer.setEventHandler { [weak self] in self?.tick() }
        timer.schedule(deadline: .now())
        timer.activate()
        startWatching(after: last)
        logger.info(
            "delivering",
            metadata: [
                "delivery.url_host": "\(Self.host(of: destination.url))", "delivery.cursor": "\(known ?? last)",
                "delivery.disabled": "\(disabled != nil)",
            ])
    }

    /// Stops taking new work, waits up to `grace` for attempts in flight, writes every outcome.
    func stop(grace: Duration) async {
        watcher.withLock { $0?.cancel() }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let once = Mutex(false)
            let finish: @Sendable () -> Void = {
                if once.withLock({
                    let first = !$0
                    $0 = true
                    return first
                }) {
                    done.resume()
                }
            }
            queue.async {
                self.stopping = true
                self.stopped = finish
                self.finishStopIfIdle()
            }
            queue.asyncAfter(deadline: .now() + .milliseconds(Int(grace.inMilliseconds))) {
                if !self.inFlight.isEmpty {
                    self.logger.notice(
                        "stopping with attempts in flight; they are made again after the restart",
                        metadata: ["delivery.in_flight": "\(self.inFlight.count)"])
                }
                self.finishStop()
                finish()
            }
        }
    }

    /// Asks the ledger again now (a reload or the CLI re-enabled the destination).
    func enable() {
        queue.async {
            self.disabled = nil
            self.pausedUntil = 0
            self.publishStatus()
            self.requestTick()
        }
    }

    // MARK: - The loop (on `queue`)

    private func startWatching(after id: Int64) {
        let reader = self.reader
        let task = Task.detached { [weak self] in
            var seen = id
            while !Task.isCancelled {
                guard (try? await reader.waitForCallbacks(after: seen, timeout: .seconds(1))) == true,
                    let last = try? reader.lastID()
                else { continue }
                seen = last
                guard let self else { return }
                self.queue.async {
                    self.lastStoredID = max(self.lastStoredID, last)
                    self.requestTick()
                }
            }
        }
        watcher.withLock { $0 = task }
    }

    private func requestTick() {
        guard !tickScheduled, !failed else { return }
        tickScheduled = true
        queue.async { self.tick() }
    }

    private func tick() {
        tickScheduled = false
        guard !failed, !isFinished else { return }
        let now = clock()
        do throws(CallbackStoreError) {
            if now >= nextPoll {
                nextPoll = now + Self.pollInterval
                try poll()
            }
            if !stopping {
                try feed()
                if disabled == nil, now >= pausedUntil { try launch(now: now) }
            }
            if now >= nextBacklog {
                nextBacklog = now + Self.backlogInterval
                try countBacklog(now: now)
            }
            try scheduleNextTick(now: now)
        } catch {
            fail(error)
        }
        publishStatus()
        finishStopIfIdle()
    }

    /// What may have changed outside: the newest stored id, a re-enable by the CLI.
    private func poll() throws(CallbackStoreError) {
        lastStoredID = max(lastStoredID, try reader.lastID())
        if disabled != nil, try ledger.disabled(destination: destination.name) == nil {
            disabled = nil
            logger.notice("destination enabled again")
            observer?(.enabled(destination: destination.name))
        }
    }

    /// Gives the ledger a record for every matching callback after the cursor, a page at a time.
    private func feed() throws(CallbackStoreError) {
        var pages = 0
        while cursor < lastStoredID, pages < 4 {
            pages += 1
            let page = try reader.callbacks(after: cursor, limit: Self.pageSize, includeDuplicates: true)
            guard let end = page.last?.id else {
                // Nothing visible yet beyond the cursor (the index trails): look again on the next tick.
                return
            }
            var records: [DeliveryRecord] = []
            for callback in page
            where destination.accepts(service: callback.service) && (destination.includeDuplicates || !callback.isDuplicate) {
                records.append(
                    DeliveryRecord(
                        destination: destination.name, callbackID: callback.id, nextAttemptAt: callback.receivedAt,
                        orderingKey: callback.deviceIDs.first.map { "\($0.kind):\($0.id)" }, receivedAt: callback.receivedAt))
                if cache.count < Self.pageSize * 4 { cache[callback.id] = callback }
            }
            try ledger.enqueue(destination: destination.name, records, through: end)
            cursor = end
            lastStoredID = max(lastStoredID, end)
        }
        if cursor < lastStoredID { requestTick() }
    }

    private func launch(now: Int64) throws(CallbackStoreError) {
        while inFlight.count < destination.maxInFlight {
            if ready.isEmpty {
                // The ledger must know every outcome first, or a delivered record would come back as due.
                try flush()
                ready = try ledger.due(
                    destination: destination.name, now: now, limit: max(Self.pageSize / 4, destination.maxInFlight * 2),
                    excluding: inFlight, onePerOrderingKey: destination.ordering == .device
                ).reversed()
                if ready.isEmpty { return }
            }
            let record = ready.removeLast()
            guard !inFlight.contains(record.callbackID), unflushed[record.callbackID] == nil else { continue }
            try attempt(record, now: now)
        }
    }

    private func attempt(_ record: DeliveryRecord, now: Int64) throws(CallbackStoreError) {
        var cached = cache.removeValue(forKey: record.callbackID)
        if cached == nil { cached = try reader.callback(id: record.callbackID) }
        guard let callback = cached else {
            // Retention deleted it before it could be delivered.
            var gone = record
            gone.state = .dead
            gone.nextAttemptAt = nil
            gone.lastError = "the callback is no longer stored"
            keep(gone)
            observer?(.deadLettered(destination: destination.name))
            return
        }
        inFlight.insert(record.callbackID)
        let body = WebhookMessage.body(for: callback)
        let timestamp = now / 1000
        let headers = WebhookMessage.headers(id: callback.id, timestamp: timestamp, body: body, secrets: secrets) + headerTemplate
        let request = CurlHTTPClient.Request(method: .post, url: destination.url, headers: headers, body: body)
        let client = self.client
        let started = ContinuousClock.now
        Task.detached {
            let exchange: Result<CurlHTTPClient.Response, CurlTransportError>
            do throws(CurlTransportError) {
                exchange = .success(try await client.send(request))
            } catch {
                exchange = .failure(error)
            }
            let elapsed = ContinuousClock.now - started
            self.queue.async { self.complete(record, exchange: exchange, elapsed: elapsed) }
        }
    }

    private func complete(_ record: DeliveryRecord, exchange: Result<CurlHTTPClient.Response, CurlTransportError>, elapsed: Duration) {
        inFlight.remove(record.callbackID)
        guard !isFinished else { return }
        let now = clock()
        let decision = DeliveryPolicy.decide(record, result: DeliveryPolicy.result(of: exchange), destination: destination, now: now)
        let name = destination.name
        observer?(.attempted(destination: name, outcome: decision.outcome, duration: elapsed))
        switch decision.record.state {
        case .delivered:
            observer?(.delivered(destination: name))
        case .dead:
            observer?(.deadLettered(destination: name))
            logger.warning(
                "delivery dead-lettered",
                metadata: [
                    "callback.id": "\(record.callbackID)", "delivery.attempts": "\(decision.record.attempts)",
                    "delivery.last_error": "\(decision.record.lastError ?? "")",
                ])
        default:
            logger.debug(
                "delivery attempt failed",
                metadata: [
                    "callback.id": "\(record.callbackID)", "delivery.attempts": "\(decision.record.attempts)",
                    "delivery.last_error": "\(decision.record.lastError ?? "")",
                ])
        }
        if let until = decision.pauseUntil, until > pausedUntil {
            pausedUntil = until
            logger.info("destination asked to wait (Retry-After)", metadata: ["delivery.paused_ms": "\(until - now)"])
        }
        keep(decision.record)
        if decision.disablesDestination, disabled == nil {
            let disabled = DestinationDisabled(at: now, reason: "answered 410 Gone")
            self.disabled = disabled
            ready.removeAll()
            do throws(CallbackStoreError) {
                try ledger.setDisabled(destination: name, disabled)
            } catch {
                fail(error)
                return
            }
            logger.error("destination disabled: it answered 410 Gone; a reload or `deliveries enable` enables it again")
            observer?(.disabled(destination: name))
        }
        requestTick()
        finishStopIfIdle()
    }

    /// Keeps an outcome for the next write, which comes soon.
    private func keep(_ record: DeliveryRecord) {
        unflushed[record.callbackID] = record
        guard !flushScheduled else { return }
        flushScheduled = true
        queue.asyncAfter(deadline: .now() + Self.flushDelay) {
            self.flushScheduled = false
            if !self.isFinished { self.flushOrFail() }
        }
    }

    private func flush() throws(CallbackStoreError) {
        guard !unflushed.isEmpty, !failed else { return }
        try ledger.update(Array(unflushed.values))
        unflushed.removeAll(keepingCapacity: true)
    }

    private func flushOrFail() {
        do throws(CallbackStoreError) { try flush() } catch { fail(error) }
    }

    private func countBacklog(now: Int64) throws(CallbackStoreError) {
        let backlog = try ledger.backlog(destination: destination.name)
        var oldest = backlog.oldestWaitingReceivedAt
        if cursor < lastStoredID, let next = try reader.callbacks(after: cursor, limit: 1, includeDuplicates: true).first {
            oldest = min(oldest ?? next.receivedAt, next.receivedAt)
        }
        status.withLock {
            $0.backlog = backlog
            $0.lagMilliseconds = oldest.map { max(0, now - $0) } ?? 0
        }
    }

    private func scheduleNextTick(now: Int64) throws(CallbackStoreError) {
        var next = now + Self.pollInterval
        if disabled == nil, !stopping {
            if pausedUntil > now {
                next = min(next, pausedUntil)
            } else if inFlight.count < destination.maxInFlight, let due = try ledger.nextAttemptAt(destination: destination.name) {
                next = min(next, max(due, now + 1))
            }
        }
        timer.schedule(deadline: .now() + .milliseconds(Int(max(1, next - now))))
    }

    private func publishStatus() {
        let (inFlight, disabled, paused) = (inFlight.count, disabled, pausedUntil > clock())
        status.withLock {
            $0.inFlight = inFlight
            $0.disabled = disabled
            $0.throttled = paused
        }
    }

    private func finishStopIfIdle() {
        guard stopping, inFlight.isEmpty, let stopped else { return }
        finishStop()
        stopped()
    }

    /// Writes what is known and ignores everything after: the ledger closes next.
    private func finishStop() {
        guard !isFinished else { return }
        flushOrFail()
        isFinished = true
        stopped = nil
        timer.cancel()
    }

    /// The ledger failed: stop this destination and let the service exit (fail-stop, as the store).
    private func fail(_ error: CallbackStoreError) {
        guard !failed else { return }
        failed = true
        timer.cancel()
        logger.critical("the delivery ledger failed; stopping", metadata: ["error": "\(error)"])
        onFatal(error)
    }

    static func host(of url: String) -> String {
        let parts = url.split(separator: "://", maxSplits: 1)
        guard parts.count == 2 else { return "?" }
        let rest = parts[1]
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        return String(authority.split(separator: "@").last ?? "")
    }
}

/// A destination as metrics, `/readyz` and `STATUS=` show it.
public struct DestinationStatus: Sendable, Hashable {
    public var name: String
    public var inFlight = 0
    public var disabled: DestinationDisabled?
    /// Waiting for a Retry-After to pass.
    public var throttled = false
    public var backlog = DeliveryBacklog()
    /// Age of the oldest callback not yet delivered (nor dead-lettered); 0 when none waits.
    public var lagMilliseconds: Int64 = 0

    public init(name: String) { self.name = name }
}
