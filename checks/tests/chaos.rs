//! Fault injection on real clusters: killed, hung and lagging replicas, a promoted primary.
//! Each test has a private cluster (they stop, pause and promote nodes).

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use partypool::{Config, PgReplicaPool};
use sqlx::Row;
use support::PgCluster;
use support::proxy::{Fault, FaultProxy};
use support::run::{blocking, serial, wait_until};

const INTERVAL: Duration = Duration::from_millis(200);

const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

fn config() -> Config {
    support::run::fault_config(INTERVAL, PROBE_TIMEOUT)
}

/// One read: which server ran it, and whether it is a standby.
async fn who(pool: &PgReplicaPool) -> Result<(u16, bool), sqlx::Error> {
    let row = sqlx::query("SELECT inet_server_port(), pg_is_in_recovery()")
        .fetch_one(pool)
        .await?;
    Ok((row.get::<i32, _>(0) as u16, row.get(1)))
}

/// A read made by the background workload.
struct Read {
    started: Instant,
    took: Duration,
    result: Result<(u16, bool), String>,
}

/// `tasks` tasks reading in a loop until the returned flag is set.
fn read_loop(
    pool: &PgReplicaPool,
    tasks: usize,
) -> (Arc<AtomicBool>, Vec<tokio::task::JoinHandle<Vec<Read>>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let handles = (0..tasks)
        .map(|_| {
            let (pool, stop) = (pool.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut reads = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let result = who(&pool).await.map_err(|e| e.to_string());
                    reads.push(Read {
                        started,
                        took: started.elapsed(),
                        result,
                    });
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                reads
            })
        })
        .collect();
    (stop, handles)
}

async fn finish(
    stop: Arc<AtomicBool>,
    handles: Vec<tokio::task::JoinHandle<Vec<Read>>>,
) -> Vec<Read> {
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all
}

/// Every read of the background workload succeeded.
fn assert_no_read_failed(reads: &[Read]) {
    let failed: Vec<&String> = reads
        .iter()
        .filter_map(|r| r.result.as_ref().err())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} reads failed: {:?}",
        failed.len(),
        reads.len(),
        &failed[..failed.len().min(5)]
    );
}

async fn connect(c: &PgCluster, replicas: &[String], config: Config) -> PgReplicaPool {
    let replicas: Vec<&str> = replicas.iter().map(String::as_str).collect();
    PgReplicaPool::connect(&c.primary_url(), &replicas, config)
        .await
        .unwrap()
}

/// (a) SIGKILL one replica while 4 tasks loop reads: zero failed reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_costs_no_read() {
    let _serial = serial().await;
    let c = PgCluster::start(2);
    let pool = connect(&c, &c.replica_urls(), config()).await;
    let (stop, handles) = read_loop(&pool, 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    blocking(|| c.kill(1));
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reads = finish(stop, handles).await;

    assert_no_read_failed(&reads);
    let after: HashSet<u16> = reads
        .iter()
        .filter(|r| r.started > killed + INTERVAL + PROBE_TIMEOUT)
        .filter_map(|r| r.result.as_ref().ok().map(|w| w.0))
        .collect();
    assert_eq!(
        after,
        HashSet::from([c.replica(2).port]),
        "reads after the kill went to the survivor only"
    );
    let status = pool.status();
    assert!(!status.node("replica-1").unwrap().healthy, "{status}");
    println!(
        "{} reads, 0 failed; retries: {}",
        reads.len(),
        status.nodes.iter().map(|n| n.retries).sum::<u64>()
    );
    pool.close().await;
}

