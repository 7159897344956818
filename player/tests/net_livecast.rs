//! The network side against the real livecast-server, in process: UDP and TCP sessions end to
//! end, pause/resume, TEARDOWN, the UDP→TCP fallback through a TCP-only path, reconnection
//! after the server dies, and the fatal errors.

mod net_common;

use std::time::{Duration, Instant};

use livecast_player::engine::api::{ConnState, TransportPref};
use livecast_player::engine::net::{NetControl, NetEvent};
use livecast_proto::codec::Codec;
use livecast_server::rtsp_server::RtspConfig;
use net_common::{
    client_runtime, free_port, last_stats, redirector, units, Client, LivecastServer, Relay,
};

fn is_state(ev: &NetEvent, f: impl Fn(&ConnState) -> bool) -> bool {
    matches!(ev, NetEvent::State(s) if f(s))
}

/// Three seconds of a session over `transport`, then pause, resume and stop.
fn session_end_to_end(transport: TransportPref) {
    let server = LivecastServer::start(0);
    let tcp = transport == TransportPref::Tcp;
    client_runtime().block_on(async {
        // Through a transparent relay (upstream from 127.0.0.1, where the client listens for
        // UDP too), to see what the client sends.
        let (relay, mut c) = Relay::with_client(&server, "127.0.0.1", transport).await;
        let evs = c.collect(Duration::from_secs(3)).await;

        assert!(
            matches!(evs[0], NetEvent::State(ConnState::Connecting)),
            "{:?}",
            evs[0]
        );
        let described = evs
            .iter()
            .find_map(|e| match e {
                NetEvent::Described { tracks, sdp } => Some((tracks, sdp)),
                _ => None,
            })
            .expect("Described");
        let codecs: Vec<Codec> = described.0.iter().map(|t| t.codec).collect();
        assert_eq!(codecs, [Codec::H264, Codec::Opus]);
        assert!(described.1.contains("m=video"));
        assert!(evs
            .iter()
            .any(|e| is_state(e, |s| *s == ConnState::Streaming { tcp })));

        let video = units(&evs, 0);
        let audio = units(&evs, 1);
        assert!(video.len() >= 60, "{} video units", video.len());
        assert!(audio.len() >= 100, "{} audio units", audio.len());
        assert!(
            video[0].keyframe,
            "the server starts each client at a keyframe"
        );
        assert!(video.iter().all(|u| !u.damaged));
        // In order: RTP timestamps only move forward.
        let forward = |a: u32, b: u32| (1..1 << 31).contains(&b.wrapping_sub(a));
        assert!(video
            .windows(2)
            .all(|w| forward(w[0].rtp_timestamp, w[1].rtp_timestamp)));
        assert!(audio
            .windows(2)
            .all(|w| forward(w[0].rtp_timestamp, w[1].rtp_timestamp)));
        // The first SR comes 150 ms after PLAY; from then on capture times come from it.
        let sr_video: Vec<_> = video.iter().filter(|u| u.capture_from_sr).collect();
        let sr_audio: Vec<_> = audio.iter().filter(|u| u.capture_from_sr).collect();
        assert!(sr_video.len() > 50 && sr_audio.len() > 80);
        for u in sr_video.iter().chain(&sr_audio) {
            let latency = u.arrival_us - u.capture_us;
            assert!(
                (0..1_000_000).contains(&latency),
                "capture→arrival {latency} µs"
            );
        }
        // Estimated capture times (RTP-Info) were close to the sender's clock too.
        for u in video.iter().chain(&audio).filter(|u| !u.capture_from_sr) {
            assert!((u.arrival_us - u.capture_us).abs() < 1_000_000);
        }
        let stats = last_stats(&evs);
        assert_eq!(stats.packets_lost, 0, "{stats:?}");
        assert_eq!(stats.tcp, tcp);
        assert!(stats.packets_received > 100, "{stats:?}");
        assert!(stats.bitrate_bps > 50_000.0, "{stats:?}");
        assert!(stats.jitter_ms < 50.0, "{stats:?}");

        // PAUSE: the units stop.
        c.send(NetControl::Pause).await;
        c.wait_for(Duration::from_secs(2), |e| {
            is_state(e, |s| *s == ConnState::ServerPaused)
        })
        .await
        .expect("ServerPaused");
        let _ = c.collect(Duration::from_millis(300)).await; // what was in flight
        let quiet = c.collect(Duration::from_secs(1)).await;
        assert!(
            !quiet.iter().any(|e| matches!(e, NetEvent::Unit(_))),
            "units while paused"
        );
        assert_eq!(server.session_count(), 1);

        // PLAY again: they flow again.
        c.send(NetControl::Resume).await;
        c.wait_for(Duration::from_secs(2), |e| {
            is_state(e, |s| *s == ConnState::Streaming { tcp })
        })
        .await
        .expect("Streaming after resume");
        // Video waits for the next keyframe (the server asks for one, at most every 0.5 s).
        let again = c.collect(Duration::from_secs(2)).await;
        let (v, a) = (units(&again, 0), units(&again, 1));
        assert!(
            v.len() >= 20 && a.len() >= 50,
            "{} video, {} audio units after resume",
            v.len(),
            a.len()
        );
        assert!(v[0].keyframe);

        // Stop: TEARDOWN, Ended, run() returns.
        let t = Instant::now();
        c.stop_until_ended(Duration::from_secs(3)).await;
        assert!(t.elapsed() < Duration::from_secs(3));
        let sent = relay.sent_text();
        assert!(sent.contains("TEARDOWN rtsp://127.0.0.1"), "{sent}");
        assert!(sent.contains("PAUSE rtsp://"), "{sent}");
        if tcp {
            assert!(
                sent.contains("RTP/AVP/TCP;unicast;interleaved=0-1"),
                "{sent}"
            );
            assert!(!sent.contains("client_port"));
        } else {
            // Our server offers NACK on video and audio: both set up with feedback.
            assert_eq!(
                sent.matches("Transport: RTP/AVPF;unicast;client_port=")
                    .count(),
                2,
                "{sent}"
            );
        }
        // GET_PARAMETER is only every 30 s: not yet. The server forgot the session.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(server.session_count(), 0);
    });
}

