//! Call mode (`livecast-player --call PEER`): a two-way call is two server+player pairs
//! connected crosswise. This module runs our half: a [`livecast_server`] in-process (our
//! camera and microphone, plus a chat track) and the player engine on the peer's server.
//!
//! ```text
//!   alice: LocalSide (server: camera, mic ─echo canceller─> encoders; chat) ──RTP──> bob's player
//!          engine (player of bob's server, low latency, recorded) <──RTP── bob's server
//! ```
//!
//! - **Calling.** The engine retries the peer every second ([`ConnState::Calling`]) until
//!   its server answers; whoever starts first waits.
//! - **Hanging up** (button, window closed, `--duration` or a signal when headless):
//!   [`LocalSide::hang_up`] stops our server, which sends RTCP BYE on every track and closes
//!   every session; then the engine sends TEARDOWN to the peer. The peer's player sees the BYE
//!   (or the connection close) and ends the call ([`ConnState::CallEnded`]), stopping its own
//!   server in turn. So either side hanging up tears both directions down.
//! - **Chat** goes out on our server's chat track (T.140 real-time text, see
//!   [`livecast_server::chat`]); the peer's chat arrives in the engine's
//!   [`Status::chat`](crate::engine::Status).
//! - **Echo.** The engine's audio output feeds the echo canceller's far end; the server's
//!   captured audio passes its near end before it is encoded (and captioned). Off with
//!   `--headset`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use livecast_proto::call::{safety_code, CallCode, CALL_USER};
use livecast_proto::rtsp::client::Credentials;
use livecast_proto::rtsp::server::{AuthConfig, Roles, User, REALM};
use livecast_proto::rtsp::RtspUrl;
use livecast_proto::trust::{host_key, Fingerprint, KnownHosts};
use livecast_server::captions::CaptionConfig;
use livecast_server::chat::{ChatError, ChatInput};
use livecast_server::hooks::{AudioProcessor, MediaControls, Preview};
use livecast_server::pipeline::MediaConfig;
use livecast_server::rtsp_server::RtspConfig;
use livecast_server::source::VideoFrame;
use livecast_server::{RunningServer, ServerConfig};
use serde::Serialize;

use crate::aec;
use crate::engine::audio_out::PlayoutTap;
use crate::engine::{self, ConnState, EngineConfig, EngineHandle, Source, Status};

/// The port a call listens on and a peer given without one is called on (RTSPS: a call's
/// only listener is TLS).
pub const DEFAULT_PORT: u16 = 8554;

/// Everything `--call` needs.
#[derive(Clone, Debug)]
pub struct CallConfig {
    /// Who to call, as the user typed it: `host`, `host:port` or an `rtsps://` URL.
    pub peer: String,
    /// Where our server listens (RTSPS only).
    pub listen: Vec<SocketAddr>,
    /// The call code both sides know: our server lets in only a player that knows it, and
    /// our player gives it to the peer's server.
    pub code: CallCode,
    /// Whether we made the code (and so must tell the peer) or were given it.
    pub code_generated: bool,
    /// Where our certificate is kept (generated on first use): the data folder by default.
    pub cert_dir: Option<std::path::PathBuf>,
    pub media: MediaConfig,
    pub captions: CaptionConfig,
    /// Our name, shown to the peer (SDP `s=`).
    pub name: String,
    /// Acoustic echo cancellation (off for headsets).
    pub echo_cancel: bool,
    /// Adapt our video's rate, size and frame rate to the peer's reception reports.
    pub adapt: bool,
    /// Keep the newest captured picture for a self-view.
    pub self_view: bool,
    /// The player side: recording, audio output, volume, captions export. The source and
    /// call flags are set by [`Call::start`].
    pub engine: EngineConfig,
}

