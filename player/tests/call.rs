//! Call mode end to end (issue 5): two `livecast-player --call` peers, each in a network
//! namespace of its own joined by a veth pair, both on built-in sources (test card; speech
//! made with espeak-ng for the captions), headless, measured through their `--stats-json`.
//!
//! Calls are RTSPS with a call code (issue 14): each peer keeps its certificate and the
//! peer's pinned fingerprint in a data folder of its own (the speech model linked into it).
//!
//! Needs root (`ip netns`), iproute2 and nftables (for packet loss), espeak-ng, sox, tcpdump
//! and the speech model: `scripts/setup.sh` installs them. The namespaces and links are removed when a
//! test ends, whatever its outcome.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use livecast_player::engine::recording::RecordingReader;
use livecast_player::engine::unit::MediaKind;
use serde_json::Value;

#[path = "../../server/tests/common/lossy_netns.rs"]
#[allow(dead_code)]
mod lossy_netns;
#[path = "../../server/tests/common/pcap.rs"]
#[allow(dead_code)]
mod pcap;

/// The call code the peers of a test share (a call code is any 20 digits both sides give).
const CODE: &str = "31415-92653-58979-32384";

/// The tests run two peers each (two encoders, two decoders, two captioners): one at a time.
static HEAVY: Mutex<()> = Mutex::new(());

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces `a` and `b`, joined by a veth pair: `a` is 10.213.N.1, `b` is 10.213.N.2.
struct Namespaces {
    a: String,
    b: String,
    /// `a`'s end of the veth pair (where a capture sees both directions).
    veth_a: String,
    n: u32,
    /// User-space delayers ([`Namespaces::delay`]), killed when dropped.
    delayers: Vec<Child>,
}

impl Namespaces {
    fn new(n: u32) -> Self {
        let id = std::process::id() % 100_000;
        let ns = Namespaces {
            a: format!("lc{id}a{n}"),
            b: format!("lc{id}b{n}"),
            veth_a: format!("lv{id}a{n}"),
            n,
            delayers: Vec::new(),
        };
        let ip = |args: &[&str]| run(Command::new("ip").args(args));
        let (va, vb) = (format!("lv{id}a{n}"), format!("lv{id}b{n}"));
        for name in [&ns.a, &ns.b] {
            // A leftover from a killed run would make `add` fail.
            let _ = Command::new("ip").args(["netns", "del", name]).output();
            ip(&["netns", "add", name]);
            ip(&["-n", name, "link", "set", "lo", "up"]);
        }
        ip(&[
            "link", "add", &va, "netns", &ns.a, "type", "veth", "peer", "name", &vb, "netns", &ns.b,
        ]);
        for (name, dev, host) in [(&ns.a, &va, 1), (&ns.b, &vb, 2)] {
            let addr = format!("10.213.{n}.{host}/24");
            ip(&["-n", name, "addr", "add", &addr, "dev", dev]);
            ip(&["-n", name, "link", "set", dev, "up"]);
            lossy_netns::one_datagram_per_packet(name, dev);
        }
        ns
    }

    fn addr(&self, host: u8) -> String {
        format!("10.213.{}.{host}", self.n)
    }

    /// Drops `percent` % of the packets arriving in both namespaces, at random (nftables).
    fn lose(&self, percent: u32) {
        for name in [&self.a, &self.b] {
            let rule = format!("numgen random mod 100 < {percent} counter drop");
            lossy_netns::nft_input_rule(name, &rule);
        }
    }

    /// Polices the UDP arriving in namespace `b` to `kbytes` kB/s (bursts of 64 kB pass).
    fn police_b(&self, kbytes: u32) {
        let rule = format!(
            "meta l4proto udp limit rate over {kbytes} kbytes/second burst 64 kbytes counter drop"
        );
        lossy_netns::nft_input_rule(&self.b, &rule);
    }

    /// Delays every packet arriving in each namespace by `ms`: a round trip of twice that.
    fn delay(&mut self, ms: u32) {
        for name in [self.a.clone(), self.b.clone()] {
            self.delayers.push(lossy_netns::delay_udp_in(&name, ms));
        }
    }

