//! T.140 real-time text (RFC 4103) with RFC 2198 redundancy, receive side.
//!
//! For any sequence of packets (the first bytes pick sequence number, payload type and length):
//! the depacketizer never panics, and every block it returns is applied to a `TextBuffer`
//! without panicking. A payload made by `RedPacketizer` always depacketizes to its text.
//!
//! CI runs the same checks over xorshift-generated inputs
//! (`arbitrary_packets_never_panic` in `proto/src/codec/t140.rs`); keep them in step.
//!
//! Run: `cargo +nightly fuzz run t140_depacketize`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use livecast_proto::codec::t140::{Depacketizer, RedPacketizer, TextBuffer};

fuzz_target!(|data: &[u8]| {
    let mut d = Depacketizer::new(98, Some(99));
    let mut screen = TextBuffer::new();
    let mut rest = data;
    while rest.len() >= 4 {
        let seq = u16::from_be_bytes([rest[0], rest[1]]);
        let pt = if rest[2] & 1 == 0 { 98 } else { 99 };
        let len = usize::from(rest[3]).min(rest.len() - 4);
        let payload = &rest[4..4 + len];
        rest = &rest[4 + len..];
        if let Ok(blocks) = d.push(seq, u32::from(seq) * 10, pt, payload) {
            for b in blocks {
                screen.apply(&b.text);
            }
        }
    }
    let text = String::from_utf8_lossy(data);
    let mut p = RedPacketizer::new(98, 2);
    let payload = p.packetize(1000, &text);
    let got = Depacketizer::new(98, Some(99)).push(1, 1000, 99, &payload).expect("own RED parses");
    if !text.is_empty() {
        assert_eq!(got.last().map(|b| b.text.as_str()), Some(text.as_ref()));
    }
});
