//! Microphone source (`--audio mic[:NAME]`) through cpal (ALSA on Linux).
//!
//! The device's default input configuration is used, whatever its rate, channel count and
//! sample type; the capture callback mixes it to stereo (mono duplicated, extra channels
//! ignored), linearly resamples to 48 kHz and cuts 20 ms chunks, sent without blocking.
//!
//! Capture times: the first sample delivered by a callback is stamped from the callback's
//! arrival time on the [`MediaClock`], then advanced by the sample count; if the device clock
//! and the system clock drift more than 40 ms apart the anchor is re-taken.
//!
//! `mic` (no name) and `auto` first look for a capture node in `/dev/snd` on Linux, so a
//! machine without a sound card gets a clear answer without ALSA's own complaints on stderr.
//! `mic:NAME` goes straight to cpal (use it for e.g. a PulseAudio-only `mic:pulse`).

use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant, SystemTime};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};

use super::{
    spawn_source, AudioFrame, MediaClock, Resampler, SourceCtx, SourceHandle, AUDIO_CHANNELS,
    AUDIO_FRAME_SAMPLES, AUDIO_RATE,
};

const ALTERNATIVES: &str = "use --audio tone or --audio file:PATH.wav";
/// Re-anchor capture times when the sample count and the clock disagree by more than this.
const MAX_DRIFT: Duration = Duration::from_millis(40);

/// Whether a microphone looks present, without opening anything.
pub(crate) fn probe() -> Result<(), String> {
    if cfg!(target_os = "linux") {
        let found = std::fs::read_dir("/dev/snd").is_ok_and(|dir| {
            dir.flatten().any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("pcmC") && name.ends_with('c')
            })
        });
        if found {
            Ok(())
        } else {
            Err("no microphone found (no capture device in /dev/snd)".to_owned())
        }
    } else if cpal::default_host().default_input_device().is_some() {
        Ok(())
    } else {
        Err("no microphone found".to_owned())
    }
}

