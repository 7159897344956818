//! The session description we answer DESCRIBE with (RFC 8866), one `m=` section per track.

use livecast_proto::codec::h264;
use livecast_proto::sdp::{Attribute, MediaDescription, Origin, SessionDescription};

use crate::pipeline::VideoParams;
use crate::track::TrackInfo;

/// Builds the session description, once; the server sets the origin address per DESCRIBE to
/// the address the client reached us on.
///
/// - Video: `H264/90000`, `packetization-mode=1` (non-interleaved: single NAL, STAP-A, FU-A,
///   RFC 6184 §6.3), `profile-level-id` and `sprop-parameter-sets` from the encoder's SPS/PPS
///   so a player can set up its decoder before the first keyframe arrives.
/// - Audio: `opus/48000/2` as RFC 7587 §7 requires (the 2 is the RTP clock's channel count, not
///   the stream's), `sprop-stereo=1` because we send stereo.
/// - Captions, when on, and chat in a call: each an `m=text` with `red/1000` (RFC 2198
///   redundancy, listed first, so it is what we send) over `t140/1000` (RFC 4103 §9.3),
///   `cps=30`; told apart by `a=label:captions` / `a=label:chat` (RFC 4574) and a media
///   title (`i=`).
/// - `s=` is `title`: "Livecast", or in a call who is calling.
/// - A track with [`TrackInfo::nack`] is `RTP/AVPF` (RFC 4585) with `a=rtcp-fb` `nack` (video
///   also `nack pli` and `ccm fir`, RFC 5104), and its `rtx` payload type (RFC 4588) with
///   `apt=<pt>;rtx-time=1000` (how long packets are kept). The state machine takes these out
///   for live555 clients.
pub fn describe(
    video: &VideoParams,
    vinfo: &TrackInfo,
    ainfo: &TrackInfo,
    text: &[(&TrackInfo, TextRole)],
    video_bitrate: u32,
    audio_bitrate: u32,
    title: &str,
) -> SessionDescription {
    let plid = h264::profile_level_id(&video.sps).unwrap_or_else(|| "42e01f".into());
    let sprop = h264::sprop_parameter_sets(&video.sps, &video.pps);
    let title: String = title.chars().filter(|c| !c.is_control()).collect();
    let title = if title.trim().is_empty() {
        "Livecast"
    } else {
        title.trim()
    };
    let (vpt, apt) = (vinfo.payload_type, ainfo.payload_type);
    let mut video_media = rtp_media(
        "video",
        vinfo,
        &[vpt],
        vec![
            Attribute::new("rtpmap", format!("{vpt} H264/90000")),
            Attribute::new(
                "fmtp",
                format!(
                    "{vpt} packetization-mode=1;profile-level-id={plid};sprop-parameter-sets={sprop}"
                ),
            ),
            Attribute::new(
                "framesize",
                format!("{vpt} {}-{}", video.width, video.height),
            ),
            Attribute::new("framerate", video.fps.to_string()),
        ],
    );
    if vinfo.nack {
        video_media = video_media.with_feedback(vpt, retransmission(vinfo));
    }
    let mut audio_media = rtp_media(
        "audio",
        ainfo,
        &[apt],
        vec![
            Attribute::new("rtpmap", format!("{apt} opus/48000/2")),
            Attribute::new(
                "fmtp",
                format!("{apt} sprop-stereo=1;stereo=1;useinbandfec=1"),
            ),
        ],
    );
    if ainfo.nack {
        audio_media = audio_media.with_nack(apt, retransmission(ainfo));
    }
    let mut media = vec![
        MediaDescription {
            bandwidth: vec![("AS".into(), video_bitrate / 1000)],
            ..video_media
        },
        MediaDescription {
            bandwidth: audio_bandwidth(audio_bitrate, ainfo.nack),
            ..audio_media
        },
    ];
    for (t, role) in text {
        media.push(text_media(t, *role));
    }
    SessionDescription {
        origin: Origin {
            session_id: rand::random::<u32>().to_string(),
            session_version: "1".into(),
            ..Origin::default()
        },
        session_name: title.into(),
        connection: Some("IN IP4 0.0.0.0".into()),
        timing: (0, 0),
        attributes: vec![
            Attribute::new("tool", "livecast"),
            Attribute::new("type", "broadcast"),
            Attribute::new("control", "*"),
            Attribute::new("range", "npt=0-"),
        ],
        media,
        ..SessionDescription::default()
    }
}

