//! SeaORM 2 over a [`ReplicaPool`] (feature `sea-orm`): reads on replicas, writes and
//! transactions on the primary, read-your-writes through a [`Session`].
//!
//! [`ReplicaPool::sea_orm`] (and [`Session::sea_orm`]) return a [`ReplicaConnection`], which
//! implements SeaORM's `ConnectionTrait`, `StreamTrait` and `TransactionTrait`: pass `&db`
//! wherever SeaORM takes `&impl ConnectionTrait`. The SQL SeaORM builds is classified by the
//! same rules as any other statement.
//!
//! ```no_run
//! # async fn demo(pool: partypool::PgReplicaPool) -> Result<(), sea_orm::DbErr> {
//! use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
//!
//! let db = pool.sea_orm();
//! // A read: a replica.
//! let row = db
//!     .query_one_raw(Statement::from_string(DbBackend::Postgres, "SELECT pg_is_in_recovery()"))
//!     .await?;
//! // A transaction: the primary.
//! let txn = db.begin().await?;
//! txn.execute_unprepared("UPDATE accounts SET balance = balance - 1 WHERE id = 1").await?;
//! sea_orm::TransactionSession::commit(txn).await?;
//! # let _ = row; Ok(()) }
//! ```
//!
//! Nested transactions are savepoints on the outer transaction's connection; one dropped
//! without `commit` or `rollback` is rolled back (before the next statement of the outer
//! one), as SeaORM's own are. Read-only transactions run on a replica, except serializable
//! ones (a hot standby refuses them), those of a session (on the primary, never behind its
//! writes) and, on MySQL/MariaDB, those with an isolation level (which must be set before the
//! transaction begins, when the replica is not chosen yet). Streams inside a transaction
//! hold its connection until they end.
//!
//! PostgreSQL, MySQL/MariaDB and SQLite: [`PgReplicaConnection`],
//! [`MySqlReplicaConnection`], [`SqliteReplicaConnection`], for each database feature
//! enabled.
//!
//! Errors: a statement's error is SeaORM's `DbErr::Query` / `DbErr::Exec` with the
//! `sqlx::Error` (`RuntimeErr::SqlxError`); a connection or `begin` that failed on a node is
//! `DbErr::Conn` with the driver's `sqlx::Error` too (the server's or the socket's words,
//! which never carry the URL's password); partypool's own refusals (pool closed, no writer)
//! are `DbErr::Conn(RuntimeErr::Internal)` with partypool's message.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ::sea_orm::sea_query::Values;
use ::sea_orm::{
    AccessMode, ConnectionTrait, DbBackend, DbErr, ExecResult, IsolationLevel, QueryResult,
    RuntimeErr, Statement, StreamTrait,
};
use futures_core::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use sea_query_sqlx::SqlxValues;
use sqlx::Executor;

use crate::{Backend, ReplicaPool, Session};

/// A SeaORM connection over a [`ReplicaPool`] or a [`Session`]. Cheap to clone.
pub struct ReplicaConnection<DB: Backend> {
    via: Via<DB>,
}

/// A SeaORM [`ReplicaConnection`] over a [`PgReplicaPool`](crate::PgReplicaPool).
#[cfg(feature = "postgres")]
pub type PgReplicaConnection = ReplicaConnection<sqlx::Postgres>;

/// A SeaORM [`ReplicaConnection`] over a [`MySqlReplicaPool`](crate::MySqlReplicaPool).
#[cfg(feature = "mysql")]
pub type MySqlReplicaConnection = ReplicaConnection<sqlx::MySql>;

/// A SeaORM [`ReplicaConnection`] over a [`SqliteReplicaPool`](crate::SqliteReplicaPool).
#[cfg(feature = "sqlite")]
pub type SqliteReplicaConnection = ReplicaConnection<sqlx::Sqlite>;

enum Via<DB: Backend> {
    Pool(ReplicaPool<DB>),
    Session(Session<DB>),
}

impl<DB: Backend> Clone for ReplicaConnection<DB> {
    fn clone(&self) -> Self {
        ReplicaConnection {
            via: match &self.via {
                Via::Pool(p) => Via::Pool(p.clone()),
                Via::Session(s) => Via::Session(s.clone()),
            },
        }
    }
}

