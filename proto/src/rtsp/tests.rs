//! Tests across the RTSP modules: golden messages captured from real peers
//! (`proto/testdata/rtsp/`, see the README there), every streaming split point, and the
//! `rtsp_roundtrip` fuzz check run over deterministic pseudo-random mutations.

use super::*;

macro_rules! golden {
    ($name:literal) => {
        include_bytes!(concat!("../../testdata/rtsp/", $name)).as_slice()
    };
}

const FFMPEG_OPTIONS: &[u8] = golden!("ffmpeg_options.txt");
const FFMPEG_DESCRIBE: &[u8] = golden!("ffmpeg_describe.txt");
const FFMPEG_DESCRIBE_DIGEST: &[u8] = golden!("ffmpeg_describe_digest.txt");
const FFMPEG_DESCRIBE_DIGEST_TWO: &[u8] = golden!("ffmpeg_describe_digest_two_challenges.txt");
const FFMPEG_SETUP_DIGEST: &[u8] = golden!("ffmpeg_setup_digest.txt");
const GSTREAMER_DESCRIBE_DIGEST: &[u8] = golden!("gstreamer_describe_digest.txt");
const GSTREAMER_SETUP_DIGEST: &[u8] = golden!("gstreamer_setup_digest.txt");
const FFMPEG_SETUP: &[u8] = golden!("ffmpeg_setup.txt");
const FFMPEG_SETUP_TCP: &[u8] = golden!("ffmpeg_setup_tcp.txt");
const FFMPEG_PLAY: &[u8] = golden!("ffmpeg_play.txt");
const FFMPEG_ANNOUNCE: &[u8] = golden!("ffmpeg_announce.txt");
const FFMPEG_SETUP_RECORD: &[u8] = golden!("ffmpeg_setup_record.txt");
const FFMPEG_RECORD: &[u8] = golden!("ffmpeg_record.txt");
const FFMPEG_TEARDOWN: &[u8] = golden!("ffmpeg_teardown.txt");
const FFMPEG_INTERLEAVED_RTCP: &[u8] = golden!("ffmpeg_interleaved_rtcp.bin");
const FFMPEG_OPTIONS_RESPONSE: &[u8] = golden!("ffmpeg_options_response.txt");
const FFMPEG_ANNOUNCE_RESPONSE: &[u8] = golden!("ffmpeg_announce_response.txt");
const FFMPEG_SETUP_RESPONSE: &[u8] = golden!("ffmpeg_setup_response.txt");
const FFMPEG_RECORD_RESPONSE: &[u8] = golden!("ffmpeg_record_response.txt");
const FFMPEG_NOT_IMPLEMENTED_RESPONSE: &[u8] = golden!("ffmpeg_not_implemented_response.txt");
const GSTREAMER_OPTIONS: &[u8] = golden!("gstreamer_options.txt");
const GSTREAMER_DESCRIBE: &[u8] = golden!("gstreamer_describe.txt");
const GSTREAMER_SETUP: &[u8] = golden!("gstreamer_setup.txt");
const GSTREAMER_SETUP_TCP: &[u8] = golden!("gstreamer_setup_tcp.txt");
const GSTREAMER_PLAY: &[u8] = golden!("gstreamer_play.txt");
const GSTREAMER_TEARDOWN: &[u8] = golden!("gstreamer_teardown.txt");

