//! The app: one screen at a time, and the messages routed to it.

use iced::{Element, Subscription, Task};

use super::screen::{call, player};

/// What the window shows.
// One value per window: boxing the larger variant would save nothing.
#[allow(clippy::large_enum_variant)]
pub enum Screen {
    /// A stream or a recording.
    Player(player::Player),
    /// A call: the peer's stream, our side's controls and the chat.
    Call(call::Call),
}

/// Everything the app reacts to: a screen's messages.
#[derive(Clone, Debug)]
pub enum Message {
    Player(player::Message),
    Call(call::Message),
}

/// The window's state.
pub struct App {
    pub screen: Screen,
}

impl App {
    pub fn new(screen: Screen) -> Self {
        Self { screen }
    }

    pub fn title(&self) -> String {
        match &self.screen {
            Screen::Player(p) => p.title(),
            Screen::Call(c) => c.title(),
        }
    }

    /// Hands `message` to the screen. The call screen embeds the player, so it takes the
    /// player's messages too (keys, window events and the engine's reports).
    pub fn update(&mut self, message: Message) -> Task<Message> {
        match (&mut self.screen, message) {
            (Screen::Player(p), Message::Player(m)) => p.update(m).map(Message::Player),
            (Screen::Call(c), Message::Player(m)) => {
                c.update(call::Message::Player(m)).map(Message::Call)
            }
            (Screen::Call(c), Message::Call(m)) => c.update(m).map(Message::Call),
            // A call message reaching the player screen (none is sent to it) means nothing.
            (Screen::Player(_), Message::Call(_)) => Task::none(),
        }
    }

    pub fn view(&self) -> Element<'_, Message> {
        match &self.screen {
            Screen::Player(p) => p.view().map(Message::Player),
            Screen::Call(c) => c.view().map(Message::Call),
        }
    }

    pub fn subscription(&self) -> Subscription<Message> {
        match &self.screen {
            Screen::Player(p) => p.subscription().map(Message::Player),
            Screen::Call(c) => c.subscription().map(Message::Call),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Command, ConnState, Status};

    /// The app routes the player's messages to whichever screen holds the player.
    #[test]
    fn player_messages_reach_the_player_screen() {
        let (p, mut eng) = player::Player::new_for_test();
        let mut app = App::new(Screen::Player(p));
        let _ = app.update(Message::Player(player::Message::status(Status {
            conn: ConnState::Streaming { tcp: false },
            ..Status::default()
        })));
        let _ = app.update(Message::Player(player::Message::TogglePlay));
        assert_eq!(eng.sent(), vec![Command::TogglePause]);
        assert_eq!(app.title(), "Livecast");
        let _ = app.view();
    }
}
