//! `--record`: the real server writes fragmented MP4 + WebVTT that ffprobe, ffmpeg and mpv
//! read: a 20 s stream with live captions (spoken English made with espeak-ng at test time),
//! a server killed with SIGKILL (its file plays to within 2 s of the kill) and files split by
//! `--record-segment`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::mp4_check::{decodes_cleanly, probe};
use common::ServerProc;

/// The files in `dir` ending in `ext`, by name (so by start time).
fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == ext));
    v.sort();
    v
}

/// Waits for the first recorded file to appear; returns when it did.
fn wait_for_file(dir: &Path) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(10);
    while files(dir, "mp4").is_empty() {
        assert!(
            Instant::now() < deadline,
            "no recording in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Instant::now()
}

/// The server at 320x240 recording to `rec`, with `extra` options.
fn record_to(rec: &Path, extra: &[&str]) -> ServerProc {
    let mut args = vec!["--size", "320x240", "--record", rec.to_str().unwrap()];
    args.extend_from_slice(extra);
    ServerProc::start(&args)
}

/// Ctrl-C, and waits for the server to finish its files and exit.
fn interrupt(server: &mut ServerProc) {
    let ok = Command::new("kill")
        .args(["-INT", &server.pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.alive() {
        assert!(
            Instant::now() < deadline,
            "the server did not exit on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn speech(dir: &Path) -> PathBuf {
    let raw = dir.join("raw.wav");
    let wav = dir.join("speech.wav");
    let ok = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&raw)
        .arg(
            "Live captions help viewers who cannot listen to the sound. \
             Please remember to close the door when you leave the room.",
        )
        .status()
        .expect("espeak-ng is installed (scripts/setup.sh)")
        .success();
    assert!(ok, "espeak-ng failed");
    let ok = Command::new("sox")
        .arg(&raw)
        .arg(&wav)
        .args(["pad", "1", "30"])
        .status()
        .expect("sox is installed (scripts/setup.sh)")
        .success();
    assert!(ok, "sox failed");
    wav
}

#[test]
fn twenty_seconds_with_captions() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    let wav = speech(dir.path());
    let audio = format!("file:{}", wav.display());
    let mut server = record_to(&rec, &["--audio", &audio, "--captions", "on"]);
    let started = wait_for_file(&rec);
    std::thread::sleep(Duration::from_secs(20).saturating_sub(started.elapsed()));
    let recorded = started.elapsed().as_secs_f64();
    interrupt(&mut server);

    let mp4 = files(&rec, "mp4");
    assert_eq!(mp4.len(), 1, "{mp4:?}");
    let name = mp4[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("live-20") && name.len() == "live-YYYYMMDD-HHMMSS.mp4".len());
    let streams = probe(&mp4[0]);
    let names: Vec<&str> = streams.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["h264", "opus", "mov_text"]);
    // The whole run, to within a fragment (the last one is written at the interrupt).
    for (codec, d) in &streams[..2] {
        assert!((d - recorded).abs() < 1.5, "{codec}: {d} s of {recorded} s");
    }
    assert!(streams[2].1 > 3.0, "captions {streams:?}");
    decodes_cleanly(&mp4[0]);
    let vtt = std::fs::read_to_string(mp4[0].with_extension("vtt")).unwrap();
    assert!(vtt.starts_with("WEBVTT\n\n"), "{vtt}");
    let lower = vtt.to_lowercase();
    assert!(
        lower.contains("captions") && lower.contains("door"),
        "the captions are in the .vtt: {vtt}"
    );
    let out = Command::new("mpv")
        .args(["--vo=null", "--ao=null", "--frames=60"])
        .arg(&mp4[0])
        .output()
        .expect("mpv is installed (scripts/setup.sh)");
    let all = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "mpv failed: {all}");
    assert!(all.contains("mov_text"), "mpv found the captions: {all}");
}

#[test]
fn killed_server_leaves_a_playable_file() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    let mut server = record_to(&rec, &["--captions", "off"]);
    let started = wait_for_file(&rec);
    std::thread::sleep(Duration::from_secs(8));
    let killed_at = started.elapsed().as_secs_f64();
    server.kill(); // SIGKILL
    let mp4 = files(&rec, "mp4");
    assert_eq!(mp4.len(), 1);
    let streams = probe(&mp4[0]);
    let names: Vec<&str> = streams.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["h264", "opus"]);
    for (codec, d) in &streams {
        assert!(
            *d > killed_at - 2.0 && *d <= killed_at + 0.1,
            "{codec}: {d} s, killed at {killed_at} s"
        );
    }
    decodes_cleanly(&mp4[0]);
}

#[test]
fn record_segment_splits_at_keyframes() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    let mut server = record_to(&rec, &["--captions", "off", "--record-segment", "3s"]);
    let started = wait_for_file(&rec);
    // Three whole files of 3 s and the start of a fourth (file names have whole seconds).
    std::thread::sleep(Duration::from_millis(10_500).saturating_sub(started.elapsed()));
    interrupt(&mut server);
    let mp4 = files(&rec, "mp4");
    // Four normally; three when the source had to skip frames on a loaded machine.
    assert!((3..=4).contains(&mp4.len()), "{mp4:?}");
    assert_eq!(files(&rec, "vtt").len(), mp4.len());
    for f in &mp4[..mp4.len() - 1] {
        let streams = probe(f);
        // An IDR every second: each whole file is 3 s of video, audio to within a frame.
        assert!((streams[0].1 - 3.0).abs() < 0.4, "{f:?}: {streams:?}");
        assert!(
            (streams[1].1 - streams[0].1).abs() < 0.05,
            "{f:?}: {streams:?}"
        );
        decodes_cleanly(f);
    }
}

/// A file with B-frames passed through (`--video file:`) is recorded in decode order with
/// composition offsets: ffmpeg decodes every picture, in rising presentation order.
#[test]
fn b_frames_are_recorded_with_composition_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    let talk = common::media_file::h264_aac_file(dir.path(), "talk.mp4", 2);
    let spec = format!("file:{}", talk.display());
    let mut server = ServerProc::start(&[
        "--video",
        &spec,
        "--audio",
        &spec,
        "--captions",
        "off",
        "--record",
        rec.to_str().unwrap(),
    ]);
    let started = wait_for_file(&rec);
    std::thread::sleep(Duration::from_secs(7).saturating_sub(started.elapsed()));
    let recorded = started.elapsed().as_secs_f64();
    interrupt(&mut server);
    let mp4 = files(&rec, "mp4");
    assert_eq!(mp4.len(), 1, "{mp4:?}");
    decodes_cleanly(&mp4[0]);
    // Every picture, shown in order: the presentation times ffmpeg gives its decoded frames.
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-show_entries"])
        .args(["frame=pts_time", "-of", "csv=p=0"])
        .arg(&mp4[0])
        .output()
        .unwrap();
    assert!(out.status.success());
    // One line per frame; the first field is the time (a frame with side data has more).
    let pts: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(',').next()?.trim().parse().ok())
        .collect();
    let expected = recorded * 25.0;
    assert!(
        pts.len() as f64 > expected - 40.0 && pts.len() as f64 <= expected + 5.0,
        "{} pictures in {recorded:.1} s",
        pts.len()
    );
    assert!(
        pts.windows(2).all(|w| w[1] > w[0]),
        "presentation times out of order: {pts:?}"
    );
}
