//! ReplicaPool<Sqlite>: a writer pool and read-only reader pools on one real WAL database file.

use std::time::Duration;

use partypool::{Config, SqliteReplicaPool};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{ConnectOptions, Connection};

async fn setup() -> (tempfile::TempDir, SqliteReplicaPool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .connect()
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    let reader = format!("sqlite://{}?mode=ro", path.display());
    let pool = SqliteReplicaPool::builder()
        .primary(format!("sqlite://{}", path.display()))
        .replica(&reader)
        .replica(&reader)
        .config(Config::default().health_check_interval(Duration::from_millis(100)))
        .connect()
        .await
        .unwrap();
    (dir, pool)
}

#[tokio::test]
async fn writes_go_to_the_writer_and_reads_to_the_readers() {
    let (_dir, pool) = setup().await;
    // The readers are read-only: a write through one fails...
    sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    let err = sqlx::query("INSERT INTO t (v) VALUES ('x')")
        .execute(&pool.replica())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("readonly"), "{err}");
    // ...so every write through the pool succeeding proves it went to the writer.
    for i in 0..20 {
        sqlx::query("INSERT INTO t (v) VALUES (?)")
            .bind(i.to_string())
            .execute(&pool)
            .await
            .unwrap();
    }
    let before: Vec<u64> = pool.status().nodes.iter().map(|n| n.queries).collect();
    for _ in 0..40 {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 20, "a reader sees the writer's committed rows");
    }
    let after: Vec<u64> = pool.status().nodes.iter().map(|n| n.queries).collect();
    assert_eq!(after[0], before[0], "no read went to the writer");
    assert_eq!((after[1] - before[1], after[2] - before[2]), (20, 20));
    // Writer-only functions stay on the writer.
    let id: i64 = sqlx::query_scalar("SELECT last_insert_rowid()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(id >= 0);
    pool.close().await;
}

#[tokio::test]
async fn concurrent_writers_do_not_hit_sqlite_busy() {
    let (_dir, pool) = setup().await;
    sqlx::query("CREATE TABLE c (id INTEGER PRIMARY KEY, task INT)")
        .execute(&pool)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    sqlx::query("INSERT INTO c (task) VALUES (?)")
                        .bind(t)
                        .execute(&pool)
                        .await?;
                    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM c")
                        .fetch_one(&pool)
                        .await?;
                }
                Ok::<_, sqlx::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await
            .unwrap()
            .expect("no statement fails under concurrent writes");
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM c")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 400);
    assert_eq!(
        pool.primary().options().get_max_connections(),
        1,
        "SQLite gets a single writer"
    );
    pool.close().await;
}

#[tokio::test]
async fn a_missing_reader_file_is_unhealthy_but_connect_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let writer = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
    let missing = format!(
        "sqlite://{}?mode=ro",
        dir.path().join("missing.db").display()
    );
    let pool = SqliteReplicaPool::connect(&writer, &[&missing], Config::default())
        .await
        .unwrap();
    let status = pool.status();
    assert!(!status.node("replica-1").unwrap().healthy, "{status}");
    let one: i64 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(one, 1, "reads fall back to the writer");
    assert_eq!(pool.status().node("primary").unwrap().queries, 1);
    pool.close().await;
}

#[tokio::test]
async fn sessions_on_sqlite_read_their_writes_from_the_readers() {
    let (_dir, pool) = setup().await;
    sqlx::query("CREATE TABLE s (v TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    let session = pool.session();
    sqlx::query("INSERT INTO s VALUES ('mine')")
        .execute(&session)
        .await
        .unwrap();
    let before = pool.status().node("primary").unwrap().queries;
    // Readers of the same WAL file see every committed write: no need to go to the writer.
    let v: String = sqlx::query_scalar("SELECT v FROM s")
        .fetch_one(&session)
        .await
        .unwrap();
    assert_eq!(v, "mine");
    assert_eq!(pool.status().node("primary").unwrap().queries, before);
    pool.close().await;
}
