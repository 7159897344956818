//! RTSP 1.0 message types and their writer (RFC 2326 §4, §6, §7, §10.12).
//!
//! The types own their data (no borrows from the read buffer), so a parsed message can outlive
//! the buffer it came from and a built one can be handed to another task. Writing never fails:
//! [`Message::write_to`] appends the wire form to a `Vec<u8>`.

use std::fmt;
use std::str::FromStr;

use super::headers::{CSeq, ContentLength, ContentType, Header, HeaderError, Headers};

/// The protocol version of a request or status line (RFC 2326 §3.1: `RTSP/1.0`).
///
/// Other versions parse, so that a server can answer `505 RTSP Version not supported`
/// (RFC 2326 §7.1.1) instead of failing to read the request at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// `RTSP/1.0`, the only version this crate speaks.
    Rtsp10,
    /// Any other `RTSP/<major>.<minor>`, e.g. `RTSP/2.0` from an RFC 7826 peer. The parser
    /// never produces 1.0 here (that is [`Version::Rtsp10`]).
    Other { major: u8, minor: u8 },
}

impl Version {
    /// `(major, minor)`.
    pub fn numbers(self) -> (u8, u8) {
        match self {
            Version::Rtsp10 => (1, 0),
            Version::Other { major, minor } => (major, minor),
        }
    }

    /// The version `major.minor`, normalising 1.0 to [`Version::Rtsp10`].
    pub fn from_numbers(major: u8, minor: u8) -> Self {
        match (major, minor) {
            (1, 0) => Version::Rtsp10,
            (major, minor) => Version::Other { major, minor },
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (major, minor) = self.numbers();
        write!(f, "RTSP/{major}.{minor}")
    }
}

/// A request method (RFC 2326 §6.1, §10).
///
/// Methods are case-sensitive tokens: `OPTIONS` is [`Method::Options`], `options` is an
/// extension. Unknown methods are kept as [`Method::Extension`] so a server can answer
/// `501 Not Implemented` (or `405`) with the method named.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// RFC 2326 §10.1
    Options,
    /// RFC 2326 §10.2
    Describe,
    /// RFC 2326 §10.3
    Announce,
    /// RFC 2326 §10.4
    Setup,
    /// RFC 2326 §10.5
    Play,
    /// RFC 2326 §10.6
    Pause,
    /// RFC 2326 §10.7
    Teardown,
    /// RFC 2326 §10.8
    GetParameter,
    /// RFC 2326 §10.9
    SetParameter,
    /// RFC 2326 §10.11
    Record,
    /// RFC 2326 §10.10
    Redirect,
    /// Any other token (RFC 2326 §6.1 `extension-method`). Never holds one of the names above
    /// when produced by the parser or by [`Method::from`].
    Extension(String),
}

impl Method {
    /// The method as it appears on the wire, e.g. `"GET_PARAMETER"`.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Options => "OPTIONS",
            Method::Describe => "DESCRIBE",
            Method::Announce => "ANNOUNCE",
            Method::Setup => "SETUP",
            Method::Play => "PLAY",
            Method::Pause => "PAUSE",
            Method::Teardown => "TEARDOWN",
            Method::GetParameter => "GET_PARAMETER",
            Method::SetParameter => "SET_PARAMETER",
            Method::Record => "RECORD",
            Method::Redirect => "REDIRECT",
            Method::Extension(s) => s,
        }
    }
}

impl From<&str> for Method {
    /// Never fails: a name that is not one of RFC 2326 §6.1 becomes [`Method::Extension`].
    fn from(s: &str) -> Self {
        match s {
            "OPTIONS" => Method::Options,
            "DESCRIBE" => Method::Describe,
            "ANNOUNCE" => Method::Announce,
            "SETUP" => Method::Setup,
            "PLAY" => Method::Play,
            "PAUSE" => Method::Pause,
            "TEARDOWN" => Method::Teardown,
            "GET_PARAMETER" => Method::GetParameter,
            "SET_PARAMETER" => Method::SetParameter,
            "RECORD" => Method::Record,
            "REDIRECT" => Method::Redirect,
            other => Method::Extension(other.to_owned()),
        }
    }
}

impl FromStr for Method {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Method::from(s))
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A response status code (RFC 2326 §7.1.1). Any three-digit code is representable; the
/// constants name the ones this project uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(pub u16);

