//! `impl sqlx::Executor` for `&ReplicaPool` (automatic routing) and for [`Targeted`]
//! (`pool.on_primary()`, `pool.on_replica()`): every statement is classified, then run on a
//! connection from the chosen node. A statement a replica refuses as a write runs again on
//! the primary.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use either::Either;
use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use sqlx::error::BoxDynError;
use sqlx::{Database, Describe, Execute, Executor, SqlStr};
use tracing::Instrument;

use super::ReplicaPool;
use super::inner::Shared;
use crate::backend::Backend;
use crate::consistency::{CausalSupport, Session, SessionState};
use crate::node::{Node, Role};
use crate::route::{Route, Target, fingerprint};

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

impl<DB: Backend> Routed<DB> {
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

    /// A copy to run again on the primary if a replica refuses this one. `None` when the
    /// arguments failed to encode (the driver reports that; there is nothing to re-run).
    fn try_clone(&self) -> Option<Self> {
        let arguments = match &self.arguments {
            Some(Ok(args)) => Some(Ok(args.clone())),
            Some(Err(_)) => return None,
            None => None,
        };
        Some(Routed {
            sql: self.sql.clone(),
            statement: self.statement.clone(),
            arguments,
            persistent: self.persistent,
        })
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

/// The stream of results `Executor::fetch_many` returns.
type ResultStream<'e, DB> = BoxStream<
    'e,
    Result<Either<<DB as Database>::QueryResult, <DB as Database>::Row>, sqlx::Error>,
>;

/// Why one attempt at a statement ended early.
enum Failure {
    /// The driver's error.
    Db(sqlx::Error),
    /// `statement_timeout` passed waiting for the next result.
    Timeout(Duration),
    /// The replica left the rotation (down, hung, lagging) while the statement ran on it.
    LeftRotation,
    /// The pool is closing.
    Closed,
}

/// The span of one routed call. The node's name (never its URL) is filled in once a
/// connection is checked out; `retries` and `fallback` when they happen.
fn call_span(route: Route) -> tracing::Span {
    tracing::debug_span!(
        "partypool.query",
        node = tracing::field::Empty,
        target = %route.target,
        reason = route.reason,
        retries = tracing::field::Empty,
        fallback = tracing::field::Empty,
    )
}

/// A stream that enters its span on every poll (`tracing::Instrument` covers futures only).
struct InSpan<S> {
    inner: S,
    span: tracing::Span,
}

impl<S: futures_core::Stream + Unpin> futures_core::Stream for InSpan<S> {
    type Item = S::Item;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        let this = &mut *self;
        let _entered = this.span.enter();
        std::pin::Pin::new(&mut this.inner).poll_next(cx)
    }
}

/// How a call reached the executor: an explicit target (`on_primary`, `on_replica`), and the
/// session it belongs to.
#[derive(Default)]
pub(crate) struct Via {
    force: Option<Target>,
    session: Option<Arc<SessionState>>,
}

/// What to do after a failed attempt.
enum Next {
    /// Run the read again on another node.
    Retry,
    /// A replica refused a write: run it once on the primary.
    Misroute(sqlx::Error),
    Fail(sqlx::Error),
}

fn io_error(kind: io::ErrorKind, message: String) -> sqlx::Error {
    sqlx::Error::Io(io::Error::new(kind, message))
}

impl<DB: Backend> Shared<DB> {
    /// After a transaction committed through a session: record the primary's position from
    /// any writer connection (the position is global and only grows).
    pub(crate) async fn record_commit(&self, session: &SessionState) {
        match self.acquire_writer().await {
            Ok((_, _, mut conn, _)) => self.record_write(&mut conn, session).await,
            Err(_) => session.advance(u64::MAX),
        }
    }

