//! Publishing (ANNOUNCE, SETUP with `mode=record`, RECORD, TEARDOWN) with any announced SDP.
//!
//! For any input: the server state machine never panics; an accepted SDP's tracks can be set up
//! and recorded, its viewers' description parses, and TEARDOWN frees the path; the H.264
//! keyframe detector never panics.
//!
//! The property is `livecast_proto::fuzzing::rtsp_publish`; CI runs it over generated SDPs
//! (`proto/src/rtsp/server/tests/publish.rs`, `any_announced_sdp_is_refused_or_served`).
//!
//! Run: `cargo +nightly fuzz run rtsp_publish` (seed corpus: `proto/testdata/sdp/`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    livecast_proto::fuzzing::rtsp_publish(data);
});
