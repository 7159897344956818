//! The captioner's signal side, Sans-IO: 48 kHz stereo to 16 kHz mono (what whisper takes),
//! and voice-activity segmentation.

/// 48 kHz interleaved stereo `i16` → 16 kHz mono `f32` in [-1, 1]: the channels are averaged,
/// low-pass filtered (windowed sinc, cut-off 7.2 kHz, 63 taps, so nothing above the new
/// Nyquist folds back into the speech band) and every third sample kept.
#[derive(Clone, Debug)]
pub struct Downsampler {
    taps: Vec<f32>,
    /// The last `taps.len()` mono input samples, oldest first.
    history: Vec<f32>,
    /// Input samples seen modulo 3: which one is the next output.
    phase: usize,
}

const FACTOR: usize = 3;
const TAPS: usize = 63;

impl Default for Downsampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Downsampler {
    pub fn new() -> Self {
        let cutoff = 7_200.0 / 48_000.0; // as a fraction of the input rate
        let mid = (TAPS / 2) as f64;
        let mut taps: Vec<f64> = (0..TAPS)
            .map(|i| {
                let x = i as f64 - mid;
                let sinc = if x == 0.0 {
                    2.0 * cutoff
                } else {
                    (2.0 * std::f64::consts::PI * cutoff * x).sin() / (std::f64::consts::PI * x)
                };
                // Blackman window.
                let w = 0.42
                    - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (TAPS - 1) as f64).cos()
                    + 0.08 * (4.0 * std::f64::consts::PI * i as f64 / (TAPS - 1) as f64).cos();
                sinc * w
            })
            .collect();
        let sum: f64 = taps.iter().sum();
        taps.iter_mut().for_each(|t| *t /= sum);
        Self {
            taps: taps.into_iter().map(|t| t as f32).collect(),
            history: vec![0.0; TAPS],
            phase: 0,
        }
    }

    /// Converts `stereo` (interleaved L, R) and appends the 16 kHz samples to `out`.
    pub fn process(&mut self, stereo: &[i16], out: &mut Vec<f32>) {
        for frame in stereo.chunks_exact(2) {
            let mono = (f32::from(frame[0]) + f32::from(frame[1])) / (2.0 * 32768.0);
            self.history.rotate_left(1);
            *self.history.last_mut().expect("TAPS > 0") = mono;
            if self.phase == 0 {
                let y: f32 = self
                    .history
                    .iter()
                    .zip(&self.taps)
                    .map(|(x, t)| x * t)
                    .sum();
                out.push(y);
            }
            self.phase = (self.phase + 1) % FACTOR;
        }
    }
}

/// 16 kHz samples per VAD frame (20 ms).
pub const VAD_FRAME: usize = 320;

/// What [`Vad::push_frame`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VadEvent {
    /// Speech started `preroll` samples before the end of this frame (the audio to keep from
    /// there on includes some lead-in before the first loud frame).
    Start { preroll: usize },
    /// The utterance ended `trailing` samples ago (the silence after it, to drop).
    End { trailing: usize },
}

/// Energy voice-activity detector with an adaptive noise floor.
///
/// A frame is *loud* when its level is 12 dB above the noise floor and above −50 dBFS.
/// Speech starts after 160 ms of loud frames in a row (so clicks and the test card's 50 ms
/// beeps never count), keeping 300 ms before them; it ends after 500 ms without a loud frame.
/// Whisper sees only utterances, which is the main guard against its hallucinating text on
/// silence and noise.
#[derive(Clone, Debug)]
pub struct Vad {
    /// Quiet frames after which speech has ended.
    end_frames: usize,
    floor_db: f32,
    loud_run: usize,
    quiet_run: usize,
    in_speech: bool,
}

const START_FRAMES: usize = 8; // 160 ms
const END_FRAMES: usize = 25; // 500 ms
const PREROLL_FRAMES: usize = 15; // 300 ms
const ABOVE_FLOOR_DB: f32 = 12.0;
const MIN_SPEECH_DB: f32 = -50.0;

impl Default for Vad {
    fn default() -> Self {
        Self::new()
    }
}

impl Vad {
    pub fn new() -> Self {
        Self::with_end_frames(END_FRAMES)
    }

    /// A detector that ends speech after `end_frames` quiet frames (at least 12: 240 ms,
    /// of which the last 200 ms of the tail are kept).
    pub fn with_end_frames(end_frames: usize) -> Self {
        Self {
            end_frames: end_frames.max(12),
            floor_db: -70.0,
            loud_run: 0,
            quiet_run: 0,
            in_speech: false,
        }
    }

    pub fn in_speech(&self) -> bool {
        self.in_speech
    }

