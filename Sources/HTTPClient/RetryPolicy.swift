// When to try again: the one retry policy of every outbound caller (the
// ThingSpace client's bounded retries, the registrar's "until stopped"
// loop, webhook forwarding's explicit schedule). A value: it computes
// delays and counts tries; the caller sleeps, so it can be woken.

/// How many tries, and how long to wait before each retry.
///
/// A loop over it:
/// ```
/// var failures = 0
/// while true {
///     do { return try attempt() } catch {
///         failures += 1
///         guard let delay = policy.nextDelay(afterFailures: failures, retryAfter: error.retryAfter) else { throw error }
///         sleep(delay)   // or wait on something that shutdown signals
///     }
/// }
/// ```
public struct RetryPolicy: Sendable, Hashable {
    public enum Schedule: Sendable, Hashable {
        /// `baseDelay · 2^(n−1)` before retry n, capped at `maxDelay`, with
        /// "equal jitter": half of it fixed, half random, so the delay lies in
        /// [d/2, d]: retries spread out, yet never fire at once.
        case exponential(baseDelay: Duration, maxDelay: Duration)
        /// Exactly `delays[n−1]` before retry n (no jitter); past the end of the
        /// list, its last delay again. An empty list means no wait.
        case fixed([Duration])
    }

    public var schedule: Schedule
    /// Tries in all, the first included (1: no retry); nil: no limit, the
    /// caller ends the loop (on success, shutdown or a fatal error).
    public var maxAttempts: Int?

    public init(schedule: Schedule, maxAttempts: Int?) {
        switch schedule {
        case let .exponential(base, cap):
            self.schedule = .exponential(baseDelay: max(base, .zero), maxDelay: max(cap, .zero))
        case let .fixed(delays):
            self.schedule = .fixed(delays.map { max($0, .zero) })
        }
        self.maxAttempts = maxAttempts.map { max($0, 1) }
    }

    /// Exponential backoff with equal jitter; `maxAttempts: nil` retries without limit.
    public init(maxAttempts: Int?, baseDelay: Duration, maxDelay: Duration) {
        self.init(schedule: .exponential(baseDelay: baseDelay, maxDelay: maxDelay), maxAttempts: maxAttempts)
    }

    /// An explicit schedule: one retry per delay, `delays.count + 1` tries in all.
    public init(delays: [Duration]) {
        self.init(schedule: .fixed(delays), maxAttempts: delays.count + 1)
    }

    /// An explicit schedule with its own limit (nil: none); past the end of
    /// the list its last delay repeats.
    public init(delays: [Duration], maxAttempts: Int?) {
        self.init(schedule: .fixed(delays), maxAttempts: maxAttempts)
    }

    /// Exponential backoff that never gives up by itself.
    public static func unlimited(baseDelay: Duration, maxDelay: Duration) -> RetryPolicy {
        RetryPolicy(maxAttempts: nil, baseDelay: baseDelay, maxDelay: maxDelay)
    }

    /// The longest wait: the cap of the exponential schedule, the longest
    /// delay of a fixed one. A server's `Retry-After` is honoured up to it.
    public var maxDelay: Duration {
        switch schedule {
        case let .exponential(_, cap): cap
        case let .fixed(delays): delays.max() ?? .zero
        }
    }

    /// Whether another try may follow `failures` failed ones.
    public func allowsRetry(afterFailures failures: Int) -> Bool {
        guard let maxAttempts else { return true }
        return failures < maxAttempts
    }

    /// The range the delay before try `failures + 1` is drawn from
    /// (`failures` ≥ 1; smaller counts as 1), before any `Retry-After`.
    public func delayBounds(afterFailures failures: Int) -> ClosedRange<Duration> {
        let retry = max(failures, 1)
        switch schedule {
        case let .exponential(base, cap):
            let exponent = min(retry - 1, 30)
            let ceiling = min(base * (1 << exponent), cap)
            return (ceiling / 2)...ceiling
        case let .fixed(delays):
            guard let last = delays.last else { return .zero ... .zero }
            let delay = retry <= delays.count ? delays[retry - 1] : last
            return delay...delay
        }
    }

    /// The delay before try `failures + 1`, drawn from `delayBounds` with
    /// `generator` (one `next()`: its top 53 bits place the delay, 0 at the
    /// lower bound); at least `retryAfter` (a server's `Retry-After`), but
    /// never more than `maxDelay`. Ignores `maxAttempts`.
    public func delay(
        afterFailures failures: Int, retryAfter: Duration? = nil, using generator: inout some RandomNumberGenerator
    ) -> Duration {
        let bounds = delayBounds(afterFailures: failures)
        let spread = bounds.upperBound - bounds.lowerBound
        let fraction = Double(generator.next() >> 11) / Double(UInt64(1) << 53)
        let backoff = spread > .zero ? bounds.lowerBound + spread * fraction : bounds.lowerBound
        guard let retryAfter else { return backoff }
        return min(max(backoff, retryAfter), maxDelay)
    }

    /// `delay(afterFailures:retryAfter:using:)` with the system's random numbers.
    public func delay(afterFailures failures: Int, retryAfter: Duration? = nil) -> Duration {
        var generator = SystemRandomNumberGenerator()
        return delay(afterFailures: failures, retryAfter: retryAfter, using: &generator)
    }

    /// The delay before the next try, or nil when `failures` failed tries
    /// use up `maxAttempts`.
    public func nextDelay(afterFailures failures: Int, retryAfter: Duration? = nil) -> Duration? {
        guard allowsRetry(afterFailures: failures) else { return nil }
        return delay(afterFailures: failures, retryAfter: retryAfter)
    }

    /// `nextDelay(afterFailures:retryAfter:)` with the given random numbers.
    public func nextDelay(
        afterFailures failures: Int, retryAfter: Duration? = nil, using generator: inout some RandomNumberGenerator
    ) -> Duration? {
        guard allowsRetry(afterFailures: failures) else { return nil }
        return delay(afterFailures: failures, retryAfter: retryAfter, using: &generator)
    }
}
