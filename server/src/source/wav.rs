//! WAV file source (`--audio file:PATH.wav`), looped at end of file.
//!
//! RIFF/WAVE with PCM (8-bit unsigned, 16/24/32-bit signed) or IEEE float (32/64-bit) samples,
//! plain or `WAVE_FORMAT_EXTENSIBLE`, any channel count and rate. Mono is duplicated to both
//! sides; with more than two channels the first two (front left/right) are used. Everything is
//! linearly resampled to 48 kHz stereo.
//!
//! A `data` chunk size of 0 or 0xFFFFFFFF (as written by streaming tools) means "to end of file".
//!
//! The reader is ours rather than `hound`'s (which the tests use to write files): hound reads
//! neither 64-bit float nor a "to end of file" data size, and its errors don't say which field
//! is wrong.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;

use anyhow::Context as _;

use super::{
    spawn_looped_audio, AudioFrame, Chunker, MediaClock, SourceCtx, SourceHandle, StereoFrames,
};

const WAVE_FORMAT_PCM: u16 = 1;
const WAVE_FORMAT_IEEE_FLOAT: u16 = 3;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;
/// Highest sample rate accepted (keeps the resampler's arithmetic far from overflow).
const MAX_RATE: u32 = 768_000;

/// How samples are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleKind {
    /// 8-bit unsigned.
    U8,
    /// 16-bit signed.
    I16,
    /// 24-bit signed, packed in 3 bytes.
    I24,
    /// 32-bit signed.
    I32,
    /// 32-bit IEEE float.
    F32,
    /// 64-bit IEEE float.
    F64,
}

