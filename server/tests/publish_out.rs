//! `--publish`: the real `livecast-server` pushing its stream into relays: ffmpeg's RTSP
//! listener (over TCP and UDP, into a Matroska file ffprobe then reads), and a strict stand-in
//! for MediaMTX that enforces the rules a MediaMTX-class engine applies to publishers, asks for
//! Digest credentials, and drops the connection to see the publisher come back.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, run_peer, ServerProc};
use livecast_proto::rtsp::auth::{ha1, Algorithm, Authorization};
use livecast_proto::rtsp::{
    parse, Header, Limits, Message, Parsed, Request, Response, StatusCode, Transport,
    WwwAuthenticate,
};
use livecast_proto::sdp;

/// ffmpeg's listener takes one publisher and copies 5 s of it into a file.
fn publish_into_ffmpeg(transport: &str) {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("relayed.mkv");
    let mut listener = Command::new("ffmpeg");
    listener
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-rtsp_flags",
            "listen",
        ])
        .args(["-i", &format!("rtsp://127.0.0.1:{port}/x")])
        .args(["-t", "5", "-c", "copy", "-y"])
        .arg(&out);
    let waiter = std::thread::spawn(move || run_peer(&mut listener, Duration::from_secs(60)));
    // ffmpeg's listener takes the first connection that comes, so it is not probed: its
    // socket is looked for in the kernel's table instead.
    let t0 = Instant::now();
    while !listening(port) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "ffmpeg never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let relay = format!("rtsp://127.0.0.1:{port}/x");
    let _server = ServerProc::start(&[
        "--captions",
        "off",
        "--publish",
        &relay,
        "--publish-transport",
        transport,
    ]);
    let (ok, _, err) = waiter.join().unwrap();
    assert!(ok, "ffmpeg's listener failed: {err}");
    assert_eq!(streams_of(&out), ["h264,1280,720", "opus"], "{transport}");
}

/// The streams of a media file as ffprobe lists them: `codec,width,height` or `codec`.
fn streams_of(file: &std::path::Path) -> Vec<String> {
    let mut probe = Command::new("ffprobe");
    probe
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
        ])
        .args(["-of", "csv=p=0"])
        .arg(file);
    let (ok, streams, err) = run_peer(&mut probe, Duration::from_secs(30));
    assert!(ok, "ffprobe {}: {err}", file.display());
    streams.lines().map(str::to_owned).collect()
}

/// Whether a TCP socket listens on loopback `port` (/proc/net/tcp, state 0A).
fn listening(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = format!("0100007F:{port:04X}");
    table.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"0A")
    })
}

#[test]
fn publishes_into_ffmpegs_listener_over_tcp() {
    publish_into_ffmpeg("tcp");
}

#[test]
fn publishes_into_ffmpegs_listener_over_udp() {
    publish_into_ffmpeg("udp");
}

const USER: &str = "cam";
const PASSWORD: &str = "pa ss";
const REALM: &str = "mediamtx";

