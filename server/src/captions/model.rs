//! The speech model: finding it, checking it before whisper.cpp sees it, and running it.
//!
//! whisper.cpp aborts the whole process (not an error return) on some malformed files, e.g. an
//! all-f32 `ftype` or a truncated tensor, so [`check_ggml`] walks the file's header and every
//! tensor header first: magic, plausible hyper-parameters, tensor sizes that add up to the
//! file's size exactly. A file that passes is handed to whisper-rs.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use super::agreement::Word;

/// File name of the default model, installed by `scripts/install-model.sh`.
pub const DEFAULT_MODEL_FILE: &str = "ggml-tiny.en.bin";

/// Where `scripts/install-model.sh` puts models: `$LIVECAST_MODEL_DIR`, else
/// `$XDG_DATA_HOME/livecast/models`, else `~/.local/share/livecast/models`.
pub fn default_model_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("LIVECAST_MODEL_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("livecast/models"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/livecast/models"))
}

/// The default model's path (it may not exist).
pub fn default_model_path() -> Option<PathBuf> {
    default_model_dir().map(|d| d.join(DEFAULT_MODEL_FILE))
}

/// The models `scripts/install-model.sh` installs, by the name `--model` takes for them, with
/// the option that installs each.
pub const KNOWN_MODELS: [(&str, &str); 2] = [("tiny.en", ""), ("base", " --base")];

/// The file a named model is installed as.
fn model_file(name: &str) -> String {
    format!("ggml-{name}.bin")
}

/// `--model`'s value as a path: a model's name (`tiny.en`, `base`) is its file in
/// [`default_model_dir`]; anything else is a path to a ggml file.
pub fn resolve(model: &Path) -> PathBuf {
    let name = model.to_string_lossy();
    match (
        KNOWN_MODELS.iter().find(|(n, _)| *n == name),
        default_model_dir(),
    ) {
        (Some((n, _)), Some(dir)) => dir.join(model_file(n)),
        _ => model.to_path_buf(),
    }
}

/// How to install the model at `path`: the install script's command line for a known model,
/// else a general hint.
pub fn install_hint(path: &Path) -> String {
    let file = path.file_name().map(|f| f.to_string_lossy());
    let how = match KNOWN_MODELS
        .iter()
        .find(|(n, _)| file.as_deref() == Some(model_file(n).as_str()))
    {
        Some((_, opt)) => format!("install it with scripts/install-model.sh{opt}"),
        None => "install one with scripts/install-model.sh".into(),
    };
    format!("{how}, or pass --model FILE (a whisper.cpp ggml model)")
}

/// What the header of a ggml whisper model says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    pub n_vocab: i32,
    pub n_audio_layer: i32,
    pub n_mels: i32,
    pub ftype: i32,
    pub tensors: usize,
    /// English-only models have a 51864-token vocabulary.
    pub multilingual: bool,
}

const GGML_MAGIC: u32 = 0x6767_6d6c;

fn read_i32(r: &mut impl Read) -> std::io::Result<i32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(i32::from_le_bytes(b))
}

/// Bytes per element of ggml type `t`, as (block size, bytes per block).
fn ggml_type_size(t: i32) -> Option<(u64, u64)> {
    Some(match t {
        0 => (1, 4),   // f32
        1 => (1, 2),   // f16
        2 => (32, 18), // q4_0
        3 => (32, 20), // q4_1
        6 => (32, 22), // q5_0
        7 => (32, 24), // q5_1
        8 => (32, 34), // q8_0
        _ => return None,
    })
}

