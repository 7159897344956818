//! The RTSP 1.0 client session (RFC 2326) as a Sans-IO state machine, in the str0m shape:
//! [`Client::handle_input`] takes what happened (with `now`), [`Client::poll_output`] says what
//! to do next: open a connection, send a request, bind a UDP port pair, tell the viewer
//! something, or wake up at an instant. Nothing here opens a socket or reads a clock, so a
//! test drives a whole session, minutes of it, with `Request`/`Response` values and hand-made
//! `Instant`s.
//!
//! What it decides (RFC references at each rule):
//! - the request sequence: OPTIONS (§10.1, for `Public`), DESCRIBE (§10.2; one redirect,
//!   §11.3; base URL per C.1.1), SETUP per track (§10.4), PLAY (§10.5, `RTP-Info` §12.33),
//!   PAUSE (§10.6) and PLAY again as the viewer asks, TEARDOWN (§10.7) after an RTCP BYE;
//! - `CSeq` (§12.17), `Session` (§12.37) and `User-Agent` on every request;
//! - the transport: UDP first in [`TransportMode::Auto`], interleaved TCP (§10.12) when the
//!   server refuses UDP or no RTP arrives within [`Timers::udp_grace`] of PLAY; a session
//!   that fell back keeps TCP across reconnects;
//! - keep-alive every half session timeout: `GET_PARAMETER` if `Public` lists it, else
//!   `OPTIONS` (and `OPTIONS` from the first refused `GET_PARAMETER` on);
//! - when the server is gone: a request unanswered for [`Timers::request`], a lost
//!   connection, [`Timers::media_timeout`] without RTP while playing, `454 Session Not Found`;
//! - reconnection with exponential backoff (with a little seeded jitter so viewers of a
//!   restarted server do not come back in lockstep), or in call mode a retry every
//!   [`Timers::call_retry`] until the peer answers and a hangup once it has (RTCP BYE on
//!   every audio and video track, or the peer closing the connection);
//! - when to send RTCP receiver reports (RFC 3550 §6.3.1: randomized around the mean), the
//!   NAT-opening reports after SETUP and PLAY (RFC 7604 §3.3.1), and keyframe requests
//!   (PLI, RFC 4585 §6.3.1) for a damaged picture, repeated every
//!   [`Timers::keyframe_repeat`] while packets come and no keyframe has;
//! - retransmission requests (generic NACK, RFC 4585 §6.2.1) for the packets the receive
//!   side reports missing ([`Input::Gap`]), on tracks whose description offers `nack` under
//!   `RTP/AVPF` (set up as `RTP/AVPF`, so a server with RFC 4588 sends `rtx` packets), over
//!   UDP only: only while a retransmission can still arrive before the receive side gives up
//!   on the packet (the round trip measured from RTSP exchanges and answered NACKs, or given
//!   by [`Input::RoundTrip`]), at most [`NackConfig::tries`] times per packet, a round trip and a
//!   margin apart, and at most [`NackConfig::per_second`] numbers a second per track.
//!   [`Client::retransmission_wait`] says how long the receive side should wait for a
//!   missing packet so that the requests can be answered (longer when watching than in a
//!   call).
//!
//! What it leaves to the shell: sockets and their addresses, parsing bytes into messages
//! ([`parse`](super::parse())), the receive pipeline of each track (RTP/RTCP parsing,
//! jitter buffer, depacketizer) and the bytes of RTCP packets. The shell tells the machine
//! when RTP was accepted on a track ([`Input::MediaSeen`]), when the sender said BYE, and
//! when a video picture was lost or came back ([`Input::PictureLost`],
//! [`Input::KeyframeArrived`]).
//!
//! ```text
//!  viewer ──Command──> Client ──Transmit(Request)──> shell ──bytes──> server
//!                        ^                                              │
//!                        └────Response──── shell (parse) <──bytes───────┘
//!                        │
//!                        └──Event(ClientEvent)──> shell ──> viewer
//! ```
//!
//! Digest authentication (RFC 2326 §12.5, RFC 2617 / RFC 7616): the credentials come from
//! [`ClientConfig::credentials`] or else the URL's `user:password@` (percent-decoded; never
//! put in requests). A `401` to a blocking request is answered once: the request is sent again
//! under a new `CSeq` with `Authorization` for the SHA-256 challenge if one is offered, else
//! the MD5 one, and every later request of the connection carries it too. A `401` to a request
//! that already carried credentials ends the session ([`End::Failed`], no reconnecting) unless
//! the challenge says `stale=TRUE` (then it is answered with the new nonce); without
//! credentials a `401` ends it at once, saying how to give them.
//!
//! `rtsps://` URLs: [`Output::Connect`] asks for TLS, and the shell's verdict on the server's
//! certificate comes back as [`Input::Untrusted`] when it refuses it (the session ends). Plain
//! RTP never goes beside an encrypted connection: when every track of the description offers
//! an SRTP key (`RTP/SAVP(F)` with `a=key-mgmt:mikey`, RFC 4567 §3.1) and the transport is not
//! TCP, the tracks are set up as `RTP/SAVP(F)` over UDP with our own key in a `KeyMgmt`
//! header (RFC 4567 §3.3; a key per connection from a CSPRNG the shell seeds,
//! [`Client::set_key_seed`]), and [`ClientEvent::TransportChosen`] hands the shell both keys
//! ([`SrtpKeys`]); otherwise, and as the fallback of [`TransportMode::Auto`] (SETUP refused, or
//! nothing within [`Timers::udp_grace`]), media come interleaved in the TLS connection.
//!
//! Adding to it later, as states and events rather than shell code:
//! - RECORD (publishing, §10.11): an ANNOUNCE step after OPTIONS instead of DESCRIBE, SETUP
//!   with `mode=record`, RECORD instead of PLAY; the watchdog then watches our own sending
//!   instead of RTP arriving. The steps are variants of the private `Step`; the rest is shared.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::rngs::{SmallRng, StdRng};
use rand::{Rng, RngCore, SeedableRng};

use super::auth::{
    preferred_challenge, Authorization, DigestChallenge, DigestCredentials, WwwAuthenticate,
};
use super::server::SrtpMasterKey;
use super::url::{self, RtspUrl};
use super::{
    CSeq, Header, Method, Public, Request, Response, RtpInfo, Session, StatusCode, Transport,
    TransportProfile, TransportSpec,
};
use crate::sdp::{self, MediaDescription, SessionDescription};

/// At most this many tracks are set up, so interleaved channel pairs fit in a byte.
pub const MAX_TRACKS: usize = 127;

/// How RTP should reach us.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TransportMode {
    /// UDP first; interleaved TCP when UDP is refused or brings nothing.
    #[default]
    Auto,
    Udp,
    Tcp,
}

/// The clocks of the session. [`Default`] gives the values the player uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timers {
    /// How long a request may go unanswered before the connection is presumed lost.
    pub request: Duration,
    /// How long the TEARDOWNs of a polite ending are waited for, in all.
    pub teardown: Duration,
    /// First wait before reconnecting; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Call mode: how often an unanswered call is retried.
    pub call_retry: Duration,
    /// How long UDP gets to deliver the first RTP packet after PLAY ([`TransportMode::Auto`]).
    pub udp_grace: Duration,
    /// How long a playing session may go without RTP before it is presumed lost.
    pub media_timeout: Duration,
    /// Mean interval between receiver reports, randomized ×[0.5, 1.5] (RFC 3550 §6.3.1).
    pub receiver_reports: Duration,
    /// How often [`ClientEvent::StatsDue`] comes while the session is up.
    pub stats: Duration,
    /// While a damaged picture waits for a keyframe, the request is repeated this often (it,
    /// or the keyframe, may be lost too), and only if packets came since the last one.
    pub keyframe_repeat: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            request: Duration::from_secs(10),
            teardown: Duration::from_secs(2),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(8),
            call_retry: Duration::from_secs(1),
            udp_grace: Duration::from_secs(2),
            media_timeout: Duration::from_secs(5),
            // Below RFC 3550's 5 s recommended minimum, within its §6.2 allowance for a
            // reduced minimum (360 / session bandwidth in kbit/s, a fraction of a second
            // here), so servers that count reports as keep-alive see them often.
            receiver_reports: Duration::from_millis(2500),
            stats: Duration::from_secs(1),
            // The server makes at most one keyframe per 500 ms anyway.
            keyframe_repeat: Duration::from_millis(300),
        }
    }
}

/// When and how often to ask for retransmissions (generic NACK, RFC 4585 §6.2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NackConfig {
    /// Ask at all (off: plain `RTP/AVP` and no NACKs, as before).
    pub enabled: bool,
    /// Requests per missing packet at most (the request or its answer may be lost too).
    pub tries: u32,
    /// The round trip assumed until one is measured.
    pub default_rtt: Duration,
    /// Added to the round trip, for the sender's own delay and the path's jitter: a request
    /// is repeated `rtt × 5/4 + margin` after the last one.
    pub margin: Duration,
    /// The receive side waits at most this long for a retransmission
    /// ([`Client::retransmission_wait`]).
    pub max_wait: Duration,
    /// Numbers asked for per second and track at most (our server answers 100 a second per
    /// session); the rest wait for the next second if they are still in time.
    pub per_second: u32,
}

impl NackConfig {
    /// Watching: three tries, a wait of up to 500 ms (the jitter buffer's own bound).
    pub fn watch() -> Self {
        NackConfig {
            enabled: true,
            tries: 3,
            default_rtt: Duration::from_millis(100),
            margin: Duration::from_millis(10),
            max_wait: Duration::from_millis(500),
            per_second: 100,
        }
    }