/// Reads the next RTSP request from `s` (interleaved frames before it are skipped and
/// counted in `frames`), or `None` when the connection ends.
fn next_request(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    frames: &mut Vec<(u8, Vec<u8>)>,
) -> Option<Request> {
    loop {
        match parse(buf, &Limits::default()) {
            Ok(Parsed::Complete { message, consumed }) => {
                buf.drain(..consumed);
                match message {
                    Message::Request(r) => return Some(r),
                    Message::Data(f) => frames.push((f.channel, f.payload)),
                    Message::Response(_) => panic!("the publisher sent a response"),
                }
            }
            Ok(Parsed::Incomplete) => {
                let mut chunk = [0u8; 16384];
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            Err(e) => panic!("unparsable bytes from the publisher: {e}"),
        }
    }
}

fn respond(s: &mut TcpStream, req: &Request, status: u16, headers: &[(&str, String)]) {
    let mut r = Response::new(StatusCode(status));
    if let Ok(Some(c)) = req.cseq() {
        r = r.header("CSeq", c.to_string());
    }
    for (n, v) in headers {
        r = r.header(*n, v.as_str());
    }
    let mut b = Vec::new();
    r.write_to(&mut b);
    s.write_all(&b).unwrap();
}

/// Whether the RTP payload starts a keyframe: an SPS (alone or first in a STAP-A), or the
/// first fragment of an IDR slice.
fn starts_keyframe(rtp: &[u8]) -> bool {
    let Some(p) = rtp.get(12..) else { return false };
    match p.first().map(|b| b & 0x1f) {
        Some(7) => true,
        Some(24) => p.get(3).is_some_and(|b| b & 0x1f == 7),
        Some(28) => p.get(1).is_some_and(|b| b & 0x80 != 0 && b & 0x1f == 5),
        _ => false,
    }
}

/// What one publishing session looked like to the stand-in relay.
struct Session {
    violations: Vec<String>,
    /// RTP packets per announced medium, by interleaved channel.
    packets: Vec<(u8, Vec<u8>)>,
    media: Vec<String>,
}

/// Plays MediaMTX for one connection: Digest on ANNOUNCE, the publisher rules checked on
/// every request, then RTP read for `record_for`, then the connection is dropped.
fn serve_like_mediamtx(s: &mut TcpStream, record_for: Duration) -> Session {
    let mut v = Vec::new();
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let mut media: Vec<(String, Option<(u8, u8)>)> = Vec::new();
    let mut nonce_sent = false;
    let ha1 = ha1(&Algorithm::Md5, USER, REALM, PASSWORD).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    while let Some(req) = next_request(s, &mut buf, &mut frames) {
        let method = req.method.as_str().to_owned();
        if method != "OPTIONS" {
            let authorized = match req
                .headers
                .get(Authorization::NAME)
                .map(Authorization::parse)
            {
                Some(Ok(Authorization::Digest(d))) => d.username == USER && d.verify(&method, &ha1),
                _ => false,
            };
            if !authorized {
                if nonce_sent && req.headers.get(Authorization::NAME).is_some() {
                    v.push(format!("{method}: wrong credentials"));
                }
                nonce_sent = true;
                let ch = WwwAuthenticate::parse(&format!(
                    "Digest realm=\"{REALM}\", nonce=\"0123abcd\""
                ))
                .unwrap()
                .to_value();
                respond(s, &req, 401, &[("WWW-Authenticate", ch)]);
                continue;
            }
        }
        match method.as_str() {
            "OPTIONS" => respond(
                s,
                &req,
                200,
                &[("Public", "ANNOUNCE, SETUP, RECORD, TEARDOWN".into())],
            ),
            "ANNOUNCE" => {
                let base = req.uri.clone();
                if req.headers.get("Content-Type") != Some("application/sdp") {
                    v.push("ANNOUNCE without Content-Type: application/sdp".into());
                }
                let text = String::from_utf8_lossy(&req.body).into_owned();
                let desc = match sdp::parse(&text) {
                    Ok(d) => d,
                    Err(e) => {
                        v.push(format!("unparsable SDP: {e}"));
                        respond(s, &req, 400, &[]);
                        break;
                    }
                };
                for m in &desc.media {
                    let Some(control) = m.control() else {
                        v.push(format!("m={} without a=control", m.media));
                        continue;
                    };
                    if m.proto != "RTP/AVP" {
                        v.push(format!("m={} is {}, not RTP/AVP", m.media, m.proto));
                    }
                    let maps: Vec<String> = m
                        .payload_types()
                        .into_iter()
                        .filter_map(|pt| m.rtpmap(pt))
                        .map(|r| format!("{}/{}", r.encoding, r.clock_rate).to_ascii_lowercase())
                        .collect();
                    let fmtp = m.attribute("fmtp").unwrap_or("");
                    match m.media.as_str() {
                        "video" => {
                            if !maps.iter().any(|r| r == "h264/90000") {
                                v.push(format!("video is not H264/90000: {maps:?}"));
                            }
                            if !fmtp.contains("packetization-mode=1") {
                                v.push(format!("H.264 without packetization-mode=1: {fmtp}"));
                            }
                        }
                        "audio" => {
                            let opus = m
                                .payload_types()
                                .into_iter()
                                .filter_map(|pt| m.rtpmap(pt))
                                .any(|r| {
                                    r.encoding.eq_ignore_ascii_case("opus")
                                        && r.clock_rate == 48000
                                        && r.channels == Some(2)
                                });
                            if !opus {
                                v.push(format!("audio is not opus/48000/2: {maps:?}"));
                            }
                        }
                        "text" => {
                            if !maps.iter().any(|r| r == "t140/1000") {
                                v.push(format!("text without t140/1000: {maps:?}"));
                            }
                        }
                        other => v.push(format!("unexpected m={other}")),
                    }
                    media.push((livecast_proto::rtsp::url::resolve(&base, control), None));
                }
                respond(s, &req, 200, &[]);
            }
            "SETUP" => {
                let spec = req
                    .headers
                    .get_typed::<Transport>()
                    .ok()
                    .flatten()
                    .and_then(|t| t.0.into_iter().next());
                let Some(spec) = spec else {
                    v.push("SETUP without Transport".into());
                    respond(s, &req, 461, &[]);
                    continue;
                };
                if !spec
                    .mode
                    .as_deref()
                    .is_some_and(|m| m.trim_matches('"').eq_ignore_ascii_case("record"))
                {
                    v.push(format!("SETUP without mode=record: {:?}", spec.mode));
                }
                let Some(ch) = spec.interleaved else {
                    v.push("SETUP over UDP where TCP was asked for".into());
                    respond(s, &req, 461, &[]);
                    continue;
                };
                match media.iter_mut().find(|(u, _)| *u == req.uri) {
                    Some(m) => m.1 = Some(ch),
                    None => v.push(format!("SETUP of {} which was not announced", req.uri)),
                }
                let t = format!("RTP/AVP/TCP;unicast;interleaved={}-{}", ch.0, ch.1);
                respond(
                    s,
                    &req,
                    200,
                    &[("Session", "12345678;timeout=60".into()), ("Transport", t)],
                );
            }
            "RECORD" => {
                if media.is_empty() || media.iter().any(|(_, ch)| ch.is_none()) {
                    v.push("RECORD before every announced medium was set up".into());
                }
                if req.headers.get("Session") != Some("12345678") {
                    v.push(format!(
                        "RECORD with session {:?}",
                        req.headers.get("Session")
                    ));
                }
                respond(s, &req, 200, &[]);
                let until = Instant::now() + record_for;
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                while Instant::now() < until {
                    let mut chunk = [0u8; 65536];
                    match s.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        Err(_) => {}
                    }
                    while let Ok(Parsed::Complete { message, consumed }) =
                        parse(&buf, &Limits::default())
                    {
                        buf.drain(..consumed);
                        if let Message::Data(f) = message {
                            frames.push((f.channel, f.payload));
                        }
                    }
                }
                break;
            }
            other => {
                v.push(format!("unexpected {other}"));
                respond(s, &req, 405, &[]);
            }
        }
    }
    let kinds = media.iter().map(|(u, _)| u.clone()).collect();
    Session {
        violations: v,
        packets: frames,
        media: kinds,
    }
}

