import Foundation
import Synchronization
import TestSupport
import Testing

/// The service as systemd and an operator see it, with the real binary:
/// socket activation, sd_notify (READY, WATCHDOG, RELOADING, STOPPING), the
/// admin listener, SIGHUP reloads and the log formats.
@Suite(.serialized) struct OperationsEndToEndTests {
    static let socketActivate = "/usr/bin/systemd-socket-activate"
    static let sqliteShell = "/usr/bin/sqlite3"
    static let hasSocketActivate = Testing.ConditionTrait.enabled(
        if: FileManager.default.isExecutableFile(atPath: socketActivate),
        "systemd-socket-activate is not installed (Debian: apt-get install systemd)")
    static let hasSQLiteShell = Testing.ConditionTrait.enabled(
        if: FileManager.default.isExecutableFile(atPath: sqliteShell), "sqlite3 is not installed (Debian: apt-get install sqlite3)")

    // MARK: Socket activation

    @Test(hasSocketActivate) func servesCallbacksAndAdminOnSocketsPassedBySystemd() throws {
        let directory = try OperationsDirectory()
        try directory.writeConfiguration()  // port 0: had it bound by itself, it would not be these ports
        let ports = try unusedLoopbackPorts(2)
        let (callbackPort, adminPort) = (ports[0], ports[1])
        let activator = try Subprocess(
            Self.socketActivate,
            [
                "-l", "127.0.0.1:\(callbackPort)", "-l", "127.0.0.1:\(adminPort)", "--fdname=callbacks:admin",
                listenerBinary, "serve", "--config", directory.configPath,
            ])
        try activator.waitForLine(containing: "Listening on 127.0.0.1:\(adminPort)")

        // systemd-socket-activate execs the listener on the first connection; the
        // connection waits in the passed socket's backlog meanwhile.
        let client = try TestClient(port: callbackPort, timeoutSeconds: 30)
        let response = try client.post("/callbacks/CarrierService", json: callbackBody(requestID: "activated-1"))
        #expect(response.status == 200, "\(response.bodyText)")
        try activator.waitForLine(containing: "listening for callbacks")
        #expect(activator.outputLines.contains { $0.contains("listening for callbacks") && $0.contains("address=systemd socket") })

        let health = try TestClient(port: adminPort, timeoutSeconds: 10).get("/healthz")
        #expect(health.status == 200)
        #expect(health.bodyText == "serving\n")
        #expect(
            try TestClient(port: adminPort, timeoutSeconds: 10).get("/metrics").bodyText.contains(
                "callbacks_stored_total{service=\"CarrierService\"} 1"))

        let exported = try runListenerCommand(["messages", "export", "--database", directory.databasePath])
        #expect(exported.status == 0, "\(exported.stderr)")
        #expect(exported.stdout.contains("\"requestId\":\"activated-1\""), "\(exported.stdout)")

