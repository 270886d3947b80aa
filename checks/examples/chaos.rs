//! A mixed workload against a real local cluster while replicas crash and come back.
//!
//! Starts a PostgreSQL primary and two streaming replicas (the test support's cluster),
//! runs 6 reading and 2 writing tasks through one `PgReplicaPool` for N seconds (default 20),
//! and crashes a replica (`pg_ctl stop -m immediate`) every 4 s, restarting it 2 s later.
//! Then it checks every acknowledged write on the primary and prints what happened.
//!
//! `cargo run --release --example chaos -- 20` (needs the PostgreSQL server binaries, like
//! the tests).

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use partypool::config::Backoff;
use partypool::{Config, PgReplicaPool};

#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    latencies: Vec<Duration>,
    acked: Vec<i64>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::args().nth(1).map_or(Ok(20), |s| s.parse())?;
    let cluster = Arc::new(support::PgCluster::start(2));
    cluster.psql(
        0,
        "CREATE TABLE chaos_writes (id bigserial PRIMARY KEY, k bigint NOT NULL)",
    );
    cluster.wait_replayed();

    let replicas = cluster.replica_urls();
    let config = Config::default()
        .health_check_interval(Duration::from_millis(250))
        .health_check_timeout(Duration::from_millis(500))
        .ban_backoff(Backoff::new(
            Duration::from_millis(250),
            Duration::from_secs(2),
        ))
        .statement_timeout(Some(Duration::from_secs(5)));
    let pool = PgReplicaPool::connect(
        &cluster.primary_url(),
        &[&replicas[0], &replicas[1]],
        config,
    )
    .await?;
    let stop = Arc::new(AtomicBool::new(false));

    let mut tasks = Vec::new();
    for t in 0..8_i64 {
        let (pool, stop) = (pool.clone(), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let writer = t < 2;
            let mut tally = Tally::default();
            let mut i = 0_i64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let started = Instant::now();
                let ok = if writer {
                    let k = t * 1_000_000_000 + i;
                    let r = sqlx::query("INSERT INTO chaos_writes (k) VALUES ($1)")
                        .bind(k)
                        .execute(&pool)
                        .await;
                    if r.is_ok() {
                        tally.acked.push(k);
                    }
                    r.is_ok()
                } else {
                    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM chaos_writes WHERE id = $1")
                        .bind(i % 1000)
                        .fetch_one(&pool)
                        .await
                        .is_ok()
                };
                tally.latencies.push(started.elapsed());
                if ok {
                    tally.ok += 1
                } else {
                    tally.failed += 1
                }
                if writer {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            (writer, tally)
        }));
    }

    // Crash a replica every 4 s, bring it back 2 s later.
    let started = Instant::now();
    let mut crashes = 0;
    let mut victim = 1;
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if started.elapsed() >= Duration::from_secs(seconds) {
            break;
        }
        let c = Arc::clone(&cluster);
        tokio::task::spawn_blocking(move || c.stop(victim)).await?;
        crashes += 1;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let c = Arc::clone(&cluster);
        tokio::task::spawn_blocking(move || c.restart(victim)).await?;
        victim = 3 - victim;
    }
    stop.store(true, Ordering::Relaxed);

    let (mut reads, mut writes) = (Tally::default(), Tally::default());
    for task in tasks {
        let (writer, t) = task.await?;
        let into = if writer { &mut writes } else { &mut reads };
        into.ok += t.ok;
        into.failed += t.failed;
        into.latencies.extend(t.latencies);
        into.acked.extend(t.acked);
    }
    let status = pool.status();
    let retries: u64 = status.nodes.iter().map(|n| n.retries).sum();
    println!("{status}");
    pool.close().await;

    // Every acknowledged write must be on the primary exactly once.
    let counts = cluster.psql(0, "SELECT count(*), count(DISTINCT k) FROM chaos_writes");
    let (rows, distinct) = counts.split_once('|').unwrap_or(("0", "0"));
    let present: std::collections::HashSet<i64> = cluster
        .psql(
            0,
            "SELECT coalesce(string_agg(k::text, ','), '') FROM chaos_writes",
        )
        .split(',')
        .filter(|v| !v.is_empty())
        .map(|v| v.parse().unwrap())
        .collect();
    let lost = writes.acked.iter().filter(|k| !present.contains(k)).count();
    let duplicated = rows.parse::<u64>()? - distinct.parse::<u64>()?;

    for t in [&mut reads, &mut writes] {
        t.latencies.sort();
    }
    println!("chaos: {seconds} s, {crashes} replica crashes (each restarted after 2 s)");
    println!(
        "reads:  {} ok, {} failed, {retries} retried; p50 {:?}, p99 {:?}",
        reads.ok,
        reads.failed,
        percentile(&reads.latencies, 0.5),
        percentile(&reads.latencies, 0.99)
    );
    println!(
        "writes: {} acknowledged, {} failed, {lost} lost, {duplicated} applied twice; p50 {:?}, p99 {:?}",
        writes.ok,
        writes.failed,
        percentile(&writes.latencies, 0.5),
        percentile(&writes.latencies, 0.99)
    );
    if reads.failed > 0 || lost > 0 || duplicated > 0 {
        std::process::exit(1);
    }
    Ok(())
}
