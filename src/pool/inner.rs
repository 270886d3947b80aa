//! The machinery behind [`ReplicaPool`](super::ReplicaPool): building the nodes, picking one
//! per statement, shutting down.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::future::join_all;
use sqlx::Connection;
use sqlx::pool::{PoolConnection, PoolOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::backend::Backend;
use crate::balance::Policy;
use crate::node::{Node, Role};
use crate::route::{Route, Router, Target};
use crate::{Config, Error, health, redact};

type Options<DB> = <<DB as sqlx::Database>::Connection as Connection>::Options;

/// Everything the pool handles share.
pub(crate) struct Shared<DB: Backend> {
    /// `nodes[0]` is the primary, the rest are replicas in configuration order.
    pub(crate) nodes: Arc<[Arc<Node<DB>>]>,
    pub(crate) router: Router,
    policy: Box<dyn Policy>,
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
}

impl<DB: Backend> Shared<DB> {
    pub(crate) async fn connect(
        primary_url: &str,
        replica_urls: &[&str],
        config: Config,
    ) -> Result<Self, Error> {
        config.validate().map_err(Error::Config)?;

        let mut nodes = Vec::with_capacity(1 + replica_urls.len());
        nodes.push(Arc::new(node::<DB>(
            "primary".into(),
            Role::Primary,
            primary_url,
            &config,
        )?));
        for (i, url) in replica_urls.iter().enumerate() {
            let name = format!("replica-{}", i + 1);
            nodes.push(Arc::new(node::<DB>(name, Role::Replica, url, &config)?));
        }
        let nodes: Arc<[Arc<Node<DB>>]> = nodes.into();

        // Probe everything at once: the primary must answer within the acquire timeout,
        // replicas that do not answer start unhealthy and are retried by the health task.
        let primary = &nodes[0];
        let primary_wait = config.acquire_timeout.max(config.health_check_timeout);
        let (first, _) = tokio::join!(
            tokio::time::timeout(primary_wait, health::probe(&**primary)),
            health::check_all(&nodes[1..], config.health_check_timeout),
        );
        let first = match first {
            Ok(r) => r,
            Err(_) => Err(sqlx::Error::PoolTimedOut),
        };
        match first {
            Ok(probe) => {
                primary.mark_up(probe.in_recovery);
                if probe.in_recovery == Some(true) {
                    tracing::warn!(node = %primary.name, "the configured primary is in recovery (a standby); writes will fail");
                }
            }
            Err(source) => {
                let reason = primary.scrub(&source.to_string());
                join_all(nodes.iter().map(|n| n.pool.close())).await;
                return Err(Error::PrimaryUnreachable {
                    node: primary.name.clone(),
                    url: primary.url.clone(),
                    reason,
                    source,
                });
            }
        }

        let (tx, rx) = oneshot::channel();
        let task = health::spawn(
            Arc::downgrade(&nodes),
            config.health_check_interval,
            config.health_check_timeout,
            rx,
        );
        Ok(Shared {
            nodes,
            router: config.router(DB::DIALECT),
            policy: config.balance.policy(),
            shutdown: Mutex::new(Some(tx)),
            task: Mutex::new(Some(task)),
            closed: AtomicBool::new(false),
        })
    }

    pub(crate) fn primary(&self) -> &Arc<Node<DB>> {
        &self.nodes[0]
    }

    pub(crate) fn replicas(&self) -> &[Arc<Node<DB>>] {
        &self.nodes[1..]
    }

    /// The next healthy replica by the balancing policy, or the primary when none is healthy.
    pub(crate) fn pick_replica(&self) -> &Arc<Node<DB>> {
        let replicas = self.replicas();
        let healthy = replicas.iter().filter(|n| n.is_healthy()).count();
        if healthy == 0 {
            return self.primary();
        }
        let k = self.policy.pick(healthy);
        // Health may change between the count and this walk; fall back to the primary then.
        replicas
            .iter()
            .filter(|n| n.is_healthy())
            .nth(k)
            .unwrap_or_else(|| self.primary())
    }

    /// A connection for a statement with this route, and the node it comes from.
    ///
    /// Reads try the next healthy replica; when its pool cannot give a connection because
    /// the node is unavailable (refused, timed out, or marked down while waiting), the node
    /// leaves the rotation and the next healthy replica is tried, then the primary. Nothing
    /// has been sent to a server at this point, so moving on is always safe.
    pub(crate) async fn acquire(
        &self,
        route: Route,
    ) -> Result<(Arc<Node<DB>>, PoolConnection<DB>), sqlx::Error> {
        if route.target == Target::Replica {
            for _ in 0..self.replicas().len() {
                let node = self.pick_replica();
                if node.role == Role::Primary {
                    break;
                }
                match node.acquire_while_healthy().await {
                    Some(Ok(conn)) => {
                        node.served();
                        return Ok((Arc::clone(node), conn));
                    }
                    Some(Err(e)) if DB::is_unavailable(&e) => node.record_error(&e),
                    Some(Err(e)) => return Err(e),
                    None => {}
                }
                tracing::debug!(node = %node.name, "replica unavailable, trying the next node");
            }
        }
        let primary = self.primary();
        match primary.pool.acquire().await {
            Ok(conn) => {
                primary.served();
                Ok((Arc::clone(primary), conn))
            }
            Err(e) => {
                primary.record_error(&e);
                Err(e)
            }
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Stops the health task and closes every node's pool. Idempotent.
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(tx) = lock(&self.shutdown).take() {
            let _ = tx.send(());
        }
        let task = lock(&self.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        join_all(self.nodes.iter().map(|n| n.pool.close())).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Builds one node and its (lazy) pool from a URL.
fn node<DB: Backend>(
    name: String,
    role: Role,
    raw: &str,
    config: &Config,
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
        Role::Replica => config.max_connections,
    };
    let pool = PoolOptions::<DB>::new()
        .max_connections(max)
        .min_connections(config.min_connections.min(max))
        .acquire_timeout(config.acquire_timeout)
        .idle_timeout(config.idle_timeout)
        .connect_lazy_with(options);
    Ok(Node::new(name, role, url, secret, pool))
}
