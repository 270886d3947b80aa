//! partypool with no server: SQLite in WAL mode, one writer pool and two read-only reader
//! pools behind one `ReplicaPool<Sqlite>`.
//!
//! SQLite allows one writer at a time. Giving the writer its own single connection and
//! serving reads from separate read-only connections (WAL lets readers run while the writer
//! writes) removes `SQLITE_BUSY` contention — with exactly the API you would use for a
//! PostgreSQL primary and its replicas.
//!
//! At the end, the same file behind two *simulated* replicas that lag 200 ms: a
//! create-then-read workload misses its own rows with consistency off, and does not with
//! partypool's default (see the README's "Testing with replicas").
//!
//! Run it with `cargo run --example quickstart`.

use std::time::{Duration, Instant};

use partypool::{Config, Scope, SqliteReplicaPool};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{ConnectOptions, Connection};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("quickstart.db");

    // Create the database file in WAL mode (the mode is stored in the file, so the
    // read-only readers opened below use it too).
    let setup = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .connect()
        .await?;
    setup.close().await?;

    let writer = format!("sqlite://{}", path.display());
    let reader = format!("sqlite://{}?mode=ro", path.display());
    let pool = SqliteReplicaPool::builder()
        .primary(&writer) // one connection: SQLite's single writer
        .replica(&reader)
        .replica(&reader)
        .config(Config::default().max_connections(4))
        .connect()
        .await?;

    // DDL and writes go to the writer...
    sqlx::query(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, author TEXT NOT NULL, body TEXT NOT NULL)",
    )
    .execute(&pool)
    .await?;
    sqlx::query("INSERT INTO notes (author, body) VALUES (?, ?)")
        .bind("ada")
        .bind("hello from the writer")
        .execute(&pool)
        .await?;

    // ...reads go to the readers, round-robin.
    let (author, body): (String, String) =
        sqlx::query_as("SELECT author, body FROM notes ORDER BY id LIMIT 1")
            .fetch_one(&pool)
            .await?;
    println!("read back: {author}: {body}\n");

    // A short concurrent mixed workload: 8 tasks, each writing 1 row per 4 reads.
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    sqlx::query("INSERT INTO notes (author, body) VALUES (?, ?)")
                        .bind(format!("task-{t}"))
                        .bind(format!("note {i}"))
                        .execute(&pool)
                        .await?;
                    for _ in 0..4 {
                        let _: i64 =
                            sqlx::query_scalar("SELECT count(*) FROM notes WHERE author = ?")
                                .bind(format!("task-{t}"))
                                .fetch_one(&pool)
                                .await?;
                    }
                }
                Ok::<_, sqlx::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM notes")
        .fetch_one(&pool)
        .await?;
    println!(
        "mixed workload: 400 writes + 1600 reads by 8 tasks in {:?}; {total} notes stored\n",
        started.elapsed()
    );

    // Which pool served what.
    println!("{}", pool.status());
    pool.close().await;

    // Replicas on a laptop: two simulated replicas serving the file as it was 200 ms ago.
    // The same create-then-read workload misses its own rows with consistency off, as it
    // would against production replicas; partypool's default reads them back.
    for (scope, what) in [
        (Scope::Off, "consistency off"),
        (Scope::Process, "the default"),
    ] {
        let pool = SqliteReplicaPool::builder()
            .primary(&writer)
            .simulate_replicas(2)
            .config(
                Config::default()
                    .simulated_lag(Duration::from_millis(200))
                    .consistency_scope(scope),
            )
            .connect()
            .await?;
        let mut stale = 0;
        for i in 0..20 {
            let id: i64 =
                sqlx::query_scalar("INSERT INTO notes (author, body) VALUES (?, ?) RETURNING id")
                    .bind("grace")
                    .bind(format!("draft {i}"))
                    .fetch_one(&pool)
                    .await?;
            let found: Option<String> = sqlx::query_scalar("SELECT body FROM notes WHERE id = ?")
                .bind(id)
                .fetch_optional(&pool)
                .await?;
            stale += usize::from(found.is_none());
        }
        println!(
            "simulated replicas 200 ms behind, {what}: {stale} of 20 reads missed the row just written"
        );
        pool.close().await;
    }
    Ok(())
}
