//! The failure model where real deployments break it: a full pool, an accidental promotion,
//! an unfenced old primary, a node of another cluster, dropped write streams, untrusted
//! tokens and writes whose outcome is unknown. Every test has a private cluster (they
//! promote, stall and kill nodes) and runs alone (they assert where things ran and how long
//! they took, on 2 cores).

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use partypool::{CausalToken, Config, PgReplicaPool, TokenKind};
use sqlx::Row;
use support::PgCluster;
use support::proxy::{Fault, FaultProxy};
use support::run::{blocking, serial, wait_until};

const INTERVAL: Duration = Duration::from_millis(200);
const PROBE_TIMEOUT: Duration = Duration::from_millis(400);

fn config() -> Config {
    support::run::fault_config(INTERVAL, PROBE_TIMEOUT)
}

async fn connect(primary: &str, replicas: &[String], config: Config) -> PgReplicaPool {
    let replicas: Vec<&str> = replicas.iter().map(String::as_str).collect();
    PgReplicaPool::connect(primary, &replicas, config)
        .await
        .unwrap()
}

/// Which server ran a statement: its port, and whether it is a standby.
async fn who<'e>(ex: impl sqlx::Executor<'e, Database = sqlx::Postgres>) -> (u16, bool) {
    let row = sqlx::query("SELECT inet_server_port(), pg_is_in_recovery()")
        .fetch_one(ex)
        .await
        .unwrap();
    (row.get::<i32, _>(0) as u16, row.get(1))
}

/// Rows of `table` whose id is in `ids`, counted on node `i` directly.
fn count_on(c: &PgCluster, i: usize, table: &str, ids: &[i64]) -> usize {
    if ids.is_empty() {
        return 0;
    }
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    c.psql(
        i,
        &format!(
            "SELECT count(*) FROM {table} WHERE id IN ({})",
            list.join(",")
        ),
    )
    .parse()
    .unwrap()
}

/// 1. A full pool is not a down node: 40 slow reads on replica pools of 2 connections each
/// never move to the primary, never take a replica out, and fail (if at all) only with the
/// pool's own timeout. One backend terminated by an administrator does not take its node
/// out either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_is_not_a_down_node() {
    let _serial = serial().await;
    let c = PgCluster::start(2);
    let pool = connect(
        &c.primary_url(),
        &c.replica_urls(),
        config()
            .max_connections(2)
            .primary_max_connections(Some(10))
            .acquire_timeout(Duration::from_secs(2)),
    )
    .await;
    let reads: Vec<_> = (0..40)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                sqlx::query("SELECT inet_server_port(), pg_is_in_recovery(), pg_sleep(0.3)")
                    .fetch_one(&pool)
                    .await
                    .map(|r| (r.get::<i32, _>(0) as u16, r.get::<bool, _>(1)))
            })
        })
        .collect();
    let mut worst = pool.status();
    let mut results = Vec::new();
    for r in reads {
        while !r.is_finished() {
            let s = pool.status();
            if s.nodes.iter().filter(|n| n.healthy).count()
                < worst.nodes.iter().filter(|n| n.healthy).count()
            {
                worst = s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        results.push(r.await.unwrap());
    }
    let ok: Vec<(u16, bool)> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    let on_primary = ok.iter().filter(|(_, standby)| !standby).count();
    assert_eq!(
        on_primary,
        0,
        "{on_primary} of {} reads ran on the primary",
        ok.len()
    );
    assert!(
        worst.nodes.iter().all(|n| n.healthy),
        "a node left the rotation:\n{worst}"
    );
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(e, sqlx::Error::PoolTimedOut),
            "a read failed with {e}"
        );
    }
    assert!(
        ok.len() >= 20,
        "only {} of 40 reads got a connection",
        ok.len()
    );
    let ports: HashSet<u16> = ok.iter().map(|w| w.0).collect();
    assert_eq!(ports.len(), 2, "both replicas served: {ports:?}");
    println!(
        "{} of 40 reads ran (all on replicas), {} timed out waiting",
        ok.len(),
        40 - ok.len()
    );

    // An administrator terminates one backend running a read on replica-1.
    let pool2 = pool.clone();
    let long = tokio::spawn(async move {
        sqlx::query("SELECT pg_sleep(2), inet_server_port()")
            .fetch_one(pool2.on_replica())
            .await
    });
    let mut terminated = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        for i in [1, 2] {
            let n: String = blocking(|| {
                c.psql(
                    i,
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(2)%'",
                )
            });
            terminated |= n != "0";
        }
        if terminated {
            break;
        }
    }
    assert!(terminated, "found the backend to terminate");
    long.await
        .unwrap()
        .expect("the read ran again on another node");
    let status = pool.status();
    assert!(
        status.nodes.iter().all(|n| n.healthy),
        "one terminated backend took a node out:\n{status}"
    );
    pool.close().await;
}

