// The faultfs shim (Tests/FaultInjection/faultfs.c) and its probe, compiled with the system's C
// compiler once per test run into a temporary directory, and the environment that loads the shim
// into a child process. No binary is committed: the source is the tool.
import Foundation
import Synchronization

enum FaultFSError: Error, CustomStringConvertible {
    case compileFailed(String)
    case commandFailed(String)
    var description: String {
        switch self {
        case .compileFailed(let why): return "could not compile the faultfs shim: \(why)"
        case .commandFailed(let why): return why
        }
    }
}

enum FaultFS {
    struct Build: Sendable {
        /// The LD_PRELOAD library.
        let library: String
        /// The probe program (faultfs-probe.c) that drives the shim through chosen calls.
        let probe: String
    }

    static let sourceDirectory = repositoryRoot.appendingPathComponent("Tests/FaultInjection").path

    /// Compiled on first use, once per test process (a `static let` is initialised once, thread-safely).
    private static let compiled: Result<Build, FaultFSError> = {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("faultfs-\(getpid())-\(UUID().uuidString)").path
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            return .failure(.compileFailed("\(error)"))
        }
        let build = Build(library: directory + "/faultfs.so", probe: directory + "/faultfs-probe")
        let steps = [
            ["cc", "-shared", "-fPIC", "-O2", "-Wall", "-o", build.library, sourceDirectory + "/faultfs.c", "-ldl", "-lpthread"],
            ["cc", "-O2", "-Wall", "-o", build.probe, sourceDirectory + "/faultfs-probe.c", "-lpthread"],
        ]
        for step in steps {
            guard let result = try? runCommand(step, timeout: .seconds(120)) else {
                return .failure(.compileFailed("could not run \(step.joined(separator: " "))"))
            }
            guard result.status == 0 else { return .failure(.compileFailed("\(step.joined(separator: " ")): \(result.stderr)")) }
        }
        return .success(build)
    }()

    static func build() throws -> Build { try compiled.get() }

    /// What a failing sync is chosen by (see faultfs.c).
    enum Failure {
        /// The Nth matching fdatasync/fsync of the process.
        case atSync(Int)
        /// The first matching sync after this file exists.
        case afterTrigger(String)
    }

    /// The environment that loads the shim into a child process: fail one sync of files whose name
    /// (or path prefix, or glob) is `match`, and only once in the process.
    static func environment(match: String, failure: Failure, log: String? = nil) throws -> [String: String] {
        var environment = ["LD_PRELOAD": try build().library, "FAULTFS_MATCH": match, "FAULTFS_ONCE": "1"]
        switch failure {
        case .atSync(let number): environment["FAULTFS_FAIL_AT"] = String(number)
        case .afterTrigger(let path): environment["FAULTFS_TRIGGER"] = path
        }
        if let log { environment["FAULTFS_LOG"] = log }
        return environment
    }
}

/// Runs a program found on PATH to completion, with a bound; returns status and output.
func runCommand(_ arguments: [String], environment: [String: String] = [:], timeout: Duration = .seconds(60)) throws
    -> (status: Int32, stdout: String, stderr: String, timedOut: Bool)
{
    var env = ProcessInfo.processInfo.environment
    env.merge(environment) { $1 }
    return try runProcess(URL(fileURLWithPath: "/usr/bin/env"), arguments, environment: env, timeout: timeout)
}
