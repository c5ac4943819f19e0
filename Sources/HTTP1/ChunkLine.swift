// A chunk-size line, `chunk-size [ chunk-ext ] CRLF` (RFC 9112 §7.1.1),
// checked one byte at a time as it arrives. Extensions are checked against
// their grammar and then ignored:
//
//   chunk-ext     = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//   chunk-ext-val = token / quoted-string
//
// BWS is optional SP/HTAB. Each verdict depends only on the bytes up to the
// one that decides it, so it does not depend on how the line was split.

struct ChunkLineScan: Sendable, Equatable {
    private enum State: UInt8, Sendable {
        case size
        /// Whitespace after the size: only ";" may follow.
        case sizeWhitespace
        /// After ";", before the name (BWS allowed).
        case nameStart
        case name
        /// Whitespace after a name: "=" or ";" must follow.
        case nameWhitespace
        /// After "=", before the value (BWS allowed).
        case valueStart
        case tokenValue
        case quotedValue
        /// After "\" inside a quoted value.
        case quotedPair
        /// Just after a value's closing quote.
        case quotedEnd
        /// Whitespace after a value: only ";" may follow.
        case valueWhitespace
        /// CR ending the line; LF must follow.
        case lineFeed
    }

    private var state = State.size
    private var position = 0
    private var digits = 0
    /// The size so far; saturates (any such size is over every limit).
    private(set) var size = 0

    /// Checks the bytes not looked at yet. Returns the line's length through
    /// its LF once complete, or nil when more are needed. Throws at the first
    /// byte that cannot belong to a valid line, `bodyTooLarge` as soon as the
    /// size exceeds `maxSize`, and `chunkLineTooLong` once the line must be
    /// longer than `maxLength` (CRLF included).
    mutating func scan(_ bytes: UnsafeBufferPointer<UInt8>, maxSize: Int, maxLength: Int) throws(HTTPParseError) -> Int? {
        let end = min(bytes.count, maxLength)
        var index = position
        defer { position = index }
        while index < end {
            let byte = bytes[index]
            if byte == ASCII.lf && state != .lineFeed { throw .bareLineFeed }
            switch state {
            case .size:
                if let digit = ASCII.hexValue(byte) {
                    size = size > (Int.max - 15) / 16 ? Int.max : size * 16 + digit
                    digits += 1
                    if size > maxSize { throw .bodyTooLarge }
                } else {
                    guard digits > 0 else { throw .invalidChunkSize }
                    if byte == ASCII.semicolon {
                        state = .nameStart
                    } else if byte == ASCII.cr {
                        state = .lineFeed
                    } else if ASCII.isWhitespace(byte) {
                        state = .sizeWhitespace
                    } else {
                        throw .invalidChunkSize
                    }
                }
            case .sizeWhitespace:
                if byte == ASCII.semicolon {
                    state = .nameStart
                } else if !ASCII.isWhitespace(byte) {
                    throw .invalidChunkSize  // whitespace with no extension after it
                }
            case .nameStart:
                if ASCII.isTokenByte(byte) {
                    state = .name
                } else if !ASCII.isWhitespace(byte) {
                    throw .invalidChunkExtension  // an empty name
                }
            case .name:
                if byte == ASCII.equals {
                    state = .valueStart
                } else {
                    try afterNameOrValue(byte, whitespace: .nameWhitespace, allowsToken: true)
                }
            case .nameWhitespace:
                if byte == ASCII.equals {
                    state = .valueStart
                } else if byte == ASCII.semicolon {
                    state = .nameStart
                } else if !ASCII.isWhitespace(byte) {
                    throw .invalidChunkExtension
                }
            case .valueStart:
                if byte == ASCII.quote {
                    state = .quotedValue
                } else if ASCII.isTokenByte(byte) {
                    state = .tokenValue
                } else if !ASCII.isWhitespace(byte) {
                    throw .invalidChunkExtension
                }
            case .tokenValue:
                try afterNameOrValue(byte, whitespace: .valueWhitespace, allowsToken: true)
            case .quotedValue:
                if byte == ASCII.quote {
                    state = .quotedEnd
                } else if byte == ASCII.backslash {
                    state = .quotedPair
                } else if !ASCII.isQuotedTextByte(byte) {
                    throw .invalidChunkExtension  // a control byte, or the line ends inside the quotes
                }
            case .quotedPair:
                // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
                guard ASCII.isFieldValueByte(byte) else { throw .invalidChunkExtension }
                state = .quotedValue
            case .quotedEnd:
                try afterNameOrValue(byte, whitespace: .valueWhitespace, allowsToken: false)
            case .valueWhitespace:
                if byte == ASCII.semicolon {
                    state = .nameStart
                } else if !ASCII.isWhitespace(byte) {
                    throw .invalidChunkExtension
                }
            case .lineFeed:
                guard byte == ASCII.lf else { throw .invalidChunkSize }  // a CR alone
                index += 1
                return index
            }
            index += 1
        }
        if index >= maxLength { throw .chunkLineTooLong }
        return nil
    }

    /// What may follow a name or a value: more of a token, whitespace, ";", CR.
    @inline(__always)
    private mutating func afterNameOrValue(_ byte: UInt8, whitespace: State, allowsToken: Bool) throws(HTTPParseError) {
        if allowsToken && ASCII.isTokenByte(byte) { return }
        if byte == ASCII.semicolon {
            state = .nameStart
        } else if byte == ASCII.cr {
            state = .lineFeed
        } else if ASCII.isWhitespace(byte) {
            state = whitespace
        } else {
            throw .invalidChunkExtension
        }
    }
}
