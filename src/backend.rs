//! What differs per database: the health probe, the dialect, and which errors mean "this node
//! is unavailable".
//!
//! [`Backend`] is implemented for each sqlx database partypool supports (behind the
//! `postgres`, `mysql` and `sqlite` features) and is sealed: the set of databases is
//! partypool's to maintain.

use std::future::Future;

use sqlx::Database;

use crate::GtidSet;
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

/// A point in the primary's log, as captured right after a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogPosition {
    /// The position in bytes (PostgreSQL's WAL LSN; MariaDB: [`GtidSet::total`]).
    pub position: u64,
    /// The timeline it is on (PostgreSQL), which a promotion increments.
    pub timeline: Option<u64>,
    /// MariaDB's GTID position, per replication domain.
    pub gtids: Option<GtidSet>,
}

impl LogPosition {
    /// A PostgreSQL-style position.
    pub fn new(position: u64, timeline: Option<u64>) -> Self {
        LogPosition {
            position,
            timeline,
            gtids: None,
        }
    }

    /// A MariaDB GTID position.
    pub fn gtid(gtids: GtidSet) -> Self {
        LogPosition {
            position: gtids.total(),
            timeline: None,
            gtids: Some(gtids),
        }
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

    /// URL schemes this backend accepts (sqlx itself does not check them).
    const SCHEMES: &'static [&'static str];

