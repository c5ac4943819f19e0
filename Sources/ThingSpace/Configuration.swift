import HTTPClient
import Vocabulary

/// The four secrets-bearing values the client logs in with. Printing,
/// dumping or interpolating it never shows the secret or the password.
public struct ThingSpaceCredentials: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// OAuth client key (ThingSpace "App Key").
    public var clientID: String
    /// OAuth client secret (ThingSpace "App Secret").
    public var clientSecret: String
    /// UWS (M2M) account username for the session login.
    public var username: String
    /// UWS (M2M) account password for the session login.
    public var password: String

    public init(clientID: String, clientSecret: String, username: String, password: String) {
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.username = username
        self.password = password
    }

    public var description: String {
        "ThingSpaceCredentials(clientID: \(clientID), clientSecret: \(Redaction.marker), username: \(username), password: \(Redaction.marker))"
    }
    public var debugDescription: String { description }
    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "clientID": clientID, "clientSecret": Redaction.marker,
                "username": username, "password": Redaction.marker,
            ])
    }

    /// Checks that none is empty (an empty login counts as a failed one).
    public func validate() throws(ThingSpaceError) {
        for (name, value) in [("clientID", clientID), ("clientSecret", clientSecret), ("username", username), ("password", password)]
        where value.isEmpty {
            throw .invalidArgument("the ThingSpace \(name) is empty")
        }
    }
}

/// How the client reaches ThingSpace and how patient it is. Holds no secret.
public struct ThingSpaceClientConfiguration: Sendable, Hashable {
    public static let productionBaseURL = "https://thingspace.verizon.com/api"

    /// Everything before `/ts/v1/...` and `/m2m/v1/...`; a trailing `/` is ignored.
    public var baseURL: String = Self.productionBaseURL
    /// Limit for the TCP and TLS handshakes of one request.
    public var connectTimeout: Duration = .seconds(10)
    /// Limit for one whole request.
    public var totalTimeout: Duration = .seconds(30)
    /// Tries per operation for network errors, 429 and 5xx (1 = no retry).
    public var maxAttempts: Int = 4
    /// First backoff delay; doubled per retry, with jitter.
    public var retryBaseDelay: Duration = .milliseconds(500)
    /// Cap on one backoff delay (also on an honoured `Retry-After`).
    public var retryMaxDelay: Duration = .seconds(30)
    /// An access token is renewed this long before its `expires_in` ends.
    public var tokenRenewalMargin: Duration = .seconds(60)
    /// A session unused this long is treated as expired (ThingSpace: 20 minutes).
    public var sessionIdleLifetime: Duration = .seconds(19 * 60)
    /// Lifetime assumed when the token answer has no `expires_in`.
    public var defaultTokenLifetime: Duration = .seconds(3600)

    public init() {}

    public init(
        baseURL: String = Self.productionBaseURL,
        connectTimeout: Duration = .seconds(10),
        totalTimeout: Duration = .seconds(30),
        maxAttempts: Int = 4,
        retryBaseDelay: Duration = .milliseconds(500),
        retryMaxDelay: Duration = .seconds(30)
    ) {
        self.baseURL = baseURL
        self.connectTimeout = connectTimeout
        self.totalTimeout = totalTimeout
        self.maxAttempts = maxAttempts
        self.retryBaseDelay = retryBaseDelay
        self.retryMaxDelay = retryMaxDelay
    }

    /// The backoff of the client's retries: `maxAttempts` tries,
    /// `retryBaseDelay` doubling up to `retryMaxDelay`, with equal jitter.
    public var retryPolicy: RetryPolicy {
        RetryPolicy(maxAttempts: max(maxAttempts, 1), baseDelay: retryBaseDelay, maxDelay: retryMaxDelay)
    }

    /// The base URL without a trailing slash.
    var normalizedBaseURL: String {
        var url = baseURL
        while url.hasSuffix("/") { url.removeLast() }
        return url
    }

    /// Checks the values make sense before any request is made.
    public func validate() throws(ThingSpaceError) {
        let lowered = baseURL.lowercased()
        guard lowered.hasPrefix("https://") || lowered.hasPrefix("http://"), baseURL.count > 8 else {
            throw .invalidArgument("baseURL '\(baseURL)' must be an absolute http(s) URL")
        }
        if baseURL.contains("?") || baseURL.contains("#") {
            throw .invalidArgument("baseURL '\(baseURL)' must not contain a query or fragment")
        }
        if maxAttempts < 1 { throw .invalidArgument("maxAttempts must be at least 1 (got \(maxAttempts))") }
        if connectTimeout <= .zero || totalTimeout <= .zero { throw .invalidArgument("timeouts must be positive") }
        if retryBaseDelay < .zero || retryMaxDelay < .zero { throw .invalidArgument("retry delays must not be negative") }
        if tokenRenewalMargin < .zero { throw .invalidArgument("tokenRenewalMargin must not be negative") }
        if sessionIdleLifetime <= .zero { throw .invalidArgument("sessionIdleLifetime must be positive") }
    }
}
