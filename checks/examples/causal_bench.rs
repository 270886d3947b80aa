//! Read-your-writes under normal streaming replication: 16 sessions, each writing its own row
//! then reading it back 10 times, for N rounds (default 200). Reports the share of session
//! reads served by replicas, stale reads (a read older than the session's own write: must be
//! 0), and read latency with and without a session (plain-pool reads of the same rows run
//! interleaved, for comparison — they are allowed to be stale, and the count shows why
//! sessions exist).
//!
//! `cargo run --release --example causal_bench -- 200 [position_interval_ms]`

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use partypool::{Config, PgReplicaPool};

#[derive(Default)]
struct Tally {
    reads: u64,
    on_replicas: u64,
    stale: u64,
    latencies: Vec<Duration>,
    first_after_write: Vec<Duration>,
}

fn p(sorted: &[Duration], q: f64) -> Duration {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * q).round() as usize)
        .copied()
        .unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: i64 = std::env::args().nth(1).map_or(Ok(200), |s| s.parse())?;
    // Optional: `position_interval` in ms (default: the Config default).
    let interval: Option<u64> = std::env::args().nth(2).map(|s| s.parse()).transpose()?;
    let cluster = support::PgCluster::start(2);
    cluster.psql(0, "CREATE TABLE kv (k int PRIMARY KEY, v bigint NOT NULL); INSERT INTO kv SELECT g, 0 FROM generate_series(0, 15) g");
    cluster.wait_replayed();
    let replicas = cluster.replica_urls();
    let pool = PgReplicaPool::connect(
        &cluster.primary_url(),
        &[&replicas[0], &replicas[1]],
        Config::default().position_interval(interval.map_or(
            Config::default().position_interval,
            std::time::Duration::from_millis,
        )),
    )
    .await?;

    let tasks: Vec<_> = (0..16)
        .map(|k: i32| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let session = pool.session();
                let (mut with, mut without) = (Tally::default(), Tally::default());
                for v in 1..=rounds {
                    sqlx::query("UPDATE kv SET v = $2 WHERE k = $1")
                        .bind(k)
                        .bind(v)
                        .execute(&session)
                        .await?;
                    for i in 0..10 {
                        for (tally, through_session) in [(&mut with, true), (&mut without, false)] {
                            let started = Instant::now();
                            let q = sqlx::query_as::<_, (i64, bool)>(
                                "SELECT v, pg_is_in_recovery() FROM kv WHERE k = $1",
                            )
                            .bind(k);
                            let (seen, replica) = if through_session {
                                q.fetch_one(&session).await?
                            } else {
                                q.fetch_one(&pool).await?
                            };
                            let took = started.elapsed();
                            tally.reads += 1;
                            tally.on_replicas += replica as u64;
                            tally.stale += (seen < v) as u64;
                            tally.latencies.push(took);
                            if i == 0 {
                                tally.first_after_write.push(took);
                            }
                        }
                    }
                }
                Ok::<_, sqlx::Error>((with, without))
            })
        })
        .collect();
    let (mut with, mut without) = (Tally::default(), Tally::default());
    for t in tasks {
        let (w, wo) = t.await??;
        for (into, from) in [(&mut with, w), (&mut without, wo)] {
            into.reads += from.reads;
            into.on_replicas += from.on_replicas;
            into.stale += from.stale;
            into.latencies.extend(from.latencies);
            into.first_after_write.extend(from.first_after_write);
        }
    }
    pool.close().await;
    for t in [&mut with, &mut without] {
        t.latencies.sort();
        t.first_after_write.sort();
    }
    println!("16 sessions x {rounds} rounds of 1 write + 10 reads");
    for (name, t) in [("session reads", &with), ("plain reads  ", &without)] {
        println!(
            "{name}: {} reads, {:.1}% on replicas, {} stale; p50 {:?}, p99 {:?}; first read after a write p50 {:?}, p99 {:?}",
            t.reads,
            100.0 * t.on_replicas as f64 / t.reads as f64,
            t.stale,
            p(&t.latencies, 0.5),
            p(&t.latencies, 0.99),
            p(&t.first_after_write, 0.5),
            p(&t.first_after_write, 0.99),
        );
    }
    if with.stale > 0 {
        std::process::exit(1);
    }
    Ok(())
}