const ALL_GOLDEN: &[&[u8]] = &[
    FFMPEG_OPTIONS,
    FFMPEG_DESCRIBE,
    FFMPEG_DESCRIBE_DIGEST,
    FFMPEG_DESCRIBE_DIGEST_TWO,
    FFMPEG_SETUP_DIGEST,
    GSTREAMER_DESCRIBE_DIGEST,
    GSTREAMER_SETUP_DIGEST,
    FFMPEG_SETUP,
    FFMPEG_SETUP_TCP,
    FFMPEG_PLAY,
    FFMPEG_ANNOUNCE,
    FFMPEG_SETUP_RECORD,
    FFMPEG_RECORD,
    FFMPEG_TEARDOWN,
    FFMPEG_INTERLEAVED_RTCP,
    FFMPEG_OPTIONS_RESPONSE,
    FFMPEG_ANNOUNCE_RESPONSE,
    FFMPEG_SETUP_RESPONSE,
    FFMPEG_RECORD_RESPONSE,
    FFMPEG_NOT_IMPLEMENTED_RESPONSE,
    GSTREAMER_OPTIONS,
    GSTREAMER_DESCRIBE,
    GSTREAMER_SETUP,
    GSTREAMER_SETUP_TCP,
    GSTREAMER_PLAY,
    GSTREAMER_TEARDOWN,
];

