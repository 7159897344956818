//! The RTSP 1.0 front end: the sockets and tasks around the Sans-IO
//! [`livecast_proto::rtsp::server::Server`], which makes every protocol decision.
//!
//! ```text
//!  TCP bytes ─> parse ─> Input::Request ─┐
//!  UDP/interleaved RTCP ─> Input::Rtcp ──┼─> [Mutex<Server>] handle_input, drain poll_output
//!  timer task ─> Input::Timeout ─────────┘        │ (lock released here)
//!                                                 ├─ Transmit ─> the connection's writer queue
//!                                                 ├─ Subscribe/Unsubscribe ─> Track (fan-out)
//!                                                 ├─ KeyframeRequest ─> encoder flag
//!                                                 ├─ SenderReport ─> Track RTCP
//!                                                 ├─ CloseConnection ─> that connection's task
//!                                                 └─ Timeout(t) ─> the timer task's deadline
//! ```
//!
//! Each connection is one task with a reader and a writer half; interleaved RTP shares the
//! writer's bounded queue with responses. RTSPS connections ([`RtspServer::serve_tls`]) are
//! the same task over the halves of a TLS stream, after the handshake. The state machine is
//! locked only while an input is handled and its outputs drained; the effects run after the lock is released, in the order
//! they were produced, so a response is always queued before the first media packet it
//! announces, and no request waits for a fan-out burst (see [`crate::track`] for the fan-out's
//! own locking).
//!
//! Effects of inputs from different connections run concurrently, so requests for one session
//! sent on two connections at once (a PLAY on one, a TEARDOWN on the other) may have their
//! subscribe and unsubscribe carried out in the other order; after subscribing, the shell asks
//! the state machine whether the subscription still stands ([`Server::is_subscribed`]) and
//! undoes it if not, so no subscription outlives its session. Requests on one connection, and
//! a session's expiry or connection close after them, are always in order.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use livecast_proto::rtsp::server::{
    failure_log_line, ConnId, Input, MediaSink, Output, PublishConfig, RtcpSource, Server,
    ServerConfig, ServerEvent, TrackConfig, Unsubscribed,
};
use livecast_proto::rtsp::{self, Limits, Message, Parsed};
use livecast_proto::sdp::SessionDescription;
use livecast_proto::srtp;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tokio_rustls::rustls::ServerConfig as ServerTlsConfig;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::publish::Paths;
use crate::track::{Sink, Track, TrackKind};

/// Depth of a connection's outgoing queue (responses + interleaved frames). About two seconds
/// of 2 Mbit/s video; beyond it a slow TCP client loses packets rather than holding anyone up.
const CONN_QUEUE: usize = 512;
/// A connection that has sent nothing and owns no session for this long is closed.
const IDLE_CONNECTION: Duration = Duration::from_secs(60);
/// A TLS handshake must be done within this.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);
/// Upper bound on concurrent sessions, so a flood of SETUPs cannot exhaust the server.
const MAX_SESSIONS: usize = 4096;

/// Server-wide settings for the RTSP layer.
#[derive(Clone, Debug)]
pub struct RtspConfig {
    /// Stream path without the leading slash (`live`).
    pub path: String,
    /// Sessions without keep-alive for this long are closed (announced as `;timeout=`).
    pub session_timeout: Duration,
    /// Parser limits: headers over 8 KiB and bodies over 64 KiB are refused.
    pub limits: Limits,
    /// Viewers served at most (`--max-viewers`); more get `453 Not Enough Bandwidth`.
    pub max_viewers: Option<usize>,
    /// Digest authentication (the users from the users file); `None`, the default here, lets
    /// anyone watch. The `livecast-server` binary turns it on unless `--no-auth`.
    pub auth: Option<livecast_proto::rtsp::server::AuthConfig>,
    /// Accept publishers on every other path ([`crate::publish`]); `None`, the default here:
    /// ANNOUNCE and RECORD get `405`. The `livecast-server` binary turns it on.
    pub publishers: Option<PublishOptions>,
}