    /// A call: three tries, as watching, but within at most 200 ms (the call jitter buffer's
    /// bound): at 5 % loss both ways two tries left about one packet a run unrecovered, and
    /// each such loss froze the picture until a keyframe (up to 614 ms).
    pub fn call() -> Self {
        NackConfig {
            max_wait: Duration::from_millis(200),
            ..Self::watch()
        }
    }
}

impl Default for NackConfig {
    fn default() -> Self {
        Self::watch()
    }
}

/// Missing packets remembered per track at most; more are an outage, not loss.
const MAX_MISSING: usize = 512;

/// `Session` timeout when the server names none (RFC 2326 §12.37).
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// Backoff waits are stretched by a random factor in [1, 1 + this).
const BACKOFF_JITTER: f64 = 0.05;
/// Unanswered keep-alives remembered at most (a server that never answers them).
const MAX_PENDING: usize = 64;

#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub transport: TransportMode,
    /// Call mode: retry every [`Timers::call_retry`] until the peer answers; once it has, a
    /// BYE or a lost connection ends the call instead of reconnecting.
    pub call: bool,
    /// Sent as `User-Agent` with every request.
    pub user_agent: String,
    /// Which media sections to set up (the codecs the shell can receive).
    pub playable: fn(&MediaDescription) -> bool,
    /// The end reason when no media section is playable.
    pub no_playable_track: String,
    pub timers: Timers,
    pub nack: NackConfig,
    /// User name and password for Digest authentication; `None`: those of the URL, if any.
    pub credentials: Option<Credentials>,
}

/// A user name and password (RFC 2617).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials {{ user: {:?}, password: <hidden> }}",
            self.user
        )
    }
}

impl Credentials {
    /// From a URL's `user[:password]` (percent-encoding undone; `None` for an empty user).
    pub fn from_userinfo(userinfo: &str) -> Option<Self> {
        let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let user = percent_decode(u);
        (!user.is_empty()).then(|| Credentials {
            user,
            password: percent_decode(p),
        })
    }
}

/// `%XX` escapes undone (RFC 3986 §2.1); a malformed escape stays as written.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            transport: TransportMode::Auto,
            call: false,
            user_agent: "livecast".into(),
            playable: |_| true,
            no_playable_track: "no playable track in the session description".into(),
            timers: Timers::default(),
            nack: NackConfig::default(),
            credentials: None,
        }
    }
}

/// What the viewer asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Hold the stream (PAUSE), kept across reconnects.
    Pause,
    /// Play again after a pause.
    Resume,
    /// BYE, TEARDOWN, then [`End::Stopped`].
    Stop,
}

/// What happened, for [`Client::handle_input`].
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// The connection asked for by [`Output::Connect`] is up.
    Connected {
        now: Instant,
    },
    /// It could not be opened; `why` is for the viewer.
    ConnectFailed {
        now: Instant,
        why: String,
    },
    /// It was opened, but the server is not the one trusted (an `rtsps://` server whose
    /// certificate fails verification or changed): the session ends ([`End::Failed`] with
    /// `why`), since trying again would meet the same certificate.
    Untrusted {
        now: Instant,
        why: String,
    },
    /// A response from the server.
    Response {
        now: Instant,
        resp: Response,
    },
    /// A request from the server (keep-alive probes, §10).
    Request {
        now: Instant,
        req: Request,
    },
    /// The connection ended; `by_peer` when the server closed it cleanly.
    ConnectionLost {
        now: Instant,
        why: String,
        by_peer: bool,
    },
    /// The port pair asked for by [`Output::BindUdp`] is bound.
    UdpBound {
        now: Instant,
        track: usize,
        rtp_port: u16,
        rtcp_port: u16,
    },
    /// It could not be bound; `why` is for the viewer.
    UdpBindFailed {
        now: Instant,
        track: usize,
        why: String,
    },
    /// An RTP packet of `track` was accepted (right source and payload type).
    MediaSeen {
        now: Instant,
        track: usize,
    },
    /// The sender of `track` said goodbye (RTCP BYE, RFC 3550 §6.6).
    Bye {
        now: Instant,
        track: usize,
    },
    /// A picture of video track `track` was damaged by loss: its decoder can show nothing
    /// until a keyframe comes.
    PictureLost {
        now: Instant,
        track: usize,
    },
    /// A keyframe of `track` arrived whole: the decoder is back.
    KeyframeArrived {
        now: Instant,
        track: usize,
    },
    /// Packet `seq` of `track` is missing (a later one arrived); the receive side gives up
    /// on it at `until`. A retransmission may be asked for.
    Gap {
        now: Instant,
        track: usize,
        seq: u16,
        until: Instant,
    },
    /// Missing packet `seq` of `track` arrived after all, in time; `retransmission` when it
    /// came as one (RFC 4588), rather than late.
    GapFilled {
        now: Instant,
        track: usize,
        seq: u16,
        retransmission: bool,
    },
    /// A round trip measured outside the machine (e.g. from an RTCP XR DLRR block, RFC 3611
    /// §4.5: a pure receiver sends no sender reports, so RFC 3550's LSR/DLSR say nothing to
    /// it).
    RoundTrip {
        now: Instant,
        rtt: Duration,
    },
    Command {
        now: Instant,
        cmd: Command,
    },
    /// The instant last given by [`Output::Timeout`] (or any later one) has come.
    Timeout(Instant),
}

/// What to do, from [`Client::poll_output`].
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Open a TCP connection (closing any current one and every UDP socket); `tls` for an
    /// `rtsps://` URL: TLS on it, media as SRTP over UDP or interleaved in it (module docs).
    Connect {
        host: String,
        port: u16,
        tls: bool,
    },
    /// Close the connection and every UDP socket.
    Disconnect,
    /// Write this request on the connection (`CSeq`, `Session`, `User-Agent` are set).
    Transmit(Request),
    /// Write this response to a request of the server's.
    Respond(Response),
    /// Bind an RTP/RTCP port pair (RFC 3550 §11) for `track`, then [`Input::UdpBound`].
    BindUdp {
        track: usize,
    },
    Event(ClientEvent),
    /// Nothing more to do now; call [`Client::handle_input`] with [`Input::Timeout`] then.
    Timeout(Instant),
}

/// A track chosen from the session description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackInfo {
    /// Index of its media section in the description.
    pub media_index: usize,
    /// `video`, `audio`, `text` ...
    pub media: String,
    /// Its control URL, for SETUP (RFC 2326 C.1.1).
    pub control: String,
    /// Generic NACK is offered (RFC 4585: `RTP/AVPF` with `a=rtcp-fb:<pt> nack`).
    pub nack: bool,
}

/// How a track's media arrives, from the SETUP response's `Transport` (§12.39).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackLink {
    /// Interleaved on the RTSP connection, on these channels.
    Tcp { rtp: u8, rtcp: u8 },
    /// On the bound port pair, from `source` (`None`: the RTSP server's address) and its
    /// `server_port` pair, if given.
    Udp {
        source: Option<IpAddr>,
        server_ports: Option<(u16, u16)>,
    },
}

/// The SRTP keys (AES_CM_128_HMAC_SHA1_80, RFC 3711) of a track set up as `RTP/SAVP(F)`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SrtpKeys {
    /// The server's, from the description's `a=key-mgmt`: unprotects what it sends.
    pub receive: SrtpMasterKey,
    /// Ours, sent in SETUP's `KeyMgmt`: protects the RTCP we send.
    pub send: SrtpMasterKey,
}

impl std::fmt::Debug for SrtpKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SrtpKeys { <hidden> }")
    }
}

/// `RTP-Info` (§12.33) of a PLAY response, per track.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackRtpInfo {
    pub track: usize,
    pub rtptime: Option<u32>,
    pub seq: Option<u16>,
}

/// How the client ended for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// Told to stop.
    Stopped,
    /// Retrying cannot help (bad URL, 404, no playable track ...).
    Failed(String),
    /// The server wants a user name and password we were not given, or refused ours (401):
    /// retrying as is cannot help, asking the viewer for them can.
    Unauthorized(String),
    /// Call mode: the peer hung up or is gone after it had answered.
    CallEnded(String),
}

/// What the shell and the viewer are told.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientEvent {
    /// The first attempt is starting (not in call mode).
    Connecting,
    /// Call mode: attempt `attempt` failed (0 before the first); the next in
    /// [`Timers::call_retry`].
    Calling { attempt: u32, reason: String },
    /// The attempt ended; the next starts in `retry_in`.
    Reconnecting {
        attempt: u32,
        reason: String,
        retry_in: Duration,
    },
    /// DESCRIBE answered (on every attempt): the raw and parsed description, its base URL and
    /// the tracks that will be set up, in order (track numbers below index this list).
    Described {
        sdp: String,
        session: Box<SessionDescription>,
        base: String,
        tracks: Vec<TrackInfo>,
    },
    /// SETUP of every track starts again over `tcp` or UDP: drop old links and receive state.
    TracksReset { tcp: bool },
    /// A track is set up; `ssrc` is the one the server announced; `srtp` when it is
    /// `RTP/SAVP(F)` (RTSPS over UDP): every packet of the link is SRTP/SRTCP.
    TransportChosen {
        track: usize,
        link: TrackLink,
        ssrc: Option<u32>,
        srtp: Option<SrtpKeys>,
    },
    /// A PLAY was answered 200 (first or resume).
    Playing { rtp_info: Vec<TrackRtpInfo> },
    /// RTP flows since the last PLAY.
    Streaming { tcp: bool },
    /// The server holds the stream (PAUSE answered, or the viewer wanted it paused from the
    /// start).
    Paused,
    /// Send a receiver report from each of `track`'s UDP ports to the server's, to open NAT
    /// bindings.
    NatPunch { track: usize },
    /// Send a receiver report + SDES on every track (RFC 3550 §6.4.2).
    SendReceiverReports,
    /// Send an RTCP BYE on every track (RFC 3550 §6.6): TEARDOWN follows.
    SendBye,
    /// Ask the sender of `track` for a keyframe: RTCP PLI (RFC 4585 §6.3.1).
    RequestKeyframe { track: usize },
    /// Ask the sender of `track` to send these packets again: RTCP generic NACK (RFC 4585
    /// §6.2.1), one compound packet. Numbers in the order asked.
    SendNack { track: usize, seqs: Vec<u16> },
    /// A keep-alive went out (its request is the preceding [`Output::Transmit`]).
    KeepAliveSent,
    /// Time to report statistics.
    StatsDue,
    /// The end: nothing more comes out but [`Output::Timeout`].
    Ended(End),
}

