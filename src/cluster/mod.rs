//! The nodes as a whole: observe → decide → publish.
//!
//! Probes (and membership sources) report [`Event`]s; [`decide`](decide::decide) makes the
//! next [`View`] from the previous one (pure); the cluster publishes the view and the member
//! list together with one atomic swap ([`Snapshot`]), then logs, counts and wakes what the
//! difference concerns (a node that left the rotation, writes that moved). The query path
//! reads one snapshot per statement and never takes a lock.

mod decide;
mod publish;
#[cfg(test)]
mod tests;
mod view;

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::backend::Backend;
use crate::balance::{Load, Policy};
use crate::causal::Rules;
use crate::config::Backoff;
use crate::node::Node;
use crate::positions::At;
use crate::status::NodeStatus;
use crate::sync::lock;
pub(crate) use decide::{Event, Observation, has_other_writable};
pub(crate) use view::{NodeView, View};

/// Settings the health task, the decisions and the query path read.
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
    /// Stop probing the replicas after this long without a statement
    /// ([`Config::idle_probe_after`](crate::Config::idle_probe_after)).
    pub(crate) idle_probe_after: Option<Duration>,
    /// How long a read waits for the on-demand probe of a replica the pool stopped probing
    /// (it may be waking up): the acquire timeout.
    pub(crate) wake_timeout: Duration,
}

const NONE: u64 = u64::MAX;

/// What the query path reads once per statement: the members and the view decided about
/// them, published together.
pub(crate) struct Snapshot<DB: Backend> {
    /// Every member, in the order they joined. Append-only, so an index names the same node
    /// for the pool's whole life (a removed node stays, marked removed in the view).
    pub(crate) nodes: Arc<[Arc<Node<DB>>]>,
    pub(crate) view: View,
}

impl<DB: Backend> Snapshot<DB> {
    /// The node that takes writes.
    pub(crate) fn writer(&self) -> &Arc<Node<DB>> {
        &self.nodes[self.view.writer.min(self.nodes.len() - 1)]
    }

    /// The member at `index` with what was decided about it.
    pub(crate) fn member(&self, index: usize) -> (&Arc<Node<DB>>, &NodeView) {
        (&self.nodes[index], &self.view.nodes[index])
    }
}

pub(crate) struct Cluster<DB: Backend> {
    current: ArcSwap<Snapshot<DB>>,
    /// Serialises decisions (and membership changes, which are decisions too).
    deciding: Mutex<()>,
    pub(crate) settings: Settings,
    policy: Box<dyn Policy>,
    /// Woken when writes move to another node.
    writer_moved: Notify,
    closing: AtomicBool,
    /// How long the last health round took, in microseconds (`NONE`: none ran yet).
    last_round_micros: AtomicU64,
}

impl<DB: Backend> Cluster<DB> {
    /// A cluster of these members, nothing observed yet (the first of them is the writer
    /// until the first election).
    pub(crate) fn new(
        nodes: Vec<Arc<Node<DB>>>,
        settings: Settings,
        policy: Box<dyn Policy>,
    ) -> Self {
        let view = View::new(nodes.iter().map(|n| (n.role, n.name.clone())));
        Cluster {
            current: ArcSwap::from_pointee(Snapshot {
                nodes: nodes.into(),
                view,
            }),
            deciding: Mutex::new(()),
            settings,
            policy,
            writer_moved: Notify::new(),
            closing: AtomicBool::new(false),
            last_round_micros: AtomicU64::new(NONE),
        }
    }

    /// The members and the view, as of now: one atomic load.
    pub(crate) fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot<DB>>> {
        self.current.load()
    }

    /// Applies `events`: decides the next view and publishes it.
    pub(crate) fn apply(&self, events: &[Event]) {
        self.next(None, |_| Cow::Borrowed(events));
    }

    /// Adds a member with what its first probe saw; returns its index.
    pub(crate) fn join(&self, node: Arc<Node<DB>>, first: Observation) -> usize {
        let events = |index| {
            Cow::Owned(vec![
                Event::Joined(node.role, node.name.clone()),
                Event::Observed(index, first),
                Event::Round,
            ])
        };
        self.next(Some(Arc::clone(&node)), events)
    }

