// `delivery.destinations`: read and validated, nothing more (the delivery engine uses the values).
// Destinations come from the file only, as a list of objects; their secrets may also come from the
// credentials directory or the environment, under a key per destination name
// (`delivery.secrets.<name>`, `delivery.previousSecrets.<name>`).
import Delivery
import Foundation

extension ListenerConfiguration {
    /// The keys of one destination object; any other key is refused, so a typo is not ignored.
    static let destinationKeys = [
        "name", "url", "services", "secret", "previousSecret", "includeDuplicates", "timeoutSeconds", "maxInFlight", "ordering",
        "retrySchedule", "maxAgeHours",
    ]
    static let maximumTimeoutSeconds = 300.0
    static let maxInFlightRange = 1...1024
    /// A retry waits at most a week.
    static let maximumRetrySeconds = 7 * 24 * 3600.0
    /// Ten years: beyond that an age limit means nothing, and a `Duration` could overflow.
    static let maximumAgeHours = 10 * 365 * 24.0

    /// The key that sets a destination's secret outside the destination object (credentials file
    /// `delivery-secrets-<name>`, environment `THINGSPACE_LISTENER_DELIVERY_SECRETS_<NAME>`).
    public static func secretKey(forDestination name: String) -> String { "delivery.secrets." + name }
    /// Likewise for the previous secret kept during a rotation.
    public static func previousSecretKey(forDestination name: String) -> String { "delivery.previousSecrets." + name }

    static func destinations(from source: ConfigurationSource) throws(ConfigurationError) -> [Destination] {
        // The environment and credentials files hold strings; a list of objects has nowhere to go there.
        if (try? source.string("delivery.destinations")) != nil {
            throw .invalidValue(
                key: "delivery.destinations",
                expected: "a list of objects in the configuration file (not in the environment or a credentials file)")
        }
        guard let value = source.destinations else { return [] }
        let elements: [ConfigurationJSON]
        switch value {
        case .null: return []
        case .array(let list): elements = list
        default: throw .invalidValue(key: "delivery.destinations", expected: "a list of destination objects")
        }
        var destinations: [Destination] = []
        var keyOfName: [String: String] = [:]
        var nameOfEnvironmentVariable: [String: String] = [:]
        for (index, element) in elements.enumerated() {
            let fields = try DestinationFields(element, key: "delivery.destinations[\(index)]")
            let destination = try Self.destination(fields, source: source)
            let nameKey = fields.key("name")
            if let other = keyOfName[destination.name] {
                throw .invalidValue(key: nameKey, expected: "a name no other destination has (\(other) has it too)")
            }
            // Names that differ only in case or in - and _ would share an environment variable.
            let variable = ConfigurationSource.environmentName(for: secretKey(forDestination: destination.name))
            if let other = nameOfEnvironmentVariable[variable] {
                throw .invalidValue(
                    key: nameKey, expected: "a name that differs from \(other) in more than case, - or _ (both would use \(variable))")
            }
            keyOfName[destination.name] = nameKey
            nameOfEnvironmentVariable[variable] = destination.name
            destinations.append(destination)
        }
        return destinations
    }

    private static func destination(_ fields: DestinationFields, source: ConfigurationSource) throws(ConfigurationError) -> Destination {
        guard let name = try fields.string("name") else {
            throw .missingValue(key: fields.key("name"), reason: "every destination has a name")
        }
        guard Destination.isValidName(name) else {
            throw .invalidValue(key: fields.key("name"), expected: "1 to 64 letters, digits, - or _")
        }
        guard let url = try fields.string("url") else {
            throw .missingValue(key: fields.key("url"), reason: "every destination has a URL")
        }
        guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(), ["http", "https"].contains(scheme),
            let host = parsed.host, !host.isEmpty
        else {
            throw .invalidValue(key: fields.key("url"), expected: "an http:// or https:// URL")
        }
        guard
            let secret = try Self.webhookSecret(
                fields, field: "secret", key: secretKey(forDestination: name), source: source)
        else {
            let key = secretKey(forDestination: name)
            throw .missingValue(
                key: fields.key("secret"),
                reason: "set it here, in the credentials file \(ConfigurationSource.credentialsFileName(for: key))"
                    + " or in \(ConfigurationSource.environmentName(for: key))")
        }
        var destination = Destination(name: name, url: url, secret: secret)
        destination.previousSecret = try Self.webhookSecret(
            fields, field: "previousSecret", key: previousSecretKey(forDestination: name), source: source)

        if let services = try fields.stringList("services") {
            let names = services.map { $0.trimmingCharacters(in: .whitespaces) }
            guard !names.isEmpty, names.allSatisfy(Self.isServiceName), Set(names).count == names.count else {
                throw .invalidValue(key: fields.key("services"), expected: "distinct service names such as CarrierService")
            }
            destination.services = names
        }
        if let value = try fields.bool("includeDuplicates") { destination.includeDuplicates = value }
        if let seconds = try fields.number("timeoutSeconds") {
            guard seconds > 0, seconds <= maximumTimeoutSeconds, let timeout = Self.duration(seconds: seconds), timeout > .zero else {
                throw .invalidValue(key: fields.key("timeoutSeconds"), expected: "seconds above 0, at most \(Int(maximumTimeoutSeconds))")
            }
            destination.timeout = timeout
        }
        if let value = fields.value("maxInFlight") {
            guard let count = value.intValue, maxInFlightRange.contains(count) else {
                throw .invalidValue(
                    key: fields.key("maxInFlight"),
                    expected: "an integer from \(maxInFlightRange.lowerBound) to \(maxInFlightRange.upperBound)")
            }
            destination.maxInFlight = count
        }
        if let text = try fields.string("ordering") {
            guard let ordering = Destination.Ordering(rawValue: text.lowercased()) else {
                throw .invalidValue(key: fields.key("ordering"), expected: "none or device")
            }
            destination.ordering = ordering
        }
        if let value = fields.value("retrySchedule") {
            guard case .array(let elements) = value else {
                throw .invalidValue(key: fields.key("retrySchedule"), expected: "a list of seconds, such as [5, 300, 1800]")
            }
            var schedule: [Duration] = []
            for (index, element) in elements.enumerated() {
                guard let seconds = element.doubleValue, seconds >= 0, seconds <= maximumRetrySeconds,
                    let wait = Self.duration(seconds: seconds)
                else {
                    throw .invalidValue(
                        key: fields.key("retrySchedule") + "[\(index)]",
                        expected: "seconds from 0 to \(Int(maximumRetrySeconds)) (7 days)")
                }
                schedule.append(wait)
            }
            destination.retrySchedule = schedule
        }
        if let hours = try fields.number("maxAgeHours") {
            guard hours > 0, hours <= maximumAgeHours, let age = Self.duration(seconds: hours * 3600), age > .zero else {
                throw .invalidValue(key: fields.key("maxAgeHours"), expected: "hours above 0, at most \(Int(maximumAgeHours)) (10 years)")
            }
            destination.maxAge = age
        }
        return destination
    }

