//! The machinery behind [`ReplicaPool`](super::ReplicaPool): building the nodes, getting a
//! connection for a statement, shutting down.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::join_all;
use sqlx::Connection;
use sqlx::pool::{PoolConnection, PoolOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::builder::Hooks;
use crate::backend::Backend;
use crate::cluster::{Cluster, Settings};
use crate::consistency::{
    CausalSupport, Consistency, ReadAt, Rules, STICKY_FALLBACK, SessionState, now_ms, settle_window,
};
use crate::node::{Busy, Node, Role};
use crate::route::Router;
use crate::topology::Member;
use crate::{Config, Error, health, redact};

type Options<DB> = <<DB as sqlx::Database>::Connection as Connection>::Options;

/// Everything the pool handles share.
pub(crate) struct Shared<DB: Backend> {
    pub(crate) cluster: Arc<Cluster<DB>>,
    pub(crate) router: Router,
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
    /// What nodes added later are built with.
    config: Config,
    hooks: Hooks<DB>,
    /// Serialises membership changes.
    membership: tokio::sync::Mutex<()>,
    /// The discovery task, when something discovers members.
    pub(crate) discovery: Mutex<Option<JoinHandle<()>>>,
}

/// A connection and the node (index, node) it came from.
/// A connection, the node (index, node) it came from, and the statement's place in that
/// node's load (counted from before the wait for a connection, so queued statements count).
pub(crate) type Checkout<DB> = (usize, Arc<Node<DB>>, PoolConnection<DB>, Busy<DB>);

impl<DB: Backend> Shared<DB> {
    pub(crate) async fn connect(
        members: Vec<Member>,
        config: Config,
        hooks: Hooks<DB>,
    ) -> Result<Self, Error> {
        config.validate().map_err(Error::Config)?;
        let mut members = members;
        for source in &hooks.dns {
            match source.lookup(&hooks.resolver).await {
                Ok(addrs) => members.extend(addrs.into_iter().map(|a| Member {
                    url: source.url_for(a),
                    role: source.role,
                    origin: crate::topology::Origin::Dns,
                    name: Some(source.node_name(a)),
                })),
                // Looked up again every discovery interval.
                Err(e) => tracing::warn!(name = %source.host, error = %e, "DNS lookup failed"),
            }
        }
        #[cfg(feature = "patroni")]
        let mut patroni_errors = Vec::new();
        // What Patroni said of them, applied once the nodes exist.
        #[cfg(feature = "patroni")]
        let mut patroni_said = Vec::new();
        #[cfg(feature = "patroni")]
        for source in &hooks.patroni {
            match source.members(config.acquire_timeout).await {
                Ok(found) => {
                    for m in &found {
                        match source.url_for(m) {
                            Ok(url) => members.push(Member {
                                url,
                                role: Role::Discovered,
                                origin: crate::topology::Origin::Patroni,
                                name: Some(m.name.clone()),
                            }),
                            Err(e) => tracing::warn!(error = %e, "a Patroni member is skipped"),
                        }
                    }
                    patroni_said.extend(found);
                }
                Err(e) => patroni_errors.push(e),
            }
        }
        if members.is_empty() {
            #[cfg(feature = "patroni")]
            if !patroni_errors.is_empty() {
                return Err(Error::NoNodeAnswered {
                    reasons: format!(
                        "no Patroni endpoint answered: {}",
                        patroni_errors.join("; ")
                    ),
                });
            }
            if !hooks.dns.is_empty() {
                return Err(Error::NoNodeAnswered {
                    reasons: "no DNS name resolved to an address".into(),
                });
            }
        }
        let nodes = build_nodes(members, &config, &hooks)?;
        let settings = Settings {
            health_check_interval: config.health_check_interval,
            health_check_timeout: config.health_check_timeout,
            ban_backoff: config.ban_backoff,
            max_replica_lag: config.max_replica_lag,
            max_replica_lag_bytes: config.max_replica_lag_bytes,
            follow_promotion: config.follow_promotion,
            max_read_retries: config.max_read_retries,
            statement_timeout: config.statement_timeout,
            rules: Rules {
                support: DB::CAUSAL,
                sticky: match (config.consistency, DB::CAUSAL) {
                    (Consistency::StickyFor(d), _) => Some(d),
                    (Consistency::Causal, CausalSupport::Unsupported) => Some(STICKY_FALLBACK),
                    (Consistency::Causal, _) => None,
                },
                settle: settle_window(config.statement_timeout),
            },
            causal_wait: config.causal_wait,
            position_interval: config.position_interval,
        };
        let cluster = Cluster::new(nodes, settings, config.balance.policy());

        first_round(&cluster, &config).await?;
        cluster.elect_writer();
        cluster.update_lag();
        // Warm the pools of the nodes that answered, in the background: `connect` does not
        // wait for (or fail on) a slow replica's connections.
        if config.min_connections > 0 {
            let warm: Vec<_> = cluster
                .nodes()
                .iter()
                .filter(|n| n.is_healthy())
                .cloned()
                .collect();
            tokio::spawn(async move {
                join_all(warm.iter().map(|n| n.open_min_connections())).await;
            });
        }

        let (tx, rx) = oneshot::channel();
        let task = health::spawn(Arc::downgrade(&cluster), settings, rx);
        let shared = Shared {
            cluster,
            router: config.router(DB::DIALECT),
            shutdown: Mutex::new(Some(tx)),
            task: Mutex::new(Some(task)),
            closed: AtomicBool::new(false),
            config,
            hooks,
            membership: tokio::sync::Mutex::new(()),
            discovery: Mutex::new(None),
        };
        #[cfg(feature = "patroni")]
        shared.apply_patroni_states(&patroni_said);
        Ok(shared)
    }

    /// Adds one node while the pool runs (see [`ReplicaPool::add_node`]); returns its name.
    ///
    /// [`ReplicaPool::add_node`]: super::ReplicaPool::add_node
    pub(crate) async fn add_node(&self, url: &str, role: Role) -> Result<String, Error> {
        let hosts = crate::topology::split_hosts(url).map_err(|reason| Error::InvalidUrl {
            node: "?".into(),
            url: redact::redact_url(url),
            reason,
        })?;
        if hosts.len() != 1 {
            return Err(Error::Membership(format!(
                "{} names {} hosts: add one node at a time",
                redact::redact_url(url),
                hosts.len()
            )));
        }
        let joined = self
            .join(url, role, crate::topology::Origin::Added, None, false)
            .await?;
        Ok(joined.expect("joins without a probe"))
    }

    /// Builds a node, probes it (its identity checked) and adds it; with `must_answer`, only
    /// if the probe succeeded (`Ok(None)` otherwise), else it joins unhealthy and the health
    /// task keeps probing it. Named `name`, or by its role (`replica-N`) or `host:port`.
    pub(crate) async fn join(
        &self,
        url: &str,
        role: Role,
        origin: crate::topology::Origin,
        name: Option<String>,
        must_answer: bool,
    ) -> Result<Option<String>, Error> {
        let _one_at_a_time = self.membership.lock().await;
        let nodes = self.cluster.nodes().clone();
        let taken = |name: &str| nodes.iter().any(|n| n.name == name && !n.is_removed());
        let base = match (role, name) {
            (_, Some(name)) => name,
            (Role::Replica, None) => format!(
                "replica-{}",
                nodes.iter().filter(|n| n.role == Role::Replica).count() + 1
            ),
            (_, None) => crate::topology::host_port(url),
        };
        let name = unique_name(&base, taken);
        let node = Arc::new(
            node::<DB>(name.clone(), role, url, &self.config, &self.hooks)?.with_origin(origin),
        );
        let outcome = tokio::time::timeout(
            self.cluster.settings.health_check_timeout,
            health::probe(&*node),
        )
        .await;
        if must_answer && !matches!(outcome, Ok(Ok(_))) {
            node.pool.close().await;
            return Ok(None);
        }
        health::record(&self.cluster, &node, outcome);
        tracing::info!(node = %name, %origin, "node joins the pool");
        self.cluster.add(node);
        self.cluster.elect_writer();
        self.cluster.update_lag();
        Ok(Some(name))
    }

    /// One round of discovery: every DNS name is looked up; new addresses join (after a
    /// successful probe), vanished ones drain and close.
    pub(crate) async fn discover(&self) {
        #[cfg(feature = "patroni")]
        for source in &self.hooks.patroni {
            self.discover_patroni(source).await;
        }
        for source in &self.hooks.dns {
            let addrs = match source.lookup(&self.hooks.resolver).await {
                Ok(a) if !a.is_empty() => a,
                Ok(_) => {
                    tracing::warn!(name = %source.host, "DNS name has no address; members kept");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(name = %source.host, error = %e, "DNS lookup failed; members kept");
                    continue;
                }
            };
            let wanted: Vec<(String, std::net::SocketAddr)> =
                addrs.iter().map(|a| (source.node_name(*a), *a)).collect();
            let current: Vec<String> = self
                .cluster
                .nodes()
                .iter()
                .filter(|n| {
                    n.origin == crate::topology::Origin::Dns
                        && !n.is_removed()
                        && source.owns(&n.name)
                })
                .map(|n| n.name.clone())
                .collect();
            for (name, addr) in &wanted {
                if !current.contains(name)
                    && let Err(e) = self
                        .join(
                            &source.url_for(*addr),
                            source.role,
                            crate::topology::Origin::Dns,
                            Some(name.clone()),
                            true,
                        )
                        .await
                {
                    tracing::warn!(node = %name, error = %e, "a discovered address cannot join");
                }
            }
            for name in current {
                if !wanted.iter().any(|(w, _)| *w == name)
                    && let Err(e) = self.remove_node(&name).await
                {
                    tracing::warn!(node = %name, error = %e, "a vanished address stays");
                }
            }
        }
    }

    /// Whether anything outside the configuration names members (DNS names, Patroni).
    pub(crate) fn discovers(&self) -> bool {
        #[cfg(feature = "patroni")]
        if !self.hooks.patroni.is_empty() {
            return true;
        }
        !self.hooks.dns.is_empty()
    }

    /// One round of Patroni discovery: members join and leave, Patroni's word on each keeps
    /// it out of the reads or not, and a new leader is probed at once with the writer.
    #[cfg(feature = "patroni")]
    async fn discover_patroni(&self, source: &crate::patroni::PatroniSource) {
        use crate::topology::{Origin, host_port};
        let timeout = self.cluster.settings.health_check_timeout;
        let members = match source.members(timeout).await {
            Ok(m) if !m.is_empty() => m,
            Ok(_) => {
                tracing::warn!("Patroni reports no member; members kept");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "Patroni did not answer; members kept");
                return;
            }
        };
        let ours: Vec<Arc<Node<DB>>> = self
            .cluster
            .nodes()
            .iter()
            .filter(|n| n.origin == Origin::Patroni && !n.is_removed())
            .cloned()
            .collect();
        for m in &members {
            let at = format!("{}:{}", m.host, m.port);
            let known = ours.iter().find(|n| n.name == m.name);
            if known.is_some_and(|n| host_port(&n.url) == at) {
                continue;
            }
            if known.is_some() {
                // The member moved: the old address drains, the new one joins (not while
                // the old one stays, e.g. it takes the writes and no other node can).
                if let Err(e) = self.remove_node(&m.name).await {
                    tracing::warn!(member = %m.name, error = %e, "a moved Patroni member stays at its old address");
                    continue;
                }
            }
            let url = match source.url_for(m) {
                Ok(url) => url,
                Err(e) => {
                    tracing::warn!(error = %e, "a Patroni member is skipped");
                    continue;
                }
            };
            if let Err(e) = self
                .join(
                    &url,
                    Role::Discovered,
                    Origin::Patroni,
                    Some(m.name.clone()),
                    false,
                )
                .await
            {
                tracing::warn!(member = %m.name, error = %e, "a Patroni member cannot join");
            }
        }
        for n in &ours {
            if !members.iter().any(|m| m.name == n.name)
                && let Err(e) = self.remove_node(&n.name).await
            {
                tracing::warn!(node = %n.name, error = %e, "a member Patroni no longer lists stays");
            }
        }
        self.apply_patroni_states(&members);
        // A leader that does not take the writes yet: probe it and the writer now.
        let nodes = self.cluster.nodes().clone();
        if let Some(leader) = members
            .iter()
            .filter(|m| m.is_leader() && m.is_running())
            .find_map(|m| patroni_node(&nodes, m))
            && !leader.is_writer()
        {
            let writer = self.cluster.writer();
            tokio::join!(
                health::check(&self.cluster, leader),
                health::check(&self.cluster, &writer)
            );
            self.cluster.elect_writer();
            self.cluster.update_lag();
        }
    }

    /// Patroni's word on each member it reports: not running, or too far behind, keeps it
    /// out of the reads.
    #[cfg(feature = "patroni")]
    fn apply_patroni_states(&self, members: &[crate::patroni::Member]) {
        let nodes = self.cluster.nodes().clone();
        for m in members {
            if let Some(n) = patroni_node(&nodes, m) {
                n.set_veto(m.veto(self.config.max_replica_lag_bytes));
            }
        }
    }

    /// Removes a node while the pool runs (see [`ReplicaPool::remove_node`]).
    ///
    /// [`ReplicaPool::remove_node`]: super::ReplicaPool::remove_node
    pub(crate) async fn remove_node(&self, name: &str) -> Result<(), Error> {
        let node = {
            let _one_at_a_time = self.membership.lock().await;
            let nodes = self.cluster.nodes().clone();
            let Some((index, node)) = nodes
                .iter()
                .enumerate()
                .find(|(_, n)| n.name == name && !n.is_removed())
            else {
                return Err(Error::Membership(format!("no node named {name:?}")));
            };
            if node.is_writer() && !self.cluster.has_other_writable(index) {
                return Err(Error::Membership(format!(
                    "{name} takes the writes and no other node is writable; promote one first"
                )));
            }
            node.remove();
            if node.is_writer() {
                self.cluster.elect_writer();
            }
            Arc::clone(node)
        };
        // The drain happens outside the membership lock: other changes (a new leader
        // joining) need not wait for it.
        // Drains: new calls go elsewhere at once; running ones finish (bounded like an
        // interrupted write's settle window), then its pool closes.
        let limit = settle_window(self.config.statement_timeout);
        let deadline = tokio::time::Instant::now() + limit;
        while node.in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let _ = tokio::time::timeout(limit, node.pool.close()).await;
        // After the pool: a probe that was running can no longer keep its connection.
        if let Some(conn) = node.take_probe_connection() {
            let _ = conn.close().await;
        }
        Ok(())
    }

    /// A connection to the node that takes writes. Fails at once when writes are blocked
    /// (the primary is gone and `follow_promotion` is off). If writes move to another node
    /// while we wait for a connection (a promotion), the wait moves with them: nothing has
    /// been sent yet.
    pub(crate) async fn acquire_writer(&self) -> Result<Checkout<DB>, sqlx::Error> {
        self.acquire_on_writer(true).await
    }

    /// The consistency rules of this pool's sessions.
    pub(crate) fn rules(&self) -> Rules {
        self.cluster.settings.rules
    }

    /// A connection to the writer, following it if it moves while we wait. Writes (`write`)
    /// fail at once while writes are blocked; reads that fell back here do not.
    async fn acquire_on_writer(&self, write: bool) -> Result<Checkout<DB>, sqlx::Error> {
        loop {
            if (write || self.cluster.writer().is_foreign())
                && let Err(why) = self.cluster.check_writable()
            {
                return Err(sqlx::Error::Io(io::Error::new(
                    io::ErrorKind::NotConnected,
                    why,
                )));
            }
            let moved = self.cluster.writer_moved();
            tokio::pin!(moved);
            moved.as_mut().enable();
            let index = self.cluster.writer_index();
            let node = self.cluster.writer();
            let busy = node.start_call();
            let had_room = node.has_free_connection();
            let acquired = tokio::select! {
                biased;
                conn = node.pool.acquire() => conn,
                _ = moved => continue,
            };
            return match acquired {
                // Writes moved while the connection was handed over: nothing is sent yet.
                Ok(_) if self.cluster.writer_index() != index => continue,
                Ok(conn) => {
                    node.served();
                    Ok((index, node, conn, busy.connected()))
                }
                Err(e) => {
                    self.acquire_failed(&node, had_room, &e);
                    Err(e)
                }
            };
        }
    }

    /// Getting a connection from `node` failed. A full pool (`PoolTimedOut` while it had no
    /// room) says nothing about the node; a connection that could not be opened (refused
    /// until the timeout, a connection-class error) asks for a probe.
    fn acquire_failed(&self, node: &Arc<Node<DB>>, had_room: bool, e: &sqlx::Error) {
        match e {
            e if was_full(node, had_room, e) => {}
            sqlx::Error::PoolTimedOut => {
                node.count_error();
                self.cluster.suspect(node);
            }
            sqlx::Error::PoolClosed => {}
            e => self.cluster.report(node, e),
        }
    }

    /// A connection for a read, and whether to reconcile the session with the primary's
    /// position after the read (it went to the primary because of the session).
    ///
    /// The session (if any) decides where the read may go ([`SessionState::read_at`]). A
    /// replica read takes the next replica in the rotation not in `tried`, preferring one
    /// with a free connection; when every one is busy it waits for the chosen one, bounded
    /// by `acquire_timeout`, and then fails with `PoolTimedOut` like a plain pool: a full
    /// pool never moves reads to the primary or takes a replica out. A replica that cannot
    /// give a connection because it is unavailable (refused, it left the rotation while we
    /// waited) is probed and the next one is tried; with none left, the writer. Nothing has
    /// been sent to a server at this point, so moving on is always safe.
    pub(crate) async fn acquire_reader(
        &self,
        tried: &mut Vec<usize>,
        session: Option<&SessionState>,
    ) -> Result<(Checkout<DB>, bool), sqlx::Error> {
        let decision = session.map_or(ReadAt::Anywhere, |s| {
            s.read_at(
                &self.cluster.settings.rules,
                self.cluster.writer().timeline(),
                now_ms(),
            )
        });
        let at = match decision {
            ReadAt::Primary => return Ok((self.acquire_on_writer(false).await?, false)),
            ReadAt::PrimaryThenRecord => return Ok((self.acquire_on_writer(false).await?, true)),
            ReadAt::AtLeast(at) => Some(at),
            ReadAt::Anywhere => None,
        };
        loop {
            let index = match at {
                None => self
                    .cluster
                    .pick(tried, None, true)
                    .or_else(|| self.cluster.pick(tried, None, false))
                    .map(|(i, _)| i),
                Some(at) => self.cluster.replica_at(tried, at).await,
            };
            let Some(index) = index else { break };
            let node = self.cluster.node(index);
            let busy = node.start_call();
            let had_room = node.has_free_connection();
            match node.acquire_while_in_rotation().await {
                Some(Ok(conn)) => {
                    node.served();
                    return Ok(((index, node, conn, busy.connected()), false));
                }
                // A busy node, not a down one.
                Some(Err(e)) if was_full(&node, had_room, &e) => return Err(e),
                Some(Err(e))
                    if DB::is_unavailable(&e) || matches!(e, sqlx::Error::PoolTimedOut) =>
                {
                    self.acquire_failed(&node, had_room, &e)
                }
                // Removed from the pool while we waited: its pool closed, nothing was sent.
                Some(Err(sqlx::Error::PoolClosed)) if node.is_removed() => {}
                Some(Err(e)) => return Err(e),
                None => {}
            }
            tracing::debug!(node = %node.name, "replica unavailable, trying the next node");
            tried.push(index);
        }
        // No replica (that has the session's writes): the writer. A session's position is
        // then checked against the primary's (a forged token ahead of it is clamped).
        Ok((self.acquire_on_writer(false).await?, at.is_some()))
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
        join_all(
            self.cluster
                .nodes()
                .iter()
                .filter_map(|n| n.take_probe_connection())
                .map(|c| c.close()),
        )
        .await;
        let nodes = self.cluster.nodes().clone();
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

/// Starts the discovery task: every `discovery_interval`, until the pool is closed or
/// dropped (it holds only a weak reference).
pub(crate) fn spawn_discovery<DB: Backend>(shared: &Arc<Shared<DB>>) {
    if !shared.discovers() {
        return;
    }
    let weak = Arc::downgrade(shared);
    let interval = shared.config.discovery_interval;
    let task = tokio::spawn(async move {
        // `connect` took the members and applied what the sources said of them.
        loop {
            tokio::time::sleep(interval).await;
            let Some(shared) = weak.upgrade() else { break };
            if shared.is_closed() {
                break;
            }
            shared.discover().await;
        }
    });
    *lock(&shared.discovery) = Some(task);
}

/// The node of a member Patroni reports, if it is in the pool.
#[cfg(feature = "patroni")]
fn patroni_node<'n, DB: Backend>(
    nodes: &'n [Arc<Node<DB>>],
    m: &crate::patroni::Member,
) -> Option<&'n Arc<Node<DB>>> {
    nodes.iter().find(|n| {
        n.name == m.name && !n.is_removed() && n.origin == crate::topology::Origin::Patroni
    })
}

