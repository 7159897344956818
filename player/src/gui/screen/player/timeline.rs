//! The timeline: the recorded range (start of the session to the live edge), the playhead and
//! the live edge, drawn on a canvas; press, drag and release to seek.
//!
//! The bar's scale is the recorded range, so the live edge is always at the right end and the
//! bar "fills up" as the session grows; while the knob is dragged the screen keeps the scale
//! the drag began with, so a knob held still stays under the pointer. While the viewer drags, the knob follows the pointer
//! ([`Seek::Drag`]) and the engine shows the picture near it (playback holds: the engine
//! keeps only the newest position of those queued, and shows the keyframe before it first,
//! so a drag across an hour of recording never waits on whole groups of pictures); releasing
//! the button sends one seek ([`Seek::Release`]), which plays on from there.

use std::time::Duration;

use iced::mouse;
use iced::touch;
use iced::widget::canvas::{self, Action, Event, Frame, Geometry, Path, Stroke};
use iced::{Color, Point, Rectangle, Renderer, Size, Theme};

/// Space left at each end so the knob is not clipped at 0 and at the live edge.
pub const INSET: f32 = 8.0;
/// Height of the widget (the bar is thinner; the rest is room to grab).
pub const HEIGHT: f32 = 26.0;

const TRACK: Color = Color::from_rgb(0.22, 0.22, 0.24);
const RECORDED: Color = Color::from_rgb(0.45, 0.45, 0.48);
const PLAYED: Color = Color::from_rgb(0.20, 0.55, 0.95);
const LIVE: Color = Color::from_rgb(0.90, 0.15, 0.15);
const KNOB: Color = Color::WHITE;

/// What the timeline tells the screen that shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seek {
    /// The knob is being dragged here.
    Drag(Duration),
    /// The knob was let go.
    Release,
}

/// What the timeline shows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timeline {
    pub position: Duration,
    pub recorded_end: Duration,
    pub at_live: bool,
    /// Where the viewer is dragging the knob, if they are.
    pub dragging: Option<Duration>,
}

/// Per-widget interaction state (kept by iced across frames).
#[derive(Debug, Default)]
pub struct Interaction {
    pressed: bool,
}

/// Time under horizontal offset `x` (from the widget's left edge) on a timeline `width` wide
/// showing `0..=end`. Clamped to the recorded range.
pub fn time_at(x: f32, width: f32, end: Duration) -> Duration {
    let usable = (width - 2.0 * INSET).max(1.0);
    let frac = ((x - INSET) / usable).clamp(0.0, 1.0);
    end.mul_f64(frac as f64)
}

/// Horizontal offset of time `t` on a timeline `width` wide showing `0..=end`.
pub fn x_of(t: Duration, width: f32, end: Duration) -> f32 {
    let usable = (width - 2.0 * INSET).max(1.0);
    let frac = if end.is_zero() {
        0.0
    } else {
        (t.as_secs_f64() / end.as_secs_f64()).clamp(0.0, 1.0)
    };
    INSET + usable * frac as f32
}

impl Timeline {
    fn drag_to(&self, x: f32, bounds: Rectangle) -> Option<Action<Seek>> {
        if self.recorded_end.is_zero() {
            return Some(Action::capture());
        }
        let t = time_at(x - bounds.x, bounds.width, self.recorded_end);
        Some(Action::publish(Seek::Drag(t)).and_capture())
    }

    fn press(&self, state: &mut Interaction, at: Point, bounds: Rectangle) -> Option<Action<Seek>> {
        if !bounds.contains(at) {
            return None;
        }
        state.pressed = true;
        self.drag_to(at.x, bounds)
    }

    fn release(&self, state: &mut Interaction) -> Option<Action<Seek>> {
        if !state.pressed {
            return None;
        }
        state.pressed = false;
        Some(Action::publish(Seek::Release).and_capture())
    }
}

impl canvas::Program<Seek> for Timeline {
    type State = Interaction;

