//! H.264 encoding with OpenH264 (Cisco's BSD-licensed encoder, built from source with NASM).
//!
//! Settings, chosen for live streaming to any RTSP player:
//! - **Constrained Baseline** profile (`profile-level-id 42c0xx`): no B-frames, CAVLC, so every
//!   decoder plays it and there is no reordering delay;
//! - rate control in **bitrate mode** at [`H264Config::bitrate_bps`], frame skipping off (a
//!   momentary quality dip is better than a stutter in a live picture, and the once-per-second
//!   white sync frame must never be dropped). OpenH264 would print a warning on stderr at
//!   start-up that the bitrate "can't be controlled" without skipping; in practice the
//!   quantiser tracks it (camera-like content at 2 and 4 Mbit/s came out at 1.97 and
//!   3.97 Mbit/s, see `livecast-encoder-bench`), so its log is set to quiet before it starts
//!   ([`quiet`]);
//! - an **IDR every `idr_interval_secs`** (plus on [`H264Encoder::request_idr`], which restarts
//!   the interval); each IDR
//!   access unit carries SPS and PPS in-band, with constant ids, so a player can join at any
//!   IDR and [`parameter_sets`] of any IDR gives the SDP `sprop-parameter-sets`;
//! - **one slice per picture** (fewest NAL units; RTP FU-A fragments it) and **one thread**:
//!   OpenH264's threading works by slices, and the server has audio and the network to run
//!   too. See `docs/benchmarks.md` for what one core sustains;
//! - scene-change detection off, so IDRs come only on the interval or on request (the
//!   once-per-second white test frame would otherwise trigger one every second);
//! - VUI: BT.601 limited range (what the sources produce).
//!
//! A frame whose size differs from the configured one recreates the encoder at the new size
//! (and so starts with an IDR).

use std::time::SystemTime;

use anyhow::Context as _;
use livecast_proto::codec::h264::{nal, nal_type, split_annexb};
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, Profile,
    RateControlMode, SpsPpsStrategy, UsageType, VuiConfig,
};
use openh264::formats::YUVSource;
use openh264::{OpenH264API, Timestamp};

use crate::source::VideoFrame;

/// Encoder settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct H264Config {
    /// Picture width (even).
    pub width: u32,
    /// Picture height (even).
    pub height: u32,
    /// Frame rate the stream is paced at.
    pub fps: u32,
    /// Target bitrate, bits per second.
    pub bitrate_bps: u32,
    /// Seconds between periodic IDRs; 0 means IDRs only on request.
    pub idr_interval_secs: u32,
}

impl Default for H264Config {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            fps: 30,
            bitrate_bps: 2_000_000,
            idr_interval_secs: 2,
        }
    }
}

impl H264Config {
    fn validate(&self) -> anyhow::Result<()> {
        crate::source::VideoConfig {
            width: self.width,
            height: self.height,
            fps: self.fps,
        }
        .validate()?;
        if !(10_000..=100_000_000).contains(&self.bitrate_bps) {
            anyhow::bail!(
                "H.264 bitrate {} bit/s out of range (10 kbit/s to 100 Mbit/s)",
                self.bitrate_bps
            );
        }
        Ok(())
    }

    fn openh264(&self) -> EncoderConfig {
        #[allow(clippy::cast_precision_loss)] // fps <= 240
        let fps = self.fps as f32;
        EncoderConfig::new()
            .profile(Profile::Baseline)
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            .bitrate(BitRate::from_bps(self.bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(fps))
            .skip_frames(false)
            .intra_frame_period(IntraFramePeriod::from_num_frames(
                self.fps.saturating_mul(self.idr_interval_secs),
            ))
            .sps_pps_strategy(SpsPpsStrategy::ConstantId)
            .scene_change_detect(false)
            .complexity(Complexity::Medium)
            .num_threads(1)
            .vui(VuiConfig::bt601())
    }
}

/// One encoded picture.
#[derive(Clone, Debug)]
pub struct EncodedVideo {
    /// All NAL units of the access unit, each with a start code (Annex B). IDR access units
    /// start with SPS and PPS.
    pub annexb: Vec<u8>,
    /// Whether this is an IDR picture (a point where a decoder can join).
    pub is_idr: bool,
    /// Wall-clock capture time of the source frame.
    pub capture: SystemTime,
    /// Source frame number.
    pub index: u64,
}

impl EncodedVideo {
    /// The NAL units without start codes.
    pub fn nal_units(&self) -> impl Iterator<Item = &[u8]> {
        split_annexb(&self.annexb)
    }
}

/// An OpenH264 encoder with the settings above.
pub struct H264Encoder {
    cfg: H264Config,
    encoder: Encoder,
    idr_requested: bool,
    frames: u64,
    /// Capture time of the first picture: encoder timestamps count from it.
    first_capture: Option<std::time::SystemTime>,
    temporal_layers: u8,
}

impl std::fmt::Debug for H264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Encoder")
            .field("cfg", &self.cfg)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

/// Borrows a [`VideoFrame`] as OpenH264 input without copying.
struct I420<'a>(&'a VideoFrame);

