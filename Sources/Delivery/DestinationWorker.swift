// One destination's delivery loop, on a serial queue of its own: it reads the callbacks stored
// after its cursor, keeps up to `maxInFlight` attempts open, and writes each outcome back. A slow
// or hanging destination holds only its own queue and transfer threads, so it never slows intake
// or another destination.
//
// The ledger is the truth; what this keeps in memory is lost harmlessly at a crash. A first
// attempt needs no record beforehand: the callback is read from the store into a bounded window,
// and the cursor stays before the first one whose outcome is not yet written, so after a crash
// the window is read again. Only outcomes are written (a delivered record, or a retrying one that
// the ledger then schedules), with the cursor, in one transaction per batch. With ordering by
// device every callback gets a pending record first instead, so that the ledger can hold back a
// device's later callbacks behind a failing one.
//
// A ledger shared by several instances (PostgreSQL) always takes pending records: only the leading
// instance feeds them in, and every instance claims due records for a lease, so each attempt is
// made by one instance at a time. The database being unreachable is not fatal there: the worker
// keeps its outcomes and tries again each second until it answers.
import CallbackStore
import Dispatch
import HTTPClient
import Logging
import Synchronization
import Vocabulary

final class DestinationWorker: @unchecked Sendable {
    /// Callbacks read per feed step, and records asked of the ledger per refill.
    static let pageSize = 512
    /// First attempts read from the store and not yet written back, at most.
    static let windowSize = 2048
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
    private let isLeader: @Sendable () -> Bool
    /// Every callback gets a pending record first (ordering by device, or a shared ledger).
    private let feedsPendingRecords: Bool
    private let queue: DispatchQueue
    private let timer: any DispatchSourceTimer
    private let secrets: [WebhookSecret]
    private let headerTemplate: [(name: String, value: String)]

    // Confined to `queue`.
    /// As last written: every matching callback up to it has a record.
    private var cursor: Int64 = 0
    /// The highest id read from the store.
    private var fedThrough: Int64 = 0
    private var lastStoredID: Int64 = 0
    /// First attempts (no record yet) in id order, and the ids among them whose outcome is not
    /// written yet; the cursor stays before the first of those.
    private var window = FIFO<(id: Int64, receivedAt: Int64)>()
    private var open: Set<Int64> = []
    /// First attempts not yet made.
    private var fresh = FIFO<StoredCallback>()
    /// When the ledger may next have something due (nil: nothing waits there).
    private var ledgerDueAt: Int64? = .min
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
    /// Whether this instance fed the ledger last time (a shared ledger: the leader feeds).
    private var feeding = false
    /// The shared ledger's database did not answer; retried each poll interval.
    private var unavailable = false
    /// Stopped: late completions are dropped (their attempts are made again after the restart).
    private var isFinished = false

    private let status: Mutex<DestinationStatus>
    private let watcher = Mutex<Task<Void, Never>?>(nil)

