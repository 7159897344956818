//! One received track, Sans-IO: RTP packets in (with their arrival times), depacketized media
//! units out, in sequence order, with capture times on the sender's clock.
//!
//! ```text
//! RTP ─> SSRC / payload-type filter ─> ReceptionStats (RFC 3550 A.1, A.3, A.8)
//!   │                              └─> JitterBuffer (reorder, loss timeout) ─> depacketizer ─> MediaUnit
//!   └─ RFC 4588 rtx payload type ─> original packet ─┘  (not in the reception statistics)
//! RTCP SR ─> NTP <-> RTP mapping (capture times), LSR for our receiver reports
//! ```
//!
//! The jitter buffer reports which numbers go missing and which come after all
//! ([`TrackRx::take_gap_events`]); the session's state machine decides whether to ask for
//! them again (RTCP generic NACK, [`TrackRx::nack_request`]).

use std::time::{Duration, Instant};

use livecast_proto::codec::{h264, rtx, t140, Depacketizer, Frame};
use livecast_proto::jitter::{GapChange, JitterBuffer, JitterConfig, Released};
use livecast_proto::rtcp::{self, Nack, ReceiverReport, ReceptionStats, RtcpPacket, Sdes};
use livecast_proto::rtp;
use livecast_proto::time::{Ssrc, TimestampExtender};

use crate::engine::unit::{MediaUnit, TrackDesc};

/// How a track's payloads become media units.
#[derive(Clone, Debug, PartialEq)]
pub enum Format {
    /// RFC 6184; `sprop` holds the SPS/PPS from the SDP, put in front of keyframes that lack
    /// them in band.
    H264 { sprop: Vec<Vec<u8>> },
    /// RFC 7587: one Opus packet per RTP packet.
    Opus,
    /// RFC 4103 `t140/1000` text, possibly inside RFC 2198 `red` (whose payload type is the
    /// track's): one unit per T.140 block (UTF-8), including blocks recovered from
    /// redundancy.
    Text { t140: u8, red: Option<u8> },
}

/// Counters for what the track threw away or passed on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// RTP packets accepted (right SSRC and payload type), and their bytes (headers included).
    pub rtp_packets: u64,
    pub rtp_bytes: u64,
    /// Not RTP, or not valid RTP (RFC 3550 §5.1).
    pub malformed: u64,
    /// Another SSRC or payload type than the one set up.
    pub foreign: u64,
    /// RTCP compounds that failed to parse.
    pub malformed_rtcp: u64,
    pub sender_reports: u64,
    /// Payloads the depacketizer rejected.
    pub rejected_payloads: u64,
    /// Units produced.
    pub units: u64,
    /// Picture Loss Indications sent (RTCP PLI, RFC 4585 §6.3.1).
    pub plis: u64,
    /// Sequence numbers asked for again (RTCP generic NACK, RFC 4585 §6.2.1).
    pub nacked: u64,
    /// RFC 4588 retransmissions received, whatever became of them.
    pub rtx_packets: u64,
    /// Retransmissions that filled a gap in time to be used.
    pub recovered: u64,
    /// Damaged non-reference pictures skipped, with no keyframe to wait for.
    pub dropped_pictures: u64,
    /// RTP payload octets received of the media (retransmissions included), as sender
    /// reports count them.
    pub payload_octets: u64,
}

/// The media rate the sender sent and the rate that arrived, between its last two sender
/// reports: the sent rate from their octet counts and NTP times, the received one from what
/// arrived between their arrivals. A path that can't carry the stream shows as less
/// arriving than sent, lost or queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub sent_bps: u64,
    pub received_bps: u64,
}

/// A sender report as it arrived: (arrival, its NTP time in µs, its octet count, payload
/// octets received by then).
type SrPoint = (Instant, i64, u32, u64);

/// A change in what is missing, for the session's retransmission requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GapEvent {
    pub seq: u16,
    /// Missing (a later packet came); else it arrived after all.
    pub missing: bool,
    /// It arrived as an RFC 4588 retransmission.
    pub retransmission: bool,
}

/// Sender-report and start-of-stream anchors: RTP timestamp → wall clock (RFC 3550 §6.4.1).
#[derive(Clone, Debug)]
struct ClockMap {
    clock_rate: u32,
    ts: TimestampExtender,
    /// (extended RTP timestamp, NTP time in µs since the Unix epoch) of the latest SR.
    sr: Option<(i64, i64)>,
    /// (extended RTP timestamp, our wall clock in µs) before any SR; `true` if from RTP-Info.
    anchor: Option<(i64, i64, bool)>,
}