impl YUVSource for I420<'_> {
    fn dimensions(&self) -> (usize, usize) {
        (self.0.width as usize, self.0.height as usize)
    }

    fn strides(&self) -> (usize, usize, usize) {
        let w = self.0.width as usize;
        (w, w / 2, w / 2)
    }

    fn y(&self) -> &[u8] {
        &self.0.i420[..self.luma()]
    }

    fn u(&self) -> &[u8] {
        let l = self.luma();
        &self.0.i420[l..l + l / 4]
    }

    fn v(&self) -> &[u8] {
        let l = self.luma();
        &self.0.i420[l + l / 4..]
    }
}

impl I420<'_> {
    fn luma(&self) -> usize {
        self.0.width as usize * self.0.height as usize
    }
}

fn create(cfg: &H264Config, temporal_layers: u8) -> anyhow::Result<Encoder> {
    cfg.validate()?;
    let mut enc = Encoder::with_api_config(OpenH264API::from_source(), cfg.openh264())
        .context("cannot create the OpenH264 encoder")?;
    quiet::silence(&mut enc);
    if temporal_layers > 1 {
        // OpenH264 takes temporal layers only once initialised, which the openh264 crate
        // does at the first picture: a grey one, whose output is thrown away. Changing the
        // layers resets the encoder, so the first real picture is an IDR.
        let (w, h) = (cfg.width as usize, cfg.height as usize);
        let grey = openh264::formats::YUVBuffer::from_vec(vec![128; w * h * 3 / 2], w, h);
        enc.encode(&grey)
            .context("OpenH264 could not encode its first picture")?;
        if !layers::set(&mut enc, i32::from(temporal_layers)) {
            anyhow::bail!("OpenH264 refused {temporal_layers} temporal layers");
        }
    }
    Ok(enc)
}

/// Temporal layers ([`H264Encoder::with_temporal_layers`]): with two, every other picture is
/// a non-reference one (`nal_ref_idc` 0), which no other picture predicts from; a player
/// seeking in a recording skips those on its way from the keyframe to the target, and a loss
/// inside one damages nothing after it. Not used by the server: at the same bit rate
/// OpenH264's layered streams lost 3.5 to 7.6 dB of PSNR on panning content
/// (docs/benchmarks.md, "Seek"). OpenH264 takes layers only through its raw options, on an
/// initialised encoder.
#[allow(unsafe_code)]
mod layers {
    use openh264::encoder::Encoder;
    use openh264_sys2::{SEncParamExt, ENCODER_OPTION_SVC_ENCODE_PARAM_EXT};

    /// Sets `layers` temporal layers (the IDR period rounded up to a whole group of
    /// `2^(layers-1)` pictures, as OpenH264 requires).
    pub(super) fn set(enc: &mut Encoder, layers: i32) -> bool {
        let mut params = SEncParamExt::default();
        // SAFETY: `raw_api` is this encoder's own live OpenH264 instance, initialised by its
        // first encode (`create` encodes one picture before calling this). GetOption with
        // ENCODER_OPTION_SVC_ENCODE_PARAM_EXT copies one `SEncParamExt` into the pointer,
        // which points at `params`, alive and of that type for the whole call.
        let rc = unsafe {
            enc.raw_api().get_option(
                ENCODER_OPTION_SVC_ENCODE_PARAM_EXT,
                (&raw mut params).cast(),
            )
        };
        if rc != 0 {
            return false;
        }
        params.iTemporalLayerNum = layers;
        let group = 1 << (layers - 1);
        params.uiIntraPeriod = params.uiIntraPeriod.div_ceil(group) * group;
        // SAFETY: as above; SetOption reads one `SEncParamExt` through the pointer (it
        // copies it) and keeps no pointer to it.
        let rc = unsafe {
            enc.raw_api().set_option(
                ENCODER_OPTION_SVC_ENCODE_PARAM_EXT,
                (&raw mut params).cast(),
            )
        };
        rc == 0
    }
}

