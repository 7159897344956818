//! MIKEY (RFC 3830) as RTSP uses it to key SRTP: the subset GStreamer, gortsplib/MediaMTX and
//! live555 write in the SDP's `a=key-mgmt:mikey <base64>` (RFC 4567): one pre-shared-key
//! initiator message whose key travels in clear inside the KEMAC payload (NULL encryption,
//! NULL MAC), because the message itself travels inside TLS (RTSPS).
//!
//! Layout read and written (RFC 3830 §6):
//! - common header (§6.1): version 1, data type 0 (PSK init), CSB ID, the crypto sessions with
//!   the SRTP-ID map (§6.1.1: policy number, SSRC, ROC per session);
//! - T (§6.6): NTP-UTC timestamp;
//! - RAND (§6.11);
//! - SP (§6.10): an SRTP security policy as type/length/value parameters (§6.10.1);
//! - KEMAC (§6.2) with NULL encryption and MAC, holding one or more key data sub-payloads
//!   (§6.13): a TEK, its 16-byte AES master key followed by the 14-byte salt (gortsplib and
//!   GStreamer put both in one key data field; a separate salt field is read too, and key
//!   validity data is skipped).
//!
//! Anything else (signed or encrypted messages, other payloads, a responder's message) is
//! refused with an error that says what it was. Parsing never panics.

use std::fmt;

/// Payload types (RFC 3830 §6.1 "next payload").
mod payload {
    pub const LAST: u8 = 0;
    pub const KEMAC: u8 = 1;
    pub const T: u8 = 5;
    pub const SP: u8 = 10;
    pub const RAND: u8 = 11;
}

/// SRTP policy parameter types (RFC 3830 §6.10.1).
pub mod param {
    pub const ENCRYPTION_ALGORITHM: u8 = 0;
    pub const SESSION_ENCRYPTION_KEY_LENGTH: u8 = 1;
    pub const AUTHENTICATION_ALGORITHM: u8 = 2;
    pub const SESSION_AUTHENTICATION_KEY_LENGTH: u8 = 3;
    pub const SESSION_SALT_KEY_LENGTH: u8 = 4;
    pub const SRTP_ENCRYPTION: u8 = 7;
    pub const SRTCP_ENCRYPTION: u8 = 8;
    pub const SRTP_AUTHENTICATION: u8 = 10;
    pub const AUTHENTICATION_TAG_LENGTH: u8 = 11;
}

/// Length of an AES-128 SRTP master key and of its salt (RFC 3711 §8.2).
pub const MASTER_KEY_LEN: usize = 16;
pub const MASTER_SALT_LEN: usize = 14;

/// One crypto session of the SRTP-ID map: which policy keys which SSRC from which rollover
/// counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CryptoSession {
    pub policy: u8,
    pub ssrc: u32,
    pub roc: u32,
}

/// An SRTP security policy: its number and its parameters as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrtpPolicy {
    pub number: u8,
    pub params: Vec<(u8, Vec<u8>)>,
}

impl SrtpPolicy {
    /// AES-CM-128 with HMAC-SHA1-80, SRTP and SRTCP encrypted and authenticated: what
    /// GStreamer, gortsplib and libsrtp's defaults use (`AES_CM_128_HMAC_SHA1_80`), written
    /// parameter for parameter as GStreamer writes it. GStreamer reads the "session auth key
    /// length" (type 3) as the tag length in bytes (10 for the 80-bit tag, 4 for 32) and
    /// writes it so; so do we, or GStreamer would pick the wrong tag.
    pub fn aes_cm_128_hmac_sha1_80(number: u8) -> Self {
        SrtpPolicy {
            number,
            params: vec![
                (param::ENCRYPTION_ALGORITHM, vec![1]),
                (param::SESSION_ENCRYPTION_KEY_LENGTH, vec![16]),
                (param::AUTHENTICATION_ALGORITHM, vec![1]),
                (param::SESSION_AUTHENTICATION_KEY_LENGTH, vec![10]),
                (param::SRTP_ENCRYPTION, vec![1]),
                (param::SRTCP_ENCRYPTION, vec![1]),
                (param::SRTP_AUTHENTICATION, vec![1]),
            ],
        }
    }

