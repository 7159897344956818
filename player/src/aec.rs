//! Acoustic echo cancellation for call mode (issue 5).
//!
//! With loudspeakers, the peer's voice that we play comes back through our microphone and
//! would be sent back to the peer. [`echo_canceller`] makes a linked pair:
//!
//! - [`FarEnd`] is fed what the loudspeaker plays, from the audio-output callback.
//! - [`NearEnd`] cleans each microphone frame on the server's audio-encoder thread, before
//!   Opus encoding.
//!
//! The canceller is WebRTC's AEC3 as ported to pure Rust by the `sonora` crate (pinned
//! `=0.2.0`), with only the echo canceller on: no high-pass filter (`sonora` enforces one by
//! default; it distorts near-end speech), no noise suppression, no gain control. It processes
//! at 48 kHz (`sonora`'s default of 32 kHz would resample and drop everything above 16 kHz).
//!
//! # Why `sonora` and not `aec3`
//!
//! Both crates port the same C++ AEC3 and were measured side by side on the same simulated
//! room and speech (docs/benchmarks.md, "Echo cancellation (call mode)";
//! `scripts/bench-aec.sh`): the same delay estimates, the same double-talk behaviour and CPU
//! within the noise; `sonora` converged a little faster. What decides is threading:
//! `sonora`'s `AudioProcessing` is `Send`, so [`NearEnd`] owns it and runs it on the encoder
//! thread that calls it. `aec3` 0.4.0's `EchoCanceller3` is not `Send` (it holds a
//! `Box<dyn BlockProcessorBackend>` without a `Send` bound, and its graph runtime is `Rc`-based
//! by design), so it would need a thread of its own and a hand-off per frame, or `unsafe`,
//! which this workspace denies. Build with the `aec-compare` feature to get `Aec3` as a
//! second [`Canceller`] for the benchmark; it is not used otherwise.
//!
//! # Threads and queues
//!
//! ```text
//!  output callback ──push_interleaved──▶ ring: mono f32, ~1.4 s ──┐
//!  (cpal, real time; never blocks)                                  │ drained at each
//!                                                                   ▼ mic frame
//!  mic ─▶ 20 ms stereo i16 frame ─▶ NearEnd::process_stereo_i16 ─▶ Opus encoder
//!                                   (downmix, AEC3 on 2 × 10 ms, dual-mono out)
//! ```
//!
//! - [`FarEnd`] is `Clone + Send + Sync`. A push downmixes to mono and writes into a
//!   single-producer single-consumer ring of `AtomicU32` (safe code, no allocation, no lock
//!   shared with the consumer). Producers are serialised by a `try_lock`: a producer that would
//!   have to wait for another drops its samples instead, as does a push into a full ring; both
//!   are counted ([`AecStats::far_dropped`]). With one output stream neither happens.
//! - [`NearEnd`] is `Send`, not `Sync`: it owns the canceller. Each call drains the ring, then
//!   hands AEC3 the whole 10 ms render frames, spread over the 10 ms capture sub-frames of the
//!   mic frame as a real-time caller interleaving the two streams would.
//!
//! # Delay
//!
//! The ring is fed when the output callback fills the device buffer, that is *before* the
//! sound is heard (by the output latency), and the mic frame reaches [`NearEnd`] after its
//! capture (by the input latency and the server's 20 ms framing). So the echo of a render
//! sample shows up in the capture stream later than that sample entered AEC3 by: output
//! latency + acoustic path + input latency + framing. Nothing here measures that: AEC3's own
//! delay estimator (matched filters on the decimated signals) finds it and follows changes, as
//! in WebRTC; the benchmark checks it from 48 ms up to 268 ms. It needs some far-end speech to
//! lock on; until then AEC3's suppressor does the work (about 30 dB in the first seconds in
//! the benchmark).
//!
//! Render audio that piles up beyond [`MAX_PENDING_RENDER_MS`] without mic frames to match it
//! (encoder thread stalled, call not yet started) is stale: the oldest is dropped and counted
//! ([`AecStats::far_stale`]), so that AEC3 is not handed a backlog it could not align.
//!
//! # No far end: pass-through
//!
//! While no far-end audio has arrived for [`FAR_IDLE_BYPASS_MS`] (no audio device, headless,
//! before the output opens), the mic frames pass untouched and AEC3 is not run. When far-end
//! audio (re)appears, a fresh canceller starts. A device that plays silence still pushes
//! samples, so the canceller stays on.
//!
//! # Added latency and colouring
//!
//! AEC3 delays the capture by about 9 ms (431-432 samples at 48 kHz: its three-band filter
//! bank and 64-sample block framing, as in WebRTC), and the band split slightly colours the
//! signal (a dip around the 8 kHz band edge). When it starts or stops (far end appears or goes
//! away for good, [`NearEnd::set_enabled`]), the mic stream jumps by those 9 ms once.
//!
//! # Limitations
//!
//! - 48 kHz only (both sides), the rate of the whole project.
//! - The mic is processed as mono; the output is dual mono.
//! - A mic frame whose length is not a whole number of 10 ms stereo sub-frames is cancelled on
//!   the whole sub-frames only; the remainder passes unchanged and is counted
//!   ([`AecStats::unaligned_samples`]). The server always hands 20 ms frames.
//! - AEC3's default suppressor is cautious in double talk: it takes about 4-7 dB off the
//!   near-end speech while the far end talks too (measured in the benchmark).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};

