//! The server state machine in virtual time: `now` advances by hand, nothing sleeps.

use super::KEYFRAME_REQUEST_INTERVAL;
use super::*;
use crate::rtcp::{Fir, FirEntry, ReceiverReport, RtcpPacket};
use crate::rtsp::headers::TransportProfile;
use crate::sdp::{Attribute, MediaDescription, Origin};

const URL: &str = "rtsp://198.51.100.7:8554/live";
const VIDEO: Ssrc = Ssrc(0x1111_1111);
const AUDIO: Ssrc = Ssrc(0x2222_2222);
const TIMEOUT: Duration = Duration::from_secs(5);

fn epoch() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn config() -> ServerConfig {
    let sdp = SessionDescription {
        origin: Origin {
            session_id: "42".into(),
            session_version: "1".into(),
            ..Origin::default()
        },
        session_name: "Livecast".into(),
        connection: Some("IN IP4 0.0.0.0".into()),
        attributes: vec![Attribute::new("control", "*")],
        media: vec![MediaDescription {
            media: "video".into(),
            proto: "RTP/AVP".into(),
            formats: vec!["96".into()],
            attributes: vec![Attribute::new("control", "trackID=0")],
            ..MediaDescription::default()
        }],
        ..SessionDescription::default()
    };
    let track = |ssrc, rtp_base, clock_rate| TrackConfig {
        ssrc,
        clock: RtpClock {
            rtp_base,
            clock_rate,
            wall_epoch: epoch(),
        },
        server_ports_v4: Some((6970, 6971)),
        server_ports_v6: None,
        nack: false,
        rtx_payload_type: None,
    };
    let mut cfg = ServerConfig::new(
        sdp,
        vec![track(VIDEO, 1000, 90_000), track(AUDIO, 7, 48_000)],
    );
    cfg.session_timeout = TIMEOUT;
    cfg.server_name = "livecast/test".into();
    cfg
}

/// A server, a clock, and helpers that send a request and collect what came out.
struct Harness {
    server: Server,
    now: Instant,
    wall: SystemTime,
    next_cseq: u32,
    timeout: Option<Instant>,
}

const PEER: &str = "192.0.2.10:40000";

impl Harness {
    fn new(seed: u64) -> Self {
        Self::with(config(), seed)
    }

    fn with(cfg: ServerConfig, seed: u64) -> Self {
        let now = Instant::now();
        let mut h = Harness {
            server: Server::new(cfg, seed, now),
            now,
            wall: epoch() + Duration::from_secs(2),
            next_cseq: 1,
            timeout: None,
        };
        h.open(ConnId(1), PEER, "198.51.100.7:8554");
        h
    }

    fn open(&mut self, conn: ConnId, peer: &str, local: &str) {
        let input = Input::ConnectionOpened {
            now: self.now,
            conn,
            peer: peer.parse().unwrap(),
            local: local.parse().unwrap(),
            tls: false,
        };
        self.server.handle_input(input).unwrap();
        assert!(self.drain().is_empty());
    }

    fn advance(&mut self, d: Duration) -> Vec<Output> {
        self.now += d;
        self.server.handle_input(Input::Timeout(self.now)).unwrap();
        self.drain()
    }

    /// Every output up to the timeout (which is remembered).
    fn drain(&mut self) -> Vec<Output> {
        let mut v = Vec::new();
        loop {
            match self.server.poll_output() {
                Output::Timeout(t) => {
                    self.timeout = Some(t);
                    return v;
                }
                o => v.push(o),
            }
        }
    }

    fn request_on(&mut self, conn: ConnId, req: Request) -> (Response, Vec<ServerEvent>) {
        let req = req.typed(&CSeq(self.next_cseq));
        self.next_cseq += 1;
        let input = Input::Request {
            now: self.now,
            wall: self.wall,
            conn,
            req,
        };
        self.server.handle_input(input).unwrap();
        split(conn, self.drain())
    }

    fn request(&mut self, req: Request) -> (Response, Vec<ServerEvent>) {
        self.request_on(ConnId(1), req)
    }

    /// SETUP of `track` with `transport` (and `session`, if any): the session id.
    fn setup(&mut self, track: usize, transport: &str, session: Option<&str>) -> String {
        let mut req = Request::new(Method::Setup, format!("{URL}/trackID={track}"))
            .header("Transport", transport);
        if let Some(s) = session {
            req = req.header("Session", s);
        }
        let (r, _) = self.request(req);
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        r.headers.get_typed::<Session>().unwrap().unwrap().id
    }

    fn with_session(&mut self, method: Method, sid: &str) -> (Response, Vec<ServerEvent>) {
        self.request(Request::new(method, URL).header("Session", sid))
    }

    fn rtcp(&mut self, source: RtcpSource, packets: &[RtcpPacket]) -> Vec<Output> {
        let mut data = Vec::new();
        rtcp::write_compound(packets, &mut data);
        let input = Input::Rtcp {
            now: self.now,
            source,
            data,
        };
        self.server.handle_input(input).unwrap();
        self.drain()
    }
}

/// The one response to `conn` and the events, in order.
fn split(conn: ConnId, outputs: Vec<Output>) -> (Response, Vec<ServerEvent>) {
    let mut response = None;
    let mut events = Vec::new();
    for o in outputs {
        match o {
            Output::Transmit {
                conn: c,
                response: r,
            } => {
                assert_eq!(c, conn);
                assert!(response.replace(r).is_none(), "two responses");
            }
            Output::Event(e) => events.push(e),
            Output::Timeout(_) => unreachable!(),
        }
    }
    (response.expect("a response"), events)
}

fn events(outputs: Vec<Output>) -> Vec<ServerEvent> {
    outputs
        .into_iter()
        .map(|o| match o {
            Output::Event(e) => e,
            o => panic!("not an event: {o:?}"),
        })
        .collect()
}

fn rr() -> RtcpPacket {
    RtcpPacket::ReceiverReport(ReceiverReport {
        ssrc: Ssrc(77),
        reports: vec![],
    })
}

fn udp_sink() -> MediaSink {
    MediaSink::Udp {
        rtp: "192.0.2.10:5000".parse().unwrap(),
        rtcp: "192.0.2.10:5001".parse().unwrap(),
    }
}

const UDP: &str = "RTP/AVP;unicast;client_port=5000-5001";

/// What ending client 1's session `sid` (video over UDP) emits.
fn ended(sid: &str, reason: EndReason) -> [ServerEvent; 2] {
    [
        ServerEvent::Unsubscribe {
            client: ClientId(1),
            track: 0,
            sink: udp_sink(),
            reason: Unsubscribed::Ended(reason),
        },
        ServerEvent::SessionEnded {
            session: sid.to_owned(),
            client: ClientId(1),
            peer: PEER.parse().unwrap(),
            reason,
        },
    ]
}

/// The server wakes by `deadline`: a wake-up announced before a keep-alive moved the deadline
/// later may come first; it finds nothing due and then names `deadline` exactly.
fn wakes_at(h: &mut Harness, deadline: Instant) {
    let t = h.timeout.expect("a timeout was announced");
    assert!(t <= deadline, "{:?} after the deadline", t - deadline);
    if t < deadline {
        h.server.handle_input(Input::Timeout(t)).unwrap();
        assert!(
            events(h.drain()).is_empty(),
            "nothing due at the early wake-up"
        );
        assert_eq!(h.timeout, Some(deadline));
    }
}

fn body(r: &Response) -> &str {
    std::str::from_utf8(&r.body).unwrap()
}

#[test]
fn session_ids_and_sequence_numbers_follow_the_seed() {
    let run = |seed| {
        let mut h = Harness::new(seed);
        let a = h.setup(0, UDP, None);
        let (r, ev) = h.with_session(Method::Play, &a);
        let b = h.setup(0, UDP, None);
        (a, b, r.headers.get("RTP-Info").unwrap().to_owned(), ev)
    };
    let (a, b, info, ev) = run(7);
    assert_eq!(run(7), (a.clone(), b.clone(), info.clone(), ev.clone()));
    assert_ne!(run(8).0, a);
    assert_ne!(a, b);
    assert_eq!(a.len(), 16);
    let ServerEvent::Subscribe { initial_seq, .. } = ev[0] else {
        panic!("{ev:?}")
    };
    assert!(info.contains(&format!("seq={initial_seq};")), "{info}");
}

