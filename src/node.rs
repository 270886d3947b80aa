//! One endpoint: its sqlx pool, its role, and what partypool has observed about it.

use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool};
use tokio::sync::Notify;

use crate::GtidSet;
use crate::backend::{Backend, Probe, Replication};
use crate::balance::{Load, PeakEwma};
use crate::ban::Ban;
use crate::config::Backoff;
use crate::consistency::At;
use crate::redact;
pub use crate::status::Role;

const RECOVERY_UNKNOWN: u8 = 0;
const RECOVERY_NO: u8 = 1;
const RECOVERY_YES: u8 = 2;
const UNKNOWN: u64 = u64::MAX;

/// One database endpoint. Shared by the pool, the executor's streams and the health task;
/// all observed state is atomics or a short-held mutex, so the query path never waits on
/// the health task.
pub(crate) struct Node<DB: Database> {
    pub(crate) name: String,
    pub(crate) role: Role,
    /// The URL with its password redacted; the only form ever displayed.
    pub(crate) url: String,
    /// The node's password, kept only to scrub it out of driver messages.
    secret: Option<String>,
    pub(crate) pool: Pool<DB>,
    /// Reachable: the last probe succeeded (statement errors only ask for a probe).
    healthy: AtomicBool,
    /// Behind the primary by more than the configured limit (with hysteresis).
    lagging: AtomicBool,
    in_recovery: AtomicU8,
    /// WAL position: the current one on a primary, the replayed one on a standby.
    position: AtomicU64,
    timeline: AtomicU64,
    /// Time since the last replayed transaction (standby), in microseconds.
    replay_age_us: AtomicU64,
    lag_bytes: AtomicU64,
    lag_us: AtomicU64,
    served: AtomicU64,
    errors: AtomicU64,
    misroutes: AtomicU64,
    retries: AtomicU64,
    last_error: Mutex<Option<String>>,
    ban: Mutex<Ban>,
    /// When a probe last found this replica caught up with the primary.
    caught_up: Mutex<Option<Instant>>,
    /// Balancing weight (`Config::replica_weights`).
    weight: u32,
    /// Statements running on it now.
    in_flight: AtomicU32,
    /// Recent statement latency, for latency-aware balancing.
    latency: PeakEwma,
    metrics: NodeMetrics,
    /// Woken when the node leaves the rotation: waits on its pool give up at once, and reads
    /// running on it check whether it still answers ([`answers`](Self::answers)).
    down: Notify,
    /// The system identifier its last probe reported (`UNKNOWN` if none).
    system_id: AtomicU64,
    /// Its system identifier is not the cluster's: it serves nothing.
    foreign: AtomicBool,
    /// It claims the primary role (not in recovery) but is not the writer.
    rival: AtomicBool,
    /// It takes the writes now (set by the election); the writer is never banned.
    writer: AtomicBool,
    /// A probe to confirm a statement's connection error is running.
    suspected: AtomicBool,
    /// The health probe's own connection, kept between probes (see `health::probe`).
    probe_conn: Mutex<Option<DB::Connection>>,
    /// Options for the probe's own connection when a monitor credential is configured:
    /// probes then never use the application's pooled connections.
    pub(crate) probe_options: Option<<DB::Connection as sqlx::Connection>::Options>,
    /// The monitor credential's password, scrubbed out of driver messages too.
    monitor_secret: Option<String>,
    /// MariaDB's GTID position (as `position`, which is its total).
    gtids: Mutex<Option<GtidSet>>,
    /// MySQL/MariaDB replication threads, as the last probe that read them saw them.
    replication: Mutex<Option<Replication>>,
    /// A replication thread stopped with an error: it serves no reads.
    broken: AtomicBool,
    /// When the probe was last refused the replication status (asked again after a while).
    status_denied: Mutex<Option<Instant>>,
    /// It took the writes once and lost them: it takes them again only after it has been
    /// seen as a replica (an operator rebuilt it), never by claiming the role again.
    deposed: AtomicBool,
    /// Where it came from (declared, multi-host, added…).
    pub(crate) origin: crate::topology::Origin,
    /// Removed from the pool: serves nothing, not probed.
    removed: AtomicBool,
    /// Woken when it is removed: waits for one of its connections give up (running calls
    /// go on).
    removed_signal: Notify,
    /// A probe once saw it following a primary (in recovery; on MySQL with a monitor
    /// credential, a replication thread running).
    was_standby: AtomicBool,
    /// A membership source (Patroni) says it must not serve reads, and why.
    veto: Mutex<Option<String>>,
    vetoed: AtomicBool,
}

