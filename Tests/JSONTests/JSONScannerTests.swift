import Testing

@testable import JSON

/// Scans `text` as a document that must be one object; returns the members' names and value text.
private func members(_ text: String) throws(JSONScanner.Failure) -> [(String, String)] {
    try members(Array(text.utf8))
}

private func members(_ bytes: [UInt8]) throws(JSONScanner.Failure) -> [(String, String)] {
    let result: Result<[(String, String)], JSONScanner.Failure> = bytes.withUnsafeBufferPointer { buffer in
        var scanner = JSONScanner(buffer)
        var found: [(String, String)] = []
        do throws(JSONScanner.Failure) {
            try scanner.scanTopLevelObject { name, range in
                found.append((name, String(decoding: buffer[range], as: UTF8.self)))
            }
        } catch {
            return .failure(error)
        }
        return .success(found)
    }
    return try result.get()
}

private func canonical(_ text: String) throws(JSONScanner.Failure) -> String {
    let bytes = Array(text.utf8)
    let result: Result<[UInt8], JSONScanner.Failure> = bytes.withUnsafeBufferPointer { buffer in
        var scanner = JSONScanner(buffer)
        do throws(JSONScanner.Failure) { return .success(try scanner.canonicalValue()) } catch { return .failure(error) }
    }
    return String(decoding: try result.get(), as: UTF8.self)
}

private func string(_ token: String) throws(JSONScanner.Failure) -> String {
    let bytes = Array(token.utf8)
    let result: Result<String, JSONScanner.Failure> = bytes.withUnsafeBufferPointer { buffer in
        var scanner = JSONScanner(buffer)
        do throws(JSONScanner.Failure) { return .success(try scanner.scanString()) } catch { return .failure(error) }
    }
    return try result.get()
}

