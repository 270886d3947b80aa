//! [`Shared`]: what every handle of one pool shares, how it starts and how it closes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use futures_util::future::join_all;
use sqlx::Connection;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::builder::Hooks;
use super::connect;
use crate::backend::Backend;
use crate::causal::{
    CausalSupport, ClusterKey, Consistency, HighWater, Rules, STICKY_FALLBACK, settle_window,
};
use crate::cluster::{Cluster, Settings};
use crate::config::Config;
use crate::config::Scope;
use crate::error::Error;
use crate::health;
use crate::node::Node;
use crate::refresh::Refresher;
use crate::route::Router;
use crate::sync::lock;
use crate::topology::Member;

/// Everything the pool handles share.
pub(crate) struct Shared<DB: Backend> {
    pub(crate) cluster: Arc<Cluster<DB>>,
    pub(crate) router: Router,
    /// Replay positions refreshed on demand for reads that wait for a position.
    pub(crate) refresher: Refresher,
    /// The cluster's read-your-writes state in this process, shared with every other pool
    /// of the cluster: found once the cluster's identity is known (see
    /// [`high_water`](Self::high_water)).
    high_water: OnceLock<Arc<HighWater>>,
    /// Whether this pool tracks positions for read-your-writes at all (backends with log
    /// positions, consistency not off).
    tracks: bool,
    /// A write was counted before the shared state was found (a lazily connected pool
    /// before its first probe): counted into it once found.
    early_write: AtomicBool,
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
    /// What nodes added later are built with.
    pub(super) config: Config,
    pub(super) hooks: Hooks<DB>,
    /// Serialises membership changes.
    pub(super) membership: tokio::sync::Mutex<()>,
    /// The discovery task, when something discovers members.
    pub(super) discovery: Mutex<Option<JoinHandle<()>>>,
    /// The journals open on this pool ([`ReplicaPool::journal`](super::ReplicaPool::journal)).
    pub(super) journals: Arc<super::journal::Journals>,
    /// The simulated replicas' snapshot task, if the pool has any.
    simulation: Mutex<Option<JoinHandle<()>>>,
    /// The credentials task, with rotating credentials.
    rotation: Mutex<Option<JoinHandle<()>>>,
}

/// The settings the cluster, the tasks and the query path read, from the configuration.
fn settings<DB: Backend>(config: &Config, nodes: &[Arc<Node<DB>>]) -> Settings {
    let support = causal_support::<DB>(nodes);
    Settings {
        health_check_interval: config.health_check_interval,
        health_check_timeout: config.health_check_timeout,
        ban_backoff: config.ban_backoff,
        max_replica_lag: config.max_replica_lag,
        max_replica_lag_bytes: config.max_replica_lag_bytes,
        follow_promotion: config.follow_promotion,
        max_read_retries: config.max_read_retries,
        statement_timeout: config.statement_timeout,
        rules: Rules {
            support,
            sticky: match (config.consistency, support) {
                (Consistency::StickyFor(d), _) => Some(d),
                (Consistency::Causal, CausalSupport::Unsupported) => Some(STICKY_FALLBACK),
                (Consistency::Causal, _) => None,
            },
            settle: settle_window(config.statement_timeout),
            scope: config.consistency_scope,
        },
        causal_wait: config.causal_wait,
        position_interval: config.position_interval,
        idle_probe_after: config.idle_probe_after,
        wake_timeout: config.acquire_timeout.max(config.health_check_timeout),
    }
}

/// What the pool offers for read-your-writes: the backend's, except that SQLite with
/// simulated replicas (which lag) tracks positions like the others (its readers of the same
/// file otherwise see every write at once).
fn causal_support<DB: Backend>(nodes: &[Arc<Node<DB>>]) -> CausalSupport {
    match DB::CAUSAL {
        CausalSupport::Immediate if nodes.iter().any(|n| n.simulated.is_some()) => {
            CausalSupport::Positions
        }
        support => support,
    }
}

/// The cluster's identity in the process, for its shared read-your-writes state:
/// PostgreSQL's system identifier (`None` until a probe has read it), else (MariaDB) the
/// address of the node taking writes.
fn cluster_key<DB: Backend>(cluster: &Cluster<DB>) -> Option<ClusterKey> {
    match (DB::CAUSAL, cluster.cluster_id()) {
        (_, Some(id)) => Some(ClusterKey::System(id)),
        (CausalSupport::Positions, None) => None,
        // SQLite (with simulated replicas): the database file.
        _ => Some(ClusterKey::Address(crate::topology::host_port(
            &cluster.writer().url,
        ))),
    }
}

