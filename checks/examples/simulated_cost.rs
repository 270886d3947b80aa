//! What simulated replicas cost, on one PostgreSQL server:
//!
//! 1. read latency of point selects through two simulated replicas (each read enters an
//!    exported snapshot) beside a plain `PgPool` on the same server, at 1 and 8 tasks;
//! 2. what holding snapshots costs a write-heavy run: dead tuples autovacuum cannot remove
//!    and table size after updating a 10k-row table for a while, with no pool holding
//!    snapshots, then with simulated replicas at 200 ms and 5 s lag; and how many server
//!    connections the ring holds.
//!
//! `cargo run --release -p partypool-checks --example simulated_cost -- [seconds]`

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use partypool::{Config, PgReplicaPool, Scope};

async fn reads<E>(pool: E, tasks: usize, run: Duration) -> (f64, Duration, Duration)
where
    E: Clone + Send + 'static,
    for<'c> &'c E: sqlx::PgExecutor<'c>,
{
    let stop = Instant::now() + run;
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = t as i64;
                while Instant::now() < stop {
                    i = (i * 7919 + 13) % 10_000;
                    let s = Instant::now();
                    let _: i64 = sqlx::query_scalar("SELECT v FROM kv WHERE id = $1")
                        .bind(i + 1)
                        .fetch_one(&pool)
                        .await
                        .unwrap();
                    lat.push(s.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all.sort();
    let n = all.len();
    (n as f64 / run.as_secs_f64(), all[n / 2], all[n * 99 / 100])
}

async fn simulated(c: &support::PgCluster, lag: Duration) -> PgReplicaPool {
    PgReplicaPool::builder()
        .primary(c.primary_url())
        .simulate_replicas(2)
        .config(
            Config::default()
                .simulated_lag(lag)
                .consistency_scope(Scope::Off)
                .max_connections(8),
        )
        .connect()
        .await
        .unwrap()
}

/// Updates random rows from 4 tasks for `run`; returns (updates, dead tuples, table MB).
async fn churn(c: &support::PgCluster, run: Duration) -> (u64, i64, f64) {
    c.psql(
        0,
        "TRUNCATE kv; INSERT INTO kv SELECT g, 0 FROM generate_series(1, 10000) g",
    );
    c.psql(0, "VACUUM kv");
    let plain = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&c.primary_url())
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let (plain, stop) = (plain.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                let mut i = t as i64;
                while !stop.load(Ordering::Relaxed) {
                    i = (i * 7919 + 13) % 10_000;
                    sqlx::query("UPDATE kv SET v = v + 1 WHERE id = $1")
                        .bind(i + 1)
                        .execute(&plain)
                        .await
                        .unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    tokio::time::sleep(run).await;
    stop.store(true, Ordering::Relaxed);
    let mut updates = 0;
    for h in handles {
        updates += h.await.unwrap();
    }
    // What a vacuum now can and cannot remove.
    c.psql(0, "VACUUM kv");
    let out = c.psql(
        0,
        "SELECT n_dead_tup || ' ' || pg_total_relation_size('kv') FROM pg_stat_user_tables WHERE relname = 'kv'",
    );
    let mut parts = out.split_whitespace();
    let dead: i64 = parts.next().unwrap().parse().unwrap();
    let bytes: f64 = parts.next().unwrap().parse().unwrap();
    plain.close().await;
    (updates, dead, bytes / 1_048_576.0)
}

fn connections(c: &support::PgCluster) -> String {
    c.psql(
        0,
        "SELECT count(*) || ' (' || count(*) FILTER (WHERE state LIKE 'idle in transaction%') || ' holding a snapshot)' \
         FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
    )
    .trim()
    .to_owned()
}

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let run = Duration::from_secs(secs);
    let c = support::PgCluster::start(0);
    c.psql(
        0,
        "CREATE TABLE kv (id bigint PRIMARY KEY, v bigint NOT NULL); \
         INSERT INTO kv SELECT g, 0 FROM generate_series(1, 10000) g",
    );

    println!("## Read latency, point selects, {secs} s per cell\n");
    println!("| tasks | pool | reads/s | p50 | p99 |");
    println!("|---|---|---|---|---|");
    for tasks in [1, 8] {
        for round in 0..2 {
            let plain = sqlx::postgres::PgPoolOptions::new()
                .max_connections(16)
                .connect(&c.primary_url())
                .await
                .unwrap();
            let (rate, p50, p99) = reads(plain.clone(), tasks, run).await;
            println!(
                "| {tasks} | plain PgPool (round {round}) | {rate:.0} | {p50:.2?} | {p99:.2?} |"
            );
            plain.close().await;
            let sim = simulated(&c, Duration::from_millis(200)).await;
            let (rate, p50, p99) = reads(sim.clone(), tasks, run).await;
            println!(
                "| {tasks} | 2 simulated replicas (round {round}) | {rate:.0} | {p50:.2?} | {p99:.2?} |"
            );
            sim.close().await;
        }
    }

    println!(
        "\n## Holding snapshots on a write-heavy run: 4 tasks updating a 10k-row table for {secs} s\n"
    );
    println!(
        "| snapshots held by | updates | dead tuples a VACUUM then cannot remove | table + indexes | server connections during the run |"
    );
    println!("|---|---|---|---|---|");
    let (updates, dead, mb) = churn(&c, run).await;
    println!("| nothing | {updates} | {dead} | {mb:.1} MB | - |");
    for lag in [Duration::from_millis(200), Duration::from_secs(5)] {
        let sim = simulated(&c, lag).await;
        tokio::time::sleep(lag + Duration::from_millis(100)).await;
        let held = connections(&c);
        let (updates, dead, mb) = churn(&c, run).await;
        println!("| simulated replicas, lag {lag:?} | {updates} | {dead} | {mb:.1} MB | {held} |");
        sim.close().await;
    }
}
