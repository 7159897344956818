//! Where the live limit sits: how far behind the newest data the playhead plays, adapted to
//! the measured arrival jitter. Sans-IO: every call takes the local clock as `now_us` (any
//! monotonic µs), so tests drive it in virtual time.
//!
//! Each unit of a track recorded is an arrival, and its *transit* is sampled: `now_us` when
//! it is seen minus its media time (the sender's capture clock). Transit is the encoder, the network, the
//! jitter buffer and the clock offset between sender and receiver together; only its
//! variation matters:
//!
//! * the *floor* is the smallest transit of the last [`WINDOW_US`]: a unit arriving on the
//!   fastest path;
//! * the *jitter* is how much later than the floor the units of that window arrived, at
//!   [`JITTER_PERCENTILE`] (audio: [`AUDIO_JITTER_PERCENTILE`]);
//! * the *playout delay* is jitter + [`MARGIN_US`] (the playback loop's tick and the
//!   decode), bounded to [`MIN_DELAY_US`, `MAX_DELAY_US`].
//!
//! The live limit at `now_us` is then `now_us − floor − delay`, a media time that advances
//! with the local clock, not only when data arrives: a frame that arrives on time waits just
//! the delay, and one that arrives late (the limit is past the newest data) is shown as soon
//! as it is decoded. On loopback it sits at a few ms; a network with 30 ms of jitter gets
//! about 35 ms.
//!
//! The delay rises at once with a late arrival (it is in the window; with a quarter of the
//! jitter on top as headroom, at most [`MAX_HEADROOM_US`]). How it falls depends on whether
//! the lateness recurs. Every change costs the viewer something: a rise holds the playhead
//! (audio has nothing to play: a gap heard), a fall makes it skip ahead.
//! * A one-off late burst (a scheduling hiccup, a Wi-Fi scan) is forgotten once it has left
//!   the window: the delay falls back [`WINDOW_US`] after it.
//! * Rises more than [`RECUR_GAP_US`] apart within [`HOLD_US`] are a lossy path: every lost
//!   packet that is retransmitted arrives a round trip late and holds the ones behind it in
//!   the jitter buffer, so the window's percentile swings with each loss. Then the delay
//!   falls only after a hold without a rise, in one step, to the most the window asked for
//!   during that hold, and only if that is more than [`FALL_MIN_US`] less: it settles at what
//!   recovery needs and stays there while losses go on, and goes back down within two holds
//!   once the path is clean (a hold that needed little more than the minimum ends the
//!   episode).

use std::collections::VecDeque;

/// Transit samples older than this are forgotten.
pub const WINDOW_US: i64 = 2_000_000;
/// The share of arrivals the delay covers: video (a late frame is shown late)...
pub const JITTER_PERCENTILE: f64 = 0.95;
/// ... and audio (a late packet is a gap heard).
pub const AUDIO_JITTER_PERCENTILE: f64 = 0.99;
/// Covers the playback loop's tick (4 ms) and decoding.
pub const MARGIN_US: i64 = 5_000;
pub const MIN_DELAY_US: i64 = 5_000;
pub const MAX_DELAY_US: i64 = 500_000;
/// The delay falls back (to what the window then says) only this long after it last rose...
pub const HOLD_US: i64 = 5_000_000;
/// ... and only if that is this much less: a few ms of latency are not worth a skip.
pub const FALL_MIN_US: i64 = 10_000;
/// Rises this far apart (within a hold) mean the lateness recurs.
pub const RECUR_GAP_US: i64 = 500_000;
/// A rise adds a quarter of the jitter on top, at most this.
pub const MAX_HEADROOM_US: i64 = 20_000;
/// At most this many samples are kept (the window at 100 arrivals/s, and then some).
const MAX_SAMPLES: usize = 512;

