//! The RTSP client and server state machines talking to each other through a seeded network
//! emulator, in virtual time: ten minutes of a session (keep-alives, receiver reports, loss,
//! keyframe requests, expiry, reconnection, the TCP fallback) run in milliseconds, and every
//! assertion is exact because the same seed gives the same run.
//!
//! The world around the two machines is as small as it can be: a TCP connection is an
//! in-order stream that can break, UDP is datagrams that can be lost or reordered, the media
//! source sends one packet per video frame (30 a second, a keyframe every 2 s or when asked,
//! at most one per 500 ms as the server's encoder does) and one per 20 ms of audio, and the
//! client's receive side reports what the player's would: an accepted packet, a damaged
//! picture after a gap in video, a whole keyframe.

mod netem;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use livecast_proto::rtcp::{self, Pli, ReceiverReport, RtcpPacket};
use livecast_proto::rtsp::client::{self, Client, ClientConfig, ClientEvent, TrackLink};
use livecast_proto::rtsp::server::{
    self, ClientId, ConnId, EndReason, MediaSink, RtcpSource, RtpClock, Server, ServerConfig,
    ServerEvent, TrackConfig, Unsubscribed,
};
use livecast_proto::rtsp::{Method, Request, Response};
use livecast_proto::sdp::{Attribute, MediaDescription, Origin, SessionDescription};
use livecast_proto::time::Ssrc;
use netem::{Link, LinkConfig};

const SEC: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);
const SERVER_IP: &str = "198.51.100.7";
const CLIENT_IP: &str = "192.0.2.10";
const URL: &str = "rtsp://198.51.100.7:8554/live";
const VIDEO_FRAME: Duration = Duration::from_nanos(1_000_000_000 / 30);
const AUDIO_FRAME: Duration = Duration::from_millis(20);
const GOP: Duration = Duration::from_secs(2);
const KEYFRAME_LIMIT: Duration = Duration::from_millis(500);
/// How long a TCP connect to an unreachable host takes to fail.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

fn server_config() -> ServerConfig {
    let media = |kind: &str, pt: &str, map: &str, track: usize| MediaDescription {
        media: kind.into(),
        proto: "RTP/AVP".into(),
        formats: vec![pt.into()],
        attributes: vec![
            Attribute::new("rtpmap", format!("{pt} {map}")),
            Attribute::new("control", format!("trackID={track}")),
        ],
        ..MediaDescription::default()
    };
    let sdp = SessionDescription {
        origin: Origin {
            session_id: "1".into(),
            session_version: "1".into(),
            ..Origin::default()
        },
        session_name: "Livecast".into(),
        connection: Some("IN IP4 0.0.0.0".into()),
        attributes: vec![Attribute::new("control", "*")],
        media: vec![
            media("video", "96", "H264/90000", 0),
            media("audio", "97", "opus/48000/2", 1),
        ],
        ..SessionDescription::default()
    };
    let track = |ssrc, clock_rate, port| TrackConfig {
        ssrc: Ssrc(ssrc),
        clock: RtpClock {
            rtp_base: 0,
            clock_rate,
            wall_epoch: SystemTime::UNIX_EPOCH,
        },
        server_ports_v4: Some((port, port + 1)),
        server_ports_v6: None,
        nack: false,
        rtx_payload_type: None,
    };
    ServerConfig::new(
        sdp,
        vec![track(0x1111, 90_000, 6970), track(0x2222, 48_000, 6972)],
    )
}

/// What crosses from the server to the client. What travels on a connection names it, and
/// whatever arrives for a connection the client has closed is dropped, as a kernel would.
#[derive(Clone, Debug)]
enum Down {
    Response(ConnId, Response),
    /// An RTP packet of `track` with its sequence number, over UDP (no connection) or
    /// interleaved.
    Media {
        conn: Option<ConnId>,
        track: usize,
        seq: u16,
        key: bool,
    },
    /// The server closed the connection (FIN after what it wrote).
    Fin(ConnId),
}

/// What crosses from the client to the server.
#[derive(Clone, Debug)]
enum Up {
    Request(ConnId, Request),
    Rtcp { source: RtcpSource, data: Vec<u8> },
    Fin(ConnId),
}

