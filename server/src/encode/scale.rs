//! Picture scaling for quality adaptation: an I420 picture resized by bilinear
//! interpolation, each plane on its own (chroma at half size), in 16.16 fixed point.

use crate::source::{i420_len, VideoFrame};

/// `frame` scaled to `width`x`height` (even; the same picture if the size is already that).
pub fn scale_i420(frame: &VideoFrame, width: u32, height: u32) -> VideoFrame {
    if (frame.width, frame.height) == (width, height) || !frame.is_well_formed() {
        return frame.clone();
    }
    let mut out = vec![0u8; i420_len(width, height)];
    let (sw, sh) = (frame.width as usize, frame.height as usize);
    let (dw, dh) = (width as usize, height as usize);
    let (src_y, src_uv) = frame.i420.split_at(sw * sh);
    let (src_u, src_v) = src_uv.split_at(sw * sh / 4);
    let (dst_y, dst_uv) = out.split_at_mut(dw * dh);
    let (dst_u, dst_v) = dst_uv.split_at_mut(dw * dh / 4);
    plane(src_y, sw, sh, dst_y, dw, dh);
    plane(src_u, sw / 2, sh / 2, dst_u, dw / 2, dh / 2);
    plane(src_v, sw / 2, sh / 2, dst_v, dw / 2, dh / 2);
    VideoFrame {
        width,
        height,
        i420: out,
        capture: frame.capture,
        index: frame.index,
    }
}

/// Bilinear resize of one `sw`x`sh` plane into `dw`x`dh`, sampling at pixel centres.
fn plane(src: &[u8], sw: usize, sh: usize, dst: &mut [u8], dw: usize, dh: usize) {
    if sw == 0 || sh == 0 || dw == 0 || dh == 0 {
        return;
    }
    // Source position of destination pixel i: (i + 0.5) * s / d - 0.5, in 16.16.
    let pos = |i: usize, s: usize, d: usize| -> (usize, u32) {
        let p = ((2 * i + 1) * s * 65536 / (2 * d)).saturating_sub(32768);
        let whole = (p >> 16).min(s - 1);
        let frac = if whole + 1 < s {
            (p & 0xffff) as u32
        } else {
            0
        };
        (whole, frac)
    };
    let xs: Vec<(usize, u32)> = (0..dw).map(|x| pos(x, sw, dw)).collect();
    for y in 0..dh {
        let (y0, fy) = pos(y, sh, dh);
        let y1 = (y0 + 1).min(sh - 1);
        let (r0, r1) = (&src[y0 * sw..][..sw], &src[y1 * sw..][..sw]);
        for (x, &(x0, fx)) in xs.iter().enumerate() {
            let x1 = (x0 + 1).min(sw - 1);
            let top = u32::from(r0[x0]) * (65536 - fx) + u32::from(r0[x1]) * fx;
            let bottom = u32::from(r1[x0]) * (65536 - fx) + u32::from(r1[x1]) * fx;
            let v =
                (u64::from(top) * u64::from(65536 - fy) + u64::from(bottom) * u64::from(fy)) >> 32;
            dst[y * dw + x] = v.min(255) as u8;
        }
    }
}

/// Which pictures of a `from` frames/s source to keep for `to` frames/s: picture `index`
/// is kept when it starts a new `1/to` slot.
pub fn keep_picture(index: u64, from: u32, to: u32) -> bool {
    if to == 0 || to >= from {
        return true;
    }
    let (from, to) = (u64::from(from), u64::from(to));
    index == 0 || (index * to) / from != ((index - 1) * to) / from
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn frame(w: u32, h: u32, f: impl Fn(usize, usize) -> u8) -> VideoFrame {
        let mut i420 = vec![128u8; i420_len(w, h)];
        for y in 0..h as usize {
            for x in 0..w as usize {
                i420[y * w as usize + x] = f(x, y);
            }
        }
        VideoFrame {
            width: w,
            height: h,
            i420,
            capture: SystemTime::UNIX_EPOCH,
            index: 7,
        }
    }

    #[test]
    fn flat_stays_flat_and_halving_averages_pairs() {
        let flat = scale_i420(&frame(64, 48, |_, _| 77), 48, 36);
        assert_eq!((flat.width, flat.height, flat.index), (48, 36, 7));
        assert_eq!(flat.i420.len(), i420_len(48, 36));
        assert!(flat.i420[..48 * 36].iter().all(|&v| v == 77));
        assert!(flat.i420[48 * 36..].iter().all(|&v| v == 128));
        // Columns 0,100,0,100...: halved, each output pixel sits between a 0 and a 100.
        let stripes = scale_i420(&frame(8, 4, |x, _| if x % 2 == 0 { 0 } else { 100 }), 4, 2);
        assert_eq!(&stripes.i420[..8], &[50, 50, 50, 50, 50, 50, 50, 50]);
    }

    #[test]
    fn a_ramp_stays_a_ramp() {
        let ramp = scale_i420(&frame(640, 480, |x, _| (x * 255 / 639) as u8), 320, 240);
        let row = &ramp.i420[..320];
        assert!(row.windows(2).all(|w| w[0] <= w[1]), "monotonic");
        assert!(row[0] <= 1 && row[319] >= 254, "{} .. {}", row[0], row[319]);
    }

    #[test]
    fn thinning_keeps_the_asked_rate() {
        let kept = |from, to| (0..300).filter(|&i| keep_picture(i, from, to)).count();
        assert_eq!(kept(30, 15), 150);
        assert_eq!(kept(30, 20), 200);
        assert_eq!(kept(30, 30), 300);
        assert_eq!(kept(25, 30), 300);
        // Evenly: 30 -> 20 keeps two of every three.
        let pattern: Vec<bool> = (0..6).map(|i| keep_picture(i, 30, 20)).collect();
        assert_eq!(pattern, [true, false, true, true, false, true]);
    }
}
