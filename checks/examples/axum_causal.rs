//! Read-your-writes across HTTP requests with axum and `partypool::tower::SessionLayer`: the
//! POST that writes gets a token cookie (and header) back; the following GET sends the
//! cookie and is served by a replica that has the write — or by the primary when none has
//! it yet. The handlers only take a `Session` argument; the layer does the token plumbing.
//!
//! Starts a local PostgreSQL primary + 1 streaming replica (the test support's cluster; needs
//! the server binaries) and drives the app in-process. To make the effect visible, replay on
//! the replica is paused for the first round.
//!
//! `cargo run --example axum_causal --features axum`

#[path = "../tests/support/mod.rs"]
mod support;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{Request, StatusCode, header};
use axum::routing::{get, post};
use partypool::tower::SessionLayer;
use partypool::{Config, PgReplicaPool, Session};
use sqlx::Postgres;
use tower::ServiceExt;

async fn create(session: Session<Postgres>, body: String) -> Result<String, StatusCode> {
    sqlx::query_scalar::<_, i64>("INSERT INTO notes (body) VALUES ($1) RETURNING id")
        .bind(body)
        .fetch_one(&session)
        .await
        .map(|id| id.to_string())
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)
}

async fn read(session: Session<Postgres>, Path(id): Path<i64>) -> (StatusCode, String) {
    let row: Result<Option<(String, bool)>, _> =
        sqlx::query_as("SELECT body, pg_is_in_recovery() FROM notes WHERE id = $1")
            .bind(id)
            .fetch_optional(&session)
            .await;
    match row {
        Ok(Some((body, replica))) => {
            let by = if replica { "a replica" } else { "the primary" };
            (StatusCode::OK, format!("{body} (served by {by})"))
        }
        Ok(None) => (StatusCode::NOT_FOUND, "no such note (yet?)".into()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Runs one request; returns the status, the `Set-Cookie` pair (if any) and the body.
async fn call(app: &Router, req: Request<Body>) -> (StatusCode, Option<String>, String) {
    let res = app.clone().oneshot(req).await.expect("the app answers");
    let status = res.status();
    let cookie = res
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, cookie, String::from_utf8_lossy(&bytes).into_owned())
}

fn get_note(id: &str, cookie: Option<&str>) -> Request<Body> {
    let mut req = Request::get(format!("/notes/{id}"));
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    req.body(Body::empty()).unwrap()
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
    let app = Router::new()
        .route("/notes", post(create))
        .route("/notes/{id}", get(read))
        .layer(SessionLayer::new(pool.clone()));

    println!("-- replica replay paused: the replica will not have the note");
    tokio::task::block_in_place(|| cluster.pause_replay(1));
    let (status, cookie, id) = call(&app, Request::post("/notes").body(Body::from("hello"))?).await;
    let cookie = cookie.unwrap_or_default();
    println!("POST /notes            -> {status}, id {id}, Set-Cookie: {cookie}");
    let (status, _, body) = call(&app, get_note(&id, None)).await;
    println!("GET  /notes/{id} (no cookie)   -> {status}: {body}");
    let (status, _, body) = call(&app, get_note(&id, Some(&cookie))).await;
    println!("GET  /notes/{id} (with cookie) -> {status}: {body}");

    println!("-- replay resumed: the replica catches up");
    tokio::task::block_in_place(|| {
        cluster.resume_replay(1);
        cluster.wait_replayed();
    });
    let (status, _, body) = call(&app, get_note(&id, Some(&cookie))).await;
    println!("GET  /notes/{id} (with cookie) -> {status}: {body}");

    let garbled = "partypool_token=pp2-l-0000000000000001-1-10";
    let (status, _, body) = call(&app, get_note(&id, Some(garbled))).await;
    println!("GET  /notes/{id} (another cluster's token: ignored) -> {status}: {body}");
    pool.close().await;
    Ok(())
}
