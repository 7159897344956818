//! H.264 from MP4 and Matroska files, passed through without re-encoding (`--video
//! file:talk.mp4`, `file:talk.mkv`).
//!
//! The file's access units go out as they are, paced by their timestamps and looped: no
//! decoder, no encoder, the file's own picture size, frame rate, profile and keyframe cadence.
//! Each unit is turned from the container's length-prefixed form into Annex B, and every IDR
//! gets the `avcC` parameter sets in front unless it carries its own, so a viewer can start
//! from any keyframe.
//!
//! # Timing
//!
//! The containers give presentation times (Matroska gives nothing else). Units are stored in
//! decode order, which with B-frames is not presentation order, so a unit is sent at the
//! smallest presentation time among it and the [`LOOKAHEAD`] units after it: never after its
//! own presentation time, in decode order, and at the stream's rate. Its capture time (and
//! so its RTP timestamp) is its presentation time, counted from the first unit's send time on
//! the server's [`MediaClock`], which is where the audio sources start too: a file's video and
//! audio start together. Each loop adds the video's length (last presentation time plus one
//! frame); the audio loops on its own length, so a file whose tracks differ in length drifts
//! by that difference per loop.
//!
//! Keyframes come when the file has them: a joiner starts from the last one the fan-out kept
//! (see the video track's recent window in `lib.rs`), keyframe requests (PLI/FIR) cannot be
//! honoured.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context};
use livecast_proto::codec::h264::{self, nal};

use super::{spawn_source, MediaClock, SourceCtx, SourceHandle};

/// Units looked at beyond the current one to find its send time (covers the reordering depth
/// of every encoder setting in use: x264 at most 16 B-frames, most files 2-3).
pub const LOOKAHEAD: usize = 16;

/// One access unit, ready to packetize.
#[derive(Clone, Debug)]
pub struct EncodedUnit {
    /// Annex B, parameter sets in front of IDRs.
    pub annexb: Vec<u8>,
    /// Contains an IDR slice.
    pub is_idr: bool,
    /// Wall-clock capture time: the unit's presentation time on the server's clock.
    pub capture: SystemTime,
    /// The unit's number since the start (all loops).
    pub index: u64,
}

/// What a container holds, by its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Y4m,
    Mp4,
    Matroska,
}

/// Tells a video file's format by its first bytes (an unknown one is an error naming what
/// works).
///
/// # Errors
/// The file cannot be read, or is none of Y4M, MP4/MOV or Matroska/WebM.
pub fn file_kind(path: &Path) -> anyhow::Result<FileKind> {
    let mut head = [0u8; 12];
    let mut f =
        File::open(path).with_context(|| format!("cannot open video file {}", path.display()))?;
    let n = read_up_to(&mut f, &mut head)
        .with_context(|| format!("cannot read video file {}", path.display()))?;
    let head = &head[..n];
    if head.starts_with(b"YUV4MPEG2") {
        return Ok(FileKind::Y4m);
    }
    if head.starts_with(&[0x1a, 0x45, 0xdf, 0xa3]) {
        return Ok(FileKind::Matroska);
    }
    if head.len() >= 8
        && matches!(
            &head[4..8],
            b"ftyp" | b"moov" | b"mdat" | b"free" | b"wide" | b"skip" | b"styp"
        )
    {
        return Ok(FileKind::Mp4);
    }
    // A Y4M by name whose header is wrong: its own reader says what is wrong with it.
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("y4m"))
    {
        return Ok(FileKind::Y4m);
    }
    bail!(
        "{}: not a video file livecast reads: use a Y4M file (raw 4:2:0 pictures, encoded here) \
         or an MP4/MOV or MKV/WebM file with an H.264 video track (streamed as it is)",
        path.display()
    )
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The H.264 track of a file, as the SDP needs it.
#[derive(Clone, Debug)]
pub struct FileVideoInfo {
    pub width: u32,
    pub height: u32,
    /// Frames per second, rounded (for the SDP's `a=framerate` and the banner).
    pub fps: u32,
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
    /// E.g. `file talk.mp4 1280x720@29.97 (H.264 High, passed through)`.
    pub description: String,
    /// Units come in a different order than they are shown (B-frames), seen in the first
    /// [`LOOKAHEAD`] units.
    pub reordered: bool,
    /// The video's length as the container gives it: one loop (the same file's audio loops
    /// on it too). `None`: not given; the loop is then the last picture's time plus a frame.
    pub loop_length: Option<Duration>,
}