/// (b) Black-hole one replica: reads keep flowing within 2× health_check_timeout of the
/// health check noticing, no call takes longer than the configured timeouts, and close()
/// returns promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_replica_never_hangs_a_call() {
    let _serial = serial().await;
    let c = PgCluster::start(2);
    let proxy = FaultProxy::start(c.replica(1).port);
    let replicas = vec![c.url_via(proxy.port), c.url(2)];
    let pool = connect(
        &c,
        &replicas,
        config().statement_timeout(Some(Duration::from_secs(2))),
    )
    .await;
    let (stop, handles) = read_loop(&pool, 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.set(Fault::BlackHole);
    let holed = Instant::now();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let reads = finish(stop, handles).await;

    assert_no_read_failed(&reads);
    // No call takes longer than the configured timeouts: a read stuck on the black hole is
    // cut off when the health check gives up on the node (about one interval plus one probe
    // timeout after the fault), then retried; `statement_timeout` bounds everything.
    let slowest = reads.iter().map(|r| r.took).max().unwrap();
    assert!(slowest < Duration::from_secs(2), "a read took {slowest:?}");
    // Reads keep flowing, on the other replica, within 2× the probe timeout after the
    // interval in which the fault is noticed.
    let bound = INTERVAL + 2 * PROBE_TIMEOUT;
    let late: Vec<&Read> = reads.iter().filter(|r| r.started > holed + bound).collect();
    assert!(
        late.len() > 50,
        "reads kept flowing after the fault: {}",
        late.len()
    );
    assert!(
        late.iter()
            .all(|r| r.result.as_ref().unwrap().0 == c.replica(2).port)
    );
    println!("{} reads, slowest {slowest:?}", reads.len());

    // Neither a long statement through the pool nor one on a raw handle holds close() up.
    let (long, raw) = {
        let (a, b) = (pool.clone(), pool.clone());
        (
            tokio::spawn(async move { sqlx::query("SELECT pg_sleep(30)").execute(&a).await }),
            tokio::spawn(async move {
                sqlx::query("SELECT pg_sleep(30)")
                    .execute(&b.replica())
                    .await
            }),
        )
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    pool.close().await;
    assert!(
        started.elapsed() < 3 * PROBE_TIMEOUT,
        "close took {:?}",
        started.elapsed()
    );
    let err = long.await.unwrap().unwrap_err();
    assert!(matches!(err, sqlx::Error::PoolClosed), "{err}");
    raw.abort();
    drop(proxy);
}

/// (c) Pause replay on a replica with max_replica_lag 1 s and write for 3 s: it leaves the
/// rotation; resumed, it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_leaves_and_returns() {
    let _serial = serial().await;
    let c = PgCluster::start(2);
    c.psql(
        0,
        "CREATE TABLE lag_writes (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())",
    );
    c.wait_replayed();
    let pool = connect(
        &c,
        &c.replica_urls(),
        config().max_replica_lag(Some(Duration::from_secs(1))),
    )
    .await;
    blocking(|| c.pause_replay(1));
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        sqlx::query("INSERT INTO lag_writes DEFAULT VALUES")
            .execute(&pool)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_until("replica-1 to lag", &pool, |s| {
        s.node("replica-1").unwrap().lagging
    })
    .await;
    let status = pool.status();
    let r1 = status.node("replica-1").unwrap();
    assert!(
        r1.lag.unwrap() > Duration::from_secs(1) && r1.lag_bytes.unwrap() > 0,
        "{status}"
    );
    assert!(status.to_string().contains("lagging"), "{status}");
    for _ in 0..40 {
        assert_eq!(
            who(&pool).await.unwrap(),
            (c.replica(2).port, true),
            "a read went to the lagging replica"
        );
    }

    blocking(|| c.resume_replay(1));
    wait_until("replica-1 to catch up", &pool, |s| {
        !s.node("replica-1").unwrap().lagging
    })
    .await;
    let ports: HashSet<u16> = futures_util::future::join_all((0..20).map(|_| who(&pool)))
        .await
        .into_iter()
        .map(|r| r.unwrap().0)
        .collect();
    assert!(
        ports.contains(&c.replica(1).port),
        "replica-1 is back in the rotation"
    );
    pool.close().await;
}

