//! RTSP header storage and typed headers (RFC 2326 §4.2, §12).
//!
//! [`Headers`] keeps every header line as `(name, value)` strings in arrival order, so nothing a
//! peer sent is lost and a message writes back the way it was read. Typed access goes through
//! the [`Header`] trait: [`Headers::get_typed`] gives `Ok(None)` when the header is absent and
//! `Err` when it is present but malformed, so a server can answer `400`/`461`/`457` precisely.
//!
//! Parsers here are lenient with what real devices send (whitespace around separators, any case
//! in parameter names, single ports for pairs) and precise in errors.

use std::fmt;

use super::message::Method;

/// The header lines of a message (RFC 2326 §4.2: names are case-insensitive, order is kept).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, String)>,
}

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of the first header named `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).next()
    }

    /// The values of every header named `name`, in order.
    pub fn get_all<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.entries
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Replaces every header named `name` by one `name: value` line, at the position of the
    /// first one (or at the end if there was none).
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self
            .entries
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(&name))
        {
            Some(i) => {
                let mut idx = 0;
                self.entries.retain(|(n, _)| {
                    let keep = idx <= i || !n.eq_ignore_ascii_case(&name);
                    idx += 1;
                    keep
                });
                self.entries[i] = (name, value);
            }
            None => self.entries.push((name, value)),
        }
    }

    /// Adds a `name: value` line after the others, keeping any of the same name.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.entries.push((name.into(), value.into()));
    }

    /// Removes every header named `name`; returns the first removed value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let mut first = None;
        let mut kept = Vec::with_capacity(self.entries.len());
        for (n, v) in self.entries.drain(..) {
            if n.eq_ignore_ascii_case(name) {
                first.get_or_insert(v);
            } else {
                kept.push((n, v));
            }
        }
        self.entries = kept;
        first
    }

    /// `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The typed header `H`: `Ok(None)` if absent, `Err` if malformed.
    ///
    /// A header that appears on several lines is combined as RFC 2616 §4.2 (inherited by
    /// RFC 2326 §4.2) allows: joined with `", "` when `H` is a comma-separated list
    /// ([`Header::COMMA_LIST`]); otherwise the lines must agree, or it is an error.
    pub fn get_typed<H: Header>(&self) -> Result<Option<H>, HeaderError> {
        let mut values = self.get_all(H::NAME);
        let Some(first) = values.next() else {
            return Ok(None);
        };
        let rest: Vec<&str> = values.collect();
        if rest.is_empty() {
            return H::parse(first).map(Some);
        }
        if H::COMMA_LIST {
            let mut joined = first.to_owned();
            for v in rest {
                joined.push_str(", ");
                joined.push_str(v);
            }
            return H::parse(&joined).map(Some);
        }
        if rest.iter().all(|v| v.trim() == first.trim()) {
            return H::parse(first).map(Some);
        }
        Err(HeaderError::new(H::NAME, "repeated with different values"))
    }

    /// Sets the typed header `h`, replacing any header of the same name.
    pub fn set_typed<H: Header>(&mut self, h: &H) {
        self.set(H::NAME, h.to_value());
    }
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        Headers {
            entries: iter
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        }
    }
}

/// A header with a typed value (RFC 2326 §12).
pub trait Header: Sized {
    /// The header name in its canonical spelling, e.g. `"CSeq"`; matched case-insensitively.
    const NAME: &'static str;

    /// Whether the value is a comma-separated list, so several lines of this header may be
    /// joined into one (RFC 2616 §4.2).
    const COMMA_LIST: bool = false;

    /// Parses a header value (already unfolded and trimmed by the message parser).
    fn parse(value: &str) -> Result<Self, HeaderError>;

    /// The value as it is written on the wire.
    fn to_value(&self) -> String;
}

/// A header was present but its value could not be understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderError {
    /// Canonical name of the header, e.g. `"Transport"`.
    pub header: &'static str,
    /// What was wrong, for logs and for a response body.
    pub reason: String,
}

impl HeaderError {
    pub fn new(header: &'static str, reason: impl Into<String>) -> Self {
        HeaderError {
            header,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed {} header: {}", self.header, self.reason)
    }
}

impl std::error::Error for HeaderError {}

// ---------------------------------------------------------------------------------------------
// Small lexical helpers shared by the typed headers.

/// RFC 2616 §2.2 `token` character (RFC 2326 §15.1 uses the same grammar).
pub(crate) fn is_tchar(b: u8) -> bool {
    b > b' ' && b < 0x7f && !b"()<>@,;:\\\"/[]?={}".contains(&b)
}

fn trim_ows(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// Splits on `sep` outside double-quoted strings; always at least one part (so `parts[0]` is
/// safe). Errors on an unterminated quoted string.
fn split_unquoted<'a>(
    header: &'static str,
    s: &'a str,
    sep: u8,
) -> Result<Vec<&'a str>, HeaderError> {
    let mut parts = Vec::new();
    let mut in_quotes = false;
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        if b == b'"' {
            in_quotes = !in_quotes;
        } else if b == sep && !in_quotes {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    if in_quotes {
        return Err(HeaderError::new(header, "unterminated quoted string"));
    }
    parts.push(&s[start..]);
    Ok(parts)
}

/// `name[=value]`, both trimmed.
fn split_param(p: &str) -> (&str, Option<&str>) {
    match p.split_once('=') {
        Some((n, v)) => (trim_ows(n), Some(trim_ows(v))),
        None => (trim_ows(p), None),
    }
}

/// Removes one pair of surrounding double quotes; a quote anywhere else is an error.
fn unquote<'a>(header: &'static str, v: &'a str) -> Result<&'a str, HeaderError> {
    let inner = match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => trim_ows(inner),
        None => v,
    };
    if inner.contains('"') {
        return Err(HeaderError::new(header, format!("stray quote in {v:?}")));
    }
    Ok(inner)
}