/// One sample of the file in decode order; times in nanoseconds from the file's origin.
struct Sample {
    pts: i64,
    /// Length-prefixed NAL units.
    data: Vec<u8>,
}

/// A container read sample by sample, from the start again after [`Demuxer::rewind`].
trait Demuxer: Send {
    /// The next sample of the H.264 track in decode order; `None` at the end.
    fn next_sample(&mut self) -> anyhow::Result<Option<Sample>>;
    fn rewind(&mut self) -> anyhow::Result<()>;
}

/// What every container gives.
struct Track {
    avcc: h264::AvcConfig,
    width: u32,
    height: u32,
    /// Nominal frame duration if the container says it (ns).
    frame_ns: Option<i64>,
    /// The video's length if the container says it.
    length: Option<Duration>,
}

struct Mp4File {
    path: PathBuf,
    reader: mp4::Mp4Reader<BufReader<File>>,
    track_id: u32,
    timescale: u32,
    next: u32,
    count: u32,
}

fn open_mp4(path: &Path) -> anyhow::Result<(Mp4File, Track)> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = f.metadata()?.len();
    let reader = mp4::Mp4Reader::read_header(BufReader::new(f), size)
        .map_err(|e| anyhow!("{}: not a readable MP4 file: {e}", path.display()))?;
    let mut other = None;
    let mut found = None;
    for t in reader.tracks().values() {
        if !matches!(t.track_type(), Ok(mp4::TrackType::Video)) {
            continue;
        }
        match t.media_type() {
            Ok(mp4::MediaType::H264) => {
                found = Some(t);
                break;
            }
            Ok(m) => other = Some(m.to_string()),
            Err(_) => other = Some("an unsupported codec".to_owned()),
        }
    }
    let Some(t) = found else {
        return Err(not_h264(path, other.as_deref()));
    };
    let avc1 = t
        .trak
        .mdia
        .minf
        .stbl
        .stsd
        .avc1
        .as_ref()
        .context("avc1 sample entry")?;
    let avcc = h264::AvcConfig {
        length_size: usize::from(avc1.avcc.length_size_minus_one & 3) + 1,
        sps: avc1
            .avcc
            .sequence_parameter_sets
            .iter()
            .map(|n| n.bytes.clone())
            .collect(),
        pps: avc1
            .avcc
            .picture_parameter_sets
            .iter()
            .map(|n| n.bytes.clone())
            .collect(),
    };
    let track = Track {
        avcc,
        width: u32::from(t.width()),
        height: u32::from(t.height()),
        frame_ns: None,
        length: Some(t.duration()).filter(|d| !d.is_zero()),
    };
    let file = Mp4File {
        path: path.to_owned(),
        track_id: t.track_id(),
        timescale: t.timescale().max(1),
        count: t.sample_count(),
        next: 1,
        reader,
    };
    if file.count == 0 {
        bail!("{}: the H.264 track has no samples", path.display());
    }
    Ok((file, track))
}

impl Demuxer for Mp4File {
    fn next_sample(&mut self) -> anyhow::Result<Option<Sample>> {
        while self.next <= self.count {
            let id = self.next;
            self.next += 1;
            let s = self
                .reader
                .read_sample(self.track_id, id)
                .map_err(|e| anyhow!("{}: sample {id}: {e}", self.path.display()))?;
            let Some(s) = s else { continue };
            let ticks = i128::from(s.start_time) + i128::from(s.rendering_offset);
            let pts = ticks * 1_000_000_000 / i128::from(self.timescale);
            return Ok(Some(Sample {
                pts: i64::try_from(pts).unwrap_or(i64::MAX),
                data: s.bytes.to_vec(),
            }));
        }
        Ok(None)
    }

    fn rewind(&mut self) -> anyhow::Result<()> {
        self.next = 1;
        Ok(())
    }
}

struct MkvFile {
    path: PathBuf,
    file: matroska_demuxer::MatroskaFile<BufReader<File>>,
    track: u64,
    /// Nanoseconds per timestamp tick.
    scale: u64,
    frame: matroska_demuxer::Frame,
}

