//! Our SRTP (proto/src/srtp.rs) against libsrtp, through GStreamer's `srtpdec`
//! (scripts/interop/gst-srtp-decrypt.py, run with Debian's python3): what we protect, libsrtp
//! decrypts to the same packets, across a sequence number rollover; and the key and salt go
//! there as MIKEY would carry them.

use std::io::Write;
use std::process::{Command, Stdio};

use livecast_proto::mikey::MikeyMessage;
use livecast_proto::srtp::Context;

const SSRC: u32 = 0x1234_5678;

fn rtp(seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&SSRC.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

#[test]
fn libsrtp_decrypts_what_we_protect() {
    let tek: Vec<u8> = (0..30).map(|i| (i * 7 + 3) as u8).collect();
    // Through MIKEY and back, as a receiver would get it.
    let m = MikeyMessage::from_key_mgmt(
        &MikeyMessage::srtp(1, &[SSRC], tek.clone(), 0, vec![5; 16]).key_mgmt(),
    )
    .unwrap();
    let (key, salt) = m.master_key().unwrap();
    let mut ctx = Context::new(&key, &salt);
    let originals: Vec<Vec<u8>> = (0..300u32)
        .map(|i| {
            let seq = (65_400 + i) as u16;
            let payload: Vec<u8> = (0..(20 + i % 200)).map(|j| (i + j) as u8).collect();
            rtp(seq, i * 3000, &payload)
        })
        .collect();
    let mut input = Vec::new();
    for p in &originals {
        let s = ctx.protect_rtp(p).unwrap();
        input.extend_from_slice(&(s.len() as u16).to_be_bytes());
        input.extend_from_slice(&s);
    }
    let hex: String = tek.iter().map(|b| format!("{b:02x}")).collect();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/interop/gst-srtp-decrypt.py"
    );
    let mut child = Command::new("/usr/bin/python3")
        .args([script, &hex, &SSRC.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("Debian's python3 with GStreamer (the test command installs it)");
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got = Vec::new();
    let mut at = 0;
    let b = &out.stdout;
    while at + 2 <= b.len() {
        let n = usize::from(u16::from_be_bytes([b[at], b[at + 1]]));
        got.push(b[at + 2..at + 2 + n].to_vec());
        at += 2 + n;
    }
    assert_eq!(
        got.len(),
        originals.len(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(got == originals, "libsrtp's plaintext differs from ours");
}
