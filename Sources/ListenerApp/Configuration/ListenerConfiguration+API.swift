// `api.*`, the consumer API's settings: read and validated, nothing more. Its bearer tokens are
// secrets and, like every secret, may come from the credentials directory or the environment.
import Foundation

extension ListenerConfiguration {
    static func api(from source: ConfigurationSource, http: HTTP, admin: Admin) throws(ConfigurationError) -> API {
        var api = API()
        if let v = try source.bool("api.enabled") { api.enabled = v }
        if let v = try source.string("api.host") { api.host = try Self.host(v, key: "api.host") }
        if let v = try source.int("api.port") { api.port = try Self.port(v, key: "api.port") }
        api.tokens = try Self.bearerTokens(source.stringArray("api.tokens", secret: true))
        guard api.enabled else { return api }
        if api.tokens.isEmpty {
            throw .missingValue(
                key: "api.tokens",
                reason: "api.enabled is true; set bearer tokens here, in the credentials file "
                    + "\(ConfigurationSource.credentialsFileName(for: "api.tokens")) (one per line)"
                    + " or in \(ConfigurationSource.environmentName(for: "api.tokens")) (comma-separated)")
        }
        var others = [("http.port", http.host, http.port)]
        if admin.enabled { others.append(("admin.port", admin.host, admin.port)) }
        for (key, host, port) in others where port == api.port && port != 0 && hostsMayOverlap(host, api.host) {
            throw .invalidValue(key: "api.port", expected: "a port other than \(key) (\(port)) on an address that may be the same")
        }
        return api
    }

    /// Bearer tokens (RFC 6750 `b64token`): a JSON list, or comma-separated in the environment,
    /// or one per line (or comma-separated) in the credentials file.
    private static func bearerTokens(_ values: [String]?) throws(ConfigurationError) -> [Secret] {
        var tokens: [Secret] = []
        for value in values ?? [] {
            for line in value.split(whereSeparator: { $0 == "\n" || $0 == "\r" || $0 == "," }) {
                let token = line.trimmingCharacters(in: .whitespaces)
                if token.isEmpty { continue }
                guard isBearerToken(token) else {
                    throw .invalidValue(
                        key: "api.tokens", expected: "bearer tokens of letters, digits and - . _ ~ + / (= only at the end)")
                }
                tokens.append(Secret(token))
            }
        }
        return tokens
    }

    static func isBearerToken(_ token: String) -> Bool {
        let body = token.utf8.reversed().drop { $0 == UInt8(ascii: "=") }
        return !body.isEmpty
            && body.allSatisfy { byte in
                (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x30 && byte <= 0x39)
                    || "-._~+/".utf8.contains(byte)
            }
    }

    /// Whether two listen addresses could take the same port: a wildcard (`0.0.0.0`, `::`) is taken
    /// to overlap every address, a host name could resolve to anything, and two literal addresses
    /// overlap when they are equal (an IPv4-mapped IPv6 address counts as its IPv4 one).
    static func hostsMayOverlap(_ a: String, _ b: String) -> Bool {
        guard let (x, _) = CIDR.parseAddress(a), let (y, _) = CIDR.parseAddress(b) else { return true }
        let unspecified: Set<[UInt8]> = [Array(repeating: 0, count: 16), Array(repeating: 0, count: 10) + [0xff, 0xff, 0, 0, 0, 0]]
        return unspecified.contains(x) || unspecified.contains(y) || x == y
    }
}
