// The journal's pure parts on bytes alone: the record payload round trip and its strict decoder,
// CRC-32C against published vectors, frames at every split offset and under every flipped bit,
// and the segment header.
import CallbackStore
import Foundation
import Testing
import Vocabulary

@testable import SQLiteStore

@Suite struct JournalRecordTests {
    static let full = NewCallback(
        receivedAt: 1_700_000_000_123, service: "CarrierService", requestID: "0b0c9a2e-req",
        deviceIDs: [DeviceID(id: "990003425730535", kind: "imei"), DeviceID(id: "89148000000800000000", kind: "ICCID")],
        status: "Success", callbackCount: 3, remoteAddress: "203.0.113.9", dedupKey: "k-1",
        body: Array(#"{"requestId":"0b0c9a2e-req","password":"[REDACTED]"}"#.utf8))
    static let sparse = NewCallback(receivedAt: -1, service: "", remoteAddress: "", dedupKey: "", body: [])
    static let nonASCII = NewCallback(
        receivedAt: Int64.max, service: "Gerätedienst", requestID: "", deviceIDs: [DeviceID(id: "", kind: "名前")],
        status: "✅ fertig", callbackCount: Int.min, remoteAddress: "[2001:db8::1]", dedupKey: "Zürich 🚀",
        body: [0, 255, 0xC3, 0x28, 10])

    @Test(arguments: [full, sparse, nonASCII])
    func roundTrips(_ callback: NewCallback) throws {
        let bytes = JournalPayload.encode(callback)
        #expect(bytes.count <= JournalPayload.estimatedSize(callback))
        #expect(try JournalPayload.decode(bytes) == callback)
    }

    @Test func optionalFieldsAreFlaggedNotEmpty() throws {
        // nil and "" differ on disk and come back as they went in.
        var empty = Self.sparse
        empty.requestID = ""
        empty.status = ""
        empty.callbackCount = 0
        #expect(try JournalPayload.decode(JournalPayload.encode(empty)) == empty)
        #expect(JournalPayload.encode(empty) != JournalPayload.encode(Self.sparse))
    }

    @Test(arguments: [full, sparse, nonASCII])
    func everyTruncationIsAnError(_ callback: NewCallback) {
        let bytes = JournalPayload.encode(callback)
        for cut in 0..<bytes.count {
            #expect(throws: JournalRecordError.self) { try JournalPayload.decode(Array(bytes[0..<cut])) }
        }
    }

    @Test func trailingBytesUnknownFlagsAndBadUTF8AreErrors() throws {
        let bytes = JournalPayload.encode(Self.full)
        #expect(throws: JournalRecordError.trailingBytes(offset: bytes.count, count: 1)) { try JournalPayload.decode(bytes + [0]) }
        var flagged = bytes
        flagged[0] |= 0x80
        #expect(throws: JournalRecordError.unknownFlags(flagged[0])) { try JournalPayload.decode(flagged) }
        // The service's first byte (after flags, receivedAt and its length word) made invalid UTF-8.
        var garbled = bytes
        garbled[1 + 8 + 4] = 0xFF
        #expect(throws: JournalRecordError.invalidUTF8(field: "service", offset: 9)) { try JournalPayload.decode(garbled) }
    }

    @Test func aHugeDeviceCountIsRefusedBeforeAllocating() {
        var bytes: [UInt8] = [0]
        JournalPayload.appendInteger(UInt64(1), to: &bytes)
        JournalPayload.appendInteger(UInt32(0), to: &bytes)  // service ""
        JournalPayload.appendInteger(UInt32.max, to: &bytes)  // device count
        #expect(throws: JournalRecordError.tooManyDevices(count: .max, offset: 13)) { try JournalPayload.decode(bytes) }
    }

    @Test func garbageNeverTraps() {
        var generator = SplitMix(seed: 42)
        let valid = JournalPayload.encode(Self.full)
        for round in 0..<20_000 {
            var bytes: [UInt8]
            if round % 2 == 0 {
                bytes = (0..<Int(generator.next() % 96)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            } else {
                bytes = valid
                for _ in 0..<(1 + generator.next() % 4) {
                    bytes[Int(generator.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: generator.next())
                }
            }
            _ = try? JournalPayload.decode(bytes)
        }
    }
}

/// A small deterministic generator, so a failing case can be replayed.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct JournalCRC32CTests {
    @Test func checkValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([]) == 0)
    }

    /// RFC 3720 (iSCSI), appendix B.4.
    @Test func rfc3720Vectors() {
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(CRC32C.checksum((0..<32).reversed().map { UInt8($0) }) == 0x113F_DB5C)
        let readCommand: [UInt8] = [
            0x01, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
            0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ]
        #expect(CRC32C.checksum(readCommand) == 0xD996_3A56)
    }

    /// Slicing-by-8 agrees with the bit-at-a-time definition at every length and split.
    @Test func agreesWithTheDefinitionAtEverySplit() {
        var generator = SplitMix(seed: 7)
        let bytes = (0..<67).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        for length in 0...bytes.count {
            let expected = bitwise(bytes[0..<length])
            #expect(CRC32C.checksum(Array(bytes[0..<length])) == expected)
            for split in 0...length {
                var crc = CRC32C()
                crc.update(Array(bytes[0..<split]))
                crc.update(Array(bytes[split..<length]))
                #expect(crc.value == expected)
            }
        }
    }

    @Test func throughputIsPrinted() {
        let bytes = [UInt8](repeating: 0xA5, count: 8 << 20)
        let clock = ContinuousClock()
        var checksum: UInt32 = 0
        let elapsed = clock.measure { checksum = CRC32C.checksum(bytes) }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("CRC-32C slicing-by-8: \(Int(8 / max(seconds, 1e-9))) MB/s over 8 MiB (checksum \(checksum); debug builds are far slower)")
    }

    private func bitwise(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return ~crc
    }
}

@Suite struct JournalFrameTests {
    private func frame(id: Int64, _ callback: NewCallback = journalCallback(1)) throws -> [UInt8] {
        var out: [UInt8] = []
        try JournalFrame.append(JournalRecord(id: id, callback: callback), to: &out)
        return out
    }

