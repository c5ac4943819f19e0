import Foundation
import JSON
import Logging
import Synchronization
import Vocabulary

/// Log lines on stderr: readable text (with a `<N>` syslog priority prefix
/// when journald reads the stream, so `journalctl -p` works) or JSON lines.
public struct ListenerLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    /// The bootstrap's level (a reload changes it for every logger), until
    /// this logger is given one of its own.
    public var logLevel: Logger.Level {
        get { ownLevel ?? defaultLevel.level }
        set { ownLevel = newValue }
    }
    private let defaultLevel: LogLevelControl
    private var ownLevel: Logger.Level?
    private let label: String
    private let format: ListenerConfiguration.LogFormat
    private let journald: Bool
    private let output: LogOutput

    public init(
        label: String, format: ListenerConfiguration.LogFormat, level: LogLevelControl,
        journald: Bool = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil,
        output: LogOutput = .standardError
    ) {
        self.label = label
        self.format = format
        self.defaultLevel = level
        self.journald = journald
        self.output = output
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        var line: [UInt8] = []
        switch format {
        case .text:
            if journald {
                line += Array("<\(Self.syslogPriority(event.level))>".utf8)
            } else {
                line += Array("\(Self.timestamp()) ".utf8)
            }
            line += Array("\(event.level.rawValue.uppercased()) ".utf8)
            Self.appendEscaped("\(event.message)", to: &line)
            for key in merged.keys.sorted() {
                line += Array(" \(key)=".utf8)
                Self.appendEscaped("\(merged[key]!)", to: &line)
            }
        case .json:
            var json = JSONWriter(appendingTo: line)
            json.beginObject()
            json.key("time")
            json.string(Self.timestamp())
            json.key("level")
            json.string(event.level.rawValue)
            json.key("logger")
            json.string(label)
            json.key("message")
            json.string("\(event.message)")
            for key in merged.keys.sorted() {
                json.key(key)
                json.string("\(merged[key]!)")
            }
            json.endObject()
            line = json.bytes
        }
        line.append(0x0A)
        output.write(line)
    }

    /// Control characters (a request can put them in a member name that ends up in
    /// a message) are written as \n, \r or \u{XX}, so nobody can forge a log line
    /// or a journald priority prefix.
    static func appendEscaped(_ text: String, to line: inout [UInt8]) {
        for byte in text.utf8 {
            switch byte {
            case 0x0A: line += Array("\\n".utf8)
            case 0x0D: line += Array("\\r".utf8)
            case 0..<0x20, 0x7F: line += Array(String(format: "\\u{%02X}", byte).utf8)
            default: line.append(byte)
            }
        }
    }

    static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    static func timestamp() -> String {
        Timekeeping.iso8601(milliseconds: Timekeeping.wallClockMilliseconds())
    }
}

/// Where log lines go: one write(2) per line so lines from threads never interleave.
public struct LogOutput: Sendable {
    let write: @Sendable ([UInt8]) -> Void
    public init(write: @escaping @Sendable ([UInt8]) -> Void) { self.write = write }
    public static let standardError = LogOutput { line in
        line.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Foundation.write(2, bytes.baseAddress! + offset, bytes.count - offset)
                if written > 0 { offset += written } else if written < 0 && errno == EINTR { continue } else { return }
            }
        }
    }
}
