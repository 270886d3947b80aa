//! Nodes going down and coming back, on a private cluster (this file stops servers).

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use partypool::{Config, PgReplicaPool};
use sqlx::Row;
use support::PgCluster;

const INTERVAL: Duration = Duration::from_millis(250);

async fn who(pool: &PgReplicaPool) -> Result<(u16, bool), sqlx::Error> {
    let row = sqlx::query("SELECT inet_server_port(), pg_is_in_recovery()")
        .fetch_one(pool)
        .await?;
    Ok((row.get::<i32, _>(0) as u16, row.get(1)))
}

async fn wait_healthy(pool: &PgReplicaPool, name: &str, healthy: bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while pool.status().node(name).unwrap().healthy != healthy {
        assert!(
            Instant::now() < deadline,
            "{name} never became healthy={healthy}:\n{}",
            pool.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replica_leaves_the_rotation_and_rejoins() {
    let c = PgCluster::start(2);
    let replicas = c.replica_urls();
    let config = Config::default()
        .health_check_interval(INTERVAL)
        .health_check_timeout(Duration::from_millis(500))
        .acquire_timeout(Duration::from_secs(2));
    let pool = PgReplicaPool::connect(&c.primary_url(), &[&replicas[0], &replicas[1]], config)
        .await
        .unwrap();
    let (r1, r2) = (c.replica(1).port, c.replica(2).port);

    // Reads loop in the background the whole time.
    let looping = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut failures = Vec::new();
            while !pool.is_closed() {
                if let Err(e) = who(&pool).await {
                    failures.push((Instant::now(), e.to_string()));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            failures
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Kill replica-1.
    let mut stops = vec![Instant::now()];
    blocking(|| c.stop(1));
    tokio::time::sleep(INTERVAL + Duration::from_millis(150)).await;
    assert!(
        !pool.status().node("replica-1").unwrap().healthy,
        "{}",
        pool.status()
    );
    // From one health interval on, no read fails and all go to replica-2.
    for _ in 0..100 {
        assert_eq!(
            who(&pool)
                .await
                .expect("a read failed after the health interval"),
            (r2, true)
        );
    }

    // Restarted, it rejoins.
    blocking(|| c.restart(1));
    wait_healthy(&pool, "replica-1", true).await;
    let mut seen = HashSet::new();
    for _ in 0..20 {
        seen.insert(who(&pool).await.unwrap());
    }
    assert_eq!(seen, HashSet::from([(r1, true), (r2, true)]));

    // All replicas down: reads go to the primary.
    stops.push(Instant::now());
    blocking(|| {
        c.stop(1);
        c.stop(2);
    });
    tokio::time::sleep(INTERVAL + Duration::from_millis(150)).await;
    for _ in 0..50 {
        assert_eq!(
            who(&pool).await.expect("read with all replicas down"),
            (c.primary().port, false)
        );
    }

    // And back on the replicas when they return.
    blocking(|| {
        c.restart(1);
        c.restart(2);
    });
    wait_healthy(&pool, "replica-1", true).await;
    wait_healthy(&pool, "replica-2", true).await;
    assert!(who(&pool).await.unwrap().1, "reads went back to a replica");

    pool.close().await;
    let failures = looping.await.unwrap();
    // Background reads may fail only while a stop is being noticed: within one health
    // interval (plus the probe timeout) of it. Never after, never on a restart.
    let window = INTERVAL + Duration::from_millis(500);
    for (at, e) in &failures {
        assert!(
            stops.iter().any(|s| *at >= *s && *at <= *s + window),
            "a background read failed outside the detection window: {e}"
        );
    }
    eprintln!(
        "background reads that failed while a stop was being noticed: {}",
        failures.len()
    );
}

fn blocking(f: impl FnOnce()) {
    tokio::task::block_in_place(f)
}
