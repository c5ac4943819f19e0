// The Connectivity Callbacks API client: List, Register and Deregister,
// with the OAuth token and M2M session they need, and bounded retries.
//
// Concurrency: the auth state is read and changed under a short lock, never
// held across a request or a backoff sleep. One caller at a time signs in
// (the "leader" of a sign-in flight); callers that need a token meanwhile
// wait for the flight's outcome instead of sending their own login, so
// concurrent calls cost one token request and one login, and a refused
// login is sent once, latched, and never repeated.
import Dispatch
import Foundation
import HTTPClient
import Logging
import Synchronization
import Vocabulary

/// Calls ThingSpace's Connectivity Callbacks API. Blocking: call it from a
/// background thread. Any number of threads may call one client at once:
/// the calls run in parallel and share one token and one session.
///
/// Retries: network errors, 429 and 5xx are retried with exponential
/// backoff and jitter (`RetryPolicy`), `maxAttempts` tries in all. A
/// 401/403 from a callbacks call makes the client fetch a new token and a
/// new session once (unless a concurrent call already did), then retry the
/// call once. A login refused for its credentials is never retried, and
/// after one the client refuses to log in again (`invalidCredentials`):
/// five failed logins lock the account.
public final class ConnectivityCallbacksClient: Sendable {
    public let configuration: ThingSpaceClientConfiguration
    private let credentials: ThingSpaceCredentials
    private let http: CurlHTTPClient
    private let logger: Logger
    private let retryPolicy: RetryPolicy
    private let state = Mutex(SharedState())
    private let clock = ContinuousClock()

    /// What the lock guards: the tokens, and the sign-in in flight if any.
    private struct SharedState {
        var auth = AuthState()
        var signIn: SignInFlight?
    }

    public init(configuration: ThingSpaceClientConfiguration, credentials: ThingSpaceCredentials, logger: Logger) {
        self.configuration = configuration
        self.credentials = credentials
        self.logger = logger
        self.http = CurlHTTPClient(connectTimeout: configuration.connectTimeout, totalTimeout: configuration.totalTimeout)
        self.retryPolicy = configuration.retryPolicy
    }

    // MARK: - Operations

    /// `GET /m2m/v1/callbacks/{aname}`: the listeners registered for the
    /// account. An empty answer means none. The result holds passwords in
    /// clear text: log `.redacted`.
    public func list(accountName: String) throws(ThingSpaceError) -> [ConnectivityManagementCallback] {
        try checkAccountName(accountName)
        let path = "/m2m/v1/callbacks/\(percentEncodePathSegment(accountName))"
        let response = try callAPI("list", account: accountName) { token, session in
            CurlHTTPClient.Request(method: .get, url: self.url(path), headers: self.apiHeaders(token, session))
        }
        let callbacks = try Self.decodeList(response.body)
        logger.info(
            "Listed ThingSpace callbacks",
            metadata: [
                "thingspace.account": "\(accountName)",
                "thingspace.callbacks": "\(callbacks.map { "\($0.serviceName ?? "?")=\(redactingUserInfo($0.url ?? ""))" })",
            ])
        return callbacks
    }

    /// `POST /m2m/v1/callbacks/{aname}`: registers `request.url` as the
    /// listener of service `request.name`.
    public func register(accountName: String, request: RegisterCallbackRequest) throws(ThingSpaceError) -> CallbackActionResult {
        try checkAccountName(accountName)
        try request.validate()
        let path = "/m2m/v1/callbacks/\(percentEncodePathSegment(accountName))"
        let body: [UInt8]
        do {
            body = Array(try Self.encoder.encode(request))
        } catch {
            throw .invalidArgument("the register request could not be encoded as JSON")
        }
        let response = try callAPI("register", account: accountName) { token, session in
            var headers = self.apiHeaders(token, session)
            headers.append((name: "Content-Type", value: "application/json"))
            return CurlHTTPClient.Request(method: .post, url: self.url(path), headers: headers, body: body)
        }
        let result = try Self.decodeActionResult(
            response.body, fallback: CallbackActionResult(accountName: accountName, serviceName: request.name))
        logger.info(
            "Registered ThingSpace callback",
            metadata: [
                "thingspace.account": "\(accountName)", "thingspace.service": "\(request.name)",
                "thingspace.url": "\(redactingUserInfo(request.url))",
            ])
        return result
    }

