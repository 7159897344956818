//! The call screen: the player screen showing the peer large (the player's picture, captions, timeline: the call
//! is recorded, so it can be scrolled back and brought back to live), our camera small and
//! mirrored in a corner, mute / camera / echo-cancel / hang-up buttons under the picture and a
//! chat panel on the right.
//!
//! ```text
//! ┌───────────────────────────────────────────────┬──────────────┐
//! │ peer's picture            "Calling bob..."    │ Chat         │
//! │                                 ┌──────────┐  │ bob: hi      │
//! │        captions                 │ self-view│  │ You: hello   │
//! │                                 └──────────┘  │              │
//! ├───────────────────────────────────────────────┤              │
//! │ Mute mic  Camera off  Echo cancel  Hang up    │ [message][⏎] │
//! │ timeline and player controls                  │              │
//! └───────────────────────────────────────────────┴──────────────┘
//! ```

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use iced::futures::stream::{self, Stream};
use iced::widget::{button, column, container, image, row, scrollable, text, text_input, Column};
use iced::{Color, ContentFit, Element, Fill, Subscription, Task, Theme};
use livecast_server::hooks::Preview;

use super::player::{self, view::Additions, Player};
use crate::call::{self_view_rgba, CallState, LocalSide, SentChat};
use crate::engine::{ChatLine, Command, Status};

/// Width of the self-view picture, pixels (the picture is subsampled to about this).
pub const SELF_VIEW_WIDTH: u32 = 240;
/// The self-view is refreshed at most this often.
const SELF_VIEW_PERIOD: Duration = Duration::from_millis(66);
pub const CHAT_WIDTH: f32 = 300.0;

/// The call screen's messages: the player's, and what the call adds.
#[derive(Clone, Debug)]
pub enum Message {
    Player(player::Message),
    Draft(String),
    Send,
    ToggleMic,
    ToggleCamera,
    ToggleEcho,
    HangUp,
    SelfView(image::Handle),
}

/// Servers being stopped on their own threads, joined before the process exits.
pub type Stopping = Arc<Mutex<Vec<JoinHandle<()>>>>;

/// The call screen's state: the player showing the peer, and our side of the call.
pub struct Call {
    pub player: Player,
    /// Our server; `None` once hung up (it stops on a thread of its own).
    local: Option<LocalSide>,
    stopping: Stopping,
    preview: Option<Preview>,
    pub peer: String,
    pub state: CallState,
    /// We hung up (else the peer did, if the call is over).
    pub hung_up: bool,
    pub draft: String,
    pub sent: Vec<SentChat>,
    pub self_view: Option<image::Handle>,
    pub mic_muted: bool,
    pub camera_off: bool,
    /// `None`: started without echo cancellation (`--headset`).
    pub echo_cancel: Option<bool>,
    /// Why the last chat message was not sent.
    pub chat_error: Option<String>,
    /// What the peer must run (`--call US --code CODE`) when we made the code.
    pub invitation: Option<String>,
    /// The safety code to compare with the peer's, once connected.
    pub safety_code: Option<String>,
    /// Our server refused the peer's call code: it lingers a moment so the peer hears why.
    refused_code: bool,
}

impl Call {
    pub fn new(
        player: Player,
        local: LocalSide,
        echo_cancel: bool,
        stopping: Stopping,
        invitation: Option<String>,
    ) -> Self {
        Call {
            invitation,
            safety_code: None,
            refused_code: false,
            player,
            preview: local.preview(),
            peer: local.peer.clone(),
            local: Some(local),
            stopping,
            state: CallState::Calling { attempt: 0 },
            hung_up: false,
            draft: String::new(),
            sent: Vec::new(),
            self_view: None,
            mic_muted: false,
            camera_off: false,
            echo_cancel: echo_cancel.then_some(true),
            chat_error: None,
        }
    }

    /// Stops our server (BYE to the peer, sessions closed) on a thread of its own.
    pub fn stop_local(&mut self) {
        let Some(mut local) = self.local.take() else {
            return;
        };
        // No camera any more: no self-view.
        self.preview = None;
        self.self_view = None;
        let linger = self.refused_code;
        let spawned = std::thread::Builder::new()
            .name("call-hangup".into())
            .spawn(move || {
                if linger {
                    std::thread::sleep(crate::call::REFUSED_LINGER);
                }
                let s = local.hang_up();
                tracing::info!(
                    sessions_at_hangup = s.sessions_at_hangup,
                    "our side of the call has stopped"
                );
            });
        match spawned {
            Ok(j) => self
                .stopping
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(j),
            Err(e) => tracing::warn!("cannot spawn the hang-up thread: {e}"),
        }
    }

