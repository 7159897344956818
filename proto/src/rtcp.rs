//! RTCP compound packets (RFC 3550 §6): SR, RR, SDES, BYE and APP, parse and write; of the
//! feedback messages, the keyframe requests: Picture Loss Indication ([`Pli`], RFC 4585
//! §6.3.1) and Full Intra Request ([`Fir`], RFC 5104 §4.3.1), recognised by
//! [`RtcpPacket::requests_keyframe_of`]; and the Generic NACK ([`Nack`], RFC 4585 §6.2.1) that
//! asks for retransmissions. Other packet types (other RTPFB and PSFB formats, XR, ...)
//! are kept as [`RtcpPacket::Unknown`] so a relay can pass them on. Plus [`ReceptionStats`], the receiver-side bookkeeping behind a report block
//! (RFC 3550 A.1, A.3, A.8).
//!
//! Parsing is lenient where deployed senders differ and strict where a wrong length would make
//! us misread the following packet:
//! - a compound packet need not start with SR/RR (RFC 5506 reduced-size RTCP is accepted);
//! - the `P` bit is honoured on any packet, not only the last;
//! - bytes after the report blocks of an SR/RR (profile-specific extensions, §6.4.1) are skipped;
//! - an SDES chunk that runs to the end of the packet without its null item is accepted;
//! - every length is checked against the buffer, and errors give the byte offset of the
//!   offending packet inside the compound.
//!
//! Packets are owned (`Vec`s): RTCP is a few packets per second, so copying is cheaper than the
//! lifetime plumbing a zero-copy view would need.

use std::fmt;
use std::time::{Duration, Instant};

use crate::seq::{self, InterarrivalJitter, SeqStep};
use crate::time::{NtpTimestamp, Ssrc};

/// RTCP packet type of a sender report (RFC 3550 §6.4.1).
pub const PT_SR: u8 = 200;
/// Receiver report (RFC 3550 §6.4.2).
pub const PT_RR: u8 = 201;
/// Source description (RFC 3550 §6.5).
pub const PT_SDES: u8 = 202;
/// Goodbye (RFC 3550 §6.6).
pub const PT_BYE: u8 = 203;
/// Application-defined (RFC 3550 §6.7).
pub const PT_APP: u8 = 204;

/// Transport-layer feedback (RFC 4585 §6.1, §6.2).
pub const PT_RTPFB: u8 = 205;
/// RTPFB format of a Generic NACK (RFC 4585 §6.2.1).
pub const RTPFB_NACK: u8 = 1;
/// Payload-specific feedback (RFC 4585 §6.1).
pub const PT_PSFB: u8 = 206;
/// PSFB format of a Picture Loss Indication (RFC 4585 §6.3.1).
pub const PSFB_PLI: u8 = 1;
/// PSFB format of a Full Intra Request (RFC 5104 §4.3.1).
pub const PSFB_FIR: u8 = 4;

/// SDES item types (RFC 3550 §6.5).
pub const SDES_CNAME: u8 = 1;
pub const SDES_NAME: u8 = 2;
pub const SDES_EMAIL: u8 = 3;
pub const SDES_PHONE: u8 = 4;
pub const SDES_LOC: u8 = 5;
pub const SDES_TOOL: u8 = 6;
pub const SDES_NOTE: u8 = 7;
pub const SDES_PRIV: u8 = 8;

/// Largest count the 5-bit RC/SC field can carry; longer lists are split over several packets on
/// write.
const MAX_COUNT: usize = 31;
const REPORT_BLOCK_LEN: usize = 24;

/// One reception report block (RFC 3550 §6.4.1), in SR and RR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportBlock {
    /// The source this block reports on (SSRC_n).
    pub ssrc: Ssrc,
    /// Fraction of packets lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost, a 24-bit signed field (negative with duplicates); values outside
    /// -2^23..2^23 are clamped on write.
    pub cumulative_lost: i32,
    /// Cycle count in the high 16 bits, highest sequence number received in the low 16.
    pub extended_highest_seq: u32,
    /// Interarrival jitter in timestamp units (RFC 3550 §6.4.1, A.8).
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received from this source (0 if none).
    pub last_sr: u32,
    /// Delay since that SR was received, in 1/65536 seconds (0 if none).
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    /// Round-trip time seen by the sender of the SR this block answers (RFC 3550 §6.4.1:
    /// `A - LSR - DLSR`), given `arrival`, the time this report arrived. `None` when the block
    /// reports no SR or the result would be negative (clock skew).
    pub fn round_trip_time(&self, arrival: NtpTimestamp) -> Option<Duration> {
        if self.last_sr == 0 {
            return None;
        }
        let a = arrival.middle32();
        let rtt = a
            .checked_sub(self.last_sr)?
            .checked_sub(self.delay_since_last_sr)?;
        Some(Duration::from_nanos((u64::from(rtt) * 1_000_000_000) >> 16))
    }
}

/// Sender report (RFC 3550 §6.4.1). More than 31 report blocks are written as this SR followed
/// by RRs from the same SSRC (§6.4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderReport {
    pub ssrc: Ssrc,
    /// Wallclock time when this report was sent.
    pub ntp: NtpTimestamp,
    /// The same instant in the RTP timestamp units of this source.
    pub rtp_timestamp: u32,
    /// RTP packets sent since the start of transmission.
    pub packet_count: u32,
    /// RTP payload octets (not headers or padding) sent since the start.
    pub octet_count: u32,
    pub reports: Vec<ReportBlock>,
}

/// Receiver report (RFC 3550 §6.4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiverReport {
    /// The reporter.
    pub ssrc: Ssrc,
    pub reports: Vec<ReportBlock>,
}

/// Source description (RFC 3550 §6.5): per source, a list of `(item type, value)` items. Item
/// type 0 terminates a chunk on the wire and is skipped on write; values longer than 255 bytes
/// are truncated on write.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Sdes {
    pub chunks: Vec<SdesChunk>,
}

/// An SDES item: `(item type, value)`, e.g. `(SDES_CNAME, b"user@host")`.
pub type SdesItem = (u8, Vec<u8>);
/// An SDES chunk: a source and its items.
pub type SdesChunk = (Ssrc, Vec<SdesItem>);

impl Sdes {
    /// The one SDES every compound packet must carry (RFC 3550 §6.1): a CNAME for `ssrc`.
    pub fn cname(ssrc: Ssrc, cname: &str) -> Self {
        Sdes {
            chunks: vec![(ssrc, vec![(SDES_CNAME, cname.as_bytes().to_vec())])],
        }
    }

    /// The CNAME given for `ssrc`, if any.
    pub fn cname_of(&self, ssrc: Ssrc) -> Option<&[u8]> {
        self.chunks
            .iter()
            .filter(|(s, _)| *s == ssrc)
            .flat_map(|(_, items)| items)
            .find(|(t, _)| *t == SDES_CNAME)
            .map(|(_, v)| v.as_slice())
    }
}

/// Goodbye (RFC 3550 §6.6). A reason longer than 255 bytes is cut (at a character boundary) on
/// parse and write; invalid UTF-8 in a received reason is replaced (U+FFFD).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bye {
    pub ssrcs: Vec<Ssrc>,
    pub reason: Option<String>,
}

/// Application-defined packet (RFC 3550 §6.7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    /// The 5-bit subtype carried in the count field.
    pub subtype: u8,
    pub ssrc: Ssrc,
    /// Four ASCII characters naming the application.
    pub name: [u8; 4],
    /// Application data, padding removed.
    pub data: Vec<u8>,
}

/// Picture Loss Indication (RFC 4585 §6.3.1): PSFB, FMT 1, no FCI. `sender` lost part of a
/// picture of the stream `media` and asks its sender for a keyframe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pli {
    pub sender: Ssrc,
    pub media: Ssrc,
}

/// Full Intra Request (RFC 5104 §4.3.1): PSFB, FMT 4. The media source field of the common
/// header is unused (written as 0); each FCI entry names one stream and carries a command
/// sequence number, so a repeated request can be told from a new one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fir {
    pub sender: Ssrc,
    pub entries: Vec<FirEntry>,
}

