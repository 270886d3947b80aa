//! The nodes as a whole: which one takes writes, which ones may serve reads, and the signal
//! that tells running calls the pool is closing.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::backend::Backend;
use crate::balance::{Load, Policy};
use crate::config::Backoff;
use crate::node::{Node, Role};

/// Settings the health task and the query path read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) health_check_interval: Duration,
    pub(crate) health_check_timeout: Duration,
    pub(crate) ban_backoff: Backoff,
    pub(crate) max_replica_lag: Option<Duration>,
    pub(crate) max_replica_lag_bytes: Option<u64>,
    pub(crate) follow_promotion: bool,
    pub(crate) max_read_retries: u32,
    pub(crate) statement_timeout: Option<Duration>,
    /// `None`: sessions track positions; `Some(d)`: they read on the primary for `d` after
    /// a write.
    pub(crate) sticky: Option<Duration>,
    pub(crate) causal_wait: Duration,
    pub(crate) position_interval: Duration,
}

pub(crate) struct Cluster<DB: Backend> {
    /// `nodes[0]` is the configured primary, the rest are replicas in configuration order.
    pub(crate) nodes: Vec<Arc<Node<DB>>>,
    pub(crate) settings: Settings,
    policy: Box<dyn Policy>,
    /// The node that takes writes: the configured primary, or a promoted replica.
    writer: AtomicUsize,
    /// Why writes must fail at once (the primary is gone and `follow_promotion` is off).
    write_block: Mutex<Option<String>>,
    /// Woken when writes move to another node.
    writer_moved: Notify,
    /// The cluster's identity (0: not known yet, or the backend has none).
    cluster_id: AtomicU64,
    /// Woken when a replica's replay position moves.
    positions_moved: Notify,
    /// Held while replay positions are being refreshed, so callers share one refresh.
    refreshing: tokio::sync::Mutex<()>,
    closing: AtomicBool,
    closed_signal: Notify,
}

impl<DB: Backend> Cluster<DB> {
    pub(crate) fn new(
        nodes: Vec<Arc<Node<DB>>>,
        settings: Settings,
        policy: Box<dyn Policy>,
    ) -> Self {
        Cluster {
            nodes,
            settings,
            policy,
            writer: AtomicUsize::new(0),
            write_block: Mutex::new(None),
            writer_moved: Notify::new(),
            cluster_id: AtomicU64::new(0),
            positions_moved: Notify::new(),
            refreshing: tokio::sync::Mutex::new(()),
            closing: AtomicBool::new(false),
            closed_signal: Notify::new(),
        }
    }

    pub(crate) fn configured_primary(&self) -> &Arc<Node<DB>> {
        &self.nodes[0]
    }

    pub(crate) fn replicas(&self) -> &[Arc<Node<DB>>] {
        &self.nodes[1..]
    }

    /// The node that takes writes now.
    pub(crate) fn writer(&self) -> &Arc<Node<DB>> {
        &self.nodes[self
            .writer
            .load(Ordering::Acquire)
            .min(self.nodes.len() - 1)]
    }

    pub(crate) fn writer_index(&self) -> usize {
        self.writer.load(Ordering::Acquire)
    }

