//! One connection attempt: connect, OPTIONS, DESCRIBE, SETUP each track, PLAY, then receive
//! until stopped or lost (RFC 2326 §10, appendix C; RFC 3550 §6 for RTCP).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use livecast_proto::jitter::JitterConfig;
use livecast_proto::rtsp::{
    Message, Method, Public, Request, Response, RtpInfo, Session as SessionHeader, StatusCode,
    Transport, TransportProfile, TransportSpec,
};
use livecast_proto::sdp;
use livecast_proto::time::Ssrc;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::conn::{self, AbortOnDrop, Conn, Inbound, Stamp};
use super::describe::{same_stream, tracks_from_sdp, Format};
use super::track::{self, TrackRx};
use super::watchdog::{Verdict, Watchdog};
use super::{NetConfig, NetControl, NetEvent, NetStats};
use crate::engine::api::{ConnState, TransportPref};
use crate::engine::unit::{MediaUnit, TrackDesc};
use livecast_proto::rtsp::url::{self, RtspUrl};

/// How long a request may go unanswered before the connection is presumed lost.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long TEARDOWN is waited for.
const TEARDOWN_WAIT: Duration = Duration::from_secs(2);
/// `Session` timeout when the server names none (RFC 2326 §12.37).
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// Mean interval between our RTCP receiver reports, randomized ×[0.5, 1.5] (RFC 3550
/// §6.3.1). Below RFC 3550's 5 s recommended minimum, within its §6.2 allowance for a
/// reduced minimum (360 / session bandwidth in kbit/s, a fraction of a second here), so
/// servers that count reports as keep-alive see them often.
const RR_INTERVAL: Duration = Duration::from_millis(2500);
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// Media buffered while a request is outstanding, at most.
const EARLY_MAX: usize = 20_000;

/// State that outlives one connection attempt.
pub struct Shared {
    pub cfg: NetConfig,
    pub events: mpsc::Sender<NetEvent>,
    pub control: mpsc::Receiver<NetControl>,
    /// The control sender was dropped: that means stop.
    pub control_closed: bool,
    /// The viewer wants the server paused (kept across reconnects).
    pub want_paused: bool,
    /// Use interleaved TCP: forced, or UDP failed once.
    pub tcp: bool,
}

impl Shared {
    async fn emit(&self, ev: NetEvent) -> Result<(), End> {
        self.events.send(ev).await.map_err(|_| End::Stopped)
    }

    fn on_control(&mut self, c: Option<NetControl>) -> bool {
        match c {
            None => {
                self.control_closed = true;
                true
            }
            Some(NetControl::Stop) => true,
            Some(NetControl::Pause) => {
                self.want_paused = true;
                false
            }
            Some(NetControl::Resume) => {
                self.want_paused = false;
                false
            }
        }
    }

    /// Resolves when told to stop (Pause/Resume on the way are remembered).
    async fn stopped(&mut self) {
        while !self.control_closed {
            let c = self.control.recv().await;
            if self.on_control(c) {
                return;
            }
        }
    }

    /// Sleeps `d` unless told to stop first; returns whether to go on.
    pub async fn wait(&mut self, d: Duration) -> bool {
        if self.control_closed {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.stopped() => false,
        }
    }
}

/// How an attempt ended.
#[derive(Debug)]
pub enum End {
    /// Stop, or nobody listens any more.
    Stopped,
    /// Retrying cannot help.
    Fatal(String),
    /// Try again later.
    Lost(String),
    /// The server said goodbye (RTCP BYE on every track we play). Only reported in call mode;
    /// otherwise the watchdog notices the silence and we reconnect.
    Hangup(String),
}

/// How the receive loop ended.
enum Exit {
    End(End),
    FallbackToTcp,
}

impl From<End> for Exit {
    fn from(e: End) -> Self {
        Exit::End(e)
    }
}

/// What a response without a blocking waiter answers.
#[derive(Clone, Copy, Debug)]
enum Pending {
    KeepAlive,
    Pause,
    Play,
}

/// Where one track's packets come from.
enum Link {
    Udp {
        rtp: Arc<UdpSocket>,
        rtcp: Arc<UdpSocket>,
        server_rtp: Option<SocketAddr>,
        server_rtcp: Option<SocketAddr>,
        _readers: [AbortOnDrop; 2],
    },
    Tcp {
        rtp: u8,
        rtcp: u8,
    },
}

