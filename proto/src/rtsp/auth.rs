//! HTTP authentication as RTSP uses it (RFC 2326 §12.5, §12.44): the `WWW-Authenticate`
//! challenge and the `Authorization` answer, Digest (RFC 2617, RFC 7616: MD5 and SHA-256, with
//! and without `qop=auth`) and Basic (RFC 7617, parsed and written; the server never offers it
//! over plain TCP).
//!
//! Parsing is lenient with what the players send: parameters in any order, names in any case,
//! values quoted or bare (ffmpeg quotes `qop`, GStreamer and live555 send none), `algorithm`
//! absent meaning MD5, unknown parameters ignored, backslash escapes in quoted strings.
//!
//! Writing follows what the strictest client needs: a challenge is `Digest realm="...",
//! nonce="..."` in exactly that order (live555 scans it with a fixed pattern), then
//! `algorithm=` when not MD5 and `stale=TRUE` unquoted (live555 compares the bare word).
//!
//! [`ha1`] and [`digest_response`] compute the values (hex, lower case); [`Credentials::verify`]
//! compares a response in constant time (`subtle`).

use md5::Md5;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use super::headers::{Header, HeaderError};

/// A Digest hash algorithm (RFC 7616 §3.3: `algorithm`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5`, also what an absent `algorithm` means (RFC 2617 §3.2.1).
    Md5,
    /// `SHA-256` (RFC 7616).
    Sha256,
    /// Anything else (`MD5-sess`, `SHA-512-256` ...), kept as written; not computed.
    Other(String),
}

impl Algorithm {
    fn parse(v: &str) -> Self {
        if v.eq_ignore_ascii_case("MD5") {
            Algorithm::Md5
        } else if v.eq_ignore_ascii_case("SHA-256") {
            Algorithm::Sha256
        } else {
            Algorithm::Other(v.to_owned())
        }
    }

    /// The token as written in a header.
    pub fn as_str(&self) -> &str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Other(s) => s,
        }
    }

    /// The hash of `data` as lower-case hex, or `None` for an algorithm not implemented.
    pub fn hex(&self, data: &[u8]) -> Option<String> {
        match self {
            Algorithm::Md5 => Some(to_hex(&Md5::digest(data))),
            Algorithm::Sha256 => Some(to_hex(&Sha256::digest(data))),
            Algorithm::Other(_) => None,
        }
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    s
}

/// `HA1 = H(username ":" realm ":" password)` (RFC 2617 §3.2.2.2, RFC 7616 §3.4.2), hex.
/// What a users file stores instead of the password (it is password-equivalent for this realm).
pub fn ha1(alg: &Algorithm, username: &str, realm: &str, password: &str) -> Option<String> {
    alg.hex(format!("{username}:{realm}:{password}").as_bytes())
}

/// `qop=auth`'s extra inputs: the nonce count (8 hex digits) and the client nonce.
#[derive(Clone, Copy, Debug)]
pub struct QopAuth<'a> {
    pub nc: &'a str,
    pub cnonce: &'a str,
}

