import Foundation
import HTTPClient
import Testing

/// Always the same "random" bits: 0 draws the lower bound, all ones (almost) the upper.
struct ConstantGenerator: RandomNumberGenerator {
    var value: UInt64
    mutating func next() -> UInt64 { value }
}

/// A reproducible generator (SplitMix64).
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("Retry policy")
struct RetryPolicyTests {
    let policy = RetryPolicy(maxAttempts: 4, baseDelay: .milliseconds(100), maxDelay: .milliseconds(500))

    @Test func exponentialBoundsDoubleUpToTheCap() {
        #expect(policy.delayBounds(afterFailures: 1) == .milliseconds(50) ... .milliseconds(100))
        #expect(policy.delayBounds(afterFailures: 2) == .milliseconds(100) ... .milliseconds(200))
        #expect(policy.delayBounds(afterFailures: 3) == .milliseconds(200) ... .milliseconds(400))
        #expect(policy.delayBounds(afterFailures: 4) == .milliseconds(250) ... .milliseconds(500))
        #expect(policy.delayBounds(afterFailures: 1000) == .milliseconds(250) ... .milliseconds(500))
        #expect(policy.delayBounds(afterFailures: 0) == policy.delayBounds(afterFailures: 1))
        #expect(policy.maxDelay == .milliseconds(500))
    }

