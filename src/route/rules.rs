//! The per-statement rules: one pass over the tokens of one statement.

use super::functions::{self, is_not_a_call, is_read_only_builtin, write_reason};
use super::scan::Token;
use super::{Decision, Dialect, Reason, Router, Target};

pub(crate) const READ: Reason = Reason(&"read-only statement");
pub(crate) const NOT_READ: Reason = Reason(&"not a read-only statement");
pub(crate) const SESSION: Reason = Reason(&"session state");
pub(crate) const UNRECOGNISED: Reason = Reason(&"unrecognised SQL");
pub(crate) const LOCKING: Reason = Reason(&"locking clause");
pub(crate) const DML_CTE: Reason = Reason(&"data-modifying CTE");
pub(crate) const SELECT_INTO: Reason = Reason(&"SELECT INTO writes");
pub(crate) const EXPLAIN_ANALYZE: Reason = Reason(&"EXPLAIN ANALYZE executes the statement");
pub(crate) const EXPLAIN_PLAN: Reason = Reason(&"EXPLAIN only plans");
pub(crate) const EXPLAIN_WRITE: Reason =
    Reason(&"EXPLAIN of a write (a MariaDB replica refuses it)");
pub(crate) const OPAQUE: Reason = Reason(&"procedure or code block");
pub(crate) const EXECUTE: Reason = Reason(&"prepared statement execution");
pub(crate) const COPY_FROM: Reason = Reason(&"COPY FROM writes");
pub(crate) const COPY_FILE: Reason = Reason(&"COPY to a server file or program");
pub(crate) const CONFIGURED: Reason = Reason(&"configured write function");
pub(crate) const STRICT: Reason = Reason(&"function not on the read-only list");
pub(crate) const PRAGMA: Reason = Reason(&"pragma");

/// What a statement starts with, as far as routing cares.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Lead {
    /// SELECT, VALUES, TABLE, SHOW, WITH (+ DESCRIBE/DESC on MySQL).
    Read,
    Explain,
    Copy,
    Create,
    Pragma,
    /// MySQL `SET`: session state, unless it is MariaDB's `SET STATEMENT … FOR <stmt>`.
    Set,
    /// `SET STATEMENT var = value, … FOR`: the statement after `FOR` decides.
    SetStatement,
    /// Decided by its first word alone.
    Decided,
}

/// How the body of a statement is checked.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Body {
    /// Not yet known (EXPLAIN options, COPY's source).
    Pending,
    /// Executed as a read: locking clauses, INTO, data-modifying CTEs and write functions
    /// send it to the primary.
    Checked,
    /// Not executed (EXPLAIN without ANALYZE): nothing in it matters.
    Unchecked,
}

