//! RTSP 1.0 parse/write round trip (RFC 2326 §4, §10.12, §12).
//!
//! For any input: the parser never panics; a complete message writes back to bytes that parse
//! to the same message and are consumed entirely; every typed header that parses from the
//! input writes back (`to_value`) to a value that parses to the same header.
//!
//! The property is `livecast_proto::fuzzing::rtsp_round_trip`; CI runs it over seeded mutations
//! of the captured golden messages (`proto/src/rtsp/tests.rs`,
//! `mutated_golden_messages_round_trip`).
//!
//! Run: `cargo +nightly fuzz run rtsp_roundtrip` (seed corpus: `proto/testdata/rtsp/`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| livecast_proto::fuzzing::rtsp_round_trip(data));