impl<DB: Backend> Shared<DB> {
    /// Builds the nodes (the declared ones and what the discovery sources name now), probes
    /// them all at once, decides the first view, and starts the health task.
    pub(crate) async fn connect(
        members: Vec<Member>,
        config: Config,
        hooks: Hooks<DB>,
    ) -> Result<Self, Error> {
        config.validate().map_err(Error::Config)?;
        let mut members = members;
        let discovered = connect::discovered_members(&config, &hooks).await;
        members.extend(discovered.members);
        if members.is_empty()
            && let Some(reasons) = discovered.failure
        {
            return Err(Error::NoNodeAnswered { reasons });
        }
        // Rotating credentials: the nodes are built logging in with the first one.
        if let Some(rotation) = &hooks.credentials {
            super::rotate::first(rotation, config.acquire_timeout).await?;
        }
        let nodes = connect::build_nodes(members, &config, &hooks)?;
        let settings = settings::<DB>(&config, &nodes);
        // Simulated replicas take their first snapshot before the first probes.
        let ring = nodes.iter().find_map(|n| n.simulated.clone());
        let cluster = Arc::new(Cluster::new(nodes, settings, config.balance.policy()));
        let mut simulation = None;
        if let Some(ring) = ring {
            simulation = spawn_simulation(&cluster);
            if ring.first(config.acquire_timeout).await.is_none()
                && let Some(why) = ring.failure()
            {
                ring.close();
                return Err(Error::Config(format!(
                    "simulated replicas cannot hold a snapshot: {why}"
                )));
            }
        }
        connect::first_round(&cluster, &config).await?;
        // Replicas that lack a database just created on the primary catch up in moments.
        let behind: Vec<usize> = {
            let snapshot = cluster.snapshot();
            let view = &snapshot.view;
            (0..view.nodes.len())
                .filter(|&i| view.nodes[i].behind)
                .collect()
        };
        for i in behind {
            health::recheck_soon(&cluster, i);
        }
        if let Some(limit) = hooks.wait_for_replicas {
            health::wait_for_replicas(&cluster, limit).await;
        }
        // Warm the pools of the nodes that answered, in the background: `connect` does not
        // wait for (or fail on) a slow replica's connections.
        if config.min_connections > 0 {
            let warm: Vec<_> = {
                let snapshot = cluster.snapshot();
                let up = snapshot.nodes.iter().zip(&snapshot.view.nodes);
                up.filter(|(_, v)| v.healthy)
                    .map(|(n, _)| n.clone())
                    .collect()
            };
            tokio::spawn(async move {
                join_all(warm.iter().map(|n| n.open_min_connections())).await;
            });
        }
        let shared = Shared::start(cluster, settings, config, hooks, false, simulation);
        shared.high_water();
        #[cfg(feature = "patroni")]
        shared.apply_patroni_states(&discovered.patroni);
        Ok(shared)
    }

