//! Publishing (ANNOUNCE, SETUP with `mode=record`, RECORD) in virtual time.

use super::*;

const CAM: &str = "rtsp://198.51.100.7:8554/cam";

/// The SDP ffmpeg announces for `-c copy` of an H.264 + Opus file (its controls `streamid=N`).
const FFMPEG_SDP: &str = "v=0\r\n\
o=- 0 0 IN IP4 127.0.0.1\r\n\
s=No Name\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
a=tool:libavformat 61.7.100\r\n\
m=video 0 RTP/AVP 96\r\n\
b=AS:300\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LAHtkAoD2wEQAAAwABAAADADIPFi5I,aMuDyyA=; profile-level-id=42C01E\r\n\
a=control:streamid=0\r\n\
m=audio 0 RTP/AVP 97\r\n\
b=AS:64\r\n\
a=rtpmap:97 opus/48000/2\r\n\
a=fmtp:97 sprop-stereo=1\r\n\
a=control:streamid=1\r\n";

fn publishing_config(takeover: bool) -> ServerConfig {
    let mut cfg = config();
    cfg.publish = Some(PublishConfig {
        takeover,
        ingest_ports_v4: Some((8000, 8001)),
        ingest_ports_v6: None,
    });
    cfg
}

fn announce(uri: &str, sdp: &str) -> Request {
    Request::new(Method::Announce, uri).body("application/sdp", sdp.as_bytes().to_vec())
}

fn record_setup(track: &str, transport: &str, session: Option<&str>) -> Request {
    let mut req =
        Request::new(Method::Setup, format!("{CAM}/{track}")).header("Transport", transport);
    if let Some(s) = session {
        req = req.header("Session", s);
    }
    req
}

fn sid_of(r: &Response) -> String {
    r.headers.get_typed::<Session>().unwrap().unwrap().id
}

/// ANNOUNCE, both SETUPs (interleaved) and RECORD on `conn`: the session id.
fn publish_on(h: &mut Harness, conn: ConnId) -> String {
    let (r, ev) = h.request_on(conn, announce(CAM, FFMPEG_SDP));
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(ev.is_empty());
    let tcp = "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record";
    let (r, _) = h.request_on(conn, record_setup("streamid=0", tcp, None));
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let sid = sid_of(&r);
    let tcp = "RTP/AVP/TCP;unicast;interleaved=2-3;mode=record";
    let (r, _) = h.request_on(conn, record_setup("streamid=1", tcp, Some(&sid)));
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let (r, ev) = h.request_on(
        conn,
        Request::new(Method::Record, CAM).header("Session", sid.as_str()),
    );
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(ev.len(), 1, "{ev:?}");
    sid
}

