//! What partypool costs beside a plain `sqlx::PgPool`, measured side by side (interleaved) on a
//! local cluster the example starts itself:
//!
//! - `latency`: point-select latency (p50 / p99 / p99.9) at 1, 8 and 32 tasks, 8 connections
//!   per pool, partypool over primary + replica beside a plain pool on that replica.
//! - `rows`: `fetch_all` and streaming `fetch` of 1k- and 100k-row results: rows/s and bytes
//!   allocated per row.
//! - `replicas`: per-statement latency, `status()` and the health round with 1, 4 and 16
//!   replicas.
//! - `idle`: the queries partypool itself sends each replica, for 1 and 100 pools, idle and
//!   with sessions reading their writes.
//! - `pgpool`: the point-select workload through Pgpool-II too, when `pgpool` is installed
//!   (`apt-get install pgpool2`), with routing checked by `pg_stat_statements`.
//!
//! `cargo run --release --example cost -- [latency|rows|replicas|idle|pgpool|all] [secs]`

#[path = "../tests/support/mod.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use partypool::{Config, PgReplicaPool};
use sqlx::postgres::PgPoolOptions;

/// Counts bytes allocated, to compare what a call allocates per row through each pool.
/// (An example-only allocator: the library itself forbids `unsafe`.)
struct Counting;

static ALLOCATED: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CONNECTIONS: u32 = 8;
const ROWS: i64 = 100_000;

#[derive(Clone)]
enum Side {
    Plain(sqlx::PgPool),
    Party(PgReplicaPool),
}

impl Side {
    fn name(&self) -> &'static str {
        match self {
            Side::Plain(_) => "plain PgPool",
            Side::Party(_) => "partypool",
        }
    }

    async fn point(&self, id: i64) -> Result<String, sqlx::Error> {
        let q = sqlx::query_scalar::<_, String>("SELECT v FROM bench_kv WHERE id = $1").bind(id);
        match self {
            Side::Plain(p) => q.fetch_one(p).await,
            Side::Party(p) => q.fetch_one(p).await,
        }
    }

    async fn fetch_all(&self, n: i64) -> usize {
        let q = sqlx::query("SELECT id, v FROM bench_kv WHERE id <= $1").bind(n);
        match self {
            Side::Plain(p) => q.fetch_all(p).await,
            Side::Party(p) => q.fetch_all(p).await,
        }
        .expect("fetch_all")
        .len()
    }

    async fn stream(&self, n: i64) -> usize {
        let q = sqlx::query("SELECT id, v FROM bench_kv WHERE id <= $1").bind(n);
        match self {
            Side::Plain(p) => {
                q.fetch(p)
                    .try_fold(0, |n, _| async move { Ok(n + 1) })
                    .await
            }
            Side::Party(p) => {
                q.fetch(p)
                    .try_fold(0, |n, _| async move { Ok(n + 1) })
                    .await
            }
        }
        .expect("fetch")
    }
}

fn pct(sorted: &[Duration], q: f64) -> Duration {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * q).round() as usize)
        .copied()
        .unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// `tasks` tasks run point selects for `secs`; every latency is kept.
async fn drive(side: &Side, tasks: usize, secs: f64) -> Vec<Duration> {
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (side, stop) = (side.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(100_000);
                let mut i = t as i64 * 7919;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let started = Instant::now();
                    side.point(i * 31 % 10_000 + 1).await.expect("point select");
                    lat.push(started.elapsed());
                }
                lat
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all
}

fn cluster_with_data(replicas: usize) -> support::PgCluster {
    let cluster = support::PgCluster::start(replicas);
    cluster.psql(
        0,
        &format!(
            "CREATE TABLE bench_kv (id bigint PRIMARY KEY, v text NOT NULL); \
             INSERT INTO bench_kv SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g"
        ),
    );
    cluster.psql(0, "VACUUM ANALYZE bench_kv");
    cluster.wait_replayed();
    cluster
}

async fn plain_on(url: &str, connections: u32) -> sqlx::PgPool {
    PgPoolOptions::new()
        .max_connections(connections)
        .min_connections(connections)
        .connect(url)
        .await
        .expect("plain pool")
}

fn party_config(connections: u32) -> Config {
    Config {
        max_connections: connections,
        min_connections: connections,
        // The primary is not used by these reads; keep it small.
        primary_max_connections: Some(1),
        ..Config::default()
    }
}

