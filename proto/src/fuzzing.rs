//! The properties the fuzz targets check, one copy each: `fuzz/fuzz_targets/*.rs` call them with
//! libFuzzer's inputs, and this crate's tests call them with seeded generated inputs, so CI
//! checks the same property on stable without cargo-fuzz.
//!
//! Every function panics when its property does not hold: that is how a fuzzer learns of it.
//! Built for this crate's tests and with the `fuzzing` feature; not part of the API.

use std::fmt::Debug;

use crate::codec::h264::{nal, nal_type, AccessUnit, Depacketizer, Packetizer};
use crate::codec::Codec;
use crate::codec::{rtx, t140};
use crate::rtsp::{
    parse, Authorization, CSeq, ContentBase, ContentLength, ContentType, Header, Limits, Message,
    Parsed, Public, Range, RtpInfo, Session, Transport, WwwAuthenticate,
};
use crate::{rtcp, rtp, sdp};

/// RTSP 1.0 (RFC 2326 §4, §10.12, §12): the parser never panics; a complete message writes back
/// to bytes that parse to the same message and are consumed entirely; every typed header that
/// parses from the input writes back (`to_value`) to a value that parses to the same header.
pub fn rtsp_round_trip(data: &[u8]) {
    let limits = Limits::default();
    if let Ok(Parsed::Complete { message, consumed }) = parse(data, &limits) {
        assert!(consumed <= data.len());
        let mut out = Vec::new();
        message.write_to(&mut out);
        // The written form may be longer than the input (CRLF for LF, ": " for ":", U+FFFD for
        // invalid UTF-8): give the header section room for that.
        let relaxed = Limits {
            max_header_bytes: limits.max_header_bytes * 3 + 64,
            ..limits
        };
        match parse(&out, &relaxed) {
            Ok(Parsed::Complete {
                message: again,
                consumed,
            }) => {
                assert_eq!(
                    again,
                    message,
                    "written as {:?}",
                    String::from_utf8_lossy(&out)
                );
                assert_eq!(consumed, out.len());
            }
            other => panic!(
                "{message:?} written as {:?} parses as {other:?}",
                String::from_utf8_lossy(&out)
            ),
        }
        let headers = match &message {
            Message::Request(r) => Some(&r.headers),
            Message::Response(r) => Some(&r.headers),
            Message::Data(_) => None,
        };
        for (_, value) in headers.into_iter().flat_map(|h| h.iter()) {
            rtsp_typed_headers_round_trip(value);
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        rtsp_typed_headers_round_trip(s);
    }
}

/// Every typed RTSP header that parses from `s` writes back to a value that parses to the same
/// header.
pub fn rtsp_typed_headers_round_trip(s: &str) {
    fn check<H: Header + PartialEq + Debug>(s: &str) {
        if let Ok(h) = H::parse(s) {
            let v = h.to_value();
            match H::parse(&v) {
                Ok(again) => assert_eq!(again, h, "{s:?} -> {v:?}"),
                Err(e) => panic!("{s:?} -> {h:?} -> {v:?}: {e}"),
            }
        }
    }
    check::<CSeq>(s);
    check::<Session>(s);
    check::<Transport>(s);
    check::<Range>(s);
    check::<RtpInfo>(s);
    check::<Public>(s);
    check::<ContentBase>(s);
    check::<ContentLength>(s);
    check::<ContentType>(s);
    check::<WwwAuthenticate>(s);
    check::<Authorization>(s);
}

/// `WWW-Authenticate` and `Authorization` (RFC 2617, RFC 7616, RFC 7617): neither parser
/// panics; what parses writes back to a value that parses to the same header; answering a
/// parsed challenge and verifying parsed credentials never panic, and an answer computed for a
/// challenge verifies against the same password's HA1.
pub fn rtsp_auth_round_trip(s: &str) {
    use crate::rtsp::auth::{ha1, DigestCredentials};
    rtsp_typed_headers_round_trip(s);
    if let Ok(WwwAuthenticate::Digest(c)) = WwwAuthenticate::parse(s) {
        if let Some(answer) = DigestCredentials::answer(&c, "u", "p", "PLAY", "rtsp://h/x", "cn") {
            let h1 = ha1(&c.algorithm(), "u", &c.realm, "p").expect("answered, so computable");
            assert!(answer.verify("PLAY", &h1), "{c:?} -> {answer:?}");
            let v = Authorization::Digest(answer.clone()).to_value();
            assert_eq!(Authorization::parse(&v), Ok(Authorization::Digest(answer)));
        }
    }
    if let Ok(Authorization::Digest(d)) = Authorization::parse(s) {
        let _ = d.verify("DESCRIBE", "00112233445566778899aabbccddeeff");
    }
}

/// SDP (RFC 8866 §5): the parser never panics; a description that parses writes back (CRLF,
/// RFC order) to text that parses to the same description; the media helpers never panic.
pub fn sdp_round_trip(text: &str) {
    let Ok(sd) = sdp::parse(text) else {
        return;
    };
    let written = sd.to_string();
    let again = sdp::parse(&written).expect("written SDP must parse");
    assert_eq!(again, sd, "{written}");
    let _ = sd.control();
    for m in &sd.media {
        let _ = m.control();
        let _ = Codec::from_media(m);
        for pt in m.payload_types() {
            let _ = m.rtpmap(pt);
            let _ = m.fmtp(pt);
        }
    }
}

/// RTP (RFC 3550 §5.1) and RTCP compounds (§6): neither parser panics; what parses writes back
/// to bytes that parse to the same packet(s); an RTP packet wrapped in RFC 4588 RTX and
/// unwrapped is the same packet (padding aside); reading an Opus FEC flag never panics.
pub fn rtp_rtcp_round_trip(data: &[u8]) {
    let _ = rtp::looks_like_rtcp(data);
    if let Ok(p) = rtp::parse(data) {
        let mut out = Vec::new();
        p.write(&mut out);
        assert_eq!(rtp::parse(&out).expect("written RTP must parse"), p);
        let mut fixed = Vec::new();
        rtp::write(&p.header(), p.payload, &mut fixed);
        let q = rtp::parse(&fixed).expect("written RTP must parse");
        assert_eq!((q.header(), q.payload), (p.header(), p.payload));
        // RFC 4588: retransmitted and unwrapped, the same packet but for padding.
        let rtx_header = rtx::RtxHeader {
            payload_type: 100,
            sequence: p.sequence.wrapping_add(7),
            ssrc: crate::time::Ssrc(p.ssrc.0 ^ 1),
        };
        let mut wrapped = Vec::new();
        rtx::wrap(&p, p.sequence, rtx_header, &mut wrapped);
        let w = rtp::parse(&wrapped).expect("an RTX packet must parse");
        let mut back = Vec::new();
        assert_eq!(
            rtx::unwrap(&w, p.payload_type, p.ssrc, &mut back),
            Some(p.sequence)
        );
        let b = rtp::parse(&back).expect("an unwrapped RTX packet must parse");
        assert_eq!(b, rtp::RtpPacket { padding: 0, ..p });
    }
    let _ = crate::codec::opus::has_fec(data);
    if let Ok(packets) = rtcp::parse_compound(data) {
        let mut out = Vec::new();
        rtcp::write_compound(&packets, &mut out);
        let again = rtcp::parse_compound(&out).expect("written RTCP must parse");
        assert_eq!(again, packets, "input {data:02x?}");
        for p in &packets {
            if let rtcp::RtcpPacket::Nack(n) = p {
                assert!(n.lost().count() >= n.entries.len());
            }
        }
    }
}

/// One RTP packet for [`h264_depacketize`].
#[derive(Clone, Copy, Debug)]
pub struct H264Packet<'a> {
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: &'a [u8],
}

