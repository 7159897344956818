//! The player screen's state, its messages and `update`: everything but the drawing (in
//! `view`).
//!
//! `update` turns the viewer's actions into engine [`Command`]s and folds the engine's reports
//! ([`Message::Status`], [`Message::Frame`]) into the state. It never blocks and never touches
//! a window except through the [`Task`]s it returns, so tests drive it with a fake engine (two
//! watch channels and a command channel) and read back the commands it sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use iced::widget::image;
use iced::{window, Subscription, Task};
use tokio::sync::{mpsc, oneshot};

use crate::engine::{
    self, Command, ConnState, EngineConfig, EngineHandle, Source, Status, VideoFrame,
};
use crate::gui::subscription::{self, EngineEvent, EngineWatch};

/// Playback speeds offered by `[` / `]` and the speed buttons.
pub const SPEEDS: [f32; 6] = [0.5, 1.0, 1.5, 2.0, 3.0, 4.0];
/// Above this speed the engine plays no sound.
pub const MAX_AUDIBLE_SPEED: f32 = 2.0;
/// Volume change per ↑ / ↓.
pub const VOLUME_STEP: f32 = 0.1;
/// How long closing the window waits for the engine's TEARDOWN before leaving anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long an engine warning ("no audio device: playing silently") stays on screen.
pub const NOTICE_TIME: Duration = Duration::from_secs(8);

/// Everything the app reacts to.
#[derive(Clone, Debug)]
pub enum Message {
    // The viewer (buttons, keys, the timeline).
    TogglePlay,
    /// Relative seek, ms.
    SeekBy(i64),
    /// The timeline knob is being dragged here (the engine shows the picture there).
    SeekDrag(Duration),
    /// The timeline knob was let go: seek to where it was dragged.
    SeekRelease,
    SpeedDown,
    SpeedUp,
    GoLive,
    SetVolume(f32),
    VolumeUp,
    VolumeDown,
    ToggleMute,
    ToggleCaptions,
    /// Write the session's captions to [`Player::export_path`].
    ExportCaptions,
    /// Write the session so far as MP4 + .vtt to [`Player::mp4_path`].
    ExportMp4,
    ToggleStats,
    ToggleFullscreen,
    ExitFullscreen,
    /// RTSP PAUSE / PLAY: stop or resume receiving (the recording stops or resumes growing).
    ToggleReceiving,
    // The engine.
    Frame(VideoFrame),
    Status(Box<Status>),
    EngineGone,
    // The window.
    WindowOpened,
    /// The window's new width (the control bar's layout depends on it).
    Resized(f32),
    CloseRequested,
    EngineStopped,
    /// Take this engine warning off the screen.
    ExpireNotice(String),
    // The credentials prompt (the server answered 401).
    LoginUser(String),
    LoginPassword(String),
    /// Start again with the user name and password typed in.
    LoginSubmit,
    // The renderer.
    /// Picture number `seq` is on the GPU (or could not be put there: `None`).
    Uploaded(u64, Option<image::Allocation>),
}

impl Message {
    pub fn status(s: Status) -> Self {
        Message::Status(Box::new(s))
    }
}

impl From<EngineEvent> for Message {
    fn from(e: EngineEvent) -> Self {
        match e {
            EngineEvent::Frame(f) => Message::Frame(f),
            EngineEvent::Status(s) => Message::Status(s),
            EngineEvent::Gone => Message::EngineGone,
        }
    }
}

/// A decoded picture as the renderer takes it.
#[derive(Clone, Debug)]
pub struct Picture {
    /// Numbers pictures in arrival order (matches [`Message::Uploaded`] to its picture).
    pub seq: u64,
    pub handle: image::Handle,
    pub width: u32,
    pub height: u32,
    pub position: Duration,
}

impl Picture {
    /// `None` when the frame's buffer doesn't match its size (the renderer would reject it).
    pub fn from_frame(f: VideoFrame, seq: u64) -> Option<Self> {
        let expected = f.width as usize * f.height as usize * 4;
        if f.width == 0 || f.height == 0 || f.rgba.len() != expected {
            tracing::warn!(
                width = f.width,
                height = f.height,
                len = f.rgba.len(),
                "dropping a video frame whose buffer does not match its size"
            );
            return None;
        }
        // The engine usually keeps no other reference; copy only when it does.
        let rgba = Arc::try_unwrap(f.rgba).unwrap_or_else(|shared| (*shared).clone());
        Some(Self {
            seq,
            handle: image::Handle::from_rgba(f.width, f.height, rgba),
            width: f.width,
            height: f.height,
            position: f.position,
        })
    }
}