    /// How to begin a read-only transaction on a replica.
    const BEGIN_READ_ONLY: &'static str;

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
    ) -> impl Future<Output = Result<Option<LogPosition>, sqlx::Error>> + Send {
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
    const DEFAULT_PORT: u16 = 5432;
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
        Ok(p.map(|p| LogPosition::new(p.max(0) as u64, tl.map(|t| t.max(0) as u64))))
    }

    async fn replayed_position(
        conn: &mut Self::Connection,
    ) -> Result<Option<LogPosition>, sqlx::Error> {
        let p: Option<i64> =
            sqlx::query_scalar("SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8")
                .fetch_one(&mut *conn)
                .await?;
        Ok(p.map(|p| LogPosition::new(p.max(0) as u64, None)))
    }

    /// One round trip: role, WAL position (current on a primary, replayed on a standby),
    /// time since the last replayed commit, timeline.
    async fn probe(conn: &mut Self::Connection, _: bool) -> Result<Probe, sqlx::Error> {
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
            ..Probe::default()
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
    const DEFAULT_PORT: u16 = 3306;
    const BEGIN_READ_ONLY: &'static str = "START TRANSACTION READ ONLY";
    const CAUSAL: crate::consistency::CausalSupport = crate::consistency::CausalSupport::Gtids;

    /// MariaDB: `@@read_only` and both GTID positions (every user may read them), then
    /// `SHOW ALL SLAVES STATUS` when asked (it needs `SLAVE MONITOR`). A node is a replica
    /// when it has a replication source — or, when the status cannot be read, when it is
    /// `read_only`. MySQL 8 (unverified: Debian ships no server) has no
    /// `@@gtid_binlog_pos` (its GTIDs are `@@gtid_executed` sets) and no `SHOW ALL`: the
    /// probe then reads `@@read_only` and `SHOW REPLICA STATUS`, without positions.
    async fn probe(
        conn: &mut Self::Connection,
        replication_status: bool,
    ) -> Result<Probe, sqlx::Error> {
        let mariadb: Result<(i64, Option<String>, Option<String>), _> = sqlx::query_as(
            "SELECT @@global.read_only, @@global.gtid_binlog_pos, @@global.gtid_slave_pos",
        )
        .fetch_one(&mut *conn)
        .await;
        let (read_only, binlog, slave) = match mariadb {
            Ok((r, b, s)) => (r != 0, b, s),
            // 1193: unknown system variable (MySQL).
            Err(e) if mysql_errno(&e) == Some(1193) => {
                let r: i64 = sqlx::query_scalar("SELECT @@global.read_only")
                    .fetch_one(&mut *conn)
                    .await?;
                (r != 0, None, None)
            }
            Err(e) => return Err(e),
        };
        let replication = if replication_status {
            Some(mysql::replication_status(conn).await?)
        } else {
            None
        };
        // A source it replicates from: a channel whose threads run (a promoted node that was
        // only `STOP SLAVE`d, without `RESET SLAVE ALL`, keeps a stopped channel).
        let has_source = replication
            .as_ref()
            .filter(|r| r.unavailable.is_none())
            .map(|r| r.channels.iter().any(Channel::is_running));
        let in_recovery = has_source.unwrap_or(false) || read_only;
        let parse = |s: Option<String>| s.and_then(|s| s.parse::<GtidSet>().ok());
        let (binlog, slave) = (parse(binlog), parse(slave));
        // A replica's applied position; a primary's logged one (with what it applied
        // as a replica before, in case it logs no replicated transactions).
        let gtids = if in_recovery {
            slave
        } else {
            match (binlog, slave) {
                (Some(b), Some(s)) => b.union(&s).or(Some(b)),
                (b, _) => b,
            }
        };
        // Seconds_Behind_Master only while every SQL thread applies (it is NULL otherwise).
        let replay_age = replication.as_ref().and_then(|r| {
            let mut behind = r.channels.iter().map(|c| c.seconds_behind);
            let first = behind.next()??;
            behind
                .try_fold(first, |m, b| b.map(|b| m.max(b)))
                .map(std::time::Duration::from_secs)
        });
        Ok(Probe {
            in_recovery: Some(in_recovery),
            position: gtids.map(|g| g.total()),
            replay_age: if in_recovery { replay_age } else { None },
            gtids,
            replication,
            ..Probe::default()
        })
    }

    /// `@@gtid_binlog_pos`: on the write's own connection right after its commit, it is past
    /// the write (the commit returns after the binary log has it). Not `@@last_gtid`, which
    /// a pooled connection may carry over from an earlier write (this position also checks
    /// tokens against the primary).
    async fn capture_position(
        conn: &mut Self::Connection,
    ) -> Result<Option<LogPosition>, sqlx::Error> {
        let pos: Option<String> = match sqlx::query_scalar("SELECT @@global.gtid_binlog_pos")
            .fetch_one(&mut *conn)
            .await
        {
            Ok(pos) => pos,
            // MySQL: no such variable. The write's position is unknown: the session reads
            // on the primary (never too old).
            Err(e) if mysql_errno(&e) == Some(1193) => None,
            Err(e) => return Err(e),
        };
        Ok(pos
            .and_then(|p| p.parse::<GtidSet>().ok())
            .map(LogPosition::gtid))
    }

    /// `@@gtid_slave_pos`: what the replica's SQL threads applied.
    async fn replayed_position(
        conn: &mut Self::Connection,
    ) -> Result<Option<LogPosition>, sqlx::Error> {
        let pos: Option<String> = sqlx::query_scalar("SELECT @@global.gtid_slave_pos")
            .fetch_one(&mut *conn)
            .await?;
        Ok(pos
            .and_then(|p| p.parse::<GtidSet>().ok())
            .map(LogPosition::gtid))
    }

    /// No database: a monitor user (`SLAVE MONITOR`) usually has no rights on the
    /// application's, and needs none.
    fn monitor_url(url: &mut url::Url) {
        url.set_path("");
    }

    /// Errors 1290 (`--read-only` / `--super-read-only`), 1792 (read-only transaction) and
    /// 1836 (read-only mode).
    fn is_standby_rejection(e: &sqlx::Error) -> bool {
        mysql_errno(e).is_some_and(|n| matches!(n, 1290 | 1792 | 1836))
    }

    /// Transport errors, plus server shutdown (1053) and "too many connections" (1040).
    fn is_unavailable(e: &sqlx::Error) -> bool {
        match mysql_errno(e) {
            Some(n) => matches!(n, 1040 | 1053),
            None => is_transport_error(e),
        }
    }
}

