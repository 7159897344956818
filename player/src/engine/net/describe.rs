//! Which tracks of a session description we can receive, and how (RFC 8866 media sections).
//! The RTSP client picks them and their control URLs
//! ([`select_tracks`](livecast_proto::rtsp::client::select_tracks)) with [`playable`]. Sans-IO.

use livecast_proto::codec::{h264, Codec};
use livecast_proto::sdp::{MediaDescription, SessionDescription};

use crate::engine::unit::TrackDesc;
use livecast_proto::rtsp::client::TrackInfo;

pub use super::track::Format;

/// Whether we can receive a media section (the state machine's track filter).
pub fn playable(m: &MediaDescription) -> bool {
    let ok = pick_format(m).is_some();
    if !ok {
        tracing::info!(media = %m.media, formats = ?m.formats, "skipping a track we cannot play");
    }
    ok
}

/// The tracks the state machine chose ([`select_tracks`]), described for the engine: codec,
/// payload type, clock rate and how payloads become units.
pub fn describe_tracks(sd: &SessionDescription, chosen: &[TrackInfo]) -> Vec<(TrackDesc, Format)> {
    chosen
        .iter()
        .filter_map(|t| {
            let m = sd.media.get(t.media_index)?;
            let (codec, pt, clock_rate, format) = pick_format(m)?;
            Some((m, t, codec, pt, clock_rate, format))
        })
        .enumerate()
        .map(|(index, (m, t, codec, pt, clock_rate, format))| {
            let desc = TrackDesc {
                index,
                media: m.media.clone(),
                codec,
                payload_type: pt,
                clock_rate,
                fmtp: m.fmtp(pt).unwrap_or_default(),
                control_url: t.control.clone(),
                label: m.attribute("label").unwrap_or_default().trim().to_owned(),
            };
            (desc, format)
        })
        .collect()
}

/// The first payload format of a media section that we can receive.
pub fn pick_format(m: &MediaDescription) -> Option<(Codec, u8, u32, Format)> {
    for pt in m.payload_types() {
        let Some(map) = m.rtpmap(pt) else {
            continue;
        };
        let codec = Codec::from_sdp(&m.media, &map.encoding);
        let fmtp = m.fmtp(pt).unwrap_or_default();
        let param = |k: &str| {
            fmtp.iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
        };
        let format =
            if m.media.eq_ignore_ascii_case("text") && map.encoding.eq_ignore_ascii_case("red") {
                // RFC 2198 redundancy over t140 (RFC 4103 §9.3): set up the text format with red
                // as the payload type that arrives.
                match m.t140_formats().map(|(t140, _)| t140) {
                    Some(t140) => {
                        return Some((
                            Codec::T140,
                            pt,
                            1000,
                            Format::Text {
                                t140,
                                red: Some(pt),
                            },
                        ))
                    }
                    None => continue,
                }
            } else if codec == Codec::T140 {
                Format::Text {
                    t140: pt,
                    red: None,
                }
            } else {
                match codec {
                    Codec::H264 => {
                        // Interleaved mode (2) needs decoding-order reassembly we don't do.
                        if param("packetization-mode").is_some_and(|v| v.trim() == "2") {
                            continue;
                        }
                        let sprop = param("sprop-parameter-sets")
                            .and_then(|v| h264::parse_sprop_parameter_sets(v).ok())
                            .unwrap_or_default();
                        Format::H264 { sprop }
                    }
                    Codec::Opus => Format::Opus,
                    _ => continue,
                }
            };
        let clock_rate = if map.clock_rate > 0 {
            map.clock_rate
        } else {
            codec.clock_rate().unwrap_or(1000)
        };
        return Some((codec, pt, clock_rate, format));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use livecast_proto::rtsp::client::select_tracks;
    use livecast_proto::rtsp::url;
    use livecast_proto::sdp;

    fn tracks_from_sdp(sd: &SessionDescription, base: &str) -> Vec<(TrackDesc, Format)> {
        describe_tracks(sd, &select_tracks(sd, base, playable))
    }

    #[test]
    fn tracks_from_gstreamer_sdp() {
        let sd = sdp::parse(include_str!(
            "../../../../proto/testdata/sdp/gstreamer_h264_opus.sdp"
        ))
        .unwrap();
        let t = tracks_from_sdp(&sd, "rtsp://127.0.0.1:8555/live/");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].0.codec, Codec::H264);
        assert_eq!(t[0].0.control_url, "rtsp://127.0.0.1:8555/live/stream=0");
        assert_eq!((t[0].0.payload_type, t[0].0.clock_rate), (96, 90_000));
        let Format::H264 { sprop } = &t[0].1 else {
            panic!("{:?}", t[0].1)
        };
        assert_eq!(sprop.len(), 2);
        assert_eq!(h264::nal_type(&sprop[0]), h264::nal::SPS);
        assert_eq!(t[1].0.codec, Codec::Opus);
        assert_eq!((t[1].0.index, t[1].0.clock_rate), (1, 48_000));
        assert_eq!(
            url::aggregate("rtsp://127.0.0.1:8555/live/", sd.control()),
            "rtsp://127.0.0.1:8555/live"
        );
    }

    #[test]
    fn text_tracks_and_unplayable_ones() {
        let text = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\n\
            m=video 0 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\na=control:trackID=0\r\n\
            m=text 0 RTP/AVP 100 98\r\na=rtpmap:100 red/1000\r\na=rtpmap:98 t140/1000\r\na=control:trackID=1\r\n\
            m=video 0 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\na=fmtp:97 packetization-mode=2\r\na=control:trackID=2\r\n\
            m=audio 0 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n";
        let sd = sdp::parse(text).unwrap();
        let t = tracks_from_sdp(&sd, "rtsp://h/s");
        // VP8 and interleaved H.264 are skipped; the text track takes red over t140, the
        // audio track has no control URL among several streams.
        assert_eq!(t.len(), 1);
        assert_eq!(
            t[0].1,
            Format::Text {
                t140: 98,
                red: Some(100)
            }
        );
        assert_eq!(t[0].0.codec, Codec::T140);
        assert_eq!((t[0].0.payload_type, t[0].0.clock_rate), (100, 1000));
        assert_eq!(t[0].0.control_url, "rtsp://h/s/trackID=1");
        assert_eq!(t[0].0.index, 0);
    }

    #[test]
    fn plain_t140_and_red_without_t140() {
        let text = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\n\
            m=text 0 RTP/AVP 98\r\na=rtpmap:98 t140/1000\r\na=control:trackID=1\r\n\
            m=text 0 RTP/AVP 100\r\na=rtpmap:100 red/1000\r\na=control:trackID=2\r\n";
        let t = tracks_from_sdp(&sdp::parse(text).unwrap(), "rtsp://h/s");
        assert_eq!(t.len(), 1);
        assert_eq!(
            t[0].1,
            Format::Text {
                t140: 98,
                red: None
            }
        );
    }
}