/// A parameter value written bare when that reads back the same, quoted otherwise.
fn quote_if_needed(v: &str) -> String {
    let bare = !v.is_empty()
        && !v
            .chars()
            .any(|c| matches!(c, ';' | ',' | '"') || c.is_whitespace() || c.is_control());
    if bare {
        v.to_owned()
    } else {
        format!("\"{v}\"")
    }
}

fn parse_u32(header: &'static str, what: &str, v: &str) -> Result<u32, HeaderError> {
    let v = trim_ows(v);
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HeaderError::new(
            header,
            format!("{what}: not a number: {v:?}"),
        ));
    }
    v.parse()
        .map_err(|_| HeaderError::new(header, format!("{what}: out of range: {v}")))
}

fn parse_small<T: TryFrom<u32>>(
    header: &'static str,
    what: &str,
    v: &str,
) -> Result<T, HeaderError> {
    let n = parse_u32(header, what, v)?;
    T::try_from(n).map_err(|_| HeaderError::new(header, format!("{what}: out of range: {n}")))
}

// ---------------------------------------------------------------------------------------------

/// `CSeq` (RFC 2326 §12.17): the sequence number pairing a response with its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CSeq(pub u32);

impl Header for CSeq {
    const NAME: &'static str = "CSeq";

    fn parse(value: &str) -> Result<Self, HeaderError> {
        parse_u32(Self::NAME, "sequence number", value).map(CSeq)
    }

    fn to_value(&self) -> String {
        self.0.to_string()
    }
}

/// `Session` (RFC 2326 §12.37): `id[;timeout=seconds]`.
///
/// RFC 2326 §3.4 limits session ids to `ALPHA | DIGIT | "$" | "-" | "_" | "." | "+"`; other
/// visible characters are tolerated, but not an empty id, whitespace, control characters, `;`,
/// `,` or quotes. Unknown parameters are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Session {
    pub id: String,
    /// Seconds of inactivity after which the server may drop the session (default 60).
    pub timeout: Option<u32>,
}

impl Header for Session {
    const NAME: &'static str = "Session";

    fn parse(value: &str) -> Result<Self, HeaderError> {
        let mut parts = value.split(';');
        let id = trim_ows(parts.next().unwrap_or(""));
        if id.is_empty() {
            return Err(HeaderError::new(Self::NAME, "empty session id"));
        }
        if let Some(c) = id
            .chars()
            .find(|&c| c.is_whitespace() || c.is_control() || c == ',' || c == '"')
        {
            return Err(HeaderError::new(
                Self::NAME,
                format!("session id contains {c:?}"),
            ));
        }
        let mut timeout = None;
        for p in parts {
            let (name, v) = split_param(p);
            if name.eq_ignore_ascii_case("timeout") {
                let v = v.ok_or_else(|| HeaderError::new(Self::NAME, "timeout without value"))?;
                timeout = Some(parse_u32(Self::NAME, "timeout", v)?);
            }
        }
        Ok(Session {
            id: id.to_owned(),
            timeout,
        })
    }

    fn to_value(&self) -> String {
        match self.timeout {
            Some(t) => format!("{};timeout={t}", self.id),
            None => self.id.clone(),
        }
    }
}

/// The `transport/profile/lower-transport` triple of a transport spec (RFC 2326 §12.39).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TransportProfile {
    /// `RTP/AVP` or `RTP/AVP/UDP`: RTP over UDP, unicast or multicast.
    RtpAvp,
    /// `RTP/AVP/TCP`: RTP interleaved on the RTSP connection (RFC 2326 §10.12).
    RtpAvpTcp,
    /// `RTP/AVPF` or `RTP/AVPF/UDP`: RTP over UDP with RTCP feedback (RFC 4585), as GStreamer
    /// asks for a medium the SDP offers as `RTP/AVPF`.
    RtpAvpf,
    /// `RTP/AVPF/TCP`: the same, interleaved.
    RtpAvpfTcp,
    /// Anything else (e.g. `RTP/SAVP`), kept verbatim.
    Other(String),
}

impl Default for TransportSpec {
    fn default() -> Self {
        Self::new(TransportProfile::RtpAvp)
    }
}

impl TransportProfile {
    fn parse(s: &str) -> Self {
        if s.eq_ignore_ascii_case("RTP/AVP") || s.eq_ignore_ascii_case("RTP/AVP/UDP") {
            TransportProfile::RtpAvp
        } else if s.eq_ignore_ascii_case("RTP/AVP/TCP") {
            TransportProfile::RtpAvpTcp
        } else if s.eq_ignore_ascii_case("RTP/AVPF") || s.eq_ignore_ascii_case("RTP/AVPF/UDP") {
            TransportProfile::RtpAvpf
        } else if s.eq_ignore_ascii_case("RTP/AVPF/TCP") {
            TransportProfile::RtpAvpfTcp
        } else {
            TransportProfile::Other(s.to_owned())
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            TransportProfile::RtpAvp => "RTP/AVP",
            TransportProfile::RtpAvpTcp => "RTP/AVP/TCP",
            TransportProfile::RtpAvpf => "RTP/AVPF",
            TransportProfile::RtpAvpfTcp => "RTP/AVPF/TCP",
            TransportProfile::Other(s) => s,
        }
    }