/// The only sample rate, of far end and near end alike.
pub const RATE: u32 = 48_000;
/// Samples per channel of one AEC3 frame (10 ms at 48 kHz).
pub const SUB_FRAME: usize = RATE as usize / 100;
/// Far-end ring capacity in mono samples (a power of two; about 1.37 s).
const RING_CAPACITY: usize = 1 << 16;
/// Render audio kept pending at the near end; older render is stale and dropped.
pub const MAX_PENDING_RENDER_MS: usize = 500;
const MAX_PENDING_RENDER: usize = MAX_PENDING_RENDER_MS * RATE as usize / 1000;
/// Without far-end audio for this long, the near end passes the mic through untouched.
pub const FAR_IDLE_BYPASS_MS: usize = 1_000;
const FAR_IDLE_BYPASS: usize = FAR_IDLE_BYPASS_MS * RATE as usize / 1000;

/// Creates a linked pair: the far end (what the loudspeaker plays) and the near end (mic).
pub fn echo_canceller() -> anyhow::Result<(FarEnd, NearEnd)> {
    echo_canceller_with::<Sonora>()
}

/// [`echo_canceller`] with a chosen AEC3 port (for the benchmark's comparison).
pub fn echo_canceller_with<C: Canceller>() -> anyhow::Result<(FarEnd, NearEnd<C>)> {
    let shared = Arc::new(Shared {
        ring: Ring::new(RING_CAPACITY),
        producer: Mutex::new(()),
        dropped: AtomicU64::new(0),
    });
    let near = NearEnd {
        shared: Arc::clone(&shared),
        aec: C::create(),
        fresh: true,
        enabled: true,
        far_idle: FAR_IDLE_BYPASS,
        pending: VecDeque::with_capacity(RING_CAPACITY + MAX_PENDING_RENDER),
        render: vec![0.0; SUB_FRAME],
        capture: vec![0.0; SUB_FRAME],
        stats: AecStats::default(),
    };
    Ok((FarEnd { shared }, near))
}

/// What the canceller did so far. Far-end counts are in mono samples, near-end counts in
/// interleaved samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AecStats {
    /// Far-end samples dropped at push time (ring full, or another producer pushing).
    pub far_dropped: u64,
    /// Far-end samples dropped at the near end as too old to align (see the module docs).
    pub far_stale: u64,
    /// 10 ms render frames handed to AEC3.
    pub render_frames: u64,
    /// 10 ms capture sub-frames processed by AEC3.
    pub capture_frames: u64,
    /// Near-end samples passed through untouched because no far-end audio was arriving.
    pub bypassed_samples: u64,
    /// Near-end samples passed through because they did not fill a 10 ms sub-frame.
    pub unaligned_samples: u64,
    /// AEC3's own running estimate of its echo return loss enhancement, dB.
    pub erle_db: f64,
    /// AEC3's own estimate of the render-to-capture delay, ms.
    pub delay_ms: i32,
}

/// The loudspeaker side: what is about to be played. `Clone + Send + Sync`; never blocks.
#[derive(Clone)]
pub struct FarEnd {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FarEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FarEnd")
            .field("queued", &self.shared.ring.len())
            .field("dropped", &self.shared.dropped.load(Ordering::Relaxed))
            .finish()
    }
}

