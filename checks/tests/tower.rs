//! Per-request read-your-writes through real HTTP: an axum server on loopback with
//! `partypool::tower::SessionLayer`, a real HTTP client, and a real primary + replica whose
//! replay is paused. Where each read ran is the server's answer (`pg_is_in_recovery()`).
#![cfg(feature = "axum")]

mod support;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use partypool::tower::SessionLayer;
use partypool::{Config, PgReplicaPool, Session};
use sqlx::Postgres;

async fn create(session: Session<Postgres>, body: String) -> Result<String, StatusCode> {
    sqlx::query_scalar::<_, i64>("INSERT INTO notes (body) VALUES ($1) RETURNING id")
        .bind(body)
        .fetch_one(&session)
        .await
        .map(|id| id.to_string())
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)
}

/// `200 replica|primary` when the note is visible, `404 replica|primary` when not.
async fn read(
    session: Session<Postgres>,
    Path(id): Path<i64>,
) -> Result<(StatusCode, String), StatusCode> {
    let (body, standby): (Option<String>, bool) =
        sqlx::query_as("SELECT (SELECT body FROM notes WHERE id = $1), pg_is_in_recovery()")
            .bind(id)
            .fetch_one(&session)
            .await
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let node = if standby { "replica" } else { "primary" };
    Ok(match body {
        Some(_) => (StatusCode::OK, node.to_owned()),
        None => (StatusCode::NOT_FOUND, node.to_owned()),
    })
}

/// One HTTP exchange: (status, body, response headers).
async fn exchange(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, http::HeaderMap) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(bytes::Bytes::from(body.to_owned())))
        .unwrap();
    let res = client.request(req).await.expect("HTTP request");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_carries_read_your_writes_across_requests() {
    let c = support::PgCluster::start(1);
    c.psql(
        0,
        "CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL)",
    );
    c.wait_replayed();
    let pool = PgReplicaPool::connect(
        &c.primary_url(),
        &[&c.url(1)],
        // Session scope: the layer's tokens, not the process's memory, must carry the writes.
        Config::default()
            .max_replica_lag(None)
            .consistency_scope(partypool::Scope::Session),
    )
    .await
    .unwrap();
    let app: Router = Router::new()
        .route("/notes", post(create))
        .route("/notes/{id}", get(read))
        .layer(SessionLayer::new(pool.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    tokio::task::block_in_place(|| c.pause_replay(1));

    // The write: its response carries the token, as a cookie and a header.
    let (status, id, headers) = exchange(port, "POST", "/notes", &[], "hello").await;
    assert_eq!(status, 200, "{id}");
    let set_cookie = headers
        .get("set-cookie")
        .expect("a Set-Cookie after a write")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        set_cookie.starts_with("partypool_token=pp2-l-"),
        "{set_cookie}"
    );
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );
    let token = headers["x-partypool-token"].to_str().unwrap().to_owned();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    assert_eq!(cookie, format!("partypool_token={token}"));

    let path = format!("/notes/{id}");
    // With the cookie: the write is seen (the replica has not replayed it: the primary).
    for _ in 0..5 {
        let (status, node, headers) =
            exchange(port, "GET", &path, &[("cookie", &cookie)], "").await;
        assert_eq!((status, node.as_str()), (200, "primary"));
        assert!(
            headers.get("set-cookie").is_none(),
            "a read leaves the token alone"
        );
    }
    // Among the site's other cookies, one of them not ASCII; an empty header does not hide it.
    let crowded = format!("theme=d\u{e9}cor; {cookie}; lang=fr");
    let (status, node, _) = exchange(
        port,
        "GET",
        &path,
        &[("cookie", &crowded), ("x-partypool-token", "")],
        "",
    )
    .await;
    assert_eq!((status, node.as_str()), (200, "primary"), "{crowded}");
    // The header works as well as the cookie.
    let (status, _, _) = exchange(port, "GET", &path, &[("x-partypool-token", &token)], "").await;
    assert_eq!(status, 200);
    // Without it: a replica, which has not seen the write.
    let (status, node, _) = exchange(port, "GET", &path, &[], "").await;
    assert_eq!((status, node.as_str()), (404, "replica"));

    // Garbled, foreign, or old-format tokens: a fresh session, never an error.
    let foreign = token.replacen(&token.split('-').nth(2).unwrap().to_owned(), "1234abcd", 1);
    for bad in [
        "partypool_token=garbage".to_owned(),
        format!("partypool_token={foreign}"),
        "partypool_token=pp1-l-0-0".to_owned(),
        "partypool_token=".to_owned(),
    ] {
        let (status, node, headers) = exchange(port, "GET", &path, &[("cookie", &bad)], "").await;
        assert_eq!((status, node.as_str()), (404, "replica"), "{bad}");
        let cleared = headers
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert!(
            cleared.starts_with("partypool_token=;") && cleared.contains("Max-Age=0"),
            "an unusable token is cleared: {bad} -> {cleared:?}"
        );
    }

    // Once the replica replays, the cookie holder reads there.
    tokio::task::block_in_place(|| c.resume_replay(1));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, node, _) = exchange(port, "GET", &path, &[("cookie", &cookie)], "").await;
        assert_eq!(status, 200);
        if node == "replica" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never read on the replica"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    pool.close().await;
}

/// Without the layer, the extractor says what is missing instead of panicking.
#[tokio::test]
async fn the_extractor_without_the_layer_is_a_clear_500() {
    let app: Router = Router::new().route("/notes/{id}", get(read));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (status, body, _) = exchange(port, "GET", "/notes/1", &[], "").await;
    assert_eq!(status, 500);
    assert!(body.contains("SessionLayer"), "{body}");
}
