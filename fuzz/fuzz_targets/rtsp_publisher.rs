//! The publisher (ANNOUNCE/SETUP/RECORD) against any answers a relay may give.
//!
//! The property is `livecast_proto::fuzzing::publisher_answers`; CI runs it over generated
//! answers (`proto/src/rtsp/publisher/tests.rs`, `generated_answers_never_stall_it`).
//!
//! Run: `cargo +nightly fuzz run rtsp_publisher`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    livecast_proto::fuzzing::publisher_answers(data);
});
