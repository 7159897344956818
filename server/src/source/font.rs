//! A tiny 5×7 bitmap font (digits, `:`, `.`, `#`, space) drawn straight into a luma plane.

/// Glyph width and height in font pixels; glyphs are laid out on a 6-pixel advance.
pub(crate) const GLYPH_W: usize = 5;
pub(crate) const GLYPH_H: usize = 7;
pub(crate) const ADVANCE: usize = GLYPH_W + 1;

/// Rows of 5 bits, most significant bit = leftmost pixel. `scripts/gst-client-latency.py` reads
/// this table (one `'c' => [..]` line a glyph) to recognise the time on the test card.
fn glyph(c: char) -> [u8; GLYPH_H] {
    match c {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        '#' => [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A],
        _ => [0; GLYPH_H],
    }
}

/// Width in pixels of `text` at `scale`.
pub(crate) fn text_width(text: &str, scale: usize) -> usize {
    text.chars().count() * ADVANCE * scale
}

/// Draws `text` with its top-left corner at (`x`, `y`) into a `width`×`height` luma plane,
/// setting lit pixels to `value`. Anything outside the plane is clipped.
pub(crate) fn draw_text(
    plane: &mut [u8],
    width: usize,
    height: usize,
    (x, y): (usize, usize),
    scale: usize,
    text: &str,
    value: u8,
) {
    let scale = scale.max(1);
    for (i, c) in text.chars().enumerate() {
        let gx = x + i * ADVANCE * scale;
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..GLYPH_W {
                if bits & (0x10 >> col) == 0 {
                    continue;
                }
                let px = gx + col * scale;
                let py = y + row * scale;
                if px >= width || py >= height {
                    continue;
                }
                let run = scale.min(width - px);
                for yy in py..(py + scale).min(height) {
                    let start = yy * width + px;
                    if let Some(dst) = plane.get_mut(start..start + run) {
                        dst.fill(value);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glyphs_are_distinct_and_drawn_clipped() {
        let digits: Vec<_> = ('0'..='9').map(glyph).collect();
        for i in 0..digits.len() {
            for j in i + 1..digits.len() {
                assert_ne!(digits[i], digits[j]);
            }
        }
        // Drawing partly off the plane must neither panic nor write out of bounds.
        let mut plane = vec![0u8; 20 * 10];
        draw_text(&mut plane, 20, 10, (15, 5), 3, "88:88", 255);
        assert!(plane.contains(&255));
        draw_text(&mut plane, 20, 10, (100, 100), 3, "1", 255);
        assert_eq!(text_width("12:34", 2), 60);
    }
}
