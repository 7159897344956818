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
//! picture after a gap in video, a whole keyframe. With retransmission on (issue 13), the
//! video goes through proto's real jitter buffer as in the player: its gap reports feed the
//! client's NACK logic, the server's `Retransmit` is carried out from a one-second history as
//! RFC 4588 packets over the same lossy path, and a picture is damaged only when the jitter
//! buffer gives up on a packet.

mod netem;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use livecast_proto::jitter::{GapChange, JitterBuffer, JitterConfig, Released};
use livecast_proto::rtcp::{self, Nack, Pli, ReceiverReport, RtcpPacket};
use livecast_proto::rtsp::client::{self, Client, ClientConfig, ClientEvent, TrackLink};
use livecast_proto::rtsp::server::{
    self, ClientId, ConnId, EndReason, MediaSink, Retransmission, RtcpSource, RtpClock, Server,
    ServerConfig, ServerEvent, TrackConfig, Unsubscribed,
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

/// [`server_config`] with the video offered as our server offers it (RTP/AVPF, generic
/// NACK, an RFC 4588 `rtx` payload type), answered with retransmissions.
fn avpf_server_config() -> ServerConfig {
    let mut cfg = server_config();
    let v = &mut cfg.sdp.media[0];
    v.proto = "RTP/AVPF".into();
    v.formats.push("100".into());
    v.attributes.extend([
        Attribute::new("rtcp-fb", "96 nack"),
        Attribute::new("rtcp-fb", "96 nack pli"),
        Attribute::new("rtpmap", "100 rtx/90000"),
        Attribute::new("fmtp", "100 apt=96;rtx-time=1000"),
    ]);
    cfg.tracks[0].nack = true;
    cfg.tracks[0].rtx_payload_type = Some(100);
    cfg
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
        /// An RFC 4588 retransmission carrying packet `seq`.
        rtx: bool,
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
    retransmission: Retransmission,
    /// What went out over UDP in the last second: (seq, keyframe, when), for retransmissions.
    history: VecDeque<(u16, bool, Instant)>,
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
    /// Retransmission runs: video numbers sent over UDP, originals received, numbers the
    /// client NACKed (each request) and the server resent, RTX packets received, numbers
    /// recovered by them in time, and numbers the jitter buffer gave up on.
    video_sent: Vec<(Duration, u16)>,
    originals_received: BTreeSet<u16>,
    nacked: Vec<(Duration, u16)>,
    resent: Vec<(Duration, u16)>,
    rtx_received: u64,
    recovered: BTreeSet<u16>,
    given_up: u64,
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
    /// Video through the player's jitter buffer (payload: keyframe), with retransmission
    /// requests.
    jb: Option<JitterBuffer<bool>>,
    receive_like_the_player: bool,
    /// The client is in call mode: the player's call jitter buffer (2 to 150 ms).
    call: bool,
    log: Log,
}

impl World {
    fn new(seed: u64, cfg: ClientConfig, path: LinkConfig) -> Self {
        Self::with_server(seed, cfg, path, server_config())
    }

    /// Against a server offering retransmission, receiving video as the player does.
    fn with_retransmission(seed: u64, cfg: ClientConfig, path: LinkConfig) -> Self {
        let mut w = Self::with_server(seed, cfg, path, avpf_server_config());
        w.receive_like_the_player = true;
        w
    }

    fn with_server(seed: u64, cfg: ClientConfig, path: LinkConfig, scfg: ServerConfig) -> Self {
        let t0 = Instant::now();
        let server = Server::new(scfg, seed, t0);
        let call = cfg.call;
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
            jb: None,
            receive_like_the_player: false,
            call,
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
                self.jb.as_ref().and_then(JitterBuffer::next_deadline),
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
                        tls: false,
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
        self.release_video();
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
            if matches!(sub.sink, MediaSink::Udp { .. }) && track == 0 {
                sub.history.push_back((seq, key, now));
                while sub.history.front().is_some_and(|h| now - h.2 > SEC) {
                    sub.history.pop_front();
                }
            }
            sends.push((sub.sink, seq));
        }
        for (sink, seq) in sends {
            if track == 0 && matches!(sink, MediaSink::Udp { .. }) {
                self.log.video_sent.push((self.at(), seq));
            }
            let conn = match sink {
                MediaSink::Udp { .. } => None,
                MediaSink::Interleaved { conn, .. } => Some(conn),
            };
            let item = Down::Media {
                conn,
                track,
                seq,
                key,
                rtx: false,
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
                rtx,
            } => {
                if conn.is_some_and(|c| !open(c)) || !self.links.contains_key(&track) {
                    return; // for a connection or a socket the client has closed
                }
                if track == 0 && conn.is_none() && self.jb.is_some() {
                    self.log.media_received[0] += 1;
                    self.client
                        .handle_input(client::Input::MediaSeen { now, track });
                    return self.receive_video(seq, key, rtx);
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

    /// The player's receive side for video over UDP: the jitter buffer, whose gap reports go
    /// to the client (the gap given up when the buffer would, at its current wait).
    fn receive_video(&mut self, seq: u16, key: bool, rtx: bool) {
        let now = self.now;
        let Some(jb) = self.jb.as_mut() else {
            return;
        };
        if let Some(wait) = self.client.retransmission_wait(0) {
            jb.set_floor(wait);
        }
        if rtx {
            self.log.rtx_received += 1;
        } else {
            self.log.originals_received.insert(seq);
        }
        jb.push(seq, u32::from(seq).wrapping_mul(3000), key, key, now);
        let mut changes = Vec::new();
        jb.take_gap_changes(&mut changes);
        let until = now + jb.current_delay();
        for c in changes {
            let input = match c {
                GapChange::Missing(seq) => client::Input::Gap {
                    now,
                    track: 0,
                    seq,
                    until,
                },
                GapChange::Filled(seq) => {
                    if rtx {
                        self.log.recovered.insert(seq);
                    }
                    client::Input::GapFilled {
                        now,
                        track: 0,
                        seq,
                        retransmission: rtx,
                    }
                }
            };
            self.client.handle_input(input);
        }
        self.release_video();
    }

    /// What the jitter buffer releases now: a packet given up damages the picture until a
    /// keyframe comes whole.
    fn release_video(&mut self) {
        let now = self.now;
        let Some(jb) = self.jb.as_mut() else {
            return;
        };
        let mut released = Vec::new();
        while let Some(r) = jb.pop(now) {
            released.push(r);
        }
        for r in released {
            match r {
                Released::Lost { count } => {
                    self.log.given_up += count;
                    if !self.rx[0].damaged {
                        self.rx[0].damaged = true;
                        self.log.damage.push((self.at(), true));
                        self.client
                            .handle_input(client::Input::PictureLost { now, track: 0 });
                    }
                }
                Released::Packet(p) => {
                    if p.payload && self.rx[0].damaged {
                        self.rx[0].damaged = false;
                        self.log.damage.push((self.at(), false));
                        self.client
                            .handle_input(client::Input::KeyframeArrived { now, track: 0 });
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
            ClientEvent::TracksReset { tcp } => {
                self.links.clear();
                self.rx = Default::default();
                let call = self.call;
                self.jb = (self.receive_like_the_player && !tcp).then(|| {
                    // The player's configurations (engine/net/session.rs).
                    let cfg = if call {
                        JitterConfig {
                            min_delay: 2 * MS,
                            max_delay: 150 * MS,
                            low_latency: true,
                        }
                    } else {
                        JitterConfig {
                            min_delay: 10 * MS,
                            max_delay: 500 * MS,
                            low_latency: false,
                        }
                    };
                    JitterBuffer::new(90_000, cfg).with_gap_reports()
                });
            }
            ClientEvent::SendNack { track, seqs } => {
                let at = self.at();
                self.log.nacked.extend(seqs.iter().map(|s| (at, *s)));
                let nack = RtcpPacket::Nack(Nack::new(Ssrc(0xC11E_0000), Ssrc(0x1111), seqs));
                self.send_rtcp(*track, &[nack], now);
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
                // This world's receiver reports carry no blocks (the server's unit tests
                // cover the event).
                ServerEvent::ReceptionReport { .. } => {}
                ServerEvent::SessionEnded { reason, .. } => {
                    self.log.sessions_ended.push((self.at(), reason))
                }
                ServerEvent::Subscribe {
                    client,
                    track,
                    sink,
                    initial_seq,
                    retransmission,
                    ..
                } => {
                    if track == 0 {
                        self.keyframe_wanted = true;
                    }
                    let sub = Sub {
                        sink,
                        next_seq: initial_seq,
                        started: track != 0,
                        retransmission,
                        history: VecDeque::new(),
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
                ServerEvent::Retransmit {
                    client,
                    track,
                    seqs,
                } => self.retransmit(client, track, &seqs),
                ServerEvent::SenderReport { .. }
                | ServerEvent::ViewerRefused { .. }
                | ServerEvent::AuthFailed { .. }
                | ServerEvent::PublishStarted { .. }
                | ServerEvent::PublishEnded { .. } => {}
                ServerEvent::CloseConnection { conn } => {
                    self.down.send_stream(now, Down::Fin(conn));
                    let closed = server::Input::ConnectionClosed { now, conn };
                    self.server.handle_input(closed).unwrap();
                }
            },
            server::Output::Timeout(_) => unreachable!("handled by pump"),
        }
    }

    /// The shell's part of a `Retransmit`: what is still in the history goes again over the
    /// lossy path, as RFC 4588 packets or originals as the subscription says.
    fn retransmit(&mut self, client: ClientId, track: usize, seqs: &[u16]) {
        let (now, at) = (self.now, self.at());
        let Some(sub) = self.subs.get(&(client, track)) else {
            return;
        };
        let rtx = match sub.retransmission {
            Retransmission::None => return,
            Retransmission::Original => false,
            Retransmission::Rtx { .. } => true,
        };
        let found: Vec<(u16, bool)> = seqs
            .iter()
            .filter_map(|s| sub.history.iter().find(|h| h.0 == *s))
            .map(|h| (h.0, h.1))
            .collect();
        for (seq, key) in found {
            self.log.resent.push((at, seq));
            let item = Down::Media {
                conn: None,
                track,
                seq,
                key,
                rtx,
            };
            self.down.send_datagram(now, item);
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

/// Five minutes over UDP at 5 % loss each way (20 ms ± 10 ms one way), against a server that
/// offers NACK and RFC 4588 RTX, the client receiving video through the player's jitter
/// buffer: every packet lost on the way is asked for, the server resends what is asked within
/// its budget, and nearly every lost packet comes back before the jitter buffer gives up on
/// it, so pictures are damaged far less often than without.
#[test]
fn nack_and_rtx_recover_lost_packets_in_time() {
    let started = std::time::Instant::now();
    let minutes = 5;
    let end = minutes * 60 * SEC;
    let mut w = World::with_retransmission(3, ClientConfig::default(), lossy(0.05));
    w.run_until(end);
    let streaming = w.streaming_over();
    assert_eq!(streaming.len(), 1, "{streaming:?}");
    assert!(!streaming[0].1, "stayed on UDP");
    let rtt = w.client.round_trip().expect("measured");
    assert!(rtt >= 40 * MS && rtt <= 70 * MS, "{rtt:?}");

    // The originals lost on the way (not those still in flight at the end).
    let lost: BTreeSet<u16> = w
        .log
        .video_sent
        .iter()
        .filter(|(t, s)| *t + SEC < end && !w.log.originals_received.contains(s))
        .map(|(_, s)| *s)
        .collect();
    let sent = w.log.video_sent.len();
    assert!(
        lost.len() > sent * 3 / 100 && lost.len() < sent * 7 / 100,
        "{} of {sent}",
        lost.len()
    );
    // Each was asked for, at most three times; nothing else was (a packet late by more than
    // the jitter is asked for too: at 30 packets/s reordering is rare).
    let nacked: BTreeSet<u16> = w.log.nacked.iter().map(|(_, s)| *s).collect();
    assert!(lost.is_subset(&nacked), "{:?}", lost.difference(&nacked));
    let mut asks: BTreeMap<u16, u32> = BTreeMap::new();
    for (_, s) in &w.log.nacked {
        *asks.entry(*s).or_default() += 1;
    }
    assert!(asks.values().all(|n| *n <= 3), "{asks:?}");
    let spurious = nacked.difference(&lost).count();
    assert!(spurious <= lost.len() / 20, "{spurious} asked but not lost");
    // The server resent what it was asked (the NACKs that crossed the path), no more, and
    // within its budget of 100 a second.
    let resent: BTreeSet<u16> = w.log.resent.iter().map(|(_, s)| *s).collect();
    assert!(resent.is_subset(&nacked));
    let asked = w.log.nacked.len();
    assert!(
        w.log.resent.len() >= asked * 90 / 100 && w.log.resent.len() <= asked,
        "{} resent for {asked} asked",
        w.log.resent.len()
    );
    for s in 0..u64::from(minutes) * 60 {
        let in_second = w
            .log
            .resent
            .iter()
            .filter(|(t, _)| t.as_secs() == s)
            .count();
        assert!(in_second <= 100, "{in_second} in second {s}");
    }
    // Nearly every lost packet came back in time; the rest the jitter buffer gave up on.
    let recovered = lost.intersection(&w.log.recovered).count();
    assert!(
        recovered * 100 >= lost.len() * 99,
        "{recovered} of {} lost recovered, {} given up",
        lost.len(),
        w.log.given_up
    );
    assert!(w.log.rtx_received >= recovered as u64);
    // The target: under 0.1 % of the packets unrecovered.
    assert!(
        w.log.given_up * 1000 < sent as u64,
        "{} given up",
        w.log.given_up
    );
    // Each packet given up damages pictures until the next keyframe.
    let damaged = w.log.damage.iter().filter(|(_, d)| *d).count();
    assert!(damaged as u64 <= w.log.given_up, "{damaged}");

    // The same run without NACK (plain RTP/AVP): every lost packet is given up.
    let mut off = ClientConfig::default();
    off.nack.enabled = false;
    let mut before = World::with_retransmission(3, off, lossy(0.05));
    before.run_until(end);
    assert!(before.log.nacked.is_empty() && before.log.rtx_received == 0);
    let damaged_before = before.log.damage.iter().filter(|(_, d)| *d).count();
    assert!(before.log.given_up as usize >= lost.len() * 9 / 10);
    assert!(
        damaged_before > 20 * damaged.max(1),
        "{damaged_before} vs {damaged}"
    );
    eprintln!(
        "{minutes} min, 5 % loss each way, rtt {rtt:?}: {} video packets, {} lost, {} NACKed \
         numbers ({} requests), {} resent, {} RTX received, {recovered} recovered, {} given up, \
         {damaged} damage episodes; without NACK: {} given up, {damaged_before} episodes",
        sent,
        lost.len(),
        nacked.len(),
        asked,
        w.log.resent.len(),
        w.log.rtx_received,
        w.log.given_up,
        before.log.given_up,
    );
    assert!(
        started.elapsed() < 10 * SEC,
        "{minutes} minutes took {:?}",
        started.elapsed()
    );
}

/// The same path and server with the client on interleaved TCP: nothing is lost, nothing is
/// asked for, nothing resent.
#[test]
fn no_nack_over_tcp() {
    let cfg = ClientConfig {
        transport: client::TransportMode::Tcp,
        ..ClientConfig::default()
    };
    let mut w = World::with_retransmission(4, cfg, lossy(0.05));
    w.run_until(60 * SEC);
    assert_eq!(w.streaming_over(), [(w.streaming_over()[0].0, true)]);
    assert!(w.log.media_received[0] >= 58 * 30);
    assert!(w.log.nacked.is_empty());
    assert!(w.log.resent.is_empty());
    assert!(w
        .events(|e| matches!(e, ClientEvent::SendNack { .. }))
        .is_empty());
    assert_eq!(w.client.retransmission_wait(0), None);
}

/// A call on the same path (40-60 ms round trip, 5 % loss each way): latency first, so a jitter
/// buffer that waits at most 200 ms (three requests per packet fit within it at this round
/// trip); nearly every lost packet comes back in time.
#[test]
fn nack_in_a_call_within_its_shorter_wait() {
    let cfg = ClientConfig {
        call: true,
        nack: client::NackConfig::call(),
        ..ClientConfig::default()
    };
    let end = 120 * SEC;
    let mut w = World::with_retransmission(5, cfg, lossy(0.05));
    w.run_until(end);
    assert_eq!(w.streaming_over().len(), 1);
    let wait = w.client.retransmission_wait(0).expect("NACK in use");
    assert!(wait <= 200 * MS && wait >= 150 * MS, "{wait:?}");
    let lost: BTreeSet<u16> = w
        .log
        .video_sent
        .iter()
        .filter(|(t, s)| *t + SEC < end && !w.log.originals_received.contains(s))
        .map(|(_, s)| *s)
        .collect();
    let mut asks: BTreeMap<u16, u32> = BTreeMap::new();
    for (_, s) in &w.log.nacked {
        *asks.entry(*s).or_default() += 1;
    }
    assert!(asks.values().all(|n| *n <= 3), "{asks:?}");
    let recovered = lost.intersection(&w.log.recovered).count();
    assert!(lost.len() > 100, "{}", lost.len());
    assert!(
        recovered * 100 >= lost.len() * 98,
        "{recovered} of {} recovered, {} given up",
        lost.len(),
        w.log.given_up
    );
    eprintln!(
        "call, 2 min at 5 % loss each way, wait {wait:?}: {} of {} packets lost, {recovered} \
         recovered, {} given up",
        lost.len(),
        w.log.video_sent.len(),
        w.log.given_up
    );
}

/// The server with Digest authentication: user `viewer`, password `pw`.
fn auth_server_config() -> ServerConfig {
    use livecast_proto::rtsp::server::{AuthConfig, Roles, User, REALM};
    let mut cfg = server_config();
    cfg.auth = Some(AuthConfig::new(vec![User::with_password(
        "viewer",
        "pw",
        Roles::READ,
        REALM,
    )]));
    cfg
}

fn with_password(password: &str) -> ClientConfig {
    ClientConfig {
        credentials: Some(client::Credentials {
            user: "viewer".into(),
            password: password.into(),
        }),
        ..ClientConfig::default()
    }
}

/// Ten minutes with authentication on, 1 % loss and the connection reset at 5 minutes: each
/// connection's first DESCRIBE is challenged and sent again with credentials, every later
/// request (keep-alives included, on the same nonce) passes, and the stream flows as without.
#[test]
fn authenticated_session_survives_ten_minutes_and_a_reconnect() {
    let mut w = World::with_server(6, with_password("pw"), lossy(0.01), auth_server_config());
    w.run_until(300 * SEC);
    w.reset_connection();
    w.run_until(600 * SEC);
    assert_eq!(w.streaming_over().len(), 2, "{:?}", w.streaming_over());
    let describes = w
        .log
        .requests
        .iter()
        .filter(|(_, m)| *m == Method::Describe)
        .count();
    assert_eq!(describes, 4, "one 401 and one answer per connection");
    assert_eq!(
        w.log.sessions_ended,
        vec![(300 * SEC, EndReason::ConnectionClosed)],
        "no session lost to a stale nonce or a refused keep-alive"
    );
    assert!(
        w.log.media_received[0] > 580 * 30,
        "{:?}",
        w.log.media_received
    );
    assert_eq!(w.server.playing_count(), 1);
}

/// A wrong password: the server answers after its random delay and closes; the client ends
/// with the reason and never connects again.
#[test]
fn wrong_password_ends_the_client_without_reconnecting() {
    let mut w = World::with_server(7, with_password("nope"), lossy(0.0), auth_server_config());
    w.run_until(120 * SEC);
    let ended: Vec<&ClientEvent> = w
        .log
        .client_events
        .iter()
        .map(|(_, e)| e)
        .filter(|e| matches!(e, ClientEvent::Ended(_)))
        .collect();
    assert!(
        matches!(&ended[..], [ClientEvent::Ended(client::End::Unauthorized(m))] if m.contains("wrong user name or password")),
        "{ended:?}"
    );
    let at = w.events(|e| matches!(e, ClientEvent::Ended(_)))[0];
    assert!(
        at <= 5 * SEC,
        "answered within the 4 s delay and a few hops: {at:?}"
    );
    assert_eq!(w.log.connects.len(), 1);
    assert!(w.log.sessions_started.is_empty());
}
