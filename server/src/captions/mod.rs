//! Live captions: speech-to-text on the streamed audio, sent as a third RTP stream of real-time
//! text (T.140, RFC 4103, with RFC 2198 redundancy).
//!
//! ```text
//! audio encoder ──tap (bounded, never blocks)──> captioner thread ──> text sender ──> Track::deliver
//!                   48 kHz stereo + capture time    16 kHz mono, VAD,     300 ms T.140
//!                                                   whisper passes,       buffering, RED
//!                                                   LocalAgreement
//! ```
//!
//! * The captioner gets a copy of each audio frame through a bounded queue (10 s). If whisper
//!   cannot keep up, frames are dropped there (and counted) and video and audio go on.
//! * Voice activity ([`dsp::Vad`]) cuts the audio into utterances; only utterances reach
//!   whisper, so silence and the test card's beeps never produce text.
//! * While an utterance lasts, it is transcribed again every [`STEP`] of new audio, and words
//!   two passes agree on are committed ([`agreement::LocalAgreement`]) once the phrase they
//!   belong to has ended: a pause of [`PHRASE_PAUSE`] follows them in the audio (or the phrase
//!   has gone on for [`PHRASE_MAX`]). whisper hearing a phrase cut off guesses its last words,
//!   and two passes that heard the same cut often guess alike. When the utterance ends
//!   ([`VAD_END`] of silence), a last pass commits the rest.
//! * Passes stay short: after a sentence end (or [`TRIM_AFTER`] of audio) the audio before
//!   the last committed word is dropped, but for [`CONTEXT`]: the committed words of the last
//!   2 s stay in the window, heard again and not sent again, because whisper on audio that
//!   starts in the middle of speech gets the first words wrong ("knead the dough" → "need to
//!   go"). Each utterance's text is a line (T.140 LINE SEPARATOR between them).
//! * A caption's RTP timestamp is the capture time of its first word's audio, on the same
//!   wall clock as the audio and video tracks (and their RTCP sender reports), so a player can
//!   put it where it was spoken.

pub mod agreement;
pub mod dsp;
pub mod model;
#[cfg(test)]
mod replay;
pub mod speech;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use livecast_proto::codec::t140::{RedPacketizer, BACKSPACE, LINE_SEPARATOR};
use tracing::{debug, info, warn};

use crate::pipeline::rtp_packet;
use crate::source::AudioFrame;
use crate::track::{OutPacket, Track};
use agreement::{LocalAgreement, Word};
use dsp::{Downsampler, Vad, VadEvent, VAD_FRAME};
use model::{Transcriber, SAMPLE_RATE};
use speech::SpeechTrack;

/// Payload types of the text track: `t140` inside `red`.
pub const T140_PT: u8 = 98;
pub const RED_PT: u8 = 99;
/// Copies of each text block sent after it (RFC 4103 §4.1 suggests 2).
pub const RED_GENERATIONS: usize = 2;
/// Interval of the empty packets that carry the last text's redundancy (RFC 4103 §5.1's
/// 300 ms).
pub const TEXT_INTERVAL: Duration = Duration::from_millis(300);
/// New audio between two passes over an utterance.
pub const STEP: Duration = Duration::from_millis(500);
/// Audio kept before a trim point (see `Captioner::trim_through`).
pub const TRIM_MARGIN: Duration = Duration::from_millis(150);
/// Audio since the last trim point after which an utterance is trimmed after its last
/// committed word even mid-sentence (so passes stay short).
pub const TRIM_AFTER: Duration = Duration::from_secs(4);
/// Left context kept at a trim: the committed words spoken in this much audio before the trim
/// point stay in whisper's window (heard again, not sent again), so that whisper never starts
/// cold in the middle of speech.
pub const CONTEXT: Duration = Duration::from_secs(2);
/// A word whose tokens all have at least this probability may be committed after one pass
/// (infinite: never; the evaluation set read better without it, docs/benchmarks.md).
pub const CONFIDENT_P: f32 = f32::INFINITY;
/// Longest stretch of audio given to whisper at once (then the words of the last pass are
/// committed but for its last 2 s).
pub const MAX_UTTERANCE: Duration = Duration::from_secs(8);
/// A quiet stretch at least this long ends a phrase (see [`Policy::phrase_pause`]).
pub const PHRASE_PAUSE: Duration = Duration::from_millis(150);
/// A phrase this long without a pause is not waited for.
pub const PHRASE_MAX: Duration = Duration::from_secs(3);
/// Silence that ends an utterance.
pub const VAD_END: Duration = Duration::from_millis(300);
/// Speech probability ([`speech`]) at which a 32 ms window counts as speech.
pub const SPEECH_P: f32 = 0.5;
/// Once an utterance has begun, windows down to this probability still count as speech (the
/// detector's own usage: 0.15 under the start threshold), so that speech in heavy noise, whose
/// probability wavers, is not cut into pieces.
pub const SPEECH_END_P: f32 = 0.35;
/// Windows of speech an utterance needs before whisper hears it (96 ms).
pub const SPEECH_MIN_WINDOWS: usize = 3;
/// Windows of speech in a row (96 ms) that start an utterance, with a speech detector.
pub const SPEECH_START_WINDOWS: usize = 3;
/// Audio kept after the last window of speech when the detector ends an utterance.
const SPEECH_TAIL_MS: i64 = 100;
/// The speech detector judges the audio in steps of this many windows (192 ms).
const SPEECH_UPDATE: usize = 6;
/// Whether words not agreed on yet are shown (see [`Policy::tentative`]).
pub const TENTATIVE: bool = true;
/// Tentative words are shown even at the very end of the audio heard (on the tuning half,
/// 200 ms of margin made the median 0.26 s later for the same final text).
pub const SHOW_EDGE: Duration = Duration::ZERO;
/// Whether the speech detector cuts the utterances (see [`Policy::speech_segments`]).
pub const SPEECH_SEGMENTS: bool = true;
/// Audio kept before the first speech the detector hears in an utterance.
pub const LEAD_IN: Duration = Duration::from_millis(300);
/// With a speech detector, a word could be kept only if speech was heard within this much of
/// it (whisper's word times are rough); zero, no such rule: on the tuning half it dropped real
/// words after noise more often than invented ones (docs/architecture.md).
pub const WORD_PAD: Duration = Duration::ZERO;
/// whisper's temperature fallback on a failed pass.
pub const FALLBACK: bool = false;
/// `--caption-accuracy high`: new audio between two passes, and their beam width.
pub const HIGH_ACCURACY_STEP: Duration = Duration::from_millis(1000);
pub const HIGH_ACCURACY_BEAM: usize = 5;

/// `--captions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CaptionMode {
    /// On when a model is installed (or given with `--model`).
    #[default]
    Auto,
    On,
    Off,
}

impl std::str::FromStr for CaptionMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            _ => Err(format!("expected auto, on or off, not {s:?}")),
        }
    }
}

/// `--caption-accuracy`: how the captioner trades delay for word errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CaptionAccuracy {
    /// Greedy passes every 0.5 s: text about a second after the words.
    #[default]
    Normal,
    /// Beam search (5) on passes every second: fewer word errors (a fifth fewer on the
    /// evaluation set), text about 2 s after the words, about the same CPU (a beam pass costs
    /// 1.7 greedy ones, and there are half as many).
    High,
}

impl std::str::FromStr for CaptionAccuracy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "normal" => Ok(Self::Normal),
            "high" => Ok(Self::High),
            _ => Err(format!("expected normal or high, not {s:?}")),
        }
    }
}

