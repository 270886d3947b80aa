//! [`ReplicaPool`]: one handle over a write primary and its read replicas.
//!
//! `&ReplicaPool` is a [`sqlx::Executor`], so everything that takes `&PgPool` takes
//! `&ReplicaPool<Postgres>`: `sqlx::query(..).fetch_all(&pool)`, `query_as`, `query_scalar`,
//! the `query!` macros. Each statement is classified by [`route`](crate::route()): reads go to
//! the next healthy replica, everything else to the primary.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use partypool::PgReplicaPool;
//!
//! let pool = PgReplicaPool::builder()
//!     .primary("postgres://app@db-primary/app")
//!     .replica("postgres://app@db-replica-1/app")
//!     .replica("postgres://app@db-replica-2/app")
//!     .connect()
//!     .await?;
//!
//! // A replica:
//! let names: Vec<String> = sqlx::query_scalar("SELECT name FROM users").fetch_all(&pool).await?;
//! // The primary:
//! sqlx::query("UPDATE users SET status = $1 WHERE id = $2")
//!     .bind("active")
//!     .bind(1_i64)
//!     .execute(&pool)
//!     .await?;
//! // A transaction: always the primary, every statement in it too.
//! let mut tx = pool.begin().await?;
//! sqlx::query("SELECT 1").execute(&mut *tx).await?;
//! tx.commit().await?;
//!
//! println!("{}", pool.status());
//! pool.close().await;
//! # Ok(()) }
//! ```

mod acquire;
mod attempt;
mod builder;
mod connect;
mod executor;
mod guard;
mod journal;
mod membership;
mod record;
mod rotate;
mod routed;
mod scope;
mod session;
mod shared;

use std::fmt;
use std::sync::Arc;

use sqlx::pool::PoolConnection;
use sqlx::{Acquire, Pool, SqlSafeStr, Transaction};

pub use builder::{Builder, ConnectOptionsOf};
pub use executor::Targeted;
pub use journal::{Journal, JournalEntry, ReadChoice};
pub use session::Session;

use crate::backend::Backend;
use crate::causal::CausalToken;
use crate::config::Config;
use crate::error::Error;
use crate::health;
use crate::node::Node;
use crate::roles::Role;
use crate::status::Status;
use builder::Hooks;
use shared::Shared;

/// A primary and its read replicas behind one [`sqlx::Executor`].
///
/// Cloning is cheap (one `Arc`) and every clone shares the same nodes, counters and health
/// task. The health task stops when [`close`](Self::close) is called or the last clone is
/// dropped.
///
/// See the [module docs](crate::pool) for a tour.
pub struct ReplicaPool<DB: Backend> {
    pub(crate) shared: Arc<Shared<DB>>,
}

