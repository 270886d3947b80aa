//! What a simulated replica serves: the newest held snapshot of the primary's server that is
//! at least the simulated lag old, with the log position it is known to have. Data only; the
//! task that takes and releases the snapshots is [`simulate`](crate::simulate).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::backend::Probe;
use crate::positions::LogPosition;
use crate::sync::lock;

/// One held snapshot.
#[derive(Clone)]
pub(crate) struct Held {
    /// Its name on the server (`pg_export_snapshot()`).
    pub(crate) name: Arc<str>,
    /// Every write acknowledged at or below this position is visible in it.
    pub(crate) at: LogPosition,
    /// When it was taken.
    pub(crate) taken: Instant,
    /// Where it cannot be entered from other connections (MariaDB): the connection holding
    /// it, which reads borrow in turn (`simulate::Reader`; `None` once released or broken).
    pub(crate) reader: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("name", &self.name)
            .field("at", &self.at)
            .field("taken", &self.taken)
            .field("reader", &self.reader.is_some())
            .finish()
    }
}

/// The snapshots simulated replicas serve, shared by every simulated replica of a pool.
#[derive(Debug)]
pub(crate) struct Ring {
    /// How old the data a simulated replica serves is (`Config::simulated_lag`).
    pub(crate) lag: Duration,
    /// The snapshot reads enter now.
    current: Mutex<Option<Held>>,
    /// The newest snapshot taken: how far the server is (for the lag a probe reports).
    newest: Mutex<Option<Held>>,
    closed: AtomicBool,
    close: Notify,
    /// Woken when the first snapshot is held.
    ready: Notify,
    /// Why the last snapshot could not be taken, if it could not.
    failure: Mutex<Option<String>>,
}

impl Ring {
    pub(crate) fn new(lag: Duration) -> Self {
        Ring {
            lag,
            current: Mutex::new(None),
            newest: Mutex::new(None),
            closed: AtomicBool::new(false),
            close: Notify::new(),
            ready: Notify::new(),
            failure: Mutex::new(None),
        }
    }

    /// How often a snapshot is taken: an eighth of the lag, between 5 ms and 1 s, so a read
    /// sees the database as it was between `lag` and `lag` plus one tick ago, and about ten
    /// snapshots are held at a time.
    pub(crate) fn tick(&self) -> Duration {
        (self.lag / 8).clamp(Duration::from_millis(5), Duration::from_secs(1))
    }

    /// The snapshot reads enter now, once the first one is held.
    pub(crate) fn current(&self) -> Option<Held> {
        lock(&self.current).clone()
    }

    /// The newest snapshot taken (newer than [`current`](Self::current) while the lag has not
    /// passed since it was taken).
    pub(crate) fn newest(&self) -> Option<Held> {
        lock(&self.newest).clone()
    }

    /// Publishes the snapshot reads enter from now on, and the newest one taken.
    pub(crate) fn publish(&self, current: Held, newest: Held) {
        *lock(&self.current) = Some(current);
        *lock(&self.newest) = Some(newest);
        self.ready.notify_waiters();
    }

    /// The current snapshot, waiting up to `limit` for the first one.
    pub(crate) async fn first(&self, limit: Duration) -> Option<Held> {
        let ready = self.ready.notified();
        tokio::pin!(ready);
        ready.as_mut().enable();
        if let Some(held) = self.current() {
            return Some(held);
        }
        let _ = tokio::time::timeout(limit, ready).await;
        self.current()
    }

    /// Records why a snapshot could not be taken (`None`: it could).
    pub(crate) fn failed(&self, why: Option<String>) {
        *lock(&self.failure) = why;
    }

    /// Why the last snapshot could not be taken, if it could not.
    pub(crate) fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }

    /// The pool is closing: the task releases every snapshot and stops.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.close.notify_waiters();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Resolves at [`close`](Self::close) (create it before checking
    /// [`is_closed`](Self::is_closed)).
    pub(crate) fn closing(&self) -> tokio::sync::futures::Notified<'_> {
        self.close.notified()
    }

    /// What a probe of the primary's server says, told as a replica serving the current
    /// snapshot would tell it: in recovery, at the snapshot's position, behind by its age
    /// when the server has moved on since. Before the first snapshot is held, at no
    /// position: it serves no read that needs one.
    pub(crate) fn as_replica(&self, server: Probe) -> Probe {
        let current = self.current();
        let newest = lock(&self.newest).clone();
        let (position, age) = match (&current, &newest) {
            (Some(c), Some(n)) if n.at.position > c.at.position => {
                (Some(c.at.position), Some(c.taken.elapsed()))
            }
            (Some(c), _) => (Some(c.at.position), Some(Duration::ZERO)),
            (None, _) => (None, None),
        };
        Probe {
            in_recovery: Some(true),
            position,
            replay_age: age,
            timeline: current
                .as_ref()
                .and_then(|c| c.at.timeline)
                .or(server.timeline),
            gtids: current.as_ref().and_then(|c| c.at.gtids),
            // No replication channel to judge: it is the primary's server.
            replication: None,
            ..server
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(position: u64, ago: Duration) -> Held {
        Held {
            name: "n".into(),
            at: LogPosition::new(position, Some(1)),
            taken: Instant::now() - ago,
            reader: None,
        }
    }

    #[test]
    fn a_probe_tells_the_current_snapshot_and_its_age_only_when_behind() {
        let ring = Ring::new(Duration::from_millis(200));
        let server = Probe {
            in_recovery: Some(false),
            position: Some(900),
            timeline: Some(1),
            cluster_id: Some(7),
            ..Probe::default()
        };
        let before = ring.as_replica(server.clone());
        assert_eq!(
            (before.in_recovery, before.position),
            (Some(true), None),
            "no snapshot yet: no position"
        );
        ring.publish(
            held(100, Duration::from_millis(250)),
            held(300, Duration::ZERO),
        );
        let behind = ring.as_replica(server.clone());
        assert_eq!(behind.position, Some(100));
        assert_eq!(behind.cluster_id, Some(7));
        assert!(behind.replay_age.unwrap() >= Duration::from_millis(250));
        ring.publish(
            held(300, Duration::from_millis(250)),
            held(300, Duration::ZERO),
        );
        let level = ring.as_replica(server);
        assert_eq!(
            (level.position, level.replay_age),
            (Some(300), Some(Duration::ZERO))
        );
    }

    #[test]
    fn ticks_stay_between_5_ms_and_1_s() {
        let tick = |ms| Ring::new(Duration::from_millis(ms)).tick();
        assert_eq!(tick(0), Duration::from_millis(5));
        assert_eq!(tick(200), Duration::from_millis(25));
        assert_eq!(tick(60_000), Duration::from_secs(1));
    }
}
