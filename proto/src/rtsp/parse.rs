//! Streaming parser for RTSP 1.0 messages and interleaved frames (RFC 2326 §4, §6, §7,
//! §10.12).
//!
//! [`parse`] looks at the bytes read so far and says one of three things: not enough yet
//! ([`Parsed::Incomplete`]), here is a message and how many bytes it took
//! ([`Parsed::Complete`]), or the input is invalid at byte N ([`ParseError`]). It keeps no state
//! between calls: the caller appends to its buffer, calls again, and drains `consumed` bytes.
//!
//! The scan is strictly left to right and every check looks only at bytes already seen, so:
//! an invalid prefix is reported as soon as it is provably invalid (a NUL or a non-token
//! character in the method, a bad header name, ...) rather than waiting for the end of the line;
//! and once an error is reported, feeding more bytes reports the same error at the same offset.
//! `Content-Length` is checked as soon as its line ends (a value above
//! [`Limits::max_body_bytes`] is refused before the body arrives), and again once the first byte
//! of the next line shows whether a folded continuation extended it.
//!
//! Leniency for real devices: LF-only line endings, empty lines before a message (CRLF
//! keep-alives, counted in `consumed`), header names in any case, whitespace around `:` and at
//! line ends, folded header lines (RFC 2616 §2.2 LWS, joined with one space), runs of spaces
//! between the parts of the request and status lines, and header values / reason phrases that
//! are not UTF-8 (replaced with U+FFFD). Strict on what would be ambiguous: control
//! characters, a CR not followed by LF, a body without `Content-Length` (RFC 2326 §4.3 requires
//! it), conflicting `Content-Length` lines.
//!
//! Limitations: each call rescans from the start of the buffer, so reading a header section in
//! many small pieces costs time quadratic in its size, which [`Limits::max_header_bytes`] keeps
//! small.

use std::fmt;

use super::headers::{is_tchar, ContentLength, Header, Headers};
use super::message::{InterleavedFrame, Message, Method, Request, Response, StatusCode, Version};

/// Bounds on what one message may occupy, so no input makes the parser (or its caller's
/// buffer) grow without limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes from the start of the buffer (including empty lines before the message) to the end
    /// of the blank line that closes the header section. Default 8192.
    pub max_header_bytes: usize,
    /// Largest `Content-Length` accepted (RFC 2326 §12.14). Default 65536. Interleaved frames
    /// (RFC 2326 §10.12) are not subject to it: their 16-bit length bounds them already.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 8192,
            max_body_bytes: 65536,
        }
    }
}

/// What [`parse`] found at the start of the buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The buffer holds a valid prefix of a message; read more and call again.
    Incomplete,
    /// A whole message, which took the first `consumed` bytes of the buffer (including any
    /// empty lines before it).
    Complete { message: Message, consumed: usize },
}

/// Invalid input, at byte offset `at` of the buffer given to [`parse`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParseError {
    /// Offset of the offending byte (for [`ParseErrorKind::HeadersTooLarge`], the limit).
    pub at: usize,
    pub kind: ParseErrorKind,
}

impl ParseError {
    /// The status a server should answer with before closing the connection (RFC 2326 §7.1.1).
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid RTSP at byte {}: {}", self.at, self.kind)
    }
}

impl std::error::Error for ParseError {}

/// What was wrong (RFC 2326 §4, §6.1, §7.1, §12.14).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// No blank line within [`Limits::max_header_bytes`].
    HeadersTooLarge,
    /// `Content-Length` above [`Limits::max_body_bytes`].
    BodyTooLarge,
    /// Request line (RFC 2326 §6.1) malformed: bad method, control character, missing parts.
    BadRequestLine,
    /// Status line (RFC 2326 §7.1) malformed.
    BadStatusLine,
    /// The version of a request line is not `RTSP/<digits>.<digits>` (RFC 2326 §3.1).
    BadVersion,
    /// A header line (RFC 2326 §4.2) is not `token ":" value`, or holds control characters.
    BadHeaderLine,
    /// `Content-Length` (RFC 2326 §12.14) not a decimal number, or repeated with another value.
    BadContentLength,
    /// The Request-URI (RFC 2326 §3.2) contains spaces or is not UTF-8.
    BadUri,
}

