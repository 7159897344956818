//! RFC 3550 A.1 sequence-number validation and A.8 interarrival jitter: the one copy, used by
//! the reception statistics ([`crate::rtcp::ReceptionStats`]), the jitter buffer
//! ([`crate::jitter::JitterBuffer`]) and the H.264 depacketizer.
//!
//! Sans-IO: arrival times are `Instant`s passed in by the caller.

use std::time::Instant;

use crate::time::TimestampExtender;

/// RFC 3550 A.1: a jump forward of fewer sequence numbers than this is loss; a larger one is a
/// possible restart of the sender's numbering.
pub const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: a packet fewer than this many sequence numbers behind the highest is late
/// (reordered or duplicated); further back is a possible restart.
pub const MAX_MISORDER: u16 = 100;

/// Where a sequence number falls relative to the highest one received (RFC 3550 A.1
/// `update_seq`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqStep {
    /// Ahead of the highest, `gap` numbers skipped (0: the next one in order).
    Ahead { gap: u16 },
    /// `by` numbers behind the highest (0: a duplicate of it), `by < MAX_MISORDER`.
    Behind { by: u16 },
    /// A forward jump of `MAX_DROPOUT` or more, or at least `MAX_MISORDER` back: the sender
    /// restarted its numbering, or a stray packet. A.1 accepts the new numbering once the next
    /// packet follows it.
    Jump,
}

/// Classifies `seq` against `highest`, the highest sequence number received so far.
pub fn classify(highest: u16, seq: u16) -> SeqStep {
    let udelta = seq.wrapping_sub(highest);
    if udelta == 0 {
        SeqStep::Behind { by: 0 }
    } else if udelta < MAX_DROPOUT {
        SeqStep::Ahead { gap: udelta - 1 }
    } else {
        let by = highest.wrapping_sub(seq);
        if by < MAX_MISORDER {
            SeqStep::Behind { by }
        } else {
            SeqStep::Jump
        }
    }
}

/// The interarrival jitter estimate of RFC 3550 §6.4.1 / A.8: `J += (|D(i-1,i)| - J) / 16`,
/// `D` the change in relative transit time between consecutive arrivals, in timestamp units.
///
/// Arrival times are converted to the source's clock relative to the first arrival, so no
/// epoch is needed. `J` is kept as a float (A.8 keeps it scaled by 16 in an integer).
#[derive(Clone, Debug)]
pub struct InterarrivalJitter {
    clock_rate: u32,
    timestamps: TimestampExtender,
    first_arrival: Option<Instant>,
    /// Relative transit time of the previous packet, in timestamp units.
    last_transit: Option<f64>,
    jitter: f64,
}

impl InterarrivalJitter {
    /// An estimate for a source whose RTP timestamps tick at `clock_rate` Hz (0 is taken as 1).
    pub fn new(clock_rate: u32) -> Self {
        InterarrivalJitter {
            clock_rate: clock_rate.max(1),
            timestamps: TimestampExtender::new(),
            first_arrival: None,
            last_transit: None,
            jitter: 0.0,
        }
    }

    /// One packet with RTP timestamp `rtp_timestamp` arrived at `arrival`.
    pub fn update(&mut self, rtp_timestamp: u32, arrival: Instant) {
        let first = *self.first_arrival.get_or_insert(arrival);
        let arrival_ticks =
            arrival.saturating_duration_since(first).as_secs_f64() * f64::from(self.clock_rate);
        let transit = arrival_ticks - self.timestamps.extend(rtp_timestamp) as f64;
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs();
            if d.is_finite() {
                self.jitter += (d - self.jitter) / 16.0;
            }
        }
        self.last_transit = Some(transit);
    }

    /// The sender restarted: the next packet starts a new transit reference; the estimate is
    /// kept.
    pub fn restart(&mut self) {
        self.timestamps = TimestampExtender::new();
        self.first_arrival = None;
        self.last_transit = None;
    }

    /// The estimate in timestamp units, as an RTCP report block carries it.
    pub fn ticks(&self) -> f64 {
        self.jitter
    }

    /// The estimate in seconds.
    pub fn secs(&self) -> f64 {
        self.jitter / f64::from(self.clock_rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn classify_follows_rfc3550_a1() {
        assert_eq!(classify(10, 11), SeqStep::Ahead { gap: 0 });
        assert_eq!(classify(10, 14), SeqStep::Ahead { gap: 3 });
        assert_eq!(classify(65535, 0), SeqStep::Ahead { gap: 0 });
        assert_eq!(classify(65530, 5), SeqStep::Ahead { gap: 10 });
        assert_eq!(classify(10, 10 + 2999), SeqStep::Ahead { gap: 2998 });
        assert_eq!(classify(10, 10 + 3000), SeqStep::Jump);
        assert_eq!(classify(10, 10), SeqStep::Behind { by: 0 });
        assert_eq!(classify(10, 9), SeqStep::Behind { by: 1 });
        assert_eq!(classify(5, 65535), SeqStep::Behind { by: 6 });
        assert_eq!(classify(1000, 1000 - 99), SeqStep::Behind { by: 99 });
        assert_eq!(classify(1000, 1000 - 100), SeqStep::Jump);
        assert_eq!(classify(0, 0x8000), SeqStep::Jump);
    }

    #[test]
    fn jitter_of_steady_arrivals_is_zero_and_of_alternating_delay_converges() {
        let t0 = Instant::now();
        let mut j = InterarrivalJitter::new(90_000);
        for i in 0..50u32 {
            j.update(i * 1800, t0 + Duration::from_millis(u64::from(i) * 20));
        }
        assert!(j.ticks() < 1e-6, "{}", j.ticks());
        // Every other packet 10 ms late: |D| is 900 ticks each time, J converges to it.
        let mut j = InterarrivalJitter::new(90_000);
        for i in 0..400u32 {
            let late = if i % 2 == 1 { 10 } else { 0 };
            j.update(
                i * 9000,
                t0 + Duration::from_millis(u64::from(i) * 100 + late),
            );
        }
        assert!((j.ticks() - 900.0).abs() < 1.0, "{}", j.ticks());
        assert!((j.secs() - 0.01).abs() < 1e-4, "{}", j.secs());
        // A restart forgets the transit reference, not the estimate.
        let before = j.ticks();
        j.restart();
        j.update(7, t0 + Duration::from_secs(999));
        assert_eq!(j.ticks(), before);
    }
}