/// The audio's `b=` lines: its rate (`AS`, kbit/s) and, with NACK, RTCP bandwidth for the
/// feedback (RFC 3556 `RS`/`RR`, bit/s). Without them a receiver takes 5 % of the 64 kbit/s,
/// 3.2 kbit/s, for its RTCP, and GStreamer then sends a NACK only every few hundred ms: at
/// 5 % loss it declared 8-9 audio packets of ~575 lost in 12 s. 16 kbit/s each way is about
/// one compound packet every 50 ms.
fn audio_bandwidth(audio_bitrate: u32, nack: bool) -> Vec<(String, u32)> {
    let mut b = vec![("AS".into(), audio_bitrate / 1000)];
    if nack {
        b.extend([("RS".into(), AUDIO_RTCP_BPS), ("RR".into(), AUDIO_RTCP_BPS)]);
    }
    b
}

/// RTCP bandwidth (bit/s) offered to each side of an audio track with NACK.
const AUDIO_RTCP_BPS: u32 = 16_000;

/// The RFC 4588 format a track with NACK retransmits in, with how long its packets are kept.
pub fn retransmission(t: &TrackInfo) -> Option<livecast_proto::sdp::Rtx> {
    t.rtx_payload_type
        .map(|payload_type| livecast_proto::sdp::Rtx {
            payload_type,
            keep_ms: u32::try_from(crate::track::HISTORY.as_millis()).unwrap_or(u32::MAX),
        })
}

/// The `m=text` section of a T.140 track sent inside RED (RFC 4103 §3, RFC 2198), with its
/// role's title (`i=`) and label.
pub fn text_media(t: &TrackInfo, role: TextRole) -> MediaDescription {
    let (red, t140) = (crate::RED_PT, crate::T140_PT);
    MediaDescription {
        other: vec![('i', role.title().into())],
        ..rtp_media(
            "text",
            t,
            &[red, t140],
            vec![
                Attribute::new("rtpmap", format!("{red} red/1000")),
                Attribute::new("fmtp", format!("{red} {t140}/{t140}/{t140}")),
                Attribute::new("rtpmap", format!("{t140} t140/1000")),
                Attribute::new("fmtp", format!("{t140} cps=30")),
                Attribute::new("label", role.label()),
            ],
        )
    }
}

/// An `m=<media> 0 RTP/AVP <formats>` section for `track`: `attributes`, then the track's
/// `a=control`.
fn rtp_media(
    media: &str,
    track: &TrackInfo,
    formats: &[u8],
    mut attributes: Vec<Attribute>,
) -> MediaDescription {
    attributes.push(control(track));
    MediaDescription {
        media: media.into(),
        proto: "RTP/AVP".into(),
        formats: formats.iter().map(u8::to_string).collect(),
        attributes,
        ..MediaDescription::default()
    }
}

/// `a=control:trackID=<index>`, the URL the server's SETUP handling resolves.
fn control(t: &TrackInfo) -> Attribute {
    Attribute::new("control", format!("trackID={}", t.index))
}

/// What a text track carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextRole {
    /// Live captions of the audio track (speech-to-text).
    Captions,
    /// Chat typed by the person streaming (call mode).
    Chat,
}

