// Wire models of the Connectivity Callbacks API and its logins. JSON field
// names are exactly those on the wire (see THINGSPACE.md). Every model
// holding a secret prints it redacted.
import Foundation
import Vocabulary

/// Body of `POST /m2m/v1/callbacks/{aname}`.
public struct RegisterCallbackRequest: Codable, Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    /// Longest `username` or `password` ThingSpace accepts.
    public static let maxCredentialLength = 40

    /// The service name, e.g. `CarrierService`.
    public var name: String
    /// The listener URL ThingSpace will POST callbacks to.
    public var url: String
    /// Sent back as a top-level field of every callback (not the account login).
    public var username: String?
    /// Sent back as a top-level field of every callback (not the account login).
    public var password: String?

    public init(name: String, url: String, username: String? = nil, password: String? = nil) {
        self.name = name
        self.url = url
        self.username = username
        self.password = password
    }

    /// Checks what ThingSpace documents: a service name, an absolute
    /// http(s) URL, username and password of at most 40 characters.
    public func validate() throws(ThingSpaceError) {
        if name.isEmpty { throw .invalidArgument("the callback service name is empty") }
        if !isValidPathSegment(name) { throw .invalidArgument("the callback service name '\(name)' contains a control character") }
        let lowered = url.lowercased()
        guard lowered.hasPrefix("https://") || lowered.hasPrefix("http://"),
            let parsed = URLComponents(string: url), let host = parsed.host, !host.isEmpty
        else {
            throw .invalidArgument("the callback URL '\(url)' is not an absolute http(s) URL")
        }
        if let username, username.count > Self.maxCredentialLength {
            throw .invalidArgument(
                "the callback username has \(username.count) characters; ThingSpace accepts at most \(Self.maxCredentialLength)")
        }
        if let password, password.count > Self.maxCredentialLength {
            throw .invalidArgument(
                "the callback password has \(password.count) characters; ThingSpace accepts at most \(Self.maxCredentialLength)")
        }
    }

    public var description: String {
        "RegisterCallbackRequest(name: \(name), url: \(redactingUserInfo(url)), username: \(username ?? "nil"), password: \(password == nil ? "nil" : Redaction.marker))"
    }
    public var debugDescription: String { description }

    enum CodingKeys: String, CodingKey { case name, url, username, password }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(url, forKey: .url)
        try container.encodeIfPresent(username, forKey: .username)
        try container.encodeIfPresent(password, forKey: .password)
    }
}

/// One entry of `GET /m2m/v1/callbacks/{aname}`. Every field is optional; an
/// empty string on the wire means "not set" and decodes to nil. Some
/// answers carry `name` instead of `serviceName`: both are accepted.
public struct ConnectivityManagementCallback: Codable, Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    public var accountName: String?
    public var serviceName: String?
    public var url: String?
    public var username: String?
    /// ThingSpace returns it in clear text: print `redacted`, never this.
    public var password: String?

    public init(
        accountName: String? = nil, serviceName: String? = nil, url: String? = nil, username: String? = nil, password: String? = nil
    ) {
        self.accountName = accountName
        self.serviceName = serviceName
        self.url = url
        self.username = username
        self.password = password
    }

    /// A copy safe to log: a non-empty password becomes `<redacted>`.
    public var redacted: ConnectivityManagementCallback {
        var copy = self
        if let password, !password.isEmpty { copy.password = Redaction.marker }
        return copy
    }

    public var description: String {
        let shown = redacted
        return
            "ConnectivityManagementCallback(accountName: \(shown.accountName ?? "nil"), serviceName: \(shown.serviceName ?? "nil"), url: \(shown.url.map(redactingUserInfo) ?? "nil"), username: \(shown.username ?? "nil"), password: \(shown.password ?? "nil"))"
    }
    public var debugDescription: String { description }

    enum CodingKeys: String, CodingKey { case accountName, serviceName, name, url, username, password }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        func field(_ key: CodingKeys) throws -> String? {
            let value = try container.decodeIfPresent(String.self, forKey: key)
            return value?.isEmpty == true ? nil : value
        }
        accountName = try field(.accountName)
        serviceName = try field(.serviceName) ?? field(.name)
        url = try field(.url)
        username = try field(.username)
        password = try field(.password)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(accountName, forKey: .accountName)
        try container.encodeIfPresent(serviceName, forKey: .serviceName)
        try container.encodeIfPresent(url, forKey: .url)
        try container.encodeIfPresent(username, forKey: .username)
        try container.encodeIfPresent(password, forKey: .password)
    }
}

/// Answer of Register and Deregister.
public struct CallbackActionResult: Codable, Sendable, Hashable {
    public var accountName: String?
    public var serviceName: String?

    public init(accountName: String? = nil, serviceName: String? = nil) {
        self.accountName = accountName
        self.serviceName = serviceName
    }
}

