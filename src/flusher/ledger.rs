//! What is true of the flusher's connection stream, kept by the `Link`
//! and nowhere else: the replies owed, whether the `WATCH` on the commit
//! marker guards the next transaction, and whether a `MULTI` is open.
//! Pure: every send and read of the link asks it first and tells it
//! after, and it refuses what would put the stream out of step.

/// The state of the `WATCH` on the commit marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Guard {
    /// Not known to be armed: none yet on this connection, or an `EXEC`,
    /// `DISCARD` or `UNWATCH` was sent since the last look at the marker.
    #[default]
    Off,
    /// Armed, and the last `GET` of the marker showed no newer writer:
    /// the next transaction is guarded.
    Armed,
    /// Armed, and other keys are watched too (a purge step's index):
    /// until the transaction they guard, or `UNWATCH`. A batch is never
    /// sent under it: it could be aborted by a change that is not a fence.
    Widened,
}

/// What the link may do next, and what it did (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Ledger {
    /// Replies asked for and not yet read.
    owed: usize,
    guard: Guard,
    /// A `WATCH` and `GET` of the marker were sent and nothing ended that
    /// `WATCH` since: reading the `GET` arms the guard.
    arming: bool,
    /// A `MULTI` was sent, and neither `EXEC` nor `DISCARD` since.
    multi_open: bool,
}

/// Why the link refused to send or read: a bug in its caller, never a
/// state of Redis.
pub(super) type Refusal = String;

impl Ledger {
    /// Whether the marker's `WATCH` guards the next transaction.
    pub(super) fn is_guarded(&self) -> bool {
        self.guard == Guard::Armed
    }

    /// A fresh round trip may start: nothing is owed (it would be read as
    /// its own), and a `MULTI` is open exactly when `multi` (a `DISCARD`).
    pub(super) fn fresh(&self, what: &str, multi: bool) -> Result<(), Refusal> {
        if self.owed == 0 && self.multi_open == multi {
            return Ok(());
        }
        let state = if self.multi_open { "inside a MULTI" } else { "outside a MULTI" };
        Err(format!("{what} {state}, with {} reply(ies) unread", self.owed))
    }

    /// A transaction may be queued: none is open (replies may be owed).
    pub(super) fn can_queue(&self) -> Result<(), Refusal> {
        if self.multi_open {
            return Err("a MULTI inside an open MULTI".into());
        }
        Ok(())
    }

    /// What applies a transaction may be sent: a body (`opens`: `MULTI`
    /// first) needs none open and an `EXEC`; an `EXEC` alone closes the
    /// one open; without either (only the replica `WAIT`) none may be
    /// open. An `EXEC` needs the marker's `WATCH` (`widened`: one that
    /// also watches other keys will do).
    pub(super) fn can_exec(&self, opens: bool, exec: bool, widened: bool) -> Result<(), Refusal> {
        if opens && !exec {
            return Err("a transaction without its EXEC".into());
        }
        if self.multi_open != (!opens && exec) {
            return Err(if self.multi_open {
                "a transaction inside an open MULTI".into()
            } else {
                "an EXEC without a MULTI".into()
            });
        }
        let guarded = self.guard == Guard::Armed || (widened && self.guard == Guard::Widened);
        if exec && !guarded {
            return Err("a transaction without the commit marker's WATCH".into());
        }
        Ok(())
    }

    /// A reply may be read: one is owed.
    pub(super) fn can_recv(&self) -> Result<(), Refusal> {
        if self.owed == 0 {
            return Err("a reply read that nothing asked for".into());
        }
        Ok(())
    }

    /// Commands that leave the `WATCH` and the `MULTI` as they are went out.
    pub(super) fn sent(&mut self, replies: usize) {
        self.owed += replies;
    }

    /// A transaction without its `EXEC` went out.
    pub(super) fn sent_queued(&mut self, replies: usize) {
        self.owed += replies;
        self.multi_open = true;
    }

    /// What applies a transaction went out, then `WATCH` and `GET` of it.
    pub(super) fn sent_exec(&mut self, replies: usize) {
        self.unwatching();
        self.owed += replies;
        self.multi_open = false;
        self.arming = true;
    }

    /// `WATCH` and `GET` of the marker went out (perhaps after `UNWATCH`).
    pub(super) fn sent_watch(&mut self, replies: usize) {
        self.unwatching();
        self.owed += replies;
        self.arming = true;
    }

    /// A `WATCH` of other keys went out: they guard the next transaction too.
    pub(super) fn sent_watch_also(&mut self, replies: usize) {
        if self.guard == Guard::Armed {
            self.guard = Guard::Widened;
        }
        self.owed += replies;
    }

