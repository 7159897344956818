//! What the player's benchmarks share.

use std::path::Path;

use livecast_player::engine::recording::RecordingWriter;
use livecast_player::engine::unit::{MediaUnit, TrackDesc};
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

/// A recording of [`tracks`] at `path`, for the benchmark to fill.
pub fn create_recording(path: &Path, text: bool) -> anyhow::Result<RecordingWriter> {
    Ok(RecordingWriter::create(
        path,
        &tracks(text),
        "v=0\r\ns=bench\r\n",
    )?)
}

/// An empty unit of track 0 whose fields the benchmark sets before each write.
pub fn blank_unit(capacity: usize) -> MediaUnit {
    MediaUnit {
        track: 0,
        rtp_timestamp: 0,
        capture_us: 0,
        capture_from_sr: true,
        arrival_us: 0,
        keyframe: false,
        damaged: false,
        data: Vec::with_capacity(capacity),
    }
}

/// A `/proc/self/status` figure in KiB (`VmRSS:`, `VmHWM:`).
pub fn vm_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
