//! # livecast-loadgen
//!
//! A small, honest RTSP client for load tests and server tests: it speaks RTSP 1.0 with the
//! `livecast-proto` message types, sets up every track of a stream over UDP (`client_port`) or
//! interleaved TCP, and counts what arrives: packets, bytes, sequence gaps (loss), RTCP sender
//! reports. It does not decode media (that is the player's job); it is what a benchmark needs
//! to open hundreds of sessions cheaply, and what a test needs to talk to the server at the
//! byte level.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use livecast_proto::rtsp::auth::{
    preferred_challenge, Authorization, DigestChallenge, DigestCredentials,
};
use livecast_proto::rtsp::client::Credentials;
use livecast_proto::rtsp::Header as _;
use livecast_proto::rtsp::{
    self, CSeq, Limits, Message, Method, Parsed, Request, Response, RtspUrl, Session, Transport,
    TransportProfile, TransportSpec,
};
use livecast_proto::time::SeqExtender;
use livecast_proto::{rtcp, rtp, sdp};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub mod rx;
pub mod sysstat;

pub use rx::{RxTotals, UdpReceiver};

/// How media should reach the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum TransportKind {
    Udp,
    Tcp,
}

/// Per-track reception counters.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TrackStats {
    pub media: String,
    pub packets: u64,
    pub bytes: u64,
    /// Expected minus received, from the extended sequence numbers (RFC 3550 A.3).
    pub lost: i64,
    /// Frames (access units): packets whose RTP timestamp differs from the previous one's. A
    /// server that drops a whole frame before sending it, without using up sequence numbers,
    /// shows here (fewer frames per second) and not in `lost`.
    pub frames: u64,
    pub sender_reports: u64,
    /// From the PLAY response to this track's first RTP packet (for video, a keyframe's: the
    /// server starts every client at one).
    pub first_packet_ms: Option<f64>,
    first_seq: Option<u64>,
    #[serde(skip)]
    last_timestamp: Option<u32>,
    #[serde(skip)]
    ext: SeqExtender,
}

impl TrackStats {
    /// Counts one RTP packet; returns whether it began a new frame.
    pub(crate) fn on_rtp(&mut self, buf: &[u8]) -> bool {
        let mut new_frame = false;
        if let Ok(p) = rtp::parse(buf) {
            if self.last_timestamp != Some(p.timestamp) {
                self.last_timestamp = Some(p.timestamp);
                self.frames += 1;
                new_frame = true;
            }
            let e = self.ext.extend(p.sequence);
            if self.first_seq.is_none_or(|f| e < f) {
                self.first_seq = Some(e);
            }
            self.packets += 1;
            self.bytes += buf.len() as u64;
            if let (Some(first), Some(high)) = (self.first_seq, self.ext.highest()) {
                self.lost = (high - first + 1) as i64 - self.packets as i64;
            }
        }
        new_frame
    }

    pub(crate) fn on_rtcp(&mut self, buf: &[u8]) {
        if let Ok(pkts) = rtcp::parse_compound(buf) {
            self.sender_reports += pkts
                .iter()
                .filter(|p| matches!(p, rtcp::RtcpPacket::SenderReport(_)))
                .count() as u64;
        }
    }
}

/// What one client saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClientStats {
    pub tracks: Vec<TrackStats>,
    /// From connect to the PLAY response.
    pub setup_ms: f64,
    /// From the PLAY response to the first RTP packet.
    pub first_packet_ms: Option<f64>,
}

impl ClientStats {
    pub fn packets(&self) -> u64 {
        self.tracks.iter().map(|t| t.packets).sum()
    }

    pub fn lost(&self) -> i64 {
        self.tracks.iter().map(|t| t.lost.max(0)).sum()
    }
}

/// A byte stream an RTSP connection runs on: TCP, or TLS over TCP (`rtsps://`).
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A connected RTSP control connection with request/response helpers.
pub struct RtspConn {
    stream: Box<dyn Stream>,
    /// Our address on the connection.
    local: SocketAddr,
    buf: Vec<u8>,
    cseq: u32,
    pub url: String,
    pub session: Option<String>,
    /// Interleaved frames read while waiting for a response.
    pub pending_data: Vec<rtsp::InterleavedFrame>,
    /// Digest credentials from the URL's `user:password@`, and the challenge they answer.
    credentials: Option<Credentials>,
    challenge: Option<DigestChallenge>,
}

