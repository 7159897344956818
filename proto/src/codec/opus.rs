//! Opus over RTP (RFC 7587): one Opus packet per RTP packet, no payload header (§4.2), a
//! 48 kHz RTP clock whatever the actual sampling rate (§4.1), and `opus/48000/2` in SDP for mono
//! and stereo alike (§7). Plus the TOC byte parser (RFC 6716 §3.1) to know how many samples a
//! packet holds.

use std::fmt;

pub use super::Payload;

/// RTP clock rate, always 48 kHz (RFC 7587 §4.1).
pub const CLOCK_RATE: u32 = 48_000;

/// The `a=rtpmap` encoding part (RFC 7587 §7): always two channels, even for mono.
pub const RTPMAP_ENCODING: &str = "opus/48000/2";

/// `a=rtpmap` value for payload type `pt`, e.g. `97 opus/48000/2`.
pub fn rtpmap(pt: u8) -> String {
    format!("{pt} {RTPMAP_ENCODING}")
}

/// `a=fmtp` parameters a Livecast sender announces (RFC 7587 §7): whether it sends stereo, and
/// that it accepts in-band FEC.
pub fn fmtp(stereo: bool) -> String {
    format!("sprop-stereo={};useinbandfec=1", u8::from(stereo))
}

/// Duration of an Opus packet in 48 kHz samples, from its TOC byte (RFC 6716 §3.1) and, for
/// code 3, its frame count byte (§3.2.5). `None` for an empty or malformed packet (code 3
/// without a count, zero frames, or more than 120 ms).
pub fn frame_duration_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    // Frame sizes in units of 2.5 ms (120 samples at 48 kHz), Table 2.
    let quarter_units = match config {
        0..=11 => [4, 8, 16, 24][usize::from(config % 4)], // SILK: 10, 20, 40, 60 ms
        12..=15 => [4, 8][usize::from(config % 2)],        // Hybrid: 10, 20 ms
        _ => [1, 2, 4, 8][usize::from(config % 4)],        // CELT: 2.5, 5, 10, 20 ms
    };
    let frames = match toc & 0x3 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3f),
    };
    let samples = frames * quarter_units * 120;
    // RFC 6716 §3.2.5: at most 120 ms (5760 samples) per packet.
    (frames > 0 && samples <= 5760).then_some(samples)
}

/// Whether an Opus packet carries in-band FEC (LBRR) data for the frame before it, which a
/// decoder can recover a lost packet's audio from (RFC 6716 §4.2.4, decoding with FEC).
///
/// Only SILK and hybrid packets can (CELT-only packets, config 16..=31, carry none; libopus
/// sends those for music and test tones, SILK or hybrid for speech when FEC is on and the
/// expected loss is set). Read for one-frame packets (code 0), the form RTP senders use: the
/// SILK layer starts with, per channel, one VAD flag per SILK frame and then the LBRR flag,
/// each a range-coded symbol of probability 1/2 (§4.2.3), and while the range is a power of two
/// such symbols are exactly the leading bits of the first data byte. Other codes: `false`.
pub fn has_fec(packet: &[u8]) -> bool {
    let [toc, first, ..] = *packet else {
        return false;
    };
    let config = toc >> 3;
    if config >= 16 || toc & 0x3 != 0 {
        return false;
    }
    // SILK frames per Opus frame (§4.2.2): 10 and 20 ms hold one, 40 ms two, 60 ms three.
    let silk_frames = match config {
        0..=11 => [1, 1, 2, 3][usize::from(config % 4)],
        _ => 1,
    };
    let channels = if toc & 0x4 != 0 { 2 } else { 1 };
    (0..channels).any(|ch| {
        // This channel's LBRR flag follows its VAD flags and the previous channel's.
        let bit = ch * (silk_frames + 1) + silk_frames;
        first & (0x80 >> bit) != 0
    })
}

/// Makes RTP payloads of Opus packets: the payload is the packet, the marker bit is clear.
/// (RFC 3551 §4.1 reserves it for the first packet of a talkspurt, which a sender without
/// silence suppression need not mark; GStreamer's rtpopuspay marks the very first packet.
/// Receivers, ours included, ignore it for Opus.)
#[derive(Clone, Debug, Default)]
pub struct Packetizer {}

impl Packetizer {
    pub fn new() -> Self {
        Packetizer {}
    }

    /// The payload for one encoded Opus packet.
    pub fn packetize(&mut self, packet: &[u8]) -> Payload {
        Payload {
            data: packet.to_vec(),
            marker: false,
        }
    }
}

/// One received Opus packet and its RTP timestamp (48 kHz).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioFrame {
    pub timestamp: u32,
    pub data: Vec<u8>,
}

/// Why an Opus payload was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DepacketizeErrorKind {
    /// A zero-length payload (RFC 6716 §3.4 R1: a packet has at least one byte).
    EmptyPayload,
}

/// A rejected payload, with the RTP sequence number and timestamp to find it in a capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepacketizeError {
    pub seq: u16,
    pub timestamp: u32,
    pub kind: DepacketizeErrorKind,
}

impl fmt::Display for DepacketizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Opus RTP seq {} ts {}: ", self.seq, self.timestamp)?;
        match self.kind {
            DepacketizeErrorKind::EmptyPayload => write!(f, "empty payload"),
        }
    }
}

