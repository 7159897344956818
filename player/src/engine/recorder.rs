//! The recorder: the network thread runs the RTSP client and appends every unit it gives to
//! the recording, and publishes what the playback loop needs to know about the connection.
//! Units go no further: playback reads them back from the recording.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use livecast_proto::rendition::{self, Decision, PolicyConfig, Rendition, RenditionPolicy, Sample};

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
    /// The rendition received (`WxH`), where the stream lists renditions.
    pub rendition: Option<String>,
    pub rendition_switches: u64,
}

pub(crate) type Shared = Arc<Mutex<RecorderShared>>;

pub(crate) fn lock(s: &Shared) -> std::sync::MutexGuard<'_, RecorderShared> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// The network thread: runs the RTSP client and appends everything to the recording. Where
/// the stream lists renditions, it also picks one ([`Renditions`]): a switch stops the session
/// and starts one on the other rendition's path, appending to the same recording.
pub(crate) fn run(
    mut cfg: NetConfig,
    mut control: mpsc::Receiver<NetControl>,
    shared: Shared,
    record: Option<PathBuf>,
    rendition: Option<(u32, u32)>,
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
        // Every session's events, tagged with its generation; `None` when it has ended.
        let (ev_tx, mut ev_rx) = mpsc::channel::<(u64, Option<NetEvent>)>(1024);
        let mut generation = 0u64;
        let mut net_ctl = Some(spawn_session(cfg.clone(), generation, ev_tx.clone()));
        let mut renditions = Renditions::new(&cfg.url, rendition);
        let mut writer: Option<RecordingWriter> = None;
        let mut control_open = true;
        loop {
            let (g, ev) = tokio::select! {
                c = control.recv(), if control_open => {
                    match c {
                        Some(c) => {
                            if let Some(tx) = &net_ctl {
                                let _ = tx.send(c).await;
                            }
                        }
                        None => {
                            // As before: the session ends when the engine drops its sender.
                            control_open = false;
                            net_ctl = None;
                        }
                    }
                    continue;
                }
                ev = ev_rx.recv() => match ev {
                    Some(ev) => ev,
                    None => break,
                },
            };
            if g != generation {
                continue; // A session switched away from: its last words do not count.
            }
            let Some(ev) = ev else { break };
            let mut switch_to = None;
            match ev {
                NetEvent::Described { tracks, sdp } => {
                    if let Ok(d) = livecast_proto::sdp::parse(&sdp) {
                        let t = d.session_name.trim();
                        lock(&shared).title = (!t.is_empty()).then(|| t.to_owned());
                        switch_to = renditions.described(&d);
                        lock(&shared).rendition = renditions.current_name();
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
                NetEvent::Stats(st) => {
                    switch_to = renditions.stats(&st);
                    lock(&shared).stats = st;
                }
            }
            if let Some(url) = switch_to.filter(|_| net_ctl.is_some()) {
                let tx = net_ctl.take().expect("checked just above");
                let to = renditions.current_name().unwrap_or_default();
                info!(%url, "switching to the {to} rendition");
                let _ = tx.send(NetControl::Stop).await;
                generation += 1;
                cfg.url = url;
                net_ctl = Some(spawn_session(cfg.clone(), generation, ev_tx.clone()));
                let mut sh = lock(&shared);
                sh.rendition = renditions.current_name();
                sh.rendition_switches += 1;
            }
        }
        // A temporary recording is removed when `writer` drops here.
        drop(writer);
    });
}

/// Starts one RTSP session whose events come tagged with `generation`, then `None` once it
/// has ended; returns its control sender.
fn spawn_session(
    cfg: NetConfig,
    generation: u64,
    out: mpsc::Sender<(u64, Option<NetEvent>)>,
) -> mpsc::Sender<NetControl> {
    let (ctl_tx, ctl_rx) = mpsc::channel(8);
    let (tx, mut rx) = mpsc::channel(1024);
    tokio::spawn(net::run(cfg, tx, ctl_rx));
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            if out.send((generation, Some(ev))).await.is_err() {
                return;
            }
        }
        let _ = out.send((generation, None)).await;
    });
    ctl_tx
}

