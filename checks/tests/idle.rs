//! Replicas that scale to zero (`Config::idle_probe_after`): an idle pool sends nothing to
//! its replicas and keeps no session open there, so a serverless replica may suspend; the
//! first read afterwards probes the replica it picks before trusting it — a replica that
//! fell behind or went away meanwhile is not read from. The server's own statement log
//! counts what reached it.

mod support;

use std::time::{Duration, Instant};

use partypool::{Config, PgReplicaPool};
use support::PgCluster;

const IDLE_AFTER: Duration = Duration::from_millis(400);

async fn on_standby(pool: &PgReplicaPool) -> bool {
    sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Sessions other than psql's own and replication's on node `i`.
fn sessions(c: &PgCluster, i: usize) -> String {
    c.psql(
        i,
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' \
         AND pid <> pg_backend_pid()",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_pool_lets_replicas_rest_and_wakes_them_safely() {
    let c = PgCluster::start(1);
    c.psql(0, "CREATE TABLE t (id int)");
    c.wait_replayed();
    let pool = PgReplicaPool::connect(
        &c.primary_url(),
        &[&c.url(1)],
        Config::default()
            .health_check_interval(Duration::from_millis(100))
            .max_replica_lag(Duration::from_millis(300))
            .idle_probe_after(IDLE_AFTER),
    )
    .await
    .unwrap();
    for _ in 0..20 {
        assert!(on_standby(&pool).await);
    }

    // 1. Idle: nothing reaches the replica, and no session of the pool is left on it; the
    // primary is still probed.
    tokio::time::sleep(IDLE_AFTER + Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| {
        c.log_statements(0);
        c.log_statements(1);
    });
    let (replica0, primary0) = (c.statements_logged(1), c.statements_logged(0));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (replica1, primary1) = (c.statements_logged(1), c.statements_logged(0));
    eprintln!(
        "idle for 2 s: {} statements on the replica, {} on the primary",
        replica1 - replica0,
        primary1 - primary0
    );
    assert_eq!(replica1, replica0, "statements reached the idle replica");
    assert!(primary1 > primary0 + 5, "the primary is still probed");
    assert_eq!(tokio::task::block_in_place(|| sessions(&c, 1)), "0");
    let status = pool.status();
    let replica = status.node("replica-1").unwrap();
    assert!(replica.healthy, "resting is not down: {status}");
    assert_eq!(replica.state, partypool::NodeState::Resting, "{status}");

    // 2. The first read wakes it: probed, then read there.
    let before = c.statements_logged(1);
    let started = Instant::now();
    assert!(on_standby(&pool).await, "read on the replica once probed");
    eprintln!(
        "first read after idle: {:?} (a new connection, probe, read)",
        started.elapsed()
    );
    assert!(
        c.statements_logged(1) >= before + 2,
        "a probe, then the read"
    );

    // 3. It fell behind while the pool was idle: the first read's probe sees it, and the
    // read runs on the primary.
    tokio::time::sleep(IDLE_AFTER + Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| {
        c.pause_replay(1);
        for i in 0..8 {
            c.psql(0, &format!("INSERT INTO t VALUES ({i})"));
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    assert!(
        !on_standby(&pool).await,
        "a replica that fell behind while idle was read from"
    );
    tokio::task::block_in_place(|| c.resume_replay(1));
    c.wait_replayed();

    // 4. It went away while the pool was idle: the first read is not lost with it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..5 {
        assert!(on_standby(&pool).await, "back in the reads once caught up");
    }
    tokio::time::sleep(IDLE_AFTER + Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| c.kill(1));
    let started = Instant::now();
    assert!(!on_standby(&pool).await, "on the primary");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    pool.close().await;
}

/// Idle, then the primary dies and a replica is promoted while only writes arrive (they
/// dispatch nothing while they wait for a writer): the pool still probes every node while
/// the writer is down, finds the promoted one, and the write lands there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_pool_still_finds_a_promoted_writer() {
    let c = PgCluster::start(1);
    c.psql(0, "CREATE TABLE w (id int)");
    c.wait_replayed();
    let pool = PgReplicaPool::connect(
        &c.primary_url(),
        &[&c.url(1)],
        Config::default()
            .health_check_interval(Duration::from_millis(100))
            .idle_probe_after(IDLE_AFTER)
            .writer_wait(Duration::from_secs(10)),
    )
    .await
    .unwrap();
    tokio::time::sleep(IDLE_AFTER + Duration::from_millis(300)).await;
    let status = pool.status();
    assert_eq!(
        status.node("replica-1").unwrap().state,
        partypool::NodeState::Resting,
        "{status}"
    );
    tokio::task::block_in_place(|| {
        c.kill(0);
        c.promote(1);
    });
    let started = Instant::now();
    let port: i32 = sqlx::query_scalar("INSERT INTO w VALUES (1) RETURNING inet_server_port()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        port,
        i32::from(c.replica(1).port),
        "on the promoted replica"
    );
    eprintln!(
        "the write landed on the promoted replica after {:?}",
        started.elapsed()
    );
    pool.close().await;
}
