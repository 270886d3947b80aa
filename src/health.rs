//! The health task: one background task per pool that probes every node concurrently.
//!
//! Every `health_check_interval` it runs [`Backend::probe`] on every node that is not banned
//! (and always on the writer), all at once, each bounded by `health_check_timeout`. A failed
//! or slow probe takes the node out of the rotation and bans it from probing for a while
//! ([`Ban`](crate::ban::Ban)); the first successful probe after the ban brings it back
//! (half-open). A statement that fails with a connection-class error asks for an immediate
//! probe of its node ([`Cluster::suspect`]); only the probe takes the node out, so one
//! terminated backend, or a full pool, never does. A probe that reports another cluster's
//! system identifier keeps the node out of everything. After each round the task chooses the
//! node that takes writes ([`Cluster::elect_writer`]) and measures each replica's lag
//! ([`Cluster::update_lag`]).
//!
//! Replay positions for read-your-writes sessions are not polled here: sessions that wait
//! refresh them on demand ([`Cluster::refresh_positions`]), so a pool without waiting
//! sessions costs each replica only its probe.
//!
//! The task holds only a [`Weak`] reference to the cluster and stops when the pool is closed
//! or dropped (the shutdown channel's sender lives in the pool).

use std::sync::Weak;

use futures_util::future::join_all;
use sqlx::ConnectOptions;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::backend::{Backend, Probe};
use crate::cluster::{Cluster, Settings};
use crate::node::Node;

/// Runs the backend's probe on an idle pooled connection if there is one, else on the node's
/// own probe connection, opened when needed and kept between probes.
///
/// Not `pool.acquire()`: sqlx retries a refused connection until the acquire timeout
/// (sensible while a server starts up, wrong for telling whether it is up). A direct
/// connection fails at once on a refused port, so a stopped node is noticed within one
/// interval. An idle connection that fails may just be stale (the server restarted), so a
/// fresh connection gets the last word. The probe connection is kept so that a quiet pool
/// (no idle connection) costs the node one light query per interval, not a new backend
/// (a fork and an authentication) every time; it is taken out while in use, so a probe
/// cancelled by its timeout drops (closes) it rather than leave it mid-query.
///
/// With a monitor credential, probes use only their own connection, opened with it.
pub(crate) async fn probe<DB: Backend>(node: &Node<DB>) -> Result<Probe, sqlx::Error> {
    let status = node.wants_replication_status();
    if node.probe_options.is_none()
        && let Some(mut conn) = node.pool.try_acquire()
    {
        match DB::probe(&mut conn, status).await {
            Ok(p) => return Ok(p),
            Err(_) => conn.close_on_drop(),
        }
    }
    if let Some(mut conn) = node.take_probe_connection() {
        match DB::probe(&mut conn, status).await {
            Ok(p) => {
                node.keep_probe_connection(conn);
                return Ok(p);
            }
            Err(_) => drop(conn),
        }
    }
    let mut conn = match &node.probe_options {
        Some(options) => options.connect().await?,
        None => node.pool.connect_options().connect().await?,
    };
    let probe = DB::probe(&mut conn, status).await;
    match probe {
        Ok(_) => node.keep_probe_connection(conn),
        Err(_) => drop(conn),
    }
    probe
}

/// Probes one node, bounded by `health_check_timeout`, and records the outcome.
pub(crate) async fn check<DB: Backend>(cluster: &Cluster<DB>, node: &Node<DB>) {
    let timeout = cluster.settings.health_check_timeout;
    let outcome = tokio::time::timeout(timeout, probe(node)).await;
    record(cluster, node, outcome);
}

/// Records a probe's outcome: the node's identity is checked against the cluster's before it
/// may enter the rotation.
pub(crate) fn record<DB: Backend>(
    cluster: &Cluster<DB>,
    node: &Node<DB>,
    outcome: Result<Result<Probe, sqlx::Error>, tokio::time::error::Elapsed>,
) {
    let timeout = cluster.settings.health_check_timeout;
    match outcome {
        Ok(Ok(probe)) => {
            node.check_identity(&probe, cluster.cluster_id());
            node.mark_up(probe)
        }
        Ok(Err(e)) => node.mark_down(&e.to_string(), cluster.settings.ban_backoff),
        Err(_) => node.mark_down(
            &format!("health check timed out after {timeout:?}"),
            cluster.settings.ban_backoff,
        ),
    }
}

/// One round: probe every node that is not banned, and the writer, at once; then choose the
/// writer and measure lag.
pub(crate) async fn round<DB: Backend>(cluster: &Cluster<DB>) {
    let started = std::time::Instant::now();
    join_all(
        cluster
            .nodes()
            .iter()
            .filter(|n| !n.is_removed() && (n.is_writer() || !n.is_banned()))
            .map(|n| check(cluster, n)),
    )
    .await;
    cluster.elect_writer();
    cluster.update_lag();
    cluster.round_took(started.elapsed());
}

/// Starts the health task. It runs until `shutdown` fires or its sender is dropped, or the
/// cluster is gone.
pub(crate) fn spawn<DB: Backend>(
    cluster: Weak<Cluster<DB>>,
    settings: Settings,
    mut shutdown: oneshot::Receiver<()>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut probes = tokio::time::interval(settings.health_check_interval);
        probes.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The pool probed every node while connecting; skip the immediate first tick.
        probes.tick().await;
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = probes.tick() => {}
            };
            let Some(cluster) = cluster.upgrade() else {
                break;
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = round(&cluster) => {}
            }
        }
        tracing::debug!("health task stopped");
    })
}
