//! Benchmarks (ignored in the normal run): the latency one relay hop adds. A source server
//! streams `/live`; a publisher forwards its video into a relay server's `/cam`; two readers on
//! this machine read the video of both at once (interleaved TCP) and note when each piece
//! arrives. The hop's latency is the relayed arrival minus the direct one.
//!
//! - `relay_hop_latency`: the publisher is a bridge in this test that writes each RTP packet
//!   to the relay (ANNOUNCE/SETUP/RECORD, interleaved) as soon as it is read from the source:
//!   the hop is our ingest and fan-out (plus one read and write). Packets are matched by their
//!   payload bytes.
//! - `relay_hop_latency_through_ffmpeg`: the publisher is ffmpeg (`-c copy -f rtsp`), which
//!   re-packetizes, so access units are matched (by the bytes of their slices): the hop is
//!   ffmpeg's reading and publishing plus ours.
//!
//! Run: `cargo test -p livecast-server --test relay_bench -- --ignored --nocapture
//! --test-threads 1` (`RELAY_BENCH_SECONDS`, default 20). Each prints one JSON line.

mod common;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::ServerProc;
use livecast_proto::codec::h264::{nal, nal_type, Depacketizer};
use livecast_proto::rtsp::{
    self, CSeq, Limits, Message, Method, Parsed, Request, Response, Session,
};

/// What a reader saw: (hash, arrival) of each RTP payload, and of each access unit's slices
/// (when its last packet arrived).
#[derive(Default)]
struct Seen {
    packets: Vec<(u64, Instant)>,
    units: Vec<(u64, Instant)>,
}

