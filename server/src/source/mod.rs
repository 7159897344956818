//! Raw media sources: where the server's pictures and sound come from.
//!
//! Every source runs on its own thread, paces itself in real time and hands raw frames to the
//! encoder side over a bounded [`SyncSender`]. When that channel is full the frame is dropped and
//! counted ([`SourceHandle::dropped`]): capture never waits for a slow consumer.
//!
//! | spec | video | audio |
//! |---|---|---|
//! | `auto` | a camera if one is present, else `testsrc` | a microphone if one is present, else `tone` |
//! | built-in | `testsrc`: colour bars, a moving box, wall-clock time and frame number; one all-white frame per second | `tone`: a 50 ms 1 kHz beep at the start of every second, silence otherwise |
//! | device | `camera[:INDEX]` (nokhwa: V4L2 / AVFoundation / Media Foundation) | `mic[:NAME]` (cpal) |
//! | file | `file:PATH.y4m` (4:2:0 8-bit), looped; `file:PATH.mp4`/`.mkv` H.264 passed through ([`container`], started by the pipeline) | `file:PATH.wav` (PCM 8/16/24/32-bit or float); other formats through symphonia ([`audio_file`]); looped |
//!
//! # Timing
//!
//! All built-in sources share one [`MediaClock`], read once at start-up. Video frame `k` at `fps`
//! has capture time `epoch_wall + k/fps` and is emitted at `epoch + k/fps`; audio chunk `n` (20 ms)
//! has capture time `epoch_wall + n·20 ms`. Both are computed with integer nanoseconds from the
//! same origin, so the white test-card frame of second `s` and the beep of second `s` carry the
//! *identical* capture time: any A/V offset seen by a player was introduced downstream. A source
//! that falls behind (a loaded machine) skips frames to get back to real time instead of
//! drifting ([`SourceHandle::skipped`]).
//!
//! Device sources (camera, microphone) stamp frames with the arrival time on the same clock.

#[cfg(any(target_os = "linux", target_os = "macos", target_os = "windows"))]
mod camera;
/// Elsewhere nokhwa has no backend: `camera` is a clear error and `auto` uses the test card.
#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
mod camera {
    use super::{MediaClock, SourceCtx, SourceHandle, VideoConfig, VideoFrame};

    pub(crate) fn probe() -> Result<(), String> {
        Err("camera capture is not supported on this OS".to_owned())
    }

    pub(crate) fn start(
        _: Option<u32>,
        _: &VideoConfig,
        _: MediaClock,
        _: std::sync::mpsc::SyncSender<VideoFrame>,
        _: SourceCtx,
    ) -> anyhow::Result<SourceHandle> {
        anyhow::bail!("camera capture is not supported on this OS: use --video testsrc or --video file:PATH.y4m")
    }
}
pub mod audio_file;
pub mod container;
mod font;
mod mic;
pub mod testsrc;
pub mod tone;
pub mod wav;
pub mod y4m;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Audio sample rate of every [`AudioFrame`], in Hz.
pub const AUDIO_RATE: u32 = 48_000;
/// Channels of every [`AudioFrame`] (interleaved stereo).
pub const AUDIO_CHANNELS: usize = 2;
/// Sample frames (per channel) in one [`AudioFrame`]: 20 ms at 48 kHz.
pub const AUDIO_FRAME_SAMPLES: usize = 960;
/// Duration of one [`AudioFrame`].
pub const AUDIO_FRAME_DURATION: Duration = Duration::from_millis(20);

/// Largest picture the H.264 encoder accepts (OpenH264 is limited to level 5.2).
const MAX_WIDTH: u32 = 3840;
const MAX_HEIGHT: u32 = 2160;
const MAX_FPS: u32 = 240;

/// Shared origin of all built-in sources so video and audio line up exactly.
///
/// [`MediaClock::now`] is the only clock read; the caller does it once at start-up and hands
/// copies to every source.
#[derive(Clone, Copy, Debug)]
pub struct MediaClock {
    /// Monotonic origin: frame `k` is emitted at `epoch + k/fps`.
    pub epoch: Instant,
    /// Wall-clock time of `epoch`: frame `k` is stamped `epoch_wall + k/fps`.
    pub epoch_wall: SystemTime,
}

