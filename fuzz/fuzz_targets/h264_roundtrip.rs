//! H.264 packetize → depacketize round trip (RFC 6184) with an arbitrary payload size.
//!
//! For any list of access units made of NAL units (made valid for Annex B: a carried NAL type,
//! emulation prevention applied) and any `max_payload`: every payload fits, exactly one per
//! access unit has the marker bit, and depacketizing gives back the same NAL units per access
//! unit, complete.
//!
//! The property is `livecast_proto::fuzzing::h264_round_trip`; CI runs it over seeded
//! generated NAL lists (`arbitrary_nals_round_trip` in `proto/src/codec/h264.rs`).
//!
//! Run: `cargo +nightly fuzz run h264_roundtrip`.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use livecast_proto::codec::h264::add_emulation_prevention;

#[derive(Arbitrary, Debug)]
struct Input {
    max_payload: u16,
    access_units: Vec<Vec<(u8, Vec<u8>)>>,
}

/// A NAL unit from a header byte and an RBSP: types the packetizer drops (0, AUD 9, 24..=31)
/// become 1; emulation prevention makes it safe between start codes.
fn nal(header: u8, rbsp: &[u8]) -> Vec<u8> {
    let t = header & 0x1f;
    let header = if t == 0 || t == 9 || t >= 24 {
        (header & 0xe0) | 1
    } else {
        header
    };
    let mut n = vec![header];
    n.extend(add_emulation_prevention(rbsp));
    n
}

fuzz_target!(|input: Input| {
    let aus: Vec<Vec<Vec<u8>>> = input
        .access_units
        .iter()
        .map(|au| au.iter().map(|(h, rbsp)| nal(*h, rbsp)).collect())
        .collect();
    livecast_proto::fuzzing::h264_round_trip(&aus, usize::from(input.max_payload));
});
