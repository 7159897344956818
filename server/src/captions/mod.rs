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
//!   two passes agree on are committed ([`agreement::LocalAgreement`]); when it ends, a last
//!   pass commits the rest. An utterance longer than [`MAX_UTTERANCE`] is cut after its last
//!   committed word. Each utterance's text is a line (T.140 LINE SEPARATOR between them).
//! * A caption's RTP timestamp is the capture time of its first word's audio, on the same
//!   wall clock as the audio and video tracks (and their RTCP sender reports), so a player can
//!   put it where it was spoken.

pub mod agreement;
pub mod dsp;
pub mod model;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use livecast_proto::codec::t140::{RedPacketizer, LINE_SEPARATOR};
use tracing::{debug, info, warn};

use crate::pipeline::rtp_packet;
use crate::source::AudioFrame;
use crate::track::{OutPacket, Track};
use agreement::{LocalAgreement, Word};
use dsp::{Downsampler, Vad, VadEvent, VAD_FRAME};
use model::{Transcriber, SAMPLE_RATE};

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
/// An utterance this long is trimmed after its last committed word even mid-sentence.
pub const TRIM_AFTER: Duration = Duration::from_secs(6);
/// Longest stretch of audio given to whisper at once.
pub const MAX_UTTERANCE: Duration = Duration::from_secs(12);

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
}

impl Default for CaptionConfig {
    fn default() -> Self {
        Self {
            mode: CaptionMode::Off,
            model: None,
            language: "en".into(),
            threads: 1,
        }
    }
}

