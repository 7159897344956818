//! Receiving RTP and RTCP for many UDP sessions on a few threads.
//!
//! A load test with 500 sessions has 2 000 UDP sockets (RTP + RTCP for video and audio) and
//! about 115 000 packets a second to read, on a machine that also runs the server under test.
//! One async task per socket pair would pay for a task wake-up, a `select!` and a fresh future
//! per packet; here a few plain threads each own a share of the sockets in one `epoll` set
//! (`mio`) and, when a socket becomes readable, read it empty in a tight loop, counting into
//! that track's [`TrackStats`]. The RTSP side stays async: [`UdpReceiver::add`] hands a
//! socket pair over, [`RxHandle::finish`] takes the counters back when the session ends.
//!
//! Sockets are spread over the threads round-robin; each thread blocks in `epoll_wait` when
//! nothing is readable, so an idle receiver costs nothing.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Instant;

use anyhow::{anyhow, Context};
use mio::{Events, Interest, Poll, Token, Waker};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::TrackStats;

/// Tracks per session that [`RxTotals`] counts separately (video, audio, and two spare).
pub const MAX_TRACKS: usize = 4;

const WAKER: Token = Token(usize::MAX);

/// Packets and bytes received by all sessions, per track index (0 = first `m=` line), updated
/// as they arrive: sample it twice to get rates over a window.
#[derive(Debug, Default)]
pub struct RxTotals {
    packets: [AtomicU64; MAX_TRACKS],
    bytes: [AtomicU64; MAX_TRACKS],
    frames: [AtomicU64; MAX_TRACKS],
}

impl RxTotals {
    /// `(packets, bytes)` received so far on track `index` (RTP only; bytes are whole RTP
    /// packets, header included, as they come out of the UDP socket).
    pub fn get(&self, index: usize) -> (u64, u64) {
        let i = index.min(MAX_TRACKS - 1);
        (
            self.packets[i].load(Ordering::Relaxed),
            self.bytes[i].load(Ordering::Relaxed),
        )
    }

    /// Frames (distinct RTP timestamps in a row) received so far on track `index`.
    pub fn frames(&self, index: usize) -> u64 {
        self.frames[index.min(MAX_TRACKS - 1)].load(Ordering::Relaxed)
    }
}

/// What a session's track received, handed back by [`RxHandle::finish`].
#[derive(Debug, Default)]
pub struct TrackRx {
    pub stats: TrackStats,
    /// When the first RTP packet was read.
    pub first_packet: Option<Instant>,
}

enum Command {
    Add {
        id: u64,
        track: usize,
        rtp: UdpSocket,
        rtcp: UdpSocket,
    },
    Remove {
        id: u64,
        reply: Option<oneshot::Sender<TrackRx>>,
    },
    Shutdown,
}

struct Worker {
    commands: Sender<Command>,
    waker: Arc<Waker>,
}

impl Worker {
    fn send(&self, c: Command) -> anyhow::Result<()> {
        self.commands
            .send(c)
            .map_err(|_| anyhow!("UDP receiver thread has stopped"))?;
        self.waker.wake().context("waking the UDP receiver thread")
    }
}

/// A pool of receiver threads. Dropping it stops the threads (sessions still registered are
/// dropped with it).
pub struct UdpReceiver {
    workers: Vec<Worker>,
    next_worker: AtomicUsize,
    next_id: AtomicU64,
    totals: Arc<RxTotals>,
}

impl UdpReceiver {
    /// Starts `threads` receiver threads (at least one).
    pub fn new(threads: usize) -> anyhow::Result<Self> {
        let totals = Arc::new(RxTotals::default());
        let mut workers = Vec::new();
        for i in 0..threads.max(1) {
            let poll = Poll::new().context("creating an epoll instance")?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER).context("epoll waker")?);
            let (tx, rx) = channel();
            let t = totals.clone();
            thread::Builder::new()
                .name(format!("udp-rx-{i}"))
                .spawn(move || {
                    if let Err(e) = worker_loop(poll, rx, &t) {
                        warn!("UDP receiver thread failed: {e:#}");
                    }
                })
                .context("spawning a UDP receiver thread")?;
            workers.push(Worker {
                commands: tx,
                waker,
            });
        }
        Ok(Self {
            workers,
            next_worker: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            totals,
        })
    }

    /// The process-wide receiver (two threads) used by [`crate::run_client`].
    pub fn shared() -> &'static UdpReceiver {
        static SHARED: OnceLock<UdpReceiver> = OnceLock::new();
        SHARED.get_or_init(|| {
            UdpReceiver::new(2).expect("a process can start two threads and an epoll instance")
        })
    }

    /// Counters over every session of this receiver.
    pub fn totals(&self) -> &RxTotals {
        &self.totals
    }

    /// Starts receiving on a track's RTP and RTCP sockets (non-blocking). `track` is the index
    /// of the track in its session, for [`RxTotals`].
    pub fn add(&self, track: usize, rtp: UdpSocket, rtcp: UdpSocket) -> anyhow::Result<RxHandle> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let w = self.next_worker.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        self.workers[w].send(Command::Add {
            id,
            track,
            rtp,
            rtcp,
        })?;
        Ok(RxHandle {
            worker: self.workers[w].commands.clone(),
            waker: self.workers[w].waker.clone(),
            id,
            finished: false,
        })
    }
}

impl Drop for UdpReceiver {
    fn drop(&mut self) {
        for w in &self.workers {
            let _ = w.send(Command::Shutdown);
        }
    }
}

/// One track's sockets inside a [`UdpReceiver`]. Dropping the handle without
/// [`finish`](Self::finish) closes the sockets and forgets the counters.
pub struct RxHandle {
    worker: Sender<Command>,
    waker: Arc<Waker>,
    id: u64,
    finished: bool,
}