/// One connection attempt. Returns how it ended and whether media flowed.
pub async fn run_once(sh: &mut Shared) -> (End, bool) {
    let target = match RtspUrl::parse(&sh.cfg.url) {
        Ok(u) => u,
        Err(e) => return (End::Fatal(e.to_string()), false),
    };
    let conn = tokio::select! {
        c = Conn::connect(&target.host, target.port) => c,
        _ = sh.stopped() => return (End::Stopped, false),
    };
    let conn = match conn {
        Ok(c) => c,
        Err(e) => {
            let why = format!("cannot connect to {}:{}: {e}", target.host, target.port);
            return (End::Lost(why), false);
        }
    };
    let mut s = Session::new(sh, conn, target.full);
    let end = s.run().await;
    if !s.closed {
        // Polite for a stop or a fatal error; fire-and-forget when the server seems gone.
        let wait = !matches!(end, End::Lost(_) | End::Hangup(_));
        s.teardown(wait).await;
    }
    (end, s.streamed)
}

struct Session<'a> {
    sh: &'a mut Shared,
    conn: Conn,
    /// The URL requests go to (after any redirect).
    url: String,
    /// Methods from OPTIONS' `Public` (RFC 2326 §12.28).
    public: Vec<Method>,
    /// Aggregate control URL (RFC 2326 C.1.1), when the SDP has a session-level control.
    aggregate: Option<String>,
    descs: Vec<(TrackDesc, Format)>,
    tracks: Vec<TrackRx>,
    links: Vec<Link>,
    tcp: bool,
    session_timeout: Duration,
    /// Media read while a request was outstanding, replayed once playing.
    early: VecDeque<Inbound>,
    pending: HashMap<u32, Pending>,
    /// PAUSE / PLAY requests awaiting their response.
    in_flight: usize,
    server_paused: bool,
    ours: Ssrc,
    cname: String,
    dog: Watchdog,
    keepalive: Method,
    next_keepalive: Instant,
    next_rr: Instant,
    next_stats: Instant,
    last_stats: (Instant, u64),
    /// RTP arrived since the last PLAY; `announced` once `Streaming` was sent for it.
    rtp_since_play: bool,
    announced: bool,
    streamed: bool,
    closed: bool,
    units: Vec<MediaUnit>,
}

impl<'a> Session<'a> {
    fn new(sh: &'a mut Shared, conn: Conn, url: String) -> Self {
        let now = Instant::now();
        let tcp = sh.tcp;
        Session {
            sh,
            conn,
            url,
            public: Vec::new(),
            aggregate: None,
            descs: Vec::new(),
            tracks: Vec::new(),
            links: Vec::new(),
            tcp,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            early: VecDeque::new(),
            pending: HashMap::new(),
            in_flight: 0,
            server_paused: true,
            ours: Ssrc(rand::random()),
            cname: format!("player-{:08x}@{}", rand::random::<u32>(), hostname()),
            dog: Watchdog::new(false),
            keepalive: Method::Options,
            next_keepalive: now,
            next_rr: now,
            next_stats: now,
            last_stats: (now, 0),
            rtp_since_play: false,
            announced: false,
            streamed: false,
            closed: false,
            units: Vec::new(),
        }
    }

    async fn run(&mut self) -> End {
        if let Err(e) = self.describe().await {
            return e;
        }
        loop {
            if let Err(e) = self.setup_all().await {
                return e;
            }
            if let Err(e) = self.start().await {
                return e;
            }
            match self.receive().await {
                Exit::End(e) => return e,
                Exit::FallbackToTcp => {
                    tracing::info!(
                        url = %self.url,
                        "no RTP over UDP within 2 s of PLAY: switching to interleaved TCP"
                    );
                    self.teardown(true).await;
                    if self.closed {
                        return End::Lost("connection closed after TEARDOWN".into());
                    }
                    self.sh.tcp = true;
                }
            }
        }
    }

    // ---- requests ---------------------------------------------------------------------

    /// Sends `req` and waits up to `limit` for its response. Media read meanwhile is kept for
    /// later; control messages are honoured if `watch_control` (a stop aborts the wait).
    async fn request(
        &mut self,
        req: Request,
        limit: Duration,
        watch_control: bool,
    ) -> Result<(Response, Stamp), End> {
        let what = format!("{} {}", req.method, req.uri);
        let cseq = self.conn.send(req).await.map_err(|e| {
            self.closed = true;
            End::Lost(format!("sending {what}: {e}"))
        })?;
        let until = tokio::time::Instant::now() + limit;
        enum Ev {
            Ctl(Option<NetControl>),
            In(Option<Inbound>),
            Timeout,
        }
        loop {
            let watch = watch_control && !self.sh.control_closed;
            let ev = tokio::select! {
                biased;
                c = self.sh.control.recv(), if watch => Ev::Ctl(c),
                m = self.conn.inbox.recv() => Ev::In(m),
                _ = tokio::time::sleep_until(until) => Ev::Timeout,
            };
            match ev {
                Ev::Ctl(c) => {
                    if self.sh.on_control(c) {
                        return Err(End::Stopped);
                    }
                }
                Ev::In(Some(Inbound::Rtsp(Message::Response(r), stamp))) => match r.cseq() {
                    // A late answer to a keep-alive or the like.
                    Ok(Some(c)) if c != cseq => {
                        self.pending.remove(&c);
                    }
                    // Ours (or a server that leaves out CSeq: one request is outstanding).
                    _ => return Ok((r, stamp)),
                },
                Ev::In(Some(Inbound::Rtsp(Message::Request(q), _))) => self.answer(q).await?,
                Ev::In(Some(Inbound::Closed(why))) => {
                    self.closed = true;
                    return Err(End::Lost(why));
                }
                Ev::In(Some(media)) => {
                    if self.early.len() < EARLY_MAX {
                        self.early.push_back(media);
                    }
                }
                Ev::In(None) => {
                    self.closed = true;
                    return Err(End::Lost("connection closed".into()));
                }
                Ev::Timeout => {
                    return Err(End::Lost(format!(
                        "no response to {what} within {} s",
                        limit.as_secs()
                    )))
                }
            }
        }
    }

