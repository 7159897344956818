//! The recorder: the network thread runs the RTSP client and appends every unit it gives to
//! the recording, and publishes what the playback loop needs to know about the connection.
//! Units go no further: playback reads them back from the recording.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::api::ConnState;
use super::net::{self, NetConfig, NetControl, NetEvent, NetStats};
use super::recording::{RecordingWriter, SharedIndex};

/// What the recorder shares with the playback loop.
#[derive(Default)]
pub(crate) struct RecorderShared {
    /// Set when the first description arrives (the writer exists from then on).
    pub index: Option<SharedIndex>,
    pub path: Option<PathBuf>,
    pub conn: ConnState,
    pub stats: NetStats,
    pub reconnects: u64,
    pub error: Option<String>,
    /// The stream's SDP `s=`.
    pub title: Option<String>,
}

pub(crate) type Shared = Arc<Mutex<RecorderShared>>;

pub(crate) fn lock(s: &Shared) -> std::sync::MutexGuard<'_, RecorderShared> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// The network thread: runs the RTSP client and appends everything to the recording.
pub(crate) fn run(
    cfg: NetConfig,
    control: mpsc::Receiver<NetControl>,
    shared: Shared,
    record: Option<PathBuf>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            lock(&shared).conn =
                ConnState::Failed(format!("cannot start the network runtime: {e}"));
            return;
        }
    };
    rt.block_on(async move {
        let (ev_tx, mut ev_rx) = mpsc::channel(1024);
        let net = tokio::spawn(net::run(cfg, ev_tx, control));
        let mut writer: Option<RecordingWriter> = None;
        while let Some(ev) = ev_rx.recv().await {
            match ev {
                NetEvent::Described { tracks, sdp } => {
                    if let Ok(d) = livecast_proto::sdp::parse(&sdp) {
                        let t = d.session_name.trim();
                        lock(&shared).title = (!t.is_empty()).then(|| t.to_owned());
                    }
                    let res = match writer.as_mut() {
                        Some(w) => w.set_description(&tracks, &sdp),
                        None => {
                            let w = match &record {
                                Some(p) => RecordingWriter::create(p, &tracks, &sdp),
                                None => RecordingWriter::create_temp(&tracks, &sdp),
                            };
                            w.map(|w| {
                                let mut s = lock(&shared);
                                s.index = Some(w.index());
                                s.path = Some(w.path().to_path_buf());
                                info!(path = %w.path().display(), "recording");
                                writer = Some(w);
                            })
                        }
                    };
                    if let Err(e) = res {
                        let msg = format!("cannot write the recording: {e}");
                        warn!("{msg}");
                        lock(&shared).error = Some(msg);
                    }
                }
                NetEvent::Unit(u) => {
                    if let Some(w) = writer.as_mut() {
                        if let Err(e) = w.append(&u) {
                            warn!("recording append failed: {e}");
                            lock(&shared).error = Some(format!("recording: {e}"));
                        }
                    }
                }
                NetEvent::State(s) => {
                    let mut sh = lock(&shared);
                    if matches!(s, ConnState::Reconnecting { .. })
                        && !matches!(sh.conn, ConnState::Reconnecting { .. })
                    {
                        sh.reconnects += 1;
                    }
                    sh.conn = s;
                }
                NetEvent::Stats(st) => lock(&shared).stats = st,
            }
        }
        let _ = net.await;
        // A temporary recording is removed when `writer` drops here.
        drop(writer);
    });
}
