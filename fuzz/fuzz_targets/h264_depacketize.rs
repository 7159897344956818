//! H.264 depacketization (RFC 6184 §5.6–§5.8) of arbitrary packet sequences.
//!
//! For any sequence of packets (sequence numbers mostly advancing, a few timestamps, arbitrary
//! payloads): the depacketizer never panics, and every access unit it returns has at least one
//! NAL unit and no empty NAL unit.
//!
//! The property is `livecast_proto::fuzzing::h264_depacketize`; CI runs it over seeded
//! generated packets (`arbitrary_packets_never_panic` in `proto/src/codec/h264.rs`).
//!
//! Run: `cargo +nightly fuzz run h264_depacketize`.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use livecast_proto::fuzzing::{h264_depacketize, H264Packet};

#[derive(Arbitrary, Debug)]
struct Packet {
    /// Added to the previous sequence number: mostly 1, sometimes loss, duplicates, reordering.
    seq_step: u8,
    /// Few distinct timestamps, so access units span packets.
    timestamp: u8,
    marker: bool,
    payload: Vec<u8>,
}

fuzz_target!(|packets: Vec<Packet>| {
    let mut seq = 0u16;
    h264_depacketize(packets.iter().map(|p| {
        seq = seq.wrapping_add(u16::from(p.seq_step)).wrapping_sub(128);
        H264Packet {
            seq,
            timestamp: u32::from(p.timestamp),
            marker: p.marker,
            payload: &p.payload,
        }
    }));
});
