//! Audio output: a queue of timed PCM that a device (cpal) or, without one, a real-time null
//! sink plays out. What it has played is the master clock of playback.
//!
//! The playback thread pushes decoded 48 kHz stereo chunks stamped with their timeline time;
//! the output side pulls them at `speed` times real time (by plain resampling: pitch follows
//! speed, as on a tape; above 2x the engine mutes) and publishes the timeline time of the
//! sample it is playing. It also notes the moments a beep starts (a silent block followed by
//! a loud one), which is how the headless player measures lip sync on the test card.
//!
//! The output side runs on the device's real-time thread, so it takes no lock and frees
//! nothing: chunks come to it through a lock-free single-producer single-consumer ring
//! (`rtrb`), go back to the playback thread through another once played (which frees them
//! there), beep onsets go out through a third, and the settings and the clock are atomics.
//! [`AudioSink::clear`] bumps a generation number; the output returns the chunks of an older
//! generation unplayed.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rtrb::{Consumer, Producer, RingBuffer};
use tracing::{info, warn};

pub const RATE: u32 = 48_000;
const NO_TIME: i64 = i64::MIN;
/// Chunks queued or being played at most (a chunk is an Opus packet, 20 ms: 5 s).
const MAX_CHUNKS: usize = 256;
/// Beep onsets not yet taken by the playback thread, at most.
const MAX_ONSETS: usize = 64;

struct Chunk {
    start_us: i64,
    samples: Vec<i16>,
    /// Read position in frames (fractional, for speed changes).
    pos: f64,
    /// The [`Shared::generation`] it was queued in.
    generation: u64,
}

impl Chunk {
    fn exhausted(&self) -> bool {
        self.pos as usize >= self.samples.len() / 2
    }
}

/// Settings and clock shared by the playback thread and the output: atomics only.
struct Shared {
    /// Timeline µs of the sample most recently played; `NO_TIME` before any.
    played_us: AtomicI64,
    /// Wall-clock instant that `played_us` was last updated at, as µs since `epoch`.
    played_at_us: AtomicI64,
    /// The generation `played_us` belongs to.
    played_generation: AtomicU64,
    epoch: Instant,
    volume: AtomicU32,
    muted: AtomicBool,
    paused: AtomicBool,
    speed: AtomicU32,
    frames_played: AtomicU64,
    underruns: AtomicU64,
    /// Bumped by [`AudioSink::clear`]: what was queued before is not played.
    generation: AtomicU64,
    /// Sees every block as it goes to the output (the echo canceller's far end in a call).
    tap: OnceLock<PlayoutTap>,
}

/// Receives each block of interleaved stereo 48 kHz samples as it is handed to the output,
/// volume applied (what the loudspeaker will play). Called on the audio thread: must not
/// block.
#[derive(Clone)]
pub struct PlayoutTap(pub Arc<PlayoutFn>);

/// What a [`PlayoutTap`] calls.
pub type PlayoutFn = dyn Fn(&[f32]) + Send + Sync;

impl std::fmt::Debug for PlayoutTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlayoutTap")
    }
}

impl Shared {
    fn new() -> Self {
        Self {
            played_us: AtomicI64::new(NO_TIME),
            played_at_us: AtomicI64::new(0),
            played_generation: AtomicU64::new(0),
            epoch: Instant::now(),
            volume: AtomicU32::new(1.0f32.to_bits()),
            muted: AtomicBool::new(false),
            paused: AtomicBool::new(true),
            speed: AtomicU32::new(1.0f32.to_bits()),
            frames_played: AtomicU64::new(0),
            underruns: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            tap: OnceLock::new(),
        }
    }
}

/// The output side, owned by the device callback (or the null sink's thread).
struct Renderer {
    shared: Arc<Shared>,
    chunks: Chunks,
    onsets: Producer<(i64, Instant)>,
    was_loud: bool,
}

/// The chunks on the output side.
struct Chunks {
    queued: Consumer<Chunk>,
    /// The chunk being played.
    current: Option<Chunk>,
    /// Played (or cleared) chunks, back to the playback thread.
    spent: Producer<Chunk>,
    /// The generation being played; older chunks are given back unplayed.
    generation: u64,
}

impl Chunks {
    /// Hands a chunk back. The spent ring has room for every chunk in circulation (the
    /// playback thread queues no more than that), so this never fails.
    fn give_back(&mut self, chunk: Chunk) {
        let _ = self.spent.push(chunk);
    }