impl MediaClock {
    /// Reads both clocks, back to back.
    #[must_use]
    pub fn now() -> Self {
        Self {
            epoch: Instant::now(),
            epoch_wall: SystemTime::now(),
        }
    }

    /// The wall-clock time of a monotonic instant (saturating at the epoch).
    #[must_use]
    pub fn wall_at(&self, instant: Instant) -> SystemTime {
        self.epoch_wall + instant.saturating_duration_since(self.epoch)
    }
}

/// One raw picture.
#[derive(Clone, Debug)]
pub struct VideoFrame {
    /// Picture width in pixels (even).
    pub width: u32,
    /// Picture height in pixels (even).
    pub height: u32,
    /// Y plane then U then V, tightly packed, `width * height * 3 / 2` bytes.
    pub i420: Vec<u8>,
    /// Wall-clock capture time.
    pub capture: SystemTime,
    /// Frame number on the source's timeline (`capture = epoch_wall + index/fps` for paced
    /// sources); jumps forward when frames were skipped to keep real time.
    pub index: u64,
}

impl VideoFrame {
    /// The Y plane.
    #[must_use]
    pub fn y(&self) -> &[u8] {
        let n = self.luma_len();
        &self.i420[..n.min(self.i420.len())]
    }

    fn luma_len(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// Whether `i420` has exactly the size `width`×`height` implies and the dimensions are even.
    #[must_use]
    pub fn is_well_formed(&self) -> bool {
        self.width > 0
            && self.height > 0
            && self.width.is_multiple_of(2)
            && self.height.is_multiple_of(2)
            && self.i420.len() == i420_len(self.width, self.height)
    }
}

/// Bytes of an I420 picture of the given (even) size.
#[must_use]
pub fn i420_len(width: u32, height: u32) -> usize {
    let luma = width as usize * height as usize;
    luma + luma / 2
}

/// 20 ms of sound.
#[derive(Clone, Debug)]
pub struct AudioFrame {
    /// Interleaved stereo, 48 kHz, exactly [`AUDIO_FRAME_SAMPLES`] sample frames
    /// (`samples.len() == 1920`).
    pub samples: Vec<i16>,
    /// Wall-clock capture time of the first sample.
    pub capture: SystemTime,
}

/// Where video comes from (`--video`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VideoSpec {
    /// A camera if one is present, else the test card.
    Auto,
    /// The built-in moving test card.
    TestSrc,
    /// A camera, by index (default: the first one).
    Camera(Option<u32>),
    /// A looped Y4M file.
    File(PathBuf),
}

/// Where audio comes from (`--audio`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AudioSpec {
    /// A microphone if one is present, else the beep tone.
    Auto,
    /// The built-in once-per-second beep.
    Tone,
    /// A microphone, by (sub)name (default: the system's default input).
    Mic(Option<String>),
    /// A looped WAV file.
    File(PathBuf),
}

/// A `--video` / `--audio` value that is none of the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} source {value:?}: expected {expected}")]
pub struct SpecError {
    kind: &'static str,
    value: String,
    expected: &'static str,
}

const VIDEO_FORMS: &str =
    "auto, testsrc, camera, camera:INDEX or file:PATH (.y4m, or .mp4/.mkv with H.264)";
const AUDIO_FORMS: &str = "auto, tone, mic, mic:NAME or file:PATH.wav";

/// Splits `keyword[:argument]`, the keyword compared case-insensitively.
fn split_spec(s: &str) -> (String, Option<&str>) {
    let s = s.trim();
    match s.split_once(':') {
        Some((k, arg)) => (k.trim().to_ascii_lowercase(), Some(arg)),
        None => (s.to_ascii_lowercase(), None),
    }
}

/// Parses the forms every source kind has (`auto`, `file:PATH`) and, through `own`, the
/// kind's own forms (`None` for a form it doesn't know); the error names `kind` and the
/// `expected` forms.
fn parse_spec<T>(
    s: &str,
    (kind, expected): (&'static str, &'static str),
    (auto, file): (T, fn(PathBuf) -> T),
    own: impl FnOnce(&str, Option<&str>) -> Option<T>,
) -> Result<T, SpecError> {
    let parsed = match split_spec(s) {
        (k, None) if k == "auto" => Some(auto),
        (k, Some(path)) if k == "file" && !path.is_empty() => Some(file(path.into())),
        (k, arg) => own(&k, arg),
    };
    parsed.ok_or_else(|| SpecError {
        kind,
        value: s.to_owned(),
        expected,
    })
}

