//! [`Config`]: every tunable, with its default, in one place.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::balance::Balance;
use crate::route::{Dialect, Router};

/// `pub fn field(self, value) -> Self` for each listed field.
macro_rules! setters {
    ($($(#[$doc:meta])* $field:ident: $ty:ty,)*) => {$(
        $(#[$doc])*
        #[must_use]
        pub fn $field(mut self, value: $ty) -> Self {
            self.$field = value;
            self
        }
    )*};
}

/// The same for `Option` fields: the setter takes a value or an `Option`.
macro_rules! optional_setters {
    ($($(#[$doc:meta])* $field:ident: $ty:ty,)*) => {$(
        $(#[$doc])*
        #[must_use]
        pub fn $field(mut self, value: impl Into<Option<$ty>>) -> Self {
            self.$field = value.into();
            self
        }
    )*};
}

/// Settings for a [`ReplicaPool`](crate::ReplicaPool). `Config::default()` is the original
/// package's `DefaultConfig()`.
///
/// Every field has a default, so a config file (or `serde` source) needs to name only what it
/// changes; durations are written the human way (`"500ms"`, `"5s"`).
///
/// ```
/// use std::time::Duration;
/// use partypool::{Balance, Config};
///
/// let config = Config::default()
///     .health_check_interval(Duration::from_secs(2))
///     .balance(Balance::Random);
/// assert_eq!(config.max_connections, 10);
///
/// // The same from JSON (or TOML, YAML… through serde):
/// let from_file: Config = serde_json::from_str(r#"{ "health_check_interval": "2s", "balance": "random" }"#)?;
/// assert_eq!(from_file, config);
/// # Ok::<(), serde_json::Error>(())
/// ```
///
/// | field | default | meaning |
/// |---|---|---|
/// | `health_check_interval` | 5 s | how often the background task probes every node |
/// | `health_check_timeout` | 1 s | how long one probe may take before the node counts as down |
/// | `balance` | `round_robin` | how reads are spread over healthy replicas |
/// | `max_connections` | 10 | connections per node (each replica and the primary) |
/// | `min_connections` | 0 | idle connections each node keeps open |
/// | `primary_max_connections` | same as `max_connections` (1 for SQLite) | connections to the primary |
/// | `acquire_timeout` | 5 s | longest wait for a connection from one node's pool |
/// | `idle_timeout` | 10 min | idle connections older than this are closed |
/// | `max_lifetime` | 30 min | connections older than this are closed when returned |
/// | `test_before_acquire` | `true` | ping an idle connection before handing it out |
/// | `write_functions` | none | your functions that write: calls go to the primary |
/// | `strict_functions` | `false` | any function not known read-only sends a statement to the primary |
/// | `strict_replicas` | `true` | replica sessions are read-only: a misrouted write is refused there and runs on the primary |
/// | `read_only_functions` | none | your read-only functions, for strict mode |
/// | `max_read_retries` | 2 | retries of a read that failed with a connection error before any row |
/// | `statement_timeout` | none | longest wait for a statement's next result |
/// | `ban_backoff` | 1 s … 30 s | how long a failing replica stays out before the next probe |
/// | `max_replica_lag` | 30 s | a replica further behind leaves the rotation |
/// | `max_replica_lag_bytes` | none | the same limit in WAL bytes |
/// | `follow_promotion` | `true` | send writes to a promoted replica when the primary is gone |
/// | `consistency` | `causal` | how reads see earlier writes: by log position, or by time |
/// | `consistency_scope` | `process` | whose writes a read sees: every pool's in the process, a session's, or none |
/// | `causal_wait` | 50 ms | how long a session read waits for a replica to catch up |
/// | `position_interval` | 5 ms | how long a replica found behind is not asked its replay position again |
/// | `discovery_interval` | 5 s | how often DNS names (`Builder::dns`) and Patroni are asked for the members |
/// | `prefer_zone` | none | reads go to replicas of this zone first (`Builder::in_zone`, `?zone=`) |
/// | `idle_probe_after` | none | with no statement for this long, stop probing replicas (serverless replicas suspend) |
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// How often the background task probes every node. Default: 5 s.
    #[serde(with = "humantime_serde")]
    pub health_check_interval: Duration,
    /// How long one probe may take before the node is marked unhealthy. Default: 1 s.
    #[serde(with = "humantime_serde")]
    pub health_check_timeout: Duration,
    /// How reads are spread across healthy replicas. Default: [`Balance::RoundRobin`].
    pub balance: Balance,
    /// Per-replica weights for [`Balance::WeightedRoundRobin`], in replica order (missing
    /// ones count 1). Default: none.
    pub replica_weights: Vec<u32>,
    /// Maximum connections per node. Default: 10 (sqlx's own default).
    pub max_connections: u32,
    /// Connections each node keeps open even when idle. Default: 0.
    pub min_connections: u32,
    /// Maximum connections to the primary, when it should differ from `max_connections`.
    /// Default: `None` (the same), except for SQLite, whose single writer gets 1.
    pub primary_max_connections: Option<u32>,
    /// Longest wait for a connection from one node's pool. Default: 5 s.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// Idle connections are closed after this long. Default: 10 min. `None` keeps them.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    /// Connections older than this are closed when returned, as sqlx's `max_lifetime`
    /// (`null`: never). Default: 30 min.
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Option<Duration>,
    /// Whether a connection is pinged before it is handed out after being idle, as sqlx's
    /// `test_before_acquire`. Default: `true`.
    pub test_before_acquire: bool,
    /// Functions of your own that write (e.g. `["app.bump_counter"]`): statements calling
    /// them go to the primary. Default: none. A write function not listed is still safe: a
    /// replica rejects it and partypool runs it again on the primary (a "misroute").
    pub write_functions: Vec<String>,
    /// Strict mode: a statement that calls any function not known to be read-only (the
    /// built-in allow-list plus `read_only_functions`) goes to the primary. Default: off.
    pub strict_functions: bool,
    /// Every session on a declared replica is read-only (PostgreSQL
    /// `default_transaction_read_only`, a startup parameter; MariaDB `SET SESSION
    /// TRANSACTION READ ONLY` on each new connection), so a write the router took for a read
    /// fails on any replica — also one that would accept it (a logical replica, a replica
    /// with write forwarding) — and runs again on the primary. Should such a replica take
    /// the writes (a promotion with [`follow_promotion`](Self::follow_promotion)), each write
    /// and transaction on it first makes its connection writable (one statement). Nodes of
    /// discovered role are not made read-only: the probes may give them the writes at any
    /// time. Default: on.
    pub strict_replicas: bool,
    /// Your own read-only functions, for strict mode. Default: none.
    pub read_only_functions: Vec<String>,
    /// How often a read that failed on a replica with a connection-class error (before any
    /// row came back) is tried again: on another healthy replica, then the primary.
    /// Default: 2. Writes are never retried.
    pub max_read_retries: u32,
    /// The longest one statement may wait for its next result (client side; the connection
    /// is closed when it fires). A read on a replica then runs again elsewhere; anything else
    /// fails with an error for which [`may_have_committed`](crate::may_have_committed) is
    /// true — the server may still finish it, so set PostgreSQL's own `statement_timeout` for
    /// the role as well. Default: `None` (no limit; a replica that hangs is still cut off by
    /// the health check, see the README).
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Option<Duration>,
    /// How long a replica that failed stays out before it is probed again: `base` after a
    /// first failure, doubling while it keeps failing, up to `max`. Default: 1 s to 30 s.
    pub ban_backoff: Backoff,
    /// A replica further behind the primary than this (time since the primary's newest
    /// change it has not replayed) leaves the rotation, and returns below half of it.
    /// Default: 30 s. `None`: no limit.
    #[serde(with = "humantime_serde")]
    pub max_replica_lag: Option<Duration>,
    /// The same limit in bytes of WAL not yet replayed. Default: `None` (no limit).
    pub max_replica_lag_bytes: Option<u64>,
    /// When the configured primary is unreachable or in recovery and another node has been
    /// promoted, send writes there. Off: writes fail at once with an error that says why.
    /// Default: on.
    pub follow_promotion: bool,
    /// How reads see earlier writes ([`Consistency`]). Default: by log position.
    pub consistency: Consistency,
    /// Whose writes a read sees ([`Scope`]). Default: [`Scope::Process`], every write
    /// acknowledged through any pool of the cluster in this process.
    pub consistency_scope: Scope,
    /// How long a session's read waits for a replica to replay the session's writes before
    /// it reads on the primary instead. Default: 50 ms.
    #[serde(with = "humantime_serde")]
    pub causal_wait: Duration,
    /// The shortest time between two queries of a replica's replay position once one found
    /// it behind what a read needed (and between two shared refreshes while sessions wait
    /// for replicas to catch up): a lagging replica costs at most one query per interval per
    /// pool, however many reads wait for it, and none while none does. Default: 5 ms
    /// (measured: see BENCHMARKS.md).
    #[serde(with = "humantime_serde")]
    pub position_interval: Duration,
    /// How long a write waits for a writer while the node taking the writes is down (its
    /// probe failed): for it to answer again, or for another node to take the writes (a
    /// promotion). Then it fails at once with the reason, never a `PoolTimedOut` after
    /// `acquire_timeout`; nothing was sent. Zero: fail at once. Default: 5 s.
    #[serde(with = "humantime_serde")]
    pub writer_wait: Duration,
    /// How old the data a simulated replica serves is
    /// ([`Builder::simulate_replicas`](crate::Builder::simulate_replicas)): a read there sees
    /// the database as it was between this and an eighth more ago. Default: 200 ms.
    #[serde(with = "humantime_serde")]
    pub simulated_lag: Duration,
    /// How often membership sources are asked again: DNS names given to
    /// [`Builder::dns`](crate::Builder::dns) are looked up, Patroni's `/cluster` is read.
    /// Default: 5 s.
    #[serde(with = "humantime_serde")]
    pub discovery_interval: Duration,
    /// The zone this process runs in: reads go to the healthy, caught-up replicas of this
    /// zone ([`Builder::in_zone`](crate::Builder::in_zone), a `zone` URL parameter, a
    /// Patroni `zone` tag) and spill to other zones only while none of those can take
    /// them — down, lagging, excluded, behind what the read needs, or with every connection
    /// busy while a replica elsewhere has one free. Default: `None` (every zone alike).
    pub prefer_zone: Option<String>,
    /// Serverless replicas that suspend when idle (and bill while awake): with no statement
    /// through the pool for this long, the health task stops probing the replicas, so they
    /// may suspend. The next read probes the replica it picks before trusting it (a
    /// suspended node is not down: it wakes on the probe's connection), and probing
    /// resumes. The primary is still probed, and every node while the primary is down (a
    /// promoted replica must be found). Needs `min_connections = 0`. Default: `None` (always
    /// probe).
    #[serde(with = "humantime_serde")]
    pub idle_probe_after: Option<Duration>,
}

/// Exponential backoff bounds: see [`Config::ban_backoff`].
///
/// ```
/// use std::time::Duration;
/// use partypool::config::Backoff;
/// let b = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
/// assert_eq!(b.max, Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Backoff {
    /// The first wait.
    #[serde(with = "humantime_serde")]
    pub base: Duration,
    /// The longest wait.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
}

impl Backoff {
    /// Waits from `base`, doubling up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff { base, max }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            health_check_interval: Duration::from_secs(5),
            health_check_timeout: Duration::from_secs(1),
            balance: Balance::RoundRobin,
            replica_weights: Vec::new(),
            max_connections: 10,
            min_connections: 0,
            primary_max_connections: None,
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            test_before_acquire: true,
            write_functions: Vec::new(),
            strict_functions: false,
            strict_replicas: true,
            read_only_functions: Vec::new(),
            max_read_retries: 2,
            statement_timeout: None,
            ban_backoff: Backoff::default(),
            max_replica_lag: Some(Duration::from_secs(30)),
            max_replica_lag_bytes: None,
            follow_promotion: true,
            consistency: Consistency::Causal,
            consistency_scope: Scope::Process,
            causal_wait: Duration::from_millis(50),
            position_interval: Duration::from_millis(5),
            discovery_interval: Duration::from_secs(5),
            simulated_lag: Duration::from_millis(200),
            writer_wait: Duration::from_secs(5),
            prefer_zone: None,
            idle_probe_after: None,
        }
    }
}

