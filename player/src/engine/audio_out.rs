//! Audio output: a queue of timed PCM that a device (cpal) or, without one, a real-time null
//! sink plays out. What it has played is the master clock of playback.
//!
//! The playback thread pushes decoded 48 kHz stereo chunks stamped with their timeline time;
//! the output side pulls them at `speed` times real time (by plain resampling: pitch follows
//! speed, as on a tape; above 2x the engine mutes) and publishes the timeline time of the
//! sample it is playing. It also notes the moments a beep starts (a silent block followed by
//! a loud one), which is how the headless player measures lip sync on the test card.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tracing::{info, warn};

pub const RATE: u32 = 48_000;
const NO_TIME: i64 = i64::MIN;

struct Chunk {
    start_us: i64,
    samples: Vec<i16>,
    /// Read position in frames (fractional, for speed changes).
    pos: f64,
}

/// State shared between the playback thread and the output callback.
pub struct Shared {
    queue: Mutex<VecDeque<Chunk>>,
    /// Timeline µs of the sample most recently played; `NO_TIME` before any.
    played_us: AtomicI64,
    /// Wall-clock instant that `played_us` was last updated at, as µs since `epoch`.
    played_at_us: AtomicI64,
    epoch: Instant,
    volume: AtomicU32,
    muted: AtomicBool,
    paused: AtomicBool,
    speed: AtomicU32,
    frames_played: AtomicU64,
    underruns: AtomicU64,
    was_loud: AtomicBool,
    onsets: Mutex<Vec<(i64, Instant)>>,
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
            queue: Mutex::new(VecDeque::new()),
            played_us: AtomicI64::new(NO_TIME),
            played_at_us: AtomicI64::new(0),
            epoch: Instant::now(),
            volume: AtomicU32::new(1.0f32.to_bits()),
            muted: AtomicBool::new(false),
            paused: AtomicBool::new(true),
            speed: AtomicU32::new(1.0f32.to_bits()),
            frames_played: AtomicU64::new(0),
            underruns: AtomicU64::new(0),
            was_loud: AtomicBool::new(false),
            onsets: Mutex::new(Vec::new()),
            tap: OnceLock::new(),
        }
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<Chunk>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fills `out` (interleaved stereo f32) from the queue; `presented` is when the first sample
    /// of `out` will be heard.
    fn render(&self, out: &mut [f32], presented: Instant) {
        self.fill(out, presented);
        if let Some(tap) = self.tap.get() {
            (tap.0)(out);
        }
    }

    fn fill(&self, out: &mut [f32], presented: Instant) {
        let paused = self.paused.load(Ordering::Relaxed);
        let speed = f64::from(f32::from_bits(self.speed.load(Ordering::Relaxed)));
        let gain = if self.muted.load(Ordering::Relaxed) {
            0.0
        } else {
            f32::from_bits(self.volume.load(Ordering::Relaxed))
        };
        if paused {
            out.iter_mut().for_each(|s| *s = 0.0);
            return;
        }
        let mut q = self.queue();
        let mut peak = 0i32;
        let mut first_us = NO_TIME;
        let mut last_us = NO_TIME;
        let frames = out.len() / 2;
        for i in 0..frames {
            // Drop exhausted chunks.
            while q
                .front()
                .is_some_and(|c| c.pos as usize >= c.samples.len() / 2)
            {
                q.pop_front();
            }
            let Some(c) = q.front_mut() else {
                out[2 * i..].iter_mut().for_each(|s| *s = 0.0);
                self.underruns.fetch_add(1, Ordering::Relaxed);
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
        drop(q);
        if last_us != NO_TIME {
            self.played_us.store(last_us, Ordering::Release);
            let at = presented + Duration::from_micros(frames as u64 * 1_000_000 / u64::from(RATE));
            self.played_at_us.store(
                at.saturating_duration_since(self.epoch).as_micros() as i64,
                Ordering::Release,
            );
            self.frames_played
                .fetch_add(frames as u64, Ordering::Relaxed);
        }
        // Beep onset: this block is loud (> -20 dBFS) and the one before was quiet.
        let loud = peak > 3277;
        let was = self.was_loud.swap(loud, Ordering::Relaxed);
        if loud && !was && first_us != NO_TIME {
            self.onsets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((first_us, presented));
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
    Manual,
}

/// The audio output: device or null sink.
pub struct AudioSink {
    shared: Arc<Shared>,
    backend: Backend,
    /// Human-readable description ("ALSA default", "none (silent)").
    pub description: String,
}

impl AudioSink {
    /// Opens the default output device if `use_device`, else (or if that fails) the null
    /// sink. The second value is a warning for the viewer when there is no device.
    pub fn open(use_device: bool) -> (Self, Option<String>) {
        let shared = Arc::new(Shared::new());
        if use_device {
            match open_device(shared.clone()) {
                Ok((stream, desc)) => {
                    info!("audio output: {desc}");
                    return (
                        Self {
                            shared,
                            backend: Backend::Device(stream),
                            description: desc,
                        },
                        None,
                    );
                }
                Err(e) => {
                    let w = format!("no audio device ({e}): playing silently");
                    warn!("{w}");
                    return (Self::null(shared), Some(w));
                }
            }
        }
        (Self::null(shared), None)
    }

    fn null(shared: Arc<Shared>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = shared.clone();
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
                    s2.render(&mut buf, Instant::now());
                    n = n.wrapping_add(1);
                }
            });
        if let Err(e) = spawned {
            warn!("cannot start the null audio sink: {e}");
        }
        Self {
            shared,
            backend: Backend::Null(stop),
            description: "none (silent)".into(),
        }
    }

    /// A sink that plays only when told to ([`Self::pull`]): deterministic tests.
    #[cfg(test)]
    pub(crate) fn manual() -> Self {
        Self {
            shared: Arc::new(Shared::new()),
            backend: Backend::Manual,
            description: "manual (test)".into(),
        }
    }

    /// Plays `frames` sample frames as heard at `presented` (manual sinks).
    #[cfg(test)]
    pub(crate) fn pull(&self, frames: usize, presented: Instant) {
        let mut buf = vec![0f32; frames * 2];
        self.shared.render(&mut buf, presented);
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

    /// Queues decoded audio (48 kHz interleaved stereo) that starts at timeline `start_us`.
    pub fn push(&self, start_us: i64, samples: Vec<i16>) {
        if samples.len() >= 2 {
            self.shared.queue().push_back(Chunk {
                start_us,
                samples,
                pos: 0.0,
            });
        }
    }

    /// Forgets everything queued (after a seek).
    pub fn clear(&self) {
        self.shared.queue().clear();
        self.shared.played_us.store(NO_TIME, Ordering::Release);
        self.shared.was_loud.store(false, Ordering::Relaxed);
    }

    /// Timeline µs where the queued audio ends, if anything is queued.
    pub fn queued_end_us(&self) -> Option<i64> {
        self.shared
            .queue()
            .back()
            .map(|c| c.start_us + (c.samples.len() as i64 / 2) * 1_000_000 / i64::from(RATE))
    }

    /// Timeline µs of the sample playing now (extrapolated from the last block), if any.
    pub fn played_us(&self, now: Instant) -> Option<i64> {
        let t = self.shared.played_us.load(Ordering::Acquire);
        if t == NO_TIME {
            return None;
        }
        let at = self.shared.played_at_us.load(Ordering::Acquire);
        let now_us = now.saturating_duration_since(self.shared.epoch).as_micros() as i64;
        let speed = f64::from(f32::from_bits(self.shared.speed.load(Ordering::Relaxed)));
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
    pub fn take_onsets(&self) -> Vec<(i64, Instant)> {
        std::mem::take(&mut *self.shared.onsets.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn frames_played(&self) -> u64 {
        self.shared.frames_played.load(Ordering::Relaxed)
    }
}

impl Drop for AudioSink {
    fn drop(&mut self) {
        if let Backend::Null(stop) = &self.backend {
            stop.store(true, Ordering::Relaxed);
        }
    }
}

fn open_device(shared: Arc<Shared>) -> anyhow::Result<(cpal::Stream, String)> {
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
            shared.render(data, Instant::now() + delay);
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
        let (sink, warning) = AudioSink::open(false);
        assert!(warning.is_none());
        assert!(!sink.is_device());
        // 300 ms of silence, then a loud 50 ms block.
        sink.push(1_000_000, vec![0; 14_400 * 2]);
        sink.push(1_300_000, vec![10_000; 2_400 * 2]);
        sink.set_paused(false);
        std::thread::sleep(Duration::from_millis(500));
        let played = sink.played_us(Instant::now()).expect("audio played");
        assert!(played >= 1_300_000, "played {played}");
        assert_eq!(sink.queued_end_us(), None, "everything queued was played");
        let onsets = sink.take_onsets();
        assert_eq!(onsets.len(), 1, "{onsets:?}");
        assert!((onsets[0].0 - 1_300_000).abs() <= 10_000, "{onsets:?}");
    }

    #[test]
    fn paused_sink_holds_its_position() {
        let (sink, _) = AudioSink::open(false);
        sink.push(0, vec![0; 48_000 * 2]);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(sink.played_us(Instant::now()), None);
        assert_eq!(sink.frames_played(), 0);
    }
}
