//! The engine's public face: what the GUI (or the headless runner) sends it and what it sends
//! back. Nothing here depends on iced.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use livecast_proto::codec::Codec;

/// Where the media comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A live RTSP stream; everything received is recorded.
    Url(String),
    /// A recording made earlier (possibly by a player that was killed mid-session).
    File(PathBuf),
}

/// How RTP should reach us.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TransportPref {
    /// UDP first; interleaved TCP when UDP brings nothing within 2 s.
    #[default]
    Auto,
    Udp,
    Tcp,
}

/// Engine start-up options.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub source: Source,
    pub transport: TransportPref,
    /// Keep the recording here; `None` records to a temporary file removed at exit.
    pub record: Option<PathBuf>,
    /// Try to open an audio output device (cpal). Without one, playback goes on silently.
    pub audio_output: bool,
    /// Initial volume 0.0..=1.0.
    pub volume: f32,
    /// Keep the jitter buffer at the minimum the measured jitter allows (on in call mode).
    pub low_latency: bool,
    /// Call mode: retry until the peer answers ([`ConnState::Calling`]), end for good when it
    /// hangs up or is gone ([`ConnState::CallEnded`]); implies `low_latency`.
    pub call: bool,
    /// Ask for retransmissions (RTCP generic NACK, RFC 4585) where the server offers them
    /// (`--no-nack` turns it off: plain RTP/AVP, as before).
    pub nack: bool,
    /// Write the session's captions here when the engine stops (WebVTT, or SubRip for
    /// `.srt`).
    pub captions_out: Option<PathBuf>,
    /// Sees what goes to the loudspeaker (the echo canceller's far end in a call).
    pub playout_tap: Option<super::audio_out::PlayoutTap>,
    /// User name and password for a server that asks (Digest); `None`: those in the URL.
    pub credentials: Option<livecast_proto::rtsp::client::Credentials>,
    /// Whom an `rtsps://` server must be (trust on first use by default).
    pub tls: super::net::TlsConfig,
    /// A stream that lists renditions: receive this size (`--rendition WxH`); `None` (auto):
    /// move down on sustained loss and back up when it clears.
    pub rendition: Option<(u32, u32)>,
}

impl EngineConfig {
    pub fn new(source: Source) -> Self {
        Self {
            source,
            transport: TransportPref::Auto,
            record: None,
            audio_output: true,
            volume: 1.0,
            low_latency: false,
            call: false,
            nack: true,
            captions_out: None,
            playout_tap: None,
            credentials: None,
            tls: Default::default(),
            rendition: None,
        }
    }
}

/// What the viewer asks for. Playback commands act on the recording; `StreamPause` /
/// `StreamResume` send RTSP PAUSE / PLAY to the server; `Stop` sends TEARDOWN.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Play,
    Pause,
    TogglePause,
    /// Seek to a position measured from the start of the recording.
    Seek(Duration),
    /// Seek relative to the playhead, in milliseconds (negative = back).
    SeekBy(i64),
    /// The timeline knob is being dragged to this position (from the start of the
    /// recording): playback holds and the picture follows the knob, at once near it (the
    /// keyframe before it), then exactly. The [`Command::Seek`] at the release ends the drag
    /// and plays on if playback was playing.
    Scrub(Duration),
    /// Playback speed, 0.5 to 4.0 (audio muted above 2x).
    SetSpeed(f32),
    GoLive,
    SetVolume(f32),
    ToggleMute,
    SetCaptions(bool),
    /// Write the session's captions to this file: WebVTT, or SubRip if it ends in `.srt`.
    /// The outcome shows in [`Status::notice`].
    ExportCaptions(PathBuf),
    /// Write the session so far to this MP4 file and a .vtt beside it (H.264, Opus and
    /// captions as received, see [`super::export`]), on a thread of its own; the outcome
    /// shows in [`Status::notice`].
    ExportMp4(PathBuf),
    StreamPause,
    StreamResume,
    Stop,
}

