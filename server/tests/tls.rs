//! RTSPS end to end: the real server binary with its generated certificate, played over
//! `rtsps://` by ffprobe, ffmpeg, GStreamer rtspsrc and mpv; a tcpdump capture of the TLS port
//! showing nothing in clear; plain UDP refused on the TLS port; garbage there disturbing no one.

mod common;

use std::io::{Read as _, Write as _};
use std::process::Command;
use std::time::Duration;

use common::pcap::{capture, contains, payloads, stop, Proto};
use common::{ffmpeg_video_frames, free_port, gst_video_frames, run_peer, ServerProc};
use livecast_loadgen::RtspConn;
use livecast_proto::rtsp::{Method, Request, Transport};
use livecast_proto::trust::Fingerprint;

const SMALL: [&str; 6] = ["--size", "320x240", "--captions", "off", "--fps", "30"];

/// The server with RTSPS on a free loopback port, its data folder in `data_home`.
fn tls_server(data_home: &std::path::Path) -> (ServerProc, u16) {
    let tls_port = free_port();
    let listen = format!("127.0.0.1:{tls_port}");
    let mut args = vec!["--tls-listen", listen.as_str()];
    args.extend(SMALL);
    (ServerProc::start_with_data_home(&args, data_home), tls_port)
}

/// The fingerprint the banner printed.
fn banner_fingerprint(server: &ServerProc) -> (Fingerprint, String) {
    let line = server
        .banner
        .iter()
        .find_map(|l| l.strip_prefix("rtsps:// certificate SHA-256 "))
        .unwrap_or_else(|| panic!("no fingerprint line in {:?}", server.banner));
    let (fp, whence) = line.split_once(' ').expect("fingerprint (where)");
    (fp.parse().expect("a fingerprint"), whence.to_owned())
}

/// ffmpeg decoding `seconds` of video from `url` (TCP; rtsps is TCP anyway): frames seen.
fn ffmpeg_frames(url: &str, seconds: u32) -> (usize, String) {
    ffmpeg_video_frames(url, "tcp", seconds)
}

#[test]
fn a_generated_certificate_is_kept_and_ffprobe_ffmpeg_gstreamer_and_mpv_play_rtsps() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let (server, tls_port) = tls_server(data.path());
    let url = format!("rtsps://127.0.0.1:{tls_port}/live");
    assert!(
        server.banner.iter().any(|l| l.trim() == url),
        "the banner lists {url}: {:?}",
        server.banner
    );
    // The printed fingerprint is the certificate file's, and the key is private.
    let dir = data.path().join("livecast");
    let cert = dir.join("rtsps-cert.pem");
    let (fp, whence) = banner_fingerprint(&server);
    assert_eq!(whence, format!("(self-signed, new in {})", cert.display()));
    let pem = std::fs::read(&cert).expect("the certificate was kept");
    let der = livecast_net::tls::certificates_from_pem(&pem).expect("a PEM certificate");
    assert_eq!(Fingerprint::of(&der[0]), fp);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(dir.join("rtsps-key.pem"))
        .expect("the key was kept")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let (ok, out, err) = run_peer(
        Command::new("ffprobe").args(["-v", "error", "-show_streams", &url]),
        Duration::from_secs(30),
    );
    assert!(
        ok && out.contains("codec_name=h264") && out.contains("codec_name=opus"),
        "ffprobe: {out} {err}"
    );
    let (frames, err) = ffmpeg_frames(&url, 2);
    assert!(
        frames >= 40,
        "ffmpeg decoded {frames} frames over rtsps: {err}"
    );

    // GStreamer rtspsrc: a self-signed certificate needs tls-validation-flags=0.
    let (video, err) = gst_video_frames(&format!("location={url} tls-validation-flags=0"));
    assert!(
        video >= 60,
        "GStreamer decoded {video} frames over rtsps: {err}"
    );

    // mpv (ffmpeg's demuxer inside).
    let (ok, out, err) = run_peer(
        Command::new("mpv").args([
            "--no-config",
            "--vo=null",
            "--ao=null",
            "--length=2",
            "--msg-level=all=info",
            &url,
        ]),
        Duration::from_secs(40),
    );
    let all = format!("{out}\n{err}");
    assert!(ok && all.contains("(h264 320x240"), "mpv: {all}");

    // A restart keeps the certificate, so viewers who pinned it still trust the server.
    drop(server);
    let (server, _) = tls_server(data.path());
    assert_eq!(
        banner_fingerprint(&server),
        (fp, format!("(self-signed, {})", cert.display()))
    );
}

/// The SSRC of each track, from SETUPs on the plain port.
fn ssrcs(plain_url: &str) -> Vec<u32> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let mut c = RtspConn::connect(plain_url).await.expect("connect");
        let mut v = Vec::new();
        for track in 0..2 {
            let transport = format!(
                "RTP/AVP/TCP;unicast;interleaved={}-{}",
                2 * track,
                2 * track + 1
            );
            let setup = Request::new(Method::Setup, format!("{plain_url}/trackID={track}"))
                .header("Transport", transport);
            let r = c.request(setup).await.expect("SETUP");
            let t = r.headers.get_typed::<Transport>().expect("Transport");
            v.push(t.expect("Transport").0[0].ssrc.expect("ssrc="));
        }
        v
    })
}