/// The player screen's state.
pub struct Player {
    /// The running engine; stopping it (TEARDOWN) is closing the window.
    pub(crate) engine: Option<EngineHandle>,
    /// The engine's command channel (`None` when it could not start).
    pub(crate) commands: Option<mpsc::UnboundedSender<Command>>,
    /// The engine's reports, read by the subscription.
    watch: Option<EngineWatch>,
    /// URL or file name, for messages.
    pub(crate) source: String,
    pub(crate) title: String,
    /// The engine's newest report.
    pub(crate) status: Status,
    /// The picture on screen, and what keeps it on the GPU.
    pub(crate) frame: Option<Picture>,
    allocation: Option<image::Allocation>,
    /// The picture being uploaded, and the newest one waiting for that upload to finish.
    pub(crate) uploading: Option<Picture>,
    pub(crate) queued: Option<Picture>,
    next_seq: u64,
    /// When the window opened, until the first picture is on screen (for the log).
    opened_at: Option<Instant>,
    first_picture_shown: bool,
    pub(crate) show_stats: bool,
    pub(crate) fullscreen: bool,
    pub(crate) window_width: f32,
    /// Where the viewer is dragging the timeline knob.
    pub(crate) dragging_seek: Option<Duration>,
    /// The timeline's scale while the knob is dragged: the recorded length when the drag
    /// began. A live recording grows under a knob that is held still; with the scale kept,
    /// the knob stays under the pointer (and so does the time it stands for).
    pub(crate) drag_scale: Option<Duration>,
    /// The knob is dragged to the live edge (the end of the bar): it stays there as the
    /// recording grows, and the release goes live.
    drag_at_live: bool,
    /// The speed, volume and caption setting the viewer asked for. They follow the engine's
    /// status when the engine changes them, but are not overwritten by a report sent before
    /// the engine saw our command (so pressing `]` twice quickly goes two steps).
    pub(crate) speed: f32,
    pub(crate) volume: f32,
    pub(crate) captions: bool,
    /// Where "Export captions" writes (`--captions-out`, else `livecast-captions.vtt`).
    pub export_path: std::path::PathBuf,
    /// Where "Export MP4" writes: ~/Videos/livecast-<time>.mp4 (see [`default_mp4_path`]).
    pub mp4_path: std::path::PathBuf,
    /// Engine warnings on screen, each for [`NOTICE_TIME`].
    pub(crate) notices: Vec<String>,
    /// The engine could not start.
    pub(crate) error: Option<String>,
    /// The window is closing: TEARDOWN under way.
    pub(crate) closing: bool,
    /// How the engine was started, to start it again with credentials the viewer types in
    /// when the server wants some (`None`: no prompt, as in a call).
    pub(crate) restart: Option<EngineConfig>,
    /// What the viewer typed into the credentials prompt.
    pub(crate) login: Login,
    /// Engines started in this window (each restart watches a new one).
    engines_started: u64,
}

/// The credentials prompt's fields.
#[derive(Clone, Default)]
pub struct Login {
    pub user: String,
    pub password: String,
}

/// `~/Videos/livecast-YYYYMMDD-HHMMSS.mp4` (local time is not known without a time-zone
/// library: UTC), in the home folder when it has no Videos folder, else the current folder.
pub fn default_mp4_path() -> std::path::PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = format!("livecast-{}.mp4", crate::engine::export::utc_stamp(secs));
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    match home {
        Some(h) if h.join("Videos").is_dir() => h.join("Videos").join(name),
        Some(h) if h.is_dir() => h.join(name),
        _ => name.into(),
    }
}

/// The next speed step up or down from `current`, clamped to 0.5x..4x.
pub fn speed_step(current: f32, up: bool) -> f32 {
    const EPS: f32 = 0.01;
    if up {
        SPEEDS
            .iter()
            .copied()
            .find(|&s| s > current + EPS)
            .unwrap_or(SPEEDS[SPEEDS.len() - 1])
    } else {
        SPEEDS
            .iter()
            .rev()
            .copied()
            .find(|&s| s < current - EPS)
            .unwrap_or(SPEEDS[0])
    }
}

fn source_label(source: &Source) -> String {
    match source {
        Source::Url(u) => u.clone(),
        Source::File(p) => p.display().to_string(),
    }
}

impl Player {
    /// State for a window showing `engine` (or the reason it could not start).
    pub fn new(
        engine: anyhow::Result<EngineHandle>,
        source: &Source,
        title: String,
        fullscreen: bool,
        volume: f32,
    ) -> Self {
        match engine {
            Ok(e) => {
                let commands = e.commander();
                let watch = EngineWatch::new(1, &e);
                let mut app =
                    Self::with_channels(commands, watch, source, title, fullscreen, volume);
                app.engine = Some(e);
                app
            }
            Err(e) => {
                tracing::error!("engine failed to start: {e:#}");
                let mut app = Self::blank(source, title, fullscreen, volume);
                app.error = Some(format!("{e:#}"));
                app
            }
        }
    }

    /// State for a window talking to an engine through these channels (the engine itself is
    /// owned elsewhere: tests).
    pub(crate) fn with_channels(
        commands: mpsc::UnboundedSender<Command>,
        watch: EngineWatch,
        source: &Source,
        title: String,
        fullscreen: bool,
        volume: f32,
    ) -> Self {
        let status = watch.status();
        let mut app = Self::blank(source, title, fullscreen, volume);
        app.speed = if status.speed > 0.0 {
            status.speed
        } else {
            1.0
        };
        app.captions = status.captions_enabled;
        app.status = status;
        app.commands = Some(commands);
        app.watch = Some(watch);
        app
    }

    fn blank(source: &Source, title: String, fullscreen: bool, volume: f32) -> Self {
        Self {
            engine: None,
            commands: None,
            watch: None,
            source: source_label(source),
            title,
            speed: 1.0,
            volume: volume.clamp(0.0, 1.0),
            captions: false,
            export_path: "livecast-captions.vtt".into(),
            mp4_path: default_mp4_path(),
            status: Status::default(),
            frame: None,
            allocation: None,
            uploading: None,
            queued: None,
            next_seq: 0,
            opened_at: None,
            first_picture_shown: false,
            show_stats: false,
            fullscreen,
            window_width: crate::gui::WINDOW_SIZE.width,
            dragging_seek: None,
            drag_scale: None,
            drag_at_live: false,
            notices: Vec::new(),
            error: None,
            closing: false,
            restart: None,
            login: Login::default(),
            engines_started: 1,
        }
    }

    pub fn title(&self) -> String {
        let state = match &self.status.conn {
            _ if self.error.is_some() => " (failed)",
            ConnState::Reconnecting { .. } => " (reconnecting)",
            ConnState::Failed(_) => " (failed)",
            ConnState::Unauthorized(_) => " (password needed)",
            ConnState::ServerPaused => " (not receiving)",
            ConnState::Ended => " (ended)",
            _ => "",
        };
        format!("{}{state}", self.title)
    }

