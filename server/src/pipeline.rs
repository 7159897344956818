//! Capture -> encode -> packetize -> fan out: one capture and one encode per track, whatever the
//! number of clients.
//!
//! Each track runs two threads: the encoder thread (source frames in, RTP packets out) and the
//! fan-out thread ([`Track::deliver`]), joined by a short bounded queue so a burst of sends to
//! many clients never delays the next encode. Sources pace themselves in real time.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, Context};
use livecast_proto::codec::h264;
use livecast_proto::rtp::{self, RtpHeader};
use tracing::{debug, info, warn};

use crate::captions::CaptionTap;
use crate::encode::h264::{parameter_sets, H264Config, H264Encoder};
use crate::encode::opus::OpusEncoder;
use crate::encode::scale;
use crate::hooks::MediaHooks;
use crate::hooks::VideoTarget;
use crate::source::container::{self, EncodedUnit, FileKind, FileVideoInfo};
use crate::source::{
    start_audio_looped, start_video, AudioFrame, AudioSpec, MediaClock, SourceHandle, VideoConfig,
    VideoFrame, VideoSpec,
};
use crate::track::{KeyframeLimiter, OutPacket, Track, KEYFRAME_MIN_GAP};

/// Largest RTP packet we send (header included): fits a 1500-byte Ethernet MTU with IPv6, UDP
/// and an interleaved/tunnel margin.
pub const MAX_RTP_PACKET: usize = 1400;

/// What the encoders are told.
#[derive(Clone, Debug)]
pub struct MediaConfig {
    pub video: VideoSpec,
    pub audio: AudioSpec,
    pub video_cfg: VideoConfig,
    pub video_bitrate: u32,
    pub audio_bitrate: u32,
    pub idr_interval_secs: u32,
    /// Mute, camera off, audio processing and self-view (call mode); default: none.
    pub hooks: MediaHooks,
    /// Fan-out threads per track, each sending to its share of the viewers; 0: one per core.
    pub fanout_threads: usize,
    /// Further sizes of the video (renditions, `--renditions` after its first size), each one
    /// more encoder of the same pictures, scaled; none by default.
    pub renditions: Vec<(u32, u32)>,
}