/// Answer of `POST /ts/v1/oauth2/token`. `expires_in` is accepted as a
/// number or a numeric string (OAuth gateways send either).
public struct OAuthToken: Codable, Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    public var accessToken: String
    public var tokenType: String?
    /// Lifetime in seconds (ThingSpace: one hour).
    public var expiresIn: Int?
    public var scope: String?

    public init(accessToken: String, tokenType: String? = "Bearer", expiresIn: Int?, scope: String? = nil) {
        self.accessToken = accessToken
        self.tokenType = tokenType
        self.expiresIn = expiresIn
        self.scope = scope
    }

    enum CodingKeys: String, CodingKey {
        case accessToken = "access_token"
        case tokenType = "token_type"
        case expiresIn = "expires_in"
        case scope
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        accessToken = try container.decode(String.self, forKey: .accessToken)
        tokenType = try container.decodeIfPresent(String.self, forKey: .tokenType)
        scope = try container.decodeIfPresent(String.self, forKey: .scope)
        if let seconds = try? container.decodeIfPresent(Int.self, forKey: .expiresIn) {
            expiresIn = seconds
        } else if let text = try? container.decodeIfPresent(String.self, forKey: .expiresIn) {
            expiresIn = Int(text)
        } else {
            expiresIn = nil
        }
    }

    public var description: String {
        "OAuthToken(accessToken: \(Redaction.marker), tokenType: \(tokenType ?? "nil"), expiresIn: \(expiresIn.map(String.init) ?? "nil"), scope: \(scope ?? "nil"))"
    }
    public var debugDescription: String { description }
}

/// Body of `POST /m2m/v1/session/login`.
public struct SessionLoginRequest: Codable, Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    public var username: String
    public var password: String

    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }

    public var description: String { "SessionLoginRequest(username: \(username), password: \(Redaction.marker))" }
    public var debugDescription: String { description }
}

/// Answer of session login and logout: `{"sessionToken": "..."}`.
public struct SessionToken: Codable, Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    public var sessionToken: String

    public init(sessionToken: String) { self.sessionToken = sessionToken }

    public var description: String { "SessionToken(\(Redaction.marker))" }
    public var debugDescription: String { description }
}

/// The error body `{"errorCode": "...", "errorMessage": "..."}`.
public struct ThingSpaceErrorBody: Codable, Sendable, Hashable {
    public var errorCode: String?
    public var errorMessage: String?

    public init(errorCode: String?, errorMessage: String?) {
        self.errorCode = errorCode
        self.errorMessage = errorMessage
    }
}

/// The gateway's error form `{"fault": {"code": "900901", "message": "...", "description": "..."}}`.
public struct ThingSpaceFault: Codable, Sendable, Hashable {
    public struct Detail: Codable, Sendable, Hashable {
        public var code: String?
        public var message: String?
        public var description: String?

        public init(code: String?, message: String?, description: String? = nil) {
            self.code = code
            self.message = message
            self.description = description
        }

        enum CodingKeys: String, CodingKey { case code, message, description }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            // Gateways send the code as a string or as a number.
            if let text = try? container.decodeIfPresent(String.self, forKey: .code) {
                code = text
            } else if let number = try? container.decodeIfPresent(Int.self, forKey: .code) {
                code = String(number)
            } else {
                code = nil
            }
            message = try? container.decodeIfPresent(String.self, forKey: .message)
            description = try? container.decodeIfPresent(String.self, forKey: .description)
        }
    }

    public var fault: Detail

    public init(fault: Detail) { self.fault = fault }
}

/// What an error answer said, whichever form it took.
struct ErrorDetail: Equatable {
    var errorCode: String?
    var errorMessage: String?
    /// True for the gateway `fault` form (token refused before the API saw the request).
    var isGatewayFault: Bool

    /// Reads `{"errorCode","errorMessage"}`, `{"fault":{...}}` or OAuth's
    /// `{"error","error_description"}`; anything else yields empty fields.
    static func parse(_ body: [UInt8]) -> ErrorDetail {
        guard !body.isEmpty, let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
            return ErrorDetail(errorCode: nil, errorMessage: nil, isGatewayFault: false)
        }
        if let fault = try? JSONDecoder().decode(ThingSpaceFault.self, from: Data(body)), object["fault"] is [String: Any] {
            return ErrorDetail(errorCode: fault.fault.code, errorMessage: fault.fault.message, isGatewayFault: true)
        }
        if object["errorCode"] != nil || object["errorMessage"] != nil {
            return ErrorDetail(
                errorCode: object["errorCode"] as? String, errorMessage: object["errorMessage"] as? String, isGatewayFault: false)
        }
        return ErrorDetail(
            errorCode: object["error"] as? String, errorMessage: object["error_description"] as? String, isGatewayFault: false)
    }
}
