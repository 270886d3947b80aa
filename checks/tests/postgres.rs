//! ReplicaPool against a real PostgreSQL primary with two streaming replicas (one cluster
//! shared by the tests of this file). Where a statement ran is proven by asking the server:
//! `pg_is_in_recovery()` and `inet_server_port()`.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use partypool::{Config, Error, PgReplicaPool, Target};
use sqlx::{Executor, Row, SqlSafeStr, Statement};
use support::{PgCluster, SECRET, shared};

fn fast_config() -> Config {
    Config::default()
        .health_check_interval(Duration::from_millis(200))
        .health_check_timeout(Duration::from_millis(500))
        .acquire_timeout(Duration::from_secs(5))
}

async fn pool(c: &PgCluster) -> PgReplicaPool {
    let replicas = c.replica_urls();
    let replicas: Vec<&str> = replicas.iter().map(String::as_str).collect();
    PgReplicaPool::connect(&c.primary_url(), &replicas, fast_config())
        .await
        .expect("connect to the test cluster")
}

/// (port, in_recovery) of the server that ran the statement.
async fn who(pool: &PgReplicaPool) -> (u16, bool) {
    let row = sqlx::query("SELECT inet_server_port(), pg_is_in_recovery()")
        .fetch_one(pool)
        .await
        .expect("who answered");
    (row.get::<i32, _>(0) as u16, row.get(1))
}