/// One FCI entry of a [`Fir`]: `SSRC (32) | Seq nr. (8) | Reserved (24)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirEntry {
    pub ssrc: Ssrc,
    pub seq: u8,
}

/// Generic NACK (RFC 4585 §6.2.1): RTPFB, FMT 1. `sender` asks the sender of `media` to send
/// again the packets its FCI entries name. Each entry is `PID (16) | BLP (16)`: packet `PID`
/// is lost, and bit `i` of `BLP` (least significant first) says `PID + i + 1` is lost too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nack {
    pub sender: Ssrc,
    pub media: Ssrc,
    /// At least one entry (a NACK without FCI is not typed: it names nothing).
    pub entries: Vec<NackEntry>,
}

/// One FCI entry of a [`Nack`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NackEntry {
    /// Packet ID: the sequence number of a lost packet.
    pub pid: u16,
    /// Bitmask of following lost packets: bit `i` set means `pid + i + 1` is lost.
    pub blp: u16,
}

impl Nack {
    /// Entries at most in one NACK: the length field counts 65536 words, header included.
    pub const MAX_ENTRIES: usize = u16::MAX as usize - 2;

    /// A NACK for `lost` (in any order, duplicates allowed): packed into as few entries as
    /// a greedy pass over the numbers in sequence order (wrapping, from the first given) makes.
    pub fn new(sender: Ssrc, media: Ssrc, lost: &[u16]) -> Nack {
        let Some(&first) = lost.first() else {
            return Nack {
                sender,
                media,
                entries: Vec::new(),
            };
        };
        // Sort by distance from the first, so a run across 65535 -> 0 stays together.
        let mut by_offset: Vec<u16> = lost.iter().map(|s| s.wrapping_sub(first)).collect();
        by_offset.sort_unstable();
        by_offset.dedup();
        let mut entries: Vec<NackEntry> = Vec::new();
        for off in by_offset {
            let seq = first.wrapping_add(off);
            match entries.last_mut() {
                Some(e) if (1..=16).contains(&seq.wrapping_sub(e.pid)) => {
                    e.blp |= 1 << (seq.wrapping_sub(e.pid) - 1);
                }
                _ => entries.push(NackEntry { pid: seq, blp: 0 }),
            }
        }
        Nack {
            sender,
            media,
            entries,
        }
    }

    /// Every sequence number the NACK names, entry by entry, in the order written.
    pub fn lost(&self) -> impl Iterator<Item = u16> + '_ {
        self.entries.iter().flat_map(|e| {
            std::iter::once(e.pid).chain(
                (0..16u16)
                    .filter(move |i| e.blp & (1 << i) != 0)
                    .map(move |i| e.pid.wrapping_add(i + 1)),
            )
        })
    }
}

/// One packet of an RTCP compound packet (RFC 3550 §6.1).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtcpPacket {
    SenderReport(SenderReport),
    ReceiverReport(ReceiverReport),
    Sdes(Sdes),
    Bye(Bye),
    App(App),
    /// Picture Loss Indication (RFC 4585 §6.3.1).
    Pli(Pli),
    /// Full Intra Request (RFC 5104 §4.3.1).
    Fir(Fir),
    /// Generic NACK (RFC 4585 §6.2.1).
    Nack(Nack),
    /// Any other packet type (e.g. 207 XR, other RTPFB formats) or feedback format, kept so it can be
    /// forwarded.
    Unknown {
        packet_type: u8,
        /// The 5-bit count/format field.
        count: u8,
        /// The bytes after the 4-byte header, padding removed.
        payload: Vec<u8>,
    },
}

impl RtcpPacket {
    /// A Picture Loss Indication (RFC 4585 §6.3.1): `sender` lost part of a picture of the
    /// stream `media` and asks its sender for a keyframe. Send it in a compound after an RR.
    pub fn pli(sender: Ssrc, media: Ssrc) -> RtcpPacket {
        RtcpPacket::Pli(Pli { sender, media })
    }

    /// Does this packet ask the sender of `media` for a keyframe: a PLI naming `media`, or a
    /// FIR with an entry for it (RFC 5104 §4.3.1: the media SSRC field is unused, each FCI
    /// entry names one stream)?
    pub fn requests_keyframe_of(&self, media: Ssrc) -> bool {
        match self {
            RtcpPacket::Pli(p) => p.media == media,
            RtcpPacket::Fir(f) => f.entries.iter().any(|e| e.ssrc == media),
            _ => false,
        }
    }

    /// The packet type byte this packet is written with.
    pub fn packet_type(&self) -> u8 {
        match self {
            RtcpPacket::SenderReport(_) => PT_SR,
            RtcpPacket::ReceiverReport(_) => PT_RR,
            RtcpPacket::Sdes(_) => PT_SDES,
            RtcpPacket::Bye(_) => PT_BYE,
            RtcpPacket::App(_) => PT_APP,
            RtcpPacket::Pli(_) | RtcpPacket::Fir(_) => PT_PSFB,
            RtcpPacket::Nack(_) => PT_RTPFB,
            RtcpPacket::Unknown { packet_type, .. } => *packet_type,
        }
    }
}

/// Why a buffer is not a valid RTCP compound packet. `offset` is the byte offset, inside the
/// compound, of the packet header at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtcpError {
    /// The buffer is empty.
    Empty,
    /// Fewer than 4 bytes left for a packet header.
    TooShort { offset: usize, len: usize },
    /// `V` is not 2.
    BadVersion { offset: usize, version: u8 },
    /// The length field says the packet is `length` bytes but only `available` remain.
    LengthOverrun {
        offset: usize,
        length: usize,
        available: usize,
    },
    /// `P` is set but the padding count is 0 or larger than the packet body.
    BadPadding {
        offset: usize,
        padding: u8,
        body_len: usize,
    },
    /// The packet body is too short for what its header announces (report blocks, SDES chunks,
    /// BYE sources, reason text).
    Truncated {
        offset: usize,
        packet_type: u8,
        needed: usize,
        available: usize,
    },
}

impl fmt::Display for RtcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtcpError::Empty => write!(f, "empty RTCP packet"),
            RtcpError::TooShort { offset, len } => write!(
                f,
                "RTCP packet at byte {offset}: {len} bytes left, header needs 4"
            ),
            RtcpError::BadVersion { offset, version } => {
                write!(f, "RTCP packet at byte {offset}: version {version} (expected 2)")
            }
            RtcpError::LengthOverrun {
                offset,
                length,
                available,
            } => write!(
                f,
                "RTCP packet at byte {offset}: length field says {length} bytes, {available} remain"
            ),
            RtcpError::BadPadding {
                offset,
                padding,
                body_len,
            } => write!(
                f,
                "RTCP packet at byte {offset}: padding count {padding} invalid for a {body_len}-byte body"
            ),
            RtcpError::Truncated {
                offset,
                packet_type,
                needed,
                available,
            } => write!(
                f,
                "RTCP packet type {packet_type} at byte {offset}: body needs {needed} bytes, has {available}"
            ),
        }
    }
}

impl std::error::Error for RtcpError {}

