import Logging
import Synchronization

/// Keeps every log entry of a test (level, message, metadata, error), to check
/// what was logged and that no secret was: `lines` renders each entry with its
/// metadata and error.
public final class LogCapture: Sendable {
    public struct Entry: Sendable {
        public var label: String
        public var level: Logger.Level
        public var message: String
        public var metadata: Logger.Metadata

        /// The entry as one line, metadata sorted, for `contains` checks.
        public var line: String {
            let rendered = metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            return "\(level) \(message) \(rendered)"
        }
    }

    private let entries = Mutex<[Entry]>([])

    public init() {}

    public func logger(_ label: String = "test", level: Logger.Level = .trace) -> Logger {
        var logger = Logger(label: label) { label in CapturingLogHandler(label: label, capture: self) }
        logger.logLevel = level
        return logger
    }

    public var all: [Entry] { entries.withLock { $0 } }
    public var lines: [String] { all.map(\.line) }

    fileprivate func append(_ entry: Entry) { entries.withLock { $0.append(entry) } }
}

public struct CapturingLogHandler: LogHandler {
    let label: String
    let capture: LogCapture
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .trace

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata.merging(event.metadata ?? [:]) { $1 }
        // The event's error goes under "error"; if the metadata already has an
        // "error", under "log.error", so a line renders both and loses neither.
        if let error = event.error { merged[merged["error"] == nil ? "error" : "log.error"] = "\(error)" }
        capture.append(.init(label: label, level: event.level, message: "\(event.message)", metadata: merged))
    }
}