        // After the exec the activator's pid is the listener's.
        activator.signal(SIGTERM)
        #expect(activator.waitForExit() == 0, "\(activator.outputLines.joined(separator: "\n"))")
        #expect(activator.outputLines.contains { $0.contains("stopped") })
    }

    // MARK: sd_notify

    @Test func readyComesOnceTheCallbackPortAcceptsThenWatchdogPingsThenStopping() throws {
        let directory = try OperationsDirectory()
        let notify = try NotifySocket(path: directory.path + "/notify")
        let port = try unusedLoopbackPorts(1)[0]
        try directory.writeConfiguration(port: port)
        let listener = try ListenerProcess(
            arguments: ["serve", "--config", directory.configPath],
            environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"])

        let ready = try #require(
            notify.waitFor(timeout: .seconds(30)) { $0.fields["READY"] == "1" }, "no READY=1; log:\n\(listener.logText)")
        // Connect at once: READY=1 promises the port accepts already.
        let client = try TestClient(port: port, timeoutSeconds: 10)
        #expect(ready.fields["MAINPID"] == String(listener.pid))
        #expect(ready.fields["STATUS"]?.contains("Serving callbacks") == true)
        #expect(try client.post("/callbacks/CarrierService", json: callbackBody(requestID: "after-ready")).status == 200)

        // WATCHDOG_USEC=1s: checked every 0.5 s; several pings well within 15 s.
        var pings = 0
        let window = ContinuousClock.now + .seconds(15)
        while pings < 4, let message = notify.receive(until: window) {
            if message.isWatchdogPing { pings += 1 }
        }
        #expect(pings >= 4, "only \(pings) WATCHDOG=1 in 15 s; log:\n\(listener.logText)")

        listener.signal(SIGTERM)
        let stopping = notify.waitFor(timeout: .seconds(20)) { $0.fields["STOPPING"] == "1" }
        #expect(stopping != nil, "no STOPPING=1; log:\n\(listener.logText)")
        #expect(listener.waitForExit() == 0)
    }

    @Test func aWatchdogMeantForAnotherProcessIsNotPinged() throws {
        let directory = try OperationsDirectory()
        let notify = try NotifySocket(path: directory.path + "/notify")
        try directory.writeConfiguration()
        let listener = try ListenerProcess(
            arguments: ["serve", "--config", directory.configPath],
            environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"])
        #expect(notify.waitFor(timeout: .seconds(30)) { $0.fields["READY"] == "1" } != nil, "no READY=1; log:\n\(listener.logText)")
        // Four check periods' worth: a watchdog that ignored WATCHDOG_PID would ping here.
        let ping = notify.waitFor(timeout: .seconds(2)) { $0.isWatchdogPing }
        #expect(ping == nil)
        listener.signal(SIGTERM)
        #expect(listener.waitForExit() == 0)
    }

    /// systemd sends SIGHUP (reload) or SIGTERM as soon as it reads READY=1;
    /// neither may meet the default action (death by signal).
    @Test func signalsSentTheMomentReadyArrivesAreHandled() throws {
        let directory = try OperationsDirectory()
        let notify = try NotifySocket(path: directory.path + "/notify")
        try directory.writeConfiguration()
        for first in [SIGHUP, SIGTERM, SIGHUP, SIGTERM] {
            let listener = try ListenerProcess(
                arguments: ["serve", "--config", directory.configPath], environment: ["NOTIFY_SOCKET": notify.path])
            let pid = String(listener.pid)
            let ready = notify.waitFor(timeout: .seconds(30)) { $0.fields["READY"] == "1" && $0.fields["MAINPID"] == pid }
            try #require(ready != nil, "no READY=1; log:\n\(listener.logText)")
            listener.signal(first)
            if first == SIGHUP {
                try listener.waitForLog("configuration reloaded")
                let reloaded = notify.waitFor(timeout: .seconds(20)) { $0.fields["READY"] == "1" && $0.fields["MAINPID"] == nil }
                #expect(reloaded != nil, "no READY=1 after the reload")
                #expect(listener.process.isRunning)
                listener.signal(SIGTERM)
            }
            #expect(listener.waitForExit() == 0, "log:\n\(listener.logText)")
            #expect(listener.process.terminationReason == .exit)
            #expect(listener.logLines.contains { $0.contains("stopping") && $0.contains("process.signal=SIGTERM") })
        }
    }

    /// A sqlite3 shell holds the write lock; the writer waits on it for the busy
    /// timeout (5 s), its heartbeat stands still, and after 1.5 s the watchdog
    /// stops pinging until the batch fails: about 3 s of silence, of which 2 s are asserted.
    /// The journal acknowledges while a sqlite3 shell holds the index's write lock, but the
    /// indexer cannot go on: the watchdog stops pinging (a wedged index is worth a restart), and
    /// `/readyz` shows the lag; once the lock is released everything is indexed and pings resume.
    @Test(hasSQLiteShell) func noWatchdogPingWhileTheIndexIsStuckOnALock() throws {
        let notifyDirectory = try OperationsDirectory()
        let notify = try NotifySocket(path: notifyDirectory.path + "/notify")
        let listener = try ListenerFixture(environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"])
        let process = listener.process!
        #expect(
            try TestClient(port: listener.port, timeoutSeconds: 10).post(
                "/callbacks/CarrierService", json: callbackBody(requestID: "before-lock")
            ).status == 200)
        var healthyPings = 0
        let healthyWindow = ContinuousClock.now + .seconds(15)
        while healthyPings < 2, let message = notify.receive(until: healthyWindow) {
            if message.isWatchdogPing { healthyPings += 1 }
        }
        try #require(healthyPings == 2, "no watchdog pings before the lock; log:\n\(process.logText)")

        let lock = try SQLiteWriteLock(databasePath: listener.databasePath)
        _ = notify.drain()
        let lockedAt = ContinuousClock.now
        // Durable in the journal: acknowledged at once, whatever SQLite's lock.
        #expect(
            try TestClient(port: listener.port, timeoutSeconds: 10).post(
                "/callbacks/CarrierService", json: callbackBody(requestID: "during-lock")
            ).status == 200)
        var pingTimes: [ContinuousClock.Instant] = []
        let watchUntil = lockedAt + .seconds(4)
        while let message = notify.receive(until: watchUntil) {
            if message.isWatchdogPing { pingTimes.append(message.receivedAt) }
        }
        let marks = [lockedAt] + pingTimes + [watchUntil]
        let longestSilence = zip(marks, marks.dropFirst()).map { $1 - $0 }.max() ?? .zero
        #expect(longestSilence >= .seconds(2), "pings at \(pingTimes.map { $0 - lockedAt }) after locking")
        #expect(process.logLines.contains { $0.contains("watchdog: the store writer made no progress") }, "log:\n\(process.logText)")

        // Intake is up; the index trails by the callback it cannot store yet.
        let readiness = try TestClient(port: listener.adminPort, timeoutSeconds: 10).get("/readyz")
        #expect(readiness.status == 200)
        #expect(readiness.bodyText.contains("index lag: 1 records"), "\(readiness.bodyText)")

        #expect(try lock.release() == 0)
        var resumed = 0
        let resumeWindow = ContinuousClock.now + .seconds(15)
        while resumed < 2, let message = notify.receive(until: resumeWindow) {
            if message.isWatchdogPing { resumed += 1 }
        }
        #expect(resumed == 2, "pings did not resume; log:\n\(process.logText)")
        #expect(
            try TestClient(port: listener.port, timeoutSeconds: 10).post(
                "/callbacks/CarrierService", json: callbackBody(requestID: "after-lock")
            ).status == 200)
        var stored: [String] = []
        #expect(
            eventually {
                stored = (try? listener.export().compactMap { $0["requestId"] as? String }) ?? []
                return stored.count == 3
            })
        #expect(stored == ["before-lock", "during-lock", "after-lock"])
    }

    // MARK: Admin listener

    @Test func healthReadinessAndMetricsAnswerAndTheCountersMove() throws {
        let listener = try ListenerFixture()
        let admin = try TestClient(port: listener.adminPort, timeoutSeconds: 10)
        let health = try admin.get("/healthz")
        #expect(health.status == 200)
        #expect(health.bodyText == "serving\n")
        let readiness = try admin.get("/readyz")
        #expect(readiness.status == 200)
        #expect(readiness.bodyText.hasPrefix("ready\n"))
        #expect(readiness.bodyText.contains("index lag: 0 records"))
        #expect(try admin.get("/nothing-here").status == 404)

        let before = try admin.get("/metrics")
        #expect(before.status == 200)
        #expect(before.header("Content-Type")?.hasPrefix("text/plain") == true)
        for family in [
            "http_responses_total", "callbacks_stored_total", "callbacks_duplicates_total", "callbacks_rejected_total",
            "store_commit_duration_seconds", "store_commit_batch_size", "http_open_connections", "registration_state",
            "store_index_lag_records", "store_index_lag_milliseconds",
        ] {
            #expect(before.bodyText.contains("# TYPE \(family) "), "no \(family) in:\n\(before.bodyText)")
        }

        let callbacks = try TestClient(port: listener.port, timeoutSeconds: 10)
        #expect(try callbacks.post("/callbacks/CarrierService", json: callbackBody(requestID: "metrics-1")).status == 200)
        #expect(try callbacks.post("/callbacks/CarrierService", json: callbackBody(requestID: "metrics-1")).status == 200)
        #expect(
            try callbacks.post("/callbacks/CarrierService", json: callbackBody(requestID: "metrics-2", password: "wrong")).status == 403)

        // Repeats are linked by the journal's indexer, just behind the acknowledgements.
        var after = try admin.get("/metrics").bodyText
        _ = eventually {
            after = (try? admin.get("/metrics").bodyText) ?? after
            return metricValue(after, "callbacks_duplicates_total") != metricValue(before.bodyText, "callbacks_duplicates_total")
        }
        func moved(_ series: String) -> Double? {
            guard let old = metricValue(before.bodyText, series), let new = metricValue(after, series) else { return nil }
            return new - old
        }
        #expect(moved(#"callbacks_stored_total{service="CarrierService"}"#) == 2, "\(after)")
        #expect(moved(#"callbacks_stored_total{service="DeviceUsage"}"#) == 0)
        #expect(moved("callbacks_duplicates_total") == 1)
        #expect(moved(#"callbacks_rejected_total{reason="bad_credentials"}"#) == 1)
        #expect(moved(#"callbacks_rejected_total{reason="invalid_json"}"#) == 0)
        #expect(moved(#"http_responses_total{status="200"}"#) == 2)
        #expect(moved(#"http_responses_total{status="403"}"#) == 1)
        #expect((moved("store_commit_batch_size_count") ?? 0) >= 1)
        #expect((moved("store_commit_duration_seconds_count") ?? 0) >= 1)
        #expect(metricValue(after, #"registration_state{state="off"}"#) == 1)
    }

    // MARK: SIGHUP

    @Test func sighupChangesTheCallbackPasswordAndLogLevelWithoutARestart() throws {
        let notifyDirectory = try OperationsDirectory()
        let notify = try NotifySocket(path: notifyDirectory.path + "/notify")
        let listener = try ListenerFixture(environment: ["NOTIFY_SOCKET": notify.path])
        let process = listener.process!
        let pid = process.pid
        #expect(notify.waitFor(timeout: .seconds(30)) { $0.fields["READY"] == "1" } != nil)
        #expect(
            try TestClient(port: listener.port, timeoutSeconds: 10).post(
                "/callbacks/CarrierService", json: callbackBody(requestID: "hup-1")
            ).status == 200)
        #expect(!process.logLines.contains { $0.contains("callback stored") })  // a debug line; the level is info

        let rotated = """
            {
              "http": {"host": "127.0.0.1", "port": 0, "shutdownGracePeriod": 5},
              "storage": {"path": "\(listener.databasePath)"},
              "callbacks": {"username": "listener-user", "password": "rotated-pass"},
              "admin": {"port": 0},
              "logging": {"level": "debug"}
            }
            """
        try rotated.write(toFile: listener.configPath, atomically: true, encoding: .utf8)
        process.signal(SIGHUP)
        let reloaded = try process.waitForLog("configuration reloaded")
        #expect(!reloaded.contains("reload.restart_needed_for"), "\(reloaded)")
        let reloading = notify.waitFor(timeout: .seconds(10)) { $0.fields["RELOADING"] == "1" }
        #expect(reloading?.fields["MONOTONIC_USEC"] != nil)
        #expect(notify.waitFor(timeout: .seconds(10)) { $0.fields["READY"] == "1" } != nil, "no READY=1 after RELOADING=1")

        let client = try TestClient(port: listener.port, timeoutSeconds: 10)
        let fresh = try client.post("/callbacks/CarrierService", json: callbackBody(requestID: "hup-2", password: "rotated-pass"))
        #expect(fresh.status == 200, "\(fresh.bodyText)")
        let stale = try client.post("/callbacks/CarrierService", json: callbackBody(requestID: "hup-3", password: "listener-pass"))
        #expect(stale.status == 403)
        let previous = try client.post("/callbacks/CarrierService", json: callbackBody(requestID: "hup-4", password: "old-pass"))
        #expect(previous.status == 403)  // previousPassword was removed too
        try process.waitForLog("callback stored", timeout: .seconds(10))  // debug is live

        #expect(process.process.isRunning)
        #expect(process.pid == pid)
        #expect(process.logLines.filter { $0.contains("listening for callbacks") }.count == 1)
        #expect(try listener.export().compactMap { $0["requestId"] as? String } == ["hup-1", "hup-2"])
        #expect(!process.logText.contains("rotated-pass"))
    }

    @Test func aReloadWithABadConfigurationKeepsTheRunningOne() throws {
        let listener = try ListenerFixture()
        let process = listener.process!
        try #"{"callbacks": {"username": "listener-user"}}"#.write(toFile: listener.configPath, atomically: true, encoding: .utf8)
        process.signal(SIGHUP)
        let refused = try process.waitForLog("reload refused")
        #expect(refused.contains("callbacks.password"), "\(refused)")
        #expect(
            try TestClient(port: listener.port, timeoutSeconds: 10).post("/callbacks/CarrierService", json: callbackBody(requestID: "kept"))
                .status == 200)
        #expect(process.process.isRunning)
    }

    // MARK: Log formats

    @Test func underJournaldEveryLineStartsWithASyslogPriority() throws {
        let listener = try ListenerFixture(environment: ["JOURNAL_STREAM": "8:12345"])
        let process = listener.process!
        #expect(
            try TestClient(port: listener.port, timeoutSeconds: 10).post(
                "/callbacks/CarrierService", json: callbackBody(requestID: "j", password: "wrong")
            ).status == 403)
        try process.waitForLog("callback rejected")
        process.signal(SIGTERM)
        #expect(process.waitForExit() == 0)
        let lines = process.logLines
        #expect(lines.count >= 4)
        for line in lines {
            #expect(line.range(of: #"^<[0-7]>[A-Z]+ "#, options: .regularExpression) != nil, "\(line)")
        }
        #expect(lines.contains { $0.hasPrefix("<6>INFO listening for callbacks") })
        #expect(lines.contains { $0.hasPrefix("<5>NOTICE callback rejected") })
    }

    @Test func jsonFormatWritesOneJSONObjectPerLine() throws {
        let directory = try OperationsDirectory()
        try directory.writeConfiguration(extra: #", "logging": {"format": "json"}"#)
        let listener = try ListenerProcess(arguments: ["serve", "--config", directory.configPath])
        let listening = try listener.waitForLog("listening for callbacks")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(listening.utf8)) as? [String: Any])
        let port = try listener.waitForCallbackPort()
        #expect(object["listener.address"] as? String == "127.0.0.1:\(port)")
        let rejected = try TestClient(port: port, timeoutSeconds: 10).post(
            "/callbacks/CarrierService", json: callbackBody(requestID: #"quote\"and\\slash"#, password: "wrong-secret-7"))
        #expect(rejected.status == 403)
        let malformed = try TestClient(port: port, timeoutSeconds: 10).post(
            "/callbacks/CarrierService", json: Array(#"{"requestId": "a\"b"#.utf8))
        #expect(malformed.status == 400)
        try listener.waitForLog("callback rejected")
        listener.signal(SIGTERM)
        #expect(listener.waitForExit() == 0)

        let lines = listener.logLines
        #expect(lines.count >= 4)
        for line in lines {
            let parsed = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(parsed?["level"] is String, "\(line)")
            #expect(parsed?["message"] is String, "\(line)")
            #expect(parsed?["time"] is String, "\(line)")
        }
        let levels = lines.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["level"] as? String }
        #expect(levels.contains("info"))
        #expect(levels.contains("notice"))
        #expect(!listener.logText.contains("wrong-secret-7"))
    }
}

// MARK: - Helpers

/// A temporary directory (removed at deinit) with a configuration file for the listener.
final class OperationsDirectory {
    let path: String
    var configPath: String { path + "/config.json" }
    var databasePath: String { path + "/callbacks.sqlite" }

    init() throws {
        // Short, so that a socket path inside fits sockaddr_un.
        path = "/tmp/tsl-ops-" + UUID().uuidString.prefix(13)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    /// Callbacks on `port` (0: ephemeral), the admin listener on an ephemeral port;
    /// `extra` is appended to the top-level object.
    func writeConfiguration(port: Int = 0, extra: String = "") throws {
        let json = """
            {
              "http": {"host": "127.0.0.1", "port": \(port), "shutdownGracePeriod": 5},
              "storage": {"path": "\(databasePath)"},
              "callbacks": {"username": "listener-user", "password": "listener-pass"},
              "admin": {"port": 0}\(extra)
            }
            """
        try json.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

enum OperationsTestError: Error, CustomStringConvertible {
    case socket(String, Int32)
    case timedOut(String)
    var description: String {
        switch self {
        case .socket(let call, let code): return "\(call) failed: \(String(cString: strerror(code)))"
        case .timedOut(let what): return "timed out waiting for \(what)"
        }
    }
}

/// Loopback ports nobody listens on now: bound to port 0 together (so they
/// differ), read, and closed.
func unusedLoopbackPorts(_ count: Int) throws -> [Int] {
    var descriptors: [Int32] = []
    defer { for descriptor in descriptors { close(descriptor) } }
    var ports: [Int] = []
    for _ in 0..<count {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw OperationsTestError.socket("socket", errno) }
        descriptors.append(descriptor)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = in_addr_t(UInt32(0x7F00_0001).bigEndian)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(descriptor, pointer, length) == 0 && getsockname(descriptor, pointer, &length) == 0
            }
        }
        guard bound else { throw OperationsTestError.socket("bind", errno) }
        ports.append(Int(UInt16(bigEndian: address.sin_port)))
    }
    return ports
}

/// The value of one series (`name{labels}`, exactly as exposed) in Prometheus text.
func metricValue(_ exposition: String, _ series: String) -> Double? {
    for line in exposition.split(separator: "\n") where line.hasPrefix(series + " ") {
        return Double(line.dropFirst(series.count + 1))
    }
    return nil
}

extension ListenerProcess {
    var logText: String { logLines.joined(separator: "\n") }
}

extension TestClient {
    /// Whether a response (or EOF) is waiting, without blocking.
    var hasDataToRead: Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&entry, 1, 0) > 0
    }
}

