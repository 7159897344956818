//! Files as sources, end to end: `--audio file:` with compressed audio (an MP3 and the AAC
//! track of an MP4 made by ffmpeg at test time) is decoded, re-encoded to Opus and streamed;
//! ffmpeg reads it back and hears the tone, not silence.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{run_peer, ServerProc};

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

#[test]
fn an_audio_file_without_audio_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("picture.mkv");
    let (ok, _, err) = run_peer(
        Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc=duration=1:size=64x48",
            ])
            .args(["-c:v", "ffv1"])
            .arg(&video),
        Duration::from_secs(60),
    );
    assert!(ok, "ffmpeg: {err}");
    let out = Command::new(env!("CARGO_BIN_EXE_livecast-server"))
        .args([
            "--no-auth",
            "--tls-listen",
            "off",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--video", "testsrc", "--captions", "off", "--audio"])
        .arg(format!("file:{}", video.display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("picture.mkv") && stderr.contains("no audio track"),
        "{stderr}"
    );
}
