//! The health task: one background task per pool that probes every node concurrently.
//!
//! Every `health_check_interval` it runs [`Backend::probe`] on every node that is not banned
//! (and always on the writer), all at once, each bounded by `health_check_timeout`. A failed
//! or slow probe takes the node out of the rotation and bans it from probing for a while
//! ([`Ban`](crate::ban::Ban)); the first successful probe after the ban brings it back
//! (half-open). A statement that fails with a connection-class error asks for an immediate
//! probe of its node ([`suspect`]); only the probe takes the node out, so one terminated
//! backend, or a full pool, never does.
//!
//! Every probe's outcome is an [`Observation`] handed to the cluster as it arrives
//! ([`Cluster::apply`]), which decides and publishes the next view; after each round a
//! [`Event::Round`] makes it choose the writer and measure lag.
//!
//! Replay positions for read-your-writes sessions are not polled here: sessions that wait
//! refresh them on demand ([`refresh`](crate::refresh)), so a pool without waiting sessions
//! costs each replica only its probe.
//!
//! The task holds only a [`Weak`] reference to the cluster and stops when the pool is closed
//! or dropped (the shutdown channel's sender lives in the pool).

use std::sync::{Arc, Weak};
use std::time::Instant;

use futures_util::future::join_all;
use sqlx::ConnectOptions;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::backend::{Backend, Probe};
use crate::cluster::{Cluster, Event, Observation, Settings};
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
pub(crate) async fn probe<DB: Backend>(
    node: &Node<DB>,
    status: bool,
) -> Result<Probe, sqlx::Error> {
    let probe = probe_server(node, status).await?;
    // A simulated replica: the primary's server answered; its role and position are the
    // snapshot's it serves.
    Ok(match &node.simulated {
        Some(ring) => ring.as_replica(probe),
        None => probe,
    })
}

/// [`probe`] of the server behind `node`.
async fn probe_server<DB: Backend>(node: &Node<DB>, status: bool) -> Result<Probe, sqlx::Error> {
    if node.probe_options.is_none()
        && let Some(mut conn) = node.pool.try_acquire()
    {
        node.lending.lend();
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
    let seen = node.credential_generation();
    let connected = match &node.probe_options {
        Some(options) => options.connect().await,
        None => node.pool.connect_options().connect().await,
    };
    let mut conn = connected.inspect_err(|e| node.probe_connect_failed(e, seen))?;
    let probe = DB::probe(&mut conn, status).await;
    match probe {
        Ok(_) => node.keep_probe_connection(conn),
        Err(_) => drop(conn),
    }
    probe
}

/// Probes one node, bounded by `timeout`: what it saw, the password scrubbed from errors.
/// The node takes a successful probe's position as its own.
pub(crate) async fn observe<DB: Backend>(
    node: &Node<DB>,
    status: bool,
    timeout: std::time::Duration,
) -> Observation {
    observation(
        node,
        tokio::time::timeout(timeout, probe(node, status)).await,
        timeout,
    )
}

/// A probe's outcome as an observation, the password scrubbed from errors; the node takes
/// a successful probe's position as its own.
pub(crate) fn observation<DB: Backend>(
    node: &Node<DB>,
    outcome: Result<Result<Probe, sqlx::Error>, tokio::time::error::Elapsed>,
    timeout: std::time::Duration,
) -> Observation {
    match outcome {
        Ok(Ok(p)) => {
            node.observed(&p);
            Observation::Up(p)
        }
        Ok(Err(e)) if DB::is_missing_database(&e) => {
            Observation::Behind(format!("not caught up: {}", node.scrub(&e.to_string())))
        }
        Ok(Err(e)) => Observation::Down(node.scrub(&e.to_string())),
        Err(_) => Observation::Down(format!("health check timed out after {timeout:?}")),
    }
}

/// Probes member `index` and hands what it saw to the cluster.
pub(crate) async fn check<DB: Backend>(cluster: &Arc<Cluster<DB>>, index: usize) {
    check_within(cluster, index, cluster.settings.health_check_timeout).await;
}

/// A read picked member `index`, which the pool stopped probing while idle
/// ([`Config::idle_probe_after`](crate::Config::idle_probe_after)): probe it first — one
/// probe for every read that finds it so, bounded by the acquire timeout, as a suspended
/// serverless replica wakes up on the probe's connection. `true` when it still serves reads.
pub(crate) async fn wake<DB: Backend>(cluster: &Arc<Cluster<DB>>, index: usize) -> bool {
    let node = cluster.node(index);
    {
        let _one_probe = node.waking.lock().await;
        if cluster.snapshot().view.nodes[index].resting {
            let started = Instant::now();
            check_within(cluster, index, cluster.settings.wake_timeout).await;
            // Its lag, from what the probe saw (against the writer, which is still probed).
            cluster.apply(&[Event::Round]);
            tracing::debug!(node = %node.name, took = ?started.elapsed(), "probed on demand after the pool was idle");
        }
    }
    cluster.snapshot().view.serves_reads(index)
}

async fn check_within<DB: Backend>(
    cluster: &Arc<Cluster<DB>>,
    index: usize,
    timeout: std::time::Duration,
) {
    let (node, status) = {
        let snapshot = cluster.snapshot();
        let (node, view) = snapshot.member(index);
        (
            Arc::clone(node),
            view.wants_replication_status(Instant::now()),
        )
    };
    let seen = observe(&node, status, timeout).await;
    let behind = matches!(seen, Observation::Behind(_));
    cluster.apply(&[Event::Observed(index, seen)]);
    if behind {
        recheck_soon(cluster, index);
    }
}

/// How soon a node that is behind (not down) is probed again.
const BEHIND_RECHECK: std::time::Duration = std::time::Duration::from_millis(250);

/// Probes member `index` again shortly (a node that is behind catches up in moments; the
/// next round may be seconds away). Holds the cluster only weakly while it waits.
pub(crate) fn recheck_soon<DB: Backend>(cluster: &Arc<Cluster<DB>>, index: usize) {
    let cluster = Arc::downgrade(cluster);
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let wait = BEHIND_RECHECK.min(
            cluster
                .upgrade()
                .map_or(BEHIND_RECHECK, |c| c.settings.health_check_interval),
        );
        tokio::time::sleep(wait).await;
        if let Some(cluster) = cluster.upgrade()
            && !cluster.is_closing()
        {
            suspect(&cluster, index);
        }
    });
}