impl SampleKind {
    fn bytes(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::I16 => 2,
            Self::I24 => 3,
            Self::I32 | Self::F32 => 4,
            Self::F64 => 8,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::U8 => "u8",
            Self::I16 => "s16",
            Self::I24 => "s24",
            Self::I32 => "s32",
            Self::F32 => "f32",
            Self::F64 => "f64",
        }
    }

    #[allow(clippy::cast_possible_truncation)] // f64 -> f32 sample: intended
    fn decode(self, b: &[u8]) -> f32 {
        match self {
            Self::U8 => (f32::from(b[0]) - 128.0) / 128.0,
            Self::I16 => f32::from(i16::from_le_bytes([b[0], b[1]])) / 32_768.0,
            Self::I24 => {
                #[allow(clippy::cast_precision_loss)] // 24 bits fit in f32
                let v = (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as f32;
                v / 8_388_608.0
            }
            Self::I32 => {
                #[allow(clippy::cast_precision_loss)] // sample precision beyond 24 bits is noise
                let v = i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32;
                v / 2_147_483_648.0
            }
            Self::F32 => finite(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Self::F64 => {
                finite(f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            }
        }
    }
}

fn finite(x: f32) -> f32 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

/// What a WAV file's `fmt ` chunk says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WavFormat {
    /// Channels.
    pub channels: u16,
    /// Sample rate in Hz.
    pub rate: u32,
    /// Sample storage.
    pub kind: SampleKind,
}

/// A WAV file being read frame by frame, looping at the end.
pub struct WavReader {
    path: PathBuf,
    reader: BufReader<File>,
    format: WavFormat,
    block: Vec<u8>,
    data_start: u64,
    frames: u64,
    pos: u64,
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn parse_fmt(fmt: &[u8]) -> anyhow::Result<(WavFormat, usize)> {
    if fmt.len() < 16 {
        anyhow::bail!("fmt chunk too short ({} bytes)", fmt.len());
    }
    let mut tag = u16_at(fmt, 0);
    let channels = u16_at(fmt, 2);
    let rate = u32_at(fmt, 4);
    let block_align = usize::from(u16_at(fmt, 12));
    let bits = u16_at(fmt, 14);
    if tag == WAVE_FORMAT_EXTENSIBLE {
        if fmt.len() < 40 {
            anyhow::bail!(
                "WAVE_FORMAT_EXTENSIBLE fmt chunk too short ({} bytes)",
                fmt.len()
            );
        }
        // The sub-format GUID starts with the plain format tag.
        tag = u16_at(fmt, 24);
    }
    let kind = match (tag, bits) {
        (WAVE_FORMAT_PCM, 8) => SampleKind::U8,
        (WAVE_FORMAT_PCM, 16) => SampleKind::I16,
        (WAVE_FORMAT_PCM, 24) => SampleKind::I24,
        (WAVE_FORMAT_PCM, 32) => SampleKind::I32,
        (WAVE_FORMAT_IEEE_FLOAT, 32) => SampleKind::F32,
        (WAVE_FORMAT_IEEE_FLOAT, 64) => SampleKind::F64,
        (WAVE_FORMAT_PCM | WAVE_FORMAT_IEEE_FLOAT, _) => {
            anyhow::bail!("unsupported sample size {bits} bits: PCM 8/16/24/32-bit or float 32/64-bit are supported")
        }
        _ => anyhow::bail!(
            "unsupported WAV encoding (format tag {tag:#06x}): only PCM and IEEE float are supported; convert with `ffmpeg -i IN -c:a pcm_s16le OUT.wav`"
        ),
    };
    if channels == 0 {
        anyhow::bail!("zero channels");
    }
    if !(1..=MAX_RATE).contains(&rate) {
        anyhow::bail!("unsupported sample rate {rate} Hz");
    }
    if block_align != usize::from(channels) * kind.bytes() {
        anyhow::bail!(
            "block align {block_align} does not match {channels} channels of {bits}-bit samples"
        );
    }
    Ok((
        WavFormat {
            channels,
            rate,
            kind,
        },
        block_align,
    ))
}

impl WavReader {
    /// Opens `path` and reads its headers.
    ///
    /// # Errors
    /// The file can't be opened, is not a supported WAV, or has no samples; the message names
    /// the path.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Self::open_inner(path).with_context(|| format!("WAV file {}", path.display()))
    }

    fn open_inner(path: &Path) -> anyhow::Result<Self> {
        let file = File::open(path).context("cannot open")?;
        let file_len = file.metadata()?.len();
        let mut reader = BufReader::new(file);
        let mut riff = [0u8; 12];
        reader
            .read_exact(&mut riff)
            .map_err(|_| anyhow::anyhow!("not a WAV file (too short for a RIFF header)"))?;
        if &riff[0..4] != b"RIFF" || &riff[8..12] != b"WAVE" {
            anyhow::bail!("not a WAV file (no RIFF/WAVE header)");
        }
        let mut format = None;
        loop {
            let mut hdr = [0u8; 8];
            if reader.read_exact(&mut hdr).is_err() {
                anyhow::bail!(if format.is_none() {
                    "no fmt chunk"
                } else {
                    "no data chunk"
                });
            }
            let size = u32_at(&hdr, 4);
            match &hdr[0..4] {
                b"fmt " => {
                    if size > 1024 {
                        anyhow::bail!("fmt chunk too large ({size} bytes)");
                    }
                    let mut fmt = vec![0u8; size as usize];
                    reader.read_exact(&mut fmt).context("fmt chunk cut short")?;
                    format = Some(parse_fmt(&fmt)?);
                    if size % 2 == 1 {
                        reader.seek_relative(1)?;
                    }
                }
                b"data" => {
                    let (format, block_align) =
                        format.context("data chunk before the fmt chunk")?;
                    let data_start = reader.stream_position()?;
                    let available = file_len.saturating_sub(data_start);
                    let len = match size {
                        0 | u32::MAX => available,
                        n => u64::from(n).min(available),
                    };
                    let frames = len / block_align as u64;
                    if frames == 0 {
                        anyhow::bail!("no audio samples");
                    }
                    return Ok(Self {
                        path: path.to_owned(),
                        reader,
                        format,
                        block: vec![0; block_align],
                        data_start,
                        frames,
                        pos: 0,
                    });
                }
                _ => reader.seek_relative(i64::from(size) + i64::from(size % 2))?,
            }
        }
    }

    /// The file's format.
    #[must_use]
    pub fn format(&self) -> WavFormat {
        self.format
    }

    /// Sample frames in one pass of the file.
    #[must_use]
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The next frame as stereo `[-1, 1]`, rewinding at the end.
    ///
    /// # Errors
    /// I/O errors (a file that shrank while being read included).
    pub fn next_frame(&mut self) -> anyhow::Result<[f32; 2]> {
        if self.pos == self.frames {
            tracing::debug!(path = %self.path.display(), "WAV end of file: looping");
            self.reader.seek(SeekFrom::Start(self.data_start))?;
            self.pos = 0;
        }
        self.reader
            .read_exact(&mut self.block)
            .with_context(|| format!("WAV file {}: read failed", self.path.display()))?;
        self.pos += 1;
        let kind = self.format.kind;
        let n = kind.bytes();
        let left = kind.decode(&self.block[..n]);
        let right = if self.format.channels >= 2 {
            kind.decode(&self.block[n..2 * n])
        } else {
            left
        };
        Ok([left, right])
    }
}

impl StereoFrames for WavReader {
    fn rate(&self) -> u32 {
        self.format.rate
    }

    fn next_frame(&mut self) -> anyhow::Result<[f32; 2]> {
        WavReader::next_frame(self)
    }
}

/// Turns a looping WAV file into 20 ms 48 kHz stereo chunks.
pub type WavChunker = Chunker<WavReader>;

pub(crate) fn start(
    path: &Path,
    clock: MediaClock,
    out: SyncSender<AudioFrame>,
    ctx: SourceCtx,
) -> anyhow::Result<SourceHandle> {
    let reader = WavReader::open(path)?;
    let WavFormat {
        channels,
        rate,
        kind,
    } = reader.format();
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let description = format!(
        "file {name} {rate} Hz {channels} ch {} -> 48 kHz stereo",
        kind.name()
    );
    #[allow(clippy::cast_precision_loss)] // for a log line
    let seconds = reader.frames() as f64 / f64::from(rate);
    tracing::info!(
        "audio file {}: {rate} Hz, {channels} channel(s), {}, {seconds:.1} s, looped",
        path.display(),
        kind.name()
    );
    spawn_looped_audio("wav", description, Chunker::new(reader), clock, out, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{assert_bad_files_are_named, audio_start_error, start_audio, AudioSpec};
    use std::time::Duration;

    fn wav<S: hound::Sample + Copy>(
        path: &Path,
        rate: u32,
        channels: u16,
        format: hound::SampleFormat,
        samples: &[S],
    ) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 8 * std::mem::size_of::<S>() as u16,
            sample_format: format,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
    }

    fn wav_i16(dir: &Path, name: &str, rate: u32, channels: u16, samples: &[i16]) -> PathBuf {
        let p = dir.join(name);
        wav(&p, rate, channels, hound::SampleFormat::Int, samples);
        p
    }

    /// A WAV file with a plain `fmt ` chunk as given, however wrong, and `data`.
    fn raw_wav(tag: u16, rate: u32, channels: u16, bits: u16, data: &[u8]) -> Vec<u8> {
        let block = channels * (bits / 8);
        let mut w = b"RIFF".to_vec();
        w.extend((36 + data.len() as u32).to_le_bytes());
        w.extend(b"WAVEfmt ");
        w.extend(16u32.to_le_bytes());
        w.extend(tag.to_le_bytes());
        w.extend(channels.to_le_bytes());
        w.extend(rate.to_le_bytes());
        w.extend((rate * u32::from(block)).to_le_bytes());
        w.extend(block.to_le_bytes());
        w.extend(bits.to_le_bytes());
        w.extend(b"data");
        w.extend((data.len() as u32).to_le_bytes());
        w.extend(data);
        w
    }

    #[test]
    fn stereo_48k_passes_through_exactly_and_loops() {
        let dir = tempfile::tempdir().unwrap();
        // 1000 frames: left = i, right = -i.
        let samples: Vec<i16> = (0..1000i16).flat_map(|i| [i, -i]).collect();
        let path = wav_i16(dir.path(), "s.wav", 48_000, 2, &samples);
        let mut c = WavChunker::new(WavReader::open(&path).unwrap());
        let out: Vec<i16> = (0..3).flat_map(|_| c.next_chunk().unwrap()).collect();
        assert_eq!(out.len(), 3 * 1920);
        for (j, f) in out.chunks(2).enumerate() {
            let i = (j % 1000) as i16;
            assert_eq!(f, [i, -i], "frame {j}");
        }
    }

    #[test]
    fn mono_44k1_is_resampled_to_48k_stereo() {
        let dir = tempfile::tempdir().unwrap();
        // One second of a 1 kHz sine at 44.1 kHz, written as float.
        let sine: Vec<f32> = (0..44_100)
            .map(|i| 0.5 * (std::f32::consts::TAU * 1000.0 * i as f32 / 44_100.0).sin())
            .collect();
        let path = dir.path().join("m.wav");
        wav(&path, 44_100, 1, hound::SampleFormat::Float, &sine);
        let r = WavReader::open(&path).unwrap();
        assert_eq!(
            r.format(),
            WavFormat {
                channels: 1,
                rate: 44_100,
                kind: SampleKind::F32
            }
        );
        let mut c = WavChunker::new(r);
        let out: Vec<i16> = (0..50).flat_map(|_| c.next_chunk().unwrap()).collect();
        let left: Vec<i16> = out.iter().step_by(2).copied().collect();
        assert!(out.chunks(2).all(|f| f[0] == f[1]));
        // Still 1 kHz at the new rate: ~2000 zero crossings per second.
        let crossings = left.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        assert!((1990..=2010).contains(&crossings), "{crossings}");
        let peak = left.iter().map(|x| x.unsigned_abs()).max().unwrap();
        assert!((16_000..=16_400).contains(&peak), "{peak}");
    }

    #[test]
    fn every_sample_format_decodes() {
        assert_eq!(SampleKind::U8.decode(&[0]), -1.0);
        assert_eq!(SampleKind::U8.decode(&[192]), 0.5);
        assert_eq!(SampleKind::I16.decode(&(-16_384i16).to_le_bytes()), -0.5);
        assert_eq!(SampleKind::I24.decode(&[0, 0, 0xC0]), -0.5);
        assert_eq!(SampleKind::I24.decode(&[0, 0, 0x40]), 0.5);
        assert_eq!(SampleKind::I32.decode(&(1i32 << 30).to_le_bytes()), 0.5);
        assert_eq!(SampleKind::F32.decode(&0.25f32.to_le_bytes()), 0.25);
        assert_eq!(SampleKind::F32.decode(&f32::NAN.to_le_bytes()), 0.0);
        assert_eq!(SampleKind::F64.decode(&(-0.75f64).to_le_bytes()), -0.75);
    }

    #[test]
    fn extensible_24_bit_six_channels_uses_the_front_pair() {
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&WAVE_FORMAT_EXTENSIBLE.to_le_bytes());
        fmt.extend_from_slice(&6u16.to_le_bytes());
        fmt.extend_from_slice(&48_000u32.to_le_bytes());
        fmt.extend_from_slice(&(48_000u32 * 18).to_le_bytes());
        fmt.extend_from_slice(&18u16.to_le_bytes()); // block align
        fmt.extend_from_slice(&24u16.to_le_bytes());
        fmt.extend_from_slice(&22u16.to_le_bytes()); // cbSize
        fmt.extend_from_slice(&24u16.to_le_bytes()); // valid bits
        fmt.extend_from_slice(&0x3fu32.to_le_bytes()); // 5.1 mask
        fmt.extend_from_slice(&[
            1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71,
        ]);
        let mut frame = Vec::new();
        for ch in 0..6u8 {
            frame.extend_from_slice(&[0, 0, 0x10 * (ch + 1)]);
        }
        let mut bytes = b"RIFF\0\0\0\0WAVE".to_vec();
        bytes.extend_from_slice(b"LIST\x03\0\0\0abc\0"); // odd-sized chunk, padded
        bytes.extend_from_slice(b"fmt ");
        bytes.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&fmt);
        bytes.extend_from_slice(b"data\xff\xff\xff\xff");
        bytes.extend_from_slice(&frame);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wav");
        std::fs::write(&path, bytes).unwrap();
        let mut r = WavReader::open(&path).unwrap();
        assert_eq!(r.format().kind, SampleKind::I24);
        assert_eq!(r.frames(), 1);
        assert_eq!(
            r.next_frame().unwrap(),
            [0x10 as f32 / 128.0, 0x20 as f32 / 128.0]
        );
        assert_eq!(
            r.next_frame().unwrap(),
            [0x10 as f32 / 128.0, 0x20 as f32 / 128.0]
        );
    }

    #[test]
    fn bad_files_give_clear_errors_naming_the_path() {
        let adpcm = raw_wav(2, 8000, 1, 4, &[0; 8]);
        let pcm12 = raw_wav(1, 8000, 1, 12, &[0; 8]);
        let empty = raw_wav(1, 8000, 1, 16, &[]);
        let no_channels = raw_wav(1, 8000, 0, 16, &[0; 8]);
        let cases: &[(&[u8], &str)] = &[
            (b"", "too short for a RIFF header"),
            (b"YUV4MPEG2 W16 H16 F25:1\n", "no RIFF/WAVE header"),
            (b"RIFF\0\0\0\0WAVE", "no fmt chunk"),
            (&adpcm, "format tag 0x0002"),
            (&pcm12, "unsupported sample size 12 bits"),
            (&empty, "no audio samples"),
            (&no_channels, "zero channels"),
            (
                b"RIFF\0\0\0\0WAVEdata\x04\0\0\0\0\0\0\0",
                "data chunk before the fmt chunk",
            ),
            (
                b"RIFF\0\0\0\0WAVEfmt \x04\0\0\0\x01\0\x01\0",
                "fmt chunk too short",
            ),
        ];
        assert_bad_files_are_named("wav", cases, |p| audio_start_error(&AudioSpec::File(p)));
    }

    #[test]
    fn the_source_paces_chunks_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let samples: Vec<i16> = (0..480).map(|i| i as i16).collect();
        let path = wav_i16(dir.path(), "tiny.wav", 24_000, 1, &samples);
        let clock = MediaClock::now();
        let (tx, rx) = std::sync::mpsc::sync_channel(8);
        let h = start_audio(&AudioSpec::File(path), clock, tx).unwrap();
        assert_eq!(
            h.description,
            "file tiny.wav 24000 Hz 1 ch s16 -> 48 kHz stereo"
        );
        for _ in 0..3 {
            let f = rx.recv_timeout(Duration::from_secs(2)).unwrap();
            assert_eq!(f.samples.len(), 1920);
            let since = f.capture.duration_since(clock.epoch_wall).unwrap();
            assert_eq!(since.as_nanos() % 20_000_000, 0);
        }
    }
}
