import HTTP1
import HTTPServer

extension ListenerConfiguration {
    /// The HTTP server settings for the callback port.
    public var serverConfiguration: HTTPServerConfiguration {
        var server = HTTPServerConfiguration()
        server.host = http.host
        server.port = http.port
        server.maxConnections = http.maxConnections
        server.limits.maxBodyBytes = http.maxBodyBytes
        server.limits.maxHeaderBytes = http.maxHeaderBytes
        server.headerReadTimeout = .milliseconds(Int(http.headerReadTimeout * 1000))
        server.bodyReadTimeout = .milliseconds(Int(http.bodyReadTimeout * 1000))
        server.idleTimeout = .milliseconds(Int(http.idleTimeout * 1000))
        server.writeTimeout = .milliseconds(Int(http.writeTimeout * 1000))
        return server
    }
}
