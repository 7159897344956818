//! Live captions end to end: English speech made with espeak-ng at test time, streamed by the
//! real livecast-server (whisper with the installed model), received by the headless player.
//!
//! Needs the speech model that `scripts/setup.sh` installs (scripts/install-model.sh) and
//! espeak-ng + sox.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use livecast_server::captions::{model, CaptionConfig, CaptionMode};
use livecast_server::source::{AudioSpec, VideoConfig};
use livecast_server::{RunningServer, ServerConfig};

/// whisper and a decoding player at once: one test at a time on a 2-core machine.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

const SENTENCES: &str = "Live captions help viewers who cannot listen to the sound. \
    The weather today is sunny with a light breeze from the west. \
    Please remember to close the door when you leave the room. \
    We will meet again next week to talk about the new project.";

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

fn installed_model() -> PathBuf {
    let p = model::default_model_path().expect("a home directory");
    assert!(
        p.exists(),
        "no speech model at {}: run scripts/install-model.sh (scripts/setup.sh does)",
        p.display()
    );
    p
}

fn start_server(
    audio: AudioSpec,
    captions: CaptionConfig,
) -> (tokio::runtime::Runtime, RunningServer) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut cfg = ServerConfig {
        captions,
        ..ServerConfig::test_sources(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            VideoConfig {
                width: 320,
                height: 240,
                fps: 30,
            },
            500_000,
        )
    };
    cfg.media.audio = audio;
    let server = rt
        .block_on(livecast_server::start(cfg))
        .expect("livecast-server starts");
    (rt, server)
}

fn captions_on(model: Option<PathBuf>) -> CaptionConfig {
    CaptionConfig {
        mode: CaptionMode::On,
        model,
        ..CaptionConfig::default()
    }
}

