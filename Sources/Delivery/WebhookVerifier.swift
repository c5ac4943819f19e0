// The receiving end of Standard Webhooks (spec/standard-webhooks.md, "Verifying signatures"): a
// request's `webhook-id`, `webhook-timestamp` and `webhook-signature` and its body, checked against
// one or more secrets. Pure and with the time passed in, so every boundary is testable; the errors
// say exactly what is wrong with the request and never contain a secret or an expected signature.
import Crypto
import Foundation
import HTTP1
import Vocabulary

/// Checks Standard Webhooks signatures: the timestamp within a tolerance of now (both ways), then
/// any `v1,` signature in the space-separated list matching HMAC-SHA256 of `{id}.{timestamp}.{body}`
/// under any of the secrets (two while the sender rotates), compared in constant time. Signatures of
/// other versions (`v1a`, asymmetric) are ignored.
public struct WebhookVerifier: Sendable {
    /// The spec's and the reference libraries' tolerance: five minutes either way.
    public static let defaultTolerance: Duration = .seconds(300)
    /// The header names, as the spec spells them (look-ups ignore case).
    public static let idHeader = "webhook-id"
    public static let timestampHeader = "webhook-timestamp"
    public static let signatureHeader = "webhook-signature"

    public let secrets: [WebhookSecret]
    /// Whole seconds a timestamp may be before or after now.
    public let toleranceSeconds: Int64

    /// `secrets` must not be empty; `tolerance` is rounded down to whole seconds, within 0 and
    /// 10¹² (beyond any calendar, and far from overflowing `now ± tolerance`).
    public init(secrets: [WebhookSecret], tolerance: Duration = Self.defaultTolerance) {
        precondition(!secrets.isEmpty, "a webhook verifier needs at least one secret")
        self.secrets = secrets
        toleranceSeconds = min(max(0, tolerance.components.seconds), 1_000_000_000_000)
    }

    /// Verifies the three headers of `headers` (each exactly once) and `body` at `now` (Unix seconds).
    public func verify(
        headers: HTTPHeaders, body: [UInt8], now: Int64 = Self.currentUnixSeconds()
    ) throws(WebhookVerificationError) -> VerifiedWebhook {
        func single(_ name: String) throws(WebhookVerificationError) -> String? {
            let values = headers.values(for: name)
            guard values.count <= 1 else { throw .repeatedHeader(name, count: values.count) }
            return values.first
        }
        let id = try single(Self.idHeader)
        let timestamp = try single(Self.timestampHeader)
        let signature = try single(Self.signatureHeader)
        return try verify(id: id, timestamp: timestamp, signature: signature, body: body, now: now)
    }

    /// Verifies the headers' values (nil when absent) and `body` at `now` (Unix seconds).
    /// Malformed input is reported before an old or new timestamp, and that before a mismatch.
    public func verify(
        id: String?, timestamp: String?, signature: String?, body: [UInt8], now: Int64 = Self.currentUnixSeconds()
    ) throws(WebhookVerificationError) -> VerifiedWebhook {
        guard let id, !id.isEmpty else { throw .missingHeader(Self.idHeader) }
        guard let timestamp, !timestamp.isEmpty else { throw .missingHeader(Self.timestampHeader) }
        guard let signature, !signature.isEmpty else { throw .missingHeader(Self.signatureHeader) }
        // `{id}.{timestamp}.{body}` is unambiguous only while neither holds a full stop (the spec).
        guard !id.utf8.contains(UInt8(ascii: ".")) else { throw .malformedID }
        guard let seconds = Self.parseTimestamp(timestamp) else { throw .malformedTimestamp(Self.excerpt(timestamp)) }
        let candidates = try Self.parseSignatures(signature)

        if seconds < now - toleranceSeconds {
            throw .timestampTooOld(timestamp: seconds, now: now, toleranceSeconds: toleranceSeconds)
        }
        if seconds > now + toleranceSeconds {
            throw .timestampTooNew(timestamp: seconds, now: now, toleranceSeconds: toleranceSeconds)
        }
        guard !candidates.v1.isEmpty else { throw .noSupportedSignature(versions: candidates.otherVersions) }

        var signed = Array("\(id).\(timestamp).".utf8)
        signed.append(contentsOf: body)
        // Every candidate against every secret, without an early exit: the time taken depends only
        // on how many there are, never on which bytes or which pair matched.
        var matched: Int?
        for (index, secret) in secrets.enumerated() {
            let expected = Array(HMAC<SHA256>.authenticationCode(for: signed, using: SymmetricKey(data: secret.key)))
            for candidate in candidates.v1 where Self.constantTimeEquals(expected, candidate) {
                matched = matched ?? index
            }
        }
        guard let matched else { throw .noSignatureMatches(signatures: candidates.v1.count, secrets: secrets.count) }
        return VerifiedWebhook(id: id, timestamp: seconds, secretIndex: matched)
    }

    /// The wall clock in whole Unix seconds (rounded down).
    public static func currentUnixSeconds() -> Int64 {
        let milliseconds = Timekeeping.wallClockMilliseconds()
        return milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000
    }

