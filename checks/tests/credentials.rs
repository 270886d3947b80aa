//! Rotating credentials on a real cluster: the application role's password changes under a
//! read/write loop, then a new user replaces it and the old one is revoked — no statement
//! fails, the server says who logged in, and no password ever reaches a log or an error.

mod support;

use std::io::Write;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use partypool::{Config, Credential, CredentialError, Error, PgReplicaPool};
use support::PgCluster;

const PW_ONE: &str = "pw-one-5b1e0c";
const PW_TWO: &str = "pw-two-93d7aa";
const PW_B: &str = "pw-bee-41f7e2";
const PW_WRONG: &str = "pw-wrong-0d5c3f";

/// Everything logged by this test binary, at every level and from every crate.
fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        #[derive(Clone)]
        struct Sink;
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                logs().lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(|| Sink)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        Mutex::new(Vec::new())
    })
}

fn assert_no_password_logged() {
    let text = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    assert!(!text.is_empty(), "the capture works");
    for pw in [PW_ONE, PW_TWO, PW_B, PW_WRONG] {
        assert!(!text.contains(pw), "a password was logged:\n{text}");
    }
}

/// A cluster whose `app` role logs in with a password, and a table it may use.
fn cluster() -> PgCluster {
    let c = PgCluster::start(1);
    c.psql(
        0,
        &format!(
            "CREATE ROLE app LOGIN PASSWORD '{PW_ONE}'; \
             CREATE TABLE r (id bigserial PRIMARY KEY, v int); \
             GRANT SELECT, INSERT ON r TO app; GRANT USAGE ON SEQUENCE r_id_seq TO app"
        ),
    );
    c.wait_replayed();
    c.require_passwords(&["app", "app_b"]);
    c
}

/// Node `i`'s URL with no password: the credentials give it.
fn url(c: &PgCluster, i: usize) -> String {
    let port = if i == 0 {
        c.primary().port
    } else {
        c.replica(i).port
    };
    format!("postgres://app@127.0.0.1:{port}/postgres")
}

/// A secret store the test rotates, and how often the pool asked it.
#[derive(Clone)]
struct Store {
    now: Arc<Mutex<Credential>>,
    asked: Arc<AtomicU32>,
}

impl Store {
    fn new(c: Credential) -> Self {
        Store {
            now: Arc::new(Mutex::new(c)),
            asked: Arc::new(AtomicU32::new(0)),
        }
    }

    fn set(&self, c: Credential) {
        *self.now.lock().unwrap() = c;
    }

    fn source(
        &self,
    ) -> impl Fn() -> std::future::Ready<Result<Credential, CredentialError>> + Send + Sync + 'static
    {
        let store = self.clone();
        move || {
            store.asked.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(store.now.lock().unwrap().clone()))
        }
    }
}

fn config() -> Config {
    Config::default()
        .health_check_interval(Duration::from_millis(100))
        // Connections churn, so every phase logs in again and again.
        .max_lifetime(Duration::from_millis(150))
        .acquire_timeout(Duration::from_secs(5))
}

