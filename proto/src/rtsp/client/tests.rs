//! The client session in virtual time: `now` is advanced by hand, the server's side is written
//! out as responses, and every request is compared as the bytes that would go on the wire.

use super::*;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
const URL: &str = "rtsp://cam.example:8554/live";

/// Two tracks, an aggregate control URL (GStreamer's shape).
const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=live\r\nt=0 0\r\na=control:*\r\n\
    m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:stream=0\r\n\
    m=audio 0 RTP/AVP 97\r\na=rtpmap:97 OPUS/48000/2\r\na=control:stream=1\r\n";

fn cfg(transport: TransportMode) -> ClientConfig {
    ClientConfig {
        transport,
        user_agent: "test/1".into(),
        ..ClientConfig::default()
    }
}

/// A client under test and its virtual clock.
struct Peer {
    c: Client,
    t0: Instant,
    now: Instant,
}

impl Peer {
    fn new(cfg: ClientConfig) -> Self {
        Self::with_seed(cfg, 7)
    }

    fn with_seed(cfg: ClientConfig, seed: u64) -> Self {
        let t0 = Instant::now();
        Peer {
            c: Client::new(cfg, URL, t0, seed),
            t0,
            now: t0,
        }
    }

    /// A client whose first `Connect` is out.
    fn started(cfg: ClientConfig) -> Self {
        let mut p = Self::new(cfg);
        p.drain();
        p
    }

    /// A client streaming over TCP: described, set up, playing, one packet in.
    fn streaming(cfg: ClientConfig) -> Self {
        let mut p = Self::started(cfg);
        p.describe("OPTIONS");
        p.setup_tcp_and_play(3);
        p.media(0);
        p
    }

    /// A client whose first UDP SETUP (CSeq 3) is out.
    fn first_udp_setup(transport: TransportMode) -> Self {
        let mut p = Self::started(cfg(transport));
        p.describe("OPTIONS");
        p.bound(0, 50_000);
        p
    }

    /// Seconds since the start, for readable assertions.
    fn at(&self, t: Instant) -> Duration {
        t - self.t0
    }

    /// Everything queued, up to the next timeout (which is returned last).
    fn drain(&mut self) -> Vec<Output> {
        let mut v = Vec::new();
        loop {
            let o = self.c.poll_output();
            let end = matches!(o, Output::Timeout(_));
            v.push(o);
            if end {
                return v;
            }
        }
    }

    fn input(&mut self, i: Input) -> Vec<Output> {
        self.c.handle_input(i);
        self.drain()
    }

    fn advance_to(&mut self, t: Instant) -> Vec<Output> {
        self.now = self.now.max(t);
        self.input(Input::Timeout(self.now))
    }

    fn advance(&mut self, d: Duration) -> Vec<Output> {
        let t = self.now + d;
        self.advance_to(t)
    }

    fn connected(&mut self) -> Vec<Output> {
        let now = self.now;
        self.input(Input::Connected { now })
    }

    fn respond(&mut self, resp: Response) -> Vec<Output> {
        let now = self.now;
        self.input(Input::Response { now, resp })
    }

    fn media(&mut self, track: usize) -> Vec<Output> {
        let now = self.now;
        self.input(Input::MediaSeen { now, track })
    }

    fn lost(&mut self, why: &str, by_peer: bool) -> Vec<Output> {
        let now = self.now;
        self.input(Input::ConnectionLost {
            now,
            why: why.into(),
            by_peer,
        })
    }

    fn command(&mut self, cmd: Command) -> Vec<Output> {
        let now = self.now;
        self.input(Input::Command { now, cmd })
    }

    fn bound(&mut self, track: usize, rtp_port: u16) -> Vec<Output> {
        let now = self.now;
        self.input(Input::UdpBound {
            now,
            track,
            rtp_port,
            rtcp_port: rtp_port + 1,
        })
    }

    /// Runs OPTIONS and DESCRIBE with `public` and [`SDP`].
    fn describe(&mut self, public: &str) -> Vec<Output> {
        self.connected();
        self.respond(ok(1).header("Public", public));
        self.respond(sdp_response(2))
    }

    /// Sets up both tracks over TCP, starting at `cseq`, and plays.
    fn setup_tcp_and_play(&mut self, cseq: u32) -> Vec<Output> {
        self.respond(ok(cseq).header("Session", "s1;timeout=30").header(
            "Transport",
            "RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=0000abcd",
        ));
        self.respond(
            ok(cseq + 1)
                .header("Session", "s1;timeout=30")
                .header("Transport", "RTP/AVP/TCP;unicast;interleaved=2-3"),
        );
        self.respond(ok(cseq + 2).header("RTP-Info", RTP_INFO))
    }
}

const RTP_INFO: &str = "url=rtsp://cam.example:8554/live/stream=0;seq=10;rtptime=1000,\
    url=rtsp://cam.example:8554/live/stream=1;seq=20;rtptime=2000";

fn ok(cseq: u32) -> Response {
    Response::new(StatusCode::OK).header("CSeq", cseq.to_string())
}

fn status(code: u16, cseq: u32) -> Response {
    Response::new(StatusCode(code)).header("CSeq", cseq.to_string())
}

fn sdp_response(cseq: u32) -> Response {
    ok(cseq)
        .header("Content-Base", "rtsp://cam.example:8554/live/")
        .body("application/sdp", SDP.as_bytes().to_vec())
}

/// The requests among `outs`, as written on the wire.
fn wire(outs: &[Output]) -> Vec<String> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Transmit(r) => {
                let mut b = Vec::new();
                r.write_to(&mut b);
                Some(String::from_utf8(b).expect("requests are text"))
            }
            _ => None,
        })
        .collect()
}

/// `METHOD URI` of each request among `outs`.
fn lines(outs: &[Output]) -> Vec<String> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Transmit(r) => Some(format!("{} {}", r.method, r.uri)),
            _ => None,
        })
        .collect()
}

fn events(outs: &[Output]) -> Vec<ClientEvent> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn timeout(outs: &[Output]) -> Instant {
    match outs.last() {
        Some(Output::Timeout(t)) => *t,
        o => panic!("no timeout last: {o:?}"),
    }
}

/// Events other than the periodic ones.
fn notable(outs: &[Output]) -> Vec<ClientEvent> {
    events(outs)
        .into_iter()
        .filter(|e| !matches!(e, ClientEvent::StatsDue | ClientEvent::SendReceiverReports))
        .collect()
}

