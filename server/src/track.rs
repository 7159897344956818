//! One media track's fan-out: a single encoded stream delivered to every playing client.
//!
//! The encoder thread hands each access unit's RTP packets to [`Track::deliver`], which runs on
//! that track's own fan-out thread. Every client gets the same payload bytes; only the 16-bit
//! sequence number is rewritten per client, so that each client's stream starts exactly at the
//! sequence number announced in its `RTP-Info` and, for video, at the first packet of a keyframe
//! (a client never sees P-frames it cannot decode). UDP clients share one RTP and one RTCP socket
//! per address family (`server_port` is the same for all). Interleaved-TCP clients get frames
//! through a bounded queue: when a slow client's queue is full its packets are dropped and
//! counted, and nobody else waits.
//!
//! ## Joining
//! A video client starts at a keyframe, and does not wait for the next periodic one: joining
//! asks the encoder for a keyframe, which the encoder's limiter allows at most once every
//! [`KEYFRAME_MIN_GAP`], and the fan-out keeps the last keyframe and every packet since
//! (`Recent`) while that keyframe is younger than the gap. A joiner is sent those packets first,
//! numbered for it, then the live ones. So a joiner waits at most one frame for its first
//! packet, whether the limiter lets its keyframe through (no keyframe in the last 500 ms) or not
//! (then the recent one, at most 500 ms old, is there), and a crowd of joiners makes at most one
//! extra keyframe per gap. The cost: a joiner served from the recent keyframe gets up to 500 ms
//! of pictures at once, which a player shows or skips on its way to the live edge; memory is
//! those packets (about 125 KB at 2 Mbit/s).
//!
//! ## Locking
//! Neither an RTSP request nor an RTCP sender report waits for a fan-out burst. The subscriber
//! set is copy-on-write: an `Arc<[Arc<Subscriber>]>` behind a mutex that is held only to clone
//! the `Arc` (the fan-out thread, once per access unit) or to swap in a changed copy (subscribe,
//! unsubscribe). The fan-out sends from its snapshot without any lock. A subscriber's sequence
//! state (`SeqState`: its offset from the server's numbering, the last number handed out, and
//! whether it has been removed) has its own mutex, taken by the fan-out thread once per access
//! unit to number that client's packets (a few additions, before any send) and by
//! `unsubscribe` once to mark it removed and read where its numbering stopped. A snapshot that
//! still holds a removed subscriber numbers nothing more for it, so the number a paused client
//! resumes at is never one it has already been sent. Counters are atomics.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use std::collections::VecDeque;

use livecast_proto::codec::rtx::{self, RtxHeader};
use livecast_proto::rtcp::{self, RtcpPacket, Sdes, SenderReport};
use livecast_proto::rtsp::server::{Retransmission, RtpClock, SrtpMasterKey};
use livecast_proto::rtsp::write_interleaved;
use livecast_proto::srtp;
use livecast_proto::time::{NtpTimestamp, Ssrc};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// The encoder makes a keyframe that somebody asked for at most this often; a joiner within
/// this time of the last keyframe is sent it from the fan-out's recent packets instead.
pub const KEYFRAME_MIN_GAP: Duration = Duration::from_millis(500);

/// After the fan-out last fell behind, new viewers are refused this long.
pub const OVERLOAD_MEMORY: Duration = Duration::from_secs(10);

/// How long sent packets are kept for retransmission (RFC 4585 NACKs): what the SDP says.
pub const HISTORY: Duration = livecast_proto::rtsp::server::RETRANSMIT_WINDOW;

/// Packets kept for retransmission at most, whatever the bit rate (about 5.6 MB of 1400-byte
/// packets; 2 Mbit/s video makes about 180 packets a second).
const MAX_HISTORY_PACKETS: usize = 4096;

/// The access units of the last [`HISTORY`], as the encoder handed them to the fan-out
/// (shared with it, not copied), in the server's numbering: what a NACK can be answered from.
#[derive(Default)]
struct History {
    units: VecDeque<(Instant, Arc<[OutPacket]>)>,
    packets: usize,
}

impl History {
    fn push(&mut self, au: Arc<[OutPacket]>, now: Instant) {
        while let Some((t, front)) = self.units.front() {
            if now.saturating_duration_since(*t) <= HISTORY
                && self.packets + au.len() <= MAX_HISTORY_PACKETS
            {
                break;
            }
            self.packets -= front.len();
            self.units.pop_front();
        }
        self.packets += au.len();
        self.units.push_back((now, au));
    }

    /// The packet numbered `server_seq` by the encoder, if kept and younger than [`HISTORY`].
    fn get(&self, server_seq: u16, now: Instant) -> Option<&OutPacket> {
        for (t, au) in self.units.iter().rev() {
            if now.saturating_duration_since(*t) > HISTORY {
                return None;
            }
            let Some(first) = au.first().and_then(|p| seq_of(&p.bytes)) else {
                continue;
            };
            let at = usize::from(server_seq.wrapping_sub(first));
            if at < au.len() {
                return au.get(at);
            }
        }
        None
    }
}

/// Recent packets kept for joiners at most (a keyframe and what followed it: far more than
/// 500 ms of video at any bit rate we make).
const MAX_RECENT_PACKETS: usize = 2048;

/// The last keyframe of a video track and every packet since, while it is young enough to
/// start a joiner from. Touched by the fan-out thread only.
#[derive(Default)]
struct Recent {
    packets: Vec<OutPacket>,
    keyframe_at: Option<Instant>,
}

/// What kind of media a track carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackKind {
    Video,
    Audio,
    /// Real-time text (captions).
    Text,
}

/// One RTP packet as produced by the packetizer, with the server's own sequence number.
#[derive(Clone, Debug)]
pub struct OutPacket {
    /// The whole RTP packet (12-byte header + payload).
    pub bytes: Vec<u8>,
    /// First packet of an access unit a decoder can start from (IDR with SPS/PPS, or any audio).
    pub starts_keyframe: bool,
}

/// Where a client wants its packets.
#[derive(Clone, Debug)]
pub enum Sink {
    Udp {
        rtp: SocketAddr,
        rtcp: SocketAddr,
    },
    Tcp {
        tx: mpsc::Sender<Vec<u8>>,
        rtp_channel: u8,
        rtcp_channel: u8,
    },
}

/// Per-client delivery counters.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub packets_sent: AtomicU64,
    pub packets_dropped: AtomicU64,
    /// Packets sent again on a NACK (original or RTX).
    pub packets_retransmitted: AtomicU64,
}

/// Where a client's numbering stands.
#[derive(Debug)]
struct SeqState {
    /// Sequence number the client's stream starts at (announced in RTP-Info).
    initial_seq: u16,
    /// `client_seq = server_seq + delta`; `None` until the first packet the client may start at.
    delta: Option<u16>,
    /// Last sequence number handed out to this client.
    last: Option<u16>,
    /// Unsubscribed: a snapshot that still holds it numbers (and so sends) nothing more.
    removed: bool,
    /// May start from the recent keyframe (not for a resumed stream, which may already have
    /// had those packets: its timestamps would go back).
    from_recent: bool,
    /// How its NACKs are answered; for RTX, the next RTX sequence number is in it.
    retransmission: Retransmission,
}

struct Subscriber {
    id: u64,
    sink: Sink,
    seq: Mutex<SeqState>,
    /// `RTP/SAVP(F)`: the SRTP context everything sent to this client goes through (its own
    /// key: see "SRTP" in the module doc). Taken by the fan-out thread once per packet.
    srtp: Option<(SrtpMasterKey, Mutex<srtp::Context>)>,
    /// Sent packets and payload octets, for this client's sender reports.
    packets: AtomicU32,
    octets: AtomicU32,
    stats: Arc<SinkStats>,
    /// Its route refused a GSO message once ([`send_udp`]): its datagrams go one by one.
    gso_refused: AtomicBool,
}