    /// Sends `req` without waiting; its response is handled when it comes.
    async fn send(&mut self, req: Request, kind: Pending) -> Result<(), End> {
        let method = req.method.clone();
        let cseq = self.conn.send(req).await.map_err(|e| {
            self.closed = true;
            End::Lost(format!("sending {method}: {e}"))
        })?;
        if self.pending.len() > 64 {
            // A server that never answers keep-alives: don't remember forever.
            self.pending.clear();
        }
        self.pending.insert(cseq, kind);
        Ok(())
    }

    /// Requests from the server (RFC 2326 §10: OPTIONS and GET_PARAMETER as keep-alive
    /// probes): answered 200; anything else 501.
    async fn answer(&mut self, q: Request) -> Result<(), End> {
        let status = match q.method {
            Method::Options | Method::GetParameter => StatusCode::OK,
            _ => StatusCode::NOT_IMPLEMENTED,
        };
        let mut resp = Response::new(status);
        if let Some(c) = q.headers.get("CSeq") {
            resp = resp.header("CSeq", c);
        }
        self.conn.send_response(&resp).await.map_err(|e| {
            self.closed = true;
            End::Lost(format!("answering the server: {e}"))
        })
    }

    // ---- OPTIONS, DESCRIBE ---------------------------------------------------------------

    /// OPTIONS (RFC 2326 §10.1) for the `Public` methods, then DESCRIBE (§10.2); follows one
    /// redirect (3xx with `Location`, §11.3).
    async fn describe(&mut self) -> Result<(), End> {
        let mut redirected = false;
        loop {
            let (resp, _) = self
                .request(
                    Request::new(Method::Options, self.url.as_str()),
                    REQUEST_TIMEOUT,
                    true,
                )
                .await?;
            if let Some(loc) = redirect_location(&resp) {
                self.follow(&loc, &mut redirected).await?;
                continue;
            }
            if resp.status.is_success() {
                self.public = resp
                    .headers
                    .get_typed::<Public>()
                    .ok()
                    .flatten()
                    .map(|p| p.0)
                    .unwrap_or_default();
            }
            let (resp, _) = self
                .request(
                    Request::new(Method::Describe, self.url.as_str())
                        .header("Accept", "application/sdp"),
                    REQUEST_TIMEOUT,
                    true,
                )
                .await?;
            if let Some(loc) = redirect_location(&resp) {
                self.follow(&loc, &mut redirected).await?;
                continue;
            }
            if !resp.status.is_success() {
                return Err(refused("DESCRIBE", &resp));
            }
            let text = String::from_utf8_lossy(&resp.body).into_owned();
            let sd = sdp::parse(&text).map_err(|e| {
                End::Fatal(format!("the server's session description is invalid: {e}"))
            })?;
            let base = url::describe_base(
                &self.url,
                resp.headers.get("Content-Base"),
                resp.headers.get("Content-Location"),
            );
            self.aggregate = sd.control().map(|c| url::aggregate(&base, Some(c)));
            self.descs = tracks_from_sdp(&sd, &base);
            if self.descs.is_empty() {
                return Err(End::Fatal(
                    "no playable track (need H.264 video, Opus audio or T.140 text)".into(),
                ));
            }
            self.keepalive = if self.public.contains(&Method::GetParameter) {
                Method::GetParameter
            } else {
                Method::Options
            };
            let tracks = self.descs.iter().map(|(d, _)| d.clone()).collect();
            self.sh
                .emit(NetEvent::Described { tracks, sdp: text })
                .await?;
            return Ok(());
        }
    }

