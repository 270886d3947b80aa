//! SQLite: one writer pool and read-only reader pools on the same WAL file.

use super::{Backend, Probe, sealed};
use crate::route::Dialect;

impl sealed::Sealed for sqlx::Sqlite {}

impl Backend for sqlx::Sqlite {
    const DIALECT: Dialect = Dialect::Sqlite;
    const SCHEMES: &'static [&'static str] = &["sqlite"];
    /// SQLite has no network: DNS discovery does not apply.
    const DEFAULT_PORT: u16 = 0;
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

    async fn probe(conn: &mut Self::Connection, _: bool) -> Result<Probe, sqlx::Error> {
        sqlx::query_scalar::<_, i64>("SELECT 1")
            .fetch_one(&mut *conn)
            .await?;
        Ok(Probe::default())
    }
}