impl Subscriber {
    /// Counts one packet of `len` bytes (RTP header included), sent or dropped.
    fn account(&self, len: usize, sent: bool) {
        if sent {
            self.packets.fetch_add(1, Ordering::Relaxed);
            self.octets
                .fetch_add(len.saturating_sub(12) as u32, Ordering::Relaxed);
            self.stats.packets_sent.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.packets_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn seq(&self) -> MutexGuard<'_, SeqState> {
        // Nothing panics while holding it; if something did, the numbers are still usable.
        self.seq.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `packet` as this client gets it: SRTP-protected if it is a secure subscriber, else
    /// as is. `None`: not an RTP packet (never the case for ours).
    fn protect_rtp(&self, packet: Vec<u8>) -> Option<Vec<u8>> {
        match &self.srtp {
            None => Some(packet),
            Some((_, ctx)) => ctx
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .protect_rtp(&packet),
        }
    }

    /// An RTCP compound as this client gets it (SRTCP for a secure subscriber).
    fn protect_rtcp(&self, packet: &[u8]) -> Option<Vec<u8>> {
        match &self.srtp {
            None => Some(packet.to_vec()),
            Some((_, ctx)) => ctx
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .protect_rtcp(packet),
        }
    }

    fn udp_dest(&self) -> Option<SocketAddr> {
        match &self.sink {
            Sink::Udp { rtp, .. } => Some(*rtp),
            Sink::Tcp { .. } => None,
        }
    }
}

/// One RTP datagram for one UDP subscriber: `packets[packet]` with sequence number `seq`.
struct UdpSend {
    sub: usize,
    packet: usize,
    seq: u16,
}

/// Most datagrams per `sendmmsg` call (the kernel takes at most 1024 messages).
const SEND_BATCH: usize = 256;

/// Plain UDP datagrams gathered before they are sent (at a client boundary): bounds the
/// fan-out's scratch memory, whatever the number of clients.
const UDP_FLUSH_AT: usize = 2048;

/// The first `RTP_FIXED_HEADER` bytes of a datagram are sent from a per-client copy (with that
/// client's sequence number); the rest straight from the shared packet.
const RTP_FIXED_HEADER: usize = 12;

/// The per-client header copy of `bytes`, with `seq` written in, and its length.
fn header_with_seq(bytes: &[u8], seq: u16) -> ([u8; RTP_FIXED_HEADER], usize) {
    let n = bytes.len().min(RTP_FIXED_HEADER);
    let mut h = [0u8; RTP_FIXED_HEADER];
    h[..n].copy_from_slice(&bytes[..n]);
    // `seq_of` succeeded, so there are at least 4 bytes.
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    (h, n)
}

/// Most datagrams in one GSO message (the kernel's `UDP_MAX_SEGMENTS` before Linux 6.x).
const GSO_MAX_SEGMENTS: usize = 64;

/// Most bytes in one GSO message: under a UDP datagram's 65,507, with room to spare.
const GSO_MAX_BYTES: usize = 60_000;

/// One message of a `sendmmsg` call: `sends[from..to]`, one client's datagrams in their
/// order. With more than one, every datagram but the last is `segment` bytes long (the last
/// at most that), and the kernel cuts the message into those datagrams (UDP generic
/// segmentation offload, `UDP_SEGMENT`): one trip down the network stack for a client's whole
/// frame instead of one per packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Message {
    from: usize,
    to: usize,
    /// The how-many-th message of its client in this access unit: messages go out round by
    /// round, so each client's datagrams keep their order.
    round: usize,
    segment: Option<u16>,
}

/// Orders `sends` client by client (each client's datagrams staying in their order) and
/// cuts each client's run into [`Message`]s: as many datagrams per message as GSO allows
/// where `gso(send)` says the client's route takes it, one per message elsewhere. `len` is
/// a datagram's length. The messages come sorted by round and then segment size, so that
/// equal neighbours share one `sendmmsg` call.
fn plan_messages(
    sends: &mut [UdpSend],
    len: impl Fn(&UdpSend) -> usize,
    gso: impl Fn(&UdpSend) -> bool,
) -> Vec<Message> {
    // Stable, so a client's datagrams keep their order whatever order the caller gathered
    // them in (the fan-out gathers client by client: then this is one cheap pass).
    sends.sort_by_key(|d| d.sub);
    let mut messages = Vec::new();
    let mut i = 0;
    while i < sends.len() {
        let sub = sends[i].sub;
        let mut round = 0;
        while i < sends.len() && sends[i].sub == sub {
            let segment = len(&sends[i]);
            let mut to = i + 1;
            if gso(&sends[i]) && segment <= usize::from(u16::MAX) {
                let mut bytes = segment;
                // Each datagram taken so far is `segment` long; the next may be shorter, and
                // then it is the last.
                let mut full = true;
                while full && to < sends.len() && sends[to].sub == sub && to - i < GSO_MAX_SEGMENTS
                {
                    let l = len(&sends[to]);
                    if l > segment || bytes + l > GSO_MAX_BYTES {
                        break;
                    }
                    full = l == segment;
                    bytes += l;
                    to += 1;
                }
            }
            messages.push(Message {
                from: i,
                to,
                round,
                segment: (to - i > 1).then(|| u16::try_from(segment).unwrap_or(u16::MAX)),
            });
            round += 1;
            i = to;
        }
    }
    messages.sort_by_key(|m| (m.round, m.segment));
    messages
}

/// Sends `sends` on `sock`: each client's datagrams of this access unit in as few GSO
/// messages as its route takes ([`plan_messages`]), up to [`SEND_BATCH`] datagrams per
/// `sendmmsg`, each datagram gathered from its client's header copy and the shared payload.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_udp(
    sock: &UdpSocket,
    subs: &[Arc<Subscriber>],
    packets: &[&OutPacket],
    sends: &mut [UdpSend],
) {
    use nix::errno::Errno;
    use nix::sys::socket::{
        sendmmsg, sendmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
    };
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;

    let fd = sock.as_raw_fd();
    let messages = plan_messages(
        sends,
        |d| packets[d.packet].bytes.len(),
        |d| !subs[d.sub].gso_refused.load(Ordering::Relaxed),
    );
    let headers: Vec<([u8; RTP_FIXED_HEADER], usize)> = sends
        .iter()
        .map(|d| header_with_seq(&packets[d.packet].bytes, d.seq))
        .collect();
    // Two pieces per datagram, in `sends` order: a message's are `2 * from..2 * to`.
    let pieces: Vec<IoSlice<'_>> = sends
        .iter()
        .zip(&headers)
        .flat_map(|(d, (h, n))| {
            let bytes = &packets[d.packet].bytes;
            [IoSlice::new(&h[..*n]), IoSlice::new(&bytes[*n..])]
        })
        .collect();
    let account = |m: &Message, sent: bool| {
        for d in &sends[m.from..m.to] {
            subs[d.sub].account(packets[d.packet].bytes.len(), sent);
        }
    };
    let batch = messages.len().min(SEND_BATCH);
    // Separate headers with and without room for the segment size: a header keeps the
    // control data it was last given.
    let mut plain = MultiHeaders::<SockaddrStorage>::preallocate(batch, None);
    let mut gso = MultiHeaders::<SockaddrStorage>::preallocate(batch, Some(nix::cmsg_space!(u16)));
    let mut g = 0;
    while g < messages.len() {
        let key = (messages[g].round, messages[g].segment);
        // At most SEND_BATCH datagrams per call, however they are grouped: a call's work
        // in the kernel (on loopback the receivers' too) is not preempted, and the RTSP
        // threads wait behind it.
        let mut end = g + 1;
        let mut datagrams = messages[g].to - messages[g].from;
        while end < messages.len() && (messages[end].round, messages[end].segment) == key {
            let more = messages[end].to - messages[end].from;
            if datagrams + more > SEND_BATCH {
                break;
            }
            datagrams += more;
            end += 1;
        }
        let group = &messages[g..end];
        g = end;
        let iovs: Vec<&[IoSlice<'_>]> = group
            .iter()
            .map(|m| &pieces[2 * m.from..2 * m.to])
            .collect();
        let addrs: Vec<Option<SockaddrStorage>> = group
            .iter()
            .map(|m| {
                subs[sends[m.from].sub]
                    .udp_dest()
                    .map(SockaddrStorage::from)
            })
            .collect();
        let segment = key.1.unwrap_or(0);
        let cmsg = [ControlMessage::UdpGsoSegments(&segment)];
        let mut done = 0;
        while done < group.len() {
            let r = match key.1 {
                Some(_) => sendmmsg(
                    fd,
                    &mut gso,
                    &iovs[done..],
                    &addrs[done..],
                    cmsg,
                    MsgFlags::empty(),
                ),
                None => sendmmsg(
                    fd,
                    &mut plain,
                    &iovs[done..],
                    &addrs[done..],
                    [],
                    MsgFlags::empty(),
                ),
            }
            .map(|r| r.count());
            let sent = match r {
                Ok(n) if n > 0 => n,
                Err(Errno::EINTR) => continue,
                // A GSO message failed: its datagrams go one by one, and if the route of this
                // client cannot take GSO (a device without checksum offload, a tunnel, an MTU
                // under our datagrams), from now on all of them.
                Err(e) if key.1.is_some() => {
                    let m = &group[done];
                    let sub = &subs[sends[m.from].sub];
                    if matches!(
                        e,
                        Errno::EIO | Errno::EINVAL | Errno::EMSGSIZE | Errno::EOPNOTSUPP
                    ) && !sub.gso_refused.swap(true, Ordering::Relaxed)
                    {
                        debug!(client = sub.id, dest = ?sub.udp_dest(), "UDP GSO refused ({e}): sending datagrams one by one");
                    }
                    // At once, so that the client's datagrams keep their order.
                    for i in m.from..m.to {
                        let d = &sends[i];
                        let dest = addrs[done].as_ref();
                        let sent = dest.is_some_and(|dest| {
                            sendmsg(
                                fd,
                                &pieces[2 * i..2 * i + 2],
                                &[],
                                MsgFlags::empty(),
                                Some(dest),
                            )
                            .inspect_err(|e| debug!(client = sub.id, "RTP send failed: {e}"))
                            .is_ok()
                        });
                        sub.account(packets[d.packet].bytes.len(), sent);
                    }
                    done += 1;
                    continue;
                }
                // The message at `done` failed (e.g. no route to that client): count its
                // datagrams as dropped and go on with the next.
                other => {
                    let m = &group[done];
                    if let Err(e) = other {
                        let sub = &subs[sends[m.from].sub];
                        debug!(client = sub.id, dest = ?sub.udp_dest(), "RTP send failed: {e}");
                    }
                    account(m, false);
                    done += 1;
                    continue;
                }
            };
            for m in &group[done..done + sent] {
                account(m, true);
            }
            done += sent;
        }
    }
}

/// Sends `sends` on `sock`, one `send_to` per datagram (systems without `sendmmsg`).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_udp(
    sock: &UdpSocket,
    subs: &[Arc<Subscriber>],
    packets: &[&OutPacket],
    sends: &mut [UdpSend],
) {
    let mut scratch = Vec::with_capacity(1500);
    for d in sends {
        let bytes = &packets[d.packet].bytes;
        let (h, n) = header_with_seq(bytes, d.seq);
        scratch.clear();
        scratch.extend_from_slice(&h[..n]);
        scratch.extend_from_slice(&bytes[n..]);
        let sub = &subs[d.sub];
        let sent = match sub.udp_dest() {
            Some(dest) => match sock.send_to(&scratch, dest) {
                Ok(_) => true,
                Err(e) => {
                    debug!(client = sub.id, %dest, "RTP send failed: {e}");
                    false
                }
            },
            None => false,
        };
        sub.account(bytes.len(), sent);
    }
}