impl ClockMap {
    fn ticks_to_us(&self, ticks: i64) -> i64 {
        let us = i128::from(ticks) * 1_000_000 / i128::from(self.clock_rate);
        us.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// Capture time of `ts` and whether it came from a sender report.
    fn capture_us(&mut self, ts: u32) -> (i64, bool) {
        let ext = self.ts.extend(ts);
        if let Some((sr_ts, ntp_us)) = self.sr {
            return (ntp_us.saturating_add(self.ticks_to_us(ext - sr_ts)), true);
        }
        match self.anchor {
            Some((a_ts, wall, _)) => (wall.saturating_add(self.ticks_to_us(ext - a_ts)), false),
            None => (0, false),
        }
    }
}

/// The receive side of one track. See the [module docs](self).
#[derive(Debug)]
pub struct TrackRx {
    pub desc: TrackDesc,
    format: Format,
    depacketizer: Option<Depacketizer>,
    text: Option<t140::Depacketizer>,
    /// From SETUP's `Transport: ...;ssrc=` (RFC 2326 §12.39); else the first one seen.
    ssrc: Option<Ssrc>,
    stats: Option<ReceptionStats>,
    jitter: JitterBuffer<Vec<u8>>,
    clock: ClockMap,
    pub counters: Counters,
    /// The sender said goodbye (RTCP BYE for its SSRC, RFC 3550 §6.6).
    pub bye: bool,
    /// Video: a picture was damaged by loss and no keyframe has come since, so the decoder
    /// can't show pictures until one does: the sender is asked for one (RTCP PLI).
    picture_lost: bool,
    /// `picture_lost` as last told by [`take_picture_change`](Self::take_picture_change).
    picture_lost_told: bool,
    /// The RFC 4588 `rtx` payload type that retransmits this track's (SDP `apt=`), if set up.
    rtx_pt: Option<u8>,
    /// The retransmission stream's SSRC: the first one seen (RFC 4588 §5.3, SSRC
    /// multiplexing: it is announced nowhere).
    rtx_ssrc: Option<Ssrc>,
    gaps: Vec<GapEvent>,
    /// The last two sender reports of our source ([`TrackRx::delivery`]).
    sr_points: [Option<SrPoint>; 2],
    /// Scratch for the jitter buffer's changes and for unwrapping RTX packets.
    changes: Vec<GapChange>,
    unwrapped: Vec<u8>,
}

impl TrackRx {
    pub fn new(desc: TrackDesc, format: Format, jitter: JitterConfig) -> Self {
        let depacketizer = match format {
            Format::H264 { .. } | Format::Opus => Depacketizer::new(desc.codec),
            Format::Text { .. } => None,
        };
        let text = match format {
            Format::Text { t140, red } => Some(t140::Depacketizer::new(t140, red)),
            _ => None,
        };
        let clock_rate = desc.clock_rate.max(1);
        TrackRx {
            format,
            depacketizer,
            text,
            ssrc: None,
            stats: None,
            jitter: JitterBuffer::new(clock_rate, jitter).with_gap_reports(),
            clock: ClockMap {
                clock_rate,
                ts: TimestampExtender::new(),
                sr: None,
                anchor: None,
            },
            counters: Counters::default(),
            bye: false,
            picture_lost: false,
            picture_lost_told: false,
            rtx_pt: None,
            rtx_ssrc: None,
            gaps: Vec::new(),
            sr_points: [None, None],
            changes: Vec::new(),
            unwrapped: Vec::new(),
            desc,
        }
    }

    /// Receive RFC 4588 retransmissions of this track's packets on payload type `pt` (on
    /// the same port: SSRC multiplexing, §5.3).
    pub fn set_rtx(&mut self, pt: Option<u8>) {
        self.rtx_pt = pt.filter(|&p| p != self.desc.payload_type);
    }

    /// Wait at least `wait` for a missing packet (time for a retransmission to come); `None`
    /// for the jitter alone.
    pub fn set_retransmission_wait(&mut self, wait: Option<Duration>) {
        self.jitter.set_floor(wait.unwrap_or(Duration::ZERO));
    }

    /// What went missing and what came after all since the last call, in order.
    pub fn take_gap_events(&mut self) -> std::vec::Drain<'_, GapEvent> {
        self.gaps.drain(..)
    }

    /// An RFC 4588 packet: unwrapped (§4: the OSN, then the original payload) into the
    /// original and put where the original would have gone, if it is one of ours.
    fn on_rtx(&mut self, p: &rtp::RtpPacket<'_>, len: usize, at: Instant) -> bool {
        let Some(media) = self.ssrc else {
            return false;
        };
        if p.ssrc == media || self.rtx_ssrc.is_some_and(|s| s != p.ssrc) {
            self.counters.foreign += 1;
            return false;
        }
        self.unwrapped.clear();
        let Some(_) = rtx::unwrap(p, self.desc.payload_type, media, &mut self.unwrapped) else {
            self.counters.malformed += 1;
            return false;
        };
        let Ok(orig) = rtp::parse(&self.unwrapped) else {
            self.counters.malformed += 1;
            return false;
        };
        self.rtx_ssrc = Some(p.ssrc);
        self.counters.rtx_packets += 1;
        self.counters.rtp_bytes += len as u64;
        self.counters.payload_octets += orig.payload.len() as u64;
        let (seq, ts, marker) = (orig.sequence, orig.timestamp, orig.marker);
        let payload = orig.payload.to_vec();
        self.jitter.push(seq, ts, marker, payload, at);
        self.collect_gaps(true);
        true
    }

    /// Takes the jitter buffer's gap changes; `rtx`: the packet just pushed was a
    /// retransmission.
    fn collect_gaps(&mut self, rtx: bool) {
        self.jitter.take_gap_changes(&mut self.changes);
        for c in self.changes.drain(..) {
            let (seq, missing) = match c {
                GapChange::Missing(s) => (s, true),
                GapChange::Filled(s) => (s, false),
            };
            let retransmission = rtx && !missing;
            if retransmission {
                self.counters.recovered += 1;
            }
            self.gaps.push(GapEvent {
                seq,
                missing,
                retransmission,
            });
        }
        if self.gaps.len() > 4096 {
            // Nobody takes them (a test driving the track alone): keep the newest.
            self.gaps.drain(..2048);
        }
    }

    /// The SSRC announced in the SETUP response, if any: packets from others are dropped.
    pub fn set_ssrc(&mut self, ssrc: Option<u32>) {
        if let Some(s) = ssrc {
            self.ssrc = Some(Ssrc(s));
            self.stats = Some(ReceptionStats::new(Ssrc(s), self.clock.clock_rate));
        }
    }

    /// The PLAY response's `RTP-Info: rtptime=` (RFC 2326 §12.33) and the wall time it
    /// arrived: until a sender report comes, capture times count from there, so tracks line up
    /// with each other. Only the first PLAY anchors; later ones (resume) keep the timeline.
    pub fn on_rtp_info(&mut self, rtptime: u32, play_wall_us: i64) {
        if self.clock.anchor.is_some_and(|(_, _, from_info)| from_info) {
            return;
        }
        let ext = self.clock.ts.extend(rtptime);
        self.clock.anchor = Some((ext, play_wall_us, true));
    }