    async fn follow(&mut self, location: &str, redirected: &mut bool) -> Result<(), End> {
        if *redirected {
            return Err(End::Fatal(format!("redirected again, to {location}")));
        }
        *redirected = true;
        let target = RtspUrl::parse(&url::resolve(&self.url, location))
            .map_err(|e| End::Fatal(format!("redirect: {e}")))?;
        tracing::info!(from = %self.url, to = %target.full, "following redirect");
        let conn = tokio::select! {
            c = Conn::connect(&target.host, target.port) => c,
            _ = self.sh.stopped() => return Err(End::Stopped),
        };
        self.conn = conn.map_err(|e| {
            End::Lost(format!(
                "cannot connect to {}:{} (redirected): {e}",
                target.host, target.port
            ))
        })?;
        self.closed = false;
        self.url = target.full;
        Ok(())
    }

    // ---- SETUP ------------------------------------------------------------------------------

    fn reset_tracks(&mut self, tcp: bool) {
        let low = self.sh.cfg.low_latency;
        let jitter = if tcp {
            // TCP delivers in order: a gap is a packet the server dropped, not one late.
            JitterConfig {
                min_delay: Duration::ZERO,
                max_delay: Duration::ZERO,
                low_latency: low,
            }
        } else if low {
            JitterConfig {
                min_delay: Duration::from_millis(2),
                max_delay: Duration::from_millis(150),
                low_latency: true,
            }
        } else {
            JitterConfig {
                min_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(500),
                low_latency: false,
            }
        };
        self.tracks = self
            .descs
            .iter()
            .map(|(d, f)| TrackRx::new(d.clone(), f.clone(), jitter))
            .collect();
        self.links.clear();
        self.early.clear();
    }

    /// SETUP every track (RFC 2326 §10.4), over UDP or TCP; in `Auto` mode a refusal of UDP
    /// is retried over TCP.
    async fn setup_all(&mut self) -> Result<(), End> {
        loop {
            let tcp = self.sh.tcp;
            self.reset_tracks(tcp);
            match self.setup_tracks(tcp).await? {
                None => {
                    self.tcp = tcp;
                    return Ok(());
                }
                Some(resp) => {
                    if !tcp && self.sh.cfg.transport == TransportPref::Auto {
                        tracing::info!(
                            url = %self.url,
                            status = resp.status.0,
                            "server refused UDP transport; trying interleaved TCP"
                        );
                        self.teardown(true).await;
                        if self.closed {
                            return Err(End::Lost("connection closed after TEARDOWN".into()));
                        }
                        self.sh.tcp = true;
                        continue;
                    }
                    return Err(refused("SETUP", &resp));
                }
            }
        }
    }

    /// Sets up each track; `Ok(Some(response))` if the server refused one.
    async fn setup_tracks(&mut self, tcp: bool) -> Result<Option<Response>, End> {
        for i in 0..self.tracks.len() {
            let control = self.tracks[i].desc.control_url.clone();
            // At most 127 tracks (tracks_from_sdp), so the channels fit in a u8.
            let ch = (2 * i) as u8;
            let (spec, udp) = if tcp {
                let spec = TransportSpec {
                    profile: TransportProfile::RtpAvpTcp,
                    interleaved: Some((ch, ch + 1)),
                    ..TransportSpec::default()
                };
                (spec, None)
            } else {
                let ip = self.conn.local.ip();
                let (rtp, rtcp) = conn::bind_udp_pair(ip)
                    .map_err(|e| End::Lost(format!("cannot open UDP ports on {ip}: {e}")))?;
                let port = |s: &UdpSocket| s.local_addr().map(|a| a.port()).unwrap_or(0);
                let spec = TransportSpec {
                    profile: TransportProfile::RtpAvp,
                    client_port: Some((port(&rtp), port(&rtcp))),
                    ..TransportSpec::default()
                };
                (spec, Some((rtp, rtcp)))
            };
            let (resp, _) = self
                .request(
                    Request::new(Method::Setup, control.as_str()).typed(&Transport(vec![spec])),
                    REQUEST_TIMEOUT,
                    true,
                )
                .await?;
            if !resp.status.is_success() {
                return Ok(Some(resp));
            }
            match resp.headers.get_typed::<SessionHeader>() {
                Ok(Some(s)) => {
                    if self.conn.session.is_none() {
                        self.conn.session = Some(s.id);
                    }
                    if let Some(t) = s.timeout {
                        self.session_timeout = Duration::from_secs(u64::from(t.clamp(2, 3600)));
                    }
                }
                Ok(None) if self.conn.session.is_none() => {
                    return Err(End::Fatal("SETUP response without a Session header".into()))
                }
                Ok(None) => {}
                Err(e) => return Err(End::Fatal(format!("SETUP response: {e}"))),
            }
            let reply = resp
                .headers
                .get_typed::<Transport>()
                .ok()
                .flatten()
                .and_then(|t| t.0.into_iter().next());
            self.tracks[i].set_ssrc(reply.as_ref().and_then(|r| r.ssrc));
            let link = match udp {
                None => {
                    let (rtp, rtcp) = reply
                        .as_ref()
                        .and_then(|r| r.interleaved)
                        .unwrap_or((ch, ch + 1));
                    Link::Tcp { rtp, rtcp }
                }
                Some((rtp, rtcp)) => {
                    // Media comes from the RTSP server unless `source=` says otherwise.
                    let server_ip = reply
                        .as_ref()
                        .and_then(|r| r.source.as_deref())
                        .and_then(|s| s.parse::<IpAddr>().ok())
                        .unwrap_or(self.conn.peer.ip());
                    let ports = reply.as_ref().and_then(|r| r.server_port);
                    let (rtp, rtcp) = (Arc::new(rtp), Arc::new(rtcp));
                    let tx = self.conn.inbox_sender();
                    let readers = [
                        conn::spawn_udp_reader(rtp.clone(), i, false, Some(server_ip), tx.clone()),
                        conn::spawn_udp_reader(rtcp.clone(), i, true, Some(server_ip), tx),
                    ];
                    Link::Udp {
                        rtp,
                        rtcp,
                        server_rtp: ports.map(|(p, _)| SocketAddr::new(server_ip, p)),
                        server_rtcp: ports.map(|(_, p)| SocketAddr::new(server_ip, p)),
                        _readers: readers,
                    }
                }
            };
            self.links.push(link);
            self.punch(i).await;
        }
        Ok(None)
    }