/// Checks that `path` is a whole, well-formed ggml whisper model (see the module docs).
pub fn check_ggml(path: &Path) -> anyhow::Result<ModelInfo> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file.metadata()?.len();
    let mut r = BufReader::new(file);
    let bad = |what: &str| anyhow!("{} is not a whisper ggml model: {what}", path.display());
    let magic = read_i32(&mut r).map_err(|_| bad("empty file"))? as u32;
    if magic != GGML_MAGIC {
        return Err(bad(&format!(
            "magic {magic:#x}, expected 0x67676d6c (\"ggml\")"
        )));
    }
    let mut h = [0i32; 11];
    for v in &mut h {
        *v = read_i32(&mut r).map_err(|_| bad("header cut short"))?;
    }
    let [n_vocab, n_audio_ctx, n_audio_state, _n_audio_head, n_audio_layer, n_text_ctx, n_text_state, _n_text_head, n_text_layer, n_mels, ftype] =
        h;
    let plausible = (51_000..=52_000).contains(&n_vocab)
        && n_audio_ctx == 1500
        && n_text_ctx == 448
        && (64..=2048).contains(&n_audio_state)
        && (64..=2048).contains(&n_text_state)
        && (1..=64).contains(&n_audio_layer)
        && (1..=64).contains(&n_text_layer)
        && (n_mels == 80 || n_mels == 128);
    if !plausible {
        return Err(bad(&format!("implausible hyper-parameters {h:?}")));
    }
    // whisper.cpp aborts on ftype 0 (all f32); f16 and the quantized types load.
    if !matches!(ftype % 1000, 1..=3 | 7..=9) {
        return Err(bad(&format!("unsupported ftype {ftype}")));
    }
    let filt_mels = read_i32(&mut r)?;
    let filt_fft = read_i32(&mut r)?;
    if filt_mels != n_mels || !(1..=1024).contains(&filt_fft) {
        return Err(bad("mel filter header"));
    }
    r.seek(SeekFrom::Current(
        i64::from(filt_mels) * i64::from(filt_fft) * 4,
    ))?;
    let n_tokens = read_i32(&mut r).map_err(|_| bad("vocabulary cut short"))?;
    if !(0..=n_vocab).contains(&n_tokens) {
        return Err(bad("vocabulary size"));
    }
    for _ in 0..n_tokens {
        let len = read_i32(&mut r).map_err(|_| bad("vocabulary cut short"))?;
        if !(0..=1024).contains(&len) {
            return Err(bad("token length"));
        }
        r.seek(SeekFrom::Current(i64::from(len)))?;
    }
    let mut tensors = 0;
    loop {
        let pos = r.stream_position()?;
        if pos == size {
            break;
        }
        let (n_dims, name_len, ttype) = (read_i32(&mut r), read_i32(&mut r), read_i32(&mut r));
        let (Ok(n_dims), Ok(name_len), Ok(ttype)) = (n_dims, name_len, ttype) else {
            return Err(bad(&format!("tensor header cut short at byte {pos}")));
        };
        if !(1..=4).contains(&n_dims) || !(1..=256).contains(&name_len) {
            return Err(bad(&format!("tensor header at byte {pos}")));
        }
        let mut elements = 1u64;
        for _ in 0..n_dims {
            let d = read_i32(&mut r).map_err(|_| bad("tensor dims cut short"))?;
            if d <= 0 {
                return Err(bad(&format!("tensor dimension {d} at byte {pos}")));
            }
            elements = elements.saturating_mul(d as u64);
        }
        let (block, bytes) =
            ggml_type_size(ttype).ok_or_else(|| bad(&format!("tensor type {ttype}")))?;
        let data = elements.div_ceil(block).saturating_mul(bytes);
        let end = r
            .stream_position()?
            .saturating_add(name_len as u64)
            .saturating_add(data);
        if end > size {
            return Err(bad(&format!(
                "truncated: a tensor needs {} more bytes than the file has",
                end - size
            )));
        }
        r.seek(SeekFrom::Start(end))?;
        tensors += 1;
    }
    if tensors < 10 {
        return Err(bad(&format!("only {tensors} tensors")));
    }
    Ok(ModelInfo {
        n_vocab,
        n_audio_layer,
        n_mels,
        ftype,
        tensors,
        multilingual: n_vocab >= 51_865,
    })
}

/// A loaded model and its decoding state.
pub struct Transcriber {
    /// Shared by every [`Transcriber::share`] of it: the weights are loaded once.
    ctx: std::sync::Arc<WhisperContext>,
    state: WhisperState,
    language: String,
    threads: i32,
    eot: i32,
    /// Decode again at higher temperatures when a pass fails whisper's own checks (see
    /// [`Transcriber::set_fallback`]).
    fallback: bool,
    pub info: ModelInfo,
}

/// A loaded model without a state of its own: see [`Transcriber::source`].
#[derive(Clone)]
pub struct TranscriberSource {
    ctx: std::sync::Arc<WhisperContext>,
    language: String,
    threads: i32,
    eot: i32,
    info: ModelInfo,
}

impl TranscriberSource {
    /// A transcriber on the shared model with a state of its own (whisper's buffers for one
    /// stream of passes).
    pub fn transcriber(&self) -> anyhow::Result<Transcriber> {
        let state = self
            .ctx
            .create_state()
            .map_err(|e| anyhow!("whisper state: {e}"))?;
        Ok(Transcriber {
            ctx: self.ctx.clone(),
            state,
            language: self.language.clone(),
            threads: self.threads,
            eot: self.eot,
            fallback: false,
            info: self.info.clone(),
        })
    }
}

