//! The classifier judged by the database itself.
//!
//! Every statement of `tests/corpus/corpus.jsonl` (written by this project; schema in
//! `tests/corpus/schema.sql`) runs on a real PostgreSQL hot standby, on a fresh connection,
//! inside `BEGIN … ROLLBACK` (alone when it cannot run in a transaction block). A statement
//! the standby refuses must be routed to the primary: zero tolerated. Of the statements the
//! standby runs, all that do not change session state (or only mean something on the
//! primary) should go to replicas: at least 98%.

mod support;

use std::path::Path;

use futures_util::{StreamExt, TryStreamExt, stream};
use partypool::{Dialect, Router};
use sqlx::{Connection, PgConnection};
use support::corpus::Outcome;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The standby ran it.
    Accepted,
    /// The standby refused it because it is a standby, with this SQLSTATE.
    Refused(&'static str),
    /// Not run: it would write a file on the server's disk (a standby allows that).
    ServerFile,
}

/// How a standby refuses work: SQLSTATE 25006, or an error that says it is because of
/// recovery / hot standby (0A000 serializable, 55000, XX000 "cannot assign OIDs…").
fn is_refusal(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| {
        d.code().as_deref() == Some("25006")
            || d.message().contains("recovery")
            || d.message().contains("hot standby")
    })
}

fn first_word(sql: &str) -> String {
    sql.trim_start()
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

async fn run_once(url: &str, sql: &str, in_transaction: bool) -> Result<(), sqlx::Error> {
    let mut conn = PgConnection::connect(url).await?;
    if in_transaction {
        sqlx::raw_sql("BEGIN").execute(&mut conn).await?;
    }
    let upper = sql.to_ascii_uppercase();
    let result = if first_word(sql) == "copy" && upper.contains("STDOUT") {
        match conn.copy_out_raw(sql).await {
            Ok(s) => s.try_collect::<Vec<_>>().await.map(drop),
            Err(e) => Err(e),
        }
    } else if first_word(sql) == "copy" && upper.contains("STDIN") {
        match conn.copy_in_raw(sql).await {
            Ok(copy) => copy.abort("oracle run: no data").await,
            Err(e) => Err(e),
        }
    } else {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .map(drop)
    };
    let _ = conn.close().await;
    result
}

/// Runs `sql` on the standby and says what it made of it.
async fn judge(url: &str, sql: &str) -> Result<Verdict, String> {
    let upper = sql.to_ascii_uppercase();
    if first_word(sql) == "copy" && !upper.contains("STDOUT") && !upper.contains("STDIN") {
        return Ok(Verdict::ServerFile);
    }
    let mut outcome = run_once(url, sql, true).await;
    if let Err(e) = &outcome
        && e.as_database_error().and_then(|d| d.code()).as_deref() == Some("25001")
    {
        // Cannot run inside a transaction block: run it alone.
        outcome = run_once(url, sql, false).await;
    }
    match outcome {
        Ok(()) => Ok(Verdict::Accepted),
        // COPY FROM STDIN aborted by us: the standby had accepted it.
        Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("57014") => {
            Ok(Verdict::Accepted)
        }
        Err(e) if is_refusal(&e) => {
            let code = e
                .as_database_error()
                .and_then(|d| d.code())
                .unwrap_or_default();
            Ok(Verdict::Refused(match code.as_ref() {
                "25006" => "25006",
                "0A000" => "0A000",
                "55000" => "55000",
                "XX000" => "XX000",
                _ => "other",
            }))
        }
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_agrees_with_the_router() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let entries = support::corpus::load(&corpus.join("corpus.jsonl"));
    assert!(
        entries.len() >= 600,
        "the corpus has {} statements",
        entries.len()
    );

    let c = support::PgCluster::start(1);
    c.psql_file(0, &corpus.join("schema.sql"));
    c.wait_replayed();
    let url = c.url(1);
    // The schema's own function that writes behind a SELECT, declared the way an application
    // declares it (`Config::write_functions`): no classifier can see inside a user function.
    // Undeclared, such a call is refused by the replica and re-run on the primary
    // (tests/routing.rs proves that on a real standby).
    let router = Router::new(Dialect::Postgres).write_function("bump_counter");

    let outcomes: Vec<Result<Outcome, String>> = stream::iter(&entries)
        .map(|e| judge(&url, &e.sql))
        .buffered(4)
        .map(|v| {
            v.map(|v| match v {
                Verdict::Accepted => Outcome::Accepted,
                Verdict::Refused(code) => Outcome::Refused(code.to_owned()),
                Verdict::ServerFile => Outcome::ServerFile,
            })
        })
        .collect()
        .await;
    support::corpus::check(
        &router,
        &entries,
        &outcomes,
        &support::corpus::Demands {
            server: "standby",
            min_refused: 101,
            min_share: 0.98,
            strict_labels: false,
        },
    );
}
