//! Statement classification: which node may run a SQL text.
//!
//! [`route()`] looks at a SQL text and answers [`Target::Replica`] only when it is sure the text
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
//! The rules, for each statement of the text (split at top-level semicolons):
//!
//! | statement | target | reason |
//! |---|---|---|
//! | `SELECT`, `VALUES`, `TABLE`, `SHOW`, `WITH` (+ `DESCRIBE`/`DESC` on MySQL) | replica | `read-only statement` |
//! | … with `FOR UPDATE` / `NO KEY UPDATE` / `SHARE` / `KEY SHARE`, MySQL `LOCK IN SHARE MODE`, anywhere | primary | `locking clause` |
//! | … `WITH` containing `INSERT` / `UPDATE` / `DELETE` / `MERGE` | primary | `data-modifying CTE` |
//! | … `SELECT … INTO` (a new table; MySQL `INTO @var` / `OUTFILE`) | primary | `SELECT INTO writes` |
//! | … calling `nextval` / `setval` (MariaDB `NEXT VALUE FOR`) | primary | `sequence function` |
//! | … calling `currval` / `lastval` (MySQL `LAST_INSERT_ID`, `FOUND_ROWS`; SQLite `last_insert_rowid`, `changes`) | primary | `session-bound function` |
//! | … calling `pg_advisory_*` / `pg_try_advisory_*` (MySQL `GET_LOCK`, `RELEASE_LOCK`) | primary | `advisory lock` |
//! | … calling `pg_notify` | primary | `notification` |
//! | … calling `pg_current_wal_lsn`, `pg_walfile_name`, … (a standby refuses them) | primary | `primary-only function` |
//! | … calling another write or volatile built-in (`txid_current`, `set_config`, `lo_*` writers, `pg_switch_wal`, `dblink_exec`, …) | primary | `write or volatile function` |
//! | … calling a function named in [`Router::write_function`] | primary | `configured write function` |
//! | … in strict mode, calling a function not known to be read-only | primary | `function not on the read-only list` |
//! | `EXPLAIN` without `ANALYZE` of `SELECT`/`INSERT`/`UPDATE`/`DELETE`/`MERGE`/… (nothing runs) | replica | `EXPLAIN only plans` |
//! | `EXPLAIN ANALYZE` of a read | replica | as for the read |
//! | `EXPLAIN ANALYZE` of a write | primary | `EXPLAIN ANALYZE executes the statement` |
//! | `COPY table TO STDOUT`, `COPY (read) TO STDOUT` | replica | `read-only statement` |
//! | `COPY … FROM` | primary | `COPY FROM writes` |
//! | `COPY … TO 'file'` / `TO PROGRAM` | primary | `COPY to a server file or program` |
//! | `SET`, `RESET`, `PREPARE`, `DEALLOCATE`, `LISTEN`, `UNLISTEN`, `DECLARE`, `FETCH`, `CLOSE`, `DISCARD`, `LOCK`, `LOAD`, `CREATE TEMP …`, transaction control (`BEGIN`, `COMMIT`, `SAVEPOINT`, …), MySQL `USE` | primary | `session state` |
//! | `CALL`, `DO` (bodies are opaque) | primary | `procedure or code block` |
//! | `EXECUTE` (its prepared body is unknown) | primary | `prepared statement execution` |
//! | `NOTIFY` | primary | `notification` |
//! | SQLite `PRAGMA name` / `PRAGMA name(arg)` for introspection pragmas | replica | `read-only statement` |
//! | other SQLite `PRAGMA`s, or any with `= value` | primary | `pragma` |
//! | anything else (DML, DDL, `VACUUM`, `GRANT`, …) | primary | `not a read-only statement` |
//! | an unterminated quote or comment, a MySQL `/*! … */` or MariaDB `/*M! … */` comment, no keyword at all | primary | `unrecognised SQL` |
//! | empty text, or only comments | primary | `empty statement` |
//!
//! A multi-statement text goes to a replica only when every statement does.
//!
//! **Hints.** A `/* partypool:primary */` (or `-- partypool:primary`) comment before the
//! first token sends the text to the primary. `/* partypool:replica */` sends it to a replica
//! only when the router held it back out of caution (`procedure or code block`, `function not
//! on the read-only list`); it never overrides a detected write, lock or session state. The
//! executors [`ReplicaPool::on_primary`](crate::ReplicaPool::on_primary) and
//! [`ReplicaPool::on_replica`](crate::ReplicaPool::on_replica) do the same for every statement.
//!
//! **Why session state goes to the primary.** A pool hands each statement to *some*
//! connection. `SET`, `PREPARE`, a cursor, a temporary table or an advisory lock changes the
//! connection it runs on, and the next statement will most likely run elsewhere — on a replica
//! it would certainly be elsewhere, and an advisory lock taken on a replica excludes nobody on
//! the primary. Sending such statements to the primary keeps them visible where writes happen;
//! for work that needs one connection, use a transaction or `pool.primary().acquire()`.