/// The sockets a track sends from: one pair per address family.
pub struct TrackSockets {
    pub rtp_v4: Option<Arc<UdpSocket>>,
    pub rtcp_v4: Option<Arc<UdpSocket>>,
    pub rtp_v6: Option<Arc<UdpSocket>>,
    pub rtcp_v6: Option<Arc<UdpSocket>>,
}

impl TrackSockets {
    fn rtcp_for(&self, dest: &SocketAddr) -> Option<&UdpSocket> {
        if dest.is_ipv4() {
            self.rtcp_v4.as_deref()
        } else {
            self.rtcp_v6.as_deref()
        }
    }

    /// The `server_port=a-b` pair for a client of this address family.
    pub fn server_ports(&self, v6: bool) -> Option<(u16, u16)> {
        let (rtp, rtcp) = if v6 {
            (self.rtp_v6.as_ref()?, self.rtcp_v6.as_ref()?)
        } else {
            (self.rtp_v4.as_ref()?, self.rtcp_v4.as_ref()?)
        };
        Some((
            rtp.local_addr().ok()?.port(),
            rtcp.local_addr().ok()?.port(),
        ))
    }
}

/// Static description of a track, for SDP and RTP headers.
#[derive(Clone, Debug)]
pub struct TrackInfo {
    pub index: usize,
    pub kind: TrackKind,
    pub payload_type: u8,
    pub clock_rate: u32,
    pub ssrc: Ssrc,
    pub cname: String,
    /// The SDP offers RTCP feedback (`RTP/AVPF`, NACK, PLI, FIR) for this track and its sent
    /// packets are kept for retransmission.
    pub nack: bool,
    /// The RFC 4588 `rtx` payload type associated with this track's, if any.
    pub rtx_payload_type: Option<u8>,
}

impl Recent {
    /// Whether the kept keyframe is young enough, at `now`, to start a joiner from (at most
    /// `window` old).
    fn young(&self, now: Instant, window: Duration) -> bool {
        self.keyframe_at
            .is_some_and(|t| now.saturating_duration_since(t) <= window)
    }

    /// Keeps an access unit: a keyframe starts the list again, anything else extends it while
    /// the keyframe is young enough to start a joiner from (and there is room).
    fn keep(&mut self, packets: &[OutPacket], now: Instant, window: Duration) {
        if packets.first().is_some_and(|p| p.starts_keyframe) {
            self.packets.clear();
            self.packets.extend_from_slice(packets);
            self.keyframe_at = Some(now);
        } else if self.keyframe_at.is_some() {
            if self.young(now, window) && self.packets.len() + packets.len() <= MAX_RECENT_PACKETS {
                self.packets.extend_from_slice(packets);
            } else {
                *self = Recent::default();
            }
        }
    }
}

/// A share of a track's subscribers and the fan-out state that goes with them.
#[derive(Default)]
struct Shard {
    subscribers: Mutex<Subscribers>,
    recent: Mutex<Recent>,
}

impl Shard {
    fn set(&self) -> MutexGuard<'_, Subscribers> {
        // Held only to clone or swap an `Arc`; a panic there would be a bug in this file.
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current subscribers, to send to without holding any lock.
    fn snapshot(&self) -> Subscribers {
        self.set().clone()
    }

    /// Takes `id` out of the set, if it is there.
    fn remove(&self, id: u64) -> Option<Arc<Subscriber>> {
        let mut set = self.set();
        let gone = set.iter().find(|s| s.id == id)?.clone();
        let next: Subscribers = set.iter().filter(|s| s.id != id).cloned().collect();
        *set = next;
        Some(gone)
    }
}

/// The subscriber set, shared copy-on-write (see the module doc).
type Subscribers = Arc<[Arc<Subscriber>]>;

/// One track: its description, its sockets, its subscribers and the RTP clock mapping.
pub struct Track {
    pub info: TrackInfo,
    pub sockets: TrackSockets,
    /// The subscribers, split in shards, each served by its own fan-out thread.
    shards: Vec<Shard>,
    clock: RtpClock,
    /// Sender counters for RTCP SR (RFC 3550 §6.4.1).
    packet_count: AtomicU32,
    octet_count: AtomicU32,
    keyframe_wanted: AtomicBool,
    /// Sent packets, for retransmission (tracks with [`TrackInfo::nack`] only).
    history: Mutex<History>,
    /// When the encoder last had to drop a frame because this track's fan-out was behind, in
    /// ms after `created` (0: never).
    dropped_at_ms: AtomicU64,
    created: Instant,
    /// Sees every access unit once, as it is counted (the recorder).
    tap: std::sync::OnceLock<Tap>,
    /// How old the kept keyframe may be to start a joiner from ([`KEYFRAME_MIN_GAP`] unless
    /// [`Track::with_recent_window`]).
    recent_window: Duration,
}

/// A watcher of a track's access units ([`Track::set_tap`]); must never block.
pub type Tap = Box<dyn Fn(&[OutPacket]) + Send + Sync>;

impl Track {
    pub fn new(info: TrackInfo, sockets: TrackSockets, wall_epoch: SystemTime) -> Self {
        let clock = RtpClock {
            rtp_base: rand::random(),
            clock_rate: info.clock_rate,
            wall_epoch,
        };
        Self {
            info,
            sockets,
            shards: vec![Shard::default()],
            clock,
            packet_count: AtomicU32::new(0),
            octet_count: AtomicU32::new(0),
            keyframe_wanted: AtomicBool::new(false),
            history: Mutex::new(History::default()),
            dropped_at_ms: AtomicU64::new(0),
            created: Instant::now(),
            tap: std::sync::OnceLock::new(),

            recent_window: KEYFRAME_MIN_GAP,
        }
    }

    /// Joiners may start from a kept keyframe up to `window` old: for a source that makes no
    /// keyframe on request (a publisher), a joiner then starts at once from the last one
    /// instead of waiting up to a whole keyframe interval.
    pub fn with_recent_window(mut self, window: Duration) -> Self {
        self.recent_window = window;
        self
    }

    /// [`Track::with_recent_window`] on a built track.
    pub fn set_recent_window(&mut self, window: Duration) {
        self.recent_window = window;
    }

    /// The same track served by `n` fan-out threads (at least one), each with its own share
    /// of the subscribers.
    pub fn with_shards(mut self, n: usize) -> Self {
        self.shards = (0..n.max(1)).map(|_| Shard::default()).collect();
        self
    }

    /// Hands every access unit from now on to `tap` too (once per track; a second is ignored).
    pub fn set_tap(&self, tap: Tap) {
        let _ = self.tap.set(tap);
    }

    /// How many fan-out threads serve this track.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The encoder could not hand a frame to the fan-out (its queue was full): noted, so that
    /// new viewers are refused for a while ([`Track::overloaded_at`]).
    pub fn note_dropped_frame(&self) {
        let ms = self.created.elapsed().as_millis().max(1) as u64;
        self.dropped_at_ms.store(ms, Ordering::Relaxed);
    }

    /// Whether the fan-out dropped a frame within [`OVERLOAD_MEMORY`] before `now`.
    pub fn overloaded_at(&self, now: Instant) -> bool {
        let at = self.dropped_at_ms.load(Ordering::Relaxed);
        at != 0
            && now.saturating_duration_since(self.created)
                <= Duration::from_millis(at) + OVERLOAD_MEMORY
    }

    /// The mapping from wall-clock time to this track's RTP timestamps.
    pub fn clock(&self) -> RtpClock {
        self.clock
    }

    /// RTP timestamp of a wall-clock instant on this track's media timeline. Capture times of
    /// video and audio map through the same wall clock, which is what lets players sync them.
    pub fn rtp_timestamp_at(&self, t: SystemTime) -> u32 {
        self.clock.timestamp_at(t)
    }

    /// Is a newly joined video client waiting for a keyframe?
    pub fn keyframe_requested(&self) -> bool {
        self.keyframe_wanted.load(Ordering::Acquire)
    }

    /// A client lost part of a picture (RTCP PLI/FIR): ask the encoder for a keyframe. The
    /// pipeline's [`KeyframeLimiter`] bounds how often one is made, whoever asks.
    pub fn request_keyframe(&self) {
        if self.info.kind == TrackKind::Video {
            self.keyframe_wanted.store(true, Ordering::Release);
        }
    }

    /// The encoder produced a keyframe: nobody is waiting any more.
    pub fn clear_keyframe_request(&self) {
        self.keyframe_wanted.store(false, Ordering::Release);
    }

    /// Every current subscriber, of every shard.
    fn snapshot(&self) -> Vec<Arc<Subscriber>> {
        self.shards
            .iter()
            .flat_map(|s| s.snapshot().to_vec())
            .collect()
    }

