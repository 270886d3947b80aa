//! Start-up that tells the truth: a replica that lacks a database just created on the primary
//! is behind, not down — it joins as soon as it has replayed it — and `wait_for_replicas`
//! makes `connect` wait for it.

mod support;

use std::time::{Duration, Instant};

use partypool::{Config, PgReplicaPool};
use support::PgCluster;

fn config() -> Config {
    // A long health interval and ban: only the "behind" re-check can bring the replica in
    // quickly.
    Config::default()
        .health_check_interval(Duration::from_secs(30))
        .max_replica_lag(None)
}

async fn standby(pool: &PgReplicaPool) -> bool {
    sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_without_a_new_database_is_behind_not_down() {
    let c = PgCluster::start(1);
    tokio::task::block_in_place(|| {
        c.pause_replay(1);
        c.psql(0, "CREATE DATABASE fresh");
    });
    let on = |i: usize| format!("{}/fresh", c.url(i).strip_suffix("/postgres").unwrap());
    let pool = PgReplicaPool::builder()
        .primary(on(0))
        .replica(on(1))
        .config(config())
        .connect()
        .await
        .unwrap();
    let replica = pool.status().node("replica-1").unwrap().clone();
    assert!(!replica.healthy);
    let why = replica.last_error.unwrap_or_default();
    assert!(why.contains("not caught up"), "{why}");
    assert!(!standby(&pool).await, "reads use the primary meanwhile");

    tokio::task::block_in_place(|| c.resume_replay(1));
    let resumed = Instant::now();
    while !standby(&pool).await {
        assert!(
            resumed.elapsed() < Duration::from_secs(3),
            "the replica is probed again soon, not after a ban or a 30 s round: {}",
            pool.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "joined {:?} after replaying the database",
        resumed.elapsed()
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_replicas_waits_until_they_serve_reads() {
    let c = PgCluster::start(1);
    tokio::task::block_in_place(|| {
        c.pause_replay(1);
        c.psql(0, "CREATE DATABASE fresh");
    });
    let on = |i: usize| format!("{}/fresh", c.url(i).strip_suffix("/postgres").unwrap());
    let started = Instant::now();
    let resume = {
        let c = &c;
        async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            tokio::task::block_in_place(|| c.resume_replay(1));
        }
    };
    let (pool, ()) = tokio::join!(
        PgReplicaPool::builder()
            .primary(on(0))
            .replica(on(1))
            .config(config())
            .wait_for_replicas(Duration::from_secs(10))
            .connect(),
        resume
    );
    let pool = pool.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert!(
        standby(&pool).await,
        "the first read already has its replica"
    );
    pool.close().await;

    // A replica that never comes: connect returns after the limit, without it.
    tokio::task::block_in_place(|| c.stop(1));
    let started = Instant::now();
    let pool = PgReplicaPool::builder()
        .primary(on(0))
        .replica(on(1))
        .config(config())
        .wait_for_replicas(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(!standby(&pool).await);
    pool.close().await;
}
