// The simulated ThingSpace: issued tokens and sessions, the login lockout,
// registered listeners, injected faults and the journal. A value type
// driven under one lock; it decides every answer and tells the caller
// which registrations changed (delivery happens elsewhere).
//
// Error answers (chosen from the SDKs' documentation, which lists HTTP 400
// with `{"errorCode","errorMessage"}` for every Connectivity Management
// error, and the gateway's fault form for a refused access token):
//   bad/expired access token on /m2m/...  401 {"fault":{"code":"900901","message":"Invalid Credentials",...}}
//   bad OAuth client credentials          401 {"error":"invalid_client",...}
//   bad UWS username/password             400 errorCode UnifiedWebService.REQUEST_FAILED.SessionLogin.InvalidCredentials
//   login while locked (after 5 failures) 400 errorCode UnifiedWebService.REQUEST_FAILED.SessionLogin.AccountLocked
//   missing/expired/unknown session       401 errorCode UnifiedWebService.REQUEST_FAILED.SessionToken.Expired
//   unknown account                       400 errorCode UnifiedWebService.INPUT_INVALID.AccountName
//   invalid register body                 400 errorCode UnifiedWebService.INPUT_INVALID.<field>
//   deregister of an unregistered service 400 errorCode UnifiedWebService.REQUEST_FAILED.CallbackNotFound
import Foundation
import HTTP1
import ThingSpace

struct InjectedFault {
    var status: Int
    var body: String?
}

/// What a request changed that the deliverer must know.
enum RegistrationEvent {
    case registered(SandboxRegistration)
    case deregistered(accountName: String, serviceName: String)
}

struct SandboxState {
    let configuration: SandboxConfiguration

    private var tokens: [String: ContinuousClock.Instant] = [:]  // token → expiry
    private var sessions: [String: ContinuousClock.Instant] = [:]  // session → last use
    private(set) var failedLogins = 0
    private(set) var isLocked = false
    private(set) var registrations: [String: SandboxRegistration] = [:]  // "account/service"
    private var faults: [SandboxRoute: [InjectedFault]] = [:]
    private(set) var journal: [SandboxJournalEntry] = []
    private(set) var deliveries: [SandboxDelivery] = []

    init(configuration: SandboxConfiguration) {
        self.configuration = configuration
    }

    // MARK: - Controls for tests

    mutating func failNext(_ route: SandboxRoute, status: Int, count: Int, body: String?) {
        faults[route, default: []].append(contentsOf: Array(repeating: InjectedFault(status: status, body: body), count: max(0, count)))
    }

    mutating func expireSessions() { sessions.removeAll() }
    mutating func expireTokens() { tokens.removeAll() }
    mutating func unlock() {
        isLocked = false
        failedLogins = 0
    }
    mutating func clearJournal() { journal.removeAll() }

    mutating func record(_ delivery: SandboxDelivery) {
        deliveries.append(delivery)
        if deliveries.count > configuration.recordLimit { deliveries.removeFirst(deliveries.count - configuration.recordLimit) }
    }

    func registration(accountName: String, serviceName: String) -> SandboxRegistration? {
        registrations[Self.key(accountName, serviceName)]
    }

    // MARK: - Requests

    mutating func handle(_ request: HTTPRequest, now: ContinuousClock.Instant) -> (HTTPResponse, RegistrationEvent?) {
        let target = Self.route(method: request.head.method, path: request.head.path)
        var event: RegistrationEvent?
        let response: HTTPResponse
        switch target {
        case let .endpoint(route, segments):
            if var queue = faults[route], !queue.isEmpty {
                let fault = queue.removeFirst()
                faults[route] = queue
                response = Self.injected(fault)
            } else {
                (response, event) = answer(route, segments: segments, request: request, now: now)
            }
        case let .methodNotAllowed(allowed):
            var answer = Self.error(.methodNotAllowed, "MethodNotAllowed", "Use \(allowed) on this resource")
            answer.headers.add(name: "Allow", value: allowed)
            response = answer
        case .badPath:
            response = Self.error(.badRequest, "UnifiedWebService.INPUT_INVALID.Path", "The path has an invalid percent-encoding")
        case .notFound:
            response = Self.error(.notFound, "NotFound", "No resource at this path")
        }
        journal.append(
            SandboxJournalEntry(
                method: request.head.method, path: request.head.target, headers: request.head.headers,
                body: request.body, route: target.route, status: response.status.code))
        if journal.count > configuration.recordLimit { journal.removeFirst(journal.count - configuration.recordLimit) }
        return (response, event)
    }

