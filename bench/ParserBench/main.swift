// A micro-benchmark of HTTPRequestParser for instruction counts, run by
// bench/parser-instructions under callgrind: built with `swiftc -O -wmo`
// against Sources/HTTP1/*.swift of any revision (it uses only the public
// API), as a separate module like the server's build, or compiled into this
// one. Wall time means nothing here; the count per request does.
//
//   ParserBench INPUT ITERATIONS
//
// INPUT is post-1k, get, chunked or pipelined. Each iteration feeds the
// input to one long-lived parser (a keep-alive connection) in one append
// and drains every event.

#if canImport(HTTP1)
    import HTTP1
#endif
#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

let inputs: [String: (bytes: [UInt8], requests: Int)] = {
    let body = thingSpaceBody(length: 1024)
    let post =
        Array(
            """
            POST /callbacks/carrier-service HTTP/1.1\r
            Host: listener.example.com\r
            User-Agent: ThingSpace-Callbacks/2.0\r
            Accept: */*\r
            Content-Type: application/json\r
            Content-Length: \(body.count)\r
            X-Forwarded-For: 203.0.113.7\r
            X-Forwarded-Proto: https\r
            Authorization: Basic dGhpbmdzcGFjZTpzM2NyZXQtY2FsbGJhY2stdG9rZW4=\r
            X-Request-Id: 6f1c2d4e-8a9b-4c3d-9e2f-1a2b3c4d5e6f\r
            Connection: keep-alive\r
            \r\n
            """.utf8) + body
    let get = Array("GET /v1/health?verbose=1 HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n".utf8)
    var chunked = Array(
        """
        POST /callbacks/device-usage HTTP/1.1\r
        Host: listener.example.com\r
        User-Agent: ThingSpace-Callbacks/2.0\r
        Content-Type: application/json\r
        Transfer-Encoding: chunked\r
        \r\n
        """.utf8)
    for piece in [body[0..<400], body[400..<800], body[800...]] {
        chunked += Array(String(piece.count, radix: 16).utf8) + [0x0D, 0x0A] + piece + [0x0D, 0x0A]
    }
    chunked += Array("0\r\n\r\n".utf8)
    let pipelinedCount = 8
    let pipelined = (0..<pipelinedCount).flatMap { _ in get }
    return [
        "post-1k": (post, 1), "get": (get, 1), "chunked": (chunked, 1), "pipelined": (pipelined, pipelinedCount),
    ]
}()

/// A CarrierService-like JSON callback padded to `length` bytes.
func thingSpaceBody(length: Int) -> [UInt8] {
    let prefix =
        #"{"requestId":"0e1f2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7","deviceIds":[{"id":"990013907835573","kind":"imei"}],"#
        + #""carrierServiceResponse":{"status":"Success","carrierName":"Verizon"},"padding":""#
    let suffix = #""}"#
    return Array((prefix + String(repeating: "x", count: length - prefix.utf8.count - suffix.utf8.count) + suffix).utf8)
}

let arguments = CommandLine.arguments
guard arguments.count == 3, let input = inputs[arguments[1]], let iterations = Int(arguments[2]) else {
    print("usage: ParserBench (\(inputs.keys.sorted().joined(separator: "|"))) ITERATIONS")
    exit(2)
}

/// A function, so the parser is a local: a global would add dynamic
/// exclusivity checks to every access.
func run(_ bytes: [UInt8], iterations: Int) -> Int {
    var parser = HTTPRequestParser()
    // Returned, so that nothing the parser produces is optimised away.
    var checksum = 0
    bytes.withUnsafeBytes { raw in
        for _ in 0..<iterations {
            parser.append(raw)
            do {
                while let event = try parser.next() {
                    switch event {
                    case .head(let head): checksum &+= head.headers.count &+ head.target.utf8.count
                    case .request(let request): checksum &+= request.body.count
                    }
                }
            } catch {
                print("parse error: \(error)")
                exit(1)
            }
        }
    }
    return checksum
}

print("\(arguments[1]) iterations=\(iterations) checksum=\(run(input.bytes, iterations: iterations))")
