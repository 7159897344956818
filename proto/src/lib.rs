//! # livecast-proto
//!
//! Wire formats and protocol state for Livecast, written Sans-IO: nothing in this crate opens a
//! socket, spawns a task or reads a clock. Every function that needs the time takes `now` as an
//! argument, so tests can drive minutes of a session in milliseconds and assert exactly what
//! happened.
//!
//! | module | what | reference |
//! |---|---|---|
//! | [`rtsp`] | RTSP 1.0 streaming parser/writer, typed headers, URLs, client and server session state machines | RFC 2326 |
//! | [`sdp`] | session descriptions: parse and build | RFC 8866 (4566) |
//! | [`rtp`] | RTP fixed header parse/write | RFC 3550 §5 |
//! | [`rtcp`] | RTCP SR, RR, SDES, BYE, PLI, FIR; reception statistics | RFC 3550 §6, A.3, A.8; RFC 4585 §6.3.1; RFC 5104 §4.3.1 |
//! | [`codec`] | payload formats: H.264 (and Annex B), Opus, T.140 text with RED | RFC 6184, RFC 7587, RFC 4103 |
//! | [`mp4`] | fragmented MP4 writer (H.264 `avc1`, Opus `dOps`, `tx3g` text), crash-safe by construction | ISO/IEC 14496-12, -15; 3GPP TS 26.245 |
//! | [`jitter`] | reorder / jitter buffer: sequence order, loss timeout sized from interarrival jitter | RFC 3550 A.1, A.8 |
//! | [`seq`] | sequence-number validation and interarrival jitter, used by the three above | RFC 3550 A.1, A.8 |
//! | [`time`] | newtypes for SSRC, sequence numbers and NTP time | RFC 3550 §4, §5.1 |
//! | [`rendition`] | renditions of a broadcast: the SDP attribute listing them, the viewer policy that moves down on loss and back up | (ours) |
//! | [`trust`] | RTSPS trust on first use: certificate fingerprints, the known-hosts file | RFC 2326 §3.2 (`rtsps`) |
//! | [`call`] | a call's code (its Digest password) and safety code | RFC 7616 |
//!
//! Errors are small enums per module that carry the byte offset or line of the fault; the I/O
//! shells (`livecast-server`, `livecast-player`) add connection context once, at the edge.
//!
//! Limitations: RTSP 2.0 (RFC 7826) is not spoken; requests with another version are parsed so
//! the server can answer `505`. Multicast transports are parsed but not served.

pub mod call;
pub mod codec;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod jitter;
pub mod mikey;
pub mod rate;
pub mod rendition;

pub mod mp4;
pub mod rtcp;
pub mod rtp;
pub mod rtsp;
pub mod sdp;
pub mod seq;
pub mod srtp;
pub mod time;
pub mod trust;