impl FarEnd {
    /// Queues `samples` (interleaved, `channels` per frame, 48 kHz, f32 in [-1, 1], any
    /// length) as the far-end reference. Called from the audio-output callback as it fills
    /// the device buffer. Downmixes to mono; a trailing partial frame is ignored; values are
    /// clamped to [-1, 1] and non-finite ones count as silence. Never blocks and never
    /// allocates: samples that do not fit (the near end is not draining) are dropped and
    /// counted.
    pub fn push_interleaved(&self, samples: &[f32], channels: usize) {
        if channels == 0 {
            return;
        }
        let frames = samples.len() / channels;
        let _producer = match self.shared.producer.try_lock() {
            Ok(guard) => guard,
            // The lock guards no data, so a poisoned one is as good as a free one.
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                self.shared
                    .dropped
                    .fetch_add(frames as u64, Ordering::Relaxed);
                return;
            }
        };
        let scale = 1.0 / channels as f32;
        let mono = samples.chunks_exact(channels).map(|frame| {
            let m = frame.iter().sum::<f32>() * scale;
            if m.is_finite() {
                m.clamp(-1.0, 1.0)
            } else {
                0.0
            }
        });
        let written = self.shared.ring.push(mono, frames);
        if written < frames {
            self.shared
                .dropped
                .fetch_add((frames - written) as u64, Ordering::Relaxed);
        }
    }
}

/// The microphone side: cleans captured frames of the far end's echo. `Send`.
pub struct NearEnd<C: Canceller = Sonora> {
    shared: Arc<Shared>,
    aec: C,
    /// `aec` has not processed anything yet.
    fresh: bool,
    enabled: bool,
    /// Mic samples per channel since far-end audio last arrived (saturating).
    far_idle: usize,
    /// Render samples drained from the ring, not yet handed to AEC3.
    pending: VecDeque<f32>,
    render: Vec<f32>,
    capture: Vec<f32>,
    stats: AecStats,
}