/// One round: probe every member in the pool that is not banned, and the writer, at once
/// (each outcome is applied as it arrives); then choose the writer and measure lag. While
/// the pool is `idle`, only the writer.
pub(crate) async fn round<DB: Backend>(cluster: &Arc<Cluster<DB>>, idle: bool) {
    let started = Instant::now();
    let due: Vec<usize> = {
        let snapshot = cluster.snapshot();
        let view = &snapshot.view;
        (0..view.nodes.len())
            .filter(|&i| {
                let n = &view.nodes[i];
                !n.removed && (i == view.writer || (!idle && !n.is_banned(started)))
            })
            .collect()
    };
    join_all(due.into_iter().map(|i| check(cluster, i))).await;
    // Counts that connections closed without coming back left behind; the connection
    // gauges sampled.
    for node in cluster.snapshot().nodes.iter() {
        node.sample_connections();
        node.lending
            .reset_if(|| crate::node::checked_out(&node.pool) == 0);
    }
    cluster.apply(&[Event::Round]);
    cluster.round_took(started.elapsed());
}

/// A statement on member `index` failed in a way that may mean the node is gone: probe it
/// now (in the background, one probe at a time per node). The probe, not the statement,
/// decides whether it leaves the rotation.
pub(crate) fn suspect<DB: Backend>(cluster: &Arc<Cluster<DB>>, index: usize) {
    let node = cluster.node(index);
    if !node.start_suspecting() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        node.stop_suspecting();
        return;
    };
    let cluster = Arc::clone(cluster);
    runtime.spawn(async move {
        check(&cluster, index).await;
        node.stop_suspecting();
    });
}

/// Counts a statement's error on member `index`; a connection-class error asks for a probe.
pub(crate) fn report<DB: Backend>(cluster: &Arc<Cluster<DB>>, index: usize, e: &sqlx::Error) {
    if cluster.node(index).record_error(e) {
        suspect(cluster, index);
    }
}

