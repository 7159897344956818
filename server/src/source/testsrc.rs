//! The built-in moving test card (`--video testsrc`).
//!
//! Colour bars, a box sliding across a black band (one trip every 4 s), a grey ramp, and a
//! panel with the frame's wall-clock capture time (UTC `HH:MM:SS.mmm`) and frame number, drawn
//! straight into the Y plane with the built-in 5×7 font. Once per second (`index % fps == 0`)
//! the whole frame is pure white (Y = 235, U = V = 128), aligned exactly with the audio beep.
//!
//! Colours are BT.601 limited range (what the encoder's VUI signals).

use std::sync::mpsc::SyncSender;
use std::time::{SystemTime, UNIX_EPOCH};

use super::font::{self, GLYPH_H};
use super::{
    i420_len, spawn_source, MediaClock, Pacer, Rate, SourceCtx, SourceHandle, VideoConfig,
    VideoFrame,
};

/// Luma of the once-per-second flash (limited-range white).
pub const WHITE_Y: u8 = 235;
const BLACK_Y: u8 = 16;
const NEUTRAL: u8 = 128;

/// 75 % colour bars (white, yellow, cyan, green, magenta, red, blue) as (Y, U, V).
const BARS: [(u8, u8, u8); 7] = [
    (180, 128, 128),
    (162, 44, 142),
    (131, 156, 44),
    (112, 72, 58),
    (84, 184, 198),
    (65, 100, 212),
    (35, 212, 114),
];
/// The moving box: 100 % yellow.
const BOX: (u8, u8, u8) = (210, 16, 146);

/// Renders test-card frames; rendering is a copy of a prepared background plus a box and text.
#[derive(Clone, Debug)]
pub struct TestCard {
    width: usize,
    height: usize,
    fps: u32,
    background: Vec<u8>,
    scale: usize,
    /// Top-left corner of the first text line.
    text_pos: (usize, usize),
    /// Distance between the two text lines' tops.
    line_step: usize,
    /// Text panel rectangle (x, y, w, h) in luma pixels.
    panel: (usize, usize, usize, usize),
    /// The moving box's band: top row and box side.
    box_y: usize,
    box_size: usize,
}

/// Chars in `HH:MM:SS.mmm`, the wider of the two text lines at typical frame numbers.
const TIME_CHARS: usize = 12;

impl TestCard {
    /// A card of `width`×`height` (even, as checked by [`VideoConfig::validate`]) at `fps`.
    #[must_use]
    pub fn new(width: u32, height: u32, fps: u32) -> Self {
        let (w, h) = (width as usize & !1, height as usize & !1);
        let bars_h = (h * 2 / 3) & !1;
        let ramp_y = (h * 5 / 6) & !1;

        let mut scale = (h / 100).max(1);
        while scale > 1 && TIME_CHARS * font::ADVANCE * scale + 4 * scale > w.saturating_sub(4) {
            scale -= 1;
        }
        let pad = 2 * scale;
        let line_step = (GLYPH_H + 3) * scale;
        let panel_w = (font::text_width("00:00:00.000", scale) + 2 * pad).min(w) & !1;
        let panel_h = (line_step + GLYPH_H * scale + 2 * pad).min(bars_h) & !1;
        let panel_x = ((w - panel_w) / 2) & !1;
        let panel_y = (bars_h.saturating_sub(panel_h) / 2) & !1;

        let band_h = ramp_y - bars_h;
        let box_size = ((band_h * 3 / 4) & !1).max(2).min(w);
        let box_y = (bars_h + (band_h.saturating_sub(box_size)) / 2) & !1;

        let mut card = Self {
            width: w,
            height: h,
            fps: fps.max(1),
            background: vec![0; i420_len(width & !1, height & !1)],
            scale,
            text_pos: (panel_x + pad, panel_y + pad),
            line_step,
            panel: (panel_x, panel_y, panel_w, panel_h),
            box_y,
            box_size,
        };
        card.paint_background(bars_h, ramp_y);
        card
    }

    fn paint_background(&mut self, bars_h: usize, ramp_y: usize) {
        let (w, h) = (self.width, self.height);
        let (cw, luma) = (w / 2, w * h);
        let (y_plane, uv) = self.background.split_at_mut(luma);
        let (u_plane, v_plane) = uv.split_at_mut(luma / 4);
        for y in 0..h {
            let row = &mut y_plane[y * w..(y + 1) * w];
            for (x, p) in row.iter_mut().enumerate() {
                *p = if y < bars_h {
                    BARS[x * 7 / w].0
                } else if y < ramp_y {
                    BLACK_Y
                } else {
                    #[allow(clippy::cast_possible_truncation)] // <= 235
                    let v = (16 + x * 219 / (w - 1).max(1)) as u8;
                    v
                };
            }
        }
        for cy in 0..h / 2 {
            for cx in 0..cw {
                let (u, v) = if cy * 2 < bars_h {
                    let bar = BARS[(cx * 2) * 7 / w];
                    (bar.1, bar.2)
                } else {
                    (NEUTRAL, NEUTRAL)
                };
                u_plane[cy * cw + cx] = u;
                v_plane[cy * cw + cx] = v;
            }
        }
        let (px, py, pw, ph) = self.panel;
        fill_rect(
            &mut self.background,
            w,
            h,
            (px, py, pw, ph),
            (BLACK_Y, NEUTRAL, NEUTRAL),
        );
    }

