//! The RTSP 1.0 front end: TCP connections, request dispatch, sessions and their lifetimes.
//!
//! Protocol decisions (which method is valid in which state) come from
//! [`livecast_proto::rtsp::session`]; this module owns the sockets, the session table and the
//! side effects. Each connection is one task with a reader and a writer half; interleaved RTP
//! shares the writer's bounded queue with responses, and a response is always queued before
//! the first media packet it announces.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use livecast_proto::rtcp::{self, RtcpPacket};
use livecast_proto::rtsp::session::{ServerSession, State};
use livecast_proto::rtsp::{
    self, url, CSeq, ContentBase, Header, Limits, Message, Method, NptTime, ParseErrorKind, Parsed,
    Public, Range, Request, Response, RtpInfo, RtpInfoEntry, Session, StatusCode, Transport,
    TransportProfile, TransportSpec, Version,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::track::{Sink, Track};

/// Methods we answer (RFC 2326 §10), in the order of the `Public` header.
const PUBLIC: [Method; 7] = [
    Method::Options,
    Method::Describe,
    Method::Setup,
    Method::Play,
    Method::Pause,
    Method::Teardown,
    Method::GetParameter,
];

/// Depth of a connection's outgoing queue (responses + interleaved frames). About two seconds
/// of 2 Mbit/s video; beyond it a slow TCP client loses packets rather than holding anyone up.
const CONN_QUEUE: usize = 512;
/// A connection that has sent nothing and owns no session for this long is closed.
const IDLE_CONNECTION: Duration = Duration::from_secs(60);
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
}

impl Default for RtspConfig {
    fn default() -> Self {
        Self {
            path: "live".into(),
            session_timeout: Duration::from_secs(60),
            limits: Limits::default(),
        }
    }
}

/// One track as set up by a client.
#[derive(Clone, Debug)]
struct SetupTrack {
    track: usize,
    sink: Sink,
    /// Where the client's RTCP comes from (UDP only), to count receiver reports as keep-alive.
    rtcp_source: Option<SocketAddr>,
    resume_seq: Option<u16>,
}

struct SessionEntry {
    state: ServerSession,
    /// Numeric id, also the subscriber id on the tracks.
    client: u64,
    /// Connection that created the session; when it drops, the session goes too.
    conn: u64,
    peer: SocketAddr,
    setups: Vec<SetupTrack>,
}

/// Shared state of the RTSP server.
pub struct RtspServer {
    cfg: RtspConfig,
    tracks: Vec<Arc<Track>>,
    /// SDP body, with `{ADDR_TYPE}`/`{ADDR}` filled per request by [`Self::describe_sdp`].
    sdp: String,
    sessions: Mutex<HashMap<String, SessionEntry>>,
    /// Client RTCP source address -> session id.
    rtcp_sources: Mutex<HashMap<SocketAddr, String>>,
    next_id: AtomicU64,
    /// Set to `true` on shutdown: every connection closes.
    closing: tokio::sync::watch::Sender<bool>,
}

/// What the connection must do after writing a response.
enum After {
    Nothing,
    StartPlaying(String),
    Close,
}

/// Per-connection facts the request handlers need.
struct ConnCtx {
    id: u64,
    peer: SocketAddr,
    local: SocketAddr,
    tx: mpsc::Sender<Vec<u8>>,
}