/// How one attempt ends.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Stopped,
    Fatal(String),
    /// A 401 that credentials (other ones, or any) would answer.
    Unauthorized(String),
    Lost(String),
    /// The peer hung up (call mode).
    Hangup(String),
}

/// What follows a TEARDOWN round.
#[derive(Clone, Debug, PartialEq, Eq)]
enum AfterTeardown {
    End(Outcome),
    /// UDP did not work: set up again over TCP on the same connection.
    SetupTcp,
}

/// Where the session is. A blocking request (one the next step waits for) is in
/// [`Attempt::awaiting`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// Waiting to (re)connect.
    Idle {
        until: Instant,
    },
    Connecting,
    Options,
    Describe,
    /// SETUP of `track` (over UDP, first waiting for its ports).
    Setup {
        track: usize,
    },
    /// The first PLAY, to the `next`-th control URL.
    Play {
        next: usize,
    },
    Streaming,
    TearingDown {
        urls: VecDeque<String>,
        until: Instant,
        then: AfterTeardown,
    },
    Ended,
}

/// A request sent while streaming, answered whenever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Async {
    KeepAlive,
    Pause,
    Play,
}

#[derive(Clone, Debug)]
struct Awaiting {
    cseq: u32,
    deadline: Instant,
    what: String,
    /// When it went, if its answer measures the round trip (not DESCRIBE, which a server
    /// may answer only once its encoder has started).
    sent: Option<Instant>,
    /// The request, to send again after a 401.
    req: Request,
}

/// State of one connection attempt.
#[derive(Clone, Debug)]
struct Attempt {
    /// The URL requests go to (changed by a redirect).
    url: String,
    connected: bool,
    redirected: bool,
    cseq: u32,
    session: Option<String>,
    session_timeout: Duration,
    public: Vec<Method>,
    keepalive: Method,
    aggregate: Option<String>,
    tracks: Vec<TrackInfo>,
    /// Per track: UDP rather than interleaved TCP.
    udp: Vec<bool>,
    /// RTSPS with SRTP over UDP: the server's key per track and ours (this connection's).
    srtp: Option<(Vec<SrtpMasterKey>, SrtpMasterKey)>,
    /// The URL is `rtsps://`.
    tls: bool,
    awaiting: Option<Awaiting>,
    /// Requests answered whenever: what, the deadline for an answer, when sent.
    pending: BTreeMap<u32, (Async, Option<Instant>, Instant)>,
    in_flight: u32,
    server_paused: bool,
    dog: Watchdog,
    /// The Digest challenge every request of this connection answers, once a 401 gave one.
    challenge: Option<DigestChallenge>,
    next_keepalive: Option<Instant>,
    next_rr: Option<Instant>,
    next_stats: Option<Instant>,
    /// RTP arrived before the session reached [`Step::Streaming`].
    early_media: bool,
    /// RTP arrived since the last PLAY; `announced` once [`ClientEvent::Streaming`] went.
    rtp_since_play: bool,
    announced: bool,
    /// Media flowed in this attempt.
    streamed: bool,
    bye: Vec<bool>,
    keyframes: Vec<KeyframeWish>,
    /// Per track: retransmission requests.
    nacks: Vec<Nacks>,
    stop_requested: bool,
}

/// The retransmission requests of one track.
#[derive(Clone, Debug, Default)]
struct Nacks {
    missing: BTreeMap<u16, Missing>,
    /// The current one-second window: when it started and the numbers asked in it.
    window: Option<(Instant, u32)>,
}

/// One missing packet.
#[derive(Clone, Copy, Debug)]
struct Missing {
    /// The receive side gives up on it then.
    until: Instant,
    tries: u32,
    /// When the next request may go.
    next: Instant,
    /// When the first request went (a round trip, if answered after exactly one: Karn).
    first: Option<Instant>,
}

/// Keyframe requests of one track.
#[derive(Clone, Copy, Debug, Default)]
struct KeyframeWish {
    /// A damaged picture waits for a keyframe.
    waiting: bool,
    /// RTP packets seen on the track.
    packets: u64,
    /// When the last request went, and the packet count then.
    last: Option<(Instant, u64)>,
}

impl KeyframeWish {
    /// When the next request may go: at once if none went yet; else `repeat` after the last
    /// one, and only once packets came since (none came: paused, or the sender stalled; asking
    /// again would only make keyframes for the other viewers).
    fn due(&self, repeat: Duration) -> Option<Option<Instant>> {
        if !self.waiting {
            return None;
        }
        match self.last {
            None => Some(None),
            Some((t, n)) => (self.packets != n).then_some(Some(t + repeat)),
        }
    }
}

impl Attempt {
    fn new(url: String) -> Self {
        Attempt {
            url,
            connected: false,
            redirected: false,
            cseq: 0,
            session: None,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            public: Vec::new(),
            keepalive: Method::Options,
            aggregate: None,
            tracks: Vec::new(),
            udp: Vec::new(),
            srtp: None,
            tls: false,
            awaiting: None,
            pending: BTreeMap::new(),
            in_flight: 0,
            server_paused: true,
            dog: Watchdog::new(false, Duration::ZERO, Duration::ZERO),
            challenge: None,
            next_keepalive: None,
            next_rr: None,
            next_stats: None,
            early_media: false,
            rtp_since_play: false,
            announced: false,
            streamed: false,
            bye: Vec::new(),
            keyframes: Vec::new(),
            nacks: Vec::new(),
            stop_requested: false,
        }
    }

    /// The URLs PLAY/PAUSE/TEARDOWN go to: the aggregate, else every track (RFC 2326 C.1.1).
    fn control_urls(&self) -> Vec<String> {
        match &self.aggregate {
            Some(a) => vec![a.clone()],
            None => self.tracks.iter().map(|t| t.control.clone()).collect(),
        }
    }

    /// Keep-alive every half session timeout (RFC 2326 §12.37).
    fn keepalive_interval(&self) -> Duration {
        (self.session_timeout / 2).max(Duration::from_secs(1))
    }

    /// Every audio and video track got a BYE: the peer closed its stream.
    fn peer_left(&self) -> bool {
        let mut av = self
            .tracks
            .iter()
            .zip(&self.bye)
            .filter(|(t, _)| t.media != "text")
            .peekable();
        av.peek().is_some() && av.all(|(_, bye)| *bye)
    }
}

/// The RTSP client session. See the [module docs](self).
#[derive(Debug)]
pub struct Client {
    cfg: ClientConfig,
    /// The URL as given (each attempt starts from it; a redirect lasts one attempt).
    url: String,
    rng: SmallRng,
    /// Our SRTP keys: a CSPRNG, seeded by the shell from OS entropy ([`Client::set_key_seed`]).
    key_rng: StdRng,
    out: VecDeque<Output>,
    last_now: Instant,
    step: Step,
    a: Attempt,
    /// Interleaved TCP: forced, or UDP failed once.
    tcp: bool,
    /// The viewer wants the server paused (kept across reconnects).
    want_paused: bool,
    attempt: u32,
    backoff: Duration,
    /// Call mode: media flowed in some attempt.
    answered: bool,
    /// Smoothed round trip to the server (RFC 6298's 1/8 gain), once measured.
    srtt: Option<Duration>,
    /// The smallest round trip an RTSP exchange measured.
    rtsp_rtt_min: Option<Duration>,
    /// Whether the media path's round trip was measured (then RTSP samples no longer count).
    media_rtt_measured: bool,
    /// For Digest authentication: the configured ones, else the URL's.
    credentials: Option<Credentials>,
}

impl Client {
    /// A client for `url`, starting at `now`; `seed` drives every random choice (report
    /// intervals, backoff jitter). A URL that is not `rtsp://` ends it at once
    /// ([`End::Failed`]).
    pub fn new(cfg: ClientConfig, url: &str, now: Instant, seed: u64) -> Self {
        // Credentials never go into requests: the URL is used without them.
        let parsed = RtspUrl::parse(url);
        let credentials = cfg.credentials.clone().or_else(|| {
            parsed
                .as_ref()
                .ok()
                .and_then(|u| u.userinfo.as_deref())
                .and_then(Credentials::from_userinfo)
        });
        let url = match &parsed {
            Ok(u) => u.full.as_str(),
            Err(_) => url,
        };
        let mut c = Client {
            credentials,
            tcp: cfg.transport == TransportMode::Tcp,
            backoff: cfg.timers.backoff_min,
            cfg,
            url: url.to_owned(),
            rng: SmallRng::seed_from_u64(seed),
            key_rng: StdRng::seed_from_u64(!seed),
            out: VecDeque::new(),
            last_now: now,
            step: Step::Idle { until: now },
            a: Attempt::new(url.to_owned()),
            want_paused: false,
            attempt: 0,
            answered: false,
            srtt: None,
            rtsp_rtt_min: None,
            media_rtt_measured: false,
        };
        c.emit(if c.cfg.call {
            ClientEvent::Calling {
                attempt: 0,
                reason: String::new(),
            }
        } else {
            ClientEvent::Connecting
        });
        if let Err(e) = parsed {
            c.step = Step::Ended;
            c.emit(ClientEvent::Ended(End::Failed(e.to_string())));
        } else {
            c.start_attempt();
        }
        c
    }

