//! The headless player receives SRTP over UDP from livecast-server's RTSPS port (in process,
//! a self-signed certificate): with `--transport udp` and by default it decodes video and
//! audio, its report says SRTP, and a tcpdump capture of the server's UDP ports shows neither the
//! stream's SPS (which a plain RTP capture shows) nor the player's RTCP CNAME in clear.
//! `--transport tcp` keeps the media interleaved in TLS.

// Shared with the server's tests; this test reads UDP only.
mod net_common;
#[allow(dead_code)]
#[path = "../../server/tests/common/pcap.rs"]
mod pcap;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use livecast_net::tls::ServerTls;
use net_common::LivecastServer;
use pcap::{capture, contains, payloads, stop, Proto};

/// The server (test card and tone, 320x240) with RTSPS on a free port too; the server, its
/// plain and RTSPS addresses.
fn start_server() -> (LivecastServer, SocketAddr, SocketAddr) {
    let mut server = LivecastServer::start(0);
    let (cert, key) = livecast_server::tls::generate().expect("a certificate");
    let tls = ServerTls::from_pem(cert.as_bytes(), key.as_bytes()).expect("usable");
    let secure = server.serve_tls("127.0.0.1:0".parse().expect("addr"), tls.config);
    let plain = server.addr();
    (server, plain, secure)
}

/// The SPS of the plain port's description (DESCRIBE by hand, one request).
fn sps(plain: SocketAddr) -> Vec<u8> {
    let mut s = TcpStream::connect(plain).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        s,
        "DESCRIBE rtsp://{plain}/live RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n"
    )
    .expect("write");
    let mut text = Vec::new();
    let mut b = [0u8; 4096];
    let sdp = loop {
        let n = s.read(&mut b).expect("the answer");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&text));
        text.extend_from_slice(&b[..n]);
        let t = String::from_utf8_lossy(&text).into_owned();
        if let Some((_, body)) = t.split_once("\r\n\r\n") {
            if body.contains("m=audio") && body.ends_with("\r\n") {
                break livecast_proto::sdp::parse(body).expect("an SDP");
            }
        }
    };
    let video = sdp
        .media
        .iter()
        .find(|m| m.media == "video")
        .expect("video");
    let fmtp = video.fmtp(96).expect("fmtp 96");
    livecast_proto::codec::h264::sprop_sps_pps(&fmtp)
        .0
        .expect("an SPS in sprop-parameter-sets")
}

/// Runs the headless player on `url` for 3 s (a fresh data folder, so the certificate is
/// new to it) while tcpdump captures the loopback's UDP: its report and stderr, and the UDP
/// payloads.
fn play_captured(
    url: &str,
    ports: &[u16],
    dir: &Path,
    extra: &[&str],
) -> (serde_json::Value, String, Vec<Vec<u8>>) {
    let json = dir.join("stats.json");
    let file = dir.join("udp.pcap");
    let home = dir.join("home");
    // This server's media only (other programs on the machine may stream over loopback).
    let ports: Vec<String> = ports.iter().map(|p| format!("port {p}")).collect();
    let filter = format!("udp and ({})", ports.join(" or "));
    let tcpdump = capture(&file, &[filter.as_str()]);
    let out = Command::new(env!("CARGO_BIN_EXE_livecast-player"))
        .args(["--headless", "--no-audio", "--duration", "3"])
        .arg("--stats-json")
        .arg(&json)
        .args(extra)
        .arg(url)
        .env("XDG_DATA_HOME", &home)
        .stdin(Stdio::null())
        .output()
        .expect("the player binary was built by cargo for this test");
    stop(tcpdump);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    let report = std::fs::read_to_string(&json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| panic!("no report: {err}"));
    let pcap = std::fs::read(&file).expect("tcpdump wrote the capture");
    (report, err, payloads(&pcap, Proto::Udp))
}

#[test]
fn player_receives_srtp_over_udp_on_rtsps_and_nothing_goes_in_clear() {
    let (mut server, plain, tls) = start_server();
    let ports = server.udp_ports();
    let sps = sps(plain);
    assert!(sps.len() >= 4 && sps[0] & 0x1f == 7, "an SPS: {sps:02x?}");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let sub = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).expect("a folder");
        d
    };

    // The check can see clear media: plain RTP over UDP shows the SPS and our CNAME.
    let (report, err, clear) = play_captured(
        &format!("rtsp://{plain}/live"),
        &ports,
        &sub("plain"),
        &["--transport", "udp"],
    );
    assert_eq!(report["rtp"]["srtp"], false, "{err}");
    assert!(clear.iter().any(|p| contains(p, &sps)), "SPS in clear RTP");
    assert!(
        clear.iter().any(|p| contains(p, b"player-")),
        "CNAME in RTCP"
    );

    let url = format!("rtsps://{tls}/live");
    for (name, extra) in [("udp", &["--transport", "udp"][..]), ("auto", &[][..])] {
        let (report, err, udp) = play_captured(&url, &ports, &sub(name), extra);
        let video = report["video"]["frames_decoded"].as_u64().unwrap_or(0);
        let audio = report["audio"]["frames_decoded"].as_u64().unwrap_or(0);
        assert!(video >= 45 && audio >= 50, "{name}: {report} {err}");
        assert_eq!(report["rtp"]["srtp"], true, "{name}: {report}");
        assert_eq!(report["rtp"]["tcp"], false, "{name}: {report}");
        assert_eq!(report["rtp"]["srtp_rejected"], 0, "{name}: {report}");
        let bytes: usize = udp.iter().map(Vec::len).sum();
        assert!(bytes > 50_000, "{name}: {bytes} bytes of UDP");
        assert!(
            !udp.iter().any(|p| contains(p, &sps)),
            "{name}: the SPS went in clear"
        );
        assert!(
            !udp.iter().any(|p| contains(p, b"player-")),
            "{name}: our RTCP went in clear"
        );
    }

    // --transport tcp: interleaved in TLS, nothing over UDP.
    let (report, err, udp) = play_captured(&url, &ports, &sub("tcp"), &["--transport", "tcp"]);
    let video = report["video"]["frames_decoded"].as_u64().unwrap_or(0);
    assert!(video >= 45, "{report} {err}");
    assert_eq!(report["rtp"]["tcp"], true);
    assert_eq!(report["rtp"]["srtp"], false);
    assert!(!udp.iter().any(|p| contains(p, &sps)));
    server.stop();
}
