//! The playback loop: the timeline says where the playhead is; the units due there are read
//! back from the recording, decoded, and handed to the audio output and the newest-picture
//! channel; the status the viewer sees is published from here.
//!
//! Playback always reads back from the recording, live or not, so "live" is simply the
//! playhead sitting at the recording's edge, and pause, seek, rewind and fast-forward need no
//! special cases. `Playback` is made of parts with one job each: the `Clock` (timeline and
//! live-delay policy), the `VideoPresenter`, the `AudioFeeder`, the `CaptionTrack`, the
//! `ChatTrack` and the `Probes` (measurements for the report).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use livecast_proto::codec::{h264, Codec};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::api::*;
use super::audio_out::AudioSink;
use super::captions::{ChatLines, CueBuilder};
use super::decode::{AudioDecoder, Picture, VideoDecoder};
use super::fast_seek::FastSeek;
use super::live_edge::{LiveEdge, RecoveryHold, AUDIO_JITTER_PERCENTILE};
use super::net::{NetControl, NetStats};
use super::recorder::{lock, Shared};
use super::recording::{read_index, Index, IndexEntry, RecordingReader, SeekPlan, SharedIndex};
use super::report::{
    av_offset, CaptionBlockReport, CaptionReport, ChatReport, Percentiles, Report,
};
use super::timeline::Timeline;
use super::unit::{MediaKind, MediaUnit};

/// How far ahead of the playhead audio is handed to the output.
const AUDIO_LEAD_US: i64 = super::report::AUDIO_LEAD_MS * 1000;
/// Distance from the live edge until the first units have arrived (then [`LiveEdge`] sets it
/// from the measured jitter).
const BASE_LIVE_DELAY_US: i64 = 40_000;
/// While following live, a playhead this far behind the live limit (an audio device or
/// scheduling hiccup, which the audio master clock would otherwise keep forever) skips ahead.
const LIVE_CATCH_UP_US: i64 = 40_000;
/// Call mode: the same, as small as a LAN allows.
const CALL_LIVE_DELAY_US: i64 = 20_000;
/// At live, video may be shown up to this far ahead of the playhead (which audio needs
/// further behind the newest data: an Opus packet is whole only 20 ms after its time), when
/// it has arrived: lip sync stays within it.
const VIDEO_LEAD_US: i64 = 15_000;
/// If decoding falls this far behind the playhead, skip to the next keyframe.
const MAX_VIDEO_LAG_US: i64 = 1_000_000;
/// Playback loop period when idle.
const TICK: Duration = Duration::from_millis(4);
/// How often the status is published.
const STATUS_PERIOD: Duration = Duration::from_millis(100);
/// Caption lines older than this before the playhead are long gone from the screen.
const CAPTION_WINDOW_US: i64 = 60_000_000;

/// Takes the commands queued since the last pass, leaving out each drag position
/// ([`Command::Scrub`]) that a newer one follows at once: only the knob's latest position is
/// worth a picture.
fn coalesce_scrubs(queued: &mut Vec<Command>) -> Vec<Command> {
    let mut out: Vec<Command> = Vec::with_capacity(queued.len());
    for cmd in queued.drain(..) {
        if matches!(cmd, Command::Scrub(_)) && matches!(out.last(), Some(Command::Scrub(_))) {
            out.pop();
        }
        out.push(cmd);
    }
    out
}

fn wall_us() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Microseconds of `t` since `base`, on the monotonic clock.
fn mono_us(base: Instant, t: Instant) -> i64 {
    if t >= base {
        t.duration_since(base).as_micros() as i64
    } else {
        -(base.duration_since(t).as_micros() as i64)
    }
}

/// A request for the report: the playback loop answers with one built then.
pub(crate) type ReportRequest = std_mpsc::Sender<Report>;

/// The recording read back: its index (shared with the recorder, which appends to it) and a
/// read-only handle on its file.
struct Recorded {
    index: SharedIndex,
    reader: RecordingReader,
}

impl Recorded {
    /// The entries of `track` from `*next` on; moves `*next` past them.
    fn new_entries(&self, track: usize, next: &mut usize) -> Vec<IndexEntry> {
        let idx = read_index(&self.index);
        let new = idx.entries(track).get(*next..).unwrap_or_default().to_vec();
        *next += new.len();
        new
    }

    /// Reads one unit back; a read error is logged and the unit skipped.
    fn read(&mut self, entry: &IndexEntry) -> Option<MediaUnit> {
        self.reader
            .read(entry)
            .map_err(|e| warn!("reading the recording: {e}"))
            .ok()
    }
}

/// The playhead: the timeline, and where it sits against the live edge.
struct Clock {
    timeline: Timeline,
    is_file: bool,
    /// The timeline's jump count last acted on (a jump restarts decoding).
    seen_jumps: u64,
    /// Times the playhead skipped ahead to stay live.
    live_catch_ups: u64,
    /// The local clock for [`LiveEdge`]: µs since this.
    epoch: Instant,
    /// Arrivals of the video and the audio track: where each one's live limit is.
    video_edge: LiveEdge,
    audio_edge: LiveEdge,
    /// The delay covers retransmissions while the path loses packets.
    recovery: RecoveryHold,
    /// Entries of the video and audio tracks seen so far.
    seen: (usize, usize),
}

impl Clock {
    fn new(call: bool, is_file: bool, now: Instant) -> Self {
        let delay = if call {
            CALL_LIVE_DELAY_US
        } else {
            BASE_LIVE_DELAY_US
        };
        Self {
            timeline: Timeline::new(delay, now),
            is_file,
            seen_jumps: 0,
            live_catch_ups: 0,
            epoch: now,
            video_edge: LiveEdge::new(),
            audio_edge: LiveEdge::covering(AUDIO_JITTER_PERCENTILE),
            recovery: RecoveryHold::default(),
            seen: (0, 0),
        }
    }

    /// The network side's latest figures: retransmissions asked for, the jitter buffer's wait.
    fn net_stats(&mut self, net: &NetStats, now: Instant) {
        let now_us = mono_us(self.epoch, now);
        let wait_us = (net.jitter_delay_ms * 1e3) as i64;
        self.recovery.net(net.nack_sent, wait_us, now_us);
    }

    /// Tells the live edges about the units recorded since the last call.
    fn arrivals(&mut self, idx: &Index, video: Option<usize>, audio: Option<usize>, now: Instant) {
        if self.is_file {
            return;
        }
        let now_us = mono_us(self.epoch, now);
        for (track, seen, edge) in [
            (video, &mut self.seen.0, &mut self.video_edge),
            (audio, &mut self.seen.1, &mut self.audio_edge),
        ] {
            let Some(t) = track else { continue };
            for e in idx.entries(t).get(*seen..).unwrap_or_default() {
                edge.arrived(e.time_us, now_us);
                *seen += 1;
            }
        }
    }

    /// Follows the recording's extent: a file's range, or the live edge. Live, the playhead
    /// may go as far as the audio track's adaptive limit (the video track's without audio):
    /// the live delay is what keeps it there behind the newest unit.
    fn follow(&mut self, start: Option<i64>, edge: i64, now: Instant) {
        if self.is_file {
            if let Some(s) = start {
                self.timeline.set_range(s, edge, now);
            }
            return;
        }
        self.timeline.set_live_edge(edge, now);
        let now_us = mono_us(self.epoch, now);
        let min_delay = self.recovery.min_delay_us(now_us);
        let limit = if self.seen.1 > 0 {
            self.audio_edge.limit_with_min_delay_us(now_us, min_delay)
        } else {
            self.video_edge.limit_with_min_delay_us(now_us, min_delay)
        };
        if let Some(limit) = limit {
            let delay = (edge - limit).max(0);
            if delay != self.timeline.live_delay_us() {
                self.timeline.set_live_delay(delay, now);
            }
        }
    }

    /// How far ahead of the playhead `pos` video is shown: at live at 1x, what has arrived
    /// up to the video track's own limit, at most [`VIDEO_LEAD_US`]; otherwise nothing.
    fn video_lead(&self, pos: i64, now: Instant) -> i64 {
        let t = &self.timeline;
        if self.is_file || !(t.following_live() && t.playing() && t.speed() == 1.0) {
            return 0;
        }
        self.video_edge
            .limit_us(mono_us(self.epoch, now))
            .map_or(0, |l| (l - pos).clamp(0, VIDEO_LEAD_US))
    }

    /// Live latency must not ratchet up: when following live at 1x and the playhead has
    /// fallen more than [`LIVE_CATCH_UP_US`] behind the live limit, jump back to live.
    /// Returns the new position if it jumped.
    fn catch_up_live(&mut self, now: Instant) -> Option<i64> {
        let t = &self.timeline;
        if self.is_file || !(t.following_live() && t.playing() && t.speed() == 1.0) {
            return None;
        }
        let behind_us = t.live_limit_us()? - t.position(now);
        if behind_us <= LIVE_CATCH_UP_US {
            return None;
        }
        self.timeline.go_live(now);
        self.seen_jumps = self.timeline.jumps();
        self.live_catch_ups += 1;
        debug!(behind_us, "caught up with live");
        Some(self.timeline.position(now))
    }

    /// The position to restart decoding at, if the timeline jumped since the last call.
    fn take_jump(&mut self, now: Instant) -> Option<i64> {
        if self.timeline.jumps() == self.seen_jumps {
            return None;
        }
        self.seen_jumps = self.timeline.jumps();
        Some(self.timeline.position(now))
    }

    fn at_live(&self, now: Instant) -> bool {
        !self.is_file && self.timeline.at_live(now)
    }
}

/// Measurements for the report (`--stats-json`, the benchmarks). Recording a sample is
/// O(1); the percentiles are worked out only when a report is asked for.
struct Probes {
    started: Instant,
    first_frame_ms: Option<f64>,
    /// Capture to shown, ms, for pictures shown at live with a sender-report clock.
    video_latencies: Vec<f64>,
    /// Capture to due at the output, ms.
    audio_latencies: Vec<f64>,
    /// White flashes shown and beeps heard: (timeline µs, monotonic µs since `started`).
    flashes: Vec<(i64, i64)>,
    beeps: Vec<(i64, i64)>,
    was_white: bool,
    /// When the last picture was shown while playing, and the longest wait between two.
    last_shown: Option<Instant>,
    longest_freeze: Duration,
    /// Waits over [`FREEZE_LISTED`]: (ms since `started` when it ended, length in ms).
    freezes: Vec<(f64, f64)>,
}

/// Waits between two pictures at least this long are listed in the report.
const FREEZE_LISTED: Duration = Duration::from_millis(250);

impl Probes {
    fn new(started: Instant) -> Self {
        Self {
            started,
            first_frame_ms: None,
            video_latencies: Vec::new(),
            audio_latencies: Vec::new(),
            flashes: Vec::new(),
            beeps: Vec::new(),
            was_white: false,
            last_shown: None,
            longest_freeze: Duration::ZERO,
            freezes: Vec::new(),
        }
    }

    /// The viewer paused, sought or changed speed: the wait until the next picture is theirs,
    /// not a freeze.
    fn restart_freeze_count(&mut self) {
        self.last_shown = None;
    }

    /// A picture shown at `at` (the playback loop's clock: the freeze measure).
    fn picture_shown(&mut self, pic: &Picture, time_us: i64, latency_ms: Option<f64>, at: Instant) {
        let now = Instant::now();
        if self.first_frame_ms.is_none() {
            let ms = now.duration_since(self.started).as_secs_f64() * 1e3;
            info!(ms = ms.round() as u64, "first picture");
            self.first_frame_ms = Some(ms);
        }
        self.video_latencies.extend(latency_ms);
        if let Some(last) = self.last_shown.replace(at) {
            let gap = at.saturating_duration_since(last);
            self.longest_freeze = self.longest_freeze.max(gap);
            if gap >= FREEZE_LISTED {
                let end = at.saturating_duration_since(self.started).as_secs_f64() * 1e3;
                self.freezes.push((end, gap.as_secs_f64() * 1e3));
            }
        }
        let white = pic.mean_luma > 200.0;
        if white && !self.was_white {
            self.flashes.push((time_us, mono_us(self.started, now)));
        }
        self.was_white = white;
    }