async fn pair(cluster: &support::PgCluster) -> (Side, Side) {
    let plain = plain_on(&cluster.url(1), CONNECTIONS).await;
    let party = PgReplicaPool::connect(
        &cluster.primary_url(),
        &[&cluster.url(1)],
        party_config(CONNECTIONS),
    )
    .await
    .expect("partypool");
    (Side::Plain(plain), Side::Party(party))
}

async fn latency(secs: f64) {
    let cluster = cluster_with_data(1);
    let (plain, party) = pair(&cluster).await;
    println!(
        "\n## Point-select latency, {CONNECTIONS} connections per pool ({secs} s per side, interleaved in 1 s slices)\n"
    );
    println!("| tasks | pool | queries/s | p50 | p99 | p99.9 | p99 ratio |");
    println!("|---|---|---|---|---|---|---|");
    for tasks in [1usize, 8, 32] {
        // Warm both sides up.
        drive(&plain, tasks, 0.5).await;
        drive(&party, tasks, 0.5).await;
        let mut runs = [Vec::new(), Vec::new()];
        let slices = secs.ceil() as usize;
        for slice in 0..slices {
            // Alternate which side goes first, so neither always follows the other.
            let order = if slice % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let side = [&plain, &party][i];
                runs[i].extend(drive(side, tasks, 1.0).await);
            }
        }
        let mut p99 = [Duration::ZERO; 2];
        for (i, side) in [&plain, &party].into_iter().enumerate() {
            let lat = &mut runs[i];
            lat.sort();
            p99[i] = pct(lat, 0.99);
            let ratio = if i == 1 {
                format!("{:.2}", p99[1].as_secs_f64() / p99[0].as_secs_f64())
            } else {
                "-".into()
            };
            println!(
                "| {tasks} | {} | {:.0} | {} | {} | {} | {ratio} |",
                side.name(),
                lat.len() as f64 / slices as f64,
                ms(pct(lat, 0.5)),
                ms(p99[i]),
                ms(pct(lat, 0.999)),
            );
        }
    }
}

async fn rows(secs: f64) {
    let cluster = cluster_with_data(1);
    let (plain, party) = pair(&cluster).await;
    println!("\n## Large results ({secs} s per case and side, interleaved call by call)\n");
    println!("| call | rows | pool | calls | rows/s | ratio | bytes allocated per row |");
    println!("|---|---|---|---|---|---|---|");
    for (call, n) in [
        ("fetch_all", 1_000),
        ("fetch", 1_000),
        ("fetch_all", 100_000),
        ("fetch", 100_000),
    ] {
        let run = |side: &Side| {
            let side = side.clone();
            async move {
                let before = ALLOCATED.load(Ordering::Relaxed);
                let started = Instant::now();
                let got = match call {
                    "fetch_all" => side.fetch_all(n).await,
                    _ => side.stream(n).await,
                };
                assert_eq!(got as i64, n);
                (
                    started.elapsed(),
                    ALLOCATED.load(Ordering::Relaxed) - before,
                )
            }
        };
        // Warm up.
        run(&plain).await;
        run(&party).await;
        let (mut time, mut bytes, mut calls) = ([Duration::ZERO; 2], [0u64; 2], 0u64);
        let deadline = Instant::now() + Duration::from_secs_f64(secs * 2.0);
        while Instant::now() < deadline || calls < 3 {
            for (i, side) in [&plain, &party].into_iter().enumerate() {
                let (t, b) = run(side).await;
                time[i] += t;
                bytes[i] += b;
            }
            calls += 1;
        }
        for (i, side) in [&plain, &party].into_iter().enumerate() {
            let rate = (calls * n as u64) as f64 / time[i].as_secs_f64();
            let ratio = if i == 1 {
                format!("{:.3}", time[0].as_secs_f64() / time[1].as_secs_f64())
            } else {
                "-".into()
            };
            println!(
                "| `{call}` | {n} | {} | {calls} | {:.0} | {ratio} | {:.1} |",
                side.name(),
                rate,
                bytes[i] as f64 / (calls * n as u64) as f64
            );
        }
    }
}

