//! The playback clock over the recorded range: Sans-IO (it never reads the clock; every call
//! takes `now`), so a test can drive a ten-minute session in milliseconds.
//!
//! Positions are media times in the recording index's time base (capture time, µs since the
//! Unix epoch); subtract [`Timeline::start_us`] for "time since the start of the recording".
//!
//! * The playhead runs at `speed` (0.5 to 4.0) while playing, from an *anchor* (a position and
//!   the instant it held). Every change re-anchors, so nothing ever jumps unless asked to.
//! * It is clamped to `[start, live edge − live_delay]`. The live delay keeps the playhead
//!   behind the newest recorded data by what the arrival jitter needs. When the
//!   playhead runs into that limit it waits there (a stalled stream); at a speed above 1x it
//!   also falls back to 1x, like a DVR reaching live.
//! * *Following live*: after [`Timeline::go_live`] (or fast-forwarding into the live edge, or
//!   catching up with it at 1x) the playhead stays at live: if the stream stalls and then
//!   delivers a burst, it jumps forward to live again rather than falling behind. Pausing,
//!   seeking or changing speed stops following.
//! * **Audio is the master**: while audio is audible, the audio output reports the media time
//!   it is presenting ([`Timeline::audio_clock`]) and the playhead slews toward it — at most
//!   [`SLEW_RATE`] faster or slower, so corrections never jump — or resyncs at once when it is
//!   more than [`AUDIO_RESYNC_US`] away. Video frames are shown when the playhead reaches
//!   their time, so video follows audio. With no audio device the playhead runs on `now`.
//! * Pausing playback doesn't pause the recording: the range keeps growing.
//!
//! Call [`Timeline::tick`] regularly (each playback loop): it applies the live-edge rules.

use std::time::Instant;

pub const MIN_SPEED: f32 = 0.5;
pub const MAX_SPEED: f32 = 4.0;
/// Audio is muted above this speed.
pub const AUDIO_MUTE_ABOVE: f32 = 2.0;
/// "At live": the playhead within this of the live limit.
pub const AT_LIVE_TOLERANCE_US: i64 = 1_000_000;
/// An audio clock further than this from the playhead makes it jump to the audio clock.
pub const AUDIO_RESYNC_US: i64 = 200_000;
/// Largest slew while following the audio clock: 0.1 = 100 ms per second.
pub const SLEW_RATE: f64 = 0.1;

/// The playback clock. See the module docs.
#[derive(Clone, Debug)]
pub struct Timeline {
    /// Recorded range `[start, edge]`, unknown until the first unit is recorded.
    range: Option<(i64, i64)>,
    live_delay_us: i64,
    playing: bool,
    speed: f32,
    anchor_pos: i64,
    anchor_at: Instant,
    /// Correction still to apply at [`SLEW_RATE`] from the anchor (toward the audio clock).
    slew_us: i64,
    follow_live: bool,
    jumps: u64,
}

impl Timeline {
    /// A timeline with no recorded range yet, playing at 1x and following live (what a live
    /// stream wants; for a file, [`Self::set_range`], then [`Self::seek`] to the start).
    pub fn new(live_delay_us: i64, now: Instant) -> Self {
        Timeline {
            range: None,
            live_delay_us: live_delay_us.max(0),
            playing: true,
            speed: 1.0,
            anchor_pos: 0,
            anchor_at: now,
            slew_us: 0,
            follow_live: true,
            jumps: 0,
        }
    }

    // --------------------------------------------------------------------------------------
    // Queries

    /// The playhead.
    pub fn position(&self, now: Instant) -> i64 {
        let raw = self.raw_position(now);
        match self.limits() {
            Some((lo, hi)) => raw.clamp(lo, hi),
            None => raw,
        }
    }

    /// The playhead measured from the start of the recording (0 while nothing is recorded).
    pub fn position_from_start(&self, now: Instant) -> i64 {
        self.position(now)
            .saturating_sub(self.start_us().unwrap_or(0))
            .max(0)
    }

    pub fn playing(&self) -> bool {
        self.playing
    }

    pub fn speed(&self) -> f32 {
        self.speed
    }

    /// Audio is muted above 2x.
    pub fn audio_muted(&self) -> bool {
        self.speed > AUDIO_MUTE_ABOVE
    }

    pub fn live_delay_us(&self) -> i64 {
        self.live_delay_us
    }

