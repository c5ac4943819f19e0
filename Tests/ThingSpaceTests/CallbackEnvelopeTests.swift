import Foundation
import Testing
import Vocabulary

@testable import ThingSpace

/// The fixtures ThingSpace bodies are modelled on (../shared/fixtures, or the copy in Tests/Fixtures).
func fixture(_ name: String) throws -> [UInt8] {
    let here = URL(fileURLWithPath: #filePath)
    let candidates = [
        here.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)")
    ]
    for url in candidates where FileManager.default.fileExists(atPath: url.path) {
        return Array(try Data(contentsOf: url))
    }
    throw CocoaError(.fileNoSuchFile)
}

@Suite struct CallbackEnvelopeTests {
    @Test func decodesTheCommonEnvelopeOfEachFixture() throws {
        let success = try CallbackEnvelope(body: fixture("carrier-service-success.json"))
        #expect(success.username == "listener-user")
        #expect(success.password == "listener-pass")
        #expect(success.requestID == "a28892ea-6503-4aa7-bfa2-4cd45d42f61b")
        #expect(success.deviceIDs == [DeviceID(id: "22211315718", kind: "ESN")])
        #expect(success.status == "Success")
        #expect(success.callbackCount == 1)

        let fault = try CallbackEnvelope(body: fixture("carrier-service-fault.json"))
        #expect(fault.status == "Failed")
        #expect(fault.deviceIDs.map(\.kind) == ["Iccid", "Imei"])

        let usage = try CallbackEnvelope(body: fixture("device-usage-guessed.json"))
        #expect(usage.requestID == "5d1a7c3e-0b6f-4f4e-9a51-2f0f3c1d9e77")
    }

    @Test func aRetryHasTheSameIdentityAsTheFirstDelivery() throws {
        let first = try CallbackEnvelope(body: fixture("carrier-service-success.json"))
        let retry = try CallbackEnvelope(body: fixture("carrier-service-retry.json"))
        #expect(retry.callbackCount == 2)
        #expect(first.identity == retry.identity)
        let fault = try CallbackEnvelope(body: fixture("carrier-service-fault.json"))
        #expect(first.identity != fault.identity)
    }

