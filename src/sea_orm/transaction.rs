//! [`ReplicaTransaction`]: SeaORM's transactions over a pool or a session — on the primary,
//! read-only ones on a replica, nested ones as savepoints.

use std::sync::Arc;

use ::sea_orm::{DbErr, RuntimeErr};
use sqlx::Executor;

use super::exec_err;
use crate::Backend;
use crate::sync::lock;

/// A transaction begun through a [`ReplicaConnection`](super::ReplicaConnection): on the
/// primary, or (read-only access mode, not through a session) on a replica.
pub struct ReplicaTransaction<DB: Backend> {
    tx: Arc<tokio::sync::Mutex<Option<Tx<DB>>>>,
    /// 0 for the transaction itself; n for the n-th nested savepoint.
    pub(super) depth: u32,
    /// The shallowest nested level dropped without `commit` or `rollback`: rolled back to
    /// (as SeaORM's own transactions do on drop) before the next statement on the
    /// connection. A plain mutex: `Drop` cannot wait.
    abandoned: Arc<std::sync::Mutex<Option<u32>>>,
    pub(super) finished: bool,
}

impl<DB: Backend> Drop for ReplicaTransaction<DB> {
    fn drop(&mut self) {
        // The transaction itself rolls back when its sqlx transaction drops.
        if self.depth > 0 && !self.finished {
            let mut abandoned = lock(&self.abandoned);
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

impl<DB: Backend> ReplicaTransaction<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    pub(super) fn new(tx: Tx<DB>) -> Self {
        ReplicaTransaction {
            tx: Arc::new(tokio::sync::Mutex::new(Some(tx))),
            depth: 0,
            abandoned: Arc::default(),
            finished: false,
        }
    }

    /// A savepoint nested in this one, not begun yet.
    pub(super) fn nested(&self) -> Self {
        ReplicaTransaction {
            tx: Arc::clone(&self.tx),
            depth: self.depth + 1,
            abandoned: Arc::clone(&self.abandoned),
            // Not begun yet: nothing to roll back if the SAVEPOINT fails.
            finished: true,
        }
    }

    /// The connection, locked, after rolling back any abandoned nested level.
    pub(super) async fn conn(
        &self,
    ) -> Result<tokio::sync::MappedMutexGuard<'_, DB::Connection>, DbErr> {
        let mut guard = self.tx.lock().await;
        if guard.is_none() {
            return Err(finished());
        }
        let abandoned = lock(&self.abandoned).take();
        if let Some(depth) = abandoned {
            let conn: &mut DB::Connection = guard.as_mut().ok_or_else(finished)?;
            for sql in [
                format!("ROLLBACK TO SAVEPOINT partypool_{depth}"),
                format!("RELEASE SAVEPOINT partypool_{depth}"),
            ] {
                conn.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(sql)))
                    .await
                    .map_err(exec_err)?;
            }
        }
        Ok(tokio::sync::MutexGuard::map(guard, |tx| {
            &mut **tx.as_mut().expect("checked above")
        }))
    }

    /// Runs a statement of transaction control on this transaction's connection.
    pub(super) async fn control(&self, sql: String) -> Result<(), DbErr> {
        let mut conn = self.conn().await?;
        conn.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(sql)))
            .await
            .map(drop)
            .map_err(exec_err)
    }

    /// Commits: releases a nested level's savepoint, or commits the transaction (after
    /// rolling back abandoned nested levels: their writes are not committed).
    pub(super) async fn finish_commit(mut self) -> Result<(), DbErr> {
        self.finished = true;
        if self.depth > 0 {
            return self
                .control(format!("RELEASE SAVEPOINT partypool_{}", self.depth))
                .await;
        }
        drop(self.conn().await?);
        let tx = self.tx.lock().await.take().ok_or_else(finished)?;
        tx.commit().await.map_err(exec_err)
    }

    /// Rolls back: to a nested level's savepoint, or the transaction.
    pub(super) async fn finish_rollback(mut self) -> Result<(), DbErr> {
        self.finished = true;
        if self.depth > 0 {
            let d = self.depth;
            self.control(format!("ROLLBACK TO SAVEPOINT partypool_{d}"))
                .await?;
            return self
                .control(format!("RELEASE SAVEPOINT partypool_{d}"))
                .await;
        }
        let tx = self.tx.lock().await.take().ok_or_else(finished)?;
        tx.rollback().await.map_err(exec_err)
    }
}

