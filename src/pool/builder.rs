//! [`Builder`]: assemble a [`ReplicaPool`](super::ReplicaPool) step by step.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use futures_core::future::BoxFuture;
use sqlx::Connection;
use sqlx::pool::PoolConnectionMetadata;

use super::ReplicaPool;
use crate::backend::Backend;
use crate::config::Config;
use crate::discovery::{DnsSource, Resolve, SystemResolver};
use crate::error::Error;
use crate::redact;
use crate::roles::{Origin, Role};
use crate::topology::Member;

/// A node's parsed connect options (`PgConnectOptions`, `MySqlConnectOptions`, …).
pub type ConnectOptionsOf<DB> = <<DB as sqlx::Database>::Connection as Connection>::Options;

type OptionsHook<DB> = Arc<dyn Fn(ConnectOptionsOf<DB>) -> ConnectOptionsOf<DB> + Send + Sync>;
type AfterConnect<DB> = Arc<
    dyn for<'c> Fn(
            &'c mut <DB as sqlx::Database>::Connection,
            PoolConnectionMetadata,
        ) -> BoxFuture<'c, Result<(), sqlx::Error>>
        + Send
        + Sync,
>;

/// What the builder adds to every node's pool beyond [`Config`]: functions, which a
/// serde config cannot hold.
pub(crate) struct Hooks<DB: Backend> {
    pub(crate) connect_options: Option<OptionsHook<DB>>,
    pub(crate) after_connect: Option<AfterConnect<DB>>,
    /// The monitor credential for probes: user and password.
    pub(crate) monitor: Option<(String, String)>,
    /// How DNS names are resolved.
    pub(crate) resolver: Arc<dyn Resolve>,
    /// Names whose addresses are members.
    pub(crate) dns: Vec<DnsSource>,
    /// Patroni clusters whose members are members.
    #[cfg(feature = "patroni")]
    pub(crate) patroni: Vec<Arc<crate::discovery::patroni::PatroniSource>>,
    /// CAs trusted for Patroni's HTTPS endpoints, besides the system's.
    #[cfg(feature = "patroni")]
    pub(crate) patroni_ca: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// How long `connect` waits for every replica to join the rotation.
    pub(crate) wait_for_replicas: Option<std::time::Duration>,
    /// How many simulated replicas to add on the primary's server.
    pub(crate) simulated_replicas: usize,
    /// Nodes given as connect options rather than URLs, by the URL they print as.
    pub(crate) options: std::collections::HashMap<String, ConnectOptionsOf<DB>>,
    /// Rotating credentials for every node's connections.
    pub(crate) credentials: Option<Arc<crate::credentials::Rotation>>,
}

impl<DB: Backend> Default for Hooks<DB> {
    fn default() -> Self {
        Hooks {
            connect_options: None,
            after_connect: None,
            monitor: None,
            resolver: Arc::new(SystemResolver),
            dns: Vec::new(),
            #[cfg(feature = "patroni")]
            patroni: Vec::new(),
            #[cfg(feature = "patroni")]
            patroni_ca: Vec::new(),
            wait_for_replicas: None,
            simulated_replicas: 0,
            options: std::collections::HashMap::new(),
            credentials: None,
        }
    }
}

/// Builds a [`ReplicaPool`]. Made by [`ReplicaPool::builder`].
///
/// ```no_run
/// # async fn demo() -> Result<(), partypool::Error> {
/// use std::time::Duration;
/// use partypool::{Balance, Config, PgReplicaPool};
///
/// let pool = PgReplicaPool::builder()
///     .primary("postgres://app@db-primary/app")
///     .replica("postgres://app@db-replica-1/app")
///     .replica("postgres://app@db-replica-2/app")
///     .config(Config::default().balance(Balance::Random))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
pub struct Builder<DB: Backend> {
    members: Vec<Member>,
    /// The members the last `primary`/`replica`/`node…` call added (for `in_zone`).
    last_added: std::ops::Range<usize>,
    /// The first URL that could not be split into hosts, reported at `connect`.
    bad_url: Option<Error>,
    config: Config,
    hooks: Hooks<DB>,
    _db: PhantomData<fn() -> DB>,
}