#[test]
fn happy_path_over_udp_with_exact_requests() {
    let mut p = Peer::new(cfg(TransportMode::Auto));
    let out = p.drain();
    assert_eq!(
        out[..2],
        [
            Output::Event(ClientEvent::Connecting),
            Output::Connect {
                host: "cam.example".into(),
                port: 8554,
                tls: false
            }
        ]
    );
    let out = p.connected();
    assert_eq!(
        wire(&out),
        ["OPTIONS rtsp://cam.example:8554/live RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: test/1\r\n\r\n"]
    );
    assert_eq!(p.at(timeout(&out)), 10 * SEC, "the request timeout");
    let out = p.respond(ok(1).header("Public", "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN"));
    assert_eq!(
        wire(&out),
        [
            "DESCRIBE rtsp://cam.example:8554/live RTSP/1.0\r\nAccept: application/sdp\r\n\
          CSeq: 2\r\nUser-Agent: test/1\r\n\r\n"
        ]
    );
    let out = p.respond(sdp_response(2));
    let ev = events(&out);
    let ClientEvent::Described {
        base, tracks, sdp, ..
    } = &ev[0]
    else {
        panic!("{ev:?}")
    };
    assert_eq!(
        (base.as_str(), sdp.as_str()),
        ("rtsp://cam.example:8554/live/", SDP)
    );
    assert_eq!(
        tracks
            .iter()
            .map(|t| t.control.as_str())
            .collect::<Vec<_>>(),
        [
            "rtsp://cam.example:8554/live/stream=0",
            "rtsp://cam.example:8554/live/stream=1"
        ]
    );
    assert_eq!(ev[1], ClientEvent::TracksReset { tcp: false });
    assert_eq!(out[out.len() - 2], Output::BindUdp { track: 0 });
    let out = p.bound(0, 50_000);
    assert_eq!(
        wire(&out),
        ["SETUP rtsp://cam.example:8554/live/stream=0 RTSP/1.0\r\n\
          Transport: RTP/AVP;unicast;client_port=50000-50001\r\nCSeq: 3\r\n\
          User-Agent: test/1\r\n\r\n"]
    );
    let out = p.respond(ok(3).header("Session", "s1;timeout=30").header(
        "Transport",
        "RTP/AVP;unicast;client_port=50000-50001;server_port=6000-6001;ssrc=00000005",
    ));
    assert_eq!(
        events(&out),
        [
            ClientEvent::TransportChosen {
                track: 0,
                link: TrackLink::Udp {
                    source: None,
                    server_ports: Some((6000, 6001))
                },
                ssrc: Some(5),
                srtp: None
            },
            ClientEvent::NatPunch { track: 0 }
        ]
    );
    assert_eq!(out[out.len() - 2], Output::BindUdp { track: 1 });
    let out = p.bound(1, 50_002);
    assert_eq!(
        wire(&out),
        ["SETUP rtsp://cam.example:8554/live/stream=1 RTSP/1.0\r\n\
          Transport: RTP/AVP;unicast;client_port=50002-50003\r\nCSeq: 4\r\n\
          User-Agent: test/1\r\nSession: s1\r\n\r\n"]
    );
    let out = p.respond(ok(4).header("Session", "s1;timeout=30").header(
        "Transport",
        "RTP/AVP;unicast;source=10.0.0.9;server_port=6002-6003",
    ));
    assert_eq!(
        wire(&out),
        [
            "PLAY rtsp://cam.example:8554/live RTSP/1.0\r\nRange: npt=0.000-\r\nCSeq: 5\r\n\
          User-Agent: test/1\r\nSession: s1\r\n\r\n"
        ]
    );
    let ClientEvent::TransportChosen { link, .. } = &events(&out)[0] else {
        panic!("{out:?}")
    };
    assert_eq!(
        *link,
        TrackLink::Udp {
            source: Some("10.0.0.9".parse().unwrap()),
            server_ports: Some((6002, 6003))
        }
    );
    let out = p.respond(ok(5).header("RTP-Info", RTP_INFO));
    assert_eq!(
        events(&out),
        [
            ClientEvent::Playing {
                rtp_info: vec![
                    TrackRtpInfo {
                        track: 0,
                        rtptime: Some(1000),
                        seq: Some(10)
                    },
                    TrackRtpInfo {
                        track: 1,
                        rtptime: Some(2000),
                        seq: Some(20)
                    }
                ]
            },
            ClientEvent::NatPunch { track: 0 },
            ClientEvent::NatPunch { track: 1 }
        ]
    );
    // Waiting for media: the UDP grace is the first deadline.
    assert_eq!(p.at(timeout(&out)), 1 * SEC, "the first statistics tick");
    p.advance(500 * MS);
    let out = p.media(0);
    assert_eq!(events(&out), [ClientEvent::Streaming { tcp: false }]);
    assert!(events(&p.media(1)).is_empty(), "announced once");
    assert!(!p.c.is_tcp());
}

#[test]
fn unsupported_transport_falls_back_to_tcp() {
    let mut p = Peer::first_udp_setup(TransportMode::Auto);
    // 461 before any session exists: no TEARDOWN needed, SETUP again over TCP.
    let out = p.respond(status(461, 3));
    assert_eq!(notable(&out), [ClientEvent::TracksReset { tcp: true }]);
    assert_eq!(
        wire(&out),
        ["SETUP rtsp://cam.example:8554/live/stream=0 RTSP/1.0\r\n\
          Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nCSeq: 4\r\n\
          User-Agent: test/1\r\n\r\n"]
    );
    let out = p.setup_tcp_and_play(4);
    assert_eq!(lines(&out), Vec::<String>::new());
    assert!(matches!(events(&out)[..], [ClientEvent::Playing { .. }]));
    assert_eq!(events(&p.media(0)), [ClientEvent::Streaming { tcp: true }]);
    assert!(p.c.is_tcp());
}

#[test]
fn forced_udp_refused_is_fatal() {
    let mut p = Peer::first_udp_setup(TransportMode::Udp);
    let out = p.respond(status(461, 3));
    assert_eq!(
        notable(&out),
        [ClientEvent::Ended(End::Failed(
            "SETUP refused: 461 Unsupported transport".into()
        ))]
    );
    assert!(p.c.is_ended());
}

#[test]
fn silent_udp_falls_back_to_tcp_after_the_grace() {
    let mut p = Peer::first_udp_setup(TransportMode::Auto);
    p.respond(
        ok(3)
            .header("Session", "s1")
            .header("Transport", "RTP/AVP;unicast;server_port=6000-6001"),
    );
    p.bound(1, 50_002);
    p.respond(
        ok(4)
            .header("Session", "s1")
            .header("Transport", "RTP/AVP;unicast;server_port=6002-6003"),
    );
    let played = p.now;
    p.respond(ok(5));
    // Nothing arrives: statistics at 1 s, then the fallback at exactly 2 s.
    let out = p.advance(1999 * MS);
    assert!(lines(&out).is_empty(), "{out:?}");
    let out = p.advance_to(played + 2 * SEC);
    assert_eq!(notable(&out), [ClientEvent::SendBye]);
    assert_eq!(
        wire(&out),
        [
            "TEARDOWN rtsp://cam.example:8554/live RTSP/1.0\r\nCSeq: 6\r\nUser-Agent: test/1\r\n\
          Session: s1\r\n\r\n"
        ]
    );
    let out = p.respond(ok(6));
    assert_eq!(notable(&out), [ClientEvent::TracksReset { tcp: true }]);
    assert_eq!(
        wire(&out),
        ["SETUP rtsp://cam.example:8554/live/stream=0 RTSP/1.0\r\n\
          Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nCSeq: 7\r\n\
          User-Agent: test/1\r\n\r\n"]
    );
    p.setup_tcp_and_play(7);
    assert_eq!(events(&p.media(1)), [ClientEvent::Streaming { tcp: true }]);
    // A reconnect later keeps TCP.
    let out = p.lost("reset", false);
    let retry = timeout(&out);
    p.advance_to(retry);
    let out = p.describe("OPTIONS");
    assert_eq!(
        wire(&out),
        ["SETUP rtsp://cam.example:8554/live/stream=0 RTSP/1.0\r\n\
          Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nCSeq: 3\r\n\
          User-Agent: test/1\r\n\r\n"]
    );
}

#[test]
fn keep_alive_by_get_parameter_every_half_timeout_then_options_once_refused() {
    let mut p = Peer::started(cfg(TransportMode::Tcp));
    p.describe("OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER, TEARDOWN");
    let started = p.now;
    p.setup_tcp_and_play(3);
    let mut sent = Vec::new();
    let mut seen = Vec::new();
    // 40 s with media every 100 ms: keep-alives at 15 s and 30 s (timeout=30).
    while p.now < started + 40 * SEC {
        let out = p.advance(100 * MS);
        p.media(0);
        for l in lines(&out) {
            sent.push((p.at(p.now) - p.at(started), l));
        }
        seen.extend(
            events(&out)
                .into_iter()
                .filter(|e| *e == ClientEvent::KeepAliveSent),
        );
        if sent.len() == 1 && !seen.is_empty() && seen.len() == 1 {
            // The first is refused: from then on OPTIONS.
            p.respond(status(405, 6));
            seen.push(ClientEvent::KeepAliveSent);
        }
    }
    assert_eq!(
        sent,
        [
            (
                15 * SEC,
                "GET_PARAMETER rtsp://cam.example:8554/live".to_owned()
            ),
            (30 * SEC, "OPTIONS rtsp://cam.example:8554/live".to_owned())
        ]
    );
}

#[test]
fn keep_alive_by_options_when_public_lacks_get_parameter() {
    let mut p = Peer::started(cfg(TransportMode::Tcp));
    p.describe("OPTIONS, DESCRIBE, SETUP, PLAY");
    p.respond(ok(3).header("Session", "s1")); // default timeout 60 s
    p.respond(ok(4).header("Session", "s1"));
    p.respond(ok(5));
    let start = p.now;
    let mut at = Vec::new();
    while p.now < start + 65 * SEC {
        let out = p.advance(SEC);
        p.media(0);
        at.extend(lines(&out).into_iter().map(|l| (p.now - start, l)));
    }
    assert_eq!(
        at,
        [
            (30 * SEC, "OPTIONS rtsp://cam.example:8554/live".to_owned()),
            (60 * SEC, "OPTIONS rtsp://cam.example:8554/live".to_owned())
        ]
    );
}

