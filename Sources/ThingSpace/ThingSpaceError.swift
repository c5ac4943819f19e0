/// Which login ThingSpace refused.
public enum ThingSpaceCredentialKind: String, Sendable, Equatable {
    /// The OAuth client key and secret (`POST /ts/v1/oauth2/token`).
    case oauthClient = "OAuth client key/secret"
    /// The UWS (M2M) username and password (`POST /m2m/v1/session/login`).
    case sessionLogin = "UWS username/password"
}

/// Everything the ThingSpace client can throw. No case carries a secret.
public enum ThingSpaceError: Error, Sendable, Equatable, CustomStringConvertible {
    /// ThingSpace answered with a status that is not a success: the
    /// `{"errorCode","errorMessage"}` body, or the gateway's
    /// `{"fault":{"code","message"}}` form mapped onto the same fields.
    case api(status: Int, errorCode: String?, errorMessage: String?)
    /// No usable HTTP answer: connection, DNS, TLS, timeout.
    case network(String)
    /// A login was refused for its credentials. Never retried automatically:
    /// five consecutive failed session logins lock the account. Once raised,
    /// the client refuses to log in again until it is re-created.
    case invalidCredentials(kind: ThingSpaceCredentialKind, status: Int, errorCode: String?, errorMessage: String?)
    /// A success status with a body that is not what the API documents.
    case invalidResponse(String)
    /// A caller-supplied value ThingSpace would refuse (checked before sending).
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .api(status, errorCode, errorMessage):
            return "ThingSpace answered HTTP \(status)\(Self.detail(errorCode, errorMessage))"
        case let .network(message):
            return "Could not reach ThingSpace: \(message)"
        case let .invalidCredentials(kind, status, errorCode, errorMessage):
            let advice =
                kind == .sessionLogin
                ? "check the configured username and password; not retried, because five failed logins lock the account until Verizon support unlocks it"
                : "check the configured OAuth client key and secret; not retried"
            return "ThingSpace refused the \(kind.rawValue) (HTTP \(status)\(Self.detail(errorCode, errorMessage))): \(advice)"
        case let .invalidResponse(message):
            return "Unexpected response from ThingSpace: \(message)"
        case let .invalidArgument(message):
            return "Invalid argument: \(message)"
        }
    }

    /// The HTTP status ThingSpace answered, if it answered.
    public var httpStatus: Int? {
        switch self {
        case let .api(status, _, _), let .invalidCredentials(_, status, _, _): status
        default: nil
        }
    }

    private static func detail(_ code: String?, _ message: String?) -> String {
        switch (code, message) {
        case let (code?, message?): ", \(code): \(message)"
        case let (code?, nil): ", \(code)"
        case let (nil, message?): ", \(message)"
        case (nil, nil): ""
        }
    }
}
