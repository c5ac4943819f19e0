import CallbackStore
import Delivery
import Testing

@Suite struct DeliveryPolicyTests {
    let now: Int64 = 1_000_000_000
    var destination: Destination {
        var destination = Destination(name: "orders", url: "http://127.0.0.1:1/", secret: testSecret)
        destination.retrySchedule = [.seconds(5), .seconds(300)]
        destination.maxAge = .seconds(3600)
        return destination
    }

    func record(attempts: Int = 0, receivedAt: Int64? = nil) -> DeliveryRecord {
        DeliveryRecord(
            destination: "orders", callbackID: 7, state: attempts == 0 ? .pending : .retrying, attempts: attempts, nextAttemptAt: now,
            orderingKey: nil, receivedAt: receivedAt ?? now - 1_000)
    }

    @Test(arguments: [200, 201, 204, 299])
    func twoHundredsDeliver(_ status: Int) {
        let decision = DeliveryPolicy.decide(
            record(), result: .response(status: status, retryAfter: nil), destination: destination, now: now)
        #expect(decision.record.state == .delivered && decision.record.attempts == 1 && decision.record.nextAttemptAt == nil)
        #expect(decision.outcome == .delivered && !decision.disablesDestination && decision.pauseUntil == nil)
    }

    @Test func failuresFollowTheScheduleThenDie() {
        var current = record()
        let first = DeliveryPolicy.decide(current, result: .response(status: 500, retryAfter: nil), destination: destination, now: now)
        #expect(first.record.state == .retrying && first.record.nextAttemptAt == now + 5_000 && first.record.lastError == "HTTP 500")
        #expect(first.outcome == .httpError)
        current = first.record
        let second = DeliveryPolicy.decide(current, result: .timeout, destination: destination, now: now + 5_000)
        #expect(second.record.state == .retrying && second.record.nextAttemptAt == now + 305_000)
        #expect(second.outcome == .timeout && second.record.lastStatus == nil && second.record.lastError == "timed out after 15 s")
        let third = DeliveryPolicy.decide(second.record, result: .connectionFailed("could not connect"), destination: destination, now: now)
        #expect(third.record.state == .dead && third.record.attempts == 3 && third.outcome == .connectionError)
    }

    @Test func anEmptyScheduleMeansOneAttempt() {
        var destination = self.destination
        destination.retrySchedule = []
        let decision = DeliveryPolicy.decide(record(), result: .response(status: 502, retryAfter: nil), destination: destination, now: now)
        #expect(decision.record.state == .dead)
    }

    @Test func pastTheMaximumAgeTheNextAttemptIsNotScheduled() {
        let old = record(receivedAt: now - 3_598_000)
        let decision = DeliveryPolicy.decide(old, result: .response(status: 500, retryAfter: nil), destination: destination, now: now)
        #expect(decision.record.state == .dead, "5 s from now is past the hour")
    }

    @Test(arguments: [429, 503])
    func retryAfterIsALowerBoundAndPausesTheDestination(_ status: Int) {
        let long = DeliveryPolicy.decide(
            record(), result: .response(status: status, retryAfter: .seconds(60)), destination: destination, now: now)
        #expect(long.record.nextAttemptAt == now + 60_000 && long.pauseUntil == now + 60_000 && long.outcome == .throttled)
        let short = DeliveryPolicy.decide(
            record(), result: .response(status: status, retryAfter: .seconds(1)), destination: destination, now: now)
        #expect(short.record.nextAttemptAt == now + 5_000, "the schedule still applies")
        let none = DeliveryPolicy.decide(record(), result: .response(status: status, retryAfter: nil), destination: destination, now: now)
        #expect(none.pauseUntil == nil && none.record.nextAttemptAt == now + 5_000)
        let tooLate = DeliveryPolicy.decide(
            record(), result: .response(status: status, retryAfter: .seconds(7200)), destination: destination, now: now)
        #expect(tooLate.record.state == .dead, "a Retry-After past the maximum age")
    }

    @Test func goneDisablesAndKeepsTheCallbackFirstInLine() {
        let decision = DeliveryPolicy.decide(
            record(attempts: 1), result: .response(status: 410, retryAfter: nil), destination: destination, now: now)
        #expect(decision.disablesDestination && decision.outcome == .gone)
        #expect(decision.record.state == .retrying && decision.record.nextAttemptAt == now && decision.record.attempts == 1)
    }

    @Test func otherStatusesAreFailures() {
        for status in [100, 301, 400, 404, 500] {
            let decision = DeliveryPolicy.decide(
                record(), result: .response(status: status, retryAfter: nil), destination: destination, now: now)
            #expect(decision.outcome == .httpError && decision.record.state == .retrying, "\(status)")
        }
    }
}
