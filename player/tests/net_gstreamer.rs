//! The network side against GStreamer's reference RTSP server (`scripts/gst-rtsp-server.py`,
//! H.264 + Opus from gst-rtsp-server), over UDP and over TCP.

mod net_common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use livecast_player::engine::api::{ConnState, TransportPref};
use livecast_player::engine::net::NetEvent;
use livecast_proto::codec::Codec;
use net_common::{client_runtime, free_port, last_stats, units, Client};

struct GstServer {
    child: Child,
    url: String,
}

impl GstServer {
    fn start() -> GstServer {
        let port = free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/gst-rtsp-server.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .args([
                "--port",
                &port.to_string(),
                "--size",
                "320x240",
                "--bitrate",
                "500",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("/usr/bin/python3 with GStreamer's RTSP server bindings (scripts/setup.sh)");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(l) => {
                    if let Some(url) = l.strip_prefix("ready ") {
                        return GstServer {
                            child,
                            url: url.trim().to_owned(),
                        };
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("gst-rtsp-server.py did not print 'ready' within 30 s");
                }
            }
        }
    }
}

impl Drop for GstServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gstreamer_session(transport: TransportPref) {
    let server = GstServer::start();
    let tcp = transport == TransportPref::Tcp;
    client_runtime().block_on(async {
        let mut c = Client::start(&server.url, transport);
        let evs = c.collect(Duration::from_secs(4)).await;
        let tracks = evs
            .iter()
            .find_map(|e| match e {
                NetEvent::Described { tracks, .. } => Some(tracks),
                _ => None,
            })
            .expect("Described");
        let codecs: Vec<Codec> = tracks.iter().map(|t| t.codec).collect();
        assert_eq!(codecs, [Codec::H264, Codec::Opus]);
        assert!(tracks[0].control_url.ends_with("stream=0"), "{tracks:?}");
        assert!(evs.contains(&NetEvent::State(ConnState::Streaming { tcp })));
        let video = units(&evs, 0);
        let audio = units(&evs, 1);
        // Pipeline start-up takes a moment; then 30 fps and 50 packets/s.
        assert!(video.len() >= 30, "{} video units", video.len());
        assert!(audio.len() >= 50, "{} audio units", audio.len());
        // x264 with key-int-max = 2 s: at least one keyframe, with parameter sets in band.
        assert!(video.iter().any(|u| u.keyframe));
        for u in video.iter().chain(&audio) {
            assert!((u.arrival_us - u.capture_us).abs() < 1_000_000, "{u:?}");
        }
        let stats = last_stats(&evs);
        assert_eq!(stats.tcp, tcp);
        assert!(stats.packets_lost <= 0, "{stats:?}");
        c.stop_until_ended(Duration::from_secs(3)).await;
    });
}

#[test]
fn gstreamer_over_udp() {
    gstreamer_session(TransportPref::Udp);
}

#[test]
fn gstreamer_over_tcp() {
    gstreamer_session(TransportPref::Tcp);
}
