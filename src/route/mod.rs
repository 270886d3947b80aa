//! Statement classification: which node may run a SQL text.
//!
//! [`route`] looks at a SQL text and answers [`Target::Replica`] only when it is sure the text
//! only reads and means the same on any node; everything else — writes, locks, write or
//! volatile functions, DDL, session state, transaction control, and anything it cannot make
//! sense of — goes to [`Target::Primary`]. Every answer carries a short `reason`, so a routing
//! decision can be explained (and tested) without a database.
//!
//! ```
//! use partypool::{route, Target};
//!
//! assert_eq!(route("SELECT id FROM users WHERE id = $1").target, Target::Replica);
//! assert_eq!(route("UPDATE users SET name = $1").target, Target::Primary);
//! let r = route("SELECT * FROM jobs FOR UPDATE SKIP LOCKED");
//! assert_eq!((r.target, r.reason), (Target::Primary, "locking clause"));
//! ```
//!
//! The rules, in order, for each statement of the text (split at top-level semicolons):
//!
//! | statement | target | reason |
//! |---|---|---|
//! | empty text, or only comments | primary | `empty statement` |
//! | unterminated quote or comment | primary | `unrecognised SQL` |
//! | `SELECT`, `VALUES`, `TABLE`, `SHOW`, `WITH` (+ `DESCRIBE`/`DESC` on MySQL) | replica | `read-only statement` |
//! | … with `FOR UPDATE` / `NO KEY UPDATE` / `SHARE` / `KEY SHARE` / `LOCK IN SHARE MODE` | primary | `locking clause` |
//! | … `WITH` containing `INSERT` / `UPDATE` / `DELETE` / `MERGE` | primary | `data-modifying CTE` |
//! | … with `INTO` (`SELECT … INTO`) | primary | `SELECT INTO writes` |
//! | … calling a write or volatile function (`nextval`, `pg_advisory_lock`, …) | primary | `write or volatile function` |
//! | `EXPLAIN` of a read (without `ANALYZE`) | replica | `read-only statement` |
//! | `EXPLAIN ANALYZE` | primary | `EXPLAIN ANALYZE executes the statement` |
//! | anything else | primary | `not a read-only statement` |
//!
//! A multi-statement text goes to a replica only when every statement does.

mod scan;

use scan::{Scanner, Token};
use serde::{Deserialize, Serialize};

/// Where a statement must run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The write primary.
    Primary,
    /// Any healthy read replica.
    Replica,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Target::Primary => "primary",
            Target::Replica => "replica",
        })
    }
}

/// A routing decision: the target and a short, stable explanation.
///
/// ```
/// let r = partypool::route("SELECT nextval('orders_id_seq')");
/// assert_eq!(r.target, partypool::Target::Primary);
/// assert_eq!(r.reason, "write or volatile function");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    /// Where the statement runs.
    pub target: Target,
    /// Why, in a few words (stable strings, fit for logs and metrics labels).
    pub reason: &'static str,
}

impl Route {
    const fn primary(reason: &'static str) -> Self {
        Route {
            target: Target::Primary,
            reason,
        }
    }

    const READ: Route = Route {
        target: Target::Replica,
        reason: "read-only statement",
    };
}

/// The SQL dialect the scanner follows (quoting and comment rules, built-in function lists).
///
/// ```
/// use partypool::{route_in, Dialect, Target};
/// // `#` starts a comment in MySQL only.
/// assert_eq!(route_in(Dialect::MySql, "SELECT 1 # ; DELETE FROM t").target, Target::Replica);
/// assert_eq!(route_in(Dialect::Postgres, "SELECT 1 # ; DELETE FROM t").target, Target::Primary);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// PostgreSQL: nested block comments, `E''` strings, dollar quotes.
    #[default]
    Postgres,
    /// MySQL and MariaDB: backticks, `#` comments, backslash escapes in strings.
    MySql,
    /// SQLite: backticks and `[…]` identifiers.
    Sqlite,
}

