//! Sender-side quality adaptation for a call, from the receiver's RTCP reports (RFC 3550
//! §6.4: fraction lost, and the round trip from LSR/DLSR), Sans-IO.
//!
//! The bit rate follows the loss-based half of Google Congestion Control
//! (draft-ietf-rmcat-gcc-02 §6), changed where a policer would fool it:
//! - **Congestion** (loss above the path's usual loss by more than
//!   [`RateConfig::congestion_loss`]): the rate drops to what got through, `rate × (1 − loss)`,
//!   times [`RateConfig::backoff`], but at most to half at once. A policer drops everything
//!   above its rate, so this lands under it in a report or two (GCC's `1 − loss/2` takes
//!   many). Reports on fewer than 30 packets are not acted on.
//! - **Probe**: while loss stays within [`RateConfig::probe_loss`] of the usual loss, the rate
//!   grows by [`RateConfig::increase`] per second since the last report, up to the top of the
//!   ladder; but within 10 % of the rate that last got through a congested path (remembered
//!   for a minute) only by 0.5 % a second: a policer's bucket hides an excess for seconds
//!   and then drops a burst, which costs a keyframe. If a probe
//!   brings loss (the path's limit was just above the old rate), the rate goes back to the
//!   old one and stays there, without probing, for [`RateConfig::probe_hold`], twice as long
//!   after each failed probe in a row (up to 8 times).
//! - **Random loss is not congestion**: the usual loss is a slow average of the loss seen
//!   while the rate held steady, so a path that drops 5 % whatever we send (the NACK/FEC case)
//!   keeps its full rate.
//!
//! Past a bound the picture steps down: the [`Level`] ladder (e.g. 640x480@30, 480x360@20,
//! 320x240@15) is walked down as soon as the rate falls under a level's minimum, and up only
//! once the rate has stayed at [`RateConfig::up_margin`] times the next level's minimum for
//! [`RateConfig::up_hold`], so a picture size does not flap.

use std::time::{Duration, Instant};

/// One step of the picture ladder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Below this bit rate the next level down looks better.
    pub min_bitrate: u32,
    /// The most this level is given.
    pub max_bitrate: u32,
}

/// Tuning of a [`RateController`].
#[derive(Clone, Debug, PartialEq)]
pub struct RateConfig {
    /// Best first: `levels[0]` is the full picture.
    pub levels: Vec<Level>,
    /// Loss (0..1) above the usual that means congestion.
    pub congestion_loss: f64,
    /// Loss above the usual a probe may bring and still count as fitting.
    pub probe_loss: f64,
    /// Factor applied to what got through on congestion.
    pub backoff: f64,
    /// Growth per second while probing.
    pub increase: f64,
    /// No probing for this long after a probe brought loss (doubled per failure in a row).
    pub probe_hold: Duration,
    /// The next level up needs this multiple of its minimum ...
    pub up_margin: f64,
    /// ... held for this long.
    pub up_hold: Duration,
    /// Never below this (bit/s).
    pub floor: u32,
}

impl RateConfig {
    /// The call ladder from `width`x`height`@`fps` at `bitrate`: then three quarters of the
    /// size at two thirds of the rate, then half the size at half the rate; each level's
    /// minimum is a quarter of its maximum.
    pub fn call(width: u32, height: u32, fps: u32, bitrate: u32) -> Self {
        let even = |x: u32| (x / 2 * 2).max(16);
        let level = |num: u32, den: u32, fps: u32, max: u32| Level {
            width: even(width * num / den),
            height: even(height * num / den),
            fps: fps.max(1),
            min_bitrate: max / 4,
            max_bitrate: max,
        };
        let levels = vec![
            level(1, 1, fps, bitrate),
            level(3, 4, fps * 2 / 3, bitrate * 2 / 5),
            level(1, 2, fps / 2, bitrate / 6),
        ];
        RateConfig {
            levels,
            congestion_loss: 0.10,
            probe_loss: 0.01,
            backoff: 0.90,
            increase: 1.08,
            probe_hold: Duration::from_secs(10),
            up_margin: 1.3,
            up_hold: Duration::from_secs(4),
            floor: 30_000,
        }
    }
}

