//! The RTSP 1.0 server's protocol core (RFC 2326): request handling, the session table,
//! transports, keep-alive and expiry, as a Sans-IO state machine in the str0m style.
//!
//! The shell (sockets, tasks, the media fan-out) feeds [`Input`]s to
//! [`Server::handle_input`] and then drains [`Server::poll_output`] until it returns
//! [`Output::Timeout`]: responses to write ([`Output::Transmit`]), effects to carry out
//! ([`Output::Event`]: subscribe a client to a track, stop, ask the encoder for a keyframe,
//! send a sender report, close a connection) and the instant at which it must feed
//! [`Input::Timeout`] if nothing else happens. Nothing here reads a clock, opens a socket or
//! draws OS randomness: time comes in every input, and session ids and initial sequence numbers
//! come from a generator seeded by [`Server::new`], so a test replays a whole session exactly.
//!
//! ```text
//!  ConnectionOpened ─┐                        ┌─> Transmit { conn, response }
//!  Request ──────────┤                        ├─> Event(Subscribe | Unsubscribe |
//!  BadRequest ───────┼─> handle_input ─ Server┤          KeyframeRequest | SenderReport |
//!  Rtcp ─────────────┤        (now)           │          CloseConnection | Session*)
//!  ResumeSeq ────────┤                        └─> Timeout(next deadline)
//!  ConnectionClosed ─┤
//!  Timeout / Shutdown┘
//! ```
//!
//! The session description is answered as configured (with `RTP/AVPF` and NACK/RTX on the
//! tracks that offer them), but to a client whose `User-Agent` names live555, which drops AVPF
//! media, it goes without feedback ([`crate::sdp::MediaDescription::without_feedback`]). A
//! SETUP with plain `RTP/AVP` on an AVPF medium is accepted (ffmpeg always asks for it).
//!
//! What the state machine knows of the media side comes in [`ServerConfig`]: per track its SSRC,
//! its RTP clock ([`RtpClock`], so `RTP-Info: rtptime` is computed here from the `wall` time of
//! the request) and the server's UDP ports per address family; the session description to
//! answer DESCRIBE with (its origin address is set per request to the address the client
//! reached). The one fact that comes back from the fan-out is where a paused client's
//! numbering stopped ([`Input::ResumeSeq`], after an [`Unsubscribed::Paused`]), so that the
//! next PLAY continues it.
//!
//! Rules kept here: `455` with `Allow` for a method not valid in the session's state
//! (appendix A.1), `454` for unknown sessions, `461` when no transport alternative can be
//! served, `459` for a SETUP of the aggregate URL, `505` (and the connection closed) for another
//! RTSP version, `551` with `Unsupported` for any `Require`, `405` with `Allow` for the methods of
//! a recording server, `406` when `Accept` excludes SDP, `503` above
//! [`ServerConfig::max_sessions`], `453 Not Enough Bandwidth` for a new viewer above
//! [`ServerConfig::max_viewers`] or while the shell reports the media path overloaded
//! ([`Input::Overloaded`]), with a [`ServerEvent::ViewerRefused`] to log; the timeout announced in every `Session` header; sessions
//! end on TEARDOWN, on expiry (no request or RTCP from the client for the timeout, RFC 2326
//! §12.37), or when the connection that created them closes; RTCP from a client's registered
//! address (or on its interleaved connection) is keep-alive, and a PLI or FIR in it becomes a
//! [`ServerEvent::KeyframeRequest`], at most one per session per
//! [`ServerConfig::keyframe_request_interval`] (feedback counts only from the address, or
//! interleaved channel, of a track the session set up); sender reports 150 ms and 1 s after PLAY so players can
//! synchronise their tracks at once.
//!
//! NACKs (RFC 4585 §6.2.1, typed in [`crate::rtcp`]) become [`ServerEvent::Retransmit`] in the
//! client's numbering, at most [`ServerConfig::retransmissions_per_second`] per session; how
//! the shell resends is fixed at SETUP ([`Retransmission`]): RFC 4588 RTX on the session's own
//! SSRC for an `RTP/AVPF` client, the original packet for a plain `RTP/AVP` one, nothing over
//! TCP.
//!
//! Access control ([`access`], on when [`ServerConfig::auth`] holds a users table): every
//! request but OPTIONS needs Digest credentials of a user with the `read` role. A request
//! without them gets `401` with two challenges (SHA-256, then MD5) on a nonce bound to the
//! connection; wrong credentials get their `401` after a random delay ([`Output::Transmit`] at
//! a deadline, in virtual time), then the connection closes, with a
//! [`ServerEvent::AuthFailed`] to log; an address that fails too often gets `403` for a while.
//!
//! Publishing ([`publish`], on when [`ServerConfig::publish`] is set): ANNOUNCE with an SDP on
//! any other path than our own, SETUP with `mode=record`, RECORD, TEARDOWN; one publisher
//! per path. The shell learns of a publisher with [`ServerEvent::PublishStarted`] and of its
//! end with [`ServerEvent::PublishEnded`]; the media themselves never pass through here.
//!
//! RTSPS: a connection opened with `tls` ([`Input::ConnectionOpened`]) takes media only
//! interleaved (plain UDP alternatives are skipped, `461` when none is left) and also accepts
//! Basic credentials (RFC 7617).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use super::headers::{
    CSeq, ContentBase, NptTime, Public, Range, RtpInfo, RtpInfoEntry, Session, Transport,
    TransportProfile, TransportSpec,
};
use super::message::{header_names, Method, Request, Response, StatusCode, Version};
use super::parse::ParseError;
use super::session::{ServerSession, State, StateError};
use super::url;
use crate::rtcp;
use crate::sdp::SessionDescription;
use crate::time::Ssrc;
pub use access::{failure_log_line, AuthConfig, Roles, User, REALM};
use rand::rngs::{SmallRng, StdRng};
use rand::{Rng, SeedableRng};

/// Methods we answer (RFC 2326 §10), in the order of the `Public` header.
pub const PUBLIC: [Method; 7] = [
    Method::Options,
    Method::Describe,
    Method::Setup,
    Method::Play,
    Method::Pause,
    Method::Teardown,
    Method::GetParameter,
];

/// Delays after PLAY at which a client gets its first sender reports.
const FIRST_SENDER_REPORTS: [Duration; 2] = [Duration::from_millis(150), Duration::from_secs(1)];

/// Default of [`ServerConfig::keyframe_request_interval`]: a client whose picture is damaged
/// gets a keyframe within a round trip once, then at most one a second, however often it
/// asks (our player repeats its PLI every 300 ms until the keyframe comes).
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_secs(1);

/// Default of [`ServerConfig::retransmissions_per_second`]: 100 packets (about 1.1 Mbit/s of
/// 1400-byte video packets) a second per session, several times what 10 % loss of a 2 Mbit/s
/// stream needs with a retry or two, and a bound on what one client can make us send.
pub const RETRANSMISSIONS_PER_SECOND: u32 = 100;

/// How long the shell keeps sent packets of a track with NACK to send again (the
/// `rtx-time` the SDP announces): a NACK comes a round trip plus the client's wait for
/// reordering after the loss, and a retransmission later than a second after the packet would
/// be too late for any player's buffer.
pub const RETRANSMIT_WINDOW: Duration = Duration::from_secs(1);

/// One TCP connection, as numbered by the shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// A session's numeric id: the subscriber id on the tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

/// A track's RTP clock: RTP timestamp `rtp_base` stands for the wall-clock time `wall_epoch`,
/// and it advances `clock_rate` ticks a second (RFC 3550 §5.1). Capture times of every track
/// map through the same wall clock, which is what lets players synchronise them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpClock {
    pub rtp_base: u32,
    pub clock_rate: u32,
    pub wall_epoch: SystemTime,
}

impl RtpClock {
    /// The RTP timestamp of the wall-clock instant `t` (wrapping, as RTP timestamps do).
    pub fn timestamp_at(&self, t: SystemTime) -> u32 {
        let rate = u128::from(self.clock_rate);
        let ticks = match t.duration_since(self.wall_epoch) {
            Ok(d) => (d.as_nanos() * rate / 1_000_000_000) as i64,
            Err(e) => -((e.duration().as_nanos() * rate / 1_000_000_000) as i64),
        };
        self.rtp_base.wrapping_add(ticks as u32)
    }
}

/// What the server knows of one track; its control URL is `trackID=<index>`.
#[derive(Clone, Debug)]
pub struct TrackConfig {
    pub ssrc: Ssrc,
    pub clock: RtpClock,
    /// `server_port` (RTP, RTCP) for IPv4 clients; `None` if the track has no IPv4 socket.
    pub server_ports_v4: Option<(u16, u16)>,
    /// The same for IPv6 clients.
    pub server_ports_v6: Option<(u16, u16)>,
    /// The SDP offers this track as `RTP/AVPF` with `a=rtcp-fb:<pt> nack`: its clients' generic
    /// NACKs are answered (RFC 4585 §6.2.1).
    pub nack: bool,
    /// The `rtx` payload type (RFC 4588) the SDP associates with this track's, if any: clients
    /// that set up `RTP/AVPF` get retransmissions in it, on their own SSRC.
    pub rtx_payload_type: Option<u8>,
}

