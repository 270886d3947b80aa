//! Read-your-writes sessions on a real cluster: with replay paused on every replica, a
//! session still sees its own writes (from the primary) while other reads stay on replicas.

mod support;

use std::time::{Duration, Instant};

use partypool::{CausalToken, Config, Consistency, Error, PgReplicaPool, Scope};
use support::PgCluster;

fn config() -> Config {
    Config::default()
        // These tests are about sessions: plain reads must not read the process's writes.
        .consistency_scope(Scope::Session)
        .health_check_interval(Duration::from_millis(200))
        // Keep paused replicas in the rotation: this is about sessions, not lag limits.
        .max_replica_lag(None)
        .causal_wait(Duration::from_millis(2))
}

async fn connect(c: &PgCluster, config: Config) -> PgReplicaPool {
    let replicas = c.replica_urls();
    let replicas: Vec<&str> = replicas.iter().map(String::as_str).collect();
    PgReplicaPool::connect(&c.primary_url(), &replicas, config)
        .await
        .unwrap()
}

async fn standby<'e>(e: impl sqlx::Executor<'e, Database = sqlx::Postgres>) -> bool {
    sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(e)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_read_their_writes_while_every_replica_is_paused() {
    let c = PgCluster::start(2);
    c.psql(
        0,
        "CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL)",
    );
    c.wait_replayed();
    let pool = connect(&c, config()).await;
    tokio::task::block_in_place(|| {
        c.pause_replay(1);
        c.pause_replay(2);
    });

    // 1,000 write-then-read pairs, each through its own session.
    let started = Instant::now();
    for i in 0..1000 {
        let session = pool.session();
        let body = format!("note {i}");
        let id: i64 = sqlx::query_scalar("INSERT INTO notes (body) VALUES ($1) RETURNING id")
            .bind(&body)
            .fetch_one(&session)
            .await
            .unwrap();
        let (seen, on_standby): (String, bool) =
            sqlx::query_as("SELECT body, pg_is_in_recovery() FROM notes WHERE id = $1")
                .bind(id)
                .fetch_one(&session)
                .await
                .unwrap_or_else(|e| panic!("pair {i}: the session did not see its write: {e}"));
        assert_eq!(seen, body);
        assert!(
            !on_standby,
            "no replica has the write, so the primary served it"
        );
    }
    println!("1000 pairs with paused replicas in {:?}", started.elapsed());
    // Reads without a session still go to the (paused, stale) replicas.
    for _ in 0..20 {
        assert!(standby(&pool).await);
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM notes")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 0, "the replicas are paused: they have none of the notes");
    }

    // A write whose stream is dropped after its first row still counts: the session reads
    // it back (from the primary while its position is being recorded, or after).
    {
        use futures_util::TryStreamExt;
        let session = pool.session();
        let mut rows = sqlx::query_scalar::<_, i64>(
            "INSERT INTO notes (body) VALUES ('dropped'), ('dropped') RETURNING id",
        )
        .fetch(&session);
        let _first = rows.try_next().await.unwrap();
        drop(rows);
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM notes WHERE body = 'dropped'")
            .fetch_one(&session)
            .await
            .unwrap();
        assert_eq!(n, 2, "the session sees the write whose stream it dropped");
    }

    // A token carried to another pool (another process's view) gives the same guarantee.
    let session = pool.session();
    sqlx::query("INSERT INTO notes (body) VALUES ('carried')")
        .execute(&session)
        .await
        .unwrap();
    let header = session
        .token()
        .expect("a session that wrote has a token")
        .to_string();
    let other = connect(&c, config()).await;
    let carried = other
        .session_with(header.parse::<CausalToken>().unwrap())
        .unwrap();
    let (n, on_standby): (i64, bool) =
        sqlx::query_as("SELECT count(*), pg_is_in_recovery() FROM notes WHERE body = 'carried'")
            .fetch_one(&carried)
            .await
            .unwrap();
    assert_eq!((n, on_standby), (1, false));

    // Resumed, the replicas catch up and session reads go back to them.
    tokio::task::block_in_place(|| {
        c.resume_replay(1);
        c.resume_replay(2);
        c.wait_replayed();
    });
    for s in [&session, &carried] {
        // The pool learns the new replay positions within a refresh (`causal_wait` is tiny
        // here, so on a busy machine a read may still fall back to the primary once or twice).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (n, on_standby): (i64, bool) = sqlx::query_as(
                "SELECT count(*), pg_is_in_recovery() FROM notes WHERE body = 'carried'",
            )
            .fetch_one(s)
            .await
            .unwrap();
            assert_eq!(n, 1, "the session always sees its write");
            if on_standby {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "caught-up replicas never served the session again"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    pool.close().await;
    other.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_with_live_replication() {
    let c = PgCluster::start(2);
    c.psql(
        0,
        "CREATE TABLE counters (task int PRIMARY KEY, n bigint NOT NULL)",
    );
    c.wait_replayed();
    let pool = connect(&c, config().causal_wait(Duration::from_millis(50))).await;
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let session = pool.session();
                let (mut on_replicas, mut reads) = (0, 0);
                for n in 1..=50_i64 {
                    sqlx::query("INSERT INTO counters VALUES ($1, $2) ON CONFLICT (task) DO UPDATE SET n = $2")
                        .bind(t)
                        .bind(n)
                        .execute(&session)
                        .await
                        .unwrap();
                    for _ in 0..5 {
                        let (seen, on_standby): (i64, bool) =
                            sqlx::query_as("SELECT n, pg_is_in_recovery() FROM counters WHERE task = $1")
                                .bind(t)
                                .fetch_one(&session)
                                .await
                                .unwrap();
                        assert_eq!(seen, n, "task {t} read a value older than its own write");
                        reads += 1;
                        on_replicas += on_standby as u32;
                    }
                }
                (on_replicas, reads)
            })
        })
        .collect();
    let (mut on_replicas, mut reads) = (0, 0);
    for t in tasks {
        let (r, n) = t.await.unwrap();
        on_replicas += r;
        reads += n;
    }
    println!("8 sessions: {on_replicas} of {reads} reads served by replicas, none stale");
    assert!(
        on_replicas * 2 > reads,
        "most session reads should still go to replicas"
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_and_garbled_tokens_are_rejected() {
    let a = PgCluster::start(1);
    let b = PgCluster::start(0);
    let pool_a = connect(&a, config()).await;
    let pool_b = PgReplicaPool::connect(&b.primary_url(), &[], config())
        .await
        .unwrap();
    let session = pool_a.session();
    sqlx::query("SELECT txid_current()")
        .execute(&session)
        .await
        .unwrap();
    let token = session.token().unwrap();
    let err = pool_b.session_with(token).unwrap_err();
    assert!(matches!(err, Error::ForeignToken { .. }), "{err}");
    assert!(err.to_string().contains("cluster"), "{err}");
    for garbled in [
        "",
        "pp1",
        "pp1-l-xyz-10",
        "pp2-l-1-1",
        "pp1-q-1-1",
        "pp1-l-1-1-1",
        "hello",
    ] {
        let err = garbled.parse::<CausalToken>().unwrap_err();
        assert!(matches!(err, Error::InvalidToken(_)), "{garbled:?}: {err}");
    }
    // serde: as a string.
    let json = serde_json::to_string(&token).unwrap();
    assert_eq!(serde_json::from_str::<CausalToken>(&json).unwrap(), token);
    pool_a.close().await;
    pool_b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_sessions_read_on_the_primary_for_a_while() {
    let c = PgCluster::start(1);
    let pool = connect(
        &c,
        config().consistency(Consistency::StickyFor(Duration::from_millis(400))),
    )
    .await;
    let session = pool.session();
    assert!(standby(&session).await, "no write yet: a replica");
    sqlx::query("SELECT txid_current()")
        .execute(&session)
        .await
        .unwrap();
    assert!(!standby(&session).await, "right after a write: the primary");
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(standby(&session).await, "after the window: a replica again");
    pool.close().await;
}