    pub(crate) fn send_command(&self, cmd: Command) {
        self.send(cmd);
    }

    fn send(&self, cmd: Command) {
        match &self.commands {
            // An engine that has stopped ignores commands; so do we.
            Some(c) => {
                let _ = c.send(cmd);
            }
            None => tracing::debug!(?cmd, "no engine: command dropped"),
        }
    }

    /// The timeline's scale: the recorded length, or what it was when the current drag began.
    pub(crate) fn timeline_scale(&self) -> Duration {
        self.drag_scale.unwrap_or(self.status.recorded_end)
    }

    /// Whether there is an engine to control.
    pub(crate) fn controllable(&self) -> bool {
        self.commands.is_some() && !self.closing
    }

    /// Whether the current speed plays without sound.
    pub fn audio_muted_by_speed(&self) -> bool {
        self.speed > MAX_AUDIBLE_SPEED
    }

    pub fn update(&mut self, message: Message) -> Task<Message> {
        match message {
            Message::TogglePlay => self.send(Command::TogglePause),
            Message::SeekBy(ms) => self.send(Command::SeekBy(ms)),
            Message::SeekDrag(t) => {
                let end = self.status.recorded_end;
                // The bar's right end is the live edge, whatever the scale.
                self.drag_at_live = t >= *self.drag_scale.get_or_insert(end);
                self.dragging_seek = Some(t.min(end));
                self.send(Command::Scrub(t.min(end)));
            }
            Message::SeekRelease => {
                self.drag_scale = None;
                if let Some(t) = self.dragging_seek.take() {
                    if std::mem::take(&mut self.drag_at_live) {
                        self.send(Command::GoLive);
                    } else {
                        self.send(Command::Seek(t));
                    }
                }
            }
            Message::SpeedDown | Message::SpeedUp => {
                let next = speed_step(self.speed, matches!(message, Message::SpeedUp));
                if next != self.speed {
                    self.speed = next;
                    self.send(Command::SetSpeed(next));
                }
            }
            Message::GoLive => {
                self.dragging_seek = None;
                self.drag_scale = None;
                self.send(Command::GoLive);
            }
            Message::SetVolume(v) => {
                // Whole percent: ten presses of ↓ from 100 % land exactly on 0.
                let v = (v.clamp(0.0, 1.0) * 100.0).round() / 100.0;
                self.volume = v;
                self.send(Command::SetVolume(v));
            }
            Message::VolumeUp => return self.update(Message::SetVolume(self.volume + VOLUME_STEP)),
            Message::VolumeDown => {
                return self.update(Message::SetVolume(self.volume - VOLUME_STEP))
            }
            Message::ToggleMute => self.send(Command::ToggleMute),
            Message::ToggleCaptions => {
                self.captions = !self.captions;
                self.send(Command::SetCaptions(self.captions));
            }
            Message::ExportCaptions => self.send(Command::ExportCaptions(self.export_path.clone())),
            Message::ExportMp4 => {
                let path = self.mp4_path.clone();
                self.send(Command::ExportMp4(path));
                // The next export gets a new name.
                self.mp4_path = default_mp4_path();
            }
            Message::ToggleStats => self.show_stats = !self.show_stats,
            Message::ToggleFullscreen => return self.set_fullscreen(!self.fullscreen),
            Message::ExitFullscreen => {
                if self.fullscreen {
                    return self.set_fullscreen(false);
                }
            }
            Message::ToggleReceiving => match self.status.conn {
                ConnState::ServerPaused => self.send(Command::StreamResume),
                ConnState::Streaming { .. } => self.send(Command::StreamPause),
                // Nothing to pause while connecting, reconnecting or playing a file.
                _ => {}
            },
            Message::Frame(f) => {
                self.next_seq += 1;
                if let Some(p) = Picture::from_frame(f, self.next_seq) {
                    if self.uploading.is_some() {
                        // Only the newest waits; older ones are skipped, like the engine's watch.
                        self.queued = Some(p);
                    } else {
                        return self.upload(p);
                    }
                }
            }
            Message::Uploaded(seq, allocation) => {
                if self.uploading.as_ref().is_some_and(|p| p.seq == seq) {
                    if !self.first_picture_shown {
                        self.first_picture_shown = true;
                        match self.opened_at {
                            Some(t) => tracing::info!(
                                ms = t.elapsed().as_secs_f64() * 1e3,
                                "first picture on screen after the window opened"
                            ),
                            None => tracing::info!("first picture on screen"),
                        }
                    }
                    self.frame = self.uploading.take();
                    // Dropping the previous allocation lets the renderer free that picture.
                    self.allocation = allocation;
                    if let Some(next) = self.queued.take() {
                        return self.upload(next);
                    }
                }
            }
            Message::Status(s) => return self.on_status(*s),
            Message::ExpireNotice(n) => self.notices.retain(|x| *x != n),
            Message::LoginUser(u) => self.login.user = u,
            Message::LoginPassword(p) => self.login.password = p,
            Message::LoginSubmit => self.start_with_login(),
            Message::EngineGone => {
                if !self.closing {
                    tracing::info!("engine stopped");
                    self.status.conn = ConnState::Ended;
                }
            }
            Message::Resized(w) => self.window_width = w,
            Message::WindowOpened => {
                self.opened_at.get_or_insert_with(Instant::now);
            }
            Message::CloseRequested => return self.close(),
            Message::EngineStopped => return iced::exit(),
        }
        Task::none()
    }