#[test]
fn setup_play_pause_play_continues_the_numbering() {
    let mut h = Harness::new(1);
    let (r, _) = h.request(Request::new(Method::Options, URL));
    assert_eq!(
        r.headers.get("Public"),
        Some("OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER")
    );
    assert_eq!(r.headers.get("Server"), Some("livecast/test"));
    assert_eq!(r.cseq(), Ok(Some(1)));

    let req = Request::new(Method::Setup, format!("{URL}/trackID=0")).header("Transport", UDP);
    let (r, ev) = h.request(req);
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers.get("Transport"),
        Some("RTP/AVP;unicast;client_port=5000-5001;server_port=6970-6971;ssrc=11111111")
    );
    let sid = r.headers.get_typed::<Session>().unwrap().unwrap();
    assert_eq!(sid.timeout, Some(5));
    let sid = sid.id;
    let client = ClientId(1);
    assert_eq!(
        ev,
        [ServerEvent::SessionStarted {
            session: sid.clone(),
            client,
            peer: PEER.parse().unwrap()
        }]
    );
    let tcp = "RTP/AVP/TCP;unicast;interleaved=2-3";
    h.setup(1, tcp, Some(&sid));
    assert_eq!(h.server.session_state(&sid), Some(State::Ready));

    let (r, ev) = h.with_session(Method::Play, &sid);
    assert_eq!(r.status, StatusCode::OK);
    let tcp_sink = MediaSink::Interleaved {
        conn: ConnId(1),
        rtp_channel: 2,
        rtcp_channel: 3,
    };
    let [ServerEvent::Subscribe {
        client: c0,
        track: 0,
        sink: s0,
        initial_seq: seq0,
        resumed: false,
        retransmission: Retransmission::None,
        srtp: None,
    }, ServerEvent::Subscribe {
        client: c1,
        track: 1,
        sink: s1,
        initial_seq: seq1,
        resumed: false,
        retransmission: Retransmission::None,
        srtp: None,
    }] = ev[..]
    else {
        panic!("{ev:?}")
    };
    assert_eq!((c0, c1, s0, s1), (client, client, udp_sink(), tcp_sink));
    // rtptime: the clock at the request's wall time, 2 s after the epoch.
    assert_eq!(
        r.headers.get("RTP-Info"),
        Some(
            format!(
                "url={URL}/trackID=0;seq={seq0};rtptime={},url={URL}/trackID=1;seq={seq1};rtptime={}",
                1000 + 2 * 90_000,
                7 + 2 * 48_000
            )
            .as_str()
        )
    );
    assert_eq!(r.headers.get("Range"), Some("npt=0.000-"));
    assert_eq!(h.server.playing_count(), 1);

    // PLAY while playing: 200, no new subscription, no RTP-Info.
    let (r, ev) = h.with_session(Method::Play, &sid);
    assert_eq!(
        (r.status, r.headers.get("RTP-Info"), ev),
        (StatusCode::OK, None, vec![])
    );

    let (r, ev) = h.with_session(Method::Pause, &sid);
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        ev,
        [
            ServerEvent::Unsubscribe {
                client,
                track: 0,
                sink: udp_sink(),
                reason: Unsubscribed::Paused
            },
            ServerEvent::Unsubscribe {
                client,
                track: 1,
                sink: tcp_sink,
                reason: Unsubscribed::Paused
            },
        ]
    );
    assert!(!Unsubscribed::Paused.sends_bye());
    // The fan-out reports where each numbering stopped (only for the video track here).
    let input = Input::ResumeSeq {
        client,
        track: 0,
        seq: 65535,
    };
    h.server.handle_input(input).unwrap();
    h.now += Duration::from_secs(1);
    h.wall += Duration::from_secs(1);
    let (r, ev) = h.with_session(Method::Play, &sid);
    let ServerEvent::Subscribe {
        track: 1,
        initial_seq: fresh,
        ..
    } = ev[1]
    else {
        panic!("{ev:?}")
    };
    assert_eq!(
        ev[0],
        ServerEvent::Subscribe {
            client,
            track: 0,
            sink: udp_sink(),
            initial_seq: 65535,
            resumed: true,
            retransmission: Retransmission::None,
            srtp: None,
        }
    );
    assert_eq!(
        r.headers.get("RTP-Info"),
        Some(
            format!(
                "url={URL}/trackID=0;seq=65535;rtptime={},url={URL}/trackID=1;seq={fresh};rtptime={}",
                1000 + 3 * 90_000,
                7 + 3 * 48_000
            )
            .as_str()
        )
    );
}

#[test]
fn first_sender_reports_follow_play() {
    let mut h = Harness::new(1);
    let sid = h.setup(0, UDP, None);
    h.setup(
        1,
        UDP.replace("5000-5001", "5002-5003").as_str(),
        Some(&sid),
    );
    h.with_session(Method::Play, &sid);
    assert_eq!(h.timeout, Some(h.now + Duration::from_millis(150)));
    assert!(events(h.advance(Duration::from_millis(149))).is_empty());
    let reports = |track| ServerEvent::SenderReport {
        client: ClientId(1),
        track,
    };
    assert_eq!(
        events(h.advance(Duration::from_millis(1))),
        [reports(0), reports(1)]
    );
    assert_eq!(h.timeout, Some(h.now + Duration::from_millis(850)));
    assert_eq!(
        events(h.advance(Duration::from_millis(850))),
        [reports(0), reports(1)]
    );
    // Then nothing until the session's deadline (5 s after PLAY).
    assert_eq!(h.timeout, Some(h.now + TIMEOUT - Duration::from_secs(1)));
}

#[test]
fn sessions_expire_exactly_at_the_timeout_unless_kept_alive_by_requests() {
    let mut h = Harness::new(1);
    let sid = h.setup(0, UDP, None);
    let t0 = h.now;
    assert_eq!(h.timeout, Some(t0 + TIMEOUT));
    // Keep-alive by GET_PARAMETER (and OPTIONS) every 4 s for a minute.
    for i in 0..15 {
        assert!(events(h.advance(Duration::from_secs(4))).is_empty());
        let method = if i % 2 == 0 {
            Method::GetParameter
        } else {
            Method::Options
        };
        let (r, _) = h.with_session(method, &sid);
        assert_eq!(r.status, StatusCode::OK);
    }
    let last = h.now;
    wakes_at(&mut h, last + TIMEOUT);
    assert!(events(h.advance(TIMEOUT - Duration::from_nanos(1))).is_empty());
    assert_eq!(
        events(h.advance(Duration::from_nanos(1))),
        ended(&sid, EndReason::Expired)
    );
    assert!(Unsubscribed::Ended(EndReason::Expired).sends_bye());
    assert_eq!(h.server.session_count(), 0);
    let (r, _) = h.with_session(Method::GetParameter, &sid);
    assert_eq!(r.status, StatusCode::SESSION_NOT_FOUND);
}

#[test]
fn rtcp_from_the_client_keeps_alive_and_asks_for_keyframes() {
    let mut h = Harness::new(1);
    let sid = h.setup(0, UDP, None);
    h.with_session(Method::Play, &sid);
    h.advance(Duration::from_secs(1)); // the first sender reports
    let client_rtcp = RtcpSource::Udp {
        from: "192.0.2.10:5001".parse().unwrap(),
        track: 0,
    };
    let stranger = RtcpSource::Udp {
        from: "192.0.2.99:5001".parse().unwrap(),
        track: 0,
    };
    // Receiver reports every 4 s keep the session alive for a minute; a stranger's PLI is
    // ignored, the client's is a keyframe request; so is its FIR.
    for _ in 0..15 {
        assert!(h.rtcp(client_rtcp, &[rr()]).is_empty());
        assert!(events(h.advance(Duration::from_secs(4))).is_empty());
    }
    assert_eq!(h.server.session_count(), 1);
    assert!(h
        .rtcp(stranger, &[rr(), RtcpPacket::pli(Ssrc(77), VIDEO)])
        .is_empty());
    assert_eq!(
        events(h.rtcp(client_rtcp, &[rr(), RtcpPacket::pli(Ssrc(77), VIDEO)])),
        [ServerEvent::KeyframeRequest { track: 0 }]
    );
    assert!(
        h.rtcp(client_rtcp, &[rr(), RtcpPacket::pli(Ssrc(77), AUDIO)])
            .is_empty(),
        "a PLI for another stream"
    );
    let fir = RtcpPacket::Fir(Fir {
        sender: Ssrc(77),
        entries: vec![FirEntry {
            ssrc: VIDEO,
            seq: 1,
        }],
    });
    assert!(
        h.rtcp(client_rtcp, &[rr(), fir.clone()]).is_empty(),
        "within a second of the last request passed on"
    );
    h.advance(KEYFRAME_REQUEST_INTERVAL);
    assert_eq!(
        events(h.rtcp(client_rtcp, &[rr(), fir])),
        [ServerEvent::KeyframeRequest { track: 0 }]
    );
    // Garbage from the client's address is no keep-alive.
    let input = Input::Rtcp {
        now: h.now + Duration::from_secs(4),
        source: client_rtcp,
        data: vec![1, 2, 3],
    };
    h.server.handle_input(input).unwrap();
    let last_rr = h.now;
    h.drain();
    wakes_at(&mut h, last_rr + TIMEOUT);
    let ev = events(h.advance(TIMEOUT));
    assert!(matches!(
        ev[1],
        ServerEvent::SessionEnded {
            reason: EndReason::Expired,
            ..
        }
    ));
    // Its connection has sent no request for over a minute: with no session, it is idle.
    assert_eq!(ev[2], ServerEvent::CloseConnection { conn: ConnId(1) });
}

#[test]
fn rtcp_still_counts_after_pause_and_play() {
    let mut h = Harness::new(1);
    let sid = h.setup(0, UDP, None);
    h.with_session(Method::Play, &sid);
    h.with_session(Method::Pause, &sid);
    let client_rtcp = RtcpSource::Udp {
        from: "192.0.2.10:5001".parse().unwrap(),
        track: 0,
    };
    // Paused, its receiver reports still keep the session alive.
    h.advance(TIMEOUT / 2);
    assert!(h.rtcp(client_rtcp, &[rr()]).is_empty());
    h.with_session(Method::Play, &sid);
    h.advance(TIMEOUT / 2);
    assert!(h.rtcp(client_rtcp, &[rr()]).is_empty());
    assert!(events(h.advance(TIMEOUT / 2)).is_empty(), "kept alive");
    assert_eq!(
        events(h.rtcp(client_rtcp, &[RtcpPacket::pli(Ssrc(77), VIDEO)])),
        [ServerEvent::KeyframeRequest { track: 0 }]
    );
    // Once the session is gone, so is its address.
    h.with_session(Method::Teardown, &sid);
    assert!(h
        .rtcp(client_rtcp, &[RtcpPacket::pli(Ssrc(77), VIDEO)])
        .is_empty());
}

#[test]
fn the_response_comes_before_the_effects_of_its_request() {
    let mut h = Harness::new(1);
    let sid = h.setup(0, UDP, None);
    let req = Request::new(Method::Play, URL)
        .header("Session", sid.as_str())
        .typed(&CSeq(99));
    let input = Input::Request {
        now: h.now,
        wall: h.wall,
        conn: ConnId(1),
        req,
    };
    h.server.handle_input(input).unwrap();
    let out = h.drain();
    assert!(matches!(out[0], Output::Transmit { .. }), "{out:?}");
    assert!(matches!(
        out[1],
        Output::Event(ServerEvent::Subscribe { .. })
    ));
    assert!(h.server.is_subscribed(ClientId(1), 0));
    assert!(
        !h.server.is_subscribed(ClientId(1), 1),
        "track 1 not set up"
    );
    h.with_session(Method::Pause, &sid);
    assert!(!h.server.is_subscribed(ClientId(1), 0), "paused");
}