impl RtspConn {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let addr = url_addr(url)?;
        let parsed = RtspUrl::parse(url)?;
        let credentials = parsed
            .userinfo
            .as_deref()
            .and_then(Credentials::from_userinfo);
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)?;
        let local = tcp.local_addr()?;
        let stream: Box<dyn Stream> = if parsed.tls {
            // A load generator trusts any certificate (the handshake's signature still checks).
            let config =
                livecast_net::tls::client_config(livecast_net::tls::ClientTrust::Fingerprint)?;
            let name = livecast_net::tls::server_name(&parsed.host)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .with_context(|| format!("TLS handshake with {addr}"))?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        Ok(Self {
            stream,
            local,
            buf: Vec::new(),
            cseq: 0,
            url: url.to_string(),
            session: None,
            credentials,
            challenge: None,
            pending_data: Vec::new(),
        })
    }

    /// Sends raw bytes (for malformed-request tests).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Reads the next message (response or interleaved frame).
    pub async fn read_message(&mut self) -> anyhow::Result<Message> {
        let limits = Limits {
            max_header_bytes: 64 * 1024,
            max_body_bytes: 1 << 20,
        };
        loop {
            match rtsp::parse(&self.buf, &limits).map_err(|e| anyhow!("{e}"))? {
                Parsed::Complete { message, consumed } => {
                    self.buf.drain(..consumed);
                    return Ok(message);
                }
                Parsed::Incomplete => {
                    let mut chunk = [0u8; 8192];
                    let n = self.stream.read(&mut chunk).await?;
                    if n == 0 {
                        bail!("server closed the connection");
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }

    /// Reads until a response arrives; interleaved frames on the way are kept.
    pub async fn read_response(&mut self) -> anyhow::Result<Response> {
        loop {
            match self.read_message().await? {
                Message::Response(r) => return Ok(r),
                Message::Data(f) => self.pending_data.push(f),
                Message::Request(_) => {}
            }
        }
    }

    /// Sends a request (CSeq and Session added) and waits for its response.
    /// Sends `req` and reads its response; a 401 is answered once with the URL's credentials
    /// (again for a stale nonce), as the player does.
    pub async fn request(&mut self, req: Request) -> anyhow::Result<Response> {
        let mut tries = 0;
        loop {
            let resp = self.request_once(req.clone()).await?;
            if resp.status.0 != 401 || self.credentials.is_none() || tries >= 2 {
                return Ok(resp);
            }
            let Some(ch) = preferred_challenge(resp.headers.get_all("WWW-Authenticate")) else {
                return Ok(resp);
            };
            if self.challenge.is_some() && !ch.stale {
                return Ok(resp); // wrong password
            }
            self.challenge = Some(ch);
            tries += 1;
        }
    }

    async fn request_once(&mut self, mut req: Request) -> anyhow::Result<Response> {
        if let (Some(ch), Some(cr)) = (&self.challenge, &self.credentials) {
            let method = req.method.as_str().to_owned();
            let cnonce = format!("{:016x}", rand::random::<u64>());
            if let Some(d) =
                DigestCredentials::answer(ch, &cr.user, &cr.password, &method, &req.uri, &cnonce)
            {
                req.headers
                    .set("Authorization", Authorization::Digest(d).to_value());
            }
        }
        self.cseq += 1;
        req.headers.set_typed(&CSeq(self.cseq));
        if let Some(s) = &self.session {
            if req.headers.get("Session").is_none() {
                req.headers.set("Session", s);
            }
        }
        req.headers.set("User-Agent", "livecast-loadgen");
        let mut out = Vec::new();
        req.write_to(&mut out);
        self.stream.write_all(&out).await?;
        // A TLS stream may keep encrypted bytes back when the socket is full.
        self.stream.flush().await?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.read_response())
            .await
            .map_err(|_| anyhow!("no response to {} within 10 s", req.method.as_str()))??;
        if let Ok(Some(s)) = resp.headers.get_typed::<Session>() {
            self.session = Some(s.id);
        }
        Ok(resp)
    }
}

/// `rtsp://host:port/...` -> socket address (default port 554, 322 for `rtsps://`).
pub fn url_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let u = RtspUrl::parse(url)?;
    use std::net::ToSocketAddrs;
    (u.host.as_str(), u.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow!("cannot resolve {}", u.host))
}

/// UDP media sockets: non-blocking, with a receive buffer for a second or two of video (the
/// kernel caps it at `net.core.rmem_max`).
const MEDIA_SOCKETS: livecast_net::UdpOptions = livecast_net::UdpOptions {
    send_buffer: None,
    recv_buffer: Some(2 << 20),
    v6_only: false,
    nonblocking: true,
};

/// Options for [`run_client`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub url: String,
    pub transport: TransportKind,
    /// How long to receive after PLAY.
    pub duration: Duration,
    /// Send TEARDOWN at the end (else just drop the connection).
    pub teardown: bool,
}