fn open_mkv(path: &Path) -> anyhow::Result<(MkvFile, Track)> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let file = matroska_demuxer::MatroskaFile::open(BufReader::new(f))
        .map_err(|e| anyhow!("{}: not a readable Matroska file: {e}", path.display()))?;
    let mut other = None;
    let mut found = None;
    for t in file.tracks() {
        if t.track_type() != matroska_demuxer::TrackType::Video {
            continue;
        }
        if t.codec_id() == "V_MPEG4/ISO/AVC" {
            found = Some(t);
            break;
        }
        other = Some(match t.codec_id() {
            "V_MPEGH/ISO/HEVC" => "H.265".to_owned(),
            "V_VP8" => "VP8".to_owned(),
            "V_VP9" => "VP9".to_owned(),
            "V_AV1" => "AV1".to_owned(),
            id => id.to_owned(),
        });
    }
    let Some(t) = found else {
        return Err(not_h264(path, other.as_deref()));
    };
    let private = t
        .codec_private()
        .with_context(|| format!("{}: the H.264 track has no CodecPrivate", path.display()))?;
    let avcc = h264::parse_avcc(private)
        .map_err(|e| anyhow!("{}: the H.264 track's avcC: {e}", path.display()))?;
    let (width, height) = t.video().map_or((0, 0), |v| {
        (
            u32::try_from(v.pixel_width().get()).unwrap_or(0),
            u32::try_from(v.pixel_height().get()).unwrap_or(0),
        )
    });
    let track = Track {
        avcc,
        width,
        height,
        frame_ns: t
            .default_duration()
            .and_then(|d| i64::try_from(d.get()).ok()),
        // The segment's duration, in timestamp ticks: the longer of the file's tracks.
        length: file
            .info()
            .duration()
            .filter(|d| d.is_finite() && *d > 0.0)
            .map(|d| Duration::from_nanos((d * file.info().timestamp_scale().get() as f64) as u64)),
    };
    let mkv = MkvFile {
        path: path.to_owned(),
        track: t.track_number().get(),
        scale: file.info().timestamp_scale().get(),
        file,
        frame: matroska_demuxer::Frame::default(),
    };
    Ok((mkv, track))
}

impl Demuxer for MkvFile {
    fn next_sample(&mut self) -> anyhow::Result<Option<Sample>> {
        loop {
            let more = self
                .file
                .next_frame(&mut self.frame)
                .map_err(|e| anyhow!("{}: {e}", self.path.display()))?;
            if !more {
                return Ok(None);
            }
            if self.frame.track != self.track {
                continue;
            }
            let pts = u128::from(self.frame.timestamp) * u128::from(self.scale);
            return Ok(Some(Sample {
                pts: i64::try_from(pts).unwrap_or(i64::MAX),
                data: std::mem::take(&mut self.frame.data),
            }));
        }
    }

    fn rewind(&mut self) -> anyhow::Result<()> {
        // Reopened rather than sought: `seek(0)` gives the first frame *after* 0.
        let (again, _) = open_mkv(&self.path)?;
        *self = again;
        Ok(())
    }
}

fn not_h264(path: &Path, other: Option<&str>) -> anyhow::Error {
    let what = other.map_or_else(
        || "has no video track".to_owned(),
        |c| format!("has {c} video, not H.264"),
    );
    anyhow!(
        "{}: {what}. Files are streamed without re-encoding, so the video must be H.264: \
         convert it with `ffmpeg -i {} -c:v libx264 -c:a copy talk.mp4`, or give a Y4M file \
         (encoded here)",
        path.display(),
        path.display()
    )
}

/// An open file's H.264 track, its units in decode order with send and capture times, looping.
pub struct UnitReader {
    demux: Box<dyn Demuxer>,
    length_size: usize,
    /// SPS and PPS as Annex B, put in front of IDRs that lack them.
    parameter_sets: Vec<u8>,
    /// Read ahead, decode order.
    ahead: VecDeque<Sample>,
    /// The file's origin: the first unit's send time (ns).
    origin: Option<i64>,
    /// Added to every time: the lengths of the loops before this one (ns).
    loop_offset: i64,
    /// Largest presentation time of this loop, and the frame duration (the container's, or
    /// from the rate measured at open).
    max_pts: i64,
    frame_ns: i64,
    last_send: i64,
    ended: bool,
    index: u64,
    pub info: FileVideoInfo,
}

