import Foundation
import Testing

@testable import ThingSpace

@Suite("Wire models")
struct ModelTests {
    private func jsonObject(_ value: some Encodable) throws -> [String: Any] {
        let data = try JSONEncoder().encode(value)
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    @Test func registerRequestUsesTheWireFieldNames() throws {
        let request = RegisterCallbackRequest(name: "CarrierService", url: "https://example.com:9001/cb", username: "u", password: "p")
        let object = try jsonObject(request)
        #expect(Set(object.keys) == ["name", "url", "username", "password"])
        #expect(object["name"] as? String == "CarrierService")
        #expect(object["url"] as? String == "https://example.com:9001/cb")
        #expect(object["username"] as? String == "u")
        #expect(object["password"] as? String == "p")
    }

    @Test func registerRequestOmitsAbsentCredentials() throws {
        let object = try jsonObject(RegisterCallbackRequest(name: "DeviceUsage", url: "https://example.com/cb"))
        #expect(Set(object.keys) == ["name", "url"])
    }

    @Test func registerRequestValidation() throws {
        let forty = String(repeating: "x", count: 40)
        try RegisterCallbackRequest(name: "CarrierService", url: "https://h/cb", username: forty, password: forty).validate()

        let cases: [(RegisterCallbackRequest, String)] = [
            (RegisterCallbackRequest(name: "S", url: "https://h/cb", username: forty + "x"), "username has 41 characters"),
            (RegisterCallbackRequest(name: "S", url: "https://h/cb", password: forty + "é"), "password has 41 characters"),
            (RegisterCallbackRequest(name: "", url: "https://h/cb"), "service name is empty"),
            (RegisterCallbackRequest(name: "S", url: "ftp://h/cb"), "not an absolute http(s) URL"),
            (RegisterCallbackRequest(name: "S", url: "/relative"), "not an absolute http(s) URL"),
            (RegisterCallbackRequest(name: "S\n", url: "https://h/cb"), "control character"),
        ]
        for (request, expected) in cases {
            #expect {
                try request.validate()
            } throws: { error in
                guard case let ThingSpaceError.invalidArgument(message) = error else { return false }
                return message.contains(expected)
            }
        }
    }

    @Test func registerRequestDescriptionHidesThePassword() {
        let request = RegisterCallbackRequest(name: "S", url: "https://h/cb", username: "u", password: "cb-secret-pw")
        #expect(!"\(request)".contains("cb-secret-pw"))
        #expect(!String(reflecting: request).contains("cb-secret-pw"))
    }

