//! The one attempt loop behind every routed statement: route → consistency gate → balance →
//! acquire → run → classify the outcome (retry a read elsewhere, run a refused "read" once on
//! the primary, report "may have committed").

use std::io;
use std::sync::Arc;

use either::Either;
use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use sqlx::{Database, Describe, Executor, SqlStr};

use super::acquire::Checkout;
use super::guard::{Failure, Guard};
use super::journal::{JournalEntry, ReadChoice};
use super::record::{Attempt, PendingWrite};
use super::routed::Routed;
use super::shared::Shared;
use crate::backend::Backend;
use crate::causal::SessionState;
use crate::error::OutcomeUnknown;
use crate::health;
use crate::node::Node;
use crate::route::{Route, Target, fingerprint};

/// The stream of results `Executor::fetch_many` returns.
pub(super) type ResultStream<'e, DB> = BoxStream<
    'e,
    Result<Either<<DB as Database>::QueryResult, <DB as Database>::Row>, sqlx::Error>,
>;

/// The span of one routed call, named and attributed by OpenTelemetry's database
/// conventions (`otel.name` is the operation, `otel.kind` client; `db.system.name`,
/// `db.operation.name`; once a connection is checked out `db.namespace`, `server.address`,
/// `server.port`) plus partypool's own: the route's target and reason, the node's name
/// (never its URL) and role, the consistency decision, retries and the misroute fallback.
/// A failure sets `error.type`, `db.response.status_code` (the SQLSTATE) and
/// `otel.status_code`. Never the statement's text or values.
///
/// Without a subscriber that wants it, no span at all (`Span::none()`): a disabled span still
/// carries its metadata for `log` compatibility, and entering it on every poll and recording
/// into it cost a tenth of what partypool adds to a statement (callgrind,
/// `checks/examples/statement_cost.rs`).
fn call_span<DB: Backend>(route: Route, sql: &str) -> tracing::Span {
    if !tracing::enabled!(target: "partypool", tracing::Level::DEBUG) {
        return tracing::Span::none();
    }
    let operation = crate::telemetry::operation_name(sql);
    let span = tracing::debug_span!(
        target: "partypool",
        "partypool.query",
        otel.name = operation.as_deref().unwrap_or(DB::OTEL_SYSTEM),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        db.system.name = DB::OTEL_SYSTEM,
        db.operation.name = operation.as_deref(),
        db.namespace = tracing::field::Empty,
        db.response.status_code = tracing::field::Empty,
        server.address = tracing::field::Empty,
        server.port = tracing::field::Empty,
        error.type = tracing::field::Empty,
        partypool.route.target = %route.target,
        partypool.route.reason = route.reason,
        partypool.node.name = tracing::field::Empty,
        partypool.node.role = tracing::field::Empty,
        partypool.read_choice = tracing::field::Empty,
        partypool.retries = tracing::field::Empty,
        partypool.misroute = tracing::field::Empty,
    );
    if span.is_disabled() {
        tracing::Span::none()
    } else {
        span
    }
}

/// Records the node a call's attempt runs on into its span (none when no subscriber wants
/// it: then nothing, and never into the application's span that is current around it).
fn record_node<DB: Backend>(
    span: &tracing::Span,
    node: &Node<DB>,
    standby: bool,
    choice: ReadChoice,
) {
    if span.is_none() {
        return;
    }
    span.record("partypool.node.name", node.name.as_str());
    span.record(
        "partypool.node.role",
        if standby { "replica" } else { "writer" },
    );
    span.record("partypool.read_choice", choice.as_str());
    if let Some(namespace) = &node.otel.namespace {
        span.record("db.namespace", namespace.as_str());
    }
    if let Some(address) = &node.otel.address {
        span.record("server.address", address.as_str());
    }
    if let Some(port) = node.otel.port {
        span.record("server.port", port);
    }
}

/// Records a call's failure into its span.
fn record_failure(span: &tracing::Span, e: &sqlx::Error) {
    if span.is_none() {
        return;
    }
    span.record("otel.status_code", "ERROR");
    span.record("error.type", crate::telemetry::error_type(e).as_str());
    if let Some(code) = e.as_database_error().and_then(|d| d.code()) {
        span.record("db.response.status_code", code.as_ref());
    }
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
    pub(super) force: Option<Target>,
    pub(super) session: Option<Arc<SessionState>>,
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
    /// The driver's results on one connection (unboxed where the driver's own future is
    /// already boxed: one allocation fewer per statement).
    type Results<'c>: futures_core::Stream<Item = Result<Self::Item, sqlx::Error>>
        + Send
        + Unpin
        + 'c;

    fn run<'c>(self, conn: &'c mut DB::Connection, query: Routed<DB>) -> Self::Results<'c>
    where
        for<'x> &'x mut DB::Connection: Executor<'x, Database = DB>;
}

