//! The publisher in virtual time: the relay's side is written out as responses, and every
//! request is compared as the text that would go on the wire.

use super::*;
use crate::rtsp::message::StatusCode;
use crate::sdp;

const SEC: Duration = Duration::from_secs(1);
const URL: &str = "rtsp://relay.example:8554/cam";

/// Two media sections as our server describes them (trackID controls).
const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=Livecast\r\nt=0 0\r\na=control:*\r\n\
    m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
    a=fmtp:96 packetization-mode=1\r\na=control:trackID=0\r\n\
    m=audio 0 RTP/AVP 97\r\na=rtpmap:97 opus/48000/2\r\na=control:trackID=1\r\n";

struct Relay {
    p: Publisher,
    t0: Instant,
    now: Instant,
}

impl Relay {
    fn new(cfg: PublisherConfig, url: &str) -> Self {
        let t0 = Instant::now();
        let sdp = sdp::parse(SDP).unwrap();
        let p = Publisher::new(cfg, url, &sdp, vec![(5000, 5001), (5002, 5003)], t0, 1).unwrap();
        Relay { p, t0, now: t0 }
    }

    fn tcp() -> Self {
        Self::new(PublisherConfig::default(), URL)
    }

    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.p.poll_output()).collect()
    }

    /// The requests in `out`, as wire text.
    fn requests(out: &[Output]) -> Vec<String> {
        out.iter()
            .filter_map(|o| match o {
                Output::Transmit(r) => {
                    let mut b = Vec::new();
                    r.write_to(&mut b);
                    Some(String::from_utf8(b).unwrap())
                }
                _ => None,
            })
            .collect()
    }

    fn events(out: &[Output]) -> Vec<PublishEvent> {
        out.iter()
            .filter_map(|o| match o {
                Output::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    /// The one request now out, as text.
    fn request(&mut self) -> String {
        let out = self.drain();
        let reqs = Self::requests(&out);
        assert_eq!(reqs.len(), 1, "{out:?}");
        reqs[0].clone()
    }

    fn connected(&mut self) -> String {
        self.p.handle_input(Input::Connected { now: self.now });
        self.request()
    }

    /// Answers the request with `cseq` with `status` and `headers`; returns what came out.
    fn answer(&mut self, cseq: u32, status: u16, headers: &[(&str, &str)]) -> Vec<Output> {
        let mut r = Response::new(StatusCode(status)).header("CSeq", cseq.to_string());
        for (n, v) in headers {
            r = r.header(*n, *v);
        }
        self.p.handle_input(Input::Response {
            now: self.now,
            response: r,
        });
        self.drain()
    }

    fn answer_one(&mut self, cseq: u32, status: u16, headers: &[(&str, &str)]) -> String {
        let out = self.answer(cseq, status, headers);
        let reqs = Self::requests(&out);
        assert_eq!(reqs.len(), 1, "{out:?}");
        reqs[0].clone()
    }

    /// Runs the whole TCP exchange up to RECORD's 200; returns the last outputs.
    fn recording_tcp(&mut self) -> Vec<Output> {
        self.drain();
        self.connected();
        self.answer_one(1, 200, &[]);
        self.answer_one(2, 200, &[]);
        let s = [
            ("Session", "ab12;timeout=20"),
            ("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1"),
        ];
        self.answer_one(3, 200, &s);
        let s = [
            ("Session", "ab12;timeout=20"),
            ("Transport", "RTP/AVP/TCP;unicast;interleaved=2-3"),
        ];
        self.answer_one(4, 200, &s);
        self.answer(5, 200, &[("Session", "ab12")])
    }
}

#[test]
fn publishes_over_tcp_with_announce_setup_record_in_order() {
    let mut r = Relay::tcp();
    let out = r.drain();
    assert_eq!(
        out[..2],
        [
            Output::Event(PublishEvent::Connecting { attempt: 1 }),
            Output::Connect {
                host: "relay.example".into(),
                port: 8554
            }
        ]
    );
    assert_eq!(
        r.connected(),
        "OPTIONS rtsp://relay.example:8554/cam RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: livecast\r\n\r\n"
    );
    let announce = r.answer_one(1, 200, &[]);
    assert_eq!(
        announce,
        format!(
            "ANNOUNCE rtsp://relay.example:8554/cam RTSP/1.0\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\nCSeq: 2\r\nUser-Agent: livecast\r\n\r\n{}",
            sdp::parse(SDP).unwrap().to_string().len(),
            sdp::parse(SDP).unwrap()
        )
    );
    assert_eq!(
        r.answer_one(2, 200, &[]),
        "SETUP rtsp://relay.example:8554/cam/trackID=0 RTSP/1.0\r\n\
         Transport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\n\
         CSeq: 3\r\nUser-Agent: livecast\r\n\r\n"
    );
    let s = [
        ("Session", "ab12;timeout=20"),
        (
            "Transport",
            "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
        ),
    ];
    assert_eq!(
        r.answer_one(3, 200, &s),
        "SETUP rtsp://relay.example:8554/cam/trackID=1 RTSP/1.0\r\n\
         Transport: RTP/AVP/TCP;unicast;interleaved=2-3;mode=record\r\n\
         CSeq: 4\r\nUser-Agent: livecast\r\nSession: ab12\r\n\r\n"
    );
    // The relay may pick other channels: they are the ones used.
    let s = [("Transport", "RTP/AVP/TCP;unicast;interleaved=6-7")];
    assert_eq!(
        r.answer_one(4, 200, &s),
        "RECORD rtsp://relay.example:8554/cam RTSP/1.0\r\nRange: npt=0.000-\r\n\
         CSeq: 5\r\nUser-Agent: livecast\r\nSession: ab12\r\n\r\n"
    );
    assert!(!r.p.is_recording());
    let out = r.answer(5, 200, &[]);
    assert_eq!(
        Relay::events(&out),
        [PublishEvent::Recording {
            links: vec![
                PublishLink::Tcp { rtp: 0, rtcp: 1 },
                PublishLink::Tcp { rtp: 6, rtcp: 7 }
            ]
        }]
    );
    assert!(r.p.is_recording());
    // Keep-alive every half of the 20 s session time-out.
    assert_eq!(out.last(), Some(&Output::Timeout(r.t0 + 10 * SEC)));
    r.now = r.t0 + 10 * SEC;
    r.p.handle_input(Input::Timeout(r.now));
    let out = r.drain();
    assert_eq!(
        Relay::requests(&out),
        [
            "OPTIONS rtsp://relay.example:8554/cam RTSP/1.0\r\nCSeq: 6\r\nUser-Agent: livecast\r\n\
          Session: ab12\r\n\r\n"
        ]
    );
    assert_eq!(out.last(), Some(&Output::Timeout(r.t0 + 20 * SEC)));
}

#[test]
fn udp_setup_names_our_ports_and_takes_the_relays() {
    let cfg = PublisherConfig {
        transport: PublishTransport::Udp,
        ..PublisherConfig::default()
    };
    let mut r = Relay::new(cfg, URL);
    r.drain();
    r.connected();
    r.answer_one(1, 200, &[]);
    assert_eq!(
        r.answer_one(2, 200, &[]),
        "SETUP rtsp://relay.example:8554/cam/trackID=0 RTSP/1.0\r\n\
         Transport: RTP/AVP;unicast;client_port=5000-5001;mode=record\r\n\
         CSeq: 3\r\nUser-Agent: livecast\r\n\r\n"
    );
    let s = [
        ("Session", "9"),
        (
            "Transport",
            "RTP/AVP;unicast;client_port=5000-5001;server_port=7000-7001",
        ),
    ];
    assert!(r
        .answer_one(3, 200, &s)
        .contains("client_port=5002-5003;mode=record"));
    // A relay that names no server port cannot be sent to over UDP.
    let out = r.answer(
        4,
        200,
        &[("Transport", "RTP/AVP;unicast;client_port=5002-5003")],
    );
    assert_eq!(
        Relay::events(&out),
        [PublishEvent::Retrying {
            reason: "SETUP: the relay named no server_port for UDP (try TCP)".into(),
            after: SEC
        }]
    );

    // The next attempt, answered properly.
    r.now += SEC;
    r.p.handle_input(Input::Timeout(r.now));
    r.drain();
    r.connected();
    r.answer_one(1, 200, &[]);
    r.answer_one(2, 200, &[]);
    r.answer_one(3, 200, &s);
    let s2 = [("Transport", "RTP/AVP;unicast;server_port=7002-7003")];
    r.answer_one(4, 200, &s2);
    let out = r.answer(5, 200, &[]);
    assert_eq!(
        Relay::events(&out),
        [PublishEvent::Recording {
            links: vec![
                PublishLink::Udp {
                    rtp: 7000,
                    rtcp: 7001
                },
                PublishLink::Udp {
                    rtp: 7002,
                    rtcp: 7003
                }
            ]
        }]
    );
}

#[test]
fn digest_challenge_is_answered_and_a_wrong_password_retries_with_the_reason() {
    let mut r = Relay::new(
        PublisherConfig::default(),
        "rtsp://pub:s%40cret@relay.example:8554/cam",
    );
    r.drain();
    r.connected();
    let challenge = [
        (
            "WWW-Authenticate",
            "Digest realm=\"relay\", nonce=\"n1\", algorithm=SHA-256",
        ),
        ("WWW-Authenticate", "Digest realm=\"relay\", nonce=\"n2\""),
    ];
    let again = r.answer_one(1, 401, &challenge);
    let expected = DigestCredentials::answer(
        &preferred_challenge([challenge[0].1]).unwrap(),
        "pub",
        "s@cret",
        "OPTIONS",
        "rtsp://relay.example:8554/cam",
        "unused",
    )
    .unwrap();
    assert!(again.starts_with("OPTIONS rtsp://relay.example:8554/cam RTSP/1.0\r\n"));
    assert!(
        again.contains(&format!("response=\"{}\"", expected.response)),
        "{again}"
    );
    assert!(again.contains("algorithm=SHA-256"), "{again}");
    // Every later request carries credentials too.
    assert!(r
        .answer_one(2, 200, &[])
        .contains("Authorization: Digest username=\"pub\""));
    // A second, non-stale challenge: the password is wrong.
    let out = r.answer(3, 401, &challenge);
    assert_eq!(
        Relay::events(&out),
        [PublishEvent::Retrying {
            reason: "ANNOUNCE: the relay refused user \"pub\" (401): wrong user name or password"
                .into(),
            after: SEC
        }]
    );
    assert!(out.contains(&Output::Disconnect));
}

#[test]
fn basic_is_used_when_it_is_all_the_relay_offers() {
    let mut r = Relay::new(PublisherConfig::default(), "rtsp://u:p@relay.example/cam");
    r.drain();
    r.connected();
    let again = r.answer_one(1, 401, &[("WWW-Authenticate", "Basic realm=\"x\"")]);
    // base64("u:p")
    assert!(again.contains("Authorization: Basic dTpw\r\n"), "{again}");
}

#[test]
fn without_credentials_a_401_says_where_to_put_them() {
    let mut r = Relay::tcp();
    r.drain();
    r.connected();
    let out = r.answer(
        1,
        401,
        &[("WWW-Authenticate", "Digest realm=\"r\", nonce=\"n\"")],
    );
    let PublishEvent::Retrying { reason, .. } = &Relay::events(&out)[0] else {
        panic!("{out:?}");
    };
    assert!(
        reason.contains("rtsp://USER:PASSWORD@HOST:PORT/PATH"),
        "{reason}"
    );
}

#[test]
fn refusals_back_off_doubling_to_the_cap_and_recording_resets_it() {
    let mut r = Relay::tcp();
    let mut waits = Vec::new();
    for _ in 0..7 {
        r.drain();
        r.connected();
        r.answer_one(1, 200, &[]);
        let out = r.answer(2, 453, &[]);
        let PublishEvent::Retrying { reason, after } = Relay::events(&out)[0].clone() else {
            panic!("{out:?}");
        };
        assert_eq!(
            reason,
            "ANNOUNCE refused: 453 Not Enough Bandwidth: the path already has a publisher"
        );
        waits.push(after.as_secs());
        // Nothing happens before the wait is over.
        r.p.handle_input(Input::Timeout(r.now + after - Duration::from_millis(1)));
        assert!(r.drain().is_empty());
        r.now += after;
        r.p.handle_input(Input::Timeout(r.now));
    }
    assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
    let out = r.recording_tcp();
    assert!(matches!(
        Relay::events(&out)[..],
        [PublishEvent::Recording { .. }]
    ));
    r.p.handle_input(Input::ConnectionLost {
        now: r.now,
        reason: "reset by peer".into(),
    });
    let out = r.drain();
    assert_eq!(
        Relay::events(&out),
        [PublishEvent::Retrying {
            reason: "connection lost: reset by peer".into(),
            after: SEC
        }]
    );
}

#[test]
fn an_unanswered_request_ends_the_attempt() {
    let mut r = Relay::tcp();
    r.drain();
    r.connected();
    r.answer_one(1, 200, &[]);
    r.now += 10 * SEC;
    r.p.handle_input(Input::Timeout(r.now));
    let out = r.drain();
    assert_eq!(
        Relay::events(&out),
        [PublishEvent::Retrying {
            reason: "no answer to ANNOUNCE rtsp://relay.example:8554/cam".into(),
            after: SEC
        }]
    );
    // A failed connection retries too, with the next wait.
    r.now += SEC;
    r.p.handle_input(Input::Timeout(r.now));
    r.drain();
    r.p.handle_input(Input::ConnectFailed {
        now: r.now,
        reason: "connection refused".into(),
    });
    assert_eq!(
        Relay::events(&r.drain()),
        [PublishEvent::Retrying {
            reason: "cannot connect: connection refused".into(),
            after: 2 * SEC
        }]
    );
}

#[test]
fn stop_tears_down_a_recording_session() {
    let mut r = Relay::tcp();
    r.recording_tcp();
    r.p.handle_input(Input::Stop { now: r.now });
    assert_eq!(
        r.request(),
        "TEARDOWN rtsp://relay.example:8554/cam RTSP/1.0\r\nCSeq: 6\r\nUser-Agent: livecast\r\n\
         Session: ab12\r\n\r\n"
    );
    let out = r.answer(6, 200, &[]);
    assert_eq!(
        out,
        [Output::Disconnect, Output::Event(PublishEvent::Stopped)]
    );
    assert!(r.p.is_stopped());
    // Waiting for a retry, a stop is immediate.
    let mut r = Relay::tcp();
    r.drain();
    r.p.handle_input(Input::ConnectFailed {
        now: r.now,
        reason: "refused".into(),
    });
    r.drain();
    r.p.handle_input(Input::Stop { now: r.now });
    assert_eq!(r.drain(), [Output::Event(PublishEvent::Stopped)]);
}

#[test]
fn requests_from_the_relay_get_501_and_stray_responses_are_ignored() {
    let mut r = Relay::tcp();
    r.drain();
    r.connected();
    let req = Request::new(Method::GetParameter, URL).header("CSeq", "9");
    r.p.handle_input(Input::Request {
        now: r.now,
        request: req,
    });
    let out = r.drain();
    let [Output::Respond(resp)] = &out[..] else {
        panic!("{out:?}");
    };
    assert_eq!(resp.status, StatusCode(501));
    assert_eq!(resp.cseq(), Ok(Some(9)));
    // A response to another CSeq changes nothing; the awaited one goes on.
    assert!(r.answer(7, 200, &[]).is_empty());
    assert!(r.answer_one(1, 200, &[]).starts_with("ANNOUNCE "));
}

#[test]
fn bad_setups_are_refused_at_construction() {
    let t0 = Instant::now();
    let sdp = sdp::parse(SDP).unwrap();
    let cfg = PublisherConfig::default();
    let e = Publisher::new(cfg.clone(), "http://x/y", &sdp, vec![], t0, 1)
        .err()
        .unwrap();
    assert!(e.0.contains("only rtsp://"), "{e}");
    let udp = PublisherConfig {
        transport: PublishTransport::Udp,
        ..cfg
    };
    let e = Publisher::new(udp, URL, &sdp, vec![(1, 2)], t0, 1)
        .err()
        .unwrap();
    assert_eq!(
        e.0,
        "UDP publishing needs a port pair per track (2 tracks, 1 pairs)"
    );
}

#[test]
fn generated_answers_never_stall_it() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(15);
    let pieces: &[&str] = &[
        "RTSP/1.0 200 OK\r\n",
        "RTSP/1.0 401 Unauthorized\r\n",
        "RTSP/1.0 453 Not Enough Bandwidth\r\n",
        "RTSP/1.0 500 Internal Server Error\r\n",
        "OPTIONS * RTSP/1.0\r\nCSeq: 4\r\n",
        "WWW-Authenticate: Digest realm=\"r\", nonce=\"n\"\r\n",
        "WWW-Authenticate: Digest realm=\"r\", nonce=\"m\", stale=TRUE\r\n",
        "WWW-Authenticate: Basic realm=\"r\"\r\n",
        "WWW-Authenticate: Negotiate\r\n",
        "Session: 1234;timeout=1\r\n",
        "Session: ;\r\n",
        "Transport: RTP/AVP/TCP;interleaved=4-5\r\n",
        "Transport: RTP/AVP;server_port=9000-9001\r\n",
        "Transport: RTP/AVP;server_port=0\r\n",
        "Transport: garbage\r\n",
        "$\u{0}\u{0}\u{1}x",
        "\r\n",
    ];
    for _ in 0..3000 {
        let mut data = vec![rng.random::<u8>()];
        for _ in 0..rng.random_range(1..40) {
            data.extend_from_slice(pieces[rng.random_range(0..pieces.len())].as_bytes());
        }
        crate::fuzzing::publisher_answers(&data);
    }
}
