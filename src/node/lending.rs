//! Which of a node's connections may carry a write partypool cannot see: connections handed
//! to the application (`begin()`'s transactions, `acquire()`) stay "held" until they come
//! back to the pool.
//!
//! The pool tells when a connection comes back (its `after_release` hook), not which one.
//! Both kinds are counted: `lent` (partypool's own statements, from checkout until back) and
//! `held`. A return takes one from `lent` while any is out, else one from `held`. Taking
//! from the wrong count only delays `held` reaching zero (a held connection that comes back
//! while partypool's own are out leaves `held` up until one of those returns), never makes it
//! reach zero early: while `lent` is zero, every connection out is a held one. So
//! `held == 0` proves no handed-out connection is open; a positive count may be stale, which
//! costs a position query, never a wrong read.

use std::sync::atomic::{AtomicU64, Ordering};

/// The counts of one node's pool, shared with its `after_release` hook.
#[derive(Debug, Default)]
pub(crate) struct Lending {
    lent: AtomicU64,
    held: AtomicU64,
}

fn take_one(count: &AtomicU64) -> bool {
    count
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl Lending {
    /// One of partypool's own statements checked a connection out.
    pub(crate) fn lend(&self) {
        self.lent.fetch_add(1, Ordering::SeqCst);
    }

    /// A connection was handed to the application.
    pub(crate) fn hold(&self) {
        self.held.fetch_add(1, Ordering::SeqCst);
    }

    /// A connection came back to the pool.
    pub(crate) fn returned(&self) {
        if !take_one(&self.lent) {
            take_one(&self.held);
        }
    }

    /// Whether a connection handed to the application may still be out.
    pub(crate) fn any_held(&self) -> bool {
        self.held.load(Ordering::SeqCst) > 0
    }

    /// Connections closed without coming back (too old, broken, abandoned) leave counts up
    /// forever; when the pool has none out at all, both are zero. Compare-and-swap from the
    /// values read before looking at the pool, so a checkout counted meanwhile is not lost.
    pub(crate) fn reset_if(&self, nothing_out: impl FnOnce() -> bool) {
        let (lent, held) = (
            self.lent.load(Ordering::SeqCst),
            self.held.load(Ordering::SeqCst),
        );
        if (lent > 0 || held > 0) && nothing_out() {
            let _ = self
                .held
                .compare_exchange(held, 0, Ordering::SeqCst, Ordering::SeqCst);
            let _ = self
                .lent
                .compare_exchange(lent, 0, Ordering::SeqCst, Ordering::SeqCst);
        }
    }
}

/// How many of `pool`'s connections are checked out (or being opened or returned): its size
/// less its idle ones, read until the size holds still around the idle count. A connection
/// counts in the size from before it is handed out until after it is back among the idle
/// ones, so this is never less than the true number unless, between the reads (a few
/// instructions), a connection is opened, used, returned and closed again: retrying while the
/// size moves makes that need a preemption at exactly that point and a reaper in it.
pub(crate) fn checked_out<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> usize {
    loop {
        let size = pool.size() as usize;
        let idle = pool.num_idle();
        if pool.size() as usize == size {
            return size.saturating_sub(idle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_reaches_zero_only_when_every_held_connection_is_back() {
        let l = Lending::default();
        l.lend(); // a statement's connection
        l.hold(); // a transaction's
        l.returned(); // the transaction's comes back first: counted against `lent`
        assert!(l.any_held(), "stale, never early");
        l.returned(); // the statement's
        assert!(!l.any_held());
        l.hold();
        l.returned();
        assert!(!l.any_held());
    }

    #[test]
    fn counts_left_by_closed_connections_are_reset_when_nothing_is_out() {
        let l = Lending::default();
        l.hold(); // closed without coming back
        l.reset_if(|| false);
        assert!(l.any_held());
        l.reset_if(|| true);
        assert!(!l.any_held());
    }
}
