//! What differs per database: the health probe, the dialect, and which errors mean "this node
//! is unavailable".
//!
//! [`Backend`] is implemented for each sqlx database partypool supports (behind the
//! `postgres`, `mysql` and `sqlite` features) and is sealed: the set of databases is
//! partypool's to maintain.

use std::future::Future;

use sqlx::Database;

use crate::route::Dialect;

mod sealed {
    pub trait Sealed {}
}

/// What one successful health probe learned about a node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Probe {
    /// Whether the node is a standby replaying the primary's log (`None` if the backend
    /// cannot tell, e.g. SQLite).
    pub in_recovery: Option<bool>,
    /// Its log position in bytes: the current write position on a primary, the replayed
    /// position on a standby (PostgreSQL WAL LSN).
    pub position: Option<u64>,
    /// On a standby, the time since the last transaction it replayed was committed.
    pub replay_age: Option<std::time::Duration>,
    /// The timeline (PostgreSQL), which a promotion increments.
    pub timeline: Option<u64>,
    /// The cluster's identity (PostgreSQL's system identifier), the same on every node.
    pub cluster_id: Option<u64>,
}

/// A point in the primary's log, as captured right after a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogPosition {
    /// The position in bytes (PostgreSQL's WAL LSN).
    pub position: u64,
    /// The timeline it is on (PostgreSQL), which a promotion increments.
    pub timeline: Option<u64>,
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

    /// URL schemes this backend accepts (sqlx itself does not check them).
    const SCHEMES: &'static [&'static str];

    /// How to begin a read-only transaction on a replica.
    const BEGIN_READ_ONLY: &'static str;

    /// One light query, on one connection, that proves the node answers and tells its role.
    fn probe(
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<Probe, sqlx::Error>> + Send;

    /// Whether `e` says the node (or the way to it) is unavailable, rather than that the
    /// statement was wrong.
    fn is_unavailable(e: &sqlx::Error) -> bool {
        is_transport_error(e)
    }

    /// What this backend offers for read-your-writes sessions.
    const CAUSAL: crate::consistency::CausalSupport;

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
    ) -> impl Future<Output = Result<Option<u64>, sqlx::Error>> + Send {
        let _ = conn;
        std::future::ready(Ok(None))
    }

    /// Whether `e` is a read-only replica refusing to write. Such a statement did not run, so
    /// it is safe to run it again on the primary.
    fn is_standby_rejection(e: &sqlx::Error) -> bool;
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

#[cfg(feature = "postgres")]
impl sealed::Sealed for sqlx::Postgres {}

#[cfg(feature = "postgres")]
impl Backend for sqlx::Postgres {
    const DIALECT: Dialect = Dialect::Postgres;
    const SCHEMES: &'static [&'static str] = &["postgres", "postgresql"];
    const BEGIN_READ_ONLY: &'static str = "BEGIN READ ONLY";
    const CAUSAL: crate::consistency::CausalSupport = crate::consistency::CausalSupport::Positions;

    /// The WAL *insert* position: past the commit record of every transaction that has
    /// committed, even with `synchronous_commit = off` (where the write position can lag);
    /// and the timeline of the WAL segment it is in.
    async fn capture_position(
        conn: &mut Self::Connection,
    ) -> Result<Option<LogPosition>, sqlx::Error> {
        let (p, tl): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT (l - '0/0'::pg_lsn)::int8, ('x' || substr(pg_walfile_name(l), 1, 8))::bit(32)::int8 \
             FROM pg_current_wal_insert_lsn() AS l",
        )
        .fetch_one(&mut *conn)
        .await?;
        Ok(p.map(|p| LogPosition {
            position: p.max(0) as u64,
            timeline: tl.map(|t| t.max(0) as u64),
        }))
    }

    async fn replayed_position(conn: &mut Self::Connection) -> Result<Option<u64>, sqlx::Error> {
        let p: Option<i64> =
            sqlx::query_scalar("SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8")
                .fetch_one(&mut *conn)
                .await?;
        Ok(p.map(|p| p.max(0) as u64))
    }

    /// One round trip: role, WAL position (current on a primary, replayed on a standby),
    /// time since the last replayed commit, timeline.
    async fn probe(conn: &mut Self::Connection) -> Result<Probe, sqlx::Error> {
        let (in_recovery, position, replay_age, timeline, system): (bool, Option<i64>, Option<f64>, Option<i64>, Option<i64>) =
            sqlx::query_as(
                "SELECT pg_is_in_recovery(), \
                   (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
                         ELSE pg_current_wal_lsn() END - '0/0'::pg_lsn)::int8, \
                   CASE WHEN pg_is_in_recovery() \
                        THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END, \
                   CASE WHEN pg_is_in_recovery() \
                        THEN (SELECT timeline_id FROM pg_control_checkpoint())::int8 \
                        ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int8 END, \
                   (SELECT system_identifier FROM pg_control_system())",
            )
            .fetch_one(&mut *conn)
            .await?;
        Ok(Probe {
            in_recovery: Some(in_recovery),
            position: position.map(|p| p.max(0) as u64),
            replay_age: replay_age
                .filter(|s| s.is_finite())
                .map(|s| std::time::Duration::from_secs_f64(s.max(0.0))),
            timeline: timeline.map(|t| t.max(0) as u64),
            cluster_id: system.map(|s| s as u64),
        })
    }

    /// SQLSTATE 25006 (read-only SQL transaction: "cannot execute … in a read-only
    /// transaction", "… during recovery"), and 0A000 / 55000 / XX000 when the message says
    /// it is because of recovery ("cannot use serializable mode in a hot standby", "cannot
    /// assign OIDs during recovery"), as measured on a PostgreSQL 15 standby.
    fn is_standby_rejection(e: &sqlx::Error) -> bool {
        let Some(db) = e.as_database_error() else {
            return false;
        };
        match db.code().as_deref() {
            Some("25006") => true,
            Some("0A000" | "55000" | "XX000") => {
                let m = db.message();
                m.contains("recovery") || m.contains("hot standby")
            }
            _ => false,
        }
    }

    /// Transport errors, plus SQLSTATE class 08 (connection exception) and 57P
    /// (admin/crash shutdown, "the database system is starting up").
    fn is_unavailable(e: &sqlx::Error) -> bool {
        if let Some(code) = e.as_database_error().and_then(|d| d.code()) {
            return code.starts_with("08") || code.starts_with("57P");
        }
        is_transport_error(e)
    }
}

