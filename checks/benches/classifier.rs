//! The classifier beside `sqlparser`'s PostgreSQL parse of the same text, and on adversarial
//! inputs (to show linear time).
//!
//! `cargo bench --bench classifier`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

const STATEMENTS: &[(&str, &str)] = &[
    ("point_select", "SELECT v FROM bench_kv WHERE id = $1"),
    (
        "orm_join",
        "SELECT \"users\".\"id\", \"users\".\"email\", \"orders\".\"total\" FROM \"users\" \
         INNER JOIN \"orders\" ON \"orders\".\"user_id\" = \"users\".\"id\" \
         WHERE \"users\".\"id\" = $1 ORDER BY \"orders\".\"created_at\" DESC LIMIT 20",
    ),
    (
        "report_cte",
        "WITH monthly AS (SELECT date_trunc('month', created_at) AS m, sum(total) AS revenue \
         FROM orders WHERE created_at > now() - interval '1 year' GROUP BY 1) \
         SELECT m, revenue, lag(revenue) OVER (ORDER BY m) AS previous FROM monthly ORDER BY m",
    ),
    (
        "insert",
        "INSERT INTO bench_kv (id, v) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v",
    ),
    (
        "job_queue",
        "SELECT id, payload FROM jobs WHERE run_at <= now() ORDER BY run_at LIMIT 10 FOR UPDATE SKIP LOCKED",
    ),
];

/// Times `measured` over `iters` calls, in chunks, each chunk preceded by the same number of
/// unmeasured calls of `other`: on this shared machine speed drifts by ±30% within a minute,
/// and interleaving gives both sides of a comparison the same conditions.
fn interleaved(iters: u64, mut measured: impl FnMut(), mut other: impl FnMut()) -> Duration {
    const CHUNK: u64 = 4096;
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = CHUNK.min(iters - done);
        for _ in 0..n {
            other();
        }
        let start = Instant::now();
        for _ in 0..n {
            measured();
        }
        total += start.elapsed();
        done += n;
    }
    total
}

fn side_by_side(c: &mut Criterion) {
    let mut g = c.benchmark_group("classify");
    let ours = |sql: &str| {
        black_box(partypool::route(black_box(sql)));
    };
    let theirs = |sql: &str| {
        drop(black_box(Parser::parse_sql(
            &PostgreSqlDialect {},
            black_box(sql),
        )))
    };
    for (name, sql) in STATEMENTS {
        g.throughput(Throughput::Bytes(sql.len() as u64));
        g.bench_with_input(BenchmarkId::new("partypool", name), sql, |b, sql| {
            b.iter_custom(|iters| interleaved(iters, || ours(sql), || theirs(sql)))
        });
        g.bench_with_input(BenchmarkId::new("sqlparser", name), sql, |b, sql| {
            b.iter_custom(|iters| interleaved(iters, || theirs(sql), || ours(sql)))
        });
    }
    g.finish();
}

fn adversarial(c: &mut Criterion) {
    let mut g = c.benchmark_group("adversarial");
    g.sample_size(20);
    for size in [10_000usize, 100_000, 1_000_000] {
        let inputs = [
            (
                "nested_parens",
                format!("SELECT {}1{}", "(".repeat(size / 2), ")".repeat(size / 2)),
            ),
            ("unterminated_comments", "/*".repeat(size / 2)),
            (
                "dollar_body",
                format!("SELECT $tag${}$tag$", "x;$ta".repeat(size / 5)),
            ),
            ("quotes", format!("SELECT '{}'", "''".repeat(size / 2))),
            ("words", "SELECT a ".repeat(size / 9)),
        ];
        for (name, sql) in inputs {
            g.throughput(Throughput::Bytes(sql.len() as u64));
            g.bench_with_input(BenchmarkId::new(name, size), &sql, |b, sql| {
                b.iter(|| partypool::route(black_box(sql)))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, side_by_side, adversarial);
criterion_main!(benches);
