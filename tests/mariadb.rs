//! The `mysql` backend on real MariaDB GTID replication (primary + 2 replicas, started by
//! the test support). Where a statement ran is the server's answer (`@@port`,
//! `@@read_only`), through an application user that `read_only` really restricts.
#![cfg(feature = "mysql")]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use partypool::{Config, MySqlReplicaPool};
use sqlx::Row;
use support::mariadb::MariaCluster;

/// A pool over the cluster: its primary and every replica.
async fn connect(c: &MariaCluster, config: Config) -> MySqlReplicaPool {
    let replicas = c.replica_urls();
    let replicas: Vec<&str> = replicas.iter().map(String::as_str).collect();
    MySqlReplicaPool::connect(&c.url(0), &replicas, config)
        .await
        .unwrap()
}

/// Probes every 200 ms, bounded by 500 ms: faults show within a second.
fn fault_config() -> Config {
    support::run::fault_config(Duration::from_millis(200), Duration::from_millis(500))
}

async fn who(pool: &MySqlReplicaPool) -> (u16, bool) {
    let row = sqlx::query("SELECT @@port, @@read_only")
        .fetch_one(pool)
        .await
        .expect("who answered");
    (row.get::<u32, _>(0) as u16, row.get::<i64, _>(1) == 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_on_replicas_writes_on_the_primary_and_a_refused_write_falls_back() {
    let c = MariaCluster::start(2);
    c.sql(
        0,
        "CREATE TABLE app.items (id int PRIMARY KEY AUTO_INCREMENT, v text NOT NULL)",
    );
    c.wait_replayed();

    // The application user cannot write on a replica: read_only refuses it (1290).
    let direct = sqlx::MySqlPool::connect(&c.url(1)).await.unwrap();
    let refused = sqlx::query("INSERT INTO items (v) VALUES ('x')")
        .execute(&direct)
        .await
        .unwrap_err();
    let code = refused
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert!(
        refused.to_string().contains("1290") || code.as_deref() == Some("HY000"),
        "{refused}"
    );
    direct.close().await;

    let pool = connect(&c, Config::default()).await;

    // Reads: both replicas, round-robin; never the primary.
    let mut seen = HashMap::new();
    for _ in 0..20 {
        let (port, read_only) = who(&pool).await;
        assert!(read_only, "a read ran on the primary ({port})");
        *seen.entry(port).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.contains_key(&c.node(1).port) && seen.contains_key(&c.node(2).port));

    // A lock hidden in a MariaDB executable comment runs, so it goes to the primary, where
    // the lock then exists.
    let row = sqlx::query("SELECT @@read_only /*M! , GET_LOCK('partypool', 0) */")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(row.len(), 2, "MariaDB ran the comment");
    assert_eq!(row.get::<i64, _>(0), 0, "on the primary");
    assert_eq!(row.get::<i64, _>(1), 1, "the lock was taken");

    // Writes and transactions: the primary.
    for i in 0..5 {
        sqlx::query("INSERT INTO items (v) VALUES (?)")
            .bind(format!("v{i}"))
            .execute(&pool)
            .await
            .unwrap();
    }
    let mut tx = pool.begin().await.unwrap();
    let read_only: i64 = sqlx::query_scalar("SELECT @@read_only")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(read_only, 0, "a transaction runs on the primary");
    tx.commit().await.unwrap();
    assert_eq!(c.sql(0, "SELECT count(*) FROM app.items"), "5");

    // A write the router cannot see (a function that writes, behind a SELECT) is refused
    // by the replica, and runs once on the primary.
    c.sql(
        0,
        "DELIMITER //\nCREATE FUNCTION app.bump() RETURNS int MODIFIES SQL DATA \
         BEGIN INSERT INTO app.items (v) VALUES ('misrouted'); RETURN 1; END//\nDELIMITER ;",
    );
    c.wait_replayed();
    let bumped: i64 = sqlx::query_scalar("SELECT bump()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(bumped, 1);
    assert_eq!(c.sql(0, "SELECT count(*) FROM app.items"), "6");
    c.wait_replayed();
    for i in 1..=2 {
        assert_eq!(c.sql(i, "SELECT count(*) FROM app.items"), "6");
    }
    let misroutes: u64 = pool.status().nodes.iter().map(|n| n.misroutes).sum();
    assert_eq!(misroutes, 1, "{}", pool.status());
    pool.close().await;
}

/// A killed replica leaves the rotation without failing a read, and returns when restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_leaves_and_returns_without_a_failed_read() {
    let mut c = MariaCluster::start(2);
    let pool = connect(&c, fault_config()).await;
    let dead = c.node(1).port;
    let live = c.node(2).port;
    tokio::task::block_in_place(|| c.kill(1));
    let mut after = HashMap::new();
    for _ in 0..100 {
        // Every read succeeds: on the live replica (a read that met the dead one ran again).
        let (port, read_only) = who(&pool).await;
        assert!(read_only);
        *after.entry(port).or_insert(0) += 1;
    }
    assert_eq!(after.get(&dead), None, "{after:?}");
    assert_eq!(after.get(&live), Some(&100));
    support::run::wait_until("replica-1 down", &pool, |s| {
        !s.node("replica-1").unwrap().healthy
    })
    .await;

    tokio::task::block_in_place(|| {
        c.restart(1);
        c.wait_replicating(1);
    });
    support::run::wait_until("replica-1 back", &pool, |s| {
        s.node("replica-1").unwrap().healthy
    })
    .await;
    let mut back = HashMap::new();
    for _ in 0..20 {
        *back.entry(who(&pool).await.0).or_insert(0) += 1;
    }
    assert!(
        back.contains_key(&dead),
        "the restarted replica serves again: {back:?}"
    );
    pool.close().await;
}

/// After a promotion, writes follow the promoted replica; the old primary, restarted
/// writable (an unfenced second primary), never gets them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_follow_a_promotion_and_never_return_to_the_old_primary() {
    let mut c = MariaCluster::start(2);
    c.sql(
        0,
        "CREATE TABLE app.items (id int PRIMARY KEY AUTO_INCREMENT, v text NOT NULL)",
    );
    c.wait_replayed();
    let pool = connect(&c, fault_config()).await;
    let writer_port = |pool: &MySqlReplicaPool| {
        let pool = pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            let port: u32 = sqlx::query_scalar("SELECT @@port")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            port as u16
        }
    };
    assert_eq!(writer_port(&pool).await, c.node(0).port);

    tokio::task::block_in_place(|| {
        c.kill(0);
        c.promote(1);
        c.repoint(2, 1);
        c.wait_replicating(2);
    });
    support::run::wait_until("replica-1 takes the writes", &pool, |s| {
        s.node("replica-1").unwrap().writer
    })
    .await;
    assert_eq!(writer_port(&pool).await, c.node(1).port);

    // The old primary comes back writable: a second primary.
    tokio::task::block_in_place(|| c.restart(0));
    support::run::wait_until("the old primary is seen again", &pool, |s| {
        s.node("primary").unwrap().healthy
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    for i in 0..10 {
        assert_eq!(writer_port(&pool).await, c.node(1).port, "write {i}");
        sqlx::query("INSERT INTO items (v) VALUES ('after')")
            .execute(&pool)
            .await
            .unwrap();
    }
    assert_eq!(c.sql(1, "SELECT count(*) FROM app.items"), "10");
    assert_eq!(c.sql(0, "SELECT count(*) FROM app.items"), "0");
    let status = pool.status();
    assert!(status.node("replica-1").unwrap().writer, "{status}");
    assert!(!status.node("primary").unwrap().writer, "{status}");
    pool.close().await;
}