    /// Packets the loss rule dropped so far in namespace `name`.
    fn dropped(&self, name: &str) -> u64 {
        lossy_netns::nft_dropped(name)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for d in &mut self.delayers {
            let _ = d.kill();
            let _ = d.wait();
        }
        // Deleting a namespace removes its end of the veth pair, and so the pair.
        for name in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

/// A speech WAV (English sentences, 2 s of silence before and 3 s after; the source loops).
fn speech_wav(dir: &Path, voice: &str, text: &str) -> PathBuf {
    let raw = dir.join(format!("{voice}-raw.wav"));
    let wav = dir.join(format!("{voice}.wav"));
    run(Command::new("espeak-ng")
        .args(["-v", voice, "-s", "150", "-w"])
        .arg(&raw)
        .arg(text));
    run(Command::new("sox")
        .arg(&raw)
        .arg(&wav)
        .args(["pad", "2", "3"]));
    wav
}

/// A data folder for one peer (`XDG_DATA_HOME`): its certificate and known hosts, with the
/// speech model of the real data folder linked in.
fn data_home(dir: &Path, name: &str) -> PathBuf {
    let home = dir.join(format!("{name}-data"));
    std::fs::create_dir_all(home.join("livecast")).expect("a data folder");
    let real = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    if let Some(models) = real.map(|d| d.join("livecast/models")) {
        let link = home.join("livecast/models");
        if models.exists() && !link.exists() {
            std::os::unix::fs::symlink(&models, &link).expect("link the models");
        }
    }
    home
}

struct Peer {
    child: Child,
    stats: PathBuf,
    log: PathBuf,
    out: PathBuf,
}

impl Peer {
    /// `livecast-player --call` in namespace `ns`, listening on `me`, calling `peer`, with
    /// the shared [`CODE`] and the data folder `NAME-data`.
    fn start(ns: &str, me: &str, peer: &str, name: &str, dir: &Path, extra: &[&str]) -> Peer {
        let data = data_home(dir, name);
        Peer::start_with(ns, me, peer, name, &data, Some(CODE), dir, extra)
    }

    /// As [`Peer::start`], with the data folder and the code (`None`: make one) given.
    #[allow(clippy::too_many_arguments)]
    fn start_with(
        ns: &str,
        me: &str,
        peer: &str,
        name: &str,
        data: &Path,
        code: Option<&str>,
        dir: &Path,
        extra: &[&str],
    ) -> Peer {
        let stats = dir.join(format!("{name}.json"));
        let log = dir.join(format!("{name}.log"));
        let out = dir.join(format!("{name}.out"));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(env!("CARGO_BIN_EXE_livecast-player"))
            .args(["--call", peer, "--listen", &format!("{me}:8554")])
            .args(["--name", name, "--headless", "--no-audio"]);
        if let Some(code) = code {
            cmd.args(["--code", code]);
        }
        if !extra.contains(&"--video") {
            cmd.args(["--video", "testsrc", "--size", "320x240", "--fps", "15"]);
        }
        let child = cmd
            .arg("--stats-json")
            .arg(&stats)
            .args(extra)
            // Each reception report and what the rate controller did, for the policer test.
            .env("RUST_LOG", "info,livecast_server::adapt=debug")
            .env("XDG_DATA_HOME", data)
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&out).expect("output file"))
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn ip netns exec livecast-player");
        Peer {
            child,
            stats,
            log,
            out,
        }
    }

