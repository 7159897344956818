//! The secrets of a call (`livecast-player --call`): the call code that authenticates both
//! legs, and the safety code two people compare to know that nobody sits between them.
//!
//! - **The call code**: 20 decimal digits (66 bits), written in four groups of five
//!   (`12345-67890-12345-67890`), made by the side that starts the call from OS randomness
//!   (the shell passes the bytes: this crate reads none) and passed by the other side as
//!   `--code`. Both derive from it the same Digest password ([`CallCode::password`]) of the
//!   user [`CALL_USER`], so each side's server lets in only the peer that knows the code.
//! - **The safety code**: 30 digits in six groups of five, from the SHA-256 of both
//!   certificates' fingerprints, sorted, so both sides compute the same value. With someone in
//!   the middle each side sees that someone's certificate instead of the peer's, and the two
//!   codes differ (what Signal's safety numbers do with identity keys).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::trust::Fingerprint;

/// The Digest user both legs of a call authenticate as.
pub const CALL_USER: &str = "call";

/// Digits in a call code.
const CODE_DIGITS: usize = 20;

/// A call code: 20 decimal digits.
#[derive(Clone, PartialEq, Eq)]
pub struct CallCode([u8; CODE_DIGITS]);

/// Why a typed call code was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallCodeError {
    /// Not 20 digits once spaces and dashes are left out.
    Malformed(String),
}

impl fmt::Display for CallCodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallCodeError::Malformed(s) => write!(
                f,
                "{s:?} is not a call code (20 digits, as the calling side printed them)"
            ),
        }
    }
}

impl std::error::Error for CallCodeError {}

impl CallCode {
    /// A code from 16 random bytes (the shell's OS randomness): their value modulo 10^20, so
    /// every code is about equally likely (the bias is under 2^-60).
    pub fn from_random(bytes: [u8; 16]) -> CallCode {
        let mut n = u128::from_be_bytes(bytes) % 10u128.pow(CODE_DIGITS as u32);
        let mut d = [0u8; CODE_DIGITS];
        for slot in d.iter_mut().rev() {
            *slot = (n % 10) as u8;
            n /= 10;
        }
        CallCode(d)
    }

    /// The Digest password of [`CALL_USER`] for this call: 32 hex digits of
    /// SHA-256("livecast call code v1" 0x00 digits).
    pub fn password(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"livecast call code v1\0");
        h.update(self.digits().as_bytes());
        h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn digits(&self) -> String {
        self.0.iter().map(|d| char::from(b'0' + d)).collect()
    }
}

impl fmt::Display for CallCode {
    /// `12345-67890-12345-67890`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.digits();
        for (i, group) in d.as_bytes().chunks(5).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            f.write_str(std::str::from_utf8(group).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for CallCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CallCode(..)")
    }
}

impl FromStr for CallCode {
    type Err = CallCodeError;

    /// 20 digits; spaces and dashes anywhere are ignored.
    fn from_str(s: &str) -> Result<Self, CallCodeError> {
        let digits: Vec<u8> = s.bytes().filter(|b| !matches!(b, b' ' | b'-')).collect();
        if digits.len() != CODE_DIGITS || !digits.iter().all(u8::is_ascii_digit) {
            return Err(CallCodeError::Malformed(s.to_owned()));
        }
        let mut d = [0u8; CODE_DIGITS];
        for (slot, b) in d.iter_mut().zip(digits) {
            *slot = b - b'0';
        }
        Ok(CallCode(d))
    }
}

/// The safety code of a call between the certificates `a` and `b` (either order): six groups
/// of five digits, each the next 5 bytes of SHA-256("livecast safety code v1" 0x00 low high)
/// as a big-endian number modulo 100000.
pub fn safety_code(a: Fingerprint, b: Fingerprint) -> String {
    let (lo, hi) = if a.0 <= b.0 { (a, b) } else { (b, a) };
    let mut h = Sha256::new();
    h.update(b"livecast safety code v1\0");
    h.update(lo.0);
    h.update(hi.0);
    let hash = h.finalize();
    hash[..30]
        .chunks(5)
        .map(|c| {
            let n = c.iter().fold(0u64, |n, &b| n << 8 | u64::from(b));
            format!("{:05}", n % 100_000)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_typing_is_forgiving() {
        let c = CallCode::from_random([0xff; 16]);
        let s = c.to_string();
        assert_eq!(s.len(), 23);
        assert_eq!(s.matches('-').count(), 3);
        assert_eq!(s.parse::<CallCode>().unwrap(), c);
        let typed = "12345 67890-1234567890";
        let c: CallCode = typed.parse().unwrap();
        assert_eq!(c.to_string(), "12345-67890-12345-67890");
        for bad in [
            "",
            "1234",
            "12345-67890-12345-6789",
            "12345-67890-12345-6789x",
        ] {
            assert!(bad.parse::<CallCode>().is_err(), "{bad}");
        }
        // Leading zeros are kept: the value is 10^20 - 1 at most, written with 20 digits.
        let small = CallCode::from_random([0; 16]);
        assert_eq!(small.to_string(), "00000-00000-00000-00000");
    }

    #[test]
    fn the_password_depends_on_every_digit_and_only_on_the_digits() {
        let a: CallCode = "12345-67890-12345-67890".parse().unwrap();
        let same: CallCode = "1234567890 1234567890".parse().unwrap();
        let other: CallCode = "12345-67890-12345-67891".parse().unwrap();
        assert_eq!(a.password(), same.password());
        assert_ne!(a.password(), other.password());
        assert_eq!(a.password().len(), 32);
        assert!(a.password().bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!format!("{a:?}").contains("12345"), "Debug hides the code");
    }

    #[test]
    fn both_sides_compute_the_same_safety_code() {
        let a = Fingerprint([1; 32]);
        let b = Fingerprint([2; 32]);
        let m = Fingerprint([3; 32]);
        let code = safety_code(a, b);
        assert_eq!(code, safety_code(b, a));
        assert_eq!(code.len(), 6 * 5 + 5);
        assert!(code
            .split(' ')
            .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit())));
        // Someone in the middle: each side sees that someone's certificate.
        assert_ne!(safety_code(a, m), safety_code(m, b));
        assert_ne!(code, safety_code(a, m));
    }
}
