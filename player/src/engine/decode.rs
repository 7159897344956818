//! Decoders: H.264 with openh264 (to RGBA for display), Opus with libopus (to 48 kHz stereo).

use anyhow::Context;
use openh264::decoder::{DecodedYUV, Decoder};
use openh264::formats::YUVSource;

/// A decoded picture, converted for display.
#[derive(Clone, Debug)]
pub struct Picture {
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
    /// Mean luma (0-255) over a sparse grid: the test card's white flash is > 200.
    pub mean_luma: f32,
}

/// H.264 decoder. Feed it whole access units in Annex B form, in decode order.
pub struct VideoDecoder {
    dec: Decoder,
    /// No keyframe since creation/reset: non-IDR units are skipped (they would only produce
    /// errors and garbage).
    need_keyframe: bool,
    pub errors: u64,
    /// Pictures the decoder produced (shown or not).
    pub decoded: u64,
}

impl VideoDecoder {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            dec: Decoder::new().context("openh264 decoder")?,
            need_keyframe: true,
            errors: 0,
            decoded: 0,
        })
    }

    /// Starts over (after a seek): the next unit decoded must be a keyframe.
    pub fn reset(&mut self) -> anyhow::Result<()> {
        self.dec = Decoder::new().context("openh264 decoder")?;
        self.need_keyframe = true;
        Ok(())
    }

    /// Decodes one access unit. With `convert == false` the picture is decoded (to advance the
    /// reference chain during a seek) but not converted to RGBA.
    pub fn decode(&mut self, annexb: &[u8], keyframe: bool, convert: bool) -> Option<Picture> {
        if self.need_keyframe && !keyframe {
            return None;
        }
        self.need_keyframe = false;
        match self.dec.decode(annexb) {
            Ok(Some(yuv)) => {
                self.decoded += 1;
                convert.then(|| to_picture(&yuv))
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
}

fn to_picture(yuv: &DecodedYUV<'_>) -> Picture {
    let (w, h) = yuv.dimensions();
    let mut rgba = vec![0u8; w * h * 4];
    yuv.write_rgba8(&mut rgba);
    let (ys, _, _) = yuv.strides();
    let y = yuv.y();
    let mut sum = 0u64;
    let mut n = 0u64;
    for row in (0..h).step_by(8) {
        for col in (0..w).step_by(8) {
            if let Some(v) = y.get(row * ys + col) {
                sum += u64::from(*v);
                n += 1;
            }
        }
    }
    Picture {
        width: w as u32,
        height: h as u32,
        rgba,
        mean_luma: if n > 0 { sum as f32 / n as f32 } else { 0.0 },
    }
}

/// Samples per channel in one 20 ms Opus frame at 48 kHz; the most a packet can hold is 120 ms.
const MAX_FRAME: usize = 5760;

/// Opus decoder to 48 kHz interleaved stereo.
pub struct AudioDecoder {
    dec: opus::Decoder,
    pub errors: u64,
}

impl AudioDecoder {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            dec: opus::Decoder::new(48_000, opus::Channels::Stereo).context("Opus decoder")?,
            errors: 0,
        })
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