impl ParseErrorKind {
    /// The status a server answers a request it could not read with (RFC 2326 §7.1.1): `413`
    /// for a header section or body over the limits, `505` for a version it cannot read, `400`
    /// for anything else.
    pub fn status(self) -> StatusCode {
        match self {
            ParseErrorKind::HeadersTooLarge | ParseErrorKind::BodyTooLarge => {
                StatusCode::REQUEST_ENTITY_TOO_LARGE
            }
            ParseErrorKind::BadVersion => StatusCode::VERSION_NOT_SUPPORTED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseErrorKind::HeadersTooLarge => "header section too large",
            ParseErrorKind::BodyTooLarge => "body too large",
            ParseErrorKind::BadRequestLine => "bad request line",
            ParseErrorKind::BadStatusLine => "bad status line",
            ParseErrorKind::BadVersion => "bad protocol version",
            ParseErrorKind::BadHeaderLine => "bad header line",
            ParseErrorKind::BadContentLength => "bad Content-Length",
            ParseErrorKind::BadUri => "bad request URI",
        })
    }
}

/// Parses one message (or interleaved frame) from the start of `buf`.
///
/// Never panics and allocates at most the header section and the body actually present.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Parsed, ParseError> {
    match parse_inner(buf, limits) {
        Ok(p) => Ok(p),
        Err(Stop::Incomplete) => Ok(Parsed::Incomplete),
        Err(Stop::Error(e)) => Err(e),
    }
}

/// Why the scan stopped early.
enum Stop {
    Incomplete,
    Error(ParseError),
}

fn fail(at: usize, kind: ParseErrorKind) -> Stop {
    Stop::Error(ParseError { at, kind })
}

/// At the end of the bytes available for a line: an error if the line is complete, otherwise
/// wait for more.
fn at_end(complete: bool, at: usize, kind: ParseErrorKind) -> Stop {
    if complete {
        fail(at, kind)
    } else {
        Stop::Incomplete
    }
}

struct Scan<'a> {
    buf: &'a [u8],
    /// `buf` cut at `max_header_bytes`: the header section must end within it.
    head: &'a [u8],
    limits: &'a Limits,
}

impl Scan<'_> {
    /// The header section needs bytes beyond what is buffered: wait, unless the limit is reached.
    fn need_more_head(&self) -> Stop {
        if self.buf.len() >= self.limits.max_header_bytes {
            fail(
                self.limits.max_header_bytes,
                ParseErrorKind::HeadersTooLarge,
            )
        } else {
            Stop::Incomplete
        }
    }

    /// The line starting at `start`: its content (without CR LF), where the next line starts,
    /// and whether it is complete. An incomplete line has a trailing CR (which may be followed
    /// by LF) removed.
    fn line(&self, start: usize) -> (&[u8], usize, bool) {
        let rest = self.head.get(start..).unwrap_or_default();
        match rest.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                let content = &rest[..lf];
                let content = content.strip_suffix(b"\r").unwrap_or(content);
                (content, start + lf + 1, true)
            }
            None => (
                rest.strip_suffix(b"\r").unwrap_or(rest),
                self.head.len(),
                false,
            ),
        }
    }
}

enum StartLine {
    Request {
        method: Method,
        uri: String,
        version: Version,
    },
    Response {
        version: Version,
        status: StatusCode,
        reason: String,
    },
}