/// One subscription the server's fan-out carries out.
#[derive(Clone, Debug)]
struct Sub {
    sink: MediaSink,
    /// Sequence number of the next packet this client gets.
    next_seq: u16,
    /// Video: waiting for a keyframe before the first packet.
    started: bool,
}

/// What the client's receive side knows about one track.
#[derive(Clone, Debug, Default)]
struct Rx {
    last_seq: Option<u16>,
    packets: u64,
    damaged: bool,
}

/// The record of a run, for assertions.
#[derive(Debug, Default)]
struct Log {
    /// Requests as the server received them: (time since start, method).
    requests: Vec<(Duration, Method)>,
    sessions_started: Vec<Duration>,
    sessions_ended: Vec<(Duration, EndReason)>,
    keyframe_requests: Vec<Duration>,
    keyframes_made: Vec<Duration>,
    client_events: Vec<(Duration, ClientEvent)>,
    connects: Vec<Duration>,
    /// Last time the server got something that keeps the session alive.
    last_keepalive_in: Option<Duration>,
    media_received: [u64; 2],
    /// Video pictures damaged (true) and whole again (false), as the receive side saw them.
    damage: Vec<(Duration, bool)>,
    /// (time, track, seq) of the first packet after every Playing event.
    resumed_at_seq: Vec<(Duration, usize, u16)>,
    last_seq_before_pause: [Option<u16>; 2],
}

struct World {
    t0: Instant,
    now: Instant,
    client: Client,
    server: Server,
    up: Link<Up>,
    down: Link<Down>,
    /// The current connection as the server numbers it, once it is up.
    conn: Option<ConnId>,
    /// Both machines were woken at `now`: their next wake-up must be later.
    woke: (bool, bool),
    next_conn: u64,
    /// A connect in progress: when it completes (or fails).
    connecting: Option<(Instant, bool)>,
    /// UDP port pair of each client track, once bound.
    client_ports: BTreeMap<usize, (u16, u16)>,
    links: BTreeMap<usize, TrackLink>,
    subs: HashMap<(ClientId, usize), Sub>,
    /// Server-side numbering per track (what the fan-out rewrites per client).
    next_video: Instant,
    next_audio: Instant,
    last_keyframe: Option<Instant>,
    keyframe_wanted: bool,
    rx: [Rx; 2],
    client_timeout: Option<Instant>,
    server_timeout: Option<Instant>,
    /// Connections fail while the path is cut.
    cut: bool,
    expect_resume: [bool; 2],
    log: Log,
}

impl World {
    fn new(seed: u64, cfg: ClientConfig, path: LinkConfig) -> Self {
        let t0 = Instant::now();
        let server = Server::new(server_config(), seed, t0);
        let client = Client::new(cfg, URL, t0, seed.wrapping_add(1));
        World {
            t0,
            now: t0,
            client,
            server,
            up: Link::new(path.clone(), seed.wrapping_add(2)),
            down: Link::new(path, seed.wrapping_add(3)),
            conn: None,
            woke: (false, false),
            next_conn: 1,
            connecting: None,
            client_ports: BTreeMap::new(),
            links: BTreeMap::new(),
            subs: HashMap::new(),
            next_video: t0,
            next_audio: t0,
            last_keyframe: None,
            keyframe_wanted: true,
            rx: Default::default(),
            client_timeout: None,
            server_timeout: None,
            cut: false,
            expect_resume: [false; 2],
            log: Log::default(),
        }
    }

    fn at(&self) -> Duration {
        self.now - self.t0
    }

    fn server_addr(port: u16) -> SocketAddr {
        SocketAddr::new(SERVER_IP.parse().unwrap(), port)
    }

    fn client_ip() -> IpAddr {
        CLIENT_IP.parse().unwrap()
    }

