//! Correct by default: applications written the ordinary way — repository functions that take
//! `&pool`, handlers with `State<Pool>`, transactions passed by `&mut Transaction` — read
//! their writes through a replica that applies every commit 200 ms late, with no session code.
//! The same flows with consistency off fail, which proves the tests can fail.
#![cfg(feature = "axum")]

mod support;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use partypool::{Config, PgReplicaPool, Scope};
use sqlx::{Postgres, Transaction};
use support::PgCluster;
use tower::ServiceExt;

/// The application's repository: plain sqlx against `&Pool`, as written for a `PgPool`.
mod repo {
    use super::*;

    pub type Pool = PgReplicaPool;

    pub async fn create_user(pool: &Pool, name: &str) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("INSERT INTO users (name) VALUES ($1) RETURNING id")
            .bind(name)
            .fetch_one(pool)
            .await
    }

    pub async fn create_user_in(
        tx: &mut Transaction<'_, Postgres>,
        name: &str,
    ) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("INSERT INTO users (name) VALUES ($1) RETURNING id")
            .bind(name)
            .fetch_one(&mut **tx)
            .await
    }

    pub async fn find_user(pool: &Pool, name: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar("SELECT id FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await
    }

    pub async fn store_token(pool: &Pool, token: &str, user: i64) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO tokens (token, user_id) VALUES ($1, $2)")
            .bind(token)
            .bind(user)
            .execute(pool)
            .await
            .map(drop)
    }

    pub async fn token_user(pool: &Pool, token: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar("SELECT user_id FROM tokens WHERE token = $1")
            .bind(token)
            .fetch_optional(pool)
            .await
    }

    /// An idempotent submission: the first request with a key does the work and saves the
    /// response; a second one waits on the first's row lock, inserts nothing, and returns the
    /// saved response.
    pub async fn submit(pool: &Pool, key: &str) -> Result<Option<String>, sqlx::Error> {
        let mut tx = pool.begin().await?;
        let inserted: Option<String> = sqlx::query_scalar(
            "INSERT INTO submissions (key) VALUES ($1) ON CONFLICT DO NOTHING RETURNING key",
        )
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        if inserted.is_some() {
            tokio::time::sleep(Duration::from_millis(100)).await; // the work
            sqlx::query("UPDATE submissions SET response = 'done ' || key WHERE key = $1")
                .bind(key)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(Some(format!("done {key}")));
        }
        tx.commit().await?;
        sqlx::query_scalar::<_, Option<String>>("SELECT response FROM submissions WHERE key = $1")
            .bind(key)
            .fetch_optional(pool)
            .await
            .map(Option::flatten)
    }
}