/// Caption settings.
#[derive(Clone, Debug)]
pub struct CaptionConfig {
    pub mode: CaptionMode,
    /// `--model`; default [`model::default_model_path`].
    pub model: Option<PathBuf>,
    /// `en`, `auto` or a language code.
    pub language: String,
    /// whisper threads. One leaves the other core to the video encoder on a 2-core machine.
    pub threads: usize,
    /// `--caption-accuracy`.
    pub accuracy: CaptionAccuracy,
}

impl Default for CaptionConfig {
    fn default() -> Self {
        Self {
            mode: CaptionMode::Off,
            model: None,
            language: "en".into(),
            threads: 1,
            accuracy: CaptionAccuracy::Normal,
        }
    }
}

/// What the captioner runs: the speech model, and the detector that tells speech from other
/// sound ([`speech`]; without it, noise and music can be captioned).
pub struct Models {
    pub transcriber: Transcriber,
    pub detector: Option<speech::Silero>,
    /// The streaming policy ([`Policy::for_accuracy`]).
    pub policy: Policy,
}

/// Makes [`Models`] for more streams on the models loaded once ([`Models::source`]): the
/// captions of published paths.
#[derive(Clone)]
pub struct ModelSource {
    transcriber: model::TranscriberSource,
    detector: Option<PathBuf>,
    policy: Policy,
}

impl Models {
    /// What makes models for another stream: the same whisper weights (shared), a speech
    /// detector of its own (small, and it keeps state).
    pub fn source(&self) -> ModelSource {
        ModelSource {
            transcriber: self.transcriber.source(),
            detector: self.detector.as_ref().map(|d| d.path.clone()),
            policy: self.policy.clone(),
        }
    }
}

impl ModelSource {
    /// Models for one more captioner ([`start`]).
    pub fn models(&self) -> anyhow::Result<Models> {
        let detector = match &self.detector {
            Some(p) => Some(speech::Silero::load(p)?),
            None => None,
        };
        Ok(Models {
            transcriber: self.transcriber.transcriber()?,
            detector,
            policy: self.policy.clone(),
        })
    }
}

/// Loads the models if captions are wanted. `None` means "no captions" and has been
/// explained in the log, once; a model that is missing or broken is not an error for the
/// server, which streams without captions.
pub fn load(cfg: &CaptionConfig) -> Option<Models> {
    if cfg.mode == CaptionMode::Off {
        return None;
    }
    let Some(path) = cfg
        .model
        .as_deref()
        .map(model::resolve)
        .or_else(model::default_model_path)
    else {
        warn!("captions off: no --model given and no home directory to look for one in");
        return None;
    };
    if !path.exists() {
        let how = model::install_hint(&path);
        if cfg.mode == CaptionMode::On || cfg.model.is_some() {
            warn!("captions off: no speech model at {}; {how}", path.display());
        } else {
            info!("captions off: no speech model at {}; {how}", path.display());
        }
        return None;
    }
    let t0 = Instant::now();
    let transcriber = match Transcriber::load(&path, &cfg.language, cfg.threads) {
        Ok(t) => t,
        Err(e) => {
            warn!("captions off: {e:#}");
            return None;
        }
    };
    let detector = match speech::detector_path(&path) {
        Some(p) if p.exists() => match speech::Silero::load(&p) {
            Ok(d) => Some(d),
            Err(e) => {
                warn!("captions: {e:#}; noise and music may be captioned");
                None
            }
        },
        p => {
            let at = p
                .map(|p| format!(" at {}", p.display()))
                .unwrap_or_default();
            warn!(
                "captions: no speech detector{at}, so noise and music may be captioned; \
                 run scripts/install-model.sh to install it"
            );
            None
        }
    };
    info!(
        model = %path.display(),
        ms = t0.elapsed().as_millis() as u64,
        "captions on: {}{}{}",
        transcriber.describe(),
        if detector.is_some() { ", speech detector on" } else { "" },
        match cfg.accuracy {
            CaptionAccuracy::Normal => "",
            CaptionAccuracy::High => ", high accuracy (beam search, text about 2 s late)",
        }
    );
    Some(Models {
        transcriber,
        detector,
        policy: Policy::for_accuracy(cfg.accuracy),
    })
}