impl TextRole {
    /// The `a=label` value (RFC 4574) players tell the tracks apart by.
    pub fn label(self) -> &'static str {
        match self {
            TextRole::Captions => "captions",
            TextRole::Chat => "chat",
        }
    }

    /// The media title (`i=`), for people reading track lists.
    pub fn title(self) -> &'static str {
        match self {
            TextRole::Captions => "Live captions",
            TextRole::Chat => "Chat",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::TrackKind;
    use livecast_proto::time::Ssrc;

    fn info(index: usize, kind: TrackKind, payload_type: u8) -> TrackInfo {
        TrackInfo {
            index,
            kind,
            payload_type,
            clock_rate: 90_000,
            ssrc: Ssrc(1),
            cname: "c".into(),
            nack: false,
            rtx_payload_type: None,
        }
    }

    #[test]
    fn writes_every_line_players_rely_on_in_order() {
        let video = VideoParams {
            width: 1280,
            height: 720,
            fps: 30,
            // Constrained Baseline 3.1, as openh264 makes it.
            sps: vec![0x67, 0x42, 0xc0, 0x1f, 0x8c],
            pps: vec![0x68, 0xce, 0x3c, 0x80],
        };
        let captions = info(2, TrackKind::Text, crate::RED_PT);
        let vinfo = TrackInfo {
            nack: true,
            rtx_payload_type: Some(100),
            ..info(0, TrackKind::Video, 96)
        };
        let ainfo = TrackInfo {
            nack: true,
            rtx_payload_type: Some(101),
            ..info(1, TrackKind::Audio, 97)
        };
        let mut sdp = describe(
            &video,
            &vinfo,
            &ainfo,
            &[(&captions, TextRole::Captions)],
            2_000_000,
            64_000,
            " Bob\u{7} ",
        );
        sdp.origin.session_id = "1234".into();
        sdp.origin.address = "192.0.2.1".into();
        let want = "v=0\r\n\
            o=- 1234 1 IN IP4 192.0.2.1\r\n\
            s=Bob\r\n\
            c=IN IP4 0.0.0.0\r\n\
            t=0 0\r\n\
            a=tool:livecast\r\n\
            a=type:broadcast\r\n\
            a=control:*\r\n\
            a=range:npt=0-\r\n\
            m=video 0 RTP/AVPF 96 100\r\n\
            b=AS:2000\r\n\
            a=rtpmap:96 H264/90000\r\n\
            a=fmtp:96 packetization-mode=1;profile-level-id=42c01f;sprop-parameter-sets=Z0LAH4w=,aM48gA==\r\n\
            a=rtcp-fb:96 nack\r\n\
            a=rtcp-fb:96 nack pli\r\n\
            a=rtcp-fb:96 ccm fir\r\n\
            a=rtpmap:100 rtx/90000\r\n\
            a=fmtp:100 apt=96;rtx-time=1000\r\n\
            a=framesize:96 1280-720\r\n\
            a=framerate:30\r\n\
            a=control:trackID=0\r\n\
            m=audio 0 RTP/AVPF 97 101\r\n\
            b=AS:64\r\n\
            b=RS:16000\r\n\
            b=RR:16000\r\n\
            a=rtpmap:97 opus/48000/2\r\n\
            a=fmtp:97 sprop-stereo=1;stereo=1;useinbandfec=1\r\n\
            a=rtcp-fb:97 nack\r\n\
            a=rtpmap:101 rtx/48000\r\n\
            a=fmtp:101 apt=97;rtx-time=1000\r\n\
            a=control:trackID=1\r\n\
            m=text 0 RTP/AVP 99 98\r\n\
            i=Live captions\r\n\
            a=rtpmap:99 red/1000\r\n\
            a=fmtp:99 98/98/98\r\n\
            a=rtpmap:98 t140/1000\r\n\
            a=fmtp:98 cps=30\r\n\
            a=label:captions\r\n\
            a=control:trackID=2\r\n";
        assert_eq!(sdp.to_string(), want);
        // What a live555 client is answered: the SDP of before RTCP feedback, line for line.
        sdp.media = sdp.media.iter().map(|m| m.without_feedback()).collect();
        let plain = want
            .replace("RTP/AVPF 96 100", "RTP/AVP 96")
            .replace("RTP/AVPF 97 101", "RTP/AVP 97")
            .lines()
            .filter(|l| !l.starts_with("a=rtcp-fb") && !l.contains(":100 ") && !l.contains(":101 "))
            .map(|l| format!("{l}\r\n"))
            .collect::<String>();
        assert_eq!(sdp.to_string(), plain);
    }
}
