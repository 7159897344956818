//! Real-time text over RTP (RFC 4103): T.140 blocks (UTF-8 text, ITU-T T.140) with a 1000 Hz
//! RTP clock, optionally protected by RFC 2198 redundancy (`red/1000`), as RFC 4103 §4
//! recommends.
//!
//! - [`RedPacketizer`] makes the payloads a sender puts on the wire: each packet carries the
//!   new text (the primary block) plus copies of the previous `generations` blocks, so a
//!   receiver can rebuild up to `generations` consecutive lost packets (RFC 4103 §4.1).
//! - [`Depacketizer`] takes plain `t140` or `red` payloads and gives back the T.140 blocks in
//!   order, recovering lost ones from the redundancy of the next packet that arrives.
//! - [`TextBuffer`] applies T.140 text to a screen of lines: BACKSPACE (U+0008) erases,
//!   LINE SEPARATOR (U+2028), CR LF, LF and a lone CR start a new line, the BOM (U+FEFF) is ignored
//!   (T.140 §5, RFC 4103 §4.2 and §5); [`TextBuffer::apply_edits`] also says what each
//!   character did, for receivers that keep something per line.
//!
//! The RTP timestamp of a block is the time its text refers to. Livecast's captioner stamps a
//! caption with the moment its first word was *spoken*, on the audio's wall clock, so a player
//! can put it at the right place on its timeline; RFC 4103 only asks for a 1000 Hz clock.

use std::collections::VecDeque;
use std::fmt;

/// RTP clock rate of `t140` and of `red` carrying it (RFC 4103 §6).
pub const CLOCK_RATE: u32 = 1000;
/// Starts a new line (T.140 §5.2 "LINE SEPARATOR").
pub const LINE_SEPARATOR: char = '\u{2028}';
/// Erases the last character (T.140 §5.5).
pub const BACKSPACE: char = '\u{0008}';
/// Byte order mark, sent by some senders as the first character; ignored (T.140 §5.4).
pub const BOM: char = '\u{FEFF}';
/// RFC 2198 header of a redundant block: F bit, block PT (7), timestamp offset (14), length (10).
const RED_HEADER_LEN: usize = 4;
/// Largest timestamp offset (14 bits) and block length (10 bits) a RED header can carry.
const MAX_RED_OFFSET: u32 = (1 << 14) - 1;
const MAX_RED_BLOCK: usize = (1 << 10) - 1;

/// One T.140 block: text and the RTP timestamp (1000 Hz) it was sent with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextBlock {
    pub timestamp: u32,
    pub text: String,
}

/// Builds RFC 2198 `red` payloads with `generations` redundant copies (RFC 4103 §4.1).
///
/// Call [`packetize`](Self::packetize) for every packet sent, with the new text or with an
/// empty string: after text, a sender keeps sending empty-primary packets until the last text
/// has gone out `generations` more times (RFC 4103 §5.2: "idle" transmission), which
/// [`needs_idle_packet`](Self::needs_idle_packet) says.
#[derive(Clone, Debug)]
pub struct RedPacketizer {
    t140_pt: u8,
    generations: usize,
    /// The last `generations` primaries, oldest first.
    history: VecDeque<(u32, Vec<u8>)>,
}

impl RedPacketizer {
    /// `t140_pt` is the payload type of the `t140` format inside the redundancy.
    pub fn new(t140_pt: u8, generations: usize) -> Self {
        Self {
            t140_pt: t140_pt & 0x7f,
            generations,
            history: VecDeque::with_capacity(generations + 1),
        }
    }

    /// Whether text sent recently has not yet been repeated `generations` times.
    pub fn needs_idle_packet(&self) -> bool {
        self.history.iter().any(|(_, b)| !b.is_empty())
    }

