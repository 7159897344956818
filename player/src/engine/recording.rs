//! The session recording: every received [`MediaUnit`] (compressed: H.264 access units, Opus
//! packets, text blocks — never decoded frames) appended to a file as it arrives, plus an
//! in-memory [`Index`] of timestamps and file offsets. Memory stays bounded however long the
//! session runs: the index costs 24 bytes per unit (≈ 7 MB per hour of 720p30 + 20 ms audio);
//! the media stays on disk and is read back record by record.
//!
//! # File format (version 1)
//!
//! All integers are **little-endian**. A file is a 15-byte header followed by records:
//!
//! ```text
//! file header
//!   0   13  magic    "LIVECAST-REC\0"
//!   13   2  version  u16 = 1
//!
//! record (32-byte header, data, 4-byte trailer)
//!   0    4  sync     "LREC"
//!   4    1  kind     0 = description, 1 = media; other kinds are skipped (future additions)
//!   5    1  track    media: track number in the description in force; description: 0xFF
//!   6    1  flags    bit 0 keyframe, bit 1 damaged, bit 2 capture time from an RTCP SR
//!   7    1  reserved 0
//!   8    8  capture_us   i64, sender wall clock, µs since the Unix epoch (0 for descriptions)
//!   16   8  arrival_us   i64, our wall clock, µs since the Unix epoch (0 for descriptions)
//!   24   4  rtp_ts       u32 RTP timestamp (0 for descriptions)
//!   28   4  len          u32 data length, at most 64 MiB
//!   32 len  data     media: the unit's bytes; description: JSON (below)
//!   ..   4  crc      CRC-32 (IEEE 802.3, as zlib) of the header and the data
//! ```
//!
//! The first record is a **description**: JSON `{"sdp": "...", "tracks": [{"index": 0,
//! "media": "video", "codec": "H264", "payload_type": 96, "clock_rate": 90000, "fmtp":
//! [["packetization-mode", "1"]], "control_url": "rtsp://..."}]}`, text tracks with a `"label"`
//! (`captions` or `chat`, omitted when empty and optional on reading; `codec` is the `Debug`
//! name of [`Codec`], read back with [`Codec::from_sdp`]). A reconnect may append another
//! description; media records after it number their tracks in the new list.
//!
//! **Versions.** The version changes only for incompatible layouts; a reader refuses any
//! version but its own ([`RecordingError::UnsupportedVersion`]). Compatible additions use new
//! record kinds, which older readers skip, or new JSON fields, which they ignore.
//!
//! # Tracks across descriptions
//!
//! The [`Index`] presents one list of tracks for the whole recording. A track of a new
//! description continues an earlier index track with the same media type, codec and clock rate
//! (the first one not already taken by that description); otherwise it becomes a new index
//! track. So a reconnect to the same server continues the same tracks, and a reconnect to a
//! differently configured one adds tracks without mixing codecs. [`MediaUnit::track`] of a unit
//! read through the index is the index track number.
//!
//! # Timestamps in the index
//!
//! [`IndexEntry::time_us`] is the capture time, made monotonic per track (binary search needs
//! it): a capture time that goes backwards (an RTCP-SR correction, a server clock step) is
//! clamped to the previous entry's time. After a description record (a reconnect), if the first
//! media unit's capture time is more than 10 s away from where the arrival clock says the
//! session should be (previous end + arrival gap), all later capture times are shifted so the
//! timeline continues (a different server, or a server clock that jumped). The record on disk
//! keeps the original values; [`RecordingReader::read`] returns them.
//!
//! # Writing, durability and concurrency
//!
//! The writer assembles each record in memory and hands it to the kernel with one `write`
//! (units are 0.1–100 KB at ≤ 100 per second, so a system call per unit costs nothing, and we
//! don't need a `BufWriter`). A killed player therefore loses at most the record being written;
//! the kernel keeps written data even when the process dies (only a power cut needs
//! [`RecordingWriter::sync`]).
//!
//! The writer publishes an entry in the [`SharedIndex`] (`Arc<RwLock<Index>>`) only after the
//! record's bytes are written, so the playback thread — which reads the file through its own
//! read-only handle ([`RecordingWriter::reader`]) — never sees an entry whose bytes it cannot
//! read. The lock is held for a `Vec::push` (writer) or a binary search (reader).
//!
//! # Recovery
//!
//! [`RecordingReader::open`] scans the whole file, checks every record's CRC and rebuilds the
//! index. **The scan stops at the first record that doesn't check out** — cut short (a killed
//! writer), bad sync word, impossible length, CRC mismatch, a description that isn't valid
//! JSON, a media record naming a track the description doesn't have — and keeps everything
//! before it; [`RecordingReader::ignored_tail`] says how many bytes were ignored and why. A
//! flipped byte in the middle of a file thus loses the rest of the file rather than risking
//! garbage records (resynchronising on the next sync word would be possible but is not done).
//! Only a file that isn't a recording at all, or from a newer format version, is an error.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use livecast_proto::codec::Codec;
use serde::{Deserialize, Serialize};

use super::unit::{MediaKind, MediaUnit, TrackDesc};

/// The first 13 bytes of every recording.
pub const MAGIC: &[u8; 13] = b"LIVECAST-REC\0";
/// The format version this build writes, and the newest it reads.
pub const FORMAT_VERSION: u16 = 1;
/// Length of the file header (magic + version); the first record starts here.
pub const FILE_HEADER_LEN: u64 = 15;
/// Largest record data we write or accept (a bigger length field means corruption).
pub const MAX_RECORD_LEN: u32 = 64 << 20;
/// Capture-time discontinuity after a description record that makes the index rebase its
/// clock (see the module docs).
pub const REBASE_THRESHOLD_US: u64 = 10_000_000;

