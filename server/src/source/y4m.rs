//! Y4M (YUV4MPEG2) file source (`--video file:PATH.y4m`), looped at end of file.
//!
//! Format: one header line `YUV4MPEG2 W<w> H<h> F<num>:<den> [I..] [A..] [C..] [X..]`, then for
//! every picture a `FRAME[ params]` line followed by the raw planes. Only 4:2:0 8-bit
//! (`C420jpeg`, `C420`, `C420mpeg2`, `C420paldv`; no `C` means `420jpeg`) is accepted: their
//! planes are laid out exactly like [`VideoFrame::i420`] (they differ only in chroma siting).
//! The file's size and rate win over the configured ones.
//!
//! Make one with `ffmpeg -i in.mp4 -pix_fmt yuv420p -t 10 clip.y4m`.
//!
//! The reader is ours rather than the `y4m` crate's: that one's errors don't say what is wrong
//! ("Error parsing y4m header"), it reads each frame into its own buffer (one more copy per
//! frame), and it cannot rewind, which looping needs.

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;

use anyhow::Context as _;

use super::{
    i420_len, spawn_source, validate_size, MediaClock, Pacer, Rate, SourceCtx, SourceHandle,
    VideoFrame,
};

/// Longest header or `FRAME` line accepted.
const MAX_LINE: usize = 4096;
const ACCEPTED_COLOURSPACES: [&str; 4] = ["420jpeg", "420", "420mpeg2", "420paldv"];

/// What a Y4M header says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Y4mHeader {
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Frame rate.
    pub rate: Rate,
    /// The `C` tag without the `C` (`420jpeg` when absent).
    pub colourspace: String,
}

/// Parses a header line (without the trailing newline).
///
/// # Errors
/// A missing magic, a missing or malformed `W`, `H` or `F`, an unsupported colourspace, or a
/// size the encoder can't take.
pub fn parse_header(line: &[u8]) -> anyhow::Result<Y4mHeader> {
    if !line.is_ascii() {
        anyhow::bail!("header is not ASCII");
    }
    let line = std::str::from_utf8(line).context("header is not ASCII")?;
    let mut tokens = line.split(' ').filter(|t| !t.is_empty());
    if tokens.next() != Some("YUV4MPEG2") {
        anyhow::bail!("not a Y4M file (does not start with \"YUV4MPEG2 \")");
    }
    let (mut width, mut height, mut rate) = (None, None, None);
    let mut colourspace = "420jpeg".to_owned();
    for token in tokens {
        let (tag, value) = token.split_at(1);
        match tag {
            "W" => {
                width = Some(
                    value
                        .parse::<u32>()
                        .with_context(|| format!("bad width {token:?}"))?,
                )
            }
            "H" => {
                height = Some(
                    value
                        .parse::<u32>()
                        .with_context(|| format!("bad height {token:?}"))?,
                )
            }
            "F" => {
                let parsed = value
                    .split_once(':')
                    .and_then(|(n, d)| Some((n.parse::<u32>().ok()?, d.parse::<u32>().ok()?)));
                match parsed {
                    Some((num, den))
                        if num > 0 && den > 0 && u64::from(num) <= 240 * u64::from(den) =>
                    {
                        rate = Some(Rate { num, den });
                    }
                    _ => anyhow::bail!(
                        "bad frame rate {token:?}: expected F<num>:<den>, at most 240 fps"
                    ),
                }
            }
            "C" => value.clone_into(&mut colourspace),
            _ => {} // I (interlacing), A (aspect), X (extensions): irrelevant here.
        }
    }
    let width = width.context("header has no width (W)")?;
    let height = height.context("header has no height (H)")?;
    let rate = rate.context("header has no frame rate (F)")?;
    if !ACCEPTED_COLOURSPACES.contains(&colourspace.as_str()) {
        anyhow::bail!(
            "unsupported colourspace C{colourspace}: only 4:2:0 8-bit (C420jpeg, C420, C420mpeg2, C420paldv) is supported; convert with `ffmpeg -i IN -pix_fmt yuv420p OUT.y4m`"
        );
    }
    validate_size(width, height)?;
    Ok(Y4mHeader {
        width,
        height,
        rate,
        colourspace,
    })
}