    /// Follows the engine: a call the peer ended stops our side too.
    pub fn on_status(&mut self, st: &Status) {
        if self.hung_up {
            return;
        }
        if matches!(self.state, CallState::Ended { .. }) {
            return;
        }
        let mut state = CallState::from_conn(&st.conn);
        if matches!(state, CallState::Calling { .. })
            && self.local.as_ref().is_some_and(|l| l.auth_failures() > 0)
        {
            // Our server refused the peer's code: it would keep calling us in vain.
            state = CallState::Ended {
                by_peer: true,
                reason: crate::call::WRONG_CODE_FROM_PEER.into(),
            };
            self.player.send_command(Command::Stop);
            self.refused_code = true;
        }
        if state != self.state {
            tracing::info!(?state, "call");
            self.state = state;
        }
        if self.state == CallState::Connected && self.safety_code.is_none() {
            self.safety_code = self.local.as_mut().and_then(LocalSide::safety_code);
        }
        if matches!(self.state, CallState::Ended { .. }) {
            self.stop_local();
        }
    }

    /// The peer's name: its SDP title, else what was dialled.
    pub fn peer_name<'a>(&'a self, st: &'a Status) -> &'a str {
        st.title.as_deref().unwrap_or(&self.peer)
    }

    /// The call's status line over the picture, if any.
    pub fn message(&self, st: &Status) -> Option<String> {
        if self.hung_up {
            return Some("Call ended.\nThe recording stays: scroll back to replay it.".into());
        }
        match &self.state {
            CallState::Calling { attempt } if *attempt > 0 => Some(format!(
                "Calling {}...\nwaiting for an answer (attempt {attempt})",
                self.peer
            )),
            CallState::Calling { .. } => Some(format!("Calling {}...", self.peer)),
            CallState::Connected => None,
            CallState::Ended { reason, .. } => Some(format!(
                "Call ended: {}\nThe recording stays: scroll back to replay it.",
                if reason.is_empty() {
                    self.peer_name(st)
                } else {
                    reason
                }
            )),
        }
    }
}

impl Call {
    pub fn update(&mut self, m: Message) -> Task<Message> {
        match m {
            Message::Player(m) => return self.update_player(m),
            Message::Draft(s) => self.draft = s,
            Message::Send => {
                let Some(local) = self.local.as_mut() else {
                    self.chat_error = Some("the call has ended".into());
                    return Task::none();
                };
                if self.state != CallState::Connected || !local.peer_watching() {
                    self.chat_error = Some(format!(
                        "{} has not answered yet; the message is kept",
                        self.peer
                    ));
                    return Task::none();
                }
                match local.send_chat(&self.draft) {
                    Ok(sent) => {
                        self.sent.push(sent);
                        self.draft.clear();
                        self.chat_error = None;
                    }
                    Err(e) => self.chat_error = Some(e.to_string()),
                }
            }
            Message::ToggleMic => {
                if let Some(l) = &self.local {
                    self.mic_muted = !self.mic_muted;
                    l.set_mic_muted(self.mic_muted);
                }
            }
            Message::ToggleCamera => {
                if let Some(l) = &self.local {
                    self.camera_off = !self.camera_off;
                    l.set_camera_off(self.camera_off);
                }
            }
            Message::ToggleEcho => {
                if let (Some(l), Some(on)) = (&self.local, self.echo_cancel) {
                    if l.set_echo_cancel(!on) {
                        self.echo_cancel = Some(!on);
                    }
                }
            }
            Message::HangUp => {
                if !self.hung_up {
                    tracing::info!("hanging up");
                    self.hung_up = true;
                    self.stop_local();
                    // TEARDOWN to the peer; the recording stays playable.
                    self.player.send_command(Command::Stop);
                }
            }
            Message::SelfView(h) => self.self_view = Some(h),
        }
        Task::none()
    }

    /// The player's messages, with what the call does on them first: a status may end the
    /// call; closing the window hangs up (our server first, so the peer hears the BYE at
    /// once).
    fn update_player(&mut self, m: player::Message) -> Task<Message> {
        match &m {
            player::Message::Status(st) => self.on_status(st),
            player::Message::CloseRequested if !self.player.closing => {
                self.hung_up = true;
                self.stop_local();
            }
            _ => {}
        }
        self.player.update(m).map(Message::Player)
    }

