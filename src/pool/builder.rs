//! [`Builder`]: assemble a [`ReplicaPool`](super::ReplicaPool) step by step.

use std::fmt;
use std::marker::PhantomData;

use crate::backend::Backend;
use crate::{Config, Error, ReplicaPool, redact};

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
///     .config(Config { balance: Balance::Random, ..Config::default() })
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
pub struct Builder<DB: Backend> {
    primary: Option<String>,
    replicas: Vec<String>,
    config: Config,
    _db: PhantomData<fn() -> DB>,
}

impl<DB: Backend> Builder<DB> {
    pub(crate) fn new() -> Self {
        Builder {
            primary: None,
            replicas: Vec::new(),
            config: Config::default(),
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

    /// Connects; see [`ReplicaPool::connect`] for what can fail.
    pub async fn connect(self) -> Result<ReplicaPool<DB>, Error> {
        let primary = self
            .primary
            .ok_or_else(|| Error::Config("no primary URL: call .primary(url)".into()))?;
        let replicas: Vec<&str> = self.replicas.iter().map(String::as_str).collect();
        ReplicaPool::connect(&primary, &replicas, self.config).await
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
            .finish()
    }
}
