import CallbackStore
import Delivery
import Dispatch
import Foundation
import HTTP1
import HTTPServer
import Logging
import SQLiteStore
import Synchronization
import TestSupport
import Testing
import Vocabulary

let apiToken = "test-token-0123456789"
let bearer = "Authorization: Bearer \(apiToken)"

/// The consumer API on a real server (127.0.0.1, an ephemeral port) over a real journal store in a
/// temporary directory, with a reader for the pages and one for the hub, as `serve` wires it.
final class APIFixture: Sendable {
    let directory: TemporaryDirectory
    let store: JournalStore
    let handler: ConsumerAPIHandler
    let server: HTTPServer
    let port: Int
    let logs = LogCapture()

    init(limits: ConsumerAPIHandler.Limits = ConsumerAPIHandler.Limits(), configure: (inout HTTPServerConfiguration) -> Void = { _ in })
        throws
    {
        directory = try TemporaryDirectory()
        store = try JournalStore(
            databasePath: directory.file("callbacks.sqlite"), logger: logs.logger(level: .warning),
            onFatal: { error in Issue.record("the store stopped: \(error)") })
        handler = ConsumerAPIHandler(
            tokens: [ConsumerAPIToken("another-token")!, ConsumerAPIToken(apiToken)!], reader: try store.reader(),
            arrivals: try store.reader(), limits: limits, logger: logs.logger(level: .warning))
        var configuration = HTTPServerConfiguration()
        configuration.port = 0
        configuration.ioQueueCount = 2
        configure(&configuration)
        server = HTTPServer(configuration: configuration, handler: handler, logger: logs.logger(level: .critical))
        handler.start()
        try server.start()
        port = server.localPort ?? 0
    }

    /// The part's stop: long polls answered, streams finished, then the server drained.
    func stop() async {
        handler.stop()
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            server.shutdown(gracePeriod: .seconds(5)) { done.resume() }
        }
    }

    deinit {
        handler.stop()
        let done = DispatchSemaphore(value: 0)
        server.shutdown(gracePeriod: .seconds(1)) { done.signal() }
        _ = done.wait(timeout: .now() + 10)
        store.close()
    }

    /// Stores `callback` through the intake and returns its receipt and when its commit completed
    /// (the moment the callback port would answer 200).
    func commit(_ callback: NewCallback) async throws -> (receipt: CommitReceipt, committedAt: ContinuousClock.Instant) {
        let result = await withCheckedContinuation {
            (done: CheckedContinuation<Result<(CommitReceipt, ContinuousClock.Instant), CallbackStoreError>, Never>) in
            let accepted = store.submit(callback) { result in done.resume(returning: result.map { ($0, ContinuousClock.now) }) }
            if !accepted { done.resume(returning: .failure(.closed)) }
        }
        let (receipt, at) = try result.get()
        return (receipt, at)
    }

    /// Stores each in turn; returns their ids.
    func commitAll(_ callbacks: [NewCallback]) async throws -> [Int64] {
        var ids: [Int64] = []
        for callback in callbacks { ids.append(try await commit(callback).receipt.id) }
        return ids
    }

    /// Waits until the index holds `id` (the API reads the index).
    func waitUntilIndexed(_ id: Int64) async throws {
        let reader = try store.reader()
        #expect(try await reader.waitForCallbacks(after: id - 1, timeout: .seconds(10)))
    }

    /// What the API must send for `id`: the export's object.
    func dataObject(_ id: Int64) throws -> [UInt8] {
        try #require(try store.reader().callback(id: id)).jsonObject()
    }
}

func apiCallback(
    _ service: String = "CarrierService", requestID: String? = "req-1", device: String = "990013907835573", key: String = UUID().uuidString
) -> NewCallback {
    NewCallback(
        receivedAt: Timekeeping.wallClockMilliseconds(), service: service, requestID: requestID,
        deviceIDs: [DeviceID(id: device, kind: "imei")], status: "Success", callbackCount: 1, remoteAddress: "192.0.2.7",
        dedupKey: key, body: Array(#"{"requestId":"\#(requestID ?? "")","status":"Success","password":"<redacted>"}"#.utf8))
}

/// A JSON response body as Foundation objects, for field checks.
func jsonObject(_ response: ClientResponse) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
}

/// The ids of a `/v1/callbacks` answer, and its `next`.
func page(_ response: ClientResponse) throws -> (ids: [Int64], next: Int64) {
    let object = try jsonObject(response)
    let callbacks = try #require(object["callbacks"] as? [[String: Any]])
    return (callbacks.map { ($0["id"] as? NSNumber)?.int64Value ?? -1 }, (object["next"] as? NSNumber)?.int64Value ?? -1)
}

/// A Server-Sent Events client over a TestClient: the head, then events as they arrive.
final class EventStreamClient: @unchecked Sendable {
    let client: TestClient
    private(set) var head: ClientResponse?
    private var parser = ServerSentEventParser()
    private var ready: [ServerSentEvent] = []
    /// Comments are not events; the raw chunks are kept to see them.
    private(set) var chunks: [[UInt8]] = []

    init(port: Int, path: String, headers: [String] = [bearer], timeout: Duration = .seconds(10)) throws {
        client = try TestClient(port: port, timeout: timeout)
        try client.sendRequest("GET", path, headers: headers)
        head = try client.readHead()
    }

    /// The next event (reading chunks as needed); nil when the body ended.
    func next() throws -> ServerSentEvent? {
        while ready.isEmpty {
            guard let chunk = try client.readChunk() else { return nil }
            chunks.append(chunk)
            ready += try parser.append(chunk)
        }
        return ready.removeFirst()
    }

    /// The next raw chunk.
    func nextChunk() throws -> [UInt8]? {
        let chunk = try client.readChunk()
        if let chunk {
            chunks.append(chunk)
            ready += try parser.append(chunk)
        }
        return chunk
    }

    var lastEventID: String? { parser.lastEventID }

    func close() { client.reset() }
}