const SYNC: [u8; 4] = *b"LREC";
const RECORD_HEADER_LEN: usize = 32;
const RECORD_TRAILER_LEN: usize = 4;
const KIND_DESCRIPTION: u8 = 0;
const KIND_MEDIA: u8 = 1;
const NO_TRACK: u8 = 0xFF;
const FLAG_KEYFRAME: u8 = 1;
const FLAG_DAMAGED: u8 = 2;
const FLAG_CAPTURE_FROM_SR: u8 = 4;
/// Buffer for the recovery scan: large reads, few system calls.
const SCAN_BUFFER: usize = 1 << 20;

/// The index behind a lock, shared by the writer (appends) and the playback side (reads).
pub type SharedIndex = Arc<RwLock<Index>>;

// ------------------------------------------------------------------------------------------
// Errors

/// Why a recording couldn't be opened or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordingError {
    #[error("not a Livecast recording: {0}")]
    NotARecording(&'static str),
    #[error(
        "recording format version {found} is not supported (this player reads version \
         {FORMAT_VERSION}); a newer livecast-player wrote it"
    )]
    UnsupportedVersion { found: u16 },
    /// A record that doesn't check out (only from [`RecordingReader::records_from`]; `open`
    /// stops before such a record instead).
    #[error("corrupt or incomplete record at byte {offset}: {reason}")]
    Corrupt { offset: u64, reason: String },
    #[error(transparent)]
    Io(#[from] io::Error),
}

// ------------------------------------------------------------------------------------------
// Stream description

/// The stream description in force from some point of the recording: the SDP text and the
/// track list derived from it.
#[derive(Clone, Debug, PartialEq)]
pub struct Description {
    pub sdp: String,
    pub tracks: Vec<TrackDesc>,
}

#[derive(Serialize, Deserialize)]
struct DescriptionJson {
    sdp: String,
    tracks: Vec<TrackJson>,
}

#[derive(Serialize, Deserialize)]
struct TrackJson {
    index: usize,
    media: String,
    codec: String,
    payload_type: u8,
    clock_rate: u32,
    #[serde(default)]
    fmtp: Vec<(String, String)>,
    #[serde(default)]
    control_url: String,
    /// Since call mode (text tracks: `captions` or `chat`); absent in older recordings.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    label: String,
}

impl Description {
    fn to_json(&self) -> Vec<u8> {
        let json = DescriptionJson {
            sdp: self.sdp.clone(),
            tracks: self
                .tracks
                .iter()
                .map(|t| TrackJson {
                    index: t.index,
                    media: t.media.clone(),
                    codec: format!("{:?}", t.codec),
                    payload_type: t.payload_type,
                    clock_rate: t.clock_rate,
                    fmtp: t.fmtp.clone(),
                    control_url: t.control_url.clone(),
                    label: t.label.clone(),
                })
                .collect(),
        };
        // Serializing plain strings and integers to a Vec cannot fail.
        serde_json::to_vec(&json).expect("DescriptionJson holds only strings and integers")
    }

    fn from_json(data: &[u8]) -> Result<Self, String> {
        let json: DescriptionJson =
            serde_json::from_slice(data).map_err(|e| format!("bad description JSON: {e}"))?;
        Ok(Description {
            sdp: json.sdp,
            tracks: json
                .tracks
                .into_iter()
                .map(|t| TrackDesc {
                    index: t.index,
                    codec: Codec::from_sdp(&t.media, &t.codec),
                    media: t.media,
                    payload_type: t.payload_type,
                    clock_rate: t.clock_rate,
                    fmtp: t.fmtp,
                    control_url: t.control_url,
                    label: t.label,
                })
                .collect(),
        })
    }
}

/// CRC-32 of `data` (IEEE 802.3 polynomial, reflected, as zlib/PNG;
/// `crc32(b"123456789") == 0xCBF4_3926`). It bounds the recovery scan, so it is `crc32fast`'s
/// SIMD implementation.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

// ------------------------------------------------------------------------------------------
// Record header

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RecordHeader {
    kind: u8,
    track: u8,
    flags: u8,
    capture_us: i64,
    arrival_us: i64,
    rtp_timestamp: u32,
    len: u32,
}

impl RecordHeader {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&SYNC);
        out.extend_from_slice(&[self.kind, self.track, self.flags, 0]);
        out.extend_from_slice(&self.capture_us.to_le_bytes());
        out.extend_from_slice(&self.arrival_us.to_le_bytes());
        out.extend_from_slice(&self.rtp_timestamp.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
    }

    fn decode(b: &[u8]) -> Result<Self, &'static str> {
        if b.len() < RECORD_HEADER_LEN {
            return Err("record header cut short");
        }
        if b[0..4] != SYNC {
            return Err("bad sync word");
        }
        let i64_at = |o: usize| {
            i64::from_le_bytes([
                b[o],
                b[o + 1],
                b[o + 2],
                b[o + 3],
                b[o + 4],
                b[o + 5],
                b[o + 6],
                b[o + 7],
            ])
        };
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let h = RecordHeader {
            kind: b[4],
            track: b[5],
            flags: b[6],
            capture_us: i64_at(8),
            arrival_us: i64_at(16),
            rtp_timestamp: u32_at(24),
            len: u32_at(28),
        };
        if h.len > MAX_RECORD_LEN {
            return Err("record length over 64 MiB");
        }
        Ok(h)
    }

    /// The media unit of a media record with this header, on `track`, carrying `data`.
    fn media_unit(&self, track: usize, data: Vec<u8>) -> MediaUnit {
        MediaUnit {
            track,
            rtp_timestamp: self.rtp_timestamp,
            capture_us: self.capture_us,
            capture_from_sr: self.flags & FLAG_CAPTURE_FROM_SR != 0,
            arrival_us: self.arrival_us,
            keyframe: self.flags & FLAG_KEYFRAME != 0,
            damaged: self.flags & FLAG_DAMAGED != 0,
            data,
        }
    }

    fn total_len(&self) -> u64 {
        (RECORD_HEADER_LEN + RECORD_TRAILER_LEN) as u64 + u64::from(self.len)
    }
}

