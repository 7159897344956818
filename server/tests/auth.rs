//! Access control end to end: the real server binary with a users file, against the real peer
//! programs (ffprobe, ffmpeg, GStreamer rtspsrc, mpv) and raw RTSP connections for the wrong
//! passwords (from 127.0.0.1 and 127.0.0.2, standing for two addresses).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ffmpeg_video_frames, gst_video_frames, run_peer, ServerProc};
use livecast_proto::rtsp::auth::{preferred_challenge, Authorization, DigestCredentials};
use livecast_proto::rtsp::{
    parse, Header as _, Limits, Message, Method, Parsed, Request, Response,
};
use livecast_server::users::Users;

const SMALL: [&str; 6] = ["--size", "320x240", "--captions", "off", "--fps", "30"];

/// A server with `users` (name, password) in a users file of its own.
fn server_with(users: &[(&str, &str)]) -> (ServerProc, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("users");
    let mut u = Users::default();
    for (name, pw) in users {
        u.set(name, pw, None, true).expect("a valid user");
    }
    u.save(&path).expect("write the users file");
    let p = path.to_str().expect("UTF-8 path").to_owned();
    let mut args = vec!["--users", p.as_str()];
    args.extend(SMALL);
    (ServerProc::start(&args), dir)
}

/// Connects to `server` from `source` (a loopback address).
fn connect_from(source: &str, server: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for one socket");
    let s = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.bind(format!("{source}:0").parse().expect("an address"))?;
        sock.connect(server).await
    });
    let s = s.expect("connect").into_std().expect("a std socket");
    s.set_nonblocking(false).expect("blocking");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// Sends `req` and reads one response (`None`: the connection closed first).
fn exchange(s: &mut TcpStream, req: &Request, buf: &mut Vec<u8>) -> Option<Response> {
    let mut out = Vec::new();
    req.write_to(&mut out);
    s.write_all(&out).ok()?;
    read_response(s, buf)
}

fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Response> {
    loop {
        if let Ok(Parsed::Complete { message, consumed }) = parse(buf, &Limits::default()) {
            buf.drain(..consumed);
            if let Message::Response(r) = message {
                return Some(r);
            }
            continue;
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// DESCRIBE without credentials, then with `user`/`password` answering the MD5 challenge (as
/// ffmpeg does): the second response (`None` if the connection closed), and how long it took.
fn describe_as(
    s: &mut TcpStream,
    url: &str,
    user: &str,
    password: &str,
) -> (Option<Response>, Duration) {
    let mut buf = Vec::new();
    let req = Request::new(Method::Describe, url).header("CSeq", "1");
    let r = exchange(s, &req, &mut buf).expect("a 401");
    assert_eq!(r.status.0, 401, "{r:?}");
    let values: Vec<&str> = r.headers.get_all("WWW-Authenticate").collect();
    assert_eq!(values.len(), 2, "{r:?}");
    let md5 = preferred_challenge(values.last().copied()).expect("an MD5 challenge");
    let d = DigestCredentials::answer(&md5, user, password, "DESCRIBE", url, "c")
        .expect("MD5 is computed");
    let req = Request::new(Method::Describe, url)
        .header("CSeq", "2")
        .header("Authorization", Authorization::Digest(d).to_value());
    let t = Instant::now();
    let r = exchange(s, &req, &mut buf);
    (r, t.elapsed())
}

/// After the server closed: reading gives end of file (not a timeout).
fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    matches!(s.read(&mut b), Ok(0))
}

#[test]
fn first_start_prints_the_url_with_credentials_and_the_players_use_it() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("data/users");
    let p = path.to_str().expect("UTF-8 path").to_owned();
    let mut args = vec!["--users", p.as_str()];
    args.extend(SMALL);
    let server = ServerProc::start(&args);
    // The printed URL carries a generated password; the file holds no password, mode 0600.
    let url = server
        .banner
        .iter()
        .find_map(|l| {
            l.trim()
                .strip_prefix("rtsp://viewer:")
                .map(|r| format!("rtsp://viewer:{r}"))
        })
        .unwrap_or_else(|| panic!("no URL with credentials in {:?}", server.banner));
    let password = url["rtsp://viewer:".len()..url.find('@').expect("an @")].to_owned();
    assert!(password.len() >= 22 && password.bytes().all(|b| b.is_ascii_alphanumeric()));
    let text = std::fs::read_to_string(&path).expect("the users file was written");
    assert!(!text.contains(&password));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path)
        .expect("users file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // ffprobe without credentials: 401, nothing plays.
    let (ok, out, err) = run_peer(
        Command::new("ffprobe").args(["-v", "error", "-show_streams", &server.url()]),
        Duration::from_secs(30),
    );
    assert!(!ok && !out.contains("codec_name"), "{out}");
    assert!(err.contains("401"), "ffprobe says why: {err}");

    // ffprobe with the printed URL.
    let (ok, out, err) = run_peer(
        Command::new("ffprobe").args(["-v", "error", "-show_streams", &url]),
        Duration::from_secs(30),
    );
    assert!(ok && out.contains("codec_name=h264"), "{err}");

    // ffmpeg over UDP and TCP: two seconds of video decoded.
    for transport in ["udp", "tcp"] {
        let (frames, err) = ffmpeg_video_frames(&url, transport, 2);
        assert!(frames >= 40, "{transport}: {frames} frames; {err}");
    }

    // GStreamer rtspsrc with user-id / user-pw (MD5, no qop).
    let (video, err) = gst_video_frames(&format!(
        "location={} user-id=viewer user-pw={password} protocols=tcp",
        server.url()
    ));
    assert!(video >= 60, "GStreamer decoded {video} frames: {err}");

    // mpv with the URL.
    let (ok, out, err) = run_peer(
        Command::new("mpv").args([
            "--no-config",
            "--vo=null",
            "--ao=null",
            "--length=3",
            "--msg-level=all=info",
            &url,
        ]),
        Duration::from_secs(40),
    );
    let all = format!("{out}\n{err}");
    assert!(ok && all.contains("h264"), "mpv: {all}");
    assert!(!all.contains("Errors when loading file"), "mpv: {all}");

    // The live555 library's client (upstream VLC's RTSP stack) with the credentials in its
    // URL: Digest MD5 from our SHA-256-then-MD5 challenges, no qop.
    let (ok, out, err) = run_peer(
        Command::new(common::live555_client()).args(["--seconds", "3", &url]),
        Duration::from_secs(60),
    );
    assert!(ok, "live555 client failed: {out}{err}");
    assert!(
        common::live555_frames(&out, "video/H264") >= 40,
        "live555 decoded little: {out}"
    );
}

#[test]
fn a_wrong_password_is_refused_after_a_delay_and_closed_while_another_viewer_keeps_playing() {
    let (server, _dir) = server_with(&[("viewer", "right-password")]);
    let url = server.url();
    let addr: SocketAddr = format!("127.0.0.1:{}", server.port).parse().expect("addr");
    // A viewer watching 8 s over TCP all along.
    let good = format!(
        "rtsp://viewer:right-password@127.0.0.1:{}/live",
        server.port
    );
    let watcher = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-i",
            &good,
            "-t",
            "8",
            "-map",
            "0:v",
            "-f",
            "framecrc",
            "-",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg is installed");
    std::thread::sleep(Duration::from_secs(1));
    let mut delays = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from("127.0.0.1", addr);
        let (r, took) = describe_as(&mut s, &url, "viewer", "wrong-password");
        let r = r.expect("a 401 before the close");
        assert_eq!(r.status.0, 401);
        assert_eq!(r.headers.get("Connection"), Some("close"));
        assert!(took <= Duration::from_millis(4500), "{took:?}");
        assert!(closed(&mut s), "the connection is closed after the 401");
        delays.push(took);
    }
    let out = watcher.wait_with_output().expect("ffmpeg ends");
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    assert!(
        out.status.success() && frames >= 8 * 30 - 15,
        "the other viewer got {frames} frames in 8 s: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The right password on a fresh connection plays at once.
    let mut s = connect_from("127.0.0.1", addr);
    let (r, took) = describe_as(&mut s, &url, "viewer", "right-password");
    assert_eq!(r.expect("an answer").status.0, 200);
    assert!(took < Duration::from_secs(1));
    eprintln!("wrong-password delays: {delays:?}");
}

#[test]
fn twenty_wrong_attempts_lock_out_that_address_and_no_other() {
    let (server, _dir) = server_with(&[("viewer", "right-password")]);
    let url = server.url();
    let addr: SocketAddr = format!("127.0.0.1:{}", server.port).parse().expect("addr");
    // 20 wrong attempts from 127.0.0.2, in parallel (each is answered within 4 s).
    let attempts: Vec<_> = (0..20)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut s = connect_from("127.0.0.2", addr);
                let (r, _) = describe_as(&mut s, &url, "viewer", &format!("guess-{i}"));
                r.map(|r| r.status.0)
            })
        })
        .collect();
    for a in attempts {
        assert_eq!(a.join().expect("attempt thread"), Some(401));
    }
    // 127.0.0.2 now gets 403 for anything, even OPTIONS, and the connection closes.
    let mut s = connect_from("127.0.0.2", addr);
    let mut buf = Vec::new();
    let req = Request::new(Method::Options, "*").header("CSeq", "1");
    let r = exchange(&mut s, &req, &mut buf).expect("an answer");
    assert_eq!(r.status.0, 403);
    assert!(closed(&mut s));
    // 127.0.0.1 is not affected.
    let mut s = connect_from("127.0.0.1", addr);
    let (r, _) = describe_as(&mut s, &url, "viewer", "right-password");
    assert_eq!(r.expect("an answer").status.0, 200);
}