    /// Runs until `until` (since the start), calling `script` at every step so a test can
    /// cut the path, send commands and so on at chosen times.
    fn run_until(&mut self, until: Duration) {
        let end = self.t0 + until;
        loop {
            self.pump();
            let now = self.now;
            if self.woke.0 {
                let t = self
                    .client_timeout
                    .expect("the client names its next wake-up");
                assert!(
                    t > now,
                    "the client asks to wake at {t:?}, not after {now:?}"
                );
            }
            if self.woke.1 {
                let t = self
                    .server_timeout
                    .expect("the server names its next wake-up");
                assert!(
                    t > now,
                    "the server asks to wake at {t:?}, not after {now:?}"
                );
            }
            self.woke = (false, false);
            let next = [
                self.client_timeout,
                self.server_timeout,
                self.up.next_due(),
                self.down.next_due(),
                self.connecting.map(|c| c.0),
                Some(self.next_video.min(self.next_audio)),
            ]
            .into_iter()
            .flatten()
            .min()
            .expect("the media clock always has a next tick");
            if next > end {
                self.now = end;
                return;
            }
            self.now = self.now.max(next);
            self.step();
        }
    }

    /// Everything due at `now`.
    fn step(&mut self) {
        let now = self.now;
        if let Some((t, ok)) = self.connecting {
            if t <= now {
                self.connecting = None;
                if ok {
                    let conn = ConnId(self.next_conn);
                    self.next_conn += 1;
                    self.conn = Some(conn);
                    let opened = server::Input::ConnectionOpened {
                        now,
                        conn,
                        peer: SocketAddr::new(Self::client_ip(), 40_000 + conn.0 as u16),
                        local: Self::server_addr(8554),
                    };
                    self.server.handle_input(opened).unwrap();
                    self.client.handle_input(client::Input::Connected { now });
                } else {
                    self.client.handle_input(client::Input::ConnectFailed {
                        now,
                        why: "timed out".into(),
                    });
                }
            }
        }
        while let Some(d) = self.down.poll(now) {
            self.deliver_down(d);
        }
        while let Some(u) = self.up.poll(now) {
            self.deliver_up(u);
        }
        if self.client_timeout.is_some_and(|t| t <= now) {
            self.client_timeout = None;
            self.woke.0 = true;
            self.client.handle_input(client::Input::Timeout(now));
        }
        if self.server_timeout.is_some_and(|t| t <= now) {
            self.server_timeout = None;
            self.woke.1 = true;
            self.server
                .handle_input(server::Input::Timeout(now))
                .unwrap();
        }
        if self.next_video <= now {
            self.next_video += VIDEO_FRAME;
            let gop_due = self.last_keyframe.is_none_or(|k| now >= k + GOP);
            let asked = self.keyframe_wanted
                && self.last_keyframe.is_none_or(|k| now >= k + KEYFRAME_LIMIT);
            let key = gop_due || asked;
            if key {
                self.last_keyframe = Some(now);
                self.keyframe_wanted = false;
                self.log.keyframes_made.push(self.at());
            }
            self.send_media(0, key);
        }
        if self.next_audio <= now {
            self.next_audio += AUDIO_FRAME;
            self.send_media(1, true);
        }
    }

    /// The fan-out: one packet of `track` to every subscriber.
    fn send_media(&mut self, track: usize, key: bool) {
        let now = self.now;
        let mut sends = Vec::new();
        for ((_, t), sub) in self.subs.iter_mut() {
            if *t != track {
                continue;
            }
            if !sub.started && !key {
                continue;
            }
            sub.started = true;
            let seq = sub.next_seq;
            sub.next_seq = seq.wrapping_add(1);
            sends.push((sub.sink, seq));
        }
        for (sink, seq) in sends {
            let conn = match sink {
                MediaSink::Udp { .. } => None,
                MediaSink::Interleaved { conn, .. } => Some(conn),
            };
            let item = Down::Media {
                conn,
                track,
                seq,
                key,
            };
            if conn.is_some() {
                self.down.send_stream(now, item);
            } else {
                self.down.send_datagram(now, item);
            }
        }
    }