fn hash_of(bytes: impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Sends `req` (numbered `cseq`) on `s` and reads to its response (`buf` keeps what follows).
fn exchange(s: &mut TcpStream, buf: &mut Vec<u8>, cseq: u32, req: Request) -> Response {
    let mut out = Vec::new();
    req.typed(&CSeq(cseq)).write_to(&mut out);
    s.write_all(&out).expect("write");
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(Parsed::Complete { message, consumed }) = rtsp::parse(buf, &Limits::default()) {
            buf.drain(..consumed);
            if let Message::Response(r) = message {
                return r;
            }
            continue;
        }
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Connects to `url` and plays its first track interleaved on channels 0-1: the stream, what
/// was read past the PLAY response, and the DESCRIBE body.
fn play_first_track(url: &str) -> (TcpStream, Vec<u8>, String) {
    let addr = url
        .trim_start_matches("rtsp://")
        .split('/')
        .next()
        .expect("host:port");
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut buf = Vec::new();
    let r = exchange(&mut s, &mut buf, 1, Request::new(Method::Describe, url));
    assert_eq!(r.status.0, 200, "DESCRIBE {url}: {r:?}");
    let sdp = String::from_utf8_lossy(&r.body).into_owned();
    let setup = Request::new(Method::Setup, format!("{url}/trackID=0"))
        .header("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1");
    let r = exchange(&mut s, &mut buf, 2, setup);
    assert_eq!(r.status.0, 200, "SETUP {url}: {r:?}");
    let session: Session = r.headers.get_typed().ok().flatten().expect("a session");
    let play = Request::new(Method::Play, url).header("Session", session.id.as_str());
    let r = exchange(&mut s, &mut buf, 3, play);
    assert_eq!(r.status.0, 200, "PLAY {url}: {r:?}");
    (s, buf, sdp)
}

/// Calls `each` with every channel-0 interleaved frame on `s` for `seconds`.
fn frames(mut s: TcpStream, mut buf: Vec<u8>, seconds: u64, mut each: impl FnMut(&[u8])) {
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut chunk = vec![0u8; 64 * 1024];
    while Instant::now() < end {
        while let Ok(Parsed::Complete { message, consumed }) = rtsp::parse(&buf, &Limits::default())
        {
            buf.drain(..consumed);
            if let Message::Data(frame) = message {
                if frame.channel == 0 {
                    each(&frame.payload);
                }
            }
        }
        let n = s.read(&mut chunk).expect("read");
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads `url`'s first track over interleaved TCP for `seconds`.
fn read(url: &str, seconds: u64) -> Seen {
    let (s, buf, _) = play_first_track(url);
    let mut depacketizer = Depacketizer::new();
    let mut seen = Seen::default();
    frames(s, buf, seconds, |packet| {
        let Ok(p) = livecast_proto::rtp::parse(packet) else {
            return;
        };
        let now = Instant::now();
        seen.packets.push((hash_of(p.payload), now));
        if let Ok(Some(au)) = depacketizer.push(p.sequence, p.timestamp, p.marker, p.payload) {
            let slices: Vec<&Vec<u8>> = au
                .nals
                .iter()
                .filter(|n| matches!(nal_type(n), nal::IDR | 1))
                .collect();
            seen.units.push((hash_of(slices), now));
        }
    });
    seen
}

/// The delays (ms) of `later` behind `earlier`, matched by hash, sorted.
fn delays(earlier: &[(u64, Instant)], later: &[(u64, Instant)]) -> Vec<f64> {
    let at: HashMap<u64, Instant> = earlier.iter().copied().collect();
    let mut ms: Vec<f64> = later
        .iter()
        .filter_map(|(h, t)| Some(t.saturating_duration_since(*at.get(h)?).as_secs_f64() * 1e3))
        .collect();
    ms.sort_by(f64::total_cmp);
    ms
}

#[allow(clippy::print_stdout)] // a benchmark whose output is its figures
fn report(what: &str, ms: &[f64]) {
    assert!(ms.len() > 100, "only {} {what} matched", ms.len());
    println!(
        "{{\"matched\": \"{what}\", \"n\": {}, \"p50_ms\": {:.2}, \"p95_ms\": {:.2}, \"max_ms\": {:.2}}}",
        ms.len(),
        percentile(ms, 0.5),
        percentile(ms, 0.95),
        ms[ms.len() - 1]
    );
}

fn seconds() -> u64 {
    std::env::var("RELAY_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

/// Forwards the video of `source` to `relay` (publishing it there) until `seconds` pass.
fn bridge(source: &str, relay: &str, seconds: u64) {
    let (src, src_buf, sdp) = play_first_track(source);
    let addr = relay
        .trim_start_matches("rtsp://")
        .split('/')
        .next()
        .expect("host:port");
    let mut out = TcpStream::connect(addr).expect("connect to the relay");
    out.set_nodelay(true).expect("nodelay");
    let mut buf = Vec::new();
    let announce = Request::new(Method::Announce, relay).body("application/sdp", sdp.into_bytes());
    let r = exchange(&mut out, &mut buf, 1, announce);
    assert_eq!(r.status.0, 200, "ANNOUNCE: {r:?}");
    let setup = Request::new(Method::Setup, format!("{relay}/trackID=0")).header(
        "Transport",
        "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
    );
    let r = exchange(&mut out, &mut buf, 2, setup);
    assert_eq!(r.status.0, 200, "SETUP: {r:?}");
    let session: Session = r.headers.get_typed().ok().flatten().expect("a session");
    let record = Request::new(Method::Record, relay).header("Session", session.id.as_str());
    let r = exchange(&mut out, &mut buf, 3, record);
    assert_eq!(r.status.0, 200, "RECORD: {r:?}");
    let mut frame = Vec::new();
    frames(src, src_buf, seconds, |packet| {
        frame.clear();
        rtsp::write_interleaved(0, packet, &mut frame);
        let _ = out.write_all(&frame);
    });
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
#[ignore = "benchmark: run with --ignored"]
fn relay_hop_latency() {
    let seconds = seconds();
    let source = ServerProc::start(&["--captions", "off"]);
    let relay = ServerProc::start(&["--captions", "off"]);
    let direct_url = source.url();
    let relayed_url = format!("rtsp://127.0.0.1:{}/cam", relay.port);
    let (from, to) = (direct_url.clone(), relayed_url.clone());
    let bridge = std::thread::spawn(move || bridge(&from, &to, seconds + 6));
    std::thread::sleep(Duration::from_secs(3));
    let direct = std::thread::spawn(move || read(&direct_url, seconds));
    let relayed = read(&relayed_url, seconds);
    let direct = direct.join().expect("the direct reader");
    bridge.join().expect("the bridge");
    report("packets", &delays(&direct.packets, &relayed.packets));
}

#[test]
#[ignore = "benchmark: run with --ignored"]
fn relay_hop_latency_through_ffmpeg() {
    let seconds = seconds();
    let source = ServerProc::start(&["--captions", "off"]);
    let relay = ServerProc::start(&["--captions", "off"]);
    let direct_url = source.url();
    let relayed_url = format!("rtsp://127.0.0.1:{}/cam", relay.port);
    let mut ffmpeg = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-rtsp_transport", "tcp", "-i"])
        .args([direct_url.as_str(), "-c", "copy", "-f", "rtsp"])
        .args(["-rtsp_transport", "tcp", relayed_url.as_str()])
        .stdin(Stdio::null())
        .spawn()
        .expect("ffmpeg");
    std::thread::sleep(Duration::from_secs(4));
    let direct = std::thread::spawn(move || read(&direct_url, seconds));
    let relayed = read(&relayed_url, seconds);
    let direct = direct.join().expect("the direct reader");
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
    report("access units", &delays(&direct.units, &relayed.units));
}