/// 2. An accidental promotion does not split the writes: with a healthy primary, a replica
/// promoted by mistake gets no writes and leaves the read rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accidental_promotion_gets_no_writes() {
    let _serial = serial().await;
    let c = PgCluster::start(2);
    c.psql(0, "CREATE TABLE acc (id bigint PRIMARY KEY)");
    c.wait_replayed();
    let pool = connect(&c.primary_url(), &c.replica_urls(), config()).await;
    blocking(|| c.promote(1));
    tokio::time::sleep(INTERVAL * 5).await;
    let ids: Vec<i64> = (1..=20).collect();
    for id in &ids {
        sqlx::query("INSERT INTO acc VALUES ($1)")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    }
    assert_eq!(
        blocking(|| count_on(&c, 0, "acc", &ids)),
        20,
        "every write on the primary"
    );
    assert_eq!(
        blocking(|| count_on(&c, 1, "acc", &ids)),
        0,
        "no write on the promoted replica"
    );
    for _ in 0..20 {
        let (port, standby) = who(&pool).await;
        assert!(standby && port != c.replica(1).port, "a read ran on {port}");
    }
    let status = pool.status();
    let rival = status.node("replica-1").unwrap();
    assert!(
        !rival.writer && status.node("primary").unwrap().writer,
        "{status}"
    );
    assert!(
        rival
            .excluded
            .as_deref()
            .is_some_and(|why| why.contains("primary")),
        "status says why replica-1 is out:\n{status}"
    );
    pool.close().await;
}

