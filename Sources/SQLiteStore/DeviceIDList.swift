import CallbackStore
import Foundation
import JSON
import Vocabulary

/// The `device_ids` column: a JSON array of `{"id": ..., "kind": ...}` objects.
enum DeviceIDList {
    static func encode(_ devices: [DeviceID]) -> String {
        var json = JSONWriter(reservingCapacity: 2 + devices.count * 48)
        json.deviceIDs(devices)
        return String(decoding: json.bytes, as: UTF8.self)
    }

    /// The devices, or nil when the text is not what `encode` writes.
    static func decode(_ bytes: [UInt8], decoder: JSONDecoder) -> [DeviceID]? {
        try? decoder.decode([DeviceID].self, from: Data(bytes))
    }
}
