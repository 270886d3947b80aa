//! [`ReplicaTransaction`]: SeaORM's transactions over a pool or a session — on the primary,
//! read-only ones on a replica, nested ones as savepoints.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ::sea_orm::{
    AccessMode, ConnectionTrait, DbBackend, DbErr, ExecResult, IsolationLevel, QueryResult,
    RuntimeErr, Statement, TransactionError, TransactionOptions, TransactionSession,
    TransactionTrait,
};
use sqlx::{Executor, Postgres};

use super::{ReplicaConnection, Via, conn_err, exec_err, query_err, sqlx_query};
use crate::Backend;
/// A transaction begun through a [`ReplicaConnection`]: on the primary, or (read-only
/// access mode, not through a session) on a replica.
pub struct ReplicaTransaction<DB: Backend> {
    tx: Arc<tokio::sync::Mutex<Option<Tx<DB>>>>,
    /// 0 for the transaction itself; n for the n-th nested savepoint.
    depth: u32,
    /// The shallowest nested level dropped without `commit` or `rollback`: rolled back to
    /// (as SeaORM's own transactions do on drop) before the next statement on the
    /// connection. A plain mutex: `Drop` cannot wait.
    abandoned: Arc<std::sync::Mutex<Option<u32>>>,
    finished: bool,
}

impl<DB: Backend> Drop for ReplicaTransaction<DB> {
    fn drop(&mut self) {
        // The transaction itself rolls back when its sqlx transaction drops.
        if self.depth > 0 && !self.finished {
            let mut abandoned = self.abandoned.lock().unwrap_or_else(|e| e.into_inner());
            *abandoned = Some(abandoned.map_or(self.depth, |d| d.min(self.depth)));
        }
    }
}

/// The transaction: a plain one, from the pool or from a session (which then reads what it
/// commits; see [`Session::begin`](crate::Session::begin)).
type Tx<DB> = sqlx::Transaction<'static, DB>;

impl<DB: Backend> std::fmt::Debug for ReplicaTransaction<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaTransaction")
            .field("depth", &self.depth)
            .finish_non_exhaustive()
    }
}

fn finished() -> DbErr {
    DbErr::Conn(RuntimeErr::Internal("the transaction has finished".into()))
}

/// `commit` and `rollback` callable without importing SeaORM's `TransactionSession`, as on
/// SeaORM's own `DatabaseTransaction`.
impl ReplicaTransaction<Postgres> {
    /// Commits (a nested transaction releases its savepoint).
    ///
    /// ```no_run
    /// # async fn demo(db: partypool::sea_orm::PgReplicaConnection) -> Result<(), sea_orm::DbErr> {
    /// use sea_orm::TransactionTrait;
    /// let txn = db.begin().await?;
    /// txn.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn commit(self) -> Result<(), DbErr> {
        TransactionSession::commit(self).await
    }

    /// Rolls back (a nested transaction rolls back to its savepoint).
    pub async fn rollback(self) -> Result<(), DbErr> {
        TransactionSession::rollback(self).await
    }
}

impl ReplicaTransaction<Postgres> {
    fn new(tx: Tx<Postgres>) -> Self {
        ReplicaTransaction {
            tx: Arc::new(tokio::sync::Mutex::new(Some(tx))),
            depth: 0,
            abandoned: Arc::default(),
            finished: false,
        }
    }

    /// The connection, locked, after rolling back any abandoned nested level.
    async fn conn(&self) -> Result<tokio::sync::MappedMutexGuard<'_, sqlx::PgConnection>, DbErr> {
        let mut guard = self.tx.lock().await;
        if guard.is_none() {
            return Err(finished());
        }
        let abandoned = self
            .abandoned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(depth) = abandoned {
            let conn: &mut sqlx::PgConnection = guard.as_mut().ok_or_else(finished)?;
            let sql = format!(
                "ROLLBACK TO SAVEPOINT partypool_{depth}; RELEASE SAVEPOINT partypool_{depth}"
            );
            conn.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(sql)))
                .await
                .map_err(exec_err)?;
        }
        Ok(tokio::sync::MutexGuard::map(guard, |tx| {
            &mut **tx.as_mut().expect("checked above")
        }))
    }

    /// Runs a statement of transaction control on this transaction's connection.
    async fn control(&self, sql: String) -> Result<(), DbErr> {
        let mut conn = self.conn().await?;
        conn.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(sql)))
            .await
            .map(drop)
            .map_err(exec_err)
    }

    /// Applies an isolation level and access mode at the start of a transaction.
    async fn configure(
        self,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<Self, DbErr> {
        let mut parts = Vec::new();
        if let Some(level) = isolation_level {
            parts.push(format!("ISOLATION LEVEL {level}"));
        }
        if let Some(mode) = access_mode {
            parts.push(mode.to_string());
        }
        if !parts.is_empty() {
            self.control(format!("SET TRANSACTION {}", parts.join(", ")))
                .await?;
        }
        Ok(self)
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for ReplicaTransaction<Postgres> {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let mut conn = self.conn().await?;
        sqlx_query(stmt)
            .execute(&mut *conn)
            .await
            .map(ExecResult::from)
            .map_err(exec_err)
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let mut conn = self.conn().await?;
        conn.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())))
            .await
            .map(ExecResult::from)
            .map_err(exec_err)
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let mut conn = self.conn().await?;
        sqlx_query(stmt)
            .fetch_optional(&mut *conn)
            .await
            .map(|row| row.map(QueryResult::from))
            .map_err(query_err)
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let mut conn = self.conn().await?;
        sqlx_query(stmt)
            .fetch_all(&mut *conn)
            .await
            .map(|rows| rows.into_iter().map(QueryResult::from).collect())
            .map_err(query_err)
    }
}

