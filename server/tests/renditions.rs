//! Renditions (issue 13): one server encodes the same pictures at several sizes, each served at
//! its own path, and every description lists them all.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{probe, run_peer, ServerProc};

/// The (width, height) of the one video stream ffprobe finds at `url`, and whether it found
/// Opus audio.
fn video_size(url: &str) -> ((u64, u64), bool) {
    let v = probe(url);
    let streams = v["streams"].as_array().expect("ffprobe lists streams");
    let videos: Vec<_> = streams
        .iter()
        .filter(|s| s["codec_type"] == "video")
        .collect();
    assert_eq!(videos.len(), 1, "{url}: {v}");
    let size = (
        videos[0]["width"].as_u64().unwrap(),
        videos[0]["height"].as_u64().unwrap(),
    );
    let opus = streams.iter().any(|s| s["codec_name"] == "opus");
    (size, opus)
}

/// The body of a DESCRIBE answer (one request on a fresh connection).
fn describe(port: u16, path: &str) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "DESCRIBE rtsp://127.0.0.1:{port}{path} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = c.read(&mut buf).expect("the server answers");
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .map_or(0, |l| l.trim().parse::<usize>().unwrap());
            if body.len() >= len {
                assert!(head.starts_with("RTSP/1.0 200"), "{head}");
                return body.to_string();
            }
        }
    }
}

#[test]
fn each_rendition_is_served_at_its_size_and_unknown_ones_are_404() {
    let server = ServerProc::start(&["--renditions", "320x240,160x120", "--captions", "off"]);
    assert!(
        server
            .banner
            .iter()
            .any(|l| l.starts_with("renditions: 320x240 at /live, 160x120 at /live/160x120")),
        "the banner lists the renditions: {:?}",
        server.banner
    );
    let base = server.url();
    assert_eq!(video_size(&base), ((320, 240), true));
    assert_eq!(video_size(&format!("{base}/160x120")), ((160, 120), true));

    let listed = "a=x-livecast-renditions:320x240 /live,160x120 /live/160x120\r\n";
    for path in ["/live", "/live/160x120"] {
        let sdp = describe(server.port, path);
        assert!(sdp.contains(listed), "{path}: {sdp}");
        assert_eq!(sdp.matches("m=video").count(), 1, "{path}: {sdp}");
    }

    for path in ["160x121", "320x240", "trackID=2", "160x120/trackID=2"] {
        let url = format!("{base}/{path}");
        let (ok, _, err) = run_peer(
            Command::new("ffprobe").args(["-v", "error", "-rtsp_transport", "tcp", &url]),
            Duration::from_secs(20),
        );
        assert!(!ok && err.contains("404"), "{url}: {err}");
    }
}

#[test]
fn without_renditions_nothing_is_listed() {
    let server = ServerProc::start(&["--size", "160x120", "--captions", "off"]);
    assert!(
        !server.banner.iter().any(|l| l.starts_with("renditions")),
        "{:?}",
        server.banner
    );
    let sdp = describe(server.port, "/live");
    assert!(!sdp.contains("x-livecast-renditions"), "{sdp}");
    let (ok, _, err) = run_peer(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            &format!("{}/160x120", server.url()),
        ]),
        Duration::from_secs(20),
    );
    assert!(!ok && err.contains("404"), "{err}");
}
