//! Writes while the node taking them is down: they wait `writer_wait` for it or for a new
//! writer, then fail at once with the reason — not a `PoolTimedOut` after `acquire_timeout`.

mod support;

use std::time::{Duration, Instant};

use partypool::{Config, PgReplicaPool};
use support::PgCluster;

fn config(writer_wait: Duration) -> Config {
    Config::default()
        .health_check_interval(Duration::from_millis(100))
        .health_check_timeout(Duration::from_millis(300))
        .acquire_timeout(Duration::from_secs(10))
        .writer_wait(writer_wait)
}

async fn down(pool: &PgReplicaPool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while pool.status().node("primary").is_some_and(|n| n.healthy) {
        assert!(Instant::now() < deadline, "{}", pool.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_without_a_writer_fails_at_once_saying_why() {
    let c = PgCluster::start(1);
    c.psql(0, "CREATE TABLE w (id int)");
    c.wait_replayed();
    let pool = PgReplicaPool::connect(&c.primary_url(), &[&c.url(1)], config(Duration::ZERO))
        .await
        .unwrap();
    tokio::task::block_in_place(|| c.kill(0));
    down(&pool).await;
    let started = Instant::now();
    let e = sqlx::query("INSERT INTO w VALUES (1)")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "took {:?}: {e}",
        started.elapsed()
    );
    assert!(e.to_string().contains("no writer: primary"), "{e}");
    assert!(!partypool::may_have_committed(&e), "nothing was sent: {e}");
    assert!(!e.to_string().contains(support::SECRET), "{e}");
    // Reads still run on the replica.
    let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(standby);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waits_for_the_promoted_writer() {
    let c = PgCluster::start(1);
    c.psql(0, "CREATE TABLE w (id int)");
    c.wait_replayed();
    let pool = PgReplicaPool::connect(
        &c.primary_url(),
        &[&c.url(1)],
        config(Duration::from_secs(8)),
    )
    .await
    .unwrap();
    tokio::task::block_in_place(|| c.kill(0));
    down(&pool).await;
    // The write starts while nobody takes the writes; the replica is promoted 500 ms later.
    let write = tokio::spawn({
        let pool = pool.clone();
        async move {
            let started = Instant::now();
            let r = sqlx::query("INSERT INTO w VALUES (2)").execute(&pool).await;
            (r, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| c.promote(1));
    let (result, took) = write.await.unwrap();
    result.unwrap();
    assert!(took >= Duration::from_millis(400), "took {took:?}");
    assert_eq!(c.psql(1, "SELECT count(*) FROM w WHERE id = 2").trim(), "1");
    assert_eq!(
        pool.status().writer().map(|w| w.name.as_str()),
        Some("replica-1")
    );
    pool.close().await;
}