/// Classifies one statement, starting at its first token `first`, consuming its tokens up
/// to and including its `;`. `None` for an empty statement.
///
/// A statement that is certain to go to the primary (a decision no replica hint may
/// override) is not read further: nothing after it can change where the text runs, and
/// the caller stops there. (So an unterminated quote after, say, `INSERT` reports `not a
/// read-only statement`, not `unrecognised SQL`; both go to the primary.)
pub(crate) fn statement<'a>(
    router: &Router,
    first: Token<'a>,
    tokens: &mut impl Iterator<Item = Token<'a>>,
) -> Option<Decision> {
    let dialect = router.dialect;
    let mut lead: Option<Lead> = None;
    let mut body = Body::Pending;
    let mut verdict: Option<Decision> = None;
    let mut depth = 0usize;
    let mut with = false;
    let mut rare = Rare::default();
    let mut prev: Option<Token<'a>> = None;
    let mut prev2: Option<Token<'a>> = None;
    let mut any = false;

    let decide = |verdict: &mut Option<Decision>, d: Decision| {
        verdict.get_or_insert(d);
    };

    // The statement's first word (after `SET STATEMENT … FOR`, the inner statement's).
    let mut lead_tok = first;
    let mut next = Some(first);
    while let Some(tok) = next.take().or_else(|| tokens.next()) {
        if tok == Token::Semicolon {
            break;
        }
        if let Some(v) = verdict
            && v.target == Target::Primary
            && !v.overridable
        {
            return Some(v);
        }
        any = true;
        match tok {
            Token::Invalid => return Some(Decision::primary(UNRECOGNISED)),
            Token::Open => depth += 1,
            Token::Close => depth = depth.saturating_sub(1),
            _ => {}
        }
        let word = match tok {
            Token::Word(w) => Some(w),
            _ => None,
        };

        match lead {
            None => {
                if let Some(w) = word {
                    let (l, d) = lead_of(dialect, w);
                    lead = Some(l);
                    lead_tok = tok;
                    with = w.eq_ignore_ascii_case("with");
                    if l == Lead::Explain && (is(w, "analyze") || is(w, "analyse")) {
                        rare.analyze = true;
                    }
                    if l == Lead::Read {
                        body = Body::Checked;
                    }
                    if let Some(d) = d {
                        decide(&mut verdict, d);
                    }
                }
            }
            Some(Lead::Read) => {}
            Some(_) => {
                let step = lead_step(
                    dialect,
                    lead_tok,
                    &mut lead,
                    &mut body,
                    &mut verdict,
                    &mut with,
                    &mut rare,
                    tok,
                    word,
                    prev,
                    depth,
                );
                if step == Step::Restart {
                    rare = Rare::default();
                    prev2 = None;
                    prev = None;
                    continue;
                }
            }
        }

        if dialect == Dialect::MySql
            && body == Body::Checked
            && let Some(d) = mysql_rule(lead_tok, prev, prev2, tok, depth)
        {
            decide(&mut verdict, d);
        }
        if body == Body::Checked
            && let Some(d) = body_rule(router, prev, prev2, tok, word, with, depth)
        {
            decide(&mut verdict, d);
        }
        prev2 = prev;
        prev = Some(tok);
    }

    if !any {
        return None;
    }
    Some(match (verdict, lead) {
        (Some(v), _) => v,
        (None, Some(Lead::Read)) => Decision::replica(READ),
        (None, Some(Lead::Explain)) if body == Body::Checked => Decision::replica(READ),
        (None, Some(Lead::Copy)) if rare.copy_direction && !rare.copy_to => Decision::replica(READ),
        (None, Some(Lead::Pragma)) if body == Body::Unchecked => Decision::replica(READ),
        (None, Some(Lead::Pragma)) => Decision::primary(PRAGMA),
        (None, Some(Lead::Set | Lead::SetStatement)) => Decision::primary(SESSION),
        (None, None) => Decision::primary(UNRECOGNISED),
        (None, Some(_)) => Decision::primary(NOT_READ),
    })
}

/// What [`lead_step`] tells the token loop.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Next,
    /// The statement starts again at the next token (MariaDB `SET STATEMENT … FOR`).
    Restart,
}

/// The state only statements that are not plain reads need.
#[derive(Default)]
struct Rare {
    analyze: bool,
    // COPY: what follows TO at depth 0; the depth of an inner query's parentheses.
    copy_to: bool,
    copy_direction: bool,
    copy_query_started: bool,
    // COPY (query): the parenthesis right after COPY opens a query, not a column list.
    copy_query: bool,
    words_after_lead: usize,
}

