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
//! as it is decoded. The delay rises at once with a late arrival (it is in the window) and
//! falls back [`WINDOW_US`] after the late arrivals stop. On loopback it sits at a few ms; a
//! network with 30 ms of jitter gets about 35 ms.

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
            sorted: Vec::new(),
        }
    }

    /// A unit of media time `time_us` arrived by `now_us`.
    pub fn arrived(&mut self, time_us: i64, now_us: i64) {
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
        self.delay_us = (self.jitter_us + MARGIN_US).clamp(MIN_DELAY_US, MAX_DELAY_US);
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
        self.started.then(|| now_us - self.floor_us - self.delay_us)
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
        assert!((31_000..=35_000).contains(&d), "{d}");
        // Loopback-like again: 2 ms of jitter. After the window the delay is small.
        feed(
            &mut le,
            &mut rng,
            10_000_000,
            10_000_000 + WINDOW_US + 100_000,
            2_000,
        );
        let d = le.delay_us().unwrap();
        assert!((5_000..=7_000).contains(&d), "{d}");
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
        assert_eq!(le.delay_us(), Some(80_000 + MARGIN_US));

        // Audio's edge covers 99 %: two late arrivals of 100 are enough.
        let mut le = LiveEdge::covering(AUDIO_JITTER_PERCENTILE);
        feed(&mut le, &mut Rng(3), 0, 3_000_000, 0);
        for i in 0..2 {
            let capture = 3_000_000 + i * 20_000;
            le.arrived(capture, capture + 1_007_000 + 80_000);
        }
        assert_eq!(le.delay_us(), Some(80_000 + MARGIN_US));
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
}