/// The adaptive live limit. See the module docs.
#[derive(Clone, Debug)]
pub struct LiveEdge {
    percentile: f64,
    /// `(now_us, transit_us)` of the arrivals of the last [`WINDOW_US`], oldest first.
    samples: VecDeque<(i64, i64)>,
    /// Something arrived.
    started: bool,
    /// Floor and delay, worked out when a sample comes in.
    floor_us: i64,
    jitter_us: i64,
    delay_us: i64,
    /// When the delay last rose, or the last hold ended.
    raised_at_us: i64,
    /// The largest delay the window asked for since then.
    worst_us: i64,
    /// Late arrivals recur (a lossy path): the delay is held ([`HOLD_US`]).
    recurrent: bool,
    /// When the delay last rose for a late arrival (not the first one's setting).
    last_rise_us: Option<i64>,
    /// Scratch space for the percentile.
    sorted: Vec<i64>,
}

impl Default for LiveEdge {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveEdge {
    /// Covers [`JITTER_PERCENTILE`] of the arrivals.
    pub fn new() -> Self {
        Self::covering(JITTER_PERCENTILE)
    }

    /// Covers `percentile` (0..=1) of the arrivals.
    pub fn covering(percentile: f64) -> Self {
        Self {
            percentile: percentile.clamp(0.0, 1.0),
            samples: VecDeque::new(),
            started: false,
            floor_us: 0,
            jitter_us: 0,
            delay_us: 0,
            raised_at_us: 0,
            worst_us: 0,
            recurrent: false,
            last_rise_us: None,
            sorted: Vec::new(),
        }
    }

    /// A unit of media time `time_us` arrived by `now_us`.
    pub fn arrived(&mut self, time_us: i64, now_us: i64) {
        let first = !self.started;
        self.started = true;
        while self
            .samples
            .front()
            .is_some_and(|&(t, _)| now_us - t > WINDOW_US)
            || self.samples.len() >= MAX_SAMPLES
        {
            self.samples.pop_front();
        }
        self.samples.push_back((now_us, now_us - time_us));
        self.sorted.clear();
        self.sorted.extend(self.samples.iter().map(|s| s.1));
        self.sorted.sort_unstable();
        self.floor_us = self.sorted[0];
        let k = ((self.sorted.len() - 1) as f64 * self.percentile).round() as usize;
        self.jitter_us = self.sorted[k] - self.floor_us;
        let wanted = (self.jitter_us + MARGIN_US).clamp(MIN_DELAY_US, MAX_DELAY_US);
        self.worst_us = self.worst_us.max(wanted);
        let since_rise = now_us - self.raised_at_us;
        if first || wanted > self.delay_us {
            // Late again, well after the last rise but within a hold: the lateness recurs.
            if let Some(prev) = self.last_rise_us.filter(|_| !first) {
                let gap = now_us - prev;
                if gap > RECUR_GAP_US && gap <= HOLD_US {
                    self.recurrent = true;
                }
            }
            if !first {
                self.last_rise_us = Some(now_us);
            }
            // Some headroom, so that the next arrival a little later does not stall again.
            let headroom = (self.jitter_us / 4).min(MAX_HEADROOM_US);
            self.delay_us = (wanted + headroom).min(MAX_DELAY_US);
            self.raised_at_us = now_us;
            self.worst_us = wanted;
        } else if self.recurrent {
            if since_rise > HOLD_US {
                // A hold has passed: down to the worst it needed, if that is much less.
                if self.worst_us + FALL_MIN_US < self.delay_us {
                    self.delay_us = self.worst_us;
                }
                // A clean hold ends the episode.
                self.recurrent = self.worst_us > MIN_DELAY_US + FALL_MIN_US;
                self.raised_at_us = now_us;
                self.worst_us = wanted;
            }
        } else if since_rise > WINDOW_US {
            // A one-off late burst (a scheduling hiccup) has left the window: back down.
            self.delay_us = wanted;
        }
    }

    /// The playout delay behind the fastest arrival, once something arrived.
    pub fn delay_us(&self) -> Option<i64> {
        self.started.then_some(self.delay_us)
    }

    /// The jitter measured (the delay without its margin), µs.
    pub fn jitter_us(&self) -> Option<i64> {
        self.started.then_some(self.jitter_us)
    }

