//! Many clients, bad clients, time-outs: the server keeps serving everyone else.

mod common;

use std::time::Duration;

use common::{InProcess, ServerProc};
use livecast_loadgen::{run_client, ClientOptions, RtspConn, TransportKind};
use livecast_proto::rtcp::{self, RtcpPacket};
use livecast_proto::rtp;
use livecast_proto::rtsp::{Message, Method, Request, Transport, TransportProfile, TransportSpec};
use livecast_proto::time::Ssrc;
use tokio::net::UdpSocket;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// SETUP the video track over UDP on `c` (ports that nobody reads); returns the session id.
async fn setup_udp(c: &mut RtspConn, url: &str) -> String {
    let spec = TransportSpec {
        profile: TransportProfile::RtpAvp,
        client_port: Some((39990, 39991)),
        ..TransportSpec::default()
    };
    setup_video(c, url, spec).await;
    c.session.clone().expect("SETUP returns a Session")
}

/// SETUP the video track with `spec`; the transport the server chose.
async fn setup_video(c: &mut RtspConn, url: &str, spec: TransportSpec) -> TransportSpec {
    let r = c
        .request(
            Request::new(Method::Setup, format!("{url}/trackID=0")).typed(&Transport(vec![spec])),
        )
        .await
        .expect("SETUP answered");
    assert_eq!(r.status.0, 200, "SETUP: {}", r.reason);
    let transport = r.headers.get_typed::<Transport>().unwrap().unwrap();
    transport.0.into_iter().next().expect("a transport")
}

/// The shell's wiring, end to end: an observer plays over UDP the whole time while clients
/// over UDP and TCP come and go, a client dies mid-request and unreadable bytes arrive; the
/// observer loses nothing. (Which status each bad request gets, and every session rule, is
/// tested in virtual time in `livecast_proto::rtsp::server`.)
#[test]
fn clients_come_and_go_over_udp_and_tcp_while_bad_bytes_arrive() {
    let server = ServerProc::start(&[]);
    let url = server.url();
    rt().block_on(async move {
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        let observer = {
            let o = ClientOptions {
                url: url.clone(),
                transport: TransportKind::Udp,
                duration: Duration::from_secs(6),
                teardown: true,
            };
            let stop = stop.clone();
            tokio::spawn(async move { run_client(&o, stop).await })
        };
        // Four clients joining at fixed moments, alternately UDP and TCP; two leave with
        // TEARDOWN, two just drop the connection.
        let mut clients = Vec::new();
        for i in 0..4u64 {
            let o = ClientOptions {
                url: url.clone(),
                transport: if i % 2 == 0 {
                    TransportKind::Udp
                } else {
                    TransportKind::Tcp
                },
                duration: Duration::from_millis(1500),
                teardown: i < 2,
            };
            let stop = stop.clone();
            clients.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500 * (i + 1))).await;
                run_client(&o, stop).await
            }));
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
        // Bytes the parser refuses are answered, then the connection is closed.
        let cases: Vec<(&str, Vec<u8>, u16)> = vec![
            (
                "garbage",
                b"\x16\x03\x01\x00\xa5hello\r\n\r\n".to_vec(),
                400,
            ),
            (
                "headers over 8 KiB",
                format!(
                    "OPTIONS {url} RTSP/1.0\r\nCSeq: 1\r\nX-Big: {}\r\n\r\n",
                    "a".repeat(9000)
                )
                .into_bytes(),
                413,
            ),
            (
                "RTSP/2.0",
                format!("OPTIONS {url} RTSP/2.0\r\nCSeq: 1\r\n\r\n").into_bytes(),
                505,
            ),
        ];
        for (name, bytes, want) in &cases {
            let mut c = RtspConn::connect(&url).await.expect("connect");
            c.send_raw(bytes).await.expect("send");
            let r = tokio::time::timeout(Duration::from_secs(5), c.read_response())
                .await
                .expect("an answer within 5 s")
                .expect("a response");
            assert_eq!(r.status.0, *want, "{name}");
            let after = tokio::time::timeout(Duration::from_secs(5), c.read_message())
                .await
                .expect("the server closes within 5 s");
            assert!(after.is_err(), "{name}: connection still open: {after:?}");
        }
        // A dead client: a half-sent request, then the connection just goes away.
        {
            let mut dead = RtspConn::connect(&url).await.expect("connect");
            dead.send_raw(b"DESCRIBE ").await.expect("send");
        }
        for c in clients {
            let st = c.await.expect("task").expect("every client plays");
            // Video and audio flow all the time; the caption track (present when a speech
            // model is installed) is silent on the test tone.
            assert!(
                st.tracks
                    .iter()
                    .filter(|t| t.media != "text")
                    .all(|t| t.packets > 0),
                "a client received nothing on a track: {st:?}"
            );
        }
        let st = observer.await.expect("task").expect("observer plays");
        let video = &st.tracks[0];
        let audio = &st.tracks[1];
        // 6 s of 30 fps video is at least one packet per frame; 50 Opus packets a second.
        assert!(video.packets > 150, "observer video: {video:?}");
        assert!(audio.packets > 250, "observer audio: {audio:?}");
        assert_eq!(st.lost(), 0, "observer lost packets: {st:?}");
        assert!(
            video.sender_reports >= 1,
            "no RTCP sender report: {video:?}"
        );
    });
    assert!(common_alive(server));
}