fn unit_flags(unit: &MediaUnit) -> u8 {
    let mut f = 0;
    if unit.keyframe {
        f |= FLAG_KEYFRAME;
    }
    if unit.damaged {
        f |= FLAG_DAMAGED;
    }
    if unit.capture_from_sr {
        f |= FLAG_CAPTURE_FROM_SR;
    }
    f
}

/// Appends one whole record (header, data, CRC) to `out`.
fn encode_record(h: &RecordHeader, data: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    h.encode(out);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Reads until `buf` is full or end of file; returns how many bytes were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

enum Next {
    /// A record whose CRC checks out; header and data are in the scratch buffer.
    Record(RecordHeader),
    /// Clean end of file, on a record boundary.
    End,
    /// Cut short or corrupt.
    Bad(&'static str),
}

/// Whether the CRC stored after the first `body` bytes (header + data) of `record` is theirs.
fn crc_matches(record: &[u8], body: usize) -> bool {
    let mut stored = [0; RECORD_TRAILER_LEN];
    stored.copy_from_slice(&record[body..body + RECORD_TRAILER_LEN]);
    crc32(&record[..body]) == u32::from_le_bytes(stored)
}

/// Reads the next record into `scratch` (header + data) and checks its CRC.
fn next_record(r: &mut impl Read, scratch: &mut Vec<u8>) -> io::Result<Next> {
    scratch.clear();
    scratch.resize(RECORD_HEADER_LEN, 0);
    let n = read_full(r, &mut scratch[..RECORD_HEADER_LEN])?;
    if n == 0 {
        return Ok(Next::End);
    }
    if n < RECORD_HEADER_LEN {
        return Ok(Next::Bad("record header cut short"));
    }
    let h = match RecordHeader::decode(scratch) {
        Ok(h) => h,
        Err(reason) => return Ok(Next::Bad(reason)),
    };
    let rest = h.len as usize + RECORD_TRAILER_LEN;
    scratch.resize(RECORD_HEADER_LEN + rest, 0);
    if read_full(r, &mut scratch[RECORD_HEADER_LEN..])? < rest {
        return Ok(Next::Bad("record cut short"));
    }
    let body = RECORD_HEADER_LEN + h.len as usize;
    if !crc_matches(scratch, body) {
        return Ok(Next::Bad("CRC mismatch"));
    }
    scratch.truncate(body);
    Ok(Next::Record(h))
}

/// Reads and checks the file header.
fn read_file_header(r: &mut impl Read) -> Result<(), RecordingError> {
    let mut head = [0u8; FILE_HEADER_LEN as usize];
    let n = read_full(r, &mut head)?;
    let m = n.min(MAGIC.len());
    if head[..m] != MAGIC[..m] {
        return Err(RecordingError::NotARecording("bad magic"));
    }
    if n < head.len() {
        return Err(RecordingError::NotARecording(
            "file too short for the header",
        ));
    }
    let version = u16::from_le_bytes([head[13], head[14]]);
    if version != FORMAT_VERSION {
        return Err(RecordingError::UnsupportedVersion { found: version });
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Index

/// The entries to decode to show the picture at a seek's target, in the video track's
/// entries ([`Index::seek_plan`]): `from..=last`. `keyframe` is the last seek point at or
/// before the target (the first one after it if there is none before); `last` the last
/// entry at or before the target (the keyframe, if that is later). `from` is the keyframe,
/// with the decoder started afresh there, or, when the decoder is already in the target's
/// group and has not passed the target, where it stands: the same picture, less decoding
/// (past `last` when it already shows it). Decode order is presentation order (no B-frames;
/// with them the player always starts at the keyframe).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeekPlan {
    pub keyframe: usize,
    pub from: usize,
    pub last: usize,
}

impl SeekPlan {
    /// The decoder starts afresh at the keyframe.
    pub fn fresh(&self) -> bool {
        self.from == self.keyframe
    }

    /// Entries to decode.
    pub fn len(&self) -> usize {
        (self.last + 1).saturating_sub(self.from)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One recorded unit in the index: 24 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Capture time, µs since the Unix epoch, monotonic per track (see the module docs).
    pub time_us: i64,
    /// File offset of the record.
    pub offset: u64,
    /// Length of the unit's data.
    pub len: u32,
    /// Index track number.
    pub track: u16,
    flags: u8,
}

const _: () = assert!(std::mem::size_of::<IndexEntry>() == 24);

impl IndexEntry {
    pub fn keyframe(&self) -> bool {
        self.flags & FLAG_KEYFRAME != 0
    }
    pub fn damaged(&self) -> bool {
        self.flags & FLAG_DAMAGED != 0
    }
    pub fn capture_from_sr(&self) -> bool {
        self.flags & FLAG_CAPTURE_FROM_SR != 0
    }
    /// A decoder can start here: a keyframe that arrived whole.
    pub fn seek_point(&self) -> bool {
        self.keyframe() && !self.damaged()
    }
}

/// A description record and how its tracks map onto the index's tracks.
#[derive(Clone, Debug, PartialEq)]
pub struct DescriptionInfo {
    /// File offset of the description record.
    pub offset: u64,
    pub description: Description,
    /// For each track of the description, its index track number.
    pub index_tracks: Vec<usize>,
}

/// Entry numbers of a track's seek points, compact for tracks where every unit is one.
#[derive(Clone, Debug, PartialEq, Default)]
struct SeekPoints {
    /// Every entry so far is a seek point (audio, text): `list` stays empty.
    all: bool,
    list: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq)]
struct IndexTrack {
    desc: TrackDesc,
    entries: Vec<IndexEntry>,
    seek: SeekPoints,
}

/// The in-memory index of a recording: per track, one [`IndexEntry`] per unit in arrival
/// order (times monotonic), plus the descriptions. Built by the writer as it appends, or by
/// [`RecordingReader::open`] from a file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Index {
    tracks: Vec<IndexTrack>,
    descriptions: Vec<DescriptionInfo>,
    start_us: Option<i64>,
    end_us: Option<i64>,
    /// Added to capture times (see "Timestamps in the index").
    clock_offset_us: i64,
    /// A description arrived after media: check the next unit for a clock discontinuity.
    rebase_pending: bool,
    last_arrival_us: Option<i64>,
    /// File offset just past the last record indexed.
    end_offset: u64,
}

/// Why [`Index::push_unit`] refused a unit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    #[error("media before any stream description")]
    NoDescription,
    #[error("track {track} is not in the stream description ({tracks} tracks)")]
    NoSuchTrack { track: usize, tracks: usize },
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a new description at file offset `offset`; later units number their tracks in
    /// it. Returns the index track of each of its tracks.
    pub fn push_description(&mut self, description: Description, offset: u64) -> &[usize] {
        let mut taken = vec![false; self.tracks.len()];
        let mut map = Vec::with_capacity(description.tracks.len());
        for t in &description.tracks {
            let found = self.tracks.iter().enumerate().position(|(i, it)| {
                !taken[i]
                    && it.desc.media.eq_ignore_ascii_case(&t.media)
                    && it.desc.codec == t.codec
                    && it.desc.clock_rate == t.clock_rate
                    && it.desc.label.eq_ignore_ascii_case(&t.label)
            });
            let global = match found {
                Some(g) => g,
                None => {
                    self.tracks.push(IndexTrack {
                        desc: t.clone(),
                        entries: Vec::new(),
                        seek: SeekPoints {
                            all: true,
                            list: Vec::new(),
                        },
                    });
                    taken.push(false);
                    self.tracks.len() - 1
                }
            };
            taken[global] = true;
            let mut desc = t.clone();
            desc.index = global;
            self.tracks[global].desc = desc;
            map.push(global);
        }
        if self.end_us.is_some() {
            self.rebase_pending = true;
        }
        self.descriptions.push(DescriptionInfo {
            offset,
            description,
            index_tracks: map,
        });
        self.end_offset = self.end_offset.max(offset);
        &self
            .descriptions
            .last()
            .expect("a description was pushed just above")
            .index_tracks
    }

    /// Indexes a unit whose record starts at `offset`; `unit.track` numbers the track in the
    /// description in force. Returns the index track. (`unit.data` is only measured.)
    pub fn push_unit(&mut self, unit: &MediaUnit, offset: u64) -> Result<usize, IndexError> {
        let len = u32::try_from(unit.data.len()).unwrap_or(u32::MAX);
        self.push_media(
            unit.track,
            unit.capture_us,
            unit.arrival_us,
            unit_flags(unit),
            offset,
            len,
        )
    }

    fn push_media(
        &mut self,
        local_track: usize,
        capture_us: i64,
        arrival_us: i64,
        flags: u8,
        offset: u64,
        len: u32,
    ) -> Result<usize, IndexError> {
        let desc = self.descriptions.last().ok_or(IndexError::NoDescription)?;
        let global = *desc
            .index_tracks
            .get(local_track)
            .ok_or(IndexError::NoSuchTrack {
                track: local_track,
                tracks: desc.index_tracks.len(),
            })?;
        let mut t = capture_us.saturating_add(self.clock_offset_us);
        if self.rebase_pending {
            self.rebase_pending = false;
            if let (Some(end), Some(last_arrival)) = (self.end_us, self.last_arrival_us) {
                let expected = end.saturating_add(arrival_us.saturating_sub(last_arrival).max(0));
                if t.abs_diff(expected) > REBASE_THRESHOLD_US {
                    let shift = expected.saturating_sub(t);
                    self.clock_offset_us = self.clock_offset_us.saturating_add(shift);
                    t = expected;
                    tracing::info!(shift_us = shift, "recording index: capture clock rebased");
                }
            }
        }
        let track = &mut self.tracks[global];
        if let Some(last) = track.entries.last() {
            t = t.max(last.time_us);
        }
        let entry = IndexEntry {
            time_us: t,
            offset,
            len,
            track: u16::try_from(global).unwrap_or(u16::MAX),
            flags,
        };
        let n = track.entries.len();
        if track.seek.all && !entry.seek_point() {
            track.seek.all = false;
            track.seek.list = (0..n)
                .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
                .collect();
        } else if !track.seek.all && entry.seek_point() {
            track.seek.list.push(u32::try_from(n).unwrap_or(u32::MAX));
        }
        track.entries.push(entry);
        self.start_us = Some(self.start_us.map_or(t, |s| s.min(t)));
        self.end_us = Some(self.end_us.map_or(t, |e| e.max(t)));
        self.last_arrival_us = Some(arrival_us);
        let record_end =
            offset.saturating_add((RECORD_HEADER_LEN + RECORD_TRAILER_LEN) as u64 + u64::from(len));
        self.end_offset = self.end_offset.max(record_end);
        Ok(global)
    }

    /// The recording's tracks (each `TrackDesc::index` is its index track number; the fields
    /// come from the latest description that mentioned it).
    pub fn tracks(&self) -> impl ExactSizeIterator<Item = &TrackDesc> {
        self.tracks.iter().map(|t| &t.desc)
    }

    pub fn track(&self, track: usize) -> Option<&TrackDesc> {
        self.tracks.get(track).map(|t| &t.desc)
    }

    pub fn track_count(&self) -> usize {
        self.tracks.len()
    }

    /// The track of this kind in the latest description (the first such track of the
    /// recording if the latest description has none).
    pub fn find_track(&self, kind: MediaKind) -> Option<usize> {
        let latest = self.descriptions.last().and_then(|d| {
            d.index_tracks
                .iter()
                .copied()
                .find(|&g| self.tracks[g].desc.kind() == kind)
        });
        latest.or_else(|| self.tracks.iter().position(|t| t.desc.kind() == kind))
    }

    /// Every description of the recording, in file order.
    pub fn descriptions(&self) -> &[DescriptionInfo] {
        &self.descriptions
    }

    /// A track's entries in arrival order (empty for an unknown track). Iterate from an entry
    /// with `entries(track)[i..]`.
    pub fn entries(&self, track: usize) -> &[IndexEntry] {
        self.tracks.get(track).map_or(&[], |t| &t.entries)
    }

    pub fn entry(&self, track: usize, i: usize) -> Option<&IndexEntry> {
        self.entries(track).get(i)
    }

    /// Number of units indexed, all tracks.
    pub fn len(&self) -> usize {
        self.tracks.iter().map(|t| t.entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.end_us.is_none()
    }

    /// Earliest indexed time, any track.
    pub fn start_us(&self) -> Option<i64> {
        self.start_us
    }

    /// Latest indexed time, any track: the live edge while recording.
    pub fn end_us(&self) -> Option<i64> {
        self.end_us
    }

    /// `end_us - start_us`, 0 when empty.
    pub fn duration_us(&self) -> i64 {
        match (self.start_us, self.end_us) {
            (Some(s), Some(e)) => e.saturating_sub(s),
            _ => 0,
        }
    }

    /// File offset just past the last indexed record.
    pub fn end_offset(&self) -> u64 {
        self.end_offset
    }

    /// The last seek point (undamaged keyframe) at or before `t_us`.
    pub fn keyframe_at_or_before(&self, track: usize, t_us: i64) -> Option<usize> {
        let tr = self.tracks.get(track)?;
        let n = tr.entries.partition_point(|e| e.time_us <= t_us);
        let last = n.checked_sub(1)?;
        if tr.seek.all {
            return Some(last);
        }
        let k = tr.seek.list.partition_point(|&i| i as usize <= last);
        k.checked_sub(1).map(|k| tr.seek.list[k] as usize)
    }

    /// The first seek point at or after `t_us`.
    pub fn keyframe_at_or_after(&self, track: usize, t_us: i64) -> Option<usize> {
        let tr = self.tracks.get(track)?;
        let first = tr.entries.partition_point(|e| e.time_us < t_us);
        if tr.seek.all {
            return (first < tr.entries.len()).then_some(first);
        }
        let k = tr.seek.list.partition_point(|&i| (i as usize) < first);
        tr.seek.list.get(k).map(|&i| i as usize)
    }

    /// The first entry with `time_us >= t_us`.
    pub fn first_at_or_after(&self, track: usize, t_us: i64) -> Option<usize> {
        let e = self.entries(track);
        let i = e.partition_point(|e| e.time_us < t_us);
        (i < e.len()).then_some(i)
    }

    /// The last entry with `time_us <= t_us`.
    pub fn last_at_or_before(&self, track: usize, t_us: i64) -> Option<usize> {
        self.entries(track)
            .partition_point(|e| e.time_us <= t_us)
            .checked_sub(1)
    }

    /// What to decode to show the picture at `t_us` on video `track`: see [`SeekPlan`].
    /// `next`: the entry the decoder would decode next, when it has decoded its group from
    /// the keyframe on (`None`: a fresh decoder, or one that cannot go on). `None` if the
    /// track has no seek point at all.
    pub fn seek_plan(&self, track: usize, t_us: i64, next: Option<usize>) -> Option<SeekPlan> {
        let keyframe = self
            .keyframe_at_or_before(track, t_us)
            .or_else(|| self.keyframe_at_or_after(track, t_us))?;
        let last = self
            .last_at_or_before(track, t_us)
            .unwrap_or(keyframe)
            .max(keyframe);
        // Between `keyframe` and `last` there is no other seek point, so a decoder that has
        // decoded anything after `keyframe` and nothing after `last` is in this group.
        let from = match next {
            Some(n) if keyframe < n && n <= last + 1 => n,
            _ => keyframe,
        };
        Some(SeekPlan {
            keyframe,
            from,
            last,
        })
    }

    /// The entries of `track` with `range.start <= time_us < range.end` (captions of a
    /// moment: read them with [`RecordingReader::read`]).
    pub fn text_in(&self, track: usize, range: Range<i64>) -> &[IndexEntry] {
        let e = self.entries(track);
        let a = e.partition_point(|e| e.time_us < range.start);
        let b = e.partition_point(|e| e.time_us < range.end).max(a);
        &e[a..b]
    }

    /// Gives back the spare capacity of the entry vectors (after opening a finished file).
    pub fn shrink_to_fit(&mut self) {
        for t in &mut self.tracks {
            t.entries.shrink_to_fit();
            t.seek.list.shrink_to_fit();
        }
    }

    /// Heap bytes held by the index (entries, seek points, descriptions), for statistics.
    pub fn memory_bytes(&self) -> usize {
        let tracks: usize = self
            .tracks
            .iter()
            .map(|t| {
                t.entries.capacity() * std::mem::size_of::<IndexEntry>()
                    + t.seek.list.capacity() * 4
                    + std::mem::size_of::<IndexTrack>()
            })
            .sum();
        let descs: usize = self
            .descriptions
            .iter()
            .map(|d| d.description.sdp.len() + d.description.tracks.len() * 256)
            .sum();
        tracks + descs
    }
}

// ------------------------------------------------------------------------------------------
// Writer

/// Appends a session to a recording file and keeps its index (see the module docs for the
/// format, durability and the concurrency design).
pub struct RecordingWriter {
    file: File,
    path: PathBuf,
    /// Where the next record goes (= bytes written).
    offset: u64,
    /// Record assembly buffer, reused.
    buf: Vec<u8>,
    index: SharedIndex,
    /// Tracks in the description in force.
    local_tracks: usize,
    /// Removes the file when the writer is dropped (temporary recordings).
    temp: Option<TempRecording>,
}

impl fmt::Debug for RecordingWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let temporary = self.temp.is_some();
        debug_handle(
            f,
            "RecordingWriter",
            &self.path,
            &[("offset", &self.offset), ("temporary", &temporary)],
        )
    }
}