impl FromStr for VideoSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let own = |k: &str, arg: Option<&str>| match (k, arg) {
            ("testsrc", None) => Some(Self::TestSrc),
            ("camera", None) => Some(Self::Camera(None)),
            ("camera", Some(idx)) => idx.trim().parse().ok().map(|i| Self::Camera(Some(i))),
            _ => None,
        };
        parse_spec(s, ("video", VIDEO_FORMS), (Self::Auto, Self::File), own)
    }
}

impl FromStr for AudioSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let own = |k: &str, arg: Option<&str>| match (k, arg.map(str::trim)) {
            ("tone", None) => Some(Self::Tone),
            ("mic", None) => Some(Self::Mic(None)),
            ("mic", Some(name)) if !name.is_empty() => Some(Self::Mic(Some(name.to_owned()))),
            _ => None,
        };
        parse_spec(s, ("audio", AUDIO_FORMS), (Self::Auto, Self::File), own)
    }
}

impl fmt::Display for VideoSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::TestSrc => f.write_str("testsrc"),
            Self::Camera(None) => f.write_str("camera"),
            Self::Camera(Some(i)) => write!(f, "camera:{i}"),
            Self::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

impl fmt::Display for AudioSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Tone => f.write_str("tone"),
            Self::Mic(None) => f.write_str("mic"),
            Self::Mic(Some(n)) => write!(f, "mic:{n}"),
            Self::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

/// Requested picture size and rate. File sources ignore it (the file wins); cameras get the
/// nearest mode and are scaled to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VideoConfig {
    /// Width in pixels (even).
    pub width: u32,
    /// Height in pixels (even).
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
}

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            fps: 30,
        }
    }
}

impl VideoConfig {
    /// Checks the size and rate are ones the pipeline can carry.
    ///
    /// # Errors
    /// Odd or zero dimensions, more than 3840×2160, or a rate outside 1..=240.
    pub fn validate(&self) -> anyhow::Result<()> {
        validate_size(self.width, self.height)?;
        if !(1..=MAX_FPS).contains(&self.fps) {
            anyhow::bail!("invalid frame rate {}: must be 1..={MAX_FPS}", self.fps);
        }
        Ok(())
    }
}

fn validate_size(width: u32, height: u32) -> anyhow::Result<()> {
    if width < 16 || height < 16 || !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        anyhow::bail!(
            "invalid picture size {width}x{height}: width and height must be even and at least 16"
        );
    }
    if width.max(height) > MAX_WIDTH || width.min(height) > MAX_HEIGHT {
        anyhow::bail!("picture size {width}x{height} too large: the H.264 encoder takes at most {MAX_WIDTH}x{MAX_HEIGHT}");
    }
    Ok(())
}

/// Counters a running source keeps.
#[derive(Debug, Default)]
pub(crate) struct SourceStats {
    /// Frames dropped because the output channel was full.
    dropped: AtomicU64,
    /// Frames never produced because the source fell behind real time.
    skipped: AtomicU64,
}

/// What a source thread gets to talk to the world.
#[derive(Clone)]
pub(crate) struct SourceCtx {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) stats: Arc<SourceStats>,
}

impl SourceCtx {
    fn new() -> Self {
        Self {
            stop: Arc::new(AtomicBool::new(false)),
            stats: Arc::new(SourceStats::default()),
        }
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sends without blocking. Returns `false` when the receiver is gone (the source should end).
    pub(crate) fn emit<T>(&self, out: &SyncSender<T>, item: T, what: &str) -> bool {
        match out.try_send(item) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(
                        dropped = n,
                        "{what} consumer is not keeping up: dropping frames"
                    );
                }
                true
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::debug!("{what} consumer gone: stopping source");
                false
            }
        }
    }

    /// Sleeps until `deadline`, waking at least every 50 ms to check for a stop.
    /// Returns `false` when stopped.
    pub(crate) fn sleep_until(&self, deadline: Instant) -> bool {
        loop {
            if self.stopped() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
        }
    }
}