    /// Puts a picture on the GPU before showing it. An image widget given a fresh handle draws
    /// nothing until the renderer has uploaded it (wgpu uploads pictures over 2 MB on a worker
    /// thread), so showing each new frame at once would show nothing at all at 30 fps; instead
    /// the current picture stays until the next one is ready.
    fn upload(&mut self, p: Picture) -> Task<Message> {
        let seq = p.seq;
        let handle = p.handle.clone();
        self.uploading = Some(p);
        image::allocate(handle).map(move |r| match r {
            Ok(a) => Message::Uploaded(seq, Some(a)),
            Err(e) => {
                tracing::warn!("cannot upload a video frame: {e}");
                Message::Uploaded(seq, None)
            }
        })
    }

    fn on_status(&mut self, s: Status) -> Task<Message> {
        if self.drag_at_live && self.dragging_seek.is_some() {
            self.dragging_seek = Some(s.recorded_end);
        }
        let prev = &self.status;
        if s.speed != prev.speed && s.speed > 0.0 {
            self.speed = s.speed;
        }
        if s.volume != prev.volume {
            self.volume = s.volume.clamp(0.0, 1.0);
        }
        if s.captions_enabled != prev.captions_enabled {
            self.captions = s.captions_enabled;
        }
        let mut expiries = Vec::new();
        let fresh_notice = s.notice.iter().filter(|n| prev.notice.as_ref() != Some(*n));
        for w in s
            .warnings
            .iter()
            .filter(|w| !prev.warnings.contains(w))
            .chain(fresh_notice)
        {
            tracing::warn!("engine: {w}");
            if !self.notices.contains(w) {
                self.notices.push(w.clone());
                let w = w.clone();
                // Lazily: the timer needs the runtime that runs the task, not the caller's.
                let expire = async { tokio::time::sleep(NOTICE_TIME).await };
                expiries.push(Task::perform(expire, move |()| Message::ExpireNotice(w)));
            }
        }
        self.status = s;
        Task::batch(expiries)
    }

    fn set_fullscreen(&mut self, on: bool) -> Task<Message> {
        self.fullscreen = on;
        let mode = if on {
            window::Mode::Fullscreen
        } else {
            window::Mode::Windowed
        };
        window::latest().and_then(move |id| window::set_mode(id, mode))
    }

    /// The server wants credentials (or refused the ones given) and the window can start the
    /// engine again: the prompt is shown.
    pub fn wants_login(&self) -> bool {
        matches!(self.status.conn, ConnState::Unauthorized(_))
            && self.restart.is_some()
            && !self.closing
    }

    /// Starts the engine again, as it was started, with the user name and password typed into
    /// the prompt. The engine that was refused has ended; it is shut down off the UI thread.
    fn start_with_login(&mut self) {
        let Some(mut cfg) = self.restart.clone().filter(|_| self.wants_login()) else {
            return;
        };
        let user = self.login.user.trim().to_owned();
        if user.is_empty() {
            self.notices.push("Type a user name first".into());
            return;
        }
        cfg.credentials = Some(livecast_proto::rtsp::client::Credentials {
            user,
            password: std::mem::take(&mut self.login.password),
        });
        if let Some(old) = self.engine.take() {
            let _ = std::thread::Builder::new()
                .name("engine-shutdown".into())
                .spawn(move || old.shutdown());
        }
        tracing::info!("starting again with the credentials typed in");
        match engine::start(cfg.clone()) {
            Ok(e) => {
                self.engines_started += 1;
                let watch = EngineWatch::new(self.engines_started, &e);
                self.status = watch.status();
                self.commands = Some(e.commander());
                self.watch = Some(watch);
                self.engine = Some(e);
                self.frame = None;
                self.first_picture_shown = false;
                self.opened_at = Some(Instant::now());
            }
            Err(e) => {
                tracing::error!("engine failed to start: {e:#}");
                self.error = Some(format!("{e:#}"));
            }
        }
        self.restart = Some(cfg);
    }

