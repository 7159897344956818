//! The network side of the engine: an RTSP 1.0 client (RFC 2326) that receives RTP/RTCP
//! (RFC 3550) over UDP or interleaved TCP and hands out depacketized media units, in order,
//! with capture times on the sender's clock.
//!
//! This is the I/O shell. It reads the clocks (`Instant` for timing, `SystemTime` for capture
//! and arrival stamps) and owns the sockets; protocol rules live in Sans-IO parts that take
//! `now` as an argument: the RTSP client session
//! ([`Client`](livecast_proto::rtsp::client::Client): which request next, transport fallback,
//! keep-alive, reconnection, when to send RTCP), the RTSP message parser and typed headers,
//! SDP, RTP/RTCP parsing and [`ReceptionStats`](livecast_proto::rtcp::ReceptionStats), the
//! [`JitterBuffer`](livecast_proto::jitter::JitterBuffer) and the depacketizers
//! (`livecast-proto`), and here [`track`] (one track's receive pipeline, clock mapping and
//! keyframe requests).
//!
//! ```text
//!                 control (Pause/Resume/Stop) ──┐
//!  TCP reader task ──┐                          v
//!  UDP reader tasks ─┴─> inbox ──> session loop ──Input──> rtsp::client::Client
//!                                     │   ^                      │
//!                                     │   └──── Output ──────────┘  (Connect, Transmit,
//!                                     │                              BindUdp, Event, Timeout)
//!                                     ├─ per track: SSRC filter, stats, jitter buffer, depacketizer
//!                                     └─> NetEvent::{Described, State, Unit, Stats}
//! ```
//!
//! Protocol choices (RFC references in `livecast_proto::rtsp::client` and here):
//! - DESCRIBE's base URL is `Content-Base`, else `Content-Location`, else the request URL
//!   (RFC 2326 C.1.1); relative `a=control` URLs are resolved against it.
//! - Tracks set up: H.264 (`packetization-mode` 0 or 1), Opus, and `text` tracks with
//!   `t140/1000`, plain or inside RFC 2198 `red` (RFC 4103; redundant blocks recover lost
//!   ones). Others are left out of `Described`.
//! - UDP first (`client_port` pairs on the address our RTSP connection uses, 4 MB receive
//!   buffers, an RTCP receiver report from each port at SETUP and PLAY to open NAT bindings);
//!   interleaved TCP if the server refuses UDP or no RTP arrives within 2 s of PLAY. Once a
//!   session fell back to TCP, reconnects use TCP too.
//! - Keep-alive every half session timeout; RTCP receiver reports every 1.25–3.75 s; an RTCP
//!   PLI (RFC 4585 §6.3.1) when a video picture was damaged by loss, repeated every 300 ms
//!   while packets come and no keyframe has.
//! - Capture times come from RTCP sender reports (NTP ↔ RTP mapping, RFC 3550 §6.4.1); until
//!   the first one, from the PLAY response's `RTP-Info: rtptime` anchored at the response's
//!   arrival (RFC 2326 §12.33), else from the first packet's arrival.
//! - A unit's `arrival_us` is when it left the jitter buffer, complete and in order.
//!
//! Authentication: Digest (MD5 or SHA-256) with [`NetConfig::credentials`] or the URL's,
//! answered by the client state machine; a wrong password or none ends the session (fatal).
//!
//! RTSPS (`rtsps://`, [`tls`]): TLS; the server's certificate trusted on first use (its
//! fingerprint kept in a known-hosts file) or verified by a CA. The media come as SRTP over UDP
//! when the description offers keys (`a=key-mgmt:mikey`) and the transport is not TCP: the
//! state machine sets the tracks up as `RTP/SAVP(F)` with our key, and here one SRTP context
//! of the server's key unprotects every packet before the RTP/RTCP parsers see it (a packet
//! that fails is counted in [`NetStats::srtp_rejected`] and dropped), one of ours protects
//! every RTCP packet we send (receiver reports, NACK, PLI, BYE, the NAT-opening reports).
//! Otherwise (no keys, `--transport tcp`, or the fallback) they come interleaved in the TLS
//! connection. Never SRTP on `rtsp://`, never plain RTP beside TLS.
//!
//! Limitations: no Basic authentication, no SRTP over plain RTSP, no RTSP over HTTP, no RTSP
//! 2.0, no multicast.

mod conn;
mod describe;
mod session;
pub mod tls;
pub mod track;

pub use tls::TlsConfig;

use tokio::sync::mpsc;