    /// The `red` payload for a packet with timestamp `timestamp` whose new text is `text`
    /// (empty for an idle packet). Blocks whose timestamp offset or length would not fit the
    /// RFC 2198 header (older than 16.383 s, longer than 1023 bytes) are sent empty.
    pub fn packetize(&mut self, timestamp: u32, text: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + text.len() * (self.generations + 1));
        let blocks: Vec<(u32, &[u8])> = self
            .history
            .iter()
            .map(|(ts, data)| {
                let offset = timestamp.wrapping_sub(*ts);
                if offset > MAX_RED_OFFSET || data.len() > MAX_RED_BLOCK {
                    (0, &[][..])
                } else {
                    (offset, data.as_slice())
                }
            })
            .collect();
        for (offset, data) in &blocks {
            let word =
                (1u32 << 31) | (u32::from(self.t140_pt) << 24) | (offset << 10) | data.len() as u32;
            out.extend_from_slice(&word.to_be_bytes());
        }
        out.push(self.t140_pt);
        for (_, data) in &blocks {
            out.extend_from_slice(data);
        }
        out.extend_from_slice(text.as_bytes());
        if self.generations > 0 {
            if self.history.len() == self.generations {
                self.history.pop_front();
            }
            self.history
                .push_back((timestamp, text.as_bytes().to_vec()));
        }
        out
    }
}

/// Why a payload was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DepacketizeError {
    /// A RED header or block runs past the end of the payload.
    TruncatedRed,
    /// A RED block carries a payload type other than `t140`.
    UnexpectedRedBlock(u8),
    /// Neither the `t140` nor the `red` payload type.
    UnknownPayloadType(u8),
}

impl fmt::Display for DepacketizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TruncatedRed => f.write_str("T.140: truncated RFC 2198 redundancy header"),
            Self::UnexpectedRedBlock(pt) => {
                write!(f, "T.140: redundant block of payload type {pt}, not t140")
            }
            Self::UnknownPayloadType(pt) => write!(f, "T.140: unexpected payload type {pt}"),
        }
    }
}

impl std::error::Error for DepacketizeError {}

/// Receives `t140` and `red` payloads in sequence order (gaps allowed) and yields T.140 blocks,
/// recovering from redundancy what lost packets carried.
#[derive(Clone, Debug)]
pub struct Depacketizer {
    t140_pt: u8,
    red_pt: Option<u8>,
    last_seq: Option<u16>,
    /// Blocks that were lost and not recovered (RFC 4103 §5.4 would show a mark for them).
    pub lost_blocks: u64,
}

impl Depacketizer {
    pub fn new(t140_pt: u8, red_pt: Option<u8>) -> Self {
        Self {
            t140_pt,
            red_pt,
            last_seq: None,
            lost_blocks: 0,
        }
    }

    /// The sequence number of the first packet to come (RTSP `RTP-Info: seq=`, RFC 2326
    /// §12.33), so that text in a lost first packet is recovered from the next ones'
    /// redundancy. Ignored once packets have arrived.
    pub fn expect_first(&mut self, seq: u16) {
        if self.last_seq.is_none() {
            self.last_seq = Some(seq.wrapping_sub(1));
        }
    }

    /// One packet. Returns the blocks it brings, oldest first: recovered ones (for packets
    /// lost just before it) and its primary. Empty blocks are left out.
    pub fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        payload_type: u8,
        payload: &[u8],
    ) -> Result<Vec<TextBlock>, DepacketizeError> {
        let missing = match self.last_seq {
            Some(last) => {
                let d = seq.wrapping_sub(last);
                if d == 0 || d > 0x8000 {
                    // A duplicate or an old packet: already handled.
                    return Ok(Vec::new());
                }
                usize::from(d - 1)
            }
            None => 0,
        };
        let blocks = if payload_type == self.t140_pt {
            vec![(timestamp, payload)]
        } else if Some(payload_type) == self.red_pt {
            parse_red(self.t140_pt, timestamp, payload)?
        } else {
            return Err(DepacketizeError::UnknownPayloadType(payload_type));
        };
        self.last_seq = Some(seq);
        // blocks = [redundant..., primary]; the last `missing` redundant ones belong to the
        // lost packets.
        let redundant = blocks.len() - 1;
        let recovered = missing.min(redundant);
        self.lost_blocks += (missing - recovered) as u64;
        Ok(blocks[redundant - recovered..]
            .iter()
            .filter(|(_, data)| !data.is_empty())
            .map(|(ts, data)| TextBlock {
                timestamp: *ts,
                text: String::from_utf8_lossy(data).into_owned(),
            })
            .collect())
    }
}