#[tokio::test]
async fn reads_go_to_replicas_and_writes_to_the_primary() {
    let c = shared();
    let pool = pool(c).await;
    c.psql(
        0,
        "CREATE TABLE IF NOT EXISTS rw_items (id bigint PRIMARY KEY, name text)",
    );
    c.wait_replayed();

    let replica_ports = [c.replica(1).port, c.replica(2).port];
    for _ in 0..10 {
        let (port, in_recovery) = who(&pool).await;
        assert!(in_recovery, "a read ran on a server that is not a standby");
        assert!(replica_ports.contains(&port), "read ran on port {port}");
    }

    // The write reports where it ran, from inside the statement itself.
    let id: i64 = rand_id();
    let port: i32 = sqlx::query_scalar(
        "INSERT INTO rw_items (id, name) VALUES ($1, 'x') RETURNING inet_server_port()",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(port as u16, c.primary().port);
    let r = sqlx::query("UPDATE rw_items SET name = 'y' WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(r.rows_affected(), 1);

    // The write becomes visible on the replicas, read through the pool.
    let mut seen = 0;
    for _ in 0..500 {
        let row = sqlx::query("SELECT name, pg_is_in_recovery() FROM rw_items WHERE id = $1")
            .bind(id)
            .fetch_optional(&pool)
            .await
            .unwrap();
        if let Some(row) = row {
            assert!(row.get::<bool, _>(1));
            if row.get::<String, _>(0) == "y" {
                seen += 1;
                if seen == 4 {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen, 4, "the write never became visible on the replicas");
    pool.close().await;
}

#[tokio::test]
async fn streams_and_random_balancing() {
    use futures_util::TryStreamExt;
    let c = shared();
    let replicas = c.replica_urls();
    // Placement, not consistency: other tests of this binary write to the shared cluster,
    // and under the process scope a read right after one of their writes may (correctly)
    // run on the primary while the replicas replay it.
    let config = fast_config()
        .balance(partypool::Balance::Random)
        .consistency_scope(partypool::Scope::Session);
    let pool = PgReplicaPool::connect(&c.primary_url(), &[&replicas[0], &replicas[1]], config)
        .await
        .unwrap();
    // `fetch` streams rows from one replica.
    let rows: Vec<(i32, bool)> = sqlx::query_as::<_, (i32, bool)>(
        "SELECT g, pg_is_in_recovery() FROM generate_series(1, 1000) g",
    )
    .fetch(&pool)
    .try_collect()
    .await
    .unwrap();
    assert_eq!(rows.len(), 1000);
    assert!(rows.iter().all(|r| r.1));
    // Random balancing reaches both replicas and nothing else.
    let mut ports = std::collections::HashSet::new();
    for _ in 0..60 {
        let (port, standby) = who(&pool).await;
        assert!(standby);
        ports.insert(port);
    }
    assert_eq!(
        ports,
        [c.replica(1).port, c.replica(2).port].into_iter().collect()
    );
    pool.close().await;
}

#[tokio::test]
async fn routing_rules_hold_on_the_server() {
    let c = shared();
    let pool = pool(c).await;
    c.psql(
        0,
        "CREATE SEQUENCE IF NOT EXISTS rules_seq; CREATE TABLE IF NOT EXISTS rules_t (id int); \
         INSERT INTO rules_t VALUES (1)",
    );
    c.wait_replayed();
    // Each of these would fail on a standby; through the pool they succeed on the primary.
    for sql in [
        "SELECT nextval('rules_seq'), pg_is_in_recovery()",
        "SELECT id, pg_is_in_recovery() FROM rules_t LIMIT 1 FOR UPDATE",
        "WITH d AS (DELETE FROM rules_t WHERE id < 0 RETURNING *) SELECT count(*), pg_is_in_recovery() FROM d",
        "SELECT pg_advisory_lock(42), pg_advisory_unlock(42), pg_is_in_recovery()",
    ] {
        assert_eq!(partypool::route(sql).target, Target::Primary, "{sql}");
        let row = sqlx::query(sql)
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let last = row.len() - 1;
        assert!(!row.get::<bool, _>(last), "{sql} ran on a standby");
    }
    // Raw (unprepared) multi-statement text: all reads go to a replica, one write to the primary.
    let rows = sqlx::raw_sql("SELECT pg_is_in_recovery(); SELECT pg_is_in_recovery()")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(rows.iter().all(|r| r.get::<bool, _>(0)));
    let rows = sqlx::raw_sql("INSERT INTO rules_t VALUES (-1); SELECT pg_is_in_recovery()")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(!rows[0].get::<bool, _>(0));
    pool.close().await;
}

#[tokio::test]
async fn round_robin_spreads_reads_evenly() {
    let c = shared();
    let pool = pool(c).await;
    let mut counts: HashMap<u16, usize> = HashMap::new();
    for _ in 0..300 {
        *counts.entry(who(&pool).await.0).or_default() += 1;
    }
    assert_eq!(counts.len(), 2, "{counts:?}");
    for port in [c.replica(1).port, c.replica(2).port] {
        let n = counts[&port];
        assert!(
            (142..=158).contains(&n),
            "replica on {port} served {n} of 300: {counts:?}"
        );
    }
    pool.close().await;
}

#[tokio::test]
async fn transactions_stay_on_the_primary() {
    let c = shared();
    let pool = pool(c).await;
    c.psql(
        0,
        "CREATE TABLE IF NOT EXISTS tx_items (id bigint PRIMARY KEY)",
    );

    let (committed, rolled_back) = (rand_id(), rand_id());
    let mut tx = pool.begin().await.unwrap();
    for _ in 0..5 {
        // Reads inside the transaction run on its connection: the primary.
        let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert!(!in_recovery);
    }
    sqlx::query("INSERT INTO tx_items VALUES ($1)")
        .bind(committed)
        .execute(&mut *tx)
        .await
        .unwrap();
    // Our own uncommitted write is visible inside the transaction.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tx_items WHERE id = $1")
        .bind(committed)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(n, 1);
    tx.commit().await.unwrap();

    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap();
    sqlx::query("INSERT INTO tx_items VALUES ($1)")
        .bind(rolled_back)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    // Through sqlx's Acquire trait too.
    let mut tx = sqlx::Acquire::begin(&pool).await.unwrap();
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert!(!in_recovery);
    tx.rollback().await.unwrap();

    let on_primary = c.psql(
        0,
        &format!("SELECT count(*) FROM tx_items WHERE id IN ({committed}, {rolled_back})"),
    );
    assert_eq!(on_primary, "1");
    c.wait_replayed();
    assert_eq!(
        c.psql(
            1,
            &format!("SELECT count(*) FROM tx_items WHERE id = {committed}")
        ),
        "1"
    );
    pool.close().await;
}

#[derive(sqlx::FromRow, Debug, PartialEq)]
struct Item {
    id: i64,
    name: String,
}

#[tokio::test]
async fn query_as_with_from_row_and_the_query_macros() {
    let c = shared();
    let pool = pool(c).await;
    // The schema the committed offline macro data (.sqlx/) was prepared against: see
    // tests/schema.sql and the README.
    c.psql(0, include_str!("schema.sql"));
    let id = rand_id();
    sqlx::query!(
        "INSERT INTO macro_items (id, name) VALUES ($1, $2)",
        id,
        "widget"
    )
    .execute(&pool)
    .await
    .unwrap();
    c.wait_replayed();

    let item: Item = sqlx::query_as("SELECT id, name FROM macro_items WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        item,
        Item {
            id,
            name: "widget".into()
        }
    );

    let row = sqlx::query!(
        r#"SELECT id, name, pg_is_in_recovery() AS "standby!" FROM macro_items WHERE id = $1"#,
        id
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (row.id, row.name.as_str(), row.standby),
        (id, "widget", true)
    );

    let item = sqlx::query_as!(Item, "SELECT id, name FROM macro_items WHERE id = $1", id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(item.name, "widget");

    let n = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM macro_items WHERE id = $1"#,
        id
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(n, 1);

    // describe (what the macros call at build time) answers through the pool.
    let d = (&pool)
        .describe("SELECT id, name FROM macro_items".into_sql_str())
        .await
        .unwrap();
    assert_eq!(d.columns().len(), 2);
    pool.close().await;
}

#[tokio::test]
async fn a_prepared_statement_runs_a_hundred_times() {
    let c = shared();
    let pool = pool(c).await;
    let stmt = pool
        .prepare("SELECT $1::int8 * 2, pg_is_in_recovery()")
        .await
        .unwrap();
    for i in 0..100_i64 {
        let row = stmt.query().bind(i).fetch_one(&pool).await.unwrap();
        assert_eq!(row.get::<i64, _>(0), i * 2);
        assert!(row.get::<bool, _>(1), "a prepared read ran on the primary");
    }
    pool.close().await;
}

#[tokio::test]
async fn explicit_handles_and_the_status_table() {
    let c = shared();
    let pool = pool(c).await;
    let on_primary: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&pool.primary())
        .await
        .unwrap();
    assert!(!on_primary);
    for _ in 0..4 {
        let on_replica: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&pool.replica())
            .await
            .unwrap();
        assert!(on_replica);
    }
    who(&pool).await;
    let status = pool.status();
    assert_eq!(status.nodes.len(), 3);
    assert!(status.nodes.iter().all(|n| n.healthy));
    assert_eq!(status.node("primary").unwrap().in_recovery, Some(false));
    assert_eq!(status.node("replica-1").unwrap().in_recovery, Some(true));
    let served: u64 = status.nodes[1..].iter().map(|n| n.queries).sum();
    assert_eq!(served, 5);
    let table = status.to_string();
    assert!(table.starts_with("NODE"), "{table}");
    assert!(table.contains("replica-2"), "{table}");
    pool.close().await;
}

#[tokio::test]
async fn an_unreachable_replica_does_not_fail_connect() {
    let c = shared();
    let dead = format!(
        "postgres://postgres:{SECRET}@127.0.0.1:{}/postgres",
        support::free_port()
    );
    let live = c.url(1);
    let pool = PgReplicaPool::connect(&c.primary_url(), &[&dead, &live], fast_config())
        .await
        .expect("an unreachable replica must not fail connect");
    let status = pool.status();
    let r1 = status.node("replica-1").unwrap();
    assert!(!r1.healthy);
    assert!(r1.last_error.is_some());
    assert!(status.node("replica-2").unwrap().healthy);
    for _ in 0..20 {
        assert_eq!(who(&pool).await, (c.replica(1).port, true));
    }
    assert!(!status.to_string().contains(SECRET));
    pool.close().await;
}

#[tokio::test]
async fn bad_urls_and_an_unreachable_primary_give_clear_errors() {
    let c = shared();
    let err = PgReplicaPool::connect(
        &c.primary_url(),
        &[&format!(
            "postgres://postgres:{SECRET}@127.0.0.1:notaport/db"
        )],
        fast_config(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::InvalidUrl { ref node, .. } if node == "replica-1"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("replica-1") && msg.contains("postgres:***@"),
        "{msg}"
    );

    let err = PgReplicaPool::connect("mysql://x:y@z/w", &[], fast_config())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidUrl { ref node, .. } if node == "primary"),
        "{err}"
    );

    let down = format!(
        "postgres://postgres:{SECRET}@127.0.0.1:{}/postgres",
        support::free_port()
    );
    let err = PgReplicaPool::connect(&down, &[&c.url(1)], fast_config())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PrimaryUnreachable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("primary primary (postgres://postgres:***@127.0.0.1:"),
        "{msg}"
    );

    let err = PgReplicaPool::builder()
        .replica(c.url(1))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");

    for e in [format!("{err}"), format!("{err:?}")] {
        assert!(!e.contains(SECRET), "{e}");
    }
}

#[tokio::test]
async fn passwords_never_show() {
    let c = shared();
    let replicas = c.replica_urls();
    let dead = format!(
        "postgres://postgres:{SECRET}@127.0.0.1:{}/postgres",
        support::free_port()
    );
    let builder = PgReplicaPool::builder()
        .primary(c.primary_url())
        .replica(&replicas[0])
        .replica(dead.clone())
        .config(fast_config());
    let shown = format!("{builder:?}");
    let pool = builder.connect().await.unwrap();
    let status = pool.status();
    let mut texts = vec![
        shown,
        format!("{pool:?}"),
        format!("{status}"),
        format!("{status:?}"),
        serde_json::to_string(&status).unwrap(),
        format!("{:?}", fast_config()),
    ];
    for bad in [
        format!("postgres://postgres:{SECRET}@127.0.0.1:notaport/db"),
        format!("postgres://postgres:{SECRET}@[::1/db"),
        dead,
    ] {
        let err = PgReplicaPool::connect(&bad, &[], fast_config())
            .await
            .unwrap_err();
        texts.push(format!("{err}"));
        texts.push(format!("{err:?}"));
        texts.push(sqlx::Error::from(err).to_string());
    }
    for t in texts {
        assert!(!t.contains(SECRET), "password shown in: {t}");
    }
    pool.close().await;
}

#[tokio::test]
async fn close_stops_every_task_and_later_use_fails_clearly() {
    let c = shared();
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let pool = pool(c).await;
    who(&pool).await;
    sqlx::query("SELECT 1").execute(&pool).await.unwrap();
    assert!(
        metrics.num_alive_tasks() > before,
        "the health task should be running"
    );
    pool.close().await;
    assert!(pool.is_closed());
    // sqlx's own pool tasks wind down right after close; give them a moment.
    let mut alive = metrics.num_alive_tasks();
    for _ in 0..100 {
        if alive == before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        alive = metrics.num_alive_tasks();
    }
    assert_eq!(alive, before, "tasks left running after close()");

    let err = sqlx::query("SELECT 1").execute(&pool).await.unwrap_err();
    assert!(matches!(err, sqlx::Error::PoolClosed), "{err}");
    let err = pool.begin().await.unwrap_err();
    assert!(matches!(err, Error::Closed { .. }), "{err}");
    assert!(err.to_string().contains("closed") && !err.to_string().contains(SECRET));
    assert!(pool.status().closed);
}

#[tokio::test]
async fn dropping_the_pool_stops_the_health_task() {
    let c = shared();
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let pool = pool(c).await;
    who(&pool).await;
    drop(pool);
    let mut alive = metrics.num_alive_tasks();
    for _ in 0..200 {
        if alive == before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        alive = metrics.num_alive_tasks();
    }
    assert_eq!(alive, before, "tasks left running after drop");
}

fn rand_id() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static NEXT: AtomicI64 = AtomicI64::new(0);
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    base + NEXT.fetch_add(1, Ordering::Relaxed)
}

#[tokio::test]
async fn read_only_transactions_run_on_one_replica_connection() {
    let c = shared();
    // Placement, not consistency (see `streams_and_random_balancing`).
    let replicas = c.replica_urls();
    let pool = PgReplicaPool::connect(
        &c.primary_url(),
        &[&replicas[0], &replicas[1]],
        fast_config().consistency_scope(partypool::Scope::Session),
    )
    .await
    .unwrap();
    let mut tx = pool.begin_read_only().await.unwrap();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..5 {
        let (pid, port, standby): (i32, i32, bool) =
            sqlx::query_as("SELECT pg_backend_pid(), inet_server_port(), pg_is_in_recovery()")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
        assert!(standby, "a read-only transaction runs on a replica");
        seen.insert((pid, port));
    }
    assert_eq!(
        seen.len(),
        1,
        "every statement on the transaction's one connection"
    );
    let err = sqlx::query("CREATE TABLE nope (id int)")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    let code = err
        .as_database_error()
        .and_then(|d| d.code())
        .unwrap_or_default();
    assert_eq!(code, "25006", "{err}");
    tx.rollback().await.unwrap();
    pool.close().await;
}

/// `min_connections` means warm pools right after `connect`, as with `PgPool::connect`: the
/// first burst of requests must not pay for opening connections. (sqlx's own maintenance
/// opens them only after `idle_timeout` when a pool is created lazily.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_connections_are_open_soon_after_connect() {
    let c = shared();
    let tagged = |i: usize| format!("{}?application_name=pp-warm-{i}", c.url(i));
    let (primary, replica) = (tagged(0), tagged(1));
    let pool = PgReplicaPool::connect(
        &primary,
        &[&replica],
        fast_config().min_connections(3).max_connections(5),
    )
    .await
    .unwrap();
    let open = |i: usize| {
        c.psql(
            i,
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pp-warm-{i}'"
            ),
        )
        .parse::<u32>()
        .unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (p, r) = tokio::task::block_in_place(|| (open(0), open(1)));
        if p >= 3 && r >= 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "5 s after connect: {p} connections to the primary, {r} to the replica (want 3 each)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pool.close().await;
}