impl<C: Canceller> std::fmt::Debug for NearEnd<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NearEnd")
            .field("enabled", &self.enabled)
            .field("far_idle", &self.far_idle)
            .field("pending", &self.pending.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl<C: Canceller> NearEnd<C> {
    /// One 20 ms frame of interleaved stereo i16 at 48 kHz (1920 samples), processed in
    /// place: drains the far-end queue, downmixes to mono, runs the AEC on 10 ms sub-frames,
    /// writes the result back to both channels.
    ///
    /// Any length is accepted: whole 10 ms sub-frames (960 samples) are processed, a
    /// remainder is left unchanged (see the module docs). Disabled, or with no far-end audio
    /// for [`FAR_IDLE_BYPASS_MS`], the frame is not touched.
    pub fn process_stereo_i16(&mut self, frame: &mut [i16]) {
        let arrived = self.drain_far_end();
        let was_idle = self.far_idle >= FAR_IDLE_BYPASS;
        self.far_idle = if arrived {
            0
        } else {
            self.far_idle.saturating_add(frame.len() / 2)
        };
        if !self.enabled {
            return;
        }
        if self.far_idle >= FAR_IDLE_BYPASS {
            self.stats.bypassed_samples += frame.len() as u64;
            return;
        }
        if was_idle && !self.fresh {
            // The far end reappears after a silence: start from a fresh canceller.
            self.aec = C::create();
        }
        self.fresh = false;

        let whole = frame.len() / (2 * SUB_FRAME) * (2 * SUB_FRAME);
        self.stats.unaligned_samples += (frame.len() - whole) as u64;
        let sub_frames = whole / (2 * SUB_FRAME);
        for (i, chunk) in frame[..whole].chunks_exact_mut(2 * SUB_FRAME).enumerate() {
            // Spread the render frames over the capture sub-frames.
            let available = self.pending.len() / SUB_FRAME;
            for _ in 0..available.div_ceil(sub_frames - i) {
                self.feed_render();
            }
            for (m, lr) in self.capture.iter_mut().zip(chunk.chunks_exact(2)) {
                *m = (f32::from(lr[0]) + f32::from(lr[1])) * (0.5 / 32_768.0);
            }
            self.aec.process_capture(&mut self.capture);
            self.stats.capture_frames += 1;
            for (lr, &m) in chunk.chunks_exact_mut(2).zip(&self.capture) {
                let s = (m * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16;
                lr[0] = s;
                lr[1] = s;
            }
        }
    }

    /// Turns cancellation off (the frame is not touched: headset) or on. Turning it back on
    /// starts from a fresh canceller, which converges again. Far-end audio is drained and
    /// discarded while off.
    pub fn set_enabled(&mut self, on: bool) {
        if on && !self.enabled && !self.fresh {
            self.aec = C::create();
            self.fresh = true;
        }
        self.enabled = on;
    }

    /// Whether cancellation is on (see [`NearEnd::set_enabled`]).
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Counters and AEC3's own estimates, for stats and logs.
    pub fn stats(&self) -> AecStats {
        let (erle_db, delay_ms) = self.aec.estimates();
        AecStats {
            far_dropped: self.shared.dropped.load(Ordering::Relaxed),
            erle_db,
            delay_ms,
            ..self.stats
        }
    }

    /// Moves the queued far end into `pending`; whether anything arrived.
    fn drain_far_end(&mut self) -> bool {
        let before = self.pending.len();
        self.shared.ring.pop_into(&mut self.pending);
        let arrived = self.pending.len() > before;
        if !self.enabled {
            self.pending.clear();
        } else if self.pending.len() > MAX_PENDING_RENDER {
            let stale = self.pending.len() - MAX_PENDING_RENDER;
            self.pending.drain(..stale);
            self.stats.far_stale += stale as u64;
        }
        arrived
    }

    fn feed_render(&mut self) {
        for (dst, src) in self.render.iter_mut().zip(self.pending.drain(..SUB_FRAME)) {
            *dst = src;
        }
        self.aec.analyze_render(&self.render);
        self.stats.render_frames += 1;
    }
}

/// State shared by the [`FarEnd`] handles and the [`NearEnd`].
struct Shared {
    ring: Ring,
    /// Serialises producers, so that the ring has one producer at a time.
    producer: Mutex<()>,
    dropped: AtomicU64,
}

/// Single-producer single-consumer ring of f32 stored as bits in atomics: lock-free, no
/// `unsafe`. Indices grow (wrapping) and are masked on access.
struct Ring {
    slots: Box<[AtomicU32]>,
    mask: usize,
    /// Next index to write; stored by the producer only.
    write: AtomicUsize,
    /// Next index to read; stored by the consumer only.
    read: AtomicUsize,
}

impl Ring {
    fn new(capacity: usize) -> Self {
        assert!(capacity.is_power_of_two(), "the mask needs a power of two");
        Self {
            slots: (0..capacity).map(|_| AtomicU32::new(0)).collect(),
            mask: capacity - 1,
            write: AtomicUsize::new(0),
            read: AtomicUsize::new(0),
        }
    }

    fn len(&self) -> usize {
        let r = self.read.load(Ordering::Acquire);
        let w = self.write.load(Ordering::Acquire);
        w.wrapping_sub(r)
    }

    /// Writes as many of the `n` samples as fit and returns how many. The one producer only.
    fn push(&self, samples: impl Iterator<Item = f32>, n: usize) -> usize {
        let w = self.write.load(Ordering::Relaxed);
        let r = self.read.load(Ordering::Acquire);
        let n = n.min(self.slots.len() - w.wrapping_sub(r));
        for (i, s) in samples.take(n).enumerate() {
            self.slots[w.wrapping_add(i) & self.mask].store(s.to_bits(), Ordering::Relaxed);
        }
        self.write.store(w.wrapping_add(n), Ordering::Release);
        n
    }

    /// Moves everything queued into `out`. The one consumer only.
    fn pop_into(&self, out: &mut VecDeque<f32>) {
        let r = self.read.load(Ordering::Relaxed);
        let w = self.write.load(Ordering::Acquire);
        out.extend((0..w.wrapping_sub(r)).map(|i| {
            f32::from_bits(self.slots[r.wrapping_add(i) & self.mask].load(Ordering::Relaxed))
        }));
        self.read.store(w, Ordering::Release);
    }
}

mod sealed {
    pub trait Sealed {}
}

/// An AEC3 port that [`NearEnd`] can run: [`Sonora`], or `Aec3` with the `aec-compare`
/// feature. Sealed. It works on 10 ms mono frames at 48 kHz, f32 in [-1, 1].
pub trait Canceller: sealed::Sealed {
    #[doc(hidden)]
    fn create() -> Self
    where
        Self: Sized;
    #[doc(hidden)]
    fn analyze_render(&mut self, frame: &[f32]);
    #[doc(hidden)]
    fn process_capture(&mut self, frame: &mut [f32]);
    /// (ERLE in dB, delay in ms) as the canceller itself estimates them.
    #[doc(hidden)]
    fn estimates(&self) -> (f64, i32);
}

/// `sonora`'s AEC3 (the one used): echo canceller only, high-pass filter off, 48 kHz.
pub struct Sonora {
    apm: sonora::AudioProcessing,
    scratch: Vec<f32>,
}

impl sealed::Sealed for Sonora {}

impl Canceller for Sonora {
    fn create() -> Self {
        use sonora::config::{EchoCanceller, MaxProcessingRate};
        let mut config = sonora::Config {
            echo_canceller: Some(EchoCanceller {
                // Otherwise it forces a high-pass filter that distorts near-end speech.
                enforce_high_pass_filtering: false,
                ..Default::default()
            }),
            high_pass_filter: None,
            ..Default::default()
        };
        config.pipeline.maximum_internal_processing_rate = MaxProcessingRate::Rate48kHz;
        let stream = sonora::StreamConfig::new(RATE, 1);
        Self {
            apm: sonora::AudioProcessing::builder()
                .config(config)
                .capture_config(stream)
                .render_config(stream)
                .build(),
            scratch: vec![0.0; SUB_FRAME],
        }
    }

    fn analyze_render(&mut self, frame: &[f32]) {
        // Only fails for formats other than the one configured; the render output (the
        // input, unchanged) is not used.
        let _ = self
            .apm
            .process_render_f32(&[frame], &mut [self.scratch.as_mut_slice()]);
    }

    fn process_capture(&mut self, frame: &mut [f32]) {
        self.scratch.copy_from_slice(frame);
        if self
            .apm
            .process_capture_f32(&[self.scratch.as_slice()], &mut [frame])
            .is_err()
        {
            frame.copy_from_slice(&self.scratch);
        }
    }

    fn estimates(&self) -> (f64, i32) {
        let s = self.apm.statistics();
        (
            s.echo_return_loss_enhancement.unwrap_or(0.0),
            s.delay_ms.unwrap_or(0),
        )
    }
}

#[cfg(feature = "aec-compare")]
pub use self::aec3_port::Aec3;

#[cfg(feature = "aec-compare")]
mod aec3_port {
    use aec3::api::config::EchoCanceller3Config;
    use aec3::api::control::EchoControl;
    use aec3::audio_processing::aec3::echo_canceller3::EchoCanceller3;
    use aec3::audio_processing::audio_buffer::AudioBuffer;
    use aec3::audio_processing::stream_config::StreamConfig;

    use super::{sealed, Canceller, RATE};

    /// The `aec3` crate's `EchoCanceller3` with its default config (comparison only). Not
    /// `Send`, so neither is a `NearEnd<Aec3>`.
    pub struct Aec3 {
        aec: EchoCanceller3,
        render: AudioBuffer,
        capture: AudioBuffer,
        config: StreamConfig,
    }

    impl sealed::Sealed for Aec3 {}

    impl Canceller for Aec3 {
        fn create() -> Self {
            let rate = RATE as usize;
            Self {
                aec: EchoCanceller3::new(EchoCanceller3Config::default(), RATE as i32, 1, 1),
                render: AudioBuffer::from_sample_rates(rate, 1, rate, 1, rate),
                capture: AudioBuffer::from_sample_rates(rate, 1, rate, 1, rate),
                config: StreamConfig::new(rate, 1, false),
            }
        }

        fn analyze_render(&mut self, frame: &[f32]) {
            self.render.copy_from(&[frame], &self.config);
            self.render.split_into_frequency_bands();
            self.aec.analyze_render(&mut self.render);
        }

        fn process_capture(&mut self, frame: &mut [f32]) {
            self.capture.copy_from(&[frame], &self.config);
            self.aec.analyze_capture(&mut self.capture);
            self.capture.split_into_frequency_bands();
            self.aec.process_capture(&mut self.capture, false);
            self.capture.merge_frequency_bands();
            self.capture.copy_to_stream(&self.config, &mut [frame]);
        }

        fn estimates(&self) -> (f64, i32) {
            let m = self.aec.metrics();
            (m.echo_return_loss_enhancement, m.delay_ms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng as _, RngCore as _, SeedableRng as _};

    const MS: usize = RATE as usize / 1000;

    /// A speech-like signal: syllables of 120-300 ms with gaps, each voiced (harmonics of a
    /// gliding 100-220 Hz pitch, shaped by two formants) or, one in four, a noise burst;
    /// about -22 dBFS RMS while talking.
    fn speech_like(seconds: f32, seed: u64) -> Vec<f32> {
        let n = (seconds * RATE as f32) as usize;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut out = vec![0.0f32; n];
        let mut t = 0;
        while t < n {
            let len = (120 + (rng.next_u64() % 180) as usize) * MS;
            let gap = (30 + (rng.next_u64() % 120) as usize) * MS;
            let end = (t + len).min(n);
            let voiced = !rng.next_u64().is_multiple_of(4);
            let f0 = 100.0 + 120.0 * (rng.random_range(-1.0f32..1.0) + 1.0) / 2.0;
            let glide = 1.0 + 0.3 * rng.random_range(-1.0f32..1.0);
            let (f1, f2) = (
                300.0 + 500.0 * (rng.random_range(-1.0f32..1.0) + 1.0),
                1_000.0 + 800.0 * (rng.random_range(-1.0f32..1.0) + 1.0),
            );
            let mut phase = 0.0f32;
            for (i, s) in out[t..end].iter_mut().enumerate() {
                let x = i as f32 / (end - t) as f32;
                let env = (std::f32::consts::PI * x).sin().powf(0.5);
                *s = if voiced {
                    let f = f0 * (1.0 + (glide - 1.0) * x);
                    phase += 2.0 * std::f32::consts::PI * f / RATE as f32;
                    let mut v = 0.0;
                    for h in 1..=30 {
                        let fh = f * h as f32;
                        if fh > 7_000.0 {
                            break;
                        }
                        let w = 1.0 / (1.0 + ((fh - f1) / 150.0).powi(2))
                            + 0.5 / (1.0 + ((fh - f2) / 200.0).powi(2))
                            + 0.02;
                        v += w * (phase * h as f32).sin();
                    }
                    0.08 * env * v
                } else {
                    0.05 * env * rng.random_range(-1.0f32..1.0)
                };
            }
            t = end + gap;
        }
        out
    }

    /// The room of issue 5: a direct path at 40 ms, then a 200 ms tail decaying by 60 dB
    /// (sparse here, one reflection a millisecond, to keep the test quick in a debug build).
    fn room(x: &[f32]) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(40_200);
        let mut taps = vec![(40 * MS, 0.5f32)];
        for k in 1..=200 {
            let decay = 10f32.powf(-3.0 * k as f32 / 200.0);
            taps.push((
                40 * MS + k * MS,
                0.12 * decay * rng.random_range(-1.0f32..1.0),
            ));
        }
        let mut y = vec![0.0f32; x.len()];
        for &(d, g) in &taps {
            for (o, &s) in y[d.min(x.len())..].iter_mut().zip(x) {
                *o += g * s;
            }
        }
        y
    }

    fn to_stereo_i16(x: &[f32]) -> Vec<i16> {
        x.iter()
            .flat_map(|&s| {
                let v = (s * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16;
                [v, v]
            })
            .collect()
    }

    fn left(frame: &[i16]) -> impl Iterator<Item = f32> + '_ {
        frame.chunks_exact(2).map(|lr| f32::from(lr[0]) / 32_768.0)
    }

    fn energy(x: &[f32]) -> f64 {
        x.iter().map(|&s| f64::from(s).powi(2)).sum()
    }

    /// Plays `far` and records `mic` through the public API in 10 ms frames: each output
    /// "callback" pushes the next 10 ms (stereo) before the mic frame of the same 10 ms is
    /// processed. Returns the processed mic (left channel).
    fn call(far: Option<&[f32]>, mic: &[f32], near: &mut NearEnd, far_end: &FarEnd) -> Vec<f32> {
        let mut out = Vec::with_capacity(mic.len());
        for (k, chunk) in mic.chunks(SUB_FRAME).enumerate() {
            if let Some(far) = far {
                let played: Vec<f32> = far[k * SUB_FRAME..]
                    .iter()
                    .take(SUB_FRAME)
                    .flat_map(|&s| [s, s])
                    .collect();
                far_end.push_interleaved(&played, 2);
            }
            let mut frame = to_stereo_i16(chunk);
            near.process_stereo_i16(&mut frame);
            out.extend(left(&frame));
        }
        out
    }

    #[test]
    fn room_echo_is_reduced_by_20_db_after_convergence() {
        let far = speech_like(8.0, 1);
        let echo = room(&far);
        let (far_end, mut near) = echo_canceller().expect("canceller");
        let out = call(Some(&far), &echo, &mut near, &far_end);
        // After 3 s of far-end speech, the echo that is left.
        let from = 3 * RATE as usize;
        let erle = 10.0 * (energy(&echo[from..]) / energy(&out[from..]).max(1e-12)).log10();
        assert!(erle >= 20.0, "ERLE {erle:.1} dB");
        let stats = near.stats();
        assert_eq!(stats.capture_frames, 800, "{stats:?}");
        assert_eq!(stats.render_frames, 800, "{stats:?}");
        assert_eq!(
            (stats.far_dropped, stats.far_stale, stats.bypassed_samples),
            (0, 0, 0)
        );
        // AEC3 found the echo path: 40 ms, give or take its block size.
        assert!((30..=60).contains(&stats.delay_ms), "{stats:?}");
    }

    #[test]
    fn near_end_alone_passes_with_little_change() {
        // A device playing silence: the canceller runs, with nothing to cancel.
        let talk = speech_like(3.0, 2);
        let silence = vec![0.0f32; talk.len()];
        let (far_end, mut near) = echo_canceller().expect("canceller");
        let out = call(Some(&silence), &talk, &mut near, &far_end);
        assert!(near.stats().capture_frames > 0);
        // AEC3 delays its output by about 9 ms (its filter bank and block framing), and its
        // band split shifts phases a little: compare the level, and the 10 ms energy
        // envelopes at that delay.
        const LAG: usize = 432;
        let (from, to) = (RATE as usize / 2, talk.len() - SUB_FRAME);
        let level_db =
            10.0 * (energy(&out[from + LAG..to + LAG]) / energy(&talk[from..to])).log10();
        assert!(level_db.abs() < 1.0, "level changed by {level_db:.2} dB");
        let envelope = |x: &[f32]| -> Vec<f64> { x.chunks(SUB_FRAME).map(energy).collect() };
        let (a, b) = (
            envelope(&talk[from..to]),
            envelope(&out[from + LAG..to + LAG]),
        );
        let corr = a.iter().zip(&b).map(|(x, y)| x * y).sum::<f64>()
            / (a.iter().map(|x| x * x).sum::<f64>() * b.iter().map(|y| y * y).sum::<f64>()).sqrt();
        assert!(corr > 0.99, "envelope correlation {corr:.4}");
        // Every talking 10 ms frame within 3 dB.
        let loud = a.iter().cloned().fold(0.0, f64::max) * 1e-3;
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            if *x > loud {
                let d = 10.0 * (y / x).log10();
                assert!(d.abs() < 3.0, "frame {i}: {d:.1} dB");
            }
        }
    }

    #[test]
    fn without_far_end_the_mic_passes_untouched() {
        // No audio device: nothing is ever pushed.
        let talk = speech_like(1.5, 3);
        let (_far_end, mut near) = echo_canceller().expect("canceller");
        for chunk in talk.chunks(2 * SUB_FRAME) {
            let mut frame = to_stereo_i16(chunk);
            let before = frame.clone();
            near.process_stereo_i16(&mut frame);
            assert_eq!(frame, before);
        }
        let stats = near.stats();
        assert_eq!(stats.capture_frames, 0);
        assert_eq!(stats.bypassed_samples, 2 * talk.len() as u64);
    }

    #[test]
    fn canceller_stops_when_far_end_stops_and_restarts_when_it_returns() {
        let far = speech_like(1.0, 4);
        let (far_end, mut near) = echo_canceller().expect("canceller");
        let mic = room(&far);
        call(Some(&far), &mic, &mut near, &far_end);
        let processed = near.stats().capture_frames;
        assert_eq!(processed, 100);
        // 1 s without far-end audio, then the mic passes untouched.
        call(None, &vec![0.0; RATE as usize], &mut near, &far_end);
        let talk = speech_like(0.5, 5);
        let mut frame = to_stereo_i16(&talk[..2 * SUB_FRAME]);
        let before = frame.clone();
        near.process_stereo_i16(&mut frame);
        assert_eq!(frame, before);
        // The far end plays again: cancelling again.
        call(Some(&far), &mic[..RATE as usize / 10], &mut near, &far_end);
        assert!(near.stats().capture_frames > processed + 100);
    }

    #[test]
    fn disabled_is_bit_exact_pass_through() {
        let far = speech_like(2.0, 6);
        let mic: Vec<f32> = room(&far)
            .iter()
            .zip(speech_like(2.0, 7))
            .map(|(e, n)| e + n)
            .collect();
        let (far_end, mut near) = echo_canceller().expect("canceller");
        near.set_enabled(false);
        assert!(!near.is_enabled());
        for (k, chunk) in mic.chunks(2 * SUB_FRAME).enumerate() {
            let played: Vec<f32> = far[k * 2 * SUB_FRAME..][..chunk.len()].to_vec();
            far_end.push_interleaved(&played, 1);
            let mut frame = to_stereo_i16(chunk);
            // Stereo that differs per channel stays so.
            frame[1] = frame[1].wrapping_add(1);
            let before = frame.clone();
            near.process_stereo_i16(&mut frame);
            assert_eq!(frame, before);
        }
        assert_eq!(near.stats().capture_frames, 0);
        // Back on: the far end queued while off was discarded, and it processes again.
        near.set_enabled(true);
        call(Some(&far), &mic[..RATE as usize / 10], &mut near, &far_end);
        let stats = near.stats();
        assert_eq!(stats.capture_frames, 10, "{stats:?}");
        assert_eq!(stats.far_stale, 0, "{stats:?}");
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let (far_end, mut near) = echo_canceller().expect("canceller");
        far_end.push_interleaved(&[0.5; 7], 0);
        far_end.push_interleaved(&[], 2);
        far_end.push_interleaved(&[0.1; 7], 3); // two frames and a partial one
        far_end.push_interleaved(&[f32::NAN, f32::INFINITY, -7.0, 0.25], 1);
        let lens = [0, 1, 7, 959, 960, 961, 1919, 1921, 5000];
        for len in lens {
            let mut frame: Vec<i16> = (0..len).map(|i| (i as i16).wrapping_mul(97)).collect();
            let before = frame.clone();
            near.process_stereo_i16(&mut frame);
            assert_eq!(frame.len(), len);
            // Past the whole 10 ms sub-frames, nothing is touched.
            let whole = len / (2 * SUB_FRAME) * 2 * SUB_FRAME;
            assert_eq!(frame[whole..], before[whole..]);
        }
        let stats = near.stats();
        let unaligned: usize = lens.iter().map(|len| len % (2 * SUB_FRAME)).sum();
        assert_eq!(stats.unaligned_samples, unaligned as u64);
        assert!(stats.capture_frames > 0);
        // Far end far ahead of the mic: the ring fills (the excess is dropped and counted),
        // and the near end keeps only the newest 500 ms.
        let long = vec![0.1f32; 2 * RING_CAPACITY];
        far_end.push_interleaved(&long, 1);
        let stats = near.stats();
        assert_eq!(stats.far_dropped, RING_CAPACITY as u64);
        let mut frame = vec![0i16; 1920];
        near.process_stereo_i16(&mut frame);
        let stats = near.stats();
        assert!(stats.far_stale > 0, "{stats:?}");
    }

    #[test]
    fn ring_keeps_order_across_threads() {
        let (far_end, near) = echo_canceller().expect("canceller");
        let producer = std::thread::spawn({
            let far_end = far_end.clone();
            move || {
                // 200 000 consecutive integers, exact in f32, scaled into [-1, 1].
                for block in (0..200_000u32).collect::<Vec<_>>().chunks(441) {
                    let samples: Vec<f32> = block.iter().map(|&i| i as f32 / 1e6).collect();
                    far_end.push_interleaved(&samples, 1);
                }
            }
        });
        let mut seen = VecDeque::new();
        let mut got = Vec::new();
        while !producer.is_finished() || near.shared.ring.len() > 0 {
            near.shared.ring.pop_into(&mut seen);
            got.extend(seen.drain(..));
        }
        producer.join().expect("producer");
        near.shared.ring.pop_into(&mut seen);
        got.extend(seen.drain(..));
        let dropped = near.stats().far_dropped as usize;
        assert_eq!(got.len() + dropped, 200_000);
        // In order, nothing repeated; gaps only where the ring was full.
        assert!(got.windows(2).all(|w| w[1] > w[0]));
        if dropped == 0 {
            assert!(got
                .iter()
                .enumerate()
                .all(|(i, &v)| (v * 1e6).round() as usize == i));
        }
    }

    #[test]
    fn far_end_and_near_end_can_move_to_other_threads() {
        fn send_sync<T: Send + Sync + Clone>() {}
        fn send<T: Send>() {}
        send_sync::<FarEnd>();
        send::<NearEnd>();
    }
}
