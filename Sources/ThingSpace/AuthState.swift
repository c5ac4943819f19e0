// What the client holds to call the Connectivity Callbacks API, as an
// explicit state machine. The access token and the session lapse
// independently (token: expires_in; session: idle time), so each is held
// on its own; a refused login ends the machine for good.
//
// Calls run concurrently, so a change caused by one call's answer names the
// session that call used: a stale answer must not undo a newer sign-in.
//
//   active(token?, session?) ──tokenFetched / sessionOpened / sessionUsed──▶ active
//   active ──signInRejected (401/403 from a call)──▶ active(nil, nil)
//            (signInRejected(session:) only while that session is still held)
//   active ──tokenRejected (gateway fault at login)──▶ active(nil, session)
//   active ──sessionClosed (logout)──▶ active(token, nil)
//   active ──refused (login refused for its credentials)──▶ refused   (terminal)

struct AuthState {
    struct AccessToken {
        var value: String
        /// When to fetch a new one: expiry minus the renewal margin.
        var renewAt: ContinuousClock.Instant
    }

    struct Session {
        var value: String
        var lastUsed: ContinuousClock.Instant
    }

    enum Phase {
        case active(token: AccessToken?, session: Session?)
        /// A login was refused for its credentials: never log in again
        /// (five failed session logins lock the account).
        case refused(ThingSpaceError)
    }

    private(set) var phase: Phase = .active(token: nil, session: nil)

    var refusal: ThingSpaceError? {
        if case let .refused(error) = phase { return error }
        return nil
    }

    var hasSession: Bool {
        if case .active(_, .some) = phase { return true }
        return false
    }

    func usableToken(at now: ContinuousClock.Instant) -> String? {
        guard case let .active(token?, _) = phase, now < token.renewAt else { return nil }
        return token.value
    }

    func usableSession(at now: ContinuousClock.Instant, idleLifetime: Duration) -> String? {
        guard case let .active(_, session?) = phase, now - session.lastUsed < idleLifetime else { return nil }
        return session.value
    }

    /// The session held, however long unused (for logout).
    var anySession: String? {
        if case let .active(_, session?) = phase { return session.value }
        return nil
    }

    mutating func tokenFetched(_ token: AccessToken) {
        guard case let .active(_, session) = phase else { return }
        phase = .active(token: token, session: session)
    }

    mutating func sessionOpened(_ value: String, at now: ContinuousClock.Instant) {
        guard case let .active(token, _) = phase else { return }
        phase = .active(token: token, session: Session(value: value, lastUsed: now))
    }

    mutating func sessionUsed(at now: ContinuousClock.Instant) {
        guard case .active(let token, var session?) = phase else { return }
        session.lastUsed = now
        phase = .active(token: token, session: session)
    }

    /// A call made with session `value` was answered: it is still alive
    /// (ignored if another session has replaced it since).
    mutating func sessionUsed(_ value: String, at now: ContinuousClock.Instant) {
        guard case .active(let token, var session?) = phase, session.value == value, now > session.lastUsed else { return }
        session.lastUsed = now
        phase = .active(token: token, session: session)
    }

    /// The gateway refused the access token: fetch a new one, keep the session.
    mutating func tokenRejected() {
        guard case let .active(_, session) = phase else { return }
        phase = .active(token: nil, session: session)
    }

    /// A call was refused (401/403): fetch a new token and open a new session.
    mutating func signInRejected() {
        guard case .active = phase else { return }
        phase = .active(token: nil, session: nil)
    }

    /// A call made with `session` was refused: as `signInRejected()`, unless
    /// that session is no longer held (another call already signed in anew).
    mutating func signInRejected(session: String) {
        guard anySession == session else { return }
        signInRejected()
    }

    mutating func sessionClosed() {
        guard case let .active(token, _) = phase else { return }
        phase = .active(token: token, session: nil)
    }

    mutating func refused(_ error: ThingSpaceError) {
        phase = .refused(error)
    }
}