    /// Builds the nodes and starts the health task without waiting for any node: its first
    /// round runs at once, in the background. Until a node has answered it is out of the
    /// rotation (reads use the declared primary). Needs a Tokio runtime.
    pub(crate) fn connect_lazy(
        members: Vec<Member>,
        config: Config,
        hooks: Hooks<DB>,
    ) -> Result<Self, Error> {
        config.validate().map_err(Error::Config)?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Config(
                "connect_lazy must be called inside a Tokio runtime (it starts the health task)"
                    .into(),
            ));
        }
        let nodes = connect::build_nodes(members, &config, &hooks)?;
        let settings = settings::<DB>(&config, &nodes);
        let cluster = Arc::new(Cluster::new(nodes, settings, config.balance.policy()));
        let simulation = spawn_simulation(&cluster);
        Ok(Shared::start(
            cluster, settings, config, hooks, true, simulation,
        ))
    }

    fn start(
        cluster: Arc<Cluster<DB>>,
        settings: Settings,
        config: Config,
        hooks: Hooks<DB>,
        probe_now: bool,
        simulation: Option<JoinHandle<()>>,
    ) -> Self {
        let (tx, rx) = oneshot::channel();
        let task = health::spawn(Arc::downgrade(&cluster), settings, rx, probe_now);
        let rotation = hooks
            .credentials
            .clone()
            .map(|r| super::rotate::spawn(Arc::downgrade(&cluster), r, config.acquire_timeout));
        Shared {
            cluster,
            router: config.router(DB::DIALECT),
            refresher: Refresher::default(),
            high_water: OnceLock::new(),
            tracks: settings.rules.support.by_position() && config.consistency_scope != Scope::Off,
            early_write: AtomicBool::new(false),
            shutdown: Mutex::new(Some(tx)),
            task: Mutex::new(Some(task)),
            closed: AtomicBool::new(false),
            config,
            hooks,
            membership: tokio::sync::Mutex::new(()),
            discovery: Mutex::new(None),
            journals: Arc::default(),
            simulation: Mutex::new(simulation),
            rotation: Mutex::new(rotation),
        }
    }

    /// Whether this pool (process scope) wrote before its cluster was identified (a lazily
    /// built pool before its first probes): its reads go to the primary until then.
    pub(crate) fn wrote_before_identified(&self) -> bool {
        self.cluster.settings.rules.scope == Scope::Process
            && self.early_write.load(Ordering::SeqCst)
            && self.high_water().is_none()
    }

    /// The cluster's shared read-your-writes state, once its identity is known.
    pub(crate) fn high_water(&self) -> Option<&Arc<HighWater>> {
        if let Some(hw) = self.high_water.get() {
            return Some(hw);
        }
        if !self.tracks {
            return None;
        }
        let key = cluster_key(&self.cluster)?;
        let hw = self.high_water.get_or_init(|| HighWater::shared(key));
        if self.early_write.load(Ordering::SeqCst) {
            hw.wrote();
        }
        Some(hw)
    }

    /// The shared state plain `&pool` reads follow, when the scope is the process.
    pub(crate) fn process_high_water(&self) -> Option<&Arc<HighWater>> {
        match self.cluster.settings.rules.scope {
            Scope::Process => self.high_water(),
            _ => None,
        }
    }

    /// Counts something that may write and holds a connection on the primary now.
    pub(crate) fn wrote(&self) {
        match self.high_water() {
            Some(hw) => hw.wrote(),
            None if self.tracks => {
                self.early_write.store(true, Ordering::SeqCst);
                // Found meanwhile: it may have looked at the flag before we set it.
                if let Some(hw) = self.high_water.get() {
                    hw.wrote();
                }
            }
            None => {}
        }
    }

    /// The consistency rules of this pool's sessions.
    pub(crate) fn rules(&self) -> Rules {
        self.cluster.settings.rules
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Stops the health task and closes every node's pool. Running calls get
    /// `health_check_timeout` to finish; then they are interrupted (they fail with
    /// `PoolClosed`), so `close` returns promptly even when a node hangs. Idempotent.
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(tx) = lock(&self.shutdown).take() {
            let _ = tx.send(());
        }
        let task = lock(&self.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        if let Some(discovery) = lock(&self.discovery).take() {
            discovery.abort();
        }
        if let Some(rotation) = lock(&self.rotation).take() {
            rotation.abort();
        }
        let nodes = Arc::clone(&self.cluster.snapshot().nodes);
        for ring in nodes.iter().filter_map(|n| n.simulated.as_ref()) {
            ring.close();
        }
        // Its snapshots released and connections closed (after the reads on them).
        let simulation = lock(&self.simulation).take();
        if let Some(task) = simulation {
            let grace = self.cluster.settings.health_check_timeout;
            let _ = tokio::time::timeout(grace, task).await;
        }
        join_all(
            nodes
                .iter()
                .filter_map(|n| n.take_probe_connection())
                .map(|c| c.close()),
        )
        .await;
        let close_all = || join_all(nodes.iter().map(|n| n.pool.close()));
        let grace = self.cluster.settings.health_check_timeout;
        if tokio::time::timeout(grace, close_all()).await.is_err() {
            tracing::warn!(?grace, "calls still running at close; interrupting them");
            self.cluster.start_closing();
            // Connections checked out through `primary()` / `replica()` are not ours to
            // interrupt: stop waiting for them after another grace period; the pools are
            // closed already and close each one when it comes back.
            if tokio::time::timeout(grace, close_all()).await.is_err() {
                tracing::warn!("connections still checked out at close; they close when returned");
            }
        }
    }
}

/// Starts the snapshot ring of the cluster's simulated replicas, if it has any.
fn spawn_simulation<DB: Backend>(cluster: &Cluster<DB>) -> Option<JoinHandle<()>> {
    let nodes = Arc::clone(&cluster.snapshot().nodes);
    let simulated: Vec<_> = nodes
        .iter()
        .filter(|n| n.simulated.is_some())
        .cloned()
        .collect();
    let ring = simulated.first().and_then(|n| n.simulated.clone())?;
    crate::simulate::spawn(&ring, &simulated)
}