    /// The media time the playhead may reach at `now_us`.
    pub fn limit_us(&self, now_us: i64) -> Option<i64> {
        self.limit_with_min_delay_us(now_us, 0)
    }

    /// [`LiveEdge::limit_us`] with a playout delay of at least `min_delay_us`.
    pub fn limit_with_min_delay_us(&self, now_us: i64, min_delay_us: i64) -> Option<i64> {
        self.started
            .then(|| now_us - self.floor_us - self.delay_us.max(min_delay_us))
    }
}

/// How long after the last retransmission request a path still counts as lossy.
pub const LOSSY_HOLD_US: i64 = 10_000_000;

/// A path that loses packets: the playout delay covers the jitter buffer's wait for
/// retransmissions, so a picture recovered by NACK is shown in its turn instead of arriving
/// after the playhead has passed it (and being decoded but never shown).
///
/// [`LiveEdge`] alone measures the lateness of what arrived, at a percentile, and on a lossy
/// path that is a moving target: each recovery holds a burst of units back by a round trip
/// or two. The jitter buffer's wait (round trip, the retries' spacing, a margin: the
/// session's [`retransmission_wait`]) is what recovery can take, known in advance and steady
/// while the round trip is. This holds the delay at least there from the first request on,
/// until [`LOSSY_HOLD_US`] pass without one; a clean path (no request) never has it, so
/// loopback keeps its few ms. libwebrtc's receiver does the same when NACK is on (its
/// target delay includes the round trip). A call's wait is bounded lower (at most 200 ms:
/// [`NackConfig::call`]) than a viewer's (at most 500 ms).
///
/// [`NackConfig::call`]: livecast_proto::rtsp::client::NackConfig::call
///
/// [`retransmission_wait`]: livecast_proto::rtsp::client::Client::retransmission_wait
#[derive(Clone, Debug, Default)]
pub struct RecoveryHold {
    /// Retransmission requests sent so far (cumulative), as last reported.
    requests: u64,
    /// When the last new request was seen.
    requested_at_us: Option<i64>,
    /// The jitter buffer's wait for a missing packet, as last reported.
    wait_us: i64,
}

impl RecoveryHold {
    /// The network side's figures at `now_us`: requests sent so far (cumulative) and the
    /// jitter buffer's current wait for a missing packet.
    pub fn net(&mut self, requests: u64, wait_us: i64, now_us: i64) {
        if requests > self.requests {
            self.requested_at_us = Some(now_us);
        }
        // A new session (a reconnect, a rendition switch) counts from zero again.
        self.requests = requests;
        self.wait_us = wait_us.clamp(0, MAX_DELAY_US);
    }

    /// The least playout delay at `now_us`: the wait and the margin while the path is lossy,
    /// else 0.
    pub fn min_delay_us(&self, now_us: i64) -> i64 {
        match self.requested_at_us {
            Some(t) if now_us - t <= LOSSY_HOLD_US && self.wait_us > 0 => {
                (self.wait_us + MARGIN_US).min(MAX_DELAY_US)
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small, seeded generator (xorshift): the same arrivals every run.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: i64) -> i64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as i64
        }
    }

    /// Units every 20 ms captured from `from_us`, each arriving `base + jitter` later with
    /// jitter uniform in `[0, max_jitter)`; arrivals never overtake one another.
    fn feed(le: &mut LiveEdge, rng: &mut Rng, from_us: i64, to_us: i64, max_jitter: i64) {
        let mut capture = from_us;
        let mut last_arrival = i64::MIN;
        while capture < to_us {
            let j = if max_jitter > 0 {
                rng.below(max_jitter)
            } else {
                0
            };
            let arrival = (capture + 1_000_000 + 7_000 + j).max(last_arrival);
            last_arrival = arrival;
            le.arrived(capture, arrival);
            capture += 20_000;
        }
    }

    #[test]
    fn nothing_arrived_no_limit() {
        let le = LiveEdge::new();
        assert_eq!(le.limit_us(5), None);
        assert_eq!(le.delay_us(), None);
    }

