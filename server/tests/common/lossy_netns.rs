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
}

impl LossyNamespace {
    /// Drops `percent` % of the UDP datagrams over [`VIDEO_SIZED`] bytes that arrive in it;
    /// `tag` tells apart the namespaces of one test binary.
    pub fn new(tag: &str, percent: u32) -> Self {
        let name = format!("lcl{}{tag}", std::process::id() % 100_000);
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let ok = |c: &mut Command| {
            let out = c.output().expect("ip (iproute2) is installed");
            assert!(
                out.status.success(),
                "{c:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = LossyNamespace { name };
        ok(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]));
        let rules = format!(
            "table inet livecast_loss {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    \
             meta l4proto udp meta length > {VIDEO_SIZED} numgen random mod 100 < {percent} counter drop\n  }}\n}}\n"
        );
        let mut nft = ns
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nft (nftables) is installed");
        nft.stdin
            .take()
            .expect("stdin")
            .write_all(rules.as_bytes())
            .expect("write the nft rules");
        assert!(nft.wait().expect("nft").success(), "nft failed");
        ns
    }

    /// Datagrams the rule dropped so far.
    pub fn dropped(&self) -> u64 {
        let out = self
            .command("nft")
            .args(["list", "table", "inet", "livecast_loss"])
            .output()
            .expect("nft");
        let s = String::from_utf8_lossy(&out.stdout);
        s.split("packets ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// `program` (arguments to add) run inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for LossyNamespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