    fn update(
        &self,
        state: &mut Interaction,
        event: &Event,
        bounds: Rectangle,
        cursor: mouse::Cursor,
    ) -> Option<Action<Seek>> {
        match event {
            Event::Mouse(mouse::Event::ButtonPressed(mouse::Button::Left)) => {
                let at = cursor.position()?;
                self.press(state, at, bounds)
            }
            Event::Mouse(mouse::Event::CursorMoved { position }) if state.pressed => {
                self.drag_to(position.x, bounds)
            }
            // Redraw the hover hint.
            Event::Mouse(mouse::Event::CursorMoved { .. }) if cursor.is_over(bounds) => {
                Some(Action::request_redraw())
            }
            Event::Mouse(mouse::Event::ButtonReleased(mouse::Button::Left)) => self.release(state),
            // The window lost the focus mid-drag (another window took the pointer): its
            // release will not come here, so the drag ends now.
            Event::Window(iced::window::Event::Unfocused) => self.release(state),
            Event::Touch(touch::Event::FingerPressed { position, .. }) => {
                self.press(state, *position, bounds)
            }
            Event::Touch(touch::Event::FingerMoved { position, .. }) if state.pressed => {
                self.drag_to(position.x, bounds)
            }
            Event::Touch(touch::Event::FingerLifted { .. } | touch::Event::FingerLost { .. }) => {
                self.release(state)
            }
            _ => None,
        }
    }

    fn draw(
        &self,
        _state: &Interaction,
        renderer: &Renderer,
        _theme: &Theme,
        bounds: Rectangle,
        cursor: mouse::Cursor,
    ) -> Vec<Geometry> {
        let mut frame = Frame::new(renderer, bounds.size());
        let w = bounds.width;
        let mid = bounds.height / 2.0;
        let bar = 6.0;
        let end = self.recorded_end;

        // The whole track, then the recorded range over it.
        let track = Path::rounded_rectangle(
            Point::new(INSET, mid - bar / 2.0),
            Size::new((w - 2.0 * INSET).max(0.0), bar),
            (bar / 2.0).into(),
        );
        frame.fill(&track, TRACK);
        if end.is_zero() {
            return vec![frame.into_geometry()];
        }
        let live_x = x_of(end, w, end);
        let recorded = Path::rounded_rectangle(
            Point::new(INSET, mid - bar / 2.0),
            Size::new(live_x - INSET, bar),
            (bar / 2.0).into(),
        );
        frame.fill(&recorded, RECORDED);

        // Played part, up to the playhead (or where the viewer drags it).
        let head = self.dragging.unwrap_or(self.position).min(end);
        let head_x = x_of(head, w, end);
        if head_x > INSET {
            let played = Path::rounded_rectangle(
                Point::new(INSET, mid - bar / 2.0),
                Size::new(head_x - INSET, bar),
                (bar / 2.0).into(),
            );
            frame.fill(&played, PLAYED);
        }

        // Hover hint: a thin line where a click would seek.
        if let Some(p) = cursor.position_in(bounds) {
            if self.dragging.is_none() {
                let x = p.x.clamp(INSET, live_x);
                frame.stroke(
                    &Path::line(Point::new(x, mid - 7.0), Point::new(x, mid + 7.0)),
                    Stroke::default()
                        .with_color(Color::from_rgba(1.0, 1.0, 1.0, 0.5))
                        .with_width(1.0),
                );
            }
        }

        // The live edge: a red tick across the bar, a red dot when we are there.
        frame.fill_rectangle(
            Point::new(live_x - 1.5, mid - 9.0),
            Size::new(3.0, 18.0),
            LIVE,
        );

        // The playhead knob.
        let r = if self.dragging.is_some() { 7.0 } else { 6.0 };
        frame.fill(&Path::circle(Point::new(head_x, mid), r), KNOB);
        if self.at_live && self.dragging.is_none() {
            frame.fill(&Path::circle(Point::new(head_x, mid), 3.0), LIVE);
        }

        vec![frame.into_geometry()]
    }

