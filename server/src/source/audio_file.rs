//! `--audio file:PATH` for compressed audio and the audio of media files: MP3, AAC (in MP4/M4A
//! or ADTS), FLAC, Vorbis and PCM, in MP4, Matroska/WebM, Ogg or their own files, decoded by
//! symphonia (pure Rust), linearly resampled to 48 kHz stereo, paced in real time and looped.
//! WAV files keep their own reader ([`super::wav`]), which takes the formats streaming tools
//! write that symphonia refuses.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{Decoder, DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::{
    spawn_looped_audio, AudioFrame, Chunker, MediaClock, SourceCtx, SourceHandle, StereoFrames,
    AUDIO_RATE,
};
use std::sync::mpsc::SyncSender;

/// A decoded, looping audio file.
pub struct AudioFileReader {
    path: PathBuf,
    format: Box<dyn FormatReader>,
    decoder: Box<dyn Decoder>,
    track: u32,
    /// The file's sample rate and channel count.
    rate: u32,
    channels: usize,
    /// Decoded interleaved samples not handed out yet, and where the next one is.
    samples: Vec<f32>,
    at: usize,
    /// Whether the last pass gave any sample (an empty file must not loop for ever).
    any: bool,
    codec: String,
    /// Loops on another track's length instead of at its own end ([`Self::loop_every`]).
    lock: Option<LoopLock>,
    /// Frames the file says to leave out at its start (an MP4 edit list: AAC's priming),
    /// and how many of them are still to go in this pass.
    priming: usize,
    skip: usize,
}

/// Loops of a fixed length, in the file's own frames: loop `k` ends at frame
/// `(k + 1) * length * rate` counted from the start, so rounding never adds up.
#[derive(Debug)]
struct LoopLock {
    length: std::time::Duration,
    emitted: u64,
    loops: u64,
    /// The file ended before the loop did: silence until it does.
    ended: bool,
}

fn open_format(path: &Path) -> anyhow::Result<Box<dyn FormatReader>> {
    let file = File::open(path).context("cannot open")?;
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| anyhow::anyhow!("not a media file this build reads ({e})"))?;
    Ok(probed.format)
}

