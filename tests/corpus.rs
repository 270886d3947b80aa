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
use partypool::{Dialect, Router, Target};
use serde::Deserialize;
use sqlx::{Connection, PgConnection};

#[derive(Deserialize)]
struct Entry {
    sql: String,
    /// The author's intent: read, write, session, primary_only.
    kind: String,
    note: String,
}

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
    let entries: Vec<Entry> = std::fs::read_to_string(corpus.join("corpus.jsonl"))
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("corpus line {}: {e}", i + 1))
        })
        .collect();
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

    let verdicts: Vec<Result<Verdict, String>> = stream::iter(&entries)
        .map(|e| judge(&url, &e.sql))
        .buffered(4)
        .collect()
        .await;

    let mut bad_corpus = Vec::new();
    let mut misrouted = Vec::new();
    let mut wrong_kind = Vec::new();
    let (mut accepted, mut to_replica, mut refused) = (0usize, 0usize, 0usize);
    let mut held_back = Vec::new();
    let mut codes = std::collections::BTreeMap::new();
    for (e, v) in entries.iter().zip(&verdicts) {
        let r = router.route(&e.sql);
        let v = match v {
            Ok(v) => *v,
            Err(msg) => {
                bad_corpus.push(format!("{:?}: {msg}", e.sql));
                continue;
            }
        };
        let session_like = e.kind == "session" || e.kind == "primary_only";
        if session_like && r.target != Target::Primary {
            wrong_kind.push(format!("{} ({}) -> replica: {:?}", e.kind, e.note, e.sql));
        }
        match v {
            Verdict::Refused(code) => {
                refused += 1;
                *codes.entry(code).or_insert(0usize) += 1;
                if r.target != Target::Primary {
                    misrouted.push(format!("{:?} ({}) -> {:?}", e.sql, e.note, r));
                }
            }
            Verdict::ServerFile => {
                assert_eq!(
                    r.target,
                    Target::Primary,
                    "COPY to a server file: {}",
                    e.sql
                );
            }
            Verdict::Accepted if !session_like => {
                accepted += 1;
                if r.target == Target::Replica {
                    to_replica += 1;
                } else {
                    held_back.push(format!("{} [{}] {:?}", r.reason, e.note, e.sql));
                }
            }
            Verdict::Accepted => {}
        }
    }
    let share = to_replica as f64 / accepted.max(1) as f64;
    println!(
        "corpus: {} statements; standby refused {refused}, accepted {accepted} that keep no \
         session state, of which {to_replica} are routed to replicas ({:.2}%)",
        entries.len(),
        share * 100.0
    );
    println!("refusals by SQLSTATE: {codes:?}");
    for h in &held_back {
        println!("  accepted by the standby but routed to the primary: {h}");
    }
    assert!(
        bad_corpus.is_empty(),
        "corpus statements that fail for other reasons:\n{}",
        bad_corpus.join("\n")
    );
    assert!(
        misrouted.is_empty(),
        "refused by the standby but routed to a replica:\n{}",
        misrouted.join("\n")
    );
    assert!(
        wrong_kind.is_empty(),
        "session / primary-only statements routed to a replica:\n{}",
        wrong_kind.join("\n")
    );
    assert!(
        refused > 100,
        "the corpus should exercise refusals ({refused})"
    );
    assert!(
        share >= 0.98,
        "only {:.2}% of accepted statements go to replicas",
        share * 100.0
    );
}
