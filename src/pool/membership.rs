//! Members joining and leaving while the pool runs: `add_node` / `remove_node`, and the
//! discovery task that asks DNS and Patroni every `discovery_interval`. Every source's word
//! goes through the one reconcile ([`discovery::plan`](crate::discovery::plan)) and the same
//! two steps: [`join`](Shared::join) and [`drain`](Shared::remove_node).

use std::sync::Arc;

use super::connect;
use super::shared::Shared;
use crate::backend::Backend;
use crate::cluster::{Event, has_other_writable};
use crate::discovery::{Plan, plan};
use crate::error::Error;
use crate::roles::{Origin, Role};
use crate::sync::lock;
use crate::topology::Member;
use crate::{health, redact};

impl<DB: Backend> Shared<DB> {
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
        let member = Member {
            url: url.to_owned(),
            role,
            origin: Origin::Added,
            name: None,
            zone: None,
        };
        let joined = self.join(&member, false).await?;
        Ok(joined.expect("joins whatever the probe saw"))
    }

    /// Builds a member's node, probes it (its identity checked) and adds it; with
    /// `must_answer`, only if the probe succeeded (`Ok(None)` otherwise), else it joins
    /// unhealthy and the health task keeps probing it. Named by the member, or by its role
    /// (`replica-N`) or `host:port`.
    pub(crate) async fn join(
        &self,
        member: &Member,
        must_answer: bool,
    ) -> Result<Option<String>, Error> {
        let _one_at_a_time = self.membership.lock().await;
        let (nodes, view) = {
            let snapshot = self.cluster.snapshot();
            (Arc::clone(&snapshot.nodes), snapshot.view.nodes.clone())
        };
        let taken = |name: &str| {
            nodes
                .iter()
                .zip(&view)
                .any(|(n, v)| n.name == name && !v.removed)
        };
        let base = match (member.role, &member.name) {
            (_, Some(name)) => name.clone(),
            (Role::Replica, None) => format!(
                "replica-{}",
                nodes.iter().filter(|n| n.role == Role::Replica).count() + 1
            ),
            (_, None) => crate::topology::host_port(&member.url),
        };
        let name = connect::unique_name(&base, taken);
        let node = connect::node::<DB>(
            name.clone(),
            member.role,
            &member.url,
            member.zone.as_deref(),
            &self.config,
            &self.hooks,
        )?
        .with_origin(member.origin);
        let node = Arc::new(node);
        let timeout = self.cluster.settings.health_check_timeout;
        let seen = health::observe(&*node, true, timeout).await;
        if must_answer && matches!(seen, crate::cluster::Observation::Down(_)) {
            node.pool.close().await;
            return Ok(None);
        }
        // Added by hand (`add_node`): a node of another cluster is a mistake to report, not a
        // member to keep probing. (Discovered members follow their source instead: they
        // join, excluded, and `status()` says why.)
        if member.origin == Origin::Added
            && let crate::cluster::Observation::Up(probe) = &seen
            && let (Some(theirs), Some(ours)) = (probe.cluster_id, self.cluster.cluster_id())
            && theirs != ours
        {
            node.pool.close().await;
            return Err(Error::Membership(format!(
                "{} belongs to another cluster (system identifier {theirs}; this pool's is \
                 {ours}): not added",
                node.url
            )));
        }
        tracing::info!(node = %name, origin = %member.origin, "node joins the pool");
        self.cluster.join(Arc::clone(&node), seen);
        // Rotating credentials: the task applies a new one to the nodes it sees after making
        // it current; a node published after it looked gets it here.
        if let Some(credential) = self.hooks.credentials.as_ref().and_then(|r| r.current()) {
            node.use_credential(&credential);
        }
        Ok(Some(name))
    }

    /// Removes a node while the pool runs (see [`ReplicaPool::remove_node`]): it drains.
    ///
    /// [`ReplicaPool::remove_node`]: super::ReplicaPool::remove_node
    pub(crate) async fn remove_node(&self, name: &str) -> Result<(), Error> {
        let node = {
            let _one_at_a_time = self.membership.lock().await;
            let snapshot = self.cluster.snapshot();
            let view = &snapshot.view;
            let Some(index) = (0..view.nodes.len())
                .find(|&i| snapshot.nodes[i].name == name && !view.nodes[i].removed)
            else {
                return Err(Error::Membership(format!("no node named {name:?}")));
            };
            if index == view.writer && !has_other_writable(view, index) {
                return Err(Error::Membership(format!(
                    "{name} takes the writes and no other node is writable; promote one first"
                )));
            }
            self.cluster.apply(&[Event::Removed(index), Event::Elect]);
            Arc::clone(&snapshot.nodes[index])
        };
        // The drain happens outside the membership lock: other changes (a new leader
        // joining) need not wait for it. New calls go elsewhere at once; running ones finish
        // (bounded like an interrupted write's settle window), then its pool closes.
        let limit = self.cluster.settings.rules.settle;
        let deadline = tokio::time::Instant::now() + limit;
        while node.in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let _ = tokio::time::timeout(limit, node.pool.close()).await;
        // After the pool: a probe that was running can no longer keep its connection.
        if let Some(conn) = node.take_probe_connection() {
            use sqlx::Connection;
            let _ = conn.close().await;
        }
        Ok(())
    }

    /// The members of one source in the pool now, as (name, URL).
    fn members_from(&self, from: impl Fn(&str, Origin) -> bool) -> Vec<(String, String)> {
        let snapshot = self.cluster.snapshot();
        snapshot
            .nodes
            .iter()
            .zip(&snapshot.view.nodes)
            .filter(|(n, v)| !v.removed && from(&n.name, n.origin))
            .map(|(n, _)| (n.name.clone(), n.url.clone()))
            .collect()
    }

    /// Carries out a reconcile plan: new names join, then vanished or moved ones drain, then
    /// moved ones join at their new address (not while the old one stays, e.g. it takes
    /// the writes and no other node can). DNS members join only once they answer.
    async fn carry_out(&self, plan: Plan) {
        if plan.is_empty() {
            return;
        }
        for m in &plan.join {
            self.join_logged(m).await;
        }
        let mut stayed = Vec::new();
        for name in &plan.drain {
            if let Err(e) = self.remove_node(name).await {
                tracing::warn!(node = %name, error = %e, "a member its source no longer lists stays");
                stayed.push(name);
            }
        }
        for m in &plan.rejoin {
            if m.name.as_ref().is_some_and(|n| stayed.contains(&n)) {
                continue;
            }
            self.join_logged(m).await;
        }
    }

    async fn join_logged(&self, m: &Member) {
        if let Err(e) = self.join(m, m.origin == Origin::Dns).await {
            let name = m.name.as_deref().unwrap_or("?");
            tracing::warn!(node = %name, error = %e, "a discovered member cannot join");
        }
    }

    /// One round of discovery: every source is asked for its members and the pool follows.
    /// A failed or empty answer changes nothing: an outage of the source must not empty the
    /// pool.
    pub(crate) async fn discover(&self) {
        #[cfg(feature = "patroni")]
        for source in &self.hooks.patroni {
            self.discover_patroni(source).await;
        }
        for source in &self.hooks.dns {
            let desired = match source.desired(&self.hooks.resolver).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(name = %source.host, error = %e, "DNS lookup failed; members kept");
                    continue;
                }
            };
            let current = self.members_from(|name, o| o == Origin::Dns && source.owns(name));
            self.carry_out(plan(&desired, &current)).await;
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
    async fn discover_patroni(&self, source: &crate::discovery::patroni::PatroniSource) {
        let timeout = self.cluster.settings.health_check_timeout;
        let found = match source.members(timeout).await {
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
        let current = self.members_from(|_, o| o == Origin::Patroni);
        self.carry_out(plan(&source.desired(&found), &current))
            .await;
        self.apply_patroni_states(&found);
        // A leader that does not take the writes yet: probe it and the writer now.
        let leader = {
            let snapshot = self.cluster.snapshot();
            found
                .iter()
                .filter(|m| m.is_leader() && m.is_running())
                .find_map(|m| self.patroni_member(m))
                .filter(|&i| i != snapshot.view.writer)
                .map(|i| (i, snapshot.view.writer))
        };
        if let Some((leader, writer)) = leader {
            tokio::join!(
                health::check(&self.cluster, leader),
                health::check(&self.cluster, writer)
            );
            self.cluster.apply(&[Event::Round]);
        }
    }

    /// The member index of a member Patroni reports, if it is in the pool.
    #[cfg(feature = "patroni")]
    fn patroni_member(&self, m: &crate::discovery::patroni::Member) -> Option<usize> {
        let snapshot = self.cluster.snapshot();
        (0..snapshot.nodes.len()).find(|&i| {
            let (n, v) = snapshot.member(i);
            n.name == m.name && !v.removed && n.origin == Origin::Patroni
        })
    }

    /// Patroni's word on each member it reports: not running, or too far behind, keeps it
    /// out of the reads.
    #[cfg(feature = "patroni")]
    pub(super) fn apply_patroni_states(&self, members: &[crate::discovery::patroni::Member]) {
        let events: Vec<Event> = members
            .iter()
            .filter_map(|m| {
                let i = self.patroni_member(m)?;
                Some(Event::Veto(i, m.veto(self.config.max_replica_lag_bytes)))
            })
            .collect();
        if !events.is_empty() {
            self.cluster.apply(&events);
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
