// What one attempt's outcome means for its delivery: a pure function of the record, the answer,
// the destination's settings and the time, so every rule of the delivery issue is tested without
// a socket. 2xx delivered; 410 disables the destination; 429 and 503 wait at least their
// Retry-After (and pause the destination as long); anything else follows the retry schedule;
// out of attempts or past the maximum age, dead.
import CallbackStore
import HTTPClient
import Vocabulary

/// How an attempt ended, as the receiver (or the network) said it.
public enum AttemptResult: Sendable, Equatable {
    case response(status: Int, retryAfter: Duration?)
    case timeout
    case connectionFailed(String)
}

/// The attempt outcomes counted in metrics (`outcome` label).
public enum AttemptOutcome: String, Sendable, CaseIterable {
    case delivered
    /// 410: the destination is disabled.
    case gone
    /// 429 or 503.
    case throttled
    case httpError = "http_error"
    case timeout
    case connectionError = "connection_error"
}

public struct DeliveryDecision: Sendable, Equatable {
    /// The record as it stands after the attempt.
    public var record: DeliveryRecord
    public var outcome: AttemptOutcome
    /// Set for a 410: the destination stops until a reload or `deliveries enable`.
    public var disablesDestination: Bool
    /// No attempt to the destination before this (UTC ms): its Retry-After.
    public var pauseUntil: Int64?
}

public enum DeliveryPolicy {
    public static func decide(
        _ record: DeliveryRecord, result: AttemptResult, destination: Destination, now: Int64
    ) -> DeliveryDecision {
        var record = record
        record.attempts += 1
        record.lastAttemptAt = now
        let outcome: AttemptOutcome
        var retryAfter: Duration?
        switch result {
        case .response(let status, let after):
            record.lastStatus = status
            switch status {
            case 200..<300: outcome = .delivered
            case 410: outcome = .gone
            case 429, 503:
                outcome = .throttled
                retryAfter = after
            default: outcome = .httpError
            }
            record.lastError = outcome == .delivered ? nil : "HTTP \(status)"
        case .timeout:
            record.lastStatus = nil
            record.lastError = "timed out after \(destination.timeout.inSecondsText)"
            outcome = .timeout
        case .connectionFailed(let reason):
            record.lastStatus = nil
            record.lastError = reason
            outcome = .connectionError
        }

        switch outcome {
        case .delivered:
            record.state = .delivered
            record.nextAttemptAt = nil
            return DeliveryDecision(record: record, outcome: outcome, disablesDestination: false, pauseUntil: nil)
        case .gone:
            // Not this callback's fault: it goes first once the destination is enabled again.
            record.state = .retrying
            record.attempts -= 1
            record.nextAttemptAt = now
            return DeliveryDecision(record: record, outcome: outcome, disablesDestination: true, pauseUntil: nil)
        default:
            break
        }
        let failedAttempts = record.attempts
        let pauseUntil = retryAfter.map { now + $0.inMilliseconds }
        guard failedAttempts <= destination.retrySchedule.count else {
            return dead(record, outcome: outcome, pauseUntil: pauseUntil)
        }
        let scheduled = now + destination.retrySchedule[failedAttempts - 1].inMilliseconds
        let next = max(scheduled, pauseUntil ?? scheduled)
        guard next <= record.receivedAt + destination.maxAge.inMilliseconds else {
            return dead(record, outcome: outcome, pauseUntil: pauseUntil)
        }
        record.state = .retrying
        record.nextAttemptAt = next
        return DeliveryDecision(record: record, outcome: outcome, disablesDestination: false, pauseUntil: pauseUntil)
    }

    private static func dead(_ record: DeliveryRecord, outcome: AttemptOutcome, pauseUntil: Int64?) -> DeliveryDecision {
        var record = record
        record.state = .dead
        record.nextAttemptAt = nil
        return DeliveryDecision(record: record, outcome: outcome, disablesDestination: false, pauseUntil: pauseUntil)
    }

    /// The answer (or transport error) of an exchange, as the policy sees it.
    public static func result(of exchange: Result<CurlHTTPClient.Response, CurlTransportError>) -> AttemptResult {
        switch exchange {
        case .success(let response):
            return .response(status: response.status, retryAfter: response.retryAfter)
        case .failure(let error):
            // By kind, not libcurl's text: that may quote the URL, which may hold a token.
            switch error.kind {
            case .timedOut: return .timeout
            case .couldNotResolveHost: return .connectionFailed("could not resolve the host")
            case .couldNotConnect: return .connectionFailed("could not connect")
            case .tls: return .connectionFailed("TLS handshake or certificate failed")
            case .responseTooLarge: return .connectionFailed("response too large")
            case .invalidRequest: return .connectionFailed("invalid request")
            case .other: return .connectionFailed("transport error (curl \(error.curlCode))")
            }
        }
    }
}

extension Duration {
    fileprivate var inSecondsText: String {
        let milliseconds = inMilliseconds
        return milliseconds % 1000 == 0 ? "\(milliseconds / 1000) s" : "\(milliseconds) ms"
    }
}