    /// Whether the profile is interleaved on the RTSP connection.
    pub fn is_tcp(&self) -> bool {
        match self {
            TransportProfile::RtpAvpTcp | TransportProfile::RtpAvpfTcp => true,
            TransportProfile::Other(s) => s.to_ascii_uppercase().ends_with("/TCP"),
            _ => false,
        }
    }

    /// Whether the client set up with RTCP feedback (RFC 4585, `RTP/AVPF`; RFC 5124
    /// `RTP/SAVPF`).
    pub fn is_avpf(&self) -> bool {
        match self {
            TransportProfile::RtpAvpf | TransportProfile::RtpAvpfTcp => true,
            TransportProfile::Other(s) => s.to_ascii_uppercase().starts_with("RTP/SAVPF"),
            _ => false,
        }
    }

    /// Whether the profile is secure RTP (RFC 3711 `RTP/SAVP`, RFC 5124 `RTP/SAVPF`, over
    /// UDP or `/TCP` interleaved).
    pub fn is_secure(&self) -> bool {
        matches!(self, TransportProfile::Other(s) if s.to_ascii_uppercase().starts_with("RTP/SAVP"))
    }
}

/// One alternative of a `Transport` header (RFC 2326 §12.39). The default is plain
/// `RTP/AVP;unicast` with no parameters, to be filled in with struct-update syntax.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TransportSpec {
    pub profile: TransportProfile,
    /// `multicast` (true) or `unicast` (false, also when neither is given).
    pub multicast: bool,
    /// `client_port=rtp-rtcp`; a single port `p` means `p-(p+1)`.
    pub client_port: Option<(u16, u16)>,
    /// `server_port=rtp-rtcp`; a single port `p` means `p-(p+1)`.
    pub server_port: Option<(u16, u16)>,
    /// `interleaved=rtp-rtcp` channels (RFC 2326 §10.12); a single channel `c` means `c-(c+1)`.
    pub interleaved: Option<(u8, u8)>,
    /// `ssrc=` in hexadecimal.
    pub ssrc: Option<u32>,
    /// `mode=`, unquoted (e.g. `PLAY`, `record`, `PLAY,RECORD`).
    pub mode: Option<String>,
    /// `destination[=address]`; `Some("")` for a bare `destination`.
    pub destination: Option<String>,
    /// `source=address`.
    pub source: Option<String>,
    /// `ttl=` for multicast.
    pub ttl: Option<u8>,
    /// Other parameters (`append`, `port=`, `layers=`, extensions) in order, values verbatim.
    pub other: Vec<(String, Option<String>)>,
}

impl TransportSpec {
    /// A spec with `profile` and nothing else (unicast).
    pub fn new(profile: TransportProfile) -> Self {
        TransportSpec {
            profile,
            multicast: false,
            client_port: None,
            server_port: None,
            interleaved: None,
            ssrc: None,
            mode: None,
            destination: None,
            source: None,
            ttl: None,
            other: Vec::new(),
        }
    }

    fn parse(spec: &str) -> Result<Self, HeaderError> {
        const H: &str = Transport::NAME;
        let params = split_unquoted(H, spec, b';')?;
        let profile = trim_ows(params[0]);
        if profile.is_empty() {
            return Err(HeaderError::new(
                H,
                format!("missing transport protocol in {spec:?}"),
            ));
        }
        let mut t = TransportSpec::new(TransportProfile::parse(profile));
        for p in &params[1..] {
            let (name, value) = split_param(p);
            if name.is_empty() {
                if value.is_some() {
                    return Err(HeaderError::new(
                        H,
                        format!("parameter without name: {p:?}"),
                    ));
                }
                continue; // tolerate ";;"
            }
            let need = |what: &str| {
                value.ok_or_else(|| HeaderError::new(H, format!("{what} without value")))
            };
            match name.to_ascii_lowercase().as_str() {
                "unicast" => t.multicast = false,
                "multicast" => t.multicast = true,
                "client_port" => t.client_port = Some(pair(need(name)?, "client_port")?),
                "server_port" => t.server_port = Some(pair(need(name)?, "server_port")?),
                "interleaved" => t.interleaved = Some(pair(need(name)?, "interleaved")?),
                "ssrc" => {
                    let v = need(name)?;
                    if v.is_empty() || v.len() > 16 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(HeaderError::new(H, format!("ssrc: not hexadecimal: {v:?}")));
                    }
                    let ssrc = u32::from_str_radix(v, 16)
                        .map_err(|_| HeaderError::new(H, format!("ssrc: out of range: {v}")))?;
                    t.ssrc = Some(ssrc);
                }
                "mode" => t.mode = Some(unquote(H, need(name)?)?.to_owned()),
                "destination" => t.destination = Some(unquote(H, value.unwrap_or(""))?.to_owned()),
                "source" => t.source = Some(unquote(H, need(name)?)?.to_owned()),
                "ttl" => t.ttl = Some(parse_small(H, "ttl", need(name)?)?),
                _ => t.other.push((name.to_owned(), value.map(str::to_owned))),
            }
        }
        Ok(t)
    }

    fn write(&self, out: &mut String) {
        use fmt::Write as _;
        out.push_str(self.profile.as_str());
        out.push_str(if self.multicast {
            ";multicast"
        } else {
            ";unicast"
        });
        // The `write!`s into a String below cannot fail.
        if let Some(d) = &self.destination {
            if d.is_empty() {
                out.push_str(";destination");
            } else {
                let _ = write!(out, ";destination={}", quote_if_needed(d));
            }
        }
        if let Some(s) = &self.source {
            let _ = write!(out, ";source={}", quote_if_needed(s));
        }
        if let Some((a, b)) = self.interleaved {
            let _ = write!(out, ";interleaved={a}-{b}");
        }
        if let Some(ttl) = self.ttl {
            let _ = write!(out, ";ttl={ttl}");
        }
        if let Some((a, b)) = self.client_port {
            let _ = write!(out, ";client_port={a}-{b}");
        }
        if let Some((a, b)) = self.server_port {
            let _ = write!(out, ";server_port={a}-{b}");
        }
        if let Some(ssrc) = self.ssrc {
            let _ = write!(out, ";ssrc={ssrc:08X}");
        }
        if let Some(m) = &self.mode {
            let _ = write!(out, ";mode={}", quote_if_needed(m));
        }
        for (name, value) in &self.other {
            out.push(';');
            out.push_str(name);
            if let Some(v) = value {
                out.push('=');
                out.push_str(v);
            }
        }
    }
}

