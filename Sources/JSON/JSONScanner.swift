// The strict RFC 8259 scanner callback bodies go through, one on every request.
// It validates without building objects: callers ask for the few values they
// need by range. No Foundation.

/// A strict RFC 8259 JSON scanner over bytes. It validates a document
/// (grammar, UTF-8, nesting depth) without building objects, reports where each
/// top-level member's value lies, and can write a value in canonical form
/// (object members sorted by name, no insignificant whitespace, strings with
/// minimal escaping, see `JSONString`) so that two encodings of the same data
/// compare equal.
///
/// The entry points are coarse: one call validates a whole document or value,
/// and the byte loops stay inside this module.
public struct JSONScanner {
    /// Why a document is refused. Offsets count bytes from the start of the
    /// scanner's buffer; no case quotes the document beyond a member name.
    public enum Failure: Error, Equatable, Sendable {
        case syntax(offset: Int, expected: String)
        case invalidUTF8(offset: Int)
        case tooDeep
        case duplicateMember(String)
        case notAnObject
    }

    /// How deeply objects and arrays may nest (the top-level value counts).
    public static let maximumDepth = 64

    private let bytes: UnsafeBufferPointer<UInt8>
    /// The offset of the next byte to read: after a value, the byte after it.
    public private(set) var index = 0
    private var depth = 0

    /// A scanner at the start of `bytes`, which must outlive it.
    public init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    // MARK: Top level

    /// Scans a document that must be one object, calling `member` with each
    /// top-level member's name and value range, in order. Names must be unique.
    public mutating func scanTopLevelObject(member: (String, Range<Int>) throws(Failure) -> Void) throws(Failure) {
        skipWhitespace()
        guard peek() == UInt8(ascii: "{") else {
            if index < bytes.count { throw .notAnObject }
            throw .syntax(offset: index, expected: "a JSON object")
        }
        try enter()  // the top-level object counts toward the nesting limit
        index += 1
        var seen = MemberNames()
        skipWhitespace()
        if peek() == UInt8(ascii: "}") {
            index += 1
        } else {
            while true {
                skipWhitespace()
                let name = try scanString()
                guard seen.insert(name) else { throw .duplicateMember(name) }
                skipWhitespace()
                try expect(UInt8(ascii: ":"), "':' after a member name")
                skipWhitespace()
                let start = index
                try skipValue()
                try member(name, start..<index)
                skipWhitespace()
                if peek() == UInt8(ascii: ",") {
                    index += 1
                    continue
                }
                try expect(UInt8(ascii: "}"), "',' or '}' in an object")
                break
            }
        }
        skipWhitespace()
        guard index == bytes.count else { throw .syntax(offset: index, expected: "the end of the document") }
    }

    /// Scans a document that must be one array, calling `element` with each
    /// element's range, in order. A document of another kind fails with
    /// `.syntax(expected: "a JSON array")`.
    public mutating func scanTopLevelArray(element: (Range<Int>) throws(Failure) -> Void) throws(Failure) {
        skipWhitespace()
        guard peek() == UInt8(ascii: "[") else { throw .syntax(offset: index, expected: "a JSON array") }
        try enter()
        index += 1
        skipWhitespace()
        if peek() == UInt8(ascii: "]") {
            index += 1
        } else {
            while true {
                skipWhitespace()
                let start = index
                try skipValue()
                try element(start..<index)
                skipWhitespace()
                if peek() == UInt8(ascii: ",") {
                    index += 1
                    continue
                }
                try expect(UInt8(ascii: "]"), "',' or ']' in an array")
                break
            }
        }
        depth -= 1
        skipWhitespace()
        guard index == bytes.count else { throw .syntax(offset: index, expected: "the end of the document") }
    }

    // MARK: Values

    /// Validates one value and moves past it.
    public mutating func skipValue() throws(Failure) {
        var nothing: [UInt8]? = nil
        try scanValue(canonical: &nothing)
    }

    /// Validates one value, moves past it and returns its canonical form:
    /// equal data gives equal bytes, whatever the layout, member order or escapes.
    public mutating func canonicalValue() throws(Failure) -> [UInt8] {
        var output: [UInt8]? = []
        try scanValue(canonical: &output)
        return output ?? []
    }

    /// Validates one value and, when `canonical` is non-nil, appends its canonical form.
    private mutating func scanValue(canonical: inout [UInt8]?) throws(Failure) {
        guard let byte = peek() else { throw .syntax(offset: index, expected: "a value") }
        switch byte {
        case UInt8(ascii: "{"): try scanObject(canonical: &canonical)
        case UInt8(ascii: "["): try scanArray(canonical: &canonical)
        case UInt8(ascii: "\""):
            if canonical == nil {
                _ = try scanStringToken()
            } else {
                try appendCanonicalStringToken(to: &canonical!)
            }
        case UInt8(ascii: "t"): try scanLiteral("true", canonical: &canonical)
        case UInt8(ascii: "f"): try scanLiteral("false", canonical: &canonical)
        case UInt8(ascii: "n"): try scanLiteral("null", canonical: &canonical)
        default: try scanNumber(canonical: &canonical)
        }
    }

