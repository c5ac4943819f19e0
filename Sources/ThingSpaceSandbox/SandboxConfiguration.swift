import HTTP1
import HTTPServer
import ThingSpace
import Vocabulary

/// What the sandbox accepts and how it behaves. Defaults suit a demo; tests
/// shorten the lifetimes and intervals.
public struct SandboxConfiguration: Sendable {
    /// Listen address; keep it on loopback.
    public var host: String = "127.0.0.1"
    /// 0 picks a free port (read it back from `start()` or `port`).
    public var port: Int = 0

    /// The only OAuth client and UWS login the sandbox accepts.
    public var credentials = ThingSpaceCredentials(
        clientID: "sandbox-client-id", clientSecret: "sandbox-client-secret",
        username: "sandbox-user", password: "sandbox-password")
    /// Billing accounts the login may manage (leading zeros are significant).
    public var accountNames: [String] = ["0252012345-00001"]

    /// `expires_in` of issued access tokens (ThingSpace: one hour).
    public var tokenLifetime: Duration = .seconds(3600)
    /// A session unused this long is refused (ThingSpace: 20 minutes).
    public var sessionIdleLifetime: Duration = .seconds(20 * 60)
    /// Consecutive failed session logins that lock the account (ThingSpace: 5).
    public var maxFailedLogins: Int = 5
    /// Refuse listener URLs on ports ThingSpace does not accept (80, 443,
    /// 9001–9006, 50551–50559, 28200–28220). Off by default so tests and
    /// demos can use any port.
    public var enforceListenerPorts: Bool = false

    /// Send sample callbacks to each registered listener.
    public var deliverSamples: Bool = true
    /// Time between sample callbacks to one listener; nil sends one sample
    /// right after registration and no more.
    public var sampleInterval: Duration? = .seconds(30)
    /// An answer slower than this counts as unacknowledged (ThingSpace: about 4 s).
    public var deliveryTimeout: Duration = .seconds(4)
    /// Wait before resending an unacknowledged callback (ThingSpace documents
    /// 5 minutes; short here for demos).
    public var resendInterval: Duration = .seconds(2)
    /// Attempts per callback, the first included (`maxCallbackThreshold`).
    public var maxCallbackThreshold: Int = 4
    /// JSON object templates per service name; the sandbox sets `username`,
    /// `password`, `requestId`, `callbackCount` and `maxCallbackThreshold`
    /// in them. Services without templates get a generic envelope.
    public var sampleTemplates: [String: [String]] = SampleCallbacks.defaultTemplates

    /// Journal and delivery records kept (oldest dropped first).
    public var recordLimit: Int = 1000
    /// The sandbox's own HTTP server settings (host and port above win).
    public var server = HTTPServerConfiguration()

    public init() {}

    /// Services a listener may be registered for.
    public static let serviceNames: Set<String> = [
        "CarrierService", "DeviceUsage", "DeviceService", "DevicePRLInformation", "DeviceProfileService",
        "DeviceSuspensionStatus", "DiagnosticsService", "EnhancedConnectivityService", "ExternalProvisioningChanges",
        "PromoChanges", "ResumeTrackingNotification", "SMSDeliveryConfirmation", "StateService",
        "SubscriptionNotificationService", "AlertService", "NiddService",
    ]

    /// Listener ports ThingSpace accepts in registered URLs.
    public static func isAcceptedListenerPort(_ port: Int) -> Bool {
        [80, 443].contains(port) || (9001...9006).contains(port) || (50551...50559).contains(port) || (28200...28220).contains(port)
    }
}

/// Why the sandbox could not start.
public enum SandboxError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidConfiguration(String)
    case server(HTTPServerError)

    public var description: String {
        switch self {
        case let .invalidConfiguration(message): "invalid sandbox configuration: \(message)"
        case let .server(error): "the sandbox HTTP server could not start: \(error)"
        }
    }
}

/// The endpoints the sandbox serves (for fault injection and the journal).
public enum SandboxRoute: String, Sendable, Hashable, CaseIterable {
    case token, login, logout, list, register, deregister
}

/// One request the sandbox received, with its answer's status.
public struct SandboxJournalEntry: Sendable {
    public var method: String
    /// The request target exactly as received (percent-encoding intact).
    public var path: String
    public var headers: HTTPHeaders
    public var body: [UInt8]
    /// The endpoint it matched, nil for an unknown path.
    public var route: SandboxRoute?
    public var status: Int

    public var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// A listener registered through the API.
public struct SandboxRegistration: Sendable, Hashable, CustomStringConvertible {
    public var accountName: String
    public var serviceName: String
    public var url: String
    public var username: String?
    /// The callback password (sent in every callback body); printed redacted.
    public var password: String?

    public var description: String {
        "SandboxRegistration(accountName: \(accountName), serviceName: \(serviceName), url: \(redactingUserInfo(url)), "
            + "username: \(username ?? "nil"), password: \(password == nil ? "nil" : Redaction.marker))"
    }
}

/// One attempt to deliver a callback to a listener.
public struct SandboxDelivery: Sendable {
    public enum Outcome: Sendable, Equatable {
        /// The listener answered with this status.
        case status(Int)
        /// No answer within `deliveryTimeout`.
        case timedOut
        /// No answer at all (connection refused, ...).
        case failed(String)
    }

    public var accountName: String
    public var serviceName: String
    public var url: String
    /// Shared by every attempt of one callback.
    public var requestId: String
    /// 1 for the first attempt, up to `maxCallbackThreshold`.
    public var callbackCount: Int
    public var body: [UInt8]
    public var outcome: Outcome

    /// Whether the listener acknowledged it (2xx in time).
    public var acknowledged: Bool {
        if case let .status(code) = outcome { return (200..<300).contains(code) }
        return false
    }
}