/// Which rendition to receive: the list from the description, the viewer's fixed choice or
/// the policy ([`RenditionPolicy`]) fed once a second from the receive statistics.
struct Renditions {
    /// `scheme://[user@]host[:port]` of the URL asked for.
    base: String,
    /// The path of the URL being received.
    path: String,
    fixed: Option<(u32, u32)>,
    list: Vec<Rendition>,
    current: usize,
    policy: Option<RenditionPolicy>,
    last: Option<NetStats>,
}

impl Renditions {
    fn new(url: &str, fixed: Option<(u32, u32)>) -> Self {
        let after_scheme = url.find("://").map_or(0, |i| i + 3);
        let cut = url[after_scheme..]
            .find('/')
            .map_or(url.len(), |i| after_scheme + i);
        let path = url[cut..].split(['?', '#']).next().unwrap_or("");
        Self {
            base: url[..cut].to_string(),
            path: format!("/{}", path.trim_matches('/')),
            fixed,
            list: Vec::new(),
            current: 0,
            policy: None,
            last: None,
        }
    }

    fn current_name(&self) -> Option<String> {
        let r = self.list.get(self.current)?;
        Some(format!("{}x{}", r.width, r.height))
    }

    /// A new session described itself: learn the list (once); a fixed choice other than the
    /// one received gives the URL to switch to.
    fn described(&mut self, sd: &livecast_proto::sdp::SessionDescription) -> Option<String> {
        self.last = None;
        if self.list.is_empty() {
            match rendition::from_sdp(sd) {
                Some(Ok(list)) if list.len() > 1 => self.list = list,
                Some(Err(e)) => {
                    warn!("ignoring the stream's rendition list: {e}");
                    return None;
                }
                _ => return None,
            }
            self.current = self
                .list
                .iter()
                .position(|r| r.path.trim_end_matches('/') == self.path)
                .unwrap_or(0);
            match self.fixed {
                Some((w, h)) => {
                    let Some(i) = self.list.iter().position(|r| (r.width, r.height) == (w, h))
                    else {
                        warn!("the stream has no {w}x{h} rendition; staying on this one");
                        return None;
                    };
                    if i != self.current {
                        return Some(self.switch(i));
                    }
                }
                None => {
                    self.policy = Some(RenditionPolicy::new(
                        PolicyConfig::default(),
                        self.list.len(),
                        self.current,
                    ));
                }
            }
        }
        None
    }

    /// One statistics report (about once a second): the policy's sample is the loss on the
    /// path and the loss left after retransmissions since the last report, and the video
    /// rate that arrived against the rate the server says it sent between its last two
    /// sender reports (not `b=AS`: encoders undershoot their announced rate on simple
    /// pictures, so it is no floor).
    fn stats(&mut self, st: &NetStats) -> Option<String> {
        let last = self.last.replace(st.clone())?;
        let policy = self.policy.as_mut()?;
        let received = st.packets_received.saturating_sub(last.packets_received) as f64;
        let lost = (st.packets_lost - last.packets_lost).max(0) as f64;
        let recovered = st.recovered.saturating_sub(last.recovered) as f64;
        let expected = received + lost;
        if expected < 10.0 {
            return None;
        }
        let sample = Sample {
            loss: ((lost - recovered).max(0.0) / expected).min(1.0),
            path_loss: (lost / expected).min(1.0),
            received_bps: st.video_delivery.map_or(0, |d| d.received_bps),
            stream_bps: st.video_delivery.map_or(0, |d| d.sent_bps),
        };
        match policy.on_sample(Instant::now(), sample)? {
            Decision::Switch(i) => Some(self.switch(i)),
        }
    }

    fn switch(&mut self, i: usize) -> String {
        self.current = i;
        self.last = None;
        self.path = self.list[i].path.clone();
        format!("{}{}", self.base, self.path)
    }
}