#[test]
fn ffmpeg_publishes_over_udp_and_the_shell_learns_where_from() {
    let mut h = Harness::with(publishing_config(false), 7);
    let (r, _) = h.request(Request::new(Method::Options, CAM));
    assert_eq!(
        r.headers.get("Public"),
        Some("OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, ANNOUNCE, RECORD")
    );
    let (r, ev) = h.request(announce(CAM, FFMPEG_SDP));
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(ev.is_empty());
    assert_eq!(
        h.server
            .published_paths()
            .map(|(p, _)| p)
            .collect::<Vec<_>>(),
        ["cam"]
    );
    // ffmpeg's Transport: upper-case quoted mode, as some tools send it.
    let (r, ev) = h.request(record_setup(
        "streamid=0",
        "RTP/AVP/UDP;unicast;client_port=6000-6001;mode=\"RECORD\"",
        None,
    ));
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        r.headers.get("Transport"),
        Some("RTP/AVP;unicast;client_port=6000-6001;server_port=8000-8001;mode=record")
    );
    let sid = sid_of(&r);
    assert_eq!(
        ev,
        [ServerEvent::SessionStarted {
            session: sid.clone(),
            client: ClientId(1),
            peer: PEER.parse().unwrap(),
        }]
    );
    assert_eq!(h.server.session_state(&sid), Some(State::Ready));
    let (r, ev) = h.request(record_setup(
        "streamid=1",
        "RTP/AVP/UDP;unicast;client_port=6002-6003;mode=record",
        Some(&sid),
    ));
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(ev.is_empty());
    // A publisher does not play.
    let (r, _) = h.request(Request::new(Method::Play, CAM).header("Session", sid.as_str()));
    assert_eq!(r.status, StatusCode::METHOD_NOT_VALID_IN_THIS_STATE);
    assert_eq!(
        r.headers.get("Allow"),
        Some("OPTIONS, SETUP, RECORD, TEARDOWN, GET_PARAMETER")
    );
    let (r, ev) = h.request(Request::new(Method::Record, CAM).header("Session", sid.as_str()));
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(h.server.session_state(&sid), Some(State::Recording));
    let udp = |p: u16| MediaSink::Udp {
        rtp: SocketAddr::new("192.0.2.10".parse().unwrap(), p),
        rtcp: SocketAddr::new("192.0.2.10".parse().unwrap(), p + 1),
    };
    assert_eq!(
        ev,
        [ServerEvent::PublishStarted {
            path: "cam".into(),
            session: sid.clone(),
            client: ClientId(1),
            peer: PEER.parse().unwrap(),
            sdp: Box::new(crate::sdp::parse(FFMPEG_SDP).unwrap()),
            tracks: vec![(0, udp(6000)), (1, udp(6002))],
        }]
    );
    // RECORD again changes nothing; SETUP while recording is not valid.
    let (r, ev) = h.request(Request::new(Method::Record, CAM).header("Session", sid.as_str()));
    assert_eq!((r.status, ev.len()), (StatusCode::OK, 0));
    let (r, _) = h.request(record_setup(
        "streamid=1",
        "RTP/AVP;unicast;client_port=6004-6005;mode=record",
        Some(&sid),
    ));
    assert_eq!(r.status, StatusCode::METHOD_NOT_VALID_IN_THIS_STATE);
    assert_eq!(
        r.headers.get("Allow"),
        Some("OPTIONS, RECORD, TEARDOWN, GET_PARAMETER")
    );
    // The publisher's RTCP to the ingest port keeps its session alive, and asks for nothing.
    h.now += TIMEOUT - Duration::from_secs(1);
    let out = h.rtcp(
        RtcpSource::Udp {
            from: "192.0.2.10:6001".parse().unwrap(),
            track: 0,
        },
        &[rr()],
    );
    assert!(events(out).is_empty());
    h.now += TIMEOUT - Duration::from_secs(1);
    assert!(events(h.advance(Duration::ZERO)).is_empty());
    // Silence for the timeout ends it: the path is free.
    let ev = events(h.advance(TIMEOUT));
    assert_eq!(
        ev,
        [
            ServerEvent::PublishEnded {
                path: "cam".into(),
                client: ClientId(1),
                reason: EndReason::Expired,
            },
            ServerEvent::SessionEnded {
                session: sid,
                client: ClientId(1),
                peer: PEER.parse().unwrap(),
                reason: EndReason::Expired,
            },
        ]
    );
    assert_eq!(h.server.published_paths().count(), 0);
}

