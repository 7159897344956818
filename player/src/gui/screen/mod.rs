//! The window's screens. Each owns its state, messages, `update` and view; the app holds one
//! of them ([`crate::gui::app::Screen`]). The call screen embeds the player screen.

pub mod call;
pub mod player;

use iced::widget::{button, Button};
use iced::Element;

/// A button that shows whether what it stands for is on (primary style) or off (secondary).
fn switch_button<'a, M: Clone + 'a>(
    content: impl Into<Element<'a, M>>,
    on_press: Option<M>,
    active: bool,
) -> Button<'a, M> {
    button(content).on_press_maybe(on_press).style(if active {
        button::primary
    } else {
        button::secondary
    })
}
