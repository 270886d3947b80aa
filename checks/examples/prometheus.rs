//! partypool's metrics in Prometheus text format, through the `metrics` facade and
//! `metrics-exporter-prometheus`.
//!
//! Install the recorder **before** creating the pool (each node registers its handles when
//! it is created). Runs on SQLite, no server needed; serve `handle.render()` from your
//! `/metrics` endpoint in a real application.
//!
//! `cargo run --example prometheus`

use metrics_exporter_prometheus::PrometheusBuilder;
use partypool::SqliteReplicaPool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{ConnectOptions, Connection};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let handle = PrometheusBuilder::new().install_recorder()?;

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("metrics.db");
    SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .connect()
        .await?
        .close()
        .await?;
    let reader = format!("sqlite://{}?mode=ro", path.display());
    let pool = SqliteReplicaPool::builder()
        .primary(format!("sqlite://{}", path.display()))
        .replica(&reader)
        .replica(&reader)
        .connect()
        .await?;

    sqlx::query("CREATE TABLE t (v INTEGER)")
        .execute(&pool)
        .await?;
    for i in 0..20 {
        sqlx::query("INSERT INTO t VALUES (?)")
            .bind(i)
            .execute(&pool)
            .await?;
        let _: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&pool)
            .await?;
    }
    // A statement error is counted too.
    let _ = sqlx::query("SELECT * FROM missing_table")
        .fetch_all(&pool)
        .await;

    print!("{}", handle.render());
    pool.close().await;
    Ok(())
}
