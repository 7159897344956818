//! RTP fixed header: parse and write (RFC 3550 §5.1), plus RTP/RTCP demultiplexing on one
//! channel (RFC 5761 §4).
//!
//! [`parse`] returns a zero-copy [`RtpPacket`] view borrowing the input: CSRCs are copied into a
//! fixed array (at most 15, no allocation), the header extension and the payload stay slices of
//! the input buffer.
//!
//! Why not the `rtp-rs` crate: its `RtpReader` reports failures as a bare enum without the
//! numbers that explain them (how long the buffer was, how much padding was claimed), it has no
//! writer for packets with CSRCs and extensions, and its API differs enough from what the
//! depacketizers need that an adapter would be as long as this module. The format is small and
//! stable; owning the ~200 lines lets every error carry the values a reader needs to find the
//! packet in Wireshark, and lets the fuzz target check parse → write → parse.

use std::fmt;

use crate::time::Ssrc;

/// Length of the fixed RTP header, without CSRCs or extension (RFC 3550 §5.1).
pub const RTP_HEADER_LEN: usize = 12;

/// The only RTP version in use (RFC 3550 §5.1, field `V`).
pub const RTP_VERSION: u8 = 2;

/// Largest CSRC count the 4-bit `CC` field can express.
pub const MAX_CSRCS: usize = 15;

/// The fixed part of an RTP header that a sender chooses per packet (RFC 3550 §5.1).
///
/// Used by [`write()`]; a parsed packet exposes the same fields on [`RtpPacket`] and returns them
/// as a whole from [`RtpPacket::header`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RtpHeader {
    /// `M`: for video, the last packet of an access unit (RFC 6184 §5.1).
    pub marker: bool,
    /// `PT`, 7 bits (values above 127 are masked on write).
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: Ssrc,
}

/// Contributing sources of a packet (RFC 3550 §5.1, `CC` and the CSRC list): at most 15, stored
/// inline.
#[derive(Clone, Copy)]
pub struct Csrcs {
    len: u8,
    ids: [Ssrc; MAX_CSRCS],
}

impl Csrcs {
    /// An empty list.
    pub const fn new() -> Self {
        Csrcs {
            len: 0,
            ids: [Ssrc(0); MAX_CSRCS],
        }
    }

    /// A list of the given sources; `None` if there are more than 15.
    pub fn from_slice(ids: &[Ssrc]) -> Option<Self> {
        if ids.len() > MAX_CSRCS {
            return None;
        }
        let mut c = Csrcs::new();
        c.ids[..ids.len()].copy_from_slice(ids);
        c.len = ids.len() as u8;
        Some(c)
    }

    pub fn as_slice(&self) -> &[Ssrc] {
        &self.ids[..usize::from(self.len)]
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for Csrcs {
    fn default() -> Self {
        Csrcs::new()
    }
}

impl PartialEq for Csrcs {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Csrcs {}

impl fmt::Debug for Csrcs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// The header extension (RFC 3550 §5.3.1): a 16-bit profile-defined identifier and the extension
/// data, whose length is a multiple of 4 bytes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderExtension<'a> {
    /// "defined by profile", e.g. `0xBEDE` for RFC 8285 one-byte headers.
    pub profile: u16,
    /// The extension words, without the 4-byte profile/length prefix.
    pub data: &'a [u8],
}

/// A parsed RTP packet borrowing its buffer (RFC 3550 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: Ssrc,
    pub csrcs: Csrcs,
    pub extension: Option<HeaderExtension<'a>>,
    /// Number of padding bytes removed from the end, including the count byte itself; 0 when the
    /// `P` bit is clear (RFC 3550 §5.1, field `P`).
    pub padding: u8,
    pub payload: &'a [u8],
}

impl<'a> RtpPacket<'a> {
    /// The fixed header fields.
    pub fn header(&self) -> RtpHeader {
        RtpHeader {
            marker: self.marker,
            payload_type: self.payload_type,
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
        }
    }

    /// Appends the whole packet, CSRCs, extension and padding included, to `out`.
    ///
    /// Extension data whose length is not a multiple of 4 is padded with zero bytes (the wire
    /// format counts it in 32-bit words); more than 65535 words is truncated. A zero-length
    /// `padding` writes no padding and clears `P`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let has_ext = self.extension.is_some();
        out.reserve(RTP_HEADER_LEN + 4 * self.csrcs.len() + self.payload.len() + 4);
        out.push(
            (RTP_VERSION << 6)
                | (u8::from(self.padding > 0) << 5)
                | (u8::from(has_ext) << 4)
                | self.csrcs.len() as u8,
        );
        out.push((u8::from(self.marker) << 7) | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.0.to_be_bytes());
        for c in self.csrcs.as_slice() {
            out.extend_from_slice(&c.0.to_be_bytes());
        }
        if let Some(ext) = self.extension {
            let words = ext.data.len().div_ceil(4).min(usize::from(u16::MAX));
            let data = &ext.data[..ext.data.len().min(words * 4)];
            out.extend_from_slice(&ext.profile.to_be_bytes());
            out.extend_from_slice(&(words as u16).to_be_bytes());
            out.extend_from_slice(data);
            out.resize(out.len() + (words * 4 - data.len()), 0);
        }
        out.extend_from_slice(self.payload);
        if self.padding > 0 {
            out.resize(out.len() + usize::from(self.padding) - 1, 0);
            out.push(self.padding);
        }
    }
}

