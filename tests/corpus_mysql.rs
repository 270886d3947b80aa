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
use partypool::{Dialect, Router, Target};
use serde::Deserialize;
use sqlx::{Connection, MySqlConnection};
use support::mariadb::MariaCluster;

#[derive(Deserialize)]
struct Entry {
    sql: String,
    /// The author's intent: read, write, session, primary_only.
    kind: String,
    note: String,
}

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
    let entries: Vec<Entry> = std::fs::read_to_string(corpus.join("corpus.jsonl"))
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("corpus line {}: {e}", i + 1))
        })
        .collect();
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

    let verdicts: Vec<Result<Verdict, String>> = stream::iter(&entries)
        .map(|e| judge(&url, &e.sql))
        .buffered(4)
        .collect()
        .await;

    let mut bad_corpus = Vec::new();
    let mut misrouted = Vec::new();
    let mut wrong_kind = Vec::new();
    let mut mislabelled = Vec::new();
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
        match (e.kind.as_str(), v) {
            ("write", Verdict::Accepted) | ("read", Verdict::Refused(_)) => {
                mislabelled.push(format!("{} but {v:?}: {:?}", e.kind, e.sql))
            }
            _ => {}
        }
        match v {
            Verdict::Refused(code) => {
                refused += 1;
                *codes.entry(code).or_insert(0usize) += 1;
                if r.target != Target::Primary {
                    misrouted.push(format!("{:?} ({}) -> {:?}", e.sql, e.note, r));
                }
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
        "MySQL corpus: {} statements; the replica refused {refused}, accepted {accepted} that \
         keep no session state, of which {to_replica} are routed to replicas ({:.2}%)",
        entries.len(),
        share * 100.0
    );
    println!("refusals by error number: {codes:?}");
    for h in &held_back {
        println!("  accepted by the replica but routed to the primary: {h}");
    }
    assert!(
        bad_corpus.is_empty(),
        "corpus statements that fail for other reasons:\n{}",
        bad_corpus.join("\n")
    );
    assert!(
        mislabelled.is_empty(),
        "corpus labels the replica disagrees with:\n{}",
        mislabelled.join("\n")
    );
    assert!(
        misrouted.is_empty(),
        "refused by the replica but routed to a replica:\n{}",
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
