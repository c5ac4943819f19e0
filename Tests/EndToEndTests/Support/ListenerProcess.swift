import Foundation
import Synchronization
import TestSupport
import Testing

/// The repository root, found from this file's path.
let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The real `thingspace-listener` binary: `$THINGSPACE_LISTENER_BIN` (set by
/// `make test`), else the debug build.
let listenerBinary: String = {
    if let path = ProcessInfo.processInfo.environment["THINGSPACE_LISTENER_BIN"], !path.isEmpty { return path }
    return repositoryRoot.appendingPathComponent(".build/debug/thingspace-listener").path
}()

func fixtureBody(_ name: String) throws -> [UInt8] {
    Array(try Data(contentsOf: repositoryRoot.appendingPathComponent("Tests/Fixtures/\(name)")))
}

enum ProcessError: Error, CustomStringConvertible {
    case didNotStart(String)
    case timedOut(String)
    var description: String {
        switch self {
        case .didNotStart(let why): return "listener did not start: \(why)"
        case .timedOut(let what): return "timed out waiting for \(what)"
        }
    }
}

/// A running `thingspace-listener` child process whose stderr is captured
/// line by line (tests assert on logs, and that no secret is in them).
final class ListenerProcess: @unchecked Sendable {
    let process = Process()
    /// The child's stderr (its log) line by line, and its stdout drained.
    private let stderrLines: PipeLines
    private let stdoutLines: PipeLines
    private let stderrPipe = Pipe()
    private let stdoutPipe = Pipe()

    init(arguments: [String], environment: [String: String] = [:], workingDirectory: String? = nil) throws {
        process.executableURL = URL(fileURLWithPath: listenerBinary)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment.filter {
            !$0.key.hasPrefix("THINGSPACE_LISTENER_")
                && !["NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "WATCHDOG_USEC", "CREDENTIALS_DIRECTORY", "JOURNAL_STREAM"].contains(
                    $0.key)
        }
        env.merge(environment) { $1 }
        process.environment = env
        if let workingDirectory { process.currentDirectoryURL = URL(fileURLWithPath: workingDirectory) }
        process.standardError = stderrPipe
        process.standardOutput = stdoutPipe
        guard FileManager.default.isExecutableFile(atPath: listenerBinary) else {
            throw ProcessError.didNotStart("no binary at \(listenerBinary); run `swift build` first")
        }
        try process.run()
        stderrLines = PipeLines(reading: stderrPipe.fileHandleForReading)
        stdoutLines = PipeLines(reading: stdoutPipe.fileHandleForReading)
    }

    var pid: Int32 { process.processIdentifier }
    var logLines: [String] { stderrLines.lines }

    /// Waits until a log line contains `text`, and returns it.
    @discardableResult
    func waitForLog(_ text: String, timeout: Duration = .seconds(20)) throws -> String {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let line = logLines.first(where: { $0.contains(text) }) { return line }
            if !process.isRunning {
                Thread.sleep(forTimeInterval: 0.1)
                if let line = logLines.first(where: { $0.contains(text) }) { return line }
                throw ProcessError.didNotStart("exited with status \(process.terminationStatus); log:\n" + logLines.joined(separator: "\n"))
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        throw ProcessError.timedOut("log line containing \"\(text)\"; log:\n" + logLines.joined(separator: "\n"))
    }

    /// The callback port, found from the process: its listening sockets, the
    /// one that answers like the intake (a JSON `error`) rather than like the
    /// admin listener, the consumer API (which asks for a bearer token) or the
    /// sandbox. The tests bind port 0.
    func waitForCallbackPort(timeout: Duration = .seconds(20)) throws -> Int {
        try waitForPort("callback", timeout: timeout) { $0.bodyText.hasPrefix("{\"error\":") && $0.header("WWW-Authenticate") == nil }
    }

    /// The consumer API's port: the listening socket that asks for a bearer token.
    func waitForConsumerAPIPort(timeout: Duration = .seconds(20)) throws -> Int {
        try waitForPort("consumer API", timeout: timeout) { $0.status == 401 && $0.header("WWW-Authenticate")?.hasPrefix("Bearer") == true }
    }

    /// The admin port: the listening socket that answers `/healthz` as the admin listener does.
    func waitForAdminPort(timeout: Duration = .seconds(20)) throws -> Int {
        try waitForPort("admin", timeout: timeout) { ["serving\n", "draining\n"].contains($0.bodyText) }
    }

    private func waitForPort(_ what: String, timeout: Duration, answers: (ClientResponse) -> Bool) throws -> Int {
        let deadline = ContinuousClock.now + timeout
        var probed: [Int: Bool] = [:]
        while ContinuousClock.now < deadline {
            guard process.isRunning else {
                throw ProcessError.didNotStart("exited with status \(process.terminationStatus); log:\n" + logLines.joined(separator: "\n"))
            }
            for port in listeningTCPPorts(of: pid) where probed[port] == nil {
                // A port that does not answer yet is probed again on the next turn.
                guard let response = try? TestClient(port: port, timeout: .seconds(2)).get("/healthz") else { continue }
                probed[port] = answers(response)
                if probed[port] == true { return port }
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        throw ProcessError.timedOut("the \(what) port of process \(pid); log:\n" + logLines.joined(separator: "\n"))
    }

    func signal(_ number: Int32) { kill(process.processIdentifier, number) }

    /// Waits for exit and returns the status; kills with SIGKILL after the timeout.
    @discardableResult
    func waitForExit(timeout: Duration = .seconds(60)) -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        process.waitUntilExit()
        // The last lines may still be in the pipe: read it to its end (bounded).
        let drained = ContinuousClock.now + .seconds(5)
        while !stderrLines.ended && ContinuousClock.now < drained { Thread.sleep(forTimeInterval: 0.01) }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// Runs the binary to completion (a CLI command) and returns status and output.
func runListenerCommand(_ arguments: [String], environment: [String: String] = [:], timeout: Duration = .seconds(60)) throws
    -> (status: Int32, stdout: String, stderr: String)
{
    var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("THINGSPACE_LISTENER_") }
    env.merge(environment) { $1 }
    let result = try runProcess(URL(fileURLWithPath: listenerBinary), arguments, environment: env, timeout: timeout)
    return (result.status, result.stdout, result.stderr)
}

/// Runs `executable` to completion with exactly `environment`, killing it after `timeout`; both
/// pipes are drained on their own threads, so neither can fill and block the child.
func runProcess(_ executable: URL, _ arguments: [String], environment: [String: String], timeout: Duration) throws
    -> (status: Int32, stdout: String, stderr: String, timedOut: Bool)
{
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    process.environment = environment
    let output = Pipe()
    let errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    let collected = Mutex<(Data, Data)>((Data(), Data()))
    let drained = DispatchGroup()
    DispatchQueue.global().async(group: drained) {
        let data = output.fileHandleForReading.readDataToEndOfFile()
        collected.withLock { $0.0 = data }
    }
    DispatchQueue.global().async(group: drained) {
        let data = errors.fileHandleForReading.readDataToEndOfFile()
        collected.withLock { $0.1 = data }
    }
    let deadline = ContinuousClock.now + timeout
    while process.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.01) }
    let timedOut = process.isRunning
    if timedOut { kill(process.processIdentifier, SIGKILL) }
    process.waitUntilExit()
    _ = drained.wait(timeout: .now() + 10)
    let (out, err) = collected.withLock { ($0.0, $0.1) }
    return (process.terminationStatus, String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self), timedOut)
}

/// TCP ports process `pid` listens on: its socket descriptors
/// (/proc/PID/fd) matched with the kernel's table of listening sockets.
func listeningTCPPorts(of pid: Int32) -> [Int] {
    let fdDirectory = "/proc/\(pid)/fd"
    let inodes = Set(
        ((try? FileManager.default.contentsOfDirectory(atPath: fdDirectory)) ?? []).compactMap { name -> String? in
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: fdDirectory + "/" + name),
                target.hasPrefix("socket:[")
            else { return nil }
            return String(target.dropFirst(8).dropLast())
        })
    var ports: [Int] = []
    for table in ["tcp", "tcp6"] {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/net/\(table)", encoding: .utf8) else { continue }
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            // local_address rem_address st ... inode: state 0A is LISTEN.
            guard fields.count > 9, fields[3] == "0A", inodes.contains(String(fields[9])),
                let portText = fields[1].split(separator: ":").last, let port = Int(portText, radix: 16)
            else { continue }
            ports.append(port)
        }
    }
    return ports.sorted()
}