impl<DB: Backend> std::fmt::Debug for ReplicaConnection<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let via = match &self.via {
            Via::Pool(_) => "pool",
            Via::Session(_) => "session",
        };
        f.debug_struct("ReplicaConnection")
            .field("via", &via)
            .finish_non_exhaustive()
    }
}

impl<DB: Backend> ReplicaPool<DB> {
    /// This pool as a SeaORM connection; see [`crate::sea_orm`].
    pub fn sea_orm(&self) -> ReplicaConnection<DB> {
        ReplicaConnection {
            via: Via::Pool(self.clone()),
        }
    }
}

impl<DB: Backend> Session<DB> {
    /// This session as a SeaORM connection: its reads see its writes; see
    /// [`crate::sea_orm`].
    pub fn sea_orm(&self) -> ReplicaConnection<DB> {
        ReplicaConnection {
            via: Via::Session(self.clone()),
        }
    }
}

fn query_err(e: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(e)))
}

fn exec_err(e: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(Arc::new(e)))
}

/// A connection-level failure: the driver's error when a node gave one (the server's or the
/// socket's words: never the URL's password, which partypool keeps out of its own messages
/// only), else partypool's message.
fn conn_err(e: crate::Error) -> DbErr {
    match e {
        crate::Error::Node { source, .. } | crate::Error::PrimaryUnreachable { source, .. }
            if !matches!(source, sqlx::Error::Configuration(_)) =>
        {
            DbErr::Conn(RuntimeErr::SqlxError(Arc::new(source)))
        }
        e => DbErr::Conn(RuntimeErr::Internal(e.to_string())),
    }
}

/// What differs per database for SeaORM: its `DbBackend`, the query type SeaORM's values
/// bind to, and how a transaction's characteristics are written.
pub(crate) trait SeaBackend: Backend {
    /// SeaORM's name for it.
    const SEA: DbBackend;

    /// The statement that begins a transaction with these characteristics, when a plain
    /// `BEGIN` will not do.
    fn begin_statement(level: Option<IsolationLevel>, mode: Option<AccessMode>) -> Option<String>;

    /// The statement that sets them inside a transaction just begun (`None`: nothing to set),
    /// or `Err` when the database allows that only before it begins (MySQL).
    fn set_in_transaction(
        level: Option<IsolationLevel>,
        mode: Option<AccessMode>,
    ) -> Result<Option<String>, ()>;
}

/// PostgreSQL's transaction modes: `ISOLATION LEVEL …`, `READ ONLY` / `READ WRITE`.
#[cfg(feature = "postgres")]
fn characteristics(level: Option<IsolationLevel>, mode: Option<AccessMode>) -> Vec<String> {
    let mut parts = Vec::new();
    if let Some(level) = level {
        parts.push(format!("ISOLATION LEVEL {level}"));
    }
    if let Some(mode) = mode {
        parts.push(mode.to_string());
    }
    parts
}

#[cfg(feature = "postgres")]
impl SeaBackend for sqlx::Postgres {
    const SEA: DbBackend = DbBackend::Postgres;

    fn begin_statement(level: Option<IsolationLevel>, mode: Option<AccessMode>) -> Option<String> {
        let parts = characteristics(level, mode);
        (!parts.is_empty()).then(|| format!("BEGIN {}", parts.join(", ")))
    }

    fn set_in_transaction(
        level: Option<IsolationLevel>,
        mode: Option<AccessMode>,
    ) -> Result<Option<String>, ()> {
        let parts = characteristics(level, mode);
        Ok((!parts.is_empty()).then(|| format!("SET TRANSACTION {}", parts.join(", "))))
    }
}

/// MySQL/MariaDB set the isolation level for the next transaction, before it begins.
#[cfg(feature = "mysql")]
impl SeaBackend for sqlx::MySql {
    const SEA: DbBackend = DbBackend::MySql;

