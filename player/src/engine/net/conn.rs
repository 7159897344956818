//! The RTSP control connection, over TCP or TLS (`rtsps://`, [`super::tls`]): a reader task that
//! parses responses and interleaved frames (RFC 2326 §10.12) off the stream and stamps their
//! arrival, and a writer for requests, responses and interleaved frames. UDP readers feed the
//! same inbox, so the session loop waits on one channel.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use livecast_proto::rtsp::{self, InterleavedFrame, Limits, Message, Parsed, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::tls::{self, ConnectError, TlsConfig};

/// Why the connection ended when the server closed it cleanly.
pub const CLOSED_BY_SERVER: &str = "the server closed the connection";

/// Responses may carry a large SDP; these bound what a server can make us buffer.
const LIMITS: Limits = Limits {
    max_header_bytes: 64 * 1024,
    max_body_bytes: 1 << 20,
};

/// A write that takes longer than this means the server stopped reading: the connection is
/// as good as lost.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Inbox depth; readers wait when it is full (back-pressure into the socket buffers).
const INBOX: usize = 4096;

pub const USER_AGENT: &str = concat!("livecast-player/", env!("CARGO_PKG_VERSION"));

/// When something arrived: monotonic for the Sans-IO parts, wall clock for capture times.
#[derive(Clone, Copy, Debug)]
pub struct Stamp {
    pub at: Instant,
    /// Microseconds since the Unix epoch.
    pub wall_us: i64,
}

impl Stamp {
    pub fn now() -> Self {
        Stamp {
            at: Instant::now(),
            wall_us: wall_us(SystemTime::now()),
        }
    }
}

/// Microseconds since the Unix epoch (0 for a clock set before 1970).
pub fn wall_us(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Everything the session loop waits for, in arrival order.
#[derive(Debug)]
pub enum Inbound {
    /// A response, a request from the server, or an interleaved frame.
    Rtsp(Message, Stamp),
    /// A datagram on track `track`'s RTP (or RTCP) socket.
    Udp {
        track: usize,
        rtcp: bool,
        data: Vec<u8>,
        stamp: Stamp,
    },
    /// The connection ended; the reason is for the viewer.
    Closed(String),
}

/// Aborts a task when dropped, so no reader outlives its session.
#[derive(Debug)]
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub struct Conn {
    /// The TCP connection's write half, or the TLS stream's (`rtsps://`).
    writer: Box<dyn AsyncWrite + Send + Unpin>,
    tx: mpsc::Sender<Inbound>,
    pub inbox: mpsc::Receiver<Inbound>,
    _reader: AbortOnDrop,
    pub local: SocketAddr,
    pub peer: SocketAddr,
}

impl Conn {
    /// Connects to `host:port` (trying every resolved address, 10 s in all), with TLS as
    /// `tls` says for an `rtsps://` URL.
    pub async fn connect(
        host: &str,
        port: u16,
        tls: Option<&TlsConfig>,
    ) -> Result<Conn, ConnectError> {
        let attempt = async {
            let mut last = io::Error::new(io::ErrorKind::NotFound, "host has no address");
            for addr in tokio::net::lookup_host((host, port)).await? {
                match TcpStream::connect(addr).await {
                    Ok(s) => return Ok(s),
                    Err(e) => last = e,
                }
            }
            Err(last)
        };
        let stream = tokio::time::timeout(Duration::from_secs(10), attempt)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
            .flatten()
            .map_err(ConnectError::Io)?;
        let addrs = stream
            .set_nodelay(true)
            .and_then(|()| Ok((stream.local_addr()?, stream.peer_addr()?)));
        let (local, peer) = addrs.map_err(ConnectError::Io)?;
        let (tx, inbox) = mpsc::channel(INBOX);
        let (reader, writer): (_, Box<dyn AsyncWrite + Send + Unpin>) = match tls {
            None => {
                let (rd, wr) = stream.into_split();
                (tokio::spawn(read_loop(rd, tx.clone())), Box::new(wr))
            }
            Some(cfg) => {
                let handshake = tls::handshake(cfg, host, port, stream);
                let stream = tokio::time::timeout(Duration::from_secs(10), handshake)
                    .await
                    .map_err(|_| {
                        let e = io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out");
                        ConnectError::Io(e)
                    })??;
                let (rd, wr) = tokio::io::split(stream);
                (tokio::spawn(read_loop(rd, tx.clone())), Box::new(wr))
            }
        };
        let reader = AbortOnDrop(reader);
        Ok(Conn {
            writer,
            tx,
            inbox,
            _reader: reader,
            local,
            peer,
        })
    }

    /// A sender into this connection's inbox, for UDP readers.
    pub fn inbox_sender(&self) -> mpsc::Sender<Inbound> {
        self.tx.clone()
    }

    /// Writes a request (numbered and complete: the session state machine made it).
    pub async fn send(&mut self, req: &Request) -> io::Result<()> {
        let mut out = Vec::with_capacity(256);
        req.write_to(&mut out);
        self.write(&out).await
    }

    /// Sends an interleaved frame (RFC 2326 §10.12), e.g. an RTCP receiver report.
    pub async fn send_frame(&mut self, channel: u8, payload: Vec<u8>) -> io::Result<()> {
        if payload.len() > InterleavedFrame::MAX_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "interleaved frame too large",
            ));
        }
        let mut out = Vec::with_capacity(payload.len() + 4);
        // The length was checked just above, so write_to cannot panic.
        InterleavedFrame { channel, payload }.write_to(&mut out);
        self.write(&out).await
    }

    /// Writes a raw response (to a request the server sent us).
    pub async fn send_response(&mut self, resp: &rtsp::Response) -> io::Result<()> {
        let mut out = Vec::new();
        resp.write_to(&mut out);
        self.write(&out).await
    }

    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        // Flushed: a TLS stream may keep encrypted bytes back when the socket is full.
        let w = &mut self.writer;
        let write = async move {
            w.write_all(bytes).await?;
            w.flush().await
        };
        tokio::time::timeout(WRITE_TIMEOUT, write)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "server stopped reading"))?
    }
}

