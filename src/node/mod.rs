//! One endpoint: its sqlx pool, its identity, its replay position, and its counters. Data,
//! no decisions: whether it serves reads or takes the writes is the cluster's
//! [`View`](crate::cluster::View).

mod lending;
mod metrics;
mod ring;

use std::fmt;
use std::sync::Arc;

pub(crate) use lending::{Lending, checked_out};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool};
use tokio::sync::Notify;

use crate::backend::{Backend, Probe};
use crate::balance::{Load, PeakEwma};
use crate::positions::{At, GtidSet, LogPosition};
use crate::redact;
use crate::roles::{Origin, Role};
use crate::sync::lock;
pub(crate) use metrics::NodeMetrics;
pub(crate) use ring::{Held, Ring};

const UNKNOWN: u64 = u64::MAX;

/// Shards of a node's left-rotation signal (a power of two).
const LEFT_SHARDS: usize = 8;

/// This thread's shard of the left-rotation signals: assigned once per thread, in turn.
fn shard() -> usize {
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % LEFT_SHARDS;
    }
    SHARD.with(|s| *s)
}

/// One database endpoint. Shared by the pool, the executor's streams and the health task;
/// everything in it is atomics or a short-held mutex, so the query path never waits on the
/// health task.
pub(crate) struct Node<DB: Database> {
    pub(crate) name: String,
    pub(crate) role: Role,
    /// The URL with its password redacted; the only form ever displayed.
    pub(crate) url: String,
    /// Its OpenTelemetry attributes (system, database, address, port), from `url`.
    pub(crate) otel: crate::telemetry::NodeAttributes,
    /// The node's password, kept only to scrub it out of driver messages.
    secret: Option<String>,
    pub(crate) pool: Pool<DB>,
    /// Where it came from (declared, multi-host, added…).
    pub(crate) origin: Origin,
    /// Balancing weight (`Config::replica_weights`).
    weight: u32,
    /// Its zone ([`Builder::in_zone`](crate::Builder::in_zone), `?zone=`, a Patroni tag).
    pub(crate) zone: Option<String>,
    /// In [`Config::prefer_zone`](crate::Config::prefer_zone) (every node is, without it):
    /// reads pick among these first.
    pub(crate) local: bool,
    /// Options for the probe's own connection when a monitor credential is configured:
    /// probes then never use the application's pooled connections.
    pub(crate) probe_options: Option<<DB::Connection as sqlx::Connection>::Options>,
    /// The monitor credential's password, scrubbed out of driver messages too.
    monitor_secret: Option<String>,
    /// Rotating credentials ([`Builder::credentials`](crate::Builder::credentials)): their
    /// passwords are scrubbed out of driver messages, and a refusal asks for a new one.
    pub(crate) rotation: Option<Arc<crate::credentials::Rotation>>,
    /// The health probe's own connection, kept between probes (see `health::probe`).
    probe_conn: Mutex<Option<DB::Connection>>,
    /// A probe to confirm a statement's connection error is running.
    suspected: AtomicBool,
    /// One on-demand probe at a time when a read finds it resting; the others wait for it.
    pub(crate) waking: tokio::sync::Mutex<()>,
    /// Replay position (WAL bytes; MariaDB: the total of `gtids`), as probes and on-demand
    /// refreshes saw it: what read-your-writes checks on the query path.
    position: AtomicU64,
    timeline: AtomicU64,
    gtids: Mutex<Option<GtidSet>>,
    served: AtomicU64,
    errors: AtomicU64,
    misroutes: AtomicU64,
    retries: AtomicU64,
    replans: AtomicU64,
    /// Statements running on it now.
    in_flight: AtomicU32,
    /// Recent statement latency, for latency-aware balancing.
    latency: PeakEwma,
    pub(crate) metrics: NodeMetrics,
    /// Woken by the cluster when a published view takes it out of the reads (and when the
    /// pool closes): waits on its pool give up at once, and reads running on it check whether
    /// it still answers. Every statement registers here, so the waiter list is sharded by
    /// thread: statements on different worker threads never contend for one lock.
    left: [Notify; LEFT_SHARDS],
    /// Connections out for partypool's statements and held by the application.
    pub(crate) lending: Arc<Lending>,
    /// A read is asking this node for its replay position; `asked` wakes the reads that
    /// wait for that answer instead of asking too.
    asking: AtomicBool,
    asked: Notify,
    /// Until when (ms on [`gate_clock`]) its replay position is not asked again: a query
    /// found it behind what a read needed, or the shared refresh just read it. Waiting
    /// reads cost each replica at most one query per `position_interval`.
    ask_gate: AtomicU64,
    /// Asks in a row that found it behind what their read needed.
    behind_asks: AtomicU32,
    /// Its sessions are read-only ([`Config::strict_replicas`](crate::Config::strict_replicas)):
    /// a connection must be made writable before it writes.
    pub(crate) strict: bool,
    /// A simulated replica ([`Builder::simulate_replicas`](crate::Builder::simulate_replicas)):
    /// the primary's server, read in snapshots from this ring.
    pub(crate) simulated: Option<Arc<Ring>>,
}

