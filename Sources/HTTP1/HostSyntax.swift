// `uri-host [ ":" port ]` (RFC 3986 §3.2.2-3.2.3), checked one byte at a
// time so a bad Host value or absolute-form authority is refused at its first
// bad byte, whatever the split. Shared by the Host field and the target.

/// Where a host-and-port stands. The caller feeds the bytes between the
/// value's delimiters, then asks `isComplete` once the value ends.
struct HostScan: Sendable, Equatable {
    private enum State: UInt8, Sendable {
        case start, regName, percent1, percent2, literal, afterLiteral, port
    }

    private var state = State.start
    /// Just past the "[" of an IP-literal.
    private var literalStart = 0
    /// Whether the host (before any port) has at least one byte.
    private(set) var hasHost = false

    /// Feeds `bytes[index]`; false when it cannot continue a `uri-host [":" port]`.
    @inline(__always)
    mutating func accept(_ bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> Bool {
        let byte = bytes[index]
        switch state {
        case .start:
            if byte == 0x5B {  // "["
                state = .literal
                literalStart = index + 1
                return true
            }
            if byte == ASCII.colon {
                state = .port
                return true
            }
            hasHost = true
            return acceptRegName(byte)
        case .regName:
            if byte == ASCII.colon {
                state = .port
                return true
            }
            return acceptRegName(byte)
        case .percent1:
            guard ASCII.hexValue(byte) != nil else { return false }
            state = .percent2
            return true
        case .percent2:
            guard ASCII.hexValue(byte) != nil else { return false }
            state = .regName
            return true
        case .literal:
            if byte == 0x5D {  // "]"
                guard Self.isIPLiteral(bytes, literalStart..<index) else { return false }
                state = .afterLiteral
                hasHost = true
                return true
            }
            // IPvFuture ("v1.x") has a wider alphabet than IPv6address.
            if index > literalStart, bytes[literalStart] | 0x20 == 0x76 {
                return ASCII.isRegNameByte(byte) || byte == ASCII.colon
            }
            return ASCII.hexValue(byte) != nil || byte == ASCII.colon || byte == 0x2E || (index == literalStart && byte | 0x20 == 0x76)
        case .afterLiteral:
            guard byte == ASCII.colon else { return false }
            state = .port
            return true
        case .port:
            return ASCII.isDigit(byte)  // RFC 3986 allows an empty port
        }
    }

    /// Feeds the run of bytes from `bytes[start]` on that `accept` would take
    /// one at a time without a change of state (reg-name bytes inside a
    /// reg-name, digits inside a port); returns where the run ends. The caller
    /// goes on with `accept` there.
    @inline(__always)
    func skipRun(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int) -> Int {
        var index = start
        switch state {
        case .regName:
            while index < end, ASCII.isRegNameByte(bytes[index]) { index += 1 }
        case .port:
            while index < end, ASCII.isDigit(bytes[index]) { index += 1 }
        default:
            break
        }
        return index
    }

    @inline(__always)
    private mutating func acceptRegName(_ byte: UInt8) -> Bool {
        if byte == ASCII.percent {
            state = .percent1
            return true
        }
        guard ASCII.isRegNameByte(byte) else { return false }
        state = .regName
        return true
    }

    /// Whether the bytes fed so far are a whole `uri-host [":" port]` (the
    /// empty host included; an http URI's authority also needs `hasHost`).
    var isComplete: Bool {
        switch state {
        case .start, .regName, .afterLiteral, .port: true
        case .percent1, .percent2, .literal: false
        }
    }

    /// IPv6address or IPvFuture, the inside of "[...]".
    static func isIPLiteral(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Bool {
        guard let first = range.first else { return false }
        if bytes[first] | 0x20 == 0x76 {
            // IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
            var index = first + 1
            while index < range.upperBound, ASCII.hexValue(bytes[index]) != nil { index += 1 }
            guard index > first + 1, index < range.upperBound, bytes[index] == 0x2E, index + 1 < range.upperBound else {
                return false
            }
            for position in (index + 1)..<range.upperBound
            where !(ASCII.isRegNameByte(bytes[position]) || bytes[position] == ASCII.colon) {
                return false
            }
            return true
        }
        return isIPv6(bytes, range)
    }

    /// RFC 3986 IPv6address: eight 16-bit groups, "::" for one or more zero
    /// groups (once), an IPv4 address for the last two.
    static func isIPv6(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Bool {
        var index = range.lowerBound
        let end = range.upperBound
        var groups = 0
        var elided = false
        if end - index >= 2, bytes[index] == ASCII.colon, bytes[index + 1] == ASCII.colon {
            elided = true
            index += 2
            if index == end { return true }
        }
        while index < end {
            let groupStart = index
            while index < end, index - groupStart < 5, ASCII.hexValue(bytes[index]) != nil { index += 1 }
            if index < end, bytes[index] == 0x2E {
                // The IPv4 tail takes the place of two groups and ends the address.
                guard isIPv4(bytes, groupStart..<end) else { return false }
                groups += 2
                break
            }
            let digits = index - groupStart
            guard digits >= 1, digits <= 4 else { return false }
            groups += 1
            if index == end { break }
            guard bytes[index] == ASCII.colon else { return false }
            index += 1
            if index < end, bytes[index] == ASCII.colon {
                if elided { return false }
                elided = true
                index += 1
            } else if index == end {
                return false  // a single trailing colon
            }
        }
        return elided ? groups <= 7 : groups == 8
    }

    /// dec-octet "." dec-octet "." dec-octet "." dec-octet, no leading zeros.
    static func isIPv4(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Bool {
        var index = range.lowerBound
        for octet in 0..<4 {
            if octet > 0 {
                guard index < range.upperBound, bytes[index] == 0x2E else { return false }
                index += 1
            }
            let start = index
            var value = 0
            while index < range.upperBound, ASCII.isDigit(bytes[index]), index - start < 3 {
                value = value * 10 + Int(bytes[index] &- 0x30)
                index += 1
            }
            let digits = index - start
            guard digits >= 1, value <= 255, digits == 1 || bytes[start] != 0x30 else { return false }
        }
        return index == range.upperBound
    }
}