    fn deliver_down(&mut self, d: Down) {
        let now = self.now;
        let current = self.conn;
        let open = |c: ConnId| current == Some(c);
        match d {
            Down::Response(c, resp) if open(c) => self
                .client
                .handle_input(client::Input::Response { now, resp }),
            Down::Fin(c) if open(c) => {
                self.conn = None;
                self.client.handle_input(client::Input::ConnectionLost {
                    now,
                    why: "closed by the server".into(),
                    by_peer: true,
                })
            }
            Down::Response(..) | Down::Fin(_) => {}
            Down::Media {
                conn,
                track,
                seq,
                key,
            } => {
                if conn.is_some_and(|c| !open(c)) || !self.links.contains_key(&track) {
                    return; // for a connection or a socket the client has closed
                }
                if self.expect_resume[track] {
                    self.expect_resume[track] = false;
                    self.log.resumed_at_seq.push((self.at(), track, seq));
                }
                let rx = &mut self.rx[track];
                let gap = rx.last_seq.is_some_and(|l| seq != l.wrapping_add(1));
                rx.last_seq = Some(seq);
                rx.packets += 1;
                self.log.media_received[track] += 1;
                self.client
                    .handle_input(client::Input::MediaSeen { now, track });
                if track == 0 {
                    if key && !gap {
                        if self.rx[0].damaged {
                            self.rx[0].damaged = false;
                            self.log.damage.push((self.at(), false));
                            self.client
                                .handle_input(client::Input::KeyframeArrived { now, track });
                        }
                    } else if gap && !self.rx[0].damaged {
                        self.rx[0].damaged = true;
                        self.log.damage.push((self.at(), true));
                        self.client
                            .handle_input(client::Input::PictureLost { now, track });
                    }
                }
            }
        }
    }

    fn deliver_up(&mut self, u: Up) {
        let now = self.now;
        match u {
            Up::Request(conn, req) => {
                self.log.requests.push((self.at(), req.method.clone()));
                if req.headers.get("Session").is_some() {
                    self.log.last_keepalive_in = Some(self.at());
                }
                let input = server::Input::Request {
                    now,
                    wall: SystemTime::UNIX_EPOCH + (now - self.t0),
                    conn,
                    req,
                };
                // A request on a connection the server has closed is the shell's to drop.
                let _ = self.server.handle_input(input);
            }
            Up::Rtcp { source, data } => {
                self.log.last_keepalive_in = Some(self.at());
                let input = server::Input::Rtcp { now, source, data };
                // RTCP on a connection the server has closed is the shell's to drop.
                let _ = self.server.handle_input(input);
            }
            Up::Fin(conn) => {
                let closed = server::Input::ConnectionClosed { now, conn };
                // The server may have closed it first.
                let _ = self.server.handle_input(closed);
            }
        }
    }

    /// Drains both machines' outputs, carrying them out.
    fn pump(&mut self) {
        loop {
            let mut busy = false;
            loop {
                match self.client.poll_output() {
                    client::Output::Timeout(t) => {
                        self.client_timeout = Some(t);
                        break;
                    }
                    o => {
                        busy = true;
                        self.on_client_output(o);
                    }
                }
            }
            loop {
                match self.server.poll_output() {
                    server::Output::Timeout(t) => {
                        self.server_timeout = Some(t);
                        break;
                    }
                    o => {
                        busy = true;
                        self.on_server_output(o);
                    }
                }
            }
            if !busy {
                return;
            }
        }
    }

    fn on_client_output(&mut self, o: client::Output) {
        let now = self.now;
        match o {
            client::Output::Connect { .. } => {
                self.log.connects.push(self.at());
                self.drop_connection_client_side();
                self.connecting = Some(if self.cut {
                    (now + CONNECT_TIMEOUT, false)
                } else {
                    // SYN, SYN-ACK: one round trip.
                    (now + self.up.cfg.delay * 2, true)
                });
            }
            client::Output::Disconnect => self.drop_connection_client_side(),
            client::Output::Transmit(req) => {
                if let Some(conn) = self.conn {
                    self.up.send_stream(now, Up::Request(conn, req));
                }
            }
            client::Output::Respond(_) => {}
            client::Output::BindUdp { track } => {
                let rtp = 50_000 + 2 * track as u16;
                self.client_ports.insert(track, (rtp, rtp + 1));
                self.client.handle_input(client::Input::UdpBound {
                    now,
                    track,
                    rtp_port: rtp,
                    rtcp_port: rtp + 1,
                });
            }
            client::Output::Event(e) => {
                self.on_client_event(&e);
                self.log.client_events.push((self.at(), e));
            }
            client::Output::Timeout(_) => unreachable!("handled by pump"),
        }
    }