#[async_trait::async_trait]
impl TransactionSession for ReplicaTransaction<Postgres> {
    async fn commit(mut self) -> Result<(), DbErr> {
        self.finished = true;
        if self.depth > 0 {
            return self
                .control(format!("RELEASE SAVEPOINT partypool_{}", self.depth))
                .await;
        }
        // Roll back abandoned nested levels first: their writes are not committed.
        drop(self.conn().await?);
        let tx = self.tx.lock().await.take().ok_or_else(finished)?;
        tx.commit().await.map_err(exec_err)
    }

    async fn rollback(mut self) -> Result<(), DbErr> {
        self.finished = true;
        if self.depth > 0 {
            let d = self.depth;
            return self
                .control(format!(
                    "ROLLBACK TO SAVEPOINT partypool_{d}; RELEASE SAVEPOINT partypool_{d}"
                ))
                .await;
        }
        let tx = self.tx.lock().await.take().ok_or_else(finished)?;
        tx.rollback().await.map_err(exec_err)
    }
}

/// Runs `callback` in `txn`, committing on `Ok` and rolling back on `Err`.
async fn run_in<F, T, E>(
    txn: ReplicaTransaction<Postgres>,
    callback: F,
) -> Result<T, TransactionError<E>>
where
    F: for<'c> FnOnce(
            &'c ReplicaTransaction<Postgres>,
        ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
        + Send,
    T: Send,
    E: std::fmt::Display + std::fmt::Debug + Send,
{
    let result = callback(&txn).await;
    match result {
        Ok(value) => {
            txn.commit().await.map_err(TransactionError::Connection)?;
            Ok(value)
        }
        Err(e) => {
            txn.rollback().await.map_err(TransactionError::Connection)?;
            Err(TransactionError::Transaction(e))
        }
    }
}

#[async_trait::async_trait]
impl TransactionTrait for ReplicaConnection<Postgres> {
    type Transaction = ReplicaTransaction<Postgres>;

    async fn begin(&self) -> Result<ReplicaTransaction<Postgres>, DbErr> {
        self.begin_with_config(None, None).await
    }

    /// `AccessMode::ReadOnly` runs the transaction on a replica (serializable ones, and those
    /// of a session, on the primary); anything else on the primary.
    async fn begin_with_config(
        &self,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<ReplicaTransaction<Postgres>, DbErr> {
        // A hot standby refuses serializable transactions: those run on the primary.
        let on_replica = isolation_level != Some(IsolationLevel::Serializable);
        let tx = match (&self.via, access_mode) {
            (Via::Pool(p), Some(AccessMode::ReadOnly)) if on_replica => {
                // Already `BEGIN READ ONLY`.
                let tx = p.begin_read_only().await.map_err(conn_err)?;
                let txn = ReplicaTransaction::new(tx);
                return txn.configure(isolation_level, None).await;
            }
            (Via::Pool(p), _) => p.begin().await.map_err(conn_err)?,
            // Read-only through a session: the primary (never behind the session's writes),
            // and nothing to record at commit.
            (Via::Session(s), Some(AccessMode::ReadOnly)) => {
                s.pool().begin_unscoped().await.map_err(conn_err)?
            }
            (Via::Session(s), _) => s.begin().await.map_err(conn_err)?,
        };
        ReplicaTransaction::new(tx)
            .configure(isolation_level, access_mode)
            .await
    }

    async fn begin_with_options(
        &self,
        options: TransactionOptions,
    ) -> Result<ReplicaTransaction<Postgres>, DbErr> {
        self.begin_with_config(options.isolation_level, options.access_mode)
            .await
    }

    async fn transaction<F, T, E>(&self, callback: F) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c ReplicaTransaction<Postgres>,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        self.transaction_with_config(callback, None, None).await
    }

    async fn transaction_with_config<F, T, E>(
        &self,
        callback: F,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c ReplicaTransaction<Postgres>,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        let txn = self
            .begin_with_config(isolation_level, access_mode)
            .await
            .map_err(TransactionError::Connection)?;
        run_in(txn, callback).await
    }
}

/// Nested transactions are savepoints on the same connection.
#[async_trait::async_trait]
impl TransactionTrait for ReplicaTransaction<Postgres> {
    type Transaction = ReplicaTransaction<Postgres>;

    async fn begin(&self) -> Result<ReplicaTransaction<Postgres>, DbErr> {
        let mut nested = ReplicaTransaction {
            tx: Arc::clone(&self.tx),
            depth: self.depth + 1,
            abandoned: Arc::clone(&self.abandoned),
            finished: false,
        };
        // Not begun yet: nothing to roll back if the SAVEPOINT fails.
        nested.finished = true;
        nested
            .control(format!("SAVEPOINT partypool_{}", nested.depth))
            .await?;
        nested.finished = false;
        Ok(nested)
    }

    /// A savepoint cannot change the isolation level or access mode: the same as `begin`.
    async fn begin_with_config(
        &self,
        _isolation_level: Option<IsolationLevel>,
        _access_mode: Option<AccessMode>,
    ) -> Result<ReplicaTransaction<Postgres>, DbErr> {
        self.begin().await
    }

    async fn begin_with_options(
        &self,
        _options: TransactionOptions,
    ) -> Result<ReplicaTransaction<Postgres>, DbErr> {
        self.begin().await
    }

    async fn transaction<F, T, E>(&self, callback: F) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c ReplicaTransaction<Postgres>,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        let txn = self.begin().await.map_err(TransactionError::Connection)?;
        run_in(txn, callback).await
    }

    async fn transaction_with_config<F, T, E>(
        &self,
        callback: F,
        _isolation_level: Option<IsolationLevel>,
        _access_mode: Option<AccessMode>,
    ) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c ReplicaTransaction<Postgres>,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        self.transaction(callback).await
    }
}