    /// Opens NAT bindings for a UDP track: a receiver report from each of our ports to the
    /// server's (what RFC 7604 §3.3.1 calls keep-alive/hole punching; FFmpeg does the same).
    async fn punch(&mut self, i: usize) {
        let (
            Some(t),
            Some(Link::Udp {
                rtp,
                rtcp,
                server_rtp,
                server_rtcp,
                ..
            }),
        ) = (self.tracks.get_mut(i), self.links.get(i))
        else {
            return;
        };
        let rr = t.receiver_report(self.ours, &self.cname, Instant::now());
        for (sock, to) in [(rtp, server_rtp), (rtcp, server_rtcp)] {
            if let Some(to) = to {
                if let Err(e) = sock.send_to(&rr, to).await {
                    tracing::debug!(track = i, %to, "NAT punch: {e}");
                }
            }
        }
    }

    // ---- PLAY, PAUSE, TEARDOWN -------------------------------------------------------------

    /// The URLs PLAY/PAUSE/TEARDOWN go to: the aggregate, else every track (RFC 2326 C.1.1).
    fn control_urls(&self) -> Vec<String> {
        match &self.aggregate {
            Some(a) => vec![a.clone()],
            None => self
                .tracks
                .iter()
                .map(|t| t.desc.control_url.clone())
                .collect(),
        }
    }

    /// The first PLAY (RFC 2326 §10.5), unless the viewer wants the stream paused.
    async fn start(&mut self) -> Result<(), End> {
        self.dog = Watchdog::new(!self.tcp && self.sh.cfg.transport == TransportPref::Auto);
        self.server_paused = true;
        self.in_flight = 0;
        self.pending.clear();
        if self.sh.want_paused {
            return self.sh.emit(NetEvent::State(ConnState::ServerPaused)).await;
        }
        for u in self.control_urls() {
            let (resp, stamp) = self
                .request(
                    Request::new(Method::Play, u).header("Range", "npt=0.000-"),
                    REQUEST_TIMEOUT,
                    true,
                )
                .await?;
            if !resp.status.is_success() {
                return Err(refused("PLAY", &resp));
            }
            self.on_play_ok(&resp, stamp);
        }
        for i in 0..self.tracks.len() {
            self.punch(i).await;
        }
        Ok(())
    }

    fn on_play_ok(&mut self, resp: &Response, stamp: Stamp) {
        if let Ok(Some(info)) = resp.headers.get_typed::<RtpInfo>() {
            let n = self.tracks.len();
            for (i, t) in self.tracks.iter_mut().enumerate() {
                let entry = info
                    .0
                    .iter()
                    .find(|e| same_stream(&e.url, &t.desc.control_url))
                    .or_else(|| (info.0.len() == n).then(|| &info.0[i]));
                if let Some(rtptime) = entry.and_then(|e| e.rtptime) {
                    t.on_rtp_info(rtptime, stamp.wall_us);
                }
                if let Some(seq) = entry.and_then(|e| e.seq) {
                    t.on_rtp_info_seq(seq);
                }
            }
        }
        self.server_paused = false;
        self.dog.on_play(stamp.at);
        self.rtp_since_play = false;
        self.announced = false;
    }

    /// Brings the server to the state the viewer wants: PAUSE (RFC 2326 §10.6) or PLAY.
    async fn reconcile(&mut self) -> Result<(), End> {
        if self.in_flight > 0 || self.sh.want_paused == self.server_paused {
            return Ok(());
        }
        let (method, kind) = if self.sh.want_paused {
            (Method::Pause, Pending::Pause)
        } else {
            (Method::Play, Pending::Play)
        };
        for u in self.control_urls() {
            self.send(Request::new(method.clone(), u), kind).await?;
            self.in_flight += 1;
        }
        Ok(())
    }