/// What a capture of `port` holds while ffmpeg plays `url` for `seconds`: the TCP payloads,
/// and the frames ffmpeg decoded.
fn captured_while_playing(
    port: u16,
    url: &str,
    seconds: u32,
    dir: &std::path::Path,
) -> (Vec<Vec<u8>>, usize) {
    let file = dir.join(format!("{port}.pcap"));
    let tcpdump = capture(&file, &["tcp", "port", &port.to_string()]);
    let (frames, err) = ffmpeg_frames(url, seconds);
    std::thread::sleep(Duration::from_millis(300));
    stop(tcpdump);
    assert!(
        frames >= seconds as usize * 20,
        "ffmpeg: {frames} frames; {err}"
    );
    let pcap = std::fs::read(&file).expect("tcpdump wrote the capture");
    (payloads(&pcap, Proto::Tcp), frames)
}

#[test]
fn a_capture_of_rtsps_shows_no_rtsp_text_and_no_rtp() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let (server, tls_port) = tls_server(data.path());
    let ssrcs = ssrcs(&server.url());
    let markers: Vec<(String, Vec<u8>)> = [
        ("RTSP/1.0".to_owned(), b"RTSP/1.0".to_vec()),
        ("DESCRIBE".to_owned(), b"DESCRIBE".to_vec()),
        ("the SDP".to_owned(), b"m=video".to_vec()),
    ]
    .into_iter()
    .chain(
        ssrcs
            .iter()
            .map(|s| (format!("RTP of SSRC {s:08x}"), s.to_be_bytes().to_vec())),
    )
    .collect();
    let found = |payloads: &[Vec<u8>]| -> Vec<String> {
        markers
            .iter()
            .filter(|(_, m)| payloads.iter().any(|p| contains(p, m)))
            .map(|(name, _)| name.clone())
            .collect()
    };
    // The same capture of plain RTSP over TCP finds every marker: the check can see them.
    let (plain, _) = captured_while_playing(server.port, &server.url(), 1, data.path());
    let names: Vec<String> = markers.iter().map(|m| m.0.clone()).collect();
    assert_eq!(found(&plain), names);
    // Over RTSPS: none, in three seconds of media.
    let url = format!("rtsps://127.0.0.1:{tls_port}/live");
    let (tls, frames) = captured_while_playing(tls_port, &url, 3, data.path());
    let bytes: usize = tls.iter().map(Vec::len).sum();
    assert!(bytes > 30_000, "{bytes} bytes captured for {frames} frames");
    assert_eq!(found(&tls), Vec::<String>::new());
    // What went instead: TLS application data records (0x17, with the 0x0303 version that
    // TLS 1.3 keeps on the wire).
    assert!(
        tls.iter().any(|p| p.starts_with(&[0x17, 0x03, 0x03])),
        "TLS application data records"
    );
}

#[test]
fn plain_udp_on_the_tls_port_is_refused_and_garbage_disturbs_no_one() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let (_server, tls_port) = tls_server(data.path());
    let url = format!("rtsps://127.0.0.1:{tls_port}/live");
    // A viewer over rtsps all along.
    let watcher = std::thread::spawn({
        let url = url.clone();
        move || ffmpeg_frames(&url, 6)
    });
    std::thread::sleep(Duration::from_secs(1));
    // Clear text on the TLS port: the handshake fails and the connection closes.
    for garbage in [
        &b"DESCRIBE rtsp://127.0.0.1/live RTSP/1.0\r\nCSeq: 1\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0][..],
    ] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", tls_port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(12)))
            .expect("timeout");
        s.write_all(garbage).expect("write");
        let mut b = [0u8; 512];
        let mut got = Vec::new();
        while let Ok(n @ 1..) = s.read(&mut b) {
            got.extend_from_slice(&b[..n]);
        }
        assert!(!contains(&got, b"RTSP/1.0"), "no RTSP answer in clear");
    }
    // A TLS client asking for plain UDP gets 461; interleaved is fine.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let mut c = RtspConn::connect(&url).await.expect("TLS connect");
        let setup = |t: &str| {
            Request::new(Method::Setup, format!("{url}/trackID=0")).header("Transport", t)
        };
        let r = c
            .request(setup("RTP/AVP;unicast;client_port=5000-5001"))
            .await
            .expect("SETUP");
        assert_eq!(r.status.0, 461, "{r:?}");
        let r = c
            .request(setup("RTP/AVP/TCP;unicast;interleaved=0-1"))
            .await
            .expect("SETUP");
        assert_eq!(r.status.0, 200, "{r:?}");
    });
    let (frames, err) = watcher.join().expect("the watcher");
    assert!(
        frames >= 6 * 30 - 15,
        "the rtsps viewer got {frames} frames in 12 s: {err}"
    );
}