/// Is this H.264 RTP payload the start of a keyframe? The server sends SPS in front of every
/// IDR, alone (NAL type 7) or first in a STAP-A (24).
fn starts_keyframe(payload: &[u8]) -> bool {
    let nal = payload.first().map_or(0, |b| b & 0x1f);
    nal == 7 || (nal == 24 && payload.get(3).is_some_and(|b| b & 0x1f == 7))
}

/// Waits up to `within` for the start of a keyframe on a UDP RTP socket; its SSRC.
async fn udp_keyframe(sock: &UdpSocket, within: Duration) -> Option<Ssrc> {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = vec![0u8; 2048];
    loop {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .ok()?
            .expect("receive RTP");
        let p = rtp::parse(&buf[..n]).expect("valid RTP");
        if starts_keyframe(p.payload) {
            return Some(p.ssrc);
        }
    }
}

/// The same on interleaved channel 0 of an RTSP connection.
async fn tcp_keyframe(c: &mut RtspConn, within: Duration) -> Option<Ssrc> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let f = match c.pending_data.pop() {
            Some(f) => f,
            None => match tokio::time::timeout_at(deadline, c.read_message())
                .await
                .ok()?
            {
                Ok(Message::Data(f)) => f,
                Ok(_) => continue,
                Err(e) => panic!("connection: {e}"),
            },
        };
        if f.channel != 0 {
            continue; // the server's RTCP
        }
        let p = rtp::parse(&f.payload).expect("valid RTP");
        if starts_keyframe(p.payload) {
            return Some(p.ssrc);
        }
    }
}

/// An RTCP compound as a receiver sends it: an empty RR, then `feedback`.
fn rtcp_with(feedback: RtcpPacket) -> Vec<u8> {
    let rr = RtcpPacket::ReceiverReport(rtcp::ReceiverReport {
        ssrc: Ssrc(77),
        reports: vec![],
    });
    let mut out = Vec::new();
    rtcp::write_compound(&[rr, feedback], &mut out);
    out
}

/// A Full Intra Request (RFC 5104 §4.3.1) for `media`.
fn fir(media: Ssrc) -> RtcpPacket {
    RtcpPacket::Fir(rtcp::Fir {
        sender: Ssrc(77),
        entries: vec![rtcp::FirEntry {
            ssrc: media,
            seq: 1,
        }],
    })
}