    /// A destination's secret: from the credentials directory or the environment (`key`, which
    /// wins, as everywhere), else from the destination object. An error names where it came from
    /// and never shows the value.
    private static func webhookSecret(
        _ fields: DestinationFields, field: String, key: String, source: ConfigurationSource
    ) throws(ConfigurationError) -> WebhookSecret? {
        let text: String
        let errorKey: String
        if let outside = try source.string(key, secret: true).map(Self.trimmed), !outside.isEmpty {
            text = outside
            errorKey =
                key + " (credentials file \(ConfigurationSource.credentialsFileName(for: key))"
                + " or \(ConfigurationSource.environmentName(for: key)))"
        } else if let inside = try fields.string(field).map(Self.trimmed), !inside.isEmpty {
            text = inside
            errorKey = fields.key(field)
        } else {
            return nil
        }
        guard let secret = WebhookSecret(text) else {
            let lengths = WebhookSecret.keyLengths
            throw .invalidValue(
                key: errorKey,
                expected: "\(WebhookSecret.prefix) followed by the base64 of a \(lengths.lowerBound) to \(lengths.upperBound) byte key")
        }
        return secret
    }

    /// Seconds to a `Duration`, to the millisecond (so that `15` and `15.0` give equal values).
    static func duration(seconds: Double) -> Duration? {
        let milliseconds = (seconds * 1000).rounded()
        guard milliseconds.isFinite, let whole = Int64(exactly: milliseconds) else { return nil }
        return .milliseconds(whole)
    }

    private static func trimmed(_ text: String) -> String { text.trimmingCharacters(in: .whitespacesAndNewlines) }
}

/// One destination object's members, read by name; null counts as absent, like elsewhere.
struct DestinationFields {
    let prefix: String
    private let members: [String: ConfigurationJSON]

    init(_ value: ConfigurationJSON, key: String) throws(ConfigurationError) {
        guard case .object(let list) = value else {
            throw .invalidValue(key: key, expected: "an object with name, url and secret")
        }
        for member in list where !ListenerConfiguration.destinationKeys.contains(member.name) {
            throw .unknownKey(key: key + "." + member.name, known: ListenerConfiguration.destinationKeys)
        }
        prefix = key
        members = Dictionary(list.map { ($0.name, $0.value) }, uniquingKeysWith: { _, last in last })
    }

    func key(_ field: String) -> String { prefix + "." + field }

    func value(_ field: String) -> ConfigurationJSON? {
        guard let value = members[field] else { return nil }
        if case .null = value { return nil }
        return value
    }

    func string(_ field: String) throws(ConfigurationError) -> String? {
        guard let value = value(field) else { return nil }
        guard case .string(let text) = value else { throw .invalidValue(key: key(field), expected: "a string") }
        return text
    }

    func bool(_ field: String) throws(ConfigurationError) -> Bool? {
        guard let value = value(field) else { return nil }
        guard case .bool(let flag) = value else { throw .invalidValue(key: key(field), expected: "true or false") }
        return flag
    }

    func number(_ field: String) throws(ConfigurationError) -> Double? {
        guard let value = value(field) else { return nil }
        guard let number = value.doubleValue else { throw .invalidValue(key: key(field), expected: "a number") }
        return number
    }

    func stringList(_ field: String) throws(ConfigurationError) -> [String]? {
        guard let value = value(field) else { return nil }
        guard case .array(let elements) = value else { throw .invalidValue(key: key(field), expected: "a list of strings") }
        var strings: [String] = []
        for element in elements {
            guard case .string(let text) = element else { throw .invalidValue(key: key(field), expected: "a list of strings") }
            strings.append(text)
        }
        return strings
    }
}