mod fingerprint;
mod functions;
mod rules;
mod scan;

pub(crate) use fingerprint::fingerprint;

use scan::Scanner;
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
/// assert_eq!(r.reason, "sequence function");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    /// Where the statement runs.
    pub target: Target,
    /// Why, in a few words (stable strings, fit for logs and metrics labels).
    pub reason: &'static str,
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

/// Classifies `sql` with the PostgreSQL dialect and the default rules. See the
/// [module docs](mod@crate::route) for the rules.
///
/// ```
/// use partypool::{route, Target};
/// assert_eq!(route("/* report */ SELECT count(*) FROM orders").target, Target::Replica);
/// assert_eq!(route("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d").target, Target::Primary);
/// ```
pub fn route(sql: &str) -> Route {
    route_in(Dialect::Postgres, sql)
}

/// Classifies `sql` in the given dialect with the default rules. See the
/// [module docs](mod@crate::route) for the rules.
///
/// ```
/// use partypool::{route_in, Dialect, Target};
/// assert_eq!(route_in(Dialect::MySql, "SELECT * FROM t LOCK IN SHARE MODE").target, Target::Primary);
/// ```
pub fn route_in(dialect: Dialect, sql: &str) -> Route {
    Router::new(dialect).route(sql)
}

/// A configurable classifier: the dialect, extra write functions, and strict mode.
///
/// [`route()`] and [`route_in`] use `Router::new(dialect)`. A [`ReplicaPool`] builds its router
/// from [`Config::write_functions`], [`Config::strict_functions`] and
/// [`Config::read_only_functions`].
///
/// ```
/// use partypool::{Dialect, Router, Target};
///
/// let router = Router::new(Dialect::Postgres).write_function("refresh_totals");
/// let r = router.route("SELECT refresh_totals(42)");
/// assert_eq!((r.target, r.reason), (Target::Primary, "configured write function"));
///
/// // Strict mode: a function call that is not known to be read-only goes to the primary.
/// let strict = Router::new(Dialect::Postgres).strict_functions(["order_total"]);
/// assert_eq!(strict.route("SELECT order_total(1), lower(name) FROM users").target, Target::Replica);
/// assert_eq!(strict.route("SELECT audit_and_return(1)").target, Target::Primary);
/// ```
///
/// [`ReplicaPool`]: crate::ReplicaPool
/// [`Config::write_functions`]: crate::Config::write_functions
/// [`Config::strict_functions`]: crate::Config::strict_functions
/// [`Config::read_only_functions`]: crate::Config::read_only_functions
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Router {
    dialect: Dialect,
    write_functions: Vec<String>,
    strict: bool,
    read_only_functions: Vec<String>,
}

impl Router {
    /// The default rules for `dialect`.
    pub fn new(dialect: Dialect) -> Self {
        Router {
            dialect,
            ..Router::default()
        }
    }

    /// The dialect this router follows.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Treats calls of `name` (case-insensitive, matched on the last component of a qualified
    /// name) as writes: statements calling it go to the primary.
    pub fn write_function(mut self, name: impl AsRef<str>) -> Self {
        self.write_functions
            .push(last_component(name.as_ref()).to_owned());
        self
    }

    /// Turns on strict mode: a statement that calls any function that is neither a known
    /// read-only built-in nor in `read_only` goes to the primary (reason `function not on
    /// the read-only list`). A `partypool:replica` hint or
    /// [`ReplicaPool::on_replica`](crate::ReplicaPool::on_replica) overrides that one reason.
    pub fn strict_functions<I, S>(mut self, read_only: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.strict = true;
        self.read_only_functions.extend(
            read_only
                .into_iter()
                .map(|f| last_component(f.as_ref()).to_owned()),
        );
        self
    }