    /// The client closes its TCP connection and UDP sockets: the server hears a FIN unless
    /// the path is cut.
    fn drop_connection_client_side(&mut self) {
        self.links.clear();
        self.rx = Default::default();
        if let Some(conn) = self.conn.take() {
            self.up.send_stream(self.now, Up::Fin(conn));
        }
    }

    fn on_client_event(&mut self, e: &ClientEvent) {
        let now = self.now;
        match e {
            ClientEvent::TracksReset { .. } => {
                self.links.clear();
                self.rx = Default::default();
            }
            ClientEvent::TransportChosen { track, link, .. } => {
                self.links.insert(*track, link.clone());
            }
            ClientEvent::Playing { .. } => {
                for t in 0..2 {
                    self.expect_resume[t] = true;
                }
            }
            ClientEvent::Paused => {
                for t in 0..2 {
                    self.log.last_seq_before_pause[t] = self.rx[t].last_seq;
                }
            }
            ClientEvent::SendReceiverReports => {
                for track in self.links.keys().copied().collect::<Vec<_>>() {
                    let rr = RtcpPacket::ReceiverReport(ReceiverReport {
                        ssrc: Ssrc(0xC11E_0000 + track as u32),
                        reports: Vec::new(),
                    });
                    self.send_rtcp(track, &[rr], now);
                }
            }
            ClientEvent::RequestKeyframe { track } => {
                let pli = RtcpPacket::Pli(Pli {
                    sender: Ssrc(0xC11E_0000),
                    media: Ssrc(0x1111),
                });
                self.send_rtcp(*track, &[pli], now);
            }
            _ => {}
        }
    }

    fn send_rtcp(&mut self, track: usize, packets: &[RtcpPacket], now: Instant) {
        let mut data = Vec::new();
        rtcp::write_compound(packets, &mut data);
        match self.links.get(&track) {
            Some(TrackLink::Udp { .. }) => {
                let Some(&(_, rtcp_port)) = self.client_ports.get(&track) else {
                    return;
                };
                let from = SocketAddr::new(Self::client_ip(), rtcp_port);
                let source = RtcpSource::Udp { from, track };
                self.up.send_datagram(now, Up::Rtcp { source, data });
            }
            Some(TrackLink::Tcp { rtcp, .. }) => {
                if let Some(conn) = self.conn {
                    let source = RtcpSource::Interleaved {
                        conn,
                        channel: *rtcp,
                    };
                    self.up.send_stream(now, Up::Rtcp { source, data });
                }
            }
            None => {}
        }
    }

    fn on_server_output(&mut self, o: server::Output) {
        let now = self.now;
        match o {
            server::Output::Transmit { conn, response } => {
                self.down.send_stream(now, Down::Response(conn, response));
            }
            server::Output::Event(e) => match e {
                ServerEvent::SessionStarted { .. } => self.log.sessions_started.push(self.at()),
                ServerEvent::SessionEnded { reason, .. } => {
                    self.log.sessions_ended.push((self.at(), reason))
                }
                ServerEvent::Subscribe {
                    client,
                    track,
                    sink,
                    initial_seq,
                    ..
                } => {
                    if track == 0 {
                        self.keyframe_wanted = true;
                    }
                    let sub = Sub {
                        sink,
                        next_seq: initial_seq,
                        started: track != 0,
                    };
                    self.subs.insert((client, track), sub);
                }
                ServerEvent::Unsubscribe {
                    client,
                    track,
                    reason,
                    ..
                } => {
                    if let Some(sub) = self.subs.remove(&(client, track)) {
                        if reason == Unsubscribed::Paused {
                            let resume = server::Input::ResumeSeq {
                                client,
                                track,
                                seq: sub.next_seq,
                            };
                            self.server.handle_input(resume).unwrap();
                        }
                    }
                }
                ServerEvent::KeyframeRequest { track } => {
                    assert_eq!(track, 0, "keyframes are asked for video only");
                    self.log.keyframe_requests.push(self.at());
                    self.keyframe_wanted = true;
                }
                // The client machine sends no NACK yet (the player's side of issue 13).
                ServerEvent::SenderReport { .. }
                | ServerEvent::ViewerRefused { .. }
                | ServerEvent::Retransmit { .. } => {}
                ServerEvent::CloseConnection { conn } => {
                    self.down.send_stream(now, Down::Fin(conn));
                    let closed = server::Input::ConnectionClosed { now, conn };
                    self.server.handle_input(closed).unwrap();
                }
            },
            server::Output::Timeout(_) => unreachable!("handled by pump"),
        }
    }

