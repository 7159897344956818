//! Session descriptions (RFC 8866, which obsoletes RFC 4566): parse what real devices send,
//! write what RFC 8866 §5 asks for.
//!
//! Lenient where deployed peers differ, precise where they are wrong:
//! - lines may end in CRLF or a bare LF; trailing whitespace and blank lines are ignored;
//! - `v=` may be missing (it is always written as `v=0`), `s=` and `t=` may be missing;
//! - line types this module does not model (`i= u= e= p= r= z= k=` and unknown letters) are kept,
//!   in [`SessionDescription::other`] / [`MediaDescription::other`], and written back;
//! - a line that is not `<letter>=<value>`, an `o=` with fewer than six fields, an `m=` with a
//!   bad port, a `t=` or `b=` with a non-numeric value are errors carrying the 1-based line
//!   number and what was wrong ([`SdpError`]).
//!
//! Writing ([`std::fmt::Display`]) uses CRLF and the order of RFC 8866 §5; unmodelled lines are
//! stored in that order too (stable by line type), so `parse(write(parse(x)))` equals
//! `parse(x)`, which the `sdp_parse` fuzz target checks.

use std::fmt;

/// A whole session description (RFC 8866 §5).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionDescription {
    /// `o=` (RFC 8866 §5.2).
    pub origin: Origin,
    /// `s=` (§5.3); written as `s= ` when empty, as the RFC asks.
    pub session_name: String,
    /// Session-level `c=` (§5.7): the whole value, e.g. `IN IP4 0.0.0.0`.
    pub connection: Option<String>,
    /// Session-level `b=` lines (§5.8): `(bwtype, bandwidth)`, e.g. `("AS", 2097)`.
    pub bandwidth: Vec<(String, u32)>,
    /// The first `t=` (§5.9): start and stop time, `(0, 0)` for an unbounded live session.
    pub timing: (u64, u64),
    /// Session-level `a=` lines (§5.13), in order.
    pub attributes: Vec<Attribute>,
    /// `m=` sections (§5.14), in order.
    pub media: Vec<MediaDescription>,
    /// Session-level lines not modelled above, as `(type letter, value)`: `i u e p` (written
    /// before `c=`) and `r z k`, further `t=`, unknown letters (written after `t=`).
    pub other: Vec<(char, String)>,
}

/// `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>` (RFC 8866 §5.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub session_id: String,
    pub session_version: String,
    pub net_type: String,
    pub addr_type: String,
    pub address: String,
}

impl Default for Origin {
    /// `- 0 0 IN IP4 0.0.0.0`.
    fn default() -> Self {
        Origin {
            username: "-".into(),
            session_id: "0".into(),
            session_version: "0".into(),
            net_type: "IN".into(),
            addr_type: "IP4".into(),
            address: "0.0.0.0".into(),
        }
    }
}

/// `a=<name>` or `a=<name>:<value>` (RFC 8866 §5.13). A flag attribute has `value: None`;
/// `a=name:` has `Some("")`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
}

impl Attribute {
    /// `a=name:value`.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Attribute {
            name: name.into(),
            value: Some(value.into()),
        }
    }

    /// A property attribute without a value, e.g. `a=recvonly`.
    pub fn flag(name: impl Into<String>) -> Self {
        Attribute {
            name: name.into(),
            value: None,
        }
    }
}

/// One `m=` section (RFC 8866 §5.14) and the lines that follow it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MediaDescription {
    /// `video`, `audio`, `text`, `application`, ...
    pub media: String,
    /// Transport port; 0 in an RTSP DESCRIBE, where SETUP chooses the ports.
    pub port: u16,
    /// The `/<number of ports>` suffix, if any.
    pub num_ports: Option<u16>,
    /// Transport protocol, e.g. `RTP/AVP`.
    pub proto: String,
    /// Media formats: RTP payload type numbers for `RTP/AVP`.
    pub formats: Vec<String>,
    /// Media-level `c=` value.
    pub connection: Option<String>,
    /// Media-level `b=` lines.
    pub bandwidth: Vec<(String, u32)>,
    /// Media-level `a=` lines, in order.
    pub attributes: Vec<Attribute>,
    /// Media-level lines not modelled above (`i= k=`, unknown letters), `i=` first.
    pub other: Vec<(char, String)>,
}

/// A parsed `a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]` (RFC 8866 §6.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    /// As written by the peer (`H264`, `opus`, `OPUS`): compare case-insensitively.
    pub encoding: String,
    pub clock_rate: u32,
    /// Audio channels (the "encoding parameters").
    pub channels: Option<u16>,
}

impl RtpMap {
    /// Parses the value of an `a=rtpmap:` attribute; `None` if it is malformed.
    pub fn parse(value: &str) -> Option<RtpMap> {
        let (pt, rest) = value.trim().split_once(char::is_whitespace)?;
        let mut parts = rest.trim().split('/');
        let encoding = parts.next()?.trim();
        if encoding.is_empty() {
            return None;
        }
        let clock_rate = parts.next()?.trim().parse().ok()?;
        let channels = match parts.next() {
            None => None,
            Some(c) => Some(c.trim().parse().ok()?),
        };
        Some(RtpMap {
            payload_type: pt.parse().ok()?,
            encoding: encoding.to_owned(),
            clock_rate,
            channels,
        })
    }
}

