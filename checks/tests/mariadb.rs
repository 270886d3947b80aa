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

/// Keys in `sql` output (one per line) with how often each occurs.
fn counts(out: &str) -> HashMap<i64, usize> {
    let mut m = HashMap::new();
    for k in out.lines().filter_map(|l| l.trim().parse().ok()) {
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

/// Under a mixed read/write loop the primary is killed and a replica promoted: no read
/// fails, writes follow the promoted replica, and every acknowledged write is there exactly
/// once (writes are never retried). The old primary, restarted writable (an unfenced second
/// primary), never gets writes back — not even when the promoted one dies in turn: it lost
/// the writes, and only an operator (making it a replica) makes it eligible again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_follow_a_promotion_and_never_return_to_the_old_primary() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut c = MariaCluster::start(2);
    c.sql(
        0,
        "CREATE TABLE app.items (id int PRIMARY KEY AUTO_INCREMENT, k int NOT NULL, v text NOT NULL)",
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

    let stop = Arc::new(AtomicBool::new(false));
    let writes = tokio::spawn({
        let (pool, stop) = (pool.clone(), stop.clone());
        async move {
            let (mut acked, mut failed) = (Vec::new(), 0);
            let mut k = 0i64;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                match sqlx::query("INSERT INTO items (k, v) VALUES (?, 'loop')")
                    .bind(k)
                    .execute(&pool)
                    .await
                {
                    Ok(_) => acked.push(k),
                    Err(_) => failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (acked, failed)
        }
    });
    let reads = tokio::spawn({
        let (pool, stop) = (pool.clone(), stop.clone());
        async move {
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match sqlx::query_scalar::<_, i64>("SELECT @@read_only")
                    .fetch_one(&pool)
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    tokio::task::block_in_place(|| {
        c.kill(0);
        c.promote(1);
    });
    let promoted = std::time::Instant::now();
    support::run::wait_until("replica-1 takes the writes", &pool, |s| {
        s.node("replica-1").unwrap().writer
    })
    .await;
    println!(
        "writes moved {:?} after the promotion (health interval 200 ms)",
        promoted.elapsed()
    );
    tokio::task::block_in_place(|| {
        c.repoint(2, 1);
        c.wait_replicating(2);
    });
    assert_eq!(writer_port(&pool).await, c.node(1).port);

    // The old primary comes back writable: a second primary.
    tokio::task::block_in_place(|| c.restart(0));
    support::run::wait_until("the old primary is seen again", &pool, |s| {
        s.node("primary").unwrap().healthy
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, failed_writes) = writes.await.unwrap();
    let (reads_ok, failed_reads) = reads.await.unwrap();
    println!(
        "promotion under load: {} writes acknowledged, {failed_writes} failed; {reads_ok} reads, {} failed",
        acked.len(),
        failed_reads.len()
    );
    assert!(failed_reads.is_empty(), "{failed_reads:?}");
    assert!(acked.len() > 50, "the loop wrote ({})", acked.len());
    for i in 0..10 {
        assert_eq!(writer_port(&pool).await, c.node(1).port, "write {i}");
    }

    // Every acknowledged write exactly once. Those the old primary acknowledged but had
    // not yet shipped when it was killed are on it alone (asynchronous replication loses
    // them on any failover; semi-sync replication closes that window): counted apart.
    let on_new = counts(&c.sql(1, "SELECT k FROM app.items"));
    let on_old = counts(&c.sql(0, "SELECT k FROM app.items"));
    let mut unshipped = 0;
    for k in &acked {
        let (n, o) = (
            on_new.get(k).copied().unwrap_or(0),
            on_old.get(k).copied().unwrap_or(0),
        );
        assert!(n <= 1 && o <= 1, "write {k} duplicated ({n} new, {o} old)");
        assert!(n == 1 || o == 1, "acknowledged write {k} lost");
        if n == 0 {
            unshipped += 1;
        }
    }
    let after_move = acked.iter().filter(|k| !on_old.contains_key(k)).count();
    println!(
        "{after_move} acknowledged writes on the promoted node only, {unshipped} never shipped"
    );
    assert!(after_move > 0, "writes continued on the promoted node");
    let old_count = c.sql(0, "SELECT count(*) FROM app.items");

    // The promoted node dies too. The old primary is still writable, but it lost the
    // writes: they fail, and it gets none.
    tokio::task::block_in_place(|| c.kill(1));
    support::run::wait_until("replica-1 down", &pool, |s| {
        !s.node("replica-1").unwrap().healthy
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    for _ in 0..5 {
        let r = sqlx::query("INSERT INTO items (k, v) VALUES (-1, 'must not land')")
            .execute(&pool)
            .await;
        assert!(r.is_err(), "a write went somewhere: {}", pool.status());
    }
    assert_eq!(c.sql(0, "SELECT count(*) FROM app.items"), old_count);
    let status = pool.status();
    assert!(!status.node("primary").unwrap().writer, "{status}");
    assert!(
        status.node("primary").unwrap().excluded.is_some(),
        "the old primary is shown as a rival: {status}"
    );
    // Reads still work (replica-2, which is read-only and following the dead node).
    assert_eq!(who(&pool).await.0, c.node(2).port);
    pool.close().await;
}

/// Stops replica `i`'s SQL thread, writes 30 rows (ids 0–29) and waits until the pool
/// sees it lagging.
async fn stall(c: &MariaCluster, pool: &MySqlReplicaPool, i: usize) {
    c.stop_sql_thread(i);
    for id in 0..30 {
        sqlx::query("INSERT INTO items VALUES (?, 'x')")
            .bind(id)
            .execute(pool)
            .await
            .unwrap();
    }
    let name = format!("replica-{i}");
    support::run::wait_until(&format!("{name} lags"), pool, |s| {
        s.node(&name).unwrap().lagging
    })
    .await;
}

/// A primary and two replicas with an `items (id, v)` table everywhere.
fn items_cluster() -> MariaCluster {
    let c = MariaCluster::start(2);
    c.sql(0, "CREATE TABLE app.items (id int PRIMARY KEY, v text)");
    c.wait_replayed();
    c
}

/// A pool whose probes read replication status as the monitor user (`SLAVE MONITOR`).
async fn connect_monitored(c: &MariaCluster, config: Config) -> MySqlReplicaPool {
    let mut b = MySqlReplicaPool::builder()
        .primary(c.url(0))
        .monitor_credentials("monitor", support::SECRET)
        .config(config);
    for url in c.replica_urls() {
        b = b.replica(url);
    }
    b.connect().await.unwrap()
}

/// Reads `n` times; the ports that answered, with counts.
async fn spread(pool: &MySqlReplicaPool, n: usize) -> HashMap<u16, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let (port, read_only) = who(pool).await;
        assert!(read_only, "a read ran on the primary ({port})");
        *seen.entry(port).or_insert(0) += 1;
    }
    seen
}

/// With a monitor user, roles and health come from replication state: `status()` shows
/// the IO/SQL threads; a replica whose SQL thread is stopped falls behind (lag in
/// transactions and in time, `Seconds_Behind_Master` being NULL) and leaves the rotation
/// above the limit, then returns; a replica whose replication stopped with an error leaves
/// at once, with the error in `status()`, and returns when it runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_state_decides_roles_lag_and_health() {
    let c = items_cluster();
    let pool = connect_monitored(
        &c,
        fault_config()
            .max_replica_lag(Duration::from_secs(1))
            .max_replica_lag_bytes(20),
    )
    .await;
    let status = pool.status();
    for name in ["replica-1", "replica-2"] {
        let r = status.node(name).unwrap().replication.clone().unwrap();
        assert!(r.unavailable.is_none(), "{status}");
        assert_eq!(r.channels.len(), 1, "{status}");
        assert_eq!(
            (
                r.channels[0].io_running.as_str(),
                r.channels[0].sql_running.as_str()
            ),
            ("Yes", "Yes")
        );
        assert_eq!(
            r.channels[0].source,
            format!("127.0.0.1:{}", c.node(0).port)
        );
    }
    let primary = status.node("primary").unwrap();
    assert!(primary.replication.as_ref().unwrap().channels.is_empty());
    assert!(primary.gtid_position.is_some(), "{status}");
    assert_eq!(spread(&pool, 20).await.len(), 2);

    // Stalled: the SQL thread stops (IO keeps fetching), the primary moves on.
    stall(&c, &pool, 1).await;
    let status = pool.status();
    let r1 = status.node("replica-1").unwrap();
    assert!(r1.lag_bytes >= Some(30), "30 transactions behind: {status}");
    assert_eq!(
        r1.replication.as_ref().unwrap().channels[0].sql_running,
        "No"
    );
    assert!(
        r1.excluded.is_none(),
        "stopped without an error is lag, not broken"
    );
    assert!(status.to_string().contains("tx"), "{status}");
    let stalled = spread(&pool, 20).await;
    assert_eq!(stalled.get(&c.node(1).port), None, "{stalled:?}");

    c.start_sql_thread(1);
    support::run::wait_until("replica-1 caught up", &pool, |s| {
        !s.node("replica-1").unwrap().lagging
    })
    .await;
    assert_eq!(spread(&pool, 20).await.len(), 2);

    // Broken: a row the primary's next insert collides with, slipped into replica-2 without
    // a GTID; its SQL thread stops with error 1062.
    c.sql(
        2,
        "SET sql_log_bin = 0; INSERT INTO app.items VALUES (1000, 'conflict')",
    );
    sqlx::query("INSERT INTO items VALUES (1000, 'primary')")
        .execute(&pool)
        .await
        .unwrap();
    support::run::wait_until("replica-2 out: replication broke", &pool, |s| {
        s.node("replica-2").unwrap().excluded.is_some()
    })
    .await;
    let status = pool.status();
    let why = status.node("replica-2").unwrap().excluded.clone().unwrap();
    assert!(why.contains("1062"), "{why}");
    assert!(status.to_string().contains("1062"), "{status}");
    let broken = spread(&pool, 20).await;
    assert_eq!(broken.get(&c.node(2).port), None, "{broken:?}");

    c.sql(
        2,
        "SET sql_log_bin = 0; DELETE FROM app.items WHERE id = 1000; START SLAVE SQL_THREAD",
    );
    support::run::wait_until("replica-2 back", &pool, |s| {
        let n = s.node("replica-2").unwrap();
        n.excluded.is_none() && !n.lagging
    })
    .await;
    assert_eq!(
        c.sql(2, "SELECT v FROM app.items WHERE id = 1000"),
        "primary"
    );
    assert_eq!(spread(&pool, 20).await.len(), 2);
    pool.close().await;
}

/// Without a monitor user (the application user may not read replication status), roles
/// come from `@@read_only` and lag from GTID positions, and `status()` says so; a stalled
/// replica still leaves the rotation and returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_monitor_user_lag_comes_from_gtid_positions() {
    let c = items_cluster();
    let pool = connect(
        &c,
        fault_config()
            .max_replica_lag(Duration::from_secs(1))
            .max_replica_lag_bytes(20),
    )
    .await;
    let status = pool.status();
    let note = status
        .node("replica-1")
        .unwrap()
        .replication
        .as_ref()
        .and_then(|r| r.unavailable.clone())
        .unwrap_or_default();
    assert!(note.contains("SLAVE MONITOR"), "{status}");
    assert!(
        status.to_string().contains("roles from @@read_only"),
        "{status}"
    );

    stall(&c, &pool, 2).await;
    assert!(pool.status().node("replica-2").unwrap().lag_bytes >= Some(30));
    let stalled = spread(&pool, 20).await;
    assert_eq!(stalled.get(&c.node(2).port), None, "{stalled:?}");

    // Time alone also takes it out: one write, then nothing applied for over a second.
    c.start_sql_thread(2);
    support::run::wait_until("replica-2 caught up", &pool, |s| {
        !s.node("replica-2").unwrap().lagging
    })
    .await;
    c.stop_sql_thread(2);
    sqlx::query("INSERT INTO items VALUES (100, 'x')")
        .execute(&pool)
        .await
        .unwrap();
    support::run::wait_until("replica-2 lags by time", &pool, |s| {
        let n = s.node("replica-2").unwrap();
        n.lagging && n.lag_bytes == Some(1)
    })
    .await;
    c.start_sql_thread(2);
    support::run::wait_until("replica-2 back", &pool, |s| {
        !s.node("replica-2").unwrap().lagging
    })
    .await;
    assert_eq!(spread(&pool, 20).await.len(), 2);
    pool.close().await;
}

/// Read-your-writes by GTID: with every replica's SQL thread stopped, 1,000 session
/// write-then-read pairs all see their write while plain reads are stale; with replication
/// running, session reads are served by replicas that have the write; tokens cross pools,
/// a forged one is clamped, and a PostgreSQL token is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_read_their_writes_by_gtid() {
    use futures_util::StreamExt;
    let c = items_cluster();
    let pool = connect(
        &c,
        // Session scope: plain reads must show what sessions add.
        Config::default()
            .causal_wait(Duration::from_millis(2))
            .max_replica_lag(None)
            .consistency_scope(partypool::Scope::Session),
    )
    .await;

    c.stop_sql_thread(1);
    c.stop_sql_thread(2);
    let results: Vec<(bool, bool)> = futures_util::stream::iter(0..1000)
        .map(|i| {
            let pool = pool.clone();
            async move {
                let session = pool.session();
                sqlx::query("INSERT INTO items VALUES (?, 'mine')")
                    .bind(i)
                    .execute(&session)
                    .await
                    .unwrap();
                let own: Option<String> = sqlx::query_scalar("SELECT v FROM items WHERE id = ?")
                    .bind(i)
                    .fetch_optional(&session)
                    .await
                    .unwrap();
                let plain: Option<String> = sqlx::query_scalar("SELECT v FROM items WHERE id = ?")
                    .bind(i)
                    .fetch_optional(&pool)
                    .await
                    .unwrap();
                (own.is_some(), plain.is_some())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let own = results.iter().filter(|r| r.0).count();
    let plain = results.iter().filter(|r| r.1).count();
    println!("paused replicas: {own}/1000 sessions saw their write, {plain}/1000 plain reads did");
    assert_eq!(own, 1000);
    assert_eq!(plain, 0, "plain reads go to the stalled replicas");

    // A token carries the GTID position to another pool (another process).
    let session = pool.session();
    sqlx::query("INSERT INTO items VALUES (5000, 'handed over')")
        .execute(&session)
        .await
        .unwrap();
    let token = session.settled_token().await.unwrap();
    assert_eq!(token.kind(), partypool::TokenKind::Gtid);
    let text = token.to_string();
    assert!(text.starts_with("pp2-g-0000000000000000-0."), "{text}");
    let other = connect(&c, Config::default().causal_wait(Duration::from_millis(2))).await;
    let continued = other.session_with(text.parse().unwrap()).unwrap();
    let v: Option<String> = sqlx::query_scalar("SELECT v FROM items WHERE id = 5000")
        .fetch_optional(&continued)
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("handed over"));

    // A pending token (a write whose position is not known yet) is accepted: its holder
    // reads on the primary until it has settled.
    let pending: partypool::CausalToken = format!(
        "pp2-p-0000000000000000-{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    )
    .parse()
    .unwrap();
    let held = other.session_with(pending).unwrap();
    let ro: i64 = sqlx::query_scalar("SELECT @@read_only")
        .fetch_one(&held)
        .await
        .unwrap();
    assert_eq!(ro, 0, "a pending token reads on the primary");

    // A PostgreSQL token, or garbage, is refused with a clear error.
    let pg: partypool::CausalToken = "pp2-l-6f1a2b3c4d5e6f70-1-3000148".parse().unwrap();
    let err = other.session_with(pg).unwrap_err();
    assert!(err.to_string().contains("cluster"), "{err}");
    let no_cluster: partypool::CausalToken = "pp2-l-0-1-3000148".parse().unwrap();
    let err = other.session_with(no_cluster).unwrap_err();
    assert!(err.to_string().contains("GTID"), "{err}");

    // Replication running: the session's reads are served by replicas that have the write.
    c.start_sql_thread(1);
    c.start_sql_thread(2);
    c.wait_replayed();
    let live = connect(&c, Config::default().causal_wait(Duration::from_secs(2))).await;
    let mut on_replica = 0;
    for i in 0..200 {
        let session = live.session();
        sqlx::query("INSERT INTO items VALUES (?, 'live')")
            .bind(10_000 + i)
            .execute(&session)
            .await
            .unwrap();
        let row = sqlx::query("SELECT v, @@read_only FROM items WHERE id = ?")
            .bind(10_000 + i)
            .fetch_optional(&session)
            .await
            .unwrap()
            .expect("the session sees its write");
        if row.get::<i64, _>(1) == 1 {
            on_replica += 1;
        }
    }
    println!("replicas running: {on_replica}/200 session reads served by a replica");
    assert!(on_replica >= 150, "{on_replica}/200 on replicas");

    // A forged token far ahead of the primary: one read on the primary, then clamped.
    let forged: partypool::CausalToken = "pp2-g-0000000000000000-0.ffffffffff".parse().unwrap();
    let s = live.session_with(forged).unwrap();
    for _ in 0..3 {
        let _: i64 = sqlx::query_scalar("SELECT @@read_only")
            .fetch_one(&s)
            .await
            .unwrap();
    }
    let ro: i64 = sqlx::query_scalar("SELECT @@read_only")
        .fetch_one(&s)
        .await
        .unwrap();
    assert_eq!(ro, 1, "after the clamp, reads go to replicas again");
    for p in [pool, other, live] {
        p.close().await;
    }
}

/// The process scope on MariaDB: two pools of one cluster in the process (the same primary
/// address) share what was written; with both replicas' SQL threads stopped, a write through
/// one is read back through the other (from the primary), while consistency off reads the
/// stale replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_scope_covers_every_pool_of_the_cluster() {
    let c = items_cluster();
    let config = Config::default()
        .causal_wait(Duration::from_millis(2))
        .max_replica_lag(None);
    let writer = connect(&c, config.clone()).await;
    let reader = connect(&c, config.clone()).await;
    let off = connect(&c, config.consistency_scope(partypool::Scope::Off)).await;
    tokio::task::block_in_place(|| {
        c.stop_sql_thread(1);
        c.stop_sql_thread(2);
    });
    for i in 0..50 {
        sqlx::query("INSERT INTO items VALUES (?, 'w')")
            .bind(10_000 + i)
            .execute(&writer)
            .await
            .unwrap();
        let seen: Option<String> = sqlx::query_scalar("SELECT v FROM items WHERE id = ?")
            .bind(10_000 + i)
            .fetch_optional(&reader)
            .await
            .unwrap();
        assert!(
            seen.is_some(),
            "write {i}: another pool of the process reads it"
        );
        let stale: Option<String> = sqlx::query_scalar("SELECT v FROM items WHERE id = ?")
            .bind(10_000 + i)
            .fetch_optional(&off)
            .await
            .unwrap();
        assert!(
            stale.is_none(),
            "with consistency off, the stalled replicas answer"
        );
    }
    tokio::task::block_in_place(|| {
        c.start_sql_thread(1);
        c.start_sql_thread(2);
        c.wait_replayed();
    });
    // Caught up: reads go back to the replicas.
    let (port, read_only) = who(&reader).await;
    assert!(
        read_only,
        "the replicas have everything again (read on {port}): {}",
        reader.status()
    );
}

/// Strict replica sessions on MariaDB: a replica read runs in a read-only session, the
/// primary's statements do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_sessions_are_read_only() {
    let c = items_cluster();
    let pool = connect(&c, Config::default()).await;
    for _ in 0..4 {
        let (on_replica, read_only): (i64, i64) =
            sqlx::query_as("SELECT @@read_only, @@session.tx_read_only")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(
            (on_replica, read_only),
            (1, 1),
            "a replica read, in a read-only session"
        );
        let (on_replica, read_only): (i64, i64) =
            sqlx::query_as("SELECT @@read_only, @@session.tx_read_only")
                .fetch_one(pool.on_primary())
                .await
                .unwrap();
        assert_eq!((on_replica, read_only), (0, 0), "the primary");
    }
    let lax = connect(&c, Config::default().strict_replicas(false)).await;
    let (_, read_only): (i64, i64) = sqlx::query_as("SELECT @@read_only, @@session.tx_read_only")
        .fetch_one(&lax)
        .await
        .unwrap();
    assert_eq!(read_only, 0, "without strict sessions");
}
