//! Where the process scope's cost goes at one task: a write, the read right after it, and a
//! read after that, timed apart, with consistency off and with the process scope.
//!
//! `cargo run --release -p partypool-checks --example rw_cycle -- [cycles]`

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use partypool::{Config, PgReplicaPool, Scope};

#[tokio::main]
async fn main() {
    let cycles: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let c = support::PgCluster::start(1);
    c.psql(0, "CREATE TABLE kv (id bigint PRIMARY KEY, v bigint NOT NULL); INSERT INTO kv SELECT g, 0 FROM generate_series(1, 1000) g");
    c.wait_replayed();
    c.log_statements(0);
    c.log_statements(1);
    println!("| scope | write | first read after it | second read | checks |");
    println!("|---|---|---|---|---|");
    for scope in [Scope::Off, Scope::Process, Scope::Off, Scope::Process] {
        let pool = PgReplicaPool::builder()
            .primary(c.primary_url())
            .replica(c.url(1))
            .config(
                Config::default()
                    .min_connections(4)
                    .max_connections(4)
                    .consistency_scope(scope),
            )
            .connect()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let fetches0 = c.statements_logged_matching(0, &["pg_current_wal_insert_lsn"]);
        let checks0 = c.statements_logged_matching(1, &["pg_last_wal_replay_lsn"]);
        let mut t = [Duration::ZERO; 3];
        let mut on_replica = 0;
        for i in 0..cycles {
            let id = (i % 1000) as i64 + 1;
            let s = Instant::now();
            sqlx::query("UPDATE kv SET v = v + 1 WHERE id = $1")
                .bind(id)
                .execute(&pool)
                .await
                .unwrap();
            t[0] += s.elapsed();
            let s = Instant::now();
            let (_, standby): (i64, bool) =
                sqlx::query_as("SELECT v, pg_is_in_recovery() FROM kv WHERE id = $1")
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            t[1] += s.elapsed();
            on_replica += standby as usize;
            let s = Instant::now();
            let _: (i64, bool) =
                sqlx::query_as("SELECT v, pg_is_in_recovery() FROM kv WHERE id = $1")
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            t[2] += s.elapsed();
        }
        let us = |d: Duration| format!("{:.0} µs", d.as_secs_f64() * 1e6 / cycles as f64);
        let fetches = c.statements_logged_matching(0, &["pg_current_wal_insert_lsn"]) - fetches0;
        let checks = c.statements_logged_matching(1, &["pg_last_wal_replay_lsn"]) - checks0;
        println!(
            "| {scope:?} | {} | {} ({}% on the replica) | {} | {:.2} fetches, {:.2} checks per cycle |",
            us(t[0]),
            us(t[1]),
            on_replica * 100 / cycles,
            us(t[2]),
            fetches as f64 / cycles as f64,
            checks as f64 / cycles as f64
        );
        pool.close().await;
    }
}
