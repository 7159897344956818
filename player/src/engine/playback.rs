//! The engine's threads: the network side (tokio: RTSP client + recorder) and the playback
//! loop (timeline -> recorded units -> decoders -> audio sink / newest picture).
//!
//! Everything received is appended to the recording first; playback always reads back from
//! the recording, live or not, so "live" is simply the playhead sitting at the recording's
//! edge, and pause, seek, rewind and fast-forward need no special cases.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use livecast_proto::codec::Codec;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::api::*;
use super::audio_out::AudioSink;
use super::decode::{AudioDecoder, VideoDecoder};
use super::net::{self, NetConfig, NetControl, NetEvent, NetStats};
use super::recording::{read_index, RecordingReader, RecordingWriter, SharedIndex};
use super::report::{av_offset, CaptionReport, Percentiles, Report};
use super::timeline::Timeline;
use super::EngineHandle;

/// How far ahead of the playhead audio is handed to the output.
const AUDIO_LEAD_US: i64 = 20_000;
/// Default distance from the live edge: covers the encoder's frame pacing and the jitter
/// buffer on a LAN; raised when the measured jitter needs it.
const BASE_LIVE_DELAY_US: i64 = 40_000;
/// If decoding falls this far behind the playhead, skip to the next keyframe.
const MAX_VIDEO_LAG_US: i64 = 1_000_000;
/// Playback loop period when idle.
const TICK: Duration = Duration::from_millis(4);

fn wall_us() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// What the recorder shares with the playback loop.
#[derive(Default)]
struct RecorderShared {
    /// Set when the first description arrives (the writer exists from then on).
    index: Option<SharedIndex>,
    path: Option<PathBuf>,
    conn: ConnState,
    stats: NetStats,
    reconnects: u64,
    error: Option<String>,
}

type Shared = Arc<Mutex<RecorderShared>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, RecorderShared> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts the engine: network + recorder (for a URL) and the playback loop.
pub fn start(cfg: EngineConfig) -> anyhow::Result<EngineHandle> {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (frame_tx, frame_rx) = watch::channel(None);
    let (status_tx, status_rx) = watch::channel(Status {
        speed: 1.0,
        volume: cfg.volume,
        ..Status::default()
    });
    let report = Arc::new(Mutex::new(Report {
        source: match &cfg.source {
            Source::Url(u) => u.clone(),
            Source::File(p) => p.display().to_string(),
        },
        ..Report::default()
    }));
    let shared: Shared = Arc::default();
    let mut net_ctl = None;
    let mut net_thread = None;
    let mut file_reader = None;
    match &cfg.source {
        Source::Url(url) => {
            let (ctl_tx, ctl_rx) = mpsc::channel(8);
            net_ctl = Some(ctl_tx);
            let ncfg = NetConfig {
                url: url.clone(),
                transport: cfg.transport,
                low_latency: cfg.low_latency,
            };
            let sh = shared.clone();
            let record = cfg.record.clone();
            net_thread = Some(
                std::thread::Builder::new()
                    .name("livecast-net".into())
                    .spawn(move || net_and_record(ncfg, ctl_rx, sh, record))
                    .context("spawn network thread")?,
            );
        }
        Source::File(path) => {
            let (reader, index) = RecordingReader::open(path)
                .with_context(|| format!("opening recording {}", path.display()))?;
            if reader.ignored_tail() > 0 {
                warn!(
                    bytes = reader.ignored_tail(),
                    "recording ends in an incomplete record (the player was stopped mid-write?); playing what is complete"
                );
            }
            let mut s = lock(&shared);
            s.index = Some(Arc::new(RwLock::new(index)));
            s.path = Some(path.clone());
            s.conn = ConnState::Offline;
            drop(s);
            file_reader = Some(reader);
        }
    }
    let rep = report.clone();
    let join = std::thread::Builder::new()
        .name("livecast-playback".into())
        .spawn(move || {
            let mut p = Playback::new(cfg, shared, frame_tx, status_tx, rep, file_reader);
            p.run(cmd_rx, net_ctl);
            if let Some(t) = net_thread {
                let _ = t.join();
            }
        })
        .context("spawn playback thread")?;
    Ok(EngineHandle {
        commands: cmd_tx,
        frames: frame_rx,
        status: status_rx,
        report,
        join: Some(join),
    })
}