/// A frame rate as a fraction, `num/den` frames per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Frames…
    pub num: u32,
    /// …per this many seconds.
    pub den: u32,
}

impl Rate {
    /// A whole number of frames per second.
    #[must_use]
    pub const fn per_second(fps: u32) -> Self {
        Self { num: fps, den: 1 }
    }

    /// Time of frame `k` from the epoch (integer nanoseconds, rounded down, so it never drifts).
    #[must_use]
    pub fn offset(self, k: u64) -> Duration {
        let nanos =
            u128::from(k) * 1_000_000_000 * u128::from(self.den) / u128::from(self.num.max(1));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The last frame whose time is at or before `elapsed`.
    #[must_use]
    pub fn index_at(self, elapsed: Duration) -> u64 {
        let k = elapsed.as_nanos() * u128::from(self.num)
            / (1_000_000_000 * u128::from(self.den.max(1)));
        // `offset` rounds down, so frame k+1 may already be due when k*den/num is just short.
        let mut k = u64::try_from(k).unwrap_or(u64::MAX);
        while self.offset(k + 1) <= elapsed {
            k += 1;
        }
        k
    }

    /// Frames per second as a float (for logs and encoder hints).
    #[must_use]
    pub fn as_f64(self) -> f64 {
        f64::from(self.num) / f64::from(self.den.max(1))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

/// Real-time pacing: frame `k` is released at `epoch + rate.offset(k)`; a source that is more
/// than one frame late jumps to the current frame instead of drifting.
pub(crate) struct Pacer {
    clock: MediaClock,
    rate: Rate,
    next: u64,
    last_warn: Option<Instant>,
}

impl Pacer {
    /// Starts at the frame that is due now (0 when started right after the clock was read).
    pub(crate) fn new(clock: MediaClock, rate: Rate) -> Self {
        let next = rate.index_at(Instant::now().saturating_duration_since(clock.epoch));
        Self {
            clock,
            rate,
            next,
            last_warn: None,
        }
    }

    /// Capture time of frame `k`.
    pub(crate) fn capture(&self, k: u64) -> SystemTime {
        self.clock.epoch_wall + self.rate.offset(k)
    }

    /// Waits until the next frame is due and returns its index; `None` once stopped.
    pub(crate) fn next(&mut self, ctx: &SourceCtx, what: &str) -> Option<u64> {
        let due = self.clock.epoch + self.rate.offset(self.next);
        let now = Instant::now();
        if now < due {
            if !ctx.sleep_until(due) {
                return None;
            }
        } else {
            let current = self.rate.index_at(now - self.clock.epoch);
            if current > self.next {
                let skipped = current - self.next;
                let total = ctx.stats.skipped.fetch_add(skipped, Ordering::Relaxed) + skipped;
                if self
                    .last_warn
                    .is_none_or(|t| now - t > Duration::from_secs(5))
                {
                    self.last_warn = Some(now);
                    tracing::warn!(
                        skipped,
                        total,
                        "{what} fell behind real time: skipping frames"
                    );
                }
                self.next = current;
            }
        }
        if ctx.stopped() {
            return None;
        }
        let k = self.next;
        self.next += 1;
        Some(k)
    }
}

/// A running source. Dropping it stops the source thread (waiting at most a second for it).
pub struct SourceHandle {
    /// What is running, e.g. `testsrc 1280x720@30` or `camera 0 (HD Webcam) 1280x720@30`.
    pub description: String,
    ctx: SourceCtx,
    thread: Option<JoinHandle<()>>,
    done: std::sync::mpsc::Receiver<()>,
}

impl fmt::Debug for SourceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceHandle")
            .field("description", &self.description)
            .field("dropped", &self.dropped())
            .field("skipped", &self.skipped())
            .finish_non_exhaustive()
    }
}

impl SourceHandle {
    /// Frames dropped because the output channel was full.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.ctx.stats.dropped.load(Ordering::Relaxed)
    }

    /// Frames skipped because the source fell behind real time.
    #[must_use]
    pub fn skipped(&self) -> u64 {
        self.ctx.stats.skipped.load(Ordering::Relaxed)
    }