/// Whether `e` is a wait for a connection that timed out because `node`'s pool was full,
/// before the wait (`had_room` false) or after it: a busy node, not evidence against it.
fn was_full<DB: Backend>(node: &Node<DB>, had_room: bool, e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::PoolTimedOut) && (!had_room || !node.has_free_connection())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Builds the nodes: multi-host URLs split into one node per host, the declared primary (at
/// most one) first. Declared nodes are named `primary`, `replica-1`, …; the others by their
/// `host:port`.
fn build_nodes<DB: Backend>(
    members: Vec<Member>,
    config: &Config,
    hooks: &Hooks<DB>,
) -> Result<Vec<Arc<Node<DB>>>, Error> {
    if members.is_empty() {
        return Err(Error::Config(
            "no nodes: call .primary(url), .node(url) or .nodes(url)".into(),
        ));
    }
    if members.iter().all(|m| m.role == Role::Replica) {
        return Err(Error::Config(
            "no primary: call .primary(url), or .node(url) / .nodes(url) to let the probes \
             find it"
                .into(),
        ));
    }
    if members.iter().filter(|m| m.role == Role::Primary).count() > 1 {
        return Err(Error::Config(
            "more than one declared primary (to let the probes choose among several, \
             list them with .nodes(url) or in one multi-host URL)"
                .into(),
        ));
    }
    let (mut ordered, rest): (Vec<Member>, Vec<Member>) =
        members.into_iter().partition(|m| m.role == Role::Primary);
    ordered.extend(rest);
    let mut nodes = Vec::with_capacity(ordered.len());
    let mut replicas = 0;
    let mut names = std::collections::HashSet::new();
    for m in ordered {
        let (name, weight) = match (m.role, m.name) {
            (_, Some(name)) => (name, 1),
            (Role::Primary, None) => ("primary".to_owned(), 1),
            (Role::Replica, None) => {
                replicas += 1;
                let weight = config
                    .replica_weights
                    .get(replicas - 1)
                    .copied()
                    .unwrap_or(1);
                (format!("replica-{replicas}"), weight)
            }
            (_, None) => (crate::topology::host_port(&m.url), 1),
        };
        let unique = unique_name(&name, |n| names.contains(n));
        names.insert(unique.clone());
        nodes.push(Arc::new(
            node::<DB>(unique, m.role, &m.url, config, hooks)?
                .with_weight(weight)
                .with_origin(m.origin),
        ));
    }
    Ok(nodes)
}

/// `base`, or `base#2`, `base#3`, … : the first that is not `taken`.
fn unique_name(base: &str, taken: impl Fn(&str) -> bool) -> String {
    let mut name = base.to_owned();
    let mut n = 1;
    while taken(&name) {
        n += 1;
        name = format!("{base}#{n}");
    }
    name
}

/// The probes at `connect`, all at once.
///
/// With a declared primary, it must answer within the acquire timeout and its system
/// identifier is the cluster's; the others that do not answer start unhealthy and the
/// health task keeps probing them. Without one, `connect` succeeds when any node answers:
/// the writer is the node that is not in recovery (the newest timeline and position among
/// several), and with none, reads work and writes fail at once until one appears. The
/// results are recorded after the identity is known, so a node of another cluster never
/// enters the rotation.
async fn first_round<DB: Backend>(cluster: &Cluster<DB>, config: &Config) -> Result<(), Error> {
    let nodes = cluster.nodes().clone();
    let declared = nodes[0].role == Role::Primary;
    let primary_wait = config.acquire_timeout.max(config.health_check_timeout);
    let outcomes = join_all(nodes.iter().enumerate().map(|(i, n)| {
        let wait = if i == 0 || !declared {
            primary_wait
        } else {
            config.health_check_timeout
        };
        tokio::time::timeout(wait, health::probe(&**n))
    }))
    .await;
    let answered = |i: usize| match &outcomes[i] {
        Ok(Ok(p)) => Some(p),
        _ => None,
    };
    let close_all = || join_all(nodes.iter().map(|n| n.pool.close()));
    let writer = if declared {
        0
    } else {
        let writable = (0..nodes.len())
            .filter(|&i| answered(i).is_some_and(|p| p.in_recovery == Some(false)))
            .max_by_key(|&i| answered(i).map(|p| (p.timeline, p.position)));
        match writable.or_else(|| (0..nodes.len()).find(|&i| answered(i).is_some())) {
            Some(i) => i,
            None => {
                let reasons: Vec<String> = nodes
                    .iter()
                    .zip(&outcomes)
                    .map(|(n, o)| {
                        let why = match o {
                            Ok(Err(e)) => n.scrub(&e.to_string()),
                            _ => format!("no answer within {primary_wait:?}"),
                        };
                        format!("{} ({}): {why}", n.name, n.url)
                    })
                    .collect();
                close_all().await;
                return Err(Error::NoNodeAnswered {
                    reasons: reasons.join("; "),
                });
            }
        }
    };
    match answered(writer) {
        Some(probe) => {
            cluster.set_cluster_id(probe.cluster_id);
            if declared && probe.in_recovery == Some(true) {
                tracing::warn!(node = %nodes[0].name, "the configured primary is in recovery (a standby)");
            }
        }
        None => {
            let source = match outcomes.into_iter().next() {
                Some(Ok(Err(e))) => e,
                _ => sqlx::Error::PoolTimedOut,
            };
            let primary = &nodes[0];
            let reason = primary.scrub(&source.to_string());
            close_all().await;
            return Err(Error::PrimaryUnreachable {
                node: primary.name.clone(),
                url: primary.url.clone(),
                reason,
                source,
            });
        }
    }
    cluster.set_writer_index(writer);
    for (node, outcome) in nodes.iter().zip(outcomes) {
        health::record(cluster, node, outcome);
    }
    Ok(())
}

/// Builds one node and its (lazy) pool from a URL.
fn node<DB: Backend>(
    name: String,
    role: Role,
    raw: &str,
    config: &Config,
    hooks: &Hooks<DB>,
) -> Result<Node<DB>, Error> {
    let url = redact::redact_url(raw);
    let secret = redact::password_of(raw);
    let invalid = |reason: String| Error::InvalidUrl {
        node: name.clone(),
        url: url.clone(),
        reason,
    };
    let scheme = raw.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    if !scheme.is_some_and(|s| DB::SCHEMES.contains(&s.as_str())) {
        let expected: Vec<String> = DB::SCHEMES.iter().map(|s| format!("{s}://")).collect();
        return Err(invalid(format!(
            "expected a URL starting with {}",
            expected.join(" or ")
        )));
    }
    let options: Options<DB> = raw
        .parse()
        .map_err(|e: sqlx::Error| invalid(redact::scrub(&e.to_string(), secret.as_deref())))?;
    let max = match role {
        Role::Primary => config
            .primary_max_connections
            .or(DB::PRIMARY_MAX_CONNECTIONS)
            .unwrap_or(config.max_connections),
        _ => config.max_connections,
    };
    let options = match &hooks.connect_options {
        Some(f) => f(options),
        None => options,
    };
    let mut pool = PoolOptions::<DB>::new()
        .max_connections(max)
        .min_connections(config.min_connections.min(max))
        .acquire_timeout(config.acquire_timeout)
        .idle_timeout(config.idle_timeout)
        .max_lifetime(config.max_lifetime)
        .test_before_acquire(config.test_before_acquire);
    if let Some(hook) = &hooks.after_connect {
        let hook = hook.clone();
        pool = pool.after_connect(move |conn, meta| hook(conn, meta));
    }
    // The monitor credential: the node's URL with another user and password (and, where
    // the backend says so, no database: a monitor user rarely may use the application's),
    // through the same options hook.
    let probe_options = match &hooks.monitor {
        None => None,
        Some((user, password)) => {
            let mut u = url::Url::parse(raw).map_err(|e| invalid(e.to_string()))?;
            let bad = |_| invalid("cannot set the monitor user in this URL".into());
            u.set_username(user).map_err(bad)?;
            u.set_password(Some(password)).map_err(bad)?;
            DB::monitor_url(&mut u);
            let o = <Options<DB> as sqlx::ConnectOptions>::from_url(&u)
                .map_err(|e| invalid(redact::scrub(&e.to_string(), Some(password))))?;
            Some(match &hooks.connect_options {
                Some(f) => f(o),
                None => o,
            })
        }
    };
    let pool = pool.connect_lazy_with(options);
    let mut node = Node::new(name, role, url, secret, pool);
    if let Some(options) = probe_options {
        node = node.with_probe_options(options, hooks.monitor.as_ref().map(|(_, p)| p.clone()));
    }
    Ok(node)
}