    /// Adds a playing client whose stream starts at a keyframe with `initial_seq`, the `seq`
    /// announced in its RTP-Info; replaces an earlier subscription of `id`. With `from_recent`
    /// it may start at the recent keyframe (see the module doc), else at the next one.
    pub fn subscribe(
        &self,
        id: u64,
        sink: Sink,
        initial_seq: u16,
        from_recent: bool,
        retransmission: Retransmission,
    ) -> Arc<SinkStats> {
        self.subscribe_secure(id, sink, initial_seq, from_recent, retransmission, None)
    }

    /// [`Track::subscribe`], with everything sent to the client SRTP-protected (`RTP/SAVP(F)`)
    /// when `srtp` is given: a new context ([`SrtpState::new`]), or the one a paused
    /// subscription left ([`Track::unsubscribe_srtp`]), whose rollover counter the client's
    /// context has too.
    pub fn subscribe_secure(
        &self,
        id: u64,
        sink: Sink,
        initial_seq: u16,
        from_recent: bool,
        retransmission: Retransmission,
        srtp: Option<SrtpState>,
    ) -> Arc<SinkStats> {
        let stats = Arc::new(SinkStats::default());
        let sub = Arc::new(Subscriber {
            id,
            sink,
            srtp: srtp.map(|s| (s.key, Mutex::new(s.context))),
            seq: Mutex::new(SeqState {
                initial_seq,
                delta: None,
                last: None,
                removed: false,
                from_recent,
                retransmission,
            }),
            packets: AtomicU32::new(0),
            octets: AtomicU32::new(0),
            stats: stats.clone(),
            gso_refused: AtomicBool::new(false),
        });
        // An earlier subscription of `id` goes, wherever it is; the new one joins the shard
        // with the fewest subscribers.
        let mut old: Vec<Arc<Subscriber>> = Vec::new();
        for shard in &self.shards {
            old.extend(shard.remove(id));
        }
        let least = self
            .shards
            .iter()
            .min_by_key(|s| s.snapshot().len())
            .expect("a track has at least one shard");
        {
            let mut set = least.set();
            let next: Subscribers = set.iter().cloned().chain(std::iter::once(sub)).collect();
            *set = next;
        }
        for s in old {
            s.seq().removed = true;
        }
        self.request_keyframe();
        stats
    }

    /// Removes a client; returns the sequence number a resumed stream should continue from.
    pub fn unsubscribe(&self, id: u64) -> Option<u16> {
        self.unsubscribe_srtp(id).map(|(seq, _)| seq)
    }

    /// [`Track::unsubscribe`], with the SRTP state of a secure client: for its BYE, and for a
    /// resumed stream to continue with (the same key, the same rollover counter).
    pub fn unsubscribe_srtp(&self, id: u64) -> Option<(u16, Option<SrtpState>)> {
        let gone = self.shards.iter().find_map(|s| s.remove(id))?;
        let resume = {
            let mut seq = gone.seq();
            seq.removed = true;
            seq.last.map_or(seq.initial_seq, |l| l.wrapping_add(1))
        };
        let srtp = gone.srtp.as_ref().map(|(key, ctx)| SrtpState {
            key: *key,
            context: ctx.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        });
        Some((resume, srtp))
    }

    pub fn subscriber_count(&self) -> usize {
        self.snapshot().len()
    }

    /// Keeps an access unit handed to the fan-out at `now` for retransmission (a no-op on a
    /// track without NACK).
    pub fn remember(&self, au: &Arc<[OutPacket]>, now: Instant) {
        if self.info.nack {
            let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
            h.push(au.clone(), now);
        }
    }

    /// Sends subscriber `client` again the packets it numbers `seqs` (its own numbering, from
    /// its NACK), as its subscription's [`Retransmission`] says: the original packet with its
    /// number, or an RFC 4588 RTX packet on its own SSRC. Numbers it was never sent (before
    /// its first packet, after its last) and packets older than [`HISTORY`] are skipped, as
    /// is a client on TCP. Returns how many were sent.
    pub fn retransmit(&self, client: u64, seqs: &[u16], now: Instant) -> usize {
        let Some(sub) = self
            .shards
            .iter()
            .find_map(|s| s.set().iter().find(|s| s.id == client).cloned())
        else {
            return 0;
        };
        let Sink::Udp { rtp: dest, .. } = sub.sink else {
            return 0;
        };
        let sock = if dest.is_ipv4() {
            self.sockets.rtp_v4.as_deref()
        } else {
            self.sockets.rtp_v6.as_deref()
        };
        let Some(sock) = sock else {
            return 0;
        };
        let mut datagrams: Vec<Vec<u8>> = Vec::new();
        {
            let mut st = sub.seq();
            let (Some(delta), Some(last), false) = (st.delta, st.last, st.removed) else {
                return 0;
            };
            let sent_span = last.wrapping_sub(st.initial_seq);
            let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
            for &seq in seqs {
                if seq.wrapping_sub(st.initial_seq) > sent_span {
                    continue;
                }
                let Some(p) = history.get(seq.wrapping_sub(delta), now) else {
                    continue;
                };
                let mut out = Vec::with_capacity(p.bytes.len() + 2);
                match &mut st.retransmission {
                    Retransmission::None => return 0,
                    Retransmission::Original => {
                        if p.bytes.len() < RTP_FIXED_HEADER {
                            continue;
                        }
                        let (h, n) = header_with_seq(&p.bytes, seq);
                        out.extend_from_slice(&h[..n]);
                        out.extend_from_slice(&p.bytes[n..]);
                    }
                    Retransmission::Rtx {
                        payload_type,
                        ssrc,
                        initial_seq,
                    } => {
                        let header = RtxHeader {
                            payload_type: *payload_type,
                            sequence: *initial_seq,
                            ssrc: *ssrc,
                        };
                        if rtx::wrap_bytes(&p.bytes, seq, header, &mut out).is_none() {
                            continue;
                        }
                        // `initial_seq` is the next RTX number from here on.
                        *initial_seq = initial_seq.wrapping_add(1);
                    }
                }
                datagrams.extend(sub.protect_rtp(out));
            }
        }
        let mut sent = 0;
        for d in &datagrams {
            match sock.send_to(d, dest) {
                Ok(_) => sent += 1,
                Err(e) => debug!(client, %dest, "retransmission failed: {e}"),
            }
        }
        sub.stats
            .packets_retransmitted
            .fetch_add(sent as u64, Ordering::Relaxed);
        sent
    }

    /// Sends one access unit's packets to every subscriber.
    ///
    /// UDP datagrams are not copied per client: each is sent as two pieces, the 12 header
    /// bytes with that client's sequence number and the payload shared by all. On Linux each
    /// client's datagrams of the access unit go as few GSO messages (one per run of
    /// equal-sized fragments), up to [`SEND_BATCH`] datagrams per `sendmmsg` call, client by
    /// client ([`plan_messages`]).
    pub fn deliver(&self, packets: &[OutPacket]) {
        self.deliver_at(packets, Instant::now());
    }

    /// [`Track::deliver`] at `now` (the fan-out thread's clock; tests pass their own), every
    /// shard in turn on this thread.
    pub fn deliver_at(&self, packets: &[OutPacket], now: Instant) {
        self.count(packets);
        for shard in 0..self.shards.len() {
            self.deliver_shard(shard, packets, now);
        }
    }

    /// Payload octets of the media sent so far (a wrapping count, as in sender reports).
    pub fn octets_sent(&self) -> u32 {
        self.octet_count.load(Ordering::Relaxed)
    }

    /// Counts an access unit for the sender reports (RFC 3550 §6.4.1): once per access unit,
    /// whatever the number of shards. The tap ([`Track::set_tap`]) sees it here.
    pub fn count(&self, packets: &[OutPacket]) {
        if let Some(tap) = self.tap.get() {
            tap(packets);
        }
        for p in packets {
            self.packet_count.fetch_add(1, Ordering::Relaxed);
            self.octet_count
                .fetch_add(p.bytes.len().saturating_sub(12) as u32, Ordering::Relaxed);
        }
    }

    /// Sends the plain UDP datagrams `v4` and `v6` (emptied) on their family's socket, or
    /// counts them dropped where the server has none.
    fn send_udp_all(
        &self,
        subs: &[Arc<Subscriber>],
        all: &[&OutPacket],
        v4: &mut Vec<UdpSend>,
        v6: &mut Vec<UdpSend>,
    ) {
        for (sends, sock) in [
            (v4, self.sockets.rtp_v4.as_deref()),
            (v6, self.sockets.rtp_v6.as_deref()),
        ] {
            if sends.is_empty() {
                continue;
            }
            match sock {
                Some(sock) => send_udp(sock, subs, all, sends),
                None => {
                    for d in sends.iter() {
                        subs[d.sub].account(all[d.packet].bytes.len(), false);
                    }
                }
            }
            sends.clear();
        }
    }