/// How the packets a client NACKs on one track are sent again (the shell's part: it keeps the
/// packets and each client's numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retransmission {
    /// Not at all: the track offers no NACK, or the client is interleaved on TCP (which loses
    /// nothing on the way; what our full queue drops, resending would only add to).
    None,
    /// The original packet again, its SSRC and the client's sequence number unchanged: for a
    /// client that set up plain `RTP/AVP` on an `RTP/AVPF` medium (ffmpeg does, and ignores
    /// RFC 4588 packets).
    Original,
    /// RFC 4588 retransmission packets (SSRC-multiplexed, §8.3) in `payload_type`, on the
    /// session's own `ssrc`, numbered from `initial_seq`: for a client that set up
    /// `RTP/AVPF` (GStreamer's rtspsrc).
    Rtx {
        payload_type: u8,
        ssrc: Ssrc,
        initial_seq: u16,
    },
}

/// Settings of the state machine.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Stream path without slashes (`live`).
    pub path: String,
    /// Sessions without keep-alive for this long end (announced as `;timeout=`).
    pub session_timeout: Duration,
    /// A connection that owns no session and sends nothing for this long is closed.
    pub idle_connection_timeout: Duration,
    /// Upper bound on concurrent sessions; SETUPs beyond it get `503`.
    pub max_sessions: usize,
    /// Viewers (sessions) served at most; a new one beyond it gets `453 Not Enough Bandwidth`.
    pub max_viewers: Option<usize>,
    /// The `Server` header (RFC 2326 §12.36).
    pub server_name: String,
    /// The DESCRIBE answer; the origin address is set per request.
    pub sdp: SessionDescription,
    pub tracks: Vec<TrackConfig>,
    /// One session's PLIs and FIRs become at most one [`ServerEvent::KeyframeRequest`] per
    /// this long, so one client cannot make the encoder send keyframes to everyone at the
    /// rate of the encoder's own limiter (which still holds for all sessions together).
    pub keyframe_request_interval: Duration,
    /// Packets one session may have resent per second at most (its NACKs beyond are dropped).
    pub retransmissions_per_second: u32,
    /// Digest authentication against a users table; `None` (the default): anyone may watch.
    pub auth: Option<AuthConfig>,
    /// Accept publishers on every other path; `None` (the default): ANNOUNCE and RECORD get
    /// `405`.
    pub publish: Option<PublishConfig>,
    /// More paths of our own broadcast (renditions at other sizes, issue 13); empty (the
    /// default): only [`ServerConfig::path`]. With any, [`ServerConfig::path`] serves the
    /// first `sdp.media.len()` tracks.
    pub own_paths: Vec<OwnPath>,
}

/// One more path of our own broadcast: `path/trackID=i` is our track `tracks[i]` (a track may
/// be served on several paths, e.g. one audio for every rendition).
#[derive(Clone, Debug)]
pub struct OwnPath {
    /// Without leading or trailing slashes (`live/640x360`).
    pub path: String,
    /// Its DESCRIBE answer.
    pub sdp: SessionDescription,
    pub tracks: Vec<usize>,
}

impl ServerConfig {
    /// Defaults: path `live`, 60 s session timeout, 60 s idle connections, 4096 sessions.
    pub fn new(sdp: SessionDescription, tracks: Vec<TrackConfig>) -> Self {
        ServerConfig {
            path: "live".into(),
            session_timeout: Duration::from_secs(60),
            idle_connection_timeout: Duration::from_secs(60),
            max_sessions: 4096,
            max_viewers: None,
            server_name: "livecast".into(),
            sdp,
            tracks,
            keyframe_request_interval: KEYFRAME_REQUEST_INTERVAL,
            retransmissions_per_second: RETRANSMISSIONS_PER_SECOND,
            auth: None,
            publish: None,
            own_paths: Vec::new(),
        }
    }
}

/// Where RTCP from a client arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcpSource {
    /// A datagram from `from` on the RTCP socket of track `track`.
    Udp { from: SocketAddr, track: usize },
    /// An interleaved frame (RFC 2326 §10.12) on `channel` of connection `conn`.
    Interleaved { conn: ConnId, channel: u8 },
}

/// Something that happened, at `now`.
#[derive(Clone, Debug)]
pub enum Input {
    /// A client connected from `peer` to our address `local`; `tls`: over TLS (RTSPS), where
    /// media goes only interleaved in the connection and Basic credentials are accepted.
    ConnectionOpened {
        now: Instant,
        conn: ConnId,
        peer: SocketAddr,
        local: SocketAddr,
        tls: bool,
    },
    /// A whole request arrived on `conn`; `wall` is the wall-clock time, for `RTP-Info`.
    Request {
        now: Instant,
        wall: SystemTime,
        conn: ConnId,
        req: Request,
    },
    /// Bytes on `conn` that are not a valid request: answered, then the connection closes.
    BadRequest {
        now: Instant,
        conn: ConnId,
        error: ParseError,
    },
    /// RTCP (or any interleaved frame) from a client: `data` is the datagram or frame payload.
    Rtcp {
        now: Instant,
        source: RtcpSource,
        data: Vec<u8>,
    },
    /// After [`Unsubscribed::Paused`]: the sequence number the client's stream of `track`
    /// continues at on the next PLAY.
    ResumeSeq {
        client: ClientId,
        track: usize,
        seq: u16,
    },
    /// The connection is gone (closed by the peer, by an error, or after
    /// [`ServerEvent::CloseConnection`]); its sessions end.
    ConnectionClosed { now: Instant, conn: ConnId },
    /// The instant of the last [`Output::Timeout`] (or later) has come.
    Timeout(Instant),
    /// The server stops: every session ends, every connection closes.
    Shutdown(Instant),
    /// The media path cannot serve one more viewer at full rate (`true`: e.g. the fan-out is
    /// dropping frames) or can again (`false`). While overloaded, new viewers get `453`; those
    /// already watching keep their stream.
    Overloaded { now: Instant, overloaded: bool },
    /// After [`ServerEvent::PublishStarted`]: the shell re-serves the tracks of `path` (in
    /// the order of its `m=` sections) as `tracks`, numbered from `first` on in its events
    /// (numbers no other track uses, ours or a served path's; the shell never reuses one, so a
    /// late event for an old path's track finds nothing); viewers may now DESCRIBE, SETUP and
    /// PLAY it. If `client` no longer publishes `path`, or a number is taken, a
    /// [`ServerEvent::PublishEnded`] answers. `added`: media sections the shell serves
    /// beyond the announced ones (captions it makes of the published audio), described to
    /// viewers after them; `tracks` then holds the announced tracks followed by these.
    PathReady {
        path: String,
        client: ClientId,
        first: usize,
        tracks: Vec<TrackConfig>,
        added: Vec<crate::sdp::MediaDescription>,
    },
}

/// SRTP master key and salt (AES_CM_128_HMAC_SHA1_80, RFC 3711), as MIKEY carries them.
pub type SrtpMasterKey = (
    [u8; crate::mikey::MASTER_KEY_LEN],
    [u8; crate::mikey::MASTER_SALT_LEN],
);

/// The keys of one `RTP/SAVP(F)` subscription: ours, which protects what we send (announced in
/// the SDP's `a=key-mgmt` to this connection), and the client's from its `KeyMgmt` header
/// (RFC 4567 §3.3), which unprotects its SRTCP (`None` if it sent none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SrtpKeys {
    pub send: SrtpMasterKey,
    pub receive: Option<SrtpMasterKey>,
}

/// Where a client wants its packets of one track.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaSink {
    Udp {
        rtp: SocketAddr,
        rtcp: SocketAddr,
    },
    Interleaved {
        conn: ConnId,
        rtp_channel: u8,
        rtcp_channel: u8,
    },
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    Teardown,
    /// No keep-alive within the session timeout.
    Expired,
    /// The connection that created it closed.
    ConnectionClosed,
    Shutdown,
    /// A publisher: another one took its path over (`--takeover`). A viewer: the publisher of
    /// its path left.
    PublisherGone,
}

/// Why a track of a client stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsubscribed {
    /// PAUSE: report where the numbering stopped with [`Input::ResumeSeq`].
    Paused,
    /// The track was set up again with another transport.
    Replaced,
    /// The session ended.
    Ended(EndReason),
}

impl Unsubscribed {
    /// Whether the client is sent an RTCP BYE (RFC 3550 §6.6): when its session ends while it
    /// may still be listening.
    pub fn sends_bye(self) -> bool {
        matches!(
            self,
            Unsubscribed::Ended(
                EndReason::Teardown
                    | EndReason::Expired
                    | EndReason::Shutdown
                    | EndReason::PublisherGone
            )
        )
    }
}