    fn mouse_interaction(
        &self,
        state: &Interaction,
        bounds: Rectangle,
        cursor: mouse::Cursor,
    ) -> mouse::Interaction {
        if state.pressed {
            mouse::Interaction::Grabbing
        } else if cursor.is_over(bounds) && !self.recorded_end.is_zero() {
            mouse::Interaction::Pointer
        } else {
            mouse::Interaction::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced::widget::canvas::Program;

    const END: Duration = Duration::from_secs(100);

    #[test]
    fn positions_map_to_times_and_back() {
        let w = 216.0; // usable 200 px
        assert_eq!(time_at(INSET, w, END), Duration::ZERO);
        assert_eq!(time_at(INSET + 100.0, w, END), Duration::from_secs(50));
        assert_eq!(time_at(w - INSET, w, END), END);
        // Outside the bar: clamped to the recorded range.
        assert_eq!(time_at(-50.0, w, END), Duration::ZERO);
        assert_eq!(time_at(w + 50.0, w, END), END);
        assert_eq!(x_of(Duration::from_secs(25), w, END), INSET + 50.0);
        assert_eq!(x_of(Duration::from_secs(500), w, END), w - INSET);
        assert_eq!(x_of(Duration::from_secs(5), w, Duration::ZERO), INSET);
    }

    /// A timeline at the start of a recording that ends at `END`.
    fn timeline(at_live: bool) -> Timeline {
        Timeline {
            position: Duration::ZERO,
            recorded_end: END,
            at_live,
            dragging: None,
        }
    }

    fn published(a: Option<Action<Seek>>) -> Option<Seek> {
        a.and_then(|a| a.into_inner().0)
    }

    #[test]
    fn press_drag_release_publishes_drag_then_release() {
        let t = timeline(false);
        let bounds = Rectangle::new(Point::new(100.0, 500.0), Size::new(216.0, HEIGHT));
        let mut st = Interaction::default();
        let inside = mouse::Cursor::Available(Point::new(100.0 + INSET + 50.0, 510.0));

        // Moving without a press does nothing.
        let moved = Event::Mouse(mouse::Event::CursorMoved {
            position: Point::new(150.0, 510.0),
        });
        assert!(published(t.update(&mut st, &moved, bounds, inside)).is_none());

        let press = Event::Mouse(mouse::Event::ButtonPressed(mouse::Button::Left));
        assert!(matches!(
            published(t.update(&mut st, &press, bounds, inside)),
            Some(Seek::Drag(d)) if d == Duration::from_secs(25)
        ));
        // Dragging beyond the right end clamps to the live edge, even off the widget.
        let far = Event::Mouse(mouse::Event::CursorMoved {
            position: Point::new(900.0, 50.0),
        });
        assert!(matches!(
            published(t.update(&mut st, &far, bounds, inside)),
            Some(Seek::Drag(d)) if d == END
        ));
        let release = Event::Mouse(mouse::Event::ButtonReleased(mouse::Button::Left));
        assert!(matches!(
            published(t.update(&mut st, &release, bounds, inside)),
            Some(Seek::Release)
        ));
        // A second release (e.g. of a click elsewhere) is not ours.
        assert!(published(t.update(&mut st, &release, bounds, inside)).is_none());

        // The window loses the focus mid-drag: the drag ends there (its release is lost).
        let unfocused = Event::Window(iced::window::Event::Unfocused);
        assert!(published(t.update(&mut st, &unfocused, bounds, inside)).is_none());
        t.update(&mut st, &press, bounds, inside);
        assert!(matches!(
            published(t.update(&mut st, &unfocused, bounds, inside)),
            Some(Seek::Release)
        ));
        assert!(published(t.update(&mut st, &far, bounds, inside)).is_none());
    }

    #[test]
    fn press_outside_is_ignored() {
        let t = timeline(true);
        let bounds = Rectangle::new(Point::new(0.0, 0.0), Size::new(216.0, HEIGHT));
        let mut st = Interaction::default();
        let outside = mouse::Cursor::Available(Point::new(50.0, 300.0));
        let press = Event::Mouse(mouse::Event::ButtonPressed(mouse::Button::Left));
        assert!(t.update(&mut st, &press, bounds, outside).is_none());
        let release = Event::Mouse(mouse::Event::ButtonReleased(mouse::Button::Left));
        assert!(t.update(&mut st, &release, bounds, outside).is_none());
    }
}
