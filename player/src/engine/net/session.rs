//! The shell around [`livecast_proto::rtsp::client::Client`]: it owns the TCP connection, the
//! UDP sockets and the per-track receive pipelines, feeds what they bring (with the clock's
//! `now`) into the state machine, and carries out what it asks for. Every protocol decision
//! (which request next, when to fall back to TCP, keep-alive, backoff, when to report) is the
//! state machine's.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use livecast_proto::jitter::JitterConfig;
use livecast_proto::rtsp::client::{
    Client, ClientConfig, ClientEvent, Command, End, Input, NackConfig, Output, SrtpKeys,
    TrackLink, TrackRtpInfo, TransportMode,
};
use livecast_proto::rtsp::Message;
use livecast_proto::srtp;
use livecast_proto::time::Ssrc;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::conn::{self, AbortOnDrop, Conn, Inbound, Stamp};
use super::describe;
use super::tls::ConnectError;
use super::track::{self, TrackRx};
use super::{NetConfig, NetControl, NetEvent, NetStats};
use crate::engine::api::{ConnState, TransportPref};
use crate::engine::unit::{MediaUnit, TrackDesc};

/// A connection being opened.
type Connecting = Pin<Box<dyn Future<Output = Result<Conn, ConnectError>> + Send>>;

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

/// Runs the session until it ends; see [`super::run`].
pub async fn run(
    cfg: NetConfig,
    events: mpsc::Sender<NetEvent>,
    mut control: mpsc::Receiver<NetControl>,
) {
    let ccfg = ClientConfig {
        transport: match cfg.transport {
            TransportPref::Auto => TransportMode::Auto,
            TransportPref::Udp => TransportMode::Udp,
            TransportPref::Tcp => TransportMode::Tcp,
        },
        call: cfg.call,
        user_agent: conn::USER_AGENT.into(),
        playable: describe::playable,
        no_playable_track: "no playable track (need H.264 video, Opus audio or T.140 text)".into(),
        nack: NackConfig {
            enabled: cfg.nack,
            ..if cfg.call {
                NackConfig::call()
            } else {
                NackConfig::watch()
            }
        },
        credentials: cfg.credentials.clone(),
        ..ClientConfig::default()
    };
    let mut sm = Client::new(ccfg, &cfg.url, Instant::now(), rand::random());
    sm.set_key_seed(rand::random());
    let mut sh = Shell::new(cfg, events);
    let mut control_open = true;
    loop {
        let Some(wake) = sh.drive(&mut sm).await else {
            return;
        };
        let wake = sh
            .tracks
            .iter()
            .filter_map(TrackRx::next_deadline)
            .fold(wake, Instant::min);
        tokio::select! {
            biased;
            c = control.recv(), if control_open => {
                let cmd = match c {
                    Some(NetControl::Pause) => Command::Pause,
                    Some(NetControl::Resume) => Command::Resume,
                    Some(NetControl::Stop) => Command::Stop,
                    None => {
                        // The control sender was dropped: that means stop.
                        control_open = false;
                        Command::Stop
                    }
                };
                sm.handle_input(Input::Command { now: Instant::now(), cmd });
            }
            r = connecting(&mut sh.connecting) => {
                sh.connecting = None;
                let now = Instant::now();
                match r {
                    Ok(c) => {
                        sh.conn = Some(c);
                        sm.handle_input(Input::Connected { now });
                    }
                    Err(ConnectError::Io(e)) => {
                        sm.handle_input(Input::ConnectFailed { now, why: e.to_string() })
                    }
                    Err(ConnectError::Untrusted(why)) => sm.handle_input(Input::Untrusted { now, why }),
                }
            }
            m = inbound(&mut sh.conn) => sh.on_inbound(&mut sm, m),
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                sm.handle_input(Input::Timeout(Instant::now()));
            }
        }
        sh.poll_tracks(&mut sm).await;
    }
}

