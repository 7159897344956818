//! SDP parse/write round trip (RFC 8866 §5).
//!
//! For any input: the parser never panics; a description that parses writes back (CRLF, RFC
//! order) to text that parses to the same description; the media helpers never panic.
//!
//! The property is `livecast_proto::fuzzing::sdp_round_trip`; CI runs it over generated line
//! soup (`proto/src/sdp.rs`, `arbitrary_input_never_panics_and_round_trips`).
//!
//! Run: `cargo +nightly fuzz run sdp_parse` (seed corpus: `proto/testdata/sdp/`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    livecast_proto::fuzzing::sdp_round_trip(&String::from_utf8_lossy(data));
});
