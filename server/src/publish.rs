//! Published paths: what publishers (ffmpeg `-f rtsp`, GStreamer `rtspclientsink`, OBS-class
//! tools) send us, re-served to the viewers of their path with the same fan-out as our own
//! stream ([`Track`]).
//!
//! The protocol side (ANNOUNCE, SETUP with `mode=record`, RECORD, one publisher per path) is
//! [`livecast_proto::rtsp::server::publish`]; this is the shell's part:
//!
//! - [`Paths`], the registry: for each path being published, its announced SDP and one
//!   [`Track`] per `m=` section, numbered after our own tracks (the numbers the state machine's
//!   events use), and where each track's packets come from (a UDP source address, or a channel
//!   of an interleaved connection).
//! - Ingest: each RTP packet from a publisher is checked (RTP version 2), gets the re-served
//!   track's SSRC and a timestamp on the track's clock (the publisher's timestamps shifted so
//!   that its first packet falls at its arrival time: RTCP sender reports and `RTP-Info` then
//!   follow from our clock), keeps the publisher's sequence numbers (each viewer's are
//!   rewritten by the fan-out, as for our own stream), and goes to the fan-out one packet at a
//!   time. Packets of H.264 tracks that start an SPS or IDR picture mark where a viewer may
//!   join; the fan-out keeps the last such keyframe and what followed for
//!   [`PUBLISHED_RECENT_WINDOW`], so a joiner starts at once (publishers do not answer PLIs).
//!   Every other payload (Opus, T.140/RED, anything announced) is passed through as it came,
//!   every packet a point to join at.
//! - Each published track has its own send sockets (its `server_port` for UDP viewers) with
//!   an RTCP reader for its viewers' reports, and the path a sender-report task; all end when
//!   the path does.
//!
//! The publisher's own RTCP is used only as keep-alive; its sender reports' wall-clock times
//! are not (our wall clock at arrival stands in, so a publisher's tracks stay in sync with each
//! other up to the difference of their first packets' network delays).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use livecast_proto::codec::h264;
use livecast_proto::rtsp::server::{ClientId, ConnId, MediaSink, TrackConfig};
use livecast_proto::sdp::SessionDescription;
use livecast_proto::time::Ssrc;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::net;
use crate::track::{Track, TrackInfo, TrackKind, TrackSockets};

/// How old a published video track's last keyframe may be to start a joiner from: longer
/// than the keyframe interval of most publishers (ffmpeg's and OBS's default is 2 s or 250
/// frames; MediaMTX-class setups use 1-2 s).
pub const PUBLISHED_RECENT_WINDOW: Duration = Duration::from_secs(4);

/// One re-served track of a published path.
pub struct PublishedTrack {
    pub track: Arc<Track>,
    /// Its number in the state machine's events.
    pub index: usize,
    /// The announced encoding (`H264`, `opus`, ...; empty if none was announced).
    pub encoding: String,
    timing: Mutex<Timing>,
    /// The path's captioner, fed by this (Opus) track ([`crate::publish_captions`]).
    caption_feed: Mutex<Option<crate::publish_captions::CaptionFeed>>,
}

/// Where a track's timestamps start.
#[derive(Default)]
struct Timing {
    /// The publisher's first timestamp and ours for it.
    first: Option<(u32, u32)>,
    /// The (publisher's) timestamp of the last picture marked as a keyframe start: its SPS
    /// and its IDR slice come in separate packets, and only the first is where to join.
    last_keyframe: Option<u32>,
}

/// A path being published.
pub struct PublishedPath {
    pub path: String,
    /// The publisher's session (its client number).
    pub client: ClientId,
    /// The SDP the publisher announced.
    pub sdp: SessionDescription,
    /// The announced tracks, then the caption track if we make one ([`Self::captions`]).
    pub tracks: Vec<Arc<PublishedTrack>>,
    /// Whether the last of `tracks` is a caption track of ours, not announced.
    pub captions: bool,
    /// Dropped when the path ends: its tasks stop.
    _alive: watch::Sender<()>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    Udp(SocketAddr),
    Interleaved(ConnId, u8),
}

#[derive(Default)]
struct Registry {
    paths: HashMap<String, Arc<PublishedPath>>,
    sources: HashMap<Source, (Arc<PublishedPath>, usize)>,
    /// Track number -> track, for the state machine's events.
    by_index: HashMap<usize, Arc<Track>>,
    /// The number the next published track gets (never reused).
    next_index: usize,
    /// Bumped on every change, for [`Paths::changes`].
    generation: u64,
    /// The captioners of published paths, to wait for at shutdown.
    captioners: Vec<crate::captions::CaptionWorker>,
}

