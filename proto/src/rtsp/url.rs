//! `rtsp://` and `rtsps://` URLs (RFC 2326 §3.2): the one parser every crate uses. A client parses the URL it
//! connects to ([`RtspUrl`]), resolves the control URLs of a session description against their
//! base (appendix C.1.1: [`resolve`], [`aggregate`], [`describe_base`]); a server finds the path a
//! request names ([`request_path`]) and the base its DESCRIBE answers with ([`content_base`]).

use std::fmt;

/// Default RTSP port (RFC 2326 §3.2).
pub const DEFAULT_PORT: u16 = 554;
/// Default port of `rtsps://` (RTSP over TLS; RFC 2326 §3.2 names the scheme, IANA assigns
/// 322/tcp to it; ffmpeg and gortsplib use it too).
pub const DEFAULT_TLS_PORT: u16 = 322;

/// The parts of an `rtsp://` URL needed to connect. `full` is kept as given minus any
/// `user:password@`, which is kept apart in `userinfo` (credentials never go into requests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtspUrl {
    /// Host name or IP address; IPv6 without brackets.
    pub host: String,
    pub port: u16,
    /// The URL to put in requests.
    pub full: String,
    /// `user[:password]` as written before `@`, percent-encoding untouched.
    pub userinfo: Option<String>,
    /// `rtsps://`: the connection is TLS, media interleaved in it.
    pub tls: bool,
}

/// Why a URL is unusable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlError(pub String);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UrlError {}

impl RtspUrl {
    /// Parses `rtsp[s]://[user[:pass]@]host[:port][/path][?query]` (scheme case-insensitive).
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let bad = |why: &str| UrlError(format!("bad URL {url:?}: {why}"));
        let url = url.trim();
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let tls = scheme.eq_ignore_ascii_case("rtsps");
        if !tls && !scheme.eq_ignore_ascii_case("rtsp") {
            return Err(bad("only rtsp:// and rtsps:// are supported"));
        }
        if url.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad("spaces or control characters"));
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_owned()), h),
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (ip, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in host"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?),
            };
            (ip, port)
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None | Some("") if tls => DEFAULT_TLS_PORT,
            None | Some("") => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| bad("bad port"))?,
        };
        let path = path.split('#').next().unwrap_or("");
        let scheme = if tls { "rtsps" } else { "rtsp" };
        let full = format!("{scheme}://{hostport}{path}");
        Ok(RtspUrl {
            host: host.to_owned(),
            port,
            full,
            userinfo,
            tls,
        })
    }

    /// `host:port` as written in a URL (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The path the URL names, without query (`/` when it has none).
    pub fn path(&self) -> &str {
        request_path(&self.full).unwrap_or("/")
    }
}

impl fmt::Display for RtspUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

/// The path a Request-URI names (RFC 2326 §6.1): `rtsp://host[:port]/a/b?q` -> `/a/b`, `/a/b`
/// stays, `*` (OPTIONS for the server itself) -> `/`; `None` for anything else.
pub fn request_path(uri: &str) -> Option<&str> {
    let path = if let Some((scheme, rest)) = uri.split_once("://") {
        if !["rtsp", "rtspu", "rtsps"]
            .iter()
            .any(|s| scheme.eq_ignore_ascii_case(s))
        {
            return None;
        }
        match rest.find(['/', '?', '#']) {
            Some(i) if rest[i..].starts_with('/') => &rest[i..],
            _ => "/",
        }
    } else if uri == "*" {
        "/"
    } else if uri.starts_with('/') {
        uri
    } else {
        return None;
    };
    Some(path.split(['?', '#']).next().unwrap_or(path))
}

/// The base a server announces in `Content-Base` for a DESCRIBE of `uri`: the aggregate URL
/// with a trailing `/`, so relative `a=control:trackID=N` resolve under it (C.1.1). A track URL
/// (`.../trackID=N`) maps back to its aggregate.
pub fn content_base(uri: &str) -> String {
    let base = uri.split(['?', '#']).next().unwrap_or(uri);
    let base = base.trim_end_matches('/');
    let base = match base.rfind("/trackID=") {
        Some(i) => &base[..i],
        None => base,
    };
    format!("{base}/")
}