    /// Whether frame `index` is the once-per-second all-white frame.
    #[must_use]
    pub fn is_flash(&self, index: u64) -> bool {
        index.is_multiple_of(u64::from(self.fps))
    }

    /// Renders frame `index`, stamped (and labelled) with `capture`.
    #[must_use]
    pub fn render(&self, index: u64, capture: SystemTime) -> VideoFrame {
        let (w, h) = (self.width, self.height);
        let i420 = if self.is_flash(index) {
            let mut v = vec![WHITE_Y; w * h];
            v.resize(w * h * 3 / 2, NEUTRAL);
            v
        } else {
            let mut v = self.background.clone();
            let period = 4 * u64::from(self.fps);
            let travel = (w - self.box_size) as u64;
            let x = usize::try_from((index % period) * travel / period).unwrap_or(0) & !1;
            fill_rect(
                &mut v,
                w,
                h,
                (x, self.box_y, self.box_size, self.box_size),
                BOX,
            );
            let (tx, ty) = self.text_pos;
            let luma = &mut v[..w * h];
            font::draw_text(
                luma,
                w,
                h,
                (tx, ty),
                self.scale,
                &wall_clock_text(capture),
                WHITE_Y,
            );
            let number = format!("#{index:06}");
            font::draw_text(
                luma,
                w,
                h,
                (tx, ty + self.line_step),
                self.scale,
                &number,
                WHITE_Y,
            );
            v
        };
        VideoFrame {
            width: u32::try_from(w).unwrap_or(0),
            height: u32::try_from(h).unwrap_or(0),
            i420,
            capture,
            index,
        }
    }
}