    /// Sends an access unit to the subscribers of shard `shard` (the work of that shard's
    /// fan-out thread; the access unit was [`Track::count`]ed once before).
    pub fn deliver_shard(&self, shard: usize, packets: &[OutPacket], now: Instant) {
        let Some(shard) = self.shards.get(shard) else {
            return;
        };
        let subs = shard.snapshot();
        // Only this shard's fan-out thread takes it: never contended.
        let mut recent = shard.recent.lock().unwrap_or_else(|p| p.into_inner());
        // Joiners get the recent packets first; everyone else only the new ones.
        let cached: &[OutPacket] = if recent.young(now, self.recent_window) {
            &recent.packets
        } else {
            &[]
        };
        let all: Vec<&OutPacket> = cached.iter().chain(packets).collect();
        let server_seqs: Vec<Option<u16>> = all.iter().map(|p| seq_of(&p.bytes)).collect();
        // Each client's numbers for these packets (`None`: not sent to it), sub-major.
        let n = all.len();
        let mut seqs: Vec<Option<u16>> = vec![None; subs.len() * n];
        for (si, sub) in subs.iter().enumerate() {
            let mut st = sub.seq();
            if st.removed {
                continue;
            }
            let from = if st.delta.is_some() || !st.from_recent {
                cached.len()
            } else {
                0
            };
            for (pi, p) in all.iter().enumerate().skip(from) {
                let Some(server_seq) = server_seqs[pi] else {
                    continue;
                };
                let delta = match st.delta {
                    Some(d) => d,
                    None if p.starts_keyframe => {
                        let d = st.initial_seq.wrapping_sub(server_seq);
                        st.delta = Some(d);
                        d
                    }
                    None => continue,
                };
                let seq = server_seq.wrapping_add(delta);
                st.last = Some(seq);
                seqs[si * n + pi] = Some(seq);
            }
        }
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        // Secure UDP subscribers' datagrams, each encrypted for its client: (subscriber, bytes).
        let mut secure: Vec<(usize, Vec<u8>)> = Vec::new();
        // Client by client; the UDP datagrams go out whenever a few thousand are ready, so
        // the scratch memory stays the same whatever the number of clients.
        for (si, sub) in subs.iter().enumerate() {
            if v4.len() + v6.len() >= UDP_FLUSH_AT {
                self.send_udp_all(&subs, &all, &mut v4, &mut v6);
            }
            for (pi, p) in all.iter().enumerate() {
                let Some(seq) = seqs[si * n + pi] else {
                    continue;
                };
                if sub.srtp.is_some() {
                    let (h, hn) = header_with_seq(&p.bytes, seq);
                    let mut clear = Vec::with_capacity(p.bytes.len());
                    clear.extend_from_slice(&h[..hn]);
                    clear.extend_from_slice(&p.bytes[hn..]);
                    let Some(protected) = sub.protect_rtp(clear) else {
                        sub.account(p.bytes.len(), false);
                        continue;
                    };
                    match &sub.sink {
                        Sink::Udp { .. } => secure.push((si, protected)),
                        Sink::Tcp {
                            tx, rtp_channel, ..
                        } => {
                            let mut frame = Vec::with_capacity(protected.len() + 4);
                            write_interleaved(*rtp_channel, &protected, &mut frame);
                            sub.account(p.bytes.len(), tx.try_send(frame).is_ok());
                        }
                    }
                    continue;
                }
                match &sub.sink {
                    Sink::Udp { rtp, .. } => {
                        let d = UdpSend {
                            sub: si,
                            packet: pi,
                            seq,
                        };
                        if rtp.is_ipv4() {
                            v4.push(d);
                        } else {
                            v6.push(d);
                        }
                    }
                    Sink::Tcp {
                        tx, rtp_channel, ..
                    } => {
                        let mut frame = Vec::with_capacity(p.bytes.len() + 4);
                        write_interleaved(*rtp_channel, &p.bytes, &mut frame);
                        // `seq_of` succeeded, so the RTP header is there.
                        frame[6..8].copy_from_slice(&seq.to_be_bytes());
                        sub.account(p.bytes.len(), tx.try_send(frame).is_ok());
                    }
                }
            }
        }
        self.send_udp_all(&subs, &all, &mut v4, &mut v6);
        for (si, bytes) in secure {
            let sub = &subs[si];
            let Some(dest) = sub.udp_dest() else { continue };
            let sock = if dest.is_ipv4() {
                self.sockets.rtp_v4.as_deref()
            } else {
                self.sockets.rtp_v6.as_deref()
            };
            // Counted without the SRTP tag, as the sender reports count payload octets.
            let len = bytes.len().saturating_sub(srtp::TAG_LEN);
            let sent = sock.is_some_and(|s| match s.send_to(&bytes, dest) {
                Ok(_) => true,
                Err(e) => {
                    debug!(client = sub.id, %dest, "SRTP send failed: {e}");
                    false
                }
            });
            sub.account(len, sent);
        }
        if self.info.kind == TrackKind::Video {
            recent.keep(packets, now, self.recent_window);
        }
    }

    /// Builds an RTCP compound (SR + SDES CNAME, RFC 3550 §6.1) for the wall-clock time `now`,
    /// with the per-client counters of subscriber `packets`/`octets`.
    fn sender_report(&self, now: SystemTime, packets: u32, octets: u32) -> Vec<u8> {
        let since_epoch = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let sr = SenderReport {
            ssrc: self.info.ssrc,
            ntp: NtpTimestamp::from_unix(since_epoch),
            rtp_timestamp: self.rtp_timestamp_at(now),
            packet_count: packets,
            octet_count: octets,
            reports: Vec::new(),
        };
        let mut out = Vec::with_capacity(128);
        rtcp::write_compound(
            &[
                RtcpPacket::SenderReport(sr),
                RtcpPacket::Sdes(Sdes::cname(self.info.ssrc, &self.info.cname)),
            ],
            &mut out,
        );
        out
    }

    /// Sends an RTCP sender report to every subscriber (or only to `only`), stamped with the
    /// wall-clock `now`.
    pub fn send_sender_reports(&self, now: SystemTime, only: Option<u64>) {
        for sub in self.snapshot().iter() {
            if only.is_some_and(|id| id != sub.id) {
                continue;
            }
            let packets = sub.packets.load(Ordering::Relaxed);
            let octets = sub.octets.load(Ordering::Relaxed);
            // A text track is silent for long spells: it reports only once it has sent
            // something (RFC 3550 §6.4: SRs are for senders). An SR on a track with no data
            // yet made ffmpeg re-base its other streams' timestamps (non-monotonic DTS).
            if self.info.kind == TrackKind::Text && packets == 0 {
                continue;
            }
            let report = self.sender_report(now, packets, octets);
            if let Some(report) = sub.protect_rtcp(&report) {
                send_rtcp(&self.sockets, &sub.sink, &report, sub.id);
            }
        }
    }

    /// Sends RTCP BYE to one client (on TEARDOWN).
    pub fn send_bye(&self, sink: &Sink, client: u64) {
        self.send_bye_srtp(sink, client, None);
    }

    /// [`Track::send_bye`], as SRTCP through `srtp` when given (a secure client's).
    pub fn send_bye_srtp(&self, sink: &Sink, client: u64, srtp: Option<&mut srtp::Context>) {
        let mut out = Vec::new();
        rtcp::write_compound(
            &[
                RtcpPacket::Sdes(Sdes::cname(self.info.ssrc, &self.info.cname)),
                RtcpPacket::Bye(rtcp::Bye {
                    ssrcs: vec![self.info.ssrc],
                    reason: Some("teardown".into()),
                }),
            ],
            &mut out,
        );
        let out = match srtp {
            None => out,
            Some(ctx) => match ctx.protect_rtcp(&out) {
                Some(p) => p,
                None => return,
            },
        };
        send_rtcp(&self.sockets, sink, &out, client);
    }
}

/// The SRTP state of a secure subscriber: its key, and the context with the rollover counter
/// and SRTCP index reached.
#[derive(Clone)]
pub struct SrtpState {
    pub key: SrtpMasterKey,
    pub context: srtp::Context,
}

impl SrtpState {
    pub fn new(key: SrtpMasterKey) -> Self {
        SrtpState {
            key,
            context: srtp::Context::new(&key.0, &key.1),
        }
    }
}

fn send_rtcp(sockets: &TrackSockets, sink: &Sink, data: &[u8], client: u64) {
    match sink {
        Sink::Udp { rtcp, .. } => {
            if let Some(sock) = sockets.rtcp_for(rtcp) {
                if let Err(e) = sock.send_to(data, rtcp) {
                    debug!(client, %rtcp, "RTCP send failed: {e}");
                }
            }
        }
        Sink::Tcp {
            tx, rtcp_channel, ..
        } => {
            let mut frame = Vec::with_capacity(data.len() + 4);
            write_interleaved(*rtcp_channel, data, &mut frame);
            let _ = tx.try_send(frame);
        }
    }
}

fn seq_of(packet: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]))
}

/// Sends sender reports on every track every `interval` (RFC 3550 §6.2: 5 s minimum for
/// small sessions; we send one to each client right after its first packets too).
pub async fn sender_report_loop(tracks: Vec<Arc<Track>>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = SystemTime::now();
        for t in &tracks {
            t.send_sender_reports(now, None);
        }
    }
}

/// Whether a forced keyframe may be produced now (at most one every `min_gap`).
#[derive(Debug)]
pub struct KeyframeLimiter {
    last: Option<Instant>,
    min_gap: Duration,
}

impl KeyframeLimiter {
    pub fn new(min_gap: Duration) -> Self {
        Self {
            last: None,
            min_gap,
        }
    }

    pub fn allow(&mut self, now: Instant) -> bool {
        if self
            .last
            .is_some_and(|l| now.saturating_duration_since(l) < self.min_gap)
        {
            return false;
        }
        self.last = Some(now);
        true
    }

    /// A keyframe came anyway (periodic IDR): restart the gap.
    pub fn note_keyframe(&mut self, now: Instant) {
        self.last = Some(now);
    }
}