    /// Whether the source thread is still running (it ends on a stop, when the receiver is
    /// dropped, or on an unrecoverable error, which it logs).
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for SourceHandle {
    fn drop(&mut self) {
        self.ctx.stop.store(true, Ordering::Relaxed);
        // The thread drops its end of `done` when it returns (or unwinds).
        match self.done.recv_timeout(Duration::from_secs(1)) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                tracing::warn!(source = %self.description, "source thread did not stop within 1 s; detaching it");
            }
            _ => {
                if let Some(t) = self.thread.take() {
                    if t.join().is_err() {
                        tracing::error!(source = %self.description, "source thread panicked");
                    }
                }
            }
        }
    }
}

/// Spawns a source thread running `body` and wraps it in a handle.
pub(crate) fn spawn_source(
    name: &str,
    description: String,
    ctx: SourceCtx,
    body: impl FnOnce(SourceCtx) + Send + 'static,
) -> anyhow::Result<SourceHandle> {
    let (done_tx, done) = std::sync::mpsc::channel::<()>();
    let thread_ctx = ctx.clone();
    let thread = std::thread::Builder::new()
        .name(format!("livecast-{name}"))
        .spawn(move || {
            let _done = done_tx;
            body(thread_ctx);
        })?;
    Ok(SourceHandle {
        description,
        ctx,
        thread: Some(thread),
        done,
    })
}

/// Starts the video source on its own thread; frames are paced in real time and sent on `out`.
///
/// `auto` uses a camera when one is present and falls back to the test card (logging which).
///
/// # Errors
/// An invalid configuration, a missing or invalid file, or an explicitly requested camera that
/// is absent or cannot be opened; the message names the alternatives.
pub fn start_video(
    spec: &VideoSpec,
    cfg: &VideoConfig,
    clock: MediaClock,
    out: SyncSender<VideoFrame>,
) -> anyhow::Result<SourceHandle> {
    cfg.validate()?;
    match spec {
        VideoSpec::TestSrc => testsrc::start(cfg, clock, out, SourceCtx::new()),
        VideoSpec::File(path) => match container::file_kind(path)? {
            container::FileKind::Y4m => y4m::start(path, clock, out, SourceCtx::new()),
            _ => anyhow::bail!(
                "{}: an H.264 file is streamed as it is, never decoded here, so it cannot \
                 feed a picture source (here: use a Y4M file)",
                path.display()
            ),
        },
        VideoSpec::Camera(index) => camera::start(*index, cfg, clock, out, SourceCtx::new()),
        VideoSpec::Auto => auto_start(
            "video",
            camera::probe(),
            |c| camera::start(None, cfg, clock, out.clone(), c),
            |c| testsrc::start(cfg, clock, out.clone(), c),
        ),
    }
}

/// Starts the audio source on its own thread; 20 ms chunks are sent on `out` in real time.
///
/// `auto` uses a microphone when one is present and falls back to the tone (logging which).
///
/// # Errors
/// A missing or invalid file, or an explicitly requested microphone that is absent or cannot be
/// opened; the message names the alternatives.
pub fn start_audio(
    spec: &AudioSpec,
    clock: MediaClock,
    out: SyncSender<AudioFrame>,
) -> anyhow::Result<SourceHandle> {
    start_audio_looped(spec, None, clock, out)
}

/// [`start_audio`], a compressed audio file looping every `loop_length` (the length of the
/// same file's video, passed through) instead of at its own end.
///
/// # Errors
/// As [`start_audio`].
pub fn start_audio_looped(
    spec: &AudioSpec,
    loop_length: Option<Duration>,
    clock: MediaClock,
    out: SyncSender<AudioFrame>,
) -> anyhow::Result<SourceHandle> {
    match spec {
        AudioSpec::Tone => tone::start(clock, out, SourceCtx::new()),
        // WAV by its own reader; anything else (MP3, AAC, FLAC, Vorbis, the audio of MP4 or
        // MKV files) by symphonia.
        AudioSpec::File(path)
            if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("wav")) =>
        {
            wav::start(path, clock, out, SourceCtx::new())
        }
        AudioSpec::File(path) => audio_file::start(path, loop_length, clock, out, SourceCtx::new()),
        AudioSpec::Mic(name) => mic::start(name.as_deref(), clock, out, SourceCtx::new()),
        AudioSpec::Auto => auto_start(
            "audio",
            mic::probe(),
            |c| mic::start(None, clock, out.clone(), c),
            |c| tone::start(clock, out.clone(), c),
        ),
    }
}