    /// The PLAY response's `RTP-Info: seq=`: the first packet's sequence number. A lost first
    /// packet is then a gap like any other (asked for again where NACK is on: a joiner's first
    /// keyframe is not lost for want of knowing it began earlier), and text tracks recover it
    /// from the redundancy.
    pub fn on_rtp_info_seq(&mut self, seq: u16) {
        self.jitter.expect_first(seq);
        if let Some(t) = self.text.as_mut() {
            t.expect_first(seq);
        }
    }

    /// One datagram (or interleaved frame) from the RTP channel. Returns whether it was
    /// accepted as this track's media.
    pub fn on_rtp(&mut self, buf: &[u8], at: Instant, wall_us: i64) -> bool {
        let p = match rtp::parse(buf) {
            Ok(p) => p,
            Err(e) => {
                self.counters.malformed += 1;
                tracing::trace!(track = self.desc.index, "dropping malformed RTP: {e}");
                return false;
            }
        };
        if self.rtx_pt == Some(p.payload_type) {
            return self.on_rtx(&p, buf.len(), at);
        }
        let plain_t140 = matches!(self.format, Format::Text { t140, .. } if t140 == p.payload_type);
        if (p.payload_type != self.desc.payload_type && !plain_t140)
            || self.ssrc.is_some_and(|s| s != p.ssrc)
        {
            self.counters.foreign += 1;
            tracing::trace!(
                track = self.desc.index,
                ssrc = %p.ssrc,
                pt = p.payload_type,
                seq = p.sequence,
                "dropping RTP from another source or payload type"
            );
            return false;
        }
        if self.ssrc.is_none() {
            self.ssrc = Some(p.ssrc);
            self.stats = Some(ReceptionStats::new(p.ssrc, self.clock.clock_rate));
        }
        if let Some(stats) = self.stats.as_mut() {
            stats.on_packet(p.sequence, p.timestamp, at);
        }
        if self.clock.anchor.is_none() {
            let ext = self.clock.ts.extend(p.timestamp);
            self.clock.anchor = Some((ext, wall_us, false));
        }
        self.counters.rtp_packets += 1;
        self.counters.rtp_bytes += buf.len() as u64;
        self.counters.payload_octets += p.payload.len() as u64;
        let payload = if self.text.is_some() {
            // Text tracks carry two payload types: keep which one with the payload.
            let mut v = Vec::with_capacity(p.payload.len() + 1);
            v.push(p.payload_type);
            v.extend_from_slice(p.payload);
            v
        } else {
            p.payload.to_vec()
        };
        self.jitter
            .push(p.sequence, p.timestamp, p.marker, payload, at);
        self.collect_gaps(false);
        true
    }

    /// One compound packet from the RTCP channel: sender reports of our source set the clock
    /// mapping (RFC 3550 §6.4.1) and the LSR of our next report.
    pub fn on_rtcp(&mut self, buf: &[u8], at: Instant) {
        let packets = match rtcp::parse_compound(buf) {
            Ok(p) => p,
            Err(e) => {
                self.counters.malformed_rtcp += 1;
                tracing::trace!(track = self.desc.index, "dropping malformed RTCP: {e}");
                return;
            }
        };
        for p in packets {
            match p {
                RtcpPacket::SenderReport(sr) => {
                    if self.ssrc.is_some_and(|s| s != sr.ssrc) {
                        continue;
                    }
                    let Some(ntp) = sr.ntp.to_unix() else {
                        continue;
                    };
                    let ntp_us = i64::try_from(ntp.as_micros()).unwrap_or(i64::MAX);
                    let ext = self.clock.ts.extend(sr.rtp_timestamp);
                    self.clock.sr = Some((ext, ntp_us));
                    self.counters.sender_reports += 1;
                    self.sr_points = [
                        self.sr_points[1],
                        Some((at, ntp_us, sr.octet_count, self.counters.payload_octets)),
                    ];
                    if let Some(stats) = self.stats.as_mut() {
                        stats.on_sender_report(&sr, at);
                    }
                }
                RtcpPacket::Bye(bye) if self.ssrc.is_some_and(|s| bye.ssrcs.contains(&s)) => {
                    tracing::debug!(track = self.desc.index, reason = ?bye.reason, "RTCP BYE");
                    self.bye = true;
                }
                _ => {}
            }
        }
    }

    /// Everything due at `now`, in order, as media units stamped `wall_us` (the time they
    /// became complete and in order).
    pub fn poll(&mut self, now: Instant, wall_us: i64, out: &mut Vec<MediaUnit>) {
        while let Some(r) = self.jitter.pop(now) {
            let p = match r {
                Released::Packet(p) => p,
                // Gaps reach the depacketizer as sequence jumps: it tells which picture a
                // loss damaged (a picture that lost every packet passes its loss on to the
                // next), and whether any other picture feels it (see `emit`).
                Released::Lost { .. } => continue,
            };
            match &mut self.depacketizer {
                Some(d) => {
                    match d.push(p.seq, p.rtp_timestamp, p.marker, &p.payload) {
                        Ok(Some(frame)) => self.emit(frame, wall_us, out),
                        Ok(None) => {}
                        Err(e) => self.reject(&e),
                    }
                    while let Some(frame) = self.depacketizer.as_mut().and_then(Depacketizer::pull)
                    {
                        self.emit(frame, wall_us, out);
                    }
                    if let Some(Depacketizer::H264(d)) = &self.depacketizer {
                        self.picture_lost |= d.loss_pending();
                    }
                }
                None => {
                    let Some(text) = self.text.as_mut() else {
                        continue;
                    };
                    let Some((&pt, payload)) = p.payload.split_first() else {
                        continue;
                    };
                    let blocks = match text.push(p.seq, p.rtp_timestamp, pt, payload) {
                        Ok(b) => b,
                        Err(e) => {
                            self.reject(&e);
                            continue;
                        }
                    };
                    for b in blocks {
                        let unit = (b.timestamp, true, false, b.text.into_bytes());
                        self.push_unit(unit, wall_us, out);
                    }
                }
            }
        }
    }