impl<DB: Backend> Builder<DB> {
    pub(crate) fn new() -> Self {
        Builder {
            members: Vec::new(),
            last_added: 0..0,
            bad_url: None,
            config: Config::default(),
            hooks: Hooks::default(),
            _db: PhantomData,
        }
    }

    /// Sets the primary's URL: it takes the writes, and its identity is the cluster's.
    ///
    /// A multi-host URL (`postgres://app@h1:5432,h2:5433/app`) names candidates instead, as
    /// libpq's `target_session_attrs=read-write` does: each host is a node whose role the
    /// probes discover (see [`nodes`](Self::nodes)).
    pub fn primary(self, url: impl Into<String>) -> Self {
        self.add(url.into(), Role::Primary)
    }

    /// Sets the primary from connect options, as an application builds a `PgPool` with
    /// `PgPoolOptions::connect_with(PgConnectOptions)`: every option is kept (TLS files,
    /// statement cache, `options`, application name…). The node's name and its `status()`
    /// URL come from the options' [`to_url_lossy`](sqlx::ConnectOptions::to_url_lossy)
    /// (password redacted). [`connect_options`](Self::connect_options) still applies on top.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), partypool::Error> {
    /// use sqlx::postgres::PgConnectOptions;
    ///
    /// let base = PgConnectOptions::new().username("app").database("app").application_name("billing");
    /// let pool = partypool::PgReplicaPool::builder()
    ///     .primary_with(base.clone().host("db-primary"))
    ///     .replica_with(base.clone().host("db-replica-1"))
    ///     .replica_with(base.host("db-replica-2"))
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn primary_with(self, options: ConnectOptionsOf<DB>) -> Self {
        self.add_with(options, Role::Primary)
    }

    /// Adds a replica from connect options; see [`primary_with`](Self::primary_with).
    pub fn replica_with(self, options: ConnectOptionsOf<DB>) -> Self {
        self.add_with(options, Role::Replica)
    }

    /// Adds a node of discovered role from connect options; see
    /// [`primary_with`](Self::primary_with) and [`node`](Self::node).
    pub fn node_with(self, options: ConnectOptionsOf<DB>) -> Self {
        self.add_with(options, Role::Discovered)
    }

    fn add_with(mut self, options: ConnectOptionsOf<DB>, role: Role) -> Self {
        use sqlx::ConnectOptions;
        self.last_added = self.members.len()..self.members.len() + 1;
        let url = options.to_url_lossy().to_string();
        self.hooks.options.insert(url.clone(), options);
        self.members.push(Member {
            url,
            role,
            origin: Origin::Declared,
            name: None,
            zone: None,
        });
        self
    }

    /// Adds a replica's URL (a multi-host URL: one replica per host). Call once per replica;
    /// none at all is allowed (every statement then runs on the primary).
    pub fn replica(self, url: impl Into<String>) -> Self {
        self.add(url.into(), Role::Replica)
    }

    /// Adds a node whose role the probes discover: it serves reads while it is a standby
    /// and takes the writes while it is the one node that is not (see
    /// [`Config::follow_promotion`] for how writes move). A multi-host URL adds each of its
    /// hosts, like [`nodes`](Self::nodes).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), partypool::Error> {
    /// let pool = partypool::PgReplicaPool::builder()
    ///     .node("postgres://app@db-1/app")
    ///     .node("postgres://app@db-2/app")
    ///     .node("postgres://app@db-3/app")
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn node(self, url: impl Into<String>) -> Self {
        self.add(url.into(), Role::Discovered)
    }

    /// Adds every host of a libpq-style multi-host URL as a node of discovered role:
    /// `postgres://user:pw@h1:5432,h2:5433,h3/db?opts` is three nodes with the same user,
    /// database and options. No node needs to be named primary: `connect` succeeds when any
    /// answers; with no writable node, reads work and writes fail at once with an error
    /// that says so, until one appears.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), partypool::Error> {
    /// let pool = partypool::PgReplicaPool::builder()
    ///     .nodes("postgres://app:secret@db-1:5432,db-2:5432,db-3:5432/app")
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn nodes(self, url: impl Into<String>) -> Self {
        self.add(url.into(), Role::Discovered)
    }

