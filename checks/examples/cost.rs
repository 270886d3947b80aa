//! What partypool costs beside a plain `sqlx::PgPool`, measured side by side (interleaved) on a
//! local cluster the example starts itself:
//!
//! - `latency`: point-select latency (p50 / p99 / p99.9) at 1, 8 and 32 tasks, 8 connections
//!   per pool, partypool over primary + replica beside a plain pool on that replica.
//! - `mixed`: the same with every 5th operation a one-row `UPDATE` (80/20), beside plain pools
//!   on the replica (reads) and the primary (writes).
//! - `rows`: `fetch_all` and streaming `fetch` of 1k- and 100k-row results: rows/s and bytes
//!   allocated per row.
//! - `replicas`: per-statement latency, `status()` and the health round with 1, 4 and 16
//!   replicas.
//! - `idle`: the queries partypool itself sends each replica, for 1 and 100 pools, idle and
//!   with sessions reading their writes.
//! - `pgpool`: the point-select workload through Pgpool-II too, when `pgpool` is installed
//!   (`apt-get install pgpool2`), with routing checked by `pg_stat_statements`.
//!
//! - `consistency`: read-your-writes by scope — the process (the default), request scopes only,
//!   off — beside plain pools, read-only and 80/20, at 1, 8 and 32 tasks: throughput, p50,
//!   p99, the share of reads replicas served, and statements on the primary per write.
//!
//! `cargo run --release --example cost -- [latency|mixed|consistency|rows|replicas|idle|pgpool|all] [secs]`

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
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size as u64, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
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
    /// A plain pool on the replica for reads and one on the primary for writes: the split an
    /// application makes by hand.
    PlainPair(sqlx::PgPool, sqlx::PgPool),
    Party(PgReplicaPool),
    /// partypool with every operation in its own request scope (`Session::scope`), as the
    /// tower layer and the actix-web middleware run requests.
    Scoped(PgReplicaPool),
    /// Plain pools over several replicas, taken in turn: what partypool's round-robin
    /// does, without anything else.
    RoundRobin(Arc<(Vec<sqlx::PgPool>, AtomicU64)>),
}