/// How long a probe that was refused replication status goes without asking again.
const ASK_STATUS_AGAIN: Duration = Duration::from_secs(300);

impl<DB: Backend> Node<DB> {
    pub(crate) fn new(
        name: String,
        role: Role,
        url: String,
        secret: Option<String>,
        pool: Pool<DB>,
    ) -> Self {
        let name_for_metrics = name.clone();
        Node {
            name,
            role,
            url,
            secret,
            pool,
            healthy: AtomicBool::new(false),
            lagging: AtomicBool::new(false),
            in_recovery: AtomicU8::new(RECOVERY_UNKNOWN),
            position: AtomicU64::new(UNKNOWN),
            timeline: AtomicU64::new(UNKNOWN),
            replay_age_us: AtomicU64::new(UNKNOWN),
            lag_bytes: AtomicU64::new(0),
            lag_us: AtomicU64::new(0),
            served: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            misroutes: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            last_error: Mutex::new(None),
            ban: Mutex::new(Ban::default()),
            caught_up: Mutex::new(None),
            weight: 1,
            in_flight: AtomicU32::new(0),
            latency: PeakEwma::default(),
            metrics: NodeMetrics::new(&name_for_metrics),
            down: Notify::new(),
            system_id: AtomicU64::new(UNKNOWN),
            foreign: AtomicBool::new(false),
            rival: AtomicBool::new(false),
            writer: AtomicBool::new(false),
            suspected: AtomicBool::new(false),
            probe_conn: Mutex::new(None),
            probe_options: None,
            monitor_secret: None,
            gtids: Mutex::new(None),
            replication: Mutex::new(None),
            broken: AtomicBool::new(false),
            status_denied: Mutex::new(None),
            deposed: AtomicBool::new(false),
            origin: crate::topology::Origin::Declared,
            removed: AtomicBool::new(false),
            removed_signal: Notify::new(),
            was_standby: AtomicBool::new(false),
            veto: Mutex::new(None),
            vetoed: AtomicBool::new(false),
        }
    }

    /// Probes connect with these options (a monitor credential), whose password is
    /// scrubbed like the node's own.
    pub(crate) fn with_probe_options(
        mut self,
        options: <DB::Connection as sqlx::Connection>::Options,
        secret: Option<String>,
    ) -> Self {
        self.probe_options = Some(options);
        self.monitor_secret = secret.filter(|s| !s.is_empty());
        self
    }

    /// Records where it came from.
    pub(crate) fn with_origin(mut self, origin: crate::topology::Origin) -> Self {
        self.origin = origin;
        self
    }

