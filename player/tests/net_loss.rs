//! The headless player against our server through 5 % packet loss (issue 13): the server
//! and the player run in a network namespace of their own whose loopback drops 5 % of the
//! video-sized UDP datagrams (video packets and their retransmissions; audio, RTCP and the
//! RTSP connection are spared) at random, with nftables (`numgen random`: the kernel here has
//! no netem), as `server/tests/loss.rs` does for the other clients.
//!
//! The server is this test binary itself, run again inside the namespace as the ignored test
//! `serve_in_namespace` (the real server, `livecast_server::start`, on the test sources), so
//! the test needs no other binary than the player's. Needs root (`ip netns`) and nftables.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use livecast_player::engine::recording::RecordingReader;
use livecast_player::engine::unit::MediaKind;

#[path = "../../server/tests/common/lossy_netns.rs"]
#[allow(dead_code)]
mod lossy_netns;
use lossy_netns::LossyNamespace;

/// Where the server listens inside the namespace (a fresh namespace has every port free).
const LISTEN: &str = "127.0.0.1:8554";
const SERVE_ENV: &str = "LIVECAST_LOSS_TEST_SERVE";
/// The server's video: 30 frames/s.
const FRAME_US: f64 = 1e6 / 30.0;

impl LossyNamespace {
    /// This test binary, serving inside the namespace until its standard input closes; its
    /// log goes to `log`.
    fn server(&self, log: &Path) -> Child {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut child = self
            .command(exe)
            .args(["serve_in_namespace", "--exact", "--ignored", "--nocapture"])
            .env(SERVE_ENV, LISTEN)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("server log file"))
            .spawn()
            .expect("spawn the server");
        let out = BufReader::new(child.stdout.take().expect("stdout is piped"));
        for line in out.lines() {
            match line {
                Ok(l) if l.starts_with("serving") => return child,
                Ok(_) => {}
                Err(e) => panic!("reading the server's output: {e}"),
            }
        }
        let _ = child.kill();
        panic!("the server ended before serving (see {})", log.display());
    }
}

/// Not a test: the server of [`player_recovers_lost_video_with_nack_and_rtx`], run in its
/// namespace. It serves the test sources (640x480, 30 frames/s, 1 Mbit/s: a call's size, light
/// enough for a loaded 2-core machine) until its standard input closes.
#[test]
#[ignore = "run by player_recovers_lost_video_with_nack_and_rtx inside its namespace"]
fn serve_in_namespace() {
    let Ok(listen) = std::env::var(SERVE_ENV) else {
        return;
    };
    let listen = listen.parse().expect("an address to listen on");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // LIVECAST_LOSS_720P=1: the broadcast size (1280x720 at 2 Mbit/s), for benchmarks.
    let hd = std::env::var_os("LIVECAST_LOSS_720P").is_some();
    let (width, height, bitrate) = if hd {
        (1280, 720, 2_000_000)
    } else {
        (640, 480, 1_000_000)
    };
    let video = livecast_server::source::VideoConfig {
        width,
        height,
        fps: 30,
    };
    let mut cfg = livecast_server::ServerConfig::test_sources(listen, video, bitrate);
    // LIVECAST_LOSS_SPEECH=FILE.wav: speech instead of the tone (Opus codes speech in its
    // SILK or hybrid modes, which carry in-band FEC; the tone is coded as music, without).
    if let Some(wav) = std::env::var_os("LIVECAST_LOSS_SPEECH") {
        cfg.media.audio = livecast_server::source::AudioSpec::File(wav.into());
    }
    let server = rt
        .block_on(livecast_server::start(cfg))
        .expect("server starts on test sources");
    // The parent waits for this line on our standard output.
    let mut out = std::io::stdout().lock();
    writeln!(out, "serving on {}", server.listening[0]).expect("stdout");
    out.flush().expect("stdout");
    drop(out);
    let mut sink = String::new();
    while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    server.shutdown();
}

/// What one headless run measured.
#[derive(Debug)]
struct Run {
    json: serde_json::Value,
    /// Frames the server sent over the span the player recorded (30 a second, less the
    /// frames its source skipped when the machine was too busy).
    sent: u64,
    /// Video units recorded (whole or damaged).
    recorded: usize,
    dropped: u64,
}

impl Run {
    fn shown(&self) -> u64 {
        self.json["video"]["frames_shown"]
            .as_u64()
            .expect("frames_shown")
    }
    /// Frames sent while the player was watching: a joiner is first sent the frames since
    /// the server's last keyframe (up to half a second, to start decoding without waiting),
    /// and shows the newest of them: those before it were history when it joined. Those
    /// recorded but not yet due when the player stopped (the playout delay's worth, more on
    /// a starved machine) were not watched either.
    fn watched(&self) -> u64 {
        let field = |f: &str| self.json["video"][f].as_u64().expect(f);
        self.sent
            .saturating_sub(field("frames_before_first"))
            .saturating_sub(field("frames_pending"))
    }
    fn rtp(&self, field: &str) -> u64 {
        self.json["rtp"][field].as_u64().expect(field)
    }
    fn freeze_ms(&self) -> f64 {
        self.json["video"]["longest_freeze_ms"]
            .as_f64()
            .expect("longest_freeze_ms")
    }
}

