//! The live555 library's RTSP client (the RTSP stack of upstream VLC builds, many cameras and
//! NVRs) against the real server: it plays over UDP and TCP (it gets plain `RTP/AVP`, since it
//! drops `RTP/AVPF` media), and answers Digest with the credentials of its URL. The client is
//! scripts/live555/live555-client.cpp, built on first use by scripts/build-live555-client.sh
//! from the library's sources on PyPI.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{live555_client, live555_frames as frames, run_peer, ServerProc};
use livecast_server::users::Users;

/// Runs the client on `url` for 3 s; returns its exit status and what it printed.
fn play(url: &str, tcp: bool) -> (bool, String) {
    let mut cmd = Command::new(live555_client());
    if tcp {
        cmd.arg("--tcp");
    }
    cmd.args(["--seconds", "3", url]);
    let (ok, out, err) = run_peer(&mut cmd, Duration::from_secs(30));
    (ok, format!("{out}{err}"))
}

/// Keyframes (IDR access units) counted for the video.
fn keyframes(report: &str) -> u32 {
    report
        .lines()
        .find(|l| l.starts_with("medium video/H264 "))
        .and_then(|l| l.rsplit_once("keyframes="))
        .and_then(|(_, n)| n.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn live555_plays_over_udp_and_tcp() {
    let server = ServerProc::start(&["--size", "320x240", "--captions", "off"]);
    for tcp in [false, true] {
        let (ok, report) = play(&server.url(), tcp);
        assert!(ok, "tcp={tcp}: {report}");
        // 3 s at 30 frames/s and 50 Opus packets/s, with room for a slow start.
        assert!(frames(&report, "video/H264") >= 60, "{report}");
        assert!(frames(&report, "audio/OPUS") >= 100, "{report}");
        // It starts at a keyframe and gets one a second after.
        assert!(keyframes(&report) >= 2, "{report}");
    }
}

#[test]
fn live555_answers_digest_from_its_url_and_a_wrong_password_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users");
    let mut users = Users::default();
    users.set("alice", "s3 cret", None, true).unwrap();
    users.save(&path).unwrap();
    let p = path.to_str().unwrap();
    let server = ServerProc::start(&["--users", p, "--size", "320x240", "--captions", "off"]);
    let port = server.port;
    let (ok, report) = play(
        &format!("rtsp://alice:s3%20cret@127.0.0.1:{port}/live"),
        false,
    );
    assert!(ok, "{report}");
    assert!(frames(&report, "video/H264") >= 60, "{report}");
    let (ok, report) = play(&format!("rtsp://alice:wrong@127.0.0.1:{port}/live"), false);
    assert!(!ok);
    assert!(report.contains("error: DESCRIBE: 401"), "{report}");
    let (ok, report) = play(&server.url(), false);
    assert!(!ok);
    assert!(report.contains("error: DESCRIBE: 401"), "{report}");
}