    /// Sets the balancing weight (at least 1).
    pub(crate) fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight.max(1);
        self
    }

    /// What a balancing policy sees of this node.
    pub(crate) fn load(&self) -> Load {
        Load {
            weight: self.weight,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            latency: self.latency.get(),
        }
    }

    /// Marks a statement as running here until the returned guard is dropped.
    pub(crate) fn start_call(self: &Arc<Self>) -> Busy<DB> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.metrics.in_flight.increment(1.0);
        Busy {
            node: Arc::clone(self),
            started: Instant::now(),
        }
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Whether reads may go here: a reachable replica of this cluster that is a standby (or
    /// cannot tell) and is not lagging.
    pub(crate) fn serves_reads(&self) -> bool {
        self.readable() && !self.is_removed()
    }

    /// Whether reads already running here may go on: it is reachable and of this cluster.
    /// A node that left the rotation for any other reason (promoted, lagging, removed,
    /// excluded by Patroni) still answers them; a read is abandoned (and run again
    /// elsewhere) only when the node may never answer.
    pub(crate) fn answers(&self) -> bool {
        self.is_healthy() && !self.is_foreign()
    }

    /// Whether reads may go here, removal aside (see [`serves_reads`](Self::serves_reads)).
    fn readable(&self) -> bool {
        self.is_standby()
            && self.is_healthy()
            && !self.lagging.load(Ordering::Acquire)
            && !self.broken.load(Ordering::Acquire)
            && !self.vetoed.load(Ordering::Acquire)
            && !self.is_foreign()
    }

    /// What a membership source says about it: `Some(why)` keeps it out of the reads.
    #[cfg(feature = "patroni")]
    pub(crate) fn set_veto(&self, why: Option<String>) {
        let vetoed = why.is_some();
        if vetoed && !self.vetoed.swap(true, Ordering::AcqRel) {
            tracing::warn!(node = %self.name, why = why.as_deref().unwrap_or(""), "node leaves the rotation");
            self.down.notify_waiters();
        } else if !vetoed && self.vetoed.swap(false, Ordering::AcqRel) {
            tracing::info!(node = %self.name, "node may serve reads again");
        }
        *lock(&self.veto) = why;
    }

    /// Whether it is a reader by role: a declared replica not known to be writable, or a
    /// discovered node known to be a standby.
    pub(crate) fn is_standby(&self) -> bool {
        match self.role {
            Role::Replica => self.in_recovery() != Some(false),
            Role::Discovered => self.in_recovery() == Some(true),
            _ => false,
        }
    }

    /// It was removed from the pool ([`ReplicaPool::remove_node`]): it serves nothing and
    /// is not probed; its pool closes once its calls finished.
    ///
    /// [`ReplicaPool::remove_node`]: crate::ReplicaPool::remove_node
    pub(crate) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    /// Takes it out of everything new (see [`is_removed`](Self::is_removed)); calls running
    /// on it go on.
    pub(crate) fn remove(&self) {
        if !self.removed.swap(true, Ordering::AcqRel) {
            tracing::info!(node = %self.name, "node removed from the pool; draining");
            self.removed_signal.notify_waiters();
        }
    }

    /// Statements running on it now.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Whether its system identifier is another cluster's.
    pub(crate) fn is_foreign(&self) -> bool {
        self.foreign.load(Ordering::Acquire)
    }

    /// The system identifier its last probe reported.
    pub(crate) fn system_id(&self) -> Option<u64> {
        known(self.system_id.load(Ordering::Relaxed))
    }

    /// Checks a probe's system identifier against the cluster's (`None`: not known, or the
    /// backend has none). Called before [`mark_up`](Self::mark_up), so a node of another
    /// cluster never enters the rotation, not even for a moment.
    pub(crate) fn check_identity(&self, probe: &Probe, cluster: Option<u64>) {
        self.system_id
            .store(probe.cluster_id.unwrap_or(UNKNOWN), Ordering::Relaxed);
        let foreign = matches!((probe.cluster_id, cluster), (Some(a), Some(b)) if a != b);
        if foreign && !self.foreign.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                node = %self.name,
                system_identifier = probe.cluster_id,
                cluster = cluster,
                "node belongs to another cluster; it serves neither reads nor writes"
            );
            self.down.notify_waiters();
        } else if !foreign {
            self.foreign.store(false, Ordering::Release);
        }
    }

    pub(crate) fn is_writer(&self) -> bool {
        self.writer.load(Ordering::Acquire)
    }

    /// Set by the election. The writer is never banned: it is probed every round.
    pub(crate) fn set_writer(&self, writer: bool) {
        self.writer.store(writer, Ordering::Release);
        if writer {
            lock(&self.ban).lift();
        }
    }

    /// Set by the election: it claims the primary role but does not take the writes.
    pub(crate) fn set_rival(&self, rival: bool) {
        if rival && !self.rival.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                node = %self.name,
                "node claims the primary role but another node takes the writes; it gets no writes and serves no reads"
            );
        } else if !rival {
            self.rival.store(false, Ordering::Release);
        }
    }

    /// Marks that a statement's connection error is being confirmed by a probe; `false` if
    /// one is running already.
    pub(crate) fn start_suspecting(&self) -> bool {
        !self.suspected.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn stop_suspecting(&self) {
        self.suspected.store(false, Ordering::Release);
    }

    /// Takes the kept probe connection out, if there is one.
    pub(crate) fn take_probe_connection(&self) -> Option<DB::Connection> {
        lock(&self.probe_conn).take()
    }

    /// Keeps a connection for the next probe (closing the pool drops it).
    pub(crate) fn keep_probe_connection(&self, conn: DB::Connection) {
        if self.pool.is_closed() {
            return;
        }
        *lock(&self.probe_conn) = Some(conn);
    }

    /// Whether its pool could hand out a connection without waiting for one to come back:
    /// an idle one, or room to open one.
    pub(crate) fn has_free_connection(&self) -> bool {
        self.pool.num_idle() > 0 || self.pool.size() < self.pool.options().get_max_connections()
    }

    pub(crate) fn in_recovery(&self) -> Option<bool> {
        match self.in_recovery.load(Ordering::Relaxed) {
            RECOVERY_NO => Some(false),
            RECOVERY_YES => Some(true),
            _ => None,
        }
    }

    pub(crate) fn position(&self) -> Option<u64> {
        known(self.position.load(Ordering::Relaxed))
    }

    /// Its MariaDB GTID position.
    pub(crate) fn gtids(&self) -> Option<GtidSet> {
        *lock(&self.gtids)
    }

    /// Whether it has replayed `at`: the scalar position first (cheap, and necessary),
    /// then the timeline, then every GTID domain.
    pub(crate) fn covers(&self, at: &At) -> bool {
        self.position().is_some_and(|p| p >= at.position)
            && (at.timeline.is_none() || self.timeline() == at.timeline)
            && at
                .gtids
                .is_none_or(|want| self.gtids().is_some_and(|have| have.contains(&want)))
    }

    /// Whether the next probe should read replication status (not while it was refused
    /// recently).
    pub(crate) fn wants_replication_status(&self) -> bool {
        lock(&self.status_denied).is_none_or(|t| t.elapsed() >= ASK_STATUS_AGAIN)
    }

    /// It lost the writes to another node.
    pub(crate) fn depose(&self) {
        self.deposed.store(true, Ordering::Release);
    }

    pub(crate) fn is_deposed(&self) -> bool {
        self.deposed.load(Ordering::Acquire)
    }

    /// Whether a probe ever saw it following a primary.
    pub(crate) fn was_standby(&self) -> bool {
        self.was_standby.load(Ordering::Acquire)
    }

    pub(crate) fn timeline(&self) -> Option<u64> {
        known(self.timeline.load(Ordering::Relaxed))
    }

    /// Counts one statement dispatched to this node.
    pub(crate) fn served(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
        self.metrics.queries.increment(1);
    }

    /// Counts a read that failed here and was tried again elsewhere.
    pub(crate) fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        self.metrics.retries.increment(1);
    }

    /// Counts a statement this replica refused as a write (it then ran on the primary).
    pub(crate) fn misrouted(&self) {
        self.misroutes.fetch_add(1, Ordering::Relaxed);
        self.metrics.misroutes.increment(1);
    }

    /// Text from the driver with this node's password scrubbed out.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let text = redact::scrub(text, self.secret.as_deref());
        match &self.monitor_secret {
            Some(s) => redact::scrub(&text, Some(s)),
            None => text,
        }
    }

    /// Whether the health task should skip probing it now (banned after failures).
    pub(crate) fn is_banned(&self) -> bool {
        lock(&self.ban).is_banned(Instant::now())
    }

    /// A probe succeeded.
    pub(crate) fn mark_up(&self, probe: Probe) {
        let was = self.in_recovery.load(Ordering::Relaxed);
        if self.role == Role::Replica && probe.in_recovery == Some(false) && was != RECOVERY_NO {
            tracing::warn!(node = %self.name, "configured replica is not in recovery (promoted?); it no longer serves reads");
        }
        self.in_recovery.store(
            match probe.in_recovery {
                None => RECOVERY_UNKNOWN,
                Some(false) => RECOVERY_NO,
                Some(true) => RECOVERY_YES,
            },
            Ordering::Relaxed,
        );
        // Following a primary: in recovery, and where replication status is known (MySQL
        // with a monitor credential) with a replication thread running — `read_only` alone
        // may just be a restarted old primary's configuration.
        let following = probe.in_recovery == Some(true)
            && match &probe.replication {
                Some(r) if r.unavailable.is_none() => r.channels.iter().any(|c| c.is_running()),
                _ => true,
            };
        if following {
            self.was_standby.store(true, Ordering::Release);
            if self.deposed.swap(false, Ordering::AcqRel) {
                tracing::info!(node = %self.name, "the old writer is a replica now; it may be promoted again");
            }
        }
        self.position
            .store(probe.position.unwrap_or(UNKNOWN), Ordering::Relaxed);
        *lock(&self.gtids) = probe.gtids;
        if let Some(r) = probe.replication {
            if r.unavailable.is_some() {
                *lock(&self.status_denied) = Some(Instant::now());
            }
            let broken = r.broken();
            if let Some(why) = &broken {
                if !self.broken.swap(true, Ordering::AcqRel) {
                    tracing::warn!(node = %self.name, error = %why, "replication stopped with an error, leaving the rotation");
                    self.down.notify_waiters();
                }
            } else if self.broken.swap(false, Ordering::AcqRel) {
                tracing::info!(node = %self.name, "replication runs again, back in the rotation");
            }
            let mut kept = lock(&self.replication);
            // A refusal keeps what an earlier probe could read.
            if r.unavailable.is_none() || kept.is_none() {
                *kept = Some(r);
            }
        }
        self.timeline
            .store(probe.timeline.unwrap_or(UNKNOWN), Ordering::Relaxed);
        self.replay_age_us.store(
            probe.replay_age.map_or(UNKNOWN, |d| d.as_micros() as u64),
            Ordering::Relaxed,
        );
        self.metrics.healthy.set(1.0);
        if !self.healthy.swap(true, Ordering::AcqRel) {
            lock(&self.ban).readmit(Instant::now());
            tracing::info!(node = %self.name, "node is healthy, in the rotation");
        }
    }

    /// A probe failed: the node leaves the rotation. Unless it takes the writes, it is banned
    /// from probing for a while ([`Ban`]), longer each time it fails again soon.
    pub(crate) fn mark_down(&self, why: &str, backoff: Backoff) {
        let why = self.scrub(why);
        let was_healthy = self.healthy.swap(false, Ordering::AcqRel);
        self.metrics.healthy.set(0.0);
        if !self.is_writer() {
            lock(&self.ban).fail(Instant::now(), was_healthy, backoff);
        }
        if was_healthy {
            tracing::warn!(node = %self.name, error = %why, "node is unhealthy, leaving the rotation");
            self.down.notify_waiters();
        }
        *lock(&self.last_error) = Some(why);
    }

    /// Records this replica's lag and applies the limits, with hysteresis: it leaves the
    /// rotation above a limit and returns only below half of it, so it does not flap.
    pub(crate) fn set_lag(
        &self,
        bytes: u64,
        time: Duration,
        max_time: Option<Duration>,
        max_bytes: Option<u64>,
    ) {
        self.lag_bytes.store(bytes, Ordering::Relaxed);
        self.lag_us
            .store(time.as_micros() as u64, Ordering::Relaxed);
        self.metrics.lag_bytes.set(bytes as f64);
        self.metrics.lag_seconds.set(time.as_secs_f64());
        let over = max_time.is_some_and(|m| time > m) || max_bytes.is_some_and(|m| bytes > m);
        let under_half =
            max_time.is_none_or(|m| time <= m / 2) && max_bytes.is_none_or(|m| bytes <= m / 2);
        let lagging = self.lagging.load(Ordering::Acquire);
        if !lagging && over {
            self.lagging.store(true, Ordering::Release);
            tracing::warn!(node = %self.name, lag_bytes = bytes, lag = ?time, "replica is lagging, leaving the rotation");
            self.down.notify_waiters();
        } else if lagging && under_half {
            self.lagging.store(false, Ordering::Release);
            tracing::info!(node = %self.name, lag_bytes = bytes, lag = ?time, "replica caught up, back in the rotation");
        }
    }

    /// Records a replay position seen outside the health probe; positions only move forward.
    pub(crate) fn advance_position(&self, p: crate::LogPosition) {
        let mut position = p.position;
        if let Some(new) = p.gtids {
            let mut gtids = lock(&self.gtids);
            let merged = gtids.and_then(|old| old.union(&new)).unwrap_or(new);
            position = merged.total();
            *gtids = Some(merged);
        }
        let _ = self
            .position
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                (p == UNKNOWN || p < position).then_some(position)
            });
    }

    pub(crate) fn caught_up_now(&self) {
        *lock(&self.caught_up) = Some(Instant::now());
    }

    /// Time since a probe last found it caught up, if one ever did.
    pub(crate) fn since_caught_up(&self) -> Option<Duration> {
        lock(&self.caught_up).map(|t| t.elapsed())
    }

    /// Time since the last replayed transaction, as the last probe saw it.
    pub(crate) fn replay_age(&self) -> Option<Duration> {
        known(self.replay_age_us.load(Ordering::Relaxed)).map(Duration::from_micros)
    }

    /// Resolves when this node next leaves the rotation after this call. Create it before
    /// checking the state: a `Notified` counts the notifications sent after its creation
    /// even if it is first polled later, so a change in between is not missed.
    pub(crate) fn left_rotation(&self) -> tokio::sync::futures::Notified<'_> {
        self.down.notified()
    }

    /// Acquires a connection from this node's pool, giving up as soon as the node leaves the
    /// rotation (sqlx keeps retrying a refused connection until its acquire timeout, which
    /// would make every caller wait that long on a dead node). `None` means it left.
    pub(crate) async fn acquire_while_in_rotation(
        &self,
    ) -> Option<Result<PoolConnection<DB>, sqlx::Error>> {
        // Created before the check, so leaving the rotation after it still wakes us; not
        // enabled up front: when a connection is free, `acquire` is ready at its first poll
        // and the node's waiter list is never locked (`notify_waiters` wakes a `Notified`
        // created before it even if it was first polled after).
        let down = self.left_rotation();
        let removed = self.removed_signal.notified();
        if !self.serves_reads() {
            return None;
        }
        tokio::select! {
            biased;
            conn = self.pool.acquire() => Some(conn),
            _ = down => None,
            _ = removed => None,
        }
    }

    /// Opens connections until the pool holds `min_connections`, as `PgPool::connect` does
    /// before returning (a lazily created sqlx pool opens them only after `idle_timeout`).
    /// Failures are left to the probes; each open is bounded by the acquire timeout.
    pub(crate) async fn open_min_connections(&self) {
        use futures_util::StreamExt;
        let min = self.pool.options().get_min_connections();
        let want = min.saturating_sub(self.pool.size());
        // Held while more are opened, so the pool must open new ones rather than hand one
        // back `want` times. Once the pool counts `min` (which includes connections still
        // being opened: those are let finish, not cancelled), every connection goes back at
        // once, so a fixed-size pool whose connections the application already uses is not
        // kept waiting.
        let mut opening: futures_util::stream::FuturesUnordered<_> =
            (0..want).map(|_| self.pool.acquire()).collect();
        let mut held = Vec::new();
        while let Some(outcome) = opening.next().await {
            let Ok(conn) = outcome else { break };
            if self.pool.size() < min {
                held.push(conn);
            } else {
                held.clear();
            }
        }
    }

    /// Counts an error a statement returned on this node. Returns whether it is evidence
    /// against the node (a connection-class error) that a probe should confirm; the error
    /// alone never takes the node out (one terminated backend is not a dead server).
    pub(crate) fn record_error(&self, e: &sqlx::Error) -> bool {
        self.count_error();
        DB::is_unavailable(e)
    }

    /// Counts an error without judging the node (e.g. a statement timeout).
    pub(crate) fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.metrics.errors.increment(1);
    }

    /// Its row in [`Status`](crate::Status); `cluster` is the cluster's system identifier,
    /// `writer` the name of the node that takes the writes.
    pub(crate) fn status(&self, cluster: Option<u64>, writer: &str) -> crate::status::NodeStatus {
        let lag = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let replica = self.is_standby();
        let excluded = if self.is_foreign() {
            Some(format!(
                "another cluster (system identifier {}, the primary's is {})",
                self.system_id().unwrap_or_default(),
                cluster.unwrap_or_default()
            ))
        } else if self.rival.load(Ordering::Acquire) {
            Some(format!(
                "claims the primary role while {writer} takes the writes"
            ))
        } else if self.vetoed.load(Ordering::Acquire) {
            lock(&self.veto).clone()
        } else if self.broken.load(Ordering::Acquire) {
            lock(&self.replication)
                .as_ref()
                .and_then(Replication::broken)
        } else {
            None
        };
        crate::status::NodeStatus {
            name: self.name.clone(),
            url: self.url.clone(),
            role: self.role,
            writer: self.is_writer(),
            healthy: self.is_healthy(),
            lagging: self.lagging.load(Ordering::Relaxed),
            in_recovery: self.in_recovery(),
            lag_bytes: replica.then(|| lag(&self.lag_bytes)),
            lag: replica.then(|| Duration::from_micros(lag(&self.lag_us))),
            queries: lag(&self.served),
            errors: lag(&self.errors),
            retries: lag(&self.retries),
            misroutes: lag(&self.misroutes),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            latency: Duration::from_secs_f64(self.latency.get()),
            connections: self.pool.size(),
            idle: self.pool.num_idle(),
            last_error: lock(&self.last_error).clone(),
            excluded,
            timeline: self.timeline(),
            gtid_position: self.gtids().map(|g| g.to_string()),
            replication: lock(&self.replication).clone(),
            origin: self.origin,
        }
    }
}

