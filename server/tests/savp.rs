//! RTP/SAVP on the RTSPS port, end to end with the real server binary: the session
//! description over TLS offers SRTP keyed by MIKEY; GStreamer's rtspsrc plays it over UDP
//! and interleaved; a tcpdump capture of the UDP media holds no clear H.264 (the SPS that a
//! capture of plain RTP shows is not there); a garbage `KeyMgmt` or another crypto suite gets
//! `463` while a viewer keeps watching; PAUSE and PLAY go on with the same SRTP context (a
//! fresh one restarts the SRTCP index, which the client's context refuses as replayed) and
//! TEARDOWN brings a BYE as SRTCP.

mod common;

use std::time::Duration;

use common::pcap::{capture, contains, payloads, stop, Proto};
use common::{free_port, gst_video_frames, ServerProc};
use livecast_loadgen::RtspConn;
use livecast_proto::mikey::{MikeyMessage, SrtpPolicy};
use livecast_proto::rtsp::{Method, Request};
use livecast_proto::sdp::SessionDescription;

const SMALL: [&str; 6] = ["--size", "320x240", "--captions", "off", "--fps", "30"];

fn tls_server(data_home: &std::path::Path) -> (ServerProc, u16) {
    let tls_port = free_port();
    let listen = format!("127.0.0.1:{tls_port}");
    let mut args = vec!["--tls-listen", listen.as_str()];
    args.extend(SMALL);
    (ServerProc::start_with_data_home(&args, data_home), tls_port)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The session description DESCRIBE answers on `url`.
fn describe(url: &str) -> SessionDescription {
    runtime().block_on(async {
        let mut c = RtspConn::connect(url).await.expect("connect");
        let r = c
            .request(Request::new(Method::Describe, url.to_owned()))
            .await
            .expect("DESCRIBE");
        assert_eq!(r.status.0, 200, "{r:?}");
        livecast_proto::sdp::parse(&String::from_utf8_lossy(&r.body)).expect("an SDP")
    })
}

/// The SPS of the video medium's `sprop-parameter-sets`.
fn sps_of(sdp: &SessionDescription) -> Vec<u8> {
    let video = sdp
        .media
        .iter()
        .find(|m| m.media == "video")
        .expect("video");
    let fmtp = video.fmtp(96).expect("fmtp 96");
    livecast_proto::codec::h264::sprop_sps_pps(&fmtp)
        .0
        .expect("an SPS in sprop-parameter-sets")
}

/// UDP payloads captured while GStreamer plays `source` (6 s), and its decoded frames.
fn captured_while_gst_plays(source: &str, file: &std::path::Path) -> (Vec<Vec<u8>>, usize) {
    let tcpdump = capture(file, &["udp"]);
    let (frames, err) = gst_video_frames(source);
    stop(tcpdump);
    assert!(frames >= 60, "GStreamer decoded {frames} frames: {err}");
    let pcap = std::fs::read(file).expect("tcpdump wrote the capture");
    (payloads(&pcap, Proto::Udp), frames)
}

#[test]
fn gstreamer_plays_srtp_over_rtsps_and_a_capture_shows_no_clear_video() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let (server, tls_port) = tls_server(data.path());
    let url = format!("rtsps://127.0.0.1:{tls_port}/live");

    // Over TLS every medium is secure RTP, keyed by a MIKEY message holding one
    // AES_CM_128_HMAC_SHA1_80 key; the plain port keeps RTP/AVP(F).
    let plain_sdp = describe(&server.url());
    let sdp = describe(&url);
    assert_eq!(plain_sdp.media.len(), sdp.media.len());
    for (plain, secure) in plain_sdp.media.iter().zip(&sdp.media) {
        assert_eq!(secure.proto, plain.proto.replace("RTP/AVP", "RTP/SAVP"));
        assert!(plain.attribute("key-mgmt").is_none());
        let km = secure.attribute("key-mgmt").expect("a=key-mgmt");
        let mikey = MikeyMessage::from_key_mgmt(km).expect("a MIKEY message we read");
        assert!(mikey
            .policies
            .iter()
            .all(SrtpPolicy::is_aes_cm_128_hmac_sha1_80));
        assert!(mikey.master_key().is_some());
    }
    // Two DESCRIBEs on two connections: two keys.
    let again = describe(&url);
    assert_ne!(
        sdp.media[0].attribute("key-mgmt"),
        again.media[0].attribute("key-mgmt")
    );

    // The check can see clear video: GStreamer over plain UDP, the SPS is in the capture.
    let sps = sps_of(&plain_sdp);
    assert!(sps.len() >= 4 && sps[0] & 0x1f == 7, "an SPS: {sps:02x?}");
    let (plain, _) = captured_while_gst_plays(
        &format!("location={} protocols=udp", server.url()),
        &data.path().join("plain.pcap"),
    );
    assert!(plain.iter().any(|p| contains(p, &sps)), "SPS in clear RTP");

    // SRTP over UDP on the TLS port: frames decoded, no SPS in several seconds of media.
    let (srtp, frames) = captured_while_gst_plays(
        &format!("location={url} tls-validation-flags=0 protocols=udp"),
        &data.path().join("srtp.pcap"),
    );
    let bytes: usize = srtp.iter().map(Vec::len).sum();
    assert!(bytes > 100_000, "{bytes} bytes of UDP for {frames} frames");
    assert!(
        !srtp.iter().any(|p| contains(p, &sps)),
        "the SPS went in clear over SRTP"
    );

    // SRTP interleaved in the TLS connection (RTP/SAVPF/TCP) plays too.
    let (video, err) = gst_video_frames(&format!(
        "location={url} tls-validation-flags=0 protocols=tcp"
    ));
    assert!(
        video >= 60,
        "GStreamer over SAVP/TCP decoded {video} frames: {err}"
    );
}

