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

/// The writers of streamed responses, as the handler makes them, and how each ended.
private final class Streams: Sendable {
    private let writers = Mutex<[HTTPBodyWriter]>([])
    let ends = Collector<HTTPStreamEnd>()

    /// Streams `/stream*` (head only; the test writes), echoes anything else.
    var handler: HTTPClosureHandler {
        HTTPClosureHandler { [self] request, _, responder in
            guard request.head.target.hasPrefix("/stream") else {
                responder.respond(HTTPResponse(status: .ok, contentType: "text/plain", body: "after \(request.head.target)"))
                return
            }
            let writer = responder.stream(HTTPResponse(status: .ok, headers: ["Content-Type": "text/event-stream"]))
            writer.onEnd { [ends] end in ends.append(end) }
            writers.withLock { $0.append(writer) }
        }
    }

    /// The `index`th writer, once the handler made it (bounded wait).
    func writer(_ index: Int = 0) throws -> HTTPBodyWriter {
        #expect(eventually { writers.withLock { $0.count > index } })
        return try #require(writers.withLock { $0.count > index ? $0[index] : nil })
    }
}

/// Streamed responses over real sockets: chunks leave as written, the end of the peer reaches
/// the producer, a reader that stops is cut off, and a shutdown ends streams cleanly.
@Suite struct StreamingTests {
    @Test func chunksArriveAsTheyAreWrittenAndTheConnectionServesOnAfterTheEnd() throws {
        let streams = Streams()
        try withServer(handler: streams.handler) { _, port in
            let client = try TestClient(port: port)
            try client.send(request("GET", "/stream"))
            let writer = try streams.writer()
            let head = try client.readHead()
            #expect(head.status == 200)
            #expect(head.header("Transfer-Encoding") == "chunked")
            #expect(head.header("Content-Length") == nil)
            #expect(head.header("Content-Type") == "text/event-stream")
            // Each chunk is readable before the next is written.
            for index in 0..<5 {
                #expect(writer.write(Array("piece \(index)\n".utf8)))
                #expect(try client.readChunk() == Array("piece \(index)\n".utf8))
            }
            #expect(writer.write([]))  // an empty piece is no chunk (it would end the body)
            #expect(writer.isOpen)
            writer.finish()
            #expect(try client.readChunk() == nil)
            #expect(!writer.write(Array("late".utf8)))
            #expect(streams.ends.values == [.finished])
            // Kept alive: the next request on the connection is served.
            try client.send(request("GET", "/next"))
            #expect(try client.readResponse().bodyText == "after /next")
        }
    }

    @Test func pipelinedResponsesWaitForTheStreamBeforeThem() throws {
        let streams = Streams()
        try withServer(handler: streams.handler) { _, port in
            let client = try TestClient(port: port)
            try client.send(request("GET", "/stream") + request("GET", "/second"))
            let writer = try streams.writer()
            #expect(try client.readHead().status == 200)
            writer.write(Array("one".utf8))
            #expect(try client.readChunk() == Array("one".utf8))
            writer.finish()
            #expect(try client.readChunk() == nil)
            #expect(try client.readResponse().bodyText == "after /second")
        }
    }

    @Test func piecesWrittenBeforeTheStreamsTurnFollowItsHead() throws {
        // The first request is answered late; the stream behind it writes at once.
        let release = DispatchSemaphore(value: 0)
        let streams = Streams()
        let handler = HTTPClosureHandler { request, context, responder in
            if request.head.target == "/slow" {
                DispatchQueue.global().async {
                    _ = release.wait(timeout: .now() + 10)
                    responder.respond(HTTPResponse(status: .ok, contentType: "text/plain", body: "slow"))
                }
            } else {
                streams.handler.handle(request, context: context, responder: responder)
            }
        }
        try withServer(handler: handler) { _, port in
            let client = try TestClient(port: port)
            try client.send(request("GET", "/slow") + request("GET", "/stream"))
            let writer = try streams.writer()
            writer.write(Array("early".utf8))
            writer.finish()
            release.signal()
            #expect(try client.readResponse().bodyText == "slow")
            #expect(try client.readHead().status == 200)
            #expect(try client.readChunk() == Array("early".utf8))
            #expect(try client.readChunk() == nil)
        }
    }