/// Parses a buffer holding exactly one message.
fn one(buf: &[u8]) -> Message {
    match parse(buf, &Limits::default()) {
        Ok(Parsed::Complete { message, consumed }) => {
            assert_eq!(consumed, buf.len(), "{:?}", String::from_utf8_lossy(buf));
            message
        }
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn req(buf: &[u8]) -> Request {
    match one(buf) {
        Message::Request(r) => r,
        m => panic!("not a request: {m:?}"),
    }
}

/// [`req`], checking its method and CSeq.
fn request(buf: &[u8], method: Method, cseq: u32) -> Request {
    let r = req(buf);
    assert_eq!(r.method, method);
    assert_eq!(r.cseq(), Ok(Some(cseq)));
    r
}

fn resp(buf: &[u8]) -> Response {
    match one(buf) {
        Message::Response(r) => r,
        m => panic!("not a response: {m:?}"),
    }
}

fn transport(r: &Request) -> TransportSpec {
    let mut t = r.headers.get_typed::<Transport>().unwrap().unwrap().0;
    assert_eq!(t.len(), 1);
    t.remove(0)
}

// ---------------------------------------------------------------------------------------------
// Golden data from real peers.

#[test]
fn ffmpeg_requests() {
    let r = request(FFMPEG_OPTIONS, Method::Options, 1);
    assert_eq!(r.uri, "rtsp://127.0.0.1:18554/live");
    assert_eq!(r.headers.get("user-agent"), Some("Lavf59.27.100"));

    let r = request(FFMPEG_DESCRIBE, Method::Describe, 2);
    assert_eq!(r.headers.get("Accept"), Some("application/sdp"));

    let r = req(FFMPEG_DESCRIBE_DIGEST);
    assert_eq!(r.cseq(), Ok(Some(3)));
    assert!(r
        .headers
        .get("Authorization")
        .unwrap()
        .starts_with("Digest username=\"user\", realm=\"livecast\""));

    // UDP: RTP/AVP/UDP is RTP/AVP.
    let r = request(FFMPEG_SETUP, Method::Setup, 3);
    assert_eq!(r.uri, "rtsp://127.0.0.1:18554/live/trackID=0");
    let t = transport(&r);
    assert_eq!(t.profile, TransportProfile::RtpAvp);
    assert!(!t.multicast);
    assert_eq!(t.client_port, Some((17444, 17445)));
    assert_eq!(t.interleaved, None);

    let r = req(FFMPEG_SETUP_TCP);
    let t = transport(&r);
    assert_eq!(t.profile, TransportProfile::RtpAvpTcp);
    assert_eq!(t.interleaved, Some((0, 1)));
    assert_eq!(t.client_port, None);

    let r = request(FFMPEG_PLAY, Method::Play, 4);
    assert_eq!(r.uri, "rtsp://127.0.0.1:18554/live/");
    assert_eq!(
        r.headers.get_typed::<Range>(),
        Ok(Some(Range::Npt {
            start: NptTime::Seconds(0.0),
            end: None
        }))
    );
    assert_eq!(
        r.headers.get_typed::<Session>(),
        Ok(Some(Session {
            id: "12345678".into(),
            timeout: None
        }))
    );

    request(FFMPEG_TEARDOWN, Method::Teardown, 5);
}

#[test]
fn ffmpeg_publishing() {
    // ANNOUNCE carries the SDP (a request with a body).
    let r = request(FFMPEG_ANNOUNCE, Method::Announce, 2);
    assert_eq!(
        r.headers.get_typed::<ContentType>(),
        Ok(Some(ContentType("application/sdp".into())))
    );
    assert_eq!(
        r.headers.get_typed::<ContentLength>(),
        Ok(Some(ContentLength(298)))
    );
    assert_eq!(r.body.len(), 298);
    assert!(r.body.starts_with(b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\n"));
    assert!(r.body.ends_with(b"a=control:streamid=0\r\n"));

    let r = req(FFMPEG_SETUP_RECORD);
    let t = transport(&r);
    assert_eq!(t.profile, TransportProfile::RtpAvpTcp);
    assert_eq!(t.interleaved, Some((0, 1)));
    assert_eq!(t.mode.as_deref(), Some("record"));

    request(FFMPEG_RECORD, Method::Record, 4);

    // The first frame ffmpeg sent after RECORD: an RTCP sender report on channel 1.
    let Message::Data(d) = one(FFMPEG_INTERLEAVED_RTCP) else {
        panic!()
    };
    assert_eq!(d.channel, 1);
    assert_eq!(d.payload.len(), 28);
    assert_eq!(&d.payload[..2], [0x80, 0xc8]); // V=2, SR
}

#[test]
fn ffmpeg_responses() {
    let r = resp(FFMPEG_OPTIONS_RESPONSE);
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.cseq(), Ok(Some(1)));
    assert_eq!(
        r.headers.get_typed::<Public>(),
        Ok(Some(Public(vec![
            Method::Announce,
            Method::Pause,
            Method::Setup,
            Method::Teardown,
            Method::Record
        ])))
    );

    let r = resp(FFMPEG_ANNOUNCE_RESPONSE);
    assert_eq!(r.cseq(), Ok(Some(2)));
    assert_eq!(r.headers.get("Server"), Some("Lavf59.27.100"));

    let r = resp(FFMPEG_SETUP_RESPONSE);
    let t = r.headers.get_typed::<Transport>().unwrap().unwrap().0;
    assert_eq!(t[0].profile, TransportProfile::RtpAvpTcp);
    assert_eq!(t[0].mode.as_deref(), Some("receive"));
    assert_eq!(t[0].interleaved, Some((0, 1)));
    assert_eq!(
        r.headers.get_typed::<Session>().unwrap().unwrap().id,
        "4208991434"
    );

    let r = resp(FFMPEG_RECORD_RESPONSE);
    assert_eq!(r.cseq(), Ok(Some(4)));

    // ffmpeg answers an unknown method without a CSeq.
    let r = resp(FFMPEG_NOT_IMPLEMENTED_RESPONSE);
    assert_eq!(r.status, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(r.reason, "Not Implemented");
    assert_eq!(r.cseq(), Ok(None));
    assert!(r.headers.is_empty());
}

#[test]
fn gstreamer_requests() {
    // GStreamer's OPTIONS carries RealMedia compatibility headers and two User-Agent lines.
    let r = request(GSTREAMER_OPTIONS, Method::Options, 1);
    assert_eq!(r.headers.len(), 10);
    assert_eq!(
        r.headers.get_all("User-Agent").collect::<Vec<_>>(),
        [
            "GStreamer/1.22.0",
            "RealMedia Player Version 6.0.9.1235 (linux-2.0-libc6-i386-gcc2.95)"
        ]
    );
    assert_eq!(
        r.headers.get("PlayerStarttime"),
        Some("[28/03/2003:22:50:23 00:00]")
    );

    request(GSTREAMER_DESCRIBE, Method::Describe, 2);

    let r = req(GSTREAMER_SETUP);
    assert_eq!(r.cseq(), Ok(Some(3)));
    let t = transport(&r);
    assert_eq!(t.profile, TransportProfile::RtpAvp);
    assert_eq!(t.client_port, Some((41732, 41733)));

    let r = req(GSTREAMER_SETUP_TCP);
    let t = transport(&r);
    assert_eq!(t.profile, TransportProfile::RtpAvpTcp);
    assert_eq!(t.interleaved, Some((0, 1)));

    let r = request(GSTREAMER_PLAY, Method::Play, 4);
    assert_eq!(
        r.headers.get_typed::<Range>(),
        Ok(Some(Range::Npt {
            start: NptTime::Seconds(0.0),
            end: None
        }))
    );

    let r = request(GSTREAMER_TEARDOWN, Method::Teardown, 5);
    assert_eq!(r.headers.get("session"), Some("12345678"));
}

#[test]
fn golden_messages_write_back_byte_for_byte() {
    // Every capture is canonical CRLF RTSP, so the writer reproduces it exactly.
    for &g in ALL_GOLDEN {
        let mut out = Vec::new();
        one(g).write_to(&mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(g),
            "written form differs"
        );
        assert_eq!(out, g);
    }
}

// ---------------------------------------------------------------------------------------------
// Streaming: every split point.

/// Feeds every prefix of each message in `buf`: Incomplete until the message is whole, then the
/// same Complete however many bytes follow. Returns the messages in order.
fn check_every_split(buf: &[u8]) -> Vec<Message> {
    let limits = Limits::default();
    let mut messages = Vec::new();
    let mut offset = 0;
    while offset < buf.len() {
        let rest = &buf[offset..];
        let Ok(Parsed::Complete { message, consumed }) = parse(rest, &limits) else {
            panic!("no message at {offset}");
        };
        for i in 0..consumed {
            assert_eq!(
                parse(&rest[..i], &limits),
                Ok(Parsed::Incomplete),
                "message at {offset}, split at {i}"
            );
        }
        let want = Ok(Parsed::Complete {
            message: message.clone(),
            consumed,
        });
        for i in consumed..=rest.len() {
            assert_eq!(
                parse(&rest[..i], &limits),
                want,
                "message at {offset}, split at {i}"
            );
        }
        messages.push(message);
        offset += consumed;
    }
    messages
}

/// The same stream read the way a connection reads it: arbitrary chunks, parse, drain.
fn read_in_chunks(buf: &[u8], chunk: usize) -> Vec<Message> {
    let limits = Limits::default();
    let mut pending = Vec::new();
    let mut out = Vec::new();
    for piece in buf.chunks(chunk) {
        pending.extend_from_slice(piece);
        while let Ok(Parsed::Complete { message, consumed }) = parse(&pending, &limits) {
            out.push(message);
            pending.drain(..consumed);
        }
    }
    assert!(pending.is_empty(), "left over: {pending:?}");
    out
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn request_with_body_at_every_split() {
    let msgs = check_every_split(FFMPEG_ANNOUNCE);
    assert_eq!(msgs.len(), 1);
}

#[test]
fn response_at_every_split() {
    let msgs = check_every_split(FFMPEG_SETUP_RESPONSE);
    assert!(matches!(&msgs[..], [Message::Response(_)]));
    // A response with a body (a DESCRIBE answer), built by the writer.
    let mut buf = Vec::new();
    Response::new(StatusCode::OK)
        .typed(&CSeq(2))
        .typed(&ContentBase("rtsp://h/live/".into()))
        .body(
            "application/sdp",
            b"v=0\r\nm=video 0 RTP/AVP 96\r\n".to_vec(),
        )
        .write_to(&mut buf);
    assert_eq!(check_every_split(&buf).len(), 1);
}

#[test]
fn pipelined_requests_at_every_split_and_in_order() {
    // Keep-alive CRLFs between messages are skipped (and consumed with the next message).
    let buf = concat(&[
        FFMPEG_OPTIONS,
        b"\r\n",
        FFMPEG_DESCRIBE,
        FFMPEG_SETUP,
        b"\r\n\r\n",
        FFMPEG_ANNOUNCE,
        GSTREAMER_TEARDOWN,
    ]);
    let msgs = check_every_split(&buf);
    let methods: Vec<Method> = msgs
        .iter()
        .map(|m| match m {
            Message::Request(r) => r.method.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        methods,
        [
            Method::Options,
            Method::Describe,
            Method::Setup,
            Method::Announce,
            Method::Teardown
        ]
    );
    for chunk in [1, 2, 3, 7, 64, 1000] {
        assert_eq!(read_in_chunks(&buf, chunk), msgs, "chunk {chunk}");
    }
}

#[test]
fn interleaved_frame_then_response_at_every_split() {
    let buf = concat(&[
        FFMPEG_INTERLEAVED_RTCP,
        FFMPEG_RECORD_RESPONSE,
        FFMPEG_INTERLEAVED_RTCP,
        b"$\x00\x00\x00", // an empty frame on channel 0
        FFMPEG_OPTIONS_RESPONSE,
    ]);
    let msgs = check_every_split(&buf);
    assert!(matches!(
        &msgs[..],
        [
            Message::Data(_),
            Message::Response(_),
            Message::Data(_),
            Message::Data(InterleavedFrame { channel: 0, payload }),
            Message::Response(_)
        ] if payload.is_empty()
    ));
    for chunk in [1, 5, 33] {
        assert_eq!(read_in_chunks(&buf, chunk), msgs, "chunk {chunk}");
    }
}

#[test]
fn lf_only_and_folded_at_every_split() {
    let buf = b"\nGET_PARAMETER rtsp://h/live RTSP/1.0\n\
        CSeq: 9\n\
        Session: 12345678\n\
        X-Folded: a\n \t b\n\
        Content-Type: text/parameters\n\
        Content-Length: 10\n\
        \n\
        position\r\n\
        RTSP/1.0 200 OK\nCSeq: 9\n\n";
    let msgs = check_every_split(buf);
    let [Message::Request(r), Message::Response(_)] = &msgs[..] else {
        panic!("{msgs:?}")
    };
    assert_eq!(r.headers.get("x-folded"), Some("a b"));
    assert_eq!(r.body, b"position\r\n");
}

// ---------------------------------------------------------------------------------------------
// Round trips and the fuzz check.

#[test]
fn built_messages_round_trip() {
    let mut spec = TransportSpec::new(TransportProfile::RtpAvp);
    spec.client_port = Some((5000, 5001));
    spec.server_port = Some((6970, 6971));
    spec.ssrc = Some(0xdead_beef);
    let messages = [
        Message::Request(
            Request::new(Method::Setup, "rtsp://h/live/trackID=0")
                .typed(&CSeq(3))
                .typed(&Transport(vec![spec]))
                .header("User-Agent", "livecast"),
        ),
        Message::Request(
            Request::new(Method::Play, "rtsp://h/live/")
                .typed(&CSeq(4))
                .typed(&Session {
                    id: "a1b2c3".into(),
                    timeout: None,
                })
                .typed(&Range::Npt {
                    start: NptTime::Now,
                    end: None,
                }),
        ),
        Message::Request(
            Request::new(Method::SetParameter, "rtsp://h/live/")
                .typed(&CSeq(5))
                .body("text/parameters", b"volume: 0.5\r\n".to_vec()),
        ),
        Message::Response(
            Response::new(StatusCode::OK)
                .typed(&CSeq(4))
                .typed(&RtpInfo(vec![RtpInfoEntry {
                    url: "rtsp://h/live/trackID=0".into(),
                    seq: Some(1),
                    rtptime: Some(0),
                }]))
                .typed(&Public(vec![Method::Options, Method::Play])),
        ),
        Message::Response(Response::new(StatusCode::SESSION_NOT_FOUND).header("CSeq", "6")),
        Message::Data(InterleavedFrame {
            channel: 0,
            payload: vec![0x80; 1400],
        }),
    ];
    for m in &messages {
        let mut out = Vec::new();
        m.write_to(&mut out);
        assert_eq!(&one(&out), m);
    }
}

/// The `rtsp_roundtrip` fuzz target's check (kept in step with
/// `fuzz/fuzz_targets/rtsp_roundtrip.rs`): a complete message writes back to bytes that parse
/// to the same message and are consumed entirely; every typed header that parses writes back
/// to a value that parses to the same header.
fn check_round_trip(data: &[u8]) {
    crate::fuzzing::rtsp_round_trip(data);
}

fn check_typed_headers(s: &str) {
    crate::fuzzing::rtsp_typed_headers_round_trip(s);
}

/// Errors and complete messages are stable: once a prefix gives one, every longer prefix gives
/// the same.
fn check_prefix_stable(data: &[u8]) {
    let limits = Limits::default();
    let mut settled: Option<Result<Parsed, ParseError>> = None;
    for i in 0..=data.len() {
        let r = parse(&data[..i], &limits);
        match &settled {
            Some(s) => assert_eq!(&r, s, "{:?}[..{i}]", String::from_utf8_lossy(data)),
            None if r != Ok(Parsed::Incomplete) => settled = Some(r),
            None => {}
        }
    }
}

/// Seeded, so failures reproduce.
struct Rng(rand::rngs::StdRng);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(rand::SeedableRng::seed_from_u64(seed))
    }

    fn next(&mut self) -> u64 {
        rand::RngCore::next_u64(&mut self.0)
    }

    fn below(&mut self, n: usize) -> usize {
        rand::Rng::random_range(&mut self.0, 0..n.max(1))
    }
}

/// Fragments that make mutations reach deeper than random bytes do.
const DICTIONARY: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b"\t",
    b":",
    b";",
    b",",
    b"=",
    b"-",
    b"\"",
    b"$",
    b"\0",
    b"\xff",
    b"\r\n ",
    b"\r\n\r\n",
    b"Content-Length: 4\r\n",
    b"Content-Length: 99999999\r\n",
    b"RTSP/1.0 ",
    b"RTSP/2.0",
    b"url=",
    b"seq=",
    b"npt=",
    b"now",
    b"1:02:03.5",
    b"interleaved=",
    b"client_port=",
    b"ssrc=",
    b"mode=\"PLAY,RECORD\"",
    b"timeout=",
    b"65536",
    b"4294967296",
    b"0",
];

fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let len = data.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next() as u8;
            }
            1 => {
                let i = rng.below(len + 1);
                data.insert(i, rng.next() as u8);
            }
            2 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below(8.min(len - i));
                data.drain(i..i + n);
            }
            3 | 4 => {
                let i = rng.below(len + 1);
                let word = DICTIONARY[rng.below(DICTIONARY.len())];
                data.splice(i..i, word.iter().copied());
            }
            5 if len > 0 => {
                // Duplicate a slice (repeated headers, repeated messages).
                let a = rng.below(len);
                let b = a + rng.below(len - a);
                let copy = data[a..=b.min(len - 1)].to_vec();
                let at = rng.below(len + 1);
                data.splice(at..at, copy);
            }
            _ if len > 0 => data.truncate(rng.below(len)),
            _ => {}
        }
    }
}

