//! The health task: one background task per pool that probes every node concurrently.
//!
//! Every `health_check_interval` it runs [`Backend::probe`] on all nodes at once, each bounded
//! by `health_check_timeout`. A failed or slow probe takes the node out of the rotation; the
//! next successful probe brings it back. Statements that fail with a connection-class error
//! take a node out at once ([`Node::record_error`]), without waiting for the next probe.
//!
//! The task holds only a [`Weak`] reference to the pool's nodes and stops when the pool is
//! closed or dropped (the shutdown channel's sender lives in the pool).

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use sqlx::{ConnectOptions, Connection};

use crate::backend::{Backend, Probe};
use crate::node::Node;

/// Runs the backend's probe on an idle pooled connection if there is one, else on a fresh
/// connection.
///
/// Not `pool.acquire()`: sqlx retries a refused connection until the acquire timeout
/// (sensible while a server starts up, wrong for telling whether it is up). A direct
/// connection fails at once on a refused port, so a stopped node is noticed within one
/// interval. An idle connection that fails may just be stale (the server restarted), so a
/// fresh connection gets the last word.
pub(crate) async fn probe<DB: Backend>(node: &Node<DB>) -> Result<Probe, sqlx::Error> {
    if let Some(mut conn) = node.pool.try_acquire() {
        match DB::probe(&mut conn).await {
            Ok(p) => return Ok(p),
            Err(_) => conn.close_on_drop(),
        }
    }
    let mut conn = node.pool.connect_options().connect().await?;
    let probe = DB::probe(&mut conn).await;
    // The pool cannot adopt a connection made outside it; close this one.
    let _ = conn.close().await;
    probe
}

/// Probes one node, bounded by `timeout`, and records the outcome.
pub(crate) async fn check<DB: Backend>(node: &Node<DB>, timeout: Duration) -> Result<(), String> {
    let outcome = match tokio::time::timeout(timeout, probe(node)).await {
        Ok(Ok(probe)) => Ok(probe),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("health check timed out after {timeout:?}")),
    };
    match outcome {
        Ok(probe) => {
            node.mark_up(probe.in_recovery);
            Ok(())
        }
        Err(why) => {
            node.mark_down(&why);
            Err(node.scrub(&why))
        }
    }
}

/// Probes all nodes concurrently.
pub(crate) async fn check_all<DB: Backend>(nodes: &[Arc<Node<DB>>], timeout: Duration) {
    join_all(nodes.iter().map(|n| check(n, timeout))).await;
}

/// Starts the health task. It runs until `shutdown` fires or its sender is dropped, or the
/// nodes are gone.
pub(crate) fn spawn<DB: Backend>(
    nodes: Weak<[Arc<Node<DB>>]>,
    interval: Duration,
    timeout: Duration,
    mut shutdown: oneshot::Receiver<()>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The pool probed every node while connecting; skip the immediate first tick.
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = ticker.tick() => {}
            }
            let Some(nodes) = nodes.upgrade() else { break };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = check_all(&nodes, timeout) => {}
            }
        }
        tracing::debug!("health task stopped");
    })
}