impl fmt::Display for RtpMap {
    /// The attribute value: `96 H264/90000`, `97 opus/48000/2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}",
            self.payload_type, self.encoding, self.clock_rate
        )?;
        if let Some(c) = self.channels {
            write!(f, "/{c}")?;
        }
        Ok(())
    }
}

fn find_attribute<'a>(attributes: &'a [Attribute], name: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))
        .map(|a| a.value.as_deref().unwrap_or(""))
}

impl SessionDescription {
    /// Value of the first session-level attribute called `name` (ASCII case-insensitive);
    /// `Some("")` for a flag attribute.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        find_attribute(&self.attributes, name)
    }

    /// Session-level `a=control:` (RFC 2326 C.1.1), e.g. `*`.
    pub fn control(&self) -> Option<&str> {
        self.attribute("control")
    }
}

impl MediaDescription {
    /// Value of the first attribute called `name` (ASCII case-insensitive); `Some("")` for a
    /// flag attribute such as `a=recvonly`.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        find_attribute(&self.attributes, name)
    }

    /// `a=control:` (RFC 2326 C.1.1): the URL, often relative (`stream=0`, `trackID=1`).
    pub fn control(&self) -> Option<&str> {
        self.attribute("control")
    }

    /// The `a=rtpmap:` for payload type `pt`, if present and well-formed. Static payload types
    /// without rtpmap (RFC 3551 table 4/5) are not filled in.
    pub fn rtpmap(&self, pt: u8) -> Option<RtpMap> {
        self.attributes
            .iter()
            .filter(|a| a.name.eq_ignore_ascii_case("rtpmap"))
            .filter_map(|a| RtpMap::parse(a.value.as_deref()?))
            .find(|m| m.payload_type == pt)
    }

    /// The `a=fmtp:` parameters for payload type `pt` as `key=value` pairs split at `;`
    /// (whitespace around each trimmed; a parameter without `=` gets an empty value).
    pub fn fmtp(&self, pt: u8) -> Option<Vec<(String, String)>> {
        let params = self
            .attributes
            .iter()
            .filter(|a| a.name.eq_ignore_ascii_case("fmtp"))
            .filter_map(|a| a.value.as_deref())
            .find_map(|v| {
                let (p, params) = v.trim_start().split_once(char::is_whitespace)?;
                (p.parse::<u8>().ok()? == pt).then_some(params)
            })?;
        Some(
            params
                .split(';')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (k.trim().to_owned(), v.trim().to_owned()),
                    None => (p.to_owned(), String::new()),
                })
                .collect(),
        )
    }

    /// The same media section without RTCP feedback (RFC 4585): `RTP/AVPF` becomes `RTP/AVP`
    /// (`RTP/SAVPF` becomes `RTP/SAVP`), `a=rtcp-fb` lines go, and so do the RFC 4588 `rtx`
    /// payload types with their `rtpmap` and `fmtp` lines. For clients that drop an AVPF
    /// medium (live555).
    pub fn without_feedback(&self) -> MediaDescription {
        let rtx: Vec<String> = self
            .payload_types()
            .into_iter()
            .filter(|pt| {
                self.rtpmap(*pt)
                    .is_some_and(|m| m.encoding.eq_ignore_ascii_case("rtx"))
            })
            .map(|pt| pt.to_string())
            .collect();
        let names_rtx = |a: &Attribute| {
            (a.name.eq_ignore_ascii_case("rtpmap") || a.name.eq_ignore_ascii_case("fmtp"))
                && a.value.as_deref().is_some_and(|v| {
                    let pt = v.split_whitespace().next().unwrap_or("");
                    rtx.iter().any(|r| r == pt)
                })
        };
        let proto = match self.proto.strip_suffix('F') {
            Some(p) if p.ends_with("AVP") => p.to_owned(),
            _ => self.proto.clone(),
        };
        MediaDescription {
            proto,
            formats: self
                .formats
                .iter()
                .filter(|f| !rtx.contains(f))
                .cloned()
                .collect(),
            attributes: self
                .attributes
                .iter()
                .filter(|a| !a.name.eq_ignore_ascii_case("rtcp-fb") && !names_rtx(a))
                .cloned()
                .collect(),
            ..self.clone()
        }
    }

    /// Offers RTCP feedback (RFC 4585) on format `pt`: the profile with feedback (`RTP/AVP`
    /// becomes `RTP/AVPF`, `RTP/SAVP` `RTP/SAVPF`), and the lines of [`feedback_attributes`]
    /// (with `rtx` in the formats) after `pt`'s own `rtpmap` and `fmtp`. The inverse of
    /// [`MediaDescription::without_feedback`].
    pub fn with_feedback(&self, pt: u8, rtx: Option<Rtx>) -> MediaDescription {
        self.with_feedback_lines(pt, rtx, feedback_attributes)
    }

    /// [`MediaDescription::with_feedback`] with generic NACK only (the lines of
    /// [`nack_attributes`]): for audio, which has no pictures to ask for.
    pub fn with_nack(&self, pt: u8, rtx: Option<Rtx>) -> MediaDescription {
        self.with_feedback_lines(pt, rtx, nack_attributes)
    }

    fn with_feedback_lines(
        &self,
        pt: u8,
        rtx: Option<Rtx>,
        lines: fn(u8, u32, Option<Rtx>) -> Vec<Attribute>,
    ) -> MediaDescription {
        let mut m = self.clone();
        if !m.is_avpf() && m.proto.ends_with("AVP") {
            m.proto.push('F');
        }
        if let Some(r) = rtx {
            m.formats.push(r.payload_type.to_string());
        }
        let names_pt = |a: &Attribute| {
            (a.name.eq_ignore_ascii_case("rtpmap") || a.name.eq_ignore_ascii_case("fmtp"))
                && a.value
                    .as_deref()
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse::<u8>().ok())
                    == Some(pt)
        };
        let at = m
            .attributes
            .iter()
            .rposition(names_pt)
            .map_or(m.attributes.len(), |i| i + 1);
        let clock = m.rtpmap(pt).map_or(90_000, |r| r.clock_rate);
        m.attributes.splice(at..at, lines(pt, clock, rtx));
        m
    }

    /// Whether the profile is one with RTCP feedback (RFC 4585 `RTP/AVPF`, RFC 5124
    /// `RTP/SAVPF`).
    pub fn is_avpf(&self) -> bool {
        let p = self.proto.to_ascii_uppercase();
        p == "RTP/AVPF" || p == "RTP/SAVPF"
    }

    /// Whether generic NACK (RFC 4585 §4.2: `a=rtcp-fb:<pt> nack`, no parameter) is offered
    /// for `pt`, or for any format when `pt` is `None`; `a=rtcp-fb:* nack` counts for every
    /// format.
    pub fn offers_nack(&self, pt: Option<u8>) -> bool {
        self.attributes
            .iter()
            .filter(|a| a.name.eq_ignore_ascii_case("rtcp-fb"))
            .filter_map(|a| a.value.as_deref())
            .any(|v| {
                let mut words = v.split_whitespace();
                let (Some(fmt), Some(kind), None) = (words.next(), words.next(), words.next())
                else {
                    return false;
                };
                kind.eq_ignore_ascii_case("nack")
                    && (fmt == "*" || pt.is_none_or(|pt| fmt.parse::<u8>().ok() == Some(pt)))
            })
    }

    /// The RFC 4588 retransmission payload type for `pt`: an `rtx` format whose `fmtp` says
    /// `apt=<pt>` (§8.6).
    pub fn rtx_for(&self, pt: u8) -> Option<u8> {
        self.payload_types().into_iter().find(|&r| {
            self.rtpmap(r)
                .is_some_and(|m| m.encoding.eq_ignore_ascii_case("rtx"))
                && self.fmtp(r).is_some_and(|f| {
                    f.iter().any(|(k, v)| {
                        k.eq_ignore_ascii_case("apt") && v.parse::<u8>().ok() == Some(pt)
                    })
                })
        })
    }

    /// The payload type with encoding `name` in its `rtpmap` (case-insensitive), the first.
    pub fn format_named(&self, name: &str) -> Option<u8> {
        self.payload_types().into_iter().find(|pt| {
            self.rtpmap(*pt)
                .is_some_and(|m| m.encoding.eq_ignore_ascii_case(name))
        })
    }

    /// Real-time text (RFC 4103) in this section: the `t140` payload type, and the `red`
    /// one (RFC 2198 redundancy) when the text is sent inside it.
    pub fn t140_formats(&self) -> Option<(u8, Option<u8>)> {
        Some((self.format_named("t140")?, self.format_named("red")))
    }

    /// The formats that are RTP payload type numbers (0..=127), in order.
    pub fn payload_types(&self) -> Vec<u8> {
        self.formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok())
            .filter(|pt| *pt < 128)
            .collect()
    }
}