impl StatusCode {
    pub const OK: StatusCode = StatusCode(200);
    pub const BAD_REQUEST: StatusCode = StatusCode(400);
    pub const UNAUTHORIZED: StatusCode = StatusCode(401);
    pub const FORBIDDEN: StatusCode = StatusCode(403);
    pub const NOT_FOUND: StatusCode = StatusCode(404);
    pub const METHOD_NOT_ALLOWED: StatusCode = StatusCode(405);
    pub const NOT_ACCEPTABLE: StatusCode = StatusCode(406);
    pub const REQUEST_ENTITY_TOO_LARGE: StatusCode = StatusCode(413);
    pub const REQUEST_URI_TOO_LONG: StatusCode = StatusCode(414);
    pub const UNSUPPORTED_MEDIA_TYPE: StatusCode = StatusCode(415);
    pub const PARAMETER_NOT_UNDERSTOOD: StatusCode = StatusCode(451);
    pub const NOT_ENOUGH_BANDWIDTH: StatusCode = StatusCode(453);
    pub const SESSION_NOT_FOUND: StatusCode = StatusCode(454);
    pub const METHOD_NOT_VALID_IN_THIS_STATE: StatusCode = StatusCode(455);
    pub const HEADER_FIELD_NOT_VALID: StatusCode = StatusCode(456);
    pub const INVALID_RANGE: StatusCode = StatusCode(457);
    pub const AGGREGATE_OPERATION_NOT_ALLOWED: StatusCode = StatusCode(459);
    pub const ONLY_AGGREGATE_OPERATION_ALLOWED: StatusCode = StatusCode(460);
    pub const UNSUPPORTED_TRANSPORT: StatusCode = StatusCode(461);
    pub const INTERNAL_SERVER_ERROR: StatusCode = StatusCode(500);
    pub const NOT_IMPLEMENTED: StatusCode = StatusCode(501);
    pub const SERVICE_UNAVAILABLE: StatusCode = StatusCode(503);
    pub const VERSION_NOT_SUPPORTED: StatusCode = StatusCode(505);
    pub const OPTION_NOT_SUPPORTED: StatusCode = StatusCode(551);

    /// The reason phrase RFC 2326 §7.1.1 gives for this code, `"Unknown"` for any other.
    pub fn reason(self) -> &'static str {
        match self.0 {
            100 => "Continue",
            200 => "OK",
            201 => "Created",
            250 => "Low on Storage Space",
            300 => "Multiple Choices",
            301 => "Moved Permanently",
            302 => "Moved Temporarily",
            303 => "See Other",
            304 => "Not Modified",
            305 => "Use Proxy",
            400 => "Bad Request",
            401 => "Unauthorized",
            402 => "Payment Required",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            406 => "Not Acceptable",
            407 => "Proxy Authentication Required",
            408 => "Request Time-out",
            410 => "Gone",
            411 => "Length Required",
            412 => "Precondition Failed",
            413 => "Request Entity Too Large",
            414 => "Request-URI Too Large",
            415 => "Unsupported Media Type",
            451 => "Parameter Not Understood",
            452 => "Conference Not Found",
            453 => "Not Enough Bandwidth",
            454 => "Session Not Found",
            455 => "Method Not Valid in This State",
            456 => "Header Field Not Valid for Resource",
            457 => "Invalid Range",
            458 => "Parameter Is Read-Only",
            459 => "Aggregate operation not allowed",
            460 => "Only aggregate operation allowed",
            461 => "Unsupported transport",
            462 => "Destination unreachable",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Time-out",
            505 => "RTSP Version not supported",
            551 => "Option not supported",
            _ => "Unknown",
        }
    }

    /// `2xx` (RFC 2326 §7.1.1: "Success - The action was successfully received, understood,
    /// and accepted").
    pub fn is_success(self) -> bool {
        (200..300).contains(&self.0)
    }
}

impl fmt::Display for StatusCode {
    /// `"454 Session Not Found"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03} {}", self.0, self.reason())
    }
}

/// An RTSP request (RFC 2326 §6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The Request-URI (RFC 2326 §6.1, §3.2) exactly as sent: an absolute `rtsp://` URL or `*`.
    pub uri: String,
    pub version: Version,
    pub headers: Headers,
    /// The message body (RFC 2326 §4.3); its length is carried by `Content-Length`.
    pub body: Vec<u8>,
}

