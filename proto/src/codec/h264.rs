//! H.264 over RTP (RFC 6184), non-interleaved mode (`packetization-mode=1`, §6.2 and §6.3's
//! non-interleaved subset): single NAL unit packets (§5.6), STAP-A aggregation (§5.7.1) and FU-A
//! fragmentation (§5.8). Plus the SDP helpers (`sprop-parameter-sets`, `profile-level-id`,
//! §8.1) and a minimal SPS parser (ITU-T H.264 §7.3.2.1) for the picture size.
//!
//! Design notes:
//! - [`Packetizer`] takes an access unit in Annex B form (what encoders emit) and returns
//!   payloads no larger than `max_payload`, the marker bit on the last (§5.1). Access unit
//!   delimiters (type 9) are dropped: the RTP timestamp and marker already delimit access units,
//!   and receivers (including ours) don't need them. NAL types 0 and 24..=31 are not valid as
//!   NAL units in this payload format (Table 3) and are dropped too (counted).
//! - [`Depacketizer`] expects packets in sequence order: reordering belongs to the jitter
//!   buffer before it. A sequence gap is loss: a fragmented NAL that loses a piece is dropped
//!   (only that NAL), the access unit is marked incomplete. STAP-B, MTAP16/24 and FU-B are only
//!   used in interleaved mode (`packetization-mode=2`), which we never negotiate: they are
//!   rejected with an error. An FU-A with both Start and End set (forbidden by §5.8) is accepted
//!   as a whole NAL unit. It never panics on any input.

use std::collections::VecDeque;
use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use crate::seq::{self, SeqStep};

pub use super::Payload;

/// RTP clock rate for H.264 (RFC 6184 §8.1).
pub const CLOCK_RATE: u32 = 90_000;

/// NAL unit types (H.264 Table 7-1) and RFC 6184 packet types (Table 1).
pub mod nal {
    pub const SLICE: u8 = 1;
    pub const IDR: u8 = 5;
    pub const SEI: u8 = 6;
    pub const SPS: u8 = 7;
    pub const PPS: u8 = 8;
    pub const AUD: u8 = 9;
    pub const STAP_A: u8 = 24;
    pub const STAP_B: u8 = 25;
    pub const MTAP16: u8 = 26;
    pub const MTAP24: u8 = 27;
    pub const FU_A: u8 = 28;
    pub const FU_B: u8 = 29;
}

/// Largest access unit the depacketizer assembles (bytes): far above any real frame, low enough
/// that a sender that never sets the marker bit cannot exhaust memory.
pub const MAX_ACCESS_UNIT_BYTES: usize = 16 << 20;

/// The `nal_unit_type` (low 5 bits of the first byte); 0 for an empty slice.
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// Whether an RTP payload (RFC 6184 §5.6-5.8) carries the start of a picture a decoder can
/// begin at: an SPS or IDR slice, alone, first in a STAP-A, or starting an FU-A. What a relay
/// looks for to let a joiner in. Never panics.
pub fn payload_starts_keyframe(payload: &[u8]) -> bool {
    let key = |t: u8| t == nal::SPS || t == nal::IDR;
    match nal_type(payload) {
        nal::STAP_A => {
            // Each aggregated NAL: a 16-bit size, then the NAL.
            let mut rest = payload.get(1..).unwrap_or_default();
            while rest.len() > 2 {
                let size = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                let Some(unit) = rest.get(2..2 + size) else {
                    return false;
                };
                if key(nal_type(unit)) {
                    return true;
                }
                rest = &rest[2 + size..];
            }
            false
        }
        nal::FU_A => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && key(fu & 0x1f)),
        t => key(t),
    }
}

/// Splits an Annex B byte stream (H.264 Annex B) into NAL units, without start codes.
///
/// Accepts 3- and 4-byte start codes (a 4-byte one is a zero byte plus a 3-byte one); trailing
/// zero bytes of each NAL (`trailing_zero_8bits`) are removed. Bytes before the first start code
/// are skipped: in the byte stream syntax (H.264 B.1.1) only `leading_zero_8bits` may come
/// before it, so they belong to no NAL unit, and a buffer without any start code has none.
pub fn split_annexb(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let rest = match buf.windows(3).position(|w| w == [0, 0, 1]) {
        Some(i) => &buf[i + 3..],
        None => &[],
    };
    AnnexB { rest }
}

struct AnnexB<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for AnnexB<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while !self.rest.is_empty() {
            let (nal, rest) = match self.rest.windows(3).position(|w| w == [0, 0, 1]) {
                Some(i) => (&self.rest[..i], &self.rest[i + 3..]),
                None => (self.rest, &[][..]),
            };
            self.rest = rest;
            let end = nal.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            if end > 0 {
                return Some(&nal[..end]);
            }
        }
        None
    }
}

fn droppable(nal: &[u8]) -> bool {
    let t = nal_type(nal);
    t == nal::AUD || t == 0 || t >= nal::STAP_A
}

/// Splits access units into RTP payloads (RFC 6184 §5.6 single NAL unit, §5.7.1 STAP-A, §5.8
/// FU-A).
#[derive(Clone, Debug)]
pub struct Packetizer {
    max_payload: usize,
    dropped_nals: u64,
}

impl Packetizer {
    /// The smallest `max_payload` that can carry an FU-A (2 header bytes + 1 byte of NAL).
    pub const MIN_PAYLOAD: usize = 3;

    /// A packetizer whose payloads are at most `max_payload` bytes (the MTU minus IP, UDP and
    /// RTP headers, e.g. 1200). Values below [`Self::MIN_PAYLOAD`] are raised to it; values above
    /// 65535 are lowered (RTSP interleaved frames and STAP-A sizes are 16-bit).
    pub fn new(max_payload: usize) -> Self {
        Packetizer {
            max_payload: max_payload.clamp(Self::MIN_PAYLOAD, 65_535),
            dropped_nals: 0,
        }
    }

    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// NAL units dropped because their type is not carried (0, 24..=31; AUDs are not counted).
    pub fn dropped_nals(&self) -> u64 {
        self.dropped_nals
    }

    /// Appends the payloads of one access unit, given in Annex B form, to `out`; the last one
    /// has `marker` set. Consecutive NAL units that fit together in one payload (SPS + PPS, SEI,
    /// small slices) are aggregated into a STAP-A, a NAL unit larger than a payload is split
    /// into FU-As, any other is sent as a single NAL unit packet. Emits nothing for an access
    /// unit without NAL units.
    pub fn packetize(&mut self, access_unit_annexb: &[u8], out: &mut Vec<Payload>) {
        let nals: Vec<&[u8]> = split_annexb(access_unit_annexb).collect();
        self.packetize_nals(&nals, out);
    }

    /// Like [`packetize`](Self::packetize) for an access unit given as NAL units without start
    /// codes.
    pub fn packetize_nals(&mut self, nals: &[&[u8]], out: &mut Vec<Payload>) {
        let mut kept = Vec::with_capacity(nals.len());
        for &n in nals {
            if n.is_empty() {
                continue;
            }
            if droppable(n) {
                if nal_type(n) != nal::AUD {
                    self.dropped_nals += 1;
                }
                continue;
            }
            kept.push(n);
        }
        let max = self.max_payload;
        let start = out.len();
        let mut i = 0;
        while i < kept.len() {
            let first = kept[i];
            if first.len() > max {
                self.fragment(first, out);
                i += 1;
                continue;
            }
            // Greedy STAP-A: 1 header byte, then a 16-bit size before each NAL unit.
            let mut size = 1 + 2 + first.len();
            let mut j = i + 1;
            while let Some(n) = kept.get(j) {
                if size + 2 + n.len() > max {
                    break;
                }
                size += 2 + n.len();
                j += 1;
            }
            if j - i >= 2 {
                let group = &kept[i..j];
                let f_nri = group.iter().fold(0u8, |acc, n| {
                    // F is the OR of the F bits, NRI the maximum NRI (§5.7.1).
                    (acc & 0x80 | n[0] & 0x80) | (acc & 0x60).max(n[0] & 0x60)
                });
                let mut data = Vec::with_capacity(size);
                data.push(f_nri | nal::STAP_A);
                for n in group {
                    data.extend_from_slice(&(n.len() as u16).to_be_bytes());
                    data.extend_from_slice(n);
                }
                out.push(Payload {
                    data,
                    marker: false,
                });
                i = j;
            } else {
                out.push(Payload {
                    data: first.to_vec(),
                    marker: false,
                });
                i += 1;
            }
        }
        if let Some(last) = out[start..].last_mut() {
            last.marker = true;
        }
    }

    /// FU-A (§5.8): FU indicator (F, NRI of the NAL, type 28), FU header (S, E, R=0, NAL type),
    /// then a piece of the NAL unit without its header byte.
    fn fragment(&mut self, nal: &[u8], out: &mut Vec<Payload>) {
        let (&header, body) = nal
            .split_first()
            .expect("only called for NALs longer than max");
        let indicator = (header & 0xe0) | nal::FU_A;
        let chunk = self.max_payload - 2;
        let pieces = body.len().div_ceil(chunk);
        for (k, piece) in body.chunks(chunk).enumerate() {
            let mut fu_header = header & 0x1f;
            if k == 0 {
                fu_header |= 0x80;
            }
            if k + 1 == pieces {
                fu_header |= 0x40;
            }
            let mut data = Vec::with_capacity(2 + piece.len());
            data.extend_from_slice(&[indicator, fu_header]);
            data.extend_from_slice(piece);
            out.push(Payload {
                data,
                marker: false,
            });
        }
    }
}

/// One reassembled access unit (a picture's worth of NAL units sharing an RTP timestamp).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessUnit {
    pub timestamp: u32,
    /// NAL units without start codes, in arrival order.
    pub nals: Vec<Vec<u8>>,
    /// Contains an IDR slice (type 5): decoding can start here.
    pub is_keyframe: bool,
    /// No packet was lost or rejected inside this access unit (conservatively: a loss just
    /// before its first packet also counts, since that packet may have been its first).
    pub complete: bool,
    /// No other picture depends on this one, and any loss was inside it: every packet that
    /// arrived says `nal_ref_idc` 0 (a non-reference picture, such as the top temporal layer
    /// of a hierarchical-P stream) and no packet was lost before its first one. An incomplete
    /// droppable access unit can be skipped without waiting for a keyframe.
    pub droppable: bool,
}

