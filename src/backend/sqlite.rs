//! SQLite: one writer pool and read-only reader pools on the same WAL file.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::{Backend, Probe, sealed};
use crate::positions::LogPosition;
use crate::route::Dialect;

impl sealed::Sealed for sqlx::Sqlite {}

impl Backend for sqlx::Sqlite {
    const DIALECT: Dialect = Dialect::Sqlite;
    const SCHEMES: &'static [&'static str] = &["sqlite"];
    /// SQLite has no network: DNS discovery does not apply.
    const DEFAULT_PORT: u16 = 0;
    const OTEL_SYSTEM: &'static str = "sqlite";
    /// SQLite has no read-only transactions; the readers are opened read-only instead.
    const BEGIN_READ_ONLY: &'static str = "BEGIN DEFERRED";
    const CAUSAL: crate::positions::CausalSupport = crate::positions::CausalSupport::Immediate;

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

    /// Proves the file answers; the position is the file's write count in this process
    /// (see `commits`), used only with simulated replicas.
    async fn probe(conn: &mut Self::Connection, _: bool) -> Result<Probe, sqlx::Error> {
        let counter = commits(conn).await?;
        Ok(Probe {
            position: Some(counter.load(Ordering::SeqCst)),
            ..Probe::default()
        })
    }

    /// Its readers are opened read-only (`SQLITE_OPEN_READONLY`): a write fails there with
    /// `SQLITE_READONLY` and runs on the writer.
    fn read_only_sessions(
        options: sqlx::sqlite::SqliteConnectOptions,
    ) -> (sqlx::sqlite::SqliteConnectOptions, Option<&'static str>) {
        (options.read_only(true), None)
    }

    const SIMULATES: bool = true;

    /// Positions exist only for simulated replicas, where readers lag: the count of writes
    /// acknowledged through partypool on this file in this process, taken after the write
    /// committed (so every write at or below a position is visible to a read that begins
    /// after the count was read).
    async fn capture_position(
        conn: &mut Self::Connection,
    ) -> Result<Option<LogPosition>, sqlx::Error> {
        let counter = commits(conn).await?;
        Ok(Some(LogPosition::new(
            counter.fetch_add(1, Ordering::SeqCst) + 1,
            None,
        )))
    }

    /// A reader sees every write committed before its read began: the count now.
    async fn replayed_position(
        conn: &mut Self::Connection,
    ) -> Result<Option<LogPosition>, sqlx::Error> {
        let counter = commits(conn).await?;
        Ok(Some(LogPosition::new(counter.load(Ordering::SeqCst), None)))
    }

    /// A read transaction begun and made to read (WAL: the snapshot is taken at the first
    /// read), at the write count read just before it.
    async fn hold_snapshot(
        conn: &mut Self::Connection,
    ) -> Result<(String, Option<LogPosition>), sqlx::Error> {
        use sqlx::SqlSafeStr;
        use sqlx_core::transaction::TransactionManager;
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await?;
        if !mode.eq_ignore_ascii_case("wal") {
            // A reader's open transaction would hold off every writer.
            return Err(sqlx::Error::Configuration(
                format!(
                    "simulated replicas on SQLite need WAL mode (the file is in {mode} mode: \
                     run PRAGMA journal_mode = WAL once, or open it with \
                     SqliteConnectOptions::journal_mode(SqliteJournalMode::Wal))"
                )
                .into(),
            ));
        }
        let counter = commits(conn).await?;
        let before = counter.load(Ordering::SeqCst);
        sqlx::sqlite::SqliteTransactionManager::begin(conn, Some("BEGIN DEFERRED".into_sql_str()))
            .await?;
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sqlite_schema")
            .fetch_one(&mut *conn)
            .await?;
        Ok((String::new(), Some(LogPosition::new(before, None))))
    }
}

/// The write count of the database file `conn` has open, shared by every pool of the
/// process (a process-wide registry keyed by the file's path).
async fn commits(conn: &mut sqlx::SqliteConnection) -> Result<Arc<AtomicU64>, sqlx::Error> {
    static COUNTS: OnceLock<Mutex<HashMap<String, Arc<AtomicU64>>>> = OnceLock::new();
    let file: String =
        sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .fetch_one(&mut *conn)
            .await?;
    let mut counts = crate::sync::lock(COUNTS.get_or_init(Mutex::default));
    Ok(Arc::clone(counts.entry(file).or_default()))
}