    fn beeps_heard(&mut self, onsets: Vec<(i64, Instant)>) {
        let started = self.started;
        self.beeps
            .extend(onsets.into_iter().map(|(t, at)| (t, mono_us(started, at))));
    }

    fn last_video_latency(&self) -> Option<f64> {
        self.video_latencies.last().copied()
    }
}

/// Decodes the video track and shows the newest picture.
struct VideoPresenter {
    track: Option<usize>,
    /// The next entry to decode.
    next: usize,
    dec: VideoDecoder,
    frame_tx: watch::Sender<Option<VideoFrame>>,
    size: (u32, u32),
    frames_shown: u64,
    /// Frames per second shown: (window start, frames shown then, last figure).
    fps_window: (Instant, u64, f64),
    /// With B-frames: pictures decoded ahead of the playhead, in presentation order, each
    /// with its time and its unit's capture facts (from a sender report, capture µs).
    held: VecDeque<(i64, Picture, bool, i64)>,
    /// Non-reference pictures skipped on the way to seeks' targets.
    seek_skipped: u64,
    /// The knob position previewed for good (nothing decoded since): with B-frames, its
    /// exact picture; else where decoding failed.
    previewed: Option<i64>,
    /// Pictures decoded and not shown (not on the way to a seek), before the first picture
    /// shown (a joiner's catch-up to live) and after it (late).
    skipped_before_first: u64,
    skipped_late: u64,
    /// Pictures never decoded: playback was so far behind that it went on at a keyframe.
    skipped_behind: u64,
    /// The seek decoder ([`FastSeek`]), made at the first seek that uses it; `Err` once it
    /// could not be made (seeks then go the usual way only).
    fast: Option<Result<FastSeek, ()>>,
    /// Units the seek decoder decoded.
    fast_decoded: u64,
    /// After a seek shown by the seek decoder: the entry through which `dec` must still
    /// decode, from `next` (the group's keyframe) and showing nothing, before it goes on.
    catch_up: Option<usize>,
}

/// With B-frames, how far ahead of the playhead units are decoded: the reference a B-frame
/// needs comes before it in decode order but is shown after it (the recording index's times
/// rise in decode order), and the decoder gives a picture out one unit later.
const REORDER_AHEAD_US: i64 = 250_000;

/// While the timeline knob is dragged, pictures decoded toward it per playback-loop pass
/// (about 10 ms of decoding at 720p on this project's 2-core machines).
const PREVIEW_STEP: usize = 8;

impl VideoPresenter {
    fn new(frame_tx: watch::Sender<Option<VideoFrame>>, now: Instant) -> Self {
        Self {
            track: None,
            next: 0,
            dec: VideoDecoder::new().expect("openh264 is built in (source feature)"),
            frame_tx,
            size: (0, 0),
            frames_shown: 0,
            fps_window: (now, 0, 0.0),
            held: VecDeque::new(),
            seek_skipped: 0,
            previewed: None,
            skipped_before_first: 0,
            skipped_late: 0,
            skipped_behind: 0,
            fast: None,
            fast_decoded: 0,
            catch_up: None,
        }
    }

    /// Where the decoder can go on from within the group it is in: the next entry (it has
    /// decoded the group from its keyframe on). Not with B-frames (pictures are held back),
    /// nor after a unit failed to decode (nothing would until the next keyframe).
    fn resume_point(&self) -> Option<usize> {
        if let Some(shown) = self.catch_up {
            // Once caught up ([`Self::plan`]), it stands just after the picture shown.
            return Some(shown + 1);
        }
        (!self.dec.reordering() && !self.dec.waiting_for_keyframe()).then_some(self.next)
    }

    /// The seek plan to `target`; a plan that goes on from where the decoder stands after a
    /// seek the seek decoder showed first brings the decoder there (a step forward, paused,
    /// costs the group once, then a picture a step).
    fn plan(&mut self, rec: &mut Recorded, v: usize, target: i64) -> Option<SeekPlan> {
        let plan = read_index(&rec.index).seek_plan(v, target, self.resume_point())?;
        if plan.fresh() || plan.is_empty() || self.catch_up.is_none() {
            return Some(plan);
        }
        self.finish_catch_up(rec);
        read_index(&rec.index).seek_plan(v, target, self.resume_point())
    }

    /// Starts the decoder afresh at `plan`'s keyframe, unless it goes on where it stands.
    fn start(&mut self, plan: &SeekPlan) {
        if plan.fresh() {
            if let Err(e) = self.dec.reset() {
                warn!("{e:#}");
            }
            self.held.clear();
            self.next = plan.keyframe;
            self.catch_up = None;
        }
    }

    /// Shows the picture at `target` at once: decoding from the keyframe at or before it (or
    /// the first after it), or on from where the decoder stands when that is in the same
    /// group before the target ([`SeekPlan`]).
    fn reposition(&mut self, rec: &mut Recorded, target: i64, cx: &mut ShowContext) {
        let Some(v) = self.track else { return };
        let Some(plan) = self.plan(rec, v, target) else {
            return;
        };
        self.start(&plan);
        if cx.at_live {
            // Back to live: the seek decoder's memory (about 15 MiB at 720p) is given back
            // until the next seek.
            self.fast = None;
        } else if plan.fresh() && !cx.playing && self.fast_seek(rec, &plan, cx) {
            return;
        }
        self.decode_through(rec, plan.last, true, cx);
        if self.dec.reordering() {
            // The picture at the target may still be in the decoder: a few more units,
            // then the latest picture at or before the target (or the first after it).
            let ahead = read_index(&rec.index).last_at_or_before(v, target + REORDER_AHEAD_US);
            if let Some(ahead) = ahead.filter(|a| *a >= self.next) {
                self.decode_through(rec, ahead, true, cx);
            }
            if !self.show_due(target, cx) {
                if let Some((t, pic, sr, capture)) = self.held.pop_front() {
                    self.show(pic, t, sr, capture, cx);
                }
            }
        }
    }

    /// A seek into another group, paused, with the seek decoder ([`FastSeek`]): the target's
    /// picture from it, shown at once; `dec` catches up out of sight when a later picture is
    /// due ([`Self::finish_catch_up`]). Not while playing nor at the live edge: the next
    /// picture is due at once there, and would wait for `dec` to decode the group again.
    /// Not with B-frames, nor over a damaged unit (the recorder marks the unit after a lost
    /// one damaged; libavcodec would hide the gap). `false` where it gave no picture: the
    /// caller seeks the usual way.
    fn fast_seek(&mut self, rec: &mut Recorded, plan: &SeekPlan, cx: &mut ShowContext) -> bool {
        if self.dec.reordering() {
            return false;
        }
        let Some(entries) = self.video_entries(rec, plan.keyframe, plan.last) else {
            return false;
        };
        if entries.iter().any(IndexEntry::damaged) {
            return false;
        }
        let Ok(fast) = self.fast.get_or_insert_with(|| {
            FastSeek::new().map_err(|e| debug!("seeks without the seek decoder: {e:#}"))
        }) else {
            return false;
        };
        fast.begin();
        let mut target = None;
        let mut skipped = 0;
        for (i, entry) in entries.iter().enumerate() {
            let Some(unit) = rec.read(entry) else {
                return false;
            };
            if h264::has_b_slice(&unit.data) {
                return false;
            }
            let is_last = i + 1 == entries.len();
            if !is_last && h264::is_disposable(&unit.data) {
                skipped += 1;
                continue;
            }
            fast.push(&unit.data, entry.keyframe());
            self.fast_decoded += 1;
            if is_last {
                target = Some((entry.time_us, unit.capture_from_sr, unit.capture_us));
            }
        }
        let (Some(pic), Some((t, sr, capture))) = (fast.finish(), target) else {
            debug!("the seek decoder gave no picture: decoding the seek with openh264");
            return false;
        };
        self.seek_skipped += skipped;
        self.show(pic, t, sr, capture, cx);
        self.previewed = None;
        self.catch_up = Some(plan.last);
        true
    }

    /// The video track's index entries `from..=last` (`None` where that is empty or runs
    /// past the end).
    fn video_entries(&self, rec: &Recorded, from: usize, last: usize) -> Option<Vec<IndexEntry>> {
        let idx = read_index(&rec.index);
        let e = idx.entries(self.track?);
        (from <= last && last < e.len()).then(|| e[from..=last].to_vec())
    }

    /// After a seek the seek decoder showed, once a later picture is due: `dec` decodes from
    /// the keyframe through the target, showing nothing (that picture is on screen), so it
    /// can go on from there.
    fn finish_catch_up(&mut self, rec: &mut Recorded) {
        let Some(last) = self.catch_up.take() else {
            return;
        };
        let Some(entries) = self.video_entries(rec, self.next, last) else {
            return;
        };
        let n = entries.len();
        for (i, entry) in entries.iter().enumerate() {
            let Some(unit) = rec.read(entry) else {
                continue;
            };
            if i + 1 < n && h264::is_disposable(&unit.data) {
                continue;
            }
            let _ = self.dec.decode(&unit.data, entry.keyframe(), false);
        }
        self.next = last + 1;
    }

    /// While the viewer drags the timeline knob to `target` (called again at every tick): in
    /// a new group, its keyframe is shown (one picture to decode); then the decoder goes on
    /// toward the target, at most [`PREVIEW_STEP`] pictures a call, so the picture at the
    /// knob is there by the time the knob is let go, and a fast drag never waits for a whole
    /// group. With B-frames, an exact seek each time.
    fn preview(&mut self, rec: &mut Recorded, target: i64, cx: &mut ShowContext) {
        let Some(v) = self.track else { return };
        if self.previewed == Some(target) {
            return;
        }
        if self.dec.reordering() {
            self.reposition(rec, target, cx);
            self.previewed = Some(target);
            return;
        }
        let Some(plan) = self.plan(rec, v, target) else {
            return;
        };
        if plan.is_empty() {
            return;
        }
        self.start(&plan);
        let upto = if plan.fresh() {
            plan.keyframe
        } else {
            plan.last.min(plan.from + PREVIEW_STEP - 1)
        };
        self.decode_through(rec, upto, true, cx);
        if self.dec.waiting_for_keyframe() {
            // A unit there did not decode: not again at every pass while the knob rests.
            self.previewed = Some(target);
        }
    }

    /// With B-frames: shows the latest held picture whose time has come (older ones due with
    /// it are dropped, as a late decoder would); whether one was shown.
    fn show_due(&mut self, pos: i64, cx: &mut ShowContext) -> bool {
        let mut due = None;
        while self.held.front().is_some_and(|h| h.0 <= pos) {
            due = self.held.pop_front();
        }
        match due {
            Some((t, pic, sr, capture)) => {
                self.show(pic, t, sr, capture, cx);
                true
            }
            None => false,
        }
    }

    /// Decodes what is due at `pos`, skipping ahead to a keyframe when too far behind.
    fn step(&mut self, rec: &mut Recorded, pos: i64, cx: &mut ShowContext) {
        self.decode_due(rec, pos, cx);
        if self.dec.reordering() {
            self.show_due(pos, cx);
        }
    }

    fn decode_due(&mut self, rec: &mut Recorded, pos: i64, cx: &mut ShowContext) {
        if cx.at_live {
            // However playback got there (a fast-forward too), the seek decoder's memory is
            // given back until the next seek.
            self.fast = None;
        }
        let Some(v) = self.track else { return };
        let ahead = if self.dec.reordering() {
            REORDER_AHEAD_US
        } else {
            0
        };
        // After a seek the seek decoder showed, what is due starts after its picture: the
        // group is decoded again only when a later picture is due (not while paused there),
        // and not at all when playback is so far past it that it goes on at a later keyframe.
        let from = self.catch_up.map_or(self.next, |shown| shown + 1);
        let (last_due, skip_to) = {
            let idx = read_index(&rec.index);
            let entries = idx.entries(v);
            let Some(last_due) = idx.last_at_or_before(v, pos + ahead) else {
                return;
            };
            if last_due < from || from >= entries.len() {
                return;
            }
            // Too far behind (slow decoder, long stall): skip ahead to a keyframe (one after
            // the group `dec` stands in).
            let lag = pos - entries[from].time_us;
            let skip = (lag > MAX_VIDEO_LAG_US)
                .then(|| idx.keyframe_at_or_before(v, pos))
                .flatten()
                .filter(|k| *k > self.next);
            (last_due, skip)
        };
        if let Some(k) = skip_to {
            debug!(from, to = k, "video behind; skipping to a keyframe");
            self.skipped_behind += k.saturating_sub(from) as u64;
            self.catch_up = None;
            self.next = k;
        } else {
            self.finish_catch_up(rec);
        }
        self.decode_through(rec, last_due, false, cx);
    }

