//! RTSP 1.0 parse/write round trip (RFC 2326 §4, §10.12, §12).
//!
//! For any input: the parser never panics; a complete message writes back to bytes that parse
//! to the same message and are consumed entirely; every typed header that parses from the
//! input writes back (`to_value`) to a value that parses to the same header.
//!
//! The same check runs in CI over deterministic mutations of the captured golden messages
//! (`proto/src/rtsp/tests.rs`, `mutated_golden_messages_round_trip`); keep the two in step.
//!
//! Run: `cargo +nightly fuzz run rtsp_roundtrip` (seed corpus: `proto/testdata/rtsp/`).

#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use livecast_proto::rtsp::{
    parse, CSeq, ContentBase, ContentLength, ContentType, Header, Limits, Message, Parsed, Public,
    Range, RtpInfo, Session, Transport,
};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(Parsed::Complete { message, consumed }) = parse(data, &limits) {
        assert!(consumed <= data.len());
        let mut out = Vec::new();
        message.write_to(&mut out);
        // The written form may be longer than the input (CRLF for LF, ": " for ":", U+FFFD for
        // invalid UTF-8): give the header section room for that.
        let relaxed = Limits {
            max_header_bytes: limits.max_header_bytes * 3 + 64,
            ..limits
        };
        match parse(&out, &relaxed) {
            Ok(Parsed::Complete {
                message: again,
                consumed,
            }) => {
                assert_eq!(again, message);
                assert_eq!(consumed, out.len());
            }
            other => panic!(
                "{message:?} written as {:?} parses as {other:?}",
                String::from_utf8_lossy(&out)
            ),
        }
        let headers = match &message {
            Message::Request(r) => Some(&r.headers),
            Message::Response(r) => Some(&r.headers),
            _ => None,
        };
        for (_, value) in headers.into_iter().flat_map(|h| h.iter()) {
            check_typed_headers(value);
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        check_typed_headers(s);
    }
});

fn check_typed_headers(s: &str) {
    check::<CSeq>(s);
    check::<Session>(s);
    check::<Transport>(s);
    check::<Range>(s);
    check::<RtpInfo>(s);
    check::<Public>(s);
    check::<ContentBase>(s);
    check::<ContentLength>(s);
    check::<ContentType>(s);
}

fn check<H: Header + PartialEq + Debug>(s: &str) {
    if let Ok(h) = H::parse(s) {
        let v = h.to_value();
        match H::parse(&v) {
            Ok(again) => assert_eq!(again, h, "{s:?} -> {v:?}"),
            Err(e) => panic!("{s:?} -> {h:?} -> {v:?}: {e}"),
        }
    }
}
