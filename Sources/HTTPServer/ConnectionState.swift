import HTTP1

/// Per-connection settings, derived once from the configuration.
struct ConnectionSettings: Sendable {
    var limits: HTTPLimits
    var maxPipelinedRequests: Int
    var headerReadTimeout: UInt64
    var bodyReadTimeout: UInt64
    var idleTimeout: UInt64
    var writeTimeout: UInt64
    var maxStreamBacklog: Int
    /// How long a closing connection keeps reading (and discarding) after
    /// its write side is shut down, so a client still sending does not get a
    /// reset that destroys the response it has not read yet.
    var lingerTimeout: UInt64

    init(_ configuration: HTTPServerConfiguration) {
        limits = configuration.limits
        maxPipelinedRequests = configuration.maxPipelinedRequests
        headerReadTimeout = configuration.headerReadTimeout.clampedNanoseconds
        bodyReadTimeout = configuration.bodyReadTimeout.clampedNanoseconds
        idleTimeout = configuration.idleTimeout.clampedNanoseconds
        writeTimeout = configuration.writeTimeout.clampedNanoseconds
        maxStreamBacklog = configuration.maxStreamBacklog
        lingerTimeout = min(2_000_000_000, max(configuration.headerReadTimeout.clampedNanoseconds, 100_000_000))
    }
}

/// Where a connection is in its life.
///
///     serving ──(request without keep-alive, parse error, 408, EOF with
///                responses owed, shutdown)──────────────────▶ finishing
///     finishing ──(response `lastSequence` written)─────────▶ lingering
///     lingering ──(EOF, linger deadline)─────────────────────▶ closed
///     any ──(I/O error, reset, EOF mid-request, idle or write timeout,
///            forced shutdown)───────────────────────────────▶ closed
enum ConnectionLifecycle: Equatable {
    /// Reading requests and writing responses.
    case serving
    /// Reads no more requests; closes once responses up to `lastSequence` are written.
    case finishing(lastSequence: UInt64)
    /// Write side shut down; reading and discarding until EOF or the deadline.
    case lingering
    case closed
}

/// What the read side is waiting for; picks the deadline that applies.
enum ReadPhase: Equatable {
    /// Nothing received yet on a new connection (header timeout, silent close).
    case fresh
    /// Kept alive between requests (idle timeout, silent close).
    case idle
    /// Part of a request head received (header timeout, 408).
    case head
    /// Part of a body received (body timeout, 408).
    case body
    /// Requests are with the handler or responses are being written: no read deadline.
    case awaitingResponses
}

/// What the periodic sweep must do to an overdue connection.
enum TimeoutAction: Equatable {
    /// Close without a response (idle, nothing received, linger over).
    case close(reason: String)
    /// Close at once, discarding unsent bytes (peer not reading).
    case abort(reason: String)
    /// Answer 408 and close.
    case requestTimeout(reason: String)
}

/// The connection's lifecycle and the clocks behind its deadlines. Pure: the
/// caller supplies the time, so it is tested without sockets.
struct ConnectionState {
    private(set) var lifecycle: ConnectionLifecycle = .serving
    private(set) var readPhase: ReadPhase = .fresh
    private(set) var readPhaseSince: UInt64
    /// When writing last blocked without progress since; nil while writes go through.
    private(set) var writeStalledSince: UInt64?
    private(set) var lingeringSince: UInt64 = 0

    init(now: UInt64) {
        readPhaseSince = now
    }

    var isServing: Bool { lifecycle == .serving }

    /// Whether the response with `sequence` is the last this connection sends.
    func isLast(_ sequence: UInt64) -> Bool {
        if case .finishing(let last) = lifecycle { return sequence >= last }
        return false
    }

    /// Stop reading requests; close after the response `lastSequence`.
    mutating func finish(after lastSequence: UInt64) {
        switch lifecycle {
        case .serving: lifecycle = .finishing(lastSequence: lastSequence)
        case .finishing(let current): lifecycle = .finishing(lastSequence: min(current, lastSequence))
        case .lingering, .closed: break
        }
    }

    mutating func startLingering(now: UInt64) {
        guard lifecycle != .closed else { return }
        lifecycle = .lingering
        lingeringSince = now
        writeStalledSince = nil
    }

    mutating func close() {
        lifecycle = .closed
    }

    /// Moves the read side to `phase`. A head or body deadline runs from the
    /// phase's start and is not extended by later reads (slow senders);
    /// a new connection's header deadline runs from accept. `activity`
    /// (a response written since the last call) restarts the idle clock.
    mutating func enterReadPhase(_ phase: ReadPhase, activity: Bool, now: () -> UInt64) {
        switch (readPhase, phase) {
        case (.fresh, .head):
            readPhase = .head  // the clock keeps running from accept
            return
        case (.fresh, .fresh), (.head, .head), (.body, .body):
            return
        case (.idle, .idle), (.awaitingResponses, .awaitingResponses):
            if !activity { return }
        default:
            break
        }
        readPhase = phase
        readPhaseSince = now()
    }

    /// A write would block; `progressed` tells whether bytes went out first.
    mutating func writeBlocked(progressed: Bool, now: UInt64) {
        if writeStalledSince == nil || progressed { writeStalledSince = now }
    }

    mutating func writeDrained() {
        writeStalledSince = nil
    }

    /// The action due at `now`, if a deadline has passed.
    func overdue(at now: UInt64, settings: ConnectionSettings) -> TimeoutAction? {
        func elapsed(_ since: UInt64) -> UInt64 { now > since ? now - since : 0 }
        switch lifecycle {
        case .closed:
            return nil
        case .lingering:
            return elapsed(lingeringSince) >= settings.lingerTimeout ? .close(reason: "linger deadline passed") : nil
        case .serving, .finishing:
            if let since = writeStalledSince, elapsed(since) >= settings.writeTimeout {
                return .abort(reason: "write timeout: peer is not reading")
            }
        }
        guard lifecycle == .serving else { return nil }
        let since = elapsed(readPhaseSince)
        switch readPhase {
        case .fresh:
            return since >= settings.headerReadTimeout ? .close(reason: "no request received in time") : nil
        case .idle:
            return since >= settings.idleTimeout ? .close(reason: "idle timeout") : nil
        case .head:
            return since >= settings.headerReadTimeout ? .requestTimeout(reason: "header read timeout") : nil
        case .body:
            return since >= settings.bodyReadTimeout ? .requestTimeout(reason: "body read timeout") : nil
        case .awaitingResponses:
            return nil
        }
    }
}
