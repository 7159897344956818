//! RTP (RFC 3550 §5.1) and RTCP compound (RFC 3550 §6) parsing.
//!
//! For any input: neither parser panics; an RTP packet that parses writes back
//! (`RtpPacket::write`) to bytes that parse to the same packet; an RTCP compound that parses
//! writes back (`write_compound`) to bytes that parse to the same packets.
//!
//! CI runs the same checks over xorshift-generated inputs (`arbitrary_input_never_panics_and_
//! round_trips` in `proto/src/rtp.rs` and `proto/src/rtcp.rs`); keep them in step.
//!
//! Run: `cargo +nightly fuzz run rtp_rtcp_parse`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use livecast_proto::{rtcp, rtp};

fuzz_target!(|data: &[u8]| {
    let _ = rtp::looks_like_rtcp(data);
    if let Ok(p) = rtp::parse(data) {
        let mut out = Vec::new();
        p.write(&mut out);
        assert_eq!(rtp::parse(&out).expect("written RTP must parse"), p);
        let mut fixed = Vec::new();
        rtp::write(&p.header(), p.payload, &mut fixed);
        let q = rtp::parse(&fixed).expect("written RTP must parse");
        assert_eq!((q.header(), q.payload), (p.header(), p.payload));
    }
    if let Ok(packets) = rtcp::parse_compound(data) {
        let mut out = Vec::new();
        rtcp::write_compound(&packets, &mut out);
        let again = rtcp::parse_compound(&out).expect("written RTCP must parse");
        assert_eq!(again, packets);
    }
});
