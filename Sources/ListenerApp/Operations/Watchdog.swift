import CallbackStore
import Dispatch
import Foundation
import HTTPServer
import Logging
import Synchronization

/// Pings systemd's watchdog (`WATCHDOG=1`) only while both the accept loop
/// and the store writer show progress, so a wedged process is restarted
/// instead of being kept alive by a timer that still runs.
/// The timer is set up once in `start`; the rest is immutable or behind the mutex.
final class Watchdog: @unchecked Sendable {
    private let notifier: SystemdNotifier
    private let interval: Duration
    private let progress: @Sendable () -> (server: UInt64, writer: UInt64)
    private let logger: Logger
    private let timer: any DispatchSourceTimer
    private struct Seen { var server: UInt64 = 0; var writer: UInt64 = 0; var stalledLogged = false }
    private let seen = Mutex(Seen())

    init?(notifier: SystemdNotifier, environment: [String: String], server: HTTPServer, writer: GroupCommitWriter, logger: Logger) {
        guard notifier.isActive, let interval = SystemdNotifier.watchdogInterval(environment: environment) else { return nil }
        self.notifier = notifier
        self.interval = interval
        self.progress = { (server.acceptLoopHeartbeat, writer.progressHeartbeat) }
        self.logger = logger
        self.timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "thingspace-listener.watchdog"))
    }

    func start() {
        // Check at half the interval, as sd_watchdog_enabled(3) advises.
        let period = DispatchTimeInterval.microseconds(Int(interval.components.seconds * 1_000_000 + interval.components.attoseconds / 1_000_000_000_000) / 2)
        timer.schedule(deadline: .now() + period, repeating: period)
        timer.setEventHandler { [self] in check() }
        timer.resume()
    }

    func stop() { timer.cancel() }

    private func check() {
        let now = progress()
        let healthy = seen.withLock { seen -> Bool in
            let moved = now.server != seen.server && now.writer != seen.writer
            seen.server = now.server
            seen.writer = now.writer
            if moved { seen.stalledLogged = false } else if !seen.stalledLogged {
                seen.stalledLogged = true
                logger.error("watchdog: \(now.server == seen.server ? "accept loop" : "store writer") made no progress; not pinging systemd")
            }
            return moved
        }
        if healthy { notifier.notify("WATCHDOG=1") }
    }
}