/// SETUP the video track with `spec` and PLAY; the transport the server chose.
async fn setup_and_play(c: &mut RtspConn, url: &str, spec: TransportSpec) -> TransportSpec {
    let transport = setup_video(c, url, spec).await;
    let r = c.request(Request::new(Method::Play, url)).await.unwrap();
    assert_eq!(r.status.0, 200, "PLAY: {}", r.reason);
    transport
}

/// A client that lost part of a picture sends RTCP PLI (or FIR); the server answers with a
/// keyframe at once instead of at the next periodic one (here 30 s away), over UDP and over
/// interleaved TCP. Feedback from an address that is no client's is ignored.
#[test]
fn pli_or_fir_from_a_client_brings_a_keyframe_at_once() {
    let server = ServerProc::start(&["--idr-interval", "30"]);
    let url = server.url();
    rt().block_on(async move {
        let rtp_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rtcp_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let ports = (
            rtp_sock.local_addr().unwrap().port(),
            rtcp_sock.local_addr().unwrap().port(),
        );
        let mut c = RtspConn::connect(&url).await.expect("connect");
        let spec = TransportSpec {
            profile: TransportProfile::RtpAvp,
            client_port: Some(ports),
            ..TransportSpec::default()
        };
        let transport = setup_and_play(&mut c, &url, spec).await;
        let server_rtcp = transport.server_port.expect("server_port").1;
        let server_rtcp = std::net::SocketAddr::from(([127, 0, 0, 1], server_rtcp));

        let ssrc = udp_keyframe(&rtp_sock, Duration::from_secs(10))
            .await
            .expect("the joining client's keyframe");
        // If the server's first keyframe was still on its way when we joined, the keyframe
        // made for us follows it: wait for a quiet second.
        let mut extra = 0;
        while udp_keyframe(&rtp_sock, Duration::from_secs(1))
            .await
            .is_some()
        {
            extra += 1;
            assert!(extra < 3, "keyframes keep coming without any request");
        }
        let pli = rtcp_with(RtcpPacket::pli(Ssrc(77), ssrc));
        stranger.send_to(&pli, server_rtcp).await.unwrap();
        assert_eq!(
            udp_keyframe(&rtp_sock, Duration::from_millis(1500)).await,
            None,
            "a keyframe without a request from the client (a stranger's PLI was obeyed?)"
        );
        rtcp_sock.send_to(&pli, server_rtcp).await.unwrap();
        assert_eq!(
            udp_keyframe(&rtp_sock, Duration::from_secs(1)).await,
            Some(ssrc),
            "no keyframe within 1 s of the client's PLI"
        );
        // One keyframe request per session per second (and the encoder's 500 ms limit).
        tokio::time::sleep(Duration::from_millis(1100)).await;
        rtcp_sock
            .send_to(&rtcp_with(fir(ssrc)), server_rtcp)
            .await
            .unwrap();
        assert_eq!(
            udp_keyframe(&rtp_sock, Duration::from_secs(1)).await,
            Some(ssrc),
            "no keyframe within 1 s of the client's FIR"
        );

        // Interleaved: RTCP on channel 1 of the RTSP connection.
        let mut t = RtspConn::connect(&url).await.expect("connect");
        let spec = TransportSpec {
            profile: TransportProfile::RtpAvpTcp,
            interleaved: Some((0, 1)),
            ..TransportSpec::default()
        };
        setup_and_play(&mut t, &url, spec).await;
        assert!(tcp_keyframe(&mut t, Duration::from_secs(5)).await.is_some());
        let mut extra = 0;
        while tcp_keyframe(&mut t, Duration::from_secs(1)).await.is_some() {
            extra += 1;
            assert!(extra < 3, "keyframes keep coming without any request");
        }
        let mut frame = vec![b'$', 1];
        frame.extend_from_slice(&(pli.len() as u16).to_be_bytes());
        frame.extend_from_slice(&pli);
        t.send_raw(&frame).await.unwrap();
        assert_eq!(
            tcp_keyframe(&mut t, Duration::from_secs(1)).await,
            Some(ssrc),
            "no keyframe within 1 s of an interleaved PLI"
        );
    });
}