pub(crate) fn start(
    name: Option<&str>,
    clock: MediaClock,
    out: SyncSender<AudioFrame>,
    ctx: SourceCtx,
) -> anyhow::Result<SourceHandle> {
    if name.is_none() {
        probe().map_err(|why| anyhow::anyhow!("{why}: {ALTERNATIVES}"))?;
    }
    let name = name.map(str::to_owned);
    let label = name
        .clone()
        .map_or_else(|| "mic".to_owned(), |n| format!("mic:{n}"));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<String, String>>();
    let mut handle = spawn_source("mic", label.clone(), ctx, move |ctx| {
        let stream = match open(name.as_deref(), clock, out, &ctx) {
            Ok((stream, description)) => {
                let _ = ready_tx.send(Ok(description));
                stream
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        // The stream delivers on cpal's own thread; this one only keeps it alive.
        while !ctx.stopped() {
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(stream);
    })?;
    match ready_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(description)) => {
            handle.description = description;
            Ok(handle)
        }
        Ok(Err(e)) => anyhow::bail!("{label}: {e}: {ALTERNATIVES}"),
        Err(_) => anyhow::bail!("{label}: did not start within 10 s: {ALTERNATIVES}"),
    }
}

fn open(
    name: Option<&str>,
    clock: MediaClock,
    out: SyncSender<AudioFrame>,
    ctx: &SourceCtx,
) -> Result<(cpal::Stream, String), String> {
    let host = cpal::default_host();
    let device = match name {
        None => host
            .default_input_device()
            .ok_or("no microphone found (no default input device)")?,
        Some(wanted) => {
            let devices: Vec<cpal::Device> = host
                .input_devices()
                .map_err(|e| format!("cannot list input devices: {e}"))?
                .collect();
            let needle = wanted.to_lowercase();
            let position = devices
                .iter()
                .position(|d| d.to_string().to_lowercase() == needle)
                .or_else(|| {
                    devices
                        .iter()
                        .position(|d| d.to_string().to_lowercase().contains(&needle))
                });
            match position {
                Some(i) => devices.into_iter().nth(i).ok_or("device vanished")?,
                None => {
                    let names: Vec<String> = devices.iter().map(ToString::to_string).collect();
                    return Err(if names.is_empty() {
                        "no microphone found (no input devices)".to_owned()
                    } else {
                        format!(
                            "no input device matches {wanted:?} (have: {})",
                            names.join(", ")
                        )
                    });
                }
            }
        }
    };
    let device_name = device.to_string();
    let supported = device
        .default_input_config()
        .map_err(|e| format!("{device_name}: no input configuration: {e}"))?;
    let config = supported.config();
    let capture = Capture::new(
        config.sample_rate,
        usize::from(config.channels),
        clock,
        out,
        ctx.clone(),
    );
    let stream = match supported.sample_format() {
        SampleFormat::I8 => build::<i8>(&device, &config, capture),
        SampleFormat::I16 => build::<i16>(&device, &config, capture),
        SampleFormat::I32 => build::<i32>(&device, &config, capture),
        SampleFormat::U8 => build::<u8>(&device, &config, capture),
        SampleFormat::U16 => build::<u16>(&device, &config, capture),
        SampleFormat::U32 => build::<u32>(&device, &config, capture),
        SampleFormat::F32 => build::<f32>(&device, &config, capture),
        SampleFormat::F64 => build::<f64>(&device, &config, capture),
        other => return Err(format!("{device_name}: unsupported sample format {other}")),
    }
    .map_err(|e| format!("{device_name}: cannot open the input stream: {e}"))?;
    stream
        .play()
        .map_err(|e| format!("{device_name}: cannot start capturing: {e}"))?;
    let description = format!(
        "mic ({device_name}) {} Hz {} ch -> 48 kHz stereo",
        config.sample_rate, config.channels
    );
    tracing::info!("{description}, {}", supported.sample_format());
    Ok((stream, description))
}

fn build<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    mut capture: Capture,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + Send + 'static,
    f32: FromSample<T>,
{
    device.build_input_stream::<T, _, _>(
        *config,
        move |data: &[T], _info| capture.push(data, Instant::now()),
        |e| tracing::warn!("microphone stream error: {e}"),
        Some(Duration::from_secs(5)),
    )
}

/// Callback state: channel mix, resampling, chunking and time stamps.
struct Capture {
    channels: usize,
    resampler: Resampler,
    pending: Vec<i16>,
    /// Output sample frames produced (chunked or pending) so far.
    produced: u64,
    /// (instant, output frame index) pair from which capture times are derived.
    anchor: Option<(Instant, u64)>,
    clock: MediaClock,
    out: SyncSender<AudioFrame>,
    ctx: SourceCtx,
    /// Output frame index of `pending[0]`.
    chunk_start: u64,
    gone: bool,
}

impl Capture {
    fn new(
        rate: u32,
        channels: usize,
        clock: MediaClock,
        out: SyncSender<AudioFrame>,
        ctx: SourceCtx,
    ) -> Self {
        Self {
            channels: channels.max(1),
            resampler: Resampler::new(rate),
            pending: Vec::new(),
            produced: 0,
            anchor: None,
            clock,
            out,
            ctx,
            chunk_start: 0,
            gone: false,
        }
    }

    fn push<T>(&mut self, data: &[T], now: Instant)
    where
        T: SizedSample,
        f32: FromSample<T>,
    {
        if self.gone {
            return;
        }
        for frame in data.chunks_exact(self.channels) {
            let left = f32::from_sample_(frame[0]);
            let right = frame.get(1).map_or(left, |&r| f32::from_sample_(r));
            self.resampler.push([left, right], &mut self.pending);
        }
        self.produced = self.chunk_start + (self.pending.len() / AUDIO_CHANNELS) as u64;
        // The newest sample arrived about now.
        let expected = self
            .anchor
            .map(|(t, m)| t + frames_to_duration(self.produced - m.min(self.produced)));
        let drifted = expected.is_none_or(|e| e.max(now) - e.min(now) > MAX_DRIFT);
        if drifted {
            if self.anchor.is_some() {
                tracing::debug!(
                    "microphone clock drifted more than {MAX_DRIFT:?}: re-anchoring capture times"
                );
            }
            self.anchor = Some((now, self.produced));
        }
        let want = AUDIO_FRAME_SAMPLES * AUDIO_CHANNELS;
        while self.pending.len() >= want {
            let rest = self.pending.split_off(want);
            let samples = std::mem::replace(&mut self.pending, rest);
            let capture = self.capture_time(self.chunk_start);
            self.chunk_start += AUDIO_FRAME_SAMPLES as u64;
            if !self
                .ctx
                .emit(&self.out, AudioFrame { samples, capture }, "audio")
            {
                self.gone = true;
                return;
            }
        }
    }

    fn capture_time(&self, frame: u64) -> SystemTime {
        let Some((t, m)) = self.anchor else {
            return self.clock.epoch_wall;
        };
        let at = self.clock.wall_at(t);
        if frame >= m {
            at + frames_to_duration(frame - m)
        } else {
            at.checked_sub(frames_to_duration(m - frame)).unwrap_or(at)
        }
    }
}

fn frames_to_duration(frames: u64) -> Duration {
    Duration::from_nanos(frames.saturating_mul(1_000_000_000) / u64::from(AUDIO_RATE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{audio_start_error, start_audio, AudioSpec};

    #[test]
    fn without_a_microphone_the_error_names_the_alternatives() {
        if probe().is_ok() {
            return; // a machine with a microphone: nothing to check here
        }
        let msg = audio_start_error(&AudioSpec::Mic(None));
        assert!(msg.contains("no microphone found"), "{msg}");
        assert!(msg.contains(ALTERNATIVES), "{msg}");
    }

    #[test]
    fn a_named_microphone_that_does_not_exist_is_a_clear_error() {
        let msg = audio_start_error(&AudioSpec::Mic(Some("no-such-microphone-xyz".into())));
        assert!(msg.starts_with("mic:no-such-microphone-xyz: "), "{msg}");
        assert!(msg.contains(ALTERNATIVES), "{msg}");
    }

    #[test]
    fn auto_falls_back_to_the_tone() {
        if probe().is_ok() {
            return;
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let h = start_audio(&AudioSpec::Auto, MediaClock::now(), tx).unwrap();
        assert!(h.description.starts_with("tone"), "{}", h.description);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(2))
                .unwrap()
                .samples
                .len(),
            1920
        );
    }

    #[test]
    fn the_callback_chunks_resamples_and_stamps() {
        let clock = MediaClock::now();
        let (tx, rx) = std::sync::mpsc::sync_channel(100);
        let ctx = SourceCtx::new();
        // A 16 kHz mono device delivering 10 ms callbacks.
        let mut cap = Capture::new(16_000, 1, clock, tx, ctx);
        let t0 = clock.epoch + Duration::from_secs(1);
        for i in 0..10u32 {
            let data: Vec<i16> = vec![8192; 160];
            cap.push(&data, t0 + Duration::from_millis(10) * i);
        }
        let chunks: Vec<AudioFrame> = rx.try_iter().collect();
        // 100 ms of input is 4 full 20 ms chunks (plus a partial one pending).
        assert_eq!(chunks.len(), 4);
        for (n, c) in chunks.iter().enumerate() {
            assert_eq!(c.samples.len(), 1920);
            assert!(c.samples.iter().all(|&s| s == 8192));
            // Anchored at the first callback: its last sample (frame 477) arrived at t0.
            let expected = clock.wall_at(t0) + Duration::from_millis(20 * n as u64);
            let first = clock
                .wall_at(t0)
                .checked_sub(Duration::from_nanos(477 * 1_000_000_000 / 48_000))
                .unwrap();
            assert_eq!(c.capture, first + Duration::from_millis(20 * n as u64));
            assert!(expected > c.capture);
        }
        // Strictly 20 ms apart.
        for w in chunks.windows(2) {
            assert_eq!(
                w[1].capture.duration_since(w[0].capture).unwrap(),
                Duration::from_millis(20)
            );
        }
    }
}
