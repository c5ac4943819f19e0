// What the intake reads from a callback and the store keeps: one type, so the
// device list passes from envelope to record without a copy.

/// One device a callback is about, as callbacks carry it:
/// `{"id": "990003425730535", "kind": "imei"}`. `kind` arrives in any letter
/// case and is kept as received.
public struct DeviceID: Sendable, Hashable, Codable {
    public var id: String
    public var kind: String

    public init(id: String, kind: String) {
        self.id = id
        self.kind = kind
    }
}