/// The `rtsps://` URL of a peer given as `host`, `host:port`, `[v6]:port` or an `rtsps://`
/// URL. A call is always encrypted: an `rtsp://` URL is refused.
pub fn peer_url(peer: &str) -> anyhow::Result<String> {
    let p = peer.trim();
    if p.is_empty() {
        anyhow::bail!("no peer to call: give a host name, host:port or rtsps:// URL");
    }
    if p.contains("://") {
        match RtspUrl::parse(p) {
            Ok(u) if u.tls => return Ok(p.to_owned()),
            Ok(_) => anyhow::bail!(
                "'{p}': calls are encrypted (RTSPS): give host:port or an rtsps:// URL"
            ),
            Err(e) => anyhow::bail!("'{p}': a call needs an rtsps:// URL or a host name ({e})"),
        }
    }
    if p.contains(['/', ' ', '@', '?', '#']) {
        anyhow::bail!("'{p}' is not a host name, host:port or rtsps:// URL");
    }
    // A bare IPv6 address has colons but no brackets.
    let host_port = if p.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{p}]:{DEFAULT_PORT}")
    } else if p.starts_with('[') {
        if p.ends_with(']') {
            format!("{p}:{DEFAULT_PORT}")
        } else {
            p.to_owned()
        }
    } else if p.contains(':') {
        p.to_owned()
    } else {
        format!("{p}:{DEFAULT_PORT}")
    };
    let url = format!("rtsps://{host_port}/live");
    RtspUrl::parse(&url).map_err(|e| anyhow::anyhow!("'{p}': {e}"))?;
    Ok(url)
}

/// A new call code from the OS generator.
pub fn new_code() -> CallCode {
    CallCode::from_random(rand::random())
}

/// The line that tells the user what the peer must run: `livecast-player --call ME --code
/// CODE`, `ME` being our listening address where it is a specific one, else this machine's
/// name.
pub fn invitation(listening: &[SocketAddr], code: &CallCode) -> String {
    let me = listening
        .iter()
        .find(|a| !a.ip().is_unspecified())
        .map(|a| match a.port() {
            DEFAULT_PORT => a.ip().to_string(),
            _ => a.to_string(),
        })
        .unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default();
            let host = if host.is_empty() {
                "THIS-MACHINE".into()
            } else {
                host
            };
            match listening.first().map(SocketAddr::port) {
                Some(p) if p != DEFAULT_PORT => format!("{host}:{p}"),
                _ => host,
            }
        });
    format!("livecast-player --call {me} --code {code}")
}

/// The peer's certificate fingerprint as our player pinned it (the known-hosts entry for the
/// peer URL's `host:port`), once connected: the handshake stored or matched it.
fn pinned_fingerprint(file: &std::path::Path, url: &str) -> Option<Fingerprint> {
    let u = RtspUrl::parse(url).ok()?;
    let text = std::fs::read_to_string(file).ok()?;
    let known = KnownHosts::parse(&text).ok()?;
    known.get(&host_key(&u.host, u.port))
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A running call: the player of the peer's stream and our side (server, chat, controls).
pub struct Call {
    pub engine: EngineHandle,
    pub local: LocalSide,
}

impl Call {
    /// Starts our server, then the engine calling the peer. Fails if the peer can't be parsed
    /// or our server can't start (port taken, no video source); a peer that doesn't answer is
    /// not an error, the engine keeps calling.
    pub fn start(cfg: CallConfig) -> anyhow::Result<Call> {
        let url = peer_url(&cfg.peer)?;
        let echo = cfg.echo_cancel.then(Echo::default);
        let mut ecfg = cfg.engine.clone();
        // The file the engine pins the peer's certificate in, named here so that the safety
        // code reads the same one.
        if ecfg.tls.known_hosts.is_none() && ecfg.tls.ca.is_none() {
            ecfg.tls.known_hosts = Some(
                livecast_server::data_dir()
                    .map(|d| d.join(crate::engine::net::tls::KNOWN_HOSTS_FILE))
                    .context("no HOME or XDG_DATA_HOME to keep the peer's certificate in")?,
            );
        }
        let mut local = LocalSide::start(&cfg, echo.clone())?;
        local.known_hosts.clone_from(&ecfg.tls.known_hosts);
        ecfg.source = Source::Url(url.clone());
        ecfg.call = true;
        ecfg.low_latency = true;
        ecfg.credentials = Some(Credentials {
            user: CALL_USER.into(),
            password: cfg.code.password(),
        });
        if let Some(echo) = echo {
            ecfg.playout_tap = Some(PlayoutTap(Arc::new(move |s: &[f32]| {
                if let Some(far) = echo.far.get() {
                    far.push_interleaved(s, 2);
                }
            })));
        }
        local.url = url;
        let engine = engine::start(ecfg)?;
        Ok(Call { engine, local })
    }

    /// Hangs up: our server stops (BYE to the peer, every session closed), then TEARDOWN to
    /// the peer's server. Returns what the server had.
    pub fn hang_up(self) -> ServerSummary {
        let Call { engine, mut local } = self;
        let summary = local.hang_up();
        engine.shutdown();
        summary
    }
}

/// The echo canceller's two ends. The canceller is made on the server's audio-encoder thread
/// that runs it (by the hook's factory, [`Echo::near_end`]), which then publishes the far end
/// for the audio output to feed; the headset switch reaches it through an atomic.
#[derive(Clone)]
struct Echo {
    far: Arc<OnceLock<aec::FarEnd>>,
    enabled: Arc<AtomicBool>,
}

impl Default for Echo {
    fn default() -> Self {
        Echo {
            far: Arc::default(),
            enabled: Arc::new(AtomicBool::new(true)),
        }
    }
}

impl Echo {
    /// The near-end processor, for the audio-encoder thread; pass-through if the canceller
    /// can't be made (said once in the log).
    fn near_end(&self) -> Box<AudioProcessor> {
        match aec::echo_canceller() {
            Ok((far, mut near)) => {
                let _ = self.far.set(far);
                let enabled = self.enabled.clone();
                Box::new(move |s: &mut [i16]| {
                    let on = enabled.load(Ordering::Relaxed);
                    if on != near.is_enabled() {
                        near.set_enabled(on);
                    }
                    near.process_stereo_i16(s);
                })
            }
            Err(e) => {
                tracing::warn!("no echo cancellation: {e:#}");
                Box::new(|_: &mut [i16]| {})
            }
        }
    }
}

/// A chat message we sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SentChat {
    pub text: String,
    pub sent_unix_ms: i64,
}

