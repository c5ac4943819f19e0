import ArgumentParser
import Foundation
import HTTPClient
import ListenerApp
import ThingSpace
import ThingSpaceSandbox

/// Posts realistic sample callbacks to a listener, like `stripe trigger`.
struct SendTest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send-test",
        abstract: "Post sample ThingSpace callbacks (success, fault, usage, a duplicate) to a listener.",
        discussion: "Each sample gets a fresh requestId; the duplicate repeats the first with callbackCount 2."
    )

    @Option(help: "Listener base URL, e.g. http://127.0.0.1:9001/callbacks (the service name is appended).")
    var url: String
    @Option(help: "Only this service's samples (CarrierService or DeviceUsage).") var service: String?
    @Option(help: "Callback username to put in the bodies.") var username: String = "listener-user"
    @Option(help: "Callback password to put in the bodies. Visible to `ps`: prefer --password-file.")
    var password: String?
    @Option(name: .customLong("password-file"), help: "Read the callback password from this file.") var passwordFile: String?

    func validate() throws {
        guard let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme?.lowercased() ?? "") else {
            throw ValidationError("--url must be an http:// or https:// URL")
        }
    }

    func run() async throws {
        var secret = password ?? "listener-pass"
        if let passwordFile {
            guard let text = try? String(contentsOfFile: passwordFile, encoding: .utf8) else {
                throw ValidationError("cannot read --password-file \(passwordFile)")
            }
            secret = text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let samples = SampleCallbacks.smokeTestSet(username: username, password: secret).filter { service == nil || $0.service == service }
        guard !samples.isEmpty else { throw ValidationError("no samples for service \(service ?? "")") }
        let http = CurlHTTPClient(connectTimeout: .seconds(5), totalTimeout: .seconds(10))
        let base = url.hasSuffix("/") ? String(url.dropLast()) : url
        var failures = 0
        for sample in samples {
            let request = CurlHTTPClient.Request(
                method: .post, url: "\(base)/\(sample.service)",
                headers: [("Content-Type", "application/json"), ("User-Agent", "Verizon's callback service")],
                body: sample.body)
            do {
                let response = try await http.send(request)
                let ok = (200..<300).contains(response.status)
                if !ok { failures += 1 }
                print(
                    "\(ok ? "ok  " : "FAIL") \(response.status) \(sample.name) → \(sample.service) \(String(decoding: response.body.prefix(200), as: UTF8.self))"
                )
            } catch {
                failures += 1
                print("FAIL \(sample.name) → \(sample.service): \(error)")
            }
        }
        if failures > 0 { throw ExitCode(1) }
    }
}
