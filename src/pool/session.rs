//! [`Session`]: an executor that reads its own writes, and its [`SessionTransaction`].

use std::fmt;
use std::sync::Arc;

use super::ReplicaPool;
use crate::backend::Backend;
use crate::causal::{CausalToken, SessionState};
use crate::error::{Error, OutcomeUnknown};

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
    pub(crate) fn new(pool: ReplicaPool<DB>, token: Option<CausalToken>) -> Self {
        Session {
            pool,
            state: Arc::new(token.map(SessionState::from_token).unwrap_or_default()),
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
            .token(self.pool.shared.cluster.cluster_id().unwrap_or(0))
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
        self.token()
    }

    /// The pool this session reads and writes through.
    pub fn pool(&self) -> &ReplicaPool<DB> {
        &self.pool
    }

    /// Begins a transaction on the primary; committing it through
    /// [`SessionTransaction::commit`] makes the session's later reads see it.
    ///
    /// ```no_run
    /// # async fn demo(session: partypool::Session<sqlx::Postgres>) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = session.begin().await?;
    /// sqlx::query("UPDATE accounts SET balance = balance - 10 WHERE id = 1").execute(&mut *tx).await?;
    /// tx.commit().await?;
    /// let b: i64 = sqlx::query_scalar("SELECT balance FROM accounts WHERE id = 1").fetch_one(&session).await?;
    /// # let _ = b; Ok(()) }
    /// ```
    pub async fn begin(&self) -> Result<SessionTransaction<'_, DB>, Error> {
        self.begin_owned().await
    }

    /// [`begin`](Self::begin), for holders that outlive the borrow (SeaORM's transactions).
    pub(crate) async fn begin_owned(&self) -> Result<SessionTransaction<'static, DB>, Error> {
        let tx = self.pool.begin().await?;
        Ok(SessionTransaction {
            tx: Some(tx),
            session: self.clone(),
            _session: std::marker::PhantomData,
        })
    }
}

/// A transaction begun through a [`Session`]. Use `&mut *tx` as the executor, like a
/// `sqlx::Transaction`; dropping it without `commit` rolls back.
pub struct SessionTransaction<'s, DB: Backend> {
    tx: Option<sqlx::Transaction<'static, DB>>,
    // The same session (a clone shares its state); the lifetime keeps the public API of a
    // transaction borrowed from its session.
    session: Session<DB>,
    _session: std::marker::PhantomData<&'s Session<DB>>,
}

impl<DB: Backend> SessionTransaction<'_, DB> {
    /// Commits, then records the primary's position in the session. If the commit fails
    /// or is cancelled midway, its outcome is unknown: the session reads on the primary
    /// until it has settled (it never reads a state without the transaction's writes).
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        let Some(tx) = self.tx.take() else {
            return Ok(());
        };
        let shared = &self.session.pool.shared;
        let state = &self.session.state;
        // Until recorded, the session reads on the primary; dropped midway (the future was
        // cancelled), the guard marks the outcome unknown.
        let pending = super::PendingWrite::new(shared, state, true);
        match tx.commit().await {
            Ok(()) => {
                // The commit returned: any writer connection's position is past it now.
                shared.record_commit(state).await;
                pending.recorded();
                Ok(())
            }
            // `pending` drops: the outcome is unknown. A transport error mid-commit says so.
            Err(e) if DB::is_unavailable(&e) => Err(OutcomeUnknown::error(
                &shared.cluster.writer().name,
                std::io::ErrorKind::ConnectionAborted,
                "the connection broke during COMMIT".into(),
                Some(Box::new(e)),
            )),
            Err(e) => Err(e),
        }
    }

    /// Rolls back.
    pub async fn rollback(mut self) -> Result<(), sqlx::Error> {
        match self.tx.take() {
            Some(tx) => tx.rollback().await,
            None => Ok(()),
        }
    }
}

impl<DB: Backend> std::ops::Deref for SessionTransaction<'_, DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        self.tx.as_ref().expect("transaction already finished")
    }
}

impl<DB: Backend> std::ops::DerefMut for SessionTransaction<'_, DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        self.tx.as_mut().expect("transaction already finished")
    }
}

impl<DB: Backend> fmt::Debug for Session<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("token", &self.token())
            .finish_non_exhaustive()
    }
}