/// Our server at hang-up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServerSummary {
    /// RTSP sessions open just before it stopped (the peer's player, unless it already
    /// hung up with TEARDOWN).
    pub sessions_at_hangup: usize,
    /// Sessions left after stopping (always 0: every one is closed with a BYE).
    pub sessions_after: usize,
    /// The most sessions seen at once while polled.
    pub sessions_peak: usize,
    pub captions: bool,
    /// Requests our server refused for a wrong call code (the peer's player, or a stranger).
    pub auth_failures: u64,
}

/// Our half of the call: the in-process server and what the user controls of it.
pub struct LocalSide {
    rt: Option<tokio::runtime::Runtime>,
    server: Option<RunningServer>,
    chat: Option<ChatInput>,
    controls: Arc<MediaControls>,
    preview: Option<Preview>,
    echo: Option<Echo>,
    sent: Vec<SentChat>,
    summary: Option<ServerSummary>,
    sessions_peak: usize,
    /// Where our server listens.
    pub listening: Vec<SocketAddr>,
    /// Whether our stream has captions.
    pub captions: bool,
    /// The peer as given, and its URL.
    pub peer: String,
    pub url: String,
    /// Our server's certificate.
    pub fingerprint: Fingerprint,
    /// Where our player pins the peer's certificate (`None` with `--tls-ca`).
    known_hosts: Option<std::path::PathBuf>,
    safety_code: Option<(Fingerprint, String)>,
}