    fn reject(&mut self, e: &dyn std::fmt::Display) {
        self.counters.rejected_payloads += 1;
        tracing::debug!(track = self.desc.index, "{e}");
    }

    /// One unit out: (RTP timestamp, keyframe, damaged, data), stamped with its capture time.
    fn push_unit(
        &mut self,
        (timestamp, keyframe, damaged, data): (u32, bool, bool, Vec<u8>),
        wall_us: i64,
        out: &mut Vec<MediaUnit>,
    ) {
        let (capture_us, from_sr) = self.clock.capture_us(timestamp);
        self.counters.units += 1;
        out.push(MediaUnit {
            track: self.desc.index,
            rtp_timestamp: timestamp,
            capture_us,
            capture_from_sr: from_sr,
            arrival_us: wall_us,
            keyframe,
            damaged,
            data,
        });
    }

    fn emit(&mut self, frame: Frame, wall_us: i64, out: &mut Vec<MediaUnit>) {
        let timestamp = frame.timestamp();
        let (data, keyframe, damaged) = match frame {
            Frame::Video(mut au) => {
                let has =
                    |t: u8, au: &h264::AccessUnit| au.nals.iter().any(|n| h264::nal_type(n) == t);
                if au.is_keyframe {
                    if let Format::H264 { sprop } = &self.format {
                        // Parameter sets out of band only (RFC 6184 §8.1): put them in front.
                        if !(has(h264::nal::SPS, &au) && has(h264::nal::PPS, &au)) {
                            let mut nals = sprop.clone();
                            nals.append(&mut au.nals);
                            au.nals = nals;
                        }
                    }
                }
                let keyframe =
                    au.is_keyframe && has(h264::nal::SPS, &au) && has(h264::nal::PPS, &au);
                let damaged = !au.complete;
                if damaged && au.droppable {
                    // A non-reference picture hit by a loss that no other picture feels:
                    // skipped, with no keyframe to wait for.
                    self.counters.dropped_pictures += 1;
                    return;
                }
                if damaged {
                    self.picture_lost = true;
                } else if keyframe {
                    self.picture_lost = false;
                }
                (au.to_annexb(), keyframe, damaged)
            }
            Frame::Audio { data, .. } => (data, true, false),
            // A payload format added to proto later: not one we set up.
            _ => return,
        };
        self.push_unit((timestamp, keyframe, damaged, data), wall_us, out);
    }

    /// What the sender sent and what arrived between its last two sender reports (at least
    /// a second apart); `None` before two.
    pub fn delivery(&self) -> Option<Delivery> {
        let [Some((at0, ntp0, sent0, got0)), Some((at1, ntp1, sent1, got1))] = self.sr_points
        else {
            return None;
        };
        let sent_us = ntp1.checked_sub(ntp0).filter(|d| *d >= 1_000_000)?;
        let got_us = at1.checked_duration_since(at0)?.as_micros().max(1);
        let sent = u64::from(sent1.wrapping_sub(sent0));
        let got = got1.saturating_sub(got0);
        Some(Delivery {
            sent_bps: sent * 8 * 1_000_000 / sent_us as u64,
            received_bps: u64::try_from(u128::from(got) * 8 * 1_000_000 / got_us)
                .unwrap_or(u64::MAX),
        })
    }

    /// Non-reference pictures lost to a loss inside them and skipped: those that came out
    /// damaged, and those of which nothing was left.
    pub fn dropped_pictures(&self) -> u64 {
        let emptied = match &self.depacketizer {
            Some(Depacketizer::H264(d)) => d.stats().dropped_pictures,
            _ => 0,
        };
        self.counters.dropped_pictures + emptied
    }

    /// When [`poll`](Self::poll) may next have something.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.jitter.next_deadline()
    }

    /// The current wait for missing packets.
    pub fn jitter_delay(&self) -> Duration {
        self.jitter.current_delay()
    }

    pub fn reception(&self) -> Option<&ReceptionStats> {
        self.stats.as_ref()
    }

    /// A receiver report about this track's source and our SDES CNAME, as one compound packet
    /// (RFC 3550 §6.1, §6.4.2, §6.5.1). Before any packet it carries no report block.
    pub fn receiver_report(&mut self, ours: Ssrc, cname: &str, now: Instant) -> Vec<u8> {
        let reports = self
            .stats
            .as_mut()
            .map(|s| vec![s.report_block(now)])
            .unwrap_or_default();
        let mut out = Vec::with_capacity(64);
        rtcp::write_compound(
            &[
                RtcpPacket::ReceiverReport(ReceiverReport {
                    ssrc: ours,
                    reports,
                }),
                RtcpPacket::Sdes(Sdes::cname(ours, cname)),
            ],
            &mut out,
        );
        out
    }
}

impl TrackRx {
    /// Whether the picture was lost (`Some(true)`: a video picture was damaged by loss) or
    /// came back (`Some(false)`: a whole keyframe) since the last call. The session decides
    /// when to ask for a keyframe.
    pub fn take_picture_change(&mut self) -> Option<bool> {
        let lost = self.picture_lost;
        (lost != std::mem::replace(&mut self.picture_lost_told, lost)).then_some(lost)
    }

