//! Telling speech from other sound before whisper hears it.
//!
//! whisper writes text for whatever it is given: the multilingual base model turns pink noise
//! into "I'm going to get a little bit of a ride." with a no-speech probability near 1e-7, and
//! its invented words are as confident as real ones. The energy detector ([`super::dsp::Vad`])
//! only says that something is loud. So a speech detector runs beside it: Silero VAD v5 (a
//! 300k-parameter network trained on speech and on noise, music and other sounds; MIT
//! licence), in whisper.cpp's ggml version, converted from the `silero-vad` wheel on PyPI by
//! `scripts/install-model.sh`. It gives a speech probability for every 32 ms of audio
//! ([`WINDOW`] samples); [`SpeechTrack`] keeps those of the last minute for the captioner, which
//! gives whisper no utterance without speech in it and keeps no word that was not spoken
//! where speech was heard.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use whisper_rs::{WhisperVadContext, WhisperVadContextParams};

use super::model::{default_model_dir, SAMPLE_RATE};

/// The detector's file, in the model folder (installed with every speech model).
pub const DETECTOR_FILE: &str = "ggml-silero-v5.1.2.bin";
/// Its exact size: whisper.cpp reads the file with few checks, so nothing else is given to it.
const DETECTOR_SIZE: u64 = 885_098;
/// Samples per probability (32 ms at 16 kHz).
pub const WINDOW: usize = 512;
/// whisper.cpp starts the detector's memory afresh at every call: this much audio before the
/// new windows is run again first, so that they are judged in context (16 windows, 0.5 s).
const WARMUP: usize = 16 * WINDOW;
/// Probabilities kept (60 s).
const KEEP: usize = 60 * SAMPLE_RATE / WINDOW;

/// The detector's path: `$LIVECAST_SPEECH_DETECTOR`, else [`DETECTOR_FILE`] beside the speech
/// model, else in the default model folder.
pub fn detector_path(model: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LIVECAST_SPEECH_DETECTOR").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let beside = model.parent().map(|d| d.join(DETECTOR_FILE));
    match beside {
        Some(p) if p.exists() => Some(p),
        _ => default_model_dir()
            .map(|d| d.join(DETECTOR_FILE))
            .or(beside),
    }
}

/// Speech probabilities for 16 kHz audio, one per [`WINDOW`] samples (a last partial window
/// counts as one), judged from the start of `samples` with no memory of earlier calls.
pub trait SpeechProb: Send {
    fn probabilities(&mut self, samples: &[f32]) -> anyhow::Result<Vec<f32>>;
}

/// Silero VAD v5 through whisper.cpp.
pub struct Silero {
    ctx: WhisperVadContext,
    /// Where it was loaded from (another stream loads its own: it keeps state).
    pub path: PathBuf,
}

impl Silero {
    /// Checks and loads the detector.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("speech detector {}", path.display()))?;
        let mut head = [0u8; 18];
        std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
            .with_context(|| format!("speech detector {}", path.display()))?;
        if meta.len() != DETECTOR_SIZE
            || head[..4] != 0x6767_6d6c_u32.to_le_bytes()
            || head[8..18] != *b"silero-16k"
        {
            bail!(
                "{} is not the Silero VAD v5.1.2 detector ({} bytes, expected {DETECTOR_SIZE}); \
                 run scripts/install-model.sh to install it again",
                path.display(),
                meta.len()
            );
        }
        let mut params = WhisperVadContextParams::new();
        params.set_n_threads(1);
        params.set_use_gpu(false);
        let path_str = path
            .to_str()
            .ok_or_else(|| anyhow!("{}: not a UTF-8 path", path.display()))?;
        let ctx = WhisperVadContext::new(path_str, params)
            .map_err(|e| anyhow!("whisper could not load {}: {e}", path.display()))?;
        Ok(Self {
            ctx,
            path: path.to_owned(),
        })
    }
}

