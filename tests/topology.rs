//! Topology that follows the deployment, on real streaming replication: nodes without
//! declared roles (a libpq-style multi-host URL), failover with no role declared anywhere,
//! and members added and removed while statements run. Who answered is the server's word
//! (`inet_server_port()`, `pg_is_in_recovery()`).

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use partypool::{Config, Error, Origin, PgReplicaPool, Role};
use sqlx::Row;
use support::PgCluster;

const INTERVAL: Duration = Duration::from_millis(250);

fn config() -> Config {
    support::run::fault_config(INTERVAL, Duration::from_millis(500))
}

async fn who(pool: &PgReplicaPool) -> Result<(u16, bool), sqlx::Error> {
    let row = sqlx::query("SELECT inet_server_port(), pg_is_in_recovery()")
        .fetch_one(pool)
        .await?;
    Ok((row.get::<i32, _>(0) as u16, row.get(1)))
}

/// Where a write ran.
async fn write(pool: &PgReplicaPool) -> Result<u16, sqlx::Error> {
    let port: i32 =
        sqlx::query_scalar("INSERT INTO topo (v) VALUES ('w') RETURNING inet_server_port()")
            .fetch_one(pool)
            .await?;
    Ok(port as u16)
}

/// Reads in the background until `stop`; returns (reads per port, failures).
fn read_loop(
    pool: &PgReplicaPool,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(HashMap<u16, usize>, Vec<String>)> {
    let (pool, stop) = (pool.clone(), stop.clone());
    tokio::spawn(async move {
        let (mut seen, mut failed) = (HashMap::new(), Vec::new());
        while !stop.load(Ordering::Relaxed) {
            match who(&pool).await {
                Ok((port, _)) => *seen.entry(port).or_insert(0) += 1,
                Err(e) => failed.push(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        (seen, failed)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_host_url_needs_no_roles_and_follows_a_failover() {
    let c = PgCluster::start(2);
    c.psql(0, "CREATE TABLE topo (id serial PRIMARY KEY, v text)");
    c.wait_replayed();
    let (p0, p1, p2) = (c.primary().port, c.replica(1).port, c.replica(2).port);
    // The primary in the middle: nothing says which host it is.
    let pool = PgReplicaPool::builder()
        .nodes(c.multi_host_url(&[1, 0, 2]))
        .config(config())
        .connect()
        .await
        .unwrap();
    let status = pool.status();
    let primary = status
        .node(&format!("127.0.0.1:{p0}"))
        .expect("named host:port");
    assert!(primary.writer, "{status}");
    assert_eq!(
        (primary.role, primary.origin),
        (Role::Discovered, Origin::MultiHost)
    );
    assert!(!status.to_string().contains(support::SECRET), "{status}");

    assert_eq!(write(&pool).await.unwrap(), p0);
    let mut seen = HashMap::new();
    for _ in 0..20 {
        let (port, standby) = who(&pool).await.unwrap();
        assert!(standby, "a read ran on the primary");
        *seen.entry(port).or_insert(0) += 1;
    }
    assert!(seen.contains_key(&p1) && seen.contains_key(&p2), "{seen:?}");

    // The primary dies and a replica is promoted; no role is declared anywhere.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = read_loop(&pool, &stop);
    tokio::time::sleep(Duration::from_millis(200)).await;
    support::run::blocking(|| {
        c.kill(0);
        c.promote(1);
    });
    let promoted = Instant::now();
    let moved = loop {
        if let Ok(port) = write(&pool).await {
            if port == p1 {
                break promoted.elapsed();
            }
            panic!("a write ran on {port}");
        }
        assert!(
            promoted.elapsed() < Duration::from_secs(20),
            "{}",
            pool.status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    println!(
        "multi-host failover: writes on the promoted node {moved:?} after the promotion (health interval {INTERVAL:?})"
    );
    assert!(
        moved <= 2 * INTERVAL + Duration::from_millis(250),
        "writes moved after {moved:?}"
    );
    for _ in 0..5 {
        assert_eq!(write(&pool).await.unwrap(), p1);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (seen, failed) = reads.await.unwrap();
    assert!(failed.is_empty(), "failed reads: {failed:?}");
    assert!(seen.get(&p2).is_some_and(|n| *n > 0), "{seen:?}");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_and_leave_while_statements_run() {
    let mut c = PgCluster::start(2);
    c.psql(0, "CREATE TABLE topo (id serial PRIMARY KEY, v text)");
    c.wait_replayed();
    let (p0, p1, p2) = (c.primary().port, c.replica(1).port, c.replica(2).port);

    // Only the standbys at first: reads work, writes fail at once and say why.
    let pool = PgReplicaPool::builder()
        .nodes(c.multi_host_url(&[1, 2]))
        .config(config())
        .connect()
        .await
        .unwrap();
    assert!(who(&pool).await.unwrap().1);
    let started = Instant::now();
    let err = write(&pool).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("no node takes writes"), "{err}");

    // The primary joins: it takes the writes.
    let name = pool.add_node(&c.url(0)).await.unwrap();
    assert_eq!(name, format!("127.0.0.1:{p0}"));
    assert_eq!(pool.status().node(&name).unwrap().origin, Origin::Added);
    assert_eq!(write(&pool).await.unwrap(), p0);

    // A standby started after connect serves reads within one interval of joining.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = read_loop(&pool, &stop);
    let p3 = support::run::blocking(|| {
        let i = c.base_backup();
        c.wait_streaming(3);
        c.replica(i).port
    });
    let joined = Instant::now();
    let new = pool.add_replica(&c.url(3)).await.unwrap();
    assert_eq!(new, "replica-1", "the first declared replica");
    let served = loop {
        let (port, standby) = who(&pool).await.unwrap();
        assert!(standby);
        if port == p3 {
            break joined.elapsed();
        }
        assert!(
            joined.elapsed() < Duration::from_secs(5),
            "{}",
            pool.status()
        );
    };
    println!("a standby added at run time served a read {served:?} after add_replica");
    assert!(served <= INTERVAL, "{served:?}");

    // Removing a standby under the read loop fails no read; it gets none afterwards.
    let dropped = format!("127.0.0.1:{p1}");
    pool.remove_node(&dropped).await.unwrap();
    assert!(pool.status().node(&dropped).is_none(), "{}", pool.status());
    let mut after = HashMap::new();
    for _ in 0..30 {
        *after.entry(who(&pool).await.unwrap().0).or_insert(0) += 1;
    }
    assert!(!after.contains_key(&p1), "{after:?}");
    assert!(
        after.contains_key(&p2) && after.contains_key(&p3),
        "{after:?}"
    );
    stop.store(true, Ordering::Relaxed);
    let (_, failed) = reads.await.unwrap();
    assert!(failed.is_empty(), "failed reads: {failed:?}");

    // The writer cannot be removed while no other node is writable; unknown names fail.
    let refused = pool.remove_node(&name).await.unwrap_err();
    assert!(matches!(refused, Error::Membership(_)), "{refused}");
    assert!(
        refused.to_string().contains("no other node is writable"),
        "{refused}"
    );
    assert!(matches!(
        pool.remove_node("nope").await,
        Err(Error::Membership(_))
    ));
    assert!(matches!(
        pool.add_node(&c.multi_host_url(&[1, 2])).await,
        Err(Error::Membership(_))
    ));
    assert_eq!(write(&pool).await.unwrap(), p0);
    pool.close().await;
}
