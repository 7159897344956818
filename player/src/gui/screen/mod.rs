//! The window's screens. Each owns its state, messages, `update` and view; the app holds one
//! of them ([`crate::gui::app::Screen`]). The call screen embeds the player screen.

pub mod call;
pub mod player;