/// Debug output of the recording handles: the path and a few counters, not the buffers or the
/// index.
fn debug_handle(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    path: &Path,
    counters: &[(&str, &dyn fmt::Debug)],
) -> fmt::Result {
    let mut d = f.debug_struct(name);
    d.field("path", &path);
    for (name, value) in counters {
        d.field(name, value);
    }
    d.finish()
}

impl RecordingWriter {
    /// Creates the recording at `path` and writes the header and the first description. An
    /// existing recording there is replaced; any other non-empty file is left alone (error
    /// `AlreadyExists`), so a mistyped `--record` can't destroy it.
    pub fn create(path: impl AsRef<Path>, tracks: &[TrackDesc], sdp: &str) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Ok(mut existing) = File::open(&path) {
            let mut head = [0u8; MAGIC.len()];
            let n = read_full(&mut existing, &mut head)?;
            if n > 0 && head[..] != MAGIC[..] {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} exists and is not a Livecast recording; not overwriting it",
                        path.display()
                    ),
                ));
            }
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        let mut w = RecordingWriter {
            file,
            path,
            offset: 0,
            buf: Vec::with_capacity(64 * 1024),
            index: Arc::new(RwLock::new(Index::new())),
            local_tracks: 0,
            temp: None,
        };
        let mut head = Vec::with_capacity(FILE_HEADER_LEN as usize);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        w.file.write_all(&head)?;
        w.offset = FILE_HEADER_LEN;
        w.set_description(tracks, sdp)?;
        Ok(w)
    }

    /// A recording in a fresh temporary file, removed when the writer is dropped.
    pub fn create_temp(tracks: &[TrackDesc], sdp: &str) -> io::Result<Self> {
        let temp = TempRecording::new()?;
        let mut w = Self::create(temp.path(), tracks, sdp)?;
        w.temp = Some(temp);
        Ok(w)
    }

    /// Records a new stream description (after a reconnect): later units number their tracks
    /// in `tracks`.
    pub fn set_description(&mut self, tracks: &[TrackDesc], sdp: &str) -> io::Result<()> {
        let description = Description {
            sdp: sdp.to_owned(),
            tracks: tracks.to_vec(),
        };
        let data = description.to_json();
        let len = u32::try_from(data.len())
            .ok()
            .filter(|&l| l <= MAX_RECORD_LEN)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "description too large"))?;
        let h = RecordHeader {
            kind: KIND_DESCRIPTION,
            track: NO_TRACK,
            flags: 0,
            capture_us: 0,
            arrival_us: 0,
            rtp_timestamp: 0,
            len,
        };
        let offset = self.write_record(&h, &data)?;
        self.local_tracks = tracks.len();
        let mut index = write_lock(&self.index);
        index.push_description(description, offset);
        index.end_offset = self.offset;
        Ok(())
    }

    /// Appends one unit (its `track` numbers the track in the current description) and
    /// publishes its index entry.
    pub fn append(&mut self, unit: &MediaUnit) -> io::Result<()> {
        if unit.track >= self.local_tracks || unit.track >= usize::from(NO_TRACK) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "unit for track {} but the description has {} tracks",
                    unit.track, self.local_tracks
                ),
            ));
        }
        let len = u32::try_from(unit.data.len())
            .ok()
            .filter(|&l| l <= MAX_RECORD_LEN)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "media unit over 64 MiB"))?;
        let h = RecordHeader {
            kind: KIND_MEDIA,
            track: u8::try_from(unit.track).unwrap_or(NO_TRACK),
            flags: unit_flags(unit),
            capture_us: unit.capture_us,
            arrival_us: unit.arrival_us,
            rtp_timestamp: unit.rtp_timestamp,
            len,
        };
        let offset = self.write_record(&h, &unit.data)?;
        // The track was checked against the description above, so indexing cannot fail.
        if let Err(e) = write_lock(&self.index).push_media(
            unit.track,
            unit.capture_us,
            unit.arrival_us,
            h.flags,
            offset,
            len,
        ) {
            tracing::error!("recording index refused a unit it was given: {e}");
        }
        Ok(())
    }

    /// Writes a record with one system call; on failure, cuts the file back to the record's
    /// start so the file stays readable. Returns the record's offset.
    fn write_record(&mut self, h: &RecordHeader, data: &[u8]) -> io::Result<u64> {
        self.buf.clear();
        encode_record(h, data, &mut self.buf);
        let offset = self.offset;
        if let Err(e) = self.file.write_all(&self.buf) {
            let _ = self.file.set_len(offset);
            let _ = self.file.seek(SeekFrom::Start(offset));
            return Err(e);
        }
        self.offset += self.buf.len() as u64;
        if self.buf.capacity() > 4 << 20 {
            self.buf = Vec::with_capacity(64 * 1024);
        }
        Ok(offset)
    }

    /// Records are written as they are appended, so this only flushes the OS-level handle
    /// (a no-op for files); kept so callers can flush on their own schedule.
    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    /// Forces the data to the disk (`fsync`): survives a power cut, not just a killed process.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// The shared index; the playback side takes read locks on it.
    pub fn index(&self) -> SharedIndex {
        Arc::clone(&self.index)
    }

    /// A read-only handle on the file for the playback side.
    pub fn reader(&self) -> Result<RecordingReader, RecordingError> {
        RecordingReader::attach(&self.path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.offset
    }

    pub fn is_empty(&self) -> bool {
        self.offset == 0
    }

    /// Whether the file is removed when the writer is dropped.
    pub fn is_temporary(&self) -> bool {
        self.temp.is_some()
    }
}

