//! The seek decoder: FFmpeg's H.264 decoder (libavcodec, the system's) with frame threads,
//! used only to put the picture at a seek's target on screen sooner.
//!
//! A seek into another group has to decode the group's keyframe and every picture after it up
//! to the target (docs/architecture.md "Seeking"). OpenH264, the player's decoder, does that on
//! one core. libavcodec decodes the same stream faster on one core and, with frame threads,
//! starts on a picture's rows while the picture before it is still being finished, which is
//! where a second core helps a chain of P pictures. H.264 decoding is exact, so its picture
//! is the one OpenH264 would have made (`tests` below check the planes bit for bit); the
//! playback loop then brings OpenH264 to the same place, out of sight, before it goes on.
//!
//! Frame threads hold pictures back (one per extra thread): a run is ended by draining the
//! decoder, which is why this decoder is for seeks, not for playback.
//!
//! What it does not see: a unit missing altogether (lost on the way, not in the recording).
//! libavcodec covers such a `frame_num` gap with a copy of the picture before it, without an
//! error; the caller leaves runs with a damaged unit to openh264 (the player's recorder marks
//! the unit after a lost one damaged).
#![allow(unsafe_code)]

use std::ptr;

use anyhow::bail;
use ffmpeg_sys_next as ff;

use super::decode::{picture_from_planes, Picture};

/// Frame threads: two were measured (docs/benchmarks.md, "Seek"); a chain of P pictures gains
/// little from more, and each one holds a picture back at the end of a run.
const THREADS: usize = 2;

/// A picture's Y, U and V planes, each row by row without padding.
pub type PackedPlanes = (Vec<u8>, Vec<u8>, Vec<u8>);

/// One seek's decoding: [`FastSeek::begin`], a [`FastSeek::push`] for each unit from the
/// keyframe to the target, then [`FastSeek::finish`] for the target's picture.
pub struct FastSeek {
    ctx: *mut ff::AVCodecContext,
    pkt: *mut ff::AVPacket,
    /// Where `avcodec_receive_frame` writes.
    out: *mut ff::AVFrame,
    /// The newest picture out of this run.
    last: *mut ff::AVFrame,
    /// Units given and pictures out in this run; a run that loses one (or has a damaged
    /// picture) gives no picture, and the seek goes the usual way.
    units: usize,
    pictures: usize,
    failed: bool,
}

// SAFETY: the context, packet and frames are owned by this value alone and only touched
// through `&mut self`; libavcodec's own threads are internal to the context.
unsafe impl Send for FastSeek {}

impl FastSeek {
    /// A decoder with [`THREADS`] frame threads (fewer on a machine with fewer cores).
    pub fn new() -> anyhow::Result<Self> {
        Self::with_threads(
            std::thread::available_parallelism()
                .map_or(1, usize::from)
                .min(THREADS),
        )
    }

    /// A decoder with `threads` frame threads (1: none).
    pub fn with_threads(threads: usize) -> anyhow::Result<Self> {
        let threads = threads.clamp(1, 16);
        // SAFETY: plain libavcodec calls; every pointer is checked before use and owned by
        // the value returned (freed in Drop, also when a later step fails).
        unsafe {
            // Damaged units are the usual path's business (it waits for a keyframe); the
            // library's own messages would only reach the terminal.
            ff::av_log_set_level(ff::AV_LOG_QUIET);
            let codec = ff::avcodec_find_decoder(ff::AVCodecID::AV_CODEC_ID_H264);
            if codec.is_null() {
                bail!("libavcodec has no H.264 decoder");
            }
            let me = Self {
                ctx: ff::avcodec_alloc_context3(codec),
                pkt: ff::av_packet_alloc(),
                out: ff::av_frame_alloc(),
                last: ff::av_frame_alloc(),
                units: 0,
                pictures: 0,
                failed: false,
            };
            if me.ctx.is_null() || me.pkt.is_null() || me.out.is_null() || me.last.is_null() {
                bail!("libavcodec: out of memory");
            }
            (*me.ctx).thread_count = threads as i32;
            // A picture cropped on the left keeps its exact first column (as openh264's).
            (*me.ctx).flags |= ff::AV_CODEC_FLAG_UNALIGNED as i32;
            (*me.ctx).thread_type = if threads > 1 { ff::FF_THREAD_FRAME } else { 0 };
            let rc = ff::avcodec_open2(me.ctx, codec, ptr::null_mut());
            if rc < 0 {
                bail!("libavcodec: opening the H.264 decoder failed ({rc})");
            }
            Ok(me)
        }
    }

