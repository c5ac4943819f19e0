// What one journal record holds: a callback and the id it was given at append. The payload is a
// compact binary layout rather than JSON because it is written once per callback on the hot path
// and read only by recovery and the indexer. The decoder is a pure function over bytes that
// never traps: a frame's checksum can pass on bytes this program did not write (a bug, a future
// format), and those must become an error that names the field, not a crash at start-up.
import CallbackStore
import Vocabulary

/// A callback and its id, as the journal keeps it.
struct JournalRecord: Sendable, Hashable {
    var id: Int64
    var callback: NewCallback
}

/// Why a payload could not be decoded. Offsets count from the payload's first byte.
enum JournalRecordError: Error, Sendable, Hashable, CustomStringConvertible {
    case truncated(field: String, offset: Int)
    case invalidUTF8(field: String, offset: Int)
    case unknownFlags(UInt8)
    case tooManyDevices(count: UInt32, offset: Int)
    case trailingBytes(offset: Int, count: Int)

    var description: String {
        switch self {
        case .truncated(let field, let offset): "the payload ends inside \(field) (at byte \(offset))"
        case .invalidUTF8(let field, let offset): "\(field) at byte \(offset) is not valid UTF-8"
        case .unknownFlags(let flags): "unknown flag bits \(String(flags, radix: 2)) in the flags byte"
        case .tooManyDevices(let count, let offset): "a device count of \(count) at byte \(offset) exceeds what the payload can hold"
        case .trailingBytes(let offset, let count): "\(count) bytes follow the last field (at byte \(offset))"
        }
    }
}

/// The payload layout, version 1 (all integers little-endian; a string or byte field is a u32
/// length followed by that many bytes; strings are UTF-8):
///
///     u8  flags            bit 0 requestID present, bit 1 status present, bit 2 callbackCount present
///     i64 receivedAt
///     str service
///     str requestID        only if flagged
///     u32 device count, then per device: str id, str kind
///     str status           only if flagged
///     i64 callbackCount    only if flagged
///     str remoteAddress
///     str dedupKey
///     bytes body
///
/// Nothing may follow the body.
enum JournalPayload {
    static let hasRequestID: UInt8 = 1
    static let hasStatus: UInt8 = 2
    static let hasCallbackCount: UInt8 = 4

    /// An upper bound of the encoded size, to reserve once per batch.
    static func estimatedSize(_ callback: NewCallback) -> Int {
        var size = 1 + 8 + 4 + 4 + 4 + 4 + 8 + 4 + 4 + 4
        size += callback.service.utf8.count + (callback.requestID?.utf8.count ?? 0) + (callback.status?.utf8.count ?? 0)
        size += callback.remoteAddress.utf8.count + callback.dedupKey.utf8.count + callback.body.count
        for device in callback.deviceIDs { size += 8 + device.id.utf8.count + device.kind.utf8.count }
        return size
    }

    static func encode(_ callback: NewCallback, into out: inout [UInt8]) {
        var flags: UInt8 = 0
        if callback.requestID != nil { flags |= hasRequestID }
        if callback.status != nil { flags |= hasStatus }
        if callback.callbackCount != nil { flags |= hasCallbackCount }
        out.append(flags)
        appendInteger(UInt64(bitPattern: callback.receivedAt), to: &out)
        appendString(callback.service, to: &out)
        if let requestID = callback.requestID { appendString(requestID, to: &out) }
        appendInteger(UInt32(truncatingIfNeeded: callback.deviceIDs.count), to: &out)
        for device in callback.deviceIDs {
            appendString(device.id, to: &out)
            appendString(device.kind, to: &out)
        }
        if let status = callback.status { appendString(status, to: &out) }
        if let count = callback.callbackCount { appendInteger(UInt64(bitPattern: Int64(count)), to: &out) }
        appendString(callback.remoteAddress, to: &out)
        appendString(callback.dedupKey, to: &out)
        appendInteger(UInt32(truncatingIfNeeded: callback.body.count), to: &out)
        out.append(contentsOf: callback.body)
    }

