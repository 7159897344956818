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
use livecast_proto::rtsp::RtspUrl;
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

/// The RTSP port a peer given without one is called on (livecast-server's default).
pub const DEFAULT_PORT: u16 = 8554;

/// Everything `--call` needs.
#[derive(Clone, Debug)]
pub struct CallConfig {
    /// Who to call, as the user typed it: `host`, `host:port` or an `rtsp://` URL.
    pub peer: String,
    /// Where our server listens.
    pub listen: Vec<SocketAddr>,
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

/// The `rtsp://` URL of a peer given as `host`, `host:port`, `[v6]:port` or a URL.
pub fn peer_url(peer: &str) -> anyhow::Result<String> {
    let p = peer.trim();
    if p.is_empty() {
        anyhow::bail!("no peer to call: give a host name, host:port or rtsp:// URL");
    }
    if p.contains("://") {
        if let Err(e) = RtspUrl::parse(p) {
            anyhow::bail!("'{p}': a call needs an rtsp:// URL or a host name ({e})");
        }
        return Ok(p.to_owned());
    }
    if p.contains(['/', ' ', '@', '?', '#']) {
        anyhow::bail!("'{p}' is not a host name, host:port or rtsp:// URL");
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
    let url = format!("rtsp://{host_port}/live");
    RtspUrl::parse(&url).map_err(|e| anyhow::anyhow!("'{p}': {e}"))?;
    Ok(url)
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
        let local = LocalSide::start(&cfg, echo.clone())?;
        let mut ecfg = cfg.engine.clone();
        ecfg.source = Source::Url(url.clone());
        ecfg.call = true;
        ecfg.low_latency = true;
        if let Some(echo) = echo {
            ecfg.playout_tap = Some(PlayoutTap(Arc::new(move |s: &[f32]| {
                if let Some(far) = echo.far.get() {
                    far.push_interleaved(s, 2);
                }
            })));
        }
        let mut local = local;
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
        let scfg = ServerConfig {
            listen: cfg.listen.clone(),
            media,
            rtsp: RtspConfig::default(),
            captions: cfg.captions.clone(),
            title: cfg.name.clone(),
            chat: true,
            publish: Vec::new(),
            adapt: cfg.adapt,
        };
        let server = rt
            .block_on(livecast_server::start(scfg))
            .context("starting our side of the call (camera, microphone, server)")?;
        Ok(LocalSide {
            listening: server.listening.clone(),
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
                reason: r.clone(),
            },
            _ => CallState::Connected,
        }
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
        assert_eq!(u("bob.local"), "rtsp://bob.local:8554/live");
        assert_eq!(u("10.0.0.2:8560"), "rtsp://10.0.0.2:8560/live");
        assert_eq!(u("::1"), "rtsp://[::1]:8554/live");
        assert_eq!(u("[fe80::1]"), "rtsp://[fe80::1]:8554/live");
        assert_eq!(u("[::1]:9000"), "rtsp://[::1]:9000/live");
        assert_eq!(
            u("rtsp://bob.local:8554/live"),
            "rtsp://bob.local:8554/live"
        );
        for bad in ["", "http://bob/live", "bob:port", "bob/live", "bob:99999"] {
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
    }
}
