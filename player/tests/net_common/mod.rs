//! Shared helpers for the network-side tests: the real livecast-server in its own runtime (so
//! a test can stop it and start another on the same port), a TCP relay (a port forward, like
//! `ssh -L`) that records what the client sends, and a client driving `net::run`.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use livecast_player::engine::api::{ConnState, TransportPref};
use livecast_player::engine::net::{self, NetConfig, NetControl, NetEvent, NetStats};
use livecast_player::engine::unit::MediaUnit;
use livecast_server::rtsp_server::RtspConfig;
use livecast_server::source::VideoConfig;
use livecast_server::{RunningServer, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;

/// livecast-server on the built-in test card and tone, 320x240@30, on loopback.
pub struct LivecastServer {
    rt: Option<tokio::runtime::Runtime>,
    running: Option<RunningServer>,
    pub port: u16,
}

impl LivecastServer {
    /// Starts on `port` (0: any free port).
    pub fn start(port: u16) -> Self {
        Self::start_with(port, RtspConfig::default())
    }

    pub fn start_with(port: u16, rtsp: RtspConfig) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime can be built for the server");
        let cfg = ServerConfig {
            rtsp,
            ..ServerConfig::test_sources(
                SocketAddr::from(([127, 0, 0, 1], port)),
                VideoConfig {
                    width: 320,
                    height: 240,
                    fps: 30,
                },
                500_000,
            )
        };
        let running = rt
            .block_on(livecast_server::start(cfg))
            .expect("livecast-server starts on test sources");
        let port = running.listening[0].port();
        LivecastServer {
            rt: Some(rt),
            running: Some(running),
            port,
        }
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/live", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Also answers RTSPS on `addr` (port 0: any) with `tls`; returns where.
    pub fn serve_tls(
        &mut self,
        addr: SocketAddr,
        tls: std::sync::Arc<tokio_rustls::rustls::ServerConfig>,
    ) -> SocketAddr {
        let (Some(running), Some(rt)) = (self.running.as_mut(), self.rt.as_ref()) else {
            panic!("the server was stopped");
        };
        let _in_runtime = rt.enter();
        running.serve_tls(&[addr], tls).expect("an RTSPS listener")[0]
    }

    /// The UDP ports its tracks send from: a capture filter for this server's media only.
    pub fn udp_ports(&self) -> Vec<u16> {
        self.running
            .as_ref()
            .map_or_else(Vec::new, |r| r.rtsp.udp_ports())
    }

    pub fn session_count(&self) -> usize {
        self.running.as_ref().map_or(0, |r| r.rtsp.session_count())
    }

    /// Stops the server as its owner would ([`RunningServer::shutdown`]: listeners and every
    /// connection closed, capture and encoding stopped), then ends its runtime.
    pub fn stop(&mut self) {
        if let (Some(running), Some(rt)) = (self.running.take(), self.rt.as_ref()) {
            let _in_runtime = rt.enter();
            running.shutdown();
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

impl Drop for LivecastServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP port forward to `upstream`, whose upstream connections come from `source_ip`. The
/// server sends UDP media to the address the RTSP connection came from, so with a source
/// address the client does not listen on (127.0.0.3), UDP cannot reach the client while
/// RTSP and interleaved TCP pass: a TCP-only path, like an SSH tunnel.
pub struct Relay {
    pub port: u16,
    /// Everything clients sent upstream.
    pub sent: Arc<Mutex<Vec<u8>>>,
    /// While set, nothing is forwarded either way (connections stay open): a stalled path.
    pub frozen: Arc<AtomicBool>,
    _task: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub async fn start(upstream: SocketAddr, source_ip: IpAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the relay");
        let port = listener.local_addr().expect("bound").port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let frozen = Arc::new(AtomicBool::new(false));
        let log = sent.clone();
        let stall = frozen.clone();
        let task = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let sock = TcpSocket::new_v4().expect("a TCP socket");
                sock.bind(SocketAddr::new(source_ip, 0))
                    .expect("127.0.0.0/8 is all loopback on Linux");
                let Ok(up) = sock.connect(upstream).await else {
                    continue;
                };
                tokio::spawn(pump(down, up, log.clone(), stall.clone()));
            }
        });
        Relay {
            port,
            sent,
            frozen,
            _task: task,
        }
    }

    /// A relay from `source_ip` (in 127.0.0.0/8) to `server` and a client playing its `live`
    /// stream through it over `transport`.
    pub async fn with_client(
        server: &LivecastServer,
        source_ip: &str,
        transport: TransportPref,
    ) -> (Relay, Client) {
        let ip = source_ip.parse().expect("an IP address");
        let relay = Relay::start(server.addr(), ip).await;
        let client = Client::start(&relay.url("live"), transport);
        (relay, client)
    }

    pub fn url(&self, path: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{path}", self.port)
    }

    pub fn sent_text(&self) -> String {
        String::from_utf8_lossy(&self.sent.lock().expect("not poisoned")).into_owned()
    }
}

async fn pump(down: TcpStream, up: TcpStream, log: Arc<Mutex<Vec<u8>>>, frozen: Arc<AtomicBool>) {
    let (mut dr, mut dw) = down.into_split();
    let (mut ur, mut uw) = up.into_split();
    tokio::select! {
        _ = relay(&mut dr, &mut uw, 16 * 1024, &frozen, Some(&log)) => {}
        _ = relay(&mut ur, &mut dw, 64 * 1024, &frozen, None) => {}
    }
}

/// Copies `from` to `to` in reads of up to `buf_size` bytes, holding each read while `frozen`
/// and appending it to `log` if given, until either side closes or fails.
async fn relay(
    from: &mut (impl AsyncReadExt + Unpin),
    to: &mut (impl AsyncWriteExt + Unpin),
    buf_size: usize,
    frozen: &AtomicBool,
    log: Option<&Mutex<Vec<u8>>>,
) {
    let mut buf = vec![0u8; buf_size];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while frozen.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(log) = log {
            log.lock()
                .expect("not poisoned")
                .extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

/// A server that answers every request with `302` to `location` (as load balancers do).
pub async fn redirector(location: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port for the redirector");
    let port = listener.local_addr().expect("bound").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let location = location.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = s.read(&mut chunk).await {
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let cseq = head
                            .lines()
                            .find_map(|l| l.strip_prefix("CSeq:"))
                            .unwrap_or("0")
                            .trim()
                            .to_owned();
                        let resp = format!(
                            "RTSP/1.0 302 Moved Temporarily\r\nCSeq: {cseq}\r\nLocation: {location}\r\n\r\n"
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}

/// `net::run` in a task, with its channels.
pub struct Client {
    pub events: mpsc::Receiver<NetEvent>,
    pub control: mpsc::Sender<NetControl>,
    pub task: tokio::task::JoinHandle<()>,
    /// Everything received so far, in order.
    pub log: Vec<(Instant, NetEvent)>,
}

impl Client {
    pub fn start(url: &str, transport: TransportPref) -> Client {
        let (etx, erx) = mpsc::channel(4096);
        let (ctx, crx) = mpsc::channel(16);
        let cfg = NetConfig {
            transport,
            ..NetConfig::new(url)
        };
        let task = tokio::spawn(net::run(cfg, etx, crx));
        Client {
            events: erx,
            control: ctx,
            task,
            log: Vec::new(),
        }
    }

    pub async fn send(&self, c: NetControl) {
        self.control
            .send(c)
            .await
            .expect("the client is running until told to stop");
    }

    /// Sends `Stop` and waits (3 s at most) for `run()` to return.
    pub async fn stop(&mut self) {
        self.send(NetControl::Stop).await;
        self.join(Duration::from_secs(3)).await;
    }

    /// Sends `Stop`, waits `within` for `Ended` (the TEARDOWN went out), then for `run()` to
    /// return (1 s at most).
    pub async fn stop_until_ended(&mut self, within: Duration) {
        self.send(NetControl::Stop).await;
        self.wait_for(within, |e| *e == NetEvent::State(ConnState::Ended))
            .await
            .expect("Ended after Stop");
        self.join(Duration::from_secs(1)).await;
    }

    /// Waits `limit` for `run()` to return, without a panic.
    pub async fn join(&mut self, limit: Duration) {
        tokio::time::timeout(limit, &mut self.task)
            .await
            .expect("run() returns after Stop")
            .expect("run() does not panic");
    }

    /// Receives events for `d`; returns them (also kept in `log`).
    pub async fn collect(&mut self, d: Duration) -> Vec<NetEvent> {
        let until = tokio::time::Instant::now() + d;
        let mut got = Vec::new();
        while let Ok(Some(ev)) = tokio::time::timeout_at(until, self.events.recv()).await {
            self.log.push((Instant::now(), ev.clone()));
            got.push(ev);
        }
        got
    }

    /// Receives until an event matches `pred` (returned) or `limit` passes (`None`).
    pub async fn wait_for(
        &mut self,
        limit: Duration,
        mut pred: impl FnMut(&NetEvent) -> bool,
    ) -> Option<NetEvent> {
        let until = tokio::time::Instant::now() + limit;
        while let Ok(Some(ev)) = tokio::time::timeout_at(until, self.events.recv()).await {
            self.log.push((Instant::now(), ev.clone()));
            if pred(&ev) {
                return Some(ev);
            }
        }
        None
    }
}

/// The last statistics among `events`.
pub fn last_stats(events: &[NetEvent]) -> &NetStats {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            NetEvent::Stats(s) => Some(s),
            _ => None,
        })
        .expect("stats about once a second")
}

pub fn units(events: &[NetEvent], track: usize) -> Vec<&MediaUnit> {
    events
        .iter()
        .filter_map(|e| match e {
            NetEvent::Unit(u) if u.track == track => Some(u),
            _ => None,
        })
        .collect()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A runtime for the client side of a test.
pub fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime can be built for the client")
}
