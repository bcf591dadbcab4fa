//! When the flusher writes or reconnects next after a failure: capped
//! exponential backoff with jitter (`net::Backoff`) and the time of the
//! next attempt. What a failure does is `commit.rs`'s.

use std::time::{Duration, Instant};

use crate::net::{self, Backoff};

/// The backoff between attempts, and when the next one may start.
pub(super) struct Retry {
    backoff: Backoff,
    /// When the next attempt may start (passed or not; `None`: now).
    at: Option<Instant>,
}

impl Retry {
    pub(super) fn new(min: Duration, max: Duration) -> Retry {
        Retry { backoff: Backoff::new(min, max), at: None }
    }

    /// The next attempt waits for the backoff's next delay.
    pub(super) fn schedule(&mut self) {
        self.at = Some(net::deadline_after(self.backoff.next_delay()));
    }

    /// A batch was acknowledged: the backoff starts from its minimum again.
    pub(super) fn reset(&mut self) {
        self.backoff.reset();
        self.at = None;
    }

    /// Reconnected: the next attempt may start now (the backoff keeps
    /// growing until a batch is acknowledged).
    pub(super) fn reconnected(&mut self) {
        self.at = None;
    }

    /// Whether an attempt waits for the backoff (its time passed or not).
    pub(super) fn is_scheduled(&self) -> bool {
        self.at.is_some()
    }

    /// A short sleep, until the next attempt or `shutdown` at the latest.
    pub(super) fn pause(&self, shutdown: Option<Instant>) {
        net::pause(self.at, shutdown);
    }

    /// Whether the next attempt is scheduled for later than now.
    pub(super) fn is_waiting(&self) -> bool {
        self.at.is_some_and(|t| Instant::now() < t)
    }
}
