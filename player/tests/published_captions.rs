//! Captions of a published path: ffmpeg publishes a file whose audio is speech in Opus into
//! livecast-server with captions on; the headless player reads the path and gets the caption
//! track the server made of the published audio, and the path's recording (`--record`) has
//! them as a text track and in its .vtt. A second path published meanwhile gets none (one
//! published path is captioned at once by default).
//!
//! Needs the speech model that `scripts/setup.sh` installs (scripts/install-model.sh),
//! espeak-ng, sox and ffmpeg with libx264 and libopus.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use livecast_server::captions::{model, CaptionConfig, CaptionMode};
use livecast_server::record::{RecordConfig, Recorder};
use livecast_server::rtsp_server::PublishOptions;
use livecast_server::source::VideoConfig;
use livecast_server::ServerConfig;

const SENTENCE: &str = "Please remember to close the door when you leave the room.";

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

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what} must be installed (scripts/setup.sh): {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `dir/talk.mkv`: the sentence spoken by espeak-ng after 1 s of silence and followed by 5 s
/// of it, in Opus, with H.264 video of the same length.
fn speech_mkv(dir: &Path) -> PathBuf {
    let raw = dir.join("raw.wav");
    let wav = dir.join("speech.wav");
    let out = dir.join("talk.mkv");
    run(
        Command::new("espeak-ng")
            .args(["-v", "en-us", "-s", "150", "-w"])
            .arg(&raw)
            .arg(SENTENCE),
        "espeak-ng",
    );
    run(
        Command::new("sox")
            .arg(&raw)
            .args(["-r", "48000", "-c", "2"])
            .arg(&wav)
            .args(["pad", "1", "5"]),
        "sox",
    );
    run(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-f", "lavfi", "-i"])
            .arg("testsrc=size=320x240:rate=25")
            .arg("-i")
            .arg(&wav)
            .args(["-shortest", "-c:v", "libx264", "-preset", "ultrafast"])
            .args(["-g", "25", "-bf", "0", "-pix_fmt", "yuv420p"])
            .args(["-c:a", "libopus", "-b:a", "48k"])
            .arg(&out),
        "ffmpeg",
    );
    out
}

#[test]
fn a_path_published_with_opus_speech_gets_captions() {
    let model = model::default_model_path().expect("a home directory");
    assert!(
        model.exists(),
        "no speech model at {}: run scripts/install-model.sh (scripts/setup.sh does)",
        model.display()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let input = speech_mkv(dir.path());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let small = VideoConfig {
        width: 160,
        height: 120,
        fps: 15,
    };
    let mut cfg =
        ServerConfig::test_sources("127.0.0.1:0".parse().expect("address"), small, 150_000);
    cfg.rtsp.publishers = Some(PublishOptions::default());
    cfg.captions = CaptionConfig {
        mode: CaptionMode::On,
        model: Some(model),
        ..CaptionConfig::default()
    };
    let server = rt
        .block_on(livecast_server::start(cfg))
        .expect("server starts");
    assert!(server.captions, "captions are on");
    // `--record DIR` as the binary does it for published paths.
    let rec = dir.path().join("rec");
    let (stop_recording, stopped) = tokio::sync::oneshot::channel();
    let recorder = rt.spawn(Recorder::record_published(
        RecordConfig {
            dir: rec.clone(),
            name: String::new(),
            segment: Duration::from_secs(3600),
        },
        server.rtsp.paths().clone(),
        stopped,
    ));
    let url = |path: &str| format!("rtsp://{}/{path}", server.listening[0]);
    let cam = url("cam");
    let publish = |url: &str| {
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-i"])
            .arg(&input)
            .args(["-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp", url])
            .stdin(Stdio::null())
            .spawn()
            .expect("ffmpeg")
    };
    let published = |path: &str| {
        let start = Instant::now();
        loop {
            if let Some(p) = server.rtsp.paths().get(path) {
                break p;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "ffmpeg did not publish {path}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let mut publisher = publish(&cam);
    let path = published("cam");
    assert!(path.captions, "the Opus path gets a caption track");
    assert_eq!(path.tracks.len(), path.sdp.media.len() + 1);
    // A second path while the first is captioned: served, without captions.
    let mut second = publish(&url("cam2"));
    let path2 = published("cam2");
    assert!(!path2.captions, "one published path is captioned at once");
    assert_eq!(path2.tracks.len(), path2.sdp.media.len());
    let _ = second.kill();
    let _ = second.wait();
    let json = dir.path().join("stats.json");
    // The file loops every 9 s or so: the sentence is heard two or three times.
    let status = Command::new(env!("CARGO_BIN_EXE_livecast-player"))
        .args(["--headless", &cam, "--no-audio", "--duration", "25"])
        .args(["--transport", "tcp", "--stats-json"])
        .arg(&json)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("the player binary was built by cargo for this test");
    let _ = publisher.kill();
    let _ = publisher.wait();
    assert!(status.success(), "player exited with {status}");
    // The publisher gone, the path's captioner stops with it.
    let start = Instant::now();
    while server.rtsp.paths().get("cam").is_some() {
        assert!(start.elapsed() < Duration::from_secs(10), "path not ended");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = stop_recording.send(());
    rt.block_on(recorder).expect("the recorder ends");
    server.shutdown();

    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("--stats-json")).expect("JSON");
    let caps = r["captions"].as_array().expect("captions list");
    let text: Vec<&str> = caps.iter().filter_map(|c| c["text"].as_str()).collect();
    let heard = words(&text.join(" "));
    let reference = words(SENTENCE);
    let found = reference.iter().filter(|w| heard.contains(w)).count();
    assert!(
        found * 10 >= reference.len() * 7,
        "{found} of {} words heard: {text:?}",
        reference.len()
    );
    // The recording has the captions as a text track, and in the .vtt beside it.
    let mp4: Vec<PathBuf> = std::fs::read_dir(&rec)
        .expect("the recording folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("cam-") && name.ends_with(".mp4")
        })
        .collect();
    assert_eq!(mp4.len(), 1, "{mp4:?}");
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name"])
        .args(["-of", "csv=p=0"])
        .arg(&mp4[0])
        .output()
        .expect("ffprobe");
    let codecs = String::from_utf8_lossy(&probe.stdout);
    let codecs: Vec<&str> = codecs.lines().collect();
    assert_eq!(codecs, ["h264", "opus", "mov_text"], "{}", mp4[0].display());
    let vtt = std::fs::read_to_string(mp4[0].with_extension("vtt")).expect("the .vtt");
    let in_vtt = words(&vtt);
    let found = reference.iter().filter(|w| in_vtt.contains(w)).count();
    assert!(
        found * 10 >= reference.len() * 7,
        "{found} of {} words in the .vtt: {vtt}",
        reference.len()
    );
    // The video of the path went on meanwhile.
    assert!(
        r["video"]["frames_decoded"].as_u64().unwrap_or(0) > 200,
        "{r}"
    );
}
