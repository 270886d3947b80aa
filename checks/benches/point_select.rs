//! Point-select throughput through `&ReplicaPool` beside a plain `sqlx::PgPool` on the same
//! replica with the same number of connections, in one run, on a real local cluster that the
//! bench starts itself. Plus the cost of routing one statement.
//!
//! `cargo bench --bench point_select`

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::future::join_all;
use partypool::{Config, PgReplicaPool};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

const CONNECTIONS: u32 = 8;
const ROWS: i64 = 10_000;

async fn point_select<'a, E>(executor: E, id: i64) -> String
where
    E: sqlx::Executor<'a, Database = sqlx::Postgres>,
{
    sqlx::query_scalar("SELECT v FROM bench_kv WHERE id = $1")
        .bind(id)
        .fetch_one(executor)
        .await
        .expect("point select")
}

fn bench(c: &mut Criterion) {
    let cluster = support::PgCluster::start(1);
    cluster.psql(
        0,
        &format!(
            "CREATE TABLE bench_kv (id bigint PRIMARY KEY, v text NOT NULL); \
             INSERT INTO bench_kv SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g"
        ),
    );
    cluster.wait_replayed();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (plain, routed): (PgPool, PgReplicaPool) = rt.block_on(async {
        let plain = PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            .min_connections(CONNECTIONS)
            .connect(&cluster.url(1))
            .await
            .unwrap();
        let config = Config::default()
            .max_connections(CONNECTIONS)
            .min_connections(CONNECTIONS)
            // The primary is not used by this workload; keep it small.
            .primary_max_connections(Some(1));
        let routed = PgReplicaPool::connect(&cluster.primary_url(), &[&cluster.url(1)], config)
            .await
            .unwrap();
        (plain, routed)
    });

    // The server shares the machine's 2 cores with the client, so throughput drifts by
    // ±10% over seconds. To compare like with like, every measured batch on one pool is
    // preceded by the same, unmeasured, batch on the other: both sides see the same
    // conditions, and only the measured side's time counts.
    for batch in [1_i64, 64] {
        let mut g = c.benchmark_group(format!("point_select_x{batch}"));
        g.throughput(Throughput::Elements(batch as u64));
        g.measurement_time(Duration::from_secs(8));
        for side in ["sqlx_pool", "replica_pool"] {
            g.bench_function(side, |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let (plain, routed) = (&plain, &routed);
                    async move {
                        let mut measured = Duration::ZERO;
                        for i in 0..iters as i64 {
                            let ids = (0..batch).map(move |k| (i * batch + k) * 97 % ROWS + 1);
                            let run_plain =
                                || join_all(ids.clone().map(|id| point_select(plain, id)));
                            let run_routed =
                                || join_all(ids.clone().map(|id| point_select(routed, id)));
                            if side == "sqlx_pool" {
                                run_routed().await;
                                let t = Instant::now();
                                run_plain().await;
                                measured += t.elapsed();
                            } else {
                                run_plain().await;
                                let t = Instant::now();
                                run_routed().await;
                                measured += t.elapsed();
                            }
                        }
                        measured
                    }
                })
            });
        }
        g.finish();
    }

    let mut g = c.benchmark_group("route");
    for (name, sql) in [
        ("point_select", "SELECT v FROM bench_kv WHERE id = $1"),
        (
            "orm_join",
            "SELECT \"users\".\"id\", \"users\".\"email\", \"orders\".\"total\" FROM \"users\" \
             INNER JOIN \"orders\" ON \"orders\".\"user_id\" = \"users\".\"id\" \
             WHERE \"users\".\"id\" = $1 ORDER BY \"orders\".\"created_at\" DESC LIMIT 20",
        ),
        ("insert", "INSERT INTO bench_kv (id, v) VALUES ($1, $2)"),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| partypool::route(std::hint::black_box(sql)))
        });
    }
    g.finish();

    rt.block_on(async {
        plain.close().await;
        routed.close().await;
    });
}

/// What partypool adds per statement, without a network: the same point select on an SQLite
/// file through a plain `SqlitePool` and through a `SqliteReplicaPool` whose reader is that
/// same file, one at a time. The difference is routing, balancing and bookkeeping.
fn overhead(c: &mut Criterion) {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    use sqlx::{ConnectOptions, Connection};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("overhead.db");
    let (plain, routed) = rt.block_on(async {
        let mut setup = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        sqlx::raw_sql(
            "CREATE TABLE kv (id INTEGER PRIMARY KEY, v TEXT NOT NULL);
             WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < 1000)
             INSERT INTO kv SELECT i, hex(randomblob(8)) FROM g;",
        )
        .execute(&mut setup)
        .await
        .unwrap();
        setup.close().await.unwrap();
        let reader = format!("sqlite://{}?mode=ro", path.display());
        let plain = SqlitePoolOptions::new()
            .max_connections(1)
            .connect(&reader)
            .await
            .unwrap();
        let routed = partypool::SqliteReplicaPool::connect(
            &format!("sqlite://{}", path.display()),
            &[&reader],
            Config::default().max_connections(1),
        )
        .await
        .unwrap();
        (plain, routed)
    });
    let mut g = c.benchmark_group("overhead_sqlite_point_select");
    let mut id = 0;
    g.bench_function("sqlx_pool", |b| {
        b.to_async(&rt).iter(|| {
            id = id % 1000 + 1;
            let plain = &plain;
            async move {
                let _: String = sqlx::query_scalar("SELECT v FROM kv WHERE id = ?")
                    .bind(id)
                    .fetch_one(plain)
                    .await
                    .unwrap();
            }
        })
    });
    g.bench_function("replica_pool", |b| {
        b.to_async(&rt).iter(|| {
            id = id % 1000 + 1;
            let routed = &routed;
            async move {
                let _: String = sqlx::query_scalar("SELECT v FROM kv WHERE id = ?")
                    .bind(id)
                    .fetch_one(routed)
                    .await
                    .unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, overhead, bench);
criterion_main!(benches);