    /// Seeds the generator of our SRTP keys (RTSPS over UDP) with 32 bytes of OS entropy;
    /// without it they come from the 64-bit seed of [`Client::new`], good for tests only.
    pub fn set_key_seed(&mut self, seed: [u8; 32]) {
        self.key_rng = StdRng::from_seed(seed);
    }

    /// Media comes (or will come) as SRTP over UDP (RTSPS, `RTP/SAVP(F)`).
    pub fn is_srtp(&self) -> bool {
        self.a.srtp.is_some() && !self.tcp
    }

    /// The next thing to do; [`Output::Timeout`] when nothing is left for now.
    pub fn poll_output(&mut self) -> Output {
        self.out
            .pop_front()
            .unwrap_or_else(|| Output::Timeout(self.next_timeout()))
    }

    /// Whether the session has ended for good.
    pub fn is_ended(&self) -> bool {
        self.step == Step::Ended
    }

    /// Media comes (or will come) interleaved on the RTSP connection.
    pub fn is_tcp(&self) -> bool {
        self.tcp
    }

    /// The round trip to the server as measured (RTSP requests and their answers, NACKs
    /// answered after one request, [`Input::RoundTrip`]), smoothed; `None` before a sample.
    pub fn round_trip(&self) -> Option<Duration> {
        self.srtt
    }

    /// How long the receive side of `track` should wait for a missing packet so that the
    /// retransmission requests can be answered: the round trip, the repeats and the margin,
    /// capped at [`NackConfig::max_wait`]; `None` when no retransmission is asked for on
    /// the track (not offered, TCP, turned off).
    pub fn retransmission_wait(&self, track: usize) -> Option<Duration> {
        if !self.nack_possible(track) {
            return None;
        }
        let n = &self.cfg.nack;
        let rtt = self.rtt();
        let wait = rtt + self.nack_repeat() * n.tries.saturating_sub(1) + n.margin;
        Some(wait.min(n.max_wait))
    }

    fn rtt(&self) -> Duration {
        self.srtt.unwrap_or(self.cfg.nack.default_rtt)
    }

    /// How long after a request the next one for the same packet goes.
    fn nack_repeat(&self) -> Duration {
        self.rtt() * 5 / 4 + self.cfg.nack.margin
    }

    /// A round trip measured by an RTSP exchange. TCP's loss recovery (a retransmission
    /// timeout is 200 ms or more) and the server's own work only ever add to it, so it counts
    /// as its smallest sample so far, and only until the media path has been measured (an
    /// answered NACK, [`Input::RoundTrip`]): one slow exchange on a lossy path once made the
    /// round trip look like 455 ms, and a client that believed it never asked for a
    /// retransmission again.
    fn rtsp_rtt_sample(&mut self, rtt: Duration) {
        let min = self.rtsp_rtt_min.map_or(rtt, |m| m.min(rtt));
        self.rtsp_rtt_min = Some(min);
        if !self.media_rtt_measured {
            self.srtt = Some(min);
        }
    }

    /// A round trip measured on the media path (smoothed, RFC 6298's 1/8).
    fn rtt_sample(&mut self, rtt: Duration) {
        self.media_rtt_measured = true;
        let rtt = rtt.min(Duration::from_secs(10));
        self.srtt = Some(match self.srtt {
            None => rtt,
            Some(s) => (s * 7 + rtt) / 8,
        });
    }

    /// NACKs are offered, wanted and possible on `track` (set up over UDP).
    fn nack_possible(&self, track: usize) -> bool {
        self.wants_nack(track) && !self.tcp && self.a.udp.get(track) == Some(&true)
    }

    /// Track `track` offers NACK and this client asks for it.
    fn wants_nack(&self, track: usize) -> bool {
        self.cfg.nack.enabled && self.a.tracks.get(track).is_some_and(|t| t.nack)
    }

    pub fn handle_input(&mut self, input: Input) {
        if self.step == Step::Ended {
            return;
        }
        match input {
            Input::Connected { now } => {
                self.tick(now);
                if self.step == Step::Connecting {
                    self.a.connected = true;
                    let url = self.a.url.clone();
                    self.step = Step::Options;
                    self.send_blocking(Request::new(Method::Options, url), now);
                }
            }
            Input::Untrusted { now, why } => {
                self.tick(now);
                if self.step == Step::Connecting {
                    self.conclude(Outcome::Fatal(why), now);
                }
            }
            Input::ConnectFailed { now, why } => {
                self.tick(now);
                if self.step == Step::Connecting {
                    let target = RtspUrl::parse(&self.a.url).map(|u| u.authority());
                    let to = target.unwrap_or_else(|_| self.a.url.clone());
                    let redirected = if self.a.redirected {
                        " (redirected)"
                    } else {
                        ""
                    };
                    self.conclude(
                        Outcome::Lost(format!("cannot connect to {to}{redirected}: {why}")),
                        now,
                    );
                }
            }
            Input::Response { now, resp } => {
                self.tick(now);
                self.on_response(resp, now);
            }
            Input::Request { now, req } => {
                self.tick(now);
                self.answer(&req);
            }
            Input::ConnectionLost { now, why, by_peer } => {
                self.tick(now);
                self.on_connection_lost(why, by_peer, now);
            }
            Input::UdpBound {
                now,
                track,
                rtp_port,
                rtcp_port,
            } => {
                self.tick(now);
                if self.step == (Step::Setup { track }) && self.a.awaiting.is_none() {
                    // RTP/AVPF where NACK is offered and wanted (RFC 4585 §3.2), so that
                    // the server may answer with RFC 4588 retransmissions.
                    let avpf = self.wants_nack(track);
                    let secure = self.a.srtp.is_some();
                    let spec = TransportSpec {
                        profile: match (secure, avpf) {
                            (false, false) => TransportProfile::RtpAvp,
                            (false, true) => TransportProfile::RtpAvpf,
                            (true, false) => TransportProfile::Other("RTP/SAVP".into()),
                            (true, true) => TransportProfile::Other("RTP/SAVPF".into()),
                        },
                        client_port: Some((rtp_port, rtcp_port)),
                        ..TransportSpec::default()
                    };
                    self.send_setup(track, spec, now);
                }
            }
            Input::UdpBindFailed { now, track, why } => {
                self.tick(now);
                if self.step == (Step::Setup { track }) && self.a.awaiting.is_none() {
                    self.finish(Outcome::Lost(why), now);
                }
            }
            Input::MediaSeen { now, track } => {
                self.tick(now);
                self.on_media(track, now);
            }
            Input::Bye { now, track } => {
                self.tick(now);
                if let Some(b) = self.a.bye.get_mut(track) {
                    *b = true;
                }
                if self.cfg.call && self.a.peer_left() && self.has_tracks_step() {
                    self.finish(Outcome::Hangup("the peer hung up".into()), now);
                }
            }
            Input::PictureLost { now, track } | Input::KeyframeArrived { now, track } => {
                self.tick(now);
                let lost = matches!(input, Input::PictureLost { .. });
                if let Some(k) = self.a.keyframes.get_mut(track) {
                    k.waiting = lost;
                }
                self.keyframe_requests(now);
            }
            Input::Gap {
                now,
                track,
                seq,
                until,
            } => {
                self.tick(now);
                if !self.nack_possible(track)
                    || self.step != Step::Streaming
                    || self.a.server_paused
                {
                    return;
                }
                let Some(n) = self.a.nacks.get_mut(track) else {
                    return;
                };
                if n.missing.len() >= MAX_MISSING && !n.missing.contains_key(&seq) {
                    return;
                }
                n.missing.entry(seq).or_insert(Missing {
                    until,
                    tries: 0,
                    next: now,
                    first: None,
                });
                self.nack_requests(now);
            }
            Input::GapFilled {
                now,
                track,
                seq,
                retransmission,
            } => {
                self.tick(now);
                let m = self
                    .a
                    .nacks
                    .get_mut(track)
                    .and_then(|n| n.missing.remove(&seq));
                if let Some(Missing {
                    tries: 1,
                    first: Some(first),
                    ..
                }) = m
                {
                    if retransmission {
                        self.rtt_sample(now.saturating_duration_since(first));
                    }
                }
            }
            Input::RoundTrip { now, rtt } => {
                self.tick(now);
                self.rtt_sample(rtt);
            }
            Input::Command { now, cmd } => {
                self.tick(now);
                self.on_command(cmd, now);
            }
            Input::Timeout(now) => {
                self.tick(now);
                self.on_timeout(now);
            }
        }
    }

