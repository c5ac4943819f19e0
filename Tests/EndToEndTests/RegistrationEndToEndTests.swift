import Foundation
import HTTP1
import Logging
import TestSupport
import Testing
import ThingSpace
import ThingSpaceSandbox

/// A free TCP port on 127.0.0.1 (bound, then released): the registered URL
/// must name the listener's port before the listener starts.
func freeLoopbackPort() throws -> Int {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(descriptor) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) } }
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// The sandbox as a fake ThingSpace, in the test process, and a listener
/// configuration that registers with it.
struct FakeThingSpace {
    let sandbox: ThingSpaceSandbox
    let listenerPort: Int

    init(deliverSamples: Bool = true) throws {
        var settings = SandboxConfiguration()
        settings.deliverSamples = deliverSamples
        settings.sampleInterval = nil  // one sample per registration
        sandbox = ThingSpaceSandbox(configuration: settings, logger: Logger(label: "test-sandbox"))
        try sandbox.start()
        listenerPort = try freeLoopbackPort()
    }

    /// JSON members appended to the listener's configuration.
    func configuration(baseURL: String? = nil, clientSecret: String = "sandbox-client-secret", extra: String = "") -> String {
        """
        , "thingspace": {
            "baseURL": "\(baseURL ?? sandbox.baseURL)", "accountName": "0252012345-00001",
            "clientID": "sandbox-client-id", "clientSecret": "\(clientSecret)",
            "username": "sandbox-user", "password": "sandbox-password",
            "callbackBaseURL": "http://127.0.0.1:\(listenerPort)/callbacks"\(extra)
          }
        """
    }

    /// Every secret the listener handles, including the tokens the sandbox issued.
    var secrets: [String] {
        var values = ["sandbox-client-secret", "sandbox-password", "listener-pass", "old-pass"]
        for entry in sandbox.journal {
            if let bearer = entry.headers["Authorization"], bearer.hasPrefix("Bearer ") { values.append(String(bearer.dropFirst(7))) }
            if let session = entry.headers["VZ-M2M-Token"] { values.append(session) }
        }
        return values
    }
}

/// `eventually`, failing with what was awaited.
func waitUntil(_ what: String, timeout: Duration = .seconds(20), _ condition: () -> Bool) throws {
    guard eventually(within: timeout, condition) else { throw ProcessError.timedOut(what) }
}

func expectNoSecret(in lines: [String], secrets: [String], sourceLocation: SourceLocation = #_sourceLocation) {
    let text = lines.joined(separator: "\n")
    for secret in Set(secrets) where !secret.isEmpty {
        #expect(!text.contains(secret), "a secret appears in the log", sourceLocation: sourceLocation)
    }
}

@Suite(.serialized) struct RegistrationEndToEndTests {
    @Test func registersBothServicesOnceListeningAndDeregistersOnSIGTERM() throws {
        let thingspace = try FakeThingSpace()
        let listener = try ListenerFixture(
            port: thingspace.listenerPort, extraConfiguration: thingspace.configuration())
        try listener.process.waitForLog("registered with ThingSpace")
        #expect(try mappedFiles(of: listener.process.pid).contains("libcurl"))
        let registrations = thingspace.sandbox.registrations
        #expect(Set(registrations.map(\.serviceName)) == ["CarrierService", "DeviceUsage"])
        for registration in registrations {
            #expect(registration.url == "http://127.0.0.1:\(thingspace.listenerPort)/callbacks/\(registration.serviceName)")
            #expect(registration.username == "listener-user")
            #expect(registration.password == "listener-pass")
        }
        // Registered only after accepting: the log says so, and the sample the
        // sandbox delivered right after registering was acknowledged.
        let lines = listener.process.logLines
        let listening = try #require(lines.firstIndex { $0.contains("listening for callbacks") })
        let registered = try #require(lines.firstIndex { $0.contains("registered with ThingSpace") })
        #expect(listening < registered)
        try waitUntil("sample deliveries") { thingspace.sandbox.deliveries.filter(\.acknowledged).count >= 2 }
        #expect(try listener.export().count >= 2)

        listener.process.signal(SIGTERM)
        #expect(listener.process.waitForExit() == 0)
        #expect(thingspace.sandbox.registrations.isEmpty)
        let deletes = thingspace.sandbox.journal.filter { $0.route == .deregister }
        #expect(deletes.count == 2)
        #expect(deletes.allSatisfy { $0.status == 200 })
        expectNoSecret(in: listener.process.logLines, secrets: thingspace.secrets)
        thingspace.sandbox.stop()
    }

