import JSON
import Vocabulary

/// Why a callback body is refused. Messages describe the problem without
/// quoting the body.
public enum CallbackEnvelopeError: Error, Equatable, CustomStringConvertible {
    case notJSON(offset: Int, expected: String)
    case invalidUTF8(offset: Int)
    case notAnObject
    case tooDeep
    case duplicateMember(String)

    public var description: String {
        switch self {
        case .notJSON(let offset, let expected): return "body is not valid JSON: expected \(expected) at byte \(offset)"
        case .invalidUTF8(let offset): return "body is not valid UTF-8 at byte \(offset)"
        case .notAnObject: return "body must be a JSON object"
        case .tooDeep: return "body nests deeper than \(JSONScanner.maximumDepth) levels"
        case .duplicateMember(let name):
            return "body has the top-level member \"\(name.prefix(64))\" twice"
        }
    }
}

/// The common envelope of a ThingSpace callback (THINGSPACE.md §3), decoded
/// from the body without changing it. Every field is optional and a field of
/// an unexpected type is treated as absent: the body is stored whatever its
/// inner shape. Only the top level is interpreted.
public struct CallbackEnvelope: Sendable {
    public var username: String?
    public var password: String?
    public var requestID: String?
    public var deviceIDs: [DeviceID] = []
    public var status: String?
    public var callbackCount: Int?
    /// Where the top-level `password` value lies in the body.
    public var passwordRange: Range<Int>?
    /// What identifies the callback across deliveries, in canonical JSON:
    /// every top-level member (requestId, status, the `…Response` object and
    /// any other) with device ids compared as a set, kind case-folded.
    /// callbackCount, maxCallbackThreshold, username and password are left
    /// out: they change between deliveries of one callback. Including the
    /// rest means two different callbacks are never taken for one.
    public var identity: [UInt8] = []

    public init(body: [UInt8]) throws(CallbackEnvelopeError) {
        let result: Result<CallbackEnvelope, JSONScanner.Failure> = body.withUnsafeBufferPointer { buffer in
            var envelope = CallbackEnvelope()
            var scanner = JSONScanner(buffer)
            var identityMembers: [(name: String, canonical: [UInt8])] = []
            do throws(JSONScanner.Failure) {
                try scanner.scanTopLevelObject { (name, range) throws(JSONScanner.Failure) in
                    var value = JSONScanner(UnsafeBufferPointer(rebasing: buffer[range]))
                    switch name {
                    case "username": envelope.username = try? value.scanString()
                    case "password":
                        envelope.password = try? value.scanString()
                        envelope.passwordRange = range
                    case "requestId":
                        envelope.requestID = try? value.scanString()
                        identityMembers.append((name, try Self.canonical(buffer, range)))
                    case "status":
                        envelope.status = try? value.scanString()
                        identityMembers.append((name, try Self.canonical(buffer, range)))
                    case "callbackCount": envelope.callbackCount = Self.integer(buffer, range)
                    case "deviceIds":
                        envelope.deviceIDs = Self.deviceIDs(buffer, range)
                        identityMembers.append((name, Self.canonicalDeviceIDs(envelope.deviceIDs, buffer, range)))
                    case "maxCallbackThreshold": break
                    default:
                        identityMembers.append((name, try Self.canonical(buffer, range)))
                    }
                }
            } catch {
                return .failure(error)
            }
            identityMembers.sort { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
            for member in identityMembers {
                JSONString.append(member.name, to: &envelope.identity)
                envelope.identity.append(UInt8(ascii: ":"))
                envelope.identity.append(contentsOf: member.canonical)
                envelope.identity.append(0x0A)
            }
            return .success(envelope)
        }
        switch result {
        case .success(let envelope): self = envelope
        case .failure(.syntax(let offset, let expected)): throw .notJSON(offset: offset, expected: expected)
        case .failure(.invalidUTF8(let offset)): throw .invalidUTF8(offset: offset)
        case .failure(.notAnObject): throw .notAnObject
        case .failure(.tooDeep): throw .tooDeep
        case .failure(.duplicateMember(let name)): throw .duplicateMember(name)
        }
    }

    private init() {}

    /// The body with the top-level `password` value replaced by the redaction
    /// marker; every other byte unchanged.
    public func redacting(_ body: [UInt8]) -> [UInt8] {
        guard let range = passwordRange else { return body }
        var result = [UInt8]()
        result.reserveCapacity(body.count)
        result.append(contentsOf: body[..<range.lowerBound])
        JSONString.append(Redaction.marker, to: &result)
        result.append(contentsOf: body[range.upperBound...])
        return result
    }

    // MARK: Member decoding

    private static func canonical(_ buffer: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) throws(JSONScanner.Failure)
        -> [UInt8]
    {
        var scanner = JSONScanner(UnsafeBufferPointer(rebasing: buffer[range]))
        return try scanner.canonicalValue()
    }

    private static func integer(_ buffer: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Int? {
        let text = String(decoding: UnsafeBufferPointer(rebasing: buffer[range]), as: UTF8.self)
        return Int(text)
    }

    /// `[{"id": "...", "kind": "..."}, ...]`; entries of another shape are skipped.
    private static func deviceIDs(_ buffer: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> [DeviceID] {
        guard let elements = arrayElements(buffer, range) else { return [] }
        var result: [DeviceID] = []
        for element in elements {
            var id: String?
            var kind: String?
            var scanner = JSONScanner(UnsafeBufferPointer(rebasing: buffer[element]))
            try? scanner.scanTopLevelObject { (name, valueRange) throws(JSONScanner.Failure) in
                var value = JSONScanner(
                    UnsafeBufferPointer(
                        rebasing: buffer[element.lowerBound + valueRange.lowerBound..<element.lowerBound + valueRange.upperBound]))
                if name == "id" { id = try? value.scanString() }
                if name == "kind" { kind = try? value.scanString() }
            }
            if let id { result.append(DeviceID(id: id, kind: kind ?? "")) }
        }
        return result
    }

    /// Device ids compare as a set with `kind` case-folded; other shapes compare canonically.
    private static func canonicalDeviceIDs(
        _ ids: [DeviceID], _ buffer: UnsafeBufferPointer<UInt8>, _ range: Range<Int>
    ) -> [UInt8] {
        guard !ids.isEmpty else { return (try? canonical(buffer, range)) ?? [] }
        let normalized = ids.map { ($0.kind.lowercased(), $0.id) }.sorted { $0 < $1 }
        var output: [UInt8] = [UInt8(ascii: "[")]
        for (position, device) in normalized.enumerated() {
            if position > 0 { output.append(UInt8(ascii: ",")) }
            JSONString.append(device.0, to: &output)
            output.append(UInt8(ascii: ":"))
            JSONString.append(device.1, to: &output)
        }
        output.append(UInt8(ascii: "]"))
        return output
    }

    /// The value ranges of an array's elements, or nil if the value is not an array.
    private static func arrayElements(_ buffer: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> [Range<Int>]? {
        var scanner = JSONScanner(UnsafeBufferPointer(rebasing: buffer[range]))
        var elements: [Range<Int>] = []
        do throws(JSONScanner.Failure) {
            try scanner.scanTopLevelArray { element in
                elements.append((range.lowerBound + element.lowerBound)..<(range.lowerBound + element.upperBound))
            }
        } catch {
            // The value was validated as a whole already: only another kind of value ends here.
            return elements.isEmpty ? nil : elements
        }
        return elements
    }
}
