import Dispatch
import HTTP1
import HTTPServer
import Logging

// The bare HTTP server for bench/: reads the body, answers 200 with a small
// body, stores nothing. See bench/README.md.
//
//     http-bench-server [--port N] [--host ADDRESS] [--queues N]
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

struct BenchHandler: HTTPRequestHandler {
    let okBody: [UInt8] = Array("{\"status\":\"ok\"}\n".utf8)

    func handle(_ request: HTTPRequest, context: HTTPRequestContext, responder: HTTPResponder) {
        guard request.head.method == "POST" || request.head.method == "GET" else {
            responder.respond(HTTPResponse(status: .methodNotAllowed, headers: ["Allow": "GET, POST"]))
            return
        }
        // "Reads the body": the parser has it whole; touch it so the work is real.
        var checksum: UInt8 = 0
        for byte in request.body { checksum &+= byte }
        _ = checksum
        responder.respond(HTTPResponse(status: .ok, headers: ["Content-Type": "application/json"], body: okBody))
    }
}

func writeLine(_ text: String, to fd: Int32) {
    let line = text + "\n"
    _ = line.withCString { write(fd, $0, strlen($0)) }
}

func usage() -> Never {
    writeLine("usage: http-bench-server [--port N] [--host ADDRESS] [--queues N]", to: 2)
    exit(2)
}

var configuration = HTTPServerConfiguration()
configuration.port = 8080
var arguments = CommandLine.arguments.dropFirst()
while let flag = arguments.popFirst() {
    guard let value = arguments.popFirst() else { usage() }
    switch flag {
    case "--port":
        guard let port = Int(value) else { usage() }
        configuration.port = port
    case "--host":
        configuration.host = value
    case "--queues":
        guard let count = Int(value) else { usage() }
        configuration.ioQueueCount = count
    default:
        usage()
    }
}

LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = .warning
    return handler
}
let logger = Logger(label: "http-bench-server")
let server = HTTPServer(configuration: configuration, handler: BenchHandler(), logger: logger)
do {
    try server.start()
} catch {
    writeLine("http-bench-server: \(error)", to: 2)
    exit(1)
}
writeLine("http-bench-server listening on \(configuration.host):\(server.localPort ?? configuration.port)", to: 1)

signal(SIGTERM, SIG_IGN)
signal(SIGINT, SIG_IGN)
let signals = [SIGTERM, SIGINT].map { DispatchSource.makeSignalSource(signal: $0, queue: .main) }
for source in signals {
    source.setEventHandler {
        server.shutdown(gracePeriod: .seconds(2)) { exit(0) }
    }
    source.resume()
}
dispatchMain()
