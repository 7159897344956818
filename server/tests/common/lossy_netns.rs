//! A network namespace whose loopback drops a share of the video-sized UDP datagrams at
//! random (nftables `numgen random`: the kernel here has no netem), for the loss tests of the
//! server (`server/tests/loss.rs`) and of the player (`player/tests/net_loss.rs`, which
//! includes this file by path). Needs root (`ip netns`) and nftables.

use std::io::Write;
use std::process::{Command, Stdio};

/// Datagrams larger than this are video (audio packets are about 200 bytes, RTCP less).
pub const VIDEO_SIZED: u32 = 400;

/// A network namespace with loopback up; removed when dropped.
pub struct LossyNamespace {
    pub name: String,
    /// The user-space delayer ([`LossyNamespace::delay_udp`]), killed when dropped.
    delayer: Option<std::process::Child>,
}

impl LossyNamespace {
    /// Drops `percent` % of the UDP datagrams over [`VIDEO_SIZED`] bytes that arrive in it;
    /// `tag` tells apart the namespaces of one test binary.
    pub fn new(tag: &str, percent: u32) -> Self {
        Self::new_over(tag, percent, VIDEO_SIZED)
    }

    /// [`LossyNamespace::new`], made harsher for benchmarks by the environment:
    /// `LIVECAST_LOSS_ALL_UDP=1` drops `percent` % of every datagram (RTCP with its NACKs and
    /// audio too: loss both ways), `LIVECAST_LOSS_DELAY_MS=N` delays each packet by N ms
    /// (on loopback a round trip of 2N), `LIVECAST_LOSS_PERCENT=P` drops P % instead.
    pub fn from_env(tag: &str, percent: u32) -> Self {
        let all = std::env::var_os("LIVECAST_LOSS_ALL_UDP").is_some();
        let percent = std::env::var("LIVECAST_LOSS_PERCENT")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(percent);
        let mut ns = Self::new_over(tag, percent, if all { 0 } else { VIDEO_SIZED });
        if let Some(ms) = std::env::var("LIVECAST_LOSS_DELAY_MS")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            ns.delay_udp(ms);
        }
        ns
    }

    /// Drops `percent` % of the UDP datagrams over `min_len` bytes (0: all of them, RTCP
    /// and audio too).
    pub fn new_over(tag: &str, percent: u32, min_len: u32) -> Self {
        let name = format!("lcl{}{tag}", std::process::id() % 100_000);
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = LossyNamespace {
            name,
            delayer: None,
        };
        run_ok(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]));
        one_datagram_per_packet(&ns.name, "lo");
        nft_input_rule(
            &ns.name,
            &format!(
                "meta l4proto udp meta length > {min_len} numgen random mod 100 < {percent} \
                 counter drop"
            ),
        );
        ns
    }

    /// Delays every packet arriving in the namespace by `ms` (on its loopback both
    /// directions arrive, so the round trip grows by twice that): see [`delay_udp_in`].
    pub fn delay_udp(&mut self, ms: u32) {
        self.delayer = Some(delay_udp_in(&self.name, ms));
    }

    /// Datagrams the rule dropped so far.
    pub fn dropped(&self) -> u64 {
        nft_dropped(&self.name)
    }

    /// Ends the loss: the path is clean from now on (and [`LossyNamespace::dropped`] reads 0).
    pub fn clear_loss(&self) {
        run_ok(
            Command::new("ip")
                .args(["netns", "exec", &self.name, "nft", "flush", "chain", "inet"])
                .args(["livecast_loss", "input"]),
        );
    }

    /// `program` (arguments to add) run inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

/// Makes `dev` in namespace `ns` carry each datagram of a sender's GSO message
/// (`UDP_SEGMENT`, which the server's fan-out uses) as a packet of its own. Otherwise the
/// kernel hands the whole message through the input hook as one packet, and a random drop
/// there takes a whole frame's datagrams at once, which no real path does (a network
/// card, or the kernel before a device without segmentation offload, splits them).
pub fn one_datagram_per_packet(ns: &str, dev: &str) {
    run_ok(Command::new("ip").args(["-n", ns, "link", "set", "dev", dev, "gso_max_segs", "1"]));
}

/// Runs `c` (iproute2, nft) to the end; panics with its error output if it failed.
pub fn run_ok(c: &mut Command) {
    let out = c.output().expect("ip (iproute2) and nft are installed");
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Puts `rule` (with a counter) in the input chain of a table `inet livecast_loss` in network
/// namespace `ns`, the table [`nft_dropped`] reads.
pub fn nft_input_rule(ns: &str, rule: &str) {
    let rules = format!(
        "table inet livecast_loss {{\n  chain input {{\n    type filter hook input priority 0; \
         policy accept;\n    {rule}\n  }}\n}}\n"
    );
    let mut nft = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft (nftables) is installed (scripts/setup.sh)");
    nft.stdin
        .take()
        .expect("stdin")
        .write_all(rules.as_bytes())
        .expect("write the nft rules");
    assert!(nft.wait().expect("nft").success(), "nft failed in {ns}");
}

/// Packets the `inet livecast_loss` rule of namespace `ns` dropped so far.
pub fn nft_dropped(ns: &str) -> u64 {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "nft",
            "list",
            "table",
            "inet",
            "livecast_loss",
        ])
        .output()
        .expect("nft");
    let s = String::from_utf8_lossy(&out.stdout);
    s.split("packets ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Delays every packet arriving in network namespace `ns` by `ms`: an iptables NFQUEUE
/// rule (this kernel has neither netem nor nftables' queue statement) and
/// `scripts/nfq-delay.py`, which holds each packet in user space and then lets it through.
/// Returns the delayer, to be killed when done (the rule lets packets pass without it).
/// Needs root and iptables (scripts/setup.sh installs it).
pub fn delay_udp_in(ns: &str, ms: u32) -> std::process::Child {
    use std::io::{BufRead, BufReader};
    let in_ns = |program: &str| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    };
    // Every packet, the RTSP connection's too: the player measures the round trip on it.
    let status = in_ns("iptables")
        .args(["-A", "INPUT", "-j", "NFQUEUE", "--queue-num", "0"])
        .arg("--queue-bypass")
        .status()
        .expect("iptables is installed (scripts/setup.sh)");
    assert!(status.success(), "iptables NFQUEUE rule in {ns}");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/nfq-delay.py");
    let mut child = in_ns("python3")
        .args([script, "0", &ms.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the delayer");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the delayer's first line");
    assert_eq!(
        line.trim(),
        "ready",
        "scripts/nfq-delay.py did not start in {ns}"
    );
    child
}

impl Drop for LossyNamespace {
    fn drop(&mut self) {
        if let Some(mut d) = self.delayer.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
