//! [`HighWater`]: process-wide read-your-writes for one cluster. Every pool of the cluster in
//! the process shares one, found through [`HighWater::shared`].
//!
//! Writes pay nothing but an atomic increment: a statement, transaction or connection that
//! may write counts itself (`writes`) once it holds its connection on the primary. A read
//! compares that count with the one the last fetch of the primary's position started from;
//! when no write began since, and none was still out when the fetch started, the fetched
//! position covers every write acknowledged before the read, and the read costs nothing more
//! (MaxScale's `causal_reads = fast_global`, with the "is it stale?" test made exact). Else the
//! read needs a position fetched after it started: concurrent readers share one fetch
//! ([`HighWater::serial`] and [`HighWater::fetched_after`]), so the primary answers at most one
//! position query at a time, whatever the number of readers.
//!
//! Why "still out when the fetch started" matters: a transaction that began before the fetch
//! and commits after it is not covered by the fetched position, and partypool cannot see a
//! plain `sqlx::Transaction` commit (it runs on the driver's connection). It can see that the
//! connection was checked out (the pool's size minus its idle connections), which is enough:
//! such a fetch serves only the readers that were already waiting for it.
//!
//! The floor makes reads monotonic: no read goes to a replica below a position an earlier
//! read in the process required or was served at.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::session_state::merge;
use crate::positions::At;
use crate::sync::lock;

/// The identity of a cluster in the process: PostgreSQL's system identifier, or (MariaDB,
/// which has none that all members share) the address of the primary the pool was built on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ClusterKey {
    System(u64),
    Address(String),
}

/// What one fetch of the primary's position found.
#[derive(Debug, Clone, Copy, Default)]
struct Fetched {
    /// The fetch's serial (0: none yet).
    serial: u64,
    /// The write count when it started.
    writes: u64,
    /// No connection was checked out on the primary when it started: it also covers readers
    /// that start after it, until the next write.
    clean: bool,
    /// The fetch found a position (else `at` is the last one known, which covers nothing
    /// newer).
    ok: bool,
    at: Option<At>,
}

/// The shared read-your-writes state of one cluster in the process.
#[derive(Debug, Default)]
pub(crate) struct HighWater {
    /// Connections checked out on the primary for something that may write.
    writes: AtomicU64,
    /// The serial of the last fetch started.
    started: AtomicU64,
    last: Mutex<Fetched>,
    /// The newest position a read required or was served at.
    floor: Mutex<Option<At>>,
    /// Held while fetching: readers queue here and most find a fresh enough result.
    pub(crate) fetching: tokio::sync::Mutex<()>,
}

impl HighWater {
    /// The one of `key` in this process (made on first use; dropped with its last pool).
    pub(crate) fn shared(key: ClusterKey) -> Arc<HighWater> {
        static ALL: OnceLock<Mutex<HashMap<ClusterKey, Weak<HighWater>>>> = OnceLock::new();
        let mut all = lock(ALL.get_or_init(Default::default));
        all.retain(|_, w| w.strong_count() > 0);
        if let Some(hw) = all.get(&key).and_then(Weak::upgrade) {
            return hw;
        }
        let hw = Arc::new(HighWater::default());
        all.insert(key, Arc::downgrade(&hw));
        hw
    }

