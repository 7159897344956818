//! A reorder / jitter buffer for one RTP source, Sans-IO: arrival times and `now` are
//! arguments, nothing here reads a clock.
//!
//! Packets go in with [`JitterBuffer::push`] in arrival order and come out of
//! [`JitterBuffer::pop`] in sequence order. A packet leaves as soon as every packet before it
//! has left; a gap is waited for at most [`JitterBuffer::current_delay`], measured from the
//! arrival of the oldest packet held behind it, and then declared lost
//! ([`Released::Lost`]). [`JitterBuffer::next_deadline`] says when to call `pop` again, in the
//! poll/timeout style of str0m: after every `push`, call `pop` until it returns `None`, then
//! sleep until `next_deadline` (or the next packet).
//!
//! The wait adapts to the network. The interarrival jitter `J` is estimated as in RFC 3550
//! §6.4.1 / A.8 (`J += (|D(i-1,i)| - J) / 16`, `D` the change in relative transit time between
//! consecutive arrivals, in timestamp units), and the wait targets `k · J` (k = 3, or 2 in
//! low-latency mode) clamped to `[min_delay, max_delay]`: a few milliseconds on a LAN, more on
//! Wi-Fi or the Internet. It rises at once when the jitter rises (the estimator is already
//! smoothed) and falls back with a time constant of two seconds (one in low-latency mode), so a
//! single quiet moment does not shrink it.
//!
//! Sequence numbers are extended to 64 bits with [`SeqExtender`] (wraparound handled there,
//! RFC 3550 A.1). Following A.1's `MAX_DROPOUT` / `MAX_MISORDER`: a packet up to 100 behind the
//! release point is a duplicate (its number was released) or late (its number was declared
//! lost) and is dropped; a jump of more than 3000 ahead or 100 behind is held aside, and if the
//! next packet follows it, the sender restarted its numbering: everything held is released and
//! the buffer starts over from the new numbers; otherwise the stray packet is discarded.
//!
//! Never panics, whatever the input (garbage numbers, arrival times going backwards): the held
//! set is bounded (packets beyond the bound are discarded, and a full buffer skips its gap at
//! once), and every time computation saturates.
//!
//! Retransmission (RFC 4585 NACK, RFC 4588 RTX) is decided elsewhere (the RTSP client state
//! machine); the buffer helps in two ways: with [`JitterBuffer::with_gap_reports`] it tells
//! which numbers went missing and which missing ones came after all
//! ([`JitterBuffer::take_gap_changes`]), and [`JitterBuffer::set_floor`] makes it wait at
//! least long enough for a retransmission to come.
//!
//! Limitations: it reorders and times out gaps; it does not pace playout (the decoder clock
//! does that).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::seq::{InterarrivalJitter, MAX_DROPOUT, MAX_MISORDER};
use crate::time::SeqExtender;

/// Packets held at most, by default (`with_capacity` to change). At 2 Mbit/s of 1400-byte
/// packets this is over 20 s of media; a full buffer gives up on its oldest gap at once.
pub const DEFAULT_CAPACITY: usize = 4096;

/// How far back (sequence numbers) the buffer remembers which numbers it declared lost, to tell
/// a late packet from a duplicate.
const LOSS_MEMORY: u64 = 1024;

/// How the wait for missing packets is sized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JitterConfig {
    /// Never wait less than this for a missing packet.
    pub min_delay: Duration,
    /// Never wait more than this.
    pub max_delay: Duration,
    /// Call mode: wait 2 × jitter instead of 3 ×, and shrink faster when the jitter falls.
    pub low_latency: bool,
}

impl Default for JitterConfig {
    /// 5 ms to 500 ms, normal mode.
    fn default() -> Self {
        JitterConfig {
            min_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(500),
            low_latency: false,
        }
    }
}

/// Most numbers reported missing for one arriving packet: a larger jump is an outage (or
/// a restart), and asking for it again would only flood the sender.
pub const MAX_GAP_REPORT: u64 = 256;

/// A change in what is missing, from [`JitterBuffer::take_gap_changes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GapChange {
    /// A packet arrived ahead of this number, which has not come (yet).
    Missing(u16),
    /// A number reported missing arrived after all, in time to be released.
    Filled(u16),
}

/// One RTP packet as the buffer holds and releases it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<P> {
    pub seq: u16,
    /// `seq` extended to 64 bits (RFC 3550 A.1); restarts after a reset.
    pub ext_seq: u64,
    pub rtp_timestamp: u32,
    pub marker: bool,
    /// Whatever the caller stored: the payload, or the whole packet.
    pub payload: P,
    pub arrival: Instant,
}

/// What [`JitterBuffer::pop`] returns, in sequence order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Released<P = Vec<u8>> {
    /// The next packet.
    Packet(Packet<P>),
    /// `count` sequence numbers before the next packet never came in time: they are lost.
    Lost { count: u64 },
}

/// Counters and the current timing estimate.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct JitterStats {
    /// Every packet pushed.
    pub received: u64,
    /// Packets returned by `pop`.
    pub released: u64,
    /// Sequence numbers declared lost.
    pub lost: u64,
    /// Packets whose number was already held or released: dropped.
    pub duplicates: u64,
    /// Packets whose number had already been declared lost: dropped.
    pub late: u64,
    /// Packets accepted although a later number had arrived before them.
    pub reordered: u64,
    /// Restarts of the sender's numbering (confirmed large jumps).
    pub resets: u64,
    /// Far-off packets not confirmed by the next one, and packets refused because the buffer
    /// was full: dropped.
    pub discarded: u64,
    /// Interarrival jitter, seconds (RFC 3550 A.8).
    pub jitter_secs: f64,
    /// The current wait for a missing packet.
    pub current_delay: Duration,
}