/// An RFC 4588 retransmission format: its payload type, and how long the sender keeps
/// packets to send again (`rtx-time`, ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rtx {
    pub payload_type: u8,
    pub keep_ms: u32,
}

/// The lines that offer feedback on format `pt` (clock `clock`): generic NACK and PLI (RFC
/// 4585), FIR (RFC 5104), and with `rtx` its `rtpmap` and `fmtp` (`apt`, `rtx-time`).
pub fn feedback_attributes(pt: u8, clock: u32, rtx: Option<Rtx>) -> Vec<Attribute> {
    let mut v = nack_attributes(pt, clock, rtx);
    v.insert(1, Attribute::new("rtcp-fb", format!("{pt} nack pli")));
    v.insert(2, Attribute::new("rtcp-fb", format!("{pt} ccm fir")));
    v
}

/// [`feedback_attributes`] without the picture requests (PLI, FIR): for audio, generic NACK
/// and its `rtx` format only.
pub fn nack_attributes(pt: u8, clock: u32, rtx: Option<Rtx>) -> Vec<Attribute> {
    let mut v = vec![Attribute::new("rtcp-fb", format!("{pt} nack"))];
    if let Some(Rtx {
        payload_type: r,
        keep_ms,
    }) = rtx
    {
        v.push(Attribute::new("rtpmap", format!("{r} rtx/{clock}")));
        v.push(Attribute::new(
            "fmtp",
            format!("{r} apt={pt};rtx-time={keep_ms}"),
        ));
    }
    v
}

