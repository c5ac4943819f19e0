import Synchronization

// A SQLite connection and its statement cache may be used by one thread at a
// time. This checks it, rather than only saying so: every use is bracketed,
// and a second thread entering while one is inside traps at once, naming
// the connection, instead of corrupting the statement cache.
#if canImport(Glibc)
    import CallbackStore
    import Glibc
#endif

final class ExclusiveUse: Sendable {
    private let holder = Atomic<UInt>(0)
    /// Nesting on the holder's thread (a statement inside a transaction); only the holder touches it.
    private let depth = Atomic<Int>(0)
    private let what: String

    init(_ what: String) { self.what = what }

    func run<Result, Failure: Error>(_ body: () throws(Failure) -> Result) throws(Failure) -> Result {
        let me = UInt(pthread_self())
        if holder.load(ordering: .acquiring) == me {
            depth.add(1, ordering: .relaxed)
            defer { depth.subtract(1, ordering: .relaxed) }
            return try body()
        }
        let (exchanged, other) = holder.compareExchange(expected: 0, desired: me, ordering: .acquiring)
        precondition(exchanged, "\(what) used from two threads at once (thread \(other) is inside)")
        defer { holder.store(0, ordering: .releasing) }
        return try body()
    }
}