/// Classifies `sql` with the PostgreSQL dialect. See the [module docs](crate::route) for the
/// rules.
///
/// ```
/// use partypool::{route, Target};
/// assert_eq!(route("/* report */ SELECT count(*) FROM orders").target, Target::Replica);
/// assert_eq!(route("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d").target, Target::Primary);
/// ```
pub fn route(sql: &str) -> Route {
    route_in(Dialect::Postgres, sql)
}

/// Classifies `sql` in the given dialect. See the [module docs](crate::route) for the rules.
///
/// ```
/// use partypool::{route_in, Dialect, Target};
/// assert_eq!(route_in(Dialect::MySql, "SELECT * FROM t LOCK IN SHARE MODE").target, Target::Primary);
/// ```
pub fn route_in(dialect: Dialect, sql: &str) -> Route {
    let mut tokens = Scanner::new(sql, dialect).peekable();
    let mut any = false;
    loop {
        match tokens.peek() {
            None => break,
            Some(Token::Semicolon) => {
                tokens.next();
                continue;
            }
            Some(_) => {}
        }
        any = true;
        let statement = Statement::classify(dialect, &mut tokens);
        if statement.target == Target::Primary {
            return statement;
        }
    }
    if any {
        Route::READ
    } else {
        Route::primary("empty statement")
    }
}

/// The first keyword of a statement, as far as routing cares.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lead {
    Read,
    Explain,
    Other,
}

struct Statement;

impl Statement {
    /// Consumes one statement (up to and including its semicolon) and classifies it.
    fn classify<'a>(dialect: Dialect, tokens: &mut impl Iterator<Item = Token<'a>>) -> Route {
        let mut lead: Option<Lead> = None;
        // For EXPLAIN: whether the explained statement's first keyword has been seen.
        let mut explained = false;
        let mut depth = 0usize;
        let mut with = false;
        let mut verdict: Option<Route> = None;
        let mut prev: Option<Token<'a>> = None;

        for tok in tokens.by_ref() {
            match tok {
                Token::Semicolon => break,
                Token::Invalid => return Route::primary("unrecognised SQL"),
                Token::Open => depth += 1,
                Token::Close => depth = depth.saturating_sub(1),
                Token::Word(w) => match lead {
                    None => {
                        let l = lead_of(dialect, w);
                        if l == Lead::Other {
                            verdict = Some(Route::primary("not a read-only statement"));
                        }
                        lead = Some(l);
                        with = w.eq_ignore_ascii_case("with");
                    }
                    Some(Lead::Explain) if !explained => {
                        if w.eq_ignore_ascii_case("analyze") || w.eq_ignore_ascii_case("analyse") {
                            verdict.get_or_insert(Route::primary(
                                "EXPLAIN ANALYZE executes the statement",
                            ));
                        } else if depth == 0 && !is_explain_option(w) {
                            explained = true;
                            with = w.eq_ignore_ascii_case("with");
                            if lead_of(dialect, w) != Lead::Read {
                                verdict.get_or_insert(Route::primary("not a read-only statement"));
                            }
                        }
                    }
                    Some(_) => {
                        if let Some(r) = word_rule(dialect, prev, w, with) {
                            verdict.get_or_insert(r);
                        }
                    }
                },
                _ => {}
            }
            if tok == Token::Open
                && let Some(Token::Word(f)) = prev
                && lead.is_some()
                && is_write_function(dialect, f)
            {
                verdict.get_or_insert(Route::primary("write or volatile function"));
            }
            prev = Some(tok);
        }

        match (lead, verdict) {
            (_, Some(v)) => v,
            (Some(Lead::Read), None) => Route::READ,
            (Some(Lead::Explain), None) if explained => Route::READ,
            (Some(Lead::Explain | Lead::Other), None) => {
                Route::primary("not a read-only statement")
            }
            // A statement of only punctuation, e.g. "(((": let the primary report it.
            (None, None) => Route::primary("unrecognised SQL"),
        }
    }
}