/// 3. After a failover, writes never go back to the unfenced old primary, not even while the
/// new one stalls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_never_go_back_to_an_unfenced_old_primary() {
    let _serial = serial().await;
    let c = PgCluster::start(2);
    c.psql(0, "CREATE TABLE fo (id bigint PRIMARY KEY)");
    c.wait_replayed();
    let pool = connect(
        &c.primary_url(),
        &c.replica_urls(),
        config().statement_timeout(Some(Duration::from_secs(1))),
    )
    .await;
    blocking(|| {
        c.kill(0);
        c.promote(1);
    });
    wait_until("writes follow the promotion", &pool, |s| {
        s.node("replica-1").unwrap().writer
    })
    .await;
    blocking(|| c.restart(0)); // unfenced: a primary on the old timeline
    wait_until("the old primary answers again", &pool, |s| {
        s.node("primary").unwrap().healthy
    })
    .await;

    let mut acknowledged = write_loop(&pool, 0, Duration::from_millis(500)).await;
    blocking(|| c.stall(1));
    let stalled = tokio::spawn({
        let pool = pool.clone();
        async move { write_loop(&pool, 10_000, Duration::from_secs(2)).await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    blocking(|| c.unstall(1));
    acknowledged.extend(stalled.await.unwrap());
    acknowledged.extend(write_loop(&pool, 20_000, Duration::from_millis(500)).await);

    assert!(!acknowledged.is_empty());
    let on_old = blocking(|| count_on(&c, 0, "fo", &acknowledged));
    let on_new = blocking(|| count_on(&c, 1, "fo", &acknowledged));
    assert_eq!(on_old, 0, "acknowledged writes on the old primary");
    assert_eq!(
        on_new,
        acknowledged.len(),
        "every acknowledged write is on the promoted node"
    );
    let status = pool.status();
    assert!(status.node("replica-1").unwrap().writer, "{status}");
    pool.close().await;
}

/// Inserts ids from `first + 1` on for `d`, each bounded to 3 s; the acknowledged ones.
async fn write_loop(pool: &PgReplicaPool, first: i64, d: Duration) -> Vec<i64> {
    let until = Instant::now() + d;
    let mut acked = Vec::new();
    let mut id = first;
    while Instant::now() < until {
        id += 1;
        let w = sqlx::query("INSERT INTO fo VALUES ($1)")
            .bind(id)
            .execute(pool);
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(3), w).await {
            acked.push(id);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    acked
}

/// 4. Nodes of another cluster serve nothing, and tokens always carry the primary's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_another_cluster_are_not_trusted() {
    let _serial = serial().await;
    let c = PgCluster::start(1);
    let other = PgCluster::start(2);
    // A standby of another cluster, and a primary of another cluster on a newer timeline.
    blocking(|| other.promote(2));
    let ours = blocking(|| c.system_id(0));
    assert_ne!(ours, blocking(|| other.system_id(0)));
    c.psql(0, "CREATE TABLE idn (id bigint PRIMARY KEY)");
    other.psql(2, "CREATE TABLE idn (id bigint PRIMARY KEY)");
    c.wait_replayed();

    let replicas = vec![c.url(1), other.url(1), other.url(2)];
    for _ in 0..10 {
        let pool = connect(&c.primary_url(), &replicas, config()).await;
        let session = pool.session();
        sqlx::query("INSERT INTO idn VALUES (1) ON CONFLICT DO NOTHING")
            .execute(&session)
            .await
            .unwrap();
        let token = session.token().expect("a token after a write");
        assert_eq!(
            token.cluster(),
            ours,
            "the token names the primary's cluster"
        );
        pool.close().await;
    }

    let pool = connect(&c.primary_url(), &replicas, config()).await;
    tokio::time::sleep(INTERVAL * 3).await;
    for _ in 0..30 {
        let (port, _) = who(&pool).await;
        assert_eq!(
            port,
            c.replica(1).port,
            "a read ran on another cluster's node"
        );
    }
    let status = pool.status();
    for name in ["replica-2", "replica-3"] {
        let n = status.node(name).unwrap();
        assert!(
            n.excluded
                .as_deref()
                .is_some_and(|w| w.contains("another cluster")),
            "{name}:\n{status}"
        );
        assert_eq!(n.state, partypool::NodeState::Excluded, "{status}");
    }
    assert_eq!(
        status.node("replica-1").unwrap().state,
        partypool::NodeState::Up
    );
    assert_eq!(status.writer().map(|w| w.name.as_str()), Some("primary"));
    // Added by hand, a node of another cluster is refused, not probed forever.
    let refused = pool.add_replica(&other.url(1)).await.unwrap_err();
    assert!(refused.to_string().contains("another cluster"), "{refused}");
    assert!(!refused.to_string().contains(support::SECRET), "{refused}");
    assert_eq!(pool.status().nodes.len(), status.nodes.len());
    // The primary dies: the other cluster's primary (timeline 2) must not take the writes.
    blocking(|| c.kill(0));
    tokio::time::sleep(INTERVAL * 5).await;
    let status = pool.status();
    assert!(!status.node("replica-3").unwrap().writer, "{status}");
    let w = tokio::time::timeout(
        Duration::from_secs(5),
        sqlx::query("INSERT INTO idn VALUES (42)").execute(&pool),
    )
    .await;
    assert!(!matches!(w, Ok(Ok(_))), "a write succeeded somewhere");
    assert_eq!(
        blocking(|| other.psql(2, "SELECT count(*) FROM idn WHERE id = 42")),
        "0"
    );
    pool.close().await;
}

/// The end of the newest commit record since `from`, read with pg_walinspect on the primary
/// (created beforehand: its own commit would count).
fn last_commit_end(c: &PgCluster, from: &str) -> u64 {
    let end = c.psql(
        0,
        &format!(
            "SELECT (max(end_lsn) - '0/0'::pg_lsn)::int8 FROM pg_get_wal_records_info('{from}', pg_current_wal_flush_lsn()) \
             WHERE resource_manager = 'Transaction' AND record_type = 'COMMIT'"
        ),
    );
    end.parse().unwrap()
}

/// 5. A session's token never describes a state older than its writes: not after a dropped
/// write stream, not after a failed commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_never_older_than_the_writes() {
    let _serial = serial().await;
    let c = PgCluster::start(2);
    c.psql(0, "CREATE TABLE big (id bigint)");
    c.psql(0, "CREATE EXTENSION pg_walinspect");
    c.wait_replayed();
    let pool = connect(&c.primary_url(), &c.replica_urls(), config()).await;
    blocking(|| {
        c.pause_replay(1);
        c.pause_replay(2);
    });
    let before = c.psql(0, "SELECT pg_current_wal_insert_lsn()");

    // A write stream read to its first row and dropped.
    let session = pool.session();
    {
        let mut rows =
            sqlx::query("INSERT INTO big SELECT generate_series(1, 100000) RETURNING id")
                .fetch(&session);
        let first = rows.try_next().await.unwrap();
        assert!(first.is_some());
    }
    let token = session
        .token()
        .expect("a token right after the dropped write");
    assert_eq!(token.kind(), TokenKind::Pending, "{token}");
    // Recorded in the background, on the write's own connection, after the commit.
    let recorded = tokio::time::timeout(Duration::from_secs(10), session.settled_token())
        .await
        .expect("the position is recorded in bounded time")
        .unwrap();
    assert_eq!(recorded.kind(), TokenKind::Position, "{recorded}");
    // The pending token's holder reads on the primary (the replicas are paused and have
    // none of the rows), so it sees the write once it has committed.
    let holder = pool
        .session_with(token.to_string().parse().unwrap())
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM big")
        .fetch_one(&holder)
        .await
        .unwrap();
    assert_eq!(n, 100_000);
    assert_eq!(
        holder.token().unwrap().kind(),
        TokenKind::Pending,
        "not settled before its window"
    );
    let commit_end = blocking(|| last_commit_end(&c, &before));
    assert!(
        recorded.position().unwrap() >= commit_end,
        "recorded {:x}, but the write's commit record ends at {commit_end:x}",
        recorded.position().unwrap()
    );
    assert_ne!(recorded.position(), Some(u64::MAX));

    // A transaction whose commit fails (its backend is terminated first).
    let session = pool.session();
    let mut tx = session.begin().await.unwrap();
    sqlx::query("INSERT INTO big VALUES (-1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    blocking(|| c.psql(0, &format!("SELECT pg_terminate_backend({pid})")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(tx.commit().await.is_err());
    let token = session
        .token()
        .expect("a failed commit still leaves a token");
    assert_eq!(token.kind(), TokenKind::Pending, "{token}");
    let holder = pool.session_with(token).unwrap();
    let (_, standby) = who(&holder).await;
    assert!(
        !standby,
        "the holder of a pending token reads on the primary"
    );

    blocking(|| {
        c.resume_replay(1);
        c.resume_replay(2);
    });
    pool.close().await;
}

/// 6. A token is untrusted input: a huge position costs one check, not a primary read per
/// statement; the wrong kind is an error; positions on another timeline do not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_cannot_be_abused() {
    let _serial = serial().await;
    let c = PgCluster::start(2);
    c.psql(0, "CREATE TABLE tl (id bigint PRIMARY KEY, pad text)");
    c.wait_replayed();
    let pool = connect(&c.primary_url(), &c.replica_urls(), config()).await;
    let session = pool.session();
    sqlx::query("INSERT INTO tl VALUES (0, '')")
        .execute(&session)
        .await
        .unwrap();
    let real = session.token().unwrap();

    // A forged position far ahead of the primary.
    let forged: CausalToken = real
        .to_string()
        .rsplit_once('-')
        .map(|(head, _)| format!("{head}-ffffffffffff"))
        .unwrap()
        .parse()
        .unwrap();
    let holder = pool.session_with(forged).unwrap();
    let started = Instant::now();
    let mut on_replicas = 0;
    for _ in 0..20 {
        let (_, standby) = who(&holder).await;
        on_replicas += standby as usize;
    }
    let took = started.elapsed();
    assert!(
        on_replicas >= 18,
        "only {on_replicas} of 20 reads on replicas"
    );
    assert!(took < Duration::from_millis(800), "20 reads took {took:?}");
    let clamped = holder.token().unwrap().position().unwrap();
    assert!(
        clamped < 0xffff_ffff_ffff,
        "clamped to the primary: {clamped:x}"
    );

    // A token of the wrong kind.
    let time_token: CausalToken = format!("pp2-t-{:016x}-19000000000", real.cluster())
        .parse()
        .unwrap();
    assert!(matches!(
        pool.session_with(time_token),
        Err(partypool::Error::WrongTokenKind { .. })
    ));

    // Another timeline: replica-2 replayed further on the old timeline than the promoted
    // replica-1 ever received.
    blocking(|| c.stop(1));
    c.psql(
        0,
        "INSERT INTO tl SELECT g, repeat('x', 500) FROM generate_series(1, 20000) g",
    );
    blocking(|| {
        c.wait_replayed_on(2);
        c.kill(0);
        c.restart(1);
        c.promote(1);
    });
    wait_until("writes follow the promotion", &pool, |s| {
        s.node("replica-1").unwrap().writer
    })
    .await;
    let session = pool.session();
    sqlx::query("INSERT INTO tl VALUES (-7, 'new timeline')")
        .execute(&session)
        .await
        .unwrap();
    let token = session.token().unwrap();
    let old_tl_position: u64 = blocking(|| {
        c.psql(2, "SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8")
            .parse()
            .unwrap()
    });
    assert!(
        old_tl_position > token.position().unwrap(),
        "the test needs replica-2 further on the old timeline ({old_tl_position:x}) than the write ({:x})",
        token.position().unwrap()
    );
    for _ in 0..10 {
        let holder = pool.session_with(token).unwrap();
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tl WHERE id = -7")
            .fetch_one(&holder)
            .await
            .unwrap();
        assert_eq!(n, 1, "a session read missed its write on the new timeline");
    }
    pool.close().await;
}

/// 7. A write whose outcome is unknown says so: interrupted by `close()`, cut by
/// `statement_timeout`, or by a broken connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_outcomes_are_reported_honestly() {
    let _serial = serial().await;
    let c = PgCluster::start(1);
    c.psql(0, "CREATE TABLE oc (id bigint)");
    let proxy = FaultProxy::start(c.primary().port);
    let pool = connect(
        &c.url_via(proxy.port),
        &c.replica_urls(),
        config()
            .statement_timeout(Some(Duration::from_millis(300)))
            .max_read_retries(0),
    )
    .await;
    // statement_timeout
    let e = sqlx::query("INSERT INTO oc SELECT 1 FROM pg_sleep(1)")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(partypool::may_have_committed(&e), "{e}");
    assert!(!matches!(
        e,
        sqlx::Error::PoolClosed | sqlx::Error::PoolTimedOut
    ));
    // A read on a replica that times out did not commit anything.
    let e = sqlx::query("SELECT pg_sleep(1)")
        .execute(pool.on_replica())
        .await
        .unwrap_err();
    assert!(!partypool::may_have_committed(&e), "{e}");
    // A broken connection mid-write.
    let w = tokio::spawn({
        let pool = pool.clone();
        async move {
            sqlx::query("INSERT INTO oc SELECT 2 FROM pg_sleep(0.2)")
                .execute(&pool)
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.set(Fault::Reset);
    let e = w.await.unwrap().unwrap_err();
    assert!(partypool::may_have_committed(&e), "{e}");
    proxy.set(Fault::Pass);
    pool.close().await;

    // close() interrupting a write.
    let pool = connect(
        &c.primary_url(),
        &c.replica_urls(),
        config().health_check_timeout(Duration::from_millis(200)),
    )
    .await;
    let w = tokio::spawn({
        let pool = pool.clone();
        async move {
            sqlx::query("INSERT INTO oc SELECT 3 FROM pg_sleep(2)")
                .execute(&pool)
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    pool.close().await;
    let e = w.await.unwrap().unwrap_err();
    assert!(
        !matches!(e, sqlx::Error::PoolClosed),
        "a maybe-committed write reported as never acquired"
    );
    assert!(partypool::may_have_committed(&e), "{e}");
    // A statement that never started after close() is PoolClosed, as in sqlx.
    let e = sqlx::query("INSERT INTO oc VALUES (4)")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(matches!(e, sqlx::Error::PoolClosed), "{e}");
    drop(proxy);
}

/// Replay positions are refreshed only while sessions wait, at most once per
/// `position_interval` per replica however many sessions wait: an idle pool costs a replica
/// its probes only, and 40 waiting sessions cost it no more than one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn position_refreshes_are_bounded_per_pool() {
    let _serial = serial().await;
    let c = PgCluster::start(1);
    c.psql(0, "CREATE TABLE rf (id bigint)");
    c.wait_replayed();
    let interval = Duration::from_millis(50);
    let pool = connect(
        &c.primary_url(),
        &c.replica_urls(),
        config()
            .health_check_interval(Duration::from_millis(500))
            .position_interval(interval)
            .causal_wait(Duration::from_millis(200))
            .max_replica_lag(None),
    )
    .await;
    blocking(|| c.log_statements(1));

    // Idle: probes only (2 s / 500 ms = 4, one more at an edge).
    let before = c.statements_logged(1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = c.statements_logged(1) - before;
    println!("idle: {idle} queries on the replica in 2 s");
    assert!(
        idle <= 5,
        "an idle pool ran {idle} queries on the replica in 2 s"
    );

    // 40 sessions whose writes the paused replica never replays, reading for 2 s.
    blocking(|| c.pause_replay(1));
    let before = c.statements_logged(1);
    let started = Instant::now();
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let session = pool.session();
                sqlx::query("INSERT INTO rf VALUES (1)")
                    .execute(&session)
                    .await
                    .unwrap();
                let mut reads = 0;
                while started.elapsed() < Duration::from_secs(2) {
                    let (_, standby) = who(&session).await;
                    assert!(!standby, "a session read went to the paused replica");
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let mut reads = 0;
    for t in tasks {
        reads += t.await.unwrap();
    }
    let took = started.elapsed();
    let busy = c.statements_logged(1) - before;
    // One refresh per interval and the probes, with a quarter's slack for the edges (without
    // the bound, waiting sessions refreshed every ~2 ms: several hundred).
    let refreshes = (took.as_millis() / interval.as_millis()) as usize;
    let probes = (took.as_millis() / 500) as usize;
    let bound = refreshes * 5 / 4 + probes + 3;
    println!("{reads} session reads in {took:?}: {busy} queries on the replica (bound {bound})");
    assert!(
        busy <= bound,
        "{busy} queries on the replica for {reads} waiting reads, bound {bound}"
    );
    blocking(|| c.resume_replay(1));
    pool.close().await;
}
