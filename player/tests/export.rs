//! `livecast-player --export`: a recording made of real H.264 (openh264) and Opus (libopus)
//! units and three captions becomes an MP4 that ffprobe reads (h264 + opus + text, the right
//! durations) and ffmpeg decodes without an error, and a .vtt with the captions; a --from/--to
//! range starts at the keyframe at or before --from.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

#[path = "../../server/tests/common/media_file.rs"]
#[allow(dead_code)] // the server's tests use the rest
mod media_file;
#[path = "../../server/tests/common/mp4_check.rs"]
mod mp4_check;

use livecast_player::engine::recording::RecordingWriter;
use livecast_player::engine::unit::{MediaUnit, TrackDesc};
use livecast_proto::codec::Codec;
use livecast_server::encode::h264::{H264Config, H264Encoder};
use livecast_server::encode::opus::OpusEncoder;
use livecast_server::source::{AudioFrame, VideoFrame};
use mp4_check::{decodes_cleanly, probe};

const T0: i64 = 1_795_000_000_000_000; // 2026-11-18, µs since the Unix epoch
const FPS: i64 = 15;
const SECONDS: i64 = 20;

fn track(index: usize, media: &str, codec: Codec, clock_rate: u32, label: &str) -> TrackDesc {
    TrackDesc {
        index,
        media: media.into(),
        codec,
        payload_type: 96 + index as u8,
        clock_rate,
        fmtp: vec![],
        control_url: format!("rtsp://example.test/live/trackID={index}"),
        label: label.into(),
    }
}

fn unit(track: usize, t_us: i64, keyframe: bool, data: Vec<u8>) -> MediaUnit {
    MediaUnit {
        track,
        rtp_timestamp: 0,
        capture_us: t_us,
        capture_from_sr: true,
        arrival_us: t_us + 50_000,
        keyframe,
        damaged: false,
        data,
    }
}

/// 20 s: 320x240 video at 15 fps with an IDR every second, 20 ms Opus frames of a tone, and
/// captions from 2.0 to 4.5 s, 8.0 to 10.0 s and 14.0 to 16.0 s.
fn make_recording(path: &Path) {
    let tracks = [
        track(0, "video", Codec::H264, 90_000, ""),
        track(1, "audio", Codec::Opus, 48_000, ""),
        track(2, "text", Codec::T140, 1000, "captions"),
    ];
    let mut w = RecordingWriter::create(path, &tracks, "v=0\r\n").unwrap();
    let mut video = H264Encoder::new(&H264Config {
        width: 320,
        height: 240,
        fps: FPS as u32,
        bitrate_bps: 300_000,
        idr_interval_secs: 1,
    })
    .unwrap();
    let mut audio = OpusEncoder::new(64_000).unwrap();
    let captions = [
        (2_000_000, "first caption"),
        (4_500_000, "\u{2028}"),
        (8_000_000, "second caption"),
        (10_000_000, "\u{2028}"),
        (14_000_000, "third caption"),
        (16_000_000, "\u{2028}"),
    ];
    let (mut v, mut a, mut c) = (0i64, 0i64, 0usize);
    loop {
        let tv = v * 1_000_000 / FPS;
        let ta = a * 20_000;
        let tc = captions.get(c).map_or(i64::MAX, |x| x.0);
        let t = tv.min(ta).min(tc);
        if t >= SECONDS * 1_000_000 {
            break;
        }
        let capture = UNIX_EPOCH + Duration::from_micros((T0 + t) as u64);
        if t == tv {
            let (width, height) = (320usize, 240usize);
            let mut i420 = vec![128u8; width * height * 3 / 2];
            // A bar moving across the picture.
            for y in 0..height {
                for x in 0..16 {
                    i420[y * width + (x + v as usize * 4) % width] = 235;
                }
            }
            let frame = VideoFrame {
                width: width as u32,
                height: height as u32,
                i420,
                capture,
                index: v as u64,
            };
            if let Some(e) = video.encode(&frame).unwrap() {
                w.append(&unit(0, T0 + t, e.is_idr, e.annexb)).unwrap();
            }
            v += 1;
        } else if t == ta {
            let samples = (0..960)
                .flat_map(|i| {
                    let s = ((((a * 960 + i) as f64) * 440.0 * std::f64::consts::TAU / 48_000.0)
                        .sin()
                        * 8000.0) as i16;
                    [s, s]
                })
                .collect();
            let data = audio.encode(&AudioFrame { samples, capture }).unwrap();
            w.append(&unit(1, T0 + t, true, data)).unwrap();
            a += 1;
        } else {
            w.append(&unit(2, T0 + t, true, captions[c].1.as_bytes().to_vec()))
                .unwrap();
            c += 1;
        }
    }
    w.flush().unwrap();
}

