// The configuration file, read by the project's strict JSON scanner rather than by swift-configuration's
// JSON provider, which refuses a whole file for one list of objects (`delivery.destinations`) and names
// no key when it does. The file is parsed once: `delivery.destinations` is kept as a tree for
// `ListenerConfiguration`, and everything else becomes swift-configuration values (an in-memory
// provider) under the same keys, so the layering with credentials and the environment is unchanged.
import Configuration
import JSON

/// A JSON value of the configuration file; object members keep the file's order.
indirect enum ConfigurationJSON: Sendable {
    case object([(name: String, value: ConfigurationJSON)])
    case array([ConfigurationJSON])
    case string(String)
    /// A number written without fraction or exponent that fits an `Int`.
    case int(Int)
    case double(Double)
    case bool(Bool)
    case null

    /// An integer, also when written as `16.0` or `1e3`.
    var intValue: Int? {
        switch self {
        case .int(let value): return value
        case .double(let value): return Int(exactly: value)
        default: return nil
        }
    }

    var doubleValue: Double? {
        switch self {
        case .int(let value): return Double(value)
        case .double(let value): return value
        default: return nil
        }
    }
}

/// A configuration file, parsed and split for the providers.
struct ConfigurationFile {
    /// Everything but `delivery.destinations`, as swift-configuration values.
    var values: [AbsoluteConfigKey: ConfigValue] = [:]
    /// `delivery.destinations` as written; nil when the file has none.
    var destinations: ConfigurationJSON?
    /// Top-level members that are neither objects nor null: a section written as a value.
    var valueMembers: Set<String> = []

    /// Why a file is not a configuration: where, never what (the file may hold secrets).
    enum Problem: Error, Equatable {
        /// Not JSON at this byte offset; `expected` is the scanner's fixed text, never file content.
        case syntax(offset: Int, expected: String)
        /// An object has this member twice; the key path of the second one.
        case duplicateKey(String)
        /// A member of `delivery` that no setting has (a typo there would silently deliver nothing).
        case unknownKey(String, known: [String])
    }

    /// The members `delivery` may have.
    static let deliveryKeys = ["destinations", "secrets", "previousSecrets"]

    /// No file: no values.
    init() {}

    /// Parses `bytes` (a UTF-8 byte order mark is allowed) into values under dotted keys.
    init(bytes: [UInt8]) throws(Problem) {
        let members = try Self.parseDocument(bytes)
        var rest: [(name: String, value: ConfigurationJSON)] = []
        for member in members {
            switch member.value {
            case .object, .null: break
            default: valueMembers.insert(member.name)
            }
            guard member.name == "delivery", case .object(let delivery) = member.value else {
                rest.append(member)
                continue
            }
            if let unknown = delivery.first(where: { !Self.deliveryKeys.contains($0.name) }) {
                throw .unknownKey("delivery." + unknown.name, known: Self.deliveryKeys)
            }
            destinations = delivery.first { $0.name == "destinations" }?.value
            rest.append((member.name, .object(delivery.filter { $0.name != "destinations" })))
        }
        Self.flatten(.object(rest), at: [], into: &values)
    }

    /// One line and column (both from 1, columns in Unicode scalars) for a byte offset.
    static func position(of offset: Int, in bytes: [UInt8]) -> (line: Int, column: Int) {
        let end = min(max(offset, 0), bytes.count)
        var line = 1
        var lineStart = 0
        for index in 0..<end where bytes[index] == UInt8(ascii: "\n") {
            line += 1
            lineStart = index + 1
        }
        // Counting lead bytes counts scalars; the scanner has validated the UTF-8 before the offset.
        let column = bytes[lineStart..<end].reduce(1) { $1 & 0xC0 == 0x80 ? $0 : $0 + 1 }
        return (line, column)
    }

    // MARK: Parsing

    private static let byteOrderMark: [UInt8] = [0xEF, 0xBB, 0xBF]

