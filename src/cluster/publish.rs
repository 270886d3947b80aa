//! What follows a published view: from the difference between the old and the new one, the
//! log lines, the metrics, and the wake-ups (waits on a node that left the rotation give up;
//! waits for the writer follow it when it moves).

use tokio::sync::Notify;

use super::Snapshot;
use super::view::NodeView;
use crate::backend::Backend;
use crate::roles::Role;

/// Logs, counts and wakes what changed from `old` to `new`.
pub(super) fn publish<DB: Backend>(old: &Snapshot<DB>, new: &Snapshot<DB>, writer_moved: &Notify) {
    for (i, node) in new.nodes.iter().enumerate() {
        let after = &new.view.nodes[i];
        node.metrics
            .healthy
            .set(if after.healthy { 1.0 } else { 0.0 });
        if after.is_standby() {
            node.metrics.lag_bytes.set(after.lag_bytes as f64);
            node.metrics.lag_seconds.set(after.lag.as_secs_f64());
        }
        let Some(before) = old.view.nodes.get(i) else {
            if after.healthy {
                tracing::debug!(node = %node.name, "node is healthy, in the rotation");
            }
            continue;
        };
        log_changes(&node.name, before, after);
        let left = before.serves_reads() && !after.serves_reads();
        if left || (before.answers() && !after.answers()) {
            node.notify_left();
        }
    }
    let (from, to) = (old.view.writer, new.view.writer);
    if from != to {
        tracing::warn!(from = %new.nodes[from].name, to = %new.nodes[to].name, "writes move to another node");
        writer_moved.notify_waiters();
    }
}

/// One line per change worth an operator's attention.
fn log_changes(node: &str, before: &NodeView, after: &NodeView) {
    if before.removed != after.removed {
        tracing::info!(node, "node removed from the pool; draining");
    }
    let error = after.last_error.as_deref().unwrap_or_default();
    match (before.healthy, after.healthy) {
        (true, false) => tracing::warn!(node, error, "node is unhealthy, leaving the rotation"),
        // The first probe's good news is routine (a pool per test, three nodes each).
        (false, true) if !before.probed => {
            tracing::debug!(node, "node is healthy, in the rotation")
        }
        (false, true) => tracing::info!(node, "node is healthy, in the rotation"),
        (false, false) if !before.probed && after.probed => tracing::warn!(
            node,
            error,
            "node did not answer its first probe; it stays out of the rotation and is probed again"
        ),
        _ => {}
    }
    if !before.foreign && after.foreign {
        tracing::warn!(
            node,
            system_identifier = after.system_id,
            "node belongs to another cluster; it serves neither reads nor writes"
        );
    }
    if after.role == Role::Replica
        && after.in_recovery == Some(false)
        && before.in_recovery != Some(false)
    {
        tracing::warn!(
            node,
            "configured replica is not in recovery (promoted?); it no longer serves reads"
        );
    }
    if before.deposed && !after.deposed {
        tracing::info!(
            node,
            "the old writer is a replica now; it may be promoted again"
        );
    }
    match (&before.broken, &after.broken) {
        (None, Some(why)) => {
            tracing::warn!(node, error = %why, "replication stopped with an error, leaving the rotation")
        }
        (Some(_), None) => tracing::info!(node, "replication runs again, back in the rotation"),
        _ => {}
    }
    match (&before.veto, &after.veto) {
        (None, Some(why)) => tracing::warn!(node, why = %why, "node leaves the rotation"),
        (Some(_), None) => tracing::info!(node, "node may serve reads again"),
        _ => {}
    }
    match (before.lagging, after.lagging) {
        (false, true) => tracing::warn!(
            node,
            lag_bytes = after.lag_bytes,
            lag = ?after.lag,
            "replica is lagging, leaving the rotation"
        ),
        (true, false) => tracing::info!(
            node,
            lag_bytes = after.lag_bytes,
            lag = ?after.lag,
            "replica caught up, back in the rotation"
        ),
        _ => {}
    }
    if !before.rival && after.rival {
        tracing::warn!(
            node,
            "node claims the primary role but another node takes the writes; it gets no writes and serves no reads"
        );
    }
}
