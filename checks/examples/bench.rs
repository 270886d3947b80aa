//! End-to-end benchmark on a local cluster it starts itself (primary + 4 streaming replicas).
//!
//! 1. Point selects and a pgbench-like mixed workload (a TPC-B transaction plus 4 point
//!    selects per round) at 8, 32 and 64 concurrent tasks: partypool (primary + 4 replicas)
//!    beside a plain `sqlx::PgPool` on the primary with the same total connections.
//! 2. A slow replica: the test fault proxy adds 5 ms to one of two replicas; point selects at
//!    32 tasks under round-robin, least-outstanding and latency-aware balancing.
//! 3. Resident memory of a pool with 1 primary + 4 replicas, idle and under 64 tasks, beside a
//!    plain pool with the same connections (each measured in a fresh process).
//!
//! `cargo run --release --example bench` (about 2 minutes; `-- quick` for 2 s runs)

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use partypool::{Balance, Config, PgReplicaPool};
use sqlx::postgres::PgPoolOptions;
use support::proxy::{Fault, FaultProxy};

const ACCOUNTS: i64 = 100_000;
const TOTAL_CONNECTIONS: u32 = 20;

#[derive(Clone)]
enum Target {
    Plain(sqlx::PgPool),
    Party(PgReplicaPool),
}

async fn point(t: &Target, id: i64) -> Result<(), sqlx::Error> {
    let q =
        sqlx::query_scalar::<_, i64>("SELECT abalance FROM pgb_accounts WHERE aid = $1").bind(id);
    match t {
        Target::Plain(p) => q.fetch_one(p).await.map(drop),
        Target::Party(p) => q.fetch_one(p).await.map(drop),
    }
}

/// One TPC-B transaction (as pgbench's built-in script), on the primary.
async fn tpcb(t: &Target, aid: i64) -> Result<(), sqlx::Error> {
    let (bid, tid, delta) = (aid % 10 + 1, aid % 100 + 1, aid % 5000 - 2500);
    let mut tx = match t {
        Target::Plain(p) => p.begin().await?,
        Target::Party(p) => p.begin().await?,
    };
    sqlx::query("UPDATE pgb_accounts SET abalance = abalance + $1 WHERE aid = $2")
        .bind(delta)
        .bind(aid)
        .execute(&mut *tx)
        .await?;
    sqlx::query_scalar::<_, i64>("SELECT abalance FROM pgb_accounts WHERE aid = $1")
        .bind(aid)
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query("UPDATE pgb_tellers SET tbalance = tbalance + $1 WHERE tid = $2")
        .bind(delta)
        .bind(tid)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE pgb_branches SET bbalance = bbalance + $1 WHERE bid = $2")
        .bind(delta)
        .bind(bid)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO pgb_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, now())",
    )
    .bind(tid)
    .bind(bid)
    .bind(aid)
    .bind(delta)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

struct Run {
    ops: u64,
    errors: u64,
    secs: f64,
    latencies: Vec<Duration>,
}

impl Run {
    fn pct(&self, q: f64) -> Duration {
        self.latencies
            .get(((self.latencies.len().max(1) - 1) as f64 * q) as usize)
            .copied()
            .unwrap_or_default()
    }
}

async fn drive(target: &Target, tasks: usize, secs: f64, mixed: bool) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (target, stop) = (target.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let (mut ops, mut errors, mut lat) = (0u64, 0u64, Vec::new());
                let mut i = t as i64 * 7919;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let started = Instant::now();
                    let aid = i * 31 % ACCOUNTS + 1;
                    let r = if mixed && i % 5 == 0 {
                        tpcb(&target, aid).await
                    } else {
                        point(&target, aid).await
                    };
                    lat.push(started.elapsed());
                    if r.is_ok() { ops += 1 } else { errors += 1 }
                }
                (ops, errors, lat)
            })
        })
        .collect();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut run = Run {
        ops: 0,
        errors: 0,
        secs: 0.0,
        latencies: Vec::new(),
    };
    for h in handles {
        let (o, e, l) = h.await.unwrap();
        run.ops += o;
        run.errors += e;
        run.latencies.extend(l);
    }
    run.secs = started.elapsed().as_secs_f64();
    run.latencies.sort();
    run
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0)
}