/// Why a buffer is not a valid RTP packet. Offsets are bytes from the start of the packet.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtpError {
    /// Shorter than the 12-byte fixed header.
    TooShort { len: usize },
    /// `V` is not 2.
    BadVersion(u8),
    /// The CSRC list (`CC` × 4 bytes from offset 12) runs past the end.
    TruncatedCsrcs { csrc_count: u8, len: usize },
    /// The header extension starting at `offset` needs `needed` bytes but only `len` exist in
    /// the packet (after padding was removed).
    TruncatedExtension {
        offset: usize,
        needed: usize,
        len: usize,
    },
    /// `P` is set but the count in the last byte is 0 or more than the bytes after the header.
    BadPadding { padding: u8, available: usize },
}

impl fmt::Display for RtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtpError::TooShort { len } => {
                write!(f, "RTP packet of {len} bytes is shorter than the 12-byte header")
            }
            RtpError::BadVersion(v) => write!(f, "RTP version {v} (expected 2)"),
            RtpError::TruncatedCsrcs { csrc_count, len } => write!(
                f,
                "RTP CSRC count {csrc_count} needs {} bytes of header but packet has {len}",
                RTP_HEADER_LEN + 4 * usize::from(*csrc_count)
            ),
            RtpError::TruncatedExtension {
                offset,
                needed,
                len,
            } => write!(
                f,
                "RTP header extension at byte {offset} needs {needed} bytes but packet ends at {len}"
            ),
            RtpError::BadPadding { padding, available } => write!(
                f,
                "RTP padding count {padding} invalid with {available} bytes after the header"
            ),
        }
    }
}

impl std::error::Error for RtpError {}