/// The network thread: runs the RTSP client and appends everything to the recording.
fn net_and_record(
    cfg: NetConfig,
    control: mpsc::Receiver<NetControl>,
    shared: Shared,
    record: Option<PathBuf>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            lock(&shared).conn =
                ConnState::Failed(format!("cannot start the network runtime: {e}"));
            return;
        }
    };
    rt.block_on(async move {
        let (ev_tx, mut ev_rx) = mpsc::channel(1024);
        let net = tokio::spawn(net::run(cfg, ev_tx, control));
        let mut writer: Option<RecordingWriter> = None;
        while let Some(ev) = ev_rx.recv().await {
            match ev {
                NetEvent::Described { tracks, sdp } => {
                    let res = match writer.as_mut() {
                        Some(w) => w.set_description(&tracks, &sdp),
                        None => {
                            let w = match &record {
                                Some(p) => RecordingWriter::create(p, &tracks, &sdp),
                                None => RecordingWriter::create_temp(&tracks, &sdp),
                            };
                            w.map(|w| {
                                let mut s = lock(&shared);
                                s.index = Some(w.index());
                                s.path = Some(w.path().to_path_buf());
                                info!(path = %w.path().display(), "recording");
                                writer = Some(w);
                            })
                        }
                    };
                    if let Err(e) = res {
                        let msg = format!("cannot write the recording: {e}");
                        warn!("{msg}");
                        lock(&shared).error = Some(msg);
                    }
                }
                NetEvent::Unit(u) => {
                    if let Some(w) = writer.as_mut() {
                        if let Err(e) = w.append(&u) {
                            warn!("recording append failed: {e}");
                            lock(&shared).error = Some(format!("recording: {e}"));
                        }
                    }
                }
                NetEvent::State(s) => {
                    let mut sh = lock(&shared);
                    if matches!(s, ConnState::Reconnecting { .. })
                        && !matches!(sh.conn, ConnState::Reconnecting { .. })
                    {
                        sh.reconnects += 1;
                    }
                    sh.conn = s;
                }
                NetEvent::Stats(st) => lock(&shared).stats = st,
            }
        }
        let _ = net.await;
        // A temporary recording is removed when `writer` drops here.
        drop(writer);
    });
}

struct Playback {
    shared: Shared,
    frame_tx: watch::Sender<Option<VideoFrame>>,
    status_tx: watch::Sender<Status>,
    report: Arc<Mutex<Report>>,
    reader: Option<RecordingReader>,
    index: Option<SharedIndex>,
    timeline: Timeline,
    started: Instant,
    sink: AudioSink,
    vdec: VideoDecoder,
    adec: AudioDecoder,
    video_track: Option<usize>,
    audio_track: Option<usize>,
    video_next: usize,
    audio_next: usize,
    last_jumps: u64,
    captions_enabled: bool,
    muted: bool,
    volume: f32,
    warnings: Vec<String>,
    // measurements
    latencies: Vec<f64>,
    flashes: Vec<(i64, i64)>,
    beeps: Vec<(i64, i64)>,
    was_white: bool,
    frames_shown: u64,
    audio_decoded: u64,
    size: (u32, u32),
    fps_window: (Instant, u64, f64),
    first_frame: Option<f64>,
    last_status: Instant,
    is_file: bool,
}

