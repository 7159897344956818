//! SDP parse/write round trip (RFC 8866 §5).
//!
//! For any input: the parser never panics; a description that parses writes back (CRLF, RFC
//! order) to text that parses to the same description; the media helpers never panic.
//!
//! CI runs the same check over generated line soup (`proto/src/sdp.rs`,
//! `arbitrary_input_never_panics_and_round_trips`); keep the two in step.
//!
//! Run: `cargo +nightly fuzz run sdp_parse` (seed corpus: `proto/testdata/sdp/`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use livecast_proto::{codec::Codec, sdp};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(sd) = sdp::parse(&text) else {
        return;
    };
    let written = sd.to_string();
    let again = sdp::parse(&written).expect("written SDP must parse");
    assert_eq!(again, sd, "{written}");
    let _ = sd.control();
    for m in &sd.media {
        let _ = m.control();
        let _ = Codec::from_media(m);
        for pt in m.payload_types() {
            let _ = m.rtpmap(pt);
            let _ = m.fmtp(pt);
        }
    }
});
