//! The nodes as a whole: which one takes writes, which ones may serve reads, and the signal
//! that tells running calls the pool is closing.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::backend::Backend;
use crate::balance::{Load, Policy};
use crate::config::Backoff;
use crate::consistency::{At, Rules};
use crate::node::Node;

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
    pub(crate) rules: Rules,
    pub(crate) causal_wait: Duration,
    pub(crate) position_interval: Duration,
}

const NONE: u64 = u64::MAX;

/// The members, in the order they joined. Append-only, so an index names the same node
/// for the pool's whole life (a removed node stays, marked removed, serving nothing); read
/// without a lock on every statement, replaced whole when a member joins.
type Members<DB> = Vec<Arc<Node<DB>>>;

pub(crate) struct Cluster<DB: Backend> {
    /// Every member: the declared primary (if any) first, then the others in configuration
    /// order, then those added later.
    nodes: ArcSwap<Members<DB>>,
    /// Serialises membership changes (the list itself is read lock-free).
    joining: Mutex<()>,
    /// Serialises elections.
    electing: Mutex<()>,
    pub(crate) settings: Settings,
    policy: Box<dyn Policy>,
    /// Itself, for the probes that confirm a statement's connection error in the background.
    me: Weak<Cluster<DB>>,
    /// The node that takes writes: the configured primary, or a promoted replica.
    writer: AtomicUsize,
    /// The newest timeline that has taken writes (`NONE`: none yet). No node on an older
    /// timeline ever takes writes again.
    writes_timeline: AtomicU64,
    /// Why writes must fail at once (the writer is gone and `follow_promotion` is off).
    write_block: Mutex<Option<String>>,
    /// Woken when writes move to another node.
    writer_moved: Notify,
    /// The cluster's identity: the configured primary's system identifier (`NONE`: not
    /// known, or the backend has none). Set once, at connect.
    cluster_id: AtomicU64,
    /// Woken when a refresh of replay positions ends.
    positions_moved: Notify,
    /// Held while replay positions are being refreshed, so callers share one refresh, and
    /// when the last one started: at most one per `position_interval`.
    refreshing: tokio::sync::Mutex<Option<tokio::time::Instant>>,
    /// The writer's position in the previous round (MariaDB lag without a replay age).
    previous_head: Mutex<Option<(u64, Option<crate::GtidSet>)>>,
    closing: AtomicBool,
    closed_signal: Notify,
    /// How long the last health round took, in microseconds (`NONE`: none ran yet).
    last_round_micros: AtomicU64,
}

