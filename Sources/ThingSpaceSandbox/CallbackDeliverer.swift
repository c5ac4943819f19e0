// Delivers sample callbacks to registered listeners the way ThingSpace
// does: POST with the registered username/password in the body; an answer
// that is not 2xx, or slower than `deliveryTimeout`, is resent after
// `resendInterval` with `callbackCount` + 1, up to `maxCallbackThreshold`
// attempts. Every attempt goes to the listener registered at that moment;
// with none registered the callback is lost (as observed on ThingSpace).
import Dispatch
import Foundation
import HTTPClient
import Logging
import Synchronization
import ThingSpace

final class CallbackDeliverer: Sendable {
    static let userAgent = "Verizon's callback service"

    /// One callback: its attempts share the request id and the body template.
    struct Message: Sendable {
        var accountName: String
        var serviceName: String
        var template: String
        var requestId: String
    }

    private struct Control {
        var stopped = false
        /// Bumped on every (de)registration of a service: stale sample loops stop.
        var generations: [String: UInt64] = [:]
        var sampleCounter = 0
    }

    private let configuration: SandboxConfiguration
    private let http: CurlHTTPClient
    private let queue = DispatchQueue(label: "thingspace-sandbox.delivery")
    private let logger: Logger
    private let control = Mutex(Control())
    private let currentRegistration: @Sendable (_ accountName: String, _ serviceName: String) -> SandboxRegistration?
    private let record: @Sendable (SandboxDelivery) -> Void

    init(
        configuration: SandboxConfiguration, logger: Logger,
        currentRegistration: @escaping @Sendable (String, String) -> SandboxRegistration?,
        record: @escaping @Sendable (SandboxDelivery) -> Void
    ) {
        self.configuration = configuration
        self.logger = logger
        self.currentRegistration = currentRegistration
        self.record = record
        self.http = CurlHTTPClient(
            connectTimeout: min(configuration.deliveryTimeout, .seconds(10)), totalTimeout: configuration.deliveryTimeout,
            maxResponseBytes: 64 * 1024)
    }

    func stop() {
        control.withLock { $0.stopped = true }
    }

    /// Follows the API: a registration starts a sample loop (if enabled);
    /// a deregistration ends it.
    func apply(_ event: RegistrationEvent) {
        switch event {
        case let .registered(registration):
            let key = SandboxState.key(registration.accountName, registration.serviceName)
            let generation = bumpGeneration(key)
            guard configuration.deliverSamples else { return }
            queue.async { self.sampleTick(registration.accountName, registration.serviceName, generation: generation) }
        case let .deregistered(accountName, serviceName):
            bumpGeneration(SandboxState.key(accountName, serviceName))
        }
    }

    /// Queues one sample callback for the service's listener; false if none is registered.
    func deliverSample(accountName: String, serviceName: String) -> Bool {
        guard currentRegistration(accountName, serviceName) != nil else { return false }
        let message = makeMessage(accountName, serviceName)
        queue.async { self.attempt(message, callbackCount: 1) }
        return true
    }

    // MARK: - On the delivery queue

    private func sampleTick(_ accountName: String, _ serviceName: String, generation: UInt64) {
        let key = SandboxState.key(accountName, serviceName)
        let current = control.withLock { !$0.stopped && $0.generations[key] == generation }
        guard current else { return }
        attempt(makeMessage(accountName, serviceName), callbackCount: 1)
        if let interval = configuration.sampleInterval {
            queue.asyncAfter(deadline: .now() + interval.dispatchInterval) {
                self.sampleTick(accountName, serviceName, generation: generation)
            }
        }
    }

    private func attempt(_ message: Message, callbackCount: Int) {
        guard !control.withLock({ $0.stopped }) else { return }
        let metadata: Logger.Metadata = [
            "callback.service": "\(message.serviceName)", "callback.request_id": "\(message.requestId)",
            "callback.count": "\(callbackCount)",
        ]
        guard let listener = currentRegistration(message.accountName, message.serviceName) else {
            logger.info("Sandbox callback lost: no listener registered", metadata: metadata)
            return
        }
        let body = SampleCallbacks.body(
            template: message.template, username: listener.username, password: listener.password,
            requestId: message.requestId, callbackCount: callbackCount,
            maxCallbackThreshold: configuration.maxCallbackThreshold)
        let request = CurlHTTPClient.Request(
            method: .post, url: listener.url,
            headers: [(name: "Content-Type", value: "application/json"), (name: "User-Agent", value: Self.userAgent)],
            body: body)
        let outcome: SandboxDelivery.Outcome
        do {
            outcome = .status(try http.send(request).status)
        } catch {
            outcome = error.kind == .timedOut ? .timedOut : .failed(error.message)
        }
        let delivery = SandboxDelivery(
            accountName: message.accountName, serviceName: message.serviceName, url: listener.url,
            requestId: message.requestId, callbackCount: callbackCount, body: body, outcome: outcome)
        record(delivery)
        if delivery.acknowledged {
            logger.info("Sandbox callback delivered", metadata: metadata.merging(["callback.outcome": "\(outcome)"]) { $1 })
            return
        }
        guard callbackCount < configuration.maxCallbackThreshold else {
            logger.warning(
                "Sandbox callback not acknowledged; giving up (archived)",
                metadata: metadata.merging(["callback.outcome": "\(outcome)"]) { $1 })
            return
        }
        logger.notice(
            "Sandbox callback not acknowledged; will resend",
            metadata: metadata.merging(["callback.outcome": "\(outcome)"]) { $1 })
        queue.asyncAfter(deadline: .now() + configuration.resendInterval.dispatchInterval) {
            self.attempt(message, callbackCount: callbackCount + 1)
        }
    }

    // MARK: - Helpers

    @discardableResult
    private func bumpGeneration(_ key: String) -> UInt64 {
        control.withLock { control in
            let next = (control.generations[key] ?? 0) &+ 1
            control.generations[key] = next
            return next
        }
    }

    private func makeMessage(_ accountName: String, _ serviceName: String) -> Message {
        let templates = configuration.sampleTemplates[serviceName].flatMap { $0.isEmpty ? nil : $0 } ?? [SampleCallbacks.generic]
        let index = control.withLock { control in
            defer { control.sampleCounter &+= 1 }
            return control.sampleCounter
        }
        return Message(
            accountName: accountName, serviceName: serviceName,
            template: templates[index % templates.count], requestId: UUID().uuidString.lowercased())
    }
}

extension Duration {
    var dispatchInterval: DispatchTimeInterval {
        let (seconds, attoseconds) = components
        let nanoseconds = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        guard !nanoseconds.overflow, seconds >= 0 else { return seconds < 0 ? .nanoseconds(0) : .never }
        return .nanoseconds(Int(nanoseconds.partialValue + attoseconds / 1_000_000_000))
    }
}