impl Playback {
    fn new(
        cfg: EngineConfig,
        shared: Shared,
        frame_tx: watch::Sender<Option<VideoFrame>>,
        status_tx: watch::Sender<Status>,
        report: Arc<Mutex<Report>>,
        reader: Option<RecordingReader>,
    ) -> Self {
        let now = Instant::now();
        let (sink, warning) = AudioSink::open(cfg.audio_output);
        sink.set_volume(cfg.volume);
        let is_file = matches!(cfg.source, Source::File(_));
        Self {
            volume: cfg.volume,
            shared,
            frame_tx,
            status_tx,
            report,
            reader,
            index: None,
            timeline: Timeline::new(BASE_LIVE_DELAY_US, now),
            started: now,
            sink,
            vdec: VideoDecoder::new().expect("openh264 is built in (source feature)"),
            adec: AudioDecoder::new().expect("libopus is built in and 48 kHz stereo is valid"),
            video_track: None,
            audio_track: None,
            video_next: 0,
            audio_next: 0,
            last_jumps: 0,
            captions_enabled: true,
            muted: false,
            warnings: warning.into_iter().collect(),
            latencies: Vec::new(),
            flashes: Vec::new(),
            beeps: Vec::new(),
            was_white: false,
            frames_shown: 0,
            audio_decoded: 0,
            size: (0, 0),
            fps_window: (now, 0, 0.0),
            first_frame: None,
            last_status: now,
            is_file,
        }
    }

    fn run(
        &mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        net_ctl: Option<mpsc::Sender<NetControl>>,
    ) {
        loop {
            let now = Instant::now();
            loop {
                match commands.try_recv() {
                    Ok(Command::Stop) | Err(mpsc::error::TryRecvError::Disconnected) => {
                        if let Some(ctl) = &net_ctl {
                            let _ = ctl.try_send(NetControl::Stop);
                        }
                        self.finish();
                        return;
                    }
                    Ok(cmd) => self.command(cmd, now, net_ctl.as_ref()),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                }
            }
            if self.index.is_none() {
                self.attach();
            }
            if self.index.is_some() {
                self.step(now);
            }
            if now.duration_since(self.last_status) >= Duration::from_millis(100) {
                self.publish_status(now);
            }
            std::thread::sleep(TICK);
        }
    }

    /// Picks up the recording once the recorder has created it.
    fn attach(&mut self) {
        let (index, path) = {
            let s = lock(&self.shared);
            (s.index.clone(), s.path.clone())
        };
        let (Some(index), Some(path)) = (index, path) else {
            return;
        };
        if self.reader.is_none() {
            match RecordingReader::attach(&path) {
                Ok(r) => self.reader = Some(r),
                Err(e) => {
                    warn!("cannot read the recording back: {e}");
                    return;
                }
            }
        }
        let now = Instant::now();
        {
            let idx = read_index(&index);
            self.video_track = idx.find_track("video");
            self.audio_track = idx.find_track("audio");
            if self.is_file {
                if let (Some(s), Some(e)) = (idx.start_us(), idx.end_us()) {
                    self.timeline.set_range(s, e, now);
                    self.timeline.seek(s, now);
                }
            }
        }
        self.index = Some(index);
        self.last_jumps = self.timeline.jumps();
        self.sink.set_paused(!self.timeline.playing());
    }

    fn command(&mut self, cmd: Command, now: Instant, net_ctl: Option<&mpsc::Sender<NetControl>>) {
        let before = self.timeline.position(now);
        match cmd {
            Command::Play => self.timeline.play(now),
            Command::Pause => self.timeline.pause(now),
            Command::TogglePause => self.timeline.toggle(now),
            Command::Seek(d) => {
                if let Some(s) = self.timeline.start_us() {
                    self.timeline.seek(s + d.as_micros() as i64, now);
                }
            }
            Command::SeekBy(ms) => self.timeline.seek_by(ms * 1000, now),
            Command::SetSpeed(s) => self.timeline.set_speed(s, now),
            Command::GoLive => self.timeline.go_live(now),
            Command::SetVolume(v) => {
                self.volume = v.clamp(0.0, 1.0);
                self.sink.set_volume(self.volume);
            }
            Command::ToggleMute => self.muted = !self.muted,
            Command::SetCaptions(on) => self.captions_enabled = on,
            Command::StreamPause | Command::StreamResume => {
                if let Some(ctl) = net_ctl {
                    let c = if cmd == Command::StreamPause {
                        NetControl::Pause
                    } else {
                        NetControl::Resume
                    };
                    let _ = ctl.try_send(c);
                }
            }
            Command::Stop => {}
        }
        self.sink.set_paused(!self.timeline.playing());
        self.sink.set_speed(self.timeline.speed());
        self.sink
            .set_muted(self.muted || self.timeline.audio_muted());
        let after = self.timeline.position(now);
        let seeked = matches!(cmd, Command::Seek(_) | Command::SeekBy(_) | Command::GoLive);
        if seeked && after != before {
            self.reposition(after);
        }
        self.publish_status(now);
    }