/// Parses one RTP packet (RFC 3550 §5.1): checks the version, skips the CSRC list and header
/// extension (§5.3.1) and removes padding (`P` bit: the last byte counts the padding bytes,
/// itself included). Never panics.
pub fn parse(buf: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    if buf.len() < RTP_HEADER_LEN {
        return Err(RtpError::TooShort { len: buf.len() });
    }
    let b0 = buf[0];
    let version = b0 >> 6;
    if version != RTP_VERSION {
        return Err(RtpError::BadVersion(version));
    }
    let has_padding = b0 & 0x20 != 0;
    let has_ext = b0 & 0x10 != 0;
    let csrc_count = b0 & 0x0f;
    let b1 = buf[1];
    let sequence = u16::from_be_bytes([buf[2], buf[3]]);
    let timestamp = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let ssrc = Ssrc(u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]));

    let mut offset = RTP_HEADER_LEN;
    let csrc_end = offset + 4 * usize::from(csrc_count);
    let csrc_bytes = buf.get(offset..csrc_end).ok_or(RtpError::TruncatedCsrcs {
        csrc_count,
        len: buf.len(),
    })?;
    let mut csrcs = Csrcs::new();
    for (slot, c) in csrcs.ids.iter_mut().zip(csrc_bytes.chunks_exact(4)) {
        *slot = Ssrc(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    csrcs.len = csrc_count;
    offset = csrc_end;

    // Padding is counted from the end of the whole packet; it may not eat into the header.
    let mut end = buf.len();
    let mut padding = 0u8;
    if has_padding {
        let p = buf[buf.len() - 1];
        let available = buf.len() - offset;
        if p == 0 || usize::from(p) > available {
            return Err(RtpError::BadPadding {
                padding: p,
                available,
            });
        }
        padding = p;
        end -= usize::from(p);
    }

    let mut extension = None;
    if has_ext {
        let needed = offset + 4;
        let prefix = buf.get(offset..needed).filter(|_| needed <= end).ok_or(
            RtpError::TruncatedExtension {
                offset,
                needed,
                len: end,
            },
        )?;
        let profile = u16::from_be_bytes([prefix[0], prefix[1]]);
        let words = usize::from(u16::from_be_bytes([prefix[2], prefix[3]]));
        let needed = offset + 4 + 4 * words;
        if needed > end {
            return Err(RtpError::TruncatedExtension {
                offset,
                needed,
                len: end,
            });
        }
        extension = Some(HeaderExtension {
            profile,
            data: &buf[offset + 4..needed],
        });
        offset = needed;
    }

    Ok(RtpPacket {
        marker: b1 & 0x80 != 0,
        payload_type: b1 & 0x7f,
        sequence,
        timestamp,
        ssrc,
        csrcs,
        extension,
        padding,
        payload: &buf[offset..end],
    })
}

/// Appends a 12-byte RTP header (no CSRCs, no extension, no padding) and `payload` to `out`.
/// This is what a Livecast sender emits; use [`RtpPacket::write`] for the general case.
pub fn write(header: &RtpHeader, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(RTP_HEADER_LEN + payload.len());
    out.push(RTP_VERSION << 6);
    out.push((u8::from(header.marker) << 7) | (header.payload_type & 0x7f));
    out.extend_from_slice(&header.sequence.to_be_bytes());
    out.extend_from_slice(&header.timestamp.to_be_bytes());
    out.extend_from_slice(&header.ssrc.0.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Whether a packet received on a channel carrying both RTP and RTCP is RTCP (RFC 5761 §4): the
/// second byte (RTP `M`+`PT`, RTCP packet type) is in 192..=223. RTP payload types 64..=95, which
/// would collide with a marker bit set, must not be used on such a channel.
pub fn looks_like_rtcp(buf: &[u8]) -> bool {
    matches!(buf, [b0, b1, ..] if b0 >> 6 == RTP_VERSION && (192..=223).contains(b1))
}

/// Seeded pseudo-random numbers for the tests, so failures reproduce.
#[cfg(test)]
pub(crate) mod test_rng {
    use rand::rngs::StdRng;
    use rand::{Rng, RngCore, SeedableRng};

    pub(crate) struct Seeded(StdRng);

    impl Seeded {
        pub(crate) fn new(seed: u64) -> Self {
            Seeded(StdRng::seed_from_u64(seed))
        }

        pub(crate) fn next_u64(&mut self) -> u64 {
            self.0.next_u64()
        }

        /// Uniform in `0..n` (`n` > 0).
        pub(crate) fn below(&mut self, n: u64) -> u64 {
            self.0.random_range(0..n)
        }

        pub(crate) fn byte(&mut self) -> u8 {
            self.0.random()
        }

        pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.byte()).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    const MINIMAL: &[u8] = &[
        0x80, 0x60,             // v=2, p=0, x=0, cc=0; m=0, pt=96
        0x12, 0x34,             // seq=0x1234
        0x00, 0x01, 0x5f, 0x90, // ts=90000
        0xde, 0xad, 0xbe, 0xef, // ssrc
        0x65, 0x88, 0x84,       // payload (IDR slice start)
    ];

    #[test]
    fn parses_minimal_packet() {
        let p = parse(MINIMAL).unwrap();
        assert_eq!(
            p.header(),
            RtpHeader {
                marker: false,
                payload_type: 96,
                sequence: 0x1234,
                timestamp: 90_000,
                ssrc: Ssrc(0xdead_beef),
            }
        );
        assert!(p.csrcs.is_empty());
        assert_eq!(p.extension, None);
        assert_eq!(p.padding, 0);
        assert_eq!(p.payload, &[0x65, 0x88, 0x84]);
    }

    #[test]
    fn parses_csrcs_extension_and_padding() {
        #[rustfmt::skip]
        let buf = [
            0xb2, 0xe1,             // v=2, p=1, x=1, cc=2; m=1, pt=97
            0xff, 0xff,             // seq=65535
            0xff, 0xff, 0xff, 0xff, // ts
            0x00, 0x00, 0x00, 0x01, // ssrc=1
            0x00, 0x00, 0x00, 0x02, // csrc[0]=2
            0x00, 0x00, 0x00, 0x03, // csrc[1]=3
            0xbe, 0xde, 0x00, 0x01, // ext profile=0xBEDE, length=1 word
            0x10, 0xaa, 0x00, 0x00, // ext data
            0xfc, 0xfd,             // payload (Opus TOC + 1 byte)
            0x00, 0x00, 0x03,       // 3 bytes padding, count last
        ];
        let p = parse(&buf).unwrap();
        assert!(p.marker);
        assert_eq!(p.payload_type, 97);
        assert_eq!(p.sequence, 65535);
        assert_eq!(p.timestamp, u32::MAX);
        assert_eq!(p.csrcs.as_slice(), &[Ssrc(2), Ssrc(3)]);
        assert_eq!(
            p.extension,
            Some(HeaderExtension {
                profile: 0xbede,
                data: &[0x10, 0xaa, 0, 0]
            })
        );
        assert_eq!(p.padding, 3);
        assert_eq!(p.payload, &[0xfc, 0xfd]);
        let mut out = Vec::new();
        p.write(&mut out);
        assert_eq!(out, buf);
    }

    #[test]
    fn rejects_bad_input() {
        #[rustfmt::skip]
        let cases: &[(&[u8], RtpError)] = &[
            (&[], RtpError::TooShort { len: 0 }),
            (&MINIMAL[..11], RtpError::TooShort { len: 11 }),
            (
                &[0x40, 0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // v=1
                RtpError::BadVersion(1),
            ),
            (
                &[0x81, 0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // cc=1, 3 of 4 csrc bytes
                RtpError::TruncatedCsrcs { csrc_count: 1, len: 15 },
            ),
            (
                &[0x90, 0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde], // x=1, no ext length
                RtpError::TruncatedExtension { offset: 12, needed: 16, len: 14 },
            ),
            (
                &[0x90, 0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                  0xbe, 0xde, 0x00, 0x02, // 2 words claimed
                  1, 2, 3, 4],            // 1 present
                RtpError::TruncatedExtension { offset: 12, needed: 24, len: 20 },
            ),
            (
                &[0xb0, 0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                  0xbe, 0xde, 0x00, 0x00, // ext of 0 words
                  0x00, 0x00, 0x00, 0x05], // padding of 5 eats into the extension prefix
                RtpError::TruncatedExtension { offset: 12, needed: 16, len: 15 },
            ),
            (
                &[0xa0, 0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xaa, 0x00], // p=1, count 0
                RtpError::BadPadding { padding: 0, available: 2 },
            ),
            (
                &[0xa0, 0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xaa, 0x03], // count 3 > 2 bytes
                RtpError::BadPadding { padding: 3, available: 2 },
            ),
        ];
        for (buf, want) in cases {
            assert_eq!(parse(buf).unwrap_err(), *want, "input {buf:02x?}");
            assert!(!want.to_string().is_empty());
        }
    }

    #[test]
    fn padding_may_take_whole_payload() {
        let buf = [0xa0, 0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02];
        let p = parse(&buf).unwrap();
        assert_eq!(p.padding, 2);
        assert!(p.payload.is_empty());
    }

    #[test]
    fn write_then_parse() {
        let h = RtpHeader {
            marker: true,
            payload_type: 96,
            sequence: 7,
            timestamp: 3000,
            ssrc: Ssrc(0x0102_0304),
        };
        let mut out = vec![0xee]; // write appends
        write(&h, b"nal", &mut out);
        assert_eq!(out.len(), 1 + RTP_HEADER_LEN + 3);
        #[rustfmt::skip]
        assert_eq!(&out[1..], &[
            0x80, 0xe0,             // v=2; m=1, pt=96
            0x00, 0x07,             // seq
            0x00, 0x00, 0x0b, 0xb8, // ts=3000
            0x01, 0x02, 0x03, 0x04, // ssrc
            b'n', b'a', b'l',
        ]);
        let p = parse(&out[1..]).unwrap();
        assert_eq!(p.header(), h);
        assert_eq!(p.payload, b"nal");
    }

    #[test]
    fn csrcs_limits() {
        assert!(Csrcs::from_slice(&[Ssrc(1); 16]).is_none());
        let c = Csrcs::from_slice(&[Ssrc(1); 15]).unwrap();
        assert_eq!(c.len(), 15);
        assert_eq!(
            format!("{:?}", Csrcs::from_slice(&[Ssrc(1)]).unwrap()),
            "[Ssrc(1)]"
        );
    }

    #[test]
    fn demux_by_packet_type() {
        assert!(looks_like_rtcp(&[0x80, 200])); // SR
        assert!(looks_like_rtcp(&[0x81, 201])); // RR
        assert!(!looks_like_rtcp(&[0x80, 96])); // RTP pt=96
        assert!(!looks_like_rtcp(&[0x80, 0x80 | 96])); // RTP pt=96 with marker = 224
        assert!(!looks_like_rtcp(&[0x00, 200])); // v=0
        assert!(!looks_like_rtcp(&[0x80]));
    }

    /// Mirrors `fuzz/fuzz_targets/rtp_rtcp_parse.rs` so CI runs it without nightly.
    #[test]
    fn arbitrary_input_never_panics_and_round_trips() {
        let mut rng = test_rng::Seeded::new(0x1234_5678_9abc_def0);
        for i in 0..20_000 {
            let mut buf = rng.bytes(i % 80);
            if let Some(b) = buf.first_mut() {
                // Mostly version 2, so the parser gets past the first check.
                if i % 4 != 0 {
                    *b = (*b & 0x3f) | 0x80;
                }
            }
            crate::fuzzing::rtp_rtcp_round_trip(&buf);
        }
    }
}
