//! PostgreSQL: probes from `pg_is_in_recovery()`, WAL positions and timelines.

use super::{Backend, Probe, is_transport_error, sealed};
use crate::positions::LogPosition;
use crate::route::Dialect;

impl sealed::Sealed for sqlx::Postgres {}

impl Backend for sqlx::Postgres {
    const DIALECT: Dialect = Dialect::Postgres;
    const SCHEMES: &'static [&'static str] = &["postgres", "postgresql"];
    const DEFAULT_PORT: u16 = 5432;
    const OTEL_SYSTEM: &'static str = "postgresql";
    const BEGIN_READ_ONLY: &'static str = "BEGIN READ ONLY";
    const READ_WRITE_SESSION: &'static str = "SET SESSION default_transaction_read_only = off";

    async fn set_session(
        conn: &mut Self::Connection,
        sql: &'static str,
    ) -> Result<(), sqlx::Error> {
        sqlx::Executor::execute(&mut *conn, sqlx::raw_sql(sql))
            .await
            .map(drop)
    }

    /// A startup parameter: no statement, no round trip.
    fn read_only_sessions(
        options: sqlx::postgres::PgConnectOptions,
    ) -> (sqlx::postgres::PgConnectOptions, Option<&'static str>) {
        (
            options.options([("default_transaction_read_only", "on")]),
            None,
        )
    }
    const CAUSAL: crate::positions::CausalSupport = crate::positions::CausalSupport::Positions;

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

    const SIMULATES: bool = true;
    const EXPORTS_SNAPSHOTS: bool = true;

    /// An exported snapshot (`pg_export_snapshot()` in a `REPEATABLE READ` transaction),
    /// known to have the WAL insert position read just before it was taken — unless a
    /// transaction holding an xid then (one whose commit record may be at or below that
    /// position) is still invisible in it: then `None`.
    ///
    /// Why that is enough: a write's client reads its position after its commit returned. If
    /// that position is at or below the one read here, the commit record was inserted before
    /// it; the transaction then either ended before the lock table was read (and is visible
    /// in a snapshot taken after), or still held its xid lock, and is checked.
    async fn hold_snapshot(
        conn: &mut Self::Connection,
    ) -> Result<(String, Option<LogPosition>), sqlx::Error> {
        use sqlx::SqlSafeStr;
        use sqlx_core::transaction::TransactionManager;
        let before = Self::capture_position(conn).await?;
        let holders: Vec<i64> = sqlx::query_scalar(
            "SELECT transactionid::text::int8 FROM pg_locks \
             WHERE locktype = 'transactionid' AND mode = 'ExclusiveLock' AND granted",
        )
        .fetch_all(&mut *conn)
        .await?;
        sqlx::postgres::PgTransactionManager::begin(
            conn,
            Some("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY".into_sql_str()),
        )
        .await?;
        // Invisible: at or after xmax, or in progress (32-bit xids, compared modulo 2^32).
        let (name, settled): (String, bool) = sqlx::query_as(
            "SELECT pg_export_snapshot(), NOT EXISTS ( \
               SELECT 1 FROM unnest($1::int8[]) AS t, pg_current_snapshot() AS s \
               WHERE ((t - pg_snapshot_xmax(s)::text::int8 % 4294967296) % 4294967296 \
                      + 4294967296) % 4294967296 < 2147483648 \
                  OR t IN (SELECT x::text::int8 % 4294967296 FROM pg_snapshot_xip(s) AS x))",
        )
        .bind(&holders)
        .fetch_one(&mut *conn)
        .await?;
        Ok((name, before.filter(|_| settled)))
    }

    fn enter_snapshot(name: &str) -> String {
        // A name from `pg_export_snapshot()` (hex digits and dashes); anything else is
        // never sent.
        let name: String = name
            .chars()
            .filter(|c| c.is_ascii_hexdigit() || *c == '-')
            .collect();
        format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{name}'"
        )
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

    /// Deallocates the connection's cached prepared statements.
    async fn clear_statements(conn: &mut Self::Connection) -> Result<(), sqlx::Error> {
        sqlx::Connection::clear_cached_statements(conn).await
    }

    /// SQLSTATE 0A000 "cached plan must not change result type": after `ALTER TABLE`, every
    /// connection that prepared `SELECT * FROM t …` before fails it until re-prepared.
    fn is_stale_plan(e: &sqlx::Error) -> bool {
        e.as_database_error().is_some_and(|d| {
            d.code().as_deref() == Some("0A000")
                && d.message()
                    .contains("cached plan must not change result type")
        })
    }

    /// SQLSTATE 3D000 (`database "…" does not exist`).
    fn with_credential(
        options: sqlx::postgres::PgConnectOptions,
        user: Option<&str>,
        password: &str,
    ) -> Option<sqlx::postgres::PgConnectOptions> {
        let options = options.password(password);
        Some(match user {
            Some(u) => options.username(u),
            None => options,
        })
    }

    /// SQLSTATE 28P01 (invalid_password) and 28000 (invalid_authorization_specification:
    /// no such role, role cannot log in, pg_hba rejection).
    fn is_auth_failure(e: &sqlx::Error) -> bool {
        e.as_database_error()
            .is_some_and(|d| matches!(d.code().as_deref(), Some("28P01" | "28000")))
    }

    fn is_missing_database(e: &sqlx::Error) -> bool {
        e.as_database_error()
            .is_some_and(|d| d.code().as_deref() == Some("3D000"))
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