    /// What the peer printed on standard output so far.
    fn printed(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits for the process to end (at most `limit`); returns when it ended and its stats.
    fn finish(self, limit: Duration) -> (Instant, Value) {
        let (ended, status, log, stats) = self.finish_any(limit);
        assert!(status.success(), "peer failed ({status}):\n{log}");
        (ended, stats.unwrap_or_else(|| panic!("no stats:\n{log}")))
    }

    /// Waits for the process to end (at most `limit`), however it ends: when, its exit
    /// status, its log and standard output, and its stats if it wrote them.
    fn finish_any(
        mut self,
        limit: Duration,
    ) -> (Instant, std::process::ExitStatus, String, Option<Value>) {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let ended = Instant::now();
                let log = std::fs::read_to_string(&self.log).unwrap_or_default() + &self.printed();
                let stats = std::fs::read_to_string(&self.stats)
                    .ok()
                    .map(|j| serde_json::from_str(&j).expect("stats JSON"));
                return (ended, status, log, stats);
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                panic!("peer still running after {limit:?}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn caption_words(stats: &Value) -> usize {
    stats["captions"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|c| c["text"].as_str())
                .map(|t| t.split_whitespace().count())
                .sum()
        })
        .unwrap_or(0)
}

/// What one side must have received from the other while the call was up.
fn assert_received(who: &str, s: &Value, peer_name: &str) {
    let c = &s["call"];
    assert!(
        c["connected_unix_ms"].as_i64().is_some(),
        "{who} never connected: {c}"
    );
    assert_eq!(c["peer_name"], peer_name, "{who}: {c}");
    let video = s["video"]["frames_decoded"].as_u64().unwrap_or(0);
    let audio = s["audio"]["frames_decoded"].as_u64().unwrap_or(0);
    // 15 fps and 50 Opus frames/s over at least 15 s of call.
    assert!(video >= 150, "{who} decoded {video} video frames");
    assert!(audio >= 500, "{who} decoded {audio} audio frames");
    let words = caption_words(s);
    assert!(
        words >= 3,
        "{who} got {words} caption words: {}",
        s["captions"]
    );
}

#[test]
fn call_across_namespaces_waits_for_a_late_peer_and_hangs_up_on_both_sides() {
    let _g = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespaces::new(1);
    let (a_ip, b_ip) = (ns.addr(1), ns.addr(2));
    let alice_wav = speech_wav(
        dir.path(),
        "en-us",
        "Hello Bob, can you hear me? The weather is lovely here today.",
    );
    let bob_wav = speech_wav(
        dir.path(),
        "en-gb",
        "Hi Alice, yes I can hear you well. It is raining in London.",
    );
    let audio = |w: &Path| format!("file:{}", w.display());
    // Alice calls first and would stay a minute; Bob answers 10 s later and hangs up after 25 s.
    let alice = Peer::start(
        &ns.a,
        &a_ip,
        &b_ip,
        "alice",
        dir.path(),
        &["--duration", "60", "--audio", &audio(&alice_wav)],
    );
    std::thread::sleep(Duration::from_secs(10));
    let bob = Peer::start(
        &ns.b,
        &b_ip,
        &a_ip,
        "bob",
        dir.path(),
        &["--duration", "25", "--audio", &audio(&bob_wav)],
    );
    let (bob_end, b) = bob.finish(Duration::from_secs(60));
    let (alice_end, a) = alice.finish(Duration::from_secs(30));

    // The late peer: Alice kept calling, without anyone doing anything, until Bob answered.
    let attempts = a["call"]["calling_attempts"].as_u64().unwrap_or(0);
    assert!(attempts >= 5, "alice called {attempts} times in 10 s");
    assert_received("alice", &a, "bob");
    assert_received("bob", &b, "alice");

    // Bob hung up; Alice's side saw the call end and stopped within 2 s.
    assert_eq!(b["call"]["ended_by"], "local", "{}", b["call"]);
    assert_eq!(a["call"]["ended_by"], "peer", "{}", a["call"]);
    assert_eq!(a["final_state"], "CallEnded(\"the peer hung up\")");
    let gap = alice_end.saturating_duration_since(bob_end);
    assert!(
        gap < Duration::from_secs(2),
        "alice ended {gap:?} after bob"
    );
    let noticed =
        a["call"]["ended_unix_ms"].as_i64().unwrap() - b["call"]["ended_unix_ms"].as_i64().unwrap();
    assert!(
        noticed < 2000,
        "alice noticed the hang-up after {noticed} ms"
    );
    // Every session on both servers is closed: each had the other's player, none is left.
    for (who, s) in [("alice", &a), ("bob", &b)] {
        let server = &s["call"]["server"];
        assert_eq!(server["sessions_peak"], 1, "{who}: {server}");
        assert_eq!(server["sessions_after"], 0, "{who}: {server}");
        assert_eq!(server["captions"], true, "{who}: {server}");
    }
    // And nobody answers on either address any more.
    for (name, ip) in [(&ns.a, &a_ip), (&ns.b, &b_ip)] {
        let out = Command::new("ip")
            .args(["netns", "exec", name, "ss", "-Htln"])
            .output()
            .expect("ss");
        let listening = String::from_utf8_lossy(&out.stdout);
        assert!(
            !listening.contains(&format!("{ip}:8554")),
            "{name} still listens: {listening}"
        );
    }
}

#[test]
fn chat_arrives_in_order_and_complete_under_5_percent_loss() {
    let _g = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespaces::new(2);
    ns.lose(5);
    let (a_ip, b_ip) = (ns.addr(1), ns.addr(2));
    let quiet = ["--duration", "28", "--audio", "tone", "--captions", "off"];
    let mut alice = Peer::start(&ns.a, &a_ip, &b_ip, "alice", dir.path(), &quiet);
    let mut bob = Peer::start(&ns.b, &b_ip, &a_ip, "bob", dir.path(), &quiet);
    const N: usize = 40;
    let said = |who: &str, i: usize| format!("{who} says message number {i}: ça va? 👋");
    // Typed lines go out once the call is up both ways; they are written from the start.
    let mut typists = Vec::new();
    for (peer, who) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let mut stdin = peer.child.stdin.take().expect("stdin");
        let lines: Vec<String> = (0..N).map(|i| said(who, i)).collect();
        typists.push(std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(3));
            for l in lines {
                writeln!(stdin, "{l}").expect("type a line");
                std::thread::sleep(Duration::from_millis(150));
            }
            // Keep stdin open until the peer ends.
            stdin
        }));
    }
    let (_, a) = alice.finish(Duration::from_secs(60));
    let (_, b) = bob.finish(Duration::from_secs(60));
    for t in typists {
        let _ = t.join();
    }
    let dropped = ns.dropped(&ns.a) + ns.dropped(&ns.b);
    assert!(dropped > 50, "the loss rule dropped only {dropped} packets");
    for (who, s, from) in [("alice", &a, "bob"), ("bob", &b, "alice")] {
        let got: Vec<&str> = s["chat"]
            .as_array()
            .expect("chat list")
            .iter()
            .filter_map(|m| m["text"].as_str())
            .collect();
        let want: Vec<String> = (0..N).map(|i| said(from, i)).collect();
        assert_eq!(got, want, "{who}'s chat from {from}");
        let sent = s["call"]["chat_sent"].as_array().map_or(0, Vec::len);
        assert_eq!(sent, N, "{who} sent {sent} of {N}");
        // Packet loss did happen on the media too.
        assert!(
            s["rtp"]["packets_lost"].as_i64().unwrap_or(0) > 0,
            "{who}: {}",
            s["rtp"]
        );
    }
}

