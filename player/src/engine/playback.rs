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
use super::captions::{ChatLines, CueBuilder};
use super::decode::{AudioDecoder, VideoDecoder};
use super::net::{self, NetConfig, NetControl, NetEvent, NetStats};
use super::unit::MediaKind;
use super::recording::{read_index, IndexEntry, RecordingReader, RecordingWriter, SharedIndex};
use super::report::{
    av_offset, CaptionBlockReport, CaptionReport, ChatReport, Percentiles, Report,
};
use super::timeline::Timeline;
use super::EngineHandle;

/// How far ahead of the playhead audio is handed to the output.
const AUDIO_LEAD_US: i64 = super::report::AUDIO_LEAD_MS * 1000;
/// Default distance from the live edge: covers the encoder's frame pacing and the jitter
/// buffer on a LAN; raised when the measured jitter needs it.
const BASE_LIVE_DELAY_US: i64 = 40_000;
/// While following live, a playhead this far behind the live limit (an audio device or
/// scheduling hiccup, which the audio master clock would otherwise keep forever) skips ahead.
const LIVE_CATCH_UP_US: i64 = 40_000;
/// Call mode: the same, as small as a LAN allows (the jitter buffer adds what jitter needs).
const CALL_LIVE_DELAY_US: i64 = 20_000;
/// The live delay is the jitter buffer's delay plus this margin (call mode: half).
const LIVE_DELAY_MARGIN_US: i64 = 20_000;
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
    /// The stream's SDP `s=`.
    title: Option<String>,
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
                low_latency: cfg.low_latency || cfg.call,
                call: cfg.call,
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
                    if let Ok(d) = livecast_proto::sdp::parse(&sdp) {
                        let t = d.session_name.trim();
                        lock(&shared).title = (!t.is_empty()).then(|| t.to_owned());
                    }
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