#[test]
fn one_publisher_per_path_and_teardown_or_close_frees_it() {
    let mut h = Harness::with(publishing_config(false), 8);
    h.open(ConnId(2), "192.0.2.11:40000", "198.51.100.7:8554");
    let sid = publish_on(&mut h, ConnId(1));
    let (r, ev) = h.request_on(ConnId(2), announce(CAM, FFMPEG_SDP));
    assert_eq!(r.status, StatusCode::NOT_ENOUGH_BANDWIDTH, "{r:?}");
    assert_eq!(body(&r), "/cam already has a publisher\r\n");
    assert!(ev.is_empty());
    // Nor can the second one set up a track of the first's path.
    let (r, _) = h.request_on(
        ConnId(2),
        record_setup(
            "streamid=0",
            "RTP/AVP/TCP;interleaved=0-1;mode=record",
            None,
        ),
    );
    assert_eq!(r.status, StatusCode::METHOD_NOT_VALID_IN_THIS_STATE);
    assert_eq!(body(&r), "/cam was announced on another connection\r\n");
    let (r, ev) = h.request_on(
        ConnId(1),
        Request::new(Method::Teardown, CAM).header("Session", sid.as_str()),
    );
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        ev[0],
        ServerEvent::PublishEnded {
            path: "cam".into(),
            client: ClientId(1),
            reason: EndReason::Teardown,
        }
    );
    // The path comes back for the next publisher; its connection closing ends it too.
    publish_on(&mut h, ConnId(2));
    h.server
        .handle_input(Input::ConnectionClosed {
            now: h.now,
            conn: ConnId(2),
        })
        .unwrap();
    let ev = events(h.drain());
    assert_eq!(
        ev[0],
        ServerEvent::PublishEnded {
            path: "cam".into(),
            client: ClientId(2),
            reason: EndReason::ConnectionClosed,
        }
    );
    assert_eq!(h.server.published_paths().count(), 0);
}

#[test]
fn takeover_drops_the_old_publisher() {
    let mut h = Harness::with(publishing_config(true), 9);
    h.open(ConnId(2), "192.0.2.11:40000", "198.51.100.7:8554");
    let old = publish_on(&mut h, ConnId(1));
    let (r, ev) = h.request_on(ConnId(2), announce(CAM, FFMPEG_SDP));
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        ev,
        [
            ServerEvent::PublishEnded {
                path: "cam".into(),
                client: ClientId(1),
                reason: EndReason::PublisherGone,
            },
            ServerEvent::SessionEnded {
                session: old.clone(),
                client: ClientId(1),
                peer: PEER.parse().unwrap(),
                reason: EndReason::PublisherGone,
            },
            ServerEvent::CloseConnection { conn: ConnId(1) },
        ]
    );
    assert_eq!(h.server.session_state(&old), None);
}

