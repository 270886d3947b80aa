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
use sqlx::pool::PoolConnection;
use sqlx::{Database, Describe, Execute, Executor, SqlStr};

use super::ReplicaPool;
use super::inner::Shared;
use crate::backend::Backend;
use crate::consistency::{At, CausalSupport, Session, SessionState, now_ms};
use crate::error::OutcomeUnknown;
use crate::node::Node;
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
    /// The pool is closing; `sent` when the statement had been handed to the driver.
    Closed { sent: bool },
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

pin_project_lite::pin_project! {
    /// A stream that enters its span on every poll (`tracing::Instrument` covers futures
    /// only).
    struct InSpan<S> {
        #[pin]
        inner: S,
        span: tracing::Span,
    }
}

impl<S: futures_core::Stream> futures_core::Stream for InSpan<S> {
    type Item = S::Item;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        let this = self.project();
        let _entered = this.span.enter();
        this.inner.poll_next(cx)
    }
}

/// How a call reached the executor: an explicit target (`on_primary`, `on_replica`), and the
/// session it belongs to.
#[derive(Default)]
pub(crate) struct Via {
    force: Option<Target>,
    session: Option<Arc<SessionState>>,
}

pin_project_lite::pin_project! {
    /// What may end one attempt early: the pool closing, the node leaving the rotation (only
    /// when `watch`: reads on replicas), or `statement_timeout` passing while waiting for the
    /// next result.
    ///
    /// Armed once per attempt, not per result: a result that is already buffered (most rows
    /// of a large result) costs two atomic loads. Only when the driver has to wait does the
    /// guard register for wake-ups and start the timer. (Arming a `select!` of fresh
    /// `Notified` futures and a timer for every row cost a third of the throughput of a
    /// 100k-row `fetch`; see `examples/cost.rs`.)
    struct Guard<'a, DB: Backend> {
        node: &'a Node<DB>,
        cluster: &'a crate::cluster::Cluster<DB>,
        watch: bool,
        // Created before the flags are first read, so a notification in between is not lost.
        #[pin]
        closing: tokio::sync::futures::Notified<'a>,
        #[pin]
        left: tokio::sync::futures::Notified<'a>,
        #[pin]
        timer: Option<tokio::time::Sleep>,
        limit: Option<Duration>,
        // Something has been handed to the driver.
        sent: bool,
    }
}

impl<'a, DB: Backend> Guard<'a, DB> {
    fn new(shared: &'a Shared<DB>, node: &'a Node<DB>, watch: bool) -> Self {
        let cluster = &*shared.cluster;
        Guard {
            node,
            cluster,
            watch,
            closing: cluster.closed_signal(),
            left: node.left_rotation(),
            timer: None,
            limit: cluster.settings.statement_timeout,
            sent: false,
        }
    }

    /// Waits for `work` (the next result) under the guard.
    async fn next<T>(
        mut self: std::pin::Pin<&mut Self>,
        work: impl Future<Output = T>,
    ) -> Result<T, Failure> {
        use std::task::Poll;
        let mut work = std::pin::pin!(work);
        let mut timer_armed = false;
        std::future::poll_fn(move |cx| {
            let mut this = self.as_mut().project();
            if this.cluster.is_closing() {
                return Poll::Ready(Err(Failure::Closed { sent: *this.sent }));
            }
            if *this.watch && !this.node.answers() {
                return Poll::Ready(Err(Failure::LeftRotation));
            }
            *this.sent = true;
            if let Poll::Ready(out) = work.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            // The driver waits: wake up for whatever may end the attempt.
            if this.closing.poll(cx).is_ready() {
                return Poll::Ready(Err(Failure::Closed { sent: true }));
            }
            if *this.watch && this.left.as_mut().poll(cx).is_ready() {
                if !this.node.answers() {
                    return Poll::Ready(Err(Failure::LeftRotation));
                }
                // It left the rotation but still answers (promoted, lagging): the read runs
                // to its end there; keep watching for it going down.
                this.left.set(this.node.left_rotation());
                let _ = this.left.as_mut().poll(cx);
            }
            if let Some(limit) = *this.limit {
                let mut timer = this.timer;
                if !timer_armed {
                    let deadline = tokio::time::Instant::now() + limit;
                    match timer.as_mut().as_pin_mut() {
                        Some(t) => t.reset(deadline),
                        None => timer.set(Some(tokio::time::sleep_until(deadline))),
                    }
                    timer_armed = true;
                }
                if let Some(t) = timer.as_pin_mut()
                    && t.poll(cx).is_ready()
                {
                    return Poll::Ready(Err(Failure::Timeout(limit)));
                }
            }
            Poll::Pending
        })
        .await
    }
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

/// What `fetch_many` and `fetch_optional` differ in: the driver call run on one connection.
/// Everything else — routing, the session, retries, the misroute fallback, timeouts — is
/// one attempt loop ([`Shared::attempts`]).
trait Op<DB: Backend>: Copy + Send + 'static {
    type Item: Send + 'static;