#[test]
fn publishes_by_mediamtxs_rules_with_digest_and_comes_back_after_a_drop() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let relay = format!("rtsp://{USER}:pa%20ss@127.0.0.1:{port}/cam");
    let _server = ServerProc::start(&["--captions", "on", "--publish", &relay]);

    let (mut s, _) = listener.accept().unwrap();
    let first = serve_like_mediamtx(&mut s, Duration::from_secs(3));
    drop(s);
    assert_eq!(first.violations, Vec::<String>::new());
    assert_eq!(
        first.media,
        [
            format!("rtsp://127.0.0.1:{port}/cam/trackID=0"),
            format!("rtsp://127.0.0.1:{port}/cam/trackID=1"),
            format!("rtsp://127.0.0.1:{port}/cam/trackID=2"),
        ]
    );
    let video: Vec<&Vec<u8>> = first
        .packets
        .iter()
        .filter(|(ch, _)| *ch == 0)
        .map(|(_, p)| p)
        .collect();
    let audio = first.packets.iter().filter(|(ch, _)| *ch == 2).count();
    // 3 s at 30 frames/s and 50 audio packets/s, with room for a slow start.
    assert!(video.len() > 60, "{} video packets", video.len());
    assert!(audio > 100, "{audio} audio packets");
    assert!(
        starts_keyframe(video[0]),
        "the relay's first video packet starts a keyframe"
    );
    // RTCP sender reports come on the odd channels.
    assert!(first
        .packets
        .iter()
        .any(|(ch, p)| *ch == 1 && p.get(1) == Some(&200)));

    // Dropped, the publisher comes back (after its 1 s backoff) and publishes again.
    let t0 = Instant::now();
    let (mut s, _) = listener.accept().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5));
    let second = serve_like_mediamtx(&mut s, Duration::from_secs(1));
    assert_eq!(second.violations, Vec::<String>::new());
    assert!(second.packets.iter().any(|(ch, _)| *ch == 0));
}

/// gst-rtsp-server in RECORD mode (scripts/gst-rtsp-server.py --record) takes our stream and
/// writes it, depayloaded and parsed by GStreamer, into a Matroska file.
#[test]
fn publishes_into_gst_rtsp_server_in_record_mode() {
    use std::io::BufRead;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("recorded.mkv");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/gst-rtsp-server.py");
    let mut gst = Command::new("/usr/bin/python3")
        .arg(script)
        .args(["--port", &port.to_string(), "--path", "/rec", "--record"])
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("Debian's python3 with GStreamer's RTSP server (the test command installs it)");
    let mut ready = String::new();
    std::io::BufReader::new(gst.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.starts_with("ready "), "{ready}");
    let relay = format!("rtsp://127.0.0.1:{port}/rec");
    let mut server = ServerProc::start(&["--captions", "off", "--publish", &relay]);
    // About 3 s of a 2 Mbit/s stream.
    let t0 = Instant::now();
    while std::fs::metadata(&out).map_or(0, |m| m.len()) < 600_000 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "gst-rtsp-server wrote {:?} bytes",
            std::fs::metadata(&out).map(|m| m.len())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server.kill();
    let _ = gst.kill();
    let _ = gst.wait();
    assert_eq!(streams_of(&out), ["h264,1280,720", "opus"]);
    let mut decode = Command::new("ffmpeg");
    decode
        .args(["-v", "error", "-i"])
        .arg(&out)
        .args(["-f", "null", "-"]);
    let (ok, _, err) = run_peer(&mut decode, Duration::from_secs(60));
    // gst-rtsp-server is killed while it writes, so the file may end inside its last cluster
    // ("File ended prematurely", seen once in CI; ffmpeg still exits 0); everything before
    // it must decode.
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.ends_with("File ended prematurely"))
        .collect();
    assert!(ok && errors.is_empty(), "decoding what gst recorded: {err}");
}