    #[test]
    fn steady_arrivals_get_the_minimum_delay() {
        let mut le = LiveEdge::new();
        feed(&mut le, &mut Rng(1), 0, 5_000_000, 0);
        assert_eq!(le.jitter_us(), Some(0));
        assert_eq!(le.delay_us(), Some(MIN_DELAY_US.max(MARGIN_US)));
        // The limit is the fastest transit (1.007 s: clock offset + 7 ms) plus the delay
        // behind the local clock.
        assert_eq!(
            le.limit_us(10_000_000),
            Some(10_000_000 - 1_007_000 - 5_000)
        );
    }

    #[test]
    fn delay_converges_to_the_jitter_and_falls_back_after_the_window() {
        let mut le = LiveEdge::new();
        let mut rng = Rng(0x5eed);
        // 30 ms of jitter: the delay covers 95 % of it plus the margin.
        feed(&mut le, &mut rng, 0, 10_000_000, 30_000);
        let d = le.delay_us().unwrap();
        // 95 % of 30 ms, the margin, and a quarter of the jitter as headroom.
        assert!((31_000..=45_000).contains(&d), "{d}");
        // Loopback-like again: 2 ms of jitter. The delay holds, then falls once (the first
        // hold that ends may still have the jittery arrivals in its window).
        feed(
            &mut le,
            &mut rng,
            10_000_000,
            10_000_000 + WINDOW_US + 100_000,
            2_000,
        );
        assert_eq!(le.delay_us(), Some(d), "held");
        feed(
            &mut le,
            &mut rng,
            10_000_000 + WINDOW_US + 100_000,
            10_000_000 + 2 * HOLD_US + WINDOW_US,
            2_000,
        );
        let d = le.delay_us().unwrap();
        assert!((5_000..=8_000).contains(&d), "{d}");
    }

    /// 5 % of the packets lost and retransmitted a round trip later (50-90 ms late, with the
    /// packets behind each held as long in the jitter buffer): after the first losses the
    /// delay stops moving, where without the hold it went up and down with every loss.
    #[test]
    fn under_steady_loss_the_delay_settles_and_stays() {
        let mut le = LiveEdge::covering(AUDIO_JITTER_PERCENTILE);
        let mut rng = Rng(0x10_55);
        let mut changes = Vec::new();
        let (mut capture, mut held_until) = (0, 0);
        let mut last = None;
        while capture < 60_000_000 {
            let mut arrival = capture + 1_007_000 + rng.below(2_000);
            if rng.below(100) < 5 {
                held_until = arrival + 50_000 + rng.below(40_000);
            }
            arrival = arrival.max(held_until);
            le.arrived(capture, arrival);
            let d = le.delay_us();
            if d != last && capture > 10_000_000 {
                changes.push((capture, d));
            }
            last = d;
            capture += 20_000;
        }
        let d = le.delay_us().unwrap();
        assert!(d >= 80_000, "covers the recovery: {d}");
        assert!(changes.len() <= 3, "changed after settling: {changes:?}");
        // The path clean again: back down within two holds.
        let end = capture + 2 * HOLD_US + WINDOW_US;
        feed(&mut le, &mut rng, capture, end, 0);
        let d = le.delay_us().unwrap();
        assert!(d < MIN_DELAY_US + FALL_MIN_US, "{d}");
    }

    #[test]
    fn late_arrivals_raise_the_delay_at_once() {
        let mut le = LiveEdge::new();
        feed(&mut le, &mut Rng(3), 0, 3_000_000, 0);
        assert_eq!(le.delay_us(), Some(MARGIN_US));
        // The window holds 100 arrivals: from the 6th late one on, the 95th percentile is late.
        for i in 0..6 {
            let capture = 3_000_000 + i * 20_000;
            le.arrived(capture, capture + 1_007_000 + 80_000);
        }
        assert_eq!(le.delay_us(), Some(80_000 + MARGIN_US + 80_000 / 4));

        // Audio's edge covers 99 %: two late arrivals of 100 are enough.
        let mut le = LiveEdge::covering(AUDIO_JITTER_PERCENTILE);
        feed(&mut le, &mut Rng(3), 0, 3_000_000, 0);
        for i in 0..2 {
            let capture = 3_000_000 + i * 20_000;
            le.arrived(capture, capture + 1_007_000 + 80_000);
        }
        assert_eq!(le.delay_us(), Some(80_000 + MARGIN_US + 80_000 / 4));
    }

