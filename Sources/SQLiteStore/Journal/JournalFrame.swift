// How a record sits on disk, and the pure decision the recovery scan makes at every frame:
// a record, the end (a zero length word: segments are preallocated with zeros), more bytes
// needed, or a torn/garbled frame. Kept free of I/O, like the HTTP1 parser, so every split
// offset and every flipped bit can be tested on bytes alone.

/// `[u32 payload length][u32 CRC-32C over (id bytes + payload)][u64 id][payload]`, little-endian.
/// The length is never 0: a zero length word marks the end of a segment's records.
enum JournalFrame {
    static let headerSize = 16
    static let maximumPayload = Int(UInt32.max)

    /// Appends the frame of `record` to `out`.
    static func append(_ record: JournalRecord, to out: inout [UInt8]) throws(JournalError) {
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: headerSize))
        JournalPayload.encode(record.callback, into: &out)
        let payloadLength = out.count - start - headerSize
        guard payloadLength <= maximumPayload else {
            out.removeSubrange(start...)
            throw .recordTooLarge(bytes: payloadLength)
        }
        out.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: UInt32(payloadLength).littleEndian, toByteOffset: start, as: UInt32.self)
            raw.storeBytes(of: UInt64(bitPattern: record.id).littleEndian, toByteOffset: start + 8, as: UInt64.self)
            let checksum = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[(start + 8)...]))
            raw.storeBytes(of: checksum.littleEndian, toByteOffset: start + 4, as: UInt32.self)
        }
    }

    enum Torn: Sendable, Hashable, CustomStringConvertible {
        /// A length word but no room for the rest of the frame header before the file ends.
        case headerPastEnd(remaining: Int)
        /// The length runs past the end of the file.
        case lengthPastEnd(length: UInt32, remaining: Int)
        case checksumMismatch(stored: UInt32, computed: UInt32)

        var description: String {
            switch self {
            case .headerPastEnd(let remaining): "a frame starts with only \(remaining) bytes left in the file"
            case .lengthPastEnd(let length, let remaining):
                "a frame's length \(length) runs past the end of the file (\(remaining) bytes left)"
            case .checksumMismatch(let stored, let computed):
                "the checksum does not match (stored \(hex(stored)), computed \(hex(computed)))"
            }
        }
    }

    enum Inspection: Sendable, Hashable {
        /// A whole frame whose checksum matches: the payload is `window[headerSize..<frameLength]`.
        case record(id: Int64, frameLength: Int)
        /// A zero length word, or fewer than 4 zero bytes left: no more records here.
        case end
        /// The window must hold at least this many bytes from the frame's start to decide.
        case needMore(Int)
        case torn(Torn)
    }

    /// Decides what starts at `window[0]`. `window` holds the bytes available from the frame's start
    /// (at most `remainingInFile`); `remainingInFile` counts the bytes from there to the end of the file.
    static func inspect(_ window: UnsafeRawBufferPointer, remainingInFile: Int) -> Inspection {
        if remainingInFile < 4 {
            guard window.count >= remainingInFile else { return .needMore(remainingInFile) }
            return window.prefix(remainingInFile).allSatisfy { $0 == 0 } ? .end : .torn(.headerPastEnd(remaining: remainingInFile))
        }
        guard window.count >= 4 else { return .needMore(4) }
        let length = UInt32(littleEndian: window.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        if length == 0 { return .end }
        guard remainingInFile >= headerSize else { return .torn(.headerPastEnd(remaining: remainingInFile)) }
        let frameLength = headerSize + Int(length)
        guard frameLength <= remainingInFile else { return .torn(.lengthPastEnd(length: length, remaining: remainingInFile)) }
        guard window.count >= frameLength else { return .needMore(frameLength) }
        let stored = UInt32(littleEndian: window.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: window[8..<frameLength]))
        guard stored == computed else { return .torn(.checksumMismatch(stored: stored, computed: computed)) }
        let id = Int64(bitPattern: UInt64(littleEndian: window.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
        return .record(id: id, frameLength: frameLength)
    }

    static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
    }
}

/// The first 32 bytes of every segment:
///
///     0  "TSLJ"
///     4  u16 format version (1)
///     6  u16 header size (32)
///     8  u64 the first id the segment holds (also its file name)
///     16 u64 the size it was preallocated to
///     24 u32 zero (reserved)
///     28 u32 CRC-32C over bytes 0..<28
struct JournalSegmentHeader: Sendable, Hashable {
    static let size = 32
    static let formatVersion: UInt16 = 1
    static let magic: [UInt8] = Array("TSLJ".utf8)

    var firstID: Int64
    var preallocatedSize: Int64

    enum Problem: Error, Sendable, Hashable, CustomStringConvertible {
        case tooShort(Int)
        case badMagic
        case checksumMismatch
        case unsupportedVersion(UInt16)
        case badHeaderSize(UInt16)
        case nameMismatch(headerFirstID: Int64, nameFirstID: Int64)

        var description: String {
            switch self {
            case .tooShort(let count): "the file holds \(count) bytes, less than a segment header"
            case .badMagic: "it does not start with the journal's magic \"TSLJ\""
            case .checksumMismatch: "the header's checksum does not match"
            case .unsupportedVersion(let version):
                "format version \(version) is not one this program knows (\(JournalSegmentHeader.formatVersion)); upgrade thingspace-listener"
            case .badHeaderSize(let size): "the header size field says \(size), not \(JournalSegmentHeader.size)"
            case .nameMismatch(let header, let name): "the header's first id \(header) differs from the file name's \(name)"
            }
        }
    }

    func encoded() -> [UInt8] {
        var out = Self.magic
        JournalPayload.appendInteger(Self.formatVersion, to: &out)
        JournalPayload.appendInteger(UInt16(Self.size), to: &out)
        JournalPayload.appendInteger(UInt64(bitPattern: firstID), to: &out)
        JournalPayload.appendInteger(UInt64(bitPattern: preallocatedSize), to: &out)
        JournalPayload.appendInteger(UInt32(0), to: &out)
        JournalPayload.appendInteger(CRC32C.checksum(out), to: &out)
        return out
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) throws(Problem) -> JournalSegmentHeader {
        guard bytes.count >= size else { throw .tooShort(bytes.count) }
        guard bytes.prefix(4).elementsEqual(magic) else { throw .badMagic }
        let stored = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 28, as: UInt32.self))
        guard stored == CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<28])) else { throw .checksumMismatch }
        let version = UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        guard version == formatVersion else { throw .unsupportedVersion(version) }
        let headerSize = UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
        guard headerSize == size else { throw .badHeaderSize(headerSize) }
        return JournalSegmentHeader(
            firstID: Int64(bitPattern: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))),
            preallocatedSize: Int64(bitPattern: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self))))
    }

    /// `<first id as 20 digits>.seg`, so that names sort as ids do.
    static func fileName(firstID: Int64) -> String {
        let digits = String(firstID)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".seg"
    }

    /// The first id a segment's file name gives, or nil when the name is not a segment's.
    static func firstID(fileName name: String) -> Int64? {
        let utf8 = Array(name.utf8)
        guard utf8.count == 24, name.hasSuffix(".seg"), utf8[0..<20].allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
        else { return nil }
        return Int64(String(decoding: utf8[0..<20], as: UTF8.self))
    }
}
