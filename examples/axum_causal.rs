//! Read-your-writes across HTTP requests with axum: the POST that writes returns a causal
//! token in a header; the following GET sends it back and is served by a replica that has the
//! write — or by the primary when none has it yet.
//!
//! Starts a local PostgreSQL primary + 1 streaming replica (the test support's cluster; needs
//! the server binaries) and drives the app in-process. To make the effect visible, replay on
//! the replica is paused for the first round.
//!
//! `cargo run --example axum_causal`

#[path = "../tests/support/mod.rs"]
mod support;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use partypool::{CausalToken, Config, PgReplicaPool, Session};
use tower::ServiceExt;

const TOKEN_HEADER: &str = "x-partypool-token";

/// The session for a request: continues the client's token if it sent one.
fn session(
    pool: &PgReplicaPool,
    headers: &HeaderMap,
) -> Result<Session<sqlx::Postgres>, (StatusCode, String)> {
    let Some(value) = headers.get(TOKEN_HEADER) else {
        return Ok(pool.session());
    };
    let bad = |e: String| (StatusCode::BAD_REQUEST, e);
    let token: CausalToken = value
        .to_str()
        .map_err(|_| bad("bad token header".into()))?
        .parse()
        .map_err(|e: partypool::Error| bad(e.to_string()))?;
    pool.session_with(token).map_err(|e| bad(e.to_string()))
}

async fn create(State(pool): State<PgReplicaPool>, headers: HeaderMap, body: String) -> Response {
    let session = match session(&pool, &headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let id: i64 = match sqlx::query_scalar("INSERT INTO notes (body) VALUES ($1) RETURNING id")
        .bind(body)
        .fetch_one(&session)
        .await
    {
        Ok(id) => id,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let token = session.token().map(|t| t.to_string()).unwrap_or_default();
    (StatusCode::CREATED, [(TOKEN_HEADER, token)], id.to_string()).into_response()
}

async fn read(
    State(pool): State<PgReplicaPool>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    let session = match session(&pool, &headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let row: Option<(String, bool)> =
        match sqlx::query_as("SELECT body, pg_is_in_recovery() FROM notes WHERE id = $1")
            .bind(id)
            .fetch_optional(&session)
            .await
        {
            Ok(row) => row,
            Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        };
    match row {
        Some((body, replica)) => {
            let by = if replica { "a replica" } else { "the primary" };
            (StatusCode::OK, format!("{body} (served by {by})")).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such note (yet?)").into_response(),
    }
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, Option<String>, String) {
    let res = app.clone().oneshot(req).await.expect("the app answers");
    let status = res.status();
    let token = res
        .headers()
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, token, String::from_utf8_lossy(&bytes).into_owned())
}

fn get_note(id: &str, token: Option<&str>) -> Request<Body> {
    let mut req = Request::get(format!("/notes/{id}"));
    if let Some(t) = token {
        req = req.header(TOKEN_HEADER, t);
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
        .with_state(pool.clone());

    println!("-- replica replay paused: the replica will not have the note");
    tokio::task::block_in_place(|| cluster.pause_replay(1));
    let (status, token, id) = call(&app, Request::post("/notes").body(Body::from("hello"))?).await;
    let token = token.unwrap_or_default();
    println!("POST /notes            -> {status}, id {id}, {TOKEN_HEADER}: {token}");
    let (status, _, body) = call(&app, get_note(&id, None)).await;
    println!("GET  /notes/{id} (no token)   -> {status}: {body}");
    let (status, _, body) = call(&app, get_note(&id, Some(&token))).await;
    println!("GET  /notes/{id} (with token) -> {status}: {body}");

    println!("-- replay resumed: the replica catches up");
    tokio::task::block_in_place(|| {
        cluster.resume_replay(1);
        cluster.wait_replayed();
    });
    let (status, _, body) = call(&app, get_note(&id, Some(&token))).await;
    println!("GET  /notes/{id} (with token) -> {status}: {body}");

    let (status, _, body) = call(&app, get_note(&id, Some("pp1-l-0000000000000001-10"))).await;
    println!("GET  /notes/{id} (another cluster's token) -> {status}: {body}");
    pool.close().await;
    Ok(())
}