/// Rounds and seed of the mutation tests: 6000 and fixed by default; set
/// `LIVECAST_RTSP_MUTATIONS=<rounds>[,<seed>]` for a longer run with another seed.
fn mutation_plan(default_seed: u64) -> (usize, u64) {
    let var = std::env::var("LIVECAST_RTSP_MUTATIONS").unwrap_or_default();
    let mut parts = var.split(',');
    let rounds = parts.next().and_then(|r| r.parse().ok()).unwrap_or(6000);
    let seed = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_seed);
    (rounds, seed)
}

#[test]
fn mutated_golden_messages_round_trip() {
    let (rounds, seed) = mutation_plan(0x5eed_1234_abcd_0001);
    let mut rng = Rng::new(seed);
    let mut seeds: Vec<Vec<u8>> = ALL_GOLDEN.iter().map(|g| g.to_vec()).collect();
    seeds.push(concat(&[FFMPEG_INTERLEAVED_RTCP, FFMPEG_SETUP_RESPONSE]));
    seeds.push(concat(&[FFMPEG_OPTIONS, FFMPEG_ANNOUNCE]));
    let mut completes = 0;
    for round in 0..rounds {
        let mut data = seeds[round % seeds.len()].clone();
        mutate(&mut rng, &mut data);
        check_round_trip(&data);
        if round % 16 == 0 {
            check_prefix_stable(&data);
        }
        if matches!(
            parse(&data, &Limits::default()),
            Ok(Parsed::Complete { .. })
        ) {
            completes += 1;
        }
    }
    // The mutations must not all be rejected, or the test would prove little.
    assert!(completes > rounds / 6, "only {completes} complete");
}