/// The axum application: handlers take `State<Pool>`, as they did with a `PgPool`.
fn axum_app(pool: repo::Pool) -> Router {
    async fn signup(State(pool): State<repo::Pool>, Path(name): Path<String>) -> StatusCode {
        match repo::create_user(&pool, &name).await {
            Ok(_) => StatusCode::CREATED,
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
    async fn signup_in_tx(State(pool): State<repo::Pool>, Path(name): Path<String>) -> StatusCode {
        let Ok(mut tx) = pool.begin().await else {
            return StatusCode::INTERNAL_SERVER_ERROR;
        };
        if repo::create_user_in(&mut tx, &name).await.is_err() || tx.commit().await.is_err() {
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        StatusCode::CREATED
    }
    async fn login(State(pool): State<repo::Pool>, Path(name): Path<String>) -> StatusCode {
        match repo::find_user(&pool, &name).await {
            Ok(Some(_)) => StatusCode::OK,
            Ok(None) => StatusCode::UNAUTHORIZED,
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
    async fn issue(State(pool): State<repo::Pool>, Path(name): Path<String>) -> StatusCode {
        let Ok(user) = repo::create_user(&pool, &name).await else {
            return StatusCode::INTERNAL_SERVER_ERROR;
        };
        match repo::store_token(&pool, &format!("t-{name}"), user).await {
            Ok(()) => StatusCode::CREATED,
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
    async fn confirm(State(pool): State<repo::Pool>, Path(token): Path<String>) -> StatusCode {
        match repo::token_user(&pool, &token).await {
            Ok(Some(_)) => StatusCode::OK,
            Ok(None) => StatusCode::UNAUTHORIZED,
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
    async fn submit(State(pool): State<repo::Pool>, Path(key): Path<String>) -> StatusCode {
        match repo::submit(&pool, &key).await {
            Ok(Some(_)) => StatusCode::OK,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
    Router::new()
        .route("/signup/{name}", post(signup))
        .route("/signup-tx/{name}", post(signup_in_tx))
        .route("/login/{name}", get(login))
        .route("/tokens/{name}", post(issue))
        .route("/confirm/{token}", post(confirm))
        .route("/submit/{key}", post(submit))
        .with_state(pool)
}

async fn call(app: &Router, method: &str, uri: String) -> StatusCode {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(req).await.unwrap().status()
}

/// A primary and one replica that applies every commit 200 ms late.
fn delayed_cluster() -> PgCluster {
    let c = PgCluster::start(1);
    c.psql(
        0,
        "CREATE TABLE users (id bigserial PRIMARY KEY, name text UNIQUE NOT NULL);
         CREATE TABLE tokens (token text PRIMARY KEY, user_id bigint NOT NULL);
         CREATE TABLE submissions (key text PRIMARY KEY, response text);",
    );
    c.wait_replayed();
    c.apply_delay(1, "200ms");
    c
}

async fn pool(c: &PgCluster, scope: Scope) -> PgReplicaPool {
    PgReplicaPool::builder()
        .primary(c.primary_url())
        .replica(c.url(1))
        .config(
            Config::default()
                .consistency_scope(scope)
                .health_check_interval(Duration::from_millis(200))
                // The replica is 200 ms behind on purpose: keep it in the rotation.
                .max_replica_lag(None),
        )
        .connect()
        .await
        .unwrap()
}

/// Every flow once, under names made unique by `run`; the number that went wrong.
async fn flows(
    call: impl AsyncFn(&'static str, String) -> StatusCode,
    harness: &PgReplicaPool,
    run: &str,
) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut expect = |what: &str, got: StatusCode, want: StatusCode| {
        if got != want {
            wrong.push(format!("{what}: {got}"));
        }
    };
    // Create, then read it back on the next request.
    let name = format!("ann-{run}");
    expect(
        "signup",
        call("POST", format!("/signup/{name}")).await,
        StatusCode::CREATED,
    );
    expect(
        "login after signup",
        call("GET", format!("/login/{name}")).await,
        StatusCode::OK,
    );
    // The same through a transaction the repository takes as `&mut Transaction`.
    let name = format!("bob-{run}");
    expect(
        "signup in tx",
        call("POST", format!("/signup-tx/{name}")).await,
        StatusCode::CREATED,
    );
    expect(
        "login after tx",
        call("GET", format!("/login/{name}")).await,
        StatusCode::OK,
    );
    // A token stored by one request, confirmed by the next.
    let name = format!("cy-{run}");
    expect(
        "issue token",
        call("POST", format!("/tokens/{name}")).await,
        StatusCode::CREATED,
    );
    expect(
        "confirm",
        call("POST", format!("/confirm/t-{name}")).await,
        StatusCode::OK,
    );
    // Two identical submissions at once: the second reads the first's saved response.
    let uri = format!("/submit/k-{run}");
    let (a, b) = tokio::join!(call("POST", uri.clone()), async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        call("POST", uri.clone()).await
    });
    expect("first submission", a, StatusCode::OK);
    expect("concurrent submission", b, StatusCode::OK);
    // The test harness writes through its own pool; the application reads it.
    let name = format!("dee-{run}");
    repo::create_user(harness, &name).await.unwrap();
    expect(
        "login of a harness user",
        call("GET", format!("/login/{name}")).await,
        StatusCode::OK,
    );
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordinary_axum_app_reads_its_writes_through_a_late_replica() {
    let c = delayed_cluster();
    let harness = pool(&c, Scope::Process).await;

    // Consistency off: the same application is wrong (the proof that these checks can fail).
    let off = axum_app(pool(&c, Scope::Off).await);
    let mut failures = 0;
    for run in 0..3 {
        failures += flows(
            async |m, u| call(&off, m, u).await,
            &harness,
            &format!("off{run}"),
        )
        .await
        .len();
    }
    assert!(
        failures >= 6,
        "with consistency off, a replica 200 ms behind must break these flows (only {failures} failed)"
    );

    // The default: every flow right, every time.
    let app = axum_app(pool(&c, Scope::Process).await);
    for run in 0..5 {
        let wrong = flows(
            async |m, u| call(&app, m, u).await,
            &harness,
            &format!("on{run}"),
        )
        .await;
        assert!(wrong.is_empty(), "run {run}: {wrong:?}");
    }
    println!("consistency off: {failures} of 27 checks failed; the default: none");

    // Reads pay nothing once no write is newer than the replica: they stay on it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let pool = pool(&c, Scope::Process).await;
    for _ in 0..20 {
        let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(
            standby,
            "no write is newer than the replica: reads go there"
        );
    }
}

/// The same application on actix-web: `web::Data<Pool>` handlers over the same repository.
#[cfg(feature = "actix-web")]
mod actix_app {
    use super::*;
    use actix_web::{HttpResponse, web};

    fn status(s: StatusCode) -> HttpResponse {
        HttpResponse::build(actix_web::http::StatusCode::from_u16(s.as_u16()).unwrap()).finish()
    }

    async fn signup(pool: web::Data<repo::Pool>, name: web::Path<String>) -> HttpResponse {
        status(match repo::create_user(&pool, &name).await {
            Ok(_) => StatusCode::CREATED,
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        })
    }
    async fn signup_in_tx(pool: web::Data<repo::Pool>, name: web::Path<String>) -> HttpResponse {
        let Ok(mut tx) = pool.begin().await else {
            return status(StatusCode::INTERNAL_SERVER_ERROR);
        };
        if repo::create_user_in(&mut tx, &name).await.is_err() || tx.commit().await.is_err() {
            return status(StatusCode::INTERNAL_SERVER_ERROR);
        }
        status(StatusCode::CREATED)
    }
    async fn login(pool: web::Data<repo::Pool>, name: web::Path<String>) -> HttpResponse {
        status(match repo::find_user(&pool, &name).await {
            Ok(Some(_)) => StatusCode::OK,
            Ok(None) => StatusCode::UNAUTHORIZED,
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        })
    }
    async fn issue(pool: web::Data<repo::Pool>, name: web::Path<String>) -> HttpResponse {
        let Ok(user) = repo::create_user(&pool, &name).await else {
            return status(StatusCode::INTERNAL_SERVER_ERROR);
        };
        status(
            match repo::store_token(&pool, &format!("t-{name}"), user).await {
                Ok(()) => StatusCode::CREATED,
                Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        )
    }
    async fn confirm(pool: web::Data<repo::Pool>, token: web::Path<String>) -> HttpResponse {
        status(match repo::token_user(&pool, &token).await {
            Ok(Some(_)) => StatusCode::OK,
            Ok(None) => StatusCode::UNAUTHORIZED,
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        })
    }
    async fn submit(pool: web::Data<repo::Pool>, key: web::Path<String>) -> HttpResponse {
        status(match repo::submit(&pool, &key).await {
            Ok(Some(_)) => StatusCode::OK,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        })
    }

    pub fn configure(cfg: &mut web::ServiceConfig) {
        cfg.route("/signup/{name}", web::post().to(signup))
            .route("/signup-tx/{name}", web::post().to(signup_in_tx))
            .route("/login/{name}", web::get().to(login))
            .route("/tokens/{name}", web::post().to(issue))
            .route("/confirm/{token}", web::post().to(confirm))
            .route("/submit/{key}", web::post().to(submit));
    }
}

#[cfg(feature = "actix-web")]
#[actix_web::test]
async fn an_ordinary_actix_app_reads_its_writes_through_a_late_replica() {
    use actix_web::{App, test, web};
    use partypool::actix::SessionMiddleware;

    let c = delayed_cluster();
    let harness = pool(&c, Scope::Process).await;
    let request = |m: &str, u: String| {
        let r = if m == "GET" {
            test::TestRequest::get()
        } else {
            test::TestRequest::post()
        };
        r.uri(&u).to_request()
    };

    let off_pool = pool(&c, Scope::Off).await;
    let off = test::init_service(
        App::new()
            .app_data(web::Data::new(off_pool.clone()))
            .configure(actix_app::configure),
    )
    .await;
    let mut failures = 0;
    for run in 0..3 {
        let caller = async |m: &'static str, u: String| {
            let res = test::call_service(&off, request(m, u)).await;
            StatusCode::from_u16(res.status().as_u16()).unwrap()
        };
        failures += flows(caller, &harness, &format!("xoff{run}")).await.len();
    }
    assert!(
        failures >= 6,
        "with consistency off the flows must break ({failures} failed)"
    );

    // The default, with the middleware as an application that also serves other processes
    // would install it.
    let on_pool = pool(&c, Scope::Process).await;
    let on = test::init_service(
        App::new()
            .app_data(web::Data::new(on_pool.clone()))
            .wrap(
                SessionMiddleware::new(on_pool.clone()).secret("a secret of 32 bytes, not really"),
            )
            .configure(actix_app::configure),
    )
    .await;
    for run in 0..5 {
        let caller = async |m: &'static str, u: String| {
            let res = test::call_service(&on, request(m, u)).await;
            StatusCode::from_u16(res.status().as_u16()).unwrap()
        };
        let wrong = flows(caller, &harness, &format!("xon{run}")).await;
        assert!(wrong.is_empty(), "run {run}: {wrong:?}");
    }

    // Another process (a pool that shares nothing with this one: session scope only) reads
    // the writes of a request of this one through the token the response carried.
    let other_pool = pool(&c, Scope::Session).await;
    let other = test::init_service(
        App::new()
            .app_data(web::Data::new(other_pool.clone()))
            .wrap(
                SessionMiddleware::new(other_pool.clone())
                    .secret("a secret of 32 bytes, not really"),
            )
            .configure(actix_app::configure),
    )
    .await;
    let res = test::call_service(&on, request("POST", "/signup/eve".into())).await;
    assert_eq!(res.status().as_u16(), 201);
    let token = res
        .headers()
        .get("x-partypool-token")
        .expect("a request that wrote hands out a token")
        .to_str()
        .unwrap()
        .to_owned();
    let with_token = test::TestRequest::get()
        .uri("/login/eve")
        .insert_header(("x-partypool-token", token.clone()))
        .to_request();
    assert_eq!(
        test::call_service(&other, with_token)
            .await
            .status()
            .as_u16(),
        200
    );
    // The same without the token, or with a forged one, reads the late replica: not there yet.
    let res = test::call_service(&on, request("POST", "/signup/fay".into())).await;
    assert_eq!(res.status().as_u16(), 201);
    let forged = test::TestRequest::get()
        .uri("/login/fay")
        .insert_header(("x-partypool-token", token.replace('.', ".0")))
        .to_request();
    assert_eq!(
        test::call_service(&other, forged).await.status().as_u16(),
        401
    );
}

/// Reads never go back in time in the process, also across replicas: one replica is paused
/// behind a write made outside the process (which the process cannot know of); once a read
/// has seen that write on the other replica, no later read misses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_never_go_back_in_time_across_replicas() {
    let c = PgCluster::start(2);
    c.psql(0, "CREATE TABLE events (id bigint PRIMARY KEY)");
    c.wait_replayed();
    let pool = PgReplicaPool::builder()
        .primary(c.primary_url())
        .replica(c.url(1))
        .replica(c.url(2))
        .config(
            Config::default()
                .health_check_interval(Duration::from_millis(100))
                .max_replica_lag(None)
                .causal_wait(Duration::from_millis(5)),
        )
        .connect()
        .await
        .unwrap();
    tokio::task::block_in_place(|| {
        c.pause_replay(2);
        c.psql(0, "INSERT INTO events VALUES (1)");
        c.wait_replayed_on(1);
    });
    // Let the probes learn replica 1's new position.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut seen = false;
    let mut on = std::collections::BTreeSet::new();
    for i in 0..40 {
        let (n, port): (i64, i32) =
            sqlx::query_as("SELECT (SELECT count(*) FROM events), inet_server_port()")
                .fetch_one(&pool)
                .await
                .unwrap();
        on.insert(port);
        if n == 1 {
            seen = true;
        } else {
            assert!(!seen, "read {i} went back in time (on port {port})");
        }
    }
    assert!(seen, "the caught-up replica served reads");
    tokio::task::block_in_place(|| c.resume_replay(2));
    pool.close().await;
}

/// An application that builds its pool synchronously (`connect_lazy`, from per-node connect
/// options) is correct from its first statement: a write made before the first probe
/// answered is seen by the first read after the replica joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lazily_built_pool_from_connect_options_reads_its_writes() {
    use sqlx::postgres::PgConnectOptions;

    let c = delayed_cluster();
    // The application's own synchronous `get_connection_pool(&settings)`.
    fn get_connection_pool(primary: &str, replica: &str) -> PgReplicaPool {
        let options = |url: &str| {
            url.parse::<PgConnectOptions>()
                .unwrap()
                .application_name("by-default-app")
        };
        PgReplicaPool::builder()
            .primary_with(options(primary))
            .replica_with(options(replica))
            .config(Config::default().max_replica_lag(None))
            .connect_lazy()
            .expect("valid settings")
    }
    let pool = get_connection_pool(&c.primary_url(), &c.url(1));
    // At once, before any probe has answered: the write goes to the primary.
    repo::create_user(&pool, "early").await.unwrap();
    // Wait until the replica is in the rotation (reads go there when nothing is newer).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !pool.status().node("replica-1").is_some_and(|n| n.healthy) {
        assert!(std::time::Instant::now() < deadline, "{}", pool.status());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        repo::find_user(&pool, "early").await.unwrap().is_some(),
        "the write from before the first probe is seen"
    );
    // Every node got the options it was given.
    for target in [pool.on_primary(), pool.on_replica()] {
        let name: String = sqlx::query_scalar("SELECT current_setting('application_name')")
            .fetch_one(target)
            .await
            .unwrap();
        assert_eq!(name, "by-default-app");
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(standby, "reads use the replica once it has everything");
    // Outside a runtime, a clear error instead of a panic.
    let err = std::thread::spawn({
        let url = c.primary_url();
        move || {
            PgReplicaPool::builder()
                .primary(url)
                .connect_lazy()
                .unwrap_err()
        }
    })
    .join()
    .unwrap();
    assert!(err.to_string().contains("Tokio runtime"), "{err}");
    pool.close().await;
}