    /// Classifies `sql`, honouring hints in its leading comments.
    pub fn route(&self, sql: &str) -> Route {
        self.decide(sql, None).route()
    }

    /// Classifies `sql`; `force` is an executor's explicit target (`on_primary`,
    /// `on_replica`), which acts like a hint comment.
    pub(crate) fn decide(&self, sql: &str, force: Option<Target>) -> Decision {
        self.decide_read(sql, force).0
    }

    /// [`decide`](Self::decide), and whether `sql` is a read whatever the hint or the
    /// executor's target says (a read sent to the primary on purpose is still one).
    pub(crate) fn decide_read(&self, sql: &str, force: Option<Target>) -> (Decision, bool) {
        let (decision, gated, hint) = self.decide_as(sql, false);
        let mut decision = decision.unwrap_or(Decision::primary(Reason(&"empty statement")));
        // A version-gated executable comment (`/*!50700 … */`, any `/*M! … */`) runs or is
        // skipped depending on the server: a replica only if both readings agree (a text
        // that is empty when skipped does no work either way).
        if gated
            && decision.target == Target::Replica
            && let (Some(skipped), _, _) = self.decide_as(sql, true)
            && skipped.target == Target::Primary
        {
            decision = skipped;
        }
        let read = decision.target == Target::Replica;
        let decision = match force.or(hint) {
            Some(Target::Primary) if read => Decision::primary(Reason(&"primary hint")),
            Some(Target::Replica) if decision.overridable => {
                Decision::replica(Reason(&"replica hint"))
            }
            _ => decision,
        };
        (decision, read)
    }

    /// One reading of `sql`: its decision before hints, whether it has a version-gated
    /// executable comment, and the hint of its leading comments. `skip_gated`: read gated
    /// comments as comments (a server that skips them) instead of code.
    fn decide_as(&self, sql: &str, skip_gated: bool) -> (Option<Decision>, bool, Option<Target>) {
        let mut tokens = Scanner::new(sql, self.dialect).skipping_gated(skip_gated);
        let mut first: Option<Decision> = None;
        let mut first_read: Option<Decision> = None;
        let mut all_overridable = true;
        while let Some(lead) = tokens.next() {
            let Some(d) = rules::statement(self, lead, &mut tokens) else {
                continue;
            };
            first_read.get_or_insert(d);
            if d.target == Target::Primary {
                all_overridable &= d.overridable;
                first.get_or_insert(d);
                if !all_overridable {
                    break;
                }
            }
        }
        let decision = match (first, first_read) {
            (Some(d), _) => Some(Decision {
                overridable: all_overridable,
                ..d
            }),
            (None, read) => read,
        };
        (decision, tokens.saw_gated(), tokens.hint())
    }
}

fn last_component(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name).trim_matches('"')
}

/// Why a statement goes where it goes: one of the stable reason strings, held by a thin
/// pointer so that a [`Decision`] stays two machine words. Decisions move on every
/// statement of every query; with the string's fat pointer inside, returning one through
/// memory cost a store-forwarding stall per statement (`benches/classifier.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reason(pub(crate) &'static &'static str);

/// A routing decision with what a replica hint may do to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    pub(crate) target: Target,
    pub(crate) reason: Reason,
    /// The statement goes to the primary only out of caution (an opaque procedure, a function
    /// not known to be read-only): an explicit replica hint may send it to a replica, where a
    /// standby's rejection would still bring it back to the primary.
    pub(crate) overridable: bool,
}

impl Decision {
    pub(crate) const fn primary(reason: Reason) -> Self {
        Decision {
            target: Target::Primary,
            reason,
            overridable: false,
        }
    }

    pub(crate) const fn replica(reason: Reason) -> Self {
        Decision {
            target: Target::Replica,
            reason,
            overridable: false,
        }
    }

    /// The same decision, which a replica hint may override.
    pub(crate) const fn overridable(self) -> Self {
        Decision {
            overridable: true,
            ..self
        }
    }

    /// The public form.
    pub(crate) fn route(self) -> Route {
        Route {
            target: self.target,
            reason: self.reason.0,
        }
    }
}

#[cfg(test)]
mod tests;