    /// Closing the window: TEARDOWN (the engine's shutdown joins its threads, so it runs off
    /// the UI thread), then exit. A second close request, or an engine that takes longer than
    /// [`SHUTDOWN_GRACE`], exits at once.
    fn close(&mut self) -> Task<Message> {
        if self.closing {
            return iced::exit();
        }
        self.closing = true;
        let commands = self.commands.take();
        self.watch = None;
        let Some(engine) = self.engine.take() else {
            // Channels only (tests): ask for the stop; nobody to wait for.
            if let Some(c) = commands {
                let _ = c.send(Command::Stop);
            }
            return iced::exit();
        };
        tracing::info!("window closed: stopping the engine (TEARDOWN)");
        let (done_tx, done_rx) = oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("engine-shutdown".into())
            .spawn(move || {
                engine.shutdown();
                let _ = done_tx.send(());
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot spawn the shutdown thread ({e}); exiting");
            return iced::exit();
        }
        Task::perform(
            async move {
                if tokio::time::timeout(SHUTDOWN_GRACE, done_rx).await.is_err() {
                    tracing::warn!("engine did not stop within {SHUTDOWN_GRACE:?}; exiting");
                }
            },
            |()| Message::EngineStopped,
        )
    }

    /// The engine's reports, as messages.
    pub fn engine_updates(&self) -> Subscription<Message> {
        match &self.watch {
            Some(w) => subscription::engine_updates(w.clone()).map(Message::from),
            None => Subscription::none(),
        }
    }
}

/// The test side of a fake engine: read what the app sent, play the engine's reports.
#[cfg(test)]
pub(crate) struct FakeEngine {
    pub commands: tokio::sync::mpsc::UnboundedReceiver<Command>,
    pub status: tokio::sync::watch::Sender<Status>,
    pub frames: tokio::sync::watch::Sender<Option<VideoFrame>>,
}

#[cfg(test)]
impl FakeEngine {
    /// The commands sent since the last call.
    pub fn sent(&mut self) -> Vec<Command> {
        std::iter::from_fn(|| self.commands.try_recv().ok()).collect()
    }
}

#[cfg(test)]
impl Player {
    pub(crate) fn new_for_test() -> (Player, FakeEngine) {
        use tokio::sync::{mpsc, watch};
        let (ctx, crx) = mpsc::unbounded_channel();
        let (stx, srx) = watch::channel(Status {
            speed: 1.0,
            volume: 1.0,
            ..Status::default()
        });
        let (ftx, frx) = watch::channel(None);
        let app = Player::with_channels(
            ctx,
            EngineWatch::from_parts(1, frx, srx),
            &Source::Url("rtsp://127.0.0.1:8554/live".into()),
            "Livecast".into(),
            false,
            1.0,
        );
        (
            app,
            FakeEngine {
                commands: crx,
                status: stx,
                frames: ftx,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Stats;
    use crate::gui::screen::player::keys::key_to_message;
    use iced::keyboard::key::Named;
    use iced::keyboard::{Key, Modifiers};

    fn key(app: &mut Player, k: Key) {
        let msg = key_to_message(&k, Modifiers::empty())
            .unwrap_or_else(|| panic!("{k:?} is not a shortcut"));
        let _ = app.update(msg);
    }

    fn ch(s: &str) -> Key {
        Key::Character(s.into())
    }

    fn streaming(app: &mut Player) {
        let s = Status {
            conn: ConnState::Streaming { tcp: false },
            ..app.status.clone()
        };
        let _ = app.update(Message::status(s));
    }

    /// The server wants a password: the window asks for one, and the engine starts again with
    /// what the viewer typed in and plays (a real server with Digest on, in-process).
    #[test]
    fn a_401_asks_for_credentials_and_playing_starts_with_them() {
        use livecast_proto::rtsp::server::{AuthConfig, Roles, User, REALM};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let video = livecast_server::source::VideoConfig {
            width: 160,
            height: 120,
            fps: 15,
        };
        let mut scfg = livecast_server::ServerConfig::test_sources(
            "127.0.0.1:0".parse().expect("addr"),
            video,
            200_000,
        );
        scfg.rtsp.auth = Some(AuthConfig::new(vec![User::with_password(
            "viewer",
            "pw",
            Roles::READ,
            REALM,
        )]));
        let server = rt
            .block_on(livecast_server::start(scfg))
            .expect("server starts");
        let url = format!("rtsp://{}/live", server.listening[0]);
        let mut cfg = EngineConfig::new(Source::Url(url.clone()));
        cfg.audio_output = false;
        let source = cfg.source.clone();
        let mut app = Player::new(engine::start(cfg.clone()), &source, "t".into(), false, 1.0);
        app.restart = Some(cfg);
        let wait_for = |app: &mut Player, what: &str, ok: &dyn Fn(&ConnState) -> bool| {
            let until = Instant::now() + Duration::from_secs(20);
            loop {
                let st = app.watch.as_ref().expect("an engine").status();
                let _ = app.update(Message::status(st));
                if ok(&app.status.conn) {
                    return;
                }
                assert!(Instant::now() < until, "{what}: {:?}", app.status.conn);
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        wait_for(&mut app, "refused", &|c| {
            matches!(c, ConnState::Unauthorized(_))
        });
        assert!(app.wants_login());
        assert!(app.title().contains("password"));
        let _ = app.view();
        // A user name is needed; nothing starts without one.
        let _ = app.update(Message::LoginSubmit);
        assert!(app.wants_login());
        let _ = app.update(Message::LoginUser("viewer".into()));
        let _ = app.update(Message::LoginPassword("pw".into()));
        let _ = app.update(Message::LoginSubmit);
        assert!(!app.wants_login());
        assert!(
            app.login.password.is_empty(),
            "the typed password is not kept on screen"
        );
        wait_for(&mut app, "playing", &|c| {
            matches!(c, ConnState::Streaming { .. })
        });
        if let Some(e) = app.engine.take() {
            e.shutdown();
        }
        server.shutdown();
    }

    #[test]
    fn every_shortcut_sends_its_command() {
        let (mut app, mut eng) = Player::new_for_test();
        streaming(&mut app);

        key(&mut app, Key::Named(Named::Space));
        assert_eq!(eng.sent(), vec![Command::TogglePause]);
        key(&mut app, ch(" "));
        assert_eq!(eng.sent(), vec![Command::TogglePause]);
        key(&mut app, Key::Named(Named::ArrowLeft));
        assert_eq!(eng.sent(), vec![Command::SeekBy(-10_000)]);
        key(&mut app, Key::Named(Named::ArrowRight));
        assert_eq!(eng.sent(), vec![Command::SeekBy(10_000)]);
        key(&mut app, ch("]"));
        assert_eq!(eng.sent(), vec![Command::SetSpeed(1.5)]);
        key(&mut app, ch("["));
        assert_eq!(eng.sent(), vec![Command::SetSpeed(1.0)]);
        key(&mut app, ch("l"));
        assert_eq!(eng.sent(), vec![Command::GoLive]);
        key(&mut app, Key::Named(Named::End));
        assert_eq!(eng.sent(), vec![Command::GoLive]);
        key(&mut app, ch("m"));
        assert_eq!(eng.sent(), vec![Command::ToggleMute]);
        key(&mut app, ch("c"));
        assert_eq!(eng.sent(), vec![Command::SetCaptions(true)]);
        key(&mut app, ch("c"));
        assert_eq!(eng.sent(), vec![Command::SetCaptions(false)]);
        key(&mut app, Key::Named(Named::ArrowDown));
        assert_eq!(eng.sent(), vec![Command::SetVolume(0.9)]);
        key(&mut app, Key::Named(Named::ArrowUp));
        assert_eq!(eng.sent(), vec![Command::SetVolume(1.0)]);
        key(&mut app, ch("s"));
        assert_eq!(eng.sent(), vec![Command::StreamPause]);

        // Window-only keys send nothing to the engine.
        assert!(!app.show_stats);
        key(&mut app, ch("i"));
        assert!(app.show_stats);
        key(&mut app, ch("i"));
        assert!(!app.show_stats);
        key(&mut app, ch("f"));
        assert!(app.fullscreen);
        key(&mut app, Key::Named(Named::Escape));
        assert!(!app.fullscreen);
        key(&mut app, ch("f"));
        key(&mut app, ch("f"));
        assert!(!app.fullscreen);
        assert_eq!(eng.sent(), vec![]);
    }

    #[test]
    fn seek_drag_scrubs_and_seeks_once_at_release() {
        let (mut app, mut eng) = Player::new_for_test();
        let _ = app.update(Message::status(Status {
            recorded_end: Duration::from_secs(60),
            position: Duration::from_secs(60),
            ..app.status.clone()
        }));
        for s in [50, 40, 30, 20] {
            let _ = app.update(Message::SeekDrag(Duration::from_secs(s)));
        }
        assert_eq!(app.dragging_seek, Some(Duration::from_secs(20)));
        assert_eq!(
            eng.sent(),
            [50, 40, 30, 20].map(|s| Command::Scrub(Duration::from_secs(s))),
            "the picture follows the knob"
        );
        // The view shows the drag position, not the engine's.
        let _ = app.view();

        // A status report during the drag doesn't move the knob: neither its time nor, with
        // the scale kept from the drag's start, its place on the bar.
        let _ = app.update(Message::status(Status {
            recorded_end: Duration::from_secs(61),
            position: Duration::from_secs(61),
            ..app.status.clone()
        }));
        assert_eq!(app.dragging_seek, Some(Duration::from_secs(20)));
        assert_eq!(app.timeline_scale(), Duration::from_secs(60));

        let _ = app.update(Message::SeekRelease);
        assert_eq!(eng.sent(), vec![Command::Seek(Duration::from_secs(20))]);
        assert_eq!(app.dragging_seek, None);
        assert_eq!(
            app.timeline_scale(),
            Duration::from_secs(61),
            "the bar grows again"
        );
        // A stray release sends nothing.
        let _ = app.update(Message::SeekRelease);
        assert_eq!(eng.sent(), vec![]);

        // Dragged past the live edge: the knob stays at the edge as the recording grows, and
        // the release goes live (a seek to where the edge was would be behind it by then).
        let _ = app.update(Message::SeekDrag(Duration::from_secs(600)));
        let _ = app.update(Message::status(Status {
            recorded_end: Duration::from_secs(63),
            ..app.status.clone()
        }));
        assert_eq!(app.dragging_seek, Some(Duration::from_secs(63)));
        let _ = app.update(Message::SeekRelease);
        let edge = Duration::from_secs(61);
        assert_eq!(eng.sent(), vec![Command::Scrub(edge), Command::GoLive]);
        // The knob at the bar's right end after the recording grew under it: still the live
        // edge (the scale is the drag's).
        let _ = app.update(Message::SeekDrag(Duration::from_secs(40)));
        let _ = app.update(Message::status(Status {
            recorded_end: Duration::from_secs(70),
            ..app.status.clone()
        }));
        let _ = app.update(Message::SeekDrag(Duration::from_secs(63)));
        let _ = app.update(Message::SeekRelease);
        let to = |s| Command::Scrub(Duration::from_secs(s));
        assert_eq!(eng.sent(), vec![to(40), to(63), Command::GoLive]);
        assert_eq!(app.timeline_scale(), Duration::from_secs(70));
        // Back from the edge before the release: an ordinary seek.
        let _ = app.update(Message::SeekDrag(Duration::from_secs(600)));
        let _ = app.update(Message::SeekDrag(Duration::from_secs(30)));
        let _ = app.update(Message::SeekRelease);
        assert_eq!(
            eng.sent(),
            vec![to(70), to(30), Command::Seek(Duration::from_secs(30))]
        );
    }

    /// The engine's reports reach `update` through the subscription's stream.
    #[tokio::test]
    async fn engine_reports_flow_into_the_state() {
        use iced::futures::StreamExt;
        let (mut app, eng) = Player::new_for_test();
        let mut updates = Box::pin(app.watch.as_ref().expect("watching").stream());
        // First the current status.
        let first = updates.next().await.expect("status");
        let _ = app.update(Message::from(first));

        eng.frames
            .send(Some(VideoFrame {
                width: 2,
                height: 2,
                rgba: Arc::new(vec![9; 16]),
                position: Duration::from_secs(3),
            }))
            .unwrap();
        let _ = app.update(Message::from(updates.next().await.expect("frame")));
        uploaded(&mut app);
        assert_eq!(
            app.frame.as_ref().map(|p| p.position),
            Some(Duration::from_secs(3))
        );

        eng.status.send_modify(|s| {
            s.conn = ConnState::Reconnecting {
                attempt: 1,
                reason: "connection reset".into(),
                retry_in: Duration::from_secs(1),
            };
            s.recorded_end = Duration::from_secs(42);
        });
        let _ = app.update(Message::from(updates.next().await.expect("status")));
        assert!(app.title().contains("reconnecting"));
        assert!(crate::gui::screen::player::view::connection_message(&app)
            .unwrap()
            .contains("0:42 recorded so far"));

        drop(eng);
        let _ = app.update(Message::from(updates.next().await.expect("gone")));
        assert_eq!(app.status.conn, ConnState::Ended);
    }

    #[test]
    fn engine_warnings_show_for_a_while() {
        let (mut app, _eng) = Player::new_for_test();
        let warn = "no audio device: playing silently".to_string();
        let with_warning = Status {
            warnings: vec![warn.clone()],
            ..app.status.clone()
        };
        let _ = app.update(Message::status(with_warning.clone()));
        assert_eq!(app.notices, vec![warn.clone()]);
        // Repeated in every later report: still one notice.
        let _ = app.update(Message::status(with_warning.clone()));
        assert_eq!(app.notices.len(), 1);
        assert!(crate::gui::screen::player::view::badges(&app).contains(&warn));
        let _ = app.update(Message::ExpireNotice(warn.clone()));
        assert!(app.notices.is_empty());
        let _ = app.update(Message::status(with_warning));
        assert!(app.notices.is_empty(), "an old warning does not come back");
    }

    #[test]
    fn live_button_goes_live() {
        let (mut app, mut eng) = Player::new_for_test();
        let _ = app.update(Message::GoLive);
        assert_eq!(eng.sent(), vec![Command::GoLive]);
    }

    #[test]
    fn speed_steps_clamp_at_half_and_four() {
        assert_eq!(speed_step(1.0, true), 1.5);
        assert_eq!(speed_step(2.0, true), 3.0);
        assert_eq!(speed_step(4.0, true), 4.0);
        assert_eq!(speed_step(0.5, false), 0.5);
        assert_eq!(speed_step(1.2, false), 1.0);
        assert_eq!(speed_step(1.2, true), 1.5);

        let (mut app, mut eng) = Player::new_for_test();
        for _ in 0..10 {
            let _ = app.update(Message::SpeedUp);
        }
        assert_eq!(
            eng.sent(),
            [1.5, 2.0, 3.0, 4.0].map(Command::SetSpeed).to_vec(),
            "steps up to 4x, then nothing more"
        );
        assert!(app.audio_muted_by_speed());
        for _ in 0..10 {
            let _ = app.update(Message::SpeedDown);
        }
        assert_eq!(
            eng.sent(),
            [3.0, 2.0, 1.5, 1.0, 0.5].map(Command::SetSpeed).to_vec()
        );
        assert!(!app.audio_muted_by_speed());
    }

    #[test]
    fn speed_follows_the_engine_but_not_stale_reports() {
        let (mut app, mut eng) = Player::new_for_test();
        let _ = app.update(Message::SpeedUp);
        let _ = app.update(Message::SpeedUp);
        assert_eq!(
            eng.sent(),
            vec![Command::SetSpeed(1.5), Command::SetSpeed(2.0)]
        );
        // A report from before the engine saw our commands: speed still 1.0, unchanged.
        let _ = app.update(Message::status(app.status.clone()));
        assert_eq!(app.speed, 2.0);
        // The engine changes the speed itself (e.g. back to 1x on reaching the live edge).
        let _ = app.update(Message::status(Status {
            speed: 3.0,
            ..app.status.clone()
        }));
        let _ = app.update(Message::status(Status {
            speed: 1.0,
            ..app.status.clone()
        }));
        assert_eq!(app.speed, 1.0);
        let _ = app.update(Message::SpeedUp);
        assert_eq!(eng.sent(), vec![Command::SetSpeed(1.5)]);
    }

    #[test]
    fn captions_toggle_and_follow_the_engine() {
        let (mut app, mut eng) = Player::new_for_test();
        let _ = app.update(Message::ToggleCaptions);
        assert_eq!(eng.sent(), vec![Command::SetCaptions(true)]);
        let _ = app.update(Message::status(Status {
            captions_enabled: true,
            has_captions: true,
            caption_text: vec!["one".into(), "two".into(), "three".into()],
            ..app.status.clone()
        }));
        let _ = app.view();
        let _ = app.update(Message::ToggleCaptions);
        assert_eq!(eng.sent(), vec![Command::SetCaptions(false)]);
        app.mp4_path = "/tmp/x.mp4".into();
        let _ = app.update(Message::ExportMp4);
        assert_eq!(eng.sent(), vec![Command::ExportMp4("/tmp/x.mp4".into())]);
        assert!(
            app.mp4_path.to_string_lossy().contains("livecast-"),
            "the next export gets a fresh name: {:?}",
            app.mp4_path
        );
        app.export_path = "/tmp/x.srt".into();
        let _ = app.update(Message::ExportCaptions);
        assert_eq!(
            eng.sent(),
            vec![Command::ExportCaptions("/tmp/x.srt".into())]
        );
        let _ = app.update(Message::status(Status {
            has_captions: true,
            notice: Some("3 captions written to /tmp/x.srt".into()),
            ..Status::default()
        }));
        assert!(app.notices.iter().any(|n| n.contains("3 captions written")));
    }

    #[test]
    fn receiving_toggle_follows_the_connection() {
        let (mut app, mut eng) = Player::new_for_test();
        // Connecting: nothing to pause.
        let _ = app.update(Message::ToggleReceiving);
        assert_eq!(eng.sent(), vec![]);
        streaming(&mut app);
        let _ = app.update(Message::ToggleReceiving);
        assert_eq!(eng.sent(), vec![Command::StreamPause]);
        let _ = app.update(Message::status(Status {
            conn: ConnState::ServerPaused,
            ..app.status.clone()
        }));
        let _ = app.update(Message::ToggleReceiving);
        assert_eq!(eng.sent(), vec![Command::StreamResume]);
    }

    #[test]
    fn volume_is_clamped() {
        let (mut app, mut eng) = Player::new_for_test();
        let _ = app.update(Message::VolumeUp);
        let _ = app.update(Message::SetVolume(-3.0));
        let _ = app.update(Message::VolumeDown);
        assert_eq!(
            eng.sent(),
            vec![
                Command::SetVolume(1.0),
                Command::SetVolume(0.0),
                Command::SetVolume(0.0)
            ]
        );
    }

    /// What the renderer does when asked to allocate: report the upload done.
    fn uploaded(app: &mut Player) {
        let seq = app.uploading.as_ref().expect("an upload in flight").seq;
        let _ = app.update(Message::Uploaded(seq, None));
    }

    fn frame_at(ms: u64) -> VideoFrame {
        VideoFrame {
            width: 4,
            height: 2,
            rgba: Arc::new(vec![200; 4 * 2 * 4]),
            position: Duration::from_millis(ms),
        }
    }

    fn shown(app: &Player) -> Option<Duration> {
        app.frame.as_ref().map(|p| p.position)
    }

    #[test]
    fn frames_are_shown_once_uploaded_and_bad_ones_dropped() {
        let (mut app, _eng) = Player::new_for_test();
        let _ = app.update(Message::Frame(frame_at(40)));
        assert_eq!(shown(&app), None, "not before the renderer has it");
        uploaded(&mut app);
        let p = app.frame.as_ref().expect("picture");
        assert_eq!((p.width, p.height), (4, 2));
        assert!(app.uploading.is_none());

        let bad = VideoFrame {
            rgba: Arc::new(vec![0; 3]),
            ..frame_at(80)
        };
        let _ = app.update(Message::Frame(bad));
        assert!(app.uploading.is_none(), "a malformed frame is not uploaded");
        assert_eq!(
            shown(&app),
            Some(Duration::from_millis(40)),
            "a malformed frame keeps the previous picture"
        );
        let _ = app.view();
    }

    #[test]
    fn frames_arriving_during_an_upload_keep_only_the_newest() {
        let (mut app, _eng) = Player::new_for_test();
        let _ = app.update(Message::Frame(frame_at(0)));
        for ms in [40, 80, 120] {
            let _ = app.update(Message::Frame(frame_at(ms)));
        }
        assert_eq!(
            app.queued.as_ref().map(|p| p.position),
            Some(Duration::from_millis(120))
        );
        // A stale report (an upload we no longer wait for) changes nothing.
        let _ = app.update(Message::Uploaded(999, None));
        assert_eq!(shown(&app), None);

        uploaded(&mut app);
        assert_eq!(shown(&app), Some(Duration::ZERO));
        // The newest waiting one goes up next; 40 and 80 were skipped.
        assert_eq!(
            app.uploading.as_ref().map(|p| p.position),
            Some(Duration::from_millis(120))
        );
        assert!(app.queued.is_none());
        uploaded(&mut app);
        assert_eq!(shown(&app), Some(Duration::from_millis(120)));
        assert!(app.uploading.is_none());
    }

    #[test]
    fn every_status_renders() {
        let (mut app, _eng) = Player::new_for_test();
        let _ = app.update(Message::Frame(frame_at(0)));
        uploaded(&mut app);
        let stats = Stats {
            width: 1280,
            height: 720,
            fps: 29.97,
            bitrate: 2_000_000.0,
            packets_received: 12_345,
            packets_lost: 12,
            jitter_ms: 1.5,
            latency_ms: Some(180.0),
            recorded: Duration::from_secs(3725),
            video_frames_decoded: 100,
            audio_frames_decoded: 200,
            rendition: Some(("640x360".into(), 2)),
        };
        let conns = [
            ConnState::Connecting,
            ConnState::Streaming { tcp: false },
            ConnState::Streaming { tcp: true },
            ConnState::ServerPaused,
            ConnState::Reconnecting {
                attempt: 3,
                reason: "connection refused".into(),
                retry_in: Duration::from_secs(4),
            },
            ConnState::Offline,
            ConnState::Ended,
            ConnState::Failed("404 Not Found".into()),
        ];
        for (show_stats, width) in [(false, 1280.0), (true, 1280.0), (true, 700.0)] {
            app.show_stats = show_stats;
            let _ = app.update(Message::Resized(width));
            for conn in &conns {
                for speed in [0.5, 1.0, 4.0] {
                    let _ = app.update(Message::status(Status {
                        conn: conn.clone(),
                        position: Duration::from_secs(3600),
                        recorded_end: Duration::from_secs(3725),
                        playing: speed != 0.5,
                        speed,
                        at_live: speed == 1.0,
                        muted: speed == 4.0,
                        captions_enabled: true,
                        has_captions: speed != 1.0,
                        caption_text: vec!["hello".into(), "world".into()],
                        stats: stats.clone(),
                        warnings: vec!["no audio device: playing silently".into()],
                        ..Status::default()
                    }));
                    let _ = app.view();
                    let _ = app.title();
                }
            }
        }
        app.frame = None;
        app.status = Status::default();
        let _ = app.view();
        let _ = app.update(Message::EngineGone);
        assert_eq!(app.status.conn, ConnState::Ended);
        let _ = app.view();
    }

    #[test]
    fn an_engine_that_failed_to_start_is_shown() {
        let app = Player::new(
            Err(anyhow::anyhow!("bad URL")),
            &Source::Url("rtsp://nowhere".into()),
            "Livecast".into(),
            false,
            1.0,
        );
        assert!(app.title().contains("failed"));
        let _ = app.view();
    }

    #[test]
    fn closing_stops_the_engine_once() {
        let (mut app, mut eng) = Player::new_for_test();
        let _ = app.update(Message::CloseRequested);
        assert!(app.closing);
        assert_eq!(eng.sent(), vec![Command::Stop]);
        assert!(!app.controllable());
        // Closing: the controls are inert, a second request exits without a second stop.
        let _ = app.update(Message::TogglePlay);
        let _ = app.update(Message::CloseRequested);
        let _ = app.view();
        assert_eq!(eng.sent(), vec![]);
    }
}
