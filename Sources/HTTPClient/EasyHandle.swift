// One libcurl easy handle and one transfer on it: options, callbacks that
// collect the response, and the mapping of CURLcodes to error kinds.
import CCurl

struct TransferLimits {
    var connectTimeoutMS: Int
    var totalTimeoutMS: Int
    var maxResponseBytes: Int
}

/// Owns a CURL easy handle. Used by one thread at a time: it is either idle
/// in a `HandlePool` (under its lock) or checked out by exactly one transfer.
/// `curl_easy_reset` before each transfer keeps its live connections and its
/// DNS and TLS session caches.
final class EasyHandle: @unchecked Sendable {
    private let pointer: UnsafeMutableRawPointer

    /// nil when libcurl cannot make a handle. Call only once libcurl is loaded.
    init?() {
        guard let pointer = ccurl_easy_init() else { return nil }
        self.pointer = pointer
    }

    deinit { ccurl_easy_cleanup(pointer) }

    func perform(_ request: CurlHTTPClient.Request, limits: TransferLimits) throws(CurlTransportError) -> CurlHTTPClient.Response {
        let easy = pointer
        ccurl_easy_reset(easy)

        let collector = ResponseCollector(maxBodyBytes: limits.maxResponseBytes)
        var errorBuffer = [CChar](repeating: 0, count: ccurl_error_buffer_size() + 1)
        var headerList: UnsafeMutablePointer<curl_slist>? = nil
        defer { ccurl_slist_free_all(headerList) }

        for field in request.headers {
            headerList = ccurl_slist_append(headerList, "\(field.name): \(field.value)")
        }
        // Never wait for 100-continue; never send libcurl's default form type.
        headerList = ccurl_slist_append(headerList, "Expect:")
        if !request.headers.contains(where: { $0.name.lowercased() == "content-type" }) {
            headerList = ccurl_slist_append(headerList, "Content-Type:")
        }

        let code: CURLcode = withExtendedLifetime(collector) {
            errorBuffer.withUnsafeMutableBufferPointer { errorBytes in
                let context = Unmanaged.passUnretained(collector).toOpaque()
                var setup = [
                    ccurl_setopt_string(easy, CURLOPT_URL, request.url),
                    ccurl_setopt_string(easy, CURLOPT_PROTOCOLS_STR, "http,https"),
                    ccurl_setopt_long(easy, CURLOPT_NOSIGNAL, 1),
                    ccurl_setopt_long(easy, CURLOPT_FOLLOWLOCATION, 0),
                    ccurl_setopt_long(easy, CURLOPT_SSL_VERIFYPEER, 1),
                    ccurl_setopt_long(easy, CURLOPT_SSL_VERIFYHOST, 2),
                    ccurl_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, limits.connectTimeoutMS),
                    ccurl_setopt_long(easy, CURLOPT_TIMEOUT_MS, limits.totalTimeoutMS),
                    ccurl_setopt_pointer(easy, CURLOPT_ERRORBUFFER, errorBytes.baseAddress),
                    ccurl_setopt_data_callback(easy, CURLOPT_WRITEFUNCTION, collectBody),
                    ccurl_setopt_pointer(easy, CURLOPT_WRITEDATA, context),
                    ccurl_setopt_data_callback(easy, CURLOPT_HEADERFUNCTION, collectHeader),
                    ccurl_setopt_pointer(easy, CURLOPT_HEADERDATA, context),
                    ccurl_setopt_slist(easy, CURLOPT_HTTPHEADER, headerList),
                ]
                switch request.method {
                case .get:
                    setup.append(ccurl_setopt_long(easy, CURLOPT_HTTPGET, 1))
                case .post:
                    setup.append(ccurl_setopt_long(easy, CURLOPT_POST, 1))
                default:
                    setup.append(ccurl_setopt_string(easy, CURLOPT_CUSTOMREQUEST, request.method.rawValue))
                }
                if request.method == .post || !request.body.isEmpty {
                    // Size first, then COPYPOSTFIELDS copies exactly that many bytes.
                    setup.append(ccurl_setopt_off_t(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(request.body.count)))
                    if request.body.isEmpty {
                        setup.append(ccurl_setopt_string(easy, CURLOPT_COPYPOSTFIELDS, ""))
                    } else {
                        setup.append(
                            request.body.withUnsafeBufferPointer { bytes in
                                ccurl_setopt_pointer(easy, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: bytes.baseAddress))
                            })
                    }
                }
                if let failed = setup.first(where: { $0 != CURLE_OK }) { return failed }
                return ccurl_easy_perform(easy)
            }
        }

        guard code == CURLE_OK else {
            if collector.bodyTooLarge {
                throw CurlTransportError(
                    kind: .responseTooLarge, curlCode: Int(code.rawValue),
                    message: "response body larger than \(limits.maxResponseBytes) bytes")
            }
            let detail = errorBuffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            let message = detail.isEmpty ? String(cString: ccurl_easy_strerror(code)) : detail
            throw CurlTransportError(kind: Self.kind(of: code), curlCode: Int(code.rawValue), message: message)
        }
        var status = 0
        _ = ccurl_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
        return CurlHTTPClient.Response(status: status, headers: collector.headers, body: collector.body)
    }

    private static func kind(of code: CURLcode) -> CurlTransportError.Kind {
        switch code {
        case CURLE_OPERATION_TIMEDOUT: .timedOut
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY: .couldNotResolveHost
        case CURLE_COULDNT_CONNECT: .couldNotConnect
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM,
            CURLE_SSL_CIPHER, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_ISSUER_ERROR:
            .tls
        case CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL: .invalidRequest
        default: .other
        }
    }
}