    /// Something that may write holds a connection on the primary now (and has sent
    /// nothing yet).
    pub(crate) fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }

    /// A position that covers every write acknowledged before now, if the last fetch's
    /// does; else the serial a covering fetch must be newer than.
    pub(crate) fn covered(&self) -> Result<At, u64> {
        let serial = self.started.load(Ordering::SeqCst);
        let writes = self.writes.load(Ordering::SeqCst);
        let last = *lock(&self.last);
        match last.at {
            Some(at) if last.clean && last.ok && last.writes == writes => Ok(at),
            _ => Err(serial),
        }
    }

    /// Whether any write was ever counted (until then, reads need no position).
    pub(crate) fn ever_written(&self) -> bool {
        self.writes.load(Ordering::SeqCst) > 0
    }

    /// The result of a fetch newer than `serial`, if one has finished.
    pub(crate) fn fetched_after(&self, serial: u64) -> Option<Option<At>> {
        let last = *lock(&self.last);
        (last.serial > serial).then_some(if last.ok { last.at } else { None })
    }

    /// Starts a fetch: its serial and the write count it starts from. Call while holding
    /// [`fetching`](Self::fetching), before looking at the primary's connections.
    pub(crate) fn start_fetch(&self) -> (u64, u64) {
        let serial = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        (serial, self.writes.load(Ordering::SeqCst))
    }

    /// Ends a fetch started by [`start_fetch`](Self::start_fetch). `clean`: no connection
    /// was checked out on the primary after it started and before the position was read.
    pub(crate) fn finish_fetch(&self, serial: u64, writes: u64, clean: bool, at: Option<At>) {
        let mut last = lock(&self.last);
        if serial > last.serial {
            let new_found = at.is_some();
            // Positions only move forward (a failed fetch keeps the last one known).
            let at = match (last.at, at) {
                (Some(old), Some(new)) => Some(merge(Some(old), new)),
                (old, new) => new.or(old),
            };
            let ok = new_found;
            *last = Fetched {
                serial,
                writes,
                clean: clean && ok,
                ok,
                at,
            };
        }
    }

    /// The newest position known to cover the writes (the last fetch's), for reads while the
    /// primary is down.
    pub(crate) fn last_known(&self) -> Option<At> {
        lock(&self.last).at
    }

    /// The floor later reads must not go below.
    pub(crate) fn floor(&self) -> Option<At> {
        *lock(&self.floor)
    }

    /// Raises the floor (a read required `at`, or was served by a replica known at `at`).
    pub(crate) fn raise(&self, at: At) {
        let mut floor = lock(&self.floor);
        *floor = Some(merge(*floor, at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(p: u64) -> At {
        At {
            position: p,
            timeline: Some(1),
            gtids: None,
        }
    }

    #[test]
    fn nothing_written_nothing_needed() {
        let hw = HighWater::default();
        assert!(!hw.ever_written());
        hw.wrote();
        assert!(hw.ever_written());
    }

    #[test]
    fn a_clean_fetch_covers_later_reads_until_the_next_write() {
        let hw = HighWater::default();
        hw.wrote();
        assert_eq!(hw.covered(), Err(0));
        let (serial, writes) = hw.start_fetch();
        hw.finish_fetch(serial, writes, true, Some(at(10)));
        assert_eq!(hw.covered(), Ok(at(10)));
        hw.wrote();
        assert_eq!(hw.covered(), Err(1), "a write after the fetch: stale");
    }

    #[test]
    fn a_write_that_began_during_the_fetch_makes_it_stale() {
        let hw = HighWater::default();
        let (serial, writes) = hw.start_fetch();
        hw.wrote();
        hw.finish_fetch(serial, writes, true, Some(at(10)));
        assert!(hw.covered().is_err());
    }

    #[test]
    fn a_fetch_with_a_connection_out_serves_only_the_readers_waiting_for_it() {
        let hw = HighWater::default();
        hw.wrote();
        let seen = hw.covered().unwrap_err();
        let (serial, writes) = hw.start_fetch();
        hw.finish_fetch(serial, writes, false, Some(at(10)));
        assert_eq!(hw.fetched_after(seen), Some(Some(at(10))));
        // A reader that starts now may follow a commit on that connection: it needs a newer
        // fetch.
        let later = hw.covered().unwrap_err();
        assert_eq!(hw.fetched_after(later), None);
    }

    #[test]
    fn positions_and_the_floor_only_move_forward() {
        let hw = HighWater::default();
        let (s1, w1) = hw.start_fetch();
        let (s2, w2) = hw.start_fetch();
        hw.finish_fetch(s2, w2, true, Some(at(20)));
        hw.finish_fetch(s1, w1, true, Some(at(10)));
        assert_eq!(
            hw.last_known(),
            Some(at(20)),
            "an older fetch finishing late is ignored"
        );
        let (s3, w3) = hw.start_fetch();
        hw.finish_fetch(s3, w3, true, None);
        assert_eq!(
            hw.last_known(),
            Some(at(20)),
            "a failed fetch keeps the last position"
        );
        assert!(hw.covered().is_err(), "but it covers nothing");
        assert_eq!(
            hw.fetched_after(s2),
            Some(None),
            "and its waiters learn it failed"
        );
        hw.raise(at(30));
        hw.raise(at(25));
        assert_eq!(hw.floor(), Some(at(30)));
    }

    #[test]
    fn one_per_cluster_in_the_process() {
        let a = HighWater::shared(ClusterKey::System(7));
        let b = HighWater::shared(ClusterKey::System(7));
        let c = HighWater::shared(ClusterKey::Address("db:3306".into()));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