    /// Restarts decoding at `target`: video from the keyframe at or before it (showing the
    /// picture at `target` at once), audio from the first packet at or after it.
    fn reposition(&mut self, target: i64) {
        let Some(index) = self.index.clone() else {
            return;
        };
        self.sink.clear();
        let t0 = Instant::now();
        let (vplan, audio_next) = {
            let idx = read_index(&index);
            let vplan = self.video_track.and_then(|v| {
                let k = idx
                    .keyframe_at_or_before(v, target)
                    .or_else(|| idx.keyframe_at_or_after(v, target))?;
                let last = idx.last_at_or_before(v, target).unwrap_or(k).max(k);
                Some((k, last))
            });
            let audio_next = self
                .audio_track
                .and_then(|a| idx.first_at_or_after(a, target))
                .unwrap_or(0);
            (vplan, audio_next)
        };
        self.audio_next = audio_next;
        if let Some((k, last)) = vplan {
            if let Err(e) = self.vdec.reset() {
                warn!("{e:#}");
            }
            self.video_next = k;
            self.decode_video_through(last, true);
        }
        debug!(
            ms = t0.elapsed().as_secs_f64() * 1e3,
            "seek to {target} decoded"
        );
    }

    /// Decodes video entries from `video_next` through `last`, converting only the last one
    /// (which is shown).
    fn decode_video_through(&mut self, last: usize, show: bool) {
        let (Some(index), Some(v)) = (self.index.clone(), self.video_track) else {
            return;
        };
        let entries: Vec<_> = {
            let idx = read_index(&index);
            let e = idx.entries(v);
            if self.video_next > last || last >= e.len() {
                return;
            }
            e[self.video_next..=last].to_vec()
        };
        let n = entries.len();
        for (i, entry) in entries.iter().enumerate() {
            let Some(reader) = self.reader.as_mut() else {
                return;
            };
            let unit = match reader.read(entry) {
                Ok(u) => u,
                Err(e) => {
                    warn!("reading the recording: {e}");
                    continue;
                }
            };
            let is_last = i + 1 == n;
            let pic = self
                .vdec
                .decode(&unit.data, entry.keyframe(), is_last && show);
            if let Some(pic) = pic {
                self.show(pic, entry.time_us, unit.capture_us, unit.capture_from_sr);
            }
        }
        self.video_next = last + 1;
    }

    fn show(&mut self, pic: super::decode::Picture, time_us: i64, capture_us: i64, from_sr: bool) {
        let now_wall = wall_us();
        if self.first_frame.is_none() {
            let ms = self.started.elapsed().as_secs_f64() * 1e3;
            info!(ms, "first picture");
            self.first_frame = Some(ms);
        }
        if from_sr && self.timeline.at_live(Instant::now()) {
            self.latencies.push((now_wall - capture_us) as f64 / 1000.0);
        }
        let white = pic.mean_luma > 200.0;
        if white && !self.was_white {
            self.flashes
                .push((time_us, mono_us(self.started, Instant::now())));
        }
        self.was_white = white;
        self.size = (pic.width, pic.height);
        self.frames_shown += 1;
        let start = self.timeline.start_us().unwrap_or(time_us);
        let _ = self.frame_tx.send(Some(VideoFrame {
            width: pic.width,
            height: pic.height,
            rgba: Arc::new(pic.rgba),
            position: Duration::from_micros((time_us - start).max(0) as u64),
        }));
    }