#[test]
fn mutated_header_values_round_trip() {
    let (rounds, seed) = mutation_plan(0x0dd_c0ffee);
    let mut rng = Rng::new(seed);
    let seeds: &[&[u8]] = &[
        b"RTP/AVP/UDP;unicast;client_port=17444-17445",
        b"RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
        b"RTP/AVP;multicast;destination=224.2.0.1;ttl=16;port=3456-3457,RTP/AVP/TCP",
        b"RTP/AVP/TCP;unicast;mode=receive;interleaved=0-1;ssrc=1A2B3C4D;x=\"a;b\"",
        b"url=rtsp://127.0.0.1:28554/live/trackID=0;seq=1;rtptime=0,url=rtsp://h/t1;seq=9",
        b"url=\"rtsp://h/a;b\";seq=1;ssrc=5",
        b"npt=0.000-",
        b"npt=1:02:03.5-10",
        b"npt=now-",
        b"smpte=10:07:00-",
        b"12345678;timeout=60",
        b"ANNOUNCE, PAUSE, SETUP, TEARDOWN, RECORD",
        b"application/sdp",
        b"298",
    ];
    for round in 0..rounds {
        let mut data = seeds[round % seeds.len()].to_vec();
        mutate(&mut rng, &mut data);
        check_typed_headers(&String::from_utf8_lossy(&data));
    }
}