    /// Starts a run: nothing of the previous one is kept (the first unit must be a keyframe).
    pub fn begin(&mut self) {
        // SAFETY: ctx is open; flushing also ends a drained run's end-of-stream state.
        unsafe {
            ff::avcodec_flush_buffers(self.ctx);
            ff::av_frame_unref(self.last);
        }
        self.units = 0;
        self.pictures = 0;
        self.failed = false;
    }

    /// Gives the decoder the next unit (Annex B, one picture) in decode order.
    pub fn push(&mut self, annexb: &[u8], keyframe: bool) {
        if self.failed {
            return;
        }
        let Ok(len) = i32::try_from(annexb.len()) else {
            self.failed = true;
            return;
        };
        // SAFETY: av_new_packet allocates len bytes (plus libavcodec's padding) at pkt.data,
        // which the copy fills; the packet is unreferenced after the send.
        unsafe {
            if ff::av_new_packet(self.pkt, len) < 0 {
                self.failed = true;
                return;
            }
            ptr::copy_nonoverlapping(annexb.as_ptr(), (*self.pkt).data, annexb.len());
            if keyframe {
                (*self.pkt).flags |= ff::AV_PKT_FLAG_KEY;
            }
            // The unit's place in the run: the last picture out must be the last unit's
            // (a reordering stream's would be another).
            (*self.pkt).pts = self.units as i64;
            let mut rc = ff::avcodec_send_packet(self.ctx, self.pkt);
            if rc == ff::AVERROR(ff::EAGAIN) {
                // Its pictures must be taken first, then the same packet goes in.
                self.receive();
                rc = ff::avcodec_send_packet(self.ctx, self.pkt);
            }
            ff::av_packet_unref(self.pkt);
            if rc < 0 {
                self.failed = true;
                return;
            }
        }
        self.units += 1;
        self.receive();
    }

    /// Takes the pictures that are out, keeping the newest.
    fn receive(&mut self) {
        // SAFETY: out and last are allocated frames; move_ref leaves out empty.
        unsafe {
            loop {
                let rc = ff::avcodec_receive_frame(self.ctx, self.out);
                if rc < 0 {
                    if rc != ff::AVERROR(ff::EAGAIN) && rc != ff::AVERROR_EOF {
                        self.failed = true;
                    }
                    return;
                }
                let damaged = (*self.out).decode_error_flags != 0
                    || (*self.out).flags & ff::AV_FRAME_FLAG_CORRUPT != 0;
                if damaged {
                    self.failed = true;
                }
                self.pictures += 1;
                ff::av_frame_unref(self.last);
                ff::av_frame_move_ref(self.last, self.out);
            }
        }
    }

    /// Ends the run: the picture of the last unit pushed, or `None` where a unit did not
    /// decode cleanly or gave no picture of its own (B-frames, a damaged stream).
    pub fn finish(&mut self) -> Option<Picture> {
        if !self.drain() {
            return None;
        }
        // SAFETY: last holds a decoded frame (pictures > 0); its planes are read while it is
        // held, with the sizes and strides it reports.
        unsafe { planes(self.last).map(|p| picture_from_planes(p.y, p.u, p.v, p.dim, p.strides)) }
    }

    /// [`Self::finish`] as the planes themselves (for comparing decoders).
    pub fn finish_planes(&mut self) -> Option<PackedPlanes> {
        if !self.drain() {
            return None;
        }
        // SAFETY: as in finish.
        unsafe { planes(self.last).map(|p| p.packed()) }
    }

    /// Takes what the threads still hold; whether the run gave the last unit's own picture,
    /// undamaged, and one picture a unit.
    fn drain(&mut self) -> bool {
        // SAFETY: a null packet asks for what the threads still hold; last is a frame.
        unsafe {
            if ff::avcodec_send_packet(self.ctx, ptr::null()) == 0 {
                self.receive();
            }
            !self.failed
                && self.units > 0
                && self.pictures == self.units
                && (*self.last).pts == self.units as i64 - 1
        }
    }
}

impl Drop for FastSeek {
    fn drop(&mut self) {
        // SAFETY: each free takes a pointer to the pointer and accepts null.
        unsafe {
            ff::avcodec_free_context(&mut self.ctx);
            ff::av_packet_free(&mut self.pkt);
            ff::av_frame_free(&mut self.out);
            ff::av_frame_free(&mut self.last);
        }
    }
}

/// A decoded 4:2:0 picture's planes, borrowed from its frame.
struct Planes<'a> {
    y: &'a [u8],
    u: &'a [u8],
    v: &'a [u8],
    dim: (usize, usize),
    strides: (usize, usize, usize),
}