    @Test func theProducerHearsWhenThePeerGoesAway() throws {
        for close in ["fin", "reset"] {
            let streams = Streams()
            try withServer(handler: streams.handler) { server, port in
                let client = try TestClient(port: port)
                try client.send(request("GET", "/stream"))
                let writer = try streams.writer()
                writer.write(Array("hello".utf8))
                _ = try client.readHead()
                #expect(try client.readChunk() == Array("hello".utf8))
                if close == "fin" { shutdown(client.fd, Int32(SHUT_RDWR)) } else { client.reset() }
                #expect(eventually { !writer.isOpen }, "\(close)")
                #expect(streams.ends.values == [.peerClosed], "\(close)")
                #expect(!writer.write(Array("nobody".utf8)))
                #expect(eventually { server.openConnections == 0 })
            }
        }
    }

    @Test func theLastStreamOfAConnectionAlsoHearsThePeerLeave() throws {
        let streams = Streams()
        try withServer(handler: streams.handler) { server, port in
            let client = try TestClient(port: port)
            try client.send(request("GET", "/stream", headers: ["Connection: close"]))
            let writer = try streams.writer()
            let head = try client.readHead()
            #expect(head.closes)
            writer.write(Array("x".utf8))
            #expect(try client.readChunk() == Array("x".utf8))
            shutdown(client.fd, Int32(SHUT_RDWR))
            #expect(eventually { !writer.isOpen })
            #expect(streams.ends.values == [.peerClosed])
            #expect(eventually { server.openConnections == 0 })
        }
    }

    @Test func idleAndReadTimeoutsDoNotCloseALiveStream() throws {
        let configuration = testConfiguration {
            $0.idleTimeout = .milliseconds(300)
            $0.headerReadTimeout = .milliseconds(300)
        }
        let streams = Streams()
        try withServer(configuration, handler: streams.handler) { _, port in
            let client = try TestClient(port: port)
            try client.send(request("GET", "/stream"))
            let writer = try streams.writer()
            _ = try client.readHead()
            usleep(1_200_000)  // four idle timeouts with nothing written
            #expect(writer.isOpen)
            writer.write(Array("still here".utf8))
            #expect(try client.readChunk() == Array("still here".utf8))
        }
    }

    @Test func aPeerThatStopsReadingIsDisconnectedNotBufferedFor() throws {
        let configuration = testConfiguration {
            $0.maxStreamBacklog = 256 * 1024
            $0.writeTimeout = .seconds(30)  // the backlog bound acts first
        }
        let streams = Streams()
        try withServer(configuration, handler: streams.handler) { server, port in
            let client = try TestClient(port: port, receiveBuffer: 4096)
            try client.send(request("GET", "/stream"))
            let writer = try streams.writer()
            let piece = [UInt8](repeating: 0x41, count: 16 * 1024)
            var written = 0
            var refused = false
            let deadline = ContinuousClock.now + .seconds(20)
            // Never read; write as fast as the writer takes it.
            while ContinuousClock.now < deadline {
                if !writer.write(piece) {
                    refused = true
                    break
                }
                written += piece.count
                if writer.backlog > 128 * 1024 { usleep(1_000) }
            }
            #expect(refused)
            #expect(writer.end == .peerTooSlow)
            #expect(streams.ends.values == [.peerTooSlow])
            // What was taken is the bound plus what the kernel's socket buffers held.
            print("slow reader: \(written) bytes taken before the stream was cut (bound 256 KiB + socket buffers)")
            #expect(written < 64 << 20)
            #expect(eventually { server.openConnections == 0 })
        }
    }

    @Test func theWriteTimeoutCutsAStalledStream() throws {
        let configuration = testConfiguration { $0.writeTimeout = .milliseconds(500) }
        let streams = Streams()
        try withServer(configuration, handler: streams.handler) { server, port in
            let client = try TestClient(port: port, receiveBuffer: 4096)
            try client.send(request("GET", "/stream"))
            let writer = try streams.writer()
            let piece = [UInt8](repeating: 0x42, count: 64 * 1024)
            // Fill the socket buffers, staying below the backlog bound (1 MiB), then wait.
            #expect(eventually(within: .seconds(10)) { writer.backlog > 512 * 1024 || !writer.write(piece) })
            #expect(eventually(within: .seconds(10)) { !writer.isOpen })
            #expect(writer.end == .peerTooSlow)
            #expect(eventually { server.openConnections == 0 })
        }
    }

