//! What a failure does to the flusher, by its `net::Action`: fencing
//! (`enter_fenced`), dropping the connection and reconnecting with backoff
//! (`drop_conn`, `reconnect`, `pause`). The connection itself is the
//! `Link` (`link.rs`).

use crate::net::{self, Action, Failure};
use crate::writer::Count;

use super::Flusher;

impl Flusher {
    /// Counts the failure and does what its action says; the next attempt
    /// waits for the backoff.
    pub(super) fn fail(&mut self, f: Failure) {
        if f.action() == Action::Fence {
            self.enter_fenced(f);
            return;
        }
        log::warn!("tradecache: {} ({}): {}", f.addr, f.class().name(), f.text);
        self.shared.count_error(f.class(), f.text.clone());
        match f.action() {
            Action::Reconnect => self.drop_conn(),
            Action::Backpressure => self.set_backpressure(&f),
            Action::WaitRetry | Action::Drop | Action::Fence => {}
        }
        if !self.link.is_up() {
            // The link dropped a connection whose stream failed (`Link::lose`):
            // what was queued on it is gone too.
            self.drop_conn();
        }
        self.retry_at = Some(net::deadline_after(self.backoff.next_delay()));
    }

    /// Redis refuses writes for now (OOM, MISCONF, an auth change):
    /// `health()` shows why until a batch is acknowledged again.
    fn set_backpressure(&self, f: &Failure) {
        self.shared.set_backpressure(Some(format!("{}: {}", f.class().name(), f.text)));
    }

    /// Another writer claimed the marker: stop for good. Nothing held or
    /// pending is written; callers learn it from `wait`, `flush`, `close`,
    /// their next write, and `health()`.
    pub(super) fn enter_fenced(&mut self, f: Failure) {
        log::error!("tradecache: {}", f.text);
        self.shared.count_error(f.class(), f.text.clone());
        self.shared.set_fenced(String::from_utf8_lossy(&self.marker_key).into_owned(), f.text);
        self.held = None;
        self.next = None;
        self.pending.discard();
        if let Some(b) = self.barrier.take() {
            let _ = b.reply.try_send(Err(self.stopped_error()));
        }
        self.fenced = true;
        self.waiters.wake_all();
    }

    /// Drops the connection (remembering its client, to kill it once
    /// reconnected to the same server): whatever was queued on it is gone.
    pub(super) fn drop_conn(&mut self) {
        self.link.drop_conn();
        for b in self.held.iter_mut().chain(self.next.iter_mut()) {
            b.unqueued();
        }
        self.shared.set_connected(false);
    }

    pub(super) fn reconnect(&mut self) {
        let deadline = self.shutdown;
        match net::connect(&self.cfg, &String::from_utf8_lossy(&self.marker_key), deadline) {
            Ok(c) => {
                log::info!("tradecache: reconnected to {}", c.addr);
                self.link.install(c);
                // Nothing is queued on a new connection.
                for b in self.held.iter_mut().chain(self.next.iter_mut()) {
                    b.unqueued();
                }
                // A restarted server may have lost recent index entries.
                self.forget_index();
                self.shared.set_connected(true);
                self.shared.add(Count::Reconnects, 1);
                if let Some(b) = self.held.as_mut() {
                    // Only the replica WAIT was outstanding; after a
                    // failover the marker decides.
                    b.reconnected();
                }
                self.retry_at = None;
            }
            Err(f) => {
                self.shared.count_error(f.class(), f.text.clone());
                if f.action() == Action::Backpressure {
                    self.set_backpressure(&f);
                }
                log::debug!("tradecache: reconnect to {} failed: {}", f.addr, f.text);
                self.retry_at = Some(net::deadline_after(self.backoff.next_delay()));
            }
        }
    }

    /// The index sets may have changed under us (a reconnect: a restarted
    /// server; a `clear`): forget what is known to be indexed, and make
    /// batches already built, none of them queued on a connection, add back
    /// the entries they skipped.
    pub(super) fn forget_index(&mut self) {
        self.indexed.clear();
        self.generation += 1;
    }

    /// Sleeps a little while waiting to retry, bounded by the retry time and
    /// the shutdown deadline, so the channel keeps being drained.
    pub(super) fn pause(&mut self) {
        net::pause(self.retry_at, self.shutdown);
    }
}
