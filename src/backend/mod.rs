//! What differs per database: the health probe, the dialect, and which errors mean "this node
//! is unavailable".
//!
//! [`Backend`] is implemented for each sqlx database partypool supports (behind the
//! `postgres`, `mysql` and `sqlite` features) and is sealed: the set of databases is
//! partypool's to maintain.

use std::future::Future;

use sqlx::Database;

use crate::positions::GtidSet;
pub use crate::positions::LogPosition;
use crate::route::Dialect;

mod sealed {
    pub trait Sealed {}
}

/// What one successful health probe learned about a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Probe {
    /// Whether the node is a standby replaying the primary's log (`None` if the backend
    /// cannot tell, e.g. SQLite). On MySQL/MariaDB: it has a replication source, or (when
    /// replication status cannot be read) it is `read_only`.
    pub in_recovery: Option<bool>,
    /// Its log position: the current write position on a primary, the replayed position
    /// on a standby (PostgreSQL WAL LSN in bytes; for MariaDB the [`GtidSet::total`] of
    /// [`gtids`](Self::gtids)).
    pub position: Option<u64>,
    /// On a standby, the time since the last transaction it replayed was committed
    /// (PostgreSQL), or how far it is behind (`Seconds_Behind_Master`, MariaDB).
    pub replay_age: Option<std::time::Duration>,
    /// The timeline (PostgreSQL), which a promotion increments.
    pub timeline: Option<u64>,
    /// The cluster's identity (PostgreSQL's system identifier), the same on every node.
    pub cluster_id: Option<u64>,
    /// MariaDB: `@@gtid_binlog_pos` on a primary, `@@gtid_slave_pos` on a replica.
    pub gtids: Option<GtidSet>,
    /// MySQL/MariaDB: the state of its replication threads, or why it could not be read.
    pub replication: Option<Replication>,
}

/// A MySQL/MariaDB node's replication as its probe saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Replication {
    /// One per replication source (`SHOW ALL SLAVES STATUS`); empty on a primary.
    pub channels: Vec<Channel>,
    /// Set when replication status could not be read (the probe's user lacks the
    /// `SLAVE MONITOR` privilege): roles then come from `@@read_only` and lag from GTID
    /// positions alone.
    pub unavailable: Option<String>,
}

/// One replication source of a MySQL/MariaDB replica.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Channel {
    /// The connection name (empty for the default one).
    pub name: String,
    /// `host:port` of the source.
    pub source: String,
    /// `Slave_IO_Running`: `Yes`, `No` or `Connecting`.
    pub io_running: String,
    /// `Slave_SQL_Running`: `Yes` or `No`.
    pub sql_running: String,
    /// `Seconds_Behind_Master` (`None` while the SQL thread is stopped).
    pub seconds_behind: Option<u64>,
    /// The IO thread's last error, `errno: message`.
    pub last_io_error: Option<String>,
    /// The SQL thread's last error, `errno: message`.
    pub last_sql_error: Option<String>,
}

impl Channel {
    /// A replication thread stopped with an error: the replica will not catch up by itself.
    /// (An IO thread still `Connecting` to a source that is down is not broken: lag decides.)
    pub fn is_broken(&self) -> bool {
        (self.sql_running == "No" && self.last_sql_error.is_some())
            || (self.io_running == "No" && self.last_io_error.is_some())
    }

    /// A replication thread runs (or the IO thread keeps trying to connect).
    pub fn is_running(&self) -> bool {
        matches!(self.io_running.as_str(), "Yes" | "Connecting") || self.sql_running == "Yes"
    }

    /// The error that stopped it, if it is broken.
    fn stopped_by(&self) -> Option<&str> {
        match (&self.last_sql_error, &self.last_io_error) {
            (Some(e), _) if self.sql_running == "No" => Some(e),
            (_, Some(e)) if self.io_running == "No" => Some(e),
            _ => None,
        }
    }
}

impl Replication {
    /// The first broken channel's error, if any.
    pub fn broken(&self) -> Option<String> {
        self.channels.iter().find_map(|c| {
            c.stopped_by()
                .map(|e| format!("replication from {} stopped: {e}", c.source))
        })
    }
}

/// A database partypool can route for. Implemented for sqlx's `Postgres`, `MySql` and
/// `Sqlite`; sealed.
pub trait Backend: Database<Arguments: Clone> + sealed::Sealed {
    /// The SQL dialect the router uses for this database.
    const DIALECT: Dialect;

    /// The primary's default connection limit when [`Config::primary_max_connections`] is
    /// unset (`None`: the same as every node).
    ///
    /// [`Config::primary_max_connections`]: crate::Config::primary_max_connections
    const PRIMARY_MAX_CONNECTIONS: Option<u32> = None;

    /// The port a URL without one means (for DNS discovery).
    const DEFAULT_PORT: u16;

    /// OpenTelemetry's `db.system.name`: `postgresql`, `mysql`, `sqlite`.
    const OTEL_SYSTEM: &'static str;

