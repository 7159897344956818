//! What the player's benchmarks share.

use livecast_player::engine::unit::TrackDesc;
use livecast_proto::codec::Codec;

/// Video (H.264), audio (Opus) and, with `text`, a caption track, as a DESCRIBE would give them.
pub fn tracks(text: bool) -> Vec<TrackDesc> {
    let t = |index: usize, media: &str, codec: Codec, clock_rate: u32| TrackDesc {
        index,
        media: media.into(),
        codec,
        payload_type: 96 + index as u8,
        clock_rate,
        fmtp: vec![],
        control_url: format!("rtsp://bench.invalid/live/trackID={index}"),
        label: Default::default(),
    };
    let mut tracks = vec![
        t(0, "video", Codec::H264, 90_000),
        t(1, "audio", Codec::Opus, 48_000),
    ];
    if text {
        tracks.push(t(2, "text", Codec::Unknown, 1000));
    }
    tracks
}
