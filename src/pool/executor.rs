//! `impl sqlx::Executor for &ReplicaPool`: every statement is routed, then run on a
//! connection from the chosen node.

use std::sync::Arc;

use either::Either;
use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use sqlx::error::BoxDynError;
use sqlx::{Database, Describe, Execute, Executor, SqlStr};

use super::ReplicaPool;
use crate::backend::Backend;
use crate::route::{Route, Target, route_in};

/// A query taken apart and put back together, so it can be classified before it runs.
///
/// sqlx 0.9's [`Execute::sql`] consumes the query, so the routing layer first takes what the
/// driver will ask for later — `persistent()`, `statement()`, `take_arguments()` — and only
/// then the SQL text. Argument encoding errors are kept and handed back to the driver, which
/// reports them exactly as it would have.
struct Routed<DB: Database> {
    sql: SqlStr,
    statement: Option<DB::Statement>,
    arguments: Option<Result<Option<DB::Arguments>, BoxDynError>>,
    persistent: bool,
}

impl<DB: Database> Routed<DB> {
    fn new<'q>(mut query: impl Execute<'q, DB>) -> Self {
        let persistent = query.persistent();
        let statement = query.statement().cloned();
        let arguments = Some(query.take_arguments());
        Routed {
            sql: query.sql(),
            statement,
            arguments,
            persistent,
        }
    }
}

impl<'q, DB: Database> Execute<'q, DB> for Routed<DB> {
    fn sql(self) -> SqlStr {
        self.sql
    }

    fn statement(&self) -> Option<&DB::Statement> {
        self.statement.as_ref()
    }

    fn take_arguments(&mut self) -> Result<Option<DB::Arguments>, BoxDynError> {
        self.arguments.take().unwrap_or(Ok(None))
    }

    fn persistent(&self) -> bool {
        self.persistent
    }
}

impl<DB: Backend> ReplicaPool<DB> {
    fn route(&self, sql: &str) -> Route {
        let route = route_in(DB::DIALECT, sql);
        tracing::trace!(target = %route.target, reason = route.reason, "routed");
        route
    }
}

impl<'p, DB: Backend> Executor<'p> for &'_ ReplicaPool<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    type Database = DB;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<DB::QueryResult, DB::Row>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, DB>,
    {
        let query = Routed::new(query);
        let route = self.route(query.sql.as_str());
        let shared = Arc::clone(&self.shared);
        async_stream::try_stream! {
            let (node, mut conn) = shared.acquire(route).await?;
            let mut results = conn.fetch_many(query);
            while let Some(item) = results.next().await {
                match item {
                    Ok(item) => yield item,
                    Err(e) => {
                        node.record_error(&e);
                        Err(e)?;
                    }
                }
            }
        }
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<DB::Row>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, DB>,
    {
        let query = Routed::new(query);
        let route = self.route(query.sql.as_str());
        let shared = Arc::clone(&self.shared);
        async move {
            let (node, mut conn) = shared.acquire(route).await?;
            conn.fetch_optional(query)
                .await
                .inspect_err(|e| node.record_error(e))
        }
        .boxed()
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [DB::TypeInfo],
    ) -> BoxFuture<'e, Result<DB::Statement, sqlx::Error>>
    where
        'p: 'e,
    {
        // A prepared statement is metadata plus SQL; sqlx prepares it again on whichever
        // connection later runs it, so it is routed again at that point.
        let route = self.route(sql.as_str());
        let shared = Arc::clone(&self.shared);
        async move {
            let (node, mut conn) = shared.acquire(route).await?;
            conn.prepare_with(sql, parameters)
                .await
                .inspect_err(|e| node.record_error(e))
        }
        .boxed()
    }

    /// Used by the `query!` macros at compile time: always the primary, whose schema is
    /// never behind.
    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<Describe<DB>, sqlx::Error>>
    where
        'p: 'e,
    {
        let shared = Arc::clone(&self.shared);
        async move {
            let primary = Route {
                target: Target::Primary,
                reason: "describe",
            };
            let (node, mut conn) = shared.acquire(primary).await?;
            conn.describe(sql)
                .await
                .inspect_err(|e| node.record_error(e))
        }
        .boxed()
    }
}