/// Runs the headless player for `secs` and returns its report.
fn watch(server: &RunningServer, secs: u32, dir: &Path) -> serde_json::Value {
    let json = dir.join("stats.json");
    let url = format!("rtsp://{}/live", server.listening[0]);
    let status = Command::new(env!("CARGO_BIN_EXE_livecast-player"))
        .args([
            "--headless",
            &url,
            "--no-audio",
            "--duration",
            &secs.to_string(),
        ])
        .arg("--stats-json")
        .arg(&json)
        .arg("--captions-out")
        .arg(dir.join("captions.vtt"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .expect("the player binary was built by cargo for this test");
    assert!(status.success(), "player exited with {status}");
    serde_json::from_slice(&std::fs::read(&json).expect("stats JSON written")).expect("JSON")
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .flat_map(char::to_lowercase)
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Word error rate: word-level Levenshtein distance over the reference length.
fn wer(reference: &[String], hypothesis: &[String]) -> f64 {
    let mut prev: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut cur = vec![i + 1; hypothesis.len() + 1];
        for (j, h) in hypothesis.iter().enumerate() {
            let sub = prev[j] + usize::from(r != h);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[hypothesis.len()] as f64 / reference.len().max(1) as f64
}

#[test]
fn word_error_rate_counts_edits() {
    let r = words("the cat sat on the mat");
    assert_eq!(wer(&r, &words("The cat sat on the mat.")), 0.0);
    assert!((wer(&r, &words("the cat sat on mat")) - 1.0 / 6.0).abs() < 1e-9);
    assert!((wer(&r, &words("a cat sat on the hat too")) - 3.0 / 6.0).abs() < 1e-9);
    assert_eq!(wer(&r, &[]), 1.0);
}

#[test]
fn spoken_english_arrives_as_captions_in_order() {
    let _g = one_at_a_time();
    let model = installed_model();
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw.wav");
    let wav = dir.path().join("speech.wav");
    let ok = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&raw)
        .arg(SENTENCES)
        .status()
        .expect("espeak-ng is installed (scripts/setup.sh)")
        .success();
    assert!(ok, "espeak-ng failed");
    // Two seconds of silence first (the player connects meanwhile), a long one after (the
    // file loops).
    let ok = Command::new("sox")
        .arg(&raw)
        .arg(&wav)
        .args(["pad", "2", "30"])
        .status()
        .expect("sox is installed (scripts/setup.sh)")
        .success();
    assert!(ok, "sox failed");
    let (_rt, server) = start_server(AudioSpec::File(wav), captions_on(Some(model)));
    assert!(server.captions, "the stream has a caption track");
    // Long enough for the last sentence even when whisper runs slowly on a loaded machine.
    let report = watch(&server, 40, dir.path());
    server.shutdown();

    let caps = report["captions"].as_array().expect("captions list");
    let text: Vec<&str> = caps.iter().filter_map(|c| c["text"].as_str()).collect();
    let hyp = words(&text.join(" "));
    let reference = words(SENTENCES);
    let e = wer(&reference, &hyp);
    assert!(
        e <= 0.25,
        "word error rate {:.0} %: heard {:?}",
        e * 100.0,
        text
    );
    // Cues in order, each starting after the previous one (a cue per sentence when whisper
    // punctuates them; sentences it joins with commas share a cue).
    let starts: Vec<i64> = caps.iter().filter_map(|c| c["start_ms"].as_i64()).collect();
    assert!(!caps.is_empty(), "{caps:?}");
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "{starts:?}");
    assert!(caps
        .iter()
        .all(|c| c["end_ms"].as_i64() >= c["start_ms"].as_i64()));
    // Nothing repeated: no run of three words is heard twice (the sentences have none; a
    // misheard word may still come out as two or three, so the count is only bounded loosely).
    let trigrams: Vec<&[String]> = hyp.windows(3).collect();
    let repeated = trigrams
        .iter()
        .enumerate()
        .find(|(i, t)| trigrams[i + 1..].contains(t));
    assert!(repeated.is_none(), "repeated {repeated:?}: {hyp:?}");
    assert!(hyp.len() <= reference.len() * 3 / 2, "{hyp:?}");
    // Exported as WebVTT too.
    let vtt = std::fs::read_to_string(dir.path().join("captions.vtt")).expect("--captions-out");
    assert!(vtt.starts_with("WEBVTT\n\n"));
    assert_eq!(vtt.matches(" --> ").count(), caps.len());
    // Video and audio went on meanwhile.
    assert!(report["video"]["frames_decoded"].as_u64().unwrap() > 600);
    assert_eq!(report["rtp"]["packets_lost"].as_i64(), Some(0));
}

/// `python3 scripts/NAME ARGS...` from the workspace root; panics with its stderr on failure.
fn script(name: &str, args: &[&std::ffi::OsStr]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("python3")
        .arg(root.join("scripts").join(name))
        .args(args)
        .output()
        .expect("python3 is installed");
    assert!(
        out.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `caption_evalset.py slice --out DIR ARGS...`: writes the slice's files to `dir` and returns
/// the summary it prints.
fn make_slice(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut all: Vec<&std::ffi::OsStr> = vec!["slice".as_ref(), "--out".as_ref(), dir.as_os_str()];
    all.extend(args.iter().map(std::ffi::OsStr::new));
    serde_json::from_str(&script("caption_evalset.py", &all)).expect("slice JSON")
}

/// A slice of the captions evaluation set's *test* half (sentences no policy was tuned on):
/// about 160 words, the first half read by espeak-ng with 0.3 s pauses, the rest by festival
/// with 1.5 s pauses, streamed live and scored by the benchmark's own scorer
/// (scripts/caption_metrics.py: numbers as spoken words on both sides).
#[test]
fn a_slice_of_the_test_set_read_by_two_engines() {
    let _g = one_at_a_time();
    let model = installed_model();
    let dir = tempfile::tempdir().unwrap();
    let made = make_slice(dir.path(), &["--words", "160"]);
    eprintln!("slice: {made}");
    let wav = dir.path().join("slice.wav");
    // The speech and 20 s of silence after it: stop before the file loops.
    let secs = made["seconds"].as_f64().expect("seconds") as u32 - 8;
    let (_rt, server) = start_server(AudioSpec::File(wav), captions_on(Some(model)));
    assert!(server.captions);
    let report = watch(&server, secs, dir.path());
    server.shutdown();
    let caps = report["captions"].as_array().expect("captions list");
    let text: Vec<&str> = caps.iter().filter_map(|c| c["text"].as_str()).collect();
    let hyp = dir.path().join("hyp.txt");
    std::fs::write(&hyp, text.join(" ")).unwrap();
    let scored = script(
        "caption_metrics.py",
        &[
            "wer".as_ref(),
            "--numbers".as_ref(),
            dir.path().join("slice.txt").as_os_str(),
            hyp.as_os_str(),
        ],
    );
    let r: serde_json::Value = serde_json::from_str(&scored).expect("wer JSON");
    let e = r["wer"].as_f64().unwrap();
    eprintln!(
        "slice WER {:.1} % ({} of {} words): {:?}",
        e * 100.0,
        r["errors_total"],
        r["ref_words"],
        r["errors"]
    );
    assert!(r["ref_words"].as_u64().unwrap() >= 150);
    assert!(
        e <= SLICE_WER_MAX,
        "word error rate {:.1} %: heard {text:?}",
        e * 100.0
    );
}

/// The WER bound of the slice. The test set's live figures for these two voices at these
/// pauses were 10.2 % (espeak-ng en-us, 150 wpm) and 6.8 % (festival, 165 wpm), but the slice
/// itself read 26.7 % in one CI run (the espeak-ng half with 0.3 s pauses garbled one sentence
/// on a loaded machine) and under 25 % in another: one misheard sentence moves it by 8 points.
/// The bound catches a policy or audio path that breaks (no captions, repeats, whole passages
/// lost), not a few words (docs/benchmarks.md "Live captions" has the figures that count).
const SLICE_WER_MAX: f64 = 0.35;

#[test]
fn noise_and_music_alone_give_no_captions() {
    let _g = one_at_a_time();
    let model = installed_model();
    let dir = tempfile::tempdir().unwrap();
    // the slice command also writes noise.wav and music.wav (here 15 s each)
    make_slice(dir.path(), &["--words", "5", "--no-speech-s", "15"]);
    for name in ["noise.wav", "music.wav"] {
        let (_rt, server) = start_server(
            AudioSpec::File(dir.path().join(name)),
            captions_on(Some(model.clone())),
        );
        let report = watch(&server, 13, dir.path());
        server.shutdown();
        assert_eq!(
            report["captions"],
            serde_json::json!([]),
            "{name}: {report}"
        );
        assert!(report["audio"]["frames_decoded"].as_u64().unwrap() > 400);
    }
}

#[test]
fn silence_and_beeps_give_no_captions() {
    let _g = one_at_a_time();
    let model = installed_model();
    let dir = tempfile::tempdir().unwrap();
    // The test tone: digital silence with a 50 ms beep each second.
    let (_rt, server) = start_server(AudioSpec::Tone, captions_on(Some(model)));
    assert!(server.captions);
    let report = watch(&server, 12, dir.path());
    server.shutdown();
    assert_eq!(report["captions"], serde_json::json!([]), "{report}");
    assert!(report["audio"]["frames_decoded"].as_u64().unwrap() > 400);
}

#[test]
fn missing_or_broken_model_streams_without_captions() {
    let _g = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.bin");
    let broken = dir.path().join("broken.bin");
    std::fs::write(&broken, b"ggml? no: an HTML error page").unwrap();
    for model in [missing, broken] {
        let (_rt, server) = start_server(AudioSpec::Tone, captions_on(Some(model.clone())));
        assert!(!server.captions, "{}: no caption track", model.display());
        let report = watch(&server, 3, dir.path());
        server.shutdown();
        assert!(report["video"]["frames_decoded"].as_u64().unwrap() > 30);
        assert_eq!(report["captions"], serde_json::json!([]));
    }
}
