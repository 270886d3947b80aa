//! MySQL and MariaDB: roles from replication status (or `@@read_only`), GTID positions.

use super::{Backend, Probe, is_transport_error, sealed};
use super::{Channel, Replication};
use crate::positions::GtidSet;
use crate::positions::LogPosition;
use crate::route::Dialect;

impl sealed::Sealed for sqlx::MySql {}

impl Backend for sqlx::MySql {
    const DIALECT: Dialect = Dialect::MySql;
    const SCHEMES: &'static [&'static str] = &["mysql", "mariadb"];
    const DEFAULT_PORT: u16 = 3306;
    const OTEL_SYSTEM: &'static str = "mysql";
    const BEGIN_READ_ONLY: &'static str = "START TRANSACTION READ ONLY";
    const READ_WRITE_SESSION: &'static str = "SET SESSION TRANSACTION READ WRITE";

    async fn set_session(
        conn: &mut Self::Connection,
        sql: &'static str,
    ) -> Result<(), sqlx::Error> {
        sqlx::Executor::execute(&mut *conn, sqlx::raw_sql(sql))
            .await
            .map(drop)
    }

    /// One statement on each new connection (MySQL's options have no session variables).
    fn read_only_sessions(
        options: sqlx::mysql::MySqlConnectOptions,
    ) -> (sqlx::mysql::MySqlConnectOptions, Option<&'static str>) {
        (options, Some("SET SESSION TRANSACTION READ ONLY"))
    }
    const CAUSAL: crate::positions::CausalSupport = crate::positions::CausalSupport::Gtids;

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
            Some(status::replication_status(conn).await?)
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

    const SIMULATES: bool = true;

    /// A read-only transaction `WITH CONSISTENT SNAPSHOT`, and the GTID position of exactly
    /// that snapshot: MariaDB reports the binary log coordinates consistent with it
    /// (`Binlog_snapshot_file` / `_position`), which `BINLOG_GTID_POS` turns into GTIDs. No
    /// name: it cannot be entered from another connection.
    async fn hold_snapshot(
        conn: &mut Self::Connection,
    ) -> Result<(String, Option<LogPosition>), sqlx::Error> {
        use sqlx::SqlSafeStr;
        use sqlx_core::transaction::TransactionManager;
        sqlx::mysql::MySqlTransactionManager::begin(
            conn,
            Some("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY".into_sql_str()),
        )
        .await?;
        let coordinates: Vec<(String, String)> =
            sqlx::query_as("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
                .fetch_all(&mut *conn)
                .await?;
        let value = |name: &str| {
            coordinates
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let (Some(file), Some(position)) = (
            value("Binlog_snapshot_file"),
            value("Binlog_snapshot_position"),
        ) else {
            return Ok((String::new(), None));
        };
        if file.is_empty() {
            // No binary log: no GTIDs, so no position could say what a snapshot has.
            return Err(sqlx::Error::Configuration(
                "simulated replicas on MariaDB need the binary log (log_bin), where \
                 positions come from"
                    .into(),
            ));
        }
        let Ok(position) = position.parse::<u64>() else {
            return Ok((String::new(), None));
        };
        let gtids: Option<String> = sqlx::query_scalar("SELECT BINLOG_GTID_POS(?, ?)")
            .bind(file)
            .bind(position)
            .fetch_one(&mut *conn)
            .await?;
        Ok((
            String::new(),
            gtids
                .and_then(|g| g.parse::<GtidSet>().ok())
                .map(LogPosition::gtid),
        ))
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
    /// Error 1049 (`Unknown database`).
    fn with_credential(
        options: sqlx::mysql::MySqlConnectOptions,
        user: Option<&str>,
        password: &str,
    ) -> Option<sqlx::mysql::MySqlConnectOptions> {
        let options = options.password(password);
        Some(match user {
            Some(u) => options.username(u),
            None => options,
        })
    }

    /// 1045 "Access denied for user" (a wrong password, or no such user).
    fn is_auth_failure(e: &sqlx::Error) -> bool {
        mysql_errno(e) == Some(1045)
    }

    fn is_missing_database(e: &sqlx::Error) -> bool {
        mysql_errno(e) == Some(1049)
    }

    /// Closes the connection's cached prepared statements.
    async fn clear_statements(conn: &mut Self::Connection) -> Result<(), sqlx::Error> {
        sqlx::Connection::clear_cached_statements(conn).await
    }

    /// 1615 "Prepared statement needs to be re-prepared" (MySQL; MariaDB re-prepares itself).
    fn is_stale_plan(e: &sqlx::Error) -> bool {
        mysql_errno(e) == Some(1615)
    }

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
fn mysql_errno(e: &sqlx::Error) -> Option<u16> {
    e.as_database_error()
        .and_then(|d| d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .map(|m| m.number())
}

mod status {
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