/// Setters, one per field, for building a `Config` in code: `Config` is `#[non_exhaustive]`
/// (new settings are not breaking changes), so it cannot be written as a struct literal
/// outside this crate. Fields stay public for reading and for `config.field = value`.
///
/// ```
/// use std::time::Duration;
/// use partypool::Config;
///
/// let config = Config::default()
///     .max_connections(20)
///     .statement_timeout(Duration::from_secs(30))
///     .write_functions(["app.bump_counter"]);
/// assert_eq!(config.statement_timeout, Some(Duration::from_secs(30)));
/// ```
impl Config {
    setters! {
        /// Sets [`Config::health_check_interval`].
        health_check_interval: Duration,
        /// Sets [`Config::health_check_timeout`].
        health_check_timeout: Duration,
        /// Sets [`Config::balance`].
        balance: Balance,
        /// Sets [`Config::max_connections`].
        max_connections: u32,
        /// Sets [`Config::min_connections`].
        min_connections: u32,
        /// Sets [`Config::acquire_timeout`].
        acquire_timeout: Duration,
        /// Sets [`Config::test_before_acquire`].
        test_before_acquire: bool,
        /// Sets [`Config::strict_functions`].
        strict_functions: bool,
        /// Sets [`Config::strict_replicas`].
        strict_replicas: bool,
        /// Sets [`Config::max_read_retries`].
        max_read_retries: u32,
        /// Sets [`Config::ban_backoff`].
        ban_backoff: Backoff,
        /// Sets [`Config::follow_promotion`].
        follow_promotion: bool,
        /// Sets [`Config::consistency`].
        consistency: Consistency,
        /// Sets [`Config::consistency_scope`].
        consistency_scope: Scope,
        /// Sets [`Config::causal_wait`].
        causal_wait: Duration,
        /// Sets [`Config::simulated_lag`].
        simulated_lag: Duration,
        /// Sets [`Config::writer_wait`].
        writer_wait: Duration,
        /// Sets [`Config::position_interval`].
        position_interval: Duration,
        /// Sets [`Config::discovery_interval`].
        discovery_interval: Duration,
    }
    optional_setters! {
        /// Sets [`Config::primary_max_connections`].
        primary_max_connections: u32,
        /// Sets [`Config::idle_timeout`] (`None`: never).
        idle_timeout: Duration,
        /// Sets [`Config::max_lifetime`] (`None`: never).
        max_lifetime: Duration,
        /// Sets [`Config::statement_timeout`] (`None`: no limit).
        statement_timeout: Duration,
        /// Sets [`Config::max_replica_lag`] (`None`: no limit).
        max_replica_lag: Duration,
        /// Sets [`Config::max_replica_lag_bytes`] (`None`: no limit).
        max_replica_lag_bytes: u64,
        /// Sets [`Config::idle_probe_after`] (`None`: always probe).
        idle_probe_after: Duration,
    }

