//! Camera source (`--video camera[:INDEX]`) through nokhwa (V4L2 on Linux).
//!
//! The camera mode is chosen to reach the requested rate first, then the requested size (the
//! smallest mode at least that large), preferring YUYV (converted directly) over NV12 and
//! MJPEG (decoded by nokhwa). Pictures are scaled (nearest neighbour) to the configured size and
//! converted to I420 (BT.601 limited range); a camera faster than the requested rate is
//! decimated. Frames are stamped with their arrival time on the [`MediaClock`].
//!
//! Not exercised on hardware by the test suite (CI machines have no camera): the conversions
//! and mode choice are unit-tested, the no-camera path is tested for a clear error.

use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType};
use nokhwa::Camera;

use super::{i420_len, spawn_source, MediaClock, SourceCtx, SourceHandle, VideoConfig, VideoFrame};

const ALTERNATIVES: &str = "use --video testsrc or --video file:PATH.y4m";

/// Whether a camera looks present, without opening anything.
pub(crate) fn probe() -> Result<(), String> {
    if cfg!(target_os = "linux") {
        let found = std::fs::read_dir("/dev").is_ok_and(|dir| {
            dir.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("video"))
        });
        if found {
            Ok(())
        } else {
            Err("no camera found (no /dev/video*)".to_owned())
        }
    } else {
        match nokhwa::query(nokhwa::utils::ApiBackend::Auto) {
            Ok(list) if !list.is_empty() => Ok(()),
            Ok(_) => Err("no camera found".to_owned()),
            Err(e) => Err(format!("no camera found ({e})")),
        }
    }
}

pub(crate) fn start(
    index: Option<u32>,
    cfg: &VideoConfig,
    clock: MediaClock,
    out: SyncSender<VideoFrame>,
    ctx: SourceCtx,
) -> anyhow::Result<SourceHandle> {
    probe().map_err(|why| anyhow::anyhow!("{why}: {ALTERNATIVES}"))?;
    let idx = index.unwrap_or(0);
    let cfg = *cfg;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<String, String>>();
    let mut handle = spawn_source("camera", format!("camera {idx}"), ctx, move |ctx| {
        let mut camera = match open(idx, &cfg) {
            Ok((camera, description)) => {
                let _ = ready_tx.send(Ok(description));
                camera
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        run(&mut camera, &cfg, clock, &out, &ctx);
        if let Err(e) = camera.stop_stream() {
            tracing::debug!("camera {idx}: stopping the stream: {e}");
        }
    })?;
    match ready_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(description)) => {
            handle.description = description;
            Ok(handle)
        }
        Ok(Err(e)) => anyhow::bail!("camera {idx}: {e}: {ALTERNATIVES}"),
        Err(_) => anyhow::bail!("camera {idx}: did not start within 10 s: {ALTERNATIVES}"),
    }
}

fn open(idx: u32, cfg: &VideoConfig) -> Result<(Camera, String), String> {
    let any = RequestedFormat::new::<RgbFormat>(RequestedFormatType::None);
    let mut camera =
        Camera::new(CameraIndex::Index(idx), any).map_err(|e| format!("cannot open: {e}"))?;
    let formats = camera
        .compatible_camera_formats()
        .map_err(|e| format!("cannot list its modes: {e}"))?;
    let mode = choose_mode(&formats, cfg)
        .ok_or("it offers no usable mode (YUYV, NV12, MJPEG, GRAY, RGB)")?;
    camera
        .set_camera_requset(RequestedFormat::new::<RgbFormat>(
            RequestedFormatType::Exact(mode),
        ))
        .map_err(|e| format!("cannot select {mode}: {e}"))?;
    camera
        .open_stream()
        .map_err(|e| format!("cannot start streaming: {e}"))?;
    let name = camera.info().human_name();
    let description = format!(
        "camera {idx} ({name}) {}x{}@{}",
        cfg.width, cfg.height, cfg.fps
    );
    tracing::info!(
        "{description}: camera mode {} {}x{}@{}",
        mode.format(),
        mode.width(),
        mode.height(),
        mode.frame_rate()
    );
    Ok((camera, description))
}