/// `a-b` or `a` (meaning `a-(a+1)`), for ports and interleaved channels.
fn pair<T>(v: &str, what: &str) -> Result<(T, T), HeaderError>
where
    T: TryFrom<u32> + Copy,
{
    const H: &str = Transport::NAME;
    match v.split_once('-') {
        Some((a, b)) => Ok((parse_small(H, what, a)?, parse_small(H, what, b)?)),
        None => {
            let a: u32 = parse_u32(H, what, v)?;
            let first = T::try_from(a)
                .map_err(|_| HeaderError::new(H, format!("{what}: out of range: {a}")))?;
            let second = T::try_from(a.saturating_add(1))
                .map_err(|_| HeaderError::new(H, format!("{what}: no room for {a}+1")))?;
            Ok((first, second))
        }
    }
}

/// `Transport` (RFC 2326 §12.39): comma-separated alternatives, in order of preference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Transport(pub Vec<TransportSpec>);

impl Header for Transport {
    const NAME: &'static str = "Transport";
    const COMMA_LIST: bool = true;

    fn parse(value: &str) -> Result<Self, HeaderError> {
        let specs = split_unquoted(Self::NAME, value, b',')?
            .into_iter()
            .filter(|s| !trim_ows(s).is_empty())
            .map(TransportSpec::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if specs.is_empty() {
            return Err(HeaderError::new(Self::NAME, "no transport spec"));
        }
        Ok(Transport(specs))
    }

    fn to_value(&self) -> String {
        let mut out = String::new();
        for (i, spec) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            spec.write(&mut out);
        }
        out
    }
}

/// A normal play time (RFC 2326 §3.6).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NptTime {
    /// `now`: the current instant of a live source.
    Now,
    /// Seconds from the start of the presentation (`123.45` or `h:mm:ss.frac`).
    Seconds(f64),
}

impl NptTime {
    fn parse(s: &str) -> Result<Self, HeaderError> {
        const H: &str = Range::NAME;
        let s = trim_ows(s);
        if s.eq_ignore_ascii_case("now") {
            return Ok(NptTime::Now);
        }
        let bad = || HeaderError::new(H, format!("bad npt time {s:?}"));
        let decimal = |d: &str| -> Result<f64, HeaderError> {
            let (int, frac) = d.split_once('.').unwrap_or((d, ""));
            if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            d.parse::<f64>().map_err(|_| bad())
        };
        let secs = match s.split(':').collect::<Vec<_>>()[..] {
            [secs] => decimal(secs)?,
            [h, m, sec] => {
                let h = decimal(h)?;
                let m = decimal(m)?;
                let sec = decimal(sec)?;
                if h.fract() != 0.0 || m.fract() != 0.0 || m >= 60.0 || sec >= 60.0 {
                    return Err(bad());
                }
                h * 3600.0 + m * 60.0 + sec
            }
            _ => return Err(bad()),
        };
        if !secs.is_finite() {
            return Err(bad());
        }
        Ok(NptTime::Seconds(secs))
    }

    fn write(&self, out: &mut String) {
        match *self {
            NptTime::Now => out.push_str("now"),
            NptTime::Seconds(s) => {
                // Millisecond precision when that is exact; otherwise the shortest form that
                // reads back as the same f64 (Display never uses exponents).
                let short = format!("{s:.3}");
                if short.parse::<f64>() == Ok(s) {
                    out.push_str(&short);
                } else {
                    out.push_str(&s.to_string());
                }
            }
        }
    }
}

/// `Range` (RFC 2326 §12.29). Only normal play time (§3.6) is interpreted; SMPTE (§3.5) and
/// absolute (§3.7) ranges, and npt ranges without a start (`npt=-20`), are kept verbatim as
/// [`Range::Other`]. A `;time=` parameter after an npt range is ignored.
#[derive(Clone, Debug, PartialEq)]
pub enum Range {
    Npt {
        start: NptTime,
        end: Option<NptTime>,
    },
    Other(String),
}

impl Header for Range {
    const NAME: &'static str = "Range";

