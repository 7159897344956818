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
//! - **Unless a lower rate ends it**: loss that stays over 2 % for 4 s at a steady rate may
//!   also be a policer's that the encoder keeps meeting (traffic the video's rate does not
//!   count, retransmissions and audio, goes through it too), and the 3-8 % loss that brings
//!   stays under the congestion threshold. The controller then steps down by a fifth until
//!   enough packets have come to tell (fifteen losses' worth at the spell's loss, or 6 s): if
//!   their loss is a third of the spell's or less (or under 1 %), it was the rate's, and the
//!   lower rate stays, remembered as the path's limit; if not, the rate comes back. No new
//!   test for 20 s after one, twice as long after each that showed the loss to be the path's
//!   (up to 8 times). A test never takes the picture down a level. Losses are pooled over the
//!   spell and over the test, so that a path that loses at random is not judged on one
//!   report's handful of losses. Reports that carry no packet count count as a hundred.
//! - **An encoder over its target**: rates are judged on what went out, and an encoder that
//!   sends more than it is asked (noisy pictures at a low rate) is asked for less by as much:
//!   the median sent / target of the last five reports that covered a time at one target
//!   (not the first after a change, when a new encoder starts with a keyframe). Without it
//!   the target lands on the policer's rate and the encoder's output 5-15 % over it.
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
    /// Lasting loss under the congestion threshold: the rate steps down to see whether the
    /// loss is the rate's.
    TestDown,
    /// The step down ended the loss: it was the rate's, and the lower rate stays.
    RateLoss,
    /// The step down did not end the loss: it is the path's, and the rate is back.
    PathLoss,
}

/// Packets and losses pooled over several reports (each covers a second or so: a hundred
/// packets, a handful of losses, too few to judge by alone).
#[derive(Clone, Copy, Debug, Default)]
struct Pooled {
    packets: f64,
    lost: f64,
}

impl Pooled {
    fn add(&mut self, r: &Report, loss: f64) {
        let n = r.expected.map_or(100.0, |n| n as f64);
        self.packets += n;
        self.lost += n * loss;
    }

    fn loss(&self) -> f64 {
        if self.packets > 0.0 {
            self.lost / self.packets
        } else {
            0.0
        }
    }
}

/// A stretch of reports with loss over [`DOWN_TEST_LOSS`].
#[derive(Clone, Copy, Debug)]
struct LossySpell {
    since: Instant,
    pooled: Pooled,
}

/// A step down under way (see the module documentation).
#[derive(Clone, Copy, Debug)]
struct DownTest {
    /// The rate before it.
    from: f64,
    /// The loss over the spell that prompted it.
    loss: f64,
    at: Instant,
    /// Since the step.
    after: Pooled,
}