#[test]
fn announces_that_cannot_be_served_are_refused_with_a_reason() {
    let mut h = Harness::with(publishing_config(false), 10);
    let cases: [(Request, StatusCode, &str); 6] = [
        (
            announce(URL, FFMPEG_SDP),
            StatusCode::FORBIDDEN,
            "/live is this server's own stream; publish to another path",
        ),
        (
            Request::new(Method::Announce, CAM).body("text/plain", FFMPEG_SDP.into()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "ANNOUNCE needs an application/sdp body",
        ),
        (
            announce(CAM, "v=0\r\nm=video 0 RTP/AVP 96\r\n"),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            announce(CAM, "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\n"),
            StatusCode::BAD_REQUEST,
            "the SDP has no m= section",
        ),
        (
            announce(
                CAM,
                "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\nm=video 0 udp MP2T\r\n",
            ),
            StatusCode::BAD_REQUEST,
            "m= section 1 (video) is udp, not RTP",
        ),
        (
            announce(
                CAM,
                "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\n\
                 m=video 0 RTP/AVP 96\r\na=control:a\r\nm=audio 0 RTP/AVP 97\r\na=control:a\r\n",
            ),
            StatusCode::BAD_REQUEST,
            "m= section 2 (audio) has no control URL of its own",
        ),
    ];
    for (req, status, why) in cases {
        let (r, ev) = h.request(req);
        assert_eq!(r.status, status, "{r:?}");
        if !why.is_empty() {
            assert_eq!(body(&r), format!("{why}\r\n"));
        }
        assert!(ev.is_empty());
    }
    assert_eq!(h.server.published_paths().count(), 0);
}

#[test]
fn record_mode_requests_in_the_wrong_state_get_455() {
    let mut h = Harness::with(publishing_config(false), 11);
    let tcp = "RTP/AVP/TCP;interleaved=0-1;mode=record";
    // SETUP to record before ANNOUNCE.
    let (r, _) = h.request(record_setup("streamid=0", tcp, None));
    assert_eq!(r.status, StatusCode::METHOD_NOT_VALID_IN_THIS_STATE);
    assert_eq!(r.headers.get("Allow"), Some("OPTIONS, ANNOUNCE"));
    assert_eq!(
        body(&r),
        "ANNOUNCE /cam/streamid=0 before SETUP with mode=record\r\n"
    );
    // A viewer's session cannot record, nor set up a track to record.
    let viewer = h.setup(0, UDP, None);
    let (r, _) = h.request(Request::new(Method::Record, CAM).header("Session", viewer.as_str()));
    assert_eq!(r.status, StatusCode::METHOD_NOT_VALID_IN_THIS_STATE);
    assert_eq!(
        r.headers.get("Allow"),
        Some("OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER")
    );
    let (r, _) = h.request(announce(CAM, FFMPEG_SDP));
    assert_eq!(r.status, StatusCode::OK);
    let (r, _) = h.request(record_setup("streamid=0", tcp, Some(&viewer)));
    assert_eq!(r.status, StatusCode::METHOD_NOT_VALID_IN_THIS_STATE);
    assert_eq!(
        body(&r),
        format!("session {viewer} does not publish /cam\r\n")
    );
    // The aggregate URL, and a control the SDP does not have.
    let (r, _) = h.request(Request::new(Method::Setup, CAM).header("Transport", tcp));
    assert_eq!(r.status, StatusCode::AGGREGATE_OPERATION_NOT_ALLOWED);
    let (r, _) = h.request(record_setup("streamid=7", tcp, None));
    assert_eq!(r.status, StatusCode::METHOD_NOT_VALID_IN_THIS_STATE);
    // Multicast or no usable alternative.
    let (r, _) = h.request(record_setup(
        "streamid=0",
        "RTP/AVP;multicast;mode=record",
        None,
    ));
    assert_eq!(r.status, StatusCode::UNSUPPORTED_TRANSPORT);
    // An absolute control URL resolves too, and a session that has set up may RECORD.
    let (r, ev) = h.request(
        Request::new(Method::Setup, format!("{CAM}/streamid=1"))
            .header("Transport", "RTP/AVP/TCP;interleaved=4-5;mode=record"),
    );
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(ev.len(), 1);
    let sid = sid_of(&r);
    // Without its Session header, a second SETUP is refused.
    let (r, _) = h.request(record_setup("streamid=0", tcp, None));
    assert_eq!(r.status, StatusCode::METHOD_NOT_VALID_IN_THIS_STATE);
    assert_eq!(
        body(&r),
        format!("/cam is published by session {sid}: send its Session header\r\n")
    );
    let (r, ev) = h.request(Request::new(Method::Record, CAM).header("Session", sid.as_str()));
    assert_eq!(r.status, StatusCode::OK);
    assert!(matches!(
        &ev[..],
        [ServerEvent::PublishStarted { tracks, .. }] if tracks == &[(1, MediaSink::Interleaved {
            conn: ConnId(1),
            rtp_channel: 4,
            rtcp_channel: 5,
        })]
    ));
}

#[test]
fn without_publishing_announce_and_record_get_405() {
    let mut h = Harness::new(12);
    let (r, _) = h.request(announce(CAM, FFMPEG_SDP));
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        r.headers.get("Allow"),
        Some("OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER")
    );
}