    /// After a statement ran on the primary through a session: remember where the primary's
    /// log is now, on the same connection (one light query), so the session's later reads
    /// see it. If that fails, any writer connection will do (the position is global); if
    /// that fails too, the session reads on the primary from now on (never too old).
    async fn record_write(&self, conn: &mut DB::Connection, session: &SessionState) {
        if self.cluster.settings.sticky.is_some() || DB::CAUSAL == CausalSupport::Unsupported {
            session.wrote_now();
            return;
        }
        if DB::CAUSAL == CausalSupport::Immediate {
            return;
        }
        // Unknown position (the connection broke after the write): the session reads on
        // the primary from now on, which is never too old.
        let position = DB::capture_position(conn).await.ok().flatten();
        session.advance(position.unwrap_or(u64::MAX));
    }
}

/// A session's write whose position is not recorded yet. While one exists, the session
/// reads on the primary. Dropped unrecorded — the caller dropped the stream, or the statement
/// was interrupted and may have committed — it records the primary's position from a fresh
/// connection in the background.
struct PendingWrite<DB: Backend> {
    shared: Arc<Shared<DB>>,
    session: Arc<SessionState>,
    recorded: bool,
}

impl<DB: Backend> PendingWrite<DB> {
    fn new(shared: &Arc<Shared<DB>>, session: &Arc<SessionState>) -> Self {
        session.write_started();
        PendingWrite {
            shared: Arc::clone(shared),
            session: Arc::clone(session),
            recorded: false,
        }
    }

    /// Records the position on the connection the write ran on.
    async fn record(mut self, conn: &mut DB::Connection) {
        self.shared.record_write(conn, &self.session).await;
        self.recorded = true;
        self.session.write_recorded();
    }
}

impl<DB: Backend> Drop for PendingWrite<DB> {
    fn drop(&mut self) {
        if self.recorded {
            return;
        }
        let (shared, session) = (Arc::clone(&self.shared), Arc::clone(&self.session));
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    shared.record_commit(&session).await;
                    session.write_recorded();
                });
            }
            Err(_) => {
                session.advance(u64::MAX);
                session.write_recorded();
            }
        }
    }
}