fn write_lock(index: &SharedIndex) -> std::sync::RwLockWriteGuard<'_, Index> {
    // A panic while holding the lock can only interrupt a Vec push; the index stays usable.
    index.write().unwrap_or_else(|e| e.into_inner())
}

/// Takes a read lock on a shared index (ignoring poisoning: see [`SharedIndex`]).
pub fn read_index(index: &SharedIndex) -> std::sync::RwLockReadGuard<'_, Index> {
    index.read().unwrap_or_else(|e| e.into_inner())
}

// ------------------------------------------------------------------------------------------
// Reader

/// One record of the file, as read by [`RecordingReader::records_from`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Record {
    Description(Description),
    /// `track` numbers the track in the description in force at this point of the file.
    Media(MediaUnit),
    /// A kind this version doesn't know (skipped when scanning).
    Unknown {
        kind: u8,
    },
}

/// Reads a recording through its own read-only handle.
pub struct RecordingReader {
    file: File,
    path: PathBuf,
    scratch: Vec<u8>,
    ignored_tail: u64,
    tail_problem: Option<String>,
}

impl fmt::Debug for RecordingReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_handle(
            f,
            "RecordingReader",
            &self.path,
            &[("ignored_tail", &self.ignored_tail)],
        )
    }
}

impl RecordingReader {
    /// Opens a recording, checks every record and rebuilds the index. A torn or corrupt tail
    /// (a killed writer) is not an error: the scan stops there (see [`Self::ignored_tail`]).
    pub fn open(path: impl AsRef<Path>) -> Result<(Self, Index), RecordingError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path)?;
        let file_len = file.metadata()?.len();
        let mut index = Index::new();
        let mut offset = FILE_HEADER_LEN;
        let mut problem: Option<String> = None;
        let mut scratch = Vec::with_capacity(256 * 1024);
        {
            let mut r = BufReader::with_capacity(SCAN_BUFFER, &file);
            read_file_header(&mut r)?;
            loop {
                let h = match next_record(&mut r, &mut scratch)? {
                    Next::End => break,
                    Next::Bad(reason) => {
                        problem = Some(reason.to_owned());
                        break;
                    }
                    Next::Record(h) => h,
                };
                let data = &scratch[RECORD_HEADER_LEN..];
                match h.kind {
                    KIND_DESCRIPTION => match Description::from_json(data) {
                        Ok(d) => {
                            index.push_description(d, offset);
                        }
                        Err(reason) => {
                            problem = Some(reason);
                            break;
                        }
                    },
                    KIND_MEDIA => {
                        if let Err(e) = index.push_media(
                            usize::from(h.track),
                            h.capture_us,
                            h.arrival_us,
                            h.flags,
                            offset,
                            h.len,
                        ) {
                            problem = Some(e.to_string());
                            break;
                        }
                    }
                    _ => {}
                }
                offset += h.total_len();
            }
        }
        let ignored_tail = file_len.saturating_sub(offset);
        if let Some(p) = &problem {
            tracing::warn!(
                path = %path.display(),
                offset,
                ignored_tail,
                "recording ends with a bad record ({p}); playing what comes before it"
            );
        }
        index.end_offset = offset;
        index.shrink_to_fit();
        let reader = RecordingReader {
            file,
            path,
            scratch,
            ignored_tail,
            tail_problem: problem,
        };
        Ok((reader, index))
    }

    /// Opens a read-only handle on a recording whose index is known already (one being
    /// written: the writer's [`SharedIndex`]); checks only the file header.
    pub fn attach(path: impl AsRef<Path>) -> Result<Self, RecordingError> {
        let path = path.as_ref().to_path_buf();
        let mut file = File::open(&path)?;
        read_file_header(&mut file)?;
        Ok(RecordingReader {
            file,
            path,
            scratch: Vec::new(),
            ignored_tail: 0,
            tail_problem: None,
        })
    }

    /// Bytes at the end of the file that `open` ignored (a torn or corrupt record onwards).
    pub fn ignored_tail(&self) -> u64 {
        self.ignored_tail
    }

    /// Why the scan stopped before the end of the file, if it did.
    pub fn tail_problem(&self) -> Option<&str> {
        self.tail_problem.as_deref()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the unit of an index entry (one read; CRC checked). `track` in the result is the
    /// entry's index track; the times are those recorded (not the index's adjusted time).
    pub fn read(&mut self, entry: &IndexEntry) -> io::Result<MediaUnit> {
        let total = RECORD_HEADER_LEN + entry.len as usize + RECORD_TRAILER_LEN;
        self.scratch.clear();
        self.scratch.resize(total, 0);
        self.file.seek(SeekFrom::Start(entry.offset))?;
        self.file.read_exact(&mut self.scratch)?;
        let bad = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("recording record at byte {}: {why}", entry.offset),
            )
        };
        let h = RecordHeader::decode(&self.scratch).map_err(bad)?;
        if h.kind != KIND_MEDIA || h.len != entry.len {
            return Err(bad("does not match the index"));
        }
        let body = RECORD_HEADER_LEN + h.len as usize;
        if !crc_matches(&self.scratch, body) {
            return Err(bad("CRC mismatch"));
        }
        Ok(h.media_unit(
            usize::from(entry.track),
            self.scratch[RECORD_HEADER_LEN..body].to_vec(),
        ))
    }

    /// Reads the records of the file in order from `offset` (a record boundary: an entry's
    /// or a description's offset, or [`FILE_HEADER_LEN`]). Yields `(offset, record)`; ends at
    /// the end of the file, after yielding an error for a torn or corrupt record.
    pub fn records_from(&mut self, offset: u64) -> io::Result<Records<'_>> {
        (&self.file).seek(SeekFrom::Start(offset))?;
        Ok(Records {
            reader: BufReader::with_capacity(256 * 1024, &self.file),
            offset,
            scratch: Vec::new(),
            done: false,
        })
    }
}