/// Receives header lines and body bytes from libcurl's callbacks.
private final class ResponseCollector {
    let maxBodyBytes: Int
    var headers: [(name: String, value: String)] = []
    var body: [UInt8] = []
    var bodyTooLarge = false

    init(maxBodyBytes: Int) { self.maxBodyBytes = maxBodyBytes }

    func appendHeaderLine(_ bytes: UnsafeBufferPointer<UInt8>) {
        var line = Substring(decoding: bytes, as: UTF8.self)
        while let last = line.last, last == "\r" || last == "\n" || last == "\r\n" { line = line.dropLast() }
        if line.hasPrefix("HTTP/") {
            // A new response head (after a 1xx or a proxy's CONNECT answer).
            headers.removeAll()
            return
        }
        guard let colon = line.firstIndex(of: ":") else { return }
        let name = String(line[..<colon])
        let value = line[line.index(after: colon)...].trimmingSpaces()
        headers.append((name: name, value: value))
    }

    func appendBody(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard body.count + bytes.count <= maxBodyBytes else {
            bodyTooLarge = true
            return false
        }
        body.append(contentsOf: bytes)
        return true
    }
}

private let collectBody: ccurl_data_callback = { data, size, count, context in
    guard let context else { return 0 }
    let collector = Unmanaged<ResponseCollector>.fromOpaque(context).takeUnretainedValue()
    let length = size * count
    guard let data, length > 0 else { return length }
    let bytes = UnsafeBufferPointer(start: UnsafeRawPointer(data).assumingMemoryBound(to: UInt8.self), count: length)
    // Returning fewer bytes than given makes libcurl abort with CURLE_WRITE_ERROR.
    return collector.appendBody(bytes) ? length : 0
}

private let collectHeader: ccurl_data_callback = { data, size, count, context in
    guard let context else { return 0 }
    let collector = Unmanaged<ResponseCollector>.fromOpaque(context).takeUnretainedValue()
    let length = size * count
    guard let data, length > 0 else { return length }
    collector.appendHeaderLine(UnsafeBufferPointer(start: UnsafeRawPointer(data).assumingMemoryBound(to: UInt8.self), count: length))
    return length
}

extension Substring {
    fileprivate func trimmingSpaces() -> String {
        var slice = self[...]
        while let first = slice.first, first == " " || first == "\t" { slice = slice.dropFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice = slice.dropLast() }
        return String(slice)
    }
}
