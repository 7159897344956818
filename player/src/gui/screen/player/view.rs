//! Drawing the player screen: the picture with its overlays, and the control bar under it.
//! A screen that embeds the player (the call) adds to the picture through [`Additions`].
//!
//! ```text
//! ┌──────────────────────────────────────────────────────────────┐
//! │ stats (i)                                     badges (2x, …) │
//! │                    connection message                        │
//! │                   caption line 1 / line 2                    │
//! ├──────────────────────────────────────────────────────────────┤
//! │ ═══════════════════●═══════════════════════════════════════▌ │ timeline (live edge ▌)
//! │ Pause -10s +10s 1:02 / 5:00 3:58 behind live  - 1x + Go live Mute ─○─ CC Stop receiving Stats Fullscreen │
//! └──────────────────────────────────────────────────────────────┘
//! ```

use std::time::Duration;

use iced::alignment::{Horizontal, Vertical};
use iced::widget::{
    button, canvas, column, container, image, mouse_area, row, slider, space, stack, text,
    text_input, tooltip, Column, Row,
};
use iced::{Background, Border, Center, Color, ContentFit, Element, Fill, Font, Theme};

use super::state::{Message, Player};
use super::timeline::{self, Seek, Timeline};
use crate::engine::{ConnState, Stats, Status};

const BAR_BG: Color = Color::from_rgb(0.09, 0.09, 0.10);
const OVERLAY_BG: Color = Color::from_rgba(0.0, 0.0, 0.0, 0.65);
const TEXT_SIZE: f32 = 14.0;
/// Narrower windows get the controls on two rows.
pub const WIDE_LAYOUT: f32 = 1100.0;

/// `m:ss`, or `h:mm:ss` from an hour on.
pub fn fmt_time(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// A reconnection's wait: `0.5 s`, `2 s`, `16 s`.
fn fmt_retry(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.0} s")
    }
}

/// `2.01 Mbit/s`, `640 kbit/s`, `800 bit/s`.
pub fn fmt_bitrate(bps: f64) -> String {
    if bps >= 1e6 {
        format!("{:.2} Mbit/s", bps / 1e6)
    } else if bps >= 1e3 {
        format!("{:.0} kbit/s", bps / 1e3)
    } else {
        format!("{bps:.0} bit/s")
    }
}

/// `1x`, `1.5x`, `0.5x`.
pub fn fmt_speed(speed: f32) -> String {
    let s = format!("{speed:.1}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}x")
}

