import Foundation

/// Sample callback bodies in the shapes ThingSpace sends (see
/// /work/shared/fixtures). The delivery fills in the envelope fields.
public enum SampleCallbacks {
    public static let defaultTemplates: [String: [String]] = [
        "CarrierService": [carrierServiceSuccess, carrierServiceFault],
        "DeviceUsage": [deviceUsage],
    ]

    static let carrierServiceSuccess = #"""
        {"deviceIds":[{"id":"22211315718","kind":"ESN"}],
         "deviceResponse":{"changeIdentifierResponse":{"deviceIds":[{"id":"A1000001999990","kind":"iccid"}],"servicePlan":"M2M_4G"}},
         "status":"Success"}
        """#

    static let carrierServiceFault = #"""
        {"deviceIds":[{"id":"20180903000000000009","kind":"Iccid"},{"id":"201809030000009","kind":"Imei"}],
         "faultResponse":{"faultcode":"UnifiedWebService.REQUEST_FAILED.DeviceAlreadyActive","faultstring":"REQUEST_FAILED. Device is already active"},
         "status":"Failed"}
        """#

    /// Not documented publicly: an educated guess in the common envelope.
    static let deviceUsage = #"""
        {"deviceIds":[{"id":"990013907835573","kind":"imei"}],
         "usageResponse":{"deviceUsage":[
           {"bytesUsed":20480,"smsUsed":2,"source":"Raw Usage","timestamp":"2026-11-20T00:00:00Z"},
           {"bytesUsed":4096,"smsUsed":0,"source":"Raw Usage","timestamp":"2026-11-21T00:00:00Z"}]},
         "status":"Success"}
        """#

    /// For services without a template.
    static let generic = #"""
        {"deviceIds":[{"id":"990013907835573","kind":"IMEI"}],"deviceResponse":{},"status":"Success"}
        """#

    /// Whether `template` is a JSON object (checked at start-up).
    static func isValidTemplate(_ template: String) -> Bool {
        (try? JSONSerialization.jsonObject(with: Data(template.utf8))) is [String: Any]
    }

    /// The body of one attempt: the template with the envelope fields set.
    static func body(
        template: String, username: String?, password: String?, requestId: String,
        callbackCount: Int, maxCallbackThreshold: Int
    ) -> [UInt8] {
        var object = (try? JSONSerialization.jsonObject(with: Data(template.utf8))) as? [String: Any] ?? [:]
        if let username { object["username"] = username }
        if let password { object["password"] = password }
        object["requestId"] = requestId
        object["callbackCount"] = callbackCount
        object["maxCallbackThreshold"] = maxCallbackThreshold
        let data =
            (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return Array(data)
    }
}

/// A named sample delivery, for `send-test`.
public struct SampleCallback: Sendable {
    public var name: String
    public var service: String
    public var body: [UInt8]
}

extension SampleCallbacks {
    /// A CarrierService success, the documented failure shape, a DeviceUsage
    /// report, and a second delivery of the first (`callbackCount` 2), each
    /// with a fresh requestId.
    public static func smokeTestSet(username: String?, password: String?) -> [SampleCallback] {
        func make(_ template: String, _ requestId: String, _ count: Int) -> [UInt8] {
            body(
                template: template, username: username, password: password, requestId: requestId, callbackCount: count,
                maxCallbackThreshold: 4)
        }
        let first = UUID().uuidString.lowercased()
        return [
            SampleCallback(name: "success", service: "CarrierService", body: make(carrierServiceSuccess, first, 1)),
            SampleCallback(name: "fault", service: "CarrierService", body: make(carrierServiceFault, UUID().uuidString.lowercased(), 1)),
            SampleCallback(name: "usage", service: "DeviceUsage", body: make(deviceUsage, UUID().uuidString.lowercased(), 1)),
            SampleCallback(name: "duplicate", service: "CarrierService", body: make(carrierServiceSuccess, first, 2)),
        ]
    }
}
