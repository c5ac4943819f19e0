import Dispatch
import HTTP1
import HTTPServer
import Logging
import Testing

/// A request as text, with CRLF line ends.
func request(
    _ method: String = "GET", _ target: String = "/", headers: [String] = [], body: String? = nil
) -> String {
    var lines = ["\(method) \(target) HTTP/1.1", "Host: test"] + headers
    if let body { lines.append("Content-Length: \(body.utf8.count)") }
    return lines.joined(separator: "\r\n") + "\r\n\r\n" + (body ?? "")
}

/// Answers 200 with "METHOD target body" at once.
let echoHandler = HTTPClosureHandler { request, _, responder in
    let text = "\(request.head.method) \(request.head.target) \(String(decoding: request.body, as: UTF8.self))"
    responder.respond(HTTPResponse(status: .ok, contentType: "text/plain", body: text))
}

func testConfiguration(_ adjust: (inout HTTPServerConfiguration) -> Void = { _ in }) -> HTTPServerConfiguration {
    var configuration = HTTPServerConfiguration()
    configuration.port = 0
    configuration.ioQueueCount = 2
    configuration.headerReadTimeout = .seconds(5)
    configuration.bodyReadTimeout = .seconds(5)
    configuration.idleTimeout = .seconds(5)
    configuration.writeTimeout = .seconds(5)
    adjust(&configuration)
    return configuration
}

let testLogger: Logger = {
    var logger = Logger(label: "HTTPServerTests")
    logger.logLevel = .critical
    return logger
}()

/// Runs `body` against a started server, then shuts it down and waits (bounded).
func withServer(
    _ configuration: HTTPServerConfiguration = testConfiguration(),
    handler: any HTTPRequestHandler = echoHandler,
    _ body: (HTTPServer, Int) throws -> Void
) throws {
    let server = HTTPServer(configuration: configuration, handler: handler, logger: testLogger)
    try server.start()
    let port = try #require(server.localPort)
    defer {
        let done = DispatchSemaphore(value: 0)
        server.shutdown(gracePeriod: .seconds(1)) { done.signal() }
        _ = done.wait(timeout: .now() + 10)
    }
    try body(server, port)
}
