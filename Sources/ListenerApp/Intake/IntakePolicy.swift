import Foundation

/// What the intake accepts: the settings SIGHUP may change without a restart.
public struct IntakePolicy: Sendable {
    public var services: [String]
    public var username: String?
    public var password: Secret?
    public var previousPassword: Secret?
    public var allowedSources: [CIDR]
    public var trustedProxies: [CIDR]

    public init(_ callbacks: ListenerConfiguration.Callbacks) {
        services = callbacks.services
        username = callbacks.username
        password = callbacks.password
        previousPassword = callbacks.previousPassword
        allowedSources = callbacks.allowedSources
        trustedProxies = callbacks.trustedProxies
    }

    /// The client's address: the peer, or, when the peer is a trusted proxy,
    /// the nearest untrusted address of `X-Forwarded-For` (read right to left,
    /// since only the proxies' own additions can be believed).
    func clientAddress(peer: String, forwardedFor: [String]) -> String {
        guard !trustedProxies.isEmpty, trustedProxies.containsAddress(peer), !forwardedFor.isEmpty else { return peer }
        let hops = forwardedFor.joined(separator: ",").split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        for hop in hops.reversed() where !trustedProxies.containsAddress(hop) { return hop }
        return hops.first ?? peer
    }

    func isSourceAllowed(_ address: String) -> Bool {
        allowedSources.isEmpty || allowedSources.containsAddress(address)
    }

    /// Whether the body's credentials are the configured ones (or the previous
    /// password, during a rotation). Compared in constant time.
    func acceptsCredentials(username given: String?, password givenPassword: String?) -> Bool {
        guard let username, let password else { return true }
        let userMatches = constantTimeEquals(given ?? "", username) && given != nil
        var passwordMatches = constantTimeEquals(givenPassword ?? "", password.value)
        if let previousPassword {
            passwordMatches = constantTimeEquals(givenPassword ?? "", previousPassword.value) || passwordMatches
        }
        return userMatches && passwordMatches && givenPassword != nil
    }
}

/// Equality whose running time depends only on the lengths, not on where the
/// first difference lies.
func constantTimeEquals(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8)
    let y = Array(b.utf8)
    var difference = UInt8(x.count == y.count ? 0 : 1)
    for index in 0..<max(x.count, y.count) {
        difference |= (index < x.count ? x[index] : 0) ^ (index < y.count ? y[index] : 0)
    }
    return difference == 0
}
