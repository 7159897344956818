//! SRTP and SRTCP (RFC 3711) with the one profile RTSP peers use, `AES_CM_128_HMAC_SHA1_80`
//! (AES-128 in counter mode, HMAC-SHA1 tags of 80 bits), keyed by MIKEY ([`crate::mikey`]).
//! Sans-IO: packets in, packets out.
//!
//! - Session keys are derived from the master key and salt with the AES-CM PRF (§4.3), key
//!   derivation rate 0 (once).
//! - RTP: the payload is encrypted (§4.1.1) with the IV made of the session salt, the SSRC and
//!   the 48-bit packet index (rollover counter and sequence number); the tag covers the header,
//!   the encrypted payload and the rollover counter (§4.2). The receiver estimates the index
//!   from the highest one seen (§3.3.1) and refuses replays within a 64-packet window
//!   (§3.3.2).
//! - RTCP: everything after the first 8 bytes is encrypted; the 31-bit SRTCP index with the E
//!   flag follows, then the tag (§3.4).

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::mikey::{MASTER_KEY_LEN, MASTER_SALT_LEN};

/// Bytes of the authentication tag (80 bits).
pub const TAG_LEN: usize = 10;
/// Bytes SRTCP adds: the E flag and index, and the tag.
pub const SRTCP_OVERHEAD: usize = 4 + TAG_LEN;
const REPLAY_WINDOW: u64 = 64;

/// Why a packet was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SrtpError {
    /// Too short to hold a header and a tag.
    TooShort,
    /// The tag does not match: altered, or another key.
    Authentication,
    /// Seen already (or too old to tell).
    Replay,
}

impl std::fmt::Display for SrtpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SrtpError::TooShort => "SRTP packet too short",
            SrtpError::Authentication => "SRTP authentication failed",
            SrtpError::Replay => "SRTP replayed packet",
        })
    }
}

impl std::error::Error for SrtpError {}

/// The session keys of one direction (RTP or RTCP).
#[derive(Clone)]
struct SessionKeys {
    cipher: Aes128,
    salt: [u8; MASTER_SALT_LEN],
    auth: Hmac<Sha1>,
}

impl SessionKeys {
    /// Session keys of `labels` (encryption, authentication, salt) from the master key.
    fn derive(master: &Aes128, master_salt: &[u8; MASTER_SALT_LEN], labels: [u8; 3]) -> Self {
        let enc = prf::<16>(master, master_salt, labels[0]);
        let auth = prf::<20>(master, master_salt, labels[1]);
        let salt = prf::<MASTER_SALT_LEN>(master, master_salt, labels[2]);
        SessionKeys {
            cipher: Aes128::new(&enc.into()),
            salt,
            auth: <Hmac<Sha1> as Mac>::new_from_slice(&auth).expect("HMAC takes any key length"),
        }
    }

    /// XORs `data` with the AES-CM keystream of `ssrc` and packet `index` (§4.1.1).
    fn crypt(&self, ssrc: u32, index: u64, data: &mut [u8]) {
        let mut iv = [0u8; 16];
        iv[..MASTER_SALT_LEN].copy_from_slice(&self.salt);
        for (i, b) in ssrc.to_be_bytes().iter().enumerate() {
            iv[4 + i] ^= b;
        }
        for (i, b) in index.to_be_bytes()[2..].iter().enumerate() {
            iv[8 + i] ^= b;
        }
        keystream_xor(&self.cipher, iv, data);
    }

    fn tag(&self, parts: &[&[u8]]) -> [u8; TAG_LEN] {
        let mut mac = self.auth.clone();
        for p in parts {
            mac.update(p);
        }
        let full = mac.finalize().into_bytes();
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(&full[..TAG_LEN]);
        t
    }
}

/// XORs `data` with AES-CM blocks `E(iv + j)` (the block counter in the last 16 bits).
fn keystream_xor(cipher: &Aes128, iv: [u8; 16], data: &mut [u8]) {
    for (j, chunk) in data.chunks_mut(16).enumerate() {
        let mut block = iv;
        let counter = u16::from_be_bytes([iv[14], iv[15]]).wrapping_add(j as u16);
        block[14..].copy_from_slice(&counter.to_be_bytes());
        let mut b = block.into();
        cipher.encrypt_block(&mut b);
        for (d, k) in chunk.iter_mut().zip(b.iter()) {
            *d ^= k;
        }
    }
}

