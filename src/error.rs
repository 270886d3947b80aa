//! [`Error`]: what can go wrong, naming the node, never showing a password.

use std::fmt;

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

    /// No node answered at `connect` (a pool without a declared primary needs one).
    #[error("no node answered: {reasons}")]
    NoNodeAnswered {
        /// Each node with why it did not answer (passwords scrubbed).
        reasons: String,
    },

    /// The [credential source](crate::Builder::credentials) gave no credential at
    /// `connect` (its message, with every password scrubbed out).
    #[error("no credentials: {0}")]
    Credentials(String),

    /// A membership change was refused (`add_node` / `remove_node`).
    #[error("membership change refused: {0}")]
    Membership(String),

    /// A causal token string could not be read.
    #[error("invalid causal token: {0}")]
    InvalidToken(String),

    /// A MariaDB GTID position could not be read.
    #[error("invalid GTID position {0}")]
    InvalidGtid(String),

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

    /// A causal token of a kind this pool does not use: a time token on a pool that tracks
    /// log positions, or the reverse (e.g. a token from a pool with other consistency
    /// settings, or from another backend).
    #[error("causal token of kind {found}, but this pool's sessions use {expected}")]
    WrongTokenKind {
        /// The kind this pool issues and accepts (`None`: it needs no tokens).
        expected: String,
        /// The token's.
        found: TokenKind,
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

/// The error inside a statement's [`sqlx::Error::Io`] when the statement was sent to the
/// writer (or ran on a node that is not a read-only replica) and then interrupted — by
/// [`close`](crate::ReplicaPool::close), by
/// [`Config::statement_timeout`](crate::Config::statement_timeout), or by a broken
/// connection — so the server may have committed it. It is never reported as
/// [`sqlx::Error::PoolClosed`] or [`sqlx::Error::PoolTimedOut`], which mean "never ran".
/// Test for it with [`may_have_committed`]; do not retry such a write blindly.
#[derive(Debug, thiserror::Error)]
#[error("{what} on {node}; the statement may have committed")]
pub struct OutcomeUnknown {
    /// The node it was sent to.
    pub node: String,
    /// What interrupted it.
    pub what: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl OutcomeUnknown {
    /// Wraps the reason into the `sqlx::Error` a statement returns.
    pub(crate) fn error(
        node: &str,
        kind: std::io::ErrorKind,
        what: String,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> sqlx::Error {
        sqlx::Error::Io(std::io::Error::new(
            kind,
            OutcomeUnknown {
                node: node.to_owned(),
                what,
                source,
            },
        ))
    }

    /// The `OutcomeUnknown` inside `e`, if any.
    pub fn of(e: &sqlx::Error) -> Option<&OutcomeUnknown> {
        match e {
            sqlx::Error::Io(io) => io.get_ref()?.downcast_ref::<OutcomeUnknown>(),
            _ => None,
        }
    }
}

/// Whether a statement that failed with `e` may nevertheless have committed: it was sent to
/// the writer and interrupted before its outcome came back (see [`OutcomeUnknown`]).
///
/// What each error of a routed statement says about whether it ran:
///
/// | error | sent? | committed? |
/// |---|---|---|
/// | [`sqlx::Error::PoolTimedOut`] (no connection within `acquire_timeout`) | no | no |
/// | [`sqlx::Error::PoolClosed`] (the pool was closed before it was sent, or a read on a replica was interrupted by `close()`) | no, or a read | no |
/// | [`sqlx::Error::Io`] of kind `NotConnected` with the reason writes are blocked (no writer, `follow_promotion` off) | no | no |
/// | [`sqlx::Error::Configuration`] | no | no |
/// | [`sqlx::Error::Database`]: the server's own error for the statement | yes | no (a statement in your explicit transaction commits only with it) |
/// | `RowNotFound`, `ColumnNotFound`, `ColumnDecode`, `Decode`, … (the result did not fit) | yes | **yes**, in autocommit: the statement ran to its end |
/// | an error for which this returns `true` ([`OutcomeUnknown`]: the connection broke, `statement_timeout` fired, or `close()` interrupted it, on the writer) | yes | **maybe** |
///
/// A read that ran on a replica never commits anything; partypool runs it again elsewhere
/// where that is safe, and reports the failure otherwise.
///
/// ```no_run
/// # async fn demo(pool: partypool::PgReplicaPool) {
/// match sqlx::query("UPDATE accounts SET balance = balance - 10 WHERE id = 1").execute(&pool).await {
///     Ok(_) => {}
///     Err(e) if partypool::may_have_committed(&e) => { /* check before doing it again */ }
///     Err(e) => { /* it did not run: safe to retry */ let _ = e; }
/// }
/// # }
/// ```
pub fn may_have_committed(e: &sqlx::Error) -> bool {
    OutcomeUnknown::of(e).is_some()
}

/// What a [`CausalToken`](crate::CausalToken) records. (Defined beside [`Error`], which names
/// it, so that errors sit below tokens.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenKind {
    /// A log position on a timeline (`l`).
    Position,
    /// A write whose position is not known yet (`p`): holders read on the primary until it
    /// has settled.
    Pending,
    /// A write time, for [`Consistency::StickyFor`](crate::Consistency::StickyFor) (`t`).
    Time,
    /// A MariaDB GTID position, per replication domain (`g`).
    Gtid,
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenKind::Position => "position (l)",
            TokenKind::Pending => "pending (p)",
            TokenKind::Time => "time (t)",
            TokenKind::Gtid => "GTID (g)",
        })
    }
}
