//! The player window: an iced app that is a thin view over the engine ([`crate::engine`]).
//!
//! # Design
//!
//! The Elm shape of the iced examples, halloy and sniffnet:
//!
//! - [`App`] holds one [`Screen`]: the player ([`screen::player`]) or the call
//!   ([`screen::call`], which embeds the player). Each screen owns its state, its messages,
//!   its `update` and its view, as halloy's do; the app only routes [`Message`]s to the
//!   screen. Modules depend one way: app -> screens -> (call -> player) -> the player's
//!   state, view, timeline widget and keys.
//! - The player's state is the engine handle, the engine's newest
//!   [`Status`](crate::engine::Status), the picture on screen and a few view-only flags
//!   (statistics overlay, fullscreen, where the timeline knob is being dragged). Its
//!   `update` turns the viewer's actions into engine [`Command`](crate::engine::Command)s
//!   and folds the engine's reports into the state. It doesn't block and touches the window
//!   only through returned tasks, so it is unit-tested with a fake engine (channels), without
//!   a window.
//! - The player's view draws; its timeline is the one custom widget (a canvas).
//! - [`subscription`] (no widgets) turns the engine's two `watch` channels, newest picture and
//!   newest status, into a stream of messages. Decoding happens in the engine, off the UI
//!   thread; the GUI only ever sees the newest frame, so a slow redraw skips frames instead of
//!   queueing them.
//!
//! Keys are listed in [`screen::player::keys`]. [`run`] starts the engine before the window system, so that
//! connecting and waiting for a keyframe overlap with creating the window. Closing the window
//! stops the engine (RTSP TEARDOWN) before the app exits; the window stays up with
//! "Closing..." meanwhile, at most [`screen::player::state::SHUTDOWN_GRACE`]. Below
//! [`screen::player::view::WIDE_LAYOUT`] pixels the controls take two rows.
//!
//! # Rendering
//!
//! iced picks wgpu (Vulkan/GL, including Mesa's software rasterisers) and falls back to its
//! CPU renderer (tiny-skia) when no adapter is found; `ICED_BACKEND=tiny-skia` forces the CPU
//! renderer. Both draw everything here: the picture is an `image` widget fed with RGBA, the
//! timeline a canvas.
//!
//! A picture is shown only once the renderer has it: each frame is an `image::Handle` that is
//! first *allocated* (`iced::widget::image::allocate`), and the previous picture stays on
//! screen until then. Showing each new handle at once does not work with wgpu: it uploads
//! pictures over 2 MB (720p RGBA is 3.7 MB) on a worker thread and draws nothing for a handle
//! still uploading, so at 30 fps every handle is replaced before it is ever drawn and the
//! picture stays black. Frames arriving during an upload are skipped but for the newest.
//!
//! # Captions
//!
//! When the stream has a caption track, a CC button (and `c`) shows or hides up to two rows of
//! captions over the bottom of the picture, and "Export" writes the session's captions so far
//! to `--captions-out` (default `livecast-captions.vtt` in the current directory): WebVTT, or
//! SubRip for `.srt`. The outcome shows as a notice. (No save dialog: a file dialog crate
//! would pull in a desktop portal stack for one button.)
//!
//! # Limitations
//!
//! - The control bar stays visible in fullscreen (no auto-hide).
//! - Each picture is copied once (the engine's shared buffer into the image handle) and
//!   uploaded as a new texture; fine at 1080p30, a shader widget with a persistent texture
//!   would save both.
//! - Fullscreen needs a window manager (X11's fullscreen is a request to it).

pub mod app;
pub mod screen;
pub mod subscription;

pub use app::{App, Message, Screen};

use screen::{call, player::Player};

use crate::engine::{self, EngineConfig};

/// The window's initial size.
pub const WINDOW_SIZE: iced::Size = iced::Size::new(1280.0, 800.0);

/// How the window starts.
#[derive(Clone, Debug)]
pub struct GuiOptions {
    /// Window title.
    pub title: String,
    /// Start in fullscreen (`f` / Esc toggle it later).
    pub fullscreen: bool,
}