#[test]
fn interleaved_rtcp_keeps_the_connections_sessions_alive() {
    let mut h = Harness::new(1);
    let sid = h.setup(0, "RTP/AVP/TCP;interleaved=0-1", None);
    h.with_session(Method::Play, &sid);
    h.advance(Duration::from_secs(1));
    let on = |channel| RtcpSource::Interleaved {
        conn: ConnId(1),
        channel,
    };
    for _ in 0..3 {
        assert!(h.rtcp(on(1), &[rr()]).is_empty());
        assert!(events(h.advance(Duration::from_secs(4))).is_empty());
    }
    assert_eq!(
        events(h.rtcp(on(1), &[rr(), RtcpPacket::pli(Ssrc(77), VIDEO)])),
        [ServerEvent::KeyframeRequest { track: 0 }]
    );
    // A PLI on a channel that is not the track's RTCP channel asks for nothing.
    assert!(h
        .rtcp(on(5), &[rr(), RtcpPacket::pli(Ssrc(77), VIDEO)])
        .is_empty());
    let deadline = h.now + TIMEOUT;
    wakes_at(&mut h, deadline);
}

#[test]
fn teardown_and_connection_close_end_sessions() {
    let mut h = Harness::new(1);
    let a = h.setup(0, UDP, None);
    h.open(ConnId(2), "192.0.2.11:40000", "198.51.100.7:8554");
    let req = Request::new(Method::Setup, format!("{URL}/trackID=0"))
        .header("Transport", "RTP/AVP/TCP;interleaved=0-1");
    let (r, _) = h.request_on(ConnId(2), req);
    let b = r.headers.get_typed::<Session>().unwrap().unwrap().id;
    assert_eq!(h.server.session_count(), 2);

    let (r, ev) = h.with_session(Method::Teardown, &a);
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(ev, ended(&a, EndReason::Teardown));
    let (r, _) = h.with_session(Method::Teardown, &a);
    assert_eq!(r.status, StatusCode::SESSION_NOT_FOUND);
    // The RTCP address of a torn-down session is nobody's.
    let from = RtcpSource::Udp {
        from: "192.0.2.10:5001".parse().unwrap(),
        track: 0,
    };
    assert!(h
        .rtcp(from, &[rr(), RtcpPacket::pli(Ssrc(1), VIDEO)])
        .is_empty());

    let input = Input::ConnectionClosed {
        now: h.now,
        conn: ConnId(2),
    };
    h.server.handle_input(input).unwrap();
    let ev = events(h.drain());
    assert_eq!(
        ev[1],
        ServerEvent::SessionEnded {
            session: b,
            client: ClientId(2),
            peer: "192.0.2.11:40000".parse().unwrap(),
            reason: EndReason::ConnectionClosed
        }
    );
    let ServerEvent::Unsubscribe { reason, .. } = ev[0] else {
        panic!("{ev:?}")
    };
    assert!(!reason.sends_bye(), "nobody listens on a closed connection");
    assert_eq!(h.server.session_count(), 0);
    // Requests on a closed connection are a shell bug, not a client's.
    let input = Input::Request {
        now: h.now,
        wall: h.wall,
        conn: ConnId(2),
        req: Request::new(Method::Options, URL),
    };
    assert_eq!(
        h.server.handle_input(input),
        Err(ServerError::UnknownConnection(ConnId(2)))
    );
}

#[test]
fn bad_requests_get_the_right_status() {
    let mut h = Harness::new(1);
    let track0 = format!("{URL}/trackID=0");
    let cases: Vec<(&str, Request, StatusCode)> = vec![
        (
            "unknown method",
            Request::new(Method::Extension("FROB".into()), URL),
            StatusCode::NOT_IMPLEMENTED,
        ),
        (
            "unknown path",
            Request::new(Method::Describe, "rtsp://198.51.100.7/nope"),
            StatusCode::NOT_FOUND,
        ),
        (
            "unknown track",
            Request::new(Method::Setup, format!("{URL}/trackID=2")).header("Transport", UDP),
            StatusCode::NOT_FOUND,
        ),
        (
            "DESCRIBE of a track",
            Request::new(Method::Describe, track0.as_str()),
            StatusCode::NOT_FOUND,
        ),
        (
            "Accept without SDP",
            Request::new(Method::Describe, URL).header("Accept", "text/html"),
            StatusCode::NOT_ACCEPTABLE,
        ),
        (
            "PLAY without session",
            Request::new(Method::Play, URL),
            StatusCode::SESSION_NOT_FOUND,
        ),
        (
            "PLAY unknown session",
            Request::new(Method::Play, URL).header("Session", "123456"),
            StatusCode::SESSION_NOT_FOUND,
        ),
        (
            "SETUP of the aggregate",
            Request::new(Method::Setup, URL).header("Transport", UDP),
            StatusCode::AGGREGATE_OPERATION_NOT_ALLOWED,
        ),
        (
            "multicast only",
            Request::new(Method::Setup, track0.as_str())
                .header("Transport", "RTP/AVP;multicast;port=5000-5001"),
            StatusCode::UNSUPPORTED_TRANSPORT,
        ),
        (
            "malformed Transport",
            Request::new(Method::Setup, track0.as_str())
                .header("Transport", "RTP/AVP;client_port=x-y"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "no Transport",
            Request::new(Method::Setup, track0.as_str()),
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET_PARAMETER with a parameter",
            Request::new(Method::GetParameter, URL)
                .body("text/parameters", b"position\r\n".to_vec()),
            StatusCode::PARAMETER_NOT_UNDERSTOOD,
        ),
    ];
    for (name, req, want) in cases {
        let (r, ev) = h.request(req);
        assert_eq!(r.status, want, "{name}: {}", body(&r));
        assert!(ev.is_empty(), "{name}: {ev:?}");
        assert!(r.cseq().unwrap().is_some(), "{name}");
        assert_eq!(r.headers.get("Server"), Some("livecast/test"), "{name}");
        assert!(body(&r).ends_with("\r\n"), "{name}: a reason in the body");
    }
    // 405 names what is allowed; 551 what is unsupported.
    let (r, _) = h.request(Request::new(Method::Announce, URL));
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        r.headers.get("Allow"),
        Some("OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER")
    );
    let (r, _) = h.request(Request::new(Method::Describe, URL).header("Require", "play.basic"));
    assert_eq!(r.status, StatusCode::OPTION_NOT_SUPPORTED);
    assert_eq!(r.headers.get("Unsupported"), Some("play.basic"));
    // No CSeq: 400 without one.
    let input = Input::Request {
        now: h.now,
        wall: h.wall,
        conn: ConnId(1),
        req: Request::new(Method::Options, URL),
    };
    h.server.handle_input(input).unwrap();
    let (r, _) = split(ConnId(1), h.drain());
    assert_eq!(
        (r.status, body(&r)),
        (StatusCode::BAD_REQUEST, "missing CSeq header\r\n")
    );
    // RTSP/2.0: 505, then the connection closes.
    let mut req = Request::new(Method::Options, URL);
    req.version = Version::Other { major: 2, minor: 0 };
    let (r, ev) = h.request(req);
    assert_eq!(r.status, StatusCode::VERSION_NOT_SUPPORTED);
    assert_eq!(ev, [ServerEvent::CloseConnection { conn: ConnId(1) }]);
    assert_eq!(h.server.session_count(), 0);
}

#[test]
fn unreadable_bytes_are_answered_and_the_connection_closed() {
    let mut h = Harness::new(1);
    let error = crate::rtsp::parse(
        format!("OPTIONS {URL} RTSP/1.0\r\nX-Big: {}\r\n", "a".repeat(9000)).as_bytes(),
        &crate::rtsp::Limits::default(),
    )
    .unwrap_err();
    let input = Input::BadRequest {
        now: h.now,
        conn: ConnId(1),
        error,
    };
    h.server.handle_input(input).unwrap();
    let (r, ev) = split(ConnId(1), h.drain());
    assert_eq!(r.status, StatusCode::REQUEST_ENTITY_TOO_LARGE);
    assert_eq!(r.headers.get("Connection"), Some("close"));
    assert_eq!(ev, [ServerEvent::CloseConnection { conn: ConnId(1) }]);
}

#[test]
fn methods_not_valid_in_the_state_get_455_and_leave_the_session_intact() {
    let mut h = Harness::new(1);
    let sid = h.setup(0, UDP, None);
    let (r, ev) = h.with_session(Method::Pause, &sid);
    assert_eq!(r.status, StatusCode::METHOD_NOT_VALID_IN_THIS_STATE);
    assert_eq!(
        r.headers.get("Allow"),
        Some("OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER")
    );
    assert!(ev.is_empty());
    let (r, _) = h.with_session(Method::Play, &sid);
    assert_eq!(r.status, StatusCode::OK);
    let (r, _) = h.with_session(Method::Pause, &sid);
    assert_eq!(r.status, StatusCode::OK);
    // SETUP with an unknown session: 454, nothing created.
    let req = Request::new(Method::Setup, format!("{URL}/trackID=1"))
        .header("Transport", UDP)
        .header("Session", "feedfacefeedface");
    let (r, ev) = h.request(req);
    assert_eq!((r.status, ev), (StatusCode::SESSION_NOT_FOUND, vec![]));
    assert_eq!(h.server.session_count(), 1);
}

#[test]
fn resetup_while_playing_replaces_the_transport_and_keeps_playing() {
    let mut h = Harness::new(1);
    let sid = h.setup(0, UDP, None);
    h.with_session(Method::Play, &sid);
    let req = Request::new(Method::Setup, format!("{URL}/trackID=0"))
        .header("Transport", "RTP/AVP/TCP;interleaved=0-1")
        .header("Session", sid.as_str());
    let (r, ev) = h.request(req);
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        ev[0],
        ServerEvent::Unsubscribe {
            client: ClientId(1),
            track: 0,
            sink: udp_sink(),
            reason: Unsubscribed::Replaced
        }
    );
    assert!(matches!(
        ev[1],
        ServerEvent::Subscribe {
            track: 0,
            sink: MediaSink::Interleaved { rtp_channel: 0, .. },
            ..
        }
    ));
    assert_eq!(h.server.session_state(&sid), Some(State::Playing));
}