    /// Decodes the video units from `self.next` through `last`, showing the last picture
    /// (each one with B-frames). `seeking`: on the way to a seek's target, pictures no other
    /// picture refers to ([`h264::is_disposable`]) are not decoded, except the target.
    fn decode_through(
        &mut self,
        rec: &mut Recorded,
        last: usize,
        seeking: bool,
        cx: &mut ShowContext,
    ) {
        self.previewed = None;
        let Some(entries) = self.video_entries(rec, self.next, last) else {
            return;
        };
        let n = entries.len();
        for (i, entry) in entries.iter().enumerate() {
            let Some(unit) = rec.read(entry) else {
                continue;
            };
            let is_last = i + 1 == n;
            let reordering = self.dec.reordering();
            if seeking && !is_last && !reordering && h264::is_disposable(&unit.data) {
                self.seek_skipped += 1;
                continue;
            }
            // With B-frames a picture's time is its own unit's capture time (the index's
            // are made monotonic), and every picture may be the one to show.
            let time = if reordering {
                unit.capture_us
            } else {
                entry.time_us
            };
            let convert = is_last || reordering;
            if !convert && !seeking {
                // Decoded to keep the decoder going, not shown: the playhead had passed it.
                if self.frames_shown == 0 {
                    self.skipped_before_first += 1;
                } else {
                    self.skipped_late += 1;
                }
            }
            if let Some((pic, t)) = self
                .dec
                .decode_at(&unit.data, entry.keyframe(), convert, time)
            {
                if self.dec.reordering() {
                    self.held.push_back((t, pic, unit.capture_from_sr, t));
                } else {
                    self.show(pic, t, unit.capture_from_sr, unit.capture_us, cx);
                }
            }
        }
        self.next = last + 1;
    }

    fn show(
        &mut self,
        pic: Picture,
        time_us: i64,
        capture_from_sr: bool,
        capture_us: i64,
        cx: &mut ShowContext,
    ) {
        let latency_ms =
            (capture_from_sr && cx.at_live).then(|| (wall_us() - capture_us) as f64 / 1000.0);
        cx.probes.picture_shown(&pic, time_us, latency_ms, cx.now);
        self.size = (pic.width, pic.height);
        self.frames_shown += 1;
        let start = cx.start_us.unwrap_or(time_us);
        let _ = self.frame_tx.send(Some(VideoFrame {
            width: pic.width,
            height: pic.height,
            rgba: Arc::new(pic.rgba),
            position: Duration::from_micros((time_us - start).max(0) as u64),
        }));
    }

    /// Frames per second shown over the last second.
    fn fps(&mut self, now: Instant) -> f64 {
        let (t0, n0, fps) = self.fps_window;
        let dt = now.duration_since(t0).as_secs_f64();
        if dt >= 1.0 {
            let f = (self.frames_shown - n0) as f64 / dt;
            self.fps_window = (now, self.frames_shown, f);
            f
        } else {
            fps
        }
    }
}

/// What showing a picture needs from the rest of playback.
struct ShowContext<'a> {
    /// The playback loop's clock.
    now: Instant,
    start_us: Option<i64>,
    at_live: bool,
    /// The timeline plays (a seek's next picture is due at once).
    playing: bool,
    probes: &'a mut Probes,
}

/// Decodes the audio track ahead of the playhead into the audio output, which is the
/// master clock while it plays.
struct AudioFeeder {
    track: Option<usize>,
    /// The next entry to decode.
    next: usize,
    sink: AudioSink,
    dec: AudioDecoder,
    decoded: u64,
    volume: f32,
    muted: bool,
    /// Where the audio handed to the output ends (µs), while it is continuous: a packet after
    /// a gap is due when the gap is, since its decoding fills the gap (FEC or concealment).
    pushed_end_us: Option<i64>,
}

/// A gap in the audio this long at most is filled when the packet after it is decoded
/// ([`AudioDecoder::decode_at`]'s bound: 5 lost 20 ms frames).
const MAX_FILLED_GAP_US: i64 = 100_000;

impl AudioFeeder {
    fn new(sink: AudioSink, volume: f32) -> Self {
        sink.set_volume(volume);
        Self {
            track: None,
            next: 0,
            sink,
            dec: AudioDecoder::new().expect("libopus is built in and 48 kHz stereo is valid"),
            decoded: 0,
            volume,
            muted: false,
            pushed_end_us: None,
        }
    }

    /// Drops what is queued and restarts at the first packet at or after `target`.
    fn reposition(&mut self, rec: &Recorded, target: i64) {
        self.sink.clear();
        self.dec.discontinuity();
        self.pushed_end_us = None;
        if let Some(a) = self.track {
            self.next = read_index(&rec.index)
                .first_at_or_after(a, target)
                .unwrap_or(0);
        }
    }

    /// Tells the output how the timeline plays.
    fn follow(&self, t: &Timeline) {
        self.sink.set_paused(!t.playing());
        self.sink.set_speed(t.speed());
        self.sink.set_muted(self.muted || t.audio_muted());
    }

    /// Hands the output what is due by `pos` + [`AUDIO_LEAD_US`]; `probe` gets the
    /// capture-to-due latency of each packet when playing live.
    fn step(
        &mut self,
        rec: &mut Recorded,
        pos: i64,
        t: &Timeline,
        live: bool,
        probes: &mut Probes,
    ) {
        let Some(a) = self.track else { return };
        if !t.playing() {
            return;
        }
        let due: Vec<_> = {
            let idx = read_index(&rec.index);
            let e = idx.entries(a);
            let mut out = Vec::new();
            let mut skipped = false;
            while let Some(entry) = e.get(self.next) {
                // After lost packets, this one brings their audio: due when the gap is, or
                // the output runs dry for the gap before it is filled.
                let due = match self.pushed_end_us {
                    Some(end)
                        if out.is_empty()
                            && (1..=MAX_FILLED_GAP_US).contains(&(entry.time_us - end)) =>
                    {
                        end
                    }
                    _ => entry.time_us,
                };
                if due > pos + AUDIO_LEAD_US {
                    break;
                }
                self.next += 1;
                // Packets already behind the playhead would only delay the output.
                if entry.time_us + 20_000 < pos - 100_000 {
                    skipped = true;
                    continue;
                }
                out.push(*entry);
            }
            if skipped {
                self.dec.discontinuity();
                self.pushed_end_us = None;
            }
            out
        };
        if t.audio_muted() {
            self.pushed_end_us = None;
            return;
        }
        for entry in due {
            let Some(unit) = rec.read(&entry) else {
                continue;
            };
            if live && unit.capture_from_sr {
                // Due at the output when the playhead reaches it.
                let due_wall = wall_us() + (entry.time_us - pos).max(0);
                probes
                    .audio_latencies
                    .push((due_wall - unit.capture_us) as f64 / 1000.0);
            }
            // A lost packet's audio (recovered from this one's FEC, or concealed) goes before.
            let d = self.dec.decode_at(&unit.data, unit.rtp_timestamp);
            self.decoded += 1;
            let lead_us = (d.lead_samples as i64) * 1_000_000 / 48_000;
            let len_us = (d.pcm.len() / 2) as i64 * 1_000_000 / 48_000;
            self.pushed_end_us = Some(entry.time_us - lead_us + len_us);
            self.sink.push(entry.time_us - lead_us, d.pcm);
        }
    }
}

/// The caption track: every block recorded so far, the session's cues (listed when an
/// export or a report asks), and the rows shown.
struct CaptionTrack {
    track: Option<usize>,
    next: usize,
    /// `(time_us, text)` of every block, in recording order. Text is small: hours of
    /// captions are a few hundred kB.
    blocks: Vec<(i64, String)>,
    /// For the report: (spoken, arrival) wall-clock µs of each block.
    times: Vec<(i64, i64)>,
    builder: CueBuilder,
    enabled: bool,
    /// Written when the engine stops.
    out: Option<PathBuf>,
}

impl CaptionTrack {
    fn new(out: Option<PathBuf>) -> Self {
        Self {
            track: None,
            next: 0,
            blocks: Vec::new(),
            times: Vec::new(),
            builder: CueBuilder::new(),
            enabled: true,
            out,
        }
    }

    /// Reads the blocks recorded since the last call.
    fn step(&mut self, rec: &mut Recorded) {
        let Some(t) = self.track else { return };
        let new = rec.new_entries(t, &mut self.next);
        for entry in new {
            let Some(unit) = rec.read(&entry) else {
                continue;
            };
            let text = String::from_utf8_lossy(&unit.data).into_owned();
            self.builder.push(entry.time_us, &text);
            self.times.push((unit.capture_us, unit.arrival_us));
            self.blocks.push((entry.time_us, text));
        }
    }

    /// The rows for playhead `pos`, from the blocks of the last [`CAPTION_WINDOW_US`].
    fn rows(&self, pos: i64) -> Vec<String> {
        if !self.enabled {
            return Vec::new();
        }
        let from = self
            .blocks
            .partition_point(|(t, _)| *t < pos - CAPTION_WINDOW_US);
        super::captions::shown_at(&self.blocks[from..], pos)
    }

    /// Writes the cues to `path`; the outcome is a notice for the viewer.
    fn export(&self, path: &Path, origin_us: i64) -> String {
        let cues = self.builder.cues();
        let text = super::captions::render_for_path(path, &cues, origin_us);
        let notice = match std::fs::write(path, text) {
            Ok(()) => format!("{} captions written to {}", cues.len(), path.display()),
            Err(e) => format!("cannot write captions to {}: {e}", path.display()),
        };
        info!("{notice}");
        notice
    }
}

/// The chat track (call mode): shown as it arrives, whatever the playhead.
struct ChatTrack {
    track: Option<usize>,
    next: usize,
    lines: ChatLines,
    /// Messages so far, shared with every status published (a new message copies the list
    /// once; publishing copies nothing).
    received: Arc<Vec<ChatLine>>,
}

impl ChatTrack {
    fn new() -> Self {
        Self {
            track: None,
            next: 0,
            lines: ChatLines::new(),
            received: Arc::default(),
        }
    }

    /// Reads the blocks recorded since the last call. A line is a message once it ends
    /// (T.140 editing, [`ChatLines`]).
    fn step(&mut self, rec: &mut Recorded) {
        let Some(t) = self.track else { return };
        for entry in rec.new_entries(t, &mut self.next) {
            let Some(unit) = rec.read(&entry) else {
                continue;
            };
            let text = String::from_utf8_lossy(&unit.data);
            for (text, sent_us) in self.lines.push(unit.capture_us, &text) {
                info!(text = %text, "chat");
                Arc::make_mut(&mut self.received).push(ChatLine {
                    text,
                    sent_unix_ms: sent_us / 1000,
                    arrival_unix_ms: unit.arrival_us / 1000,
                });
            }
        }
    }
}

/// The playback loop's state: the parts above, and what it shares with the recorder and
/// the viewer.
pub(crate) struct Playback {
    shared: Shared,
    status_tx: watch::Sender<Status>,
    /// The last report built (at the end, what [`super::EngineHandle::report`] returns).
    report: Arc<Mutex<Report>>,
    source: String,
    /// Set once the recorder has created the recording (a file: from the start).
    rec: Option<Recorded>,
    /// A file being played, opened before the loop starts.
    file_reader: Option<RecordingReader>,
    clock: Clock,
    video: VideoPresenter,
    audio: AudioFeeder,
    captions: CaptionTrack,
    chat: ChatTrack,
    probes: Probes,
    notice: Option<String>,
    /// An MP4 export under way: its outcome, for the notice.
    exporting: Option<std_mpsc::Receiver<String>>,
    warnings: Vec<String>,
    last_status: Instant,
    /// The time of the last pass of the loop (the report's "now").
    last_step: Option<Instant>,
    /// The connection state last logged and published.
    logged_conn: ConnState,
    /// The viewer is dragging the timeline knob ([`Command::Scrub`]).
    scrub: Option<Scrub>,
}