impl<DB: Backend> Shared<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    fn route(&self, sql: &str, force: Option<Target>) -> Route {
        let route = self.router.decide(sql, force).route;
        tracing::trace!(target = %route.target, reason = route.reason, "routed");
        route
    }

    fn misrouted(&self, node: &Node<DB>, sql: &SqlStr, e: &sqlx::Error) {
        node.misrouted();
        tracing::Span::current().record("fallback", true);
        let code = e
            .as_database_error()
            .and_then(|d| d.code())
            .unwrap_or_default();
        tracing::warn!(
            node = %node.name,
            statement = %fingerprint(DB::DIALECT, sql.as_str()),
            code = %code,
            "a replica refused a statement routed as a read; running it on the primary \
             (consider Config::write_functions)"
        );
    }

    /// Waits for `work`, unless the pool closes, the node leaves the rotation (only when
    /// `watch` — reads on replicas), or `statement_timeout` passes first.
    async fn guarded<T>(
        &self,
        node: &Node<DB>,
        watch: bool,
        work: impl Future<Output = T>,
    ) -> Result<T, Failure> {
        let left = node.left_rotation();
        tokio::pin!(left);
        left.as_mut().enable();
        let left_or_never = async {
            if watch && node.serves_reads() {
                left.await
            } else if watch {
                // It left between the checkout and now.
            } else {
                std::future::pending::<()>().await
            }
        };
        let limit = self.cluster.settings.statement_timeout;
        let timed = async {
            match limit {
                Some(t) => tokio::time::timeout(t, work)
                    .await
                    .map_err(|_| Failure::Timeout(t)),
                None => Ok(work.await),
            }
        };
        tokio::select! {
            biased;
            _ = self.cluster.closing() => Err(Failure::Closed),
            _ = left_or_never => Err(Failure::LeftRotation),
            r = timed => r,
        }
    }

    /// Decides what follows a failed attempt on `node`. Only reads that returned nothing yet
    /// are ever run again, and only after a failure that says nothing ran (a refusal) or that
    /// concerns the node rather than the statement (connection-class error, timeout, the node
    /// leaving the rotation).
    fn after_failure(
        &self,
        node: &Node<DB>,
        failure: Failure,
        read: bool,
        yielded: bool,
        retries_left: bool,
    ) -> Next {
        let backoff = self.cluster.settings.ban_backoff;
        let replica = node.role == Role::Replica;
        // Run again only what ran on a read-only replica: a statement the router took for a
        // read may still write (an opaque CALL, an undeclared write function), and on the
        // primary (a read that fell back there) it may have committed before the failure.
        let read = read && replica && node.in_recovery() != Some(false);
        let error = match failure {
            Failure::Closed => return Next::Fail(sqlx::Error::PoolClosed),
            Failure::Db(e) if read && !yielded && DB::is_standby_rejection(&e) => {
                return Next::Misroute(e);
            }
            Failure::Db(e) => {
                node.record_error(&e, backoff);
                if read && !yielded && retries_left && DB::is_unavailable(&e) {
                    node.retried();
                    return Next::Retry;
                }
                return Next::Fail(e);
            }
            Failure::Timeout(t) => {
                node.count_error();
                io_error(
                    io::ErrorKind::TimedOut,
                    format!("statement timed out after {t:?} on {}", node.name),
                )
            }
            Failure::LeftRotation => io_error(
                io::ErrorKind::ConnectionAborted,
                format!("{} left the rotation while the statement ran", node.name),
            ),
        };
        if read && !yielded && retries_left {
            node.retried();
            Next::Retry
        } else {
            Next::Fail(error)
        }
    }

    fn fetch_many<'e>(self: Arc<Self>, query: Routed<DB>, via: Via) -> ResultStream<'e, DB> {
        let route = self.route(query.sql.as_str(), via.force);
        let read = route.target == Target::Replica;
        let span = call_span(route);
        let stream = async_stream::try_stream! {
            let mut tried = Vec::new();
            let mut attempts = 0;
            let mut pending = Some((query, read));
            while let Some((query, on_replica)) = pending.take() {
                let again = if on_replica { query.try_clone() } else { None };
                // A write through a session: until its position is recorded, the session
                // reads on the primary.
                let unrecorded = match (&via.session, on_replica) {
                    (Some(session), false) => Some(PendingWrite::new(&self, session)),
                    _ => None,
                };
                let (index, node, mut conn, busy) = if on_replica {
                    self.acquire_reader(&mut tried, via.session.as_deref()).await?
                } else {
                    self.acquire_writer().await?
                };
                // Watch for the node leaving the rotation only on a replica read: a read that
                // fell back to the writer, or a write, runs to its end.
                let watch = on_replica && node.serves_reads();
                tracing::Span::current().record("node", node.name.as_str());
                let mut yielded = false;
                let mut failure = None;
                {
                    let mut results = conn.fetch_many(query);
                    loop {
                        match self.guarded(&node, watch, results.next()).await {
                            Ok(Some(Ok(item))) => {
                                yielded = true;
                                yield item;
                            }
                            Ok(None) => break,
                            Ok(Some(Err(e))) => {
                                failure = Some(Failure::Db(e));
                                break;
                            }
                            Err(f) => {
                                failure = Some(f);
                                break;
                            }
                        }
                    }
                }
                if let Some(write) = unrecorded
                    && matches!(failure, None | Some(Failure::Db(_)))
                {
                    write.record(&mut conn).await;
                }
                let Some(failure) = failure else {
                    busy.done();
                    break;
                };
                drop(busy);
                if !matches!(failure, Failure::Db(_)) {
                    // Interrupted mid-statement: the connection's state is unknown.
                    conn.close_on_drop();
                }
                drop(conn);
                let retries_left = again.is_some() && attempts < self.cluster.settings.max_read_retries;
                match self.after_failure(&node, failure, on_replica, yielded, retries_left) {
                    Next::Retry => {
                        tried.push(index);
                        attempts += 1;
                        tracing::Span::current().record("retries", attempts);
                        pending = again.map(|q| (q, true));
                    }
                    Next::Misroute(e) => match again {
                        Some(q) => {
                            self.misrouted(&node, &q.sql, &e);
                            pending = Some((q, false));
                        }
                        None => Err(e)?,
                    },
                    Next::Fail(e) => Err(e)?,
                }
            }
        };
        InSpan {
            inner: stream.boxed(),
            span,
        }
        .boxed()
    }

    fn fetch_optional<'e>(
        self: Arc<Self>,
        query: Routed<DB>,
        via: Via,
    ) -> BoxFuture<'e, Result<Option<DB::Row>, sqlx::Error>> {
        let route = self.route(query.sql.as_str(), via.force);
        let read = route.target == Target::Replica;
        let span = call_span(route);
        async move {
            let mut tried = Vec::new();
            let mut attempts = 0;
            let (mut query, mut on_replica) = (query, read);
            loop {
                let again = if on_replica { query.try_clone() } else { None };
                // A write through a session: until its position is recorded, the session
                // reads on the primary.
                let unrecorded = match (&via.session, on_replica) {
                    (Some(session), false) => Some(PendingWrite::new(&self, session)),
                    _ => None,
                };
                let (index, node, mut conn, busy) = if on_replica {
                    self.acquire_reader(&mut tried, via.session.as_deref())
                        .await?
                } else {
                    self.acquire_writer().await?
                };
                // Watch for the node leaving the rotation only on a replica read: a read that
                // fell back to the writer, or a write, runs to its end.
                let watch = on_replica && node.serves_reads();
                tracing::Span::current().record("node", node.name.as_str());
                let outcome = self.guarded(&node, watch, conn.fetch_optional(query)).await;
                match &outcome {
                    Ok(Ok(_)) => busy.done(),
                    _ => drop(busy),
                }
                if let Some(write) = unrecorded
                    && outcome.is_ok()
                {
                    write.record(&mut conn).await;
                }
                let failure = match outcome {
                    Ok(Ok(row)) => return Ok(row),
                    Ok(Err(e)) => Failure::Db(e),
                    Err(f) => {
                        conn.close_on_drop();
                        f
                    }
                };
                drop(conn);
                let retries_left =
                    again.is_some() && attempts < self.cluster.settings.max_read_retries;
                match (
                    self.after_failure(&node, failure, on_replica, false, retries_left),
                    again,
                ) {
                    (Next::Retry, Some(q)) => {
                        tried.push(index);
                        attempts += 1;
                        tracing::Span::current().record("retries", attempts);
                        query = q;
                    }
                    (Next::Misroute(e), Some(q)) => {
                        self.misrouted(&node, &q.sql, &e);
                        (query, on_replica) = (q, false);
                    }
                    (Next::Retry, None) => unreachable!("retries need a copy of the query"),
                    (Next::Misroute(e) | Next::Fail(e), _) => return Err(e),
                }
            }
        }
        .instrument(span)
        .boxed()
    }

    fn prepare_with<'e>(
        self: Arc<Self>,
        sql: SqlStr,
        parameters: &'e [DB::TypeInfo],
        via: Via,
    ) -> BoxFuture<'e, Result<DB::Statement, sqlx::Error>> {
        // A prepared statement is metadata plus SQL; sqlx prepares it again on whichever
        // connection later runs it, so it is routed again at that point.
        let route = self.route(sql.as_str(), via.force);
        async move {
            let (_, node, mut conn, _busy) = if route.target == Target::Replica {
                self.acquire_reader(&mut Vec::new(), None).await?
            } else {
                self.acquire_writer().await?
            };
            let backoff = self.cluster.settings.ban_backoff;
            conn.prepare_with(sql, parameters)
                .await
                .inspect_err(|e| node.record_error(e, backoff))
        }
        .boxed()
    }

    /// Used by the `query!` macros at compile time: always the primary, whose schema is
    /// never behind.
    fn describe<'e>(
        self: Arc<Self>,
        sql: SqlStr,
    ) -> BoxFuture<'e, Result<Describe<DB>, sqlx::Error>> {
        async move {
            let (_, node, mut conn, _busy) = self.acquire_writer().await?;
            let backoff = self.cluster.settings.ban_backoff;
            conn.describe(sql)
                .await
                .inspect_err(|e| node.record_error(e, backoff))
        }
        .boxed()
    }
}

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
    Via::default()
));
routed_executor!(Targeted<'_, DB>, |handle| (
    Arc::clone(&handle.pool.shared),
    Via {
        force: Some(handle.target),
        session: None
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