    /// Sets [`Config::prefer_zone`].
    ///
    /// ```
    /// let config = partypool::Config::default().prefer_zone("eu-west-1a");
    /// assert_eq!(config.prefer_zone.as_deref(), Some("eu-west-1a"));
    /// ```
    #[must_use]
    pub fn prefer_zone(mut self, zone: impl Into<String>) -> Self {
        self.prefer_zone = Some(zone.into());
        self
    }

    /// Sets [`Config::replica_weights`].
    #[must_use]
    pub fn replica_weights(mut self, weights: impl IntoIterator<Item = u32>) -> Self {
        self.replica_weights = weights.into_iter().collect();
        self
    }

    /// Sets [`Config::write_functions`].
    #[must_use]
    pub fn write_functions<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.write_functions = names.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`Config::read_only_functions`].
    #[must_use]
    pub fn read_only_functions<S: Into<String>>(
        mut self,
        names: impl IntoIterator<Item = S>,
    ) -> Self {
        self.read_only_functions = names.into_iter().map(Into::into).collect();
        self
    }
}

/// See [`Config`]'s setters.
impl Backoff {
    setters! {
        /// Sets [`Backoff::base`].
        base: Duration,
        /// Sets [`Backoff::max`].
        max: Duration,
    }
}

impl Config {
    /// The statement classifier these settings describe.
    pub(crate) fn router(&self, dialect: Dialect) -> Router {
        let mut router = self
            .write_functions
            .iter()
            .fold(Router::new(dialect), |r, f| r.write_function(f));
        if self.strict_functions {
            router = router.strict_functions(&self.read_only_functions);
        }
        router
    }

