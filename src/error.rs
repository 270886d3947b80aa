//! [`Error`]: what can go wrong, naming the node, never showing a password.

/// The error type of partypool's own methods.
///
/// Statements run through `&ReplicaPool` as a [`sqlx::Executor`] return [`sqlx::Error`]
/// unchanged, so existing error handling (`e.as_database_error()`, SQLSTATE codes) keeps
/// working. Everything partypool adds — building the pool, opening a transaction — returns
/// this type, which names the node and shows its URL with the password replaced by `***`.
///
/// `Error` converts into [`sqlx::Error`], so `?` works in functions that return either.
///
/// ```
/// # async fn demo() {
/// use partypool::{Config, Error, PgReplicaPool};
///
/// let err = PgReplicaPool::connect("postgres://app:hunter2@db:notaport/app", &[], Config::default())
///     .await
///     .unwrap_err();
/// assert!(matches!(err, Error::InvalidUrl { .. }));
/// assert!(!err.to_string().contains("hunter2"));
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable (e.g. no primary, a zero interval).
    #[error("invalid partypool configuration: {0}")]
    Config(String),

    /// A node's URL could not be parsed.
    #[error("invalid URL for {node} ({url}): {reason}")]
    InvalidUrl {
        /// The node's name (`primary`, `replica-1`, …).
        node: String,
        /// The URL with its password redacted.
        url: String,
        /// Why the URL was rejected.
        reason: String,
    },

    /// The primary could not be reached when the pool was created.
    #[error("primary {node} ({url}) is unreachable: {reason}")]
    PrimaryUnreachable {
        /// The node's name.
        node: String,
        /// The URL with its password redacted.
        url: String,
        /// What went wrong, with the password scrubbed.
        reason: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// A node returned an error to an operation partypool performed (e.g. `begin`).
    #[error("{node} ({url}): {reason}")]
    Node {
        /// The node's name.
        node: String,
        /// The URL with its password redacted.
        url: String,
        /// What went wrong, with the password scrubbed.
        reason: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// Writes cannot go anywhere: the primary is unreachable or in recovery and
    /// [`Config::follow_promotion`](crate::Config::follow_promotion) is off.
    #[error("no writable primary: {reason}")]
    NoPrimary {
        /// Why, naming the nodes involved.
        reason: String,
    },

    /// A causal token string could not be read.
    #[error("invalid causal token: {0}")]
    InvalidToken(String),

    /// A causal token from another cluster (or another kind of database).
    #[error(
        "causal token belongs to cluster {found:016x}, but this pool's primary is cluster {expected:016x}"
    )]
    ForeignToken {
        /// This pool's cluster identifier.
        expected: u64,
        /// The token's.
        found: u64,
    },

    /// The pool was used after [`ReplicaPool::close`](crate::ReplicaPool::close).
    #[error("the partypool is closed (primary {url})")]
    Closed {
        /// The primary's URL with its password redacted.
        url: String,
    },
}

impl From<Error> for sqlx::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Closed { .. } => sqlx::Error::PoolClosed,
            Error::Node { source, .. } => source,
            other => sqlx::Error::Configuration(Box::new(other)),
        }
    }
}
