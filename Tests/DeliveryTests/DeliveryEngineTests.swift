import CallbackStore
import Delivery
import Foundation
import JSON
import Logging
import SQLiteStore
import Synchronization
import TestSupport
import Testing
import Vocabulary

let testSecret = WebhookSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")!

/// A store, a SQLite ledger and an engine, in a temporary directory; time may be moved on.
final class DeliveryFixture: Sendable {
    let directory: TemporaryDirectory
    let store = InMemoryCallbackStore()
    let ledger: SQLiteDeliveryLedger
    let logs = LogCapture()
    let offset = ClockOffset()
    let fatal = Collector<String>()

    init() throws {
        directory = try TemporaryDirectory()
        ledger = try SQLiteDeliveryLedger(path: directory.file("deliveries.sqlite"))
    }

    deinit {
        ledger.close()
        store.close()
    }

    func engine() -> DeliveryEngine {
        let offset = self.offset
        let fatal = self.fatal
        return DeliveryEngine(
            ledger: ledger, reader: store, logger: logs.logger(),
            clock: { Timekeeping.wallClockMilliseconds() + offset.milliseconds },
            onFatal: { fatal.append("\($0)") })
    }

    /// Moves the engine's clock on (retry schedules in seconds and hours pass at once).
    func advance(_ duration: Duration) { offset.add(duration.inMilliseconds) }