/// H.264 depacketization (RFC 6184 §5.6–§5.8) of any packet sequence: the depacketizer never
/// panics, and every access unit it returns has at least one NAL unit and no empty one.
pub fn h264_depacketize<'a>(packets: impl IntoIterator<Item = H264Packet<'a>>) {
    fn check(au: &AccessUnit) {
        assert!(!au.nals.is_empty());
        assert!(au.nals.iter().all(|n| !n.is_empty()));
        let annexb = au.to_annexb();
        assert!(annexb.len() >= 5 * au.nals.len());
    }
    let mut d = Depacketizer::new();
    for p in packets {
        if let Ok(Some(au)) = d.push(p.seq, p.timestamp, p.marker, p.payload) {
            check(&au);
        }
        while let Some(au) = d.pull() {
            check(&au);
        }
    }
    if let Some(au) = d.flush() {
        check(&au);
    }
}

/// H.264 packetize → depacketize (RFC 6184) with any `max_payload`: for access units of NAL
/// units that are valid between start codes (a carried type, emulation prevention applied),
/// every payload fits, exactly one per access unit has the marker bit, and depacketizing gives
/// back the same NAL units per access unit, complete. Sequence numbers and timestamps wrap
/// during the run.
pub fn h264_round_trip(access_units: &[Vec<Vec<u8>>], max_payload: usize) {
    let mut pk = Packetizer::new(max_payload);
    let max = pk.max_payload();
    let mut d = Depacketizer::new();
    let mut seq = 65_500u16;
    let mut got = Vec::new();
    for (i, au) in access_units.iter().enumerate() {
        let ts = (i as u32).wrapping_mul(3000).wrapping_sub(6000);
        let mut annexb = Vec::new();
        for n in au {
            annexb.extend_from_slice(&[0, 0, 0, 1]);
            annexb.extend_from_slice(n);
        }
        let mut payloads = Vec::new();
        pk.packetize(&annexb, &mut payloads);
        assert_eq!(
            payloads.iter().filter(|p| p.marker).count(),
            usize::from(!au.is_empty())
        );
        for p in &payloads {
            assert!(p.data.len() <= max, "{} > {max}", p.data.len());
            let au = d
                .push(seq, ts, p.marker, &p.data)
                .expect("own payloads are valid");
            got.extend(au);
            seq = seq.wrapping_add(1);
        }
    }
    let want: Vec<&Vec<Vec<u8>>> = access_units.iter().filter(|a| !a.is_empty()).collect();
    assert_eq!(got.len(), want.len(), "max {max}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(&g.nals, w, "max {max}");
        assert!(g.complete);
        assert_eq!(g.is_keyframe, w.iter().any(|n| nal_type(n) == nal::IDR));
    }
    assert_eq!(d.stats().dropped_nals, 0);
}