    /// The document's top-level members. JSONScanner validates the whole document (grammar, UTF-8,
    /// nesting depth, unique top-level names) before any member is built, so building the tree
    /// can only find a repeated name inside a nested object, which it reports with its key path.
    static func parseDocument(_ bytes: [UInt8]) throws(Problem) -> [(name: String, value: ConfigurationJSON)] {
        let skip = bytes.starts(with: byteOrderMark) ? byteOrderMark.count : 0
        let result: Result<[(name: String, value: ConfigurationJSON)], Problem> = bytes.withUnsafeBufferPointer { whole in
            let buffer = UnsafeBufferPointer(rebasing: whole[skip...])
            var scanner = JSONScanner(buffer)
            var members: [(name: String, value: ConfigurationJSON)] = []
            do throws(JSONScanner.Failure) {
                try scanner.scanTopLevelObject { name, range throws(JSONScanner.Failure) in
                    members.append((name, try build(UnsafeBufferPointer(rebasing: buffer[range]), path: name)))
                }
            } catch {
                switch error {
                case .syntax(let offset, let expected): return .failure(.syntax(offset: skip + offset, expected: expected))
                case .invalidUTF8(let offset): return .failure(.syntax(offset: skip + offset, expected: "valid UTF-8"))
                case .tooDeep:
                    let limit = JSONScanner.maximumDepth
                    return .failure(.syntax(offset: skip + scanner.index, expected: "at most \(limit) nested objects and lists"))
                case .notAnObject: return .failure(.syntax(offset: skip + scanner.index, expected: "a JSON object ({...})"))
                case .duplicateMember(let path): return .failure(.duplicateKey(path))
                }
            }
            return .success(members)
        }
        return try result.get()
    }

    /// Builds one value the scanner has already validated. A repeated member name is reported
    /// as `.duplicateMember` carrying the member's whole key path.
    private static func build(_ bytes: UnsafeBufferPointer<UInt8>, path: String) throws(JSONScanner.Failure) -> ConfigurationJSON {
        var scanner = JSONScanner(bytes)
        switch bytes.first {
        case UInt8(ascii: "{"):
            var members: [(name: String, value: ConfigurationJSON)] = []
            var inMember = false
            do throws(JSONScanner.Failure) {
                try scanner.scanTopLevelObject { name, range throws(JSONScanner.Failure) in
                    inMember = true
                    members.append((name, try build(UnsafeBufferPointer(rebasing: bytes[range]), path: path + "." + name)))
                    inMember = false
                }
            } catch .duplicateMember(let name) where !inMember {
                throw .duplicateMember(path + "." + name)  // at this level: the scanner knows only the name
            }
            return .object(members)
        case UInt8(ascii: "["):
            var elements: [ConfigurationJSON] = []
            try scanner.scanTopLevelArray { range throws(JSONScanner.Failure) in
                elements.append(try build(UnsafeBufferPointer(rebasing: bytes[range]), path: path + "[\(elements.count)]"))
            }
            return .array(elements)
        case UInt8(ascii: "\""): return .string(try scanner.scanString())
        case UInt8(ascii: "t"): return .bool(true)
        case UInt8(ascii: "f"): return .bool(false)
        case UInt8(ascii: "n"): return .null
        default:
            let text = String(decoding: bytes, as: UTF8.self)
            if !text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }), let integer = Int(text) { return .int(integer) }
            return .double(Double(text) ?? .nan)  // the scanner has checked the number's grammar
        }
    }

    // MARK: Values for swift-configuration

    /// A value no typed look-up asks for: a list of objects or of mixed values, or an object where
    /// a setting is read as a value. Reading its key then fails with that key's "expected" message,
    /// and a key nothing reads is ignored like any unknown key.
    private static let unrepresentable = ConfigContent.byteChunkArray([])

    /// Every value under its key components. Nothing of the file is printed by the library:
    /// every value is marked secret.
    private static func flatten(_ value: ConfigurationJSON, at key: [String], into values: inout [AbsoluteConfigKey: ConfigValue]) {
        func put(_ content: ConfigContent) { values[AbsoluteConfigKey(key)] = ConfigValue(content, isSecret: true) }
        switch value {
        case .object(let members):
            if !key.isEmpty { put(unrepresentable) }
            for member in members { flatten(member.value, at: key + [member.name], into: &values) }
        case .string(let text): put(.string(text))
        case .bool(let flag): put(.bool(flag))
        case .int, .double:
            if let integer = value.intValue { put(.int(integer)) } else { put(.double(value.doubleValue ?? .nan)) }
        case .null: break  // absent, as swift-configuration's JSON provider has it
        case .array(let elements): put(arrayContent(elements))
        }
    }

    private static func arrayContent(_ elements: [ConfigurationJSON]) -> ConfigContent {
        var strings: [String] = []
        var numbers: [ConfigurationJSON] = []
        var flags: [Bool] = []
        for element in elements {
            switch element {
            case .string(let text): strings.append(text)
            case .int, .double: numbers.append(element)
            case .bool(let flag): flags.append(flag)
            case .object, .array, .null: return unrepresentable
            }
        }
        if strings.count == elements.count { return .stringArray(strings) }  // also the empty list
        if numbers.count == elements.count {
            let integers = numbers.compactMap(\.intValue)
            return integers.count == numbers.count ? .intArray(integers) : .doubleArray(numbers.compactMap(\.doubleValue))
        }
        if flags.count == elements.count { return .boolArray(flags) }
        return unrepresentable
    }
}