/// whisper.cpp's 16 kHz input rate.
pub const SAMPLE_RATE: usize = 16_000;

/// A segment whose no-speech probability is above this is dropped (whisper on silence).
const NO_SPEECH_MAX: f32 = 0.6;
/// A segment whose mean token probability is below this is dropped (guessing on noise).
const MEAN_TOKEN_P_MIN: f32 = 0.35;
/// A word of more tokens than this is a decoding loop glued into one word (beam search on a
/// fast Scottish voice gave "3,2,2,1,3,3,1,3,1,3,..." of 200 tokens); real words, numbers
/// with separators included, take far fewer.
const MAX_WORD_TOKENS: usize = 16;

impl Transcriber {
    /// Checks and loads the model. `language` is `en`, `auto` or a language code; an
    /// English-only model only takes `en` (or `auto`, meaning English).
    pub fn load(path: &Path, language: &str, threads: usize) -> anyhow::Result<Self> {
        let info = check_ggml(path)?;
        if !info.multilingual && language != "en" && language != "auto" {
            bail!(
                "{} is an English-only model; --language {language} needs a multilingual one",
                path.display()
            );
        }
        whisper_rs::install_logging_hooks();
        let ctx = WhisperContext::new_with_params(path, WhisperContextParameters::default())
            .map_err(|e| anyhow!("whisper could not load {}: {e}", path.display()))?;
        let state = ctx
            .create_state()
            .map_err(|e| anyhow!("whisper state: {e}"))?;
        let eot = ctx.token_eot();
        let language = if info.multilingual {
            language.to_owned()
        } else {
            "en".to_owned()
        };
        Ok(Self {
            ctx: std::sync::Arc::new(ctx),
            state,
            language,
            threads: threads.clamp(1, 16) as i32,
            eot,
            fallback: false,
            info,
        })
    }

    /// What makes more transcribers on this loaded model ([`TranscriberSource::transcriber`]),
    /// for other streams to caption: the weights are shared, not loaded again.
    pub fn source(&self) -> TranscriberSource {
        TranscriberSource {
            ctx: self.ctx.clone(),
            language: self.language.clone(),
            threads: self.threads,
            eot: self.eot,
            info: self.info.clone(),
        }
    }

