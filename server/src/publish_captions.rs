//! Captions of published paths: when captions are on and a publisher's audio is Opus, its
//! path gets a caption track of its own, made of the published audio.
//!
//! ```text
//! Paths::ingest ─> PublishedTrack (Opus) ─try_send─> decoder thread ─> CaptionTap ─> captioner
//!                   ours seq + timestamp             jitter buffer,    (captions::start, the
//!                                                    Opus → 48 kHz     shared whisper model)
//!                                                    stereo 20 ms      └─> text track of the path
//! ```
//!
//! * The ingest never waits: a packet goes into a bounded queue (2 s) or is dropped.
//! * The decoder thread puts the packets in sequence order ([`JitterBuffer`], up to 200 ms of
//!   waiting for a late one), decodes them with one Opus decoder, and cuts the audio into the
//!   20 ms frames the captioner takes. A gap in the timestamps (lost packets, or a packet that
//!   did not decode) of up to a second is filled by the decoder's loss concealment, so the
//!   audio stays continuous; a longer gap or a jump back starts the frames over.
//! * Each frame's capture time is the wall-clock time of its first sample on the path's audio
//!   clock: the published timestamps are mapped onto our track's clock at ingest (the
//!   publisher's first packet at its arrival time), and the track's [`RtpClock`] turns them
//!   into wall-clock time. The captioner stamps a caption with the capture time of its first
//!   word, and the caption track's sender reports use the same wall clock as the audio
//!   track's, so a player places the captions with the published audio.
//! * The whisper weights are loaded once and shared with our own stream's captioner
//!   ([`ModelSource`]); each path has its own whisper state and speech detector.
//! * When the publisher leaves, the path's queue sender is dropped: the decoder thread ends,
//!   then the captioner after its current pass, then the caption sender.

use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use livecast_proto::jitter::{JitterBuffer, JitterConfig, Released};
use livecast_proto::rtsp::server::RtpClock;
use livecast_proto::sdp::SessionDescription;
use livecast_proto::time::TimestampExtender;
use tracing::{debug, warn};

use crate::captions::{self, CaptionTap, CaptionWorker, ModelSource};
use crate::source::{AudioFrame, AUDIO_FRAME_SAMPLES};
use crate::track::Track;

/// Packets queued for the decoder thread (2 s of 20 ms packets).
const QUEUE: usize = 100;
/// Longest gap in the audio filled by loss concealment; a longer one starts over.
const MAX_CONCEALED: i64 = 48_000;
/// Opus's clock and our decoding rate.
const RATE: i64 = 48_000;

/// Which announced track the captions are made of: the first `audio` track whose format is
/// Opus. `Err` says why a path gets no captions.
pub fn opus_track(sdp: &SessionDescription) -> Result<usize, &'static str> {
    let encoding = |m: &livecast_proto::sdp::MediaDescription| {
        m.formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok())
            .filter_map(|pt| m.rtpmap(pt))
            .map(|r| r.encoding)
            .collect::<Vec<_>>()
    };
    if sdp
        .media
        .iter()
        .any(|m| encoding(m).iter().any(|e| e.eq_ignore_ascii_case("t140")))
    {
        return Err("the publisher sends a T.140 text track already");
    }
    let first = |m: &livecast_proto::sdp::MediaDescription| {
        let pt = m.formats.iter().find_map(|f| f.parse::<u8>().ok())?;
        m.rtpmap(pt).map(|r| r.encoding)
    };
    sdp.media
        .iter()
        .position(|m| {
            m.media.eq_ignore_ascii_case("audio")
                && first(m).is_some_and(|e| e.eq_ignore_ascii_case("opus"))
        })
        .ok_or("its audio is not Opus (or it has no audio)")
}

/// One packet of the published Opus track, as the ingest hands it over.
struct Fed {
    seq: u16,
    /// On our audio track's clock.
    timestamp: u32,
    payload: Vec<u8>,
    arrival: Instant,
}

/// What the ingest of a published Opus track feeds; dropping it stops the path's captioner.
pub struct CaptionFeed {
    tx: SyncSender<Fed>,
    dropped: u64,
}

impl CaptionFeed {
    /// One packet (its timestamp already on our track's clock); never blocks.
    pub fn send(&mut self, seq: u16, timestamp: u32, payload: &[u8]) {
        let fed = Fed {
            seq,
            timestamp,
            payload: payload.to_vec(),
            arrival: Instant::now(),
        };
        match self.tx.try_send(fed) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped += 1;
                if self.dropped.is_power_of_two() {
                    warn!(
                        dropped = self.dropped,
                        "published audio for captions is dropped: the decoder is behind"
                    );
                }
            }
        }
    }
}