async fn read_loop(mut rd: impl AsyncRead + Unpin, tx: mpsc::Sender<Inbound>) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let reason = 'read: loop {
        loop {
            match rtsp::parse(&buf, &LIMITS) {
                Ok(Parsed::Incomplete) => break,
                Ok(Parsed::Complete { message, consumed }) => {
                    buf.drain(..consumed);
                    if tx.send(Inbound::Rtsp(message, Stamp::now())).await.is_err() {
                        return; // the session is gone
                    }
                }
                Err(e) => break 'read format!("unreadable data from the server ({e})"),
            }
        }
        match rd.read(&mut chunk).await {
            Ok(0) => break CLOSED_BY_SERVER.to_owned(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => break format!("connection error: {e}"),
        }
    };
    let _ = tx.send(Inbound::Closed(reason)).await;
}

/// Reads datagrams from one UDP socket into the inbox, keeping only those from `server_ip`
/// (when known): anyone can send to an open port.
pub fn spawn_udp_reader(
    socket: Arc<UdpSocket>,
    track: usize,
    rtcp: bool,
    server_ip: Option<std::net::IpAddr>,
    tx: mpsc::Sender<Inbound>,
) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            match socket.recv_from(&mut buf).await {
                Ok((n, from)) => {
                    if server_ip.is_some_and(|ip| canonical(ip) != canonical(from.ip())) {
                        tracing::debug!(%from, track, "dropping a datagram not from the server");
                        continue;
                    }
                    let msg = Inbound::Udp {
                        track,
                        rtcp,
                        data: buf[..n].to_vec(),
                        stamp: Stamp::now(),
                    };
                    if tx.send(msg).await.is_err() {
                        return;
                    }
                }
                // ICMP errors (port unreachable after the server left) surface here; keep
                // reading, the session decides when the server is gone.
                Err(e) => {
                    tracing::trace!(track, "UDP receive: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }))
}

/// IPv4-mapped IPv6 addresses as IPv4, so both spellings compare equal.
pub fn canonical(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    }
}

/// Binds an RTP socket on an even port and RTCP on the next (RFC 3550 §11) on `ip`, with
/// large receive buffers so a keyframe burst is not dropped by the kernel.
pub fn bind_udp_pair(ip: std::net::IpAddr) -> io::Result<(UdpSocket, UdpSocket)> {
    const OPTS: livecast_net::UdpOptions = livecast_net::UdpOptions {
        send_buffer: None,
        recv_buffer: Some(4 << 20),
        v6_only: false,
        nonblocking: true,
    };
    let (rtp, rtcp) = livecast_net::bind_rtp_pair(ip, &OPTS)?;
    Ok((UdpSocket::from_std(rtp)?, UdpSocket::from_std(rtcp)?))
}