    /// Whether two byte strings are equal, reading every byte of both whatever they hold (the
    /// length is not secret: an HMAC-SHA256 is always 32 bytes).
    @inline(never)
    public static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }

    // MARK: Parsing

    /// Canonical decimal seconds: digits only, no sign, no leading zero, at most 18 digits. The
    /// signed content holds the header's text, so `0123` and `123` must not both be accepted.
    static func parseTimestamp(_ text: String) -> Int64? {
        let utf8 = text.utf8
        guard (1...18).contains(utf8.count), utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        guard utf8.count == 1 || utf8.first != UInt8(ascii: "0") else { return nil }
        return Int64(text)
    }

    struct Candidates {
        /// The decoded `v1` signatures (32 bytes each).
        var v1: [[UInt8]] = []
        /// The other versions named, in order, without repeats.
        var otherVersions: [String] = []
    }

    /// `version,value` entries separated by spaces. A `v1` value must be standard base64 of 32 bytes.
    static func parseSignatures(_ text: String) throws(WebhookVerificationError) -> Candidates {
        var candidates = Candidates()
        let entries = text.split(separator: " ", omittingEmptySubsequences: true)
        guard !entries.isEmpty else { throw .missingHeader(signatureHeader) }
        for (offset, entry) in entries.enumerated() {
            let position = offset + 1
            guard let comma = entry.firstIndex(of: ",") else {
                throw .malformedSignature(entry: position, reason: "is not version,signature")
            }
            let version = entry[..<comma]
            let value = entry[entry.index(after: comma)...]
            guard !version.isEmpty, !value.isEmpty else {
                throw .malformedSignature(entry: position, reason: "has an empty version or signature")
            }
            guard version == "v1" else {
                let name = excerpt(String(version))
                if !candidates.otherVersions.contains(name) { candidates.otherVersions.append(name) }
                continue
            }
            guard let decoded = Data(base64Encoded: String(value)), decoded.count == SHA256.byteCount else {
                throw .malformedSignature(
                    entry: position, reason: "is not v1, followed by the base64 of a 32-byte HMAC-SHA256")
            }
            candidates.v1.append(Array(decoded))
        }
        return candidates
    }

    /// At most 32 characters of a header value, for an error message.
    static func excerpt(_ text: String) -> String {
        text.count <= 32 ? text : String(text.prefix(32)) + "…"
    }
}

/// What a verified request said about itself.
public struct VerifiedWebhook: Sendable, Hashable {
    /// The `webhook-id`: the same for every attempt at one event (an idempotency key).
    public var id: String
    /// The `webhook-timestamp` of this attempt, Unix seconds.
    public var timestamp: Int64
    /// Which of the verifier's secrets signed it (0 for the first).
    public var secretIndex: Int

    public init(id: String, timestamp: Int64, secretIndex: Int) {
        self.id = id
        self.timestamp = timestamp
        self.secretIndex = secretIndex
    }
}

/// Why a request is not a verified webhook. The descriptions quote at most a short excerpt of a
/// header (never the body), and never a secret or the signature that was expected.
public enum WebhookVerificationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The header is absent or empty.
    case missingHeader(String)
    /// The header appears more than once.
    case repeatedHeader(String, count: Int)
    /// The `webhook-id` holds a full stop, which would make the signed content ambiguous.
    case malformedID
    /// The `webhook-timestamp` is not whole Unix seconds in canonical decimal (its excerpt).
    case malformedTimestamp(String)
    /// An entry of `webhook-signature` (1-based) is not `version,signature`, or a `v1` one not base64 of 32 bytes.
    case malformedSignature(entry: Int, reason: String)
    case timestampTooOld(timestamp: Int64, now: Int64, toleranceSeconds: Int64)
    case timestampTooNew(timestamp: Int64, now: Int64, toleranceSeconds: Int64)
    /// Only signatures of versions this verifier does not check (e.g. `v1a`).
    case noSupportedSignature(versions: [String])
    /// Well-formed `v1` signatures, none made with any of the secrets (or over this body).
    case noSignatureMatches(signatures: Int, secrets: Int)

    /// Whether the request is malformed (a 400) rather than well-formed and not authentic (a 401).
    public var isMalformedRequest: Bool {
        switch self {
        case .missingHeader, .repeatedHeader, .malformedID, .malformedTimestamp, .malformedSignature: true
        case .timestampTooOld, .timestampTooNew, .noSupportedSignature, .noSignatureMatches: false
        }
    }

    public var description: String {
        switch self {
        case .missingHeader(let name):
            return "the \(name) header is missing"
        case .repeatedHeader(let name, let count):
            return "the \(name) header appears \(count) times; it must appear once"
        case .malformedID:
            return "the webhook-id holds a '.', which would make the signed content ambiguous"
        case .malformedTimestamp(let excerpt):
            return "the webhook-timestamp \"\(excerpt)\" is not whole Unix seconds (digits, no leading zero)"
        case .malformedSignature(let entry, let reason):
            return "webhook-signature entry \(entry) \(reason)"
        case .timestampTooOld(let timestamp, let now, let tolerance):
            return "the webhook-timestamp \(timestamp) is too old: \(now - timestamp) s before now, the tolerance is \(tolerance) s"
        case .timestampTooNew(let timestamp, let now, let tolerance):
            return "the webhook-timestamp \(timestamp) is too new: \(timestamp - now) s after now, the tolerance is \(tolerance) s"
        case .noSupportedSignature(let versions):
            return "webhook-signature has no v1 signature (only \(versions.joined(separator: ", "))); only v1 (HMAC-SHA256) is checked"
        case .noSignatureMatches(let signatures, let secrets):
            let candidates = signatures == 1 ? "the v1 signature was not" : "none of the \(signatures) v1 signatures was"
            let keys = secrets == 1 ? "the secret" : "any of the \(secrets) secrets"
            return "no signature matches: \(candidates) made with \(keys) over this id, timestamp and body"
        }
    }
}