    /// `DELETE /m2m/v1/callbacks/{aname}/name/{sname}`: removes the listener
    /// of one service.
    public func deregister(accountName: String, serviceName: String) throws(ThingSpaceError) -> CallbackActionResult {
        try checkAccountName(accountName)
        guard isValidPathSegment(serviceName) else {
            throw .invalidArgument("the service name '\(serviceName)' is empty or contains a control character")
        }
        let path = "/m2m/v1/callbacks/\(percentEncodePathSegment(accountName))/name/\(percentEncodePathSegment(serviceName))"
        let response = try callAPI("deregister", account: accountName) { token, session in
            CurlHTTPClient.Request(method: .delete, url: self.url(path), headers: self.apiHeaders(token, session))
        }
        let result = try Self.decodeActionResult(
            response.body, fallback: CallbackActionResult(accountName: accountName, serviceName: serviceName))
        logger.info(
            "Deregistered ThingSpace callback",
            metadata: [
                "thingspace.account": "\(accountName)", "thingspace.service": "\(serviceName)",
            ])
        return result
    }

    /// Fetches a token and opens a session now if none is usable (with the
    /// same retries as a call). Useful to check the credentials at start-up.
    public func authenticate() throws(ThingSpaceError) {
        try withRetries("authenticate") { () throws(AttemptFailure) in
            _ = try self.signIn()
        }
    }

    /// `POST /m2m/v1/session/logout`, once, if a session is open. The
    /// session is forgotten whatever the answer. A sign-in in flight is
    /// waited for first, so the session it opens is the one closed.
    public func logout() throws(ThingSpaceError) {
        if let flight = state.withLock({ $0.signIn }) { _ = flight.wait() }
        let now = clock.now
        let held: (session: String, token: String?)? = state.withLock { shared in
            guard let session = shared.auth.anySession else { return nil }
            shared.auth.sessionClosed()
            return (session, shared.auth.usableToken(at: now))
        }
        guard let (session, token) = held else { return }
        guard let token else {
            logger.info("ThingSpace session dropped without logout (no valid access token)")
            return
        }
        let request = CurlHTTPClient.Request(
            method: .post, url: url("/m2m/v1/session/logout"),
            headers: apiHeaders(token, session)
        )
        let response: CurlHTTPClient.Response
        do throws(CurlTransportError) {
            response = try http.send(request)
        } catch {
            logger.warning("ThingSpace logout failed", metadata: ["error": "\(error.message)"])
            throw .network(error.message)
        }
        guard (200..<300).contains(response.status) else {
            let error = Self.apiError(response)
            logger.warning("ThingSpace logout refused", metadata: ["thingspace.status": "\(response.status)"])
            throw error
        }
        logger.info("ThingSpace session closed")
    }

    // MARK: - The retry loop

    /// Runs `attempt` until it succeeds, a failure is fatal, or the tries
    /// run out. Holds no lock: attempts and backoff sleeps of concurrent
    /// operations overlap.
    private func withRetries<T>(
        _ operation: String, _ attempt: () throws(AttemptFailure) -> T
    ) throws(ThingSpaceError) -> T {
        var failures = 0
        var renewedSignIn = false
        while true {
            do throws(AttemptFailure) {
                return try attempt()
            } catch {
                let metadata: Logger.Metadata = [
                    "thingspace.operation": "\(operation)", "error": "\(error.error)",
                ]
                switch error.disposition {
                case .fatal:
                    logger.error("ThingSpace operation failed", metadata: metadata)
                    throw error.error
                case let .renewSignIn(session) where !renewedSignIn:
                    renewedSignIn = true
                    state.withLock { $0.auth.signInRejected(session: session) }
                    logger.notice("ThingSpace refused the token or session; signing in again once", metadata: metadata)
                case .renewSignIn:
                    logger.error("ThingSpace refused the call again after a fresh sign-in", metadata: metadata)
                    throw error.error
                case let .retry(after):
                    failures += 1
                    guard let delay = retryPolicy.nextDelay(afterFailures: failures, retryAfter: after) else {
                        logger.error("ThingSpace operation failed after \(failures) tries", metadata: metadata)
                        throw error.error
                    }
                    logger.warning(
                        "ThingSpace operation failed; retrying",
                        metadata: metadata.merging([
                            "thingspace.attempt": "\(failures)", "thingspace.retry_in_ms": "\(delay.inMilliseconds)",
                        ]) { $1 })
                    Thread.sleep(forTimeInterval: delay.inSeconds)
                }
            }
        }
    }

