//! Renditions of one broadcast (issue 13), Sans-IO: the SDP attribute that lists them and the
//! viewer-side policy that picks one.
//!
//! A broadcast may be encoded at several sizes, each served at its own path (`/live` for the
//! first, `/live/WxH` for the others). Every rendition's SDP names all of them in one
//! session-level attribute, best first:
//!
//! ```text
//! a=x-livecast-renditions:1280x720 /live,640x360 /live/640x360
//! ```
//!
//! [`RenditionPolicy`] decides from the receiver's figures (loss left after retransmissions,
//! received bit rate against the rendition's announced bit rate) when to move one rendition
//! down, and when to move back up:
//! - **Down** after [`PolicyConfig::down_after`] of unbroken trouble: loss after
//!   retransmissions above [`PolicyConfig::down_loss`], loss on the path above
//!   [`PolicyConfig::down_path_loss`], or a received rate under [`PolicyConfig::down_rate`] of
//!   the stream's.
//! - **Up** after a clean period (path loss at most [`PolicyConfig::up_loss`] and the rate not
//!   starved) of [`PolicyConfig::up_after`], doubled (up to 8 times) for each move
//!   up that was followed by a move down within [`PolicyConfig::up_after`]: a path whose limit
//!   lies between two renditions does not flap.
//! - **Hold**: no decision within [`PolicyConfig::min_hold`] of a switch, since a new session
//!   starts with a keyframe burst and its figures say nothing yet.

use std::fmt;
use std::time::{Duration, Instant};

use crate::sdp::{Attribute, SessionDescription};

/// The session-level SDP attribute name (without `a=`).
pub const SDP_ATTRIBUTE: &str = "x-livecast-renditions";

/// One rendition: a picture size and the path that serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendition {
    pub width: u32,
    pub height: u32,
    /// Absolute path on the server, e.g. `/live/640x360`.
    pub path: String,
}

/// A malformed `WxH` size or rendition list.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RenditionError {
    /// Not `WxH` with both sides in 16..=8192 and even.
    BadSize(String),
    /// A list entry is not `WxH /path`.
    BadEntry(String),
    /// The list is empty.
    Empty,
}

impl fmt::Display for RenditionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadSize(s) => write!(
                f,
                "bad picture size {s:?}: want WxH, both even and within 16..=8192"
            ),
            Self::BadEntry(s) => write!(f, "bad rendition entry {s:?}: want \"WxH /path\""),
            Self::Empty => write!(f, "no renditions listed"),
        }
    }
}

impl std::error::Error for RenditionError {}

/// Parses `WxH` (e.g. `640x360`).
pub fn parse_size(s: &str) -> Result<(u32, u32), RenditionError> {
    let bad = || RenditionError::BadSize(s.to_string());
    let (w, h) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
    let w: u32 = w.parse().map_err(|_| bad())?;
    let h: u32 = h.parse().map_err(|_| bad())?;
    let ok = |v: u32| (16..=8192).contains(&v) && v.is_multiple_of(2);
    if ok(w) && ok(h) {
        Ok((w, h))
    } else {
        Err(bad())
    }
}

/// Parses a `--renditions` value (`1280x720,640x360`): sizes, best first, without duplicates.
pub fn parse_size_list(s: &str) -> Result<Vec<(u32, u32)>, RenditionError> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let size = parse_size(part)?;
        if out.contains(&size) {
            return Err(RenditionError::BadSize(format!("{part} (listed twice)")));
        }
        out.push(size);
    }
    if out.is_empty() {
        return Err(RenditionError::Empty);
    }
    Ok(out)
}

/// The renditions of a broadcast whose main path is `base` (e.g. `/live`): the first size at
/// `base`, the others at `base/WxH`.
pub fn renditions_for(base: &str, sizes: &[(u32, u32)]) -> Vec<Rendition> {
    let base = base.trim_end_matches('/');
    sizes
        .iter()
        .enumerate()
        .map(|(i, &(width, height))| Rendition {
            width,
            height,
            path: if i == 0 {
                if base.is_empty() {
                    "/".to_string()
                } else {
                    base.to_string()
                }
            } else {
                format!("{base}/{width}x{height}")
            },
        })
        .collect()
}

