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

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use livecast_proto::rtcp::{self, RtcpPacket, Sdes, SenderReport};
use livecast_proto::time::{NtpTimestamp, Ssrc};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// What kind of media a track carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackKind {
    Video,
    Audio,
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
}

struct Subscriber {
    id: u64,
    sink: Sink,
    /// Sequence number the client's stream starts at (announced in RTP-Info).
    initial_seq: u16,
    /// `client_seq = server_seq + delta`; `None` until the first packet the client may start at.
    seq_delta: Option<u16>,
    /// Last sequence number sent to this client (for RTP-Info of a later PLAY).
    last_seq: Option<u16>,
    packets: u32,
    octets: u32,
    stats: Arc<SinkStats>,
}

/// The sockets a track sends from: one pair per address family.
pub struct TrackSockets {
    pub rtp_v4: Option<Arc<UdpSocket>>,
    pub rtcp_v4: Option<Arc<UdpSocket>>,
    pub rtp_v6: Option<Arc<UdpSocket>>,
    pub rtcp_v6: Option<Arc<UdpSocket>>,
}

impl TrackSockets {
    fn rtp_for(&self, dest: &SocketAddr) -> Option<&UdpSocket> {
        if dest.is_ipv4() {
            self.rtp_v4.as_deref()
        } else {
            self.rtp_v6.as_deref()
        }
    }

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
}

/// One track: its description, its sockets, its subscribers and the RTP clock mapping.
pub struct Track {
    pub info: TrackInfo,
    pub sockets: TrackSockets,
    subscribers: Mutex<Vec<Subscriber>>,
    /// The wall-clock time that RTP timestamp `rtp_base` stands for.
    wall_epoch: SystemTime,
    rtp_base: u32,
    /// Sender counters for RTCP SR (RFC 3550 §6.4.1).
    packet_count: AtomicU32,
    octet_count: AtomicU32,
    /// Last server-side sequence number handed out by [`Track::next_seq`].
    last_seq: AtomicU32,
    keyframe_wanted: AtomicBool,
}

impl Track {
    pub fn new(info: TrackInfo, sockets: TrackSockets, wall_epoch: SystemTime) -> Self {
        Self {
            info,
            sockets,
            subscribers: Mutex::new(Vec::new()),
            wall_epoch,
            rtp_base: rand::random(),
            packet_count: AtomicU32::new(0),
            octet_count: AtomicU32::new(0),
            last_seq: AtomicU32::new(rand::random::<u16>().into()),
            keyframe_wanted: AtomicBool::new(false),
        }
    }

    /// RTP timestamp of a wall-clock instant on this track's media timeline. Capture times of
    /// video and audio map through the same wall clock, which is what lets players sync them.
    pub fn rtp_timestamp_at(&self, t: SystemTime) -> u32 {
        let ticks = match t.duration_since(self.wall_epoch) {
            Ok(d) => (d.as_nanos() * u128::from(self.info.clock_rate) / 1_000_000_000) as i64,
            Err(e) => {
                -((e.duration().as_nanos() * u128::from(self.info.clock_rate) / 1_000_000_000)
                    as i64)
            }
        };
        self.rtp_base.wrapping_add(ticks as u32)
    }

    /// Next server-side sequence number (used by the packetizing thread).
    pub fn next_seq(&self) -> u16 {
        (self.last_seq.fetch_add(1, Ordering::Relaxed) as u16).wrapping_add(1)
    }

    /// Is a newly joined video client waiting for a keyframe?
    pub fn keyframe_requested(&self) -> bool {
        self.keyframe_wanted.load(Ordering::Acquire)
    }