/// The registry of published paths (see the module doc).
pub struct Paths {
    inner: Mutex<Registry>,
    changes: watch::Sender<u64>,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            inner: Mutex::new(Registry::default()),
            changes: watch::channel(0).0,
        }
    }
}

impl Paths {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every path being published now, with its tracks: what a recorder subscribes to (with
    /// [`Track::subscribe`], as a viewer would).
    pub fn list(&self) -> Vec<Arc<PublishedPath>> {
        let mut v: Vec<_> = self.lock().paths.values().cloned().collect();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }

    /// The path `path`, if it is being published.
    pub fn get(&self, path: &str) -> Option<Arc<PublishedPath>> {
        self.lock().paths.get(path).cloned()
    }

    /// Changes whenever a path starts or ends being published.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// A published track by its number in the state machine's events.
    pub fn track(&self, index: usize) -> Option<Arc<Track>> {
        self.lock().by_index.get(&index).cloned()
    }

    /// Makes the tracks of a path whose publisher sent RECORD, numbered after `own` (our own
    /// tracks) and every number handed out before, and registers where their packets come
    /// from (`sources`: announced track, and where from). With `captions`, a caption track
    /// (T.140 in RED) follows the announced ones. Returns the path (its first track's
    /// number is `tracks[0].index`) and the state machine's view of its tracks.
    pub fn start(
        &self,
        path: &str,
        client: ClientId,
        sdp: &SessionDescription,
        sources: &[(usize, MediaSink)],
        own: usize,
        captions: bool,
    ) -> anyhow::Result<(Arc<PublishedPath>, Vec<TrackConfig>)> {
        let count = sdp.media.len() + usize::from(captions);
        let first = {
            let mut reg = self.lock();
            let first = reg.next_index.max(own);
            reg.next_index = first + count;
            first
        };
        let mut tracks = Vec::new();
        let mut configs = Vec::new();
        let caption = captions.then(|| {
            let format = (crate::RED_PT, 1000, None);
            (TrackKind::Text, format, "red".to_owned())
        });
        let announced = sdp.media.iter().map(|m| {
            let pt = m
                .formats
                .iter()
                .find_map(|f| f.parse::<u8>().ok())
                .unwrap_or(96);
            let rtpmap = m.rtpmap(pt);
            let clock_rate = rtpmap.as_ref().map_or(90_000, |r| r.clock_rate);
            let kind = match m.media.as_str() {
                "video" => TrackKind::Video,
                "audio" => TrackKind::Audio,
                _ => TrackKind::Text,
            };
            let encoding = rtpmap.map(|r| r.encoding).unwrap_or_default();
            // H.264 video is kept for retransmission as our own is (audio and text are
            // not: Opus has its in-band FEC, and RED carries text twice over).
            let rtx = (kind == TrackKind::Video && encoding.eq_ignore_ascii_case("h264"))
                .then(|| free_payload_type(sdp))
                .flatten();
            (kind, (pt, clock_rate, rtx), encoding)
        });
        for (i, (kind, (pt, clock_rate, rtx), encoding)) in announced.chain(caption).enumerate() {
            let track = make_track(first + i, kind, pt, clock_rate, rtx)?;
            configs.push(TrackConfig {
                ssrc: track.info.ssrc,
                clock: track.clock(),
                server_ports_v4: track.sockets.server_ports(false),
                server_ports_v6: track.sockets.server_ports(true),
                nack: track.info.nack,
                rtx_payload_type: track.info.rtx_payload_type,
            });
            tracks.push(Arc::new(PublishedTrack {
                track,
                index: first + i,
                encoding,
                timing: Mutex::new(Timing::default()),
                caption_feed: Mutex::new(None),
            }));
        }
        let published = Arc::new(PublishedPath {
            path: path.to_owned(),
            client,
            sdp: sdp.clone(),
            tracks,
            captions,
            _alive: watch::channel(()).0,
        });
        let mut reg = self.lock();
        if let Some(old) = reg.paths.insert(path.to_owned(), published.clone()) {
            forget(&mut reg, &old);
        }
        for t in &published.tracks {
            reg.by_index.insert(t.index, t.track.clone());
        }
        for (i, sink) in sources {
            let source = match *sink {
                MediaSink::Udp { rtp, .. } => Source::Udp(rtp),
                MediaSink::Interleaved {
                    conn, rtp_channel, ..
                } => Source::Interleaved(conn, rtp_channel),
            };
            reg.sources.insert(source, (published.clone(), *i));
        }
        reg.generation += 1;
        self.changes.send_replace(reg.generation);
        drop(reg);
        info!(
            path,
            tracks = published.tracks.len(),
            "publisher recording: path served"
        );
        Ok((published, configs))
    }

    /// The publisher `client` of `path` left: its tracks stop (their viewers' sessions were
    /// ended by the state machine already).
    pub fn end(&self, path: &str, client: ClientId) {
        let mut reg = self.lock();
        let Some(p) = reg.paths.get(path).filter(|p| p.client == client).cloned() else {
            return;
        };
        reg.paths.remove(path);
        forget(&mut reg, &p);
        p.stop_captions();
        reg.generation += 1;
        self.changes.send_replace(reg.generation);
        info!(path, "publisher gone: path ended");
    }

    /// An RTP packet from a UDP publisher at `from`; false if nobody publishes from there.
    pub fn ingest_udp(&self, from: SocketAddr, packet: &[u8]) -> bool {
        self.ingest(Source::Udp(from), packet)
    }

    /// An interleaved frame on `channel` of `conn`; false if it is not a publisher's RTP
    /// (then it is RTCP or a viewer's, for the state machine).
    pub fn ingest_interleaved(&self, conn: ConnId, channel: u8, packet: &[u8]) -> bool {
        self.ingest(Source::Interleaved(conn, channel), packet)
    }

    fn ingest(&self, source: Source, packet: &[u8]) -> bool {
        let Some((path, i)) = self.lock().sources.get(&source).cloned() else {
            return false;
        };
        if let Some(t) = path.tracks.get(i) {
            t.ingest(packet, SystemTime::now());
        }
        true
    }

    /// Sends sender reports on `path`'s tracks every `interval` while it is published.
    pub fn spawn_sender_reports(path: &Arc<PublishedPath>, interval: Duration) {
        let tracks: Vec<Arc<Track>> = path.tracks.iter().map(|t| t.track.clone()).collect();
        let mut alive = path._alive.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let now = SystemTime::now();
                        for t in &tracks {
                            t.send_sender_reports(now, None);
                        }
                    }
                    _ = alive.changed() => return,
                }
            }
        });
    }

    /// Keeps a published path's captioner, to wait for at shutdown ([`Paths::stop_captions`]).
    pub fn keep_captioner(&self, worker: crate::captions::CaptionWorker) {
        let mut reg = self.lock();
        reg.captioners.retain(|w| !w.wait(Duration::ZERO));
        reg.captioners.push(worker);
    }

    /// Stops every published path's captioner and waits (at most `timeout` in all) for their
    /// current whisper passes to end: a process must not exit while one runs.
    pub fn stop_captions(&self, timeout: Duration) {
        let workers = {
            let mut reg = self.lock();
            for p in reg.paths.values() {
                p.stop_captions();
            }
            std::mem::take(&mut reg.captioners)
        };
        let until = std::time::Instant::now() + timeout;
        for w in workers {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if !w.wait(left) {
                warn!("a published path's captioner did not stop in time");
            }
        }
    }

    /// A receiver that errs when `path` ends (for tasks serving it).
    pub fn alive(path: &PublishedPath) -> watch::Receiver<()> {
        path._alive.subscribe()
    }
}