    fn parse(value: &str) -> Result<Self, HeaderError> {
        let value = trim_ows(value);
        let (spec, _params) = value.split_once(';').unwrap_or((value, ""));
        let npt = spec
            .split_once('=')
            .filter(|(unit, _)| trim_ows(unit).eq_ignore_ascii_case("npt"))
            .map(|(_, r)| trim_ows(r));
        let Some(range) = npt else {
            if value.is_empty() {
                return Err(HeaderError::new(Self::NAME, "empty"));
            }
            return Ok(Range::Other(value.to_owned()));
        };
        let Some((start, end)) = range.split_once('-') else {
            return Err(HeaderError::new(
                Self::NAME,
                format!("no '-' in npt range {range:?}"),
            ));
        };
        if trim_ows(start).is_empty() {
            NptTime::parse(end)?; // "npt=-20": valid, but has no start to report
            return Ok(Range::Other(value.to_owned()));
        }
        let start = NptTime::parse(start)?;
        let end = if trim_ows(end).is_empty() {
            None
        } else {
            Some(NptTime::parse(end)?)
        };
        Ok(Range::Npt { start, end })
    }

    fn to_value(&self) -> String {
        match self {
            Range::Npt { start, end } => {
                let mut out = String::from("npt=");
                start.write(&mut out);
                out.push('-');
                if let Some(end) = end {
                    end.write(&mut out);
                }
                out
            }
            Range::Other(s) => s.clone(),
        }
    }
}

/// One stream of an `RTP-Info` header (RFC 2326 §12.33).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RtpInfoEntry {
    /// The stream URL (usually the SETUP URL of the track).
    pub url: String,
    /// Sequence number of the first packet sent after the PLAY.
    pub seq: Option<u16>,
    /// RTP timestamp corresponding to the start of the PLAY range.
    pub rtptime: Option<u32>,
}

/// `RTP-Info` (RFC 2326 §12.33): `url=...;seq=...;rtptime=...`, one entry per stream.
///
/// Entries are split at commas followed by `url=`, so a comma inside a URL survives; within an
/// entry, `;` pieces before the first `seq=`/`rtptime=`/`ssrc=` belong to the URL. `ssrc=`
/// (RFC 7826 §18.45) and other parameters are ignored. A quoted URL (RFC 7826 style) is
/// unquoted; the writer quotes a URL only if it contains `;` or `,`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RtpInfo(pub Vec<RtpInfoEntry>);

impl RtpInfo {
    fn entry(e: &str) -> Result<RtpInfoEntry, HeaderError> {
        const H: &str = RtpInfo::NAME;
        let e = trim_ows(e);
        let Some(rest) = strip_prefix_ci(e, "url=") else {
            return Err(HeaderError::new(
                H,
                format!("entry does not start with url=: {e:?}"),
            ));
        };
        let pieces = split_unquoted(H, rest, b';')?;
        let mut url = pieces[0].to_owned();
        let mut entry = RtpInfoEntry {
            url: String::new(),
            seq: None,
            rtptime: None,
        };
        // A quoted url ends at its closing quote; an unquoted one takes every `;` piece up to
        // the first parameter this header defines.
        let mut in_params = trim_ows(&url).starts_with('"');
        for p in &pieces[1..] {
            let (name, value) = split_param(p);
            let known = ["seq", "rtptime", "ssrc"]
                .iter()
                .any(|k| name.eq_ignore_ascii_case(k));
            if !in_params && !known {
                url.push(';');
                url.push_str(p);
                continue;
            }
            in_params = true;
            if name.eq_ignore_ascii_case("seq") {
                let v = value.ok_or_else(|| HeaderError::new(H, "seq without value"))?;
                entry.seq = Some(parse_small(H, "seq", v)?);
            } else if name.eq_ignore_ascii_case("rtptime") {
                let v = value.ok_or_else(|| HeaderError::new(H, "rtptime without value"))?;
                entry.rtptime = Some(parse_u32(H, "rtptime", v)?);
            }
        }
        let url = unquote(H, trim_ows(&url))?;
        if url.is_empty() {
            return Err(HeaderError::new(H, "empty url"));
        }
        entry.url = url.to_owned();
        Ok(entry)
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

impl Header for RtpInfo {
    const NAME: &'static str = "RTP-Info";
    const COMMA_LIST: bool = true;

    fn parse(value: &str) -> Result<Self, HeaderError> {
        let mut entries = Vec::new();
        let mut start = 0;
        for (i, _) in value.match_indices(',') {
            let next = value[i + 1..].trim_start_matches([' ', '\t']);
            if strip_prefix_ci(next, "url=").is_some() {
                entries.push(Self::entry(&value[start..i])?);
                start = i + 1;
            }
        }
        entries.push(Self::entry(&value[start..])?);
        Ok(RtpInfo(entries))
    }

    fn to_value(&self) -> String {
        let mut out = String::new();
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("url=");
            // RFC 2326 §12.33 has bare urls; quote (RFC 7826 §18.45 style) only when a bare one
            // would not read back.
            if e.url.contains([';', ',']) {
                out.push('"');
                out.push_str(&e.url);
                out.push('"');
            } else {
                out.push_str(&e.url);
            }
            if let Some(seq) = e.seq {
                out.push_str(&format!(";seq={seq}"));
            }
            if let Some(t) = e.rtptime {
                out.push_str(&format!(";rtptime={t}"));
            }
        }
        out
    }
}

/// `Public` (RFC 2326 §12.28): the methods the server supports, comma-separated. Whitespace
/// alone is also accepted as a separator (some devices send `OPTIONS DESCRIBE`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Public(pub Vec<Method>);

impl Header for Public {
    const NAME: &'static str = "Public";
    const COMMA_LIST: bool = true;