/// `connect_options` and `after_connect` reach every connection of every node: a hook's
/// `SET search_path` holds on replica and primary connections alike (a routed `SET` would
/// reach one primary connection only), proven by the servers' own settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_reach_every_connection_of_every_node() {
    let c = shared();
    let mut builder = PgReplicaPool::builder()
        .primary(c.primary_url())
        .connect_options(|o| o.application_name("pp-hooks"))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute("SET search_path = hooked, public").await?;
                Ok(())
            })
        })
        .config(fast_config().max_connections(4));
    for url in c.replica_urls() {
        builder = builder.replica(url);
    }
    let pool = builder.connect().await.unwrap();
    let settings = "SELECT current_setting('search_path'), current_setting('application_name'), \
                    pg_is_in_recovery(), pg_backend_pid() FROM pg_sleep(0.05)";
    // Enough at once that every node opens several connections.
    let reads = futures_util::future::join_all((0..12).map(|_| {
        let pool = pool.clone();
        async move { sqlx::query(settings).fetch_one(&pool).await.unwrap() }
    }))
    .await;
    let writes = futures_util::future::join_all((0..6).map(|_| {
        let pool = pool.clone();
        async move {
            sqlx::query(settings)
                .fetch_one(pool.on_primary())
                .await
                .unwrap()
        }
    }))
    .await;
    let mut backends = std::collections::HashSet::new();
    for row in reads.iter().chain(&writes) {
        assert_eq!(row.get::<String, _>(0), "hooked, public");
        assert_eq!(row.get::<String, _>(1), "pp-hooks");
        backends.insert((row.get::<bool, _>(2), row.get::<i32, _>(3)));
    }
    assert!(
        reads.iter().all(|r| r.get::<bool, _>(2)),
        "reads ran on replicas"
    );
    assert!(
        writes.iter().all(|r| !r.get::<bool, _>(2)),
        "on_primary ran on the primary"
    );
    assert!(
        backends.len() >= 4,
        "several connections per node were checked: {backends:?}"
    );
    pool.close().await;
}

/// `max_lifetime` reaches the node pools: an old connection is replaced.
#[tokio::test]
async fn max_lifetime_replaces_old_connections() {
    let c = shared();
    let config = fast_config()
        .max_connections(1)
        .max_lifetime(Duration::from_millis(300));
    let pool = PgReplicaPool::connect(&c.primary_url(), &[&c.url(1)], config)
        .await
        .unwrap();
    let pid = || async {
        sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let first = pid().await;
    assert_eq!(pid().await, first, "a young connection is reused");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_ne!(
        pid().await,
        first,
        "a connection past max_lifetime is replaced"
    );
    pool.close().await;
}