    /// One late burst (the player stalled 300 ms) is not a lossy path: forgotten once it has
    /// left the window, with no hold.
    #[test]
    fn a_one_off_late_burst_is_forgotten_after_the_window() {
        let mut le = LiveEdge::new();
        let mut rng = Rng(7);
        feed(&mut le, &mut rng, 0, 3_000_000, 0);
        let burst_at = 3_000_000 + 300_000 + 1_007_000;
        for i in 0..15 {
            le.arrived(3_000_000 + i * 20_000, burst_at);
        }
        assert!(le.delay_us().unwrap() > 200_000);
        feed(
            &mut le,
            &mut rng,
            3_300_000,
            3_300_000 + WINDOW_US + 100_000,
            0,
        );
        assert_eq!(le.delay_us(), Some(MIN_DELAY_US.max(MARGIN_US)));
    }

    #[test]
    fn delay_is_bounded() {
        let mut le = LiveEdge::new();
        feed(&mut le, &mut Rng(9), 0, 5_000_000, 0);
        // Every 1.5 s the stream stalls for 1 s, then what was held arrives in a burst.
        let mut capture = 5_000_000;
        for _ in 0..4 {
            let burst_at = capture + 1_000_000 + 1_007_000;
            for _ in 0..50 {
                le.arrived(capture, burst_at);
                capture += 20_000;
            }
            for _ in 0..25 {
                le.arrived(capture, capture + 1_007_000);
                capture += 20_000;
            }
        }
        assert!(le.jitter_us().unwrap() > MAX_DELAY_US);
        assert_eq!(le.delay_us(), Some(MAX_DELAY_US));
    }
    #[test]
    fn recovery_holds_the_delay_at_the_retransmission_wait_while_requests_go_on() {
        let mut h = RecoveryHold::default();
        // A clean path: no request, no floor, whatever the wait.
        h.net(0, 170_000, 1_000_000);
        assert_eq!(h.min_delay_us(1_000_000), 0);
        // The first request: from now on the wait (and the margin) is the least delay.
        h.net(3, 170_000, 2_000_000);
        assert_eq!(h.min_delay_us(2_000_000), 170_000 + MARGIN_US);
        // The round trip moved: the wait follows.
        h.net(3, 120_000, 3_000_000);
        assert_eq!(h.min_delay_us(3_000_000), 120_000 + MARGIN_US);
        // No request for the hold: clean again.
        assert_eq!(
            h.min_delay_us(2_000_000 + LOSSY_HOLD_US),
            120_000 + MARGIN_US
        );
        assert_eq!(h.min_delay_us(2_000_001 + LOSSY_HOLD_US), 0);
        // A new session counts from zero; its first request starts a hold again.
        h.net(0, 120_000, 13_000_000);
        assert_eq!(h.min_delay_us(13_000_000), 0);
        h.net(1, 120_000, 14_000_000);
        assert_eq!(h.min_delay_us(14_000_000), 120_000 + MARGIN_US);
        // Bounded.
        h.net(5, 10_000_000, 15_000_000);
        assert_eq!(h.min_delay_us(15_000_000), MAX_DELAY_US);
    }

    #[test]
    fn a_minimum_delay_moves_the_limit_only_when_larger() {
        let mut le = LiveEdge::new();
        feed(&mut le, &mut Rng(1), 0, 5_000_000, 0);
        let now = 10_000_000;
        assert_eq!(le.limit_with_min_delay_us(now, 0), le.limit_us(now));
        assert_eq!(le.limit_with_min_delay_us(now, 1_000), le.limit_us(now));
        assert_eq!(
            le.limit_with_min_delay_us(now, 175_000),
            Some(now - 1_007_000 - 175_000)
        );
    }
}