/// Splits a `red` payload into `(timestamp, data)` blocks, redundant ones first.
fn parse_red(
    t140_pt: u8,
    timestamp: u32,
    payload: &[u8],
) -> Result<Vec<(u32, &[u8])>, DepacketizeError> {
    let mut headers = Vec::new();
    let mut pos = 0;
    loop {
        let first = *payload.get(pos).ok_or(DepacketizeError::TruncatedRed)?;
        let pt = first & 0x7f;
        if first & 0x80 == 0 {
            if pt != t140_pt {
                return Err(DepacketizeError::UnexpectedRedBlock(pt));
            }
            pos += 1;
            break;
        }
        let h = payload
            .get(pos..pos + RED_HEADER_LEN)
            .ok_or(DepacketizeError::TruncatedRed)?;
        let word = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        if pt != t140_pt {
            return Err(DepacketizeError::UnexpectedRedBlock(pt));
        }
        let offset = (word >> 10) & MAX_RED_OFFSET;
        let len = (word & MAX_RED_BLOCK as u32) as usize;
        headers.push((timestamp.wrapping_sub(offset), len));
        pos += RED_HEADER_LEN;
    }
    let mut blocks = Vec::with_capacity(headers.len() + 1);
    for (ts, len) in headers {
        let data = payload
            .get(pos..pos + len)
            .ok_or(DepacketizeError::TruncatedRed)?;
        blocks.push((ts, data));
        pos += len;
    }
    blocks.push((timestamp, &payload[pos..]));
    Ok(blocks)
}

/// What one character did to a [`TextBuffer`], for a receiver that keeps something per line
/// (when it was spoken, whether it was shown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit {
    /// A character was added to the last line.
    Typed(char),
    /// The last line's last character was erased (BACKSPACE, T.140 §5.5).
    Erased,
    /// The last line ended and a new, empty one started (LINE SEPARATOR, CR LF, LF or CR).
    LineEnded,
    /// BACKSPACE on an empty line erased the line break before it: the empty last line is
    /// gone and the line before it is the last one again.
    LineJoined,
}

/// A screen of text built from T.140 blocks (see the [module docs](self)).
///
/// This is the one place the player applies T.140 editing: its captions and its chat are
/// built on it (through [`apply_edits`](Self::apply_edits)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TextBuffer {
    lines: Vec<String>,
    /// The previous block ended in CR: an LF at the start of the next one is part of CR LF.
    after_cr: bool,
}