    /// RTCP BYE (RFC 3550 §6.6), then TEARDOWN (RFC 2326 §10.7), waited for at most 2 s if
    /// `wait`; the UDP ports are closed either way.
    async fn teardown(&mut self, wait: bool) {
        self.early.clear();
        if self.conn.session.is_some() && !self.closed {
            let bye = track::bye(self.ours, &self.cname);
            for link in &self.links {
                match link {
                    Link::Udp {
                        rtcp,
                        server_rtcp: Some(to),
                        ..
                    } => {
                        let _ = rtcp.send_to(&bye, to).await;
                    }
                    Link::Udp { .. } => {}
                    Link::Tcp { rtcp, .. } => {
                        let _ = self.conn.send_frame(*rtcp, bye.clone()).await;
                    }
                }
            }
            let until = Instant::now() + TEARDOWN_WAIT;
            for u in self.control_urls() {
                let req = Request::new(Method::Teardown, u);
                if wait {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() || self.request(req, left, false).await.is_err() {
                        break;
                    }
                } else if self.conn.send(req).await.is_err() {
                    break;
                }
            }
        }
        self.conn.session = None;
        self.links.clear();
        self.pending.clear();
        self.in_flight = 0;
        self.early.clear();
    }

    // ---- receiving ------------------------------------------------------------------------

    async fn receive(&mut self) -> Exit {
        let now = Instant::now();
        self.next_keepalive = now + self.keepalive_interval();
        self.next_rr = now + rr_interval();
        self.next_stats = now + STATS_INTERVAL;
        self.last_stats = (now, self.rtp_bytes());
        while let Some(ev) = self.early.pop_front() {
            if let Err(x) = self.on_inbound(ev).await {
                return x;
            }
        }
        enum Ev {
            Ctl(Option<NetControl>),
            In(Option<Inbound>),
            Tick,
        }
        loop {
            if let Err(e) = self.reconcile().await {
                return e.into();
            }
            if let Err(x) = self.on_timers().await {
                return x;
            }
            let wake = tokio::time::Instant::from_std(self.next_wake());
            let watch = !self.sh.control_closed;
            let ev = tokio::select! {
                biased;
                c = self.sh.control.recv(), if watch => Ev::Ctl(c),
                m = self.conn.inbox.recv() => Ev::In(m),
                _ = tokio::time::sleep_until(wake) => Ev::Tick,
            };
            match ev {
                Ev::Ctl(c) => {
                    if self.sh.on_control(c) {
                        return End::Stopped.into();
                    }
                }
                Ev::In(Some(m)) => {
                    if let Err(x) = self.on_inbound(m).await {
                        return x;
                    }
                }
                Ev::In(None) => {
                    self.closed = true;
                    return End::Lost("connection closed".into()).into();
                }
                Ev::Tick => {}
            }
        }
    }

    fn next_wake(&self) -> Instant {
        let mut wake = self.next_keepalive.min(self.next_rr).min(self.next_stats);
        for d in self
            .tracks
            .iter()
            .filter_map(TrackRx::next_deadline)
            .chain(self.dog.deadline())
        {
            wake = wake.min(d);
        }
        wake
    }

    async fn on_inbound(&mut self, ev: Inbound) -> Result<(), Exit> {
        match ev {
            Inbound::Rtsp(Message::Data(f), stamp) => {
                let found = self.links.iter().enumerate().find_map(|(i, l)| match l {
                    Link::Tcp { rtp, .. } if *rtp == f.channel => Some((i, false)),
                    Link::Tcp { rtcp, .. } if *rtcp == f.channel => Some((i, true)),
                    _ => None,
                });
                match found {
                    Some((i, rtcp)) => self.on_packet(i, rtcp, &f.payload, stamp),
                    None => tracing::trace!(channel = f.channel, "frame on an unknown channel"),
                }
            }
            Inbound::Rtsp(Message::Response(r), stamp) => self.on_response(r, stamp).await?,
            Inbound::Rtsp(Message::Request(q), _) => self.answer(q).await?,
            Inbound::Udp {
                track,
                rtcp,
                data,
                stamp,
            } => {
                // Datagrams queued before a switch to TCP are stale.
                if matches!(self.links.get(track), Some(Link::Udp { .. })) {
                    self.on_packet(track, rtcp, &data, stamp);
                }
            }
            Inbound::Closed(why) => {
                self.closed = true;
                // A peer hanging up closes its server's connections right after its BYEs.
                if self.sh.cfg.call && why == conn::CLOSED_BY_SERVER {
                    return Err(End::Hangup("the peer hung up".into()).into());
                }
                return Err(End::Lost(why).into());
            }
        }
        if self.sh.cfg.call && self.peer_left() {
            return Err(End::Hangup("the peer hung up".into()).into());
        }
        Ok(())
    }