fn parse_inner(buf: &[u8], limits: &Limits) -> Result<Parsed, Stop> {
    let scan = Scan {
        buf,
        head: &buf[..buf.len().min(limits.max_header_bytes)],
        limits,
    };

    // Empty lines before a message (RFC 2326 §10.12 servers and clients send CRLF keep-alives).
    let mut pos = 0;
    loop {
        match scan.head.get(pos) {
            None => return Err(scan.need_more_head()),
            Some(b'\n') => pos += 1,
            Some(b'\r') => match scan.head.get(pos + 1) {
                None => return Err(scan.need_more_head()),
                Some(b'\n') => pos += 2,
                Some(_) => return Err(fail(pos, ParseErrorKind::BadRequestLine)),
            },
            Some(_) => break,
        }
    }

    // Interleaved binary data (RFC 2326 §10.12): '$', channel, u16 length, data.
    if scan.head.get(pos) == Some(&b'$') {
        let Some(&[_, channel, hi, lo]) = buf.get(pos..pos + 4) else {
            return Err(Stop::Incomplete);
        };
        let start = pos + 4;
        let end = start + usize::from(u16::from_be_bytes([hi, lo]));
        let Some(payload) = buf.get(start..end) else {
            return Err(Stop::Incomplete);
        };
        return Ok(Parsed::Complete {
            message: Message::Data(InterleavedFrame {
                channel,
                payload: payload.to_vec(),
            }),
            consumed: end,
        });
    }

    // Request line, header lines and the blank line. Whatever the reason for needing more bytes
    // here, the header limit applies.
    let head = match parse_head(&scan, pos) {
        Ok(h) => h,
        Err(Stop::Incomplete) => return Err(scan.need_more_head()),
        Err(e) => return Err(e),
    };
    let (start_line, acc, body_start) = head;

    // Body (RFC 2326 §4.3): exactly Content-Length bytes, none without it.
    let body_end = body_start.saturating_add(acc.content_length.unwrap_or(0));
    let Some(body) = buf.get(body_start..body_end) else {
        return Err(Stop::Incomplete);
    };
    let headers: Headers = acc.headers.into_iter().collect();
    let message = match start_line {
        StartLine::Request {
            method,
            uri,
            version,
        } => Message::Request(Request {
            method,
            uri,
            version,
            headers,
            body: body.to_vec(),
        }),
        StartLine::Response {
            version,
            status,
            reason,
        } => Message::Response(Response {
            version,
            status,
            reason,
            headers,
            body: body.to_vec(),
        }),
    };
    Ok(Parsed::Complete {
        message,
        consumed: body_end,
    })
}

/// Parses from the start line at `pos` to the blank line: the start line, the headers and where
/// the body starts. `Stop::Incomplete` means the header section has not ended in the bytes
/// available.
fn parse_head<'a>(scan: &Scan<'a>, pos: usize) -> Result<(StartLine, HeaderAcc<'a>, usize), Stop> {
    // Request line (RFC 2326 §6.1) or status line (§7.1).
    let (line, mut p, complete) = scan.line(pos);
    let start_line = start_line(line, pos, complete)?;
    if !complete {
        return Err(Stop::Incomplete);
    }

    // Header lines (RFC 2326 §4.2, RFC 2616 §4.2) up to the blank line.
    let mut acc = HeaderAcc {
        headers: Vec::new(),
        pending: None,
        content_length: None,
        limits: scan.limits,
    };
    loop {
        match scan.head.get(p) {
            None => return Err(Stop::Incomplete),
            Some(b'\n') => {
                acc.finish()?;
                return Ok((start_line, acc, p + 1));
            }
            Some(b'\r') => match scan.head.get(p + 1) {
                None => return Err(Stop::Incomplete),
                Some(b'\n') => {
                    acc.finish()?;
                    return Ok((start_line, acc, p + 2));
                }
                Some(_) => return Err(fail(p, ParseErrorKind::BadHeaderLine)),
            },
            Some(b' ' | b'\t') => {
                // A continuation of the previous header's value.
                let (line, next, complete) = scan.line(p);
                let Some(pending) = acc.pending.as_mut() else {
                    return Err(fail(p, ParseErrorKind::BadHeaderLine));
                };
                check_value(line, p)?;
                if !complete {
                    return Err(Stop::Incomplete);
                }
                let (piece, _) = trim(line);
                if !piece.is_empty() {
                    if !pending.value.is_empty() {
                        pending.value.push(b' ');
                    }
                    pending.value.extend_from_slice(piece);
                }
                p = next;
            }
            Some(_) => {
                acc.finish()?;
                let (line, next, complete) = scan.line(p);
                let (name_end, value_start) = header_name(line, p, complete)?;
                check_value(&line[value_start..], p + value_start)?;
                if !complete {
                    return Err(Stop::Incomplete);
                }
                let (value, skipped) = trim(&line[value_start..]);
                let value_at = p + value_start + skipped;
                let name = &line[..name_end];
                if !value.is_empty() && name.eq_ignore_ascii_case(ContentLength::NAME.as_bytes()) {
                    // Early check: a folded continuation could only append " ...", which never
                    // turns a bad or too large value into a good one. (An empty value might
                    // still be continued, so it waits for `finish`.)
                    content_length(value, value_at, scan.limits)?;
                }
                acc.pending = Some(Pending {
                    // A token: ASCII, so the conversion is lossless.
                    name: String::from_utf8_lossy(name).into_owned(),
                    value: value.to_vec(),
                    value_at,
                });
                p = next;
            }
        }
    }
}