    /// One callbacks call with a valid token and session; answers the 2xx
    /// response or throws a classified failure.
    private func callAPI(
        _ operation: String, account: String,
        _ build: (_ token: String, _ session: String) -> CurlHTTPClient.Request
    ) throws(ThingSpaceError) -> CurlHTTPClient.Response {
        try withRetries(operation) { () throws(AttemptFailure) -> CurlHTTPClient.Response in
            let signedIn = try self.signIn()
            let response = try self.send(build(signedIn.token, signedIn.session))
            let status = response.status
            if status != 401 && status != 403 {
                let now = self.clock.now
                self.state.withLock { $0.auth.sessionUsed(signedIn.session, at: now) }
            }
            switch status {
            case 200..<300:
                self.logger.debug(
                    "ThingSpace call succeeded",
                    metadata: [
                        "thingspace.operation": "\(operation)", "thingspace.account": "\(account)", "thingspace.status": "\(status)",
                    ])
                return response
            case 401, 403:
                throw AttemptFailure(error: Self.apiError(response), disposition: .renewSignIn(session: signedIn.session))
            case 429, 500...599:
                throw .retry(Self.apiError(response), after: response.retryAfter)
            default:
                throw .fatal(Self.apiError(response))
            }
        }
    }

    // MARK: - Token and session

    /// A usable access token and session, fetching whichever has lapsed,
    /// or the outcome of the sign-in another caller has in flight.
    private func signIn() throws(AttemptFailure) -> SignedIn {
        if let refusal = state.withLock({ $0.auth.refusal }) { throw .fatal(refusal) }
        // An empty secret would only earn a failed login (one of five).
        do throws(ThingSpaceError) {
            try credentials.validate()
            try configuration.validate()
        } catch {
            throw .fatal(error)
        }
        enum Step {
            case ready(SignedIn)
            case refused(ThingSpaceError)
            case wait(SignInFlight)
            case lead(SignInFlight)
        }
        let now = clock.now
        let idleLifetime = configuration.sessionIdleLifetime
        let step = state.withLock { (shared: inout SharedState) -> Step in
            if let refusal = shared.auth.refusal { return .refused(refusal) }
            if let token = shared.auth.usableToken(at: now), let session = shared.auth.usableSession(at: now, idleLifetime: idleLifetime) {
                return .ready(SignedIn(token: token, session: session))
            }
            if let flight = shared.signIn { return .wait(flight) }
            let flight = SignInFlight()
            shared.signIn = flight
            return .lead(flight)
        }
        switch step {
        case let .ready(signedIn):
            return signedIn
        case let .refused(refusal):
            throw .fatal(refusal)
        case let .wait(flight):
            return try flight.wait().get()
        case let .lead(flight):
            let outcome: Result<SignedIn, AttemptFailure>
            do throws(AttemptFailure) {
                outcome = .success(try signInNow())
            } catch {
                outcome = .failure(error)
            }
            state.withLock { $0.signIn = nil }
            flight.finish(outcome)
            return try outcome.get()
        }
    }

    /// The sign-in itself, by the flight's leader only: no other caller
    /// fetches a token or logs in meanwhile.
    private func signInNow() throws(AttemptFailure) -> SignedIn {
        let token = try usableOrFreshToken()
        let idleLifetime = configuration.sessionIdleLifetime
        let now = clock.now
        if let session = state.withLock({ $0.auth.usableSession(at: now, idleLifetime: idleLifetime) }) {
            return SignedIn(token: token, session: session)
        }
        switch try openSession(token: token) {
        case let .opened(session):
            return SignedIn(token: token, session: session)
        case .gatewayRefusedToken:
            // The gateway refused the token before the login backend saw the
            // request (not a failed login): one fresh token, one more login.
            logger.notice("ThingSpace gateway refused the access token at login; fetching a new one")
            state.withLock { $0.auth.tokenRejected() }
            let freshToken = try usableOrFreshToken()
            switch try openSession(token: freshToken) {
            case let .opened(session): return SignedIn(token: freshToken, session: session)
            case let .gatewayRefusedToken(error): throw .fatal(error)
            }
        }
    }