/// Logs once if a track has been configured without any socket for a family.
pub fn warn_missing_family(info: &TrackInfo, v6: bool) {
    warn!(
        track = info.index,
        "no {} UDP socket for this track; clients of that family must use TCP",
        if v6 { "IPv6" } else { "IPv4" }
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn video_track() -> Track {
        let rtp = UdpSocket::bind("127.0.0.1:0").expect("loopback UDP");
        let rtcp = UdpSocket::bind("127.0.0.1:0").expect("loopback UDP");
        Track::new(
            TrackInfo {
                index: 0,
                kind: TrackKind::Video,
                payload_type: 96,
                clock_rate: 90_000,
                ssrc: Ssrc(0x1234_5678),
                cname: "test".into(),
                nack: true,
                rtx_payload_type: Some(100),
            },
            TrackSockets {
                rtp_v4: Some(Arc::new(rtp)),
                rtcp_v4: Some(Arc::new(rtcp)),
                rtp_v6: None,
                rtcp_v6: None,
            },
            SystemTime::now(),
        )
    }

    /// The server's own sequence numbers, as the encoder thread hands them out.
    struct ServerSeq(u16);

    /// An access unit of `n` packets numbered from `seq`.
    fn access_unit(seq: &mut ServerSeq, n: usize, keyframe: bool, fill: u8) -> Vec<OutPacket> {
        (0..n)
            .map(|i| {
                let mut bytes = Vec::new();
                seq.0 = seq.0.wrapping_add(1);
                livecast_proto::rtp::write(
                    &livecast_proto::rtp::RtpHeader {
                        marker: i + 1 == n,
                        payload_type: 96,
                        sequence: seq.0,
                        timestamp: 0,
                        ssrc: Ssrc(0x1234_5678),
                    },
                    &vec![fill.wrapping_add(i as u8); 100 + i * 300],
                    &mut bytes,
                );
                OutPacket {
                    bytes,
                    starts_keyframe: keyframe && i == 0,
                }
            })
            .collect()
    }

    fn receiver() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").expect("loopback UDP");
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        s
    }

    /// Reads `n` datagrams, then checks that no more are queued.
    fn recv_n(s: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
        let mut buf = [0u8; 2048];
        let mut out = Vec::new();
        for _ in 0..n {
            let len = s.recv(&mut buf).expect("a datagram within 2 s");
            out.push(buf[..len].to_vec());
        }
        s.set_nonblocking(true).expect("non-blocking");
        assert!(s.recv(&mut buf).is_err(), "more than {n} datagrams");
        out
    }

    #[test]
    fn clients_start_at_a_keyframe_with_their_own_sequence_numbers() {
        let track = video_track();
        let (a, b) = (receiver(), receiver());
        let sink = |s: &UdpSocket| Sink::Udp {
            rtp: s.local_addr().expect("bound"),
            rtcp: "127.0.0.1:9".parse().expect("address"),
        };
        let stats_a = track.subscribe(1, sink(&a), 1000, true, Retransmission::None);
        track.subscribe(2, sink(&b), 65534, true, Retransmission::None);
        let (tx, mut rx) = mpsc::channel(64);
        track.subscribe(
            3,
            Sink::Tcp {
                tx,
                rtp_channel: 4,
                rtcp_channel: 5,
            },
            7,
            true,
            Retransmission::None,
        );

        let mut seq = ServerSeq(65530);
        let p_frame = access_unit(&mut seq, 2, false, 1);
        let idr = access_unit(&mut seq, 3, true, 10);
        let p2 = access_unit(&mut seq, 2, false, 20);
        track.deliver(&p_frame); // nobody may start here
        track.deliver(&idr);
        track.deliver(&p2);
        let sent: Vec<&OutPacket> = idr.iter().chain(&p2).collect();

        for (sock, first) in [(&a, 1000u16), (&b, 65534)] {
            // The keyframe and the frame after it.
            let got = recv_n(sock, 5);
            for (i, (g, p)) in got.iter().zip(&sent).enumerate() {
                assert_eq!(seq_of(g), Some(first.wrapping_add(i as u16)));
                assert_eq!(g[..2], p.bytes[..2]);
                assert_eq!(g[4..], p.bytes[4..], "same header and payload for everyone");
            }
        }
        for (i, p) in sent.iter().enumerate() {
            let f = rx.try_recv().expect("a frame for the TCP client");
            assert_eq!(f[..2], [b'$', 4]);
            assert_eq!(usize::from(u16::from_be_bytes([f[2], f[3]])), p.bytes.len());
            assert_eq!(seq_of(&f[4..]), Some(7 + i as u16));
            assert_eq!(f[8..], p.bytes[4..]);
        }
        assert!(rx.try_recv().is_err());
        assert_eq!(stats_a.packets_sent.load(Ordering::Relaxed), 5);
        assert_eq!(stats_a.packets_dropped.load(Ordering::Relaxed), 0);
        // A later PLAY continues the numbering; a removed client gets nothing more.
        assert_eq!(track.unsubscribe(1), Some(1005));
        assert_eq!(track.unsubscribe(2), Some(3));
        assert_eq!(track.unsubscribe(3), Some(12));
        assert_eq!(track.unsubscribe(3), None);
        assert_eq!(track.subscriber_count(), 0);
        track.deliver(&access_unit(&mut seq, 1, true, 30));
        assert!(rx.try_recv().is_err());
        assert_eq!(stats_a.packets_sent.load(Ordering::Relaxed), 5);
    }

    /// The TCP sink of a test client and what it receives.
    fn tcp_client(track: &Track, id: u64, initial_seq: u16) -> mpsc::Receiver<Vec<u8>> {
        let (tx, rx) = mpsc::channel(256);
        let sink = Sink::Tcp {
            tx,
            rtp_channel: 0,
            rtcp_channel: 1,
        };
        track.subscribe(id, sink, initial_seq, true, Retransmission::None);
        rx
    }

    /// Everything queued for a TCP client: (its sequence number, the payload's first byte).
    fn frames(rx: &mut mpsc::Receiver<Vec<u8>>) -> Vec<(u16, u8)> {
        let mut v = Vec::new();
        while let Ok(f) = rx.try_recv() {
            v.push((seq_of(&f[4..]).expect("an RTP packet"), f[16]));
        }
        v
    }

    /// A secure TCP client whose SRTP packets are decrypted as they come, as a player would
    /// with one context for the whole session: the packets it could read, and how many it
    /// could not.
    fn read_srtp(rx: &mut mpsc::Receiver<Vec<u8>>, ctx: &mut srtp::Context) -> (usize, usize) {
        let (mut ok, mut bad) = (0, 0);
        while let Ok(f) = rx.try_recv() {
            match ctx.unprotect_rtp(&f[4..]) {
                Ok(_) => ok += 1,
                Err(_) => bad += 1,
            }
        }
        (ok, bad)
    }

    #[test]
    fn a_secure_client_resumed_after_its_numbers_wrapped_still_decrypts() {
        let key: SrtpMasterKey = ([7; 16], [8; 14]);
        let mut player = srtp::Context::new(&key.0, &key.1);
        let track = video_track();
        let (tx, mut rx) = mpsc::channel(4096);
        let sink = || Sink::Tcp {
            tx: tx.clone(),
            rtp_channel: 0,
            rtcp_channel: 1,
        };
        // Starting 500 numbers before the wrap: the rollover counter becomes 1 on the way.
        let mut seq = ServerSeq(0);
        let srtp = Some(SrtpState::new(key));
        track.subscribe_secure(1, sink(), 65_036, true, Retransmission::None, srtp);
        for i in 0..100 {
            track.deliver(&access_unit(&mut seq, 10, i == 0, 0));
        }
        assert_eq!(read_srtp(&mut rx, &mut player), (1000, 0));
        // PAUSE: the state is kept; PLAY: the numbering goes on under the same counter.
        let (resume, state) = track.unsubscribe_srtp(1).expect("subscribed");
        let state = state.expect("a secure subscriber");
        assert_eq!(resume, 500, "65,036 + 1,000, wrapped");
        let fresh = SrtpState::new(key);
        track.subscribe_secure(1, sink(), resume, false, Retransmission::None, Some(state));
        track.deliver(&access_unit(&mut seq, 10, true, 0));
        assert_eq!(read_srtp(&mut rx, &mut player), (10, 0));
        // What a fresh context (rollover counter 0) would have sent: unreadable.
        let (resume, _) = track.unsubscribe_srtp(1).expect("subscribed");
        track.subscribe_secure(1, sink(), resume, false, Retransmission::None, Some(fresh));
        track.deliver(&access_unit(&mut seq, 10, true, 0));
        assert_eq!(read_srtp(&mut rx, &mut player), (0, 10));
    }

    #[test]
    fn a_secure_client_gets_its_bye_as_srtcp() {
        let key: SrtpMasterKey = ([7; 16], [8; 14]);
        let track = video_track();
        let (tx, mut rx) = mpsc::channel(16);
        let sink = Sink::Tcp {
            tx,
            rtp_channel: 0,
            rtcp_channel: 1,
        };
        let srtp = Some(SrtpState::new(key));
        track.subscribe_secure(1, sink.clone(), 10, true, Retransmission::None, srtp);
        let (_, state) = track.unsubscribe_srtp(1).expect("subscribed");
        let mut state = state.expect("secure");
        track.send_bye_srtp(&sink, 1, Some(&mut state.context));
        let frame = rx.try_recv().expect("a BYE");
        assert_eq!(frame[1], 1, "on the RTCP channel");
        let mut player = srtp::Context::new(&key.0, &key.1);
        let clear = player
            .unprotect_rtcp(&frame[4..])
            .expect("SRTCP of the key");
        let packets = livecast_proto::rtcp::parse_compound(&clear).expect("RTCP");
        assert!(packets.iter().any(|p| matches!(p, RtcpPacket::Bye(_))));
        // Sent in clear, it would be refused by the player's context.
        track.send_bye(&sink, 1);
        let frame = rx.try_recv().expect("a BYE");
        assert!(player.unprotect_rtcp(&frame[4..]).is_err());
    }

    #[test]
    fn a_late_joiner_starts_at_the_recent_keyframe_at_once() {
        let track = video_track();
        let t0 = Instant::now();
        let frame = Duration::from_millis(33);
        let mut seq = ServerSeq(100);
        let mut early = tcp_client(&track, 1, 5000);
        track.deliver_at(&access_unit(&mut seq, 2, true, 10), t0);
        track.deliver_at(&access_unit(&mut seq, 1, false, 20), t0 + frame);
        track.deliver_at(&access_unit(&mut seq, 1, false, 30), t0 + frame * 2);
        assert_eq!(frames(&mut early).len(), 4);
        // 300 ms after the keyframe, a joiner: its first packets are that keyframe and what
        // followed, numbered from its RTP-Info, sent with the next frame (not 1 s later).
        let mut late = tcp_client(&track, 2, 900);
        track.deliver_at(&access_unit(&mut seq, 1, false, 40), t0 + frame * 9);
        assert_eq!(
            frames(&mut late),
            [(900, 10), (901, 11), (902, 20), (903, 30), (904, 40)]
        );
        assert_eq!(
            frames(&mut early),
            [(5004, 40)],
            "the others get only what is new"
        );
        // Once the keyframe is older than the gap, a joiner waits for the one it asked for
        // (the limiter lets it through: no keyframe for that long).
        let mut later = tcp_client(&track, 3, 70);
        assert!(track.keyframe_requested());
        track.deliver_at(
            &access_unit(&mut seq, 1, false, 50),
            t0 + KEYFRAME_MIN_GAP * 2,
        );
        assert!(frames(&mut later).is_empty());
        track.deliver_at(
            &access_unit(&mut seq, 1, true, 60),
            t0 + KEYFRAME_MIN_GAP * 2 + frame,
        );
        assert_eq!(frames(&mut later), [(70, 60)]);
    }

    #[test]
    fn a_crowd_of_joiners_makes_at_most_one_keyframe_per_gap() {
        // The encoder's side: a keyframe when one is wanted and the limiter allows it.
        let track = video_track();
        let mut limiter = KeyframeLimiter::new(KEYFRAME_MIN_GAP);
        let t0 = Instant::now();
        let frame = Duration::from_millis(33);
        let mut seq = ServerSeq(0);
        let mut keyframes = Vec::new();
        let mut clients = Vec::new();
        // 100 viewers join within one second, one every 10 ms, while the stream runs.
        for f in 0..60u32 {
            let now = t0 + frame * f;
            while clients.len() < 100
                && t0 + Duration::from_millis(10) * clients.len() as u32 <= now
            {
                let id = clients.len() as u64 + 1;
                clients.push(tcp_client(&track, id, 0));
            }
            let key = f == 0 || (track.keyframe_requested() && limiter.allow(now));
            if key {
                if f == 0 {
                    limiter.note_keyframe(now);
                }
                track.clear_keyframe_request();
                keyframes.push(now - t0);
            }
            track.deliver_at(&access_unit(&mut seq, 1, key, f as u8), now);
        }
        // The start-up keyframe, then at most one more per 500 ms, whoever asked.
        assert!(keyframes.len() <= 1 + 2, "{keyframes:?}");
        for w in keyframes.windows(2) {
            assert!(w[1] - w[0] >= KEYFRAME_MIN_GAP, "{keyframes:?}");
        }
        // And every viewer's first packet was a keyframe, at most one frame after it joined.
        for (i, rx) in clients.iter_mut().enumerate() {
            let got = frames(rx);
            let joined = Duration::from_millis(10) * i as u32;
            let first_frame = (joined.as_nanos().div_ceil(frame.as_nanos())) as u8;
            assert!(!got.is_empty(), "viewer {i} got nothing");
            let first = got[0].1;
            assert!(
                keyframes
                    .iter()
                    .any(|k| (k.as_nanos() / frame.as_nanos()) as u8 == first),
                "viewer {i} starts at frame {first}, not a keyframe"
            );
            // Its stream then runs without a gap up to the newest frame.
            assert_eq!(got.last().unwrap().1, 59, "viewer {i}");
            assert!(got.windows(2).all(|w| w[1].0 == w[0].0.wrapping_add(1)));
            assert!(first <= first_frame, "viewer {i} waited");
        }
    }

    #[test]
    fn shards_send_every_subscriber_the_same_stream_from_their_own_threads() {
        let track = video_track().with_shards(3);
        let mut clients: Vec<_> = (0..9)
            .map(|i| tcp_client(&track, i, (i as u16) * 1000))
            .collect();
        // Spread evenly: three a shard.
        for shard in &track.shards {
            assert_eq!(shard.snapshot().len(), 3);
        }
        let mut seq = ServerSeq(60_000);
        let aus: Vec<Vec<OutPacket>> = (0..40)
            .map(|f| access_unit(&mut seq, 1 + f % 3, f % 10 == 0, f as u8))
            .collect();
        // Each shard's thread sends every access unit to its own subscribers, concurrently.
        let now = Instant::now();
        std::thread::scope(|scope| {
            for shard in 0..3 {
                let (track, aus) = (&track, &aus);
                scope.spawn(move || {
                    for au in aus {
                        track.deliver_shard(shard, au, now);
                    }
                });
            }
        });
        let streams: Vec<Vec<Vec<u8>>> = clients
            .iter_mut()
            .map(|rx| std::iter::from_fn(|| rx.try_recv().ok()).collect())
            .collect();
        let expected: Vec<&OutPacket> = aus.iter().flatten().collect();
        for (i, stream) in streams.iter().enumerate() {
            assert_eq!(stream.len(), expected.len(), "client {i}");
            for (k, (frame, p)) in stream.iter().zip(&expected).enumerate() {
                // Its own numbering, from its RTP-Info, without a gap...
                assert_eq!(
                    seq_of(&frame[4..]),
                    Some((i as u16 * 1000).wrapping_add(k as u16))
                );
                // ...and byte for byte the same packet as everyone else's.
                assert_eq!(frame[4..6], p.bytes[..2]);
                assert_eq!(frame[8..], p.bytes[4..]);
            }
        }
        // A second subscription of the same client replaces the first, in whatever shard.
        tcp_client(&track, 4, 7);
        assert_eq!(track.subscriber_count(), 9);
        assert_eq!(track.unsubscribe(4), Some(7));
        assert_eq!(track.subscriber_count(), 8);
    }

    #[test]
    fn a_removed_subscriber_in_a_snapshot_gets_no_more_numbers() {
        let track = video_track();
        let (tx, mut rx) = mpsc::channel(64);
        let sink = Sink::Tcp {
            tx,
            rtp_channel: 0,
            rtcp_channel: 1,
        };
        track.subscribe(1, sink.clone(), 100, true, Retransmission::None);
        let mut seq = ServerSeq(0);
        track.deliver(&access_unit(&mut seq, 2, true, 0));
        // The fan-out took its snapshot before the unsubscribe, sends after it.
        let snapshot = track.snapshot();
        assert_eq!(track.unsubscribe(1), Some(102));
        assert!(snapshot[0].seq().removed);
        track.subscribe(1, sink, 102, false, Retransmission::None);
        track.deliver(&access_unit(&mut seq, 1, true, 0));
        let got: Vec<Option<u16>> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|f| seq_of(&f[4..]))
            .collect();
        assert_eq!(got, [Some(100), Some(101), Some(102)]);
    }

    /// `n` UDP clients of `track`, client `i` numbered from `i * seq_step`.
    fn udp_clients(track: &Track, n: usize, seq_step: u16) -> Vec<UdpSocket> {
        let socks: Vec<UdpSocket> = (0..n).map(|_| receiver()).collect();
        for (i, s) in socks.iter().enumerate() {
            track.subscribe(
                i as u64,
                Sink::Udp {
                    rtp: s.local_addr().expect("bound"),
                    rtcp: "127.0.0.1:9".parse().expect("address"),
                },
                (i as u16).wrapping_mul(seq_step),
                true,
                Retransmission::None,
            );
        }
        socks
    }

    #[test]
    fn many_clients_in_several_batches() {
        let track = video_track();
        // Enough clients for several `sendmmsg` calls per round and for a flush of the
        // gathered datagrams midway (10 datagrams each).
        let clients = (UDP_FLUSH_AT / 10 + 7).max(SEND_BATCH + 7);
        let socks = udp_clients(&track, clients, 100);
        // Datagrams of growing sizes: one message each, one round per datagram.
        track.deliver(&access_unit(&mut ServerSeq(9), 10, true, 0));
        for (i, s) in socks.iter().enumerate() {
            let got = recv_n(s, 10);
            let seqs: Vec<Option<u16>> = got.iter().map(|g| seq_of(g)).collect();
            let base = i as u16 * 100;
            assert_eq!(seqs, (0..10).map(|k| Some(base + k)).collect::<Vec<_>>());
        }
    }

    /// `(sub, packet)` pairs in the fan-out's order (packet by packet, each to every client).
    fn sends_of(pairs: &[(usize, usize)]) -> Vec<UdpSend> {
        pairs
            .iter()
            .map(|&(sub, packet)| UdpSend {
                sub,
                packet,
                seq: packet as u16,
            })
            .collect()
    }

    #[test]
    fn each_clients_frame_goes_in_as_few_gso_messages_as_its_sizes_allow() {
        // A keyframe: parameter sets (60 bytes), four full fragments, a shorter last one; and
        // a client (2) that joined at the second packet and refuses GSO.
        let lens = [60, 1400, 1400, 1400, 1400, 700];
        let mut pairs = Vec::new();
        for p in 0..lens.len() {
            for sub in 0..3 {
                if !(sub == 2 && p == 0) {
                    pairs.push((sub, p));
                }
            }
        }
        let mut sends = sends_of(&pairs);
        let plan = plan_messages(&mut sends, |d| lens[d.packet], |d| d.sub != 2);
        // Each client's datagrams in order, client by client.
        let order: Vec<(usize, usize)> = sends.iter().map(|d| (d.sub, d.packet)).collect();
        let mut expected = pairs.clone();
        expected.sort_by_key(|p| p.0);
        assert_eq!(order, expected);
        let m = |from, to, round, segment| Message {
            from,
            to,
            round,
            segment,
        };
        assert_eq!(
            plan,
            [
                // Round 0: the parameter sets alone (shorter than what follows), and client
                // 2's first datagram.
                m(0, 1, 0, None),
                m(6, 7, 0, None),
                m(12, 13, 0, None),
                m(13, 14, 1, None),
                m(1, 6, 1, Some(1400)),
                m(7, 12, 1, Some(1400)),
                m(14, 15, 2, None),
                m(15, 16, 3, None),
                m(16, 17, 4, None),
            ]
        );
    }

    #[test]
    fn a_gso_message_stops_at_a_longer_datagram_and_at_the_segment_limit() {
        // 70 equal datagrams, then a longer one: 64 in one message, 6 in the next, the longer
        // one alone. A shorter datagram ends a message even if equal ones follow.
        let mut lens = vec![900; 70];
        lens.push(1000);
        lens.extend([500, 900, 900]);
        let pairs: Vec<(usize, usize)> = (0..lens.len()).map(|p| (0, p)).collect();
        let mut sends = sends_of(&pairs);
        let plan = plan_messages(&mut sends, |d| lens[d.packet], |_| true);
        let spans: Vec<(usize, usize, Option<u16>)> =
            plan.iter().map(|m| (m.from, m.to, m.segment)).collect();
        assert_eq!(
            spans,
            [
                (0, 64, Some(900)),
                (64, 70, Some(900)),
                (70, 72, Some(1000)),
                (72, 74, Some(900)),
            ]
        );
        // Big datagrams: no more than GSO_MAX_BYTES in one message.
        let lens = [9000usize; 10];
        let pairs: Vec<(usize, usize)> = (0..lens.len()).map(|p| (0, p)).collect();
        let mut sends = sends_of(&pairs);
        let plan = plan_messages(&mut sends, |d| lens[d.packet], |_| true);
        assert_eq!(plan[0].to - plan[0].from, GSO_MAX_BYTES / 9000);
    }

    #[test]
    fn clients_get_every_datagram_of_a_gso_message_in_order() {
        // Equal-sized fragments, as the H.264 packetizer makes them: they go as GSO messages.
        let track = video_track();
        let socks = udp_clients(&track, 3, 1000);
        let mut seq = ServerSeq(500);
        let mut au = access_unit(&mut seq, 5, true, 7);
        for (i, p) in au.iter_mut().enumerate() {
            p.bytes.resize(if i == 4 { 333 } else { 1200 }, i as u8);
        }
        track.deliver(&au);
        for (i, s) in socks.iter().enumerate() {
            let got = recv_n(s, 5);
            let base = i as u16 * 1000;
            let seqs: Vec<Option<u16>> = got.iter().map(|g| seq_of(g)).collect();
            assert_eq!(seqs, (0..5).map(|k| Some(base + k)).collect::<Vec<_>>());
            for (k, g) in got.iter().enumerate() {
                assert_eq!(g.len(), au[k].bytes.len());
                assert_eq!(&g[12..], &au[k].bytes[12..], "client {i} datagram {k}");
            }
        }
    }

    #[test]
    fn a_client_without_a_socket_of_its_family_is_counted_as_dropped() {
        let track = video_track();
        let stats = track.subscribe(
            1,
            Sink::Udp {
                rtp: "[::1]:9".parse().expect("address"),
                rtcp: "[::1]:9".parse().expect("address"),
            },
            1,
            true,
            Retransmission::None,
        );
        track.deliver(&access_unit(&mut ServerSeq(0), 2, true, 0));
        assert_eq!(stats.packets_sent.load(Ordering::Relaxed), 0);
        assert_eq!(stats.packets_dropped.load(Ordering::Relaxed), 2);
    }

    /// As the encoder and fan-out do it: kept for retransmission, then sent, at `now`.
    fn hand_out(track: &Track, au: Vec<OutPacket>, now: Instant) {
        let au: Arc<[OutPacket]> = au.into();
        track.remember(&au, now);
        track.deliver_at(&au, now);
    }

    #[test]
    fn nacked_packets_are_resent_in_each_clients_own_numbering() {
        let track = video_track();
        let (a, b) = (receiver(), receiver());
        let sink = |s: &UdpSocket| Sink::Udp {
            rtp: s.local_addr().expect("bound"),
            rtcp: "127.0.0.1:9".parse().expect("address"),
        };
        // A (ffmpeg-like) gets originals, B (GStreamer-like) RTX on its own SSRC; B joins later.
        track.subscribe(1, sink(&a), 1000, false, Retransmission::Original);
        let t0 = Instant::now();
        let mut seq = ServerSeq(65000);
        let idr = access_unit(&mut seq, 3, true, 10);
        hand_out(&track, idr.clone(), t0);
        assert_eq!(recv_n(&a, 3).len(), 3);
        let rtx_ssrc = Ssrc(0xbbbb_0001);
        track.subscribe(
            2,
            sink(&b),
            65535,
            false,
            Retransmission::Rtx {
                payload_type: 100,
                ssrc: rtx_ssrc,
                initial_seq: 500,
            },
        );
        let idr2 = access_unit(&mut seq, 2, true, 40);
        hand_out(&track, idr2.clone(), t0 + Duration::from_millis(33));
        let got_a = recv_n(&a, 2);
        let got_b = recv_n(&b, 2);
        assert_eq!(
            got_a.iter().map(|p| seq_of(p)).collect::<Vec<_>>(),
            [Some(1003), Some(1004)]
        );
        assert_eq!(
            got_b.iter().map(|p| seq_of(p)).collect::<Vec<_>>(),
            [Some(65535), Some(0)]
        );

        let later = t0 + Duration::from_millis(100);
        // A lost its 1001 and 1004: the same bytes come again, same SSRC and number.
        assert_eq!(track.retransmit(1, &[1001, 1004], later), 2);
        let again = recv_n(&a, 2);
        let p = livecast_proto::rtp::parse(&again[0]).expect("RTP");
        assert_eq!(
            (p.sequence, p.ssrc, p.payload_type),
            (1001, Ssrc(0x1234_5678), 96)
        );
        assert_eq!(p.payload, &idr[1].bytes[12..]);
        assert_eq!(again[1], got_a[1], "byte for byte what A was sent first");
        // B lost its 0: an RTX packet, numbered on B's RTX stream, OSN 0.
        assert_eq!(track.retransmit(2, &[0], later), 1);
        let r = recv_n(&b, 1);
        let p = livecast_proto::rtp::parse(&r[0]).expect("RTP");
        assert_eq!((p.sequence, p.ssrc, p.payload_type), (500, rtx_ssrc, 100));
        assert!(p.marker, "the original's marker");
        assert_eq!(&p.payload[..2], &[0, 0], "OSN: B's number for it");
        assert_eq!(&p.payload[2..], &idr2[1].bytes[12..]);
        assert_eq!(track.retransmit(2, &[65535], later), 1);
        let p2 = recv_n(&b, 1);
        let p2 = livecast_proto::rtp::parse(&p2[0]).expect("RTP");
        assert_eq!((p2.sequence, &p2.payload[..2]), (501, &[0xff, 0xff][..]));
        // Never sent to B (before it joined, after its last packet), or to nobody: nothing.
        assert_eq!(track.retransmit(2, &[65534, 1, 2], later), 0);
        assert_eq!(track.retransmit(1, &[999, 1005], later), 0);
        assert_eq!(track.retransmit(7, &[1001], later), 0, "no such client");
        // Older than the history: nothing.
        let too_late = t0 + HISTORY + Duration::from_millis(34);
        assert_eq!(track.retransmit(1, &[1004], too_late), 0);
        let mut buf = [0u8; 2048];
        assert!(a.recv(&mut buf).is_err() && b.recv(&mut buf).is_err());
    }

    #[test]
    fn the_history_keeps_one_second_within_a_bound() {
        let mut h = History::default();
        let t0 = Instant::now();
        let mut seq = ServerSeq(0);
        for f in 0..60u32 {
            let au: Arc<[OutPacket]> = access_unit(&mut seq, 100, f == 0, 0).into();
            h.push(au, t0 + Duration::from_millis(33) * f);
        }
        assert!(h.packets <= MAX_HISTORY_PACKETS, "{}", h.packets);
        let now = t0 + Duration::from_millis(33) * 59;
        assert!(h.get(seq.0, now).is_some(), "the newest");
        assert!(h.get(1, now).is_none(), "dropped for the bound");
        let oldest_kept = seq.0 - h.packets as u16 + 1;
        assert!(h.get(oldest_kept, now).is_some());
        assert!(
            h.get(oldest_kept, now + HISTORY).is_none(),
            "too old by then"
        );
    }
}