#[test]
fn unanswered_request_reconnects_with_exact_backoff() {
    let mut p = Peer::started(cfg(TransportMode::Tcp));
    let mut schedule = Vec::new();
    // Five attempts whose OPTIONS is never answered.
    for _ in 0..5 {
        let out = p.connected();
        assert_eq!(lines(&out), ["OPTIONS rtsp://cam.example:8554/live"]);
        let out = p.advance_to(timeout(&out));
        let ev = events(&out);
        let [ClientEvent::Reconnecting {
            attempt,
            reason,
            retry_in,
        }] = &ev[..]
        else {
            panic!("{ev:?}")
        };
        assert_eq!(
            reason,
            "no response to OPTIONS rtsp://cam.example:8554/live within 10 s"
        );
        assert_eq!(out[0], Output::Disconnect);
        schedule.push((*attempt, retry_in.as_millis()));
        let out = p.advance_to(timeout(&out));
        assert!(matches!(out[0], Output::Connect { .. }), "{out:?}");
    }
    // 0.5 s doubling to 8 s, each stretched by the seeded jitter (under 5 %).
    assert_eq!(
        schedule,
        [(1, 501), (2, 1008), (3, 2071), (4, 4085), (5, 8385)]
    );
    // A session that streams resets the backoff.
    p.describe("OPTIONS");
    p.setup_tcp_and_play(3);
    p.media(0);
    let out = p.lost("connection reset", false);
    let ev = events(&out);
    assert!(
        matches!(&ev[..], [ClientEvent::Reconnecting { attempt: 1, reason, retry_in }]
            if reason == "connection reset" && retry_in.as_millis() / 100 == 5),
        "{ev:?}"
    );
}

#[test]
fn refused_connections_back_off_and_stop_ends_the_wait() {
    let mut p = Peer::started(cfg(TransportMode::Auto));
    let now = p.now;
    let out = p.input(Input::ConnectFailed {
        now,
        why: "connection refused".into(),
    });
    let ev = events(&out);
    assert!(
        matches!(&ev[..], [ClientEvent::Reconnecting { attempt: 1, reason, retry_in }]
            if reason == "cannot connect to cam.example:8554: connection refused"
                && (500 * MS..525 * MS).contains(retry_in)),
        "{ev:?}"
    );
    let out = p.command(Command::Stop);
    assert_eq!(out[..1], [Output::Event(ClientEvent::Ended(End::Stopped))]);
    assert!(p.c.is_ended());
}

#[test]
fn rtsps_connects_with_tls_and_takes_media_interleaved() {
    let t0 = Instant::now();
    let mut p = Peer {
        c: Client::new(
            cfg(TransportMode::Auto),
            "rtsps://v:pw@cam.example/live",
            t0,
            7,
        ),
        t0,
        now: t0,
    };
    let out = p.drain();
    assert_eq!(
        out[1],
        Output::Connect {
            host: "cam.example".into(),
            port: 322,
            tls: true
        }
    );
    let out = p.connected();
    assert_eq!(lines(&out), ["OPTIONS rtsps://cam.example/live"]);
    p.respond(ok(1));
    let sdp = SDP.replace("a=control:*\r\n", "");
    let out = p.respond(ok(2).body("application/sdp", sdp.into_bytes()));
    // No UDP port pair is bound: the first SETUP asks for interleaved media at once.
    assert_eq!(
        wire(&out),
        ["SETUP rtsps://cam.example/live/stream=0 RTSP/1.0\r\n\
          Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nCSeq: 3\r\nUser-Agent: test/1\r\n\r\n"]
    );
}

/// [`SDP`] as our server answers a TLS connection: `RTP/SAVP` with `a=key-mgmt:mikey`
/// holding `key` (16 bytes of 1, then a 14-byte salt of 2) for each medium.
fn secure_sdp() -> (String, SrtpMasterKey) {
    let key = ([1u8; 16], [2u8; 14]);
    let mut tek = key.0.to_vec();
    tek.extend_from_slice(&key.1);
    let km = crate::mikey::MikeyMessage::srtp(7, &[5], tek, 0, vec![3; 16]).key_mgmt();
    let sdp = SDP
        .replace("a=control:*\r\n", "")
        .replace("RTP/AVP", "RTP/SAVP")
        .replace(
            "a=control:stream",
            &format!("a=key-mgmt:{km}\r\na=control:stream"),
        );
    (sdp, key)
}

/// A client of `rtsps://cam.example/live` in `mode`, OPTIONS answered, DESCRIBE answered
/// with `sdp`; returns the outputs of that answer.
fn rtsps_described(mode: TransportMode, sdp: String) -> (Peer, Vec<Output>) {
    let t0 = Instant::now();
    let mut p = Peer {
        c: Client::new(cfg(mode), "rtsps://cam.example/live", t0, 7),
        t0,
        now: t0,
    };
    p.drain();
    p.connected();
    p.respond(ok(1));
    let out = p.respond(ok(2).body("application/sdp", sdp.into_bytes()));
    (p, out)
}

#[test]
fn rtsps_with_mikey_keys_sets_up_srtp_over_udp_with_our_key() {
    let (sdp, key) = secure_sdp();
    let (mut p, out) = rtsps_described(TransportMode::Auto, sdp);
    assert_eq!(out[out.len() - 2], Output::BindUdp { track: 0 });
    let out = p.bound(0, 50_000);
    let Some(Output::Transmit(req)) = out.first() else {
        panic!("{out:?}")
    };
    assert_eq!(
        req.headers.get("Transport"),
        Some("RTP/SAVP;unicast;client_port=50000-50001")
    );
    // Our key, as the server reads it (RFC 4567 §3.3).
    let km = req.headers.get("KeyMgmt").expect("a KeyMgmt header");
    assert!(
        km.starts_with("prot=mikey; uri=\"rtsps://cam.example/live/stream=0\"; data=\""),
        "{km}"
    );
    let data = km.rsplit("data=\"").next().unwrap().trim_end_matches('"');
    let ours = crate::mikey::MikeyMessage::from_key_mgmt(&format!("mikey {data}"))
        .unwrap()
        .master_key()
        .unwrap();
    assert_ne!(ours, key, "our key is our own");
    assert!(p.c.is_srtp());
    let out = p.respond(ok(3).header("Session", "s1;timeout=30").header(
        "Transport",
        "RTP/SAVP;unicast;client_port=50000-50001;server_port=6000-6001;ssrc=00000005",
    ));
    let srtp = events(&out).into_iter().find_map(|e| match e {
        ClientEvent::TransportChosen { srtp, .. } => Some(srtp),
        _ => None,
    });
    assert_eq!(
        srtp,
        Some(Some(SrtpKeys {
            receive: key,
            send: ours
        }))
    );
    // The second track: the same key of ours (one per connection), in its own header.
    p.bound(1, 50_002);
    let out = p.respond(ok(4).header("Session", "s1;timeout=30").header(
        "Transport",
        "RTP/SAVP;unicast;client_port=50002-50003;server_port=6002-6003",
    ));
    assert_eq!(lines(&out), ["PLAY rtsps://cam.example/live/stream=0"]);
}

#[test]
fn rtsps_srtp_setup_refused_falls_back_to_interleaved_in_tls() {
    let (sdp, _) = secure_sdp();
    let (mut p, _) = rtsps_described(TransportMode::Auto, sdp);
    p.bound(0, 50_000);
    let out = p.respond(status(461, 3));
    // Nothing was set up yet: SETUP again at once, interleaved, plain RTP inside TLS.
    let out = if wire(&out).is_empty() {
        p.drain()
    } else {
        out
    };
    let w = wire(&out);
    assert!(
        w.iter().any(
            |r| r.contains("Transport: RTP/AVP/TCP;unicast;interleaved=0-1")
                && !r.contains("KeyMgmt")
        ),
        "{w:?}"
    );
    assert!(!p.c.is_srtp());
}

