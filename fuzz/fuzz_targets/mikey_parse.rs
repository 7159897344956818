//! MIKEY (RFC 3830) messages as they come in an SDP's `a=key-mgmt:mikey`.
//!
//! The property is `livecast_proto::fuzzing::mikey_round_trip`; CI runs it over mutations of
//! GStreamer's message (`proto/src/mikey.rs`, `mutations_never_panic`).
//!
//! Run: `cargo +nightly fuzz run mikey_parse`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    livecast_proto::fuzzing::mikey_round_trip(data);
});
