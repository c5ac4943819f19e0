import ArgumentParser
import Foundation
import ListenerApp
import Logging
import ThingSpaceSandbox

/// ThingSpace on your machine: token, session, callbacks API and callback delivery.
struct Sandbox: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a local ThingSpace simulator on loopback (for trying the listener and the callbacks commands).",
        discussion: """
            It speaks the endpoints of THINGSPACE.md with their real formats (empty-body list, \
            error bodies, session expiry, lockout after five failed logins) and, once a listener is \
            registered, delivers sample callbacks to it, resending those not answered 2xx within \
            4 s with a rising callbackCount. Its only account is 0252012345-00001; its OAuth client \
            is sandbox-client-id / sandbox-client-secret and its UWS login sandbox-user / \
            sandbox-password (test values, not secrets). Point thingspace.baseURL at the printed URL.
            """
    )

    @Option(help: "Port on 127.0.0.1 (0 picks a free one).") var port: Int = 9100
    @Option(name: .customLong("sample-interval"), help: "Seconds between sample callbacks per registration.")
    var sampleInterval: Int = 30
    @Option(name: .customLong("resend-interval"), help: "Seconds before an unacknowledged callback is resent (ThingSpace: 300).")
    var resendInterval: Int = 5

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0 to 65535") }
        guard sampleInterval > 0, resendInterval > 0 else { throw ValidationError("intervals must be above 0") }
    }

    func run() async throws {
        let signals = await ProcessSignals()
        bootstrapLogging(ListenerConfiguration.Logging())
        var settings = SandboxConfiguration()
        settings.port = port
        settings.sampleInterval = .seconds(sampleInterval)
        settings.resendInterval = .seconds(resendInterval)
        let sandbox = ThingSpaceSandbox(configuration: settings, logger: Logger(label: "thingspace-sandbox"))
        do {
            try sandbox.start()
        } catch {
            FileHandle.standardError.write(Data("thingspace-listener: sandbox: \(error)\n".utf8))
            throw ExitCode(1)
        }
        print("ThingSpace sandbox at \(sandbox.baseURL) (account \(sandbox.accountName)); Ctrl-C stops it.")
        _ = await signals.waitForStop()
        sandbox.stop()
    }
}