impl RtspServer {
    pub fn new(cfg: RtspConfig, tracks: Vec<Arc<Track>>, sdp: String) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            tracks,
            sdp,
            sessions: Mutex::new(HashMap::new()),
            rtcp_sources: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closing: tokio::sync::watch::channel(false).0,
        })
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<String, SessionEntry>> {
        // Handlers never panic while holding the lock; if one did, the table is still usable.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn rtcp_sources(&self) -> MutexGuard<'_, HashMap<SocketAddr, String>> {
        self.rtcp_sources.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of live sessions (for tests and stats).
    pub fn session_count(&self) -> usize {
        self.sessions().len()
    }

    /// Sessions in the Playing state (receiving media now).
    pub fn playing_count(&self) -> usize {
        self.sessions()
            .values()
            .filter(|s| s.state.state() == State::Playing)
            .count()
    }

    /// Accepts connections on `listener` forever.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let server = self.clone();
                    tokio::spawn(async move { server.connection(stream, peer).await });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn connection(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let local = match stream.local_addr() {
            Ok(a) => a,
            Err(_) => return,
        };
        let _ = stream.set_nodelay(true);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        debug!(conn = id, %peer, "connection opened");
        let (mut rd, mut wr) = stream.into_split();
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CONN_QUEUE);
        let writer = tokio::spawn(async move {
            while let Some(buf) = rx.recv().await {
                if wr.write_all(&buf).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });
        let ctx = ConnCtx {
            id,
            peer,
            local,
            tx,
        };
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut chunk = vec![0u8; 16 * 1024];
        let mut closing = self.closing.subscribe();
        'conn: loop {
            // Handle every complete message in the buffer.
            loop {
                match rtsp::parse(&buf, &self.cfg.limits) {
                    Ok(Parsed::Incomplete) => break,
                    Ok(Parsed::Complete { message, consumed }) => {
                        buf.drain(..consumed);
                        match message {
                            Message::Request(req) => {
                                let (resp, after) = self.handle(&req, &ctx, Instant::now());
                                let mut out = Vec::with_capacity(512);
                                resp.write_to(&mut out);
                                if ctx.tx.send(out).await.is_err() {
                                    break 'conn;
                                }
                                match after {
                                    After::Nothing => {}
                                    After::StartPlaying(sid) => self.start_playing(&sid),
                                    After::Close => break 'conn,
                                }
                            }
                            Message::Data(frame) => {
                                // Interleaved RTCP receiver reports keep the session alive.
                                self.keepalive_conn(id);
                                if frame.channel % 2 == 1 {
                                    self.on_interleaved_rtcp(id, frame.channel, &frame.payload);
                                }
                            }
                            Message::Response(_) => {
                                debug!(conn = id, "ignoring a response from the client");
                            }
                        }
                    }
                    Err(e) => {
                        let status = match e.kind {
                            ParseErrorKind::HeadersTooLarge | ParseErrorKind::BodyTooLarge => {
                                StatusCode::REQUEST_ENTITY_TOO_LARGE
                            }
                            _ => StatusCode::BAD_REQUEST,
                        };
                        info!(conn = id, %peer, "closing connection: {e}");
                        let mut out = Vec::new();
                        Response::new(status)
                            .header("Connection", "close")
                            .write_to(&mut out);
                        let _ = ctx.tx.send(out).await;
                        break 'conn;
                    }
                }
            }
            let owns_session = self.sessions().values().any(|s| s.conn == id);
            let idle = if owns_session {
                Duration::MAX
            } else {
                IDLE_CONNECTION
            };
            let read = tokio::select! {
                r = tokio::time::timeout(idle, rd.read(&mut chunk)) => match r {
                    Ok(r) => r,
                    Err(_) => {
                        debug!(conn = id, "idle connection closed");
                        break;
                    }
                },
                _ = closing.wait_for(|c| *c) => break,
            };
            match read {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        drop(ctx);
        self.drop_connection(id);
        let _ = writer.await;
        debug!(conn = id, %peer, "connection closed");
    }

    /// Frees every session created on connection `conn` (the client went away).
    fn drop_connection(&self, conn: u64) {
        let gone: Vec<(String, SessionEntry)> = {
            let mut sessions = self.sessions();
            let ids: Vec<String> = sessions
                .iter()
                .filter(|(_, s)| s.conn == conn)
                .map(|(k, _)| k.clone())
                .collect();
            ids.into_iter()
                .filter_map(|k| sessions.remove(&k).map(|s| (k, s)))
                .collect()
        };
        for (sid, entry) in gone {
            info!(session = %sid, peer = %entry.peer, "connection closed; session freed");
            self.release(&entry, false);
        }
    }

    /// Unsubscribes a session's tracks and forgets its RTCP sources.
    fn release(&self, entry: &SessionEntry, bye: bool) {
        for s in &entry.setups {
            if let Some(track) = self.tracks.get(s.track) {
                track.unsubscribe(entry.client);
                if bye {
                    track.send_bye(&s.sink, entry.client);
                }
            }
            if let Some(src) = s.rtcp_source {
                self.rtcp_sources().remove(&src);
            }
        }
    }

    /// Ends every session at once (server shutdown): clients stop receiving media.
    pub fn close_all(&self) {
        self.closing.send_replace(true);
        let all: Vec<SessionEntry> = self.sessions().drain().map(|(_, s)| s).collect();
        for entry in &all {
            self.release(entry, true);
        }
    }

    /// Closes sessions whose keep-alive deadline has passed; returns how many.
    pub fn expire_sessions(&self, now: Instant) -> usize {
        let expired: Vec<(String, SessionEntry)> = {
            let mut sessions = self.sessions();
            let ids: Vec<String> = sessions
                .iter()
                .filter(|(_, s)| s.state.is_expired(now))
                .map(|(k, _)| k.clone())
                .collect();
            ids.into_iter()
                .filter_map(|k| sessions.remove(&k).map(|s| (k, s)))
                .collect()
        };
        for (sid, entry) in &expired {
            info!(session = %sid, peer = %entry.peer, "session timed out (no keep-alive)");
            self.release(entry, true);
        }
        expired.len()
    }

    /// Runs [`Self::expire_sessions`] every second.
    pub async fn expiry_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            self.expire_sessions(Instant::now());
        }
    }

    /// An RTCP compound arrived from `from` on the RTCP socket of track `track`. Only a
    /// client's own RTCP counts: a stranger can neither keep a session alive nor ask for
    /// keyframes.
    pub fn on_rtcp(&self, from: SocketAddr, track: usize, packets: &[RtcpPacket]) {
        let sid = self.rtcp_sources().get(&from).cloned();
        let Some(sid) = sid else {
            return;
        };
        if let Some(s) = self.sessions().get_mut(&sid) {
            s.state.keepalive(Instant::now());
        }
        self.on_feedback(track, packets);
    }

    /// RTCP interleaved on connection `conn`, channel `channel`: feedback for the track that
    /// a session of this connection set up with that RTCP channel.
    fn on_interleaved_rtcp(&self, conn: u64, channel: u8, data: &[u8]) {
        let track = self
            .sessions()
            .values()
            .filter(|s| s.conn == conn)
            .flat_map(|s| &s.setups)
            .find(|t| matches!(t.sink, Sink::Tcp { rtcp_channel, .. } if rtcp_channel == channel))
            .map(|t| t.track);
        if let (Some(track), Ok(packets)) = (track, rtcp::parse_compound(data)) {
            self.on_feedback(track, &packets);
        }
    }

    /// A PLI or FIR for a video track asks its encoder for a keyframe, so a client that lost
    /// part of a picture recovers now rather than at the next periodic keyframe.
    fn on_feedback(&self, track: usize, packets: &[RtcpPacket]) {
        let Some(t) = self.tracks.get(track) else {
            return;
        };
        if packets.iter().any(|p| p.requests_keyframe_of(t.info.ssrc)) {
            debug!(track, "keyframe requested (RTCP PLI/FIR)");
            t.request_keyframe();
        }
    }

    fn keepalive_conn(&self, conn: u64) {
        let now = Instant::now();
        for s in self.sessions().values_mut().filter(|s| s.conn == conn) {
            s.state.keepalive(now);
        }
    }

    fn start_playing(&self, sid: &str) {
        let mut sessions = self.sessions();
        let Some(entry) = sessions.get_mut(sid) else {
            return;
        };
        let client = entry.client;
        let subs: Vec<(usize, Sink)> = entry
            .setups
            .iter()
            .map(|s| (s.track, s.sink.clone()))
            .collect();
        drop(sessions);
        for (t, _) in &subs {
            if let Some(track) = self.tracks.get(*t) {
                // First sender report soon after the first packets, so players can sync at once.
                let track = track.clone();
                tokio::spawn(async move {
                    for delay in [150u64, 1000] {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                        track.send_sender_reports(SystemTime::now(), Some(client));
                    }
                });
            }
        }
    }

    /// Handles one request; never panics, whatever the client sent.
    fn handle(&self, req: &Request, ctx: &ConnCtx, now: Instant) -> (Response, After) {
        let cseq = match req.headers.get_typed::<CSeq>() {
            Ok(Some(c)) => Some(c),
            Ok(None) => None,
            Err(e) => {
                return (
                    error(StatusCode::BAD_REQUEST, None, &e.to_string()),
                    After::Nothing,
                )
            }
        };
        let Some(cseq) = cseq else {
            return (
                error(StatusCode::BAD_REQUEST, None, "missing CSeq header"),
                After::Nothing,
            );
        };
        if req.version != Version::Rtsp10 {
            return (
                error(
                    StatusCode::VERSION_NOT_SUPPORTED,
                    Some(cseq),
                    "only RTSP/1.0 is supported",
                ),
                After::Close,
            );
        }
        if let Some(req_opts) = req.headers.get("Require") {
            // We implement no option tags (RFC 2326 §12.32).
            let resp = Response::new(StatusCode::OPTION_NOT_SUPPORTED)
                .typed(&cseq)
                .header("Unsupported", req_opts.trim());
            return (resp, After::Nothing);
        }
        let result = match &req.method {
            Method::Options => self.options(req, now),
            Method::Describe => self.describe(req, ctx),
            Method::Setup => self.setup(req, ctx, now),
            Method::Play => self.play(req, now),
            Method::Pause => self.pause(req, now),
            Method::Teardown => self.teardown(req),
            Method::GetParameter => self.get_parameter(req, now),
            Method::Announce | Method::Record | Method::Redirect | Method::SetParameter => {
                Err(Fail::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "this server only plays; the method is not allowed",
                )
                .with_header("Allow", &public_list()))
            }
            _ => Err(Fail::new(StatusCode::NOT_IMPLEMENTED, "unknown method")),
        };
        match result {
            Ok((resp, after)) => (resp.typed(&cseq).header("Server", SERVER), after),
            Err(f) => {
                debug!(conn = ctx.id, method = req.method.as_str(), uri = %req.uri, status = f.status.0, "{}", f.msg);
                let mut r = error(f.status, Some(cseq), &f.msg);
                for (k, v) in f.headers {
                    r = r.header(&k, &v);
                }
                (r, After::Nothing)
            }
        }
    }

    fn options(&self, req: &Request, now: Instant) -> Handled {
        if let Ok(Some(s)) = req.headers.get_typed::<Session>() {
            if let Some(e) = self.sessions().get_mut(&s.id) {
                e.state.keepalive(now);
            }
        }
        Ok((
            Response::new(StatusCode::OK).typed(&Public(PUBLIC.to_vec())),
            After::Nothing,
        ))
    }

    fn describe(&self, req: &Request, ctx: &ConnCtx) -> Handled {
        match self.target(&req.uri)? {
            Target::Aggregate => {}
            Target::Track(_) => {
                return Err(Fail::new(
                    StatusCode::NOT_FOUND,
                    "DESCRIBE the stream, not one of its tracks",
                ))
            }
        }
        if let Some(accept) = req.headers.get("Accept") {
            if !accept.to_ascii_lowercase().contains("application/sdp") && !accept.contains("*/*") {
                return Err(Fail::new(
                    StatusCode(406),
                    "only application/sdp descriptions are available",
                ));
            }
        }
        let base = url::content_base(&req.uri);
        let body = self.describe_sdp(ctx.local.ip());
        Ok((
            Response::new(StatusCode::OK)
                .typed(&ContentBase(base))
                .body("application/sdp", body.into_bytes()),
            After::Nothing,
        ))
    }

    /// The SDP with the origin address of the interface the client reached us on.
    pub fn describe_sdp(&self, local: IpAddr) -> String {
        let (ty, addr) = match local {
            IpAddr::V4(a) => ("IP4", a.to_string()),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => ("IP4", v4.to_string()),
                None => ("IP6", a.to_string()),
            },
        };
        self.sdp.replace("{ADDR_TYPE}", ty).replace("{ADDR}", &addr)
    }

    fn setup(&self, req: &Request, ctx: &ConnCtx, now: Instant) -> Handled {
        let track = match self.target(&req.uri)? {
            Target::Track(t) => t,
            Target::Aggregate => {
                return Err(Fail::new(
                    StatusCode::AGGREGATE_OPERATION_NOT_ALLOWED,
                    "SETUP each track (its a=control URL), not the aggregate stream",
                ))
            }
        };
        let transport = req
            .headers
            .get_typed::<Transport>()
            .map_err(|e| Fail::new(StatusCode::BAD_REQUEST, &e.to_string()))?
            .ok_or_else(|| Fail::new(StatusCode::BAD_REQUEST, "missing Transport header"))?;
        let session_hdr = req
            .headers
            .get_typed::<Session>()
            .map_err(|e| Fail::new(StatusCode::BAD_REQUEST, &e.to_string()))?;

        let mut sessions = self.sessions();
        // Validate the state before choosing the transport, so nothing is half-done on error.
        if let Some(s) = &session_hdr {
            let entry = sessions
                .get(&s.id)
                .ok_or_else(|| Fail::new(StatusCode::SESSION_NOT_FOUND, "no such session"))?;
            entry.state.next_state(&req.method).map_err(state_fail)?;
        } else if sessions.len() >= MAX_SESSIONS {
            return Err(Fail::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many sessions; try again later",
            ));
        }
        let (setup, reply) = self.choose_transport(track, &transport, ctx)?;

        let sid = match &session_hdr {
            Some(s) => s.id.clone(),
            None => {
                let sid = format!("{:016x}", rand::random::<u64>());
                let client = self.next_id.fetch_add(1, Ordering::Relaxed);
                sessions.insert(
                    sid.clone(),
                    SessionEntry {
                        state: ServerSession::new(sid.clone(), self.cfg.session_timeout, now),
                        client,
                        conn: ctx.id,
                        peer: ctx.peer,
                        setups: Vec::new(),
                    },
                );
                sid
            }
        };
        let Some(entry) = sessions.get_mut(&sid) else {
            return Err(Fail::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "session vanished",
            ));
        };
        let next = entry.state.next_state(&req.method).map_err(state_fail)?;
        // Re-SETUP of a track replaces its transport.
        if let Some(old) = entry.setups.iter().position(|s| s.track == track) {
            let old = entry.setups.remove(old);
            if let Some(src) = old.rtcp_source {
                self.rtcp_sources().remove(&src);
            }
            if let Some(t) = self.tracks.get(track) {
                t.unsubscribe(entry.client);
            }
        }
        if let Some(src) = setup.rtcp_source {
            self.rtcp_sources().insert(src, sid.clone());
        }
        // A track added while playing starts flowing at once; the others keep their numbering.
        if entry.state.state() == State::Playing {
            self.tracks[track].subscribe(entry.client, setup.sink.clone(), None);
        }
        entry.setups.push(setup);
        entry.state.commit(next, now);
        let timeout = entry.state.timeout().as_secs() as u32;
        drop(sessions);
        info!(session = %sid, peer = %ctx.peer, track, transport = %reply.to_value(), "SETUP");
        Ok((
            Response::new(StatusCode::OK).typed(&reply).typed(&Session {
                id: sid,
                timeout: Some(timeout),
            }),
            After::Nothing,
        ))
    }

    /// Picks the first transport alternative we can serve (RFC 2326 §12.39).
    fn choose_transport(
        &self,
        track: usize,
        transport: &Transport,
        ctx: &ConnCtx,
    ) -> Result<(SetupTrack, Transport), Fail> {
        let info = &self.tracks[track].info;
        for spec in &transport.0 {
            if spec.multicast {
                continue;
            }
            match spec.profile {
                TransportProfile::RtpAvp => {
                    let Some((rtp_port, rtcp_port)) = spec.client_port else {
                        continue;
                    };
                    let peer_ip = canonical_ip(ctx.peer.ip());
                    let Some(server_ports) =
                        self.tracks[track].sockets.server_ports(peer_ip.is_ipv6())
                    else {
                        continue;
                    };
                    if rtp_port == 0 {
                        continue;
                    }
                    let rtp = SocketAddr::new(peer_ip, rtp_port);
                    let rtcp = SocketAddr::new(peer_ip, rtcp_port);
                    let reply = TransportSpec {
                        profile: TransportProfile::RtpAvp,
                        multicast: false,
                        client_port: Some((rtp_port, rtcp_port)),
                        server_port: Some(server_ports),
                        ssrc: Some(info.ssrc.0),
                        ..TransportSpec::default()
                    };
                    return Ok((
                        SetupTrack {
                            track,
                            sink: Sink::Udp { rtp, rtcp },
                            rtcp_source: Some(rtcp),
                            resume_seq: None,
                        },
                        Transport(vec![reply]),
                    ));
                }
                TransportProfile::RtpAvpTcp => {
                    let (a, b) = spec
                        .interleaved
                        .unwrap_or((2 * track as u8, 2 * track as u8 + 1));
                    let reply = TransportSpec {
                        profile: TransportProfile::RtpAvpTcp,
                        multicast: false,
                        interleaved: Some((a, b)),
                        ssrc: Some(info.ssrc.0),
                        ..TransportSpec::default()
                    };
                    return Ok((
                        SetupTrack {
                            track,
                            sink: Sink::Tcp {
                                tx: ctx.tx.clone(),
                                rtp_channel: a,
                                rtcp_channel: b,
                            },
                            rtcp_source: None,
                            resume_seq: None,
                        },
                        Transport(vec![reply]),
                    ));
                }
                _ => continue,
            }
        }
        Err(Fail::new(
            StatusCode::UNSUPPORTED_TRANSPORT,
            "supported: RTP/AVP;unicast;client_port=a-b or RTP/AVP/TCP;interleaved=a-b",
        ))
    }

    fn play(&self, req: &Request, now: Instant) -> Handled {
        let _ = self.target(&req.uri)?;
        let sid = session_id(req)?;
        let mut sessions = self.sessions();
        let entry = sessions
            .get_mut(&sid)
            .ok_or_else(|| Fail::new(StatusCode::SESSION_NOT_FOUND, "no such session"))?;
        let next = entry.state.next_state(&req.method).map_err(state_fail)?;
        if let Ok(Some(Range::Npt {
            start: NptTime::Seconds(s),
            ..
        })) = req.headers.get_typed::<Range>()
        {
            if s != 0.0 {
                debug!(session = %sid, "live stream: ignoring PLAY Range start {s}");
            }
        }
        let already_playing = entry.state.state() == State::Playing;
        entry.state.commit(next, now);
        let client = entry.client;
        let wall = SystemTime::now();
        let base = url::content_base(&req.uri);
        let mut infos = Vec::new();
        if !already_playing {
            for s in entry.setups.iter_mut() {
                let track = &self.tracks[s.track];
                let (seq, _) = track.subscribe(client, s.sink.clone(), s.resume_seq.take());
                infos.push(RtpInfoEntry {
                    url: format!("{base}trackID={}", s.track),
                    seq: Some(seq),
                    rtptime: Some(track.rtp_timestamp_at(wall)),
                });
            }
        }
        drop(sessions);
        info!(session = %sid, "PLAY");
        let mut resp = Response::new(StatusCode::OK)
            .typed(&Session {
                id: sid.clone(),
                timeout: Some(self.cfg.session_timeout.as_secs() as u32),
            })
            .typed(&Range::Npt {
                start: NptTime::Seconds(0.0),
                end: None,
            });
        if !infos.is_empty() {
            resp = resp.typed(&RtpInfo(infos));
        }
        let after = if already_playing {
            After::Nothing
        } else {
            After::StartPlaying(sid)
        };
        Ok((resp, after))
    }

    fn pause(&self, req: &Request, now: Instant) -> Handled {
        let _ = self.target(&req.uri)?;
        let sid = session_id(req)?;
        let mut sessions = self.sessions();
        let entry = sessions
            .get_mut(&sid)
            .ok_or_else(|| Fail::new(StatusCode::SESSION_NOT_FOUND, "no such session"))?;
        let next = entry.state.next_state(&req.method).map_err(state_fail)?;
        let client = entry.client;
        for s in entry.setups.iter_mut() {
            s.resume_seq = self.tracks[s.track].unsubscribe(client);
        }
        entry.state.commit(next, now);
        info!(session = %sid, "PAUSE");
        Ok((
            Response::new(StatusCode::OK).typed(&Session {
                id: sid,
                timeout: Some(self.cfg.session_timeout.as_secs() as u32),
            }),
            After::Nothing,
        ))
    }

    fn teardown(&self, req: &Request) -> Handled {
        let _ = self.target(&req.uri)?;
        let sid = session_id(req)?;
        let entry = self
            .sessions()
            .remove(&sid)
            .ok_or_else(|| Fail::new(StatusCode::SESSION_NOT_FOUND, "no such session"))?;
        self.release(&entry, true);
        info!(session = %sid, peer = %entry.peer, "TEARDOWN");
        Ok((Response::new(StatusCode::OK), After::Nothing))
    }

    fn get_parameter(&self, req: &Request, now: Instant) -> Handled {
        let session = req
            .headers
            .get_typed::<Session>()
            .map_err(|e| Fail::new(StatusCode::BAD_REQUEST, &e.to_string()))?;
        let mut resp = Response::new(StatusCode::OK);
        if let Some(s) = session {
            let mut sessions = self.sessions();
            let entry = sessions
                .get_mut(&s.id)
                .ok_or_else(|| Fail::new(StatusCode::SESSION_NOT_FOUND, "no such session"))?;
            entry.state.keepalive(now);
            resp = resp.typed(&Session {
                id: s.id,
                timeout: Some(self.cfg.session_timeout.as_secs() as u32),
            });
        }
        if !req.body.is_empty() {
            // We publish no parameters; an empty GET_PARAMETER is the keep-alive ping.
            return Err(Fail::new(
                StatusCode::PARAMETER_NOT_UNDERSTOOD,
                "no parameters are available",
            ));
        }
        Ok((resp, After::Nothing))
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
        let rest = path
            .strip_prefix(self.cfg.path.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(not_found)?;
        let n = rest
            .strip_prefix("trackID=")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(not_found)?;
        if n < self.tracks.len() {
            Ok(Target::Track(n))
        } else {
            Err(not_found())
        }
    }
}