/// What was wrong with a session description, and on which line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdpError {
    /// 1-based line number; for a missing line, one past the last line.
    pub line: usize,
    pub kind: SdpErrorKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SdpErrorKind {
    /// Not `<letter>=<value>`.
    NotTypeValue,
    /// `o=` without its six fields.
    BadOrigin,
    /// A second `o=` line.
    DuplicateOrigin,
    /// `t=` that is not two integers.
    BadTiming,
    /// `b=` that is not `<bwtype>:<integer>`.
    BadBandwidth,
    /// `m=` with fewer than three fields.
    BadMedia,
    /// `m=` port (or number of ports) not a 16-bit integer.
    BadPort,
    /// No `o=` line at all.
    MissingOrigin,
}

impl fmt::Display for SdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            SdpErrorKind::NotTypeValue => "expected <letter>=<value>",
            SdpErrorKind::BadOrigin => {
                "o= needs <username> <sess-id> <sess-version> <nettype> <addrtype> <address>"
            }
            SdpErrorKind::DuplicateOrigin => "second o= line",
            SdpErrorKind::BadTiming => "t= needs <start-time> <stop-time> as integers",
            SdpErrorKind::BadBandwidth => "b= needs <bwtype>:<integer>",
            SdpErrorKind::BadMedia => "m= needs <media> <port> <proto> <fmt>...",
            SdpErrorKind::BadPort => "m= port is not an integer 0..=65535",
            SdpErrorKind::MissingOrigin => "no o= line",
        };
        write!(f, "SDP line {}: {what}", self.line)
    }
}

impl std::error::Error for SdpError {}

/// Where an unmodelled session-level line type is written relative to the modelled ones.
fn session_rank(t: char) -> u8 {
    match t {
        'i' => 0,
        'u' => 1,
        'e' => 2,
        'p' => 3,
        't' => 4, // second and later t= lines
        'r' => 5,
        'z' => 6,
        'k' => 7,
        _ => 8,
    }
}

fn media_rank(t: char) -> u8 {
    match t {
        'i' => 0,
        'k' => 1,
        _ => 2,
    }
}

fn parse_bandwidth(value: &str) -> Option<(String, u32)> {
    let (t, bw) = value.split_once(':')?;
    let t = t.trim();
    if t.is_empty() || t.contains(char::is_whitespace) {
        return None;
    }
    Some((t.to_owned(), bw.trim().parse().ok()?))
}

/// Parses a session description (RFC 8866 §5). See the module docs for what is tolerated.
pub fn parse(text: &str) -> Result<SessionDescription, SdpError> {
    let mut sd = SessionDescription::default();
    let mut have_origin = false;
    let mut have_timing = false;
    for (index, raw) in text.split('\n').enumerate() {
        let line_no = index + 1;
        let line = raw.trim_end();
        if line.is_empty() {
            continue;
        }
        let err = |kind| SdpError {
            line: line_no,
            kind,
        };
        let mut chars = line.chars();
        let (Some(t), Some('=')) = (chars.next(), chars.next()) else {
            return Err(err(SdpErrorKind::NotTypeValue));
        };
        if !t.is_ascii_alphabetic() {
            return Err(err(SdpErrorKind::NotTypeValue));
        }
        let value = chars.as_str();

        if t == 'm' {
            let mut fields = value.split_whitespace();
            let (Some(media), Some(port), Some(proto)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(err(SdpErrorKind::BadMedia));
            };
            let (port, num_ports) = match port.split_once('/') {
                None => (port, None),
                Some((p, n)) => (p, Some(n.parse().map_err(|_| err(SdpErrorKind::BadPort))?)),
            };
            sd.media.push(MediaDescription {
                media: media.to_owned(),
                port: port.parse().map_err(|_| err(SdpErrorKind::BadPort))?,
                num_ports,
                proto: proto.to_owned(),
                formats: fields.map(str::to_owned).collect(),
                ..Default::default()
            });
            continue;
        }

        if let Some(m) = sd.media.last_mut() {
            match t {
                'c' => m.connection = Some(value.to_owned()),
                'b' => m
                    .bandwidth
                    .push(parse_bandwidth(value).ok_or(err(SdpErrorKind::BadBandwidth))?),
                'a' => m.attributes.push(parse_attribute(value)),
                _ => m.other.push((t, value.to_owned())),
            }
            continue;
        }

        match t {
            'v' => {} // always written as v=0
            'o' => {
                if have_origin {
                    return Err(err(SdpErrorKind::DuplicateOrigin));
                }
                have_origin = true;
                let f: Vec<&str> = value.split_whitespace().collect();
                let [username, session_id, session_version, net_type, addr_type, address @ ..] =
                    f.as_slice()
                else {
                    return Err(err(SdpErrorKind::BadOrigin));
                };
                if address.is_empty() {
                    return Err(err(SdpErrorKind::BadOrigin));
                }
                sd.origin = Origin {
                    username: (*username).to_owned(),
                    session_id: (*session_id).to_owned(),
                    session_version: (*session_version).to_owned(),
                    net_type: (*net_type).to_owned(),
                    addr_type: (*addr_type).to_owned(),
                    // Lenient: an address with spaces in it (seen from some cameras) is kept.
                    address: address.join(" "),
                };
            }
            's' => sd.session_name = value.to_owned(),
            'c' => sd.connection = Some(value.to_owned()),
            'b' => sd
                .bandwidth
                .push(parse_bandwidth(value).ok_or(err(SdpErrorKind::BadBandwidth))?),
            't' if !have_timing => {
                let mut f = value.split_whitespace().map(str::parse::<u64>);
                let (Some(Ok(start)), Some(Ok(stop)), None) = (f.next(), f.next(), f.next()) else {
                    return Err(err(SdpErrorKind::BadTiming));
                };
                sd.timing = (start, stop);
                have_timing = true;
            }
            'a' => sd.attributes.push(parse_attribute(value)),
            _ => sd.other.push((t, value.to_owned())),
        }
    }
    if !have_origin {
        return Err(SdpError {
            line: text.lines().count() + 1,
            kind: SdpErrorKind::MissingOrigin,
        });
    }
    // Keep unmodelled lines in the order they are written back (stable within a type).
    sd.other.sort_by_key(|(t, _)| session_rank(*t));
    for m in &mut sd.media {
        m.other.sort_by_key(|(t, _)| media_rank(*t));
    }
    Ok(sd)
}