/// Loss over this, lasting [`DOWN_TEST_AFTER`] at a steady rate, prompts a step down.
const DOWN_TEST_LOSS: f64 = 0.02;
const DOWN_TEST_AFTER: Duration = Duration::from_secs(4);
/// The step down, as a factor of the rate.
const DOWN_TEST_STEP: f64 = 0.8;
/// A step down is judged once this many losses would have come at the spell's loss (or
/// after [`DOWN_TEST_LONGEST`]): by chance, a path that loses at random shows a third of its
/// loss over that many packets a few times in a thousand.
const DOWN_TEST_LOSSES: f64 = 15.0;
const DOWN_TEST_LONGEST: Duration = Duration::from_secs(6);
/// The loss after the step that says it was the rate's: this fraction of the spell's.
const DOWN_TEST_PASS: f64 = 1.0 / 3.0;
/// No new test this long after one (doubled per test in a row that found the loss to be the
/// path's, up to 8 times).
const DOWN_TEST_HOLD: Duration = Duration::from_secs(20);
/// Reports at an unchanged target (within this fraction) that the encoder's overshoot is
/// measured on; the median of the last [`OVERSHOOT_SAMPLES`] is used.
const SAME_TARGET: f64 = 0.03;
const OVERSHOOT_SAMPLES: usize = 5;

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
    down_test: Option<DownTest>,
    /// Steady reports with more than [`DOWN_TEST_LOSS`] in a row.
    lossy: Option<LossySpell>,
    no_down_test_until: Option<Instant>,
    /// Tests in a row that found the loss to be the path's.
    path_loss_tests: u32,
    /// sent / target of the last reports that covered a time at one target (but for the
    /// first such report after a change: a new encoder starts with a keyframe), at most
    /// [`OVERSHOOT_SAMPLES`].
    overshoot: std::collections::VecDeque<f64>,
    /// The target (rate, level) set at the last report and at the one before: the time the
    /// next report covers ran at the first.
    targets: [(f64, usize); 2],
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
            down_test: None,
            lossy: None,
            no_down_test_until: None,
            path_loss_tests: 0,
            overshoot: std::collections::VecDeque::new(),
            targets: [(f64::from(top), 0); 2],
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
        // A NaN (0/0 upstream) says nothing: no loss, rather than a usual loss that is NaN
        // for good.
        let loss = if r.fraction_lost.is_nan() {
            0.0
        } else {
            r.fraction_lost.clamp(0.0, 1.0)
        };
        let top = f64::from(self.cfg.levels.first().map_or(u32::MAX, |l| l.max_bitrate));
        let floor = f64::from(self.cfg.floor);
        let excess = loss - self.usual_loss;
        self.measure_overshoot(&r);
        // Rates that are to go out are asked of the encoder as targets this much lower.
        let over = self.overshoot();
        let m = if excess > self.cfg.congestion_loss {
            self.probing_from = None;
            self.down_test = None;
            self.lossy = None;
            self.path_loss_tests = 0;
            self.no_probe_until = Some(now + self.cfg.probe_hold);
            // What got through, but at most halved at once (a report may cover a burst).
            let sent = r.sent_bitrate.map_or(self.bitrate, f64::from);
            let through = sent * (1.0 - loss);
            self.ceiling = Some((through, now));
            self.bitrate = (through * self.cfg.backoff / over)
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
            self.bitrate = from.min(through / over).max(floor);
            Move::ProbeFailed
        } else if let Some(test) = self.down_test {
            self.judge_down_test(test, now, &r, loss)
        } else if let Some(spell_loss) = self.down_test_due(now, &r, loss) {
            self.down_test = Some(DownTest {
                from: self.bitrate,
                loss: spell_loss,
                at: now,
                after: Pooled::default(),
            });
            self.lossy = None;
            if self.probing_from.take().is_some() {
                // The probe fitted (its loss is the path's, or it would have failed).
                self.failed_probes = 0;
            }
            self.bitrate *= DOWN_TEST_STEP;
            Move::TestDown
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
                    Some(c) if grown * over > 0.9 * c => {
                        (self.bitrate * CREEP.powf(since)).max(self.bitrate.min(0.9 * c / over))
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
        self.targets = [(self.bitrate, self.level), self.targets[0]];
        m
    }

    /// Notes sent / target from a report that covered a time at one target, not the first
    /// after a change.
    fn measure_overshoot(&mut self, r: &Report) {
        let [(now_rate, now_level), (before_rate, before_level)] = self.targets;
        let steady = now_level == before_level
            && now_rate > 0.0
            && (now_rate - before_rate).abs() <= SAME_TARGET * now_rate;
        if let (Some(sent), true) = (r.sent_bitrate, steady) {
            if self.overshoot.len() == OVERSHOOT_SAMPLES {
                self.overshoot.pop_front();
            }
            self.overshoot
                .push_back((f64::from(sent) / now_rate).clamp(0.5, 2.0));
        }
    }

    /// How far over its target the encoder sends: the median of the samples (a keyframe's
    /// window is one sample of several), 1 when it sends on or under its target.
    fn overshoot(&self) -> f64 {
        let mut v: Vec<f64> = self.overshoot.iter().copied().collect();
        if v.is_empty() {
            return 1.0;
        }
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        median.max(1.0)
    }

    /// Whether a report with `loss` (at a steady rate, or after a probe that fitted) calls for
    /// a step down: the loss over the lossy spell, if so. Notes the spell.
    fn down_test_due(&mut self, now: Instant, r: &Report, loss: f64) -> Option<f64> {
        if loss <= DOWN_TEST_LOSS {
            self.lossy = None;
            return None;
        }
        let spell = self.lossy.get_or_insert(LossySpell {
            since: now,
            pooled: Pooled::default(),
        });
        spell.pooled.add(r, loss);
        let spell = *spell;
        let level_min = f64::from(self.cfg.levels[self.level].min_bitrate);
        (now >= spell.since + DOWN_TEST_AFTER
            && self.no_down_test_until.is_none_or(|t| now >= t)
            && self.bitrate * DOWN_TEST_STEP >= level_min.max(f64::from(self.cfg.floor)))
        .then(|| spell.pooled.loss())
    }

    /// A report during a step down (each covers only time after the step: the step was made
    /// at the report before). Once enough packets have come, their loss tells whose it was.
    fn judge_down_test(&mut self, mut test: DownTest, now: Instant, r: &Report, loss: f64) -> Move {
        test.after.add(r, loss);
        if test.after.packets * test.loss < DOWN_TEST_LOSSES && now < test.at + DOWN_TEST_LONGEST {
            self.down_test = Some(test);
            return Move::Hold;
        }
        self.down_test = None;
        let after = test.after.loss();
        if after <= (test.loss * DOWN_TEST_PASS).max(self.cfg.probe_loss) {
            // The rate's: stay down, remember what got through as the path's limit, and the
            // loss left (over enough packets to go by) as the path's own.
            let through = r
                .sent_bitrate
                .map_or(self.bitrate, |s| f64::from(s) * (1.0 - loss));
            self.ceiling = Some((through, now));
            self.usual_loss = after;
            self.path_loss_tests = 0;
            self.no_probe_until = Some(now + self.cfg.probe_hold);
            self.no_down_test_until = Some(now + DOWN_TEST_HOLD);
            Move::RateLoss
        } else {
            self.path_loss_tests = (self.path_loss_tests + 1).min(4);
            self.no_down_test_until =
                Some(now + DOWN_TEST_HOLD * (1 << (self.path_loss_tests - 1)));
            self.bitrate = test.from;
            Move::PathLoss
        }
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
        // An encoder that sent 800 k for a 500 k target: judged on the 800 k (400 k got
        // through, times 0.9). The first report after a change says nothing of how far the
        // encoder overshoots (a new encoder starts with a keyframe).
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

    /// An encoder that cannot get under its target (noisy pictures) sends 15 % over it, under
    /// a 600 kbit/s policer: the loss it keeps (5-10 %) is under the congestion threshold and
    /// would be learned as the path's usual loss; a step down that makes the loss go away
    /// tells the controller it was the rate's, and it stays under the policer.
    #[test]
    fn loss_that_a_lower_rate_ends_is_not_taken_for_the_paths() {
        let mut c = controller();
        let t0 = Instant::now();
        let limit = 600_000.0;
        let mut sent_log = Vec::new();
        for i in 0..90 {
            let now = t0 + SEC * i;
            let sent = 1.15 * f64::from(c.target().bitrate);
            let r = Report {
                sent_bitrate: Some(sent as u32),
                ..report(policed(sent, limit))
            };
            c.on_report(now, r);
            sent_log.push(sent as u32);
        }
        // The last 40 s: at the policer's rate, over it only by the probes, which creep at
        // 0.5 % a second and are taken back at the first loss over 1 %.
        let losses: Vec<f64> = sent_log[50..]
            .iter()
            .map(|&s| policed(f64::from(s), limit))
            .collect();
        let mean = mean(&losses);
        assert!(mean < 0.005, "mean loss {mean}: {sent_log:?}");
        assert!(losses.iter().all(|&l| l < 0.02), "{sent_log:?}");
        assert!(
            sent_log[50..].iter().all(|&s| f64::from(s) > 0.8 * limit),
            "{sent_log:?}"
        );
    }

    /// Traffic the reports do not count goes through the same policer (retransmissions, the
    /// audio): the video's own rate, which is all the controller sees, meets loss at 450
    /// kbit/s. The step down finds that out as well.
    #[test]
    fn loss_from_traffic_the_reports_do_not_count_is_met_too() {
        let mut c = controller();
        let t0 = Instant::now();
        let (limit, other) = (600_000.0, 150_000.0);
        let mut wire = Vec::new();
        let mut moves = Vec::new();
        for i in 0..90 {
            let sent = f64::from(c.target().bitrate);
            let r = Report {
                sent_bitrate: Some(sent as u32),
                ..report(policed(sent + other, limit))
            };
            moves.push((i, c.on_report(t0 + SEC * i, r)));
            wire.push(sent + other);
            if moves.last().is_some_and(|m| m.1 == Move::RateLoss) {
                // What was lost at the higher rate is not the path's usual loss.
                assert_eq!(c.usual_loss, 0.0);
            }
        }
        // One test found the loss to be the rate's; none for 20 s after it.
        let tests: Vec<u32> = moves
            .iter()
            .filter(|m| m.1 == Move::TestDown)
            .map(|m| m.0)
            .collect();
        let passed: Vec<u32> = moves
            .iter()
            .filter(|m| m.1 == Move::RateLoss)
            .map(|m| m.0)
            .collect();
        assert!(!passed.is_empty(), "{moves:?}");
        assert!(
            tests.iter().all(|&t| t <= passed[0] || t >= passed[0] + 20),
            "{moves:?}"
        );
        // From 10 s on no report over 2 % (a probe is taken back at 1 %); the last 40 s under
        // 1 % on average, and close to the limit.
        let losses: Vec<f64> = wire.iter().map(|&w| policed(w, limit)).collect();
        assert!(losses[10..].iter().all(|&l| l < 0.02), "{wire:?}");
        let mean = mean(&losses[50..]);
        assert!(mean < 0.01, "mean loss {mean}: {wire:?}");
        assert!(wire[50..].iter().all(|&w| w > 0.8 * limit), "{wire:?}");
    }

    /// Congestion in the middle of a step down ends it: the rate from before the step is not
    /// given back when the loss after it turns out to be the path's.
    #[test]
    fn congestion_during_a_step_down_ends_it() {
        let mut c = controller();
        let t0 = Instant::now();
        let mut moves = Vec::new();
        let mut i = 0;
        while !moves.contains(&Move::TestDown) {
            moves.push(c.on_report(t0 + SEC * i, report(0.05)));
            i += 1;
        }
        assert_eq!(moves.last(), Some(&Move::TestDown));
        assert_eq!(c.on_report(t0 + SEC * i, report(0.4)), Move::Congestion);
        let after = c.target().bitrate;
        for k in 1..10 {
            let m = c.on_report(t0 + SEC * (i + k), report(0.05));
            assert!(c.target().bitrate <= after, "{m:?}: {:?}", c.target());
        }
    }

    /// After a step down that kept the lower rate, no other for 20 s, whatever the loss.
    #[test]
    fn a_step_down_that_passed_holds_the_next_off() {
        let mut c = controller();
        let t0 = Instant::now();
        let mut i = 0;
        while c.on_report(t0 + SEC * i, report(0.05)) != Move::TestDown {
            i += 1;
        }
        // Judged once enough packets have come (300 at 5 %: two reports of 200).
        let mut judged = Vec::new();
        while judged.last() != Some(&Move::RateLoss) && judged.len() < 6 {
            i += 1;
            judged.push(c.on_report(t0 + SEC * i, report(0.0)));
        }
        assert_eq!(judged, [Move::Hold, Move::RateLoss]);
        let passed = i;
        let mut next = None;
        for k in 1..40 {
            if c.on_report(t0 + SEC * (passed + k), report(0.05)) == Move::TestDown {
                next = Some(k);
                break;
            }
        }
        assert!(next.is_some_and(|k| k >= 20), "{next:?}");
    }

    /// Many policers (200-900 kbit/s), encoders 0-30 % over their target, 0-100 kbit/s of
    /// traffic the reports do not count, reports 1-3 s apart: after a minute, the next
    /// minute loses under 1.5 % on average and uses more than 70 % of what the policer passes
    /// (of what is left to the video under the ladder's top).
    #[test]
    fn policers_of_every_kind_are_met_without_giving_up_the_rate() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(11);
        for case in 0..200 {
            let limit = rng.random_range(200_000.0..900_000.0);
            let over = rng.random_range(1.0..1.3);
            let other = rng.random_range(0.0..100_000.0);
            let step_ms = rng.random_range(1000..3000);
            let mut c = controller();
            let t0 = Instant::now();
            let (mut losses, mut wire) = (Vec::new(), Vec::new());
            let mut now = t0;
            while now < t0 + 120 * SEC {
                let sent = over * f64::from(c.target().bitrate);
                let loss = policed(sent + other, limit);
                let r = Report {
                    sent_bitrate: Some(sent as u32),
                    ..report(loss)
                };
                c.on_report(now, r);
                if now >= t0 + 60 * SEC {
                    losses.push(loss);
                    wire.push(sent + other);
                }
                now += Duration::from_millis(step_ms);
            }
            let usable = limit.min(over * 1_000_000.0 + other);
            assert!(
                mean(&losses) < 0.015,
                "case {case}: limit {limit:.0}, over {over:.2}, other {other:.0}, \
                 every {step_ms} ms: mean loss {:.3}, {wire:?}",
                mean(&losses)
            );
            assert!(
                mean(&wire) > 0.7 * usable,
                "case {case}: limit {limit:.0}, over {over:.2}, other {other:.0}, \
                 every {step_ms} ms: {:.0} of {usable:.0} used, {wire:?}",
                mean(&wire)
            );
        }
    }

    fn mean(v: &[f64]) -> f64 {
        v.iter().sum::<f64>() / v.len() as f64
    }

    /// Packets lost at random, each with probability `p`, out of `n`.
    fn binomial(rng: &mut rand::rngs::SmallRng, n: u64, p: f64) -> u64 {
        (0..n).filter(|_| rng.random::<f64>() < p).count() as u64
    }

    /// Random loss as reports see it: a second's packets (100 at 1 Mbit/s), a handful of
    /// losses each, some reports far over the mean and some under it. Over 20 runs of 5
    /// minutes each, the step-down tests must not ratchet the rate down (a test judged on
    /// one report would pass by chance now and then and never give the rate back).
    #[test]
    fn random_loss_counted_in_packets_keeps_the_rate() {
        for &(p, step_ms) in &[(0.03, 1000_u64), (0.05, 1000), (0.05, 2500)] {
            let mut means = Vec::new();
            for seed in 0..20 {
                let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
                let mut c = controller();
                let t0 = Instant::now();
                let mut now = t0;
                let mut tail = Vec::new();
                while now < t0 + 300 * SEC {
                    let rate = f64::from(c.target().bitrate);
                    let n = (rate * step_ms as f64 / 1000.0 / 9600.0).round().max(1.0) as u64;
                    let lost = binomial(&mut rng, n, p);
                    let r = Report {
                        fraction_lost: lost as f64 / n as f64,
                        expected: Some(n),
                        rtt: None,
                        sent_bitrate: Some(rate as u32),
                    };
                    c.on_report(now, r);
                    if now >= t0 + 200 * SEC {
                        tail.push(f64::from(c.target().bitrate));
                    }
                    now += Duration::from_millis(step_ms);
                }
                means.push(mean(&tail));
            }
            means.sort_by(f64::total_cmp);
            eprintln!("random loss {p} every {step_ms} ms: mean rate of the last 100 s over 20 runs: {means:.0?}");
            assert!(means[10] >= 900_000.0, "{p}, {step_ms} ms: {means:.0?}");
            assert!(means[0] >= 600_000.0, "{p}, {step_ms} ms: {means:.0?}");
        }
    }

    /// A policer and random loss on the same path: what the policer drops goes, what the
    /// path loses anyway is left to retransmission, and the rate does not collapse. Under 3 %
    /// of random loss a probe's first 1-2 % over the policer cannot be told from chance in
    /// one report, so up to 2 % is the policer's on average here; and probes fail on chance
    /// now and then and each takes the rate back to what got through, so the rate settles
    /// well under the policer's (over half of it here; near it on a clean path). A probe that
    /// tolerated chance would creep further over a policer whose bucket then drops a
    /// keyframe (tried: a CI run of the policer call froze once with it, cause not
    /// established; probes keep the strict 1 %).
    #[test]
    fn a_policer_behind_a_lossy_link_is_met_without_giving_up_the_rate() {
        let limit = 600_000.0;
        for seed in 0..10 {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(100 + seed);
            let mut c = controller();
            let t0 = Instant::now();
            let (mut policer, mut wire) = (Vec::new(), Vec::new());
            for i in 0..180 {
                let sent = 1.1 * f64::from(c.target().bitrate);
                let n = (sent / 9600.0).round() as u64;
                let dropped = policed(sent, limit);
                let lost = binomial(&mut rng, n, 0.03) as f64 / n as f64;
                let r = Report {
                    fraction_lost: dropped + (1.0 - dropped) * lost,
                    expected: Some(n),
                    rtt: None,
                    sent_bitrate: Some(sent as u32),
                };
                c.on_report(t0 + SEC * i, r);
                if i >= 60 {
                    policer.push(dropped);
                    wire.push(sent);
                }
            }
            assert!(
                mean(&policer) < 0.02,
                "seed {seed}: {:.3} dropped by the policer, {wire:.0?}",
                mean(&policer)
            );
            assert!(
                mean(&wire) > 0.5 * limit,
                "seed {seed}: {:.0} sent, {wire:.0?}",
                mean(&wire)
            );
        }
    }

    /// The encoder's overshoot is measured on reports that covered one target, not the first
    /// after a change (a new encoder's keyframe), and one keyframe among them does not move
    /// it (a median).
    #[test]
    fn a_keyframe_is_not_taken_for_an_encoder_over_its_target() {
        let mut c = controller();
        let t0 = Instant::now();
        let steady = |sent: f64| Report {
            sent_bitrate: Some(sent as u32),
            ..report(0.0)
        };
        // At the top, sending what is asked.
        for i in 0..4 {
            c.on_report(t0 + SEC * i, steady(1_000_000.0));
        }
        assert_eq!(c.overshoot(), 1.0);
        // Congestion: 500 k; the next report covers the new encoder's keyframe (2x).
        c.on_report(
            t0 + 4 * SEC,
            Report {
                sent_bitrate: Some(1_000_000),
                ..report(0.5)
            },
        );
        let target = f64::from(c.target().bitrate);
        c.on_report(t0 + 5 * SEC, steady(2.0 * target));
        assert_eq!(c.overshoot(), 1.0, "{:?}", c.overshoot);
        // Steady again, with one keyframe window among five.
        for (k, x) in [1.0, 1.0, 2.0, 1.0, 1.0].iter().enumerate() {
            c.on_report(t0 + SEC * (6 + k as u32), steady(x * target));
        }
        assert_eq!(c.overshoot(), 1.0, "{:?}", c.overshoot);
        // An encoder 20 % over, report after report: measured.
        for k in 0..5 {
            c.on_report(t0 + SEC * (11 + k), steady(1.2 * target));
        }
        assert!((c.overshoot() - 1.2).abs() < 1e-9, "{:?}", c.overshoot);
    }

    /// A step down that would cross a level's minimum is not made: the picture would change
    /// size for a test, and come back only after the ladder's hold. Level 0's minimum is
    /// 250 k: from 300 k a fifth down crosses it, from 400 k it does not.
    #[test]
    fn a_step_down_never_takes_the_picture_down_a_level() {
        for (rate, tested) in [(300_000.0, false), (400_000.0, true)] {
            let mut c = controller();
            let t0 = Instant::now();
            c.bitrate = rate;
            c.no_probe_until = Some(t0 + 1000 * SEC);
            let mut moves = Vec::new();
            for i in 0..30 {
                moves.push(c.on_report(t0 + SEC * i, report(0.05)));
                assert_eq!(c.target().level, 0, "{moves:?}");
            }
            assert_eq!(moves.contains(&Move::TestDown), tested, "{rate}: {moves:?}");
        }
    }

    #[test]
    fn random_loss_keeps_the_full_rate() {
        let mut c = controller();
        let t0 = Instant::now();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
        let mut moves = Vec::new();
        let mut at_top = 0;
        for i in 0..40 {
            // 5 % +- 2 % whatever the rate (NACK and FEC recover it).
            let loss = 0.05 + rng.random_range(-0.02..0.02);
            moves.push(c.on_report(t0 + 2 * SEC * i, report(loss)));
            at_top += usize::from(c.target().bitrate == 1_000_000);
        }
        // Lasting loss is tested by a step down now and then (the first after 4 s, then 20 s
        // and 40 s after each test that found it to be the path's), for a report or two each
        // (until 15 losses' worth of packets have come).
        let tests = moves.iter().filter(|&&m| m == Move::TestDown).count();
        let back = moves.iter().filter(|&&m| m == Move::PathLoss).count();
        assert_eq!((tests, back), (3, 3), "{moves:?}");
        assert!(
            at_top >= 34,
            "{at_top} of 40 reports at the full rate: {moves:?}"
        );
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
    fn a_report_of_nan_loss_changes_nothing() {
        let mut c = controller();
        let t0 = Instant::now();
        c.on_report(t0, report(f64::NAN));
        assert_eq!(c.usual_loss, 0.0);
        c.on_report(t0 + SEC, report(0.5));
        assert_eq!(c.target().bitrate, 500_000);
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