    private mutating func answer(
        _ route: SandboxRoute, segments: [String], request: HTTPRequest, now: ContinuousClock.Instant
    ) -> (HTTPResponse, RegistrationEvent?) {
        if route == .token { return (issueToken(request, now: now), nil) }
        // Everything under /m2m passes the gateway's access-token check first.
        guard checkAccessToken(request.head.headers["Authorization"], now: now) else { return (Self.gatewayFault(), nil) }
        switch route {
        case .login: return (login(request, now: now), nil)
        case .logout: return (logout(request, now: now), nil)
        default:
            guard useSession(request.head.headers["VZ-M2M-Token"], now: now) else { return (Self.sessionExpired(), nil) }
            let accountName = segments[3]
            guard configuration.accountNames.contains(accountName) else {
                return (
                    Self.error(
                        .badRequest, "UnifiedWebService.INPUT_INVALID.AccountName",
                        "Account \(accountName) does not exist or is not accessible to this user"), nil
                )
            }
            switch route {
            case .list: return (list(accountName), nil)
            case .register: return register(accountName, request)
            default: return deregister(accountName, serviceName: segments[5])
            }
        }
    }

    // MARK: Authentication

    private mutating func issueToken(_ request: HTTPRequest, now: ContinuousClock.Instant) -> HTTPResponse {
        guard let (clientID, secret) = Self.basicCredentials(request.head.headers["Authorization"]),
            clientID == configuration.credentials.clientID, secret == configuration.credentials.clientSecret
        else {
            return Self.json(.unauthorized, #"{"error":"invalid_client","error_description":"Client authentication failed"}"#)
        }
        let form = String(decoding: request.body, as: UTF8.self).split(separator: "&").map(String.init)
        guard form.contains("grant_type=client_credentials") else {
            return Self.json(
                .badRequest, #"{"error":"unsupported_grant_type","error_description":"grant_type must be client_credentials"}"#)
        }
        let token = "sbx-at-" + UUID().uuidString.lowercased()
        tokens[token] = now + configuration.tokenLifetime
        let expiresIn = Int(configuration.tokenLifetime.components.seconds)
        return Self.json(
            .ok, #"{"access_token":"\#(token)","token_type":"Bearer","expires_in":\#(expiresIn),"scope":"ts.application ts.mtas"}"#)
    }

    private mutating func checkAccessToken(_ authorization: String?, now: ContinuousClock.Instant) -> Bool {
        guard let authorization, authorization.hasPrefix("Bearer ") else { return false }
        let token = String(authorization.dropFirst("Bearer ".count))
        guard let expiry = tokens[token] else { return false }
        guard now < expiry else {
            tokens[token] = nil
            return false
        }
        return true
    }

    private mutating func login(_ request: HTTPRequest, now: ContinuousClock.Instant) -> HTTPResponse {
        guard Self.isJSON(request) else { return Self.unsupportedMediaType() }
        guard let body = try? JSONDecoder().decode(SessionLoginRequest.self, from: Data(request.body)) else {
            return Self.error(
                .badRequest, "UnifiedWebService.INPUT_INVALID.Body", "The body must be {\"username\": ..., \"password\": ...}")
        }
        if isLocked { return Self.locked() }
        let expected = configuration.credentials
        guard body.username == expected.username, body.password == expected.password else {
            // Only wrong passwords of the real user count toward its lockout.
            if body.username == expected.username {
                failedLogins += 1
                if failedLogins >= configuration.maxFailedLogins { isLocked = true }
            }
            return Self.error(
                .badRequest, "UnifiedWebService.REQUEST_FAILED.SessionLogin.InvalidCredentials",
                "Invalid username or password")
        }
        failedLogins = 0
        let session = "sbx-st-" + UUID().uuidString.lowercased()
        sessions[session] = now
        return Self.json(.ok, #"{"sessionToken":"\#(session)"}"#)
    }

    private mutating func logout(_ request: HTTPRequest, now: ContinuousClock.Instant) -> HTTPResponse {
        guard let session = request.head.headers["VZ-M2M-Token"], useSession(session, now: now) else { return Self.sessionExpired() }
        sessions[session] = nil
        return Self.json(.ok, #"{"sessionToken":"\#(session)"}"#)
    }

    /// A known session not idle too long; using it restarts its idle time.
    private mutating func useSession(_ session: String?, now: ContinuousClock.Instant) -> Bool {
        guard let session, let lastUse = sessions[session] else { return false }
        guard now - lastUse < configuration.sessionIdleLifetime else {
            sessions[session] = nil
            return false
        }
        sessions[session] = now
        return true
    }

    // MARK: Callbacks

    private func list(_ accountName: String) -> HTTPResponse {
        let entries = registrations.values.filter { $0.accountName == accountName }.sorted { $0.serviceName < $1.serviceName }
        // ThingSpace answers an empty body, not [], when nothing is registered.
        guard !entries.isEmpty else { return HTTPResponse(status: .ok) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        let body = (try? encoder.encode(entries.map(WireCallback.init))) ?? Data("[]".utf8)
        return HTTPResponse(status: .ok, headers: ["Content-Type": "application/json"], body: Array(body))
    }

    private mutating func register(_ accountName: String, _ request: HTTPRequest) -> (HTTPResponse, RegistrationEvent?) {
        guard Self.isJSON(request) else { return (Self.unsupportedMediaType(), nil) }
        guard let body = try? JSONDecoder().decode(RegisterCallbackRequest.self, from: Data(request.body)) else {
            return (
                Self.error(
                    .badRequest, "UnifiedWebService.INPUT_INVALID.Body",
                    "The body must be a JSON object with name and url"), nil
            )
        }
        if let problem = validate(body) {
            return (Self.error(.badRequest, "UnifiedWebService.INPUT_INVALID.\(problem.field)", problem.message), nil)
        }
        let registration = SandboxRegistration(
            accountName: accountName, serviceName: body.name, url: body.url,
            username: body.username.flatMap { $0.isEmpty ? nil : $0 },
            password: body.password.flatMap { $0.isEmpty ? nil : $0 })
        // One listener per service: a new registration replaces the old one.
        registrations[Self.key(accountName, body.name)] = registration
        return (Self.actionResult(accountName, body.name), .registered(registration))
    }

    private mutating func deregister(_ accountName: String, serviceName: String) -> (HTTPResponse, RegistrationEvent?) {
        guard registrations.removeValue(forKey: Self.key(accountName, serviceName)) != nil else {
            return (
                Self.error(
                    .badRequest, "UnifiedWebService.REQUEST_FAILED.CallbackNotFound",
                    "No callback is registered for service \(serviceName)"), nil
            )
        }
        return (Self.actionResult(accountName, serviceName), .deregistered(accountName: accountName, serviceName: serviceName))
    }

    private func validate(_ body: RegisterCallbackRequest) -> (field: String, message: String)? {
        if !SandboxConfiguration.serviceNames.contains(body.name) {
            return ("ServiceName", "Unknown service name '\(body.name)'")
        }
        guard let url = URLComponents(string: body.url), let scheme = url.scheme?.lowercased(),
            scheme == "http" || scheme == "https", let host = url.host, !host.isEmpty
        else {
            return ("Url", "url must be an absolute http or https URL")
        }
        if configuration.enforceListenerPorts {
            let port = url.port ?? (scheme == "https" ? 443 : 80)
            if !SandboxConfiguration.isAcceptedListenerPort(port) {
                return ("Url", "Port \(port) is not accepted for callback listeners")
            }
        }
        if let username = body.username, username.count > RegisterCallbackRequest.maxCredentialLength {
            return ("Username", "username must be at most \(RegisterCallbackRequest.maxCredentialLength) characters")
        }
        if let password = body.password, password.count > RegisterCallbackRequest.maxCredentialLength {
            return ("Password", "password must be at most \(RegisterCallbackRequest.maxCredentialLength) characters")
        }
        return nil
    }

    // MARK: - Routing

    enum Target {
        case endpoint(SandboxRoute, segments: [String])
        case methodNotAllowed(String)
        case badPath
        case notFound

        var route: SandboxRoute? {
            if case let .endpoint(route, _) = self { return route }
            return nil
        }
    }

    /// Paths live under `/api`, like the production base URL.
    static func route(method: String, path: Substring) -> Target {
        guard path.hasPrefix("/api/") else { return .notFound }
        var segments: [String] = []
        for raw in path.dropFirst("/api/".count).split(separator: "/", omittingEmptySubsequences: false) {
            guard let decoded = String(raw).removingPercentEncoding else { return .badPath }
            segments.append(decoded)
        }
        func only(_ allowed: String, _ route: SandboxRoute) -> Target {
            method == allowed ? .endpoint(route, segments: segments) : .methodNotAllowed(allowed)
        }
        switch segments.count {
        case 4 where segments == ["ts", "v1", "oauth2", "token"]: return only("POST", .token)
        case 4 where segments == ["m2m", "v1", "session", "login"]: return only("POST", .login)
        case 4 where segments == ["m2m", "v1", "session", "logout"]: return only("POST", .logout)
        case 4 where segments[0] == "m2m" && segments[1] == "v1" && segments[2] == "callbacks" && !segments[3].isEmpty:
            switch method {
            case "GET": return .endpoint(.list, segments: segments)
            case "POST": return .endpoint(.register, segments: segments)
            default: return .methodNotAllowed("GET, POST")
            }
        case 6
        where segments[0] == "m2m" && segments[1] == "v1" && segments[2] == "callbacks" && !segments[3].isEmpty
            && segments[4] == "name" && !segments[5].isEmpty:
            return only("DELETE", .deregister)
        default:
            return .notFound
        }
    }

    // MARK: - Answers

    static func key(_ accountName: String, _ serviceName: String) -> String { accountName + "/" + serviceName }

    static func json(_ status: HTTPStatus, _ body: String) -> HTTPResponse {
        HTTPResponse(status: status, contentType: "application/json", body: body)
    }

    static func error(_ status: HTTPStatus, _ code: String, _ message: String) -> HTTPResponse {
        let body = (try? JSONEncoder().encode(ThingSpaceErrorBody(errorCode: code, errorMessage: message))) ?? Data()
        return HTTPResponse(status: status, headers: ["Content-Type": "application/json"], body: Array(body))
    }

    static func gatewayFault() -> HTTPResponse {
        json(
            .unauthorized,
            #"{"fault":{"code":"900901","message":"Invalid Credentials","description":"Invalid Credentials. Make sure you have provided the correct security credentials"}}"#
        )
    }

    static func sessionExpired() -> HTTPResponse {
        error(.unauthorized, "UnifiedWebService.REQUEST_FAILED.SessionToken.Expired", "SessionToken Expired")
    }

    static func locked() -> HTTPResponse {
        error(
            .badRequest, "UnifiedWebService.REQUEST_FAILED.SessionLogin.AccountLocked",
            "The account is locked after 5 consecutive failed logins; contact M2M support to unlock it")
    }

    static func unsupportedMediaType() -> HTTPResponse {
        error(.unsupportedMediaType, "UnifiedWebService.INPUT_INVALID.ContentType", "Content-Type must be application/json")
    }

    static func actionResult(_ accountName: String, _ serviceName: String) -> HTTPResponse {
        let body = (try? JSONEncoder().encode(CallbackActionResult(accountName: accountName, serviceName: serviceName))) ?? Data()
        return HTTPResponse(status: .ok, headers: ["Content-Type": "application/json"], body: Array(body))
    }

    static func injected(_ fault: InjectedFault) -> HTTPResponse {
        let status = HTTPStatus(code: fault.status, reason: reasonPhrase(fault.status))
        if let body = fault.body { return json(status, body) }
        switch fault.status {
        case 401: return sessionExpired()
        case 429: return error(status, "TooManyRequests", "Rate limit exceeded; try again later")
        case 500...599: return error(status, "UnifiedWebService.INTERNAL_ERROR", "Service temporarily unavailable")
        default: return error(status, "UnifiedWebService.REQUEST_FAILED", "Injected failure")
        }
    }

    static func reasonPhrase(_ code: Int) -> String {
        switch code {
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 423: "Locked"
        case 429: "Too Many Requests"
        case 500: "Internal Server Error"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        default: "Status \(code)"
        }
    }

    static func isJSON(_ request: HTTPRequest) -> Bool {
        guard let type = request.head.headers["Content-Type"] else { return false }
        return type.lowercased().split(separator: ";").first?.trimmingCharacters(in: .whitespaces) == "application/json"
    }

    static func basicCredentials(_ authorization: String?) -> (String, String)? {
        guard let authorization, authorization.hasPrefix("Basic "),
            let data = Data(base64Encoded: String(authorization.dropFirst("Basic ".count))),
            let text = String(data: data, encoding: .utf8), let colon = text.firstIndex(of: ":")
        else { return nil }
        return (String(text[..<colon]), String(text[text.index(after: colon)...]))
    }
}

/// A List entry as ThingSpace writes it: every field present, "" when not set.
private struct WireCallback: Encodable {
    var accountName: String
    var serviceName: String
    var url: String
    var username: String
    var password: String

    init(_ registration: SandboxRegistration) {
        accountName = registration.accountName
        serviceName = registration.serviceName
        url = registration.url
        username = registration.username ?? ""
        password = registration.password ?? ""
    }
}