    private func usableOrFreshToken() throws(AttemptFailure) -> String {
        let now = clock.now
        if let token = state.withLock({ $0.auth.usableToken(at: now) }) { return token }
        return try fetchToken()
    }

    /// `POST /ts/v1/oauth2/token` with the client credentials.
    private func fetchToken() throws(AttemptFailure) -> String {
        let basic = Data("\(credentials.clientID):\(credentials.clientSecret)".utf8).base64EncodedString()
        let request = CurlHTTPClient.Request(
            method: .post, url: url("/ts/v1/oauth2/token"),
            headers: [
                (name: "Accept", value: "application/json"),
                (name: "Authorization", value: "Basic \(basic)"),
                (name: "Content-Type", value: "application/x-www-form-urlencoded"),
            ],
            body: Array("grant_type=client_credentials".utf8)
        )
        let requestedAt = clock.now
        let response = try send(request)
        switch response.status {
        case 200..<300:
            guard let token = try? JSONDecoder().decode(OAuthToken.self, from: Data(response.body)), !token.accessToken.isEmpty else {
                throw .fatal(.invalidResponse("the OAuth token answer (HTTP \(response.status)) has no access_token"))
            }
            let lifetime = token.expiresIn.map { Duration.seconds($0) } ?? configuration.defaultTokenLifetime
            let fetched = AuthState.AccessToken(
                value: token.accessToken, renewAt: requestedAt + lifetime - configuration.tokenRenewalMargin)
            state.withLock { $0.auth.tokenFetched(fetched) }
            logger.info(
                "ThingSpace access token fetched",
                metadata: [
                    "thingspace.expires_in": "\(token.expiresIn.map(String.init) ?? "unknown")"
                ])
            return token.accessToken
        case 400, 401, 403:
            throw refuse(.oauthClient, response)
        case 500...599:
            throw .retry(Self.apiError(response), after: response.retryAfter)
        default:
            throw .fatal(Self.apiError(response))
        }
    }

    /// `POST /m2m/v1/session/login` with the UWS username and password.
    private func openSession(token: String) throws(AttemptFailure) -> LoginOutcome {
        let login = SessionLoginRequest(username: credentials.username, password: credentials.password)
        guard let body = try? Self.encoder.encode(login) else {
            throw .fatal(.invalidArgument("the session login could not be encoded as JSON"))
        }
        let request = CurlHTTPClient.Request(
            method: .post, url: url("/m2m/v1/session/login"),
            headers: [
                (name: "Accept", value: "application/json"),
                (name: "Authorization", value: "Bearer \(token)"),
                (name: "Content-Type", value: "application/json"),
            ],
            body: Array(body)
        )
        let response = try send(request)
        switch response.status {
        case 200..<300:
            guard let session = try? JSONDecoder().decode(SessionToken.self, from: Data(response.body)), !session.sessionToken.isEmpty
            else {
                throw .fatal(.invalidResponse("the session login answer (HTTP \(response.status)) has no sessionToken"))
            }
            let now = clock.now
            state.withLock { $0.auth.sessionOpened(session.sessionToken, at: now) }
            logger.info("ThingSpace session opened", metadata: ["thingspace.username": "\(credentials.username)"])
            return .opened(session.sessionToken)
        case 401 where ErrorDetail.parse(response.body).isGatewayFault:
            return .gatewayRefusedToken(Self.apiError(response))
        case 400, 401, 403:
            throw refuse(.sessionLogin, response)
        case 500...599:
            throw .retry(Self.apiError(response), after: response.retryAfter)
        default:
            throw .fatal(Self.apiError(response))
        }
    }