    /// libcurl (and the TLS stack it pulls in) is loaded on first use: about 5.6 MB a listener that
    /// does not register never maps.
    @Test func aListenerThatDoesNotRegisterNeverLoadsLibcurl() throws {
        let listener = try ListenerFixture()
        #expect(
            try TestClient(port: listener.port, timeoutSeconds: 10).post(
                "/callbacks/CarrierService", json: callbackBody(requestID: "no-curl")
            ).status == 200)
        let mapped = try mappedFiles(of: listener.process.pid)
        #expect(mapped.contains("libsqlite3"))
        #expect(!mapped.contains("libcurl"))
    }

    @Test func anIdenticalRegistrationIsKeptAndAnotherIsReplaced() throws {
        let thingspace = try FakeThingSpace(deliverSamples: false)
        let client = ConnectivityCallbacksClient(
            configuration: thingspace.sandbox.clientConfiguration, credentials: thingspace.sandbox.credentials,
            logger: Logger(label: "test"))
        _ = try client.register(
            accountName: "0252012345-00001",
            request: RegisterCallbackRequest(
                name: "CarrierService", url: "http://127.0.0.1:\(thingspace.listenerPort)/callbacks/CarrierService",
                username: "listener-user", password: "listener-pass"))
        _ = try client.register(
            accountName: "0252012345-00001",
            request: RegisterCallbackRequest(name: "DeviceUsage", url: "https://old.example.com/DeviceUsage"))
        thingspace.sandbox.clearJournal()

        let listener = try ListenerFixture(
            port: thingspace.listenerPort, extraConfiguration: thingspace.configuration(extra: #", "deregisterOnShutdown": false"#))
        try listener.process.waitForLog("registered with ThingSpace")
        let journal = thingspace.sandbox.journal
        #expect(journal.filter { $0.route == .register }.map { $0.bodyText.contains("DeviceUsage") } == [true])
        #expect(journal.filter { $0.route == .deregister }.map(\.path).allSatisfy { $0.hasSuffix("/name/DeviceUsage") })
        #expect(journal.filter { $0.route == .deregister }.count == 1)
        #expect(thingspace.sandbox.registrations.first { $0.serviceName == "DeviceUsage" }?.url.hasPrefix("http://127.0.0.1") == true)

        // deregisterOnShutdown false: registrations stay for the next instance.
        listener.process.signal(SIGTERM)
        #expect(listener.process.waitForExit() == 0)
        #expect(thingspace.sandbox.registrations.count == 2)
        thingspace.sandbox.stop()
    }

    @Test func registrationFailureLeavesIntakeWorking() throws {
        // ThingSpace unreachable: the registrar retries in the background.
        let unreachable = try FakeThingSpace(deliverSamples: false)
        let closedPort = try freeLoopbackPort()
        let listener = try ListenerFixture(
            port: unreachable.listenerPort, extraConfiguration: unreachable.configuration(baseURL: "http://127.0.0.1:\(closedPort)/api"))
        try listener.process.waitForLog("registration failed; will retry")
        let stored = try TestClient(port: listener.port, timeoutSeconds: 10).post(
            "/callbacks/CarrierService", json: callbackBody(requestID: "while-unregistered"))
        #expect(stored.status == 200)
        let ready = try TestClient(port: listener.adminPort, timeoutSeconds: 10).get("/readyz")
        #expect(ready.status == 503)
        #expect(ready.bodyText.contains("not registered"))
        listener.process.signal(SIGTERM)
        #expect(listener.process.waitForExit() == 0)
        unreachable.sandbox.stop()
    }

    @Test func refusedCredentialsStopRegistrationAfterOneLogin() throws {
        let thingspace = try FakeThingSpace(deliverSamples: false)
        let listener = try ListenerFixture(
            port: thingspace.listenerPort, extraConfiguration: thingspace.configuration(clientSecret: "wrong-client-secret"))
        try listener.process.waitForLog("registration stopped")
        #expect(
            try TestClient(port: listener.port, timeoutSeconds: 10).post(
                "/callbacks/DeviceUsage", json: callbackBody(requestID: "still-stored")
            ).status == 200)
        Thread.sleep(forTimeInterval: 1.5)  // give a wrong retry loop the chance to show itself
        #expect(thingspace.sandbox.journal.filter { $0.route == .token }.count == 1)
        #expect(thingspace.sandbox.journal.filter { $0.route == .login }.isEmpty)
        expectNoSecret(in: listener.process.logLines, secrets: thingspace.secrets + ["wrong-client-secret"])
        listener.process.signal(SIGTERM)
        #expect(listener.process.waitForExit() == 0)
        thingspace.sandbox.stop()
    }
}