/// The Digest `response` (RFC 2617 §3.2.2.1, RFC 7616 §3.4.1), hex: with `qop=auth`
/// `H(HA1:nonce:nc:cnonce:auth:HA2)`, without `H(HA1:nonce:HA2)`, where
/// `HA2 = H(method:uri)`.
pub fn digest_response(
    alg: &Algorithm,
    ha1: &str,
    nonce: &str,
    method: &str,
    uri: &str,
    qop: Option<QopAuth<'_>>,
) -> Option<String> {
    let ha2 = alg.hex(format!("{method}:{uri}").as_bytes())?;
    let kd = match qop {
        Some(q) => format!("{ha1}:{nonce}:{}:{}:auth:{ha2}", q.nc, q.cnonce),
        None => format!("{ha1}:{nonce}:{ha2}"),
    };
    alg.hex(kd.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Lexing `scheme param=value, param="value", ...` (RFC 7235 §2.1).

/// Splits off the scheme token; the rest is the parameter list.
fn split_scheme(header: &'static str, value: &str) -> Result<(String, String), HeaderError> {
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let end = value.find([' ', '\t']).unwrap_or(value.len());
    let scheme = &value[..end];
    if scheme.is_empty() || !scheme.bytes().all(super::headers::is_tchar) {
        return Err(HeaderError::new(header, "no authentication scheme"));
    }
    Ok((scheme.to_owned(), value[end..].trim().to_owned()))
}

/// `name=value` pairs, names lower-cased, values unquoted (with `\` escapes undone). The first
/// of a repeated name is kept.
fn parse_params(header: &'static str, s: &str) -> Result<Vec<(String, String)>, HeaderError> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out: Vec<(String, String)> = Vec::new();
    let skip = |i: &mut usize, set: &[u8]| {
        while *i < b.len() && set.contains(&b[*i]) {
            *i += 1;
        }
    };
    loop {
        skip(&mut i, b" \t,");
        if i >= b.len() {
            return Ok(out);
        }
        let start = i;
        while i < b.len() && super::headers::is_tchar(b[i]) {
            i += 1;
        }
        if i == start {
            return Err(HeaderError::new(
                header,
                format!("bad parameter at byte {i}"),
            ));
        }
        let name = s[start..i].to_ascii_lowercase();
        skip(&mut i, b" \t");
        if b.get(i) != Some(&b'=') {
            return Err(HeaderError::new(header, format!("{name}: no value")));
        }
        i += 1;
        skip(&mut i, b" \t");
        let value = if b.get(i) == Some(&b'"') {
            i += 1;
            let mut v = Vec::new();
            loop {
                match b.get(i) {
                    None => return Err(HeaderError::new(header, "unterminated quoted string")),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < b.len() => {
                        v.push(b[i + 1]);
                        i += 2;
                    }
                    Some(&c) => {
                        v.push(c);
                        i += 1;
                    }
                }
            }
            // Escapes only ever drop a backslash before a byte, so this is still UTF-8; a lone
            // continuation byte cannot follow a `\` removed from a valid string.
            String::from_utf8(v)
                .map_err(|_| HeaderError::new(header, "quoted string is not UTF-8"))?
        } else {
            let start = i;
            while i < b.len() && super::headers::is_tchar(b[i]) {
                i += 1;
            }
            if i == start {
                return Err(HeaderError::new(header, format!("{name}: empty value")));
            }
            s[start..i].to_owned()
        };
        skip(&mut i, b" \t");
        if i < b.len() && b[i] != b',' {
            return Err(HeaderError::new(
                header,
                format!("{name}: junk after value"),
            ));
        }
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, value));
        }
    }
}

fn take(params: &mut Vec<(String, String)>, name: &str) -> Option<String> {
    let i = params.iter().position(|(n, _)| n == name)?;
    Some(params.remove(i).1)
}

fn require(
    header: &'static str,
    params: &mut Vec<(String, String)>,
    name: &str,
) -> Result<String, HeaderError> {
    take(params, name).ok_or_else(|| HeaderError::new(header, format!("no {name}")))
}

/// A quoted string, `"` and `\` escaped.
fn quoted(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// A value written bare when it is a token, quoted otherwise.
fn token_or_quoted(v: &str) -> String {
    if !v.is_empty() && v.bytes().all(super::headers::is_tchar) {
        v.to_owned()
    } else {
        quoted(v)
    }
}

// ---------------------------------------------------------------------------------------------

/// A Digest challenge (RFC 2617 §3.2.1, RFC 7616 §3.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestChallenge {
    pub realm: String,
    pub nonce: String,
    /// `None`: not written, which means MD5.
    pub algorithm: Option<Algorithm>,
    /// The nonce was stale: the credentials were right, try again with the new one.
    pub stale: bool,
    /// `qop` as sent (`auth`, `auth,auth-int`); our server sends none.
    pub qop: Option<String>,
    pub opaque: Option<String>,
}

impl DigestChallenge {
    /// The algorithm, MD5 when absent.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm.clone().unwrap_or(Algorithm::Md5)
    }

    /// Whether the challenge offers `qop=auth`.
    pub fn offers_qop_auth(&self) -> bool {
        self.qop
            .as_deref()
            .is_some_and(|q| q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth")))
    }
}