/// Milliseconds since the first use, for [`Node`]'s ask gate.
fn gate_clock() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

impl<DB: Backend> Node<DB> {
    pub(crate) fn new(
        name: String,
        role: Role,
        url: String,
        secret: Option<String>,
        pool: Pool<DB>,
    ) -> Self {
        let otel =
            crate::telemetry::NodeAttributes::from_url(&url, DB::OTEL_SYSTEM, DB::DEFAULT_PORT);
        let metrics = NodeMetrics::new(&name, &otel);
        Node {
            name,
            role,
            url,
            otel,
            secret,
            pool,
            origin: Origin::Declared,
            weight: 1,
            zone: None,
            local: true,
            probe_options: None,
            monitor_secret: None,
            rotation: None,
            probe_conn: Mutex::new(None),
            suspected: AtomicBool::new(false),
            waking: tokio::sync::Mutex::const_new(()),
            position: AtomicU64::new(UNKNOWN),
            timeline: AtomicU64::new(UNKNOWN),
            gtids: Mutex::new(None),
            served: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            misroutes: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            replans: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            latency: PeakEwma::default(),
            metrics,
            left: std::array::from_fn(|_| Notify::new()),
            lending: Arc::default(),
            asking: AtomicBool::new(false),
            asked: Notify::new(),
            ask_gate: AtomicU64::new(0),
            behind_asks: AtomicU32::new(0),
            strict: false,
            simulated: None,
        }
    }

    /// An ask found it behind what its read needed. Once in a while that is a write a moment
    /// old; several in a row is a replica that lags: it is not asked again for `interval`.
    pub(crate) fn found_behind(&self, interval: Duration) {
        const LAGGING: u32 = 4;
        if self.behind_asks.fetch_add(1, Ordering::AcqRel) + 1 >= LAGGING {
            self.close_gate(interval);
        }
    }

    /// An ask found what its read needed.
    pub(crate) fn found_ahead(&self) {
        self.behind_asks.store(0, Ordering::Release);
        self.open_gate();
    }

    /// Whether its replay position may be asked now (see `ask_gate`).
    pub(crate) fn may_ask(&self) -> bool {
        self.ask_gate.load(Ordering::Acquire) <= gate_clock()
    }

    /// No more asks for `interval`: it was found behind, or was just read.
    pub(crate) fn close_gate(&self, interval: Duration) {
        let until = gate_clock() + interval.as_millis() as u64;
        self.ask_gate.fetch_max(until, Ordering::AcqRel);
    }

    /// An ask found what a read needed: later reads may ask at once again.
    pub(crate) fn open_gate(&self) {
        self.ask_gate.store(0, Ordering::Release);
    }

