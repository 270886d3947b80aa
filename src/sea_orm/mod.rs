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
//! ones (a hot standby refuses them) and those of a session (on the primary, never behind
//! its writes). Limits: streams are served by the connection itself, not (yet) inside a
//! transaction; PostgreSQL only for now.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ::sea_orm::sea_query::Values;
use ::sea_orm::{
    ConnectionTrait, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr, Statement, StreamTrait,
};
use futures_core::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use sea_query_sqlx::SqlxValues;
use sqlx::{Executor, Postgres};

use crate::{Backend, ReplicaPool, Session};

/// A SeaORM connection over a [`ReplicaPool`] or a [`Session`]. Cheap to clone.
pub struct ReplicaConnection<DB: Backend> {
    via: Via<DB>,
}

/// A SeaORM [`ReplicaConnection`] over a [`PgReplicaPool`](crate::PgReplicaPool).
pub type PgReplicaConnection = ReplicaConnection<Postgres>;

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

fn conn_err(e: crate::Error) -> DbErr {
    // partypool's errors name the node and never carry a password.
    DbErr::Conn(RuntimeErr::Internal(e.to_string()))
}

/// The sqlx query for a SeaORM statement (its placeholders and values as built).
fn sqlx_query(stmt: Statement) -> sqlx::query::Query<'static, Postgres, SqlxValues> {
    let values = stmt.values.unwrap_or(Values(Vec::new()));
    sqlx::query_with(sqlx::AssertSqlSafe(stmt.sql), SqlxValues(values))
}

#[async_trait::async_trait]
impl ConnectionTrait for ReplicaConnection<Postgres> {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let q = sqlx_query(stmt);
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
        let q = sqlx_query(stmt);
        match &self.via {
            Via::Pool(p) => q.fetch_optional(p).await,
            Via::Session(s) => q.fetch_optional(s).await,
        }
        .map(|row| row.map(QueryResult::from))
        .map_err(query_err)
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let q = sqlx_query(stmt);
        match &self.via {
            Via::Pool(p) => q.fetch_all(p).await,
            Via::Session(s) => q.fetch_all(s).await,
        }
        .map(|rows| rows.into_iter().map(QueryResult::from).collect())
        .map_err(query_err)
    }
}

impl StreamTrait for ReplicaConnection<Postgres> {
    type Stream<'a> = BoxStream<'a, Result<QueryResult, DbErr>>;

    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    fn stream_raw<'a>(
        &'a self,
        stmt: Statement,
    ) -> Pin<Box<dyn Future<Output = Result<Self::Stream<'a>, DbErr>> + 'a + Send>> {
        Box::pin(async move {
            let q = sqlx_query(stmt);
            let rows = match &self.via {
                Via::Pool(p) => q.fetch(p),
                Via::Session(s) => q.fetch(s),
            };
            Ok(rows.map_ok(QueryResult::from).map_err(query_err).boxed())
        })
    }
}

mod transaction;

pub use transaction::ReplicaTransaction;