/// Issue 13: a call whose one direction crosses a 600 kbit/s policer. Alice sends 640x480@30
/// at 1 Mbit/s of noisy pictures (which the encoder cannot squeeze under its target), the
/// policer drops what exceeds 600 kbit/s, and Alice's server, told by Bob's reception reports,
/// brings its rate under the policer: within 10 s the policer stops dropping (almost), and Bob
/// sees no freeze of a second or more after that.
#[test]
fn a_call_settles_under_a_600_kbit_policer_without_freezes() {
    let _g = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let y4m = dir.path().join("noise.y4m");
    run(Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg("testsrc2=size=640x480:rate=30,noise=alls=6:allf=t")
        .args(["-t", "4", "-pix_fmt", "yuv420p"])
        .arg(&y4m));
    let ns = Namespaces::new(3);
    ns.police_b(75);
    let (a_ip, b_ip) = (ns.addr(1), ns.addr(2));
    let video = format!("file:{}", y4m.display());
    let common = ["--duration", "40", "--audio", "tone", "--captions", "off"];
    let mut alice_args = vec![
        "--video",
        video.as_str(),
        "--size",
        "640x480",
        "--fps",
        "30",
    ];
    alice_args.extend(common);
    let alice = Peer::start(&ns.a, &a_ip, &b_ip, "alice", dir.path(), &alice_args);
    let bob = Peer::start(&ns.b, &b_ip, &a_ip, "bob", dir.path(), &common);
    let t0 = Instant::now();
    // Settled 10 s after the call is up (it takes a second or two to come up).
    std::thread::sleep(Duration::from_secs(14));
    let dropped_by_14s = ns.dropped(&ns.b);
    let (_, a) = alice.finish(Duration::from_secs(90));
    let (_, b) = bob.finish(Duration::from_secs(90));
    let late = ns.dropped(&ns.b) - dropped_by_14s;
    let alice_log = std::fs::read_to_string(dir.path().join("alice.log")).unwrap();
    let changes: Vec<&str> = alice_log
        .lines()
        .filter(|l| l.contains("video quality:"))
        .collect();
    // Every report and the controller's move, for a failure to say why.
    let reports: String = alice_log
        .lines()
        .filter(|l| l.contains("reception report"))
        .map(|l| format!("\n  {}", l.split("adapt: ").last().unwrap_or(l)))
        .collect();
    eprintln!(
        "policer dropped {dropped_by_14s} packets in the first 14 s, {late} after ({:?} in all); \
         Alice's quality changes: {changes:#?}; Bob's freezes: {}",
        t0.elapsed(),
        b["video"]["freezes"]
    );
    assert_received_video("bob", &b, 640);
    assert!(a["call"]["connected_unix_ms"].as_i64().is_some());
    assert!(
        dropped_by_14s > 20,
        "the policer had to act: {dropped_by_14s}"
    );
    assert!(!changes.is_empty(), "Alice adapted: {alice_log}");
    // After settling: the drops of a probe that meets the policer's bucket, no more. The
    // controller creeps back toward the rate that got through (0.5 % a second); a bucket hides
    // the excess for seconds and then drops a burst, up to about 60 packets (15 % of one
    // report, 1.3 % of the call: seen in 1 CI run of 8, the creep from 521 kbit/s meeting the
    // policer at 596 kbit/s after 35 s), and the rate goes back and holds. Twice that is more
    // than one such probe.
    let received = b["rtp"]["packets_received"].as_u64().unwrap_or(0);
    assert!(
        late * 100 <= received * 2,
        "the policer still dropped {late} packets after 14 s ({received} received in all); \
         Alice's reports:{reports}"
    );
    let freezes = b["video"]["freezes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for f in &freezes {
        let (end_ms, len_ms) = (f[0].as_f64().unwrap(), f[1].as_f64().unwrap());
        assert!(
            end_ms < 14_000.0 || len_ms < 1000.0,
            "Bob's picture froze {len_ms} ms until {end_ms} ms: {freezes:?}; Alice's reports:\
             {reports}"
        );
    }
}