/// One receiver report about our stream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Report {
    /// Fraction of packets lost since the previous report (0..1).
    pub fraction_lost: f64,
    /// Packets the receiver expected since its previous report (from the extended highest
    /// sequence numbers of the two), when known: a report on a handful of packets (the
    /// first, covering one keyframe's burst) says little and is not acted on.
    pub expected: Option<u64>,
    /// Round trip, when the report carried LSR/DLSR.
    pub rtt: Option<Duration>,
    /// What we actually sent over the same time (bit/s), when known: encoders miss their
    /// target, mostly upward at low rates, and congestion is judged on what went out.
    pub sent_bitrate: Option<u32>,
}

/// Reports on fewer packets than this are not acted on.
const MIN_PACKETS: u64 = 30;
/// How long the rate at which the path last dropped packets is remembered.
const CEILING_MEMORY: Duration = Duration::from_secs(60);
/// Growth per second near that rate.
const CREEP: f64 = 1.005;

/// What the sender should do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub bitrate: u32,
    /// Index into [`RateConfig::levels`].
    pub level: usize,
}

/// Why the rate moved, for logs and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Move {
    Hold,
    Probe,
    /// A probe brought loss: back under the rate before it.
    ProbeFailed,
    Congestion,
}

/// See the module documentation.
#[derive(Debug)]
pub struct RateController {
    cfg: RateConfig,
    bitrate: f64,
    level: usize,
    /// The rate before the last probe, while its outcome is pending.
    probing_from: Option<f64>,
    no_probe_until: Option<Instant>,
    /// Slow average of the loss seen at a steady rate.
    usual_loss: f64,
    /// Since when the rate has been good enough for the level above.
    up_since: Option<Instant>,
    /// Probes that brought loss in a row: each doubles the wait before the next.
    failed_probes: u32,
    last_report: Option<Instant>,
    /// What got through when the path last dropped packets, and when.
    ceiling: Option<(f64, Instant)>,
}

impl RateController {
    /// Starts at the top level's maximum.
    pub fn new(cfg: RateConfig) -> Self {
        let top = cfg.levels.first().map_or(1_000_000, |l| l.max_bitrate);
        RateController {
            bitrate: f64::from(top),
            level: 0,
            probing_from: None,
            no_probe_until: None,
            usual_loss: 0.0,
            up_since: None,
            failed_probes: 0,
            last_report: None,
            ceiling: None,
            cfg,
        }
    }

    pub fn target(&self) -> Target {
        Target {
            bitrate: self.bitrate.round() as u32,
            level: self.level,
        }
    }

    pub fn config(&self) -> &RateConfig {
        &self.cfg
    }

