//! Strict replica sessions: every session on a declared replica is read-only (the server
//! says so), the primary's are not, and a declared replica that is promoted takes writes and
//! transactions (its connections are made writable as they are used).

mod support;

use std::time::{Duration, Instant};

use partypool::{Config, PgReplicaPool};
use support::PgCluster;

fn config(strict: bool) -> Config {
    Config::default()
        .strict_replicas(strict)
        .health_check_interval(Duration::from_millis(200))
        .health_check_timeout(Duration::from_millis(500))
}

async fn read_only(e: impl sqlx::PgExecutor<'_>) -> (String, bool) {
    sqlx::query_as("SELECT current_setting('default_transaction_read_only'), pg_is_in_recovery()")
        .fetch_one(e)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_sessions_are_read_only_and_a_promoted_replica_still_writes() {
    let c = PgCluster::start(1);
    c.psql(0, "CREATE TABLE t (id serial PRIMARY KEY)");
    c.wait_replayed();
    let lax = PgReplicaPool::connect(&c.primary_url(), &[&c.url(1)], config(false))
        .await
        .unwrap();
    assert_eq!(
        read_only(lax.on_replica()).await,
        ("off".into(), true),
        "without strict sessions"
    );
    lax.close().await;

    let pool = PgReplicaPool::connect(&c.primary_url(), &[&c.url(1)], config(true))
        .await
        .unwrap();
    for _ in 0..5 {
        assert_eq!(
            read_only(&pool).await,
            ("on".into(), true),
            "a replica read"
        );
        assert_eq!(
            read_only(pool.on_primary()).await,
            ("off".into(), false),
            "the primary"
        );
    }

    // The primary dies; the declared replica is promoted and takes the writes.
    tokio::task::block_in_place(|| {
        c.kill(0);
        c.promote(1);
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match sqlx::query("INSERT INTO t DEFAULT VALUES")
            .execute(&pool)
            .await
        {
            Ok(_) => break,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "writes never reached the promoted replica: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // `status()` lists the writer first, and says the old primary is down.
    let status = pool.status();
    assert_eq!(status.nodes[0].name, "replica-1", "{status}");
    assert_eq!(status.writer().map(|w| w.name.as_str()), Some("replica-1"));
    assert_eq!(
        status.node("primary").unwrap().state,
        partypool::NodeState::Down,
        "{status}"
    );
    // Statements, transactions and connections from `acquire` all write there.
    for _ in 0..5 {
        sqlx::query("INSERT INTO t DEFAULT VALUES")
            .execute(&pool)
            .await
            .unwrap();
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("INSERT INTO t DEFAULT VALUES")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut conn = sqlx::Acquire::acquire(&pool).await.unwrap();
        sqlx::query("INSERT INTO t DEFAULT VALUES")
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
        .fetch_one(pool.on_primary())
        .await
        .unwrap();
    assert_eq!(n, 16);
    pool.close().await;
}
