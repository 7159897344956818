//! Packet captures of loopback traffic with tcpdump, and the payloads in them: what the
//! RTSPS and SRTP tests look through for anything sent in clear.

use std::io::Read as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// tcpdump on `lo` writing the packets that match `filter` (tcpdump's expression, e.g.
/// `["udp"]` or `["tcp", "port", "8322"]`) into `file`; returns once it is listening.
pub fn capture(file: &Path, filter: &[&str]) -> Child {
    spawn_tcpdump(Command::new("tcpdump"), "lo", file, filter)
}

/// As [`capture`], on the (Ethernet) interface `iface` of the network namespace `netns`.
pub fn capture_in_netns(netns: &str, iface: &str, file: &Path, filter: &[&str]) -> Child {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, "tcpdump"]);
    spawn_tcpdump(cmd, iface, file, filter)
}

fn spawn_tcpdump(mut cmd: Command, iface: &str, file: &Path, filter: &[&str]) -> Child {
    let mut child = cmd
        .args(["-i", iface, "-n", "-U", "-s", "0", "-w"])
        .arg(file)
        .args(filter)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump is installed (scripts/setup.sh) and the tests run as root");
    let mut err = child.stderr.take().expect("stderr");
    let mut seen = Vec::new();
    let mut b = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("listening on") {
        match err.read(&mut b) {
            Ok(0) | Err(_) => panic!("tcpdump failed: {}", String::from_utf8_lossy(&seen)),
            Ok(n) => seen.extend_from_slice(&b[..n]),
        }
    }
    // Read to the end, so tcpdump never writes into a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    child
}

/// Stops a capture (SIGINT: tcpdump writes what it has and exits).
pub fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// The transport whose payloads [`payloads`] gives.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// The TCP or UDP payloads of a pcap file of Ethernet frames (tcpdump on `lo`), IPv4 only;
/// empty TCP segments left out.
pub fn payloads(pcap: &[u8], proto: Proto) -> Vec<Vec<u8>> {
    assert!(pcap.len() >= 24, "a pcap header");
    assert_eq!(pcap[..4], [0xd4, 0xc3, 0xb2, 0xa1], "little-endian pcap");
    let u32le = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    assert_eq!(u32le(&pcap[20..24]), 1, "link type Ethernet");
    let number = match proto {
        Proto::Tcp => 6,
        Proto::Udp => 17,
    };
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let len = u32le(&pcap[at + 8..at + 12]);
        let frame = &pcap[at + 16..(at + 16 + len).min(pcap.len())];
        at += 16 + len;
        if frame.len() < 34 {
            continue;
        }
        let ip = &frame[14..];
        if ip[0] >> 4 != 4 || ip[9] != number {
            continue;
        }
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
        let Some(segment) = ip.get(usize::from(ip[0] & 0x0f) * 4..total) else {
            continue;
        };
        let header = match proto {
            Proto::Tcp => segment.get(12).map(|b| usize::from(b >> 4) * 4),
            Proto::Udp => Some(8),
        };
        let Some(data) = header.and_then(|h| segment.get(h..)) else {
            continue;
        };
        if !data.is_empty() {
            out.push(data.to_vec());
        }
    }
    out
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