#[test]
fn publishing_needs_the_publish_role_and_watching_the_read_role() {
    let mut h = Harness::with(
        ServerConfig {
            publish: publishing_config(false).publish,
            ..auth_config()
        },
        13,
    );
    let ch = md5_challenge(&mut h, ConnId(1));
    // A read-only user may not publish: 403, the connection stays open.
    let (r, ev) = h.request(signed(announce(CAM, FFMPEG_SDP), &ch, "viewer", "secret"));
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert_eq!(
        body(&r),
        "this user may not publish (it needs the publish role)\r\n"
    );
    assert!(ev.is_empty());
    // A publisher may not watch, but publishes the whole exchange.
    let (r, _) = h.request(signed(describe(), &ch, "publisher", "secret2"));
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let (r, _) = h.request(signed(
        announce(CAM, FFMPEG_SDP),
        &ch,
        "publisher",
        "secret2",
    ));
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let setup = record_setup(
        "streamid=0",
        "RTP/AVP/TCP;interleaved=0-1;mode=record",
        None,
    );
    let (r, _) = h.request(signed(setup, &ch, "publisher", "secret2"));
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let sid = sid_of(&r);
    let record = Request::new(Method::Record, CAM).header("Session", sid.as_str());
    let (r, ev) = h.request(signed(record, &ch, "publisher", "secret2"));
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(ev.len(), 1);
    let keepalive = Request::new(Method::GetParameter, CAM).header("Session", sid.as_str());
    let (r, _) = h.request(signed(keepalive, &ch, "publisher", "secret2"));
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let teardown = Request::new(Method::Teardown, CAM).header("Session", sid.as_str());
    let (r, _) = h.request(signed(teardown, &ch, "publisher", "secret2"));
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
}

fn reserved(ssrc: u32) -> TrackConfig {
    TrackConfig {
        ssrc: Ssrc(ssrc),
        clock: RtpClock {
            rtp_base: 0,
            clock_rate: 90_000,
            wall_epoch: epoch(),
        },
        server_ports_v4: Some((7000, 7001)),
        server_ports_v6: None,
        nack: false,
        rtx_payload_type: None,
    }
}