@Suite("JSON scanner")
struct JSONScannerTests {
    @Test func reportsEachTopLevelMemberAndWhereItsValueLies() throws {
        let found = try members(#" { "a" : 1 , "b":[true, {"c": null}], "d": "x\"y" }  "#)
        #expect(found.map(\.0) == ["a", "b", "d"])
        #expect(found.map(\.1) == ["1", #"[true, {"c": null}]"#, #""x\"y""#])
        #expect(try members("{}").isEmpty)
    }

    // Moved from ThingSpaceTests (CallbackEnvelopeTests), now against the scanner itself.
    @Test(arguments: [
        ("", "empty"), ("[]", "array"), ("\"x\"", "string"), ("{", "unterminated"), ("{\"a\":1,}", "trailing comma"),
        ("{\"a\":01}", "leading zero"), ("{\"a\":1.}", "bare dot"), ("{\"a\":tru}", "bad literal"),
        ("{\"a\":\"\u{01}\"}", "control char"), ("{\"a\":\"\\x\"}", "bad escape"), ("{\"a\":1} {}", "two documents"),
        ("{'a':1}", "single quotes"), ("{\"a\" 1}", "missing colon"), ("{\"password\":\"a\",\"password\":\"b\"}", "duplicate"),
        ("{\"a\":\"\\u12\"}", "short unicode escape"), ("{\"a\":NaN}", "NaN"), ("{\"a\":-}", "lone minus"),
    ])
    func rejectsWhatIsNotOneJSONObject(body: String, why: String) {
        #expect(throws: JSONScanner.Failure.self, "\(why)") { try members(body) }
    }

    @Test func failuresSayWhatAndWhere() {
        #expect(throws: JSONScanner.Failure.notAnObject) { try members("[1]") }
        #expect(throws: JSONScanner.Failure.syntax(offset: 2, expected: "a JSON object")) { try members("  ") }
        #expect(throws: JSONScanner.Failure.syntax(offset: 8, expected: "the end of the document")) { try members("{\"a\":1} x") }
        #expect(throws: JSONScanner.Failure.syntax(offset: 7, expected: "a digit")) { try members("{\"a\":1.}") }
        #expect(throws: JSONScanner.Failure.duplicateMember("a")) { try members("{\"a\":1,\"a\":2}") }
        // Names compare decoded: an escape does not make a name new.
        #expect(throws: JSONScanner.Failure.duplicateMember("a")) { try members(#"{"a":1,"\u0061":2}"#) }
    }

    @Test(arguments: [3, 16, 17, 40])
    func aRepeatedTopLevelNameIsFoundInObjectsOfAnySize(members count: Int) {
        let names = (0..<count).map { "\"m\($0)\":\($0)" }
        #expect(throws: Never.self) { try members("{" + names.joined(separator: ",") + "}") }
        for repeated in [0, count - 1] {
            let body = "{" + names.joined(separator: ",") + ",\"m\(repeated)\":true}"
            #expect(throws: JSONScanner.Failure.duplicateMember("m\(repeated)")) { try members(body) }
        }
    }

    @Test func nestedNamesMayRepeat() throws {
        // Only the top level must be unique: that is what is interpreted.
        #expect(try members(#"{"a":{"x":1,"x":2}}"#).count == 1)
    }

    @Test func rejectsInvalidUTF8() {
        let prefix = Array("{\"a\":\"".utf8)
        let suffix = Array("\"}".utf8)
        for (bytes, why) in [
            ([0xC3, 0x28], "bad continuation"), ([0xED, 0xA0, 0x80], "an encoded surrogate"),
            ([0xC0, 0xAF], "overlong"), ([0xE0, 0x80, 0xAF], "overlong of three"), ([0xF4, 0x90, 0x80, 0x80], "above U+10FFFF"),
            ([0xFF], "never in UTF-8"), ([0x80], "lone continuation"), ([0xE2, 0x82], "truncated"),
        ] as [([UInt8], String)] {
            #expect(throws: JSONScanner.Failure.invalidUTF8(offset: 6), "\(why)") { try members(prefix + bytes + suffix) }
        }
        #expect(throws: Never.self) { try members(prefix + Array("é ✓ 𝄞 \u{2028} \u{10FFFF}".utf8) + suffix) }
    }

    @Test func limitsNesting() {
        func nested(_ depth: Int) -> String {
            "{\"a\":" + String(repeating: "[", count: depth - 1) + String(repeating: "]", count: depth - 1) + "}"
        }
        #expect(JSONScanner.maximumDepth == 64)
        #expect(throws: Never.self) { try members(nested(64)) }
        #expect(throws: JSONScanner.Failure.tooDeep) { try members(nested(65)) }
        #expect(throws: JSONScanner.Failure.tooDeep) { try members(nested(101)) }
    }

    @Test func decodesEscapedStrings() throws {
        #expect(try string(#""a\"b\\c\/d\u00e9\ud834\udd1e\n\b\f\r\t""#) == "a\"b\\c/dé𝄞\n\u{08}\u{0C}\r\t")
        // A lone surrogate cannot be a String.
        #expect(try string(#""\ud800x""#) == "\u{FFFD}x")
        #expect(try string(#""\udc00""#) == "\u{FFFD}")
        #expect(try string(#""plain ✓""#) == "plain ✓")
    }

    @Test func canonicalFormIgnoresLayoutOrderAndEscapes() throws {
        #expect(try canonical(#"{ "b" : [ 1 , 2.5e3 , true , null ] , "a" : "\u0078\/" }"#) == #"{"a":"x/","b":[1,2.5e3,true,null]}"#)
        #expect(try canonical(#"{"b":{"d":1,"c":2},"a":[]}"#) == #"{"a":[],"b":{"c":2,"d":1}}"#)
        // Control characters come out as \u00XX whichever escape they came in.
        #expect(try canonical(#""\n\u000A""#) == #""\u000a\u000a""#)
        // Numbers are kept as written: 1.0 and 1 are different text.
        #expect(try canonical("1.0") == "1.0")
    }

    @Test func scansATopLevelArray() throws {
        let text = Array(#" [1, {"a": [2]} ,"x"] "#.utf8)
        var elements: [String] = []
        try text.withUnsafeBufferPointer { buffer throws(JSONScanner.Failure) in
            var scanner = JSONScanner(buffer)
            try scanner.scanTopLevelArray { elements.append(String(decoding: buffer[$0], as: UTF8.self)) }
        }
        #expect(elements == ["1", #"{"a": [2]}"#, #""x""#])
        for (document, failure) in [
            ("{}", JSONScanner.Failure.syntax(offset: 0, expected: "a JSON array")),
            ("[1,]", .syntax(offset: 3, expected: "a value")),
            ("[1] 2", .syntax(offset: 4, expected: "the end of the document")),
        ] {
            #expect(throws: failure) {
                try Array(document.utf8).withUnsafeBufferPointer { buffer throws(JSONScanner.Failure) in
                    var scanner = JSONScanner(buffer)
                    try scanner.scanTopLevelArray { _ in }
                }
            }
        }
    }

    @Test func skipValueStopsAfterTheValue() throws {
        let text = Array(#"{"a":[1,2]} , 3"#.utf8)
        let end = try text.withUnsafeBufferPointer { buffer throws(JSONScanner.Failure) in
            var scanner = JSONScanner(buffer)
            try scanner.skipValue()
            return scanner.index
        }
        #expect(end == 11)
    }
}
