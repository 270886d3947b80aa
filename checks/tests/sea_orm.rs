//! SeaORM 2 entities through `pool.sea_orm()` on a real primary + replica. Where each
//! statement ran is the server's answer (`pg_is_in_recovery()`) or, with replay paused,
//! what it could see.
#![cfg(feature = "sea-orm")]

mod support;

use futures_util::TryStreamExt;
use partypool::{Config, PgReplicaPool};
use sea_orm::{
    AccessMode, ActiveModelTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, PaginatorTrait,
    Set, Statement, TransactionTrait,
};

mod note {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notes")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub body: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Whether the connection's next read ran on a standby.
async fn on_standby(db: &impl ConnectionTrait) -> bool {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_is_in_recovery() AS standby",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<bool>("", "standby").unwrap()
}

/// Every note's body, as `db` sees them.
async fn note_bodies(db: &impl ConnectionTrait) -> Vec<String> {
    note::Entity::find()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.body)
        .collect()
}

/// Every note, streamed through `db` (a connection or a transaction).
async fn stream_notes<C: ConnectionTrait + sea_orm::StreamTrait>(db: &C) -> Vec<note::Model> {
    note::Entity::find()
        .stream(db)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

fn new_note(body: &str) -> note::ActiveModel {
    note::ActiveModel {
        body: Set(body.to_owned()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_route_and_sessions_read_their_writes() {
    let c = support::PgCluster::start(1);
    c.psql(
        0,
        "CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL)",
    );
    c.wait_replayed();
    let pool = PgReplicaPool::connect(
        &c.primary_url(),
        &[&c.url(1)],
        // Session scope: what a session adds must show against plain reads.
        Config::default()
            .max_replica_lag(None)
            .consistency_scope(partypool::Scope::Session),
    )
    .await
    .unwrap();
    let db = pool.sea_orm();

    // Writes (ActiveModel insert/update/delete, insert_many) on the primary; reads on the
    // replica.
    let first = new_note("first").insert(&db).await.unwrap();
    note::Entity::insert_many([new_note("second"), new_note("third")])
        .exec(&db)
        .await
        .unwrap();
    tokio::task::block_in_place(|| c.wait_replayed());
    let mut second: note::ActiveModel = note::Entity::find_by_id(first.id + 1)
        .one(&db)
        .await
        .unwrap()
        .unwrap()
        .into();
    second.body = Set("second, edited".into());
    second.update(&db).await.unwrap();
    note::Entity::delete_by_id(first.id + 2)
        .exec(&db)
        .await
        .unwrap();
    tokio::task::block_in_place(|| c.wait_replayed());
    assert!(on_standby(&db).await, "a read runs on the replica");
    assert_eq!(note::Entity::find().all(&db).await.unwrap().len(), 2);
    assert_eq!(note::Entity::find().count(&db).await.unwrap(), 2);
    let streamed = stream_notes(&db).await;
    assert_eq!(streamed.len(), 2);

    // With replay paused the replica lags: the pool's reads miss a new write, the
    // session's do not.
    tokio::task::block_in_place(|| c.pause_replay(1));
    let session = pool.session();
    let sdb = session.sea_orm();
    new_note("while paused").insert(&sdb).await.unwrap();
    assert_eq!(note::Entity::find().all(&db).await.unwrap().len(), 2);
    assert_eq!(note::Entity::find().all(&sdb).await.unwrap().len(), 3);
    assert!(
        !on_standby(&sdb).await,
        "the session reads on the primary meanwhile"
    );

    // Transactions: the primary; a read-only one: the replica.
    let standby = db
        .transaction::<_, bool, DbErr>(|txn| {
            Box::pin(async move {
                new_note("in a transaction").insert(txn).await?;
                Ok(on_standby(txn).await)
            })
        })
        .await
        .unwrap();
    assert!(!standby);
    let ro = db
        .begin_with_config(None, Some(AccessMode::ReadOnly))
        .await
        .unwrap();
    assert!(
        on_standby(&ro).await,
        "a read-only transaction runs on a replica"
    );
    ro.commit().await.unwrap();

    // A nested transaction is a savepoint: rolled back, its write is gone; the outer one
    // commits.
    let outer = db.begin().await.unwrap();
    new_note("kept").insert(&outer).await.unwrap();
    let inner = outer.begin().await.unwrap();
    new_note("rolled back").insert(&inner).await.unwrap();
    inner.rollback().await.unwrap();
    outer.commit().await.unwrap();
    let bodies = note_bodies(&sdb).await;
    assert!(bodies.contains(&"kept".to_owned()), "{bodies:?}");
    assert!(!bodies.contains(&"rolled back".to_owned()), "{bodies:?}");

    // A nested transaction dropped unfinished is rolled back, as SeaORM's own are.
    let outer = db.begin().await.unwrap();
    {
        let inner = outer.begin().await.unwrap();
        new_note("abandoned").insert(&inner).await.unwrap();
    }
    new_note("after the abandoned one")
        .insert(&outer)
        .await
        .unwrap();
    outer.commit().await.unwrap();
    let bodies = note_bodies(&sdb).await;
    assert!(
        bodies.contains(&"after the abandoned one".to_owned()),
        "{bodies:?}"
    );
    assert!(!bodies.contains(&"abandoned".to_owned()), "{bodies:?}");

    // Serializable read-only: a standby refuses it, so the primary.
    let ser = db
        .begin_with_config(
            Some(sea_orm::IsolationLevel::Serializable),
            Some(AccessMode::ReadOnly),
        )
        .await
        .unwrap();
    assert!(!on_standby(&ser).await);
    ser.commit().await.unwrap();

    // Every write went to the primary by design: no replica refused one.
    let status = pool.status();
    assert!(status.nodes.iter().all(|n| n.misroutes == 0), "{status}");
    // A stream inside a transaction: on its connection, seeing its own uncommitted write.
    let txn = db.begin().await.unwrap();
    new_note("uncommitted").insert(&txn).await.unwrap();
    let streamed = stream_notes(&txn).await;
    assert!(streamed.iter().any(|n| n.body == "uncommitted"));
    // The stream has ended: the transaction's connection is free again.
    assert!(!on_standby(&txn).await);
    txn.rollback().await.unwrap();

    // Errors keep the server's message.
    let err = db
        .execute_unprepared("SELECT * FROM no_such_table")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no_such_table"), "{err}");
    tokio::task::block_in_place(|| c.resume_replay(1));
    pool.close().await;

    // A connection the server refuses: `DbErr::Conn` keeps the driver's `sqlx::Error` (its
    // SQLSTATE), and never shows the URL's password.
    c.psql(0, "CREATE ROLE app LOGIN PASSWORD 'right-one'");
    c.require_passwords(&["app"]);
    let wrong = format!(
        "postgres://app:wrong-8c1d2e@127.0.0.1:{}/postgres",
        c.primary().port
    );
    let pool = PgReplicaPool::builder()
        .primary(&wrong)
        .connect_lazy()
        .unwrap();
    let err = pool.sea_orm().begin().await.unwrap_err();
    let DbErr::Conn(sea_orm::RuntimeErr::SqlxError(source)) = &err else {
        panic!("not the driver's error: {err:?}");
    };
    let code = source.as_database_error().and_then(|d| d.code());
    assert_eq!(code.as_deref(), Some("28P01"), "{source}");
    assert!(
        !format!("{err} {err:?}").contains("wrong-8c1d2e"),
        "{err:?}"
    );
    pool.close().await;
}

/// The same connection over MariaDB GTID replication: `SELECT @@port` says who answered.
#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_connections_route_and_transact() {
    use partypool::MySqlReplicaPool;
    use sea_orm::IsolationLevel;

    let c = support::mariadb::MariaCluster::start(1);
    let pool = MySqlReplicaPool::connect(
        &c.primary_url(),
        &[&c.url(1)],
        Config::default().consistency_scope(partypool::Scope::Session),
    )
    .await
    .unwrap();
    let db: partypool::sea_orm::MySqlReplicaConnection = pool.sea_orm();
    async fn who(db: &impl ConnectionTrait) -> u16 {
        let row = db
            .query_one_raw(Statement::from_string(
                DbBackend::MySql,
                "SELECT @@port AS p",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<u64>("", "p").unwrap() as u16
    }
    let (primary, replica) = (c.node(0).port, c.node(1).port);
    db.execute_unprepared(
        "CREATE TABLE notes (id BIGINT AUTO_INCREMENT PRIMARY KEY, body TEXT NOT NULL)",
    )
    .await
    .unwrap();
    new_note("first").insert(&db).await.unwrap();
    tokio::task::block_in_place(|| c.wait_replayed());
    assert_eq!(who(&db).await, replica, "a read runs on the replica");
    assert_eq!(note_bodies(&db).await, ["first"]);

    // A transaction: the primary, with its own isolation level (set before it begins).
    let txn = db
        .begin_with_config(Some(IsolationLevel::RepeatableRead), None)
        .await
        .unwrap();
    assert_eq!(who(&txn).await, primary);
    new_note("in a transaction").insert(&txn).await.unwrap();
    let inner = txn.begin().await.unwrap();
    new_note("rolled back").insert(&inner).await.unwrap();
    inner.rollback().await.unwrap();
    let streamed = stream_notes(&txn).await;
    assert_eq!(streamed.len(), 2, "{streamed:?}");
    txn.commit().await.unwrap();
    tokio::task::block_in_place(|| c.wait_replayed());
    assert_eq!(note_bodies(&db).await, ["first", "in a transaction"]);

    // Read-only: the replica; with an isolation level, the primary (MySQL sets it before the
    // transaction begins, before a replica is chosen).
    let ro = db
        .begin_with_config(None, Some(AccessMode::ReadOnly))
        .await
        .unwrap();
    assert_eq!(who(&ro).await, replica);
    ro.commit().await.unwrap();
    let ro = db
        .begin_with_config(
            Some(IsolationLevel::ReadCommitted),
            Some(AccessMode::ReadOnly),
        )
        .await
        .unwrap();
    assert_eq!(who(&ro).await, primary);
    let err = ro
        .execute_unprepared("INSERT INTO notes (body) VALUES ('no')")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("READ ONLY"),
        "read-only for real: {err}"
    );
    ro.rollback().await.unwrap();
    pool.close().await;
}

/// SQLite: a writer pool and reader pools on one WAL file; the journal says which ran what.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_connections_route_and_transact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db");
    // The file in WAL mode with its table before the read-only readers open it (a reader
    // opened on a file that is not in WAL mode yet fails its probes for a while).
    let setup = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    sqlx::raw_sql(
        "PRAGMA journal_mode = WAL; \
         CREATE TABLE notes (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)",
    )
    .execute(&setup)
    .await
    .unwrap();
    setup.close().await;
    let pool = partypool::SqliteReplicaPool::builder()
        .primary(format!("sqlite://{}", path.display()))
        .replica(format!("sqlite://{}?mode=ro", path.display()))
        .wait_for_replicas(std::time::Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    let db: partypool::sea_orm::SqliteReplicaConnection = pool.sea_orm();
    let journal = pool.journal();
    new_note("first").insert(&db).await.unwrap();
    assert_eq!(note_bodies(&db).await, ["first"]);
    let txn = db.begin().await.unwrap();
    new_note("second").insert(&txn).await.unwrap();
    let streamed = stream_notes(&txn).await;
    assert_eq!(streamed.len(), 2);
    txn.commit().await.unwrap();
    assert_eq!(note_bodies(&db).await, ["first", "second"]);
    let entries = journal.entries();
    let reads: Vec<_> = entries
        .iter()
        .filter(|e| e.sql.starts_with("SELECT"))
        .collect();
    let writes: Vec<_> = entries
        .iter()
        .filter(|e| e.sql.starts_with("INSERT"))
        .collect();
    assert!(
        !reads.is_empty() && reads.iter().all(|e| e.node == "replica-1"),
        "{entries:#?}"
    );
    assert!(
        !writes.is_empty() && writes.iter().all(|e| e.node == "primary"),
        "{entries:#?}"
    );
    pool.close().await;
}