/// How publishers are accepted.
#[derive(Clone, Debug)]
pub struct PublishOptions {
    /// A second publisher of a path drops the first (`--takeover`) instead of getting `453`.
    pub takeover: bool,
    /// How many published paths get captions at once (when captions are on and their audio
    /// is Opus; `--caption-paths`): each has a whisper pass of its own every step, so a
    /// machine holds only a few in real time. The paths past it are served without.
    pub captioned_paths: usize,
}

/// Published paths captioned at once by default: one beside our own stream's captioner, what
/// two cores hold in real time with tiny.en.
pub const CAPTIONED_PATHS: usize = 1;

impl Default for PublishOptions {
    fn default() -> Self {
        Self {
            takeover: false,
            captioned_paths: CAPTIONED_PATHS,
        }
    }
}

impl Default for RtspConfig {
    fn default() -> Self {
        Self {
            path: "live".into(),
            session_timeout: Duration::from_secs(60),
            limits: Limits::default(),
            max_viewers: None,
            auth: None,
            publishers: None,
        }
    }
}

/// What the shell holds for each open connection.
struct ConnHandle {
    tx: mpsc::Sender<Vec<u8>>,
    close: Arc<Notify>,
}

/// The RTSP server: the protocol state machine and the handles its effects need.
pub struct RtspServer {
    limits: Limits,
    tracks: Vec<Arc<Track>>,
    sm: Mutex<Server>,
    conns: Mutex<HashMap<ConnId, ConnHandle>>,
    next_conn: AtomicU64,
    /// The state machine's next timeout, for the timer task.
    deadline: watch::Sender<Instant>,
    /// What the state machine was last told about overload ([`Input::Overloaded`]).
    overloaded: std::sync::atomic::AtomicBool,
    /// Published paths and their tracks.
    paths: Arc<Paths>,
    /// The UDP sockets (RTP, RTCP) publishers send to, per address family.
    ingest: Vec<(Arc<std::net::UdpSocket>, Arc<std::net::UdpSocket>)>,
    /// Quality adaptation from the viewers' reports (a call only).
    adapter: std::sync::OnceLock<crate::adapt::Adapter>,
    /// `RTP/SAVP(F)` subscriptions, by where their RTCP comes from: the SRTCP context of the
    /// client's own key (`None`: it sent no `KeyMgmt`, its SRTCP is dropped unread).
    srtcp: Mutex<HashMap<RtcpFrom, Option<srtp::Context>>>,
    /// Requests refused for wrong credentials so far ([`RtspServer::auth_failures`]).
    auth_failures: AtomicU64,
    /// The speech model, when captions are on: published paths with Opus audio get captions.
    captions: std::sync::OnceLock<crate::captions::ModelSource>,
    /// [`PublishOptions::captioned_paths`].
    captioned_paths: usize,

    /// The SRTP state of paused secure subscriptions, by (client, track): a PLAY resumes with
    /// it, so the numbering goes on under the same rollover counter (a fresh context would
    /// start at 0 and, past 65,536 packets, the client would decrypt nothing). Dropped when the
    /// session ends.
    paused_srtp: Mutex<HashMap<(u64, usize), crate::track::SrtpState>>,
}

/// Where a client's RTCP comes from: its UDP address, or a channel of its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum RtcpFrom {
    Udp(SocketAddr),
    Interleaved(ConnId, u8),
}

impl RtcpFrom {
    fn of(sink: MediaSink) -> Self {
        match sink {
            MediaSink::Udp { rtcp, .. } => RtcpFrom::Udp(rtcp),
            MediaSink::Interleaved {
                conn, rtcp_channel, ..
            } => RtcpFrom::Interleaved(conn, rtcp_channel),
        }
    }
}

impl RtspServer {
    pub fn new(cfg: RtspConfig, tracks: Vec<Arc<Track>>, sdp: SessionDescription) -> Arc<Self> {
        Self::with_own_paths(cfg, tracks, sdp, Vec::new())
    }

