// How the client's retry loop treats one failed try. The delays themselves
// come from HTTPClient's RetryPolicy.

/// How one failed try is handled by the retry loop.
struct AttemptFailure: Error {
    enum Disposition {
        /// Network error, 429 or 5xx: try again after a backoff, if tries remain.
        case retry(after: Duration?)
        /// A callbacks call made with `session` was refused (401/403): sign
        /// in afresh once (unless another call already did), then retry once.
        case renewSignIn(session: String)
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