#[test]
fn rtsps_srtp_that_brings_nothing_falls_back_to_interleaved() {
    let (sdp, _) = secure_sdp();
    let (mut p, _) = rtsps_described(TransportMode::Auto, sdp);
    p.bound(0, 50_000);
    p.respond(ok(3).header("Session", "s1").header(
        "Transport",
        "RTP/SAVP;unicast;client_port=50000-50001;server_port=6000-6001",
    ));
    p.bound(1, 50_002);
    p.respond(ok(4).header("Session", "s1").header(
        "Transport",
        "RTP/SAVP;unicast;client_port=50002-50003;server_port=6002-6003",
    ));
    p.respond(ok(5));
    p.respond(ok(6));
    // No packet passes authentication, so none is seen: after the grace, TEARDOWN, then TCP.
    let out = p.advance(p.c.cfg.timers.udp_grace + MS);
    assert_eq!(lines(&out), ["TEARDOWN rtsps://cam.example/live/stream=0"]);
    p.respond(ok(7));
    let out = p.respond(ok(8));
    assert!(wire(&out)[0].contains("RTP/AVP/TCP;unicast;interleaved=0-1"));
}

#[test]
fn rtsps_over_udp_without_keys_is_refused_and_never_plain() {
    let sdp = SDP.replace("a=control:*\r\n", "");
    let (_, out) = rtsps_described(TransportMode::Udp, sdp.clone());
    assert!(matches!(
        events(&out).last(),
        Some(ClientEvent::Ended(End::Failed(why))) if why.contains("no SRTP key")
    ));
    assert!(!out.iter().any(|o| matches!(o, Output::BindUdp { .. })));
    // A plain rtsp:// URL never asks for SAVP, even when the description offers it.
    let (secure, _) = secure_sdp();
    let mut p = Peer::started(cfg(TransportMode::Udp));
    p.connected();
    p.respond(ok(1));
    p.respond(ok(2).body("application/sdp", secure.into_bytes()));
    let out = p.bound(0, 50_000);
    let w = wire(&out);
    assert!(w[0].contains("Transport: RTP/AVP;unicast") && !w[0].contains("KeyMgmt"));
}

#[test]
fn rtsps_keys_from_a_set_key_seed_differ_from_the_default() {
    let (sdp, _) = secure_sdp();
    let key_of = |seed: Option<[u8; 32]>| {
        let t0 = Instant::now();
        let mut p = Peer {
            c: Client::new(cfg(TransportMode::Auto), "rtsps://cam.example/live", t0, 7),
            t0,
            now: t0,
        };
        if let Some(s) = seed {
            p.c.set_key_seed(s);
        }
        p.drain();
        p.connected();
        p.respond(ok(1));
        p.respond(ok(2).body("application/sdp", sdp.clone().into_bytes()));
        let out = p.bound(0, 50_000);
        let Some(Output::Transmit(req)) = out.first() else {
            panic!("{out:?}")
        };
        req.headers.get("KeyMgmt").unwrap().to_owned()
    };
    assert_eq!(key_of(None), key_of(None), "reproducible in tests");
    assert_ne!(key_of(None), key_of(Some([9; 32])));
}

#[test]
fn an_untrusted_server_ends_the_session_without_retrying() {
    let mut p = Peer::started(cfg(TransportMode::Auto));
    let now = p.now;
    let why = "the certificate of cam.example:8554 changed";
    let out = p.input(Input::Untrusted {
        now,
        why: why.into(),
    });
    assert_eq!(events(&out), [ClientEvent::Ended(End::Failed(why.into()))]);
    assert!(p.c.is_ended());
}

#[test]
fn pause_and_resume() {
    let mut p = Peer::streaming(cfg(TransportMode::Tcp));
    let out = p.command(Command::Pause);
    assert_eq!(
        wire(&out),
        [
            "PAUSE rtsp://cam.example:8554/live RTSP/1.0\r\nCSeq: 6\r\nUser-Agent: test/1\r\n\
          Session: s1\r\n\r\n"
        ]
    );
    // Asked twice before the answer: one PAUSE.
    assert!(lines(&p.command(Command::Pause)).is_empty());
    let out = p.respond(ok(6));
    assert_eq!(events(&out), [ClientEvent::Paused]);
    // Paused: no media for a minute is fine (no watchdog), keep-alives go on.
    let out = p.advance(60 * SEC);
    assert!(!notable(&out)
        .iter()
        .any(|e| matches!(e, ClientEvent::Reconnecting { .. })));
    let out = p.command(Command::Resume);
    assert_eq!(lines(&out), ["PLAY rtsp://cam.example:8554/live"]);
    let out = p.respond(ok(8));
    assert_eq!(events(&out), [ClientEvent::Playing { rtp_info: vec![] }]);
    assert_eq!(events(&p.media(0)), [ClientEvent::Streaming { tcp: true }]);
    // A refused PAUSE leaves the wish where the server is.
    p.command(Command::Pause);
    let out = p.respond(status(455, 9));
    assert!(events(&out).is_empty());
    assert!(lines(&p.advance(MS)).is_empty(), "not asked again");
}

#[test]
fn a_change_of_mind_while_a_pause_is_in_flight_is_carried_out() {
    let mut p = Peer::streaming(cfg(TransportMode::Tcp));
    p.command(Command::Pause);
    // Resume before the PAUSE is answered: nothing now, a PLAY once it is.
    assert!(lines(&p.command(Command::Resume)).is_empty());
    let out = p.respond(ok(6));
    assert_eq!(events(&out), [ClientEvent::Paused]);
    assert_eq!(lines(&out), ["PLAY rtsp://cam.example:8554/live"]);
    let out = p.respond(ok(7));
    assert_eq!(events(&out), [ClientEvent::Playing { rtp_info: vec![] }]);
    // And the other way round.
    p.command(Command::Pause);
    p.respond(ok(8));
    p.command(Command::Resume);
    assert!(lines(&p.command(Command::Pause)).is_empty());
    let out = p.respond(ok(9));
    assert_eq!(lines(&out), ["PAUSE rtsp://cam.example:8554/live"]);
}

#[test]
fn a_keyframe_request_pending_at_stop_does_not_spin_the_timer() {
    let mut p = Peer::streaming(cfg(TransportMode::Tcp));
    let now = p.now;
    p.input(Input::PictureLost { now, track: 0 });
    p.media(0);
    let out = p.command(Command::Stop);
    // Tearing down: the next wake-up is the TEARDOWN's limit, not the keyframe request's
    // pacing deadline, which would come back already past until then.
    assert_eq!(timeout(&out) - p.now, 2 * SEC);
    let out = p.advance(SEC);
    assert!(timeout(&out) > p.now);
}

#[test]
fn paused_from_the_start_sends_no_play() {
    let mut p = Peer::started(cfg(TransportMode::Tcp));
    p.command(Command::Pause);
    p.describe("OPTIONS");
    p.respond(ok(3).header("Session", "s1"));
    let out = p.respond(ok(4).header("Session", "s1"));
    assert_eq!(lines(&out), Vec::<String>::new());
    assert_eq!(events(&out).last(), Some(&ClientEvent::Paused));
}

#[test]
fn stop_sends_bye_and_teardown_and_waits_two_seconds_at_most() {
    let mut p = Peer::started(cfg(TransportMode::Tcp));
    p.describe("OPTIONS");
    p.setup_tcp_and_play(3);
    let out = p.command(Command::Stop);
    assert_eq!(events(&out), [ClientEvent::SendBye]);
    assert_eq!(
        wire(&out),
        [
            "TEARDOWN rtsp://cam.example:8554/live RTSP/1.0\r\nCSeq: 6\r\nUser-Agent: test/1\r\n\
          Session: s1\r\n\r\n"
        ]
    );
    assert_eq!(timeout(&out) - p.now, 2 * SEC);
    let out = p.respond(ok(6));
    assert_eq!(
        out[..2],
        [
            Output::Disconnect,
            Output::Event(ClientEvent::Ended(End::Stopped))
        ]
    );
    // Unanswered: the end comes at 2 s.
    let mut q = Peer::started(cfg(TransportMode::Tcp));
    q.describe("OPTIONS");
    q.setup_tcp_and_play(3);
    q.command(Command::Stop);
    assert!(events(&q.advance(1999 * MS)).is_empty());
    assert_eq!(events(&q.advance(MS)), [ClientEvent::Ended(End::Stopped)]);
}

