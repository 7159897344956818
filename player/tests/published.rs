//! The headless player reads a path published into livecast-server (by ffmpeg): the relay as
//! a viewer meets it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use livecast_server::rtsp_server::PublishOptions;

#[path = "../../server/tests/common/media_file.rs"]
mod media_file;
use livecast_server::source::VideoConfig;
use livecast_server::ServerConfig;
use media_file::h264_opus_mkv;

#[test]
fn headless_plays_a_path_published_by_ffmpeg() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = h264_opus_mkv(dir.path());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let small = VideoConfig {
        width: 320,
        height: 240,
        fps: 30,
    };
    let mut cfg =
        ServerConfig::test_sources("127.0.0.1:0".parse().expect("address"), small, 300_000);
    cfg.rtsp.publishers = Some(PublishOptions::default());
    let server = rt
        .block_on(livecast_server::start(cfg))
        .expect("server starts");
    let cam = format!("rtsp://{}/cam", server.listening[0]);
    let mut publisher = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-i"])
        .arg(&input)
        .args(["-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp", &cam])
        .stdin(Stdio::null())
        .spawn()
        .expect("ffmpeg");
    let start = Instant::now();
    while server.rtsp.paths().get("cam").is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "ffmpeg did not publish"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let json = dir.path().join("stats.json");
    let status = Command::new(env!("CARGO_BIN_EXE_livecast-player"))
        .args(["--headless", &cam, "--duration", "5", "--transport", "tcp"])
        .arg("--stats-json")
        .arg(&json)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("the player binary was built by cargo for this test");
    let _ = publisher.kill();
    let _ = publisher.wait();
    assert!(status.success(), "player exited with {status}");
    let text = std::fs::read_to_string(&json).expect("the player wrote --stats-json");
    let r: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(r["video"]["width"], 320, "{r}");
    assert_eq!(r["video"]["height"], 240, "{r}");
    let video = r["video"]["frames_decoded"]
        .as_u64()
        .expect("frames_decoded");
    // 25 fps for about 5 s, less the set-up.
    assert!(video >= 75, "only {video} frames decoded: {r}");
    let audio = r["audio"]["frames_decoded"].as_u64().expect("audio frames");
    assert!(audio >= 150, "only {audio} Opus frames decoded: {r}");
    server.shutdown();
}

/// `--video file:talk.mp4 --audio file:talk.mp4`: the file's H.264 as it is (400x224 at
/// 25 fps) and its AAC as Opus, played by the headless player at the file's size and rate;
/// without B-frames, and with two (decoded with reordering: every picture, no error).
#[test]
fn headless_plays_an_mp4_file_streamed_as_it_is() {
    for b_frames in [0, 2] {
        plays_an_mp4_file(b_frames);
    }
}

/// livecast-server in this process streaming `file` as its video and audio (`--video file:X
/// --audio file:X`), and the headless player's --stats-json after `seconds` of it.
fn play_file(file: &std::path::Path, seconds: u32) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut cfg = ServerConfig::test_sources(
        "127.0.0.1:0".parse().expect("address"),
        VideoConfig::default(),
        300_000,
    );
    cfg.media.video = livecast_server::source::VideoSpec::File(file.to_owned());
    cfg.media.audio = livecast_server::source::AudioSpec::File(file.to_owned());
    let server = rt
        .block_on(livecast_server::start(cfg))
        .expect("server starts");
    let url = format!("rtsp://{}/live", server.listening[0]);
    let json = file.with_extension("stats.json");
    let status = Command::new(env!("CARGO_BIN_EXE_livecast-player"))
        .args(["--headless", &url, "--duration", &seconds.to_string()])
        .arg("--stats-json")
        .arg(&json)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("the player binary was built by cargo for this test");
    server.shutdown();
    assert!(status.success(), "player exited with {status}");
    let text = std::fs::read_to_string(&json).expect("the player wrote --stats-json");
    serde_json::from_str(&text).expect("valid JSON")
}

fn plays_an_mp4_file(b_frames: u32) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mp4 = media_file::h264_aac_file(dir.path(), "talk.mp4", b_frames);
    let r = play_file(&mp4, 8);
    assert_eq!(r["video"]["width"], 400, "{r}");
    assert_eq!(r["video"]["height"], 224, "{r}");
    assert_eq!(r["video"]["decode_errors"], 0, "{r}");
    let frames = r["video"]["frames_decoded"].as_u64().expect("frames");
    let secs = r["duration_s"].as_f64().expect("duration")
        - r["first_frame_ms"].as_f64().unwrap_or(0.0) / 1000.0;
    // 25 frames a second (not the encoder's 30), across the file's loop at 5 s.
    let fps = frames as f64 / secs;
    assert!(
        (22.0..=28.0).contains(&fps),
        "{b_frames} B-frames: {frames} frames in {secs:.1} s: {r}"
    );
    // Each picture shown at its own time: with B-frames at least half (shown together with
    // the reference before them, only one in three was).
    let shown = r["video"]["frames_shown"].as_u64().expect("frames shown");
    assert!(
        shown * 2 >= frames,
        "{b_frames} B-frames: {shown} of {frames} pictures shown: {r}"
    );
    let audio = r["audio"]["frames_decoded"].as_u64().expect("audio frames");
    assert!(audio >= 300, "only {audio} Opus frames decoded: {r}");
}

/// `--video file:X --audio file:X` loop together: a 2 s MP4 with a white frame and a beep at
/// the start of every second (AAC makes its audio track longer than its video) stays in sync
/// over 8 loops. Looping each on its own length drifted 46 ms a loop (a median offset of
/// -259 ms over 12 loops); locked, -47 ms, and with the MP4 edit list's AAC priming left
/// out, -8 ms.
#[test]
fn a_files_audio_and_video_loop_together() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("flash-beep.mp4");
    let made = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-f", "lavfi", "-i"])
        .arg("color=c=black:s=320x240:r=25,drawbox=c=white:t=fill:enable='lt(mod(t,1),0.04)'")
        .args(["-f", "lavfi", "-i"])
        .arg("sine=f=1000:r=44100,volume='if(lt(mod(t,1),0.05),4,0)':eval=frame")
        .args(["-t", "2", "-c:v", "libx264", "-bf", "0", "-g", "25"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac"])
        .arg(&file)
        .output()
        .expect("ffmpeg");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let r = play_file(&file, 16);
    let pairs = r["av_pairs"].as_u64().unwrap_or(0);
    assert!(pairs >= 10, "flashes and beeps paired: {pairs}: {r}");
    let offset = r["av_offset_ms"].as_f64().expect("an A/V offset");
    assert!(
        offset.abs() < 60.0,
        "A/V offset {offset} ms after 8 loops: {r}"
    );
}