impl Default for GuiOptions {
    fn default() -> Self {
        Self {
            title: "Livecast".into(),
            fullscreen: false,
        }
    }
}

/// Starts the engine with `cfg` and runs the player window until it is closed. Returns when
/// the window has closed and the engine has stopped (TEARDOWN sent). An engine that fails to
/// start is reported in the window, not here; errors are the window system's (no display, no
/// usable renderer).
pub fn run(cfg: EngineConfig, opts: GuiOptions) -> anyhow::Result<()> {
    let window = iced::window::Settings {
        size: WINDOW_SIZE,
        min_size: Some(iced::Size::new(640.0, 400.0)),
        fullscreen: opts.fullscreen,
        // Closing must first stop the engine: the app handles close requests itself.
        exit_on_close_request: false,
        ..iced::window::Settings::default()
    };
    // The engine starts before the window system does: connecting, waiting for a keyframe and
    // decoding overlap with creating the window and its renderer, so the picture is there
    // as soon as the window is.
    let started = std::sync::Mutex::new(Some(engine::start(cfg.clone())));
    let boot = move || {
        let handle = started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| engine::start(cfg.clone()));
        let mut player = Player::new(
            handle,
            &cfg.source,
            opts.title.clone(),
            opts.fullscreen,
            cfg.volume,
        );
        if let Some(p) = &cfg.captions_out {
            player.export_path = p.clone();
        }
        player.restart = Some(cfg.clone());
        player.login.user = cfg
            .credentials
            .as_ref()
            .map(|c| c.user.clone())
            .unwrap_or_default();
        App::new(Screen::Player(player))
    };
    iced::application(boot, App::update, App::view)
        .title(App::title)
        .subscription(App::subscription)
        .theme(|_: &App| iced::Theme::Dark)
        .window(window)
        .run()
        .map_err(|e| anyhow::anyhow!("player window: {e}"))
}

/// Call mode: starts our side of the call (server) and the engine calling the peer, and runs
/// the call window until it is closed. Closing the window hangs up. Returns once our server
/// has stopped and the engine has sent TEARDOWN.
pub fn run_call(cfg: crate::call::CallConfig, opts: GuiOptions) -> anyhow::Result<()> {
    let window = iced::window::Settings {
        size: iced::Size::new(WINDOW_SIZE.width + call::CHAT_WIDTH, WINDOW_SIZE.height),
        min_size: Some(iced::Size::new(900.0, 500.0)),
        fullscreen: opts.fullscreen,
        exit_on_close_request: false,
        ..iced::window::Settings::default()
    };
    // Our server must be up before the window opens: a camera or port problem is an error
    // to report at once, like livecast-server's.
    let crate::call::Call { engine, local } = crate::call::Call::start(cfg.clone())?;
    let invitation = cfg
        .code_generated
        .then(|| crate::call::invitation(&local.listening, &cfg.code));
    if let Some(i) = &invitation {
        tracing::info!("ask the peer to run: {i}");
    }
    let stopping: call::Stopping = Default::default();
    let started = std::sync::Mutex::new(Some((engine, local)));
    let stop2 = stopping.clone();
    let boot = move || {
        let (engine, local) = started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .expect("the call window boots once");
        let source = engine::Source::Url(local.url.clone());
        let mut player = Player::new(
            Ok(engine),
            &source,
            opts.title.clone(),
            opts.fullscreen,
            cfg.engine.volume,
        );
        if let Some(p) = &cfg.engine.captions_out {
            player.export_path = p.clone();
        }
        App::new(Screen::Call(call::Call::new(
            player,
            local,
            cfg.echo_cancel,
            stop2.clone(),
            invitation.clone(),
        )))
    };
    let result = iced::application(boot, App::update, App::view)
        .title(App::title)
        .subscription(App::subscription)
        .theme(|_: &App| iced::Theme::Dark)
        .window(window)
        .run()
        .map_err(|e| anyhow::anyhow!("call window: {e}"));
    let joins: Vec<_> = std::mem::take(&mut *stopping.lock().unwrap_or_else(|p| p.into_inner()));
    for j in joins {
        let _ = j.join();
    }
    result
}