#[test]
fn follows_one_redirect_and_not_two() {
    let mut p = Peer::started(cfg(TransportMode::Tcp));
    p.connected();
    let out = p.respond(status(302, 1).header("Location", "rtsp://other.example/cam"));
    assert_eq!(
        out[0],
        Output::Connect {
            host: "other.example".into(),
            port: 554,
            tls: false
        }
    );
    let out = p.connected();
    assert_eq!(lines(&out), ["OPTIONS rtsp://other.example/cam"]);
    let out = p.respond(ok(2));
    assert_eq!(lines(&out), ["DESCRIBE rtsp://other.example/cam"]);
    let out = p.respond(status(301, 3).header("Location", "rtsp://third.example/x"));
    assert_eq!(
        events(&out),
        [ClientEvent::Ended(End::Failed(
            "redirected again, to rtsp://third.example/x".into()
        ))]
    );
}

#[test]
fn missing_stream_and_authentication_are_fatal_server_errors_are_not() {
    for (code, want) in [
        (404, Some("DESCRIBE: stream not found (404 Not Found)")),
        (
            401,
            Some("DESCRIBE: the server requires authentication (401) by a scheme other than Digest MD5/SHA-256"),
        ),
        (503, None),
    ] {
        let mut p = Peer::new(cfg(TransportMode::Tcp));
        p.drain();
        p.connected();
        p.respond(ok(1));
        let mut r = status(code, 2);
        r.reason = StatusCode(code).reason().into();
        let ev = events(&p.respond(r));
        match want {
            Some(w) => assert_eq!(ev, [ClientEvent::Ended(End::Failed(w.into()))]),
            None => assert!(
                matches!(&ev[..], [ClientEvent::Reconnecting { attempt: 1, reason, .. }]
                    if reason == "DESCRIBE refused: 503 Service Unavailable"),
                "{ev:?}"
            ),
        }
    }
    let mut c = Client::new(cfg(TransportMode::Tcp), "http://x/y", Instant::now(), 1);
    assert!(c.is_ended());
    assert_eq!(c.poll_output(), Output::Event(ClientEvent::Connecting));
    assert!(
        matches!(c.poll_output(), Output::Event(ClientEvent::Ended(End::Failed(m))) if m.contains("rtsp://"))
    );
}

#[test]
fn silent_server_is_lost_after_five_seconds_and_torn_down_without_waiting() {
    let mut p = Peer::streaming(cfg(TransportMode::Tcp));
    let last = p.now;
    let out = p.advance(4999 * MS);
    assert!(!notable(&out).contains(&ClientEvent::SendBye));
    let out = p.advance_to(last + 5 * SEC);
    assert_eq!(lines(&out), ["TEARDOWN rtsp://cam.example:8554/live"]);
    let ev = notable(&out);
    assert_eq!(ev[0], ClientEvent::SendBye);
    assert!(
        matches!(&ev[1], ClientEvent::Reconnecting { attempt: 1, reason, .. }
            if reason == "no media from the server for 5 s"),
        "{ev:?}"
    );
}

#[test]
fn call_mode_retries_until_answered_then_a_bye_on_every_track_ends_the_call() {
    let mut p = Peer::new(ClientConfig {
        call: true,
        ..cfg(TransportMode::Tcp)
    });
    let out = p.drain();
    assert_eq!(
        out[0],
        Output::Event(ClientEvent::Calling {
            attempt: 0,
            reason: String::new()
        })
    );
    let now = p.now;
    let out = p.input(Input::ConnectFailed {
        now,
        why: "refused".into(),
    });
    assert_eq!(
        events(&out),
        [ClientEvent::Calling {
            attempt: 1,
            reason: "cannot connect to cam.example:8554: refused".into()
        }]
    );
    assert_eq!(
        timeout(&out) - p.now,
        SEC,
        "retried every second, no backoff"
    );
    p.advance(SEC);
    p.describe("OPTIONS");
    p.setup_tcp_and_play(3);
    p.media(0);
    let now = p.now;
    assert!(
        events(&p.input(Input::Bye { now, track: 0 })).is_empty(),
        "audio still on"
    );
    let out = p.input(Input::Bye { now, track: 1 });
    assert_eq!(
        notable(&out),
        [
            ClientEvent::SendBye,
            ClientEvent::Ended(End::CallEnded("the peer hung up".into()))
        ]
    );
    assert_eq!(lines(&out), ["TEARDOWN rtsp://cam.example:8554/live"]);
}

#[test]
fn call_mode_peer_closing_the_connection_is_a_hangup() {
    let mut p = Peer::streaming(ClientConfig {
        call: true,
        ..cfg(TransportMode::Tcp)
    });
    let out = p.lost("the server closed the connection", true);
    assert_eq!(
        notable(&out),
        [ClientEvent::Ended(End::CallEnded(
            "the peer hung up".into()
        ))]
    );
}

#[test]
fn receiver_reports_are_randomized_around_the_mean_and_repeatable() {
    let run = |seed| {
        let mut p = Peer::with_seed(cfg(TransportMode::Tcp), seed);
        p.drain();
        p.describe("OPTIONS");
        p.setup_tcp_and_play(3);
        let mut at = vec![p.now];
        while at.len() < 40 {
            let next = timeout(&p.drain());
            let out = p.advance_to(next);
            p.media(0);
            if events(&out).contains(&ClientEvent::SendReceiverReports) {
                at.push(p.now);
            }
        }
        at.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>()
    };
    let gaps = run(7);
    assert!(
        gaps.iter().all(|g| (1250 * MS..=3750 * MS).contains(g)),
        "{gaps:?}"
    );
    let mean = gaps.iter().sum::<Duration>() / gaps.len() as u32;
    assert!((2000 * MS..3000 * MS).contains(&mean), "{mean:?}");
    assert_eq!(gaps, run(7), "same seed, same schedule");
    assert_ne!(gaps, run(8));
}

#[test]
fn server_requests_are_answered() {
    let mut p = Peer::started(cfg(TransportMode::Tcp));
    p.connected();
    for (method, cseq, answer) in [
        (Method::GetParameter, "9", StatusCode::OK),
        (Method::Options, "10", StatusCode::OK),
        (Method::Record, "11", StatusCode::NOT_IMPLEMENTED),
    ] {
        let now = p.now;
        let req = Request::new(method, "rtsp://h/").header("CSeq", cseq);
        let out = p.input(Input::Request { now, req });
        assert_eq!(
            out[0],
            Output::Respond(Response::new(answer).header("CSeq", cseq))
        );
    }
}

#[test]
fn session_not_found_reconnects() {
    let mut p = Peer::streaming(cfg(TransportMode::Tcp));
    let mut sent = Vec::new();
    for _ in 0..15 {
        sent.extend(lines(&p.advance(SEC)));
        p.media(0);
    }
    assert_eq!(sent, ["OPTIONS rtsp://cam.example:8554/live"]);
    let out = p.respond(status(454, 6));
    assert!(
        notable(&out)
            .iter()
            .any(|e| matches!(e, ClientEvent::Reconnecting { reason, .. }
            if reason == "the server no longer knows our session (454)")),
        "{out:?}"
    );
}

#[test]
fn rtp_info_urls_match_tracks() {
    assert!(same_stream(
        "rtsp://h/live/trackID=0",
        "rtsp://h/live/trackID=0"
    ));
    assert!(same_stream(
        "rtsp://127.0.0.1:1/live/stream=1",
        "rtsp://localhost:1/live/stream=1"
    ));
    assert!(!same_stream(
        "rtsp://h/live/trackID=0",
        "rtsp://h/live/trackID=1"
    ));
    assert!(same_stream("rtsp://h/live/", "rtsp://h/live"));
}