/// Connection state as shown to the viewer.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum ConnState {
    #[default]
    Connecting,
    /// Receiving media (transport in use).
    Streaming { tcp: bool },
    /// RTSP PAUSE sent: the server holds the stream; the recording stops growing.
    ServerPaused,
    /// Lost the server; retrying after `retry_in` (the back-off grows with each attempt).
    /// `reason` is for the viewer.
    Reconnecting {
        attempt: u32,
        reason: String,
        retry_in: std::time::Duration,
    },
    /// Playing a file: no connection.
    Offline,
    /// TEARDOWN done or the engine stopped.
    Ended,
    /// Gave up (bad URL, 404, unsupported stream).
    Failed(String),
    /// The server wants a user name and password we don't have, or refused ours (401): the
    /// window asks for them.
    Unauthorized(String),
    /// Call mode: the peer does not answer yet; retrying every second. `reason` is the last
    /// attempt's error (empty before the first).
    Calling { attempt: u32, reason: String },
    /// Call mode: the peer hung up or is gone; not retried.
    CallEnded(String),
}

/// What the headless player prints (the stats JSON keeps the `Debug` form).
impl std::fmt::Display for ConnState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connecting => f.write_str("connecting"),
            Self::Streaming { tcp: true } => f.write_str("streaming (RTP over RTSP, TCP)"),
            Self::Streaming { tcp: false } => f.write_str("streaming (RTP over UDP)"),
            Self::ServerPaused => f.write_str("paused at the server"),
            Self::Reconnecting {
                attempt,
                reason,
                retry_in,
            } => write!(
                f,
                "reconnecting (attempt {attempt}, next in {:.1} s): {reason}",
                retry_in.as_secs_f64()
            ),
            Self::Offline => f.write_str("playing a file"),
            Self::Ended => f.write_str("ended"),
            Self::Failed(why) => write!(f, "failed: {why}"),
            Self::Unauthorized(why) => write!(f, "not authorized: {why}"),
            Self::Calling { attempt, reason } if reason.is_empty() => {
                write!(f, "calling (attempt {attempt})")
            }
            Self::Calling { attempt, reason } => {
                write!(f, "calling (attempt {attempt}): {reason}")
            }
            Self::CallEnded(why) => write!(f, "call ended: {why}"),
        }
    }
}

/// Receive-side statistics (also written by `--stats-json`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    pub width: u32,
    pub height: u32,
    /// Decoded frames per second over the last second.
    pub fps: f64,
    /// Received bit rate over the last second, bit/s.
    pub bitrate: f64,
    pub packets_received: u64,
    pub packets_lost: i64,
    /// Interarrival jitter of the video track, ms (RFC 3550 A.8).
    pub jitter_ms: f64,
    /// Capture (sender-report clock) to ready-to-show, ms, latest.
    pub latency_ms: Option<f64>,
    pub recorded: Duration,
    pub video_frames_decoded: u64,
    pub audio_frames_decoded: u64,
    /// Where the stream lists renditions: the one received (`WxH`) and the switches so far.
    pub rendition: Option<(String, u64)>,
}

/// What the engine reports, several times a second and on every change.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Status {
    pub conn: ConnState,
    /// Playhead, from the start of the recording.
    pub position: Duration,
    /// Recorded span: the live edge is at `recorded_end`.
    pub recorded_end: Duration,
    pub playing: bool,
    pub speed: f32,
    /// The playhead is at the live edge (within the jitter delay).
    pub at_live: bool,
    pub volume: f32,
    pub muted: bool,
    pub captions_enabled: bool,
    /// Whether the stream has a caption track.
    pub has_captions: bool,
    /// Up to two lines of caption text for the playhead position.
    pub caption_text: Vec<String>,
    pub stats: Stats,
    /// Codecs of the tracks being played.
    pub codecs: Vec<Codec>,
    /// One-off warnings for the viewer (e.g. "no audio device: playing silently").
    pub warnings: Vec<String>,
    /// The outcome of the last action that reports one (a captions export).
    pub notice: Option<String>,
    /// The stream's name (SDP `s=`): in a call, the peer's name.
    pub title: Option<String>,
    /// Chat messages received so far (call mode), oldest first. Shared: a status carries
    /// no copy of the history.
    pub chat: Arc<Vec<ChatLine>>,
}

/// One chat message from the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatLine {
    pub text: String,
    /// When the peer sent it, on its clock, ms since the Unix epoch.
    pub sent_unix_ms: i64,
    /// When it arrived here, ms since the Unix epoch.
    pub arrival_unix_ms: i64,
}

/// A decoded picture ready to show.
#[derive(Clone, Debug)]
pub struct VideoFrame {
    pub width: u32,
    pub height: u32,
    /// RGBA8, `width * height * 4` bytes.
    pub rgba: Arc<Vec<u8>>,
    /// Position on the recording's timeline.
    pub position: Duration,
}