/// The attribute's value: `1280x720 /live,640x360 /live/640x360`.
pub fn format_attribute(renditions: &[Rendition]) -> String {
    renditions
        .iter()
        .map(|r| format!("{}x{} {}", r.width, r.height, r.path))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses the attribute's value (what follows `a=x-livecast-renditions:`).
pub fn parse_attribute(value: &str) -> Result<Vec<Rendition>, RenditionError> {
    let mut out = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (size, path) = entry
            .split_once(' ')
            .ok_or_else(|| RenditionError::BadEntry(entry.to_string()))?;
        let (width, height) = parse_size(size)?;
        let path = path.trim();
        if !path.starts_with('/') || path.contains(char::is_whitespace) {
            return Err(RenditionError::BadEntry(entry.to_string()));
        }
        out.push(Rendition {
            width,
            height,
            path: path.to_string(),
        });
    }
    if out.is_empty() {
        return Err(RenditionError::Empty);
    }
    Ok(out)
}

/// The renditions a description lists: `None` without the attribute, an error if it is
/// malformed (a player then treats the stream as having one rendition).
pub fn from_sdp(sd: &SessionDescription) -> Option<Result<Vec<Rendition>, RenditionError>> {
    sd.attribute(SDP_ATTRIBUTE).map(parse_attribute)
}

/// Sets (replaces) the session-level attribute listing `renditions` in `sd`.
pub fn set_in_sdp(sd: &mut SessionDescription, renditions: &[Rendition]) {
    sd.attributes
        .retain(|a| !a.name.eq_ignore_ascii_case(SDP_ATTRIBUTE));
    sd.attributes
        .push(Attribute::new(SDP_ATTRIBUTE, format_attribute(renditions)));
}

/// Tuning of a [`RenditionPolicy`].
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyConfig {
    /// Loss (0..1, after retransmissions) above which a sample is trouble.
    pub down_loss: f64,
    /// Loss on the path (0..1, before retransmissions) above which a sample is trouble too:
    /// retransmissions then cost a tenth of the rate and a round trip per picture.
    pub down_path_loss: f64,
    /// A received rate under this fraction of the stream's is trouble.
    pub down_rate: f64,
    /// Trouble this long, unbroken, moves one rendition down.
    pub down_after: Duration,
    /// Loss on the path (before retransmissions) at most this is clean.
    pub up_loss: f64,
    /// Clean this long moves one rendition up (doubled per failed move up in a row).
    pub up_after: Duration,
    /// No decision this soon after a switch.
    pub min_hold: Duration,
}

impl Default for PolicyConfig {
    /// 5 % loss after retransmissions, 10 % before, or under 60 % of the rate, for 4 s:
    /// down; 20 s at most 1 % loss: up; 6 s hold.
    fn default() -> Self {
        Self {
            down_loss: 0.05,
            down_path_loss: 0.10,
            down_rate: 0.6,
            down_after: Duration::from_secs(4),
            up_loss: 0.01,
            up_after: Duration::from_secs(20),
            min_hold: Duration::from_secs(6),
        }
    }
}

/// One measurement window of the rendition being received.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Fraction of packets lost for good (after retransmissions), 0..1.
    pub loss: f64,
    /// Fraction of packets the path lost (before retransmissions), 0..1; at least `loss`.
    pub path_loss: f64,
    /// Bit rate received over the window (bit/s).
    pub received_bps: u64,
    /// The rendition's announced bit rate (bit/s); 0 when unknown (rate is then not judged).
    pub stream_bps: u64,
}

/// What the policy asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Switch to this rendition index (0 = best).
    Switch(usize),
}