/// An effect for the shell to carry out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerEvent {
    /// A session was created by SETUP.
    SessionStarted {
        session: String,
        client: ClientId,
        peer: SocketAddr,
    },
    /// Start sending `track` to `client` on `sink`, its first packet (at a keyframe for video)
    /// numbered `initial_seq`, as announced in `RTP-Info`. `resumed`: the numbering continues
    /// an earlier PLAY of this client, which may already have had the most recent packets.
    /// `retransmission`: how to answer its [`ServerEvent::Retransmit`]s.
    Subscribe {
        client: ClientId,
        track: usize,
        sink: MediaSink,
        initial_seq: u16,
        resumed: bool,
        retransmission: Retransmission,
        /// `RTP/SAVP(F)`: encrypt everything sent to this client (RTP, RTX, RTCP) with
        /// `send`, and decrypt its RTCP with `receive`.
        srtp: Option<SrtpKeys>,
    },
    /// Stop sending `track` to `client` (a no-op if it is not being sent).
    Unsubscribe {
        client: ClientId,
        track: usize,
        sink: MediaSink,
        reason: Unsubscribed,
    },
    /// A request from `peer` carried wrong credentials (unknown `user`, or a wrong response)
    /// for `path`; its `401` follows after a delay and the connection closes. `locked_out`:
    /// this failure used up the address's budget, it now gets `403` for
    /// [`AuthConfig::lockout`]. Log it with [`failure_log_line`].
    AuthFailed {
        peer: SocketAddr,
        user: String,
        path: String,
        locked_out: bool,
    },
    /// A new viewer from `peer` was refused with `453` (`why`: the limit or the overload).
    ViewerRefused { peer: SocketAddr, why: String },
    /// A client asked for a keyframe of `track` (RTCP PLI or FIR).
    KeyframeRequest { track: usize },
    /// Send `client` again the packets of `track` it numbers `seqs` (its own numbering, as in
    /// its NACK), as its subscription's [`Retransmission`] says; those the shell no longer
    /// has, or never sent this client, are skipped. Within the session's budget already.
    Retransmit {
        client: ClientId,
        track: usize,
        seqs: Vec<u16>,
    },
    /// Send `client` an RTCP sender report for `track` now.
    SenderReport { client: ClientId, track: usize },
    /// `client` reported on how it receives `track` (an RR or SR report block about our
    /// source, RFC 3550 §6.4): loss since its last report, and LSR/DLSR for the round trip.
    ReceptionReport {
        client: ClientId,
        track: usize,
        block: rtcp::ReportBlock,
    },
    /// Close the connection (after writing what was transmitted on it).
    CloseConnection { conn: ConnId },
    SessionEnded {
        session: String,
        client: ClientId,
        peer: SocketAddr,
        reason: EndReason,
    },
    /// A publisher sent RECORD: `path` now carries the media described by `sdp` (as
    /// announced), and track `i` of it (the `i`-th `m=` section) arrives from
    /// `tracks[..] == (i, source)`: over UDP from `source`'s `rtp`/`rtcp` addresses to the
    /// ingest ports, or interleaved on its connection's channels.
    PublishStarted {
        path: String,
        session: String,
        client: ClientId,
        peer: SocketAddr,
        sdp: Box<SessionDescription>,
        tracks: Vec<(usize, MediaSink)>,
    },
    /// The publisher of `path` left (its session ended for `reason`); packets still arriving
    /// from it are to be dropped.
    PublishEnded {
        path: String,
        client: ClientId,
        reason: EndReason,
    },
}

/// What the shell must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Transmit {
        conn: ConnId,
        response: Response,
    },
    Event(ServerEvent),
    /// Nothing more to do; feed [`Input::Timeout`] at this instant unless another input comes
    /// first.
    Timeout(Instant),
}

/// A misuse of the state machine by its shell (never caused by network input).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerError {
    /// An input named a connection that was never opened (or already closed).
    UnknownConnection(ConnId),
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerError::UnknownConnection(c) => write!(f, "unknown connection {}", c.0),
        }
    }
}

impl std::error::Error for ServerError {}

struct Conn {
    peer: SocketAddr,
    local: SocketAddr,
    tls: bool,
    last_activity: Instant,
    /// CloseConnection was emitted; waiting for ConnectionClosed.
    closing: bool,
    /// Sessions this connection created (a connection with none can become idle).
    sessions: usize,
    /// A failed authentication's answer is waiting: requests get nothing until it is sent and
    /// the connection closed.
    penalized: bool,
    /// RTSPS: the SRTP key the last DESCRIBE announced to this connection, and the session
    /// that uses it (one session per key: two sessions numbering the same SSRC with one key
    /// would reuse keystream).
    srtp_key: Option<(SrtpMasterKey, Option<String>)>,
}

/// One track as set up by a client.
#[derive(Clone, Debug)]
struct Setup {
    track: usize,
    sink: MediaSink,
    resume_seq: Option<u16>,
    retransmission: Retransmission,
    srtp: Option<SrtpKeys>,
}

struct SessionEntry {
    state: ServerSession,
    client: ClientId,
    /// The connection that created the session; when it closes, the session ends.
    conn: ConnId,
    peer: SocketAddr,
    setups: Vec<Setup>,
    /// When the next first-after-PLAY sender reports are due.
    reports_due: Vec<Instant>,
    /// The path this session publishes to (a publisher's; `None` for a viewer).
    publishing: Option<String>,
    /// When this session's last keyframe request was passed on to the encoder.
    last_keyframe_request: Option<Instant>,
    /// The retransmission budget: when the current one-second window began, and how many
    /// packets were asked for in it.
    nack_window: Option<(Instant, u32)>,
}

impl SessionEntry {
    fn next_deadline(&self) -> Option<Instant> {
        let expiry = (!self.kept_by_connection()).then(|| self.state.deadline());
        self.reports_due.iter().copied().chain(expiry).min()
    }

    /// A publisher whose media come interleaved on its connection lives as long as the
    /// connection: the media are its keep-alive (they do not pass through here).
    fn kept_by_connection(&self) -> bool {
        self.publishing.is_some()
            && self
                .setups
                .iter()
                .all(|s| matches!(s.sink, MediaSink::Interleaved { .. }))
    }
}

/// A failed request: status, a reason for the body, extra headers.
struct Fail {
    status: StatusCode,
    msg: String,
    headers: Vec<(&'static str, String)>,
}

impl Fail {
    fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        Fail {
            status,
            msg: msg.into(),
            headers: Vec::new(),
        }
    }

    fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl From<StateError> for Fail {
    fn from(e: StateError) -> Self {
        Fail::new(StatusCode::METHOD_NOT_VALID_IN_THIS_STATE, e.to_string())
            .with_header(header_names::ALLOW, allowed_in(e.state, e.publisher))
    }
}

/// What access control makes of a request.
enum Gate {
    Pass,
    Answer(Response, bool),
    Held,
}

enum Target {
    Aggregate,
    Track(usize),
}

/// The server's protocol state: connections, sessions, RTCP sources, pending outputs.
pub struct Server {
    cfg: ServerConfig,
    /// Session ids and initial sequence numbers; the shell seeds it from the OS, tests from a
    /// constant.
    rng: SmallRng,
    /// SRTP keys: a CSPRNG, seeded by the shell from OS entropy ([`Server::set_key_seed`]).
    key_rng: StdRng,
    conns: BTreeMap<ConnId, Conn>,
    sessions: BTreeMap<String, SessionEntry>,
    /// A client's RTCP address -> its session id.
    rtcp_sources: HashMap<SocketAddr, String>,
    next_client: u64,
    out: VecDeque<Output>,
    /// The latest `now` seen.
    last_now: Instant,
    /// The next wake-up, while no deadline can have moved earlier. Keep-alives only move
    /// deadlines later, so most inputs (RTCP above all) leave it valid and cost no pass over
    /// the sessions; a wake-up that comes early finds nothing due and computes the next.
    wake: Option<Instant>,
    /// The shell said the media path is overloaded ([`Input::Overloaded`]).
    overloaded: bool,
    /// Authentication state, when configured.
    access: Option<access::Access>,
    /// Answers held back until their instant (failed authentication), each closing its
    /// connection once sent.
    delayed: Vec<(Instant, ConnId, Response)>,
    /// Published (or announced) paths, by path without slashes.
    paths: BTreeMap<String, publish::Announced>,
    /// The index the next re-served track of a published path gets (after our own tracks;
    /// never reused, so an old subscription never names a new track).
    next_track: usize,
}

impl Server {
    /// A server with no connections, started at `now`; `seed` drives session ids and initial
    /// sequence numbers.
    pub fn new(cfg: ServerConfig, seed: u64, now: Instant) -> Self {
        let cfg_tracks = cfg.tracks.len();
        Server {
            access: cfg.auth.clone().map(access::Access::new),
            delayed: Vec::new(),
            cfg,
            rng: SmallRng::seed_from_u64(seed),
            key_rng: StdRng::seed_from_u64(!seed),
            conns: BTreeMap::new(),
            sessions: BTreeMap::new(),
            rtcp_sources: HashMap::new(),
            next_client: 1,
            out: Default::default(),
            last_now: now,
            wake: None,
            overloaded: false,
            paths: BTreeMap::new(),
            next_track: cfg_tracks,
        }
    }

    /// Seeds the generator of SRTP keys (RTSPS `RTP/SAVP`) with 32 bytes of OS entropy; without
    /// it they come from the 64-bit seed of [`Server::new`], good for tests only.
    pub fn set_key_seed(&mut self, seed: [u8; 32]) {
        self.key_rng = StdRng::from_seed(seed);
    }

    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    /// Number of live sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Whether `client`'s session exists, plays, and has `track` set up: what the shell checks
    /// after carrying out a [`ServerEvent::Subscribe`], since a TEARDOWN or connection close on
    /// another connection may have been handled (and its unsubscribe carried out) in between.
    pub fn is_subscribed(&self, client: ClientId, track: usize) -> bool {
        self.sessions.values().any(|s| {
            s.client == client
                && s.state.state() == State::Playing
                && s.setups.iter().any(|t| t.track == track)
        })
    }