/// The index entries of `track` recorded since `*next`; moves `*next` past them.
fn new_entries(index: &SharedIndex, track: usize, next: &mut usize) -> Vec<IndexEntry> {
    let idx = read_index(index);
    let new = idx.entries(track).get(*next..).unwrap_or_default().to_vec();
    *next += new.len();
    new
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
    text_track: Option<usize>,
    chat_track: Option<usize>,
    chat_next: usize,
    /// Chat received so far, and the T.140 text it comes from.
    chat: Vec<ChatLine>,
    chat_lines: ChatLines,
    call: bool,
    video_next: usize,
    audio_next: usize,
    /// Every caption block recorded so far, `(time_us, text)`, and how many index entries of
    /// the text track they cover. Text is small: hours of captions are a few hundred kB.
    text_blocks: Vec<(i64, String)>,
    /// For the report: (spoken, arrival) wall-clock µs of each block.
    text_times: Vec<(i64, i64)>,
    text_next: usize,
    /// Cues of the whole session: built block by block, listed when blocks arrive.
    cue_builder: CueBuilder,
    cues: Vec<super::captions::Cue>,
    notice: Option<String>,
    last_jumps: u64,
    /// Times the playhead skipped ahead to stay live.
    live_catch_ups: u64,
    captions_enabled: bool,
    muted: bool,
    volume: f32,
    warnings: Vec<String>,
    // measurements
    latencies: Vec<f64>,
    audio_latencies: Vec<f64>,
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
    captions_out: Option<PathBuf>,
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
        let sink = AudioSink::open(cfg.audio_output);
        if let Some(tap) = &cfg.playout_tap {
            sink.0.set_tap(tap.clone());
        }
        Self::with_sink(cfg, shared, frame_tx, status_tx, report, reader, sink)
    }

    fn with_sink(
        cfg: EngineConfig,
        shared: Shared,
        frame_tx: watch::Sender<Option<VideoFrame>>,
        status_tx: watch::Sender<Status>,
        report: Arc<Mutex<Report>>,
        reader: Option<RecordingReader>,
        (sink, warning): (AudioSink, Option<String>),
    ) -> Self {
        let now = Instant::now();
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
            timeline: Timeline::new(
                if cfg.call {
                    CALL_LIVE_DELAY_US
                } else {
                    BASE_LIVE_DELAY_US
                },
                now,
            ),
            started: now,
            sink,
            vdec: VideoDecoder::new().expect("openh264 is built in (source feature)"),
            adec: AudioDecoder::new().expect("libopus is built in and 48 kHz stereo is valid"),
            video_track: None,
            audio_track: None,
            text_track: None,
            chat_track: None,
            chat_next: 0,
            chat: Vec::new(),
            chat_lines: ChatLines::new(),
            call: cfg.call,
            video_next: 0,
            audio_next: 0,
            text_blocks: Vec::new(),
            text_times: Vec::new(),
            text_next: 0,
            cue_builder: CueBuilder::new(),
            cues: Vec::new(),
            notice: None,
            last_jumps: 0,
            live_catch_ups: 0,
            captions_enabled: true,
            muted: false,
            warnings: warning.into_iter().collect(),
            latencies: Vec::new(),
            audio_latencies: Vec::new(),
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
            captions_out: cfg.captions_out.clone(),
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
                self.attach(now);
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
    fn attach(&mut self, now: Instant) {
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
        {
            let idx = read_index(&index);
            self.video_track = idx.find_track(MediaKind::Video);
            self.audio_track = idx.find_track(MediaKind::Audio);
            self.text_track = idx.find_track(MediaKind::Captions);
            self.chat_track = idx.find_track(MediaKind::Chat);
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
            Command::ExportCaptions(ref path) => self.export_captions(path),
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
            let (base, margin) = if self.call {
                (CALL_LIVE_DELAY_US, LIVE_DELAY_MARGIN_US / 2)
            } else {
                (BASE_LIVE_DELAY_US, LIVE_DELAY_MARGIN_US)
            };
            let delay = base.max((jitter_delay * 1000.0) as i64 + margin);
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
        if !self.is_file {
            self.catch_up_live(&index, now);
        }
        if self.timeline.jumps() != self.last_jumps {
            self.last_jumps = self.timeline.jumps();
            let pos = self.timeline.position(now);
            self.reposition(pos);
        }
        let pos = self.timeline.position(now);
        self.step_video(&index, pos);
        self.step_audio(&index, pos);
        self.step_text(&index);
        self.step_chat(&index);
        for (t, at) in self.sink.take_onsets() {
            self.beeps.push((t, mono_us(self.started, at)));
        }
    }

    /// Live latency must not ratchet up: when following live at 1x and the playhead has
    /// fallen more than [`LIVE_CATCH_UP_US`] behind the live limit, jump back to live. Audio
    /// restarts there (what was queued is dropped: a short skip, as a live call would);
    /// video simply decodes forward to the new position, without a keyframe seek.
    fn catch_up_live(&mut self, index: &SharedIndex, now: Instant) {
        let t = &self.timeline;
        if !(t.following_live() && t.playing() && t.speed() == 1.0) {
            return;
        }
        let Some(limit) = t.live_limit_us() else {
            return;
        };
        let behind_us = limit - t.position(now);
        if behind_us <= LIVE_CATCH_UP_US {
            return;
        }
        self.timeline.go_live(now);
        self.last_jumps = self.timeline.jumps();
        self.sink.clear();
        let pos = self.timeline.position(now);
        if let Some(a) = self.audio_track {
            self.audio_next = read_index(index).first_at_or_after(a, pos).unwrap_or(0);
        }
        self.live_catch_ups += 1;
        debug!(behind_us, "caught up with live");
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
        let live = !self.is_file && self.timeline.at_live(Instant::now());
        for entry in due {
            if muted {
                continue;
            }
            let Some(reader) = self.reader.as_mut() else {
                return;
            };
            match reader.read(&entry) {
                Ok(unit) => {
                    if live && unit.capture_from_sr {
                        // Due at the output when the playhead reaches it.
                        let due_wall = wall_us() + (entry.time_us - pos).max(0);
                        self.audio_latencies
                            .push((due_wall - unit.capture_us) as f64 / 1000.0);
                    }
                    let pcm = self.adec.decode(&unit.data);
                    self.audio_decoded += 1;
                    self.sink.push(entry.time_us, pcm);
                }
                Err(e) => warn!("reading the recording: {e}"),
            }
        }
    }

    /// Reads caption blocks recorded since the last call.
    fn step_text(&mut self, index: &SharedIndex) {
        let Some(t) = self.text_track else { return };
        let new = new_entries(index, t, &mut self.text_next);
        if new.is_empty() {
            return;
        }
        for entry in new {
            let Some(reader) = self.reader.as_mut() else {
                return;
            };
            match reader.read(&entry) {
                Ok(unit) => {
                    let text = String::from_utf8_lossy(&unit.data).into_owned();
                    self.cue_builder.push(entry.time_us, &text);
                    self.text_times.push((unit.capture_us, unit.arrival_us));
                    self.text_blocks.push((entry.time_us, text));
                }
                Err(e) => warn!("reading the recording: {e}"),
            }
        }
        self.cues = self.cue_builder.cues();
    }

    /// Reads chat blocks recorded since the last call: chat is shown as it arrives, whatever
    /// the playhead. A line is a message once it ends (T.140 editing, [`ChatLines`]).
    fn step_chat(&mut self, index: &SharedIndex) {
        let Some(t) = self.chat_track else { return };
        for entry in new_entries(index, t, &mut self.chat_next) {
            let Some(reader) = self.reader.as_mut() else {
                return;
            };
            let unit = match reader.read(&entry) {
                Ok(u) => u,
                Err(e) => {
                    warn!("reading the recording: {e}");
                    continue;
                }
            };
            let text = String::from_utf8_lossy(&unit.data);
            for (text, sent_us) in self.chat_lines.push(unit.capture_us, &text) {
                info!(text = %text, "chat");
                self.chat.push(ChatLine {
                    text,
                    sent_unix_ms: sent_us / 1000,
                    arrival_unix_ms: unit.arrival_us / 1000,
                });
            }
        }
    }

    /// The caption rows for playhead `pos`.
    fn caption_rows(&self, pos: i64) -> Vec<String> {
        if !self.captions_enabled {
            return Vec::new();
        }
        // Lines older than a minute are long gone from the screen.
        let from = self
            .text_blocks
            .partition_point(|(t, _)| *t < pos - 60_000_000);
        super::captions::shown_at(&self.text_blocks[from..], pos)
    }

    fn export_captions(&mut self, path: &std::path::Path) {
        let origin = self.timeline.start_us().unwrap_or(0);
        let text = super::captions::render_for_path(path, &self.cues, origin);
        self.notice = Some(match std::fs::write(path, text) {
            Ok(()) => format!("{} captions written to {}", self.cues.len(), path.display()),
            Err(e) => format!("cannot write captions to {}: {e}", path.display()),
        });
        info!("{}", self.notice.as_deref().unwrap_or_default());
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
            has_captions: self.text_track.is_some(),
            caption_text: self.caption_rows(self.timeline.position(now)),
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
            notice: self.notice.clone(),
            title: lock(&self.shared).title.clone(),
            chat: self.chat.clone(),
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
        r.audio_latency_ms = Percentiles::of(&self.audio_latencies);
        r.title = st.title.clone();
        r.chat = self
            .chat
            .iter()
            .map(|c| ChatReport {
                sent_unix_ms: c.sent_unix_ms,
                arrival_unix_ms: c.arrival_unix_ms,
                text: c.text.clone(),
            })
            .collect();
        let (off, pairs) = av_offset(&self.flashes, &self.beeps);
        r.av_offset_ms = off;
        r.av_pairs = pairs;
        r.recorded_s = recorded_end.as_secs_f64();
        r.recording = path.map(|p| p.display().to_string());
        r.reconnects = lock(&self.shared).reconnects;
        r.final_state = format!("{:?}", st.conn);
        let origin = self.timeline.start_us().unwrap_or(0);
        r.captions = self
            .cues
            .iter()
            .map(|c| CaptionReport {
                start_ms: (c.start_us - origin) / 1000,
                end_ms: (c.end_us - origin) / 1000,
                text: c.text.clone(),
            })
            .collect();
        r.caption_blocks = self
            .text_times
            .iter()
            .zip(&self.text_blocks)
            .map(|(&(spoken, arrival), (_, text))| CaptionBlockReport {
                spoken_unix_ms: spoken / 1000,
                arrival_unix_ms: arrival / 1000,
                text: text.clone(),
            })
            .collect();
    }

    fn finish(&mut self) {
        if let Some(path) = self.captions_out.clone() {
            self.export_captions(&path);
        }
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

#[cfg(test)]
mod tests {
    //! The whole playback side driven by a test clock over a recording that grows as if it
    //! were received live: real H.264 and Opus, pictures that carry their frame number, a
    //! caption track. Pause, seek back, fast-forward, rewind, back to live and captions after
    //! a seek, checked on the pictures actually decoded.

    use super::*;
    use crate::engine::recording::RecordingWriter;
    use crate::engine::unit::{MediaUnit, TrackDesc};
    use livecast_server::encode::h264::{H264Config, H264Encoder};
    use livecast_server::encode::opus::OpusEncoder;
    use livecast_server::source::{AudioFrame, VideoFrame as RawFrame};

    const T0: i64 = 1_795_392_000_000_000;
    const FPS: i64 = 10;
    const W: u32 = 160;
    const H: u32 = 96;
    const SECS: i64 = 40;
    /// Captions arrive this long after they were spoken (whisper's delay).
    const TEXT_DELAY_US: i64 = 1_500_000;

    fn track(index: usize, media: &str, codec: Codec, pt: u8, rate: u32) -> TrackDesc {
        TrackDesc {
            index,
            media: media.into(),
            codec,
            payload_type: pt,
            clock_rate: rate,
            fmtp: Vec::new(),
            control_url: format!("rtsp://test/live/trackID={index}"),
            label: Default::default(),
        }
    }

    /// Frame `i`'s picture: 16 vertical bars, white for the 1 bits of `i`.
    fn picture(i: u64) -> Vec<u8> {
        let mut p = vec![128u8; (W * H * 3 / 2) as usize];
        for y in 0..H as usize {
            for x in 0..W as usize {
                let bit = x / 10;
                p[y * W as usize + x] = if (i >> bit) & 1 == 1 { 235 } else { 16 };
            }
        }
        p
    }

    fn frame_number(f: &VideoFrame) -> u64 {
        (0..16)
            .map(|bit| {
                let x = bit * 10 + 5;
                let px = f.rgba[((H as usize / 2) * W as usize + x) * 4];
                u64::from(px > 128) << bit
            })
            .sum()
    }

    fn unit(track: usize, t: i64, keyframe: bool, data: Vec<u8>) -> MediaUnit {
        MediaUnit {
            track,
            rtp_timestamp: 0,
            capture_us: t,
            capture_from_sr: true,
            arrival_us: t,
            keyframe,
            damaged: false,
            data,
        }
    }

    /// The session, in capture order: 10 fps video with a keyframe each second, Opus every
    /// 20 ms, two captions (spoken at 5 s and 25 s).
    fn session() -> Vec<MediaUnit> {
        let mut enc = H264Encoder::new(&H264Config {
            width: W,
            height: H,
            fps: FPS as u32,
            bitrate_bps: 300_000,
            idr_interval_secs: 1,
        })
        .unwrap();
        let mut opus = OpusEncoder::new(32_000).unwrap();
        let mut units = Vec::new();
        for i in 0..(SECS * FPS) as u64 {
            let t = T0 + i as i64 * 1_000_000 / FPS;
            let f = RawFrame {
                width: W,
                height: H,
                i420: picture(i),
                capture: SystemTime::UNIX_EPOCH + Duration::from_micros(t as u64),
                index: i,
            };
            let e = enc.encode(&f).unwrap().expect("openh264 emits every frame");
            units.push(unit(0, t, e.is_idr, e.annexb));
        }
        for k in 0..(SECS * 50) {
            let t = T0 + k * 20_000;
            let f = AudioFrame {
                samples: vec![0; 1920],
                capture: SystemTime::UNIX_EPOCH + Duration::from_micros(t as u64),
            };
            units.push(unit(1, t, true, opus.encode(&f).unwrap()));
        }
        for (t, text) in [
            (5_000_000, "first caption"),
            (7_000_000, "\u{2028}"),
            (25_000_000, "second caption"),
            (27_000_000, "\u{2028}"),
        ] {
            units.push(unit(2, T0 + t, true, text.as_bytes().to_vec()));
        }
        units.sort_by_key(|u| u.capture_us);
        units
    }

    fn tracks() -> Vec<TrackDesc> {
        vec![
            track(0, "video", Codec::H264, 96, 90_000),
            track(1, "audio", Codec::Opus, 97, 48_000),
            track(2, "text", Codec::T140, 99, 1000),
        ]
    }

    struct Rig {
        p: Playback,
        frames: watch::Receiver<Option<VideoFrame>>,
        status: watch::Receiver<Status>,
        report: Arc<Mutex<Report>>,
        base: Instant,
        /// Test time, µs since `base`.
        now_us: i64,
    }

    impl Rig {
        fn new(source: Source, shared: Shared, reader: Option<RecordingReader>) -> Self {
            let (frame_tx, frames) = watch::channel(None);
            let (status_tx, status) = watch::channel(Status::default());
            let report = Arc::new(Mutex::new(Report::default()));
            let mut cfg = EngineConfig::new(source);
            cfg.audio_output = false;
            let p = Playback::with_sink(
                cfg,
                shared,
                frame_tx,
                status_tx,
                report.clone(),
                reader,
                (AudioSink::manual(), None),
            );
            let base = Instant::now();
            Self {
                p,
                frames,
                status,
                report,
                base,
                now_us: 0,
            }
        }

        fn now(&self) -> Instant {
            self.base + Duration::from_micros(self.now_us as u64)
        }

        /// One 10 ms tick of the playback loop: the audio device plays 10 ms, then a step.
        fn tick(&mut self) {
            self.now_us += 10_000;
            let now = self.now();
            self.p.sink.pull(480, now);
            if self.p.index.is_none() {
                self.p.attach(now);
            }
            self.p.step(now);
            if self.now_us % 100_000 == 0 {
                self.p.publish_status(now);
            }
        }

        fn command(&mut self, c: Command) {
            let now = self.now();
            self.p.command(c, now, None);
        }

        /// Playhead, µs since the start of the recording.
        fn pos_us(&self) -> i64 {
            self.p.timeline.position_from_start(self.now())
        }

        fn shown(&self) -> (u64, i64) {
            let f = self.frames.borrow().clone().expect("a picture is shown");
            (frame_number(&f), f.position.as_micros() as i64)
        }

        fn status(&mut self) -> Status {
            self.p.publish_status(self.now());
            self.status.borrow().clone()
        }
    }

    /// The picture shown is the frame due at the playhead (frame times are i / 10 s).
    fn assert_shows_playhead(r: &Rig, what: &str) {
        let (n, at) = r.shown();
        let due = (r.pos_us() * FPS / 1_000_000) as u64;
        assert!(
            n.abs_diff(due) <= 1,
            "{what}: shows frame {n} (at {at} us), playhead {} us wants frame {due}",
            r.pos_us()
        );
        assert_eq!(
            n as i64 * 100_000,
            at,
            "{what}: the picture is the frame it says it is"
        );
    }

    #[test]
    fn live_session_pause_seek_fast_forward_rewind_and_back_to_live() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.lcrec");
        let mut writer = RecordingWriter::create(&path, &tracks(), "v=0\r\n").unwrap();
        let shared: Shared = Arc::default();
        {
            let mut s = lock(&shared);
            s.index = Some(writer.index());
            s.path = Some(path.clone());
            s.conn = ConnState::Streaming { tcp: false };
        }
        let mut r = Rig::new(Source::Url("rtsp://test/live".into()), shared, None);
        // "Receives" what was captured by the test clock; captions arrive later (whisper's
        // delay), so the text track is fed from its own queue.
        let (text, media): (Vec<MediaUnit>, Vec<MediaUnit>) =
            session().into_iter().partition(|u| u.track == 2);
        let (mut next_media, mut next_text) = (0, 0);
        let mut receive = |r: &mut Rig, until_us: i64| {
            while r.now_us < until_us {
                r.tick();
                let wall = T0 + r.now_us;
                while next_media < media.len() && media[next_media].capture_us <= wall {
                    writer.append(&media[next_media]).unwrap();
                    next_media += 1;
                }
                while next_text < text.len() && text[next_text].capture_us + TEXT_DELAY_US <= wall {
                    writer.append(&text[next_text]).unwrap();
                    next_text += 1;
                }
                writer.flush().unwrap();
            }
        };
        // Live: the picture follows the live edge; a caption shows once it has arrived.
        receive(&mut r, 8_000_000);
        let st = r.status();
        assert!(st.at_live && st.playing, "{st:?}");
        assert!(st.has_captions);
        assert_shows_playhead(&r, "live");
        assert!(r.pos_us() > 7_800_000, "close to live: {}", r.pos_us());
        assert_eq!(st.caption_text, ["first caption"]);
        receive(&mut r, 20_000_000);
        assert!(
            r.status().caption_text.is_empty(),
            "the caption went after its time"
        );
        assert_shows_playhead(&r, "live at 20 s");

        // The playback loop stalls for 300 ms (a scheduling hiccup): the audio device plays
        // out its short queue and underruns, so the audio clock falls behind; the playhead
        // must not stay behind with it.
        let limit =
            |r: &Rig| r.p.timeline.live_limit_us().unwrap() - r.p.timeline.start_us().unwrap();
        let stall_until = r.now_us + 300_000;
        while r.now_us < stall_until {
            r.now_us += 10_000;
            let now = r.now();
            r.p.sink.pull(480, now);
        }
        receive(&mut r, 20_500_000);
        let behind = limit(&r) - r.pos_us();
        assert!(behind <= 80_000, "{behind} us behind live after a hiccup");
        assert!(r.status().at_live);
        assert_shows_playhead(&r, "live after an audio hiccup");

        // Pause: the playhead stops, the recording grows.
        r.command(Command::Pause);
        let paused_at = r.pos_us();
        receive(&mut r, 23_000_000);
        let st = r.status();
        assert!(!st.playing && !st.at_live);
        assert_eq!(r.pos_us(), paused_at);
        assert!(
            st.recorded_end >= Duration::from_millis(22_900),
            "{:?}",
            st.recorded_end
        );

        // Seek back 14 s: the picture of that moment at once, and its caption.
        r.command(Command::SeekBy(-14_000));
        assert!((r.pos_us() - (paused_at - 14_000_000)).abs() < 1000);
        assert_shows_playhead(&r, "after seeking back");
        let st = r.status();
        assert_eq!(
            st.caption_text,
            ["first caption"],
            "captions survive a seek back"
        );

        // Fast-forward at 4x: 1 s of test time moves the playhead 4 s, audio muted.
        r.command(Command::SetSpeed(4.0));
        r.command(Command::Play);
        assert!(r.p.timeline.audio_muted());
        let before = r.pos_us();
        let shown_before = r.p.frames_shown;
        receive(&mut r, 24_000_000);
        let moved = r.pos_us() - before;
        assert!(
            (moved - 4_000_000).abs() < 50_000,
            "moved {moved} us in 1 s at 4x"
        );
        assert!(
            r.p.frames_shown - shown_before >= 35,
            "frames shown while fast-forwarding"
        );
        assert_shows_playhead(&r, "fast-forward");

        // Rewind 10 s, back to 1x.
        r.command(Command::SeekBy(-10_000));
        r.command(Command::SetSpeed(1.0));
        assert!(!r.p.timeline.audio_muted());
        assert_shows_playhead(&r, "rewind");
        receive(&mut r, 25_000_000);
        assert_shows_playhead(&r, "playing after the rewind");
        assert!(!r.status().at_live);

        // Back to live.
        r.command(Command::GoLive);
        let st = r.status();
        assert!(st.at_live && st.playing && st.speed == 1.0, "{st:?}");
        assert!(r.pos_us() > 24_900_000, "at the live edge: {}", r.pos_us());
        assert_shows_playhead(&r, "back to live");
        receive(&mut r, 30_000_000);
        assert_shows_playhead(&r, "live again");
        assert!(r.status().at_live);

        // The report lists both captions, in recording time.
        receive(&mut r, 31_000_000);
        let report = r.report.lock().unwrap().clone();
        let caps: Vec<_> = report
            .captions
            .iter()
            .map(|c| (c.start_ms, c.end_ms, c.text.as_str()))
            .collect();
        assert_eq!(
            caps,
            [
                (5000, 7000, "first caption"),
                (25_000, 27_000, "second caption")
            ]
        );
        assert_eq!(
            report.caption_blocks.len(),
            4,
            "every block, with its times"
        );
        assert_eq!(
            report.caption_blocks[0].spoken_unix_ms,
            (T0 + 5_000_000) / 1000
        );
        assert_eq!(report.caption_blocks[2].text, "second caption");
        assert!(report.video.frames_decoded > 250);
        assert!(report.audio.frames_decoded > 1000);
    }

    #[test]
    fn recorded_file_seeks_and_exports_captions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("done.lcrec");
        let mut writer = RecordingWriter::create(&path, &tracks(), "v=0\r\n").unwrap();
        for u in session() {
            writer.append(&u).unwrap();
        }
        writer.sync().unwrap();
        drop(writer);
        let (reader, index) = RecordingReader::open(&path).unwrap();
        let shared: Shared = Arc::default();
        {
            let mut s = lock(&shared);
            s.index = Some(Arc::new(RwLock::new(index)));
            s.path = Some(path.clone());
            s.conn = ConnState::Offline;
        }
        let mut r = Rig::new(Source::File(path.clone()), shared, Some(reader));
        r.tick();
        assert_eq!(r.pos_us(), 0, "a file starts at its beginning");
        for target_ms in [12_340u64, 33_000, 1_050, 26_500] {
            r.command(Command::Seek(Duration::from_millis(target_ms)));
            assert_shows_playhead(&r, &format!("seek to {target_ms} ms"));
        }
        assert_eq!(r.status().caption_text, ["second caption"]);
        r.command(Command::SetCaptions(false));
        assert!(r.status().caption_text.is_empty(), "captions switched off");
        // Playing on at 1x from 26.5 s.
        for _ in 0..50 {
            r.tick();
        }
        assert_shows_playhead(&r, "playing the file");
        // Export, both formats.
        let vtt = dir.path().join("c.vtt");
        r.command(Command::ExportCaptions(vtt.clone()));
        let text = std::fs::read_to_string(&vtt).unwrap();
        assert_eq!(
            text,
            "WEBVTT\n\n00:00:05.000 --> 00:00:07.000\nfirst caption\n\n\
             00:00:25.000 --> 00:00:27.000\nsecond caption\n\n"
        );
        assert!(r.status().notice.unwrap().contains("2 captions written"));
        let srt = dir.path().join("c.srt");
        r.command(Command::ExportCaptions(srt.clone()));
        assert!(std::fs::read_to_string(&srt)
            .unwrap()
            .starts_with("1\n00:00:05,000 --> 00:00:07,000\nfirst caption\n"));
        let bad = dir.path().join("no/such/dir/c.vtt");
        r.command(Command::ExportCaptions(bad));
        assert!(r
            .status()
            .notice
            .unwrap()
            .starts_with("cannot write captions"));
    }
}