    /// An RTCP compound asking for a keyframe: receiver report, SDES and a Picture Loss
    /// Indication for the sender's SSRC (RFC 4585 §6.3.1; FMT 1 of PSFB, understood by every
    /// RTP video sender that handles feedback). `None` before the sender's SSRC is known.
    pub fn keyframe_request(&mut self, ours: Ssrc, cname: &str, now: Instant) -> Option<Vec<u8>> {
        let media = self.ssrc?;
        self.counters.plis += 1;
        let mut out = self.receiver_report(ours, cname, now);
        rtcp::write_compound(&[RtcpPacket::pli(ours, media)], &mut out);
        Some(out)
    }
}

impl TrackRx {
    /// An RTCP compound asking for packets again: receiver report, SDES and a generic NACK
    /// (RFC 4585 §6.2.1) naming `seqs` of the sender's SSRC. `None` before the sender's
    /// SSRC is known or without numbers.
    pub fn nack_request(
        &mut self,
        ours: Ssrc,
        cname: &str,
        now: Instant,
        seqs: &[u16],
    ) -> Option<Vec<u8>> {
        let media = self.ssrc?;
        if seqs.is_empty() {
            return None;
        }
        self.counters.nacked += seqs.len() as u64;
        let mut out = self.receiver_report(ours, cname, now);
        let nack = Nack::new(ours, media, seqs);
        rtcp::write_compound(&[RtcpPacket::Nack(nack)], &mut out);
        Some(out)
    }
}

