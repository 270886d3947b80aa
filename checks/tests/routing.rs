//! Routing decisions judged by a real hot standby: misroute fallback, hints, explicit
//! executors, configured write functions.

mod support;

use std::time::Duration;

use futures_util::TryStreamExt;
use partypool::{Config, PgReplicaPool};
use support::{PgCluster, shared};

const SETUP: &str = "
CREATE TABLE IF NOT EXISTS misroute_counter (id int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO misroute_counter SELECT g, 0 FROM generate_series(1, 4) g ON CONFLICT DO NOTHING;
-- A write that looks like a read to any SQL classifier.
-- Each test bumps its own row, so tests running at once do not disturb each other's counts.
CREATE OR REPLACE FUNCTION bump_misroute(row_id int) RETURNS bigint LANGUAGE sql AS
  $$ UPDATE misroute_counter SET n = n + 1 WHERE id = row_id RETURNING n $$;
CREATE OR REPLACE PROCEDURE where_am_i(OUT standby boolean) LANGUAGE plpgsql AS
  $$ BEGIN standby := pg_is_in_recovery(); END $$;
";

async fn pool_with(c: &PgCluster, config: Config) -> PgReplicaPool {
    let replicas = c.replica_urls();
    let replicas: Vec<&str> = replicas.iter().map(String::as_str).collect();
    PgReplicaPool::connect(&c.primary_url(), &replicas, config)
        .await
        .unwrap()
}

/// Routing, not consistency: the tests of this binary write to one shared cluster, and under
/// the process scope a read right after another test's write may (correctly) run on the
/// primary while the replicas replay it.
fn config() -> Config {
    Config::default()
        .health_check_interval(Duration::from_millis(200))
        .consistency_scope(partypool::Scope::Session)
}

fn counter(c: &PgCluster, row: i32) -> i64 {
    c.psql(
        0,
        &format!("SELECT n FROM misroute_counter WHERE id = {row}"),
    )
    .parse()
    .unwrap()
}

fn setup(c: &PgCluster) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        c.psql(0, SETUP);
        c.wait_replayed();
    });
}

#[tokio::test]
async fn a_hidden_write_refused_by_a_replica_runs_once_on_the_primary() {
    let c = shared();
    setup(c);
    let pool = pool_with(c, config()).await;
    let misroutes =
        |pool: &PgReplicaPool| -> u64 { pool.status().nodes.iter().map(|n| n.misroutes).sum() };
    assert_eq!(
        partypool::route("SELECT bump_misroute(1)").target,
        partypool::Target::Replica
    );

    // fetch_one (fetch_optional underneath).
    let before = counter(c, 1);
    let (n, standby): (i64, bool) = sqlx::query_as("SELECT bump_misroute(1), pg_is_in_recovery()")
        .fetch_one(&pool)
        .await
        .expect("a misrouted write must still succeed");
    assert!(!standby, "the fallback ran on the primary");
    assert_eq!(n, before + 1);
    assert_eq!(counter(c, 1), before + 1, "applied exactly once");
    assert_eq!(misroutes(&pool), 1);
    assert_eq!(pool.status().node("primary").unwrap().misroutes, 0);

    // fetch_all (a stream) with bound arguments, which must survive the re-run.
    let rows: Vec<(i64, i32)> = sqlx::query_as("SELECT bump_misroute(1), $1::int4")
        .bind(7)
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows, vec![(before + 2, 7)]);
    assert_eq!(counter(c, 1), before + 2);
    // execute.
    sqlx::query("SELECT bump_misroute(1)")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(counter(c, 1), before + 3);
    assert_eq!(misroutes(&pool), 3);
    assert!(pool.status().to_string().contains("MISROUTES"));
    pool.close().await;
}

#[tokio::test]
async fn a_stream_that_already_returned_rows_is_not_re_run() {
    let c = shared();
    setup(c);
    let pool = pool_with(c, config()).await;
    let before = counter(c, 2);
    // Rows 1 and 2 come back before row 3 calls the hidden write.
    let mut rows = sqlx::query_scalar::<_, i64>(
        "SELECT CASE WHEN g < 3 THEN g ELSE bump_misroute(2) END FROM generate_series(1, 3) g",
    )
    .fetch(&pool);
    let mut got = Vec::new();
    let err = loop {
        match rows.try_next().await {
            Ok(Some(v)) => got.push(v),
            Ok(None) => panic!("expected the replica to refuse the write, got {got:?}"),
            Err(e) => break e,
        }
    };
    drop(rows);
    assert_eq!(got, vec![1, 2]);
    let code = err
        .as_database_error()
        .and_then(|d| d.code())
        .unwrap_or_default();
    assert_eq!(code, "25006", "{err}");
    assert_eq!(counter(c, 2), before, "nothing ran on the primary");
    pool.close().await;
}

#[tokio::test]
async fn configured_write_functions_go_straight_to_the_primary() {
    let c = shared();
    setup(c);
    let pool = pool_with(c, config().write_functions(["public.bump_misroute"])).await;
    let standby: bool =
        sqlx::query_scalar("SELECT pg_is_in_recovery() FROM (SELECT bump_misroute(4)) s")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!standby);
    assert_eq!(
        pool.status().nodes.iter().map(|n| n.misroutes).sum::<u64>(),
        0
    );
    pool.close().await;
}

#[tokio::test]
async fn hints_and_explicit_executors_are_obeyed_by_the_server() {
    let c = shared();
    setup(c);
    let pool = pool_with(c, config()).await;
    let standby = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert!(standby("SELECT pg_is_in_recovery()").await);
    assert!(!standby("/* partypool:primary */ SELECT pg_is_in_recovery()").await);
    assert!(!standby("-- partypool:primary\nSELECT pg_is_in_recovery()").await);

    let on_primary: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(pool.on_primary())
        .await
        .unwrap();
    assert!(!on_primary);

    // CALL is opaque: the primary by default, a replica when the caller says so.
    assert!(!standby("CALL where_am_i(NULL)").await);
    assert!(standby("/* partypool:replica */ CALL where_am_i(NULL)").await);
    let on_replica: bool = sqlx::query_scalar("CALL where_am_i(NULL)")
        .fetch_one(pool.on_replica())
        .await
        .unwrap();
    assert!(on_replica);

    // A replica hint never moves a detected write.
    let before = counter(c, 3);
    sqlx::query("/* partypool:replica */ UPDATE misroute_counter SET n = n + 1 WHERE id = 3")
        .execute(pool.on_replica())
        .await
        .unwrap();
    assert_eq!(counter(c, 3), before + 1);
    assert_eq!(
        pool.status().nodes.iter().map(|n| n.misroutes).sum::<u64>(),
        0
    );
    pool.close().await;
}