    fn run<'c>(
        self,
        conn: &'c mut DB::Connection,
        query: Routed<DB>,
    ) -> BoxStream<'c, Result<Self::Item, sqlx::Error>>
    where
        for<'x> &'x mut DB::Connection: Executor<'x, Database = DB>;
}

/// `Executor::fetch_many`: every result as it comes.
#[derive(Clone, Copy)]
struct Many;

impl<DB: Backend> Op<DB> for Many {
    type Item = Either<DB::QueryResult, DB::Row>;

    fn run<'c>(
        self,
        conn: &'c mut DB::Connection,
        query: Routed<DB>,
    ) -> BoxStream<'c, Result<Self::Item, sqlx::Error>>
    where
        for<'x> &'x mut DB::Connection: Executor<'x, Database = DB>,
    {
        conn.fetch_many(query)
    }
}

/// `Executor::fetch_optional`: one item, the first row if any.
#[derive(Clone, Copy)]
struct Optional;

impl<DB: Backend> Op<DB> for Optional {
    type Item = Option<DB::Row>;

    fn run<'c>(
        self,
        conn: &'c mut DB::Connection,
        query: Routed<DB>,
    ) -> BoxStream<'c, Result<Self::Item, sqlx::Error>>
    where
        for<'x> &'x mut DB::Connection: Executor<'x, Database = DB>,
    {
        conn.fetch_optional(query).into_stream().boxed()
    }
}

impl<DB: Backend> Shared<DB> {
    /// After a transaction committed through a session: record the primary's position from
    /// any writer connection. The commit has returned, so the position now is past it.
    pub(crate) async fn record_commit(&self, session: &SessionState) {
        match self.acquire_writer().await {
            Ok((_, _, mut conn, _)) => self.record_write(&mut conn, session).await,
            Err(_) => session.unknown(now_ms()),
        }
    }

    /// After a session's statement finished on the primary: record where the primary's log
    /// is now, on the same connection (one light query), so the session's later reads see
    /// it. If that fails, the position is unknown and the session reads on the primary
    /// until the write has settled (never too old).
    async fn record_write(&self, conn: &mut DB::Connection, session: &SessionState) {
        let rules = self.rules();
        if rules.sticky.is_some() || DB::CAUSAL == CausalSupport::Unsupported {
            session.wrote_now();
            return;
        }
        if DB::CAUSAL == CausalSupport::Immediate {
            return;
        }
        match DB::capture_position(conn).await {
            Ok(Some(p)) => session.recorded(At::from_log(p)),
            _ => session.unknown(now_ms()),
        }
    }

    /// After a read that went to the primary because of the session: the primary's
    /// position, to settle or check the session's ([`SessionState::reconcile`]).
    async fn reconcile(&self, conn: &mut DB::Connection, session: &SessionState) {
        match DB::capture_position(conn).await {
            Ok(Some(p)) => session.reconcile(At::from_log(p), &self.rules(), now_ms()),
            // The primary has no position to give (MySQL 8, an unreadable GTID set): once
            // the window has passed, the write has settled all the same.
            Ok(None) => session.settle_without_position(&self.rules(), now_ms()),
            Err(_) => {}
        }
    }
}

/// A session's write whose position is not recorded yet. While one exists, the session
/// reads on the primary and its token is a pending one. It ends one of four ways: recorded
/// on the write's own connection; handed the connection to record in the background (the
/// caller dropped the stream: the driver first drains the statement, so the position is
/// taken after its commit); marked unknown (interrupted, the commit failed); or dropped
/// before anything was sent.
pub(crate) struct PendingWrite<DB: Backend> {
    shared: Arc<Shared<DB>>,
    session: Arc<SessionState>,
    /// Whether the statement may have reached the server.
    sent: bool,
    finished: bool,
}