fn be32(b: &[u8], at: usize) -> u32 {
    // Callers check bounds first; the fallback keeps this panic-free regardless.
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Parses an RTCP compound packet (RFC 3550 §6.1) into its packets. Never panics.
pub fn parse_compound(buf: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    if buf.is_empty() {
        return Err(RtcpError::Empty);
    }
    let mut packets = Vec::new();
    let mut offset = 0;
    while offset < buf.len() {
        let rest = &buf[offset..];
        let [b0, pt, l0, l1, ..] = *rest else {
            return Err(RtcpError::TooShort {
                offset,
                len: rest.len(),
            });
        };
        let version = b0 >> 6;
        if version != 2 {
            return Err(RtcpError::BadVersion { offset, version });
        }
        let length = (usize::from(u16::from_be_bytes([l0, l1])) + 1) * 4;
        let Some(packet) = rest.get(..length) else {
            return Err(RtcpError::LengthOverrun {
                offset,
                length,
                available: rest.len(),
            });
        };
        let mut body = &packet[4..];
        if b0 & 0x20 != 0 {
            let padding = body.last().copied().unwrap_or(0);
            if padding == 0 || usize::from(padding) > body.len() {
                return Err(RtcpError::BadPadding {
                    offset,
                    padding,
                    body_len: body.len(),
                });
            }
            body = &body[..body.len() - usize::from(padding)];
        }
        packets.push(parse_one(offset, b0 & 0x1f, pt, body)?);
        offset += length;
    }
    Ok(packets)
}

fn parse_one(offset: usize, count: u8, pt: u8, body: &[u8]) -> Result<RtcpPacket, RtcpError> {
    let truncated = |needed: usize| RtcpError::Truncated {
        offset,
        packet_type: pt,
        needed,
        available: body.len(),
    };
    let count = usize::from(count);
    Ok(match pt {
        PT_SR => {
            let needed = 24 + count * REPORT_BLOCK_LEN;
            if body.len() < needed {
                return Err(truncated(needed));
            }
            RtcpPacket::SenderReport(SenderReport {
                ssrc: Ssrc(be32(body, 0)),
                ntp: NtpTimestamp((u64::from(be32(body, 4)) << 32) | u64::from(be32(body, 8))),
                rtp_timestamp: be32(body, 12),
                packet_count: be32(body, 16),
                octet_count: be32(body, 20),
                reports: parse_blocks(&body[24..needed]),
            })
        }
        PT_RR => {
            let needed = 4 + count * REPORT_BLOCK_LEN;
            if body.len() < needed {
                return Err(truncated(needed));
            }
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: Ssrc(be32(body, 0)),
                reports: parse_blocks(&body[4..needed]),
            })
        }
        PT_SDES => {
            let mut chunks = Vec::with_capacity(count);
            let mut pos = 0;
            for _ in 0..count {
                if body.len() < pos + 4 {
                    return Err(truncated(pos + 4));
                }
                let ssrc = Ssrc(be32(body, pos));
                pos += 4;
                let mut items = Vec::new();
                // Lenient: a chunk may end with the packet instead of a null item.
                while let Some(&item_type) = body.get(pos) {
                    if item_type == 0 {
                        pos += 1;
                        break;
                    }
                    let Some(&len) = body.get(pos + 1) else {
                        return Err(truncated(pos + 2));
                    };
                    let end = pos + 2 + usize::from(len);
                    let Some(value) = body.get(pos + 2..end) else {
                        return Err(truncated(end));
                    };
                    items.push((item_type, value.to_vec()));
                    pos = end;
                }
                // Chunks start on 32-bit boundaries (the null item is followed by 0-3 more nulls).
                pos = pos.next_multiple_of(4).min(body.len());
                chunks.push((ssrc, items));
            }
            RtcpPacket::Sdes(Sdes { chunks })
        }
        PT_BYE => {
            let needed = 4 * count;
            if body.len() < needed {
                return Err(truncated(needed));
            }
            let ssrcs = (0..count).map(|i| Ssrc(be32(body, 4 * i))).collect();
            let reason = match body.get(needed) {
                None => None,
                Some(&len) => {
                    let end = needed + 1 + usize::from(len);
                    let text = body.get(needed + 1..end).ok_or_else(|| truncated(end))?;
                    Some(bounded_reason(&String::from_utf8_lossy(text)))
                }
            };
            RtcpPacket::Bye(Bye { ssrcs, reason })
        }
        PT_APP => {
            if body.len() < 8 {
                return Err(truncated(8));
            }
            RtcpPacket::App(App {
                subtype: count as u8,
                ssrc: Ssrc(be32(body, 0)),
                name: [body[4], body[5], body[6], body[7]],
                data: body[8..].to_vec(),
            })
        }
        // A PLI has no FCI (RFC 4585 §6.3.1); anything else under FMT 1 is kept raw.
        PT_PSFB if count == usize::from(PSFB_PLI) && body.len() == 8 => RtcpPacket::Pli(Pli {
            sender: Ssrc(be32(body, 0)),
            media: Ssrc(be32(body, 4)),
        }),
        // A FIR is typed only in the form RFC 5104 §4.3.1 prescribes (media field and reserved
        // bits zero, whole entries), so that writing it back gives the same bytes.
        PT_PSFB
            if count == usize::from(PSFB_FIR)
                && body.len() >= 8
                && be32(body, 4) == 0
                && (body.len() - 8).is_multiple_of(8)
                && body[8..].chunks_exact(8).all(|e| e[5..] == [0, 0, 0]) =>
        {
            RtcpPacket::Fir(Fir {
                sender: Ssrc(be32(body, 0)),
                entries: body[8..]
                    .chunks_exact(8)
                    .map(|e| FirEntry {
                        ssrc: Ssrc(be32(e, 0)),
                        seq: e[4],
                    })
                    .collect(),
            })
        }
        // A generic NACK with at least one whole FCI entry (RFC 4585 §6.2.1).
        PT_RTPFB
            if count == usize::from(RTPFB_NACK)
                && body.len() >= 12
                && body.len().is_multiple_of(4) =>
        {
            RtcpPacket::Nack(Nack {
                sender: Ssrc(be32(body, 0)),
                media: Ssrc(be32(body, 4)),
                entries: body[8..]
                    .chunks_exact(4)
                    .map(|e| NackEntry {
                        pid: u16::from_be_bytes([e[0], e[1]]),
                        blp: u16::from_be_bytes([e[2], e[3]]),
                    })
                    .collect(),
            })
        }
        _ => RtcpPacket::Unknown {
            packet_type: pt,
            count: count as u8,
            payload: body.to_vec(),
        },
    })
}