/// A unit with its times, in ns on the stream's timeline (0: the first unit's send time).
pub struct TimedUnit {
    pub send_at: i64,
    pub capture_at: i64,
    pub annexb: Vec<u8>,
    pub is_idr: bool,
    pub index: u64,
}

impl UnitReader {
    /// Opens `path` (MP4/MOV or Matroska/WebM) and checks it has an H.264 track.
    ///
    /// # Errors
    /// An unreadable file, no H.264 video (the message says what would work), or parameter
    /// sets that do not parse.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let (demux, track): (Box<dyn Demuxer>, Track) = match file_kind(path)? {
            FileKind::Mp4 => {
                let (d, t) = open_mp4(path)?;
                (Box::new(d), t)
            }
            FileKind::Matroska => {
                let (d, t) = open_mkv(path)?;
                (Box::new(d), t)
            }
            FileKind::Y4m => bail!("{} is a Y4M file, not a container", path.display()),
        };
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Self::new(demux, track, &name).map_err(|e| anyhow!("{}: {e:#}", path.display()))
    }

    fn new(demux: Box<dyn Demuxer>, track: Track, name: &str) -> anyhow::Result<Self> {
        let (Some(sps), Some(pps)) = (track.avcc.sps.first(), track.avcc.pps.first()) else {
            bail!("the H.264 track carries no SPS/PPS in its header");
        };
        let sps_info = h264::parse_sps(sps).map_err(|e| anyhow!("the H.264 track's SPS: {e}"))?;
        let (width, height) = if sps_info.width > 0 && sps_info.height > 0 {
            (sps_info.width, sps_info.height)
        } else {
            (track.width, track.height)
        };
        let mut parameter_sets = Vec::new();
        for n in track.avcc.sps.iter().chain(&track.avcc.pps) {
            parameter_sets.extend_from_slice(&[0, 0, 0, 1]);
            parameter_sets.extend_from_slice(n);
        }
        let mut r = Self {
            demux,
            length_size: track.avcc.length_size,
            parameter_sets,
            ahead: VecDeque::new(),
            origin: None,
            loop_offset: 0,
            max_pts: i64::MIN,
            frame_ns: track.frame_ns.unwrap_or(0),
            last_send: i64::MIN,
            ended: false,
            index: 0,
            info: FileVideoInfo {
                width,
                height,
                fps: 0,
                sps: sps.clone(),
                pps: pps.clone(),
                description: String::new(),
                reordered: false,
                loop_length: track.length,
            },
        };
        r.fill()?;
        let fps = r.measured_fps().or(sps_info.fps).unwrap_or(30.0);
        if r.frame_ns == 0 {
            r.frame_ns = (1e9 / fps.max(1.0)) as i64;
        }
        r.info.fps = (fps.round() as u32).clamp(1, 240);
        r.info.reordered = r
            .ahead
            .iter()
            .zip(r.ahead.iter().skip(1))
            .any(|(a, b)| b.pts < a.pts);
        r.info.description = format!(
            "file {name} {width}x{height}@{fps:.2} (H.264 {}, passed through)",
            profile_name(sps_info.profile_idc),
        );
        if r.ahead.is_empty() {
            bail!("the H.264 track has no samples");
        }
        Ok(r)
    }

    /// The frame rate from the read-ahead's presentation times (sorted, median step).
    fn measured_fps(&self) -> Option<f64> {
        let mut pts: Vec<i64> = self.ahead.iter().map(|s| s.pts).collect();
        pts.sort_unstable();
        let mut steps: Vec<i64> = pts
            .windows(2)
            .map(|w| w[1] - w[0])
            .filter(|&d| d > 0)
            .collect();
        if steps.is_empty() {
            return None;
        }
        steps.sort_unstable();
        let step = steps[steps.len() / 2];
        Some(1e9 / step as f64)
    }

    fn fill(&mut self) -> anyhow::Result<()> {
        while self.ahead.len() <= LOOKAHEAD && !self.ended {
            match self.demux.next_sample()? {
                Some(s) => self.ahead.push_back(s),
                None => self.ended = true,
            }
        }
        Ok(())
    }

    /// The next unit; at the end of the file the next loop's first.
    ///
    /// # Errors
    /// A read error, or a sample whose NAL lengths run past its end.
    pub fn next_unit(&mut self) -> anyhow::Result<TimedUnit> {
        self.fill()?;
        if self.ahead.is_empty() {
            // End of this loop: the next starts one frame after the last picture.
            self.loop_offset +=
                self.max_pts.saturating_add(self.frame_ns) - self.origin.unwrap_or(0);
            self.max_pts = i64::MIN;
            self.demux.rewind()?;
            self.ended = false;
            self.fill()?;
            if self.ahead.is_empty() {
                bail!("the file has no samples after a rewind");
            }
        }
        let send_pts = self
            .ahead
            .iter()
            .map(|s| s.pts)
            .min()
            .context("read-ahead is empty")?;
        let sample = self.ahead.pop_front().context("read-ahead is empty")?;
        let origin = *self.origin.get_or_insert(send_pts);
        self.max_pts = self.max_pts.max(sample.pts);
        let send_at = (self.loop_offset + send_pts - origin).max(self.last_send);
        self.last_send = send_at;
        let mut annexb = Vec::with_capacity(sample.data.len() + self.parameter_sets.len() + 16);
        h264::length_prefixed_to_annexb(&sample.data, self.length_size, &mut annexb)
            .map_err(|e| anyhow!("sample {}: {e}", self.index))?;
        let types: Vec<u8> = h264::split_annexb(&annexb).map(h264::nal_type).collect();
        let is_idr = types.contains(&nal::IDR);
        if is_idr && !types.contains(&nal::SPS) {
            let mut with = self.parameter_sets.clone();
            with.extend_from_slice(&annexb);
            annexb = with;
        }
        let unit = TimedUnit {
            send_at,
            capture_at: self.loop_offset + sample.pts - origin,
            annexb,
            is_idr,
            index: self.index,
        };
        self.index += 1;
        Ok(unit)
    }
}

