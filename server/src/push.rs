//! `--publish URL`: pushing our stream into a relay (MediaMTX, gst-rtsp-server in RECORD mode,
//! ffmpeg's listener, another Livecast) with ANNOUNCE/SETUP/RECORD. The exchange, its retries
//! and authentication are [`livecast_proto::rtsp::publisher`]'s; this is the I/O around it.
//!
//! Once the relay records, each track gets the relay as one more subscriber of its fan-out,
//! exactly like a viewer: interleaved in the RTSP connection (a [`Sink::Tcp`] whose frames
//! share the connection's write queue with our requests) or as UDP datagrams from the track's
//! own ports, which is what SETUP named as `client_port`. Sender reports come with it. The
//! relay joins at a keyframe like any viewer; MediaMTX-class relays never ask a publisher
//! for keyframes, so their HLS segments follow our keyframe interval.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use livecast_proto::rtsp::publisher::{
    Input, Output, PublishEvent, PublishLink, PublishTransport, Publisher, PublisherConfig,
};
use livecast_proto::rtsp::server::Retransmission;
use livecast_proto::rtsp::{parse, Limits, Message, Parsed, RtspUrl};
use livecast_proto::sdp::SessionDescription;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant as TokioInstant;
use tracing::{debug, info, warn};

use crate::track::{Sink, Track};

/// One `--publish` target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishTarget {
    /// `rtsp://[user:password@]host[:port]/path`.
    pub url: String,
    pub transport: PublishTransport,
}

/// Subscriber ids of publish targets count down from here; viewers' count up from 1.
const PUBLISH_CLIENT_BASE: u64 = u64::MAX;

/// Queue of frames and requests to one relay; media beyond it is dropped (a slow relay loses
/// packets, it does not hold up the fan-out).
const QUEUE: usize = 1024;

/// When the first sender report goes after recording starts.
const FIRST_REPORT: Duration = Duration::from_millis(200);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The description we announce: our own, with every medium as plain `RTP/AVP` (no RTCP
/// feedback, no rtx: a relay has nothing to ask us, and MediaMTX keeps formats it does not
/// know as they are).
pub fn announced_sdp(sdp: &SessionDescription) -> SessionDescription {
    let mut s = sdp.clone();
    s.media = s.media.iter().map(|m| m.without_feedback()).collect();
    s
}

/// Checks a `--publish` URL before the server starts, so a typo is an error at once.
pub fn check_url(url: &str) -> anyhow::Result<()> {
    RtspUrl::parse(url).map_err(|e| anyhow::anyhow!("--publish: {e}"))?;
    Ok(())
}

/// The relay's URL for log lines: without `user:password@`.
fn shown(url: &str) -> String {
    RtspUrl::parse(url).map_or_else(|_| url.to_owned(), |u| u.full)
}

/// Publishes `tracks` (described by `sdp`) to `target` until the task is dropped, connecting
/// again with backoff whenever the relay goes or refuses. `index` numbers the targets.
pub async fn run(
    index: usize,
    target: PublishTarget,
    tracks: Vec<Arc<Track>>,
    sdp: SessionDescription,
) {
    let url = shown(&target.url);
    let client = PUBLISH_CLIENT_BASE - index as u64;
    let v6 = match RtspUrl::parse(&target.url) {
        Ok(u) => resolve(&u.host, u.port).await.is_some_and(|a| a.is_ipv6()),
        Err(_) => false,
    };
    let udp_ports = tracks
        .iter()
        .filter_map(|t| t.sockets.server_ports(v6))
        .collect();
    let cfg = PublisherConfig {
        transport: target.transport,
        user_agent: format!("livecast/{}", env!("CARGO_PKG_VERSION")),
        ..PublisherConfig::default()
    };
    let mut p = match Publisher::new(
        cfg,
        &target.url,
        &announced_sdp(&sdp),
        udp_ports,
        std::time::Instant::now(),
        rand::random(),
    ) {
        Ok(p) => p,
        Err(e) => {
            warn!("not publishing to {url}: {e}");
            return;
        }
    };
    let mut conn: Option<Conn> = None;
    let mut wake: Option<std::time::Instant> = None;
    loop {
        while let Some(o) = p.poll_output() {
            match o {
                Output::Connect { host, port } => {
                    let now = std::time::Instant::now();
                    let input = match connect(&host, port).await {
                        Ok((c, peer)) => {
                            conn = Some(Conn::start(c, peer));
                            Input::Connected { now }
                        }
                        Err(reason) => Input::ConnectFailed { now, reason },
                    };
                    p.handle_input(input);
                }
                Output::Disconnect => {
                    unsubscribe(&tracks, client);
                    conn = None;
                }
                Output::Transmit(req) => {
                    debug!(relay = %url, method = %req.method, "request");
                    let mut b = Vec::new();
                    req.write_to(&mut b);
                    if let Some(c) = &conn {
                        let _ = c.tx.send(b).await;
                    }
                }
                Output::Respond(resp) => {
                    let mut b = Vec::new();
                    resp.write_to(&mut b);
                    if let Some(c) = &conn {
                        let _ = c.tx.send(b).await;
                    }
                }
                Output::Event(e) => match e {
                    PublishEvent::Connecting { attempt } => {
                        debug!(relay = %url, attempt, "connecting")
                    }
                    PublishEvent::Recording { links } => {
                        if let Some(c) = &conn {
                            subscribe(&tracks, client, &links, c);
                            // A first sender report soon, not at the next 5 s round: relays
                            // map RTP time to wall-clock time (and sync tracks) with it.
                            let t2 = tracks.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(FIRST_REPORT).await;
                                for t in &t2 {
                                    t.send_sender_reports(SystemTime::now(), Some(client));
                                }
                            });
                            info!("publishing to {url} ({})", describe(&links));
                        }
                    }
                    PublishEvent::Retrying { reason, after } => {
                        unsubscribe(&tracks, client);
                        warn!(
                            "publishing to {url}: {reason}; trying again in {} s",
                            after.as_secs_f32()
                        );
                    }
                    PublishEvent::Stopped => {
                        unsubscribe(&tracks, client);
                        return;
                    }
                },
                Output::Timeout(t) => wake = Some(t),
            }
        }
        let sleep_until = wake
            .map(TokioInstant::from_std)
            .unwrap_or_else(|| TokioInstant::now() + Duration::from_secs(3600));
        let from_relay = async {
            match &mut conn {
                Some(c) => c.rx.recv().await,
                None => std::future::pending().await,
            }
        };
        let input = tokio::select! {
            m = from_relay => {
                let now = std::time::Instant::now();
                match m {
                    Some(FromRelay::Message(Message::Response(response))) => {
                        Input::Response { now, response }
                    }
                    Some(FromRelay::Message(Message::Request(request))) => {
                        Input::Request { now, request }
                    }
                    // RTCP receiver reports: nothing to act on.
                    Some(FromRelay::Message(Message::Data(_))) => continue,
                    Some(FromRelay::Closed(reason)) | Some(FromRelay::Bad(reason)) => {
                        Input::ConnectionLost { now, reason }
                    }
                    None => Input::ConnectionLost { now, reason: "closed".into() },
                }
            }
            _ = tokio::time::sleep_until(sleep_until) => {
                wake = None;
                Input::Timeout(std::time::Instant::now())
            }
        };
        if matches!(input, Input::ConnectionLost { .. }) {
            unsubscribe(&tracks, client);
            conn = None;
        }
        p.handle_input(input);
    }
}

async fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    tokio::net::lookup_host((host, port)).await.ok()?.next()
}

async fn connect(host: &str, port: u16) -> Result<(TcpStream, SocketAddr), String> {
    let attempt = async {
        let s = TcpStream::connect((host, port))
            .await
            .map_err(|e| e.to_string())?;
        let peer = s.peer_addr().map_err(|e| e.to_string())?;
        let _ = s.set_nodelay(true);
        Ok((s, peer))
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())))
}

enum FromRelay {
    Message(Message),
    Closed(String),
    Bad(String),
}

/// A connection to the relay: a writer task draining `tx` (requests and interleaved media in
/// order) and a reader task parsing what comes back. Dropping it ends both.
struct Conn {
    tx: mpsc::Sender<Vec<u8>>,
    rx: mpsc::Receiver<FromRelay>,
    peer: IpAddr,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Drop for Conn {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Conn {
    fn start(stream: TcpStream, peer: SocketAddr) -> Self {
        let (mut rd, mut wr) = stream.into_split();
        let (tx, mut out) = mpsc::channel::<Vec<u8>>(QUEUE);
        let (to_shell, rx) = mpsc::channel(16);
        let writer = tokio::spawn(async move {
            while let Some(b) = out.recv().await {
                if wr.write_all(&b).await.is_err() {
                    break;
                }
            }
        });
        let reader = tokio::spawn(async move {
            let limits = Limits::default();
            let mut buf = Vec::with_capacity(4096);
            let mut chunk = vec![0u8; 16 * 1024];
            loop {
                loop {
                    match parse(&buf, &limits) {
                        Ok(Parsed::Incomplete) => break,
                        Ok(Parsed::Complete { message, consumed }) => {
                            buf.drain(..consumed);
                            if to_shell.send(FromRelay::Message(message)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = to_shell
                                .send(FromRelay::Bad(format!("unreadable answer: {e}")))
                                .await;
                            return;
                        }
                    }
                }
                match rd.read(&mut chunk).await {
                    Ok(0) => {
                        let _ = to_shell
                            .send(FromRelay::Closed("the relay closed the connection".into()))
                            .await;
                        return;
                    }
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) => {
                        let _ = to_shell.send(FromRelay::Closed(e.to_string())).await;
                        return;
                    }
                }
            }
        });
        Conn {
            tx,
            rx,
            peer: peer.ip(),
            tasks: [writer, reader],
        }
    }
}

fn subscribe(tracks: &[Arc<Track>], client: u64, links: &[PublishLink], conn: &Conn) {
    for (t, link) in tracks.iter().zip(links) {
        let sink = match *link {
            PublishLink::Tcp { rtp, rtcp } => Sink::Tcp {
                tx: conn.tx.clone(),
                rtp_channel: rtp,
                rtcp_channel: rtcp,
            },
            PublishLink::Udp { rtp, rtcp } => Sink::Udp {
                rtp: SocketAddr::new(conn.peer, rtp),
                rtcp: SocketAddr::new(conn.peer, rtcp),
            },
        };
        t.subscribe(client, sink, rand::random(), true, Retransmission::None);
    }
}

fn unsubscribe(tracks: &[Arc<Track>], client: u64) {
    for t in tracks {
        t.unsubscribe(client);
    }
}

fn describe(links: &[PublishLink]) -> &'static str {
    match links.first() {
        Some(PublishLink::Udp { .. }) => "RTP over UDP",
        _ => "interleaved in the RTSP connection",
    }
}