    /// The path breaks both ways: in-flight stream bytes are gone, connects time out.
    fn cut(&mut self) {
        self.cut = true;
        self.up.partition();
        self.down.partition();
    }

    fn heal(&mut self) {
        self.cut = false;
        self.up.heal();
        self.down.heal();
    }

    /// The connection is reset (a NAT box forgot it): both ends learn at once.
    fn reset_connection(&mut self) {
        let now = self.now;
        self.up.break_stream();
        self.down.break_stream();
        if let Some(conn) = self.conn.take() {
            let closed = server::Input::ConnectionClosed { now, conn };
            self.server.handle_input(closed).unwrap();
            self.client.handle_input(client::Input::ConnectionLost {
                now,
                why: "connection reset".into(),
                by_peer: false,
            });
        }
    }

    fn command(&mut self, cmd: client::Command) {
        let now = self.now;
        self.client
            .handle_input(client::Input::Command { now, cmd });
    }

    fn count(&self, method: Method) -> usize {
        self.log
            .requests
            .iter()
            .filter(|(_, m)| *m == method)
            .count()
    }

    fn events(&self, f: impl Fn(&ClientEvent) -> bool) -> Vec<Duration> {
        self.log
            .client_events
            .iter()
            .filter(|(_, e)| f(e))
            .map(|(t, _)| *t)
            .collect()
    }

    fn streaming_over(&self) -> Vec<(Duration, bool)> {
        self.log
            .client_events
            .iter()
            .filter_map(|(t, e)| match e {
                ClientEvent::Streaming { tcp } => Some((*t, *tcp)),
                _ => None,
            })
            .collect()
    }
}

fn lossy(loss: f64) -> LinkConfig {
    LinkConfig {
        delay: 20 * MS,
        jitter: 10 * MS,
        loss,
    }
}

/// Ten minutes over UDP with 5 % loss each way: one session all along, kept alive by
/// GET_PARAMETER every half session timeout and by receiver reports; damaged pictures ask
/// for keyframes, and the requests are paced.
#[test]
fn ten_minutes_over_udp_with_loss() {
    let started = std::time::Instant::now();
    let mut w = World::new(1, ClientConfig::default(), lossy(0.05));
    w.run_until(600 * SEC);

    assert_eq!(w.log.connects.len(), 1, "never reconnected");
    assert_eq!(w.log.sessions_started.len(), 1);
    assert!(
        w.log.sessions_ended.is_empty(),
        "{:?}",
        w.log.sessions_ended
    );
    assert_eq!(w.server.playing_count(), 1);
    let streaming = w.streaming_over();
    assert_eq!(streaming.len(), 1, "{streaming:?}");
    assert!(!streaming[0].1, "stayed on UDP");
    // The request sequence, then keep-alives every 30 s (half the 60 s session timeout).
    let methods: Vec<Method> = w.log.requests.iter().map(|(_, m)| m.clone()).collect();
    assert_eq!(
        methods[..5],
        [
            Method::Options,
            Method::Describe,
            Method::Setup,
            Method::Setup,
            Method::Play
        ]
    );
    let play = w.log.requests[4].0;
    let keepalives: Vec<Duration> = w.log.requests[5..].iter().map(|(t, _)| *t).collect();
    assert!(methods[5..].iter().all(|m| *m == Method::GetParameter));
    assert_eq!(
        keepalives.len(),
        ((600 * SEC - play).as_secs() / 30) as usize
    );
    for pair in keepalives.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= 29 * SEC && gap <= 31 * SEC, "{gap:?}");
    }
    // 5 % of the media is lost, the rest arrives.
    let video_sent = 600 * 30;
    assert!(w.log.media_received[0] > video_sent * 90 / 100);
    assert!(w.log.media_received[0] < video_sent * 99 / 100);
    // Keyframe requests go only while a picture is damaged, at most one per
    // `keyframe_repeat`, and every damage that lasts longer than that gets one.
    let repeat = ClientConfig::default().timers.keyframe_repeat;
    let asks = w.events(|e| matches!(e, ClientEvent::RequestKeyframe { .. }));
    assert!(asks.windows(2).all(|p| p[1] - p[0] >= repeat));
    let mut episodes = Vec::new();
    for (n, &(start, lost)) in w.log.damage.iter().enumerate() {
        if lost {
            let end = w.log.damage.get(n + 1).map_or(600 * SEC, |d| d.0);
            episodes.push((start, end));
        }
    }
    assert!(episodes.len() > 100, "{}", episodes.len());
    for t in &asks {
        assert!(
            episodes.iter().any(|(s, e)| s <= t && t < e),
            "{t:?}: nothing damaged"
        );
    }
    for (s, e) in &episodes {
        if *e - *s > repeat + 100 * MS {
            assert!(
                asks.iter().any(|t| s <= t && t < e),
                "{s:?}..{e:?}: never asked"
            );
        }
    }
    // The server passed on requests that crossed the path (5 % of them were lost), at most one
    // per session per `keyframe_request_interval` (1 s): the client asks every 300 ms while a
    // picture stays damaged, the server passes on the first of each second.
    let heard = &w.log.keyframe_requests;
    let interval = livecast_proto::rtsp::server::KEYFRAME_REQUEST_INTERVAL;
    assert!(heard.windows(2).all(|p| p[1] - p[0] >= interval));
    assert!(
        heard.len() < asks.len() && heard.len() > episodes.len() / 2,
        "{} of {} asks, {} episodes",
        heard.len(),
        asks.len(),
        episodes.len()
    );
    // The encoder never made keyframes closer than its limit, whoever asked.
    assert!(
        started.elapsed() < 5 * SEC,
        "ten minutes took {:?}",
        started.elapsed()
    );
}