use crate::engine::api::{ConnState, TransportPref};
use crate::engine::unit::{MediaUnit, TrackDesc};

/// What the network side reports.
#[derive(Clone, Debug, PartialEq)]
pub enum NetEvent {
    /// After DESCRIBE (on every (re)connect): the tracks we receive and the raw SDP.
    Described {
        tracks: Vec<TrackDesc>,
        sdp: String,
    },
    State(ConnState),
    /// Depacketized, in order per track, with capture times.
    Unit(MediaUnit),
    /// About once a second while connected.
    Stats(NetStats),
}

/// Receive statistics, summed over tracks unless said otherwise.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetStats {
    /// RTP packets received (duplicates included, RFC 3550 A.3).
    pub packets_received: u64,
    /// Cumulative packets lost (expected − received, RFC 3550 A.3; negative with duplicates).
    pub packets_lost: i64,
    /// Interarrival jitter of the video track (else the first track), ms (RFC 3550 A.8).
    pub jitter_ms: f64,
    /// RTP bytes (headers included) over the last interval, bit/s.
    pub bitrate_bps: f64,
    /// Media comes interleaved on the RTSP connection.
    pub tcp: bool,
    /// Media comes as SRTP over UDP (`rtsps://`, `RTP/SAVP(F)` keyed by MIKEY).
    pub srtp: bool,
    /// SRTP/SRTCP packets dropped: failed authentication (altered, or another key), replays,
    /// too short.
    pub srtp_rejected: u64,
    /// The jitter buffer's current wait for missing packets, video track, ms.
    pub jitter_delay_ms: f64,
    /// Retransmissions asked for (sequence numbers named in RTCP generic NACKs; a number
    /// asked twice counts twice).
    pub nack_sent: u64,
    /// RFC 4588 retransmission packets received (in time or not).
    pub retransmissions_received: u64,
    /// Missing packets that came by retransmission in time to be used.
    pub recovered: u64,
    /// Non-reference pictures damaged by a loss and skipped (no keyframe needed).
    pub dropped_pictures: u64,
    /// Video: the rate sent and the rate that arrived between the last two sender reports.
    pub video_delivery: Option<track::Delivery>,
    /// The round trip to the server as measured, ms.
    pub rtt_ms: Option<f64>,
}

/// What the engine asks of the network side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetControl {
    /// RTSP PAUSE (RFC 2326 §10.6): the server holds the stream.
    Pause,
    /// RTSP PLAY (RFC 2326 §10.5) after a pause.
    Resume,
    /// RTSP TEARDOWN (RFC 2326 §10.7), then [`run`] returns.
    Stop,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// `rtsp://host[:port]/path`.
    pub url: String,
    pub transport: TransportPref,
    /// The jitter buffer waits 2 × jitter instead of 3 ×, between 2 and 150 ms.
    pub low_latency: bool,
    /// Call mode: retry every second until the peer answers; once it has, a BYE or a
    /// lost connection ends the call ([`ConnState::CallEnded`]) instead of reconnecting.
    pub call: bool,
    /// Ask for retransmissions where the server offers them (RFC 4585 NACK, RFC 4588 RTX).
    pub nack: bool,
    /// Digest credentials; `None`: those in the URL, if any.
    pub credentials: Option<livecast_proto::rtsp::client::Credentials>,
    /// Whom an `rtsps://` server must be.
    pub tls: TlsConfig,
}

impl NetConfig {
    pub fn new(url: impl Into<String>) -> Self {
        NetConfig {
            url: url.into(),
            transport: TransportPref::Auto,
            low_latency: false,
            call: false,
            nack: true,
            credentials: None,
            tls: TlsConfig::default(),
        }
    }
}

/// Runs the RTSP session until [`NetControl::Stop`] or until the control sender (or the
/// event receiver) is dropped.
///
/// On failure (connection refused, server gone: TCP closed or no media for 5 s) it emits
/// [`ConnState::Reconnecting`] and retries after 0.5 s, doubling to 8 s, forever until
/// stopped; a session that streamed resets the backoff. Fatal errors (bad URL, 4xx to
/// DESCRIBE/SETUP/PLAY such as 404, no playable track) emit [`ConnState::Failed`] and end.
/// A stop ends with [`ConnState::Ended`] after TEARDOWN (waited for at most 2 s).
pub async fn run(
    cfg: NetConfig,
    events: mpsc::Sender<NetEvent>,
    control: mpsc::Receiver<NetControl>,
) {
    session::run(cfg, events, control).await
}