impl RxHandle {
    /// Stops receiving, closes the sockets and returns what arrived.
    pub async fn finish(mut self) -> anyhow::Result<TrackRx> {
        self.finished = true;
        let (tx, rx) = oneshot::channel();
        self.worker
            .send(Command::Remove {
                id: self.id,
                reply: Some(tx),
            })
            .map_err(|_| anyhow!("UDP receiver thread has stopped"))?;
        self.waker.wake()?;
        rx.await
            .map_err(|_| anyhow!("UDP receiver thread has stopped"))
    }
}

impl Drop for RxHandle {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.worker.send(Command::Remove {
                id: self.id,
                reply: None,
            });
            let _ = self.waker.wake();
        }
    }
}

struct Entry {
    track: usize,
    rtp: mio::net::UdpSocket,
    rtcp: mio::net::UdpSocket,
    rx: TrackRx,
}

fn worker_loop(
    mut poll: Poll,
    commands: Receiver<Command>,
    totals: &RxTotals,
) -> anyhow::Result<()> {
    let mut entries: HashMap<u64, Entry> = HashMap::new();
    let mut events = Events::with_capacity(1024);
    // Larger than any datagram on loopback (64 KiB max), so nothing is ever truncated.
    let mut buf = vec![0u8; 65536];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e).context("epoll_wait");
        }
        for ev in events.iter() {
            if ev.token() == WAKER {
                continue;
            }
            // Token = id * 2 + (0 for RTP, 1 for RTCP).
            let id = (ev.token().0 >> 1) as u64;
            let is_rtcp = ev.token().0 & 1 == 1;
            let Some(e) = entries.get_mut(&id) else {
                continue;
            };
            if is_rtcp {
                drain(&e.rtcp, &mut buf, |b| e.rx.stats.on_rtcp(b));
            } else {
                let (mut n, mut bytes, mut frames) = (0u64, 0u64, 0u64);
                let rx = &mut e.rx;
                drain(&e.rtp, &mut buf, |b| {
                    rx.first_packet.get_or_insert_with(Instant::now);
                    frames += u64::from(rx.stats.on_rtp(b));
                    n += 1;
                    bytes += b.len() as u64;
                });
                let i = e.track.min(MAX_TRACKS - 1);
                totals.packets[i].fetch_add(n, Ordering::Relaxed);
                totals.bytes[i].fetch_add(bytes, Ordering::Relaxed);
                totals.frames[i].fetch_add(frames, Ordering::Relaxed);
            }
        }
        // Commands are few (two per track per session); handle them after the packets.
        while let Ok(c) = commands.try_recv() {
            match c {
                Command::Add {
                    id,
                    track,
                    rtp,
                    rtcp,
                } => {
                    let mut rtp = mio::net::UdpSocket::from_std(rtp);
                    let mut rtcp = mio::net::UdpSocket::from_std(rtcp);
                    let base = (id as usize) << 1;
                    poll.registry()
                        .register(&mut rtp, Token(base), Interest::READABLE)
                        .context("registering an RTP socket")?;
                    poll.registry()
                        .register(&mut rtcp, Token(base | 1), Interest::READABLE)
                        .context("registering an RTCP socket")?;
                    entries.insert(
                        id,
                        Entry {
                            track,
                            rtp,
                            rtcp,
                            rx: TrackRx::default(),
                        },
                    );
                }
                Command::Remove { id, reply } => {
                    if let Some(mut e) = entries.remove(&id) {
                        let _ = poll.registry().deregister(&mut e.rtp);
                        let _ = poll.registry().deregister(&mut e.rtcp);
                        if let Some(r) = reply {
                            let _ = r.send(e.rx);
                        }
                    }
                }
                Command::Shutdown => {
                    debug!(sessions = entries.len(), "UDP receiver thread stopping");
                    return Ok(());
                }
            }
        }
    }
}

/// Reads `sock` until it would block (the sockets are edge-triggered).
fn drain(sock: &mio::net::UdpSocket, buf: &mut [u8], mut on_packet: impl FnMut(&[u8])) {
    loop {
        match sock.recv(buf) {
            Ok(n) => on_packet(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // WouldBlock: empty. Anything else (an ICMP error queued on the socket): stop here;
            // the next datagram raises a new readiness event.
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0u8; 100]);
        p
    }

    #[test]
    fn counts_packets_and_gaps_across_threads() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let rxp = UdpReceiver::new(2).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut handles = Vec::new();
        let mut dests = Vec::new();
        for i in 0..4 {
            let (a, b) = pair();
            dests.push(a.local_addr().unwrap());
            handles.push(rxp.add(i % 2, a, b).unwrap());
        }
        for d in &dests {
            for seq in (65530u16..=65535).chain(0..10).filter(|s| *s != 3) {
                tx.send_to(&rtp(seq), d).unwrap();
            }
        }
        // Wait until the receiver threads have read all 60 (or give up after 5 s).
        let deadline = Instant::now() + Duration::from_secs(5);
        while rxp.totals().get(0).0 + rxp.totals().get(1).0 < 60 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        rt.block_on(async {
            for h in handles {
                let r = h.finish().await.unwrap();
                assert_eq!(r.stats.packets, 15);
                assert_eq!(r.stats.frames, 1, "one timestamp");
                assert_eq!(r.stats.lost, 1, "seq 3 never sent; wraparound is no gap");
                assert!(r.first_packet.is_some());
            }
        });
        assert_eq!(rxp.totals().get(0).0, 30);
        assert_eq!(rxp.totals().get(1), (30, 30 * 112));
    }
}
