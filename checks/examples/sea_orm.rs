//! SeaORM 2 over partypool: entities read on a replica, write on the primary, and a session
//! reads its own writes while the replica is paused.
//!
//! Starts a local PostgreSQL primary + 1 streaming replica (the test support's cluster).
//!
//! `cargo run --example sea_orm --features sea-orm`

#[path = "../tests/support/mod.rs"]
mod support;

use partypool::{Config, PgReplicaPool};
use sea_orm::{ActiveModelTrait, EntityTrait, Set};

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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = support::PgCluster::start(1);
    cluster.psql(
        0,
        "CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL)",
    );
    cluster.wait_replayed();
    let config = Config::default().max_replica_lag(None);
    let pool = PgReplicaPool::connect(&cluster.primary_url(), &[&cluster.url(1)], config).await?;
    let db = pool.sea_orm();

    let note = note::ActiveModel {
        body: Set("hello".into()),
        ..Default::default()
    }
    .insert(&db)
    .await?;
    println!("inserted on the primary: {note:?}");

    tokio::task::block_in_place(|| cluster.pause_replay(1));
    let session = pool.session();
    let sdb = session.sea_orm();
    note::ActiveModel {
        body: Set("written while the replica is paused".into()),
        ..Default::default()
    }
    .insert(&sdb)
    .await?;
    let everyone = note::Entity::find().all(&db).await?.len();
    let mine = note::Entity::find().all(&sdb).await?.len();
    println!("the replica (paused) has {everyone} note(s); the session sees {mine}");
    tokio::task::block_in_place(|| cluster.resume_replay(1));
    println!("{}", pool.status());
    pool.close().await;
    Ok(())
}
