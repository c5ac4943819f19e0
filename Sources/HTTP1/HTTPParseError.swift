// Every way a request can be refused by the parser, each with the status the
// server answers. Cases carry no request bytes: messages may be logged and
// field values can hold credentials.

public enum HTTPParseError: Error, Sendable, Equatable, CustomStringConvertible {
    // Request line.
    /// More than the allowed number of empty lines before the request line.
    case tooManyEmptyLinesBeforeRequest
    /// The request line is not `method SP request-target SP HTTP-version`.
    case invalidRequestLine
    /// The method is empty or not a token.
    case invalidMethod
    /// The request-target is empty, has a byte outside the URI grammar, a bad
    /// percent-escape, or a form the method does not allow; or it is in
    /// absolute-form with a scheme other than http/https, userinfo, or an
    /// authority that is not `host[:port]` with a host.
    case invalidRequestTarget
    /// The version is not `HTTP/<digit>.<digit>`.
    case invalidVersion
    /// A major version other than 1 (for example `HTTP/2.0`).
    case unsupportedVersion
    /// The request line is longer than `HTTPLimits.maxRequestLineBytes`.
    case requestLineTooLong

    // Field lines (header and trailer sections).
    /// A line ended with LF alone; CRLF is required.
    case bareLineFeed
    /// A field line starts with whitespace (obsolete line folding).
    case obsoleteLineFolding
    /// A field line has no colon.
    case missingColon
    /// A field name is empty or not a token.
    case invalidFieldName
    /// Whitespace between a field name and its colon.
    case whitespaceBeforeColon
    /// A field value holds NUL, CR, LF or another control byte.
    case invalidFieldValue
    /// The header section is larger than `HTTPLimits.maxHeaderBytes`.
    case headerSectionTooLarge
    /// More header fields than `HTTPLimits.maxHeaderCount`.
    case tooManyHeaderFields

    // Semantics of the head.
    /// An HTTP/1.1 request without a Host field.
    case missingHost
    /// More than one Host field.
    case multipleHost
    /// A Host value that is not `host[:port]`.
    case invalidHost
    /// A Content-Length that is not a list of decimal digits.
    case invalidContentLength
    /// Content-Length values that differ.
    case conflictingContentLength
    /// Both Content-Length and Transfer-Encoding: the framing is ambiguous.
    case contentLengthWithTransferEncoding
    /// Transfer-Encoding in an HTTP/1.0 request, whose framing cannot be trusted.
    case transferEncodingInHTTP10
    /// A Transfer-Encoding whose final coding is not `chunked`, or that
    /// applies `chunked` more than once.
    case chunkedNotFinalCoding
    /// A transfer coding other than `chunked`.
    case unsupportedTransferCoding
    /// An `Expect` value other than `100-continue`.
    case unsupportedExpectation
    /// The declared or de-chunked body exceeds `HTTPLimits.maxBodyBytes`.
    case bodyTooLarge

    // Chunked body.
    /// A chunk-size that is missing or not hexadecimal.
    case invalidChunkSize
    /// A chunk extension outside `;name[=token or quoted-string]` (RFC 9112 §7.1.1).
    case invalidChunkExtension
    /// A chunk-size line longer than the parser accepts.
    case chunkLineTooLong
    /// Chunk data not followed by CRLF.
    case missingChunkTerminator
    /// The trailer section is larger than `HTTPLimits.maxTrailerBytes`.
    case trailerSectionTooLarge
    /// More trailer fields than `HTTPLimits.maxHeaderCount`.
    case tooManyTrailerFields

    /// The status the server should answer with before closing.
    public var status: HTTPStatus {
        switch self {
        case .requestLineTooLong: .uriTooLong
        case .unsupportedVersion: .httpVersionNotSupported
        case .headerSectionTooLarge, .tooManyHeaderFields, .trailerSectionTooLarge, .tooManyTrailerFields:
            .requestHeaderFieldsTooLarge
        case .unsupportedTransferCoding: .notImplemented
        case .unsupportedExpectation: .expectationFailed
        case .bodyTooLarge: .contentTooLarge
        case .tooManyEmptyLinesBeforeRequest, .invalidRequestLine, .invalidMethod, .invalidRequestTarget,
            .invalidVersion, .bareLineFeed, .obsoleteLineFolding, .missingColon, .invalidFieldName,
            .whitespaceBeforeColon, .invalidFieldValue, .missingHost, .multipleHost, .invalidHost,
            .invalidContentLength, .conflictingContentLength, .contentLengthWithTransferEncoding,
            .transferEncodingInHTTP10, .chunkedNotFinalCoding, .invalidChunkSize, .invalidChunkExtension,
            .chunkLineTooLong, .missingChunkTerminator:
            .badRequest
        }
    }

    public var description: String {
        switch self {
        case .tooManyEmptyLinesBeforeRequest: "too many empty lines before the request line"
        case .invalidRequestLine: "the request line is not 'method SP target SP version'"
        case .invalidMethod: "the method is not a token"
        case .invalidRequestTarget: "the request-target is malformed or not allowed for this method"
        case .invalidVersion: "the version is not 'HTTP/<digit>.<digit>'"
        case .unsupportedVersion: "only HTTP/1.x is supported"
        case .requestLineTooLong: "the request line exceeds the limit"
        case .bareLineFeed: "a line ends with LF alone; CRLF is required"
        case .obsoleteLineFolding: "a field line starts with whitespace (obsolete line folding)"
        case .missingColon: "a field line has no colon"
        case .invalidFieldName: "a field name is empty or not a token"
        case .whitespaceBeforeColon: "whitespace between a field name and its colon"
        case .invalidFieldValue: "a field value contains a control byte"
        case .headerSectionTooLarge: "the header section exceeds the limit"
        case .tooManyHeaderFields: "more header fields than the limit"
        case .missingHost: "an HTTP/1.1 request needs a Host field"
        case .multipleHost: "more than one Host field"
        case .invalidHost: "the Host value is not host[:port]"
        case .invalidContentLength: "Content-Length is not a decimal number"
        case .conflictingContentLength: "Content-Length values differ"
        case .contentLengthWithTransferEncoding: "both Content-Length and Transfer-Encoding are present"
        case .transferEncodingInHTTP10: "Transfer-Encoding is not allowed in an HTTP/1.0 request"
        case .chunkedNotFinalCoding: "the final transfer coding must be chunked, applied once"
        case .unsupportedTransferCoding: "only the chunked transfer coding is supported"
        case .unsupportedExpectation: "only 'Expect: 100-continue' is supported"
        case .bodyTooLarge: "the body exceeds the limit"
        case .invalidChunkSize: "a chunk size is not hexadecimal"
        case .invalidChunkExtension: "a chunk extension is not ';name' or ';name=value'"
        case .chunkLineTooLong: "a chunk-size line is too long"
        case .missingChunkTerminator: "chunk data is not followed by CRLF"
        case .trailerSectionTooLarge: "the trailer section exceeds the limit"
        case .tooManyTrailerFields: "more trailer fields than the limit"
        }
    }
}
