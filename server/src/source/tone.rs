//! The built-in beep (`--audio tone`): 48 kHz stereo, a 50 ms 1 kHz beep at the start of every
//! second (samples `[s·48000, s·48000 + 2400)`), digital silence otherwise.
//!
//! The beep starts and ends on a zero crossing (exactly 50 periods), so it needs no ramp and
//! leaves no energy outside its window. Silence between beeps keeps later caption or
//! level-detection tests unambiguous.

use std::sync::mpsc::SyncSender;

use super::{
    spawn_source, AudioFrame, MediaClock, Pacer, Rate, SourceCtx, SourceHandle, AUDIO_CHANNELS,
    AUDIO_FRAME_SAMPLES, AUDIO_RATE,
};

/// Beep length in samples (50 ms at 48 kHz).
pub const BEEP_SAMPLES: u64 = 2400;
/// Beep frequency in Hz.
pub const BEEP_HZ: u32 = 1000;
/// Beep peak amplitude (about −6 dBFS).
pub const BEEP_AMPLITUDE: f64 = 16_000.0;

/// Value of sample `i` (per channel, counted from the epoch).
#[must_use]
pub fn sample(i: u64) -> i16 {
    let pos = i % u64::from(AUDIO_RATE);
    if pos >= BEEP_SAMPLES {
        return 0;
    }
    let period = u64::from(AUDIO_RATE / BEEP_HZ);
    #[allow(clippy::cast_precision_loss)] // pos % 48 is tiny
    let phase = (pos % period) as f64 / period as f64;
    #[allow(clippy::cast_possible_truncation)] // |x| <= 16000
    let x = (BEEP_AMPLITUDE * (std::f64::consts::TAU * phase).sin()).round() as i16;
    x
}

/// Chunk `n` (20 ms, interleaved stereo), covering samples `[n·960, (n+1)·960)`.
#[must_use]
pub fn chunk(n: u64) -> Vec<i16> {
    let first = n * AUDIO_FRAME_SAMPLES as u64;
    let mut out = Vec::with_capacity(AUDIO_FRAME_SAMPLES * AUDIO_CHANNELS);
    for i in first..first + AUDIO_FRAME_SAMPLES as u64 {
        let s = sample(i);
        out.extend_from_slice(&[s; AUDIO_CHANNELS]);
    }
    out
}