impl Request {
    /// An `RTSP/1.0` request with no headers and no body.
    pub fn new(method: Method, uri: impl Into<String>) -> Self {
        Request {
            method,
            uri: uri.into(),
            version: Version::Rtsp10,
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// Appends the wire form (RFC 2326 §6) to `out`. See [`Message::write_to`].
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        write_uri(&self.uri, out);
        out.push(b' ');
        out.extend_from_slice(self.version.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        write_headers_and_body(&self.headers, &self.body, out);
    }
}

/// The builders and accessors requests and responses share; `$headers` is the RFC 2326 section
/// of their header lines, `$body` an example of a body.
macro_rules! builders {
    ($t:ty, $headers:literal, $body:literal) => {
        impl $t {
            #[doc = concat!("Builder: appends a header line (RFC 2326 §", $headers, ").")]
            pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
                self.headers.append(name, value);
                self
            }

            /// Builder: sets a typed header, replacing any of the same name.
            pub fn typed<H: Header>(mut self, h: &H) -> Self {
                self.headers.set_typed(h);
                self
            }

            /// Builder: sets the body with its `Content-Type` and `Content-Length` (RFC 2326
            #[doc = concat!("§12.14, §12.16), e.g. ", $body, ".")]
            pub fn body(mut self, content_type: &str, body: Vec<u8>) -> Self {
                set_body(&mut self.headers, &mut self.body, content_type, body);
                self
            }

            /// The `CSeq` (RFC 2326 §12.17): `Ok(None)` if absent, `Err` if malformed.
            pub fn cseq(&self) -> Result<Option<u32>, HeaderError> {
                Ok(self.headers.get_typed::<CSeq>()?.map(|c| c.0))
            }
        }
    };
}

builders!(
    Request,
    "6.2",
    "the SDP of an ANNOUNCE (§10.3) or the parameters of SET_PARAMETER (§10.9)"
);
builders!(Response, "7.2", "`application/sdp` for DESCRIBE (§10.2)");

/// An RTSP response (RFC 2326 §7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub version: Version,
    pub status: StatusCode,
    /// The Reason-Phrase (RFC 2326 §7.1.1) as sent; peers may use any text.
    pub reason: String,
    pub headers: Headers,
    /// The message body (RFC 2326 §4.3); its length is carried by `Content-Length`.
    pub body: Vec<u8>,
}

impl Response {
    /// An `RTSP/1.0` response with the RFC 2326 §7.1.1 reason phrase, no headers, no body.
    pub fn new(status: StatusCode) -> Self {
        Response {
            version: Version::Rtsp10,
            status,
            reason: status.reason().to_owned(),
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// Appends the wire form (RFC 2326 §7) to `out`. See [`Message::write_to`].
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.version.to_string().as_bytes());
        out.extend_from_slice(format!(" {:03} ", self.status.0).as_bytes());
        write_sanitized(&self.reason, out);
        out.extend_from_slice(b"\r\n");
        write_headers_and_body(&self.headers, &self.body, out);
    }
}

/// A frame of the interleaved binary data stream on the RTSP connection (RFC 2326 §10.12):
/// `$`, a one-byte channel identifier, a two-byte big-endian length, then the data (usually
/// one RTP or RTCP packet, on the channels negotiated by `Transport: ...;interleaved=`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterleavedFrame {
    pub channel: u8,
    pub payload: Vec<u8>,
}

impl InterleavedFrame {
    /// The largest payload the two-byte length field can carry (RFC 2326 §10.12).
    pub const MAX_PAYLOAD: usize = u16::MAX as usize;

    /// Appends the wire form (RFC 2326 §10.12) to `out`.
    ///
    /// # Panics
    ///
    /// If the payload is longer than [`InterleavedFrame::MAX_PAYLOAD`]: such a frame cannot be
    /// expressed, and truncating it would corrupt the stream; callers packetize to an MTU far
    /// below this.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        write_interleaved(self.channel, &self.payload, out);
    }
}