/// The statistics overlay's lines, label and value.
pub fn stats_lines(status: &Status) -> Vec<(&'static str, String)> {
    let st: &Stats = &status.stats;
    let lost = st.packets_lost.max(0) as f64;
    let expected = st.packets_received as f64 + lost;
    let loss_pct = if expected > 0.0 {
        100.0 * lost / expected
    } else {
        0.0
    };
    let transport = match status.conn {
        ConnState::Streaming { tcp: true } => "RTP over RTSP (TCP)",
        ConnState::Streaming { tcp: false } => "RTP over UDP",
        ConnState::Offline => "file",
        _ => "-",
    };
    let codecs = if status.codecs.is_empty() {
        "-".to_string()
    } else {
        status
            .codecs
            .iter()
            .map(|c| format!("{c:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rendition = st.rendition.as_ref().map(|(r, switches)| {
        let s = if *switches == 1 { "" } else { "es" };
        ("Rendition", format!("{r} ({switches} switch{s})"))
    });
    [
        ("Resolution", format!("{} x {}", st.width, st.height)),
        ("Frame rate", format!("{:.1} fps", st.fps)),
        ("Bit rate", fmt_bitrate(st.bitrate)),
        (
            "Loss",
            format!(
                "{} of {} packets ({loss_pct:.2} %)",
                st.packets_lost.max(0),
                expected as u64
            ),
        ),
        ("Jitter", format!("{:.1} ms", st.jitter_ms)),
        (
            "Latency",
            st.latency_ms
                .map(|l| format!("{l:.0} ms end to end"))
                .unwrap_or_else(|| "- (no sender report yet)".into()),
        ),
        ("Recorded", fmt_time(st.recorded.max(status.recorded_end))),
        (
            "Behind live",
            fmt_time(status.recorded_end.saturating_sub(status.position)),
        ),
        ("Transport", transport.to_string()),
        ("Codecs", codecs),
        (
            "Decoded",
            format!(
                "{} video, {} audio frames",
                st.video_frames_decoded, st.audio_frames_decoded
            ),
        ),
    ]
    .into_iter()
    .chain(rendition)
    .collect()
}

/// The centred message about the connection, if there is something to say.
pub fn connection_message(app: &Player) -> Option<String> {
    if app.closing {
        return Some("Closing: ending the session (TEARDOWN)...".into());
    }
    if let Some(e) = &app.error {
        return Some(format!("Cannot play {}\n{e}", app.source));
    }
    let recorded = app.status.recorded_end;
    let keep = if recorded.is_zero() {
        String::new()
    } else {
        format!(
            "\nThe {} recorded so far stays playable.",
            fmt_time(recorded)
        )
    };
    match &app.status.conn {
        ConnState::Connecting if app.frame.is_none() => {
            Some(format!("Connecting to {}...", app.source))
        }
        ConnState::Streaming { .. } if app.frame.is_none() => {
            Some("Connected; waiting for the first picture...".into())
        }
        ConnState::Reconnecting {
            attempt,
            reason,
            retry_in,
        } if recorded.is_zero() && app.frame.is_none() => Some(format!(
            "Cannot reach {}: {reason}\nRetrying in {} (attempt {attempt})...",
            app.source,
            fmt_retry(*retry_in)
        )),
        ConnState::Reconnecting {
            attempt,
            reason,
            retry_in,
        } => Some(format!(
            "Lost the server: {reason}\nReconnecting in {} (attempt {attempt})...{keep}",
            fmt_retry(*retry_in)
        )),
        ConnState::Failed(reason) | ConnState::Unauthorized(reason) => {
            Some(format!("Cannot play {}\n{reason}{keep}", app.source))
        }
        ConnState::Ended => Some(format!("The stream has ended.{keep}")),
        _ => None,
    }
}

/// Small notes at the top right of the picture.
pub fn badges(app: &Player) -> Vec<String> {
    let mut b = vec![];
    let s = &app.status;
    if app.frame.is_some() && !s.playing {
        b.push("Paused".to_string());
    }
    if (app.speed - 1.0).abs() > f32::EPSILON {
        b.push(fmt_speed(app.speed));
    }
    if app.audio_muted_by_speed() {
        b.push("audio muted".into());
    } else if s.muted {
        b.push("muted".into());
    }
    if s.conn == ConnState::ServerPaused {
        b.push("Not receiving (server paused): the recording is not growing".into());
    }
    b.extend(app.notices.iter().cloned());
    b
}

/// What a screen that embeds the player adds to its picture.
#[derive(Default)]
pub struct Additions<'a> {
    /// Said over the picture instead of the player's own connection message (not instead
    /// of "closing" or a failed start).
    pub message: Option<String>,
    /// Shown in the picture's bottom right corner.
    pub corner: Option<Element<'a, Message>>,
}

pub fn view(app: &Player) -> Element<'_, Message> {
    column![video_area(app, Additions::default()), control_bar(app)].into()
}

fn overlay_box<'a>(content: impl Into<Element<'a, Message>>) -> container::Container<'a, Message> {
    container(content).padding([6, 10]).style(|_: &Theme| {
        container::Style::default()
            .background(OVERLAY_BG)
            .color(Color::WHITE)
            .border(Border::default().rounded(6))
    })
}