impl<DB: Backend> Clone for ReplicaPool<DB> {
    fn clone(&self) -> Self {
        ReplicaPool {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<DB: Backend> ReplicaPool<DB> {
    /// Connects to a primary and its replicas (the original package's `NewReplicaManager`).
    ///
    /// Fails when a URL is invalid or the primary does not answer within
    /// `config.acquire_timeout`. A replica that does not answer does not fail the call: it
    /// starts unhealthy, reads skip it, and the health task keeps probing it.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), partypool::Error> {
    /// use partypool::{Config, PgReplicaPool};
    /// let pool = PgReplicaPool::connect(
    ///     "postgres://app@db-primary/app",
    ///     &["postgres://app@db-replica-1/app", "postgres://app@db-replica-2/app"],
    ///     Config::default(),
    /// )
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(
        primary_url: &str,
        replica_urls: &[&str],
        config: Config,
    ) -> Result<Self, Error> {
        let mut b = Builder::new().primary(primary_url).config(config);
        for url in replica_urls {
            b = b.replica(*url);
        }
        b.connect().await
    }

    pub(crate) async fn connect_with(
        members: Vec<crate::topology::Member>,
        config: Config,
        hooks: Hooks<DB>,
    ) -> Result<Self, Error> {
        let shared = Arc::new(Shared::connect(members, config, hooks).await?);
        membership::spawn_discovery(&shared);
        Ok(ReplicaPool { shared })
    }

    pub(crate) fn connect_lazy_with(
        members: Vec<crate::topology::Member>,
        config: Config,
        hooks: Hooks<DB>,
    ) -> Result<Self, Error> {
        let shared = Arc::new(Shared::connect_lazy(members, config, hooks)?);
        membership::spawn_discovery(&shared);
        Ok(ReplicaPool { shared })
    }

    /// A builder: `.primary(url)`, `.replica(url)` (repeatable), `.config(..)`, `.connect()`.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), partypool::Error> {
    /// let pool = partypool::PgReplicaPool::builder()
    ///     .primary("postgres://app@db-primary/app")
    ///     .replica("postgres://app@db-replica-1/app")
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn builder() -> Builder<DB> {
        Builder::new()
    }

    /// The pool of the node that takes writes (the original package's `GetWriteDB`): the
    /// configured primary, or the promoted replica after a failover (see
    /// [`Config::follow_promotion`]). Use it for work that must run on the primary whatever
    /// it looks like. (A handle: sqlx pools are cheap to clone.)
    pub fn primary(&self) -> Pool<DB> {
        self.shared.cluster.writer().pool.clone()
    }

    /// The next replica's pool by the balancing policy, or the primary's when no replica is
    /// in the rotation (the original package's `GetReadDB`).
    pub fn replica(&self) -> Pool<DB> {
        let (_, node) = self.shared.cluster.reader();
        node.served();
        node.pool.clone()
    }

    /// Drops the cached prepared statements of every idle connection on every node: after a
    /// migration, ahead of the reads that would meet plans it invalidated. (Those reads are
    /// safe anyway: a read failing with "cached plan must not change result type" is prepared
    /// again and run again — see [`NodeStatus::replans`](crate::NodeStatus::replans) — which
    /// also fixes connections that were busy now.) Returns how many connections it cleared.
    ///
    /// ```no_run
    /// # async fn demo(pool: partypool::PgReplicaPool) -> Result<(), sqlx::Error> {
    /// sqlx::query("ALTER TABLE users ADD COLUMN nickname text").execute(&pool).await?;
    /// pool.recycle_all().await;
    /// # Ok(()) }
    /// ```
    pub async fn recycle_all(&self) -> usize {
        let nodes = Arc::clone(&self.shared.cluster.snapshot().nodes);
        let mut cleared = 0;
        for node in nodes.iter() {
            // Taken all at once, so each idle connection is visited once.
            let mut taken = Vec::new();
            for _ in 0..node.pool.num_idle() {
                let Some(conn) = node.pool.try_acquire() else {
                    break;
                };
                node.lending.lend();
                taken.push(conn);
            }
            for conn in &mut taken {
                if DB::clear_statements(conn).await.is_ok() {
                    cleared += 1;
                } else {
                    conn.close_on_drop();
                }
            }
        }
        cleared
    }

    /// Starts recording where each statement runs and why, until the returned [`Journal`]
    /// is dropped: for tests that assert routing ("served by a replica", "nothing on the
    /// primary").
    ///
    /// ```no_run
    /// # async fn demo(pool: partypool::PgReplicaPool) -> Result<(), sqlx::Error> {
    /// let journal = pool.journal();
    /// let _: Vec<(i64,)> = sqlx::query_as("SELECT id FROM users").fetch_all(&pool).await?;
    /// assert_eq!(journal.on_primary(), 0, "{:?}", journal.entries());
    /// # Ok(()) }
    /// ```
    pub fn journal(&self) -> Journal {
        self.shared.journals.open()
    }

    /// Begins a transaction on the primary. Every statement run through it stays on its
    /// connection.
    ///
    /// ```no_run
    /// # async fn demo(pool: partypool::PgReplicaPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = pool.begin().await?;
    /// sqlx::query("INSERT INTO audit (event) VALUES ('login')").execute(&mut *tx).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn begin(&self) -> Result<Transaction<'static, DB>, Error> {
        if let Some(session) = scope::current(&self.shared) {
            session.began_transaction();
        }
        self.begin_unscoped().await
    }

    /// [`begin`](Self::begin) without looking at the task's session scope.
    pub(crate) async fn begin_unscoped(&self) -> Result<Transaction<'static, DB>, Error> {
        self.begin_on_writer(None).await
    }

    /// [`begin_with`](Self::begin_with) without looking at the task's session scope.
    pub(crate) async fn begin_unscoped_with(
        &self,
        statement: impl SqlSafeStr,
    ) -> Result<Transaction<'static, DB>, Error> {
        self.begin_on_writer(Some(statement.into_sql_str())).await
    }