#[test]
fn never_panics_on_any_input_order() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
    let statuses = [200u16, 302, 401, 404, 454, 461, 500];
    for round in 0..200 {
        let t0 = Instant::now();
        let mode = [TransportMode::Auto, TransportMode::Udp, TransportMode::Tcp][round % 3];
        let mut c = Client::new(
            ClientConfig {
                call: round % 2 == 0,
                ..cfg(mode)
            },
            URL,
            t0,
            round as u64,
        );
        let mut now = t0;
        for _ in 0..200 {
            now += Duration::from_millis(rng.random_range(0..3000));
            let cseq = rng.random_range(0..12u32);
            let input = match rng.random_range(0..9) {
                0 => Input::Connected { now },
                1 => Input::Response {
                    now,
                    resp: sdp_response(cseq)
                        .header("Session", "x;timeout=1")
                        .header("Location", "rtsp://o/")
                        .header("Transport", "RTP/AVP;unicast;server_port=1-2"),
                },
                2 => {
                    let mut r = status(statuses[rng.random_range(0..statuses.len())], cseq);
                    if rng.random_bool(0.3) {
                        r.headers = Default::default();
                    }
                    Input::Response { now, resp: r }
                }
                3 => Input::UdpBound {
                    now,
                    track: rng.random_range(0..3),
                    rtp_port: 5000,
                    rtcp_port: 5001,
                },
                4 => Input::MediaSeen {
                    now,
                    track: rng.random_range(0..3),
                },
                5 => Input::Bye {
                    now,
                    track: rng.random_range(0..3),
                },
                6 => Input::ConnectionLost {
                    now,
                    why: "x".into(),
                    by_peer: rng.random_bool(0.5),
                },
                7 => Input::Command {
                    now,
                    cmd: [Command::Pause, Command::Resume, Command::Stop][rng.random_range(0..3)],
                },
                _ => Input::Timeout(now),
            };
            c.handle_input(input);
            while !matches!(c.poll_output(), Output::Timeout(_)) {}
        }
    }
}

#[test]
fn keyframe_requests_are_paced_and_need_packets_since() {
    let mut p = Peer::streaming(cfg(TransportMode::Tcp));
    let kf = |outs: &[Output]| {
        events(outs)
            .iter()
            .filter(|e| **e == ClientEvent::RequestKeyframe { track: 0 })
            .count()
    };
    let now = p.now;
    let lost_at = now;
    assert_eq!(
        kf(&p.input(Input::PictureLost { now, track: 0 })),
        1,
        "at once"
    );
    // Packets within the repeat interval: the next request is due 300 ms after the first.
    p.advance(100 * MS);
    let out = p.media(0);
    assert_eq!(kf(&out), 0);
    assert_eq!(timeout(&out), lost_at + 300 * MS);
    assert_eq!(kf(&p.advance_to(lost_at + 300 * MS)), 1);
    // Nothing arrives since: no request however long it waits.
    assert_eq!(kf(&p.advance(SEC)), 0);
    assert_eq!(kf(&p.advance(SEC)), 0);
    // A packet after the interval: a request with it.
    assert_eq!(kf(&p.media(0)), 1);
    // The keyframe ends the requests.
    let now = p.now;
    p.input(Input::KeyframeArrived { now, track: 0 });
    p.advance(100 * MS);
    p.media(0);
    assert_eq!(kf(&p.advance(SEC)), 0);
    assert_eq!(kf(&p.media(0)), 0);
    // A new loss long after the last request: asked at once, then paced again.
    let now = p.now;
    assert_eq!(kf(&p.input(Input::PictureLost { now, track: 0 })), 1);
    p.advance(MS);
    let out = p.media(0);
    assert_eq!(timeout(&out), now + 300 * MS);
}

#[test]
fn watchdog_rules() {
    let t0 = Instant::now();
    let (grace, timeout) = (2 * SEC, 5 * SEC);
    // Silent UDP falls back after the grace; nothing is due before PLAY.
    let mut w = Watchdog::new(true, grace, timeout);
    assert_eq!(w.deadline(), None);
    w.on_play(t0);
    assert_eq!(w.poll(t0 + 1999 * MS), None);
    assert_eq!(w.poll(t0 + grace), Some(Verdict::FallbackToTcp));
    // One packet settles UDP; then silence is "no media", and media keeps it quiet.
    w.on_rtp(t0 + 1500 * MS);
    assert_eq!(w.deadline(), Some(t0 + 6500 * MS));
    assert_eq!(w.poll(t0 + 6500 * MS), Some(Verdict::NoMedia));
    w.on_rtp(t0 + 6000 * MS);
    assert_eq!(w.poll(t0 + 6500 * MS), None);
    // Paused: nothing expected; a resume restarts the clock, and an old packet does not
    // count against the new PLAY.
    w.on_pause();
    assert_eq!(w.poll(t0 + 60 * SEC), None);
    w.on_play(t0 + 100 * SEC);
    assert_eq!(w.deadline(), Some(t0 + 105 * SEC));
    // A forced transport never falls back.
    let mut f = Watchdog::new(false, grace, timeout);
    f.on_play(t0);
    assert_eq!(f.poll(t0 + 4999 * MS), None);
    assert_eq!(f.poll(t0 + timeout), Some(Verdict::NoMedia));
}

// ---- retransmission requests (RFC 4585 generic NACK) ----------------------------------------

/// Video offered under RTP/AVPF with NACK and an RFC 4588 rtx format (our server's shape);
/// audio plain.
const SDP_AVPF: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=live\r\nt=0 0\r\na=control:*\r\n\
    m=video 0 RTP/AVPF 96 100\r\na=rtpmap:96 H264/90000\r\na=rtcp-fb:96 nack\r\n\
    a=rtcp-fb:96 nack pli\r\na=rtpmap:100 rtx/90000\r\na=fmtp:100 apt=96;rtx-time=1000\r\n\
    a=control:stream=0\r\n\
    m=audio 0 RTP/AVP 97\r\na=rtpmap:97 OPUS/48000/2\r\na=control:stream=1\r\n";

/// [`SDP_AVPF`] with NACK and RTX offered for the audio too, as livecast-server does.
const SDP_AVPF_AUDIO: &str =
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=live\r\nt=0 0\r\na=control:*\r\n\
    m=video 0 RTP/AVPF 96 100\r\na=rtpmap:96 H264/90000\r\na=rtcp-fb:96 nack\r\n\
    a=rtcp-fb:96 nack pli\r\na=rtpmap:100 rtx/90000\r\na=fmtp:100 apt=96;rtx-time=1000\r\n\
    a=control:stream=0\r\n\
    m=audio 0 RTP/AVPF 97 101\r\na=rtpmap:97 OPUS/48000/2\r\na=rtcp-fb:97 nack\r\n\
    a=rtpmap:101 rtx/48000\r\na=fmtp:101 apt=97;rtx-time=1000\r\na=control:stream=1\r\n";

/// Every answer comes this long after its request: the round trip the client measures.
const RTT: Duration = Duration::from_millis(20);

impl Peer {
    /// Answers after [`RTT`].
    fn respond_late(&mut self, resp: Response) -> Vec<Output> {
        self.now += RTT;
        self.respond(resp)
    }

    /// Described with [`SDP_AVPF`], set up (UDP unless `cfg` says TCP), playing, one video
    /// packet in; returns the SETUP requests as written.
    fn avpf_streaming(cfg: ClientConfig) -> (Self, Vec<String>) {
        Self::streaming_with(cfg, SDP_AVPF)
    }

    /// [`Peer::avpf_streaming`] with the description `sdp` (two tracks).
    fn streaming_with(cfg: ClientConfig, sdp: &str) -> (Self, Vec<String>) {
        let tcp = cfg.transport == TransportMode::Tcp;
        let mut p = Self::started(cfg);
        p.connected();
        p.respond_late(ok(1).header("Public", "OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER"));
        let mut setups = Vec::new();
        let describe = ok(2)
            .header("Content-Base", "rtsp://cam.example:8554/live/")
            .body("application/sdp", sdp.as_bytes().to_vec());
        let out = p.respond_late(describe);
        for track in 0..2u16 {
            let out = if tcp {
                out.clone()
            } else {
                p.bound(usize::from(track), 50_000 + 2 * track)
            };
            let w = wire(&out);
            if track == 0 || !tcp {
                setups.push(w[0].clone());
            }
            let transport = if tcp {
                format!(
                    "RTP/AVP/TCP;unicast;interleaved={}-{}",
                    2 * track,
                    2 * track + 1
                )
            } else {
                format!(
                    "RTP/AVP;unicast;server_port={}-{};ssrc=0000000{}",
                    6000 + 2 * track,
                    6001 + 2 * track,
                    track + 5
                )
            };
            let out2 = p.respond_late(
                ok(3 + u32::from(track))
                    .header("Session", "s1;timeout=30")
                    .header("Transport", transport),
            );
            if tcp && track == 0 {
                setups.push(wire(&out2)[0].clone());
            }
        }
        p.respond_late(ok(5).header("RTP-Info", RTP_INFO));
        p.media(0);
        (p, setups)
    }

