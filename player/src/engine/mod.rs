//! The player engine: receive, record, decode, clock. Headless; the GUI subscribes to it.
//!
//! ```text
//! net (tokio: RTSP client, UDP/TCP, jitter buffer, RTCP RR) ──MediaUnit──> recorder (append-only file + index)
//!                                                                             │
//!           playback thread: timeline (Sans-IO clock) -> reads records -> decoders -> audio out (master clock)
//!                                                                             └─> newest video frame (watch)
//! ```

pub mod api;
pub mod audio_out;
pub mod captions;
pub mod decode;
pub mod net;
pub mod playback;
pub mod recording;
pub mod report;
pub mod timeline;
pub mod unit;

pub use api::*;
pub use playback::start;
pub use report::Report;

use tokio::sync::{mpsc, watch};

/// The GUI's (or headless runner's) handle on a running engine. Dropping it stops the engine
/// (TEARDOWN to the server, temporary recording removed).
pub struct EngineHandle {
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    /// Newest decoded picture (only the newest is kept).
    pub frames: watch::Receiver<Option<VideoFrame>>,
    /// Newest status.
    pub status: watch::Receiver<Status>,
    /// Measurements so far (what `--stats-json` writes).
    pub(crate) report: std::sync::Arc<std::sync::Mutex<Report>>,
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

    /// Measurements so far.
    pub fn report(&self) -> Report {
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