fn parse_attribute(value: &str) -> Attribute {
    match value.split_once(':') {
        Some((name, v)) => Attribute::new(name, v),
        None => Attribute::flag(value),
    }
}

fn write_attribute(f: &mut fmt::Formatter<'_>, a: &Attribute) -> fmt::Result {
    match &a.value {
        Some(v) => write!(f, "a={}:{v}\r\n", a.name),
        None => write!(f, "a={}\r\n", a.name),
    }
}

impl fmt::Display for SessionDescription {
    /// Writes the description with CRLF line ends in RFC 8866 §5 order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        f.write_str("v=0\r\n")?;
        write!(
            f,
            "o={} {} {} {} {} {}\r\n",
            o.username, o.session_id, o.session_version, o.net_type, o.addr_type, o.address
        )?;
        if self.session_name.is_empty() {
            f.write_str("s= \r\n")?;
        } else {
            write!(f, "s={}\r\n", self.session_name)?;
        }
        for (t, v) in self.other.iter().filter(|(t, _)| session_rank(*t) < 4) {
            write!(f, "{t}={v}\r\n")?;
        }
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        for (t, bw) in &self.bandwidth {
            write!(f, "b={t}:{bw}\r\n")?;
        }
        write!(f, "t={} {}\r\n", self.timing.0, self.timing.1)?;
        for (t, v) in self.other.iter().filter(|(t, _)| session_rank(*t) >= 4) {
            write!(f, "{t}={v}\r\n")?;
        }
        for a in &self.attributes {
            write_attribute(f, a)?;
        }
        for m in &self.media {
            write!(f, "m={} {}", m.media, m.port)?;
            if let Some(n) = m.num_ports {
                write!(f, "/{n}")?;
            }
            write!(f, " {}", m.proto)?;
            for fmt in &m.formats {
                write!(f, " {fmt}")?;
            }
            f.write_str("\r\n")?;
            for (t, v) in m.other.iter().filter(|(t, _)| *t == 'i') {
                write!(f, "{t}={v}\r\n")?;
            }
            if let Some(c) = &m.connection {
                write!(f, "c={c}\r\n")?;
            }
            for (t, bw) in &m.bandwidth {
                write!(f, "b={t}:{bw}\r\n")?;
            }
            for (t, v) in m.other.iter().filter(|(t, _)| *t != 'i') {
                write!(f, "{t}={v}\r\n")?;
            }
            for a in &m.attributes {
                write_attribute(f, a)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::test_rng::Seeded;

    const GSTREAMER: &str = include_str!("../testdata/sdp/gstreamer_h264_opus.sdp");
    const FFMPEG: &str = include_str!("../testdata/sdp/ffmpeg_h264.sdp");
    const FFMPEG_AV: &str = include_str!("../testdata/sdp/ffmpeg_h264_opus.sdp");

    fn round_trips(sd: &SessionDescription) {
        let text = sd.to_string();
        assert_eq!(&parse(&text).unwrap(), sd, "{text}");
    }

    #[test]
    fn parses_gstreamer_rtsp_server_describe() {
        let sd = parse(GSTREAMER).unwrap();
        assert_eq!(sd.origin.username, "-");
        assert_eq!(sd.origin.session_id, "3477998337010348784");
        assert_eq!(sd.origin.session_version, "1");
        assert_eq!(sd.origin.address, "127.0.0.1");
        assert_eq!(sd.session_name, "Session streamed with GStreamer");
        assert_eq!(sd.other, vec![('i', "rtsp-server".to_owned())]);
        assert_eq!(sd.timing, (0, 0));
        assert_eq!(sd.control(), Some("*"));
        assert_eq!(sd.attribute("type"), Some("broadcast"));
        assert_eq!(sd.attribute("range"), Some("npt=now-"));
        assert_eq!(sd.media.len(), 2);

        let v = &sd.media[0];
        assert_eq!(
            (v.media.as_str(), v.port, v.proto.as_str()),
            ("video", 0, "RTP/AVP")
        );
        assert_eq!(v.payload_types(), vec![96]);
        assert_eq!(v.connection.as_deref(), Some("IN IP4 0.0.0.0"));
        assert_eq!(v.bandwidth, vec![("AS".to_owned(), 2097)]);
        assert_eq!(v.control(), Some("stream=0"));
        assert_eq!(
            v.rtpmap(96),
            Some(RtpMap {
                payload_type: 96,
                encoding: "H264".into(),
                clock_rate: 90_000,
                channels: None
            })
        );
        let fmtp = v.fmtp(96).unwrap();
        assert_eq!(fmtp[0], ("packetization-mode".into(), "1".into()));
        assert_eq!(
            fmtp[1],
            (
                "sprop-parameter-sets".into(),
                "Z0LAFdoFB+wFqDAwNSgAAAMACAAAAwHkeLF1,aM48gA==".into()
            )
        );
        assert_eq!(fmtp[2], ("profile-level-id".into(), "42c015".into()));
        assert_eq!(v.fmtp(97), None);

        let a = &sd.media[1];
        assert_eq!(a.media, "audio");
        assert_eq!(a.control(), Some("stream=1"));
        let map = a.rtpmap(97).unwrap();
        assert_eq!(
            (map.encoding.as_str(), map.clock_rate, map.channels),
            ("OPUS", 48_000, Some(2))
        );
        assert_eq!(
            a.fmtp(97).unwrap(),
            vec![
                ("sprop-stereo".into(), "1".into()),
                ("sprop-maxcapturerate".into(), "48000".into())
            ]
        );
        assert_eq!(
            a.attribute("ssrc"),
            Some("392805939 cname:user1584107265@host-151ad850")
        );
        round_trips(&sd);
    }

    #[test]
    fn parses_ffmpeg_sdp() {
        let sd = parse(FFMPEG).unwrap();
        assert_eq!(sd.session_name, "No Name");
        assert_eq!(sd.connection.as_deref(), Some("IN IP4 127.0.0.1"));
        assert_eq!(
            sd.attribute("tool"),
            Some("libavformat LIBAVFORMAT_VERSION")
        );
        let v = &sd.media[0];
        assert_eq!(v.port, 15_004);
        assert_eq!(v.bandwidth, vec![("AS".to_owned(), 800)]);
        assert_eq!(v.rtpmap(96).unwrap().encoding, "H264");
        // ffmpeg separates fmtp parameters with "; ".
        let fmtp = v.fmtp(96).unwrap();
        assert_eq!(
            fmtp,
            vec![
                ("packetization-mode".into(), "1".into()),
                (
                    "sprop-parameter-sets".into(),
                    "Z2QAFKzZQUH7ARAAAAMAEAAAAwPA8UKZYA==,aOvssiw=".into()
                ),
                ("profile-level-id".into(), "640014".into()),
            ]
        );
        round_trips(&sd);

        let av = parse(FFMPEG_AV).unwrap();
        assert_eq!(av.connection, None);
        assert_eq!(av.media[0].connection.as_deref(), Some("IN IP4 127.0.0.1"));
        let opus = av.media[1].rtpmap(97).unwrap();
        assert_eq!(opus.to_string(), "97 opus/48000/2");
        assert_eq!(av.media[1].fmtp(97), None);
        round_trips(&av);
    }

    #[test]
    fn lenient_with_lf_whitespace_unknown_lines() {
        let text = "v=0\n\
                    o=- 1 1 IN IP4 10.0.0.1  \n\
                    s=Camera \t\n\
                    \n\
                    x=vendor-extension\n\
                    t=0 0\n\
                    a=recvonly\n\
                    m=video 0/2 RTP/AVP 96 97\n\
                    i=main stream\n\
                    a=rtpmap:96  H264/90000 \n\
                    a=fmtp:96 profile-level-id=42e01f;packetization-mode=1;\n\
                    a=rtpmap:97 bogus\n\
                    a=empty:\n\
                    y=kept\n";
        let sd = parse(text).unwrap();
        assert_eq!(sd.origin.address, "10.0.0.1");
        assert_eq!(sd.session_name, "Camera");
        assert_eq!(sd.other, vec![('x', "vendor-extension".to_owned())]);
        assert_eq!(sd.attribute("recvonly"), Some(""));
        let m = &sd.media[0];
        assert_eq!((m.port, m.num_ports), (0, Some(2)));
        assert_eq!(m.payload_types(), vec![96, 97]);
        assert_eq!(m.rtpmap(96).unwrap().clock_rate, 90_000);
        assert_eq!(m.rtpmap(97), None); // malformed rtpmap is ignored, not an error
        assert_eq!(
            m.fmtp(96).unwrap(),
            vec![
                ("profile-level-id".into(), "42e01f".into()),
                ("packetization-mode".into(), "1".into())
            ]
        );
        assert_eq!(m.attribute("empty"), Some(""));
        assert_eq!(m.attributes[3].value.as_deref(), Some(""));
        assert_eq!(
            m.other,
            vec![('i', "main stream".into()), ('y', "kept".into())]
        );
        round_trips(&sd);
        let written = sd.to_string();
        assert!(
            written.starts_with(
                "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=Camera\r\nt=0 0\r\nx=vendor-extension\r\n"
            ),
            "{written}"
        );
        assert!(written.contains("m=video 0/2 RTP/AVP 96 97\r\ni=main stream\r\ny=kept\r\na=rtpmap:96  H264/90000\r\n"), "{written}");
    }

    #[test]
    fn errors_name_the_line() {
        #[rustfmt::skip]
        let cases: &[(&str, usize, SdpErrorKind)] = &[
            ("v=0\no=- 1 1 IN IP4 h\nnot a line\n", 3, SdpErrorKind::NotTypeValue),
            ("v=0\r\n=x\r\n", 2, SdpErrorKind::NotTypeValue),
            ("v=0\n1=x\n", 2, SdpErrorKind::NotTypeValue),
            ("v=0\nab=x\n", 2, SdpErrorKind::NotTypeValue),
            ("o=- 1 1 IN IP4\n", 1, SdpErrorKind::BadOrigin),
            ("o=- 1 1 IN IP4 h\no=- 2 2 IN IP4 h\n", 2, SdpErrorKind::DuplicateOrigin),
            ("o=- 1 1 IN IP4 h\nt=0\n", 2, SdpErrorKind::BadTiming),
            ("o=- 1 1 IN IP4 h\nt=0 x\n", 2, SdpErrorKind::BadTiming),
            ("o=- 1 1 IN IP4 h\nt=0 0 0\n", 2, SdpErrorKind::BadTiming),
            ("o=- 1 1 IN IP4 h\nb=AS\n", 2, SdpErrorKind::BadBandwidth),
            ("o=- 1 1 IN IP4 h\nm=video 0 RTP/AVP 96\nb=AS:x\n", 3, SdpErrorKind::BadBandwidth),
            ("o=- 1 1 IN IP4 h\nm=video 0\n", 2, SdpErrorKind::BadMedia),
            ("o=- 1 1 IN IP4 h\nm=video 70000 RTP/AVP 96\n", 2, SdpErrorKind::BadPort),
            ("o=- 1 1 IN IP4 h\nm=video 0/x RTP/AVP 96\n", 2, SdpErrorKind::BadPort),
            ("v=0\ns=x\n", 3, SdpErrorKind::MissingOrigin),
            ("v=0\ns=x", 3, SdpErrorKind::MissingOrigin),
            ("", 1, SdpErrorKind::MissingOrigin),
        ];
        for (text, line, kind) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!((e.line, &e.kind), (*line, kind), "{text:?}");
            assert!(e.to_string().contains(&format!("line {line}")));
        }
    }

    #[test]
    fn builds_and_writes_a_describe_answer() {
        let sd = SessionDescription {
            origin: Origin {
                session_id: "42".into(),
                ..Origin::default()
            },
            session_name: "Livecast".into(),
            attributes: vec![
                Attribute::new("control", "*"),
                Attribute::new("range", "npt=now-"),
            ],
            media: vec![MediaDescription {
                media: "video".into(),
                proto: "RTP/AVP".into(),
                formats: vec!["96".into()],
                attributes: vec![
                    Attribute::new(
                        "rtpmap",
                        RtpMap {
                            payload_type: 96,
                            encoding: "H264".into(),
                            clock_rate: 90_000,
                            channels: None,
                        }
                        .to_string(),
                    ),
                    Attribute::new("control", "stream=0"),
                    Attribute::flag("sendonly"),
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            sd.to_string(),
            "v=0\r\n\
             o=- 42 0 IN IP4 0.0.0.0\r\n\
             s=Livecast\r\n\
             t=0 0\r\n\
             a=control:*\r\n\
             a=range:npt=now-\r\n\
             m=video 0 RTP/AVP 96\r\n\
             a=rtpmap:96 H264/90000\r\n\
             a=control:stream=0\r\n\
             a=sendonly\r\n"
        );
        round_trips(&sd);
        let empty_name = SessionDescription::default();
        assert!(empty_name.to_string().contains("\r\ns= \r\n"));
        round_trips(&empty_name);
    }

    #[test]
    fn feedback_is_taken_out_for_plain_avp_clients() {
        let sd = parse(
            "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\n\
             m=video 0 RTP/AVPF 96 100\r\n\
             a=rtpmap:96 H264/90000\r\n\
             a=fmtp:96 packetization-mode=1\r\n\
             a=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\na=rtcp-fb:96 ccm fir\r\n\
             a=rtpmap:100 rtx/90000\r\n\
             a=fmtp:100 apt=96;rtx-time=1000\r\n\
             a=control:trackID=0\r\n\
             m=audio 0 RTP/SAVPF 97\r\na=rtpmap:97 opus/48000/2\r\n\
             m=audio 0 RTP/AVP 0\r\n",
        )
        .unwrap();
        let plain: Vec<MediaDescription> = sd
            .media
            .iter()
            .map(MediaDescription::without_feedback)
            .collect();
        assert_eq!(plain[0].proto, "RTP/AVP");
        assert_eq!(plain[0].formats, ["96"]);
        let lines: Vec<String> = plain[0]
            .attributes
            .iter()
            .map(|a| format!("{}:{}", a.name, a.value.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(
            lines,
            [
                "rtpmap:96 H264/90000",
                "fmtp:96 packetization-mode=1",
                "control:trackID=0"
            ]
        );
        assert_eq!(plain[1].proto, "RTP/SAVP");
        assert_eq!(plain[2], sd.media[2], "nothing to take out");

        // What a receiver reads from it: feedback profile, NACK for 96 (not `nack pli`
        // alone), the rtx payload type for 96; nothing of it in the plain form.
        let v = &sd.media[0];
        assert!(v.is_avpf() && sd.media[1].is_avpf() && !sd.media[2].is_avpf());
        assert!(v.offers_nack(Some(96)) && v.offers_nack(None) && !v.offers_nack(Some(97)));
        assert_eq!((v.rtx_for(96), v.rtx_for(100)), (Some(100), None));
        assert!(!plain[0].offers_nack(None) && plain[0].rtx_for(96).is_none());
        let pli_only = parse(
            "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\n\
             m=video 0 RTP/AVPF 96\r\na=rtcp-fb:96 nack pli\r\na=rtcp-fb:* nack\r\n\
             m=video 0 RTP/AVPF 96\r\na=rtcp-fb:96 nack pli\r\n",
        )
        .unwrap();
        assert!(
            pli_only.media[0].offers_nack(Some(5)),
            "`*` names every format"
        );
        assert!(!pli_only.media[1].offers_nack(None));
    }

    #[test]
    fn feedback_is_put_in_after_the_formats_own_lines_and_taken_out_again() {
        let plain = parse(
            "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\n\
             m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
             a=fmtp:96 packetization-mode=1\r\na=control:trackID=0\r\n",
        )
        .unwrap();
        let rtx = Rtx {
            payload_type: 97,
            keep_ms: 1000,
        };
        let fb = plain.media[0].with_feedback(96, Some(rtx));
        let mut with = plain.clone();
        with.media[0] = fb.clone();
        let text = with.to_string();
        assert_eq!(
            &text[text.find("m=").unwrap()..],
            "m=video 0 RTP/AVPF 96 97\r\na=rtpmap:96 H264/90000\r\n\
             a=fmtp:96 packetization-mode=1\r\na=rtcp-fb:96 nack\r\n\
             a=rtcp-fb:96 nack pli\r\na=rtcp-fb:96 ccm fir\r\n\
             a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96;rtx-time=1000\r\n\
             a=control:trackID=0\r\n"
        );
        assert!(fb.offers_nack(Some(96)) && fb.rtx_for(96) == Some(97));
        assert_eq!(fb.without_feedback(), plain.media[0]);
    }

    #[test]
    fn real_time_text_formats_with_and_without_redundancy() {
        let d = parse(
            "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\n\
             m=text 0 RTP/AVP 99 98\r\na=rtpmap:99 RED/1000\r\na=fmtp:99 98/98/98\r\n\
             a=rtpmap:98 T140/1000\r\n\
             m=text 0 RTP/AVP 100\r\na=rtpmap:100 t140/1000\r\n\
             m=audio 0 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n",
        )
        .unwrap();
        assert_eq!(d.media[0].t140_formats(), Some((98, Some(99))));
        assert_eq!(d.media[1].t140_formats(), Some((100, None)));
        assert_eq!(d.media[2].t140_formats(), None);
        assert_eq!(d.media[2].format_named("OPUS"), Some(111));
    }

    #[test]
    fn unmodelled_lines_are_reordered_stably() {
        let sd =
            parse("o=- 1 1 IN IP4 h\nz=0 0\ni=info\nt=1 2\nt=3 4\nr=7d 1h 0 25h\nu=http://x\n")
                .unwrap();
        assert_eq!(sd.timing, (1, 2));
        let types: String = sd.other.iter().map(|(t, _)| *t).collect();
        assert_eq!(types, "iutrz");
        round_trips(&sd);
    }

    /// Mirrors `fuzz/fuzz_targets/sdp_parse.rs` so CI runs it without nightly.
    #[test]
    fn arbitrary_input_never_panics_and_round_trips() {
        let mut rng = Seeded::new(0x5d9_0000_1234);
        let pieces = [
            "v=0",
            "o=- 1 2 IN IP4 127.0.0.1",
            "s=x",
            "s=",
            "t=0 0",
            "t=a b",
            "c=IN IP4 0.0.0.0",
            "m=video 0 RTP/AVP 96",
            "m=audio 5004/2 RTP/AVP 97 98",
            "m=x",
            "a=rtpmap:96 H264/90000",
            "a=fmtp:96 a=1;b",
            "a=recvonly",
            "a=x:",
            "b=AS:64",
            "b=:1",
            "i=é",
            "z=0",
            "\r",
            " ",
            "k=clear:x",
            "q=unknown",
            "=",
            "a",
            "\u{a0}",
            "m=video 0 RTP/AVP",
        ];
        for _ in 0..20_000 {
            let n = rng.below(12);
            let mut text = String::new();
            for _ in 0..n {
                if rng.below(8) == 0 {
                    let n = rng.below(6) as usize;
                    let junk = rng.bytes(n);
                    text.push_str(&String::from_utf8_lossy(&junk));
                } else {
                    text.push_str(pieces[rng.below(pieces.len() as u64) as usize]);
                }
                text.push_str(["\n", "\r\n", " \n", ""][rng.below(4) as usize]);
            }
            crate::fuzzing::sdp_round_trip(&text);
        }
    }
}
