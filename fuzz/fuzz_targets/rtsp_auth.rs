//! `WWW-Authenticate` / `Authorization` parse and write (RFC 2617, RFC 7616, RFC 7617).
//!
//! For any input: neither parser panics; a header that parses writes back to a value that
//! parses to the same header; a parsed Digest challenge answered with a password verifies
//! against that password's HA1; verifying parsed credentials never panics.
//!
//! The property is `livecast_proto::fuzzing::rtsp_auth_round_trip`; CI runs it over generated
//! token soup (`proto/src/rtsp/auth.rs`, `generated_values_round_trip`).
//!
//! Run: `cargo +nightly fuzz run rtsp_auth`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    livecast_proto::fuzzing::rtsp_auth_round_trip(&String::from_utf8_lossy(data));
});
