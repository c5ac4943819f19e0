import Logging
import ThingSpace
import ThingSpaceSandbox

/// `thingspace.sandbox: true`: a ThingSpace simulator in this process, so
/// `make run` shows the whole cycle (register, receive, persist,
/// deregister) without a Verizon account. The registrar talks to it exactly
/// as to ThingSpace, over libcurl and loopback.
final class SandboxHost: Sendable {
    let sandbox: ThingSpaceSandbox
    private let listenerBaseURL: String

    init(configuration: ListenerConfiguration, listenerPort: Int?, logger: Logger) throws {
        var settings = SandboxConfiguration()
        settings.sampleInterval = .seconds(15)
        var sandboxLogger = logger
        sandboxLogger[metadataKey: "log.component"] = "sandbox"
        sandbox = ThingSpaceSandbox(configuration: settings, logger: sandboxLogger)
        try sandbox.start()
        let host = ["0.0.0.0", "::", "*"].contains(configuration.http.host) ? "127.0.0.1" : configuration.http.host
        let port = listenerPort ?? configuration.http.port
        listenerBaseURL =
            configuration.thingspace.callbackBaseURL
            ?? "http://\(host.contains(":") ? "[\(host)]" : host):\(port)\(configuration.http.pathPrefix)"
        logger.notice("ThingSpace sandbox running: callbacks are simulated", metadata: ["sandbox.base_url": "\(sandbox.baseURL)"])
    }

    /// The ThingSpace settings that point the registrar at the sandbox.
    func thingspaceSettings(overriding settings: ListenerConfiguration.ThingSpace) -> ListenerConfiguration.ThingSpace {
        var result = settings
        let credentials = sandbox.credentials
        result.baseURL = sandbox.baseURL
        result.accountName = sandbox.accountName
        result.clientID = credentials.clientID
        result.clientSecret = Secret(credentials.clientSecret)
        result.username = credentials.username
        result.password = Secret(credentials.password)
        result.callbackBaseURL = listenerBaseURL
        result.register = true
        return result
    }

    var baseURL: String { sandbox.baseURL }

    func stop() { sandbox.stop() }
}