    /// Sessions in the Playing state.
    pub fn playing_count(&self) -> usize {
        self.sessions
            .values()
            .filter(|s| s.state.state() == State::Playing)
            .count()
    }

    /// The state of session `id`, if it exists.
    pub fn session_state(&self, id: &str) -> Option<State> {
        self.sessions.get(id).map(|s| s.state.state())
    }

    /// Handles one input; then drain [`Server::poll_output`].
    pub fn handle_input(&mut self, input: Input) -> Result<(), ServerError> {
        match input {
            Input::ConnectionOpened {
                now,
                conn,
                peer,
                local,
                tls,
            } => {
                self.tick(now);
                self.conns.insert(
                    conn,
                    Conn {
                        peer,
                        local,
                        tls,
                        last_activity: now,
                        closing: false,
                        sessions: 0,
                        penalized: false,
                        srtp_key: None,
                    },
                );
                self.wake = None;
            }
            Input::Request {
                now,
                wall,
                conn,
                req,
            } => {
                self.tick(now);
                let c = self
                    .conns
                    .get_mut(&conn)
                    .ok_or(ServerError::UnknownConnection(conn))?;
                c.last_activity = c.last_activity.max(now);
                if c.penalized {
                    return Ok(());
                }
                match self.authorize(&req, conn, now) {
                    Gate::Pass => {}
                    Gate::Held => return Ok(()),
                    Gate::Answer(response, close) => {
                        self.out.push_back(Output::Transmit { conn, response });
                        if close {
                            self.close_connection(conn);
                        }
                        return Ok(());
                    }
                }
                // The response goes out before the effects of its request (a PLAY's Subscribe),
                // so an interleaved client reads it before the first packet it announces.
                let at = self.out.len();
                let (response, close) = self.handle_request(&req, conn, now, wall);
                self.out.insert(at, Output::Transmit { conn, response });
                if close {
                    self.close_connection(conn);
                }
            }
            Input::BadRequest { now, conn, error } => {
                self.tick(now);
                if !self.conns.contains_key(&conn) {
                    return Err(ServerError::UnknownConnection(conn));
                }
                let response = Response::new(error.status())
                    .header(header_names::CONNECTION, "close")
                    .header(header_names::SERVER, self.cfg.server_name.as_str());
                self.out.push_back(Output::Transmit { conn, response });
                self.close_connection(conn);
            }
            Input::Rtcp { now, source, data } => {
                self.tick(now);
                self.on_rtcp(now, source, &data);
            }
            Input::ResumeSeq { client, track, seq } => {
                if let Some(s) = self.sessions.values_mut().find(|s| s.client == client) {
                    if let Some(setup) = s.setups.iter_mut().find(|t| t.track == track) {
                        setup.resume_seq = Some(seq);
                    }
                }
            }
            Input::ConnectionClosed { now, conn } => {
                self.tick(now);
                self.conns.remove(&conn);
                self.delayed.retain(|(_, c, _)| *c != conn);
                if let Some(a) = &mut self.access {
                    a.forget(conn);
                }
                self.paths
                    .retain(|_, p| p.conn != conn || p.session.is_some());
                let ids: Vec<String> = self
                    .sessions
                    .iter()
                    .filter(|(_, s)| s.conn == conn)
                    .map(|(k, _)| k.clone())
                    .collect();
                for id in ids {
                    self.end_session(&id, EndReason::ConnectionClosed);
                }
            }
            Input::Timeout(now) => {
                self.tick(now);
                self.on_timeout(now);
                self.wake = None;
            }
            Input::Overloaded { now, overloaded } => {
                self.tick(now);
                self.overloaded = overloaded;
            }
            Input::PathReady {
                path,
                client,
                first,
                tracks,
                added,
            } => self.path_ready(path, client, first, tracks, added),
            Input::Shutdown(now) => {
                self.tick(now);
                let ids: Vec<String> = self.sessions.keys().cloned().collect();
                for id in ids {
                    self.end_session(&id, EndReason::Shutdown);
                }
                let conns: Vec<ConnId> = self.conns.keys().copied().collect();
                for c in conns {
                    self.close_connection(c);
                }
            }
        }
        Ok(())
    }

    /// The next thing to do: transmits and events in the order they arose, then the next
    /// timeout.
    pub fn poll_output(&mut self) -> Output {
        if let Some(o) = self.out.pop_front() {
            return o;
        }
        let wake = match self.wake {
            Some(t) => t,
            None => *self.wake.insert(self.next_timeout()),
        };
        Output::Timeout(wake)
    }

    fn tick(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
    }

    /// The earliest session deadline, sender report or idle-connection limit; an hour from the
    /// last input when there is none.
    fn next_timeout(&self) -> Instant {
        let sessions = self
            .sessions
            .values()
            .filter_map(SessionEntry::next_deadline);
        let idle = self.idle_deadlines().map(|(_, t)| t);
        let delayed = self.delayed.iter().map(|(t, _, _)| *t);
        sessions
            .chain(idle)
            .chain(delayed)
            .min()
            .unwrap_or(self.last_now + Duration::from_secs(3600))
    }

    /// When each connection that owns no session (and is not closing already) becomes idle.
    fn idle_deadlines(&self) -> impl Iterator<Item = (ConnId, Instant)> + '_ {
        self.conns
            .iter()
            .filter(|(_, c)| !c.closing && c.sessions == 0)
            .map(|(id, c)| (*id, c.last_activity + self.cfg.idle_connection_timeout))
    }

