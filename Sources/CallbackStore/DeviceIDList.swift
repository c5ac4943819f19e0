import Foundation

/// The `device_ids` column: a JSON array of `{"id": ..., "kind": ...}` objects.
enum DeviceIDList {
    static func encode(_ devices: [DeviceID]) -> String {
        var json = "["
        for (index, device) in devices.enumerated() {
            if index > 0 { json += "," }
            json += "{\"id\":"
            appendQuoted(device.id, to: &json)
            json += ",\"kind\":"
            appendQuoted(device.kind, to: &json)
            json += "}"
        }
        json += "]"
        return json
    }

    /// The devices, or nil when the text is not what `encode` writes.
    static func decode(_ bytes: [UInt8], decoder: JSONDecoder) -> [DeviceID]? {
        try? decoder.decode([DeviceID].self, from: Data(bytes))
    }

    /// Appends `value` as a JSON string literal (RFC 8259 escaping).
    private static func appendQuoted(_ value: String, to json: inout String) {
        json += "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": json += "\\\""
            case "\\": json += "\\\\"
            case "\n": json += "\\n"
            case "\r": json += "\\r"
            case "\t": json += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                json += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: json.unicodeScalars.append(scalar)
            }
        }
        json += "\""
    }
}