    private mutating func enter() throws(Failure) {
        depth += 1
        if depth > Self.maximumDepth { throw .tooDeep }
    }

    private mutating func scanObject(canonical: inout [UInt8]?) throws(Failure) {
        try enter()
        index += 1
        var members: [(name: [UInt8], value: [UInt8])] = []
        skipWhitespace()
        if peek() == UInt8(ascii: "}") {
            index += 1
        } else {
            while true {
                skipWhitespace()
                var name: [UInt8] = []
                if canonical != nil { try appendCanonicalStringToken(to: &name) } else { _ = try scanStringToken() }
                skipWhitespace()
                try expect(UInt8(ascii: ":"), "':' after a member name")
                skipWhitespace()
                if canonical != nil {
                    var value: [UInt8]? = []
                    try scanValue(canonical: &value)
                    members.append((name, value ?? []))
                } else {
                    try skipValue()
                }
                skipWhitespace()
                if peek() == UInt8(ascii: ",") {
                    index += 1
                    continue
                }
                try expect(UInt8(ascii: "}"), "',' or '}' in an object")
                break
            }
        }
        depth -= 1
        guard canonical != nil else { return }
        // Sorted by canonical name: a function of the decoded name, so equal data sorts equally.
        members.sort { $0.name.lexicographicallyPrecedes($1.name) }
        canonical!.append(UInt8(ascii: "{"))
        for (position, member) in members.enumerated() {
            if position > 0 { canonical!.append(UInt8(ascii: ",")) }
            canonical!.append(contentsOf: member.name)
            canonical!.append(UInt8(ascii: ":"))
            canonical!.append(contentsOf: member.value)
        }
        canonical!.append(UInt8(ascii: "}"))
    }

    private mutating func scanArray(canonical: inout [UInt8]?) throws(Failure) {
        try enter()
        index += 1
        canonical?.append(UInt8(ascii: "["))
        skipWhitespace()
        if peek() == UInt8(ascii: "]") {
            index += 1
        } else {
            var first = true
            while true {
                skipWhitespace()
                if !first { canonical?.append(UInt8(ascii: ",")) }
                first = false
                try scanValue(canonical: &canonical)
                skipWhitespace()
                if peek() == UInt8(ascii: ",") {
                    index += 1
                    continue
                }
                try expect(UInt8(ascii: "]"), "',' or ']' in an array")
                break
            }
        }
        canonical?.append(UInt8(ascii: "]"))
        depth -= 1
    }