impl AudioFileReader {
    /// Opens `path` and its first audio track.
    ///
    /// # Errors
    /// The file cannot be opened or read, has no audio track, or its codec is not one of
    /// those named in the module documentation; the message names the path.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Self::open_inner(path).with_context(|| format!("audio file {}", path.display()))
    }

    fn open_inner(path: &Path) -> anyhow::Result<Self> {
        let format = open_format(path)?;
        let Some(track) = format.tracks().iter().find(|t| {
            t.codec_params.codec != CODEC_TYPE_NULL && t.codec_params.sample_rate.is_some()
        }) else {
            bail!("no audio track");
        };
        let params = track.codec_params.clone();
        let codec = symphonia::default::get_codecs()
            .get_codec(params.codec)
            .map_or_else(
                || format!("{:?}", params.codec),
                |d| d.short_name.to_owned(),
            );
        let decoder = symphonia::default::get_codecs()
            .make(&params, &DecoderOptions::default())
            .map_err(|e| {
                anyhow::anyhow!(
                    "its audio codec ({codec}) cannot be decoded here ({e}); MP3, AAC, FLAC, \
                     Vorbis and PCM can (ffmpeg -i IN -c:a flac OUT.flac converts)"
                )
            })?;
        let rate = params.sample_rate.unwrap_or(AUDIO_RATE);
        let channels = params.channels.map_or(2, |c| c.count()).max(1);
        let priming = mp4_priming(path, rate);
        Ok(AudioFileReader {
            path: path.to_owned(),
            track: track.id,
            format,
            decoder,
            rate,
            channels,
            samples: Vec::new(),
            at: 0,
            any: false,
            codec,
            lock: None,
            priming,
            skip: priming,
        })
    }

    /// Starts the file again every `length` of audio, cutting it or filling it with silence:
    /// the video's length when the same file's video is passed through, so the two loop
    /// together and never drift apart (AAC's priming and padding make the audio track of a
    /// file a few tens of ms longer than its video).
    #[must_use]
    pub fn loop_every(mut self, length: std::time::Duration) -> Self {
        if !length.is_zero() {
            self.lock = Some(LoopLock {
                length,
                emitted: 0,
                loops: 0,
                ended: false,
            });
        }
        self
    }

    fn restart(&mut self) -> anyhow::Result<()> {
        self.format = open_format(&self.path)
            .with_context(|| format!("audio file {}", self.path.display()))?;
        self.decoder.reset();
        self.samples.clear();
        self.at = 0;
        self.skip = self.priming;
        Ok(())
    }

    /// Decodes the next packet into `samples`; `false` at the end of the file.
    fn decode_next(&mut self) -> anyhow::Result<bool> {
        loop {
            let packet = match self.format.next_packet() {
                Ok(p) => p,
                Err(SymphoniaError::IoError(e))
                    if e.kind() == std::io::ErrorKind::UnexpectedEof =>
                {
                    return Ok(false)
                }
                Err(SymphoniaError::ResetRequired) => return Ok(false),
                Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", self.path.display())),
            };
            if packet.track_id() != self.track {
                continue;
            }
            match self.decoder.decode(&packet) {
                Ok(buf) => {
                    let spec = *buf.spec();
                    self.channels = spec.channels.count().max(1);
                    let mut out = SampleBuffer::<f32>::new(buf.capacity() as u64, spec);
                    out.copy_interleaved_ref(buf);
                    self.samples.clear();
                    self.samples.extend_from_slice(out.samples());
                    // The edit list's priming: left out of each pass.
                    let skipped = self.skip.min(self.samples.len() / self.channels);
                    self.skip -= skipped;
                    self.at = skipped * self.channels;
                    if self.samples.len() > self.at {
                        self.any = true;
                        return Ok(true);
                    }
                }
                // A damaged packet: skipped, as players do.
                Err(SymphoniaError::DecodeError(e)) => {
                    tracing::debug!(path = %self.path.display(), "skipping a packet: {e}");
                }
                Err(e) => return Err(anyhow::anyhow!("decoding {}: {e}", self.path.display())),
            }
        }
    }

    /// The next frame as stereo `[-1, 1]` (mono doubled, more channels: the front pair),
    /// starting the file again at its end.
    ///
    /// # Errors
    /// Read or decode errors, or a file without a single sample.
    pub fn next_frame(&mut self) -> anyhow::Result<[f32; 2]> {
        if let Some(l) = &mut self.lock {
            let end = u128::from(l.loops + 1) * l.length.as_nanos() * u128::from(self.rate)
                / 1_000_000_000;
            if u128::from(l.emitted) >= end {
                l.loops += 1;
                l.ended = false;
                self.restart()?;
            }
            let l = self.lock.as_mut().expect("just matched");
            l.emitted += 1;
            if l.ended {
                return Ok([0.0, 0.0]);
            }
        }
        while self.at + self.channels > self.samples.len() {
            if !self.decode_next()? {
                if !self.any {
                    bail!("audio file {}: no samples", self.path.display());
                }
                if let Some(l) = &mut self.lock {
                    l.ended = true;
                    return Ok([0.0, 0.0]);
                }
                tracing::debug!(path = %self.path.display(), "end of file: looping");
                self.restart()?;
                self.any = false;
            }
        }
        let s = &self.samples[self.at..self.at + self.channels];
        self.at += self.channels;
        let finite = |x: f32| {
            if x.is_finite() {
                x.clamp(-1.0, 1.0)
            } else {
                0.0
            }
        };
        Ok([finite(s[0]), finite(*s.get(1).unwrap_or(&s[0]))])
    }
}

/// The frames (at `rate`) an MP4's edit list says to leave out at the start of its audio
/// track: ffmpeg's AAC files say 1,024 (the encoder's priming); symphonia's MP4 reader does
/// not read edit lists. 0 for other files or without an edit list.
fn mp4_priming(path: &Path, rate: u32) -> usize {
    let Ok(super::container::FileKind::Mp4) = super::container::file_kind(path) else {
        return 0;
    };
    let Ok(f) = File::open(path) else { return 0 };
    let Ok(size) = f.metadata().map(|m| m.len()) else {
        return 0;
    };
    let Ok(mp4) = mp4::Mp4Reader::read_header(std::io::BufReader::new(f), size) else {
        return 0;
    };
    let Some(t) = mp4
        .tracks()
        .values()
        .find(|t| matches!(t.track_type(), Ok(mp4::TrackType::Audio)))
    else {
        return 0;
    };
    let timescale = u64::from(t.timescale().max(1));
    let first = t
        .trak
        .edts
        .as_ref()
        .and_then(|e| e.elst.as_ref())
        .and_then(|l| {
            // An empty edit (media time -1) first only delays the track: not priming.
            l.entries
                .iter()
                .find(|e| e.media_time != u64::from(u32::MAX) && e.media_time != u64::MAX)
        });
    first.map_or(0, |e| {
        // At most a second: anything longer is not priming.
        let frames = e.media_time.min(timescale) * u64::from(rate) / timescale;
        usize::try_from(frames).unwrap_or(0)
    })
}

impl StereoFrames for AudioFileReader {
    fn rate(&self) -> u32 {
        self.rate
    }

    fn next_frame(&mut self) -> anyhow::Result<[f32; 2]> {
        AudioFileReader::next_frame(self)
    }
}

