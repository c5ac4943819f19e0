// Every clock reading and time conversion in one place: the wall clock in
// milliseconds (what the store keeps), the monotonic clock in microseconds
// (what systemd reads), durations in whole units, and ISO 8601 text of epoch
// milliseconds (log lines, export, `--since`). No Foundation: the intake reads
// the clock for every request, and the text is computed, not formatted.

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

public enum Timekeeping {
    // MARK: Clocks

    /// The wall clock: UTC milliseconds since the Unix epoch (`CLOCK_REALTIME`, vDSO, no system call).
    public static func wallClockMilliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }

    /// The monotonic clock in microseconds (`CLOCK_MONOTONIC`, as sd_notify's `MONOTONIC_USEC` wants).
    public static func monotonicMicroseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1000
    }

    // MARK: ISO 8601

    /// UTC milliseconds since the epoch as ISO 8601 with millisecond precision:
    /// `1795319418123` → `2026-11-22T03:50:18.123Z`. Years 0...9999.
    public static func iso8601(milliseconds: Int64) -> String {
        let (days, millisecondOfDay) = floorDivision(milliseconds, 86_400_000)
        let (year, month, day) = civilDate(daysSinceEpoch: days)
        let seconds = millisecondOfDay / 1000
        var text: [UInt8] = []
        text.reserveCapacity(24)
        appendDigits(year, count: 4, to: &text)
        text.append(UInt8(ascii: "-"))
        appendDigits(month, count: 2, to: &text)
        text.append(UInt8(ascii: "-"))
        appendDigits(day, count: 2, to: &text)
        text.append(UInt8(ascii: "T"))
        appendDigits(seconds / 3600, count: 2, to: &text)
        text.append(UInt8(ascii: ":"))
        appendDigits(seconds / 60 % 60, count: 2, to: &text)
        text.append(UInt8(ascii: ":"))
        appendDigits(seconds % 60, count: 2, to: &text)
        text.append(UInt8(ascii: "."))
        appendDigits(millisecondOfDay % 1000, count: 3, to: &text)
        text.append(UInt8(ascii: "Z"))
        return String(decoding: text, as: UTF8.self)
    }

    /// An ISO 8601 time as UTC milliseconds since the epoch, or nil when the
    /// text is not one. Accepted: a date (`2026-11-22`, midnight UTC), or a
    /// date and time with seconds and optional fraction and a zone
    /// (`2026-11-22T03:50:18Z`, `2026-11-22T03:50:18.123+02:00`; `+0200` and
    /// `+02` too). Digits of a fraction beyond milliseconds are dropped.
    /// Fields must be whole (two-digit month, valid day of that month); text
    /// after the time is refused.
    public static func milliseconds(iso8601 text: String) -> Int64? {
        var reader = DigitReader(Array(text.utf8))
        guard let year = reader.digits(4), reader.skip("-"), let month = reader.digits(2), reader.skip("-"),
            let day = reader.digits(2), (1...12).contains(month), (1...daysIn(month: month, year: year)).contains(day)
        else { return nil }
        let days = daysSinceEpoch(year: year, month: month, day: day)
        if reader.atEnd { return days * 86_400_000 }

        guard reader.skip("T"), let hour = reader.digits(2), reader.skip(":"), let minute = reader.digits(2),
            reader.skip(":"), let second = reader.digits(2), minute < 60, second < 60,
            hour < 24 || (hour == 24 && minute == 0 && second == 0)
        else { return nil }
        var millisecond: Int64 = 0
        if reader.skip(".") {
            var count = 0
            while let digit = reader.digit() {
                if count < 3 { millisecond = millisecond * 10 + digit }
                count += 1
            }
            guard count > 0 else { return nil }
            while count < 3 {
                millisecond *= 10
                count += 1
            }
        }
        var offsetMinutes: Int64 = 0
        if !reader.skip("Z") {
            let sign: Int64
            if reader.skip("+") { sign = 1 } else if reader.skip("-") { sign = -1 } else { return nil }
            guard let hours = reader.digits(2), hours < 24 else { return nil }
            var minutes: Int64 = 0
            if !reader.atEnd {
                _ = reader.skip(":")
                guard let value = reader.digits(2), value < 60 else { return nil }
                minutes = value
            }
            offsetMinutes = sign * (hours * 60 + minutes)
        }
        guard reader.atEnd else { return nil }
        let secondsOfDay = hour * 3600 + minute * 60 + second - offsetMinutes * 60
        return (days * 86_400 + secondsOfDay) * 1000 + millisecond
    }

    // MARK: Calendar (proleptic Gregorian, after Howard Hinnant's civil-from-days)

    private static func floorDivision(_ value: Int64, _ divisor: Int64) -> (quotient: Int64, remainder: Int64) {
        let (quotient, remainder) = value.quotientAndRemainder(dividingBy: divisor)
        return remainder < 0 ? (quotient - 1, remainder + divisor) : (quotient, remainder)
    }

    private static func civilDate(daysSinceEpoch days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let shifted = days + 719_468  // days since 0000-03-01
        let era = floorDivision(shifted, 146_097).quotient
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153  // March is 0
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    private static func daysSinceEpoch(year: Int64, month: Int64, day: Int64) -> Int64 {
        let marchYear = month <= 2 ? year - 1 : year
        let era = floorDivision(marchYear, 400).quotient
        let yearOfEra = marchYear - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    private static func daysIn(month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2: return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    private static func appendDigits(_ value: Int64, count: Int, to text: inout [UInt8]) {
        var divisor: Int64 = 1
        for _ in 1..<count { divisor *= 10 }
        var rest = value
        while divisor > 0 {
            text.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: rest / divisor % 10))
            rest %= divisor
            divisor /= 10
        }
    }
}

/// Reads fixed-width decimal fields and literal bytes from ASCII text.
private struct DigitReader {
    private let bytes: [UInt8]
    private var index = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var atEnd: Bool { index == bytes.count }

    mutating func skip(_ byte: Unicode.Scalar) -> Bool {
        guard index < bytes.count, bytes[index] == UInt8(ascii: byte) else { return false }
        index += 1
        return true
    }

    mutating func digit() -> Int64? {
        guard index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") else { return nil }
        defer { index += 1 }
        return Int64(bytes[index] - UInt8(ascii: "0"))
    }

    /// Exactly `count` digits.
    mutating func digits(_ count: Int) -> Int64? {
        let start = index
        var value: Int64 = 0
        for _ in 0..<count {
            guard let digit = digit() else {
                index = start
                return nil
            }
            value = value * 10 + digit
        }
        return value
    }
}

extension Duration {
    /// Whole milliseconds, truncated toward zero, saturating at the bounds of `Int64`.
    public var inMilliseconds: Int64 { wholeUnits(per: 1000) }

    /// Whole microseconds, truncated toward zero, saturating at the bounds of `Int64`.
    public var inMicroseconds: Int64 { wholeUnits(per: 1_000_000) }

    /// Whole nanoseconds, truncated toward zero, saturating at the bounds of `Int64`.
    public var inNanoseconds: Int64 { wholeUnits(per: 1_000_000_000) }

    /// The duration in seconds, as a `Double`.
    public var inSeconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    /// `units` to the second; attoseconds have the same sign as seconds.
    private func wholeUnits(per units: Int64) -> Int64 {
        let (seconds, attoseconds) = components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: units)
        let (sum, overflowAgain) = whole.addingReportingOverflow(attoseconds / (1_000_000_000_000_000_000 / units))
        if overflow || overflowAgain { return seconds < 0 ? .min : .max }
        return sum
    }
}
