import JSON
import Testing

private func literal(_ text: String) -> String {
    var output: [UInt8] = []
    JSONString.append(text, to: &output)
    return String(decoding: output, as: UTF8.self)
}

@Suite("JSON string escaping")
struct JSONStringTests {
    @Test func quotesAndBackslashesAreEscaped() {
        #expect(literal("") == #""""#)
        #expect(literal("plain") == #""plain""#)
        #expect(literal(#"a"b\c"#) == #""a\"b\\c""#)
        #expect(literal(#"\""#) == #""\\\"""#)
        // The solidus needs no escape.
        #expect(literal("a/b") == #""a/b""#)
    }

    @Test func everyControlCharacterIsEscapedAsLowercaseHex() {
        for code in 0..<0x20 {
            let hex = String(code, radix: 16)
            let expected = "\"\\u00" + String(repeating: "0", count: 2 - hex.count) + hex + "\""
            #expect(literal(String(Unicode.Scalar(UInt8(code)))) == expected)
        }
        #expect(literal("line\nnext\r\ttab") == #""line\u000anext\u000d\u0009tab""#)
        // DEL is not a control character to JSON.
        #expect(literal("\u{7F}") == "\"\u{7F}\"")
    }

    @Test func nonASCIIIsCopiedAsUTF8() {
        let text = "é ✓ 𝄞 \u{2028}\u{2029} \u{FEFF} \u{10FFFF}"
        // U+2028 and U+2029 are valid in JSON strings (RFC 8259); they are not escaped.
        #expect(literal(text) == "\"" + text + "\"")
        var output: [UInt8] = []
        JSONString.append("\u{2028}", to: &output)
        #expect(output == [0x22, 0xE2, 0x80, 0xA8, 0x22])
    }

    @Test func appendsAfterWhatIsThere() {
        var output = Array("x=".utf8)
        JSONString.append("a\u{0}b", to: &output)
        #expect(String(decoding: output, as: UTF8.self) == #"x="a\u0000b""#)
    }

    @Test func whatItWritesScansBackToTheSameText() throws {
        let samples = ["", "a\"b\\c", "\u{0}\u{1F}\n", "é ✓ 𝄞 \u{2028}", String(repeating: "\\\"", count: 100)]
        for sample in samples {
            var document: [UInt8] = Array("{".utf8)
            JSONString.append(sample, to: &document)
            document += Array(":1}".utf8)
            var names: [String] = []
            try document.withUnsafeBufferPointer { buffer throws(JSONScanner.Failure) in
                var scanner = JSONScanner(buffer)
                try scanner.scanTopLevelObject { name, _ in names.append(name) }
            }
            #expect(names == [sample])
        }
    }
}

@Suite("JSON writer")
struct JSONWriterTests {
    @Test func writesObjectsAndArraysWithCommas() {
        var json = JSONWriter()
        json.beginObject()
        json.key("status")
        json.string("stored")
        json.key("id")
        json.integer(42)
        json.key("list")
        json.beginArray()
        json.integer(-7)
        json.bool(true)
        json.bool(false)
        json.null()
        json.beginObject()
        json.endObject()
        json.beginArray()
        json.endArray()
        json.string("x")
        json.endArray()
        json.key("empty")
        json.beginObject()
        json.endObject()
        json.endObject()
        #expect(
            String(decoding: json.bytes, as: UTF8.self) == #"{"status":"stored","id":42,"list":[-7,true,false,null,{},[],"x"],"empty":{}}"#)
    }

    @Test func optionalsBecomeNull() {
        var json = JSONWriter()
        json.beginArray()
        json.string(nil as String?)
        json.string("a" as String?)
        json.integer(nil as Int?)
        json.integer(3 as Int64?)
        json.endArray()
        #expect(String(decoding: json.bytes, as: UTF8.self) == #"[null,"a",null,3]"#)
    }

    @Test func integersInEveryWidth() {
        var json = JSONWriter()
        json.beginArray()
        json.integer(0)
        json.integer(Int64.max)
        json.integer(Int64.min)
        json.integer(UInt64.max)
        json.integer(Int8.min)
        json.endArray()
        #expect(String(decoding: json.bytes, as: UTF8.self) == "[0,\(Int64.max),\(Int64.min),\(UInt64.max),-128]")
    }

    @Test func keysAndStringsAreEscaped() {
        var json = JSONWriter()
        json.beginObject()
        json.key("a\"b")
        json.string("line\n")
        json.endObject()
        #expect(String(decoding: json.bytes, as: UTF8.self) == #"{"a\"b":"line\u000a"}"#)
    }

    @Test func rawValuesAreCopiedAsTheyAre() {
        var json = JSONWriter()
        json.beginObject()
        json.key("body")
        json.raw(Array(#"{ "x" : [1, 2] }"#.utf8))
        json.key("after")
        json.integer(1)
        json.endObject()
        #expect(String(decoding: json.bytes, as: UTF8.self) == #"{"body":{ "x" : [1, 2] },"after":1}"#)
    }

    @Test func appendsToAnExistingBufferWithoutALeadingComma() {
        var json = JSONWriter(appendingTo: Array("prefix ".utf8), reservingCapacity: 16)
        json.beginObject()
        json.key("a")
        json.integer(1)
        json.endObject()
        #expect(String(decoding: json.bytes, as: UTF8.self) == #"prefix {"a":1}"#)

        var values = JSONWriter(appendingTo: Array("7".utf8))
        values.integer(8)
        #expect(String(decoding: values.bytes, as: UTF8.self) == "78")
    }
}