    /// Checks the settings make sense together.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.health_check_interval.is_zero() {
            return Err("health_check_interval must be greater than zero".into());
        }
        if self.health_check_timeout.is_zero() {
            return Err("health_check_timeout must be greater than zero".into());
        }
        if self.max_connections == 0 || self.primary_max_connections == Some(0) {
            return Err("max_connections must be at least 1".into());
        }
        if self.idle_probe_after.is_some() && self.min_connections > 0 {
            return Err(
                "idle_probe_after needs min_connections = 0: sqlx keeps min_connections open \
                 on every node, so an idle replica would never be let go"
                    .into(),
            );
        }
        if self.ban_backoff.base.is_zero() || self.ban_backoff.base > self.ban_backoff.max {
            return Err("ban_backoff needs 0 < base <= max".into());
        }
        if self.discovery_interval.is_zero() {
            return Err("discovery_interval must be greater than zero".into());
        }
        if self.position_interval.is_zero() {
            return Err("position_interval must be greater than zero".into());
        }
        if self.statement_timeout.is_some_and(|t| t.is_zero()) {
            return Err("statement_timeout must be greater than zero".into());
        }
        if self.simulated_lag > Duration::from_secs(3600) {
            return Err("simulated_lag must be at most an hour".into());
        }
        if self.min_connections > self.max_connections {
            return Err("min_connections must not exceed max_connections".into());
        }
        Ok(())
    }
}