/// OpenH264's own log (C `fprintf` to stderr) off, before the encoder is initialised (which
/// happens at its first frame, and prints a warning at the default level). The openh264 crate
/// sets its trace level only after initialising, so this needs its raw API.
#[allow(unsafe_code)]
mod quiet {
    use openh264::encoder::Encoder;
    use openh264_sys2::{ENCODER_OPTION_TRACE_LEVEL, WELS_LOG_QUIET};

    pub(super) fn silence(enc: &mut Encoder) {
        let mut level = WELS_LOG_QUIET as std::os::raw::c_int;
        // SAFETY: `raw_api` is the encoder's own, live, OpenH264 instance (created by
        // `Encoder::with_api_config`, not yet initialised). OpenH264's SetOption accepts
        // ENCODER_OPTION_TRACE_LEVEL before InitializeExt and reads one `int` through the
        // pointer, which points at `level`, alive for the whole call; nothing keeps it.
        let rc = unsafe {
            enc.raw_api()
                .set_option(ENCODER_OPTION_TRACE_LEVEL, (&raw mut level).cast())
        };
        if rc != 0 {
            tracing::debug!(rc, "openh264: could not set its log level");
        }
    }
}

/// A running encoder's target bit rate, changed without a new encoder (so without a
/// keyframe): OpenH264 takes it only through its raw `SetOption`.
#[allow(unsafe_code)]
mod rate {
    use openh264::encoder::Encoder;
    use openh264_sys2::{
        SBitrateInfo, ENCODER_OPTION_BITRATE, ENCODER_OPTION_MAX_BITRATE, SPATIAL_LAYER_0,
        SPATIAL_LAYER_ALL,
    };

    /// The target and the layer's ceiling (twice the target). OpenH264 refuses a ceiling
    /// under the target at every step, so going up the ceiling is raised first, going down
    /// the target is lowered first.
    pub(super) fn set(enc: &mut Encoder, from: u32, bps: u32) -> bool {
        let bitrate = i32::try_from(bps).unwrap_or(i32::MAX);
        let ceiling = (
            ENCODER_OPTION_MAX_BITRATE,
            SPATIAL_LAYER_0,
            bitrate.saturating_mul(2),
        );
        let target = (ENCODER_OPTION_BITRATE, SPATIAL_LAYER_ALL, bitrate);
        let steps = if bps > from {
            [ceiling, target]
        } else {
            [target, ceiling]
        };
        let mut ok = true;
        for (option, layer, value) in steps {
            let mut info = SBitrateInfo {
                iLayer: layer,
                iBitrate: value,
            };
            // SAFETY: `raw_api` is this encoder's own live OpenH264 instance, initialised by
            // its first encode (callers only change the rate after one). For both options
            // SetOption reads one `SBitrateInfo` through the pointer, which points at `info`,
            // alive for the whole call; OpenH264 keeps no pointer to it.
            let rc = unsafe { enc.raw_api().set_option(option, (&raw mut info).cast()) };
            ok &= rc == 0;
        }
        ok
    }
}

impl H264Encoder {
    /// Changes the target bit rate of the running encoder, from the next picture on, without
    /// a keyframe. Before the first picture the new rate is simply the starting one.
    pub fn set_bitrate(&mut self, bps: u32) -> anyhow::Result<()> {
        let bps = bps.clamp(10_000, 100_000_000);
        if bps == self.cfg.bitrate_bps {
            return Ok(());
        }
        if self.frames == 0 {
            self.encoder = create(
                &H264Config {
                    bitrate_bps: bps,
                    ..self.cfg
                },
                self.temporal_layers,
            )?;
        } else if !rate::set(&mut self.encoder, self.cfg.bitrate_bps, bps) {
            anyhow::bail!("OpenH264 refused the bit rate {bps}");
        }
        self.cfg.bitrate_bps = bps;
        Ok(())
    }

    /// Restarts the encoder at `fps` and `bps` (the next picture is a keyframe).
    pub fn set_frame_rate(&mut self, fps: u32, bps: u32) -> anyhow::Result<()> {
        let cfg = H264Config {
            fps,
            bitrate_bps: bps.clamp(10_000, 100_000_000),
            ..self.cfg
        };
        if cfg != self.cfg {
            self.encoder = create(&cfg, self.temporal_layers)?;
            self.cfg = cfg;
            self.frames = 0;
        }
        Ok(())
    }