/// T.140 real-time text (RFC 4103) with RFC 2198 redundancy, receive side. The input is read as
/// packets (the first bytes of each pick sequence number, payload type and length): the
/// depacketizer never panics, and every block it returns is applied to a `TextBuffer` without
/// panicking. A payload made by `RedPacketizer` from the input as text depacketizes to it.
pub fn t140_depacketize(data: &[u8]) {
    let mut d = t140::Depacketizer::new(98, Some(99));
    let mut screen = t140::TextBuffer::new();
    let mut rest = data;
    while rest.len() >= 4 {
        let seq = u16::from_be_bytes([rest[0], rest[1]]);
        let pt = if rest[2] & 1 == 0 { 98 } else { 99 };
        let len = usize::from(rest[3]).min(rest.len() - 4);
        let payload = &rest[4..4 + len];
        rest = &rest[4 + len..];
        if let Ok(blocks) = d.push(seq, u32::from(seq) * 10, pt, payload) {
            for b in blocks {
                screen.apply(&b.text);
            }
        }
    }
    let text = String::from_utf8_lossy(data);
    let mut p = t140::RedPacketizer::new(98, 2);
    let payload = p.packetize(1000, &text);
    let got = t140::Depacketizer::new(98, Some(99))
        .push(1, 1000, 99, &payload)
        .expect("own RED parses");
    if !text.is_empty() {
        assert_eq!(got.last().map(|b| b.text.as_str()), Some(text.as_ref()));
    }
}