    /// Latches a refused login: the client will not try that login again.
    private func refuse(_ kind: ThingSpaceCredentialKind, _ response: CurlHTTPClient.Response) -> AttemptFailure {
        let detail = ErrorDetail.parse(response.body)
        let error = ThingSpaceError.invalidCredentials(
            kind: kind, status: response.status, errorCode: detail.errorCode, errorMessage: detail.errorMessage)
        state.withLock { $0.auth.refused(error) }
        logger.critical(
            "ThingSpace refused the login; no further login will be attempted",
            metadata: [
                "thingspace.credentials": "\(kind.rawValue)", "thingspace.status": "\(response.status)",
                "thingspace.error_code": "\(detail.errorCode ?? "")",
            ])
        return .fatal(error)
    }

    // MARK: - Helpers

    private func send(_ request: CurlHTTPClient.Request) throws(AttemptFailure) -> CurlHTTPClient.Response {
        do throws(CurlTransportError) {
            return try http.send(request)
        } catch {
            if error.kind == .invalidRequest { throw .fatal(.invalidArgument(error.message)) }
            throw .retry(.network(error.message))
        }
    }

    private func url(_ path: String) -> String { configuration.normalizedBaseURL + path }

    private func apiHeaders(_ token: String, _ session: String) -> [(name: String, value: String)] {
        [
            (name: "Accept", value: "application/json"),
            (name: "Authorization", value: "Bearer \(token)"),
            (name: "VZ-M2M-Token", value: session),
        ]
    }

    private func checkAccountName(_ accountName: String) throws(ThingSpaceError) {
        try configuration.validate()
        guard isValidPathSegment(accountName) else {
            throw .invalidArgument("the account name '\(accountName)' is empty or contains a control character")
        }
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    static func apiError(_ response: CurlHTTPClient.Response) -> ThingSpaceError {
        let detail = ErrorDetail.parse(response.body)
        return .api(status: response.status, errorCode: detail.errorCode, errorMessage: detail.errorMessage)
    }

    /// The List answer: an empty body (or `null`) means no callbacks.
    static func decodeList(_ body: [UInt8]) throws(ThingSpaceError) -> [ConnectivityManagementCallback] {
        if body.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) { return [] }
        if let callbacks = try? JSONDecoder().decode([ConnectivityManagementCallback].self, from: Data(body)) {
            return callbacks
        }
        if (try? JSONDecoder().decode(JSONNull.self, from: Data(body))) != nil { return [] }
        throw .invalidResponse("the List answer is not a JSON array of callbacks (\(body.count) bytes)")
    }

    /// A Register/Deregister answer; an empty 2xx body yields `fallback`.
    static func decodeActionResult(_ body: [UInt8], fallback: CallbackActionResult) throws(ThingSpaceError) -> CallbackActionResult {
        if body.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) { return fallback }
        guard let result = try? JSONDecoder().decode(CallbackActionResult.self, from: Data(body)) else {
            throw .invalidResponse("the answer is not a CallbackActionResult JSON object (\(body.count) bytes)")
        }
        return result
    }
}

private enum LoginOutcome {
    case opened(String)
    /// The gateway refused the access token (fault form): the login itself
    /// was never judged, so it is not a failed login.
    case gatewayRefusedToken(ThingSpaceError)
}

/// Decodes only the JSON literal `null`.
private struct JSONNull: Decodable {
    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        guard container.decodeNil() else {
            throw DecodingError.typeMismatch(JSONNull.self, .init(codingPath: [], debugDescription: "not null"))
        }
    }
}

/// A token and a session to call with.
private struct SignedIn: Sendable {
    var token: String
    var session: String
}

/// One sign-in in progress: its leader performs it; every caller that needs
/// a token meanwhile blocks in `wait()` (holding no lock) and gets the same
/// outcome, success or failure.
private final class SignInFlight: Sendable {
    private let done = DispatchGroup()
    private let outcome = Mutex<Result<SignedIn, AttemptFailure>?>(nil)

    init() { done.enter() }

    /// Once, by the leader, after the flight has left the shared state.
    func finish(_ result: Result<SignedIn, AttemptFailure>) {
        outcome.withLock { $0 = result }
        done.leave()
    }

    func wait() -> Result<SignedIn, AttemptFailure> {
        done.wait()
        return outcome.withLock { $0 }!
    }
}