fn run(
    camera: &mut Camera,
    cfg: &VideoConfig,
    clock: MediaClock,
    out: &SyncSender<VideoFrame>,
    ctx: &SourceCtx,
) {
    // Decimation: a frame is kept when at least 3/4 of a period passed since the last one.
    let min_gap = Duration::from_secs(1) / cfg.fps * 3 / 4;
    let mut last: Option<Instant> = None;
    let mut index = 0u64;
    let mut bad_frames = 0u64;
    while !ctx.stopped() {
        let buffer = match camera.frame() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("camera: {e}; stopping the video source");
                return;
            }
        };
        let now = Instant::now();
        if last.is_some_and(|t| now - t < min_gap) {
            continue;
        }
        last = Some(now);
        let res = buffer.resolution();
        let (sw, sh) = (res.width(), res.height());
        let i420 = match buffer.source_frame_format() {
            FrameFormat::YUYV => yuyv_to_i420(buffer.buffer(), sw, sh, cfg.width, cfg.height),
            FrameFormat::NV12 => nv12_to_i420(buffer.buffer(), sw, sh, cfg.width, cfg.height),
            FrameFormat::GRAY => gray_to_i420(buffer.buffer(), sw, sh, cfg.width, cfg.height),
            _ => buffer
                .decode_image::<RgbFormat>()
                .ok()
                .and_then(|img| rgb_to_i420(img.as_raw(), sw, sh, cfg.width, cfg.height)),
        };
        let Some(i420) = i420 else {
            bad_frames += 1;
            if bad_frames.is_power_of_two() {
                tracing::warn!(
                    bad_frames,
                    "camera delivered a frame that could not be converted; skipped"
                );
            }
            continue;
        };
        let frame = VideoFrame {
            width: cfg.width,
            height: cfg.height,
            i420,
            capture: clock.wall_at(now),
            index,
        };
        index += 1;
        if !ctx.emit(out, frame, "video") {
            return;
        }
    }
}

/// Picks the camera mode: reach the rate, then cover the size (closest area), then the cheapest
/// pixel format.
fn choose_mode(formats: &[CameraFormat], cfg: &VideoConfig) -> Option<CameraFormat> {
    formats
        .iter()
        .filter(|f| f.width() >= 2 && f.height() >= 2 && f.frame_rate() > 0)
        .min_by_key(|f| {
            let fps_short = cfg.fps.saturating_sub(f.frame_rate());
            let too_small = u8::from(f.width() < cfg.width || f.height() < cfg.height);
            let area = u64::from(f.width()) * u64::from(f.height());
            let area_diff = area.abs_diff(u64::from(cfg.width) * u64::from(cfg.height));
            let format_rank = match f.format() {
                FrameFormat::YUYV => 0,
                FrameFormat::NV12 => 1,
                FrameFormat::MJPEG => 2,
                FrameFormat::RAWRGB | FrameFormat::RAWBGR => 3,
                FrameFormat::GRAY => 4,
            };
            (fps_short, too_small, area_diff, format_rank, f.frame_rate())
        })
        .copied()
}

/// Nearest-neighbour source coordinate of destination coordinate `d`.
fn src_coord(d: u32, dst: u32, src: u32) -> usize {
    (u64::from(d) * u64::from(src) / u64::from(dst.max(1))) as usize
}