    /// Takes one report received at `now`; returns how the rate moved.
    pub fn on_report(&mut self, now: Instant, r: Report) -> Move {
        if r.expected.is_some_and(|n| n < MIN_PACKETS) {
            return Move::Hold;
        }
        // Growth is per second, whatever the reporting interval (RFC 3550 spaces reports
        // seconds apart, at random).
        let since = self
            .last_report
            .replace(now)
            .map_or(Duration::from_secs(1), |t| now.saturating_duration_since(t))
            .as_secs_f64()
            .clamp(0.2, 5.0);
        let loss = r.fraction_lost.clamp(0.0, 1.0);
        let top = f64::from(self.cfg.levels.first().map_or(u32::MAX, |l| l.max_bitrate));
        let floor = f64::from(self.cfg.floor);
        let excess = loss - self.usual_loss;
        let m = if excess > self.cfg.congestion_loss {
            self.probing_from = None;
            self.no_probe_until = Some(now + self.cfg.probe_hold);
            // What got through, but at most halved at once (a report may cover a burst).
            let sent = r.sent_bitrate.map_or(self.bitrate, f64::from);
            let through = sent * (1.0 - loss);
            self.ceiling = Some((through, now));
            self.bitrate = (through * self.cfg.backoff)
                .max(self.bitrate / 2.0)
                .max(floor);
            Move::Congestion
        } else if let (Some(from), true) = (self.probing_from, excess > self.cfg.probe_loss) {
            // The rate before the probe fitted (or what actually went out, if less): back to
            // it, and wait longer each time.
            self.probing_from = None;
            self.failed_probes = (self.failed_probes + 1).min(4);
            let hold = self.cfg.probe_hold * (1 << (self.failed_probes - 1));
            self.no_probe_until = Some(now + hold);
            let through = r.sent_bitrate.map_or(from, |s| f64::from(s) * (1.0 - loss));
            self.ceiling = Some((through, now));
            self.bitrate = from.min(through).max(floor);
            Move::ProbeFailed
        } else {
            if self.probing_from.is_none() {
                // A steady report: it tells what this path loses anyway.
                self.usual_loss = 0.8 * self.usual_loss + 0.2 * loss;
            } else {
                self.failed_probes = 0;
            }
            self.probing_from = None;
            // An encoder sending well under its target (simple pictures) would make a probe
            // free: the target would run away from what is tested.
            let used = r
                .sent_bitrate
                .is_none_or(|s| f64::from(s) >= 0.8 * self.bitrate);
            let may_probe = used && self.no_probe_until.is_none_or(|t| now >= t);
            if may_probe && excess <= self.cfg.probe_loss && self.bitrate < top {
                self.probing_from = Some(self.bitrate);
                // Near the rate at which the path last dropped packets, creep (a policer's
                // bucket hides an excess for seconds, then drops a burst); elsewhere grow.
                let ceiling = match self.ceiling {
                    Some((c, at)) if now < at + CEILING_MEMORY => Some(c),
                    _ => None,
                };
                let grown = self.bitrate * self.cfg.increase.powf(since);
                self.bitrate = match ceiling {
                    Some(c) if grown > 0.9 * c => {
                        (self.bitrate * CREEP.powf(since)).max(self.bitrate.min(0.9 * c))
                    }
                    _ => grown,
                }
                .min(top);
                Move::Probe
            } else {
                Move::Hold
            }
        };
        self.pick_level(now);
        m
    }

