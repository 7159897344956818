//! Encoders: raw [`VideoFrame`](crate::source::VideoFrame)s to H.264 (OpenH264) and
//! [`AudioFrame`](crate::source::AudioFrame)s to Opus (libopus).
//!
//! Both are synchronous and single-threaded: the caller runs each on its own thread, fed by
//! the source's bounded channel. See `docs/benchmarks.md` for H.264 encode speed.

pub mod h264;
pub mod opus;
pub mod scale;

pub use self::h264::{parameter_sets, EncodedVideo, H264Config, H264Encoder};
pub use self::opus::OpusEncoder;