    @Test func shutdownEndsOpenStreamsCleanlyWithinTheGracePeriod() throws {
        let streams = Streams()
        let server = HTTPServer(configuration: testConfiguration(), handler: streams.handler, logger: testLogger)
        try server.start()
        let port = try #require(server.localPort)
        let client = try TestClient(port: port)
        try client.send(request("GET", "/stream"))
        let writer = try streams.writer()
        _ = try client.readHead()
        writer.write(Array("before shutdown".utf8))
        #expect(try client.readChunk() == Array("before shutdown".utf8))

        let done = DispatchSemaphore(value: 0)
        let started = ContinuousClock.now
        server.shutdown(gracePeriod: .seconds(20)) { done.signal() }
        // The last chunk, then the close: a clean end, not a cut.
        #expect(try client.readChunk() == nil)
        #expect(try client.waitForClose())
        #expect(done.wait(timeout: .now() + 10) == .success)
        let took = ContinuousClock.now - started
        print("shutdown with an open stream took \(took) (grace period 20 s)")
        #expect(took < .seconds(10))
        #expect(streams.ends.values == [.shutdown])
        #expect(!writer.write(Array("after".utf8)))
    }

    @Test func aStreamStartedDuringTheDrainEndsAtOnce() throws {
        let release = DispatchSemaphore(value: 0)
        let called = DispatchSemaphore(value: 0)
        let writers = Collector<HTTPBodyWriter>()
        let handler = HTTPClosureHandler { _, _, responder in
            called.signal()
            DispatchQueue.global().async {
                _ = release.wait(timeout: .now() + 10)
                let writer = responder.stream(HTTPResponse(status: .ok, body: Array("first".utf8)))
                writers.append(writer)
            }
        }
        let server = HTTPServer(configuration: testConfiguration(), handler: handler, logger: testLogger)
        try server.start()
        let client = try TestClient(port: try #require(server.localPort))
        try client.send(request("GET", "/stream"))
        // The request is in the handler's hands (an accepted connection whose request is not read
        // yet is idle, and a drain closes it).
        #expect(called.wait(timeout: .now() + 10) == .success)
        let done = DispatchSemaphore(value: 0)
        server.shutdown(gracePeriod: .seconds(20)) { done.signal() }
        release.signal()
        let head = try client.readHead()
        #expect(head.status == 200 && head.closes)
        #expect(try client.readChunk() == Array("first".utf8))
        #expect(try client.readChunk() == nil)
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(eventually { writers.values.first?.end == .shutdown })
    }

    @Test func anHTTP10PeerGetsTheBodyUnframedAndTheCloseEndsIt() throws {
        let streams = Streams()
        try withServer(handler: streams.handler) { _, port in
            let client = try TestClient(port: port)
            try client.send("GET /stream HTTP/1.0\r\n\r\n")
            let writer = try streams.writer()
            let head = try client.readHead()
            #expect(head.header("Transfer-Encoding") == nil)
            #expect(head.closes)
            writer.write(Array("raw ".utf8))
            writer.write(Array("bytes".utf8))
            writer.finish()
            #expect(try client.readToEnd() == Array("raw bytes".utf8))
        }
    }

    @Test func aHEADRequestGetsTheStreamsHeadAndNoBody() throws {
        let streams = Streams()
        try withServer(handler: streams.handler) { _, port in
            let client = try TestClient(port: port)
            try client.send(request("HEAD", "/stream"))
            let writer = try streams.writer()
            let head = try client.readHead()
            #expect(head.status == 200 && head.header("Transfer-Encoding") == "chunked")
            #expect(eventually { !writer.isOpen })
            try client.send(request("GET", "/next"))
            #expect(try client.readResponse().bodyText == "after /next")
        }
    }
}