impl SpeechProb for Silero {
    fn probabilities(&mut self, samples: &[f32]) -> anyhow::Result<Vec<f32>> {
        if samples.is_empty() {
            return Ok(Vec::new());
        }
        self.ctx
            .detect_speech(samples)
            .map_err(|e| anyhow!("speech detector: {e}"))?;
        Ok(self.ctx.probabilities().to_vec())
    }
}

/// The speech probabilities of a continuous 16 kHz stream, by sample number.
pub struct SpeechTrack {
    detector: Box<dyn SpeechProb>,
    /// Audio from `buf_start` on: the warm-up before `done`, and what has no probability yet.
    buf: Vec<f32>,
    buf_start: u64,
    /// The first sample without a probability (a multiple of [`WINDOW`]).
    done: u64,
    /// Probability of the window starting at `probs_start + i * WINDOW`.
    probs: VecDeque<f32>,
    probs_start: u64,
    /// Whether the detector failed (said once; then everything counts as speech).
    failed: bool,
}

impl SpeechTrack {
    pub fn new(detector: Box<dyn SpeechProb>) -> Self {
        Self {
            detector,
            buf: Vec::new(),
            buf_start: 0,
            done: 0,
            probs: VecDeque::new(),
            probs_start: 0,
            failed: false,
        }
    }

    /// Appends the next samples of the stream.
    pub fn push(&mut self, samples: &[f32]) {
        self.buf.extend_from_slice(samples);
    }

    /// Whether the detector has failed (then the energy detector cuts the utterances again).
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Samples pushed but not judged yet.
    pub fn pending(&self) -> usize {
        (self.buf_start + self.buf.len() as u64 - self.done) as usize
    }