/// Picks a rendition index (0 = best) among `count`, from [`Sample`]s; see the module docs.
#[derive(Clone, Debug)]
pub struct RenditionPolicy {
    cfg: PolicyConfig,
    count: usize,
    current: usize,
    switched_at: Option<Instant>,
    trouble_since: Option<Instant>,
    clean_since: Option<Instant>,
    /// When the last move up happened (to tell a failed one).
    last_up: Option<Instant>,
    /// Failed moves up in a row (0..=3: the clean period is `up_after << failed_ups`).
    failed_ups: u32,
    switches: u64,
}

impl RenditionPolicy {
    /// Starts at rendition `start` (clamped) of `count`.
    pub fn new(cfg: PolicyConfig, count: usize, start: usize) -> Self {
        let count = count.max(1);
        Self {
            cfg,
            count,
            current: start.min(count - 1),
            switched_at: None,
            trouble_since: None,
            clean_since: None,
            last_up: None,
            failed_ups: 0,
            switches: 0,
        }
    }

    /// The rendition index now chosen.
    pub fn current(&self) -> usize {
        self.current
    }

    /// How many switches the policy has asked for.
    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// The clean period needed now to move up.
    pub fn up_wait(&self) -> Duration {
        self.cfg.up_after * (1u32 << self.failed_ups)
    }

    /// Feeds one sample taken at `now`; returns a switch when one is due.
    pub fn on_sample(&mut self, now: Instant, s: Sample) -> Option<Decision> {
        if let Some(at) = self.switched_at {
            if now.saturating_duration_since(at) < self.cfg.min_hold {
                return None;
            }
        }
        let fraction = |x: f64| {
            if x.is_finite() {
                x.clamp(0.0, 1.0)
            } else {
                0.0
            }
        };
        let loss = fraction(s.loss);
        let path_loss = fraction(s.path_loss).max(loss);
        let starved =
            s.stream_bps > 0 && (s.received_bps as f64) < self.cfg.down_rate * s.stream_bps as f64;
        let trouble = loss > self.cfg.down_loss || path_loss > self.cfg.down_path_loss || starved;
        let clean = path_loss <= self.cfg.up_loss && !starved;
        if trouble {
            self.clean_since = None;
            let since = *self.trouble_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= self.cfg.down_after
                && self.current + 1 < self.count
            {
                if let Some(up) = self.last_up.take() {
                    if now.saturating_duration_since(up) < self.up_wait() + self.cfg.min_hold {
                        self.failed_ups = (self.failed_ups + 1).min(3);
                    }
                }
                return Some(self.switch(now, self.current + 1));
            }
            return None;
        }
        self.trouble_since = None;
        if !clean {
            self.clean_since = None;
            return None;
        }
        if let Some(up) = self.last_up {
            // A move up that has held for a whole clean period worked: forget past failures.
            if now.saturating_duration_since(up) >= self.cfg.up_after * 8 {
                self.failed_ups = 0;
                self.last_up = None;
            }
        }
        let since = *self.clean_since.get_or_insert(now);
        if self.current > 0 && now.saturating_duration_since(since) >= self.up_wait() {
            self.last_up = Some(now);
            return Some(self.switch(now, self.current - 1));
        }
        None
    }