/// The connection being opened, or never.
async fn connecting(c: &mut Option<Connecting>) -> Result<Conn, ConnectError> {
    match c {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// The next message of the connection, or never when there is none.
async fn inbound(c: &mut Option<Conn>) -> Inbound {
    match c {
        Some(c) => c
            .inbox
            .recv()
            .await
            .unwrap_or_else(|| Inbound::Closed("connection closed".into())),
        None => std::future::pending().await,
    }
}

/// Sockets, tasks and receive pipelines of the session.
struct Shell {
    cfg: NetConfig,
    events: mpsc::Sender<NetEvent>,
    /// Nobody listens any more: the state machine was told to stop.
    events_closed: bool,
    conn: Option<Conn>,
    connecting: Option<Connecting>,
    /// The tracks of the last description, in the state machine's order, with the RFC 4588
    /// payload type that retransmits each (where NACK is offered).
    descs: Vec<(TrackDesc, describe::Format, Option<u8>)>,
    /// Per track, in the same order.
    tracks: Vec<TrackRx>,
    links: Vec<Option<Link>>,
    /// Port pairs bound for SETUP, until the response says where media comes from.
    bound: Vec<Option<(UdpSocket, UdpSocket)>>,
    tcp: bool,
    /// SRTP over UDP (RTSPS): one context for what the server sends (its key, every track),
    /// one for the RTCP we send (our key; one context so that our SSRC's SRTCP index never
    /// repeats across tracks).
    srtp: Option<SrtpSession>,
    /// SRTP/SRTCP packets dropped since the session started.
    srtp_rejected: u64,
    /// When the last response arrived (PLAY's anchors `RTP-Info`).
    last_response: Stamp,
    ours: Ssrc,
    cname: String,
    last_stats: (Instant, u64),
    units: Vec<MediaUnit>,
    /// The state machine's round trip, as of the last statistics.
    rtt: Option<Duration>,
}

impl Shell {
    fn new(cfg: NetConfig, events: mpsc::Sender<NetEvent>) -> Self {
        Shell {
            tcp: cfg.transport == TransportPref::Tcp,
            srtp: None,
            srtp_rejected: 0,
            cfg,
            events,
            events_closed: false,
            conn: None,
            connecting: None,
            descs: Vec::new(),
            tracks: Vec::new(),
            links: Vec::new(),
            bound: Vec::new(),
            last_response: Stamp::now(),
            ours: Ssrc(rand::random()),
            cname: format!("player-{:08x}@{}", rand::random::<u32>(), hostname()),
            last_stats: (Instant::now(), 0),
            units: Vec::new(),
            rtt: None,
        }
    }

    /// Sends an event; if nobody listens, the session stops (politely).
    async fn emit(&mut self, sm: &mut Client, ev: NetEvent) {
        if self.events_closed {
            return;
        }
        if self.events.send(ev).await.is_err() {
            self.events_closed = true;
            let now = Instant::now();
            sm.handle_input(Input::Command {
                now,
                cmd: Command::Stop,
            });
        }
    }

    async fn state(&mut self, sm: &mut Client, s: ConnState) {
        self.emit(sm, NetEvent::State(s)).await;
    }

    /// Carries out everything the state machine asks for; returns when it wants to be
    /// woken up, or `None` once it has ended.
    async fn drive(&mut self, sm: &mut Client) -> Option<Instant> {
        loop {
            match sm.poll_output() {
                Output::Timeout(t) => return (!sm.is_ended()).then_some(t),
                Output::Connect { host, port, tls } => {
                    self.close();
                    let tls = tls.then(|| self.cfg.tls.clone());
                    self.connecting = Some(Box::pin(async move {
                        Conn::connect(&host, port, tls.as_ref()).await
                    }));
                }
                Output::Disconnect => {
                    self.close();
                    self.connecting = None;
                }
                Output::Transmit(req) => {
                    let what = format!("sending {}", req.method);
                    let sent = match self.conn.as_mut() {
                        Some(c) => c.send(&req).await,
                        None => continue,
                    };
                    if let Err(e) = sent {
                        self.lost(sm, format!("{what}: {e}"));
                    }
                }
                Output::Respond(resp) => {
                    let sent = match self.conn.as_mut() {
                        Some(c) => c.send_response(&resp).await,
                        None => continue,
                    };
                    if let Err(e) = sent {
                        self.lost(sm, format!("answering the server: {e}"));
                    }
                }
                Output::BindUdp { track } => self.bind(sm, track),
                Output::Event(ev) => {
                    if let Some(end) = self.on_event(sm, ev).await {
                        let state = match end {
                            End::Stopped => ConnState::Ended,
                            End::Failed(msg) => {
                                tracing::warn!(url = %self.cfg.url, "giving up: {msg}");
                                ConnState::Failed(msg)
                            }
                            End::Unauthorized(msg) => {
                                tracing::warn!(url = %self.cfg.url, "{msg}");
                                ConnState::Unauthorized(msg)
                            }
                            End::CallEnded(reason) => {
                                tracing::info!(url = %self.cfg.url, "call ended: {reason}");
                                ConnState::CallEnded(reason)
                            }
                        };
                        self.close();
                        self.state(sm, state).await;
                        return None;
                    }
                }
            }
        }
    }

    /// Closes the connection and every UDP socket.
    fn close(&mut self) {
        self.conn = None;
        self.links.clear();
        self.bound.clear();
        self.srtp = None;
    }

    /// The connection failed under us.
    fn lost(&mut self, sm: &mut Client, why: String) {
        self.close();
        sm.handle_input(Input::ConnectionLost {
            now: Instant::now(),
            why,
            by_peer: false,
        });
    }

    fn bind(&mut self, sm: &mut Client, track: usize) {
        let now = Instant::now();
        let Some(ip) = self.conn.as_ref().map(|c| c.local.ip()) else {
            return;
        };
        match conn::bind_udp_pair(ip) {
            Ok((rtp, rtcp)) => {
                let port = |s: &UdpSocket| s.local_addr().map(|a| a.port()).unwrap_or(0);
                let (rtp_port, rtcp_port) = (port(&rtp), port(&rtcp));
                if self.bound.len() <= track {
                    self.bound.resize_with(track + 1, || None);
                }
                self.bound[track] = Some((rtp, rtcp));
                sm.handle_input(Input::UdpBound {
                    now,
                    track,
                    rtp_port,
                    rtcp_port,
                });
            }
            Err(e) => sm.handle_input(Input::UdpBindFailed {
                now,
                track,
                why: format!("cannot open UDP ports on {ip}: {e}"),
            }),
        }
    }

    /// Acts on one event; returns the end, if it is one.
    async fn on_event(&mut self, sm: &mut Client, ev: ClientEvent) -> Option<End> {
        match ev {
            ClientEvent::Connecting => self.state(sm, ConnState::Connecting).await,
            ClientEvent::Calling { attempt, reason } => {
                if attempt > 0 {
                    tracing::debug!(url = %self.cfg.url, attempt, "calling: {reason}");
                }
                self.state(sm, ConnState::Calling { attempt, reason }).await;
            }
            ClientEvent::Reconnecting {
                attempt,
                reason,
                retry_in,
            } => {
                tracing::debug!(url = %self.cfg.url, attempt, ?retry_in, "reconnecting: {reason}");
                self.state(
                    sm,
                    ConnState::Reconnecting {
                        attempt,
                        reason,
                        retry_in,
                    },
                )
                .await;
            }
            ClientEvent::Described {
                sdp,
                session,
                tracks,
                ..
            } => {
                self.descs = describe::describe_tracks(&session, &tracks)
                    .into_iter()
                    .zip(&tracks)
                    .map(|((d, f), t)| {
                        let rtx = session
                            .media
                            .get(t.media_index)
                            .filter(|_| t.nack && self.cfg.nack)
                            .and_then(|m| m.rtx_for(d.payload_type));
                        (d, f, rtx)
                    })
                    .collect();
                let tracks = self.descs.iter().map(|(d, _, _)| d.clone()).collect();
                self.emit(sm, NetEvent::Described { tracks, sdp }).await;
            }
            ClientEvent::TracksReset { tcp } => self.reset_tracks(tcp),
            ClientEvent::TransportChosen {
                track,
                link,
                ssrc,
                srtp,
            } => {
                if let Some(keys) = srtp {
                    // The same keys for every track of a connection: one pair of contexts.
                    if self.srtp.as_ref().is_none_or(|s| s.keys != keys) {
                        self.srtp = Some(SrtpSession::new(keys));
                    }
                }
                self.set_link(track, link, ssrc);
            }
            ClientEvent::Playing { rtp_info } => self.on_playing(&rtp_info),
            ClientEvent::Streaming { tcp } => {
                self.state(sm, ConnState::Streaming { tcp }).await;
            }
            ClientEvent::Paused => self.state(sm, ConnState::ServerPaused).await,
            ClientEvent::NatPunch { track } => self.punch(track).await,
            ClientEvent::SendReceiverReports => {
                let now = Instant::now();
                for i in 0..self.tracks.len() {
                    let rr = self.tracks[i].receiver_report(self.ours, &self.cname, now);
                    self.send_rtcp(sm, i, rr).await;
                }
            }
            ClientEvent::SendBye => {
                let bye = track::bye(self.ours, &self.cname);
                for i in 0..self.links.len() {
                    self.send_rtcp(sm, i, bye.clone()).await;
                }
            }
            ClientEvent::RequestKeyframe { track } => {
                let now = Instant::now();
                let (ours, cname) = (self.ours, &self.cname);
                let pli = self
                    .tracks
                    .get_mut(track)
                    .and_then(|t| t.keyframe_request(ours, cname, now));
                if let Some(pli) = pli {
                    tracing::debug!(track, "picture lost: asking for a keyframe (RTCP PLI)");
                    self.send_rtcp(sm, track, pli).await;
                }
            }
            ClientEvent::SendNack { track, seqs } => {
                let now = Instant::now();
                let (ours, cname) = (self.ours, &self.cname);
                let nack = self
                    .tracks
                    .get_mut(track)
                    .and_then(|t| t.nack_request(ours, cname, now, &seqs));
                if let Some(nack) = nack {
                    tracing::trace!(track, ?seqs, "asking for retransmissions (RTCP NACK)");
                    self.send_rtcp(sm, track, nack).await;
                }
            }
            ClientEvent::KeepAliveSent => tracing::trace!(url = %self.cfg.url, "keep-alive"),
            ClientEvent::StatsDue => {
                self.rtt = sm.round_trip();
                let stats = self.stats(Instant::now());
                self.emit(sm, NetEvent::Stats(stats)).await;
            }
            ClientEvent::Ended(end) => return Some(end),
        }
        None
    }

    /// Fresh receive pipelines for every track (SETUP starts again).
    fn reset_tracks(&mut self, tcp: bool) {
        if tcp && !self.tcp {
            tracing::info!(url = %self.cfg.url, "switching to interleaved TCP");
        }
        self.tcp = tcp;
        let low = self.cfg.low_latency;
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
                max_delay: Duration::from_millis(200),
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
            .map(|(d, f, rtx)| {
                let mut t = TrackRx::new(d.clone(), f.clone(), jitter);
                t.set_rtx(*rtx);
                t
            })
            .collect();
        self.links = (0..self.tracks.len()).map(|_| None).collect();
        self.bound.clear();
        self.srtp = None;
        self.last_stats = (Instant::now(), 0);
    }

    fn set_link(&mut self, track: usize, link: TrackLink, ssrc: Option<u32>) {
        let Some(t) = self.tracks.get_mut(track) else {
            return;
        };
        t.set_ssrc(ssrc);
        let link = match link {
            TrackLink::Tcp { rtp, rtcp } => Link::Tcp { rtp, rtcp },
            TrackLink::Udp {
                source,
                server_ports,
            } => {
                let (Some(conn), Some((rtp, rtcp))) = (
                    self.conn.as_ref(),
                    self.bound.get_mut(track).and_then(Option::take),
                ) else {
                    return;
                };
                let server_ip: IpAddr = source.unwrap_or(conn.peer.ip());
                let (rtp, rtcp) = (Arc::new(rtp), Arc::new(rtcp));
                let tx = conn.inbox_sender();
                let readers = [
                    conn::spawn_udp_reader(rtp.clone(), track, false, Some(server_ip), tx.clone()),
                    conn::spawn_udp_reader(rtcp.clone(), track, true, Some(server_ip), tx),
                ];
                Link::Udp {
                    rtp,
                    rtcp,
                    server_rtp: server_ports.map(|(p, _)| SocketAddr::new(server_ip, p)),
                    server_rtcp: server_ports.map(|(_, p)| SocketAddr::new(server_ip, p)),
                    _readers: readers,
                }
            }
        };
        if let Some(l) = self.links.get_mut(track) {
            *l = Some(link);
        }
    }

    fn on_playing(&mut self, rtp_info: &[TrackRtpInfo]) {
        let wall_us = self.last_response.wall_us;
        for info in rtp_info {
            let Some(t) = self.tracks.get_mut(info.track) else {
                continue;
            };
            if let Some(rtptime) = info.rtptime {
                t.on_rtp_info(rtptime, wall_us);
            }
            if let Some(seq) = info.seq {
                t.on_rtp_info_seq(seq);
            }
        }
    }

    fn on_inbound(&mut self, sm: &mut Client, m: Inbound) {
        match m {
            Inbound::Rtsp(Message::Data(f), stamp) => {
                let found = self.links.iter().enumerate().find_map(|(i, l)| match l {
                    Some(Link::Tcp { rtp, .. }) if *rtp == f.channel => Some((i, false)),
                    Some(Link::Tcp { rtcp, .. }) if *rtcp == f.channel => Some((i, true)),
                    _ => None,
                });
                match found {
                    Some((i, rtcp)) => self.on_packet(sm, i, rtcp, &f.payload, stamp),
                    None => tracing::trace!(channel = f.channel, "frame on an unknown channel"),
                }
            }
            Inbound::Rtsp(Message::Response(resp), stamp) => {
                self.last_response = stamp;
                sm.handle_input(Input::Response {
                    now: stamp.at,
                    resp,
                });
            }
            Inbound::Rtsp(Message::Request(req), stamp) => {
                sm.handle_input(Input::Request { now: stamp.at, req });
            }
            Inbound::Udp {
                track,
                rtcp,
                data,
                stamp,
            } => {
                // Datagrams queued before a switch to TCP are stale.
                if !matches!(self.links.get(track), Some(Some(Link::Udp { .. }))) {
                    return;
                }
                match self.srtp.as_mut().map(|s| s.unprotect(rtcp, &data)) {
                    None => self.on_packet(sm, track, rtcp, &data, stamp),
                    Some(Ok(clear)) => self.on_packet(sm, track, rtcp, &clear, stamp),
                    Some(Err(e)) => {
                        self.srtp_rejected += 1;
                        tracing::debug!(track, rtcp, len = data.len(), "dropped: {e}");
                    }
                }
            }
            Inbound::Closed(why) => {
                self.close();
                let by_peer = why == conn::CLOSED_BY_SERVER;
                sm.handle_input(Input::ConnectionLost {
                    now: Instant::now(),
                    why,
                    by_peer,
                });
            }
        }
    }

    fn on_packet(&mut self, sm: &mut Client, track: usize, rtcp: bool, data: &[u8], stamp: Stamp) {
        let Some(t) = self.tracks.get_mut(track) else {
            return;
        };
        let now = stamp.at;
        if rtcp {
            let before = t.bye;
            t.on_rtcp(data, now);
            if t.bye && !before {
                sm.handle_input(Input::Bye { now, track });
            }
        } else if t.on_rtp(data, now, stamp.wall_us) {
            sm.handle_input(Input::MediaSeen { now, track });
            let until = now + t.jitter_delay();
            for g in t.take_gap_events() {
                sm.handle_input(if g.missing {
                    Input::Gap {
                        now,
                        track,
                        seq: g.seq,
                        until,
                    }
                } else {
                    Input::GapFilled {
                        now,
                        track,
                        seq: g.seq,
                        retransmission: g.retransmission,
                    }
                });
            }
        }
    }

    /// Releases due units, and tells the state machine of pictures lost and back.
    async fn poll_tracks(&mut self, sm: &mut Client) {
        let now = Instant::now();
        let wall = conn::wall_us(SystemTime::now());
        let mut units = std::mem::take(&mut self.units);
        for (track, t) in self.tracks.iter_mut().enumerate() {
            t.set_retransmission_wait(sm.retransmission_wait(track));
            t.poll(now, wall, &mut units);
            match t.take_picture_change() {
                Some(true) => sm.handle_input(Input::PictureLost { now, track }),
                Some(false) => sm.handle_input(Input::KeyframeArrived { now, track }),
                None => {}
            }
        }
        for u in units.drain(..) {
            self.emit(sm, NetEvent::Unit(u)).await;
        }
        self.units = units;
    }

    /// Opens NAT bindings for a UDP track: a receiver report from each of our ports to the
    /// server's.
    async fn punch(&mut self, i: usize) {
        let (
            Some(t),
            Some(Some(Link::Udp {
                rtp,
                rtcp,
                server_rtp,
                server_rtcp,
                ..
            })),
        ) = (self.tracks.get_mut(i), self.links.get(i))
        else {
            return;
        };
        let rr = t.receiver_report(self.ours, &self.cname, Instant::now());
        for (sock, to) in [(rtp, server_rtp), (rtcp, server_rtcp)] {
            if let Some(to) = to {
                let rr = match self.srtp.as_mut() {
                    Some(s) => match s.send.protect_rtcp(&rr) {
                        Some(p) => p,
                        None => continue,
                    },
                    None => rr.clone(),
                };
                if let Err(e) = sock.send_to(&rr, to).await {
                    tracing::debug!(track = i, %to, "NAT punch: {e}");
                }
            }
        }
    }

    /// Sends an RTCP compound on track `i`'s RTCP port or interleaved channel.
    async fn send_rtcp(&mut self, sm: &mut Client, i: usize, compound: Vec<u8>) {
        match self.links.get(i) {
            Some(Some(Link::Udp {
                rtcp,
                server_rtcp: Some(to),
                ..
            })) => {
                let compound = match self.srtp.as_mut() {
                    Some(s) => match s.send.protect_rtcp(&compound) {
                        Some(p) => p,
                        None => return,
                    },
                    None => compound,
                };
                if let Err(e) = rtcp.send_to(&compound, to).await {
                    tracing::debug!(track = i, %to, "RTCP: {e}");
                }
            }
            Some(Some(Link::Tcp { rtcp, .. })) => {
                let channel = *rtcp;
                let sent = match self.conn.as_mut() {
                    Some(c) => c.send_frame(channel, compound).await,
                    None => return,
                };
                if let Err(e) = sent {
                    self.lost(sm, format!("sending RTCP: {e}"));
                }
            }
            _ => {}
        }
    }

    fn rtp_bytes(&self) -> u64 {
        self.tracks.iter().map(|t| t.counters.rtp_bytes).sum()
    }

    fn stats(&mut self, now: Instant) -> NetStats {
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
        NetStats {
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
            srtp: self.srtp.is_some() && !self.tcp,
            srtp_rejected: self.srtp_rejected,
            video_delivery: self.tracks.get(video).and_then(|t| t.delivery()),
            jitter_delay_ms: self
                .tracks
                .get(video)
                .map_or(0.0, |t| t.jitter_delay().as_secs_f64() * 1e3),
            nack_sent: self.tracks.iter().map(|t| t.counters.nacked).sum(),
            retransmissions_received: self.tracks.iter().map(|t| t.counters.rtx_packets).sum(),
            recovered: self.tracks.iter().map(|t| t.counters.recovered).sum(),
            dropped_pictures: self.tracks.iter().map(|t| t.dropped_pictures()).sum(),
            rtt_ms: self.rtt.map(|d| d.as_secs_f64() * 1e3),
        }
    }
}

/// The SRTP contexts of an RTSPS session over UDP.
struct SrtpSession {
    keys: SrtpKeys,
    /// The server's key: unprotects its SRTP and SRTCP.
    receive: srtp::Context,
    /// Ours: protects our SRTCP.
    send: srtp::Context,
}

impl SrtpSession {
    fn new(keys: SrtpKeys) -> Self {
        SrtpSession {
            keys,
            receive: srtp::Context::new(&keys.receive.0, &keys.receive.1),
            send: srtp::Context::new(&keys.send.0, &keys.send.1),
        }
    }

    /// A datagram from the server's RTP or RTCP port, checked and decrypted.
    fn unprotect(&mut self, rtcp: bool, data: &[u8]) -> Result<Vec<u8>, srtp::SrtpError> {
        if rtcp {
            self.receive.unprotect_rtcp(data)
        } else {
            self.receive.unprotect_rtp(data)
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> SrtpKeys {
        SrtpKeys {
            receive: ([1; 16], [2; 14]),
            send: ([3; 16], [4; 14]),
        }
    }

    /// What the server sends: RTP and RTCP protected with the receive key.
    fn server() -> srtp::Context {
        let k = keys().receive;
        srtp::Context::new(&k.0, &k.1)
    }

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 96, 0, 0, 0, 0, 0, 1, 0, 0, 0, 5];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0x65; 100]);
        p
    }

    #[test]
    fn tampered_short_and_replayed_packets_are_refused_without_panicking() {
        let mut s = SrtpSession::new(keys());
        let mut tx = server();
        let good = tx.protect_rtp(&rtp(1)).unwrap();
        assert_eq!(s.unprotect(false, &good).unwrap(), rtp(1));
        assert!(s.unprotect(false, &good).is_err(), "a replay");
        // Every single bit flipped somewhere in the packet fails authentication.
        let next = tx.protect_rtp(&rtp(2)).unwrap();
        for i in 0..next.len() {
            let mut bad = next.clone();
            bad[i] ^= 0x10;
            assert!(s.unprotect(false, &bad).is_err(), "byte {i}");
        }
        assert_eq!(s.unprotect(false, &next).unwrap(), rtp(2));
        // Truncations and garbage of every length, as RTP and as RTCP.
        for n in 0..next.len() {
            assert!(s.unprotect(false, &next[..n]).is_err());
            assert!(s.unprotect(true, &next[..n]).is_err());
            assert!(s.unprotect(true, &vec![0x81; n]).is_err());
        }
        // Our RTCP is protected with our key, not the server's.
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 9];
        let sent = s.send.protect_rtcp(&rr).unwrap();
        assert!(server().unprotect_rtcp(&sent).is_err());
        let k = keys().send;
        let mut theirs = srtp::Context::new(&k.0, &k.1);
        assert_eq!(theirs.unprotect_rtcp(&sent).unwrap(), rr);
    }
}
