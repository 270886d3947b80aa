//! The classifier judged by MariaDB itself.
//!
//! Every statement of `tests/corpus/mysql/corpus.jsonl` (written by this project; schema in
//! `tests/corpus/mysql/schema.sql`) runs on a real read-only MariaDB replica as the
//! application user (which `read_only` restricts), on a fresh connection, inside
//! `START TRANSACTION … ROLLBACK` (`SELECT … INTO OUTFILE` is left out: the application user
//! lacks the FILE privilege, so the replica's answer would not be about read-only). A statement the replica refuses (1290 / 1792 / 1836) must
//! be routed to the primary: zero tolerated. Of the statements the replica runs, all that do
//! not change or depend on session state (or only mean something on the primary) should go
//! to replicas: at least 98%.
#![cfg(feature = "mysql")]

mod support;

use std::path::Path;

use futures_util::{StreamExt, stream};
use partypool::{Dialect, Router};
use sqlx::{Connection, MySqlConnection};
use support::corpus::Outcome;
use support::mariadb::MariaCluster;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The replica ran it.
    Accepted,
    /// The replica refused it because it is read-only, with this error number.
    Refused(u16),
}

fn errno(e: &sqlx::Error) -> Option<u16> {
    e.as_database_error()
        .and_then(|d| d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .map(|m| m.number())
}

async fn run_once(url: &str, sql: &str) -> Result<(), sqlx::Error> {
    let mut conn = MySqlConnection::connect(url).await?;
    sqlx::raw_sql("START TRANSACTION")
        .execute(&mut conn)
        .await?;
    let result = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .map(drop);
    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut conn).await;
    let _ = conn.close().await;
    result
}

/// Runs `sql` on the replica and says what it made of it.
async fn judge(url: &str, sql: &str) -> Result<Verdict, String> {
    match run_once(url, sql).await {
        Ok(()) => Ok(Verdict::Accepted),
        Err(e) => match errno(&e) {
            Some(n @ (1290 | 1792 | 1836)) => Ok(Verdict::Refused(n)),
            _ => Err(e.to_string()),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replica_agrees_with_the_router() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/mysql");
    let entries = support::corpus::load(&corpus.join("corpus.jsonl"));
    assert!(
        entries.len() >= 400,
        "the corpus has {} statements",
        entries.len()
    );

    let c = MariaCluster::start(1);
    c.sql_file(0, &corpus.join("schema.sql"));
    c.wait_replayed();
    let url = c.url(1);
    // The schema's own function that writes behind a SELECT, declared the way an application
    // declares it (`Config::write_functions`); undeclared, the replica refuses such a call
    // and it runs again on the primary (tests/mariadb.rs proves that).
    let router = Router::new(Dialect::MySql).write_function("bump_counter");

    let outcomes: Vec<Result<Outcome, String>> = stream::iter(&entries)
        .map(|e| judge(&url, &e.sql))
        .buffered(4)
        .map(|v| {
            v.map(|v| match v {
                Verdict::Accepted => Outcome::Accepted,
                Verdict::Refused(n) => Outcome::Refused(n.to_string()),
            })
        })
        .collect()
        .await;
    support::corpus::check(
        &router,
        &entries,
        &outcomes,
        &support::corpus::Demands {
            server: "replica",
            min_refused: 101,
            min_share: 0.98,
            strict_labels: true,
        },
    );
}