/// The reorder / jitter buffer of one RTP source. See the [module docs](self).
///
/// `P` is what is stored with each packet (by default the payload bytes).
#[derive(Debug)]
pub struct JitterBuffer<P = Vec<u8>> {
    cfg: JitterConfig,
    capacity: usize,
    seqs: SeqExtender,
    held: BTreeMap<u64, Packet<P>>,
    /// The next extended sequence number to release; `None` until the first release.
    next: Option<u64>,
    /// Highest extended sequence number accepted.
    highest: Option<u64>,
    /// Earliest arrival among the held packets.
    oldest: Option<Instant>,
    /// Latest arrival seen, for `next_deadline` when something is ready now.
    last_arrival: Option<Instant>,
    /// Released ahead of time (after a reset), returned before anything else.
    ready: VecDeque<Released<P>>,
    /// A far-off packet waiting for the next one to confirm a restart.
    probation: Option<Packet<P>>,
    /// Recently declared-lost ranges `[start, end)` of extended numbers.
    lost_ranges: VecDeque<(u64, u64)>,
    jitter: InterarrivalJitter,
    current_delay: Duration,
    last_adapt: Option<Instant>,
    /// The wait never goes below this (but may above `max_delay`'s cap): time for a
    /// retransmission.
    floor: Duration,
    /// `Some` when gap reports are on: changes not taken yet.
    gaps: Option<Vec<GapChange>>,
    /// [`expect_first`](Self::expect_first) was told the first number and no packet has come.
    expecting: bool,
    stats: JitterStats,
}

impl<P> JitterBuffer<P> {
    /// A buffer for a source whose RTP timestamps tick at `clock_rate` Hz (0 is taken as 1).
    /// A `min_delay` above `max_delay` is lowered to it.
    pub fn new(clock_rate: u32, mut cfg: JitterConfig) -> Self {
        cfg.min_delay = cfg.min_delay.min(cfg.max_delay);
        JitterBuffer {
            cfg,
            capacity: DEFAULT_CAPACITY,
            seqs: SeqExtender::new(),
            held: BTreeMap::new(),
            next: None,
            highest: None,
            oldest: None,
            last_arrival: None,
            ready: VecDeque::new(),
            probation: None,
            lost_ranges: VecDeque::new(),
            jitter: InterarrivalJitter::new(clock_rate),
            current_delay: cfg.min_delay,
            last_adapt: None,
            floor: Duration::ZERO,
            gaps: None,
            expecting: false,
            stats: JitterStats::default(),
        }
    }

    /// Builder: hold at most `capacity` packets (at least 1).
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Builder: record which numbers go missing and which come after all
    /// ([`take_gap_changes`](Self::take_gap_changes)), for retransmission requests.
    pub fn with_gap_reports(mut self) -> Self {
        self.gaps = Some(Vec::new());
        self
    }

    /// Wait at least `floor` for a missing packet (capped at `max_delay`), so that a
    /// retransmission asked for when the gap is seen can still arrive; `Duration::ZERO` for
    /// the jitter alone. Takes effect at once.
    pub fn set_floor(&mut self, floor: Duration) {
        self.floor = floor.min(self.cfg.max_delay);
        if self.current_delay < self.floor {
            self.current_delay = self.floor;
        }
    }

    /// The changes in what is missing since the last call (nothing unless
    /// [`with_gap_reports`](Self::with_gap_reports)), in the order they happened. A number
    /// reported missing and then declared lost is not reported again: the caller's deadline
    /// for it (arrival + [`current_delay`](Self::current_delay)) has passed.
    pub fn take_gap_changes(&mut self, out: &mut Vec<GapChange>) {
        if let Some(g) = self.gaps.as_mut() {
            out.append(g);
        }
    }

    pub fn config(&self) -> JitterConfig {
        self.cfg
    }

    /// The wait for a missing packet, as adapted so far.
    pub fn current_delay(&self) -> Duration {
        self.current_delay
    }

    /// Interarrival jitter, seconds (RFC 3550 A.8).
    pub fn jitter_secs(&self) -> f64 {
        self.jitter.secs()
    }

    pub fn stats(&self) -> JitterStats {
        JitterStats {
            jitter_secs: self.jitter_secs(),
            current_delay: self.current_delay,
            ..self.stats
        }
    }

