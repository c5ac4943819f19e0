import Foundation

/// Realistic callback bodies in ThingSpace's envelope, for `send-test` and the
/// sandbox: a CarrierService success, the documented failure shape, a
/// DeviceUsage report (its shape is a guess: see THINGSPACE.md), and a second
/// delivery of the first (`callbackCount` 2).
public struct SampleCallback: Sendable {
    public var name: String
    public var service: String
    public var body: [UInt8]
}

public enum SampleCallbacks {
    public static func all(username: String?, password: String?, requestIDs: () -> String = { UUID().uuidString.lowercased() })
        -> [SampleCallback]
    {
        let successID = requestIDs()
        return [
            SampleCallback(name: "success", service: "CarrierService", body: carrierServiceSuccess(requestID: successID, callbackCount: 1, username: username, password: password)),
            SampleCallback(name: "fault", service: "CarrierService", body: carrierServiceFault(requestID: requestIDs(), username: username, password: password)),
            SampleCallback(name: "usage", service: "DeviceUsage", body: deviceUsage(requestID: requestIDs(), username: username, password: password)),
            SampleCallback(name: "duplicate", service: "CarrierService", body: carrierServiceSuccess(requestID: successID, callbackCount: 2, username: username, password: password)),
        ]
    }

    public static func carrierServiceSuccess(requestID: String, callbackCount: Int, username: String?, password: String?) -> [UInt8] {
        envelope(username: username, password: password, requestID: requestID, members: """
            "deviceIds": [{"id": "22211315718", "kind": "ESN"}],
              "deviceResponse": {
                "changeIdentifierResponse": {
                  "deviceIds": [{"id": "A1000001999990", "kind": "iccid"}],
                  "servicePlan": "M2M_4G"
                }
              },
              "status": "Success",
              "callbackCount": \(callbackCount),
              "maxCallbackThreshold": 4
            """)
    }

    public static func carrierServiceFault(requestID: String, username: String?, password: String?) -> [UInt8] {
        envelope(username: username, password: password, requestID: requestID, members: """
            "deviceIds": [
                {"id": "20180903000000000009", "kind": "Iccid"},
                {"id": "201809030000009", "kind": "Imei"}
              ],
              "faultResponse": {
                "faultcode": "UnifiedWebService.REQUEST_FAILED.DeviceAlreadyActive",
                "faultstring": "REQUEST_FAILED. Device is already active"
              },
              "status": "Failed",
              "callbackCount": 1,
              "maxCallbackThreshold": 4
            """)
    }

    public static func deviceUsage(requestID: String, username: String?, password: String?) -> [UInt8] {
        envelope(username: username, password: password, requestID: requestID, members: """
            "deviceIds": [{"id": "990013907835573", "kind": "imei"}],
              "usageResponse": {
                "deviceUsage": [
                  {"bytesUsed": 20480, "smsUsed": 2, "source": "Raw Usage", "timestamp": "2026-11-20T00:00:00Z"},
                  {"bytesUsed": 4096, "smsUsed": 0, "source": "Raw Usage", "timestamp": "2026-11-21T00:00:00Z"}
                ]
              },
              "status": "Success",
              "callbackCount": 1,
              "maxCallbackThreshold": 4
            """)
    }

    private static func envelope(username: String?, password: String?, requestID: String, members: String) -> [UInt8] {
        var text = "{\n"
        var credentials: [UInt8] = []
        if let username {
            credentials += Array("  \"username\": ".utf8); JSONEncoding.appendString(username, to: &credentials); credentials += Array(",\n".utf8)
        }
        if let password {
            credentials += Array("  \"password\": ".utf8); JSONEncoding.appendString(password, to: &credentials); credentials += Array(",\n".utf8)
        }
        text += String(decoding: credentials, as: UTF8.self)
        var id: [UInt8] = []
        JSONEncoding.appendString(requestID, to: &id)
        text += "  \"requestId\": \(String(decoding: id, as: UTF8.self)),\n  " + members + "\n}\n"
        return Array(text.utf8)
    }
}