/// (d) Stop the primary and promote a replica while a task keeps writing: writes succeed
/// again within 3 health intervals of the promotion, every acknowledged write survives, and
/// no write is applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_follow_a_promotion_and_are_never_applied_twice() {
    let _serial = serial().await;
    let c = PgCluster::start(2);
    // No unique key on `k`: a retried write would show up as a duplicate.
    c.psql(
        0,
        "CREATE TABLE promo_writes (id bigserial PRIMARY KEY, k bigint NOT NULL)",
    );
    // Commits wait until replica1 has applied them, so an acknowledged write cannot be lost
    // to asynchronous replication when the primary dies (that would not be the client's doing).
    c.psql(0, "ALTER SYSTEM SET synchronous_standby_names = 'replica1'");
    c.psql(0, "ALTER SYSTEM SET synchronous_commit = 'remote_apply'");
    c.psql(0, "SELECT pg_reload_conf()");
    c.wait_replayed();
    let pool = connect(&c, &c.replica_urls(), config()).await;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (pool, stop) = (pool.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let mut k = 0_i64;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                let r = sqlx::query("INSERT INTO promo_writes (k) VALUES ($1)")
                    .bind(k)
                    .execute(&pool)
                    .await;
                outcomes.push((k, Instant::now(), r.is_ok()));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            outcomes
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    blocking(|| {
        c.stop(0);
        c.promote(1);
    });
    let promoted = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = writer.await.unwrap();

    let first_ok = outcomes
        .iter()
        .find(|(_, at, ok)| *ok && *at > promoted)
        .map(|(_, at, _)| at.duration_since(promoted))
        .unwrap_or_else(|| {
            panic!(
                "writes never resumed after the promotion:\n{}",
                pool.status()
            )
        });
    assert!(
        first_ok <= 3 * INTERVAL,
        "writes resumed {first_ok:?} after the promotion"
    );
    let status = pool.status();
    assert!(status.node("replica-1").unwrap().writer, "{status}");
    assert_eq!(who_writes(&pool).await, (c.replica(1).port, false));

    // Every acknowledged write is there; nothing is there twice.
    let dupes = c.psql(
        1,
        "SELECT count(*) FROM (SELECT k FROM promo_writes GROUP BY k HAVING count(*) > 1) d",
    );
    assert_eq!(dupes, "0", "a write was applied twice");
    let present: HashSet<i64> = c
        .psql(
            1,
            "SELECT coalesce(string_agg(k::text, ','), '') FROM promo_writes",
        )
        .split(',')
        .filter(|v| !v.is_empty())
        .map(|v| v.parse().unwrap())
        .collect();
    let acked: Vec<i64> = outcomes.iter().filter(|o| o.2).map(|o| o.0).collect();
    let missing: Vec<&i64> = acked.iter().filter(|k| !present.contains(k)).collect();
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    let failed = outcomes.len() - acked.len();
    assert!(
        acked.len() > 100,
        "too few writes to judge: {}",
        acked.len()
    );
    println!(
        "{} writes acknowledged, {failed} failed while the primary was gone; writes resumed \
         {first_ok:?} after the promotion; none lost, none applied twice",
        acked.len()
    );
    pool.close().await;
}

async fn who_writes(pool: &PgReplicaPool) -> (u16, bool) {
    let row = sqlx::query("SELECT inet_server_port(), pg_is_in_recovery()")
        .fetch_one(pool.on_primary())
        .await
        .unwrap();
    (row.get::<i32, _>(0) as u16, row.get(1))
}

/// With follow_promotion off, writes fail at once and say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_follow_promotion_writes_fail_fast_and_say_why() {
    let _serial = serial().await;
    let c = PgCluster::start(1);
    let pool = connect(&c, &c.replica_urls(), config().follow_promotion(false)).await;
    blocking(|| {
        c.stop(0);
        c.promote(1);
    });
    wait_until("writes to be blocked", &pool, |s| {
        !s.node("primary").unwrap().healthy
    })
    .await;
    tokio::time::sleep(INTERVAL * 2).await;
    let started = Instant::now();
    let err = sqlx::query("CREATE TABLE never (id int)")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "failed fast: {:?}",
        started.elapsed()
    );
    let msg = err.to_string();
    assert!(
        msg.contains("follow_promotion is off") && msg.contains("replica-1"),
        "{msg}"
    );
    let err = pool.begin().await.unwrap_err();
    assert!(matches!(err, partypool::Error::NoPrimary { .. }), "{err}");
    pool.close().await;
}

