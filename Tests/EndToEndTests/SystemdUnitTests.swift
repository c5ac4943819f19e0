import Foundation
import Testing

/// The unit files in systemd/, checked offline by systemd/check (which runs
/// `systemd-analyze security --offline` and `systemd-analyze verify`).
/// Needs systemd-analyze, not a running systemd; independent of the binary.
@Suite("systemd units")
struct SystemdUnitTests {
    static let repositoryRoot = URL(filePath: #filePath)
        .deletingLastPathComponent()  // EndToEndTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()
    static let unitsDirectory = repositoryRoot.appending(path: "systemd")

    static let systemdAnalyzeIsInstalled: Bool = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let directories = path.split(separator: ":").map(String.init) + ["/usr/bin", "/bin"]
        return directories.contains { FileManager.default.isExecutableFile(atPath: $0 + "/systemd-analyze") }
    }()

    static let requirement = Testing.ConditionTrait.enabled(
        if: systemdAnalyzeIsInstalled,
        "systemd-analyze is not installed (Debian: apt-get install systemd); the unit files were not checked"
    )

    @Test("the service is sandboxed to an exposure of 1.2 or less and every unit verifies clean", requirement)
    func unitsPassTheCheck() throws {
        let result = try Self.runCheck(in: Self.unitsDirectory)
        #expect(result.status == 0, "systemd/check failed:\n\(result.output)")
        let exposure = try #require(Self.exposure(in: result.output), "no exposure=N.N line in:\n\(result.output)")
        #expect(exposure <= 1.2, "exposure \(exposure)")
        #expect(result.output.contains("verify=clean"), "\(result.output)")
    }

    @Test("the check fails when the exposure is above its limit", requirement)
    func checkRefusesAnExposureAboveTheLimit() throws {
        let result = try Self.runCheck(in: Self.unitsDirectory, environment: ["MAX_EXPOSURE": "0.5"])
        #expect(result.status != 0)
        #expect(result.output.contains("too exposed"), "\(result.output)")
    }

    @Test("the check fails when a unit has a key systemd does not know", requirement)
    func checkRefusesAUnitVerifyComplainsAbout() throws {
        let copy = FileManager.default.temporaryDirectory.appending(path: "systemd-units-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: copy) }
        // Resolved, so that a symbolic link is copied as the directory it names.
        try FileManager.default.copyItem(at: Self.unitsDirectory.resolvingSymlinksInPath(), to: copy)
        let socket = copy.appending(path: "thingspace-listener-admin.socket")
        let text = try String(contentsOf: socket, encoding: .utf8)
        try text.replacingOccurrences(of: "[Socket]\n", with: "[Socket]\nListenStreem=127.0.0.1:9\n")
            .write(to: socket, atomically: true, encoding: .utf8)

        let result = try Self.runCheck(in: copy)
        #expect(result.status != 0)
        #expect(result.output.contains("ListenStreem"), "\(result.output)")
    }

    // MARK: Running the checker

    struct CheckResult {
        var status: Int32
        var output: String
    }

    /// Runs `check` from `directory`, its output (stdout and stderr) in a
    /// file so that no pipe can fill up; killed if it outlives a minute.
    static func runCheck(in directory: URL, environment extra: [String: String] = [:]) throws -> CheckResult {
        let outputFile = FileManager.default.temporaryDirectory.appending(path: "systemd-check-\(UUID().uuidString).log")
        #expect(FileManager.default.createFile(atPath: outputFile.path, contents: nil))
        defer { try? FileManager.default.removeItem(at: outputFile) }
        let output = try FileHandle(forWritingTo: outputFile)
        defer { try? output.close() }

        let process = Process()
        process.executableURL = directory.appending(path: "check")
        var environment = ProcessInfo.processInfo.environment
        environment["THINGSPACE_LISTENER_BIN"] = nil  // the stand-in /bin/true, whatever is built
        environment["MAX_EXPOSURE"] = nil
        environment.merge(extra) { _, new in new }
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = output
        process.standardError = output
        try process.run()

        let deadline = Date.now.addingTimeInterval(60)
        while process.isRunning && Date.now < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
            Issue.record("systemd/check did not finish within 60 s")
        }
        process.waitUntilExit()
        let text = (try? String(contentsOf: outputFile, encoding: .utf8)) ?? ""
        return CheckResult(status: process.terminationStatus, output: text)
    }

    /// The figure of the `exposure=N.N limit=N.N` line.
    static func exposure(in output: String) -> Double? {
        for line in output.split(separator: "\n") where line.hasPrefix("exposure=") {
            let field = line.dropFirst("exposure=".count).prefix { $0 != " " }
            return Double(field)
        }
        return nil
    }
}
