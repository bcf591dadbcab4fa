//! The circuit breaker in front of the calling threads' Redis calls: after
//! `breaker_failures` consecutive failures it opens for `breaker_open` (calls
//! skip Redis: no connect, no timeout on the calling thread); then one call
//! is let through as a probe, whose success closes it and failure reopens
//! it. One atomic word holds the state: a closed breaker costs one load.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// The state of a [`crate::kv::Kv`]'s circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go to Redis.
    Closed,
    /// Calls are answered without Redis until the time given has passed.
    Open {
        /// How long until a probe is let through.
        retry_in: Duration,
    },
    /// One probe call is on its way to Redis; the others are answered
    /// without it.
    HalfOpen,
}

const CLOSED: u64 = 0;
const HALF_OPEN: u64 = 1;
// Any other value: open until `origin + (value - 2)` nanoseconds.
const OPEN_BASE: u64 = 2;

pub(crate) struct Breaker {
    origin: Instant,
    state: AtomicU64,
    failures: AtomicU32,
    threshold: u32,
    open_for: Duration,
    /// How many times it opened.
    pub(crate) opened: AtomicU64,
    /// Calls answered without Redis because it was open.
    pub(crate) short_circuited: AtomicU64,
}

/// May the call go to Redis?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permit {
    Go,
    /// Go, as the half-open probe: its outcome decides.
    Probe,
    Deny,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, open_for: Duration) -> Self {
        Breaker {
            origin: Instant::now(),
            state: AtomicU64::new(CLOSED),
            failures: AtomicU32::new(0),
            threshold: threshold.max(1),
            open_for,
            opened: AtomicU64::new(0),
            short_circuited: AtomicU64::new(0),
        }
    }

    fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos().min(u128::from(u64::MAX - OPEN_BASE - 1)) as u64
    }

    pub(crate) fn permit(&self) -> Permit {
        match self.state.load(Relaxed) {
            CLOSED => Permit::Go,
            HALF_OPEN => self.deny(),
            until => {
                // Once the open period is over, the first caller here probes.
                let over = self.now_ns() >= until - OPEN_BASE;
                if over && self.state.compare_exchange(until, HALF_OPEN, SeqCst, Relaxed).is_ok() {
                    return Permit::Probe;
                }
                self.deny()
            }
        }
    }

    fn deny(&self) -> Permit {
        self.short_circuited.fetch_add(1, Relaxed);
        Permit::Deny
    }

    pub(crate) fn success(&self, permit: Permit) {
        if self.failures.load(Relaxed) != 0 {
            self.failures.store(0, Relaxed);
        }
        if permit == Permit::Probe {
            self.state.store(CLOSED, SeqCst);
            log::info!("tradecache::kv: circuit breaker closed: Redis answers again");
        }
    }

    pub(crate) fn failure(&self, permit: Permit) {
        let n = self.failures.fetch_add(1, Relaxed) + 1;
        if permit == Permit::Probe || n >= self.threshold {
            let until =
                self.now_ns().saturating_add(self.open_for.as_nanos().min(u128::from(u64::MAX / 2)) as u64);
            let prev = self.state.swap(until.saturating_add(OPEN_BASE).max(OPEN_BASE), SeqCst);
            if prev == CLOSED || prev == HALF_OPEN {
                self.opened.fetch_add(1, Relaxed);
                log::warn!(
                    "tradecache::kv: circuit breaker open for {:?} after {n} consecutive failure(s)",
                    self.open_for
                );
            }
        }
    }

    /// A call that was permitted ended without reaching a verdict (a bad
    /// argument, say): a probe gives its turn back.
    pub(crate) fn release(&self, permit: Permit) {
        if permit == Permit::Probe {
            let _ = self.state.compare_exchange(HALF_OPEN, OPEN_BASE, SeqCst, Relaxed);
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        match self.state.load(Relaxed) {
            CLOSED => BreakerState::Closed,
            HALF_OPEN => BreakerState::HalfOpen,
            until => BreakerState::Open {
                retry_in: Duration::from_nanos((until - OPEN_BASE).saturating_sub(self.now_ns())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_half_opens_and_closes() {
        let b = Breaker::new(3, Duration::from_millis(30));
        for _ in 0..2 {
            assert_eq!(b.permit(), Permit::Go);
            b.failure(Permit::Go);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.success(Permit::Go);
        for _ in 0..3 {
            b.failure(Permit::Go);
        }
        assert!(matches!(b.state(), BreakerState::Open { .. }));
        assert_eq!(b.permit(), Permit::Deny);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.permit(), Permit::Probe);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.permit(), Permit::Deny, "one probe at a time");
        b.failure(Permit::Probe);
        assert!(matches!(b.state(), BreakerState::Open { .. }), "a failed probe reopens");
        std::thread::sleep(Duration::from_millis(40));
        let p = b.permit();
        assert_eq!(p, Permit::Probe);
        b.success(p);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.opened.load(Relaxed), 2);
        assert!(b.short_circuited.load(Relaxed) >= 2);
    }

    #[test]
    fn a_released_probe_lets_the_next_call_probe() {
        let b = Breaker::new(1, Duration::from_millis(1));
        b.failure(Permit::Go);
        std::thread::sleep(Duration::from_millis(5));
        let p = b.permit();
        assert_eq!(p, Permit::Probe);
        b.release(p);
        assert_eq!(b.permit(), Permit::Probe);
    }
}
