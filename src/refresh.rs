//! Replay positions on demand, for read-your-writes: a read that must see a position waits
//! for a replica to reach it while one shared refresh at a time reads the replicas'
//! positions.
//!
//! Nothing refreshes while no session waits, and concurrent waiters share one refresh that
//! starts at most once per `position_interval`: the load on replicas is bounded per pool,
//! not per session.

use tokio::sync::Notify;

use crate::backend::Backend;
use crate::causal::HighWater;
use crate::cluster::Cluster;
use crate::positions::At;

/// The primary's position read by a fetch that started after [`HighWater::covered`] returned
/// `seen`: it covers every write acknowledged before that. Concurrent callers share fetches:
/// one runs at a time, and each waiting caller takes the first result newer than its own
/// `seen`. `None` when the primary did not answer within `health_check_timeout`.
pub(crate) async fn primary_after<DB: Backend>(
    cluster: &Cluster<DB>,
    high_water: &HighWater,
    seen: u64,
) -> Option<At> {
    if let Some(found) = high_water.fetched_after(seen) {
        return found;
    }
    let _fetching = high_water.fetching.lock().await;
    if let Some(found) = high_water.fetched_after(seen) {
        return found;
    }
    let (serial, writes) = high_water.start_fetch();
    let node = cluster.writer();
    let read = async {
        // The kept probe connection, else a pooled one. Either way, whether any connection
        // was out on the primary is read after the fetch started and before the position.
        match node.take_probe_connection() {
            Some(mut conn) => {
                let clean = !node.lending.any_held();
                let position = DB::capture_position(&mut conn).await;
                if position.is_ok() {
                    node.keep_probe_connection(conn);
                }
                Some((position.ok().flatten().map(At::from_log), clean))
            }
            None => {
                let mut conn = node.acquire().await.ok()?;
                node.lending.lend();
                let clean = !node.lending.any_held();
                let position = DB::capture_position(&mut conn).await;
                Some((position.ok().flatten().map(At::from_log), clean))
            }
        }
    };
    let found = tokio::time::timeout(cluster.settings.health_check_timeout, read).await;
    let (at, clean) = match found {
        Ok(Some((at, clean))) => (at, clean),
        _ => (None, false),
    };
    high_water.finish_fetch(serial, writes, clean, at);
    at
}

/// The shared refresh of one pool.
#[derive(Debug, Default)]
pub(crate) struct Refresher {
    /// Woken when a refresh ends.
    moved: Notify,
    /// Held while replay positions are being refreshed, so callers share one refresh, and
    /// when the last one started: at most one per `position_interval`.
    refreshing: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Refresher {
    /// Reads every serving replica's replay position now (one light query each, at once) and
    /// wakes readers waiting for a position.
    pub(crate) async fn refresh<DB: Backend>(&self, cluster: &Cluster<DB>) {
        let settings = &cluster.settings;
        // Registered before looking at the lock, so a refresh that ends in between still
        // wakes us.
        let moved = self.moved.notified();
        tokio::pin!(moved);
        moved.as_mut().enable();
        let Ok(guard) = self.refreshing.try_lock() else {
            // Someone is refreshing: wait for their result instead.
            let wait = settings.health_check_timeout + settings.position_interval;
            let _ = tokio::time::timeout(wait, moved).await;
            return;
        };
        // However this ends (even if our caller gives up and drops us): release the lock
        // first, then wake the waiters, so a woken waiter finds it free.
        struct Refreshing<'a> {
            last: Option<tokio::sync::MutexGuard<'a, Option<tokio::time::Instant>>>,
            moved: &'a Notify,
        }
        impl Drop for Refreshing<'_> {
            fn drop(&mut self) {
                self.last.take();
                self.moved.notify_waiters();
            }
        }
        let mut refreshing = Refreshing {
            last: Some(guard),
            moved: &self.moved,
        };
        let last = refreshing.last.as_mut().expect("held");
        if let Some(at) = **last {
            tokio::time::sleep_until(at + settings.position_interval).await;
        }
        **last = Some(tokio::time::Instant::now());
        // Bounded: a hung replica must not hold every waiting session. An idle pooled
        // connection, else the node's kept probe connection: a refresh never waits behind a
        // full pool (it would make waiting sessions give up and read on the primary).
        let timeout = settings.health_check_timeout;
        let nodes: Vec<_> = {
            let snapshot = cluster.snapshot();
            let readable = snapshot.view.readable.iter();
            // A node a read found behind moments ago waits out its interval.
            readable
                .map(|&i| snapshot.nodes[i].clone())
                .filter(|n| n.may_ask())
                .collect()
        };
        futures_util::future::join_all(nodes.iter().map(|n| async move {
            let read = async {
                if let Some(p) = crate::simulate::replayed(n) {
                    return Ok(p);
                }
                if let Some(mut conn) = n.pool.try_acquire() {
                    n.lending.lend();
                    return DB::replayed_position(&mut conn).await;
                }
                let Some(mut conn) = n.take_probe_connection() else {
                    return Ok(None);
                };
                let p = DB::replayed_position(&mut conn).await;
                if p.is_ok() {
                    n.keep_probe_connection(conn);
                }
                p
            };
            if let Ok(Ok(Some(p))) = tokio::time::timeout(timeout, read).await {
                n.advance_position(p);
            }
            // Read now: no read asks it again before the next refresh may.
            n.close_gate(settings.position_interval);
        }))
        .await;
        drop(refreshing);
    }

    /// A replica that has replayed `at`, skipping `tried`, waiting up to `causal_wait` for
    /// one to catch up (refreshing positions meanwhile); `None` when none does in time.
    pub(crate) async fn replica_at<DB: Backend>(
        &self,
        cluster: &Cluster<DB>,
        tried: &[usize],
        at: At,
    ) -> Option<usize> {
        let pick = |at: Option<&At>| cluster.pick(&cluster.snapshot(), tried, at, false);
        if let Some(i) = pick(Some(&at)) {
            return Some(i);
        }
        // No replica in the rotation at all: nothing to wait for.
        pick(None)?;
        let deadline = tokio::time::Instant::now() + cluster.settings.causal_wait;
        loop {
            let _ = tokio::time::timeout_at(deadline, self.refresh(cluster)).await;
            if let Some(i) = pick(Some(&at)) {
                return Some(i);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
        }
    }
}