#[test]
fn golden_messages_pass_the_fuzz_check() {
    for &g in ALL_GOLDEN {
        check_round_trip(g);
        check_prefix_stable(g);
    }
}

/// What ffmpeg and GStreamer send after livecast-server's two challenges (SHA-256 first, MD5
/// last): MD5 (the last), no qop, and responses that verify with the password's HA1, per method.
#[test]
fn digest_credentials_from_ffmpeg_and_gstreamer_verify() {
    use crate::rtsp::auth::{ha1, Algorithm, Authorization};
    let h = ha1(&Algorithm::Md5, "user", "livecast", "secret").unwrap();
    let wrong = ha1(&Algorithm::Md5, "user", "livecast", "secreT").unwrap();
    for (data, method) in [
        (FFMPEG_DESCRIBE_DIGEST, "DESCRIBE"),
        (FFMPEG_DESCRIBE_DIGEST_TWO, "DESCRIBE"),
        (FFMPEG_SETUP_DIGEST, "SETUP"),
        (GSTREAMER_DESCRIBE_DIGEST, "DESCRIBE"),
        (GSTREAMER_SETUP_DIGEST, "SETUP"),
    ] {
        let r = req(data);
        assert_eq!(r.method.as_str(), method);
        let Ok(Some(Authorization::Digest(d))) = r.headers.get_typed::<Authorization>() else {
            panic!("{r:?}")
        };
        assert_eq!(
            (d.username.as_str(), d.realm.as_str()),
            ("user", "livecast")
        );
        assert_eq!(
            d.algorithm(),
            Algorithm::Md5,
            "the last challenge is answered"
        );
        assert_eq!(d.qop, None);
        assert!(d.verify(method, &h), "{method}: {d:?}");
        assert!(!d.verify(method, &wrong));
    }
}
