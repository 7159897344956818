//! Protocol quantities as newtypes, with wraparound handled once, here.

use std::time::Duration;

/// RTP synchronization source identifier (RFC 3550 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ssrc(pub u32);

impl std::fmt::Display for Ssrc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// Extends a `BITS`-bit wrapping counter to 64 bits by choosing the roll-over count that puts
/// each value nearest to the highest extended value seen (RFC 3550 A.1), so late, reordered
/// values extend correctly. The first value maps to itself plus `2^BITS`, so earlier reordered
/// values stay positive. A value exactly half the range away extends backwards.
#[derive(Clone, Debug, Default)]
struct Unwrapper<const BITS: u32> {
    highest: Option<i64>,
}

impl<const BITS: u32> Unwrapper<BITS> {
    fn extend(&mut self, value: u64) -> i64 {
        let ext = match self.highest {
            None => (1i64 << BITS) + value as i64,
            Some(last) => {
                let shift = 64 - BITS;
                // The difference modulo 2^BITS, read as a signed BITS-bit number.
                let delta = ((value.wrapping_sub(last as u64) << shift) as i64) >> shift;
                last + delta
            }
        };
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }
}

/// Extends 16-bit RTP sequence numbers to 64 bits (RFC 3550 A.1), the one place wraparound of
/// sequence numbers is handled.
#[derive(Clone, Debug, Default)]
pub struct SeqExtender(Unwrapper<16>);

impl SeqExtender {
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the extended sequence number of `seq`, choosing the roll-over count that puts it
    /// nearest to the last extended number seen (so late, reordered packets extend correctly).
    pub fn extend(&mut self, seq: u16) -> u64 {
        self.0.extend(u64::from(seq)) as u64
    }

    /// Highest extended sequence number seen so far.
    pub fn highest(&self) -> Option<u64> {
        self.0.highest.map(|h| h as u64)
    }
}

/// Extends 32-bit RTP timestamps to 64 bits, the same way as [`SeqExtender`].
#[derive(Clone, Debug, Default)]
pub struct TimestampExtender(Unwrapper<32>);

impl TimestampExtender {
    pub fn new() -> Self {
        Self::default()
    }

    /// Extended timestamp of `ts`; the first one seen maps to itself (plus 2^32, so earlier
    /// reordered timestamps stay positive).
    pub fn extend(&mut self, ts: u32) -> i64 {
        self.0.extend(u64::from(ts))
    }
}

/// 64-bit NTP timestamp (RFC 5905 §6): seconds since 1900-01-01 in the high 32 bits, fraction in
/// the low 32 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NtpTimestamp(pub u64);

/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

impl NtpTimestamp {
    /// From a time given as a duration since the Unix epoch (the caller reads the clock).
    pub fn from_unix(since_epoch: Duration) -> Self {
        let secs = since_epoch.as_secs() + NTP_UNIX_OFFSET_SECS;
        let frac = (u64::from(since_epoch.subsec_nanos()) << 32) / 1_000_000_000;
        NtpTimestamp((secs << 32) | frac)
    }

    /// Back to a duration since the Unix epoch; `None` for times before 1970.
    pub fn to_unix(self) -> Option<Duration> {
        let secs = (self.0 >> 32).checked_sub(NTP_UNIX_OFFSET_SECS)?;
        let nanos = ((self.0 & 0xffff_ffff) * 1_000_000_000) >> 32;
        Some(Duration::new(secs, nanos as u32))
    }

    /// The middle 32 bits, as used in RTCP LSR/DLSR (RFC 3550 §6.4.1).
    pub fn middle32(self) -> u32 {
        (self.0 >> 16) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_extends_across_wrap_and_reorder() {
        let mut e = SeqExtender::new();
        let a = e.extend(65534);
        let b = e.extend(65535);
        let c = e.extend(0);
        let d = e.extend(65533); // late packet from before the wrap
        let f = e.extend(1);
        assert_eq!(b, a + 1);
        assert_eq!(c, a + 2);
        assert_eq!(d, a - 1);
        assert_eq!(f, a + 3);
        assert_eq!(e.highest(), Some(f));
    }

    #[test]
    fn half_the_range_away_extends_backwards() {
        let mut e = SeqExtender::new();
        assert_eq!(e.extend(0), 1 << 16);
        assert_eq!(e.extend(0x8000), (1 << 16) - 0x8000);
        assert_eq!(e.highest(), Some(1 << 16));
        let mut t = TimestampExtender::new();
        assert_eq!(t.extend(0), 1 << 32);
        assert_eq!(t.extend(0x8000_0000), (1 << 32) - 0x8000_0000);
    }

    #[test]
    fn timestamp_extends_across_wrap() {
        let mut e = TimestampExtender::new();
        let a = e.extend(u32::MAX - 10);
        let b = e.extend(5);
        assert_eq!(b - a, 16);
        let c = e.extend(u32::MAX - 20);
        assert_eq!(c - a, -10);
    }

    #[test]
    fn ntp_round_trips_unix_time() {
        let t = Duration::new(1_700_000_000, 250_000_000);
        let n = NtpTimestamp::from_unix(t);
        assert_eq!(n.0 >> 32, 1_700_000_000 + NTP_UNIX_OFFSET_SECS);
        assert_eq!(n.0 & 0xffff_ffff, 1 << 30); // a quarter second
        let back = n.to_unix().unwrap();
        assert!(back.abs_diff(t) < Duration::from_nanos(2));
        assert_eq!(NtpTimestamp(0).to_unix(), None);
    }
}