    @Test func callbackDecodesEmptyStringsAsNotSetAndAcceptsName() throws {
        let body = #"""
            [{"accountName":"0252012345-00001","serviceName":"CarrierService","url":"https://h/cb","username":"","password":""},
             {"accountName":"0252012345-00001","name":"DeviceUsage","url":"https://h/du"},
             {}]
            """#
        let callbacks = try ConnectivityCallbacksClient.decodeList(Array(body.utf8))
        #expect(callbacks.count == 3)
        #expect(
            callbacks[0]
                == ConnectivityManagementCallback(accountName: "0252012345-00001", serviceName: "CarrierService", url: "https://h/cb"))
        #expect(callbacks[1].serviceName == "DeviceUsage")
        #expect(callbacks[2] == ConnectivityManagementCallback())
    }

    @Test func callbackRedaction() {
        let callback = ConnectivityManagementCallback(serviceName: "S", url: "https://h", username: "u", password: "clear-text-pw")
        #expect(callback.redacted.password == "<redacted>")
        #expect(callback.redacted.username == "u")
        #expect(callback.password == "clear-text-pw")
        #expect(!"\(callback)".contains("clear-text-pw"))
        #expect(ConnectivityManagementCallback(serviceName: "S").redacted.password == nil)
        #expect(ConnectivityManagementCallback(serviceName: "S", password: "").redacted.password == "")
    }

    @Test func listBodyForms() throws {
        #expect(try ConnectivityCallbacksClient.decodeList([]).isEmpty)
        #expect(try ConnectivityCallbacksClient.decodeList(Array(" \r\n".utf8)).isEmpty)
        #expect(try ConnectivityCallbacksClient.decodeList(Array("[]".utf8)).isEmpty)
        #expect(try ConnectivityCallbacksClient.decodeList(Array("null".utf8)).isEmpty)
        #expect(throws: ThingSpaceError.invalidResponse("the List answer is not a JSON array of callbacks (12 bytes)")) {
            try ConnectivityCallbacksClient.decodeList(Array(#"{"a":"b"}   "#.utf8))
        }
        #expect(throws: ThingSpaceError.self) { try ConnectivityCallbacksClient.decodeList(Array("<html>".utf8)) }
    }

    @Test func actionResultForms() throws {
        let fallback = CallbackActionResult(accountName: "A", serviceName: "S")
        #expect(try ConnectivityCallbacksClient.decodeActionResult([], fallback: fallback) == fallback)
        let decoded = try ConnectivityCallbacksClient.decodeActionResult(
            Array(#"{"accountName":"0252012345-00001","serviceName":"CarrierService"}"#.utf8), fallback: fallback)
        #expect(decoded == CallbackActionResult(accountName: "0252012345-00001", serviceName: "CarrierService"))
        #expect(throws: ThingSpaceError.self) {
            try ConnectivityCallbacksClient.decodeActionResult(Array("[1]".utf8), fallback: fallback)
        }
    }

    @Test func oauthTokenAcceptsNumberOrStringLifetime() throws {
        let numeric = try JSONDecoder().decode(
            OAuthToken.self,
            from: Data(
                #"{"access_token":"tok-1","token_type":"Bearer","expires_in":3600,"scope":"ts.application"}"#.utf8))
        #expect(numeric.accessToken == "tok-1")
        #expect(numeric.expiresIn == 3600)
        #expect(numeric.scope == "ts.application")
        let text = try JSONDecoder().decode(OAuthToken.self, from: Data(#"{"access_token":"tok-2","expires_in":"1799"}"#.utf8))
        #expect(text.expiresIn == 1799)
        #expect(!"\(numeric)".contains("tok-1"))
        let object = try jsonObject(numeric)
        #expect(Set(object.keys) == ["access_token", "token_type", "expires_in", "scope"])
    }

    @Test func sessionModels() throws {
        let login = try jsonObject(SessionLoginRequest(username: "uws-user", password: "uws-pw"))
        #expect(Set(login.keys) == ["username", "password"])
        let session = try JSONDecoder().decode(SessionToken.self, from: Data(#"{"sessionToken":"bcce3ea6"}"#.utf8))
        #expect(session.sessionToken == "bcce3ea6")
        #expect(!"\(session)".contains("bcce3ea6"))
        #expect(!"\(SessionLoginRequest(username: "uws-user", password: "uws-pw"))".contains("uws-pw"))
    }

    @Test func errorBodyForms() {
        let plain = ErrorDetail.parse(Array(#"{"errorCode":"REQUEST_FAILED.UnexpectedError","errorMessage":"Could not process"}"#.utf8))
        #expect(plain == ErrorDetail(errorCode: "REQUEST_FAILED.UnexpectedError", errorMessage: "Could not process", isGatewayFault: false))
        let fault = ErrorDetail.parse(Array(#"{"fault":{"code":"900901","message":"Invalid Credentials","description":"x"}}"#.utf8))
        #expect(fault == ErrorDetail(errorCode: "900901", errorMessage: "Invalid Credentials", isGatewayFault: true))
        let numericFault = ErrorDetail.parse(Array(#"{"fault":{"code":900901,"message":"Invalid Credentials"}}"#.utf8))
        #expect(numericFault.errorCode == "900901")
        let oauth = ErrorDetail.parse(Array(#"{"error":"invalid_client","error_description":"Client authentication failed"}"#.utf8))
        #expect(oauth.errorCode == "invalid_client")
        #expect(ErrorDetail.parse(Array("not json".utf8)) == ErrorDetail(errorCode: nil, errorMessage: nil, isGatewayFault: false))
        #expect(ErrorDetail.parse([]) == ErrorDetail(errorCode: nil, errorMessage: nil, isGatewayFault: false))
    }

    @Test func userInfoIsRedactedFromLoggedURLs() {
        #expect(redactingUserInfo("https://user:pw@host:9001/cb?a=b@c") == "https://<redacted>@host:9001/cb?a=b@c")
        #expect(redactingUserInfo("https://host/cb@x") == "https://host/cb@x")
        #expect(redactingUserInfo("not a url") == "not a url")
        let request = RegisterCallbackRequest(name: "S", url: "https://u:secret-in-url@h/cb")
        #expect(!"\(request)".contains("secret-in-url"))
    }

    @Test func percentEncodingKeepsLeadingZerosAndEscapesDelimiters() {
        #expect(percentEncodePathSegment("0252012345-00001") == "0252012345-00001")
        #expect(percentEncodePathSegment("a/b c?d#e%") == "a%2Fb%20c%3Fd%23e%25")
        #expect(percentEncodePathSegment("Zoë") == "Zo%C3%AB")
        #expect(percentEncodePathSegment("A.b_c~d") == "A.b_c~d")
    }
}

@Suite("Configuration and errors")
struct ConfigurationTests {
    @Test func credentialsNeverPrintTheirSecrets() {
        let credentials = ThingSpaceCredentials(
            clientID: "app-key", clientSecret: "app-secret-123", username: "uws-user", password: "uws-pass-456")
        var dumped = ""
        dump(credentials, to: &dumped)
        for text in ["\(credentials)", String(reflecting: credentials), dumped, "\([credentials])"] {
            #expect(!text.contains("app-secret-123"))
            #expect(!text.contains("uws-pass-456"))
            #expect(text.contains("app-key"))
        }
    }

    @Test func credentialsValidation() {
        #expect(throws: ThingSpaceError.invalidArgument("the ThingSpace password is empty")) {
            try ThingSpaceCredentials(clientID: "a", clientSecret: "b", username: "c", password: "").validate()
        }
    }

    @Test func configurationValidation() throws {
        try ThingSpaceClientConfiguration().validate()
        var configuration = ThingSpaceClientConfiguration()
        configuration.baseURL = "thingspace.verizon.com/api"
        #expect(throws: ThingSpaceError.self) { try configuration.validate() }
        configuration = ThingSpaceClientConfiguration(maxAttempts: 0)
        #expect(throws: ThingSpaceError.invalidArgument("maxAttempts must be at least 1 (got 0)")) { try configuration.validate() }
        configuration = ThingSpaceClientConfiguration(baseURL: "https://h/api///")
        #expect(configuration.normalizedBaseURL == "https://h/api")
    }

    @Test func errorDescriptionsAreActionable() {
        let login = ThingSpaceError.invalidCredentials(
            kind: .sessionLogin, status: 400, errorCode: "LOCKED", errorMessage: "Account locked")
        #expect(login.description.contains("five failed logins lock the account"))
        #expect(login.description.contains("LOCKED"))
        #expect(login.httpStatus == 400)
        let api = ThingSpaceError.api(status: 400, errorCode: "E", errorMessage: "M")
        #expect(api.description == "ThingSpace answered HTTP 400, E: M")
        #expect(ThingSpaceError.network("x").httpStatus == nil)
    }
}

@Suite("Authentication state machine")
struct AuthStateTests {
    @Test func tokenAndSessionLapseIndependently() {
        var state = AuthState()
        let start = ContinuousClock.now
        #expect(state.usableToken(at: start) == nil)
        state.tokenFetched(.init(value: "t1", renewAt: start + .seconds(10)))
        state.sessionOpened("s1", at: start)
        #expect(state.usableToken(at: start + .seconds(9)) == "t1")
        #expect(state.usableToken(at: start + .seconds(10)) == nil)
        #expect(state.usableSession(at: start + .seconds(59), idleLifetime: .seconds(60)) == "s1")
        #expect(state.usableSession(at: start + .seconds(60), idleLifetime: .seconds(60)) == nil)
        state.sessionUsed(at: start + .seconds(50))
        #expect(state.usableSession(at: start + .seconds(100), idleLifetime: .seconds(60)) == "s1")

        state.tokenRejected()
        #expect(state.usableToken(at: start) == nil)
        #expect(state.anySession == "s1")
        state.tokenFetched(.init(value: "t2", renewAt: start + .seconds(10)))
        state.signInRejected()
        #expect(state.usableToken(at: start) == nil)
        #expect(state.anySession == nil)
    }

    @Test func refusalIsTerminal() {
        var state = AuthState()
        let error = ThingSpaceError.invalidCredentials(kind: .oauthClient, status: 401, errorCode: nil, errorMessage: nil)
        state.refused(error)
        state.tokenFetched(.init(value: "t", renewAt: .now + .seconds(10)))
        state.sessionOpened("s", at: .now)
        #expect(state.refusal == error)
        #expect(state.usableToken(at: .now) == nil)
        #expect(!state.hasSession)
    }
}
