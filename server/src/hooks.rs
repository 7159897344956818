//! What an embedding program (the player's call mode) can do to the media on its way to the
//! encoders: mute the microphone, switch the camera off, process captured audio (echo
//! cancellation) and watch the captured pictures (a self-view).
//!
//! `livecast-server` itself uses none of it: [`MediaHooks::default`] costs one atomic load per
//! frame.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::source::{AudioFrame, VideoFrame};

/// Run-time switches, shared with the embedding program.
#[derive(Debug, Default)]
pub struct MediaControls {
    mic_muted: AtomicBool,
    camera_off: AtomicBool,
    /// What the video encoder should make now (quality adaptation in a call), and a count of
    /// changes so the encoder sees one with a single atomic load per picture.
    video_target: Mutex<Option<VideoTarget>>,
    video_target_changes: AtomicU64,
}

/// The picture and rate the video encoder is asked for: the source is scaled to
/// `width`x`height` and thinned to `fps` pictures a second when it has more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VideoTarget {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate: u32,
}

impl MediaControls {
    /// Muted: the audio track carries digital silence (the stream and its timing go on, so
    /// players keep their lip sync and captions see silence).
    pub fn set_mic_muted(&self, on: bool) {
        self.mic_muted.store(on, Ordering::Relaxed);
    }

    pub fn mic_muted(&self) -> bool {
        self.mic_muted.load(Ordering::Relaxed)
    }

    /// Off: the video track carries black pictures at the same rate and size.
    pub fn set_camera_off(&self, on: bool) {
        self.camera_off.store(on, Ordering::Relaxed);
    }

    pub fn camera_off(&self) -> bool {
        self.camera_off.load(Ordering::Relaxed)
    }

    /// Asks the video encoder for `target` from its next picture on.
    pub fn set_video_target(&self, target: VideoTarget) {
        let mut t = self.video_target.lock().unwrap_or_else(|p| p.into_inner());
        if *t != Some(target) {
            *t = Some(target);
            self.video_target_changes.fetch_add(1, Ordering::Release);
        }
    }

    /// The target if it changed since `seen` (which is updated), else `None`.
    pub fn video_target_since(&self, seen: &mut u64) -> Option<VideoTarget> {
        let now = self.video_target_changes.load(Ordering::Acquire);
        if now == *seen {
            return None;
        }
        *seen = now;
        *self.video_target.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Processes each captured audio frame (interleaved stereo 48 kHz i16, 20 ms) in place before
/// it is encoded and captioned.
pub type AudioProcessor = dyn FnMut(&mut [i16]);

/// Makes the [`AudioProcessor`], on the audio-encoder thread that will run it (so it need not
/// be `Send`: echo cancellers often aren't).
pub type AudioProcessorFactory = dyn Fn() -> Box<AudioProcessor> + Send + Sync;

/// The newest captured picture, for a self-view (`None` until the first one).
pub type Preview = watch::Receiver<Option<Arc<VideoFrame>>>;

/// Hooks into the capture side of the pipeline.
#[derive(Clone, Default)]
pub struct MediaHooks {
    pub controls: Arc<MediaControls>,
    /// Applied to captured audio before encoding (echo cancellation in a call).
    pub audio: Option<Arc<AudioProcessorFactory>>,
    /// Receives every captured picture (as captured: not blacked out when the camera is off).
    pub preview: Option<watch::Sender<Option<Arc<VideoFrame>>>>,
}

impl MediaHooks {
    /// Hooks with a preview channel; returns the receiving end.
    pub fn with_preview(mut self) -> (Self, Preview) {
        let (tx, rx) = watch::channel(None);
        self.preview = Some(tx);
        (self, rx)
    }

    /// The audio processor, made on the calling thread.
    pub(crate) fn audio_processor(&self) -> Option<Box<AudioProcessor>> {
        self.audio.as_ref().map(|make| make())
    }

    /// The audio processing and mute applied to one captured frame. The processor runs even
    /// while muted, so an echo canceller keeps following the room.
    pub(crate) fn audio_frame(
        &self,
        processor: &mut Option<Box<AudioProcessor>>,
        frame: &mut AudioFrame,
    ) {
        if let Some(p) = processor {
            p(&mut frame.samples);
        }
        if self.controls.mic_muted() {
            frame.samples.fill(0);
        }
    }

    /// Publishes the picture to the self-view, then blacks it out if the camera is off.
    pub(crate) fn video_frame(&self, frame: &mut VideoFrame) {
        if let Some(tx) = &self.preview {
            if tx.receiver_count() > 0 {
                tx.send_replace(Some(Arc::new(frame.clone())));
            }
        }
        if self.controls.camera_off() {
            black_i420(frame);
        }
    }
}

impl fmt::Debug for MediaHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaHooks")
            .field("controls", &self.controls)
            .field("audio", &self.audio.is_some())
            .field("preview", &self.preview.is_some())
            .finish()
    }
}

/// Black in video range (BT.601/709 limited: Y 16, chroma 128).
fn black_i420(frame: &mut VideoFrame) {
    let luma = ((frame.width * frame.height) as usize).min(frame.i420.len());
    let (y, uv) = frame.i420.split_at_mut(luma);
    y.fill(16);
    uv.fill(128);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn audio() -> AudioFrame {
        AudioFrame {
            samples: (0..1920).map(|i| (i % 200) as i16 * 10).collect(),
            capture: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn mute_silences_and_processor_runs_otherwise() {
        let hooks = MediaHooks {
            audio: Some(Arc::new(|| {
                Box::new(|s: &mut [i16]| {
                    for x in s.iter_mut() {
                        *x /= 2;
                    }
                })
            })),
            ..MediaHooks::default()
        };
        let mut p = hooks.audio_processor();
        let mut f = audio();
        hooks.audio_frame(&mut p, &mut f);
        assert_eq!(f.samples[150], 750);
        hooks.controls.set_mic_muted(true);
        let mut f = audio();
        hooks.audio_frame(&mut p, &mut f);
        assert!(f.samples.iter().all(|&s| s == 0));
    }

    #[test]
    fn camera_off_blacks_the_stream_but_not_the_self_view() {
        let (hooks, preview) = MediaHooks::default().with_preview();
        hooks.controls.set_camera_off(true);
        let mut f = VideoFrame {
            width: 4,
            height: 2,
            i420: vec![200; 12],
            capture: SystemTime::UNIX_EPOCH,
            index: 7,
        };
        hooks.video_frame(&mut f);
        assert_eq!(&f.i420[..8], &[16; 8]);
        assert_eq!(&f.i420[8..], &[128; 4]);
        let seen = preview.borrow().clone().expect("a preview frame");
        assert_eq!((seen.index, seen.i420[0]), (7, 200));
    }
}