    private mutating func scanLiteral(_ literal: StaticString, canonical: inout [UInt8]?) throws(Failure) {
        let count = literal.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw .syntax(offset: index, expected: "\(literal)") }
        let expected = UnsafeBufferPointer(start: literal.utf8Start, count: count)
        for offset in 0..<count where bytes[index + offset] != expected[offset] {
            throw .syntax(offset: index + offset, expected: "\(literal)")
        }
        canonical?.append(contentsOf: expected)
        index += count
    }

    private mutating func scanNumber(canonical: inout [UInt8]?) throws(Failure) {
        let start = index
        if peek() == UInt8(ascii: "-") { index += 1 }
        guard let first = peek(), isDigit(first) else { throw .syntax(offset: index, expected: "a value") }
        index += 1
        if first != UInt8(ascii: "0") { skipDigits() }
        if peek() == UInt8(ascii: ".") {
            index += 1
            guard let digit = peek(), isDigit(digit) else { throw .syntax(offset: index, expected: "a digit") }
            skipDigits()
        }
        if let e = peek(), e == UInt8(ascii: "e") || e == UInt8(ascii: "E") {
            index += 1
            if let sign = peek(), sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") { index += 1 }
            guard let digit = peek(), isDigit(digit) else { throw .syntax(offset: index, expected: "a digit") }
            skipDigits()
        }
        canonical?.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<index]))
    }

    /// Reads a string token and returns its decoded text. A lone surrogate
    /// escape (`\ud800`) decodes to U+FFFD, as a `String` cannot hold it.
    public mutating func scanString() throws(Failure) -> String {
        let (content, hasEscapes) = try scanStringToken()
        let bytes = UnsafeBufferPointer(rebasing: self.bytes[content])
        return hasEscapes ? Self.unescape(bytes) : String(decoding: bytes, as: UTF8.self)
    }

    /// Appends a string token in canonical form. Without escapes the content
    /// is already canonical (it holds no quote, backslash or control byte).
    private mutating func appendCanonicalStringToken(to output: inout [UInt8]) throws(Failure) {
        let (content, hasEscapes) = try scanStringToken()
        let bytes = UnsafeBufferPointer(rebasing: self.bytes[content])
        if hasEscapes {
            JSONString.append(Self.unescape(bytes), to: &output)
        } else {
            output.append(UInt8(ascii: "\""))
            output.append(contentsOf: bytes)
            output.append(UInt8(ascii: "\""))
        }
    }

    /// Moves past a string token, validating escapes, control characters and
    /// UTF-8; returns the range of its content and whether it has escapes.
    private mutating func scanStringToken() throws(Failure) -> (Range<Int>, hasEscapes: Bool) {
        guard peek() == UInt8(ascii: "\"") else { throw .syntax(offset: index, expected: "a string") }
        index += 1
        let contentStart = index
        var hasEscapes = false
        while true {
            guard index < bytes.count else { throw .syntax(offset: index, expected: "the end of a string") }
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") { break }
            if byte < 0x20 { throw .syntax(offset: index, expected: "no control character in a string") }
            if byte == UInt8(ascii: "\\") {
                hasEscapes = true
                index += 1
                guard let escaped = peek() else { throw .syntax(offset: index, expected: "an escape") }
                switch escaped {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                    UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    index += 1
                case UInt8(ascii: "u"):
                    index += 1
                    for _ in 0..<4 {
                        guard let hex = peek(), hexValue(hex) != nil else {
                            throw .syntax(offset: index, expected: "four hex digits")
                        }
                        index += 1
                    }
                default: throw .syntax(offset: index, expected: "a valid escape")
                }
                continue
            }
            if byte < 0x80 { index += 1 } else { try skipUTF8Sequence() }
        }
        let content = contentStart..<index
        index += 1
        return (content, hasEscapes)
    }

    // MARK: Helpers

    private func peek() -> UInt8? { index < bytes.count ? bytes[index] : nil }

    private mutating func expect(_ byte: UInt8, _ what: String) throws(Failure) {
        guard peek() == byte else { throw .syntax(offset: index, expected: what) }
        index += 1
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

    private mutating func skipDigits() {
        while let byte = peek(), isDigit(byte) { index += 1 }
    }

    /// Validates one multi-byte UTF-8 sequence (no overlongs, no surrogates, ≤ U+10FFFF).
    private mutating func skipUTF8Sequence() throws(Failure) {
        let lead = bytes[index]
        let length: Int
        var lowerBound: UInt8 = 0x80
        var upperBound: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0:
            length = 3
            lowerBound = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED:
            length = 3
            upperBound = 0x9F
        case 0xF0:
            length = 4
            lowerBound = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4:
            length = 4
            upperBound = 0x8F
        default: throw .invalidUTF8(offset: index)
        }
        guard index + length <= bytes.count else { throw .invalidUTF8(offset: index) }
        let second = bytes[index + 1]
        guard second >= lowerBound && second <= upperBound else { throw .invalidUTF8(offset: index) }
        for offset in 2..<max(2, length) where bytes[index + offset] & 0xC0 != 0x80 {
            throw .invalidUTF8(offset: index)
        }
        index += length
    }

    private static func unescape(_ content: UnsafeBufferPointer<UInt8>) -> String {
        var scalars = String.UnicodeScalarView()
        var utf8: [UInt8] = []
        utf8.reserveCapacity(content.count)
        var i = 0
        func flush() {
            if !utf8.isEmpty {
                scalars.append(contentsOf: String(decoding: utf8, as: UTF8.self).unicodeScalars)
                utf8.removeAll(keepingCapacity: true)
            }
        }
        func hex4(_ at: Int) -> UInt32 {
            var value: UInt32 = 0
            for offset in 0..<4 { value = value << 4 | UInt32(hexValue(content[at + offset]) ?? 0) }
            return value
        }
        while i < content.count {
            let byte = content[i]
            guard byte == UInt8(ascii: "\\") else {
                utf8.append(byte)
                i += 1
                continue
            }
            let escaped = content[i + 1]
            i += 2
            switch escaped {
            case UInt8(ascii: "b"): utf8.append(0x08)
            case UInt8(ascii: "f"): utf8.append(0x0C)
            case UInt8(ascii: "n"): utf8.append(0x0A)
            case UInt8(ascii: "r"): utf8.append(0x0D)
            case UInt8(ascii: "t"): utf8.append(0x09)
            case UInt8(ascii: "u"):
                var code = hex4(i)
                i += 4
                if (0xD800...0xDBFF).contains(code), i + 6 <= content.count, content[i] == UInt8(ascii: "\\"),
                    content[i + 1] == UInt8(ascii: "u")
                {
                    let low = hex4(i + 2)
                    if (0xDC00...0xDFFF).contains(low) {
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                    }
                }
                flush()
                // A lone surrogate cannot be a String: it becomes U+FFFD.
                scalars.append(Unicode.Scalar(code) ?? "\u{FFFD}")
            default: utf8.append(escaped)
            }
        }
        flush()
        return String(scalars)
    }
}

private func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
    default: return nil
    }
}

/// The member names seen so far in one object. A callback has about ten: comparing them is
/// cheaper than hashing each one, so a set is built only for large objects.
private struct MemberNames {
    static let linearLimit = 16
    private var names: [String] = []
    private var set: Set<String>?

    /// False when `name` was seen before.
    mutating func insert(_ name: String) -> Bool {
        if set != nil { return set!.insert(name).inserted }
        if names.contains(name) { return false }
        names.append(name)
        if names.count > Self.linearLimit { set = Set(names) }
        return true
    }
}