#[test]
fn udp_session_end_to_end() {
    session_end_to_end(TransportPref::Udp);
}

#[test]
fn tcp_session_end_to_end() {
    session_end_to_end(TransportPref::Tcp);
}

/// `Auto` behind a TCP-only path: UDP brings nothing for 2 s, so the client tears down and
/// sets up again over interleaved TCP, on the same connection.
#[test]
fn auto_falls_back_to_tcp_when_udp_cannot_arrive() {
    let server = LivecastServer::start(0);
    client_runtime().block_on(async {
        let (relay, mut c) = Relay::with_client(&server, "127.0.0.3", TransportPref::Auto).await;
        let t0 = Instant::now();
        let ev = c
            .wait_for(Duration::from_secs(8), |e| {
                matches!(e, NetEvent::State(ConnState::Streaming { .. }))
            })
            .await
            .expect("streaming within 8 s");
        assert_eq!(ev, NetEvent::State(ConnState::Streaming { tcp: true }));
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_secs(2),
            "fell back after {waited:?}"
        );
        let evs = c.collect(Duration::from_secs(2)).await;
        assert!(units(&evs, 0).len() >= 40);
        assert!(units(&evs, 1).len() >= 60);
        // One Described: the fallback stays on the same connection and session description.
        let described = c
            .log
            .iter()
            .filter(|(_, e)| matches!(e, NetEvent::Described { .. }))
            .count();
        assert_eq!(described, 1);
        assert!(!c
            .log
            .iter()
            .any(|(_, e)| matches!(e, NetEvent::State(ConnState::Reconnecting { .. }))));
        let sent = relay.sent_text();
        let udp_setup = sent.find("client_port=").expect("tried UDP first");
        let teardown = sent.find("TEARDOWN ").expect("tore the UDP session down");
        let tcp_setup = sent.find("RTP/AVP/TCP").expect("then TCP");
        assert!(udp_setup < teardown && teardown < tcp_setup, "{sent}");
        c.stop().await;
    });
}