    /// Packets inside: held, ready, or on probation.
    pub fn len(&self) -> usize {
        self.held.len()
            + self
                .ready
                .iter()
                .filter(|r| matches!(r, Released::Packet(_)))
                .count()
            + usize::from(self.probation.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes in one packet that arrived at `arrival`.
    pub fn push(
        &mut self,
        seq: u16,
        rtp_timestamp: u32,
        marker: bool,
        payload: P,
        arrival: Instant,
    ) {
        self.stats.received += 1;
        self.last_arrival = Some(self.last_arrival.map_or(arrival, |l| l.max(arrival)));
        let packet = Packet {
            seq,
            ext_seq: 0,
            rtp_timestamp,
            marker,
            payload,
            arrival,
        };
        if let Some(far) = self.probation.take() {
            if seq == far.seq.wrapping_add(1) {
                // Two in a row on the new numbering: the sender restarted (RFC 3550 A.1).
                self.restart();
                self.accept(far);
                self.accept(packet);
                return;
            }
            self.stats.discarded += 1;
        }
        self.accept(packet);
    }

    /// The sequence number of the first packet to come (RTSP `RTP-Info: seq=`, RFC 2326
    /// §12.33), so that the loss of a stream's very first packets is seen: they are reported
    /// missing (for a NACK) and waited for, instead of the first packet to arrive being taken
    /// for the start. Ignored once a packet has arrived; a packet numbered before it (a
    /// server whose `RTP-Info` was late) cancels it.
    pub fn expect_first(&mut self, seq: u16) {
        let started = self.highest.is_some() || self.next.is_some() || !self.held.is_empty();
        if started || self.probation.is_some() || !self.ready.is_empty() {
            return;
        }
        let ext = self.seqs.extend(seq);
        self.next = Some(ext);
        self.highest = ext.checked_sub(1);
        self.expecting = true;
    }

    /// The next packet or loss in sequence order, if one is due at `now`.
    pub fn pop(&mut self, now: Instant) -> Option<Released<P>> {
        if let Some(r) = self.ready.pop_front() {
            return Some(r);
        }
        let first = *self.held.first_key_value()?.0;
        let over = self.held.len() > self.capacity;
        let next = match self.next {
            Some(n) => n,
            None => {
                // The very first packet: give an earlier one, reordered, the least wait (not
                // the retransmission floor: nobody can ask for a packet not known to exist,
                // and holding the first one would hold the whole stream back that long).
                if !over && !self.expired(now) {
                    return None;
                }
                self.next = Some(first);
                first
            }
        };
        if first == next {
            return self.release_first().map(Released::Packet);
        }
        if over || self.expired(now) {
            let count = first.saturating_sub(next);
            self.declare_lost(next, first);
            self.next = Some(first);
            return Some(Released::Lost { count });
        }
        None
    }

    /// When `pop` may next return something without another `push`: `None` when nothing is
    /// held; a time already past when something can be popped right away.
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.ready.is_empty() {
            return self.last_arrival;
        }
        let (&first, _) = self.held.first_key_value()?;
        let oldest = self.oldest?;
        if self.next == Some(first) || self.held.len() > self.capacity {
            return Some(oldest);
        }
        Some(oldest.checked_add(self.wait()).unwrap_or(oldest))
    }

    /// Releases everything held, in order (gaps reported as lost), regardless of time; for the
    /// end of a stream. Call `pop` to take the packets.
    pub fn flush(&mut self) {
        if let Some(p) = self.probation.take() {
            self.stats.discarded += 1;
            drop(p);
        }
        let mut next = self.next;
        while let Some((k, p)) = self.held.pop_first() {
            let n = *next.get_or_insert(k);
            if k > n {
                self.declare_lost(n, k);
                self.ready.push_back(Released::Lost { count: k - n });
            }
            self.stats.released += 1;
            self.ready.push_back(Released::Packet(p));
            next = Some(k + 1);
        }
        self.next = next;
        self.oldest = None;
    }

    /// The oldest packet held has waited [`wait`](Self::wait).
    fn expired(&self, now: Instant) -> bool {
        let wait = self.wait();
        self.oldest
            .is_some_and(|o| o.checked_add(wait).is_none_or(|d| now >= d))
    }

    /// How long the oldest packet held may wait: before the first release, the least delay
    /// (for a reordered earlier packet: the retransmission floor is for packets known to be
    /// missing); then the current delay.
    fn wait(&self) -> Duration {
        if self.next.is_none() {
            self.cfg.min_delay
        } else {
            self.current_delay
        }
    }

    fn accept(&mut self, mut packet: Packet<P>) {
        // Extend on a copy: a packet we end up refusing must not move the extender.
        let mut seqs = self.seqs.clone();
        let ext = seqs.extend(packet.seq);
        packet.ext_seq = ext;
        if std::mem::take(&mut self.expecting) && self.next.is_some_and(|n| ext < n) {
            // Numbered before what was announced: the announcement was wrong; start here.
            self.next = None;
            self.highest = None;
        }
        let base = self
            .next
            .or_else(|| self.held.first_key_value().map(|(k, _)| *k));
        let far_ahead = self
            .highest
            .is_some_and(|h| ext > h.saturating_add(u64::from(MAX_DROPOUT)));
        let behind = base.map_or(0, |b| b.saturating_sub(ext));
        if far_ahead || behind > u64::from(MAX_MISORDER) {
            self.probation = Some(packet);
            return;
        }
        if let Some(next) = self.next.filter(|&n| ext < n) {
            // Its number has been released or declared lost already.
            if self.was_declared_lost(ext, next) {
                self.stats.late += 1;
                self.update_timing(packet.rtp_timestamp, packet.arrival);
            } else {
                self.stats.duplicates += 1;
            }
            return;
        }
        if self.held.contains_key(&ext) {
            self.stats.duplicates += 1;
            return;
        }
        if self.held.len() >= self.capacity.saturating_mul(2) {
            // The caller is not popping; refuse rather than grow without bound.
            self.stats.discarded += 1;
            return;
        }
        self.seqs = seqs;
        if let Some(g) = self.gaps.as_mut() {
            match self.highest {
                Some(h) if ext < h => g.push(GapChange::Filled(packet.seq)),
                Some(h) if ext > h.saturating_add(1) => {
                    let from = (h + 1).max(ext.saturating_sub(MAX_GAP_REPORT));
                    // Extended numbers are the 16-bit ones plus cycles: truncation is the point.
                    g.extend((from..ext).map(|n| GapChange::Missing(n as u16)));
                }
                _ => {}
            }
            if g.len() > 4 * MAX_GAP_REPORT as usize {
                // Nobody takes them: keep the newest.
                let cut = g.len() - 2 * MAX_GAP_REPORT as usize;
                g.drain(..cut);
            }
        }
        if self.highest.is_some_and(|h| ext < h) {
            self.stats.reordered += 1;
        }
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        self.update_timing(packet.rtp_timestamp, packet.arrival);
        self.oldest = Some(
            self.oldest
                .map_or(packet.arrival, |o| o.min(packet.arrival)),
        );
        self.held.insert(ext, packet);
    }

    fn release_first(&mut self) -> Option<Packet<P>> {
        let (k, p) = self.held.pop_first()?;
        self.next = Some(k + 1);
        self.stats.released += 1;
        if self.oldest == Some(p.arrival) {
            self.oldest = self.held.values().map(|h| h.arrival).min();
        }
        Some(p)
    }

    fn declare_lost(&mut self, start: u64, end: u64) {
        if end <= start {
            return;
        }
        self.stats.lost += end - start;
        self.lost_ranges.push_back((start, end));
        while self.lost_ranges.len() > 256
            || self
                .lost_ranges
                .front()
                .is_some_and(|&(_, e)| e.saturating_add(LOSS_MEMORY) < end)
        {
            self.lost_ranges.pop_front();
        }
    }

    /// Whether `ext` (below `next`) was declared lost, as far as we remember; numbers older
    /// than that memory count as late.
    fn was_declared_lost(&self, ext: u64, next: u64) -> bool {
        ext.saturating_add(LOSS_MEMORY) < next
            || self.lost_ranges.iter().any(|&(s, e)| (s..e).contains(&ext))
    }

    /// Confirmed restart: release what is held, forget the old numbering and timing.
    fn restart(&mut self) {
        self.flush();
        self.stats.resets += 1;
        self.seqs = SeqExtender::new();
        self.next = None;
        self.highest = None;
        self.lost_ranges.clear();
        self.jitter.restart();
    }

    /// RFC 3550 A.8 on one arrival, then the delay follows the estimate.
    fn update_timing(&mut self, rtp_timestamp: u32, arrival: Instant) {
        self.jitter.update(rtp_timestamp, arrival);
        self.adapt(arrival);
    }

    fn adapt(&mut self, now: Instant) {
        let k = if self.cfg.low_latency { 2.0 } else { 3.0 };
        let (min, max) = (
            self.cfg.min_delay.max(self.floor).as_secs_f64(),
            self.cfg.max_delay.as_secs_f64(),
        );
        let raw = k * self.jitter_secs();
        let target = if raw.is_finite() {
            raw.clamp(min, max)
        } else {
            max
        };
        let current = self.current_delay.as_secs_f64();
        let elapsed = self
            .last_adapt
            .map_or(0.0, |l| now.saturating_duration_since(l).as_secs_f64());
        if self.last_adapt.is_none_or(|l| now > l) {
            self.last_adapt = Some(now);
        }
        let next = if target >= current {
            target
        } else {
            let tau = if self.cfg.low_latency { 1.0 } else { 2.0 };
            target + (current - target) * (-elapsed / tau).exp()
        };
        self.current_delay = Duration::from_secs_f64(next.clamp(min, max));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::test_rng::Seeded;

    const MS: Duration = Duration::from_millis(1);

    fn cfg() -> JitterConfig {
        JitterConfig {
            min_delay: 5 * MS,
            max_delay: 500 * MS,
            low_latency: false,
        }
    }

    /// What came out of the buffer, in order, with the time it came out.
    #[derive(Clone, Debug, PartialEq)]
    enum Ev {
        Packet {
            ext: u64,
            seq: u16,
            idx: u32,
            at: Instant,
        },
        Lost {
            count: u64,
            at: Instant,
        },
    }

    #[derive(Default)]
    struct Out(Vec<Ev>);

    impl Out {
        fn packets(&self) -> impl Iterator<Item = (u64, u16, u32, Instant)> + '_ {
            self.0.iter().filter_map(|e| match *e {
                Ev::Packet { ext, seq, idx, at } => Some((ext, seq, idx, at)),
                Ev::Lost { .. } => None,
            })
        }

        fn losses(&self) -> Vec<(u64, Instant)> {
            self.0
                .iter()
                .filter_map(|e| match *e {
                    Ev::Lost { count, at } => Some((count, at)),
                    Ev::Packet { .. } => None,
                })
                .collect()
        }
    }

    fn drain(jb: &mut JitterBuffer<u32>, now: Instant, out: &mut Out) {
        while let Some(r) = jb.pop(now) {
            out.0.push(match r {
                Released::Packet(p) => Ev::Packet {
                    ext: p.ext_seq,
                    seq: p.seq,
                    idx: p.payload,
                    at: now,
                },
                Released::Lost { count } => Ev::Lost { count, at: now },
            });
        }
    }

    /// Pops whatever falls due up to `until`, at the time it falls due.
    fn run_timers(jb: &mut JitterBuffer<u32>, until: Instant, out: &mut Out) {
        for _ in 0..100_000 {
            match jb.next_deadline() {
                Some(d) if d <= until => {
                    let before = out.0.len();
                    drain(jb, d, out);
                    assert_ne!(before, out.0.len(), "a deadline that releases nothing");
                }
                _ => return,
            }
        }
        panic!("timers never settle");
    }

    /// A network between a sender and the buffer, for `packets` packets: a loss probability
    /// (per mille), a duplication probability, and a delay uniform in `[10 ms, 10 ms + spread)`.
    #[derive(Clone, Copy)]
    struct Phase {
        packets: u32,
        loss_permille: u64,
        dup_permille: u64,
        spread: Duration,
    }

    /// A sender of 20 ms Opus-like packets (960 ticks at 48 kHz).
    struct Sim {
        t0: Instant,
        seq0: u16,
        ts0: u32,
    }

    const INTERVAL: Duration = Duration::from_millis(20);

    /// Ground truth of one run and what the buffer made of it.
    struct Truth {
        sent: u32,
        /// By send index: the network dropped it.
        network_lost: Vec<bool>,
        /// (send index, arrival), in arrival order.
        arrivals: Vec<(u32, Instant)>,
        /// The current delay at the end of each phase.
        delays: Vec<Duration>,
        out: Out,
        stats: JitterStats,
    }

    impl Sim {
        fn new(seq0: u16, ts0: u32) -> Self {
            Sim {
                t0: Instant::now(),
                seq0,
                ts0,
            }
        }

        fn run(&self, rng: &mut Seeded, phases: &[Phase], jcfg: JitterConfig) -> Truth {
            let base = 10 * MS;
            let mut arrivals = Vec::new();
            let mut network_lost = Vec::new();
            let mut phase_end = Vec::new();
            let mut i = 0u32;
            for ph in phases {
                for _ in 0..ph.packets {
                    let send = self.t0 + INTERVAL * i;
                    // The first packet always arrives, and first, so the range is known from
                    // the start.
                    let lost = i > 0 && rng.below(1000) < ph.loss_permille;
                    network_lost.push(lost);
                    if !lost {
                        let spread = ph.spread.as_micros() as u64;
                        let d = if i == 0 {
                            base
                        } else {
                            base + Duration::from_micros(rng.below(spread.max(1)))
                        };
                        arrivals.push((i, send + d));
                        if rng.below(1000) < ph.dup_permille {
                            let d2 = d + Duration::from_micros(rng.below(30_000));
                            arrivals.push((i, send + d2));
                        }
                    }
                    i += 1;
                }
                phase_end.push(self.t0 + INTERVAL * i);
            }
            // And so does the last.
            if let Some(l) = network_lost.last_mut() {
                if *l {
                    *l = false;
                    arrivals.push((i - 1, self.t0 + INTERVAL * (i - 1) + base));
                }
            }
            arrivals.sort_by_key(|&(idx, at)| (at, idx));

            let mut jb = JitterBuffer::<u32>::new(48_000, jcfg);
            let mut out = Out::default();
            let mut delays = Vec::new();
            let mut ends = phase_end.iter().copied().peekable();
            for &(idx, at) in &arrivals {
                while let Some(end) = ends.next_if(|&end| end <= at) {
                    run_timers(&mut jb, end, &mut out);
                    delays.push(jb.current_delay());
                }
                run_timers(&mut jb, at, &mut out);
                let seq = self.seq0.wrapping_add(idx as u16);
                let ts = self.ts0.wrapping_add(idx.wrapping_mul(960));
                jb.push(seq, ts, false, idx, at);
                drain(&mut jb, at, &mut out);
            }
            for _ in ends {
                delays.push(jb.current_delay());
            }
            run_timers(&mut jb, self.t0 + Duration::from_secs(100_000), &mut out);
            assert!(jb.is_empty());
            Truth {
                sent: i,
                network_lost,
                arrivals,
                delays,
                out,
                stats: jb.stats(),
            }
        }
    }

    /// Checks everything that must hold exactly, whatever the network did.
    fn check_exact(sim: &Sim, t: &Truth) {
        let n = t.sent as usize;
        // In order: packets and losses tile the sent range, each number once.
        let mut expected = 0u64;
        let mut declared: Vec<Option<Instant>> = vec![None; n];
        let mut released = vec![false; n];
        for e in &t.out.0 {
            match *e {
                Ev::Lost { count, at } => {
                    assert!(count > 0);
                    for k in expected..expected + count {
                        declared[k as usize] = Some(at);
                    }
                    expected += count;
                }
                Ev::Packet { seq, idx, .. } => {
                    assert_eq!(u64::from(idx), expected, "packet out of order");
                    assert_eq!(seq, sim.seq0.wrapping_add(idx as u16));
                    released[idx as usize] = true;
                    expected += 1;
                }
            }
        }
        assert_eq!(expected, u64::from(t.sent), "every number accounted for");
        // Every arrival is released once, or is a duplicate, or came after its number was
        // given up on.
        let mut late = 0u64;
        let mut dups = 0u64;
        let mut seen = vec![false; n];
        for &(idx, at) in &t.arrivals {
            let i = idx as usize;
            match declared[i] {
                Some(when) => {
                    assert!(at >= when, "{i} declared lost although it had arrived");
                    late += 1;
                }
                None if seen[i] => dups += 1,
                None => {}
            }
            seen[i] = true;
        }
        for i in 0..n {
            assert!(released[i] != declared[i].is_some());
            if t.network_lost[i] {
                assert!(declared[i].is_some(), "lost packet {i} not declared");
            }
        }
        let losses = t.out.losses();
        let total_lost: u64 = losses.iter().map(|l| l.0).sum();
        let s = t.stats;
        assert_eq!(s.lost, total_lost);
        assert_eq!(s.late, late);
        assert_eq!(s.duplicates, dups);
        assert_eq!(s.released, t.out.packets().count() as u64);
        assert_eq!(s.received, t.arrivals.len() as u64);
        assert_eq!(s.received, s.released + s.duplicates + s.late + s.discarded);
        assert_eq!((s.discarded, s.resets), (0, 0));
        // Declared lost = lost in the network + arrived too late.
        let net_lost = t.network_lost.iter().filter(|&&l| l).count() as u64;
        let too_late = (0..n)
            .filter(|&i| !t.network_lost[i] && declared[i].is_some())
            .count() as u64;
        assert_eq!(total_lost, net_lost + too_late);
    }

    /// A retransmission floor is the wait for a *missing* packet; the very first packet
    /// waits only the least delay for a reordered earlier one (it used to wait the floor,
    /// holding the start of every stream with NACK back by the whole retransmission wait).
    #[test]
    fn the_first_packet_does_not_wait_the_retransmission_floor() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::<u32>::new(90_000, cfg());
        jb.set_floor(170 * MS);
        jb.push(10, 0, false, 0, t0);
        assert!(jb.pop(t0).is_none());
        assert_eq!(jb.next_deadline(), Some(t0 + cfg().min_delay));
        assert!(matches!(
            jb.pop(t0 + cfg().min_delay),
            Some(Released::Packet(_))
        ));
        // A gap after it does wait the floor.
        jb.push(12, 1800, false, 2, t0 + 20 * MS);
        assert!(jb.pop(t0 + 100 * MS).is_none());
        assert!(matches!(
            jb.pop(t0 + 20 * MS + 170 * MS),
            Some(Released::Lost { count: 1 })
        ));
    }

