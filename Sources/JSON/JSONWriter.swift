// Writing the little JSON the project produces (responses, log lines, export
// lines, the store's device column) straight into bytes: Foundation's encoder
// would cost an object graph and a copy for each one.

/// Appends JSON values to a byte buffer, putting the commas in.
///
/// It writes; it does not check. Callers open and close what they open, and
/// give each object member a `key` before its value. Strings are escaped by
/// `JSONString`; numbers are written in their shortest form.
///
/// ```swift
/// var json = JSONWriter()
/// json.beginObject()
/// json.key("status"); json.string("stored")
/// json.key("id"); json.integer(42)
/// json.endObject()
/// // json.bytes == Array(#"{"status":"stored","id":42}"#.utf8)
/// ```
public struct JSONWriter: Sendable {
    /// What has been written, after whatever the buffer held before.
    public var bytes: [UInt8]
    /// Where this writer's output starts in `bytes`: no comma goes before the first value.
    private let start: Int

    /// A writer appending to `bytes` (empty by default), with room for `capacity` more bytes.
    public init(appendingTo bytes: [UInt8] = [], reservingCapacity capacity: Int = 0) {
        self.bytes = bytes
        self.start = bytes.count
        if capacity > 0 { self.bytes.reserveCapacity(bytes.count + capacity) }
    }

    // MARK: Containers

    public mutating func beginObject() {
        separate()
        bytes.append(UInt8(ascii: "{"))
    }
    public mutating func endObject() { bytes.append(UInt8(ascii: "}")) }
    public mutating func beginArray() {
        separate()
        bytes.append(UInt8(ascii: "["))
    }
    public mutating func endArray() { bytes.append(UInt8(ascii: "]")) }

    /// An object member's name and the colon; its value comes next.
    public mutating func key(_ name: String) {
        separate()
        JSONString.append(name, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
    }

    // MARK: Values

    public mutating func string(_ value: String) {
        separate()
        JSONString.append(value, to: &bytes)
    }

    /// The string, or `null` when there is none.
    public mutating func string(_ value: String?) {
        if let value { string(value) } else { null() }
    }

    public mutating func integer(_ value: some BinaryInteger) {
        separate()
        appendDecimal(value)
    }

    /// The integer, or `null` when there is none.
    public mutating func integer(_ value: (some BinaryInteger)?) {
        if let value { integer(value) } else { null() }
    }

    public mutating func bool(_ value: Bool) {
        separate()
        if value { appendASCII("true") } else { appendASCII("false") }
    }

    public mutating func null() {
        separate()
        appendASCII("null")
    }

    /// A value that is already JSON (a stored body, a canonical value), copied
    /// byte for byte. It must be one complete value; whitespace around it is kept.
    public mutating func raw(_ json: some Sequence<UInt8>) {
        separate()
        bytes.append(contentsOf: json)
    }

    /// The same for bytes in an array: a copy of the whole, not a generic walk byte by byte from
    /// another module (which costs more than the rest of a webhook's body).
    public mutating func raw(_ json: [UInt8]) {
        separate()
        bytes.append(contentsOf: json)
    }

    // MARK: Helpers

    /// A comma unless this is the first value of the output, of a container, or a member's value.
    private mutating func separate() {
        guard bytes.count > start, let last = bytes.last else { return }
        switch last {
        case UInt8(ascii: "{"), UInt8(ascii: "["), UInt8(ascii: ":"): return
        default: bytes.append(UInt8(ascii: ","))
        }
    }

    private mutating func appendASCII(_ text: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// Decimal digits without going through `String`.
    private mutating func appendDecimal(_ value: some BinaryInteger) {
        if value == 0 {
            bytes.append(UInt8(ascii: "0"))
            return
        }
        if value < 0 { bytes.append(UInt8(ascii: "-")) }
        let first = bytes.count
        var rest = value.magnitude
        while rest != 0 {
            let (quotient, digit) = rest.quotientAndRemainder(dividingBy: 10)
            bytes.append(UInt8(ascii: "0") + UInt8(digit))
            rest = quotient
        }
        bytes[first...].reverse()
    }
}
