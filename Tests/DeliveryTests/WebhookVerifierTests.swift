import Delivery
import Foundation
import HTTP1
import Testing

/// The verifier on its own, time passed in: what the spec asks of a receiver, every boundary,
/// and errors that say why without a secret in them.
@Suite struct WebhookVerifierTests {
    static let secret = WebhookSecret(key: Array(0..<32))
    static let previous = WebhookSecret(key: Array(repeating: 0xA5, count: 24))
    static let now: Int64 = 1_780_000_000
    static let body = Array(#"{"type":"thingspace.callback","timestamp":"2026-05-28T20:26:40.000Z","data":{"id":7}}"#.utf8)

    func headers(
        id: String = "7", timestamp: Int64 = now, body: [UInt8] = body, secrets: [WebhookSecret] = [secret]
    ) -> (id: String, timestamp: String, signature: String) {
        (id, String(timestamp), WebhookMessage.signature(id: id, timestamp: timestamp, body: body, secrets: secrets))
    }

    func verify(
        _ verifier: WebhookVerifier = WebhookVerifier(secrets: [secret]), id: String?, timestamp: String?, signature: String?,
        body: [UInt8] = body, now: Int64 = now
    ) -> Result<VerifiedWebhook, WebhookVerificationError> {
        do throws(WebhookVerificationError) {
            return .success(try verifier.verify(id: id, timestamp: timestamp, signature: signature, body: body, now: now))
        } catch {
            return .failure(error)
        }
    }

    @Test func theSpecificationsExampleVerifies() throws {
        let secret = try #require(WebhookSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
        let result = verify(
            WebhookVerifier(secrets: [secret]), id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: "1614265330",
            signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", body: Array(#"{"test": 2432232314}"#.utf8), now: 1_614_265_330)
        #expect(result == .success(VerifiedWebhook(id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, secretIndex: 0)))
    }

    @Test func ourSignatureVerifiesFromHeaders() throws {
        let sent = WebhookMessage.headers(id: 42, timestamp: Self.now, body: Self.body, secrets: [Self.secret])
        let headers = HTTPHeaders(sent.map { ($0.name.uppercased(), $0.value) })  // names in any case
        let verified = try WebhookVerifier(secrets: [Self.secret]).verify(headers: headers, body: Self.body, now: Self.now)
        #expect(verified == VerifiedWebhook(id: "42", timestamp: Self.now, secretIndex: 0))
    }

    @Test func theToleranceHoldsBothWaysUpToItsBoundary() {
        let verifier = WebhookVerifier(secrets: [Self.secret], tolerance: .seconds(300))
        for offset: Int64 in [-300, -1, 0, 1, 300] {
            let sent = headers(timestamp: Self.now + offset)
            #expect(throws: Never.self, "offset \(offset)") {
                try verifier.verify(id: sent.id, timestamp: sent.timestamp, signature: sent.signature, body: Self.body, now: Self.now)
            }
        }
        let old = headers(timestamp: Self.now - 301)
        #expect(
            verify(verifier, id: old.id, timestamp: old.timestamp, signature: old.signature)
                == .failure(.timestampTooOld(timestamp: Self.now - 301, now: Self.now, toleranceSeconds: 300)))
        let new = headers(timestamp: Self.now + 301)
        #expect(
            verify(verifier, id: new.id, timestamp: new.timestamp, signature: new.signature)
                == .failure(.timestampTooNew(timestamp: Self.now + 301, now: Self.now, toleranceSeconds: 300)))
        #expect(WebhookVerifier(secrets: [Self.secret]).toleranceSeconds == 300)  // the default is the spec's five minutes
    }

    @Test func eachMissingOrEmptyHeaderIsNamed() {
        let sent = headers()
        #expect(verify(id: nil, timestamp: sent.timestamp, signature: sent.signature) == .failure(.missingHeader("webhook-id")))
        #expect(verify(id: "", timestamp: sent.timestamp, signature: sent.signature) == .failure(.missingHeader("webhook-id")))
        #expect(verify(id: sent.id, timestamp: nil, signature: sent.signature) == .failure(.missingHeader("webhook-timestamp")))
        #expect(verify(id: sent.id, timestamp: sent.timestamp, signature: nil) == .failure(.missingHeader("webhook-signature")))
        #expect(verify(id: sent.id, timestamp: sent.timestamp, signature: "   ") == .failure(.missingHeader("webhook-signature")))
    }

    @Test func aRepeatedHeaderIsRefused() throws {
        let sent = headers()
        var fields = HTTPHeaders([("webhook-id", sent.id), ("webhook-timestamp", sent.timestamp), ("webhook-signature", sent.signature)])
        fields.add(name: "Webhook-Signature", value: sent.signature)
        #expect(throws: WebhookVerificationError.repeatedHeader("webhook-signature", count: 2)) {
            try WebhookVerifier(secrets: [Self.secret]).verify(headers: fields, body: Self.body, now: Self.now)
        }
    }

    @Test func timestampsThatAreNotCanonicalSecondsAreMalformed() {
        for text in ["-1780000000", "+1780000000", "01780000000", "1780000000.5", "1.78e9", "17800 00000", "now", "1234567890123456789"] {
            let result = verify(id: "7", timestamp: text, signature: headers().signature)
            guard case .failure(.malformedTimestamp) = result else {
                Issue.record("\(text): \(result)")
                continue
            }
            #expect(result.failure?.isMalformedRequest == true)
        }
        #expect(throws: Never.self) {
            let sent = headers(timestamp: 0)
            _ = try WebhookVerifier(secrets: [Self.secret], tolerance: .seconds(1_000_000_000_000))
                .verify(id: sent.id, timestamp: "0", signature: sent.signature, body: Self.body, now: Self.now)
        }
    }

    @Test func anIDWithAFullStopIsMalformed() {
        // "7.1780000000" + "." + … could be read as another id and timestamp over another body.
        let sent = headers(id: "7.1")
        #expect(verify(id: sent.id, timestamp: sent.timestamp, signature: sent.signature) == .failure(.malformedID))
    }

    @Test func malformedSignatureEntriesAreNamedByPosition() {
        let sent = headers()
        let cases: [(String, Int)] = [
            ("v1", 1), ("\(sent.signature) v1g0hM9SsE", 2), (",abc", 1), ("v1,", 1),
            ("v1,not*base64*at*all", 1), ("v1,AAAA", 1),  // base64, but not 32 bytes
            ("v1a,anything \(sent.signature.dropLast())", 2),  // a truncated v1 value is not valid base64
        ]
        for (header, entry) in cases {
            let result = verify(id: sent.id, timestamp: sent.timestamp, signature: header)
            guard case .failure(.malformedSignature(let position, _)) = result else {
                Issue.record("\(header): \(result)")
                continue
            }
            #expect(position == entry, "\(header)")
        }
    }

    @Test func unknownVersionsAreIgnoredAndAnyV1MayMatch() {
        let sent = headers()
        let other = WebhookMessage.signature(id: sent.id, timestamp: Self.now, body: Self.body, secrets: [Self.previous])
        let asymmetric = "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg=="
        for header in [
            "\(asymmetric) \(sent.signature)", "\(other) \(sent.signature)", "\(sent.signature) \(other)", "v2,x  \(sent.signature)",
        ] {
            #expect(verify(id: sent.id, timestamp: sent.timestamp, signature: header).success?.secretIndex == 0, "\(header)")
        }
        #expect(
            verify(id: sent.id, timestamp: sent.timestamp, signature: "\(asymmetric) v2,abc \(asymmetric)")
                == .failure(.noSupportedSignature(versions: ["v1a", "v2"])))
    }

    @Test func rotationWorksFromEitherEnd() {
        // The sender signs with the new and the previous secret; a receiver that knows only one accepts.
        let both = headers(secrets: [Self.secret, Self.previous])
        #expect(both.signature.split(separator: " ").count == 2)
        for known in [[Self.secret], [Self.previous]] {
            let result = verify(WebhookVerifier(secrets: known), id: both.id, timestamp: both.timestamp, signature: both.signature)
            #expect(result.success != nil)
        }
        // The receiver keeps both while the sender still signs with the previous one only.
        let old = headers(secrets: [Self.previous])
        let result = verify(
            WebhookVerifier(secrets: [Self.secret, Self.previous]), id: old.id, timestamp: old.timestamp, signature: old.signature)
        #expect(result.success?.secretIndex == 1)
    }

    @Test func anyChangeToIDTimestampOrBodyBreaksTheSignature() {
        let sent = headers()
        let two = WebhookVerifier(secrets: [Self.secret, Self.previous])
        var tampered = Self.body
        tampered[tampered.count - 3] = UInt8(ascii: "8")
        let cases: [(String, String, [UInt8])] = [
            ("8", sent.timestamp, Self.body), (sent.id, String(Self.now + 1), Self.body), (sent.id, sent.timestamp, tampered),
            (sent.id, sent.timestamp, Self.body + [0x20]), (sent.id, sent.timestamp, []),
        ]
        for (id, timestamp, body) in cases {
            #expect(
                verify(two, id: id, timestamp: timestamp, signature: sent.signature, body: body)
                    == .failure(.noSignatureMatches(signatures: 1, secrets: 2)))
        }
        let wrongKey = headers(secrets: [WebhookSecret(key: Array(repeating: 1, count: 32))])
        #expect(
            verify(id: sent.id, timestamp: sent.timestamp, signature: wrongKey.signature)
                == .failure(.noSignatureMatches(signatures: 1, secrets: 1)))
    }

    @Test func errorsSayWhyAndNeverHoldASecretOrTheExpectedSignature() {
        let sent = headers()
        let expected = String(sent.signature.dropFirst(3))
        let secrets = [Self.secret.encoded, String(Self.secret.encoded.dropFirst(6)), Self.previous.encoded]
        let errors: [WebhookVerificationError] = [
            .missingHeader("webhook-id"), .repeatedHeader("webhook-id", count: 2), .malformedID, .malformedTimestamp("x"),
            .malformedSignature(entry: 1, reason: "is not version,signature"),
            .timestampTooOld(timestamp: 1, now: 400, toleranceSeconds: 300),
            .timestampTooNew(timestamp: 800, now: 400, toleranceSeconds: 300),
            .noSupportedSignature(versions: ["v1a"]), .noSignatureMatches(signatures: 2, secrets: 2),
        ]
        let words = [
            "webhook-id header is missing", "appears 2 times", "'.'", "not whole Unix seconds", "entry 1", "too old: 399 s before now",
            "too new: 400 s after now", "no v1 signature", "no signature matches",
        ]
        for (error, word) in zip(errors, words) {
            #expect(error.description.contains(word), "\(error)")
        }
        // The errors the verifier itself makes, from a request signed with the real secrets.
        let made = [
            verify(WebhookVerifier(secrets: [Self.secret, Self.previous]), id: "8", timestamp: sent.timestamp, signature: sent.signature),
            verify(id: sent.id, timestamp: String(Self.now - 999), signature: sent.signature),
            verify(id: sent.id, timestamp: sent.timestamp, signature: "v1," + expected.dropLast(2) + "=="),
        ]
        for case .failure(let error) in made {
            for secret in secrets + [expected] { #expect(!error.description.contains(secret), "\(error)") }
        }
        #expect(made.allSatisfy { $0.failure != nil })
        #expect("\(WebhookVerifier(secrets: [Self.secret]))".contains(Self.secret.encoded) == false)
    }

    @Test func statusesSeparateMalformedFromInauthentic() {
        #expect(WebhookVerificationError.missingHeader("webhook-id").isMalformedRequest)
        #expect(WebhookVerificationError.malformedSignature(entry: 1, reason: "").isMalformedRequest)
        #expect(!WebhookVerificationError.noSignatureMatches(signatures: 1, secrets: 1).isMalformedRequest)
        #expect(!WebhookVerificationError.timestampTooOld(timestamp: 0, now: 999, toleranceSeconds: 1).isMalformedRequest)
    }

    @Test func constantTimeEqualityIsEquality() {
        let a: [UInt8] = Array(0..<32)
        #expect(WebhookVerifier.constantTimeEquals(a, a))
        for index in a.indices {
            var b = a
            b[index] ^= 0x80
            #expect(!WebhookVerifier.constantTimeEquals(a, b))
        }
        #expect(!WebhookVerifier.constantTimeEquals(a, Array(a.dropLast())))
        #expect(WebhookVerifier.constantTimeEquals([], []))
    }
}

extension Result {
    var success: Success? { try? get() }
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
