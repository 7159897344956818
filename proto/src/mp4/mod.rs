//! Fragmented MP4 (ISO/IEC 14496-12, ISOBMFF) writing, Sans-IO: the writer returns bytes and
//! never touches a file, so the server's recorder and the player's export share it.
//!
//! A file is an initialization segment ([`Mp4Writer::init_segment`]: `ftyp` + `moov` with an
//! empty sample table and `mvex`) followed by fragments ([`Mp4Writer::push`] returns one
//! `moof` + `mdat` when a fragment is due). Every fragment is self-contained (sample sizes,
//! durations and flags in its `trun`, its decode time in `tfdt`, data offsets relative to its
//! `moof`: `default-base-is-moof`), so a file cut after any fragment is a complete, playable
//! file: nothing is ever written at the end, and nothing in front needs to be patched.
//!
//! Tracks:
//! - H.264: `avc1` sample entry with `avcC` (ISO/IEC 14496-15 §5.3.3) from the SPS and PPS;
//!   samples are access units with 4-byte NAL lengths ([`annexb_to_avcc`]); timescale 90 kHz.
//! - Opus: `Opus` sample entry with `dOps` ("Encapsulation of Opus in ISO Base Media File
//!   Format", §4.3); one Opus packet per sample; timescale 48 kHz.
//! - Timed text: `tx3g` (3GPP TS 26.245 §5.16), each sample a cue (`u16` length + UTF-8) with
//!   an explicit duration, gaps filled with empty samples; timescale 1 kHz.
//!
//! Fragments start at a video keyframe once [`MIN_FRAGMENT_MS`] of video is pending (or at
//! [`MAX_FRAGMENT_MS`] whatever comes); a sample's duration is known when the next sample of its
//! track arrives, so each track holds back its last sample until then (or [`Mp4Writer::finish`]).

use std::fmt;

mod boxes;

pub use boxes::annexb_to_avcc;

/// A fragment is cut at the first video keyframe after this much pending video.
pub const MIN_FRAGMENT_MS: u64 = 1000;
/// A fragment is cut at this much pending media whatever comes (no keyframe, audio only).
pub const MAX_FRAGMENT_MS: u64 = 4000;

/// One track of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackConfig {
    /// H.264; `sps` and `pps` without start codes.
    H264 {
        width: u16,
        height: u16,
        sps: Vec<u8>,
        pps: Vec<u8>,
    },
    /// Opus at 48 kHz; `pre_skip` in 48 kHz samples (RFC 7845 §4.2).
    Opus { channels: u8, pre_skip: u16 },
    /// `tx3g` timed text (captions).
    Text,
}

impl TrackConfig {
    /// Ticks per second of the track's media timescale.
    pub fn timescale(&self) -> u32 {
        match self {
            TrackConfig::H264 { .. } => 90_000,
            TrackConfig::Opus { .. } => 48_000,
            TrackConfig::Text => 1000,
        }
    }

    fn is_video(&self) -> bool {
        matches!(self, TrackConfig::H264 { .. })
    }
}

/// Why a sample was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mp4Error {
    /// No track with this number.
    NoSuchTrack(usize),
    /// A decode time before the track's previous sample (or before the file's start).
    TimeWentBack { track: usize, time: u64, last: u64 },
    /// Text samples go through [`Mp4Writer::push_text`], media through [`Mp4Writer::push`].
    WrongKind(usize),
}

impl fmt::Display for Mp4Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mp4Error::NoSuchTrack(t) => write!(f, "no MP4 track {t}"),
            Mp4Error::TimeWentBack { track, time, last } => write!(
                f,
                "MP4 track {track}: sample time {time} before the previous one ({last})"
            ),
            Mp4Error::WrongKind(t) => write!(f, "MP4 track {t}: wrong kind of sample"),
        }
    }
}

impl std::error::Error for Mp4Error {}

/// A sample with its duration known, waiting for its fragment.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Sample {
    duration: u32,
    sync: bool,
    /// Presentation time minus decode time (B-frames), in the track's timescale.
    offset: i32,
    data: Vec<u8>,
}

#[derive(Debug)]
struct TrackState {
    config: TrackConfig,
    /// Decode time of the first sample of `ready` (the next fragment's `tfdt`).
    base_time: Option<u64>,
    ready: Vec<Sample>,
    /// The last sample pushed: (decode time, sync, composition offset, data), its duration
    /// not yet known.
    held: Option<(u64, bool, i32, Vec<u8>)>,
    /// The duration of the last completed sample, for the held one at the end.
    last_duration: u32,
    /// Where the track's time stands: end of its last completed sample.
    end: u64,
}

impl TrackState {
    fn ready_ms(&self) -> u64 {
        let ticks: u64 = self.ready.iter().map(|s| u64::from(s.duration)).sum();
        ticks * 1000 / u64::from(self.config.timescale())
    }
}

/// Writes one fragmented MP4 file (see the module docs).
#[derive(Debug)]
pub struct Mp4Writer {
    tracks: Vec<TrackState>,
    sequence: u32,
}