#[test]
fn bad_key_management_gets_463_and_disturbs_no_viewer() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let (_server, tls_port) = tls_server(data.path());
    let url = format!("rtsps://127.0.0.1:{tls_port}/live");
    let watcher = std::thread::spawn({
        let url = url.clone();
        move || {
            gst_video_frames(&format!(
                "location={url} tls-validation-flags=0 protocols=udp"
            ))
        }
    });
    std::thread::sleep(Duration::from_secs(1));
    let good = MikeyMessage::srtp(1, &[0x1234_5678], vec![7; 30], 0, vec![1; 16]).key_mgmt();
    let mut other_suite = MikeyMessage::srtp(1, &[0x1234_5678], vec![7; 30], 0, vec![1; 16]);
    other_suite.policies[0]
        .params
        .iter_mut()
        .filter(|(t, _)| *t == livecast_proto::mikey::param::SESSION_ENCRYPTION_KEY_LENGTH)
        .for_each(|(_, v)| *v = vec![32]);
    let other_suite = other_suite.key_mgmt();
    let key_mgmt = |mikey: &str| {
        format!(
            "prot=mikey; uri=\"{url}/trackID=0\"; data=\"{}\"",
            mikey.strip_prefix("mikey ").unwrap_or(mikey)
        )
    };
    runtime().block_on(async {
        let setup = |t: &str, km: Option<String>| {
            let r = Request::new(Method::Setup, format!("{url}/trackID=0")).header("Transport", t);
            match km {
                Some(k) => r.header("KeyMgmt", k),
                None => r,
            }
        };
        let savp = "RTP/SAVPF;unicast;client_port=5000-5001";
        // SAVP before any DESCRIBE: no key announced yet.
        let mut c = RtspConn::connect(&url).await.expect("TLS connect");
        let r = c
            .request(setup(savp, Some(key_mgmt(&good))))
            .await
            .expect("SETUP");
        assert_eq!(r.status.0, 463, "{r:?}");
        c.request(Request::new(Method::Describe, url.clone()))
            .await
            .expect("DESCRIBE");
        for bad in [
            "prot=mikey; data=\"!!not base64!!\"".to_owned(),
            "prot=mikey; data=\"AQAFAP8=\"".to_owned(),
            "prot=sdes; data=\"x\"".to_owned(),
            key_mgmt(&other_suite),
        ] {
            let r = c
                .request(setup(savp, Some(bad.clone())))
                .await
                .expect("SETUP");
            assert_eq!(r.status.0, 463, "{bad}: {r:?}");
        }
        // Plain UDP on the TLS port stays refused; a good key is taken.
        let r = c
            .request(setup("RTP/AVP;unicast;client_port=5000-5001", None))
            .await
            .expect("SETUP");
        assert_eq!(r.status.0, 461, "{r:?}");
        let r = c
            .request(setup(savp, Some(key_mgmt(&good))))
            .await
            .expect("SETUP");
        assert_eq!(r.status.0, 200, "{r:?}");
        assert!(r
            .headers
            .get("Transport")
            .is_some_and(|t| t.starts_with("RTP/SAVPF;")));
    });
    let (frames, err) = watcher.join().expect("the watcher");
    assert!(frames >= 60, "the SRTP viewer got {frames} frames: {err}");
}