impl TextBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies `text`. Other C0 controls than BS, CR and LF are dropped (T.140 §5.6).
    pub fn apply(&mut self, text: &str) {
        self.apply_edits(text, |_| {});
    }

    /// Applies `text` like [`apply`](Self::apply), telling `on_edit` what each character
    /// did, after it was done. Characters with no effect (BOM, dropped controls, the LF of a
    /// CR LF, a BACKSPACE on an empty screen) give no edit.
    pub fn apply_edits(&mut self, text: &str, mut on_edit: impl FnMut(Edit)) {
        if self.lines.is_empty() {
            self.lines.push(String::new());
        }
        for c in text.chars() {
            let after_cr = std::mem::take(&mut self.after_cr);
            let edit = match c {
                BOM => None,
                BACKSPACE => {
                    let last = self.lines.last_mut().expect("one line at least");
                    if last.pop().is_some() {
                        Some(Edit::Erased)
                    } else if self.lines.len() > 1 {
                        self.lines.pop();
                        Some(Edit::LineJoined)
                    } else {
                        None
                    }
                }
                '\n' if after_cr => None,
                LINE_SEPARATOR | '\n' | '\r' => {
                    self.after_cr = c == '\r';
                    self.lines.push(String::new());
                    Some(Edit::LineEnded)
                }
                c if c.is_control() => None,
                c => {
                    self.lines.last_mut().expect("one line at least").push(c);
                    Some(Edit::Typed(c))
                }
            };
            if let Some(e) = edit {
                on_edit(e);
            }
        }
    }

    /// The lines so far (the last one possibly still being written).
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The last `n` non-empty lines, oldest first.
    pub fn last_lines(&self, n: usize) -> Vec<String> {
        let mut v: Vec<String> = self
            .lines
            .iter()
            .rev()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .take(n)
            .map(str::to_owned)
            .collect();
        v.reverse();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn red_round_trip_and_recovery_of_lost_packets() {
        let mut p = RedPacketizer::new(98, 2);
        let texts = ["Hello", " world", "", " again", "", ""];
        let packets: Vec<(u16, u32, Vec<u8>)> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                (
                    100 + i as u16,
                    5000 + 300 * i as u32,
                    p.packetize(5000 + 300 * i as u32, t),
                )
            })
            .collect();
        assert!(
            !p.needs_idle_packet(),
            "two empty packets after the last text"
        );
        // Everything arrives.
        let mut d = Depacketizer::new(98, Some(99));
        let mut got = Vec::new();
        for (seq, ts, data) in &packets {
            got.extend(d.push(*seq, *ts, 99, data).unwrap());
        }
        let text: String = got.iter().map(|b| b.text.as_str()).collect();
        assert_eq!(text, "Hello world again");
        assert_eq!(got[2].timestamp, 5900);
        // Packets 1 and 2 lost (two in a row): recovered from packet 3's redundancy.
        let mut d = Depacketizer::new(98, Some(99));
        let mut got = Vec::new();
        for (seq, ts, data) in packets.iter().filter(|(s, _, _)| ![101, 102].contains(s)) {
            got.extend(d.push(*seq, *ts, 99, data).unwrap());
        }
        let text: String = got.iter().map(|b| b.text.as_str()).collect();
        assert_eq!(text, "Hello world again");
        assert_eq!(
            got.iter().map(|b| b.timestamp).collect::<Vec<_>>(),
            [5000, 5300, 5900]
        );
        assert_eq!(d.lost_blocks, 0);
        // Three in a row lost: the oldest cannot come back, and it is counted.
        let mut d = Depacketizer::new(98, Some(99));
        let mut got = Vec::new();
        for (seq, ts, data) in packets
            .iter()
            .filter(|(s, _, _)| ![101, 102, 103].contains(s))
        {
            got.extend(d.push(*seq, *ts, 99, data).unwrap());
        }
        let text: String = got.iter().map(|b| b.text.as_str()).collect();
        assert_eq!(text, "Hello again");
        assert_eq!(d.lost_blocks, 1);
        // The very first packet lost: only a receiver told which sequence number comes first
        // knows to look in the next packet's redundancy.
        for (expect, want) in [(None, " world again"), (Some(100), "Hello world again")] {
            let mut d = Depacketizer::new(98, Some(99));
            if let Some(s) = expect {
                d.expect_first(s);
            }
            let mut got = Vec::new();
            for (seq, ts, data) in packets.iter().filter(|(s, _, _)| *s != 100) {
                got.extend(d.push(*seq, *ts, 99, data).unwrap());
            }
            let text: String = got.iter().map(|b| b.text.as_str()).collect();
            assert_eq!(text, want, "expect_first {expect:?}");
        }
    }

    #[test]
    fn plain_t140_duplicates_and_reordering() {
        let mut d = Depacketizer::new(98, None);
        assert_eq!(d.push(1, 10, 98, b"ab").unwrap().len(), 1);
        assert!(d.push(1, 10, 98, b"ab").unwrap().is_empty(), "duplicate");
        assert!(d.push(0, 5, 98, b"zz").unwrap().is_empty(), "late");
        assert_eq!(d.push(2, 20, 98, b"").unwrap(), vec![]);
        assert_eq!(
            d.push(3, 30, 97, b"x"),
            Err(DepacketizeError::UnknownPayloadType(97))
        );
        // A gap on plain t140 cannot be recovered (the rejected packet 3 counts as lost).
        d.push(6, 60, 98, b"c").unwrap();
        assert_eq!(d.lost_blocks, 3);
    }

    #[test]
    fn hostile_red_payloads_are_rejected() {
        let mut d = Depacketizer::new(98, Some(99));
        for bad in [
            &[][..],
            &[0x80 | 98][..],               // header cut short
            &[0x80 | 98, 0, 4, 10, 98][..], // block of 10 bytes, none there
            &[0x80 | 5, 0, 0, 0, 98][..],   // redundant block of another type
            &[5, b'x'][..],                 // primary of another type
        ] {
            assert!(d.push(1, 0, 99, bad).is_err(), "{bad:?}");
        }
        // Invalid UTF-8 is kept as replacement characters, not dropped.
        let got = Depacketizer::new(98, None)
            .push(1, 0, 98, b"a\xffb")
            .unwrap();
        assert_eq!(got[0].text, "a\u{fffd}b");
    }

    #[test]
    fn old_or_long_blocks_are_sent_empty() {
        let mut p = RedPacketizer::new(98, 1);
        p.packetize(0, &"x".repeat(2000));
        let out = p.packetize(100, "y");
        let mut d = Depacketizer::new(98, Some(99));
        d.push(9, 0, 99, &[98]).unwrap();
        // Packet 10 lost; packet 11 carries an empty copy of it.
        let got = d.push(11, 100, 99, &out).unwrap();
        assert_eq!(
            got,
            vec![TextBlock {
                timestamp: 100,
                text: "y".into()
            }]
        );
        let mut p = RedPacketizer::new(98, 1);
        p.packetize(0, "x");
        let out = p.packetize(20_000, "y");
        let blocks = parse_red(98, 20_000, &out).unwrap();
        assert_eq!(blocks[0], (20_000, &[][..]));
    }

    /// Mirrors `fuzz/fuzz_targets/t140_depacketize.rs` so CI runs it without nightly.
    #[test]
    fn arbitrary_packets_never_panic() {
        let mut rng = crate::rtp::test_rng::Seeded::new(0x7140_7140_7140_7140);
        for _ in 0..2000 {
            let n = rng.below(200) as usize;
            let data: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
            crate::fuzzing::t140_depacketize(&data);
        }
    }

    #[test]
    fn text_buffer_edits() {
        let mut t = TextBuffer::new();
        t.apply("\u{FEFF}Hello wrld");
        t.apply("\u{8}\u{8}\u{8}orld");
        assert_eq!(t.lines(), ["Hello world"]);
        t.apply("\u{2028}Second\r");
        t.apply("\nThird\u{7}");
        assert_eq!(t.lines(), ["Hello world", "Second", "Third"]);
        assert_eq!(t.last_lines(2), ["Second", "Third"]);
        t.apply("\u{8}\u{8}\u{8}\u{8}\u{8}\u{8}");
        assert_eq!(t.lines(), ["Hello world", "Second"]);
        t.apply("\u{2028}\u{2028}");
        assert_eq!(t.last_lines(2), ["Hello world", "Second"]);
    }

    #[test]
    fn edits_say_what_each_character_did() {
        let mut t = TextBuffer::new();
        let mut edits = Vec::new();
        t.apply_edits("\u{8}\u{FEFF}é\r", |e| edits.push(e));
        t.apply_edits("\n\u{7}\u{8}\u{8}\u{8}", |e| edits.push(e));
        assert_eq!(
            edits,
            [
                Edit::Typed('é'),
                Edit::LineEnded,
                Edit::LineJoined,
                Edit::Erased,
            ]
        );
        assert_eq!(t.lines(), [""]);
    }
}
