//! Trust on first use for RTSPS (RTSP over TLS): certificate fingerprints, and the known-hosts
//! file in which a client keeps, per server (`host:port`), the fingerprint of the certificate
//! it trusted the first time.
//!
//! A certificate is named by the SHA-256 of its DER encoding, written as
//! `openssl x509 -noout -fingerprint -sha256` writes it (32 bytes in upper-case hex, colon
//! separated), so a person can compare what the server prints, what the client stored and
//! what openssl says about a certificate file.
//!
//! The file: one `HOST:PORT FINGERPRINT` per line (IPv6 hosts in brackets, host names in
//! lower case), `#` starts a comment line, blank lines are skipped. It is rewritten whole when
//! a fingerprint is added or replaced (comments are not kept).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// The SHA-256 of a certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of(der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(der).into())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Why a fingerprint or a known-hosts file could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustError {
    /// Not 64 hex digits (colons between bytes allowed).
    BadFingerprint(String),
    /// Line `line` (from 1) of a known-hosts file: `why`.
    BadLine { line: usize, why: String },
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustError::BadFingerprint(s) => write!(
                f,
                "{s:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)"
            ),
            TrustError::BadLine { line, why } => write!(f, "line {line}: {why}"),
        }
    }
}

impl std::error::Error for TrustError {}

impl FromStr for Fingerprint {
    type Err = TrustError;

    /// `AB:CD:...` or `abcd...`: 64 hex digits, either case, colons between bytes optional.
    fn from_str(s: &str) -> Result<Self, TrustError> {
        let bad = || TrustError::BadFingerprint(s.to_owned());
        let hex: Vec<u8> = s.bytes().filter(|&b| b != b':').collect();
        if hex.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            let digit = |c: u8| (c as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(h), Some(l)) => *o = (h * 16 + l) as u8,
                _ => return Err(bad()),
            }
        }
        Ok(Fingerprint(out))
    }
}

/// What a known-hosts file says about a certificate presented by a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// The fingerprint stored for this server.
    Known,
    /// Nothing stored for this server: trust on first use (and store it).
    New,
    /// Another fingerprint is stored: the server's certificate changed, or someone is in the
    /// middle.
    Changed { stored: Fingerprint },
}

/// The servers a client has trusted, with their fingerprints, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KnownHosts {
    entries: Vec<(String, Fingerprint)>,
}

/// The key of a server in the file: `host:port`, IPv6 in brackets, the host in lower case.
pub fn host_key(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl KnownHosts {
    /// Reads a known-hosts file's text.
    pub fn parse(text: &str) -> Result<Self, TrustError> {
        let mut hosts = KnownHosts::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: String| TrustError::BadLine { line: i + 1, why };
            let mut fields = line.split_whitespace();
            let (Some(host), Some(fp), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(bad("not HOST:PORT FINGERPRINT".into()));
            };
            let port_ok = host
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !port_ok {
                return Err(bad(format!("{host:?} is not HOST:PORT")));
            }
            let fp: Fingerprint = fp.parse().map_err(|e: TrustError| bad(e.to_string()))?;
            hosts.set(host, fp);
        }
        Ok(hosts)
    }

    /// The fingerprint stored for `key` ([`host_key`]).
    pub fn get(&self, key: &str) -> Option<Fingerprint> {
        let key = key.to_ascii_lowercase();
        self.entries.iter().find(|(k, _)| *k == key).map(|e| e.1)
    }

    /// What to make of `presented`, offered by the server `key`.
    pub fn check(&self, key: &str, presented: Fingerprint) -> Trust {
        match self.get(key) {
            None => Trust::New,
            Some(stored) if stored == presented => Trust::Known,
            Some(stored) => Trust::Changed { stored },
        }
    }

    /// Stores `fp` for `key`, replacing what was stored.
    pub fn set(&mut self, key: &str, fp: Fingerprint) {
        let key = key.to_ascii_lowercase();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(e) => e.1 = fp,
            None => self.entries.push((key, fp)),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The file's text: a header comment, then one line per server.
    pub fn to_text(&self) -> String {
        let mut out = String::from(
            "# Servers trusted by livecast-player (rtsps://): HOST:PORT SHA-256 fingerprint.\n",
        );
        for (k, fp) in &self.entries {
            out.push_str(&format!("{k} {fp}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:\
                     AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99";

    #[test]
    fn fingerprints_as_openssl_writes_them() {
        // SHA-256 of the three bytes "abc" (FIPS 180-2 B.1).
        let fp = Fingerprint::of(b"abc");
        assert_eq!(
            fp.to_string(),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:\
             B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
        assert_eq!(fp.to_string().parse::<Fingerprint>(), Ok(fp));
        let plain = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(plain.parse::<Fingerprint>(), Ok(fp));
        for bad in ["", "AA:BB", &plain[1..], &format!("{}g", &plain[1..])] {
            assert_eq!(
                bad.parse::<Fingerprint>(),
                Err(TrustError::BadFingerprint(bad.to_owned())),
                "{bad}"
            );
        }
    }

    #[test]
    fn host_keys() {
        assert_eq!(host_key("Cam.Local", 322), "cam.local:322");
        assert_eq!(host_key("::1", 8322), "[::1]:8322");
        assert_eq!(host_key("127.0.0.1", 8322), "127.0.0.1:8322");
    }

    #[test]
    fn known_hosts_round_trip_and_checks() {
        let a: Fingerprint = A.parse().unwrap();
        let b = Fingerprint::of(b"another certificate");
        let text = format!("# comment\n\n  cam.local:322 {A}\n[::1]:8322 {}\n", b);
        let mut k = KnownHosts::parse(&text).unwrap();
        assert_eq!(k.len(), 2);
        assert_eq!(k.get("CAM.local:322"), Some(a));
        assert_eq!(k.check("cam.local:322", a), Trust::Known);
        assert_eq!(k.check("cam.local:322", b), Trust::Changed { stored: a });
        assert_eq!(k.check("cam.local:8322", a), Trust::New);
        assert_eq!(k.check("[::1]:8322", b), Trust::Known);
        k.set("cam.local:322", b);
        k.set("10.0.0.1:322", a);
        assert_eq!(
            k.to_text(),
            format!(
                "# Servers trusted by livecast-player (rtsps://): HOST:PORT SHA-256 fingerprint.\n\
                 cam.local:322 {b}\n[::1]:8322 {b}\n10.0.0.1:322 {A}\n"
            )
        );
        assert_eq!(KnownHosts::parse(&k.to_text()), Ok(k));
    }

    #[test]
    fn known_hosts_errors_name_the_line() {
        let err = |text: &str| KnownHosts::parse(text).unwrap_err().to_string();
        assert_eq!(err("# c\nhost\n"), "line 2: not HOST:PORT FINGERPRINT");
        assert_eq!(
            err(&format!("host {A}\n")),
            "line 1: \"host\" is not HOST:PORT"
        );
        assert_eq!(
            err(&format!("h:0 {A}\n")),
            "line 1: \"h:0\" is not HOST:PORT"
        );
        assert_eq!(
            err("h:1 AB\n"),
            "line 1: \"AB\" is not a SHA-256 fingerprint (64 hex digits, colons allowed)"
        );
        assert_eq!(
            err(&format!("h:1 {A} extra\n")),
            "line 1: not HOST:PORT FINGERPRINT"
        );
    }
}