impl AccessUnit {
    /// The NAL units in Annex B form with 4-byte start codes, as decoders take them.
    pub fn to_annexb(&self) -> Vec<u8> {
        let len = self.nals.iter().map(|n| n.len() + 4).sum();
        let mut out = Vec::with_capacity(len);
        for n in &self.nals {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(n);
        }
        out
    }
}

/// Why a packet was rejected, with the RTP sequence number and timestamp to find it in a
/// capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepacketizeError {
    pub seq: u16,
    pub timestamp: u32,
    pub kind: DepacketizeErrorKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DepacketizeErrorKind {
    /// A zero-length payload.
    EmptyPayload,
    /// STAP-B (25), MTAP16 (26), MTAP24 (27) or FU-B (29): interleaved mode only, which is not
    /// negotiated; or a reserved type (0, 30, 31).
    UnsupportedType { nal_type: u8 },
    /// An FU-A shorter than its 2 header bytes + 1 byte.
    FuTooShort { len: usize },
    /// A STAP-A with no NAL unit, a zero-size NAL unit, or a size field or NAL unit that runs
    /// past the end; `offset` is the byte of the offending size field.
    BadStapA { offset: usize, len: usize },
    /// The access unit grew beyond [`MAX_ACCESS_UNIT_BYTES`]; it was dropped.
    AccessUnitTooLarge,
}

impl fmt::Display for DepacketizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "H.264 RTP seq {} ts {}: ", self.seq, self.timestamp)?;
        match &self.kind {
            DepacketizeErrorKind::EmptyPayload => write!(f, "empty payload"),
            DepacketizeErrorKind::UnsupportedType { nal_type } => write!(
                f,
                "NAL/packet type {nal_type} not supported (interleaved mode or reserved)"
            ),
            DepacketizeErrorKind::FuTooShort { len } => write!(f, "FU-A of {len} bytes"),
            DepacketizeErrorKind::BadStapA { offset, len } => write!(
                f,
                "STAP-A entry at byte {offset} malformed (payload is {len} bytes)"
            ),
            DepacketizeErrorKind::AccessUnitTooLarge => write!(
                f,
                "access unit exceeds {MAX_ACCESS_UNIT_BYTES} bytes without a marker bit"
            ),
        }
    }
}

impl std::error::Error for DepacketizeError {}

/// Counters kept by the [`Depacketizer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DepacketizerStats {
    pub packets: u64,
    /// Packets missing according to sequence gaps.
    pub lost_packets: u64,
    /// Packets ignored as an exact repeat of the previous sequence number.
    pub duplicate_packets: u64,
    /// Packets ignored because they arrived after a later one (up to 100 behind).
    pub late_packets: u64,
    /// Jumps in sequence numbers too large to be loss, taken as a sender restart.
    pub resyncs: u64,
    /// Packets rejected with an error.
    pub rejected_packets: u64,
    /// FU-A pieces discarded because the start of their NAL unit was lost.
    pub orphan_fragments: u64,
    /// Fragmented NAL units dropped because a piece was lost.
    pub dropped_nals: u64,
    /// Access units returned.
    pub access_units: u64,
    /// Non-reference pictures of which nothing was left after a loss inside them: dropped
    /// with their loss, which no other picture feels.
    pub dropped_pictures: u64,
}

/// The parsed shape of one payload, checked before any state changes.
enum Parsed<'a> {
    Single(&'a [u8]),
    Stap(Vec<&'a [u8]>),
    Fu {
        header: u8,
        start: bool,
        end: bool,
        data: &'a [u8],
    },
}

fn parse_payload(payload: &[u8]) -> Result<Parsed<'_>, DepacketizeErrorKind> {
    let Some(&first) = payload.first() else {
        return Err(DepacketizeErrorKind::EmptyPayload);
    };
    match first & 0x1f {
        1..=23 => Ok(Parsed::Single(payload)),
        nal::STAP_A => {
            let mut nals = Vec::new();
            let mut pos = 1;
            while pos < payload.len() {
                let bad = DepacketizeErrorKind::BadStapA {
                    offset: pos,
                    len: payload.len(),
                };
                let size = payload
                    .get(pos..pos + 2)
                    .map(|s| usize::from(u16::from_be_bytes([s[0], s[1]])))
                    .ok_or(bad.clone())?;
                let n = payload.get(pos + 2..pos + 2 + size).ok_or(bad.clone())?;
                if n.is_empty() {
                    return Err(bad);
                }
                nals.push(n);
                pos += 2 + size;
            }
            if nals.is_empty() {
                return Err(DepacketizeErrorKind::BadStapA {
                    offset: 1,
                    len: payload.len(),
                });
            }
            Ok(Parsed::Stap(nals))
        }
        nal::FU_A => {
            let [indicator, fu, data @ ..] = payload else {
                return Err(DepacketizeErrorKind::FuTooShort { len: payload.len() });
            };
            if data.is_empty() {
                return Err(DepacketizeErrorKind::FuTooShort { len: payload.len() });
            }
            Ok(Parsed::Fu {
                header: (indicator & 0xe0) | (fu & 0x1f),
                start: fu & 0x80 != 0,
                end: fu & 0x40 != 0,
                data,
            })
        }
        t => Err(DepacketizeErrorKind::UnsupportedType { nal_type: t }),
    }
}

#[derive(Debug)]
struct AuBuilder {
    timestamp: u32,
    nals: Vec<Vec<u8>>,
    bytes: usize,
    complete: bool,
    /// No loss was pending when its first packet arrived.
    clean_start: bool,
    /// A packet of it had a non-zero `nal_ref_idc` (its first byte's NRI bits: a NAL
    /// header, a STAP-A's or an FU indicator, RFC 6184 §5.3).
    reference: bool,
}

/// Reassembles access units from RTP payloads (RFC 6184 §5.6–§5.8, non-interleaved mode).
///
/// Packets must arrive in sequence order (reordering is the jitter buffer's job): a gap is
/// loss, and a packet up to 100 sequence numbers behind the newest is ignored as late (counted
/// in [`DepacketizerStats::late_packets`]); an exact repeat of the previous one is ignored as a
/// duplicate. An access unit ends at a packet with the marker bit or when the timestamp
/// changes; it is returned with [`AccessUnit::complete`] false if anything inside it was lost.
#[derive(Debug, Default)]
pub struct Depacketizer {
    last_seq: Option<u16>,
    au: Option<AuBuilder>,
    /// The NAL unit being reassembled from FU-As: header byte, then data.
    fu: Option<Vec<u8>>,
    /// A loss happened while no access unit was open: the next one may lack its start.
    loss_pending: bool,
    ready: VecDeque<AccessUnit>,
    stats: DepacketizerStats,
}

impl Depacketizer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stats(&self) -> DepacketizerStats {
        self.stats
    }

    /// Feeds one RTP packet (its sequence number, timestamp, marker bit and payload). Returns an
    /// access unit when this packet completes one.
    ///
    /// One packet can complete two access units (a timestamp change ends the previous one, and
    /// the marker bit the new one, when the previous marker was lost); the second is returned by
    /// the next call or by [`pull`](Self::pull). An `Err` means this packet was rejected; it is
    /// treated as lost, and an access unit completed before it can still be [`pull`](Self::pull)ed.
    pub fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<Option<AccessUnit>, DepacketizeError> {
        self.stats.packets += 1;
        let mut gap = 0;
        if let Some(last) = self.last_seq {
            match seq::classify(last, seq) {
                SeqStep::Behind { by: 0 } => {
                    self.stats.duplicate_packets += 1;
                    return Ok(self.ready.pop_front());
                }
                SeqStep::Behind { .. } => {
                    // Late: its access unit is gone or its place in the current one was taken.
                    self.stats.late_packets += 1;
                    return Ok(self.ready.pop_front());
                }
                SeqStep::Ahead { gap: g } => {
                    gap = g;
                    self.stats.lost_packets += u64::from(gap);
                }
                SeqStep::Jump => {
                    // The sender restarted its numbering (RFC 3550 A.1). Resynchronize.
                    self.stats.resyncs += 1;
                    gap = 1;
                }
            }
        }
        self.last_seq = Some(seq);
        if self.au.as_ref().is_some_and(|au| au.timestamp != timestamp) {
            if gap > 0 {
                // The missing packets may have been this access unit's tail.
                self.mark_incomplete();
            }
            self.finish_au();
        }
        if gap > 0 {
            self.lose();
        }

        let parsed = match parse_payload(payload) {
            Ok(p) => p,
            Err(kind) => {
                self.stats.rejected_packets += 1;
                self.lose();
                return Err(DepacketizeError {
                    seq,
                    timestamp,
                    kind,
                });
            }
        };
        if self.au.is_none() {
            let clean_start = !std::mem::take(&mut self.loss_pending);
            self.au = Some(AuBuilder {
                timestamp,
                nals: Vec::new(),
                bytes: 0,
                complete: clean_start,
                clean_start,
                reference: false,
            });
        }
        if let Some(au) = self.au.as_mut() {
            // `parse_payload` succeeded: there is a first byte.
            au.reference |= payload.first().is_some_and(|b| b & 0x60 != 0);
        }
        match parsed {
            Parsed::Single(n) => {
                self.abandon_fu();
                self.add_nal(n.to_vec());
            }
            Parsed::Stap(nals) => {
                self.abandon_fu();
                for n in nals {
                    self.add_nal(n.to_vec());
                }
            }
            Parsed::Fu {
                header,
                start,
                end,
                data,
            } => {
                if start {
                    self.abandon_fu();
                    let mut nal = Vec::with_capacity(1 + data.len() * 4);
                    nal.push(header);
                    self.fu = Some(nal);
                }
                match self.fu.as_mut() {
                    Some(nal) => nal.extend_from_slice(data),
                    None => {
                        // Its start was lost (already counted as a dropped NAL), or the stream
                        // was joined mid-NAL.
                        self.stats.orphan_fragments += 1;
                        self.mark_incomplete();
                    }
                }
                if end {
                    if let Some(nal) = self.fu.take() {
                        self.add_nal(nal);
                    }
                }
            }
        }
        let too_large = self.au.as_ref().is_some_and(|au| {
            au.bytes + self.fu.as_ref().map_or(0, Vec::len) > MAX_ACCESS_UNIT_BYTES
        });
        if too_large {
            self.au = None;
            self.fu = None;
            self.loss_pending = true;
            self.stats.rejected_packets += 1;
            return Err(DepacketizeError {
                seq,
                timestamp,
                kind: DepacketizeErrorKind::AccessUnitTooLarge,
            });
        }
        if marker {
            self.finish_au();
        }
        Ok(self.ready.pop_front())
    }

    /// A loss is waiting for the next access unit: nothing was left of a picture that may
    /// have been a reference (or of one whose start was lost), so the pictures after it may
    /// not decode. A receiver asks for a keyframe at once rather than when the next one is
    /// complete.
    pub fn loss_pending(&self) -> bool {
        self.loss_pending
    }

    /// An access unit completed earlier and not yet returned (see [`push`](Self::push)).
    pub fn pull(&mut self) -> Option<AccessUnit> {
        self.ready.pop_front()
    }

    /// Ends the access unit in progress as if its marker bit had arrived (end of stream), and
    /// returns the next completed access unit.
    pub fn flush(&mut self) -> Option<AccessUnit> {
        self.finish_au();
        self.ready.pop_front()
    }

    fn add_nal(&mut self, nal: Vec<u8>) {
        if let Some(au) = self.au.as_mut() {
            au.bytes += nal.len();
            au.nals.push(nal);
        }
    }

    fn mark_incomplete(&mut self) {
        match self.au.as_mut() {
            Some(au) => au.complete = false,
            None => self.loss_pending = true,
        }
    }

    /// A packet was lost or rejected: the NAL in reassembly can't be completed.
    fn lose(&mut self) {
        self.abandon_fu();
        self.mark_incomplete();
    }

    fn abandon_fu(&mut self) {
        if self.fu.take().is_some() {
            self.stats.dropped_nals += 1;
            self.mark_incomplete();
        }
    }

    fn finish_au(&mut self) {
        self.abandon_fu();
        if let Some(au) = self.au.take() {
            if au.nals.is_empty() {
                // Nothing survived. A non-reference picture whose start arrived took its loss
                // with it; otherwise the loss carries over to whatever comes next.
                if au.clean_start && !au.reference {
                    self.stats.dropped_pictures += 1;
                } else {
                    self.loss_pending = true;
                }
                return;
            }
            self.stats.access_units += 1;
            self.ready.push_back(AccessUnit {
                timestamp: au.timestamp,
                is_keyframe: au.nals.iter().any(|n| nal_type(n) == nal::IDR),
                nals: au.nals,
                complete: au.complete,
                droppable: au.clean_start && !au.reference,
            });
        }
    }
}

