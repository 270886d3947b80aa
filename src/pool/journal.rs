//! [`Journal`]: where each statement ran and why, for tests that assert routing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::route::Target;
use crate::sync::lock;

/// Why a statement's connection came from where it did: the consistency decision for a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReadChoice {
    /// Not a read: the primary, as routed.
    Write,
    /// A read with nothing to wait for: the next replica.
    AnyReplica,
    /// A read that must see earlier writes, on a replica known to have replayed them.
    CaughtUpReplica,
    /// A read that must see earlier writes that no replica had replayed within
    /// `causal_wait`: the primary.
    NotReplayed,
    /// A read its session sends to the primary (sticky after a write, a position still
    /// pending, or one the primary must confirm).
    SessionOnPrimary,
    /// A read with no replica in the rotation: the primary.
    NoReplica,
}

impl ReadChoice {
    /// Its name in telemetry (the `partypool.read_choice` span attribute): `write`,
    /// `any_replica`, `caught_up_replica`, `not_replayed`, `session_on_primary`,
    /// `no_replica`.
    ///
    /// ```
    /// assert_eq!(partypool::ReadChoice::NotReplayed.as_str(), "not_replayed");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ReadChoice::Write => "write",
            ReadChoice::AnyReplica => "any_replica",
            ReadChoice::CaughtUpReplica => "caught_up_replica",
            ReadChoice::NotReplayed => "not_replayed",
            ReadChoice::SessionOnPrimary => "session_on_primary",
            ReadChoice::NoReplica => "no_replica",
        }
    }
}

/// One statement, as a [`Journal`] recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JournalEntry {
    /// The statement's SQL.
    pub sql: String,
    /// Where the router sent it (before any fallback).
    pub target: Target,
    /// The routing rule that decided (e.g. `"select"`, `"write statement"`).
    pub reason: &'static str,
    /// The node that ran it last (after retries and a misroute fallback).
    pub node: String,
    /// Whether that node was a replica (a standby serving reads).
    pub on_replica: bool,
    /// The consistency decision that chose the node.
    pub choice: ReadChoice,
    /// Times the read ran again elsewhere after its node failed.
    pub retries: u32,
    /// A replica refused it as a write and it ran again on the primary.
    pub misrouted: bool,
    /// Whether it succeeded.
    pub ok: bool,
}

/// A recording of every statement a pool runs from the moment
/// [`ReplicaPool::journal`](crate::ReplicaPool::journal) is called until the journal is
/// dropped: where each ran and why, so a test can assert "this read was served by a replica"
/// or "nothing went to the primary". Cheap while none is open (one atomic load per
/// statement); with one open, a lock and a copy of the SQL per statement.
///
/// ```no_run
/// # async fn demo(pool: partypool::PgReplicaPool) -> Result<(), sqlx::Error> {
/// let journal = pool.journal();
/// sqlx::query("SELECT 1").execute(&pool).await?;
/// let entries = journal.entries();
/// assert!(entries[0].on_replica, "{entries:?}");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Journal {
    entries: Arc<Mutex<Vec<JournalEntry>>>,
    journals: Arc<Journals>,
}

impl Journal {
    /// The statements recorded so far, in the order they finished.
    pub fn entries(&self) -> Vec<JournalEntry> {
        lock(&self.entries).clone()
    }

    /// Forgets what was recorded so far.
    pub fn clear(&self) {
        lock(&self.entries).clear();
    }

    /// How many recorded statements ran on the primary (or a node that was not a replica).
    pub fn on_primary(&self) -> usize {
        lock(&self.entries).iter().filter(|e| !e.on_replica).count()
    }

    /// How many recorded statements ran on a replica.
    pub fn on_replica(&self) -> usize {
        lock(&self.entries).iter().filter(|e| e.on_replica).count()
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.journals.open.fetch_sub(1, Ordering::Release);
    }
}

/// The journals open on one pool.
#[derive(Debug, Default)]
pub(crate) struct Journals {
    open: AtomicUsize,
    sinks: Mutex<Vec<Weak<Mutex<Vec<JournalEntry>>>>>,
}

impl Journals {
    /// Opens a journal.
    pub(crate) fn open(self: &Arc<Self>) -> Journal {
        let entries = Arc::new(Mutex::new(Vec::new()));
        let mut sinks = lock(&self.sinks);
        sinks.retain(|s| s.strong_count() > 0);
        sinks.push(Arc::downgrade(&entries));
        self.open.fetch_add(1, Ordering::Release);
        Journal {
            entries,
            journals: Arc::clone(self),
        }
    }

    /// Whether any journal is open (then statements keep what [`record`](Self::record) needs).
    pub(crate) fn recording(&self) -> bool {
        self.open.load(Ordering::Acquire) > 0
    }

    /// Adds `entry` to every open journal.
    pub(crate) fn record(&self, entry: JournalEntry) {
        for sink in lock(&self.sinks).iter().filter_map(Weak::upgrade) {
            lock(&sink).push(entry.clone());
        }
    }
}