    /// The earliest instant something is due.
    fn next_timeout(&self) -> Instant {
        let a = &self.a;
        let far = self.last_now + Duration::from_secs(3600);
        let mut at = match &self.step {
            Step::Idle { until } => *until,
            Step::TearingDown { until, .. } => *until,
            Step::Streaming => [a.next_keepalive, a.next_rr, a.next_stats, a.dog.deadline()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(far),
            _ => far,
        };
        if let Some(w) = &a.awaiting {
            at = at.min(w.deadline);
        }
        if let Some(d) = a.pending.values().filter_map(|(_, d, _)| *d).min() {
            at = at.min(d);
        }
        let repeat = self.cfg.timers.keyframe_repeat;
        // Keyframe requests go only while tracks are in use; their deadlines would otherwise
        // come back, already past, for as long as a TEARDOWN is waited for.
        let keyframes = if self.has_tracks_step() {
            &a.keyframes[..]
        } else {
            &[]
        };
        for k in keyframes {
            if let Some(Some(d)) = k.due(repeat) {
                at = at.min(d);
            }
        }
        if self.step == Step::Streaming {
            for n in &a.nacks {
                if let Some(d) = n.missing.values().map(|m| m.next.min(m.until)).min() {
                    at = at.min(d);
                }
            }
        }
        at
    }

    fn tick(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
    }

    fn emit(&mut self, ev: ClientEvent) {
        self.out.push_back(Output::Event(ev));
    }

    /// Whether the tracks of the description are in use (SETUP or later).
    fn has_tracks_step(&self) -> bool {
        matches!(
            self.step,
            Step::Setup { .. } | Step::Play { .. } | Step::Streaming
        )
    }

    // ---- attempts ------------------------------------------------------------------------

    fn start_attempt(&mut self) {
        self.a = Attempt::new(self.url.clone());
        self.connect();
    }

    fn connect(&mut self) {
        match RtspUrl::parse(&self.a.url) {
            Ok(u) => {
                self.step = Step::Connecting;
                // Over TLS, UDP only as SRTP: decided once the description is known.
                self.a.tls = u.tls;
                self.out.push_back(Output::Connect {
                    host: u.host,
                    port: u.port,
                    tls: u.tls,
                });
            }
            // Checked in new() and for redirects before they get here.
            Err(e) => {
                let now = self.last_now;
                self.conclude(Outcome::Fatal(e.to_string()), now);
            }
        }
    }

    /// Ends the attempt: a polite one (stop, fatal) with BYE and TEARDOWN waited for, a lost
    /// one with TEARDOWN sent and not waited for, then [`Self::conclude`].
    fn finish(&mut self, outcome: Outcome, now: Instant) {
        let wait = !matches!(outcome, Outcome::Lost(_) | Outcome::Hangup(_));
        self.teardown(wait, AfterTeardown::End(outcome), now);
    }

    /// RTCP BYE, then TEARDOWN to each control URL (RFC 2326 §10.7), one after the other
    /// within [`Timers::teardown`] if `wait`, all at once otherwise.
    fn teardown(&mut self, wait: bool, then: AfterTeardown, now: Instant) {
        self.a.awaiting = None;
        self.a.pending.clear();
        self.a.in_flight = 0;
        if self.a.session.is_none() || !self.a.connected {
            return self.after_teardown(then, now);
        }
        self.emit(ClientEvent::SendBye);
        let mut urls: VecDeque<String> = self.a.control_urls().into();
        if !wait {
            for u in urls {
                self.send(Request::new(Method::Teardown, u));
            }
            self.after_teardown(then, now);
            return;
        }
        let until = now + self.cfg.timers.teardown;
        if let Some(u) = urls.pop_front() {
            self.send_teardown(u, until);
        }
        self.step = Step::TearingDown { urls, until, then };
    }

    fn send_teardown(&mut self, url: String, until: Instant) {
        let what = format!("TEARDOWN {url}");
        let req = Request::new(Method::Teardown, url);
        let cseq = self.send(req.clone());
        self.a.awaiting = Some(Awaiting {
            cseq,
            deadline: until,
            what,
            sent: None,
            req,
        });
    }

    fn after_teardown(&mut self, then: AfterTeardown, now: Instant) {
        self.a.session = None;
        self.a.awaiting = None;
        match then {
            AfterTeardown::End(o) => self.conclude(o, now),
            AfterTeardown::SetupTcp if self.a.stop_requested => {
                self.conclude(Outcome::Stopped, now)
            }
            AfterTeardown::SetupTcp if !self.a.connected => self.conclude(
                Outcome::Lost("connection closed after TEARDOWN".into()),
                now,
            ),
            AfterTeardown::SetupTcp => {
                self.tcp = true;
                self.begin_setup(now);
            }
        }
    }

    /// Closes everything and decides what comes next: the end, or another attempt after a
    /// backoff (call mode: after [`Timers::call_retry`], until the peer has answered once).
    fn conclude(&mut self, outcome: Outcome, now: Instant) {
        if !matches!(self.step, Step::Idle { .. }) {
            self.out.push_back(Output::Disconnect);
        }
        let streamed = self.a.streamed;
        self.a = Attempt::new(self.url.clone());
        let reason = match outcome {
            Outcome::Stopped => return self.end(End::Stopped),
            Outcome::Fatal(msg) => return self.end(End::Failed(msg)),
            Outcome::Unauthorized(msg) => return self.end(End::Unauthorized(msg)),
            Outcome::Lost(r) | Outcome::Hangup(r) => r,
        };
        if self.cfg.call {
            self.answered |= streamed;
            if self.answered {
                return self.end(End::CallEnded(reason));
            }
            self.attempt = self.attempt.saturating_add(1);
            self.emit(ClientEvent::Calling {
                attempt: self.attempt,
                reason,
            });
            self.step = Step::Idle {
                until: now + self.cfg.timers.call_retry,
            };
            return;
        }
        if streamed {
            self.attempt = 0;
            self.backoff = self.cfg.timers.backoff_min;
        }
        self.attempt = self.attempt.saturating_add(1);
        let retry_in = self
            .backoff
            .mul_f64(1.0 + self.rng.random_range(0.0..BACKOFF_JITTER));
        self.emit(ClientEvent::Reconnecting {
            attempt: self.attempt,
            reason,
            retry_in,
        });
        self.step = Step::Idle {
            until: now + retry_in,
        };
        self.backoff = (self.backoff * 2).min(self.cfg.timers.backoff_max);
    }

    fn end(&mut self, end: End) {
        self.step = Step::Ended;
        self.emit(ClientEvent::Ended(end));
    }

    fn on_connection_lost(&mut self, why: String, by_peer: bool, now: Instant) {
        if !self.a.connected {
            return;
        }
        self.a.connected = false;
        if let Step::TearingDown { then, .. } = &self.step {
            let then = then.clone();
            self.after_teardown(then, now);
            return;
        }
        // A peer hanging up closes its server's connections right after its BYEs.
        let outcome = if self.cfg.call && by_peer {
            Outcome::Hangup("the peer hung up".into())
        } else {
            Outcome::Lost(why)
        };
        self.conclude(outcome, now);
    }

    fn on_command(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::Pause | Command::Resume => {
                self.want_paused = cmd == Command::Pause;
                if self.step == Step::Streaming {
                    self.reconcile();
                }
            }
            Command::Stop => match self.step {
                Step::TearingDown { .. } => self.a.stop_requested = true,
                Step::Idle { .. } | Step::Connecting => self.conclude(Outcome::Stopped, now),
                _ => self.finish(Outcome::Stopped, now),
            },
        }
    }

    fn on_timeout(&mut self, now: Instant) {
        if let Step::Idle { until } = self.step {
            if now >= until {
                self.start_attempt();
            }
            return;
        }
        if let Some(w) = &self.a.awaiting {
            if now >= w.deadline {
                let what = w.what.clone();
                if let Step::TearingDown { then, .. } = &self.step {
                    let then = then.clone();
                    self.after_teardown(then, now);
                } else {
                    let secs = self.cfg.timers.request.as_secs();
                    let why = format!("no response to {what} within {secs} s");
                    self.finish(Outcome::Lost(why), now);
                }
                return;
            }
        }
        if let Step::TearingDown { until, then, .. } = &self.step {
            if now >= *until {
                let then = then.clone();
                self.after_teardown(then, now);
            }
            return;
        }
        let overdue: Vec<(u32, Async)> = self
            .a
            .pending
            .iter()
            .filter(|(_, (_, d, _))| d.is_some_and(|d| now >= d))
            .map(|(c, (k, _, _))| (*c, *k))
            .collect();
        for (cseq, kind) in overdue {
            self.a.pending.remove(&cseq);
            let what = match kind {
                Async::Pause => "PAUSE",
                Async::Play => "PLAY",
                Async::KeepAlive => continue,
            };
            let secs = self.cfg.timers.request.as_secs();
            let why = format!("no response to {what} within {secs} s");
            return self.finish(Outcome::Lost(why), now);
        }
        if self.step == Step::Streaming {
            self.streaming_timers(now);
        }
        self.keyframe_requests(now);
        self.nack_requests(now);
    }

    /// The NACKs due at `now`, one event per track: a missing packet is asked for while a
    /// retransmission can still arrive before `until` (a round trip from now), at most
    /// [`NackConfig::tries`] times, [`Self::nack_repeat`] apart, within the track's budget
    /// of [`NackConfig::per_second`] numbers. Packets past hope are forgotten.
    fn nack_requests(&mut self, now: Instant) {
        if self.step != Step::Streaming {
            return;
        }
        let (rtt, repeat) = (self.rtt(), self.nack_repeat());
        let (tries, budget) = (self.cfg.nack.tries, self.cfg.nack.per_second);
        for track in 0..self.a.nacks.len() {
            let n = &mut self.a.nacks[track];
            if n.missing.is_empty() {
                continue;
            }
            n.missing
                .retain(|_, m| now + rtt <= m.until && (m.tries < tries || now < m.next));
            let window = match n.window {
                Some((start, used)) if now < start + Duration::from_secs(1) => (start, used),
                _ => (now, 0),
            };
            let (start, mut used) = window;
            let mut seqs = Vec::new();
            // In order of the deadlines, so the budget goes to the most urgent first.
            let mut due: Vec<(Instant, u16)> = n
                .missing
                .iter()
                .filter(|(_, m)| m.tries < tries && m.next <= now)
                .map(|(s, m)| (m.until, *s))
                .collect();
            due.sort_unstable();
            for (_, seq) in due {
                let Some(m) = n.missing.get_mut(&seq) else {
                    continue;
                };
                if used >= budget {
                    // Over budget: try again in the next window, if still in time then.
                    m.next = start + Duration::from_secs(1);
                    continue;
                }
                used += 1;
                m.tries += 1;
                m.first.get_or_insert(now);
                m.next = now + repeat;
                seqs.push(seq);
            }
            n.window = Some((start, used));
            if !seqs.is_empty() {
                self.emit(ClientEvent::SendNack { track, seqs });
            }
        }
    }