#[test]
fn a_viewer_beyond_the_limit_or_the_capacity_gets_453() {
    let mut cfg = config();
    cfg.max_viewers = Some(2);
    let mut h = Harness::with(cfg, 1);
    let first = h.setup(0, UDP, None);
    let second = h.setup(0, UDP, None);
    let setup = || Request::new(Method::Setup, format!("{URL}/trackID=0")).header("Transport", UDP);
    let (r, ev) = h.request(setup());
    assert_eq!(r.status, StatusCode::NOT_ENOUGH_BANDWIDTH);
    assert_eq!(
        ev,
        [ServerEvent::ViewerRefused {
            peer: PEER.parse().unwrap(),
            why: "this server serves at most 2 viewers".into()
        }]
    );
    assert_eq!(h.server.session_count(), 2, "nothing half-made");
    // Those already watching are not refused anything: a second track, PLAY.
    h.setup(1, "RTP/AVP/TCP;unicast;interleaved=2-3", Some(&first));
    let (r, _) = h.with_session(Method::Play, &second);
    assert_eq!(r.status, StatusCode::OK);
    // One leaves: a place is free.
    h.with_session(Method::Teardown, &first);
    let third = h.setup(0, UDP, None);
    // The shell says the media path is overloaded: new viewers wait, the others go on.
    let now = h.now;
    h.server
        .handle_input(Input::Overloaded {
            now,
            overloaded: true,
        })
        .unwrap();
    assert!(h.drain().is_empty());
    h.with_session(Method::Teardown, &third);
    let (r, ev) = h.request(setup());
    assert_eq!(r.status, StatusCode::NOT_ENOUGH_BANDWIDTH);
    assert!(
        matches!(&ev[..], [ServerEvent::ViewerRefused { why, .. }] if why.contains("full rate"))
    );
    assert_eq!(
        h.with_session(Method::Pause, &second).0.status,
        StatusCode::OK
    );
    assert_eq!(
        h.with_session(Method::Play, &second).0.status,
        StatusCode::OK
    );
    h.server
        .handle_input(Input::Overloaded {
            now,
            overloaded: false,
        })
        .unwrap();
    h.setup(0, UDP, None);
}