    /// The next chunk to play from, giving back the exhausted and the cleared ones.
    fn front(&mut self) -> Option<&mut Chunk> {
        loop {
            match self.current.take() {
                Some(c) if !c.exhausted() && c.generation == self.generation => {
                    return Some(self.current.insert(c));
                }
                Some(c) => self.give_back(c),
                None => match self.queued.pop() {
                    Ok(c) => self.current = Some(c),
                    Err(_) => return None,
                },
            }
        }
    }
}

impl Renderer {
    /// Fills `out` (interleaved stereo f32) from the queue; `presented` is when the first
    /// sample of `out` will be heard.
    fn render(&mut self, out: &mut [f32], presented: Instant) {
        self.fill(out, presented);
        if let Some(tap) = self.shared.tap.get() {
            (tap.0)(out);
        }
    }

    fn fill(&mut self, out: &mut [f32], presented: Instant) {
        let shared = &*self.shared;
        let generation = shared.generation.load(Ordering::Acquire);
        if generation != self.chunks.generation {
            self.chunks.generation = generation;
            self.was_loud = false;
        }
        let paused = shared.paused.load(Ordering::Relaxed);
        let speed = f64::from(f32::from_bits(shared.speed.load(Ordering::Relaxed)));
        let gain = if shared.muted.load(Ordering::Relaxed) {
            0.0
        } else {
            f32::from_bits(shared.volume.load(Ordering::Relaxed))
        };
        if paused {
            out.iter_mut().for_each(|s| *s = 0.0);
            return;
        }
        let mut peak = 0i32;
        let mut first_us = NO_TIME;
        let mut last_us = NO_TIME;
        let frames = out.len() / 2;
        for i in 0..frames {
            let Some(c) = self.chunks.front() else {
                out[2 * i..].iter_mut().for_each(|s| *s = 0.0);
                // A gap once playing has started (not the wait for the first audio, nor the
                // one after a clear).
                let started = shared.played_generation.load(Ordering::Acquire) == generation
                    && shared.played_us.load(Ordering::Relaxed) != NO_TIME;
                if i > 0 || started {
                    shared.underruns.fetch_add(1, Ordering::Relaxed);
                }
                break;
            };
            let idx = c.pos as usize;
            let l = c.samples[2 * idx];
            let r = c.samples[2 * idx + 1];
            peak = peak.max(i32::from(l).abs()).max(i32::from(r).abs());
            out[2 * i] = f32::from(l) / 32768.0 * gain;
            out[2 * i + 1] = f32::from(r) / 32768.0 * gain;
            let t = c.start_us + (c.pos * 1e6 / f64::from(RATE)) as i64;
            if first_us == NO_TIME {
                first_us = t;
            }
            last_us = t;
            c.pos += speed;
        }
        if last_us != NO_TIME {
            shared.played_us.store(last_us, Ordering::Relaxed);
            let at = presented + Duration::from_micros(frames as u64 * 1_000_000 / u64::from(RATE));
            shared.played_at_us.store(
                at.saturating_duration_since(shared.epoch).as_micros() as i64,
                Ordering::Relaxed,
            );
            shared
                .played_generation
                .store(generation, Ordering::Release);
            shared
                .frames_played
                .fetch_add(frames as u64, Ordering::Relaxed);
        }
        // Beep onset: this block is loud (> -20 dBFS) and the one before was quiet.
        let loud = peak > 3277;
        let was = std::mem::replace(&mut self.was_loud, loud);
        if loud && !was && first_us != NO_TIME {
            // A full ring means nobody is taking onsets: dropping this one is fine.
            let _ = self.onsets.push((first_us, presented));
        }
    }
}