/// Who the server says ran it, and whether it is a standby.
async fn whoami(pool: &PgReplicaPool) -> Result<(String, bool), sqlx::Error> {
    sqlx::query_as("SELECT current_user::text, pg_is_in_recovery()")
        .fetch_one(pool)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_under_load_fail_no_statement() {
    logs();
    let c = cluster();
    let store = Store::new(Credential::new(PW_ONE).valid_for(Duration::from_secs(1)));
    let pool = PgReplicaPool::builder()
        .primary(url(&c, 0))
        .replica(url(&c, 1))
        .credentials(store.source())
        .config(config())
        .wait_for_replicas(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    assert!(
        pool.status().node("replica-1").unwrap().healthy,
        "{}",
        pool.status()
    );

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (pool, stop, done, failures) =
            (pool.clone(), stop.clone(), done.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let outcome = if i % 4 == 0 {
                    sqlx::query("INSERT INTO r (v) VALUES ($1)")
                        .bind(t)
                        .execute(&pool)
                        .await
                        .map(drop)
                } else {
                    whoami(&pool).await.map(drop)
                };
                match outcome {
                    Ok(()) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;

    // One user, its password changed: the store first, then the server (the old password
    // stops working at once). Logins refused until the pool asks again renew it at once.
    store.set(Credential::new(PW_TWO).valid_for(Duration::from_secs(1)));
    tokio::task::block_in_place(|| c.psql(0, &format!("ALTER ROLE app PASSWORD '{PW_TWO}'")));
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // A new user replaces it (as a Vault lease does), then the old one is revoked.
    tokio::task::block_in_place(|| {
        c.psql(
            0,
            &format!("CREATE ROLE app_b LOGIN PASSWORD '{PW_B}' IN ROLE app"),
        )
    });
    c.wait_replayed();
    store.set(
        Credential::new(PW_B)
            .user("app_b")
            .valid_for(Duration::from_secs(1)),
    );
    // Every node takes it at the next refresh (within 750 ms)…
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // … so revoking the old user now costs nothing.
    tokio::task::block_in_place(|| c.psql(0, "ALTER ROLE app NOLOGIN PASSWORD NULL"));
    tokio::time::sleep(Duration::from_millis(1500)).await;

    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    let done = done.load(Ordering::Relaxed);
    eprintln!(
        "{done} statements, {} failed; the store was asked {} times",
        failures.len(),
        store.asked.load(Ordering::SeqCst)
    );
    assert!(done > 500, "the loop ran: {done}");
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );

    // The server says who answers now: the new user, on the replica and on the primary.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..40 {
        seen.insert(whoami(&pool).await.unwrap());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let on_primary: (String, bool) = sqlx::query_as(
        "INSERT INTO r (v) VALUES (0) RETURNING current_user::text, pg_is_in_recovery()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(on_primary, ("app_b".to_owned(), false));
    assert!(seen.contains(&("app_b".to_owned(), true)), "{seen:?}");
    assert!(seen.iter().all(|(user, _)| user == "app_b"), "{seen:?}");
    // No session of the revoked user is left on either node (connections were recycled,
    // the probes' kept connection too).
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in [0, 1] {
        let left = tokio::task::block_in_place(|| {
            c.psql(
                i,
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'",
            )
        });
        assert_eq!(left, "0", "sessions of the revoked user on node {i}");
    }
    let shown = format!("{pool:?} {}", pool.status());
    for pw in [PW_ONE, PW_TWO, PW_B] {
        assert!(!shown.contains(pw), "{shown}");
    }
    pool.close().await;
    assert_no_password_logged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_renews_the_credential_at_once() {
    logs();
    let c = cluster();
    // Valid for an hour: nothing but the refusal makes the pool ask again.
    let store = Store::new(Credential::new(PW_ONE).valid_for(Duration::from_secs(3600)));
    let pool = PgReplicaPool::builder()
        .primary(url(&c, 0))
        .credentials(store.source())
        .config(Config::default().acquire_timeout(Duration::from_secs(5)))
        .connect()
        .await
        .unwrap();
    sqlx::query("INSERT INTO r (v) VALUES (1)")
        .execute(&pool)
        .await
        .unwrap();
    let asked = store.asked.load(Ordering::SeqCst);
    assert_eq!(asked, 1);
    store.set(Credential::new(PW_TWO).valid_for(Duration::from_secs(3600)));
    tokio::task::block_in_place(|| {
        c.psql(0, &format!("ALTER ROLE app PASSWORD '{PW_TWO}'"));
        // Its open connections are gone: the next statement must log in.
        c.psql(
            0,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app'",
        );
    });
    let started = Instant::now();
    let (user, standby): (String, bool) = sqlx::query_as(
        "INSERT INTO r (v) VALUES (2) RETURNING current_user::text, pg_is_in_recovery()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((user.as_str(), standby), ("app", false));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        store.asked.load(Ordering::SeqCst),
        asked + 1,
        "asked once more"
    );
    pool.close().await;
    assert_no_password_logged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_say_why_and_never_show_a_password() {
    logs();
    let c = cluster();
    // The source cannot answer at connect.
    let e = PgReplicaPool::builder()
        .primary(url(&c, 0))
        .credentials(|| async { Err::<Credential, _>("vault is sealed") })
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Credentials(_)), "{e:?}");
    assert_eq!(e.to_string(), "no credentials: vault is sealed");

    // A wrong password: the primary refuses it, and the error does not show it.
    let e = PgReplicaPool::builder()
        .primary(url(&c, 0))
        .credentials(|| async { Ok::<_, CredentialError>(Credential::new(PW_WRONG)) })
        .config(Config::default().acquire_timeout(Duration::from_secs(3)))
        .connect()
        .await
        .unwrap_err();
    let text = format!("{e} {e:?}");
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(!text.contains(PW_WRONG), "{text}");

    // The source fails later, saying the password it handed out: kept, scrubbed in the log.
    let calls = Arc::new(AtomicU32::new(0));
    let source = {
        let calls = calls.clone();
        move || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0 => Ok(Credential::new(PW_ONE).valid_for(Duration::from_millis(400))),
                    _ => Err::<Credential, CredentialError>(
                        format!("lease for {PW_ONE} cannot be renewed").into(),
                    ),
                }
            }
        }
    };
    let pool = PgReplicaPool::builder()
        .primary(url(&c, 0))
        .credentials(source)
        .config(Config::default().max_lifetime(Duration::from_millis(100)))
        .connect()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(calls.load(Ordering::SeqCst) >= 2, "asked again");
    // New connections keep the last good credential.
    let (user, _) = whoami(&pool).await.unwrap();
    assert_eq!(user, "app");
    pool.close().await;
    let text = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    assert!(text.contains("lease for *** cannot be renewed"), "{text}");
    assert_no_password_logged();

    // A lazily built pool: its first probes wait for the first credential (they would
    // otherwise log in without a password and mark the primary down).
    let pool = PgReplicaPool::builder()
        .primary(url(&c, 0))
        .credentials(|| async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok::<_, CredentialError>(Credential::new(PW_ONE))
        })
        .config(Config::default().health_check_interval(Duration::from_secs(30)))
        .connect_lazy()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let status = pool.status();
    let primary = status.node("primary").unwrap();
    assert!(primary.healthy && primary.last_error.is_none(), "{status}");
    pool.close().await;

    // SQLite has no passwords: a configuration error, not a silent no-op.
    let dir = tempfile::tempdir().unwrap();
    let e = partypool::SqliteReplicaPool::builder()
        .primary(format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("db.sqlite").display()
        ))
        .credentials(|| async { Ok::<_, CredentialError>(Credential::new("x")) })
        .connect()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no passwords"), "{e}");
}
