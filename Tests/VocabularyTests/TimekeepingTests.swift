import Testing
import Vocabulary

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

@Suite("Clocks and time conversions")
struct TimekeepingTests {
    @Test func knownInstantsAsISO8601() {
        #expect(Timekeeping.iso8601(milliseconds: 0) == "1970-01-01T00:00:00.000Z")
        #expect(Timekeeping.iso8601(milliseconds: 1_795_319_418_123) == "2026-11-22T03:50:18.123Z")
        #expect(Timekeeping.iso8601(milliseconds: 1_712_345_678_901) == "2024-04-05T19:34:38.901Z")
        #expect(Timekeeping.iso8601(milliseconds: 951_782_400_000) == "2000-02-29T00:00:00.000Z")
        #expect(Timekeeping.iso8601(milliseconds: 253_402_300_799_999) == "9999-12-31T23:59:59.999Z")
        #expect(Timekeeping.iso8601(milliseconds: -1) == "1969-12-31T23:59:59.999Z")
        #expect(Timekeeping.iso8601(milliseconds: -62_135_596_800_000) == "0001-01-01T00:00:00.000Z")
    }

    @Test func formattingAgreesWithGmtime() {
        // Every 17 days or so over 3,000 years, at a varying time of day, against the C library.
        var milliseconds: Int64 = -62_135_596_800_000 + 12_345
        var checked = 0
        while milliseconds < 32_503_680_000_000 {
            let (quotient, remainder) = milliseconds.quotientAndRemainder(dividingBy: 1000)
            var seconds = time_t(remainder < 0 ? quotient - 1 : quotient)
            let fraction = remainder < 0 ? remainder + 1000 : remainder
            var parts = tm()
            gmtime_r(&seconds, &parts)
            let expected =
                pad(Int(parts.tm_year) + 1900, 4) + "-" + pad(Int(parts.tm_mon) + 1, 2) + "-" + pad(Int(parts.tm_mday), 2)
                + "T" + pad(Int(parts.tm_hour), 2) + ":" + pad(Int(parts.tm_min), 2) + ":" + pad(Int(parts.tm_sec), 2)
                + "." + pad(Int(fraction), 3) + "Z"
            let actual = Timekeeping.iso8601(milliseconds: milliseconds)
            if actual != expected {
                #expect(actual == expected, "at \(milliseconds) ms")
                break
            }
            checked += 1
            milliseconds += 86_400_000 * 17 + 3_723_001
        }
        #expect(checked > 60_000)
    }

    @Test func parsesWhatTheCLIAccepts() {
        let cases: [(String, Int64)] = [
            ("2026-11-22T03:50:18.123Z", 1_795_319_418_123),
            ("2026-11-22T03:50:18Z", 1_795_319_418_000),
            ("2026-11-22", 1_795_305_600_000),
            ("2026-11-22T03:50:18.1Z", 1_795_319_418_100),
            ("2026-11-22T03:50:18.12345Z", 1_795_319_418_123),
            ("2026-11-22T03:50:18.9999Z", 1_795_319_418_999),
            ("2026-11-22T03:50:18+02:00", 1_795_312_218_000),
            ("2026-11-22T03:50:18.5-05:30", 1_795_339_218_500),
            ("2026-11-22T03:50:18+0200", 1_795_312_218_000),
            ("2026-11-22T03:50:18+02", 1_795_312_218_000),
            ("2026-11-22T03:50:18-00:00", 1_795_319_418_000),
            ("2026-11-22T24:00:00Z", 1_795_392_000_000),
            ("1969-12-31T23:59:59.999Z", -1),
            ("0001-01-01", -62_135_596_800_000),
            ("2024-02-29", 1_709_164_800_000),
        ]
        for (text, expected) in cases {
            #expect(Timekeeping.milliseconds(iso8601: text) == expected, "\(text)")
        }
    }

    @Test(arguments: [
        "", "yesterday", "2026-13-01", "2026-02-30", "2023-02-29", "2026-11-22T03:50:18", "2026-11-22 03:50:18Z",
        "2026-11-22t03:50:18z", "2026-11-22T03:50Z", "20261122", "2026-1-2", "2026-11-22x", "2026-11-22T",
        "2026-11-22T03:50:18Zjunk", "2026-11-22T03:50:18.Z", "2026-11-22T23:59:60Z", "2026-11-22T24:00:01Z",
        " 2026-11-22", "+2026-11-22", "2026-11-22T03:50:18+2", "2026-11-22T03:50:18+02:", "2026-11-22Z",
    ])
    func refusesWhatIsNotAnISO8601Time(text: String) {
        #expect(Timekeeping.milliseconds(iso8601: text) == nil)
    }

    @Test func formattingAndParsingRoundTrip() {
        for milliseconds: Int64 in [0, 1, 999, 1000, 86_399_999, 1_795_319_418_123, -1, -86_400_001, 253_402_300_799_999] {
            #expect(Timekeeping.milliseconds(iso8601: Timekeeping.iso8601(milliseconds: milliseconds)) == milliseconds)
        }
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<2000 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let milliseconds = Int64(state >> 20) % 253_402_300_800_000
            #expect(Timekeeping.milliseconds(iso8601: Timekeeping.iso8601(milliseconds: milliseconds)) == milliseconds)
        }
    }

    @Test func clocksReadTheSystemClocks() {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let wall = Timekeeping.wallClockMilliseconds()
        #expect(abs(wall - (Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000)) < 5_000)
        let first = Timekeeping.monotonicMicroseconds()
        let second = Timekeeping.monotonicMicroseconds()
        #expect(first > 0 && second >= first)
    }

    @Test func durationsInWholeUnits() {
        let duration = Duration.seconds(2) + .microseconds(3_456)
        #expect(duration.inMilliseconds == 2_003)
        #expect(duration.inMicroseconds == 2_003_456)
        #expect(duration.inNanoseconds == 2_003_456_000)
        #expect(duration.inSeconds == 2.003456)
        #expect(Duration.zero.inMilliseconds == 0)
        #expect(Duration.milliseconds(-1_500).inMilliseconds == -1_500)
        #expect(Duration.nanoseconds(-1).inMicroseconds == 0)
        #expect(Duration.milliseconds(1_500).inSeconds == 1.5)
        // Saturating, not trapping.
        #expect(Duration.seconds(Int64.max).inNanoseconds == .max)
        #expect(Duration.seconds(Int64.min).inMilliseconds == .min)
        #expect(Duration.milliseconds(Int64.max / 2).inMilliseconds == Int64.max / 2)
    }
}

private func pad(_ value: Int, _ width: Int) -> String {
    let digits = String(value)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
}

@Suite("Shared values")
struct SharedValuesTests {
    @Test func redactionMarker() {
        #expect(Redaction.marker == "<redacted>")
    }

    @Test func deviceIDKeepsItsFieldsAsReceived() {
        let device = DeviceID(id: "990003425730535", kind: "IMEI")
        #expect(device.id == "990003425730535")
        #expect(device.kind == "IMEI")
        #expect(device != DeviceID(id: "990003425730535", kind: "imei"))
    }
}
