import Dispatch
import Foundation
import HTTP1
import HTTPServer
import Logging
import PostgresStore
import Synchronization

// The naive PostgreSQL peer for bench/ (issue 11): the same HTTPServer as the listener, and for
// each POST one autocommit INSERT of the body, answered 200 only after PostgreSQL returned. A
// fixed pool of connections, one per request in flight; no batching, no group commit. What the
// listener's PostgreSQL backend is measured against. See bench/README.md.
//
//     naive-postgres-peer --database URL [--port N] [--host ADDRESS] [--connections N] [--queues N]
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A request waiting for a connection.
struct Job: Sendable {
    var body: [UInt8]
    var remoteAddress: String
    var responder: HTTPResponder
}

/// The requests not yet taken by a worker, first in first out.
final class JobQueue: Sendable {
    private let jobs = Mutex<[Job]>([])
    private let available = DispatchSemaphore(value: 0)

    func push(_ job: Job) {
        jobs.withLock { $0.append(job) }
        available.signal()
    }

    /// Blocks until there is a job.
    func pop() -> Job {
        available.wait()
        // The queue holds at most one job per open request: removeFirst stays cheap.
        return jobs.withLock { $0.removeFirst() }
    }
}

struct NaiveHandler: HTTPRequestHandler {
    let queue: JobQueue

    func handle(_ request: HTTPRequest, context: HTTPRequestContext, responder: HTTPResponder) {
        guard request.head.method == "POST" else {
            // Probes (GET) are answered without storing, so row counts match acknowledged POSTs.
            responder.respond(HTTPResponse(status: .methodNotAllowed, headers: ["Allow": "POST"]))
            return
        }
        queue.push(Job(body: request.body, remoteAddress: context.remoteAddress, responder: responder))
    }
}

let okBody: [UInt8] = Array("{\"status\":\"ok\"}\n".utf8)
let insert = "INSERT INTO naive_callbacks (remote_address, body) VALUES ($1, $2)"

/// One worker: its own connection, one INSERT per request, reconnecting if the connection broke.
func work(_ queue: JobQueue, _ settings: PostgreSQLSettings, _ first: PostgreSQLConnection) {
    var connection: PostgreSQLConnection? = first
    while true {
        let job = queue.pop()
        do {
            if connection?.isUsable != true { connection = try PostgreSQLConnection(settings) }
            try connection?.query(insert, [.text(job.remoteAddress), .bytes(job.body)])
            job.responder.respond(HTTPResponse(status: .ok, headers: ["Content-Type": "application/json"], body: okBody))
        } catch {
            writeLine("naive-postgres-peer: insert failed: \(error)", to: 2)
            if connection?.isUsable != true { connection = nil }
            job.responder.respond(HTTPResponse(status: .serviceUnavailable))
        }
    }
}

func writeLine(_ text: String, to fd: Int32) {
    let line = text + "\n"
    _ = line.withCString { write(fd, $0, strlen($0)) }
}

func usage() -> Never {
    writeLine("usage: naive-postgres-peer --database URL [--port N] [--host ADDRESS] [--connections N] [--queues N]", to: 2)
    exit(2)
}

var configuration = HTTPServerConfiguration()
configuration.port = 8080
var database: String?
var connectionCount = 32
var arguments = CommandLine.arguments.dropFirst()
while let flag = arguments.popFirst() {
    guard let value = arguments.popFirst() else { usage() }
    switch flag {
    case "--port":
        guard let port = Int(value) else { usage() }
        configuration.port = port
    case "--host":
        configuration.host = value
    case "--database":
        database = value
    case "--connections":
        guard let count = Int(value), count > 0 else { usage() }
        connectionCount = count
    case "--queues":
        guard let count = Int(value) else { usage() }
        configuration.ioQueueCount = count
    default:
        usage()
    }
}
guard let database else { usage() }
// The password, if any, from the URL, PGPASSWORD or PGPASSFILE (libpq's own); never printed.
let settings = PostgreSQLSettings(url: database, applicationName: "naive-postgres-peer")

// Every connection opened (and the table made) before the port opens: a bad URL fails at once.
var connections: [PostgreSQLConnection] = []
do {
    for _ in 0..<connectionCount { connections.append(try PostgreSQLConnection(settings)) }
    try connections[0].execute(
        """
        CREATE TABLE IF NOT EXISTS naive_callbacks (
            id bigserial PRIMARY KEY,
            received_at timestamptz NOT NULL DEFAULT now(),
            remote_address text NOT NULL,
            body bytea NOT NULL
        )
        """)
} catch {
    writeLine("naive-postgres-peer: cannot use \(settings): \(error)", to: 2)
    exit(1)
}

let queue = JobQueue()
for connection in connections {
    // PostgreSQLConnection is not Sendable: each one is handed to its thread and used only there.
    nonisolated(unsafe) let owned = connection
    Thread.detachNewThread { work(queue, settings, owned) }
}
connections.removeAll()

LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = .warning
    return handler
}
let logger = Logger(label: "naive-postgres-peer")
let server = HTTPServer(configuration: configuration, handler: NaiveHandler(queue: queue), logger: logger)
do {
    try server.start()
} catch {
    writeLine("naive-postgres-peer: \(error)", to: 2)
    exit(1)
}
writeLine(
    "naive-postgres-peer listening on \(configuration.host):\(server.localPort ?? configuration.port), \(connectionCount) connections",
    to: 1)

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
