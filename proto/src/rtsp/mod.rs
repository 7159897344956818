//! RTSP 1.0 (RFC 2326): messages, a streaming parser and writer, typed headers, and the
//! client and server session state machines.
//!
//! - [`message`]: [`Request`] (§6), [`Response`] (§7), [`InterleavedFrame`] (§10.12) and
//!   [`Message`], with builders and a writer that always frames correctly (CRLF line endings,
//!   `Content-Length` for every body, §4.3).
//! - [`parse`](mod@parse): [`parse()`] looks at a buffer and answers "incomplete", "a message of N
//!   bytes" or "invalid at byte N"; it is Sans-IO and keeps no state, so the same code serves
//!   the server (reading requests) and the player (reading responses and interleaved RTP).
//! - [`headers`]: [`Headers`] stores every line as strings in order; [`Header`] gives typed
//!   access (`headers.get_typed::<Transport>()`: absent = `Ok(None)`, malformed = `Err`) to
//!   `CSeq` (§12.17), `Session` (§12.37), `Transport` (§12.39), `Range` (§12.29), `RTP-Info`
//!   (§12.33), `Public` (§12.28), `Content-Base` (§12.11), `Content-Length` (§12.14) and
//!   `Content-Type` (§12.16).
//! - [`auth`]: `WWW-Authenticate` (§12.44) and `Authorization` (§12.5): Digest (RFC 2617,
//!   RFC 7616: MD5, SHA-256) and Basic, with the response computation and a constant-time check.
//! - [`client`]: the client session (OPTIONS ... TEARDOWN, transport fallback, keep-alive,
//!   reconnection) as a Sans-IO state machine.
//! - [`session`]: the server session states of RFC 2326 appendix A.1.
//! - [`server`](mod@server): the server's request handling, session table, keep-alive and
//!   expiry as a Sans-IO state machine (`handle_input` / `poll_output`).
//! - [`url`]: `rtsp://` URLs, request paths and control-URL resolution (§3.2, C.1.1).
//!
//! Design, after scottlamb/retina and sdroege/rtsp-types: hand-written, dependency-free,
//! lenient with what real devices send (LF-only lines, folded headers, odd spacing — see
//! [`parse`](mod@parse)) and precise in errors (byte offset and kind). Tests replay requests
//! captured from ffmpeg and GStreamer (`proto/testdata/rtsp/`), check every streaming split
//! point, and round-trip pseudo-random mutations, as the `rtsp_roundtrip` fuzz target does.
//!
//! Limitations: RTSP 2.0 (RFC 7826) is not spoken (its requests parse, with
//! [`Version::Other`], so a server can answer `505`); RTSP over HTTP tunnelling is not
//! supported; `Range` understands only normal play time (§3.6) and keeps other units verbatim.

pub mod auth;
pub mod client;
pub mod headers;
pub mod message;
pub mod parse;
pub mod publisher;
pub mod server;
pub mod session;
pub mod url;

#[cfg(test)]
mod tests;

pub use auth::{Algorithm, Authorization, DigestChallenge, DigestCredentials, WwwAuthenticate};
pub use headers::{
    CSeq, ContentBase, ContentLength, ContentType, Header, HeaderError, Headers, NptTime, Public,
    Range, RtpInfo, RtpInfoEntry, Session, Transport, TransportProfile, TransportSpec,
};
pub use message::{
    header_names, write_interleaved, InterleavedFrame, Message, Method, Request, Response,
    StatusCode, Version,
};
pub use parse::{parse, Limits, ParseError, ParseErrorKind, Parsed};
pub use url::RtspUrl;