    @Test func delaysAreDrawnWithinTheBounds() {
        var zero = ConstantGenerator(value: 0)
        #expect(policy.delay(afterFailures: 3, using: &zero) == .milliseconds(200))
        var ones = ConstantGenerator(value: .max)
        let high = policy.delay(afterFailures: 3, using: &ones)
        #expect(high <= .milliseconds(400) && .milliseconds(400) - high < .nanoseconds(1))
        var seeded = SeededGenerator(state: 42)
        for failures in 1...40 {
            let bounds = policy.delayBounds(afterFailures: failures)
            var drawn: [Duration] = []
            for _ in 0..<200 { drawn.append(policy.delay(afterFailures: failures, using: &seeded)) }
            #expect(drawn.allSatisfy { bounds.contains($0) })
            // Spread over the range: some near each end.
            let tenth = (bounds.upperBound - bounds.lowerBound) / 10
            #expect(drawn.min()! < bounds.lowerBound + tenth)
            #expect(drawn.max()! > bounds.upperBound - tenth)
        }
        // The system generator too.
        for failures in 1...10 { #expect(policy.delayBounds(afterFailures: failures).contains(policy.delay(afterFailures: failures))) }
    }

    @Test func retryAfterIsHonouredUpToTheCap() {
        var zero = ConstantGenerator(value: 0)
        #expect(policy.delay(afterFailures: 1, retryAfter: .seconds(60), using: &zero) == .milliseconds(500))
        #expect(policy.delay(afterFailures: 1, retryAfter: .milliseconds(300), using: &zero) == .milliseconds(300))
        // A shorter Retry-After does not cut the backoff.
        #expect(policy.delay(afterFailures: 3, retryAfter: .milliseconds(10), using: &zero) == .milliseconds(200))
        #expect(policy.delay(afterFailures: 1, retryAfter: .seconds(60)) == .milliseconds(500))
    }

    @Test func attemptsAreCountedOrUnlimited() {
        #expect(policy.allowsRetry(afterFailures: 3))
        #expect(!policy.allowsRetry(afterFailures: 4))
        #expect(policy.nextDelay(afterFailures: 3) != nil)
        #expect(policy.nextDelay(afterFailures: 4) == nil)
        #expect(RetryPolicy(maxAttempts: 1, baseDelay: .seconds(1), maxDelay: .seconds(1)).nextDelay(afterFailures: 1) == nil)
        #expect(RetryPolicy(maxAttempts: 0, baseDelay: .seconds(1), maxDelay: .seconds(1)).maxAttempts == 1)

        // The registrar's loop: retry until stopped, a minute at most.
        let forever = RetryPolicy.unlimited(baseDelay: .seconds(1), maxDelay: .seconds(60))
        #expect(forever.maxAttempts == nil)
        var zero = ConstantGenerator(value: 0)
        #expect(forever.nextDelay(afterFailures: 1, using: &zero) == .milliseconds(500))
        #expect(forever.nextDelay(afterFailures: 1_000_000, using: &zero) == .seconds(30))
        #expect(forever.delayBounds(afterFailures: 7) == .seconds(30) ... .seconds(60))
    }

    @Test func fixedScheduleIsFollowedExactly() {
        let schedule = RetryPolicy(delays: [.seconds(5), .seconds(300), .seconds(1800)])
        #expect(schedule.maxAttempts == 4)
        #expect(schedule.maxDelay == .seconds(1800))
        var seeded = SeededGenerator(state: 7)
        #expect(schedule.nextDelay(afterFailures: 1, using: &seeded) == .seconds(5))
        #expect(schedule.nextDelay(afterFailures: 2, using: &seeded) == .seconds(300))
        #expect(schedule.nextDelay(afterFailures: 3, using: &seeded) == .seconds(1800))
        #expect(schedule.nextDelay(afterFailures: 4) == nil)
        #expect(schedule.delay(afterFailures: 1, retryAfter: .seconds(60)) == .seconds(60))
        #expect(schedule.delay(afterFailures: 1, retryAfter: .seconds(9000)) == .seconds(1800))

        // Longer than the list: its last delay repeats.
        let repeating = RetryPolicy(delays: [.seconds(1), .seconds(2)], maxAttempts: nil)
        #expect(repeating.nextDelay(afterFailures: 50) == .seconds(2))
        #expect(RetryPolicy(delays: []).nextDelay(afterFailures: 1) == nil)
        #expect(RetryPolicy(delays: [], maxAttempts: 3).nextDelay(afterFailures: 1) == .zero)
    }

    @Test func retryAfterInSeconds() {
        #expect(parseRetryAfter("7") == .seconds(7))
        #expect(parseRetryAfter(" 7 ") == .seconds(7))
        #expect(parseRetryAfter("0") == .zero)
        #expect(parseRetryAfter("99999999999999999999999")! > .seconds(1_000_000_000))
        for invalid in [nil, "", " ", "-1", "+5", "1.5", "5s", "soon"] {
            #expect(parseRetryAfter(invalid) == nil, "\(invalid ?? "nil")")
        }
    }

    @Test func retryAfterAsAnHTTPDate() {
        // 1994-11-06T08:49:37Z, RFC 9110's example date.
        let date = Date(timeIntervalSince1970: 784_111_777)
        let before = date.addingTimeInterval(-120)
        #expect(parseHTTPDate("Sun, 06 Nov 1994 08:49:37 GMT") == date)
        #expect(parseHTTPDate("Sunday, 06-Nov-94 08:49:37 GMT") == date)
        #expect(parseHTTPDate("Sun Nov  6 08:49:37 1994") == date)
        #expect(parseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", now: before) == .seconds(120))
        #expect(parseRetryAfter("Sunday, 06-Nov-94 08:49:37 GMT", now: before) == .seconds(120))
        #expect(parseRetryAfter("Sun Nov  6 08:49:37 1994", now: before) == .seconds(120))
        // A date already past: no wait.
        #expect(parseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", now: date.addingTimeInterval(5)) == .zero)
        #expect(parseHTTPDate("Thu, 29 Feb 2024 23:59:60 GMT") == Date(timeIntervalSince1970: 1_709_251_200))
        #expect(parseHTTPDate("Sat, 01 Jan 2000 00:00:00 GMT") == Date(timeIntervalSince1970: 946_684_800))
        for invalid in [
            "Sun, 06 Nov 1994 08:49:37 PST", "Sun, 6 Nov 1994 08:49:37 GMT", "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT", "Sun, 06 Nov 1994 08:49 GMT", "06 Nov 1994 08:49:37 GMT", "tomorrow",
        ] {
            #expect(parseRetryAfter(invalid) == nil, "\(invalid)")
        }
    }
}
