import CallbackStore
import Testing

@Suite struct ArrivalWaitersTests {
    /// A wait whose time runs out releases only itself, not another wait on the same id.
    @Test func oneWaitTimingOutLeavesTheOthersWaiting() async {
        let arrivals = ArrivalWaiters(latest: 5)
        async let patient = arrivals.wait(after: 5, timeout: .seconds(20))
        async let hasty = arrivals.wait(after: 5, timeout: .milliseconds(50))
        #expect(await hasty == false)
        try? await Task.sleep(for: .milliseconds(100))
        arrivals.stored(upTo: 6)
        #expect(await patient == true)
    }

    @Test func aStoreBeforeTheWaitAnswersAtOnce() async {
        let arrivals = ArrivalWaiters()
        arrivals.stored(upTo: 3)
        #expect(await arrivals.wait(after: 2, timeout: .seconds(20)))
        #expect(await arrivals.wait(after: 3, timeout: .milliseconds(20)) == false)
        arrivals.stored(upTo: 2)  // never backwards
        #expect(arrivals.latest == 3)
    }

    @Test func manyWaitersAreWokenByOneStore() async {
        let arrivals = ArrivalWaiters()
        let results = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<20 { group.addTask { await arrivals.wait(after: 0, timeout: .seconds(20)) } }
            try? await Task.sleep(for: .milliseconds(50))
            arrivals.stored(upTo: 1)
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(results == Array(repeating: true, count: 20))
    }
}
