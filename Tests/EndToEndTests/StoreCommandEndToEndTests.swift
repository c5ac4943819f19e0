import Foundation
import TestSupport
import Testing

/// `store verify` and `store rebuild-index` through the real binary, on stores written by `serve`.
@Suite(.serialized) struct StoreCommandEndToEndTests {
    static let sqliteShell = "/usr/bin/sqlite3"
    static let hasSQLiteShell = Testing.ConditionTrait.enabled(
        if: FileManager.default.isExecutableFile(atPath: sqliteShell), "sqlite3 is not installed (Debian: apt-get install sqlite3)")

    /// A store of `count` callbacks written by `serve`, which is left running.
    func runningStore(_ count: Int = 20) throws -> ListenerFixture {
        let fixture = try ListenerFixture()
        for number in 0..<count {
            let response = try TestClient(port: fixture.port, timeoutSeconds: 10).post(
                "/callbacks/CarrierService", json: callbackBody(requestID: "store-\(number)"))
            #expect(response.status == 200, "\(response.bodyText)")
        }
        return fixture
    }

    /// The same, with the service stopped (drained and checkpointed).
    func stoppedStore(_ count: Int = 20) throws -> ListenerFixture {
        let fixture = try runningStore(count)
        fixture.process.signal(SIGTERM)
        #expect(fixture.process.waitForExit() == 0)
        return fixture
    }

    func segmentPaths(_ fixture: ListenerFixture) throws -> [String] {
        let journal = fixture.directory + "/journal"
        return try FileManager.default.contentsOfDirectory(atPath: journal).filter { $0.hasSuffix(".seg") }.sorted().map {
            journal + "/" + $0
        }
    }

    func verify(_ fixture: ListenerFixture) throws -> (status: Int32, stdout: String, stderr: String) {
        try runListenerCommand(["store", "verify", "--config", fixture.configPath], timeout: .seconds(30))
    }

    @Test func aStoreWrittenByServeVerifiesCleanWhileRunningAndAfter() throws {
        let fixture = try runningStore()
        let running = try verify(fixture)
        #expect(running.status == 0, "\(running.stdout)\(running.stderr)")
        #expect(running.stdout.contains("store verify: consistent"), "\(running.stdout)")
        fixture.process.signal(SIGTERM)
        #expect(fixture.process.waitForExit() == 0)
        let stopped = try runListenerCommand(["store", "verify", "--database", fixture.databasePath])
        #expect(stopped.status == 0, "\(stopped.stdout)\(stopped.stderr)")
        #expect(stopped.stdout.contains("compared 20"), "\(stopped.stdout)")
    }