    pub fn start_us(&self) -> Option<i64> {
        self.range.map(|r| r.0)
    }

    /// Newest recorded time.
    pub fn live_edge_us(&self) -> Option<i64> {
        self.range.map(|r| r.1)
    }

    /// The furthest the playhead may go: live edge − live delay (not before the start).
    pub fn live_limit_us(&self) -> Option<i64> {
        self.limits().map(|l| l.1)
    }

    /// Within [`AT_LIVE_TOLERANCE_US`] of the live limit.
    pub fn at_live(&self, now: Instant) -> bool {
        self.live_limit_us()
            .is_some_and(|hi| hi.saturating_sub(self.position(now)) <= AT_LIVE_TOLERANCE_US)
    }

    /// Whether the playhead sticks to live (see the module docs).
    pub fn following_live(&self) -> bool {
        self.follow_live
    }

    /// Counts the times the playhead jumped (seeks, going live, catching up after a stall,
    /// audio resyncs): when it changes, the playback side re-plans decoding from the index.
    pub fn jumps(&self) -> u64 {
        self.jumps
    }

    // --------------------------------------------------------------------------------------
    // Range

    /// Sets the recorded range (start and live edge).
    pub fn set_range(&mut self, start_us: i64, end_us: i64, now: Instant) {
        let now = self.not_before_anchor(now);
        let first = self.range.is_none();
        self.settle(now);
        self.reanchor(now);
        self.range = Some((start_us, end_us.max(start_us)));
        if first && self.follow_live {
            self.anchor_pos = self.live_limit_us().unwrap_or(start_us);
        }
        self.settle(now);
    }

    /// The recording grew (or the engine checks it regularly): the new live edge.
    pub fn set_live_edge(&mut self, end_us: i64, now: Instant) {
        match self.range {
            Some((start, _)) => self.set_range(start, end_us, now),
            None => self.set_range(end_us, end_us, now),
        }
    }

    /// The delay kept behind the live edge (the playback side adapts it to the measured
    /// arrival jitter); 0 for a file.
    pub fn set_live_delay(&mut self, live_delay_us: i64, now: Instant) {
        let now = self.not_before_anchor(now);
        self.settle(now);
        self.reanchor(now);
        self.live_delay_us = live_delay_us.max(0);
        self.settle(now);
    }

    /// Applies the live-edge rules: waiting at the live limit, falling back to 1x there,
    /// jumping back to live after a stall while following live.
    pub fn tick(&mut self, now: Instant) {
        let now = self.not_before_anchor(now);
        self.settle(now);
    }

    // --------------------------------------------------------------------------------------
    // Viewer commands

    pub fn play(&mut self, now: Instant) {
        let now = self.not_before_anchor(now);
        self.settle(now);
        self.reanchor(now);
        self.playing = true;
    }

    pub fn pause(&mut self, now: Instant) {
        let now = self.not_before_anchor(now);
        self.settle(now);
        self.reanchor(now);
        self.slew_us = 0;
        self.playing = false;
        self.follow_live = false;
    }

    pub fn toggle(&mut self, now: Instant) {
        if self.playing {
            self.pause(now);
        } else {
            self.play(now);
        }
    }

    /// Jumps to `to_us` (clamped to the recorded range and the live limit).
    pub fn seek(&mut self, to_us: i64, now: Instant) {
        let now = self.not_before_anchor(now);
        self.settle(now);
        self.anchor_pos = match self.limits() {
            Some((lo, hi)) => to_us.clamp(lo, hi),
            None => to_us,
        };
        self.anchor_at = now;
        self.slew_us = 0;
        self.follow_live = false;
        self.jumps += 1;
    }

    /// Jumps by `delta_us` from the playhead (negative: rewind).
    pub fn seek_by(&mut self, delta_us: i64, now: Instant) {
        let now = self.not_before_anchor(now);
        let to = self.position(now).saturating_add(delta_us);
        self.seek(to, now);
    }

    /// Sets the speed, clamped to 0.5..=4.0 (NaN is ignored). At the live limit a speed above
    /// 1x falls back to 1x at the next tick.
    pub fn set_speed(&mut self, speed: f32, now: Instant) {
        if speed.is_nan() {
            return;
        }
        let now = self.not_before_anchor(now);
        self.settle(now);
        self.reanchor(now);
        self.slew_us = 0;
        self.speed = speed.clamp(MIN_SPEED, MAX_SPEED);
        if self.speed != 1.0 {
            self.follow_live = false;
        }
    }