/// One token of a statement that is not a plain read (EXPLAIN, COPY, CREATE, PRAGMA, SET).
/// Out of line: the read path, which runs for most statements, stays small enough for the
/// compiler to keep its state in registers (inlined, these arms cost a point select 15% more
/// instructions, measured with cachegrind).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn lead_step<'a>(
    dialect: Dialect,
    lead_tok: Token<'a>,
    lead: &mut Option<Lead>,
    body: &mut Body,
    verdict: &mut Option<Decision>,
    with: &mut bool,
    rare: &mut Rare,
    tok: Token<'a>,
    word: Option<&'a str>,
    prev: Option<Token<'a>>,
    depth: usize,
) -> Step {
    let decide = |verdict: &mut Option<Decision>, d: Decision| {
        verdict.get_or_insert(d);
    };
    match *lead {
        // MySQL `DESCRIBE \`tbl\``: its columns.
        Some(Lead::Explain)
            if *body == Body::Pending
                && dialect == Dialect::MySql
                && depth == 0
                && matches!(tok, Token::QuotedIdent(_)) =>
        {
            decide(verdict, Decision::replica(READ));
            *body = Body::Unchecked;
        }
        Some(Lead::Explain) if *body == Body::Pending => {
            // `(ANALYZE false)` / `(ANALYZE off)` in the options: no ANALYZE. (A number
            // after it is taken as true: the scanner does not keep its value.)
            let after_analyze =
                matches!(prev, Some(Token::Word(p)) if is(p, "analyze") || is(p, "analyse"));
            if after_analyze && depth > 0 && word.is_some_and(|w| is(w, "false") || is(w, "off")) {
                rare.analyze = false;
            }
            if let Some(w) = word {
                // MySQL's ANALYZE statement (the lead word; ANALYZE SELECT runs the
                // query, ANALYZE TABLE writes statistics).
                let analyze_lead = dialect == Dialect::MySql
                    && matches!(lead_tok, Token::Word(f) if is(f, "analyze") || is(f, "analyse"));
                if analyze_lead
                    && ["table", "tables", "no_write_to_binlog", "local"]
                        .iter()
                        .any(|k| is(w, k))
                {
                    // MySQL ANALYZE TABLE: writes statistics.
                    decide(verdict, Decision::primary(NOT_READ));
                    *body = Body::Unchecked;
                } else if is(w, "analyze") || is(w, "analyse") {
                    rare.analyze = true;
                } else if depth == 0 && !is_explain_option(w) {
                    // The explained statement.
                    let (inner, _) = lead_of(dialect, w);
                    let dml = ["insert", "update", "delete", "merge"]
                        .iter()
                        .any(|k| is(w, k))
                        || (dialect == Dialect::MySql && is(w, "replace"));
                    *with = is(w, "with");
                    *body = match (inner == Lead::Read || dml, rare.analyze) {
                        // MariaDB refuses to plan a write on a read-only replica.
                        (true, false) if dml && dialect == Dialect::MySql => {
                            decide(verdict, Decision::primary(EXPLAIN_WRITE));
                            Body::Unchecked
                        }
                        (true, false) => {
                            decide(verdict, Decision::replica(EXPLAIN_PLAN));
                            Body::Unchecked
                        }
                        (true, true) if inner == Lead::Read => Body::Checked,
                        (true, true) => {
                            decide(verdict, Decision::primary(EXPLAIN_ANALYZE));
                            Body::Unchecked
                        }
                        // MySQL `EXPLAIN tbl` / `DESCRIBE tbl`: its columns (not
                        // `EXPLAIN … INTO @v`, `EXPLAIN FOR CONNECTION n`).
                        (false, false)
                            if dialect == Dialect::MySql && !is(w, "into") && !is(w, "for") =>
                        {
                            decide(verdict, Decision::replica(READ));
                            Body::Unchecked
                        }
                        (false, _) => {
                            decide(verdict, Decision::primary(NOT_READ));
                            Body::Unchecked
                        }
                    };
                }
            }
        }
        Some(Lead::Copy) => {
            if tok == Token::Open
                && depth == 1
                && matches!(prev, Some(Token::Word(w)) if is(w, "copy"))
            {
                rare.copy_query = true;
            }
            if rare.copy_query_started && depth == 0 && *body == Body::Checked {
                // The end of COPY's query: options follow, not SQL.
                *body = Body::Unchecked;
            }
            if depth == 0 {
                if let Some(w) = word {
                    if rare.copy_to {
                        if !is(w, "stdout") {
                            decide(verdict, Decision::primary(COPY_FILE));
                        }
                        rare.copy_to = false;
                    } else if is(w, "from") && !rare.copy_direction {
                        rare.copy_direction = true;
                        decide(verdict, Decision::primary(COPY_FROM));
                    } else if is(w, "to") && !rare.copy_direction {
                        rare.copy_direction = true;
                        rare.copy_to = true;
                    }
                } else if rare.copy_to && tok != Token::Close {
                    // A file name (a string) or anything but STDOUT.
                    decide(verdict, Decision::primary(COPY_FILE));
                    rare.copy_to = false;
                }
            } else if rare.copy_query && !rare.copy_query_started {
                // COPY (query) TO …: the query must be a read, and is checked as one.
                if let Some(w) = word {
                    rare.copy_query_started = true;
                    *with = is(w, "with");
                    if lead_of(dialect, w).0 != Lead::Read {
                        decide(verdict, Decision::primary(NOT_READ));
                    }
                    *body = Body::Checked;
                }
            }
        }
        Some(Lead::Create) => {
            if let Some(w) = word.filter(|_| depth == 0) {
                rare.words_after_lead += 1;
                if rare.words_after_lead <= 4 && (is(w, "temp") || is(w, "temporary")) {
                    decide(verdict, Decision::primary(SESSION));
                }
                if rare.words_after_lead == 4 {
                    decide(verdict, Decision::primary(NOT_READ));
                }
            }
        }
        Some(Lead::Set) => {
            if word.is_some_and(|w| is(w, "statement")) {
                *lead = Some(Lead::SetStatement);
            } else {
                decide(verdict, Decision::primary(SESSION));
            }
        }
        // The variables hold for this one statement: it decides, as if alone.
        Some(Lead::SetStatement) if depth == 0 && word.is_some_and(|w| is(w, "for")) => {
            *lead = None;
            *with = false;
            *body = Body::Pending;
            return Step::Restart;
        }
        Some(Lead::Pragma) => {
            let setter_call = tok == Token::Open
                && matches!(prev, Some(Token::Word(p)) if !takes_a_table_argument(p));
            if tok == Token::Punct(b'=') || setter_call {
                // `PRAGMA user_version = 5`, and `PRAGMA user_version(5)` too.
                decide(verdict, Decision::primary(PRAGMA));
            } else if let Some(w) = word {
                rare.words_after_lead += 1;
                // PRAGMA [schema.]name: the name is the last word before `(` or the end.
                if rare.words_after_lead <= 2 && is_read_only_pragma(w) {
                    *body = Body::Unchecked;
                }
            }
        }
        _ => {}
    }
    Step::Next
}

