#if canImport(Glibc)
    import Glibc
#endif

/// An IPv4 or IPv6 network in CIDR notation (`203.0.113.0/24`, `2001:db8::/32`;
/// a bare address means a single host). IPv4-mapped IPv6 addresses match
/// their IPv4 network.
public struct CIDR: Sendable, Hashable, CustomStringConvertible {
    /// 16 bytes; IPv4 is stored IPv4-mapped (::ffff:a.b.c.d) so one comparison serves both.
    let network: [UInt8]
    let prefixLength: Int
    public let description: String

    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let (bytes, isIPv4) = CIDR.parseAddress(String(parts[0])) else { return nil }
        let maximum = isIPv4 ? 32 : 128
        var length = maximum
        if parts.count == 2 {
            guard let value = Int(parts[1]), (0...maximum).contains(value), parts[1].allSatisfy(\.isASCII) else {
                return nil
            }
            length = value
        }
        prefixLength = isIPv4 ? length + 96 : length
        network = CIDR.masked(bytes, prefixLength: prefixLength)
        description = text
    }

    /// Whether `address` (a numeric IPv4 or IPv6 address) lies in this network.
    public func contains(_ address: String) -> Bool {
        guard let (bytes, _) = CIDR.parseAddress(address) else { return false }
        return CIDR.masked(bytes, prefixLength: prefixLength) == network
    }

    static func parseAddress(_ text: String) -> ([UInt8], isIPv4: Bool)? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            let value = UInt32(bigEndian: v4.s_addr)
            let mapped: [UInt8] =
                Array(repeating: 0, count: 10) + [0xff, 0xff]
                + [UInt8(value >> 24), UInt8((value >> 16) & 0xff), UInt8((value >> 8) & 0xff), UInt8(value & 0xff)]
            return (mapped, true)
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            let bytes = withUnsafeBytes(of: &v6) { Array($0) }
            return (bytes, false)
        }
        return nil
    }

    static func masked(_ bytes: [UInt8], prefixLength: Int) -> [UInt8] {
        var result = bytes
        for index in 0..<16 {
            let bitsKept = max(0, min(8, prefixLength - index * 8))
            result[index] &= bitsKept == 0 ? 0 : UInt8(truncatingIfNeeded: 0xff << (8 - bitsKept))
        }
        return result
    }
}

extension Array where Element == CIDR {
    /// Whether any network of the list contains `address`.
    func containsAddress(_ address: String) -> Bool { contains { $0.contains(address) } }
}