@Suite(.serialized) struct CallbacksCommandTests {
    func writeConfiguration(_ directory: String, baseURL: String) throws -> String {
        let path = directory + "/cli.json"
        try """
        {"callbacks": {"username": "listener-user", "password": "listener-pass"},
         "thingspace": {"baseURL": "\(baseURL)", "accountName": "0252012345-00001", "clientID": "sandbox-client-id",
                        "clientSecret": "sandbox-client-secret", "username": "sandbox-user", "password": "sandbox-password",
                        "register": false}}
        """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func listRegisterDeregisterWithExitCodes() throws {
        let thingspace = try FakeThingSpace(deliverSamples: false)
        defer { thingspace.sandbox.stop() }
        let directory = try TemporaryDirectory()
        let config = try writeConfiguration(directory.path, baseURL: thingspace.sandbox.baseURL)

        let empty = try runListenerCommand(["callbacks", "list", "--config", config])
        #expect(empty.status == 0)
        #expect(empty.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[\n\n]" || empty.stdout.contains("[]"))

        let registered = try runListenerCommand([
            "callbacks", "register", "--config", config, "--service", "CarrierService", "--url",
            "https://listener.example.com/callbacks/CarrierService",
        ])
        #expect(registered.status == 0, "\(registered.stderr)")
        #expect(registered.stdout.contains("\"serviceName\" : \"CarrierService\""))
        #expect(thingspace.sandbox.registrations.first?.password == "listener-pass")

        let listed = try runListenerCommand(["callbacks", "list", "--config", config])
        #expect(listed.stdout.contains("https://listener.example.com/callbacks/CarrierService"))
        #expect(!listed.stdout.contains("listener-pass"))
        #expect(listed.stdout.contains("<redacted>"))
        let shown = try runListenerCommand(["callbacks", "list", "--config", config, "--show-secrets", "--table"])
        #expect(shown.stdout.contains("listener-pass"))
        #expect(shown.stdout.hasPrefix("SERVICE"))

        let deregistered = try runListenerCommand(["callbacks", "deregister", "--config", config, "--service", "CarrierService"])
        #expect(deregistered.status == 0)
        #expect(thingspace.sandbox.registrations.isEmpty)

        // ThingSpace refuses: exit 3 with errorCode/errorMessage.
        thingspace.sandbox.failNext(
            .deregister, status: 400, body: #"{"errorCode":"REQUEST_FAILED.UnexpectedError","errorMessage":"No callback registered"}"#)
        let refused = try runListenerCommand(["callbacks", "deregister", "--config", config, "--service", "DeviceUsage"])
        #expect(refused.status == 3)
        #expect(refused.stderr.contains("REQUEST_FAILED.UnexpectedError"))

        // Usage error: exit 2.
        #expect(try runListenerCommand(["callbacks", "register", "--config", config, "--service", "CarrierService"]).status == 2)

        // Nobody listening: exit 4.
        let closed = try writeConfiguration(directory.path, baseURL: "http://127.0.0.1:\(try freeLoopbackPort())/api")
        let unreachable = try runListenerCommand(["callbacks", "list", "--config", closed])
        #expect(unreachable.status == 4)
        for output in [empty, registered, listed, deregistered, refused, unreachable] {
            expectNoSecret(in: [output.stderr], secrets: ["sandbox-client-secret", "sandbox-password"])
        }
    }

    /// ThingSpace credentials and no thingspace.callbackBaseURL (nor `register: false`):
    /// what `serve` refuses, but the callbacks commands do not need the base URL.
    func writeConfigurationWithoutBaseURL(_ directory: String, baseURL: String, callbackBaseURL: String? = nil) throws -> String {
        let path = directory + "/cli-no-base.json"
        let base = callbackBaseURL.map { #", "callbackBaseURL": "\#($0)""# } ?? ""
        try """
        {"callbacks": {"username": "listener-user", "password": "listener-pass"},
         "thingspace": {"baseURL": "\(baseURL)", "accountName": "0252012345-00001", "clientID": "sandbox-client-id",
                        "clientSecret": "sandbox-client-secret", "username": "sandbox-user", "password": "sandbox-password"\(base)}}
        """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func listRegisterAndDeregisterNeedNoCallbackBaseURL() throws {
        let thingspace = try FakeThingSpace(deliverSamples: false)
        defer { thingspace.sandbox.stop() }
        let directory = try TemporaryDirectory()
        let config = try writeConfigurationWithoutBaseURL(directory.path, baseURL: thingspace.sandbox.baseURL)

        let listed = try runListenerCommand(["callbacks", "list", "--config", config])
        #expect(listed.status == 0, "\(listed.stderr)")
        let url = "https://listener.example.com/callbacks/DeviceUsage"
        let registered = try runListenerCommand(["callbacks", "register", "--config", config, "--service", "DeviceUsage", "--url", url])
        #expect(registered.status == 0, "\(registered.stderr)")
        #expect(thingspace.sandbox.registrations.map(\.url) == [url])
        let listedAgain = try runListenerCommand(["callbacks", "list", "--config", config])
        #expect(listedAgain.status == 0)
        #expect(listedAgain.stdout.contains(url))
        let deregistered = try runListenerCommand(["callbacks", "deregister", "--config", config, "--service", "DeviceUsage"])
        #expect(deregistered.status == 0, "\(deregistered.stderr)")
        #expect(thingspace.sandbox.registrations.isEmpty)

        // Without --url the URL is formed from the base URL, so then it is needed, by name.
        let noURL = try runListenerCommand(["callbacks", "register", "--config", config, "--service", "DeviceUsage"])
        #expect(noURL.status == 2)
        #expect(noURL.stderr.contains("thingspace.callbackBaseURL"))
        #expect(thingspace.sandbox.registrations.isEmpty)
    }

    @Test func registerWithoutURLUsesTheCallbackBaseURL() throws {
        let thingspace = try FakeThingSpace(deliverSamples: false)
        defer { thingspace.sandbox.stop() }
        let directory = try TemporaryDirectory()
        let config = try writeConfigurationWithoutBaseURL(
            directory.path, baseURL: thingspace.sandbox.baseURL, callbackBaseURL: "https://listener.example.com/callbacks/")
        let registered = try runListenerCommand(["callbacks", "register", "--config", config, "--service", "CarrierService"])
        #expect(registered.status == 0, "\(registered.stderr)")
        #expect(thingspace.sandbox.registrations.map(\.url) == ["https://listener.example.com/callbacks/CarrierService"])
    }

    @Test func theSandboxCommandServesTheCallbacksAPI() throws {
        let port = try freeLoopbackPort()
        let sandbox = try ListenerProcess(arguments: ["sandbox", "--port", String(port)])
        #expect(eventually { listeningTCPPorts(of: sandbox.pid).contains(port) })
        let directory = try TemporaryDirectory()
        let config = try writeConfiguration(directory.path, baseURL: "http://127.0.0.1:\(port)/api")
        let registered = try runListenerCommand([
            "callbacks", "register", "--config", config, "--service", "DeviceUsage", "--url",
            "https://listener.example.com/callbacks/DeviceUsage",
        ])
        #expect(registered.status == 0, "\(registered.stderr)")
        let listed = try runListenerCommand(["callbacks", "list", "--config", config, "--table"])
        #expect(listed.stdout.contains("DeviceUsage  https://listener.example.com/callbacks/DeviceUsage"))
        sandbox.signal(SIGINT)
        #expect(sandbox.waitForExit() == 0)
    }
}

/// The memory map of a running process, as text. Read to the end: /proc files report no size, and
/// reading "the whole file" by its size stops after the first page.
private func mappedFiles(of pid: Int32) throws -> String {
    guard let handle = FileHandle(forReadingAtPath: "/proc/\(pid)/maps") else { throw ProcessError.didNotStart("no process \(pid)") }
    defer { try? handle.close() }
    var text = Data()
    while let chunk = try handle.read(upToCount: 65_536), !chunk.isEmpty { text.append(chunk) }
    return String(decoding: text, as: UTF8.self)
}