    static func encode(_ callback: NewCallback) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(estimatedSize(callback))
        encode(callback, into: &out)
        return out
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) throws(JournalRecordError) -> NewCallback {
        var reader = ByteReader(bytes: bytes)
        let flags = try reader.byte("the flags")
        guard flags & ~(hasRequestID | hasStatus | hasCallbackCount) == 0 else { throw .unknownFlags(flags) }
        let receivedAt = Int64(bitPattern: try reader.u64("receivedAt"))
        let service = try reader.string("service")
        var requestID: String?
        if flags & hasRequestID != 0 { requestID = try reader.string("requestID") }
        let deviceCountOffset = reader.offset
        let deviceCount = try reader.u32("the device count")
        // Each device takes at least its two length words: refuse a count the rest cannot hold
        // before reserving room for it.
        guard Int(deviceCount) <= reader.remaining / 8 else { throw .tooManyDevices(count: deviceCount, offset: deviceCountOffset) }
        var devices: [DeviceID] = []
        devices.reserveCapacity(Int(deviceCount))
        for _ in 0..<deviceCount {
            let id = try reader.string("a device id")
            let kind = try reader.string("a device kind")
            devices.append(DeviceID(id: id, kind: kind))
        }
        var status: String?
        if flags & hasStatus != 0 { status = try reader.string("status") }
        var callbackCount: Int?
        if flags & hasCallbackCount != 0 { callbackCount = Int(truncatingIfNeeded: Int64(bitPattern: try reader.u64("callbackCount"))) }
        let remoteAddress = try reader.string("remoteAddress")
        let dedupKey = try reader.string("dedupKey")
        let body = try reader.bytes("the body")
        guard reader.remaining == 0 else { throw .trailingBytes(offset: reader.offset, count: reader.remaining) }
        return NewCallback(
            receivedAt: receivedAt, service: service, requestID: requestID, deviceIDs: devices, status: status,
            callbackCount: callbackCount, remoteAddress: remoteAddress, dedupKey: dedupKey, body: Array(body))
    }

    static func decode(_ bytes: [UInt8]) throws(JournalRecordError) -> NewCallback {
        // withUnsafeBytes rethrows untyped: carry the typed error out in a Result.
        try bytes.withUnsafeBytes { raw in Result { () throws(JournalRecordError) in try decode(raw) } }.get()
    }

    static func appendInteger<T: FixedWidthInteger>(_ value: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
    }

    private static func appendString(_ string: String, to out: inout [UInt8]) {
        appendInteger(UInt32(truncatingIfNeeded: string.utf8.count), to: &out)
        out.append(contentsOf: string.utf8)
    }
}

/// Reads little-endian fields, checking every bound before it loads.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    private(set) var offset = 0

    init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var remaining: Int { bytes.count - offset }

    mutating func byte(_ field: String) throws(JournalRecordError) -> UInt8 {
        guard remaining >= 1 else { throw .truncated(field: field, offset: offset) }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func u32(_ field: String) throws(JournalRecordError) -> UInt32 {
        guard remaining >= 4 else { throw .truncated(field: field, offset: offset) }
        defer { offset += 4 }
        return UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    mutating func u64(_ field: String) throws(JournalRecordError) -> UInt64 {
        guard remaining >= 8 else { throw .truncated(field: field, offset: offset) }
        defer { offset += 8 }
        return UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    mutating func bytes(_ field: String) throws(JournalRecordError) -> UnsafeRawBufferPointer {
        let start = offset
        let length = try u32(field)
        guard UInt64(length) <= UInt64(remaining) else { throw .truncated(field: field, offset: start) }
        defer { offset += Int(length) }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + Int(length)])
    }

    mutating func string(_ field: String) throws(JournalRecordError) -> String {
        let start = offset
        let raw = try bytes(field)
        guard let string = String(validating: raw, as: UTF8.self) else { throw .invalidUTF8(field: field, offset: start) }
        return string
    }
}