/// Publishing (RFC 2326 §10.3, §10.11): whatever SDP a publisher ANNOUNCEs, the server never
/// panics; an accepted one can be set up track by track (each `a=control` resolves), recorded,
/// served (its viewers' description writes back to text that parses, with as many media), and
/// torn down, after which the path is free. The H.264 keyframe detector never panics on any
/// payload.
pub fn rtsp_publish(data: &[u8]) {
    use crate::rtsp::server::{
        ClientId, ConnId, Input, Output, PublishConfig, Server, ServerConfig, ServerEvent,
    };
    use crate::rtsp::{Method, Request, Response, StatusCode};
    use std::time::{Duration, Instant, SystemTime};

    let _ = crate::codec::h264::payload_starts_keyframe(data);
    let text = String::from_utf8_lossy(data);
    let mut cfg = ServerConfig::new(sdp::SessionDescription::default(), Vec::new());
    cfg.publish = Some(PublishConfig::default());
    let now = Instant::now();
    let mut server = Server::new(cfg, 1, now);
    let conn = ConnId(1);
    let open = Input::ConnectionOpened {
        now,
        conn,
        peer: "192.0.2.1:4000".parse().expect("an address"),
        local: "192.0.2.2:8554".parse().expect("an address"),
        tls: false,
    };
    server.handle_input(open).expect("a new connection");
    let mut cseq = 0;
    let mut send = |server: &mut Server, req: Request| -> (Response, Vec<ServerEvent>) {
        cseq += 1;
        let input = Input::Request {
            now,
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            conn,
            req: req.typed(&CSeq(cseq)),
        };
        server.handle_input(input).expect("an open connection");
        let (mut response, mut events) = (None, Vec::new());
        loop {
            match server.poll_output() {
                Output::Transmit { response: r, .. } => response = Some(r),
                Output::Event(e) => events.push(e),
                Output::Timeout(_) => break,
            }
        }
        (response.expect("every request is answered"), events)
    };
    let url = "rtsp://192.0.2.2:8554/cam";
    let announce =
        Request::new(Method::Announce, url).body("application/sdp", text.as_bytes().to_vec());
    if send(&mut server, announce).0.status != StatusCode::OK {
        assert_eq!(server.published_paths().count(), 0);
        return;
    }
    let announced = sdp::parse(&text).expect("an accepted SDP parses");
    let mut session: Option<String> = None;
    for (i, m) in announced.media.iter().enumerate() {
        let control = match m.control() {
            Some(c) if c.contains("://") => c.to_owned(),
            Some(c) => format!("{url}/{}", c.trim_matches('/')),
            None => format!("{url}/trackID={i}"),
        };
        let channels = format!("{}-{}", 2 * i, 2 * i + 1);
        let mut setup = Request::new(Method::Setup, control).header(
            "Transport",
            format!("RTP/AVP/TCP;unicast;interleaved={channels};mode=record"),
        );
        if let Some(s) = &session {
            setup = setup.header("Session", s.as_str());
        }
        let (r, _) = send(&mut server, setup);
        if r.status != StatusCode::OK {
            // Controls the path resolution cannot tell apart (an absolute URL on another
            // path, for one) are refused, never mistaken for another track.
            continue;
        }
        let sid = r
            .headers
            .get_typed::<Session>()
            .ok()
            .flatten()
            .expect("a session")
            .id;
        session.get_or_insert(sid);
    }
    let Some(sid) = session else {
        return;
    };
    let record = Request::new(Method::Record, url).header("Session", sid.as_str());
    let (r, events) = send(&mut server, record);
    assert_eq!(r.status, StatusCode::OK);
    assert!(matches!(&events[..], [ServerEvent::PublishStarted { .. }]));
    let ready = Input::PathReady {
        path: "cam".into(),
        client: ClientId(1),
        first: server.next_track(),
        tracks: Vec::new(),
        added: Vec::new(),
    };
    server.handle_input(ready).expect("no connection involved");
    let (r, _) = send(&mut server, Request::new(Method::Describe, url));
    assert_eq!(r.status, StatusCode::OK);
    let body = String::from_utf8(r.body.clone()).expect("our SDP is UTF-8");
    let served = sdp::parse(&body).expect("the viewers' SDP parses");
    assert_eq!(served.media.len(), announced.media.len(), "{body}");
    let teardown = Request::new(Method::Teardown, url).header("Session", sid.as_str());
    assert_eq!(send(&mut server, teardown).0.status, StatusCode::OK);
    assert_eq!(server.published_paths().count(), 0);
}