/// The path is cut for 80 s: the server ends the silent session exactly one session timeout
/// after the last keep-alive it heard; the client notices within its media timeout, retries
/// with backoff while the path is down, and plays again soon after it heals.
#[test]
fn cut_path_expires_the_session_and_the_client_comes_back() {
    let mut w = World::new(2, ClientConfig::default(), lossy(0.0));
    w.run_until(120 * SEC);
    let last_heard = w.log.last_keepalive_in.unwrap();
    w.cut();
    w.run_until(200 * SEC);
    let ended = &w.log.sessions_ended;
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0], (last_heard + 60 * SEC, EndReason::Expired));
    let lost = w.events(|e| matches!(e, ClientEvent::Reconnecting { .. }));
    let media_timeout = ClientConfig::default().timers.media_timeout;
    assert!(
        lost[0] > 120 * SEC && lost[0] <= 120 * SEC + media_timeout + 100 * MS,
        "{lost:?}"
    );
    // While cut, connects fail; each retry comes exactly when the client said, after waits
    // that double from 0.5 s to the 8 s ceiling, each stretched by at most 5 % of jitter.
    let timers = ClientConfig::default().timers;
    let waits: Vec<(Duration, Duration)> = w
        .log
        .client_events
        .iter()
        .filter_map(|(t, e)| match e {
            ClientEvent::Reconnecting { retry_in, .. } => Some((*t, *retry_in)),
            _ => None,
        })
        .collect();
    assert!(waits.len() >= 8, "{waits:?}");
    for (k, &(at, wait)) in waits.iter().enumerate() {
        let step = (timers.backoff_min * 2u32.pow(k.min(8) as u32)).min(timers.backoff_max);
        assert!(
            wait >= step && wait <= step.mul_f64(1.05),
            "retry {k}: {wait:?}"
        );
        assert_eq!(w.log.connects[k + 1], at + wait, "retry {k} on time");
    }
    w.heal();
    w.run_until(230 * SEC);
    let streaming = w.streaming_over();
    assert_eq!(streaming.len(), 2, "{streaming:?}");
    let back = streaming[1].0 - 200 * SEC;
    assert!(
        back <= timers.backoff_max.mul_f64(1.06) + CONNECT_TIMEOUT + SEC,
        "{back:?}"
    );
    assert_eq!(w.server.session_count(), 1);
    assert_eq!(w.server.playing_count(), 1);
}