impl Planes<'_> {
    /// The visible pixels, without the strides' padding.
    fn packed(&self) -> PackedPlanes {
        let (w, h) = self.dim;
        let rows = |p: &[u8], stride: usize, w: usize, h: usize| -> Vec<u8> {
            (0..h)
                .flat_map(|r| &p[r * stride..r * stride + w])
                .copied()
                .collect()
        };
        (
            rows(self.y, self.strides.0, w, h),
            rows(self.u, self.strides.1, w / 2, h / 2),
            rows(self.v, self.strides.2, w / 2, h / 2),
        )
    }
}

/// # Safety
/// `f` must point to a frame that holds a decoded picture, and outlive the planes.
unsafe fn planes<'a>(f: *const ff::AVFrame) -> Option<Planes<'a>> {
    let f = &*f;
    let yuv420 = f.format == ff::AVPixelFormat::AV_PIX_FMT_YUV420P as i32
        || f.format == ff::AVPixelFormat::AV_PIX_FMT_YUVJ420P as i32;
    let (w, h) = (
        usize::try_from(f.width).ok()?,
        usize::try_from(f.height).ok()?,
    );
    let stride = |i: usize| usize::try_from(f.linesize[i]).ok();
    let (sy, su, sv) = (stride(0)?, stride(1)?, stride(2)?);
    if !yuv420 || w == 0 || h == 0 || w % 2 != 0 || h % 2 != 0 || sy < w || su < w / 2 || sv < w / 2
    {
        return None;
    }
    if f.data[0].is_null() || f.data[1].is_null() || f.data[2].is_null() {
        return None;
    }
    Some(Planes {
        // Up to the end of each plane's last visible row (no padding after it assumed).
        y: std::slice::from_raw_parts(f.data[0], sy * (h - 1) + w),
        u: std::slice::from_raw_parts(f.data[1], su * (h / 2 - 1) + w / 2),
        v: std::slice::from_raw_parts(f.data[2], sv * (h / 2 - 1) + w / 2),
        dim: (w, h),
        strides: (sy, su, sv),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use livecast_server::encode::h264::{H264Config, H264Encoder};
    use livecast_server::source::VideoFrame;
    use openh264::formats::YUVSource as _;

    const W: u32 = 320;
    const H: u32 = 240;

    /// Two groups of 30 pictures of a moving texture (a keyframe each second at 30 fps), as
    /// the server encodes them.
    fn stream() -> Vec<(Vec<u8>, bool)> {
        let mut enc = H264Encoder::new(&H264Config {
            width: W,
            height: H,
            fps: 30,
            bitrate_bps: 600_000,
            idr_interval_secs: 1,
        })
        .unwrap();
        (0..60u32)
            .map(|i| {
                let mut p = vec![128u8; (W * H * 3 / 2) as usize];
                for y in 0..H {
                    for x in 0..W {
                        let v = (x * 7 + y * 13 + i * 5) ^ (x * y / 17 + i);
                        p[(y * W + x) as usize] = (v % 220) as u8 + 16;
                    }
                }
                let f = VideoFrame {
                    width: W,
                    height: H,
                    i420: p,
                    capture: std::time::UNIX_EPOCH,
                    index: u64::from(i),
                };
                let e = enc.encode(&f).unwrap().expect("a picture for every frame");
                (e.annexb, e.is_idr)
            })
            .collect()
    }

    /// What openh264 (the player's decoder) makes of units `from..=to`: the last picture's
    /// planes and its RGBA.
    fn openh264(units: &[(Vec<u8>, bool)]) -> (PackedPlanes, Vec<u8>) {
        let mut dec = openh264::decoder::Decoder::new().unwrap();
        let mut last = None;
        for (u, _) in units {
            if let Some(p) = dec.decode(u).unwrap() {
                let (w, h) = p.dimensions();
                let (sy, su, sv) = p.strides();
                let rows = |pl: &[u8], s: usize, w: usize, h: usize| -> Vec<u8> {
                    (0..h)
                        .flat_map(|r| &pl[r * s..r * s + w])
                        .copied()
                        .collect()
                };
                let mut rgba = vec![0; w * h * 4];
                p.write_rgba8(&mut rgba);
                last = Some((
                    (
                        rows(p.y(), sy, w, h),
                        rows(p.u(), su, w / 2, h / 2),
                        rows(p.v(), sv, w / 2, h / 2),
                    ),
                    rgba,
                ));
            }
        }
        last.unwrap()
    }

    /// Starts a run and gives it `units`.
    fn run(fast: &mut FastSeek, units: &[(Vec<u8>, bool)]) {
        fast.begin();
        for (u, k) in units {
            fast.push(u, *k);
        }
    }

    #[test]
    fn every_target_in_a_group_is_the_picture_openh264_makes() {
        let s = stream();
        let mut fast = FastSeek::with_threads(2).unwrap();
        // Runs that start at a keyframe and end anywhere in its group, in both groups, in an
        // order that also makes the decoder start over after long and short runs.
        for (key, to) in [(30, 59), (0, 0), (0, 17), (30, 31), (0, 29), (30, 44)] {
            run(&mut fast, &s[key..=to]);
            let planes = fast.finish_planes().expect("a picture");
            let (want, _) = openh264(&s[key..=to]);
            assert!(
                planes == want,
                "run {key}..={to}: planes differ from openh264's"
            );
        }
    }

    #[test]
    fn its_rgba_is_within_one_step_of_openh264s() {
        let s = stream();
        let mut fast = FastSeek::with_threads(2).unwrap();
        run(&mut fast, &s[0..=12]);
        let pic = fast.finish().expect("a picture");
        let (_, want) = openh264(&s[0..=12]);
        assert_eq!((pic.width, pic.height), (W, H));
        assert_eq!(pic.rgba.len(), want.len());
        let worst = pic
            .rgba
            .iter()
            .zip(&want)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(worst <= 1, "a channel differs by {worst}");
        assert!(pic.rgba.iter().skip(3).step_by(4).all(|a| *a == 255));
    }

    /// A stream with B-frames (x264 through ffmpeg, two between references), as access
    /// units in decode order.
    fn b_frame_stream(dir: &std::path::Path) -> Vec<(Vec<u8>, bool)> {
        use livecast_proto::codec::h264::{nal_type, split_annexb};
        let out = dir.join("b.h264");
        let made = std::process::Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-f", "lavfi", "-i"])
            .args(["testsrc=size=320x240:rate=25", "-t", "2", "-c:v", "libx264"])
            .args([
                "-preset", "veryfast", "-g", "25", "-bf", "2", "-pix_fmt", "yuv420p",
            ])
            .args(["-x264-params", "aud=1", "-f", "h264"])
            .arg(&out)
            .output()
            .expect("ffmpeg must be installed (the test command installs it)");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let data = std::fs::read(&out).unwrap();
        // Access units begin at their delimiter (NAL type 9).
        let mut units: Vec<(Vec<u8>, bool)> = Vec::new();
        for nal in split_annexb(&data) {
            if nal_type(nal) == 9 || units.is_empty() {
                units.push((Vec::new(), false));
            }
            let u = units.last_mut().unwrap();
            u.0.extend_from_slice(&[0, 0, 0, 1]);
            u.0.extend_from_slice(nal);
            u.1 |= nal_type(nal) == 5;
        }
        units
    }

    /// With B-frames the last picture out of a drained run is not the last unit's (it comes
    /// later in presentation order): no picture, the seek goes the usual way.
    #[test]
    fn a_run_with_b_frames_gives_no_picture_but_its_keyframe_does() {
        use livecast_proto::codec::h264::has_b_slice;
        let dir = tempfile::tempdir().unwrap();
        let s = b_frame_stream(dir.path());
        assert!(s.len() >= 50 && s[0].1, "{} units", s.len());
        let first_b = s.iter().position(|u| has_b_slice(&u.0)).expect("B-frames");
        let mut fast = FastSeek::with_threads(2).unwrap();
        fast.begin();
        fast.push(&s[0].0, true);
        assert!(fast.finish().is_some(), "the keyframe alone");
        // Runs that end at the first B-frame and at the units after it.
        for to in first_b..first_b + 4 {
            run(&mut fast, &s[..=to]);
            let b = has_b_slice(&s[to].0);
            assert!(
                fast.finish().is_none() || !b,
                "run 0..={to} ends at a B-frame and gave a picture"
            );
        }
    }

    /// A damaged or missing unit gives no picture (the seek goes the usual way, which waits
    /// for a keyframe), and the decoder is fine for the next run.
    #[test]
    fn a_damaged_run_gives_no_picture() {
        let s = stream();
        let mut fast = FastSeek::with_threads(2).unwrap();
        // A unit cut short in the middle of its slice.
        fast.begin();
        for (i, (u, k)) in s[0..=10].iter().enumerate() {
            let u = if i == 5 { &u[..u.len() / 2] } else { &u[..] };
            fast.push(u, *k);
        }
        assert!(fast.finish().is_none(), "a unit cut short");
        // A run that does not start at a keyframe.
        run(&mut fast, &s[3..=10]);
        assert!(fast.finish().is_none(), "no keyframe");
        // Garbage.
        fast.begin();
        fast.push(&[0, 0, 0, 1, 0x65, 0xff, 0x00, 0x12], true);
        assert!(fast.finish().is_none(), "garbage");
        fast.begin();
        assert!(fast.finish().is_none(), "nothing pushed");
        // And a clean run after all that.
        run(&mut fast, &s[30..=40]);
        let planes = fast.finish_planes().expect("a picture");
        assert!(planes == openh264(&s[30..=40]).0);
    }
}
