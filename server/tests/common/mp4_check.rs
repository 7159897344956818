//! What the real programs say about an MP4 file: ffprobe's streams and durations, and whether
//! ffmpeg decodes it without a word at `-v error`. The player's export tests include this file
//! by path.

use std::path::Path;
use std::process::Command;

/// ffprobe's streams: (codec_name, duration in s) each.
pub fn probe(file: &Path) -> Vec<(String, f64)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name,duration"])
        .args(["-of", "compact=p=0:nk=1"])
        .arg(file)
        .output()
        .expect("ffprobe is installed (scripts/setup.sh)");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (name, d) = l.split_once('|').expect("codec|duration");
            (name.to_owned(), d.parse().unwrap_or(f64::NAN))
        })
        .collect()
}

/// ffmpeg decodes every stream of `file` and reports no error.
pub fn decodes_cleanly(file: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg is installed (scripts/setup.sh)");
    assert!(out.status.success(), "ffmpeg failed on {}", file.display());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "ffmpeg errors decoding {}",
        file.display()
    );
}
