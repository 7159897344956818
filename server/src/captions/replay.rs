//! A lockstep replay of WAV files through the [`Captioner`], for tuning the streaming policy
//! without a server, a player or a network (`docs/benchmarks.md`, "Live captions").
//!
//! The audio is fed at the pace it would arrive live, on a simulated clock: 20 ms frames
//! become available as the clock passes their end, and each whisper pass moves the clock on by
//! the time it took (measured, times `speed`). So the passes see the same amounts of audio
//! as on a live server whose captioner thread has a core to itself, and each text block gets
//! the simulated time it would have been sent.
//!
//! ```sh
//! LIVECAST_REPLAY="town.wav weather.wav" LIVECAST_REPLAY_OUT=dir \
//! LIVECAST_REPLAY_POLICY="context=2000,snap=1,final_beam=5" \
//!   cargo test --release -p livecast-server --lib captions::replay -- --ignored --nocapture
//! ```
//!
//! writes `dir/NAME.replay.json` per file: the text blocks in the shape of
//! `scripts/caption_metrics.py rtsp-text`'s output (times in ms from the start of the WAV),
//! to score with `caption_metrics.py analyze --client dir/NAME.replay.json --clock wav`.
//! `LIVECAST_MODEL` (default: the installed model) sets the model, `LIVECAST_REPLAY_SPEED`
//! (default 1) a factor on the measured pass times, and `LIVECAST_REPLAY_COST=base,per_s,beam`
//! a deterministic cost model instead (pass ms = base + per_s × audio seconds, × beam for beam
//! search), so that runs don't depend on the machine's load.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::agreement::Word;
use super::model::SAMPLE_RATE;
use super::{model, CaptionText, Captioner, Policy, Transcribe, Transcriber};
use crate::source::wav::{WavChunker, WavReader};
use crate::source::AudioFrame;

/// `key=value,...` over [`Policy::default`]; durations in ms.
fn parse_policy(spec: &str) -> Policy {
    let mut p = Policy::default();
    for kv in spec.split(',').filter(|s| !s.trim().is_empty()) {
        let (k, v) = kv.split_once('=').expect("policy items are key=value");
        let n: u64 = v.trim().parse().expect("policy values are numbers");
        let d = Duration::from_millis(n);
        match k.trim() {
            "step" => p.step = d,
            "margin" => p.trim_margin = d,
            "trim_after" => p.trim_after = d,
            "max_utterance" => p.max_utterance = d,
            "context" => p.context = d,
            "snap" => p.snap = n != 0,
            "edge" => p.edge = d,
            "conf" => p.confident_p = n as f32 / 100.0,
            "beam" => p.beam = n as usize,
            "final_beam" => p.final_beam = n as usize,
            "pause" => p.phrase_pause = d,
            "phrase_max" => p.phrase_max = d,
            "vad_end" => p.vad_end = d,
            "speech_p" => p.speech_p = n as f32 / 100.0,
            "speech_end_p" => p.speech_end_p = n as f32 / 100.0,
            "word_pad" => p.word_pad = d,
            "lead_in" => p.lead_in = d,
            "seg" => p.speech_segments = n != 0,
            "tent" => p.tentative = n != 0,
            "show_edge" => p.show_edge = d,
            "fallback" => p.fallback = n != 0,
            other => panic!("unknown policy key {other}"),
        }
    }
    p
}

struct Block {
    text: String,
    sent_ms: f64,
    spoken_ms: f64,
}

fn ms_of(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .expect("replay times start at the epoch")
        .as_secs_f64()
        * 1000.0
}

/// The model, with a log of its passes (audio ms, beam width) for the cost model.
struct Metered {
    model: Transcriber,
    passes: Vec<(usize, usize)>,
}

impl Transcribe for Metered {
    fn transcribe(&mut self, samples: &[f32], beam: usize) -> anyhow::Result<Vec<Word>> {
        self.passes.push((samples.len() * 1000 / SAMPLE_RATE, beam));
        self.model.transcribe(samples, beam)
    }
    fn set_fallback(&mut self, on: bool) {
        self.model.set_fallback(on);
    }
}

/// How long the passes of one step take on the simulated clock.
#[derive(Clone, Copy, Debug)]
enum Cost {
    /// Measured, times a factor.
    Measured(f64),
    /// A model: `base + per_s * audio seconds` ms for a greedy pass, times `beam_factor` for
    /// beam search. Deterministic, whatever the machine's load.
    Model {
        base: f64,
        per_s: f64,
        beam_factor: f64,
    },
}

impl Cost {
    fn of(self, c: &mut Captioner<Metered>, measured_ms: f64) -> f64 {
        let passes = std::mem::take(&mut c.transcriber.passes);
        match self {
            Cost::Measured(f) => measured_ms * f,
            Cost::Model {
                base,
                per_s,
                beam_factor,
            } => passes
                .iter()
                .map(|&(audio_ms, beam)| {
                    let greedy = base + per_s * audio_ms as f64 / 1000.0;
                    if beam > 1 {
                        greedy * beam_factor
                    } else {
                        greedy
                    }
                })
                .sum(),
        }
    }
}