    /// A keyframe request for each track whose damaged picture waits and whose pacing allows.
    fn keyframe_requests(&mut self, now: Instant) {
        if !self.has_tracks_step() {
            return;
        }
        let repeat = self.cfg.timers.keyframe_repeat;
        for track in 0..self.a.keyframes.len() {
            let k = &mut self.a.keyframes[track];
            if k.due(repeat).is_some_and(|d| d.is_none_or(|d| now >= d)) {
                k.last = Some((now, k.packets));
                self.emit(ClientEvent::RequestKeyframe { track });
            }
        }
    }

    // ---- requests ------------------------------------------------------------------------

    /// Numbers `req` (§12.17), adds the session (§12.37) and our name, and queues it.
    fn send(&mut self, mut req: Request) -> u32 {
        self.a.cseq = self.a.cseq.wrapping_add(1);
        req.headers.set_typed(&CSeq(self.a.cseq));
        req.headers.set("User-Agent", self.cfg.user_agent.as_str());
        if let Some(s) = &self.a.session {
            if req.headers.get(Session::NAME).is_none() {
                req.headers.set(Session::NAME, s.as_str());
            }
        }
        if let (Some(ch), Some(cr)) = (&self.a.challenge, &self.credentials) {
            let cnonce = format!("{:016x}", self.rng.random::<u64>());
            let method = req.method.as_str().to_owned();
            if let Some(d) =
                DigestCredentials::answer(ch, &cr.user, &cr.password, &method, &req.uri, &cnonce)
            {
                req.headers
                    .set(Authorization::NAME, Authorization::Digest(d).to_value());
            }
        }
        self.out.push_back(Output::Transmit(req));
        self.a.cseq
    }

    /// Sends a request the next step waits for, within [`Timers::request`].
    fn send_blocking(&mut self, req: Request, now: Instant) {
        let what = format!("{} {}", req.method, req.uri);
        let sent = (req.method != Method::Describe).then_some(now);
        let cseq = self.send(req.clone());
        self.a.awaiting = Some(Awaiting {
            cseq,
            deadline: now + self.cfg.timers.request,
            what,
            sent,
            req,
        });
    }

    /// Sends a request answered whenever (keep-alive, PAUSE, resuming PLAY).
    fn send_async(&mut self, req: Request, kind: Async, now: Instant) {
        let cseq = self.send(req);
        if self.a.pending.len() >= MAX_PENDING {
            self.a.pending.retain(|_, (k, _, _)| *k != Async::KeepAlive);
        }
        // A server may ignore keep-alives; PAUSE and PLAY must be answered.
        let deadline = (kind != Async::KeepAlive).then(|| now + self.cfg.timers.request);
        self.a.pending.insert(cseq, (kind, deadline, now));
    }

    /// Requests from the server (RFC 2326 §10: OPTIONS and GET_PARAMETER as keep-alive
    /// probes) are answered 200; anything else 501.
    fn answer(&mut self, req: &Request) {
        let status = match req.method {
            Method::Options | Method::GetParameter => StatusCode::OK,
            _ => StatusCode::NOT_IMPLEMENTED,
        };
        let mut resp = Response::new(status);
        if let Some(c) = req.headers.get(CSeq::NAME) {
            resp = resp.header(CSeq::NAME, c);
        }
        self.out.push_back(Output::Respond(resp));
    }

    fn on_response(&mut self, resp: Response, now: Instant) {
        let cseq = resp.cseq().ok().flatten();
        let ours = self
            .a
            .awaiting
            .as_ref()
            // A server that leaves out CSeq: one blocking request is outstanding.
            .is_some_and(|w| cseq.is_none_or(|c| c == w.cseq));
        if ours {
            let Some(w) = self.a.awaiting.take() else {
                return;
            };
            if let Some(sent) = w.sent {
                self.rtsp_rtt_sample(now.saturating_duration_since(sent));
            }
            // (A TEARDOWN refused goes on to the next one, as any answer does.)
            let tearing_down = matches!(self.step, Step::TearingDown { .. } | Step::Ended);
            if resp.status == StatusCode::UNAUTHORIZED && !tearing_down {
                return self.on_unauthorized(&resp, w.req, now);
            }
            return self.on_blocking_response(resp, now);
        }
        if resp.status == StatusCode::UNAUTHORIZED {
            // A keep-alive, PAUSE or PLAY on a nonce gone stale: later requests use the new one.
            if let Some(ch) = pick_challenge(&resp).filter(|c| c.stale) {
                self.a.challenge = Some(ch);
            }
        }
        let Some((kind, _, sent)) = cseq.and_then(|c| self.a.pending.remove(&c)) else {
            return; // late, or not ours
        };
        self.rtsp_rtt_sample(now.saturating_duration_since(sent));
        if resp.status == StatusCode::SESSION_NOT_FOUND {
            let why = "the server no longer knows our session (454)".to_owned();
            return self.finish(Outcome::Lost(why), now);
        }
        match kind {
            Async::KeepAlive => {
                if !resp.status.is_success() && self.a.keepalive == Method::GetParameter {
                    self.a.keepalive = Method::Options;
                }
            }
            Async::Pause | Async::Play => {
                self.a.in_flight = self.a.in_flight.saturating_sub(1);
                if kind == Async::Pause {
                    for n in &mut self.a.nacks {
                        n.missing.clear();
                    }
                }
                if !resp.status.is_success() {
                    // Don't ask again and again: the wish follows the server.
                    self.want_paused = self.a.server_paused;
                } else if kind == Async::Play {
                    self.on_play_ok(&resp, now);
                } else if !self.a.server_paused {
                    self.a.server_paused = true;
                    self.a.dog.on_pause();
                    self.emit(ClientEvent::Paused);
                }
                // The viewer may have changed their mind while this was in flight.
                if self.step == Step::Streaming {
                    self.reconcile();
                }
            }
        }
    }

    /// A 401 to the blocking request `req`: answer the challenge once (or again for a stale
    /// nonce), or end with a message that says what is wrong.
    fn on_unauthorized(&mut self, resp: &Response, mut req: Request, now: Instant) {
        let what = format!("{}", req.method);
        let Some(ch) = pick_challenge(resp) else {
            let why = format!(
                "{what}: the server requires authentication (401) by a scheme other than Digest MD5/SHA-256"
            );
            return self.finish(Outcome::Fatal(why), now);
        };
        if self.credentials.is_none() {
            let why = format!(
                "{what}: the server requires a user name and password (401): give them in the URL \
                 (rtsp://USER:PASSWORD@HOST:PORT/PATH) or with --user and --password-file"
            );
            return self.finish(Outcome::Unauthorized(why), now);
        }
        // Once challenged, every request of the connection carried credentials.
        let had_credentials = self.a.challenge.is_some();
        if had_credentials && !ch.stale {
            let user = self.credentials.as_ref().map_or("", |c| c.user.as_str());
            let why = format!(
                "{what}: the server refused user {user:?} (401): wrong user name or password"
            );
            return self.finish(Outcome::Unauthorized(why), now);
        }
        self.a.challenge = Some(ch);
        req.headers.remove(Authorization::NAME);
        req.headers.remove(CSeq::NAME);
        self.send_blocking(req, now);
    }

    fn on_blocking_response(&mut self, resp: Response, now: Instant) {
        match self.step.clone() {
            Step::Options => {
                if let Some(loc) = redirect_location(&resp) {
                    return self.follow(&loc, now);
                }
                if resp.status.is_success() {
                    self.a.public = resp
                        .headers
                        .get_typed::<Public>()
                        .ok()
                        .flatten()
                        .map(|p| p.0)
                        .unwrap_or_default();
                }
                self.step = Step::Describe;
                let req = Request::new(Method::Describe, self.a.url.as_str())
                    .header("Accept", "application/sdp");
                self.send_blocking(req, now);
            }
            Step::Describe => {
                if let Some(loc) = redirect_location(&resp) {
                    return self.follow(&loc, now);
                }
                if !resp.status.is_success() {
                    return self.finish(refused("DESCRIBE", &resp), now);
                }
                self.on_description(resp, now);
            }
            Step::Setup { track } => self.on_setup_response(track, resp, now),
            Step::Play { next } => {
                if !resp.status.is_success() {
                    return self.finish(refused("PLAY", &resp), now);
                }
                self.on_play_ok(&resp, now);
                self.play(next + 1, now);
            }
            Step::TearingDown {
                mut urls,
                until,
                then,
            } => match urls.pop_front() {
                Some(u) => {
                    self.send_teardown(u, until);
                    self.step = Step::TearingDown { urls, until, then };
                }
                None => self.after_teardown(then, now),
            },
            Step::Idle { .. } | Step::Connecting | Step::Streaming | Step::Ended => {}
        }
    }

    // ---- OPTIONS, DESCRIBE ---------------------------------------------------------------