/// Appends one interleaved frame (RFC 2326 §10.12) carrying `payload` on `channel` to `out`,
/// without taking ownership of the payload: the writer for a server that sends the same RTP
/// packet to many connections.
///
/// # Panics
///
/// If the payload is longer than [`InterleavedFrame::MAX_PAYLOAD`] (see
/// [`InterleavedFrame::write_to`]).
pub fn write_interleaved(channel: u8, payload: &[u8], out: &mut Vec<u8>) {
    let len = u16::try_from(payload.len())
        .expect("interleaved payload exceeds 65535 bytes (RFC 2326 §10.12 length field)");
    out.reserve(4 + payload.len());
    out.push(b'$');
    out.push(channel);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Names of headers that have no typed form here (compare case-insensitively, RFC 2326 §4.2).
pub mod header_names {
    /// RFC 2326 §12.1
    pub const ACCEPT: &str = "Accept";
    /// RFC 2326 §12.4: the methods a resource allows, in a `405` or `455`.
    pub const ALLOW: &str = "Allow";
    /// RFC 2326 §12.10 (RFC 2616 §14.10): `close` announces the end of the connection.
    pub const CONNECTION: &str = "Connection";
    /// RFC 2326 §12.32: option tags the client requires.
    pub const REQUIRE: &str = "Require";
    /// RFC 2326 §12.36
    pub const SERVER: &str = "Server";
    /// RFC 2326 §12.41: the client's name and version (`LIVE555 Streaming Media v2020.01.01`).
    pub const USER_AGENT: &str = "User-Agent";
    /// RFC 2326 §12.42: the required option tags the server does not support, in a `551`.
    pub const UNSUPPORTED: &str = "Unsupported";
    /// RFC 2326 §12.44 (RFC 2617 §3.2.1): an authentication challenge, in a `401`.
    pub const WWW_AUTHENTICATE: &str = "WWW-Authenticate";
}

/// Anything that can appear on an RTSP connection (RFC 2326 §4, §10.12).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
    Data(InterleavedFrame),
}

impl Message {
    /// Appends the wire form to `out`: CRLF line endings, `Name: value` header lines in
    /// stored order, and `Content-Length` (RFC 2326 §12.14) whenever the body is non-empty —
    /// a stored `Content-Length` that disagrees with the body is written with the body's length,
    /// and one is added after the other headers if missing.
    ///
    /// The writer does not validate what it is given, but it never lets a value break the
    /// framing: CR, LF and other control characters in header names, values and the reason
    /// phrase are written as spaces, and whitespace and control characters in the request URI
    /// are percent-encoded (RFC 2396 §2.4.1).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Message::Request(r) => r.write_to(out),
            Message::Response(r) => r.write_to(out),
            Message::Data(d) => d.write_to(out),
        }
    }
}

impl From<Request> for Message {
    fn from(r: Request) -> Self {
        Message::Request(r)
    }
}

impl From<Response> for Message {
    fn from(r: Response) -> Self {
        Message::Response(r)
    }
}

impl From<InterleavedFrame> for Message {
    fn from(d: InterleavedFrame) -> Self {
        Message::Data(d)
    }
}

fn set_body(headers: &mut Headers, slot: &mut Vec<u8>, content_type: &str, body: Vec<u8>) {
    headers.set_typed(&ContentType(content_type.to_owned()));
    headers.set_typed(&ContentLength(body.len()));
    *slot = body;
}