/// The MySQL error number of `e`, if it is a MySQL server error.
#[cfg(feature = "mysql")]
fn mysql_errno(e: &sqlx::Error) -> Option<u16> {
    e.as_database_error()
        .and_then(|d| d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .map(|m| m.number())
}

#[cfg(feature = "mysql")]
mod mysql {
    use sqlx::mysql::{MySqlConnection, MySqlRow};
    use sqlx::{Executor, Row};

    use super::{Channel, Replication, mysql_errno};

    /// `SHOW ALL SLAVES STATUS` (MariaDB), else `SHOW REPLICA STATUS` (MySQL 8.0.22+);
    /// a missing privilege is reported, not an error.
    pub(super) async fn replication_status(
        conn: &mut MySqlConnection,
    ) -> Result<Replication, sqlx::Error> {
        // 1064, a syntax error: MySQL has no `SHOW ALL`, and before 8.0.22 no `SHOW REPLICA`.
        let mut outcome = conn
            .fetch_all(sqlx::raw_sql("SHOW ALL SLAVES STATUS"))
            .await;
        for fallback in ["SHOW REPLICA STATUS", "SHOW SLAVE STATUS"] {
            match &outcome {
                Err(e) if mysql_errno(e) == Some(1064) => {
                    outcome = conn.fetch_all(sqlx::raw_sql(fallback)).await;
                }
                _ => break,
            }
        }
        match outcome {
            Ok(rows) => Ok(Replication {
                channels: rows.iter().map(channel).collect(),
                unavailable: None,
            }),
            // 1227: access denied, you need SLAVE MONITOR (or REPLICATION CLIENT).
            Err(e) if mysql_errno(&e) == Some(1227) => Ok(Replication {
                channels: Vec::new(),
                unavailable: Some(
                    "the probe's user may not read replication status (needs SLAVE MONITOR; \
                     see Builder::monitor_credentials): roles from @@read_only, lag from GTID \
                     positions"
                        .into(),
                ),
            }),
            // Any other refusal by the server: the node answered, its status is unknown.
            Err(e) if e.as_database_error().is_some() => Ok(Replication {
                channels: Vec::new(),
                unavailable: Some(format!(
                    "replication status unreadable ({e}): roles from @@read_only"
                )),
            }),
            Err(e) => Err(e),
        }
    }

    /// A column as text, by its MariaDB name or its MySQL 8 one. The text protocol sends
    /// every value as text, so decoding without the type check is exact.
    fn text(row: &MySqlRow, names: &[&str]) -> Option<String> {
        names.iter().find_map(|n| {
            row.try_get_unchecked::<Option<String>, _>(*n)
                .ok()
                .flatten()
        })
    }

    fn channel(row: &MySqlRow) -> Channel {
        let error = |errno: &str, error: &str| {
            let n = text(row, &[errno]).unwrap_or_default();
            (!n.is_empty() && n != "0")
                .then(|| format!("{n}: {}", text(row, &[error]).unwrap_or_default()))
        };
        Channel {
            name: text(row, &["Connection_name", "Channel_Name"]).unwrap_or_default(),
            source: format!(
                "{}:{}",
                text(row, &["Master_Host", "Source_Host"]).unwrap_or_default(),
                text(row, &["Master_Port", "Source_Port"]).unwrap_or_default()
            ),
            io_running: text(row, &["Slave_IO_Running", "Replica_IO_Running"]).unwrap_or_default(),
            sql_running: text(row, &["Slave_SQL_Running", "Replica_SQL_Running"])
                .unwrap_or_default(),
            seconds_behind: text(row, &["Seconds_Behind_Master", "Seconds_Behind_Source"])
                .and_then(|s| s.parse().ok()),
            last_sql_error: error("Last_SQL_Errno", "Last_SQL_Error"),
            last_io_error: error("Last_IO_Errno", "Last_IO_Error"),
        }
    }
}

#[cfg(feature = "sqlite")]
impl sealed::Sealed for sqlx::Sqlite {}

#[cfg(feature = "sqlite")]
impl Backend for sqlx::Sqlite {
    const DIALECT: Dialect = Dialect::Sqlite;
    const SCHEMES: &'static [&'static str] = &["sqlite"];
    /// SQLite has no network: DNS discovery does not apply.
    const DEFAULT_PORT: u16 = 0;
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

    async fn probe(conn: &mut Self::Connection, _: bool) -> Result<Probe, sqlx::Error> {
        sqlx::query_scalar::<_, i64>("SELECT 1")
            .fetch_one(&mut *conn)
            .await?;
        Ok(Probe::default())
    }
}
