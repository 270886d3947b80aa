//! Schema changes under load: `ALTER TABLE … ADD COLUMN` on the primary, replayed by the
//! replica, while reads run `SELECT * FROM t WHERE id = $1` through the pool. Every connection
//! that prepared the statement before the change fails it once with "cached plan must not
//! change result type" (SQLSTATE 0A000); partypool prepares it again and runs the read again.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use partypool::{Config, PgReplicaPool, Scope};
use support::PgCluster;

/// Reads from 4 tasks while `alter` runs; returns (reads, failures, first failure).
async fn under_load(
    pool: &PgReplicaPool,
    primary: bool,
    alter: impl std::future::Future<Output = ()>,
) -> (u64, u64, Option<String>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (reads, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let first = Arc::new(std::sync::Mutex::new(None));
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let (pool, stop, reads, failures, first) = (
                pool.clone(),
                stop.clone(),
                reads.clone(),
                failures.clone(),
                first.clone(),
            );
            tokio::spawn(async move {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    i = (i * 31 + 7) % 100;
                    let q = sqlx::query("SELECT * FROM t WHERE id = $1").bind(i + 1);
                    let result = if primary {
                        q.fetch_one(pool.on_primary()).await
                    } else {
                        q.fetch_one(&pool).await
                    };
                    reads.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = result {
                        failures.fetch_add(1, Ordering::Relaxed);
                        first.lock().unwrap().get_or_insert(e.to_string());
                    }
                }
            })
        })
        .collect();
    alter.await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let first = first.lock().unwrap().clone();
    (
        reads.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
        first,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_survive_alter_table_on_replicas_and_on_the_primary() {
    let c = PgCluster::start(1);
    c.psql(
        0,
        "CREATE TABLE t (id int PRIMARY KEY, a int); \
         INSERT INTO t SELECT g, g FROM generate_series(1, 100) g",
    );
    c.wait_replayed();
    let pool = PgReplicaPool::connect(
        &c.primary_url(),
        &[&c.url(1)],
        Config::default().consistency_scope(Scope::Off),
    )
    .await
    .unwrap();
    for primary in [false, true] {
        let from = if primary { 10 } else { 0 };
        let (reads, failures, first) = under_load(&pool, primary, async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            for n in from..from + 10 {
                c.psql(0, &format!("ALTER TABLE t ADD COLUMN c{n} int"));
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        })
        .await;
        let status = pool.status();
        let replans: u64 = status.nodes.iter().map(|n| n.replans).sum();
        eprintln!(
            "{}: {reads} reads, {failures} failed, {replans} prepared again",
            if primary {
                "on the primary"
            } else {
                "on the replica"
            }
        );
        assert!(reads > 100, "{reads} reads");
        assert_eq!(failures, 0, "first failure: {first:?}\n{status}");
        assert!(
            replans > 0,
            "no stale plan was met: the test proves nothing\n{status}"
        );
    }
    // The replica stayed healthy throughout: a stale plan is not the node's fault.
    let status = pool.status();
    assert!(status.nodes.iter().all(|n| n.healthy), "{status}");

    // recycle_all() ahead of the reads: none meets a stale plan.
    let replans =
        |pool: &PgReplicaPool| -> u64 { pool.status().nodes.iter().map(|n| n.replans).sum() };
    let before = replans(&pool);
    c.psql(0, "ALTER TABLE t ADD COLUMN after_recycle int");
    c.wait_replayed();
    assert!(pool.recycle_all().await > 0);
    for i in 0..200 {
        sqlx::query("SELECT * FROM t WHERE id = $1")
            .bind(i % 100 + 1)
            .fetch_one(&pool)
            .await
            .unwrap();
    }
    assert_eq!(replans(&pool), before, "{}", pool.status());
    pool.close().await;
}