    fn pick_level(&mut self, now: Instant) {
        let levels = &self.cfg.levels;
        let rate = self.bitrate;
        // Down at once, as far as needed.
        while self.level + 1 < levels.len() && rate < f64::from(levels[self.level].min_bitrate) {
            self.level += 1;
            self.up_since = None;
        }
        // Up one step after a steady spell above the next level's minimum.
        if self.level > 0 {
            let up = &levels[self.level - 1];
            if rate >= self.cfg.up_margin * f64::from(up.min_bitrate) {
                let since = *self.up_since.get_or_insert(now);
                if now >= since + self.cfg.up_hold {
                    self.level -= 1;
                    self.up_since = None;
                }
            } else {
                self.up_since = None;
            }
        }
        let max = f64::from(self.cfg.levels[self.level].max_bitrate);
        self.bitrate = self.bitrate.min(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    const SEC: Duration = Duration::from_secs(1);

    fn controller() -> RateController {
        RateController::new(RateConfig::call(640, 480, 30, 1_000_000))
    }

    fn report(loss: f64) -> Report {
        Report {
            fraction_lost: loss,
            expected: Some(200),
            rtt: Some(Duration::from_millis(40)),
            sent_bitrate: None,
        }
    }

    /// A policer that passes `limit` bit/s: the loss a sender at `rate` sees.
    fn policed(rate: f64, limit: f64) -> f64 {
        if rate <= limit {
            0.0
        } else {
            1.0 - limit / rate
        }
    }

    #[test]
    fn the_call_ladder_steps_size_and_frame_rate() {
        let c = RateConfig::call(640, 480, 30, 1_000_000);
        let sizes: Vec<(u32, u32, u32, u32, u32)> = c
            .levels
            .iter()
            .map(|l| (l.width, l.height, l.fps, l.min_bitrate, l.max_bitrate))
            .collect();
        assert_eq!(
            sizes,
            [
                (640, 480, 30, 250_000, 1_000_000),
                (480, 360, 20, 100_000, 400_000),
                (320, 240, 15, 41_666, 166_666),
            ]
        );
    }

    #[test]
    fn a_policer_is_met_in_one_report_and_a_probe_over_it_is_taken_back() {
        let mut c = controller();
        let t0 = Instant::now();
        let limit = 600_000.0;
        let mut moves = Vec::new();
        let mut rates = Vec::new();
        // Reports every 2.5 s, as our player sends them, for 40 s.
        for i in 0..16 {
            let now = t0 + Duration::from_millis(2500 * i);
            let rate = f64::from(c.target().bitrate);
            moves.push(c.on_report(now, report(policed(rate, limit))));
            rates.push(c.target().bitrate);
        }
        assert_eq!(moves[0], Move::Congestion);
        // 1 Mbit/s, 40 % lost: what got through (600 k) times 0.9.
        assert_eq!(rates[0], 540_000);
        // A report on a few packets (one keyframe's burst) is not acted on.
        let mut d = controller();
        let few = Report {
            expected: Some(12),
            ..report(0.9)
        };
        assert_eq!(d.on_report(t0, few), Move::Hold);
        assert_eq!(d.target().bitrate, 1_000_000);
        // Total loss halves the rate at most.
        d.on_report(t0, report(1.0));
        assert_eq!(d.target().bitrate, 500_000);
        // An encoder that sent 800 k for a 500 k target: judged on the 800 k.
        let over = Report {
            sent_bitrate: Some(800_000),
            ..report(0.5)
        };
        d.on_report(t0 + 3 * SEC, over);
        assert_eq!(d.target().bitrate, 360_000);
        // From the first report on, never more than 1 % over what the policer passes but for
        // one probe.
        let over: Vec<u32> = rates.iter().copied().filter(|&r| r > 606_000).collect();
        assert!(over.len() <= 1, "{rates:?}");
        // Settled after the probe that failed: within 80 % of the limit and the 1 % of loss
        // a probe may bring; level 0 kept.
        for &r in &rates[14..] {
            assert!((480_000..=606_000).contains(&r), "{rates:?}");
        }
        assert_eq!(c.target().level, 0);
        assert!(moves.contains(&Move::ProbeFailed), "{moves:?}");
    }

    #[test]
    fn random_loss_keeps_the_full_rate() {
        let mut c = controller();
        let t0 = Instant::now();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
        for i in 0..40 {
            // 5 % +- 2 % whatever the rate (NACK and FEC recover it).
            let loss = 0.05 + rng.random_range(-0.02..0.02);
            c.on_report(t0 + 2 * SEC * i, report(loss));
        }
        assert_eq!(
            c.target(),
            Target {
                bitrate: 1_000_000,
                level: 0
            }
        );
    }

    #[test]
    fn a_narrow_path_steps_the_picture_down_and_a_wide_one_brings_it_back() {
        let mut c = controller();
        let t0 = Instant::now();
        let mut now = t0;
        // 150 kbit/s: under level 1's minimum of 100 k? No: level 0's 250 k, so level 1.
        for _ in 0..10 {
            let rate = f64::from(c.target().bitrate);
            c.on_report(now, report(policed(rate, 150_000.0)));
            now += 2 * SEC;
        }
        assert_eq!(c.target().level, 1, "{:?}", c.target());
        assert!(c.target().bitrate <= 150_000);
        // 60 kbit/s: level 2.
        for _ in 0..10 {
            let rate = f64::from(c.target().bitrate);
            c.on_report(now, report(policed(rate, 60_000.0)));
            now += 2 * SEC;
        }
        assert_eq!(c.target().level, 2);
        // The limit goes: the rate climbs (8 % a second) and the levels follow one at a time,
        // each after its 4 s hold.
        let mut levels = vec![c.target().level];
        for _ in 0..60 {
            c.on_report(now, report(0.0));
            now += 2 * SEC;
            if levels.last() != Some(&c.target().level) {
                levels.push(c.target().level);
            }
        }
        assert_eq!(levels, [2, 1, 0]);
        assert_eq!(
            c.target(),
            Target {
                bitrate: 1_000_000,
                level: 0
            }
        );
    }

    #[test]
    fn the_floor_holds_under_total_loss() {
        let mut c = controller();
        let t0 = Instant::now();
        for i in 0..20 {
            c.on_report(t0 + SEC * i, report(1.0));
        }
        assert_eq!(
            c.target(),
            Target {
                bitrate: 30_000,
                level: 2
            }
        );
    }
}