    /// Creates an encoder.
    ///
    /// # Errors
    /// An invalid size, rate or bitrate, or OpenH264 refusing to start.
    pub fn new(cfg: &H264Config) -> anyhow::Result<Self> {
        Self::with_temporal_layers(cfg, 1)
    }

    /// An encoder whose pictures are in `layers` temporal layers (1 to 4; see [`layers`]):
    /// for tests and benchmarks of players' handling of non-reference pictures.
    ///
    /// # Errors
    /// As [`H264Encoder::new`], or OpenH264 refusing the layers.
    pub fn with_temporal_layers(cfg: &H264Config, layers: u8) -> anyhow::Result<Self> {
        let layers = layers.clamp(1, 4);
        Ok(Self {
            encoder: create(cfg, layers)?,
            cfg: *cfg,
            idr_requested: false,
            frames: 0,
            first_capture: None,
            temporal_layers: layers,
        })
    }

    /// The current settings (the size follows the frames).
    #[must_use]
    pub fn config(&self) -> &H264Config {
        &self.cfg
    }

    /// Makes the next encoded picture an IDR (with SPS and PPS).
    pub fn request_idr(&mut self) {
        self.idr_requested = true;
    }

    /// Encodes one picture. `None` if the encoder produced nothing for it.
    ///
    /// # Errors
    /// A malformed frame (odd size, wrong buffer length) or an encoder failure.
    pub fn encode(&mut self, frame: &VideoFrame) -> anyhow::Result<Option<EncodedVideo>> {
        if !frame.is_well_formed() {
            anyhow::bail!(
                "malformed video frame {}: {}x{} with {} bytes (expected even dimensions and {} bytes)",
                frame.index,
                frame.width,
                frame.height,
                frame.i420.len(),
                crate::source::i420_len(frame.width, frame.height)
            );
        }
        if (frame.width, frame.height) != (self.cfg.width, self.cfg.height) {
            let cfg = H264Config {
                width: frame.width,
                height: frame.height,
                ..self.cfg
            };
            tracing::info!(
                "video size changed from {}x{} to {}x{}: restarting the H.264 encoder",
                self.cfg.width,
                self.cfg.height,
                cfg.width,
                cfg.height
            );
            self.encoder = create(&cfg, self.temporal_layers)?;
            self.cfg = cfg;
            self.frames = 0;
        }
        if self.idr_requested && self.frames > 0 {
            self.encoder.force_intra_frame();
        }
        self.idr_requested = false;
        // From the capture times, not the frame numbers: pictures may be left out (a lower
        // frame rate than the source's, see `set_frame_rate`).
        let first = *self.first_capture.get_or_insert(frame.capture);
        let millis = frame
            .capture
            .duration_since(first)
            .map_or(0, |d| d.as_millis() as u64);
        let bitstream = self
            .encoder
            .encode_at(&I420(frame), Timestamp::from_millis(millis))
            .with_context(|| format!("H.264 encoding of frame {} failed", frame.index))?;
        self.frames += 1;
        if matches!(bitstream.frame_type(), FrameType::Skip | FrameType::Invalid) {
            return Ok(None);
        }
        let annexb = bitstream.to_vec();
        if annexb.is_empty() {
            return Ok(None);
        }
        let is_idr = split_annexb(&annexb).any(|n| nal_type(n) == nal::IDR);
        Ok(Some(EncodedVideo {
            annexb,
            is_idr,
            capture: frame.capture,
            index: frame.index,
        }))
    }
}