/// The `sprop-parameter-sets` fmtp value (RFC 6184 §8.1): base64 of the SPS and PPS NAL units
/// (headers included), comma-separated.
pub fn sprop_parameter_sets(sps: &[u8], pps: &[u8]) -> String {
    format!("{},{}", STANDARD.encode(sps), STANDARD.encode(pps))
}

/// A `sprop-parameter-sets` entry that is not base64.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpropError {
    /// 0-based position of the entry in the comma-separated list.
    pub index: usize,
    pub error: base64::DecodeError,
}

impl fmt::Display for SpropError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sprop-parameter-sets entry {}: {}",
            self.index, self.error
        )
    }
}

impl std::error::Error for SpropError {}

/// Standard alphabet; padding optional and trailing bits tolerated (seen from cameras).
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The first SPS and the first PPS of an `a=fmtp` parameter list's `sprop-parameter-sets`
/// (the key matched without regard to case); `None` for one that is missing or unreadable.
pub fn sprop_sps_pps(fmtp: &[(String, String)]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let sets = fmtp
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("sprop-parameter-sets"))
        .and_then(|(_, v)| parse_sprop_parameter_sets(v).ok())
        .unwrap_or_default();
    let first = |t: u8| sets.iter().find(|n| nal_type(n) == t).cloned();
    (first(7), first(8))
}

/// Decodes a `sprop-parameter-sets` value into NAL units (usually SPS then PPS). Whitespace
/// around entries and empty entries are ignored.
pub fn parse_sprop_parameter_sets(s: &str) -> Result<Vec<Vec<u8>>, SpropError> {
    let mut out = Vec::new();
    for (index, entry) in s.split(',').enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let nal = LENIENT_BASE64
            .decode(entry)
            .map_err(|error| SpropError { index, error })?;
        if !nal.is_empty() {
            out.push(nal);
        }
    }
    Ok(out)
}

/// The `profile-level-id` fmtp value (RFC 6184 §8.1): `profile_idc`, the constraint flags byte
/// and `level_idc` of an SPS NAL unit (bytes 1..4, after the NAL header), as 6 hex digits.
pub fn profile_level_id(sps: &[u8]) -> Option<String> {
    let b = sps.get(1..4)?;
    Some(format!("{:02x}{:02x}{:02x}", b[0], b[1], b[2]))
}

/// The fmtp value a Livecast sender announces: `packetization-mode=1` with the profile and
/// parameter sets of its stream.
pub fn fmtp(sps: &[u8], pps: &[u8]) -> String {
    let mut s = String::from("packetization-mode=1");
    if let Some(p) = profile_level_id(sps) {
        s.push_str(";profile-level-id=");
        s.push_str(&p);
    }
    s.push_str(";sprop-parameter-sets=");
    s.push_str(&sprop_parameter_sets(sps, pps));
    s
}

/// An `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15 §5.3.3.1): the `avcC` box of an MP4
/// `avc1` sample entry, and the `CodecPrivate` of a Matroska `V_MPEG4/ISO/AVC` track.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvcConfig {
    /// Bytes of the big-endian length before each NAL unit of a sample (1, 2 or 4).
    pub length_size: usize,
    /// Sequence parameter sets, NAL header included.
    pub sps: Vec<Vec<u8>>,
    /// Picture parameter sets, NAL header included.
    pub pps: Vec<Vec<u8>>,
}

/// Why an `avcC` record or a length-prefixed sample could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AvccError {
    /// Ended at byte `at` in the middle of a field.
    Truncated { at: usize },
    /// `configurationVersion` is not 1.
    Version(u8),
    /// A NAL length size of 3 bytes (not allowed).
    LengthSize(usize),
    /// A sample's NAL unit at byte `at` is empty.
    EmptyNal { at: usize },
}

impl fmt::Display for AvccError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AvccError::Truncated { at } => write!(f, "truncated at byte {at}"),
            AvccError::Version(v) => write!(f, "avcC configuration version {v} (expected 1)"),
            AvccError::LengthSize(n) => write!(f, "NAL length size {n} (must be 1, 2 or 4)"),
            AvccError::EmptyNal { at } => write!(f, "empty NAL unit at byte {at}"),
        }
    }
}

impl std::error::Error for AvccError {}

/// Reads an `AVCDecoderConfigurationRecord`; the profile fields after the PPS list (High
/// profiles) are ignored.
pub fn parse_avcc(b: &[u8]) -> Result<AvcConfig, AvccError> {
    let byte = |at: usize| b.get(at).copied().ok_or(AvccError::Truncated { at });
    let version = byte(0)?;
    if version != 1 {
        return Err(AvccError::Version(version));
    }
    let length_size = usize::from(byte(4)? & 0x03) + 1;
    if length_size == 3 {
        return Err(AvccError::LengthSize(3));
    }
    let mut at = 5;
    let sets = |count: usize, at: &mut usize| -> Result<Vec<Vec<u8>>, AvccError> {
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let len = usize::from(u16::from_be_bytes([byte(*at)?, byte(*at + 1)?]));
            let nal = b
                .get(*at + 2..*at + 2 + len)
                .ok_or(AvccError::Truncated { at: b.len() })?;
            out.push(nal.to_vec());
            *at += 2 + len;
        }
        Ok(out)
    };
    let n_sps = usize::from(byte(at)? & 0x1f);
    at += 1;
    let sps = sets(n_sps, &mut at)?;
    let n_pps = usize::from(byte(at)?);
    at += 1;
    let pps = sets(n_pps, &mut at)?;
    Ok(AvcConfig {
        length_size,
        sps,
        pps,
    })
}

/// Appends the NAL units of a length-prefixed sample (MP4, Matroska) to `out` as Annex B
/// (each behind a `00 00 00 01` start code), and returns how many there were.
pub fn length_prefixed_to_annexb(
    sample: &[u8],
    length_size: usize,
    out: &mut Vec<u8>,
) -> Result<usize, AvccError> {
    if !matches!(length_size, 1 | 2 | 4) {
        return Err(AvccError::LengthSize(length_size));
    }
    let mut at = 0;
    let mut count = 0;
    while at < sample.len() {
        let len_bytes = sample
            .get(at..at + length_size)
            .ok_or(AvccError::Truncated { at })?;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
        if len == 0 {
            return Err(AvccError::EmptyNal { at });
        }
        let nal = sample
            .get(at + length_size..at + length_size + len)
            .ok_or(AvccError::Truncated { at: sample.len() })?;
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
        at += length_size + len;
        count += 1;
    }
    Ok(count)
}