fn export(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_livecast-player"))
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    err
}

#[test]
fn export_of_a_recording_and_of_a_range() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("session.lcrec");
    make_recording(&rec);

    let mp4 = dir.path().join("all.mp4");
    let said = export(&["--export", mp4.to_str().unwrap(), rec.to_str().unwrap()]);
    assert!(
        said.contains("300 video frames, 1000 audio packets"),
        "{said}"
    );
    let streams = probe(&mp4);
    let names: Vec<&str> = streams.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["h264", "opus", "mov_text"]);
    // 300 frames of 1/15 s, 1000 packets of 20 ms; captions to 16 s.
    assert!((streams[0].1 - 20.0).abs() < 0.01, "{streams:?}");
    assert!((streams[1].1 - 20.0).abs() < 0.01, "{streams:?}");
    assert!((streams[2].1 - 16.0).abs() < 0.01, "{streams:?}");
    decodes_cleanly(&mp4);
    let vtt = std::fs::read_to_string(dir.path().join("all.vtt")).unwrap();
    assert_eq!(
        vtt,
        "WEBVTT\n\n\
         00:00:02.000 --> 00:00:04.500\nfirst caption\n\n\
         00:00:08.000 --> 00:00:10.000\nsecond caption\n\n\
         00:00:14.000 --> 00:00:16.000\nthird caption\n\n"
    );

    // 5.5 s to 12.5 s: from the keyframe at 5.0 s.
    let part = dir.path().join("part.mp4");
    let said = export(&[
        "--export",
        part.to_str().unwrap(),
        "--from",
        "0:05.5",
        "--to",
        "0:12.5",
        rec.to_str().unwrap(),
    ]);
    assert!(
        said.contains("starting at 0:00:05.000 (the keyframe at or before 0:00:05.500)"),
        "{said}"
    );
    let streams = probe(&part);
    assert_eq!(streams.len(), 3);
    // Frames at 5.0 s + k/15 before 12.5 s: 113 of them.
    assert!((streams[0].1 - 113.0 / 15.0).abs() < 0.01, "{streams:?}");
    assert!((streams[1].1 - 7.5).abs() < 0.01, "{streams:?}");
    decodes_cleanly(&part);
    let vtt = std::fs::read_to_string(dir.path().join("part.vtt")).unwrap();
    assert_eq!(
        vtt,
        "WEBVTT\n\n00:00:03.000 --> 00:00:05.000\nsecond caption\n\n"
    );

    if Command::new("mpv").arg("--version").output().is_ok() {
        let out = Command::new("mpv")
            .args(["--vo=null", "--ao=null", "--frames=60"])
            .arg(&part)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mpv: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A recording of a stream with B-frames (x264, two between references: units in decode
/// order, each stamped with its presentation time, as the player records them) exports to an
/// MP4 whose every picture ffmpeg decodes, shown in order.
#[test]
fn export_keeps_b_frames_in_decode_order() {
    let dir = tempfile::tempdir().unwrap();
    let source = media_file::h264_aac_file(dir.path(), "talk.mp4", 2);
    let mut units = livecast_server::source::container::UnitReader::open(&source).unwrap();
    let rec = dir.path().join("b.lcrec");
    let tracks = [track(0, "video", Codec::H264, 90_000, "")];
    let mut w = RecordingWriter::create(&rec, &tracks, "v=0\r\n").unwrap();
    let n = 125; // the file's 5 s
    for _ in 0..n {
        let u = units.next_unit().unwrap();
        w.append(&unit(0, T0 + u.capture_at / 1000, u.is_idr, u.annexb))
            .unwrap();
    }
    w.flush().unwrap();
    let out = dir.path().join("b.mp4");
    export(&["--export", out.to_str().unwrap(), rec.to_str().unwrap()]);
    decodes_cleanly(&out);
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-show_entries"])
        .args(["frame=pts_time", "-of", "csv=p=0"])
        .arg(&out)
        .output()
        .unwrap();
    // One line per frame; the first field is the time (a frame with side data has more).
    let pts: Vec<f64> = String::from_utf8_lossy(&probe.stdout)
        .lines()
        .filter_map(|l| l.split(',').next()?.trim().parse().ok())
        .collect();
    assert_eq!(pts.len(), n, "pictures decoded");
    assert!(pts.windows(2).all(|w| w[1] > w[0]), "out of order: {pts:?}");
}