    /// Transcribes `samples` (16 kHz mono) into words with times in ms from its start, with
    /// greedy decoding (`beam` 1) or beam search over `beam` candidates.
    /// Segments whisper itself marks as probably not speech, or guesses at, are left out,
    /// as are non-speech annotations such as `[BLANK_AUDIO]` or `(music)`.
    pub fn transcribe(&mut self, samples: &[f32], beam: usize) -> anyhow::Result<Vec<Word>> {
        let strategy = if beam > 1 {
            SamplingStrategy::BeamSearch {
                beam_size: beam.min(8) as i32,
                patience: -1.0,
            }
        } else {
            SamplingStrategy::Greedy { best_of: 1 }
        };
        let mut p = FullParams::new(strategy);
        p.set_n_threads(self.threads);
        p.set_language(Some(if self.language == "auto" {
            "auto"
        } else {
            &self.language
        }));
        p.set_translate(false);
        p.set_no_context(true);
        p.set_single_segment(false);
        p.set_print_special(false);
        p.set_print_progress(false);
        p.set_print_realtime(false);
        p.set_print_timestamps(false);
        p.set_token_timestamps(true);
        p.set_suppress_blank(true);
        p.set_suppress_nst(true);
        p.set_no_speech_thold(NO_SPEECH_MAX);
        if self.fallback {
            p.set_temperature_inc(0.2);
            p.set_entropy_thold(2.4);
            p.set_logprob_thold(-1.0);
        } else {
            // No fallback re-decoding: keeps each pass's time bounded.
            p.set_temperature_inc(0.0);
        }
        // The encoder's cost is proportional to its context: give it just the audio there is
        // (50 frames per second) plus a margin, instead of always 30 s.
        let secs = samples.len() as f32 / SAMPLE_RATE as f32;
        let audio_ctx = (((secs + 1.0) * 50.0) as i32).clamp(256, 1500);
        p.set_audio_ctx(audio_ctx);
        // whisper needs at least 1 s; pad short utterances with silence.
        let mut padded;
        let input = if samples.len() < SAMPLE_RATE + SAMPLE_RATE / 10 {
            padded = samples.to_vec();
            padded.resize(SAMPLE_RATE + SAMPLE_RATE / 10, 0.0);
            &padded[..]
        } else {
            samples
        };
        self.state
            .full(p, input)
            .map_err(|e| anyhow!("whisper: {e}"))?;
        let mut words: Vec<Word> = Vec::new();
        let (mut word_tokens, mut looped) = (0, false);
        for seg in self.state.as_iter() {
            let no_speech = seg.no_speech_probability();
            if no_speech > NO_SPEECH_MAX {
                tracing::trace!(no_speech, "segment dropped: probably not speech");
                continue;
            }
            let mut toks = Vec::new();
            for i in 0..seg.n_tokens() {
                let Some(t) = seg.get_token(i) else { continue };
                if t.token_id() >= self.eot {
                    continue;
                }
                let d = t.token_data();
                let text = t.to_str_lossy().map(|s| s.into_owned()).unwrap_or_default();
                toks.push((text, d.p, d.t0 * 10, d.t1 * 10));
            }
            if toks.is_empty() {
                continue;
            }
            let mean_p = toks.iter().map(|t| t.1).sum::<f32>() / toks.len() as f32;
            if mean_p < MEAN_TOKEN_P_MIN {
                tracing::trace!(no_speech, mean_p, "segment dropped: a guess");
                continue;
            }
            tracing::trace!(no_speech, mean_p, tokens = toks.len(), "segment kept");
            let seg_start = words.len();
            for (text, tp, t0, t1) in toks {
                let starts_word = text.starts_with(' ') || words.len() == seg_start;
                let piece = text.trim();
                if piece.is_empty() {
                    continue;
                }
                match words.last_mut() {
                    Some(w) if !starts_word => {
                        w.text.push_str(piece);
                        w.end_ms = w.end_ms.max(t1);
                        w.p = w.p.min(tp);
                        word_tokens += 1;
                    }
                    _ => {
                        words.push(Word {
                            p: tp,
                            ..Word::new(piece, t0, t1.max(t0))
                        });
                        word_tokens = 1;
                    }
                }
                if word_tokens > MAX_WORD_TOKENS {
                    // A decoding loop inside one "word" ("3,1,3,1,3,..."): it and what
                    // follows are dropped.
                    tracing::debug!("decoding loop inside a word: dropped");
                    words.pop();
                    looped = true;
                    break;
                }
            }
            if looped {
                break;
            }
        }
        // Drop annotations like [BLANK_AUDIO], (music), *laughs*.
        words.retain(|w| {
            let t = w.text.as_str();
            !(t.starts_with('[')
                || t.starts_with('(')
                || t.starts_with('*')
                || t.ends_with(']')
                || t.ends_with(')'))
        });
        drop_repetition_loop(&mut words);
        Ok(words)
    }

    /// With `on`, a pass whose decoding fails whisper's checks (average log probability below
    /// -1, or a repetitive text: entropy below 2.4) is decoded again at temperature 0.2, 0.4,
    /// ... as whisper-cli does by default; without, each pass decodes once (bounded time).
    pub fn set_fallback(&mut self, on: bool) {
        self.fallback = on;
    }

    /// The model's description for logs.
    pub fn describe(&self) -> String {
        let kind = self
            .ctx
            .model_type_readable_str_lossy()
            .map(|s| s.into_owned())
            .unwrap_or_else(|_| "?".into());
        format!(
            "whisper {kind}{} ({} thread{}, language {})",
            if self.info.multilingual { "" } else { ".en" },
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.language
        )
    }
}