    init(
        destination: Destination, ledger: any DeliveryLedger, reader: any CallbackReader, clock: @escaping @Sendable () -> Int64,
        logger: Logger, observer: DeliveryEngine.Observer?, isLeader: @escaping @Sendable () -> Bool = { true },
        onFatal: @escaping @Sendable (CallbackStoreError) -> Void
    ) {
        self.destination = destination
        self.ledger = ledger
        self.isLeader = isLeader
        feedsPendingRecords = destination.ordering == .device || ledger.sharesWork
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
            fedThrough = cursor
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
            if unavailable {
                unavailable = false
                logger.notice("the delivery ledger answers again")
            }
        } catch {
            fail(error)
        }
        publishStatus()
        finishStopIfIdle()
    }

    /// What may have changed outside: the newest stored id, a re-enable by the CLI.
    private func poll() throws(CallbackStoreError) {
        lastStoredID = max(lastStoredID, try reader.lastID())
        // The CLI may have made something due (retry, replay).
        ledgerDueAt = try ledger.nextAttemptAt(destination: destination.name)
        if disabled != nil, try ledger.disabled(destination: destination.name) == nil {
            disabled = nil
            logger.notice("destination enabled again")
            observer?(.enabled(destination: destination.name))
        }
    }

    /// Reads the matching callbacks after what was read, a page at a time: into the window of
    /// first attempts, or with ordering by device as pending records in the ledger.
    private func feed() throws(CallbackStoreError) {
        if ledger.sharesWork {
            guard isLeader() else {
                feeding = false
                return
            }
            if !feeding {
                // Newly leading: go on from where the previous leader left the cursor.
                feeding = true
                cursor = max(cursor, try ledger.cursor(destination: destination.name) ?? cursor)
                fedThrough = cursor
            }
        }
        var pages = 0
        while fedThrough < lastStoredID, open.count < Self.windowSize, pages < 4 {
            pages += 1
            let page = try reader.callbacks(after: fedThrough, limit: Self.pageSize, includeDuplicates: true)
            // Nothing visible yet beyond it (the index trails): look again on the next tick.
            guard let end = page.last?.id else { return }
            let matching = page.filter { destination.accepts(service: $0.service) && (destination.includeDuplicates || !$0.isDuplicate) }
            if feedsPendingRecords {
                let records = matching.map { callback in
                    DeliveryRecord(
                        destination: destination.name, callbackID: callback.id, nextAttemptAt: callback.receivedAt,
                        orderingKey: Self.orderingKey(callback), receivedAt: callback.receivedAt)
                }
                try ledger.enqueue(destination: destination.name, records, through: end)
                cursor = end
                if !records.isEmpty { ledgerDueAt = .min }
                for callback in matching where cache.count < Self.pageSize * 4 { cache[callback.id] = callback }
            } else {
                for callback in matching {
                    fresh.append(callback)
                    window.append((callback.id, callback.receivedAt))
                    open.insert(callback.id)
                }
            }
            fedThrough = end
            lastStoredID = max(lastStoredID, end)
        }
        if fedThrough < lastStoredID, open.count < Self.windowSize { requestTick() }
        // Nothing of the destination's in what was read: the cursor may move on all the same.
        if open.isEmpty, cursor < fedThrough { scheduleFlush() }
    }

    static func orderingKey(_ callback: StoredCallback) -> String? { callback.deviceIDs.first.map { "\($0.kind):\($0.id)" } }

    private func launch(now: Int64) throws(CallbackStoreError) {
        while inFlight.count < destination.maxInFlight {
            if ready.isEmpty, let dueAt = ledgerDueAt, dueAt <= now {
                // The ledger must know every outcome first, or a delivered record would come back as due.
                try flush()
                ready = try ledger.due(
                    destination: destination.name, now: now, limit: max(Self.pageSize / 4, destination.maxInFlight * 2),
                    excluding: inFlight, onePerOrderingKey: destination.ordering == .device
                ).reversed()
                if ready.isEmpty {
                    // What is due is in flight (its outcome will say), or nothing is due yet.
                    ledgerDueAt = try ledger.nextAttemptAt(destination: destination.name).map { max($0, now + 50) }
                }
            }
            if let record = ready.popLast() {
                guard !inFlight.contains(record.callbackID), unflushed[record.callbackID] == nil else { continue }
                var cached = cache.removeValue(forKey: record.callbackID)
                if cached == nil { cached = try reader.callback(id: record.callbackID) }
                try attempt(record, callback: cached)
            } else if let callback = fresh.popFirst() {
                let record = DeliveryRecord(
                    destination: destination.name, callbackID: callback.id, nextAttemptAt: now, orderingKey: Self.orderingKey(callback),
                    receivedAt: callback.receivedAt)
                try attempt(record, callback: callback)
            } else {
                return
            }
        }
    }

    private func attempt(_ record: DeliveryRecord, callback: StoredCallback?) throws(CallbackStoreError) {
        guard let callback else {
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
        let headers = WebhookMessage.headers(id: callback.id, timestamp: clock() / 1000, body: body, secrets: secrets) + headerTemplate
        let request = CurlHTTPClient.Request(method: .post, url: destination.url, headers: headers, body: body)
        let started = ContinuousClock.now
        client.send(request) { exchange in
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
        // The freed slot is taken here, not on a later tick: one hop fewer per attempt.
        if !stopping, disabled == nil, now >= pausedUntil {
            do throws(CallbackStoreError) {
                if fresh.count < destination.maxInFlight { try feed() }
                try launch(now: now)
            } catch {
                fail(error)
                return
            }
        } else {
            requestTick()
        }
        finishStopIfIdle()
    }

    /// Keeps an outcome for the next write, which comes soon.
    private func keep(_ record: DeliveryRecord) {
        unflushed[record.callbackID] = record
        scheduleFlush()
    }

    /// Writes the outcomes kept, and the cursor up to the first first attempt still open.
    private func flush() throws(CallbackStoreError) {
        guard !failed else { return }
        let records = Array(unflushed.values)
        for record in records { open.remove(record.callbackID) }
        while let first = window.first, !open.contains(first.id) { _ = window.popFirst() }
        let through = window.first.map { $0.id - 1 } ?? fedThrough
        guard !records.isEmpty || through > cursor else { return }
        try ledger.update(records, cursor: through > cursor ? (destination.name, through) : nil)
        cursor = max(cursor, through)
        unflushed.removeAll(keepingCapacity: true)
        for record in records where !record.state.isFinal {
            if let next = record.nextAttemptAt { ledgerDueAt = min(ledgerDueAt ?? next, next) }
        }
    }

    private func scheduleFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        queue.asyncAfter(deadline: .now() + Self.flushDelay) {
            self.flushScheduled = false
            if !self.isFinished { self.flushOrFail() }
        }
    }

    private func flushOrFail() {
        do throws(CallbackStoreError) { try flush() } catch { fail(error) }
    }

    private func countBacklog(now: Int64) throws(CallbackStoreError) {
        var backlog = try ledger.backlog(destination: destination.name)
        var oldest = backlog.oldestWaitingReceivedAt
        if let first = window.first { oldest = min(oldest ?? first.receivedAt, first.receivedAt) }
        if !ledger.sharesWork || feeding, fedThrough < lastStoredID,
            let next = try reader.callbacks(after: fedThrough, limit: 1, includeDuplicates: true).first
        {
            oldest = min(oldest ?? next.receivedAt, next.receivedAt)
        }
        // Not yet attempted: what waits in the window, and (at most) what was not read yet (by this
        // instance, when it is the one that feeds).
        let unread = !ledger.sharesWork || feeding ? Int(max(0, lastStoredID - fedThrough)) : 0
        backlog.pending += open.count + unread
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
            } else if inFlight.count < destination.maxInFlight, let due = ledgerDueAt {
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
    /// A shared ledger's database that does not answer is waited for instead: outcomes not yet
    /// written stay in memory, and claims of attempts not made expire for another instance.
    private func fail(_ error: CallbackStoreError) {
        if case .unavailable = error {
            if !unavailable {
                unavailable = true
                logger.warning("the delivery ledger does not answer; retrying every second", metadata: ["error": "\(error)"])
            }
            timer.schedule(deadline: .now() + .milliseconds(Int(Self.pollInterval)))
            return
        }
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

/// A first-in first-out queue on an array: amortised O(1) at both ends that it uses.
struct FIFO<Element> {
    private var elements: [Element] = []
    private var head = 0

    var isEmpty: Bool { head == elements.count }
    var count: Int { elements.count - head }
    var first: Element? { isEmpty ? nil : elements[head] }

    mutating func append(_ element: Element) { elements.append(element) }

    mutating func popFirst() -> Element? {
        guard !isEmpty else { return nil }
        let element = elements[head]
        head += 1
        if head >= 1024, head * 2 >= elements.count {
            elements.removeFirst(head)
            head = 0
        }
        return element
    }
}