/// `HH:MM:SS.mmm` of a wall-clock time, UTC.
#[must_use]
pub fn wall_clock_text(t: SystemTime) -> String {
    let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// Fills an even-aligned rectangle (luma coordinates, clipped) in an I420 picture.
fn fill_rect(
    i420: &mut [u8],
    w: usize,
    h: usize,
    (x, y, rw, rh): (usize, usize, usize, usize),
    (yv, uv, vv): (u8, u8, u8),
) {
    let (x1, y1) = ((x + rw).min(w), (y + rh).min(h));
    if x >= x1 || y >= y1 {
        return;
    }
    let luma = w * h;
    for row in y..y1 {
        i420[row * w + x..row * w + x1].fill(yv);
    }
    let cw = w / 2;
    let (u_off, v_off) = (luma, luma + luma / 4);
    for crow in y / 2..y1.div_ceil(2).min(h / 2) {
        let (a, b) = (crow * cw + x / 2, crow * cw + x1.div_ceil(2).min(cw));
        i420[u_off + a..u_off + b].fill(uv);
        i420[v_off + a..v_off + b].fill(vv);
    }
}

pub(crate) fn start(
    cfg: &VideoConfig,
    clock: MediaClock,
    out: SyncSender<VideoFrame>,
    ctx: SourceCtx,
) -> anyhow::Result<SourceHandle> {
    let card = TestCard::new(cfg.width, cfg.height, cfg.fps);
    let rate = Rate::per_second(cfg.fps);
    let description = format!("testsrc {}x{}@{}", cfg.width, cfg.height, cfg.fps);
    spawn_source("testsrc", description, ctx, move |ctx| {
        let mut pacer = Pacer::new(clock, rate);
        while let Some(k) = pacer.next(&ctx, "testsrc") {
            if !ctx.emit(&out, card.render(k, pacer.capture(k)), "video") {
                break;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Starts a 160x120 test card at `fps` into a channel of `capacity` frames.
    fn start_card(
        fps: u32,
        clock: MediaClock,
        capacity: usize,
    ) -> (SourceHandle, std::sync::mpsc::Receiver<VideoFrame>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
        let cfg = VideoConfig {
            width: 160,
            height: 120,
            fps,
        };
        let spec = crate::source::VideoSpec::TestSrc;
        (
            crate::source::start_video(&spec, &cfg, clock, tx).unwrap(),
            rx,
        )
    }

    fn t(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn panel_bytes(card: &TestCard, f: &VideoFrame) -> Vec<u8> {
        let (x, y, w, h) = card.panel;
        (y..y + h)
            .flat_map(|row| f.i420[row * card.width + x..row * card.width + x + w].to_vec())
            .collect()
    }

    #[test]
    fn once_per_second_the_whole_frame_is_white() {
        let card = TestCard::new(320, 240, 30);
        for k in 0..95 {
            let f = card.render(k, t(k * 33));
            assert!(f.is_well_formed());
            let (y, uv) = f.i420.split_at(320 * 240);
            let white = y.iter().all(|&p| p == WHITE_Y) && uv.iter().all(|&p| p == NEUTRAL);
            assert_eq!(white, k % 30 == 0, "frame {k}");
        }
    }

    #[test]
    fn the_time_and_frame_number_change_every_frame() {
        for (w, h) in [(320, 240), (1280, 720), (3840, 2160)] {
            let card = TestCard::new(w, h, 30);
            let a = card.render(1, t(1_033));
            let b = card.render(2, t(1_066));
            assert_ne!(panel_bytes(&card, &a), panel_bytes(&card, &b), "{w}x{h}");
            // Same frame number, different time: the time text alone differs.
            let c = card.render(2, t(1_067));
            assert_ne!(panel_bytes(&card, &b), panel_bytes(&card, &c), "{w}x{h}");
            // Deterministic.
            assert_eq!(card.render(2, t(1_066)).i420, b.i420);
        }
    }

    #[test]
    fn tiny_and_odd_layouts_do_not_panic() {
        for (w, h) in [(16, 16), (18, 400), (400, 18), (3840, 16)] {
            let card = TestCard::new(w, h, 30);
            for k in 1..4 {
                assert!(card.render(k, t(k)).is_well_formed(), "{w}x{h}");
            }
        }
    }

    #[test]
    fn the_text_is_legible_white_on_black() {
        let card = TestCard::new(1280, 720, 30);
        let f = card.render(7, t(45_296_789)); // 12:34:56.789
        let panel = panel_bytes(&card, &f);
        let lit = panel.iter().filter(|&&p| p == WHITE_Y).count();
        let dark = panel.iter().filter(|&&p| p == BLACK_Y).count();
        assert_eq!(lit + dark, panel.len());
        assert!(lit > panel.len() / 20, "{lit} of {}", panel.len());
        assert_eq!(wall_clock_text(t(45_296_789)), "12:34:56.789");
        assert_eq!(wall_clock_text(t(86_400_000 + 5)), "00:00:00.005");
    }

    #[test]
    fn the_box_moves() {
        let card = TestCard::new(640, 360, 30);
        let a = card.render(1, t(0));
        let b = card.render(2, t(0));
        let band = card.box_y * 640..(card.box_y + card.box_size) * 640;
        assert_ne!(a.i420[band.clone()], b.i420[band]);
    }

    #[test]
    fn frames_are_paced_in_real_time_with_exact_capture_times() {
        let clock = MediaClock::now();
        let (handle, rx) = start_card(50, clock, 64);
        assert_eq!(handle.description, "testsrc 160x120@50");
        let mut prev = None;
        for _ in 0..8 {
            let f = rx.recv_timeout(Duration::from_secs(2)).unwrap();
            let due = Duration::from_millis(20 * f.index);
            assert_eq!(f.capture, clock.epoch_wall + due);
            assert!(Instant::now() >= clock.epoch + due, "emitted early");
            assert!(prev.is_none_or(|p| f.index > p));
            prev = Some(f.index);
        }
        // Consecutive unless the machine was too loaded to keep up (then frames were skipped).
        assert_eq!(prev, Some(7 + handle.skipped()));
        assert!(handle.is_running());
        drop(handle);
        // The thread has ended and dropped its sender.
        while rx.try_recv().is_ok() {}
        assert!(matches!(
            rx.try_recv(),
            Err(std::sync::mpsc::TryRecvError::Disconnected)
        ));
    }

    #[test]
    fn a_late_source_skips_to_real_time_and_a_full_channel_drops() {
        // Started 2.5 s after the epoch: the first frame is the one due now, not frame 0.
        let now = Instant::now();
        let clock = MediaClock {
            epoch: now.checked_sub(Duration::from_millis(2_500)).unwrap(),
            epoch_wall: UNIX_EPOCH + Duration::from_secs(1_000_000),
        };
        let (handle, rx) = start_card(25, clock, 1);
        let f = rx.recv_timeout(Duration::from_secs(2)).unwrap();
        assert!((62..=64).contains(&f.index), "{}", f.index);
        assert_eq!(
            f.capture,
            clock.epoch_wall + Rate::per_second(25).offset(f.index)
        );
        std::thread::sleep(Duration::from_millis(400));
        assert!(handle.dropped() >= 1, "{}", handle.dropped());
    }
}