/// `WWW-Authenticate` (RFC 2326 §12.44, RFC 7235 §4.1): one challenge. A 401 may carry
/// several such lines (`headers.get_all`); each parses alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WwwAuthenticate {
    Digest(DigestChallenge),
    Basic {
        realm: String,
    },
    /// Another scheme, kept as written (scheme, parameters).
    Other {
        scheme: String,
        params: String,
    },
}

impl Header for WwwAuthenticate {
    const NAME: &'static str = "WWW-Authenticate";

    fn parse(value: &str) -> Result<Self, HeaderError> {
        let (scheme, rest) = split_scheme(Self::NAME, value)?;
        if scheme.eq_ignore_ascii_case("Digest") {
            let mut p = parse_params(Self::NAME, &rest)?;
            let realm = require(Self::NAME, &mut p, "realm")?;
            let nonce = require(Self::NAME, &mut p, "nonce")?;
            let algorithm = take(&mut p, "algorithm").map(|a| Algorithm::parse(&a));
            let stale = take(&mut p, "stale").is_some_and(|s| s.eq_ignore_ascii_case("true"));
            Ok(WwwAuthenticate::Digest(DigestChallenge {
                realm,
                nonce,
                algorithm,
                stale,
                qop: take(&mut p, "qop"),
                opaque: take(&mut p, "opaque"),
            }))
        } else if scheme.eq_ignore_ascii_case("Basic") {
            let mut p = parse_params(Self::NAME, &rest)?;
            Ok(WwwAuthenticate::Basic {
                realm: require(Self::NAME, &mut p, "realm")?,
            })
        } else {
            Ok(WwwAuthenticate::Other {
                scheme,
                params: rest,
            })
        }
    }

    fn to_value(&self) -> String {
        match self {
            WwwAuthenticate::Digest(c) => {
                // live555 needs `Digest realm="...", nonce="..."` first, in this order.
                let mut s = format!(
                    "Digest realm={}, nonce={}",
                    quoted(&c.realm),
                    quoted(&c.nonce)
                );
                if let Some(a) = &c.algorithm {
                    s.push_str(&format!(", algorithm={}", token_or_quoted(a.as_str())));
                }
                if let Some(q) = &c.qop {
                    s.push_str(&format!(", qop={}", quoted(q)));
                }
                if let Some(o) = &c.opaque {
                    s.push_str(&format!(", opaque={}", quoted(o)));
                }
                if c.stale {
                    // Unquoted: live555 compares the bare word.
                    s.push_str(", stale=TRUE");
                }
                s
            }
            WwwAuthenticate::Basic { realm } => format!("Basic realm={}", quoted(realm)),
            WwwAuthenticate::Other { scheme, params } if params.is_empty() => scheme.clone(),
            WwwAuthenticate::Other { scheme, params } => format!("{scheme} {params}"),
        }
    }
}

/// The challenge a client answers among the `WWW-Authenticate` values of a 401: SHA-256 if
/// offered, else MD5 (RFC 7616 §3.7: the strongest one it can compute); `None` without a
/// Digest challenge we can compute.
pub fn preferred_challenge<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Option<DigestChallenge> {
    let mut digest: Vec<DigestChallenge> = values
        .into_iter()
        .filter_map(|v| match WwwAuthenticate::parse(v) {
            Ok(WwwAuthenticate::Digest(c)) => Some(c),
            _ => None,
        })
        .filter(|c| !matches!(c.algorithm(), Algorithm::Other(_)))
        .collect();
    match digest
        .iter()
        .position(|c| c.algorithm() == Algorithm::Sha256)
    {
        Some(i) => Some(digest.swap_remove(i)),
        None => digest.into_iter().next(),
    }
}

/// Digest credentials (RFC 2617 §3.2.2, RFC 7616 §3.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestCredentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    /// The request URI as the client wrote it (hashed as is).
    pub uri: String,
    pub response: String,
    /// `None`: not written, which means MD5.
    pub algorithm: Option<Algorithm>,
    /// `qop` (`auth`), with `nc` and `cnonce`.
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
    pub opaque: Option<String>,
}

