//! [`Builder`]: assemble a [`ReplicaPool`](super::ReplicaPool) step by step.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use futures_core::future::BoxFuture;
use sqlx::Connection;
use sqlx::pool::PoolConnectionMetadata;

use crate::backend::Backend;
use crate::{Config, Error, ReplicaPool, redact};

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
}

impl<DB: Backend> Default for Hooks<DB> {
    fn default() -> Self {
        Hooks {
            connect_options: None,
            after_connect: None,
            monitor: None,
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
    primary: Option<String>,
    replicas: Vec<String>,
    config: Config,
    hooks: Hooks<DB>,
    _db: PhantomData<fn() -> DB>,
}

impl<DB: Backend> Builder<DB> {
    pub(crate) fn new() -> Self {
        Builder {
            primary: None,
            replicas: Vec::new(),
            config: Config::default(),
            hooks: Hooks::default(),
            _db: PhantomData,
        }
    }

    /// Sets the primary's URL (required).
    pub fn primary(mut self, url: impl Into<String>) -> Self {
        self.primary = Some(url.into());
        self
    }

    /// Adds a replica's URL. Call once per replica; none at all is allowed (every statement
    /// then runs on the primary).
    pub fn replica(mut self, url: impl Into<String>) -> Self {
        self.replicas.push(url.into());
        self
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

    /// Connects; see [`ReplicaPool::connect`] for what can fail.
    pub async fn connect(self) -> Result<ReplicaPool<DB>, Error> {
        let primary = self
            .primary
            .ok_or_else(|| Error::Config("no primary URL: call .primary(url)".into()))?;
        let replicas: Vec<&str> = self.replicas.iter().map(String::as_str).collect();
        ReplicaPool::connect_with(&primary, &replicas, self.config, self.hooks).await
    }
}

impl<DB: Backend> fmt::Debug for Builder<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("primary", &self.primary.as_deref().map(redact::redact_url))
            .field(
                "replicas",
                &self
                    .replicas
                    .iter()
                    .map(|u| redact::redact_url(u))
                    .collect::<Vec<_>>(),
            )
            .field("config", &self.config)
            .field("connect_options", &self.hooks.connect_options.is_some())
            .field("after_connect", &self.hooks.after_connect.is_some())
            .field("monitor_user", &self.hooks.monitor.as_ref().map(|(u, _)| u))
            .finish()
    }
}
