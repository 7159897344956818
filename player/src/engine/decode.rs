//! Decoders: H.264 with openh264 (to RGBA for display), Opus with libopus (to 48 kHz stereo).

use anyhow::Context;
use livecast_proto::codec::h264;
use openh264::decoder::{DecodedYUV, Decoder, DecoderConfig, Flush};
use openh264::formats::YUVSource;
use openh264::OpenH264API;

/// A decoded picture, converted for display.
#[derive(Clone, Debug)]
pub struct Picture {
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
    /// Mean luma (0-255) over a sparse grid: the test card's white flash is > 200.
    pub mean_luma: f32,
}

/// Compressed data kept from the last keyframe while no B slice has been seen, to decode the
/// group again when one appears: at most this many bytes (beyond, the group is dropped and
/// the switch waits for the next keyframe).
const MAX_KEPT_GROUP: usize = 16 << 20;

/// H.264 decoder. Feed it whole access units in Annex B form, in decode order.
///
/// A stream without B-frames is decoded with the `openh264` crate's default, which flushes
/// after every unit: each unit's picture comes out at once. That mode never releases the
/// pictures a B-frame stream holds for reordering (after about 20 units every decode fails),
/// so at the first B slice the decoder is made again without flushing, the units since the
/// last keyframe are decoded again (kept until then), and from then on pictures come out in
/// presentation order, a picture later than they went in.
pub struct VideoDecoder {
    dec: Decoder,
    /// No keyframe since creation/reset: non-IDR units are skipped (they would only produce
    /// errors and garbage).
    need_keyframe: bool,
    pub errors: u64,
    /// Pictures the decoder produced (shown or not).
    pub decoded: u64,
    /// Units passed over while waiting for a keyframe (after a start, a reset or a unit that
    /// failed to decode).
    pub waited: u64,
    /// B slices seen: decoding without a flush after each unit.
    reordering: bool,
    /// The units since the last keyframe with their times, while not reordering (see
    /// [`MAX_KEPT_GROUP`]).
    group: Vec<(Vec<u8>, i64)>,
    group_bytes: usize,
    /// Times of the units given and not yet out as pictures (reordering): each picture that
    /// comes out, in presentation order, is the one with the smallest time.
    pending: std::collections::BinaryHeap<std::cmp::Reverse<i64>>,
}

fn make_decoder(reordering: bool) -> anyhow::Result<Decoder> {
    if reordering {
        Decoder::with_api_config(
            OpenH264API::from_source(),
            DecoderConfig::new().flush_after_decode(Flush::NoFlush),
        )
        .context("openh264 decoder")
    } else {
        Decoder::new().context("openh264 decoder")
    }
}