/// `reason` cut to at most 255 bytes at a character boundary (the wire length is one byte).
fn bounded_reason(reason: &str) -> String {
    let mut end = reason.len().min(255);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

fn parse_blocks(b: &[u8]) -> Vec<ReportBlock> {
    b.chunks_exact(REPORT_BLOCK_LEN)
        .map(|r| {
            // 24-bit two's complement, sign-extended through the top byte.
            let lost = i32::from_be_bytes([r[5], r[6], r[7], 0]) >> 8;
            ReportBlock {
                ssrc: Ssrc(be32(r, 0)),
                fraction_lost: r[4],
                cumulative_lost: lost,
                extended_highest_seq: be32(r, 8),
                jitter: be32(r, 12),
                last_sr: be32(r, 16),
                delay_since_last_sr: be32(r, 20),
            }
        })
        .collect()
}

/// Appends the packets as one compound packet (RFC 3550 §6.1) to `out`. Lists longer than the
/// 5-bit count allows are split over several packets: extra SR report blocks go into RRs from
/// the same SSRC, SDES chunks and BYE sources into further SDES/BYE packets (the BYE reason goes
/// with the last). Packets whose body is not a multiple of 4 bytes (APP data, unknown payloads)
/// are padded and get the `P` bit.
pub fn write_compound(packets: &[RtcpPacket], out: &mut Vec<u8>) {
    for p in packets {
        match p {
            RtcpPacket::SenderReport(sr) => {
                let mut blocks = sr.reports.chunks(MAX_COUNT);
                let first = blocks.next().unwrap_or(&[]);
                let start = begin(out, first.len(), PT_SR);
                out.extend_from_slice(&sr.ssrc.0.to_be_bytes());
                out.extend_from_slice(&sr.ntp.0.to_be_bytes());
                out.extend_from_slice(&sr.rtp_timestamp.to_be_bytes());
                out.extend_from_slice(&sr.packet_count.to_be_bytes());
                out.extend_from_slice(&sr.octet_count.to_be_bytes());
                write_blocks(first, out);
                finish(out, start);
                for more in blocks {
                    write_rr(sr.ssrc, more, out);
                }
            }
            RtcpPacket::ReceiverReport(rr) => {
                if rr.reports.is_empty() {
                    write_rr(rr.ssrc, &[], out);
                }
                for blocks in rr.reports.chunks(MAX_COUNT) {
                    write_rr(rr.ssrc, blocks, out);
                }
            }
            RtcpPacket::Sdes(sdes) => {
                if sdes.chunks.is_empty() {
                    let start = begin(out, 0, PT_SDES);
                    finish(out, start);
                }
                for group in sdes.chunks.chunks(MAX_COUNT) {
                    let start = begin(out, group.len(), PT_SDES);
                    for (ssrc, items) in group {
                        let chunk_start = out.len();
                        out.extend_from_slice(&ssrc.0.to_be_bytes());
                        for (t, v) in items.iter().filter(|(t, _)| *t != 0) {
                            let v = &v[..v.len().min(255)];
                            out.push(*t);
                            out.push(v.len() as u8);
                            out.extend_from_slice(v);
                        }
                        // Null item, then pad the chunk to a 32-bit boundary with more nulls.
                        out.push(0);
                        let pad = (out.len() - chunk_start).next_multiple_of(4);
                        out.resize(chunk_start + pad, 0);
                    }
                    finish(out, start);
                }
            }
            RtcpPacket::Bye(bye) => {
                let groups: Vec<&[Ssrc]> = if bye.ssrcs.is_empty() {
                    vec![&[]]
                } else {
                    bye.ssrcs.chunks(MAX_COUNT).collect()
                };
                let last = groups.len() - 1;
                for (i, group) in groups.into_iter().enumerate() {
                    let start = begin(out, group.len(), PT_BYE);
                    for s in group {
                        out.extend_from_slice(&s.0.to_be_bytes());
                    }
                    if let (true, Some(reason)) = (i == last, &bye.reason) {
                        let reason = bounded_reason(reason);
                        let text_start = out.len();
                        out.push(reason.len() as u8);
                        out.extend_from_slice(reason.as_bytes());
                        let pad = (out.len() - text_start).next_multiple_of(4);
                        out.resize(text_start + pad, 0);
                    }
                    finish(out, start);
                }
            }
            RtcpPacket::App(app) => {
                let start = begin(out, usize::from(app.subtype & 0x1f), PT_APP);
                out.extend_from_slice(&app.ssrc.0.to_be_bytes());
                out.extend_from_slice(&app.name);
                out.extend_from_slice(&app.data);
                finish_padded(out, start);
            }
            RtcpPacket::Pli(p) => {
                let start = begin(out, usize::from(PSFB_PLI), PT_PSFB);
                out.extend_from_slice(&p.sender.0.to_be_bytes());
                out.extend_from_slice(&p.media.0.to_be_bytes());
                finish(out, start);
            }
            RtcpPacket::Fir(f) => {
                let start = begin(out, usize::from(PSFB_FIR), PT_PSFB);
                out.extend_from_slice(&f.sender.0.to_be_bytes());
                out.extend_from_slice(&[0; 4]);
                // The length field counts at most 65536 words, header included.
                for e in f.entries.iter().take((usize::from(u16::MAX) - 2) / 2) {
                    out.extend_from_slice(&e.ssrc.0.to_be_bytes());
                    out.extend_from_slice(&[e.seq, 0, 0, 0]);
                }
                finish(out, start);
            }
            RtcpPacket::Nack(n) => {
                let start = begin(out, usize::from(RTPFB_NACK), PT_RTPFB);
                out.extend_from_slice(&n.sender.0.to_be_bytes());
                out.extend_from_slice(&n.media.0.to_be_bytes());
                for e in n.entries.iter().take(Nack::MAX_ENTRIES) {
                    out.extend_from_slice(&e.pid.to_be_bytes());
                    out.extend_from_slice(&e.blp.to_be_bytes());
                }
                finish(out, start);
            }
            RtcpPacket::Unknown {
                packet_type,
                count,
                payload,
            } => {
                let start = begin(out, usize::from(count & 0x1f), *packet_type);
                // The length field counts at most 65536 words, header included.
                let max = (usize::from(u16::MAX) + 1) * 4 - 4 - 4;
                out.extend_from_slice(&payload[..payload.len().min(max)]);
                finish_padded(out, start);
            }
        }
    }
}

fn write_rr(ssrc: Ssrc, blocks: &[ReportBlock], out: &mut Vec<u8>) {
    let start = begin(out, blocks.len(), PT_RR);
    out.extend_from_slice(&ssrc.0.to_be_bytes());
    write_blocks(blocks, out);
    finish(out, start);
}

fn write_blocks(blocks: &[ReportBlock], out: &mut Vec<u8>) {
    for b in blocks {
        let lost = b.cumulative_lost.clamp(-(1 << 23), (1 << 23) - 1);
        out.extend_from_slice(&b.ssrc.0.to_be_bytes());
        out.push(b.fraction_lost);
        out.extend_from_slice(&lost.to_be_bytes()[1..]);
        out.extend_from_slice(&b.extended_highest_seq.to_be_bytes());
        out.extend_from_slice(&b.jitter.to_be_bytes());
        out.extend_from_slice(&b.last_sr.to_be_bytes());
        out.extend_from_slice(&b.delay_since_last_sr.to_be_bytes());
    }
}

/// Writes a header with a placeholder length; returns where the packet starts.
fn begin(out: &mut Vec<u8>, count: usize, pt: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0x80 | (count as u8 & 0x1f), pt, 0, 0]);
    start
}

/// Fills in the length of a packet whose body is already a multiple of 4 bytes.
fn finish(out: &mut [u8], start: usize) {
    let words = ((out.len() - start) / 4).saturating_sub(1).min(0xffff) as u16;
    out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
}

/// Pads the packet to a multiple of 4 bytes with the `P` mechanism if needed, then
/// fills in its length.
fn finish_padded(out: &mut Vec<u8>, start: usize) {
    let len = out.len() - start;
    let pad = len.next_multiple_of(4) - len;
    if pad > 0 {
        out.resize(out.len() + pad - 1, 0);
        out.push(pad as u8);
        out[start] |= 0x20;
    }
    finish(out, start);
}

const RTP_SEQ_MOD: u64 = 1 << 16;

/// Receiver-side statistics for one source (RFC 3550 A.1 sequence validation, A.3 loss, A.8
/// interarrival jitter), from which a [`ReportBlock`] is made.
///
/// Sans-IO: arrival times are `Instant`s passed in by the caller; they are converted to the
/// source's clock units relative to the first packet's arrival, so no epoch is needed.
///
/// Differences from A.1: there is no probation: the first packet is accepted at once, because
/// an RTSP client learns the source from SETUP and a late first report helps no one. The rest of
/// A.1 is kept: a forward jump of less than 3000 is loss, a backward jump of less than 100 is a
/// late (reordered or duplicated) packet that is counted as received, anything else is a
/// possible restart that is accepted once the next packet confirms it.
#[derive(Clone, Debug)]
pub struct ReceptionStats {
    ssrc: Ssrc,
    initialized: bool,
    max_seq: u16,
    /// Shifted count of sequence number cycles (a multiple of 2^16).
    cycles: u64,
    base_seq: u64,
    /// The sequence number after a suspicious jump; confirms a restart if it arrives next.
    bad_seq: Option<u16>,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    jitter: InterarrivalJitter,
    last_sr: Option<(u32, Instant)>,
}

impl ReceptionStats {
    /// Statistics for `ssrc`, whose RTP timestamps tick at `clock_rate` Hz.
    pub fn new(ssrc: Ssrc, clock_rate: u32) -> Self {
        ReceptionStats {
            ssrc,
            initialized: false,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: None,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter: InterarrivalJitter::new(clock_rate),
            last_sr: None,
        }
    }

    pub fn ssrc(&self) -> Ssrc {
        self.ssrc
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u64::from(seq);
        self.max_seq = seq;
        self.bad_seq = None;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
        self.jitter.restart();
    }