fn lead_of(dialect: Dialect, w: &str) -> Lead {
    const READ: &[&str] = &["select", "values", "table", "show", "with"];
    if READ.iter().any(|k| w.eq_ignore_ascii_case(k)) {
        return Lead::Read;
    }
    if w.eq_ignore_ascii_case("explain") {
        return Lead::Explain;
    }
    if dialect == Dialect::MySql
        && (w.eq_ignore_ascii_case("describe") || w.eq_ignore_ascii_case("desc"))
    {
        return Lead::Read;
    }
    Lead::Other
}

/// Rules that look at a word inside a read statement, with the token before it.
fn word_rule(dialect: Dialect, prev: Option<Token<'_>>, w: &str, with: bool) -> Option<Route> {
    let prev_word = match prev {
        Some(Token::Word(p)) => Some(p),
        _ => None,
    };
    let is = |k: &str| w.eq_ignore_ascii_case(k);
    // FOR UPDATE, FOR NO KEY UPDATE, FOR SHARE, FOR KEY SHARE; MySQL LOCK IN SHARE MODE.
    if let Some(p) = prev_word {
        if p.eq_ignore_ascii_case("for") && (is("update") || is("share") || is("no") || is("key")) {
            return Some(Route::primary("locking clause"));
        }
        if dialect == Dialect::MySql && p.eq_ignore_ascii_case("in") && is("share") {
            return Some(Route::primary("locking clause"));
        }
        // MariaDB sequences: NEXT VALUE FOR s, PREVIOUS VALUE FOR s.
        if dialect == Dialect::MySql
            && (p.eq_ignore_ascii_case("next") || p.eq_ignore_ascii_case("previous"))
            && is("value")
        {
            return Some(Route::primary("write or volatile function"));
        }
    }
    if is("into") {
        return Some(Route::primary("SELECT INTO writes"));
    }
    if with && (is("insert") || is("update") || is("delete") || is("merge")) {
        return Some(Route::primary("data-modifying CTE"));
    }
    None
}

fn is_explain_option(w: &str) -> bool {
    const OPTIONS: &[&str] = &[
        "verbose",
        "costs",
        "settings",
        "buffers",
        "wal",
        "timing",
        "summary",
        "format",
        "generic_plan",
        "true",
        "false",
        "on",
        "off",
        "text",
        "json",
        "xml",
        "yaml",
        "extended",
        "partitions",
    ];
    OPTIONS.iter().any(|o| w.eq_ignore_ascii_case(o))
}

/// Functions that write, take locks, or depend on the session or the primary's state.
/// The full per-dialect lists and user extensions grow in the classifier issue; this is
/// the v1 core.
fn is_write_function(dialect: Dialect, name: &str) -> bool {
    const POSTGRES: &[&str] = &[
        "nextval",
        "setval",
        "currval",
        "lastval",
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_advisory_xact_lock",
        "pg_advisory_xact_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
        "pg_try_advisory_xact_lock",
        "pg_try_advisory_xact_lock_shared",
        "pg_advisory_unlock",
        "pg_advisory_unlock_shared",
        "pg_advisory_unlock_all",
        "txid_current",
        "pg_current_xact_id",
        "pg_notify",
        "set_config",
        "pg_switch_wal",
        "pg_create_restore_point",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "lo_create",
        "lo_creat",
        "lo_import",
        "lo_unlink",
        "lo_from_bytea",
        "lo_put",
        "lowrite",
        "dblink_exec",
    ];
    const MYSQL: &[&str] = &[
        "get_lock",
        "release_lock",
        "release_all_locks",
        "last_insert_id",
        "nextval",
        "setval",
        "lastval",
    ];
    const SQLITE: &[&str] = &["last_insert_rowid", "changes", "total_changes"];
    let list = match dialect {
        Dialect::Postgres => POSTGRES,
        Dialect::MySql => MYSQL,
        Dialect::Sqlite => SQLITE,
    };
    list.iter().any(|f| name.eq_ignore_ascii_case(f))
}

#[cfg(test)]
mod tests;