impl LocalSide {
    fn start(cfg: &CallConfig, echo: Option<Echo>) -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("call-server")
            .enable_all()
            .build()
            .context("the server's async runtime")?;
        let mut media = cfg.media.clone();
        let preview = if cfg.self_view {
            let (hooks, rx) = media.hooks.clone().with_preview();
            media.hooks = hooks;
            Some(rx)
        } else {
            None
        };
        if let Some(echo) = &echo {
            let echo = echo.clone();
            media.hooks.audio = Some(Arc::new(move || echo.near_end()));
        }
        let controls = media.hooks.controls.clone();
        let cert_dir = cfg.cert_dir.clone().or_else(livecast_server::data_dir);
        let (tls, _) = livecast_server::tls::load_or_generate(None, None, cert_dir.as_deref())
            .context("our certificate for the call")?;
        let user = User::with_password(CALL_USER, &cfg.code.password(), Roles::READ, REALM);
        // A failed attempt is answered within a second rather than four: a code of 66 bits
        // needs no slowing down, and the side that refused lingers that long
        // ([`REFUSED_LINGER`]) so the peer hears why before our server stops.
        let auth = AuthConfig {
            max_failure_delay: Duration::from_secs(1),
            ..AuthConfig::new(vec![user])
        };
        let rtsp = RtspConfig {
            auth: Some(auth),
            ..RtspConfig::default()
        };
        let scfg = ServerConfig {
            // Nothing in clear: the listeners are all RTSPS (below).
            listen: Vec::new(),
            media,
            rtsp,
            captions: cfg.captions.clone(),
            title: cfg.name.clone(),
            chat: true,
            publish: Vec::new(),
            adapt: cfg.adapt,
        };
        let mut server = rt
            .block_on(livecast_server::start(scfg))
            .context("starting our side of the call (camera, microphone, server)")?;
        let listening = {
            let _guard = rt.enter();
            server
                .serve_tls(&cfg.listen, tls.config.clone())
                .context("our side of the call (RTSPS)")?
        };
        Ok(LocalSide {
            listening,
            fingerprint: tls.fingerprint,
            known_hosts: None,
            safety_code: None,
            captions: server.captions,
            chat: server.chat.clone(),
            server: Some(server),
            rt: Some(rt),
            controls,
            preview,
            echo,
            sent: Vec::new(),
            summary: None,
            sessions_peak: 0,
            peer: cfg.peer.clone(),
            url: String::new(),
        })
    }

    /// Sends a chat message to the peer; returns it as sent (cleaned up).
    pub fn send_chat(&mut self, text: &str) -> Result<SentChat, ChatError> {
        let chat = self.chat.as_ref().ok_or(ChatError::Stopped)?;
        if self.server.is_none() {
            return Err(ChatError::Stopped);
        }
        let text = chat.send(text)?;
        let m = SentChat {
            text,
            sent_unix_ms: unix_ms(SystemTime::now()),
        };
        self.sent.push(m.clone());
        Ok(m)
    }

    /// Messages we sent, oldest first.
    pub fn sent(&self) -> &[SentChat] {
        &self.sent
    }

    pub fn set_mic_muted(&self, on: bool) {
        self.controls.set_mic_muted(on);
    }

    pub fn mic_muted(&self) -> bool {
        self.controls.mic_muted()
    }

    pub fn set_camera_off(&self, on: bool) {
        self.controls.set_camera_off(on);
    }

    pub fn camera_off(&self) -> bool {
        self.controls.camera_off()
    }

    /// Echo cancellation on or off (headset) while the call runs; `false` if the call was
    /// started without it.
    pub fn set_echo_cancel(&self, on: bool) -> bool {
        match &self.echo {
            Some(e) => {
                e.enabled.store(on, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// The newest captured picture (the self-view), when asked for in the config.
    pub fn preview(&self) -> Option<Preview> {
        self.preview.clone()
    }

    /// RTSP sessions open on our server now (0 once hung up).
    pub fn sessions(&mut self) -> usize {
        let n = self.server.as_ref().map_or(0, |s| s.rtsp.session_count());
        self.sessions_peak = self.sessions_peak.max(n);
        n
    }

    /// Whether the peer is watching us: a session on our server (its player's) is playing.
    pub fn peer_watching(&mut self) -> bool {
        self.sessions(); // keeps the session peak current
        self.server
            .as_ref()
            .is_some_and(|s| s.rtsp.playing_count() > 0)
    }

    /// The safety code of the call (our certificate and the peer's as our player pinned it),
    /// once our player is connected; `None` before, or with `--tls-ca` (no pinning).
    pub fn safety_code(&mut self) -> Option<String> {
        if self.safety_code.is_none() {
            let peer = pinned_fingerprint(self.known_hosts.as_deref()?, &self.url)?;
            self.safety_code = Some((peer, safety_code(self.fingerprint, peer)));
        }
        self.safety_code.as_ref().map(|(_, c)| c.clone())
    }

    /// The peer's certificate, once [`LocalSide::safety_code`] has read it.
    pub fn peer_fingerprint(&self) -> Option<Fingerprint> {
        self.safety_code.as_ref().map(|(f, _)| *f)
    }

    /// Requests our server refused for a wrong call code so far.
    pub fn auth_failures(&self) -> u64 {
        self.server.as_ref().map_or(0, |s| s.rtsp.auth_failures())
    }

    /// Whether our server still runs.
    pub fn is_live(&self) -> bool {
        self.server.is_some()
    }

    /// Stops our server: RTCP BYE on every track to every client and every session closed,
    /// listeners closed, capture stopped. Idempotent.
    pub fn hang_up(&mut self) -> ServerSummary {
        if let Some(s) = &self.summary {
            return s.clone();
        }
        let at = self.sessions();
        let auth_failures = self.auth_failures();
        let mut after = 0;
        if let Some(server) = self.server.take() {
            let rtsp = server.rtsp.clone();
            server.shutdown();
            after = rtsp.session_count();
        }
        if let Some(rt) = self.rt.take() {
            // Connection tasks notice the shutdown and close their sockets.
            rt.shutdown_timeout(Duration::from_millis(500));
        }
        let s = ServerSummary {
            sessions_at_hangup: at,
            sessions_after: after,
            sessions_peak: self.sessions_peak,
            captions: self.captions,
            auth_failures,
        };
        self.summary = Some(s.clone());
        s
    }
}

impl Drop for LocalSide {
    fn drop(&mut self) {
        self.hang_up();
    }
}

/// Where a call stands, as the window and the headless runner show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallState {
    /// The peer has not answered yet.
    Calling {
        attempt: u32,
    },
    Connected,
    /// Over: `by_peer` when the peer hung up (or vanished), else we did.
    Ended {
        by_peer: bool,
        reason: String,
    },
}

impl CallState {
    /// The call's state from the engine's connection state (before any local hang-up).
    pub fn from_conn(conn: &ConnState) -> CallState {
        match conn {
            ConnState::Calling { attempt, .. } => CallState::Calling { attempt: *attempt },
            ConnState::Connecting => CallState::Calling { attempt: 0 },
            ConnState::CallEnded(r) => CallState::Ended {
                by_peer: true,
                reason: r.clone(),
            },
            ConnState::Failed(r) | ConnState::Unauthorized(r) => CallState::Ended {
                by_peer: true,
                reason: failure_reason(r),
            },
            _ => CallState::Connected,
        }
    }
}

/// How long our server stays up after it refused the peer's code, so that its `401` (held
/// back up to a second) reaches the peer's player, which then ends its call too.
pub const REFUSED_LINGER: Duration = Duration::from_millis(1500);

/// Why a call ends when our server refused the call code before the call was up.
pub const WRONG_CODE_FROM_PEER: &str =
    "the peer's player gave a wrong call code (our server refused it): \
     both sides must use the same --code (the one the side that started first printed)";

/// Why a call failed, for the user: a `401` from the peer's server means the two sides were
/// not given the same call code.
fn failure_reason(r: &str) -> String {
    if r.contains("--accept-new-fingerprint") {
        format!(
            "the peer's certificate is not the one this machine trusted for it before: someone \
             may be in between, or the peer has a new data folder. Call it only once the peer \
             confirms (then compare the safety code). {r}"
        )
    } else if r.contains("(401)") {
        format!(
            "the peer refused our call code: both sides must use the same --code (the one the \
             side that started first printed) ({r})"
        )
    } else {
        r.to_owned()
    }
}

/// Follows a call's states over time, for the stats JSON (headless) and the window.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CallLog {
    pub peer: String,
    pub url: String,
    /// Our name, as the peer sees it.
    pub name: String,
    /// The peer's name (its SDP `s=`).
    pub peer_name: Option<String>,
    pub listening: Vec<String>,
    /// Calls that went unanswered before the peer answered.
    pub calling_attempts: u32,
    pub started_unix_ms: i64,
    pub connected_unix_ms: Option<i64>,
    pub ended_unix_ms: Option<i64>,
    /// `peer` (it hung up or vanished) or `local`.
    pub ended_by: Option<String>,
    pub end_reason: Option<String>,
    pub chat_sent: Vec<SentChat>,
    pub server: ServerSummary,
    pub echo_cancel: bool,
    /// Our certificate's fingerprint and the peer's (as pinned).
    pub fingerprint: String,
    pub peer_fingerprint: Option<String>,
    /// The safety code both people compare: the same on both sides unless someone sits
    /// between them.
    pub safety_code: Option<String>,
    /// Whether the call ended before it was ever connected, refused (wrong code, changed
    /// certificate) rather than hung up.
    pub refused: bool,
}

impl CallLog {
    pub fn new(cfg: &CallConfig, local: &LocalSide) -> Self {
        CallLog {
            peer: cfg.peer.clone(),
            url: local.url.clone(),
            name: cfg.name.clone(),
            listening: local.listening.iter().map(ToString::to_string).collect(),
            started_unix_ms: unix_ms(SystemTime::now()),
            echo_cancel: cfg.echo_cancel,
            fingerprint: local.fingerprint.to_string(),
            ..Default::default()
        }
    }

    /// Notes the engine's newest status; returns the call's state.
    pub fn observe(&mut self, st: &Status) -> CallState {
        let state = CallState::from_conn(&st.conn);
        if let ConnState::Calling { attempt, .. } = st.conn {
            self.calling_attempts = self.calling_attempts.max(attempt);
        }
        if state == CallState::Connected && self.connected_unix_ms.is_none() {
            self.connected_unix_ms = Some(unix_ms(SystemTime::now()));
        }
        if st.title.is_some() {
            self.peer_name.clone_from(&st.title);
        }
        if let CallState::Ended { reason, .. } = &state {
            if self.connected_unix_ms.is_none()
                && matches!(st.conn, ConnState::Failed(_) | ConnState::Unauthorized(_))
            {
                self.refused = true;
            }
            self.end("peer", reason);
        }
        state
    }

    /// Records the end of the call (the first end counts).
    pub fn end(&mut self, by: &str, reason: &str) {
        if self.ended_unix_ms.is_none() {
            self.ended_unix_ms = Some(unix_ms(SystemTime::now()));
            self.ended_by = Some(by.to_owned());
            self.end_reason = Some(reason.to_owned());
        }
    }

    /// Ends a call that is not up yet when our server has refused a wrong call code (the
    /// peer's player, which would otherwise keep calling a side that no longer answers).
    /// Returns whether it did.
    pub fn check_refused_code(&mut self, local: &LocalSide) -> bool {
        if self.connected_unix_ms.is_some()
            || self.ended_unix_ms.is_some()
            || local.auth_failures() == 0
        {
            return false;
        }
        self.refused = true;
        self.end("peer", WRONG_CODE_FROM_PEER);
        true
    }

    /// Notes the safety code once known; returns it the first time.
    pub fn note_safety(&mut self, local: &mut LocalSide) -> Option<String> {
        if self.safety_code.is_some() {
            return None;
        }
        self.safety_code = local.safety_code();
        self.peer_fingerprint = local.peer_fingerprint().map(|f| f.to_string());
        self.safety_code.clone()
    }

    /// Records what we sent and what our server had, at the end.
    pub fn finish(&mut self, local: &LocalSide, server: ServerSummary) {
        self.chat_sent = local.sent().to_vec();
        self.server = server;
    }
}

/// A small, mirrored RGBA copy of a captured picture for the self-view: every `step`-th pixel
/// (so it is at most `max_width` wide), flipped left to right as a mirror is. BT.601
/// limited-range YUV to RGB.
pub fn self_view_rgba(frame: &VideoFrame, max_width: u32) -> Option<(u32, u32, Vec<u8>)> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    if w < 2 || h < 2 || frame.i420.len() < w * h * 3 / 2 {
        return None;
    }
    let step = w.div_ceil(max_width.max(1) as usize).max(1);
    let (ow, oh) = (w / step, h / step);
    let (y_plane, rest) = frame.i420.split_at(w * h);
    let (u_plane, v_plane) = rest.split_at((w / 2) * (h / 2));
    let mut out = Vec::with_capacity(ow * oh * 4);
    for oy in 0..oh {
        let sy = oy * step;
        for ox in 0..ow {
            let sx = (ow - 1 - ox) * step;
            let y = f32::from(y_plane[sy * w + sx]) - 16.0;
            let ci = (sy / 2) * (w / 2) + sx / 2;
            let u = f32::from(u_plane[ci]) - 128.0;
            let v = f32::from(v_plane[ci]) - 128.0;
            let c = 1.164 * y;
            let px = |x: f32| x.round().clamp(0.0, 255.0) as u8;
            out.extend_from_slice(&[
                px(c + 1.596 * v),
                px(c - 0.392 * u - 0.813 * v),
                px(c + 2.017 * u),
                255,
            ]);
        }
    }
    Some((ow as u32, oh as u32, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_become_rtsp_urls() {
        let u = |p: &str| peer_url(p).unwrap();
        assert_eq!(u("bob.local"), "rtsps://bob.local:8554/live");
        assert_eq!(u("10.0.0.2:8560"), "rtsps://10.0.0.2:8560/live");
        assert_eq!(u("::1"), "rtsps://[::1]:8554/live");
        assert_eq!(u("[fe80::1]"), "rtsps://[fe80::1]:8554/live");
        assert_eq!(u("[::1]:9000"), "rtsps://[::1]:9000/live");
        assert_eq!(
            u("rtsps://bob.local:8554/live"),
            "rtsps://bob.local:8554/live"
        );
        let plain = peer_url("rtsp://bob.local:8554/live")
            .unwrap_err()
            .to_string();
        assert!(plain.contains("encrypted"), "{plain}");
        let bad = ["", "http://bob/live", "bob:port", "bob/live", "bob:99999"];
        for bad in bad {
            assert!(peer_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn self_view_is_small_and_mirrored() {
        // 8x4 picture: left half black (Y 16), right half white (Y 235), grey chroma.
        let (w, h) = (8u32, 4u32);
        let mut i420 = vec![0u8; 8 * 4 * 3 / 2];
        for y in 0..4 {
            for x in 0..8 {
                i420[y * 8 + x] = if x < 4 { 16 } else { 235 };
            }
        }
        i420[32..].fill(128);
        let f = VideoFrame {
            width: w,
            height: h,
            i420,
            capture: SystemTime::UNIX_EPOCH,
            index: 0,
        };
        let (ow, oh, rgba) = self_view_rgba(&f, 4).unwrap();
        assert_eq!((ow, oh), (4, 2));
        // Mirrored: the white half is now on the left.
        assert_eq!(&rgba[0..4], &[255, 255, 255, 255]);
        assert_eq!(
            &rgba[(ow as usize - 1) * 4..ow as usize * 4],
            &[0, 0, 0, 255]
        );
        let full = self_view_rgba(&f, 100).unwrap();
        assert_eq!((full.0, full.1), (8, 4));
        let mut short = f.clone();
        short.i420.truncate(10);
        assert!(self_view_rgba(&short, 4).is_none());
    }

    #[test]
    fn call_log_follows_the_engine() {
        let mut log = CallLog::default();
        let mut st = Status {
            conn: ConnState::Calling {
                attempt: 3,
                reason: "refused".into(),
            },
            ..Status::default()
        };
        assert_eq!(log.observe(&st), CallState::Calling { attempt: 3 });
        st.conn = ConnState::Streaming { tcp: false };
        st.title = Some("bob".into());
        assert_eq!(log.observe(&st), CallState::Connected);
        assert!(log.connected_unix_ms.is_some());
        assert_eq!(log.peer_name.as_deref(), Some("bob"));
        st.conn = ConnState::CallEnded("the peer hung up".into());
        assert!(matches!(
            log.observe(&st),
            CallState::Ended { by_peer: true, .. }
        ));
        log.end("local", "ignored: the first end counts");
        assert_eq!(log.ended_by.as_deref(), Some("peer"));
        assert_eq!(log.end_reason.as_deref(), Some("the peer hung up"));
        assert_eq!(log.calling_attempts, 3);
        assert!(
            !log.refused,
            "a call that was up and hung up is not refused"
        );
    }

    #[test]
    fn a_401_before_the_call_is_up_is_a_refusal() {
        let mut log = CallLog::default();
        let st = Status {
            conn: ConnState::Unauthorized(
                "DESCRIBE: the server refused user \"call\" (401): wrong user name or password"
                    .into(),
            ),
            ..Status::default()
        };
        let CallState::Ended { reason, .. } = log.observe(&st) else {
            panic!("a 401 ends the call");
        };
        assert!(reason.contains("--code"), "{reason}");
        assert!(log.refused);
    }
}
