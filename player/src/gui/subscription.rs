//! The engine's updates as a stream: no widgets, no GUI state.
//!
//! The engine publishes its newest picture and its newest [`Status`] on two `watch` channels.
//! [`updates`] turns them into one stream of [`EngineEvent`]s; being `watch` channels, a slow
//! reader never sees a backlog: each event carries the newest value at the time it is read, and
//! frames the GUI had no time to show are simply skipped. [`engine_updates`] wraps the stream as
//! an iced [`Subscription`], identified by the engine it watches so that it keeps running across
//! `view`/`subscription` rebuilds and is dropped when the engine goes away.

use std::hash::{Hash, Hasher};

use iced::futures::stream::{self, Stream};
use iced::Subscription;
use tokio::sync::watch;

use crate::engine::{EngineHandle, Status, VideoFrame};

/// One thing the engine told us.
#[derive(Clone, Debug)]
pub enum EngineEvent {
    /// The newest decoded picture.
    Frame(VideoFrame),
    /// The newest status.
    Status(Box<Status>),
    /// The engine stopped publishing (it has shut down).
    Gone,
}

/// The engine's two watch channels, and an identity for the subscription that reads them.
#[derive(Clone, Debug)]
pub struct EngineWatch {
    id: u64,
    frames: watch::Receiver<Option<VideoFrame>>,
    status: watch::Receiver<Status>,
}

impl EngineWatch {
    /// Watches `engine`; `id` must change when the engine does (a restarted engine gets a new
    /// subscription).
    pub fn new(id: u64, engine: &EngineHandle) -> Self {
        Self {
            id,
            frames: engine.frames.clone(),
            status: engine.status.clone(),
        }
    }
}

impl EngineWatch {
    /// Watches these channels (a test's fake engine).
    pub fn from_parts(
        id: u64,
        frames: watch::Receiver<Option<VideoFrame>>,
        status: watch::Receiver<Status>,
    ) -> Self {
        Self { id, frames, status }
    }

    /// The newest status now.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// The updates, as [`updates`] gives them.
    pub fn stream(&self) -> impl Stream<Item = EngineEvent> + Send + 'static {
        updates(self.frames.clone(), self.status.clone())
    }

    /// The newest picture now.
    pub fn frame(&self) -> Option<VideoFrame> {
        self.frames.borrow().clone()
    }
}

impl Hash for EngineWatch {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

/// The engine's updates as an iced subscription.
pub fn engine_updates(watch: EngineWatch) -> Subscription<EngineEvent> {
    Subscription::run_with(watch, EngineWatch::stream)
}

struct Watching {
    frames: watch::Receiver<Option<VideoFrame>>,
    status: watch::Receiver<Status>,
    /// The current values have been yielded once.
    primed: bool,
    /// The first frame is still to be yielded after the first status.
    prime_frame: bool,
    done: bool,
}

/// The newest status and frame first (so a window opened late shows the picture at once), then
/// every change, then [`EngineEvent::Gone`] when the engine drops its status channel.
pub fn updates(
    frames: watch::Receiver<Option<VideoFrame>>,
    status: watch::Receiver<Status>,
) -> impl Stream<Item = EngineEvent> + Send + 'static {
    let state = Watching {
        frames,
        status,
        primed: false,
        prime_frame: true,
        done: false,
    };
    stream::unfold(state, |mut w| async move {
        if w.done {
            return None;
        }
        if !w.primed {
            w.primed = true;
            let s = w.status.borrow_and_update().clone();
            return Some((EngineEvent::Status(Box::new(s)), w));
        }
        if w.prime_frame {
            w.prime_frame = false;
            let f = w.frames.borrow_and_update().clone();
            if let Some(f) = f {
                return Some((EngineEvent::Frame(f), w));
            }
        }
        loop {
            tokio::select! {
                // Status first: it is rare and small, and tells about connection trouble.
                biased;
                r = w.status.changed() => {
                    if r.is_err() {
                        w.done = true;
                        return Some((EngineEvent::Gone, w));
                    }
                    let s = w.status.borrow_and_update().clone();
                    return Some((EngineEvent::Status(Box::new(s)), w));
                }
                r = w.frames.changed() => {
                    if r.is_err() {
                        w.done = true;
                        return Some((EngineEvent::Gone, w));
                    }
                    let f = w.frames.borrow_and_update().clone();
                    if let Some(f) = f {
                        return Some((EngineEvent::Frame(f), w));
                    }
                    // `None` (no picture yet, or cleared): nothing to show; keep waiting.
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced::futures::StreamExt;
    use std::sync::Arc;
    use std::time::Duration;

    fn frame(n: u8) -> VideoFrame {
        VideoFrame {
            width: 2,
            height: 1,
            rgba: Arc::new(vec![n; 8]),
            position: Duration::from_millis(n as u64),
        }
    }

    #[tokio::test]
    async fn yields_current_values_then_changes_then_gone() {
        let (ftx, frx) = watch::channel(Some(frame(1)));
        let (stx, srx) = watch::channel(Status::default());
        let mut s = Box::pin(updates(frx, srx));

        assert!(matches!(s.next().await, Some(EngineEvent::Status(_))));
        match s.next().await {
            Some(EngineEvent::Frame(f)) => assert_eq!(f.rgba[0], 1),
            other => panic!("expected the first frame, got {other:?}"),
        }

        stx.send_modify(|st| st.playing = true);
        match s.next().await {
            Some(EngineEvent::Status(st)) => assert!(st.playing),
            other => panic!("expected status, got {other:?}"),
        }

        // Only the newest frame survives a burst.
        ftx.send(Some(frame(2))).unwrap();
        ftx.send(Some(frame(3))).unwrap();
        match s.next().await {
            Some(EngineEvent::Frame(f)) => assert_eq!(f.rgba[0], 3),
            other => panic!("expected frame 3, got {other:?}"),
        }

        drop(stx);
        assert!(matches!(s.next().await, Some(EngineEvent::Gone)));
        assert!(s.next().await.is_none());
    }

    #[tokio::test]
    async fn no_frame_yet_is_not_an_event() {
        let (ftx, frx) = watch::channel(None);
        let (_stx, srx) = watch::channel(Status::default());
        let mut s = Box::pin(updates(frx, srx));
        assert!(matches!(s.next().await, Some(EngineEvent::Status(_))));
        ftx.send(None).unwrap();
        ftx.send(Some(frame(7))).unwrap();
        match s.next().await {
            Some(EngineEvent::Frame(f)) => assert_eq!(f.rgba[0], 7),
            other => panic!("expected frame 7, got {other:?}"),
        }
    }
}
