import Delivery
import Testing

/// The event encoder and the parser, without sockets: exact bytes, and every event read back
/// whatever the split of the stream.
@Suite struct ServerSentEventsTests {
    @Test func anEventIsItsFieldsAndAnEmptyLine() {
        let bytes = ServerSentEvents.encode(id: "42", event: "callback", data: Array(#"{"a":1}"#.utf8))
        #expect(String(decoding: bytes, as: UTF8.self) == "id: 42\nevent: callback\ndata: {\"a\":1}\n\n")
        #expect(String(decoding: ServerSentEvents.comment("keepalive"), as: UTF8.self) == ": keepalive\n\n")
        #expect(String(decoding: ServerSentEvents.retry(milliseconds: 1500), as: UTF8.self) == "retry: 1500\n\n")
    }

    @Test func lineBreaksInDataBecomeDataLinesAndCannotStartAFieldElsewhere() {
        let bytes = ServerSentEvents.encode(id: "1\nevent: forged", event: "x\r\ny", data: Array("one\ntwo\r\nthree\rfour".utf8))
        #expect(
            String(decoding: bytes, as: UTF8.self)
                == "id: 1event: forged\nevent: xy\ndata: one\ndata: two\ndata: three\ndata: four\n\n")
        #expect(String(decoding: ServerSentEvents.encode(id: nil, event: nil, data: []), as: UTF8.self) == "data: \n\n")
    }

    @Test func whatIsEncodedIsParsedBackAtEverySplit() throws {
        let events = [
            ServerSentEvent(id: "1", event: "callback", data: #"{"id":1,"body":{"x":"y"}}"#),
            ServerSentEvent(id: "2", event: nil, data: "two\nlines"),
            ServerSentEvent(id: "2", event: "empty", data: ""),
            ServerSentEvent(id: "30", event: "callback", data: "ünïcödé ✓"),
        ]
        var stream = ServerSentEvents.retry(milliseconds: 1000) + ServerSentEvents.comment("hello")
        for event in events {
            // The third keeps the last id: the field is only sent when it changes.
            let id = event == events[2] ? nil : event.id
            stream += ServerSentEvents.encode(id: id, event: event.event, data: Array(event.data.utf8))
        }
        for split in 0...stream.count {
            var parser = ServerSentEventParser()
            var parsed = try parser.append(stream[0..<split])
            parsed += try parser.append(stream[split...])
            #expect(parsed == events, "split at \(split)")
            #expect(parser.lastEventID == "30")
            #expect(parser.retryMilliseconds == 1000)
        }
        // And a byte at a time.
        var parser = ServerSentEventParser()
        var parsed: [ServerSentEvent] = []
        for byte in stream { parsed += try parser.append([byte]) }
        #expect(parsed == events)
    }

    @Test func theParserFollowsTheSpecificationsLineRules() throws {
        var parser = ServerSentEventParser()
        let text = "\u{FEFF}data:no space\r\ndata:  two spaces\rid\nevent\n: comment\nunknown: field\ndata\n\nid: a\u{0}b\ndata: x\r\n\r\n"
        let events = try parser.append(Array(text.utf8))
        #expect(events == [ServerSentEvent(id: "", event: nil, data: "no space\n two spaces\n"), ServerSentEvent(id: "", data: "x")])
        // A CR at the end of one read and an LF at the start of the next are one line end.
        var split = ServerSentEventParser()
        #expect(try split.append(Array("data: a\r".utf8)).isEmpty)
        #expect(try split.append(Array("\n\r\n".utf8)) == [ServerSentEvent(data: "a")])
        // Lines without an empty line after them are not an event yet.
        #expect(try split.append(Array("data: b\n".utf8)).isEmpty)
    }

    @Test func theParserIsBounded() {
        var lines = ServerSentEventParser(maxLineBytes: 16)
        #expect(throws: ServerSentEventParser.ParseError.lineTooLong) {
            try lines.append(Array("data: 0123456789abcdef\n".utf8))
        }
        var events = ServerSentEventParser(maxEventBytes: 10)
        #expect(throws: ServerSentEventParser.ParseError.eventTooLarge) {
            try events.append(Array("data: 012345\ndata: 6789\n\n".utf8))
        }
    }
}