const SERVER: &str = concat!("livecast/", env!("CARGO_PKG_VERSION"));

enum Target {
    Aggregate,
    Track(usize),
}

type Handled = Result<(Response, After), Fail>;

/// A failed request: status, a reason for the log and body, extra headers.
struct Fail {
    status: StatusCode,
    msg: String,
    headers: Vec<(String, String)>,
}

impl Fail {
    fn new(status: StatusCode, msg: &str) -> Self {
        Self {
            status,
            msg: msg.to_string(),
            headers: Vec::new(),
        }
    }

    fn with_header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
}

fn state_fail(e: livecast_proto::rtsp::session::StateError) -> Fail {
    Fail::new(StatusCode::METHOD_NOT_VALID_IN_THIS_STATE, &e.to_string())
        .with_header("Allow", &allowed_in(e.state))
}

/// Methods valid in a state, for the `Allow` header of a 455 (RFC 2326 §11.3.6).
fn allowed_in(state: State) -> String {
    let m: &[&str] = match state {
        State::Init => &["OPTIONS", "DESCRIBE", "SETUP", "TEARDOWN", "GET_PARAMETER"],
        State::Ready => &[
            "OPTIONS",
            "DESCRIBE",
            "SETUP",
            "PLAY",
            "TEARDOWN",
            "GET_PARAMETER",
        ],
        State::Playing => &[
            "OPTIONS",
            "DESCRIBE",
            "SETUP",
            "PLAY",
            "PAUSE",
            "TEARDOWN",
            "GET_PARAMETER",
        ],
    };
    m.join(", ")
}

fn public_list() -> String {
    PUBLIC
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn error(status: StatusCode, cseq: Option<CSeq>, msg: &str) -> Response {
    let mut r = Response::new(status).header("Server", SERVER);
    if let Some(c) = cseq {
        r = r.typed(&c);
    }
    if !msg.is_empty() {
        r = r.body("text/plain", format!("{msg}\r\n").into_bytes());
    }
    r
}

fn session_id(req: &Request) -> Result<String, Fail> {
    match req.headers.get_typed::<Session>() {
        Ok(Some(s)) => Ok(s.id),
        Ok(None) => Err(Fail::new(
            StatusCode::SESSION_NOT_FOUND,
            "missing Session header",
        )),
        Err(e) => Err(Fail::new(StatusCode::BAD_REQUEST, &e.to_string())),
    }
}

/// IPv4-mapped IPv6 peers (from a dual-stack socket) are IPv4 clients.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists_follow_state() {
        assert!(!allowed_in(State::Init).contains("PLAY"));
        assert!(allowed_in(State::Ready).contains("PLAY"));
        assert!(!allowed_in(State::Ready).contains("PAUSE"));
        assert!(allowed_in(State::Playing).contains("PAUSE"));
    }
}
