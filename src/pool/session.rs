//! [`Session`]: an executor that reads its own writes.

use std::fmt;
use std::sync::Arc;

use super::ReplicaPool;
use crate::backend::Backend;
use crate::causal::{CausalToken, SessionState};
use crate::error::Error;

/// An executor that reads its own writes, across requests too. Made by
/// [`ReplicaPool::session`](crate::ReplicaPool::session) or
/// [`ReplicaPool::session_with`](crate::ReplicaPool::session_with); see the
/// [module docs](crate::consistency).
///
/// Use `&session` wherever you would use `&pool`. Cheap to create (one allocation); make one
/// per request or per user interaction.
pub struct Session<DB: Backend> {
    pub(crate) pool: ReplicaPool<DB>,
    pub(crate) state: Arc<SessionState>,
}

/// A clone is the same session (it shares its writes and positions), e.g. to hand it to
/// another task or to keep it in a request's extensions.
impl<DB: Backend> Clone for Session<DB> {
    fn clone(&self) -> Self {
        Session {
            pool: self.pool.clone(),
            state: Arc::clone(&self.state),
        }
    }
}

impl<DB: Backend> Session<DB> {
    pub(crate) fn new(pool: ReplicaPool<DB>, token: Option<CausalToken>, trusted: bool) -> Self {
        let state = match token {
            Some(token) => SessionState::from_client_token(token, trusted),
            None => SessionState::default(),
        };
        Session {
            pool,
            state: Arc::new(state),
        }
    }

    /// The token to carry to the next request: `None` until the session has written
    /// something (or was made from a token).
    ///
    /// It never describes a state older than a write the session issued: while a write's
    /// position is still being recorded (e.g. its result stream was dropped and is being
    /// drained in the background) it is a [`TokenKind::Pending`](crate::TokenKind::Pending) token, whose holders read on
    /// the primary. [`settled_token`](Self::settled_token) waits for the position instead.
    pub fn token(&self) -> Option<CausalToken> {
        self.state
            .token(self.pool.shared.cluster.cluster_id().unwrap_or(0), false)
    }

    /// Like [`token`](Self::token), but first waits (bounded by the settle window:
    /// `statement_timeout` plus a second, or 30 s) until the positions of the session's
    /// writes are recorded, so the token is a position whenever that is possible. Use it at
    /// the end of a request.
    ///
    /// ```no_run
    /// # async fn demo(session: partypool::Session<sqlx::Postgres>) {
    /// let header = session.settled_token().await.map(|t| t.to_string());
    /// # let _ = header; }
    /// ```
    pub async fn settled_token(&self) -> Option<CausalToken> {
        let rules = self.pool.shared.rules();
        self.state.settled(rules.settle).await;
        let mut settled = false;
        if self.state.has_transactions()
            && let Some(at) = self.pool.shared.fresh_position().await
        {
            self.state.recorded(at);
            settled = true;
        }
        self.state
            .token(self.pool.shared.cluster.cluster_id().unwrap_or(0), settled)
    }

    /// The pool this session reads and writes through.
    pub fn pool(&self) -> &ReplicaPool<DB> {
        &self.pool
    }

    /// Begins a transaction on the primary: a plain `sqlx::Transaction`, so code that takes
    /// `&mut Transaction<'_, Postgres>` or keeps a `Transaction<'static, Postgres>` takes it
    /// unchanged. The session's later reads see what it commits.
    ///
    /// How, without seeing the commit (it is the driver's): from here on, each of the
    /// session's reads needs a replica that has replayed the primary's position as read after
    /// the read began (one query on the primary, shared by the reads waiting at that moment),
    /// and [`settled_token`](Self::settled_token) reads that position too.
    ///
    /// ```no_run
    /// # async fn demo(session: partypool::Session<sqlx::Postgres>) -> Result<(), Box<dyn std::error::Error>> {
    /// async fn debit(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>) -> Result<(), sqlx::Error> {
    ///     sqlx::query("UPDATE accounts SET balance = balance - 10 WHERE id = 1").execute(&mut **tx).await?;
    ///     Ok(())
    /// }
    /// let mut tx = session.begin().await?;
    /// debit(&mut tx).await?;
    /// tx.commit().await?;
    /// let b: i64 = sqlx::query_scalar("SELECT balance FROM accounts WHERE id = 1").fetch_one(&session).await?;
    /// # let _ = b; Ok(()) }
    /// ```
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, DB>, Error> {
        self.state.began_transaction();
        self.pool.begin_unscoped().await
    }

    /// [`begin`](Self::begin) with a custom statement, e.g. `BEGIN ISOLATION LEVEL
    /// SERIALIZABLE`: on the primary, and the session's reads see what it commits.
    ///
    /// ```no_run
    /// # async fn demo(session: partypool::Session<sqlx::Postgres>) -> Result<(), Box<dyn std::error::Error>> {
    /// let tx = session.begin_with("BEGIN ISOLATION LEVEL SERIALIZABLE").await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn begin_with(
        &self,
        statement: impl sqlx::SqlSafeStr,
    ) -> Result<sqlx::Transaction<'static, DB>, Error> {
        self.state.began_transaction();
        self.pool.begin_unscoped_with(statement).await
    }
}

impl<DB: Backend> fmt::Debug for Session<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("token", &self.token())
            .finish_non_exhaustive()
    }
}
