import CallbackStore
import Dispatch
import Foundation
import HTTPServer
import Logging
import Synchronization
import Vocabulary

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
    /// The last value of each heartbeat and when it last moved.
    private struct Seen {
        var server: UInt64 = 0
        var writer: UInt64 = 0
        var serverMoved = ContinuousClock.now
        var writerMoved = ContinuousClock.now
        var stalledLogged = false
    }
    private let seen = Mutex(Seen())
    /// Both loops tick at least twice a second when idle, so a heartbeat
    /// older than this means a loop is stuck, not merely quiet.
    private var staleAfter: Duration { max(interval / 2, .milliseconds(1500)) }

    init?(notifier: SystemdNotifier, environment: [String: String], server: HTTPServer, writer: any CallbackIntake, logger: Logger) {
        guard notifier.isActive, let interval = SystemdNotifier.watchdogInterval(environment: environment) else { return nil }
        self.notifier = notifier
        self.interval = interval
        self.progress = { (server.acceptLoopHeartbeat, writer.progressHeartbeat) }
        self.logger = logger
        self.timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "thingspace-listener.watchdog"))
    }

    func start() {
        // Check at half the interval, as sd_watchdog_enabled(3) advises.
        let period = DispatchTimeInterval.microseconds(Int(interval.inMicroseconds) / 2)
        timer.schedule(deadline: .now() + period, repeating: period)
        timer.setEventHandler { [self] in check() }
        timer.resume()
    }

    func stop() { timer.cancel() }

    private enum Verdict {
        case healthy
        case newlyStalled(String)
        case stillStalled
    }

    private func check() {
        let now = progress()
        let time = ContinuousClock.now
        let verdict = seen.withLock { seen -> Verdict in
            if now.server != seen.server {
                seen.server = now.server
                seen.serverMoved = time
            }
            if now.writer != seen.writer {
                seen.writer = now.writer
                seen.writerMoved = time
            }
            let stalled = time - seen.serverMoved > staleAfter ? "accept loop" : time - seen.writerMoved > staleAfter ? "store writer" : nil
            defer { seen.stalledLogged = stalled != nil }
            guard let stalled else { return .healthy }
            return seen.stalledLogged ? .stillStalled : .newlyStalled(stalled)
        }
        switch verdict {
        case .healthy: notifier.notify("WATCHDOG=1")
        case .newlyStalled(let part): logger.error("watchdog: the \(part) made no progress; not pinging systemd")
        case .stillStalled: break
        }
    }
}