/// `who` decoded pictures of `width` at a steady rate.
fn assert_received_video(who: &str, s: &Value, width: u64) {
    let video = s["video"]["frames_decoded"].as_u64().unwrap_or(0);
    assert_eq!(
        s["video"]["width"].as_u64(),
        Some(width),
        "{who}: {}",
        s["video"]
    );
    // 30 frames/s over at least 30 s of a 40 s call.
    assert!(video >= 900, "{who} decoded {video} video frames");
}

/// Issue 13 in a call: 5 % of every packet lost both ways (media, RTCP with the NACKs, RTSP),
/// and each side still shows at least 95 % of the pictures the other sent, with NACK and
/// retransmission in call mode. `LIVECAST_LOSS_DELAY_MS=20` adds the 40 ms round trip
/// and `LIVECAST_CALL_AUDIO=file:speech.wav` speech for the tone (for docs/benchmarks.md:
/// Opus FEC covers speech, not tones, on top of the audio's retransmissions).
#[test]
fn a_call_through_5_percent_loss_both_ways_shows_95_percent_of_the_pictures() {
    let _g = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut ns = Namespaces::new(4);
    ns.lose(5);
    if let Some(ms) = std::env::var("LIVECAST_LOSS_DELAY_MS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        ns.delay(ms);
    }
    let (a_ip, b_ip) = (ns.addr(1), ns.addr(2));
    let seconds = std::env::var("LIVECAST_LOSS_SECONDS").unwrap_or_else(|_| "25".into());
    let audio = std::env::var("LIVECAST_CALL_AUDIO").unwrap_or_else(|_| "tone".into());
    let rec = |who: &str| dir.path().join(format!("{who}.lcrec"));
    let (ra, rb) = (rec("alice"), rec("bob"));
    let args = |r: &Path| {
        let mut v: Vec<String> = [
            "--duration",
            &seconds,
            "--audio",
            &audio,
            "--captions",
            "off",
        ]
        .map(String::from)
        .to_vec();
        v.extend(["--record".to_string(), r.display().to_string()]);
        v
    };
    let (aa, ba) = (args(&ra), args(&rb));
    let aa: Vec<&str> = aa.iter().map(String::as_str).collect();
    let ba: Vec<&str> = ba.iter().map(String::as_str).collect();
    let alice = Peer::start(&ns.a, &a_ip, &b_ip, "alice", dir.path(), &aa);
    let bob = Peer::start(&ns.b, &b_ip, &a_ip, "bob", dir.path(), &ba);
    let (_, a) = alice.finish(Duration::from_secs(90));
    let (_, b) = bob.finish(Duration::from_secs(90));
    let dropped = ns.dropped(&ns.a) + ns.dropped(&ns.b);
    assert!(
        dropped > 100,
        "the loss rule dropped only {dropped} packets"
    );
    for (who, s, r) in [("alice", &a, &ra), ("bob", &b, &rb)] {
        // Pictures sent over the span the recording holds: 15 a second.
        let (_reader, index) = RecordingReader::open(r).expect("the recording opens");
        let video = index.find_track(MediaKind::Video).expect("a video track");
        let entries = index.entries(video);
        let span_us = entries[entries.len() - 1].time_us - entries[0].time_us;
        let sent = (span_us as f64 / (1e6 / 15.0)).round() as u64 + 1;
        let shown = s["video"]["frames_shown"].as_u64().unwrap_or(0);
        eprintln!(
            "{who}: {shown} of {sent} pictures shown ({:.1} %), freezes {}, latency {}, rtp {}, \
             audio {}",
            100.0 * shown as f64 / sent as f64,
            s["video"]["freezes"],
            s["latency_ms"],
            s["rtp"],
            s["audio"]
        );
        assert!(
            s["rtp"]["nack_sent"].as_u64().unwrap_or(0) > 0,
            "{who}: {}",
            s["rtp"]
        );
        assert!(
            shown * 100 >= sent * 95,
            "{who} showed {shown} of {sent} pictures"
        );
    }
}