/// The AES-CM PRF of §4.3.1 with key derivation rate 0: `N` bytes for `label`.
fn prf<const N: usize>(master: &Aes128, master_salt: &[u8; MASTER_SALT_LEN], label: u8) -> [u8; N] {
    let mut iv = [0u8; 16];
    iv[..MASTER_SALT_LEN].copy_from_slice(master_salt);
    // key_id = label || r (r = 0), right-aligned against the 112-bit salt.
    iv[7] ^= label;
    let mut out = [0u8; N];
    keystream_xor(master, iv, &mut out);
    out
}

/// One direction of an SRTP session (one master key): protects what we send or unprotects
/// what we receive, for any number of SSRCs.
#[derive(Clone)]
pub struct Context {
    rtp: SessionKeys,
    rtcp: SessionKeys,
    /// Per SSRC: the highest packet index seen or sent, and the replay window below it.
    streams: Vec<(u32, Stream)>,
    /// Per SSRC: the next SRTCP index to send, or the replay state of those received.
    rtcp_streams: Vec<(u32, Stream)>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Stream {
    highest: Option<u64>,
    /// Bit k set: index `highest - k` was seen.
    window: u64,
}

impl Stream {
    /// The full index of a 16-bit sequence number (§3.3.1, Appendix A).
    fn estimate(&self, seq: u16) -> u64 {
        let Some(h) = self.highest else {
            return u64::from(seq);
        };
        let roc = h >> 16;
        let s_l = (h & 0xffff) as u16;
        let v = if s_l < 0x8000 {
            if seq > s_l && seq - s_l > 0x8000 {
                roc.wrapping_sub(1)
            } else {
                roc
            }
        } else if s_l - 0x8000 > seq {
            roc + 1
        } else {
            roc
        };
        (v << 16) | u64::from(seq)
    }

    fn seen(&self, index: u64) -> bool {
        match self.highest {
            None => false,
            Some(h) if index > h => false,
            Some(h) => h - index >= REPLAY_WINDOW || self.window & (1 << (h - index)) != 0,
        }
    }