/// The first SPS and PPS (without start codes) of an Annex B access unit, e.g. an IDR's.
#[must_use]
pub fn parameter_sets(annexb: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let sps = split_annexb(annexb).find(|n| nal_type(n) == nal::SPS)?;
    let pps = split_annexb(annexb).find(|n| nal_type(n) == nal::PPS)?;
    Some((sps.to_vec(), pps.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::testsrc::TestCard;
    use openh264::decoder::Decoder;
    use std::time::{Duration, UNIX_EPOCH};

    fn card_frames(w: u32, h: u32, fps: u32, n: u64) -> Vec<VideoFrame> {
        let card = TestCard::new(w, h, fps);
        (0..n)
            .map(|k| {
                card.render(
                    k,
                    UNIX_EPOCH + Duration::from_millis(k * 1000 / u64::from(fps)),
                )
            })
            .collect()
    }

    fn cfg(w: u32, h: u32) -> H264Config {
        H264Config {
            width: w,
            height: h,
            fps: 30,
            bitrate_bps: 500_000,
            idr_interval_secs: 2,
        }
    }

    fn types(au: &EncodedVideo) -> Vec<u8> {
        au.nal_units().map(nal_type).collect()
    }

    #[test]
    fn with_two_temporal_layers_every_other_picture_is_disposable() {
        let mut enc = H264Encoder::with_temporal_layers(
            &H264Config {
                idr_interval_secs: 1,
                ..cfg(320, 240)
            },
            2,
        )
        .expect("encoder");
        let mut dec = Decoder::new().expect("decoder");
        let aus: Vec<EncodedVideo> = card_frames(320, 240, 30, 65)
            .iter()
            .map(|f| enc.encode(f).expect("encodes").expect("a picture"))
            .collect();
        for (i, au) in aus.iter().enumerate() {
            // IDRs at 0, 30 and 60: the first picture is one, and the period holds.
            assert_eq!(au.is_idr, i % 30 == 0, "picture {i}");
            assert_eq!(
                livecast_proto::codec::h264::is_disposable(&au.annexb),
                i % 2 == 1,
                "picture {i}"
            );
            assert!(dec.decode(&au.annexb).is_ok(), "picture {i} decodes");
        }
        // A decoder given only the reference pictures decodes them all, and the same
        // pictures as with everything.
        let mut all = Decoder::new().expect("decoder");
        let mut refs = Decoder::new().expect("decoder");
        for (i, au) in aus.iter().enumerate().take(29) {
            let full = all.decode(&au.annexb).expect("decodes").map(|p| {
                let mut rgb = vec![0; 320 * 240 * 3];
                p.write_rgb8(&mut rgb);
                rgb
            });
            if i % 2 == 1 {
                continue;
            }
            let skipped = refs.decode(&au.annexb).expect("decodes").map(|p| {
                let mut rgb = vec![0; 320 * 240 * 3];
                p.write_rgb8(&mut rgb);
                rgb
            });
            assert!(skipped.is_some() && skipped == full, "picture {i}");
        }
    }

    /// Decodes and returns (width, height, mean luma).
    fn decode(dec: &mut Decoder, au: &[u8]) -> Option<(usize, usize, f64)> {
        let yuv = dec.decode(au).unwrap()?;
        let (w, h) = yuv.dimensions();
        let stride = yuv.strides().0;
        let sum: u64 = (0..h)
            .map(|row| {
                yuv.y()[row * stride..row * stride + w]
                    .iter()
                    .map(|&p| u64::from(p))
                    .sum::<u64>()
            })
            .sum();
        Some((w, h, sum as f64 / (w * h) as f64))
    }

    #[test]
    fn encodes_constrained_baseline_with_in_band_parameter_sets_and_decodes_back() {
        let mut enc = H264Encoder::new(&cfg(320, 240)).unwrap();
        let mut dec = Decoder::new().unwrap();
        let frames = card_frames(320, 240, 30, 60);
        let mut decoded = 0;
        for f in &frames {
            let au = enc.encode(f).unwrap().expect("frame skipping is off");
            assert_eq!(au.index, f.index);
            assert_eq!(au.capture, f.capture);
            assert!(au.annexb.starts_with(&[0, 0, 0, 1]));
            if f.index == 0 {
                assert!(au.is_idr);
                assert_eq!(types(&au), [7, 8, 5], "SPS, PPS, one IDR slice");
                let (sps, pps) = parameter_sets(&au.annexb).unwrap();
                assert_eq!(sps[1], 66, "profile_idc: Baseline");
                assert_eq!(
                    sps[2] & 0xc0,
                    0xc0,
                    "constraint_set0+1: Constrained Baseline"
                );
                assert_eq!(nal_type(&pps), 8);
            } else {
                assert!(!au.is_idr, "frame {}", f.index);
                assert_eq!(types(&au), [1], "one non-IDR slice, frame {}", f.index);
            }
            let (w, h, mean) = decode(&mut dec, &au.annexb).expect("a picture per access unit");
            assert_eq!((w, h), (320, 240));
            if f.index == 30 {
                assert!(mean > 200.0, "white frame decodes bright: {mean}");
            } else if f.index > 0 && f.index != 30 {
                assert!(mean < 200.0, "frame {}: {mean}", f.index);
            }
            decoded += 1;
        }
        assert_eq!(decoded, 60);
    }

    #[test]
    fn idrs_come_on_the_interval_and_on_request() {
        let mut enc = H264Encoder::new(&H264Config {
            idr_interval_secs: 1,
            ..cfg(160, 120)
        })
        .unwrap();
        let mut idrs = Vec::new();
        let mut first_parameter_sets = None;
        for f in &card_frames(160, 120, 30, 80) {
            if f.index == 45 {
                enc.request_idr();
            }
            let au = enc.encode(f).unwrap().unwrap();
            if au.is_idr {
                assert_eq!(types(&au)[..2], [7, 8]);
                // Constant ids: every IDR repeats the same SPS and PPS.
                let ps = parameter_sets(&au.annexb).unwrap();
                assert_eq!(first_parameter_sets.get_or_insert_with(|| ps.clone()), &ps);
                idrs.push(f.index);
            }
        }
        // A requested IDR restarts the interval.
        assert_eq!(idrs, [0, 30, 45, 75]);
    }

    #[test]
    fn a_size_change_restarts_with_an_idr_at_the_new_size() {
        let mut enc = H264Encoder::new(&cfg(320, 240)).unwrap();
        let mut dec = Decoder::new().unwrap();
        let big = card_frames(320, 240, 30, 3);
        let small = card_frames(176, 144, 30, 3);
        for f in &big {
            let au = enc.encode(f).unwrap().unwrap();
            assert_eq!(decode(&mut dec, &au.annexb).unwrap().0, 320);
        }
        for (i, f) in small.iter().enumerate() {
            let au = enc.encode(f).unwrap().unwrap();
            assert_eq!(au.is_idr, i == 0);
            assert_eq!(decode(&mut dec, &au.annexb).unwrap().0, 176);
        }
        assert_eq!((enc.config().width, enc.config().height), (176, 144));
    }

    #[test]
    fn malformed_frames_and_configs_are_errors() {
        let mut enc = H264Encoder::new(&cfg(320, 240)).unwrap();
        let mut f = card_frames(320, 240, 30, 2).pop().unwrap();
        f.i420.truncate(1000);
        let msg = enc.encode(&f).unwrap_err().to_string();
        assert!(msg.contains("malformed video frame"), "{msg}");
        f.width = 321;
        assert!(enc.encode(&f).is_err());
        assert!(H264Encoder::new(&cfg(321, 240)).is_err());
        assert!(H264Encoder::new(&H264Config {
            bitrate_bps: 0,
            ..cfg(320, 240)
        })
        .is_err());
    }

    #[test]
    fn the_bitrate_is_roughly_respected() {
        let mut enc = H264Encoder::new(&cfg(320, 240)).unwrap();
        let bytes: usize = card_frames(320, 240, 30, 90)
            .iter()
            .map(|f| enc.encode(f).unwrap().unwrap().annexb.len())
            .sum();
        let bps = bytes as f64 * 8.0 / 3.0;
        assert!(
            (100_000.0..1_000_000.0).contains(&bps),
            "{bps} bit/s for a 500 kbit/s target"
        );
    }

    #[test]
    fn the_bitrate_changes_without_a_keyframe_both_ways() {
        let frames = card_frames(320, 240, 15, 20);
        let mut enc = H264Encoder::new(&H264Config {
            fps: 15,
            bitrate_bps: 30_000,
            ..cfg(320, 240)
        })
        .unwrap();
        let mut idrs = 0;
        for (i, f) in frames.iter().enumerate() {
            if i == 3 {
                enc.set_bitrate(600_000).unwrap();
            }
            if i == 10 {
                enc.set_bitrate(40_000).unwrap();
            }
            if enc.encode(f).unwrap().is_some_and(|e| e.is_idr) {
                idrs += 1;
            }
        }
        assert_eq!(enc.config().bitrate_bps, 40_000);
        assert_eq!(idrs, 1, "only the first picture is a keyframe");
    }

    #[test]
    fn parameter_sets_are_the_first_sps_and_pps() {
        let stream = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 0, 1, 0x65, 4, 5, 0,
        ];
        assert_eq!(
            parameter_sets(&stream),
            Some((vec![0x67, 1, 2], vec![0x68, 3]))
        );
        assert_eq!(parameter_sets(&[0, 0, 1, 0x65, 1]), None);
    }
}