/// MySQL's own rules for a statement executed as a read, kept out of [`body_rule`] (which
/// every dialect runs on every token) so that its cost stays MySQL's.
#[cold]
#[inline(never)]
fn mysql_rule(
    lead: Token<'_>,
    prev: Option<Token<'_>>,
    prev2: Option<Token<'_>>,
    tok: Token<'_>,
    depth: usize,
) -> Option<Decision> {
    // Variables: `@v`, `@'v'`, `` @`v` `` (a user variable, read or assigned) are the
    // connection's, and so are `@@identity`-like values of its last statements, also as
    // `@@session.identity`. (`@@port`, `@@version`, `@@sql_mode` read the server's or the
    // connection's defaults: any node.)
    let session_variable = |w: &str| MYSQL_SESSION_VARIABLES.iter().any(|v| is(w, v));
    if prev == Some(Token::Punct(b'@')) {
        let system = prev2 == Some(Token::Punct(b'@'));
        match tok {
            Token::Word(w) if system && !session_variable(w) => {}
            Token::Word(_) | Token::Str | Token::QuotedIdent(_) => {
                return Some(Decision::primary(SESSION));
            }
            _ => {}
        }
    }
    let w = match tok {
        Token::Word(w) => w,
        _ => return None,
    };
    // `@@session.last_insert_id` (or any `x.identity`: the same name after a dot is rare
    // enough to send to the primary).
    if prev == Some(Token::Dot) && session_variable(w) {
        return Some(Decision::primary(SESSION));
    }
    // `SHOW WARNINGS` / `SHOW ERRORS` are about the connection's last statement.
    let show = matches!(lead, Token::Word(f) if is(f, "show"));
    if show && depth == 0 && (is(w, "warnings") || is(w, "errors")) {
        return Some(Decision::primary(SESSION));
    }
    None
}

/// Rules for the body of a statement that is executed as a read.
fn body_rule(
    router: &Router,
    prev: Option<Token<'_>>,
    prev2: Option<Token<'_>>,
    tok: Token<'_>,
    word: Option<&str>,
    with: bool,
    depth: usize,
) -> Option<Decision> {
    let dialect = router.dialect;
    if let Some(w) = word {
        if let Some(Token::Word(p)) = prev {
            // FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE; MySQL LOCK IN SHARE MODE.
            if is(p, "for") && (is(w, "update") || is(w, "share") || is(w, "no") || is(w, "key")) {
                return Some(Decision::primary(LOCKING));
            }
            if dialect == Dialect::MySql && is(p, "in") && is(w, "share") {
                return Some(Decision::primary(LOCKING));
            }
            // MariaDB sequences: NEXT VALUE FOR s, PREVIOUS VALUE FOR s.
            if dialect == Dialect::MySql && (is(p, "next") || is(p, "previous")) && is(w, "value") {
                return Some(Decision::primary(functions::SEQUENCE));
            }
        }
        if is(w, "into") {
            return Some(Decision::primary(SELECT_INTO));
        }
        if with
            && ["insert", "update", "delete", "merge"]
                .iter()
                .any(|k| is(w, k))
        {
            return Some(Decision::primary(if depth > 0 {
                DML_CTE
            } else {
                NOT_READ
            }));
        }
        return None;
    }
    if tok != Token::Open {
        return None;
    }
    // A call: a name right before `(`.
    let name = match prev {
        Some(Token::Word(n)) | Some(Token::QuotedIdent(n)) => n,
        _ => return None,
    };
    if let Some(reason) = write_reason(dialect, name) {
        return Some(Decision::primary(reason));
    }
    if router
        .write_functions
        .iter()
        .any(|f| f.eq_ignore_ascii_case(name))
    {
        return Some(Decision::primary(CONFIGURED));
    }
    if router.strict {
        let alias_or_type = match prev2 {
            Some(Token::Word(p)) => is(p, "as") || is(p, "with") || is(p, "recursive"),
            Some(Token::Close) => true,
            _ => false,
        };
        let keyword = matches!(prev, Some(Token::Word(_))) && is_not_a_call(name);
        let allowed = is_read_only_builtin(name)
            || router
                .read_only_functions
                .iter()
                .any(|f| f.eq_ignore_ascii_case(name));
        if !alias_or_type && !keyword && !allowed {
            return Some(Decision::primary(STRICT).overridable());
        }
    }
    None
}