    /// Back to live: playhead at the live limit, 1x, playing, following live.
    pub fn go_live(&mut self, now: Instant) {
        let now = self.not_before_anchor(now);
        self.settle(now);
        self.anchor_pos = self.live_limit_us().unwrap_or(self.anchor_pos);
        self.anchor_at = now;
        self.slew_us = 0;
        self.speed = 1.0;
        self.playing = true;
        self.follow_live = true;
        self.jumps += 1;
    }

    // --------------------------------------------------------------------------------------
    // Audio master

    /// The audio output reports the media time of the sample being heard at `now`. While
    /// playing with audio audible, the playhead slews toward it (never jumping) or, when more
    /// than [`AUDIO_RESYNC_US`] away, jumps to it. Ignored while paused or muted by speed.
    pub fn audio_clock(&mut self, audio_pos_us: i64, now: Instant) {
        let now = self.not_before_anchor(now);
        if !self.playing || self.audio_muted() {
            return;
        }
        self.settle(now);
        let pos = self.position(now);
        self.anchor_pos = pos;
        self.anchor_at = now;
        let err = audio_pos_us.saturating_sub(pos);
        if err.unsigned_abs() > AUDIO_RESYNC_US.unsigned_abs() {
            self.anchor_pos = match self.limits() {
                Some((lo, hi)) => audio_pos_us.clamp(lo, hi),
                None => audio_pos_us,
            };
            self.slew_us = 0;
            self.jumps += 1;
        } else {
            self.slew_us = err;
        }
    }

    // --------------------------------------------------------------------------------------
    // Internals

    /// Input time never goes behind the anchor (a caller's clocks may disagree slightly).
    fn not_before_anchor(&self, now: Instant) -> Instant {
        now.max(self.anchor_at)
    }

    fn limits(&self) -> Option<(i64, i64)> {
        self.range
            .map(|(start, edge)| (start, edge.saturating_sub(self.live_delay_us).max(start)))
    }

    /// Microseconds since the anchor (0 if `now` is before it).
    fn elapsed_us(&self, now: Instant) -> f64 {
        now.saturating_duration_since(self.anchor_at).as_micros() as f64
    }

    /// Slew applied after `elapsed` µs.
    fn slew_applied(&self, elapsed: f64) -> i64 {
        let max = (elapsed * SLEW_RATE) as i64;
        self.slew_us.signum() * self.slew_us.abs().min(max)
    }

    fn raw_position(&self, now: Instant) -> i64 {
        if !self.playing {
            return self.anchor_pos;
        }
        let el = self.elapsed_us(now);
        let advance = (el * f64::from(self.speed)) as i64;
        self.anchor_pos
            .saturating_add(advance)
            .saturating_add(self.slew_applied(el))
    }

    /// Moves the anchor to `now` without changing the position (keeps the unapplied slew).
    fn reanchor(&mut self, now: Instant) {
        let applied = if self.playing {
            self.slew_applied(self.elapsed_us(now))
        } else {
            0
        };
        self.anchor_pos = self.position(now);
        self.anchor_at = now;
        self.slew_us -= applied;
    }

    fn settle(&mut self, now: Instant) {
        let Some((lo, hi)) = self.limits() else {
            return;
        };
        let raw = self.raw_position(now);
        if raw > hi {
            // Ran into the live limit: wait there; a DVR fast-forwarding into live drops to 1x.
            self.anchor_pos = hi;
            self.anchor_at = now;
            self.slew_us = 0;
            if self.playing {
                if self.speed > 1.0 {
                    self.speed = 1.0;
                }
                if self.speed == 1.0 {
                    self.follow_live = true;
                }
            }
        } else if raw < lo {
            self.anchor_pos = lo;
            self.anchor_at = now;
            self.slew_us = 0;
        } else if self.follow_live && self.playing && hi.saturating_sub(raw) > AT_LIVE_TOLERANCE_US
        {
            // Following live and the stream delivered a burst after a stall: back to live.
            self.anchor_pos = hi;
            self.anchor_at = now;
            self.slew_us = 0;
            self.jumps += 1;
        }
    }
}