    /// Judges every whole window pushed so far; returns whether there was one.
    pub fn update(&mut self) -> bool {
        let end = self.buf_start + self.buf.len() as u64;
        let whole = (end - self.done) / WINDOW as u64 * WINDOW as u64;
        if whole == 0 {
            return false;
        }
        let from = self.done.saturating_sub(WARMUP as u64).max(self.buf_start);
        let warm = ((self.done - from) / WINDOW as u64) as usize;
        let a = (from - self.buf_start) as usize;
        let b = (self.done + whole - self.buf_start) as usize;
        let probs = if self.failed {
            Vec::new()
        } else {
            match self.detector.probabilities(&self.buf[a..b]) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!("captions: {e:#}; going on without telling speech from noise");
                    self.failed = true;
                    Vec::new()
                }
            }
        };
        let n = (whole / WINDOW as u64) as usize;
        if self.probs.is_empty() {
            self.probs_start = self.done;
        }
        for i in 0..n {
            // A failed detector counts everything as speech: captions as before it existed.
            let p = if self.failed {
                1.0
            } else {
                probs.get(warm + i).copied().unwrap_or(0.0)
            };
            self.probs.push_back(p);
        }
        self.done += whole;
        while self.probs.len() > KEEP {
            self.probs.pop_front();
            self.probs_start += WINDOW as u64;
        }
        // Keep only the warm-up for the next call.
        let keep_from = self.done.saturating_sub(WARMUP as u64).max(self.buf_start);
        self.buf.drain(..(keep_from - self.buf_start) as usize);
        self.buf_start = keep_from;
        true
    }

    /// Indexes (first, last) into `probs` of the judged windows overlapping samples `from..to`.
    fn windows(&self, from: u64, to: u64) -> Option<(usize, usize)> {
        let first = from.max(self.probs_start);
        let last = to.min(self.done);
        if first >= last {
            return None;
        }
        let i = ((first - self.probs_start) / WINDOW as u64) as usize;
        let j = ((last - 1 - self.probs_start) / WINDOW as u64) as usize;
        Some((i, j))
    }

    /// The first sample of window `k` of `probs`.
    fn sample_of(&self, k: usize) -> u64 {
        self.probs_start + (k * WINDOW) as u64
    }

    /// The highest speech probability of the windows overlapping samples `from..to` that have
    /// been judged; `None` if none has.
    pub fn max_in(&self, from: u64, to: u64) -> Option<f32> {
        let (i, j) = self.windows(from, to)?;
        self.probs.range(i..=j).copied().reduce(f32::max)
    }

    /// The first sample without a probability yet.
    pub fn judged_until(&self) -> u64 {
        self.done
    }

    /// The end (sample) of the last judged window in `from..to` whose probability is at
    /// least `p`.
    pub fn last_at_least(&self, from: u64, to: u64, p: f32) -> Option<u64> {
        let (i, j) = self.windows(from, to)?;
        (i..=j)
            .rev()
            .find(|&k| self.probs[k] >= p)
            .map(|k| self.sample_of(k + 1).min(to))
    }

    /// If the last `n` judged windows are all at least `p`: the first sample of that run of
    /// speech (extended back as far as it goes).
    pub fn speech_at_end(&self, p: f32, n: usize) -> Option<u64> {
        let len = self.probs.len();
        if n == 0 || len < n || self.probs.range(len - n..).any(|&x| x < p) {
            return None;
        }
        let run = self.probs.iter().rev().take_while(|&&x| x >= p).count();
        Some(self.sample_of(len - run))
    }

    /// The first sample of the first judged window in `from..to` whose probability is at
    /// least `p`.
    pub fn first_at_least(&self, from: u64, to: u64, p: f32) -> Option<u64> {
        let (i, j) = self.windows(from, to)?;
        (i..=j)
            .find(|&k| self.probs[k] >= p)
            .map(|k| self.sample_of(k).max(from))
    }

    /// How many windows overlapping samples `from..to` have a probability of at least `p`.
    pub fn count_in(&self, from: u64, to: u64, p: f32) -> usize {
        self.windows(from, to).map_or(0, |(i, j)| {
            self.probs.range(i..=j).filter(|&&x| x >= p).count()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A detector that calls a window speech when its mean level is above 0.1, and records
    /// how much audio each call was given.
    struct Loud(std::sync::Arc<std::sync::Mutex<Vec<usize>>>);

    impl SpeechProb for Loud {
        fn probabilities(&mut self, samples: &[f32]) -> anyhow::Result<Vec<f32>> {
            self.0.lock().unwrap().push(samples.len());
            Ok(samples
                .chunks(WINDOW)
                .map(|w| {
                    if w.iter().map(|x| x.abs()).sum::<f32>() / w.len() as f32 > 0.1 {
                        0.9
                    } else {
                        0.02
                    }
                })
                .collect())
        }
    }

    #[test]
    fn probabilities_follow_the_stream_by_sample_number() {
        let calls = std::sync::Arc::default();
        let mut t = SpeechTrack::new(Box::new(Loud(std::sync::Arc::clone(&calls))));
        // 1 s quiet, 0.5 s loud, 1 s quiet, pushed in uneven pieces.
        let mut audio = vec![0.0f32; SAMPLE_RATE];
        audio.extend(vec![0.5f32; SAMPLE_RATE / 2]);
        audio.extend(vec![0.0f32; SAMPLE_RATE]);
        for piece in audio.chunks(777) {
            t.push(piece);
            if t.pending() >= 4 * WINDOW {
                t.update();
            }
        }
        t.update();
        assert!(t.pending() < WINDOW);
        let s = |secs: f64| (secs * SAMPLE_RATE as f64) as u64;
        assert_eq!(t.max_in(0, s(0.9)), Some(0.02));
        assert_eq!(t.max_in(s(1.1), s(1.4)), Some(0.9));
        assert_eq!(t.max_in(s(1.6), s(2.4)), Some(0.02));
        // 8000 loud samples: windows wholly inside are 14, 2 more straddle the edges.
        assert!((15..=17).contains(&t.count_in(0, s(2.5), 0.5)));
        assert_eq!(t.max_in(s(10.0), s(11.0)), None, "nothing judged there yet");
        let onset = t.first_at_least(s(0.5), s(2.5), 0.5).expect("speech found");
        assert!(onset.abs_diff(s(1.0)) < WINDOW as u64, "{onset}");
        assert_eq!(t.first_at_least(s(1.6), s(2.5), 0.5), None);
        let end = t.last_at_least(0, s(2.5), 0.5).expect("speech found");
        assert!(end.abs_diff(s(1.5)) < WINDOW as u64, "{end}");
        assert_eq!(t.speech_at_end(0.5, 1), None, "it ends in quiet");
        // Each call after the first re-ran at most the warm-up before its new windows.
        let calls = calls.lock().unwrap();
        assert!(calls.iter().all(|&n| n <= WARMUP + 6 * WINDOW), "{calls:?}");
        assert!(calls.iter().skip(4).all(|&n| n > WARMUP), "{calls:?}");
    }

    #[test]
    fn a_run_of_speech_at_the_end_is_found_from_its_start() {
        let mut t = SpeechTrack::new(Box::new(Loud(std::sync::Arc::default())));
        t.push(&vec![0.0; 10 * WINDOW]);
        t.push(&vec![0.5; 4 * WINDOW]);
        t.update();
        assert_eq!(t.speech_at_end(0.5, 5), None, "only 4 windows");
        assert_eq!(t.speech_at_end(0.5, 3), Some(10 * WINDOW as u64));
        assert_eq!(t.judged_until(), 14 * WINDOW as u64);
    }

    #[test]
    fn a_failing_detector_counts_everything_as_speech() {
        struct Broken;
        impl SpeechProb for Broken {
            fn probabilities(&mut self, _: &[f32]) -> anyhow::Result<Vec<f32>> {
                Err(anyhow!("broken"))
            }
        }
        let mut t = SpeechTrack::new(Box::new(Broken));
        t.push(&[0.0; 4 * WINDOW]);
        t.update();
        assert_eq!(t.max_in(0, 4 * WINDOW as u64), Some(1.0));
    }

    #[test]
    fn a_file_that_is_not_the_detector_is_refused_before_whisper_reads_it() {
        let dir = std::env::temp_dir().join(format!("livecast-speech-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(DETECTOR_FILE);
        std::fs::write(&p, b"lmggjunk").unwrap();
        let err = Silero::load(&p).err().expect("refused").to_string();
        assert!(err.contains("install-model.sh"), "{err}");
        let err = Silero::load(&dir.join("missing.bin"))
            .err()
            .expect("refused");
        assert!(format!("{err:#}").contains("missing.bin"), "{err:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Prints, for each WAV of `LIVECAST_SPEECH_WAVS` (16 kHz mono), the share of its windows
/// the detector calls speech at several thresholds and the time it took.
#[cfg(test)]
#[test]
#[ignore = "needs the detector and WAV files"]
fn measure_files() {
    let path = detector_path(&super::model::default_model_path().unwrap()).unwrap();
    let wavs = std::env::var("LIVECAST_SPEECH_WAVS").unwrap();
    for w in wavs.split_whitespace() {
        let mut r = hound::WavReader::open(w).unwrap();
        let s: Vec<f32> = r
            .samples::<i16>()
            .map(|x| f32::from(x.unwrap()) / 32768.0)
            .collect();
        let mut t = SpeechTrack::new(Box::new(Silero::load(&path).unwrap()));
        let t0 = std::time::Instant::now();
        for c in s.chunks(8 * WINDOW) {
            t.push(c);
            t.update();
        }
        let el = t0.elapsed();
        let n = t.probs.len();
        let shares: Vec<String> = [0.2f32, 0.5, 0.8]
            .iter()
            .map(|&p| {
                format!(
                    "{p}: {:.3}",
                    t.probs.iter().filter(|&&x| x >= p).count() as f64 / n as f64
                )
            })
            .collect();
        eprintln!("{w}: {n} windows in {el:?}; share >= {}", shares.join(", "));
        if std::env::var_os("LIVECAST_SPEECH_TRACE").is_some() {
            let line: String = t
                .probs
                .iter()
                .map(|&p| char::from(b'0' + (p * 9.99) as u8))
                .collect();
            for (i, c) in line.as_bytes().chunks(62).enumerate() {
                eprintln!(
                    "{:5.1} s {}",
                    i as f64 * 62.0 * 0.032,
                    String::from_utf8_lossy(c)
                );
            }
        }
    }
}