/// Publishing (RFC 2326 §10.3, §10.4, §10.11): whatever a relay answers, the publisher never
/// panics, sends only requests it may send in its state, and is always either recording,
/// waiting for an answer, or waiting to connect again (it never stalls). `data` is read as a
/// sequence of RTSP messages; each response is given the CSeq of the request last sent, so
/// it is taken as that request's answer.
pub fn publisher_answers(data: &[u8]) {
    use crate::rtsp::publisher::{Input, Output, PublishTransport, Publisher, PublisherConfig};
    use std::time::{Duration, Instant};

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
        m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:trackID=0\r\n\
        m=audio 0 RTP/AVP 97\r\na=rtpmap:97 opus/48000/2\r\na=control:trackID=1\r\n";
    let t0 = Instant::now();
    let udp = data.first().is_some_and(|b| b & 1 == 1);
    let cfg = PublisherConfig {
        transport: if udp {
            PublishTransport::Udp
        } else {
            PublishTransport::Tcp
        },
        ..PublisherConfig::default()
    };
    let desc = sdp::parse(SDP).expect("the test SDP parses");
    let url = "rtsp://u:p@relay.example/cam";
    let mut p = Publisher::new(cfg, url, &desc, vec![(5000, 5001), (5002, 5003)], t0, 3)
        .expect("a valid publisher");
    let mut now = t0;
    let mut last_cseq = 0;
    let mut wake = None;
    let drain = |p: &mut Publisher, last_cseq: &mut u32, wake: &mut Option<Instant>| {
        while let Some(o) = p.poll_output() {
            match o {
                Output::Transmit(r) => {
                    *last_cseq = r.cseq().ok().flatten().expect("every request has a CSeq");
                }
                Output::Connect { .. } => p.handle_input(Input::Connected { now: t0 }),
                Output::Timeout(t) => *wake = Some(t),
                _ => {}
            }
        }
    };
    drain(&mut p, &mut last_cseq, &mut wake);
    let mut rest = data.get(1..).unwrap_or_default();
    while let Ok(Parsed::Complete { message, consumed }) = parse(rest, &Limits::default()) {
        rest = &rest[consumed.max(1).min(rest.len())..];
        now += Duration::from_millis(10);
        match message {
            Message::Response(mut r) => {
                r.headers.set_typed(&CSeq(last_cseq));
                p.handle_input(Input::Response { now, response: r });
            }
            Message::Request(r) => p.handle_input(Input::Request { now, request: r }),
            Message::Data(_) => p.handle_input(Input::ConnectionLost {
                now,
                reason: "lost".into(),
            }),
        }
        drain(&mut p, &mut last_cseq, &mut wake);
        if let Some(t) = wake.take() {
            now = now.max(t);
            p.handle_input(Input::Timeout(now));
            drain(&mut p, &mut last_cseq, &mut wake);
        }
        assert!(
            p.is_recording() || wake.is_some() || p.is_stopped(),
            "the publisher waits for nothing"
        );
    }
}

/// MIKEY (RFC 3830): the parser never panics, and a message it reads writes back to bytes
/// that read as the same message.
pub fn mikey_round_trip(data: &[u8]) {
    if let Ok(m) = crate::mikey::MikeyMessage::parse(data) {
        let again = crate::mikey::MikeyMessage::parse(&m.to_bytes());
        assert_eq!(again.as_ref(), Ok(&m), "written back: {m:?}");
    }
}
