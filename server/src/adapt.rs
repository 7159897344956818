//! Quality adaptation in a call: the viewer's RTCP reception reports about our video go to a
//! [`RateController`] (proto, Sans-IO), and its decisions to the video encoder through
//! [`MediaControls::set_video_target`]. Only in a call: a broadcast with many viewers does
//! not follow any one of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use livecast_proto::rate::{Move, RateConfig, RateController, Report};
use livecast_proto::rtcp::ReportBlock;
use livecast_proto::time::NtpTimestamp;
use tracing::{debug, info};

use crate::hooks::{MediaControls, VideoTarget};

pub struct Adapter {
    ctrl: Mutex<RateController>,
    controls: Arc<MediaControls>,
    /// Per viewer, where its counters stood at the start of the current window.
    windows: Mutex<HashMap<u64, Window>>,
    /// The video's payload octets sent so far ([`crate::track::Track::octets_sent`]).
    sent_octets: Box<dyn Fn() -> u32 + Send + Sync>,
}

/// The start of a viewer's measuring window: when, and its extended highest sequence number
/// and cumulative loss then.
#[derive(Clone, Copy, Debug)]
struct Window {
    at: Instant,
    seq: u32,
    lost: i32,
    /// The track's payload octets sent by then.
    octets: u32,
}

/// Loss is measured over at least this long: receivers send a report with every NACK
/// (RFC 4585 compound packets), each over a sliver of time, too short to judge by.
const WINDOW: Duration = Duration::from_secs(1);

impl Adapter {
    /// Adapts from `width`x`height`@`fps` at `bitrate` (the top of the ladder) down;
    /// `sent_octets` reads the video's payload octets sent so far.
    pub fn new(
        controls: Arc<MediaControls>,
        sent_octets: Box<dyn Fn() -> u32 + Send + Sync>,
        width: u32,
        height: u32,
        fps: u32,
        bitrate: u32,
    ) -> Self {
        Adapter {
            ctrl: Mutex::new(RateController::new(RateConfig::call(
                width, height, fps, bitrate,
            ))),
            controls,
            windows: Mutex::new(HashMap::new()),
            sent_octets,
        }
    }

    /// One report block about our video from viewer `client`, received now.
    pub fn on_report(&self, client: u64, block: &ReportBlock) {
        self.on_report_at(client, block, Instant::now(), SystemTime::now());
    }

    fn on_report_at(&self, client: u64, block: &ReportBlock, now: Instant, wall: SystemTime) {
        let rtt = round_trip(block, wall);
        let here = Window {
            at: now,
            seq: block.extended_highest_seq,
            lost: block.cumulative_lost,
            octets: (self.sent_octets)(),
        };
        let (expected, fraction_lost, sent_bitrate) = {
            let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
            let Some(start) = w.get(&client).copied() else {
                w.insert(client, here);
                return;
            };
            if now < start.at + WINDOW {
                return;
            }
            w.insert(client, here);
            let expected = here.seq.wrapping_sub(start.seq);
            // A restarted numbering (a new PLAY) starts a new window.
            if expected > 1 << 20 {
                return;
            }
            let lost = (here.lost - start.lost).max(0) as f64;
            let secs = (here.at - start.at).as_secs_f64();
            let sent = f64::from(here.octets.wrapping_sub(start.octets)) * 8.0 / secs;
            (
                u64::from(expected),
                lost / f64::from(expected.max(1)),
                Some(sent as u32),
            )
        };
        let expected = Some(expected);
        let mut c = self.ctrl.lock().unwrap_or_else(|p| p.into_inner());
        let before = c.target();
        let m = c.on_report(
            now,
            Report {
                fraction_lost,
                expected,
                rtt,
                sent_bitrate,
            },
        );
        let after = c.target();
        let level = c.config().levels[after.level];
        debug!(
            loss = fraction_lost,
            ?rtt,
            ?m,
            bitrate = after.bitrate,
            "reception report"
        );
        if after != before {
            self.controls.set_video_target(VideoTarget {
                width: level.width,
                height: level.height,
                fps: level.fps,
                bitrate: after.bitrate,
            });
            if after.level != before.level || matches!(m, Move::Congestion | Move::RateLoss) {
                info!(
                    "video quality: {}x{}@{} at {} kbit/s ({:.0} % lost)",
                    level.width,
                    level.height,
                    level.fps,
                    after.bitrate / 1000,
                    fraction_lost * 100.0
                );
            }
        }
    }
}