/// How a [`Session`](crate::Session) keeps its reads at least as new as its writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// By log position: reads go to replicas that have replayed the session's writes
    /// (PostgreSQL's WAL position and timeline, MariaDB's GTID position per domain).
    /// Backends whose replicas always see committed writes (SQLite readers of the same file)
    /// need nothing.
    #[default]
    Causal,
    /// By time, like Rails' replica delay: for this long after a write, the session reads on
    /// the primary.
    #[serde(with = "humantime_serde")]
    StickyFor(Duration),
}

/// Whose writes a read is guaranteed to see ([`Config::consistency_scope`]).
///
/// | scope | a read sees | costs |
/// |---|---|---|
/// | `Process` | every write acknowledged in this process, through any pool of the cluster, before the read began; and never an older state than an earlier read | a write: nothing. The first read after writes: one position query on the primary, shared by every read waiting at that moment, and a replica that has replayed it (else a wait of up to `causal_wait`, else the primary) |
/// | `Session` | its [`Session`](crate::Session)'s (or request scope's) writes, also across processes with tokens | a session's write: one position query on its connection |
/// | `Off` | whatever the replica it lands on has replayed | nothing |
///
/// `Process` is the default because it is what a plain `sqlx::PgPool` gives: a request that
/// inserted a row, or waited on another request's row lock, reads it back. Writes by other
/// processes are seen through tokens ([`Session`](crate::Session), the tower layer, the
/// actix-web middleware).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every pool of the cluster in this process: read-your-writes without code changes.
    #[default]
    Process,
    /// Only sessions and request scopes; plain `&pool` reads may be behind.
    Session,
    /// None: every read goes to the next replica, sessions included.
    Off,
}
