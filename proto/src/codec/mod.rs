//! RTP payload formats, one module per codec, each with a `Packetizer` (media → RTP payloads)
//! and a `Depacketizer` (RTP payloads → media), plus [`Codec`] to pick one from the SDP
//! `(media, encoding)` pair and [`Depacketizer`] to drive whichever was picked.
//!
//! | module | format | reference |
//! |---|---|---|
//! | [`h264`] | H.264, packetization-mode 1 (single NAL, STAP-A, FU-A) | RFC 6184 |
//! | [`opus`] | Opus, one packet per RTP packet | RFC 7587 |
//! | [`t140`] | T.140 real-time text, with RFC 2198 redundancy | RFC 4103 |
//! | [`rtx`] | retransmission of any of them, on its own SSRC | RFC 4588 |
//!
//! Depacketizers expect packets in sequence order: reordering and de-duplication beyond the
//! trivial belong to the jitter buffer in front of them.

use std::fmt;

pub mod h264;
pub mod opus;
pub mod rtx;
pub mod t140;

/// One RTP payload produced by a packetizer, with the marker bit to put in its RTP header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    pub data: Vec<u8>,
    pub marker: bool,
}

/// A payload format Livecast knows, chosen from an SDP media description.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    H264,
    Opus,
    /// Real-time text (`t140/1000`, RFC 4103); its payloads go through [`t140::Depacketizer`],
    /// which needs the `red` payload type too, so [`Depacketizer::new`] has none for it.
    T140,
    Unknown,
}

impl Codec {
    /// From the SDP media type (`m=video`) and rtpmap encoding name (`H264`), compared
    /// case-insensitively (RFC 8866 §6.6: encoding names are case-insensitive).
    pub fn from_sdp(media: &str, encoding: &str) -> Codec {
        if media.eq_ignore_ascii_case("video") && encoding.eq_ignore_ascii_case("H264") {
            Codec::H264
        } else if media.eq_ignore_ascii_case("audio") && encoding.eq_ignore_ascii_case("opus") {
            Codec::Opus
        } else if media.eq_ignore_ascii_case("text") && encoding.eq_ignore_ascii_case("t140") {
            Codec::T140
        } else {
            Codec::Unknown
        }
    }

    /// From a parsed media description: the codec of its first payload type with an rtpmap,
    /// with that payload type.
    pub fn from_media(m: &crate::sdp::MediaDescription) -> Option<(Codec, u8)> {
        m.payload_types().into_iter().find_map(|pt| {
            let map = m.rtpmap(pt)?;
            Some((Codec::from_sdp(&m.media, &map.encoding), pt))
        })
    }

    /// The RTP clock rate of the format; `None` for [`Codec::Unknown`].
    pub fn clock_rate(self) -> Option<u32> {
        match self {
            Codec::H264 => Some(h264::CLOCK_RATE),
            Codec::Opus => Some(opus::CLOCK_RATE),
            Codec::T140 => Some(t140::CLOCK_RATE),
            Codec::Unknown => None,
        }
    }
}

/// A depacketizer for any supported codec.
#[derive(Debug)]
#[non_exhaustive]
pub enum Depacketizer {
    H264(h264::Depacketizer),
    Opus(opus::Depacketizer),
}

/// What a [`Depacketizer`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    Video(h264::AccessUnit),
    /// One Opus packet and its RTP timestamp (48 kHz).
    Audio {
        timestamp: u32,
        data: Vec<u8>,
    },
}

impl Frame {
    pub fn timestamp(&self) -> u32 {
        match self {
            Frame::Video(au) => au.timestamp,
            Frame::Audio { timestamp, .. } => *timestamp,
        }
    }
}

/// A payload rejected by one of the depacketizers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DepacketizeError {
    H264(h264::DepacketizeError),
    Opus(opus::DepacketizeError),
}

impl fmt::Display for DepacketizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DepacketizeError::H264(e) => e.fmt(f),
            DepacketizeError::Opus(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for DepacketizeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DepacketizeError::H264(e) => Some(e),
            DepacketizeError::Opus(e) => Some(e),
        }
    }
}

impl Depacketizer {
    /// A depacketizer for `codec`; `None` for [`Codec::Unknown`].
    pub fn new(codec: Codec) -> Option<Self> {
        match codec {
            Codec::H264 => Some(Depacketizer::H264(h264::Depacketizer::new())),
            Codec::Opus => Some(Depacketizer::Opus(opus::Depacketizer::new())),
            Codec::T140 | Codec::Unknown => None,
        }
    }

    pub fn codec(&self) -> Codec {
        match self {
            Depacketizer::H264(_) => Codec::H264,
            Depacketizer::Opus(_) => Codec::Opus,
        }
    }

    /// Feeds one RTP packet's fields; returns a frame when one is complete. See
    /// [`h264::Depacketizer::push`] for when to [`pull`](Self::pull).
    pub fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<Option<Frame>, DepacketizeError> {
        match self {
            Depacketizer::H264(d) => d
                .push(seq, timestamp, marker, payload)
                .map(|au| au.map(Frame::Video))
                .map_err(DepacketizeError::H264),
            Depacketizer::Opus(d) => d
                .push(seq, timestamp, payload)
                .map(|f| {
                    Some(Frame::Audio {
                        timestamp: f.timestamp,
                        data: f.data,
                    })
                })
                .map_err(DepacketizeError::Opus),
        }
    }

