//! An axum service run the way operations run it: the database password comes from a file a
//! secret manager rotates, replicas carry zones and the process prefers its own, the pool lets
//! replicas rest when traffic stops, and every request is traced with OpenTelemetry's
//! attribute names. The handlers and repository functions only take `&PgReplicaPool`.
//!
//! Starts a local PostgreSQL primary + 2 streaming replicas (the testing kit; needs the server
//! binaries) and drives the app in-process: requests, a password rotation in the middle, an
//! idle pause, then more requests. Prints who answered and the pool's status table.
//!
//! `cargo run --example operations`

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use partypool::testing::PgCluster;
use partypool::{Config, Credential, PgReplicaPool};
use tower::ServiceExt;

// The repository: plain functions over `&pool`.

async fn add_note(pool: &PgReplicaPool, body: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("INSERT INTO notes (body) VALUES ($1) RETURNING id")
        .bind(body)
        .fetch_one(pool)
        .await
}

async fn note(pool: &PgReplicaPool, id: i64) -> Result<Option<(String, i32)>, sqlx::Error> {
    sqlx::query_as("SELECT body, inet_server_port() FROM notes WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

// The handlers.

async fn create(State(pool): State<PgReplicaPool>, body: String) -> Result<String, StatusCode> {
    add_note(&pool, &body)
        .await
        .map(|id| id.to_string())
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)
}

async fn read(State(pool): State<PgReplicaPool>, Path(id): Path<i64>) -> (StatusCode, String) {
    match note(&pool, id).await {
        Ok(Some((body, port))) => (StatusCode::OK, format!("{body} (port {port})")),
        Ok(None) => (StatusCode::NOT_FOUND, String::new()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn call(app: &Router, method: &str, uri: &str, body: &str) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body.to_owned()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = PgCluster::start(2);
    cluster.psql(
        0,
        "CREATE ROLE app LOGIN PASSWORD 'first-password'; \
         CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL); \
         GRANT SELECT, INSERT ON notes TO app; GRANT USAGE ON SEQUENCE notes_id_seq TO app",
    );
    cluster.wait_replayed();
    cluster.require_passwords(&["app"]);
    let secrets = tempfile::tempdir()?;
    let secret_file = secrets.path().join("db-password");
    std::fs::write(&secret_file, "first-password")?;
    let url = |i: usize, zone: &str| {
        let port = if i == 0 {
            cluster.primary().port
        } else {
            cluster.replica(i).port
        };
        format!("postgres://app@127.0.0.1:{port}/postgres?zone={zone}")
    };
    let local = cluster.replica(1).port;

    let file = Arc::new(secret_file.clone());
    let pool = PgReplicaPool::builder()
        .primary(url(0, "eu-1a"))
        .replica(url(1, "eu-1a"))
        .replica(url(2, "eu-1b"))
        .credentials(move || {
            let file = Arc::clone(&file);
            async move {
                let password = tokio::fs::read_to_string(&*file).await?;
                Ok::<_, std::io::Error>(
                    Credential::new(password.trim()).valid_for(Duration::from_secs(2)),
                )
            }
        })
        .config(
            Config::default()
                .prefer_zone("eu-1a")
                .idle_probe_after(Duration::from_secs(1))
                .health_check_interval(Duration::from_millis(200))
                .max_lifetime(Duration::from_millis(500)),
        )
        .wait_for_replicas(Duration::from_secs(5))
        .connect()
        .await?;
    let app = Router::new()
        .route("/notes", post(create))
        .route("/notes/{id}", get(read))
        .with_state(pool.clone());

    let mut local_reads = 0;
    let mut reads = 0;
    let mut failures = 0;
    for round in 0..40 {
        if round == 20 {
            // The secret manager rotates the password: the file first, then the server.
            std::fs::write(&secret_file, "second-password")?;
            cluster.psql(0, "ALTER ROLE app PASSWORD 'second-password'");
            println!("-- password rotated");
        }
        let (status, id) = call(&app, "POST", "/notes", &format!("note {round}")).await;
        if status != StatusCode::OK {
            failures += 1;
            continue;
        }
        let (status, body) = call(&app, "GET", &format!("/notes/{id}"), "").await;
        if status == StatusCode::OK {
            reads += 1;
            if body.ends_with(&format!("(port {local})")) {
                local_reads += 1;
            }
        } else {
            failures += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "40 writes and their reads: {failures} failed, {reads} reads, {local_reads} in the local zone \
         (a read right after its write goes to the primary until a replica has it)"
    );

    tokio::time::sleep(Duration::from_millis(1600)).await;
    println!("\nidle for 1.6 s:\n{}", pool.status());
    let (status, body) = call(&app, "GET", "/notes/1", "").await;
    println!("first read after the pause: {status} {body}");
    println!("\n{}", pool.status());
    pool.close().await;
    Ok(())
}
