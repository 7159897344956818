//! Acoustic echo cancellation for call mode (issue 5).
//!
//! With loudspeakers, the peer's voice that we play comes back through our microphone and
//! would be sent back to the peer. [`echo_canceller`] makes a linked pair:
//!
//! - [`FarEnd`] is fed what the loudspeaker plays, from the audio-output callback.
//! - [`NearEnd`] cleans each microphone frame on the server's audio-encoder thread, before
//!   Opus encoding.
//!
//! The canceller is WebRTC's AEC3 as ported to pure Rust by the `aec3` crate (pinned `=0.4.0`):
//! only the echo canceller, without the crate's high-pass filter, noise suppressor, gain control
//! or post filter, so near-end speech is left as it is when there is no echo to remove.
//!
//! # Why `aec3` and not `sonora`
//!
//! Both crates port the same C++ AEC3 and were measured here on the same synthetic room and
//! speech (docs/benchmarks.md, "Echo cancellation (call mode)", `scripts/bench-aec.sh`).
//! See that section for the figures; in short:
//!
//! - `aec3`'s defaults behave like the C++ AEC3 and need nothing turned off; `sonora`'s
//!   audio-processing front end enforces a high-pass filter that distorts near-end speech
//!   unless turned off, and processes at 32 kHz unless told otherwise.
//! - `aec3` fits this workspace's declared MSRV (1.85); `sonora` 0.2.0 declares 1.91.
//! - `aec3` is one crate (plus `rustfft` and `crossbeam-channel`); `sonora` is seven.
//!
//! `sonora` can still be built in for comparison with the `aec-compare` feature
//! ([`echo_canceller_with`] and [`Engine`]).
//!
//! # Threads and queues
//!
//! ```text
//!  output callback ──push_interleaved──▶ [lock-free ring, mono f32, ~1.4 s] ──┐
//!  (cpal, real time, never blocks)                                              │ drained at
//!                                                                               ▼ each frame
//!  mic ─▶ 20 ms stereo i16 frame ─▶ NearEnd::process_stereo_i16 ─▶ Opus encoder
//!                                   (downmix, AEC3 on 2 × 10 ms, dual mono out)
//! ```
//!
//! - [`FarEnd`] is `Clone + Send + Sync`. A push downmixes to mono and writes into a
//!   single-producer single-consumer ring of `AtomicU32` (safe code, no allocation, no lock
//!   taken by the consumer). Producers are serialised by a `try_lock`: a second producer that
//!   would have to wait drops its samples instead, as does a push into a full ring; both are
//!   counted ([`AecStats::far_dropped`]). With one output stream neither happens.
//! - [`NearEnd`] is `Send` (not `Sync`): it owns the canceller. Each call drains the ring into a
//!   pending buffer, then feeds AEC3 whole 10 ms render frames interleaved with the 10 ms
//!   capture sub-frames of the mic frame.
//!
//! # Delay
//!
//! The ring is fed when the output callback fills its buffer, that is *before* the sound is
//! heard (by the device's output latency), and the mic frame reaches [`NearEnd`] after its
//! capture (by the input latency and the server's 20 ms framing). So the echo of a render
//! sample shows up in the capture stream later than the render sample entered AEC3 by:
//! output latency + acoustic path + input latency. Nothing here measures that: AEC3's own
//! delay estimator (matched filters on the decimated signals) finds it and follows changes,
//! as in WebRTC. It needs echo to be present for a second or two to lock on; until then the
//! echo passes.
//!
//! Render audio that piles up beyond [`MAX_PENDING_RENDER_MS`] without a mic frame to match it
//! (encoder thread stalled, call not yet started) is stale: the oldest is dropped and counted
//! ([`AecStats::far_stale`]), so AEC3 is never handed a backlog it could not align.
//!
//! # Added latency
//!
//! None beyond the processing time: each 10 ms sub-frame is processed and written back in
//! place within the same call. (AEC3's band-split filter bank has a small group delay of its
//! own; the benchmark measures it.)
//!
//! # Limitations
//!
//! - 48 kHz only (both sides), the rate of the whole project.
//! - The mic is processed as mono; the output is dual mono.
//! - A mic frame whose length is not a whole number of 10 ms stereo sub-frames is cancelled on
//!   the whole sub-frames only; the remainder passes unchanged and is counted
//!   ([`AecStats::unaligned_samples`]). The server always hands 20 ms frames.
//! - Turning cancellation back on starts from a fresh canceller, which has to converge again.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};

use aec3::api::config::EchoCanceller3Config;
use aec3::api::control::EchoControl;
use aec3::audio_processing::aec3::echo_canceller3::EchoCanceller3;
use aec3::audio_processing::audio_buffer::AudioBuffer;
use aec3::audio_processing::stream_config::StreamConfig;