/// Cuts a decoding loop: whisper sometimes repeats the last phrase over and over (at the end
/// of the audio, all with the same time). A run of 4 or more words said again right after
/// itself, or a shorter one said three times in a row, is kept once and what follows is dropped.
fn drop_repetition_loop(words: &mut Vec<Word>) {
    let norm: Vec<String> = words
        .iter()
        .map(|w| {
            w.text
                .chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect()
        })
        .collect();
    let n = norm.len();
    for i in 0..n {
        for len in 1..=(n - i) / 2 {
            let copies = if len >= 4 { 2 } else { 3 };
            if i + copies * len > n {
                continue;
            }
            let first = &norm[i..i + len];
            if (1..copies).all(|c| &norm[i + c * len..i + (c + 1) * len] == first) {
                words.truncate(i + len);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_files_in_the_model_folder() {
        // (LIVECAST_MODEL_DIR is not set by the tests; the folder is the default one.)
        let dir = default_model_dir().expect("a home directory");
        assert_eq!(resolve(Path::new("base")), dir.join("ggml-base.bin"));
        assert_eq!(resolve(Path::new("tiny.en")), dir.join("ggml-tiny.en.bin"));
        assert_eq!(resolve(Path::new("my.bin")), Path::new("my.bin"));
        assert_eq!(resolve(Path::new("/m/base")), Path::new("/m/base"));
        assert!(install_hint(&dir.join("ggml-base.bin")).contains("install-model.sh --base"));
        assert!(install_hint(Path::new("x.bin")).contains("pass --model FILE"));
    }

    #[test]
    fn repetition_loops_are_cut() {
        let ws = |s: &str| -> Vec<Word> {
            s.split_whitespace()
                .enumerate()
                .map(|(i, w)| Word::new(w, 100 * i as i64, 100 * i as i64 + 80))
                .collect()
        };
        let text = |w: &[Word]| {
            w.iter()
                .map(|w| w.text.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut w = ws("let it cool before you cut it. Let it cool before you cut it. Let it");
        drop_repetition_loop(&mut w);
        assert_eq!(text(&w), "let it cool before you cut it.");
        let mut w = ws("cut it. cut it. cut it. cut");
        drop_repetition_loop(&mut w);
        assert_eq!(text(&w), "cut it.");
        // Ordinary repeats stay.
        for s in [
            "that that is",
            "no, no, we will",
            "very very good very very",
        ] {
            let mut w = ws(s);
            drop_repetition_loop(&mut w);
            assert_eq!(text(&w), s);
        }
    }

    fn header(ftype: i32) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [
            GGML_MAGIC as i32,
            51864,
            1500,
            384,
            6,
            4,
            448,
            384,
            6,
            4,
            80,
            ftype,
            80,
            2,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend(std::iter::repeat_n(0u8, 80 * 2 * 4)); // filters
        b.extend_from_slice(&1i32.to_le_bytes());
        b.extend_from_slice(&1i32.to_le_bytes());
        b.push(b'a');
        b
    }

    fn tensor(b: &mut Vec<u8>, name: &str, dims: &[i32], ttype: i32) {
        b.extend_from_slice(&(dims.len() as i32).to_le_bytes());
        b.extend_from_slice(&(name.len() as i32).to_le_bytes());
        b.extend_from_slice(&ttype.to_le_bytes());
        for d in dims {
            b.extend_from_slice(&d.to_le_bytes());
        }
        b.extend_from_slice(name.as_bytes());
        let n: i32 = dims.iter().product();
        b.extend(std::iter::repeat_n(
            0u8,
            n as usize * if ttype == 0 { 4 } else { 2 },
        ));
    }

    #[test]
    fn model_files_are_checked_before_whisper_sees_them() {
        let dir = tempfile::tempdir().unwrap();
        let good = {
            let mut b = header(1);
            for i in 0..12 {
                tensor(
                    &mut b,
                    &format!("t{i}"),
                    &[4, 3],
                    if i % 2 == 0 { 1 } else { 0 },
                );
            }
            b
        };
        let write = |name: &str, data: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, data).unwrap();
            p
        };
        let info = check_ggml(&write("good.bin", &good)).unwrap();
        assert_eq!(info.tensors, 12);
        assert!(!info.multilingual);
        let err = |p: PathBuf| check_ggml(&p).unwrap_err().to_string();
        assert!(err(dir.path().join("missing.bin")).contains("cannot open"));
        assert!(err(write("empty.bin", b"")).contains("empty file"));
        assert!(err(write("text.bin", b"<html>not found</html>")).contains("magic"));
        assert!(err(write("cut.bin", &good[..good.len() - 5])).contains("truncated"));
        assert!(err(write("cut2.bin", &good[..good.len() - 40])).contains("tensor"));
        let mut f32_model = good.clone();
        f32_model[44..48].copy_from_slice(&0i32.to_le_bytes());
        assert!(err(write("f32.bin", &f32_model)).contains("ftype 0"));
        let mut extra = good.clone();
        extra.extend_from_slice(&[1, 2, 3]);
        assert!(err(write("extra.bin", &extra)).contains("tensor header"));
    }
}