    /// A transaction on the writer, begun with `statement` (else `BEGIN`). Its commit is the
    /// driver's: counted as a write, and held until its connection comes back (see
    /// `HighWater`). On a strict replica that took the writes, the connection is made
    /// writable first.
    async fn begin_on_writer(
        &self,
        statement: Option<sqlx::SqlStr>,
    ) -> Result<Transaction<'static, DB>, Error> {
        let (index, writer) = self.writable()?;
        writer.served();
        let tx = async {
            let mut conn = writer.acquire().await?;
            if writer.strict {
                DB::set_session(&mut conn, DB::READ_WRITE_SESSION).await?;
            }
            Transaction::begin(conn, statement).await
        }
        .await
        .map_err(|e| self.node_error(index, &writer, e))?;
        writer.lending.hold();
        self.shared.wrote();
        Ok(tx)
    }

    /// Begins a transaction on the primary with a custom statement, e.g.
    /// `BEGIN ISOLATION LEVEL SERIALIZABLE`.
    ///
    /// ```no_run
    /// # async fn demo(pool: partypool::PgReplicaPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let tx = pool.begin_with("BEGIN ISOLATION LEVEL SERIALIZABLE").await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn begin_with(
        &self,
        statement: impl SqlSafeStr,
    ) -> Result<Transaction<'static, DB>, Error> {
        if let Some(session) = scope::current(&self.shared) {
            session.began_transaction();
        }
        self.begin_on_writer(Some(statement.into_sql_str())).await
    }

    /// Begins a read-only transaction on a replica (the primary when none is in the
    /// rotation): several reads that see one consistent snapshot, without loading the
    /// primary. Every statement in it stays on its connection; a write in it fails.
    ///
    /// ```no_run
    /// # async fn demo(pool: partypool::PgReplicaPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = pool.begin_read_only().await?;
    /// let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders").fetch_one(&mut *tx).await?;
    /// let revenue: Option<i64> = sqlx::query_scalar("SELECT sum(total) FROM orders").fetch_one(&mut *tx).await?;
    /// tx.commit().await?;
    /// # let _ = (orders, revenue); Ok(()) }
    /// ```
    pub async fn begin_read_only(&self) -> Result<Transaction<'static, DB>, Error> {
        self.check_open()?;
        // Chosen like any read: a replica that has what this process (or the request's
        // session) wrote, else the primary.
        let session = scope::current(&self.shared);
        let (checkout, _) = self
            .shared
            .acquire_reader(&mut Vec::new(), session.as_deref())
            .await
            .map_err(|e| match e {
                sqlx::Error::PoolClosed => Error::Closed {
                    url: self.shared.cluster.first().url.clone(),
                },
                e => Error::Node {
                    node: "the read's node".into(),
                    url: String::new(),
                    reason: e.to_string(),
                    source: e,
                },
            })?;
        let acquire::Checkout {
            index, node, conn, ..
        } = checkout;
        // On a simulated replica of exported snapshots the connection is in its snapshot's
        // read-only transaction already: this one nests in it. (Where snapshots cannot be
        // exported, it reads the present, read-only.)
        let statement = match node.simulated {
            Some(_) if DB::EXPORTS_SNAPSHOTS => None,
            _ => Some(DB::BEGIN_READ_ONLY.into_sql_str()),
        };
        let tx = Transaction::begin(conn, statement)
            .await
            .map_err(|e| self.node_error(index, &node, e))?;
        // Handed to the application: held until it comes back (it was counted as
        // partypool's own at checkout).
        node.lending.hold();
        node.lending.returned();
        Ok(tx)
    }

    /// `Error::Closed` after [`close`](Self::close).
    fn check_open(&self) -> Result<(), Error> {
        if self.shared.is_closed() {
            return Err(Error::Closed {
                url: self.shared.cluster.first().url.clone(),
            });
        }
        Ok(())
    }

    /// The node that takes writes, unless writes must fail at once.
    fn writable(&self) -> Result<(usize, Arc<Node<DB>>), Error> {
        self.check_open()?;
        let snapshot = self.shared.cluster.snapshot();
        if let Some(reason) = &snapshot.view.block {
            return Err(Error::NoPrimary {
                reason: reason.clone(),
            });
        }
        Ok((snapshot.view.writer, Arc::clone(snapshot.writer())))
    }

    /// Prepares a statement (the original package's `Prepare`): its parameter and column
    /// types, described by the node the SQL routes to.
    ///
    /// A prepared statement is not tied to a connection or a node: sqlx prepares it again
    /// (once, then cached) on whichever connection runs it, and running it through the pool
    /// routes it like any other statement. Errors are the driver's, like every statement's.
    ///
    /// ```no_run
    /// # async fn demo(pool: partypool::PgReplicaPool) -> Result<(), sqlx::Error> {
    /// use sqlx::Statement;
    /// let stmt = pool.prepare("SELECT name FROM users WHERE id = $1").await?;
    /// for id in 1..=3_i64 {
    ///     let name: (String,) = stmt.query_as().bind(id).fetch_one(&pool).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn prepare(&self, sql: impl SqlSafeStr) -> Result<DB::Statement, sqlx::Error>
    where
        for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    {
        sqlx::Executor::prepare(self, sql.into_sql_str()).await
    }

    /// A read-your-writes session: an executor like the pool whose reads always see its own
    /// earlier writes (see [`consistency`](crate::consistency)). Make one per request or user
    /// interaction; carry [`Session::token`] to the next request.
    ///
    /// ```no_run
    /// # async fn demo(pool: partypool::PgReplicaPool) -> Result<(), sqlx::Error> {
    /// let session = pool.session();
    /// sqlx::query("INSERT INTO notes (body) VALUES ('hi')").execute(&session).await?;
    /// // A replica that has the note, or the primary:
    /// let n: i64 = sqlx::query_scalar("SELECT count(*) FROM notes").fetch_one(&session).await?;
    /// # let _ = n; Ok(()) }
    /// ```
    pub fn session(&self) -> Session<DB> {
        Session::new(self.clone(), None, true)
    }

    /// A session that continues from a token another request (or process) handed over.
    ///
    /// Fails with [`Error::ForeignToken`] when the token belongs to another cluster, and
    /// with [`Error::WrongTokenKind`] when it is of a kind this pool does not use (a time
    /// token on a pool that tracks positions, or the reverse). A pending token
    /// ([`TokenKind::Pending`](crate::TokenKind::Pending)) is accepted where positions are.
    ///
    /// The token is trusted as the application's own: a pending token keeps its holder's
    /// reads on the primary until the write it stands for has settled (up to the settle
    /// window). Tokens straight from clients belong in the tower layer or the actix-web
    /// middleware, which verify signed tokens and bound what an unsigned one can cost.
    pub fn session_with(&self, token: CausalToken) -> Result<Session<DB>, Error> {
        self.session_from(token, true)
    }

    /// [`session_with`](Self::session_with), saying whether the token is trusted.
    pub(crate) fn session_from(
        &self,
        token: CausalToken,
        trusted: bool,
    ) -> Result<Session<DB>, Error> {
        use crate::error::TokenKind;
        let expected = self.shared.cluster.cluster_id().unwrap_or(0);
        if token.cluster() != expected {
            return Err(Error::ForeignToken {
                expected,
                found: token.cluster(),
            });
        }
        let wanted = self.shared.rules().token_kind();
        let fits = match (wanted, token.kind()) {
            // A pending token fits every pool that tracks positions.
            (Some(TokenKind::Position | TokenKind::Gtid), TokenKind::Pending) => true,
            (Some(w), k) => w == k,
            (None, _) => false,
        };
        if !fits {
            return Err(Error::WrongTokenKind {
                expected: wanted.map_or_else(|| "no tokens".to_owned(), |k| k.to_string()),
                found: token.kind(),
            });
        }
        Ok(Session::new(self.clone(), Some(token), trusted))
    }

    /// Adds a node of discovered role while the pool runs: it is probed at once (its
    /// identity checked), serves reads while it is a standby, and may take the writes if
    /// it is promoted (the usual rules of [`Config::follow_promotion`]). Safe while
    /// statements run. Returns its name in [`status`](Self::status) (its `host:port`).
    ///
    /// ```no_run
    /// # async fn demo(pool: partypool::PgReplicaPool) -> Result<(), partypool::Error> {
    /// let name = pool.add_node("postgres://app@db-4/app").await?;
    /// assert!(pool.status().node(&name).is_some());
    /// # Ok(()) }
    /// ```
    pub async fn add_node(&self, url: &str) -> Result<String, Error> {
        self.check_open()?;
        self.shared.add_node(url, Role::Discovered).await
    }

    /// Adds a declared replica while the pool runs (named `replica-N`); see
    /// [`add_node`](Self::add_node).
    pub async fn add_replica(&self, url: &str) -> Result<String, Error> {
        self.check_open()?;
        self.shared.add_node(url, Role::Replica).await
    }

    /// Removes a node while the pool runs: it takes no new statement at once, the ones
    /// running on it finish, then its connections close. The node taking the writes can be
    /// removed only when another node is writable (writes then move there). Fails with
    /// [`Error::Membership`] for an unknown name.
    ///
    /// ```no_run
    /// # async fn demo(pool: partypool::PgReplicaPool) -> Result<(), partypool::Error> {
    /// pool.remove_node("replica-2").await?;
    /// # Ok(()) }
    /// ```
    pub async fn remove_node(&self, name: &str) -> Result<(), Error> {
        self.check_open()?;
        self.shared.remove_node(name).await
    }

    /// A snapshot of every node: role, health, counters, last error. Its `Display` is a table.
    pub fn status(&self) -> Status {
        let cluster = &self.shared.cluster;
        Status {
            nodes: cluster.status(),
            closed: self.shared.is_closed(),
            health_round: cluster.last_round(),
        }
    }

    /// Stops the health task and closes every node's pool, waiting for checked-out
    /// connections to come back (as [`sqlx::Pool::close`] does). Later statements fail with
    /// [`sqlx::Error::PoolClosed`]; partypool's own methods with [`Error::Closed`].
    pub async fn close(&self) {
        self.shared.close().await;
    }

    /// Whether [`close`](Self::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    fn node_error(&self, index: usize, node: &Arc<Node<DB>>, source: sqlx::Error) -> Error {
        if matches!(source, sqlx::Error::PoolClosed) {
            return Error::Closed {
                url: node.url.clone(),
            };
        }
        health::report(&self.shared.cluster, index, &source);
        Error::Node {
            node: node.name.clone(),
            url: node.url.clone(),
            reason: node.scrub(&source.to_string()),
            source,
        }
    }
}

impl<DB: Backend> fmt::Debug for ReplicaPool<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicaPool")
            .field("nodes", &&self.shared.cluster.snapshot().nodes[..])
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Connections and transactions from `&ReplicaPool` come from the primary.
impl<'a, DB: Backend> Acquire<'a> for &'_ ReplicaPool<DB> {
    type Database = DB;
    type Connection = PoolConnection<DB>;

    fn acquire(
        self,
    ) -> futures_core::future::BoxFuture<'static, Result<Self::Connection, sqlx::Error>> {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let mut checkout = shared.acquire_writer().await?;
            checkout.writable().await?;
            // Handed over: held (it was counted as partypool's own at checkout).
            checkout.node.lending.hold();
            checkout.node.lending.returned();
            shared.wrote();
            Ok(checkout.conn)
        })
    }

    fn begin(
        self,
    ) -> futures_core::future::BoxFuture<'a, Result<Transaction<'a, DB>, sqlx::Error>> {
        let pool = self.clone();
        Box::pin(async move { Ok(pool.begin().await?) })
    }
}