    /// Follows one redirect (3xx with `Location`, §11.3) to a new connection.
    fn follow(&mut self, location: &str, now: Instant) {
        if self.a.redirected {
            let why = format!("redirected again, to {location}");
            return self.finish(Outcome::Fatal(why), now);
        }
        match RtspUrl::parse(&url::resolve(&self.a.url, location)) {
            Ok(target) => {
                self.a.redirected = true;
                self.a.connected = false;
                self.a.url = target.full;
                self.connect();
            }
            Err(e) => self.finish(Outcome::Fatal(format!("redirect: {e}")), now),
        }
    }

    fn on_description(&mut self, resp: Response, now: Instant) {
        let text = String::from_utf8_lossy(&resp.body).into_owned();
        let session = match sdp::parse(&text) {
            Ok(s) => s,
            Err(e) => {
                let why = format!("the server's session description is invalid: {e}");
                return self.finish(Outcome::Fatal(why), now);
            }
        };
        let base = url::describe_base(
            &self.a.url,
            resp.headers.get("Content-Base"),
            resp.headers.get("Content-Location"),
        );
        self.a.aggregate = session.control().map(|c| url::aggregate(&base, Some(c)));
        self.a.tracks = select_tracks(&session, &base, self.cfg.playable);
        if self.a.tracks.is_empty() {
            let why = self.cfg.no_playable_track.clone();
            return self.finish(Outcome::Fatal(why), now);
        }
        self.a.srtp = None;
        if self.a.tls && !self.tcp {
            let keys: Option<Vec<SrtpMasterKey>> = self
                .a
                .tracks
                .iter()
                .map(|t| offered_key(&session, t.media_index))
                .collect();
            match keys {
                Some(keys) => {
                    let mut ours: SrtpMasterKey = Default::default();
                    self.key_rng.fill_bytes(&mut ours.0);
                    self.key_rng.fill_bytes(&mut ours.1);
                    self.a.srtp = Some((keys, ours));
                }
                None if self.cfg.transport == TransportMode::Udp => {
                    let why = "the server offers no SRTP key (a=key-mgmt:mikey) for every \
                        track, and plain RTP never goes beside TLS: use TCP or auto"
                        .to_owned();
                    return self.finish(Outcome::Fatal(why), now);
                }
                // Media interleaved in the TLS connection.
                None => self.tcp = true,
            }
        }
        self.a.keepalive = if self.a.public.contains(&Method::GetParameter) {
            Method::GetParameter
        } else {
            Method::Options
        };
        self.emit(ClientEvent::Described {
            sdp: text,
            session: Box::new(session),
            base,
            tracks: self.a.tracks.clone(),
        });
        self.begin_setup(now);
    }

    // ---- SETUP -----------------------------------------------------------------------------

    fn begin_setup(&mut self, now: Instant) {
        let n = self.a.tracks.len();
        self.a.udp = vec![false; n];
        self.a.bye = vec![false; n];
        self.a.keyframes = vec![KeyframeWish::default(); n];
        self.a.nacks = vec![Nacks::default(); n];
        self.a.early_media = false;
        self.emit(ClientEvent::TracksReset { tcp: self.tcp });
        self.setup(0, now);
    }

    /// SETUP of `track` (RFC 2326 §10.4): interleaved channels 2i, 2i+1 over TCP, else a port
    /// pair the shell binds first.
    fn setup(&mut self, track: usize, now: Instant) {
        if track >= self.a.tracks.len() {
            return self.start_playing(now);
        }
        self.step = Step::Setup { track };
        if self.tcp {
            // At most MAX_TRACKS (127) tracks, so the channels fit in a u8.
            let ch = (2 * track).min(254) as u8;
            let spec = TransportSpec {
                profile: TransportProfile::RtpAvpTcp,
                interleaved: Some((ch, ch + 1)),
                ..TransportSpec::default()
            };
            self.send_setup(track, spec, now);
        } else {
            self.out.push_back(Output::BindUdp { track });
        }
    }

    fn send_setup(&mut self, track: usize, spec: TransportSpec, now: Instant) {
        let Some(control) = self.a.tracks.get(track).map(|t| t.control.clone()) else {
            return;
        };
        let secure = spec.profile.is_secure();
        let mut req = Request::new(Method::Setup, control.as_str()).typed(&Transport(vec![spec]));
        if let (true, Some((_, ours))) = (secure, &self.a.srtp) {
            let km = self.key_mgmt(&control, *ours);
            req = req.header("KeyMgmt", km);
        }
        self.send_blocking(req, now);
    }

    /// A `KeyMgmt` header (RFC 4567 §3.3) carrying `key` for the stream at `uri`: a MIKEY
    /// message (RFC 3830) whose crypto session names SSRC 0 (the server takes the key for
    /// whatever SRTCP we send) and timestamp 0 (no wall clock here; the server keeps no
    /// replay cache of MIKEY messages).
    fn key_mgmt(&mut self, uri: &str, key: SrtpMasterKey) -> String {
        let mut tek = Vec::with_capacity(key.0.len() + key.1.len());
        tek.extend_from_slice(&key.0);
        tek.extend_from_slice(&key.1);
        let mut rand = vec![0u8; 16];
        self.key_rng.fill_bytes(&mut rand);
        let msg = crate::mikey::MikeyMessage::srtp(self.key_rng.next_u32(), &[0], tek, 0, rand);
        let value = msg.key_mgmt();
        let data = value.strip_prefix("mikey ").unwrap_or(&value);
        format!("prot=mikey; uri=\"{uri}\"; data=\"{data}\"")
    }

    fn on_setup_response(&mut self, track: usize, resp: Response, now: Instant) {
        if !resp.status.is_success() {
            if !self.tcp && self.cfg.transport == TransportMode::Auto {
                // The server refused UDP (461, or any refusal): try interleaved TCP.
                return self.teardown(true, AfterTeardown::SetupTcp, now);
            }
            return self.finish(refused("SETUP", &resp), now);
        }
        match resp.headers.get_typed::<Session>() {
            Ok(Some(s)) => {
                if self.a.session.is_none() {
                    self.a.session = Some(s.id);
                }
                if let Some(t) = s.timeout {
                    self.a.session_timeout = Duration::from_secs(u64::from(t.clamp(2, 3600)));
                }
            }
            Ok(None) if self.a.session.is_none() => {
                let why = "SETUP response without a Session header".to_owned();
                return self.finish(Outcome::Fatal(why), now);
            }
            Ok(None) => {}
            Err(e) => return self.finish(Outcome::Fatal(format!("SETUP response: {e}")), now),
        }
        let reply = resp
            .headers
            .get_typed::<Transport>()
            .ok()
            .flatten()
            .and_then(|t| t.0.into_iter().next());
        let ssrc = reply.as_ref().and_then(|r| r.ssrc);
        let link = if self.tcp {
            let ch = (2 * track).min(254) as u8;
            let (rtp, rtcp) = reply
                .as_ref()
                .and_then(|r| r.interleaved)
                .unwrap_or((ch, ch + 1));
            TrackLink::Tcp { rtp, rtcp }
        } else {
            // Media comes from the RTSP server unless `source=` says otherwise.
            TrackLink::Udp {
                source: reply
                    .as_ref()
                    .and_then(|r| r.source.as_deref())
                    .and_then(|s| s.parse::<IpAddr>().ok()),
                server_ports: reply.as_ref().and_then(|r| r.server_port),
            }
        };
        let udp = matches!(link, TrackLink::Udp { .. });
        if let Some(u) = self.a.udp.get_mut(track) {
            *u = udp;
        }
        let srtp = match &self.a.srtp {
            Some((keys, ours)) if udp => keys.get(track).map(|&k| SrtpKeys {
                receive: k,
                send: *ours,
            }),
            _ => None,
        };
        self.emit(ClientEvent::TransportChosen {
            track,
            link,
            ssrc,
            srtp,
        });
        if udp {
            self.emit(ClientEvent::NatPunch { track });
        }
        self.setup(track + 1, now);
    }

    // ---- PLAY, PAUSE -----------------------------------------------------------------------

    /// After SETUP: the first PLAY (§10.5), unless the viewer wants the stream paused.
    fn start_playing(&mut self, now: Instant) {
        let t = &self.cfg.timers;
        let may_fall_back = !self.tcp && self.cfg.transport == TransportMode::Auto;
        self.a.dog = Watchdog::new(may_fall_back, t.udp_grace, t.media_timeout);
        self.a.server_paused = true;
        self.a.in_flight = 0;
        self.a.pending.clear();
        if self.want_paused {
            self.emit(ClientEvent::Paused);
            return self.start_streaming(now);
        }
        self.play(0, now);
    }

    fn play(&mut self, next: usize, now: Instant) {
        match self.a.control_urls().into_iter().nth(next) {
            Some(u) => {
                self.step = Step::Play { next };
                let req = Request::new(Method::Play, u).header("Range", "npt=0.000-");
                self.send_blocking(req, now);
            }
            None => {
                for track in 0..self.a.tracks.len() {
                    if self.a.udp.get(track) == Some(&true) {
                        self.emit(ClientEvent::NatPunch { track });
                    }
                }
                self.start_streaming(now);
            }
        }
    }

    fn start_streaming(&mut self, now: Instant) {
        self.step = Step::Streaming;
        self.a.next_keepalive = Some(now + self.a.keepalive_interval());
        self.a.next_rr = Some(now + self.rr_interval());
        self.a.next_stats = Some(now + self.cfg.timers.stats);
        self.a.rtp_since_play = std::mem::take(&mut self.a.early_media);
        self.announce();
        self.reconcile();
    }