/// `RTCP BYE` from us (RFC 3550 §6.6), after a last receiver report.
pub fn bye(ours: Ssrc, cname: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    rtcp::write_compound(
        &[
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: ours,
                reports: vec![],
            }),
            RtcpPacket::Sdes(Sdes::cname(ours, cname)),
            RtcpPacket::Bye(rtcp::Bye {
                ssrcs: vec![ours],
                reason: Some("teardown".into()),
            }),
        ],
        &mut out,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use livecast_proto::codec::{h264::Packetizer, Codec};
    use livecast_proto::rtcp::SenderReport;
    use livecast_proto::rtp::RtpHeader;
    use livecast_proto::time::NtpTimestamp;

    /// The NTP time of a wall-clock instant in µs since the Unix epoch.
    fn ntp_of(us: i64) -> NtpTimestamp {
        NtpTimestamp::from_unix(Duration::from_micros(us as u64))
    }

    const MS: Duration = Duration::from_millis(1);
    const WALL0: i64 = 1_700_000_000_000_000;

    fn desc(codec: Codec, pt: u8, clock_rate: u32) -> TrackDesc {
        TrackDesc {
            index: 0,
            media: "video".into(),
            codec,
            payload_type: pt,
            clock_rate,
            fmtp: vec![],
            control_url: "rtsp://h/live/trackID=0".into(),
            label: Default::default(),
        }
    }

    fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        rtp::write(
            &RtpHeader {
                marker,
                payload_type: pt,
                sequence: seq,
                timestamp: ts,
                ssrc: Ssrc(ssrc),
            },
            payload,
            &mut out,
        );
        out
    }

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1e, 0xda];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    /// An H.264 track (payload type 96) without parameter sets in the SDP.
    fn video_rx() -> TrackRx {
        TrackRx::new(
            desc(Codec::H264, 96, 90_000),
            Format::H264 { sprop: vec![] },
            jcfg(),
        )
    }

    fn jcfg() -> JitterConfig {
        JitterConfig {
            min_delay: 5 * MS,
            max_delay: 100 * MS,
            low_latency: false,
        }
    }

    /// Packetizes access units with our own packetizer, delivers them reordered, and checks
    /// the units come out whole, in order, with SR-based capture times once an SR is in.
    #[test]
    fn h264_units_in_order_with_capture_times() {
        let t0 = Instant::now();
        let mut t = TrackRx::new(
            desc(Codec::H264, 96, 90_000),
            Format::H264 {
                sprop: vec![SPS.to_vec(), PPS.to_vec()],
            },
            jcfg(),
        );
        t.set_ssrc(Some(0xabcd));
        t.on_rtp_info(1000, WALL0);
        let mut pk = Packetizer::new(100);
        let mut seq = 500u16;
        let mut out = Vec::new();
        let mut packets = Vec::new();
        for i in 0..10u32 {
            let idr = i % 5 == 0;
            let mut au = vec![0, 0, 0, 1];
            au.push(if idr { 0x65 } else { 0x41 });
            au.extend(std::iter::repeat_n(0x10 + i as u8, 300)); // no zero bytes
            let mut payloads = Vec::new();
            pk.packetize(&au, &mut payloads);
            for p in payloads {
                let ts = 1000 + i * 3000;
                packets.push(packet(96, seq, ts, 0xabcd, p.marker, &p.data));
                seq = seq.wrapping_add(1);
            }
        }
        // Swap neighbours pairwise: everything arrives, out of order.
        for pair in packets.chunks_mut(2) {
            pair.reverse();
        }
        // A stranger and some garbage on the same port.
        assert!(!t.on_rtp(&packet(96, 1, 1, 0x9999, true, b"x"), t0, WALL0));
        assert!(!t.on_rtp(&packet(97, 1, 1, 0xabcd, true, b"x"), t0, WALL0));
        assert!(!t.on_rtp(b"\x80", t0, WALL0));
        for (i, p) in packets.iter().enumerate() {
            let at = t0 + MS * i as u32;
            if i == 10 {
                // The sender's clock: RTP 1000 was captured at WALL0 + 5 s.
                let sr = RtcpPacket::SenderReport(SenderReport {
                    ssrc: Ssrc(0xabcd),
                    ntp: ntp_of(WALL0 + 5_000_000),
                    rtp_timestamp: 1000,
                    packet_count: 0,
                    octet_count: 0,
                    reports: vec![],
                });
                let mut buf = Vec::new();
                rtcp::write_compound(&[sr], &mut buf);
                t.on_rtcp(&buf, at);
                t.on_rtcp(b"garbage", at);
            }
            assert!(t.on_rtp(p, at, WALL0 + i as i64));
            t.poll(at, WALL0 + i as i64, &mut out);
        }
        t.poll(t0 + Duration::from_secs(1), WALL0 + 1_000_000, &mut out);
        assert_eq!(out.len(), 10);
        for (i, u) in out.iter().enumerate() {
            assert_eq!(u.rtp_timestamp, 1000 + i as u32 * 3000);
            assert_eq!(u.keyframe, i % 5 == 0, "unit {i}");
            assert!(!u.damaged);
            let nals: Vec<&[u8]> = h264::split_annexb(&u.data).collect();
            if u.keyframe {
                // Parameter sets from the SDP put in front of the IDR.
                assert_eq!(&nals[..2], &[SPS, PPS]);
            }
            assert_eq!(nals.last().unwrap().len(), 301);
        }
        // Units released before the SR count from the RTP-Info anchor, the rest from the SR.
        assert!(!out[0].capture_from_sr);
        assert_eq!(out[0].capture_us, WALL0);
        let last = out.last().unwrap();
        assert!(last.capture_from_sr);
        assert_eq!(last.capture_us, WALL0 + 5_000_000 + 300_000); // 9 x 3000 ticks
        let c = t.counters;
        assert_eq!((c.foreign, c.malformed, c.malformed_rtcp), (2, 1, 1));
        assert_eq!(c.sender_reports, 1);
        // RFC 3550 A.1: the first arrival (501, swapped with 500) is the base; 500, reordered
        // before it, counts as one more than expected.
        let rs = t.reception().unwrap();
        assert_eq!((rs.packets_lost(), rs.packets_received()), (-1, 40));
        // The receiver report carries a block for the source with the SR's LSR.
        let rr = t.receiver_report(Ssrc(1), "me@host", t0 + Duration::from_secs(2));
        let parsed = rtcp::parse_compound(&rr).unwrap();
        let RtcpPacket::ReceiverReport(r) = &parsed[0] else {
            panic!("{parsed:?}")
        };
        assert_eq!(r.reports[0].ssrc, Ssrc(0xabcd));
        assert_eq!(r.reports[0].last_sr, ntp_of(WALL0 + 5_000_000).middle32());
        assert!(
            matches!(&parsed[1], RtcpPacket::Sdes(s) if s.cname_of(Ssrc(1)) == Some(&b"me@host"[..]))
        );
    }

    #[test]
    fn lost_packet_marks_the_unit_damaged() {
        let t0 = Instant::now();
        let mut t = TrackRx::new(
            desc(Codec::H264, 96, 90_000),
            Format::H264 { sprop: vec![] },
            jcfg(),
        );
        let mut pk = Packetizer::new(100);
        // Two NAL units: a small one sent whole, a large one in FU-A pieces.
        let mut au = vec![0, 0, 0, 1, 0x41, 1, 2, 3, 0, 0, 0, 1, 0x41];
        au.extend([7u8; 500]);
        let mut payloads = Vec::new();
        pk.packetize(&au, &mut payloads);
        pk.packetize(&au, &mut payloads); // second AU, same shape
        let n = payloads.len() / 2;
        let mut out = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            if i == 2 {
                continue; // a piece of the first AU's large NAL unit
            }
            let ts = if i < n { 0 } else { 3000 };
            t.on_rtp(&packet(96, i as u16, ts, 5, p.marker, &p.data), t0, WALL0);
        }
        t.poll(t0 + Duration::from_secs(1), WALL0, &mut out);
        assert_eq!(out.len(), 2);
        assert!(out[0].damaged);
        assert!(!out[0].keyframe);
        assert!(!out[1].damaged);
        // No RTP-Info: capture times count from the first packet's arrival.
        assert_eq!(out[0].capture_us, WALL0);
        assert_eq!(out[1].capture_us, WALL0 + 33_333);
        assert_eq!(t.reception().unwrap().packets_lost(), 1);

        // The damaged picture is told once; the keyframe request is RR + SDES + PLI for the
        // sender's SSRC.
        assert_eq!(t.take_picture_change(), Some(true));
        assert_eq!(t.take_picture_change(), None);
        let req = t
            .keyframe_request(Ssrc(1), "me", t0)
            .expect("the sender's SSRC is known");
        let parsed = rtcp::parse_compound(&req).unwrap();
        assert!(matches!(parsed[0], RtcpPacket::ReceiverReport(_)));
        assert_eq!(parsed.last(), Some(&RtcpPacket::pli(Ssrc(1), Ssrc(5))));
        assert_eq!(t.counters.plis, 1);
    }

    /// Sends an access unit to a track in 100-byte packets from SSRC 5, numbered on from the
    /// last, leaving out packet `skip` of it.
    fn sender(t0: Instant) -> impl FnMut(&mut TrackRx, &[u8], u32, Option<usize>) {
        let mut pk = Packetizer::new(100);
        let mut seq = 0u16;
        move |t, au, ts, skip| {
            let mut payloads = Vec::new();
            pk.packetize(au, &mut payloads);
            for (i, p) in payloads.iter().enumerate() {
                if Some(i) != skip {
                    t.on_rtp(&packet(96, seq, ts, 5, p.marker, &p.data), t0, WALL0);
                }
                seq = seq.wrapping_add(1);
            }
        }
    }

    #[test]
    fn a_keyframe_ends_the_keyframe_requests() {
        let t0 = Instant::now();
        let mut t = video_rx();
        let mut send = sender(t0);
        let mut delta = vec![0, 0, 0, 1, 0x41];
        delta.extend([7u8; 300]);
        let idr = [
            &[0, 0, 0, 1, 0x67, 0x42, 0, 0x1f][..],
            &[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80],
            &[0, 0, 0, 1, 0x65, 0x88, 0x84, 0x21],
        ]
        .concat();
        let mut out = Vec::new();
        send(&mut t, &delta, 0, None);
        t.poll(t0 + Duration::from_secs(1), WALL0, &mut out);
        assert_eq!(t.take_picture_change(), None, "no loss, no PLI");
        send(&mut t, &delta, 3000, Some(1));
        t.poll(t0 + Duration::from_secs(2), WALL0, &mut out);
        assert_eq!(t.take_picture_change(), Some(true));
        // Undamaged delta pictures do not help: the decoder still waits.
        send(&mut t, &delta, 6000, None);
        t.poll(t0 + Duration::from_secs(3), WALL0, &mut out);
        assert_eq!(t.take_picture_change(), None);
        send(&mut t, &idr, 9000, None);
        t.poll(t0 + Duration::from_secs(4), WALL0, &mut out);
        assert!(out.last().unwrap().keyframe);
        assert_eq!(t.take_picture_change(), Some(false));
    }

    #[test]
    fn a_damaged_non_reference_picture_is_skipped_without_a_keyframe_request() {
        let t0 = Instant::now();
        let mut t = video_rx();
        let mut send = sender(t0);
        // Hierarchical P: reference and non-reference (nal_ref_idc 0) pictures in turn.
        let mut reference = vec![0, 0, 0, 1, 0x41];
        reference.extend([7u8; 300]);
        let mut disposable = vec![0, 0, 0, 1, 0x01];
        disposable.extend([9u8; 300]);
        // Two slices, so that something of a damaged one is left.
        let two_slices = [&disposable[..], &disposable[..]].concat();
        let mut out = Vec::new();
        send(&mut t, &reference, 0, None);
        send(&mut t, &disposable, 3000, Some(1));
        send(&mut t, &reference, 6000, None);
        send(&mut t, &two_slices, 9000, Some(4));
        send(&mut t, &reference, 12_000, None);
        t.poll(t0 + Duration::from_secs(1), WALL0, &mut out);
        let times: Vec<u32> = out.iter().map(|u| u.rtp_timestamp).collect();
        assert_eq!(times, [0, 6000, 12_000], "the damaged pictures are skipped");
        assert!(out.iter().all(|u| !u.damaged));
        assert_eq!(t.take_picture_change(), None, "no keyframe asked for");
        assert_eq!(t.dropped_pictures(), 2);
        // A damaged reference picture still asks for one.
        send(&mut t, &reference, 15_000, Some(1));
        send(&mut t, &reference, 18_000, None);
        t.poll(t0 + Duration::from_secs(2), WALL0, &mut out);
        assert_eq!(t.take_picture_change(), Some(true));
    }

    #[test]
    fn delivery_compares_what_arrived_with_what_the_sender_reports_sending() {
        let t0 = Instant::now();
        let mut t = video_rx();
        let sr = |t: &mut TrackRx, secs: i64, octets: u32, at: Instant| {
            let sr = RtcpPacket::SenderReport(SenderReport {
                ssrc: Ssrc(5),
                ntp: ntp_of(WALL0 + secs * 1_000_000),
                rtp_timestamp: 0,
                packet_count: 0,
                octet_count: octets,
                reports: vec![],
            });
            let mut buf = Vec::new();
            rtcp::write_compound(&[sr], &mut buf);
            t.on_rtcp(&buf, at);
        };
        let mut seq = 0u16;
        // 100 payload bytes per packet.
        let mut receive = |t: &mut TrackRx, n: usize, at: Instant| {
            for _ in 0..n {
                t.on_rtp(&packet(96, seq, 0, 5, false, &[0x41; 100]), at, WALL0);
                seq = seq.wrapping_add(1);
            }
        };
        receive(&mut t, 1, t0);
        assert_eq!(t.delivery(), None);
        // The sender's octet count wraps between the two reports: 1,000,000 octets in 5 s
        // (1.6 Mbit/s) sent, 5,000 packets of 100 octets (0.8 Mbit/s) arrived in the 5 s
        // between the reports' arrivals.
        sr(&mut t, 0, u32::MAX - 499_999, t0);
        assert_eq!(t.delivery(), None, "one report says nothing yet");
        receive(&mut t, 5000, t0 + Duration::from_secs(3));
        sr(&mut t, 5, 500_000, t0 + Duration::from_secs(5));
        assert_eq!(
            t.delivery(),
            Some(Delivery {
                sent_bps: 1_600_000,
                received_bps: 800_000
            })
        );
        // Reports closer than a second apart are not a window.
        sr(&mut t, 5, 500_000, t0 + Duration::from_millis(5500));
        assert_eq!(t.delivery(), None);
    }

    #[test]
    fn opus_and_text_pass_through() {
        let t0 = Instant::now();
        let mut a = TrackRx::new(desc(Codec::Opus, 97, 48_000), Format::Opus, jcfg());
        let mut x = TrackRx::new(
            desc(Codec::T140, 98, 1000),
            Format::Text {
                t140: 98,
                red: None,
            },
            jcfg(),
        );
        let mut out = Vec::new();
        for i in 0..5u16 {
            a.on_rtp(
                &packet(97, i, u32::from(i) * 960, 1, false, &[0xfc, i as u8]),
                t0,
                WALL0,
            );
            x.on_rtp(
                &packet(
                    98,
                    i,
                    u32::from(i) * 300,
                    2,
                    false,
                    format!("hi{i}").as_bytes(),
                ),
                t0,
                WALL0,
            );
        }
        x.on_rtp(&packet(98, 5, 1500, 2, false, b""), t0, WALL0); // empty keep-alive: no unit
        a.poll(t0 + Duration::from_secs(1), WALL0, &mut out);
        x.poll(t0 + Duration::from_secs(1), WALL0, &mut out);
        assert_eq!(out.len(), 10);
        assert!(out.iter().all(|u| u.keyframe && !u.damaged));
        assert_eq!(out[1].data, [0xfc, 1]);
        assert_eq!(out[1].capture_us, WALL0 + 20_000);
        assert_eq!(out[7].data, b"hi2");
        assert_eq!(out[7].capture_us, WALL0 + 600_000);
    }

    /// RFC 4588 packets on the rtx payload type (their own SSRC and numbering) are unwrapped
    /// into the originals they carry and fill the gap in time; the gap and its filling are
    /// reported for the NACK logic, a second retransmission stream is refused, and the NACK
    /// itself is RR + SDES + generic NACK for the media SSRC.
    #[test]
    fn rtx_packets_fill_gaps_and_nacks_name_the_numbers() {
        let t0 = Instant::now();
        let mut t = video_rx();
        t.set_ssrc(Some(5));
        t.set_rtx(Some(100));
        t.set_retransmission_wait(Some(50 * MS));
        assert_eq!(t.jitter_delay(), 50 * MS);
        let mut pk = Packetizer::new(100);
        let mut au = vec![0, 0, 0, 1, 0x41];
        au.extend([7u8; 450]);
        let mut payloads = Vec::new();
        pk.packetize(&au, &mut payloads);
        assert!(payloads.len() >= 4);
        let originals: Vec<Vec<u8>> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| packet(96, 1000 + i as u16, 3000, 5, p.marker, &p.data))
            .collect();
        let mut out = Vec::new();
        // Packet 1001 lost on the way.
        for (i, p) in originals.iter().enumerate() {
            if i != 1 {
                assert!(t.on_rtp(p, t0, WALL0));
            }
        }
        let missing: Vec<GapEvent> = t.take_gap_events().collect();
        assert_eq!(
            missing,
            [GapEvent {
                seq: 1001,
                missing: true,
                retransmission: false
            }]
        );
        let nack = t.nack_request(Ssrc(1), "me", t0, &[1001]).unwrap();
        let parsed = rtcp::parse_compound(&nack).unwrap();
        assert!(matches!(parsed[0], RtcpPacket::ReceiverReport(_)));
        assert_eq!(
            parsed.last(),
            Some(&RtcpPacket::Nack(Nack::new(Ssrc(1), Ssrc(5), &[1001])))
        );
        t.poll(t0 + 30 * MS, WALL0, &mut out);
        assert!(out.is_empty(), "still waiting for 1001");
        let received_before = t.reception().unwrap().packets_received();
        // The retransmission, 30 ms later, on SSRC 0x77 with its own numbering.
        let mut rtx_packet = Vec::new();
        let orig = rtp::parse(&originals[1]).unwrap();
        let header = rtx::RtxHeader {
            payload_type: 100,
            sequence: 7,
            ssrc: Ssrc(0x77),
        };
        rtx::wrap(&orig, 1001, header, &mut rtx_packet);
        assert!(t.on_rtp(&rtx_packet, t0 + 30 * MS, WALL0));
        let filled: Vec<GapEvent> = t.take_gap_events().collect();
        assert_eq!(
            filled,
            [GapEvent {
                seq: 1001,
                missing: false,
                retransmission: true
            }]
        );
        // The first packet is held the wait out (an earlier one may come reordered).
        t.poll(t0 + 50 * MS, WALL0, &mut out);
        assert_eq!(out.len(), 1);
        assert!(!out[0].damaged, "the picture is whole again");
        assert_eq!(h264::split_annexb(&out[0].data).next().unwrap(), &au[4..]);
        // Another RTX SSRC, the same retransmission again: neither is used.
        let other = rtx::RtxHeader {
            ssrc: Ssrc(0x78),
            ..header
        };
        let mut stray = Vec::new();
        rtx::wrap(&orig, 1001, other, &mut stray);
        assert!(!t.on_rtp(&stray, t0 + 40 * MS, WALL0));
        assert!(t.on_rtp(&rtx_packet, t0 + 40 * MS, WALL0));
        assert_eq!(t.take_gap_events().count(), 0);
        let c = t.counters;
        assert_eq!((c.nacked, c.rtx_packets, c.recovered), (1, 2, 1));
        // Retransmissions are not the original stream's deliveries (RFC 4588 §8): the
        // receiver report's counts are the network's.
        assert_eq!(t.reception().unwrap().packets_received(), received_before);
        // Without an rtx payload type set up, payload type 100 is a stranger's.
        let mut plain = video_rx();
        plain.set_ssrc(Some(5));
        assert!(!plain.on_rtp(&rtx_packet, t0, WALL0));
    }

    /// Hostile input on both channels never panics.
    #[test]
    fn garbage_never_panics() {
        let t0 = Instant::now();
        let mut t = video_rx();
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x1234_5678_9abc_def1);
        let mut next = move || rng.random::<u64>();
        let mut out = Vec::new();
        for i in 0..20_000u32 {
            let len = (next() % 60) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(b) = buf.get_mut(0) {
                *b = (*b & 0x3f) | 0x80;
            }
            if let Some(b) = buf.get_mut(1) {
                *b = if i % 3 == 0 { *b } else { 96 | (*b & 0x80) };
            }
            if buf.len() >= 12 && i % 2 == 0 {
                buf[8..12].copy_from_slice(&[0, 0, 0, 7]);
            }
            let at = t0 + MS * (next() % 10_000) as u32;
            if i % 7 == 0 {
                t.on_rtcp(&buf, at);
            } else {
                t.on_rtp(&buf, at, WALL0);
            }
            t.poll(at, WALL0, &mut out);
        }
        t.poll(t0 + Duration::from_secs(100), WALL0, &mut out);
        let _ = t.receiver_report(Ssrc(1), "x", t0);
    }
}