/// Runs `step` on the captioner, moves the simulated clock `now` on by its cost, and keeps
/// the text it sent, as sent at the new `now`.
fn timed(
    c: &mut Captioner<Metered>,
    cost: Cost,
    now: &mut f64,
    blocks: &mut Vec<Block>,
    step: impl FnOnce(&mut Captioner<Metered>, &mut Vec<CaptionText>),
) {
    let mut out = Vec::new();
    let t0 = Instant::now();
    step(c, &mut out);
    *now += cost.of(c, t0.elapsed().as_secs_f64() * 1000.0);
    blocks.extend(out.into_iter().map(|t| Block {
        spoken_ms: ms_of(t.capture),
        text: t.text,
        sent_ms: *now,
    }));
}

/// Replays one file (once, not looped); returns the blocks.
fn replay(c: &mut Captioner<Metered>, wav: &Path, cost: Cost) -> Vec<Block> {
    let reader = WavReader::open(wav).expect("replay WAV");
    let secs = reader.frames() as f64 / f64::from(reader.format().rate);
    let n = (secs * 50.0) as usize;
    let mut chunker = WavChunker::new(reader);
    let frames: Vec<AudioFrame> = (0..n)
        .map(|i| AudioFrame {
            samples: chunker.next_chunk().expect("WAV chunk"),
            capture: SystemTime::UNIX_EPOCH + Duration::from_millis(20 * i as u64),
        })
        .collect();
    let mut blocks = Vec::new();
    let mut now = 0.0f64; // simulated ms since the first sample
    let mut next = 0;
    while next < n {
        let avail = ((now / 20.0).floor() as usize).min(n);
        timed(c, cost, &mut now, &mut blocks, |c, out| {
            for f in &frames[next..avail.max(next)] {
                c.ingest(f, &mut |t| out.push(t));
            }
            c.pass_if_due(&mut |t| out.push(t));
        });
        next = next.max(avail);
        // Wait for the next frame.
        now = now.max(((next + 1) * 20) as f64);
    }
    timed(c, cost, &mut now, &mut blocks, |c, out| {
        c.finish(&mut |t| out.push(t))
    });
    blocks
}

#[test]
#[ignore = "needs a whisper model and WAV files: see the module docs"]
fn replay_files() {
    let wavs = std::env::var("LIVECAST_REPLAY").expect("LIVECAST_REPLAY=\"a.wav b.wav\"");
    let out = PathBuf::from(std::env::var("LIVECAST_REPLAY_OUT").unwrap_or_else(|_| ".".into()));
    let policy = parse_policy(&std::env::var("LIVECAST_REPLAY_POLICY").unwrap_or_default());

    let cost = match std::env::var("LIVECAST_REPLAY_COST") {
        Ok(m) => {
            let v: Vec<f64> = m.split(',').map(|x| x.trim().parse().unwrap()).collect();
            Cost::Model {
                base: v[0],
                per_s: v[1],
                beam_factor: v.get(2).copied().unwrap_or(1.0),
            }
        }
        Err(_) => Cost::Measured(
            std::env::var("LIVECAST_REPLAY_SPEED").map_or(1.0, |s| s.parse().unwrap()),
        ),
    };
    let model_path = std::env::var_os("LIVECAST_MODEL")
        .map(PathBuf::from)
        .or_else(model::default_model_path)
        .expect("a model");
    std::fs::create_dir_all(&out).unwrap();
    // The passes' debug lines (RUST_LOG=livecast_server::captions=debug) go to stderr.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    for wav in wavs.split_whitespace().map(Path::new) {
        let model = Transcriber::load(&model_path, "en", 1).expect("model");
        let metered = Metered {
            model,
            passes: Vec::new(),
        };
        let mut c = Captioner::new(metered, policy.clone());
        // The speech detector beside the model, if installed (`speech_p=101` leaves it out).
        if let Some(p) = super::speech::detector_path(&model_path).filter(|p| p.exists()) {
            let d = super::speech::Silero::load(&p).expect("speech detector");
            c.speech = Some(super::speech::SpeechTrack::new(Box::new(d)));
        }
        let blocks = replay(&mut c, wav, cost);
        let json = serde_json::json!({
            "policy": format!("{policy:?}"),
            "blocks": blocks.iter().map(|b| serde_json::json!({
                "text": b.text,
                "arrival_unix_ms": b.sent_ms,
                "spoken_unix_ms": b.spoken_ms,
            })).collect::<Vec<_>>(),
        });
        let name = wav.file_stem().unwrap().to_string_lossy().into_owned();
        let path = out.join(format!("{name}.replay.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
        let mut screen = livecast_proto::codec::t140::TextBuffer::new();
        for b in &blocks {
            screen.apply(&b.text);
        }
        let text = screen.lines().join(" | ");
        eprintln!("{name}: {}", text.replace('\u{2028}', " | "));
    }
}