/// A drag of the timeline knob: playback holds while the picture follows the knob.
#[derive(Clone, Copy, Debug)]
struct Scrub {
    /// Where the knob is (the index's time base).
    target: i64,
    /// Playing when the drag began: the seek that ends it plays on.
    resume: bool,
}

impl Playback {
    /// `sink` is [`AudioSink::open`]'s answer: the output and a warning for the viewer.
    pub(crate) fn new(
        cfg: EngineConfig,
        shared: Shared,
        frame_tx: watch::Sender<Option<VideoFrame>>,
        status_tx: watch::Sender<Status>,
        report: Arc<Mutex<Report>>,
        reader: Option<RecordingReader>,
        (sink, warning): (AudioSink, Option<String>),
    ) -> Self {
        let now = Instant::now();
        let is_file = matches!(cfg.source, Source::File(_));
        Self {
            shared,
            status_tx,
            report,
            source: match &cfg.source {
                Source::Url(u) => u.clone(),
                Source::File(p) => p.display().to_string(),
            },
            rec: None,
            file_reader: reader,
            clock: Clock::new(cfg.call, is_file, now),
            video: VideoPresenter::new(frame_tx, now),
            audio: AudioFeeder::new(sink, cfg.volume),
            captions: CaptionTrack::new(cfg.captions_out),
            chat: ChatTrack::new(),
            probes: Probes::new(now),
            notice: None,
            exporting: None,
            warnings: warning.into_iter().collect(),
            last_status: now,
            last_step: None,
            logged_conn: ConnState::default(),
            scrub: None,
        }
    }

    pub(crate) fn run(
        &mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        report_requests: std_mpsc::Receiver<ReportRequest>,
        net_ctl: Option<mpsc::Sender<NetControl>>,
    ) {
        let mut queued = Vec::new();
        loop {
            let now = Instant::now();
            let stop = loop {
                match commands.try_recv() {
                    Ok(Command::Stop) | Err(mpsc::error::TryRecvError::Disconnected) => break true,
                    Ok(cmd) => queued.push(cmd),
                    Err(mpsc::error::TryRecvError::Empty) => break false,
                }
            };
            for cmd in coalesce_scrubs(&mut queued) {
                self.command(cmd, now, net_ctl.as_ref());
            }
            if stop {
                if let Some(ctl) = &net_ctl {
                    let _ = ctl.try_send(NetControl::Stop);
                }
                self.finish();
                return;
            }
            while let Ok(reply) = report_requests.try_recv() {
                let _ = reply.send(self.report());
            }
            if self.rec.is_none() {
                self.attach(now);
            }
            self.note_connection(now);
            self.step(now);
            if now.duration_since(self.last_status) >= STATUS_PERIOD {
                self.publish_status(now);
            }
            std::thread::sleep(TICK);
        }
    }

    /// Logs a new connection state and publishes it at once, before this pass shows anything
    /// (so "connection: streaming" comes before "first picture").
    fn note_connection(&mut self, now: Instant) {
        // Compared in place: a pass of the loop clones nothing unless the state changed.
        let conn = {
            let s = lock(&self.shared);
            if s.conn == self.logged_conn {
                return;
            }
            s.conn.clone()
        };
        info!("connection: {conn}");
        self.logged_conn = conn;
        self.publish_status(now);
    }

    /// Picks up the recording once the recorder has created it.
    fn attach(&mut self, now: Instant) {
        let (index, path) = {
            let s = lock(&self.shared);
            (s.index.clone(), s.path.clone())
        };
        let (Some(index), Some(path)) = (index, path) else {
            return;
        };
        let reader = match self.file_reader.take() {
            Some(r) => r,
            None => match RecordingReader::attach(&path) {
                Ok(r) => r,
                Err(e) => {
                    warn!("cannot read the recording back: {e}");
                    return;
                }
            },
        };
        {
            let idx = read_index(&index);
            self.video.track = idx.find_track(MediaKind::Video);
            self.audio.track = idx.find_track(MediaKind::Audio);
            self.captions.track = idx.find_track(MediaKind::Captions);
            self.chat.track = idx.find_track(MediaKind::Chat);
            if self.clock.is_file {
                if let (Some(s), Some(e)) = (idx.start_us(), idx.end_us()) {
                    self.clock.timeline.set_range(s, e, now);
                    self.clock.timeline.seek(s, now);
                }
            }
        }
        self.rec = Some(Recorded { index, reader });
        self.clock.seen_jumps = self.clock.timeline.jumps();
        self.audio.follow(&self.clock.timeline);
    }

    fn command(&mut self, cmd: Command, now: Instant, net_ctl: Option<&mpsc::Sender<NetControl>>) {
        if let Command::Scrub(d) = cmd {
            self.scrub_to(d, now);
            return;
        }
        // During a drag, play and pause say what the release will do.
        if let Some(s) = self.scrub.as_mut() {
            let resume = match cmd {
                Command::Play => Some(true),
                Command::Pause => Some(false),
                Command::TogglePause => Some(!s.resume),
                _ => None,
            };
            if let Some(resume) = resume {
                s.resume = resume;
                self.publish_status(now);
                return;
            }
        }
        // A seek ends a drag (the knob let go), and plays on if playback played before it.
        let seeked = matches!(cmd, Command::Seek(_) | Command::SeekBy(_) | Command::GoLive);
        let scrub = if seeked { self.scrub.take() } else { None };
        let timeline = &mut self.clock.timeline;
        let before = timeline.position(now);
        match cmd {
            Command::Play => timeline.play(now),
            Command::Pause => timeline.pause(now),
            Command::TogglePause => timeline.toggle(now),
            Command::Seek(d) => {
                if let Some(s) = timeline.start_us() {
                    timeline.seek(s + d.as_micros() as i64, now);
                }
            }
            Command::SeekBy(ms) => timeline.seek_by(ms * 1000, now),
            Command::SetSpeed(s) => timeline.set_speed(s, now),
            Command::GoLive => timeline.go_live(now),
            Command::SetVolume(v) => {
                self.audio.volume = v.clamp(0.0, 1.0);
                self.audio.sink.set_volume(self.audio.volume);
            }
            Command::ToggleMute => self.audio.muted = !self.audio.muted,
            Command::SetCaptions(on) => self.captions.enabled = on,
            Command::ExportCaptions(ref path) => self.export_captions(path),
            Command::ExportMp4(ref path) => self.export_mp4(path),
            Command::StreamPause | Command::StreamResume => {
                if let Some(ctl) = net_ctl {
                    let c = if cmd == Command::StreamPause {
                        NetControl::Pause
                    } else {
                        NetControl::Resume
                    };
                    let _ = ctl.try_send(c);
                }
            }
            Command::Scrub(_) | Command::Stop => {}
        }
        // The release keeps the play state the drag began with (or play/pause set during
        // it), going live too.
        match scrub {
            Some(s) if s.resume => self.clock.timeline.play(now),
            Some(_) => self.clock.timeline.pause(now),
            None => {}
        }
        self.audio.follow(&self.clock.timeline);
        if matches!(
            cmd,
            Command::Play
                | Command::Pause
                | Command::TogglePause
                | Command::Seek(_)
                | Command::SeekBy(_)
                | Command::SetSpeed(_)
                | Command::GoLive
                | Command::StreamPause
                | Command::StreamResume
        ) {
            self.probes.restart_freeze_count();
        }
        let after = self.clock.timeline.position(now);
        // After a drag the picture is the knob's, not the playhead's: shown again even where
        // the playhead has not moved.
        if seeked && (after != before || scrub.is_some()) {
            self.reposition(after, now);
        }
        self.publish_status(now);
    }

    /// The knob is dragged to `d` from the start: playback holds (audio too) and the picture
    /// follows the knob ([`VideoPresenter::preview`]); the seek at the release ends it.
    fn scrub_to(&mut self, d: Duration, now: Instant) {
        let Some(start) = self.clock.timeline.start_us() else {
            return;
        };
        let resume = match self.scrub {
            Some(s) => s.resume,
            None => {
                let playing = self.clock.timeline.playing();
                if playing {
                    self.clock.timeline.pause(now);
                    self.audio.follow(&self.clock.timeline);
                }
                self.probes.restart_freeze_count();
                playing
            }
        };
        let target = start.saturating_add(d.as_micros().min(i64::MAX as u128) as i64);
        self.scrub = Some(Scrub { target, resume });
        self.preview(target, now);
        self.publish_status(now);
    }

    fn preview(&mut self, target: i64, now: Instant) {
        let Some(rec) = self.rec.as_mut() else {
            return;
        };
        let mut cx = ShowContext {
            now,
            start_us: self.clock.timeline.start_us(),
            at_live: false,
            playing: false,
            probes: &mut self.probes,
        };
        self.video.preview(rec, target, &mut cx);
    }

    /// Restarts decoding at `target`: video from the keyframe at or before it (showing the
    /// picture at `target` at once), audio from the first packet at or after it.
    fn reposition(&mut self, target: i64, now: Instant) {
        let Some(rec) = self.rec.as_mut() else {
            return;
        };
        // Acted on here: the loop must not restart decoding again for the same jump.
        self.clock.seen_jumps = self.clock.timeline.jumps();
        let t0 = Instant::now();
        self.audio.reposition(rec, target);
        let mut cx = ShowContext {
            now,
            start_us: self.clock.timeline.start_us(),
            at_live: self.clock.at_live(now),
            playing: self.clock.timeline.playing(),
            probes: &mut self.probes,
        };
        self.video.reposition(rec, target, &mut cx);
        debug!(
            ms = t0.elapsed().as_secs_f64() * 1e3,
            "seek to {target} decoded"
        );
    }

    /// One pass of the playback loop.
    fn step(&mut self, now: Instant) {
        self.last_step = Some(now);
        let Some(rec) = self.rec.as_ref() else {
            return;
        };
        let (edge, start) = {
            let idx = read_index(&rec.index);
            self.clock
                .arrivals(&idx, self.video.track, self.audio.track, now);
            (idx.end_us(), idx.start_us())
        };
        let Some(edge) = edge else {
            return;
        };
        self.clock.follow(start, edge, now);
        self.clock.timeline.tick(now);
        let t = &self.clock.timeline;
        if t.playing() && !t.audio_muted() && !self.audio.muted {
            if let Some(p) = self.audio.sink.played_us(now) {
                self.clock.timeline.audio_clock(p, now);
            }
        }
        if let Some(pos) = self.clock.catch_up_live(now) {
            // Audio restarts there (what was queued is dropped: a short skip, as a live call
            // would); video simply decodes forward to the new position.
            if let Some(rec) = &self.rec {
                self.audio.reposition(rec, pos);
            }
        }
        if let Some(pos) = self.clock.take_jump(now) {
            self.reposition(pos, now);
        }
        let pos = self.clock.timeline.position(now);
        let live = self.clock.at_live(now);
        let video_lead = self.clock.video_lead(pos, now);
        let Some(rec) = self.rec.as_mut() else {
            return;
        };
        let mut cx = ShowContext {
            now,
            start_us: self.clock.timeline.start_us(),
            at_live: live,
            playing: self.clock.timeline.playing(),
            probes: &mut self.probes,
        };
        match self.scrub {
            Some(s) => self.video.preview(rec, s.target, &mut cx),
            None => self.video.step(rec, pos + video_lead, &mut cx),
        }
        self.audio
            .step(rec, pos, &self.clock.timeline, live, &mut self.probes);
        self.captions.step(rec);
        self.chat.step(rec);
        self.probes.beeps_heard(self.audio.sink.take_onsets());
    }

    fn export_captions(&mut self, path: &Path) {
        let origin = self.clock.timeline.start_us().unwrap_or(0);
        self.notice = Some(self.captions.export(path, origin));
    }

