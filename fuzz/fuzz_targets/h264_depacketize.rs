//! H.264 depacketization (RFC 6184 §5.6–§5.8) of arbitrary packet sequences.
//!
//! For any sequence of packets (sequence numbers mostly advancing, a few timestamps, arbitrary
//! payloads): the depacketizer never panics, and every access unit it returns has at least one
//! NAL unit and no empty NAL unit.
//!
//! CI runs the same check over xorshift-generated packets (`arbitrary_packets_never_panic` in
//! `proto/src/codec/h264.rs`); keep the two in step.
//!
//! Run: `cargo +nightly fuzz run h264_depacketize`.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use livecast_proto::codec::h264::{AccessUnit, Depacketizer};

#[derive(Arbitrary, Debug)]
struct Packet {
    /// Added to the previous sequence number: mostly 1, sometimes loss, duplicates, reordering.
    seq_step: u8,
    /// Few distinct timestamps, so access units span packets.
    timestamp: u8,
    marker: bool,
    payload: Vec<u8>,
}

fn check(au: &AccessUnit) {
    assert!(!au.nals.is_empty());
    assert!(au.nals.iter().all(|n| !n.is_empty()));
    let annexb = au.to_annexb();
    assert!(annexb.len() >= 5 * au.nals.len());
}

fuzz_target!(|packets: Vec<Packet>| {
    let mut d = Depacketizer::new();
    let mut seq = 0u16;
    for p in packets {
        seq = seq.wrapping_add(u16::from(p.seq_step)).wrapping_sub(128);
        if let Ok(Some(au)) = d.push(seq, u32::from(p.timestamp), p.marker, &p.payload) {
            check(&au);
        }
        while let Some(au) = d.pull() {
            check(&au);
        }
    }
    if let Some(au) = d.flush() {
        check(&au);
    }
});