impl Mp4Writer {
    pub fn new(tracks: Vec<TrackConfig>) -> Self {
        Self {
            tracks: tracks
                .into_iter()
                .map(|config| TrackState {
                    config,
                    base_time: None,
                    ready: Vec::new(),
                    held: None,
                    last_duration: 0,
                    end: 0,
                })
                .collect(),
            sequence: 0,
        }
    }

    /// `ftyp` + `moov`: the first bytes of the file.
    pub fn init_segment(&self) -> Vec<u8> {
        let configs: Vec<&TrackConfig> = self.tracks.iter().map(|t| &t.config).collect();
        boxes::init_segment(&configs)
    }

    /// Adds a sample of a video or audio track: `time` is its decode time in the track's
    /// timescale from the start of the file, `data` an Opus packet or an H.264 access unit in
    /// AVCC form (4-byte lengths). Returns a fragment when one is due, cut before this sample.
    pub fn push(
        &mut self,
        track: usize,
        time: u64,
        sync: bool,
        data: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, Mp4Error> {
        self.push_offset(track, time, 0, sync, data)
    }

    /// [`Mp4Writer::push`] for a sample presented `offset` ticks after its decode time
    /// (B-frames; [`Reorder`] finds decode times and offsets from presentation times).
    pub fn push_offset(
        &mut self,
        track: usize,
        time: u64,
        offset: i32,
        sync: bool,
        data: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, Mp4Error> {
        let t = self
            .tracks
            .get_mut(track)
            .ok_or(Mp4Error::NoSuchTrack(track))?;
        if t.config == TrackConfig::Text {
            return Err(Mp4Error::WrongKind(track));
        }
        let last = t.held.as_ref().map_or(t.end, |h| h.0);
        if time < last {
            return Err(Mp4Error::TimeWentBack { track, time, last });
        }
        let is_video = t.config.is_video();
        if let Some((held_time, held_sync, held_offset, held_data)) = t.held.take() {
            let duration = u32::try_from(time - held_time).unwrap_or(u32::MAX).max(1);
            t.last_duration = duration;
            t.end = held_time + u64::from(duration);
            t.base_time.get_or_insert(held_time);
            t.ready.push(Sample {
                duration,
                sync: held_sync,
                offset: held_offset,
                data: held_data,
            });
        }
        let t = &mut self.tracks[track];
        t.held = Some((time, sync, offset, data));
        let due = {
            let pending = self.pending_ms();
            let video_pending = self
                .tracks
                .iter()
                .filter(|t| t.config.is_video())
                .map(TrackState::ready_ms)
                .max();
            match video_pending {
                Some(v) => (is_video && sync && v >= MIN_FRAGMENT_MS) || pending >= MAX_FRAGMENT_MS,
                None => pending >= MIN_FRAGMENT_MS,
            }
        };
        Ok(if due { self.fragment() } else { None })
    }

    /// Adds a caption shown from `start_ms` for `duration_ms` (ms from the start of the file).
    /// A caption that starts before the previous one ends is shortened to start there; the gap
    /// before it is filled with an empty sample.
    pub fn push_text(
        &mut self,
        track: usize,
        start_ms: u64,
        duration_ms: u32,
        text: &str,
    ) -> Result<(), Mp4Error> {
        let t = self
            .tracks
            .get_mut(track)
            .ok_or(Mp4Error::NoSuchTrack(track))?;
        if t.config != TrackConfig::Text {
            return Err(Mp4Error::WrongKind(track));
        }
        let end = start_ms + u64::from(duration_ms);
        if duration_ms == 0 || end <= t.end {
            return Ok(());
        }
        let start = start_ms.max(t.end);
        if t.base_time.is_none() {
            t.base_time = Some(0);
        }
        if start > t.end {
            t.ready.push(Sample {
                duration: u32::try_from(start - t.end).unwrap_or(u32::MAX),
                sync: true,
                offset: 0,
                data: boxes::text_sample(""),
            });
        }
        t.ready.push(Sample {
            duration: (end - start) as u32,
            sync: true,
            offset: 0,
            data: boxes::text_sample(text),
        });
        t.end = end;
        Ok(())
    }

    /// Media waiting for the next fragment, in ms (the longest track).
    fn pending_ms(&self) -> u64 {
        self.tracks
            .iter()
            .filter(|t| !matches!(t.config, TrackConfig::Text))
            .map(TrackState::ready_ms)
            .max()
            .unwrap_or(0)
    }

    /// A `moof` + `mdat` with every completed sample, or `None` when there are none.
    pub fn fragment(&mut self) -> Option<Vec<u8>> {
        if self.tracks.iter().all(|t| t.ready.is_empty()) {
            return None;
        }
        self.sequence += 1;
        let mut trafs = Vec::new();
        for (i, t) in self.tracks.iter_mut().enumerate() {
            if t.ready.is_empty() {
                continue;
            }
            let base = t.base_time.unwrap_or(0);
            let samples = std::mem::take(&mut t.ready);
            let ticks: u64 = samples.iter().map(|s| u64::from(s.duration)).sum();
            t.base_time = Some(base + ticks);
            trafs.push(boxes::Traf {
                track_id: i as u32 + 1,
                base_time: base,
                samples: samples
                    .into_iter()
                    .map(|s| (s.duration, s.sync, s.offset, s.data))
                    .collect(),
            });
        }
        Some(boxes::fragment(self.sequence, &trafs))
    }

    /// The last fragment: every held sample gets the duration of its track's previous one.
    /// The file is complete without it (then it ends at the last fragment returned before).
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        for t in &mut self.tracks {
            if let Some((time, sync, offset, data)) = t.held.take() {
                let duration = if t.last_duration > 0 {
                    t.last_duration
                } else {
                    t.config.timescale() / 30
                };
                t.base_time.get_or_insert(time);
                t.end = time + u64::from(duration);
                t.ready.push(Sample {
                    duration,
                    sync,
                    offset,
                    data,
                });
            }
        }
        self.fragment()
    }

    /// Where a track's written media ends, in its timescale.
    pub fn track_end(&self, track: usize) -> Option<u64> {
        self.tracks.get(track).map(|t| t.end)
    }
}

/// Samples that reach the writer in decode order with only their presentation times (RTP
/// carries nothing else), given decode times. While presentation times only rise, each sample
/// decodes at its presentation time and comes out at once. From the first one that goes back
/// (B-frames), samples wait until [`Reorder::DEPTH`] follow, and the k-th decodes at the k-th
/// smallest presentation time (kept above the previous decode time). Decode times then rise,
/// and each sample's composition offset (its presentation time minus that) goes in a
/// version 1 `trun` (signed: negative for some B-frames). Sans-IO.
#[derive(Debug)]
pub struct Reorder<T> {
    /// Samples not given out yet: (presentation time, item), decode order.
    queue: std::collections::VecDeque<(u64, T)>,
    /// Presentation times not yet used as a decode time.
    times: std::collections::BinaryHeap<std::cmp::Reverse<u64>>,
    /// 0 until presentation times went back, then [`Reorder::DEPTH`].
    depth: usize,
    last_pts: Option<u64>,
    last_dts: Option<u64>,
}

impl<T> Default for Reorder<T> {
    fn default() -> Self {
        Self {
            queue: std::collections::VecDeque::new(),
            times: std::collections::BinaryHeap::new(),
            depth: 0,
            last_pts: None,
            last_dts: None,
        }
    }
}

impl<T> Reorder<T> {
    /// Samples looked ahead once reordering is seen: more than any encoder reorders (x264:
    /// at most 16 B-frames).
    pub const DEPTH: usize = 17;