/// The picture and what is drawn over it.
pub fn video_area<'a>(app: &'a Player, additions: Additions<'a>) -> Element<'a, Message> {
    let picture: Element<'_, Message> = match &app.frame {
        Some(p) => image(p.handle.clone())
            .content_fit(ContentFit::Contain)
            .filter_method(image::FilterMethod::Linear)
            .width(Fill)
            .height(Fill)
            .into(),
        None => space().width(Fill).height(Fill).into(),
    };
    let base = mouse_area(
        container(picture)
            .width(Fill)
            .height(Fill)
            .center(Fill)
            .style(|_: &Theme| container::background(Color::BLACK)),
    )
    .on_double_click(Message::ToggleFullscreen);

    let mut layers = stack![base].width(Fill).height(Fill);

    if app.show_stats {
        let (labels, values): (Vec<_>, Vec<_>) = stats_lines(&app.status).into_iter().unzip();
        let col = |items: Vec<String>| {
            Column::with_children(items.into_iter().map(|s| {
                text(s)
                    .size(TEXT_SIZE)
                    .font(Font::MONOSPACE)
                    .color(Color::WHITE)
                    .into()
            }))
            .spacing(2)
        };
        let panel = overlay_box(
            row![
                col(labels.into_iter().map(String::from).collect()),
                col(values)
            ]
            .spacing(12),
        );
        layers = layers.push(
            container(panel)
                .padding(12)
                .align_left(Fill)
                .align_top(Fill),
        );
    }

    let notes = badges(app);
    if !notes.is_empty() {
        let col = Column::with_children(
            notes
                .into_iter()
                .map(|n| overlay_box(text(n).size(TEXT_SIZE)).into()),
        )
        .spacing(6)
        .align_x(Horizontal::Right);
        layers = layers.push(container(col).padding(12).align_right(Fill).align_top(Fill));
    }

    if let Some(corner) = additions.corner {
        layers = layers.push(
            container(corner)
                .padding(16)
                .align_right(Fill)
                .align_bottom(Fill),
        );
    }

    let message = match additions.message {
        Some(m) if !app.closing && app.error.is_none() => Some(m),
        _ => connection_message(app),
    };
    if let Some(msg) = message {
        let failed = app.error.is_some()
            || matches!(
                app.status.conn,
                ConnState::Failed(_) | ConnState::Unauthorized(_)
            );
        let t = text(msg)
            .size(18)
            .align_x(Horizontal::Center)
            .color(if failed {
                Color::from_rgb(1.0, 0.55, 0.5)
            } else {
                Color::WHITE
            });
        let content: Element<'_, Message> = if app.wants_login() {
            column![t, login_form(app)]
                .spacing(12)
                .align_x(Center)
                .into()
        } else {
            t.into()
        };
        layers = layers.push(container(overlay_box(content).padding([14, 20])).center(Fill));
    }

    if app.status.captions_enabled && !app.status.caption_text.is_empty() {
        let lines = &app.status.caption_text;
        let last_two = &lines[lines.len().saturating_sub(2)..];
        let captions = Column::with_children(last_two.iter().map(|l| {
            text(l.as_str())
                .size(24)
                .color(Color::WHITE)
                .align_x(Horizontal::Center)
                .into()
        }))
        .align_x(Center);
        layers = layers.push(
            container(overlay_box(captions).padding([6, 14]))
                .padding([24, 40])
                .align_x(Horizontal::Center)
                .align_y(Vertical::Bottom)
                .width(Fill)
                .height(Fill),
        );
    }

    layers.into()
}

/// The credentials prompt shown when the server answered 401: user name, password (hidden),
/// Connect (or Enter in the password field).
fn login_form(app: &Player) -> Element<'_, Message> {
    let user = text_input("User name", &app.login.user)
        .on_input(Message::LoginUser)
        .on_submit(Message::LoginSubmit)
        .width(260);
    let password = text_input("Password", &app.login.password)
        .secure(true)
        .on_input(Message::LoginPassword)
        .on_submit(Message::LoginSubmit)
        .width(260);
    let connect = button(text("Connect")).on_press(Message::LoginSubmit);
    column![user, password, connect]
        .spacing(8)
        .align_x(Center)
        .into()
}

/// A button with a tooltip naming its key.
fn control<'a>(
    label: impl text::IntoFragment<'a>,
    on_press: Option<Message>,
    active: bool,
    hint: &'a str,
) -> Element<'a, Message> {
    let b = crate::gui::screen::switch_button(text(label).size(TEXT_SIZE), on_press, active)
        .padding([4, 10]);
    tooltip(b, overlay_box(text(hint).size(12)), tooltip::Position::Top)
        .gap(6)
        .into()
}

/// A row of controls (the absent ones left out).
fn controls<'a>(items: impl IntoIterator<Item = Option<Element<'a, Message>>>) -> Row<'a, Message> {
    Row::with_children(items.into_iter().flatten())
        .spacing(6)
        .align_y(Center)
}