/// Scales and converts with per-pixel accessors: `luma(x, y)` and `chroma(x, y) -> (u, v)` in
/// source coordinates. `None` if the destination size is odd or zero.
fn convert(
    sw: u32,
    sh: u32,
    dw: u32,
    dh: u32,
    luma: impl Fn(usize, usize) -> u8,
    chroma: impl Fn(usize, usize) -> (u8, u8),
) -> Option<Vec<u8>> {
    if dw == 0 || dh == 0 || dw % 2 == 1 || dh % 2 == 1 || sw == 0 || sh == 0 {
        return None;
    }
    let (w, h) = (dw as usize, dh as usize);
    let mut out = vec![0u8; i420_len(dw, dh)];
    let xs: Vec<usize> = (0..dw).map(|x| src_coord(x, dw, sw)).collect();
    for y in 0..h {
        let sy = src_coord(y as u32, dh, sh);
        for (x, &sx) in xs.iter().enumerate() {
            out[y * w + x] = luma(sx, sy);
        }
    }
    let (cw, ch) = (w / 2, h / 2);
    let (u_off, v_off) = (w * h, w * h + cw * ch);
    for cy in 0..ch {
        let sy = src_coord((cy * 2) as u32, dh, sh);
        for cx in 0..cw {
            let (u, v) = chroma(xs[cx * 2], sy);
            out[u_off + cy * cw + cx] = u;
            out[v_off + cy * cw + cx] = v;
        }
    }
    Some(out)
}

/// YUYV (YUY2) 4:2:2 packed to I420 at the destination size.
fn yuyv_to_i420(src: &[u8], sw: u32, sh: u32, dw: u32, dh: u32) -> Option<Vec<u8>> {
    let stride = sw as usize * 2;
    if sw % 2 == 1 || src.len() < stride * sh as usize {
        return None;
    }
    convert(
        sw,
        sh,
        dw,
        dh,
        |x, y| src[y * stride + x * 2],
        |x, y| {
            let pair = y * stride + (x & !1) * 2;
            (src[pair + 1], src[pair + 3])
        },
    )
}

/// NV12 (Y plane, then interleaved UV at half resolution) to I420 at the destination size.
fn nv12_to_i420(src: &[u8], sw: u32, sh: u32, dw: u32, dh: u32) -> Option<Vec<u8>> {
    let (w, h) = (sw as usize, sh as usize);
    if w % 2 == 1 || h % 2 == 1 || src.len() < w * h * 3 / 2 {
        return None;
    }
    let uv = &src[w * h..];
    convert(
        sw,
        sh,
        dw,
        dh,
        |x, y| src[y * w + x],
        |x, y| {
            let i = (y / 2) * w + (x & !1);
            (uv[i], uv[i + 1])
        },
    )
}

fn gray_to_i420(src: &[u8], sw: u32, sh: u32, dw: u32, dh: u32) -> Option<Vec<u8>> {
    let w = sw as usize;
    if src.len() < w * sh as usize {
        return None;
    }
    // Full-range grey to limited-range luma.
    convert(
        sw,
        sh,
        dw,
        dh,
        |x, y| full_to_limited(src[y * w + x]),
        |_, _| (128, 128),
    )
}

#[allow(clippy::cast_possible_truncation)] // <= 235
fn full_to_limited(v: u8) -> u8 {
    (16 + (u32::from(v) * 219 + 127) / 255) as u8
}

