import Foundation
import Vocabulary

/// Percent-encodes one path segment: every byte but RFC 3986's unreserved
/// characters (ALPHA DIGIT - . _ ~) becomes %XX, so `/`, `?`, `#` and
/// spaces cannot change the path. Leading zeros are ordinary digits and stay.
public func percentEncodePathSegment(_ segment: String) -> String {
    let hex = Array("0123456789ABCDEF".utf8)
    var encoded: [UInt8] = []
    encoded.reserveCapacity(segment.utf8.count)
    for byte in segment.utf8 {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
            UInt8(ascii: "_"), UInt8(ascii: "~"):
            encoded.append(byte)
        default:
            encoded.append(UInt8(ascii: "%"))
            encoded.append(hex[Int(byte >> 4)])
            encoded.append(hex[Int(byte & 0x0F)])
        }
    }
    return String(decoding: encoded, as: UTF8.self)
}

/// A name usable as a path segment: not empty, no control characters, and
/// not `.` or `..` (which servers would resolve away).
func isValidPathSegment(_ segment: String) -> Bool {
    !segment.isEmpty && segment != "." && segment != ".."
        && !segment.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }
}

/// A URL fit for a log line: any `user:password@` part is replaced by
/// `<redacted>@`. Listener URLs normally have none; this makes sure.
public func redactingUserInfo(_ url: String) -> String {
    guard let schemeEnd = url.range(of: "://") else { return url }
    let authorityStart = schemeEnd.upperBound
    let authorityEnd = url[authorityStart...].firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? url.endIndex
    guard let at = url[authorityStart..<authorityEnd].lastIndex(of: "@") else { return url }
    return String(url[..<authorityStart]) + Redaction.marker + String(url[at...])
}