    pub fn title(&self) -> String {
        let state = match &self.state {
            _ if self.hung_up => " (call ended)",
            CallState::Calling { .. } => " (calling...)",
            CallState::Connected => "",
            CallState::Ended { .. } => " (call ended)",
        };
        format!("{}{state}", self.player.title)
    }

    /// The player's picture with the call's status line and our camera over it, the call's
    /// buttons, the player's controls, and the chat on the right.
    pub fn view(&self) -> Element<'_, Message> {
        let additions = Additions {
            message: self.message(&self.player.status),
            corner: self_view(self),
        };
        row![
            column![
                player::view::video_area(&self.player, additions).map(Message::Player),
                call_bar(self),
                player::view::control_bar(&self.player).map(Message::Player),
            ]
            .width(Fill),
            chat_panel(self)
        ]
        .into()
    }

    /// The player's, and newest captured pictures as small mirrored self-view images.
    pub fn subscription(&self) -> Subscription<Message> {
        let self_view = match &self.preview {
            Some(p) => Subscription::run_with(PreviewWatch(p.clone()), PreviewWatch::stream)
                .map(Message::SelfView),
            None => Subscription::none(),
        };
        Subscription::batch([self.player.subscription().map(Message::Player), self_view])
    }
}

/// The chat so far, both sides, oldest first (received ones by arrival, ours by sending
/// time): (from us, text).
pub fn merge_chat<'a>(received: &'a [ChatLine], sent: &'a [SentChat]) -> Vec<(bool, &'a str)> {
    let mut all: Vec<(i64, bool, &str)> = received
        .iter()
        .map(|c| (c.arrival_unix_ms, false, c.text.as_str()))
        .chain(sent.iter().map(|m| (m.sent_unix_ms, true, m.text.as_str())))
        .collect();
    // Stable: same-millisecond messages keep their order within each side.
    all.sort_by_key(|(t, _, _)| *t);
    all.into_iter().map(|(_, me, t)| (me, t)).collect()
}

struct PreviewWatch(Preview);

impl Hash for PreviewWatch {
    fn hash<H: Hasher>(&self, state: &mut H) {
        "self-view".hash(state);
    }
}

impl PreviewWatch {
    fn stream(&self) -> impl Stream<Item = image::Handle> + Send + 'static {
        stream::unfold(self.0.clone(), |mut rx| async move {
            loop {
                tokio::time::sleep(SELF_VIEW_PERIOD).await;
                if rx.changed().await.is_err() {
                    return None;
                }
                let frame = rx.borrow_and_update().clone();
                if let Some((w, h, rgba)) = frame.and_then(|f| self_view_rgba(&f, SELF_VIEW_WIDTH))
                {
                    return Some((image::Handle::from_rgba(w, h, rgba), rx));
                }
            }
        })
    }
}

fn call_button<'a>(label: &'a str, msg: Option<Message>, active: bool) -> Element<'a, Message> {
    super::switch_button(text(label).size(14), msg, active)
        .padding([6, 12])
        .into()
}

/// Mute, camera, echo cancellation and hang-up.
fn call_bar(call: &Call) -> Element<'_, Message> {
    let live = call.local.is_some() && !call.hung_up;
    let on = |m: Message| live.then_some(m);
    let mut r = row![
        call_bar_label(call),
        call_button(
            if call.mic_muted {
                "Unmute mic"
            } else {
                "Mute mic"
            },
            on(Message::ToggleMic),
            call.mic_muted
        ),
        call_button(
            if call.camera_off {
                "Camera on"
            } else {
                "Camera off"
            },
            on(Message::ToggleCamera),
            call.camera_off
        ),
    ]
    .spacing(8)
    .align_y(iced::Center);
    if let Some(echo) = call.echo_cancel {
        r = r.push(call_button(
            if echo {
                "Echo cancel: on"
            } else {
                "Echo cancel: off (headset)"
            },
            on(Message::ToggleEcho),
            false,
        ));
    }
    let hang_up = button(text("Hang up").size(14))
        .padding([6, 16])
        .on_press_maybe(on(Message::HangUp))
        .style(button::danger);
    r = r.push(hang_up);
    container(r)
        .padding([6, 10])
        .width(Fill)
        .style(|_: &Theme| container::background(Color::from_rgb(0.12, 0.12, 0.14)))
        .into()
}