impl std::error::Error for DepacketizeError {}

/// Turns RTP payloads back into Opus packets (RFC 7587 §4.2) and counts sequence gaps, so the
/// player knows when to run packet loss concealment. Packets are expected in order (the jitter
/// buffer's job); gaps are counted, nothing is reordered.
#[derive(Clone, Debug, Default)]
pub struct Depacketizer {
    last_seq: Option<u16>,
    lost_packets: u64,
}

impl Depacketizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Packets missing according to forward sequence gaps (under 32768).
    pub fn lost_packets(&self) -> u64 {
        self.lost_packets
    }

    /// The Opus packet carried by one RTP packet.
    pub fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<AudioFrame, DepacketizeError> {
        if let Some(last) = self.last_seq {
            let gap = seq.wrapping_sub(last.wrapping_add(1));
            if gap < 0x8000 {
                self.lost_packets += u64::from(gap);
            }
        }
        self.last_seq = Some(seq);
        if payload.is_empty() {
            return Err(DepacketizeError {
                seq,
                timestamp,
                kind: DepacketizeErrorKind::EmptyPayload,
            });
        }
        Ok(AudioFrame {
            timestamp,
            data: payload.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toc_durations() {
        #[rustfmt::skip]
        let cases: &[(&[u8], Option<u32>)] = &[
            (&[], None),
            (&[0x00], Some(480)),        // config 0 SILK NB 10 ms, code 0
            (&[0x08], Some(960)),        // config 1 SILK 20 ms
            (&[0x18], Some(2880)),       // config 3 SILK 60 ms
            (&[0x19], Some(5760)),       // config 3, code 1: 2 × 60 ms = 120 ms
            (&[0x60], Some(480)),        // config 12 Hybrid 10 ms
            (&[0x68], Some(960)),        // config 13 Hybrid 20 ms
            (&[0x80], Some(120)),        // config 16 CELT 2.5 ms
            (&[0xf8], Some(960)),        // config 31 CELT 20 ms (what libopus sends by default)
            (&[0xfc], Some(960)),        // config 31 stereo bit: same duration
            (&[0xfa], Some(1920)),       // code 2: 2 frames
            (&[0xfb], None),             // code 3 without count byte
            (&[0xfb, 0x03], Some(2880)), // code 3, 3 frames of 20 ms
            (&[0xfb, 0x80], None),       // code 3, 0 frames (VBR flag only)
            (&[0xfb, 0x07], None),       // 7 × 20 ms = 140 ms > 120 ms
            (&[0x83, 0x30], Some(5760)), // 48 × 2.5 ms = 120 ms
        ];
        for (packet, want) in cases {
            assert_eq!(frame_duration_samples(packet), *want, "{packet:02x?}");
        }
    }

    #[test]
    fn fec_flag_from_the_first_silk_bits() {
        #[rustfmt::skip]
        let cases: &[(&[u8], bool)] = &[
            (&[], false),
            (&[0x08], false),                   // no data byte
            (&[0x08, 0b0100_0000], true),       // SILK 20 ms mono: VAD 0, LBRR 1
            (&[0x08, 0b1011_1111], false),      // VAD 1, LBRR 0
            (&[0x0c, 0b0001_0000], true),       // stereo: VAD, LBRR (0), VAD, LBRR (1)
            (&[0x0c, 0b1010_1111], false),     // both LBRR flags clear
            (&[0x18, 0b0010_0000], false),      // SILK 60 ms: three VAD flags first
            (&[0x18, 0b0001_0000], true),       // ... then LBRR
            (&[0x68, 0b0100_0000], true),       // hybrid 20 ms
            (&[0xf8, 0xff], false),             // CELT: never
            (&[0x09, 0xff], false),             // code 1 (two frames): not read
        ];
        for (packet, want) in cases {
            assert_eq!(has_fec(packet), *want, "{packet:02x?}");
        }
    }

    #[test]
    fn packetize_and_depacketize() {
        let mut p = Packetizer::new();
        let payload = p.packetize(&[0xfc, 0xff, 0xfe]);
        assert_eq!(
            payload,
            Payload {
                data: vec![0xfc, 0xff, 0xfe],
                marker: false
            }
        );
        let mut d = Depacketizer::new();
        assert_eq!(
            d.push(65_535, 960, &payload.data),
            Ok(AudioFrame {
                timestamp: 960,
                data: vec![0xfc, 0xff, 0xfe]
            })
        );
        d.push(2, 3840, &payload.data).unwrap(); // 0 and 1 lost, across the wrap
        assert_eq!(d.lost_packets(), 2);
        d.push(1, 2880, &payload.data).unwrap(); // late: not counted
        assert_eq!(d.lost_packets(), 2);
        let e = d.push(3, 4800, &[]).unwrap_err();
        assert_eq!(e.kind, DepacketizeErrorKind::EmptyPayload);
        assert_eq!(e.to_string(), "Opus RTP seq 3 ts 4800: empty payload");
    }

    #[test]
    fn sdp_helpers() {
        assert_eq!(rtpmap(97), "97 opus/48000/2");
        assert_eq!(fmtp(false), "sprop-stereo=0;useinbandfec=1");
        assert_eq!(fmtp(true), "sprop-stereo=1;useinbandfec=1");
    }
}