/// Whether `s` starts with a URL scheme (`rtsp:`, `rtspu:`, ...; RFC 3986 §3.1).
fn has_scheme(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, _)) => {
            scheme
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic())
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        }
        None => false,
    }
}

/// `scheme://authority` of an absolute URL.
fn origin(url: &str) -> &str {
    match url.find("://") {
        Some(i) => {
            let after = &url[i + 3..];
            let end = after.find(['/', '?', '#']).map_or(url.len(), |e| i + 3 + e);
            &url[..end]
        }
        None => url,
    }
}

/// Resolves a control URL (an SDP `a=control:` value, RFC 2326 C.1.1) against `base`:
/// absolute URLs are taken as they are, `*` is the base itself, `/path` replaces the path, and
/// anything else is appended to the base after a `/`.
///
/// The last rule is what deployed clients (live555, FFmpeg, GStreamer) do rather than RFC 3986
/// §5.2's "replace the last segment": servers send `Content-Base: rtsp://h/live` and
/// `a=control:trackID=0` meaning `rtsp://h/live/trackID=0`. With a base ending in `/` (the
/// usual case, and ours) both rules agree.
pub fn resolve(base: &str, control: &str) -> String {
    let control = control.trim();
    if has_scheme(control) {
        control.to_owned()
    } else if control == "*" || control.is_empty() {
        base.to_owned()
    } else if control.starts_with('/') {
        format!("{}{control}", origin(base))
    } else if base.ends_with('/') {
        format!("{base}{control}")
    } else {
        format!("{base}/{control}")
    }
}

/// The aggregate control URL of a session (RFC 2326 C.1.1): the session-level `a=control`
/// resolved against the base; for `*` (or none), the base without a trailing `/`, which is how
/// servers name the presentation in requests (`rtsp://h/live`, not `rtsp://h/live/`).
pub fn aggregate(base: &str, session_control: Option<&str>) -> String {
    match session_control.map(str::trim) {
        None | Some("*") | Some("") => base.strip_suffix('/').unwrap_or(base).to_owned(),
        Some(c) => resolve(base, c),
    }
}