impl VideoDecoder {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            dec: make_decoder(false)?,
            need_keyframe: true,
            errors: 0,
            decoded: 0,
            waited: 0,
            reordering: false,
            group: Vec::new(),
            group_bytes: 0,
            pending: std::collections::BinaryHeap::new(),
        })
    }

    /// Starts over (after a seek): the next unit decoded must be a keyframe.
    pub fn reset(&mut self) -> anyhow::Result<()> {
        self.dec = make_decoder(self.reordering)?;
        self.need_keyframe = true;
        self.group.clear();
        self.group_bytes = 0;
        self.pending.clear();
        Ok(())
    }

    /// Whether B-frames were seen (pictures come out a picture late, in presentation order).
    pub fn reordering(&self) -> bool {
        self.reordering
    }

    /// Nothing decodes until the next keyframe: none since creation or [`Self::reset`], or a
    /// unit failed to decode since the last one.
    pub fn waiting_for_keyframe(&self) -> bool {
        self.need_keyframe
    }

    /// Decodes one access unit. With `convert == false` the picture is decoded (to advance the
    /// reference chain during a seek) but not converted to RGBA.
    pub fn decode(&mut self, annexb: &[u8], keyframe: bool, convert: bool) -> Option<Picture> {
        self.decode_at(annexb, keyframe, convert, 0).map(|(p, _)| p)
    }

    /// [`VideoDecoder::decode`] of a unit presented at `time`: the picture that comes out and
    /// its time (with B-frames, another unit's: pictures come out in presentation order).
    pub fn decode_at(
        &mut self,
        annexb: &[u8],
        keyframe: bool,
        convert: bool,
        time: i64,
    ) -> Option<(Picture, i64)> {
        if self.need_keyframe && !keyframe {
            self.waited += 1;
            return None;
        }
        if self.need_keyframe && self.reordering {
            // Whatever the decoder still held belongs to the stream before the gap.
            if let Ok(d) = make_decoder(true) {
                self.dec = d;
            }
            self.pending.clear();
        }
        self.need_keyframe = false;
        if !self.reordering {
            if keyframe {
                self.group.clear();
                self.group_bytes = 0;
            }
            if h264::has_b_slice(annexb) {
                self.start_reordering(keyframe);
                if self.need_keyframe {
                    return None;
                }
            } else if self.group_bytes + annexb.len() <= MAX_KEPT_GROUP {
                self.group.push((annexb.to_vec(), time));
                self.group_bytes += annexb.len();
            } else {
                self.group_bytes = usize::MAX / 2;
            }
        }
        if self.reordering {
            self.pending.push(std::cmp::Reverse(time));
        }
        match self.dec.decode(annexb) {
            Ok(Some(yuv)) => {
                self.decoded += 1;
                let shown = if self.reordering {
                    self.pending.pop().map_or(time, |std::cmp::Reverse(t)| t)
                } else {
                    time
                };
                convert.then(|| (to_picture(&yuv), shown))
            }
            Ok(None) => None,
            Err(e) => {
                self.errors += 1;
                tracing::debug!("H.264 decode error: {e}");
                // Wait for the next keyframe rather than decoding garbage on top of a loss.
                self.need_keyframe = true;
                None
            }
        }
    }

    /// The first B slice: a decoder that holds pictures for reordering, given the units since
    /// the last keyframe again (or, if they were not all kept, waiting for the next one).
    fn start_reordering(&mut self, keyframe: bool) {
        tracing::info!("the video has B-frames: decoding with reordering (a picture later)");
        self.reordering = true;
        let group = std::mem::take(&mut self.group);
        let complete = self.group_bytes <= MAX_KEPT_GROUP;
        self.group_bytes = 0;
        match make_decoder(true) {
            Ok(d) => self.dec = d,
            Err(e) => {
                tracing::warn!("{e:#}");
                self.need_keyframe = true;
                return;
            }
        }
        if keyframe {
            return;
        }
        if !complete || group.is_empty() {
            self.need_keyframe = true;
            return;
        }
        self.pending.clear();
        for (unit, time) in &group {
            self.pending.push(std::cmp::Reverse(*time));
            match self.dec.decode(unit) {
                Ok(Some(_)) => {
                    self.pending.pop();
                }
                Ok(None) => {}
                Err(_) => {
                    self.errors += 1;
                    self.need_keyframe = true;
                    return;
                }
            }
        }
    }
}

fn to_picture(yuv: &DecodedYUV<'_>) -> Picture {
    let (w, h) = yuv.dimensions();
    let mut rgba = vec![0u8; w * h * 4];
    yuv.write_rgba8(&mut rgba);
    let (ys, _, _) = yuv.strides();
    Picture {
        width: w as u32,
        height: h as u32,
        rgba,
        mean_luma: mean_luma(yuv.y(), ys, w, h),
    }
}

/// Mean luma over a sparse grid (every 8th pixel of every 8th row).
fn mean_luma(y: &[u8], stride: usize, w: usize, h: usize) -> f32 {
    let mut sum = 0u64;
    let mut n = 0u64;
    for row in (0..h).step_by(8) {
        for col in (0..w).step_by(8) {
            if let Some(v) = y.get(row * stride + col) {
                sum += u64::from(*v);
                n += 1;
            }
        }
    }
    if n > 0 {
        sum as f32 / n as f32
    } else {
        0.0
    }
}

