import Dispatch
import HTTP1
import HTTPServer
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Starting, listening, scale and shutdown.
@Suite struct LifecycleTests {
    @Test func shutdownWaitsForTheInFlightRequestAndClosesIdleConnections() throws {
        let handlerStarted = DispatchSemaphore(value: 0)
        let handler = HTTPClosureHandler { request, _, responder in
            if request.head.target == "/slow" {
                handlerStarted.signal()
                DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(500)) {
                    responder.respond(HTTPResponse(status: .ok, contentType: "text/plain", body: "slow done"))
                }
            } else {
                responder.respond(HTTPResponse(status: .ok, contentType: "text/plain", body: "quick"))
            }
        }
        let server = HTTPServer(configuration: testConfiguration(), handler: handler, logger: testLogger)
        try server.start()
        let port = try #require(server.localPort)

        let idle = try TestClient(port: port)
        try idle.send(request("GET", "/quick"))
        #expect(try idle.readResponse().bodyText == "quick")
        let busy = try TestClient(port: port)
        try busy.send(request("GET", "/slow"))
        #expect(handlerStarted.wait(timeout: .now() + 5) == .success)

        let finished = Atomic<Bool>(false)
        let done = DispatchSemaphore(value: 0)
        server.shutdown(gracePeriod: .seconds(5)) {
            finished.store(true, ordering: .releasing)
            done.signal()
        }
        #expect(try idle.waitForClose())
        let finishedEarly = finished.load(ordering: .acquiring)
        #expect(!finishedEarly)  // the slow request is still in flight
        let response = try busy.readResponse()
        #expect(response.bodyText == "slow done")
        #expect(response.closes)
        #expect(try busy.waitForClose())
        #expect(done.wait(timeout: .now() + 5) == .success)
        #expect(server.openConnections == 0)
        #expect(throws: TestClientError.self) { try TestClient(port: port) }
    }

    @Test func shutdownClosesWhatIsLeftAfterTheGracePeriod() throws {
        let handler = HTTPClosureHandler { _, _, _ in }  // never answers
        let server = HTTPServer(configuration: testConfiguration(), handler: handler, logger: testLogger)
        try server.start()
        let client = try TestClient(port: try #require(server.localPort))
        try client.send(request())
        #expect(eventually { server.openConnections == 1 })
        let done = DispatchSemaphore(value: 0)
        server.shutdown(gracePeriod: .milliseconds(300)) { done.signal() }
        #expect(done.wait(timeout: .now() + 5) == .success)
        #expect(try client.waitForClose())
    }

    @Test func shutdownBeforeStartCompletesAtOnceAndStartIsThenRefused() {
        let server = HTTPServer(configuration: testConfiguration(), handler: echoHandler, logger: testLogger)
        let done = DispatchSemaphore(value: 0)
        server.shutdown(gracePeriod: .seconds(1)) { done.signal() }
        #expect(done.wait(timeout: .now() + 1) == .success)
        #expect(throws: HTTPServerError.alreadyShutDown) { try server.start() }
    }

    @Test func startTwiceIsRefused() throws {
        try withServer { server, _ in
            #expect(throws: HTTPServerError.alreadyStarted) { try server.start() }
        }
    }

    @Test func portInUseIsReportedClearly() throws {
        try withServer { _, port in
            let second = HTTPServer(
                configuration: testConfiguration { $0.port = port }, handler: echoHandler, logger: testLogger)
            do {
                try second.start()
                Issue.record("a second server bound the same port")
            } catch {
                let error = error as? HTTPServerError
                #expect(error == .bindFailed(host: "127.0.0.1", port: port, errno: EADDRINUSE))
                #expect(error?.description.contains("another process is listening") == true)
            }
        }
    }

    @Test func unresolvableHostIsReported() {
        let server = HTTPServer(
            configuration: testConfiguration { $0.host = "no such host.invalid" }, handler: echoHandler, logger: testLogger)
        #expect {
            try server.start()
        } throws: { error in
            guard case .addressResolutionFailed(let host, _) = error as? HTTPServerError else { return false }
            return host == "no such host.invalid"
        }
    }

    @Test func adoptsAListeningSocketCreatedElsewhere() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(bound == 0 && listen(fd, 16) == 0)

        let server = HTTPServer(configuration: testConfiguration(), handler: echoHandler, logger: testLogger)
        try server.start(listeningSockets: [fd])
        let port = try #require(server.localPort)
        let client = try TestClient(port: port)
        try client.send(request("GET", "/adopted"))
        #expect(try client.readResponse().bodyText == "GET /adopted ")
        let done = DispatchSemaphore(value: 0)
        server.shutdown(gracePeriod: .seconds(1)) { done.signal() }
        #expect(done.wait(timeout: .now() + 5) == .success)
    }

    @Test func refusesADescriptorThatIsNotListening() {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        let server = HTTPServer(configuration: testConfiguration(), handler: echoHandler, logger: testLogger)
        #expect(throws: HTTPServerError.invalidListeningSocket(fd: fd, reason: "not listening (listen() was not called)")) {
            try server.start(listeningSockets: [fd])
        }
        #expect(throws: HTTPServerError.noListeningSockets) { try server.start(listeningSockets: []) }
    }

    @Test(.enabled(if: hasIPv6Loopback())) func servesOverIPv6Loopback() throws {
        let handler = HTTPClosureHandler { _, context, responder in
            responder.respond(HTTPResponse(status: .ok, contentType: "text/plain", body: context.remoteAddress))
        }
        try withServer(testConfiguration { $0.host = "::1" }, handler: handler) { _, port in
            let client = try TestClient(port: port, host: "::1")
            try client.send(request())
            #expect(try client.readResponse().bodyText == "::1")
        }
    }

    @Test(.enabled(if: hasIPv6Loopback())) func dualStackWildcardShowsIPv4PeersAsIPv4() throws {
        let handler = HTTPClosureHandler { _, context, responder in
            responder.respond(HTTPResponse(status: .ok, contentType: "text/plain", body: context.remoteAddress))
        }
        try withServer(testConfiguration { $0.host = "::" }, handler: handler) { _, port in
            let client = try TestClient(port: port, host: "127.0.0.1")
            try client.send(request())
            #expect(try client.readResponse().bodyText == "127.0.0.1")
        }
    }

    @Test func servesAThousandConcurrentConnections() throws {
        raiseDescriptorLimit(to: 8192)
        let count = 1000
        let configuration = testConfiguration {
            $0.idleTimeout = .seconds(120)
            $0.headerReadTimeout = .seconds(120)
        }
        try withServer(configuration) { server, port in
            var clients: [TestClient] = []
            clients.reserveCapacity(count)
            for _ in 0..<count { clients.append(try TestClient(port: port)) }
            for (index, client) in clients.enumerated() { try client.send(request("GET", "/\(index)")) }
            var served = 0
            for (index, client) in clients.enumerated() where try client.readResponse().bodyText == "GET /\(index) " {
                served += 1
            }
            #expect(served == count)
            #expect(server.openConnections == count)
        }
    }

    @Test func heartbeatAdvancesWhileRunning() throws {
        try withServer { server, _ in
            let first = server.acceptLoopHeartbeat
            #expect(eventually(within: .seconds(5)) { server.acceptLoopHeartbeat > first })
        }
    }
}

func hasIPv6Loopback() -> Bool {
    let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in6()
    address.sin6_family = sa_family_t(AF_INET6)
    address.sin6_addr = in6addr_loopback
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) == 0 }
    }
}

func raiseDescriptorLimit(to wanted: rlim_t) {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < wanted else { return }
    limit.rlim_cur = min(wanted, limit.rlim_max)
    setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}