/// The running captioner: feed it audio with [`CaptionTap::send`].
#[derive(Clone)]
pub struct CaptionTap {
    tx: SyncSender<AudioFrame>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl CaptionTap {
    /// A copy of one audio frame; never blocks (a full queue drops the frame).
    pub fn send(&self, frame: &AudioFrame) {
        match self.tx.try_send(frame.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self
                    .dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    + 1;
                if n.is_power_of_two() {
                    warn!(
                        dropped_frames = n,
                        "captioning is behind the audio; dropping audio for captions"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// Text for the sender: the capture time of its first word, and the text (words, or a line
/// separator).
#[derive(Clone, Debug, PartialEq)]
pub struct CaptionText {
    pub capture: SystemTime,
    pub text: String,
}

/// Starts the captioner and the text sender for `track`.
pub fn start(models: Models, track: Arc<Track>) -> anyhow::Result<(CaptionTap, CaptionWorker)> {
    let (tx, rx) = sync_channel::<AudioFrame>(500);
    let (text_tx, text_rx) = sync_channel::<CaptionText>(256);
    let (done_tx, done) = std::sync::mpsc::channel::<()>();
    thread::Builder::new()
        .name("captioner".into())
        .spawn(move || {
            let mut c = Captioner::new(models.transcriber, models.policy);
            if let Some(d) = models.detector {
                c.speech = Some(SpeechTrack::new(Box::new(d)));
            }
            c.run(rx, |t| {
                let _ = text_tx.send(t);
            });
            // whisper's context is freed here, before anyone waiting hears we are done.
            drop(c);
            drop(done_tx);
        })
        .context("spawn captioner")?;
    thread::Builder::new()
        .name("caption-sender".into())
        .spawn(move || text_sender(text_rx, track, RED_GENERATIONS))
        .context("spawn caption sender")?;
    Ok((
        CaptionTap {
            tx,
            dropped: Arc::default(),
        },
        CaptionWorker { done },
    ))
}

/// The captioner thread, to wait for at shutdown: it ends (and frees whisper) once every
/// [`CaptionTap`] is gone and its current pass is over. A process must not exit while whisper
/// is still running on another thread: tearing down its state under it crashes.
pub struct CaptionWorker {
    done: std::sync::mpsc::Receiver<()>,
}

impl CaptionWorker {
    /// Waits at most `timeout` for the captioner to end; returns whether it did.
    pub fn wait(&self, timeout: Duration) -> bool {
        matches!(
            self.done.recv_timeout(timeout),
            Err(RecvTimeoutError::Disconnected) | Ok(())
        )
    }
}

/// Maps 16 kHz sample numbers to capture times, from the capture time of each audio frame.
#[derive(Debug, Default)]
struct SampleClock {
    anchors: VecDeque<(u64, SystemTime)>,
}

impl SampleClock {
    fn note(&mut self, sample: u64, capture: SystemTime) {
        self.anchors.push_back((sample, capture));
        while self.anchors.len() > 3000 {
            self.anchors.pop_front();
        }
    }

    fn time_of(&self, sample: u64) -> Option<SystemTime> {
        let i = self.anchors.partition_point(|(s, _)| *s <= sample);
        let (s, t) = *self.anchors.get(i.saturating_sub(1))?;
        let us = (sample as i64 - s as i64) * 1_000_000 / SAMPLE_RATE as i64;
        Some(if us >= 0 {
            t + Duration::from_micros(us as u64)
        } else {
            t - Duration::from_micros(us.unsigned_abs())
        })
    }
}

/// The streaming policy's knobs (the defaults are the constants above, chosen by measurement:
/// docs/benchmarks.md "Live captions").
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// New audio between two passes.
    pub step: Duration,
    /// Audio kept before a trim point.
    pub trim_margin: Duration,
    /// Audio since the last trim point after which a sentence is trimmed anyway.
    pub trim_after: Duration,
    /// Longest utterance audio.
    pub max_utterance: Duration,
    /// Left context: audio of already committed words kept before a trim point, so whisper
    /// does not start cold in the middle of speech (0: none).
    pub context: Duration,
    /// Cut at the longest quiet stretch near a trim point instead of at a word time.
    pub snap: bool,
    /// Words ending this close to the end of the audio wait for the next pass.
    pub edge: Duration,
    /// A word whose tokens all have at least this probability is committed without waiting
    /// for a second pass to agree (above 1: never).
    pub confident_p: f32,
    /// Beam width of the passes while an utterance goes on (1: greedy).
    pub beam: usize,
    /// Beam width of an utterance's last pass.
    pub final_beam: usize,
    /// A quiet stretch at least this long marks the end of a phrase: words after the last
    /// one wait for the phrase to end (whisper guesses the last words of a phrase it heard
    /// cut off, often confidently). Zero: no such rule.
    pub phrase_pause: Duration,
    /// A phrase that has gone on this long without a pause is not waited for any more (then
    /// only [`Policy::edge`] holds words back).
    pub phrase_max: Duration,
    /// Silence after which an utterance ends (its last pass commits everything).
    pub vad_end: Duration,
    /// With a speech detector: the probability at which a window counts as speech (above 1:
    /// the detector is not used).
    pub speech_p: f32,
    /// With a speech detector: words with no speech within this much of them are dropped
    /// (zero: no such rule).
    pub word_pad: Duration,
    /// With a speech detector: audio kept before the first speech of an utterance.
    pub lead_in: Duration,
    /// With a speech detector: within an utterance, the probability that still counts as
    /// speech.
    pub speech_end_p: f32,
    /// With a speech detector: it, not the energy detector, starts and ends utterances.
    pub speech_segments: bool,
    /// Words not agreed on yet are shown tentatively and corrected with BACKSPACE.
    pub tentative: bool,
    /// Tentative words ending this close to the end of the audio are not shown yet.
    pub show_edge: Duration,
    /// whisper's temperature fallback on a failed pass ([`Transcriber::set_fallback`]).
    pub fallback: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            step: STEP,
            trim_margin: TRIM_MARGIN,
            trim_after: TRIM_AFTER,
            max_utterance: MAX_UTTERANCE,
            context: CONTEXT,
            snap: false,
            edge: Duration::from_millis(agreement::EDGE_MS as u64),
            confident_p: CONFIDENT_P,
            beam: 1,
            final_beam: 1,
            phrase_pause: PHRASE_PAUSE,
            phrase_max: PHRASE_MAX,
            vad_end: VAD_END,
            speech_p: SPEECH_P,
            word_pad: WORD_PAD,
            lead_in: LEAD_IN,
            speech_end_p: SPEECH_END_P,
            speech_segments: SPEECH_SEGMENTS,
            tentative: TENTATIVE,
            show_edge: SHOW_EDGE,
            fallback: FALLBACK,
        }
    }
}

impl Policy {
    /// The policy `--caption-accuracy` picks. `High` was measured on the evaluation set
    /// (docs/benchmarks.md "Live captions"): beam search on every pass at half the passes.
    pub fn for_accuracy(accuracy: CaptionAccuracy) -> Self {
        match accuracy {
            CaptionAccuracy::Normal => Self::default(),
            CaptionAccuracy::High => Self {
                step: HIGH_ACCURACY_STEP,
                beam: HIGH_ACCURACY_BEAM,
                final_beam: HIGH_ACCURACY_BEAM,
                ..Self::default()
            },
        }
    }
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

fn samples_of_ms(ms: i64) -> usize {
    ms.max(0) as usize * SAMPLE_RATE / 1000
}

/// The middle of the longest quiet stretch of `audio` between `lo_ms` and `hi_ms`, in ms; quiet
/// = a 10 ms frame within 10 dB of the quietest one there. A pause between words is longer
/// than the closure of a stop consonant, so this finds the gap, not the silence inside "bake".
fn quiet_point(audio: &[f32], lo_ms: i64, hi_ms: i64) -> Option<i64> {
    let frame = SAMPLE_RATE / 100;
    let lo = (lo_ms.max(0) / 10) as usize;
    let hi = ((hi_ms.max(0) / 10) as usize).min(audio.len() / frame);
    if hi <= lo {
        return None;
    }
    let db: Vec<f32> = (lo..hi)
        .map(|f| {
            let x = &audio[f * frame..(f + 1) * frame];
            10.0 * (x.iter().map(|v| v * v).sum::<f32>() / frame as f32 + 1e-10).log10()
        })
        .collect();
    let min = db.iter().copied().fold(f32::INFINITY, f32::min);
    let (mut best, mut run_start, mut best_len) = (0, None, 0);
    for (i, d) in db.iter().chain([&f32::INFINITY]).enumerate() {
        if *d <= min + 10.0 {
            run_start.get_or_insert(i);
        } else if let Some(s) = run_start.take() {
            if i - s > best_len {
                best_len = i - s;
                best = s + (i - s) / 2;
            }
        }
    }
    Some(((lo + best) * 10) as i64)
}

/// A word is in the finished phrase if it ends at least this long before the end of the pause
/// that follows the phrase (whisper's word ends often run late into the pause).
const PHRASE_END_SLACK_MS: i64 = 50;

/// The end (ms) of the last phrase in `audio` (16 kHz): the end of the last quiet stretch of
/// at least `min_pause` samples, or the end of the audio if it ends in one. Quiet is relative
/// to the audio itself (10 ms frames within 4 dB of its 10th-percentile level, and at least
/// 6 dB under its 90th), so that it finds pauses in noise as well as in silence.
fn phrase_end(audio: &[f32], min_pause: usize) -> Option<i64> {
    let frame = SAMPLE_RATE / 100;
    let db: Vec<f32> = audio
        .chunks_exact(frame)
        .map(|x| 10.0 * (x.iter().map(|v| v * v).sum::<f32>() / frame as f32 + 1e-10).log10())
        .collect();
    if db.len() < 10 {
        return None;
    }
    let mut sorted = db.clone();
    sorted.sort_by(f32::total_cmp);
    let p10 = sorted[sorted.len() / 10];
    let p90 = sorted[sorted.len() * 9 / 10];
    let quiet = (p10 + 4.0).min(p90 - 6.0);
    let need = min_pause.div_ceil(frame).max(1);
    let mut run = 0;
    let mut end = None;
    // A sentinel loud frame after the last one closes a pause the audio ends in.
    for (i, d) in db.iter().chain([&f32::INFINITY]).enumerate() {
        if *d <= quiet {
            run += 1;
        } else {
            if run >= need {
                end = Some(i);
            }
            run = 0;
        }
    }
    end.map(|f| (f * 10) as i64)
}

/// What the captioner needs of a speech-to-text model: timed words for 16 kHz audio, with a
/// beam width (1: greedy).
trait Transcribe {
    fn transcribe(&mut self, samples: &[f32], beam: usize) -> anyhow::Result<Vec<Word>>;
    /// See [`Transcriber::set_fallback`].
    fn set_fallback(&mut self, _on: bool) {}
}

impl Transcribe for Transcriber {
    fn transcribe(&mut self, samples: &[f32], beam: usize) -> anyhow::Result<Vec<Word>> {
        Transcriber::transcribe(self, samples, beam)
    }
    fn set_fallback(&mut self, on: bool) {
        Transcriber::set_fallback(self, on);
    }
}

/// The captioner's state (see the [module docs](self)).
struct Captioner<T = Transcriber> {
    transcriber: T,
    policy: Policy,
    down: Downsampler,
    vad: Vad,
    agreement: LocalAgreement,
    clock: SampleClock,
    /// Every 16 kHz sample since start: `total` counts them; `recent` keeps the last few
    /// seconds for the VAD pre-roll.
    total: u64,
    pending: Vec<f32>,
    recent: VecDeque<f32>,
    /// The utterance being transcribed: its first sample number and its audio.
    utterance: Option<(u64, Vec<f32>)>,
    samples_at_last_pass: usize,
    /// End (ms in the utterance's audio) of the committed word the last trim was at: words
    /// up to there are left context and don't cause another trim.
    trimmed_ms: i64,
    line_open: bool,
    /// Tentative text shown after the final text of the open line ([`Policy::tentative`]).
    tentative: String,
    /// Speech probabilities of the stream, when a detector is loaded.
    speech: Option<SpeechTrack>,
}

impl<T: Transcribe> Captioner<T> {
    fn new(mut transcriber: T, policy: Policy) -> Self {
        let vad = Self::energy_vad(&policy);
        transcriber.set_fallback(policy.fallback);
        Self {
            transcriber,
            policy,
            down: Downsampler::new(),
            vad,
            agreement: LocalAgreement::new(),
            clock: SampleClock::default(),
            total: 0,
            pending: Vec::new(),
            recent: VecDeque::new(),
            utterance: None,
            samples_at_last_pass: 0,
            trimmed_ms: i64::MIN,
            line_open: false,
            tentative: String::new(),
            speech: None,
        }
    }

    /// The energy detector, ending utterances after [`Policy::vad_end`].
    fn energy_vad(policy: &Policy) -> Vad {
        Vad::with_end_frames(samples_of_ms(ms(policy.vad_end)) / dsp::VAD_FRAME)
    }

    fn run(&mut self, rx: Receiver<AudioFrame>, mut emit: impl FnMut(CaptionText)) {
        loop {
            // Take in all the audio there is, then transcribe if a pass is due.
            let first = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(f) => Some(f),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            for frame in first.into_iter().chain(rx.try_iter()) {
                self.ingest(&frame, &mut emit);
            }
            self.pass_if_due(&mut emit);
        }
        self.finish(&mut emit);
        debug!("captioner: audio ended");
    }

    /// A pass, if [`Policy::step`] of new audio has come since the last one.
    fn pass_if_due(&mut self, emit: &mut impl FnMut(CaptionText)) {
        if let Some((_, audio)) = &self.utterance {
            let fresh = audio.len() - self.samples_at_last_pass;
            if fresh >= samples_of_ms(ms(self.policy.step)) {
                self.pass(false, emit);
            }
        }
    }

    /// The audio ended: the last pass over what is left.
    fn finish(&mut self, emit: &mut impl FnMut(CaptionText)) {
        if self.utterance.is_some() {
            self.pass(true, emit);
        }
    }

    fn ingest(&mut self, frame: &AudioFrame, emit: &mut impl FnMut(CaptionText)) {
        let before = self.pending.len();
        self.down.process(&frame.samples, &mut self.pending);
        self.clock.note(self.total + before as u64, frame.capture);
        let mut used = 0;
        while self.pending.len() - used >= VAD_FRAME {
            let f: Vec<f32> = self.pending[used..used + VAD_FRAME].to_vec();
            used += VAD_FRAME;
            self.total += VAD_FRAME as u64;
            self.recent.extend(&f);
            while self.recent.len() > SAMPLE_RATE * 2 {
                self.recent.pop_front();
            }
            if let Some((_, audio)) = self.utterance.as_mut() {
                audio.extend_from_slice(&f);
            }
            let vad = self.vad.push_frame(&f);
            if let Some(sp) = self.speech.as_mut().filter(|_| self.policy.speech_p <= 1.0) {
                sp.push(&f);
                let was_failed = sp.failed();
                let judged = sp.pending() >= SPEECH_UPDATE * speech::WINDOW && sp.update();
                if sp.failed() && !was_failed {
                    // The energy detector takes over: afresh, so that speech going on now
                    // starts an utterance.
                    self.vad = Self::energy_vad(&self.policy);
                }
                if self.policy.speech_segments && !sp.failed() {
                    // The speech detector cuts the utterances: the energy detector would run
                    // on through noise from one sentence to the next. (It keeps running, so
                    // it can take over if the detector fails.)
                    if judged {
                        self.segment_by_speech(emit);
                    }
                    self.cut_if_too_long(emit);
                    continue;
                }
            }
            match vad {
                Some(VadEvent::Start { preroll }) => {
                    let n = preroll.min(self.recent.len());
                    let audio: Vec<f32> = self
                        .recent
                        .iter()
                        .skip(self.recent.len() - n)
                        .copied()
                        .collect();
                    self.utterance = Some((self.total - n as u64, audio));
                    self.samples_at_last_pass = 0;
                    self.trimmed_ms = i64::MIN;
                    self.agreement.reset();
                }
                Some(VadEvent::End { trailing }) => {
                    if let Some((_, audio)) = self.utterance.as_mut() {
                        let keep = audio.len().saturating_sub(trailing);
                        audio.truncate(keep);
                    }
                    self.pass(true, emit);
                }
                None => {}
            }
            self.cut_if_too_long(emit);
        }
        self.pending.drain(..used);
    }

    fn cut_if_too_long(&mut self, emit: &mut impl FnMut(CaptionText)) {
        if self
            .utterance
            .as_ref()
            .is_some_and(|(_, a)| a.len() >= samples_of_ms(ms(self.policy.max_utterance)))
        {
            self.cut_long_utterance(emit);
        }
    }

    /// With a speech detector, after it judged more audio: an utterance starts where
    /// [`SPEECH_START_WINDOWS`] windows in a row are speech (with [`LEAD_IN`] before them)
    /// and ends after [`Policy::vad_end`] without speech.
    fn segment_by_speech(&mut self, emit: &mut impl FnMut(CaptionText)) {
        let Some(sp) = self.speech.as_ref() else {
            return;
        };
        let p = self.policy.speech_p;
        let judged = sp.judged_until();
        match &self.utterance {
            None => {
                let Some(onset) = sp.speech_at_end(p, SPEECH_START_WINDOWS) else {
                    return;
                };
                let lead = samples_of_ms(ms(self.policy.lead_in)) as u64;
                let oldest = self.total - self.recent.len() as u64;
                let from = onset.saturating_sub(lead).max(oldest);
                let audio: Vec<f32> = self
                    .recent
                    .iter()
                    .skip((from - oldest) as usize)
                    .copied()
                    .collect();
                self.utterance = Some((from, audio));
                self.samples_at_last_pass = 0;
                self.trimmed_ms = i64::MIN;
                self.agreement.reset();
            }
            Some((start, audio)) => {
                let end = start + audio.len() as u64;
                let last_speech = sp
                    .last_at_least(*start, judged, self.policy.speech_end_p)
                    .unwrap_or(*start);
                let quiet = samples_of_ms(ms(self.policy.vad_end)) as u64;
                if judged.saturating_sub(last_speech) >= quiet {
                    let keep = (last_speech + samples_of_ms(SPEECH_TAIL_MS) as u64)
                        .min(end)
                        .saturating_sub(*start) as usize;
                    if let Some((_, audio)) = self.utterance.as_mut() {
                        audio.truncate(keep);
                    }
                    self.pass(true, emit);
                }
            }
        }
    }

    /// Transcribes the utterance so far; `last` at its end.
    fn pass(&mut self, last: bool, emit: &mut impl FnMut(CaptionText)) {
        let Some((start, audio)) = self.utterance.as_ref() else {
            return;
        };
        let (start, len) = (*start, audio.len() as u64);
        self.samples_at_last_pass = audio.len();
        let speech_p = self.policy.speech_p;
        let heard = self.speech.as_mut().filter(|_| speech_p <= 1.0).map(|sp| {
            sp.update();
            (
                sp.count_in(start, start + len, speech_p),
                sp.first_at_least(start, start + len, speech_p),
            )
        });
        if let Some((windows, onset)) = heard {
            if windows < SPEECH_MIN_WINDOWS {
                // Nothing in it is speech (noise, music, a door): whisper would make text of it.
                debug!(
                    audio_ms = len * 1000 / SAMPLE_RATE as u64,
                    last, "no speech heard: no pass"
                );
                if last {
                    self.utterance = None;
                    self.agreement.reset();
                    self.end_line(emit);
                }
                return;
            }
            // Sound before the first speech is left out (whisper places words badly after a
            // stretch of noise), unless words from this utterance are already in the window.
            let lead = samples_of_ms(ms(self.policy.lead_in)) as u64;
            if let Some(onset) = onset.filter(|&o| o > start + lead) {
                if self.agreement.committed().is_empty() && self.trimmed_ms == i64::MIN {
                    let cut = ((onset - lead - start) / 16 * 16) as usize;
                    let cut = self.drop_audio_front(cut);
                    self.samples_at_last_pass = self.samples_at_last_pass.saturating_sub(cut);
                    self.agreement.trim(0, (cut * 1000 / SAMPLE_RATE) as i64);
                }
            }
        }
        let Some((start, audio)) = self.utterance.as_ref() else {
            return;
        };
        let start = *start;
        let speech = self.speech.as_ref().filter(|_| speech_p <= 1.0);
        let beam = if last {
            self.policy.final_beam
        } else {
            self.policy.beam
        };
        let t0 = Instant::now();
        let mut words = match self.transcriber.transcribe(audio, beam) {
            Ok(w) => w,
            Err(e) => {
                warn!("captions: {e:#}");
                Vec::new()
            }
        };
        if let Some(sp) = speech.filter(|_| !self.policy.word_pad.is_zero()) {
            let pad = samples_of_ms(ms(self.policy.word_pad)) as u64;
            let at = |ms: i64| start + samples_of_ms(ms) as u64;
            words.retain(|w| {
                let heard = sp
                    .max_in(at(w.start_ms).saturating_sub(pad), at(w.end_ms) + pad)
                    // Not judged yet (the last few ms): the agreement holds it back anyway.
                    .is_none_or(|p| p >= self.policy.speech_p);
                if !heard {
                    debug!(word = %w.text, w.start_ms, "no speech heard there: word dropped");
                }
                heard
            });
        }
        debug!(
            audio_ms = audio.len() * 1000 / SAMPLE_RATE,
            ms = t0.elapsed().as_millis() as u64,
            last,
            beam,
            "whisper pass: {:?}",
            words
                .iter()
                .map(|w| (w.text.as_str(), w.start_ms))
                .collect::<Vec<_>>()
        );
        let audio_ms = (self.samples_at_last_pass * 1000 / SAMPLE_RATE) as i64;
        let committed = if last {
            self.agreement.finish(words)
        } else {
            let mut limit = audio_ms - ms(self.policy.edge);
            if !self.policy.phrase_pause.is_zero() {
                let pause = samples_of_ms(ms(self.policy.phrase_pause));
                match phrase_end(audio, pause) {
                    // Words of the phrase still being spoken wait for its end, unless it has
                    // gone on too long.
                    Some(end) if audio_ms - end <= ms(self.policy.phrase_max) => {
                        limit = limit.min(end - PHRASE_END_SLACK_MS);
                    }
                    None if audio_ms <= ms(self.policy.phrase_max) => {
                        limit = limit.min(0);
                    }
                    _ => {}
                }
            }
            self.agreement
                .update_with(words, limit, limit, self.policy.confident_p)
        };
        let pending: Vec<Word> = if last {
            Vec::new()
        } else {
            let shown_until = audio_ms - ms(self.policy.show_edge);
            self.agreement
                .pending()
                .iter()
                .take_while(|w| w.end_ms <= shown_until)
                .cloned()
                .collect()
        };
        self.emit_words(start, &committed, &pending, emit);
        if last {
            self.utterance = None;
            self.agreement.reset();
            self.end_line(emit);
        } else if let Some(k) = self.last_sentence_end() {
            // A sentence is done: whisper no longer needs its audio (shorter passes, so less
            // delay).
            self.trim_through(k);
        } else if audio_ms - self.trimmed_ms.max(0) > ms(self.policy.trim_after) {
            // A long sentence (or one whisper puts no full stop in): trim anyway after the
            // last committed word, keeping the line open, so passes stay short.
            if let Some(k) = self.agreement.committed().len().checked_sub(1) {
                if self.agreement.committed()[k].end_ms > self.trimmed_ms {
                    self.trim_through(k);
                }
            }
        }
    }

    /// The last committed word that ends a sentence, if it is newer than the last trim point.
    fn last_sentence_end(&self) -> Option<usize> {
        let c = self.agreement.committed();
        c.iter()
            .rposition(|w| w.text.ends_with(['.', '?', '!']))
            .filter(|&k| c[k].end_ms > self.trimmed_ms)
    }

    /// Ends the caption line, if one is open (T.140 LINE SEPARATOR); tentative text still
    /// shown is erased first.
    fn end_line(&mut self, emit: &mut impl FnMut(CaptionText)) {
        if !self.tentative.is_empty() {
            if let Some(capture) = self.clock.time_of(self.total) {
                let n = self.tentative.chars().count();
                emit(CaptionText {
                    capture,
                    text: std::iter::repeat_n(BACKSPACE, n).collect(),
                });
            }
            self.tentative.clear();
        }
        if !self.line_open {
            return;
        }
        self.line_open = false;
        if let Some(capture) = self.clock.time_of(self.total) {
            emit(CaptionText {
                capture,
                text: LINE_SEPARATOR.to_string(),
            });
        }
    }

    /// Drops the utterance's audio up to just before the end of committed word `k`
    /// ([`Policy::trim_margin`] before it, or before the next word's start if that is earlier:
    /// whisper's word ends are often late, and cutting into the next word loses it). With
    /// [`Policy::context`], the committed words spoken in that much audio before the cut stay
    /// (they are heard again, not sent again).
    fn trim_through(&mut self, k: usize) {
        let c = self.agreement.committed();
        let Some(word) = c.get(k) else {
            return;
        };
        let next_start = c.get(k + 1).map_or(i64::MAX, |w| w.start_ms);
        let margin = ms(self.policy.trim_margin);
        let mut cut_ms = word.end_ms.min(next_start) - margin;
        let audio = self.utterance.as_ref().map_or(&[][..], |(_, a)| &a[..]);
        let audio_ms = (audio.len() * 1000 / SAMPLE_RATE) as i64;
        if self.policy.snap {
            // The pause after the word: somewhere from a little before whisper's end of it
            // to a little after (its ends are often late, sometimes early).
            let hi = (word.end_ms + 300)
                .min(next_start.saturating_add(100))
                .min(audio_ms - 200);
            if let Some(q) = quiet_point(audio, word.end_ms - 250, hi) {
                cut_ms = q;
            }
        }
        let mut keep = k + 1;
        let context = ms(self.policy.context);
        if context > 0 {
            // Keep whole words: from the first one starting within `context` of the cut.
            let j = c[..=k]
                .iter()
                .position(|w| w.start_ms >= cut_ms - context)
                .unwrap_or(k + 1);
            keep = j;
            if let Some(w) = c.get(j).filter(|_| j <= k) {
                let prev_end = if j > 0 { c[j - 1].end_ms } else { 0 };
                cut_ms = if self.policy.snap {
                    quiet_point(
                        audio,
                        (w.start_ms - 300).max(prev_end - 100),
                        w.start_ms + 50,
                    )
                    .unwrap_or(w.start_ms - margin)
                } else {
                    w.start_ms - margin
                };
            }
        }
        let word_end = word.end_ms;
        debug!(
            word = %word.text,
            word_end,
            cut_ms,
            keep_words = (k + 1).saturating_sub(keep),
            "trim"
        );
        let cut = self.drop_audio_front(samples_of_ms(cut_ms));
        let cut_ms = (cut * 1000 / SAMPLE_RATE) as i64;
        self.samples_at_last_pass = self.samples_at_last_pass.saturating_sub(cut);
        self.trimmed_ms = word_end - cut_ms;
        self.agreement.trim(keep, cut_ms);
    }

    /// Drops up to `samples` from the start of the utterance's audio (moving its start);
    /// returns how many were dropped.
    fn drop_audio_front(&mut self, samples: usize) -> usize {
        let Some((start, audio)) = self.utterance.as_mut() else {
            return 0;
        };
        let cut = samples.min(audio.len());
        audio.drain(..cut);
        *start += cut as u64;
        cut
    }

    /// Sends committed `words`, stamped with the capture time of the first; a word that ends
    /// a sentence ends the caption line (a LINE SEPARATOR stamped with the word's end). With
    /// [`Policy::tentative`], the `pending` words (the last pass's, not agreed on yet) follow
    /// them on screen up to the end of their sentence, and what was shown tentatively before
    /// is corrected: T.140 BACKSPACEs erase it back to where it differs from the new text, so
    /// text that stays the same is not sent again, and a word shown early keeps its early
    /// arrival.
    fn emit_words(
        &mut self,
        start: u64,
        words: &[Word],
        pending: &[Word],
        emit: &mut impl FnMut(CaptionText),
    ) {
        let at = |ms: i64| start + (ms.max(0) as u64) * SAMPLE_RATE as u64 / 1000;
        // What is to follow the text already final on screen, in pieces with the capture
        // time of their first word.
        let mut pieces: Vec<(Option<SystemTime>, String)> = Vec::new();
        let mut text = String::new();
        let mut first_ms = None;
        for w in words {
            first_ms.get_or_insert(w.start_ms);
            if self.line_open {
                text.push(' ');
            }
            text.push_str(&w.text);
            self.line_open = true;
            if w.text.ends_with(['.', '?', '!']) {
                let capture = first_ms.take().and_then(|ms| self.clock.time_of(at(ms)));
                pieces.push((capture, std::mem::take(&mut text)));
                let capture = self.clock.time_of(at(w.end_ms));
                pieces.push((capture, LINE_SEPARATOR.to_string()));
                self.line_open = false;
            }
        }
        if let Some(ms) = first_ms {
            pieces.push((self.clock.time_of(at(ms)), text));
        }
        let mut tentative = String::new();
        if self.policy.tentative {
            let mut first_ms = None;
            let mut open = self.line_open;
            for w in pending {
                first_ms.get_or_insert(w.start_ms);
                if open {
                    tentative.push(' ');
                }
                tentative.push_str(&w.text);
                open = true;
                if w.text.ends_with(['.', '?', '!']) {
                    break;
                }
            }
            let capture = first_ms.and_then(|ms| self.clock.time_of(at(ms)));
            pieces.push((capture, tentative.clone()));
        }
        // Against what is shown after the final text: erase back to the first difference.
        let shown = std::mem::take(&mut self.tentative);
        let target: String = pieces.iter().map(|(_, t)| t.as_str()).collect();
        let same = shown
            .chars()
            .zip(target.chars())
            .take_while(|(a, b)| a == b)
            .count();
        let mut erase = shown.chars().count() - same;
        let mut on_screen = same;
        for (capture, piece) in pieces {
            let n = piece.chars().count();
            let new: String = piece.chars().skip(on_screen).collect();
            on_screen = on_screen.saturating_sub(n);
            if new.is_empty() && erase == 0 {
                continue;
            }
            let Some(capture) = capture.or_else(|| self.clock.time_of(self.total)) else {
                continue;
            };
            let mut text: String = std::iter::repeat_n(BACKSPACE, erase).collect();
            erase = 0;
            text.push_str(&new);
            emit(CaptionText { capture, text });
        }
        self.tentative = tentative;
    }

    /// An utterance reached [`Policy::max_utterance`]: keep only the audio after its last
    /// committed word (or its last 2 s if nothing was committed) and go on.
    fn cut_long_utterance(&mut self, emit: &mut impl FnMut(CaptionText)) {
        self.pass(false, emit);
        let max = samples_of_ms(ms(self.policy.max_utterance));
        let len = |c: &Self| c.utterance.as_ref().map_or(0, |(_, a)| a.len());
        if len(self) >= max {
            let c = self.agreement.committed();
            if c.last().is_none_or(|w| w.end_ms <= self.trimmed_ms) {
                // Nothing new agreed on in all that audio (whisper kept changing its mind, or
                // its guards dropped its guesses): take the last pass's words but for the
                // last 2 s rather than lose them.
                let end_ms = (len(self) * 1000 / SAMPLE_RATE) as i64 - 2000;
                let forced = self.agreement.commit_pending(end_ms);
                let start = self.utterance.as_ref().map_or(0, |(s, _)| *s);
                self.emit_words(start, &forced, &[], emit);
            }
            let c = self.agreement.committed();
            if let Some(k) = c
                .len()
                .checked_sub(1)
                .filter(|&k| c[k].end_ms > self.trimmed_ms)
            {
                self.trim_through(k);
            }
        }
        if len(self) >= max {
            // Still nothing: keep the last 2 s.
            self.drop_audio_front(len(self).saturating_sub(2 * SAMPLE_RATE));
            self.samples_at_last_pass = 0;
            self.trimmed_ms = i64::MIN;
            self.agreement.reset();
        }
    }
}

/// Sends caption text as RTP (`red` over `t140`): each piece of text at once, in its own
/// packet stamped with the time it was spoken (the captioner already delivers text in bursts
/// half a second apart, so RFC 4103's 300 ms buffering would only add delay); then, every
/// [`TEXT_INTERVAL`], empty packets until the last text has gone out `generations` more
/// times in the RFC 2198 redundancy (RFC 4103 §5.2; [`RED_GENERATIONS`] for captions). Chat
/// uses it too.
pub(crate) fn text_sender(rx: Receiver<CaptionText>, track: Arc<Track>, generations: usize) {
    let mut red = RedPacketizer::new(T140_PT, generations);
    let mut seq: u16 = rand::random();
    let mut last_ts: Option<u32> = None;
    loop {
        let wait = if red.needs_idle_packet() {
            TEXT_INTERVAL
        } else {
            Duration::from_secs(3600)
        };
        let (ts, text) = match rx.recv_timeout(wait) {
            Ok(t) => {
                let ts = track.rtp_timestamp_at(t.capture);
                // Timestamps never go back (a word may be stamped a little before the end
                // of the previous one): wrapping-aware max with the last one sent.
                let ts = match last_ts {
                    Some(l) if (ts.wrapping_sub(l) as i32) < 0 => l,
                    _ => ts,
                };
                (ts, t.text)
            }
            Err(RecvTimeoutError::Timeout) => (last_ts.unwrap_or(0), String::new()),
            Err(RecvTimeoutError::Disconnected) => break,
        };
        last_ts = Some(ts);
        let payload = red.packetize(ts, &text);
        // The track's payload type is `red` (RED_PT).
        let bytes = rtp_packet(&track, seq, false, ts, &payload);
        seq = seq.wrapping_add(1);
        if !text.is_empty() {
            debug!(text = %text.escape_debug(), "caption sent");
        }
        track.deliver(&[OutPacket {
            bytes,
            starts_keyframe: true,
        }]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng as _, SeedableRng as _};

    #[test]
    fn sample_clock_interpolates_between_frames() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut c = SampleClock::default();
        assert_eq!(c.time_of(5), None);
        c.note(0, t0);
        c.note(320, t0 + Duration::from_millis(20));
        assert_eq!(c.time_of(160), Some(t0 + Duration::from_millis(10)));
        assert_eq!(c.time_of(480), Some(t0 + Duration::from_millis(30)));
        assert_eq!(c.time_of(0), Some(t0));
    }

    /// 16 kHz "speech" (a 300 Hz tone whose loudness wobbles, as syllables do) for `ms`.
    fn voiced(ms: usize, amp: f32) -> Vec<f32> {
        (0..ms * 16)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                let syllables = 0.6 + 0.4 * (2.0 * std::f32::consts::PI * 4.0 * t).sin();
                amp * syllables * (2.0 * std::f32::consts::PI * 300.0 * t).sin()
            })
            .collect()
    }

    /// Seeded white noise, for pauses that are not silent.
    fn hiss(ms: usize, amp: f32, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..ms * 16)
            .map(|_| amp * rng.random_range(-0.5f32..0.5))
            .collect()
    }

    #[test]
    fn phrase_end_is_the_end_of_the_last_long_enough_pause() {
        let pause = 150 * 16;
        // speech 1 s, pause 300 ms, speech 800 ms, a 60 ms gap (a stop consonant), speech
        let mut a = voiced(1000, 0.3);
        a.extend(vec![0.0; 300 * 16]);
        a.extend(voiced(800, 0.3));
        a.extend(vec![0.0; 60 * 16]);
        a.extend(voiced(500, 0.3));
        assert_eq!(phrase_end(&a, pause), Some(1300));
        // Ending in a pause: everything heard is a whole phrase.
        a.extend(vec![0.0; 200 * 16]);
        assert_eq!(phrase_end(&a, pause), Some(2860));
        // No pause at all.
        assert_eq!(phrase_end(&voiced(3000, 0.3), pause), None);
        // The same in noise about 13 dB under the speech: pauses are where only the noise is.
        let mut n = voiced(1000, 0.3);
        n.extend(vec![0.0; 300 * 16]);
        n.extend(voiced(1200, 0.3));
        let noisy: Vec<f32> = n
            .iter()
            .zip(hiss(2500, 0.15, 7))
            .map(|(a, b)| a + b)
            .collect();
        let end = phrase_end(&noisy, pause).expect("the pause is found in noise");
        assert!((1280..=1320).contains(&end), "{end}");
    }

    /// A model that hears "hello there" in anything it is given, as whisper does in noise.
    struct Credulous(usize);

    impl Transcribe for Credulous {
        fn transcribe(&mut self, samples: &[f32], _beam: usize) -> anyhow::Result<Vec<Word>> {
            self.0 += 1;
            let end = (samples.len() * 1000 / SAMPLE_RATE) as i64;
            Ok(vec![
                Word::new("hello", 100, 400),
                Word::new("there.", 450, (end - 300).max(500)),
            ])
        }
    }

    /// [`Credulous`] that also notes each pass's beam width and audio length (ms).
    #[derive(Default)]
    struct Noting(Vec<(usize, usize)>);

    impl Transcribe for Noting {
        fn transcribe(&mut self, samples: &[f32], beam: usize) -> anyhow::Result<Vec<Word>> {
            self.0.push((beam, samples.len() * 1000 / SAMPLE_RATE));
            Credulous(0).transcribe(samples, beam)
        }
    }

    #[test]
    fn high_accuracy_decodes_every_pass_with_beam_search_at_half_the_passes() {
        let speech = voiced(6000, 0.3);
        let passes = |accuracy| {
            let mut c = Captioner::new(Noting::default(), Policy::for_accuracy(accuracy));
            let text = feed(&mut c, &speech);
            assert!(text.starts_with("hello there."), "{accuracy:?}: {text:?}");
            c.transcriber.0
        };
        let normal = passes(CaptionAccuracy::Normal);
        let high = passes(CaptionAccuracy::High);
        assert!(normal.iter().all(|&(beam, _)| beam == 1), "{normal:?}");
        assert!(high.iter().all(|&(beam, _)| beam == 5), "{high:?}");
        // A pass each 0.5 s of speech, or each second.
        assert!((10..=14).contains(&normal.len()), "{normal:?}");
        assert!((5..=7).contains(&high.len()), "{high:?}");
    }

    /// A detector that says the same of every window with sound in it (and 0 of silence).
    struct Says(f32);

    impl speech::SpeechProb for Says {
        fn probabilities(&mut self, samples: &[f32]) -> anyhow::Result<Vec<f32>> {
            Ok(samples
                .chunks(speech::WINDOW)
                .map(|w| {
                    if w.iter().any(|x| x.abs() > 0.01) {
                        self.0
                    } else {
                        0.0
                    }
                })
                .collect())
        }
    }

    /// Feeds `audio` (16 kHz) to `c` as 48 kHz stereo frames, then 1 s of silence; returns
    /// the text a viewer ends up with (T.140 edits applied, lines ended by `|`).
    fn feed<T: Transcribe>(c: &mut Captioner<T>, audio: &[f32]) -> String {
        let mut screen = livecast_proto::codec::t140::TextBuffer::new();
        for block in feed_blocks(c, audio) {
            screen.apply(&block.text);
        }
        screen.lines().join("|")
    }

    /// [`feed`], returning the text blocks as sent.
    fn feed_blocks<T: Transcribe>(c: &mut Captioner<T>, audio: &[f32]) -> Vec<CaptionText> {
        let mut text = Vec::new();
        let mut all = audio.to_vec();
        all.extend(vec![0.0; SAMPLE_RATE]);
        for (i, chunk) in all.chunks(320).enumerate() {
            // 16 -> 48 kHz, two channels
            let samples: Vec<i16> = chunk
                .iter()
                .flat_map(|&x| [(x * 32767.0) as i16; 6])
                .collect();
            let frame = AudioFrame {
                samples,
                capture: SystemTime::UNIX_EPOCH + Duration::from_millis(20 * i as u64),
            };
            c.ingest(&frame, &mut |t| text.push(t));
            c.pass_if_due(&mut |t| text.push(t));
        }
        c.finish(&mut |t| text.push(t));
        text
    }

    /// The text [`Credulous`] makes of `audio` with a detector that says `detector` of
    /// everything (or none), and the number of passes.
    fn caption(audio: &[f32], detector: Option<f32>) -> (String, usize) {
        let mut c = Captioner::new(Credulous(0), Policy::default());
        c.speech = detector.map(|p| SpeechTrack::new(Box::new(Says(p))));
        let text = feed(&mut c, audio);
        (text, c.transcriber.0)
    }

    #[test]
    fn sound_the_detector_does_not_call_speech_never_reaches_whisper() {
        // Loud, wobbling sound (music, a voice, a door: the energy detector can't tell).
        let sound = voiced(3000, 0.3);
        let (text, passes) = caption(&sound, None);
        assert_eq!(
            text, "hello there.|",
            "without a detector, whisper's guess is sent"
        );
        assert!(passes >= 3, "{passes}");
        let (text, passes) = caption(&sound, Some(0.9));
        assert_eq!(text, "hello there.|", "speech: as before");
        assert!(passes >= 3, "{passes}");
        let (text, passes) = caption(&sound, Some(0.05));
        assert_eq!(
            (text.as_str(), passes),
            ("", 0),
            "not speech: no pass, no text"
        );
    }

    /// A model that hears a word at 0.1-0.4 s and, once it has 2.7 s, one at 2.3-2.6 s.
    struct TwoWords;

    impl Transcribe for TwoWords {
        fn transcribe(&mut self, samples: &[f32], _beam: usize) -> anyhow::Result<Vec<Word>> {
            let mut w = vec![Word::new("hello", 100, 400)];
            if samples.len() >= 2700 * 16 {
                w.push(Word::new("ghost.", 2300, 2600));
            }
            Ok(w)
        }
    }

    /// Speech where the audio's mean level is above 0.1.
    struct LoudIsSpeech;

    impl speech::SpeechProb for LoudIsSpeech {
        fn probabilities(&mut self, samples: &[f32]) -> anyhow::Result<Vec<f32>> {
            Ok(samples
                .chunks(speech::WINDOW)
                .map(|w| {
                    let level = w.iter().map(|x| x.abs()).sum::<f32>() / w.len() as f32;
                    if level > 0.1 {
                        0.9
                    } else {
                        0.1
                    }
                })
                .collect())
        }
    }

    #[test]
    fn words_where_no_speech_was_heard_are_dropped() {
        // 1 s of "speech", then 2 s of sound loud enough for the energy detector but not
        // speech; the model hears a word in each.
        let mut audio = voiced(1000, 0.4);
        audio.extend(voiced(2000, 0.12));
        let run = |detector: bool| {
            let policy = Policy {
                word_pad: Duration::from_millis(200),
                ..Policy::default()
            };
            let mut c = Captioner::new(TwoWords, policy);
            if detector {
                c.speech = Some(SpeechTrack::new(Box::new(LoudIsSpeech)));
            }
            feed(&mut c, &audio)
        };
        assert_eq!(run(false), "hello ghost.|");
        assert_eq!(run(true), "hello|");
    }

    /// A model that hears one word, "yes", at the start of anything.
    struct Yes;

    impl Transcribe for Yes {
        fn transcribe(&mut self, _: &[f32], _beam: usize) -> anyhow::Result<Vec<Word>> {
            Ok(vec![Word::new("yes", 100, 400)])
        }
    }

    /// A model that hears nothing and notes the longest audio it was given.
    struct Deaf(usize);

    impl Transcribe for Deaf {
        fn transcribe(&mut self, samples: &[f32], _beam: usize) -> anyhow::Result<Vec<Word>> {
            self.0 = self.0.max(samples.len());
            Ok(Vec::new())
        }
    }

    #[test]
    fn no_pass_hears_more_than_the_longest_utterance_with_or_without_a_detector() {
        let audio = voiced(20_000, 0.4);
        let max = samples_of_ms(ms(MAX_UTTERANCE));
        for detector in [false, true] {
            let mut c = Captioner::new(Deaf(0), Policy::default());
            if detector {
                c.speech = Some(SpeechTrack::new(Box::new(LoudIsSpeech)));
            }
            assert_eq!(feed(&mut c, &audio), "");
            assert!(
                c.transcriber.0 > SAMPLE_RATE,
                "detector {detector}: it was heard"
            );
            assert!(
                c.transcriber.0 <= max,
                "detector {detector}: {}",
                c.transcriber.0
            );
        }
    }

    /// A model whose guesses about the word being spoken change as it hears more: at each
    /// pass it hears the words whose end is in the audio, and the next one, if it has begun,
    /// wrongly ("fax" for "fox").
    struct Guessing;

    impl Transcribe for Guessing {
        fn transcribe(&mut self, samples: &[f32], _beam: usize) -> anyhow::Result<Vec<Word>> {
            let heard = (samples.len() * 1000 / SAMPLE_RATE) as i64;
            let script = [
                ("The", "Tha"),
                ("quick", "quack"),
                ("brown", "brow"),
                ("fox", "fax"),
                ("jumps.", "jump"),
            ];
            let mut words = Vec::new();
            for (i, (w, guess)) in script.iter().enumerate() {
                let (s, e) = (300 + 600 * i as i64, 800 + 600 * i as i64);
                if e <= heard {
                    words.push(Word::new(w, s, e));
                } else if heard - s >= 350 {
                    // Half heard, misheard, and placed early, as whisper does.
                    words.push(Word::new(guess, s, s + 100));
                    break;
                }
            }
            Ok(words)
        }
    }

    #[test]
    fn tentative_words_are_shown_early_and_corrected_in_place() {
        let audio = voiced(3500, 0.4);
        let run = |tentative: bool| {
            let policy = Policy {
                tentative,
                ..Policy::default()
            };
            let mut c = Captioner::new(Guessing, policy);
            let blocks = feed_blocks(&mut c, &audio);
            let mut screen = livecast_proto::codec::t140::TextBuffer::new();
            // When each word of the final text was first on screen as it stayed.
            for b in &blocks {
                screen.apply(&b.text);
            }
            (blocks, screen.lines().join("|"))
        };
        let (plain, text) = run(false);
        assert_eq!(text, "The quick brown fox jumps.|");
        assert!(plain.iter().all(|b| !b.text.contains(BACKSPACE)));
        let (tent, text) = run(true);
        assert_eq!(
            text, "The quick brown fox jumps.|",
            "the same text in the end"
        );
        assert!(
            tent.iter().any(|b| b.text.contains(BACKSPACE)),
            "a guess was corrected: {tent:?}"
        );
        // Text is sent once unless corrected: every character sent is on screen at the end or
        // erased by a BACKSPACE.
        let sent: usize = tent
            .iter()
            .map(|b| b.text.chars().filter(|&c| c != BACKSPACE).count())
            .sum();
        let erased: usize = tent
            .iter()
            .map(|b| b.text.chars().filter(|&c| c == BACKSPACE).count())
            .sum();
        assert_eq!(
            sent - erased,
            "The quick brown fox jumps.\u{2028}".chars().count()
        );
        // "The" is on screen before the plain policy sends anything.
        let first = |blocks: &[CaptionText]| {
            blocks
                .iter()
                .position(|b| b.text.contains("The"))
                .expect("sent")
        };
        assert_eq!(first(&tent), 0);
        let plain_first_text = &plain[first(&plain)].text;
        assert!(plain_first_text.starts_with("The"), "{plain_first_text}");
        assert!(tent.len() > plain.len());
    }

    #[test]
    fn a_failed_detector_leaves_the_cutting_to_the_energy_detector() {
        struct Broken;
        impl speech::SpeechProb for Broken {
            fn probabilities(&mut self, _: &[f32]) -> anyhow::Result<Vec<f32>> {
                Err(anyhow::anyhow!("broken"))
            }
        }
        // Two phrases with a second of silence between them.
        let mut audio = voiced(1500, 0.4);
        audio.extend(vec![0.0; SAMPLE_RATE]);
        audio.extend(voiced(1500, 0.4));
        let mut c = Captioner::new(Yes, Policy::default());
        c.speech = Some(SpeechTrack::new(Box::new(Broken)));
        assert_eq!(feed(&mut c, &audio), "yes|yes|");
    }

    #[test]
    fn the_detector_ends_utterances_that_noise_would_run_together() {
        // Two phrases with a second of steady noise between them: loud enough that the energy
        // detector never hears a pause, not speech for the speech detector.
        let mut audio = voiced(1500, 0.4);
        audio.extend(hiss(1000, 0.12, 3));
        audio.extend(voiced(1500, 0.4));
        let mut c = Captioner::new(Yes, Policy::default());
        assert_eq!(
            feed(&mut c, &audio),
            "yes|",
            "one utterance without a detector"
        );
        let mut c = Captioner::new(Yes, Policy::default());
        c.speech = Some(SpeechTrack::new(Box::new(LoudIsSpeech)));
        assert_eq!(feed(&mut c, &audio), "yes|yes|", "two with one");
    }
}