/// Reads a line up to `\n` (not included) into `buf`; `Ok(false)` at a clean end of file.
fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> anyhow::Result<bool> {
    buf.clear();
    let n = r.take(MAX_LINE as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() != Some(&b'\n') {
        anyhow::bail!("line longer than {MAX_LINE} bytes or cut short by end of file");
    }
    buf.pop();
    Ok(true)
}

/// A Y4M file being read, frame by frame, looping at the end.
pub struct Y4mReader {
    path: PathBuf,
    reader: BufReader<File>,
    header: Y4mHeader,
    data_start: u64,
    line: Vec<u8>,
    /// Frames read since the last rewind; 0 at end of file means the file has no frames.
    frames_this_pass: u64,
}

impl Y4mReader {
    /// Opens `path` and reads its header.
    ///
    /// # Errors
    /// The file can't be opened or its header is invalid; the message names the path.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Self::open_inner(path).with_context(|| format!("Y4M file {}", path.display()))
    }

    fn open_inner(path: &Path) -> anyhow::Result<Self> {
        let file = File::open(path).context("cannot open")?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut line = Vec::new();
        match read_line(&mut reader, &mut line) {
            Ok(true) => {}
            Ok(false) => anyhow::bail!("empty file"),
            Err(_) if !line.starts_with(b"YUV4MPEG2") => {
                anyhow::bail!("not a Y4M file (does not start with \"YUV4MPEG2 \")")
            }
            Err(e) => return Err(e.context("bad header")),
        }
        let header = parse_header(&line)?;
        let data_start = reader.stream_position()?;
        Ok(Self {
            path: path.to_owned(),
            reader,
            header,
            data_start,
            line,
            frames_this_pass: 0,
        })
    }

    /// The file's header.
    #[must_use]
    pub fn header(&self) -> &Y4mHeader {
        &self.header
    }

    /// Reads the next picture into `buf` (resized to the frame size), rewinding at end of file.
    /// A truncated last frame counts as the end.
    ///
    /// # Errors
    /// I/O errors, a malformed `FRAME` line, or a file without a single complete frame.
    pub fn next_frame(&mut self, buf: &mut Vec<u8>) -> anyhow::Result<()> {
        self.next_inner(buf)
            .with_context(|| format!("Y4M file {}", self.path.display()))
    }

    fn next_inner(&mut self, buf: &mut Vec<u8>) -> anyhow::Result<()> {
        if self.try_read(buf)? {
            return Ok(());
        }
        if self.frames_this_pass == 0 {
            anyhow::bail!("no complete frame");
        }
        tracing::debug!(path = %self.path.display(), frames = self.frames_this_pass, "Y4M end of file: looping");
        self.reader.seek(SeekFrom::Start(self.data_start))?;
        self.frames_this_pass = 0;
        if self.try_read(buf)? {
            Ok(())
        } else {
            anyhow::bail!("no complete frame after rewinding")
        }
    }

    fn try_read(&mut self, buf: &mut Vec<u8>) -> anyhow::Result<bool> {
        let frame_no = self.frames_this_pass;
        match read_line(&mut self.reader, &mut self.line) {
            Ok(false) => return Ok(false),
            Ok(true) => {}
            Err(e) => {
                tracing::warn!("frame {frame_no}: {e:#}; treating as end of file");
                return Ok(false);
            }
        }
        if !self.line.starts_with(b"FRAME") {
            anyhow::bail!("frame {frame_no}: expected a FRAME line");
        }
        buf.resize(i420_len(self.header.width, self.header.height), 0);
        match self.reader.read_exact(buf) {
            Ok(()) => {
                self.frames_this_pass += 1;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                tracing::warn!(path = %self.path.display(), "frame {frame_no} is truncated; treating as end of file");
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}

pub(crate) fn start(
    path: &Path,
    clock: MediaClock,
    out: SyncSender<VideoFrame>,
    ctx: SourceCtx,
) -> anyhow::Result<SourceHandle> {
    let mut reader = Y4mReader::open(path)?;
    // Read the first frame now so a file without frames fails here, not on the thread.
    let mut first = Vec::new();
    reader.next_frame(&mut first)?;
    let Y4mHeader {
        width,
        height,
        rate,
        ..
    } = reader.header().clone();
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let description = format!("file {name} {width}x{height}@{rate}");
    tracing::info!(
        "video file {}: {width}x{height} at {rate} fps (C{}); the file's size and rate are used",
        path.display(),
        reader.header().colourspace
    );
    spawn_source("y4m", description, ctx, move |ctx| {
        let mut pacer = Pacer::new(clock, rate);
        let mut next = Some(first);
        while let Some(k) = pacer.next(&ctx, "y4m") {
            let i420 = match next.take() {
                Some(buf) => buf,
                None => {
                    let mut buf = Vec::new();
                    if let Err(e) = reader.next_frame(&mut buf) {
                        tracing::error!("{e:#}; stopping the video source");
                        break;
                    }
                    buf
                }
            };
            let frame = VideoFrame {
                width,
                height,
                i420,
                capture: pacer.capture(k),
                index: k,
            };
            if !ctx.emit(&out, frame, "video") {
                break;
            }
        }
    })
}

/// Writes a Y4M file (C420jpeg) from I420 pictures: for tests and tools.
///
/// # Errors
/// I/O errors.
pub fn write(
    w: &mut impl std::io::Write,
    width: u32,
    height: u32,
    rate: Rate,
    frames: &[Vec<u8>],
) -> std::io::Result<()> {
    writeln!(
        w,
        "YUV4MPEG2 W{width} H{height} F{}:{} Ip A1:1 C420jpeg",
        rate.num, rate.den
    )?;
    for f in frames {
        w.write_all(b"FRAME\n")?;
        w.write_all(f)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{
        assert_bad_files_are_named, start_video, video_start_error, VideoConfig, VideoSpec,
    };
    use std::time::Duration;

    fn frame(w: u32, h: u32, luma: u8) -> Vec<u8> {
        let mut v = vec![luma; (w * h) as usize];
        v.resize(i420_len(w, h), 128);
        v
    }

    fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn reads_frames_and_loops() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        let frames: Vec<_> = (0..3).map(|i| frame(32, 16, 10 + i)).collect();
        write(
            &mut bytes,
            32,
            16,
            Rate {
                num: 30_000,
                den: 1001,
            },
            &frames,
        )
        .unwrap();
        let path = write_file(dir.path(), "a.y4m", &bytes);

        let mut r = Y4mReader::open(&path).unwrap();
        assert_eq!(
            r.header(),
            &Y4mHeader {
                width: 32,
                height: 16,
                rate: Rate {
                    num: 30_000,
                    den: 1001
                },
                colourspace: "420jpeg".into()
            }
        );
        let mut buf = Vec::new();
        let lumas: Vec<u8> = (0..7)
            .map(|_| {
                r.next_frame(&mut buf).unwrap();
                assert_eq!(buf.len(), 32 * 16 * 3 / 2);
                buf[0]
            })
            .collect();
        assert_eq!(lumas, [10, 11, 12, 10, 11, 12, 10]);
    }

    #[test]
    fn frame_params_and_a_truncated_last_frame_are_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = b"YUV4MPEG2 W16 H16 F25:1 C420mpeg2 XYSCSS=420MPEG2\n".to_vec();
        bytes.extend_from_slice(b"FRAME Ixyz\n");
        bytes.extend_from_slice(&frame(16, 16, 50));
        bytes.extend_from_slice(b"FRAME\n");
        bytes.extend_from_slice(&frame(16, 16, 60)[..100]);
        let path = write_file(dir.path(), "b.y4m", &bytes);
        let mut r = Y4mReader::open(&path).unwrap();
        let mut buf = Vec::new();
        for _ in 0..3 {
            r.next_frame(&mut buf).unwrap();
            assert_eq!(buf[0], 50);
        }
    }

    #[test]
    fn bad_files_give_clear_errors_naming_the_path() {
        let long_header = format!("YUV4MPEG2 W16 H16 F25:1 X{}\n", "a".repeat(5000));
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty file"),
            (b"RIFF....WAVE", "not a Y4M file"),
            (
                b"YUV4MPEG2 W16 H16 F25:1 C422\nFRAME\n",
                "unsupported colourspace C422",
            ),
            (
                b"YUV4MPEG2 W16 H16 F25:1 C420p10\n",
                "unsupported colourspace C420p10",
            ),
            (b"YUV4MPEG2 W16 F25:1\n", "no height"),
            (b"YUV4MPEG2 W16 H16 F25:0\n", "bad frame rate"),
            (b"YUV4MPEG2 W17 H16 F25:1\n", "must be even"),
            (b"YUV4MPEG2 Wabc H16 F25:1\n", "bad width"),
            (b"YUV4MPEG2 W16 H16 F25:1\n", "no complete frame"),
            (
                b"YUV4MPEG2 W16 H16 F25:1\nFRAME\n\x10\x10",
                "no complete frame",
            ),
            (
                b"YUV4MPEG2 W16 H16 F25:1\nGARBAGE\n",
                "expected a FRAME line",
            ),
            (b"YUV4MPEG2 W16 H16 F25:1 X\xc3\xa9\n", "not ASCII"),
            (&[b'Y'; 9000], "not a Y4M file"),
            (long_header.as_bytes(), "longer than 4096"),
        ];
        assert_bad_files_are_named("y4m", cases, |p| video_start_error(&VideoSpec::File(p)));
    }

    #[test]
    fn the_source_uses_the_files_size_and_rate_and_loops() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        let frames: Vec<_> = (0..2).map(|i| frame(48, 32, 100 + i)).collect();
        write(&mut bytes, 48, 32, Rate::per_second(50), &frames).unwrap();
        let path = write_file(dir.path(), "clip.y4m", &bytes);
        let clock = MediaClock::now();
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let h = start_video(&VideoSpec::File(path), &VideoConfig::default(), clock, tx).unwrap();
        assert_eq!(h.description, "file clip.y4m 48x32@50");
        // The file's frames alternate; the looping read goes on even if the pacer skipped.
        let mut lumas = Vec::new();
        for _ in 0..5 {
            let f = rx.recv_timeout(Duration::from_secs(2)).unwrap();
            assert_eq!((f.width, f.height), (48, 32));
            assert!(f.is_well_formed());
            assert_eq!(
                f.capture,
                clock.epoch_wall + Duration::from_millis(20 * f.index)
            );
            lumas.push(f.i420[0]);
        }
        assert_eq!(lumas, [100, 101, 100, 101, 100]);
    }
}