#[test]
fn viewers_watch_a_published_path_until_its_publisher_leaves() {
    let mut h = Harness::with(publishing_config(false), 14);
    h.open(ConnId(2), "192.0.2.11:40000", "198.51.100.7:8554");
    let publisher = publish_on(&mut h, ConnId(1));
    // Not yet served by the shell: nothing to watch.
    let (r, _) = h.request_on(ConnId(2), Request::new(Method::Describe, CAM));
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Numbers our own tracks use are refused.
    let clash = Input::PathReady {
        path: "cam".into(),
        client: ClientId(1),
        first: 1,
        tracks: vec![reserved(0xa), reserved(0xb)],
        added: Vec::new(),
    };
    h.server.handle_input(clash).unwrap();
    assert_eq!(
        events(h.drain()),
        [ServerEvent::PublishEnded {
            path: "cam".into(),
            client: ClientId(1),
            reason: EndReason::PublisherGone,
        }]
    );
    let ready = Input::PathReady {
        path: "cam".into(),
        client: ClientId(1),
        first: h.server.next_track(),
        tracks: vec![reserved(0xa), reserved(0xb)],
        added: Vec::new(),
    };
    h.server.handle_input(ready).unwrap();
    assert!(h.drain().is_empty());
    let (r, _) = h.request_on(ConnId(2), Request::new(Method::Describe, CAM));
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        body(&r),
        "v=0\r\n\
         o=- 0 0 IN IP4 198.51.100.7\r\n\
         s=No Name\r\n\
         c=IN IP4 0.0.0.0\r\n\
         t=0 0\r\n\
         a=tool:libavformat 61.7.100\r\n\
         a=control:*\r\n\
         m=video 0 RTP/AVP 96\r\n\
         b=AS:300\r\n\
         a=rtpmap:96 H264/90000\r\n\
         a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LAHtkAoD2wEQAAAwABAAADADIPFi5I,aMuDyyA=; profile-level-id=42C01E\r\n\
         a=control:trackID=0\r\n\
         m=audio 0 RTP/AVP 97\r\n\
         b=AS:64\r\n\
         a=rtpmap:97 opus/48000/2\r\n\
         a=fmtp:97 sprop-stereo=1\r\n\
         a=control:trackID=1\r\n"
    );
    let (r, _) = h.request_on(
        ConnId(2),
        Request::new(Method::Setup, format!("{CAM}/trackID=1"))
            .header("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1"),
    );
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        r.headers.get("Transport"),
        Some("RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=0000000B")
    );
    let viewer = sid_of(&r);
    let (r, ev) = h.request_on(
        ConnId(2),
        Request::new(Method::Play, CAM).header("Session", viewer.as_str()),
    );
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let info = r.headers.get("RTP-Info").unwrap();
    assert!(
        info.starts_with(&format!("url={CAM}/trackID=1;seq=")),
        "{info}"
    );
    // Our own two tracks are 0 and 1: the path's audio is the server's track 3.
    let sink = MediaSink::Interleaved {
        conn: ConnId(2),
        rtp_channel: 0,
        rtcp_channel: 1,
    };
    assert!(
        matches!(&ev[..], [ServerEvent::Subscribe { client: ClientId(2), track: 3, sink: s, .. }] if *s == sink),
        "{ev:?}"
    );
    // The publisher leaves: its viewer's session ends (with a BYE), then the shell hears.
    let (r, ev) = h.request_on(
        ConnId(1),
        Request::new(Method::Teardown, CAM).header("Session", publisher.as_str()),
    );
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        ev,
        [
            ServerEvent::Unsubscribe {
                client: ClientId(2),
                track: 3,
                sink,
                reason: Unsubscribed::Ended(EndReason::PublisherGone),
            },
            ServerEvent::SessionEnded {
                session: viewer,
                client: ClientId(2),
                peer: "192.0.2.11:40000".parse().unwrap(),
                reason: EndReason::PublisherGone,
            },
            ServerEvent::PublishEnded {
                path: "cam".into(),
                client: ClientId(1),
                reason: EndReason::Teardown,
            },
            ServerEvent::SessionEnded {
                session: publisher,
                client: ClientId(1),
                peer: PEER.parse().unwrap(),
                reason: EndReason::Teardown,
            },
        ]
    );
    assert!(Unsubscribed::Ended(EndReason::PublisherGone).sends_bye());
    let (r, _) = h.request_on(ConnId(2), Request::new(Method::Describe, CAM));
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // A late PathReady (the publisher left meanwhile) is answered so the shell can clean up.
    let late = Input::PathReady {
        path: "cam".into(),
        client: ClientId(1),
        first: 9,
        tracks: vec![reserved(0xc)],
        added: Vec::new(),
    };
    h.server.handle_input(late).unwrap();
    assert_eq!(
        events(h.drain()),
        [ServerEvent::PublishEnded {
            path: "cam".into(),
            client: ClientId(1),
            reason: EndReason::PublisherGone,
        }]
    );
}

#[test]
fn an_interleaved_publisher_lives_as_long_as_its_connection() {
    let mut h = Harness::with(publishing_config(false), 15);
    let sid = publish_on(&mut h, ConnId(1));
    assert!(events(h.advance(TIMEOUT * 10)).is_empty());
    assert_eq!(h.server.session_state(&sid), Some(State::Recording));
}

