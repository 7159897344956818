//! # livecast-player
//!
//! Plays RTSP streams (Livecast's or any standard server's), records the whole live session as
//! it arrives, and lets the viewer pause, seek, rewind, fast-forward and go back to live.
//!
//! - [`aec`]: acoustic echo cancellation for call mode (WebRTC AEC3, pure Rust).
//! - [`call`]: call mode, our server and the peer's player in one process.
//! - [`engine`]: headless receive/record/decode/clock; tested without a window.
//! - [`gui`]: the iced app, a thin view over the engine.

pub mod aec;
pub mod call;
pub mod engine;
pub mod gui;