    fn mark(&mut self, index: u64) {
        match self.highest {
            Some(h) if index <= h => self.window |= 1 << (h - index),
            Some(h) => {
                let shift = index - h;
                self.window = if shift >= REPLAY_WINDOW {
                    0
                } else {
                    self.window << shift
                } | 1;
                self.highest = Some(index);
            }
            None => {
                self.highest = Some(index);
                self.window = 1;
            }
        }
    }
}

fn stream(list: &mut Vec<(u32, Stream)>, ssrc: u32) -> &mut Stream {
    let i = match list.iter().position(|(s, _)| *s == ssrc) {
        Some(i) => i,
        None => {
            list.push((ssrc, Stream::default()));
            list.len() - 1
        }
    };
    &mut list[i].1
}

/// The RTP header length of `p` (fixed part, CSRCs, extension), if it is all there.
fn rtp_header_len(p: &[u8]) -> Option<usize> {
    if p.len() < 12 {
        return None;
    }
    let mut n = 12 + 4 * usize::from(p[0] & 0x0f);
    if p[0] & 0x10 != 0 {
        let ext = p.get(n + 2..n + 4)?;
        n += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    (n <= p.len()).then_some(n)
}

impl Context {
    /// A context from the master key and salt (as MIKEY carries them).
    pub fn new(key: &[u8; MASTER_KEY_LEN], salt: &[u8; MASTER_SALT_LEN]) -> Self {
        let master = Aes128::new(&(*key).into());
        Context {
            rtp: SessionKeys::derive(&master, salt, [0, 1, 2]),
            rtcp: SessionKeys::derive(&master, salt, [3, 4, 5]),
            streams: Vec::new(),
            rtcp_streams: Vec::new(),
        }
    }

    /// Encrypts and authenticates an RTP packet; `None` if it is not one.
    pub fn protect_rtp(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        let h = rtp_header_len(packet)?;
        let ssrc = u32::from_be_bytes(packet[8..12].try_into().ok()?);
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let st = stream(&mut self.streams, ssrc);
        let index = st.estimate(seq);
        if st.highest.is_none_or(|hi| index > hi) {
            st.highest = Some(index);
        }
        let mut out = Vec::with_capacity(packet.len() + TAG_LEN);
        out.extend_from_slice(packet);
        self.rtp.crypt(ssrc, index, &mut out[h..]);
        let roc = ((index >> 16) as u32).to_be_bytes();
        let tag = self.rtp.tag(&[&out, &roc]);
        out.extend_from_slice(&tag);
        Some(out)
    }

    /// Checks and decrypts an SRTP packet.
    ///
    /// # Errors
    /// Too short, a wrong tag, or a replay.
    pub fn unprotect_rtp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        if packet.len() < 12 + TAG_LEN {
            return Err(SrtpError::TooShort);
        }
        let (body, tag) = packet.split_at(packet.len() - TAG_LEN);
        let h = rtp_header_len(body).ok_or(SrtpError::TooShort)?;
        let ssrc = u32::from_be_bytes([body[8], body[9], body[10], body[11]]);
        let seq = u16::from_be_bytes([body[2], body[3]]);
        let st = *stream(&mut self.streams, ssrc);
        let index = st.estimate(seq);
        if st.seen(index) {
            return Err(SrtpError::Replay);
        }
        let roc = ((index >> 16) as u32).to_be_bytes();
        let want = self.rtp.tag(&[body, &roc]);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&want[..], tag)) {
            return Err(SrtpError::Authentication);
        }
        stream(&mut self.streams, ssrc).mark(index);
        let mut out = body.to_vec();
        self.rtp.crypt(ssrc, index, &mut out[h..]);
        Ok(out)
    }

    /// Encrypts and authenticates a (compound) RTCP packet; `None` if it is too short.
    pub fn protect_rtcp(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        if packet.len() < 8 {
            return None;
        }
        let ssrc = u32::from_be_bytes(packet[4..8].try_into().ok()?);
        let st = stream(&mut self.rtcp_streams, ssrc);
        let index = st.highest.map_or(0, |i| (i + 1) & 0x7fff_ffff);
        st.highest = Some(index);
        let mut out = Vec::with_capacity(packet.len() + SRTCP_OVERHEAD);
        out.extend_from_slice(packet);
        self.rtcp.crypt(ssrc, index, &mut out[8..]);
        out.extend_from_slice(&((index as u32) | 0x8000_0000).to_be_bytes());
        let tag = self.rtcp.tag(&[&out]);
        out.extend_from_slice(&tag);
        Some(out)
    }

    /// Checks and decrypts an SRTCP packet.
    ///
    /// # Errors
    /// Too short, a wrong tag, or a replay.
    pub fn unprotect_rtcp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        if packet.len() < 8 + SRTCP_OVERHEAD {
            return Err(SrtpError::TooShort);
        }
        let (body, tag) = packet.split_at(packet.len() - TAG_LEN);
        let want = self.rtcp.tag(&[body]);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&want[..], tag)) {
            return Err(SrtpError::Authentication);
        }
        let (rtcp, e_index) = body.split_at(body.len() - 4);
        let e_index = u32::from_be_bytes([e_index[0], e_index[1], e_index[2], e_index[3]]);
        let index = u64::from(e_index & 0x7fff_ffff);
        let ssrc = u32::from_be_bytes([rtcp[4], rtcp[5], rtcp[6], rtcp[7]]);
        let st = stream(&mut self.rtcp_streams, ssrc);
        if st.seen(index) {
            return Err(SrtpError::Replay);
        }
        st.mark(index);
        let mut out = rtcp.to_vec();
        if e_index & 0x8000_0000 != 0 {
            self.rtcp.crypt(ssrc, index, &mut out[8..]);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 3711 Appendix B.2: the AES-CM keystream for a session key and salt.
    #[test]
    fn aes_cm_keystream_of_rfc_3711_b2() {
        let key: [u8; 16] = hex("2B7E151628AED2A6ABF7158809CF4F3C").try_into().unwrap();
        let cipher = Aes128::new(&key.into());
        let iv: [u8; 16] = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000").try_into().unwrap();
        let mut ks = [0u8; 48];
        keystream_xor(&cipher, iv, &mut ks);
        assert_eq!(
            ks.to_vec(),
            hex("E03EAD0935C95E80E166B16DD92B4EB4D23513162B02D0F72A43A2FE4A5F97AB41E95B3BB0A2E8DD477901E4FCA894C0")
        );
    }

    /// RFC 3711 Appendix B.3: session keys from a master key and salt.
    #[test]
    fn key_derivation_of_rfc_3711_b3() {
        let key: [u8; 16] = hex("E1F97A0D3E018BE0D64FA32C06DE4139").try_into().unwrap();
        let salt: [u8; 14] = hex("0EC675AD498AFEEBB6960B3AABE6").try_into().unwrap();
        let master = Aes128::new(&key.into());
        assert_eq!(
            prf::<16>(&master, &salt, 0).to_vec(),
            hex("C61E7A93744F39EE10734AFE3FF7A087")
        );
        assert_eq!(
            prf::<14>(&master, &salt, 2).to_vec(),
            hex("30CBBC08863D8C85D49DB34A9AE1")
        );
        assert_eq!(
            prf::<20>(&master, &salt, 1).to_vec(),
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
        );
    }

    fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&1234u32.to_be_bytes());
        p.extend_from_slice(&0xCAFE_F00Du32.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn pair() -> (Context, Context) {
        let key = [7u8; 16];
        let salt = [9u8; 14];
        (Context::new(&key, &salt), Context::new(&key, &salt))
    }

    #[test]
    fn rtp_round_trips_across_a_rollover_and_refuses_replays_and_forgeries() {
        let (mut tx, mut rx) = pair();
        let payload = b"a picture of some length, more than one AES block long";
        let mut sent = Vec::new();
        for i in 0..200u32 {
            let seq = (65_500 + i) as u16;
            let p = rtp(seq, payload);
            let s = tx.protect_rtp(&p).unwrap();
            assert_eq!(s.len(), p.len() + TAG_LEN);
            assert_eq!(&s[..12], &p[..12], "the header stays in clear");
            assert_ne!(&s[12..p.len()], &p[12..], "the payload does not");
            sent.push((p, s));
        }
        // The first 100 in order, then the next 100 in groups of 32 newest first (out of
        // order, within the 64-packet window): all accepted, once.
        let shuffled = sent[100..].chunks(32).flat_map(|c| c.iter().rev());
        for (p, s) in sent[..100].iter().chain(shuffled) {
            assert_eq!(rx.unprotect_rtp(s).as_ref(), Ok(p));
        }
        assert_eq!(rx.unprotect_rtp(&sent[199].1), Err(SrtpError::Replay));
        assert_eq!(rx.unprotect_rtp(&sent[150].1), Err(SrtpError::Replay));
        // Older than the window: refused even if never seen.
        let mut rx2 = pair().1;
        rx2.unprotect_rtp(&sent[20].1).unwrap();
        rx2.unprotect_rtp(&sent[99].1).unwrap();
        assert_eq!(rx2.unprotect_rtp(&sent[30].1), Err(SrtpError::Replay));
        assert_eq!(rx2.unprotect_rtp(&sent[50].1).as_ref(), Ok(&sent[50].0));
        let mut forged = tx.protect_rtp(&rtp(200, payload)).unwrap();
        forged[20] ^= 1;
        assert_eq!(rx.unprotect_rtp(&forged), Err(SrtpError::Authentication));
        assert_eq!(rx.unprotect_rtp(&forged[..15]), Err(SrtpError::TooShort));
        // Another key: not authentic.
        let mut other = Context::new(&[8u8; 16], &[9u8; 14]);
        let s = other.protect_rtp(&rtp(300, payload)).unwrap();
        assert_eq!(rx.unprotect_rtp(&s), Err(SrtpError::Authentication));
    }

    #[test]
    fn rtcp_round_trips_with_its_index() {
        let (mut tx, mut rx) = pair();
        // A receiver report: V=2, RC=0, PT=201, length 1, SSRC.
        let rr = [0x80, 201, 0, 1, 1, 2, 3, 4];
        let a = tx.protect_rtcp(&rr).unwrap();
        let b = tx.protect_rtcp(&rr).unwrap();
        assert_eq!(a.len(), rr.len() + SRTCP_OVERHEAD);
        assert_eq!(&a[8..12], &[0x80, 0, 0, 0], "E flag, index 0");
        assert_eq!(&b[8..12], &[0x80, 0, 0, 1], "index 1");
        assert_eq!(rx.unprotect_rtcp(&b).unwrap(), rr);
        assert_eq!(rx.unprotect_rtcp(&a).unwrap(), rr);
        assert_eq!(rx.unprotect_rtcp(&a), Err(SrtpError::Replay));
        let mut bad = b.clone();
        bad[2] ^= 1;
        assert_eq!(rx.unprotect_rtcp(&bad), Err(SrtpError::Authentication));
    }

    #[test]
    fn garbage_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3711);
        let (_, mut rx) = pair();
        for _ in 0..5000 {
            let n = rng.random_range(0..80);
            let b: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            assert!(rx.unprotect_rtp(&b).is_err());
            assert!(rx.unprotect_rtcp(&b).is_err());
        }
    }
}