/// The timeline and the buttons under the picture.
pub fn control_bar(app: &Player) -> Element<'_, Message> {
    let s = &app.status;
    let has_engine = app.controllable();
    let on = |m: Message| has_engine.then_some(m);

    let shown = app.dragging_seek.unwrap_or(s.position).min(s.recorded_end);
    let bar = Element::from(
        canvas(Timeline {
            position: s.position,
            recorded_end: app.timeline_scale(),
            at_live: s.at_live,
            dragging: app.dragging_seek,
        })
        .width(Fill)
        .height(timeline::HEIGHT),
    )
    .map(|seek| match seek {
        Seek::Drag(t) => Message::SeekDrag(t),
        Seek::Release => Message::SeekRelease,
    });

    let behind = s.recorded_end.saturating_sub(shown);
    let time = if behind >= Duration::from_secs(1) && !s.at_live {
        format!(
            "{} / {}  {} behind live",
            fmt_time(shown),
            fmt_time(s.recorded_end),
            fmt_time(behind)
        )
    } else {
        format!("{} / {}", fmt_time(shown), fmt_time(s.recorded_end))
    };

    let live = {
        let (label, style): (&str, fn(&Theme, button::Status) -> button::Style) = if s.at_live {
            ("LIVE", button::danger)
        } else {
            ("Go live", button::secondary)
        };
        tooltip(
            button(text(label).size(TEXT_SIZE))
                .padding([4, 10])
                .on_press_maybe(on(Message::GoLive))
                .style(style),
            overlay_box(text("Jump to the live edge (L)").size(12)),
            tooltip::Position::Top,
        )
        .gap(6)
    };

    let receiving = match s.conn {
        ConnState::ServerPaused => control(
            "Resume receiving",
            on(Message::ToggleReceiving),
            true,
            "RTSP PLAY: the server resumes sending (S)",
        ),
        ConnState::Streaming { .. } => control(
            "Stop receiving",
            on(Message::ToggleReceiving),
            false,
            "RTSP PAUSE: the server stops sending; what was recorded stays (S)",
        ),
        _ => control(
            "Stop receiving",
            None,
            false,
            "RTSP PAUSE / PLAY, once connected (S)",
        ),
    };

    let play = control(
        if s.playing { "Pause" } else { "Play" },
        on(Message::TogglePlay),
        false,
        "Play / pause (Space); reception goes on",
    );
    let back = control(
        "-10s",
        on(Message::SeekBy(-10_000)),
        false,
        "Back 10 s (Left)",
    );
    let forward = control(
        "+10s",
        on(Message::SeekBy(10_000)),
        false,
        "Forward 10 s (Right)",
    );
    let time = text(time).size(TEXT_SIZE).font(Font::MONOSPACE);
    let rate = row![
        control("-", on(Message::SpeedDown), false, "Slower ([)"),
        text(fmt_speed(app.speed))
            .size(TEXT_SIZE)
            .font(Font::MONOSPACE)
            .width(40)
            .align_x(Horizontal::Center),
        control(
            "+",
            on(Message::SpeedUp),
            false,
            "Faster (]); above 2x without sound"
        ),
    ]
    .spacing(6)
    .align_y(Center);
    let sound = row![
        control(
            if s.muted { "Unmute" } else { "Mute" },
            on(Message::ToggleMute),
            s.muted,
            "Mute (M)"
        ),
        tooltip(
            slider(0.0..=1.0, app.volume, Message::SetVolume)
                .step(0.01)
                .width(90),
            overlay_box(text(format!("Volume {:.0} % (Up / Down)", app.volume * 100.0)).size(12)),
            tooltip::Position::Top,
        )
        .gap(6),
    ]
    .spacing(6)
    .align_y(Center);
    let captions = s.has_captions.then(|| {
        row![
            control(
                "CC",
                on(Message::ToggleCaptions),
                app.captions,
                "Captions on / off (C)",
            ),
            control(
                "Export",
                Some(Message::ExportCaptions),
                false,
                "Write the session's captions as WebVTT / SubRip (--captions-out)",
            ),
        ]
        .spacing(6)
    });
    let export = control(
        "Export MP4",
        Some(Message::ExportMp4),
        false,
        "Write the session so far as MP4 + captions (.vtt) to ~/Videos (or ~)",
    );
    let stats = control(
        "Stats",
        Some(Message::ToggleStats),
        app.show_stats,
        "Statistics (I)",
    );
    let fullscreen = control(
        if app.fullscreen {
            "Exit fullscreen"
        } else {
            "Fullscreen"
        },
        Some(Message::ToggleFullscreen),
        false,
        "Fullscreen (F, Esc to leave)",
    );

    let (play, back, forward) = (Some(play), Some(back), Some(forward));
    let time = Some(time.into());
    let (rate, sound) = (Some(rate.into()), Some(sound.into()));
    let live = Some(live.into());
    let captions = captions.map(Element::from);
    let (receiving, stats, fullscreen) = (Some(receiving), Some(stats), Some(fullscreen));
    let export = Some(export);
    let gap = || Some(space::horizontal().into());
    let buttons: Element<'_, Message> = if app.window_width >= WIDE_LAYOUT {
        controls([
            play,
            back,
            forward,
            time,
            gap(),
            rate,
            live,
            sound,
            captions,
            receiving,
            export,
            stats,
            fullscreen,
        ])
        .into()
    } else {
        column![
            controls([play, back, forward, time, gap(), live, fullscreen]),
            controls([rate, sound, captions, gap(), receiving, export, stats]),
        ]
        .spacing(4)
        .into()
    };

    container(column![bar, buttons].spacing(4))
        .padding([6, 10])
        .width(Fill)
        .style(|_: &Theme| container::Style {
            background: Some(Background::Color(BAR_BG)),
            text_color: Some(Color::from_rgb(0.92, 0.92, 0.92)),
            ..container::Style::default()
        })
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(fmt_time(Duration::from_millis(65_900)), "1:05");
        assert_eq!(fmt_time(Duration::from_secs(3725)), "1:02:05");
        assert_eq!(fmt_time(Duration::ZERO), "0:00");
        assert_eq!(fmt_bitrate(2_010_000.0), "2.01 Mbit/s");
        assert_eq!(fmt_bitrate(64_000.0), "64 kbit/s");
        assert_eq!(fmt_bitrate(800.0), "800 bit/s");
        assert_eq!(fmt_speed(1.0), "1x");
        assert_eq!(fmt_speed(1.5), "1.5x");
        assert_eq!(fmt_speed(0.5), "0.5x");
        assert_eq!(fmt_speed(4.0), "4x");
    }

    #[test]
    fn stats_overlay_has_what_the_issue_asks_for() {
        let status = Status {
            recorded_end: Duration::from_secs(90),
            position: Duration::from_secs(80),
            conn: ConnState::Streaming { tcp: true },
            stats: Stats {
                width: 1280,
                height: 720,
                fps: 30.0,
                bitrate: 2e6,
                packets_received: 990,
                packets_lost: 10,
                jitter_ms: 2.25,
                latency_ms: Some(210.0),
                recorded: Duration::from_secs(90),
                ..Stats::default()
            },
            ..Status::default()
        };
        let lines = stats_lines(&status);
        let get = |k: &str| {
            lines
                .iter()
                .find(|(l, _)| *l == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {k} line"))
        };
        assert_eq!(get("Resolution"), "1280 x 720");
        assert_eq!(get("Frame rate"), "30.0 fps");
        assert_eq!(get("Bit rate"), "2.00 Mbit/s");
        assert_eq!(get("Loss"), "10 of 1000 packets (1.00 %)");
        assert_eq!(get("Jitter"), "2.2 ms");
        assert_eq!(get("Latency"), "210 ms end to end");
        assert_eq!(get("Recorded"), "1:30");
        assert_eq!(get("Behind live"), "0:10");
        assert_eq!(get("Transport"), "RTP over RTSP (TCP)");
        assert!(
            lines.iter().all(|(l, _)| *l != "Rendition"),
            "no renditions listed"
        );
        let mut status = status;
        status.stats.rendition = Some(("640x360".into(), 1));
        let lines = stats_lines(&status);
        let rendition = lines.iter().find(|(l, _)| *l == "Rendition");
        assert_eq!(
            rendition.map(|(_, v)| v.as_str()),
            Some("640x360 (1 switch)")
        );
    }

    #[test]
    fn connection_trouble_is_explained() {
        let (mut app, _eng) = Player::new_for_test();
        assert!(connection_message(&app)
            .unwrap()
            .contains("Connecting to rtsp://"));
        app.status.conn = ConnState::Reconnecting {
            attempt: 1,
            reason: "connection refused".into(),
            retry_in: Duration::from_millis(500),
        };
        let m = connection_message(&app).unwrap();
        assert!(
            m.starts_with("Cannot reach rtsp://"),
            "never connected: {m}"
        );
        app.status.recorded_end = Duration::from_secs(75);
        app.status.conn = ConnState::Reconnecting {
            attempt: 2,
            reason: "connection refused".into(),
            retry_in: Duration::from_secs(2),
        };
        let m = connection_message(&app).unwrap();
        assert!(m.contains("connection refused"), "{m}");
        assert!(m.contains("in 2 s (attempt 2)"), "{m}");
        assert!(m.contains("1:15 recorded so far stays playable"), "{m}");
        app.status.conn = ConnState::Failed("404 Not Found".into());
        assert!(connection_message(&app).unwrap().contains("404 Not Found"));
        app.status.conn = ConnState::ServerPaused;
        assert!(connection_message(&app).is_none());
        assert!(badges(&app).iter().any(|b| b.contains("Not receiving")));
    }

    #[test]
    fn fast_forward_says_audio_is_muted() {
        let (mut app, _eng) = Player::new_for_test();
        app.speed = 3.0;
        assert!(badges(&app).contains(&"audio muted".to_string()));
        app.speed = 2.0;
        assert!(!badges(&app).contains(&"audio muted".to_string()));
    }
}