fn call_bar_label(call: &Call) -> Element<'_, Message> {
    let s = if call.hung_up {
        "Call ended".to_string()
    } else {
        match &call.state {
            CallState::Calling { .. } => match &call.invitation {
                Some(i) => format!("Calling {}... Ask them to run: {i}", call.peer),
                None => format!("Calling {}...", call.peer),
            },
            CallState::Connected => match &call.safety_code {
                Some(c) => format!(
                    "In a call with {} · safety code {c} (compare it with theirs)",
                    call.peer_name(&call.player.status)
                ),
                None => format!("In a call with {}", call.peer_name(&call.player.status)),
            },
            CallState::Ended { .. } => "Call ended".to_string(),
        }
    };
    container(text(s).size(14).color(Color::WHITE))
        .width(Fill)
        .into()
}

/// The self-view: our camera, mirrored, or "Camera off"; nothing once the call is over.
fn self_view<'a, M: 'a>(call: &'a Call) -> Option<Element<'a, M>> {
    call.local.as_ref()?;
    let inner: Element<'a, M> = if call.camera_off {
        container(text("Camera off").size(14).color(Color::WHITE))
            .center(Fill)
            .into()
    } else {
        image(call.self_view.clone()?)
            .content_fit(ContentFit::Contain)
            .width(Fill)
            .height(Fill)
            .into()
    };
    Some(
        container(inner)
            .width(SELF_VIEW_WIDTH as f32)
            .height(SELF_VIEW_WIDTH as f32 * 3.0 / 4.0)
            .style(|_: &Theme| {
                container::Style::default()
                    .background(Color::from_rgb(0.05, 0.05, 0.05))
                    .border(
                        iced::Border::default()
                            .rounded(6)
                            .width(2)
                            .color(Color::WHITE),
                    )
            })
            .into(),
    )
}

/// Chat: who said what, and the box to type in.
fn chat_panel(call: &Call) -> Element<'_, Message> {
    let peer = call.peer_name(&call.player.status);
    let lines = merge_chat(&call.player.status.chat, &call.sent);
    let list: Element<'_, Message> = if lines.is_empty() {
        text("No messages yet.")
            .size(13)
            .color(Color::from_rgb(0.6, 0.6, 0.6))
            .into()
    } else {
        Column::with_children(lines.into_iter().map(|(me, t)| {
            let who = if me { "You" } else { peer };
            column![
                text(who).size(12).color(if me {
                    Color::from_rgb(0.55, 0.8, 1.0)
                } else {
                    Color::from_rgb(1.0, 0.8, 0.45)
                }),
                text(t).size(14).color(Color::WHITE),
            ]
            .spacing(1)
            .into()
        }))
        .spacing(8)
        .into()
    };
    let live = call.local.is_some() && !call.hung_up;
    let mut input = text_input("Type a message, Enter sends", &call.draft).size(14);
    if live {
        input = input.on_input(Message::Draft).on_submit(Message::Send);
    }
    let mut col = column![
        text("Chat").size(16).color(Color::WHITE),
        text("Captions show on the picture; chat is here.")
            .size(11)
            .color(Color::from_rgb(0.6, 0.6, 0.6)),
        scrollable(list).anchor_bottom().height(Fill).width(Fill),
    ]
    .spacing(8);
    if let Some(e) = &call.chat_error {
        col = col.push(text(e).size(12).color(Color::from_rgb(1.0, 0.55, 0.5)));
    }
    col = col.push(
        row![
            input,
            button(text("Send").size(14))
                .on_press_maybe((live && !call.draft.trim().is_empty()).then_some(Message::Send))
        ]
        .spacing(6),
    );
    container(col)
        .padding(10)
        .width(CHAT_WIDTH)
        .height(Fill)
        .style(|_: &Theme| container::background(Color::from_rgb(0.10, 0.10, 0.11)))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_lines_interleave_both_sides_by_time() {
        let received = vec![
            ChatLine {
                text: "hi".into(),
                sent_unix_ms: 90,
                arrival_unix_ms: 100,
            },
            ChatLine {
                text: "how are you".into(),
                sent_unix_ms: 290,
                arrival_unix_ms: 300,
            },
        ];
        let sent = [
            SentChat {
                text: "hello".into(),
                sent_unix_ms: 200,
            },
            SentChat {
                text: "fine".into(),
                sent_unix_ms: 300,
            },
        ];
        assert_eq!(
            merge_chat(&received, &sent),
            [
                (false, "hi"),
                (true, "hello"),
                (false, "how are you"),
                (true, "fine")
            ]
        );
        assert!(merge_chat(&[], &[]).is_empty());
    }
}