    @discardableResult
    func store(_ count: Int, service: String = "CarrierService", device: (Int) -> String? = { _ in nil }) async throws -> [Int64] {
        var ids: [Int64] = []
        for index in 0..<count {
            let deviceIDs = device(index).map { [DeviceID(id: $0, kind: "imei")] } ?? []
            let callback = NewCallback(
                receivedAt: Timekeeping.wallClockMilliseconds() + offset.milliseconds, service: service,
                requestID: "req-\(UUID().uuidString)", deviceIDs: deviceIDs, status: "Success", remoteAddress: "127.0.0.1",
                dedupKey: UUID().uuidString, body: Array(#"{"requestId":"r","n":\#(index)}"#.utf8))
            let receipt = await withCheckedContinuation { (done: CheckedContinuation<Result<CommitReceipt, CallbackStoreError>, Never>) in
                _ = store.submit(callback) { done.resume(returning: $0) }
            }
            ids.append(try receipt.get().id)
        }
        return ids
    }
}

func destination(_ receiver: RecordingDestination, name: String = "orders", _ configure: (inout Destination) -> Void = { _ in })
    -> Destination
{
    var destination = Destination(name: name, url: receiver.url, secret: testSecret)
    destination.timeout = .seconds(2)
    configure(&destination)
    return destination
}

final class ClockOffset: Sendable {
    private let value = Atomic<Int64>(0)
    var milliseconds: Int64 { value.load(ordering: .relaxed) }
    func add(_ milliseconds: Int64) { value.add(milliseconds, ordering: .relaxed) }
}

final class Flag: Sendable {
    private let value: Atomic<Bool>
    init(_ value: Bool) { self.value = Atomic(value) }
    var isSet: Bool { value.load(ordering: .relaxed) }
    func set(_ new: Bool) { value.store(new, ordering: .relaxed) }
}

@Suite struct DeliveryEngineTests {
    @Test func everyCallbackIsDeliveredOnceSignedAndShapedAsTheContractSays() async throws {
        let fixture = try DeliveryFixture()
        let receiver = try RecordingDestination()
        let engine = fixture.engine()
        try engine.start([destination(receiver)])
        let ids = try await fixture.store(300)
        #expect(await eventuallyAsync { receiver.all.count >= 300 })
        try await Task.sleep(for: .milliseconds(200))
        await engine.stop()
        #expect(receiver.ids.sorted() == ids, "each exactly once")
        let first = try #require(receiver.all.first)
        #expect(first.contentType == "application/json")
        #expect(first.userAgent.hasPrefix("thingspace-listener/"))
        let timestamp = try #require(Int64(first.timestamp))
        #expect(abs(timestamp - Timekeeping.wallClockMilliseconds() / 1000) < 60)
        #expect(first.signature == WebhookMessage.signature(id: first.id, timestamp: timestamp, body: first.body, secrets: [testSecret]))
        let stored = try #require(try fixture.store.callback(id: first.callbackID))
        #expect(first.body == WebhookMessage.body(for: stored))
        let text = String(decoding: first.body, as: UTF8.self)
        #expect(text.hasPrefix(#"{"type":"thingspace.callback","timestamp":""#))
        #expect(text.contains(#""data":{"id":\#(first.callbackID),"#))
        // The ledger knows.
        #expect(try fixture.ledger.list(DeliveryFilter(destination: "orders", state: .delivered, limit: 1000)).count == 300)
        #expect(try fixture.ledger.backlog(destination: "orders") == DeliveryBacklog())
    }

    @Test func aNewDestinationStartsAtTheNewestCallbackAndOnlyMatchingOnesGo() async throws {
        let fixture = try DeliveryFixture()
        try await fixture.store(5)
        let receiver = try RecordingDestination()
        let engine = fixture.engine()
        try engine.start([destination(receiver) { $0.services = ["DeviceUsage"] }])
        let usage = try await fixture.store(3, service: "DeviceUsage")
        try await fixture.store(3, service: "CarrierService")
        #expect(await eventuallyAsync { receiver.all.count >= 3 })
        try await Task.sleep(for: .milliseconds(300))
        await engine.stop()
        #expect(receiver.ids.sorted() == usage)
    }

    @Test func repeatsGoOnlyToDestinationsThatAskForThem() async throws {
        let fixture = try DeliveryFixture()
        let plain = try RecordingDestination()
        let all = try RecordingDestination()
        let engine = fixture.engine()
        try engine.start([destination(plain), destination(all, name: "audit") { $0.includeDuplicates = true }])
        let callback = NewCallback(
            receivedAt: Timekeeping.wallClockMilliseconds(), service: "CarrierService", remoteAddress: "127.0.0.1", dedupKey: "same",
            body: Array("{}".utf8))
        for _ in 0..<2 {
            _ = await withCheckedContinuation { done in _ = fixture.store.submit(callback) { done.resume(returning: $0) } }
        }
        #expect(await eventuallyAsync { all.all.count >= 2 && plain.all.count >= 1 })
        try await Task.sleep(for: .milliseconds(300))
        await engine.stop()
        #expect(plain.ids == [1])
        #expect(all.ids.sorted() == [1, 2])
    }

    @Test func aFailingReceiverGetsTheSameWebhookIDUntilItAnswers200() async throws {
        let fixture = try DeliveryFixture()
        let receiver = try RecordingDestination { _, attempt in attempt <= 2 ? .status(500) : .status(200) }
        let engine = fixture.engine()
        try engine.start([destination(receiver) { $0.retrySchedule = [.milliseconds(50), .milliseconds(50), .seconds(3600)] }])
        let ids = try await fixture.store(3)
        #expect(await eventuallyAsync { receiver.all.count >= 9 })
        try await Task.sleep(for: .milliseconds(300))
        await engine.stop()
        #expect(receiver.ids.sorted() == ids.flatMap { [$0, $0, $0] })
        let record = try #require(try fixture.ledger.record(destination: "orders", callbackID: ids[0]))
        #expect(record.state == .delivered && record.attempts == 3 && record.lastError == nil)
    }

    @Test func retryAfterIsHonouredAndPausesTheDestination() async throws {
        let fixture = try DeliveryFixture()
        let receiver = try RecordingDestination { _, attempt in
            attempt == 1 ? .status(503, headers: [("Retry-After", "120")]) : .status(200)
        }
        let engine = fixture.engine()
        try engine.start([destination(receiver) { $0.retrySchedule = [.milliseconds(10)] }])
        let ids = try await fixture.store(1)
        #expect(await eventuallyAsync { receiver.all.count >= 1 })
        try await Task.sleep(for: .milliseconds(500))
        #expect(receiver.all.count == 1, "no attempt before Retry-After, whatever the schedule says")
        let record = try #require(try fixture.ledger.record(destination: "orders", callbackID: ids[0]))
        #expect(record.state == .retrying && record.lastStatus == 503)
        #expect((record.nextAttemptAt ?? 0) >= (record.lastAttemptAt ?? 0) + 120_000)
        fixture.advance(.seconds(121))
        #expect(await eventuallyAsync { receiver.all.count >= 2 })
        await engine.stop()
    }

    @Test func deadAfterTheLastAttemptThenRetriedByHand() async throws {
        let fixture = try DeliveryFixture()
        let failing = Flag(true)
        let receiver = try RecordingDestination { _, _ in failing.isSet ? .status(500) : .status(200) }
        let engine = fixture.engine()
        try engine.start([destination(receiver) { $0.retrySchedule = [.milliseconds(20)] }])
        let ids = try await fixture.store(2)
        #expect(try await eventuallyAsync { try fixture.ledger.backlog(destination: "orders").dead == 2 })
        #expect(receiver.all.count == 4, "1 + the schedule's one retry, each")
        failing.set(false)
        // What `deliveries retry --dead` does, beside the running engine (a connection of its own).
        let cli = try SQLiteDeliveryLedger(path: fixture.ledger.path, durableCommits: true)
        #expect(try cli.retry(destination: "orders", ids: nil, now: Timekeeping.wallClockMilliseconds()) == 2)
        cli.close()
        #expect(try await eventuallyAsync { try fixture.ledger.list(DeliveryFilter(state: .delivered)).count == 2 })
        await engine.stop()
        #expect(receiver.ids.sorted() == ids.flatMap { [$0, $0, $0] })
    }

    @Test func pastTheMaximumAgeAFailureIsDeadAtOnce() async throws {
        let fixture = try DeliveryFixture()
        let receiver = try RecordingDestination { _, _ in .status(500) }
        let engine = fixture.engine()
        try engine.start([destination(receiver) { $0.maxAge = .seconds(1) }])
        try await fixture.store(1)
        #expect(try await eventuallyAsync { try fixture.ledger.backlog(destination: "orders").dead == 1 })
        await engine.stop()
        #expect(receiver.all.count == 1, "the schedule's first wait (5 s) is past the maximum age")
    }

    @Test func goneDisablesTheDestinationUntilAReload() async throws {
        let fixture = try DeliveryFixture()
        let gone = Flag(true)
        let receiver = try RecordingDestination { _, _ in gone.isSet ? .status(410) : .status(200) }
        let engine = fixture.engine()
        let configured = [destination(receiver) { $0.maxInFlight = 1 }]
        try engine.start(configured)
        let ids = try await fixture.store(5)
        #expect(try await eventuallyAsync { try fixture.ledger.disabled(destination: "orders") != nil })
        try await Task.sleep(for: .milliseconds(300))
        #expect(receiver.all.count == 1, "nothing more goes to a disabled destination")
        #expect(engine.statuses.first?.disabled != nil)
        gone.set(false)
        try await engine.reconfigure(configured)
        #expect(try await eventuallyAsync { try fixture.ledger.list(DeliveryFilter(state: .delivered)).count == 5 })
        await engine.stop()
        #expect(Set(receiver.ids) == Set(ids))
        #expect(try fixture.ledger.disabled(destination: "orders") == nil)
    }

    @Test func oneDevicesCallbacksArriveInOrderAndAFailingOneHoldsBackOnlyThatDevice() async throws {
        let fixture = try DeliveryFixture()
        // Device a's first callback fails twice; everything else succeeds at once.
        let firstOfA = Collector<String>()
        let receiver = try RecordingDestination { message, attempt in
            let text = String(decoding: message.body, as: UTF8.self)
            if text.contains(#""id":"dev-a""#), firstOfA.values.first ?? message.id == message.id {
                firstOfA.append(message.id)
                return attempt <= 2 ? .status(500) : .status(200)
            }
            return .status(200)
        }
        let engine = fixture.engine()
        try engine.start([
            destination(receiver) {
                $0.ordering = .device
                $0.retrySchedule = [.milliseconds(300), .milliseconds(300)]
            }
        ])
        let ids = try await fixture.store(40) { ["dev-a", "dev-b", "dev-c", "dev-d"][$0 % 4] }
        #expect(await eventuallyAsync { Set(receiver.ids).count == 40 })
        await engine.stop()
        // Every device's callbacks in id order, each id's attempts together.
        for device in 0..<4 {
            let deviceIDs = ids.enumerated().filter { $0.offset % 4 == device }.map(\.element)
            var seen: [Int64] = []
            for id in receiver.ids where deviceIDs.contains(id) && seen.last != id { seen.append(id) }
            #expect(seen == deviceIDs, "device \(device)")
        }
        // While a's head was failing, the other devices were served.
        let headOfA = ids[0]
        let lastAttemptOfA = try #require(receiver.ids.lastIndex(of: headOfA))
        #expect(receiver.ids[..<lastAttemptOfA].count { $0 != headOfA } >= 20)
    }

    @Test func aHangingDestinationDoesNotHoldBackAnother() async throws {
        let fixture = try DeliveryFixture()
        let hanging = try RecordingDestination { _, _ in .hang }
        let fast = try RecordingDestination()
        let engine = fixture.engine()
        try engine.start([destination(hanging, name: "slow") { $0.timeout = .seconds(30) }, destination(fast)])
        let ids = try await fixture.store(200)
        #expect(await eventuallyAsync(within: .seconds(10)) { fast.all.count >= 200 })
        #expect(fast.ids.sorted() == ids)
        #expect(hanging.all.count == 16, "maxInFlight attempts open, no more")
        #expect(engine.statuses.first { $0.name == "slow" }?.inFlight == 16)
        await engine.stop(grace: .milliseconds(100))
    }

    @Test func afterAStopTheNextEngineDeliversWhatIsLeftWithTheSameIDs() async throws {
        let fixture = try DeliveryFixture()
        let receiver = try RecordingDestination()
        let first = fixture.engine()
        try first.start([destination(receiver) { $0.maxInFlight = 2 }])
        let ids = try await fixture.store(500)
        #expect(await eventuallyAsync { receiver.all.count >= 50 })
        await first.stop()
        let second = fixture.engine()
        try second.start([destination(receiver) { $0.maxInFlight = 2 }])
        #expect(await eventuallyAsync { Set(receiver.ids).count >= 500 })
        await second.stop()
        #expect(Set(receiver.ids) == Set(ids))
        #expect(receiver.all.count - 500 <= 2, "only what was in flight at the stop is sent again")
        #expect(fixture.fatal.values.isEmpty)
    }
}