/// SeaORM's transaction traits (and a stream inside a transaction) for one database.
macro_rules! transaction_impls {
    ($db:ty) => {
        /// `commit` and `rollback` callable without importing SeaORM's `TransactionSession`,
        /// as on SeaORM's own `DatabaseTransaction`.
        impl $crate::sea_orm::ReplicaTransaction<$db> {
            /// Commits (a nested transaction releases its savepoint).
            ///
            /// ```no_run
            /// # async fn demo(db: partypool::sea_orm::ReplicaConnection<sqlx::Postgres>) -> Result<(), sea_orm::DbErr> {
            /// use sea_orm::TransactionTrait;
            /// let txn = db.begin().await?;
            /// txn.commit().await?;
            /// # Ok(()) }
            /// ```
            pub async fn commit(self) -> Result<(), DbErr> {
                self.finish_commit().await
            }

            /// Rolls back (a nested transaction rolls back to its savepoint).
            pub async fn rollback(self) -> Result<(), DbErr> {
                self.finish_rollback().await
            }
        }

        #[async_trait::async_trait]
        impl ConnectionTrait for $crate::sea_orm::ReplicaTransaction<$db> {
            fn get_database_backend(&self) -> DbBackend {
                <$db as SeaBackend>::SEA
            }

            async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
                let mut conn = self.conn().await?;
                sqlx_query!($db, stmt)
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
                sqlx_query!($db, stmt)
                    .fetch_optional(&mut *conn)
                    .await
                    .map(|row| row.map(QueryResult::from))
                    .map_err(query_err)
            }

            async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
                let mut conn = self.conn().await?;
                sqlx_query!($db, stmt)
                    .fetch_all(&mut *conn)
                    .await
                    .map(|rows| rows.into_iter().map(QueryResult::from).collect())
                    .map_err(query_err)
            }
        }

        /// A stream inside the transaction: it holds the transaction's connection until it
        /// ends (or is dropped), so other statements of the transaction wait for it.
        impl StreamTrait for $crate::sea_orm::ReplicaTransaction<$db> {
            type Stream<'a> = BoxStream<'a, Result<QueryResult, DbErr>>;

            fn get_database_backend(&self) -> DbBackend {
                <$db as SeaBackend>::SEA
            }

            fn stream_raw<'a>(
                &'a self,
                stmt: Statement,
            ) -> Pin<Box<dyn Future<Output = Result<Self::Stream<'a>, DbErr>> + 'a + Send>> {
                Box::pin(async move {
                    let mut conn = self.conn().await?;
                    let rows = async_stream::try_stream! {
                        let mut rows = sqlx_query!($db, stmt).fetch(&mut *conn);
                        while let Some(row) = rows.next().await {
                            yield QueryResult::from(row.map_err(query_err)?);
                        }
                    };
                    Ok(rows.boxed())
                })
            }
        }

        #[async_trait::async_trait]
        impl ::sea_orm::TransactionSession for $crate::sea_orm::ReplicaTransaction<$db> {
            async fn commit(self) -> Result<(), DbErr> {
                self.finish_commit().await
            }

            async fn rollback(self) -> Result<(), DbErr> {
                self.finish_rollback().await
            }
        }

        #[async_trait::async_trait]
        impl ::sea_orm::TransactionTrait for ReplicaConnection<$db> {
            type Transaction = $crate::sea_orm::ReplicaTransaction<$db>;

            async fn begin(&self) -> Result<Self::Transaction, DbErr> {
                self.begin_with_config(None, None).await
            }

            /// `AccessMode::ReadOnly` runs the transaction on a replica, except serializable
            /// ones (a hot standby refuses them), those of a session, and on MySQL/MariaDB
            /// those with an isolation level (set before the transaction begins): those run
            /// on the primary, like anything else.
            async fn begin_with_config(
                &self,
                isolation_level: Option<IsolationLevel>,
                access_mode: Option<AccessMode>,
            ) -> Result<Self::Transaction, DbErr> {
                let inside = <$db as SeaBackend>::set_in_transaction(isolation_level, None);
                let on_replica =
                    isolation_level != Some(IsolationLevel::Serializable) && inside.is_ok();
                if let (Via::Pool(p), Some(AccessMode::ReadOnly), true) =
                    (&self.via, access_mode, on_replica)
                {
                    // Already read-only (`Backend::BEGIN_READ_ONLY`).
                    let tx = p.begin_read_only().await.map_err(conn_err)?;
                    let txn = $crate::sea_orm::ReplicaTransaction::new(tx);
                    if let Ok(Some(sql)) = inside {
                        txn.control(sql).await?;
                    }
                    return Ok(txn);
                }
                let begin = <$db as SeaBackend>::begin_statement(isolation_level, access_mode);
                let read_only = access_mode == Some(AccessMode::ReadOnly);
                let tx = match (&self.via, begin) {
                    (Via::Pool(p), Some(sql)) => p.begin_with(sqlx::AssertSqlSafe(sql)).await,
                    (Via::Pool(p), None) => p.begin().await,
                    // Read-only through a session: the primary (never behind the session's
                    // writes), and nothing to record at commit.
                    (Via::Session(s), Some(sql)) if read_only => {
                        s.pool().begin_unscoped_with(sqlx::AssertSqlSafe(sql)).await
                    }
                    (Via::Session(s), None) if read_only => s.pool().begin_unscoped().await,
                    (Via::Session(s), Some(sql)) => s.begin_with(sqlx::AssertSqlSafe(sql)).await,
                    (Via::Session(s), None) => s.begin().await,
                }
                .map_err(conn_err)?;
                Ok($crate::sea_orm::ReplicaTransaction::new(tx))
            }

            async fn begin_with_options(
                &self,
                options: ::sea_orm::TransactionOptions,
            ) -> Result<Self::Transaction, DbErr> {
                self.begin_with_config(options.isolation_level, options.access_mode)
                    .await
            }

            async fn transaction<F, T, E>(
                &self,
                callback: F,
            ) -> Result<T, ::sea_orm::TransactionError<E>>
            where
                F: for<'c> FnOnce(
                        &'c $crate::sea_orm::ReplicaTransaction<$db>,
                    )
                        -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
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
            ) -> Result<T, ::sea_orm::TransactionError<E>>
            where
                F: for<'c> FnOnce(
                        &'c $crate::sea_orm::ReplicaTransaction<$db>,
                    )
                        -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
                    + Send,
                T: Send,
                E: std::fmt::Display + std::fmt::Debug + Send,
            {
                let txn = self
                    .begin_with_config(isolation_level, access_mode)
                    .await
                    .map_err(::sea_orm::TransactionError::Connection)?;
                txn.run(callback).await
            }
        }

        impl $crate::sea_orm::ReplicaTransaction<$db> {
            /// Runs `callback` in this transaction, committing on `Ok` and rolling back on
            /// `Err`.
            async fn run<F, T, E>(self, callback: F) -> Result<T, ::sea_orm::TransactionError<E>>
            where
                F: for<'c> FnOnce(
                        &'c $crate::sea_orm::ReplicaTransaction<$db>,
                    )
                        -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
                    + Send,
                T: Send,
                E: std::fmt::Display + std::fmt::Debug + Send,
            {
                let result = callback(&self).await;
                match result {
                    Ok(value) => {
                        self.finish_commit()
                            .await
                            .map_err(::sea_orm::TransactionError::Connection)?;
                        Ok(value)
                    }
                    Err(e) => {
                        self.finish_rollback()
                            .await
                            .map_err(::sea_orm::TransactionError::Connection)?;
                        Err(::sea_orm::TransactionError::Transaction(e))
                    }
                }
            }
        }

        /// Nested transactions are savepoints on the same connection.
        #[async_trait::async_trait]
        impl ::sea_orm::TransactionTrait for $crate::sea_orm::ReplicaTransaction<$db> {
            type Transaction = $crate::sea_orm::ReplicaTransaction<$db>;

            async fn begin(&self) -> Result<Self::Transaction, DbErr> {
                let mut nested = self.nested();
                nested
                    .control(format!("SAVEPOINT partypool_{}", nested.depth))
                    .await?;
                nested.finished = false;
                Ok(nested)
            }

            /// A savepoint cannot change the isolation level or access mode: the same as
            /// `begin`.
            async fn begin_with_config(
                &self,
                _isolation_level: Option<IsolationLevel>,
                _access_mode: Option<AccessMode>,
            ) -> Result<Self::Transaction, DbErr> {
                ::sea_orm::TransactionTrait::begin(self).await
            }

            async fn begin_with_options(
                &self,
                _options: ::sea_orm::TransactionOptions,
            ) -> Result<Self::Transaction, DbErr> {
                ::sea_orm::TransactionTrait::begin(self).await
            }

            async fn transaction<F, T, E>(
                &self,
                callback: F,
            ) -> Result<T, ::sea_orm::TransactionError<E>>
            where
                F: for<'c> FnOnce(
                        &'c $crate::sea_orm::ReplicaTransaction<$db>,
                    )
                        -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
                    + Send,
                T: Send,
                E: std::fmt::Display + std::fmt::Debug + Send,
            {
                let txn = ::sea_orm::TransactionTrait::begin(self)
                    .await
                    .map_err(::sea_orm::TransactionError::Connection)?;
                txn.run(callback).await
            }

            async fn transaction_with_config<F, T, E>(
                &self,
                callback: F,
                _isolation_level: Option<IsolationLevel>,
                _access_mode: Option<AccessMode>,
            ) -> Result<T, ::sea_orm::TransactionError<E>>
            where
                F: for<'c> FnOnce(
                        &'c $crate::sea_orm::ReplicaTransaction<$db>,
                    )
                        -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
                    + Send,
                T: Send,
                E: std::fmt::Display + std::fmt::Debug + Send,
            {
                ::sea_orm::TransactionTrait::transaction(self, callback).await
            }
        }
    };
}
pub(super) use transaction_impls;