/// The interleaved frames that `c` got (kept while waiting for responses, and read for `d`).
async fn read_for(c: &mut RtspConn, d: Duration) -> Vec<livecast_proto::rtsp::InterleavedFrame> {
    let until = tokio::time::Instant::now() + d;
    let mut got = std::mem::take(&mut c.pending_data);
    while let Ok(Ok(m)) = tokio::time::timeout_at(until, c.read_message()).await {
        if let livecast_proto::rtsp::Message::Data(f) = m {
            got.push(f);
        }
    }
    got
}

/// Decrypts every interleaved frame of `frames` with the server's key: (RTP read, RTCP read,
/// RTCP that held a BYE); panics on any packet that does not decrypt.
fn decrypt_all(
    frames: Vec<livecast_proto::rtsp::InterleavedFrame>,
    ctx: &mut livecast_proto::srtp::Context,
) -> (usize, usize, usize) {
    let (mut rtp, mut rtcp, mut bye) = (0, 0, 0);
    for f in frames {
        if f.channel == 0 {
            ctx.unprotect_rtp(&f.payload).expect("SRTP of the key");
            rtp += 1;
        } else {
            let clear = ctx
                .unprotect_rtcp(&f.payload)
                .expect("SRTCP, never replayed");
            let packets = livecast_proto::rtcp::parse_compound(&clear).expect("RTCP");
            rtcp += 1;
            if packets
                .iter()
                .any(|p| matches!(p, livecast_proto::rtcp::RtcpPacket::Bye(_)))
            {
                bye += 1;
            }
        }
    }
    (rtp, rtcp, bye)
}

#[test]
fn pause_and_play_continue_the_srtp_context_and_teardown_sends_an_srtcp_bye() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let (_server, tls_port) = tls_server(data.path());
    let url = format!("rtsps://127.0.0.1:{tls_port}/live");
    let good = MikeyMessage::srtp(1, &[0], vec![7; 30], 0, vec![1; 16]).key_mgmt();
    runtime().block_on(async {
        let mut c = RtspConn::connect(&url).await.expect("TLS connect");
        let r = c
            .request(Request::new(Method::Describe, url.clone()))
            .await
            .expect("DESCRIBE");
        let sdp = livecast_proto::sdp::parse(&String::from_utf8_lossy(&r.body)).expect("SDP");
        let km = sdp.media[0].attribute("key-mgmt").expect("a key");
        let (key, salt) = MikeyMessage::from_key_mgmt(km)
            .expect("MIKEY")
            .master_key()
            .expect("a key");
        // One context for the whole session, as a player keeps it.
        let mut ctx = livecast_proto::srtp::Context::new(&key, &salt);
        let r = c
            .request(
                Request::new(Method::Setup, format!("{url}/trackID=0"))
                    .header("Transport", "RTP/SAVPF/TCP;unicast;interleaved=0-1")
                    .header(
                        "KeyMgmt",
                        format!(
                            "prot=mikey; uri=\"{url}/trackID=0\"; data=\"{}\"",
                            &good["mikey ".len()..]
                        ),
                    ),
            )
            .await
            .expect("SETUP");
        assert_eq!(r.status.0, 200, "{r:?}");
        for round in 0..2 {
            let r = c
                .request(Request::new(Method::Play, url.clone()))
                .await
                .expect("PLAY");
            assert_eq!(r.status.0, 200, "{r:?}");
            let frames = read_for(&mut c, Duration::from_millis(1500)).await;
            let (rtp, rtcp, _) = decrypt_all(frames, &mut ctx);
            // A fresh context after the pause would restart the SRTCP index at 0: replayed.
            assert!(
                rtp > 10 && rtcp >= 1,
                "round {round}: {rtp} RTP, {rtcp} RTCP"
            );
            let r = c
                .request(Request::new(Method::Pause, url.clone()))
                .await
                .expect("PAUSE");
            assert_eq!(r.status.0, 200, "{r:?}");
        }
        let r = c
            .request(Request::new(Method::Play, url.clone()))
            .await
            .expect("PLAY");
        assert_eq!(r.status.0, 200, "{r:?}");
        let r = c
            .request(Request::new(Method::Teardown, url.clone()))
            .await
            .expect("TEARDOWN");
        assert_eq!(r.status.0, 200, "{r:?}");
        let frames = read_for(&mut c, Duration::from_millis(1000)).await;
        let (_, _, bye) = decrypt_all(frames, &mut ctx);
        assert_eq!(bye, 1, "one BYE, as SRTCP");
    });
}