    /// Records an RTP packet from this source that arrived at `arrival`. Returns whether it was
    /// counted: `false` for the first packet after a large sequence jump (RFC 3550 A.1
    /// `update_seq`), which is counted only when the next one confirms the new numbering.
    pub fn on_packet(&mut self, seq: u16, rtp_timestamp: u32, arrival: Instant) -> bool {
        if !self.initialized {
            self.initialized = true;
            self.init_seq(seq);
        } else {
            match seq::classify(self.max_seq, seq) {
                SeqStep::Ahead { .. } => {
                    // In order, with a permissible gap.
                    if seq < self.max_seq {
                        self.cycles += RTP_SEQ_MOD;
                    }
                    self.max_seq = seq;
                }
                SeqStep::Jump => {
                    // A very large jump: the source restarted, or a stray packet.
                    if self.bad_seq == Some(seq) {
                        self.init_seq(seq);
                    } else {
                        self.bad_seq = Some(seq.wrapping_add(1));
                        return false;
                    }
                }
                SeqStep::Behind { .. } => {}
            }
            // Otherwise a duplicate or a reordered packet: counted, max unchanged.
        }
        self.received += 1;
        self.jitter.update(rtp_timestamp, arrival);
        true
    }

    /// Records a sender report from this source that arrived at `arrival`, for the LSR/DLSR
    /// fields of the next report block. Reports from another SSRC are ignored.
    pub fn on_sender_report(&mut self, sr: &SenderReport, arrival: Instant) {
        if sr.ssrc == self.ssrc {
            self.last_sr = Some((sr.ntp.middle32(), arrival));
        }
    }

    /// Extended highest sequence number received: cycles in the high 16 bits (RFC 3550 A.1).
    pub fn extended_highest_seq(&self) -> u64 {
        self.cycles + u64::from(self.max_seq)
    }

    /// Packets expected: extended highest - base + 1 (RFC 3550 A.3); 0 before any packet.
    pub fn packets_expected(&self) -> u64 {
        if !self.initialized {
            return 0;
        }
        (self.extended_highest_seq() + 1).saturating_sub(self.base_seq)
    }

    /// Packets received (duplicates included, as in RFC 3550 A.3).
    pub fn packets_received(&self) -> u64 {
        self.received
    }

    /// Cumulative packets lost: expected - received (RFC 3550 A.3); negative with duplicates.
    pub fn packets_lost(&self) -> i64 {
        self.packets_expected() as i64 - self.received as i64
    }

    /// Interarrival jitter in seconds.
    pub fn jitter_secs(&self) -> f64 {
        self.jitter.secs()
    }