/// Frames the server's sources skipped (its warnings say how many in all).
fn skipped_frames(log: &Path) -> u64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("fell behind real time") && l.contains("video"))
        .filter_map(|l| {
            l.split("total=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

/// The player headless for `seconds` in the namespace, against a fresh server.
fn play(ns: &LossyNamespace, dir: &Path, tag: &str, seconds: u32, extra: &[&str]) -> Run {
    let log = dir.join(format!("server-{tag}.log"));
    let mut server = ns.server(&log);
    let (json, rec) = (
        dir.join(format!("{tag}.json")),
        dir.join(format!("{tag}.lcrec")),
    );
    let dropped_before = ns.dropped();
    let started = Instant::now();
    let status = ns
        .command(env!("CARGO_BIN_EXE_livecast-player"))
        .args(["--headless", &format!("rtsp://{LISTEN}/live")])
        .args(if std::env::var_os("LIVECAST_LOSS_AUDIO").is_some() {
            &[][..]
        } else {
            &["--no-audio"][..]
        })
        .args(["--transport", "udp", "--duration", &seconds.to_string()])
        .arg("--stats-json")
        .arg(&json)
        .arg("--record")
        .arg(&rec)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("the player runs");
    assert!(status.success(), "player {extra:?}: {status}");
    assert!(started.elapsed() < Duration::from_secs(u64::from(seconds) + 30));
    let dropped = ns.dropped() - dropped_before;
    drop(server.stdin.take());
    let _ = server.wait();
    let text = std::fs::read_to_string(&json).expect("the player wrote --stats-json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let (_reader, index) = RecordingReader::open(&rec).expect("the recording opens");
    let video = index.find_track(MediaKind::Video).expect("a video track");
    let entries = index.entries(video);
    let (first, last) = (entries[0].time_us, entries[entries.len() - 1].time_us);
    let span = ((last - first) as f64 / FRAME_US).round() as u64 + 1;
    Run {
        json,
        sent: span.saturating_sub(skipped_frames(&log)),
        recorded: entries.len(),
        dropped,
    }
}

/// Watching through 5 % loss: with NACK and RFC 4588 retransmission the player shows at
/// least 98 % of the frames the server sent (the target in watch mode), against far
/// fewer with `--no-nack` (plain RTP/AVP, keyframe requests only) on the same path.
#[test]
fn player_recovers_lost_video_with_nack_and_rtx() {
    // For docs/benchmarks.md: see `LossyNamespace::from_env`; LIVECAST_LOSS_AUDIO=1 plays
    // the audio too.
    let ns = LossyNamespace::from_env("p", 5);
    let dir = tempfile::tempdir().expect("temp dir");
    // LIVECAST_LOSS_SECONDS: longer runs for docs/benchmarks.md.
    let seconds = std::env::var("LIVECAST_LOSS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let with = play(&ns, dir.path(), "nack", seconds, &[]);
    let without = play(&ns, dir.path(), "no-nack", seconds, &["--no-nack"]);
    for (name, r) in [("with NACK", &with), ("without", &without)] {
        eprintln!(
            "{name}: {} of {} frames shown ({:.1} %; {} late, {} sent before the first, {} \
             skipped to catch up, {} not decoded awaiting a keyframe, {} decode errors, {} not yet due at the end), {} \
             recorded, longest freeze {:.0} ms, {} datagrams dropped, {} lost (RTP), {} NACKed, {} RTX received, {} recovered, \
             rtt {:?} ms, latency {}, audio {}",
            r.shown(),
            r.watched(),
            100.0 * r.shown() as f64 / r.watched() as f64,
            r.json["video"]["frames_late"],
            r.json["video"]["frames_before_first"],
            r.json["video"]["frames_skipped"],
            r.json["video"]["frames_awaiting_keyframe"],
            r.json["video"]["decode_errors"],
            r.json["video"]["frames_pending"],
            r.recorded,
            r.freeze_ms(),
            r.dropped,
            r.json["rtp"]["packets_lost"],
            r.rtp("nack_sent"),
            r.rtp("retransmissions_received"),
            r.rtp("recovered"),
            r.json["rtp"]["rtt_ms"],
            r.json["latency_ms"],
            r.json["audio"],
        );
    }
    // About 40 are dropped in 20 s; the floor only makes sure the path lost some (fewer than
    // 10 is under 1 run in 10^8).
    assert!(with.dropped >= 10, "the path lost packets: {with:?}");
    assert!(with.rtp("nack_sent") > 0, "{with:?}");
    assert!(with.rtp("retransmissions_received") > 0, "{with:?}");
    assert!(with.rtp("recovered") > 0, "{with:?}");
    assert!(
        with.shown() * 100 >= with.watched() * 98,
        "{} of {} frames shown: {with:?}",
        with.shown(),
        with.watched()
    );
    assert_eq!(without.rtp("nack_sent"), 0);
    assert_eq!(without.rtp("retransmissions_received"), 0);
    assert!(without.dropped >= 10, "the path lost packets: {without:?}");
    assert!(
        without.shown() * with.watched() < with.shown() * without.watched(),
        "NACK shows more of what was sent: {} / {} without, {} / {} with",
        without.shown(),
        without.watched(),
        with.shown(),
        with.watched()
    );
}
