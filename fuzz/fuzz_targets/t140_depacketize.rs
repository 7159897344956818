//! T.140 real-time text (RFC 4103) with RFC 2198 redundancy, receive side.
//!
//! For any sequence of packets (the first bytes pick sequence number, payload type and length):
//! the depacketizer never panics, and every block it returns is applied to a `TextBuffer`
//! without panicking. A payload made by `RedPacketizer` always depacketizes to its text.
//!
//! The property is `livecast_proto::fuzzing::t140_depacketize`; CI runs it over seeded
//! generated inputs (`arbitrary_packets_never_panic` in `proto/src/codec/t140.rs`).
//!
//! Run: `cargo +nightly fuzz run t140_depacketize`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| livecast_proto::fuzzing::t140_depacketize(data));
