//! Files as sources, end to end: `--audio file:` with compressed audio (an MP3 and the AAC
//! track of an MP4 made by ffmpeg at test time) is decoded, re-encoded to Opus and streamed;
//! ffmpeg reads it back and hears the tone, not silence. `--video file:` with an MP4 or MKV
//! streams its H.264 as it is (no encoder thread runs): ffprobe, ffmpeg and GStreamer see the
//! file's size and rate and decode every picture, across the loop; other codecs are a clear
//! error.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::media_file::h264_aac_file;
use common::{ffmpeg_video_frames, gst_video_frames, probe, run_peer, ServerProc};

/// A 3 s 440 Hz tone at half scale, encoded by ffmpeg into `name` with `args`.
fn tone(dir: &Path, name: &str, args: &[&str]) -> String {
    let path = dir.join(name);
    let (ok, _, err) = run_peer(
        Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg("sine=frequency=440:sample_rate=44100:duration=3,volume=4")
            .args(args)
            .arg(&path),
        Duration::from_secs(60),
    );
    assert!(ok, "ffmpeg: {err}");
    format!("file:{}", path.display())
}

/// The mean volume (dB) ffmpeg measures over 2 s of the stream's audio.
fn mean_volume(url: &str) -> f64 {
    let (ok, _, err) = run_peer(
        Command::new("ffmpeg")
            .args(["-v", "info", "-rtsp_transport", "tcp", "-i", url])
            .args([
                "-map",
                "0:a",
                "-t",
                "2",
                "-af",
                "volumedetect",
                "-f",
                "null",
                "-",
            ]),
        Duration::from_secs(60),
    );
    assert!(ok, "ffmpeg reading {url}: {err}");
    err.lines()
        .find_map(|l| l.split("mean_volume: ").nth(1))
        .and_then(|v| v.trim_end_matches(" dB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no volume in: {err}"))
}

#[test]
fn compressed_audio_files_are_streamed() {
    let dir = tempfile::tempdir().unwrap();
    for (name, args) in [
        ("tone.mp3", &["-c:a", "libmp3lame"][..]),
        ("tone.mp4", &["-c:a", "aac"][..]),
    ] {
        let audio = tone(dir.path(), name, args);
        let server =
            ServerProc::start(&["--audio", &audio, "--size", "320x240", "--captions", "off"]);
        let volume = mean_volume(&server.url());
        // A half-scale sine is about -9 dB mean; silence is -91.
        assert!(
            (-20.0..=-3.0).contains(&volume),
            "{name}: mean volume {volume} dB"
        );
    }
}

/// `dir/NAME`: one second of lavfi's test card as FFV1 in Matroska: video, but not H.264,
/// and no audio.
fn ffv1_clip(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let (ok, _, err) = run_peer(
        Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg("testsrc=duration=1:size=64x48")
            .args(["-c:v", "ffv1"])
            .arg(&path),
        Duration::from_secs(60),
    );
    assert!(ok, "ffmpeg: {err}");
    path
}

/// What the server says on standard error when it refuses to start with `sources` (its
/// `--video`/`--audio` options); panics if it started.
fn refused(sources: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_livecast-server"))
        .args([
            "--no-auth",
            "--tls-listen",
            "off",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--captions", "off"])
        .args(sources)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{sources:?}: started anyway: {err}");
    err
}

#[test]
fn an_audio_file_without_audio_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let video = ffv1_clip(dir.path(), "picture.mkv");
    let audio = format!("file:{}", video.display());
    let stderr = refused(&["--video", "testsrc", "--audio", &audio]);
    assert!(
        stderr.contains("picture.mkv") && stderr.contains("no audio track"),
        "{stderr}"
    );
}

/// The names of the server's threads.
fn threads(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// ffprobe's `codec_name,width,height,r_frame_rate` of the stream's video.
fn probe_video(url: &str) -> String {
    let streams = probe(url);
    let v = streams["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["codec_type"] == "video"))
        .unwrap_or_else(|| panic!("no video stream in {streams}"));
    let field = |k: &str| {
        v[k].as_str()
            .map_or_else(|| v[k].to_string(), str::to_owned)
    };
    ["codec_name", "width", "height", "r_frame_rate"]
        .map(field)
        .join(",")
}

#[test]
fn mp4_and_mkv_video_is_streamed_without_re_encoding() {
    let dir = tempfile::tempdir().unwrap();
    // B-frames, as in most files: sent in decode order, stamped with presentation times.
    let mp4 = h264_aac_file(dir.path(), "talk.mp4", 2);
    let mkv = dir.path().join("talk.mkv");
    let (ok, _, err) = run_peer(
        Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-i"])
            .arg(&mp4)
            .args(["-c", "copy"])
            .arg(&mkv),
        Duration::from_secs(60),
    );
    assert!(ok, "ffmpeg remux: {err}");
    for file in [&mp4, &mkv] {
        let spec = format!("file:{}", file.display());
        let server = ServerProc::start(&["--video", &spec, "--audio", &spec, "--captions", "off"]);
        let url = server.url();
        assert_eq!(probe_video(&url), "h264,400,224,25/1", "{spec}");
        let names = threads(server.pid);
        assert!(
            names.iter().any(|n| n == "video-passthru")
                && !names.iter().any(|n| n == "video-encoder"),
            "{spec}: threads {names:?}"
        );
        // 7 s crosses the 5 s file's end: the loop goes on without a decode error, and the
        // presentation times keep rising.
        let (frames, err) = ffmpeg_video_frames(&url, "tcp", 7);
        assert!(err.trim().is_empty(), "{spec}: ffmpeg said: {err}");
        assert!(
            frames >= 7 * 25 * 9 / 10,
            "{spec}: ffmpeg decoded {frames} pictures in 7 s"
        );
        let (frames, err) = gst_video_frames(&format!("location={url} protocols=tcp"));
        assert!(
            frames >= 3 * 25,
            "{spec}: GStreamer decoded {frames} pictures in 12 s: {err}"
        );
        let volume = mean_volume(&url);
        assert!(
            (-30.0..=-3.0).contains(&volume),
            "{spec}: mean volume {volume} dB"
        );
    }
}

#[test]
fn a_video_file_that_is_not_h264_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let ffv1 = ffv1_clip(dir.path(), "clip.mkv");
    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, "not a video at all").unwrap();
    for (file, says) in [(&ffv1, "video, not H.264"), (&text, "not a video file")] {
        let video = format!("file:{}", file.display());
        let err = refused(&["--audio", "tone", "--video", &video]);
        assert!(err.contains(says), "{}: said {err}", file.display());
        assert!(
            err.contains("Y4M") && !err.contains("panicked"),
            "{}: said {err}",
            file.display()
        );
    }
}