/// Iterator over a recording's records: see [`RecordingReader::records_from`].
pub struct Records<'a> {
    reader: BufReader<&'a File>,
    offset: u64,
    scratch: Vec<u8>,
    done: bool,
}

impl Iterator for Records<'_> {
    type Item = Result<(u64, Record), RecordingError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let offset = self.offset;
        let corrupt = |reason: String| Some(Err(RecordingError::Corrupt { offset, reason }));
        let h = match next_record(&mut self.reader, &mut self.scratch) {
            Err(e) => {
                self.done = true;
                return Some(Err(e.into()));
            }
            Ok(Next::End) => {
                self.done = true;
                return None;
            }
            Ok(Next::Bad(reason)) => {
                self.done = true;
                return corrupt(reason.to_owned());
            }
            Ok(Next::Record(h)) => h,
        };
        self.offset += h.total_len();
        let data = &self.scratch[RECORD_HEADER_LEN..];
        let record = match h.kind {
            KIND_DESCRIPTION => match Description::from_json(data) {
                Ok(d) => Record::Description(d),
                Err(reason) => {
                    self.done = true;
                    return corrupt(reason);
                }
            },
            KIND_MEDIA => Record::Media(h.media_unit(usize::from(h.track), data.to_vec())),
            kind => Record::Unknown { kind },
        };
        Some(Ok((offset, record)))
    }
}