/// UDP never arrives (a firewall): after the grace period the client tears the UDP session
/// down and sets up interleaved TCP on the same connection, and stays on it.
#[test]
fn udp_blocked_falls_back_to_tcp_and_holds() {
    let mut path = lossy(0.0);
    path.loss = 1.0; // every datagram lost: UDP media and RTCP
    let mut w = World::new(3, ClientConfig::default(), path);
    w.run_until(600 * SEC);
    assert_eq!(w.log.connects.len(), 1, "the fallback keeps the connection");
    let streaming = w.streaming_over();
    assert_eq!(streaming.len(), 1, "{streaming:?}");
    assert!(streaming[0].1, "on TCP");
    let play = w
        .log
        .requests
        .iter()
        .find(|(_, m)| *m == Method::Play)
        .unwrap()
        .0;
    // The UDP session is torn down exactly the grace period after the PLAY answer reached
    // the client (one 20 ms hop after the server got the PLAY), its TEARDOWN one hop later.
    let grace = ClientConfig::default().timers.udp_grace;
    let hop = 20 * MS;
    assert_eq!(
        w.log.sessions_ended,
        vec![(play + hop + grace + hop, EndReason::Teardown)]
    );
    assert!(streaming[0].0 > play + grace && streaming[0].0 < play + grace + SEC);
    assert_eq!(w.server.playing_count(), 1);
    // All media after the switch arrived (TCP loses nothing).
    assert!(
        w.log.media_received[0] > 590 * 30,
        "{}",
        w.log.media_received[0]
    );
}

/// The connection is reset at 5 minutes: the server ends the session at once (its
/// connection closed), the client reconnects after the first backoff step and plays again.
#[test]
fn connection_reset_reconnects_after_backoff() {
    let mut w = World::new(4, ClientConfig::default(), lossy(0.01));
    w.run_until(300 * SEC);
    w.reset_connection();
    w.run_until(600 * SEC);
    assert_eq!(
        w.log.sessions_ended,
        vec![(300 * SEC, EndReason::ConnectionClosed)]
    );
    assert_eq!(w.log.connects.len(), 2);
    let timers = ClientConfig::default().timers;
    let wait = w.log.connects[1] - 300 * SEC;
    assert!(
        wait >= timers.backoff_min && wait <= timers.backoff_min.mul_f64(1.06),
        "{wait:?}"
    );
    assert_eq!(w.log.sessions_started.len(), 2);
    assert_eq!(w.server.playing_count(), 1);
}

/// Pause and resume: the server stops sending, and the resumed stream continues the
/// numbering where it stopped, as RTP-Info says.
#[test]
fn pause_and_resume_continue_the_numbering() {
    let clean = LinkConfig {
        delay: 20 * MS,
        ..LinkConfig::default()
    };
    let mut w = World::new(5, ClientConfig::default(), clean);
    w.run_until(60 * SEC);
    w.command(client::Command::Pause);
    w.run_until(61 * SEC);
    let paused_at = w.log.media_received;
    w.run_until(70 * SEC);
    assert_eq!(w.log.media_received, paused_at, "nothing while paused");
    w.command(client::Command::Resume);
    w.run_until(80 * SEC);
    assert_eq!(w.count(Method::Pause), 1);
    assert_eq!(w.count(Method::Play), 2);
    let resumed: Vec<_> = w
        .log
        .resumed_at_seq
        .iter()
        .filter(|(t, _, _)| *t > 70 * SEC)
        .collect();
    assert_eq!(resumed.len(), 2, "{resumed:?}");
    // The second PLAY's RTP-Info announces, per track, the number the stream continues at:
    // one after the last packet before the pause, and the first packet after it carries it.
    let rtp_info = w
        .log
        .client_events
        .iter()
        .filter_map(|(_, e)| match e {
            ClientEvent::Playing { rtp_info } => Some(rtp_info.clone()),
            _ => None,
        })
        .next_back()
        .unwrap();
    for (_, track, seq) in resumed {
        let before = w.log.last_seq_before_pause[*track].unwrap();
        assert_eq!(*seq, before.wrapping_add(1), "track {track}");
        let announced = rtp_info.iter().find(|i| i.track == *track).unwrap();
        assert_eq!(announced.seq, Some(*seq), "track {track}");
    }
    assert!(w.log.media_received[0] > paused_at[0] + 9 * 30 - 30);
}
