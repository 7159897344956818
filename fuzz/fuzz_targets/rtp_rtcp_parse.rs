//! RTP (RFC 3550 §5.1) and RTCP compound (RFC 3550 §6) parsing.
//!
//! For any input: neither parser panics; an RTP packet that parses writes back
//! (`RtpPacket::write`) to bytes that parse to the same packet; an RTCP compound that parses
//! writes back (`write_compound`) to bytes that parse to the same packets.
//!
//! The property is `livecast_proto::fuzzing::rtp_rtcp_round_trip`; CI runs it over seeded
//! generated inputs (`arbitrary_input_never_panics_and_round_trips` in `proto/src/rtp.rs` and
//! `proto/src/rtcp.rs`).
//!
//! Run: `cargo +nightly fuzz run rtp_rtcp_parse`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| livecast_proto::fuzzing::rtp_rtcp_round_trip(data));