    /// One pass of the playback loop.
    fn step(&mut self, now: Instant) {
        let Some(index) = self.index.clone() else {
            return;
        };
        let (edge, start) = {
            let idx = read_index(&index);
            (idx.end_us(), idx.start_us())
        };
        let Some(edge) = edge else {
            return;
        };
        if self.is_file {
            if let Some(s) = start {
                self.timeline.set_range(s, edge, now);
            }
        } else {
            self.timeline.set_live_edge(edge, now);
            let jitter_delay = lock(&self.shared).stats.jitter_delay_ms;
            let delay = BASE_LIVE_DELAY_US.max((jitter_delay * 1000.0) as i64 + 20_000);
            if (delay - self.timeline.live_delay_us()).abs() > 5_000 {
                self.timeline.set_live_delay(delay, now);
            }
        }
        self.timeline.tick(now);
        let audible = self.timeline.playing() && !self.timeline.audio_muted() && !self.muted;
        if audible {
            if let Some(p) = self.sink.played_us(now) {
                self.timeline.audio_clock(p, now);
            }
        }
        if self.timeline.jumps() != self.last_jumps {
            self.last_jumps = self.timeline.jumps();
            let pos = self.timeline.position(now);
            self.reposition(pos);
        }
        let pos = self.timeline.position(now);
        self.step_video(&index, pos);
        self.step_audio(&index, pos);
        for (t, at) in self.sink.take_onsets() {
            self.beeps.push((t, mono_us(self.started, at)));
        }
    }

    fn step_video(&mut self, index: &SharedIndex, pos: i64) {
        let Some(v) = self.video_track else { return };
        let (last_due, skip_to) = {
            let idx = read_index(index);
            let entries = idx.entries(v);
            let Some(last_due) = idx.last_at_or_before(v, pos) else {
                return;
            };
            if last_due < self.video_next || self.video_next >= entries.len() {
                return;
            }
            // Too far behind (slow decoder, long stall): skip ahead to a keyframe.
            let lag = pos - entries[self.video_next].time_us;
            let skip = (lag > MAX_VIDEO_LAG_US)
                .then(|| idx.keyframe_at_or_before(v, pos))
                .flatten()
                .filter(|k| *k > self.video_next);
            (last_due, skip)
        };
        if let Some(k) = skip_to {
            debug!(
                from = self.video_next,
                to = k,
                "video behind; skipping to a keyframe"
            );
            self.video_next = k;
        }
        self.decode_video_through(last_due, true);
    }

    fn step_audio(&mut self, index: &SharedIndex, pos: i64) {
        let Some(a) = self.audio_track else { return };
        if !self.timeline.playing() {
            return;
        }
        let muted = self.timeline.audio_muted();
        let due: Vec<_> = {
            let idx = read_index(index);
            let e = idx.entries(a);
            let mut out = Vec::new();
            while let Some(entry) = e.get(self.audio_next) {
                if entry.time_us > pos + AUDIO_LEAD_US {
                    break;
                }
                self.audio_next += 1;
                // Packets already behind the playhead would only delay the output.
                if entry.time_us + 20_000 < pos - 100_000 {
                    continue;
                }
                out.push(*entry);
            }
            out
        };
        for entry in due {
            if muted {
                continue;
            }
            let Some(reader) = self.reader.as_mut() else {
                return;
            };
            match reader.read(&entry) {
                Ok(unit) => {
                    let pcm = self.adec.decode(&unit.data);
                    self.audio_decoded += 1;
                    self.sink.push(entry.time_us, pcm);
                }
                Err(e) => warn!("reading the recording: {e}"),
            }
        }
    }

