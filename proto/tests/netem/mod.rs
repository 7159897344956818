//! A seeded network emulator for tests in virtual time: delay, jitter, loss and reordering for
//! datagrams; delay and in-order delivery for a byte stream; partitions and connection drops.
//!
//! Nothing here reads a clock or sleeps: the test owns `now`, sends items at `now`, asks for the
//! items due at a later `now`, and [`Link::next_due`] says when the next one lands. The same
//! seed gives the same run, so a failure reproduces exactly.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// What one direction of a path does to what crosses it.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// One-way delay every item has.
    pub delay: Duration,
    /// Datagrams get up to this much more, uniformly: they reorder when it exceeds their spacing.
    pub jitter: Duration,
    /// Probability that a datagram is lost (a stream never loses bytes; it breaks instead).
    pub loss: f64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            delay: Duration::from_millis(20),
            jitter: Duration::ZERO,
            loss: 0.0,
        }
    }
}

/// One direction of a path carrying items of type `T` (requests, responses, packets).
pub struct Link<T> {
    pub cfg: LinkConfig,
    rng: SmallRng,
    /// (due, order of sending, index into `items`).
    heap: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    items: Vec<Option<(T, bool)>>,
    sent: u64,
    /// A stream delivers in order: nothing lands before what was sent earlier.
    stream_tail: Option<Instant>,
    /// Everything sent while partitioned is lost (both kinds).
    partitioned: bool,
    pub datagrams_lost: u64,
}

impl<T> Link<T> {
    pub fn new(cfg: LinkConfig, seed: u64) -> Self {
        Self {
            cfg,
            rng: SmallRng::seed_from_u64(seed),
            heap: BinaryHeap::new(),
            items: Vec::new(),
            sent: 0,
            stream_tail: None,
            partitioned: false,
            datagrams_lost: 0,
        }
    }

    /// Sends `item` on the stream (in order, never lost unless partitioned).
    pub fn send_stream(&mut self, now: Instant, item: T) {
        if self.partitioned {
            return;
        }
        let due = (now + self.cfg.delay).max(self.stream_tail.unwrap_or(now));
        self.stream_tail = Some(due);
        self.push(due, item, true);
    }

    /// Sends `item` as a datagram: maybe lost, maybe reordered.
    pub fn send_datagram(&mut self, now: Instant, item: T) {
        if self.partitioned || self.rng.random_bool(self.cfg.loss.clamp(0.0, 1.0)) {
            self.datagrams_lost += 1;
            return;
        }
        let jitter = if self.cfg.jitter.is_zero() {
            Duration::ZERO
        } else {
            self.cfg.jitter.mul_f64(self.rng.random::<f64>())
        };
        self.push(now + self.cfg.delay + jitter, item, false);
    }

    fn push(&mut self, due: Instant, item: T, stream: bool) {
        self.items.push(Some((item, stream)));
        self.heap
            .push(Reverse((due, self.sent, self.items.len() - 1)));
        self.sent += 1;
    }

    /// When the next item lands, if any is in flight.
    pub fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((due, _, _))| *due)
    }

    /// The next item that has landed by `now`, in order of arrival.
    pub fn poll(&mut self, now: Instant) -> Option<T> {
        loop {
            let Reverse((due, _, i)) = *self.heap.peek()?;
            if due > now {
                return None;
            }
            self.heap.pop();
            if let Some((item, _)) = self.items[i].take() {
                return Some(item);
            }
        }
    }

    /// The stream breaks: what is in flight on it never arrives. Datagrams are not affected.
    pub fn break_stream(&mut self) {
        for slot in &mut self.items {
            if matches!(slot, Some((_, true))) {
                *slot = None;
            }
        }
        self.stream_tail = None;
    }

    /// From now on (until [`Link::heal`]) everything sent is lost.
    pub fn partition(&mut self) {
        self.partitioned = true;
    }

    pub fn heal(&mut self) {
        self.partitioned = false;
    }
}
