import Foundation

/// How one failed try is handled by the retry loop.
struct AttemptFailure: Error {
    enum Disposition {
        /// Network error, 429 or 5xx: try again after a backoff, if tries remain.
        case retry(after: Duration?)
        /// A callbacks call was refused (401/403): sign in afresh once, then retry once.
        case renewSignIn
        /// Nothing another try could fix.
        case fatal
    }

    var error: ThingSpaceError
    var disposition: Disposition

    static func fatal(_ error: ThingSpaceError) -> AttemptFailure { AttemptFailure(error: error, disposition: .fatal) }
    static func retry(_ error: ThingSpaceError, after: Duration? = nil) -> AttemptFailure {
        AttemptFailure(error: error, disposition: .retry(after: after))
    }
}

/// Exponential backoff with "equal jitter": half the doubled delay is
/// fixed, half random, so retries spread out but never fire at once.
struct RetryPolicy {
    var maxAttempts: Int
    var baseDelay: Duration
    var maxDelay: Duration

    /// The delay before try number `failures + 1`, given `failures` so far (≥ 1).
    /// A server's `Retry-After` is honoured up to `maxDelay`.
    func delay(afterFailures failures: Int, retryAfter: Duration?) -> Duration {
        let exponent = min(max(failures - 1, 0), 30)
        let doubled = baseDelay * (1 << exponent)
        let capped = min(doubled, maxDelay)
        let half = capped / 2
        let jitter = half * Double.random(in: 0...1)
        let backoff = half + jitter
        guard let retryAfter else { return backoff }
        return min(max(backoff, retryAfter), maxDelay)
    }
}

/// Reads `Retry-After` given in seconds (the HTTP-date form is ignored).
func parseRetryAfter(_ value: String?) -> Duration? {
    guard let value, let seconds = Int(value.trimmingCharacters(in: .whitespaces)), seconds >= 0 else { return nil }
    return .seconds(seconds)
}