impl<DB: Backend> Cluster<DB> {
    pub(crate) fn new(
        nodes: Vec<Arc<Node<DB>>>,
        settings: Settings,
        policy: Box<dyn Policy>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Cluster {
            nodes: ArcSwap::from_pointee(nodes),
            joining: Mutex::new(()),
            electing: Mutex::new(()),
            settings,
            policy,
            me: me.clone(),
            writer: AtomicUsize::new(0),
            writes_timeline: AtomicU64::new(NONE),
            write_block: Mutex::new(None),
            writer_moved: Notify::new(),
            cluster_id: AtomicU64::new(NONE),
            positions_moved: Notify::new(),
            refreshing: tokio::sync::Mutex::new(None),
            previous_head: Mutex::new(None),
            closing: AtomicBool::new(false),
            closed_signal: Notify::new(),
            last_round_micros: AtomicU64::new(NONE),
        })
    }

    /// Records how long a health round took.
    pub(crate) fn round_took(&self, took: std::time::Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(NONE - 1);
        self.last_round_micros.store(micros, Ordering::Relaxed);
    }

    /// How long the last health round took.
    pub(crate) fn last_round(&self) -> Option<std::time::Duration> {
        match self.last_round_micros.load(Ordering::Relaxed) {
            NONE => None,
            micros => Some(std::time::Duration::from_micros(micros)),
        }
    }

    /// Every member (removed ones included: indices are stable), as of now.
    pub(crate) fn nodes(&self) -> arc_swap::Guard<Arc<Members<DB>>> {
        self.nodes.load()
    }

    /// The member at `index`.
    pub(crate) fn node(&self, index: usize) -> Arc<Node<DB>> {
        Arc::clone(&self.nodes()[index])
    }

    /// The first member: the declared primary, when there is one.
    pub(crate) fn first(&self) -> Arc<Node<DB>> {
        self.node(0)
    }

    /// Adds a member; returns its index. Probe it before it may serve.
    pub(crate) fn add(&self, node: Arc<Node<DB>>) -> usize {
        let _one_at_a_time = lock(&self.joining);
        let mut members = Vec::clone(&self.nodes());
        members.push(node);
        let index = members.len() - 1;
        self.nodes.store(Arc::new(members));
        index
    }

    /// The node that takes writes now.
    pub(crate) fn writer(&self) -> Arc<Node<DB>> {
        let nodes = self.nodes();
        Arc::clone(&nodes[self.writer.load(Ordering::Acquire).min(nodes.len() - 1)])
    }

    /// Whether a node other than `index` could take the writes now (reachable, writable,
    /// of this cluster, never deposed).
    pub(crate) fn has_other_writable(&self, index: usize) -> bool {
        let floor = self.floor();
        self.nodes()
            .iter()
            .enumerate()
            .any(|(i, n)| i != index && may_take_writes(n, floor, true))
    }

    /// The newest timeline that has taken writes.
    fn floor(&self) -> Option<u64> {
        match self.writes_timeline.load(Ordering::Acquire) {
            NONE => None,
            t => Some(t),
        }
    }

    /// The writer before the first election (the declared primary's index is 0).
    pub(crate) fn set_writer_index(&self, index: usize) {
        self.writer.store(index, Ordering::Release);
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
    pub(crate) fn pick_replica(&self, tried: &[usize]) -> Option<(usize, Arc<Node<DB>>)> {
        self.pick(tried, None, false)
    }

    /// The next replica that serves reads, or the writer when none does.
    pub(crate) fn reader(&self) -> Arc<Node<DB>> {
        self.pick_replica(&[])
            .map_or_else(|| self.writer(), |(_, node)| node)
    }

    /// The next replica that serves reads, skipping `tried`, among those known to have
    /// replayed `at` (on its timeline) when given, and among those with a free connection
    /// when `free` (so a full pool does not make a read wait while another replica idles).
    pub(crate) fn pick(
        &self,
        tried: &[usize],
        at: Option<At>,
        free: bool,
    ) -> Option<(usize, Arc<Node<DB>>)> {
        let usable = |(i, n): &(usize, &Arc<Node<DB>>)| {
            n.serves_reads()
                && !tried.contains(i)
                && at.as_ref().is_none_or(|at| n.covers(at))
                && (!free || n.has_free_connection())
        };
        // Candidates on the stack: this runs for every read, and pools have a handful of
        // replicas (more than `MAX` is served by the first `MAX` in the rotation).
        const MAX: usize = 32;
        let mut index = [0usize; MAX];
        let mut loads = [Load::default(); MAX];
        let mut n = 0;
        let nodes = self.nodes();
        for (i, node) in nodes.iter().enumerate().filter(usable).take(MAX) {
            index[n] = i;
            loads[n] = node.load();
            n += 1;
        }
        let k = match n {
            0 => return None,
            1 => 0,
            _ => self.policy.pick(&loads[..n]).min(n - 1),
        };
        Some((index[k], Arc::clone(&nodes[index[k]])))
    }

    /// Chooses the writer after a round of probes: an election with memory.
    ///
    /// - The writer keeps the writes while it is reachable and not in recovery. Another node
    ///   that claims the primary role meanwhile (an accidental promotion, an unfenced old
    ///   primary) gets no writes, and no reads either (it is not a standby): a warning, and
    ///   `status()` says why.
    /// - Writes move only once the writer is lost (unreachable, or in recovery), to a node
    ///   of the same cluster promoted on a newer timeline than any that took writes before
    ///   (with `follow_promotion`); the newest timeline and position win.
    /// - Once writes were on timeline T, no node on an older timeline takes them again: a
    ///   stalled or failing writer makes writes wait or fail (bounded by the timeouts), never
    ///   go back.
    pub(crate) fn elect_writer(&self) {
        // One election at a time (the health task's and a membership change's).
        let _one_at_a_time = lock(&self.electing);
        let nodes = self.nodes();
        let current = self.writer_index().min(nodes.len() - 1);
        let writer = &nodes[current];
        let floor = self.floor();
        // A writer whose address now leads to an older timeline (a VIP moved back to an
        // unfenced old primary) has lost the writes as surely as one that is gone.
        let behind = matches!((floor, writer.timeline()), (Some(f), Some(t)) if t < f);
        let holds = writer.is_healthy()
            && !writer.is_removed()
            && writer.in_recovery() != Some(true)
            && !writer.is_foreign()
            && !behind;
        let mut next = current;
        let mut block = None;
        if holds {
            if let Some(t) = writer.timeline() {
                self.writes_timeline.fetch_max_or_set(t);
            }
        } else {
            let promoted = nodes
                .iter()
                .enumerate()
                .filter(|(i, n)| *i != current && may_take_writes(n, floor, writer.is_removed()))
                .max_by_key(|(_, n)| (n.timeline(), n.position()));
            let why = if writer.is_removed() {
                "removed from the pool"
            } else if writer.is_foreign() {
                "a node of another cluster"
            } else if behind {
                "on an older timeline than writes have been on"
            } else if writer.is_healthy() {
                "in recovery (a standby)"
            } else {
                "unreachable"
            };
            match (promoted, self.settings.follow_promotion) {
                (Some((i, n)), true) => {
                    next = i;
                    if let Some(t) = n.timeline() {
                        self.writes_timeline.fetch_max_or_set(t);
                    }
                }
                (Some((_, n)), false) => {
                    block = Some(format!(
                        "{} (the writer) is {why}; {} has been promoted, but follow_promotion is off",
                        writer.name, n.name
                    ))
                }
                (None, false) => {
                    block = Some(format!(
                        "{} (the writer) is {why} and follow_promotion is off",
                        writer.name
                    ))
                }
                // Never write to another cluster's node, to an older timeline or to a node
                // that left the pool: fail at once.
                (None, true) if writer.is_foreign() || behind || writer.is_removed() => {
                    block = Some(format!(
                        "{} (the writer) is {why}; no node of this cluster has been promoted",
                        writer.name
                    ))
                }
                // Every node that answers is a standby: writes fail at once, saying so, until
                // one is promoted.
                (None, true) if writer.is_healthy() && writer.in_recovery() == Some(true) => {
                    block = Some(format!(
                        "no node takes writes: {} is in recovery (a standby) and no node is writable",
                        writer.name
                    ))
                }
                // Nothing promoted (on a newer timeline) yet: writes keep trying the writer.
                (None, true) => {}
            }
        }
        for (i, n) in nodes.iter().enumerate() {
            n.set_writer(i == next);
            n.set_rival(
                i != next
                    && n.is_healthy()
                    && !n.is_removed()
                    && n.in_recovery() == Some(false)
                    && !n.is_foreign(),
            );
        }
        let before = self.writer.swap(next, Ordering::AcqRel);
        if before != next {
            nodes[before].depose();
            tracing::warn!(from = %nodes[before].name, to = %nodes[next].name, "writes move to another node");
            self.writer_moved.notify_waiters();
        }
        *lock(&self.write_block) = block;
    }

    /// Measures each replica's lag against the writer's position from the same round.
    pub(crate) fn update_lag(&self) {
        let writer = self.writer();
        if !writer.is_healthy() {
            // Nothing to measure against (and a standby's replay age grows while the
            // primary is gone: it must not take the replicas out of the reads).
            return;
        }
        let Some(head) = writer.position() else {
            // A writer without a position (MySQL 8, an unreadable GTID set): the replicas'
            // own word on how far behind they are (`Seconds_Behind_Source`) still counts.
            for node in self.nodes().iter() {
                if let Some(age) = node.replay_age().filter(|_| node.is_standby()) {
                    node.set_lag(
                        0,
                        age,
                        self.settings.max_replica_lag,
                        self.settings.max_replica_lag_bytes,
                    );
                }
            }
            return;
        };
        let head_gtids = writer.gtids();
        let previous = lock(&self.previous_head).replace((head, head_gtids));
        for node in self.nodes().iter() {
            if !node.is_healthy() || node.in_recovery() != Some(true) || node.is_writer() {
                continue;
            }
            let Some(replayed) = node.position() else {
                continue;
            };
            let gtids = node.gtids();
            let bytes = match (gtids, head_gtids) {
                // MariaDB: transactions not applied yet, summed over the domains.
                (Some(have), Some(head)) => have.behind(&head),
                _ => head.saturating_sub(replayed),
            };
            // Caught up: no lag, however long ago the last commit was (an idle primary).
            // Behind: the age of the newest replayed commit — but never more than the time
            // since it was last seen caught up, or a few bytes of non-commit WAL on a quiet
            // primary would count the whole quiet period as lag.
            //
            // MariaDB without a replay age (no `SLAVE MONITOR`, or its SQL thread stopped,
            // when `Seconds_Behind_Master` is NULL): behind by the time since it last had
            // what the primary had one round before. The probes of a round are not
            // simultaneous, so on a busy primary a healthy replica is never exactly level.
            let age = node.replay_age();
            let level_with_last_round = gtids.is_some()
                && age.is_none()
                && previous.is_some_and(|(p, g)| match (gtids, g) {
                    (Some(have), Some(g)) => have.contains(&g),
                    _ => replayed >= p,
                });
            let time = if bytes == 0 || level_with_last_round {
                node.caught_up_now();
                Duration::ZERO
            } else {
                let since = node.since_caught_up();
                match (age, since) {
                    (Some(age), since) => since.map_or(age, |since| age.min(since)),
                    (None, Some(since)) if gtids.is_some() => since,
                    (None, None) if gtids.is_some() => {
                        // Never seen level yet: measured from now on.
                        node.caught_up_now();
                        Duration::ZERO
                    }
                    (None, _) => Duration::ZERO,
                }
            };
            node.set_lag(
                bytes,
                time,
                self.settings.max_replica_lag,
                self.settings.max_replica_lag_bytes,
            );
        }
    }

    /// The cluster's identity: the configured primary's system identifier.
    pub(crate) fn cluster_id(&self) -> Option<u64> {
        match self.cluster_id.load(Ordering::Acquire) {
            NONE => None,
            id => Some(id),
        }
    }

    /// Sets the cluster's identity, once (from the configured primary's first probe).
    pub(crate) fn set_cluster_id(&self, id: Option<u64>) {
        if let Some(id) = id.filter(|id| *id != NONE) {
            let _ = self
                .cluster_id
                .compare_exchange(NONE, id, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// A statement on `node` failed in a way that may mean the node is gone: probe it now
    /// (in the background, one probe at a time per node). The probe, not the statement,
    /// decides whether it leaves the rotation.
    pub(crate) fn suspect(&self, node: &Arc<Node<DB>>) {
        if !node.start_suspecting() {
            return;
        }
        let (Some(me), Ok(runtime)) = (self.me.upgrade(), tokio::runtime::Handle::try_current())
        else {
            node.stop_suspecting();
            return;
        };
        let node = Arc::clone(node);
        runtime.spawn(async move {
            crate::health::check(&me, &node).await;
            node.stop_suspecting();
        });
    }

    /// Counts a statement's error on `node`; a connection-class error asks for a probe.
    pub(crate) fn report(&self, node: &Arc<Node<DB>>, e: &sqlx::Error) {
        if node.record_error(e) {
            self.suspect(node);
        }
    }

    /// Reads every serving replica's replay position now (one light query each, at once) and
    /// wakes readers waiting for a position. Concurrent callers share one refresh, and
    /// refreshes start at most once per `position_interval`, however many sessions wait:
    /// the load on replicas is bounded per pool, not per session. Nothing refreshes while
    /// no session waits.
    pub(crate) async fn refresh_positions(&self) {
        // Registered before looking at the lock, so a refresh that ends in between still
        // wakes us.
        let moved = self.positions_moved.notified();
        tokio::pin!(moved);
        moved.as_mut().enable();
        let Ok(guard) = self.refreshing.try_lock() else {
            // Someone is refreshing: wait for their result instead.
            let wait = self.settings.health_check_timeout + self.settings.position_interval;
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
            moved: &self.positions_moved,
        };
        let last = refreshing.last.as_mut().expect("held");
        if let Some(at) = **last {
            tokio::time::sleep_until(at + self.settings.position_interval).await;
        }
        **last = Some(tokio::time::Instant::now());
        // Bounded: a hung replica must not hold every waiting session. An idle pooled
        // connection, else the node's kept probe connection: a refresh never waits behind a
        // full pool (it would make waiting sessions give up and read on the primary).
        let timeout = self.settings.health_check_timeout;
        let nodes = self.nodes();
        futures_util::future::join_all(nodes.iter().filter(|n| n.serves_reads()).map(
            |n| async move {
                let read = async {
                    if let Some(mut conn) = n.pool.try_acquire() {
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
            },
        ))
        .await;
        drop(refreshing);
    }

    /// A replica that has replayed `at`, waiting up to `causal_wait` for one to catch up
    /// (refreshing positions meanwhile); `None` when none does in time.
    pub(crate) async fn replica_at(&self, tried: &[usize], at: At) -> Option<usize> {
        if let Some((i, _)) = self.pick(tried, Some(at), false) {
            return Some(i);
        }
        // No replica in the rotation at all: nothing to wait for.
        self.pick_replica(tried)?;
        let deadline = tokio::time::Instant::now() + self.settings.causal_wait;
        loop {
            let _ = tokio::time::timeout_at(deadline, self.refresh_positions()).await;
            if let Some((i, _)) = self.pick(tried, Some(at), false) {
                return Some(i);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
        }
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Tells every running call to stop.
    pub(crate) fn start_closing(&self) {
        self.closing.store(true, Ordering::Release);
        self.closed_signal.notify_waiters();
    }

    /// A future that resolves at the next [`start_closing`](Self::start_closing) after its
    /// creation (check [`is_closing`](Self::is_closing) after creating it).
    pub(crate) fn closed_signal(&self) -> tokio::sync::futures::Notified<'_> {
        self.closed_signal.notified()
    }
}

/// Whether `n` may take the writes from a writer that lost them: reachable, writable, in
/// the pool, of this cluster, never deposed (a node that lost the writes takes them again only
/// after it has been seen as a replica), and promoted: on a newer timeline than writes have
/// been on (the same one when the writer was removed: the same server at a new address, as
/// when a pod restarts), or, where there are no timelines (MariaDB), seen as a standby before
/// it became writable (a node that never replicated is a second primary, not a promoted one).
fn may_take_writes<DB: Backend>(n: &Node<DB>, floor: Option<u64>, writer_removed: bool) -> bool {
    n.is_healthy()
        && !n.is_removed()
        && n.in_recovery() == Some(false)
        && !n.is_foreign()
        && !n.is_deposed()
        && match (floor, n.timeline()) {
            (None, None) => n.was_standby() || writer_removed,
            (None, Some(_)) => true,
            (Some(f), Some(t)) => t > f || (writer_removed && t == f),
            (Some(_), None) => false,
        }
}

/// `fetch_max` where `NONE` (u64::MAX) means unset.
trait MaxOrSet {
    fn fetch_max_or_set(&self, v: u64);
}

impl MaxOrSet for AtomicU64 {
    fn fetch_max_or_set(&self, v: u64) {
        let _ = self.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
            (old == NONE || old < v).then_some(v)
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;
    use crate::backend::Probe;
    use crate::balance::Balance;
    use crate::consistency::CausalSupport;
    use crate::node::Role;

    fn cluster(follow_promotion: bool) -> Arc<Cluster<sqlx::Sqlite>> {
        let node = |name: &str, role| {
            let pool = sqlx::pool::PoolOptions::<sqlx::Sqlite>::new()
                .connect_lazy("sqlite::memory:")
                .unwrap();
            Arc::new(Node::new(
                name.into(),
                role,
                "sqlite::memory:".into(),
                None,
                pool,
            ))
        };
        let settings = Settings {
            health_check_interval: Duration::from_secs(1),
            health_check_timeout: Duration::from_secs(1),
            ban_backoff: Backoff::default(),
            max_replica_lag: None,
            max_replica_lag_bytes: None,
            follow_promotion,
            max_read_retries: 2,
            statement_timeout: None,
            rules: Rules {
                support: CausalSupport::Positions,
                sticky: None,
                settle: Duration::from_secs(1),
            },
            causal_wait: Duration::from_millis(50),
            position_interval: Duration::from_millis(5),
        };
        let nodes = vec![
            node("primary", Role::Primary),
            node("replica-1", Role::Replica),
            node("replica-2", Role::Replica),
        ];
        let c = Cluster::new(nodes, settings, Balance::RoundRobin.policy());
        c.set_cluster_id(Some(1));
        c
    }

    /// A probe: `primary` (not in recovery) or a standby, on `timeline`, of cluster `id`.
    fn up(c: &Cluster<sqlx::Sqlite>, i: usize, primary: bool, timeline: u64, id: u64) {
        let probe = Probe {
            in_recovery: Some(!primary),
            position: Some(100),
            timeline: Some(timeline),
            cluster_id: Some(id),
            ..Probe::default()
        };
        c.nodes()[i].check_identity(&probe, c.cluster_id());
        c.nodes()[i].mark_up(probe);
    }

    fn down(c: &Cluster<sqlx::Sqlite>, i: usize) {
        c.nodes()[i].mark_down("refused", Backoff::default());
    }

    #[tokio::test]
    async fn a_healthy_writer_keeps_the_writes_against_a_newer_timeline() {
        let c = cluster(true);
        up(&c, 0, true, 1, 1);
        up(&c, 1, true, 2, 1); // promoted by mistake
        up(&c, 2, false, 1, 1);
        c.elect_writer();
        assert_eq!(c.writer_index(), 0);
        assert!(c.nodes()[1].status(Some(1), "primary").excluded.is_some());
        assert!(!c.nodes()[1].serves_reads());
    }

    #[tokio::test]
    async fn writes_follow_a_promotion_and_never_go_back() {
        let c = cluster(true);
        up(&c, 0, true, 1, 1);
        up(&c, 1, false, 1, 1);
        c.elect_writer();
        down(&c, 0);
        up(&c, 1, true, 2, 1);
        c.elect_writer();
        assert_eq!(c.writer_index(), 1);
        // The old primary is back, unfenced; the new one stalls.
        up(&c, 0, true, 1, 1);
        down(&c, 1);
        c.elect_writer();
        assert_eq!(c.writer_index(), 1, "never back to an older timeline");
        assert!(!c.nodes()[1].is_banned(), "the writer is never banned");
        assert!(c.check_writable().is_ok(), "writes wait for the writer");
    }

    /// A probe without timelines or identity (MariaDB): `primary` or a replica, at `gtids`.
    fn up_gtid(c: &Cluster<sqlx::Sqlite>, i: usize, primary: bool, gtids: &str) {
        let gtids: crate::GtidSet = gtids.parse().unwrap();
        c.nodes()[i].mark_up(Probe {
            in_recovery: Some(!primary),
            position: Some(gtids.total()),
            gtids: Some(gtids),
            ..Probe::default()
        });
    }

    #[tokio::test]
    async fn without_timelines_a_deposed_writer_needs_to_be_a_replica_first() {
        let c = cluster(true);
        up_gtid(&c, 0, true, "0-1-10");
        up_gtid(&c, 1, false, "0-1-10");
        up_gtid(&c, 2, false, "0-1-10");
        c.elect_writer();
        down(&c, 0);
        up_gtid(&c, 1, true, "0-1-10");
        c.elect_writer();
        assert_eq!(c.writer_index(), 1);
        // The old primary is back writable; then the promoted one dies.
        up_gtid(&c, 0, true, "0-1-10");
        down(&c, 1);
        c.elect_writer();
        assert_eq!(c.writer_index(), 1, "the old primary lost the writes");
        // An operator makes it a replica of the new primary, then promotes it again.
        up_gtid(&c, 0, false, "0-2-20");
        c.elect_writer();
        up_gtid(&c, 0, true, "0-2-20");
        c.elect_writer();
        assert_eq!(c.writer_index(), 0);
        assert!(c.nodes()[1].is_deposed());
    }

    #[tokio::test]
    async fn a_removed_writer_hands_the_writes_to_its_same_timeline_successor() {
        let c = cluster(true);
        up(&c, 0, true, 3, 1);
        up(&c, 1, false, 3, 1);
        c.elect_writer();
        // The primary at a new address (a restarted pod): writable, the same timeline.
        up(&c, 2, true, 3, 1);
        c.elect_writer();
        assert_eq!(c.writer_index(), 0, "a rival while the writer holds");
        assert!(
            c.has_other_writable(0),
            "it may take over once the writer is removed"
        );
        c.nodes()[0].remove();
        c.elect_writer();
        assert_eq!(c.writer_index(), 2);
        assert!(c.check_writable().is_ok());
        // With nobody to take over, a removed writer blocks the writes with the reason.
        let c = cluster(true);
        up(&c, 0, true, 3, 1);
        up(&c, 1, false, 3, 1);
        c.elect_writer();
        assert!(!c.has_other_writable(0));
        c.nodes()[0].remove();
        c.elect_writer();
        assert!(c.check_writable().unwrap_err().contains("removed"));
    }

    #[tokio::test]
    async fn without_timelines_a_node_that_never_replicated_is_not_promoted() {
        let c = cluster(true);
        up_gtid(&c, 0, true, "0-1-10");
        up_gtid(&c, 2, true, "0-3-4"); // a second primary from the start
        c.elect_writer();
        down(&c, 0);
        c.elect_writer();
        assert_eq!(c.writer_index(), 0, "never seen following a primary");
        up_gtid(&c, 1, false, "0-1-10");
        up_gtid(&c, 1, true, "0-1-10"); // promoted
        c.elect_writer();
        assert_eq!(c.writer_index(), 1);
    }

    #[tokio::test]
    async fn gtid_lag_is_in_transactions_per_domain() {
        let c = cluster(true);
        up_gtid(&c, 0, true, "0-1-100,1-1-5");
        up_gtid(&c, 1, false, "0-1-90,1-1-5");
        up_gtid(&c, 2, false, "0-1-100,1-1-5");
        c.elect_writer();
        c.update_lag();
        let lag = |i: usize| c.nodes()[i].status(None, "primary").lag_bytes;
        assert_eq!((lag(1), lag(2)), (Some(10), Some(0)));
        let want = crate::consistency::At {
            position: 100,
            timeline: None,
            gtids: Some("0-1-95".parse().unwrap()),
        };
        assert!(!c.nodes()[1].covers(&want) && c.nodes()[2].covers(&want));
        assert_eq!(c.pick(&[], Some(want), false).map(|(i, _)| i), Some(2));
    }

    #[tokio::test]
    async fn a_writer_behind_or_foreign_blocks_the_writes() {
        let c = cluster(true);
        up(&c, 0, true, 2, 1);
        c.elect_writer();
        // Its address now leads to an old primary on timeline 1.
        up(&c, 0, true, 1, 1);
        c.elect_writer();
        assert!(c.check_writable().unwrap_err().contains("older timeline"));
        // Or to another cluster's node.
        up(&c, 0, true, 2, 9);
        c.elect_writer();
        assert!(c.check_writable().unwrap_err().contains("another cluster"));
        // A node of another cluster on a newer timeline never takes the writes.
        up(&c, 2, true, 5, 9);
        c.elect_writer();
        assert_eq!(c.writer_index(), 0);
    }

    #[tokio::test]
    async fn without_follow_promotion_a_lost_writer_blocks_the_writes() {
        let c = cluster(false);
        up(&c, 0, true, 1, 1);
        c.elect_writer();
        down(&c, 0);
        up(&c, 1, true, 2, 1);
        c.elect_writer();
        assert_eq!(c.writer_index(), 0);
        assert!(
            c.check_writable()
                .unwrap_err()
                .contains("follow_promotion is off")
        );
    }
}