    /// Exports the recording so far to `path` on a thread of its own, from a copy of the index
    /// (the recorder goes on appending meanwhile).
    fn export_mp4(&mut self, path: &Path) {
        let Some(rec) = &self.rec else {
            self.notice = Some("nothing recorded yet to export".into());
            return;
        };
        if self.exporting.is_some() {
            self.notice = Some("an export is already under way".into());
            return;
        }
        let index = read_index(&rec.index).clone();
        let mut reader = match RecordingReader::attach(rec.reader.path()) {
            Ok(r) => r,
            Err(e) => {
                self.notice = Some(format!("cannot export: {e}"));
                return;
            }
        };
        let (tx, rx) = std_mpsc::channel();
        let out = path.to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("livecast-export".into())
            .spawn(move || {
                let msg = match super::export::export(&mut reader, &index, &out, None, None) {
                    Ok(s) => format!(
                        "exported {} ({} s) and {} ({} captions)",
                        s.mp4.display(),
                        s.duration_us / 1_000_000,
                        s.vtt.display(),
                        s.cues
                    ),
                    Err(e) => format!("cannot export to {}: {e:#}", out.display()),
                };
                info!("{msg}");
                let _ = tx.send(msg);
            });
        match spawned {
            Ok(_) => {
                self.notice = Some(format!("exporting to {}", path.display()));
                self.exporting = Some(rx);
            }
            Err(e) => self.notice = Some(format!("cannot export: {e}")),
        }
    }

    /// Sends the viewer the status. Its cost does not grow with the session: nothing in it
    /// is a copy of the session's history (the chat list is shared, caption rows come from
    /// the last minute of blocks).
    fn publish_status(&mut self, now: Instant) {
        self.last_status = now;
        if let Some(rx) = &self.exporting {
            match rx.try_recv() {
                Ok(msg) => {
                    self.notice = Some(msg);
                    self.exporting = None;
                }
                Err(std_mpsc::TryRecvError::Disconnected) => self.exporting = None,
                Err(std_mpsc::TryRecvError::Empty) => {}
            }
        }
        let s = lock(&self.shared);
        if let Some(e) = &s.error {
            if !self.warnings.contains(e) {
                self.warnings.push(e.clone());
            }
        }
        let (conn, net, title) = (s.conn.clone(), s.stats.clone(), s.title.clone());
        let rendition = s.rendition.clone().map(|r| (r, s.rendition_switches));
        drop(s);
        self.clock.net_stats(&net, now);
        let t = &self.clock.timeline;
        let recorded_end = recorded_span(t);
        let codecs: Vec<Codec> = self
            .rec
            .as_ref()
            .map(|r| read_index(&r.index).tracks().map(|t| t.codec).collect())
            .unwrap_or_default();
        let st = Status {
            conn,
            position: Duration::from_micros(t.position_from_start(now).max(0) as u64),
            recorded_end,
            // During a drag of the knob: what the release will do, not the hold.
            playing: self.scrub.map_or(t.playing(), |s| s.resume),
            speed: t.speed(),
            at_live: self.scrub.is_none() && self.clock.at_live(now),
            volume: self.audio.volume,
            muted: self.audio.muted,
            captions_enabled: self.captions.enabled,
            has_captions: self.captions.track.is_some(),
            caption_text: self.captions.rows(t.position(now)),
            stats: Stats {
                width: self.video.size.0,
                height: self.video.size.1,
                fps: self.video.fps(now),
                bitrate: net.bitrate_bps,
                packets_received: net.packets_received,
                packets_lost: net.packets_lost,
                jitter_ms: net.jitter_ms,
                latency_ms: self.probes.last_video_latency(),
                recorded: recorded_end,
                video_frames_decoded: self.video.dec.decoded,
                audio_frames_decoded: self.audio.decoded,
                rendition,
            },
            codecs: codecs
                .into_iter()
                .filter(|c| *c != Codec::Unknown)
                .collect(),
            warnings: self.warnings.clone(),
            notice: self.notice.clone(),
            title,
            chat: self.chat.received.clone(),
        };
        let _ = self.status_tx.send(st);
    }

    /// Video units recorded, not decoded yet, and not due yet: ahead of the playhead (at the
    /// live edge, the playout delay's worth). Units due and not decoded (playback stalled)
    /// are not counted.
    fn video_pending(&self) -> u64 {
        let (Some(rec), Some(v)) = (&self.rec, self.video.track) else {
            return 0;
        };
        let now = self.last_step.unwrap_or_else(Instant::now);
        let pos = self.clock.timeline.position(now);
        let due_to = pos + self.clock.video_lead(pos, now);
        let idx = read_index(&rec.index);
        let n = idx.entries(v).len();
        let first_not_due = idx.last_at_or_before(v, due_to).map_or(0, |k| k + 1);
        let next = self
            .video
            .catch_up
            .map_or(self.video.next, |shown| shown + 1);
        n.saturating_sub(first_not_due.max(next)) as u64
    }

    /// The measurements so far. Its cost grows with the session (percentiles over every
    /// sample, every caption): built when asked for, not with every status.
    fn report(&self) -> Report {
        let s = lock(&self.shared);
        let (rendition, rendition_switches) = (s.rendition.clone(), s.rendition_switches);
        let (net, reconnects, title, path) = (
            s.stats.clone(),
            s.reconnects,
            s.title.clone(),
            s.path.clone(),
        );
        let conn = s.conn.clone();
        drop(s);
        let origin = self.clock.timeline.start_us().unwrap_or(0);
        let (av_offset_ms, av_pairs) = av_offset(&self.probes.flashes, &self.probes.beeps);
        Report {
            source: self.source.clone(),
            duration_s: self.probes.started.elapsed().as_secs_f64(),
            video: super::report::VideoReport {
                frames_decoded: self.video.dec.decoded,
                frames_shown: self.video.frames_shown,
                frames_before_first: self.video.skipped_before_first,
                frames_late: self.video.skipped_late,
                frames_skipped: self.video.skipped_behind,
                frames_awaiting_keyframe: self.video.dec.waited,
                frames_pending: self.video_pending(),
                longest_freeze_ms: self.probes.longest_freeze.as_secs_f64() * 1e3,
                freezes: self.probes.freezes.clone(),
                width: self.video.size.0,
                height: self.video.size.1,
                decode_errors: self.video.dec.errors,
            },
            audio: super::report::AudioReport {
                frames_decoded: self.audio.decoded,
                decode_errors: self.audio.dec.errors,
                concealed: self.audio.dec.concealed,
                recovered: self.audio.dec.recovered,
                output: self.audio.sink.description.clone(),
                underruns: self.audio.sink.underruns(),
            },
            rtp: super::report::RtpReport {
                packets_received: net.packets_received,
                packets_lost: net.packets_lost,
                jitter_ms: net.jitter_ms,
                tcp: net.tcp,
                srtp: net.srtp,
                srtp_rejected: net.srtp_rejected,
                nack_sent: net.nack_sent,
                retransmissions_received: net.retransmissions_received,
                recovered: net.recovered,
                dropped_pictures: net.dropped_pictures,
                rtt_ms: net.rtt_ms,
            },
            first_frame_ms: self.probes.first_frame_ms,
            title,
            latency_ms: Percentiles::of(&self.probes.video_latencies),
            audio_latency_ms: Percentiles::of(&self.probes.audio_latencies),
            av_offset_ms,
            av_pairs,
            recorded_s: recorded_span(&self.clock.timeline).as_secs_f64(),
            recording: path.map(|p| p.display().to_string()),
            captions: self
                .captions
                .builder
                .cues()
                .into_iter()
                .map(|c| CaptionReport {
                    start_ms: (c.start_us - origin) / 1000,
                    end_ms: (c.end_us - origin) / 1000,
                    text: c.text,
                })
                .collect(),
            caption_blocks: self
                .captions
                .times
                .iter()
                .zip(&self.captions.blocks)
                .map(|(&(spoken, arrival), (_, text))| CaptionBlockReport {
                    spoken_unix_ms: spoken / 1000,
                    arrival_unix_ms: arrival / 1000,
                    text: text.clone(),
                })
                .collect(),
            chat: self
                .chat
                .received
                .iter()
                .map(|c| ChatReport {
                    sent_unix_ms: c.sent_unix_ms,
                    arrival_unix_ms: c.arrival_unix_ms,
                    text: c.text.clone(),
                })
                .collect(),
            reconnects,
            rendition,
            rendition_switches,
            final_state: format!("{conn:?}"),
        }
    }

    fn finish(&mut self) {
        if let Some(path) = self.captions.out.clone() {
            self.export_captions(&path);
        }
        self.publish_status(Instant::now());
        *self.report.lock().unwrap_or_else(|p| p.into_inner()) = self.report();
        self.audio.sink.set_paused(true);
    }
}