    #[test]
    fn in_order_stream_passes_straight_through() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::<u32>::new(90_000, cfg());
        let mut out = Out::default();
        for i in 0..1000u32 {
            let at = t0 + 10 * MS * i;
            run_timers(&mut jb, at, &mut out);
            jb.push(i as u16, i * 900, false, i, at);
            drain(&mut jb, at, &mut out);
            if i > 0 {
                // After the first, each packet leaves the moment it arrives.
                assert_eq!(out.packets().last().unwrap().3, at);
            }
        }
        run_timers(&mut jb, t0 + Duration::from_secs(60), &mut out);
        assert_eq!(out.packets().count(), 1000);
        assert!(out.losses().is_empty());
        // The first waited min_delay for a possibly reordered earlier one.
        assert_eq!(out.packets().next().unwrap().3, t0 + 5 * MS);
        assert_eq!(jb.current_delay(), 5 * MS);
        assert!(jb.stats().jitter_secs < 1e-9);
    }

    #[test]
    fn reorders_a_swap_and_times_out_a_gap() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::<u32>::new(90_000, cfg());
        let mut out = Out::default();
        for (seq, ms) in [(0u16, 0u32), (2, 1), (1, 2), (3, 3), (5, 4)] {
            let at = t0 + MS * ms;
            run_timers(&mut jb, at, &mut out);
            jb.push(seq, 0, false, u32::from(seq), at);
            drain(&mut jb, at, &mut out);
        }
        // 0 waits 5 ms for anything earlier; by then 1..3 are in: all leave at 5 ms. The gap
        // at 4 is waited for 5 ms from the arrival of 5 (at 4 ms).
        run_timers(&mut jb, t0 + Duration::from_secs(1), &mut out);
        let seqs: Vec<u16> = out.packets().map(|p| p.1).collect();
        assert_eq!(seqs, [0, 1, 2, 3, 5]);
        assert!(out.packets().take(4).all(|p| p.3 == t0 + 5 * MS));
        assert_eq!(out.losses(), vec![(1, t0 + 9 * MS)]);
        let s = jb.stats();
        assert_eq!((s.reordered, s.lost, s.late, s.duplicates), (1, 1, 0, 0));
        // 4 arrives after all: late. 3 and 5 again: duplicates.
        jb.push(4, 0, false, 4, t0 + 20 * MS);
        jb.push(3, 0, false, 3, t0 + 21 * MS);
        jb.push(5, 0, false, 5, t0 + 22 * MS);
        assert_eq!(jb.pop(t0 + 23 * MS), None);
        assert_eq!(jb.next_deadline(), None);
        let s = jb.stats();
        assert_eq!((s.late, s.duplicates, s.received), (1, 2, 8));
    }

    #[test]
    fn lossy_jittery_reordering_network_is_accounted_exactly() {
        let mut rng = Seeded::new(0x5eed_0001_d00d_f00d);
        let sim = Sim::new(60_000, u32::MAX - 500_000); // both wrap during the run
        let phases = [Phase {
            packets: 20_000,
            loss_permille: 50,
            dup_permille: 10,
            spread: 60 * MS, // up to 3 packets of reordering at 20 ms spacing
        }];
        let t = sim.run(&mut rng, &phases, cfg());
        check_exact(&sim, &t);
        let s = t.stats;
        assert!(s.reordered > 1000, "{s:?}");
        assert!(s.duplicates > 100, "{s:?}");
        // Uniform delay over 60 ms: E|X - Y| = 20 ms; the wait settles near 3 x that, more
        // than the 40 ms a packet can be overtaken by, so almost nothing is given up on.
        assert!((0.015..0.025).contains(&s.jitter_secs), "{s:?}");
        assert!(s.late * 1000 < s.received, "{s:?}");
        // Extended across the wrap, without a reset.
        let first = t.out.packets().next().unwrap().0;
        let last = t.out.packets().last().unwrap().0;
        assert_eq!(last - first, 19_999);
    }

    #[test]
    fn delay_adapts_up_under_jitter_and_back_down() {
        let mut rng = Seeded::new(0x0123_4567_89ab_cdef);
        let sim = Sim::new(1, 0);
        let calm = Phase {
            packets: 1500, // 30 s
            loss_permille: 10,
            dup_permille: 0,
            spread: Duration::from_micros(500),
        };
        let stormy = Phase {
            spread: 80 * MS,
            ..calm
        };
        let t = sim.run(&mut rng, &[calm, stormy, calm], cfg());
        check_exact(&sim, &t);
        let [a, b, c] = t.delays[..] else {
            panic!("{:?}", t.delays)
        };
        // LAN: the floor. Storm: 3 x E|D| = 3 x 80/3 ms = 80 ms, give or take the estimator's
        // noise. Calm again: back to the floor.
        assert_eq!(a, 5 * MS, "{:?}", t.delays);
        assert!((60 * MS..130 * MS).contains(&b), "{:?}", t.delays);
        assert!(c < 5 * MS + Duration::from_micros(10), "{:?}", t.delays);
    }

    #[test]
    fn low_latency_waits_less() {
        let phase = Phase {
            packets: 3000,
            loss_permille: 20,
            dup_permille: 0,
            spread: 60 * MS,
        };
        let sim = Sim::new(7, 7);
        let normal = sim.run(&mut Seeded::new(42), &[phase], cfg());
        let low = sim.run(
            &mut Seeded::new(42),
            &[phase],
            JitterConfig {
                low_latency: true,
                ..cfg()
            },
        );
        check_exact(&sim, &normal);
        check_exact(&sim, &low);
        // Same arrivals, same jitter estimate; a shorter wait, so more packets given up on.
        assert_eq!(normal.stats.jitter_secs, low.stats.jitter_secs);
        let ratio = low.delays[0].as_secs_f64() / normal.delays[0].as_secs_f64();
        assert!((0.5..0.75).contains(&ratio), "{ratio}");
        assert!(low.stats.late >= normal.stats.late);
    }

    #[test]
    fn sender_restart_resets_a_stray_packet_does_not() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::<u32>::new(90_000, cfg());
        let mut out = Out::default();
        let mut at = t0;
        let mut feed = |jb: &mut JitterBuffer<u32>, seq: u16, idx: u32, out: &mut Out| {
            at += 10 * MS;
            run_timers(jb, at, out);
            jb.push(seq, idx * 900, false, idx, at);
            drain(jb, at, out);
            at
        };
        for i in 0..100u32 {
            feed(&mut jb, 1000 + i as u16, i, &mut out);
        }
        // A stray far-off packet, then the stream goes on: discarded.
        feed(&mut jb, 40_000, 999, &mut out);
        for i in 100..200u32 {
            feed(&mut jb, 1000 + i as u16, i, &mut out);
        }
        assert_eq!((jb.stats().discarded, jb.stats().resets), (1, 0));
        // The sender restarts 30 000 numbers on: confirmed by the next, the buffer starts over.
        let mut end = t0;
        for i in 200..400u32 {
            end = feed(&mut jb, 31_000 + i as u16, i, &mut out);
        }
        run_timers(&mut jb, end + Duration::from_secs(1), &mut out);
        let s = jb.stats();
        assert_eq!(
            (s.resets, s.discarded, s.lost, s.late),
            (1, 1, 0, 0),
            "{s:?}"
        );
        let idx: Vec<u32> = out.packets().map(|p| p.2).collect();
        assert_eq!(idx, (0..400).collect::<Vec<_>>());
        assert!(out.losses().is_empty());
    }

    #[test]
    fn full_buffer_gives_up_on_its_gap() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::<u32>::new(
            90_000,
            JitterConfig {
                min_delay: Duration::from_secs(10),
                max_delay: Duration::from_secs(10),
                low_latency: false,
            },
        )
        .with_capacity(8);
        jb.push(0, 0, false, 0, t0);
        jb.push(1, 0, false, 1, t0);
        assert_eq!(jb.pop(t0), None); // waiting 10 s for anything before 0
        for s in 3..12u16 {
            jb.push(s, 0, false, u32::from(s), t0);
        }
        // 11 held > 8: released without waiting, the gap at 2 declared lost.
        let mut got = Vec::new();
        while let Some(r) = jb.pop(t0) {
            got.push(r);
        }
        assert_eq!(got.len(), 12);
        assert_eq!(got[2], Released::Lost { count: 1 });
        // Pushing without popping stops at twice the capacity.
        for s in 100..200u16 {
            jb.push(s, 0, false, 0, t0);
        }
        assert_eq!(jb.len(), 16);
        assert_eq!(jb.stats().discarded, 84);
    }

    /// With the first number announced (`expect_first`), a lost first packet is reported and
    /// waited for like any gap; a packet numbered before the announcement starts the stream.
    #[test]
    fn the_announced_first_number_makes_a_lost_first_packet_a_gap() {
        let t0 = Instant::now();
        let seqs = |out: &[Released<u32>]| -> Vec<Option<u16>> {
            out.iter()
                .map(|r| match r {
                    Released::Packet(p) => Some(p.seq),
                    Released::Lost { .. } => None,
                })
                .collect()
        };
        let drain = |jb: &mut JitterBuffer<u32>, at: Instant| {
            let mut out = Vec::new();
            while let Some(r) = jb.pop(at) {
                out.push(r);
            }
            out
        };
        // RTP-Info said 65535; 65535 and 0 are lost, 1 comes first: both are reported
        // missing and waited for (the retransmission floor), across the wrap.
        let mut jb = JitterBuffer::<u32>::new(90_000, cfg()).with_gap_reports();
        jb.set_floor(80 * MS);
        jb.expect_first(65535);
        jb.push(1, 180, false, 0, t0);
        let mut changes = Vec::new();
        jb.take_gap_changes(&mut changes);
        assert_eq!(changes, [GapChange::Missing(65535), GapChange::Missing(0)]);
        assert!(
            drain(&mut jb, t0 + 50 * MS).is_empty(),
            "1 waits for the others"
        );
        jb.push(65535, 0, false, 0, t0 + 20 * MS); // retransmitted in time
        let out = drain(&mut jb, t0 + 90 * MS);
        assert_eq!(seqs(&out), [Some(65535), None, Some(1)]);
        // The announced number itself first: out at once.
        let mut jb = JitterBuffer::<u32>::new(90_000, cfg()).with_gap_reports();
        jb.set_floor(80 * MS);
        jb.expect_first(7);
        jb.push(7, 0, false, 0, t0);
        assert_eq!(seqs(&drain(&mut jb, t0)), [Some(7)]);
        // A packet numbered before the announcement (a server whose RTP-Info was late)
        // is the start, not a duplicate; and an announcement after packets changes nothing.
        let mut jb = JitterBuffer::<u32>::new(90_000, cfg()).with_gap_reports();
        jb.expect_first(100);
        jb.push(95, 0, false, 0, t0);
        jb.expect_first(200);
        jb.push(96, 90, false, 0, t0 + MS);
        let out = drain(&mut jb, t0 + 10 * MS);
        assert_eq!(seqs(&out), [Some(95), Some(96)]);
        assert_eq!(jb.stats().duplicates, 0);
    }

    /// Gap reports name each missing number once and each late-but-in-time arrival; the
    /// floor keeps a gap open long enough for a retransmission, and nothing is reported
    /// without asking for it.
    #[test]
    fn gap_reports_and_the_retransmission_floor() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::<u32>::new(90_000, cfg()).with_gap_reports();
        let mut plain = JitterBuffer::<u32>::new(90_000, cfg());
        let mut changes = Vec::new();
        jb.set_floor(80 * MS);
        assert_eq!(jb.current_delay(), 80 * MS);
        // 65534, 65535, then 2: 0 and 1 missing, across the wrap.
        for (seq, ms) in [(65534u16, 0u32), (65535, 1), (2, 3)] {
            let at = t0 + MS * ms;
            jb.push(seq, ms * 90, false, 0, at);
            plain.push(seq, ms * 90, false, 0, at);
        }
        jb.take_gap_changes(&mut changes);
        assert_eq!(changes, [GapChange::Missing(0), GapChange::Missing(1)]);
        let mut none = Vec::new();
        plain.take_gap_changes(&mut none);
        assert!(none.is_empty());
        // The first packets went out after the least wait (the floor is for missing ones).
        let mut early = Vec::new();
        while let Some(r) = jb.pop(t0 + 50 * MS) {
            early.push(r);
        }
        assert!(
            matches!(early.as_slice(), [Released::Packet(a), Released::Packet(b)] if a.seq == 65534 && b.seq == 65535),
            "{early:?}"
        );
        // 1 comes 50 ms later (a retransmission): under the floor, still in time.
        jb.push(1, 2 * 90, false, 0, t0 + 50 * MS);
        changes.clear();
        jb.take_gap_changes(&mut changes);
        assert_eq!(changes, [GapChange::Filled(1)]);
        // 0 never comes: declared lost once the floor has passed, not before.
        let mut out = Vec::new();
        while let Some(r) = jb.pop(t0 + 70 * MS) {
            out.push(r);
        }
        assert!(out.is_empty(), "{out:?}");
        while let Some(r) = jb.pop(t0 + 84 * MS) {
            out.push(r);
        }
        let order: Vec<_> = out
            .iter()
            .map(|r| match r {
                Released::Packet(p) => Some(p.seq),
                Released::Lost { count } => {
                    assert_eq!(*count, 1);
                    None
                }
            })
            .collect();
        assert_eq!(order, [None, Some(1), Some(2)]);
        // A far jump reports at most MAX_GAP_REPORT numbers.
        changes.clear();
        jb.push(2 + 1000, 90 * 90, false, 0, t0 + 90 * MS);
        jb.take_gap_changes(&mut changes);
        assert_eq!(changes.len(), MAX_GAP_REPORT as usize);
        assert_eq!(changes[0], GapChange::Missing(1002 - 256));
        // A floor above the cap is the cap.
        jb.set_floor(Duration::from_secs(9));
        assert_eq!(jb.current_delay(), cfg().max_delay);
    }

    #[test]
    fn flush_releases_everything_in_order() {
        let t0 = Instant::now();
        let mut jb: JitterBuffer = JitterBuffer::new(8000, cfg());
        for s in [5u16, 9, 7] {
            jb.push(s, 0, s == 9, vec![s as u8], t0);
        }
        jb.flush();
        let got: Vec<_> = std::iter::from_fn(|| jb.pop(t0)).collect();
        assert_eq!(got.len(), 5);
        assert!(matches!(&got[0], Released::Packet(p) if p.seq == 5 && p.payload == [5]));
        assert_eq!(got[1], Released::Lost { count: 1 });
        assert!(matches!(&got[4], Released::Packet(p) if p.seq == 9 && p.marker));
        assert!(jb.is_empty());
        assert_eq!(jb.next_deadline(), None);
    }

    #[test]
    fn odd_configs_and_clock_rates_do_not_panic() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::<()>::new(
            0,
            JitterConfig {
                min_delay: Duration::from_secs(5),
                max_delay: Duration::ZERO,
                low_latency: true,
            },
        );
        assert_eq!(jb.config().min_delay, Duration::ZERO);
        jb.push(1, u32::MAX, true, (), t0);
        jb.push(2, 0, true, (), t0 + Duration::from_secs(1_000_000));
        while jb.pop(t0).is_some() {}
        assert_eq!(jb.stats().released, 2);
    }

    /// Mirrors what a fuzz target would do: arbitrary numbers, timestamps, arrival times
    /// (sometimes going backwards) and pop times; nothing panics, the counts add up, and the
    /// output is always in order.
    #[test]
    fn garbage_never_panics_and_counts_add_up() {
        let mut rng = Seeded::new(0xfeed_face_cafe_beef);
        for round in 0..200 {
            let t0 = Instant::now();
            let jcfg = JitterConfig {
                min_delay: Duration::from_micros(rng.below(20_000)),
                max_delay: Duration::from_micros(rng.below(2_000_000)),
                low_latency: round % 2 == 0,
            };
            let mut jb = JitterBuffer::<u16>::new(rng.below(200_000) as u32, jcfg)
                .with_capacity(1 + rng.below(300) as usize);
            let mut last_ext: Option<u64> = None;
            let mut base_seq = rng.next_u64() as u16;
            // After a restart the numbering starts over: one step back is allowed per reset.
            let (mut resets, mut allowance) = (0, 0);
            for _ in 0..2000 {
                let seq = match rng.below(10) {
                    0 => rng.next_u64() as u16,
                    1..=3 => base_seq
                        .wrapping_add(rng.below(200) as u16)
                        .wrapping_sub(100),
                    _ => {
                        base_seq = base_seq.wrapping_add(1);
                        base_seq
                    }
                };
                let at = t0 + Duration::from_micros(rng.below(10_000_000));
                jb.push(seq, rng.next_u64() as u32, rng.below(2) == 0, seq, at);
                allowance += jb.stats().resets - resets;
                resets = jb.stats().resets;
                let now = t0 + Duration::from_micros(rng.below(10_000_000));
                while let Some(r) = jb.pop(now) {
                    match r {
                        Released::Packet(p) => {
                            assert_eq!(p.payload, p.seq);
                            if last_ext.is_some_and(|l| p.ext_seq <= l) {
                                assert!(allowance > 0, "out of order");
                                allowance -= 1;
                            }
                            last_ext = Some(p.ext_seq);
                        }
                        Released::Lost { count } => {
                            assert!(count > 0);
                            last_ext = Some(last_ext.map_or(0, |l| l + count));
                        }
                    }
                }
                let _ = jb.next_deadline();
            }
            jb.flush();
            while jb.pop(t0).is_some() {}
            let s = jb.stats();
            assert_eq!(
                s.received,
                s.released + s.duplicates + s.late + s.discarded,
                "{s:?}"
            );
            assert!(s.current_delay <= jcfg.max_delay);
        }
    }
}