    fn begin_statement(level: Option<IsolationLevel>, mode: Option<AccessMode>) -> Option<String> {
        let start = match mode {
            Some(mode) => format!("START TRANSACTION {mode}"),
            None => "START TRANSACTION".to_owned(),
        };
        match (level, mode) {
            (None, None) => None,
            (None, Some(_)) => Some(start),
            (Some(level), _) => Some(format!("SET TRANSACTION ISOLATION LEVEL {level}; {start}")),
        }
    }

    fn set_in_transaction(
        level: Option<IsolationLevel>,
        _mode: Option<AccessMode>,
    ) -> Result<Option<String>, ()> {
        match level {
            Some(_) => Err(()),
            None => Ok(None),
        }
    }
}

/// SQLite's transactions are serializable and take no access mode: plain `BEGIN`.
#[cfg(feature = "sqlite")]
impl SeaBackend for sqlx::Sqlite {
    const SEA: DbBackend = DbBackend::Sqlite;

    fn begin_statement(_: Option<IsolationLevel>, _: Option<AccessMode>) -> Option<String> {
        None
    }

    fn set_in_transaction(
        _: Option<IsolationLevel>,
        _: Option<AccessMode>,
    ) -> Result<Option<String>, ()> {
        Ok(None)
    }
}

/// The sqlx query for a SeaORM statement (its placeholders and values as built).
macro_rules! sqlx_query {
    ($db:ty, $stmt:expr) => {{
        let stmt: Statement = $stmt;
        let values = stmt.values.unwrap_or(Values(Vec::new()));
        sqlx::query_with::<$db, SqlxValues>(sqlx::AssertSqlSafe(stmt.sql), SqlxValues(values))
    }};
}

/// SeaORM's connection traits for `ReplicaConnection<$db>`.
macro_rules! connection_impls {
    ($db:ty) => {
        #[async_trait::async_trait]
        impl ConnectionTrait for ReplicaConnection<$db> {
            fn get_database_backend(&self) -> DbBackend {
                <$db as SeaBackend>::SEA
            }

            async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
                let q = sqlx_query!($db, stmt);
                match &self.via {
                    Via::Pool(p) => q.execute(p).await,
                    Via::Session(s) => q.execute(s).await,
                }
                .map(ExecResult::from)
                .map_err(exec_err)
            }

            async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
                let q = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()));
                match &self.via {
                    Via::Pool(p) => p.execute(q).await,
                    Via::Session(s) => s.execute(q).await,
                }
                .map(ExecResult::from)
                .map_err(exec_err)
            }

            async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
                let q = sqlx_query!($db, stmt);
                match &self.via {
                    Via::Pool(p) => q.fetch_optional(p).await,
                    Via::Session(s) => q.fetch_optional(s).await,
                }
                .map(|row| row.map(QueryResult::from))
                .map_err(query_err)
            }

            async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
                let q = sqlx_query!($db, stmt);
                match &self.via {
                    Via::Pool(p) => q.fetch_all(p).await,
                    Via::Session(s) => q.fetch_all(s).await,
                }
                .map(|rows| rows.into_iter().map(QueryResult::from).collect())
                .map_err(query_err)
            }
        }

        impl StreamTrait for ReplicaConnection<$db> {
            type Stream<'a> = BoxStream<'a, Result<QueryResult, DbErr>>;

            fn get_database_backend(&self) -> DbBackend {
                <$db as SeaBackend>::SEA
            }

            fn stream_raw<'a>(
                &'a self,
                stmt: Statement,
            ) -> Pin<Box<dyn Future<Output = Result<Self::Stream<'a>, DbErr>> + 'a + Send>> {
                Box::pin(async move {
                    let q = sqlx_query!($db, stmt);
                    let rows = match &self.via {
                        Via::Pool(p) => q.fetch(p),
                        Via::Session(s) => q.fetch(s),
                    };
                    Ok(rows.map_ok(QueryResult::from).map_err(query_err).boxed())
                })
            }
        }

        transaction::transaction_impls!($db);
    };
}

mod transaction;

pub use transaction::ReplicaTransaction;

#[cfg(feature = "postgres")]
connection_impls!(sqlx::Postgres);
#[cfg(feature = "mysql")]
connection_impls!(sqlx::MySql);
#[cfg(feature = "sqlite")]
connection_impls!(sqlx::Sqlite);