enum Backend {
    /// A real output device. `cpal::Stream` stops when dropped.
    Device(#[allow(dead_code)] cpal::Stream),
    /// No device: a thread consumes samples in real time.
    Null(Arc<AtomicBool>),
    /// Tests: nothing plays until [`AudioSink::pull`] is called, with the test's clock.
    #[cfg(test)]
    Manual(Box<Renderer>),
}

/// The audio output: device or null sink. The playback thread's side of it.
pub struct AudioSink {
    shared: Arc<Shared>,
    queue: Producer<Chunk>,
    spent: Consumer<Chunk>,
    onsets: Consumer<(i64, Instant)>,
    /// Chunks queued and not yet back from the output.
    in_flight: usize,
    backend: Backend,
    /// Human-readable description ("ALSA default", "none (silent)").
    pub description: String,
}

impl AudioSink {
    /// Opens the default output device if `use_device`, else (or if that fails) the null
    /// sink. The second value is a warning for the viewer when there is no device.
    pub fn open(use_device: bool) -> (Self, Option<String>) {
        let (sink, renderer) = Self::pair();
        if use_device {
            // A failed stream took the output side with it: a fresh pair replaces it.
            match open_device(renderer) {
                Ok((stream, desc)) => {
                    info!("audio output: {desc}");
                    return (sink.with(Backend::Device(stream), desc), None);
                }
                Err(e) => {
                    let w = format!("no audio device ({e}): playing silently");
                    warn!("{w}");
                    let (sink, renderer) = Self::pair();
                    return (sink.null(renderer), Some(w));
                }
            }
        }
        (sink.null(renderer), None)
    }

    /// A sink with no backend yet, and the output side that goes with it.
    fn pair() -> (SinkParts, Renderer) {
        let shared = Arc::new(Shared::new());
        let (queue, queued) = RingBuffer::new(MAX_CHUNKS);
        let (spent_tx, spent) = RingBuffer::new(MAX_CHUNKS);
        let (onsets_tx, onsets) = RingBuffer::new(MAX_ONSETS);
        (
            SinkParts {
                shared: shared.clone(),
                queue,
                spent,
                onsets,
            },
            Renderer {
                shared,
                chunks: Chunks {
                    queued,
                    current: None,
                    spent: spent_tx,
                    generation: 0,
                },
                onsets: onsets_tx,
                was_loud: false,
            },
        )
    }

    /// A sink that plays only when told to ([`Self::pull`]): deterministic tests.
    #[cfg(test)]
    pub(crate) fn manual() -> Self {
        let (sink, renderer) = Self::pair();
        sink.with(Backend::Manual(Box::new(renderer)), "manual (test)".into())
    }

    /// Plays `frames` sample frames as heard at `presented` (manual sinks).
    #[cfg(test)]
    pub(crate) fn pull(&mut self, frames: usize, presented: Instant) {
        if let Backend::Manual(r) = &mut self.backend {
            let mut buf = vec![0f32; frames * 2];
            r.render(&mut buf, presented);
        }
    }

    /// Sends every block a device plays from now on to `tap` too (once; later calls are
    /// ignored). The null sink has no loudspeaker, so nothing can echo: it feeds no tap.
    pub fn set_tap(&self, tap: PlayoutTap) {
        if self.is_device() {
            let _ = self.shared.tap.set(tap);
        }
    }

    pub fn is_device(&self) -> bool {
        matches!(self.backend, Backend::Device(_))
    }

    /// Frees what the output has given back.
    fn collect_spent(&mut self) {
        while let Ok(chunk) = self.spent.pop() {
            self.in_flight -= 1;
            drop(chunk);
        }
    }

    /// Queues decoded audio (48 kHz interleaved stereo) that starts at timeline `start_us`.
    /// With `MAX_CHUNKS` (256) already queued (an output that has stopped pulling), it is
    /// dropped.
    pub fn push(&mut self, start_us: i64, samples: Vec<i16>) {
        self.collect_spent();
        if samples.len() < 2 || self.in_flight >= MAX_CHUNKS {
            return;
        }
        let chunk = Chunk {
            start_us,
            samples,
            pos: 0.0,
            generation: self.shared.generation.load(Ordering::Relaxed),
        };
        if self.queue.push(chunk).is_ok() {
            self.in_flight += 1;
        }
    }

