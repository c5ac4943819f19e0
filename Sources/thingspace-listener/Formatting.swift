import ArgumentParser
import Foundation

/// UTC milliseconds → `2026-11-22T03:50:18.123Z` (ISO 8601) or a shorter form for tables.
func formatTimestamp(_ milliseconds: Int64, iso: Bool = false) -> String {
    var seconds = time_t(milliseconds / 1000)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    let date = String(format: "%04d-%02d-%02d", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday))
    let clock = String(format: "%02d:%02d:%02d", Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
    return iso ? "\(date)T\(clock).\(String(format: "%03d", Int(milliseconds % 1000)))Z" : "\(date) \(clock)"
}

/// An ISO 8601 time (with or without fractional seconds, or a bare date) as UTC milliseconds.
func parseISO8601(_ text: String) -> Int64? {
    let withFraction = ISO8601DateFormatter()
    withFraction.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    let plain = ISO8601DateFormatter()
    let dateOnly = ISO8601DateFormatter()
    dateOnly.formatOptions = [.withFullDate]
    for formatter in [withFraction, plain, dateOnly] {
        if let date = formatter.date(from: text) { return Int64((date.timeIntervalSince1970 * 1000).rounded()) }
    }
    return nil
}

func renderTable(header: [String], rows: [[String]]) -> String {
    var widths = header.map(\.count)
    for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }
            .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
    }
    return ([line(header)] + rows.map(line)).joined(separator: "\n")
}

/// Writes to stdout through a 64 KiB buffer: export streams millions of lines.
/// A failed write (disk full, closed pipe) throws, so the command exits non-zero
/// instead of leaving a silently truncated export.
final class BufferedOutput {
    private var buffer: [UInt8] = []
    init() { buffer.reserveCapacity(65_536) }
    func write(_ bytes: [UInt8]) throws {
        buffer += bytes
        if buffer.count >= 65_536 { try flush() }
    }
    func flush() throws {
        defer { buffer.removeAll(keepingCapacity: true) }
        try buffer.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = Foundation.write(1, raw.baseAddress! + offset, raw.count - offset)
                if written > 0 {
                    offset += written
                } else if errno != EINTR {
                    throw ValidationError("writing the export failed: \(String(cString: strerror(errno)))")
                }
            }
        }
    }
}
