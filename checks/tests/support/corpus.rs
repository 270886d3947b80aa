//! The routing oracles' shared half: a corpus file, and the verdict of a real replica on
//! each statement checked against the router (`tests/corpus.rs` on a PostgreSQL standby,
//! `tests/corpus_mysql.rs` on a read-only MariaDB replica).

use std::collections::BTreeMap;
use std::path::Path;

use partypool::{Router, Target};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct Entry {
    pub sql: String,
    /// The author's intent: read, write, session, primary_only.
    pub kind: String,
    pub note: String,
}

/// What the replica made of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It ran it.
    Accepted,
    /// It refused it because it is a replica, with this error code.
    Refused(String),
    /// Not run: it would write a file on the server's disk (a standby allows that).
    ServerFile,
}

/// The corpus at `path`, one JSON object per line.
pub fn load(path: &Path) -> Vec<Entry> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("corpus line {}: {e}", i + 1))
        })
        .collect()
}

/// What the test demands beyond zero misroutes.
pub struct Demands {
    /// `standby`, `replica`: for the messages.
    pub server: &'static str,
    /// At least this many refusals (the corpus must exercise them).
    pub min_refused: usize,
    /// At least this share of accepted, session-free statements routed to replicas.
    pub min_share: f64,
    /// `write` entries must be refused and `read` entries accepted.
    pub strict_labels: bool,
}

/// Checks every verdict against the router and prints the summary: a refused statement must
/// go to the primary (zero tolerated), session and primary-only entries too, and at least
/// `min_share` of the accepted rest to replicas.
pub fn check(
    router: &Router,
    entries: &[Entry],
    outcomes: &[Result<Outcome, String>],
    d: &Demands,
) {
    let server = d.server;
    let mut bad_corpus = Vec::new();
    let mut misrouted = Vec::new();
    let mut wrong_kind = Vec::new();
    let mut mislabelled = Vec::new();
    let (mut accepted, mut to_replica, mut refused) = (0usize, 0usize, 0usize);
    let mut held_back = Vec::new();
    let mut codes = BTreeMap::new();
    for (e, o) in entries.iter().zip(outcomes) {
        let r = router.route(&e.sql);
        let o = match o {
            Ok(o) => o,
            Err(msg) => {
                bad_corpus.push(format!("{:?}: {msg}", e.sql));
                continue;
            }
        };
        let session_like = e.kind == "session" || e.kind == "primary_only";
        if session_like && r.target != Target::Primary {
            wrong_kind.push(format!("{} ({}) -> replica: {:?}", e.kind, e.note, e.sql));
        }
        if d.strict_labels {
            match (e.kind.as_str(), o) {
                ("write", Outcome::Accepted) | ("read", Outcome::Refused(_)) => {
                    mislabelled.push(format!("{} but {o:?}: {:?}", e.kind, e.sql))
                }
                _ => {}
            }
        }
        match o {
            Outcome::Refused(code) => {
                refused += 1;
                *codes.entry(code.clone()).or_insert(0usize) += 1;
                if r.target != Target::Primary {
                    misrouted.push(format!("{:?} ({}) -> {:?}", e.sql, e.note, r));
                }
            }
            Outcome::ServerFile => {
                assert_eq!(r.target, Target::Primary, "a server file: {}", e.sql);
            }
            Outcome::Accepted if !session_like => {
                accepted += 1;
                if r.target == Target::Replica {
                    to_replica += 1;
                } else {
                    held_back.push(format!("{} [{}] {:?}", r.reason, e.note, e.sql));
                }
            }
            Outcome::Accepted => {}
        }
    }
    let share = to_replica as f64 / accepted.max(1) as f64;
    println!(
        "corpus: {} statements; the {server} refused {refused}, accepted {accepted} that keep no \
         session state, of which {to_replica} are routed to replicas ({:.2}%)",
        entries.len(),
        share * 100.0
    );
    println!("refusals by error code: {codes:?}");
    for h in &held_back {
        println!("  accepted by the {server} but routed to the primary: {h}");
    }
    let list = |what: &str, v: &[String]| {
        assert!(v.is_empty(), "{what}:\n{}", v.join("\n"));
    };
    list("corpus statements that fail for other reasons", &bad_corpus);
    list(
        &format!("corpus labels the {server} disagrees with"),
        &mislabelled,
    );
    list(
        &format!("refused by the {server} but routed to a replica"),
        &misrouted,
    );
    list(
        "session / primary-only statements routed to a replica",
        &wrong_kind,
    );
    assert!(
        refused >= d.min_refused,
        "the corpus should exercise refusals ({refused})"
    );
    assert!(
        share >= d.min_share,
        "only {:.2}% of accepted statements go to replicas",
        share * 100.0
    );
}