    /// Forgets everything queued (after a seek): the output gives it back unplayed.
    pub fn clear(&mut self) {
        self.collect_spent();
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Chunks queued and not yet played out.
    pub fn queued_chunks(&mut self) -> usize {
        self.collect_spent();
        self.in_flight
    }

    /// Timeline µs of the sample playing now (extrapolated from the last block), if any
    /// was played since the last [`clear`](Self::clear).
    pub fn played_us(&self, now: Instant) -> Option<i64> {
        let s = &self.shared;
        if s.played_generation.load(Ordering::Acquire) != s.generation.load(Ordering::Acquire) {
            return None;
        }
        let t = s.played_us.load(Ordering::Relaxed);
        if t == NO_TIME {
            return None;
        }
        let at = s.played_at_us.load(Ordering::Relaxed);
        let now_us = now.saturating_duration_since(s.epoch).as_micros() as i64;
        let speed = f64::from(f32::from_bits(s.speed.load(Ordering::Relaxed)));
        // Between callbacks, time moves on at `speed`; never extrapolate more than 50 ms.
        let since = (now_us - at).clamp(-50_000, 50_000);
        Some(t + (since as f64 * speed) as i64)
    }

    pub fn set_paused(&self, paused: bool) {
        self.shared.paused.store(paused, Ordering::Relaxed);
    }

    pub fn set_speed(&self, speed: f32) {
        self.shared.speed.store(speed.to_bits(), Ordering::Relaxed);
    }

    pub fn set_volume(&self, v: f32) {
        self.shared
            .volume
            .store(v.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    }

    pub fn set_muted(&self, m: bool) {
        self.shared.muted.store(m, Ordering::Relaxed);
    }

    /// Beep onsets heard since the last call: (timeline µs, instant presented).
    pub fn take_onsets(&mut self) -> Vec<(i64, Instant)> {
        std::iter::from_fn(|| self.onsets.pop().ok()).collect()
    }

    /// Output blocks that ran out of queued audio after playing had started: each one is
    /// an audible gap.
    pub fn underruns(&self) -> u64 {
        self.shared.underruns.load(Ordering::Relaxed)
    }

    pub fn frames_played(&self) -> u64 {
        self.shared.frames_played.load(Ordering::Relaxed)
    }
}

/// An [`AudioSink`] before its backend is chosen.
struct SinkParts {
    shared: Arc<Shared>,
    queue: Producer<Chunk>,
    spent: Consumer<Chunk>,
    onsets: Consumer<(i64, Instant)>,
}

impl SinkParts {
    fn with(self, backend: Backend, description: String) -> AudioSink {
        AudioSink {
            shared: self.shared,
            queue: self.queue,
            spent: self.spent,
            onsets: self.onsets,
            in_flight: 0,
            backend,
            description,
        }
    }

    fn null(self, mut renderer: Renderer) -> AudioSink {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("audio-null-sink".into())
            .spawn(move || {
                // 10 ms blocks on an absolute schedule, so the rate is exact.
                let block = Duration::from_millis(10);
                let mut buf = vec![0f32; (RATE as usize / 100) * 2];
                let start = Instant::now();
                let mut n = 0u32;
                while !stop2.load(Ordering::Relaxed) {
                    let due = start + block * n;
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    renderer.render(&mut buf, Instant::now());
                    n = n.wrapping_add(1);
                }
            });
        if let Err(e) = spawned {
            warn!("cannot start the null audio sink: {e}");
        }
        self.with(Backend::Null(stop), "none (silent)".into())
    }
}

impl Drop for AudioSink {
    fn drop(&mut self) {
        if let Backend::Null(stop) = &self.backend {
            stop.store(true, Ordering::Relaxed);
        }
    }
}

/// alsa-lib writes its errors to standard error ("ALSA lib confmisc.c:855:(parse_card) cannot
/// find card '0'", eight lines on a machine without a sound card) unless a thread has its own
/// handler: while `f` opens the device on this thread they are collected and logged at debug;
/// the viewer reads one warning instead.
#[cfg(target_os = "linux")]
fn quiet_alsa<T>(f: impl FnOnce() -> T) -> T {
    let collected = alsa::Output::local_error_handler().ok();
    let out = f();
    if let Some(c) = collected {
        let text = c.borrow().to_string();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            tracing::debug!("alsa: {line}");
        }
        // A fresh, empty buffer for whatever this thread opens next.
        let _ = alsa::Output::local_error_handler();
    }
    out
}

#[cfg(not(target_os = "linux"))]
fn quiet_alsa<T>(f: impl FnOnce() -> T) -> T {
    f()
}

fn open_device(renderer: Renderer) -> anyhow::Result<(cpal::Stream, String)> {
    quiet_alsa(|| open_cpal(renderer))
}

fn open_cpal(mut renderer: Renderer) -> anyhow::Result<(cpal::Stream, String)> {
    use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
    let host = cpal::default_host();
    let device = host
        .default_output_device()
        .ok_or_else(|| anyhow::anyhow!("no output device"))?;
    let name = device
        .id()
        .map(|i| i.to_string())
        .unwrap_or_else(|_| "default".into());
    let config = cpal::StreamConfig {
        channels: 2,
        sample_rate: RATE,
        buffer_size: cpal::BufferSize::Default,
    };
    let stream = device.build_output_stream(
        config,
        move |data: &mut [f32], info: &cpal::OutputCallbackInfo| {
            let ts = info.timestamp();
            let delay = ts.playback.duration_since(ts.callback);
            renderer.render(data, Instant::now() + delay);
        },
        |e| warn!("audio output error: {e}"),
        None,
    )?;
    stream.play()?;
    Ok((stream, format!("{name} (48 kHz stereo)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_sink_plays_in_real_time_and_reports_its_clock() {
        let (mut sink, warning) = AudioSink::open(false);
        assert!(warning.is_none());
        assert!(!sink.is_device());
        // 300 ms of silence, then a loud 50 ms block.
        sink.push(1_000_000, vec![0; 14_400 * 2]);
        sink.push(1_300_000, vec![10_000; 2_400 * 2]);
        sink.set_paused(false);
        std::thread::sleep(Duration::from_millis(500));
        let played = sink.played_us(Instant::now()).expect("audio played");
        assert!(played >= 1_300_000, "played {played}");
        assert_eq!(sink.queued_chunks(), 0, "everything queued was played");
        let onsets = sink.take_onsets();
        assert_eq!(onsets.len(), 1, "{onsets:?}");
        assert!((onsets[0].0 - 1_300_000).abs() <= 10_000, "{onsets:?}");
    }

    #[test]
    fn underruns_count_gaps_once_playing_has_started() {
        let mut sink = AudioSink::manual();
        sink.set_paused(false);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Waiting for the first audio is not a gap.
        sink.pull(480, at(0));
        sink.pull(480, at(10));
        assert_eq!(sink.underruns(), 0);
        // 20 ms queued, 30 ms asked for: one block runs dry, and the next finds nothing.
        sink.push(0, vec![0; 960 * 2]);
        sink.pull(480, at(20));
        sink.pull(480, at(30));
        assert_eq!(sink.underruns(), 0);
        sink.pull(480, at(40));
        assert_eq!(sink.underruns(), 1);
        sink.pull(480, at(50));
        assert_eq!(sink.underruns(), 2);
        // A clear (a seek) starts over: the wait for the new audio is not a gap.
        sink.clear();
        sink.pull(480, at(60));
        assert_eq!(sink.underruns(), 2);
        sink.push(1_000_000, vec![0; 480 * 2]);
        sink.pull(480, at(70));
        sink.pull(240, at(80));
        assert_eq!(sink.underruns(), 3);
    }

    #[test]
    fn paused_sink_holds_its_position() {
        let (mut sink, _) = AudioSink::open(false);
        sink.push(0, vec![0; 48_000 * 2]);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(sink.played_us(Instant::now()), None);
        assert_eq!(sink.frames_played(), 0);
    }

    /// Chunks go back to the playback thread once played or cleared; after a clear, nothing
    /// queued before it plays and the clock starts again with what is queued after it.
    #[test]
    fn chunks_come_back_and_clear_drops_what_was_queued() {
        let mut sink = AudioSink::manual();
        let t0 = Instant::now();
        sink.set_paused(false);
        for k in 0..3 {
            sink.push(k * 10_000, vec![1000; 480 * 2]);
        }
        assert_eq!(sink.queued_chunks(), 3);
        // 10 ms played from t0: the last sample is heard 10 ms later.
        let heard = t0 + Duration::from_millis(10);
        sink.pull(480, t0);
        assert_eq!(sink.played_us(heard), Some(9_979));
        // The first chunk is given back when the output moves on to the second.
        sink.pull(240, t0);
        assert_eq!(sink.queued_chunks(), 2);
        sink.clear();
        assert_eq!(sink.played_us(heard), None, "no clock after a clear");
        sink.push(500_000, vec![1000; 480 * 2]);
        sink.pull(480, t0);
        assert_eq!(sink.played_us(heard), Some(509_979));
        assert_eq!(sink.frames_played(), 480 + 240 + 480);
        // The cleared chunks came back unplayed, the last one once exhausted.
        sink.pull(10, t0);
        assert_eq!(sink.queued_chunks(), 0);
        // Full: an output that stopped pulling does not make the queue grow.
        for k in 0..(MAX_CHUNKS as i64 + 10) {
            sink.push(k, vec![0; 2]);
        }
        assert_eq!(sink.queued_chunks(), MAX_CHUNKS);
    }
}