impl DigestCredentials {
    /// The algorithm, MD5 when absent.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm.clone().unwrap_or(Algorithm::Md5)
    }

    /// Answers `challenge` for `method` on `uri` with `username`/`password`; `cnonce` is used
    /// when the challenge offers `qop=auth` (nonce count 1). `None` for an algorithm we cannot
    /// compute.
    pub fn answer(
        challenge: &DigestChallenge,
        username: &str,
        password: &str,
        method: &str,
        uri: &str,
        cnonce: &str,
    ) -> Option<Self> {
        let alg = challenge.algorithm();
        let h1 = ha1(&alg, username, &challenge.realm, password)?;
        let qop = challenge.offers_qop_auth().then_some(QopAuth {
            nc: "00000001",
            cnonce,
        });
        let response = digest_response(&alg, &h1, &challenge.nonce, method, uri, qop)?;
        Some(DigestCredentials {
            username: username.to_owned(),
            realm: challenge.realm.clone(),
            nonce: challenge.nonce.clone(),
            uri: uri.to_owned(),
            response,
            algorithm: challenge.algorithm.clone(),
            qop: qop.map(|_| "auth".to_owned()),
            nc: qop.map(|q| q.nc.to_owned()),
            cnonce: qop.map(|q| q.cnonce.to_owned()),
            opaque: challenge.opaque.clone(),
        })
    }

    /// Whether `response` is right for `method`, given the user's `ha1` for this algorithm.
    /// The comparison takes the same time wherever the first difference is. `qop` other than
    /// `auth` (or `auth` without `nc`/`cnonce`) is never right.
    pub fn verify(&self, method: &str, ha1: &str) -> bool {
        let qop = match (&self.qop, &self.nc, &self.cnonce) {
            (None, _, _) => None,
            (Some(q), Some(nc), Some(cnonce)) if q.eq_ignore_ascii_case("auth") => {
                Some(QopAuth { nc, cnonce })
            }
            _ => return false,
        };
        let Some(expected) =
            digest_response(&self.algorithm(), ha1, &self.nonce, method, &self.uri, qop)
        else {
            return false;
        };
        let got = self.response.to_ascii_lowercase();
        expected.as_bytes().ct_eq(got.as_bytes()).into()
    }
}

/// `Authorization` (RFC 2326 §12.5, RFC 7235 §4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authorization {
    Digest(DigestCredentials),
    /// RFC 7617: `user:password` in base64 (the password in clear: only over TLS).
    Basic {
        username: String,
        password: String,
    },
}

impl Header for Authorization {
    const NAME: &'static str = "Authorization";

    fn parse(value: &str) -> Result<Self, HeaderError> {
        let (scheme, rest) = split_scheme(Self::NAME, value)?;
        if scheme.eq_ignore_ascii_case("Digest") {
            let mut p = parse_params(Self::NAME, &rest)?;
            Ok(Authorization::Digest(DigestCredentials {
                username: require(Self::NAME, &mut p, "username")?,
                realm: require(Self::NAME, &mut p, "realm")?,
                nonce: require(Self::NAME, &mut p, "nonce")?,
                uri: require(Self::NAME, &mut p, "uri")?,
                response: require(Self::NAME, &mut p, "response")?,
                algorithm: take(&mut p, "algorithm").map(|a| Algorithm::parse(&a)),
                qop: take(&mut p, "qop"),
                nc: take(&mut p, "nc"),
                cnonce: take(&mut p, "cnonce"),
                opaque: take(&mut p, "opaque"),
            }))
        } else if scheme.eq_ignore_ascii_case("Basic") {
            use base64::Engine as _;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .map_err(|_| HeaderError::new(Self::NAME, "Basic: not base64"))?;
            let text = String::from_utf8(raw)
                .map_err(|_| HeaderError::new(Self::NAME, "Basic: not UTF-8"))?;
            let (u, p) = text
                .split_once(':')
                .ok_or_else(|| HeaderError::new(Self::NAME, "Basic: no ':'"))?;
            Ok(Authorization::Basic {
                username: u.to_owned(),
                password: p.to_owned(),
            })
        } else {
            Err(HeaderError::new(
                Self::NAME,
                format!("unsupported scheme {scheme:?}"),
            ))
        }
    }

