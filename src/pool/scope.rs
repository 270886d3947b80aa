//! Request scope: while a future runs inside [`Session::scope`], plain `&pool` calls of the
//! session's pool belong to the session (its reads see its writes, its writes go into its
//! token). A task-local, so handlers and repository functions keep taking `&pool`.

use std::future::Future;
use std::sync::Arc;

use super::session::Session;
use super::shared::Shared;
use crate::backend::Backend;
use crate::causal::SessionState;

/// The session a task runs in, and the pool it belongs to (by address: a scope applies to
/// its own pool's handles only, never to another pool's, whose cluster may differ).
#[derive(Clone)]
struct Scoped {
    pool: usize,
    state: Arc<SessionState>,
}

tokio::task_local! {
    static SCOPE: Scoped;
}

fn address<DB: Backend>(shared: &Arc<Shared<DB>>) -> usize {
    Arc::as_ptr(shared) as *const () as usize
}

/// The session state of the scope the current task runs in, if it belongs to `shared`.
pub(crate) fn current<DB: Backend>(shared: &Arc<Shared<DB>>) -> Option<Arc<SessionState>> {
    SCOPE
        .try_with(|s| (s.pool == address(shared)).then(|| Arc::clone(&s.state)))
        .ok()
        .flatten()
}

impl<DB: Backend> Session<DB> {
    /// Runs `fut` with this session as its scope: inside it, every plain `&pool` call of
    /// this session's pool (and `pool.begin()`) behaves as a call through `&session`, so code
    /// that takes `&pool` reads the session's writes and its token carries them, without
    /// taking a session parameter. The tower layer and the actix-web middleware run every
    /// request this way.
    ///
    /// The scope is the task's (a [`tokio::task_local!`]): work spawned onto other tasks
    /// inside it runs without it, unless it is scoped too.
    ///
    /// ```no_run
    /// # async fn demo(pool: partypool::PgReplicaPool, token: Option<partypool::CausalToken>) -> Result<(), sqlx::Error> {
    /// async fn create_note(pool: &partypool::PgReplicaPool) -> Result<i64, sqlx::Error> {
    ///     sqlx::query_scalar("INSERT INTO notes (body) VALUES ('hi') RETURNING id").fetch_one(pool).await
    /// }
    /// let session = match token {
    ///     Some(t) => pool.session_with(t).unwrap_or_else(|_| pool.session()),
    ///     None => pool.session(),
    /// };
    /// let id = session.scope(create_note(&pool)).await?;
    /// let next = session.settled_token().await; // carries the note, for the next request
    /// # let _ = (id, next); Ok(()) }
    /// ```
    pub fn scope<F: Future>(&self, fut: F) -> impl Future<Output = F::Output> {
        SCOPE.scope(
            Scoped {
                pool: address(&self.pool.shared),
                state: Arc::clone(&self.state),
            },
            fut,
        )
    }
}
