//! `--record DIR`: the stream written to fragmented MP4 files (and a WebVTT file of the
//! captions beside each), split every `--record-segment`.
//!
//! ```text
//! Track::count (every access unit, on the encoder/fan-out threads)
//!   ──tap: try_send, never blocks──> recorder thread: depacketize, Mp4Writer, write(2)
//! ```
//!
//! The recorder takes the RTP packets a track fans out, so anything that feeds a [`Track`] (our
//! encoders, a published stream) can be recorded: it needs only each track's kind and RTP clock
//! ([`RecordTrack`]). A full queue drops packets for the recording only (the viewers are not
//! slowed) and the video waits for its next keyframe. A write error (a full disk) ends the
//! recording with one error line; streaming goes on.
//!
//! Files are `DIR/<path>-<UTC start time>.mp4` + `.vtt`; each starts at a video keyframe. A
//! fragment goes to the file every second or two (see [`livecast_proto::mp4`]); nothing is
//! written at the end, so a file left by a crash plays to its last complete fragment.

use std::fs::File;
use std::io::{Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use livecast_proto::codec::{h264, t140};
use livecast_proto::mp4::{self, Mp4Writer, TrackConfig};
use livecast_proto::rtp;
use livecast_proto::rtsp::server::RtpClock;
use tracing::{error, info, warn};

use crate::track::{OutPacket, Track, TrackKind};

/// Access units queued for the recorder at most (several seconds of every track).
const QUEUE: usize = 1024;

/// What to record and where.
#[derive(Clone, Debug)]
pub struct RecordConfig {
    pub dir: PathBuf,
    /// The stream's path, the start of every file name.
    pub name: String,
    /// A new file starts at the first keyframe after this long.
    pub segment: Duration,
}

/// One track to record: what it carries and how its RTP timestamps map to wall-clock time.
#[derive(Clone, Debug)]
pub struct RecordTrack {
    pub kind: TrackKind,
    pub clock: RtpClock,
    /// H.264 SPS and PPS known from the description (`sprop-parameter-sets`), for streams
    /// that do not repeat them before their keyframes (publishers such as ffmpeg with
    /// `-c copy`); in-band ones take over when they come.
    pub params: Option<ParameterSets>,
    /// A text track's payload types (ours: [`crate::T140_PT`] in [`crate::RED_PT`]).
    pub text: TextFormat,
}

/// A text track's payload types: T.140, and RED when the text is inside redundancy.
pub type TextFormat = (u8, Option<u8>);

/// Our own caption and chat tracks' payload types.
const OUR_TEXT: TextFormat = (crate::T140_PT, Some(crate::RED_PT));

/// An H.264 SPS and PPS (without start codes).
pub type ParameterSets = (Vec<u8>, Vec<u8>);

enum Input {
    /// One access unit's RTP packets from track `track`.
    Packets {
        track: usize,
        packets: Vec<Vec<u8>>,
    },
    Stop,
}

/// A running recording; [`Recorder::stop`] writes the last fragment and closes the files.
pub struct Recorder {
    tx: SyncSender<Input>,
    thread: Option<JoinHandle<()>>,
}

/// The senders' side: hands access units to the recorder thread without ever waiting.
pub struct RecordTap {
    tx: SyncSender<Input>,
    track: usize,
    stopped: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
}

impl RecordTap {
    pub fn send(&self, packets: &[OutPacket]) {
        if self.stopped.load(Ordering::Relaxed) {
            return;
        }
        let packets = packets.iter().map(|p| p.bytes.clone()).collect();
        match self.tx.try_send(Input::Packets {
            track: self.track,
            packets,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    warn!(
                        dropped = n,
                        "the recorder is behind; dropping media from the file"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => self.stopped.store(true, Ordering::Relaxed),
        }
    }
}

impl Recorder {
    /// Starts the recorder thread; returns it and one tap per track, in `tracks` order.
    pub fn start(
        cfg: RecordConfig,
        tracks: Vec<RecordTrack>,
    ) -> anyhow::Result<(Recorder, Vec<RecordTap>)> {
        std::fs::create_dir_all(&cfg.dir)
            .with_context(|| format!("creating the recording folder {}", cfg.dir.display()))?;
        let (tx, rx) = sync_channel(QUEUE);
        let stopped = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let taps = (0..tracks.len())
            .map(|track| RecordTap {
                tx: tx.clone(),
                track,
                stopped: stopped.clone(),
                dropped: dropped.clone(),
            })
            .collect();
        let st = stopped.clone();
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || {
                let mut state = State::new(cfg, tracks);
                if let Err(e) = state.run(rx) {
                    error!("recording stopped: {e:#}; streaming goes on");
                }
                st.store(true, Ordering::Relaxed);
            })
            .context("spawn the recorder thread")?;
        Ok((
            Recorder {
                tx,
                thread: Some(thread),
            },
            taps,
        ))
    }

    /// Starts recording `tracks` (the server's own), tapping each.
    pub fn record_tracks(cfg: RecordConfig, tracks: &[Arc<Track>]) -> anyhow::Result<Recorder> {
        let specs = tracks
            .iter()
            .map(|t| RecordTrack {
                kind: t.info.kind,
                clock: t.clock(),
                params: None,
                text: OUR_TEXT,
            })
            .collect();
        let (rec, taps) = Recorder::start(cfg, specs)?;
        for (t, tap) in tracks.iter().zip(taps) {
            t.set_tap(Box::new(move |p| tap.send(p)));
        }
        Ok(rec)
    }

    /// Records every path publishers bring (`--record` with publishers): each published path
    /// gets its own files, `DIR/<path>-<UTC start>.mp4`, from when its publisher starts until
    /// it leaves. H.264, Opus and T.140 text tracks are recorded (announced ones, and the
    /// captions we make for the path); other announced formats are left out of the file
    /// (they are still re-served). Runs until `stop` fires (or its sender goes),
    /// then closes every file.
    pub async fn record_published(
        cfg: RecordConfig,
        paths: Arc<crate::publish::Paths>,
        mut stop: tokio::sync::oneshot::Receiver<()>,
    ) {
        use std::collections::HashMap;
        let mut changes = paths.changes();
        let mut running: HashMap<String, (u64, Recorder)> = HashMap::new();
        loop {
            let now = paths.list();
            // Ended (or taken over): close their files, off the async threads.
            let gone: Vec<String> = running
                .iter()
                .filter(|(name, (client, _))| {
                    !now.iter()
                        .any(|p| &p.path == *name && p.client.0 == *client)
                })
                .map(|(name, _)| name.clone())
                .collect();
            for name in gone {
                if let Some((_, r)) = running.remove(&name) {
                    let _ = tokio::task::spawn_blocking(move || r.stop()).await;
                }
            }
            let new: Vec<_> = now
                .iter()
                .filter(|p| !running.contains_key(&p.path))
                .collect();
            for p in new {
                // The announced media we can write, in the order of the path's tracks, then
                // the caption track we make for it (no announced media).
                let recorded: Vec<(&Arc<Track>, RecordTrack)> = p
                    .tracks
                    .iter()
                    .enumerate()
                    .filter_map(|(i, t)| {
                        let spec = match p.sdp.media.get(i) {
                            Some(m) => recordable(t.track.info.kind, &t.encoding, m)?,
                            None => (None, OUR_TEXT),
                        };
                        Some((&t.track, spec))
                    })
                    .map(|(t, (params, text))| {
                        let spec = RecordTrack {
                            kind: t.info.kind,
                            clock: t.clock(),
                            params,
                            text,
                        };
                        (t, spec)
                    })
                    .collect();
                if recorded.is_empty() {
                    continue;
                }
                let name = p.path.trim_matches('/').replace('/', "_");
                let c = RecordConfig {
                    name,
                    ..cfg.clone()
                };
                let specs = recorded.iter().map(|(_, spec)| spec.clone()).collect();
                match Recorder::start(c, specs) {
                    Ok((rec, taps)) => {
                        for ((t, _), tap) in recorded.iter().zip(taps) {
                            t.set_tap(Box::new(move |pk| tap.send(pk)));
                        }
                        info!(path = %p.path, "recording the published path");
                        running.insert(p.path.clone(), (p.client.0, rec));
                    }
                    Err(e) => error!(path = %p.path, "cannot record the published path: {e:#}"),
                }
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { break },
                _ = &mut stop => break,
            }
        }
        for (_, (_, r)) in running {
            let _ = tokio::task::spawn_blocking(move || r.stop()).await;
        }
    }

    /// Writes what is pending and closes the files.
    pub fn stop(mut self) {
        let _ = self.tx.send(Input::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a published track `m` (of `kind`, its first format's encoding `encoding`) is recorded
/// with: H.264 (with the SPS and PPS the description carries), Opus, or real-time text (its
/// payload types). `None`: a format we don't write into MP4 (still re-served).
fn recordable(
    kind: TrackKind,
    encoding: &str,
    m: &livecast_proto::sdp::MediaDescription,
) -> Option<(Option<ParameterSets>, TextFormat)> {
    match kind {
        TrackKind::Video if encoding.eq_ignore_ascii_case("h264") => Some((sprop(m), OUR_TEXT)),
        TrackKind::Audio if encoding.eq_ignore_ascii_case("opus") => Some((None, OUR_TEXT)),
        TrackKind::Text => m.t140_formats().map(|text| (None, text)),
        _ => None,
    }
}

/// The SPS and PPS of an H.264 medium's `sprop-parameter-sets`, if it has both.
fn sprop(m: &livecast_proto::sdp::MediaDescription) -> Option<ParameterSets> {
    let pt = *m.payload_types().first()?;
    match h264::sprop_sps_pps(&m.fmtp(pt)?) {
        (Some(sps), Some(pps)) => Some((sps, pps)),
        _ => None,
    }
}

/// One track's receive side.
struct TrackIn {
    spec: RecordTrack,
    /// The file's track number.
    out: Option<usize>,
    /// Last extended RTP timestamp (ticks since the clock's wall epoch).
    last: Option<(u32, i64)>,
    h264: h264::Depacketizer,
    text: t140::Depacketizer,
    /// The caption line being spoken: start (ticks), text.
    line: Option<(i64, String)>,
}

impl TrackIn {
    /// `ts` as ticks since the wall epoch of the track's clock, unwrapped.
    fn extend(&mut self, ts: u32) -> i64 {
        let ext = match self.last {
            Some((l, e)) => e + i64::from(ts.wrapping_sub(l) as i32),
            None => i64::from(ts.wrapping_sub(self.spec.clock.rtp_base) as i32),
        };
        self.last = Some((ts, ext));
        ext
    }

    fn rate(&self) -> i64 {
        i64::from(self.spec.clock.clock_rate.max(1))
    }
}

/// One open file.
struct Segment {
    mp4: File,
    vtt: File,
    mp4_path: PathBuf,
    writer: Mp4Writer,
    /// Start, µs after the clocks' wall epoch.
    origin_us: i64,
    /// The video's decode times and composition offsets (B-frames), and its track in the file.
    reorder: mp4::Reorder<(bool, Vec<u8>)>,
    video_out: Option<usize>,
}

struct State {
    cfg: RecordConfig,
    tracks: Vec<TrackIn>,
    epoch: SystemTime,
    segment: Option<Segment>,
    /// The file before `segment`, its media complete, kept for captions that started in it
    /// and end after the switch (the captioner is seconds behind the media).
    prev: Option<Segment>,
    /// Video was lost (a dropped access unit): skip it until the next keyframe.
    video_broken: bool,
}

impl State {
    fn new(cfg: RecordConfig, specs: Vec<RecordTrack>) -> Self {
        let epoch = specs
            .first()
            .map_or(UNIX_EPOCH, |s: &RecordTrack| s.clock.wall_epoch);
        let tracks = specs
            .into_iter()
            .map(|spec| TrackIn {
                text: t140::Depacketizer::new(spec.text.0, spec.text.1),
                spec,
                out: None,
                last: None,
                h264: h264::Depacketizer::new(),
                line: None,
            })
            .collect();
        Self {
            cfg,
            tracks,
            epoch,
            segment: None,
            prev: None,
            video_broken: false,
        }
    }

    fn run(&mut self, rx: Receiver<Input>) -> anyhow::Result<()> {
        let mut seen_seq: Vec<Option<u16>> = vec![None; self.tracks.len()];
        for input in rx {
            let (track, packets) = match input {
                Input::Packets { track, packets } => (track, packets),
                Input::Stop => break,
            };
            for bytes in &packets {
                let Ok(p) = rtp::parse(bytes) else {
                    continue;
                };
                if let Some(last) = seen_seq[track] {
                    if p.sequence != last.wrapping_add(1)
                        && self.tracks[track].spec.kind == TrackKind::Video
                    {
                        self.video_broken = true;
                    }
                }
                seen_seq[track] = Some(p.sequence);
                self.packet(track, &p)?;
            }
        }
        // A caption line still open at the end shows for two seconds after its last words.
        for i in 0..self.tracks.len() {
            let t = &mut self.tracks[i];
            if let (Some((start, line)), Some((_, last))) = (t.line.take(), t.last) {
                let rate = t.rate();
                let end = last.max(start) + 2 * rate;
                self.cue(start * 1000 / rate, end * 1000 / rate, line.trim(), i)?;
            }
        }
        self.close()
    }

    fn packet(&mut self, track: usize, p: &rtp::RtpPacket<'_>) -> anyhow::Result<()> {
        let t = &mut self.tracks[track];
        match t.spec.kind {
            TrackKind::Video => {
                let mut aus = Vec::new();
                if let Ok(Some(au)) = t.h264.push(p.sequence, p.timestamp, p.marker, p.payload) {
                    aus.push(au);
                }
                while let Some(au) = t.h264.pull() {
                    aus.push(au);
                }
                for au in aus {
                    let ticks = self.tracks[track].extend(au.timestamp);
                    self.video(track, ticks, au)?;
                }
            }
            TrackKind::Audio => {
                let ticks = t.extend(p.timestamp);
                let us = ticks * 1_000_000 / t.rate();
                let data = p.payload.to_vec();
                self.media(track, ticks, us, true, data)?;
            }
            TrackKind::Text => {
                let Ok(blocks) = t
                    .text
                    .push(p.sequence, p.timestamp, p.payload_type, p.payload)
                else {
                    return Ok(());
                };
                for b in blocks {
                    let ticks = self.tracks[track].extend(b.timestamp);
                    self.text(track, ticks, &b.text)?;
                }
            }
        }
        Ok(())
    }

    fn video(&mut self, track: usize, ticks: i64, au: h264::AccessUnit) -> anyhow::Result<()> {
        let us = ticks * 1_000_000 / self.tracks[track].rate();
        if au.is_keyframe {
            self.video_broken = false;
            let due = self
                .segment
                .as_ref()
                .is_none_or(|s| us - s.origin_us >= self.cfg.segment.as_micros() as i64);
            if due {
                let sps = au.nals.iter().find(|n| h264::nal_type(n) == 7);
                let pps = au.nals.iter().find(|n| h264::nal_type(n) == 8);
                if let (Some(sps), Some(pps)) = (sps, pps) {
                    self.tracks[track].spec.params = Some((sps.clone(), pps.clone()));
                }
                if let Some((sps, pps)) = self.tracks[track].spec.params.clone() {
                    self.close()?;
                    self.open(us, &sps, &pps)?;
                }
            }
        }
        if self.video_broken || !au.complete {
            self.video_broken = true;
            return Ok(());
        }
        let data = mp4::annexb_to_avcc(&au.to_annexb());
        self.media(track, ticks, us, au.is_keyframe, data)
    }

    fn media(
        &mut self,
        track: usize,
        ticks: i64,
        us: i64,
        sync: bool,
        data: Vec<u8>,
    ) -> anyhow::Result<()> {
        let rate = self.tracks[track].rate();
        let Some(out) = self.tracks[track].out else {
            return Ok(());
        };
        let Some(seg) = &mut self.segment else {
            return Ok(());
        };
        if us < seg.origin_us {
            return Ok(());
        }
        let time = (ticks - seg.origin_us * rate / 1_000_000).max(0) as u64;
        // Video in decode order with presentation times: decode times and offsets from the
        // reorder stage; audio as it comes.
        let due = if Some(out) == seg.video_out {
            seg.reorder.push(time, (sync, data))
        } else {
            vec![(time, 0, (sync, data))]
        };
        for (time, offset, (sync, data)) in due {
            seg.push(out, time, offset, sync, data)?;
        }
        Ok(())
    }

    /// T.140 text of the caption track: a line is a cue from its first block to the block
    /// that ends it (LINE SEPARATOR or newline).
    fn text(&mut self, track: usize, ticks: i64, text: &str) -> anyhow::Result<()> {
        let rate = self.tracks[track].rate();
        for c in text.chars() {
            let t = &mut self.tracks[track];
            match c {
                '\u{2028}' | '\n' | '\r' => {
                    if let Some((start, line)) = t.line.take() {
                        let end = ticks.max(start + rate / 2);
                        self.cue(start * 1000 / rate, end * 1000 / rate, line.trim(), track)?;
                    }
                }
                '\u{8}' => {
                    if let Some((_, l)) = &mut t.line {
                        l.pop();
                    }
                }
                '\u{feff}' => {}
                c => t
                    .line
                    .get_or_insert_with(|| (ticks, String::new()))
                    .1
                    .push(c),
            }
        }
        Ok(())
    }

    /// A caption from `start_ms` to `end_ms` (since the wall epoch): into the file where it
    /// starts (the previous one, still open for captions, when it started before the current
    /// one), clipped to that file's start.
    fn cue(&mut self, start_ms: i64, end_ms: i64, text: &str, track: usize) -> anyhow::Result<()> {
        let Some(out) = self.tracks[track].out else {
            return Ok(());
        };
        let in_current = self
            .segment
            .as_ref()
            .is_some_and(|s| start_ms * 1000 >= s.origin_us || self.prev.is_none());
        let seg = if in_current {
            self.segment.as_mut()
        } else {
            self.prev.as_mut()
        };
        let Some(seg) = seg else {
            return Ok(());
        };
        if text.is_empty() || end_ms * 1000 <= seg.origin_us {
            return Ok(());
        }
        let start = (start_ms - seg.origin_us / 1000).max(0) as u64;
        let end = (end_ms - seg.origin_us / 1000) as u64;
        let _ = seg.writer.push_text(out, start, (end - start) as u32, text);
        if !in_current {
            // The previous file has ended: its captions go out at once.
            if let Some(frag) = seg.writer.fragment() {
                write(&mut seg.mp4, &seg.mp4_path, &frag)?;
            }
        }
        let vtt_path = seg.mp4_path.with_extension("vtt");
        write(
            &mut seg.vtt,
            &vtt_path,
            mp4::webvtt_cue(start, end, text).as_bytes(),
        )
    }

    fn open(&mut self, origin_us: i64, sps: &[u8], pps: &[u8]) -> anyhow::Result<()> {
        let (width, height) = h264::parse_sps(sps).map_or((0, 0), |s| (s.width, s.height));
        let mut configs = Vec::new();
        let mut have_text = false;
        for t in &mut self.tracks {
            t.out = match t.spec.kind {
                TrackKind::Video
                    if !configs
                        .iter()
                        .any(|c| matches!(c, TrackConfig::H264 { .. })) =>
                {
                    configs.push(TrackConfig::H264 {
                        width: width as u16,
                        height: height as u16,
                        sps: sps.to_vec(),
                        pps: pps.to_vec(),
                    });
                    Some(configs.len() - 1)
                }
                TrackKind::Audio
                    if !configs
                        .iter()
                        .any(|c| matches!(c, TrackConfig::Opus { .. })) =>
                {
                    configs.push(TrackConfig::Opus {
                        channels: 2,
                        pre_skip: 312,
                    });
                    Some(configs.len() - 1)
                }
                TrackKind::Text if !have_text => {
                    have_text = true;
                    configs.push(TrackConfig::Text);
                    Some(configs.len() - 1)
                }
                _ => None,
            };
        }
        let start = self.epoch + Duration::from_micros(origin_us.max(0) as u64);
        let mp4_path = self.cfg.dir.join(format!(
            "{}-{}.mp4",
            file_stem(&self.cfg.name),
            utc_stamp(start)
        ));
        let mut mp4 =
            File::create(&mp4_path).with_context(|| format!("creating {}", mp4_path.display()))?;
        let vtt_path = mp4_path.with_extension("vtt");
        let mut vtt =
            File::create(&vtt_path).with_context(|| format!("creating {}", vtt_path.display()))?;
        let writer = Mp4Writer::new(configs);
        write(&mut mp4, &mp4_path, &writer.init_segment())?;
        write(&mut vtt, &vtt_path, mp4::WEBVTT_HEADER.as_bytes())?;
        info!(file = %mp4_path.display(), "recording");
        let video_out = self
            .tracks
            .iter()
            .find(|t| t.spec.kind == TrackKind::Video)
            .and_then(|t| t.out);
        // A stream seen with B-frames starts its next file expecting them.
        let reorder = match self.segment.as_ref().or(self.prev.as_ref()) {
            Some(s) if s.reorder.reordering() => mp4::Reorder::expecting_reordering(),
            _ => mp4::Reorder::default(),
        };
        self.segment = Some(Segment {
            mp4,
            vtt,
            mp4_path,
            writer,
            origin_us,
            reorder,
            video_out,
        });
        Ok(())
    }

    /// Writes the held samples of the open file and closes it.
    fn close(&mut self) -> anyhow::Result<()> {
        let Some(mut seg) = self.segment.take() else {
            return Ok(());
        };
        if let Some(out) = seg.video_out {
            while let Some((time, offset, (sync, data))) = seg.reorder.pop() {
                seg.push(out, time, offset, sync, data)?;
            }
        }
        if let Some(frag) = seg.writer.finish() {
            write(&mut seg.mp4, &seg.mp4_path, &frag)?;
        }
        info!(file = %seg.mp4_path.display(), "recording closed");
        self.prev = Some(seg);
        Ok(())
    }
}

impl Segment {
    fn push(
        &mut self,
        out: usize,
        time: u64,
        offset: i32,
        sync: bool,
        data: Vec<u8>,
    ) -> anyhow::Result<()> {
        match self.writer.push_offset(out, time, offset, sync, data) {
            Ok(Some(frag)) => write(&mut self.mp4, &self.mp4_path, &frag),
            Ok(None) => Ok(()),
            // A timestamp that went back (a stream restarted): the sample is left out.
            Err(e) => {
                warn!("recording: {e}");
                Ok(())
            }
        }
    }
}

/// Appends `bytes`; on failure (a full disk) cuts off what got written, so the file still ends
/// at its last complete fragment.
fn write(file: &mut File, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let before = file.stream_position().ok();
    file.write_all(bytes).or_else(|e| {
        if let Some(len) = before {
            let _ = file.set_len(len);
        }
        Err(e).with_context(|| format!("writing {}", path.display()))
    })
}

/// A duration such as `1h`, `30m`, `90s`, `1.5h` or `45` (seconds), 1 s to 7 days.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = match t.char_indices().last() {
        Some((i, 'h')) => (&t[..i], 3600.0),
        Some((i, 'm')) => (&t[..i], 60.0),
        Some((i, 's')) => (&t[..i], 1.0),
        _ => (t, 1.0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 1h, 30m or 90s"))?;
    let secs = v * unit;
    if !(1.0..=7.0 * 86_400.0).contains(&secs) {
        return Err(format!("duration {s} out of range (1s..7 days)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The stream path as a file name: `/` and anything odd become `_`.
fn file_stem(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "stream".into()
    } else {
        s
    }
}

/// `YYYYMMDD-HHMMSS` (UTC) of `t`.
fn utc_stamp(t: SystemTime) -> String {
    mp4::utc_stamp(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(file_stem("live"), "live");
        assert_eq!(file_stem("cam/1 a"), "cam_1_a");
        assert_eq!(file_stem(""), "stream");
        let t = UNIX_EPOCH + Duration::from_secs(1_764_902_096);
        assert_eq!(utc_stamp(t), "20251205-023456");
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101-000000");
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