    /// [`RtspServer::new`] with more paths of our own (renditions), whose tracks are among
    /// `tracks` after the main path's.
    pub fn with_own_paths(
        cfg: RtspConfig,
        tracks: Vec<Arc<Track>>,
        sdp: SessionDescription,
        own_paths: Vec<livecast_proto::rtsp::server::OwnPath>,
    ) -> Arc<Self> {
        let track_cfgs = tracks
            .iter()
            .map(|t| TrackConfig {
                ssrc: t.info.ssrc,
                clock: t.clock(),
                server_ports_v4: t.sockets.server_ports(false),
                server_ports_v6: t.sockets.server_ports(true),
                nack: t.info.nack,
                rtx_payload_type: t.info.rtx_payload_type,
            })
            .collect();
        let mut sm_cfg = ServerConfig::new(sdp, track_cfgs);
        sm_cfg.path = cfg.path.clone();
        sm_cfg.session_timeout = cfg.session_timeout;
        sm_cfg.idle_connection_timeout = IDLE_CONNECTION;
        sm_cfg.max_sessions = MAX_SESSIONS;
        sm_cfg.max_viewers = cfg.max_viewers;
        sm_cfg.auth = cfg.auth.clone();
        sm_cfg.own_paths = own_paths;
        sm_cfg.server_name = concat!("livecast/", env!("CARGO_PKG_VERSION")).into();
        let mut ingest = Vec::new();
        if let Some(p) = &cfg.publishers {
            let mut pc = PublishConfig {
                takeover: p.takeover,
                ..PublishConfig::default()
            };
            for ip in [crate::net::any_v4(), crate::net::any_v6()] {
                match crate::net::bind_rtp_pair(ip) {
                    Ok(Some((rtp, rtcp))) => {
                        let ports = rtp.local_addr().ok().zip(rtcp.local_addr().ok());
                        let ports = ports.map(|(a, b)| (a.port(), b.port()));
                        if ip.is_ipv4() {
                            pc.ingest_ports_v4 = ports;
                        } else {
                            pc.ingest_ports_v6 = ports;
                        }
                        ingest.push((Arc::new(rtp), Arc::new(rtcp)));
                    }
                    Ok(None) => {}
                    Err(e) => warn!("publishers cannot send over UDP on {ip}: {e:#}"),
                }
            }
            sm_cfg.publish = Some(pc);
        }
        let now = Instant::now();
        Arc::new(Self {
            limits: cfg.limits,
            tracks,
            sm: Mutex::new({
                let mut sm = Server::new(sm_cfg, rand::random(), now);
                // SRTP keys from OS entropy (the thread RNG is a CSPRNG seeded from it).
                sm.set_key_seed(rand::random());
                sm
            }),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            deadline: watch::channel(now + Duration::from_secs(3600)).0,
            overloaded: std::sync::atomic::AtomicBool::new(false),
            paths: Arc::new(Paths::default()),
            ingest,
            adapter: std::sync::OnceLock::new(),
            srtcp: Mutex::new(HashMap::new()),
            auth_failures: AtomicU64::new(0),
            captions: std::sync::OnceLock::new(),
            captioned_paths: cfg
                .publishers
                .as_ref()
                .map_or(CAPTIONED_PATHS, |p| p.captioned_paths),

            paused_srtp: Mutex::new(HashMap::new()),
        })
    }

    /// From now on the viewers' reception reports about the video steer the encoder.
    pub fn adapt_with(&self, adapter: crate::adapt::Adapter) {
        let _ = self.adapter.set(adapter);
    }

    /// From now on published paths whose audio is Opus get captions made with `models`.
    pub fn caption_published_with(&self, models: crate::captions::ModelSource) {
        let _ = self.captions.set(models);
    }

    /// The published paths (to enumerate them and subscribe to their tracks).
    /// The UDP ports our own tracks send from and read RTCP on (both address families).
    pub fn udp_ports(&self) -> Vec<u16> {
        self.tracks
            .iter()
            .flat_map(|t| [t.sockets.server_ports(false), t.sockets.server_ports(true)])
            .flatten()
            .flat_map(|(rtp, rtcp)| [rtp, rtcp])
            .collect()
    }

    pub fn paths(&self) -> &Arc<Paths> {
        &self.paths
    }

    /// Track `i` of the state machine's events: one of ours, or of a published path.
    fn track(&self, i: usize) -> Option<Arc<Track>> {
        self.tracks.get(i).cloned().or_else(|| self.paths.track(i))
    }