    fn on_play_ok(&mut self, resp: &Response, now: Instant) {
        let rtp_info = match resp.headers.get_typed::<RtpInfo>() {
            Ok(Some(info)) => {
                let n = self.a.tracks.len();
                let mut out = Vec::new();
                for (i, t) in self.a.tracks.iter().enumerate() {
                    let entry = info
                        .0
                        .iter()
                        .find(|e| same_stream(&e.url, &t.control))
                        .or_else(|| (info.0.len() == n).then(|| &info.0[i]));
                    if let Some(e) = entry {
                        out.push(TrackRtpInfo {
                            track: i,
                            rtptime: e.rtptime,
                            seq: e.seq,
                        });
                    }
                }
                out
            }
            _ => Vec::new(),
        };
        self.a.server_paused = false;
        self.a.dog.on_play(now);
        self.a.rtp_since_play = false;
        self.a.announced = false;
        self.emit(ClientEvent::Playing { rtp_info });
    }

    /// Brings the server to the state the viewer wants: PAUSE (§10.6) or PLAY.
    fn reconcile(&mut self) {
        if self.a.in_flight > 0 || self.want_paused == self.a.server_paused {
            return;
        }
        let (method, kind) = if self.want_paused {
            (Method::Pause, Async::Pause)
        } else {
            (Method::Play, Async::Play)
        };
        let now = self.last_now;
        for u in self.a.control_urls() {
            self.send_async(Request::new(method.clone(), u), kind, now);
            self.a.in_flight += 1;
        }
    }

    // ---- receiving ---------------------------------------------------------------------------

    fn on_media(&mut self, track: usize, now: Instant) {
        if track >= self.a.tracks.len() || !self.has_tracks_step() {
            return;
        }
        self.a.streamed = true;
        self.a.dog.on_rtp(now);
        if let Some(k) = self.a.keyframes.get_mut(track) {
            k.packets += 1;
        }
        self.keyframe_requests(now);
        if self.step == Step::Streaming {
            self.a.rtp_since_play = true;
            self.announce();
        } else {
            self.a.early_media = true;
        }
    }

    fn announce(&mut self) {
        if self.a.rtp_since_play && !self.a.announced && !self.a.server_paused {
            self.a.announced = true;
            self.emit(ClientEvent::Streaming { tcp: self.tcp });
        }
    }

    /// The watchdog, keep-alive, receiver-report and statistics clocks.
    fn streaming_timers(&mut self, now: Instant) {
        match self.a.dog.poll(now) {
            Some(Verdict::FallbackToTcp) => {
                return self.teardown(true, AfterTeardown::SetupTcp, now);
            }
            Some(Verdict::NoMedia) => {
                let secs = self.cfg.timers.media_timeout.as_secs();
                let why = format!("no media from the server for {secs} s");
                return self.finish(Outcome::Lost(why), now);
            }
            None => {}
        }
        if self.a.next_keepalive.is_some_and(|t| now >= t) {
            let url = self
                .a
                .aggregate
                .clone()
                .unwrap_or_else(|| self.a.url.clone());
            let method = self.a.keepalive.clone();
            self.send_async(Request::new(method, url), Async::KeepAlive, now);
            self.emit(ClientEvent::KeepAliveSent);
            self.a.next_keepalive = Some(now + self.a.keepalive_interval());
        }
        if self.a.next_rr.is_some_and(|t| now >= t) {
            self.emit(ClientEvent::SendReceiverReports);
            self.a.next_rr = Some(now + self.rr_interval());
        }
        if self.a.next_stats.is_some_and(|t| now >= t) {
            self.emit(ClientEvent::StatsDue);
            self.a.next_stats = Some(now + self.cfg.timers.stats);
        }
    }

    /// RFC 3550 §6.3.1: the interval randomized over [0.5, 1.5] × the mean, so receivers do
    /// not synchronize.
    fn rr_interval(&mut self) -> Duration {
        let mean = self.cfg.timers.receiver_reports;
        mean.mul_f64(self.rng.random_range(0.5..=1.5))
    }
}

/// The tracks of a description to set up: each media section `playable` accepts and that
/// has a control URL, resolved against `base` (a single stream without one is the
/// presentation, RFC 2326 C.1.1). At most [`MAX_TRACKS`].
pub fn select_tracks(
    sd: &SessionDescription,
    base: &str,
    playable: impl Fn(&MediaDescription) -> bool,
) -> Vec<TrackInfo> {
    let mut out = Vec::new();
    for (mi, m) in sd.media.iter().enumerate() {
        if out.len() >= MAX_TRACKS {
            break;
        }
        if !playable(m) {
            continue;
        }
        let control = match m.control() {
            Some(c) => url::resolve(base, c),
            None if sd.media.len() == 1 => url::aggregate(base, sd.control()),
            None => continue,
        };
        out.push(TrackInfo {
            media_index: mi,
            media: m.media.clone(),
            control,
            nack: m.is_avpf() && m.offers_nack(None),
        });
    }
    out
}

/// The SRTP key the description offers for media section `mi`: `RTP/SAVP(F)` with an
/// `a=key-mgmt:mikey` (the medium's, else the session's) holding one
/// AES_CM_128_HMAC_SHA1_80 master key and salt.
fn offered_key(sd: &SessionDescription, mi: usize) -> Option<SrtpMasterKey> {
    let m = sd.media.get(mi)?;
    if !m.proto.to_ascii_uppercase().starts_with("RTP/SAVP") {
        return None;
    }
    let value = m
        .attribute("key-mgmt")
        .or_else(|| sd.attribute("key-mgmt"))?;
    let msg = crate::mikey::MikeyMessage::from_key_mgmt(value).ok()?;
    if !msg.policies.iter().all(|p| p.is_aes_cm_128_hmac_sha1_80()) {
        return None;
    }
    msg.master_key()
}

/// Whether an `RTP-Info` URL names the stream set up at `control` (same URL, or the same last
/// path segment: servers differ in how they spell the base).
pub fn same_stream(info_url: &str, control: &str) -> bool {
    let trim = |s: &str| s.trim().trim_end_matches('/').to_owned();
    let (a, b) = (trim(info_url), trim(control));
    if a == b {
        return true;
    }
    let last = |s: &str| s.rsplit('/').next().unwrap_or("").to_owned();
    !last(&a).is_empty() && last(&a) == last(&b)
}

/// A 3xx response's `Location` (RFC 2326 §11.3).
fn redirect_location(resp: &Response) -> Option<String> {
    (300..400)
        .contains(&resp.status.0)
        .then(|| resp.headers.get("Location").map(str::to_owned))
        .flatten()
}

fn pick_challenge(resp: &Response) -> Option<DigestChallenge> {
    preferred_challenge(resp.headers.get_all(WwwAuthenticate::NAME))
}

/// What a refusal means: 4xx (not found, unauthorized, unsupported ...) is final, except 454
/// (the session is gone: set up a new one); anything else may pass.
fn refused(what: &str, resp: &Response) -> Outcome {
    let code = resp.status.0;
    let msg = match code {
        401 => format!("{what}: the server refused the credentials (401)"),
        404 => format!("{what}: stream not found (404 {})", resp.reason),
        _ => format!("{what} refused: {code} {}", resp.reason),
    };
    if (400..500).contains(&code) && code != 454 {
        Outcome::Fatal(msg)
    } else {
        Outcome::Lost(msg)
    }
}

/// What the watchdog concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Nothing over UDP: tear down and set up again over TCP.
    FallbackToTcp,
    /// No media for the media timeout while playing.
    NoMedia,
}

/// When to give up on a transport or a server, from PLAY/PAUSE and "RTP seen":
/// - UDP that brings nothing: in [`TransportMode::Auto`], no RTP `grace` after PLAY means
///   the UDP path is blocked (firewall, NAT, a TCP-only tunnel): switch to interleaved TCP;
/// - a server gone quiet: while playing, `timeout` without RTP on any track.
///
/// Paused sessions expect no media, so neither rule runs while paused; each PLAY (first or
/// resume) starts both clocks again.
#[derive(Clone, Debug)]
struct Watchdog {
    may_fall_back: bool,
    grace: Duration,
    timeout: Duration,
    /// Any RTP seen since this transport was set up.
    seen_rtp: bool,
    /// Playing since (PLAY response); `None` while paused or before PLAY.
    playing_since: Option<Instant>,
    last_rtp: Option<Instant>,
}

impl Watchdog {
    fn new(may_fall_back: bool, grace: Duration, timeout: Duration) -> Self {
        Watchdog {
            may_fall_back,
            grace,
            timeout,
            seen_rtp: false,
            playing_since: None,
            last_rtp: None,
        }
    }

    fn on_play(&mut self, now: Instant) {
        self.playing_since = Some(now);
        self.last_rtp = None;
    }

    fn on_pause(&mut self) {
        self.playing_since = None;
    }

    fn on_rtp(&mut self, now: Instant) {
        self.seen_rtp = true;
        self.last_rtp = Some(self.last_rtp.map_or(now, |l| l.max(now)));
    }

    fn falls_back(&self) -> bool {
        self.may_fall_back && !self.seen_rtp
    }

    fn deadline(&self) -> Option<Instant> {
        let since = self.playing_since?;
        if self.falls_back() {
            return Some(since + self.grace);
        }
        let last = self.last_rtp.map_or(since, |l| l.max(since));
        Some(last + self.timeout)
    }

    fn poll(&self, now: Instant) -> Option<Verdict> {
        if now < self.deadline()? {
            None
        } else if self.falls_back() {
            Some(Verdict::FallbackToTcp)
        } else {
            Some(Verdict::NoMedia)
        }
    }
}

#[cfg(test)]
mod tests;