    /// Every audio and video track got a BYE: the peer closed its stream.
    fn peer_left(&self) -> bool {
        let mut av = self
            .tracks
            .iter()
            .filter(|t| t.desc.media != "text")
            .peekable();
        av.peek().is_some() && av.all(|t| t.bye)
    }

    fn on_packet(&mut self, i: usize, rtcp: bool, data: &[u8], stamp: Stamp) {
        let Some(t) = self.tracks.get_mut(i) else {
            return;
        };
        if rtcp {
            t.on_rtcp(data, stamp.at);
        } else if t.on_rtp(data, stamp.at, stamp.wall_us) {
            self.dog.on_rtp(stamp.at);
            self.streamed = true;
            self.rtp_since_play = true;
        }
    }

    async fn on_response(&mut self, r: Response, stamp: Stamp) -> Result<(), End> {
        let Some(kind) = r
            .cseq()
            .ok()
            .flatten()
            .and_then(|c| self.pending.remove(&c))
        else {
            return Ok(());
        };
        if r.status == StatusCode::SESSION_NOT_FOUND {
            return Err(End::Lost(
                "the server no longer knows our session (454)".into(),
            ));
        }
        match kind {
            Pending::KeepAlive => {
                if !r.status.is_success() && self.keepalive == Method::GetParameter {
                    tracing::debug!(
                        status = r.status.0,
                        "GET_PARAMETER refused; keep-alive by OPTIONS"
                    );
                    self.keepalive = Method::Options;
                }
            }
            Pending::Pause | Pending::Play => {
                self.in_flight = self.in_flight.saturating_sub(1);
                let play = matches!(kind, Pending::Play);
                if !r.status.is_success() {
                    tracing::warn!(
                        status = r.status.0,
                        reason = %r.reason,
                        "{} refused",
                        if play { "PLAY" } else { "PAUSE" }
                    );
                    // Don't ask again and again: the wish follows the server.
                    self.sh.want_paused = self.server_paused;
                } else if play {
                    self.on_play_ok(&r, stamp);
                } else if !self.server_paused {
                    self.server_paused = true;
                    self.dog.on_pause();
                    self.sh
                        .emit(NetEvent::State(ConnState::ServerPaused))
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Releases due units, and runs the keep-alive, RTCP and statistics clocks.
    async fn on_timers(&mut self) -> Result<(), Exit> {
        let now = Instant::now();
        let wall = conn::wall_us(SystemTime::now());
        let mut units = std::mem::take(&mut self.units);
        for t in &mut self.tracks {
            t.poll(now, wall, &mut units);
        }
        self.send_keyframe_requests(now).await?;
        if self.rtp_since_play && !self.announced && !self.server_paused {
            self.announced = true;
            let state = ConnState::Streaming { tcp: self.tcp };
            self.sh.emit(NetEvent::State(state)).await?;
        }
        for u in units.drain(..) {
            self.sh.emit(NetEvent::Unit(u)).await?;
        }
        self.units = units;
        match self.dog.poll(now) {
            Some(Verdict::FallbackToTcp) => return Err(Exit::FallbackToTcp),
            Some(Verdict::NoMedia) => {
                return Err(End::Lost("no media from the server for 5 s".into()).into())
            }
            None => {}
        }
        if now >= self.next_keepalive {
            let url = self.aggregate.clone().unwrap_or_else(|| self.url.clone());
            self.send(
                Request::new(self.keepalive.clone(), url),
                Pending::KeepAlive,
            )
            .await?;
            self.next_keepalive = now + self.keepalive_interval();
        }
        if now >= self.next_rr {
            self.send_reports(now).await?;
            self.next_rr = now + rr_interval();
        }
        if now >= self.next_stats {
            self.emit_stats(now).await?;
            self.next_stats = now + STATS_INTERVAL;
        }
        Ok(())
    }

    /// Keep-alive every half session timeout (RFC 2326 §12.37).
    fn keepalive_interval(&self) -> Duration {
        (self.session_timeout / 2).max(Duration::from_secs(1))
    }

    /// A receiver report + SDES CNAME per track (RFC 3550 §6.4.2), on its RTCP channel.
    async fn send_reports(&mut self, now: Instant) -> Result<(), End> {
        for i in 0..self.tracks.len() {
            let rr = self.tracks[i].receiver_report(self.ours, &self.cname, now);
            self.send_rtcp(i, rr).await?;
        }
        Ok(())
    }

    /// A PLI for each video track whose decoder waits for a keyframe after loss, so the
    /// picture comes back in a round trip instead of at the sender's next periodic keyframe.
    async fn send_keyframe_requests(&mut self, now: Instant) -> Result<(), End> {
        for i in 0..self.tracks.len() {
            if let Some(pli) = self.tracks[i].keyframe_request(self.ours, &self.cname, now) {
                tracing::debug!(track = i, "picture lost: asking for a keyframe (RTCP PLI)");
                self.send_rtcp(i, pli).await?;
            }
        }
        Ok(())
    }

    /// Sends an RTCP compound on track `i`'s RTCP port or interleaved channel.
    async fn send_rtcp(&mut self, i: usize, compound: Vec<u8>) -> Result<(), End> {
        match self.links.get(i) {
            Some(Link::Udp {
                rtcp,
                server_rtcp: Some(to),
                ..
            }) => {
                if let Err(e) = rtcp.send_to(&compound, to).await {
                    tracing::debug!(track = i, %to, "RTCP: {e}");
                }
            }
            Some(Link::Tcp { rtcp, .. }) => {
                self.conn.send_frame(*rtcp, compound).await.map_err(|e| {
                    self.closed = true;
                    End::Lost(format!("sending RTCP: {e}"))
                })?;
            }
            _ => {}
        }
        Ok(())
    }

    fn rtp_bytes(&self) -> u64 {
        self.tracks.iter().map(|t| t.counters.rtp_bytes).sum()
    }

    async fn emit_stats(&mut self, now: Instant) -> Result<(), End> {
        let bytes = self.rtp_bytes();
        let (since, before) = self.last_stats;
        let secs = now.saturating_duration_since(since).as_secs_f64();
        self.last_stats = (now, bytes);
        let video = self
            .tracks
            .iter()
            .position(|t| t.desc.media.eq_ignore_ascii_case("video"))
            .unwrap_or(0);
        let (received, lost) = self
            .tracks
            .iter()
            .filter_map(TrackRx::reception)
            .fold((0u64, 0i64), |(r, l), s| {
                (r + s.packets_received(), l + s.packets_lost())
            });
        let stats = NetStats {
            packets_received: received,
            packets_lost: lost,
            jitter_ms: self
                .tracks
                .get(video)
                .and_then(TrackRx::reception)
                .map_or(0.0, |r| r.jitter_secs() * 1e3),
            bitrate_bps: if secs > 0.0 {
                bytes.saturating_sub(before) as f64 * 8.0 / secs
            } else {
                0.0
            },
            tcp: self.tcp,
            jitter_delay_ms: self
                .tracks
                .get(video)
                .map_or(0.0, |t| t.jitter_delay().as_secs_f64() * 1e3),
        };
        self.sh.emit(NetEvent::Stats(stats)).await
    }
}

/// RFC 3550 §6.3.1: the interval randomized over [0.5, 1.5] × the mean, so receivers do not
/// synchronize.
fn rr_interval() -> Duration {
    RR_INTERVAL.mul_f64(0.5 + rand::random::<f64>())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// A 3xx response's `Location` (RFC 2326 §11.3).
fn redirect_location(resp: &Response) -> Option<String> {
    (300..400)
        .contains(&resp.status.0)
        .then(|| resp.headers.get("Location").map(str::to_owned))
        .flatten()
}

/// What a refusal means: 4xx (not found, unauthorized, unsupported ...) is final, except 454
/// (the session is gone: set up a new one); anything else may pass.
fn refused(what: &str, resp: &Response) -> End {
    let code = resp.status.0;
    let msg = match code {
        401 => format!("{what}: the server requires authentication (401), which is not supported"),
        404 => format!("{what}: stream not found (404 {})", resp.reason),
        _ => format!("{what} refused: {code} {}", resp.reason),
    };
    if (400..500).contains(&code) && code != 454 {
        End::Fatal(msg)
    } else {
        End::Lost(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_and_redirects() {
        let r = |code| Response::new(StatusCode(code));
        assert!(matches!(refused("DESCRIBE", &r(404)), End::Fatal(m) if m.contains("not found")));
        assert!(
            matches!(refused("DESCRIBE", &r(401)), End::Fatal(m) if m.contains("authentication"))
        );
        assert!(matches!(refused("PLAY", &r(454)), End::Lost(_)));
        assert!(matches!(refused("SETUP", &r(503)), End::Lost(_)));
        assert_eq!(
            redirect_location(&r(302).header("Location", "rtsp://o/x")),
            Some("rtsp://o/x".into())
        );
        assert_eq!(redirect_location(&r(302)), None);
        assert_eq!(
            redirect_location(&r(200).header("Location", "rtsp://o/x")),
            None
        );
    }

    #[test]
    fn rr_intervals_are_randomized_around_the_mean() {
        for _ in 0..100 {
            let i = rr_interval();
            assert!((RR_INTERVAL / 2..=RR_INTERVAL * 3 / 2).contains(&i));
        }
    }
}