    /// One step, one at a time: the members (plus `joining`), the view decided from the
    /// events (given the index the next member would take), published together; then what
    /// the difference concerns is logged and woken. Returns that index.
    fn next<'e>(
        &self,
        joining: Option<Arc<Node<DB>>>,
        events: impl FnOnce(usize) -> Cow<'e, [Event]>,
    ) -> usize {
        let _one_at_a_time = lock(&self.deciding);
        let old = self.current.load_full();
        let index = old.nodes.len();
        let nodes = match joining {
            None => Arc::clone(&old.nodes),
            Some(node) => old.nodes.iter().cloned().chain([node]).collect(),
        };
        let view = decide::decide(&old.view, &events(index), &self.settings, Instant::now());
        let new = Arc::new(Snapshot { nodes, view });
        self.current.store(Arc::clone(&new));
        publish::publish(&old, &new, &self.writer_moved);
        index
    }

    /// Records how long a health round took.
    pub(crate) fn round_took(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(NONE - 1);
        self.last_round_micros.store(micros, Ordering::Relaxed);
    }

    /// How long the last health round took.
    pub(crate) fn last_round(&self) -> Option<Duration> {
        match self.last_round_micros.load(Ordering::Relaxed) {
            NONE => None,
            micros => Some(Duration::from_micros(micros)),
        }
    }

    /// The member at `index`.
    pub(crate) fn node(&self, index: usize) -> Arc<Node<DB>> {
        Arc::clone(&self.snapshot().nodes[index])
    }

    /// The first member: the declared primary, when there is one.
    pub(crate) fn first(&self) -> Arc<Node<DB>> {
        self.node(0)
    }

    /// The node that takes writes now.
    pub(crate) fn writer(&self) -> Arc<Node<DB>> {
        Arc::clone(self.snapshot().writer())
    }

    /// Resolves when writes next move to another node. Register (`enable`) before reading
    /// the writer, so a move in between is not missed.
    pub(crate) fn writer_moved(&self) -> tokio::sync::futures::Notified<'_> {
        self.writer_moved.notified()
    }

    /// The cluster's identity: the first writer's system identifier.
    pub(crate) fn cluster_id(&self) -> Option<u64> {
        self.snapshot().view.cluster_id
    }

    /// The next replica that serves reads in `snapshot`, by the balancing policy, skipping
    /// `tried` (member indices), among those known to have replayed `at` when given, and
    /// among those not saturated when `free` (so a full pool does not make a read wait
    /// while another replica idles); `None` when there is none. With a preferred zone, its
    /// replicas first: the others only when none of those qualifies.
    pub(crate) fn pick(
        &self,
        snapshot: &Snapshot<DB>,
        tried: &[usize],
        at: Option<&At>,
        free: bool,
    ) -> Option<usize> {
        // Candidates on the stack: this runs for every read, and pools have a handful of
        // replicas (more than `MAX` is served by the first `MAX` in the rotation).
        const MAX: usize = 32;
        let mut index = [0usize; MAX];
        let mut loads = [Load::default(); MAX];
        let mut n = 0;
        // Replicas of the preferred zone first (all of them are, without one); the others
        // only when none of those qualifies.
        let mut elsewhere = false;
        for local_only in [true, false] {
            for &i in &snapshot.view.readable {
                let node = &snapshot.nodes[i];
                if tried.contains(&i)
                    || at.is_some_and(|at| !node.covers(at))
                    || (free && node.is_saturated())
                {
                    continue;
                }
                if local_only && !node.local {
                    elsewhere = true;
                    continue;
                }
                if !local_only && node.local {
                    continue;
                }
                index[n] = i;
                loads[n] = node.load();
                n += 1;
                if n == MAX {
                    break;
                }
            }
            if n > 0 || !elsewhere {
                break;
            }
        }
        match n {
            0 => None,
            1 => Some(index[0]),
            _ => Some(index[self.policy.pick(&loads[..n]).min(n - 1)]),
        }
    }

    /// The next replica that serves reads, or the writer when none does.
    pub(crate) fn reader(&self) -> (usize, Arc<Node<DB>>) {
        let snapshot = self.snapshot();
        let i = self
            .pick(&snapshot, &[], None, false)
            .unwrap_or(snapshot.view.writer);
        (i, Arc::clone(&snapshot.nodes[i]))
    }

    /// Every member still in the pool, as `status()` shows it.
    pub(crate) fn status(&self) -> Vec<NodeStatus> {
        let snapshot = self.snapshot();
        let view = &snapshot.view;
        let writer = &view.nodes[view.writer].name;
        let mut rows = snapshot
            .nodes
            .iter()
            .zip(&view.nodes)
            .enumerate()
            .filter(|(_, (_, v))| !v.removed)
            .map(|(i, (node, v))| status_row(node, v, view.cluster_id, i == view.writer, writer))
            .collect::<Vec<_>>();
        // The writer first (a promoted replica moves up), the others in their order.
        rows.sort_by_key(|n| !n.writer);
        rows
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Tells every running call to stop: each waits on its node's
    /// [`left_rotation`](Node::left_rotation) signal (one wake-up to register per statement,
    /// not two), which closing fires on every node.
    pub(crate) fn start_closing(&self) {
        self.closing.store(true, Ordering::Release);
        for node in self.snapshot().nodes.iter() {
            node.notify_left();
        }
    }
}

/// One row of `status()`: the node's counters and what was decided about it.
fn status_row<DB: Backend>(
    node: &Node<DB>,
    view: &NodeView,
    cluster: Option<u64>,
    is_writer: bool,
    writer: &str,
) -> NodeStatus {
    let c = node.counters();
    let replica = view.is_standby();
    NodeStatus {
        name: node.name.clone(),
        url: node.url.clone(),
        role: node.role,
        writer: is_writer,
        healthy: view.healthy,
        lagging: view.lagging,
        in_recovery: view.in_recovery,
        lag_bytes: replica.then_some(view.lag_bytes),
        lag: replica.then_some(view.lag),
        queries: c.queries,
        errors: c.errors,
        retries: c.retries,
        replans: c.replans,
        misroutes: c.misroutes,
        in_flight: c.in_flight,
        latency: c.latency,
        connections: node.pool.size(),
        idle: node.pool.num_idle(),
        last_error: view.last_error.clone(),
        state: NodeStatus::state_of(
            view.healthy,
            view.excluded(cluster, writer).is_some(),
            view.lagging,
            view.resting,
        ),
        excluded: view.excluded(cluster, writer),
        timeline: view.timeline,
        gtid_position: view.gtids.map(|g| g.to_string()),
        replication: view.replication.clone(),
        origin: node.origin,
        zone: node.zone.clone(),
    }
}