/// The test's end of `$NOTIFY_SOCKET`: the datagram socket systemd would
/// read sd_notify messages from.
final class NotifySocket {
    struct Message {
        let text: String
        let receivedAt: ContinuousClock.Instant
        /// `KEY=VALUE` lines.
        var fields: [String: String] {
            Dictionary(
                text.split(separator: "\n").compactMap { line in
                    line.firstIndex(of: "=").map { (String(line[..<$0]), String(line[line.index(after: $0)...])) }
                }, uniquingKeysWith: { $1 })
        }
        var isWatchdogPing: Bool { fields["WATCHDOG"] == "1" }
    }

    let path: String
    private let descriptor: Int32

    init(path: String) throws {
        self.path = path
        var address = sockaddr_un()
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw OperationsTestError.socket("socket path \(path)", ENAMETOOLONG)
        }
        descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard descriptor >= 0 else { throw OperationsTestError.socket("socket", errno) }
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else {
            let code = errno
            close(descriptor)
            throw OperationsTestError.socket("bind \(path)", code)
        }
        // Short receive timeouts: every wait below checks its own deadline between them.
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit {
        close(descriptor)
        unlink(path)
    }

    /// The next message, or nil once `deadline` has passed.
    func receive(until deadline: ContinuousClock.Instant) -> Message? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        repeat {
            let count = recv(descriptor, &buffer, buffer.count, 0)
            if count >= 0 { return Message(text: String(decoding: buffer[..<count], as: UTF8.self), receivedAt: .now) }
        } while ContinuousClock.now < deadline
        return nil
    }

    /// Receives until a message satisfies `predicate` and returns it; nil after `timeout`.
    func waitFor(timeout: Duration, _ predicate: (Message) -> Bool) -> Message? {
        let deadline = ContinuousClock.now + timeout
        while let message = receive(until: deadline) {
            if predicate(message) { return message }
        }
        return nil
    }

    /// Takes whatever is queued now, without waiting.
    func drain() -> [Message] {
        var buffer = [UInt8](repeating: 0, count: 4096)
        var messages: [Message] = []
        for _ in 0..<10_000 {
            let count = recv(descriptor, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            guard count >= 0 else { break }
            messages.append(Message(text: String(decoding: buffer[..<count], as: UTF8.self), receivedAt: .now))
        }
        return messages
    }
}