#[test]
fn any_announced_sdp_is_refused_or_served() {
    for golden in [
        FFMPEG_SDP,
        include_str!("../../../../testdata/sdp/ffmpeg_h264_opus.sdp"),
        include_str!("../../../../testdata/sdp/gstreamer_h264_opus.sdp"),
    ] {
        crate::fuzzing::rtsp_publish(golden.as_bytes());
    }
    let mut rng = crate::rtp::test_rng::Seeded::new(0x9b_1150);
    let pieces = [
        "v=0",
        "o=- 1 2 IN IP4 127.0.0.1",
        "s=x",
        "t=0 0",
        "c=IN IP4 0.0.0.0",
        "m=video 0 RTP/AVP 96",
        "m=audio 0 RTP/AVP 97",
        "m=text 0 RTP/AVP 98 99",
        "m=application 0 udp x",
        "m=video 0 RTP/AVP 200",
        "a=rtpmap:96 H264/90000",
        "a=control:streamid=0",
        "a=control:streamid=1",
        "a=control:rtsp://192.0.2.2:8554/cam/trackID=2",
        "a=control:rtsp://192.0.2.2:8554/other/x",
        "a=control:*",
        "a=control:",
        "a=control:/",
        "a=sendonly",
        "b=AS:64",
    ];
    for _ in 0..3_000 {
        let n = 4 + rng.below(8);
        let mut text = String::new();
        for i in 0..n {
            let piece = if i < 4 {
                pieces[i as usize]
            } else {
                pieces[rng.below(pieces.len() as u64) as usize]
            };
            text.push_str(piece);
            text.push_str("\r\n");
        }
        crate::fuzzing::rtsp_publish(text.as_bytes());
    }
}

/// A published video track the shell keeps packets of (`nack`): viewers are offered
/// `RTP/AVPF` with NACK and RTX on it, as on our own video, and an AVPF viewer over UDP is
/// subscribed with RTX in the track's `rtx` payload type; live555 gets it plain.
#[test]
fn published_video_offers_retransmission_when_the_shell_keeps_its_packets() {
    let mut h = Harness::with(publishing_config(false), 14);
    h.open(ConnId(2), "192.0.2.11:40000", "198.51.100.7:8554");
    publish_on(&mut h, ConnId(1));
    let video = TrackConfig {
        nack: true,
        rtx_payload_type: Some(98),
        ..reserved(0xa)
    };
    let ready = Input::PathReady {
        path: "cam".into(),
        client: ClientId(1),
        first: h.server.next_track(),
        tracks: vec![video, reserved(0xb)],
        added: Vec::new(),
    };
    h.server.handle_input(ready).unwrap();
    let (r, _) = h.request_on(ConnId(2), Request::new(Method::Describe, CAM));
    let sdp = crate::sdp::parse(body(&r)).unwrap();
    let (v, a) = (&sdp.media[0], &sdp.media[1]);
    assert_eq!(v.proto, "RTP/AVPF");
    assert!(
        v.offers_nack(Some(96)) && v.rtx_for(96) == Some(98),
        "{v:?}"
    );
    assert_eq!(
        v.fmtp(98).unwrap(),
        [
            ("apt".into(), "96".into()),
            ("rtx-time".into(), "1000".into())
        ]
    );
    assert_eq!((a.proto.as_str(), a.offers_nack(None)), ("RTP/AVP", false));
    // ffmpeg's b=AS:300 is kept (the default only where none was announced).
    assert_eq!(v.bandwidth, [("AS".to_owned(), 300)]);
    let live555 = Request::new(Method::Describe, CAM)
        .header("User-Agent", "LIVE555 Streaming Media v2020.01.01");
    let (r, _) = h.request_on(ConnId(2), live555);
    let plain = crate::sdp::parse(body(&r)).unwrap();
    assert_eq!(
        (plain.media[0].proto.as_str(), plain.media[0].rtx_for(96)),
        ("RTP/AVP", None)
    );

    let (r, ev) = h.request_on(
        ConnId(2),
        Request::new(Method::Setup, format!("{CAM}/trackID=0"))
            .header("Transport", "RTP/AVPF;unicast;client_port=5000-5001"),
    );
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(
        matches!(&ev[..], [ServerEvent::SessionStarted { .. }]),
        "{ev:?}"
    );
    let (r, ev) = h.request_on(
        ConnId(2),
        Request::new(Method::Play, CAM).header("Session", sid_of(&r).as_str()),
    );
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(
        matches!(
            &ev[..],
            [ServerEvent::Subscribe {
                track: 2,
                retransmission: Retransmission::Rtx {
                    payload_type: 98,
                    ..
                },
                ..
            }]
        ),
        "{ev:?}"
    );
}
