//! Captions from the recorded text track, Sans-IO: T.140 blocks with their times become cues
//! (one per line of text), what to show at a playhead position, and WebVTT / SubRip files.
//!
//! A cue starts at the time of its line's first block (the moment its first word was spoken,
//! for Livecast's server) and ends at the block that ends the line (T.140 LINE SEPARATOR or
//! newline), or [`OPEN_CUE_US`] after its last block if the line is still open. On screen, a
//! cue stays [`HOLD_US`] after its end so it can be read; the last [`SHOWN_ROWS`] rows show,
//! wrapped at [`ROW_CHARS`] characters.

use std::fmt::Write as _;

use livecast_proto::codec::t140::{Edit, TextBuffer};

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

/// When a line of the text buffer was written.
#[derive(Clone, Copy, Debug)]
struct LineTimes {
    /// The block that typed its first character.
    start: Option<i64>,
    /// The last block that changed it.
    last: i64,
    /// The block that ended it, while it stays ended.
    end: Option<i64>,
}

/// Cues built block by block: T.140 editing is [`TextBuffer`]'s, and this keeps the times of
/// each of its lines.
#[derive(Clone, Debug, Default)]
pub struct CueBuilder {
    text: TextBuffer,
    /// One per line of `text`.
    times: Vec<LineTimes>,
}

impl CueBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies a block of text recorded at `t` (µs).
    pub fn push(&mut self, t: i64, text: &str) {
        let times = &mut self.times;
        if times.is_empty() {
            times.push(LineTimes {
                start: None,
                last: t,
                end: None,
            });
        }
        self.text.apply_edits(text, |edit| {
            let line = times.last_mut().expect("one line at least");
            match edit {
                Edit::Typed(_) => {
                    line.start.get_or_insert(t);
                    line.last = t;
                }
                Edit::Erased => line.last = t,
                Edit::LineEnded => {
                    line.end = Some(t);
                    times.push(LineTimes {
                        start: None,
                        last: t,
                        end: None,
                    });
                }
                Edit::LineJoined => {
                    times.pop();
                    let line = times.last_mut().expect("a line was joined to one before");
                    line.end = None;
                    line.last = t;
                }
            }
        });
    }

    /// The cues so far: one per line with text, the last one possibly still open.
    pub fn cues(&self) -> Vec<Cue> {
        self.text
            .lines()
            .iter()
            .zip(&self.times)
            .filter_map(|(text, times)| {
                let text = text.trim();
                let start = times.start?;
                if text.is_empty() {
                    return None;
                }
                Some(Cue {
                    start_us: start,
                    end_us: match times.end {
                        Some(end) => end.max(start),
                        None => times.last + OPEN_CUE_US,
                    },
                    text: text.to_owned(),
                    closed: times.end.is_some(),
                })
            })
            .collect()
    }
}

/// Builds cues from text blocks `(time_us, text)` in recording order.
pub fn cues(blocks: &[(i64, String)]) -> Vec<Cue> {
    let mut b = CueBuilder::new();
    for (t, text) in blocks {
        b.push(*t, text);
    }
    b.cues()
}

/// Chat messages from T.140 blocks: a line becomes a message when it ends. Editing is
/// [`TextBuffer`]'s; a backspace that erases a message's line break reopens it, and it is
/// given again, edited, when it ends again.
#[derive(Clone, Debug, Default)]
pub struct ChatLines {
    text: TextBuffer,
    /// The line being written and when its first character was sent.
    line: (String, Option<i64>),
    /// The last line ended, for a backspace that reopens it.
    ended: (String, Option<i64>),
}

impl ChatLines {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies a block sent at `sent_us`; returns the messages it ended, with the time
    /// their first character was sent.
    pub fn push(&mut self, sent_us: i64, text: &str) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        let (line, ended) = (&mut self.line, &mut self.ended);
        self.text.apply_edits(text, |edit| match edit {
            Edit::Typed(c) => {
                line.0.push(c);
                line.1.get_or_insert(sent_us);
            }
            Edit::Erased => {
                line.0.pop();
            }
            Edit::LineEnded => {
                *ended = std::mem::take(line);
                if !ended.0.trim().is_empty() {
                    out.push((ended.0.clone(), ended.1.unwrap_or(sent_us)));
                }
            }
            Edit::LineJoined => *line = std::mem::take(ended),
        });
        out
    }
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
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

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

    fn texts(c: &[Cue]) -> Vec<&str> {
        c.iter().map(|c| c.text.as_str()).collect()
    }

    /// T.140 editing is proto's `TextBuffer`'s: the cues are its non-empty lines.
    #[test]
    fn cues_follow_the_text_buffer() {
        // Two line breaks, then two backspaces: the second break and the first go, the space
        // the first line ended in stays. (Cues built on their own trimmed each line as it
        // ended and kept no empty one, so these backspaces reopened "a", erased it and gave
        // "b".)
        let c = cues(&[b(0, "a \u{2028}"), b(10, "\u{2028}"), b(20, "\u{8}\u{8}b")]);
        assert_eq!(texts(&c), ["a b"]);
        assert_eq!((c[0].start_us, c[0].closed), (0, false));
        // A backspace on a line its own backspaces emptied erases the line break (it was
        // ignored: "a", "b").
        let c = cues(&[b(0, "a\u{2028}"), b(10, "x\u{8}\u{8}b")]);
        assert_eq!(texts(&c), ["ab"]);
        // CR LF split across blocks is one line break; a BOM is ignored; a multi-byte
        // character is erased whole.
        let c = cues(&[b(0, "\u{FEFF}né\r"), b(10, "\nx\u{8}\u{8}\u{8}e")]);
        assert_eq!(texts(&c), ["ne"]);
        // Any sequence: the same lines as the text buffer.
        let mut rng = StdRng::seed_from_u64(0x7140);
        let alphabet = [
            'a', 'é', ' ', '\u{8}', '\u{2028}', '\r', '\n', '\u{FEFF}', '\u{7}',
        ];
        for _ in 0..500 {
            let blocks: Vec<(i64, String)> = (0..rng.random_range(1..8))
                .map(|i| {
                    let n = rng.random_range(0..6);
                    let s = (0..n)
                        .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                        .collect();
                    (i * 1000, s)
                })
                .collect();
            let mut screen = TextBuffer::new();
            for (_, text) in &blocks {
                screen.apply(text);
            }
            assert_eq!(
                texts(&cues(&blocks)),
                screen.last_lines(usize::MAX),
                "{blocks:?}"
            );
        }
    }

    #[test]
    fn chat_lines_end_at_line_breaks() {
        let mut c = ChatLines::new();
        assert!(c.push(1, "hel").is_empty());
        assert_eq!(c.push(2, "lo\r"), [("hello".to_owned(), 1)]);
        // The LF of CR LF (in the next block) ends nothing more; an empty line is no message.
        assert!(c.push(3, "\n\u{2028}").is_empty());
        // A lone CR ends a line, as LF and LINE SEPARATOR do. (Chat kept CR as text and
        // trimmed it only at the line's end, so "a\rb\n" gave one message "a\rb".)
        assert_eq!(
            c.push(4, "a\rb\n"),
            [("a".to_owned(), 4), ("b".to_owned(), 4)]
        );
        // A backspace on the empty line erases the line break: "b" is open again.
        assert_eq!(c.push(5, "\u{8}é!\u{2028}"), [("bé!".to_owned(), 4)]);
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
