//! `impl sqlx::Executor` for `&ReplicaPool` (automatic routing) and for [`Targeted`]
//! (`pool.on_primary()`, `pool.on_replica()`): every statement is classified, then run on a
//! connection from the chosen node. A statement a replica refuses as a write runs again on
//! the primary.

use std::sync::Arc;

use either::Either;
use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use sqlx::{Describe, Execute, Executor, SqlStr};

use super::ReplicaPool;
use super::attempt::Via;
use super::routed::Routed;
use super::session::Session;
use super::shared::Shared;
use crate::backend::Backend;
use crate::route::Target;

/// Implements `sqlx::Executor` for a handle type, given how to get the shared state and the
/// forced target from `self`.
macro_rules! routed_executor {
    ($handle:ty, |$this:ident| ($shared:expr, $via:expr)) => {
        impl<'p, DB: Backend> Executor<'p> for $handle
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
                let $this = self;
                Shared::fetch_many($shared, Routed::new(query), $via)
            }

            fn fetch_optional<'e, 'q: 'e, E>(
                self,
                query: E,
            ) -> BoxFuture<'e, Result<Option<DB::Row>, sqlx::Error>>
            where
                'p: 'e,
                E: 'q + Execute<'q, DB>,
            {
                let $this = self;
                Shared::fetch_optional($shared, Routed::new(query), $via)
            }

            fn prepare_with<'e>(
                self,
                sql: SqlStr,
                parameters: &'e [DB::TypeInfo],
            ) -> BoxFuture<'e, Result<DB::Statement, sqlx::Error>>
            where
                'p: 'e,
            {
                let $this = self;
                Shared::prepare_with($shared, sql, parameters, $via)
            }

            fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<Describe<DB>, sqlx::Error>>
            where
                'p: 'e,
            {
                let $this = self;
                Shared::describe($shared, sql)
            }
        }
    };
}

routed_executor!(&'_ ReplicaPool<DB>, |pool| (
    Arc::clone(&pool.shared),
    Via {
        force: None,
        session: super::scope::current(&pool.shared),
    }
));
routed_executor!(Targeted<'_, DB>, |handle| (
    Arc::clone(&handle.pool.shared),
    Via {
        force: Some(handle.target),
        session: super::scope::current(&handle.pool.shared),
    }
));
routed_executor!(&'_ Session<DB>, |session| (
    Arc::clone(&session.pool.shared),
    Via {
        force: None,
        session: Some(Arc::clone(&session.state))
    }
));

/// An executor that routes with an explicit target: [`ReplicaPool::on_primary`] and
/// [`ReplicaPool::on_replica`]. `Copy`, so it can be passed by value wherever an executor
/// goes.
///
/// ```no_run
/// # async fn demo(pool: partypool::PgReplicaPool) -> Result<(), sqlx::Error> {
/// // Read what we just wrote, whatever the replicas' lag:
/// let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders").fetch_one(pool.on_primary()).await?;
/// // A read-only procedure the router cannot see into:
/// sqlx::query("CALL refresh_report_cache()").execute(pool.on_replica()).await?;
/// # let _ = n; Ok(()) }
/// ```
pub struct Targeted<'a, DB: Backend> {
    pool: &'a ReplicaPool<DB>,
    target: Target,
}

impl<DB: Backend> Clone for Targeted<'_, DB> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<DB: Backend> Copy for Targeted<'_, DB> {}

impl<DB: Backend> std::fmt::Debug for Targeted<'_, DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Targeted")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl<DB: Backend> ReplicaPool<DB> {
    /// An executor that runs every statement on the primary, like a `/* partypool:primary */`
    /// hint on each: for reads that must see the latest writes.
    pub fn on_primary(&self) -> Targeted<'_, DB> {
        Targeted {
            pool: self,
            target: Target::Primary,
        }
    }

    /// An executor that sends statements to a replica when the router held them back only
    /// out of caution (a `CALL` or `DO`, a function not known to be read-only in strict
    /// mode), like a `/* partypool:replica */` hint on each. Detected writes, locks and
    /// session state still go to the primary, and a statement a replica refuses as a write
    /// runs again on the primary.
    pub fn on_replica(&self) -> Targeted<'_, DB> {
        Targeted {
            pool: self,
            target: Target::Replica,
        }
    }
}
