//! The channel side of a writer thread's run loop, written once for the
//! `Cache`'s flusher and the kv writer: taking what is queued without
//! waiting ([`Intake`]), waiting for the first message of a batch
//! ([`wait_first`]), and the guard that marks the thread dead however it
//! ends ([`AliveGuard`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

use super::Shared;
use crate::config::IDLE_PARK_AFTER;

/// How long a parked writer thread sleeps at most before it looks again
/// (for a stop request, or idle work coming due).
const PARK: Duration = Duration::from_millis(200);

/// A writer thread's end of its channel.
pub(crate) trait Intake {
    /// What crosses the channel.
    type Msg;

    /// The channel the callers push into.
    fn channel(&self) -> &Receiver<Self::Msg>;

    /// Takes one message in.
    fn receive(&mut self, msg: Self::Msg);

    /// Every sender is gone (no handle is left): the thread winds down.
    fn senders_gone(&mut self);

    /// Takes queued messages in, without waiting, while `more` (given the
    /// thread and how many were taken so far) holds and the channel has any.
    fn take_queued(&mut self, more: impl Fn(&Self, usize) -> bool) {
        let mut taken = 0;
        while more(self, taken) {
            match self.channel().try_recv() {
                Ok(m) => self.receive(m),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.senders_gone();
                    break;
                }
            }
            taken += 1;
        }
    }

    /// While shutting down with nothing left to write: takes one more
    /// message if one is queued (`false`: none, the thread may end).
    fn take_next(&mut self) -> bool {
        match self.channel().try_recv() {
            Ok(m) => {
                self.receive(m);
                true
            }
            Err(_) => false,
        }
    }
}

/// What ended an idle wait ([`wait_first`]).
pub(crate) enum Wake<M> {
    Msg(M),
    /// The idle work given as `due` is due.
    Tick,
    /// The thread was asked to stop (`stop` held).
    Stop,
    /// Every sender is gone.
    Closed,
}

/// Waits for the first message of a batch on `rx`: polls every `poll`, so
/// that a caller's push does not have to wake a parked thread, and parks
/// after [`IDLE_PARK_AFTER`] without a message; [`Wake::Tick`] once `due`
/// (the next idle work) has come, [`Wake::Stop`] as soon as `stop` holds
/// (looked at least every 200 ms while parked).
pub(crate) fn wait_first<M>(
    rx: &Receiver<M>,
    poll: Duration,
    due: Option<Instant>,
    stop: impl Fn() -> bool,
) -> Wake<M> {
    let idle_since = Instant::now();
    loop {
        match rx.try_recv() {
            Ok(m) => return Wake::Msg(m),
            Err(TryRecvError::Disconnected) => return Wake::Closed,
            Err(TryRecvError::Empty) => {}
        }
        if stop() {
            return Wake::Stop;
        }
        let now = Instant::now();
        if due.is_some_and(|d| now >= d) {
            return Wake::Tick;
        }
        if now.duration_since(idle_since) < IDLE_PARK_AFTER {
            std::thread::sleep(poll);
        } else {
            let park = due.map_or(PARK, |d| PARK.min(d.saturating_duration_since(now)));
            match rx.recv_timeout(park) {
                Ok(m) => return Wake::Msg(m),
                Err(RecvTimeoutError::Disconnected) => return Wake::Closed,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }
}

/// Marks the writer thread dead (and disconnected) and wakes every
/// `wait`/`flush`, however the thread ends, a panic included.
pub(crate) struct AliveGuard(pub(crate) Arc<Shared>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.set_alive(false);
        self.0.set_connected(false);
        self.0.wake_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sink {
        rx: Receiver<u32>,
        got: Vec<u32>,
        gone: bool,
    }

    impl Intake for Sink {
        type Msg = u32;
        fn channel(&self) -> &Receiver<u32> {
            &self.rx
        }
        fn receive(&mut self, msg: u32) {
            self.got.push(msg);
        }
        fn senders_gone(&mut self) {
            self.gone = true;
        }
    }

    #[test]
    fn take_queued_stops_at_the_bound_the_empty_channel_or_the_last_sender() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut s = Sink { rx, got: Vec::new(), gone: false };
        (1..=5).for_each(|i| tx.send(i).unwrap());
        s.take_queued(|_, n| n < 3);
        assert_eq!(s.got, [1, 2, 3]);
        s.take_queued(|s, _| s.got.len() < 10);
        assert_eq!(s.got, [1, 2, 3, 4, 5]);
        assert!(!s.gone);
        tx.send(6).unwrap();
        drop(tx);
        assert!(s.take_next());
        assert!(!s.take_next());
        s.take_queued(|_, _| true);
        assert!(s.gone);
        assert_eq!(s.got, [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn wait_first_returns_a_message_a_stop_a_tick_or_the_end() {
        let idle = Duration::from_millis(1);
        let (tx, rx) = crossbeam_channel::unbounded();
        tx.send(7).unwrap();
        assert!(matches!(wait_first(&rx, idle, None, || false), Wake::Msg(7)));
        assert!(matches!(wait_first(&rx, idle, None, || true), Wake::Stop));
        let past = Instant::now();
        assert!(matches!(wait_first(&rx, idle, Some(past), || false), Wake::Tick));
        drop(tx);
        assert!(matches!(wait_first(&rx, idle, None, || false), Wake::Closed));
    }
}
