//! H.264 packetize → depacketize round trip (RFC 6184) with an arbitrary payload size.
//!
//! For any list of access units made of NAL units (made valid for Annex B: a carried NAL type,
//! emulation prevention applied) and any `max_payload`: every payload fits, exactly one per
//! access unit has the marker bit, and depacketizing gives back the same NAL units per access
//! unit, complete.
//!
//! CI runs the same check over xorshift-generated NAL lists (`arbitrary_nals_round_trip` in
//! `proto/src/codec/h264.rs`); keep the two in step.
//!
//! Run: `cargo +nightly fuzz run h264_roundtrip`.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use livecast_proto::codec::h264::{add_emulation_prevention, nal_type, Depacketizer, Packetizer};

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
    let mut packetizer = Packetizer::new(usize::from(input.max_payload));
    let max = packetizer.max_payload();
    let mut depacketizer = Depacketizer::new();
    let mut seq = 0u16;
    let mut got = Vec::new();
    for (i, au) in aus.iter().enumerate() {
        let mut annexb = Vec::new();
        for n in au {
            annexb.extend_from_slice(&[0, 0, 0, 1]);
            annexb.extend_from_slice(n);
        }
        let mut payloads = Vec::new();
        packetizer.packetize(&annexb, &mut payloads);
        assert_eq!(
            payloads.iter().filter(|p| p.marker).count(),
            usize::from(!au.is_empty())
        );
        for p in &payloads {
            assert!(p.data.len() <= max);
            let au = depacketizer
                .push(seq, i as u32 * 3000, p.marker, &p.data)
                .expect("own payloads are valid");
            got.extend(au);
            seq = seq.wrapping_add(1);
        }
    }
    let want: Vec<&Vec<Vec<u8>>> = aus.iter().filter(|a| !a.is_empty()).collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(&g.nals, w);
        assert!(g.complete);
        assert_eq!(g.is_keyframe, w.iter().any(|n| nal_type(n) == 5));
    }
});