    /// The encoder produced a keyframe: nobody is waiting any more.
    pub fn clear_keyframe_request(&self) {
        self.keyframe_wanted.store(false, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        // A panic while holding this lock would be a bug in this file; keep serving anyway.
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a playing client. Returns the `seq` to announce in RTP-Info; `resume_seq` continues
    /// the numbering of an earlier PLAY of the same client.
    pub fn subscribe(&self, id: u64, sink: Sink, resume_seq: Option<u16>) -> (u16, Arc<SinkStats>) {
        let initial_seq = resume_seq.unwrap_or_else(rand::random);
        let stats = Arc::new(SinkStats::default());
        let mut subs = self.lock();
        subs.retain(|s| s.id != id);
        subs.push(Subscriber {
            id,
            sink,
            initial_seq,
            seq_delta: None,
            last_seq: None,
            packets: 0,
            octets: 0,
            stats: stats.clone(),
        });
        drop(subs);
        if self.info.kind == TrackKind::Video {
            self.keyframe_wanted.store(true, Ordering::Release);
        }
        (initial_seq, stats)
    }

    /// Removes a client; returns the sequence number a resumed stream should continue from.
    pub fn unsubscribe(&self, id: u64) -> Option<u16> {
        let mut subs = self.lock();
        let pos = subs.iter().position(|s| s.id == id)?;
        let s = subs.swap_remove(pos);
        Some(s.last_seq.map_or(s.initial_seq, |l| l.wrapping_add(1)))
    }

    pub fn subscriber_count(&self) -> usize {
        self.lock().len()
    }

    /// Sends one access unit's packets to every subscriber.
    pub fn deliver(&self, packets: &[OutPacket]) {
        for p in packets {
            self.packet_count.fetch_add(1, Ordering::Relaxed);
            self.octet_count
                .fetch_add(p.bytes.len().saturating_sub(12) as u32, Ordering::Relaxed);
        }
        let mut scratch = Vec::with_capacity(1500);
        let mut subs = self.lock();
        for sub in subs.iter_mut() {
            for p in packets {
                let Some(server_seq) = seq_of(&p.bytes) else {
                    continue;
                };
                let delta = match sub.seq_delta {
                    Some(d) => d,
                    None if p.starts_keyframe => {
                        let d = sub.initial_seq.wrapping_sub(server_seq);
                        sub.seq_delta = Some(d);
                        d
                    }
                    None => continue,
                };
                let seq = server_seq.wrapping_add(delta);
                let sent = match &sub.sink {
                    Sink::Udp { rtp, .. } => {
                        scratch.clear();
                        scratch.extend_from_slice(&p.bytes);
                        scratch[2..4].copy_from_slice(&seq.to_be_bytes());
                        match self.sockets.rtp_for(rtp) {
                            Some(sock) => match sock.send_to(&scratch, rtp) {
                                Ok(_) => true,
                                Err(e) => {
                                    debug!(client = sub.id, %rtp, "RTP send failed: {e}");
                                    false
                                }
                            },
                            None => false,
                        }
                    }
                    Sink::Tcp {
                        tx, rtp_channel, ..
                    } => {
                        let mut frame = Vec::with_capacity(p.bytes.len() + 4);
                        frame.push(b'$');
                        frame.push(*rtp_channel);
                        frame.extend_from_slice(&(p.bytes.len() as u16).to_be_bytes());
                        frame.extend_from_slice(&p.bytes);
                        frame[6..8].copy_from_slice(&seq.to_be_bytes());
                        tx.try_send(frame).is_ok()
                    }
                };
                if sent {
                    sub.last_seq = Some(seq);
                    sub.packets = sub.packets.wrapping_add(1);
                    sub.octets = sub
                        .octets
                        .wrapping_add(p.bytes.len().saturating_sub(12) as u32);
                    sub.stats.packets_sent.fetch_add(1, Ordering::Relaxed);
                } else {
                    sub.stats.packets_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
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
        let subs = self.lock();
        for sub in subs.iter() {
            if only.is_some_and(|id| id != sub.id) {
                continue;
            }
            let report = self.sender_report(now, sub.packets, sub.octets);
            send_rtcp(&self.sockets, &sub.sink, &report, sub.id);
        }
    }

    /// Sends RTCP BYE to one client (on TEARDOWN).
    pub fn send_bye(&self, sink: &Sink, client: u64) {
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
        send_rtcp(&self.sockets, sink, &out, client);
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
            frame.push(b'$');
            frame.push(*rtcp_channel);
            frame.extend_from_slice(&(data.len() as u16).to_be_bytes());
            frame.extend_from_slice(data);
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