/// Loads the model if captions are wanted. `Ok(None)` means "no captions" and has been
/// explained in the log, once; a model that is missing or broken is not an error for the
/// server, which streams without captions.
pub fn load(cfg: &CaptionConfig) -> Option<Transcriber> {
    if cfg.mode == CaptionMode::Off {
        return None;
    }
    let Some(path) = cfg.model.clone().or_else(model::default_model_path) else {
        warn!("captions off: no --model given and no home directory to look for one in");
        return None;
    };
    if !path.exists() {
        let how = "install one with scripts/install-model.sh, or pass --model FILE (a whisper.cpp ggml model)";
        if cfg.mode == CaptionMode::On || cfg.model.is_some() {
            warn!("captions off: no speech model at {}; {how}", path.display());
        } else {
            info!("captions off: no speech model at {}; {how}", path.display());
        }
        return None;
    }
    let t0 = Instant::now();
    match Transcriber::load(&path, &cfg.language, cfg.threads) {
        Ok(t) => {
            info!(
                model = %path.display(),
                ms = t0.elapsed().as_millis() as u64,
                "captions on: {}",
                t.describe()
            );
            Some(t)
        }
        Err(e) => {
            warn!("captions off: {e:#}");
            None
        }
    }
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
pub fn start(
    transcriber: Transcriber,
    track: Arc<Track>,
) -> anyhow::Result<(CaptionTap, CaptionWorker)> {
    let (tx, rx) = sync_channel::<AudioFrame>(500);
    let (text_tx, text_rx) = sync_channel::<CaptionText>(256);
    let (done_tx, done) = std::sync::mpsc::channel::<()>();
    thread::Builder::new()
        .name("captioner".into())
        .spawn(move || {
            let mut c = Captioner::new(transcriber);
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

/// The captioner's state (see the [module docs](self)).
struct Captioner {
    transcriber: Transcriber,
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
    line_open: bool,
}

impl Captioner {
    fn new(transcriber: Transcriber) -> Self {
        Self {
            transcriber,
            down: Downsampler::new(),
            vad: Vad::new(),
            agreement: LocalAgreement::new(),
            clock: SampleClock::default(),
            total: 0,
            pending: Vec::new(),
            recent: VecDeque::new(),
            utterance: None,
            samples_at_last_pass: 0,
            line_open: false,
        }
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
            if let Some((_, audio)) = &self.utterance {
                let fresh = audio.len() - self.samples_at_last_pass;
                if fresh >= STEP.as_millis() as usize * SAMPLE_RATE / 1000 {
                    self.pass(false, &mut emit);
                }
            }
        }
        if self.utterance.is_some() {
            self.pass(true, &mut emit);
        }
        debug!("captioner: audio ended");
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
            match self.vad.push_frame(&f) {
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
            if self
                .utterance
                .as_ref()
                .is_some_and(|(_, a)| a.len() >= MAX_UTTERANCE.as_secs() as usize * SAMPLE_RATE)
            {
                self.cut_long_utterance(emit);
            }
        }
        self.pending.drain(..used);
    }

    /// Transcribes the utterance so far; `last` at its end.
    fn pass(&mut self, last: bool, emit: &mut impl FnMut(CaptionText)) {
        let Some((start, audio)) = self.utterance.as_ref() else {
            return;
        };
        let start = *start;
        self.samples_at_last_pass = audio.len();
        let t0 = Instant::now();
        let words = match self.transcriber.transcribe(audio) {
            Ok(w) => w,
            Err(e) => {
                warn!("captions: {e:#}");
                Vec::new()
            }
        };
        debug!(
            audio_ms = audio.len() * 1000 / SAMPLE_RATE,
            ms = t0.elapsed().as_millis() as u64,
            last,
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
            self.agreement.update(words, audio_ms)
        };
        self.emit_words(start, &committed, emit);
        if last {
            self.utterance = None;
            self.agreement.reset();
            self.end_line(emit);
        } else if let Some(k) = self.last_sentence_end() {
            // A sentence is done: whisper no longer needs its audio (shorter passes, so less
            // delay).
            self.trim_through(k);
        } else if audio_ms > TRIM_AFTER.as_millis() as i64 {
            // A long sentence (or one whisper puts no full stop in): trim anyway after the
            // last committed word, keeping the line open, so passes stay short.
            if let Some(k) = self.agreement.committed().len().checked_sub(1) {
                self.trim_through(k);
            }
        }
    }

    /// The last committed word that ends a sentence.
    fn last_sentence_end(&self) -> Option<usize> {
        self.agreement
            .committed()
            .iter()
            .rposition(|w| w.text.ends_with(['.', '?', '!']))
    }

    /// Ends the caption line, if one is open (T.140 LINE SEPARATOR).
    fn end_line(&mut self, emit: &mut impl FnMut(CaptionText)) {
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
    /// ([`TRIM_MARGIN`] before it, or before the next word's start if that is earlier: whisper's
    /// word ends are often late, and cutting into the next word loses it).
    fn trim_through(&mut self, k: usize) {
        let c = self.agreement.committed();
        let Some(word) = c.get(k) else {
            return;
        };
        let next_start = c.get(k + 1).map_or(i64::MAX, |w| w.start_ms);
        let end_ms = word.end_ms.min(next_start) - TRIM_MARGIN.as_millis() as i64;
        let cut = self.drop_audio_front(end_ms.max(0) as usize * SAMPLE_RATE / 1000);
        self.samples_at_last_pass = self.samples_at_last_pass.saturating_sub(cut);
        self.agreement
            .trim_through(k, (cut * 1000 / SAMPLE_RATE) as i64);
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

    /// Sends committed words, stamped with the capture time of the first; a word that ends
    /// a sentence ends the caption line (a LINE SEPARATOR stamped with the word's end).
    fn emit_words(&mut self, start: u64, words: &[Word], emit: &mut impl FnMut(CaptionText)) {
        let at = |ms: i64| start + (ms.max(0) as u64) * SAMPLE_RATE as u64 / 1000;
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
                if let Some(capture) = first_ms.take().and_then(|ms| self.clock.time_of(at(ms))) {
                    emit(CaptionText {
                        capture,
                        text: std::mem::take(&mut text),
                    });
                }
                if let Some(capture) = self.clock.time_of(at(w.end_ms)) {
                    emit(CaptionText {
                        capture,
                        text: LINE_SEPARATOR.to_string(),
                    });
                }
                text.clear();
                self.line_open = false;
            }
        }
        if let Some(capture) = first_ms.and_then(|ms| self.clock.time_of(at(ms))) {
            emit(CaptionText { capture, text });
        }
    }

    /// An utterance reached [`MAX_UTTERANCE`]: keep only the audio after its last committed
    /// word (or its last 2 s if nothing was committed) and go on.
    fn cut_long_utterance(&mut self, emit: &mut impl FnMut(CaptionText)) {
        self.pass(false, emit);
        if let Some(k) = self.agreement.committed().len().checked_sub(1) {
            self.trim_through(k);
            return;
        }
        // Nothing agreed on in 12 s: keep the last 2 s.
        let len = self.utterance.as_ref().map_or(0, |(_, a)| a.len());
        self.drop_audio_front(len.saturating_sub(2 * SAMPLE_RATE));
        self.samples_at_last_pass = 0;
        self.agreement.reset();
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
}