/// Packed RGB24 (full range) to I420 (BT.601 limited range) at the destination size.
fn rgb_to_i420(src: &[u8], sw: u32, sh: u32, dw: u32, dh: u32) -> Option<Vec<u8>> {
    let stride = sw as usize * 3;
    if src.len() < stride * sh as usize {
        return None;
    }
    let px = |x: usize, y: usize| {
        let i = y * stride + x * 3;
        (
            i32::from(src[i]),
            i32::from(src[i + 1]),
            i32::from(src[i + 2]),
        )
    };
    convert(
        sw,
        sh,
        dw,
        dh,
        |x, y| {
            let (r, g, b) = px(x, y);
            clamp_u8(((66 * r + 129 * g + 25 * b + 128) >> 8) + 16)
        },
        |x, y| {
            let (r, g, b) = px(x, y);
            (
                clamp_u8(((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128),
                clamp_u8(((112 * r - 94 * g - 18 * b + 128) >> 8) + 128),
            )
        },
    )
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped
fn clamp_u8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{start_video, video_start_error, VideoSpec};
    use nokhwa::utils::Resolution;

    #[test]
    fn without_a_camera_the_error_names_the_alternatives() {
        if probe().is_ok() {
            return; // a machine with a camera: nothing to check here
        }
        for spec in [VideoSpec::Camera(None), VideoSpec::Camera(Some(1))] {
            let msg = video_start_error(&spec);
            assert!(msg.contains("no camera found"), "{msg}");
            assert!(msg.contains(ALTERNATIVES), "{msg}");
        }
    }

    #[test]
    fn auto_falls_back_to_the_test_card() {
        if probe().is_ok() {
            return;
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let cfg = VideoConfig {
            width: 160,
            height: 120,
            fps: 30,
        };
        let h = start_video(&VideoSpec::Auto, &cfg, MediaClock::now(), tx).unwrap();
        assert_eq!(h.description, "testsrc 160x120@30");
        assert!(rx
            .recv_timeout(Duration::from_secs(2))
            .unwrap()
            .is_well_formed());
    }

    #[test]
    fn mode_choice_prefers_rate_then_size_then_cheap_formats() {
        let m = |w, h, f, fps| CameraFormat::new(Resolution::new(w, h), f, fps);
        let modes = [
            m(1920, 1080, FrameFormat::YUYV, 5),
            m(1280, 720, FrameFormat::YUYV, 10),
            m(1280, 720, FrameFormat::MJPEG, 30),
            m(1920, 1080, FrameFormat::MJPEG, 30),
            m(640, 480, FrameFormat::YUYV, 30),
            m(1280, 720, FrameFormat::MJPEG, 60),
        ];
        let cfg = VideoConfig::default();
        assert_eq!(
            choose_mode(&modes, &cfg),
            Some(m(1280, 720, FrameFormat::MJPEG, 30))
        );
        let small = VideoConfig {
            width: 640,
            height: 480,
            fps: 30,
        };
        assert_eq!(
            choose_mode(&modes, &small),
            Some(m(640, 480, FrameFormat::YUYV, 30))
        );
        assert_eq!(choose_mode(&[], &cfg), None);
    }

    #[test]
    fn yuyv_converts_and_scales() {
        // 4x2 YUYV: luma 10,20,30,40 / 50,60,70,80; U/V per pair.
        let src = [
            10, 100, 20, 200, 30, 101, 40, 201, //
            50, 102, 60, 202, 70, 103, 80, 203,
        ];
        let out = yuyv_to_i420(&src, 4, 2, 4, 2).unwrap();
        assert_eq!(out, [10, 20, 30, 40, 50, 60, 70, 80, 100, 101, 200, 201]);
        // Upscale 2x: each source pixel doubled.
        let up = yuyv_to_i420(&src, 4, 2, 8, 4).unwrap();
        assert_eq!(&up[..8], &[10, 10, 20, 20, 30, 30, 40, 40]);
        assert_eq!(up.len(), 8 * 4 * 3 / 2);
        // Short buffers and odd sizes are refused, not a panic.
        assert!(yuyv_to_i420(&src[..10], 4, 2, 4, 2).is_none());
        assert!(yuyv_to_i420(&src, 4, 2, 3, 2).is_none());
    }

    #[test]
    fn nv12_gray_and_rgb_convert() {
        let mut nv12 = vec![16u8; 4 * 2];
        nv12.extend_from_slice(&[90, 240, 91, 241]);
        let out = nv12_to_i420(&nv12, 4, 2, 4, 2).unwrap();
        assert_eq!(&out[8..], &[90, 91, 240, 241]);

        let out = gray_to_i420(&[0, 255, 0, 255], 2, 2, 2, 2).unwrap();
        assert_eq!(out, [16, 235, 16, 235, 128, 128]);

        // White, black, red, blue at 2x2.
        let rgb = [255, 255, 255, 0, 0, 0, 255, 0, 0, 0, 0, 255];
        let out = rgb_to_i420(&rgb, 2, 2, 2, 2).unwrap();
        assert_eq!(&out[..4], &[235, 16, 82, 41]);
        assert_eq!(&out[4..], &[128, 128]); // chroma sampled from the white pixel
        assert!(rgb_to_i420(&rgb[..5], 2, 2, 2, 2).is_none());
    }
}
