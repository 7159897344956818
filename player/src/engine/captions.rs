//! Captions from the recorded text track, Sans-IO: T.140 blocks with their times become cues
//! (one per line of text), what to show at a playhead position, and WebVTT / SubRip files.
//!
//! A cue starts at the time of its line's first block (the moment its first word was spoken,
//! for Livecast's server) and ends at the block that ends the line (T.140 LINE SEPARATOR or
//! newline), or [`OPEN_CUE_US`] after its last block if the line is still open. On screen, a
//! cue stays [`HOLD_US`] after its end so it can be read; the last [`SHOWN_ROWS`] rows show,
//! wrapped at [`ROW_CHARS`] characters.

use std::fmt::Write as _;

use livecast_proto::codec::t140::{BACKSPACE, BOM, LINE_SEPARATOR};

/// How long a finished line stays on screen after it ends.
pub const HOLD_US: i64 = 3_000_000;
/// End of a line that is still open, after its last block.
pub const OPEN_CUE_US: i64 = 2_000_000;
/// Rows of text shown at once.
pub const SHOWN_ROWS: usize = 2;
/// Characters per row (the usual limit for broadcast subtitles).
pub const ROW_CHARS: usize = 42;

/// One line of captions and when it was spoken (µs on the recording's timeline).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cue {
    pub start_us: i64,
    pub end_us: i64,
    pub text: String,
    /// The line was ended (by a line separator); otherwise it may still grow.
    pub closed: bool,
}

/// Builds cues from text blocks `(time_us, text)` in recording order.
pub fn cues(blocks: &[(i64, String)]) -> Vec<Cue> {
    let mut out: Vec<Cue> = Vec::new();
    let mut open: Option<(i64, i64, String)> = None; // start, last block, text
    let mut after_cr = false;
    for (t, text) in blocks {
        for c in text.chars() {
            let was_cr = std::mem::take(&mut after_cr);
            match c {
                BOM => {}
                '\n' if was_cr => {}
                LINE_SEPARATOR | '\n' | '\r' => {
                    after_cr = c == '\r';
                    if let Some((start, _, s)) = open.take() {
                        let s = s.trim().to_owned();
                        if !s.is_empty() {
                            out.push(Cue {
                                start_us: start,
                                end_us: (*t).max(start),
                                text: s,
                                closed: true,
                            });
                        }
                    }
                }
                BACKSPACE => match open.as_mut() {
                    Some((_, last, s)) => {
                        s.pop();
                        *last = *t;
                    }
                    // Erasing the line break: the last cue is open again.
                    None => {
                        if let Some(c) = out.pop() {
                            open = Some((c.start_us, *t, c.text));
                        }
                    }
                },
                c if c.is_control() => {}
                c => {
                    let (_, last, s) = open.get_or_insert_with(|| (*t, *t, String::new()));
                    *last = *t;
                    s.push(c);
                }
            }
        }
    }
    if let Some((start, last, s)) = open {
        let s = s.trim().to_owned();
        if !s.is_empty() {
            out.push(Cue {
                start_us: start,
                end_us: last + OPEN_CUE_US,
                text: s,
                closed: false,
            });
        }
    }
    out
}

/// Splits `text` into rows of at most `width` characters at spaces (a longer word gets a row
/// of its own).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut rows: Vec<String> = Vec::new();
    let mut row = String::new();
    for w in text.split_whitespace() {
        if !row.is_empty() && row.chars().count() + 1 + w.chars().count() > width {
            rows.push(std::mem::take(&mut row));
        }
        if !row.is_empty() {
            row.push(' ');
        }
        row.push_str(w);
    }
    if !row.is_empty() {
        rows.push(row);
    }
    rows
}

/// The rows to show at `pos_us`, from the text blocks around it (in order): the newest
/// [`SHOWN_ROWS`] rows of the lines spoken by `pos_us` that have not ended more than
/// [`HOLD_US`] before it. A line being spoken shows only its words up to `pos_us`.
pub fn shown_at(blocks: &[(i64, String)], pos_us: i64) -> Vec<String> {
    let end = blocks.partition_point(|(t, _)| *t <= pos_us);
    let mut rows: Vec<String> = cues(&blocks[..end])
        .iter()
        .filter(|c| pos_us <= c.end_us + HOLD_US)
        .flat_map(|c| wrap(&c.text, ROW_CHARS))
        .collect();
    let n = rows.len().saturating_sub(SHOWN_ROWS);
    rows.split_off(n)
}