#[test]
fn too_many_sessions_get_503() {
    let mut cfg = config();
    cfg.max_sessions = 2;
    let mut h = Harness::with(cfg, 1);
    h.setup(0, UDP, None);
    h.setup(0, UDP, None);
    let req = Request::new(Method::Setup, format!("{URL}/trackID=0")).header("Transport", UDP);
    let (r, _) = h.request(req);
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn udp_needs_a_socket_of_the_clients_family() {
    let mut h = Harness::new(1);
    h.open(ConnId(6), "[2001:db8::1]:40000", "[2001:db8::2]:8554");
    let req = Request::new(Method::Setup, format!("{URL}/trackID=0")).header("Transport", UDP);
    let (r, _) = h.request_on(ConnId(6), req);
    assert_eq!(r.status, StatusCode::UNSUPPORTED_TRANSPORT);
    // The TCP alternative listed second is chosen instead.
    let req = Request::new(Method::Setup, format!("{URL}/trackID=0"))
        .header("Transport", format!("{UDP},RTP/AVP/TCP;unicast"));
    let (r, _) = h.request_on(ConnId(6), req);
    assert_eq!(
        r.headers.get("Transport"),
        Some("RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=11111111")
    );
}

#[test]
fn describe_names_the_address_the_client_reached() {
    let mut h = Harness::new(1);
    h.open(
        ConnId(2),
        "[::ffff:192.0.2.1]:4000",
        "[::ffff:198.51.100.7]:8554",
    );
    h.open(ConnId(3), "[2001:db8::1]:4000", "[2001:db8::2]:8554");
    let describe = |h: &mut Harness, conn| {
        let (r, _) = h.request_on(conn, Request::new(Method::Describe, URL));
        assert_eq!(
            r.headers.get("Content-Base"),
            Some(format!("{URL}/").as_str())
        );
        assert_eq!(r.headers.get("Content-Type"), Some("application/sdp"));
        body(&r).lines().nth(1).unwrap().to_owned()
    };
    assert_eq!(describe(&mut h, ConnId(1)), "o=- 42 1 IN IP4 198.51.100.7");
    assert_eq!(describe(&mut h, ConnId(2)), "o=- 42 1 IN IP4 198.51.100.7");
    assert_eq!(describe(&mut h, ConnId(3)), "o=- 42 1 IN IP6 2001:db8::2");
    let (r, _) = h.request(Request::new(Method::Describe, URL).header("Accept", "application/sdp"));
    assert_eq!(
        body(&r),
        "v=0\r\no=- 42 1 IN IP4 198.51.100.7\r\ns=Livecast\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
         a=control:*\r\nm=video 0 RTP/AVP 96\r\na=control:trackID=0\r\n"
    );
}

#[test]
fn idle_connections_without_sessions_are_closed() {
    let mut h = Harness::new(1);
    h.open(ConnId(2), "192.0.2.11:40000", "198.51.100.7:8554");
    h.setup(0, UDP, None); // on connection 1
    h.request_on(ConnId(2), Request::new(Method::Options, URL));
    let t = h.now;
    let sixty = Duration::from_secs(60);
    // Connection 1 owns a session: only the session's timeout applies to it.
    assert_eq!(h.timeout, Some(t + TIMEOUT));
    assert_eq!(events(h.advance(TIMEOUT)).len(), 2, "the session expired");
    // Now both connections are idle; each closes 60 s after its last request.
    assert_eq!(h.timeout, Some(t + sixty));
    let ev = events(h.advance(sixty - TIMEOUT));
    assert_eq!(
        ev,
        [
            ServerEvent::CloseConnection { conn: ConnId(1) },
            ServerEvent::CloseConnection { conn: ConnId(2) }
        ]
    );
    assert!(events(h.advance(sixty)).is_empty(), "closed once");
}

#[test]
fn shutdown_ends_every_session_with_a_bye_and_closes_every_connection() {
    let mut h = Harness::new(1);
    let sid = h.setup(0, UDP, None);
    h.with_session(Method::Play, &sid);
    h.server.handle_input(Input::Shutdown(h.now)).unwrap();
    let ev = events(h.drain());
    assert_eq!(
        ev,
        [
            &ended(&sid, EndReason::Shutdown)[..],
            &[ServerEvent::CloseConnection { conn: ConnId(1) }]
        ]
        .concat()
    );
}

#[test]
fn rtp_clock_maps_wall_time_both_ways_and_wraps() {
    let c = RtpClock {
        rtp_base: u32::MAX - 10,
        clock_rate: 90_000,
        wall_epoch: epoch(),
    };
    assert_eq!(c.timestamp_at(epoch()), u32::MAX - 10);
    assert_eq!(c.timestamp_at(epoch() + Duration::from_millis(1)), 79);
    assert_eq!(
        c.timestamp_at(epoch() - Duration::from_secs(1)),
        u32::MAX - 10 - 90_000
    );
}

/// A session's receiver reports about a track's source come out as events (for quality
/// adaptation), each block on its own; blocks about other sources, and strangers' reports,
/// do not.
#[test]
fn reception_reports_about_our_sources_become_events() {
    let mut h = Harness::new(1);
    let a = h.setup(0, UDP, None);
    h.with_session(Method::Play, &a);
    let from_a = RtcpSource::Udp {
        from: "192.0.2.10:5001".parse().unwrap(),
        track: 0,
    };
    let stranger = RtcpSource::Udp {
        from: "192.0.2.99:5001".parse().unwrap(),
        track: 0,
    };
    let block = |ssrc, lost| rtcp::ReportBlock {
        ssrc,
        fraction_lost: lost,
        cumulative_lost: 12,
        extended_highest_seq: 70_000,
        jitter: 90,
        last_sr: 0x1234_5678,
        delay_since_last_sr: 6553,
    };
    let report = RtcpPacket::ReceiverReport(ReceiverReport {
        ssrc: Ssrc(77),
        reports: vec![block(VIDEO, 25), block(Ssrc(5), 200), block(VIDEO, 30)],
    });
    let evs = events(h.rtcp(from_a, std::slice::from_ref(&report)));
    let client = match &evs[..] {
        [ServerEvent::ReceptionReport { client, .. }, ..] => *client,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        evs,
        [
            ServerEvent::ReceptionReport {
                client,
                track: 0,
                block: block(VIDEO, 25)
            },
            ServerEvent::ReceptionReport {
                client,
                track: 0,
                block: block(VIDEO, 30)
            },
        ]
    );
    assert!(h.rtcp(stranger, &[report]).is_empty(), "a stranger");
}

/// Keyframe requests per session: one client asking ten times a second gets one keyframe
/// request passed on per second, exactly; another client's requests have their own budget;
/// a stranger's are ignored; the budget holds on interleaved RTCP too.
#[test]
fn keyframe_requests_are_budgeted_per_session() {
    let mut h = Harness::new(1);
    let a = h.setup(0, UDP, None);
    h.with_session(Method::Play, &a);
    h.open(ConnId(2), "192.0.2.20:40000", "198.51.100.7:8554");
    let (r, _) = h.request_on(
        ConnId(2),
        Request::new(Method::Setup, format!("{URL}/trackID=0"))
            .header("Transport", "RTP/AVP/TCP;interleaved=0-1"),
    );
    let b = r.headers.get_typed::<Session>().unwrap().unwrap().id;
    h.request_on(
        ConnId(2),
        Request::new(Method::Play, URL).header("Session", b.as_str()),
    );
    let from_a = RtcpSource::Udp {
        from: "192.0.2.10:5001".parse().unwrap(),
        track: 0,
    };
    let from_b = RtcpSource::Interleaved {
        conn: ConnId(2),
        channel: 1,
    };
    let stranger = RtcpSource::Udp {
        from: "192.0.2.10:5003".parse().unwrap(),
        track: 0,
    };
    let pli = || [rr(), RtcpPacket::pli(Ssrc(77), VIDEO)];
    let start = h.now;
    let (mut passed_a, mut passed_b) = (Vec::new(), Vec::new());
    // Ten seconds: A asks every 100 ms, B every 500 ms, the stranger every 100 ms.
    for tick in 0..100u32 {
        let at = h.now - start;
        for e in events(h.rtcp(from_a, &pli())) {
            assert_eq!(e, ServerEvent::KeyframeRequest { track: 0 });
            passed_a.push(at);
        }
        if tick % 5 == 0 {
            for e in events(h.rtcp(from_b, &pli())) {
                assert_eq!(e, ServerEvent::KeyframeRequest { track: 0 });
                passed_b.push(at);
            }
        }
        assert!(h.rtcp(stranger, &pli()).is_empty(), "a stranger");
        h.now += Duration::from_millis(100);
        h.server.handle_input(Input::Timeout(h.now)).unwrap();
        h.drain();
    }
    let secs = |v: &[u64]| {
        v.iter()
            .map(|s| Duration::from_millis(*s))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        passed_a,
        secs(&[0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000])
    );
    // B asks at 0, 500, 1000, ...: every other request is within a second of the last passed.
    assert_eq!(passed_b, passed_a, "B's own budget, not A's");
}

/// `config()` with NACK on the video track and its RTX payload type 98.
fn nack_config() -> ServerConfig {
    let mut cfg = config();
    cfg.tracks[0].nack = true;
    cfg.tracks[0].rtx_payload_type = Some(98);
    cfg
}

fn nack(media: Ssrc, lost: &[u16]) -> RtcpPacket {
    RtcpPacket::Nack(crate::rtcp::Nack::new(Ssrc(77), media, lost))
}

/// How a client's NACKs are answered follows how it set up the track: RTX on its own SSRC
/// for `RTP/AVPF` (GStreamer), the original packets for plain `RTP/AVP` on the AVPF medium
/// (ffmpeg), nothing over TCP or on a track without NACK; the NACK turns into a
/// `Retransmit` of the numbers it names, only while playing, only from the client's own
/// address and about the track's SSRC.
#[test]
fn nacks_become_retransmissions_as_the_client_set_up() {
    let mut h = Harness::with(nack_config(), 3);
    // GStreamer: RTP/AVPF on UDP.
    let (r, _) = h.request(
        Request::new(Method::Setup, format!("{URL}/trackID=0"))
            .header("Transport", "RTP/AVPF;unicast;client_port=5000-5001"),
    );
    assert_eq!(r.status, StatusCode::OK);
    let t = r.headers.get_typed::<Transport>().unwrap().unwrap();
    assert_eq!(
        t.0[0].profile,
        TransportProfile::RtpAvpf,
        "the profile asked for"
    );
    assert_eq!(
        t.0[0].ssrc,
        Some(VIDEO.0),
        "the media SSRC, not the RTX one"
    );
    let gst = r.headers.get_typed::<Session>().unwrap().unwrap().id;
    h.setup(1, "RTP/AVPF;unicast;client_port=5002-5003", Some(&gst));
    let (_, ev) = h.with_session(Method::Play, &gst);
    let Some(ServerEvent::Subscribe {
        retransmission:
            first_rtx @ Retransmission::Rtx {
                payload_type: 98,
                ssrc: rtx_ssrc,
                ..
            },
        ..
    }) = ev.first().cloned()
    else {
        panic!("{ev:?}");
    };
    assert!(rtx_ssrc != VIDEO && rtx_ssrc != AUDIO);
    assert!(
        matches!(
            ev[1],
            ServerEvent::Subscribe {
                track: 1,
                retransmission: Retransmission::None,
                ..
            }
        ),
        "no NACK on audio: {ev:?}"
    );

    // ffmpeg: plain RTP/AVP on the same medium, from another port pair.
    h.open(ConnId(2), "192.0.2.10:40001", "198.51.100.7:8554");
    let (r, _) = h.request_on(
        ConnId(2),
        Request::new(Method::Setup, format!("{URL}/trackID=0"))
            .header("Transport", "RTP/AVP;unicast;client_port=6000-6001"),
    );
    assert_eq!(r.status, StatusCode::OK, "AVP accepted on an AVPF medium");
    let ff = r.headers.get_typed::<Session>().unwrap().unwrap().id;
    let (_, ev) = h.request_on(
        ConnId(2),
        Request::new(Method::Play, URL).header("Session", ff.as_str()),
    );
    assert!(matches!(
        ev[0],
        ServerEvent::Subscribe {
            client: ClientId(2),
            retransmission: Retransmission::Original,
            ..
        }
    ));

    // Interleaved, even AVPF: no retransmission.
    h.open(ConnId(3), "192.0.2.30:40000", "198.51.100.7:8554");
    let (r, _) = h.request_on(
        ConnId(3),
        Request::new(Method::Setup, format!("{URL}/trackID=0"))
            .header("Transport", "RTP/AVPF/TCP;interleaved=0-1"),
    );
    assert_eq!(r.status, StatusCode::OK);
    let tcp = r.headers.get_typed::<Session>().unwrap().unwrap().id;
    let (_, ev) = h.request_on(
        ConnId(3),
        Request::new(Method::Play, URL).header("Session", tcp.as_str()),
    );
    assert!(matches!(
        ev[0],
        ServerEvent::Subscribe {
            retransmission: Retransmission::None,
            ..
        }
    ));

    let udp = |port: u16, track| RtcpSource::Udp {
        from: SocketAddr::new("192.0.2.10".parse().unwrap(), port),
        track,
    };
    assert_eq!(
        events(h.rtcp(udp(5001, 0), &[rr(), nack(VIDEO, &[100, 101, 103])])),
        [ServerEvent::Retransmit {
            client: ClientId(1),
            track: 0,
            seqs: vec![100, 101, 103]
        }]
    );
    assert_eq!(
        events(h.rtcp(udp(6001, 0), &[rr(), nack(VIDEO, &[7])])),
        [ServerEvent::Retransmit {
            client: ClientId(2),
            track: 0,
            seqs: vec![7]
        }]
    );
    // Another stream's SSRC, the audio track (no NACK there), a stranger's port, TCP.
    assert!(h.rtcp(udp(5001, 0), &[nack(AUDIO, &[1])]).is_empty());
    assert!(h.rtcp(udp(5003, 1), &[nack(AUDIO, &[1])]).is_empty());
    assert!(h.rtcp(udp(5005, 0), &[nack(VIDEO, &[1])]).is_empty());
    assert!(
        h.rtcp(udp(5003, 0), &[nack(VIDEO, &[1])]).is_empty(),
        "audio's port"
    );
    let on_tcp = RtcpSource::Interleaved {
        conn: ConnId(3),
        channel: 1,
    };
    assert!(h.rtcp(on_tcp, &[rr(), nack(VIDEO, &[1])]).is_empty());
    // Paused: nothing is resent (the client is not listening to the stream).
    h.with_session(Method::Pause, &gst);
    assert!(h.rtcp(udp(5001, 0), &[nack(VIDEO, &[200])]).is_empty());
    // Resumed: the session's RTX SSRC stays, its numbering starts afresh.
    let Retransmission::Rtx {
        initial_seq: first_seq,
        ..
    } = first_rtx
    else {
        unreachable!()
    };
    let (_, ev) = h.with_session(Method::Play, &gst);
    let Some(ServerEvent::Subscribe {
        retransmission: Retransmission::Rtx {
            ssrc, initial_seq, ..
        },
        ..
    }) = ev.first()
    else {
        panic!("{ev:?}");
    };
    assert_eq!(*ssrc, rtx_ssrc);
    assert_ne!(*initial_seq, first_seq);
}

/// At most `retransmissions_per_second` packets per session per second: a client NACKing 30
/// packets every 100 ms gets 100 in each one-second window (the rest dropped), and another
/// session has its own budget.
#[test]
fn retransmissions_are_budgeted_per_session() {
    let mut h = Harness::with(nack_config(), 4);
    let (r, _) = h.request(
        Request::new(Method::Setup, format!("{URL}/trackID=0"))
            .header("Transport", "RTP/AVPF;unicast;client_port=5000-5001"),
    );
    let a = r.headers.get_typed::<Session>().unwrap().unwrap().id;
    h.with_session(Method::Play, &a);
    h.open(ConnId(2), "192.0.2.20:40000", "198.51.100.7:8554");
    let (r, _) = h.request_on(
        ConnId(2),
        Request::new(Method::Setup, format!("{URL}/trackID=0"))
            .header("Transport", "RTP/AVP;unicast;client_port=5000-5001"),
    );
    let b = r.headers.get_typed::<Session>().unwrap().unwrap().id;
    h.request_on(
        ConnId(2),
        Request::new(Method::Play, URL).header("Session", b.as_str()),
    );
    let from = |ip: &str| RtcpSource::Udp {
        from: SocketAddr::new(ip.parse().unwrap(), 5001),
        track: 0,
    };
    let (mut per_second_a, mut per_second_b) = ([0usize; 3], [0usize; 3]);
    let start = h.now;
    let mut next: u16 = 65500; // across the wrap
    for _ in 0..30 {
        let lost: Vec<u16> = (0..30).map(|i| next.wrapping_add(i)).collect();
        next = next.wrapping_add(30);
        let second = (h.now - start).as_secs() as usize;
        for (src, count) in [
            ("192.0.2.10", &mut per_second_a),
            ("192.0.2.20", &mut per_second_b),
        ] {
            for e in events(h.rtcp(from(src), &[rr(), nack(VIDEO, &lost)])) {
                let ServerEvent::Retransmit { seqs, .. } = e else {
                    panic!("{e:?}");
                };
                assert_eq!(seqs[..], lost[..seqs.len()], "in the order asked");
                count[second] += seqs.len();
            }
        }
        h.now += Duration::from_millis(100);
    }
    assert_eq!(per_second_a, [100, 100, 100]);
    assert_eq!(per_second_b, [100, 100, 100]);
}

/// The SDP as configured (AVPF, feedback, RTX) to everyone but live555, which drops AVPF
/// media and gets the plain AVP version.
#[test]
fn live555_gets_the_sdp_without_feedback() {
    let mut cfg = nack_config();
    let video = &mut cfg.sdp.media[0];
    video.proto = "RTP/AVPF".into();
    video.formats.push("98".into());
    video.attributes.splice(
        0..0,
        [
            Attribute::new("rtpmap", "96 H264/90000"),
            Attribute::new("rtcp-fb", "96 nack"),
            Attribute::new("rtpmap", "98 rtx/90000"),
            Attribute::new("fmtp", "98 apt=96"),
        ],
    );
    let mut h = Harness::with(cfg, 5);
    let describe = |h: &mut Harness, ua: Option<&str>| {
        let mut req = Request::new(Method::Describe, URL);
        if let Some(ua) = ua {
            req = req.header("User-Agent", ua);
        }
        let (r, _) = h.request(req);
        assert_eq!(r.status, StatusCode::OK);
        crate::sdp::parse(body(&r)).unwrap().media.remove(0)
    };
    for ua in [None, Some("GStreamer/1.22.0"), Some("Lavf59.27.100")] {
        let m = describe(&mut h, ua);
        assert_eq!(
            (m.proto.as_str(), m.formats.len()),
            ("RTP/AVPF", 2),
            "{ua:?}"
        );
        assert_eq!(m.attribute("rtcp-fb"), Some("96 nack"));
    }
    for ua in [
        "LIVE555 Streaming Media v2020.01.01",
        "VLC media player (LIVE555 Streaming Media v2022.07.14)",
    ] {
        let m = describe(&mut h, Some(ua));
        assert_eq!(m.proto, "RTP/AVP", "{ua}");
        assert_eq!(m.formats, ["96"]);
        assert_eq!(m.attribute("rtcp-fb"), None);
        assert_eq!(m.rtpmap(98), None);
        assert_eq!(m.control(), Some("trackID=0"));
    }
}

/// A NACK as large as a datagram allows, naming the same packet over and over or a quarter of
/// a million packets: one retransmission, or the budget's worth, never more.
#[test]
fn a_hostile_nack_costs_no_more_than_the_budget() {
    let mut h = Harness::with(nack_config(), 6);
    let (r, _) = h.request(
        Request::new(Method::Setup, format!("{URL}/trackID=0"))
            .header("Transport", "RTP/AVPF;unicast;client_port=5000-5001"),
    );
    let a = r.headers.get_typed::<Session>().unwrap().unwrap().id;
    h.with_session(Method::Play, &a);
    let from = RtcpSource::Udp {
        from: "192.0.2.10:5001".parse().unwrap(),
        track: 0,
    };
    let entries = |f: fn(u16) -> crate::rtcp::NackEntry| {
        RtcpPacket::Nack(crate::rtcp::Nack {
            sender: Ssrc(77),
            media: VIDEO,
            entries: (0..16_000u16).map(f).collect(),
        })
    };
    let same = entries(|_| crate::rtcp::NackEntry { pid: 9, blp: 0 });
    let ev = events(h.rtcp(from, &[same]));
    assert_eq!(
        ev,
        [ServerEvent::Retransmit {
            client: ClientId(1),
            track: 0,
            seqs: vec![9]
        }]
    );
    h.now += Duration::from_secs(1);
    let many = entries(|i| crate::rtcp::NackEntry {
        pid: i.wrapping_mul(17),
        blp: 0xffff,
    });
    let ev = events(h.rtcp(from, &[many]));
    let [ServerEvent::Retransmit { seqs, .. }] = &ev[..] else {
        panic!("{ev:?}");
    };
    assert_eq!(seqs.len(), 100);
    assert_eq!(seqs[..18], (0..18).collect::<Vec<u16>>()[..]);
}

// ---------------------------------------------------------------------------------------------
// Access control (Digest authentication), in virtual time.

use crate::rtsp::auth::{Algorithm, Authorization, DigestChallenge, DigestCredentials};
use crate::rtsp::{Header, WwwAuthenticate};

fn auth_config() -> ServerConfig {
    let mut cfg = config();
    cfg.auth = Some(AuthConfig::new(vec![
        User::with_password("viewer", "secret", Roles::READ, REALM),
        User::with_password(
            "publisher",
            "secret2",
            Roles {
                read: false,
                publish: true,
            },
            REALM,
        ),
    ]));
    cfg
}

/// The challenges of a 401, in order.
fn challenges(r: &Response) -> Vec<DigestChallenge> {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    r.headers
        .get_all("WWW-Authenticate")
        .map(|v| match WwwAuthenticate::parse(v) {
            Ok(WwwAuthenticate::Digest(c)) => c,
            other => panic!("{v:?}: {other:?}"),
        })
        .collect()
}

/// `req` with credentials answering `ch`.
fn signed(req: Request, ch: &DigestChallenge, user: &str, password: &str) -> Request {
    let c = DigestCredentials::answer(
        ch,
        user,
        password,
        req.method.as_str(),
        &req.uri.clone(),
        "c0ffee",
    )
    .unwrap();
    req.header("Authorization", Authorization::Digest(c).to_value())
}

fn describe() -> Request {
    Request::new(Method::Describe, URL)
}

/// The MD5 challenge (the last) of a DESCRIBE without credentials on `conn`.
fn md5_challenge(h: &mut Harness, conn: ConnId) -> DigestChallenge {
    let (r, ev) = h.request_on(conn, describe());
    assert!(ev.is_empty());
    challenges(&r).pop().unwrap()
}

#[test]
fn options_passes_everything_else_is_challenged_sha256_first_md5_last() {
    let mut h = Harness::with(auth_config(), 1);
    let (r, _) = h.request(Request::new(Method::Options, "*"));
    assert_eq!(r.status, StatusCode::OK);
    for req in [
        describe(),
        Request::new(Method::Setup, format!("{URL}/trackID=0"))
            .header("Transport", "RTP/AVP;unicast;client_port=5000-5001"),
        Request::new(Method::GetParameter, URL),
    ] {
        let (r, ev) = h.request(req);
        assert!(ev.is_empty(), "no session, no event: {ev:?}");
        let values: Vec<&str> = r.headers.get_all("WWW-Authenticate").collect();
        assert_eq!(values.len(), 2, "{r:?}");
        // Exactly the shape live555 scans, SHA-256 first and MD5 (no algorithm) last.
        assert!(values[0].starts_with(r#"Digest realm="livecast", nonce=""#));
        assert!(values[0].ends_with(", algorithm=SHA-256"), "{}", values[0]);
        assert!(values[1].starts_with(r#"Digest realm="livecast", nonce=""#));
        assert!(!values[1].contains("algorithm") && !values[1].contains("stale"));
        let ch = challenges(&r);
        assert_eq!(ch[0].nonce, ch[1].nonce);
        assert_eq!(ch[0].nonce.len(), 32);
        assert_eq!(r.cseq().unwrap(), Some(h.next_cseq - 1));
    }
    assert_eq!(h.server.session_count(), 0);
}

#[test]
fn md5_and_sha256_credentials_watch() {
    for (which, qop) in [(1, None), (0, None), (1, Some("auth")), (0, Some("auth"))] {
        let mut h = Harness::with(auth_config(), 2);
        let mut ch = challenges(&h.request(describe()).0).remove(which);
        ch.qop = qop.map(str::to_owned);
        assert_eq!(
            ch.algorithm(),
            if which == 0 {
                Algorithm::Sha256
            } else {
                Algorithm::Md5
            }
        );
        let (r, _) = h.request(signed(describe(), &ch, "viewer", "secret"));
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        // The same nonce serves the rest of the session.
        let setup = Request::new(Method::Setup, format!("{URL}/trackID=0"))
            .header("Transport", "RTP/AVP;unicast;client_port=5000-5001");
        let (r, ev) = h.request(signed(setup, &ch, "viewer", "secret"));
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert!(matches!(ev[..], [ServerEvent::SessionStarted { .. }]));
        let sid = r.headers.get_typed::<Session>().unwrap().unwrap().id;
        let play = Request::new(Method::Play, URL).header("Session", sid.as_str());
        let (r, ev) = h.request(signed(play, &ch, "viewer", "secret"));
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert!(ev
            .iter()
            .any(|e| matches!(e, ServerEvent::Subscribe { .. })));
        // A request without credentials on the same connection is still challenged.
        let (r, _) = h.request(Request::new(Method::Pause, URL).header("Session", sid.as_str()));
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(h.server.session_state(&sid), Some(State::Playing));
    }
}

#[test]
fn a_user_without_the_read_role_is_forbidden() {
    let mut h = Harness::with(auth_config(), 3);
    let ch = md5_challenge(&mut h, ConnId(1));
    let (r, ev) = h.request(signed(describe(), &ch, "publisher", "secret2"));
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(ev.is_empty());
}

#[test]
fn nonces_are_bound_to_their_connection_and_go_stale_unused() {
    let mut h = Harness::with(auth_config(), 4);
    let ch = md5_challenge(&mut h, ConnId(1));
    // Right password, but conn 1's nonce on conn 2: a fresh nonce, stale=TRUE (no failure).
    h.open(ConnId(2), "192.0.2.11:40000", "198.51.100.7:8554");
    let (r, ev) = h.request_on(ConnId(2), signed(describe(), &ch, "viewer", "secret"));
    assert!(ev.is_empty());
    let fresh = challenges(&r);
    assert!(fresh.iter().all(|c| c.stale && c.nonce != ch.nonce));
    assert!(r
        .headers
        .get_all("WWW-Authenticate")
        .all(|v| v.ends_with(", stale=TRUE")));
    let (r, _) = h.request_on(ConnId(2), signed(describe(), &fresh[1], "viewer", "secret"));
    assert_eq!(r.status, StatusCode::OK);
    // Used every 59 s, conn 1's nonce stays valid; 61 s unused, it is stale.
    for _ in 0..3 {
        h.advance(Duration::from_secs(59));
        let (r, _) = h.request(signed(describe(), &ch, "viewer", "secret"));
        assert_eq!(r.status, StatusCode::OK);
    }
    h.advance(Duration::from_secs(61));
    let (r, ev) = h.request(signed(describe(), &ch, "viewer", "secret"));
    assert!(ev.is_empty());
    let again = challenges(&r);
    assert!(again[1].stale);
    let (r, _) = h.request(signed(describe(), &again[1], "viewer", "secret"));
    assert_eq!(r.status, StatusCode::OK);
    // A nonce from a closed connection is no good either.
    h.server
        .handle_input(Input::ConnectionClosed {
            now: h.now,
            conn: ConnId(2),
        })
        .unwrap();
    h.drain();
    h.open(ConnId(3), "192.0.2.11:40001", "198.51.100.7:8554");
    let (r, _) = h.request_on(ConnId(3), signed(describe(), &fresh[1], "viewer", "secret"));
    assert!(challenges(&r)[1].stale);
}

/// Sends `req` on `conn` and returns everything that came out (no response expected).
fn send(h: &mut Harness, conn: ConnId, req: Request) -> Vec<Output> {
    let req = req.typed(&CSeq(h.next_cseq));
    h.next_cseq += 1;
    h.server
        .handle_input(Input::Request {
            now: h.now,
            wall: h.wall,
            conn,
            req,
        })
        .unwrap();
    h.drain()
}

#[test]
fn a_wrong_password_is_answered_after_a_random_delay_and_the_connection_closes() {
    let mut delays = Vec::new();
    for seed in 0..8 {
        let mut h = Harness::with(auth_config(), 100 + seed);
        // Another viewer, on conn 2, watching all along.
        h.open(ConnId(2), "192.0.2.20:40000", "198.51.100.7:8554");
        let ch2 = md5_challenge(&mut h, ConnId(2));
        let setup = Request::new(Method::Setup, format!("{URL}/trackID=0"))
            .header("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1");
        let (r, _) = h.request_on(ConnId(2), signed(setup, &ch2, "viewer", "secret"));
        let sid = r.headers.get_typed::<Session>().unwrap().unwrap().id;
        let play = Request::new(Method::Play, URL).header("Session", sid.as_str());
        let (r, _) = h.request_on(ConnId(2), signed(play, &ch2, "viewer", "secret"));
        assert_eq!(r.status, StatusCode::OK);

        let ch = md5_challenge(&mut h, ConnId(1));
        let start = h.now;
        let out = send(
            &mut h,
            ConnId(1),
            signed(describe(), &ch, "viewer", "wrong"),
        );
        assert_eq!(
            events(out),
            vec![ServerEvent::AuthFailed {
                peer: PEER.parse().unwrap(),
                user: "viewer".into(),
                path: "/live".into(),
                locked_out: false,
            }]
        );
        // Nothing yet; more requests on the connection are not answered at all.
        assert!(send(&mut h, ConnId(1), Request::new(Method::Options, "*")).is_empty());
        assert!(send(
            &mut h,
            ConnId(1),
            signed(describe(), &ch, "viewer", "secret")
        )
        .is_empty());
        // The other viewer is served meanwhile.
        let (r, _) = h.request_on(
            ConnId(2),
            signed(
                Request::new(Method::GetParameter, URL).header("Session", sid.as_str()),
                &ch2,
                "viewer",
                "secret",
            ),
        );
        assert_eq!(r.status, StatusCode::OK);
        // Wake up as asked until the answer comes (sender reports of conn 2 aside).
        let out = loop {
            let due = h.timeout.unwrap();
            assert!(due <= start + Duration::from_secs(4), "{:?}", due - start);
            h.now = due;
            h.server.handle_input(Input::Timeout(due)).unwrap();
            let out: Vec<Output> = h
                .drain()
                .into_iter()
                .filter(|o| !matches!(o, Output::Event(ServerEvent::SenderReport { .. })))
                .collect();
            if !out.is_empty() {
                delays.push(due - start);
                break out;
            }
        };
        assert_eq!(out.len(), 2, "{out:?}");
        let Output::Transmit { conn, response } = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(*conn, ConnId(1));
        assert_eq!(challenges(response).len(), 2);
        assert_eq!(response.headers.get("Connection"), Some("close"));
        assert_eq!(
            out[1],
            Output::Event(ServerEvent::CloseConnection { conn: ConnId(1) })
        );
        h.server
            .handle_input(Input::ConnectionClosed {
                now: h.now,
                conn: ConnId(1),
            })
            .unwrap();
        assert!(h.drain().is_empty());
        assert_eq!(h.server.session_state(&sid), Some(State::Playing));
    }
    delays.sort();
    delays.dedup();
    assert!(delays.len() >= 6, "random delays: {delays:?}");
}

#[test]
fn an_unknown_user_is_a_failure_logged_in_a_fixed_shape() {
    let mut h = Harness::with(auth_config(), 5);
    let ch = md5_challenge(&mut h, ConnId(1));
    let out = send(&mut h, ConnId(1), signed(describe(), &ch, "ro\"ot", "x"));
    let [ServerEvent::AuthFailed {
        peer, user, path, ..
    }] = &events(out)[..]
    else {
        panic!()
    };
    assert_eq!(
        failure_log_line(peer.ip(), user, path),
        r#"authentication failed: address=192.0.2.10 user="ro\"ot" path="/live""#
    );
    // A response with another algorithm's HA1 (SHA-256 answer labelled MD5) is wrong too.
    let mut c = DigestCredentials::answer(
        &DigestChallenge {
            algorithm: Some(Algorithm::Sha256),
            ..ch.clone()
        },
        "viewer",
        "secret",
        "DESCRIBE",
        URL,
        "c",
    )
    .unwrap();
    c.algorithm = None;
    h.open(ConnId(2), "192.0.2.10:40001", "198.51.100.7:8554");
    let ch2 = md5_challenge(&mut h, ConnId(2));
    c.nonce = ch2.nonce;
    let req = describe().header("Authorization", Authorization::Digest(c).to_value());
    assert!(matches!(
        &events(send(&mut h, ConnId(2), req))[..],
        [ServerEvent::AuthFailed { .. }]
    ));
}

#[test]
fn twenty_failures_in_a_minute_lock_that_address_out_and_no_other() {
    let mut h = Harness::with(auth_config(), 6);
    let attacker = "192.0.2.66";
    for i in 0..20u64 {
        let conn = ConnId(100 + i);
        h.open(
            conn,
            &format!("{attacker}:{}", 41000 + i),
            "198.51.100.7:8554",
        );
        let ch = md5_challenge(&mut h, conn);
        let ev = events(send(
            &mut h,
            conn,
            signed(describe(), &ch, "viewer", "guess"),
        ));
        let [ServerEvent::AuthFailed { locked_out, .. }] = ev[..] else {
            panic!("{ev:?}")
        };
        assert_eq!(locked_out, i == 19, "failure {i}");
        h.advance(Duration::from_secs(2));
    }
    // Locked: even OPTIONS gets 403 at once and the connection closes; right credentials too.
    h.open(
        ConnId(200),
        &format!("{attacker}:42000"),
        "198.51.100.7:8554",
    );
    let out = send(&mut h, ConnId(200), Request::new(Method::Options, "*"));
    let Output::Transmit { response, .. } = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(response.status, StatusCode::FORBIDDEN);
    assert_eq!(
        out[1],
        Output::Event(ServerEvent::CloseConnection { conn: ConnId(200) })
    );
    // Another address is not affected.
    h.open(ConnId(300), "192.0.2.67:40000", "198.51.100.7:8554");
    let ch = md5_challenge(&mut h, ConnId(300));
    let (r, _) = h.request_on(ConnId(300), signed(describe(), &ch, "viewer", "secret"));
    assert_eq!(r.status, StatusCode::OK);
    // Five minutes later the address may try again.
    h.advance(Duration::from_secs(301));
    h.open(
        ConnId(201),
        &format!("{attacker}:42001"),
        "198.51.100.7:8554",
    );
    let ch = md5_challenge(&mut h, ConnId(201));
    let (r, _) = h.request_on(ConnId(201), signed(describe(), &ch, "viewer", "secret"));
    assert_eq!(r.status, StatusCode::OK);
}

#[test]
fn failures_spread_over_more_than_the_window_do_not_lock_out() {
    let mut h = Harness::with(auth_config(), 7);
    for i in 0..40u64 {
        let conn = ConnId(100 + i);
        h.open(
            conn,
            &format!("192.0.2.66:{}", 41000 + i),
            "198.51.100.7:8554",
        );
        let ch = md5_challenge(&mut h, conn);
        let ev = events(send(
            &mut h,
            conn,
            signed(describe(), &ch, "viewer", "guess"),
        ));
        assert!(
            matches!(
                ev[..],
                [ServerEvent::AuthFailed {
                    locked_out: false,
                    ..
                }]
            ),
            "{i}: {ev:?}"
        );
        // 10 failures a minute, within the budget.
        h.advance(Duration::from_secs(6));
    }
}

#[test]
fn malformed_or_basic_credentials_are_challenged_never_a_panic() {
    let mut h = Harness::with(auth_config(), 8);
    for v in [
        "",
        "Digest",
        "Basic dmlld2VyOnNlY3JldA==",
        r#"Digest username="viewer""#,
        r#"Digest username="viewer", realm="livecast", nonce="x", uri="/", response="y", algorithm=SHA-512"#,
        "Digest \u{0}\u{7f}\"",
    ] {
        let (r, ev) = h.request(describe().header("Authorization", v));
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{v:?}");
        assert!(ev.is_empty(), "{v:?}");
    }
}

mod publish;
/// A harness whose connection 2 is TLS (RTSPS), from another address.
fn with_tls_conn(cfg: ServerConfig) -> Harness {
    let mut h = Harness::with(cfg, 9);
    let input = Input::ConnectionOpened {
        now: h.now,
        conn: ConnId(2),
        peer: "192.0.2.20:40000".parse().unwrap(),
        local: "198.51.100.7:8322".parse().unwrap(),
        tls: true,
    };
    h.server.handle_input(input).unwrap();
    assert!(h.drain().is_empty());
    h
}

#[test]
fn over_tls_media_goes_only_interleaved() {
    let mut h = with_tls_conn(config());
    let setup =
        |t: &str| Request::new(Method::Setup, format!("{URL}/trackID=0")).header("Transport", t);
    let (r, ev) = h.request_on(ConnId(2), setup("RTP/AVP;unicast;client_port=5000-5001"));
    assert_eq!(r.status, StatusCode::UNSUPPORTED_TRANSPORT);
    assert_eq!(
        body(&r),
        "over TLS media is encrypted: RTP/SAVP(F);unicast;client_port=a-b (SRTP keyed by the \
         SDP's MIKEY), or RTP/AVP(F)/TCP;interleaved=a-b in the connection\r\n"
    );
    assert!(ev.is_empty());
    // Offered both, the TLS connection gets the interleaved one.
    let (r, _) = h.request_on(
        ConnId(2),
        setup("RTP/AVP;unicast;client_port=5000-5001,RTP/AVP/TCP;unicast;interleaved=0-1"),
    );
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers.get("Transport"),
        Some("RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=11111111")
    );
    // The plain connection still gets UDP.
    let (r, _) = h.request(setup("RTP/AVP;unicast;client_port=5000-5001"));
    assert_eq!(r.status, StatusCode::OK);
}

#[test]
fn over_tls_describe_offers_savp_with_a_mikey_key_and_setup_hands_both_keys_over() {
    use crate::mikey::MikeyMessage;
    let mut h = with_tls_conn(config());
    let (r, _) = h.request(Request::new(Method::Describe, URL));
    let plain = crate::sdp::parse(body(&r)).unwrap();
    assert!(plain.media.iter().all(|m| !m.proto.contains("SAVP")));
    let (r, _) = h.request_on(ConnId(2), Request::new(Method::Describe, URL));
    let sdp = crate::sdp::parse(body(&r)).unwrap();
    let mut key = None;
    for (m, track) in sdp.media.iter().zip(&config().tracks) {
        assert!(m.proto.starts_with("RTP/SAVP"), "{}", m.proto);
        let mikey = MikeyMessage::from_key_mgmt(m.attribute("key-mgmt").unwrap()).unwrap();
        assert_eq!(mikey.sessions[0].ssrc, track.ssrc.0);
        let k = mikey.master_key().unwrap();
        assert_eq!(*key.get_or_insert(k), k, "one key per connection");
    }
    let ours = key.unwrap();
    let theirs = MikeyMessage::srtp(9, &[1], vec![5; 30], 0, vec![0; 16]).key_mgmt();
    let km = format!(
        "prot=mikey; uri=\"{URL}/trackID=0\"; data=\"{}\"",
        &theirs["mikey ".len()..]
    );
    let setup = Request::new(Method::Setup, format!("{URL}/trackID=0"))
        .header("Transport", "RTP/SAVP;unicast;client_port=5000-5001")
        .header("KeyMgmt", km);
    let (r, _) = h.request_on(ConnId(2), setup);
    assert_eq!(r.status, StatusCode::OK, "{}", body(&r));
    assert!(r
        .headers
        .get("Transport")
        .unwrap()
        .starts_with("RTP/SAVP;unicast;"));
    let session = r
        .headers
        .get("Session")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let (_, ev) = h.request_on(
        ConnId(2),
        Request::new(Method::Play, URL).header("Session", session),
    );
    let srtp = ev.iter().find_map(|e| match e {
        ServerEvent::Subscribe { srtp, .. } => Some(*srtp),
        _ => None,
    });
    let expected = SrtpKeys {
        send: ours,
        receive: Some(([5; 16], [5; 14])),
    };
    assert_eq!(srtp, Some(Some(expected)));
    // A second session on the connection wants the key the first one holds: DESCRIBE again.
    let again = Request::new(Method::Setup, format!("{URL}/trackID=0"))
        .header("Transport", "RTP/SAVP;unicast;client_port=5002-5003");
    let (r, _) = h.request_on(ConnId(2), again.clone());
    assert_eq!(r.status.0, 463, "{}", body(&r));
    let (r, _) = h.request_on(ConnId(2), Request::new(Method::Describe, URL));
    let fresh = crate::sdp::parse(body(&r)).unwrap();
    let fresh = MikeyMessage::from_key_mgmt(fresh.media[0].attribute("key-mgmt").unwrap())
        .unwrap()
        .master_key()
        .unwrap();
    assert_ne!(fresh, ours);
    let (r, _) = h.request_on(ConnId(2), again);
    assert_eq!(r.status, StatusCode::OK, "{}", body(&r));
    // SAVP on the plain connection is not served.
    let (r, _) = h.request(
        Request::new(Method::Setup, format!("{URL}/trackID=0"))
            .header("Transport", "RTP/SAVP;unicast;client_port=5000-5001"),
    );
    assert_eq!(r.status, StatusCode::UNSUPPORTED_TRANSPORT);
}

#[test]
fn basic_credentials_count_only_over_tls() {
    let mut h = with_tls_conn(auth_config());
    let basic = |user_pw: &str| {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(user_pw);
        describe().header("Authorization", format!("Basic {b64}"))
    };
    // Over plain RTSP, Basic is asked again (a Digest challenge), not checked.
    let (r, ev) = h.request(basic("viewer:secret"));
    assert_eq!(challenges(&r).len(), 2);
    assert!(ev.is_empty());
    // Over TLS, the right password watches; a user without the read role is forbidden.
    let (r, ev) = h.request_on(ConnId(2), basic("viewer:secret"));
    assert_eq!(r.status, StatusCode::OK);
    assert!(ev.is_empty());
    let (r, _) = h.request_on(ConnId(2), basic("publisher:secret2"));
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A wrong one is a failure like a wrong Digest response: logged, answered late.
    let out = send(&mut h, ConnId(2), basic("viewer:wrong"));
    assert_eq!(
        events(out),
        vec![ServerEvent::AuthFailed {
            peer: "192.0.2.20:40000".parse().unwrap(),
            user: "viewer".into(),
            path: "/live".into(),
            locked_out: false,
        }]
    );
}

/// Renditions (issue 13): `live/160x120` serves our track 2 as its `trackID=0` and shares
/// the audio (track 1) as its `trackID=1`; the main path keeps its two tracks.
#[test]
fn own_paths_serve_their_tracks_and_share_the_audio() {
    const SMALL: Ssrc = Ssrc(0x3333_3333);
    let mut cfg = config();
    let mut small = cfg.tracks[0].clone();
    small.ssrc = SMALL;
    cfg.tracks.push(small);
    cfg.sdp.media.push(MediaDescription {
        media: "audio".into(),
        proto: "RTP/AVP".into(),
        formats: vec!["97".into()],
        attributes: vec![Attribute::new("control", "trackID=1")],
        ..MediaDescription::default()
    });
    let mut rsdp = cfg.sdp.clone();
    rsdp.session_name = "small".into();
    cfg.own_paths.push(OwnPath {
        path: "live/160x120".into(),
        sdp: rsdp,
        tracks: vec![2, 1],
    });
    let mut h = Harness::with(cfg, 1);
    let r160 = format!("{URL}/160x120");
    let (r, _) = h.request(Request::new(Method::Describe, r160.as_str()));
    assert_eq!(r.status, StatusCode::OK);
    assert!(body(&r).contains("s=small\r\n"), "{}", body(&r));
    let (r, _) = h.request(Request::new(Method::Describe, URL));
    assert!(body(&r).contains("s=Livecast\r\n"));

    let setup = |h: &mut Harness, url: String, session: Option<&str>| {
        let mut req = Request::new(Method::Setup, url).header("Transport", UDP);
        if let Some(s) = session {
            req = req.header("Session", s);
        }
        h.request(req)
    };
    let (r, ev) = setup(&mut h, format!("{r160}/trackID=0"), None);
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(r
        .headers
        .get("Transport")
        .unwrap()
        .ends_with("ssrc=33333333"));
    let sid = r.headers.get_typed::<Session>().unwrap().unwrap().id;
    assert!(!ev
        .iter()
        .any(|e| matches!(e, ServerEvent::Subscribe { .. })));
    let (r, _) = setup(&mut h, format!("{r160}/trackID=1"), Some(&sid));
    assert!(r
        .headers
        .get("Transport")
        .unwrap()
        .ends_with("ssrc=22222222"));
    let (r, ev) = h.request(Request::new(Method::Play, r160.as_str()).header("Session", &sid));
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let rtp_info = r.headers.get("RTP-Info").unwrap();
    assert!(rtp_info.contains("/live/160x120/trackID=0;"), "{rtp_info}");
    let mut tracks: Vec<usize> = ev
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Subscribe { track, .. } => Some(*track),
            _ => None,
        })
        .collect();
    tracks.sort();
    assert_eq!(tracks, [1, 2]);

    // Nothing else: the rendition's track is not on the main path, and unknown sizes or
    // track numbers are 404.
    for bad in [
        format!("{URL}/trackID=2"),
        format!("{URL}/160x121/trackID=0"),
        format!("{r160}/trackID=2"),
        format!("{r160}/trackID=x"),
    ] {
        let (r, _) = setup(&mut h, bad.clone(), None);
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{bad}");
    }
    let (r, _) = h.request(Request::new(Method::Describe, format!("{URL}/160x121")));
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