/// Starts captioning a published path: the captioner on `text` (with models from `source`)
/// and the decoder of the Opus packets fed to the returned [`CaptionFeed`], whose
/// timestamps are on `audio`'s clock.
pub fn start(
    source: &ModelSource,
    path: &str,
    audio: RtpClock,
    text: Arc<Track>,
) -> anyhow::Result<(CaptionFeed, CaptionWorker)> {
    let models = source.models().context("captions for a published path")?;
    let (tap, worker) = captions::start(models, text)?;
    let (tx, rx) = sync_channel(QUEUE);
    let path = path.to_owned();
    thread::Builder::new()
        .name("caption-opus".into())
        .spawn(move || decode_loop(rx, audio, tap, &path))
        .context("spawn the published audio decoder")?;
    Ok((CaptionFeed { tx, dropped: 0 }, worker))
}

fn decode_loop(rx: Receiver<Fed>, clock: RtpClock, tap: CaptionTap, path: &str) {
    let mut decoder = match OpusFrames::new(clock) {
        Ok(d) => d,
        Err(e) => {
            warn!(path, "no captions: Opus decoder: {e}");
            return;
        }
    };
    let mut jitter: JitterBuffer<Vec<u8>> = JitterBuffer::new(
        RATE as u32,
        JitterConfig {
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            low_latency: false,
        },
    );
    loop {
        let now = Instant::now();
        while let Some(r) = jitter.pop(now) {
            if let Released::Packet(p) = r {
                decoder.packet(p.rtp_timestamp, &p.payload, &mut |f| tap.send(&f));
            }
        }
        let wait = jitter
            .next_deadline()
            .map_or(Duration::from_secs(1), |d| d.saturating_duration_since(now))
            .max(Duration::from_millis(1));
        match rx.recv_timeout(wait) {
            Ok(f) => jitter.push(f.seq, f.timestamp, false, f.payload, f.arrival),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    debug!(path, "published path ended: its captions stop");
}

/// Opus packets in sequence order → 20 ms frames of 48 kHz stereo with capture times.
struct OpusFrames {
    decoder: opus::Decoder,
    clock: RtpClock,
    extend: TimestampExtender,
    /// The first packet's extended timestamp and its wall-clock time.
    anchor: Option<(i64, SystemTime)>,
    /// Decoded samples not yet in a frame, interleaved, and the timestamp of the first.
    pending: Vec<i16>,
    pending_start: i64,
    /// Decoder output.
    buf: Vec<i16>,
}

impl OpusFrames {
    fn new(clock: RtpClock) -> anyhow::Result<Self> {
        Ok(Self {
            decoder: opus::Decoder::new(RATE as u32, opus::Channels::Stereo)?,
            clock,
            extend: TimestampExtender::new(),
            anchor: None,
            pending: Vec::new(),
            pending_start: 0,
            // The longest Opus packet: 120 ms.
            buf: vec![0; 5760 * 2],
        })
    }

    /// The wall-clock time of extended timestamp `ts`.
    fn wall(&self, ts: i64) -> SystemTime {
        let Some((t0, w0)) = self.anchor else {
            return SystemTime::now();
        };
        let us = (ts - t0) * 1_000_000 / RATE;
        if us >= 0 {
            w0 + Duration::from_micros(us as u64)
        } else {
            w0 - Duration::from_micros(us.unsigned_abs())
        }
    }

    /// The next packet in sequence order: decoded, a gap before it concealed, and every whole
    /// frame handed to `out`.
    fn packet(&mut self, timestamp: u32, payload: &[u8], out: &mut dyn FnMut(AudioFrame)) {
        let ts = self.extend.extend(timestamp);
        if self.anchor.is_none() {
            // Within ±12 h of the track's creation, which is when the path began.
            let ticks = i64::from(timestamp.wrapping_sub(self.clock.rtp_base) as i32);
            let us = ticks * 1_000_000 / i64::from(self.clock.clock_rate.max(1));
            let wall = if us >= 0 {
                self.clock.wall_epoch + Duration::from_micros(us as u64)
            } else {
                self.clock.wall_epoch - Duration::from_micros(us.unsigned_abs())
            };
            self.anchor = Some((ts, wall));
            self.pending_start = ts;
        }
        let expected = self.pending_start + (self.pending.len() / 2) as i64;
        let gap = ts - expected;
        if gap > 0 && gap <= MAX_CONCEALED {
            self.conceal(gap as usize);
        } else if gap != 0 {
            // A jump (a long outage, a restart): the frames start over here.
            self.pending.clear();
            self.pending_start = ts;
        }
        match self.decoder.decode(payload, &mut self.buf, false) {
            Ok(n) => self.pending.extend_from_slice(&self.buf[..n * 2]),
            Err(e) => debug!("published Opus packet not decoded: {e}"),
        }
        self.emit(out);
    }

    /// `samples` per channel of loss concealment (silence where the decoder gives none).
    fn conceal(&mut self, mut samples: usize) {
        while samples > 0 {
            // The decoder conceals in steps of 2.5 ms, at most 120 ms at once.
            let step = samples.min(5760) / 120 * 120;
            let got = if step > 0 {
                self.decoder
                    .decode(&[], &mut self.buf[..step * 2], false)
                    .unwrap_or(0)
                    .min(step)
            } else {
                0
            };
            if got == 0 {
                self.pending.resize(self.pending.len() + samples * 2, 0);
                return;
            }
            self.pending.extend_from_slice(&self.buf[..got * 2]);
            samples -= got;
        }
    }

    fn emit(&mut self, out: &mut dyn FnMut(AudioFrame)) {
        let len = AUDIO_FRAME_SAMPLES * 2;
        let mut at = 0;
        while self.pending.len() - at >= len {
            let capture = self.wall(self.pending_start);
            out(AudioFrame {
                samples: self.pending[at..at + len].to_vec(),
                capture,
            });
            at += len;
            self.pending_start += AUDIO_FRAME_SAMPLES as i64;
        }
        self.pending.drain(..at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> RtpClock {
        RtpClock {
            rtp_base: 4_000_000_000,
            clock_rate: 48_000,
            wall_epoch: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
        }
    }

    /// 20 ms Opus packets of a tone, with timestamps from `start`.
    fn packets(n: usize) -> Vec<Vec<u8>> {
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Stereo, opus::Application::Audio).unwrap();
        (0..n)
            .map(|i| {
                let pcm: Vec<i16> = (0..960 * 2)
                    .map(|k| {
                        let t = (i * 960 + k / 2) as f32 / 48_000.0;
                        ((t * 440.0 * std::f32::consts::TAU).sin() * 8000.0) as i16
                    })
                    .collect();
                enc.encode_vec(&pcm, 4000).unwrap()
            })
            .collect()
    }

    #[test]
    fn frames_carry_the_capture_time_of_the_audio_clock() {
        let c = clock();
        let mut d = OpusFrames::new(c).unwrap();
        let mut frames = Vec::new();
        // The first packet is 1 s after the clock's epoch, across the timestamp wrap.
        let first = c.rtp_base.wrapping_add(48_000);
        for (i, p) in packets(200).iter().enumerate() {
            let ts = first.wrapping_add((i * 960) as u32);
            d.packet(ts, p, &mut |f| frames.push(f));
        }
        assert_eq!(frames.len(), 200);
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(f.samples.len(), AUDIO_FRAME_SAMPLES * 2);
            let want = c.wall_epoch + Duration::from_secs(1) + Duration::from_millis(20 * i as u64);
            assert_eq!(f.capture, want, "frame {i}");
        }
        // The tone came through (not silence).
        let peak = frames[100].samples.iter().map(|s| s.unsigned_abs()).max();
        assert!(peak.unwrap() > 2000, "{peak:?}");
    }

    #[test]
    fn a_gap_is_concealed_and_a_jump_starts_over() {
        let c = clock();
        let mut d = OpusFrames::new(c).unwrap();
        let mut frames = Vec::new();
        let ps = packets(60);
        let first = c.rtp_base;
        for (i, p) in ps.iter().enumerate() {
            // Packets 10..13 lost.
            if (10..13).contains(&i) {
                continue;
            }
            let ts = first.wrapping_add((i * 960) as u32);
            d.packet(ts, p, &mut |f| frames.push(f));
        }
        // Every 20 ms has a frame, with the right times.
        assert_eq!(frames.len(), 60);
        assert_eq!(
            frames[59].capture,
            c.wall_epoch + Duration::from_millis(20 * 59)
        );
        // A jump of 10 s: the frames go on from there.
        let ts = first.wrapping_add(60 * 960 + 480_000);
        d.packet(ts, &ps[0], &mut |f| frames.push(f));
        assert_eq!(frames.len(), 61);
        assert_eq!(
            frames[60].capture,
            c.wall_epoch + Duration::from_millis(20 * 60 + 10_000)
        );
    }

    #[test]
    fn which_track_is_captioned() {
        let sdp = |body: &str| livecast_proto::sdp::parse(body).unwrap();
        let head = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n";
        let video = "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";
        let opus = "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 opus/48000/2\r\n";
        let aac = "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/44100/2\r\n";
        let text = "m=text 0 RTP/AVP 98\r\na=rtpmap:98 t140/1000\r\n";
        assert_eq!(opus_track(&sdp(&format!("{head}{video}{opus}"))), Ok(1));
        assert!(opus_track(&sdp(&format!("{head}{video}{aac}"))).is_err());
        assert!(opus_track(&sdp(&format!("{head}{video}"))).is_err());
        assert!(opus_track(&sdp(&format!("{head}{opus}{text}"))).is_err());
    }
}