impl MediaConfig {
    /// Fan-out threads per track: as configured, or one per core.
    pub fn fanout_threads(&self) -> usize {
        match self.fanout_threads {
            0 => thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// The bit rate of a rendition of `size`: the main one's scaled by pixel count, at least
    /// 100 kbit/s.
    pub fn rendition_bitrate(&self, size: (u32, u32)) -> u32 {
        let main = u64::from(self.video_cfg.width) * u64::from(self.video_cfg.height);
        let this = u64::from(size.0) * u64::from(size.1);
        let b = u64::from(self.video_bitrate) * this / main.max(1);
        u32::try_from(b).unwrap_or(u32::MAX).max(100_000)
    }
}

/// What the SDP needs to know about the video, known after the first keyframe.
#[derive(Clone, Debug)]
pub struct VideoParams {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
}

/// The running media pipeline; dropping it stops the sources (and so the threads).
pub struct Pipeline {
    pub video_params: VideoParams,
    /// Each rendition's, in the order of [`MediaConfig::renditions`].
    pub rendition_params: Vec<VideoParams>,
    pub video_source: String,
    pub audio_source: String,
    _sources: Vec<SourceHandle>,
}

/// The parameter sets an encoder thread publishes with its first keyframe, waited for up to
/// 10 s: `None` if none came in time, an error (`panicked`) if the thread died holding the
/// lock.
fn first_params(
    slot: &(Mutex<Option<VideoParams>>, Condvar),
    panicked: &'static str,
) -> Option<anyhow::Result<VideoParams>> {
    let (lock, cv) = slot;
    let guard = match lock.lock() {
        Ok(g) => g,
        Err(_) => return Some(Err(anyhow!(panicked))),
    };
    match cv.wait_timeout_while(guard, Duration::from_secs(10), |p| p.is_none()) {
        Ok((guard, _)) => guard.clone().map(Ok),
        Err(_) => Some(Err(anyhow!(panicked))),
    }
}

/// Starts sources, encoders and fan-out threads feeding `video` and `audio`, and waits for the
/// first keyframe (so DESCRIBE can always answer with parameter sets).
pub fn start(
    cfg: &MediaConfig,
    clock: MediaClock,
    video: Arc<Track>,
    audio: Arc<Track>,
    captions: Option<CaptionTap>,
    renditions: Vec<Arc<Track>>,
) -> anyhow::Result<Pipeline> {
    let (atx, arx) = sync_channel::<AudioFrame>(16);
    let params: Arc<(Mutex<Option<VideoParams>>, Condvar)> = Default::default();
    let vfan = spawn_fanout(video.clone(), "video-fanout")?;
    let out = VideoOut::new(video.clone(), vfan, params.clone());
    // An MP4 or Matroska file's H.264 goes out as it is; everything else is encoded here.
    let mut audio_loop = None;
    let mut rendition_waits = Vec::new();
    let passthrough = passthrough_file(&cfg.video)?;
    if passthrough.is_some() && !cfg.renditions.is_empty() {
        return Err(anyhow!(
            "renditions need pictures to encode: a file's H.264 passed through has none"
        ));
    }
    let vsrc = if let Some(path) = passthrough {
        let (utx, urx) = sync_channel::<EncodedUnit>(8);
        let (vsrc, info) = container::start(path, clock, utx).context("video source")?;
        // The same file's audio loops with its video, so the two never drift apart.
        if matches!(&cfg.audio, AudioSpec::File(a) if a == path) {
            audio_loop = info.loop_length;
        }
        thread::Builder::new()
            .name("video-passthru".into())
            .spawn(move || passthrough_loop(urx, out, &info))
            .context("spawn video pass-through")?;
        vsrc
    } else {
        let (vtx, mut vrx) = sync_channel::<VideoFrame>(4);
        let vsrc = start_video(&cfg.video, &cfg.video_cfg, clock, vtx).context("video source")?;
        if !cfg.renditions.is_empty() {
            let mut extra = Vec::new();
            for (&size, track) in cfg.renditions.iter().zip(renditions) {
                let (tx, rx) = sync_channel::<VideoFrame>(4);
                let p: Arc<(Mutex<Option<VideoParams>>, Condvar)> = Default::default();
                let fan = spawn_fanout(track.clone(), "rendition-fanout")?;
                let out = VideoOut::new(track.clone(), fan, p.clone());
                let rcfg = MediaConfig {
                    video_bitrate: cfg.rendition_bitrate(size),
                    hooks: MediaHooks::default(),
                    renditions: Vec::new(),
                    ..cfg.clone()
                };
                let target = VideoTarget {
                    width: size.0,
                    height: size.1,
                    fps: cfg.video_cfg.fps,
                    bitrate: rcfg.video_bitrate,
                };
                info!(size = ?size, bitrate = rcfg.video_bitrate, "rendition");
                thread::Builder::new()
                    .name("rendition-encoder".into())
                    .spawn(move || video_encoder_loop(rcfg, rx, track, out, Some(target)))
                    .context("spawn rendition encoder")?;
                extra.push(tx);
                rendition_waits.push(p);
            }
            // One capture for every encoder: the main one gets each picture as before (the
            // source waits for it); a rendition's encoder that is behind misses a picture.
            let (mtx, mrx) = sync_channel::<VideoFrame>(4);
            let source = std::mem::replace(&mut vrx, mrx);
            thread::Builder::new()
                .name("video-split".into())
                .spawn(move || {
                    for frame in source {
                        for tx in &extra {
                            let _ = tx.try_send(frame.clone());
                        }
                        if mtx.send(frame).is_err() {
                            break;
                        }
                    }
                })
                .context("spawn video split")?;
        }
        let enc_cfg = cfg.clone();
        thread::Builder::new()
            .name("video-encoder".into())
            .spawn(move || video_encoder_loop(enc_cfg, vrx, video, out, None))
            .context("spawn video encoder")?;
        vsrc
    };
    let asrc = start_audio_looped(&cfg.audio, audio_loop, clock, atx).context("audio source")?;
    // Debug, not info: the banner says what is streamed. scripts/caption_metrics.py anchors
    // a WAV's timeline on this line's time (RUST_LOG=livecast_server::pipeline=debug).
    debug!(video = %vsrc.description, audio = %asrc.description, "sources started");

    let afan = spawn_fanout(audio.clone(), "audio-fanout")?;
    let abitrate = cfg.audio_bitrate;
    let mut opus = OpusEncoder::new(abitrate as i32).context("Opus encoder")?;
    let hooks = cfg.hooks.clone();
    thread::Builder::new()
        .name("audio-encoder".into())
        .spawn(move || audio_encoder_loop(&mut opus, arx, audio, afan, captions, &hooks))
        .context("spawn audio encoder")?;

    let video_params = first_params(&params, "encoder thread panicked").ok_or_else(|| {
        anyhow!(
            "no video keyframe within 10 s (is the video source producing frames? a file \
             passed through must have a keyframe in its first 10 s)"
        )
    })??;
    let mut rendition_params = Vec::new();
    for p in rendition_waits {
        let got = first_params(&p, "rendition encoder panicked").transpose()?;
        rendition_params.push(got.context("no rendition keyframe within 10 s")?);
    }
    Ok(Pipeline {
        video_params,
        rendition_params,
        video_source: vsrc.description.clone(),
        audio_source: asrc.description.clone(),
        _sources: vec![vsrc, asrc],
    })
}

/// Access units queued for a fan-out thread at most: about a second of video. Beyond it the
/// encoder drops the frame (for every viewer, consuming no sequence numbers) rather than wait.
const FANOUT_QUEUE: usize = 32;

/// One fan-out thread's queue, and how many access units it holds or is sending.
type ShardQueue = (SyncSender<Arc<[OutPacket]>>, Arc<AtomicUsize>);

/// The encoder's handle on a track's fan-out threads, one per shard of its subscribers: each
/// access unit goes to all of them, or (when any is that far behind) to none.
struct Fanout {
    track: Arc<Track>,
    shards: Vec<ShardQueue>,
}

impl Fanout {
    /// Hands an access unit to every fan-out thread; `false` (and nothing sent) when one of
    /// them is [`FANOUT_QUEUE`] access units behind.
    fn try_send(&self, packets: Vec<OutPacket>) -> bool {
        if self
            .shards
            .iter()
            .any(|(_, queued)| queued.load(Ordering::Acquire) >= FANOUT_QUEUE)
        {
            return false;
        }
        self.track.count(&packets);
        let au: Arc<[OutPacket]> = packets.into();
        self.track.remember(&au, Instant::now());
        for (tx, queued) in &self.shards {
            // Never blocks: this is the only sender, and the queue has room (checked above).
            queued.fetch_add(1, Ordering::AcqRel);
            if tx.send(au.clone()).is_err() {
                queued.fetch_sub(1, Ordering::AcqRel);
            }
        }
        true
    }
}

fn spawn_fanout(track: Arc<Track>, name: &str) -> anyhow::Result<Fanout> {
    let mut shards = Vec::new();
    for shard in 0..track.shard_count() {
        let (tx, rx) = sync_channel::<Arc<[OutPacket]>>(FANOUT_QUEUE);
        let queued = Arc::new(AtomicUsize::new(0));
        let (t, q) = (track.clone(), queued.clone());
        thread::Builder::new()
            .name(format!("{name}-{shard}"))
            .spawn(move || {
                for au in rx {
                    t.deliver_shard(shard, &au, Instant::now());
                    q.fetch_sub(1, Ordering::AcqRel);
                }
            })
            .context("spawn fan-out thread")?;
        shards.push((tx, queued));
    }
    Ok(Fanout { track, shards })
}

/// The video track's sending end, whoever makes the access units (the encoder, or a file
/// passed through): packetizes them, numbers the packets, hands them to the fan-out, clears
/// keyframe requests at each keyframe and publishes the first keyframe's parameter sets.
struct VideoOut {
    track: Arc<Track>,
    fanout: Fanout,
    params: Arc<(Mutex<Option<VideoParams>>, Condvar)>,
    packetizer: h264::Packetizer,
    payloads: Vec<h264::Payload>,
    dropped_frames: u64,
    seq: u16,
}

impl VideoOut {
    fn new(
        track: Arc<Track>,
        fanout: Fanout,
        params: Arc<(Mutex<Option<VideoParams>>, Condvar)>,
    ) -> Self {
        Self {
            track,
            fanout,
            params,
            packetizer: h264::Packetizer::new(MAX_RTP_PACKET - rtp::RTP_HEADER_LEN),
            payloads: Vec::new(),
            dropped_frames: 0,
            seq: rand::random(),
        }
    }

    /// Sends one access unit; `(width, height, fps)` describe the stream for the SDP.
    fn send(&mut self, annexb: &[u8], is_idr: bool, capture: SystemTime, size: (u32, u32, u32)) {
        let track = &self.track;
        if is_idr {
            track.clear_keyframe_request();
            if let Some((sps, pps)) = parameter_sets(annexb) {
                let (lock, cv) = &*self.params;
                if let Ok(mut p) = lock.lock() {
                    if p.is_none() {
                        debug!(sps = sps.len(), pps = pps.len(), "first keyframe");
                        *p = Some(VideoParams {
                            width: size.0,
                            height: size.1,
                            fps: size.2,
                            sps,
                            pps,
                        });
                        cv.notify_all();
                    }
                }
            }
        }
        self.payloads.clear();
        self.packetizer.packetize(annexb, &mut self.payloads);
        let ts = track.rtp_timestamp_at(capture);
        let seq = self.seq;
        let packets = self
            .payloads
            .iter()
            .enumerate()
            .map(|(i, p)| OutPacket {
                bytes: rtp_packet(track, seq.wrapping_add(i as u16), p.marker, ts, &p.data),
                starts_keyframe: is_idr && i == 0,
            })
            .collect();
        // Sequence numbers advance only for packets that go out, so a frame dropped here
        // (fan-out saturated) leaves no gap that clients would count as network loss.
        if self.fanout.try_send(packets) {
            self.seq = seq.wrapping_add(self.payloads.len() as u16);
        } else {
            self.dropped_frames += 1;
            track.note_dropped_frame();
            if self.dropped_frames.is_power_of_two() {
                warn!(
                    dropped_frames = self.dropped_frames,
                    "video fan-out is behind; dropping frames"
                );
            }
        }
    }
}

/// The file behind `--video file:PATH` when it is a container whose H.264 is passed through.
fn passthrough_file(spec: &VideoSpec) -> anyhow::Result<Option<&Path>> {
    match spec {
        VideoSpec::File(path) => match container::file_kind(path)? {
            FileKind::Y4m => Ok(None),
            FileKind::Mp4 | FileKind::Matroska => Ok(Some(path)),
        },
        _ => Ok(None),
    }
}

/// Whether `--video` names a file whose H.264 is sent as it is (no encoder, so no keyframes on
/// request: joiners start from the last keyframe the fan-out kept).
pub fn is_passthrough(spec: &VideoSpec) -> bool {
    matches!(passthrough_file(spec), Ok(Some(_)))
}

/// Sends a file's access units as they come (the source paces them).
fn passthrough_loop(units: Receiver<EncodedUnit>, mut out: VideoOut, info: &FileVideoInfo) {
    for u in units {
        out.send(
            &u.annexb,
            u.is_idr,
            u.capture,
            (info.width, info.height, info.fps),
        );
    }
    debug!("video file source ended");
}

fn video_encoder_loop(
    cfg: MediaConfig,
    frames: Receiver<VideoFrame>,
    track: Arc<Track>,
    mut out: VideoOut,
    fixed: Option<VideoTarget>,
) {
    let mut encoder: Option<(u32, u32, H264Encoder)> = None;
    let mut limiter = KeyframeLimiter::new(KEYFRAME_MIN_GAP);
    // Quality adaptation (a call), or a rendition's size: the picture, frame rate and bit
    // rate asked for.
    let mut target: Option<VideoTarget> = fixed;
    let mut target_seen = 0u64;
    for mut frame in frames {
        cfg.hooks.video_frame(&mut frame);
        if let Some(t) = cfg.hooks.controls.video_target_since(&mut target_seen) {
            target = Some(t);
            if let Some((_, _, enc)) = encoder.as_mut() {
                retarget(enc, t, cfg.video_cfg.fps);
            }
        }
        if let Some(t) = target {
            if !scale::keep_picture(frame.index, cfg.video_cfg.fps, t.fps) {
                continue;
            }
            if (t.width, t.height) != (frame.width, frame.height) {
                frame = scale::scale_i420(&frame, t.width, t.height);
            }
        }
        // (Re)create the encoder on the first frame and whenever the size changes.
        if encoder
            .as_ref()
            .is_none_or(|(w, h, _)| *w != frame.width || *h != frame.height)
        {
            let c = H264Config {
                width: frame.width,
                height: frame.height,
                fps: target.map_or(cfg.video_cfg.fps, |t| t.fps.min(cfg.video_cfg.fps)),
                bitrate_bps: target.map_or(cfg.video_bitrate, |t| t.bitrate),
                idr_interval_secs: cfg.idr_interval_secs,
            };
            match H264Encoder::new(&c) {
                Ok(e) => encoder = Some((frame.width, frame.height, e)),
                Err(e) => {
                    warn!("H.264 encoder for {}x{}: {e:#}", frame.width, frame.height);
                    continue;
                }
            }
        }
        let Some((_, _, enc)) = encoder.as_mut() else {
            continue;
        };
        let now = Instant::now();
        if track.keyframe_requested() && limiter.allow(now) {
            enc.request_idr();
        }
        let encoded = match enc.encode(&frame) {
            Ok(Some(e)) => e,
            Ok(None) => continue,
            Err(e) => {
                warn!(frame = frame.index, "H.264 encode failed: {e:#}");
                continue;
            }
        };
        if encoded.is_idr {
            limiter.note_keyframe(now);
        }
        out.send(
            &encoded.annexb,
            encoded.is_idr,
            encoded.capture,
            (frame.width, frame.height, cfg.video_cfg.fps),
        );
    }
    debug!("video source ended");
}

/// Applies a new target to the running encoder: a new frame rate restarts it (the size
/// change that comes with it would anyway), a new bit rate alone does not.
fn retarget(enc: &mut H264Encoder, t: VideoTarget, source_fps: u32) {
    let fps = t.fps.clamp(1, source_fps.max(1));
    let r = if fps == enc.config().fps {
        enc.set_bitrate(t.bitrate)
    } else {
        enc.set_frame_rate(fps, t.bitrate)
    };
    if let Err(e) = r {
        warn!(
            "video quality change to {}x{}@{fps} {} bit/s: {e:#}",
            t.width, t.height, t.bitrate
        );
    }
}

fn audio_encoder_loop(
    opus: &mut OpusEncoder,
    frames: Receiver<AudioFrame>,
    track: Arc<Track>,
    fanout: Fanout,
    captions: Option<CaptionTap>,
    hooks: &MediaHooks,
) {
    let mut seq: u16 = rand::random();
    let mut processor = hooks.audio_processor();
    for mut frame in frames {
        hooks.audio_frame(&mut processor, &mut frame);
        if let Some(c) = &captions {
            c.send(&frame);
        }
        let data = match opus.encode(&frame) {
            Ok(d) => d,
            Err(e) => {
                warn!("Opus encode failed: {e:#}");
                continue;
            }
        };
        let ts = track.rtp_timestamp_at(frame.capture);
        let packet = OutPacket {
            bytes: rtp_packet(&track, seq, false, ts, &data),
            starts_keyframe: true,
        };
        if fanout.try_send(vec![packet]) {
            seq = seq.wrapping_add(1);
        }
    }
    debug!("audio source ended");
}

/// Builds one RTP packet with the server-side sequence number `seq`.
pub(crate) fn rtp_packet(
    track: &Track,
    seq: u16,
    marker: bool,
    timestamp: u32,
    payload: &[u8],
) -> Vec<u8> {
    let header = RtpHeader {
        marker,
        payload_type: track.info.payload_type,
        sequence: seq,
        timestamp,
        ssrc: track.info.ssrc,
    };
    let mut out = Vec::with_capacity(rtp::RTP_HEADER_LEN + payload.len());
    rtp::write(&header, payload, &mut out);
    out
}
