//! Sockets: RTP/RTCP port pairs, RTCP receivers, and the list of addresses we can be reached at.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::sync::Arc;

use anyhow::Context;
use tracing::{debug, warn};

use crate::rtsp_server::RtspServer;

/// RTP sockets: a burst of one keyframe to hundreds of clients must not block on the send
/// buffer; IPv6 sockets leave the port to the IPv4 ones.
const RTP_SOCKETS: livecast_net::UdpOptions = livecast_net::UdpOptions {
    send_buffer: Some(8 << 20),
    recv_buffer: None,
    v6_only: true,
    nonblocking: false,
};

/// Binds an RTP socket on an even port and RTCP on the next one (RFC 3550 §11), on `ip`.
/// Returns `None` if that address family is not available on this machine.
pub fn bind_rtp_pair(ip: IpAddr) -> anyhow::Result<Option<(UdpSocket, UdpSocket)>> {
    match livecast_net::bind_rtp_pair(ip, &RTP_SOCKETS) {
        Ok((rtp, rtcp)) => {
            // The fan-out never waits for send-buffer space: a full buffer drops (and counts)
            // the datagram.
            rtp.set_nonblocking(true)
                .context("making the RTP socket non-blocking")?;
            Ok(Some((rtp, rtcp)))
        }
        Err(e) if ip.is_ipv6() && e.kind() != std::io::ErrorKind::AddrInUse => {
            debug!("no IPv6 UDP: {e}");
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("binding an RTP/RTCP port pair on {ip}")),
    }
}

/// The unspecified address of each family we serve UDP on.
pub fn any_v4() -> IpAddr {
    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
}

pub fn any_v6() -> IpAddr {
    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
}

/// Reads client RTCP of track `track` (receiver reports count as keep-alive, RFC 2326
/// §12.37; PLI/FIR ask for a keyframe; NACKs ask for retransmissions), forever.
///
/// RTP sockets get no reader: a socket registered with epoll is woken for write space on every
/// datagram the kernel frees, which cost the fan-out more than the sending itself (perf: 20 %
/// of the server's time in the socket's wait-queue lock and in context switches at N = 800).
/// What clients send to an RTP port (NAT "punch" packets) stays in its receive buffer until
/// the kernel drops it; nothing there is for us.
pub fn spawn_rtcp_reader(socket: &UdpSocket, server: Arc<RtspServer>, track: usize) {
    let Some(sock) = reader(socket) else {
        return;
    };
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        loop {
            match sock.recv_from(&mut buf).await {
                Ok((n, from)) => server.on_udp_rtcp(from, track, &buf[..n]),
                Err(e) => {
                    // ICMP port unreachable from a client that went away shows up here.
                    debug!("UDP receive: {e}");
                }
            }
        }
    });
}

/// A non-blocking tokio handle on (a clone of) `socket`, to read from it; `None` (logged) if
/// the socket cannot be cloned or registered.
pub fn reader(socket: &UdpSocket) -> Option<tokio::net::UdpSocket> {
    match socket.try_clone().and_then(|s| {
        s.set_nonblocking(true)?;
        tokio::net::UdpSocket::from_std(s)
    }) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!("cannot read from UDP socket: {e}");
            None
        }
    }
}

/// Every address of this machine a client could use, for the start-up banner (loopback last).
pub fn local_addresses() -> Vec<IpAddr> {
    let mut addrs: Vec<IpAddr> = match if_addrs::get_if_addrs() {
        Ok(ifs) => ifs
            .into_iter()
            .map(|i| i.ip())
            .filter(|ip| match ip {
                // Link-local IPv6 needs a zone id in the URL, which players handle poorly.
                IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
                IpAddr::V4(_) => true,
            })
            .collect(),
        Err(e) => {
            warn!("cannot list network interfaces: {e}");
            Vec::new()
        }
    };
    addrs.sort_by_key(|ip| (ip.is_loopback(), ip.is_ipv6()));
    addrs.dedup();
    addrs
}

/// `rtsp://ADDR:PORT/path`, with IPv6 addresses in brackets.
pub fn rtsp_url(ip: IpAddr, port: u16, path: &str) -> String {
    match ip {
        IpAddr::V4(a) => format!("rtsp://{a}:{port}/{path}"),
        IpAddr::V6(a) => format!("rtsp://[{a}]:{port}/{path}"),
    }
}