impl<DB: Backend> PendingWrite<DB> {
    pub(crate) fn new(shared: &Arc<Shared<DB>>, session: &Arc<SessionState>, sent: bool) -> Self {
        session.write_started();
        PendingWrite {
            shared: Arc::clone(shared),
            session: Arc::clone(session),
            sent,
            finished: false,
        }
    }

    fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            self.session.write_recorded();
        }
    }

    /// Records the position on the connection the write ran on.
    async fn record(mut self, conn: &mut DB::Connection) {
        self.shared.record_write(conn, &self.session).await;
        self.finish();
    }

    /// The position was recorded by the caller.
    pub(crate) fn recorded(mut self) {
        self.finish();
    }

    /// The write's outcome is unknown.
    fn unknown(mut self) {
        self.session.unknown(now_ms());
        self.finish();
    }

    /// Records the position on `conn` in the background, bounded by the settle window.
    fn in_background(mut self, mut conn: PoolConnection<DB>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return self.unknown();
        };
        self.finished = true; // the task finishes it
        let (shared, session) = (Arc::clone(&self.shared), Arc::clone(&self.session));
        runtime.spawn(async move {
            let limit = shared.rules().settle;
            let record = shared.record_write(&mut conn, &session);
            if tokio::time::timeout(limit, record).await.is_err() {
                conn.close_on_drop();
                session.unknown(now_ms());
            }
            session.write_recorded();
        });
    }
}

impl<DB: Backend> Drop for PendingWrite<DB> {
    fn drop(&mut self) {
        if !self.finished && self.sent {
            self.session.unknown(now_ms());
        }
        self.finish();
    }
}

/// One attempt's connection, and the session write running on it: dropped midway (the
/// caller dropped the stream or the future), the write's position is recorded on this
/// connection in the background.
struct Attempt<DB: Backend> {
    conn: Option<PoolConnection<DB>>,
    write: Option<PendingWrite<DB>>,
}

impl<DB: Backend> Attempt<DB> {
    fn conn(&mut self) -> &mut DB::Connection {
        self.conn.as_mut().expect("the attempt's connection")
    }

    /// The statement ended with its outcome known: record a session write's position.
    async fn record(&mut self) {
        if let (Some(write), Some(conn)) = (self.write.take(), self.conn.as_mut()) {
            write.record(conn).await;
        }
    }

    /// The statement was interrupted: its connection's state and a write's outcome are
    /// unknown.
    fn abandon(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            conn.close_on_drop();
        }
        if let Some(write) = self.write.take() {
            write.unknown();
        }
    }
}

impl<DB: Backend> Drop for Attempt<DB> {
    fn drop(&mut self) {
        if let Some(write) = self.write.take() {
            match self.conn.take() {
                Some(conn) => write.in_background(conn),
                None => write.unknown(),
            }
        }
    }
}

impl<DB: Backend> Shared<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    fn route(&self, sql: &str, force: Option<Target>) -> Route {
        let route = self.router.decide(sql, force).route();
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