/// Removes emulation prevention bytes (H.264 §7.4.1: `00 00 03` → `00 00`), giving the RBSP.
pub fn remove_emulation_prevention(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Inserts emulation prevention bytes (H.264 §7.4.1) so that `rbsp` contains no start code
/// prefix and does not end in a zero byte; the inverse of [`remove_emulation_prevention`].
pub fn add_emulation_prevention(rbsp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rbsp.len() + rbsp.len() / 64 + 1);
    let mut zeros = 0;
    for &b in rbsp {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    if zeros > 0 {
        out.push(3);
    }
    out
}

/// What the player needs from a sequence parameter set (H.264 §7.3.2.1.1, E.1.1).
#[derive(Clone, Debug, PartialEq)]
pub struct SpsInfo {
    pub profile_idc: u8,
    /// `constraint_set0_flag`..`constraint_set5_flag` and the reserved bits, as one byte.
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub seq_parameter_set_id: u32,
    /// 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    pub chroma_format_idc: u32,
    pub bit_depth_luma: u32,
    pub bit_depth_chroma: u32,
    /// False for interlaced-capable streams (field or MBAFF coding).
    pub frame_mbs_only: bool,
    /// Display size in luma samples, after frame cropping.
    pub width: u32,
    pub height: u32,
    /// Sample aspect ratio from the VUI, if given.
    pub sample_aspect_ratio: Option<(u16, u16)>,
    /// `time_scale / (2 * num_units_in_tick)` from the VUI timing info, if present (the usual
    /// convention of x264, ffmpeg and hardware encoders for frame-coded streams).
    pub fps: Option<f64>,
}

/// Why an SPS could not be parsed; `bit` is the position in the RBSP (after the NAL header and
/// emulation prevention removal).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpsError {
    /// The NAL unit is not an SPS (type 7).
    NotSps { nal_type: u8 },
    /// Ended at `bit` in the middle of a field.
    Truncated { bit: usize },
    /// An Exp-Golomb code with 32 or more leading zeros.
    ExpGolombTooLong { bit: usize },
    /// A field outside its allowed range.
    OutOfRange { field: &'static str, value: u64 },
}

impl fmt::Display for SpsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpsError::NotSps { nal_type } => write!(f, "NAL type {nal_type} is not an SPS"),
            SpsError::Truncated { bit } => write!(f, "SPS truncated at bit {bit}"),
            SpsError::ExpGolombTooLong { bit } => {
                write!(f, "SPS Exp-Golomb code at bit {bit} too long")
            }
            SpsError::OutOfRange { field, value } => {
                write!(f, "SPS {field} = {value} out of range")
            }
        }
    }
}

impl std::error::Error for SpsError {}

/// The `slice_type` of a slice NAL unit (types 1 and 5; H.264 §7.3.3), 0..=4: P, B, I, SP,
/// SI (the values 5..=9, "all slices of the picture are this type", folded in). `None` for
/// other NAL units or a header cut short.
pub fn slice_type(nal: &[u8]) -> Option<u32> {
    if !matches!(nal_type(nal), nal::SLICE | nal::IDR) {
        return None;
    }
    // Two Exp-Golomb codes of at most 33 bits each: a few bytes, emulation prevention removed.
    let head = remove_emulation_prevention(nal.get(1..nal.len().min(16))?);
    let mut r = BitReader {
        data: &head,
        pos: 0,
    };
    r.ue().ok()?; // first_mb_in_slice
    let t = r.ue().ok()?;
    (t <= 9).then_some(t % 5)
}

/// Whether an Annex B access unit holds a B slice (the stream reorders pictures).
pub fn has_b_slice(annexb: &[u8]) -> bool {
    split_annexb(annexb).any(|n| slice_type(n) == Some(1))
}

/// Whether no other picture can depend on this Annex B access unit: it has slices, and
/// every one says `nal_ref_idc` 0 (§7.4.1: a non-reference picture). A decoder going to a
/// later picture may skip it.
pub fn is_disposable(annexb: &[u8]) -> bool {
    let mut slices = split_annexb(annexb)
        .filter(|n| matches!(nal_type(n), nal::SLICE | nal::IDR))
        .peekable();
    slices.peek().is_some() && slices.all(|n| n[0] & 0x60 == 0)
}

