import CallbackStore
import Foundation
import Glibc
import Logging
import SQLiteStore
import Synchronization
import TestSupport
import Testing
import ThingSpace
import ThingSpaceSandbox

@testable import ListenerApp

/// The whole listener in this process: real sockets on 127.0.0.1, a real
/// SQLite file, the real sandbox over libcurl; no binary spawned.
final class InProcessListener: Sendable {
    let directory: TemporaryDirectory
    let logs = LogCapture()
    let service: ListenerService
    private let next: NextConfiguration
    private let running: Task<Result<Void, ListenerError>, Never>

    init(_ adjust: (inout ListenerConfiguration) -> Void = { _ in }) async throws {
        directory = try TemporaryDirectory()
        var configuration = ListenerConfiguration()
        configuration.http.port = 0
        configuration.admin.port = 0
        configuration.storage.path = directory.file("callbacks.sqlite")
        configuration.callbacks.username = "listener-user"
        configuration.callbacks.password = Secret("listener-pass")
        adjust(&configuration)
        let next = NextConfiguration(configuration)
        self.next = next
        service = ListenerService(
            configuration: configuration,
            reload: { () async throws(ConfigurationError) -> ListenerConfiguration in next.value.withLock { $0 } },
            logger: logs.logger("listener", level: .debug), environment: [:]
        )
        let service = service
        running = Task {
            do throws(ListenerError) {
                try await service.run()
                return .success(())
            } catch {
                return .failure(error)
            }
        }
    }

    /// Serving, or why not.
    func started() async throws -> Int {
        guard await service.waitUntilServing() else {
            if case .failure(let error) = await running.value { throw error }
            throw ListenerError.partFailed("test", "stopped before serving")
        }
        return try #require(service.callbackPort)
    }

    /// The next reload reads this configuration.
    func changeConfiguration(_ adjust: (inout ListenerConfiguration) -> Void) {
        next.value.withLock { adjust(&$0) }
    }

    func stop() async throws {
        await service.stop()
        try await running.value.get()
    }

    var outcome: Result<Void, ListenerError> { get async { await running.value } }
}

/// What the next reload reads.
final class NextConfiguration: Sendable {
    let value: Mutex<ListenerConfiguration>
    init(_ configuration: ListenerConfiguration) { value = Mutex(configuration) }
}

func callbackBody(password: String = "listener-pass", requestID: String = UUID().uuidString) -> [UInt8] {
    Array(
        """
        {"username":"listener-user","password":"\(password)","requestId":"\(requestID)",\
        "deviceIds":[{"id":"89148000000800000001","kind":"iccid"}],"status":"Success","callbackCount":1}
        """.utf8)
}

@Suite(.serialized) struct ListenerServiceTests {
    @Test func storesACallbackAndAnswersWithItsID() async throws {
        let listener = try await InProcessListener()
        let port = try await listener.started()
        let client = try TestClient(port: port)
        let response = try client.post("/callbacks/CarrierService", json: callbackBody())
        #expect(response.status == 200)
        #expect(response.bodyText.hasPrefix("{\"status\":\"stored\",\"id\":1"))
        let repeated = try client.post("/callbacks/CarrierService", json: callbackBody(requestID: "r-1"))
        let again = try client.post("/callbacks/CarrierService", json: callbackBody(requestID: "r-1"))
        #expect(repeated.status == 200 && again.status == 200)
        // The index links the repeat, just behind the acknowledgement.
        let reader = try SQLiteCallbackStore(path: listener.directory.file("callbacks.sqlite"), readOnly: true)
        #expect(try await reader.waitForCallbacks(after: 2, timeout: .seconds(5)))
        #expect(try eventually { try reader.callback(id: 3)?.duplicateOf == 2 })
        try await listener.stop()
        #expect(!listener.logs.lines.joined().contains("listener-pass"))
    }