impl PublishedPath {
    /// The caption track we make for this path, if any.
    pub fn caption_track(&self) -> Option<&Arc<PublishedTrack>> {
        self.tracks.last().filter(|_| self.captions)
    }

    /// Stops feeding the path's captioner: it ends after its current pass.
    pub fn stop_captions(&self) {
        for t in &self.tracks {
            t.set_caption_feed(None);
        }
    }
}

/// Drops `p`'s sources and track numbers from the registry.
fn forget(reg: &mut Registry, p: &Arc<PublishedPath>) {
    reg.sources.retain(|_, (q, _)| !Arc::ptr_eq(q, p));
    for t in &p.tracks {
        reg.by_index.remove(&t.index);
    }
}

impl PublishedTrack {
    /// Feeds this track's packets to a captioner (`None`: stops feeding it).
    pub fn set_caption_feed(&self, feed: Option<crate::publish_captions::CaptionFeed>) {
        *self.caption_feed.lock().unwrap_or_else(|e| e.into_inner()) = feed;
    }

    /// Re-serves one RTP packet that arrived at `now` (see the module doc); malformed ones
    /// are dropped.
    fn ingest(&self, packet: &[u8], now: SystemTime) {
        let Ok(p) = livecast_proto::rtp::parse(packet) else {
            debug!(track = self.index, "not an RTP packet from the publisher");
            return;
        };
        let h264 = self.encoding.eq_ignore_ascii_case("h264");
        let mut timing = self.timing.lock().unwrap_or_else(|e| e.into_inner());
        let starts_keyframe = !h264
            || (h264::payload_starts_keyframe(p.payload)
                && timing.last_keyframe.replace(p.timestamp) != Some(p.timestamp));
        let timestamp = {
            let (theirs, ours) = *timing
                .first
                .get_or_insert_with(|| (p.timestamp, self.track.rtp_timestamp_at(now)));
            ours.wrapping_add(p.timestamp.wrapping_sub(theirs))
        };
        drop(timing);
        if let Some(feed) = self
            .caption_feed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            feed.send(p.sequence, timestamp, p.payload);
        }
        let mut bytes = packet.to_vec();
        bytes[4..8].copy_from_slice(&timestamp.to_be_bytes());
        bytes[8..12].copy_from_slice(&self.track.info.ssrc.0.to_be_bytes());
        let packet: Arc<[crate::track::OutPacket]> = Arc::new([crate::track::OutPacket {
            bytes,
            starts_keyframe,
        }]);
        let now = Instant::now();
        self.track.remember(&packet, now);
        self.track.deliver_at(&packet, now);
    }
}