    fn switch(&mut self, now: Instant, to: usize) -> Decision {
        self.current = to;
        self.switched_at = Some(now);
        self.trouble_since = None;
        self.clean_since = None;
        self.switches += 1;
        Decision::Switch(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u64 = 1_000_000;

    fn clean() -> Sample {
        Sample {
            loss: 0.0,
            path_loss: 0.0,
            received_bps: RATE,
            stream_bps: RATE,
        }
    }

    fn lossy(loss: f64) -> Sample {
        Sample {
            loss,
            path_loss: loss,
            received_bps: RATE,
            stream_bps: RATE,
        }
    }

    /// Feeds `sample` once a second for `secs` seconds from `*t`; returns the switches.
    fn run(p: &mut RenditionPolicy, t: &mut Instant, secs: u64, sample: Sample) -> Vec<usize> {
        let mut out = Vec::new();
        for _ in 0..secs {
            *t += Duration::from_secs(1);
            if let Some(Decision::Switch(i)) = p.on_sample(*t, sample) {
                out.push(i);
            }
        }
        out
    }

    #[test]
    fn attribute_round_trip() {
        let r = renditions_for("/live", &parse_size_list("1280x720,640x360").unwrap());
        let v = format_attribute(&r);
        assert_eq!(v, "1280x720 /live,640x360 /live/640x360");
        assert_eq!(parse_attribute(&v).unwrap(), r);
    }

    #[test]
    fn attribute_survives_the_sdp_writer_and_parser() {
        let text = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=livecast\r\nt=0 0\r\n\
                    m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";
        let mut sd = crate::sdp::parse(text).unwrap();
        assert_eq!(from_sdp(&sd), None);
        let r = renditions_for("/live", &[(320, 240), (160, 120)]);
        set_in_sdp(&mut sd, &r);
        set_in_sdp(&mut sd, &r);
        let written = sd.to_string();
        assert_eq!(written.matches("a=x-livecast-renditions:").count(), 1);
        assert!(written.contains("a=x-livecast-renditions:320x240 /live,160x120 /live/160x120\r\n"));
        let back = crate::sdp::parse(&written).unwrap();
        assert_eq!(from_sdp(&back), Some(Ok(r)));
    }

    #[test]
    fn bad_sizes_and_entries_are_errors() {
        for s in [
            "",
            "640",
            "640x",
            "x360",
            "641x360",
            "8x8",
            "99999x2",
            "640x360,640x360",
        ] {
            assert!(parse_size_list(s).is_err(), "{s:?}");
        }
        for v in ["", "640x360", "640x360 live", "640x360 /a b", "axb /x"] {
            assert!(parse_attribute(v).is_err(), "{v:?}");
        }
    }

    #[test]
    fn sustained_loss_moves_down_one_at_a_time() {
        let mut t = Instant::now();
        let mut p = RenditionPolicy::new(PolicyConfig::default(), 3, 0);
        // A short burst of loss does not move.
        assert!(run(&mut p, &mut t, 3, lossy(0.15)).is_empty());
        assert!(run(&mut p, &mut t, 1, clean()).is_empty());
        // Sustained: down 4 s after the first lossy sample, then hold 6 s, then 4 s more for the next step.
        let s = run(&mut p, &mut t, 5, lossy(0.15));
        assert_eq!(s, vec![1]);
        assert_eq!(run(&mut p, &mut t, 9, lossy(0.15)), Vec::<usize>::new());
        assert_eq!(run(&mut p, &mut t, 1, lossy(0.15)), vec![2]);
        // At the bottom it stays.
        assert!(run(&mut p, &mut t, 60, lossy(0.5)).is_empty());
        assert_eq!(p.current(), 2);
        assert_eq!(p.switches(), 2);
    }

    #[test]
    fn starved_rate_moves_down_and_unknown_rate_is_not_judged() {
        let mut t = Instant::now();
        let starved = Sample {
            loss: 0.0,
            path_loss: 0.0,
            received_bps: RATE / 3,
            stream_bps: RATE,
        };
        let mut p = RenditionPolicy::new(PolicyConfig::default(), 2, 0);
        assert_eq!(run(&mut p, &mut t, 5, starved), vec![1]);
        let unknown = Sample {
            loss: 0.0,
            path_loss: 0.0,
            received_bps: 1,
            stream_bps: 0,
        };
        let mut p = RenditionPolicy::new(PolicyConfig::default(), 2, 0);
        assert!(run(&mut p, &mut t, 30, unknown).is_empty());
    }

    #[test]
    fn path_loss_that_retransmissions_repair_moves_down_above_ten_percent() {
        let mut t = Instant::now();
        let repaired = |path_loss| Sample {
            loss: 0.02,
            path_loss,
            received_bps: RATE,
            stream_bps: RATE,
        };
        let mut p = RenditionPolicy::new(PolicyConfig::default(), 2, 0);
        // 5 % on the path, 2 % left: the NACK case, no move.
        assert!(run(&mut p, &mut t, 60, repaired(0.05)).is_empty());
        // 15 % on the path: down, and never back up while it lasts.
        assert_eq!(run(&mut p, &mut t, 5, repaired(0.15)), vec![1]);
        assert!(run(&mut p, &mut t, 600, repaired(0.15)).is_empty());
    }

    #[test]
    fn moves_up_after_a_clean_period_only() {
        let mut t = Instant::now();
        let mut p = RenditionPolicy::new(PolicyConfig::default(), 2, 0);
        assert_eq!(run(&mut p, &mut t, 5, lossy(0.2)), vec![1]);
        // Moderate loss (between up_loss and down_loss) is neither: no move up.
        assert!(run(&mut p, &mut t, 60, lossy(0.03)).is_empty());
        // Clean: up after the hold and 20 s clean.
        let s = run(&mut p, &mut t, 21, clean());
        assert_eq!(s, vec![0]);
        assert_eq!(p.current(), 0);
    }

    #[test]
    fn no_flapping_between_two_renditions() {
        // The path carries the small rendition cleanly but loses 15 % on the big one.
        let mut t = Instant::now();
        let mut p = RenditionPolicy::new(PolicyConfig::default(), 2, 0);
        let mut ups = Vec::new();
        for _ in 0..1800 {
            t += Duration::from_secs(1);
            let s = if p.current() == 0 {
                lossy(0.15)
            } else {
                clean()
            };
            if let Some(Decision::Switch(0)) = p.on_sample(t, s) {
                ups.push(t);
            }
        }
        // 30 minutes: the waits grow 20, 40, 80, 160 s and then stay at 160 s, so at most
        // about ten tries, not one every 30 s.
        assert!(ups.len() <= 12, "{} moves up in 30 minutes", ups.len());
        assert!(ups.len() >= 2, "it still probes upward now and then");
        let gaps: Vec<_> = ups.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.windows(2).all(|g| g[1] >= g[0]), "{gaps:?}");
        assert_eq!(p.up_wait(), Duration::from_secs(160));
    }

    #[test]
    fn a_move_up_that_holds_clears_the_backoff() {
        let mut t = Instant::now();
        let mut p = RenditionPolicy::new(PolicyConfig::default(), 2, 0);
        assert_eq!(run(&mut p, &mut t, 5, lossy(0.2)), vec![1]);
        assert_eq!(run(&mut p, &mut t, 26, clean()), vec![0]);
        // Fails right away: the next clean period doubles.
        assert_eq!(run(&mut p, &mut t, 10, lossy(0.2)), vec![1]);
        assert_eq!(p.up_wait(), Duration::from_secs(40));
        assert_eq!(run(&mut p, &mut t, 46, clean()), vec![0]);
        // Holds for long: the backoff is forgotten.
        assert!(run(&mut p, &mut t, 170, clean()).is_empty());
        assert_eq!(p.up_wait(), Duration::from_secs(20));
    }

    #[test]
    fn nonsense_figures_do_not_panic() {
        let mut t = Instant::now();
        let mut p = RenditionPolicy::new(PolicyConfig::default(), 0, 7);
        assert_eq!(p.current(), 0);
        for loss in [f64::NAN, f64::INFINITY, -1.0, 2.0] {
            let _ = run(
                &mut p,
                &mut t,
                2,
                Sample {
                    loss,
                    path_loss: loss,
                    received_bps: u64::MAX,
                    stream_bps: u64::MAX,
                },
            );
        }
        assert_eq!(p.current(), 0);
    }
}
