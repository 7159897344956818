//! # livecast-net
//!
//! Socket helpers shared by the I/O shells (`livecast-server`, `livecast-player`,
//! `livecast-loadgen`): the RTP/RTCP UDP port pair of RFC 3550 §11, bound once, here; and the
//! TLS configurations of RTSPS ([`tls`]). Protocol
//! logic lives in `livecast-proto`, which has no sockets; this crate has no protocol logic.
//!
//! Each shell sizes its own buffers ([`UdpOptions`]): the server's fan-out needs a large send
//! buffer, the receivers a large receive buffer.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

pub mod tls;

/// How a UDP socket is set up before it is bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpOptions {
    /// `SO_SNDBUF` to ask for (the kernel may cap it at `net.core.wmem_max`).
    pub send_buffer: Option<usize>,
    /// `SO_RCVBUF` to ask for (the kernel may cap it at `net.core.rmem_max`).
    pub recv_buffer: Option<usize>,
    /// `IPV6_V6ONLY` on IPv6 sockets, so an IPv4 socket can take the same port.
    pub v6_only: bool,
    /// Non-blocking, as tokio and mio want their sockets.
    pub nonblocking: bool,
}

/// A UDP socket bound to `addr`, set up as `opts` says. A buffer size the kernel refuses is
/// logged and left at its default.
///
/// # Errors
/// Creating or binding the socket failed.
pub fn bind_udp(addr: SocketAddr, opts: &UdpOptions) -> io::Result<UdpSocket> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() && opts.v6_only {
        s.set_only_v6(true)?;
    }
    if let Some(n) = opts.send_buffer {
        if let Err(e) = s.set_send_buffer_size(n) {
            tracing::debug!("cannot set SO_SNDBUF to {n}: {e}");
        }
    }
    if let Some(n) = opts.recv_buffer {
        if let Err(e) = s.set_recv_buffer_size(n) {
            tracing::debug!("cannot set SO_RCVBUF to {n}: {e}");
        }
    }
    s.bind(&addr.into())?;
    if opts.nonblocking {
        s.set_nonblocking(true)?;
    }
    Ok(s.into())
}

/// Attempts at finding a free pair before giving up.
const ATTEMPTS: usize = 100;

/// Binds an RTP socket on an even port and RTCP on the next one (RFC 3550 §11) on `ip`.
///
/// The kernel picks an ephemeral port for a probe socket; its even neighbour and the port after
/// are then bound, and another probe is made if either is taken.
///
/// # Errors
/// The probe could not be bound (the address or its family is not available here: that error
/// is returned as is), or no free pair was found in 100 attempts (the last bind error, of kind
/// `AddrInUse` when every candidate was refused that way).
pub fn bind_rtp_pair(ip: IpAddr, opts: &UdpOptions) -> io::Result<(UdpSocket, UdpSocket)> {
    let mut last = io::Error::new(io::ErrorKind::AddrInUse, "no free even/odd UDP port pair");
    for _ in 0..ATTEMPTS {
        let probe = bind_udp(SocketAddr::new(ip, 0), opts)?;
        let port = probe.local_addr()?.port() & !1;
        drop(probe);
        if port == 0 || port == u16::MAX - 1 {
            continue;
        }
        let pair = bind_udp(SocketAddr::new(ip, port), opts)
            .and_then(|rtp| Ok((rtp, bind_udp(SocketAddr::new(ip, port + 1), opts)?)));
        match pair {
            Ok(pair) => return Ok(pair),
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn pair_is_even_then_odd_with_the_options_applied() {
        let opts = UdpOptions {
            recv_buffer: Some(1 << 20),
            nonblocking: true,
            ..UdpOptions::default()
        };
        let (rtp, rtcp) = bind_rtp_pair(IpAddr::V4(Ipv4Addr::LOCALHOST), &opts).unwrap();
        let port = rtp.local_addr().unwrap().port();
        assert_eq!(port % 2, 0);
        assert_eq!(rtcp.local_addr().unwrap().port(), port + 1);
        let mut buf = [0u8; 1];
        let err = rtp.recv_from(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }
}
