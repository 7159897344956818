//! The session description we answer DESCRIBE with (RFC 8866), one `m=` section per track.

use livecast_proto::codec::h264;

use crate::pipeline::VideoParams;
use crate::track::TrackInfo;

/// Builds the SDP. `{ADDR_TYPE}` and `{ADDR}` in the origin line are filled per request with
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
pub fn describe(
    video: &VideoParams,
    vinfo: &TrackInfo,
    ainfo: &TrackInfo,
    text: &[(&TrackInfo, TextRole)],
    video_bitrate: u32,
    audio_bitrate: u32,
    title: &str,
) -> String {
    let session_id = u64::from(rand::random::<u32>());
    let plid = h264::profile_level_id(&video.sps).unwrap_or_else(|| "42e01f".into());
    let sprop = h264::sprop_parameter_sets(&video.sps, &video.pps);
    let mut s = String::new();
    s.push_str("v=0\r\n");
    s.push_str(&format!("o=- {session_id} 1 IN {{ADDR_TYPE}} {{ADDR}}\r\n"));
    let title: String = title.chars().filter(|c| !c.is_control()).collect();
    let title = if title.trim().is_empty() {
        "Livecast"
    } else {
        title.trim()
    };
    s.push_str(&format!("s={title}\r\n"));
    s.push_str("c=IN IP4 0.0.0.0\r\n");
    s.push_str("t=0 0\r\n");
    s.push_str("a=tool:livecast\r\n");
    s.push_str("a=type:broadcast\r\n");
    s.push_str("a=control:*\r\n");
    s.push_str("a=range:npt=0-\r\n");
    s.push_str(&format!("m=video 0 RTP/AVP {}\r\n", vinfo.payload_type));
    s.push_str(&format!("b=AS:{}\r\n", video_bitrate / 1000));
    s.push_str(&format!("a=rtpmap:{} H264/90000\r\n", vinfo.payload_type));
    s.push_str(&format!(
        "a=fmtp:{} packetization-mode=1;profile-level-id={plid};sprop-parameter-sets={sprop}\r\n",
        vinfo.payload_type
    ));
    s.push_str(&format!(
        "a=framesize:{} {}-{}\r\n",
        vinfo.payload_type, video.width, video.height
    ));
    s.push_str(&format!("a=framerate:{}\r\n", video.fps));
    s.push_str(&format!("a=control:trackID={}\r\n", vinfo.index));
    s.push_str(&format!("m=audio 0 RTP/AVP {}\r\n", ainfo.payload_type));
    s.push_str(&format!("b=AS:{}\r\n", audio_bitrate / 1000));
    s.push_str(&format!("a=rtpmap:{} opus/48000/2\r\n", ainfo.payload_type));
    s.push_str(&format!(
        "a=fmtp:{} sprop-stereo=1;stereo=1;useinbandfec=1\r\n",
        ainfo.payload_type
    ));
    s.push_str(&format!("a=control:trackID={}\r\n", ainfo.index));
    for (t, role) in text {
        let (red, t140) = (crate::RED_PT, crate::T140_PT);
        s.push_str(&format!("m=text 0 RTP/AVP {red} {t140}\r\n"));
        s.push_str(&format!("i={}\r\n", role.title()));
        s.push_str(&format!("a=rtpmap:{red} red/1000\r\n"));
        s.push_str(&format!("a=fmtp:{red} {t140}/{t140}/{t140}\r\n"));
        s.push_str(&format!("a=rtpmap:{t140} t140/1000\r\n"));
        s.push_str(&format!("a=fmtp:{t140} cps=30\r\n"));
        s.push_str(&format!("a=label:{}\r\n", role.label()));
        s.push_str(&format!("a=control:trackID={}\r\n", t.index));
    }
    s
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