/// A header line whose value may still continue on the next (folded) line.
struct Pending {
    name: String,
    value: Vec<u8>,
    value_at: usize,
}

struct HeaderAcc<'a> {
    headers: Vec<(String, String)>,
    pending: Option<Pending>,
    content_length: Option<usize>,
    limits: &'a Limits,
}

impl HeaderAcc<'_> {
    /// Stores the pending header, now known to be complete, checking `Content-Length`.
    fn finish(&mut self) -> Result<(), Stop> {
        let Some(h) = self.pending.take() else {
            return Ok(());
        };
        if h.name.eq_ignore_ascii_case(ContentLength::NAME) {
            let n = content_length(&h.value, h.value_at, self.limits)?;
            if self.content_length.is_some_and(|prev| prev != n) {
                return Err(fail(h.value_at, ParseErrorKind::BadContentLength));
            }
            self.content_length = Some(n);
        }
        let value = String::from_utf8_lossy(&h.value).into_owned();
        self.headers.push((h.name, value));
        Ok(())
    }
}

/// A `Content-Length` value (RFC 2326 §12.14): decimal digits, at most `max_body_bytes`.
fn content_length(value: &[u8], at: usize, limits: &Limits) -> Result<usize, Stop> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(fail(at, ParseErrorKind::BadContentLength));
    }
    let n = value.iter().fold(0usize, |n, &d| {
        n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
    });
    if n > limits.max_body_bytes {
        return Err(fail(at, ParseErrorKind::BodyTooLarge));
    }
    Ok(n)
}

/// Strips SP/HT at both ends; also returns how many bytes were stripped at the front.
fn trim(s: &[u8]) -> (&[u8], usize) {
    let is_ws = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !is_ws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_ws(b)).map_or(start, |i| i + 1);
    (&s[start..end], start)
}