    /// Starts asking for the replay position unless a read already is: `true` when the
    /// caller asks (and must call [`done_asking`](Self::done_asking)).
    pub(crate) fn start_asking(&self) -> bool {
        !self.asking.swap(true, Ordering::AcqRel)
    }

    /// The answer is in (or the ask failed): wakes the reads that waited for it.
    pub(crate) fn done_asking(&self) {
        self.asking.store(false, Ordering::Release);
        self.asked.notify_waiters();
    }

    /// Waits (up to `limit`) for the read that is asking to get its answer.
    pub(crate) async fn wait_asked(&self, limit: std::time::Duration) {
        let asked = self.asked.notified();
        tokio::pin!(asked);
        asked.as_mut().enable();
        if self.asking.load(Ordering::Acquire) {
            let _ = tokio::time::timeout(limit, asked).await;
        }
    }

    /// Shares `lending` with the pool's `after_release` hook, which counts returns into it.
    pub(crate) fn with_lending(mut self, lending: Arc<Lending>) -> Self {
        self.lending = lending;
        self
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
    pub(crate) fn with_origin(mut self, origin: Origin) -> Self {
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

    /// Statements running on it now.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
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

    /// Whether a read sent here now would wait for a connection: the pool is at its limit
    /// with none idle, and partypool's calls on it are as many as its connections, or the
    /// application holds some of them. (A pool at its limit whose connections are on their
    /// way back — returned, not yet idle — is not: measured, 8 tasks on a 10-connection pool
    /// find no idle connection 8% of the time.)
    pub(crate) fn is_saturated(&self) -> bool {
        !self.has_free_connection()
            && (self.in_flight.load(Ordering::Relaxed) >= self.pool.options().get_max_connections()
                // Connections the application holds (transactions, `acquire()`) are not
                // calls of ours: with any out, the pool's own count decides, as before.
                || self.lending.any_held())
    }

    /// Its replay position as last seen.
    pub(crate) fn position(&self) -> Option<u64> {
        known(self.position.load(Ordering::Relaxed))
    }

    /// Its timeline as last seen.
    pub(crate) fn timeline(&self) -> Option<u64> {
        known(self.timeline.load(Ordering::Relaxed))
    }

    /// Its MariaDB GTID position as last seen.
    pub(crate) fn gtids(&self) -> Option<GtidSet> {
        *lock(&self.gtids)
    }

    /// Takes a probe's position, timeline and GTID position as the node's.
    /// The pool went idle and no longer probes it: lets the server forget it (a serverless
    /// replica suspends only without sessions) by closing the probes' kept connection and
    /// the pool's idle ones.
    pub(crate) async fn rest(&self) {
        if let Some(conn) = self.take_probe_connection() {
            let _ = sqlx::Connection::close(conn).await;
        }
        while let Some(conn) = self.pool.try_acquire() {
            self.lending.lend();
            let _ = conn.close().await;
        }
    }

    pub(crate) fn observed(&self, probe: &Probe) {
        *lock(&self.gtids) = probe.gtids;
        self.position
            .store(probe.position.unwrap_or(UNKNOWN), Ordering::Relaxed);
        self.timeline
            .store(probe.timeline.unwrap_or(UNKNOWN), Ordering::Relaxed);
    }

    /// Records a replay position seen outside the health probe; positions only move forward.
    pub(crate) fn advance_position(&self, p: LogPosition) {
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

    /// Where it was last known to be: position, timeline and GTID position.
    pub(crate) fn known_at(&self) -> Option<At> {
        Some(At {
            position: self.position()?,
            timeline: self.timeline(),
            gtids: self.gtids(),
        })
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

    /// Counts a read whose cached plan a schema change invalidated: its connection's
    /// statements were prepared again and it ran again.
    pub(crate) fn replanned(&self) {
        self.replans.fetch_add(1, Ordering::Relaxed);
        self.metrics.replans.increment(1);
    }

    /// Counts a statement this replica refused as a write (it then ran on the primary).
    pub(crate) fn misrouted(&self) {
        self.misroutes.fetch_add(1, Ordering::Relaxed);
        self.metrics.misroutes.increment(1);
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

    /// Text from the driver with this node's passwords scrubbed out: the URL's, the monitor
    /// credential's and every rotated one.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut text = redact::scrub(text, self.secret.as_deref());
        if let Some(s) = &self.monitor_secret {
            text = redact::scrub(&text, Some(s));
        }
        match &self.rotation {
            Some(r) => r.scrub(&text),
            None => text,
        }
    }

    /// Makes its new connections (and probes') log in with `credential`; the application's
    /// open connections stay as they are until recycled. `false` when the database has no passwords.
    pub(crate) fn use_credential(&self, credential: &crate::credentials::Credential) -> bool {
        let options = (*self.pool.connect_options()).clone();
        match DB::with_credential(options, credential.username(), credential.password()) {
            Some(options) => {
                self.pool.set_connect_options(options);
                // The probes' kept connection logs in again with it: a revoked user's
                // session does not linger.
                drop(self.take_probe_connection());
                true
            }
            None => false,
        }
    }

    /// A connection from its pool. With rotating credentials, a login refused (nothing
    /// was sent) renews the credential at once — shared with the logins refused with it —
    /// and is tried once more with it, so a password rotated between two refreshes costs a
    /// statement one round trip to the source, not an error.
    pub(crate) async fn acquire(&self) -> Result<PoolConnection<DB>, sqlx::Error> {
        let seen = self.rotation.as_ref().map(|r| r.generation());
        // Boxed: sqlx's acquire future is 3 KB, and every future of a statement that awaits
        // it would carry (and move) that much more; one allocation costs less than the
        // copies (measured: see BENCHMARKS.md, "the per-statement path").
        let e = match Box::pin(self.pool.acquire()).await {
            Err(e) if DB::is_auth_failure(&e) => e,
            acquired => return acquired,
        };
        let (Some(rotation), Some(seen)) = (&self.rotation, seen) else {
            return Err(e);
        };
        // Boxed: this rare path's state would otherwise sit inside every read's future
        // (measured: moving it cost ~10,000 instructions per statement).
        Box::pin(self.renewed(rotation, seen, e)).await
    }

    /// [`acquire`](Self::acquire) after a refused login: renew, then one more try.
    async fn renewed(
        &self,
        rotation: &crate::credentials::Rotation,
        seen: u64,
        e: sqlx::Error,
    ) -> Result<PoolConnection<DB>, sqlx::Error> {
        let limit = self.pool.options().get_acquire_timeout();
        match tokio::time::timeout(limit, rotation.renew(seen)).await {
            Ok(Ok(credential)) => {
                // The newest (the task may have fetched one since this renewal).
                self.use_credential(&rotation.current().unwrap_or(credential));
                self.pool.acquire().await
            }
            Ok(Err(why)) => {
                tracing::warn!(node = %self.name, error = %why, "login refused; no new credential");
                Err(e)
            }
            Err(_) => Err(e),
        }
    }

    /// A probe's connection, opened with the credential of generation `seen`, failed: a
    /// refusal asks for a new credential, unless one was fetched since (the refusal is then
    /// stale). Probes with a monitor credential never ask: rotation does not change theirs.
    pub(crate) fn probe_connect_failed(&self, e: &sqlx::Error, seen: Option<u64>) {
        if let (Some(r), Some(seen)) = (&self.rotation, seen)
            && self.probe_options.is_none()
            && DB::is_auth_failure(e)
        {
            r.refused(seen);
        }
    }

    /// The generation of the credential its new connections use now (rotating credentials).
    pub(crate) fn credential_generation(&self) -> Option<u64> {
        self.rotation.as_ref().map(|r| r.generation())
    }

    /// Resolves when this node next leaves the rotation after this call. Create it before
    /// checking the view: a `Notified` counts the notifications sent after its creation even
    /// if it is first polled later, so a change in between is not missed.
    pub(crate) fn left_rotation(&self) -> tokio::sync::futures::Notified<'_> {
        self.left[shard()].notified()
    }

    /// Wakes everything waiting on [`left_rotation`](Self::left_rotation) (the cluster, when
    /// it publishes a view in which the node no longer serves reads).
    pub(crate) fn notify_left(&self) {
        for shard in &self.left {
            shard.notify_waiters();
        }
    }

    /// Acquires a connection from this node's pool, giving up as soon as it leaves the
    /// rotation (sqlx keeps retrying a refused connection until its acquire timeout, which
    /// would make every caller wait that long on a dead node). `serves` tells whether the
    /// current view has it in the rotation; `None` means it left.
    pub(crate) async fn acquire_while_in_rotation(
        &self,
        serves: impl Fn() -> bool,
    ) -> Option<Result<PoolConnection<DB>, sqlx::Error>> {
        // Created before the check, so leaving the rotation after it still wakes us; not
        // enabled up front: when a connection is free, `acquire` is ready at its first poll
        // and the node's waiter list is never locked (`notify_waiters` wakes a `Notified`
        // created before it even if it was first polled after).
        let left = self.left_rotation();
        if !serves() {
            return None;
        }
        tokio::select! {
            biased;
            conn = self.acquire() => Some(conn),
            _ = left => None,
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
            self.lending.lend();
            if self.pool.size() < min {
                held.push(conn);
            } else {
                held.clear();
            }
        }
    }

    /// Samples its pool into the `db.client.connection.*` gauges (each health round).
    pub(crate) fn sample_connections(&self) {
        let m = &self.metrics;
        let options = self.pool.options();
        let size = self.pool.size();
        let idle = self.pool.num_idle() as u32;
        let used = size.saturating_sub(idle);
        m.connections_idle.set(f64::from(idle));
        m.connections_used.set(f64::from(used));
        m.connections_max
            .set(f64::from(options.get_max_connections()));
        m.connections_idle_min
            .set(f64::from(options.get_min_connections()));
        let calls = self.in_flight.load(Ordering::Relaxed);
        m.pending_requests
            .set(f64::from(calls.saturating_sub(used)));
    }

    /// Its counters, for `status()`.
    pub(crate) fn counters(&self) -> Counters {
        let count = |v: &AtomicU64| v.load(Ordering::Relaxed);
        Counters {
            queries: count(&self.served),
            errors: count(&self.errors),
            retries: count(&self.retries),
            replans: count(&self.replans),
            misroutes: count(&self.misroutes),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            latency: Duration::from_secs_f64(self.latency.get()),
        }
    }
}

/// What a node has served, for `status()`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counters {
    pub(crate) queries: u64,
    pub(crate) errors: u64,
    pub(crate) retries: u64,
    pub(crate) replans: u64,
    pub(crate) misroutes: u64,
    pub(crate) in_flight: u32,
    pub(crate) latency: Duration,
}

impl<DB: Backend> fmt::Debug for Node<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("url", &self.url)
            .finish_non_exhaustive()
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
        self.node
            .metrics
            .operation_duration
            .record(took.as_secs_f64());
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

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_statement_error_is_evidence_to_confirm_a_full_pool_is_not() {
        let pool = sqlx::pool::PoolOptions::<sqlx::Sqlite>::new()
            .connect_lazy("sqlite::memory:")
            .unwrap();
        let n = Node::new(
            "r".into(),
            Role::Replica,
            "sqlite::memory:".into(),
            None,
            pool,
        );
        let e = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(n.record_error(&e), "asks for a probe");
        assert!(
            !n.record_error(&sqlx::Error::PoolTimedOut),
            "a full pool is no evidence"
        );
        assert_eq!(n.counters().errors, 2);
    }
}
