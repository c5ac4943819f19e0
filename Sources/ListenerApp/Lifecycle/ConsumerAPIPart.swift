// The consumer API (`api.*`) as a part of `serve`: its own port, served by the same strict HTTP
// server as the callback port, reading the store beside the engine through two read-only
// connections (pages, and the wait for new callbacks). Started after the callback server, so it
// stops first: waiting long polls are answered and streams finished before the drain.
import CallbackStore
import Delivery
import HTTP1
import HTTPServer
import Logging

final class ConsumerAPIPart: ListenerPart {
    let name = "consumer API"
    private let configuration: ListenerConfiguration
    private let store: StorePart
    private let metrics: ListenerMetrics
    private let logger: Logger
    let server = StartedValue<HTTPServer>()
    let handler = StartedValue<ConsumerAPIHandler>()

    /// nil when `api.enabled` is false.
    init?(configuration: ListenerConfiguration, store: StorePart, metrics: ListenerMetrics, logger: Logger) {
        guard configuration.api.enabled else { return nil }
        self.configuration = configuration
        self.store = store
        self.metrics = metrics
        self.logger = logger
    }

    /// The bound port, once listening (useful with port 0).
    var localPort: Int? { server.current?.localPort }

    func start() throws(ListenerError) {
        let api = configuration.api
        let tokens = api.tokens.compactMap { ConsumerAPIToken($0.value) }
        guard !tokens.isEmpty else {
            throw .partFailed(
                name, "api.enabled is true but api.tokens holds no token; set at least one (api.tokens, or the api-tokens credential)")
        }
        if api.port != 0 && api.port == configuration.http.port {
            throw .partFailed(name, "api.port \(api.port) is the callback port (http.port); give the consumer API a port of its own")
        }
        let opened = store.opened.required(by: name)
        let handler: ConsumerAPIHandler
        do {
            handler = ConsumerAPIHandler(
                tokens: tokens, reader: try opened.makeReader(), arrivals: try opened.makeReader(), logger: logger,
                onLoadChange: { [metrics] streams, longPolls in metrics.setConsumerAPILoad(streams: streams, longPolls: longPolls) })
        } catch {
            throw .storeUnavailable("the consumer API cannot read the store: \(error)")
        }
        let server = HTTPServer(configuration: Self.serverConfiguration(configuration), handler: handler, logger: logger)
        self.handler.set(handler)
        self.server.set(server)
        handler.start()
        do {
            try server.start()
        } catch {
            handler.stop()
            throw .listenFailed("consumer API \(api.host):\(api.port): \(error)")
        }
        logger.info(
            "consumer API listening",
            metadata: ["listener.address": "\(api.host):\(server.localPort ?? api.port)", "listener.path": "/v1/callbacks, /v1/stream"])
    }

    /// Long polls answered now, streams finished, then the server's drain.
    func stop() async {
        handler.current?.stop()
        guard let server = server.current else { return }
        let grace = Duration.milliseconds(Int(configuration.http.shutdownGracePeriod * 1000))
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            server.shutdown(gracePeriod: grace) { done.resume() }
        }
    }

    /// The callback port's timeouts and limits, on the API's address. Requests are small GETs.
    static func serverConfiguration(_ configuration: ListenerConfiguration) -> HTTPServerConfiguration {
        var server = configuration.serverConfiguration
        server.host = configuration.api.host
        server.port = configuration.api.port
        server.maxConnections = min(configuration.http.maxConnections, 1024)
        server.limits.maxBodyBytes = 64 * 1024
        return server
    }
}