/// Waits until `peer` has printed the line it makes for the other side (`ask the peer to
/// run: livecast-player --call ME --code CODE`); returns that line's command.
fn invitation(peer: &Peer) -> String {
    let t0 = Instant::now();
    loop {
        let out = peer.printed();
        if let Some(line) = out.lines().find(|l| l.contains("ask the peer to run:")) {
            return line
                .split_once("run: ")
                .map(|(_, c)| c.trim().to_owned())
                .unwrap_or_default();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no invitation printed: {out}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Issue 14: a call is encrypted both ways. Alice starts without a code and prints the
/// command for Bob, whose code he is started with. A capture on the link between the two
/// namespaces finds no RTSP text, no SDP, no RTCP CNAME and none of the chat typed on either
/// side (T.140 in clear RTP would carry it verbatim), yet each side plays the other (SRTP
/// over UDP); both show the same safety code, made of the two certificates each pinned of the other.
#[test]
fn an_encrypted_call_shows_nothing_in_clear_and_the_same_safety_code_on_both_sides() {
    // Names long enough that ciphertext does not spell them by chance: "bob" (3 bytes) turned
    // up in the SRTP capture about one run in two (2^-24 per byte, several MB captured).
    const BOB: &str = "bobby-b";
    let _g = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespaces::new(5);
    let (a_ip, b_ip) = (ns.addr(1), ns.addr(2));
    let pcap_file = dir.path().join("call.pcap");
    let tcpdump = pcap::capture_in_netns(&ns.a, &ns.veth_a, &pcap_file, &["ip"]);
    let quiet = ["--duration", "20", "--audio", "tone", "--captions", "off"];
    let mut alice = Peer::start_with(
        &ns.a,
        &a_ip,
        &b_ip,
        "alice",
        &data_home(dir.path(), "alice"),
        None,
        dir.path(),
        &quiet,
    );
    let command = invitation(&alice);
    let code = command
        .split_once("--code ")
        .map(|(_, c)| c.to_owned())
        .expect("a code in the invitation");
    assert!(
        command.starts_with(&format!("livecast-player --call {a_ip} --code ")),
        "{command}"
    );
    let mut bob = Peer::start_with(
        &ns.b,
        &b_ip,
        &a_ip,
        BOB,
        &data_home(dir.path(), BOB),
        Some(&code),
        dir.path(),
        &quiet,
    );
    let said = |who: &str| format!("{who} whispers the secret word zanzibar-{who}");
    let mut typists = Vec::new();
    for (peer, who) in [(&mut alice, "alice"), (&mut bob, BOB)] {
        let mut stdin = peer.child.stdin.take().expect("stdin");
        let line = said(who);
        typists.push(std::thread::spawn(move || {
            writeln!(stdin, "{line}").expect("type a line");
            stdin
        }));
    }
    let (_, a) = alice.finish(Duration::from_secs(60));
    let (_, b) = bob.finish(Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    pcap::stop(tcpdump);
    for t in typists {
        let _ = t.join();
    }

    for (who, s, from) in [("alice", &a, BOB), (BOB, &b, "alice")] {
        let c = &s["call"];
        assert!(c["connected_unix_ms"].as_i64().is_some(), "{who}: {c}");
        assert_eq!(c["peer_name"], from, "{who}: {c}");
        let video = s["video"]["frames_decoded"].as_u64().unwrap_or(0);
        let audio = s["audio"]["frames_decoded"].as_u64().unwrap_or(0);
        // 15 fps and 50 Opus frames/s over at least 10 s of call.
        assert!(video >= 150, "{who} decoded {video} video frames");
        assert!(audio >= 500, "{who} decoded {audio} audio frames");
        let got: Vec<&str> = s["chat"]
            .as_array()
            .expect("chat list")
            .iter()
            .filter_map(|m| m["text"].as_str())
            .collect();
        assert_eq!(got, vec![said(from).as_str()], "{who}'s chat");
        // The media came as SRTP over UDP (keys inside TLS), not the interleaved fallback.
        assert_eq!(s["rtp"]["srtp"], true, "{who}: {}", s["rtp"]);
        assert_eq!(s["rtp"]["tcp"], false, "{who}: {}", s["rtp"]);
    }
    // The same safety code on both sides, from the same two certificates.
    let code_a = a["call"]["safety_code"]
        .as_str()
        .expect("alice's safety code");
    assert_eq!(b["call"]["safety_code"].as_str(), Some(code_a));
    assert_eq!(code_a.split(' ').count(), 6, "{code_a}");
    assert_eq!(a["call"]["peer_fingerprint"], b["call"]["fingerprint"]);
    assert_eq!(b["call"]["peer_fingerprint"], a["call"]["fingerprint"]);
    assert_ne!(a["call"]["fingerprint"], b["call"]["fingerprint"]);
    for (who, out) in [
        ("alice", dir.path().join("alice.out")),
        (BOB, dir.path().join(format!("{BOB}.out"))),
    ] {
        let printed = std::fs::read_to_string(out).unwrap_or_default();
        assert!(
            printed.contains(&format!("safety code {code_a}")),
            "{who} printed: {printed}"
        );
    }

    // On the wire, both directions: nothing readable.
    let pcap = std::fs::read(&pcap_file).expect("tcpdump wrote the capture");
    let tcp = pcap::payloads(&pcap, pcap::Proto::Tcp);
    let udp = pcap::payloads(&pcap, pcap::Proto::Udp);
    let markers: Vec<(String, Vec<u8>)> = [
        "RTSP/1.0",
        "DESCRIBE",
        "m=video",
        "livecast-",
        "zanzibar",
        "alice",
        BOB,
    ]
    .iter()
    .map(|m| ((*m).to_owned(), m.as_bytes().to_vec()))
    .collect();
    for (name, payloads) in [("TCP", &tcp), ("UDP", &udp)] {
        let found: Vec<&str> = markers
            .iter()
            .filter(|(_, m)| payloads.iter().any(|p| pcap::contains(p, m)))
            .map(|(n, _)| n.as_str())
            .collect();
        assert!(found.is_empty(), "{name} in clear: {found:?}");
    }
    let bytes: usize = udp.iter().map(Vec::len).sum();
    assert!(bytes > 200_000, "only {bytes} bytes of UDP captured");
    assert!(
        tcp.iter().any(|p| p.starts_with(&[0x17, 0x03, 0x03])),
        "TLS application data records"
    );
}

/// Issue 14: a peer whose certificate is not the one pinned in an earlier call (Alice with a
/// new data folder) is refused, loudly; and two sides with different codes refuse each other.
#[test]
fn a_changed_certificate_and_a_wrong_code_are_refused_with_a_clear_message() {
    let _g = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespaces::new(6);
    let (a_ip, b_ip) = (ns.addr(1), ns.addr(2));
    let quiet = ["--duration", "6", "--audio", "tone", "--captions", "off"];
    let (alice_data, bob_data) = (data_home(dir.path(), "alice"), data_home(dir.path(), "bob"));
    // A first call: each pins the other's certificate.
    let alice = Peer::start(&ns.a, &a_ip, &b_ip, "alice", dir.path(), &quiet);
    let bob = Peer::start(&ns.b, &b_ip, &a_ip, "bob", dir.path(), &quiet);
    let (_, a) = alice.finish(Duration::from_secs(60));
    let (_, b) = bob.finish(Duration::from_secs(60));
    assert!(a["call"]["safety_code"].is_string(), "{}", a["call"]);
    assert_eq!(a["call"]["safety_code"], b["call"]["safety_code"]);

    // Alice again, from a new data folder: a new certificate. Bob refuses the call.
    let longer = ["--duration", "15", "--audio", "tone", "--captions", "off"];
    let new_alice = data_home(dir.path(), "alice-new");
    let alice = Peer::start_with(
        &ns.a,
        &a_ip,
        &b_ip,
        "alice-new",
        &new_alice,
        Some(CODE),
        dir.path(),
        &longer,
    );
    let bob = Peer::start_with(
        &ns.b,
        &b_ip,
        &a_ip,
        "bob-again",
        &bob_data,
        Some(CODE),
        dir.path(),
        &longer,
    );
    let (bob_end, status, log, stats) = bob.finish_any(Duration::from_secs(60));
    assert!(!status.success(), "bob took the call:\n{log}");
    assert!(
        log.contains(
            "the call was refused: the peer's certificate is not the one this machine trusted"
        ) && log.contains("--accept-new-fingerprint"),
        "{log}"
    );
    let c = &stats.expect("bob's stats")["call"];
    assert_eq!(c["refused"], true, "{c}");
    assert!(c["safety_code"].is_null(), "{c}");
    assert!(c["connected_unix_ms"].is_null(), "{c}");
    let _ = alice.finish_any(Duration::from_secs(60));
    assert!(bob_end.elapsed() < Duration::from_secs(60));
    let _ = alice_data;

    // Different codes (new data folders, so no certificate is known): both refuse.
    let alice = Peer::start_with(
        &ns.a,
        &a_ip,
        &b_ip,
        "alice-3",
        &data_home(dir.path(), "alice-3"),
        Some(CODE),
        dir.path(),
        &longer,
    );
    let bob = Peer::start_with(
        &ns.b,
        &b_ip,
        &a_ip,
        "bob-3",
        &data_home(dir.path(), "bob-3"),
        Some("11111-22222-33333-44444"),
        dir.path(),
        &longer,
    );
    for (who, peer) in [("bob", bob), ("alice", alice)] {
        let (_, status, log, stats) = peer.finish_any(Duration::from_secs(60));
        assert!(!status.success(), "{who} took the call:\n{log}");
        assert!(
            log.contains("the call was refused:")
                && log.contains("call code")
                && log.contains("--code"),
            "{who}: {log}"
        );
        let c = &stats.expect("stats")["call"];
        assert_eq!(c["refused"], true, "{who}: {c}");
        assert!(c["connected_unix_ms"].is_null(), "{who}: {c}");
    }
}