    private func inspect(_ bytes: [UInt8], window: Int? = nil, remaining: Int? = nil) -> JournalFrame.Inspection {
        bytes.withUnsafeBytes { raw in
            JournalFrame.inspect(
                UnsafeRawBufferPointer(rebasing: raw[0..<(window ?? bytes.count)]), remainingInFile: remaining ?? bytes.count)
        }
    }

    @Test func layout() throws {
        let bytes = try frame(id: 0x0102_0304_0506_0708)
        let payload = JournalPayload.encode(journalCallback(1))
        #expect(bytes.count == 16 + payload.count)
        #expect(Array(bytes[0..<4]) == withUnsafeBytes(of: UInt32(payload.count).littleEndian, Array.init))
        #expect(Array(bytes[8..<16]) == [8, 7, 6, 5, 4, 3, 2, 1])
        #expect(Array(bytes[16...]) == payload)
        #expect(Array(bytes[4..<8]) == withUnsafeBytes(of: CRC32C.checksum(Array(bytes[8...])).littleEndian, Array.init))
        #expect(inspect(bytes) == .record(id: 0x0102_0304_0506_0708, frameLength: bytes.count))
    }

    /// Fed a growing window (the whole frame in the file), the inspection asks for more until the
    /// frame is whole, and never decides early.
    @Test func everySplitOfTheWindowAsksForMore() throws {
        let bytes = try frame(id: 9) + [UInt8](repeating: 0, count: 8)
        let length = bytes.count - 8
        for split in 0..<length {
            let result = inspect(bytes, window: split)
            #expect(result == .needMore(split < 4 ? 4 : length), "split \(split)")
        }
        #expect(inspect(bytes, window: length) == .record(id: 9, frameLength: length))
    }

    /// A file cut at every offset inside a frame is torn, never a record; cut before the length
    /// word's end, with nothing but zeros, is the end.
    @Test func everyTruncationIsTorn() throws {
        let bytes = try frame(id: 9)
        for cut in 1..<bytes.count {
            let result = inspect(Array(bytes[0..<cut]))
            switch result {
            case .torn: break
            default: Issue.record("cut at \(cut): \(result)")
            }
        }
        #expect(inspect([]) == .end)
        #expect(inspect([0, 0, 0]) == .end)
        #expect(inspect([0, 0, 0, 0, 0xFF]) == .end)
    }

    @Test func everyFlippedBitIsCaught() throws {
        let bytes = try frame(id: 12) + [0, 0, 0, 0]
        for bit in 0..<(bytes.count - 4) * 8 {
            var damaged = bytes
            damaged[bit / 8] ^= 1 << (bit % 8)
            if case .record = inspect(damaged) { Issue.record("bit \(bit) flipped reads as a record") }
        }
    }
}

@Suite struct JournalSegmentHeaderTests {
    @Test func roundTripAndName() throws {
        let header = JournalSegmentHeader(firstID: 1_234_567, preallocatedSize: 64 << 20)
        let bytes = header.encoded()
        #expect(bytes.count == 32)
        #expect(Array(bytes[0..<4]) == Array("TSLJ".utf8))
        #expect(try bytes.withUnsafeBytes { try JournalSegmentHeader.decode($0) } == header)
        #expect(JournalSegmentHeader.fileName(firstID: 1_234_567) == "00000000000001234567.seg")
        #expect(JournalSegmentHeader.fileName(firstID: .max) == "09223372036854775807.seg")
        #expect(JournalSegmentHeader.firstID(fileName: "00000000000001234567.seg") == 1_234_567)
        for name in ["0000000000001234567.seg", "00000000000001234567.seg.tmp", "0000000000000123456x.seg", "99999999999999999999.seg"] {
            #expect(JournalSegmentHeader.firstID(fileName: name) == nil, "\(name)")
        }
    }

    @Test func badHeadersAreNamed() {
        let good = JournalSegmentHeader(firstID: 5, preallocatedSize: 4096).encoded()
        func decode(_ bytes: [UInt8]) throws(JournalSegmentHeader.Problem) {
            _ = try bytes.withUnsafeBytes { raw in
                Result { () throws(JournalSegmentHeader.Problem) in try JournalSegmentHeader.decode(raw) }
            }.get()
        }
        #expect(throws: JournalSegmentHeader.Problem.tooShort(31)) { try decode(Array(good[0..<31])) }
        var magic = good
        magic[0] = UInt8(ascii: "X")
        #expect(throws: JournalSegmentHeader.Problem.badMagic) { try decode(magic) }
        for byte in 4..<32 {
            var flipped = good
            flipped[byte] ^= 0x10
            #expect(throws: JournalSegmentHeader.Problem.checksumMismatch) { try decode(flipped) }
        }
    }
}
