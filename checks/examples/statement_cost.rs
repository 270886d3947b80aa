//! What partypool adds to one statement, in instructions, without a network or a scheduler
//! to blur it: `statement_cost plain|partypool N` runs N point selects on a SQLite file
//! through a plain `SqlitePool` or through a `SqliteReplicaPool` whose replica is that file,
//! on a current-thread runtime. Count instructions with valgrind, at two values of N, so the
//! set-up cancels out:
//!
//! ```sh
//! for side in plain partypool; do for n in 2000 12000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/statement_cost $side $n 2>&1 | grep refs
//! done; done
//! # per statement = (refs at 12000 - refs at 2000) / 10000
//! ```

use partypool::{Config, SqliteReplicaPool};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{ConnectOptions, Connection};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let side = args.get(1).map(String::as_str).unwrap_or("partypool");
    let n: i64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("cost.db");
    let mut setup = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .connect()
        .await?;
    sqlx::query("CREATE TABLE kv (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        .execute(&mut setup)
        .await?;
    sqlx::query(
        "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < 1000) \
         INSERT INTO kv SELECT i, hex(randomblob(16)) FROM g",
    )
    .execute(&mut setup)
    .await?;
    setup.close().await?;
    let writer = format!("sqlite://{}", path.display());
    let reader = format!("sqlite://{}?mode=ro", path.display());
    let select = |i: i64| {
        sqlx::query_scalar::<_, String>("SELECT v FROM kv WHERE id = ?").bind(i % 1000 + 1)
    };
    let mut total = 0usize;
    match side {
        "plain" => {
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect(&reader)
                .await?;
            for i in 0..n {
                total += select(i).fetch_one(&pool).await?.len();
            }
        }
        _ => {
            let pool = SqliteReplicaPool::builder()
                .primary(&writer)
                .replica(&reader)
                .config(Config::default().max_connections(1))
                .connect()
                .await?;
            for i in 0..n {
                total += select(i).fetch_one(&pool).await?.len();
            }
            pool.close().await;
        }
    }
    println!("{side}: {n} statements, {total} bytes");
    Ok(())
}