pub(crate) fn start(
    path: &Path,
    loop_length: Option<std::time::Duration>,
    clock: MediaClock,
    out: SyncSender<AudioFrame>,
    ctx: SourceCtx,
) -> anyhow::Result<SourceHandle> {
    let mut reader = AudioFileReader::open(path)?;
    if let Some(length) = loop_length {
        reader = reader.loop_every(length);
    }
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let description = format!(
        "file {name} ({} {} Hz {} ch) -> 48 kHz stereo",
        reader.codec, reader.rate, reader.channels
    );
    tracing::info!(
        "audio file {}: {}, {} Hz, {} channel(s), looped",
        path.display(),
        reader.codec,
        reader.rate,
        reader.channels
    );
    spawn_looped_audio(
        "audio-file",
        description,
        Chunker::new(reader),
        clock,
        out,
        ctx,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::Duration;

    /// A 1 s 440 Hz tone (mono, 44.1 kHz) encoded by ffmpeg as `ext`.
    fn tone(dir: &Path, ext: &str, codec: &[&str]) -> PathBuf {
        let path = dir.join(format!("tone.{ext}"));
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg("sine=frequency=440:sample_rate=44100:duration=1")
            .args(codec)
            .arg(&path)
            .status()
            .expect("ffmpeg is installed (the test command installs it)");
        assert!(status.success(), "ffmpeg made no {ext}");
        path
    }

    /// Peak of the 48 kHz output over `chunks` chunks.
    fn peak(path: &Path, chunks: usize) -> i16 {
        let mut c = Chunker::new(AudioFileReader::open(path).unwrap());
        let mut peak = 0i16;
        for _ in 0..chunks {
            let s = c.next_chunk().unwrap();
            assert_eq!(s.len(), 1920);
            peak = peak.max(s.iter().map(|x| x.saturating_abs()).max().unwrap_or(0));
        }
        peak
    }

    #[test]
    fn a_fixed_loop_length_cuts_or_pads_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // 1 s of tone at 44.1 kHz, lossless: the samples are known to repeat exactly.
        let path = tone(dir.path(), "flac", &["-c:a", "flac"]);
        let frames = |r: &mut AudioFileReader, n: usize| -> Vec<f32> {
            (0..n).map(|_| r.next_frame().unwrap()[0]).collect()
        };
        let rate = 44_100;
        // Longer than the file: the second half second is silence, then the tone again.
        let mut r = AudioFileReader::open(&path)
            .unwrap()
            .loop_every(Duration::from_millis(1500));
        let a = frames(&mut r, 3 * rate);
        let first = &a[..rate];
        assert!(first.iter().any(|x| x.abs() > 0.1));
        assert!(a[rate + 10..rate * 3 / 2].iter().all(|&x| x == 0.0));
        assert_eq!(&a[rate * 3 / 2..rate * 5 / 2], first);
        // Shorter than the file: it starts again every 0.4 s, never reaching silence.
        let mut r = AudioFileReader::open(&path)
            .unwrap()
            .loop_every(Duration::from_millis(400));
        let b = frames(&mut r, 2 * rate);
        let loop_len = rate * 4 / 10;
        for k in 1..4 {
            assert_eq!(
                &b[k * loop_len..(k + 1) * loop_len],
                &b[..loop_len],
                "loop {k}"
            );
        }
    }

    #[test]
    fn mp3_aac_flac_and_vorbis_decode_resample_and_loop() {
        let dir = tempfile::tempdir().unwrap();
        for (ext, codec) in [
            ("mp3", &["-c:a", "libmp3lame"][..]),
            ("m4a", &["-c:a", "aac"][..]),
            ("flac", &["-c:a", "flac"][..]),
            ("ogg", &["-c:a", "libvorbis"][..]),
        ] {
            let path = tone(dir.path(), ext, codec);
            let r = AudioFileReader::open(&path).unwrap();
            assert_eq!(StereoFrames::rate(&r), 44_100, "{ext}");
            // 3 s of output from a 1 s file: it loops, and it is the tone (ffmpeg's sine is
            // at 1/8 of full scale), not silence.
            let p = peak(&path, 150);
            assert!((3000..=5000).contains(&p), "{ext}: peak {p}");
        }
    }

    #[test]
    fn bad_files_say_what_is_wrong_and_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.mp3");
        let e = format!("{:#}", AudioFileReader::open(&missing).err().unwrap());
        assert!(e.contains("nope.mp3") && e.contains("cannot open"), "{e}");
        let junk = dir.path().join("junk.mp3");
        std::fs::write(&junk, b"this is not audio at all, just text").unwrap();
        let e = format!("{:#}", AudioFileReader::open(&junk).err().unwrap());
        assert!(e.contains("junk.mp3"), "{e}");
        // A video-only file: no audio track.
        let video = dir.path().join("video.mkv");
        let status = Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc=duration=1:size=64x48",
            ])
            .args(["-c:v", "ffv1"])
            .arg(&video)
            .status()
            .unwrap();
        assert!(status.success());
        let e = format!("{:#}", AudioFileReader::open(&video).err().unwrap());
        assert!(
            e.contains("video.mkv") && e.contains("no audio track"),
            "{e}"
        );
    }
}