#[cfg(feature = "mysql")]
impl sealed::Sealed for sqlx::MySql {}

#[cfg(feature = "mysql")]
impl Backend for sqlx::MySql {
    const DIALECT: Dialect = Dialect::MySql;
    const SCHEMES: &'static [&'static str] = &["mysql", "mariadb"];
    const BEGIN_READ_ONLY: &'static str = "START TRANSACTION READ ONLY";
    const CAUSAL: crate::consistency::CausalSupport =
        crate::consistency::CausalSupport::Unsupported;

    async fn probe(conn: &mut Self::Connection) -> Result<Probe, sqlx::Error> {
        // A replica is a node replicating from another: `@@read_only` is the closest cheap
        // signal both MySQL and MariaDB give.
        let read_only: i64 = sqlx::query_scalar("SELECT @@global.read_only")
            .fetch_one(&mut *conn)
            .await?;
        Ok(Probe {
            in_recovery: Some(read_only != 0),
            ..Probe::default()
        })
    }

    /// Errors 1290 (`--read-only` / `--super-read-only`), 1792 (read-only transaction) and
    /// 1836 (read-only mode).
    fn is_standby_rejection(e: &sqlx::Error) -> bool {
        e.as_database_error()
            .and_then(|d| d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
            .is_some_and(|m| matches!(m.number(), 1290 | 1792 | 1836))
    }

    /// Transport errors, plus server shutdown (1053) and "too many connections" (1040).
    fn is_unavailable(e: &sqlx::Error) -> bool {
        match e
            .as_database_error()
            .and_then(|d| d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        {
            Some(m) => matches!(m.number(), 1040 | 1053),
            None => is_transport_error(e),
        }
    }
}

#[cfg(feature = "sqlite")]
impl sealed::Sealed for sqlx::Sqlite {}

#[cfg(feature = "sqlite")]
impl Backend for sqlx::Sqlite {
    const DIALECT: Dialect = Dialect::Sqlite;
    const SCHEMES: &'static [&'static str] = &["sqlite"];
    /// SQLite has no read-only transactions; the readers are opened read-only instead.
    const BEGIN_READ_ONLY: &'static str = "BEGIN DEFERRED";
    const CAUSAL: crate::consistency::CausalSupport = crate::consistency::CausalSupport::Immediate;

    /// SQLite allows one writer at a time: more writer connections only wait on each other's
    /// lock (`SQLITE_BUSY`), so the primary gets one connection unless configured otherwise.
    const PRIMARY_MAX_CONNECTIONS: Option<u32> = Some(1);

    /// `SQLITE_READONLY` (8) and its extended codes: a reader opened with `mode=ro`.
    fn is_standby_rejection(e: &sqlx::Error) -> bool {
        e.as_database_error()
            .and_then(|d| d.code())
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| c & 0xff == 8)
    }

    async fn probe(conn: &mut Self::Connection) -> Result<Probe, sqlx::Error> {
        sqlx::query_scalar::<_, i64>("SELECT 1")
            .fetch_one(&mut *conn)
            .await?;
        Ok(Probe::default())
    }
}