    @Test func aTornTailInTheNewestSegmentIsReportedWithExitZero() throws {
        let fixture = try stoppedStore()
        let newest = try #require(try segmentPaths(fixture).last)
        var bytes = try segmentBytes(newest)
        let end = try #require(frameOffsets(bytes).last.map { $0 + 16 + frameLength(bytes, at: $0) })
        bytes.replaceSubrange(end..<end + 12, with: [0x20, 0, 0, 0, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3, 4])
        try Data(bytes).write(to: URL(fileURLWithPath: newest))
        let result = try verify(fixture)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("unacknowledged tail in \(newest) from byte \(end) (will be cut at next start)"), "\(result.stdout)")
        #expect(try segmentBytes(newest) == bytes, "verify changed the segment")
    }

    @Test func aFlippedBitInAnOlderSegmentExitsOneNamingSegmentAndOffset() throws {
        let fixture = try stoppedStore()
        let older = try #require(try segmentPaths(fixture).last)
        var bytes = try segmentBytes(older)
        let offsets = frameOffsets(bytes)
        // A newer, empty segment makes this one older, as a rollover would.
        let nextID = try #require(segmentFirstID(older)) + Int64(offsets.count)
        try Data(segmentHeader(firstID: nextID, size: 4096) + [UInt8](repeating: 0, count: 4096 - 32)).write(
            to: URL(fileURLWithPath: fixture.directory + "/journal/" + segmentName(nextID)))
        #expect(try verify(fixture).status == 0)

        bytes[offsets[5] + 40] ^= 0x10
        try Data(bytes).write(to: URL(fileURLWithPath: older))
        let result = try verify(fixture)
        #expect(result.status == 1, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("damage: \(older) at byte \(offsets[5])"), "\(result.stdout)")
        #expect(result.stderr.contains("not consistent"), "\(result.stderr)")
        #expect(result.stderr.contains(older), "\(result.stderr)")
    }

    @Test(hasSQLiteShell) func aRowChangedInSQLiteIsAMismatch() throws {
        let fixture = try stoppedStore()
        let shell = try runProgram(Self.sqliteShell, [fixture.databasePath, "UPDATE callbacks SET request_id = 'changed' WHERE id = 3"])
        #expect(shell == 0)
        let result = try verify(fixture)
        #expect(result.status == 1, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("mismatch: record 3: the index differs from the journal in requestId"), "\(result.stdout)")
    }

    @Test func aGarbageDatabaseExitsOneWithAClearMessage() throws {
        let fixture = try stoppedStore(3)
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: fixture.databasePath + suffix) }
        var generator = SystemRandomNumberGenerator()
        try Data((0..<(4 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) }).write(
            to: URL(fileURLWithPath: fixture.databasePath))
        let started = ContinuousClock.now
        let result = try verify(fixture)
        #expect(ContinuousClock.now - started < .seconds(20))
        #expect(result.status == 1, "\(result.stdout)\(result.stderr)")
        #expect(result.stderr.contains("is damaged or is not a SQLite database"), "\(result.stderr)")
    }

    @Test func rebuildIndexAfterTheDatabaseWasDeletedRestoresEveryRecord() throws {
        let fixture = try stoppedStore(30)
        let before = try fixture.export()
        #expect(before.count == 30)
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: fixture.databasePath + suffix) }
        #expect(try verify(fixture).status == 1)

        let explained = try runListenerCommand(["store", "rebuild-index", "--config", fixture.configPath])
        #expect(explained.status == 2)
        #expect(explained.stderr.contains("--yes"), "\(explained.stderr)")
        #expect(!FileManager.default.fileExists(atPath: fixture.databasePath))

        let rebuilt = try runListenerCommand(["store", "rebuild-index", "--config", fixture.configPath, "--yes"])
        #expect(rebuilt.status == 0, "\(rebuilt.stdout)\(rebuilt.stderr)")
        #expect(rebuilt.stdout.contains("indexed 30 records"), "\(rebuilt.stdout)")
        #expect(rebuilt.stdout.contains("ids 1–30"), "\(rebuilt.stdout)")
        let after = try fixture.export()
        #expect(after.map { $0["id"] as? Int } == before.map { $0["id"] as? Int })
        #expect(after.map { $0["requestId"] as? String } == before.map { $0["requestId"] as? String })
        #expect(try verify(fixture).status == 0)

        // Again, with a database there: it is moved aside, not deleted.
        let again = try runListenerCommand(["store", "rebuild-index", "--database", fixture.databasePath, "--yes"])
        #expect(again.status == 0, "\(again.stdout)\(again.stderr)")
        let moved = try FileManager.default.contentsOfDirectory(atPath: fixture.directory).filter { $0.contains(".damaged-") }
        #expect(moved.contains { !$0.hasSuffix("-wal") && !$0.hasSuffix("-shm") }, "\(moved)")
        #expect(again.stdout.contains("moved the old database to"), "\(again.stdout)")

        // The service goes on from there with the next id.
        try fixture.start()
        let response = try TestClient(port: fixture.port, timeoutSeconds: 10).post(
            "/callbacks/CarrierService", json: callbackBody(requestID: "after-rebuild"))
        #expect(response.status == 200)
        fixture.process.signal(SIGTERM)
        #expect(fixture.process.waitForExit() == 0)
        #expect(try fixture.export().last?["id"] as? Int == 31)
    }

    @Test func rebuildIndexRefusesWhileTheServiceRuns() throws {
        let fixture = try runningStore(5)
        let result = try runListenerCommand(["store", "rebuild-index", "--config", fixture.configPath, "--yes"])
        #expect(result.status == 1, "\(result.stdout)\(result.stderr)")
        #expect(result.stderr.contains("refused"), "\(result.stderr)")
        #expect(result.stderr.contains("process \(fixture.process.pid)"), "\(result.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: fixture.directory).allSatisfy { !$0.contains(".damaged-") })
        fixture.process.signal(SIGTERM)
        #expect(fixture.process.waitForExit() == 0)
        #expect(try fixture.export().count == 5)
    }

    @Test func usageErrorsExitTwo() throws {
        #expect(try runListenerCommand(["store", "verify", "--no-such-option"]).status == 2)
    }
}

// MARK: - The journal's format, as far as these tests need it

private func segmentBytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

private func frameLength(_ bytes: [UInt8], at offset: Int) -> Int {
    Int(bytes[offset]) | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2]) << 16 | Int(bytes[offset + 3]) << 24
}

/// The offsets of a segment's frames: `[u32 length][u32 CRC-32C][u64 id][payload]` after a 32-byte header.
private func frameOffsets(_ bytes: [UInt8]) -> [Int] {
    var offsets: [Int] = []
    var offset = 32
    while offset + 4 <= bytes.count, frameLength(bytes, at: offset) != 0 {
        offsets.append(offset)
        offset += 16 + frameLength(bytes, at: offset)
    }
    return offsets
}

private func segmentFirstID(_ path: String) -> Int64? { Int64(URL(fileURLWithPath: path).lastPathComponent.prefix(20)) }

private func segmentName(_ firstID: Int64) -> String {
    let digits = String(firstID)
    return String(repeating: "0", count: 20 - digits.count) + digits + ".seg"
}

/// "TSLJ", version 1, header size 32, first id, preallocated size, zero, CRC-32C of the 28 bytes before.
private func segmentHeader(firstID: Int64, size: Int64) -> [UInt8] {
    var out = Array("TSLJ".utf8)
    func append<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) } }
    append(UInt16(1))
    append(UInt16(32))
    append(UInt64(firstID))
    append(UInt64(size))
    append(UInt32(0))
    append(crc32c(out))
    return out
}

private func crc32c(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
    }
    return ~crc
}

private func runProgram(_ path: String, _ arguments: [String]) throws -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    try process.run()
    process.waitUntilExit()
    return process.terminationStatus
}
