//! OpenTelemetry's database conventions, through the real bridges: `tracing` spans exported
//! by `tracing-opentelemetry` into the SDK's in-memory exporter, and the `metrics` facade
//! into an in-process recorder. The attributes are there, carry the right values for the
//! node that answered (the server says which), and never a password or a statement's values.

mod support;

use std::collections::HashMap;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use opentelemetry::trace::{SpanKind, Status, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use partypool::{Config, PgReplicaPool};
use support::{PgCluster, SECRET};
use tracing_subscriber::layer::SubscriberExt;

fn attributes(span: &SpanData) -> HashMap<String, String> {
    span.attributes
        .iter()
        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_follow_the_database_conventions() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let c = PgCluster::start(1);
    c.psql(
        0,
        "CREATE TABLE t (id int); \
         CREATE FUNCTION bump() RETURNS int LANGUAGE sql AS 'INSERT INTO t VALUES (7) RETURNING id'",
    );
    c.wait_replayed();
    let (primary_port, replica_port) = (c.primary().port, c.replica(1).port);
    assert!(c.url(1).contains(SECRET), "the URLs carry a password");
    let pool = PgReplicaPool::connect(
        &c.primary_url(),
        &[&c.url(1)],
        Config::default()
            .health_check_interval(std::time::Duration::from_millis(100))
            .consistency_scope(partypool::Scope::Session),
    )
    .await
    .unwrap();
    let port: i32 = sqlx::query_scalar("SELECT inet_server_port() /* 'secret-literal' */")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(port, i32::from(replica_port));
    sqlx::query("INSERT INTO t VALUES ($1)")
        .bind(42)
        .execute(&pool)
        .await
        .unwrap();
    let e = sqlx::query("SELECT 1 / 0")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("division by zero"), "{e}");
    // A write the router takes for a read: refused by the replica, run on the primary.
    let bumped: i32 = sqlx::query_scalar("SELECT bump()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(bumped, 7);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    pool.close().await;
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let queries: Vec<&SpanData> = spans
        .iter()
        .filter(|s| attributes(s).contains_key("db.system.name"))
        .collect();
    // partypool's attributes (sqlx's own `sqlx::query` log events, which carry the text
    // when its statement logging is on, are the application's to configure).
    for s in &spans {
        let text = format!("{} {:?} {:?}", s.name, s.attributes, s.status);
        assert!(!text.contains(SECRET), "a password in a span: {text}");
        assert!(
            !text.contains("secret-literal") && !text.contains("inet_server_port"),
            "a statement's text in a span: {text}"
        );
    }
    let find = |op: &str| {
        queries
            .iter()
            .find(|s| s.name == op)
            .map(|s| (*s, attributes(s)))
            .unwrap_or_else(|| {
                panic!(
                    "no {op} span in {:#?}",
                    queries.iter().map(|s| &s.name).collect::<Vec<_>>()
                )
            })
    };

    // The read: on the replica, as the server said.
    let (read, a) = find("SELECT");
    assert_eq!(read.span_kind, SpanKind::Client);
    assert_eq!(a["db.system.name"], "postgresql");
    assert_eq!(a["db.operation.name"], "SELECT");
    assert_eq!(a["db.namespace"], "postgres");
    assert_eq!(a["server.address"], "127.0.0.1");
    assert_eq!(a["server.port"], replica_port.to_string());
    assert_eq!(a["partypool.node.name"], "replica-1");
    assert_eq!(a["partypool.node.role"], "replica");
    assert_eq!(a["partypool.route.target"], "replica");
    assert_eq!(a["partypool.read_choice"], "any_replica");
    assert!(a.contains_key("partypool.route.reason"), "{a:?}");
    assert_eq!(read.status, Status::Unset);

    // The write: on the primary.
    let (_, a) = find("INSERT");
    assert_eq!(a["server.port"], primary_port.to_string());
    assert_eq!(a["partypool.node.role"], "writer");
    assert_eq!(a["partypool.read_choice"], "write");
    assert_eq!(a["partypool.route.target"], "primary");

    // The failure: its SQLSTATE.
    let failed = queries
        .iter()
        .find(|s| attributes(s).contains_key("error.type"))
        .expect("a failed span");
    let a = attributes(failed);
    assert!(
        matches!(failed.status, Status::Error { .. }),
        "{:?}",
        failed.status
    );
    assert_eq!(a["error.type"], "22012");
    assert_eq!(a["db.response.status_code"], "22012");

    // The misroute: refused on the replica, run on the primary.
    let misrouted = queries
        .iter()
        .find(|s| {
            attributes(s)
                .get("partypool.misroute")
                .is_some_and(|v| v == "true")
        })
        .expect("a misrouted span");
    let a = attributes(misrouted);
    assert_eq!(a["server.port"], primary_port.to_string(), "{a:?}");

    // Metrics: OpenTelemetry's client metrics per node, no password in a label.
    let snapshot = snapshotter.snapshot().into_vec();
    let mut names = std::collections::BTreeSet::new();
    let mut operation_ports = std::collections::BTreeSet::new();
    let mut states = std::collections::BTreeSet::new();
    for (key, _, _, value) in &snapshot {
        let key = key.key();
        names.insert(key.name().to_owned());
        for label in key.labels() {
            assert!(!label.value().contains(SECRET), "{key:?}");
        }
        let label = |k: &str| {
            key.labels()
                .find(|l| l.key() == k)
                .map(|l| l.value().to_owned())
        };
        if key.name() == "db.client.operation.duration"
            && matches!(value, DebugValue::Histogram(v) if !v.is_empty())
        {
            assert_eq!(label("db.system.name").as_deref(), Some("postgresql"));
            assert_eq!(label("db.namespace").as_deref(), Some("postgres"));
            operation_ports.insert(label("server.port").unwrap());
        }
        if key.name() == "db.client.connection.count" {
            assert!(label("db.client.connection.pool.name").is_some(), "{key:?}");
            states.insert(label("db.client.connection.state").unwrap());
        }
    }
    for name in [
        "db.client.operation.duration",
        "db.client.connection.count",
        "db.client.connection.max",
        "db.client.connection.idle.min",
        "db.client.connection.pending_requests",
        "db.client.connection.timeouts",
        "partypool_queries_total",
    ] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    assert_eq!(
        operation_ports,
        [primary_port.to_string(), replica_port.to_string()].into(),
        "operations timed on both nodes"
    );
    assert_eq!(states, ["idle".to_owned(), "used".to_owned()].into());
}

/// With partypool's spans filtered out, nothing partypool records lands in the application's
/// span that is current around the call (which may declare the same attribute names).
#[tokio::test]
async fn nothing_is_recorded_into_the_application_span() {
    use tracing::Instrument;
    use tracing_subscriber::filter::{LevelFilter, Targets};

    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("app")))
        .with(
            Targets::new()
                .with_target("app", LevelFilter::TRACE)
                .with_target("partypool", LevelFilter::INFO),
        );
    let _default = tracing::subscriber::set_default(subscriber);
    let dir = tempfile::tempdir().unwrap();
    let pool = partypool::SqliteReplicaPool::builder()
        .primary(format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("t.db").display()
        ))
        .connect()
        .await
        .unwrap();
    let request = tracing::info_span!(
        target: "app",
        "request",
        server.address = tracing::field::Empty,
        error.type = tracing::field::Empty,
        partypool.node.name = tracing::field::Empty,
    );
    let failed = sqlx::query("SELECT * FROM no_such_table")
        .execute(&pool)
        .instrument(request)
        .await;
    assert!(failed.is_err());
    pool.close().await;
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let request = spans
        .iter()
        .find(|s| s.name == "request")
        .expect("the request span");
    let a = attributes(request);
    for key in ["server.address", "error.type", "partypool.node.name"] {
        assert!(
            !a.contains_key(key),
            "{key} written into the application's span: {a:?}"
        );
    }
    assert_eq!(request.status, Status::Unset);
}