    fn gap(&mut self, track: usize, seq: u16, wait: Duration) -> Vec<Output> {
        let now = self.now;
        self.input(Input::Gap {
            now,
            track,
            seq,
            until: now + wait,
        })
    }

    fn filled(&mut self, track: usize, seq: u16) -> Vec<Output> {
        let now = self.now;
        self.input(Input::GapFilled {
            now,
            track,
            seq,
            retransmission: true,
        })
    }
}

/// The NACKs among `outs`.
fn nacks(outs: &[Output]) -> Vec<(usize, Vec<u16>)> {
    events(outs)
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::SendNack { track, seqs } => Some((track, seqs)),
            _ => None,
        })
        .collect()
}

/// Runs the clock to `until` in 1 ms steps; the NACKs on the way, with their times since `from`.
fn nacks_until(p: &mut Peer, from: Instant, until: Duration) -> Vec<(Duration, Vec<u16>)> {
    let mut v = Vec::new();
    while p.now < from + until {
        let out = p.advance(MS);
        let now = p.now;
        v.extend(nacks(&out).into_iter().map(|(_, s)| (now - from, s)));
    }
    v
}

#[test]
fn nack_only_while_a_retransmission_can_come_in_time() {
    let (mut p, setups) = Peer::avpf_streaming(cfg(TransportMode::Auto));
    // The video set up as RTP/AVPF (so the server may send RFC 4588 packets), audio as before.
    assert!(setups[0].contains("Transport: RTP/AVPF;unicast;client_port=50000-50001\r\n"));
    assert!(setups[1].contains("Transport: RTP/AVP;unicast;client_port=50002-50003\r\n"));
    // Round trip measured from the RTSP exchanges (DESCRIBE aside); the wait the receive side
    // should allow: rtt + 2 repeats of (rtt x 5/4 + 10 ms) + 10 ms.
    assert_eq!(p.c.round_trip(), Some(RTT));
    assert_eq!(p.c.retransmission_wait(0), Some(Duration::from_millis(100)));
    assert_eq!(p.c.retransmission_wait(1), None, "audio offers no NACK");

    // A gap with 100 ms to go: asked at once, again 35 ms and 70 ms later, then no more.
    let t = p.now;
    assert_eq!(nacks(&p.gap(0, 100, 100 * MS)), [(0, vec![100])]);
    let seen = nacks_until(&mut p, t, 300 * MS);
    assert_eq!(seen, [(35 * MS, vec![100]), (70 * MS, vec![100])]);

    // 30 ms to go: one request; a second would come after the packet is given up.
    let t = p.now;
    assert_eq!(nacks(&p.gap(0, 101, 30 * MS)), [(0, vec![101])]);
    assert!(nacks_until(&mut p, t, 300 * MS).is_empty());
    // Less than a round trip to go: not asked.
    assert!(nacks(&p.gap(0, 102, 15 * MS)).is_empty());
    // Audio: never.
    assert!(nacks(&p.gap(1, 7, 400 * MS)).is_empty());

    // Answered after one request, 60 ms later: no repeat, and a round trip sample (Karn).
    let t = p.now;
    assert_eq!(nacks(&p.gap(0, 200, 400 * MS)), [(0, vec![200])]);
    p.now += 30 * MS;
    p.filled(0, 200);
    assert!(nacks_until(&mut p, t, 500 * MS).is_empty());
    assert_eq!(p.c.round_trip(), Some((RTT * 7 + 30 * MS) / 8));
    // Two gaps at once go in one NACK.
    let out = p.gap(0, 300, 400 * MS);
    assert_eq!(nacks(&out), [(0, vec![300])]);
    let out = p.gap(0, 302, 400 * MS);
    assert_eq!(nacks(&out), [(0, vec![302])]);
    let t = p.now;
    let seen = nacks_until(&mut p, t, 40 * MS);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].1, [300, 302]);
    // A round trip measured elsewhere joins the estimate, and the wait follows it.
    let before = p.c.round_trip().unwrap();
    let now = p.now;
    p.input(Input::RoundTrip { now, rtt: 200 * MS });
    let rtt = (before * 7 + 200 * MS) / 8;
    assert_eq!(p.c.round_trip(), Some(rtt));
    let repeat = rtt * 5 / 4 + 10 * MS;
    assert_eq!(p.c.retransmission_wait(0), Some(rtt + repeat * 2 + 10 * MS));
}

/// One RTSP answer slowed by TCP's loss recovery (a lossy path: 455 ms seen in a call) does
/// not stretch the round trip the NACK timing uses: RTSP exchanges count by their fastest,
/// and only until a NACK has been answered.
#[test]
fn a_slow_rtsp_answer_does_not_stretch_the_round_trip() {
    let (mut p, _) = Peer::avpf_streaming(cfg(TransportMode::Auto));
    assert_eq!(p.c.round_trip(), Some(RTT));
    p.command(Command::Pause);
    p.now += 455 * MS;
    p.respond(ok(6));
    assert_eq!(p.c.round_trip(), Some(RTT));
    assert_eq!(p.c.retransmission_wait(0), Some(Duration::from_millis(100)));
    // A faster one lowers it.
    p.command(Command::Resume);
    p.now += RTT / 2;
    p.respond(ok(7).header("RTP-Info", RTP_INFO));
    assert_eq!(p.c.round_trip(), Some(RTT / 2));
    // Once a NACK was answered, the media path's samples rule, smoothed.
    let t = p.now;
    assert_eq!(nacks(&p.gap(0, 500, 400 * MS)), [(0, vec![500])]);
    p.now = t + 40 * MS;
    p.filled(0, 500);
    assert_eq!(p.c.round_trip(), Some((RTT / 2 * 7 + 40 * MS) / 8));
    p.command(Command::Pause);
    p.now += MS;
    p.respond(ok(8));
    assert_eq!(p.c.round_trip(), Some((RTT / 2 * 7 + 40 * MS) / 8));
}

#[test]
fn nacks_are_budgeted_per_second() {
    let mut c = cfg(TransportMode::Auto);
    c.nack.per_second = 100;
    let (mut p, _) = Peer::avpf_streaming(c);
    let t = p.now;
    let mut asked = 0;
    for seq in 0..150u16 {
        asked += nacks(&p.gap(0, seq, 400 * MS))
            .iter()
            .map(|(_, s)| s.len())
            .sum::<usize>();
    }
    // The first 100 are asked once; their repeats and the other 50 find the budget spent,
    // and a second later all of them are past hope.
    assert_eq!(asked, 100);
    assert!(nacks_until(&mut p, t, 2 * SEC).is_empty());
    // A new second, a new budget.
    let out = p.gap(0, 1000, 400 * MS);
    assert_eq!(nacks(&out), [(0, vec![1000])]);
}

#[test]
fn no_nack_over_tcp_paused_or_turned_off() {
    // Over TCP: set up plain, never asked.
    let (mut p, setups) = Peer::avpf_streaming(cfg(TransportMode::Tcp));
    assert!(
        setups[0].contains("Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n"),
        "{setups:?}"
    );
    assert_eq!(p.c.retransmission_wait(0), None);
    assert!(nacks(&p.gap(0, 5, 400 * MS)).is_empty());

    // Turned off: plain RTP/AVP as before this feature, no NACK.
    let mut off = cfg(TransportMode::Auto);
    off.nack.enabled = false;
    let (mut p, setups) = Peer::avpf_streaming(off);
    assert!(setups[0].contains("Transport: RTP/AVP;unicast;client_port=50000-50001\r\n"));
    assert_eq!(p.c.retransmission_wait(0), None);
    assert!(nacks(&p.gap(0, 5, 400 * MS)).is_empty());

    // Paused: what was missing is forgotten, new gaps are not asked for.
    let (mut p, _) = Peer::avpf_streaming(cfg(TransportMode::Auto));
    assert_eq!(nacks(&p.gap(0, 5, 400 * MS)).len(), 1);
    let out = p.command(Command::Pause);
    assert_eq!(lines(&out), ["PAUSE rtsp://cam.example:8554/live"]);
    p.respond_late(ok(6));
    let t = p.now;
    assert!(nacks(&p.gap(0, 9, 400 * MS)).is_empty());
    assert!(nacks_until(&mut p, t, SEC).is_empty());
}