/// A picture from 4:2:0 planes another decoder made (`fast_seek`): limited-range BT.601 to
/// RGBA as OpenH264's own conversion does (its formula in fixed point; within one step of it
/// in each channel). `dim` is even; each plane holds its rows at its stride.
pub(crate) fn picture_from_planes(
    y: &[u8],
    u: &[u8],
    v: &[u8],
    dim: (usize, usize),
    strides: (usize, usize, usize),
) -> Picture {
    // 255/219 (rounded up: 235 must reach 255 after the shift), and 255/224 times 1.402,
    // 1.402*0.299/0.587, 1.772*0.114/0.587 and 1.772, in units of 2^-14.
    const Y: i32 = 19078;
    const RV: i32 = 26149;
    const GV: i32 = 13320;
    const GU: i32 = 6419;
    const BU: i32 = 33050;
    let (w, h) = dim;
    debug_assert!(w % 2 == 0 && h % 2 == 0, "4:2:0 pictures have even sizes");
    let mut rgba = vec![0u8; w * h * 4];
    let clamp = |v: i32| (v >> 14).clamp(0, 255) as u8;
    for (row, out) in rgba.chunks_exact_mut(w * 4).enumerate().take(h) {
        let yr = &y[row * strides.0..][..w];
        let ur = &u[(row / 2) * strides.1..][..w / 2];
        let vr = &v[(row / 2) * strides.2..][..w / 2];
        // Two pixels a chroma sample: its terms once for both.
        for (((px, yy), uu), vv) in out
            .chunks_exact_mut(8)
            .zip(yr.chunks_exact(2))
            .zip(ur)
            .zip(vr)
        {
            let (uu, vv) = (i32::from(*uu) - 128, i32::from(*vv) - 128);
            let (r, g, b) = (RV * vv, -GU * uu - GV * vv, BU * uu);
            let (y0, y1) = ((i32::from(yy[0]) - 16) * Y, (i32::from(yy[1]) - 16) * Y);
            px.copy_from_slice(&[
                clamp(y0 + r),
                clamp(y0 + g),
                clamp(y0 + b),
                255,
                clamp(y1 + r),
                clamp(y1 + g),
                clamp(y1 + b),
                255,
            ]);
        }
    }
    Picture {
        width: w as u32,
        height: h as u32,
        rgba,
        mean_luma: mean_luma(y, strides.0, w, h),
    }
}

/// Samples per channel in one 20 ms Opus frame at 48 kHz; the most a packet can hold is 120 ms.
const MAX_FRAME: usize = 5760;

/// A gap in the RTP timestamps longer than this many frames is not loss but a discontinuity
/// (a seek, a pause, packets skipped to catch up with live): nothing is made up for it.
const MAX_LOST_FRAMES: u32 = 5;

/// Opus decoder to 48 kHz interleaved stereo.
pub struct AudioDecoder {
    dec: opus::Decoder,
    pub errors: u64,
    /// Lost frames made up by packet loss concealment.
    pub concealed: u64,
    /// Lost frames recovered from the next packet's in-band FEC (RFC 6716 §2.1.7).
    pub recovered: u64,
    /// The RTP timestamp the next packet has if none is lost (after [`decode_at`]).
    ///
    /// [`decode_at`]: AudioDecoder::decode_at
    next_ts: Option<u32>,
}

/// What [`AudioDecoder::decode_at`] made of a packet: the audio of the frames lost before it
/// (recovered or concealed), then its own, as one interleaved stereo buffer.
#[derive(Debug, Default)]
pub struct Decoded {
    pub pcm: Vec<i16>,
    /// Samples per channel at the start of `pcm` that stand for lost packets: the buffer
    /// starts that long before the packet's own time.
    pub lead_samples: usize,
}