    /// Decides what follows a failed attempt on `node`.
    ///
    /// Only reads that ran on a read-only replica (`standby`) and returned nothing yet are
    /// ever run again, and only after a failure that says nothing ran (a refusal) or that
    /// concerns the node rather than the statement (connection-class error, timeout, the node
    /// leaving the rotation): a statement the router took for a read may still write (an
    /// opaque CALL, an undeclared write function), and on the primary it may have committed.
    /// For the same reason a statement interrupted anywhere but on a standby fails with an
    /// [`OutcomeUnknown`] error, never one that says it did not run.
    fn after_failure(
        &self,
        node: &Arc<Node<DB>>,
        failure: Failure,
        standby: bool,
        yielded: bool,
        retries_left: bool,
    ) -> Next {
        let unknown = |kind, what: String, source| {
            Next::Fail(OutcomeUnknown::error(&node.name, kind, what, source))
        };
        let error = match failure {
            Failure::Closed { sent: false } => return Next::Fail(sqlx::Error::PoolClosed),
            Failure::Closed { sent: true } if standby => {
                return Next::Fail(sqlx::Error::PoolClosed);
            }
            Failure::Closed { sent: true } => {
                return unknown(
                    io::ErrorKind::ConnectionAborted,
                    "interrupted by close()".into(),
                    None,
                );
            }
            Failure::Db(e) if standby && !yielded && DB::is_standby_rejection(&e) => {
                return Next::Misroute(e);
            }
            Failure::Db(e) => {
                self.cluster.report(node, &e);
                if standby && !yielded && retries_left && DB::is_unavailable(&e) {
                    node.retried();
                    return Next::Retry;
                }
                // Cut off (a transport error), or the server going away mid-statement (it may
                // have committed locally, e.g. while waiting for a synchronous standby).
                if !standby && DB::is_unavailable(&e) {
                    let kind = match &e {
                        sqlx::Error::Io(io) => io.kind(),
                        _ => io::ErrorKind::ConnectionAborted,
                    };
                    return unknown(kind, "the connection broke".into(), Some(Box::new(e)));
                }
                return Next::Fail(e);
            }
            Failure::Timeout(t) => {
                node.count_error();
                if !standby {
                    return unknown(
                        io::ErrorKind::TimedOut,
                        format!("statement timed out after {t:?}"),
                        None,
                    );
                }
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
        if standby && !yielded && retries_left {
            node.retried();
            Next::Retry
        } else {
            Next::Fail(error)
        }
    }

    /// The attempt loop behind every routed statement: route, take a connection (a session
    /// decides where its reads may go), run `op` on it, and after a failure run a read again
    /// elsewhere or a refused "read" once on the primary (see
    /// [`after_failure`](Self::after_failure)).
    fn attempts<'e, O: Op<DB>>(
        self: Arc<Self>,
        query: Routed<DB>,
        via: Via,
        op: O,
    ) -> BoxStream<'e, Result<O::Item, sqlx::Error>> {
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
                let write = match (&via.session, on_replica) {
                    (Some(session), false) => Some(PendingWrite::new(&self, session, false)),
                    _ => None,
                };
                let ((index, node, conn, busy), reconcile) = if on_replica {
                    self.acquire_reader(&mut tried, via.session.as_deref()).await?
                } else {
                    (self.acquire_writer().await?, false)
                };
                let mut attempt = Attempt {
                    conn: Some(conn),
                    write: write.map(|mut w| {
                        w.sent = true;
                        w
                    }),
                };
                // Watch for the node leaving the rotation only on a replica read: a read that
                // fell back to the writer, or a write, runs to its end.
                let watch = on_replica && node.serves_reads();
                let standby = on_replica && node.is_standby();
                tracing::Span::current().record("node", node.name.as_str());
                let mut yielded = false;
                let mut failure = None;
                {
                    let guard = Guard::new(&self, &node, watch);
                    tokio::pin!(guard);
                    let mut results = op.run(attempt.conn(), query);
                    loop {
                        match guard.as_mut().next(results.next()).await {
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
                // The bookkeeping after a statement is one light query on its connection, bounded
                // like a probe: a node that stalls now must not hold the call.
                let bound = self.cluster.settings.health_check_timeout;
                match &failure {
                    None | Some(Failure::Db(_)) if attempt.write.is_none() => {}
                    None | Some(Failure::Db(_)) => {
                        if tokio::time::timeout(bound, attempt.record()).await.is_err() {
                            attempt.abandon();
                        }
                    }
                    Some(_) => attempt.abandon(),
                }
                let Some(failure) = failure else {
                    if reconcile && let Some(session) = &via.session {
                        let check = self.reconcile(attempt.conn(), session);
                        if tokio::time::timeout(bound, check).await.is_err() {
                            attempt.abandon();
                        }
                    }
                    busy.done();
                    break;
                };
                drop(busy);
                drop(attempt);
                let retries_left = again.is_some() && attempts < self.cluster.settings.max_read_retries;
                match self.after_failure(&node, failure, standby, yielded, retries_left) {
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
            inner: stream,
            span,
        }
        .boxed()
    }

    fn fetch_many<'e>(self: Arc<Self>, query: Routed<DB>, via: Via) -> ResultStream<'e, DB> {
        self.attempts(query, via, Many)
    }

    fn fetch_optional<'e>(
        self: Arc<Self>,
        query: Routed<DB>,
        via: Via,
    ) -> BoxFuture<'e, Result<Option<DB::Row>, sqlx::Error>> {
        let mut results = self.attempts(query, via, Optional);
        async move {
            // Polled to its end (one item), so a session write is recorded before we return.
            let mut row = None;
            while let Some(item) = results.next().await {
                row = item?;
            }
            Ok(row)
        }
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
                self.acquire_reader(&mut Vec::new(), None).await?.0
            } else {
                self.acquire_writer().await?
            };
            conn.prepare_with(sql, parameters)
                .await
                .inspect_err(|e| self.cluster.report(&node, e))
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
            conn.describe(sql)
                .await
                .inspect_err(|e| self.cluster.report(&node, e))
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