impl<DB: Backend> fmt::Debug for Node<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("url", &self.url)
            .field("healthy", &self.is_healthy())
            .finish_non_exhaustive()
    }
}

/// The node's handles in the `metrics` facade, registered once with a `node` label (its
/// name, never its URL). Without an installed recorder they do nothing.
struct NodeMetrics {
    queries: metrics::Counter,
    errors: metrics::Counter,
    retries: metrics::Counter,
    misroutes: metrics::Counter,
    duration: metrics::Histogram,
    healthy: metrics::Gauge,
    in_flight: metrics::Gauge,
    lag_seconds: metrics::Gauge,
    lag_bytes: metrics::Gauge,
}

impl NodeMetrics {
    fn new(node: &str) -> Self {
        let labels = [("node", node.to_owned())];
        NodeMetrics {
            queries: metrics::counter!("partypool_queries_total", &labels),
            errors: metrics::counter!("partypool_errors_total", &labels),
            retries: metrics::counter!("partypool_retries_total", &labels),
            misroutes: metrics::counter!("partypool_misroutes_total", &labels),
            duration: metrics::histogram!("partypool_query_duration_seconds", &labels),
            healthy: metrics::gauge!("partypool_node_healthy", &labels),
            in_flight: metrics::gauge!("partypool_in_flight", &labels),
            lag_seconds: metrics::gauge!("partypool_replica_lag_seconds", &labels),
            lag_bytes: metrics::gauge!("partypool_replica_lag_bytes", &labels),
        }
    }
}