/// The only sample rate, of far end and near end alike.
pub const RATE: u32 = 48_000;
/// Samples per channel of one AEC3 frame (10 ms at 48 kHz).
pub const SUB_FRAME: usize = RATE as usize / 100;
/// Far-end ring capacity in mono samples (a power of two; about 1.37 s).
const RING_CAPACITY: usize = 1 << 16;
/// Render audio kept pending at the near end; older render is stale and dropped.
pub const MAX_PENDING_RENDER_MS: usize = 500;
const MAX_PENDING_RENDER: usize = MAX_PENDING_RENDER_MS * RATE as usize / 1000;

/// Which AEC3 port does the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The `aec3` crate (the default, see the module docs).
    Aec3,
    /// The `sonora` crate, high-pass filter off, 48 kHz processing (comparison only).
    #[cfg(feature = "aec-compare")]
    Sonora,
}

/// Creates a linked pair: the far end (what the loudspeaker plays) and the near end (mic).
pub fn echo_canceller() -> anyhow::Result<(FarEnd, NearEnd)> {
    echo_canceller_with(Engine::Aec3)
}

/// [`echo_canceller`] with a chosen [`Engine`].
pub fn echo_canceller_with(engine: Engine) -> anyhow::Result<(FarEnd, NearEnd)> {
    let shared = Arc::new(Shared {
        ring: Ring::new(RING_CAPACITY),
        producer: Mutex::new(()),
        dropped: AtomicU64::new(0),
    });
    let near = NearEnd {
        shared: Arc::clone(&shared),
        engine,
        aec: new_canceller(engine),
        enabled: true,
        pending: VecDeque::with_capacity(RING_CAPACITY + MAX_PENDING_RENDER),
        render: vec![0.0; SUB_FRAME],
        capture: vec![0.0; SUB_FRAME],
        stats: AecStats::default(),
    };
    Ok((FarEnd { shared }, near))
}