fn profile_name(profile_idc: u8) -> &'static str {
    match profile_idc {
        66 => "Baseline",
        77 => "Main",
        88 => "Extended",
        100 => "High",
        110 => "High 10",
        122 => "High 4:2:2",
        244 => "High 4:4:4",
        _ => "(other profile)",
    }
}

/// Opens `path` and starts a thread sending its H.264 units on `out` in real time, looping.
///
/// # Errors
/// See [`UnitReader::open`].
pub fn start(
    path: &Path,
    clock: MediaClock,
    out: SyncSender<EncodedUnit>,
) -> anyhow::Result<(SourceHandle, FileVideoInfo)> {
    let mut reader = UnitReader::open(path)?;
    let info = reader.info.clone();
    if info.reordered {
        tracing::info!(
            "{}: the video has B-frames: players show it a few pictures later than live \
             (livecast-player drops about one in four at its live edge for now; \
             `-c:v libx264 -bf 0` makes a file without)",
            path.display()
        );
    }
    let handle = spawn_source(
        "video-file",
        info.description.clone(),
        SourceCtx::new(),
        move |ctx| {
            // The file's timeline starts now on the shared clock (the audio starts at its
            // epoch; started together, they are within a few ms of each other).
            let start = clock.epoch.elapsed();
            loop {
                let unit = match reader.next_unit() {
                    Ok(u) => u,
                    Err(e) => {
                        tracing::error!("video file: {e:#}; the video stops");
                        return;
                    }
                };
                let at = |ns: i64| start + Duration::from_nanos(u64::try_from(ns).unwrap_or(0));
                if !ctx.sleep_until(clock.epoch + at(unit.send_at)) {
                    return;
                }
                let item = EncodedUnit {
                    annexb: unit.annexb,
                    is_idr: unit.is_idr,
                    capture: clock.epoch_wall + at(unit.capture_at),
                    index: unit.index,
                };
                if !ctx.emit(&out, item, "video") {
                    return;
                }
            }
        },
    )?;
    Ok((handle, info))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples from memory, as a container would give them.
    struct Samples {
        all: Vec<(i64, Vec<u8>)>,
        next: usize,
    }

    impl Demuxer for Samples {
        fn next_sample(&mut self) -> anyhow::Result<Option<Sample>> {
            let s = self.all.get(self.next).map(|(pts, data)| Sample {
                pts: *pts,
                data: data.clone(),
            });
            self.next += 1;
            Ok(s)
        }

        fn rewind(&mut self) -> anyhow::Result<()> {
            self.next = 0;
            Ok(())
        }
    }

    /// A 64x64 Baseline SPS and a PPS.
    const SPS: [u8; 11] = [
        0x67, 0x42, 0xc0, 0x0a, 0x8c, 0x8d, 0x42, 0x12, 0x01, 0xe1, 0x08,
    ];
    const PPS: [u8; 4] = [0x68, 0xce, 0x3c, 0x80];

    /// The track of [`SPS`] and [`PPS`], nothing else said by the container.
    fn test_track() -> Track {
        Track {
            avcc: h264::AvcConfig {
                length_size: 4,
                sps: vec![SPS.to_vec()],
                pps: vec![PPS.to_vec()],
            },
            width: 0,
            height: 0,
            frame_ns: None,
            length: None,
        }
    }

    fn unit(nal_type: u8, n: u8) -> Vec<u8> {
        vec![0, 0, 0, 3, nal_type | 0x60, 0x88, n]
    }

    #[test]
    fn b_frames_are_sent_in_decode_order_by_presentation_time_and_loop() {
        let f = 40_000_000; // 25 fps
                            // Decode order I0 P3 B1 B2 P6 B4 B5, as x264 with two B-frames writes it.
        let order = [(0, 5), (3, 1), (1, 1), (2, 1), (6, 1), (4, 1), (5, 1)];
        let demux = Samples {
            all: order
                .iter()
                .map(|&(k, t)| (k * f + 80_000_000, unit(t, k as u8)))
                .collect(),
            next: 0,
        };
        let mut r = UnitReader::new(Box::new(demux), test_track(), "t.mp4").unwrap();
        assert_eq!((r.info.width, r.info.height, r.info.fps), (64, 64, 25));
        assert!(r.info.reordered);
        let units: Vec<TimedUnit> = (0..14).map(|_| r.next_unit().unwrap()).collect();
        let capture: Vec<i64> = units.iter().map(|u| u.capture_at / f).collect();
        // Presentation times from the first picture's, the second loop 7 frames on.
        assert_eq!(capture, [0, 3, 1, 2, 6, 4, 5, 7, 10, 8, 9, 13, 11, 12]);
        let send: Vec<i64> = units.iter().map(|u| u.send_at / f).collect();
        // Each at the earliest presentation time at or after it in decode order: in order,
        // never after its own, and at the stream's rate.
        assert_eq!(send, [0, 1, 1, 2, 4, 4, 5, 7, 8, 8, 9, 11, 11, 12]);
        assert!(units.iter().all(|u| u.send_at <= u.capture_at));
        // The IDRs carry the parameter sets; the others are as they were.
        for u in &units {
            let types: Vec<u8> = h264::split_annexb(&u.annexb).map(h264::nal_type).collect();
            if u.is_idr {
                assert_eq!(types, [nal::SPS, nal::PPS, nal::IDR]);
            } else {
                assert_eq!(types, [nal::SLICE]);
            }
        }
        assert_eq!(units.iter().filter(|u| u.is_idr).count(), 2);
    }

    #[test]
    fn a_sample_whose_lengths_run_past_its_end_is_an_error() {
        let demux = Samples {
            all: vec![(0, unit(5, 0)), (40_000_000, vec![0, 0, 0, 9, 0x41])],
            next: 0,
        };
        let mut r = UnitReader::new(Box::new(demux), test_track(), "t.mkv").unwrap();
        assert!(r.next_unit().is_ok());
        let e = r.next_unit().err().expect("a truncated sample");
        assert!(format!("{e:#}").contains("sample 1"), "{e:#}");
    }

    #[test]
    fn unknown_and_missing_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let txt = dir.path().join("notes.mp4");
        std::fs::write(&txt, b"hello, this is text").unwrap();
        let e = format!("{:#}", file_kind(&txt).unwrap_err());
        assert!(e.contains("not a video file") && e.contains("H.264"), "{e}");
        let e = format!(
            "{:#}",
            file_kind(&dir.path().join("absent.mkv")).unwrap_err()
        );
        assert!(e.contains("cannot open video file"), "{e}");
        let y4m = dir.path().join("a.y4m");
        std::fs::write(&y4m, b"YUV4MPEG2 W16 H16 F30:1\n").unwrap();
        assert_eq!(file_kind(&y4m).unwrap(), FileKind::Y4m);
    }
}