/// `Executor::fetch_many`: every result as it comes.
#[derive(Clone, Copy)]
struct Many;

impl<DB: Backend> Op<DB> for Many {
    type Item = Either<DB::QueryResult, DB::Row>;
    type Results<'c> = BoxStream<'c, Result<Self::Item, sqlx::Error>>;

    fn run<'c>(self, conn: &'c mut DB::Connection, query: Routed<DB>) -> Self::Results<'c>
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
    type Results<'c> = futures_util::stream::Once<BoxFuture<'c, Result<Self::Item, sqlx::Error>>>;

    fn run<'c>(self, conn: &'c mut DB::Connection, query: Routed<DB>) -> Self::Results<'c>
    where
        for<'x> &'x mut DB::Connection: Executor<'x, Database = DB>,
    {
        futures_util::stream::once(conn.fetch_optional(query))
    }
}

impl<DB: Backend> Shared<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    /// Where `sql` goes, and whether it is a read whatever a hint or the executor's target
    /// says (see [`Router::decide_read`](crate::route::Router)).
    fn route(&self, sql: &str, force: Option<Target>) -> (Route, bool) {
        let (decision, read) = self.router.decide_read(sql, force);
        let route = decision.route();
        tracing::trace!(target = %route.target, reason = route.reason, "routed");
        (route, read)
    }

    fn misrouted(&self, span: &tracing::Span, node: &Node<DB>, sql: &SqlStr, e: &sqlx::Error) {
        node.misrouted();
        span.record("partypool.misroute", true);
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
        self: &Arc<Self>,
        index: usize,
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
                health::report(&self.cluster, index, &e);
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
    ) -> impl futures_core::Stream<Item = Result<O::Item, sqlx::Error>> + Send + 'e {
        // A read sent to the primary on purpose (`on_primary`, a hint) is still a read
        // (`read_like`): a stale cached plan is prepared again there too.
        let (route, reads) = self.route(query.sql.as_str(), via.force);
        let read = route.target == Target::Replica;
        let read_like = read || reads;
        let span = call_span::<DB>(route, query.sql.as_str());
        // Recorded into by the attempts (a clone: `Span::none()` when disabled, so nothing
        // lands in the application's span, which is the current one around ours).
        let ours = span.clone();
        // Kept for the journal only while one is open.
        let journal_sql = self
            .journals
            .recording()
            .then(|| query.sql.as_str().to_owned());
        let stream = async_stream::try_stream! {
            let mut tried = Vec::new();
            let mut attempts = 0;
            let mut misrouted = false;
            let mut replans = 0;
            let mut pending = Some((query, read));
            while let Some((query, on_replica)) = pending.take() {
                let mut again = if on_replica || read_like { query.try_clone() } else { None };
                // A write through a session: until its position is recorded, the session
                // reads on the primary.
                let write = match (&via.session, on_replica) {
                    (Some(session), false) => Some(PendingWrite::new(&self, session, false)),
                    _ => None,
                };
                let (checkout, reconcile) = if on_replica {
                    self.acquire_reader(&mut tried, via.session.as_deref()).await?
                } else {
                    let mut checkout = self.acquire_writer().await?;
                    // Holding its connection, before anything is sent: reads that start from
                    // now on need a primary position fetched after it.
                    self.wrote();
                    checkout.writable().await?;
                    (checkout, false)
                };
                // How this attempt is watched and judged, from the view it was chosen in:
                // watched for the node going away only on a replica read (a read that fell
                // back to the writer, or a write, runs to its end).
                let watch = on_replica && checkout.serves_reads;
                let standby = on_replica && checkout.standby;
                let Checkout { index, node, conn, busy, choice, reader, .. } = checkout;
                let note = |ok: bool| {
                    if let Some(sql) = &journal_sql {
                        self.journals.record(JournalEntry {
                            sql: sql.clone(),
                            target: route.target,
                            reason: route.reason,
                            node: node.name.clone(),
                            on_replica: standby,
                            choice,
                            retries: attempts,
                            misrouted,
                            ok,
                        });
                    }
                };
                let mut attempt = Attempt {
                    conn: Some(conn),
                    reader,
                    write: write.map(|mut w| {
                        w.sent = true;
                        w
                    }),
                };
                record_node(&ours, &node, standby, choice);
                let mut yielded = false;
                let mut failure = None;
                {
                    let guard = Guard::new(&self, index, &node, watch);
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
                // A write has its outcome (or failed): reads from now on need a position
                // fetched after this (see `HighWater`).
                if !on_replica {
                    self.wrote();
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
                // A read whose cached plan a schema change invalidated (nothing ran): drop the
                // connection's cached statements and run it again, on this node or another.
                // Each time fixes one connection for good, and the next try may meet another
                // that prepared it before the change: bounded by the connections there are.
                if let (Some(Failure::Db(e)), true) =
                    (&failure, read_like && !yielded && replans <= self.config.max_connections)
                    && DB::is_stale_plan(e)
                    && let Some(q) = again.take()
                {
                    node.replanned();
                    replans += 1;
                    let bound = self.cluster.settings.health_check_timeout;
                    let cleared = tokio::time::timeout(
                        bound,
                        DB::clear_statements(attempt.conn()),
                    )
                    .await;
                    if !matches!(cleared, Ok(Ok(()))) {
                        attempt.abandon();
                    }
                    drop(busy);
                    drop(attempt);
                    pending = Some((q, on_replica));
                    continue;
                }
                let Some(failure) = failure else {
                    if reconcile && let Some(session) = &via.session {
                        let check = self.reconcile(attempt.conn(), session);
                        if tokio::time::timeout(bound, check).await.is_err() {
                            attempt.abandon();
                        }
                    }
                    busy.done();
                    note(true);
                    break;
                };
                drop(busy);
                drop(attempt);
                let retries_left = again.is_some() && attempts < self.cluster.settings.max_read_retries;
                match self.after_failure(index, &node, failure, standby, yielded, retries_left) {
                    Next::Retry => {
                        tried.push(index);
                        attempts += 1;
                        ours.record("partypool.retries", attempts);
                        pending = again.map(|q| (q, true));
                    }
                    Next::Misroute(e) => match again {
                        Some(q) => {
                            self.misrouted(&ours, &node, &q.sql, &e);
                            misrouted = true;
                            pending = Some((q, false));
                        }
                        None => {
                            note(false);
                            record_failure(&ours, &e);
                            Err(e)?
                        }
                    },
                    Next::Fail(e) => {
                        note(false);
                        record_failure(&ours, &e);
                        Err(e)?
                    }
                }
            }
        };
        InSpan {
            inner: stream,
            span,
        }
    }

    pub(super) fn fetch_many<'e>(
        self: Arc<Self>,
        query: Routed<DB>,
        via: Via,
    ) -> ResultStream<'e, DB> {
        self.attempts(query, via, Many).boxed()
    }

    pub(super) fn fetch_optional<'e>(
        self: Arc<Self>,
        query: Routed<DB>,
        via: Via,
    ) -> BoxFuture<'e, Result<Option<DB::Row>, sqlx::Error>> {
        let mut results = self.attempts(query, via, Optional).boxed();
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

    pub(super) fn prepare_with<'e>(
        self: Arc<Self>,
        sql: SqlStr,
        parameters: &'e [DB::TypeInfo],
        via: Via,
    ) -> BoxFuture<'e, Result<DB::Statement, sqlx::Error>> {
        // A prepared statement is metadata plus SQL; sqlx prepares it again on whichever
        // connection later runs it, so it is routed again at that point.
        let (route, _) = self.route(sql.as_str(), via.force);
        async move {
            let Checkout {
                index,
                mut conn,
                busy: _busy,
                ..
            } = if route.target == Target::Replica {
                self.acquire_reader(&mut Vec::new(), None).await?.0
            } else {
                self.acquire_writer().await?
            };
            conn.prepare_with(sql, parameters)
                .await
                .inspect_err(|e| health::report(&self.cluster, index, e))
        }
        .boxed()
    }

    /// Used by the `query!` macros at compile time: always the primary, whose schema is
    /// never behind.
    pub(super) fn describe<'e>(
        self: Arc<Self>,
        sql: SqlStr,
    ) -> BoxFuture<'e, Result<Describe<DB>, sqlx::Error>> {
        async move {
            let Checkout {
                index,
                mut conn,
                busy: _busy,
                ..
            } = self.acquire_writer().await?;
            conn.describe(sql)
                .await
                .inspect_err(|e| health::report(&self.cluster, index, e))
        }
        .boxed()
    }
}
