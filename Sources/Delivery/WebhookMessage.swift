// What a destination receives, per the Standard Webhooks specification: the event body, and the
// headers that let the receiver check who sent it and when (`webhook-id`, `webhook-timestamp`,
// `webhook-signature`). The id is the stored callback's, so every attempt and replay of one
// callback carries the same id and receivers can drop repeats.
import CallbackStore
import Crypto
import Foundation
import JSON
import Vocabulary

public enum WebhookMessage {
    public static let eventType = "thingspace.callback"

    /// `{"type":"thingspace.callback","timestamp":"<receivedAt>","data":<the export line's object>}`.
    public static func body(for callback: StoredCallback) -> [UInt8] {
        let data = callback.jsonObject()
        var json = JSONWriter(reservingCapacity: data.count + 96)
        json.beginObject()
        json.key("type")
        json.string(eventType)
        json.key("timestamp")
        json.string(Timekeeping.iso8601(milliseconds: callback.receivedAt))
        json.key("data")
        json.raw(data)
        json.endObject()
        return json.bytes
    }

    /// `v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`, one per secret, space-separated
    /// (two while a previous secret is kept for rotation).
    public static func signature(id: String, timestamp: Int64, body: [UInt8], secrets: [WebhookSecret]) -> String {
        var signed = Array("\(id).\(timestamp).".utf8)
        signed.append(contentsOf: body)
        return secrets.map { secret in
            let mac = HMAC<SHA256>.authenticationCode(for: signed, using: SymmetricKey(data: secret.key))
            return "v1," + Data(mac).base64EncodedString()
        }.joined(separator: " ")
    }

    /// The three Standard Webhooks headers for one attempt at `timestamp` (Unix seconds).
    public static func headers(
        id: Int64, timestamp: Int64, body: [UInt8], secrets: [WebhookSecret]
    ) -> [(name: String, value: String)] {
        let id = String(id)
        return [
            ("webhook-id", id),
            ("webhook-timestamp", String(timestamp)),
            ("webhook-signature", signature(id: id, timestamp: timestamp, body: body, secrets: secrets)),
        ]
    }
}