fn stamp(us: i64, sep: char) -> String {
    let ms = us.max(0) / 1000;
    format!(
        "{:02}:{:02}:{:02}{sep}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// WebVTT (W3C WebVTT §4): times from `origin_us` (the start of the recording).
pub fn to_webvtt(cues: &[Cue], origin_us: i64) -> String {
    let mut s = String::from("WEBVTT\n\n");
    for c in cues {
        let _ = writeln!(
            s,
            "{} --> {}\n{}\n",
            stamp(c.start_us - origin_us, '.'),
            stamp(c.end_us.max(c.start_us + 1000) - origin_us, '.'),
            escape_vtt(&c.text)
        );
    }
    s
}

/// `&`, `<` and `>` must be escaped in cue text (WebVTT §4.2.2); a line of its own saying
/// `-->` is impossible since cues are single lines with words.
fn escape_vtt(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// SubRip: numbered cues, `HH:MM:SS,mmm` times.
pub fn to_srt(cues: &[Cue], origin_us: i64) -> String {
    let mut s = String::new();
    for (i, c) in cues.iter().enumerate() {
        let _ = writeln!(
            s,
            "{}\n{} --> {}\n{}\n",
            i + 1,
            stamp(c.start_us - origin_us, ','),
            stamp(c.end_us.max(c.start_us + 1000) - origin_us, ','),
            c.text
        );
    }
    s
}

/// WebVTT or SubRip by the file's extension (`.srt` is SubRip; anything else WebVTT).
pub fn render_for_path(path: &std::path::Path, cues: &[Cue], origin_us: i64) -> String {
    let srt = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("srt"));
    if srt {
        to_srt(cues, origin_us)
    } else {
        to_webvtt(cues, origin_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(t: i64, s: &str) -> (i64, String) {
        (t, s.to_owned())
    }

    #[test]
    fn lines_become_cues() {
        let blocks = [
            b(1_000_000, "Hello"),
            b(1_600_000, " world."),
            b(2_500_000, "\u{2028}"),
            b(4_000_000, "Second lime\u{8}\u{8}ne"),
            b(4_200_000, " here"),
        ];
        let c = cues(&blocks);
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[0],
            Cue {
                start_us: 1_000_000,
                end_us: 2_500_000,
                text: "Hello world.".into(),
                closed: true
            }
        );
        assert_eq!(c[1].text, "Second line here");
        assert!(!c[1].closed);
        assert_eq!(c[1].end_us, 4_200_000 + OPEN_CUE_US);
        // A backspace right after a line break reopens the line.
        let c = cues(&[b(0, "a\u{2028}"), b(10, "\u{8}b")]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].text, "ab");
    }

    #[test]
    fn what_shows_when() {
        let blocks = [
            b(1_000_000, "one two"),
            b(2_000_000, " three\u{2028}"),
            b(10_000_000, "four"),
        ];
        let until = |pos: i64| shown_at(&blocks, pos);
        assert!(until(500_000).is_empty());
        assert_eq!(until(1_500_000), ["one two"]);
        assert_eq!(until(2_000_000), ["one two three"]);
        assert_eq!(until(4_900_000), ["one two three"]);
        assert!(until(5_100_000).is_empty(), "held 3 s after its end");
        assert_eq!(until(10_000_000), ["four"]);
    }

    #[test]
    fn wrapping_keeps_the_newest_two_rows() {
        assert_eq!(wrap("aa bb cc", 5), ["aa bb", "cc"]);
        assert_eq!(
            wrap("averyveryverylongword x", 5),
            ["averyveryverylongword", "x"]
        );
        let long =
            "the quick brown fox jumps over the lazy dog and then it runs far away into the forest";
        let rows = shown_at(&[b(0, long)], 100);
        assert_eq!(rows.len(), 2);
        assert!(rows[1].ends_with("forest"));
        assert!(rows.iter().all(|r| r.len() <= ROW_CHARS));
    }

    #[test]
    fn webvtt_and_srt() {
        let c = cues(&[
            b(10_500_000, "Hi <there> & you\u{2028}"),
            b(3_671_000_000, "x"),
        ]);
        let vtt = to_webvtt(&c, 10_000_000);
        assert!(
            vtt.starts_with(
                "WEBVTT\n\n00:00:00.500 --> 00:00:00.501\nHi &lt;there&gt; &amp; you\n\n"
            ),
            "{vtt}"
        );
        assert!(vtt.contains("01:01:01.000 --> 01:01:03.000\nx\n"), "{vtt}");
        let srt = to_srt(&c, 10_000_000);
        assert!(
            srt.starts_with(
                "1\n00:00:00,500 --> 00:00:00,501\nHi <there> & you\n\n2\n01:01:01,000"
            ),
            "{srt}"
        );
        assert_eq!(
            render_for_path(std::path::Path::new("a.SRT"), &c, 0),
            to_srt(&c, 0)
        );
    }
}