/// A child process other than the listener itself (systemd-socket-activate,
/// sqlite3): stdin writable, stdout and stderr captured together line by line.
/// Spawned with posix_spawn, not Foundation's Process: Process takes the
/// closing of an inherited descriptor for the child's exit and then blocks its
/// only monitoring thread in waitpid, and systemd-socket-activate closes every
/// inherited descriptor before it execs the listener.
final class Subprocess {
    let pid: pid_t
    let name: String
    private var input: Int32
    private let output: PipeLines
    private var exitStatus: Int32?

    init(_ executable: String, _ arguments: [String]) throws {
        name = (executable as NSString).lastPathComponent
        var inputPipe: [Int32] = [-1, -1]
        var outputPipe: [Int32] = [-1, -1]
        guard pipe(&inputPipe) == 0 else { throw OperationsTestError.socket("pipe", errno) }
        guard pipe(&outputPipe) == 0 else {
            let code = errno
            for end in inputPipe { close(end) }
            throw OperationsTestError.socket("pipe", code)
        }
        // Close-on-exec, so that other children do not keep these pipes open (dup2 clears it for the child's 0, 1, 2).
        for descriptor in inputPipe + outputPipe { _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, inputPipe[0], 0)
        posix_spawn_file_actions_adddup2(&actions, outputPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, outputPipe[1], 2)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var child: pid_t = 0
        let result = posix_spawn(&child, executable, &actions, nil, argv, environ)
        close(inputPipe[0])
        close(outputPipe[1])
        guard result == 0 else {
            close(inputPipe[1])
            close(outputPipe[0])
            throw OperationsTestError.socket("posix_spawn \(executable)", result)
        }
        pid = child
        input = inputPipe[1]
        output = PipeLines(reading: FileHandle(fileDescriptor: outputPipe[0], closeOnDealloc: true))
    }