    fn parse(value: &str) -> Result<Self, HeaderError> {
        let methods = value
            .split([',', ' ', '\t'])
            .filter(|m| !m.is_empty())
            .map(Method::from)
            .collect();
        Ok(Public(methods))
    }

    fn to_value(&self) -> String {
        let names: Vec<&str> = self.0.iter().map(Method::as_str).collect();
        names.join(", ")
    }
}

/// A header whose value is kept as text, trimmed, and must not be empty.
macro_rules! text_header {
    ($(#[$doc:meta])* $name:ident, $wire:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub struct $name(pub String);

        impl Header for $name {
            const NAME: &'static str = $wire;

            fn parse(value: &str) -> Result<Self, HeaderError> {
                let v = trim_ows(value);
                if v.is_empty() {
                    return Err(HeaderError::new(Self::NAME, "empty"));
                }
                Ok($name(v.to_owned()))
            }

            fn to_value(&self) -> String {
                self.0.clone()
            }
        }
    };
}

text_header!(
    /// `Content-Base` (RFC 2326 §12.11): the base URL for relative URLs in the body (e.g. SDP
    /// `a=control:`).
    ContentBase,
    "Content-Base"
);

text_header!(
    /// `Content-Type` (RFC 2326 §12.16, RFC 2616 §14.17): the media type of the body,
    /// parameters kept verbatim.
    ContentType,
    "Content-Type"
);

/// `Content-Length` (RFC 2326 §12.14): the body length in bytes (decimal digits only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ContentLength(pub usize);

impl Header for ContentLength {
    const NAME: &'static str = "Content-Length";

    fn parse(value: &str) -> Result<Self, HeaderError> {
        let v = trim_ows(value);
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HeaderError::new(Self::NAME, format!("not a number: {v:?}")));
        }
        v.parse()
            .map(ContentLength)
            .map_err(|_| HeaderError::new(Self::NAME, format!("out of range: {v}")))
    }

