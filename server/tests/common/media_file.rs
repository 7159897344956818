//! A media file made by ffmpeg at test time, for publishers to send: the server's tests and
//! the player's (which include this file by path) use the same one.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `dir/talk.mkv`: 4 s of H.264 (320x240, 25 fps, a keyframe a second, no B-frames: lavfi's
/// testsrc through libx264) and Opus (48 kHz, a 440 Hz sine through libopus).
pub fn h264_opus_mkv(dir: &Path) -> PathBuf {
    let mut ffmpeg = Command::new("ffmpeg");
    ffmpeg
        .args(["-nostdin", "-v", "error", "-f", "lavfi", "-i"])
        .args(["testsrc=size=320x240:rate=25", "-f", "lavfi", "-i"])
        .args(["sine=frequency=440:sample_rate=48000", "-t", "4"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
        .args(["-g", "25", "-bf", "0", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "libopus", "-b:a", "64k"]);
    make(&mut ffmpeg, dir.join("talk.mkv"))
}

/// `dir/NAME` (`.mp4`, `.mkv`, ...): 5 s of H.264 at 400x224 and 25 fps with a keyframe a
/// second (libx264, High profile, with `b_frames` B-frames between references) and AAC
/// (a 440 Hz sine), as people's files are.
pub fn h264_aac_file(dir: &Path, name: &str, b_frames: u32) -> PathBuf {
    let mut ffmpeg = Command::new("ffmpeg");
    ffmpeg
        .args(["-nostdin", "-v", "error", "-f", "lavfi", "-i"])
        .args(["testsrc=size=400x224:rate=25", "-f", "lavfi", "-i"])
        .args(["sine=frequency=440:sample_rate=44100", "-t", "5"])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-g", "25"])
        .args(["-bf", &b_frames.to_string(), "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-b:a", "96k"]);
    make(&mut ffmpeg, dir.join(name))
}

/// Runs `ffmpeg` (its inputs and options) writing `out`.
fn make(ffmpeg: &mut Command, out: PathBuf) -> PathBuf {
    let made = ffmpeg
        .arg(&out)
        .output()
        .expect("ffmpeg must be installed (the test command installs it)");
    assert!(
        made.status.success(),
        "ffmpeg could not make the input file: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    out
}