/// `auto`: the device if `probe` found one and it starts, else the built-in source; logs which.
/// Each attempt gets its own context, since a failed attempt's handle stops its context on drop.
fn auto_start(
    kind: &str,
    probe: Result<(), String>,
    device: impl FnOnce(SourceCtx) -> anyhow::Result<SourceHandle>,
    builtin: impl FnOnce(SourceCtx) -> anyhow::Result<SourceHandle>,
) -> anyhow::Result<SourceHandle> {
    let why = match probe.map(|()| device(SourceCtx::new())) {
        Ok(Ok(h)) => {
            tracing::info!("{kind} source auto: using {}", h.description);
            return Ok(h);
        }
        Ok(Err(e)) => format!("device failed ({e:#})"),
        Err(why) => why,
    };
    let h = builtin(SourceCtx::new())?;
    tracing::info!("{kind} source auto: {why}; using {}", h.description);
    Ok(h)
}

/// Streaming linear resampler to 48 kHz stereo, exact rational stepping (no drift).
/// A looping source of stereo frames at its own rate (a WAV or a decoded audio file).
pub trait StereoFrames: Send + 'static {
    fn rate(&self) -> u32;
    /// The next frame as stereo `[-1, 1]`, starting again at the end.
    ///
    /// # Errors
    /// Read or decode errors.
    fn next_frame(&mut self) -> anyhow::Result<[f32; 2]>;
}

/// Turns looping stereo frames into 20 ms 48 kHz stereo chunks.
pub struct Chunker<R> {
    reader: R,
    resampler: Resampler,
    pending: Vec<i16>,
}

impl<R: StereoFrames> Chunker<R> {
    pub fn new(reader: R) -> Self {
        let rate = reader.rate();
        Self {
            reader,
            resampler: Resampler::new(rate),
            pending: Vec::with_capacity(4 * AUDIO_FRAME_SAMPLES * AUDIO_CHANNELS),
        }
    }

    /// The next 960 stereo sample frames (1920 samples).
    ///
    /// # Errors
    /// Read or decode errors.
    pub fn next_chunk(&mut self) -> anyhow::Result<Vec<i16>> {
        let want = AUDIO_FRAME_SAMPLES * AUDIO_CHANNELS;
        while self.pending.len() < want {
            let frame = self.reader.next_frame()?;
            self.resampler.push(frame, &mut self.pending);
        }
        let rest = self.pending.split_off(want);
        Ok(std::mem::replace(&mut self.pending, rest))
    }
}

/// Runs `chunker` as an audio source paced in real time (thread `name`).
pub(crate) fn spawn_looped_audio<R: StereoFrames>(
    name: &'static str,
    description: String,
    mut chunker: Chunker<R>,
    clock: MediaClock,
    out: SyncSender<AudioFrame>,
    ctx: SourceCtx,
) -> anyhow::Result<SourceHandle> {
    spawn_source(name, description, ctx, move |ctx| {
        let mut pacer = Pacer::new(
            clock,
            Rate::per_second(AUDIO_RATE / AUDIO_FRAME_SAMPLES as u32),
        );
        while let Some(n) = pacer.next(&ctx, name) {
            let samples = match chunker.next_chunk() {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("{e:#}; stopping the audio source");
                    break;
                }
            };
            let frame = AudioFrame {
                samples,
                capture: pacer.capture(n),
            };
            if !ctx.emit(&out, frame, "audio") {
                break;
            }
        }
    })
}

pub(crate) struct Resampler {
    in_rate: u64,
    /// Position between `prev` and the next input frame, in units of 1/48000 of an input frame.
    frac: u64,
    prev: Option<[f32; 2]>,
}

impl Resampler {
    pub(crate) fn new(in_rate: u32) -> Self {
        Self {
            in_rate: u64::from(in_rate.max(1)),
            frac: 0,
            prev: None,
        }
    }

