// A stored callback as JSON, written one way everywhere: a line of
// `messages export`, and (by the delivery and consumer API to come) the
// `data` object the user's systems receive.
import JSON
import Vocabulary

extension JSONWriter {
    /// `[{"id":…,"kind":…},…]`
    public mutating func deviceIDs(_ devices: [DeviceID]) {
        beginArray()
        for device in devices {
            beginObject()
            key("id")
            string(device.id)
            key("kind")
            string(device.kind)
            endObject()
        }
        endArray()
    }
}

extension StoredCallback {
    /// `{"id","receivedAt","service","requestId","deviceIds","status","callbackCount","duplicateOf",
    /// ["remoteAddress",] "body"}`; `body` is the stored JSON, byte for byte, except that raw CR and
    /// LF (only ever insignificant whitespace in valid JSON) become spaces so the object is one line.
    public func jsonObject(includeRemoteAddress: Bool = false, includeBody: Bool = true) -> [UInt8] {
        var json = JSONWriter(reservingCapacity: callback.body.count + 256)
        json.beginObject()
        json.key("id")
        json.integer(id)
        json.key("receivedAt")
        json.string(Timekeeping.iso8601(milliseconds: callback.receivedAt))
        json.key("service")
        json.string(callback.service)
        json.key("requestId")
        json.string(callback.requestID)
        json.key("deviceIds")
        json.deviceIDs(callback.deviceIDs)
        json.key("status")
        json.string(callback.status)
        json.key("callbackCount")
        json.integer(callback.callbackCount)
        json.key("duplicateOf")
        json.integer(duplicateOf)
        if includeRemoteAddress {
            json.key("remoteAddress")
            json.string(callback.remoteAddress)
        }
        if includeBody {
            json.key("body")
            let body = callback.body
            json.raw(body.contains { $0 == 0x0A || $0 == 0x0D } ? body.map { $0 == 0x0A || $0 == 0x0D ? 0x20 : $0 } : body)
        }
        json.endObject()
        return json.bytes
    }
}