impl AudioDecoder {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            dec: opus::Decoder::new(48_000, opus::Channels::Stereo).context("Opus decoder")?,
            errors: 0,
            concealed: 0,
            recovered: 0,
            next_ts: None,
        })
    }

    /// Decodes the packet with RTP timestamp `rtp_ts` (48 kHz, RFC 7587 §4.1), first making up
    /// for the packets lost since the previous one: the one just before it from this packet's
    /// in-band FEC when it carries some ([`livecast_proto::codec::opus::has_fec`]), the others
    /// (and that one without FEC) by packet loss concealment.
    pub fn decode_at(&mut self, packet: &[u8], rtp_ts: u32) -> Decoded {
        let mut pcm = Vec::new();
        let frame = livecast_proto::codec::opus::frame_duration_samples(packet).unwrap_or(960);
        if let Some(expected) = self.next_ts {
            let gap = rtp_ts.wrapping_sub(expected);
            let lost = gap / frame;
            // A gap that is not whole frames, or too long, or negative, is no loss we can fill.
            if gap % frame == 0 && (1..=MAX_LOST_FRAMES).contains(&lost) {
                for _ in 1..lost {
                    pcm.extend(self.conceal(frame as usize));
                    self.concealed += 1;
                }
                match self.fec(packet, frame as usize) {
                    Some(recovered) => {
                        pcm.extend(recovered);
                        self.recovered += 1;
                    }
                    None => {
                        pcm.extend(self.conceal(frame as usize));
                        self.concealed += 1;
                    }
                }
            }
        }
        let lead_samples = pcm.len() / 2;
        let own = self.decode(packet);
        self.next_ts = Some(rtp_ts.wrapping_add((own.len() / 2) as u32));
        pcm.extend(own);
        Decoded { pcm, lead_samples }
    }

    /// The next packet will not follow the last one (seek, skip): no loss to make up for.
    pub fn discontinuity(&mut self) {
        self.next_ts = None;
    }

    /// The frame before `packet`, `samples` long, from its in-band FEC data; `None` when it
    /// carries none.
    fn fec(&mut self, packet: &[u8], samples: usize) -> Option<Vec<i16>> {
        if !livecast_proto::codec::opus::has_fec(packet) {
            return None;
        }
        let mut out = vec![0i16; samples.min(MAX_FRAME) * 2];
        match self.dec.decode(packet, &mut out, true) {
            Ok(n) => {
                out.truncate(n * 2);
                Some(out)
            }
            Err(e) => {
                tracing::debug!("Opus FEC decode error: {e}");
                None
            }
        }
    }

    /// Decodes one packet to interleaved stereo i16; a corrupt packet gives concealment audio.
    pub fn decode(&mut self, packet: &[u8]) -> Vec<i16> {
        let mut out = vec![0i16; MAX_FRAME * 2];
        match self.dec.decode(packet, &mut out, false) {
            Ok(n) => {
                out.truncate(n * 2);
                out
            }
            Err(e) => {
                self.errors += 1;
                tracing::debug!("Opus decode error: {e}");
                self.conceal(960)
            }
        }
    }

    /// Packet-loss concealment for `samples` per channel.
    pub fn conceal(&mut self, samples: usize) -> Vec<i16> {
        let mut out = vec![0i16; samples.min(MAX_FRAME) * 2];
        match self.dec.decode(&[], &mut out, false) {
            Ok(n) => out.truncate(n * 2),
            Err(_) => out.iter_mut().for_each(|s| *s = 0),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 48 kHz stereo speech-like audio: a voiced buzz whose pitch and loudness move.
    /// The conversion the seek decoder's pictures get: black, white and the primaries'
    /// extremes where openh264's own conversion puts them.
    #[test]
    fn picture_from_planes_reaches_black_white_and_the_extremes() {
        let px = |y: u8, u: u8, v: u8| {
            let p = picture_from_planes(&[y; 4], &[u], &[v], (2, 2), (2, 1, 1));
            [p.rgba[0], p.rgba[1], p.rgba[2], p.rgba[3]]
        };
        assert_eq!(px(16, 128, 128), [0, 0, 0, 255]);
        assert_eq!(px(235, 128, 128), [255, 255, 255, 255]);
        // openh264's scalar conversion of the same (its own unit tests' values).
        assert_eq!(px(235, 240, 240)[..3], [255, 120, 255]);
        assert_eq!(px(235, 0, 240)[..3], [255, 214, 0]);
        assert_eq!(px(235, 240, 0)[..3], [50, 255, 255]);
    }

    fn voice(frames: usize) -> Vec<Vec<i16>> {
        let mut phase = 0f64;
        (0..frames)
            .map(|f| {
                let mut out = Vec::with_capacity(1920);
                for i in 0..960 {
                    let t = (f * 960 + i) as f64 / 48_000.0;
                    let pitch = 140.0 + 40.0 * (t * 3.0).sin();
                    phase += pitch / 48_000.0;
                    let env = 0.5 + 0.5 * (t * 5.0).sin().abs();
                    let v = (0..8)
                        .map(|h| {
                            ((phase * (h + 1) as f64) * std::f64::consts::TAU).sin()
                                / (h + 1) as f64
                        })
                        .sum::<f64>();
                    let s = (v * env * 6000.0) as i16;
                    out.extend([s, s]);
                }
                out
            })
            .collect()
    }

    /// Packets from libopus set up as a call's speech: in-band FEC on, 10 % expected loss.
    fn encode(pcm: &[Vec<i16>]) -> Vec<Vec<u8>> {
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Stereo, opus::Application::Voip).unwrap();
        enc.set_bitrate(opus::Bitrate::Bits(32_000)).unwrap();
        enc.set_inband_fec(true).unwrap();
        enc.set_packet_loss_perc(10).unwrap();
        pcm.iter()
            .map(|f| enc.encode_vec(f, 1500).unwrap())
            .collect()
    }

    /// Whether libopus, decoding packet `k + 1` with FEC after packets `..k`, gives anything
    /// but its packet loss concealment.
    fn has_fec_per_libopus(packets: &[Vec<u8>], k: usize) -> bool {
        let mut a = AudioDecoder::new().unwrap();
        let mut b = AudioDecoder::new().unwrap();
        for p in &packets[..k] {
            a.decode(p);
            b.decode(p);
        }
        let mut fec = vec![0i16; 1920];
        let n = a.dec.decode(&packets[k + 1], &mut fec, true).unwrap();
        assert_eq!(n, 960);
        let same = fec == b.conceal(960);
        assert_eq!(
            !same,
            livecast_proto::codec::opus::has_fec(&packets[k + 1]),
            "packet {}",
            k + 1
        );
        !same
    }

    fn energy_of_difference(a: &[i16], b: &[i16]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
            .sum()
    }

    #[test]
    fn a_lost_frame_is_recovered_from_the_next_packets_fec() {
        let packets = encode(&voice(60));
        // libopus codes LBRR data for the frames its voice detector calls active: whether a
        // packet has it is read from its first bits, and agrees with what libopus does with
        // it (with none, decoding with FEC is exactly packet loss concealment).
        let with_fec = (5..59)
            .filter(|&k| has_fec_per_libopus(&packets, k))
            .count();
        let flagged = (6..60)
            .filter(|&k| livecast_proto::codec::opus::has_fec(&packets[k]))
            .count();
        assert_eq!(with_fec, flagged);
        assert!(flagged > 10, "{flagged}");
        let ts = |i: usize| 1_000u32.wrapping_add(960 * i as u32);
        // Reference: every packet arrives.
        let mut all = AudioDecoder::new().unwrap();
        let reference: Vec<Vec<i16>> = packets
            .iter()
            .enumerate()
            .map(|(i, p)| all.decode_at(p, ts(i)).pcm)
            .collect();
        assert_eq!((all.recovered, all.concealed), (0, 0));

        // Packet `k` lost: packet `k + 1` brings it back (FEC), 960 samples before its own.
        let k = (20..49)
            .find(|&k| livecast_proto::codec::opus::has_fec(&packets[k + 1]))
            .expect("a packet with FEC data");
        let mut fec = AudioDecoder::new().unwrap();
        let mut got = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            if i == k {
                continue;
            }
            got.push(fec.decode_at(p, ts(i)));
        }
        assert_eq!((fec.recovered, fec.concealed), (1, 0));
        let d = &got[k];
        assert_eq!(d.lead_samples, 960);
        assert_eq!(d.pcm.len(), 2 * 1920);
        let (made_up, own) = d.pcm.split_at(1920);

        // The same loss with concealment only (packet loss concealment from libopus).
        let mut plc = AudioDecoder::new().unwrap();
        for (i, p) in packets.iter().enumerate().take(k) {
            plc.decode_at(p, ts(i));
        }
        let concealed = plc.conceal(960);
        let err_fec = energy_of_difference(made_up, &reference[k]);
        let err_plc = energy_of_difference(&concealed, &reference[k]);
        assert!(
            err_fec * 2.0 < err_plc,
            "FEC is closer to what was sent: {err_fec:.3e} vs concealment {err_plc:.3e}"
        );
        assert_eq!(own.len(), reference[k + 1].len());

        // Three lost in a row: two concealed, the last recovered; a long gap is no loss.
        let mut dec = AudioDecoder::new().unwrap();
        dec.decode_at(&packets[k - 3], ts(k - 3));
        let d = dec.decode_at(&packets[k + 1], ts(k + 1));
        assert_eq!(
            (dec.recovered, dec.concealed, d.lead_samples),
            (1, 2, 3 * 960)
        );
        let d = dec.decode_at(&packets[k + 8], ts(k + 8));
        assert_eq!(
            (dec.recovered, dec.concealed, d.lead_samples),
            (1, 2, 0),
            "a jump"
        );
        dec.discontinuity();
        let d = dec.decode_at(&packets[k + 10], ts(k + 10));
        assert_eq!(d.lead_samples, 0, "after a seek");
        // A CELT packet (music, test tones) carries no FEC: the lost frame is concealed.
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Stereo, opus::Application::Audio).unwrap();
        enc.set_bitrate(opus::Bitrate::Bits(128_000)).unwrap();
        let celt: Vec<Vec<u8>> = voice(3)
            .iter()
            .map(|f| enc.encode_vec(f, 1500).unwrap())
            .collect();
        let mut dec = AudioDecoder::new().unwrap();
        dec.decode_at(&celt[0], 0);
        dec.decode_at(&celt[2], 1920);
        let fec_in_celt = livecast_proto::codec::opus::has_fec(&celt[2]);
        assert_eq!(
            (dec.recovered, dec.concealed),
            if fec_in_celt { (1, 0) } else { (0, 1) }
        );
    }
}