    /// URL schemes this backend accepts (sqlx itself does not check them).
    const SCHEMES: &'static [&'static str];

    /// How to begin a read-only transaction on a replica.
    const BEGIN_READ_ONLY: &'static str;

    /// Makes every session of a replica's pool read-only ([`Config::strict_replicas`]), so a
    /// write misrouted to a replica that would accept it (a logical replica, write
    /// forwarding) is refused, and the safety net runs it on the primary: the connect options
    /// to use, and a statement to run on each new connection when options cannot say it.
    ///
    /// [`Config::strict_replicas`]: crate::Config::strict_replicas
    fn read_only_sessions(
        options: <Self::Connection as sqlx::Connection>::Options,
    ) -> (
        <Self::Connection as sqlx::Connection>::Options,
        Option<&'static str>,
    ) {
        (options, None)
    }

    /// Undoes [`read_only_sessions`](Self::read_only_sessions) on one connection (a strict
    /// node that now takes the writes). Empty: nothing to undo.
    const READ_WRITE_SESSION: &'static str = "";

    /// Runs one statement of session state (`SET …`) on `conn`.
    fn set_session(
        conn: &mut Self::Connection,
        sql: &'static str,
    ) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send {
        let _ = (conn, sql);
        std::future::ready(Ok(()))
    }

    /// One light query, on one connection, that proves the node answers and tells its role.
    /// `replication_status`: also read replication status where that takes a privilege the
    /// user may lack (MySQL/MariaDB's `SHOW ALL SLAVES STATUS`); the probe reports a denial
    /// in [`Probe::replication`] and is not asked again for a while.
    fn probe(
        conn: &mut Self::Connection,
        replication_status: bool,
    ) -> impl Future<Output = Result<Probe, sqlx::Error>> + Send;

    /// Adjusts a node's URL, already carrying the monitor credential
    /// ([`Builder::monitor_credentials`](crate::Builder::monitor_credentials)), for the
    /// probes' connections.
    fn monitor_url(url: &mut url::Url) {
        let _ = url;
    }

    /// Whether `e` says the node (or the way to it) is unavailable, rather than that the
    /// statement was wrong.
    fn is_unavailable(e: &sqlx::Error) -> bool {
        is_transport_error(e)
    }

    /// What this backend offers for read-your-writes sessions.
    const CAUSAL: crate::positions::CausalSupport;

    /// On the primary, right after a write committed, on the write's own connection: a log
    /// position at or past its commit, and its timeline.
    fn capture_position(
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<Option<LogPosition>, sqlx::Error>> + Send {
        let _ = conn;
        std::future::ready(Ok(None))
    }

    /// On a replica: how far it has replayed the primary's log.
    fn replayed_position(
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<Option<LogPosition>, sqlx::Error>> + Send {
        let _ = conn;
        std::future::ready(Ok(None))
    }

    /// Whether `e` is a read-only replica refusing to write. Such a statement did not run, so
    /// it is safe to run it again on the primary.
    fn is_standby_rejection(e: &sqlx::Error) -> bool;

    /// Whether it can simulate replicas on the primary's server
    /// ([`Builder::simulate_replicas`](crate::Builder::simulate_replicas)).
    const SIMULATES: bool = false;

    /// Whether a held snapshot can be entered from other connections (PostgreSQL's exported
    /// snapshots). Without, reads on a simulated replica run on the connection holding it.
    const EXPORTS_SNAPSHOTS: bool = false;

    /// Simulated replicas: on `conn` (not in a transaction), begins a transaction that holds
    /// a snapshot of the database as it is now and that other connections can enter, and
    /// returns the snapshot's name with the log position it is known to have (every write
    /// acknowledged at or below it is visible in it; `None` when that is uncertain — a
    /// transaction was committing just then). The transaction stays open until rolled back.
    fn hold_snapshot(
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<(String, Option<LogPosition>), sqlx::Error>> + Send {
        let _ = conn;
        std::future::ready(Err(sqlx::Error::Configuration(
            "this database cannot simulate replicas".into(),
        )))
    }

    /// The statement that begins a read-only transaction in the held snapshot `name` (from
    /// [`hold_snapshot`](Self::hold_snapshot)).
    fn enter_snapshot(name: &str) -> String {
        let _ = name;
        Self::BEGIN_READ_ONLY.to_owned()
    }

    /// Whether `e` says a cached prepared statement no longer fits the schema (a column was
    /// added or changed since it was prepared): nothing ran, and preparing it again fixes it.
    fn is_stale_plan(e: &sqlx::Error) -> bool {
        let _ = e;
        false
    }

    /// Drops `conn`'s cached prepared statements (after [`is_stale_plan`](Self::is_stale_plan)).
    fn clear_statements(
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send {
        let _ = conn;
        std::future::ready(Ok(()))
    }

    /// Connect options logging in with a rotated credential
    /// ([`Builder::credentials`](crate::Builder::credentials)): `password`, and `user` when
    /// given. `None`: this database has no passwords (SQLite).
    fn with_credential(
        options: <Self::Connection as sqlx::Connection>::Options,
        user: Option<&str>,
        password: &str,
    ) -> Option<<Self::Connection as sqlx::Connection>::Options> {
        let _ = (options, user, password);
        None
    }

    /// Whether `e` says the server refused the credential (a wrong or expired password).
    fn is_auth_failure(e: &sqlx::Error) -> bool {
        let _ = e;
        false
    }

    /// Whether `e` says the database does not exist on this node (yet): on a replica, a
    /// database just created on the primary that it has not replayed. The node is behind,
    /// not down.
    fn is_missing_database(e: &sqlx::Error) -> bool {
        let _ = e;
        false
    }
}

/// Errors of the transport, the same for every database. Not `PoolTimedOut`: a full pool
/// says nothing about the node (a refused connection that sqlx kept retrying is confirmed by
/// a probe instead).
fn is_transport_error(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed
    )
}

#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