/// A statement running on a node: counted in its in-flight load while alive.
pub(crate) struct Busy<DB: Backend> {
    node: Arc<Node<DB>>,
    started: Instant,
}

impl<DB: Backend> Busy<DB> {
    /// The connection is checked out: latency is measured from here (the wait for a
    /// connection is already in the load as an outstanding statement; counting it in the
    /// latency too would count it twice).
    pub(crate) fn connected(mut self) -> Self {
        self.started = Instant::now();
        self
    }

    /// The statement completed: record its latency for latency-aware balancing.
    pub(crate) fn done(self) {
        let took = self.started.elapsed();
        self.node.latency.observe(took);
        self.node.metrics.duration.record(took.as_secs_f64());
    }
}

impl<DB: Backend> Drop for Busy<DB> {
    fn drop(&mut self) {
        self.node.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.node.metrics.in_flight.decrement(1.0);
    }
}

fn known(v: u64) -> Option<u64> {
    (v != UNKNOWN).then_some(v)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;

    fn node(role: Role) -> Node<sqlx::Sqlite> {
        let pool = sqlx::pool::PoolOptions::<sqlx::Sqlite>::new()
            .connect_lazy("sqlite::memory:")
            .unwrap();
        Node::new(
            "replica-1".into(),
            role,
            "sqlite::memory:".into(),
            None,
            pool,
        )
    }

    #[tokio::test]
    async fn probes_ban_and_readmit() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_millis(400),
        };
        let n = node(Role::Replica);
        n.mark_down("refused", backoff);
        assert!(n.is_banned() && !n.is_healthy());
        n.mark_up(Probe::default());
        assert!(n.is_healthy() && !n.is_banned());
    }

    #[tokio::test]
    async fn a_statement_error_alone_never_takes_a_node_out() {
        let n = node(Role::Replica);
        n.mark_up(Probe::default());
        let e = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(n.record_error(&e), "asks for a probe");
        assert!(
            !n.record_error(&sqlx::Error::PoolTimedOut),
            "a full pool is no evidence"
        );
        assert!(n.is_healthy() && !n.is_banned());
    }

    #[tokio::test]
    async fn the_writer_is_never_banned() {
        let n = node(Role::Replica);
        n.set_writer(true);
        n.mark_down("refused", Backoff::default());
        assert!(!n.is_healthy() && !n.is_banned());
    }

    #[tokio::test]
    async fn another_clusters_node_serves_nothing() {
        let n = node(Role::Replica);
        let probe = Probe {
            in_recovery: Some(true),
            cluster_id: Some(7),
            ..Probe::default()
        };
        n.check_identity(&probe, Some(8));
        n.mark_up(probe.clone());
        assert!(n.is_healthy() && !n.serves_reads());
        n.check_identity(&probe, Some(7));
        assert!(n.serves_reads());
    }

    #[tokio::test]
    async fn a_primary_that_is_not_the_writer_is_banned_like_any_node() {
        let n = node(Role::Primary);
        n.mark_down("refused", Backoff::default());
        assert!(!n.is_healthy() && n.is_banned());
    }

    #[tokio::test]
    async fn lag_limits_have_hysteresis() {
        let n = node(Role::Replica);
        n.mark_up(Probe {
            in_recovery: Some(true),
            ..Probe::default()
        });
        let max = Some(Duration::from_secs(1));
        n.set_lag(10, Duration::from_millis(900), max, None);
        assert!(n.serves_reads());
        n.set_lag(10, Duration::from_millis(1100), max, None);
        assert!(!n.serves_reads(), "over the limit: out");
        n.set_lag(10, Duration::from_millis(800), max, None);
        assert!(!n.serves_reads(), "between half and the limit: still out");
        n.set_lag(0, Duration::from_millis(400), max, None);
        assert!(n.serves_reads(), "below half: back");
        n.set_lag(5_000, Duration::ZERO, None, Some(1_000));
        assert!(!n.serves_reads(), "the byte limit works alone");
    }
}