/// The lead of a statement from its first word, and the decision when the word alone decides.
fn lead_of(dialect: Dialect, w: &str) -> (Lead, Option<Decision>) {
    const READ_WORDS: &[&str] = &["select", "values", "table", "show", "with"];
    const SESSION_WORDS: &[&str] = &[
        "set",
        "reset",
        "prepare",
        "deallocate",
        "listen",
        "unlisten",
        "declare",
        "discard",
        "lock",
        "unlock",
        "begin",
        "start",
        "commit",
        "rollback",
        "savepoint",
        "release",
        "end",
        "abort",
        "fetch",
        "move",
        "close",
        "load",
        "use",
        "handler",
        "attach",
        "detach",
    ];
    // MySQL: DO evaluates expressions (checked like a select list), HELP reads the help
    // tables, CHECK / CHECKSUM TABLE only read; DESCRIBE is EXPLAIN, and so is ANALYZE
    // (MariaDB's ANALYZE SELECT runs the query and reports on it).
    const MYSQL_READ_WORDS: &[&str] = &["do", "help", "check", "checksum"];
    let any = |list: &[&str]| list.iter().any(|k| is(w, k));
    let mysql = dialect == Dialect::MySql;
    if any(READ_WORDS) || (mysql && any(MYSQL_READ_WORDS)) {
        (Lead::Read, None)
    } else if is(w, "explain") || (mysql && any(&["describe", "desc", "analyze", "analyse"])) {
        (Lead::Explain, None)
    } else if mysql && is(w, "set") {
        (Lead::Set, None)
    } else if is(w, "copy") && dialect == Dialect::Postgres {
        (Lead::Copy, None)
    } else if is(w, "create") {
        (Lead::Create, None)
    } else if is(w, "pragma") && dialect == Dialect::Sqlite {
        (Lead::Pragma, None)
    } else if any(SESSION_WORDS) {
        (Lead::Decided, Some(Decision::primary(SESSION)))
    } else if is(w, "call") || is(w, "do") {
        (Lead::Decided, Some(Decision::primary(OPAQUE).overridable()))
    } else if is(w, "execute") {
        (Lead::Decided, Some(Decision::primary(EXECUTE)))
    } else if is(w, "notify") {
        (Lead::Decided, Some(Decision::primary(functions::NOTIFY)))
    } else {
        (Lead::Decided, Some(Decision::primary(NOT_READ)))
    }
}

/// MySQL system variables that describe the connection's last statements.
const MYSQL_SESSION_VARIABLES: &[&str] = &[
    "identity",
    "last_insert_id",
    "insert_id",
    "warning_count",
    "error_count",
    "last_gtid",
];

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
        "query",
        "plan",
    ];
    OPTIONS.iter().any(|o| is(w, o))
}

/// SQLite introspection pragmas whose argument names a table or index
/// (`PRAGMA table_info(t)`).
const PRAGMAS_WITH_TABLE_ARGUMENT: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
];

/// SQLite pragmas that report a value when given none (`PRAGMA user_version`); with
/// `= value` or `(value)` they set it.
const PRAGMAS_REPORTING_A_VALUE: &[&str] = &[
    "database_list",
    "collation_list",
    "function_list",
    "module_list",
    "pragma_list",
    "compile_options",
    "page_count",
    "page_size",
    "freelist_count",
    "user_version",
    "schema_version",
    "application_id",
    "data_version",
    "encoding",
    "max_page_count",
];

/// SQLite pragmas that only report (when not given a value to set).
fn is_read_only_pragma(w: &str) -> bool {
    takes_a_table_argument(w) || PRAGMAS_REPORTING_A_VALUE.iter().any(|p| is(w, p))
}

/// For these an argument in parentheses names a table; for every other pragma it sets a
/// value.
fn takes_a_table_argument(w: &str) -> bool {
    PRAGMAS_WITH_TABLE_ARGUMENT.iter().any(|p| is(w, p))
}

fn is(w: &str, k: &str) -> bool {
    w.eq_ignore_ascii_case(k)
}