pub(crate) fn start(
    clock: MediaClock,
    out: SyncSender<AudioFrame>,
    ctx: SourceCtx,
) -> anyhow::Result<SourceHandle> {
    let description = "tone (50 ms 1 kHz beep each second) 48 kHz stereo".to_owned();
    spawn_source("tone", description, ctx, move |ctx| {
        let mut pacer = Pacer::new(
            clock,
            Rate::per_second(AUDIO_RATE / AUDIO_FRAME_SAMPLES as u32),
        );
        while let Some(n) = pacer.next(&ctx, "tone") {
            let frame = AudioFrame {
                samples: chunk(n),
                capture: pacer.capture(n),
            };
            if !ctx.emit(&out, frame, "audio") {
                break;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{start_audio, start_video, AudioSpec, VideoConfig, VideoSpec};
    use std::time::{Duration, Instant, UNIX_EPOCH};

    #[test]
    fn the_beep_is_exactly_the_first_2400_samples_of_each_second() {
        // Three seconds, chunk by chunk, as the source emits them.
        let left: Vec<i16> = (0..150).flat_map(chunk).step_by(2).collect();
        for s in 0..3usize {
            let sec = &left[s * 48_000..(s + 1) * 48_000];
            // Energy in every 1 ms period of the beep.
            for period in sec[..2400].chunks(48) {
                let peak = period.iter().map(|x| x.unsigned_abs()).max().unwrap();
                assert!(peak > 15_000, "second {s}: {peak}");
            }
            assert!(
                sec[2400..].iter().all(|&x| x == 0),
                "second {s}: noise after the beep"
            );
        }
        // Stereo: both channels identical.
        let c = chunk(0);
        assert_eq!(c.len(), 1920);
        assert!(c.chunks(2).all(|f| f[0] == f[1]));
        // Ends on a zero crossing: no click.
        assert_eq!(sample(0), 0);
        assert!(sample(2399).abs() < 2200);
    }

    #[test]
    fn chunks_are_paced_and_stamped_every_20_ms() {
        let clock = MediaClock::now();
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let handle = start_audio(&AudioSpec::Tone, clock, tx).unwrap();
        let mut last = None;
        for _ in 0..5 {
            let f = rx.recv_timeout(Duration::from_secs(2)).unwrap();
            // Chunk n is stamped exactly n x 20 ms after the epoch and emitted no earlier.
            let since = f.capture.duration_since(clock.epoch_wall).unwrap();
            assert_eq!(since.as_nanos() % 20_000_000, 0);
            let n = (since.as_millis() / 20) as u64;
            assert!(Instant::now() >= clock.epoch + since);
            assert_eq!(f.samples, chunk(n));
            assert!(last.is_none_or(|l| n > l));
            last = Some(n);
        }
        // On an idle machine nothing is skipped: chunks 0..5 in order.
        if handle.skipped() == 0 {
            assert_eq!(last, Some(4));
        }
        drop(handle);
    }

    #[test]
    fn white_frames_and_beeps_share_capture_times_by_construction() {
        use crate::source::testsrc::TestCard;
        use crate::source::Rate;
        let epoch_wall = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        for fps in [24, 25, 30, 50, 60] {
            let card = TestCard::new(160, 120, fps);
            let video = Rate::per_second(fps);
            for s in 0..20u64 {
                let k = s * u64::from(fps);
                let n = s * 50;
                let white = card.render(k, epoch_wall + video.offset(k));
                assert!(white.i420[..160 * 120].iter().all(|&y| y == 235));
                let beep = chunk(n);
                assert_eq!((beep[0], beep[2] != 0), (0, true));
                assert!(n == 0 || chunk(n - 1).iter().all(|&x| x == 0));
                let beep_capture = epoch_wall + Duration::from_millis(20 * n);
                assert_eq!(white.capture, beep_capture, "fps {fps}, second {s}");
            }
        }
    }

    #[test]
    fn the_running_sources_stamp_the_white_frame_and_the_beep_alike() {
        // An epoch 950 ms ago, so second 1 comes up within ~50 ms.
        let clock = MediaClock {
            epoch: Instant::now()
                .checked_sub(Duration::from_millis(950))
                .unwrap(),
            epoch_wall: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        };
        let (vtx, vrx) = std::sync::mpsc::sync_channel(256);
        let (atx, arx) = std::sync::mpsc::sync_channel(256);
        let cfg = VideoConfig {
            width: 160,
            height: 120,
            fps: 30,
        };
        let _video = start_video(&VideoSpec::TestSrc, &cfg, clock, vtx).unwrap();
        let audio = start_audio(&AudioSpec::Tone, clock, atx).unwrap();
        let mut pending_audio = None;
        for _ in 0..3 {
            let white = loop {
                let f = vrx.recv_timeout(Duration::from_secs(3)).unwrap();
                if f.i420[..160 * 120].iter().all(|&y| y == 235) {
                    break f;
                }
            };
            assert_eq!(white.index % 30, 0);
            let second = Duration::from_secs(white.index / 30);
            assert_eq!(white.capture, clock.epoch_wall + second);
            // The audio chunk stamped identically is the one that starts the beep.
            let chunk = loop {
                let f = match pending_audio.take() {
                    Some(f) => f,
                    None => arx.recv_timeout(Duration::from_secs(3)).unwrap(),
                };
                if f.capture >= white.capture {
                    break f;
                }
            };
            if chunk.capture == white.capture {
                assert_eq!(chunk.samples[..2], [0, 0]);
                assert_ne!(chunk.samples[2], 0);
                return;
            }
            // A loaded machine made the tone skip that chunk: try the next second.
            pending_audio = Some(chunk);
        }
        assert!(audio.skipped() > 0, "no beep chunk matched a white frame");
    }
}