    /// Feeds a parsed RTP packet.
    pub fn push_rtp(
        &mut self,
        packet: &crate::rtp::RtpPacket<'_>,
    ) -> Result<Option<Frame>, DepacketizeError> {
        self.push(
            packet.sequence,
            packet.timestamp,
            packet.marker,
            packet.payload,
        )
    }

    /// A frame completed earlier and not yet returned.
    pub fn pull(&mut self) -> Option<Frame> {
        match self {
            Depacketizer::H264(d) => d.pull().map(Frame::Video),
            Depacketizer::Opus(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_from_sdp() {
        assert_eq!(Codec::from_sdp("video", "H264"), Codec::H264);
        assert_eq!(Codec::from_sdp("VIDEO", "h264"), Codec::H264);
        assert_eq!(Codec::from_sdp("audio", "OPUS"), Codec::Opus);
        assert_eq!(Codec::from_sdp("audio", "opus"), Codec::Opus);
        assert_eq!(Codec::from_sdp("audio", "H264"), Codec::Unknown);
        assert_eq!(Codec::from_sdp("video", "VP8"), Codec::Unknown);
        assert_eq!(Codec::from_sdp("text", "T140"), Codec::T140);
        assert_eq!(Codec::from_sdp("text", "red"), Codec::Unknown);
        assert_eq!(Codec::T140.clock_rate(), Some(1000));
        assert_eq!(Codec::H264.clock_rate(), Some(90_000));
        assert_eq!(Codec::Opus.clock_rate(), Some(48_000));
        assert_eq!(Codec::Unknown.clock_rate(), None);
        assert!(Depacketizer::new(Codec::Unknown).is_none());
    }

    /// The GStreamer DESCRIBE and the packets it then sent, end to end: SDP → codecs →
    /// depacketizers.
    #[test]
    fn gstreamer_session_end_to_end() {
        let sd =
            crate::sdp::parse(include_str!("../../testdata/sdp/gstreamer_h264_opus.sdp")).unwrap();
        let codecs: Vec<(Codec, u8)> = sd.media.iter().filter_map(Codec::from_media).collect();
        assert_eq!(codecs, vec![(Codec::H264, 96), (Codec::Opus, 97)]);
        let mut video = Depacketizer::new(codecs[0].0).unwrap();
        let mut audio = Depacketizer::new(codecs[1].0).unwrap();
        assert_eq!((video.codec(), audio.codec()), (Codec::H264, Codec::Opus));

        let mut buf = &include_bytes!("../../testdata/rtp/gstreamer_h264_opus_interleaved.bin")[..];
        let (mut frames, mut rtcp) = (Vec::new(), Vec::new());
        // `$`, channel, 16-bit length (RFC 2326 §10.12); channels 0/1 video RTP/RTCP, 2/3 audio.
        while let [b'$', ch, l0, l1, rest @ ..] = buf {
            let len = usize::from(u16::from_be_bytes([*l0, *l1]));
            let (pkt, tail) = rest.split_at(len);
            buf = tail;
            if crate::rtp::looks_like_rtcp(pkt) {
                assert_eq!(ch % 2, 1);
                rtcp.extend(crate::rtcp::parse_compound(pkt).unwrap());
                continue;
            }
            let p = crate::rtp::parse(pkt).unwrap();
            let d = if *ch == 0 { &mut video } else { &mut audio };
            if let Some(f) = d.push_rtp(&p).unwrap() {
                frames.push(f);
            }
            assert_eq!(d.pull(), None);
        }
        let audio_frames: Vec<&Frame> = frames
            .iter()
            .filter(|f| matches!(f, Frame::Audio { .. }))
            .collect();
        assert_eq!(audio_frames.len(), 10);
        // rtpopuspay's first packet (marker set: start of talkspurt) is shorter; from then on
        // each timestamp advances by the previous packet's duration.
        for w in audio_frames[1..].windows(2) {
            let Frame::Audio { data, .. } = w[0] else {
                unreachable!()
            };
            let samples = opus::frame_duration_samples(data).unwrap();
            assert_eq!(w[1].timestamp().wrapping_sub(w[0].timestamp()), samples);
        }
        assert_eq!(
            frames
                .iter()
                .filter(|f| matches!(f, Frame::Video(_)))
                .count(),
            3
        );
        // Each source sent one SR + SDES compound.
        let srs = rtcp
            .iter()
            .filter(|p| matches!(p, crate::rtcp::RtcpPacket::SenderReport(_)))
            .count();
        assert_eq!(srs, 2);
        let cnames: Vec<_> = rtcp
            .iter()
            .filter_map(|p| match p {
                crate::rtcp::RtcpPacket::Sdes(s) => s.chunks.first().map(|c| c.0),
                _ => None,
            })
            .collect();
        assert_eq!(cnames.len(), 2);
    }
}