    /// The report block for this source as of `now`, and the start of a new reporting interval
    /// for `fraction_lost` (RFC 3550 A.3).
    pub fn report_block(&mut self, now: Instant) -> ReportBlock {
        let expected = self.packets_expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            None => (0, 0),
            Some((lsr, at)) => {
                let d = now.saturating_duration_since(at);
                let units = (d.as_nanos() << 16) / 1_000_000_000;
                (lsr, u32::try_from(units).unwrap_or(u32::MAX))
            }
        };
        ReportBlock {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: self.packets_lost().clamp(-(1 << 23), (1 << 23) - 1) as i32,
            extended_highest_seq: self.extended_highest_seq() as u32,
            jitter: self.jitter.ticks().round() as u32,
            last_sr,
            delay_since_last_sr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::test_rng::Seeded;

    /// An SR and SDES as sent by GStreamer's rtpbin (captured from gst-rtsp-server, see
    /// testdata/rtp/README.md), annotated.
    #[rustfmt::skip]
    const GSTREAMER_SR_SDES: &[u8] = &[
        0x80, 0xc8, 0x00, 0x06, // v=2, p=0, count=0, SR, length=6 words
        0x1a, 0x3d, 0x15, 0x19, // sender ssrc
        0xee, 0xad, 0x98, 0x58, // ntp seconds
        0x4f, 0x6c, 0x7a, 0x7c, // ntp fraction
        0xfc, 0x6b, 0xb3, 0x1b, // rtp timestamp
        0x00, 0x00, 0x01, 0x26, // packet count=294
        0x00, 0x04, 0x4a, 0x7d, // octet count=281213
        0x81, 0xca, 0x00, 0x0c, // v=2, p=0, count=1, SDES, length=12 words
        0x1a, 0x3d, 0x15, 0x19, // chunk ssrc
        0x01, 0x1c,             // CNAME, 28 bytes
        b'u', b's', b'e', b'r', b'1', b'5', b'8', b'4', b'1', b'0', b'7', b'2', b'6', b'5',
        b'@', b'h', b'o', b's', b't', b'-', b'1', b'5', b'1', b'a', b'd', b'8', b'5', b'0',
        0x06, 0x09,             // TOOL, 9 bytes
        b'G', b'S', b't', b'r', b'e', b'a', b'm', b'e', b'r',
        0x00, 0x00, 0x00,       // null item + pad to 32 bits
    ];

    #[test]
    fn parses_gstreamer_sr_and_sdes() {
        let p = parse_compound(GSTREAMER_SR_SDES).unwrap();
        assert_eq!(
            p,
            vec![
                RtcpPacket::SenderReport(SenderReport {
                    ssrc: Ssrc(0x1a3d_1519),
                    ntp: NtpTimestamp(0xeead_9858_4f6c_7a7c),
                    rtp_timestamp: 0xfc6b_b31b,
                    packet_count: 294,
                    octet_count: 281_213,
                    reports: vec![],
                }),
                RtcpPacket::Sdes(Sdes {
                    chunks: vec![(
                        Ssrc(0x1a3d_1519),
                        vec![
                            (SDES_CNAME, b"user1584107265@host-151ad850".to_vec()),
                            (SDES_TOOL, b"GStreamer".to_vec()),
                        ]
                    )]
                }),
            ]
        );
        let mut out = Vec::new();
        write_compound(&p, &mut out);
        assert_eq!(out, GSTREAMER_SR_SDES);
    }

    #[test]
    fn rr_with_blocks_round_trips_byte_exact() {
        #[rustfmt::skip]
        let buf = [
            0x82, 0xc9, 0x00, 0x0d, // v=2, p=0, count=2, RR, length=13 words
            0x00, 0x00, 0x00, 0x01, // reporter ssrc
            // block 1
            0x00, 0x00, 0x00, 0x0a, // ssrc_1
            0x0c,                   // fraction lost = 12/256
            0xff, 0xff, 0xfe,       // cumulative lost = -2 (24-bit)
            0x00, 0x01, 0x00, 0x05, // 1 cycle, highest seq 5
            0x00, 0x00, 0x03, 0x84, // jitter = 900
            0x12, 0x34, 0x56, 0x78, // LSR
            0x00, 0x01, 0x80, 0x00, // DLSR = 1.5 s
            // block 2
            0x00, 0x00, 0x00, 0x0b,
            0x00,
            0x7f, 0xff, 0xff,       // cumulative lost = 2^23 - 1
            0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,
        ];
        let p = parse_compound(&buf).unwrap();
        let RtcpPacket::ReceiverReport(rr) = &p[0] else {
            panic!("{p:?}")
        };
        assert_eq!(rr.ssrc, Ssrc(1));
        assert_eq!(
            rr.reports[0],
            ReportBlock {
                ssrc: Ssrc(10),
                fraction_lost: 12,
                cumulative_lost: -2,
                extended_highest_seq: 0x0001_0005,
                jitter: 900,
                last_sr: 0x1234_5678,
                delay_since_last_sr: 0x0001_8000,
            }
        );
        assert_eq!(rr.reports[1].cumulative_lost, (1 << 23) - 1);
        let mut out = Vec::new();
        write_compound(&p, &mut out);
        assert_eq!(out, buf);
    }

    #[test]
    fn bye_app_unknown_and_padding() {
        #[rustfmt::skip]
        let buf = [
            0x81, 0xcb, 0x00, 0x03, // v=2, p=0, count=1, BYE, length=3
            0x00, 0x00, 0x00, 0x07, // ssrc
            0x04, b'd', b'o', b'n', // reason length 4, "done"
            b'e', 0x00, 0x00, 0x00, // + pad
            0xa3, 0xcc, 0x00, 0x03, // v=2, p=1, subtype=3, APP, length=3
            0x00, 0x00, 0x00, 0x07, // ssrc
            b'L', b'C', b'S', b'T', // name
            0xaa, 0xbb, 0x00, 0x02, // data 0xaa 0xbb, 2 bytes padding
            0x8f, 0xce, 0x00, 0x01, // v=2, p=0, fmt=15, PSFB (206), length=1
            0x01, 0x02, 0x03, 0x04, // payload kept raw
        ];
        let p = parse_compound(&buf).unwrap();
        assert_eq!(
            p,
            vec![
                RtcpPacket::Bye(Bye {
                    ssrcs: vec![Ssrc(7)],
                    reason: Some("done".into())
                }),
                RtcpPacket::App(App {
                    subtype: 3,
                    ssrc: Ssrc(7),
                    name: *b"LCST",
                    data: vec![0xaa, 0xbb],
                }),
                RtcpPacket::Unknown {
                    packet_type: 206,
                    count: 15,
                    payload: vec![1, 2, 3, 4]
                },
            ]
        );
        assert_eq!(p[2].packet_type(), 206);
        assert!(!p[2].requests_keyframe_of(Ssrc(0x0506_0708)));
        let mut out = Vec::new();
        write_compound(&p, &mut out);
        assert_eq!(out, buf);
    }

    #[test]
    fn keyframe_requests_pli_and_fir() {
        // A PLI as Chrome and GStreamer send it (RFC 4585 §6.1 common format, FMT 1, no FCI).
        #[rustfmt::skip]
        let pli = [
            0x81, 0xce, 0x00, 0x02, // v=2, fmt=1, PSFB, length=2
            0x00, 0x00, 0x00, 0x01, // sender SSRC
            0xde, 0xad, 0xbe, 0xef, // media source SSRC
        ];
        let p = parse_compound(&pli).unwrap();
        assert!(p[0].requests_keyframe_of(Ssrc(0xdead_beef)));
        assert!(
            !p[0].requests_keyframe_of(Ssrc(0xdead_bee0)),
            "another stream's PLI"
        );
        assert_eq!(p[0], RtcpPacket::pli(Ssrc(1), Ssrc(0xdead_beef)));
        assert_eq!(p[0].packet_type(), PT_PSFB);
        let mut out = Vec::new();
        write_compound(&p, &mut out);
        assert_eq!(out, pli);

        // FIR (RFC 5104 §4.3.1): media SSRC 0, one FCI entry per stream (SSRC, seq nr, 3 reserved).
        #[rustfmt::skip]
        let fir = [
            0x84, 0xce, 0x00, 0x06, // v=2, fmt=4, PSFB, length=6
            0x00, 0x00, 0x00, 0x01, // sender SSRC
            0x00, 0x00, 0x00, 0x00, // media source SSRC: unused
            0x00, 0x00, 0x00, 0x09, 0x05, 0, 0, 0, // entry: SSRC 9, seq 5
            0xde, 0xad, 0xbe, 0xef, 0x06, 0, 0, 0, // entry: SSRC 0xdeadbeef, seq 6
        ];
        let p = parse_compound(&fir).unwrap();
        assert_eq!(
            p,
            vec![RtcpPacket::Fir(Fir {
                sender: Ssrc(1),
                entries: vec![
                    FirEntry {
                        ssrc: Ssrc(9),
                        seq: 5
                    },
                    FirEntry {
                        ssrc: Ssrc(0xdead_beef),
                        seq: 6
                    },
                ],
            })]
        );
        assert_eq!(p[0].packet_type(), PT_PSFB);
        let mut out = Vec::new();
        write_compound(&p, &mut out);
        assert_eq!(out, fir);
        assert!(p[0].requests_keyframe_of(Ssrc(0xdead_beef)));
        assert!(p[0].requests_keyframe_of(Ssrc(9)));
        assert!(
            !p[0].requests_keyframe_of(Ssrc(0)),
            "the unused media field is no request"
        );

        // Truncated or other feedback: no request, no panic.
        let psfb = |count, len| RtcpPacket::Unknown {
            packet_type: PT_PSFB,
            count,
            payload: vec![0; len],
        };
        for count in [PSFB_PLI, PSFB_FIR, 2, 15] {
            for len in [0, 4, 7] {
                assert!(
                    !psfb(count, len).requests_keyframe_of(Ssrc(0)),
                    "{count} {len}"
                );
            }
        }
        assert!(
            !psfb(PSFB_FIR, 12).requests_keyframe_of(Ssrc(0)),
            "half a FIR entry"
        );
        // Feedback that is not in the prescribed form stays raw, byte for byte.
        #[rustfmt::skip]
        let odd = [
            0x81, 0xce, 0x00, 0x03, // v=2, fmt=1 (PLI), PSFB, length=3: a PLI with 4 bytes of FCI
            0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x03,
            0x84, 0xce, 0x00, 0x04, // v=2, fmt=4 (FIR), PSFB, length=4: reserved bits set
            0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x09, 0x05, 0x00, 0x00, 0x01,
        ];
        let p = parse_compound(&odd).unwrap();
        assert!(
            p.iter().all(|p| matches!(p, RtcpPacket::Unknown { .. })),
            "{p:?}"
        );
        let mut out = Vec::new();
        write_compound(&p, &mut out);
        assert_eq!(out, odd);
        assert!(
            !psfb(2, 12).requests_keyframe_of(Ssrc(0)),
            "SLI is not a request"
        );
        let rr = RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: Ssrc(0),
            reports: vec![],
        });
        assert!(!rr.requests_keyframe_of(Ssrc(0)));
    }

    #[test]
    fn generic_nack_parse_build_and_malformed() {
        // A NACK as GStreamer's rtpsession sends it: an RR first (compound), then the RTPFB.
        #[rustfmt::skip]
        let buf = [
            0x80, 0xc9, 0x00, 0x01, // v=2, RR, count=0, length=1
            0x00, 0x00, 0x00, 0x01, // reporter SSRC
            0x81, 0xcd, 0x00, 0x04, // v=2, fmt=1 (generic NACK), RTPFB (205), length=4
            0x00, 0x00, 0x00, 0x01, // sender SSRC
            0xde, 0xad, 0xbe, 0xef, // media source SSRC
            0xff, 0xfe, 0x80, 0x05, // PID 65534, BLP: +1, +3, +16 lost (0, 2, 15 after wrap)
            0x00, 0x10, 0x00, 0x00, // PID 16, BLP 0
        ];
        let p = parse_compound(&buf).unwrap();
        let RtcpPacket::Nack(n) = &p[1] else {
            panic!("{p:?}");
        };
        assert_eq!(p[1].packet_type(), PT_RTPFB);
        assert_eq!((n.sender, n.media), (Ssrc(1), Ssrc(0xdead_beef)));
        assert_eq!(n.lost().collect::<Vec<_>>(), [65534, 65535, 1, 14, 16]);
        let mut out = Vec::new();
        write_compound(&p, &mut out);
        assert_eq!(out, buf);
        assert!(
            !p[1].requests_keyframe_of(Ssrc(0xdead_beef)),
            "a NACK asks for packets"
        );

        // Built from a list: runs of up to 17 share an entry, across the wrap, in any order.
        let lost = [3, 65535, 0, 1, 17, 16, 40, 3];
        let n = Nack::new(Ssrc(1), Ssrc(2), &lost);
        // Packed from the first number given, in wrapping order: 3 (+13, +14), 40, then
        // 65535 (+1, +2 across the wrap).
        assert_eq!(
            n.entries,
            [
                NackEntry {
                    pid: 3,
                    blp: (1 << 12) | (1 << 13)
                },
                NackEntry { pid: 40, blp: 0 },
                NackEntry {
                    pid: 65535,
                    blp: 0b11
                },
            ]
        );
        let mut named: Vec<u16> = n.lost().collect();
        named.sort_unstable();
        assert_eq!(named, [0, 1, 3, 16, 17, 40, 65535]);
        let mut out = Vec::new();
        write_compound(&[RtcpPacket::Nack(n.clone())], &mut out);
        assert_eq!(parse_compound(&out).unwrap(), [RtcpPacket::Nack(n)]);

        // Malformed or not generic: kept raw (no sequence numbers read from it), never a panic.
        #[rustfmt::skip]
        let odd = [
            0x81, 0xcd, 0x00, 0x02, // fmt=1, RTPFB, length=2: no FCI at all
            0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02,
            0x83, 0xcd, 0x00, 0x03, // fmt=3 (TMMBR), RTPFB, length=3
            0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x03,
        ];
        let p = parse_compound(&odd).unwrap();
        assert!(
            p.iter().all(|p| matches!(p, RtcpPacket::Unknown { .. })),
            "{p:?}"
        );
        let mut out = Vec::new();
        write_compound(&p, &mut out);
        assert_eq!(out, odd);
        // A NACK whose length runs past the datagram, or half an FCI entry (with padding).
        assert!(
            parse_compound(&[0x81, 0xcd, 0x00, 0x05, 0, 0, 0, 1, 0, 0, 0, 2, 0, 3, 0, 0]).is_err()
        );
        #[rustfmt::skip]
        let half = [
            0xa1, 0xcd, 0x00, 0x03, // P=1, fmt=1, RTPFB, length=3
            0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02,
            0x00, 0x03, 0x00, 0x02, // two bytes of FCI, then 2 bytes of padding
        ];
        let p = parse_compound(&half).unwrap();
        assert!(matches!(p[0], RtcpPacket::Unknown { .. }), "{p:?}");
        for cut in 0..buf.len() {
            let _ = parse_compound(&buf[..cut]);
        }
    }

    #[test]
    fn sr_with_profile_extension_and_sdes_without_null_item() {
        #[rustfmt::skip]
        let buf = [
            0x80, 0xc8, 0x00, 0x07, // SR, count=0, length=7: one word of profile extension
            0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6,
            0xde, 0xad, 0xbe, 0xef, // profile-specific extension: skipped
            0x81, 0xca, 0x00, 0x02, // SDES, count=1, length=2
            0x00, 0x00, 0x00, 0x09, // ssrc
            0x01, 0x02, b'a', b'b', // CNAME "ab", then the packet ends: no null item
        ];
        let p = parse_compound(&buf).unwrap();
        let RtcpPacket::SenderReport(sr) = &p[0] else {
            panic!()
        };
        assert_eq!(
            (sr.ssrc, sr.ntp, sr.octet_count),
            (Ssrc(1), NtpTimestamp(0x2_0000_0003), 6)
        );
        let RtcpPacket::Sdes(sdes) = &p[1] else {
            panic!()
        };
        assert_eq!(sdes.cname_of(Ssrc(9)), Some(&b"ab"[..]));
        assert_eq!(sdes.cname_of(Ssrc(8)), None);
    }

    #[test]
    fn rejects_bad_input() {
        #[rustfmt::skip]
        let cases: &[(&[u8], RtcpError)] = &[
            (&[], RtcpError::Empty),
            (&[0x80, 0xc9, 0x00], RtcpError::TooShort { offset: 0, len: 3 }),
            (&[0x40, 0xc9, 0x00, 0x00], RtcpError::BadVersion { offset: 0, version: 1 }),
            (
                &[0x80, 0xc9, 0x00, 0x01, 0, 0, 0, 1, // RR ok
                  0xc0, 0xc9, 0x00, 0x00],            // v=3
                RtcpError::BadVersion { offset: 8, version: 3 },
            ),
            (
                &[0x80, 0xc9, 0x00, 0x02, 0, 0, 0, 1], // length 2 words = 12 bytes, 8 present
                RtcpError::LengthOverrun { offset: 0, length: 12, available: 8 },
            ),
            (
                &[0x80, 0xc9, 0x00, 0x01, 0, 0, 0, 1, 0x80], // 1 stray byte after RR
                RtcpError::TooShort { offset: 8, len: 1 },
            ),
            (
                &[0xa0, 0xc9, 0x00, 0x00], // p=1, no body for a count byte
                RtcpError::BadPadding { offset: 0, padding: 0, body_len: 0 },
            ),
            (
                &[0xa0, 0xc9, 0x00, 0x01, 0, 0, 0, 5], // padding 5 > body 4
                RtcpError::BadPadding { offset: 0, padding: 5, body_len: 4 },
            ),
            (
                &[0x81, 0xc9, 0x00, 0x01, 0, 0, 0, 1], // RR count=1 without its block
                RtcpError::Truncated { offset: 0, packet_type: 201, needed: 28, available: 4 },
            ),
            (
                &[0x80, 0xc8, 0x00, 0x01, 0, 0, 0, 1], // SR without sender info
                RtcpError::Truncated { offset: 0, packet_type: 200, needed: 24, available: 4 },
            ),
            (
                &[0x82, 0xca, 0x00, 0x01, 0, 0, 0, 1], // SDES count=2, 1 chunk (no items)
                RtcpError::Truncated { offset: 0, packet_type: 202, needed: 8, available: 4 },
            ),
            (
                &[0x81, 0xca, 0x00, 0x02, 0, 0, 0, 1, 0x01, 0x05, b'a', b'b'], // item len 5 > 2
                RtcpError::Truncated { offset: 0, packet_type: 202, needed: 11, available: 8 },
            ),
            (
                &[0x82, 0xcb, 0x00, 0x01, 0, 0, 0, 1], // BYE count=2, 1 ssrc
                RtcpError::Truncated { offset: 0, packet_type: 203, needed: 8, available: 4 },
            ),
            (
                &[0x81, 0xcb, 0x00, 0x02, 0, 0, 0, 1, 0x09, b'x', 0, 0], // reason len 9 > 3
                RtcpError::Truncated { offset: 0, packet_type: 203, needed: 14, available: 8 },
            ),
            (
                &[0x80, 0xcc, 0x00, 0x01, 0, 0, 0, 1], // APP without name
                RtcpError::Truncated { offset: 0, packet_type: 204, needed: 8, available: 4 },
            ),
        ];
        for (buf, want) in cases {
            assert_eq!(parse_compound(buf).unwrap_err(), *want, "input {buf:02x?}");
            assert!(!want.to_string().is_empty());
        }
    }

    #[test]
    fn writer_splits_long_lists_and_clamps() {
        let block = |i: u32| ReportBlock {
            ssrc: Ssrc(i),
            fraction_lost: 0,
            cumulative_lost: i32::MIN, // clamped to -2^23
            extended_highest_seq: i,
            jitter: 0,
            last_sr: 0,
            delay_since_last_sr: 0,
        };
        let sr = SenderReport {
            ssrc: Ssrc(1),
            ntp: NtpTimestamp(5),
            rtp_timestamp: 6,
            packet_count: 7,
            octet_count: 8,
            reports: (0..40).map(block).collect(),
        };
        let bye = Bye {
            ssrcs: (0..33).map(Ssrc).collect(),
            reason: Some("é".repeat(200)), // 400 bytes: cut to 254 at a char boundary
        };
        let mut out = Vec::new();
        write_compound(
            &[
                RtcpPacket::SenderReport(sr),
                RtcpPacket::Sdes(Sdes::cname(Ssrc(1), "livecast@host")),
                RtcpPacket::Bye(bye),
            ],
            &mut out,
        );
        let p = parse_compound(&out).unwrap();
        assert_eq!(p.len(), 5, "{p:?}"); // SR(31) RR(9) SDES BYE(31) BYE(2 + reason)
        let RtcpPacket::SenderReport(sr) = &p[0] else {
            panic!()
        };
        assert_eq!(sr.reports.len(), 31);
        assert_eq!(sr.reports[0].cumulative_lost, -(1 << 23));
        let RtcpPacket::ReceiverReport(rr) = &p[1] else {
            panic!()
        };
        assert_eq!((rr.ssrc, rr.reports.len()), (Ssrc(1), 9));
        assert_eq!(rr.reports[8].ssrc, Ssrc(39));
        let RtcpPacket::Bye(last) = &p[4] else {
            panic!()
        };
        assert_eq!(last.ssrcs, vec![Ssrc(31), Ssrc(32)]);
        assert_eq!(last.reason.as_deref(), Some("é".repeat(127).as_str()));
    }

    #[test]
    fn empty_lists_are_written() {
        let packets = vec![
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: Ssrc(3),
                reports: vec![],
            }),
            RtcpPacket::Sdes(Sdes::default()),
            RtcpPacket::Bye(Bye {
                ssrcs: vec![],
                reason: None,
            }),
        ];
        let mut out = Vec::new();
        write_compound(&packets, &mut out);
        #[rustfmt::skip]
        assert_eq!(out, [
            0x80, 0xc9, 0x00, 0x01, 0, 0, 0, 3, // RR, count=0
            0x80, 0xca, 0x00, 0x00,             // SDES, count=0
            0x80, 0xcb, 0x00, 0x00,             // BYE, count=0
        ]);
        assert_eq!(parse_compound(&out).unwrap(), packets);
    }

    #[test]
    fn round_trip_time_from_report_block() {
        let sent = NtpTimestamp(0x0001_2345_0000_0000);
        let block = ReportBlock {
            ssrc: Ssrc(1),
            fraction_lost: 0,
            cumulative_lost: 0,
            extended_highest_seq: 0,
            jitter: 0,
            last_sr: sent.middle32(),
            delay_since_last_sr: 1 << 16, // receiver held it 1 s
        };
        // Arrives 1.25 s after the SR was sent: RTT 0.25 s.
        let arrival = NtpTimestamp(sent.0 + (1 << 32) + (1 << 30));
        assert_eq!(
            block.round_trip_time(arrival),
            Some(Duration::from_millis(250))
        );
        assert_eq!(block.round_trip_time(sent), None); // negative
        let no_sr = ReportBlock {
            last_sr: 0,
            ..block
        };
        assert_eq!(no_sr.round_trip_time(arrival), None);
    }

    /// 10 000 packets at 30 fps-ish spacing, every 20th lost (5 %), sequence numbers wrapping
    /// past 65535, arrival delay alternating 0 / 10 ms so that |D| is 10 ms between neighbours.
    #[test]
    fn reception_stats_loss_jitter_and_wrap() {
        let t0 = Instant::now();
        let clock = 90_000u32;
        let mut s = ReceptionStats::new(Ssrc(42), clock);
        let start_seq = 65_000u16;
        let start_ts = u32::MAX - 100_000; // timestamps wrap too
        let mut reports = Vec::new();
        for i in 0..10_000u32 {
            let seq = start_seq.wrapping_add(i as u16);
            let ts = start_ts.wrapping_add(i * 3000);
            let send = Duration::from_micros(u64::from(i) * 33_333);
            let delay = Duration::from_millis(if i % 2 == 0 { 0 } else { 10 });
            if i % 20 != 7 {
                assert!(s.on_packet(seq, ts, t0 + send + delay));
            }
            if i % 1000 == 999 {
                reports.push(s.report_block(t0 + send + Duration::from_millis(20)));
            }
        }
        assert_eq!(s.packets_received(), 9_500);
        assert_eq!(s.packets_expected(), 10_000);
        assert_eq!(s.packets_lost(), 500);
        assert_eq!(s.extended_highest_seq(), u64::from(start_seq) + 9_999);
        let last = reports.last().unwrap();
        assert_eq!(last.cumulative_lost, 500);
        assert_eq!(last.extended_highest_seq, u32::from(start_seq) + 9_999);
        assert_eq!(last.extended_highest_seq >> 16, 1); // one cycle
        for r in &reports {
            assert_eq!(r.fraction_lost, (50 * 256 / 1000) as u8); // 12
        }
        // Across each loss the neighbours have equal delay, so |D| is 10 ms 95 % of the time:
        // the estimate settles near 9.5 ms (send-time rounding adds < 0.1 ms).
        let j = s.jitter_secs();
        assert!((0.0085..0.0105).contains(&j), "jitter {j}");
        assert_eq!(last.jitter, (j * f64::from(clock)).round() as u32);
        assert_eq!((last.last_sr, last.delay_since_last_sr), (0, 0));
    }

    #[test]
    fn reception_stats_random_jitter() {
        // Uniform random delay in [0, 30 ms): E|X - Y| = 10 ms.
        let mut rng = Seeded::new(0x9e37_79b9_7f4a_7c15);
        let t0 = Instant::now();
        let mut s = ReceptionStats::new(Ssrc(1), 48_000);
        for i in 0..10_000u32 {
            let send = Duration::from_millis(u64::from(i) * 20);
            let delay = Duration::from_micros(rng.below(30_000));
            s.on_packet(i as u16, i * 960, t0 + send + delay);
        }
        let j = s.jitter_secs();
        assert!((0.007..0.013).contains(&j), "jitter {j}");
        assert_eq!(s.packets_lost(), 0);
    }

    #[test]
    fn reception_stats_reorder_duplicate_and_restart() {
        let t = Instant::now();
        let mut s = ReceptionStats::new(Ssrc(1), 8000);
        for seq in [10, 11, 13, 12, 13] {
            assert!(s.on_packet(seq, 0, t));
        }
        assert_eq!(s.packets_received(), 5);
        assert_eq!(s.packets_expected(), 4);
        assert_eq!(s.packets_lost(), -1); // the duplicate
                                          // A jump of 40000: ignored once, accepted when the next packet follows it.
        assert!(!s.on_packet(40_000, 0, t));
        assert_eq!(s.packets_received(), 5);
        assert!(s.on_packet(40_001, 0, t));
        assert_eq!(s.packets_received(), 1);
        assert_eq!(s.extended_highest_seq(), 40_001);
        assert_eq!(s.packets_lost(), 0);
        // A stray far packet not followed up is ignored.
        assert!(!s.on_packet(5, 0, t));
        assert!(s.on_packet(40_002, 0, t));
        assert_eq!(s.packets_received(), 2);
    }

    #[test]
    fn reception_stats_lsr_dlsr() {
        let t = Instant::now();
        let mut s = ReceptionStats::new(Ssrc(7), 90_000);
        let block = s.report_block(t);
        assert_eq!(
            (
                block.fraction_lost,
                block.cumulative_lost,
                block.extended_highest_seq
            ),
            (0, 0, 0)
        );
        let sr = SenderReport {
            ssrc: Ssrc(7),
            ntp: NtpTimestamp(0x1122_3344_5566_7788),
            rtp_timestamp: 0,
            packet_count: 0,
            octet_count: 0,
            reports: vec![],
        };
        s.on_sender_report(&sr, t);
        s.on_sender_report(
            &SenderReport {
                ssrc: Ssrc(8),
                ..sr.clone()
            },
            t + Duration::from_secs(1),
        );
        s.on_packet(1, 0, t);
        let block = s.report_block(t + Duration::from_millis(1500));
        assert_eq!(block.last_sr, 0x3344_5566);
        assert_eq!(block.delay_since_last_sr, 98_304); // 1.5 * 65536
    }

    /// Mirrors `fuzz/fuzz_targets/rtp_rtcp_parse.rs` so CI runs it without nightly.
    #[test]
    fn arbitrary_input_never_panics_and_round_trips() {
        let mut rng = Seeded::new(0x0bad_5eed_dead_beef);
        for i in 0..20_000 {
            let len = (i % 40) * 4 + (i % 7 == 0) as usize;
            let mut buf = rng.bytes(len);
            // Make most headers plausible so parsing goes deep: v=2, a known type, a length
            // field that fits.
            let mut at = 0;
            while at + 4 <= buf.len() && i % 5 != 0 {
                buf[at] = (buf[at] & 0x3f) | 0x80;
                buf[at + 1] = 200 + (buf[at + 1] % 8);
                let words = (buf.len() - at) / 4 - 1;
                let w = (rng.below(words as u64 + 1)) as u16;
                buf[at + 2..at + 4].copy_from_slice(&w.to_be_bytes());
                at += (usize::from(w) + 1) * 4;
            }
            crate::fuzzing::rtp_rtcp_round_trip(&buf);
        }
    }
}