    /// Adds a sample; returns the samples now due as (decode time, composition offset, item).
    pub fn push(&mut self, pts: u64, item: T) -> Vec<(u64, i32, T)> {
        if self.last_pts.is_some_and(|last| pts < last) {
            self.depth = Self::DEPTH;
        }
        self.last_pts = Some(pts);
        self.queue.push_back((pts, item));
        self.times.push(std::cmp::Reverse(pts));
        let mut out = Vec::new();
        while self.queue.len() > self.depth {
            out.extend(self.pop());
        }
        out
    }

    /// The next sample whatever follows it (at the end of the stream or of a file); `None`
    /// when empty.
    pub fn pop(&mut self) -> Option<(u64, i32, T)> {
        let (pts, item) = self.queue.pop_front()?;
        let std::cmp::Reverse(min) = self.times.pop()?;
        let dts = self.last_dts.map_or(min, |last| min.max(last + 1));
        self.last_dts = Some(dts);
        let offset = i32::try_from(pts as i64 - dts as i64).unwrap_or(0);
        Some((dts, offset, item))
    }

    /// A stage that waits for [`Reorder::DEPTH`] samples from the start (the stream is
    /// known to have B-frames).
    pub fn expecting_reordering() -> Self {
        Self {
            depth: Self::DEPTH,
            ..Self::default()
        }
    }

    /// Whether presentation times have gone back (or were expected to).
    pub fn reordering(&self) -> bool {
        self.depth > 0
    }

    /// Forgets the samples and times (a stream that starts again); keeps the depth.
    pub fn restart(&mut self) {
        self.queue.clear();
        self.times.clear();
        self.last_pts = None;
        self.last_dts = None;
    }
}

/// `YYYYMMDD-HHMMSS` (UTC) of `secs` since the Unix epoch, for the names of recorded files.
pub fn utc_stamp(secs: u64) -> String {
    let secs = secs as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A WebVTT file's first line.
pub const WEBVTT_HEADER: &str = "WEBVTT\n\n";

/// One WebVTT cue (W3C WebVTT §4.1), times in ms from the start of the file.
pub fn webvtt_cue(start_ms: u64, end_ms: u64, text: &str) -> String {
    fn ts(ms: u64) -> String {
        format!(
            "{:02}:{:02}:{:02}.{:03}",
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1000 % 60,
            ms % 1000
        )
    }
    // "-->" and blank lines would end the cue early.
    let text = text.replace("-->", "->").replace("\n\n", "\n");
    format!("{} --> {}\n{}\n\n", ts(start_ms), ts(end_ms), text.trim())
}

#[cfg(test)]
mod tests;
