//! Routes one benchmark statement 100,000 times, for counting instructions with cachegrind
//! (stable where wall-clock time on a shared machine is not):
//!
//! ```sh
//! cargo build --release --example route_loop
//! valgrind --tool=cachegrind --cache-sim=no ./target/release/examples/route_loop 0
//! ```
//!
//! The statements of `benches/classifier.rs`: `0` a point select, `1` a job-queue `FOR UPDATE
//! SKIP LOCKED`, `2` an upsert, `3` an ORM join with quoted identifiers, `4` a reporting CTE.

fn main() {
    let statements = [
        "SELECT v FROM bench_kv WHERE id = $1",
        "SELECT id, payload FROM jobs WHERE run_at <= now() ORDER BY run_at LIMIT 10 FOR UPDATE SKIP LOCKED",
        "INSERT INTO bench_kv (id, v) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v",
        "SELECT \"users\".\"id\", \"users\".\"email\", \"orders\".\"total\" FROM \"users\" \
         INNER JOIN \"orders\" ON \"orders\".\"user_id\" = \"users\".\"id\" \
         WHERE \"users\".\"id\" = $1 ORDER BY \"orders\".\"created_at\" DESC LIMIT 20",
        "WITH monthly AS (SELECT date_trunc('month', created_at) AS m, sum(total) AS revenue \
         FROM orders WHERE created_at > now() - interval '1 year' GROUP BY 1) \
         SELECT m, revenue, lag(revenue) OVER (ORDER BY m) AS previous FROM monthly ORDER BY m",
    ];
    let which: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .filter(|i| *i < statements.len())
        .unwrap_or(0);
    let mut total = 0usize;
    for _ in 0..100_000 {
        total += partypool::route(std::hint::black_box(statements[which]))
            .reason
            .len();
    }
    println!("{total}");
}