    fn value(&self, t: u8) -> Option<u8> {
        self.params
            .iter()
            .find(|(k, _)| *k == t)
            .and_then(|(_, v)| v.first().copied())
    }

    /// Whether the policy is AES-CM-128 / HMAC-SHA1 with an 80-bit tag (parameters absent
    /// take their RFC 3830 defaults, which are those; the auth key length may be the RFC's 20
    /// or GStreamer's 10, see [`SrtpPolicy::aes_cm_128_hmac_sha1_80`]).
    pub fn is_aes_cm_128_hmac_sha1_80(&self) -> bool {
        let is = |t, default| self.value(t).unwrap_or(default);
        is(param::ENCRYPTION_ALGORITHM, 1) == 1
            && is(param::SESSION_ENCRYPTION_KEY_LENGTH, 16) == 16
            && is(param::AUTHENTICATION_ALGORITHM, 1) == 1
            && matches!(is(param::SESSION_AUTHENTICATION_KEY_LENGTH, 20), 10 | 20)
            && is(param::SESSION_SALT_KEY_LENGTH, 14) == 14
            && is(param::AUTHENTICATION_TAG_LENGTH, 10) == 10
    }
}

/// A MIKEY message of the subset above.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MikeyMessage {
    /// Crypto session bundle ID (random).
    pub csb_id: u32,
    pub sessions: Vec<CryptoSession>,
    /// NTP-UTC timestamp (64 bits).
    pub timestamp: u64,
    pub rand: Vec<u8>,
    pub policies: Vec<SrtpPolicy>,
    /// The traffic-encrypting key: master key then master salt (30 bytes for AES-128).
    pub tek: Vec<u8>,
}

/// Why a MIKEY message was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MikeyError(pub String);

impl fmt::Display for MikeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MIKEY: {}", self.0)
    }
}

impl std::error::Error for MikeyError {}

fn err<T>(why: impl Into<String>) -> Result<T, MikeyError> {
    Err(MikeyError(why.into()))
}