/// Audio offered with NACK is asked for like video, watching and in a call (where the wait is
/// bounded at 200 ms instead of 500).
#[test]
fn audio_retransmissions_are_asked_for_where_offered() {
    let (mut p, setups) = Peer::streaming_with(cfg(TransportMode::Auto), SDP_AVPF_AUDIO);
    assert!(setups[1].contains("Transport: RTP/AVPF;unicast;client_port=50002-50003\r\n"));
    assert_eq!(p.c.retransmission_wait(1), Some(Duration::from_millis(100)));
    assert_eq!(nacks(&p.gap(1, 7, 400 * MS)), [(1, vec![7])]);

    let mut call = cfg(TransportMode::Auto);
    call.nack = NackConfig::call();
    let (mut p, setups) = Peer::streaming_with(call, SDP_AVPF_AUDIO);
    assert!(setups[1].contains("Transport: RTP/AVPF;unicast;client_port=50002-50003\r\n"));
    assert_eq!(p.c.retransmission_wait(1), Some(Duration::from_millis(100)));
    assert_eq!(nacks(&p.gap(1, 7, 400 * MS)), [(1, vec![7])]);
}

/// The SDP without feedback (what we get from servers other than ours): plain RTP/AVP.
#[test]
fn plain_descriptions_get_plain_setups() {
    let mut p = Peer::started(cfg(TransportMode::Auto));
    p.describe("OPTIONS");
    let out = p.bound(0, 50_000);
    assert!(wire(&out)[0].contains("Transport: RTP/AVP;unicast;client_port=50000-50001\r\n"));
    assert_eq!(p.c.retransmission_wait(0), None);
}

// ---- Digest authentication ------------------------------------------------------------------

use crate::rtsp::auth::{ha1, Algorithm, Authorization, DigestCredentials};

/// A 401 as livecast-server sends it: SHA-256 first, MD5 last, one nonce.
fn unauthorized(cseq: u32, nonce: &str, stale: bool, sha256: bool) -> Response {
    let stale = if stale { ", stale=TRUE" } else { "" };
    let mut r = status(401, cseq);
    if sha256 {
        r = r.header(
            "WWW-Authenticate",
            format!(r#"Digest realm="livecast", nonce="{nonce}", algorithm=SHA-256{stale}"#),
        );
    }
    r.header(
        "WWW-Authenticate",
        format!(r#"Digest realm="livecast", nonce="{nonce}"{stale}"#),
    )
}

/// The requests sent, with their Digest credentials if any.
fn sent(outs: &[Output]) -> Vec<(Request, Option<DigestCredentials>)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Transmit(r) => {
                let d = match r.headers.get_typed::<Authorization>() {
                    Ok(Some(Authorization::Digest(d))) => Some(d),
                    Ok(None) => None,
                    other => panic!("{other:?}"),
                };
                Some((r.clone(), d))
            }
            _ => None,
        })
        .collect()
}

fn authed_peer(url: &str, cfg: ClientConfig) -> Peer {
    let t0 = Instant::now();
    let mut p = Peer {
        c: Client::new(cfg, url, t0, 7),
        t0,
        now: t0,
    };
    p.drain();
    p.connected();
    p.respond(ok(1).header("Public", "OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER"));
    p
}

#[test]
fn credentials_from_the_url_answer_the_sha256_challenge_and_stay_out_of_requests() {
    // `p@ss:1` percent-encoded in the URL.
    let mut p = authed_peer(
        "rtsp://viewer:p%40ss%3A1@cam.example:8554/live",
        cfg(TransportMode::Tcp),
    );
    let out = p.respond(unauthorized(2, "n1", false, true));
    let s = sent(&out);
    assert_eq!(s.len(), 1);
    let (req, d) = &s[0];
    assert_eq!(req.uri, URL, "no credentials in the request line");
    assert_eq!(req.method, Method::Describe);
    assert_eq!(req.cseq().unwrap(), Some(3));
    let d = d.as_ref().expect("DESCRIBE sent again with credentials");
    assert_eq!(
        (d.algorithm(), d.username.as_str()),
        (Algorithm::Sha256, "viewer")
    );
    assert_eq!((d.nonce.as_str(), d.uri.as_str()), ("n1", URL));
    let h = ha1(&Algorithm::Sha256, "viewer", "livecast", "p@ss:1").unwrap();
    assert!(d.verify("DESCRIBE", &h));
    // Later requests carry credentials for their own method.
    let out = p.respond(sdp_response(3));
    let s = sent(&out);
    assert_eq!(s[0].0.method, Method::Setup);
    let d = s[0].1.as_ref().expect("SETUP with credentials");
    assert!(d.verify("SETUP", &h));
    assert!(!d.verify("DESCRIBE", &h));
}

#[test]
fn only_md5_offered_is_answered_with_md5_and_configured_credentials_win() {
    let mut p = authed_peer(
        "rtsp://other:x@cam.example:8554/live",
        ClientConfig {
            credentials: Some(Credentials {
                user: "viewer".into(),
                password: "pw".into(),
            }),
            ..cfg(TransportMode::Tcp)
        },
    );
    let out = p.respond(unauthorized(2, "n1", false, false));
    let d = sent(&out)[0].1.clone().unwrap();
    assert_eq!((d.algorithm.clone(), d.username.as_str()), (None, "viewer"));
    assert!(d.verify(
        "DESCRIBE",
        &ha1(&Algorithm::Md5, "viewer", "livecast", "pw").unwrap()
    ));
}

#[test]
fn a_second_401_is_a_wrong_password_and_ends_without_reconnecting() {
    let mut p = authed_peer(
        "rtsp://viewer:bad@cam.example:8554/live",
        cfg(TransportMode::Tcp),
    );
    p.respond(unauthorized(2, "n1", false, true));
    let out = p.respond(unauthorized(3, "n2", false, true));
    assert!(sent(&out).is_empty(), "{out:?}");
    assert_eq!(
        events(&out),
        [ClientEvent::Ended(End::Unauthorized(
            r#"DESCRIBE: the server refused user "viewer" (401): wrong user name or password"#
                .into()
        ))]
    );
    assert!(p.c.is_ended());
    // Nothing more happens, however long we wait.
    assert!(sent(&p.advance(60 * SEC)).is_empty());
}

#[test]
fn a_401_without_credentials_says_how_to_give_them() {
    let mut p = authed_peer(URL, cfg(TransportMode::Tcp));
    let out = p.respond(unauthorized(2, "n1", false, true));
    let ev = events(&out);
    assert!(
        matches!(&ev[..], [ClientEvent::Ended(End::Unauthorized(m))]
            if m.contains("requires a user name and password") && m.contains("--password-file")),
        "{ev:?}"
    );
}

#[test]
fn a_stale_nonce_is_answered_again_with_the_new_one() {
    let mut p = authed_peer(
        "rtsp://viewer:pw@cam.example:8554/live",
        cfg(TransportMode::Tcp),
    );
    p.respond(unauthorized(2, "n1", false, true));
    p.respond(sdp_response(3));
    // The SETUP (CSeq 4) is answered 401 stale=TRUE: sent again on the new nonce.
    let out = p.respond(unauthorized(4, "n2", true, true));
    let s = sent(&out);
    assert_eq!(s.len(), 1, "{out:?}");
    assert_eq!(s[0].0.method, Method::Setup);
    assert_eq!(s[0].0.cseq().unwrap(), Some(5));
    let d = s[0].1.clone().unwrap();
    assert_eq!(d.nonce, "n2");
    assert!(d.verify(
        "SETUP",
        &ha1(&Algorithm::Sha256, "viewer", "livecast", "pw").unwrap()
    ));
    assert!(!p.c.is_ended());
}