    /// `DISCARD` went out.
    pub(super) fn sent_discard(&mut self) {
        self.unwatching();
        self.owed += 1;
        self.multi_open = false;
    }

    /// Something that ends every `WATCH` went out.
    fn unwatching(&mut self) {
        self.guard = Guard::Off;
        self.arming = false;
    }

    /// Whether other keys than the marker are watched.
    pub(super) fn is_widened(&self) -> bool {
        self.guard == Guard::Widened
    }

    /// A reply was read.
    pub(super) fn received(&mut self) {
        self.owed -= 1;
    }

    /// The `GET` of the marker sent with the last `WATCH` was read: when
    /// it showed no newer writer (`ok`), the guard is armed, unless
    /// something ended that `WATCH` since (a `MULTI` queued behind it is
    /// what it guards).
    pub(super) fn marker_read(&mut self, ok: bool) {
        if std::mem::take(&mut self.arming) && ok {
            self.guard = Guard::Armed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ledger after a batch's `EXEC` went out with the next batch
    /// queued behind it (3 replies each), and the held batch's replies
    /// (3 + `EXEC`) read.
    fn batch_applied_with_one_queued() -> Ledger {
        let mut l = Ledger::default();
        l.sent_watch(2);
        l.received();
        l.received();
        l.marker_read(true);
        assert!(l.is_guarded());
        l.can_exec(true, true, false).expect("guarded, nothing open");
        l.sent_exec(3 + 1 + 2);
        l.can_queue().expect("none open");
        l.sent_queued(3);
        for _ in 0..4 {
            l.can_recv().expect("owed");
            l.received();
        }
        l
    }

    #[test]
    fn a_forgotten_queued_batch_is_never_read_as_the_marker() {
        // The WATCH behind an applied EXEC refused; the batch
        // queued behind is promoted, but its QUEUED replies not read: a new
        // WATCH must not go out (its replies would be the QUEUEDs).
        let mut l = batch_applied_with_one_queued();
        l.received();
        l.received();
        l.marker_read(false);
        assert!(!l.is_guarded());
        let refused = l.fresh("a WATCH", false).expect_err("replies owed, MULTI open");
        assert!(refused.contains("3 reply(ies) unread") && refused.contains("inside a MULTI"), "{refused}");
        // Its head read, the MULTI is still open: only DISCARD may go.
        for _ in 0..3 {
            l.received();
        }
        l.fresh("a WATCH", false).expect_err("inside a MULTI");
        l.can_exec(false, true, false).expect_err("no WATCH guards it");
        l.fresh("a DISCARD", true).expect("DISCARD of the open MULTI");
        l.sent_discard();
        l.received();
        l.fresh("a WATCH", false).expect("in step again");
    }

    #[test]
    fn the_guard_arms_only_from_a_marker_read_nothing_ended_since() {
        let mut l = batch_applied_with_one_queued();
        l.received();
        l.received();
        l.marker_read(true);
        // The queued batch is guarded by the WATCH sent behind the EXEC.
        assert!(l.is_guarded());
        for _ in 0..3 {
            l.received();
        }
        l.can_exec(false, true, false).expect("EXEC of the queued batch");

        // A WATCH whose GET is read after a DISCARD went out arms nothing.
        let mut l = Ledger::default();
        l.sent_watch(2);
        l.sent_queued(1);
        l.sent_discard();
        for _ in 0..4 {
            l.received();
        }
        l.marker_read(true);
        assert!(!l.is_guarded());
        l.can_exec(true, true, false).expect_err("unguarded");
    }

    #[test]
    fn a_batch_never_goes_under_a_widened_watch() {
        let mut l = Ledger::default();
        l.sent_watch(2);
        l.received();
        l.received();
        l.marker_read(true);
        l.sent_watch_also(2);
        l.received();
        l.received();
        assert!(l.is_widened() && !l.is_guarded());
        l.can_exec(true, true, false).expect_err("a batch under the index's WATCH");
        l.can_exec(true, true, true).expect("a purge step");
    }

    #[test]
    fn the_multi_state_and_the_replies_owed_are_checked() {
        let mut l = Ledger::default();
        l.can_recv().expect_err("nothing owed");
        l.can_exec(false, true, false).expect_err("EXEC without MULTI");
        l.can_exec(true, false, false).expect_err("a body without EXEC");
        l.fresh("a DISCARD", true).expect_err("no MULTI open");
        l.sent_queued(2);
        l.can_queue().expect_err("MULTI inside MULTI");
        l.can_exec(false, false, false).expect_err("WAIT alone inside a MULTI");
    }
}
