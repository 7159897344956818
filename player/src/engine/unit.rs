//! The unit of media that flows from the network side to the recorder and the decoders.

use livecast_proto::codec::Codec;

/// One track of the stream being received, from the SDP.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackDesc {
    pub index: usize,
    /// `video`, `audio`, `text` (the SDP media type).
    pub media: String,
    pub codec: Codec,
    pub payload_type: u8,
    pub clock_rate: u32,
    /// `a=fmtp` parameters (e.g. sprop-parameter-sets).
    pub fmtp: Vec<(String, String)>,
    /// Absolute control URL used for SETUP.
    pub control_url: String,
    /// `a=label` (RFC 4574): Livecast labels its text tracks `captions` and `chat`.
    pub label: String,
}

/// What a track carries, from its SDP media type (RFC 8866 §5.14) and, for text, its
/// `a=label` (RFC 4574).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Video,
    Audio,
    /// A `text` track that is not labelled `chat`: captions.
    Captions,
    /// A `text` track labelled `chat` (call mode).
    Chat,
    /// Any other media type (`application`, ...): recorded, not played.
    Other,
}

impl TrackDesc {
    pub fn kind(&self) -> MediaKind {
        let m = &self.media;
        if m.eq_ignore_ascii_case("video") {
            MediaKind::Video
        } else if m.eq_ignore_ascii_case("audio") {
            MediaKind::Audio
        } else if m.eq_ignore_ascii_case("text") {
            if self.label.eq_ignore_ascii_case("chat") {
                MediaKind::Chat
            } else {
                MediaKind::Captions
            }
        } else {
            MediaKind::Other
        }
    }
}

/// One depacketized unit: an H.264 access unit (Annex B), an Opus packet, or a text block.
#[derive(Clone, Debug, PartialEq)]
pub struct MediaUnit {
    /// Index into the session's `TrackDesc` list.
    pub track: usize,
    pub rtp_timestamp: u32,
    /// Capture time on the sender's wall clock, microseconds since the Unix epoch. From the
    /// RTCP sender report mapping (RTP timestamp -> NTP) when one has arrived; before that,
    /// estimated from RTP-Info `rtptime` and the PLAY response's arrival (so tracks still line
    /// up with each other), else from the first packet's arrival.
    pub capture_us: i64,
    /// True once `capture_us` comes from a sender report (good for latency measurement).
    pub capture_from_sr: bool,
    /// Our wall clock when the unit was complete, microseconds since the Unix epoch.
    pub arrival_us: i64,
    /// A decoder can start here (H.264 IDR with parameter sets; every audio/text unit).
    pub keyframe: bool,
    /// Some packets of this unit were lost.
    pub damaged: bool,
    pub data: Vec<u8>,
}