async fn replicas(secs: f64) {
    const MOST: usize = 16;
    let cluster = cluster_with_data(MOST);
    let plain = Side::Plain(plain_on(&cluster.url(1), 2).await);
    println!(
        "\n## Many replicas: 2 connections each, one task, point selects ({secs} s per side)\n"
    );
    println!(
        "| replicas | connect | health round | `status()` | mean latency, partypool | mean latency, plain | ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    for n in [1usize, 4, 16] {
        let urls: Vec<String> = (1..=n).map(|i| cluster.url(i)).collect();
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        let started = Instant::now();
        let pool = PgReplicaPool::connect(
            &cluster.primary_url(),
            &urls,
            Config {
                health_check_interval: Duration::from_millis(200),
                ..party_config(2)
            },
        )
        .await
        .expect("partypool");
        let connect = started.elapsed();
        // Let a few health rounds run.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let round = pool.status().health_round.unwrap_or_default();
        let started = Instant::now();
        for _ in 0..1_000 {
            std::hint::black_box(pool.status());
        }
        let status = started.elapsed() / 1_000;
        let party = Side::Party(pool.clone());
        drive(&party, 1, 0.3).await;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..secs.ceil() as usize {
            a.extend(drive(&party, 1, 1.0).await);
            b.extend(drive(&plain, 1, 1.0).await);
        }
        let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len() as u32;
        let (ma, mb) = (mean(&a), mean(&b));
        println!(
            "| {n} | {} | {} | {:.1} µs | {} | {} | {:.2} |",
            ms(connect),
            ms(round),
            status.as_secs_f64() * 1e6,
            ms(ma),
            ms(mb),
            ma.as_secs_f64() / mb.as_secs_f64()
        );
        pool.close().await;
    }
}

/// Statements partypool sends on its own: probes and replay-position refreshes.
fn own_statements(cluster: &support::PgCluster, node: usize) -> usize {
    cluster.statements_logged_matching(node, &["pg_is_in_recovery()", "pg_last_wal_replay_lsn()"])
}

async fn idle(secs: f64) {
    let cluster = cluster_with_data(1);
    cluster.log_statements(1);
    println!("\n## Background load on a replica ({secs} s per case, default `Config`)\n");
    println!(
        "| pools | sessions | partypool's own queries on the replica | per second | per second per pool |"
    );
    println!("|---|---|---|---|---|");
    for (pools, sessions) in [(1usize, 0usize), (100, 0), (1, 50), (100, 1)] {
        let mut handles = Vec::new();
        for _ in 0..pools {
            handles.push(
                PgReplicaPool::connect(
                    &cluster.primary_url(),
                    &[&cluster.url(1)],
                    Config {
                        max_connections: 2,
                        min_connections: 0,
                        ..Config::default()
                    },
                )
                .await
                .expect("partypool"),
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = own_statements(&cluster, 1);
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for s in 0..sessions * pools {
            let pool = handles[s % pools].clone();
            let stop = Arc::clone(&stop);
            workers.push(tokio::spawn(async move {
                // Each session writes once a second and reads its write every 20 ms.
                let session = pool.session();
                let mut last_write = Instant::now() - Duration::from_secs(2);
                while !stop.load(Ordering::Relaxed) {
                    if last_write.elapsed() >= Duration::from_secs(1) {
                        sqlx::query("UPDATE bench_kv SET v = v WHERE id = $1")
                            .bind(s as i64 + 1)
                            .execute(&session)
                            .await
                            .expect("write");
                        last_write = Instant::now();
                    }
                    sqlx::query_scalar::<_, String>("SELECT v FROM bench_kv WHERE id = $1")
                        .bind(s as i64 + 1)
                        .fetch_one(&session)
                        .await
                        .expect("read");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.await.unwrap();
        }
        // The server writes its log as statements run; give it a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let own = own_statements(&cluster, 1) - before;
        println!(
            "| {pools} | {} | {own} | {:.1} | {:.2} |",
            sessions * pools,
            own as f64 / secs,
            own as f64 / secs / pools as f64
        );
        for p in handles {
            p.close().await;
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map(String::as_str).unwrap_or("all");
    let secs: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(6.0);
    if matches!(what, "latency" | "all") {
        latency(secs).await;
    }
    if matches!(what, "rows" | "all") {
        rows(secs).await;
    }
    if matches!(what, "replicas" | "all") {
        replicas(secs).await;
    }
    if matches!(what, "idle" | "all") {
        idle(secs).await;
    }
}