    /// Adds a DNS name whose addresses are the members, each a node of discovered role
    /// named `host/addr:port`: a Kubernetes headless service, CloudNativePG's `app-r`
    /// service, a round-robin name. The name is looked up again every
    /// [`Config::discovery_interval`]: a new address joins after its first successful
    /// probe, a vanished one drains (running calls finish) and closes. A failed or empty
    /// lookup changes nothing.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), partypool::Error> {
    /// let pool = partypool::PgReplicaPool::builder()
    ///     .primary("postgres://app@pg-rw.prod.svc/app")
    ///     .dns("postgres://app@pg-ro.prod.svc/app")
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn dns(mut self, url: impl Into<String>) -> Self {
        let url = url.into();
        // Its addresses take the URL's `zone` parameter, not `in_zone`.
        self.last_added = self.members.len()..self.members.len();
        match DnsSource::parse(&url, Role::Discovered, DB::DEFAULT_PORT) {
            Ok(source) => self.hooks.dns.push(source),
            Err(reason) => {
                self.bad_url.get_or_insert(Error::InvalidUrl {
                    node: "dns".into(),
                    url: redact::redact_url(&url),
                    reason,
                });
            }
        }
        self
    }

    /// Takes the members from a Patroni cluster (feature `patroni`): `endpoints` are one or
    /// more of its REST API URLs (`http://pg-1:8008,http://pg-2:8008`; any that answers
    /// will do), `template` the database URL for every member (user, password, database,
    /// options; its host and port, which may be left out — `postgres://app:secret@/app` —
    /// are each member's).
    ///
    /// Every [`Config::discovery_interval`] the pool reads `GET /cluster`: members become
    /// nodes named as Patroni names them, of discovered role; a switchover or failover
    /// Patroni reports moves the writes at once (the new leader and the old writer are
    /// probed right away; the probe has the last word, so a "leader" still in recovery takes
    /// none); members Patroni reports as not running, or with more lag than
    /// [`Config::max_replica_lag_bytes`], serve no reads; members that leave drain.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), partypool::Error> {
    /// let pool = partypool::PgReplicaPool::builder()
    ///     .patroni("http://pg-1:8008,http://pg-2:8008", "postgres://app:secret@/app")
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "patroni")]
    pub fn patroni(mut self, endpoints: impl AsRef<str>, template: impl AsRef<str>) -> Self {
        // Its members take their zones from Patroni's tags, not `in_zone`.
        self.last_added = self.members.len()..self.members.len();
        match crate::discovery::patroni::PatroniSource::new(
            endpoints.as_ref(),
            template.as_ref(),
            &self.hooks.patroni_ca,
        ) {
            Ok(source) => self.hooks.patroni.push(Arc::new(source)),
            Err(reason) => {
                self.bad_url.get_or_insert(Error::InvalidUrl {
                    node: "patroni".into(),
                    url: redact::redact_url(template.as_ref()),
                    reason,
                });
            }
        }
        self
    }

    /// Trusts the CA certificate(s) in `pem` for Patroni endpoints given as `https://` URLs
    /// ([`patroni`](Self::patroni), before or after this call), besides the system's roots:
    /// the usual set-up, where Patroni's `restapi.certfile` is signed by the cluster's own
    /// CA. TLS is rustls (no OpenSSL). A PEM text without a certificate fails `connect`.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = partypool::PgReplicaPool::builder()
    ///     .patroni_ca(std::fs::read("/etc/patroni/ca.pem")?)
    ///     .patroni("https://pg-1:8008,https://pg-2:8008", "postgres://app:secret@/app")
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "patroni")]
    pub fn patroni_ca(mut self, pem: impl AsRef<[u8]>) -> Self {
        match crate::discovery::patroni::parse_pem(pem.as_ref()) {
            Ok(certs) => {
                self.hooks.patroni_ca.extend(certs);
                let ca = self.hooks.patroni_ca.clone();
                for source in &mut self.hooks.patroni {
                    let source =
                        Arc::get_mut(source).expect("sources are shared only once connected");
                    if let Err(reason) = source.trust(&ca) {
                        self.bad_url.get_or_insert(Error::Config(reason));
                    }
                }
            }
            Err(reason) => {
                self.bad_url
                    .get_or_insert(Error::Config(format!("patroni_ca: {reason}")));
            }
        }
        self
    }

    /// Resolves [`dns`](Self::dns) names with `resolver` instead of the system's: the seam
    /// for a service registry, or for tests.
    pub fn resolver(mut self, resolver: impl Resolve) -> Self {
        self.hooks.resolver = Arc::new(resolver);
        self
    }

    fn add(mut self, url: String, role: Role) -> Self {
        let first = self.members.len();
        self.add_hosts(url, role);
        self.last_added = first..self.members.len();
        self
    }

    /// Puts the node(s) the previous call added (`primary`, `replica`, `node`, `nodes`, the
    /// `_with` forms; every host of a multi-host URL) in `zone` (after `dns` or `patroni`,
    /// nothing: DNS members take the URL's `zone` parameter, Patroni's their `zone` tag): with
    /// [`Config::prefer_zone`](crate::Config::prefer_zone) set, reads go to replicas of that
    /// zone first. The same as a `zone` parameter in the node's URL
    /// (`postgres://app@db-replica-1/app?zone=eu-west-1a`, taken out before the URL reaches
    /// the driver); Patroni members take their `zone` tag.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), partypool::Error> {
    /// use partypool::{Config, PgReplicaPool};
    ///
    /// let pool = PgReplicaPool::builder()
    ///     .primary("postgres://app@db-primary/app").in_zone("eu-west-1a")
    ///     .replica("postgres://app@db-replica-1/app").in_zone("eu-west-1a")
    ///     .replica("postgres://app@db-replica-2/app").in_zone("eu-west-1b")
    ///     .config(Config::default().prefer_zone("eu-west-1a"))
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn in_zone(mut self, zone: impl Into<String>) -> Self {
        let zone = zone.into();
        for m in &mut self.members[self.last_added.clone()] {
            m.zone = Some(zone.clone());
        }
        self
    }

    fn add_hosts(&mut self, url: String, role: Role) {
        match crate::topology::split_hosts(&url) {
            Ok(hosts) if hosts.len() == 1 => self.members.push(Member {
                url,
                role,
                origin: if role == Role::Discovered {
                    Origin::MultiHost
                } else {
                    Origin::Declared
                },
                name: None,
                zone: None,
            }),
            Ok(hosts) => {
                let role = match role {
                    Role::Replica => Role::Replica,
                    _ => Role::Discovered,
                };
                self.members.extend(hosts.into_iter().map(|url| Member {
                    url,
                    role,
                    origin: Origin::MultiHost,
                    name: None,
                    zone: None,
                }));
            }
            Err(reason) => {
                self.bad_url.get_or_insert(Error::InvalidUrl {
                    node: "?".into(),
                    url: redact::redact_url(&url),
                    reason,
                });
            }
        }
    }

    /// Replaces the whole [`Config`] (default: `Config::default()`).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Changes every node's connect options after they are parsed from its URL: the place
    /// for settings a URL cannot carry or that every node shares (`application_name`, the
    /// statement cache, TLS roots, …). Applies to the primary and every replica, and to the
    /// health probes' connections.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), partypool::Error> {
    /// let pool = partypool::PgReplicaPool::builder()
    ///     .primary("postgres://app@db-primary/app")
    ///     .replica("postgres://app@db-replica-1/app")
    ///     .connect_options(|o| o.application_name("billing").statement_cache_capacity(500))
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn connect_options(
        mut self,
        f: impl Fn(ConnectOptionsOf<DB>) -> ConnectOptionsOf<DB> + Send + Sync + 'static,
    ) -> Self {
        self.hooks.connect_options = Some(Arc::new(f));
        self
    }

    /// Runs `hook` on every new pooled connection of every node before it is first used
    /// (not on the health probe's own connection, which runs no statement of yours), as
    /// sqlx's [`PoolOptions::after_connect`](sqlx::pool::PoolOptions::after_connect). This
    /// is where per-connection session state belongs: a routed `SET search_path` reaches
    /// only one primary connection, a hook reaches all of them. An error fails that
    /// connection attempt (and is reported like any connection error).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), partypool::Error> {
    /// use sqlx::Executor;
    ///
    /// let pool = partypool::PgReplicaPool::builder()
    ///     .primary("postgres://app@db-primary/app")
    ///     .replica("postgres://app@db-replica-1/app")
    ///     .after_connect(|conn, _meta| {
    ///         Box::pin(async move {
    ///             conn.execute("SET search_path = app, public").await?;
    ///             Ok(())
    ///         })
    ///     })
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn after_connect<F>(mut self, hook: F) -> Self
    where
        F: for<'c> Fn(
                &'c mut DB::Connection,
                PoolConnectionMetadata,
            ) -> BoxFuture<'c, Result<(), sqlx::Error>>
            + Send
            + Sync
            + 'static,
    {
        self.hooks.after_connect = Some(Arc::new(hook));
        self
    }

    /// A separate user for the health probes, as MaxScale and ProxySQL have one.
    ///
    /// Probes then run on their own connection as this user, never on the application's
    /// pooled connections. On MySQL/MariaDB this is how partypool reads replication status
    /// (`SHOW ALL SLAVES STATUS` needs the `SLAVE MONITOR` privilege, which an application
    /// user rarely has): with it, a node is a replica when it has a replication source,
    /// `status()` shows its IO/SQL threads and their last errors, a replica whose
    /// replication stopped with an error leaves the rotation, and lag uses
    /// `Seconds_Behind_Master`. Without it, roles come from `@@read_only` and lag from GTID
    /// positions alone, and `status()` says so. The password is scrubbed from every error
    /// and never printed.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), partypool::Error> {
    /// // CREATE USER monitor@'%' IDENTIFIED BY '…'; GRANT SLAVE MONITOR, BINLOG MONITOR ON *.* TO monitor@'%';
    /// let pool = partypool::MySqlReplicaPool::builder()
    ///     .primary("mysql://app:secret@db-1/app")
    ///     .replica("mysql://app:secret@db-2/app")
    ///     .monitor_credentials("monitor", "monitor-secret")
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn monitor_credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.hooks.monitor = Some((user.into(), password.into()));
        self
    }

    /// Builds the pool without waiting for any node, like sqlx's
    /// [`PoolOptions::connect_lazy_with`](sqlx::pool::PoolOptions::connect_lazy_with), so an
    /// application's synchronous `get_connection_pool(&settings)` stays synchronous. The
    /// first round of probes starts at once in the background; until a replica has answered
    /// it is out of the rotation and reads use the primary, and a database that does not
    /// answer fails statements rather than this call. Names given to
    /// [`dns`](Self::dns) and Patroni are looked up by the discovery task. Fails on bad URLs
    /// or settings, and outside a Tokio runtime (it starts the health task).
    ///
    /// ```no_run
    /// fn get_connection_pool(url: &str, replica: &str) -> partypool::PgReplicaPool {
    ///     partypool::PgReplicaPool::builder()
    ///         .primary(url)
    ///         .replica(replica)
    ///         .connect_lazy()
    ///         .expect("valid database settings")
    /// }
    /// ```
    pub fn connect_lazy(self) -> Result<ReplicaPool<DB>, Error> {
        if let Some(e) = self.bad_url {
            return Err(e);
        }
        ReplicaPool::connect_lazy_with(self.members, self.config, self.hooks)
    }

    /// Makes [`connect`](Self::connect) wait up to `limit` until every replica serves
    /// reads (probing the missing ones every 100 ms), e.g. in tests that start replicas
    /// together with the application or create a database just before. Replicas still
    /// missing then are logged at WARN and join when they answer; `connect` does not fail
    /// for them. Without it, `connect` returns after one round of probes.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), partypool::Error> {
    /// let pool = partypool::PgReplicaPool::builder()
    ///     .primary("postgres://app@db-primary/app")
    ///     .replica("postgres://app@db-replica-1/app")
    ///     .wait_for_replicas(std::time::Duration::from_secs(5))
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn wait_for_replicas(mut self, limit: std::time::Duration) -> Self {
        self.hooks.wait_for_replicas = Some(limit);
        self
    }

    /// Adds `n` simulated replicas on the primary's own server, for development and CI: a
    /// read routed to one sees the database as it was [`Config::simulated_lag`] ago (200 ms
    /// by default), and a write sent to one is refused as on a real standby — so code that
    /// reads its own writes from a replica fails on a laptop the way it would in production,
    /// and correct code passes. Positions, sessions, tokens and the process scope treat them
    /// as real replicas that far behind. PostgreSQL (exported snapshots), MariaDB
    /// (consistent-snapshot transactions) and SQLite in WAL mode (open read transactions);
    /// see the README's "Testing with replicas" for the cost. Never in production.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), partypool::Error> {
    /// use std::time::Duration;
    /// use partypool::{Config, PgReplicaPool};
    ///
    /// let pool = PgReplicaPool::builder()
    ///     .primary("postgres://app@localhost/app")
    ///     .simulate_replicas(2)
    ///     .config(Config::default().simulated_lag(Duration::from_millis(200)))
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// [`Config::simulated_lag`]: crate::Config::simulated_lag
    pub fn simulate_replicas(mut self, n: usize) -> Self {
        self.hooks.simulated_replicas = n;
        self
    }

    /// Logs every node in with credentials that rotate: IAM auth tokens, Vault leases, a
    /// secret a manager rewrites. `connect` asks `source` first (and fails, saying why, when
    /// it cannot answer within `acquire_timeout`); a task asks again after three quarters of
    /// each credential's [`valid_for`](crate::Credential::valid_for) (else every minute), and
    /// at once when a node refuses it. Each answer applies to the new connections of every
    /// node — declared, discovered, added later — and of the probes (not to a
    /// [`monitor_credentials`](Self::monitor_credentials) user); open connections stay
    /// logged in until `max_lifetime` recycles them, as servers keep them. A failed ask keeps
    /// the current credential and is retried (1 s, doubling to 30 s), logged at WARN. No
    /// password is ever logged or put in an error. PostgreSQL and MySQL/MariaDB.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), partypool::Error> {
    /// use std::time::Duration;
    /// use partypool::{Credential, PgReplicaPool};
    ///
    /// async fn iam_token() -> Result<String, std::io::Error> { Ok("…".into()) }
    ///
    /// let pool = PgReplicaPool::builder()
    ///     .primary("postgres://app@db-primary:5432/app")
    ///     .replica("postgres://app@db-replica-1:5432/app")
    ///     .credentials(|| async {
    ///         Ok::<_, std::io::Error>(Credential::new(iam_token().await?).valid_for(Duration::from_secs(900)))
    ///     })
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn credentials(mut self, source: impl crate::credentials::CredentialSource) -> Self {
        self.hooks.credentials = Some(Arc::new(crate::credentials::Rotation::new(source)));
        self
    }

    /// Connects; see [`ReplicaPool::connect`] for what can fail.
    pub async fn connect(self) -> Result<ReplicaPool<DB>, Error> {
        if let Some(e) = self.bad_url {
            return Err(e);
        }
        ReplicaPool::connect_with(self.members, self.config, self.hooks).await
    }
}

impl<DB: Backend> fmt::Debug for Builder<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field(
                "nodes",
                &self
                    .members
                    .iter()
                    .map(|m| (m.role, redact::redact_url(&m.url)))
                    .collect::<Vec<_>>(),
            )
            .field("config", &self.config)
            .field("connect_options", &self.hooks.connect_options.is_some())
            .field("after_connect", &self.hooks.after_connect.is_some())
            .field("monitor_user", &self.hooks.monitor.as_ref().map(|(u, _)| u))
            .field("credentials", &self.hooks.credentials)
            .field("dns", &self.hooks.dns)
            .finish()
    }
}