    /// Feeds one input frame; appends the output frames that became computable.
    pub(crate) fn push(&mut self, frame: [f32; 2], out: &mut Vec<i16>) {
        let out_rate = u64::from(AUDIO_RATE);
        let Some(a) = self.prev.replace(frame) else {
            return;
        };
        while self.frac < out_rate {
            #[allow(clippy::cast_precision_loss)] // < 2^17, exact in f32
            let t = self.frac as f32 / out_rate as f32;
            for (ch, &x) in a.iter().enumerate() {
                out.push(to_i16(x + (frame[ch] - x) * t));
            }
            self.frac += self.in_rate;
        }
        self.frac -= out_rate;
    }
}

/// Converts a sample in [-1, 1) to i16 (the inverse of `i16 / 32768`), saturating.
#[allow(clippy::cast_possible_truncation)] // clamped first
pub(crate) fn to_i16(x: f32) -> i16 {
    (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// The message, with its causes, of a video source that fails to start.
#[cfg(test)]
pub(crate) fn video_start_error(spec: &VideoSpec) -> String {
    let (tx, _rx) = std::sync::mpsc::sync_channel(1);
    let err = start_video(spec, &VideoConfig::default(), MediaClock::now(), tx).unwrap_err();
    format!("{err:#}")
}

/// Writes each case (file contents, the problem its error must name) to a `.{ext}` file and
/// checks that `start_error` names the problem and the path; a missing file must give
/// "cannot open" and its name.
#[cfg(test)]
pub(crate) fn assert_bad_files_are_named(
    ext: &str,
    cases: &[(&[u8], &str)],
    start_error: impl Fn(PathBuf) -> String,
) {
    let dir = tempfile::tempdir().unwrap();
    for (i, (bytes, want)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.{ext}"));
        std::fs::write(&path, bytes).unwrap();
        let msg = start_error(path.clone());
        assert!(msg.contains(want), "case {i}: {msg}");
        assert!(msg.contains(&path.display().to_string()), "case {i}: {msg}");
    }
    let missing = format!("missing.{ext}");
    let msg = start_error(dir.path().join(&missing));
    assert!(
        msg.contains("cannot open") && msg.contains(&missing),
        "{msg}"
    );
}

/// The message, with its causes, of an audio source that fails to start.
#[cfg(test)]
pub(crate) fn audio_start_error(spec: &AudioSpec) -> String {
    let (tx, _rx) = std::sync::mpsc::sync_channel(1);
    let err = start_audio(spec, MediaClock::now(), tx).unwrap_err();
    format!("{err:#}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each of `good` parses and prints back as written; each of `bad` is an error that lists
    /// the `expected` forms.
    fn assert_forms<T>(good: &[&str], bad: &[&str], expected: &str)
    where
        T: FromStr<Err = SpecError> + fmt::Display + fmt::Debug,
    {
        for s in good {
            assert_eq!(s.parse::<T>().unwrap().to_string(), *s);
        }
        for s in bad {
            let e = s.parse::<T>().unwrap_err().to_string();
            assert!(e.contains(expected), "{e}");
        }
    }

    #[test]
    fn video_spec_parses_every_form() {
        assert_eq!("auto".parse(), Ok(VideoSpec::Auto));
        assert_eq!("TestSrc".parse(), Ok(VideoSpec::TestSrc));
        assert_eq!("camera".parse(), Ok(VideoSpec::Camera(None)));
        assert_eq!("camera:1".parse(), Ok(VideoSpec::Camera(Some(1))));
        assert_eq!(
            "file:/tmp/a b.y4m".parse(),
            Ok(VideoSpec::File("/tmp/a b.y4m".into()))
        );
        assert_eq!(
            "file:C:/x.y4m".parse(),
            Ok(VideoSpec::File("C:/x.y4m".into()))
        );
        assert_forms::<VideoSpec>(
            &["auto", "testsrc", "camera", "camera:3", "file:x.y4m"],
            &["", "cam", "camera:x", "file:", "testsrc:2", "mic"],
            "testsrc, camera, camera:INDEX or file:PATH (.y4m, or .mp4/.mkv with H.264)",
        );
    }

    #[test]
    fn audio_spec_parses_every_form() {
        assert_eq!("auto".parse(), Ok(AudioSpec::Auto));
        assert_eq!("tone".parse(), Ok(AudioSpec::Tone));
        assert_eq!("mic".parse(), Ok(AudioSpec::Mic(None)));
        assert_eq!(
            "mic:USB Audio: front".parse(),
            Ok(AudioSpec::Mic(Some("USB Audio: front".into())))
        );
        assert_eq!("file:a.wav".parse(), Ok(AudioSpec::File("a.wav".into())));
        assert_forms::<AudioSpec>(
            &["auto", "tone", "mic", "mic:default", "file:x.wav"],
            &["", "beep", "mic:", "file:", "camera"],
            "auto, tone, mic, mic:NAME or file:PATH.wav",
        );
    }

    #[test]
    fn rate_offsets_are_exact_and_index_at_inverts_them() {
        let r = Rate::per_second(30);
        assert_eq!(r.offset(30), Duration::from_secs(1));
        assert_eq!(r.offset(1), Duration::from_nanos(33_333_333));
        assert_eq!(r.offset(2), Duration::from_nanos(66_666_666));
        let ntsc = Rate {
            num: 30_000,
            den: 1001,
        };
        assert_eq!(ntsc.offset(30_000), Duration::from_secs(1001));
        for rate in [r, ntsc, Rate::per_second(50), Rate::per_second(7)] {
            for k in 0..500 {
                let t = rate.offset(k);
                assert_eq!(rate.index_at(t), k, "{rate} k={k}");
                assert_eq!(rate.index_at(t + Duration::from_nanos(1)), k);
                if k > 0 {
                    assert_eq!(rate.index_at(t - Duration::from_nanos(1)), k - 1);
                }
            }
        }
    }

    #[test]
    fn config_validation() {
        assert!(VideoConfig::default().validate().is_ok());
        for (w, h, fps) in [
            (321, 240, 30),
            (320, 0, 30),
            (320, 240, 0),
            (4096, 2304, 30),
            (8, 8, 30),
        ] {
            let c = VideoConfig {
                width: w,
                height: h,
                fps,
            };
            assert!(c.validate().is_err(), "{c:?}");
        }
    }

    #[test]
    fn auto_falls_back_even_after_a_device_started_and_failed() {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let cfg = VideoConfig {
            width: 160,
            height: 120,
            fps: 30,
        };
        let clock = MediaClock::now();
        let h = auto_start(
            "video",
            Ok(()),
            |c| {
                // A device thread that was spawned, then the start-up failed: its handle drops.
                let _h = spawn_source("fake", "fake".into(), c, |_| {})?;
                anyhow::bail!("cannot open: busy")
            },
            |c| testsrc::start(&cfg, clock, tx, c),
        )
        .unwrap();
        assert_eq!(h.description, "testsrc 160x120@30");
        assert!(
            rx.recv_timeout(Duration::from_secs(2)).is_ok(),
            "the fallback runs"
        );
    }

    #[test]
    fn resampler_identity_and_ratio() {
        let mut r = Resampler::new(48_000);
        let mut out = Vec::new();
        for i in 0..100 {
            r.push([i as f32 / 1000.0, -(i as f32) / 1000.0], &mut out);
        }
        // Each input frame yields one output frame once its successor arrived.
        assert_eq!(out.len(), 99 * 2);
        assert_eq!(out[2 * 10], to_i16(0.010));
        assert_eq!(out[2 * 10 + 1], to_i16(-0.010));

        for in_rate in [8_000u32, 44_100, 96_000] {
            let mut r = Resampler::new(in_rate);
            let mut out = Vec::new();
            for _ in 0..in_rate {
                r.push([0.5, 0.5], &mut out);
            }
            let frames = out.len() / 2;
            assert!((47_990..=48_000).contains(&frames), "{in_rate}: {frames}");
            assert!(out.iter().all(|&s| s == to_i16(0.5)));
        }
    }

    #[test]
    fn resampler_interpolates_linearly() {
        // 24 kHz ramp -> every other output sample is a midpoint.
        let mut r = Resampler::new(24_000);
        let mut out = Vec::new();
        for x in [0.0, 0.5, 1.0] {
            r.push([x, x], &mut out);
        }
        let left: Vec<i16> = out.iter().step_by(2).copied().collect();
        assert_eq!(left, [0, to_i16(0.25), to_i16(0.5), to_i16(0.75)]);
    }
}