/// The base URL for relative URLs in a DESCRIBE response (RFC 2326 C.1.1): `Content-Base`,
/// else `Content-Location` (itself resolved against the request), else the request URL.
pub fn describe_base(
    request_url: &str,
    content_base: Option<&str>,
    content_location: Option<&str>,
) -> String {
    fn pick(v: Option<&str>) -> Option<&str> {
        v.map(str::trim).filter(|v| !v.is_empty())
    }
    if let Some(b) = pick(content_base) {
        return resolve(request_url, b);
    }
    if let Some(l) = pick(content_location) {
        return resolve(request_url, l);
    }
    request_url.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = RtspUrl::parse("rtsp://127.0.0.1:8554/live").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 8554));
        assert_eq!(u.full, "rtsp://127.0.0.1:8554/live");
        let u = RtspUrl::parse("RTSP://user:pw@cam.local/stream?x=1#frag").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("cam.local", 554));
        assert_eq!(u.full, "rtsp://cam.local/stream?x=1");
        assert_eq!(u.userinfo.as_deref(), Some("user:pw"));
        assert_eq!(u.path(), "/stream");
        assert_eq!(u.authority(), "cam.local:554");
        let u = RtspUrl::parse("rtsp://[::1]:9000/live").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9000));
        assert_eq!(u.full, "rtsp://[::1]:9000/live");
        assert_eq!(u.authority(), "[::1]:9000");
        assert_eq!(u.userinfo, None);
        let u = RtspUrl::parse("rtsp://[fe80::1]").unwrap();
        assert_eq!(u.port, 554);
        assert!(!u.tls);
        let u = RtspUrl::parse("RTSPS://v:pw@cam.local/live").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("cam.local", 322, true));
        assert_eq!(u.full, "rtsps://cam.local/live");
        let u = RtspUrl::parse("rtsps://[::1]:8322/live").unwrap();
        assert_eq!((u.port, u.tls), (8322, true));
        assert_eq!(u.full, "rtsps://[::1]:8322/live");
        for bad in [
            "",
            "live",
            "http://h/live",
            "rtsp://",
            "rtsp://:554/x",
            "rtsp://h:0/x",
            "rtsp://h:99999/x",
            "rtsp://h:x/",
            "rtsp://[::1/x",
            "rtsp://[::1]x/",
            "rtsp://h/a b",
        ] {
            assert!(RtspUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_paths() {
        assert_eq!(request_path("rtsp://h:8554/live"), Some("/live"));
        assert_eq!(
            request_path("rtsp://[::1]:8554/live/trackID=1"),
            Some("/live/trackID=1")
        );
        assert_eq!(request_path("rtsp://h:8554"), Some("/"));
        assert_eq!(request_path("rtsp://h?x=1"), Some("/"));
        assert_eq!(request_path("rtsp://h/live?x=1"), Some("/live"));
        assert_eq!(request_path("RTSP://h/live#f"), Some("/live"));
        assert_eq!(request_path("*"), Some("/"));
        assert_eq!(request_path("/live"), Some("/live"));
        assert_eq!(request_path("rtsps://h:8322/live"), Some("/live"));
        assert_eq!(request_path("garbage"), None);
        assert_eq!(request_path("http://h/live"), None);
    }

    #[test]
    fn content_base_is_the_aggregate_with_slash() {
        assert_eq!(content_base("rtsp://h/live"), "rtsp://h/live/");
        assert_eq!(content_base("rtsp://h/live/"), "rtsp://h/live/");
        assert_eq!(content_base("rtsp://h/live/trackID=0"), "rtsp://h/live/");
        assert_eq!(content_base("rtsp://h/live?x=1"), "rtsp://h/live/");
    }

    #[test]
    fn resolves_control_urls() {
        let cases = [
            ("rtsp://h/live/", "trackID=0", "rtsp://h/live/trackID=0"),
            ("rtsp://h/live", "trackID=1", "rtsp://h/live/trackID=1"),
            ("rtsp://h/live/", "rtsp://o/x", "rtsp://o/x"),
            ("rtsp://h/live/", "RTSP://o/x", "RTSP://o/x"),
            ("rtsp://h:1/live/", "/other/t=1", "rtsp://h:1/other/t=1"),
            ("rtsp://h/live/", "*", "rtsp://h/live/"),
            ("rtsp://h/live/", " stream=0 ", "rtsp://h/live/stream=0"),
            ("rtsp://h", "/x", "rtsp://h/x"),
        ];
        for (base, control, want) in cases {
            assert_eq!(resolve(base, control), want, "{base} + {control}");
        }
    }

    #[test]
    fn aggregate_and_base() {
        assert_eq!(aggregate("rtsp://h/live/", Some("*")), "rtsp://h/live");
        assert_eq!(aggregate("rtsp://h/live/", None), "rtsp://h/live");
        assert_eq!(aggregate("rtsp://h/live", Some("*")), "rtsp://h/live");
        assert_eq!(
            aggregate("rtsp://h/live/", Some("rtsp://h/agg")),
            "rtsp://h/agg"
        );
        assert_eq!(
            describe_base("rtsp://h/live", Some("rtsp://h/live/"), Some("x")),
            "rtsp://h/live/"
        );
        assert_eq!(
            describe_base("rtsp://h/live", None, Some("/moved/")),
            "rtsp://h/moved/"
        );
        assert_eq!(
            describe_base("rtsp://h/live", Some(" "), None),
            "rtsp://h/live"
        );
    }
}
