import ArgumentParser
import Foundation
import Vocabulary

/// UTC milliseconds → `2026-11-22T03:50:18.123Z` (ISO 8601) or, for tables, `2026-11-22 03:50:18`.
func formatTimestamp(_ milliseconds: Int64, iso: Bool = false) -> String {
    let text = Timekeeping.iso8601(milliseconds: milliseconds)
    guard !iso else { return text }
    return text.prefix(10) + " " + text.dropFirst(11).prefix(8)
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