/// A cursor over the message bytes that never reads past the end.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], MikeyError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        match end {
            Some(end) => {
                let s = &self.b[self.at..end];
                self.at = end;
                Ok(s)
            }
            None => err(format!("truncated in {what}")),
        }
    }

    fn u8(&mut self, what: &str) -> Result<u8, MikeyError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, MikeyError> {
        let s = self.take(2, what)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, MikeyError> {
        let s = self.take(4, what)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
}

impl MikeyMessage {
    /// A message keying `ssrcs` with `tek` (master key then salt) under one
    /// AES-CM-128/HMAC-SHA1-80 policy.
    pub fn srtp(csb_id: u32, ssrcs: &[u32], tek: Vec<u8>, timestamp: u64, rand: Vec<u8>) -> Self {
        MikeyMessage {
            csb_id,
            sessions: ssrcs
                .iter()
                .map(|&ssrc| CryptoSession {
                    policy: 0,
                    ssrc,
                    roc: 0,
                })
                .collect(),
            timestamp,
            rand,
            policies: vec![SrtpPolicy::aes_cm_128_hmac_sha1_80(0)],
            tek,
        }
    }

    /// The AES-128 master key and salt, if the TEK is that long.
    pub fn master_key(&self) -> Option<([u8; MASTER_KEY_LEN], [u8; MASTER_SALT_LEN])> {
        if self.tek.len() != MASTER_KEY_LEN + MASTER_SALT_LEN {
            return None;
        }
        let mut k = [0; MASTER_KEY_LEN];
        let mut s = [0; MASTER_SALT_LEN];
        k.copy_from_slice(&self.tek[..MASTER_KEY_LEN]);
        s.copy_from_slice(&self.tek[MASTER_KEY_LEN..]);
        Some((k, s))
    }

    /// Reads a message of the subset above.
    ///
    /// # Errors
    /// Truncated or malformed bytes, or a message outside the subset (named in the error).
    pub fn parse(b: &[u8]) -> Result<Self, MikeyError> {
        let mut r = Reader { b, at: 0 };
        // Common header (§6.1).
        let version = r.u8("the header")?;
        if version != 1 {
            return err(format!("version {version}, not 1"));
        }
        let data_type = r.u8("the header")?;
        if data_type != 0 {
            return err(format!(
                "data type {data_type}: only a pre-shared-key initiator message (0) is read"
            ));
        }
        let mut next = r.u8("the header")?;
        let prf = r.u8("the header")?;
        if prf & 0x7f != 0 {
            return err(format!("PRF function {}", prf & 0x7f));
        }
        let csb_id = r.u32("the header")?;
        let count = r.u8("the header")?;
        let map_type = r.u8("the header")?;
        if map_type != 0 {
            return err(format!("CS ID map type {map_type}, not SRTP-ID (0)"));
        }
        let mut sessions = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            sessions.push(CryptoSession {
                policy: r.u8("the SRTP-ID map")?,
                ssrc: r.u32("the SRTP-ID map")?,
                roc: r.u32("the SRTP-ID map")?,
            });
        }
        let mut timestamp = None;
        let mut rand = None;
        let mut policies = Vec::new();
        let mut tek = None;
        while next != payload::LAST {
            let this = next;
            next = r.u8("a payload header")?;
            match this {
                payload::T => {
                    let ts_type = r.u8("T")?;
                    let len = match ts_type {
                        0 | 1 => 8,
                        2 => 4,
                        t => return err(format!("timestamp type {t}")),
                    };
                    let v = r.take(len, "T")?;
                    timestamp = Some(v.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x)));
                }
                payload::RAND => {
                    let n = r.u8("RAND")?;
                    rand = Some(r.take(usize::from(n), "RAND")?.to_vec());
                }
                payload::SP => {
                    let number = r.u8("SP")?;
                    let prot = r.u8("SP")?;
                    if prot != 0 {
                        return err(format!("security protocol {prot}, not SRTP (0)"));
                    }
                    let len = usize::from(r.u16("SP")?);
                    let mut p = Reader {
                        b: r.take(len, "SP")?,
                        at: 0,
                    };
                    let mut params = Vec::new();
                    while p.at < p.b.len() {
                        let t = p.u8("an SP parameter")?;
                        let n = p.u8("an SP parameter")?;
                        params.push((t, p.take(usize::from(n), "an SP parameter")?.to_vec()));
                    }
                    policies.push(SrtpPolicy { number, params });
                }
                payload::KEMAC => {
                    let enc = r.u8("KEMAC")?;
                    if enc != 0 {
                        return err(format!(
                            "KEMAC encryption {enc}: only NULL (0), inside TLS, is read"
                        ));
                    }
                    let len = usize::from(r.u16("KEMAC")?);
                    let mut k = Reader {
                        b: r.take(len, "KEMAC")?,
                        at: 0,
                    };
                    let mac = r.u8("KEMAC")?;
                    if mac != 0 {
                        return err(format!("KEMAC MAC algorithm {mac}: only NULL (0) is read"));
                    }
                    // Key data sub-payloads (§6.13).
                    let mut sub_next = payload::SP; // anything but LAST
                    let mut key = Vec::new();
                    while sub_next != payload::LAST {
                        sub_next = k.u8("key data")?;
                        let type_kv = k.u8("key data")?;
                        // Type (§6.13): 0 TGK, 1 TGK + salt, 2 TEK, 3 TEK + salt.
                        let key_type = type_kv >> 4;
                        let kv = type_kv & 0x0f;
                        if key_type > 3 {
                            return err(format!("key data type {key_type}"));
                        }
                        let n = usize::from(k.u16("key data")?);
                        key.extend_from_slice(k.take(n, "key data")?);
                        if key_type & 1 == 1 {
                            let n = usize::from(k.u16("the salt")?);
                            key.extend_from_slice(k.take(n, "the salt")?);
                        }
                        // Key validity (§6.14): none, an SPI/MKI, or an interval.
                        let fields = match kv {
                            0 => 0,
                            1 => 1,
                            2 => 2,
                            v => return err(format!("key validity type {v}")),
                        };
                        for _ in 0..fields {
                            let n = usize::from(k.u8("key validity")?);
                            k.take(n, "key validity")?;
                        }
                    }
                    tek = Some(key);
                }
                other => return err(format!("payload type {other} is not read")),
            }
        }
        Ok(MikeyMessage {
            csb_id,
            sessions,
            timestamp: timestamp.ok_or_else(|| MikeyError("no timestamp (T)".into()))?,
            rand: rand.ok_or_else(|| MikeyError("no RAND".into()))?,
            policies,
            tek: tek.ok_or_else(|| MikeyError("no key (KEMAC)".into()))?,
        })
    }

    /// Writes the message: header, T, RAND, the SPs, KEMAC, in that order (GStreamer's).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![1, 0, payload::T, 0];
        out.extend_from_slice(&self.csb_id.to_be_bytes());
        out.push(u8::try_from(self.sessions.len()).unwrap_or(u8::MAX));
        out.push(0);
        for s in self.sessions.iter().take(usize::from(u8::MAX)) {
            out.push(s.policy);
            out.extend_from_slice(&s.ssrc.to_be_bytes());
            out.extend_from_slice(&s.roc.to_be_bytes());
        }
        // T: NTP-UTC.
        out.push(payload::RAND);
        out.push(0);
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        // RAND.
        let first_after_rand = if self.policies.is_empty() {
            payload::KEMAC
        } else {
            payload::SP
        };
        out.push(first_after_rand);
        let rand = &self.rand[..self.rand.len().min(255)];
        out.push(rand.len() as u8);
        out.extend_from_slice(rand);
        for (i, p) in self.policies.iter().enumerate() {
            let next = if i + 1 < self.policies.len() {
                payload::SP
            } else {
                payload::KEMAC
            };
            out.push(next);
            out.push(p.number);
            out.push(0);
            let mut params = Vec::new();
            for (t, v) in &p.params {
                let v = &v[..v.len().min(255)];
                params.push(*t);
                params.push(v.len() as u8);
                params.extend_from_slice(v);
            }
            out.extend_from_slice(&(params.len() as u16).to_be_bytes());
            out.extend_from_slice(&params);
        }
        // KEMAC with one TEK key data, NULL encryption and MAC.
        out.push(payload::LAST);
        out.push(0);
        let tek = &self.tek[..self.tek.len().min(usize::from(u16::MAX) - 4)];
        out.extend_from_slice(&((tek.len() + 4) as u16).to_be_bytes());
        out.push(payload::LAST);
        out.push(0x20);
        out.extend_from_slice(&(tek.len() as u16).to_be_bytes());
        out.extend_from_slice(tek);
        out.push(0);
        out
    }

    /// The SDP attribute value (RFC 4567 §3.1): `mikey <base64>`.
    pub fn key_mgmt(&self) -> String {
        use base64::Engine as _;
        format!(
            "mikey {}",
            base64::engine::general_purpose::STANDARD.encode(self.to_bytes())
        )
    }

    /// Reads an SDP `a=key-mgmt` value (`mikey <base64>`).
    ///
    /// # Errors
    /// Another protocol, bad base64, or a message [`MikeyMessage::parse`] refuses.
    pub fn from_key_mgmt(value: &str) -> Result<Self, MikeyError> {
        use base64::Engine as _;
        let mut parts = value.split_whitespace();
        let proto = parts.next().unwrap_or("");
        if !proto.eq_ignore_ascii_case("mikey") {
            return err(format!("key management {proto:?}, not mikey"));
        }
        let data = parts.next().unwrap_or("");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| MikeyError(format!("bad base64: {e}")))?;
        Self::parse(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What GStreamer 1.22 writes (`GstMIKEYMessage::new_from_caps` for AES-128-ICM /
    /// HMAC-SHA1-80 with the key 00 01 .. 1d, then `add_cs_srtp(0, 0x11223344, 0)`).
    const GST: &str = "mikey AQAFAA1J/vABAAARIjNEAAAAAAsA7r3tbikFnqUKEHjiRekJH28ZlMcZso5iZKEBAAAAFQABAQEBEAIBAQMBCgcBAQgBAQoBAQAAACIAIAAeAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdAA==";

    #[test]
    fn reads_gstreamers_message() {
        let m = MikeyMessage::from_key_mgmt(GST).unwrap();
        assert_eq!(m.csb_id, 0x0d49_fef0);
        assert_eq!(
            m.sessions,
            [CryptoSession {
                policy: 0,
                ssrc: 0x1122_3344,
                roc: 0
            }]
        );
        assert_eq!(m.timestamp, 0xeebd_ed6e_2905_9ea5);
        assert_eq!(m.rand.len(), 16);
        assert_eq!(
            m.policies,
            [SrtpPolicy {
                number: 0,
                params: vec![
                    (0, vec![1]),
                    (1, vec![16]),
                    (2, vec![1]),
                    (3, vec![10]),
                    (7, vec![1]),
                    (8, vec![1]),
                    (10, vec![1]),
                ]
            }]
        );
        assert!(m.policies[0].is_aes_cm_128_hmac_sha1_80());
        assert_eq!(m.policies[0], SrtpPolicy::aes_cm_128_hmac_sha1_80(0));
        let (key, salt) = m.master_key().unwrap();
        assert_eq!(key, core::array::from_fn::<u8, 16, _>(|i| i as u8));
        assert_eq!(salt, core::array::from_fn::<u8, 14, _>(|i| 16 + i as u8));
        // Written back byte for byte.
        assert_eq!(m.key_mgmt(), GST);
    }

    #[test]
    fn writes_what_it_reads() {
        let tek: Vec<u8> = (100..130).collect();
        let m = MikeyMessage::srtp(7, &[1, 2, 3], tek.clone(), 42, vec![9; 16]);
        let back = MikeyMessage::parse(&m.to_bytes()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.sessions.len(), 3);
        assert_eq!(back.master_key().unwrap().0[0], 100);
    }

    #[test]
    fn refuses_what_it_does_not_read_with_the_reason() {
        let bytes = MikeyMessage::from_key_mgmt(GST).unwrap().to_bytes();
        let with = |at: usize, v: u8| {
            let mut b = bytes.clone();
            b[at] = v;
            MikeyMessage::parse(&b).unwrap_err().0
        };
        assert_eq!(with(0, 2), "version 2, not 1");
        assert_eq!(
            with(1, 1),
            "data type 1: only a pre-shared-key initiator message (0) is read"
        );
        assert_eq!(with(9, 1), "CS ID map type 1, not SRTP-ID (0)");
        for n in 0..bytes.len() {
            assert!(MikeyMessage::parse(&bytes[..n]).is_err(), "cut at {n}");
        }
        assert_eq!(
            MikeyMessage::from_key_mgmt("sdes abc").unwrap_err().0,
            "key management \"sdes\", not mikey"
        );
    }

    #[test]
    fn mutations_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3830);
        let base = MikeyMessage::from_key_mgmt(GST).unwrap().to_bytes();
        for _ in 0..20_000 {
            let mut b = base.clone();
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..b.len());
                b[i] = rng.random();
            }
            if rng.random_bool(0.2) {
                b.truncate(rng.random_range(0..b.len()));
            }
            crate::fuzzing::mikey_round_trip(&b);
        }
    }
}
