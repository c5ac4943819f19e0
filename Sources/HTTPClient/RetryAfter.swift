// Reading `Retry-After` (RFC 9110 §10.2.3): delta-seconds or an HTTP-date
// in any of its three forms (IMF-fixdate and the obsolete RFC 850 and
// asctime forms, which recipients must still accept).
import Foundation

/// The wait a `Retry-After` value asks for, measured from `now` for a date
/// (a date already past: zero); nil when absent or not valid.
public func parseRetryAfter(_ value: String?, now: Date = Date()) -> Duration? {
    guard let value else { return nil }
    let trimmed = value.trimmingCharacters(in: .whitespaces)
    guard !trimmed.isEmpty else { return nil }
    if trimmed.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
        // More digits than an Int holds: longer than any cap.
        return .seconds(Int(trimmed) ?? Int.max)
    }
    guard let date = parseHTTPDate(trimmed) else { return nil }
    let seconds = date.timeIntervalSince(now)
    return seconds > 0 ? .seconds(seconds.rounded(.up)) : .zero
}

/// An HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`, `Sunday, 06-Nov-94 08:49:37 GMT`
/// or `Sun Nov  6 08:49:37 1994`), always UTC; nil if it is none of them.
public func parseHTTPDate(_ text: String) -> Date? {
    let fields = text.split(separator: " ", omittingEmptySubsequences: true)
    let day: Int
    let month: Int
    let year: Int
    let time: Substring
    switch fields.count {
    case 6:  // IMF-fixdate: day-name "," day month year time "GMT"
        guard fields[0].hasSuffix(","), fields[5] == "GMT", fields[1].count == 2, fields[3].count == 4,
            let d = Int(fields[1]), let m = monthNumber(fields[2]), let y = Int(fields[3])
        else { return nil }
        (day, month, year, time) = (d, m, y, fields[4])
    case 4:  // RFC 850: day-name "," day "-" month "-" 2DIGIT-year time "GMT"
        let parts = fields[1].split(separator: "-", omittingEmptySubsequences: false)
        guard fields[0].hasSuffix(","), fields[3] == "GMT", parts.count == 3, parts[0].count == 2, parts[2].count == 2,
            let d = Int(parts[0]), let m = monthNumber(parts[1]), let yy = Int(parts[2])
        else { return nil }
        // Two-digit years: 70–99 are 19xx, 00–69 are 20xx.
        (day, month, year, time) = (d, m, yy < 70 ? 2000 + yy : 1900 + yy, fields[2])
    case 5:  // asctime: day-name month day time year
        guard let m = monthNumber(fields[1]), let d = Int(fields[2]), fields[4].count == 4, let y = Int(fields[4]) else { return nil }
        (day, month, year, time) = (d, m, y, fields[3])
    default:
        return nil
    }
    let clock = time.split(separator: ":", omittingEmptySubsequences: false)
    guard clock.count == 3, clock.allSatisfy({ $0.count == 2 }),
        let hour = Int(clock[0]), let minute = Int(clock[1]), let second = Int(clock[2]),
        (0...23).contains(hour), (0...59).contains(minute), (0...60).contains(second),
        (1...31).contains(day), (1...9999).contains(year)
    else { return nil }
    let days = daysSince1970(year: year, month: month, day: day)
    return Date(timeIntervalSince1970: TimeInterval(days * 86_400 + hour * 3600 + minute * 60 + second))
}

private func monthNumber(_ name: Substring) -> Int? {
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    return months.firstIndex(of: String(name)).map { $0 + 1 }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (H. Hinnant's algorithm).
private func daysSince1970(year: Int, month: Int, day: Int) -> Int {
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yearOfEra = y - era * 400
    let shiftedMonth = (month + 9) % 12  // March = 0
    let dayOfYear = (153 * shiftedMonth + 2) / 5 + day - 1
    let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
    return era * 146_097 + dayOfEra - 719_468
}