/// The round trip from a report block's LSR and DLSR (RFC 3550 §6.4.1): arrival minus the
/// sender report's time minus the receiver's hold, in 1/65536 s; `None` without an SR yet.
fn round_trip(block: &ReportBlock, now: SystemTime) -> Option<Duration> {
    if block.last_sr == 0 {
        return None;
    }
    let since = now.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    let arrival = NtpTimestamp::from_unix(since).middle32();
    let rtt = arrival
        .wrapping_sub(block.last_sr)
        .wrapping_sub(block.delay_since_last_sr);
    // More than a minute is a wrapped (bogus) value.
    (rtt < 60 << 16).then(|| Duration::from_micros(u64::from(rtt) * 1_000_000 / 65536))
}

#[cfg(test)]
mod tests {
    use super::*;
    use livecast_proto::time::Ssrc;

    #[test]
    fn round_trip_from_lsr_and_dlsr() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let sr_at = now - Duration::from_millis(300);
        let lsr = NtpTimestamp::from_unix(sr_at.duration_since(SystemTime::UNIX_EPOCH).unwrap())
            .middle32();
        let block = ReportBlock {
            ssrc: Ssrc(1),
            fraction_lost: 0,
            cumulative_lost: 0,
            extended_highest_seq: 0,
            jitter: 0,
            last_sr: lsr,
            // Held 260 ms by the receiver: 40 ms of round trip.
            delay_since_last_sr: 260 * 65536 / 1000,
        };
        let rtt = round_trip(&block, now).unwrap();
        assert!(
            rtt.abs_diff(Duration::from_millis(40)) < Duration::from_millis(1),
            "{rtt:?}"
        );
        assert_eq!(
            round_trip(
                &ReportBlock {
                    last_sr: 0,
                    ..block
                },
                now
            ),
            None
        );
    }

    #[test]
    fn loss_over_a_window_asks_the_encoder_for_less() {
        let controls = Arc::new(MediaControls::default());
        static SENT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let sent = || SENT.load(std::sync::atomic::Ordering::Relaxed);
        let a = Adapter::new(controls.clone(), Box::new(sent), 640, 480, 30, 1_000_000);
        let mut seen = 0;
        let block = |seq: u32, lost: i32| ReportBlock {
            ssrc: Ssrc(1),
            // Not used: the loss is measured from the counters over the window.
            fraction_lost: 255,
            cumulative_lost: lost,
            extended_highest_seq: seq,
            jitter: 0,
            last_sr: 0,
            delay_since_last_sr: 0,
        };
        let t0 = Instant::now();
        let wall = SystemTime::now();
        // The first report opens the window; one soon after (with a NACK) is not judged.
        a.on_report_at(1, &block(1000, 0), t0, wall);
        a.on_report_at(1, &block(1020, 15), t0 + WINDOW / 2, wall);
        assert_eq!(controls.video_target_since(&mut seen), None);
        // 400 expected, 160 lost over the window: 40 %, while 100 kB (800 kbit/s) went out.
        SENT.store(100_000, std::sync::atomic::Ordering::Relaxed);
        a.on_report_at(1, &block(1400, 160), t0 + WINDOW, wall);
        assert_eq!(
            controls.video_target_since(&mut seen),
            Some(VideoTarget {
                width: 640,
                height: 480,
                fps: 30,
                bitrate: 500_000
            })
        );
        assert_eq!(controls.video_target_since(&mut seen), None);
        // Another viewer's numbers are its own window.
        a.on_report_at(2, &block(9, 9), t0 + 2 * WINDOW, wall);
        assert_eq!(controls.video_target_since(&mut seen), None);
    }
}