    /// Resolves when writes next move to another node. Register (`enable`) before reading
    /// the writer, so a move in between is not missed.
    pub(crate) fn writer_moved(&self) -> tokio::sync::futures::Notified<'_> {
        self.writer_moved.notified()
    }

    /// `Err(why)` when writes must fail at once.
    pub(crate) fn check_writable(&self) -> Result<(), String> {
        match &*lock(&self.write_block) {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }

    /// The next replica that serves reads, by the balancing policy, skipping `tried`
    /// (indices into `nodes`); `None` when there is none.
    pub(crate) fn pick_replica(&self, tried: &[usize]) -> Option<(usize, &Arc<Node<DB>>)> {
        self.pick_replica_at(tried, None)
    }

    /// The next replica that serves reads, or the writer when none does.
    pub(crate) fn reader(&self) -> &Arc<Node<DB>> {
        self.pick_replica(&[])
            .map_or_else(|| self.writer(), |(_, node)| node)
    }

    /// Like [`pick_replica`](Self::pick_replica), among replicas known to have replayed at
    /// least `min_position`.
    pub(crate) fn pick_replica_at(
        &self,
        tried: &[usize],
        min_position: Option<u64>,
    ) -> Option<(usize, &Arc<Node<DB>>)> {
        let usable = |(i, n): &(usize, &Arc<Node<DB>>)| {
            n.serves_reads()
                && !tried.contains(i)
                && min_position.is_none_or(|min| n.position().is_some_and(|p| p >= min))
        };
        // Candidates on the stack: this runs for every read, and pools have a handful of
        // replicas (more than `MAX` is served by the first `MAX` in the rotation).
        const MAX: usize = 32;
        let mut index = [0usize; MAX];
        let mut loads = [Load::default(); MAX];
        let mut n = 0;
        for (i, node) in self.nodes.iter().enumerate().filter(usable).take(MAX) {
            index[n] = i;
            loads[n] = node.load();
            n += 1;
        }
        let k = match n {
            0 => return None,
            1 => 0,
            _ => self.policy.pick(&loads[..n]).min(n - 1),
        };
        Some((index[k], &self.nodes[index[k]]))
    }

    /// Chooses the writer after a round of probes.
    ///
    /// Never two primaries: the configured primary keeps the writes while it is reachable and
    /// not in recovery, even if another node also claims to be a primary (split brain: warn).
    /// Otherwise, with `follow_promotion`, the reachable promoted node with the most advanced
    /// timeline and position takes them; without it, writes fail at once with the reason.
    pub(crate) fn elect_writer(&self) {
        let configured = self.configured_primary();
        let claims: Vec<(usize, &Arc<Node<DB>>)> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_healthy() && n.in_recovery() == Some(false))
            .collect();
        let configured_ok = configured.is_healthy() && configured.in_recovery() != Some(true);
        let promoted = claims
            .iter()
            .filter(|(_, n)| n.role == Role::Replica)
            .max_by_key(|(_, n)| (n.timeline(), n.position()));
        // A configured primary that comes back after a failover, not fenced and not in
        // recovery, is on an older timeline than the promoted node: writes stay with the
        // promoted one rather than splitting between two primaries.
        let superseded =
            configured_ok && promoted.is_some_and(|(_, p)| p.timeline() > configured.timeline());
        if superseded {
            tracing::warn!(
                "the configured primary is back on an older timeline than a promoted node; writes stay on the promoted node"
            );
        }
        let (writer, block) = if configured_ok && !superseded {
            if claims.len() > 1 {
                let others: Vec<&str> = claims
                    .iter()
                    .skip(1)
                    .map(|(_, n)| n.name.as_str())
                    .collect();
                tracing::warn!(
                    ?others,
                    "more than one node claims to be the primary; writes stay on the configured primary"
                );
            }
            (0, None)
        } else {
            let why = if superseded {
                "on an older timeline than a promoted node".to_owned()
            } else if configured.is_healthy() {
                "in recovery (a standby)".to_owned()
            } else {
                "unreachable".to_owned()
            };
            match (promoted, self.settings.follow_promotion) {
                (Some((i, _)), true) => (*i, None),
                (Some((_, n)), false) => (
                    0,
                    Some(format!(
                        "the configured primary is {why}; {} has been promoted, but follow_promotion is off",
                        n.name
                    )),
                ),
                (None, false) => (
                    0,
                    Some(format!(
                        "the configured primary is {why} and follow_promotion is off"
                    )),
                ),
                // Nothing promoted yet: writes keep trying the configured primary.
                (None, true) => (0, None),
            }
        };
        let before = self.writer.swap(writer, Ordering::AcqRel);
        if before != writer {
            tracing::warn!(from = %self.nodes[before].name, to = %self.nodes[writer].name, "writes move to another node");
            self.writer_moved.notify_waiters();
        }
        *lock(&self.write_block) = block;
    }

    /// Measures each replica's lag against the writer's position from the same round.
    pub(crate) fn update_lag(&self) {
        let writer = self.writer();
        let Some(head) = writer.position().filter(|_| writer.is_healthy()) else {
            return;
        };
        for node in self.replicas() {
            if !node.is_healthy() || node.in_recovery() != Some(true) {
                continue;
            }
            let Some(replayed) = node.position() else {
                continue;
            };
            let bytes = head.saturating_sub(replayed);
            // Caught up: no lag, however long ago the last commit was (an idle primary).
            // Behind: the age of the newest replayed commit — but never more than the time
            // since it was last seen caught up, or a few bytes of non-commit WAL on a quiet
            // primary would count the whole quiet period as lag.
            let time = if bytes == 0 {
                node.caught_up_now();
                Duration::ZERO
            } else {
                let age = node.replay_age().unwrap_or_default();
                node.since_caught_up().map_or(age, |since| age.min(since))
            };
            node.set_lag(
                bytes,
                time,
                self.settings.max_replica_lag,
                self.settings.max_replica_lag_bytes,
            );
        }
    }

    /// The cluster's identity, once the primary has answered.
    pub(crate) fn cluster_id(&self) -> Option<u64> {
        match self.cluster_id.load(Ordering::Acquire) {
            0 => None,
            id => Some(id),
        }
    }

    pub(crate) fn set_cluster_id(&self, id: Option<u64>) {
        if let Some(id) = id.filter(|id| *id != 0) {
            let _ = self
                .cluster_id
                .compare_exchange(0, id, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Reads every serving replica's replay position now (one light query each, at once) and
    /// wakes readers waiting for a position. Concurrent callers share one refresh.
    pub(crate) async fn refresh_positions(&self) {
        // Registered before looking at the lock, so a refresh that ends in between still
        // wakes us.
        let moved = self.positions_moved.notified();
        tokio::pin!(moved);
        moved.as_mut().enable();
        let Ok(_guard) = self.refreshing.try_lock() else {
            // Someone is refreshing: wait for their result instead.
            let _ = tokio::time::timeout(self.settings.health_check_timeout, moved).await;
            return;
        };
        // Wake the waiters however this ends, even if our caller gives up (drops us) early.
        struct WakeOnDrop<'a>(&'a Notify);
        impl Drop for WakeOnDrop<'_> {
            fn drop(&mut self) {
                self.0.notify_waiters();
            }
        }
        let _wake = WakeOnDrop(&self.positions_moved);
        // Bounded by the refresh interval too: the health task runs refreshes and probes in
        // turn, and a hung replica must not delay the probe that takes it out of rotation.
        let timeout = self.settings.health_check_timeout.min(
            self.settings
                .position_interval
                .max(Duration::from_millis(10)),
        );
        futures_util::future::join_all(self.replicas().iter().filter(|n| n.serves_reads()).map(
            |n| async move {
                let read = async {
                    let mut conn = n.pool.acquire().await?;
                    DB::replayed_position(&mut conn).await
                };
                if let Ok(Ok(Some(p))) = tokio::time::timeout(timeout, read).await {
                    n.advance_position(p);
                }
            },
        ))
        .await;
    }

    /// A replica that has replayed `min_position`, waiting up to `causal_wait` for one to
    /// catch up (refreshing positions meanwhile); `None` when none does in time.
    pub(crate) async fn replica_at(&self, tried: &[usize], min_position: u64) -> Option<usize> {
        if let Some((i, _)) = self.pick_replica_at(tried, Some(min_position)) {
            return Some(i);
        }
        // No replica in the rotation at all: nothing to wait for.
        self.pick_replica(tried)?;
        let deadline = tokio::time::Instant::now() + self.settings.causal_wait;
        loop {
            let _ = tokio::time::timeout_at(deadline, self.refresh_positions()).await;
            if let Some((i, _)) = self.pick_replica_at(tried, Some(min_position)) {
                return Some(i);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            // Replication usually needs well under a millisecond on a LAN: look again soon.
            tokio::time::sleep(
                Duration::from_millis(2).min(deadline - tokio::time::Instant::now()),
            )
            .await;
        }
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Tells every running call to stop (they fail with `PoolClosed`).
    pub(crate) fn start_closing(&self) {
        self.closing.store(true, Ordering::Release);
        self.closed_signal.notify_waiters();
    }

    /// Resolves when the pool starts closing.
    pub(crate) async fn closing(&self) {
        let notified = self.closed_signal.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_closing() {
            return;
        }
        notified.await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