/// The server dies mid-stream: Reconnecting within 6 s; a server on the same port again:
/// media flows again, with a fresh Described.
#[test]
fn reconnects_after_the_server_restarts() {
    let mut server = LivecastServer::start(0);
    let port = server.port;
    let rt = client_runtime();
    let mut c = rt.block_on(async {
        let mut c = Client::start(&server.url(), TransportPref::Udp);
        c.wait_for(Duration::from_secs(5), |e| matches!(e, NetEvent::Unit(_)))
            .await
            .expect("units flow");
        c
    });
    let killed = Instant::now();
    server.stop();
    let reconnecting = rt.block_on(c.wait_for(Duration::from_secs(6), |e| {
        matches!(e, NetEvent::State(ConnState::Reconnecting { .. }))
    }));
    let Some(NetEvent::State(ConnState::Reconnecting {
        attempt, reason, ..
    })) = reconnecting
    else {
        panic!(
            "no Reconnecting within 6 s of the server's death: {:?}",
            c.log
        );
    };
    assert_eq!(attempt, 1);
    assert!(!reason.is_empty());
    assert!(killed.elapsed() < Duration::from_secs(6));
    // Let a few attempts fail (connection refused), then bring a server back.
    rt.block_on(c.collect(Duration::from_secs(2)));
    let _server2 = LivecastServer::start(port);
    let back = Instant::now();
    rt.block_on(async {
        c.wait_for(Duration::from_secs(20), |e| {
            matches!(e, NetEvent::Described { .. })
        })
        .await
        .expect("described again");
        c.wait_for(Duration::from_secs(5), |e| {
            matches!(e, NetEvent::State(ConnState::Streaming { tcp: false }))
        })
        .await
        .expect("streaming again");
        let evs = c.collect(Duration::from_secs(2)).await;
        assert!(units(&evs, 0).len() >= 40);
        assert!(units(&evs, 1).len() >= 60);
        let attempts: Vec<u32> = c
            .log
            .iter()
            .filter_map(|(_, e)| match e {
                NetEvent::State(ConnState::Reconnecting { attempt, .. }) => Some(*attempt),
                _ => None,
            })
            .collect();
        assert!(attempts.len() >= 2, "{attempts:?}");
        assert!(
            attempts.windows(2).all(|w| w[1] == w[0] + 1),
            "{attempts:?}"
        );
        assert!(back.elapsed() < Duration::from_secs(20));
        c.stop().await;
    });
}

/// Nothing listening: retries with 0.5 s, 1 s, 2 s ... between attempts until stopped.
#[test]
fn refused_connections_back_off_until_stopped() {
    let port = free_port();
    client_runtime().block_on(async {
        let mut c = Client::start(
            &format!("rtsp://127.0.0.1:{port}/live"),
            TransportPref::Auto,
        );
        let evs = c.collect(Duration::from_millis(3900)).await;
        let attempts: Vec<u32> = evs
            .iter()
            .filter_map(|e| match e {
                NetEvent::State(ConnState::Reconnecting { attempt, .. }) => Some(*attempt),
                _ => None,
            })
            .collect();
        // Attempts at about 0, 0.5, 1.5 and 3.5 s.
        assert_eq!(attempts, [1, 2, 3, 4], "{evs:?}");
        let at: Vec<Instant> = c
            .log
            .iter()
            .filter(|(_, e)| matches!(e, NetEvent::State(ConnState::Reconnecting { .. })))
            .map(|(t, _)| *t)
            .collect();
        let gaps: Vec<f64> = at.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
        for (gap, want) in gaps.iter().zip([0.5, 1.0, 2.0]) {
            assert!((gap - want).abs() < 0.25, "gaps {gaps:?}");
        }
        c.stop_until_ended(Duration::from_secs(1)).await;
    });
}

#[test]
fn bad_url_and_missing_stream_are_fatal() {
    let server = LivecastServer::start(0);
    client_runtime().block_on(async {
        for (url, want) in [
            ("http://127.0.0.1/live".to_owned(), "rtsp://"),
            (format!("rtsp://127.0.0.1:{}/nope", server.port), "404"),
        ] {
            let mut c = Client::start(&url, TransportPref::Auto);
            let ev = c
                .wait_for(Duration::from_secs(5), |e| {
                    matches!(e, NetEvent::State(ConnState::Failed(_)))
                })
                .await;
            let Some(NetEvent::State(ConnState::Failed(msg))) = ev else {
                panic!("{url}: no Failed: {:?}", c.log);
            };
            assert!(msg.contains(want), "{url}: {msg}");
            tokio::time::timeout(Duration::from_secs(1), &mut c.task)
                .await
                .expect("run() ends after a fatal error")
                .expect("no panic");
        }
    });
}

/// Dropping the control sender stops the session like `Stop`.
#[test]
fn dropping_the_control_sender_stops() {
    let server = LivecastServer::start(0);
    client_runtime().block_on(async {
        let mut c = Client::start(&server.url(), TransportPref::Tcp);
        c.wait_for(Duration::from_secs(5), |e| matches!(e, NetEvent::Unit(_)))
            .await
            .expect("units flow");
        let (dead, _) = tokio::sync::mpsc::channel(1);
        drop(std::mem::replace(&mut c.control, dead));
        c.wait_for(Duration::from_secs(3), |e| {
            *e == NetEvent::State(ConnState::Ended)
        })
        .await
        .expect("Ended");
        tokio::time::timeout(Duration::from_secs(3), &mut c.task)
            .await
            .expect("run() returns")
            .expect("no panic");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(server.session_count(), 0);
    });
}