    /// Reads what publishers send to the ingest ports, until the server stops: RTP goes to
    /// the fan-out of its path, RTCP to the state machine (keep-alive).
    pub fn spawn_ingest(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        for (rtp, rtcp) in &self.ingest {
            for (sock, is_rtp) in [(rtp, true), (rtcp, false)] {
                let Some(sock) = crate::net::reader(sock) else {
                    continue;
                };
                let server = self.clone();
                tasks.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; 65_536];
                    loop {
                        match sock.recv_from(&mut buf).await {
                            Ok((n, from)) if is_rtp => {
                                server.paths.ingest_udp(from, &buf[..n]);
                            }
                            Ok((n, from)) => server.on_udp_rtcp(from, usize::MAX, &buf[..n]),
                            Err(e) => debug!("ingest receive: {e}"),
                        }
                    }
                }));
            }
        }
        tasks
    }

    /// A publisher sent RECORD: its path's tracks are made and registered, and the state
    /// machine told viewers may come.
    fn start_path(
        self: &Arc<Self>,
        path: String,
        client: livecast_proto::rtsp::server::ClientId,
        sdp: &SessionDescription,
        sources: &[(usize, MediaSink)],
    ) {
        let own = self.tracks.len();
        let captions = self
            .captions
            .get()
            .and_then(|models| match self.may_caption(&path, sdp) {
                Ok(audio) => Some((models.clone(), audio)),
                Err(why) => {
                    info!(path, "no captions for the published path: {why}");
                    None
                }
            });
        let with_captions = captions.is_some();
        let (published, configs) =
            match self
                .paths
                .start(&path, client, sdp, sources, own, with_captions)
            {
                Ok(p) => p,
                Err(e) => {
                    crate::publish::warn_unserved(&path, &e);
                    return;
                }
            };
        for t in &published.tracks {
            for s in [&t.track.sockets.rtcp_v4, &t.track.sockets.rtcp_v6]
                .into_iter()
                .flatten()
            {
                crate::publish::spawn_rtcp_reader(s, self.clone(), &published, t.index);
            }
        }
        Paths::spawn_sender_reports(&published, Duration::from_secs(5));
        let mut added = Vec::new();
        if let (Some((models, audio)), Some(text)) = (captions, published.caption_track()) {
            added.push(crate::sdp::text_media(
                &text.track.info,
                crate::sdp::TextRole::Captions,
            ));
            self.start_captions(&published, models, audio);
        }
        let ready = Input::PathReady {
            path,
            client,
            first: published.tracks.first().map_or(own, |t| t.index),
            tracks: configs,
            added,
        };
        for o in self.feed(ready) {
            if let Output::Event(e) = o {
                self.on_event(e);
            }
        }
    }

    /// Which track of a path about to be published to caption, or why none: its audio must
    /// be Opus, and fewer than [`PublishOptions::captioned_paths`] other paths captioned now
    /// (a publisher taking the path over takes its place).
    fn may_caption(&self, path: &str, sdp: &SessionDescription) -> Result<usize, String> {
        let audio = crate::publish_captions::opus_track(sdp).map_err(str::to_owned)?;
        let max = self.captioned_paths;
        let others = self
            .paths
            .list()
            .iter()
            .filter(|p| p.captions && p.path != path)
            .count();
        if others >= max {
            return Err(format!(
                "{others} published path(s) have captions already, the most at once \
                 (--caption-paths {max})"
            ));
        }
        Ok(audio)
    }

    /// Starts the captioner of `published` on its Opus track `audio` (the whisper state and
    /// speech detector take a moment to make: off the caller's thread).
    fn start_captions(
        &self,
        published: &Arc<crate::publish::PublishedPath>,
        models: crate::captions::ModelSource,
        audio: usize,
    ) {
        let (published, paths) = (published.clone(), self.paths.clone());
        let spawned = std::thread::Builder::new()
            .name("caption-start".into())
            .spawn(move || {
                let (Some(a), Some(text)) =
                    (published.tracks.get(audio), published.caption_track())
                else {
                    return;
                };
                let clock = a.track.clock();
                match crate::publish_captions::start(
                    &models,
                    &published.path,
                    clock,
                    text.track.clone(),
                ) {
                    Ok((feed, worker)) => {
                        a.set_caption_feed(Some(feed));
                        paths.keep_captioner(worker);
                        // The publisher may have left meanwhile.
                        let live = paths
                            .get(&published.path)
                            .is_some_and(|p| Arc::ptr_eq(&p, &published));
                        if !live {
                            published.stop_captions();
                        } else {
                            info!(path = published.path, "captions on for the published path");
                        }
                    }
                    Err(e) => warn!(
                        path = published.path,
                        "no captions for the published path: {e:#}"
                    ),
                }
            });
        if let Err(e) = spawned {
            warn!("no captions for the published path: {e}");
        }
    }

    fn sm(&self) -> MutexGuard<'_, Server> {
        // Handling an input never panics; if it did, the state is still usable.
        self.sm.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn srtcp(&self) -> MutexGuard<'_, HashMap<RtcpFrom, Option<srtp::Context>>> {
        self.srtcp.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn paused_srtp(&self) -> MutexGuard<'_, HashMap<(u64, usize), crate::track::SrtpState>> {
        self.paused_srtp.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// RTCP from `from` made readable: SRTCP of a secure subscription unprotected with the
    /// client's key (`None` if that fails: forged, replayed or unkeyed), anything else as is.
    fn unprotect_rtcp(&self, from: RtcpFrom, data: Vec<u8>) -> Option<Vec<u8>> {
        match self.srtcp().get_mut(&from) {
            None => Some(data),
            Some(None) => None,
            Some(Some(ctx)) => match ctx.unprotect_rtcp(&data) {
                Ok(clear) => Some(clear),
                Err(e) => {
                    debug!(?from, "SRTCP dropped: {e}");
                    None
                }
            },
        }
    }

    fn conns(&self) -> MutexGuard<'_, HashMap<ConnId, ConnHandle>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tracks served, in SDP order.
    pub fn tracks(&self) -> &[Arc<Track>] {
        &self.tracks
    }

    /// Number of live sessions (for tests and stats).
    pub fn session_count(&self) -> usize {
        self.sm().session_count()
    }

    /// Sessions in the Playing state (receiving media now).
    pub fn playing_count(&self) -> usize {
        self.sm().playing_count()
    }

    /// Requests refused for wrong credentials since the start (a call shows the user that
    /// the peer's code is not ours).
    pub fn auth_failures(&self) -> u64 {
        self.auth_failures.load(Ordering::Relaxed)
    }

    /// Tells the state machine whether a track's fan-out has dropped frames lately (it could
    /// not keep up): then it refuses new viewers rather than degrade everyone's stream.
    fn update_overload(&self) {
        let now = Instant::now();
        let overloaded = self.tracks.iter().any(|t| t.overloaded_at(now));
        if self.overloaded.swap(overloaded, Ordering::Relaxed) != overloaded {
            if overloaded {
                warn!("the video fan-out cannot keep up: new viewers are refused until it does");
            } else {
                info!("the video fan-out keeps up again: new viewers are welcome");
            }
            let outputs = self.feed(Input::Overloaded { now, overloaded });
            debug_assert!(outputs.is_empty());
        }
    }

    /// Hands `input` to the state machine and takes every output it produced; the lock is held
    /// for exactly that.
    fn feed(&self, input: Input) -> Vec<Output> {
        let mut outputs = Vec::new();
        let mut sm = self.sm();
        if let Err(e) = sm.handle_input(input) {
            warn!("RTSP state machine: {e}");
        }
        let deadline = loop {
            match sm.poll_output() {
                Output::Timeout(t) => break t,
                o => outputs.push(o),
            }
        };
        // Published under the lock, so two inputs handled back to back can't leave the
        // earlier one's (later) deadline in the timer.
        self.deadline.send_if_modified(|d| {
            let changed = *d != deadline;
            *d = deadline;
            changed
        });
        drop(sm);
        outputs
    }

    /// Carries out the outputs of one input, in order. Returns whether connection `current`
    /// (the one whose input produced them) must close now.
    async fn execute(self: &Arc<Self>, outputs: Vec<Output>, current: Option<ConnId>) -> bool {
        let mut close_current = false;
        for o in outputs {
            match o {
                Output::Transmit { conn, response } => {
                    let tx = self.conns().get(&conn).map(|c| c.tx.clone());
                    let mut out = Vec::with_capacity(512);
                    response.write_to(&mut out);
                    if let Some(tx) = tx {
                        if tx.send(out).await.is_err() {
                            debug!(conn = conn.0, "response to a closed connection");
                        }
                    }
                }
                Output::Event(e) => {
                    if let ServerEvent::CloseConnection { conn } = e {
                        if Some(conn) == current {
                            close_current = true;
                        } else if let Some(c) = self.conns().get(&conn) {
                            c.close.notify_one();
                        }
                    } else {
                        self.on_event(e);
                    }
                }
                Output::Timeout(_) => {}
            }
        }
        close_current
    }

    /// The shell's sink for a track of a client: a UDP address pair, or the writer queue of
    /// the connection carrying it (`None` if that connection is gone).
    fn sink(&self, sink: MediaSink) -> Option<Sink> {
        match sink {
            MediaSink::Udp { rtp, rtcp } => Some(Sink::Udp { rtp, rtcp }),
            MediaSink::Interleaved {
                conn,
                rtp_channel,
                rtcp_channel,
            } => self.conns().get(&conn).map(|c| Sink::Tcp {
                tx: c.tx.clone(),
                rtp_channel,
                rtcp_channel,
            }),
        }
    }

    fn on_event(self: &Arc<Self>, e: ServerEvent) {
        match e {
            ServerEvent::SessionStarted {
                session,
                client,
                peer,
            } => info!(%session, client = client.0, %peer, "session started"),
            ServerEvent::Subscribe {
                client,
                track,
                sink,
                initial_seq,
                resumed,
                retransmission,
                srtp: keys,
            } => {
                let from = RtcpFrom::of(sink);
                let (Some(t), Some(sink)) = (self.track(track), self.sink(sink)) else {
                    return;
                };
                debug!(
                    client = client.0,
                    track,
                    initial_seq,
                    secure = keys.is_some(),
                    "subscribe"
                );
                if let Some(k) = keys {
                    let rx = k.receive.map(|(key, salt)| srtp::Context::new(&key, &salt));
                    self.srtcp().insert(from, rx);
                }
                // A resumed secure stream goes on with the context it paused with (same key:
                // the session's), so its rollover counter goes on too.
                let kept = self.paused_srtp().remove(&(client.0, track));
                let srtp = keys.map(|k| match kept {
                    Some(s) if resumed && s.key == k.send => s,
                    _ => crate::track::SrtpState::new(k.send),
                });
                t.subscribe_secure(client.0, sink, initial_seq, !resumed, retransmission, srtp);
                // A TEARDOWN or close on another connection may have ended the session after
                // this Subscribe was produced and before it was carried out; its unsubscribe
                // then ran first. Checked after subscribing, so one of the two always wins.
                if !self.sm().is_subscribed(client, track) {
                    t.unsubscribe(client.0);
                }
            }
            ServerEvent::Unsubscribe {
                client,
                track,
                sink,
                reason,
            } => {
                let Some(t) = self.track(track) else {
                    return;
                };
                let (resume, srtp) = t.unsubscribe_srtp(client.0).unzip();
                let mut srtp = srtp.flatten();
                self.srtcp().remove(&RtcpFrom::of(sink));
                if reason.sends_bye() {
                    if let Some(sink) = self.sink(sink) {
                        // A secure client's BYE is SRTCP, from the context its media had.
                        t.send_bye_srtp(&sink, client.0, srtp.as_mut().map(|s| &mut s.context));
                    }
                }
                if let (Unsubscribed::Paused, Some(s)) = (reason, srtp) {
                    self.paused_srtp().insert((client.0, track), s);
                }
                if let (Unsubscribed::Paused, Some(seq)) = (reason, resume) {
                    // Produces no outputs: it only records where the numbering stopped.
                    let outputs = self.feed(Input::ResumeSeq { client, track, seq });
                    debug_assert!(outputs.is_empty());
                }
            }
            ServerEvent::AuthFailed {
                peer,
                user,
                path,
                locked_out,
            } => {
                self.auth_failures.fetch_add(1, Ordering::Relaxed);
                warn!("{}", failure_log_line(peer.ip(), &user, &path));
                if locked_out {
                    warn!(address = %peer.ip(), "too many failed attempts: address locked out");
                }
            }
            ServerEvent::ViewerRefused { peer, why } => {
                warn!(%peer, "refused a new viewer (453 Not Enough Bandwidth): {why}");
            }
            ServerEvent::KeyframeRequest { track } => {
                if let Some(t) = self.track(track) {
                    debug!(track, "keyframe requested (RTCP PLI/FIR)");
                    t.request_keyframe();
                }
            }
            ServerEvent::Retransmit {
                client,
                track,
                seqs,
            } => {
                if let Some(t) = self.track(track) {
                    let sent = t.retransmit(client.0, &seqs, Instant::now());
                    debug!(
                        client = client.0,
                        track,
                        asked = seqs.len(),
                        sent,
                        "NACK answered"
                    );
                }
            }
            ServerEvent::ReceptionReport {
                client,
                track,
                block,
            } => {
                let video = self
                    .tracks
                    .get(track)
                    .is_some_and(|t| t.info.kind == TrackKind::Video);
                if let (true, Some(a)) = (video, self.adapter.get()) {
                    a.on_report(client.0, &block);
                }
            }
            ServerEvent::SenderReport { client, track } => {
                if let Some(t) = self.track(track) {
                    t.send_sender_reports(SystemTime::now(), Some(client.0));
                }
            }
            ServerEvent::SessionEnded {
                session,
                client,
                peer,
                reason,
            } => {
                self.paused_srtp().retain(|(c, _), _| *c != client.0);
                info!(%session, client = client.0, %peer, ?reason, "session ended");
            }
            ServerEvent::PublishStarted {
                path,
                client,
                sdp,
                tracks,
                ..
            } => self.start_path(path, client, &sdp, &tracks),
            ServerEvent::PublishEnded { path, client, .. } => self.paths.end(&path, client),
            ServerEvent::CloseConnection { .. } => {}
        }
    }

    /// Accepts plain RTSP connections on `listener` forever.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        self.accept_loop(listener, None).await
    }

    /// Accepts RTSPS connections on `listener` forever: TLS with `tls`, then the same RTSP as
    /// [`RtspServer::serve`], media only interleaved in the connection.
    pub async fn serve_tls(self: Arc<Self>, listener: TcpListener, tls: Arc<ServerTlsConfig>) {
        self.accept_loop(listener, Some(TlsAcceptor::from(tls)))
            .await
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener, tls: Option<TlsAcceptor>) {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let server = self.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move { server.open(stream, peer, tls).await });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// A new TCP connection: its TLS handshake first, if on a TLS port (one that fails or
    /// takes over [`TLS_HANDSHAKE`] is only a debug line: scanners and wrong clients).
    async fn open(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, tls: Option<TlsAcceptor>) {
        let Ok(local) = stream.local_addr() else {
            return;
        };
        let _ = stream.set_nodelay(true);
        let Some(acceptor) = tls else {
            let (rd, wr) = stream.into_split();
            return self.connection(rd, wr, peer, local, false).await;
        };
        match tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => {
                let (rd, wr) = tokio::io::split(stream);
                self.connection(rd, wr, peer, local, true).await
            }
            Ok(Err(e)) => debug!(%peer, "TLS handshake failed: {e}"),
            Err(_) => debug!(%peer, "TLS handshake not done within {TLS_HANDSHAKE:?}"),
        }
    }

    /// One RTSP connection, plain or TLS (`tls`), until either side closes it.
    async fn connection<R, W>(
        self: Arc<Self>,
        mut rd: R,
        mut wr: W,
        peer: SocketAddr,
        local: SocketAddr,
        tls: bool,
    ) where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let conn = ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed));
        debug!(conn = conn.0, %peer, tls, "connection opened");
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CONN_QUEUE);
        let writer = tokio::spawn(async move {
            while let Some(buf) = rx.recv().await {
                // A TLS stream may keep encrypted bytes back when the socket is full (its
                // write returns once the bytes are taken): flushed here, they go out now.
                if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });
        let close = Arc::new(Notify::new());
        self.conns().insert(
            conn,
            ConnHandle {
                tx,
                close: close.clone(),
            },
        );
        let opened = Input::ConnectionOpened {
            now: Instant::now(),
            conn,
            peer,
            local,
            tls,
        };
        let outputs = self.feed(opened);
        self.execute(outputs, Some(conn)).await;
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut chunk = vec![0u8; 16 * 1024];
        'conn: loop {
            // Handle every complete message in the buffer.
            loop {
                let input = match rtsp::parse(&buf, &self.limits) {
                    Ok(Parsed::Incomplete) => break,
                    Ok(Parsed::Complete { message, consumed }) => {
                        buf.drain(..consumed);
                        match message {
                            Message::Request(req) => {
                                debug!(conn = conn.0, method = %req.method, uri = %req.uri, "request");
                                if req.method == livecast_proto::rtsp::Method::Setup {
                                    self.update_overload();
                                }
                                Input::Request {
                                    now: Instant::now(),
                                    wall: SystemTime::now(),
                                    conn,
                                    req,
                                }
                            }
                            Message::Data(frame)
                                if self.paths.ingest_interleaved(
                                    conn,
                                    frame.channel,
                                    &frame.payload,
                                ) =>
                            {
                                continue;
                            }
                            Message::Data(frame) => {
                                let from = RtcpFrom::Interleaved(conn, frame.channel);
                                let Some(data) = self.unprotect_rtcp(from, frame.payload) else {
                                    continue;
                                };
                                Input::Rtcp {
                                    now: Instant::now(),
                                    source: RtcpSource::Interleaved {
                                        conn,
                                        channel: frame.channel,
                                    },
                                    data,
                                }
                            }
                            Message::Response(_) => {
                                debug!(conn = conn.0, "ignoring a response from the client");
                                continue;
                            }
                        }
                    }
                    Err(error) => {
                        info!(conn = conn.0, %peer, "closing connection: {error}");
                        Input::BadRequest {
                            now: Instant::now(),
                            conn,
                            error,
                        }
                    }
                };
                let outputs = self.feed(input);
                if self.execute(outputs, Some(conn)).await {
                    break 'conn;
                }
            }
            let read = tokio::select! {
                r = rd.read(&mut chunk) => r,
                _ = close.notified() => break,
            };
            match read {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        self.conns().remove(&conn);
        let closed = Input::ConnectionClosed {
            now: Instant::now(),
            conn,
        };
        let outputs = self.feed(closed);
        self.execute(outputs, None).await;
        let _ = writer.await;
        debug!(conn = conn.0, %peer, "connection closed");
    }

    /// Ends every session at once (server shutdown): clients get a BYE and stop receiving
    /// media, and every connection closes.
    pub fn close_all(self: &Arc<Self>) {
        let outputs = self.feed(Input::Shutdown(Instant::now()));
        for o in outputs {
            match o {
                Output::Event(ServerEvent::CloseConnection { conn }) => {
                    if let Some(c) = self.conns().get(&conn) {
                        c.close.notify_one();
                    }
                }
                Output::Event(e) => self.on_event(e),
                _ => {}
            }
        }
    }

    /// Feeds the state machine its timeouts (session expiry, first sender reports, idle
    /// connections) when they come, forever.
    pub async fn timer_loop(self: Arc<Self>) {
        let mut next = self.deadline.subscribe();
        loop {
            let at = *next.borrow_and_update();
            tokio::select! {
                _ = tokio::time::sleep_until(at.into()) => {
                    let outputs = self.feed(Input::Timeout(Instant::now()));
                    self.execute(outputs, None).await;
                }
                r = next.changed() => {
                    if r.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// A datagram from `from` on the RTCP socket of track `track`: receiver reports from a
    /// client's own address keep its session alive; PLI/FIR ask for a keyframe.
    pub fn on_udp_rtcp(self: &Arc<Self>, from: SocketAddr, track: usize, data: &[u8]) {
        let Some(data) = self.unprotect_rtcp(RtcpFrom::Udp(from), data.to_vec()) else {
            return;
        };
        let data = &data[..];
        // Anyone can send datagrams to this port: what is not RTCP never takes the lock.
        if livecast_proto::rtcp::parse_compound(data).is_err() {
            return;
        }
        let input = Input::Rtcp {
            now: Instant::now(),
            source: RtcpSource::Udp { from, track },
            data: data.to_vec(),
        };
        for o in self.feed(input) {
            if let Output::Event(e) = o {
                self.on_event(e);
            }
        }
    }
}