/// What the canceller did so far. Counts are in mono samples (far end) or interleaved
/// samples (near end).
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
    /// Near-end samples passed through unprocessed because they did not fill a 10 ms sub-frame.
    pub unaligned_samples: u64,
    /// AEC3's own running estimate of its echo return loss enhancement, in dB.
    pub erle_db: f64,
    /// AEC3's current estimate of the render-to-capture delay, in ms.
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
    /// the device buffer. Downmixes to mono; a trailing partial frame is ignored; non-finite
    /// values count as silence. Never blocks and never allocates: if the ring is full (the
    /// near end is not draining it) the samples that do not fit are dropped and counted.
    pub fn push_interleaved(&self, samples: &[f32], channels: usize) {
        if channels == 0 {
            return;
        }
        let frames = samples.len() / channels;
        let _producer = match self.shared.producer.try_lock() {
            Ok(guard) => guard,
            // The guard protects no data, so a poisoned lock is as good as a free one.
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
pub struct NearEnd {
    shared: Arc<Shared>,
    engine: Engine,
    aec: Box<dyn Canceller>,
    enabled: bool,
    /// Render samples drained from the ring, not yet handed to AEC3.
    pending: VecDeque<f32>,
    render: Vec<f32>,
    capture: Vec<f32>,
    stats: AecStats,
}

impl std::fmt::Debug for NearEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NearEnd")
            .field("engine", &self.engine)
            .field("enabled", &self.enabled)
            .field("pending", &self.pending.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl NearEnd {
    /// One 20 ms frame of interleaved stereo i16 at 48 kHz (1920 samples), processed in
    /// place: drains the far-end queue, downmixes to mono, runs the AEC on 10 ms sub-frames,
    /// writes the result back to both channels.
    ///
    /// Any length is accepted: whole 10 ms sub-frames (960 samples) are processed, a
    /// remainder is left unchanged (see the module docs). Disabled, the frame is not touched.
    pub fn process_stereo_i16(&mut self, frame: &mut [i16]) {
        self.drain_far_end();
        if !self.enabled {
            return;
        }
        let whole = frame.len() / (2 * SUB_FRAME) * (2 * SUB_FRAME);
        self.stats.unaligned_samples += (frame.len() - whole) as u64;
        let sub_frames = whole / (2 * SUB_FRAME);
        for (i, chunk) in frame[..whole].chunks_exact_mut(2 * SUB_FRAME).enumerate() {
            // Spread the render frames over the capture sub-frames, as a real-time caller
            // interleaving the two streams would.
            let available = self.pending.len() / SUB_FRAME;
            let left = sub_frames - i;
            for _ in 0..available.div_ceil(left) {
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

    /// Turns cancellation off (pass-through, the frame is not touched: headset) or on.
    /// Turning it back on starts from a fresh canceller, which converges again in a second
    /// or two. Far-end audio is drained and discarded while off.
    pub fn set_enabled(&mut self, on: bool) {
        if on && !self.enabled {
            self.aec = new_canceller(self.engine);
            self.pending.clear();
        }
        self.enabled = on;
    }

    /// Whether cancellation is on.
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

    fn drain_far_end(&mut self) {
        self.shared.ring.pop_into(&mut self.pending);
        if !self.enabled {
            self.pending.clear();
            return;
        }
        if self.pending.len() > MAX_PENDING_RENDER {
            let stale = self.pending.len() - MAX_PENDING_RENDER;
            self.pending.drain(..stale);
            self.stats.far_stale += stale as u64;
        }
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
    /// Serialises producers so that the ring has a single producer at a time.
    producer: Mutex<()>,
    dropped: AtomicU64,
}

/// Single-producer single-consumer ring of f32 stored as bits in atomics: lock-free, no
/// `unsafe`. Indices grow without bound (wrapping) and are masked on access.
struct Ring {
    slots: Box<[AtomicU32]>,
    mask: usize,
    /// Next index to write; only the producer stores it.
    write: AtomicUsize,
    /// Next index to read; only the consumer stores it.
    read: AtomicUsize,
}

impl Ring {
    fn new(capacity: usize) -> Self {
        assert!(capacity.is_power_of_two());
        Self {
            slots: (0..capacity).map(|_| AtomicU32::new(0)).collect(),
            mask: capacity - 1,
            write: AtomicUsize::new(0),
            read: AtomicUsize::new(0),
        }
    }

    fn len(&self) -> usize {
        let w = self.write.load(Ordering::Acquire);
        let r = self.read.load(Ordering::Acquire);
        w.wrapping_sub(r)
    }

    /// Writes as many of the `n` samples as fit; returns how many. Caller: the one producer.
    fn push(&self, samples: impl Iterator<Item = f32>, n: usize) -> usize {
        let w = self.write.load(Ordering::Relaxed);
        let r = self.read.load(Ordering::Acquire);
        let free = self.slots.len() - w.wrapping_sub(r);
        let n = n.min(free);
        for (i, s) in samples.take(n).enumerate() {
            self.slots[w.wrapping_add(i) & self.mask].store(s.to_bits(), Ordering::Relaxed);
        }
        self.write.store(w.wrapping_add(n), Ordering::Release);
        n
    }

    /// Moves everything queued into `out`. Caller: the one consumer.
    fn pop_into(&self, out: &mut VecDeque<f32>) {
        let r = self.read.load(Ordering::Relaxed);
        let w = self.write.load(Ordering::Acquire);
        let n = w.wrapping_sub(r);
        out.extend((0..n).map(|i| {
            f32::from_bits(self.slots[r.wrapping_add(i) & self.mask].load(Ordering::Relaxed))
        }));
        self.read.store(w, Ordering::Release);
    }
}

/// One AEC3 instance working on 10 ms mono frames at 48 kHz, f32 in [-1, 1].
trait Canceller {
    fn analyze_render(&mut self, frame: &[f32]);
    fn process_capture(&mut self, frame: &mut [f32]);
    /// (ERLE in dB, delay in ms) as the canceller itself estimates them.
    fn estimates(&self) -> (f64, i32);
}

fn new_canceller(engine: Engine) -> Box<dyn Canceller> {
    match engine {
        Engine::Aec3 => Box::new(Aec3Canceller::new()),
        #[cfg(feature = "aec-compare")]
        Engine::Sonora => Box::new(sonora_engine::SonoraCanceller::new()),
    }
}

struct Aec3Canceller {
    aec: EchoCanceller3,
    render: AudioBuffer,
    capture: AudioBuffer,
    config: StreamConfig,
}

impl Aec3Canceller {
    fn new() -> Self {
        let rate = RATE as usize;
        Self {
            aec: EchoCanceller3::new(EchoCanceller3Config::default(), RATE as i32, 1, 1),
            render: AudioBuffer::from_sample_rates(rate, 1, rate, 1, rate),
            capture: AudioBuffer::from_sample_rates(rate, 1, rate, 1, rate),
            config: StreamConfig::new(rate, 1, false),
        }
    }
}

impl Canceller for Aec3Canceller {
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

#[cfg(feature = "aec-compare")]
mod sonora_engine {
    use super::{Canceller, RATE, SUB_FRAME};
    use sonora::config::{EchoCanceller, MaxProcessingRate};
    use sonora::{AudioProcessing, Config, StreamConfig};

    pub(super) struct SonoraCanceller {
        apm: AudioProcessing,
        scratch: Vec<f32>,
    }

    impl SonoraCanceller {
        pub(super) fn new() -> Self {
            let mut config = Config {
                echo_canceller: Some(EchoCanceller {
                    // Its high-pass filter distorts near-end speech (issue 5).
                    enforce_high_pass_filtering: false,
                    ..Default::default()
                }),
                high_pass_filter: None,
                ..Default::default()
            };
            config.pipeline.maximum_internal_processing_rate = MaxProcessingRate::Rate48kHz;
            let apm = AudioProcessing::builder()
                .config(config)
                .capture_config(StreamConfig::new(RATE, 1))
                .render_config(StreamConfig::new(RATE, 1))
                .build();
            Self {
                apm,
                scratch: vec![0.0; SUB_FRAME],
            }
        }
    }

    impl Canceller for SonoraCanceller {
        fn analyze_render(&mut self, frame: &[f32]) {
            // The render output (unchanged by AEC3) is not used.
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
}