/// The recorded span: from the start of the recording to its live edge.
fn recorded_span(t: &Timeline) -> Duration {
    match (t.start_us(), t.live_edge_us()) {
        (Some(s), Some(e)) => Duration::from_micros((e - s).max(0) as u64),
        _ => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    //! The whole playback side driven by a test clock over a recording that grows as if it
    //! were received live: real H.264 and Opus, pictures that carry their frame number, a
    //! caption track. Pause, seek back, fast-forward, rewind, back to live and captions after
    //! a seek, checked on the pictures actually decoded.

    use super::*;
    use crate::engine::recording::RecordingWriter;
    use crate::engine::unit::{MediaUnit, TrackDesc};
    use livecast_server::encode::h264::{H264Config, H264Encoder};
    use livecast_server::encode::opus::OpusEncoder;
    use livecast_server::source::{AudioFrame, VideoFrame as RawFrame};
    use std::sync::RwLock;

    const T0: i64 = 1_795_392_000_000_000;
    const FPS: i64 = 10;
    const W: u32 = 160;
    const H: u32 = 96;
    const SECS: i64 = 40;
    /// Captions arrive this long after they were spoken (whisper's delay).
    const TEXT_DELAY_US: i64 = 1_500_000;

    fn track(index: usize, media: &str, codec: Codec, pt: u8, rate: u32) -> TrackDesc {
        TrackDesc {
            index,
            media: media.into(),
            codec,
            payload_type: pt,
            clock_rate: rate,
            fmtp: Vec::new(),
            control_url: format!("rtsp://test/live/trackID={index}"),
            label: Default::default(),
        }
    }

    /// Frame `i`'s picture: 16 vertical bars, white for the 1 bits of `i`.
    fn picture(i: u64) -> Vec<u8> {
        let mut p = vec![128u8; (W * H * 3 / 2) as usize];
        for y in 0..H as usize {
            for x in 0..W as usize {
                let bit = x / 10;
                p[y * W as usize + x] = if (i >> bit) & 1 == 1 { 235 } else { 16 };
            }
        }
        p
    }

    fn frame_number(f: &VideoFrame) -> u64 {
        (0..16)
            .map(|bit| {
                let x = bit * 10 + 5;
                let px = f.rgba[((H as usize / 2) * W as usize + x) * 4];
                u64::from(px > 128) << bit
            })
            .sum()
    }

    fn unit(track: usize, t: i64, keyframe: bool, data: Vec<u8>) -> MediaUnit {
        let rate = [90_000, 48_000, 1000][track];
        MediaUnit {
            track,
            rtp_timestamp: ((t - T0) * rate / 1_000_000) as u32,
            capture_us: t,
            capture_from_sr: true,
            arrival_us: t,
            keyframe,
            damaged: false,
            data,
        }
    }

    /// The session, in capture order: 10 fps video with a keyframe each second, in two
    /// temporal layers (every other picture a non-reference one), Opus every 20 ms, two
    /// captions (spoken at 5 s and 25 s).
    fn session() -> Vec<MediaUnit> {
        let mut enc = H264Encoder::with_temporal_layers(
            &H264Config {
                width: W,
                height: H,
                fps: FPS as u32,
                bitrate_bps: 300_000,
                idr_interval_secs: 1,
            },
            2,
        )
        .unwrap();
        let mut opus = OpusEncoder::new(32_000).unwrap();
        let mut units = Vec::new();
        for i in 0..(SECS * FPS) as u64 {
            let t = T0 + i as i64 * 1_000_000 / FPS;
            let f = RawFrame {
                width: W,
                height: H,
                i420: picture(i),
                capture: SystemTime::UNIX_EPOCH + Duration::from_micros(t as u64),
                index: i,
            };
            let e = enc.encode(&f).unwrap().expect("openh264 emits every frame");
            units.push(unit(0, t, e.is_idr, e.annexb));
        }
        for k in 0..(SECS * 50) {
            let t = T0 + k * 20_000;
            let f = AudioFrame {
                samples: vec![0; 1920],
                capture: SystemTime::UNIX_EPOCH + Duration::from_micros(t as u64),
            };
            units.push(unit(1, t, true, opus.encode(&f).unwrap()));
        }
        for (t, text) in [
            (5_000_000, "first caption"),
            (7_000_000, "\u{2028}"),
            (25_000_000, "second caption"),
            (27_000_000, "\u{2028}"),
        ] {
            units.push(unit(2, T0 + t, true, text.as_bytes().to_vec()));
        }
        units.sort_by_key(|u| u.capture_us);
        units
    }

    fn tracks() -> Vec<TrackDesc> {
        vec![
            track(0, "video", Codec::H264, 96, 90_000),
            track(1, "audio", Codec::Opus, 97, 48_000),
            track(2, "text", Codec::T140, 99, 1000),
        ]
    }

    struct Rig {
        p: Playback,
        frames: watch::Receiver<Option<VideoFrame>>,
        status: watch::Receiver<Status>,
        base: Instant,
        /// Test time, µs since `base`.
        now_us: i64,
    }

    impl Rig {
        fn new(source: Source, shared: Shared, reader: Option<RecordingReader>) -> Self {
            let (frame_tx, frames) = watch::channel(None);
            let (status_tx, status) = watch::channel(Status::default());
            let mut cfg = EngineConfig::new(source);
            cfg.audio_output = false;
            let p = Playback::new(
                cfg,
                shared,
                frame_tx,
                status_tx,
                Arc::default(),
                reader,
                (AudioSink::manual(), None),
            );
            let base = Instant::now();
            Self {
                p,
                frames,
                status,
                base,
                now_us: 0,
            }
        }

        fn now(&self) -> Instant {
            self.base + Duration::from_micros(self.now_us as u64)
        }

        /// One 10 ms tick of the playback loop: the audio device plays 10 ms, then a step.
        fn tick(&mut self) {
            self.now_us += 10_000;
            let now = self.now();
            self.p.audio.sink.pull(480, now);
            if self.p.rec.is_none() {
                self.p.attach(now);
            }
            self.p.step(now);
            if self.now_us % 100_000 == 0 {
                self.p.publish_status(now);
            }
        }

        fn command(&mut self, c: Command) {
            let now = self.now();
            self.p.command(c, now, None);
        }

        /// Playhead, µs since the start of the recording.
        fn pos_us(&self) -> i64 {
            self.p.clock.timeline.position_from_start(self.now())
        }

        fn shown(&self) -> (u64, i64) {
            let f = self.frames.borrow().clone().expect("a picture is shown");
            (frame_number(&f), f.position.as_micros() as i64)
        }

        fn status(&mut self) -> Status {
            self.p.publish_status(self.now());
            self.status.borrow().clone()
        }
    }

    /// The picture shown is the frame due at the playhead (frame times are i / 10 s).
    fn assert_shows_playhead(r: &Rig, what: &str) {
        let (n, at) = r.shown();
        let due = (r.pos_us() * FPS / 1_000_000) as u64;
        assert!(
            n.abs_diff(due) <= 1,
            "{what}: shows frame {n} (at {at} us), playhead {} us wants frame {due}",
            r.pos_us()
        );
        assert_eq!(
            n as i64 * 100_000,
            at,
            "{what}: the picture is the frame it says it is"
        );
    }

    /// A live session's rig and the recording it plays, empty so far (in `dir`).
    fn live_rig(dir: &Path) -> (Rig, RecordingWriter) {
        let path = dir.join("live.lcrec");
        let writer = RecordingWriter::create(&path, &tracks(), "v=0\r\n").unwrap();
        let shared: Shared = Arc::default();
        {
            let mut s = lock(&shared);
            s.index = Some(writer.index());
            s.path = Some(path);
            s.conn = ConnState::Streaming { tcp: false };
        }
        let r = Rig::new(Source::Url("rtsp://test/live".into()), shared, None);
        (r, writer)
    }

    /// Units with their arrival times, appended to the recording as the test clock reaches
    /// them (in arrival order; units arriving together keep their order).
    struct Arrivals {
        media: Vec<(i64, MediaUnit)>,
        next: usize,
    }

    impl Arrivals {
        fn new(mut media: Vec<(i64, MediaUnit)>) -> Self {
            media.sort_by_key(|m| m.0);
            Self { media, next: 0 }
        }

        /// Appends what has arrived by `wall` and flushes.
        fn deliver(&mut self, writer: &mut RecordingWriter, wall: i64) {
            while let Some((_, u)) = self.media.get(self.next).filter(|m| m.0 <= wall) {
                writer.append(u).unwrap();
                self.next += 1;
            }
            writer.flush().unwrap();
        }
    }

    /// A live session whose units arrive 7 ms after capture plus up to `jitter_us` (seeded),
    /// never overtaking one another. Returns, over the last 10 s of 16: the live delay the
    /// audio edge settled on, the capture-to-shown delays of the pictures (virtual clock), the
    /// shown picture's time minus the audio heard at that moment, and the audio underruns.
    fn jittery_live(jitter_us: i64) -> (i64, Vec<i64>, Vec<i64>, u64) {
        lossy_live(jitter_us, None)
    }

    /// [`jittery_live`], and with `audio_lost_every = Some(n)` every n-th audio packet lost
    /// (never recorded, as when the jitter buffer gives up on it).
    fn lossy_live(
        jitter_us: i64,
        audio_lost_every: Option<usize>,
    ) -> (i64, Vec<i64>, Vec<i64>, u64) {
        let dir = tempfile::tempdir().unwrap();
        let (mut r, mut writer) = live_rig(dir.path());
        let mut rng = 0x5eed_u64;
        let mut last_arrival = [i64::MIN; 2];
        let mut audio_seen = 0;
        let media: Vec<(i64, MediaUnit)> = session()
            .into_iter()
            .filter(|u| u.track != 2 && u.capture_us < T0 + 16_000_000)
            .filter(|u| {
                if u.track != 1 {
                    return true;
                }
                audio_seen += 1;
                audio_lost_every.is_none_or(|n| audio_seen % n != 0)
            })
            .map(|u| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let j = if jitter_us > 0 {
                    (rng % jitter_us as u64) as i64
                } else {
                    0
                };
                let arrival = (u.capture_us + 7_000 + j).max(last_arrival[u.track]);
                last_arrival[u.track] = arrival;
                (arrival, u)
            })
            .collect();
        let mut arrivals = Arrivals::new(media);
        let (mut shown, mut lat, mut av) = (None, Vec::new(), Vec::new());
        let mut underruns_before = 0;
        while r.now_us < 16_000_000 {
            r.tick();
            let wall = T0 + r.now_us;
            arrivals.deliver(&mut writer, wall);
            if r.now_us == 6_000_000 {
                underruns_before = r.p.audio.sink.underruns();
            }
            let Some((n, _)) = r.frames.borrow().as_ref().map(|f| (frame_number(f), ())) else {
                continue;
            };
            if shown.replace(n) != Some(n) && r.now_us > 6_000_000 {
                let capture = T0 + n as i64 * 1_000_000 / FPS;
                lat.push(wall - capture);
                let heard = r.p.audio.sink.played_us(r.now()).unwrap();
                av.push(capture - heard);
            }
        }
        let delay = r.p.clock.audio_edge.delay_us().unwrap();
        let underruns = r.p.audio.sink.underruns() - underruns_before;
        (delay, lat, av, underruns)
    }

    /// The report's `frames_pending`: at the live edge, the playout delay's few pictures;
    /// paused, everything recorded since the playhead stopped, and nothing of it counted as
    /// shown or late.
    #[test]
    fn pictures_not_yet_due_are_counted_as_pending() {
        let dir = tempfile::tempdir().unwrap();
        let (mut r, mut writer) = live_rig(dir.path());
        let media: Vec<(i64, MediaUnit)> = session()
            .into_iter()
            .filter(|u| u.track != 2 && u.capture_us < T0 + 12_000_000)
            .map(|u| (u.capture_us + 7_000, u))
            .collect();
        let mut arrivals = Arrivals::new(media);
        let mut run = |r: &mut Rig, until_us: i64| {
            while r.now_us < until_us {
                r.tick();
                arrivals.deliver(&mut writer, T0 + r.now_us);
            }
        };
        run(&mut r, 5_000_000);
        let live = r.p.report().video;
        assert!(live.frames_pending <= 2, "{live:?}");
        r.command(Command::Pause);
        run(&mut r, 9_000_000);
        let paused = r.p.report().video;
        // 4 s at 10 frames/s came in while paused.
        assert!((38..=42).contains(&paused.frames_pending), "{paused:?}");
        assert!(paused.frames_shown <= live.frames_shown + 1, "{paused:?}");
        assert_eq!(paused.frames_late, live.frames_late);
    }

    /// Video on a lossy path with retransmission: every 8th picture (from 1 s on) has a
    /// packet lost and recovered 120 ms late, holding back the pictures behind it as the
    /// jitter buffer does; the network side reports its retransmission requests and a
    /// 150 ms wait. Returns the pictures shown late and in all after the first second.
    fn recovering_live(requests_reported: bool) -> (u64, u64) {
        let dir = tempfile::tempdir().unwrap();
        let (mut r, mut writer) = live_rig(dir.path());
        let mut held_until = i64::MIN;
        let mut requests = 0;
        let media: Vec<(i64, MediaUnit)> = session()
            .into_iter()
            .filter(|u| u.track != 2 && u.capture_us < T0 + 12_000_000)
            .map(|u| {
                let mut arrival = u.capture_us + 7_000;
                if u.track == 0 {
                    let n = (u.capture_us - T0) * FPS / 1_000_000;
                    if n >= FPS && n % 8 == 0 {
                        held_until = arrival + 120_000;
                    }
                    arrival = arrival.max(held_until);
                }
                (arrival, u)
            })
            .collect();
        let mut arrivals = Arrivals::new(media);
        let (mut late_before, mut shown_before) = (0, 0);
        while r.now_us < 12_000_000 {
            r.tick();
            arrivals.deliver(&mut writer, T0 + r.now_us);
            if r.now_us % 1_000_000 == 0 {
                let mut s = lock(&r.p.shared);
                s.stats.jitter_delay_ms = 150.0;
                if requests_reported && r.now_us >= 2_000_000 {
                    requests += 8;
                    s.stats.nack_sent = requests;
                }
            }
            if r.now_us == 3_000_000 {
                (late_before, shown_before) = (r.p.video.skipped_late, r.p.video.frames_shown);
            }
        }
        (
            r.p.video.skipped_late - late_before,
            r.p.video.frames_shown - shown_before,
        )
    }

    /// Watching: while retransmissions are asked for, the playout delay covers the jitter
    /// buffer's wait, so recovered pictures are shown in their turn; without requests (a
    /// clean path as far as the player knows) the edge follows arrivals and skips some.
    #[test]
    fn retransmission_requests_hold_the_delay_so_recovered_pictures_are_shown() {
        let (late, shown) = recovering_live(true);
        assert_eq!(late, 0, "{shown} shown");
        assert!(shown >= 9 * FPS as u64 - 5, "{shown} shown");
        let (late, shown) = recovering_live(false);
        assert!(late >= 10, "{late} late, {shown} shown");
    }

    /// A lost audio packet is filled (concealment) when the packet after it is decoded, and
    /// that packet is handed to the output when the gap is due: no gap heard.
    #[test]
    fn lost_audio_packets_are_filled_in_time() {
        let (_, lat, _, underruns) = lossy_live(0, Some(20));
        assert!(lat.len() >= 95, "{} pictures", lat.len());
        assert_eq!(underruns, 0, "5 % of the audio lost");
    }

    #[test]
    fn live_edge_follows_the_jitter_and_keeps_lip_sync() {
        for (jitter, delay_range, worst_latency) in [
            (0, 5_000..=5_000, 45_000),
            (30_000, 30_000..=45_000, 95_000),
        ] {
            let (delay, lat, av, underruns) = jittery_live(jitter);
            assert!(
                delay_range.contains(&delay),
                "jitter {jitter}: delay {delay}"
            );
            assert!(lat.len() >= 95, "jitter {jitter}: {} pictures", lat.len());
            let max = *lat.iter().max().unwrap();
            assert!(max <= worst_latency, "jitter {jitter}: latency up to {max}");
            let worst_av = av.iter().map(|a| a.abs()).max().unwrap();
            assert!(
                worst_av <= 20_000,
                "jitter {jitter}: A/V offset up to {worst_av}"
            );
            assert_eq!(underruns, 0, "jitter {jitter}");
        }
    }

    #[test]
    fn live_session_pause_seek_fast_forward_rewind_and_back_to_live() {
        let dir = tempfile::tempdir().unwrap();
        let (mut r, mut writer) = live_rig(dir.path());
        // "Receives" what was captured by the test clock; captions arrive later (whisper's
        // delay), so the text track is fed from its own queue.
        let (text, media): (Vec<MediaUnit>, Vec<MediaUnit>) =
            session().into_iter().partition(|u| u.track == 2);
        let (mut next_media, mut next_text) = (0, 0);
        let mut receive = |r: &mut Rig, until_us: i64| {
            while r.now_us < until_us {
                r.tick();
                let wall = T0 + r.now_us;
                while next_media < media.len() && media[next_media].capture_us <= wall {
                    writer.append(&media[next_media]).unwrap();
                    next_media += 1;
                }
                while next_text < text.len() && text[next_text].capture_us + TEXT_DELAY_US <= wall {
                    writer.append(&text[next_text]).unwrap();
                    next_text += 1;
                }
                writer.flush().unwrap();
            }
        };
        // Live: the picture follows the live edge; a caption shows once it has arrived.
        receive(&mut r, 8_000_000);
        let start_freeze = r.p.probes.longest_freeze;
        r.p.probes.longest_freeze = Duration::ZERO;
        let st = r.status();
        assert!(st.at_live && st.playing, "{st:?}");
        assert!(st.has_captions);
        assert_shows_playhead(&r, "live");
        assert!(r.pos_us() > 7_800_000, "close to live: {}", r.pos_us());
        assert_eq!(st.caption_text, ["first caption"]);
        receive(&mut r, 20_000_000);
        assert!(
            r.status().caption_text.is_empty(),
            "the caption went after its time"
        );
        assert_shows_playhead(&r, "live at 20 s");
        const MS: Duration = Duration::from_millis(1);
        let freeze = |r: &Rig| r.p.probes.longest_freeze;
        // 10 frames/s: one picture every 100 ms while live; at the start the playhead waited
        // a little longer once for the live edge.
        assert!(start_freeze <= 150 * MS, "{start_freeze:?}");
        assert!(freeze(&r) <= 100 * MS, "{:?}", freeze(&r));

        // The playback loop stalls for 300 ms (a scheduling hiccup): the audio device plays
        // out its short queue and underruns, so the audio clock falls behind; the playhead
        // must not stay behind with it.
        let limit = |r: &Rig| {
            r.p.clock.timeline.live_limit_us().unwrap() - r.p.clock.timeline.start_us().unwrap()
        };
        let stall_until = r.now_us + 300_000;
        while r.now_us < stall_until {
            r.now_us += 10_000;
            let now = r.now();
            r.p.audio.sink.pull(480, now);
        }
        receive(&mut r, 20_500_000);
        let behind = limit(&r) - r.pos_us();
        assert!(behind <= 80_000, "{behind} us behind live after a hiccup");
        assert!(r.status().at_live);
        assert_shows_playhead(&r, "live after an audio hiccup");
        let hiccup = freeze(&r);
        assert!(
            (300 * MS..=400 * MS).contains(&hiccup),
            "the stall is the longest freeze: {hiccup:?}"
        );

        // Pause: the playhead stops, the recording grows.
        r.command(Command::Pause);
        let paused_at = r.pos_us();
        receive(&mut r, 23_000_000);
        let st = r.status();
        assert!(!st.playing && !st.at_live);
        assert_eq!(r.pos_us(), paused_at);
        assert!(
            st.recorded_end >= Duration::from_millis(22_900),
            "{:?}",
            st.recorded_end
        );

        // Seek back 14 s: the picture of that moment at once, and its caption.
        r.command(Command::SeekBy(-14_000));
        assert!((r.pos_us() - (paused_at - 14_000_000)).abs() < 1000);
        assert_shows_playhead(&r, "after seeking back");
        let st = r.status();
        assert_eq!(
            st.caption_text,
            ["first caption"],
            "captions survive a seek back"
        );

        // Fast-forward at 4x: 1 s of test time moves the playhead 4 s, audio muted.
        r.command(Command::SetSpeed(4.0));
        r.command(Command::Play);
        assert!(r.p.clock.timeline.audio_muted());
        let before = r.pos_us();
        let shown_before = r.p.video.frames_shown;
        assert_eq!(freeze(&r), hiccup, "2.5 s paused is no freeze");
        receive(&mut r, 24_000_000);
        let moved = r.pos_us() - before;
        assert!(
            (moved - 4_000_000).abs() < 50_000,
            "moved {moved} us in 1 s at 4x"
        );
        assert!(
            r.p.video.frames_shown - shown_before >= 35,
            "frames shown while fast-forwarding"
        );
        assert_shows_playhead(&r, "fast-forward");

        // Rewind 10 s, back to 1x.
        r.command(Command::SeekBy(-10_000));
        r.command(Command::SetSpeed(1.0));
        assert!(!r.p.clock.timeline.audio_muted());
        assert_shows_playhead(&r, "rewind");
        receive(&mut r, 25_000_000);
        assert_shows_playhead(&r, "playing after the rewind");
        assert!(!r.status().at_live);
        assert!(
            matches!(r.p.video.fast, Some(Ok(_))),
            "the seeks back were the seek decoder's"
        );

        // Back to live.
        r.command(Command::GoLive);
        let st = r.status();
        assert!(st.at_live && st.playing && st.speed == 1.0, "{st:?}");
        assert!(
            r.p.video.fast.is_none(),
            "the seek decoder is let go at live"
        );
        assert!(r.pos_us() > 24_900_000, "at the live edge: {}", r.pos_us());
        assert_shows_playhead(&r, "back to live");
        receive(&mut r, 30_000_000);
        assert_shows_playhead(&r, "live again");
        assert!(r.status().at_live);

        // The report lists both captions, in recording time.
        receive(&mut r, 31_000_000);
        let report = r.p.report();
        let caps: Vec<_> = report
            .captions
            .iter()
            .map(|c| (c.start_ms, c.end_ms, c.text.as_str()))
            .collect();
        assert_eq!(
            caps,
            [
                (5000, 7000, "first caption"),
                (25_000, 27_000, "second caption")
            ]
        );
        assert_eq!(
            report.caption_blocks.len(),
            4,
            "every block, with its times"
        );
        assert_eq!(
            report.caption_blocks[0].spoken_unix_ms,
            (T0 + 5_000_000) / 1000
        );
        assert_eq!(report.caption_blocks[2].text, "second caption");
        assert!(report.video.frames_decoded > 250);
        assert!(report.audio.frames_decoded > 1000);
    }

    /// A rig playing [`session`] from a finished recording in `dir`.
    fn file_rig(dir: &Path) -> Rig {
        file_rig_with(dir, Some)
    }

    /// [`file_rig`] of the session as `edit` leaves it (a unit lost, one marked damaged).
    fn file_rig_with(dir: &Path, edit: impl FnMut(MediaUnit) -> Option<MediaUnit>) -> Rig {
        let path = dir.join("done.lcrec");
        let mut writer = RecordingWriter::create(&path, &tracks(), "v=0\r\n").unwrap();
        for u in session().into_iter().filter_map(edit) {
            writer.append(&u).unwrap();
        }
        writer.sync().unwrap();
        drop(writer);
        let (reader, index) = RecordingReader::open(&path).unwrap();
        let shared: Shared = Arc::default();
        {
            let mut s = lock(&shared);
            s.index = Some(Arc::new(RwLock::new(index)));
            s.path = Some(path.clone());
            s.conn = ConnState::Offline;
        }
        Rig::new(Source::File(path), shared, Some(reader))
    }

    /// Dragging the timeline knob: playback holds; in a new group the keyframe is shown at
    /// once (one picture decoded), the next pass goes on to the knob's picture; letting go
    /// there decodes nothing more and plays on.
    #[test]
    fn dragging_the_knob_shows_its_picture_and_the_release_plays_on_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = file_rig(dir.path());
        for _ in 0..20 {
            r.tick();
        }
        assert!(r.status().playing);
        let decoded = |r: &Rig| r.p.video.dec.decoded;
        let frame = |r: &Rig| r.shown().0;
        let ms = Duration::from_millis;

        // To 12.75 s: frame 127, in the group of keyframe 120.
        let d0 = decoded(&r);
        r.command(Command::Scrub(ms(12_750)));
        assert_eq!(frame(&r), 120, "the group's keyframe first");
        assert_eq!(decoded(&r) - d0, 1);
        assert!(
            !r.p.clock.timeline.playing(),
            "playback holds while the knob is dragged"
        );
        let st = r.status();
        assert!(st.playing, "the status says what the release will do");
        assert!(!st.at_live);
        let held_at = r.pos_us();
        r.tick();
        assert_eq!(frame(&r), 127, "then the knob's own picture");
        // 122, 124, 126 and 127: the odd ones on the way refer to nothing.
        assert_eq!(decoded(&r) - d0, 5);
        for _ in 0..10 {
            r.tick();
        }
        assert_eq!(decoded(&r) - d0, 5, "nothing more while the knob rests");
        assert_eq!(r.pos_us(), held_at, "the playhead waits");

        // Back within the group, to frame 122: the keyframe again, then 122.
        r.command(Command::Scrub(ms(12_250)));
        assert_eq!(frame(&r), 120);
        r.tick();
        assert_eq!(frame(&r), 122);
        assert_eq!(decoded(&r) - d0, 5 + 2);

        // A key that does not move the playhead (volume) does not end the drag.
        r.command(Command::SetVolume(0.5));
        assert_eq!(frame(&r), 122);
        // Let go there: that picture stays, playback goes on from it.
        r.command(Command::Seek(ms(12_250)));
        assert_eq!(decoded(&r) - d0, 7, "the release decodes nothing again");
        assert_eq!(r.p.clock.take_jump(r.now()), None, "nor does the next pass");
        assert_eq!(frame(&r), 122);
        let st = r.status();
        assert!(st.playing, "playing again, as before the drag");
        assert_eq!(r.pos_us(), 12_250_000);
        for _ in 0..30 {
            r.tick();
        }
        assert_shows_playhead(&r, "playing on after the drag");
        assert!(r.pos_us() >= 12_500_000, "{}", r.pos_us());

        // A drag that began paused ends paused. Each pass goes at most PREVIEW_STEP (8)
        // entries toward the knob, so a fast drag never waits for a whole group.
        r.command(Command::Pause);
        r.command(Command::Scrub(ms(33_950)));
        assert_eq!(frame(&r), 330);
        r.tick();
        assert_eq!(frame(&r), 330 + PREVIEW_STEP as u64);
        r.command(Command::Seek(ms(33_950)));
        assert_eq!(frame(&r), 339, "the release goes on to the knob's picture");
        assert!(!r.status().playing);
        assert_shows_playhead(&r, "paused after the drag");
        // Let go at the end, paused: at the end, still paused.
        r.command(Command::Scrub(ms(60_000)));
        r.command(Command::GoLive);
        assert!(!r.status().playing && !r.p.clock.timeline.playing());

        // Space during a drag: the drag goes on, and the release plays.
        r.command(Command::Scrub(ms(20_000)));
        r.command(Command::TogglePause);
        assert!(r.status().playing && !r.p.clock.timeline.playing());
        assert_eq!(frame(&r), 200, "still the knob's picture");
        r.command(Command::Seek(ms(20_000)));
        assert!(r.p.clock.timeline.playing());
        assert_eq!(r.pos_us(), 20_000_000);
    }

    /// A seek into another group is the seek decoder's (libavcodec); openh264 decodes
    /// nothing while the picture rests, catches up when a step forward needs it, and playback
    /// goes on from there with the right pictures.
    #[test]
    fn the_seek_decoder_shows_the_target_and_openh264_catches_up_when_needed() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = file_rig(dir.path());
        r.tick();
        r.command(Command::Pause);
        let (before, fast_before) = (r.p.video.dec.decoded, r.p.video.fast_decoded);
        r.command(Command::Seek(Duration::from_millis(12_750)));
        assert_eq!(r.shown().0, 127);
        assert_shows_playhead(&r, "the seek");
        // Keyframe 120, then 122, 124, 126 (the reference layer) and the target 127.
        assert_eq!(r.p.video.fast_decoded - fast_before, 5);
        for _ in 0..20 {
            r.tick();
        }
        assert_eq!(
            r.p.video.dec.decoded, before,
            "nothing decoded again while paused"
        );
        assert_eq!(r.shown().0, 127);
        // A step forward within the group: openh264 catches up (120..=127) and goes on.
        r.command(Command::Seek(Duration::from_millis(12_950)));
        assert_eq!(r.shown().0, 129);
        assert_eq!(r.p.video.fast_decoded - fast_before, 5, "the step went on");
        assert_eq!(
            r.p.video.dec.decoded - before,
            5 + 2,
            "caught up, then 128 and 129"
        );
        r.command(Command::Play);
        for _ in 0..150 {
            r.tick();
            assert_shows_playhead(&r, "playing on");
        }
        // A seek while playing is openh264's: the pictures after it are due at once, and
        // would wait for openh264 to decode the group again.
        let fast = r.p.video.fast_decoded;
        r.command(Command::Seek(Duration::from_millis(31_450)));
        assert_eq!(r.shown().0, 314);
        assert_eq!(r.p.video.fast_decoded, fast, "a seek while playing");
        for _ in 0..50 {
            r.tick();
            assert_shows_playhead(&r, "playing on after a seek while playing");
        }
        assert!(r.p.video.catch_up.is_none());
    }

    /// The seek decoder is let go however playback reaches live: a fast-forward too.
    #[test]
    fn the_seek_decoder_is_let_go_at_live_after_a_fast_forward() {
        let dir = tempfile::tempdir().unwrap();
        let (mut r, mut writer) = live_rig(dir.path());
        let media: Vec<MediaUnit> = session().into_iter().filter(|u| u.track != 2).collect();
        let mut next = 0;
        let mut receive = |r: &mut Rig, until_us: i64| {
            while r.now_us < until_us {
                r.tick();
                while next < media.len() && media[next].capture_us <= T0 + r.now_us {
                    writer.append(&media[next]).unwrap();
                    next += 1;
                }
                writer.flush().unwrap();
            }
        };
        receive(&mut r, 10_000_000);
        r.command(Command::Pause);
        r.command(Command::SeekBy(-5_000));
        assert_shows_playhead(&r, "paused, 5 s back");
        assert!(
            matches!(r.p.video.fast, Some(Ok(_))),
            "the seek decoder's seek"
        );
        r.command(Command::SetSpeed(4.0));
        r.command(Command::Play);
        receive(&mut r, 13_000_000);
        let st = r.status();
        assert!(st.at_live, "caught up with live at 4x: {st:?}");
        assert_shows_playhead(&r, "live again");
        assert!(r.p.video.fast.is_none(), "let go at live");
    }

    /// A group with a damaged unit (the recorder marks the unit after a lost one so) is
    /// openh264's to seek in: libavcodec would cover a missing picture without a word.
    #[test]
    fn a_seek_over_a_damaged_unit_is_openh264s() {
        let dir = tempfile::tempdir().unwrap();
        let damaged_at = T0 + 125 * 100_000;
        let mut r = file_rig_with(dir.path(), |mut u| {
            u.damaged |= u.track == 0 && u.capture_us == damaged_at;
            Some(u)
        });
        r.tick();
        r.command(Command::Pause);
        let fast = r.p.video.fast_decoded;
        r.command(Command::Seek(Duration::from_millis(12_750)));
        assert_eq!(
            r.p.video.fast_decoded, fast,
            "the group with the damaged unit"
        );
        assert_eq!(r.shown().0, 127);
        r.command(Command::Seek(Duration::from_millis(20_350)));
        assert!(r.p.video.fast_decoded > fast, "a clean group");
        assert_eq!(r.shown().0, 203);
    }

    /// A decoder that lost its references (a unit failed: it waits for a keyframe) does not
    /// go on within its group: the seek starts at the keyframe and shows the target.
    #[test]
    fn a_seek_after_a_decoding_failure_starts_at_the_keyframe() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = file_rig(dir.path());
        r.tick();
        r.command(Command::Pause);
        r.command(Command::Scrub(Duration::from_millis(12_750)));
        assert_eq!(r.shown().0, 120);
        // As after a unit that failed to decode: nothing decodes until a keyframe.
        r.p.video.dec.reset().unwrap();
        assert_eq!(r.p.video.next, 121);
        r.command(Command::Seek(Duration::from_millis(12_750)));
        assert_eq!(r.shown().0, 127);
        assert_shows_playhead(&r, "after the failure");
    }

    /// Seeks from anywhere to anywhere, paused, half of them within the same group (where
    /// the decoder goes on instead of starting at the keyframe): each shows the picture at
    /// its target, as decoding from the keyframe would.
    #[test]
    fn every_seek_shows_its_target_whether_it_goes_on_or_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = file_rig(dir.path());
        r.tick();
        r.command(Command::Pause);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let span_ms = SECS as u64 * 1000 - 100;
        let (mut went_on, mut at) = (0, 0);
        for i in 0..80 {
            let to = if i % 2 == 0 {
                rnd(span_ms)
            } else {
                // Within a second after the last target: often the same group.
                (at + rnd(1000)).min(span_ms)
            };
            let plan = {
                let start = r.p.clock.timeline.start_us().unwrap();
                let idx = read_index(&r.p.rec.as_ref().unwrap().index);
                let v = r.p.video.track.unwrap();
                idx.seek_plan(v, start + to as i64 * 1000, r.p.video.resume_point())
                    .unwrap()
            };
            r.command(Command::Seek(Duration::from_millis(to)));
            assert_shows_playhead(&r, &format!("seek {i} to {to} ms, {plan:?}"));
            went_on += usize::from(!plan.fresh());
            at = to;
        }
        assert!(went_on >= 10, "{went_on} seeks went on within a group");
    }

    #[test]
    fn only_the_newest_of_queued_drag_positions_is_shown() {
        let s = |ms| Command::Scrub(Duration::from_millis(ms));
        let mut queued = vec![s(1), s(2), Command::Pause, s(3), s(4), s(5)];
        queued.push(Command::Seek(Duration::from_millis(5)));
        let kept = coalesce_scrubs(&mut queued);
        assert_eq!(
            kept,
            [
                s(2),
                Command::Pause,
                s(5),
                Command::Seek(Duration::from_millis(5))
            ]
        );
        assert!(queued.is_empty());
    }

    #[test]
    fn recorded_file_seeks_and_exports_captions() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = file_rig(dir.path());
        r.tick();
        assert_eq!(r.pos_us(), 0, "a file starts at its beginning");
        let decoded = r.p.video.dec.decoded;
        for target_ms in [12_340u64, 33_000, 1_050, 26_500] {
            r.command(Command::Seek(Duration::from_millis(target_ms)));
            assert_shows_playhead(&r, &format!("seek to {target_ms} ms"));
        }
        // Every other picture is a non-reference one: on the way from the keyframe (each
        // second) to frame 123 the seek skipped 121, to 265 261 and 263; 330 and 10 are
        // keyframes.
        assert_eq!(r.p.video.seek_skipped, 3);
        // Playing: openh264's seeks, not the seek decoder's.
        assert_eq!(r.p.video.dec.decoded - decoded, 3 + 1 + 1 + 4);
        assert_eq!(r.p.video.fast_decoded, 0);
        assert_eq!(r.status().caption_text, ["second caption"]);
        r.command(Command::SetCaptions(false));
        assert!(r.status().caption_text.is_empty(), "captions switched off");
        // Playing on at 1x from 26.5 s.
        for _ in 0..50 {
            r.tick();
        }
        assert_shows_playhead(&r, "playing the file");
        // Export, both formats.
        let vtt = dir.path().join("c.vtt");
        r.command(Command::ExportCaptions(vtt.clone()));
        let text = std::fs::read_to_string(&vtt).unwrap();
        assert_eq!(
            text,
            "WEBVTT\n\n00:00:05.000 --> 00:00:07.000\nfirst caption\n\n\
             00:00:25.000 --> 00:00:27.000\nsecond caption\n\n"
        );
        assert!(r.status().notice.unwrap().contains("2 captions written"));
        let srt = dir.path().join("c.srt");
        r.command(Command::ExportCaptions(srt.clone()));
        assert!(std::fs::read_to_string(&srt)
            .unwrap()
            .starts_with("1\n00:00:05,000 --> 00:00:07,000\nfirst caption\n"));
        let bad = dir.path().join("no/such/dir/c.vtt");
        r.command(Command::ExportCaptions(bad));
        assert!(r
            .status()
            .notice
            .unwrap()
            .starts_with("cannot write captions"));
    }

    /// Heap bytes a status owns (a shared chat list counts as the pointer it is).
    fn owned_bytes(st: &Status) -> usize {
        let strings = |v: &[String]| -> usize {
            v.iter().map(String::capacity).sum::<usize>() + std::mem::size_of_val(v)
        };
        strings(&st.caption_text)
            + strings(&st.warnings)
            + std::mem::size_of_val(st.codecs.as_slice())
            + st.notice.as_ref().map_or(0, String::capacity)
            + st.title.as_ref().map_or(0, String::capacity)
    }

    /// Publishing the status costs the same after two hours as after one minute: what it
    /// copies is counted, byte for byte, over a session history of each length (latency
    /// samples at 30 fps and 50 packets/s, a flash and a beep a second, a caption line every
    /// 2 s, a chat message every 10 s). The report, which does grow with the session, is
    /// not built by publishing.
    #[test]
    fn publishing_the_status_does_not_grow_with_the_session() {
        let published = |secs: i64| {
            let mut r = Rig::new(Source::Url("rtsp://test/live".into()), Arc::default(), None);
            let p = &mut r.p;
            for i in 0..secs * 30 {
                p.probes.video_latencies.push(40.0 + (i % 7) as f64);
            }
            for i in 0..secs * 50 {
                p.probes.audio_latencies.push(30.0 + (i % 5) as f64);
            }
            for i in 0..secs {
                p.probes
                    .flashes
                    .push((i * 1_000_000, i * 1_000_000 + 10_000));
                p.probes.beeps.push((i * 1_000_000, i * 1_000_000));
            }
            for i in 0..secs / 2 {
                let t = (i - secs / 2) * 2_000_000;
                p.captions
                    .blocks
                    .push((t, format!("line {}\u{2028}", i % 10)));
                p.captions.times.push((t, t));
            }
            for i in 0..secs / 10 {
                Arc::make_mut(&mut p.chat.received).push(ChatLine {
                    text: format!("message {i}"),
                    sent_unix_ms: i,
                    arrival_unix_ms: i,
                });
            }
            let st = r.status();
            assert!(
                Arc::ptr_eq(&st.chat, &r.p.chat.received),
                "the chat is shared"
            );
            assert_eq!(st.chat.len() as i64, secs / 10);
            assert_eq!(
                *r.p.report.lock().unwrap(),
                Report::default(),
                "publishing builds no report"
            );
            (owned_bytes(&st), st.caption_text)
        };
        let (minute, rows) = published(60);
        assert_eq!(rows, ["line 9"]);
        assert_eq!(published(2 * 3600), (minute, rows));
    }
}
