//! The player screen: the picture, its overlays and the controls, over one engine.
//!
//! [`state`] holds the state, the messages and `update`; [`view`] draws it; [`timeline`] is
//! the one custom widget; [`keys`] maps key presses to messages. This module wires them:
//! none of them depends on a module that depends on it.

pub mod keys;
pub mod state;
pub mod timeline;
pub mod view;

pub use state::{Message, Player};

use iced::{keyboard, window, Element, Subscription};

impl Player {
    pub fn view(&self) -> Element<'_, Message> {
        view::view(self)
    }

    /// Key presses, window events and the engine's reports.
    pub fn subscription(&self) -> Subscription<Message> {
        let keys = keyboard::listen().filter_map(|event| match event {
            keyboard::Event::KeyPressed {
                modified_key,
                modifiers,
                ..
            } => keys::key_to_message(&modified_key, modifiers),
            _ => None,
        });
        let close = window::close_requests().map(|_| Message::CloseRequested);
        let opened = window::open_events().map(|_| Message::WindowOpened);
        let resized = window::resize_events().map(|(_, size)| Message::Resized(size.width));
        // While the credentials prompt is up, keys are typing, not shortcuts.
        let keys = if self.wants_login() {
            Subscription::none()
        } else {
            keys
        };
        Subscription::batch([keys, close, opened, resized, self.engine_updates()])
    }
}
