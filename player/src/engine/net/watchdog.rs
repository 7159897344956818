//! When to give up on a transport or a server, decided Sans-IO from `now` and "RTP seen"
//! events, so the rules are tested without sockets.
//!
//! - UDP that brings nothing: in `Auto` mode, if no RTP packet has arrived [`UDP_GRACE`] after
//!   PLAY, the UDP path is presumed blocked (firewall, NAT, a TCP-only tunnel) and the session
//!   switches to interleaved TCP (RFC 2326 §10.12).
//! - A server gone quiet: while playing, [`MEDIA_TIMEOUT`] without RTP on any track means the
//!   server or the path is gone (a closed TCP connection is noticed sooner, by the reader).
//!
//! Paused sessions expect no media, so neither rule runs while paused; each PLAY (first or
//! resume) starts both clocks again.

use std::time::{Duration, Instant};

/// How long UDP gets to deliver the first RTP packet after PLAY.
pub const UDP_GRACE: Duration = Duration::from_secs(2);
/// How long a playing session may go without RTP before the connection is presumed lost.
pub const MEDIA_TIMEOUT: Duration = Duration::from_secs(5);

/// What the watchdog concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing over UDP: tear down and set up again over TCP.
    FallbackToTcp,
    /// No media for [`MEDIA_TIMEOUT`] while playing.
    NoMedia,
}

#[derive(Clone, Debug)]
pub struct Watchdog {
    /// UDP in `Auto` mode: a silent start means "try TCP".
    may_fall_back: bool,
    /// Any RTP seen since this transport was set up.
    seen_rtp: bool,
    /// Playing since (PLAY response) — `None` while paused or before PLAY.
    playing_since: Option<Instant>,
    last_rtp: Option<Instant>,
}

impl Watchdog {
    /// `may_fall_back`: the transport is UDP and the user left the choice to us.
    pub fn new(may_fall_back: bool) -> Self {
        Watchdog {
            may_fall_back,
            seen_rtp: false,
            playing_since: None,
            last_rtp: None,
        }
    }

    /// The PLAY response arrived.
    pub fn on_play(&mut self, now: Instant) {
        self.playing_since = Some(now);
        self.last_rtp = None;
    }

    /// The PAUSE response arrived.
    pub fn on_pause(&mut self) {
        self.playing_since = None;
    }

    /// An RTP packet arrived (on any track).
    pub fn on_rtp(&mut self, now: Instant) {
        self.seen_rtp = true;
        self.last_rtp = Some(self.last_rtp.map_or(now, |l| l.max(now)));
    }

    pub fn is_playing(&self) -> bool {
        self.playing_since.is_some()
    }

    /// When [`poll`](Self::poll) may next have something to say.
    pub fn deadline(&self) -> Option<Instant> {
        let since = self.playing_since?;
        if self.may_fall_back && !self.seen_rtp {
            return Some(since + UDP_GRACE);
        }
        let last = self.last_rtp.map_or(since, |l| l.max(since));
        Some(last + MEDIA_TIMEOUT)
    }

    /// The verdict at `now`, if any.
    pub fn poll(&self, now: Instant) -> Option<Verdict> {
        let due = self.deadline()?;
        if now < due {
            return None;
        }
        if self.may_fall_back && !self.seen_rtp {
            Some(Verdict::FallbackToTcp)
        } else {
            Some(Verdict::NoMedia)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn silent_udp_falls_back_after_two_seconds() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(true);
        assert_eq!(w.deadline(), None); // not playing yet: no clock
        assert_eq!(w.poll(t0 + Duration::from_secs(100)), None);
        w.on_play(t0);
        assert_eq!(w.deadline(), Some(t0 + UDP_GRACE));
        assert_eq!(w.poll(t0 + 1999 * MS), None);
        assert_eq!(w.poll(t0 + UDP_GRACE), Some(Verdict::FallbackToTcp));
    }

    #[test]
    fn one_packet_settles_udp_then_silence_is_no_media() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(true);
        w.on_play(t0);
        w.on_rtp(t0 + 1500 * MS);
        assert_eq!(w.poll(t0 + 3000 * MS), None);
        assert_eq!(w.deadline(), Some(t0 + 6500 * MS));
        assert_eq!(w.poll(t0 + 6500 * MS), Some(Verdict::NoMedia));
        // Media keeps it quiet.
        w.on_rtp(t0 + 6000 * MS);
        assert_eq!(w.poll(t0 + 6500 * MS), None);
    }

    #[test]
    fn forced_transports_never_fall_back() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(false);
        w.on_play(t0);
        assert_eq!(w.poll(t0 + 4999 * MS), None);
        assert_eq!(w.poll(t0 + MEDIA_TIMEOUT), Some(Verdict::NoMedia));
    }

    #[test]
    fn paused_sessions_expect_nothing_and_resume_restarts_the_clock() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(true);
        w.on_play(t0);
        w.on_pause();
        assert!(!w.is_playing());
        assert_eq!(w.poll(t0 + Duration::from_secs(60)), None);
        w.on_play(t0 + Duration::from_secs(60));
        // Still no RTP ever: the UDP grace runs from the resume.
        assert_eq!(w.poll(t0 + 61 * 1000 * MS), None);
        assert_eq!(
            w.poll(t0 + Duration::from_secs(62)),
            Some(Verdict::FallbackToTcp)
        );
        w.on_rtp(t0 + Duration::from_secs(62));
        w.on_pause();
        w.on_play(t0 + Duration::from_secs(100));
        // An old packet does not count against the new PLAY.
        assert_eq!(w.deadline(), Some(t0 + Duration::from_secs(105)));
    }
}