    /// One frame of [`VAD_FRAME`] samples.
    pub fn push_frame(&mut self, frame: &[f32]) -> Option<VadEvent> {
        let energy = frame.iter().map(|x| x * x).sum::<f32>() / frame.len().max(1) as f32;
        let db = 10.0 * (energy + 1e-10).log10();
        // The floor follows quiet levels down at once and creeps up slowly (3 dB/s), so a long
        // stretch of speech doesn't become the floor but a noisier room does.
        if db < self.floor_db {
            self.floor_db = db;
        } else if !self.in_speech {
            self.floor_db += 0.06;
        }
        self.floor_db = self.floor_db.max(-90.0);
        let loud = db > MIN_SPEECH_DB && db > self.floor_db + ABOVE_FLOOR_DB;
        if loud {
            self.loud_run += 1;
            self.quiet_run = 0;
        } else {
            self.loud_run = 0;
            self.quiet_run += 1;
        }
        if !self.in_speech && self.loud_run >= START_FRAMES {
            self.in_speech = true;
            return Some(VadEvent::Start {
                preroll: (START_FRAMES + PREROLL_FRAMES) * VAD_FRAME,
            });
        }
        if self.in_speech && self.quiet_run >= self.end_frames {
            self.in_speech = false;
            return Some(VadEvent::End {
                trailing: (self.end_frames - 10) * VAD_FRAME, // keep 200 ms of the tail
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng as _, SeedableRng as _};

    fn tone(hz: f64, amp: f64, n: usize, rate: f64) -> Vec<i16> {
        (0..n)
            .flat_map(|i| {
                let v = (amp * (2.0 * std::f64::consts::PI * hz * i as f64 / rate).sin()) as i16;
                [v, v]
            })
            .collect()
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
    }

    #[test]
    fn downsampler_keeps_speech_band_and_removes_what_would_alias() {
        let mut d = Downsampler::new();
        let mut out = Vec::new();
        d.process(&tone(1000.0, 16_000.0, 48_000, 48_000.0), &mut out);
        assert_eq!(out.len(), 16_000);
        let r = rms(&out[1000..]);
        assert!((r - 0.345).abs() < 0.02, "1 kHz passes: rms {r}");
        // 12 kHz would fold to 4 kHz at 16 kHz: it must be gone.
        let mut d = Downsampler::new();
        let mut out = Vec::new();
        d.process(&tone(12_000.0, 16_000.0, 48_000, 48_000.0), &mut out);
        assert!(
            rms(&out[1000..]) < 0.005,
            "12 kHz rejected: {}",
            rms(&out[1000..])
        );
        // Chunked input gives the same output as one call.
        let input = tone(440.0, 8000.0, 4801, 48_000.0);
        let (mut a, mut b) = (Downsampler::new(), Downsampler::new());
        let (mut oa, mut ob) = (Vec::new(), Vec::new());
        a.process(&input, &mut oa);
        for c in input.chunks(2 * 7) {
            b.process(c, &mut ob);
        }
        assert_eq!(oa, ob);
    }

    fn run(vad: &mut Vad, samples: &[f32]) -> Vec<(usize, VadEvent)> {
        samples
            .chunks_exact(VAD_FRAME)
            .enumerate()
            .filter_map(|(i, f)| vad.push_frame(f).map(|e| (i, e)))
            .collect()
    }

    #[test]
    fn vad_ignores_beeps_and_silence_and_finds_speech() {
        // The test card's audio: a 50 ms beep each second, digital silence otherwise.
        let mut card = Vec::new();
        for _ in 0..10 {
            let mut s = vec![0.0f32; 16_000];
            for (i, v) in s.iter_mut().take(800).enumerate() {
                *v = 0.5 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16_000.0).sin();
            }
            card.extend(s);
        }
        let mut vad = Vad::new();
        assert_eq!(run(&mut vad, &card), vec![]);
        // Low noise, then 1 s of "speech" (a loud modulated signal), then noise again.
        let noise = |n: usize, amp: f32| -> Vec<f32> {
            let mut rng = StdRng::seed_from_u64(12345);
            (0..n)
                .map(|_| rng.random_range(-0.5f32..0.5) * amp)
                .collect()
        };
        let mut sig = noise(32_000, 0.002);
        let speech: Vec<f32> = noise(16_000, 0.3)
            .iter()
            .enumerate()
            .map(|(i, v)| v * (0.6 + 0.4 * (i as f32 / 800.0).sin()))
            .collect();
        sig.extend(speech);
        sig.extend(noise(32_000, 0.002));
        let mut vad = Vad::new();
        let ev = run(&mut vad, &sig);
        assert_eq!(ev.len(), 2, "{ev:?}");
        // Starts 160 ms into the speech (frame 100 + 7), ends 500 ms after it (frame 150 + 24).
        assert_eq!(ev[0].0, 107);
        assert!(matches!(ev[0].1, VadEvent::Start { preroll } if preroll == 23 * VAD_FRAME));
        assert_eq!(ev[1].0, 174);
        assert!(!vad.in_speech());
    }
}