/// Waits up to `limit` until every member but the writer serves reads, probing the ones that
/// do not (bans aside) every 100 ms; then logs the ones still missing. The pool works either
/// way: reads skip replicas that are not in the rotation.
pub(crate) async fn wait_for_replicas<DB: Backend>(
    cluster: &Arc<Cluster<DB>>,
    limit: std::time::Duration,
) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let missing: Vec<usize> = {
            let snapshot = cluster.snapshot();
            let view = &snapshot.view;
            (0..view.nodes.len())
                .filter(|&i| i != view.writer && !view.nodes[i].removed && !view.serves_reads(i))
                .collect()
        };
        if missing.is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            let snapshot = cluster.snapshot();
            let names: Vec<&str> = missing
                .iter()
                .map(|&i| snapshot.view.nodes[i].name.as_str())
                .collect();
            tracing::warn!(nodes = ?names, ?limit, "replicas not in the rotation after waiting; the pool starts without them");
            return;
        }
        join_all(missing.iter().map(|&i| check(cluster, i))).await;
        cluster.apply(&[Event::Round]);
        tokio::time::sleep(std::time::Duration::from_millis(100).min(limit)).await;
    }
}

/// Starts the health task. It runs until `shutdown` fires or its sender is dropped, or the
/// cluster is gone.
pub(crate) fn spawn<DB: Backend>(
    cluster: Weak<Cluster<DB>>,
    settings: Settings,
    mut shutdown: oneshot::Receiver<()>,
    probe_now: bool,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut activity = Activity::default();
        let mut probes = tokio::time::interval(settings.health_check_interval);
        probes.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The pool probed every node while connecting (unless it connected lazily); skip the
        // immediate first tick.
        if !probe_now {
            probes.tick().await;
        } else if let Some(rotation) = cluster
            .upgrade()
            .and_then(|c| c.snapshot().nodes.first().and_then(|n| n.rotation.clone()))
        {
            // A lazily connected pool with rotating credentials: its first probes log in with
            // the first credential, not the URL's password.
            rotation.first_fetched(settings.wake_timeout).await;
        }
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = probes.tick() => {}
            };
            let Some(cluster) = cluster.upgrade() else {
                break;
            };
            let idle = activity.idle(&cluster, settings.idle_probe_after).await;
            tokio::select! {
                _ = &mut shutdown => break,
                _ = round(&cluster, idle) => {}
            }
        }
        tracing::debug!("health task stopped");
    })
}

/// Whether the pool is idle ([`Config::idle_probe_after`](crate::Config::idle_probe_after)):
/// no statement dispatched, running or holding a connection for that long.
#[derive(Default)]
struct Activity {
    /// Statements dispatched on every node when last looked at, and since when.
    seen: Option<(u64, Instant)>,
    idle: bool,
}

impl Activity {
    /// Looks at the counters; on going idle, lets the replicas rest (closes their
    /// connections) and marks them unverified; on waking, says so.
    async fn idle<DB: Backend>(
        &mut self,
        cluster: &Cluster<DB>,
        after: Option<std::time::Duration>,
    ) -> bool {
        let Some(after) = after else { return false };
        let snapshot = cluster.snapshot();
        let mut dispatched = 0u64;
        let mut busy = false;
        for node in snapshot.nodes.iter() {
            let c = node.counters();
            dispatched += c.queries;
            busy |= c.in_flight > 0 || node.lending.any_held();
        }
        let now = Instant::now();
        // While the writer is down every node is probed: the one promoted in its place must
        // be found (writes waiting for a writer dispatch nothing).
        let writer_down = !snapshot.view.nodes[snapshot.view.writer].healthy;
        let since = match self.seen {
            Some((seen, since)) if seen == dispatched && !busy && !writer_down => since,
            _ => now,
        };
        self.seen = Some((dispatched, since));
        let idle = now.duration_since(since) >= after;
        if idle && !self.idle {
            let writer = snapshot.view.writer;
            let resting: Vec<usize> = (0..snapshot.nodes.len())
                .filter(|&i| i != writer && !snapshot.view.nodes[i].removed)
                .collect();
            let nodes: Vec<_> = resting
                .iter()
                .map(|&i| Arc::clone(&snapshot.nodes[i]))
                .collect();
            drop(snapshot);
            let events: Vec<Event> = resting.iter().map(|&i| Event::Rest(i)).collect();
            cluster.apply(&events);
            join_all(nodes.iter().map(|n| n.rest())).await;
            tracing::info!(
                replicas = resting.len(),
                idle_for = ?after,
                "pool idle: replicas are no longer probed until the next statement"
            );
        } else if !idle && self.idle {
            tracing::info!("pool active again: probing every node");
        }
        self.idle = idle;
        idle
    }
}