    @Test func listeningFailureLeavesNothingRunning() async throws {
        // Occupy a port, then ask the listener for it.
        let blocker = try InProcessListener.occupyPort()
        let listener = try await InProcessListener { $0.http.port = blocker.port }
        await #expect(throws: ListenerError.self) { _ = try await listener.started() }
        guard case .failure(.listenFailed) = await listener.outcome else {
            Issue.record("expected listenFailed, got \(await listener.outcome)")
            return
        }
        // The admin server had started before the callback port failed: it is closed again.
        let adminPort = try #require(listener.service.adminPort)
        #expect(throws: TestClientError.self) { _ = try TestClient(port: adminPort) }
        close(blocker.fd)
    }

    @Test func adminReportsServingAndDrain() async throws {
        let listener = try await InProcessListener()
        _ = try await listener.started()
        let admin = try TestClient(port: try #require(listener.service.adminPort))
        #expect(try admin.get("/healthz").status == 200)
        #expect(try admin.get("/readyz").bodyText.hasPrefix("ready\n"))
        let metrics = try admin.get("/metrics").bodyText
        #expect(metrics.contains("registration_state"))
        try await listener.stop()
    }

    @Test func reloadChangesThePasswordsAccepted() async throws {
        let listener = try await InProcessListener()
        let port = try await listener.started()
        let client = try TestClient(port: port)
        #expect(try client.post("/callbacks/DeviceUsage", json: callbackBody(password: "rotated-pass")).status == 403)
        listener.changeConfiguration {
            $0.callbacks.password = Secret("rotated-pass")
            $0.callbacks.previousPassword = Secret("listener-pass")
            $0.callbacks.allowedSources = [CIDR("127.0.0.0/8")!]
            $0.http.port = 1  // needs a restart: named, not applied
        }
        await listener.service.reload()
        #expect(try client.post("/callbacks/DeviceUsage", json: callbackBody(password: "rotated-pass")).status == 200)
        #expect(try client.post("/callbacks/DeviceUsage", json: callbackBody(password: "listener-pass")).status == 200)
        #expect(try client.post("/callbacks/DeviceUsage", json: callbackBody(password: "other")).status == 403)
        let reloaded = try #require(listener.logs.all.first { $0.message.hasPrefix("configuration reloaded") })
        #expect("\(reloaded.metadata["reload.restart_needed_for"] ?? "")".contains("http.host/port"))

        // The allow-list is live too.
        listener.changeConfiguration { $0.callbacks.allowedSources = [CIDR("10.0.0.0/8")!] }
        await listener.service.reload()
        #expect(try client.post("/callbacks/DeviceUsage", json: callbackBody()).status == 403)
        try await listener.stop()
        let secrets = ["rotated-pass", "listener-pass"]
        #expect(listener.logs.lines.filter { line in secrets.contains { line.contains($0) } }.isEmpty)
    }

    @Test func registersWithTheSandboxAndDeregistersAtStop() async throws {
        let listener = try await InProcessListener { $0.thingspace.sandbox = true }
        let port = try await listener.started()
        let host = try #require(listener.service.sandboxHost)
        let expected = Set(["CarrierService", "DeviceUsage"].map { "http://127.0.0.1:\(port)/callbacks/\($0)" })
        #expect(eventually(within: .seconds(20)) { Set(host.sandbox.registrations.map(\.url)) == expected })
        // /readyz waits for the registration; it is there now.
        let admin = try TestClient(port: try #require(listener.service.adminPort))
        #expect(eventually { (try? admin.get("/readyz").bodyText)?.hasPrefix("ready\n") == true })
        // The sandbox delivers to the registered URL and the listener stores it.
        #expect(host.sandbox.deliverSample(serviceName: "CarrierService"))
        #expect(
            eventually {
                String(decoding: listener.service.metrics.exposition(), as: UTF8.self).contains(
                    "callbacks_stored_total{service=\"CarrierService\"} 1")
            })
        try await listener.stop()
        #expect(host.sandbox.registrations.isEmpty)
        #expect(host.sandbox.journal.filter { $0.route == .deregister }.count == 2)
        let secret = host.sandbox.credentials.clientSecret
        #expect(!listener.logs.lines.contains { $0.contains(secret) })
    }
}

extension InProcessListener {
    /// A listening socket on a free loopback port.
    static func occupyPort() throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 1) == 0 else { throw TestClientError.connectFailed(errno) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }
}
