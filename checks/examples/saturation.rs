//! Saturation: more concurrent reads than the replica pools have connections.
//!
//! Starts a PostgreSQL primary and two streaming replicas (the test support's cluster), gives
//! each replica pool 4 connections (the primary 16) and a 1 s `acquire_timeout`, and runs 48
//! tasks reading `SELECT pg_is_in_recovery() FROM pg_sleep(S)` in a loop for N seconds
//! (default 10 s, S = 5 ms). A full pool must make reads wait, not move them to the primary
//! or take a replica out. Prints where the reads ran (asked of the server), their latency,
//! how many failed, and how often a replica was seen out of the rotation.
//!
//! `cargo run --release --example saturation -- 10 5` (seconds, sleep per read in ms; with
//! 200 ms the offered load exceeds what 8 replica connections serve within the timeout)

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use partypool::{Config, PgReplicaPool};

const TASKS: usize = 48;

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let sleep_ms: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let sql = format!(
        "SELECT pg_is_in_recovery() FROM pg_sleep({})",
        sleep_ms as f64 / 1000.0
    );
    let c = support::PgCluster::start(2);
    let replicas = c.replica_urls();
    let replicas: Vec<&str> = replicas.iter().map(String::as_str).collect();
    let pool = PgReplicaPool::connect(
        &c.primary_url(),
        &replicas,
        Config::default()
            .max_connections(4)
            .primary_max_connections(Some(16))
            .acquire_timeout(Duration::from_secs(1))
            .health_check_interval(Duration::from_millis(500)),
    )
    .await
    .expect("connect");

    let stop = Arc::new(AtomicBool::new(false));
    let out_seen = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (pool, stop, out_seen) = (pool.clone(), Arc::clone(&stop), Arc::clone(&out_seen));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let s = pool.status();
                let out = s.nodes.iter().skip(1).filter(|n| !n.healthy).count() as u64;
                out_seen.fetch_add(out, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (pool, stop, sql) = (pool.clone(), Arc::clone(&stop), sql.clone());
            tokio::spawn(async move {
                let (mut on_replica, mut on_primary, mut failed) = (0u64, 0u64, 0u64);
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match sqlx::query_scalar::<_, bool>(sqlx::AssertSqlSafe(sql.as_str()))
                        .fetch_one(&pool)
                        .await
                    {
                        Ok(true) => on_replica += 1,
                        Ok(false) => on_primary += 1,
                        Err(_) => failed += 1,
                    }
                    lat.push(t.elapsed());
                }
                (on_replica, on_primary, failed, lat)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut r, mut p, mut f, mut lat) = (0, 0, 0, Vec::new());
    for t in tasks {
        let (a, b, c, l) = t.await.unwrap();
        r += a;
        p += b;
        f += c;
        lat.extend(l);
    }
    watcher.await.unwrap();
    lat.sort();
    let q = |x: f64| lat[((lat.len() - 1) as f64 * x) as usize];
    println!(
        "{TASKS} tasks, {sleep_ms} ms reads, replica pools of 4, {secs} s: {} reads — {r} on replicas, {p} on the primary, {f} failed; \
         p50 {:?}, p99 {:?}; replica-out samples {}",
        r + p + f,
        q(0.5),
        q(0.99),
        out_seen.load(Ordering::Relaxed)
    );
    println!("{}", pool.status());
    pool.close().await;
}