    var outputLines: [String] { output.lines }

    /// Whether the child still runs; reaps it (without blocking) once it has exited.
    var isRunning: Bool {
        if exitStatus != nil { return false }
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return true }
        exitStatus = Self.decode(status)
        return false
    }

    func write(_ text: String) throws {
        ignoreBrokenPipes()
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Foundation.write(input, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { throw OperationsTestError.socket("write to \(name)", errno) }
            offset += written
        }
    }

    func closeInput() {
        if input >= 0 { close(input) }
        input = -1
    }

    @discardableResult
    func waitForLine(containing text: String, timeout: Duration = .seconds(30)) throws -> String {
        let deadline = ContinuousClock.now + timeout
        repeat {
            if let line = outputLines.first(where: { $0.contains(text) }) { return line }
            if !isRunning {
                Thread.sleep(forTimeInterval: 0.1)  // let the pipe handler finish
                if let line = outputLines.first(where: { $0.contains(text) }) { return line }
                break
            }
            Thread.sleep(forTimeInterval: 0.02)
        } while ContinuousClock.now < deadline
        throw OperationsTestError.timedOut("\"\(text)\" from \(name); output:\n" + outputLines.joined(separator: "\n"))
    }

    func signal(_ number: Int32) {
        if isRunning { kill(pid, number) }
    }

    /// Waits for exit and returns the status (128 + N after signal N); SIGKILL after the timeout.
    @discardableResult
    func waitForExit(timeout: Duration = .seconds(60)) -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if isRunning {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            if waitpid(pid, &status, 0) == pid { exitStatus = Self.decode(status) }
        }
        return exitStatus ?? -1
    }

    private static func decode(_ status: Int32) -> Int32 {
        status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    }

    deinit {
        closeInput()
        if isRunning {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
        }
    }
}

/// A child that died must fail a write to its stdin, not kill the test runner.
private func ignoreBrokenPipes() { signal(SIGPIPE, SIG_IGN) }

/// A `sqlite3` shell holding the database's write lock (an open BEGIN
/// EXCLUSIVE transaction) from init until `release`.
final class SQLiteWriteLock {
    private let shell: Subprocess

    init(databasePath: String) throws {
        shell = try Subprocess(OperationsEndToEndTests.sqliteShell, [databasePath])
        // .bail: had BEGIN failed, the shell exits and "lock-held" never comes.
        try shell.write(".bail on\n.timeout 10000\nBEGIN EXCLUSIVE;\nSELECT 'lock-held';\n")
        try shell.waitForLine(containing: "lock-held", timeout: .seconds(20))
    }

    /// Commits the empty transaction, ends the shell and returns its exit status.
    func release() throws -> Int32 {
        try shell.write("COMMIT;\n.quit\n")
        shell.closeInput()
        return shell.waitForExit(timeout: .seconds(20))
    }
}