    fn to_value(&self) -> String {
        match self {
            Authorization::Digest(c) => {
                let mut s = format!(
                    "Digest username={}, realm={}, nonce={}, uri={}, response={}",
                    quoted(&c.username),
                    quoted(&c.realm),
                    quoted(&c.nonce),
                    quoted(&c.uri),
                    quoted(&c.response)
                );
                if let Some(a) = &c.algorithm {
                    s.push_str(&format!(", algorithm={}", token_or_quoted(a.as_str())));
                }
                if let Some(q) = &c.qop {
                    s.push_str(&format!(", qop={}", token_or_quoted(q)));
                }
                if let Some(nc) = &c.nc {
                    s.push_str(&format!(", nc={}", token_or_quoted(nc)));
                }
                if let Some(cn) = &c.cnonce {
                    s.push_str(&format!(", cnonce={}", quoted(cn)));
                }
                if let Some(o) = &c.opaque {
                    s.push_str(&format!(", opaque={}", quoted(o)));
                }
                s
            }
            Authorization::Basic { username, password } => {
                use base64::Engine as _;
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{password}"))
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5: MD5 with qop=auth.
    #[test]
    fn rfc2617_example() {
        let h1 = ha1(
            &Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        )
        .unwrap();
        let r = digest_response(
            &Algorithm::Md5,
            &h1,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "GET",
            "/dir/index.html",
            Some(QopAuth {
                nc: "00000001",
                cnonce: "0a4f113b",
            }),
        );
        assert_eq!(r.as_deref(), Some("6629fae49393a05397450978507c4ef1"));
    }

    /// RFC 7616 §3.9.1: the same request answered with MD5 and with SHA-256.
    #[test]
    fn rfc7616_example() {
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        for (alg, want) in [
            (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
            (
                Algorithm::Sha256,
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ] {
            let h1 = ha1(&alg, "Mufasa", "http-auth@example.org", "Circle of Life").unwrap();
            let qop = Some(QopAuth {
                nc: "00000001",
                cnonce,
            });
            let r = digest_response(&alg, &h1, nonce, "GET", "/dir/index.html", qop);
            assert_eq!(r.as_deref(), Some(want), "{alg:?}");
        }
    }

    /// Without qop (RFC 2069 compatibility, what GStreamer and live555 send), and the
    /// challenge/answer/verify loop.
    #[test]
    fn answer_and_verify_without_and_with_qop() {
        for (alg, qop) in [
            (None, None),
            (Some(Algorithm::Sha256), None),
            (None, Some("auth".to_owned())),
            (Some(Algorithm::Sha256), Some("auth,auth-int".to_owned())),
        ] {
            let ch = DigestChallenge {
                realm: "livecast".into(),
                nonce: "abc123".into(),
                algorithm: alg.clone(),
                stale: false,
                qop: qop.clone(),
                opaque: None,
            };
            let uri = "rtsp://127.0.0.1:8554/live";
            let c = DigestCredentials::answer(&ch, "viewer", "pw", "DESCRIBE", uri, "c1").unwrap();
            assert_eq!(c.qop.is_some(), qop.is_some());
            let h1 = ha1(&ch.algorithm(), "viewer", "livecast", "pw").unwrap();
            assert!(c.verify("DESCRIBE", &h1));
            assert!(!c.verify("SETUP", &h1));
            let wrong = ha1(&ch.algorithm(), "viewer", "livecast", "pW").unwrap();
            assert!(!c.verify("DESCRIBE", &wrong));
            // Upper-case hex is the same response.
            let upper = DigestCredentials {
                response: c.response.to_ascii_uppercase(),
                ..c.clone()
            };
            assert!(upper.verify("DESCRIBE", &h1));
            // Round trip through the header.
            let v = Authorization::Digest(c.clone()).to_value();
            assert_eq!(Authorization::parse(&v), Ok(Authorization::Digest(c)));
        }
        // Without qop, the plain RFC 2617 formula.
        let h1 = ha1(&Algorithm::Md5, "u", "r", "p").unwrap();
        let ha2 = Algorithm::Md5.hex(b"PLAY:rtsp://h/live").unwrap();
        assert_eq!(
            digest_response(&Algorithm::Md5, &h1, "n", "PLAY", "rtsp://h/live", None),
            Algorithm::Md5.hex(format!("{h1}:n:{ha2}").as_bytes())
        );
    }

    #[test]
    fn challenge_is_written_in_the_shape_live555_reads() {
        let mut ch = DigestChallenge {
            realm: "livecast".into(),
            nonce: "0123abcd".into(),
            algorithm: None,
            stale: false,
            qop: None,
            opaque: None,
        };
        assert_eq!(
            WwwAuthenticate::Digest(ch.clone()).to_value(),
            r#"Digest realm="livecast", nonce="0123abcd""#
        );
        ch.algorithm = Some(Algorithm::Sha256);
        ch.stale = true;
        assert_eq!(
            WwwAuthenticate::Digest(ch.clone()).to_value(),
            r#"Digest realm="livecast", nonce="0123abcd", algorithm=SHA-256, stale=TRUE"#
        );
        assert_eq!(
            WwwAuthenticate::parse(&WwwAuthenticate::Digest(ch.clone()).to_value()),
            Ok(WwwAuthenticate::Digest(ch))
        );
    }

    #[test]
    fn parses_what_servers_and_players_send() {
        // gst-rtsp-server / live555-style challenge, and params in another order, any case.
        let w = WwwAuthenticate::parse(
            r#"digest NONCE="n1",realm="r 1" , algorithm="md5", stale=true, qop="auth""#,
        )
        .unwrap();
        let WwwAuthenticate::Digest(c) = w else {
            panic!("{w:?}")
        };
        assert_eq!((c.realm.as_str(), c.nonce.as_str()), ("r 1", "n1"));
        assert_eq!(c.algorithm(), Algorithm::Md5);
        assert!(c.stale && c.offers_qop_auth());
        assert_eq!(
            WwwAuthenticate::parse(r#"Basic realm="x\"y""#),
            Ok(WwwAuthenticate::Basic {
                realm: "x\"y".into()
            })
        );
        // ffmpeg (libavformat/httpauth.c): qop quoted, nc and cnonce, algorithm written.
        let a = Authorization::parse(
            r#"Digest username="viewer", realm="livecast", nonce="5f1e", uri="rtsp://127.0.0.1:8554/live", response="0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e", cnonce="9a8b7c6d5e4f3a2b", nc=00000001, qop="auth", algorithm="MD5""#,
        )
        .unwrap();
        let Authorization::Digest(d) = a else {
            panic!()
        };
        assert_eq!(d.qop.as_deref(), Some("auth"));
        assert_eq!(d.nc.as_deref(), Some("00000001"));
        assert_eq!(d.algorithm(), Algorithm::Md5);
        // GStreamer rtspsrc / live555: no qop, no algorithm.
        let a = Authorization::parse(
            r#"Digest username="viewer", realm="livecast", nonce="5f1e", uri="rtsp://127.0.0.1:8554/live/", response="0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e""#,
        )
        .unwrap();
        let Authorization::Digest(d) = a else {
            panic!()
        };
        assert_eq!((d.qop, d.algorithm), (None, None));
        // Basic.
        assert_eq!(
            Authorization::parse("Basic dmlld2VyOnB3OjE="),
            Ok(Authorization::Basic {
                username: "viewer".into(),
                password: "pw:1".into()
            })
        );
        // Malformed: errors, never panics.
        for bad in [
            "",
            "Digest",
            r#"Digest username="a"#,
            r#"Digest username="a", realm="r""#,
            "Digest username=",
            "Basic !!!",
            "Negotiate abc",
            "Digest =x",
            r#"Digest realm="r" nonce="n""#,
        ] {
            assert!(Authorization::parse(bad).is_err(), "{bad:?}");
        }
        assert!(WwwAuthenticate::parse(r#"Digest realm="r""#).is_err());
    }

    #[test]
    fn generated_values_round_trip() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(14);
        let alphabet: &[&str] = &[
            "Digest ",
            "Basic ",
            "realm",
            "nonce",
            "username",
            "uri",
            "response",
            "=",
            "\"",
            ",",
            " ",
            "\\",
            "qop",
            "auth",
            "stale",
            "TRUE",
            "algorithm",
            "SHA-256",
            "MD5",
            "nc",
            "cnonce",
            "opaque",
            "x",
            "é",
            "dmlld2VyOnB3",
            "\t",
        ];
        for _ in 0..20_000 {
            let n = rng.random_range(0..24);
            let s: String = (0..n)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            crate::fuzzing::rtsp_auth_round_trip(&s);
        }
    }
}