    @Test func identityIgnoresLayoutKeyOrderAndKindCaseButNotContent() throws {
        let a =
            #"{"requestId":"r1","deviceIds":[{"id":"1","kind":"IMEI"},{"id":"2","kind":"iccid"}],"status":"Success","deviceResponse":{"a":1,"b":"x"},"callbackCount":1,"password":"p1"}"#
        let b =
            #"{ "password": "p2", "callbackCount": 3, "maxCallbackThreshold": 4, "deviceResponse": {"b": "\u0078", "a": 1}, "status": "Success", "deviceIds": [{"kind": "Iccid", "id": "2"}, {"kind": "imei", "id": "1"}], "requestId": "r1" }"#
        let c =
            #"{"requestId":"r1","deviceIds":[{"id":"1","kind":"IMEI"},{"id":"2","kind":"iccid"}],"status":"Success","deviceResponse":{"a":2,"b":"x"}}"#
        let ea = try CallbackEnvelope(body: Array(a.utf8))
        let eb = try CallbackEnvelope(body: Array(b.utf8))
        let ec = try CallbackEnvelope(body: Array(c.utf8))
        #expect(ea.identity == eb.identity)
        #expect(ea.identity != ec.identity)
        // Any other top-level member tells two callbacks apart.
        let withComment = a.replacingOccurrences(of: #""status":"Success""#, with: #""status":"Success","comment":"second""#)
        #expect(try CallbackEnvelope(body: Array(withComment.utf8)).identity != ea.identity)
    }

    /// Identities become stored dedup keys: their bytes must not change from one version to the next.
    @Test func identityBytesAreStable() throws {
        let body =
            #"{"requestId":"r1","deviceIds":[{"id":"1","kind":"IMEI"},{"id":"2\n\"x","kind":"iccid"}],"status":"Su\u0001ccess","deviceResponse":{"a":1,"b":"x\u2028\u00e9"},"n\u000a":[1.5e3,-0,true,null,{"z":{},"y":[]}],"password":"p1"}"#
        let expected =
            "\"deviceIds\":[\"iccid\":\"2\\u000a\\\"x\",\"imei\":\"1\"]\n\"deviceResponse\":{\"a\":1,\"b\":\"x\u{2028}\u{E9}\"}\n"
            + "\"n\\u000a\":[1.5e3,-0,true,null,{\"y\":[],\"z\":{}}]\n\"requestId\":\"r1\"\n\"status\":\"Su\\u0001ccess\"\n"
        #expect(String(decoding: try CallbackEnvelope(body: Array(body.utf8)).identity, as: UTF8.self) == expected)
    }

    @Test func redactionReplacesOnlyThePasswordValue() throws {
        let body = try fixture("carrier-service-fault.json")
        let envelope = try CallbackEnvelope(body: body)
        let redacted = envelope.redacting(body)
        let text = String(decoding: redacted, as: UTF8.self)
        #expect(!text.contains("listener-pass"))
        #expect(text.contains(#""password": "<redacted>""#))
        let original = String(decoding: body, as: UTF8.self)
        #expect(text == original.replacingOccurrences(of: #""listener-pass""#, with: #""<redacted>""#))
        // Still valid JSON.
        #expect(throws: Never.self) { try CallbackEnvelope(body: redacted) }
    }

    @Test func aNonStringPasswordIsRedactedToo() throws {
        let body = Array(#"{"password": {"nested": "secret"}, "status": "Success"}"#.utf8)
        let redacted = String(decoding: try CallbackEnvelope(body: body).redacting(body), as: UTF8.self)
        #expect(redacted == #"{"password": "<redacted>", "status": "Success"}"#)
    }

    @Test func unknownFieldsAndOddTypesAreKept() throws {
        let body = Array(
            #"{"requestId": 42, "status": null, "deviceIds": "none", "callbackCount": "1", "niddResponse": {"x": [1, 2.5e3, true, false, null]}, "extra": "é ✓ 𝄞"}"#
                .utf8)
        let envelope = try CallbackEnvelope(body: body)
        #expect(envelope.requestID == nil)
        #expect(envelope.status == nil)
        #expect(envelope.deviceIDs.isEmpty)
        #expect(envelope.callbackCount == nil)
        #expect(envelope.redacting(body) == body)
    }

    // The grammar itself (what is not one JSON object, repeated names in objects of any
    // size) is tested against the scanner in JSONTests; here, how its failures read.
    @Test func scannerFailuresBecomeEnvelopeErrors() {
        #expect(throws: CallbackEnvelopeError.notJSON(offset: 7, expected: "a digit")) {
            try CallbackEnvelope(body: Array("{\"a\":1.}".utf8))
        }
        #expect(throws: CallbackEnvelopeError.notAnObject) { try CallbackEnvelope(body: Array("[]".utf8)) }
        #expect(throws: CallbackEnvelopeError.duplicateMember("password")) {
            try CallbackEnvelope(body: Array("{\"password\":\"a\",\"password\":\"b\"}".utf8))
        }
        #expect(CallbackEnvelopeError.tooDeep.description == "body nests deeper than 64 levels")
        #expect(
            CallbackEnvelopeError.notJSON(offset: 7, expected: "a digit").description
                == "body is not valid JSON: expected a digit at byte 7")
    }

    @Test func rejectsInvalidUTF8AndDeepNesting() {
        #expect(throws: CallbackEnvelopeError.invalidUTF8(offset: 6)) {
            try CallbackEnvelope(body: Array("{\"a\":\"".utf8) + [0xC3, 0x28] + Array("\"}".utf8))
        }
        #expect(throws: CallbackEnvelopeError.invalidUTF8(offset: 6)) {  // an encoded surrogate
            try CallbackEnvelope(body: Array("{\"a\":\"".utf8) + [0xED, 0xA0, 0x80] + Array("\"}".utf8))
        }
        let deep = "{\"a\":" + String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + "}"
        #expect(throws: CallbackEnvelopeError.tooDeep) { try CallbackEnvelope(body: Array(deep.utf8)) }
        let fine = "{\"a\":" + String(repeating: "[", count: 60) + String(repeating: "]", count: 60) + "}"
        #expect(throws: Never.self) { try CallbackEnvelope(body: Array(fine.utf8)) }
    }

    @Test func decodesEscapedStrings() throws {
        let body = Array(#"{"username":"a\"b\\c\/d\u00e9\ud834\udd1e\n","requestId":"\ud800x"}"#.utf8)
        let envelope = try CallbackEnvelope(body: body)
        #expect(envelope.username == "a\"b\\c/dé𝄞\n")
        #expect(envelope.requestID == "\u{FFFD}x")
    }
}
