//! Keyboard shortcuts: one pure function from a key press to a [`Message`].
//!
//! | key | action |
//! |---|---|
//! | space | play / pause |
//! | ← / → | back / forward 10 s |
//! | `[` / `]` | slower / faster (0.5x, 1x, 1.5x, 2x, 3x, 4x) |
//! | `l` or End | jump to the live edge |
//! | ↑ / ↓ | volume up / down 10 % |
//! | `m` | mute |
//! | `c` | captions on / off |
//! | `i` | statistics overlay |
//! | `f` | fullscreen (Esc leaves it) |
//! | `s` | stop / resume receiving (RTSP PAUSE / PLAY) |
//!
//! Presses with Ctrl, Alt or the logo key are left alone (they belong to the desktop), so
//! Ctrl+C doesn't toggle captions. Letters match in either case.

use iced::keyboard::key::Named;
use iced::keyboard::{Key, Modifiers};

use super::state::Message;

/// Seek step of the arrow keys, ms.
pub const SEEK_STEP_MS: i64 = 10_000;

/// The message for a key press, if the key is a shortcut. `key` is the key with modifiers
/// applied (iced's `modified_key`), so `[` works on layouts where it needs AltGr.
pub fn key_to_message(key: &Key, modifiers: Modifiers) -> Option<Message> {
    if modifiers.control() || modifiers.alt() || modifiers.logo() {
        return None;
    }
    match key {
        Key::Named(named) => match named {
            Named::Space => Some(Message::TogglePlay),
            Named::ArrowLeft => Some(Message::SeekBy(-SEEK_STEP_MS)),
            Named::ArrowRight => Some(Message::SeekBy(SEEK_STEP_MS)),
            Named::ArrowUp => Some(Message::VolumeUp),
            Named::ArrowDown => Some(Message::VolumeDown),
            Named::End => Some(Message::GoLive),
            Named::Escape => Some(Message::ExitFullscreen),
            _ => None,
        },
        Key::Character(c) => match c.to_lowercase().as_str() {
            " " => Some(Message::TogglePlay),
            "[" => Some(Message::SpeedDown),
            "]" => Some(Message::SpeedUp),
            "l" => Some(Message::GoLive),
            "m" => Some(Message::ToggleMute),
            "c" => Some(Message::ToggleCaptions),
            "i" => Some(Message::ToggleStats),
            "f" => Some(Message::ToggleFullscreen),
            "s" => Some(Message::ToggleReceiving),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(s: &str) -> Key {
        Key::Character(s.into())
    }

    #[test]
    fn modifiers_for_the_desktop_are_ignored() {
        assert!(key_to_message(&ch("c"), Modifiers::CTRL).is_none());
        assert!(key_to_message(&ch("f"), Modifiers::ALT).is_none());
        assert!(key_to_message(&Key::Named(Named::Space), Modifiers::LOGO).is_none());
        // Shift is fine: "M" mutes too.
        assert!(matches!(
            key_to_message(&ch("M"), Modifiers::SHIFT),
            Some(Message::ToggleMute)
        ));
        assert!(key_to_message(&ch("x"), Modifiers::empty()).is_none());
        assert!(key_to_message(&Key::Named(Named::Tab), Modifiers::empty()).is_none());
    }
}