fn is_ctl(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// Header values may hold anything but control characters (HT excepted).
fn check_value(value: &[u8], base: usize) -> Result<(), Stop> {
    match value.iter().position(|&b| is_ctl(b) && b != b'\t') {
        Some(i) => Err(fail(base + i, ParseErrorKind::BadHeaderLine)),
        None => Ok(()),
    }
}

/// `token *(SP|HT) ":"`: returns the end of the name and the index just after the colon.
fn header_name(line: &[u8], base: usize, complete: bool) -> Result<(usize, usize), Stop> {
    let name_end = line
        .iter()
        .position(|&b| !is_tchar(b))
        .unwrap_or(line.len());
    let mut i = name_end;
    while matches!(line.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    match line.get(i) {
        Some(b':') if name_end > 0 => Ok((name_end, i + 1)),
        Some(_) => Err(fail(base + i, ParseErrorKind::BadHeaderLine)),
        None => Err(at_end(complete, base + i, ParseErrorKind::BadHeaderLine)),
    }
}

fn start_line(line: &[u8], base: usize, complete: bool) -> Result<StartLine, Stop> {
    if line.starts_with(b"RTSP/") {
        status_line(line, base, complete)
    } else {
        request_line(line, base, complete)
    }
}

/// `Method SP Request-URI SP RTSP-Version` (RFC 2326 §6.1).
fn request_line(line: &[u8], base: usize, complete: bool) -> Result<StartLine, Stop> {
    use ParseErrorKind::*;
    let method_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    if let Some(i) = line[..method_end].iter().position(|&b| !is_tchar(b)) {
        return Err(fail(base + i, BadRequestLine));
    }
    if method_end == 0 {
        return Err(fail(base, BadRequestLine));
    }

    // The rest: runs of SP separate exactly two tokens, the URI and the version. Scanned left to
    // right so that a prefix fails the same way as the whole line.
    let mut tokens = 0;
    let mut uri = (0, 0);
    let mut version = (0, 0);
    let mut in_token = false;
    for (i, &b) in line.iter().enumerate().skip(method_end) {
        if b == b' ' {
            if in_token && tokens == 1 {
                uri.1 = i;
            }
            in_token = false;
            continue;
        }
        if is_ctl(b) {
            return Err(fail(base + i, BadRequestLine));
        }
        if !in_token {
            tokens += 1;
            match tokens {
                1 => uri.0 = i,
                2 => version.0 = i,
                // A third token: the URI had a space in it.
                _ => return Err(fail(base + uri.1, BadUri)),
            }
        }
        in_token = true;
        version.1 = i + 1;
    }
    if !complete || tokens < 2 {
        return Err(at_end(complete, base + line.len(), BadRequestLine));
    }
    let uri = match std::str::from_utf8(&line[uri.0..uri.1]) {
        Ok(s) => s.to_owned(),
        Err(e) => return Err(fail(base + uri.0 + e.valid_up_to(), BadUri)),
    };
    let Some(version) = parse_version(&line[version.0..version.1]) else {
        return Err(fail(base + version.0, BadVersion));
    };
    let method = Method::from(String::from_utf8_lossy(&line[..method_end]).as_ref());
    Ok(StartLine::Request {
        method,
        uri,
        version,
    })
}

/// `RTSP/<major>.<minor>`, each at most 255.
fn parse_version(v: &[u8]) -> Option<Version> {
    let rest = v.strip_prefix(b"RTSP/")?;
    let dot = rest.iter().position(|&b| b == b'.')?;
    let (major, minor) = (&rest[..dot], &rest[dot + 1..]);
    let number = |d: &[u8]| -> Option<u8> {
        if d.is_empty() || !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = d.iter().fold(0u32, |n, &b| {
            n.saturating_mul(10).saturating_add(u32::from(b - b'0'))
        });
        u8::try_from(n).ok()
    };
    Some(Version::from_numbers(number(major)?, number(minor)?))
}

/// `RTSP-Version SP Status-Code SP Reason-Phrase` (RFC 2326 §7.1), checked byte by byte.
fn status_line(line: &[u8], base: usize, complete: bool) -> Result<StartLine, Stop> {
    use ParseErrorKind::BadStatusLine;
    let bad = |i: usize| -> Stop {
        if i >= line.len() {
            at_end(complete, base + i, BadStatusLine)
        } else {
            fail(base + i, BadStatusLine)
        }
    };
    // One or more digits, value at most `max`.
    let number = |i: &mut usize, max: u32| -> Result<u32, Stop> {
        let start = *i;
        let mut n = 0u32;
        while let Some(&b) = line.get(*i).filter(|b| b.is_ascii_digit()) {
            n = n * 10 + u32::from(b - b'0');
            if n > max {
                return Err(fail(base + *i, BadStatusLine));
            }
            *i += 1;
        }
        if *i == start {
            return Err(bad(*i));
        }
        Ok(n)
    };
    let expect = |i: &mut usize, want: u8| -> Result<(), Stop> {
        if line.get(*i) == Some(&want) {
            *i += 1;
            Ok(())
        } else {
            Err(bad(*i))
        }
    };

    let mut i = 5; // after "RTSP/"
    let major = number(&mut i, 255)?;
    expect(&mut i, b'.')?;
    let minor = number(&mut i, 255)?;
    expect(&mut i, b' ')?;
    while line.get(i) == Some(&b' ') {
        i += 1;
    }
    let code_start = i;
    for _ in 0..3 {
        if !line.get(i).is_some_and(u8::is_ascii_digit) {
            return Err(bad(i));
        }
        i += 1;
    }
    let code = line[code_start..i]
        .iter()
        .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    match line.get(i) {
        None if !complete => return Err(Stop::Incomplete),
        None | Some(b' ') => {}
        Some(_) => return Err(fail(base + i, BadStatusLine)),
    }
    let reason = line.get(i..).unwrap_or_default();
    if let Some(j) = reason.iter().position(|&b| is_ctl(b) && b != b'\t') {
        return Err(fail(base + i + j, BadStatusLine));
    }
    if !complete {
        return Err(Stop::Incomplete);
    }
    let (major, minor) = (
        u8::try_from(major).unwrap_or_default(),
        u8::try_from(minor).unwrap_or_default(),
    );
    Ok(StartLine::Response {
        version: Version::from_numbers(major, minor),
        status: StatusCode(code),
        reason: String::from_utf8_lossy(trim(reason).0).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ParseErrorKind::*;

    fn parse_default(buf: &[u8]) -> Result<Parsed, ParseError> {
        parse(buf, &Limits::default())
    }

    fn complete(buf: &[u8]) -> (Message, usize) {
        match parse_default(buf) {
            Ok(Parsed::Complete { message, consumed }) => (message, consumed),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn request(buf: &[u8]) -> Request {
        match complete(buf).0 {
            Message::Request(r) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn parses_request_with_lenient_syntax() {
        let buf = b"\r\n\n\
            SETUP  rtsp://h/live/trackID=0   RTSP/1.0 \n\
            cseq:3\n\
            Transport : RTP/AVP/TCP;\r\n\
            \t unicast;\r\n  interleaved=0-1  \r\n\
            X-Empty:\r\n\
            \n";
        let (msg, consumed) = complete(buf);
        assert_eq!(consumed, buf.len());
        let Message::Request(r) = msg else {
            panic!("{msg:?}")
        };
        assert_eq!(r.method, Method::Setup);
        assert_eq!(r.uri, "rtsp://h/live/trackID=0");
        assert_eq!(r.version, Version::Rtsp10);
        assert_eq!(
            r.headers.iter().collect::<Vec<_>>(),
            [
                ("cseq", "3"),
                ("Transport", "RTP/AVP/TCP; unicast; interleaved=0-1"),
                ("X-Empty", ""),
            ]
        );
        assert_eq!(r.cseq(), Ok(Some(3)));
        assert!(r.body.is_empty());
    }

    #[test]
    fn parses_response_and_body() {
        let buf = b"RTSP/1.0 200 OK\r\n\
            CSeq: 2\r\n\
            Content-Length: 5\r\n\
            \r\n\
            v=0\r\n\
            RTSP/1.0 404 Not Found\r\n\r\n";
        let (msg, consumed) = complete(buf);
        assert_eq!(consumed, 52);
        let Message::Response(r) = msg else {
            panic!("{msg:?}")
        };
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.reason, "OK");
        assert_eq!(r.body, b"v=0\r\n");
        let (msg, _) = complete(&buf[consumed..]);
        assert!(matches!(msg, Message::Response(r) if r.status == StatusCode::NOT_FOUND));

        // No reason phrase; another version; non-UTF-8 reason.
        let Message::Response(r) = complete(b"RTSP/2.0 505\r\n\r\n").0 else {
            panic!()
        };
        assert_eq!(r.version, Version::Other { major: 2, minor: 0 });
        assert_eq!(r.reason, "");
        let Message::Response(r) = complete(b"RTSP/1.0 200 \xe9t\xe9\r\n\r\n").0 else {
            panic!()
        };
        assert_eq!(r.reason, "\u{fffd}t\u{fffd}");
    }

    #[test]
    fn parses_other_versions_and_methods() {
        let r = request(b"OPTIONS * RTSP/2.0\r\n\r\n");
        assert_eq!(r.version, Version::Other { major: 2, minor: 0 });
        assert_eq!(r.uri, "*");
        let r = request(b"FLUSH rtsp://h/ RTSP/001.000\r\n\r\n");
        assert_eq!(r.method, Method::Extension("FLUSH".into()));
        assert_eq!(r.version, Version::Rtsp10);
    }

    #[test]
    fn parses_interleaved_frame() {
        let buf = [
            b'\r', b'\n', // a keep-alive before the frame
            b'$',  // RFC 2326 §10.12 magic
            0x01,  // channel 1
            0x00, 0x03, // length 3
            0xaa, 0xbb, 0xcc, // payload
            b'$', // the next frame
        ];
        let (msg, consumed) = complete(&buf);
        assert_eq!(consumed, 9);
        assert_eq!(
            msg,
            Message::Data(InterleavedFrame {
                channel: 1,
                payload: vec![0xaa, 0xbb, 0xcc]
            })
        );
        assert_eq!(parse_default(&buf[9..]), Ok(Parsed::Incomplete));
        // Frames are not bound by max_body_bytes.
        let limits = Limits {
            max_header_bytes: 8,
            max_body_bytes: 1,
        };
        assert!(matches!(
            parse(&buf, &limits),
            Ok(Parsed::Complete { consumed: 9, .. })
        ));
    }

    /// (input, expected error kind, expected offset). Each input is also checked at every
    /// prefix: Incomplete until the error becomes visible, then the same error.
    #[rustfmt::skip]
    const BAD: &[(&[u8], ParseErrorKind, usize)] = &[
        // NUL in the method: known at once, no need to wait for the line end.
        (b"OPT\0", BadRequestLine, 3),
        (b"OPTIONS\x01 * RTSP/1.0\r\n\r\n", BadRequestLine, 7),
        // '/' is not a token character (an HTTP response is not an RTSP request).
        (b"HTTP/1.1 200 OK\r\n\r\n", BadRequestLine, 4),
        // A leading space.
        (b" OPTIONS * RTSP/1.0\r\n\r\n", BadRequestLine, 0),
        // Missing version (HTTP/0.9 style): only known at the line end.
        (b"OPTIONS *\r\n\r\n", BadRequestLine, 9),
        (b"OPTIONS\r\n\r\n", BadRequestLine, 7),
        // A bare CR inside the request line, and before it.
        (b"OPTIONS *\rX RTSP/1.0\r\n\r\n", BadRequestLine, 9),
        (b"\rOPTIONS", BadRequestLine, 0),
        // A space inside the URI: offset of that space.
        //  0         1         2
        //  0123456789012345678901234
        (b"DESCRIBE rtsp://h/my file RTSP/1.0\r\n\r\n", BadUri, 20),
        (b"DESCRIBE rtsp://h/\xff RTSP/1.0\r\n\r\n", BadUri, 18),
        (b"GET / HTTP/1.1\r\n\r\n", BadVersion, 6),
        (b"OPTIONS * RTSP/1.256\r\n\r\n", BadVersion, 10),
        (b"OPTIONS * RTSP/1\r\n\r\n", BadVersion, 10),
        // Status lines.
        (b"RTSP/1.0 20 OK\r\n\r\n", BadStatusLine, 11),
        (b"RTSP/1.0 2000 OK\r\n\r\n", BadStatusLine, 12),
        (b"RTSP/x.0 200 OK\r\n\r\n", BadStatusLine, 5),
        (b"RTSP/1.0200 OK\r\n\r\n", BadStatusLine, 12),
        (b"RTSP/300.0 200 OK\r\n\r\n", BadStatusLine, 7),
        (b"RTSP/1.0 200 O\x00K\r\n\r\n", BadStatusLine, 14),
        (b"RTSP/1.0\r\n\r\n", BadStatusLine, 8),
        // Header lines.
        //  0         1
        //  0123456789012345678
        (b"OPTIONS * RTSP/1.0\r\nCSeq 1\r\n\r\n", BadHeaderLine, 25),
        (b"OPTIONS * RTSP/1.0\r\n: 1\r\n\r\n", BadHeaderLine, 20),
        (b"OPTIONS * RTSP/1.0\r\nCSeq\r\n\r\n", BadHeaderLine, 24),
        (b"OPTIONS * RTSP/1.0\r\nC\x00Seq: 1\r\n\r\n", BadHeaderLine, 21),
        (b"OPTIONS * RTSP/1.0\r\nCSeq: 1\x00\r\n\r\n", BadHeaderLine, 27),
        (b"OPTIONS * RTSP/1.0\r\nCSeq: 1\rX\r\n\r\n", BadHeaderLine, 27),
        (b"OPTIONS * RTSP/1.0\r\n\rX", BadHeaderLine, 20),
        // A continuation line with nothing to continue.
        (b"OPTIONS * RTSP/1.0\r\n folded\r\n\r\n", BadHeaderLine, 20),
        // Content-Length: offset of its value.
        //  0         1         2         3
        //  012345678901234567890123456789012345
        (b"ANNOUNCE * RTSP/1.0\r\nContent-Length: x\r\n\r\n", BadContentLength, 37),
        (b"ANNOUNCE * RTSP/1.0\r\nContent-Length: -1\r\n\r\n", BadContentLength, 37),
        (b"ANNOUNCE * RTSP/1.0\r\nContent-Length:\r\n\r\n", BadContentLength, 36),
        (b"ANNOUNCE * RTSP/1.0\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", BadContentLength, 56),
        // Folded into "1 0": not a number.
        (b"ANNOUNCE * RTSP/1.0\r\nContent-Length: 1\r\n 0\r\n\r\n", BadContentLength, 37),
        // Above 65536: known as soon as the next line starts, before the body arrives.
        (b"ANNOUNCE * RTSP/1.0\r\nContent-Length: 65537\r\nX", BodyTooLarge, 37),
        (b"ANNOUNCE * RTSP/1.0\r\nContent-Length: 99999999999999999999999\r\n\r\n", BodyTooLarge, 37),
    ];

    #[test]
    fn rejects_bad_input_at_the_right_byte() {
        for &(input, kind, at) in BAD {
            let want = ParseError { at, kind };
            assert_eq!(
                parse_default(input),
                Err(want.clone()),
                "{:?}",
                String::from_utf8_lossy(input)
            );
            // Every prefix: Incomplete, or already this very error.
            let mut first_err = None;
            for i in 0..input.len() {
                match parse_default(&input[..i]) {
                    Ok(Parsed::Incomplete) => assert!(first_err.is_none(), "{input:?}[..{i}]"),
                    Err(e) => {
                        assert_eq!(e, want, "{:?}[..{i}]", String::from_utf8_lossy(input));
                        first_err.get_or_insert(i);
                    }
                    Ok(p) => panic!("{input:?}[..{i}]: {p:?}"),
                }
            }
        }
    }

    #[test]
    fn reports_provably_bad_prefixes_early() {
        // The request line is not complete, but the method already has a NUL.
        assert_eq!(
            parse_default(b"OPT\0"),
            Err(ParseError {
                at: 3,
                kind: BadRequestLine
            })
        );
        // Three tokens after the method: the URI has a space, whatever follows.
        assert_eq!(
            parse_default(b"PLAY a b c"),
            Err(ParseError {
                at: 6,
                kind: BadUri
            })
        );
        assert_eq!(parse_default(b"PLAY a b"), Ok(Parsed::Incomplete));
        assert_eq!(parse_default(b"RTSP/1.0 2"), Ok(Parsed::Incomplete));
        assert_eq!(
            parse_default(b"RTSP/1.0 2x"),
            Err(ParseError {
                at: 10,
                kind: BadStatusLine
            })
        );
        assert_eq!(
            parse_default(b"PLAY * RTSP/1.0\r\nBad Name"),
            Err(ParseError {
                at: 21,
                kind: BadHeaderLine
            })
        );
    }

    #[test]
    fn enforces_limits() {
        let limits = Limits {
            max_header_bytes: 32,
            max_body_bytes: 4,
        };
        // Incomplete up to the limit, then HeadersTooLarge at the limit, with or without more.
        let long = b"OPTIONS * RTSP/1.0\r\nUser-Agent: aaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        assert_eq!(parse(&long[..31], &limits), Ok(Parsed::Incomplete));
        for n in [32, 40, long.len()] {
            assert_eq!(
                parse(&long[..n], &limits),
                Err(ParseError {
                    at: 32,
                    kind: HeadersTooLarge
                })
            );
        }
        // A header section of exactly the limit is fine.
        let exact = b"OPTIONS * RTSP/1.0\r\nCSeq: 12\r\n\r\n";
        assert_eq!(exact.len(), 32);
        assert!(matches!(
            parse(exact, &limits),
            Ok(Parsed::Complete { consumed: 32, .. })
        ));
        // Leading empty lines count: a flood of keep-alives cannot grow the buffer forever.
        assert_eq!(
            parse(&[b'\n'; 32], &limits),
            Err(ParseError {
                at: 32,
                kind: HeadersTooLarge
            })
        );
        // Content-Length is checked against the limit before the body is buffered.
        let body = b"SET_PARAMETER * RTSP/1.0\r\nContent-Length: 5\r\n\r\n";
        let limits = Limits {
            max_header_bytes: 100,
            max_body_bytes: 4,
        };
        assert_eq!(
            parse(body, &limits),
            Err(ParseError {
                at: 42,
                kind: BodyTooLarge
            })
        );
    }

    #[test]
    fn error_display_and_status() {
        let e = ParseError {
            at: 17,
            kind: BadRequestLine,
        };
        assert_eq!(e.to_string(), "invalid RTSP at byte 17: bad request line");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let e = ParseError {
            at: 37,
            kind: BodyTooLarge,
        };
        assert_eq!(e.status(), StatusCode::REQUEST_ENTITY_TOO_LARGE);
        assert_eq!(
            HeadersTooLarge.status(),
            StatusCode::REQUEST_ENTITY_TOO_LARGE
        );
        assert_eq!(BadVersion.status(), StatusCode::VERSION_NOT_SUPPORTED);
        assert_eq!(BadHeaderLine.status(), StatusCode::BAD_REQUEST);
    }
}
