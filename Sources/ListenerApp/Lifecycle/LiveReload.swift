// SIGHUP: what can change without a restart. Reloads run one at a time
// (ProcessSignals serialises them); anything that needs a restart is named.
import Foundation
import Logging
import Vocabulary

final class LiveReload: Sendable {
    private let running: ListenerConfiguration
    private let read: @Sendable () async throws(ConfigurationError) -> ListenerConfiguration
    private let handler: StartedValue<CallbackHandler>
    private let registrar: RegistrarPart
    private let delivery: DeliveryPart
    private let logLevel: LogLevelControl?
    private let notifier: SystemdNotifier
    private let logger: Logger

    init(
        running: ListenerConfiguration, read: @escaping @Sendable () async throws(ConfigurationError) -> ListenerConfiguration,
        handler: StartedValue<CallbackHandler>, registrar: RegistrarPart, delivery: DeliveryPart, logLevel: LogLevelControl?,
        notifier: SystemdNotifier,
        logger: Logger
    ) {
        self.running = running
        self.read = read
        self.handler = handler
        self.registrar = registrar
        self.delivery = delivery
        self.logLevel = logLevel
        self.notifier = notifier
        self.logger = logger
    }

    /// Callback credentials, the allow-list, trusted proxies, the log level,
    /// `thingspace.deregisterOnShutdown` and the delivery destinations change live
    /// (and every destination a 410 disabled is enabled again). While registered
    /// with ThingSpace, new callback credentials wait for a restart:
    /// ThingSpace sends what was registered, and refusing it would lose its callbacks.
    func reload() async {
        guard let handler = handler.current else { return }  // not serving yet
        notifier.notify("RELOADING=1\nMONOTONIC_USEC=\(Timekeeping.monotonicMicroseconds())")
        defer { notifier.notify("READY=1") }
        let fresh: ListenerConfiguration
        do {
            fresh = try await read()
        } catch {
            logger.error("reload refused, keeping the running configuration: \(error)")
            return
        }
        let old = running
        var policy = IntakePolicy(fresh.callbacks)
        policy.services = old.callbacks.services  // what is registered and counted
        var needRestart: [String] = []
        let registered = registrar.registrar.current != nil
        if registered && (fresh.callbacks.username != old.callbacks.username || fresh.callbacks.password != old.callbacks.password) {
            policy.username = old.callbacks.username
            policy.password = old.callbacks.password
            needRestart.append("callbacks.username/password (registered with ThingSpace; keep the old one as callbacks.previousPassword)")
        }
        handler.update(policy: policy)
        logLevel?.level = fresh.logging.level
        registrar.registrar.current?.setDeregisterOnShutdown(fresh.thingspace.deregisterOnShutdown)
        await delivery.reconfigure(fresh.delivery.destinations)

        let t = (old: old.thingspace, new: fresh.thingspace)
        let changed: [(String, Bool)] = [
            ("http.host/port", fresh.http.host != old.http.host || fresh.http.port != old.http.port),
            ("http.pathPrefix", fresh.http.pathPrefix != old.http.pathPrefix),
            ("http limits and timeouts", "\(fresh.http)" != "\(old.http)"),
            ("storage.*", "\(fresh.storage)" != "\(old.storage)"),
            ("callbacks.services", fresh.callbacks.services != old.callbacks.services),
            (
                "thingspace.* (other than deregisterOnShutdown)",
                t.new.baseURL != t.old.baseURL || t.new.accountName != t.old.accountName || t.new.clientID != t.old.clientID
                    || t.new.clientSecret != t.old.clientSecret || t.new.username != t.old.username || t.new.password != t.old.password
                    || t.new.callbackBaseURL != t.old.callbackBaseURL || t.new.register != t.old.register || t.new.sandbox != t.old.sandbox
            ),
            ("logging.format", fresh.logging.format != old.logging.format),
            (
                "api.*",
                fresh.api.enabled != old.api.enabled || fresh.api.host != old.api.host || fresh.api.port != old.api.port
                    || fresh.api.tokens != old.api.tokens
            ),
            (
                "admin.*",
                fresh.admin.enabled != old.admin.enabled || fresh.admin.host != old.admin.host || fresh.admin.port != old.admin.port
            ),
        ]
        needRestart += changed.filter(\.1).map(\.0)
        logger.notice(
            "configuration reloaded: callback credentials, allowed sources, trusted proxies, log level, deregisterOnShutdown and delivery destinations are live",
            metadata: needRestart.isEmpty ? [:] : ["reload.restart_needed_for": "\(needRestart.joined(separator: "; "))"]
        )
    }
}