/// Keep-alive every half `Session` timeout, with GET_PARAMETER since the server lists it in
/// `Public` (RFC 2326 §12.37, §10.8).
#[test]
fn keep_alive_follows_the_session_timeout() {
    let server = LivecastServer::start_with(
        0,
        RtspConfig {
            session_timeout: Duration::from_secs(4),
            ..RtspConfig::default()
        },
    );
    client_runtime().block_on(async {
        let (relay, mut c) = Relay::with_client(&server, "127.0.0.1", TransportPref::Tcp).await;
        let evs = c.collect(Duration::from_millis(5500)).await;
        let sent = relay.sent_text();
        // PLAY at ~0 s, then every 2 s: at ~2 s and ~4 s.
        let pings = sent.matches("GET_PARAMETER rtsp://127.0.0.1").count();
        assert_eq!(pings, 2, "{sent}");
        assert_eq!(server.session_count(), 1);
        assert!(units(&evs, 0).len() >= 100);
        assert!(!evs
            .iter()
            .any(|e| matches!(e, NetEvent::State(ConnState::Reconnecting { .. }))));
        c.stop().await;
    });
}

/// The path stalls (the TCP connection stays up, nothing comes through): after 5 s without
/// media the session is given up and set up again.
#[test]
fn a_silent_server_is_noticed_after_5_s() {
    let server = LivecastServer::start(0);
    client_runtime().block_on(async {
        let (relay, mut c) = Relay::with_client(&server, "127.0.0.1", TransportPref::Tcp).await;
        c.wait_for(Duration::from_secs(5), |e| matches!(e, NetEvent::Unit(_)))
            .await
            .expect("units flow");
        relay
            .frozen
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let t = Instant::now();
        let ev = c
            .wait_for(Duration::from_secs(8), |e| {
                matches!(e, NetEvent::State(ConnState::Reconnecting { .. }))
            })
            .await;
        let Some(NetEvent::State(ConnState::Reconnecting {
            attempt, reason, ..
        })) = ev
        else {
            panic!("no Reconnecting: {:?}", c.log.last());
        };
        let waited = t.elapsed();
        assert!(
            (Duration::from_millis(4500)..Duration::from_millis(6500)).contains(&waited),
            "{waited:?}"
        );
        assert_eq!(attempt, 1);
        assert!(reason.contains("no media"), "{reason}");
        relay
            .frozen
            .store(false, std::sync::atomic::Ordering::Relaxed);
        c.wait_for(Duration::from_secs(10), |e| {
            matches!(e, NetEvent::State(ConnState::Streaming { tcp: true }))
        })
        .await
        .expect("streaming again once the path recovers");
        c.stop().await;
    });
}

/// A 302 to DESCRIBE's OPTIONS is followed once, to the real server.
#[test]
fn follows_one_redirect() {
    let server = LivecastServer::start(0);
    client_runtime().block_on(async {
        let port = redirector(server.url()).await;
        let mut c = Client::start(&format!("rtsp://127.0.0.1:{port}/old"), TransportPref::Auto);
        c.wait_for(Duration::from_secs(5), |e| matches!(e, NetEvent::Unit(_)))
            .await
            .expect("units from the server redirected to");
        let described = c.log.iter().find_map(|(_, e)| match e {
            NetEvent::Described { tracks, .. } => Some(tracks.clone()),
            _ => None,
        });
        let tracks = described.expect("Described");
        assert!(
            tracks[0].control_url.starts_with(&server.url()),
            "{tracks:?}"
        );
        c.stop().await;

        // A redirect to another redirect: given up on.
        let again = redirector(format!("rtsp://127.0.0.1:{port}/loop")).await;
        let mut c = Client::start(&format!("rtsp://127.0.0.1:{again}/x"), TransportPref::Auto);
        let ev = c
            .wait_for(Duration::from_secs(5), |e| {
                matches!(e, NetEvent::State(ConnState::Failed(_)))
            })
            .await;
        assert!(
            matches!(&ev, Some(NetEvent::State(ConnState::Failed(m))) if m.contains("redirect")),
            "{ev:?}"
        );
    });
}
