// Byte classes and scanning helpers for the parser. Sets are two 64-bit masks
// (bytes 0-63 and 64-127; nothing above 127 belongs to them), literal so the
// hot loops read no global state.

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

enum ASCII {
    static let cr: UInt8 = 0x0D
    static let lf: UInt8 = 0x0A
    static let space: UInt8 = 0x20
    static let tab: UInt8 = 0x09
    static let colon: UInt8 = 0x3A
    static let comma: UInt8 = 0x2C
    static let semicolon: UInt8 = 0x3B
    static let percent: UInt8 = 0x25
    static let slash: UInt8 = 0x2F
    static let asterisk: UInt8 = 0x2A
    static let question: UInt8 = 0x3F
    static let equals: UInt8 = 0x3D
    static let quote: UInt8 = 0x22
    static let backslash: UInt8 = 0x5C

    @inline(__always)
    static func inMask(_ byte: UInt8, low: UInt64, high: UInt64) -> Bool {
        if byte < 64 { return (low >> UInt64(byte)) & 1 != 0 }
        if byte < 128 { return (high >> UInt64(byte &- 64)) & 1 != 0 }
        return false
    }

    /// tchar (RFC 9110 §5.6.2): ALPHA DIGIT and !#$%&'*+-.^_`|~
    @inline(__always)
    static func isTokenByte(_ byte: UInt8) -> Bool {
        inMask(byte, low: 0x03ff_6cfa_0000_0000, high: 0x57ff_ffff_c7ff_fffe)
    }

    /// Bytes of the path and query of a target (RFC 3986 pchar, "/", "?", and
    /// the gen-delims ":@[]"), "%" excluded: it needs two hex digits after it.
    @inline(__always)
    static func isTargetByte(_ byte: UInt8) -> Bool {
        inMask(byte, low: 0xafff_ffd2_0000_0000, high: 0x47ff_fffe_afff_ffff)
    }

    /// reg-name bytes (RFC 3986 unreserved and sub-delims); "%" is checked
    /// for two hex digits separately.
    @inline(__always)
    static func isRegNameByte(_ byte: UInt8) -> Bool {
        inMask(byte, low: 0x2bff_7fd2_0000_0000, high: 0x47ff_fffe_87ff_fffe)
    }

    /// qdtext (RFC 9110 §5.6.4): HTAB, SP, VCHAR except DQUOTE and "\\", obs-text.
    @inline(__always)
    static func isQuotedTextByte(_ byte: UInt8) -> Bool {
        isFieldValueByte(byte) && byte != 0x22 && byte != 0x5C
    }

    /// field-vchar, SP or HTAB (RFC 9110 §5.5); obs-text (0x80-0xFF) allowed.
    @inline(__always)
    static func isFieldValueByte(_ byte: UInt8) -> Bool {
        (byte >= 0x20 && byte != 0x7F) || byte == tab
    }

    @inline(__always)
    static func isWhitespace(_ byte: UInt8) -> Bool { byte == space || byte == tab }

    @inline(__always)
    static func isDigit(_ byte: UInt8) -> Bool { byte &- 0x30 < 10 }

    @inline(__always)
    static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case 0x30...0x39: Int(byte &- 0x30)
        case 0x41...0x46: Int(byte &- 0x41 &+ 10)
        case 0x61...0x66: Int(byte &- 0x61 &+ 10)
        default: nil
        }
    }

    @inline(__always)
    static func lowercased(_ byte: UInt8) -> UInt8 {
        byte &- 0x41 < 26 ? byte | 0x20 : byte
    }

    /// Whether `bytes[range]` equals `lowercaseLiteral` ignoring ASCII case.
    @inline(__always)
    static func equalsIgnoringCase(
        _ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, _ lowercaseLiteral: StaticString
    ) -> Bool {
        guard range.count == lowercaseLiteral.utf8CodeUnitCount else { return false }
        let literal = lowercaseLiteral.utf8Start
        var i = 0
        for index in range {
            if lowercased(bytes[index]) != literal[i] { return false }
            i += 1
        }
        return true
    }

    /// Whether `bytes[range]` equals `literal` exactly.
    @inline(__always)
    static func equalsCaseSensitive(
        _ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, _ literal: StaticString
    ) -> Bool {
        guard range.count == literal.utf8CodeUnitCount else { return false }
        let start = literal.utf8Start
        var i = 0
        for index in range {
            if bytes[index] != start[i] { return false }
            i += 1
        }
        return true
    }

    /// The index of the first `byte` in `bytes[start..<end]`, by memchr.
    @inline(__always)
    static func firstIndex(of byte: UInt8, in bytes: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int) -> Int? {
        guard start < end, let base = bytes.baseAddress else { return nil }
        guard let found = memchr(base + start, Int32(byte), end - start) else { return nil }
        return UnsafeRawPointer(base).distance(to: UnsafeRawPointer(found))
    }

    /// `range` without leading and trailing SP/HTAB.
    @inline(__always)
    static func trimmingWhitespace(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Range<Int> {
        var lower = range.lowerBound
        var upper = range.upperBound
        while lower < upper, isWhitespace(bytes[lower]) { lower += 1 }
        while upper > lower, isWhitespace(bytes[upper - 1]) { upper -= 1 }
        return lower..<upper
    }

    @inline(__always)
    static func string(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> String {
        String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self)
    }
}
