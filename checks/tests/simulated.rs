//! Simulated replicas on one PostgreSQL server: reads routed to a "replica" see the database
//! as it was `simulated_lag` ago, sessions and the process scope see their writes at once,
//! misrouted writes are refused and run again on the primary, and closing the pool releases
//! every held snapshot.

mod support;

use std::time::{Duration, Instant};

use partypool::{Config, PgReplicaPool, ReadChoice, Scope, Target};
use support::PgCluster;

const LAG: Duration = Duration::from_millis(200);

async fn pool(c: &PgCluster, scope: Scope) -> PgReplicaPool {
    PgReplicaPool::builder()
        .primary(c.primary_url())
        .simulate_replicas(2)
        .config(
            Config::default()
                .simulated_lag(LAG)
                .consistency_scope(scope)
                .health_check_interval(Duration::from_millis(200)),
        )
        .connect()
        .await
        .unwrap()
}

/// Where a read ran, as the server tells it: in a read-only repeatable-read transaction (a
/// simulated replica's snapshot) or not (the primary).
async fn in_snapshot(e: impl sqlx::PgExecutor<'_>) -> bool {
    let (read_only, isolation): (String, String) = sqlx::query_as(
        "SELECT current_setting('transaction_read_only'), current_setting('transaction_isolation')",
    )
    .fetch_one(e)
    .await
    .unwrap();
    let snapshot = isolation == "repeatable read";
    assert!(!snapshot || read_only == "on");
    snapshot
}

async fn visible(e: impl sqlx::PgExecutor<'_>, id: i32) -> bool {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM t WHERE id = $1")
        .bind(id)
        .fetch_one(e)
        .await
        .unwrap()
        == 1
}