    fn on_timeout(&mut self, now: Instant) {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delayed)
            .into_iter()
            .partition(|(t, _, _)| *t <= now);
        self.delayed = later;
        for (_, conn, response) in due {
            self.out.push_back(Output::Transmit { conn, response });
            self.close_connection(conn);
        }
        let expired: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.state.is_expired(now) && !s.kept_by_connection())
            .map(|(k, _)| k.clone())
            .collect();
        for id in expired {
            self.end_session(&id, EndReason::Expired);
        }
        for s in self.sessions.values_mut() {
            let before = s.reports_due.len();
            s.reports_due.retain(|t| *t > now);
            if s.reports_due.len() < before {
                for setup in &s.setups {
                    self.out.push_back(Output::Event(ServerEvent::SenderReport {
                        client: s.client,
                        track: setup.track,
                    }));
                }
            }
        }
        let idle: Vec<ConnId> = self
            .idle_deadlines()
            .filter(|(_, t)| now >= *t)
            .map(|(id, _)| id)
            .collect();
        for c in idle {
            self.close_connection(c);
        }
    }

    fn close_connection(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if !c.closing {
                c.closing = true;
                self.out
                    .push_back(Output::Event(ServerEvent::CloseConnection { conn }));
            }
        }
    }

    fn end_session(&mut self, id: &str, reason: EndReason) {
        let Some(entry) = self.sessions.remove(id) else {
            return;
        };
        if let Some(c) = self.conns.get_mut(&entry.conn) {
            c.sessions = c.sessions.saturating_sub(1);
        }
        // Its connection may have no session left: an idle deadline, maybe earlier.
        self.wake = None;
        if let Some(path) = &entry.publishing {
            let recording = entry.state.state() == State::Recording;
            self.unpublish(path, id, entry.client, reason, recording);
        }
        for s in entry.setups.iter().filter(|_| entry.publishing.is_none()) {
            self.unsubscribe(id, entry.client, s, Unsubscribed::Ended(reason));
        }
        self.out.push_back(Output::Event(ServerEvent::SessionEnded {
            session: id.to_owned(),
            client: entry.client,
            peer: entry.peer,
            reason,
        }));
    }

    /// Stops a track of a client. Its RTCP source is forgotten when the track is gone for good
    /// (replaced or its session ended), not on PAUSE: a paused client's reports still keep its
    /// session alive, and after the next PLAY its PLIs still count. `session` is the id the
    /// source must still point to (another session may have taken the address since).
    fn unsubscribe(&mut self, session: &str, client: ClientId, s: &Setup, reason: Unsubscribed) {
        if let (MediaSink::Udp { rtcp, .. }, false) = (s.sink, reason == Unsubscribed::Paused) {
            if self.rtcp_sources.get(&rtcp).is_some_and(|id| id == session) {
                self.rtcp_sources.remove(&rtcp);
            }
        }
        self.out.push_back(Output::Event(ServerEvent::Unsubscribe {
            client,
            track: s.track,
            sink: s.sink,
            reason,
        }));
    }

    fn on_rtcp(&mut self, now: Instant, source: RtcpSource, data: &[u8]) {
        let parsed = rtcp::parse_compound(data);
        // The session the RTCP is from, and the track it is about.
        let (sid, track) = match source {
            // Only a client's own RTCP counts: a stranger can neither keep a session alive
            // nor ask for keyframes or retransmissions.
            RtcpSource::Udp { from, track } => {
                let Ok(_) = &parsed else {
                    return;
                };
                let Some((sid, s)) = self
                    .rtcp_sources
                    .get(&from)
                    .and_then(|id| self.sessions.get_key_value(id))
                else {
                    return;
                };
                let sid = sid.clone();
                if s.publishing.is_some() {
                    // A publisher's reports only keep its session alive.
                    if let Some(s) = self.sessions.get_mut(&sid) {
                        s.state.keepalive(now);
                    }
                    return;
                }
                // Feedback counts only for a track the session set up from this address.
                let track = s
                    .setups
                    .iter()
                    .any(|t| {
                        t.track == track
                            && matches!(t.sink, MediaSink::Udp { rtcp, .. } if rtcp == from)
                    })
                    .then_some(track);
                if let Some(s) = self.sessions.get_mut(&sid) {
                    s.state.keepalive(now);
                }
                (sid, track)
            }
            RtcpSource::Interleaved { conn, channel } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.last_activity = c.last_activity.max(now);
                }
                let mut found = None;
                for (sid, s) in self.sessions.iter_mut().filter(|(_, s)| s.conn == conn) {
                    s.state.keepalive(now);
                    if found.is_none() {
                        found = s
                            .setups
                            .iter()
                            .find_map(|t| match t.sink {
                                MediaSink::Interleaved { rtcp_channel, .. }
                                    if rtcp_channel == channel =>
                                {
                                    Some(t.track)
                                }
                                _ => None,
                            })
                            .map(|t| (sid.clone(), t));
                    }
                }
                match found {
                    Some((sid, t)) => (sid, Some(t)),
                    None => return,
                }
            }
        };
        let (Some(track), Ok(packets)) = (track, parsed) else {
            return;
        };
        let Some(media_ssrc) = self.track_cfg(track).map(|t| t.ssrc) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if packets.iter().any(|p| p.requests_keyframe_of(media_ssrc)) {
            // The session's budget: one request passed on per interval, the rest dropped.
            let due = s
                .last_keyframe_request
                .is_none_or(|last| now >= last + self.cfg.keyframe_request_interval);
            if due {
                s.last_keyframe_request = Some(now);
                self.out
                    .push_back(Output::Event(ServerEvent::KeyframeRequest { track }));
            }
        }
        for p in &packets {
            let blocks = match p {
                rtcp::RtcpPacket::ReceiverReport(r) => &r.reports,
                rtcp::RtcpPacket::SenderReport(r) => &r.reports,
                _ => continue,
            };
            for b in blocks.iter().filter(|b| b.ssrc == media_ssrc) {
                self.out
                    .push_back(Output::Event(ServerEvent::ReceptionReport {
                        client: s.client,
                        track,
                        block: *b,
                    }));
            }
        }
        let retransmits = s.state.state() == State::Playing
            && s.setups
                .iter()
                .any(|u| u.track == track && u.retransmission != Retransmission::None);
        if !retransmits {
            return;
        }
        let budget = self.cfg.retransmissions_per_second;
        let mut seqs: Vec<u16> = Vec::new();
        // A datagram can name a million numbers (repeated ones cost no budget): only so many
        // are looked at, so a hostile NACK costs no more than an honest one.
        let mut examined = 0;
        let nacks = packets.iter().filter_map(|p| match p {
            rtcp::RtcpPacket::Nack(n) if n.media == media_ssrc => Some(n),
            _ => None,
        });
        'nacks: for n in nacks {
            for seq in n.lost() {
                examined += 1;
                if examined > 4 * budget.max(64) {
                    break 'nacks;
                }
                if seqs.contains(&seq) {
                    continue;
                }
                let (start, used) = match s.nack_window {
                    Some((start, used)) if now < start + Duration::from_secs(1) => (start, used),
                    _ => (now, 0),
                };
                if used >= budget {
                    s.nack_window = Some((start, used));
                    break;
                }
                s.nack_window = Some((start, used + 1));
                seqs.push(seq);
            }
        }
        if !seqs.is_empty() {
            self.out.push_back(Output::Event(ServerEvent::Retransmit {
                client: s.client,
                track,
                seqs,
            }));
        }
    }

    /// Access control, when configured: whether the request goes through, is answered now
    /// (and whether the connection closes after), or was a failed attempt whose answer waits
    /// in `delayed`.
    fn authorize(&mut self, req: &Request, conn: ConnId, now: Instant) -> Gate {
        let (Some(access), Some(c)) = (self.access.as_mut(), self.conns.get(&conn)) else {
            return Gate::Pass;
        };
        let (peer, tls) = (c.peer, c.tls);
        let cseq = req.headers.get_typed::<CSeq>().ok().flatten();
        let need = publish::need(req);
        match access.check(now, conn, peer.ip(), tls, req, need) {
            access::Verdict::Allow => Gate::Pass,
            access::Verdict::Challenge { stale } => {
                Gate::Answer(self.challenge(cseq, conn, now, stale), false)
            }
            access::Verdict::Failed { user, locked_out } => {
                let max = access.cfg.max_failure_delay;
                let response = self
                    .challenge(cseq, conn, now, false)
                    .header(header_names::CONNECTION, "close");
                let delay_ms = self.rng.random_range(0..=max.as_millis() as u64);
                self.delayed
                    .push((now + Duration::from_millis(delay_ms), conn, response));
                self.wake = None;
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.penalized = true;
                }
                let path = url::request_path(&req.uri).unwrap_or(&req.uri).to_owned();
                self.out.push_back(Output::Event(ServerEvent::AuthFailed {
                    peer,
                    user,
                    path,
                    locked_out,
                }));
                Gate::Held
            }
            access::Verdict::LockedOut => Gate::Answer(
                self.error(
                    StatusCode::FORBIDDEN,
                    cseq,
                    "too many failed attempts from this address",
                )
                .header(header_names::CONNECTION, "close"),
                true,
            ),
            access::Verdict::Forbidden => Gate::Answer(
                self.error(
                    StatusCode::FORBIDDEN,
                    cseq,
                    if need == access::Need::Publish {
                        "this user may not publish (it needs the publish role)"
                    } else {
                        "this user may not watch"
                    },
                ),
                false,
            ),
        }
    }

    /// `401` with the two challenges on a fresh nonce for `conn`.
    fn challenge(
        &mut self,
        cseq: Option<CSeq>,
        conn: ConnId,
        now: Instant,
        stale: bool,
    ) -> Response {
        let mut r = self.error(StatusCode::UNAUTHORIZED, cseq, "authentication required");
        if let Some(a) = self.access.as_mut() {
            for v in a.challenge(&mut self.rng, now, conn, stale) {
                r = r.header(header_names::WWW_AUTHENTICATE, v);
            }
        }
        r
    }

    /// Handles one request; returns the response and whether the connection closes after it.
    /// Never panics, whatever the client sent.
    fn handle_request(
        &mut self,
        req: &Request,
        conn: ConnId,
        now: Instant,
        wall: SystemTime,
    ) -> (Response, bool) {
        let cseq = match req.headers.get_typed::<CSeq>() {
            Ok(Some(c)) => c,
            Ok(None) => {
                return (
                    self.error(StatusCode::BAD_REQUEST, None, "missing CSeq header"),
                    false,
                )
            }
            Err(e) => {
                return (
                    self.error(StatusCode::BAD_REQUEST, None, &e.to_string()),
                    false,
                )
            }
        };
        if req.version != Version::Rtsp10 {
            let r = self.error(
                StatusCode::VERSION_NOT_SUPPORTED,
                Some(cseq),
                "only RTSP/1.0 is supported",
            );
            return (r, true);
        }
        if let Some(required) = req.headers.get(header_names::REQUIRE) {
            // We implement no option tags (RFC 2326 §12.32).
            let r = Response::new(StatusCode::OPTION_NOT_SUPPORTED)
                .typed(&cseq)
                .header(header_names::UNSUPPORTED, required.trim());
            return (r, false);
        }
        let result = match &req.method {
            Method::Options => Ok(self.options(req, now)),
            Method::Describe => self.describe(req, conn, wall),
            Method::Setup => self.setup(req, conn, now),
            Method::Play => self.play(req, now, wall),
            Method::Pause => self.pause(req, now),
            Method::Teardown => self.teardown(req),
            Method::GetParameter => self.get_parameter(req, now),
            Method::Announce if self.cfg.publish.is_some() => self.announce(req, conn),
            Method::Record if self.cfg.publish.is_some() => self.record(req, now),
            Method::Announce | Method::Record | Method::Redirect | Method::SetParameter => {
                Err(Fail::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "this server only plays; the method is not allowed",
                )
                .with_header(header_names::ALLOW, method_list(&self.public())))
            }
            _ => Err(Fail::new(StatusCode::NOT_IMPLEMENTED, "unknown method")),
        };
        match result {
            Ok(resp) => (
                resp.typed(&cseq)
                    .header(header_names::SERVER, self.cfg.server_name.as_str()),
                false,
            ),
            Err(f) => {
                let mut r = self.error(f.status, Some(cseq), &f.msg);
                for (k, v) in f.headers {
                    r = r.header(k, v);
                }
                (r, false)
            }
        }
    }

    fn error(&self, status: StatusCode, cseq: Option<CSeq>, msg: &str) -> Response {
        let mut r =
            Response::new(status).header(header_names::SERVER, self.cfg.server_name.as_str());
        if let Some(c) = cseq {
            r = r.typed(&c);
        }
        if !msg.is_empty() {
            r = r.body("text/plain", format!("{msg}\r\n").into_bytes());
        }
        r
    }

    fn session_header(&self, id: String) -> Session {
        Session {
            id,
            timeout: Some(self.cfg.session_timeout.as_secs() as u32),
        }
    }

    fn options(&mut self, req: &Request, now: Instant) -> Response {
        if let Ok(Some(s)) = req.headers.get_typed::<Session>() {
            if let Some(e) = self.sessions.get_mut(&s.id) {
                e.state.keepalive(now);
            }
        }
        Response::new(StatusCode::OK).typed(&Public(self.public()))
    }

    /// The methods of the `Public` header: [`PUBLIC`], and ANNOUNCE and RECORD when
    /// publishing is on.
    fn public(&self) -> Vec<Method> {
        let mut m = PUBLIC.to_vec();
        if self.cfg.publish.is_some() {
            m.extend([Method::Announce, Method::Record]);
        }
        m
    }

    fn describe(
        &mut self,
        req: &Request,
        conn: ConnId,
        wall: SystemTime,
    ) -> Result<Response, Fail> {
        if let Target::Track(_) = self.target(&req.uri)? {
            return Err(Fail::new(
                StatusCode::NOT_FOUND,
                "DESCRIBE the stream, not one of its tracks",
            ));
        }
        if let Some(accept) = req.headers.get(header_names::ACCEPT) {
            if !accept.to_ascii_lowercase().contains("application/sdp") && !accept.contains("*/*") {
                return Err(Fail::new(
                    StatusCode::NOT_ACCEPTABLE,
                    "only application/sdp descriptions are available",
                ));
            }
        }
        let local = self.conns.get(&conn).map(|c| c.local.ip());
        let mut sdp = self
            .published_sdp(&req.uri)
            .or_else(|| self.own_path(&req.uri).map(|p| &p.sdp))
            .unwrap_or(&self.cfg.sdp)
            .clone();
        // live555 (upstream VLC and others) drops any RTP/AVPF medium: plain AVP for it.
        if req
            .headers
            .get(header_names::USER_AGENT)
            .is_some_and(|ua| ua.to_ascii_lowercase().contains("live555"))
        {
            sdp.media = sdp
                .media
                .iter()
                .map(crate::sdp::MediaDescription::without_feedback)
                .collect();
        }
        if let Some(ip) = local {
            let (ty, addr) = match canonical_ip(ip) {
                IpAddr::V4(a) => ("IP4", a.to_string()),
                IpAddr::V6(a) => ("IP6", a.to_string()),
            };
            sdp.origin.addr_type = ty.into();
            sdp.origin.address = addr;
        }
        if self.conns.get(&conn).is_some_and(|c| c.tls) {
            self.secure_sdp(&mut sdp, conn, wall);
        }
        Ok(Response::new(StatusCode::OK)
            .typed(&ContentBase(url::content_base(&req.uri)))
            .body("application/sdp", sdp.to_string().into_bytes()))
    }

    /// RTSPS: every medium of `sdp` as `RTP/SAVP` (`RTP/SAVPF` where it was `RTP/AVPF`) with
    /// an `a=key-mgmt:mikey` line (RFC 4567 §3.1) holding this connection's SRTP key for
    /// the track's SSRC, as GStreamer's rtsp-server and MediaMTX write it. A connection gets a
    /// fresh key for each DESCRIBE once a session uses its key.
    fn secure_sdp(&mut self, sdp: &mut SessionDescription, conn: ConnId, wall: SystemTime) {
        use crate::mikey::{MikeyMessage, MASTER_KEY_LEN};
        use rand::RngCore as _;
        let reuse = self
            .conns
            .get(&conn)
            .and_then(|c| c.srtp_key.as_ref())
            .filter(|(_, user)| user.is_none())
            .map(|(k, _)| *k);
        let key = match reuse {
            Some(k) => k,
            None => {
                let mut k: SrtpMasterKey = Default::default();
                self.key_rng.fill_bytes(&mut k.0);
                self.key_rng.fill_bytes(&mut k.1);
                k
            }
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.srtp_key = Some((key, None));
        }
        let ntp = crate::time::NtpTimestamp::from_unix(
            wall.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        )
        .0;
        let csb_id = self.key_rng.next_u32();
        for (i, m) in sdp.media.iter_mut().enumerate() {
            m.proto = match m.proto.to_ascii_uppercase().as_str() {
                "RTP/AVP" => "RTP/SAVP".into(),
                "RTP/AVPF" => "RTP/SAVPF".into(),
                _ => continue,
            };
            let ssrc = self.cfg.tracks.get(i).map_or(0, |t| t.ssrc.0);
            let mut tek = Vec::with_capacity(MASTER_KEY_LEN + key.1.len());
            tek.extend_from_slice(&key.0);
            tek.extend_from_slice(&key.1);
            let mut rand = vec![0u8; 16];
            self.key_rng.fill_bytes(&mut rand);
            let mikey = MikeyMessage::srtp(csb_id, &[ssrc], tek, ntp, rand);
            m.attributes.push(crate::sdp::Attribute {
                name: "key-mgmt".into(),
                value: Some(mikey.key_mgmt()),
            });
        }
    }

    /// `RTP/SAVP(F)` SETUP on `conn` for session `sid` (`None`: new): the keys, or why not.
    fn srtp_keys(&self, req: &Request, conn: ConnId, sid: Option<&str>) -> Result<SrtpKeys, Fail> {
        let key_error = |msg: String| Fail::new(StatusCode(463), msg);
        let (key, user) = self
            .conns
            .get(&conn)
            .and_then(|c| c.srtp_key.clone())
            .ok_or_else(|| key_error("no SRTP key on this connection: DESCRIBE it first".into()))?;
        if user.is_some() && user.as_deref() != sid {
            return Err(key_error(
                "this connection's SRTP key is another session's: DESCRIBE again for a fresh one"
                    .into(),
            ));
        }
        let receive = match req.headers.get("KeyMgmt") {
            None => None,
            Some(v) => Some(client_key(v).map_err(|e| key_error(format!("KeyMgmt: {e}")))?),
        };
        Ok(SrtpKeys { send: key, receive })
    }

    fn setup(&mut self, req: &Request, conn: ConnId, now: Instant) -> Result<Response, Fail> {
        if self.cfg.publish.is_some() && publish::is_record_setup(req) {
            return self.setup_record(req, conn, now);
        }
        let track = match self.target(&req.uri)? {
            Target::Track(t) => t,
            Target::Aggregate => {
                return Err(Fail::new(
                    StatusCode::AGGREGATE_OPERATION_NOT_ALLOWED,
                    "SETUP each track (its a=control URL), not the aggregate stream",
                ))
            }
        };
        let (transport, session_hdr) = setup_headers(req)?;
        // Validate the state before choosing the transport, so nothing is half-done on error.
        if let Some(s) = &session_hdr {
            let entry = self.sessions.get(&s.id).ok_or_else(no_such_session)?;
            entry.state.next_state(&req.method)?;
        } else if self.sessions.len() >= self.cfg.max_sessions {
            return Err(Fail::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many sessions; try again later",
            ));
        } else if let Some(why) = self.refusal() {
            if let Some(c) = self.conns.get(&conn) {
                let peer = c.peer;
                self.out
                    .push_back(Output::Event(ServerEvent::ViewerRefused {
                        peer,
                        why: why.clone(),
                    }));
            }
            return Err(Fail::new(StatusCode::NOT_ENOUGH_BANDWIDTH, why));
        }
        let (peer, tls) = self
            .conns
            .get(&conn)
            .map(|c| (c.peer, c.tls))
            .ok_or_else(|| Fail::new(StatusCode::INTERNAL_SERVER_ERROR, "no connection"))?;
        let (mut setup, reply) = self.choose_transport(track, &transport, conn, peer, tls)?;
        let secure = reply.0.first().is_some_and(|t| t.profile.is_secure());
        if secure {
            setup.srtp =
                Some(self.srtp_keys(req, conn, session_hdr.as_ref().map(|s| s.id.as_str()))?);
        }
        if let Retransmission::Rtx { ssrc, .. } = &mut setup.retransmission {
            // The session's own RTX stream: an SSRC no track uses.
            *ssrc = loop {
                let s = Ssrc(self.rng.random());
                if self.cfg.tracks.iter().all(|t| t.ssrc != s) {
                    break s;
                }
            };
        }

        let sid = match session_hdr {
            Some(s) => s.id,
            None => self.new_session(conn, peer, now, None),
        };
        if secure {
            if let Some((_, user)) = self.conns.get_mut(&conn).and_then(|c| c.srtp_key.as_mut()) {
                *user = Some(sid.clone());
            }
        }
        let Some(entry) = self.sessions.get_mut(&sid) else {
            return Err(Fail::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "session vanished",
            ));
        };
        let next = entry.state.next_state(&req.method)?;
        let client = entry.client;
        let playing = entry.state.state() == State::Playing;
        // Re-SETUP of a track replaces its transport.
        let old = entry
            .setups
            .iter()
            .position(|s| s.track == track)
            .map(|i| entry.setups.remove(i));
        entry.setups.push(setup.clone());
        entry.state.commit(next, now);
        if let Some(old) = old {
            self.unsubscribe(&sid, client, &old, Unsubscribed::Replaced);
        }
        if let MediaSink::Udp { rtcp, .. } = setup.sink {
            self.rtcp_sources.insert(rtcp, sid.clone());
        }
        // A track added while playing starts flowing at once; the others keep their numbering.
        if playing {
            let initial_seq = self.rng.random::<u16>();
            let retransmission = fresh_rtx_numbering(setup.retransmission, &mut self.rng);
            self.out.push_back(Output::Event(ServerEvent::Subscribe {
                client,
                track,
                sink: setup.sink,
                initial_seq,
                resumed: false,
                retransmission,
                srtp: setup.srtp,
            }));
        }
        Ok(Response::new(StatusCode::OK)
            .typed(&reply)
            .typed(&self.session_header(sid)))
    }

    /// A new session created by a SETUP on `conn` from `peer` at `now` (a publisher's of
    /// `publishing`, or a viewer's): its id, after `SessionStarted`.
    fn new_session(
        &mut self,
        conn: ConnId,
        peer: SocketAddr,
        now: Instant,
        publishing: Option<String>,
    ) -> String {
        let sid = self.new_session_id();
        let client = ClientId(self.next_client);
        self.next_client += 1;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.sessions += 1;
        }
        self.wake = None;
        let timeout = self.cfg.session_timeout;
        let state = match publishing {
            Some(_) => ServerSession::new_publisher(sid.clone(), timeout, now),
            None => ServerSession::new(sid.clone(), timeout, now),
        };
        self.sessions.insert(
            sid.clone(),
            SessionEntry {
                state,
                client,
                conn,
                peer,
                setups: Vec::new(),
                reports_due: Vec::new(),
                publishing,
                last_keyframe_request: None,
                nack_window: None,
            },
        );
        self.out
            .push_back(Output::Event(ServerEvent::SessionStarted {
                session: sid.clone(),
                client,
                peer,
            }));
        sid
    }

    fn new_session_id(&mut self) -> String {
        loop {
            let id = format!("{:016x}", self.rng.random::<u64>());
            if !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }

    /// Picks the first transport alternative we can serve (RFC 2326 §12.39).
    fn choose_transport(
        &self,
        track: usize,
        transport: &Transport,
        conn: ConnId,
        peer: SocketAddr,
        tls: bool,
    ) -> Result<(Setup, Transport), Fail> {
        let info = self
            .track_cfg(track)
            .ok_or_else(|| Fail::new(StatusCode::NOT_FOUND, "no such track"))?;
        let ports = (info.server_ports_v4, info.server_ports_v6);
        for spec in &transport.0 {
            let Some((sink, reply)) = unicast_sink(spec, track, conn, peer, tls, ports) else {
                continue;
            };
            let reply = TransportSpec {
                multicast: false,
                ssrc: Some(info.ssrc.0),
                ..reply
            };
            // An AVPF client gets RTX when the track has it; a plain AVP client (ffmpeg on an
            // AVPF medium) the original packets; nobody on TCP.
            let retransmission = match (info.nack, spec.profile.is_tcp(), info.rtx_payload_type) {
                (false, _, _) | (_, true, _) => Retransmission::None,
                (true, false, Some(payload_type)) if spec.profile.is_avpf() => {
                    Retransmission::Rtx {
                        payload_type,
                        ssrc: info.ssrc, // replaced by the session's own in `setup`
                        initial_seq: 0,
                    }
                }
                (true, false, _) => Retransmission::Original,
            };
            let setup = Setup {
                track,
                sink,
                resume_seq: None,
                retransmission,
                srtp: None,
            };
            return Ok((setup, Transport(vec![reply])));
        }
        Err(Fail::new(
            StatusCode::UNSUPPORTED_TRANSPORT,
            if tls {
                "over TLS media is encrypted: RTP/SAVP(F);unicast;client_port=a-b (SRTP keyed \
                 by the SDP's MIKEY), or RTP/AVP(F)/TCP;interleaved=a-b in the connection"
            } else {
                "supported: RTP/AVP(F);unicast;client_port=a-b or RTP/AVP(F)/TCP;interleaved=a-b"
            },
        ))
    }

    /// Why a new viewer cannot be served now, if it cannot.
    fn refusal(&self) -> Option<String> {
        if let Some(max) = self.cfg.max_viewers.filter(|m| self.sessions.len() >= *m) {
            return Some(format!("this server serves at most {max} viewers"));
        }
        self.overloaded
            .then(|| "the server cannot send one more stream at full rate now".to_owned())
    }

    /// The session a PLAY or PAUSE names and the state the method leads to; `404`, `454` or
    /// `455` otherwise.
    fn transition(&self, req: &Request) -> Result<(String, State), Fail> {
        let sid = self.session_of(req)?;
        let entry = self.sessions.get(&sid).ok_or_else(no_such_session)?;
        let next = entry.state.next_state(&req.method)?;
        Ok((sid, next))
    }

    fn play(&mut self, req: &Request, now: Instant, wall: SystemTime) -> Result<Response, Fail> {
        let (sid, next) = self.transition(req)?;
        // Per set-up track: its RTP time now and its number in the client's URLs.
        let clocks: HashMap<usize, (u32, usize)> = self
            .sessions
            .get(&sid)
            .map(|e| {
                e.setups
                    .iter()
                    .map(|s| {
                        let rtptime = self
                            .track_cfg(s.track)
                            .map_or(0, |t| t.clock.timestamp_at(wall));
                        (s.track, (rtptime, self.track_number(s.track)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let entry = self.sessions.get_mut(&sid).ok_or_else(no_such_session)?;
        let already_playing = entry.state.state() == State::Playing;
        entry.state.commit(next, now);
        let client = entry.client;
        let base = url::content_base(&req.uri);
        let mut infos = Vec::new();
        if !already_playing {
            entry.reports_due = FIRST_SENDER_REPORTS.iter().map(|d| now + *d).collect();
            self.wake = None;
            for s in entry.setups.iter_mut() {
                let resumed = s.resume_seq.take();
                let initial_seq = resumed.unwrap_or_else(|| self.rng.random::<u16>());
                let (rtptime, number) = clocks.get(&s.track).copied().unwrap_or((0, s.track));
                infos.push(RtpInfoEntry {
                    url: format!("{base}trackID={number}"),
                    seq: Some(initial_seq),
                    rtptime: Some(rtptime),
                });
                let retransmission = fresh_rtx_numbering(s.retransmission, &mut self.rng);
                self.out.push_back(Output::Event(ServerEvent::Subscribe {
                    client,
                    track: s.track,
                    sink: s.sink,
                    initial_seq,
                    resumed: resumed.is_some(),
                    retransmission,
                    srtp: s.srtp,
                }));
            }
        }
        // A live stream always plays from now; a Range start is not an error, only ignored.
        let mut resp = Response::new(StatusCode::OK)
            .typed(&self.session_header(sid))
            .typed(&Range::Npt {
                start: NptTime::Seconds(0.0),
                end: None,
            });
        if !infos.is_empty() {
            resp = resp.typed(&RtpInfo(infos));
        }
        Ok(resp)
    }

    fn pause(&mut self, req: &Request, now: Instant) -> Result<Response, Fail> {
        let (sid, next) = self.transition(req)?;
        let entry = self.sessions.get_mut(&sid).ok_or_else(no_such_session)?;
        entry.state.commit(next, now);
        entry.reports_due.clear();
        let client = entry.client;
        for s in entry.setups.clone() {
            self.unsubscribe(&sid, client, &s, Unsubscribed::Paused);
        }
        Ok(Response::new(StatusCode::OK).typed(&self.session_header(sid)))
    }

    /// The session a request names, after checking its URI: our stream (else `404`), or for
    /// a publisher's session any URI (its path is its session's).
    fn session_of(&self, req: &Request) -> Result<String, Fail> {
        let sid = session_id(req);
        let publisher = sid
            .as_ref()
            .ok()
            .and_then(|s| self.sessions.get(s))
            .is_some_and(|e| e.publishing.is_some());
        if !publisher {
            self.target(&req.uri)?;
        }
        sid
    }

    fn teardown(&mut self, req: &Request) -> Result<Response, Fail> {
        let sid = self.session_of(req)?;
        if !self.sessions.contains_key(&sid) {
            return Err(no_such_session());
        }
        self.end_session(&sid, EndReason::Teardown);
        Ok(Response::new(StatusCode::OK))
    }

    fn get_parameter(&mut self, req: &Request, now: Instant) -> Result<Response, Fail> {
        let session = req
            .headers
            .get_typed::<Session>()
            .map_err(|e| Fail::new(StatusCode::BAD_REQUEST, e.to_string()))?;
        let mut resp = Response::new(StatusCode::OK);
        if let Some(s) = session {
            let entry = self.sessions.get_mut(&s.id).ok_or_else(no_such_session)?;
            entry.state.keepalive(now);
            resp = resp.typed(&self.session_header(s.id));
        }
        if !req.body.is_empty() {
            // We publish no parameters; an empty GET_PARAMETER is the keep-alive ping.
            return Err(Fail::new(
                StatusCode::PARAMETER_NOT_UNDERSTOOD,
                "no parameters are available",
            ));
        }
        Ok(resp)
    }

    /// How many of our tracks [`ServerConfig::path`] serves.
    fn main_tracks(&self) -> usize {
        if self.cfg.own_paths.is_empty() {
            self.cfg.tracks.len()
        } else {
            self.cfg.sdp.media.len().min(self.cfg.tracks.len())
        }
    }

    /// The own path (a rendition) `uri` names, if any.
    fn own_path(&self, uri: &str) -> Option<&OwnPath> {
        let path = url::request_path(uri)?;
        let path = path.trim_matches('/');
        self.cfg.own_paths.iter().find(|p| p.path == path)
    }

    /// Maps a request URI to the stream or one of its tracks; anything else is 404.
    fn target(&self, uri: &str) -> Result<Target, Fail> {
        let path =
            url::request_path(uri).ok_or_else(|| Fail::new(StatusCode::BAD_REQUEST, "bad URI"))?;
        let path = path.trim_matches('/');
        let not_found = || Fail::new(StatusCode::NOT_FOUND, "no such stream; try /live");
        if path == self.cfg.path {
            return Ok(Target::Aggregate);
        }
        if let Some(t) = self.published_target(path) {
            return Ok(t);
        }
        for p in &self.cfg.own_paths {
            if path == p.path {
                return Ok(Target::Aggregate);
            }
            if let Some(rest) = path
                .strip_prefix(p.path.as_str())
                .and_then(|r| r.strip_prefix("/trackID="))
            {
                let n = rest.parse::<usize>().ok();
                return n
                    .and_then(|n| p.tracks.get(n))
                    .map(|&t| Target::Track(t))
                    .ok_or_else(not_found);
            }
        }
        let n = path
            .strip_prefix(self.cfg.path.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .and_then(|r| r.strip_prefix("trackID="))
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(not_found)?;
        if n < self.main_tracks() {
            Ok(Target::Track(n))
        } else {
            Err(not_found())
        }
    }
}

/// A SETUP's `Transport` (required) and `Session` (optional) headers; `400` if malformed.
fn setup_headers(req: &Request) -> Result<(Transport, Option<Session>), Fail> {
    let transport = req
        .headers
        .get_typed::<Transport>()
        .map_err(|e| Fail::new(StatusCode::BAD_REQUEST, e.to_string()))?
        .ok_or_else(|| Fail::new(StatusCode::BAD_REQUEST, "missing Transport header"))?;
    let session = req
        .headers
        .get_typed::<Session>()
        .map_err(|e| Fail::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok((transport, session))
}

/// `track`'s packets in the client's connection, on the channels it asked for (by default
/// 2·track and 2·track+1), and the answer's transport.
fn interleaved_sink(
    spec: &TransportSpec,
    track: usize,
    conn: ConnId,
) -> (MediaSink, TransportSpec) {
    let (a, b) = spec
        .interleaved
        .unwrap_or((2 * track as u8, 2 * track as u8 + 1));
    let sink = MediaSink::Interleaved {
        conn,
        rtp_channel: a,
        rtcp_channel: b,
    };
    let reply = TransportSpec {
        profile: spec.profile.clone(),
        interleaved: Some((a, b)),
        ..TransportSpec::default()
    };
    (sink, reply)
}

/// Our `server_port` pairs (RTP, RTCP) for IPv4 and for IPv6 peers, if any.
type ServerPorts = (Option<(u16, u16)>, Option<(u16, u16)>);

/// Where a unicast transport alternative (UDP to the client's ports, or interleaved on its
/// connection) puts `track`'s packets, and the answer's transport, without `ssrc`; `None` if we
/// cannot serve it. Over TLS (`tls`) media go only in the connection: plain UDP beside it
/// would carry them in clear.
fn unicast_sink(
    spec: &TransportSpec,
    track: usize,
    conn: ConnId,
    peer: SocketAddr,
    tls: bool,
    ports: ServerPorts,
) -> Option<(MediaSink, TransportSpec)> {
    if spec.multicast {
        return None;
    }
    let secure_udp = tls && spec.profile.is_secure() && !spec.profile.is_tcp();
    let secure_tcp = tls && spec.profile.is_secure() && spec.profile.is_tcp();
    match spec.profile {
        TransportProfile::RtpAvp | TransportProfile::RtpAvpf if tls => None,
        // Interleaved: plain, or SRTP (SAVP/TCP) on a TLS connection.
        TransportProfile::RtpAvpTcp | TransportProfile::RtpAvpfTcp => {
            Some(interleaved_sink(spec, track, conn))
        }
        _ if secure_tcp => Some(interleaved_sink(spec, track, conn)),
        TransportProfile::RtpAvp | TransportProfile::RtpAvpf | TransportProfile::Other(_)
            if secure_udp || !matches!(spec.profile, TransportProfile::Other(_)) =>
        {
            let (rtp_port, rtcp_port) = spec.client_port.filter(|(rtp, _)| *rtp != 0)?;
            let peer_ip = canonical_ip(peer.ip());
            let server_ports = if peer_ip.is_ipv6() { ports.1 } else { ports.0 }?;
            let sink = MediaSink::Udp {
                rtp: SocketAddr::new(peer_ip, rtp_port),
                rtcp: SocketAddr::new(peer_ip, rtcp_port),
            };
            let reply = TransportSpec {
                profile: spec.profile.clone(),
                client_port: Some((rtp_port, rtcp_port)),
                server_port: Some(server_ports),
                ..TransportSpec::default()
            };
            Some((sink, reply))
        }
        _ => None,
    }
}

/// The client's SRTP key from a `KeyMgmt` header (RFC 4567 §3.3:
/// `prot=mikey; uri="..."; data="<base64>"`): one AES_CM_128_HMAC_SHA1_80 key, or why not.
fn client_key(value: &str) -> Result<SrtpMasterKey, String> {
    let mut prot = None;
    let mut data = None;
    for param in value.split(';') {
        let (k, v) = param.split_once('=').unwrap_or((param, ""));
        let v = v.trim().trim_matches('"');
        match k.trim().to_ascii_lowercase().as_str() {
            "prot" => prot = Some(v),
            "data" => data = Some(v),
            _ => {}
        }
    }
    if !prot.is_some_and(|p| p.eq_ignore_ascii_case("mikey")) {
        return Err(format!(
            "key management {:?}, only prot=mikey",
            prot.unwrap_or("")
        ));
    }
    let data = data.ok_or("no data=\"<base64 MIKEY>\"")?;
    let msg = crate::mikey::MikeyMessage::from_key_mgmt(&format!("mikey {data}"))
        .map_err(|e| e.to_string())?;
    if let Some(p) = msg
        .policies
        .iter()
        .find(|p| !p.is_aes_cm_128_hmac_sha1_80())
    {
        return Err(format!(
            "SRTP policy {} is not AES_CM_128_HMAC_SHA1_80, the only suite served",
            p.number
        ));
    }
    msg.master_key()
        .ok_or_else(|| "no 16-byte master key and 14-byte salt in the KEMAC".to_owned())
}

/// `r` with a fresh RTX initial sequence number for a new subscription (a resumed one must not
/// reuse numbers the client has seen on the session's RTX SSRC).
fn fresh_rtx_numbering(r: Retransmission, rng: &mut SmallRng) -> Retransmission {
    match r {
        Retransmission::Rtx {
            payload_type, ssrc, ..
        } => Retransmission::Rtx {
            payload_type,
            ssrc,
            initial_seq: rng.random(),
        },
        other => other,
    }
}

/// Methods valid in a state, for the `Allow` header of a 455 (RFC 2326 §11.3.6).
fn allowed_in(state: State, publisher: bool) -> String {
    use Method::*;
    let m: &[Method] = match (publisher, state) {
        (true, State::Init | State::Ready) => &[Options, Setup, Record, Teardown, GetParameter],
        (true, _) => &[Options, Record, Teardown, GetParameter],
        (false, State::Init) => &[Options, Describe, Setup, Teardown, GetParameter],
        (false, State::Ready) => &[Options, Describe, Setup, Play, Teardown, GetParameter],
        (false, State::Playing | State::Recording) => &[
            Options,
            Describe,
            Setup,
            Play,
            Pause,
            Teardown,
            GetParameter,
        ],
    };
    method_list(m)
}

fn method_list(methods: &[Method]) -> String {
    methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn no_such_session() -> Fail {
    Fail::new(StatusCode::SESSION_NOT_FOUND, "no such session")
}

fn session_id(req: &Request) -> Result<String, Fail> {
    match req.headers.get_typed::<Session>() {
        Ok(Some(s)) => Ok(s.id),
        Ok(None) => Err(Fail::new(
            StatusCode::SESSION_NOT_FOUND,
            "missing Session header",
        )),
        Err(e) => Err(Fail::new(StatusCode::BAD_REQUEST, e.to_string())),
    }
}

/// IPv4-mapped IPv6 peers (from a dual-stack socket) are IPv4 clients.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

pub mod access;
pub mod publish;
pub use publish::PublishConfig;

#[cfg(test)]
mod tests;
