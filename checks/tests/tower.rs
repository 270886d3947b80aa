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

/// Against a layer that signs its tokens: a genuine token carries the write; unsigned,
/// tampered, otherwise-signed and foreign tokens are ignored (a fresh session: the paused
/// replica, without the write) and their cookie is cleared; a replayed old genuine token
/// costs nothing (its position is old: replicas have it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_layer_ignores_forged_unsigned_and_foreign_tokens() {
    let c = support::PgCluster::start(1);
    let other = support::PgCluster::start(0);
    for cluster in [&c, &other] {
        cluster.psql(
            0,
            "CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL)",
        );
    }
    c.wait_replayed();
    let config = Config::default()
        .max_replica_lag(None)
        .consistency_scope(partypool::Scope::Session);
    let pool = PgReplicaPool::connect(&c.primary_url(), &[&c.url(1)], config.clone())
        .await
        .unwrap();
    let foreign_pool = PgReplicaPool::connect(&other.primary_url(), &[], config)
        .await
        .unwrap();
    const KEY: &str = "0123456789abcdef0123456789abcdef";
    let app = |pool: PgReplicaPool, key: &str| -> Router {
        Router::new()
            .route("/notes", post(create))
            .route("/notes/{id}", get(read))
            .layer(SessionLayer::new(pool).secret(key))
    };
    let (ours, theirs) = (app(pool.clone(), KEY), app(foreign_pool.clone(), KEY));
    let call = async |app: &Router, method: &str, uri: &str, token: Option<&str>| {
        use tower::ServiceExt;
        let mut req = http::Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("x-partypool-token", t);
        }
        let res = app
            .clone()
            .oneshot(req.body(axum::body::Body::from("hello")).unwrap())
            .await
            .unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned(), headers)
    };

    // A token from before the pause: replayed later, it is old news.
    let (_, _, h) = call(&ours, "POST", "/notes", None).await;
    let old = h["x-partypool-token"].to_str().unwrap().to_owned();
    assert!(
        old.rsplit_once('.').is_some_and(|(_, tag)| tag.len() == 32),
        "{old}"
    );
    tokio::task::block_in_place(|| {
        c.wait_replayed();
        c.pause_replay(1);
    });
    let (status, id, h) = call(&ours, "POST", "/notes", None).await;
    assert_eq!(status, 200, "{id}");
    let genuine = h["x-partypool-token"].to_str().unwrap().to_owned();
    let path = format!("/notes/{id}");

    let (status, node, _) = call(&ours, "GET", &path, Some(&genuine)).await;
    assert_eq!(
        (status, node.as_str()),
        (200, "primary"),
        "a genuine token carries the write"
    );

    let (text, tag) = genuine.rsplit_once('.').unwrap();
    let mut flipped = tag.to_owned().into_bytes();
    flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
    let other_key = {
        let (_, _, h) = call(
            &app(pool.clone(), "another key, sixteen bytes+"),
            "POST",
            "/notes",
            None,
        )
        .await;
        h["x-partypool-token"].to_str().unwrap().to_owned()
    };
    let (_, _, h) = call(&theirs, "POST", "/notes", None).await;
    let foreign = h["x-partypool-token"].to_str().unwrap().to_owned();
    for (what, token) in [
        ("unsigned", text.to_owned()),
        (
            "badly signed",
            format!("{text}.{}", String::from_utf8(flipped).unwrap()),
        ),
        ("signed with another key", other_key),
        ("of another cluster", foreign),
        ("garbage", "pp2-l-zz".to_owned()),
    ] {
        let (status, node, headers) = call(&ours, "GET", &path, Some(&token)).await;
        assert_eq!(
            (status, node.as_str()),
            (404, "replica"),
            "{what} token: ignored"
        );
        let cleared = headers
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert!(
            cleared.contains("Max-Age=0"),
            "{what}: the cookie is cleared ({cleared})"
        );
    }
    // Replayed: a genuine old token reads on the replica (it has that position).
    let (status, node, _) = call(&ours, "GET", "/notes/1", Some(&old)).await;
    assert_eq!(
        (status, node.as_str()),
        (200, "replica"),
        "a replayed old token costs nothing"
    );

    tokio::task::block_in_place(|| c.resume_replay(1));
    pool.close().await;
    foreign_pool.close().await;
}