/// Child process: build one kind of pool from URLs in the environment, report RSS.
async fn memory_child(kind: &str) {
    let primary = std::env::var("BENCH_PRIMARY").unwrap();
    let replicas: Vec<String> = std::env::var("BENCH_REPLICAS")
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    let before = rss_kib();
    let per_node = TOTAL_CONNECTIONS / 5;
    let target = if kind == "plain" {
        Target::Plain(
            PgPoolOptions::new()
                .max_connections(TOTAL_CONNECTIONS)
                .min_connections(TOTAL_CONNECTIONS)
                .connect(&primary)
                .await
                .unwrap(),
        )
    } else {
        let replicas: Vec<&str> = replicas.iter().map(String::as_str).collect();
        let config = Config::default()
            .max_connections(per_node)
            .min_connections(per_node);
        Target::Party(
            PgReplicaPool::connect(&primary, &replicas, config)
                .await
                .unwrap(),
        )
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib();
    let _ = drive(&target, 64, 3.0, false).await;
    let loaded = rss_kib();
    println!("{kind} {} {} {}", before, idle, loaded);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("memory-child") {
        memory_child(&args[2]).await;
        return Ok(());
    }
    let secs = if args.get(1).map(String::as_str) == Some("quick") {
        2.0
    } else {
        5.0
    };

    let cluster = support::PgCluster::start(4);
    cluster.psql(0, &format!(
        "CREATE TABLE pgb_branches (bid int PRIMARY KEY, bbalance int NOT NULL DEFAULT 0);
         CREATE TABLE pgb_tellers (tid int PRIMARY KEY, bid int, tbalance int NOT NULL DEFAULT 0);
         CREATE TABLE pgb_accounts (aid bigint PRIMARY KEY, bid int, abalance bigint NOT NULL DEFAULT 0, filler char(84));
         CREATE TABLE pgb_history (tid int, bid int, aid bigint, delta bigint, mtime timestamp, filler char(22));
         INSERT INTO pgb_branches (bid) SELECT g FROM generate_series(1, 10) g;
         INSERT INTO pgb_tellers (tid, bid) SELECT g, g % 10 + 1 FROM generate_series(1, 100) g;
         INSERT INTO pgb_accounts (aid, bid) SELECT g, g % 10 + 1 FROM generate_series(1, {ACCOUNTS}) g;"
    ));
    cluster.psql(0, "VACUUM ANALYZE");
    cluster.wait_replayed();
    let replicas = cluster.replica_urls();

    // 1. Throughput and latency beside a plain pool.
    let plain = Target::Plain(
        PgPoolOptions::new()
            .max_connections(TOTAL_CONNECTIONS)
            .min_connections(TOTAL_CONNECTIONS)
            .connect(&cluster.primary_url())
            .await?,
    );
    let per_node = TOTAL_CONNECTIONS / 5;
    let refs: Vec<&str> = replicas.iter().map(String::as_str).collect();
    let party = Target::Party(
        PgReplicaPool::connect(
            &cluster.primary_url(),
            &refs,
            Config::default()
                .max_connections(per_node)
                .min_connections(per_node),
        )
        .await?,
    );
    // The same server behind partypool's routing: the primary, and itself as the only
    // "replica" (all 20 connections), to isolate what routing costs.
    let same_node = Target::Party(
        PgReplicaPool::connect(
            &cluster.primary_url(),
            &[&cluster.primary_url()],
            Config::default()
                .max_connections(TOTAL_CONNECTIONS)
                .min_connections(TOTAL_CONNECTIONS)
                .primary_max_connections(Some(TOTAL_CONNECTIONS)),
        )
        .await?,
    );
    println!(
        "## Throughput: partypool (primary + 4 replicas, {per_node} connections each) vs a plain PgPool on the primary ({TOTAL_CONNECTIONS} connections); {secs} s per cell\n"
    );
    println!(
        "| workload | tasks | plain ops/s | plain p50 / p99 | partypool, same node ops/s (ratio) | partypool, 1 + 4 nodes ops/s | p50 / p99 | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for mixed in [false, true] {
        for tasks in [8, 32, 64] {
            let a = drive(&plain, tasks, secs, mixed).await;
            let s = drive(&same_node, tasks, secs, mixed).await;
            let b = drive(&party, tasks, secs, mixed).await;
            let (ta, ts, tb) = (
                a.ops as f64 / a.secs,
                s.ops as f64 / s.secs,
                b.ops as f64 / b.secs,
            );
            println!(
                "| {} | {tasks} | {ta:.0} | {:.2} / {:.2} ms | {ts:.0} ({:.2}) | {tb:.0} | {:.2} / {:.2} ms | {:.2} |",
                if mixed {
                    "mixed (TPC-B + 4 point selects)"
                } else {
                    "point select"
                },
                a.pct(0.5).as_secs_f64() * 1e3,
                a.pct(0.99).as_secs_f64() * 1e3,
                ts / ta,
                b.pct(0.5).as_secs_f64() * 1e3,
                b.pct(0.99).as_secs_f64() * 1e3,
                tb / ta
            );
            assert_eq!(a.errors + s.errors + b.errors, 0, "errors in the benchmark");
        }
    }
    for t in [&party, &same_node] {
        if let Target::Party(p) = t {
            p.close().await;
        }
    }

    // 2. One slow replica.
    println!("\n## One of two replicas 5 ms slower (fault proxy), point selects, {secs} s each\n");
    println!("| balance | ops/s | p50 | p99 | reads on the slow replica |");
    println!("|---|---|---|---|---|");
    let proxy = FaultProxy::start(cluster.replica(1).port);
    let through_proxy = cluster.url_via(proxy.port);
    for tasks in [8, 32] {
        for (balance, fault) in [
            (Balance::RoundRobin, Fault::Pass),
            (
                Balance::RoundRobin,
                Fault::Latency(Duration::from_millis(5)),
            ),
            (
                Balance::LeastOutstanding,
                Fault::Latency(Duration::from_millis(5)),
            ),
            (
                Balance::LatencyAware,
                Fault::Latency(Duration::from_millis(5)),
            ),
        ] {
            proxy.set(fault);
            let label = if fault == Fault::Pass {
                format!("{tasks} tasks, {balance:?}, healthy (no delay)")
            } else {
                format!("{tasks} tasks, {balance:?}")
            };
            // Enough connections that no task waits for one: the balancer, not the pool, decides.
            let pool = PgReplicaPool::connect(
                &cluster.primary_url(),
                &[&through_proxy, &replicas[1]],
                Config::default().balance(balance).max_connections(32),
            )
            .await?;
            let run = drive(&Target::Party(pool.clone()), tasks, secs, false).await;
            let status = pool.status();
            let (s, f) = (status.nodes[1].queries, status.nodes[2].queries);
            println!(
                "| {label} | {:.0} | {:.2} ms | {:.2} ms | {:.1}% |",
                run.ops as f64 / run.secs,
                run.pct(0.5).as_secs_f64() * 1e3,
                run.pct(0.99).as_secs_f64() * 1e3,
                100.0 * s as f64 / (s + f).max(1) as f64
            );
            pool.close().await;
        }
    }
    drop(proxy);

    // 3. Memory, each in a fresh process.
    println!("\n## Resident memory (KiB), {TOTAL_CONNECTIONS} connections in total\n");
    println!("| pool | before | idle (connected) | under 64 tasks |");
    println!("|---|---|---|---|");
    for kind in ["plain", "partypool"] {
        let out = std::process::Command::new(std::env::current_exe()?)
            .args(["memory-child", kind])
            .env("BENCH_PRIMARY", cluster.primary_url())
            .env("BENCH_REPLICAS", replicas.join(","))
            .output()?;
        let line = String::from_utf8_lossy(&out.stdout);
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 4 {
            println!(
                "| {} | {} | {} | {} |",
                if kind == "plain" {
                    "plain PgPool (1 node)"
                } else {
                    "partypool (1 + 4 nodes)"
                },
                f[1],
                f[2],
                f[3]
            );
        } else {
            println!(
                "| {kind} | failed: {} |",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
        }
    }
    Ok(())
}