/// A re-served track with its own send sockets.
/// A dynamic payload type (96-127) no media section of `sdp` uses, for an RTX format (a
/// number of its own even across sections, as some clients key decoders by number alone).
fn free_payload_type(sdp: &SessionDescription) -> Option<u8> {
    let used: Vec<u8> = sdp.media.iter().flat_map(|m| m.payload_types()).collect();
    (96..=127).find(|pt| !used.contains(pt))
}

/// A track re-serving a published one; with `rtx`, its packets are kept and NACKs from its
/// viewers answered, with RFC 4588 RTX in that payload type for those that set it up.
fn make_track(
    index: usize,
    kind: TrackKind,
    payload_type: u8,
    clock_rate: u32,
    rtx: Option<u8>,
) -> anyhow::Result<Arc<Track>> {
    let pair = |ip| -> anyhow::Result<(Option<Arc<_>>, Option<Arc<_>>)> {
        Ok(match net::bind_rtp_pair(ip)? {
            Some((a, b)) => (Some(Arc::new(a)), Some(Arc::new(b))),
            None => (None, None),
        })
    };
    let (rtp_v4, rtcp_v4) = pair(net::any_v4())?;
    let (rtp_v6, rtcp_v6) = pair(net::any_v6())?;
    let info = TrackInfo {
        index,
        kind,
        payload_type,
        clock_rate,
        ssrc: Ssrc(rand::random()),
        cname: format!("livecast-relay-{:08x}", rand::random::<u32>()),
        nack: rtx.is_some(),
        rtx_payload_type: rtx,
    };
    let sockets = TrackSockets {
        rtp_v4,
        rtcp_v4,
        rtp_v6,
        rtcp_v6,
    };
    let mut track = Track::new(info, sockets, SystemTime::now());
    if kind == TrackKind::Video {
        track = track.with_recent_window(PUBLISHED_RECENT_WINDOW);
    }
    Ok(Arc::new(track))
}

/// Reads the RTCP of `path`'s track `index` from its viewers (keep-alive, as for our own
/// tracks) until the path ends.
pub fn spawn_rtcp_reader(
    socket: &std::net::UdpSocket,
    server: Arc<crate::rtsp_server::RtspServer>,
    path: &PublishedPath,
    index: usize,
) {
    let Some(sock) = net::reader(socket) else {
        return;
    };
    let mut alive = Paths::alive(path);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        loop {
            tokio::select! {
                r = sock.recv_from(&mut buf) => match r {
                    Ok((n, from)) => server.on_udp_rtcp(from, index, &buf[..n]),
                    Err(e) => debug!("UDP receive: {e}"),
                },
                _ = alive.changed() => return,
            }
        }
    });
}

/// Logs a publisher's path that could not be served.
pub fn warn_unserved(path: &str, e: &anyhow::Error) {
    warn!(path, "cannot serve the published path: {e:#}");
}