    fn publish_status(&mut self, now: Instant) {
        self.last_status = now;
        let (conn, stats, path) = {
            let s = lock(&self.shared);
            if let Some(e) = &s.error {
                if !self.warnings.contains(e) {
                    self.warnings.push(e.clone());
                }
            }
            (s.conn.clone(), s.stats.clone(), s.path.clone())
        };
        // Frames per second shown over the last second.
        let (t0, n0, fps) = self.fps_window;
        let dt = now.duration_since(t0).as_secs_f64();
        if dt >= 1.0 {
            self.fps_window = (now, self.frames_shown, (self.frames_shown - n0) as f64 / dt);
        }
        let start = self.timeline.start_us();
        let recorded_end = match (start, self.timeline.live_edge_us()) {
            (Some(s), Some(e)) => Duration::from_micros((e - s).max(0) as u64),
            _ => Duration::ZERO,
        };
        let position = Duration::from_micros(self.timeline.position_from_start(now).max(0) as u64);
        let codecs: Vec<Codec> = self
            .index
            .as_ref()
            .map(|i| read_index(i).tracks().map(|t| t.codec).collect())
            .unwrap_or_default();
        let st = Status {
            conn,
            position,
            recorded_end,
            playing: self.timeline.playing(),
            speed: self.timeline.speed(),
            at_live: !self.is_file && self.timeline.at_live(now),
            volume: self.volume,
            muted: self.muted,
            captions_enabled: self.captions_enabled,
            has_captions: false,
            caption_text: Vec::new(),
            stats: Stats {
                width: self.size.0,
                height: self.size.1,
                fps: self.fps_window.2.max(if dt < 1.0 { fps } else { 0.0 }),
                bitrate: stats.bitrate_bps,
                packets_received: stats.packets_received,
                packets_lost: stats.packets_lost,
                jitter_ms: stats.jitter_ms,
                latency_ms: self.latencies.last().copied(),
                recorded: recorded_end,
                video_frames_decoded: self.vdec.decoded,
                audio_frames_decoded: self.audio_decoded,
            },
            codecs: codecs
                .into_iter()
                .filter(|c| *c != Codec::Unknown)
                .collect(),
            warnings: self.warnings.clone(),
        };
        let _ = self.status_tx.send(st.clone());
        let mut r = self.report.lock().unwrap_or_else(|p| p.into_inner());
        r.duration_s = self.started.elapsed().as_secs_f64();
        r.video.frames_decoded = self.vdec.decoded;
        r.video.frames_shown = self.frames_shown;
        r.video.width = self.size.0;
        r.video.height = self.size.1;
        r.video.decode_errors = self.vdec.errors;
        r.audio.frames_decoded = self.audio_decoded;
        r.audio.decode_errors = self.adec.errors;
        r.audio.output = self.sink.description.clone();
        r.rtp.packets_received = stats.packets_received;
        r.rtp.packets_lost = stats.packets_lost;
        r.rtp.jitter_ms = stats.jitter_ms;
        r.rtp.tcp = stats.tcp;
        r.first_frame_ms = self.first_frame;
        r.latency_ms = Percentiles::of(&self.latencies);
        let (off, pairs) = av_offset(&self.flashes, &self.beeps);
        r.av_offset_ms = off;
        r.av_pairs = pairs;
        r.recorded_s = recorded_end.as_secs_f64();
        r.recording = path.map(|p| p.display().to_string());
        r.reconnects = lock(&self.shared).reconnects;
        r.final_state = format!("{:?}", st.conn);
        r.captions = Vec::<CaptionReport>::new();
    }

    fn finish(&mut self) {
        self.publish_status(Instant::now());
        self.sink.set_paused(true);
    }
}

/// Microseconds of `t` since `base`, on the monotonic clock.
fn mono_us(base: Instant, t: Instant) -> i64 {
    if t >= base {
        t.duration_since(base).as_micros() as i64
    } else {
        -(base.duration_since(t).as_micros() as i64)
    }
}