async fn insert(pool: &PgReplicaPool, id: i32) -> Instant {
    sqlx::query("INSERT INTO t (id) VALUES ($1)")
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
    Instant::now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_reads_lag_by_the_simulated_lag_and_consistent_reads_do_not() {
    let c = PgCluster::start(0);
    c.psql(0, "CREATE TABLE t (id int PRIMARY KEY)");

    // Consistency off: a plain read after a write misses it for about the lag.
    let off = pool(&c, Scope::Off).await;
    assert!(in_snapshot(&off).await, "{}", off.status());
    assert!(!in_snapshot(off.on_primary()).await);
    let status = off.status();
    assert_eq!(status.nodes.len(), 3, "{status}");
    let mut hidden = Vec::new();
    for id in 0..20 {
        let written = insert(&off, id).await;
        let mut stale_reads = 0;
        loop {
            let on_replica = off.on_replica();
            if visible(on_replica, id).await {
                break;
            }
            stale_reads += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(stale_reads > 0, "write {id} was visible at once");
        hidden.push(written.elapsed());
    }
    hidden.sort();
    let (min, median, max) = (
        hidden[0],
        hidden[hidden.len() / 2],
        hidden[hidden.len() - 1],
    );
    eprintln!("invisible through plain reads for: min {min:?}, median {median:?}, max {max:?}");
    assert!(min >= LAG - Duration::from_millis(30), "{hidden:?}");
    assert!(max <= LAG * 3, "{hidden:?}");
    // After the lag, every read sees it, on a simulated replica.
    tokio::time::sleep(LAG + Duration::from_millis(50)).await;
    for id in 0..20 {
        assert!(visible(&off, id).await);
    }
    assert!(in_snapshot(&off).await);
    off.close().await;

    // The default (the process scope): a read after any write of the process sees it.
    let default = pool(&c, Scope::Process).await;
    let journal = default.journal();
    for id in 100..150 {
        insert(&default, id).await;
        assert!(visible(&default, id).await, "write {id} not seen");
    }
    // The journal says why: each read after a write ran on the primary, which the replicas
    // had not caught up with.
    let entries = journal.entries();
    assert_eq!(entries.len(), 100, "{entries:?}");
    for pair in entries.chunks(2) {
        let (write, read) = (&pair[0], &pair[1]);
        assert_eq!((write.choice, write.on_replica), (ReadChoice::Write, false));
        assert_eq!(write.target, Target::Primary);
        assert_eq!(read.target, Target::Replica, "{read:?}");
        assert_eq!(
            (read.choice, read.on_replica, read.node.as_str()),
            (ReadChoice::NotReplayed, false, "primary"),
            "{read:?}"
        );
    }
    journal.clear();
    // With nothing written for longer than the lag, reads go to the simulated replicas.
    tokio::time::sleep(LAG * 2).await;
    for _ in 0..10 {
        assert!(in_snapshot(&default).await, "{}", default.status());
    }
    assert_eq!(journal.on_primary(), 0, "{:?}", journal.entries());
    let entries = journal.entries();
    assert!(
        entries
            .iter()
            .all(|e| e.node.starts_with("simulated-") && e.choice == ReadChoice::CaughtUpReplica),
        "{entries:?}"
    );
    drop(journal);
    default.close().await;

    // Sessions: their own writes at once; another session's not.
    let sessions = pool(&c, Scope::Session).await;
    let session = sessions.session();
    for id in 200..220 {
        sqlx::query("INSERT INTO t (id) VALUES ($1)")
            .bind(id)
            .execute(&session)
            .await
            .unwrap();
        assert!(visible(&session, id).await, "session write {id} not seen");
    }
    let other = sessions.session();
    assert!(!visible(&other, 219).await, "a stranger saw it at once");
    // Tokens: another "process" (a pool of its own) continuing the session sees its write
    // at once; a session of that pool without the token does not.
    let token = session
        .settled_token()
        .await
        .expect("a token after a write");
    let elsewhere = pool(&c, Scope::Session).await;
    sqlx::query("INSERT INTO t (id) VALUES (300)")
        .execute(&session)
        .await
        .unwrap();
    let token = session.settled_token().await.unwrap_or(token);
    let stranger = elsewhere.session();
    assert!(!visible(&stranger, 300).await, "a stranger saw it at once");
    let continued = elsewhere.session_with(token).unwrap();
    assert!(visible(&continued, 300).await, "the token's write not seen");
    // Once the lag has passed, the token's reads are back on the simulated replicas.
    tokio::time::sleep(LAG * 2).await;
    let journal = elsewhere.journal();
    let continued = elsewhere.session_with(token).unwrap();
    assert!(visible(&continued, 300).await);
    assert!(journal.entries()[0].on_replica, "{:?}", journal.entries());
    drop(journal);
    elsewhere.close().await;
    sessions.close().await;

    // Closing released every snapshot and transaction. (A backend whose client has gone
    // takes a moment to leave pg_stat_activity: polled briefly, nothing is left.)
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let open = c.psql(
            0,
            "SELECT coalesce(string_agg(state || ': ' || query, '; '), '') FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        );
        if open.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "connections left open after close: {open}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misrouted_write_is_refused_by_a_simulated_replica_and_runs_on_the_primary() {
    let c = PgCluster::start(0);
    c.psql(
        0,
        "CREATE TABLE t (id int PRIMARY KEY); \
         CREATE FUNCTION sneaky_insert(i int) RETURNS int LANGUAGE sql \
           AS 'INSERT INTO t (id) VALUES (i) RETURNING id'",
    );
    let pool = pool(&c, Scope::Off).await;
    let journal = pool.journal();
    for id in 0..10 {
        let got: i32 = sqlx::query_scalar("SELECT sneaky_insert($1)")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(got, id);
    }
    let rows = c.psql(0, "SELECT count(*) FROM t");
    assert_eq!(rows.trim(), "10");
    let misroutes: u64 = pool.status().nodes.iter().map(|n| n.misroutes).sum();
    assert_eq!(misroutes, 10, "{}", pool.status());
    let entries = journal.entries();
    assert_eq!(entries.len(), 10);
    for e in &entries {
        assert!(e.misrouted && e.ok && !e.on_replica, "{e:?}");
        assert_eq!((e.target, e.node.as_str()), (Target::Replica, "primary"));
    }
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_transactions_and_lazy_pools_use_the_snapshots() {
    let c = PgCluster::start(0);
    c.psql(0, "CREATE TABLE t (id int PRIMARY KEY)");
    let pool = PgReplicaPool::builder()
        .primary(c.primary_url())
        .simulate_replicas(1)
        .config(Config::default().consistency_scope(Scope::Off))
        .connect_lazy()
        .unwrap();
    // Lazy: the replica joins once probed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !in_snapshot(&pool).await {
        assert!(Instant::now() < deadline, "{}", pool.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    insert(&pool, 1).await;
    let mut tx = pool.begin_read_only().await.unwrap();
    assert!(in_snapshot(&mut *tx).await);
    assert!(
        !visible(&mut *tx, 1).await,
        "a read-only transaction saw the present"
    );
    tx.commit().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut tx = pool.begin_read_only().await.unwrap();
    assert!(visible(&mut *tx, 1).await);
    tx.rollback().await.unwrap();
    // A detected write goes to the primary even through `on_replica`.
    sqlx::query("INSERT INTO t (id) VALUES (2)")
        .execute(pool.on_replica())
        .await
        .unwrap();
    let misroutes: u64 = pool.status().nodes.iter().map(|n| n.misroutes).sum();
    assert_eq!(misroutes, 0, "{}", pool.status());
    assert_eq!(c.psql(0, "SELECT count(*) FROM t").trim(), "2");
    pool.close().await;
}

/// MariaDB: snapshots cannot be exported, so reads run on the connections holding them
/// (`START TRANSACTION WITH CONSISTENT SNAPSHOT`); positions are the snapshots' exact GTIDs.
#[cfg(feature = "mysql")]
mod mariadb {
    use super::*;
    use partypool::MySqlReplicaPool;
    use support::mariadb::MariaCluster;

    async fn pool(c: &MariaCluster, scope: Scope) -> MySqlReplicaPool {
        MySqlReplicaPool::builder()
            .primary(c.url(0))
            .simulate_replicas(2)
            .config(
                Config::default()
                    .simulated_lag(LAG)
                    .consistency_scope(scope)
                    .health_check_interval(Duration::from_millis(200)),
            )
            .connect()
            .await
            .unwrap()
    }

    /// Whether the read ran in a read-only transaction (a simulated replica's snapshot).
    async fn in_snapshot(e: impl sqlx::MySqlExecutor<'_>) -> bool {
        let read_only: u64 = sqlx::query_scalar("SELECT @@in_transaction")
            .fetch_one(e)
            .await
            .unwrap();
        read_only == 1
    }

    async fn visible(e: impl sqlx::MySqlExecutor<'_>, id: i32) -> bool {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM t WHERE id = ?")
            .bind(id)
            .fetch_one(e)
            .await
            .unwrap()
            == 1
    }

    async fn insert(pool: &MySqlReplicaPool, id: i32) -> Instant {
        sqlx::query("INSERT INTO t (id) VALUES (?)")
            .bind(id)
            .execute(pool)
            .await
            .unwrap();
        Instant::now()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn plain_reads_lag_and_consistent_reads_do_not_on_mariadb() {
        let c = MariaCluster::start(0);
        c.sql(0, "CREATE TABLE app.t (id int PRIMARY KEY)");

        let off = pool(&c, Scope::Off).await;
        assert!(in_snapshot(&off).await, "{}", off.status());
        assert!(!in_snapshot(off.on_primary()).await);
        let mut hidden = Vec::new();
        for id in 0..10 {
            let written = insert(&off, id).await;
            let mut stale_reads = 0;
            while !visible(off.on_replica(), id).await {
                stale_reads += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(stale_reads > 0, "write {id} was visible at once");
            hidden.push(written.elapsed());
        }
        hidden.sort();
        eprintln!("MariaDB: invisible through plain reads for {hidden:?}");
        assert!(hidden[0] >= LAG - Duration::from_millis(30), "{hidden:?}");
        assert!(hidden[hidden.len() - 1] <= LAG * 3, "{hidden:?}");
        // A write the router took for a read is refused there (1792) and runs on the
        // primary.
        c.sql(
            0,
            "DELIMITER //\nCREATE FUNCTION app.sneaky(i int) RETURNS int MODIFIES SQL DATA \
             SQL SECURITY INVOKER BEGIN INSERT INTO app.t (id) VALUES (i); RETURN i; END//\n\
             DELIMITER ;",
        );
        let got: i32 = sqlx::query_scalar("SELECT sneaky(1000)")
            .fetch_one(&off)
            .await
            .unwrap();
        assert_eq!(got, 1000);
        let misroutes: u64 = off.status().nodes.iter().map(|n| n.misroutes).sum();
        assert_eq!(misroutes, 1, "{}", off.status());
        off.close().await;

        // The default: every read after a write sees it; sessions too.
        let default = pool(&c, Scope::Process).await;
        for id in 100..130 {
            insert(&default, id).await;
            assert!(visible(&default, id).await, "write {id} not seen");
        }
        tokio::time::sleep(LAG * 2).await;
        let journal = default.journal();
        for _ in 0..10 {
            assert!(visible(&default, 129).await);
        }
        assert_eq!(journal.on_primary(), 0, "{:?}", journal.entries());
        drop(journal);
        // A read cut off by statement_timeout breaks its snapshot connection: reads go on.
        let impatient = MySqlReplicaPool::builder()
            .primary(c.url(0))
            .simulate_replicas(1)
            .config(
                Config::default()
                    .simulated_lag(LAG)
                    .statement_timeout(Duration::from_millis(300))
                    .max_read_retries(0),
            )
            .connect()
            .await
            .unwrap();
        let journal = impatient.journal();
        let slow = sqlx::query_scalar::<_, i64>("SELECT SLEEP(2)")
            .fetch_one(&impatient)
            .await;
        assert!(slow.is_err(), "{slow:?}");
        for _ in 0..20 {
            assert!(in_snapshot(&impatient).await);
            assert!(visible(&impatient, 129).await);
        }
        assert!(
            journal.entries().iter().all(|e| e.on_replica),
            "{:?}",
            journal.entries()
        );
        impatient.close().await;
        let session = default.session();
        for id in 200..210 {
            sqlx::query("INSERT INTO t (id) VALUES (?)")
                .bind(id)
                .execute(&session)
                .await
                .unwrap();
            assert!(visible(&session, id).await, "session write {id} not seen");
        }
        default.close().await;
    }
}

/// SQLite (WAL): reads run on reader connections holding an open read transaction; the
/// position is the file's count of writes acknowledged in this process.
mod sqlite {
    use super::*;
    use partypool::SqliteReplicaPool;
    use sqlx::ConnectOptions;

    async fn pool(file: &str, scope: Scope) -> SqliteReplicaPool {
        SqliteReplicaPool::builder()
            .primary(format!("sqlite://{file}"))
            .simulate_replicas(2)
            .config(
                Config::default()
                    .simulated_lag(LAG)
                    .consistency_scope(scope)
                    .health_check_interval(Duration::from_millis(200)),
            )
            .connect()
            .await
            .unwrap()
    }

    async fn visible(e: impl sqlx::SqliteExecutor<'_>, id: i32) -> bool {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM t WHERE id = ?")
            .bind(id)
            .fetch_one(e)
            .await
            .unwrap()
            == 1
    }

    async fn insert(pool: &SqliteReplicaPool, id: i32) -> Instant {
        sqlx::query("INSERT INTO t (id) VALUES (?)")
            .bind(id)
            .execute(pool)
            .await
            .unwrap();
        Instant::now()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn plain_reads_lag_and_consistent_reads_do_not_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sim.db").display().to_string();
        let mut setup = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&file)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .connect()
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            .execute(&mut setup)
            .await
            .unwrap();
        drop(setup);

        let off = pool(&file, Scope::Off).await;
        let mut hidden = Vec::new();
        for id in 0..10 {
            let written = insert(&off, id).await;
            let mut stale_reads = 0;
            while !visible(off.on_replica(), id).await {
                stale_reads += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(stale_reads > 0, "write {id} was visible at once");
            hidden.push(written.elapsed());
        }
        hidden.sort();
        eprintln!("SQLite: invisible through plain reads for {hidden:?}");
        assert!(hidden[0] >= LAG - Duration::from_millis(30), "{hidden:?}");
        assert!(hidden[hidden.len() - 1] <= LAG * 3, "{hidden:?}");
        // The journal proves the reads ran on simulated replicas.
        let journal = off.journal();
        assert!(visible(&off, 0).await);
        assert!(journal.entries()[0].node.starts_with("simulated-"));
        drop(journal);
        off.close().await;

        let default = pool(&file, Scope::Process).await;
        for id in 100..130 {
            insert(&default, id).await;
            assert!(visible(&default, id).await, "write {id} not seen");
        }
        tokio::time::sleep(LAG * 2).await;
        let journal = default.journal();
        for _ in 0..10 {
            assert!(visible(&default, 129).await);
        }
        assert_eq!(journal.on_primary(), 0, "{:?}", journal.entries());
        drop(journal);
        let session = default.session();
        for id in 200..210 {
            sqlx::query("INSERT INTO t (id) VALUES (?)")
                .bind(id)
                .execute(&session)
                .await
                .unwrap();
            assert!(visible(&session, id).await, "session write {id} not seen");
        }
        // A read dropped after its first row leaves its snapshot connection usable.
        for _ in 0..5 {
            use futures_util::StreamExt;
            let mut rows = sqlx::query_scalar::<_, i64>(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 100000) \
                 SELECT x FROM c",
            )
            .fetch(default.on_replica());
            assert_eq!(rows.next().await.unwrap().unwrap(), 1);
        }
        for _ in 0..20 {
            assert!(visible(&default, 129).await);
        }
        default.close().await;
    }
}

/// SQLite in rollback-journal mode: a reader's open transaction would block every writer, so
/// `connect` refuses with an error that says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_replicas_on_sqlite_without_wal_fail_at_connect_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("journal.db");
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let setup = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        .execute(&setup)
        .await
        .unwrap();
    setup.close().await;
    let started = Instant::now();
    let error = partypool::SqliteReplicaPool::builder()
        .primary(&url)
        .simulate_replicas(1)
        .config(Config::default().acquire_timeout(Duration::from_secs(2)))
        .connect()
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("WAL"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(4));
}