fn common_alive(mut s: ServerProc) -> bool {
    s.alive()
}

#[test]
fn joining_client_starts_at_a_keyframe_with_announced_seq() {
    let server = ServerProc::start(&[]);
    let url = server.url();
    rt().block_on(async move {
        let mut c = RtspConn::connect(&url).await.expect("connect");
        let spec = TransportSpec {
            profile: TransportProfile::RtpAvpTcp,
            interleaved: Some((0, 1)),
            ..TransportSpec::default()
        };
        let r = c
            .request(
                Request::new(Method::Setup, format!("{url}/trackID=0"))
                    .typed(&Transport(vec![spec])),
            )
            .await
            .expect("SETUP");
        assert_eq!(r.status.0, 200);
        let r = c
            .request(Request::new(Method::Play, &url))
            .await
            .expect("PLAY");
        assert_eq!(r.status.0, 200);
        let info = r
            .headers
            .get_typed::<livecast_proto::rtsp::RtpInfo>()
            .expect("valid RTP-Info")
            .expect("RTP-Info present");
        let announced = info.0[0].seq.expect("seq in RTP-Info");
        let first = loop {
            let f = if let Some(f) = c.pending_data.pop() {
                f
            } else {
                match tokio::time::timeout(Duration::from_secs(5), c.read_message())
                    .await
                    .expect("media within 5 s")
                    .expect("message")
                {
                    Message::Data(f) => f,
                    _ => continue,
                }
            };
            if f.channel == 0 {
                break f.payload;
            }
        };
        let p = livecast_proto::rtp::parse(&first).expect("valid RTP");
        assert_eq!(
            p.sequence, announced,
            "first packet carries the RTP-Info seq"
        );
        assert!(
            starts_keyframe(p.payload),
            "first video packet is not a keyframe start (NAL type {})",
            p.payload[0] & 0x1f
        );
    });
}

/// The timer task and the connection tasks feed the state machine: with a 1 s timeout, a
/// session without keep-alive is gone after it, one kept alive stays, and one whose connection
/// dropped is freed at once.
#[test]
fn sessions_expire_without_keepalive_and_dropped_connections_free_them() {
    let server = InProcess::start(Duration::from_secs(1));
    let url = server.url();
    let rtsp = server.rtsp();
    rt().block_on(async move {
        let mut a = RtspConn::connect(&url).await.expect("connect");
        let sid_a = setup_udp(&mut a, &url).await;
        let r = a.request(Request::new(Method::Play, &url)).await;
        assert_eq!(r.expect("PLAY").status.0, 200);
        let mut b = RtspConn::connect(&url).await.expect("connect");
        setup_udp(&mut b, &url).await;
        let sid_c = {
            let mut c = RtspConn::connect(&url).await.expect("connect");
            setup_udp(&mut c, &url).await
        };
        let mut probe = RtspConn::connect(&url).await.expect("connect");
        let gone = |r: anyhow::Result<livecast_proto::rtsp::Response>| r.expect("answer").status.0;
        // The dropped connection's session goes as soon as the server sees the close.
        let mut freed = false;
        for _ in 0..20 {
            let r = probe
                .request(Request::new(Method::GetParameter, &url).header("Session", &sid_c))
                .await;
            if gone(r) == 454 {
                freed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(freed, "session of a dropped connection freed at once");
        assert_eq!(rtsp.session_count(), 2);
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let r = b.request(Request::new(Method::GetParameter, &url)).await;
            assert_eq!(gone(r), 200, "kept-alive session stays");
        }
        let r = probe
            .request(Request::new(Method::GetParameter, &url).header("Session", &sid_a))
            .await;
        assert_eq!(gone(r), 454, "session without keep-alive expired after 1 s");
        assert_eq!(rtsp.session_count(), 1);
    });
}
