//! The player engine: receive, record, decode, clock. Headless; the GUI subscribes to it.
//!
//! A unit flows one way, and each module depends only on the ones before it:
//!
//! ```text
//! net (tokio: RTSP client, UDP/TCP, jitter buffer, RTCP RR)
//!   ──NetEvent::Unit──> recorder (network thread: appends to recording, publishes conn/stats)
//!                         └─> recording (append-only file + shared index)
//!                               └─> playback thread: clock (timeline, live delay)
//!                                     ├─ video presenter: read back -> H.264 decode -> newest frame (watch)
//!                                     ├─ audio feeder: read back -> Opus decode -> audio_out (master clock)
//!                                     ├─ captions / chat: read back -> T.140 text (proto's TextBuffer)
//!                                     └─ probes: measurements, built into a Report when asked
//! ```
//!
//! [`start`] (here) wires them: it spawns the network thread (`recorder`) and the playback
//! thread ([`playback`]) and returns the [`EngineHandle`].

pub mod api;
pub mod audio_out;
pub mod captions;
pub mod decode;
pub mod export;
pub mod fast_seek;
pub mod live_edge;
pub mod net;
pub mod playback;
mod recorder;
pub mod recording;
pub mod report;
pub mod timeline;
pub mod unit;

pub use api::*;
pub use report::Report;

use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tracing::warn;

use audio_out::AudioSink;
use net::NetConfig;
use playback::Playback;
use recorder::{lock, Shared};
use recording::RecordingReader;

/// Starts the engine: network + recorder (for a URL) and the playback loop.
pub fn start(cfg: EngineConfig) -> anyhow::Result<EngineHandle> {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (frame_tx, frame_rx) = watch::channel(None);
    let (status_tx, status_rx) = watch::channel(Status {
        speed: 1.0,
        volume: cfg.volume,
        ..Status::default()
    });
    let report = Arc::new(Mutex::new(Report::default()));
    let (report_tx, report_rx) = std::sync::mpsc::channel();
    let shared: Shared = Arc::default();
    let mut net_ctl = None;
    let mut net_thread = None;
    let mut file_reader = None;
    match &cfg.source {
        Source::Url(url) => {
            let (ctl_tx, ctl_rx) = mpsc::channel(8);
            net_ctl = Some(ctl_tx);
            let ncfg = NetConfig {
                url: url.clone(),
                transport: cfg.transport,
                low_latency: cfg.low_latency || cfg.call,
                call: cfg.call,
                nack: cfg.nack,
                credentials: cfg.credentials.clone(),
                tls: cfg.tls.clone(),
            };
            let sh = shared.clone();
            let record = cfg.record.clone();
            let rendition = cfg.rendition;
            net_thread = Some(
                std::thread::Builder::new()
                    .name("livecast-net".into())
                    .spawn(move || recorder::run(ncfg, ctl_rx, sh, record, rendition))
                    .context("spawn network thread")?,
            );
        }
        Source::File(path) => {
            let (reader, index) = RecordingReader::open(path)
                .with_context(|| format!("opening recording {}", path.display()))?;
            if reader.ignored_tail() > 0 {
                warn!(
                    bytes = reader.ignored_tail(),
                    "recording ends in an incomplete record (the player was stopped mid-write?); playing what is complete"
                );
            }
            let mut s = lock(&shared);
            s.index = Some(Arc::new(RwLock::new(index)));
            s.path = Some(path.clone());
            s.conn = ConnState::Offline;
            drop(s);
            file_reader = Some(reader);
        }
    }
    let rep = report.clone();
    let join = std::thread::Builder::new()
        .name("livecast-playback".into())
        .spawn(move || {
            // On this thread: a device's stream may not move between threads.
            let sink = AudioSink::open(cfg.audio_output);
            if let Some(tap) = &cfg.playout_tap {
                sink.0.set_tap(tap.clone());
            }
            let mut p = Playback::new(cfg, shared, frame_tx, status_tx, rep, file_reader, sink);
            p.run(cmd_rx, report_rx, net_ctl);
            if let Some(t) = net_thread {
                let _ = t.join();
            }
        })
        .context("spawn playback thread")?;
    Ok(EngineHandle {
        commands: cmd_tx,
        frames: frame_rx,
        status: status_rx,
        report_requests: report_tx,
        report,
        join: Some(join),
    })
}

/// The GUI's (or headless runner's) handle on a running engine. Dropping it stops the engine
/// (TEARDOWN to the server, temporary recording removed).
pub struct EngineHandle {
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    /// Newest decoded picture (only the newest is kept).
    pub frames: watch::Receiver<Option<VideoFrame>>,
    /// Newest status.
    pub status: watch::Receiver<Status>,
    /// Asks the playback loop for the measurements so far.
    report_requests: std::sync::mpsc::Sender<playback::ReportRequest>,
    /// The measurements the engine left when it stopped.
    report: Arc<Mutex<Report>>,
    pub(crate) join: Option<std::thread::JoinHandle<()>>,
}

impl EngineHandle {
    /// Sends a command; ignored if the engine has stopped.
    pub fn send(&self, cmd: Command) {
        let _ = self.commands.send(cmd);
    }

    /// A clonable command sender, for GUIs that keep it in their state.
    pub fn commander(&self) -> mpsc::UnboundedSender<Command> {
        self.commands.clone()
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Measurements so far (what `--stats-json` writes); once the engine has stopped, the
    /// ones it left.
    pub fn report(&self) -> Report {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.report_requests.send(tx).is_ok() {
            // Answered within a pass of the playback loop; none comes if it has stopped.
            if let Ok(r) = rx.recv_timeout(std::time::Duration::from_secs(2)) {
                return r;
            }
        }
        self.report
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops the engine (TEARDOWN) and waits for it to finish.
    pub fn shutdown(mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}
