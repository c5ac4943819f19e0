// A destination as configured (`delivery.destinations`): where a callback goes, which ones, how
// it is signed, and how long and how often it is tried. Values only; the engine reads them.
import Foundation
import Vocabulary

/// A Standard Webhooks signing key: `whsec_` + base64 of the key's bytes. Never printed.
public struct WebhookSecret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    public static let prefix = "whsec_"
    /// The spec's range for a key's length.
    public static let keyLengths = 24...64

    public let key: [UInt8]

    /// nil when `text` is not `whsec_` + base64 of 24 to 64 bytes.
    public init?(_ text: String) {
        guard text.hasPrefix(Self.prefix), let data = Data(base64Encoded: String(text.dropFirst(Self.prefix.count))),
            Self.keyLengths.contains(data.count)
        else { return nil }
        key = Array(data)
    }

    public init(key: [UInt8]) { self.key = key }

    /// `whsec_` + base64: for tools that hand the secret on (receive-test, tests).
    public var encoded: String { Self.prefix + Data(key).base64EncodedString() }

    public var description: String { Redaction.marker }
    public var debugDescription: String { Redaction.marker }
}

public struct Destination: Sendable, Hashable {
    public enum Ordering: String, Sendable, Hashable, CaseIterable {
        /// Any order, up to `maxInFlight` at once.
        case none
        /// The callbacks of one device (its first device id) in id order; a failing one holds
        /// back only that device's later callbacks.
        case device
    }

    public static let defaultRetrySchedule: [Duration] = [5, 300, 1800, 7200, 18000, 36000, 36000].map { .seconds($0) }

    /// Unique among destinations; the ledger's key, so renaming starts a new destination.
    public var name: String
    public var url: String
    /// nil: every service.
    public var services: [String]?
    public var secret: WebhookSecret
    /// Also signed with while set, so receivers can rotate.
    public var previousSecret: WebhookSecret?
    public var includeDuplicates = false
    public var timeout: Duration = .seconds(15)
    public var maxInFlight = 16
    public var ordering = Ordering.none
    /// The wait after each failed attempt; after the last one the delivery is dead-lettered.
    public var retrySchedule = Destination.defaultRetrySchedule
    /// Past this age (from receivedAt) a failed delivery is dead-lettered, whatever the schedule says.
    public var maxAge: Duration = .seconds(72 * 3600)

    public init(name: String, url: String, secret: WebhookSecret) {
        self.name = name
        self.url = url
        self.secret = secret
    }

    /// Every field given (configuration, tests); the one above takes the defaults.
    public init(
        name: String, url: String, services: [String]?, secret: WebhookSecret, previousSecret: WebhookSecret?, includeDuplicates: Bool,
        timeout: Duration, maxInFlight: Int, ordering: Ordering, retrySchedule: [Duration], maxAge: Duration
    ) {
        self.name = name
        self.url = url
        self.services = services
        self.secret = secret
        self.previousSecret = previousSecret
        self.includeDuplicates = includeDuplicates
        self.timeout = timeout
        self.maxInFlight = maxInFlight
        self.ordering = ordering
        self.retrySchedule = retrySchedule
        self.maxAge = maxAge
    }

    /// Whether a callback of `service` goes to this destination (repeats aside).
    public func accepts(service: String) -> Bool { services?.contains(service) ?? true }

    /// Destination names appear in metrics, logs, file names and CLI flags: keep them plain.
    public static func isValidName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count)
            && name.utf8.allSatisfy {
                ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D || $0 == 0x5F
            }
    }
}
