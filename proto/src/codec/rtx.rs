//! RTP retransmission payload format (RFC 4588), SSRC-multiplexed (§8.3): a retransmitted
//! packet travels on its own SSRC with its own sequence numbers and the `rtx` payload type
//! associated (`a=fmtp:<rtx> apt=<original>`) with the original's; its payload is the original
//! sequence number (OSN, 2 bytes) followed by the original payload (§4). Marker, timestamp,
//! CSRCs and header extension are the original's.

use crate::rtp::{self, RtpPacket};
use crate::time::Ssrc;

/// The RTX stream's own header fields for one retransmission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtxHeader {
    pub payload_type: u8,
    pub sequence: u16,
    pub ssrc: Ssrc,
}

/// Appends to `out` the RTX packet carrying `original` (RFC 4588 §4), with `osn` as the
/// original sequence number (the one the receiver knows the packet by, which for a server
/// that numbers each client's stream is that client's number, not `original.sequence`).
pub fn wrap(original: &RtpPacket<'_>, osn: u16, rtx: RtxHeader, out: &mut Vec<u8>) {
    let mut payload = Vec::with_capacity(original.payload.len() + 2);
    payload.extend_from_slice(&osn.to_be_bytes());
    payload.extend_from_slice(original.payload);
    RtpPacket {
        payload_type: rtx.payload_type,
        sequence: rtx.sequence,
        ssrc: rtx.ssrc,
        padding: 0,
        payload: &payload,
        ..*original
    }
    .write(out);
}

/// Appends to `out` the original packet an RTX packet carries, given the original stream's
/// payload type and SSRC; `None` (and nothing appended) when the payload is too short to hold
/// an OSN. The inverse of [`wrap`] but for padding, which is not carried over.
pub fn unwrap(rtx: &RtpPacket<'_>, payload_type: u8, ssrc: Ssrc, out: &mut Vec<u8>) -> Option<u16> {
    let [a, b, rest @ ..] = rtx.payload else {
        return None;
    };
    let osn = u16::from_be_bytes([*a, *b]);
    RtpPacket {
        payload_type,
        sequence: osn,
        ssrc,
        padding: 0,
        payload: rest,
        ..*rtx
    }
    .write(out);
    Some(osn)
}

/// [`wrap`] for a packet given as bytes; `None` if they are not an RTP packet.
pub fn wrap_bytes(original: &[u8], osn: u16, rtx: RtxHeader, out: &mut Vec<u8>) -> Option<()> {
    let p = rtp::parse(original).ok()?;
    wrap(&p, osn, rtx, out);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::RtpHeader;

    #[test]
    fn wrap_and_unwrap_round_trip() {
        let mut original = Vec::new();
        let header = RtpHeader {
            marker: true,
            payload_type: 96,
            sequence: 1000,
            timestamp: 0x1234_5678,
            ssrc: Ssrc(0xaaaa_aaaa),
        };
        rtp::write(&header, &[0x65, 1, 2, 3], &mut original);
        let mut out = Vec::new();
        let rtx = RtxHeader {
            payload_type: 98,
            sequence: 7,
            ssrc: Ssrc(0xbbbb_bbbb),
        };
        // The client knew this packet as 4242 (its own numbering).
        wrap_bytes(&original, 4242, rtx, &mut out).unwrap();
        #[rustfmt::skip]
        assert_eq!(out, [
            0x80, 0x80 | 98, 0x00, 0x07, // v=2, M=1, PT=98 (rtx), seq=7 (the RTX stream's)
            0x12, 0x34, 0x56, 0x78,       // the original timestamp
            0xbb, 0xbb, 0xbb, 0xbb,       // the RTX SSRC
            0x10, 0x92,                   // OSN 4242
            0x65, 1, 2, 3,                // the original payload
        ]);
        let p = rtp::parse(&out).unwrap();
        let mut back = Vec::new();
        assert_eq!(unwrap(&p, 96, Ssrc(0xaaaa_aaaa), &mut back), Some(4242));
        let q = rtp::parse(&back).unwrap();
        assert_eq!(
            (q.header(), q.payload),
            (
                RtpHeader {
                    sequence: 4242,
                    ..header
                },
                &[0x65, 1, 2, 3][..]
            )
        );
        // An RTX payload too short for an OSN, and bytes that are no RTP: nothing.
        let mut short = Vec::new();
        rtp::write(&header, &[1], &mut short);
        let mut none = Vec::new();
        assert_eq!(
            unwrap(&rtp::parse(&short).unwrap(), 96, Ssrc(1), &mut none),
            None
        );
        assert!(none.is_empty());
        assert!(wrap_bytes(&[1, 2, 3], 1, rtx, &mut none).is_none());
    }
}