/// A replica reset mid-stream: reads that returned nothing yet are retried; the status counts
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_connections_are_retried_elsewhere() {
    let _serial = serial().await;
    let c = PgCluster::start(2);
    let proxy = FaultProxy::start(c.replica(1).port);
    let replicas = vec![c.url_via(proxy.port), c.url(2)];
    let pool = connect(&c, &replicas, config()).await;
    let (stop, handles) = read_loop(&pool, 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.set(Fault::Reset);
    tokio::time::sleep(Duration::from_millis(800)).await;
    proxy.set(Fault::Pass);
    wait_until("replica-1 to come back", &pool, |s| {
        s.node("replica-1").unwrap().healthy
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reads = finish(stop, handles).await;
    assert_no_read_failed(&reads);
    let ports: HashSet<u16> = reads
        .iter()
        .rev()
        .take(40)
        .map(|r| r.result.as_ref().unwrap().0)
        .collect();
    assert!(ports.contains(&c.replica(1).port), "replica-1 rejoined");
    pool.close().await;
}

/// Latency-aware balancing steers reads away from a replica the fault proxy slows down;
/// weighted round-robin follows the configured weights. Proven by the port that answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balancing_policies_on_a_real_cluster() {
    let _serial = serial().await;
    let c = PgCluster::start(2);
    let proxy = FaultProxy::start(c.replica(1).port);
    proxy.set(Fault::Latency(Duration::from_millis(20)));
    let replicas = vec![c.url_via(proxy.port), c.url(2)];
    let pool = connect(
        &c,
        &replicas,
        config().balance(partypool::Balance::LatencyAware),
    )
    .await;
    // Let both replicas be measured once.
    for _ in 0..20 {
        who(&pool).await.unwrap();
    }
    let mut slow = 0;
    for _ in 0..300 {
        if who(&pool).await.unwrap().0 == c.replica(1).port {
            slow += 1;
        }
    }
    assert!(slow < 15, "{slow} of 300 reads went to the slow replica");
    pool.close().await;

    let pool = connect(
        &c,
        &c.replica_urls(),
        config()
            .balance(partypool::Balance::WeightedRoundRobin)
            .replica_weights(vec![1, 3]),
    )
    .await;
    let mut first = 0;
    for _ in 0..400 {
        if who(&pool).await.unwrap().0 == c.replica(1).port {
            first += 1;
        }
    }
    assert_eq!(
        first, 100,
        "weights 1 : 3 give replica-1 a quarter of the reads"
    );
    pool.close().await;
}

/// After a failover, the old primary coming back (not fenced, not in recovery) must not take
/// the writes back: it is on an older timeline. Never two primaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_old_primary_does_not_split_the_writes() {
    let _serial = serial().await;
    let c = PgCluster::start(1);
    c.psql(0, "CREATE TABLE split (id bigserial PRIMARY KEY)");
    c.wait_replayed();
    let pool = connect(&c, &c.replica_urls(), config()).await;
    blocking(|| {
        c.stop(0);
        c.promote(1);
    });
    wait_until("writes to move", &pool, |s| {
        s.node("replica-1").unwrap().writer
    })
    .await;
    blocking(|| c.restart(0));
    wait_until("the old primary to answer", &pool, |s| {
        s.node("primary").unwrap().healthy
    })
    .await;
    tokio::time::sleep(INTERVAL * 3).await;
    let status = pool.status();
    assert!(status.node("replica-1").unwrap().writer, "{status}");
    for _ in 0..10 {
        sqlx::query("INSERT INTO split DEFAULT VALUES")
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(who_writes(&pool).await, (c.replica(1).port, false));
    }
    assert_eq!(
        c.psql(0, "SELECT count(*) FROM split"),
        "0",
        "nothing written to the old primary"
    );
    pool.close().await;
}