// ------------------------------------------------------------------------------------------
// Temporary recordings

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A uniquely named file in [`std::env::temp_dir`], removed when dropped. (A killed player
/// leaves its temporary recording behind: `livecast-<pid>-<n>.lcrec` in the temp directory.)
#[derive(Debug)]
pub struct TempRecording {
    path: PathBuf,
}

impl TempRecording {
    /// Creates the (empty) file.
    pub fn new() -> io::Result<Self> {
        let dir = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        loop {
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!(
                "livecast-{}-{nanos:08x}{n}.lcrec",
                std::process::id()
            ));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(_) => return Ok(TempRecording { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempRecording {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), "could not remove temporary recording: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_known_values() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }

    #[test]
    fn header_round_trip() {
        let h = RecordHeader {
            kind: KIND_MEDIA,
            track: 2,
            flags: FLAG_KEYFRAME | FLAG_CAPTURE_FROM_SR,
            capture_us: -5,
            arrival_us: 1_700_000_000_000_000,
            rtp_timestamp: 0xDEAD_BEEF,
            len: 1234,
        };
        let mut b = Vec::new();
        h.encode(&mut b);
        assert_eq!(b.len(), RECORD_HEADER_LEN);
        #[rustfmt::skip]
        assert_eq!(&b[..8], &[
            b'L', b'R', b'E', b'C', // sync
            1,                      // kind = media
            2,                      // track
            0b101,                  // keyframe | capture_from_sr
            0,                      // reserved
        ]);
        assert_eq!(&b[28..32], &1234u32.to_le_bytes());
        assert_eq!(RecordHeader::decode(&b), Ok(h));
    }

    #[test]
    fn seek_points_compact_when_all_keyframes() {
        let mut idx = Index::new();
        let track = |i: usize, media: &str| TrackDesc {
            index: i,
            media: media.into(),
            codec: Codec::Unknown,
            payload_type: 96,
            clock_rate: 1000,
            fmtp: vec![],
            control_url: String::new(),
            label: Default::default(),
        };
        idx.push_description(
            Description {
                sdp: String::new(),
                tracks: vec![track(0, "audio"), track(1, "video")],
            },
            FILE_HEADER_LEN,
        );
        for i in 0..10i64 {
            idx.push_media(0, i, i, FLAG_KEYFRAME, 100 + i as u64, 1)
                .expect("track 0 exists");
            let f = if i % 4 == 0 { FLAG_KEYFRAME } else { 0 };
            idx.push_media(1, i, i, f, 100 + i as u64, 1)
                .expect("track 1 exists");
        }
        assert!(idx.tracks[0].seek.all && idx.tracks[0].seek.list.is_empty());
        assert_eq!(idx.tracks[1].seek.list, vec![0, 4, 8]);
        assert_eq!(idx.keyframe_at_or_before(1, 7), Some(4));
        assert_eq!(idx.keyframe_at_or_before(0, 7), Some(7));
        assert_eq!(idx.keyframe_at_or_after(1, 5), Some(8));
        assert_eq!(idx.keyframe_at_or_after(1, 9), None);
        assert_eq!(idx.keyframe_at_or_before(1, -1), None);

        // Seeks on the video track (keyframes at entries 0, 4, 8; entry i at time i).
        let plan = |t, next| {
            let p = idx.seek_plan(1, t, next).unwrap();
            (p.keyframe, p.from, p.last)
        };
        for (t, next, want, why) in [
            (6, None, (4, 4, 6), "a fresh decoder starts at the keyframe"),
            (
                6,
                Some(5),
                (4, 5, 6),
                "in the group, before the target: goes on",
            ),
            (
                6,
                Some(7),
                (4, 7, 6),
                "already at the target: nothing to decode",
            ),
            (6, Some(8), (4, 4, 6), "past the target: afresh"),
            (6, Some(3), (4, 4, 6), "in the group before: afresh"),
            (
                6,
                Some(4),
                (4, 4, 6),
                "about to decode the keyframe: afresh",
            ),
            (4, Some(5), (4, 5, 4), "at the keyframe, shown"),
            (-3, None, (0, 0, 0), "before the start: the first keyframe"),
            (100, Some(9), (8, 9, 9), "past the end: the last picture"),
        ] {
            assert_eq!(plan(t, next), want, "{why}");
        }
        let p = idx.seek_plan(1, 6, Some(5)).unwrap();
        assert!(!p.fresh() && p.len() == 2);
        assert!(idx.seek_plan(1, 6, Some(7)).unwrap().is_empty());
        assert!(idx.seek_plan(1, 6, None).unwrap().fresh());
        assert_eq!(idx.seek_plan(5, 6, None), None, "no such track");
    }
}