/// Writes a request URI, percent-encoding the bytes that would split the request line.
fn write_uri(uri: &str, out: &mut Vec<u8>) {
    for &b in uri.as_bytes() {
        if b <= b' ' || b == 0x7f {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
}

/// Writes `s`, replacing control characters other than HT (including CR and LF) with spaces.
fn write_sanitized(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| is_unsafe_ctl(b)) {
        out.extend_from_slice(bytes);
        return;
    }
    out.extend(
        bytes
            .iter()
            .map(|&b| if is_unsafe_ctl(b) { b' ' } else { b }),
    );
}

fn is_unsafe_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

fn write_headers_and_body(headers: &Headers, body: &[u8], out: &mut Vec<u8>) {
    let mut wrote_length = false;
    for (name, value) in headers.iter() {
        write_sanitized(name, out);
        out.extend_from_slice(b": ");
        if name.eq_ignore_ascii_case(ContentLength::NAME) {
            wrote_length = true;
            match ContentLength::parse(value) {
                Ok(ContentLength(n)) if n == body.len() => write_sanitized(value, out),
                _ => out.extend_from_slice(body.len().to_string().as_bytes()),
            }
        } else {
            write_sanitized(value, out);
        }
        out.extend_from_slice(b"\r\n");
    }
    if !wrote_length && !body.is_empty() {
        out.extend_from_slice(format!("{}: {}\r\n", ContentLength::NAME, body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_round_trip() {
        for m in [
            Method::Options,
            Method::Describe,
            Method::Announce,
            Method::Setup,
            Method::Play,
            Method::Pause,
            Method::Teardown,
            Method::GetParameter,
            Method::SetParameter,
            Method::Record,
            Method::Redirect,
        ] {
            assert_eq!(Method::from(m.as_str()), m);
            assert_eq!(m.as_str().parse::<Method>(), Ok(m.clone()));
        }
        // Methods are case-sensitive (RFC 2326 §6.1): lower case is an extension.
        assert_eq!(Method::from("options"), Method::Extension("options".into()));
        assert_eq!(Method::from("FLUSH").as_str(), "FLUSH");
    }

    #[test]
    fn status_reasons() {
        assert_eq!(StatusCode::OK.reason(), "OK");
        assert_eq!(StatusCode::SESSION_NOT_FOUND.reason(), "Session Not Found");
        assert_eq!(
            StatusCode::VERSION_NOT_SUPPORTED.reason(),
            "RTSP Version not supported"
        );
        assert_eq!(
            StatusCode::REQUEST_URI_TOO_LONG.reason(),
            "Request-URI Too Large"
        );
        assert_eq!(StatusCode(299).reason(), "Unknown");
        assert!(StatusCode::OK.is_success());
        assert!(StatusCode(250).is_success());
        assert!(!StatusCode(199).is_success());
        assert!(!StatusCode::NOT_FOUND.is_success());
        assert_eq!(
            StatusCode::UNSUPPORTED_TRANSPORT.to_string(),
            "461 Unsupported transport"
        );
    }

    #[test]
    fn writes_request_exactly() {
        let req = Request::new(Method::Setup, "rtsp://h/live/trackID=0")
            .header("CSeq", "3")
            .header("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1");
        let mut out = Vec::new();
        req.write_to(&mut out);
        assert_eq!(
            out,
            b"SETUP rtsp://h/live/trackID=0 RTSP/1.0\r\n\
              CSeq: 3\r\n\
              Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\
              \r\n"
        );
    }

    #[test]
    fn writes_response_with_body() {
        let resp = Response::new(StatusCode::OK)
            .header("CSeq", "2")
            .body("application/sdp", b"v=0\r\n".to_vec());
        let mut out = Vec::new();
        resp.write_to(&mut out);
        assert_eq!(
            out,
            b"RTSP/1.0 200 OK\r\n\
              CSeq: 2\r\n\
              Content-Type: application/sdp\r\n\
              Content-Length: 5\r\n\
              \r\n\
              v=0\r\n"
        );
    }

    #[test]
    fn writer_fixes_content_length_and_neutralises_line_breaks() {
        let mut resp = Response::new(StatusCode(299));
        resp.reason = "Odd\r\nX-Injected: 1".into();
        resp.headers.append("X-Note", "a\r\nX-Injected: 2");
        resp.headers.append("Content-Length", "99"); // wrong: the body is 3 bytes
        resp.body = b"abc".to_vec();
        let mut out = Vec::new();
        resp.write_to(&mut out);
        assert_eq!(
            out,
            b"RTSP/1.0 299 Odd  X-Injected: 1\r\n\
              X-Note: a  X-Injected: 2\r\n\
              Content-Length: 3\r\n\
              \r\n\
              abc"
        );

        // Missing Content-Length is added; an empty body gets none.
        let mut req = Request::new(Method::SetParameter, "rtsp://h/a b");
        req.body = b"x: 1\r\n".to_vec();
        let mut out = Vec::new();
        req.write_to(&mut out);
        assert_eq!(
            out,
            b"SET_PARAMETER rtsp://h/a%20b RTSP/1.0\r\nContent-Length: 6\r\n\r\nx: 1\r\n"
        );
        let mut out = Vec::new();
        Request::new(Method::Options, "*").write_to(&mut out);
        assert_eq!(out, b"OPTIONS * RTSP/1.0\r\n\r\n");
    }

    #[test]
    fn writes_interleaved_frame() {
        let mut out = Vec::new();
        Message::Data(InterleavedFrame {
            channel: 1,
            payload: vec![0x80, 0xc8],
        })
        .write_to(&mut out);
        assert_eq!(
            out,
            [
                b'$', // RFC 2326 §10.12 magic
                0x01, // channel 1 (RTCP of the first interleaved pair)
                0x00, 0x02, // length 2, big-endian
                0x80, 0xc8, // payload
            ]
        );
    }

    #[test]
    fn writes_other_version() {
        let mut resp = Response::new(StatusCode::VERSION_NOT_SUPPORTED);
        resp.version = Version::Other { major: 2, minor: 0 };
        let mut out = Vec::new();
        resp.write_to(&mut out);
        assert_eq!(out, b"RTSP/2.0 505 RTSP Version not supported\r\n\r\n");
        assert_eq!(Version::from_numbers(1, 0), Version::Rtsp10);
    }
}
