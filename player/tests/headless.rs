//! The headless player, end to end, against the real livecast-server (in-process) and
//! GStreamer's RTSP server: what a script or benchmark would run.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use livecast_server::source::VideoConfig;
use livecast_server::{RunningServer, ServerConfig};

/// Each test runs a 720p30 encoder and a decoding player: one at a time on a 2-core machine.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

fn server_config(listen: SocketAddr) -> ServerConfig {
    let hd = VideoConfig {
        width: 1280,
        height: 720,
        fps: 30,
    };
    ServerConfig::test_sources(listen, hd, 2_000_000)
}

/// Starts our server on its own runtime (so the test can stop it like a crash would).
fn start_server(listen: SocketAddr) -> (tokio::runtime::Runtime, RunningServer) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let server = rt
        .block_on(livecast_server::start(server_config(listen)))
        .expect("server starts on test sources");
    (rt, server)
}

fn player(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_livecast-player"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the player binary was built by cargo for this test")
}

fn report(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("the player wrote --stats-json");
    serde_json::from_str(&text).expect("valid JSON")
}

/// Plays `source` headless for `seconds` (with `--transport` when given) and returns its
/// `--stats-json` report, written to `json`.
fn play_headless(
    source: &str,
    transport: Option<&str>,
    seconds: u32,
    json: &Path,
) -> serde_json::Value {
    let seconds = seconds.to_string();
    let mut args = vec!["--headless", source, "--duration", &seconds];
    if let Some(t) = transport {
        args.extend(["--transport", t]);
    }
    args.extend(["--stats-json", json.to_str().expect("utf-8 path")]);
    let status = player(&args).wait().expect("player runs");
    assert!(
        status.success(),
        "player on {source} over {transport:?} exited with {status}"
    );
    report(json)
}

fn headless_against_our_server(transport: &str) {
    let _one = one_at_a_time();
    let (_rt, server) = start_server("127.0.0.1:0".parse().expect("address"));
    let url = format!("rtsp://{}/live", server.listening[0]);
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("stats.json");
    let r = play_headless(&url, Some(transport), 10, &json);
    // Frames shown: one per captured frame while live (decoded can be more: a jump back to
    // live re-decodes from a keyframe).
    let shown = r["video"]["frames_shown"].as_u64().expect("frames_shown");
    let decoded = r["video"]["frames_decoded"]
        .as_u64()
        .expect("frames_decoded");
    assert!(
        (255..=310).contains(&shown) && decoded >= shown,
        "about 300 frames in 10 s over {transport}, shown {shown}, decoded {decoded}: {r}"
    );
    assert_eq!(r["video"]["width"], 1280);
    assert_eq!(r["video"]["height"], 720);
    let audio = r["audio"]["frames_decoded"].as_u64().expect("audio frames");
    assert!(audio > 400, "about 500 Opus frames, got {audio}: {r}");
    assert_eq!(r["rtp"]["packets_lost"], 0, "no loss on loopback: {r}");
    assert_eq!(r["rtp"]["tcp"], transport == "tcp");
    let av = r["av_offset_ms"]
        .as_f64()
        .expect("av offset measured on the test card");
    assert!(av.abs() < 40.0, "|av_offset_ms| = {av} over {transport}");
    assert!(
        r["av_pairs"].as_u64().unwrap_or(0) >= 5,
        "flash/beep pairs: {r}"
    );
    let first = r["first_frame_ms"].as_f64().expect("first frame");
    assert!(first < 2000.0, "first picture after {first} ms");
    assert!(
        r["latency_ms"]["p50"].as_f64().is_some(),
        "latency measured: {r}"
    );
    assert_eq!(r["captions"], serde_json::json!([]));
    server.shutdown();
}

#[test]
fn headless_plays_our_server_over_udp() {
    headless_against_our_server("udp");
}

#[test]
fn headless_plays_our_server_over_tcp() {
    headless_against_our_server("tcp");
}

#[test]
fn recording_survives_a_killed_player_and_plays_back() {
    let _one = one_at_a_time();
    let (_rt, server) = start_server("127.0.0.1:0".parse().expect("address"));
    let url = format!("rtsp://{}/live", server.listening[0]);
    let dir = tempfile::tempdir().expect("temp dir");
    let rec = dir.path().join("session.lcrec");
    let mut p = player(&["--headless", &url, "--record", rec.to_str().expect("utf-8")]);
    std::thread::sleep(Duration::from_secs(5));
    p.kill().expect("kill the player mid-session");
    let _ = p.wait();
    server.shutdown();
    assert!(rec.exists(), "the recording is kept");
    // The next start opens the recording and plays it from the start.
    let json = dir.path().join("replay.json");
    let r = play_headless(rec.to_str().expect("utf-8"), None, 3, &json);
    let frames = r["video"]["frames_decoded"].as_u64().unwrap_or(0);
    assert!(
        frames >= 60,
        "replayed about 3 s of video, got {frames}: {r}"
    );
    assert!(r["recorded_s"].as_f64().unwrap_or(0.0) > 3.0, "{r}");
}

#[test]
fn plays_gstreamer_rtsp_server_over_udp_and_tcp() {
    let _one = one_at_a_time();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/gst-rtsp-server.py");
    let mut gst = Command::new("/usr/bin/python3")
        .args([script, "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("Debian's python3 with python3-gi (installed by the test command)");
    {
        use std::io::BufRead;
        let out = gst.stdout.take().expect("piped");
        let mut line = String::new();
        std::io::BufReader::new(out)
            .read_line(&mut line)
            .expect("the reference server prints 'ready'");
        assert!(line.starts_with("ready"), "gst-rtsp-server: {line}");
    }
    let url = format!("rtsp://127.0.0.1:{port}/live");
    let dir = tempfile::tempdir().expect("temp dir");
    for transport in ["udp", "tcp"] {
        let json = dir.path().join(format!("{transport}.json"));
        let r = play_headless(&url, Some(transport), 5, &json);
        let frames = r["video"]["frames_decoded"].as_u64().unwrap_or(0);
        let audio = r["audio"]["frames_decoded"].as_u64().unwrap_or(0);
        assert!(
            frames > 60,
            "GStreamer over {transport}: {frames} frames: {r}"
        );
        assert!(
            audio > 100,
            "GStreamer over {transport}: {audio} audio frames: {r}"
        );
        assert_eq!(r["video"]["width"], 1280);
    }
    let _ = gst.kill();
    let _ = gst.wait();
}