/// Runs one client: DESCRIBE, SETUP every track, PLAY, receive for `duration`, TEARDOWN.
/// Setting `stop` to `true` ends the reception early. UDP media is read by the process-wide
/// [`UdpReceiver::shared`].
pub async fn run_client(
    opts: &ClientOptions,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<ClientStats> {
    run_client_on(opts, stop, UdpReceiver::shared()).await
}

/// [`run_client`], reading UDP media on the given receiver threads.
pub async fn run_client_on(
    opts: &ClientOptions,
    stop: tokio::sync::watch::Receiver<bool>,
    receiver: &UdpReceiver,
) -> anyhow::Result<ClientStats> {
    let t0 = Instant::now();
    let mut c = RtspConn::connect(&opts.url).await?;
    // Requests name the URL without its credentials.
    let parsed = RtspUrl::parse(&opts.url)?;
    let (url, secure) = (parsed.full, parsed.tls);
    let resp = c
        .request(Request::new(Method::Describe, &url).header("Accept", "application/sdp"))
        .await?;
    if resp.status.0 != 200 {
        bail!("DESCRIBE: {} {}", resp.status.0, resp.reason);
    }
    let base = resp
        .headers
        .get("Content-Base")
        .map(str::to_string)
        .unwrap_or_else(|| format!("{url}/"));
    let text = String::from_utf8_lossy(&resp.body).to_string();
    let desc = sdp::parse(&text).map_err(|e| anyhow!("SDP: {e}"))?;
    let local_ip = c.local.ip();
    let mut stats = ClientStats::default();
    let mut udp = Vec::new();
    for (i, m) in desc.media.iter().enumerate() {
        let control = m
            .control()
            .ok_or_else(|| anyhow!("media {i} has no a=control"))?;
        let url = rtsp::url::resolve(&base, control);
        let spec = match opts.transport {
            TransportKind::Udp => {
                let (a, b) = livecast_net::bind_rtp_pair(local_ip, &MEDIA_SOCKETS)?;
                let ports = (a.local_addr()?.port(), b.local_addr()?.port());
                udp.push((a, b));
                // On the TLS port UDP media is SRTP, as the SDP says (`RTP/SAVPF` video). The
                // load generator sends no key of its own (no `KeyMgmt`: its RTCP would be
                // dropped unread) and never decrypts: it counts packets by their headers,
                // which SRTP leaves in the clear.
                let profile = if secure {
                    let savp = if m.proto.starts_with("RTP/SAVP") {
                        m.proto.as_str()
                    } else {
                        "RTP/SAVP"
                    };
                    TransportProfile::Other(savp.to_owned())
                } else {
                    TransportProfile::RtpAvp
                };
                TransportSpec {
                    profile,
                    client_port: Some(ports),
                    ..TransportSpec::default()
                }
            }
            TransportKind::Tcp => TransportSpec {
                profile: TransportProfile::RtpAvpTcp,
                interleaved: Some((2 * i as u8, 2 * i as u8 + 1)),
                ..TransportSpec::default()
            },
        };
        let resp = c
            .request(Request::new(Method::Setup, &url).typed(&Transport(vec![spec])))
            .await?;
        if resp.status.0 != 200 {
            bail!("SETUP {url}: {} {}", resp.status.0, resp.reason);
        }
        stats.tracks.push(TrackStats {
            media: m.media.clone(),
            ..Default::default()
        });
    }
    let resp = c
        .request(
            Request::new(Method::Play, base.trim_end_matches('/')).header("Range", "npt=0.000-"),
        )
        .await?;
    if resp.status.0 != 200 {
        bail!("PLAY: {} {}", resp.status.0, resp.reason);
    }
    let t_play = Instant::now();
    stats.setup_ms = (t_play - t0).as_secs_f64() * 1e3;
    let deadline = tokio::time::Instant::now() + opts.duration;
    match opts.transport {
        TransportKind::Udp => {
            let mut handles = Vec::new();
            for (i, (rtp_s, rtcp_s)) in udp.into_iter().enumerate() {
                handles.push(receiver.add(i, rtp_s, rtcp_s)?);
            }
            // Keep the session alive while the receiver threads count packets.
            let end = tokio::time::sleep_until(deadline);
            tokio::pin!(end);
            let mut stop2 = stop.clone();
            loop {
                tokio::select! {
                    _ = &mut end => break,
                    _ = stopped(&mut stop2) => break,
                    _ = tokio::time::sleep(Duration::from_secs(20)) => {
                        c.request(Request::new(Method::GetParameter, base.trim_end_matches('/'))).await?;
                    }
                }
            }
            // TEARDOWN before closing the sockets, so the server doesn't send into closed
            // ports (ICMP errors back at it) meanwhile.
            if opts.teardown {
                teardown(&mut c, &base).await?;
            }
            for (i, h) in handles.into_iter().enumerate() {
                let r = h.finish().await?;
                let media = std::mem::take(&mut stats.tracks[i].media);
                stats.tracks[i] = TrackStats { media, ..r.stats };
                if let Some(f) = r.first_packet {
                    let ms = f.saturating_duration_since(t_play).as_secs_f64() * 1e3;
                    stats.tracks[i].first_packet_ms = Some(ms);
                    stats.first_packet_ms =
                        Some(stats.first_packet_ms.map_or(ms, |m: f64| m.min(ms)));
                }
            }
        }
        TransportKind::Tcp => {
            for f in std::mem::take(&mut c.pending_data) {
                on_frame(&mut stats, &f, t_play);
            }
            let end = tokio::time::sleep_until(deadline);
            tokio::pin!(end);
            let mut stop2 = stop.clone();
            loop {
                let msg = tokio::select! {
                    _ = &mut end => break,
                    _ = stopped(&mut stop2) => break,
                    m = c.read_message() => m?,
                };
                if let Message::Data(f) = msg {
                    on_frame(&mut stats, &f, t_play);
                }
            }
        }
    }
    if opts.teardown && opts.transport == TransportKind::Tcp {
        teardown(&mut c, &base).await?;
    }
    Ok(stats)
}

async fn teardown(c: &mut RtspConn, base: &str) -> anyhow::Result<()> {
    let r = c
        .request(Request::new(Method::Teardown, base.trim_end_matches('/')))
        .await?;
    if r.status.0 != 200 {
        bail!("TEARDOWN: {} {}", r.status.0, r.reason);
    }
    Ok(())
}

/// Resolves once `stop` holds `true`; never, if its sender is gone.
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn on_frame(stats: &mut ClientStats, f: &rtsp::InterleavedFrame, t_play: Instant) {
    let track = usize::from(f.channel / 2);
    let Some(t) = stats.tracks.get_mut(track) else {
        return;
    };
    if f.channel.is_multiple_of(2) {
        let ms = t_play.elapsed().as_secs_f64() * 1e3;
        stats.first_packet_ms.get_or_insert(ms);
        t.first_packet_ms.get_or_insert(ms);
        t.on_rtp(&f.payload);
    } else {
        t.on_rtcp(&f.payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_addresses() {
        assert_eq!(
            url_addr("rtsp://127.0.0.1:8554/live").unwrap(),
            "127.0.0.1:8554".parse().unwrap()
        );
        assert_eq!(
            url_addr("rtsp://[::1]:9000/live").unwrap(),
            "[::1]:9000".parse().unwrap()
        );
        assert_eq!(url_addr("rtsp://127.0.0.1/x").unwrap().port(), 554);
        assert!(url_addr("http://x/").is_err());
    }
}
