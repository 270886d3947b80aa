//! What strict replica sessions (`Config::strict_replicas`, on by default) cost:
//!
//! 1. point selects through `&pool` on a real streaming replica, strict on vs off,
//!    interleaved, at 1 and 8 tasks;
//! 2. opening a connection the way a replica's pool does, with and without making the
//!    session read-only: PostgreSQL (a startup parameter) and, with `--features mysql`,
//!    MariaDB (one `SET SESSION TRANSACTION READ ONLY` per new connection).
//!
//! `cargo run --release -p partypool-checks --features mysql --example strict_cost -- [seconds]`

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use partypool::{Config, PgReplicaPool, Scope};
use sqlx::{ConnectOptions, Connection};

async fn reads(pool: &PgReplicaPool, tasks: usize, run: Duration) -> f64 {
    let stop = Instant::now() + run;
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                let mut i = t as i64;
                while Instant::now() < stop {
                    i = (i * 7919 + 13) % 1000;
                    let _: i64 = sqlx::query_scalar("SELECT v FROM kv WHERE id = $1")
                        .bind(i + 1)
                        .fetch_one(&pool)
                        .await
                        .unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut n = 0;
    for h in handles {
        n += h.await.unwrap();
    }
    n as f64 / run.as_secs_f64()
}

/// Mean time to open a connection and run one query on it, over `n`.
async fn opens<F, Fut>(n: u32, open: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let start = Instant::now();
    for _ in 0..n {
        open().await;
    }
    start.elapsed() / n
}

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let run = Duration::from_secs(secs);
    let c = support::PgCluster::start(1);
    c.psql(
        0,
        "CREATE TABLE kv (id bigint PRIMARY KEY, v bigint NOT NULL); \
         INSERT INTO kv SELECT g, 0 FROM generate_series(1, 1000) g",
    );
    c.wait_replayed();

    println!("## Point selects on a streaming replica, {secs} s per cell, 5 rounds interleaved\n");
    println!("| tasks | strict off (reads/s) | strict on (reads/s) | on / off |");
    println!("|---|---|---|---|");
    for tasks in [1, 8] {
        let (mut off, mut on) = (0.0, 0.0);
        for round in 0..5 {
            // Alternating which goes first, so neither always runs on a warmer machine.
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for strict in order {
                let pool = PgReplicaPool::connect(
                    &c.primary_url(),
                    &[&c.url(1)],
                    Config::default()
                        .strict_replicas(strict)
                        .consistency_scope(Scope::Off)
                        .max_connections(8),
                )
                .await
                .unwrap();
                let rate = reads(&pool, tasks, run).await;
                if strict {
                    on += rate
                } else {
                    off += rate
                }
                pool.close().await;
            }
        }
        println!(
            "| {tasks} | {:.0} | {:.0} | {:.3} |",
            off / 5.0,
            on / 5.0,
            on / off
        );
    }

    println!("\n## The same with plain sqlx pools on the replica (no partypool), 1 task\n");
    println!("| round | plain PgPool | PgPool with default_transaction_read_only=on | on / off |");
    println!("|---|---|---|---|");
    let base: sqlx::postgres::PgConnectOptions = c.url(1).parse().unwrap();
    for round in 0..3 {
        let mut rates = [0.0; 2];
        for (i, options) in [
            base.clone(),
            base.clone()
                .options([("default_transaction_read_only", "on")]),
        ]
        .into_iter()
        .enumerate()
        {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(8)
                .connect_with(options)
                .await
                .unwrap();
            let stop = Instant::now() + run;
            let mut n = 0u64;
            while Instant::now() < stop {
                let _: i64 = sqlx::query_scalar("SELECT v FROM kv WHERE id = $1")
                    .bind(n as i64 % 1000 + 1)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                n += 1;
            }
            rates[i] = n as f64 / run.as_secs_f64();
            pool.close().await;
        }
        println!(
            "| {round} | {:.0} | {:.0} | {:.3} |",
            rates[0],
            rates[1],
            rates[1] / rates[0]
        );
    }

    println!("\n## Opening a connection and running one query, mean of 200\n");
    println!("| backend | plain | read-only session | difference |");
    println!("|---|---|---|---|");
    let options: sqlx::postgres::PgConnectOptions = c.url(1).parse().unwrap();
    let strict = options
        .clone()
        .options([("default_transaction_read_only", "on")]);
    for _ in 0..2 {
        let plain = opens(200, || async {
            let mut conn = options.connect().await.unwrap();
            sqlx::query("SELECT 1").execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        })
        .await;
        let read_only = opens(200, || async {
            let mut conn = strict.connect().await.unwrap();
            sqlx::query("SELECT 1").execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        })
        .await;
        println!(
            "| PostgreSQL | {plain:.2?} | {read_only:.2?} | {:+.0} µs |",
            (read_only.as_secs_f64() - plain.as_secs_f64()) * 1e6
        );
    }
    drop(c);

    #[cfg(feature = "mysql")]
    {
        let m = partypool::testing::MariaDbCluster::start(1);
        let options: sqlx::mysql::MySqlConnectOptions = m.url(1).parse().unwrap();
        for _ in 0..2 {
            let plain = opens(200, || async {
                let mut conn = options.connect().await.unwrap();
                sqlx::query("SELECT 1").execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            })
            .await;
            let read_only = opens(200, || async {
                let mut conn = options.connect().await.unwrap();
                sqlx::raw_sql("SET SESSION TRANSACTION READ ONLY")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                sqlx::query("SELECT 1").execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            })
            .await;
            println!(
                "| MariaDB | {plain:.2?} | {read_only:.2?} | {:+.0} µs |",
                (read_only.as_secs_f64() - plain.as_secs_f64()) * 1e6
            );
        }
    }
}