    fn to_value(&self) -> String {
        self.0.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err<H: Header + fmt::Debug>(v: &str) -> String {
        match H::parse(v) {
            Ok(h) => panic!("{v:?} parsed as {h:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// Each input is refused with that message.
    fn rejects<H: Header + fmt::Debug>(cases: &[(&str, &str)]) {
        for (input, msg) in cases {
            assert_eq!(err::<H>(input), *msg, "{input:?}");
        }
    }

    /// to_value then parse gives back the same header.
    fn round_trips<H: Header + PartialEq + fmt::Debug>(h: &H) {
        let v = h.to_value();
        assert_eq!(&H::parse(&v).unwrap(), h, "via {v:?}");
    }

    #[test]
    fn headers_storage() {
        let mut h = Headers::new();
        assert!(h.is_empty());
        h.append("CSeq", "1");
        h.append("User-Agent", "a");
        h.append("user-agent", "b");
        h.append("Session", "s");
        assert_eq!(h.len(), 4);
        assert_eq!(h.get("cseq"), Some("1"));
        assert_eq!(h.get("USER-AGENT"), Some("a"));
        assert_eq!(h.get_all("User-Agent").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(h.get("Missing"), None);

        // set replaces all of the same name, at the first position, keeping order otherwise.
        h.set("User-Agent", "c");
        assert_eq!(
            h.iter().collect::<Vec<_>>(),
            [("CSeq", "1"), ("User-Agent", "c"), ("Session", "s")]
        );
        h.set("Range", "npt=0-");
        assert_eq!(h.iter().last(), Some(("Range", "npt=0-")));

        assert_eq!(h.remove("cseq"), Some("1".to_owned()));
        assert_eq!(h.remove("cseq"), None);
        assert_eq!(h.len(), 3);
    }

    #[test]
    fn typed_access() {
        let mut h: Headers = [("cseq", " 7 "), ("Transport", "RTP/AVP;client_port=5000")]
            .into_iter()
            .collect();
        assert_eq!(h.get_typed::<CSeq>(), Ok(Some(CSeq(7))));
        assert_eq!(h.get_typed::<Session>(), Ok(None));
        h.set_typed(&CSeq(8));
        assert_eq!(h.get("CSeq"), Some("8"));
        assert_eq!(h.len(), 2);

        // Repeated list headers are joined (RFC 2616 §4.2) ...
        h.append("transport", "RTP/AVP/TCP;interleaved=2-3");
        let t = h.get_typed::<Transport>().unwrap().unwrap();
        assert_eq!(t.0.len(), 2);
        assert_eq!(t.0[1].interleaved, Some((2, 3)));
        // ... repeated single-valued ones must agree.
        h.append("CSeq", "8");
        assert_eq!(h.get_typed::<CSeq>(), Ok(Some(CSeq(8))));
        h.append("CSeq", "9");
        assert_eq!(
            h.get_typed::<CSeq>().unwrap_err().to_string(),
            "malformed CSeq header: repeated with different values"
        );
        h.set("CSeq", "x");
        assert_eq!(
            h.get_typed::<CSeq>().unwrap_err().to_string(),
            "malformed CSeq header: sequence number: not a number: \"x\""
        );
    }

    #[test]
    fn cseq() {
        assert_eq!(CSeq::parse("0"), Ok(CSeq(0)));
        assert_eq!(CSeq::parse("4294967295"), Ok(CSeq(u32::MAX)));
        for bad in ["", "-1", "+1", "1 2", "4294967296", "0x10"] {
            assert!(CSeq::parse(bad).is_err(), "{bad:?}");
        }
        round_trips(&CSeq(42));
    }

    #[test]
    fn session() {
        assert_eq!(
            Session::parse("abc123;timeout=60"),
            Ok(Session {
                id: "abc123".into(),
                timeout: Some(60)
            })
        );
        assert_eq!(
            Session::parse(" 4208991434 ; Timeout = 30 ; foo=bar"),
            Ok(Session {
                id: "4208991434".into(),
                timeout: Some(30)
            })
        );
        // Tolerated beyond RFC 2326 §3.4: other visible characters.
        assert_eq!(Session::parse("a/b:c").unwrap().id, "a/b:c");
        rejects::<Session>(&[
            ("", "malformed Session header: empty session id"),
            (";timeout=5", "malformed Session header: empty session id"),
            ("ab cd", "malformed Session header: session id contains ' '"),
            (
                "abc;timeout=soon",
                "malformed Session header: timeout: not a number: \"soon\"",
            ),
        ]);
        round_trips(&Session {
            id: "12345678".into(),
            timeout: Some(60),
        });
        assert_eq!(
            Session {
                id: "x".into(),
                timeout: None
            }
            .to_value(),
            "x"
        );
    }

    #[test]
    fn transport_table() {
        // (value, expected) pairs from RFC 2326 §12.39 and real peers.
        let t = Transport::parse("RTP/AVP;unicast;client_port=4588-4589").unwrap();
        assert_eq!(
            t.0,
            [TransportSpec {
                client_port: Some((4588, 4589)),
                ..TransportSpec::new(TransportProfile::RtpAvp)
            }]
        );

        let t = Transport::parse("RTP/AVP/TCP;unicast;interleaved=0;ssrc=0a13f0d8;mode=\"PLAY\"")
            .unwrap();
        assert_eq!(
            t.0,
            [TransportSpec {
                interleaved: Some((0, 1)), // one channel means 0-1
                ssrc: Some(0x0A13_F0D8),
                mode: Some("PLAY".into()),
                ..TransportSpec::new(TransportProfile::RtpAvpTcp)
            }]
        );

        let t = Transport::parse(
            "RTP/AVP;multicast;ttl=127;mode=\"PLAY\",\
             RTP/AVP/UDP;unicast;client_port=3456;mode=\"PLAY\",\
             RTP/SAVP;unicast;destination;source=10.0.0.1;append;x-foo=\"a;b\"",
        )
        .unwrap();
        assert_eq!(t.0.len(), 3);
        assert!(t.0[0].multicast);
        assert_eq!(t.0[0].ttl, Some(127));
        assert_eq!(t.0[1].profile, TransportProfile::RtpAvp);
        assert_eq!(t.0[1].client_port, Some((3456, 3457)));
        assert_eq!(t.0[2].profile, TransportProfile::Other("RTP/SAVP".into()));
        assert_eq!(t.0[2].destination.as_deref(), Some(""));
        assert_eq!(t.0[2].source.as_deref(), Some("10.0.0.1"));
        assert_eq!(
            t.0[2].other,
            [
                ("append".to_owned(), None),
                ("x-foo".to_owned(), Some("\"a;b\"".to_owned()))
            ]
        );
        round_trips(&t);

        // RTCP feedback profiles (RFC 4585), as GStreamer's rtspsrc asks for an AVPF medium.
        let t = Transport::parse(
            "RTP/AVPF/UDP;unicast;client_port=5000-5001,RTP/AVPF/TCP;interleaved=0-1,rtp/avpf",
        )
        .unwrap();
        assert_eq!(t.0[0].profile, TransportProfile::RtpAvpf);
        assert_eq!(t.0[1].profile, TransportProfile::RtpAvpfTcp);
        assert_eq!(t.0[2].profile, TransportProfile::RtpAvpf);
        assert!(t.0[1].profile.is_tcp() && t.0[1].profile.is_avpf());
        assert!(!t.0[0].profile.is_tcp() && t.0[0].profile.is_avpf());
        assert!(!TransportProfile::RtpAvpTcp.is_avpf());
        round_trips(&t);

        // Quoted mode lists keep their comma.
        let t = Transport::parse("RTP/AVP/TCP;interleaved=4-5;mode=\"PLAY,RECORD\"").unwrap();
        assert_eq!(t.0.len(), 1);
        assert_eq!(t.0[0].mode.as_deref(), Some("PLAY,RECORD"));
        round_trips(&t);

        // Writer: canonical order and spelling.
        let mut spec = TransportSpec::new(TransportProfile::RtpAvpTcp);
        spec.interleaved = Some((0, 1));
        spec.ssrc = Some(0x1a2b3c4d);
        spec.mode = Some("record".into());
        assert_eq!(
            Transport(vec![spec]).to_value(),
            "RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=1A2B3C4D;mode=record"
        );

        for (bad, why) in [
            ("", "malformed Transport header: no transport spec"),
            (
                ";unicast",
                "malformed Transport header: missing transport protocol in \";unicast\"",
            ),
            (
                "RTP/AVP;client_port=65535",
                "malformed Transport header: client_port: no room for 65535+1",
            ),
            (
                "RTP/AVP;client_port=70000-70001",
                "malformed Transport header: client_port: out of range: 70000",
            ),
            (
                "RTP/AVP/TCP;interleaved=256",
                "malformed Transport header: interleaved: out of range: 256",
            ),
            (
                "RTP/AVP;client_port",
                "malformed Transport header: client_port without value",
            ),
            (
                "RTP/AVP;ssrc=xyz",
                "malformed Transport header: ssrc: not hexadecimal: \"xyz\"",
            ),
            (
                "RTP/AVP;ssrc=100000000",
                "malformed Transport header: ssrc: out of range: 100000000",
            ),
            (
                "RTP/AVP;mode=\"PLAY",
                "malformed Transport header: unterminated quoted string",
            ),
            (
                "RTP/AVP;=5",
                "malformed Transport header: parameter without name: \"=5\"",
            ),
        ] {
            assert_eq!(err::<Transport>(bad), why, "{bad:?}");
        }
    }

    #[test]
    fn range_table() {
        let npt = |start, end| Range::Npt { start, end };
        use NptTime::*;
        for (value, expected) in [
            ("npt=0.000-", npt(Seconds(0.0), None)),
            ("npt=0-", npt(Seconds(0.0), None)),
            ("npt=now-", npt(Now, None)),
            ("npt=10-20.5", npt(Seconds(10.0), Some(Seconds(20.5)))),
            ("npt=1:02:03.5-", npt(Seconds(3723.5), None)),
            (" NPT = 5 - 6 ", npt(Seconds(5.0), Some(Seconds(6.0)))),
            ("npt=0-;time=19970123T153600Z", npt(Seconds(0.0), None)),
            (
                "smpte=10:07:00-10:07:33:05.01",
                Range::Other("smpte=10:07:00-10:07:33:05.01".into()),
            ),
            (
                "clock=19961108T142300Z-19961108T143520Z",
                Range::Other("clock=19961108T142300Z-19961108T143520Z".into()),
            ),
            ("npt=-20", Range::Other("npt=-20".into())),
        ] {
            assert_eq!(Range::parse(value), Ok(expected), "{value:?}");
        }
        for bad in [
            "",
            "npt=",
            "npt=5",
            "npt=abc-",
            "npt=1:2-",
            "npt=0:60:00-",
            "npt=1e3-",
            "npt=-1-",
            "npt=.5-",
        ] {
            assert!(Range::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(npt(Seconds(0.0), None).to_value(), "npt=0.000-");
        assert_eq!(npt(Now, None).to_value(), "npt=now-");
        assert_eq!(
            npt(Seconds(1.5), Some(Seconds(20.25))).to_value(),
            "npt=1.500-20.250"
        );
        for r in [
            npt(Seconds(0.1 + 0.2), None),
            npt(Seconds(3600.0 + 0.1), Some(Now)),
            npt(Seconds(1e300), None),
            Range::Other("smpte=0:10:00-".into()),
        ] {
            round_trips(&r);
        }
    }

    #[test]
    fn rtp_info() {
        let v = "url=rtsp://h/live/trackID=0;seq=1234;rtptime=5678,\
                 url=rtsp://h/live/trackID=1;seq=1;rtptime=4294967295";
        let info = RtpInfo::parse(v).unwrap();
        assert_eq!(
            info.0,
            [
                RtpInfoEntry {
                    url: "rtsp://h/live/trackID=0".into(),
                    seq: Some(1234),
                    rtptime: Some(5678),
                },
                RtpInfoEntry {
                    url: "rtsp://h/live/trackID=1".into(),
                    seq: Some(1),
                    rtptime: Some(u32::MAX),
                }
            ]
        );
        assert_eq!(info.to_value(), v);

        // A ';' inside the url, a ',' inside the url, whitespace, extra params, quotes.
        let info = RtpInfo::parse(
            "url=rtsp://h/a;jsessionid=1,2;seq=5 , URL=\"rtsp://h/b\";ssrc=1;rtptime=9",
        )
        .unwrap();
        assert_eq!(info.0[0].url, "rtsp://h/a;jsessionid=1,2");
        assert_eq!(info.0[0].seq, Some(5));
        assert_eq!(info.0[1].url, "rtsp://h/b");
        assert_eq!(info.0[1].rtptime, Some(9));
        assert_eq!(info.0[1].seq, None);
        round_trips(&info);

        rejects::<RtpInfo>(&[
            (
                "seq=1;url=x",
                "malformed RTP-Info header: entry does not start with url=: \"seq=1;url=x\"",
            ),
            (
                "url=x;seq=65536",
                "malformed RTP-Info header: seq: out of range: 65536",
            ),
            ("url=;seq=1", "malformed RTP-Info header: empty url"),
        ]);
    }

    #[test]
    fn public_and_content_headers() {
        let p =
            Public::parse("OPTIONS, DESCRIBE,SETUP ,PLAY,PAUSE, TEARDOWN, GET_PARAMETER, FLUSH")
                .unwrap();
        assert_eq!(p.0.len(), 8);
        assert_eq!(p.0[1], Method::Describe);
        assert_eq!(p.0[7], Method::Extension("FLUSH".into()));
        assert_eq!(
            p.to_value(),
            "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, FLUSH"
        );
        assert_eq!(Public::parse("OPTIONS DESCRIBE").unwrap().0.len(), 2);
        round_trips(&p);

        assert_eq!(
            ContentBase::parse(" rtsp://h/live/ "),
            Ok(ContentBase("rtsp://h/live/".into()))
        );
        assert!(ContentBase::parse("").is_err());
        assert_eq!(ContentLength::parse("298"), Ok(ContentLength(298)));
        assert!(ContentLength::parse("-1").is_err());
        assert!(ContentLength::parse("99999999999999999999999").is_err());
        assert_eq!(
            ContentType::parse("application/sdp; charset=utf-8"),
            Ok(ContentType("application/sdp; charset=utf-8".into()))
        );
        round_trips(&ContentLength(0));
        round_trips(&ContentType("text/parameters".into()));
    }
}