/// MSB-first bit reader with Exp-Golomb codes (H.264 §9.1).
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> Result<bool, SpsError> {
        let byte = self
            .data
            .get(self.pos / 8)
            .ok_or(SpsError::Truncated { bit: self.pos })?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(b == 1)
    }

    fn bits(&mut self, n: u32) -> Result<u32, SpsError> {
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | u32::from(self.bit()?);
        }
        Ok(v)
    }

    fn flag(&mut self) -> Result<bool, SpsError> {
        self.bit()
    }

    fn ue(&mut self) -> Result<u32, SpsError> {
        let start = self.pos;
        let mut zeros = 0;
        while !self.bit()? {
            zeros += 1;
            if zeros >= 32 {
                return Err(SpsError::ExpGolombTooLong { bit: start });
            }
        }
        // 2^zeros - 1 + bits; zeros <= 31 so this fits (max 2^32 - 2).
        Ok(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)) as u32)
    }

    fn se(&mut self) -> Result<i64, SpsError> {
        let k = i64::from(self.ue()?);
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

/// A coded size less its cropping, which must leave 1 to 65535 pixels; `field` names the
/// cropping offsets in the error.
fn cropped(coded: u64, crop: u64, field: &'static str) -> Result<u32, SpsError> {
    match coded.checked_sub(crop) {
        Some(size @ 1..=0xffff) => Ok(size as u32),
        _ => Err(SpsError::OutOfRange { field, value: crop }),
    }
}

fn bounded(field: &'static str, value: u32, max: u32) -> Result<u32, SpsError> {
    if value > max {
        Err(SpsError::OutOfRange {
            field,
            value: value.into(),
        })
    } else {
        Ok(value)
    }
}

/// Parses an SPS NAL unit (header byte included) far enough for the picture size, profile,
/// level and frame rate (H.264 §7.3.2.1.1; VUI per Annex E.1.1 up to the timing info).
pub fn parse_sps(sps: &[u8]) -> Result<SpsInfo, SpsError> {
    let t = nal_type(sps);
    if t != nal::SPS {
        return Err(SpsError::NotSps { nal_type: t });
    }
    let rbsp = remove_emulation_prevention(&sps[1..]);
    let mut r = BitReader {
        data: &rbsp,
        pos: 0,
    };
    let profile_idc = r.bits(8)? as u8;
    let constraint_flags = r.bits(8)? as u8;
    let level_idc = r.bits(8)? as u8;
    let seq_parameter_set_id = bounded("seq_parameter_set_id", r.ue()?, 31)?;
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    let mut bit_depth_luma = 8;
    let mut bit_depth_chroma = 8;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = bounded("chroma_format_idc", r.ue()?, 3)?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.flag()?;
        }
        bit_depth_luma = 8 + bounded("bit_depth_luma_minus8", r.ue()?, 6)?;
        bit_depth_chroma = 8 + bounded("bit_depth_chroma_minus8", r.ue()?, 6)?;
        let _qpprime_y_zero_transform_bypass = r.flag()?;
        if r.flag()? {
            // seq_scaling_matrix_present_flag: skip the lists (§7.3.2.1.1.1).
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.flag()? {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256).rem_euclid(256);
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    let _log2_max_frame_num_minus4 = bounded("log2_max_frame_num_minus4", r.ue()?, 12)?;
    match r.ue()? {
        0 => {
            bounded("log2_max_pic_order_cnt_lsb_minus4", r.ue()?, 12)?;
        }
        1 => {
            let _delta_pic_order_always_zero = r.flag()?;
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            let n = bounded("num_ref_frames_in_pic_order_cnt_cycle", r.ue()?, 255)?;
            for _ in 0..n {
                r.se()?;
            }
        }
        2 => {}
        other => {
            return Err(SpsError::OutOfRange {
                field: "pic_order_cnt_type",
                value: other.into(),
            })
        }
    }
    let _max_num_ref_frames = r.ue()?;
    let _gaps_in_frame_num_allowed = r.flag()?;
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_map_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = r.flag()?;
    if !frame_mbs_only {
        let _mb_adaptive_frame_field = r.flag()?;
    }
    let _direct_8x8_inference = r.flag()?;
    let mut crop = [0u64; 4]; // left, right, top, bottom
    if r.flag()? {
        for c in &mut crop {
            *c = u64::from(r.ue()?);
        }
    }
    // §7.4.2.1.1: crop units depend on the chroma sampling.
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let (crop_x, crop_y) = match chroma_array_type {
        0 => (1, field_factor),
        1 => (2, 2 * field_factor),
        2 => (2, field_factor),
        _ => (1, field_factor),
    };
    let coded_w = width_mbs * 16;
    let coded_h = height_map_units * 16 * field_factor;
    let crop_w = crop_x * (crop[0] + crop[1]);
    let crop_h = crop_y * (crop[2] + crop[3]);
    let width = cropped(coded_w, crop_w, "frame_crop_left/right_offset")?;
    let height = cropped(coded_h, crop_h, "frame_crop_top/bottom_offset")?;

    let mut sample_aspect_ratio = None;
    let mut fps = None;
    if r.flag()? {
        // vui_parameters() (E.1.1), up to the timing info.
        if r.flag()? {
            let idc = r.bits(8)?;
            sample_aspect_ratio = match idc {
                255 => Some((r.bits(16)? as u16, r.bits(16)? as u16)),
                // Table E-1.
                1..=16 => Some(
                    [
                        (1, 1),
                        (12, 11),
                        (10, 11),
                        (16, 11),
                        (40, 33),
                        (24, 11),
                        (20, 11),
                        (32, 11),
                        (80, 33),
                        (18, 11),
                        (15, 11),
                        (64, 33),
                        (160, 99),
                        (4, 3),
                        (3, 2),
                        (2, 1),
                    ][idc as usize - 1],
                ),
                _ => None,
            };
        }
        if r.flag()? {
            let _overscan_appropriate = r.flag()?;
        }
        if r.flag()? {
            let _video_format = r.bits(3)?;
            let _full_range = r.flag()?;
            if r.flag()? {
                let _colour_primaries_transfer_matrix = r.bits(24)?;
            }
        }
        if r.flag()? {
            r.ue()?; // chroma_sample_loc_type_top_field
            r.ue()?; // chroma_sample_loc_type_bottom_field
        }
        if r.flag()? {
            let units = r.bits(32)?;
            let scale = r.bits(32)?;
            if units > 0 && scale > 0 {
                fps = Some(f64::from(scale) / (2.0 * f64::from(units)));
            }
        }
    }

    Ok(SpsInfo {
        profile_idc,
        constraint_flags,
        level_idc,
        seq_parameter_set_id,
        chroma_format_idc,
        bit_depth_luma,
        bit_depth_chroma,
        frame_mbs_only,
        width,
        height,
        sample_aspect_ratio,
        fps,
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn slice_types() {
        // first_mb_in_slice = 0 ("1"), slice_type ue: P = 0 ("1"), B = 1 ("010"),
        // I = 7 ("0001000").
        assert_eq!(slice_type(&[0x41, 0b1100_0000]), Some(0));
        assert_eq!(slice_type(&[0x01, 0b1010_0000]), Some(1));
        assert_eq!(slice_type(&[0x65, 0b1000_1000]), Some(2));
        assert_eq!(slice_type(&[0x67, 0xff]), None, "an SPS has no slice type");
        assert_eq!(slice_type(&[0x41]), None, "cut short");
        assert_eq!(
            slice_type(&[0x41, 0, 0, 0]),
            None,
            "an Exp-Golomb code too long"
        );
        assert!(has_b_slice(&[
            0,
            0,
            0,
            1,
            0x09,
            0x10,
            0,
            0,
            1,
            0x01,
            0b1010_0000
        ]));
        assert!(!has_b_slice(&[0, 0, 0, 1, 0x41, 0b1100_0000]));
    }

    #[test]
    fn avcc_record_and_samples() {
        // ffmpeg/x264's avcC for a 640x360 High stream, cut to one short SPS and PPS.
        let avcc = [
            0x01, 0x64, 0x00, 0x1e, // version 1, High, compat, level 3.0
            0xff, // 6 reserved bits, lengthSizeMinusOne = 3
            0xe1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1e, // one SPS of 4 bytes
            0x01, 0x00, 0x02, 0x68, 0xeb, // one PPS of 2 bytes
            0xfd, 0xf8, 0xf8, 0x00, // High profile extension, ignored
        ];
        let c = parse_avcc(&avcc).unwrap();
        assert_eq!(c.length_size, 4);
        assert_eq!(c.sps, vec![vec![0x67, 0x64, 0x00, 0x1e]]);
        assert_eq!(c.pps, vec![vec![0x68, 0xeb]]);
        for cut in 0..17 {
            assert!(parse_avcc(&avcc[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(parse_avcc(&[2, 0, 0, 0, 0xff]), Err(AvccError::Version(2)));
        assert_eq!(
            parse_avcc(&[1, 0, 0, 0, 0xfe, 0xe0, 0]),
            Err(AvccError::LengthSize(3))
        );

        let sample = [0, 0, 0, 2, 0x09, 0xf0, 0, 0, 0, 3, 0x65, 0x88, 0x84];
        let mut out = vec![];
        assert_eq!(length_prefixed_to_annexb(&sample, 4, &mut out), Ok(2));
        assert_eq!(
            out,
            [0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x65, 0x88, 0x84].to_vec()
        );
        assert!(split_annexb(&out).map(nal_type).eq([9u8, 5]));
        // Every cut but the one between the two NAL units leaves one unfinished.
        for cut in (1..sample.len()).filter(|&c| c != 6) {
            assert!(
                length_prefixed_to_annexb(&sample[..cut], 4, &mut vec![]).is_err(),
                "cut at {cut}"
            );
        }
        let short = [0, 2, 0x41, 0x9a, 0, 1, 0x06];
        let mut out = vec![];
        assert_eq!(length_prefixed_to_annexb(&short, 2, &mut out), Ok(2));
        assert_eq!(
            length_prefixed_to_annexb(&[0, 0, 0, 0], 4, &mut vec![]),
            Err(AvccError::EmptyNal { at: 0 })
        );
    }
    use super::*;

    #[test]
    fn keyframe_starts_are_found_in_every_packet_shape() {
        // Single NAL: SPS (0x67), IDR (0x65) yes; a P slice (0x41), PPS (0x68) no.
        assert!(payload_starts_keyframe(&[0x67, 0x42]));
        assert!(payload_starts_keyframe(&[0x65, 0x88]));
        assert!(!payload_starts_keyframe(&[0x41, 0x9a]));
        assert!(!payload_starts_keyframe(&[0x68, 0xce]));
        // STAP-A (0x78): [size 2][PPS], [size 2][SPS] -> yes; a truncated one -> no.
        assert!(payload_starts_keyframe(&[
            0x78, 0, 2, 0x68, 1, 0, 2, 0x67, 1
        ]));
        assert!(!payload_starts_keyframe(&[0x78, 0, 2, 0x68, 1]));
        assert!(!payload_starts_keyframe(&[0x78, 0, 9, 0x67]));
        // FU-A (0x7c): start bit with IDR (0x85) yes; a middle fragment (0x05) or a P slice
        // start (0x81) no.
        assert!(payload_starts_keyframe(&[0x7c, 0x85, 0]));
        assert!(!payload_starts_keyframe(&[0x7c, 0x05, 0]));
        assert!(!payload_starts_keyframe(&[0x7c, 0x81, 0]));
        assert!(!payload_starts_keyframe(&[]));
        assert!(!payload_starts_keyframe(&[0x7c]));
    }
    use crate::rtp::test_rng::Seeded;

    fn payloads(max: usize, au: &[u8]) -> Vec<Payload> {
        let mut out = Vec::new();
        Packetizer::new(max).packetize(au, &mut out);
        out
    }

    #[test]
    fn splits_annexb() {
        #[rustfmt::skip]
        let buf = [
            0x00, 0x00, 0x00, 0x01, 0x67, 0x42, // 4-byte start code, SPS
            0x00, 0x00, 0x01, 0x68, 0xce,       // 3-byte start code, PPS
            0x00, 0x00, 0x00, 0x00, 0x01,       // trailing zeros + start code
            0x65, 0x88, 0x00, 0x00, 0x03, 0x01, // IDR with emulation prevention
            0x00, 0x00, 0x01,                   // empty NAL at the end
        ];
        let nals: Vec<&[u8]> = split_annexb(&buf).collect();
        assert_eq!(
            nals,
            vec![&[0x67, 0x42][..], &[0x68, 0xce], &[0x65, 0x88, 0, 0, 3, 1]]
        );
        // Bytes before the first start code belong to no NAL unit.
        assert_eq!(split_annexb(&[0x65, 0x01]).count(), 0);
        let junk_first: Vec<&[u8]> = split_annexb(&[0x09, 0xf0, 0, 0, 1, 0x41, 7]).collect();
        assert_eq!(junk_first, vec![&[0x41, 7][..]]);
        assert_eq!(split_annexb(&[]).count(), 0);
        assert_eq!(split_annexb(&[0, 0, 0, 1, 0, 0, 1]).count(), 0);
        assert_eq!(nal_type(&[0x65]), 5);
        assert_eq!(nal_type(&[]), 0);
    }

    #[test]
    fn single_nal_stap_a_and_aud_dropped() {
        #[rustfmt::skip]
        let au = [
            0, 0, 0, 1, 0x09, 0xf0,             // AUD: dropped
            0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1e, // SPS (NRI 3)
            0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80, // PPS (NRI 3)
            0, 0, 0, 1, 0x06, 0x05, 0x01,       // SEI (NRI 0)
            0, 0, 0, 1, 0x65, 0x88, 0x84, 0x21, 0x43, 0x65, // IDR, 6 bytes
        ];
        let p = payloads(20, &au);
        #[rustfmt::skip]
        assert_eq!(p, vec![
            Payload {
                data: vec![
                    0x78,                               // F=0, NRI=3, type=24 STAP-A
                    0x00, 0x04, 0x67, 0x42, 0xc0, 0x1e, // size 4, SPS
                    0x00, 0x04, 0x68, 0xce, 0x3c, 0x80, // size 4, PPS
                    0x00, 0x03, 0x06, 0x05, 0x01,       // size 3, SEI (18 bytes: IDR won't fit)
                ],
                marker: false,
            },
            Payload { data: vec![0x65, 0x88, 0x84, 0x21, 0x43, 0x65], marker: true }, // single NAL
        ]);
    }

    #[test]
    fn fu_a_fragments() {
        let mut au = vec![0, 0, 1, 0x65]; // IDR, NRI 3
        au.extend(1..=10u8);
        let p = payloads(6, &au);
        #[rustfmt::skip]
        assert_eq!(p, vec![
            // FU indicator: F=0 NRI=3 type=28; FU header: S=1 E=0 type=5
            Payload { data: vec![0x7c, 0x85, 1, 2, 3, 4], marker: false },
            Payload { data: vec![0x7c, 0x05, 5, 6, 7, 8], marker: false },
            Payload { data: vec![0x7c, 0x45, 9, 10], marker: true }, // E=1
        ]);
        let mut d = Depacketizer::new();
        assert_eq!(d.push(1, 0, false, &p[0].data), Ok(None));
        assert_eq!(d.push(2, 0, false, &p[1].data), Ok(None));
        let au_out = d.push(3, 0, true, &p[2].data).unwrap().unwrap();
        assert_eq!(au_out.nals, vec![au[3..].to_vec()]);
        assert!(au_out.is_keyframe && au_out.complete);
        assert_eq!(au_out.to_annexb()[..5], [0, 0, 0, 1, 0x65]);
    }

    #[test]
    fn invalid_nal_types_are_dropped_by_packetizer() {
        let mut pk = Packetizer::new(100);
        let mut out = Vec::new();
        pk.packetize(
            &[0, 0, 1, 0x00, 1, 0, 0, 1, 0x7c, 1, 0, 0, 1, 0x09, 0x10],
            &mut out,
        );
        assert!(out.is_empty());
        assert_eq!(pk.dropped_nals(), 2); // types 0 and 28; the AUD is not counted
        assert_eq!(Packetizer::new(0).max_payload(), 3);
        assert_eq!(Packetizer::new(1 << 20).max_payload(), 65_535);
    }

    #[test]
    fn depacketizer_rejects_bad_payloads() {
        let cases: &[(&[u8], DepacketizeErrorKind)] = &[
            (&[], DepacketizeErrorKind::EmptyPayload),
            (
                &[0x19, 0, 0],
                DepacketizeErrorKind::UnsupportedType { nal_type: 25 },
            ), // STAP-B
            (
                &[0x1a, 0, 0],
                DepacketizeErrorKind::UnsupportedType { nal_type: 26 },
            ), // MTAP16
            (
                &[0x1b, 0, 0],
                DepacketizeErrorKind::UnsupportedType { nal_type: 27 },
            ), // MTAP24
            (
                &[0x1d, 0x85, 1],
                DepacketizeErrorKind::UnsupportedType { nal_type: 29 },
            ), // FU-B
            (
                &[0x00, 1],
                DepacketizeErrorKind::UnsupportedType { nal_type: 0 },
            ),
            (
                &[0x1e],
                DepacketizeErrorKind::UnsupportedType { nal_type: 30 },
            ),
            (
                &[0x1f],
                DepacketizeErrorKind::UnsupportedType { nal_type: 31 },
            ),
            (&[0x7c], DepacketizeErrorKind::FuTooShort { len: 1 }),
            (&[0x7c, 0x85], DepacketizeErrorKind::FuTooShort { len: 2 }),
            (
                &[0x78],
                DepacketizeErrorKind::BadStapA { offset: 1, len: 1 },
            ), // no NALs
            (
                &[0x78, 0x00],
                DepacketizeErrorKind::BadStapA { offset: 1, len: 2 },
            ), // half a size
            (
                &[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x05, 0x68], // 2nd NAL claims 5, has 1
                DepacketizeErrorKind::BadStapA { offset: 5, len: 8 },
            ),
            (
                &[0x78, 0x00, 0x00, 0x00, 0x01, 0x67], // zero-size NAL
                DepacketizeErrorKind::BadStapA { offset: 1, len: 6 },
            ),
        ];
        for (i, (payload, kind)) in cases.iter().enumerate() {
            let mut d = Depacketizer::new();
            let e = d.push(i as u16, 9, true, payload).unwrap_err();
            assert_eq!(
                e,
                DepacketizeError {
                    seq: i as u16,
                    timestamp: 9,
                    kind: kind.clone()
                }
            );
            assert!(e.to_string().contains(&format!("seq {i} ts 9")));
            assert_eq!(d.stats().rejected_packets, 1);
        }
    }

    /// Builds a NAL of `len` bytes (>= 1) of type `t` that is safe inside Annex B.
    fn nal_of(t: u8, len: usize, rng: &mut Seeded) -> Vec<u8> {
        let mut rbsp = rng.bytes(len.saturating_sub(1));
        if let Some(last) = rbsp.last_mut() {
            *last |= 0x80; // rbsp_stop_one_bit
        }
        let mut nal = vec![0x60 | t];
        nal.extend(add_emulation_prevention(&rbsp));
        nal
    }

    fn annexb(nals: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, n) in nals.iter().enumerate() {
            out.extend_from_slice(if i % 2 == 0 {
                &[0, 0, 0, 1][..]
            } else {
                &[0, 0, 1]
            });
            out.extend_from_slice(n);
        }
        out
    }

    /// Packetizes `aus` (each a list of NALs) with `max`, depacketizes, and checks that the same
    /// access units come back.
    fn round_trip(aus: &[Vec<Vec<u8>>], max: usize) {
        crate::fuzzing::h264_round_trip(aus, max);
    }

    #[test]
    fn round_trips_many_shapes_and_mtus() {
        let mut rng = Seeded::new(42);
        let mut shapes: Vec<Vec<Vec<u8>>> = vec![
            // SPS + PPS + IDR
            vec![
                nal_of(7, 12, &mut rng),
                nal_of(8, 4, &mut rng),
                nal_of(5, 3000, &mut rng),
            ],
            // SPS + PPS + SEI + IDR
            vec![
                nal_of(7, 25, &mut rng),
                nal_of(8, 5, &mut rng),
                nal_of(6, 40, &mut rng),
                nal_of(5, 900, &mut rng),
            ],
            vec![nal_of(1, 1, &mut rng)], // header-only NAL
            vec![nal_of(1, 2, &mut rng)],
            vec![], // empty access unit: nothing sent
            vec![
                nal_of(1, 15, &mut rng),
                nal_of(1, 16, &mut rng),
                nal_of(1, 17, &mut rng),
            ],
            vec![nal_of(1, 70_000, &mut rng)], // bigger than a STAP-A size field
            (0..40).map(|i| nal_of(1, 1 + i * 7, &mut rng)).collect(), // many slices
        ];
        for _ in 0..30 {
            let n = 1 + rng.below(6) as usize;
            shapes.push(
                (0..n)
                    .map(|_| {
                        let t = [1, 5, 6, 7, 8][rng.below(5) as usize];
                        let scale = [20, 300, 5000][rng.below(3) as usize];
                        let len = 1 + rng.below(scale) as usize;
                        nal_of(t, len, &mut rng)
                    })
                    .collect(),
            );
        }
        for max in [3, 4, 16, 17, 100, 500, 1188, 1200, 1400, 65_535] {
            round_trip(&shapes, max);
        }
    }

    #[test]
    fn mtu_forcing_fu_a_of_every_nal() {
        let mut rng = Seeded::new(7);
        let au: Vec<Vec<u8>> = (0..5)
            .map(|i| nal_of(1 + (i % 2) * 4, 17 + i as usize, &mut rng))
            .collect();
        let mut out = Vec::new();
        Packetizer::new(16).packetize(&annexb(&au), &mut out);
        assert!(out
            .iter()
            .all(|p| nal_type(&p.data) == nal::FU_A && p.data.len() <= 16));
        round_trip(&[au], 16);
    }

    /// Packets of an access unit: STAP-A(SPS, PPS), FU-A × 3 (IDR), single (slice).
    fn sample_au() -> (Vec<Vec<u8>>, Vec<Payload>) {
        let mut rng = Seeded::new(99);
        let au = vec![
            nal_of(7, 10, &mut rng),
            nal_of(8, 4, &mut rng),
            nal_of(5, 250, &mut rng),
            nal_of(1, 60, &mut rng),
        ];
        let mut out = Vec::new();
        Packetizer::new(100).packetize(&annexb(&au), &mut out);
        let types: Vec<u8> = out.iter().map(|p| nal_type(&p.data)).collect();
        assert_eq!(types, vec![24, 28, 28, 28, 1]);
        (au, out)
    }

    #[test]
    fn loss_inside_fu_a_drops_only_that_nal() {
        let (au, p) = sample_au();
        let mut d = Depacketizer::new();
        for (seq, pkt) in [(10u16, &p[0]), (11, &p[1]), (13, &p[3])] {
            assert_eq!(d.push(seq, 500, pkt.marker, &pkt.data), Ok(None));
        }
        // seq 12 (middle FU-A) was lost.
        let got = d.push(14, 500, true, &p[4].data).unwrap().unwrap();
        assert_eq!(got.nals, vec![au[0].clone(), au[1].clone(), au[3].clone()]);
        assert!(!got.complete);
        assert!(!got.is_keyframe); // the IDR was the NAL dropped
        let s = d.stats();
        assert_eq!(
            (s.lost_packets, s.dropped_nals, s.orphan_fragments),
            (1, 1, 1)
        );

        // The next access unit is complete again.
        let next = d.push(15, 3500, true, &au[3]).unwrap().unwrap();
        assert!(next.complete);
        assert_eq!(next.nals, vec![au[3].clone()]);
    }

    #[test]
    fn disposable_access_units_have_only_non_reference_slices() {
        let au = |nals: &[&[u8]]| annexb(&nals.iter().map(|n| n.to_vec()).collect::<Vec<_>>());
        assert!(is_disposable(&au(&[&[0x01, 0x88], &[0x01, 0x99]])));
        assert!(
            is_disposable(&au(&[&[0x06, 0x05], &[0x01, 0x88]])),
            "SEI (any NRI) aside"
        );
        assert!(!is_disposable(&au(&[&[0x01, 0x88], &[0x21, 0x99]])));
        assert!(!is_disposable(&au(&[&[0x41, 0x88]])));
        assert!(!is_disposable(&au(&[
            &[0x67, 0x42],
            &[0x68, 0xce],
            &[0x65, 0x88]
        ])));
        assert!(!is_disposable(&au(&[&[0x06, 0x05]])), "no slice at all");
        assert!(!is_disposable(&[]));
    }

    #[test]
    fn a_non_reference_picture_damaged_inside_is_droppable() {
        let mut rng = Seeded::new(7);
        // A non-reference P slice (nal_ref_idc 0) in 4 FU-As, then a reference one.
        let mut slice = nal_of(1, 300, &mut rng);
        slice[0] &= 0x1f;
        let mut packets = Vec::new();
        Packetizer::new(100).packetize(&annexb(std::slice::from_ref(&slice)), &mut packets);
        assert!(packets.len() >= 4);
        let reference = nal_of(1, 60, &mut rng);
        // Every access unit that comes out, and the next sequence number.
        let push_all = |d: &mut Depacketizer, skip: usize, seq0: u16, out: &mut Vec<AccessUnit>| {
            let mut seq = seq0;
            for (i, p) in packets.iter().enumerate() {
                if i != skip {
                    out.extend(
                        d.push(seq, 3000 * u32::from(seq0), p.marker, &p.data)
                            .expect("valid"),
                    );
                }
                seq += 1;
            }
            out.extend(d.pull());
            seq
        };

        // Complete: droppable (no other picture needs it).
        let mut d = Depacketizer::new();
        let mut got = Vec::new();
        let seq = push_all(&mut d, usize::MAX, 0, &mut got);
        assert!(got[0].complete && got[0].droppable);
        // A middle fragment lost: nothing of the picture is left, and the loss went with it:
        // the next picture is complete.
        let seq = push_all(&mut d, 1, seq, &mut got);
        assert_eq!(got.len(), 1);
        assert_eq!(d.stats().dropped_pictures, 1);
        got.extend(d.push(seq, 99_000, true, &reference).expect("valid"));
        assert!(got[1].complete && !got[1].droppable, "a reference picture");
        // Its first fragment lost: the loss may have been another picture's, so it carries
        // over to the next.
        let seq = push_all(&mut d, 0, seq + 1, &mut got);
        got.extend(d.push(seq, 199_000, true, &reference).expect("valid"));
        assert_eq!(got.len(), 3);
        assert!(!got[2].complete);
        // Two non-reference slices, the second lost: what is left is droppable.
        let mut d = Depacketizer::new();
        d.push(0, 0, false, &slice[..50]).expect("valid");
        let au = d
            .push(2, 0, true, &slice[..40])
            .expect("valid")
            .expect("access unit");
        assert!(!au.complete && au.droppable);
        // A reference picture damaged inside is never droppable, and one of which nothing
        // is left passes its loss on.
        let mut d = Depacketizer::new();
        d.push(0, 0, false, &reference[..30]).expect("valid");
        let au = d
            .push(2, 0, true, &reference[..20])
            .expect("valid")
            .expect("access unit");
        assert!(!au.complete && !au.droppable);
        let mut refs = Vec::new();
        Packetizer::new(20).packetize(&annexb(std::slice::from_ref(&reference)), &mut refs);
        d.push(3, 3000, false, &refs[0].data).expect("valid");
        assert_eq!(d.push(5, 3000, true, &refs[2].data).expect("valid"), None);
        let next = d
            .push(6, 6000, true, &slice)
            .expect("valid")
            .expect("access unit");
        assert!(!next.complete && !next.droppable);
    }

    #[test]
    fn lost_start_fragment_and_lost_marker() {
        let (au, p) = sample_au();
        let mut d = Depacketizer::new();
        // Join mid-NAL: the first packet is an FU-A continuation.
        assert_eq!(d.push(0, 0, false, &p[2].data), Ok(None));
        assert_eq!(d.push(1, 0, false, &p[3].data), Ok(None));
        let got = d.push(2, 0, true, &p[4].data).unwrap().unwrap();
        assert_eq!((got.nals.len(), got.complete), (1, false));

        // An access unit whose marker packet is lost ends at the next timestamp; the next one
        // (a single-packet AU with marker) completes in the same push and is queued.
        assert_eq!(d.push(3, 3000, false, &p[0].data), Ok(None));
        let first = d.push(5, 6000, true, &au[3]).unwrap().unwrap();
        assert_eq!(first.timestamp, 3000);
        assert_eq!(first.nals, vec![au[0].clone(), au[1].clone()]);
        assert!(!first.complete);
        let second = d.pull().unwrap();
        assert_eq!(second.timestamp, 6000);
        assert!(!second.complete); // the loss may have been its start
        assert_eq!(d.pull(), None);

        // Without loss, a timestamp change alone completes an AU (senders without markers).
        assert_eq!(d.push(6, 9000, false, &au[3]), Ok(None));
        let got = d.push(7, 12_000, false, &au[3]).unwrap().unwrap();
        assert_eq!((got.timestamp, got.complete), (9000, true));
        let flushed = d.flush().unwrap();
        assert_eq!((flushed.timestamp, flushed.complete), (12_000, true));
        assert_eq!(d.flush(), None);
    }

    #[test]
    fn duplicates_ignored_reordering_is_loss() {
        let (au, p) = sample_au();
        let mut d = Depacketizer::new();
        d.push(1, 0, false, &p[0].data).unwrap();
        d.push(1, 0, false, &p[0].data).unwrap(); // exact repeat
        d.push(2, 0, false, &p[1].data).unwrap();
        d.push(4, 0, false, &p[3].data).unwrap(); // 3 late
        d.push(3, 0, false, &p[2].data).unwrap(); // late: ignored, not repaired here
        let got = d.push(5, 0, true, &p[4].data).unwrap().unwrap();
        assert!(!got.complete);
        assert_eq!(got.nals, vec![au[0].clone(), au[1].clone(), au[3].clone()]);
        let s = d.stats();
        assert_eq!(
            (s.duplicate_packets, s.late_packets, s.lost_packets),
            (1, 1, 1)
        );

        // A jump far backwards is a sender restart, not a late packet.
        let got = d.push(40_000, 3000, true, &au[3]).unwrap().unwrap();
        assert!(!got.complete);
        assert_eq!(d.stats().resyncs, 1);
        let got = d.push(40_001, 6000, true, &au[3]).unwrap().unwrap();
        assert!(got.complete);
    }

    #[test]
    fn error_marks_access_unit_incomplete() {
        let (au, p) = sample_au();
        let mut d = Depacketizer::new();
        d.push(1, 0, false, &p[0].data).unwrap();
        assert!(d.push(2, 0, false, &[0x19, 0]).is_err()); // STAP-B in the middle
        let got = d.push(3, 0, true, &au[3]).unwrap().unwrap();
        assert!(!got.complete);
        assert_eq!(got.nals.len(), 3);
    }

    #[test]
    fn access_unit_size_is_bounded() {
        let mut d = Depacketizer::new();
        let nal = vec![0x41; 1 << 20]; // non-IDR slices of 1 MiB
        let mut seq = 0;
        let err = loop {
            match d.push(seq, 0, false, &nal) {
                Ok(None) => seq += 1,
                Ok(Some(au)) => panic!("unexpected {} NALs", au.nals.len()),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind, DepacketizeErrorKind::AccessUnitTooLarge);
        assert_eq!(usize::from(seq), MAX_ACCESS_UNIT_BYTES >> 20);
        // What follows starts a new access unit, marked incomplete.
        let au = d.push(seq + 1, 0, true, &nal[..10]).unwrap().unwrap();
        assert_eq!((au.nals.len(), au.complete), (1, false));
    }

    #[test]
    fn sprop_and_profile_level_id() {
        let sps = [0x67, 0x42, 0xc0, 0x15, 0xda, 0x05];
        let pps = [0x68, 0xce, 0x3c, 0x80];
        let s = sprop_parameter_sets(&sps, &pps);
        assert_eq!(s, "Z0LAFdoF,aM48gA==");
        assert_eq!(
            parse_sprop_parameter_sets(&s).unwrap(),
            vec![sps.to_vec(), pps.to_vec()]
        );
        assert_eq!(
            parse_sprop_parameter_sets(" Z0LAFdoF , aM48gA ,").unwrap(), // no padding, spaces
            vec![sps.to_vec(), pps.to_vec()]
        );
        let e = parse_sprop_parameter_sets("Z0LAFdoF,a*").unwrap_err();
        assert_eq!(e.index, 1);
        assert_eq!(profile_level_id(&sps).as_deref(), Some("42c015"));
        assert_eq!(profile_level_id(&sps[..3]), None);
        assert_eq!(
            fmtp(&sps, &pps),
            "packetization-mode=1;profile-level-id=42c015;sprop-parameter-sets=Z0LAFdoF,aM48gA=="
        );
    }

    #[test]
    fn emulation_prevention_round_trips() {
        let rbsp = [0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0, 4, 0, 0];
        let nal = add_emulation_prevention(&rbsp);
        assert_eq!(
            nal,
            [0, 0, 3, 0, 0, 3, 0, 1, 0, 0, 3, 2, 0, 0, 3, 3, 0, 0, 4, 0, 0, 3]
        );
        assert_eq!(remove_emulation_prevention(&nal)[..rbsp.len()], rbsp);
        assert!(!nal.windows(3).any(|w| w == [0, 0, 1]));
    }

    #[test]
    fn sprop_sps_pps_finds_each_by_type_whatever_the_key_case_and_order() {
        let p = |k: &str, v: &str| {
            vec![
                ("packetization-mode".to_owned(), "1".to_owned()),
                (k.into(), v.into()),
            ]
        };
        // PPS first, key in capitals (seen from cameras).
        let (sps, pps) = sprop_sps_pps(&p("SPROP-PARAMETER-SETS", "aM48gA==,Z0LAFdoF"));
        assert_eq!(sps.map(|n| nal_type(&n)), Some(7));
        assert_eq!(pps.map(|n| nal_type(&n)), Some(8));
        // Only an SPS; then nothing readable; then no such key.
        assert_eq!(
            sprop_sps_pps(&p("sprop-parameter-sets", "Z0LAFdoF")).1,
            None
        );
        assert_eq!(
            sprop_sps_pps(&p("sprop-parameter-sets", "Z0LAFdoF,a*")),
            (None, None)
        );
        assert_eq!(
            sprop_sps_pps(&p("profile-level-id", "42c015")),
            (None, None)
        );
    }

    fn sps_from_sprop(sdp: &str) -> Vec<u8> {
        let sd = crate::sdp::parse(sdp).unwrap();
        sprop_sps_pps(&sd.media[0].fmtp(96).unwrap()).0.unwrap()
    }

    fn sps_of(sdp: &str) -> SpsInfo {
        parse_sps(&sps_from_sprop(sdp)).unwrap()
    }

    #[test]
    fn parses_sps_from_real_peers() {
        // GStreamer x264enc, constrained baseline.
        let gst = sps_of(include_str!("../../testdata/sdp/gstreamer_h264_opus.sdp"));
        assert_eq!(
            (gst.width, gst.height, gst.profile_idc, gst.level_idc),
            (320, 240, 66, 21)
        );
        assert_eq!(gst.constraint_flags, 0xc0);
        assert_eq!(gst.fps, Some(30.0));
        // ffmpeg libx264, High, 4:2:0.
        let ff = sps_of(include_str!("../../testdata/sdp/ffmpeg_h264.sdp"));
        assert_eq!(
            (ff.width, ff.height, ff.profile_idc, ff.level_idc),
            (320, 240, 100, 20)
        );
        assert_eq!(ff.chroma_format_idc, 1);
        // ffmpeg libx264, High 4:4:4 Predictive (chroma_format_idc 3).
        let f444 = sps_of(include_str!("../../testdata/sdp/ffmpeg_h264_opus.sdp"));
        assert_eq!((f444.width, f444.height, f444.profile_idc), (320, 240, 244));
        assert_eq!(f444.chroma_format_idc, 3);
    }

    /// Groups an Annex B elementary stream into access units: non-VCL NALs go with the next
    /// slice (each test file has one slice per picture).
    fn access_units(stream: &[u8]) -> Vec<Vec<Vec<u8>>> {
        let mut aus = Vec::new();
        let mut cur = Vec::new();
        for n in split_annexb(stream) {
            cur.push(n.to_vec());
            if matches!(nal_type(n), nal::SLICE | nal::IDR) {
                aus.push(std::mem::take(&mut cur));
            }
        }
        aus
    }

    #[test]
    fn annexb_files_from_ffmpeg() {
        let files: &[(&[u8], u32, u32, f64, u8)] = &[
            (
                include_bytes!("../../testdata/h264/ffmpeg_176x144_high.h264"),
                176,
                144,
                25.0,
                100,
            ),
            (
                include_bytes!("../../testdata/h264/ffmpeg_202x94_baseline_cropped.h264"),
                202,
                94,
                30.0,
                66,
            ),
            (
                include_bytes!("../../testdata/h264/ffmpeg_1080p_one_idr.h264"),
                1920,
                1080,
                25.0,
                66,
            ),
        ];
        for &(stream, w, h, fps, profile) in files {
            let sps = split_annexb(stream)
                .find(|n| nal_type(n) == nal::SPS)
                .unwrap();
            let info = parse_sps(sps).unwrap();
            assert_eq!(
                (info.width, info.height, info.fps, info.profile_idc),
                (w, h, Some(fps), profile)
            );
            assert_eq!(info.sample_aspect_ratio, Some((1, 1)));
            let aus = access_units(stream);
            assert!(aus[0].iter().any(|n| nal_type(n) == nal::IDR));
            for max in [16, 1200] {
                round_trip(&aus, max);
            }
        }
    }

    #[test]
    fn sps_errors() {
        assert_eq!(parse_sps(&[0x68, 0]), Err(SpsError::NotSps { nal_type: 8 }));
        assert_eq!(parse_sps(&[]), Err(SpsError::NotSps { nal_type: 0 }));
        assert_eq!(
            parse_sps(&[0x67, 0x42, 0xc0]),
            Err(SpsError::Truncated { bit: 16 })
        );
        // seq_parameter_set_id with 32 leading zeros.
        assert_eq!(
            parse_sps(&[0x67, 0x42, 0, 0x1e, 0, 0, 3, 0, 0, 0x80]),
            Err(SpsError::ExpGolombTooLong { bit: 24 })
        );
        // seq_parameter_set_id = 32 (ue 000001 00001).
        assert_eq!(
            parse_sps(&[0x67, 0x42, 0, 0x1e, 0b0000_0100, 0b0010_0000]),
            Err(SpsError::OutOfRange {
                field: "seq_parameter_set_id",
                value: 32
            })
        );
        // Crop larger than the picture: 1 MB wide, crop_left = 9 (× 2).
        // bits: id=0 '1', log2_max_frame_num=0 '1', poc_type=2 '011', num_ref=0 '1',
        // gaps '0', w-1=0 '1', h-1=0 '1', frame_mbs_only '1', direct8x8 '1', crop '1',
        // left=9 '0001010', right..bottom=0 '1','1','1'
        let bits = "1 1 011 1 0 1 1 1 1 1 0001010 1 1 1 0";
        let mut bytes = vec![0x67, 0x42, 0x00, 0x0a];
        let packed: String = bits.split_whitespace().collect();
        for chunk in packed.as_bytes().chunks(8) {
            let mut s = String::from_utf8(chunk.to_vec()).unwrap();
            while s.len() < 8 {
                s.push('0');
            }
            bytes.push(u8::from_str_radix(&s, 2).unwrap());
        }
        assert_eq!(
            parse_sps(&bytes),
            Err(SpsError::OutOfRange {
                field: "frame_crop_left/right_offset",
                value: 18
            })
        );
        assert!(!SpsError::Truncated { bit: 1 }.to_string().is_empty());
    }

    /// Reads `$`-framed packets (RFC 2326 §10.12) from a capture in testdata/rtp.
    fn interleaved(buf: &[u8]) -> Vec<(u8, &[u8])> {
        let mut out = Vec::new();
        let mut rest = buf;
        while let [b'$', ch, l0, l1, tail @ ..] = rest {
            let len = usize::from(u16::from_be_bytes([*l0, *l1]));
            out.push((*ch, &tail[..len]));
            rest = &tail[len..];
        }
        assert!(rest.is_empty());
        out
    }

    #[test]
    fn depacketizes_gstreamer_capture() {
        let cap = interleaved(include_bytes!(
            "../../testdata/rtp/gstreamer_h264_opus_interleaved.bin"
        ));
        let mut d = Depacketizer::new();
        let mut aus = Vec::new();
        for (ch, pkt) in cap.iter().filter(|(ch, _)| *ch == 0) {
            assert_eq!(*ch, 0);
            let p = crate::rtp::parse(pkt).unwrap();
            assert_eq!(p.payload_type, 96);
            if let Some(au) = d
                .push(p.sequence, p.timestamp, p.marker, p.payload)
                .unwrap()
            {
                aus.push(au);
            }
        }
        assert_eq!(aus.len(), 3);
        assert!(aus.iter().all(|a| a.complete));
        assert!(aus[0].is_keyframe && !aus[1].is_keyframe);
        // rtph264pay aggregates AUD + SPS + PPS (+ SEI) into a STAP-A before the IDR.
        let types: Vec<u8> = aus[0].nals.iter().map(|n| nal_type(n)).collect();
        assert_eq!(&types[..3], &[nal::AUD, nal::SPS, nal::PPS]);
        assert_eq!(*types.last().unwrap(), nal::IDR);
        let sps = parse_sps(&aus[0].nals[1]).unwrap();
        assert_eq!((sps.width, sps.height), (320, 240));
        assert_eq!(d.stats().lost_packets, 0);
        // Re-packetize what GStreamer sent and get the same NALs (minus the AUDs we drop).
        let stripped: Vec<Vec<Vec<u8>>> = aus
            .iter()
            .map(|a| {
                a.nals
                    .iter()
                    .filter(|n| nal_type(n) != nal::AUD)
                    .cloned()
                    .collect()
            })
            .collect();
        round_trip(&stripped, 1200);
    }

    #[test]
    fn depacketizes_ffmpeg_capture() {
        let cap = interleaved(include_bytes!("../../testdata/rtp/ffmpeg_h264_udp.bin"));
        let mut d = Depacketizer::new();
        let mut aus = Vec::new();
        for (_, pkt) in cap.iter().filter(|(ch, _)| *ch == 0) {
            let p = crate::rtp::parse(pkt).unwrap();
            if let Some(au) = d
                .push(p.sequence, p.timestamp, p.marker, p.payload)
                .unwrap()
            {
                aus.push(au);
            }
        }
        // ffmpeg sends SEI as its own packet without marker, then the IDR in FU-As; B-frames
        // make timestamps non-monotonic (decode order).
        assert!(aus.len() >= 20, "{}", aus.len());
        assert!(aus[0].is_keyframe);
        assert_eq!(
            aus[0].nals.iter().map(|n| nal_type(n)).collect::<Vec<_>>(),
            vec![6, 5]
        );
        assert!(aus.iter().all(|a| a.complete));
        assert!(aus.windows(2).any(|w| w[1].timestamp < w[0].timestamp));
        assert_eq!(d.stats().lost_packets, 0);
    }

    /// Mirrors `fuzz/fuzz_targets/h264_depacketize.rs`.
    #[test]
    fn arbitrary_packets_never_panic() {
        let mut rng = Seeded::new(0xfeed_f00d);
        for _ in 0..500 {
            let packets: Vec<(u16, u32, bool, Vec<u8>)> = (0..40)
                .map(|_| {
                    let len = rng.below(40) as usize;
                    let mut payload = rng.bytes(len);
                    if let Some(b) = payload.first_mut() {
                        // Bias toward the interesting types.
                        if rng.below(2) == 0 {
                            *b = (*b & 0xe0) | [1, 5, 24, 28, 28, 25][rng.below(6) as usize];
                        }
                    }
                    let seq = rng.below(8) as u16;
                    let ts = rng.below(3) as u32;
                    (seq, ts, rng.below(3) == 0, payload)
                })
                .collect();
            crate::fuzzing::h264_depacketize(packets.iter().map(|(seq, ts, marker, payload)| {
                crate::fuzzing::H264Packet {
                    seq: *seq,
                    timestamp: *ts,
                    marker: *marker,
                    payload,
                }
            }));
        }
    }

    /// The SPS parser and sprop decoder on random bytes and on bit-flipped real SPSs.
    #[test]
    fn sps_parser_never_panics() {
        let mut rng = Seeded::new(0xabcd_ef01);
        let real = sps_from_sprop(include_str!("../../testdata/sdp/ffmpeg_h264.sdp"));
        for i in 0..20_000 {
            let mut sps = if i % 2 == 0 {
                let n = rng.below(40) as usize;
                let mut s = vec![0x67];
                s.extend(rng.bytes(n));
                s
            } else {
                let mut s = real.clone();
                for _ in 0..1 + rng.below(4) {
                    let bit = rng.below(8 * s.len() as u64 - 8) as usize + 8;
                    s[bit / 8] ^= 0x80 >> (bit % 8);
                }
                s
            };
            if i % 7 == 0 {
                sps.truncate(rng.below(sps.len() as u64) as usize + 1);
            }
            if let Ok(info) = parse_sps(&sps) {
                assert!(info.width > 0 && info.height > 0);
            }
            let text = String::from_utf8_lossy(&sps[1..]).into_owned();
            let _ = parse_sprop_parameter_sets(&text);
        }
    }

    /// Mirrors `fuzz/fuzz_targets/h264_roundtrip.rs`: arbitrary NAL lists and MTUs.
    #[test]
    fn arbitrary_nals_round_trip() {
        let mut rng = Seeded::new(0x0123_4567);
        for _ in 0..300 {
            let max = 3 + rng.below(200) as usize;
            let aus: Vec<Vec<Vec<u8>>> = (0..1 + rng.below(4))
                .map(|_| {
                    (0..rng.below(6))
                        .map(|_| {
                            let t = 1 + rng.below(23) as u8;
                            let t = if t == nal::AUD { 1 } else { t };
                            nal_of(t, 1 + rng.below(400) as usize, &mut rng)
                        })
                        .collect()
                })
                .collect();
            round_trip(&aus, max);
        }
    }
}
