// The consumer API's bearer tokens (RFC 6750). Only their SHA-256 digests are kept, and a
// presented token is compared with every configured one in constant time: neither its length nor
// where it first differs, nor which token it matched, shows in the time taken.
import Crypto
import Vocabulary

/// A configured bearer token. Never printed.
public struct ConsumerAPIToken: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    let digest: [UInt8]

    /// nil for an empty token.
    public init?(_ token: String) {
        guard !token.isEmpty else { return nil }
        digest = Array(SHA256.hash(data: Array(token.utf8)))
    }

    public var description: String { Redaction.marker }
    public var debugDescription: String { Redaction.marker }

    /// Whether `presented` (the bytes after `Bearer `) is one of `tokens`: every token is compared,
    /// each byte of each digest, whatever matched first.
    static func accepts(_ presented: some Sequence<UInt8>, among tokens: [ConsumerAPIToken]) -> Bool {
        let digest = Array(SHA256.hash(data: Array(presented)))
        var matched: UInt8 = 0
        for token in tokens {
            var difference: UInt8 = 0
            for (a, b) in zip(digest, token.digest) { difference |= a ^ b }
            matched |= difference == 0 ? 1 : 0
        }
        return matched != 0
    }

    /// The token of an `Authorization: Bearer <token>` value (the scheme in any case, RFC 9110
    /// §11.1); nil for another scheme or no token.
    static func bearer(_ authorization: String) -> Substring.UTF8View? {
        let utf8 = authorization.utf8
        let scheme = "bearer".utf8
        guard utf8.count > scheme.count + 1 else { return nil }
        var index = utf8.startIndex
        for expected in scheme {
            let byte = utf8[index]
            guard (byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte) == expected else { return nil }
            index = utf8.index(after: index)
        }
        guard utf8[index] == 0x20 else { return nil }
        while index != utf8.endIndex, utf8[index] == 0x20 { index = utf8.index(after: index) }
        let token = Substring(authorization)[index...].utf8
        return token.isEmpty ? nil : token
    }
}
