//! Replica bugs on a laptop: two simulated replicas 200 ms behind, on one PostgreSQL server.
//!
//! The same workload — create a row, then read it back through `&pool`, as most web
//! handlers do — runs twice: with consistency off it reads stale rows (the bug production
//! replicas would show), and with partypool's default it does not.
//!
//! `cargo run --example simulated_lag --features testing` starts a throwaway server (the
//! PostgreSQL server binaries must be installed); with `DATABASE_URL` set it uses that one.

use std::time::Duration;

use partypool::{Config, PgReplicaPool, Scope};

async fn workload(pool: &PgReplicaPool) -> Result<usize, sqlx::Error> {
    let mut stale = 0;
    for i in 0..50 {
        let id: i64 = sqlx::query_scalar("INSERT INTO notes (body) VALUES ($1) RETURNING id")
            .bind(format!("note {i}"))
            .fetch_one(pool)
            .await?;
        let found: Option<String> = sqlx::query_scalar("SELECT body FROM notes WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
        if found.is_none() {
            stale += 1;
        }
    }
    Ok(stale)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // One server, the one a developer runs.
    let (url, _server) = match std::env::var("DATABASE_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let server = partypool::testing::PgCluster::start(0);
            (server.primary_url(), Some(server))
        }
    };
    for (scope, what) in [
        (Scope::Off, "consistency off"),
        (Scope::Process, "the default"),
    ] {
        let pool = PgReplicaPool::builder()
            .primary(&url)
            .simulate_replicas(2)
            .config(
                Config::default()
                    .simulated_lag(Duration::from_millis(200))
                    .consistency_scope(scope),
            )
            .connect()
            .await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS notes (id bigserial PRIMARY KEY, body text)")
            .execute(&pool)
            .await?;
        let stale = workload(&pool).await?;
        println!("{what}: {stale} of 50 reads missed the row just written");
        if scope == Scope::Process {
            println!("\n{}", pool.status());
        }
        pool.close().await;
    }
    Ok(())
}