impl Side {
    fn name(&self) -> &'static str {
        match self {
            Side::Plain(_) => "plain PgPool",
            Side::PlainPair(..) => "plain PgPools (replica + primary)",
            Side::Party(_) => "partypool",
            Side::Scoped(_) => "partypool, request scopes",
            Side::RoundRobin(_) => "plain pools in turn",
        }
    }

    async fn point(&self, id: i64) -> Result<String, sqlx::Error> {
        let q = sqlx::query_scalar::<_, String>("SELECT v FROM bench_kv WHERE id = $1").bind(id);
        match self {
            Side::Plain(p) | Side::PlainPair(p, _) => q.fetch_one(p).await,
            Side::Party(p) => q.fetch_one(p).await,
            Side::Scoped(p) => p.session().scope(q.fetch_one(p)).await,
            Side::RoundRobin(rr) => {
                let i = rr.1.fetch_add(1, Ordering::Relaxed) as usize % rr.0.len();
                q.fetch_one(&rr.0[i]).await
            }
        }
    }

    /// A one-row write on the primary.
    async fn write(&self, id: i64) -> Result<(), sqlx::Error> {
        let q = sqlx::query("UPDATE bench_kv SET v = md5(v) WHERE id = $1").bind(id);
        match self {
            Side::PlainPair(_, primary) => q.execute(primary).await.map(drop),
            Side::Party(p) => q.execute(p).await.map(drop),
            Side::Scoped(p) => p.session().scope(q.execute(p)).await.map(drop),
            _ => unreachable!("writes need a primary"),
        }
    }

    async fn fetch_all(&self, n: i64) -> usize {
        let q = sqlx::query("SELECT id, v FROM bench_kv WHERE id <= $1").bind(n);
        match self {
            Side::Plain(p) => q.fetch_all(p).await,
            Side::Party(p) => q.fetch_all(p).await,
            _ => unreachable!(),
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
            _ => unreachable!(),
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
    drive_mix(side, tasks, secs, false).await
}

/// Like [`drive`]; with `mixed`, every 5th operation is a one-row write (80/20).
async fn drive_mix(side: &Side, tasks: usize, secs: f64, mixed: bool) -> Vec<Duration> {
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
                    let id = i * 31 % 10_000 + 1;
                    if mixed && i % 5 == 0 {
                        side.write(id).await.expect("write");
                    } else {
                        side.point(id).await.expect("point select");
                    }
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
    Config::default()
        .max_connections(connections)
        .min_connections(connections)
        // The primary is not used by these reads; keep it small.
        .primary_max_connections(Some(1))
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

async fn latency(secs: f64, mixed: bool) {
    let cluster = cluster_with_data(1);
    let (plain, party) = pair(&cluster).await;
    let (plain, party) = if mixed {
        let Side::Plain(replica) = plain else {
            unreachable!()
        };
        let primary = plain_on(&cluster.primary_url(), CONNECTIONS).await;
        let party = PgReplicaPool::connect(
            &cluster.primary_url(),
            &[&cluster.url(1)],
            party_config(CONNECTIONS).primary_max_connections(Some(CONNECTIONS)),
        )
        .await
        .expect("partypool");
        (Side::PlainPair(replica, primary), Side::Party(party))
    } else {
        (plain, party)
    };
    let what = if mixed {
        "80% point selects, 20% one-row updates"
    } else {
        "Point-select latency"
    };
    println!(
        "\n## {what}, {CONNECTIONS} connections per pool ({secs} s per side, interleaved in 1 s slices)\n"
    );
    println!(
        "| tasks | pool | queries/s | p50 | p99 | p99.9 | p99 ratio | allocations per query | bytes per query |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for tasks in [1usize, 8, 32] {
        // Warm both sides up.
        drive_mix(&plain, tasks, 0.5, mixed).await;
        drive_mix(&party, tasks, 0.5, mixed).await;
        let mut runs = [Vec::new(), Vec::new()];
        let mut allocs = [(0u64, 0u64); 2];
        let slices = secs.ceil() as usize;
        for slice in 0..slices {
            // Alternate which side goes first, so neither always follows the other.
            let order = if slice % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let side = [&plain, &party][i];
                let (n0, b0) = (
                    ALLOCATIONS.load(Ordering::Relaxed),
                    ALLOCATED.load(Ordering::Relaxed),
                );
                let lat = drive_mix(side, tasks, 1.0, mixed).await;
                // Less each task's latency vector (one allocation of 100,000 entries).
                let vectors = tasks as u64;
                allocs[i].0 += ALLOCATIONS.load(Ordering::Relaxed) - n0 - vectors;
                allocs[i].1 += ALLOCATED.load(Ordering::Relaxed) - b0 - vectors * 100_000 * 16;
                runs[i].extend(lat);
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
                "| {tasks} | {} | {:.0} | {} | {} | {} | {ratio} | {:.1} | {:.0} |",
                side.name(),
                lat.len() as f64 / slices as f64,
                ms(pct(lat, 0.5)),
                ms(p99[i]),
                ms(pct(lat, 0.999)),
                allocs[i].0 as f64 / lat.len() as f64,
                allocs[i].1 as f64 / lat.len() as f64,
            );
        }
    }
}

/// Read-your-writes by scope, side by side (interleaved in 1 s slices).
async fn consistency(secs: f64) {
    use partypool::Scope;
    let cluster = cluster_with_data(1);
    // Every statement the primary runs is logged, for every side alike: the position
    // queries read-your-writes adds are counted from the log.
    cluster.log_statements(0);
    cluster.log_statements(1);
    let (primary, replica) = (cluster.primary_url(), cluster.url(1));
    let party = |scope: Scope| {
        PgReplicaPool::builder()
            .primary(primary.clone())
            .replica(replica.clone())
            .config(
                party_config(CONNECTIONS)
                    .primary_max_connections(Some(CONNECTIONS))
                    .consistency_scope(scope),
            )
            .connect()
    };
    let sides = [
        Side::PlainPair(
            plain_on(&cluster.url(1), CONNECTIONS).await,
            plain_on(&cluster.primary_url(), CONNECTIONS).await,
        ),
        Side::Party(party(Scope::Process).await.expect("partypool")),
        Side::Scoped(party(Scope::Session).await.expect("partypool")),
        Side::Party(party(Scope::Off).await.expect("partypool")),
    ];
    let names = [
        "plain PgPools (replica + primary)",
        "partypool, process scope (default)",
        "partypool, request scopes only",
        "partypool, consistency off",
    ];
    let replica_queries = |side: &Side| match side {
        Side::Party(p) | Side::Scoped(p) => p.status().node("replica-1").map_or(0, |n| n.queries),
        _ => 0,
    };
    for mixed in [false, true] {
        let what = if mixed {
            "80% point selects, 20% one-row updates"
        } else {
            "point selects only"
        };
        println!(
            "\n## Read-your-writes by scope: {what} ({secs} s per side, interleaved in 1 s slices)\n"
        );
        println!(
            "| tasks | pool | ops/s | p50 | p99 | reads on the replica | statements on the primary per write |"
        );
        println!("|---|---|---|---|---|---|---|");
        for tasks in [1usize, 8, 32] {
            for side in &sides {
                drive_mix(side, tasks, 0.3, mixed).await;
            }
            let slices = secs.ceil() as usize;
            let mut runs: Vec<Vec<Duration>> = vec![Vec::new(); sides.len()];
            let mut on_replica = vec![0u64; sides.len()];
            let mut positions = vec![0usize; sides.len()];
            let mut checks = vec![0usize; sides.len()];
            let replay = || cluster.statements_logged_matching(1, &["pg_last_wal_replay_lsn"]);
            for slice in 0..slices {
                for k in 0..sides.len() {
                    let i = (k + slice) % sides.len();
                    let side = &sides[i];
                    let (q0, p0, r0) = (
                        replica_queries(side),
                        cluster.statements_logged_matching(0, &["pg_current_wal_insert_lsn"]),
                        replay(),
                    );
                    runs[i].extend(drive_mix(side, tasks, 1.0, mixed).await);
                    on_replica[i] += replica_queries(side) - q0;
                    positions[i] +=
                        cluster.statements_logged_matching(0, &["pg_current_wal_insert_lsn"]) - p0;
                    checks[i] += replay() - r0;
                }
            }
            for (i, lat) in runs.iter_mut().enumerate() {
                lat.sort();
                let ops = lat.len();
                let writes = if mixed { ops / 5 } else { 0 };
                let reads = ops - writes;
                let share = match &sides[i] {
                    Side::PlainPair(..) => "100%".to_owned(),
                    _ => format!("{:.0}%", 100.0 * on_replica[i] as f64 / reads.max(1) as f64),
                };
                let per_write = if writes == 0 {
                    format!("- ({} position queries)", positions[i])
                } else {
                    format!("{:.2}", 1.0 + positions[i] as f64 / writes as f64)
                };
                let per_write_checks = if writes == 0 {
                    format!("- ({})", checks[i])
                } else {
                    format!("{:.2}", checks[i] as f64 / writes as f64)
                };
                println!(
                    "| {tasks} | {} | {:.0} | {} | {} | {share} | {per_write} | {per_write_checks} |",
                    names[i],
                    ops as f64 / slices as f64,
                    ms(pct(lat, 0.5)),
                    ms(pct(lat, 0.99)),
                );
            }
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
    println!(
        "\n## Many replicas: 2 connections each, one task, point selects ({secs} s per side, interleaved)\n"
    );
    println!("Baseline: plain `PgPool`s over the same replicas, taken in turn (the same spread of");
    println!("reads over servers, without partypool).\n");
    println!(
        "| replicas | connect | health round | `status()` | mean latency, partypool | mean latency, plain pools in turn | ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    for n in [1usize, 4, 16] {
        let urls: Vec<String> = (1..=n).map(|i| cluster.url(i)).collect();
        let mut plains = Vec::new();
        for url in &urls {
            plains.push(plain_on(url, 2).await);
        }
        let plain = Side::RoundRobin(Arc::new((plains, AtomicU64::new(0))));
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        let started = Instant::now();
        let pool = PgReplicaPool::connect(
            &cluster.primary_url(),
            &urls,
            party_config(2).health_check_interval(Duration::from_millis(200)),
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
        drive(&plain, 1, 0.3).await;
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
                    Config::default().max_connections(2).min_connections(0),
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

/// Pgpool-II in streaming-replication mode in front of `cluster` (primary weight 0, the
/// replica weight 1), or `None` when `pgpool` is not installed.
struct Pgpool {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Pgpool {
    fn start(cluster: &support::PgCluster) -> Option<Pgpool> {
        let bin = ["/usr/sbin/pgpool", "/usr/bin/pgpool"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())?;
        let dir = tempfile::tempdir().expect("temp dir");
        let port = support::free_port();
        let pcp_port = support::free_port();
        let d = dir.path().display();
        let conf = format!(
            "backend_clustering_mode = 'streaming_replication'\n\
             listen_addresses = '127.0.0.1'\nport = {port}\n\
             unix_socket_directories = '{d}'\npcp_listen_addresses = ''\n\
             pcp_port = {pcp_port}\npcp_socket_dir = '{d}'\n\
             backend_hostname0 = '127.0.0.1'\nbackend_port0 = {p0}\nbackend_weight0 = 0\n\
             backend_flag0 = 'ALLOW_TO_FAILOVER'\n\
             backend_hostname1 = '127.0.0.1'\nbackend_port1 = {p1}\nbackend_weight1 = 1\n\
             backend_flag1 = 'ALLOW_TO_FAILOVER'\n\
             enable_pool_hba = off\npool_passwd = ''\n\
             num_init_children = 40\nmax_pool = 2\n\
             load_balance_mode = on\n\
             sr_check_period = 0\nsr_check_user = 'postgres'\nsr_check_password = ''\n\
             health_check_period = 0\n\
             pid_file_name = '{d}/pgpool.pid'\nlogdir = '{d}'\n\
             log_min_messages = warning\n",
            p0 = cluster.primary().port,
            p1 = cluster.replica(1).port,
        );
        let conf_path = dir.path().join("pgpool.conf");
        std::fs::write(&conf_path, conf).unwrap();
        std::fs::write(dir.path().join("pcp.conf"), "").unwrap();
        std::fs::write(dir.path().join("pool_hba.conf"), "").unwrap();
        let log = std::fs::File::create(dir.path().join("pgpool.log")).unwrap();
        let child = std::process::Command::new(bin)
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-F")
            .arg(dir.path().join("pcp.conf"))
            .arg("-a")
            .arg(dir.path().join("pool_hba.conf"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start pgpool");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "pgpool did not start: see its log in {d}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(Pgpool {
            child,
            port,
            _dir: dir,
        })
    }
}

impl Drop for Pgpool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls of the point select each node ran since the last reset, from `pg_stat_statements`.
fn point_calls(cluster: &support::PgCluster, node: usize) -> i64 {
    cluster
        .psql(
            node,
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements \
             WHERE query LIKE 'SELECT v FROM bench_kv WHERE id = $1%'",
        )
        .parse()
        .unwrap_or(-1)
}

async fn pgpool(secs: f64) {
    let cluster = cluster_with_data(1);
    // pg_stat_statements on both nodes, to see where each read ran.
    for i in [0, 1] {
        cluster.psql(
            i,
            "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'",
        );
    }
    for i in [1, 0] {
        cluster.stop(i);
    }
    for i in [0, 1] {
        cluster.restart(i);
    }
    cluster.psql(0, "CREATE EXTENSION pg_stat_statements");
    cluster.wait_streaming(1);
    cluster.wait_replayed();
    let Some(pgpool) = Pgpool::start(&cluster) else {
        println!(
            "\npgpool is not installed (apt-get install pgpool2): Pgpool-II comparison skipped"
        );
        return;
    };
    let (plain, party) = pair(&cluster).await;
    let via_pgpool = Side::Plain(
        plain_on(
            &format!("postgres://postgres@127.0.0.1:{}/postgres", pgpool.port),
            CONNECTIONS,
        )
        .await,
    );
    let sides = [
        ("plain PgPool on the replica", &plain),
        ("partypool", &party),
        ("Pgpool-II", &via_pgpool),
    ];
    println!(
        "\n## Point selects: plain pool, partypool, Pgpool-II ({CONNECTIONS} client connections each, {secs} s per side, interleaved in 1 s slices)\n"
    );
    println!(
        "| tasks | through | queries/s | p50 | p99 | ratio to plain | ran on the replica | ran on the primary |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for tasks in [8usize, 32] {
        for (_, side) in sides {
            drive(side, tasks, 0.5).await;
        }
        let mut runs: [Vec<Duration>; 3] = Default::default();
        let mut calls = [[0i64; 2]; 3];
        let slices = secs.ceil() as usize;
        for slice in 0..slices {
            for k in 0..3 {
                let i = (k + slice) % 3;
                for node in [0, 1] {
                    cluster.psql(node, "SELECT pg_stat_statements_reset()");
                }
                runs[i].extend(drive(sides[i].1, tasks, 1.0).await);
                for node in [0, 1] {
                    calls[i][node] += point_calls(&cluster, node);
                }
            }
        }
        let base = runs[0].len() as f64;
        for (i, (name, _)) in sides.iter().enumerate() {
            let lat = &mut runs[i];
            lat.sort();
            println!(
                "| {tasks} | {name} | {:.0} | {} | {} | {:.2} | {} | {} |",
                lat.len() as f64 / slices as f64,
                ms(pct(lat, 0.5)),
                ms(pct(lat, 0.99)),
                lat.len() as f64 / base,
                calls[i][1],
                calls[i][0],
            );
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map(String::as_str).unwrap_or("all");
    let secs: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(6.0);
    if let Some(side) = what.strip_prefix("only-") {
        // One side alone, for profiling: `only-plain` or `only-partypool`, 8 tasks.
        let cluster = cluster_with_data(1);
        let (plain, party) = pair(&cluster).await;
        let side = if side == "plain" { plain } else { party };
        eprintln!("ready");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let n = drive(&side, 8, secs).await.len();
        println!("{} queries/s", n as f64 / secs);
        return;
    }
    if matches!(what, "latency" | "all") {
        latency(secs, false).await;
    }
    if matches!(what, "mixed" | "all") {
        latency(secs, true).await;
    }
    if matches!(what, "consistency" | "all") {
        consistency(secs).await;
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
    if matches!(what, "pgpool" | "all") {
        pgpool(secs).await;
    }
}
