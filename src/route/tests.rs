use super::*;

fn pg(sql: &str) -> Route {
    route(sql)
}

#[track_caller]
fn replica(sql: &str) {
    let r = pg(sql);
    assert_eq!(r.target, Target::Replica, "{sql:?} -> {r:?}");
}

#[track_caller]
fn primary(sql: &str, reason: &str) {
    let r = pg(sql);
    assert_eq!((r.target, r.reason), (Target::Primary, reason), "{sql:?}");
}

#[test]
fn reads_go_to_replicas() {
    for sql in [
        "SELECT 1",
        "select id, name from users where id = $1",
        "  \n\tSeLeCt 1",
        "VALUES (1), (2)",
        "TABLE users",
        "SHOW server_version",
        "WITH t AS (SELECT 1) SELECT * FROM t",
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM t WHERE n < 5) SELECT * FROM t",
        "(SELECT 1) UNION (SELECT 2)",
        "SELECT 1;",
        "SELECT 1; SELECT 2;",
        "SELECT substring('abc' FROM 1 FOR 2)",
        "SELECT now()",
        "SELECT count(*) FROM orders o JOIN users u ON u.id = o.user_id GROUP BY u.id",
    ] {
        replica(sql);
    }
}

#[test]
fn comments_are_skipped() {
    replica("-- leading\nSELECT 1");
    replica("/* a */ /* b /* nested */ */ SELECT 1");
    replica("SELECT 1 -- ; DELETE FROM t");
    replica("SELECT 1 /* ; DELETE FROM t */");
    primary("/* SELECT */ DELETE FROM t", "not a read-only statement");
    primary("-- SELECT\nUPDATE t SET a = 1", "not a read-only statement");
    primary("/* unterminated SELECT 1", "unrecognised SQL");
}

#[test]
fn quoting_hides_keywords() {
    replica("SELECT 'FOR UPDATE', 'x'';DELETE FROM t;'");
    replica("SELECT \"into\", \"for\" FROM \"update\"");
    replica("SELECT $$ ; DELETE FROM t; $$");
    replica("SELECT $fn$ nextval('x') $fn$");
    replica(r"SELECT E'\'; DELETE FROM t; \''");
    primary("SELECT 'a", "unrecognised SQL");
    primary("SELECT $q$ never closed", "unrecognised SQL");
    // In a standard string a backslash is literal: the quote ends the string.
    primary(
        r"SELECT '\'; DELETE FROM t; --'",
        "not a read-only statement",
    );
}

#[test]
fn writes_and_ddl_go_to_primary() {
    for sql in [
        "INSERT INTO t VALUES (1)",
        "update t set a = 1",
        "DELETE FROM t",
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
        "TRUNCATE t",
        "CREATE TABLE t (id int)",
        "CREATE TABLE t (temp int, x int)",
        "CREATE UNLOGGED TABLE t (id int)",
        "ALTER TABLE t ADD COLUMN x int",
        "DROP TABLE t",
        "VACUUM t",
        "GRANT SELECT ON t TO u",
        "REFRESH MATERIALIZED VIEW mv",
        "CREATE TABLE t AS SELECT 1",
    ] {
        primary(sql, "not a read-only statement");
    }
}

#[test]
fn session_state() {
    for sql in [
        "SET search_path = x",
        "set local statement_timeout = '1s'",
        "RESET ALL",
        "PREPARE q AS SELECT 1",
        "DEALLOCATE q",
        "LISTEN ch",
        "UNLISTEN *",
        "DECLARE c CURSOR FOR SELECT 1",
        "FETCH 10 FROM c",
        "CLOSE c",
        "DISCARD ALL",
        "LOCK TABLE t IN ACCESS EXCLUSIVE MODE",
        "BEGIN",
        "START TRANSACTION READ ONLY",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT a",
        "RELEASE SAVEPOINT a",
        "END",
        "CREATE TEMP TABLE t (id int)",
        "CREATE TEMPORARY TABLE t AS SELECT 1",
        "CREATE LOCAL TEMP TABLE t (id int)",
        "CREATE OR REPLACE TEMP VIEW v AS SELECT 1",
        "LOAD 'auto_explain'",
    ] {
        primary(sql, "session state");
    }
}

#[test]
fn opaque_and_primary_only_statements() {
    primary("CALL p()", "procedure or code block");
    primary("DO $$ BEGIN PERFORM 1; END $$", "procedure or code block");
    primary("EXECUTE q(1)", "prepared statement execution");
    primary("NOTIFY ch, 'x'", "notification");
    primary("SELECT pg_notify('ch', 'x')", "notification");
    primary("SELECT currval('s')", "session-bound function");
    primary("SELECT lastval()", "session-bound function");
    primary("SELECT pg_advisory_xact_lock(1)", "advisory lock");
    primary("SELECT pg_current_wal_lsn()", "primary-only function");
}

#[test]
fn copy() {
    replica("COPY users TO STDOUT");
    replica("COPY users (id, name) TO STDOUT WITH (FORMAT csv, HEADER)");
    replica("COPY (SELECT id FROM users WHERE id > 1) TO STDOUT (FORMAT csv)");
    primary("COPY users FROM STDIN", "COPY FROM writes");
    primary("COPY users (id) FROM '/tmp/x.csv'", "COPY FROM writes");
    primary(
        "COPY users TO '/tmp/x.csv'",
        "COPY to a server file or program",
    );
    primary(
        "COPY users TO PROGRAM 'gzip > /tmp/x'",
        "COPY to a server file or program",
    );
    primary(
        "COPY (DELETE FROM t RETURNING *) TO STDOUT",
        "not a read-only statement",
    );
    primary(
        "COPY (SELECT * FROM t FOR UPDATE) TO STDOUT",
        "locking clause",
    );
    primary("COPY (SELECT nextval('s')) TO STDOUT", "sequence function");
}

#[test]
fn hints() {
    replica("/* partypool:replica */ SELECT 1");
    primary("/* partypool:primary */ SELECT 1", "primary hint");
    primary("-- partypool:primary\nSELECT 1", "primary hint");
    // A replica hint never overrides a detected write.
    primary(
        "/* partypool:replica */ DELETE FROM t",
        "not a read-only statement",
    );
    primary(
        "/* partypool:replica */ SELECT nextval('s')",
        "sequence function",
    );
    primary("/* partypool:replica */ SET x = 1", "session state");
    // ...but it does override caution about opaque code.
    assert_eq!(
        pg("/* partypool:replica */ CALL report()").reason,
        "replica hint"
    );
    // Hints count only in leading comments.
    replica("SELECT 1 /* partypool:primary */");
}

#[test]
fn configured_and_strict_functions() {
    let r = Router::new(Dialect::Postgres).write_function("app.bump_counter");
    assert_eq!(
        r.route("SELECT bump_counter()").reason,
        "configured write function"
    );
    assert_eq!(
        r.route("SELECT app.BUMP_COUNTER()").reason,
        "configured write function"
    );
    assert_eq!(
        r.route("SELECT \"bump_counter\"()").reason,
        "configured write function"
    );
    assert_eq!(
        r.route("SELECT bump_counter FROM t").target,
        Target::Replica
    );

    let s = Router::new(Dialect::Postgres).strict_functions(["order_total"]);
    for sql in [
        "SELECT count(*), lower(name), coalesce(a, b) FROM users WHERE id IN (1, 2)",
        "SELECT order_total(1)",
        "SELECT x::numeric(10, 2), CAST(y AS varchar(20)) FROM t",
        "SELECT * FROM generate_series(1, 3) AS g(n)",
        "SELECT * FROM generate_series(1, 3) g(n)",
        "WITH RECURSIVE t(n) AS (SELECT 1) SELECT * FROM t",
        "SELECT EXISTS (SELECT 1) AND NOT (a OR b)",
        "SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t",
    ] {
        let route = s.route(sql);
        assert_eq!(route.target, Target::Replica, "{sql}: {route:?}");
    }
    assert_eq!(
        s.route("SELECT audit(1)").reason,
        "function not on the read-only list"
    );
    assert_eq!(
        s.decide("SELECT audit(1)", Some(Target::Replica))
            .route()
            .reason,
        "replica hint"
    );
    assert_eq!(
        s.decide("SELECT 1", Some(Target::Primary)).target,
        Target::Primary
    );
    // The default router does not care about unknown functions.
    replica("SELECT audit(1)");
}

#[test]
fn sqlite_pragmas() {
    let sqlite = |sql: &str| route_in(Dialect::Sqlite, sql);
    assert_eq!(sqlite("PRAGMA table_info(users)").target, Target::Replica);
    assert_eq!(
        sqlite("PRAGMA main.index_list(users)").target,
        Target::Replica
    );
    assert_eq!(sqlite("PRAGMA user_version").target, Target::Replica);
    assert_eq!(sqlite("PRAGMA user_version = 3").reason, "pragma");
    assert_eq!(sqlite("PRAGMA journal_mode = WAL").reason, "pragma");
    assert_eq!(sqlite("PRAGMA wal_checkpoint(TRUNCATE)").reason, "pragma");
    assert_eq!(sqlite("PRAGMA optimize").reason, "pragma");
    assert_eq!(sqlite("PRAGMA user_version(5)").reason, "pragma");
    assert_eq!(sqlite("PRAGMA main.max_page_count(10)").reason, "pragma");
}

#[test]
fn locking_clauses() {
    for sql in [
        "SELECT * FROM t FOR UPDATE",
        "SELECT * FROM t for no key update",
        "SELECT * FROM t FOR SHARE",
        "SELECT * FROM t FOR KEY SHARE",
        "SELECT * FROM t WHERE id IN (SELECT id FROM u FOR UPDATE)",
        "SELECT * FROM jobs FOR UPDATE SKIP LOCKED LIMIT 1",
        "WITH x AS (SELECT * FROM t FOR UPDATE) SELECT * FROM x",
    ] {
        primary(sql, "locking clause");
    }
    assert_eq!(
        route_in(Dialect::MySql, "SELECT * FROM t LOCK IN SHARE MODE").reason,
        "locking clause"
    );
}

#[test]
fn data_modifying_ctes() {
    for sql in [
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
        "WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM u",
        "with i as (insert into t values (1) returning id) select id from i",
        "WITH a AS (SELECT 1), b AS (WITH c AS (DELETE FROM t RETURNING 1) SELECT * FROM c) SELECT 1",
    ] {
        primary(sql, "data-modifying CTE");
    }
    // A WITH whose main statement writes is a write.
    assert_eq!(
        pg("WITH s AS (SELECT 1) INSERT INTO t SELECT * FROM s").target,
        Target::Primary
    );
}

#[test]
fn select_into() {
    primary("SELECT * INTO new_table FROM t", "SELECT INTO writes");
    assert_eq!(
        route_in(Dialect::MySql, "SELECT a INTO @x FROM t").reason,
        "SELECT INTO writes"
    );
}

#[test]
fn write_functions() {
    for sql in [
        "SELECT nextval('s')",
        "SELECT NEXTVAL('s')",
        "SELECT pg_catalog.nextval('s')",
        "SELECT setval('s', 10)",
        "SELECT pg_advisory_lock(1)",
        "SELECT pg_try_advisory_xact_lock(1)",
        "SELECT pg_advisory_unlock_all()",
        "SELECT id, nextval ('s') FROM t",
        "SELECT txid_current()",
        "SELECT pg_notify('c', 'x')",
    ] {
        assert_eq!(pg(sql).target, Target::Primary, "{sql}");
    }
    primary("SELECT txid_current()", "write or volatile function");
    primary("SELECT nextval('s')", "sequence function");
    // A column named like a function is not a call.
    replica("SELECT nextval FROM t");
    assert_eq!(
        route_in(Dialect::MySql, "SELECT GET_LOCK('x', 1)").target,
        Target::Primary
    );
    assert_eq!(
        route_in(Dialect::MySql, "SELECT NEXT VALUE FOR s").target,
        Target::Primary
    );
}

#[test]
fn explain() {
    replica("EXPLAIN SELECT * FROM t");
    replica("EXPLAIN (FORMAT JSON, COSTS OFF) SELECT * FROM t");
    replica("EXPLAIN VERBOSE SELECT 1");
    // Without ANALYZE nothing runs: even a write's plan can come from a replica.
    assert_eq!(pg("EXPLAIN DELETE FROM t").reason, "EXPLAIN only plans");
    assert_eq!(
        pg("EXPLAIN INSERT INTO t VALUES (1)").target,
        Target::Replica
    );
    // With ANALYZE the statement runs: only reads may.
    replica("EXPLAIN ANALYZE SELECT * FROM t");
    replica("EXPLAIN (ANALYZE, BUFFERS) SELECT 1");
    primary(
        "EXPLAIN ANALYZE DELETE FROM t",
        "EXPLAIN ANALYZE executes the statement",
    );
    primary(
        "EXPLAIN (ANALYZE) UPDATE t SET a = 1",
        "EXPLAIN ANALYZE executes the statement",
    );
    primary(
        "EXPLAIN ANALYZE SELECT * FROM t FOR UPDATE",
        "locking clause",
    );
    primary("EXPLAIN ANALYZE SELECT nextval('s')", "sequence function");
    primary(
        "EXPLAIN ANALYZE WITH d AS (DELETE FROM t RETURNING 1) SELECT * FROM d",
        "data-modifying CTE",
    );
    primary(
        "EXPLAIN CREATE TABLE x AS SELECT 1",
        "not a read-only statement",
    );
    primary("EXPLAIN EXECUTE q", "not a read-only statement");
    primary("EXPLAIN", "not a read-only statement");
    assert_eq!(
        pg("EXPLAIN (ANALYZE false, COSTS off) DELETE FROM t").target,
        Target::Replica
    );
    assert_eq!(
        pg("EXPLAIN (ANALYZE off) UPDATE t SET a = 1").target,
        Target::Replica
    );
    primary(
        "EXPLAIN (ANALYZE on) UPDATE t SET a = 1",
        "EXPLAIN ANALYZE executes the statement",
    );
    primary(
        "EXPLAIN (ANALYZE 1) UPDATE t SET a = 1",
        "EXPLAIN ANALYZE executes the statement",
    );
}

#[test]
fn multi_statement_text() {
    replica("SELECT 1; SELECT 2");
    primary("SELECT 1; DELETE FROM t", "not a read-only statement");
    primary("SELECT 1; SELECT nextval('s')", "sequence function");
    replica(";;SELECT 1;;");
}

#[test]
fn empty_and_garbage() {
    primary("", "empty statement");
    primary("   ", "empty statement");
    primary("-- only a comment", "empty statement");
    primary(";", "empty statement");
    primary("((( ", "unrecognised SQL");
    primary(";;  ;", "empty statement");
    primary("\u{0}\u{1}", "unrecognised SQL");
}

#[test]
fn dialects() {
    assert_eq!(
        route_in(Dialect::MySql, "DESCRIBE t").target,
        Target::Replica
    );
    assert_eq!(
        route_in(Dialect::Postgres, "DESCRIBE t").target,
        Target::Primary
    );
    assert_eq!(
        route_in(Dialect::MySql, "SELECT `select` FROM `t;DELETE`").target,
        Target::Replica
    );
    assert_eq!(
        route_in(Dialect::MySql, r"SELECT 'a\';DELETE FROM t'").target,
        Target::Replica
    );
    assert_eq!(
        route_in(Dialect::Sqlite, "SELECT [order] FROM t").target,
        Target::Replica
    );
    assert_eq!(
        route_in(Dialect::Sqlite, "SELECT last_insert_rowid()").target,
        Target::Primary
    );
}

#[test]
fn line_endings_and_odd_whitespace() {
    primary(
        "SELECT * FROM jobs --x\rFOR UPDATE SKIP LOCKED",
        "locking clause",
    );
    primary("SELECT 1 --\r; DELETE FROM t", "not a read-only statement");
    primary("SELECT * FROM t FOR\x0bUPDATE", "locking clause");
    primary("SELECT nextval\x0b('s')", "sequence function");
    primary("SELECT U&\"\\006Eextval\"('s')", "unrecognised SQL");
    // U&'…' strings stay opaque strings.
    replica("SELECT U&'d\\0061t\\+000061'");
}

#[test]
fn mysql_double_dash_needs_whitespace() {
    let mysql = |sql: &str| route_in(Dialect::MySql, sql);
    assert_eq!(
        mysql("SELECT * FROM t WHERE id=1--1 FOR UPDATE").reason,
        "locking clause"
    );
    assert_eq!(mysql("SELECT 1 -- FOR UPDATE").target, Target::Replica);
    assert_eq!(mysql("SELECT 1 --").target, Target::Replica);
}

/// MySQL runs `/*! … */` and MariaDB also `/*M! … */` comments as code: their content is
/// classified as code, so a lock or a write hidden in one sends the text to the primary, and
/// a harmless one (a hint, a version-gated clause) leaves a read on a replica (a plain
/// `/* … */` is a comment).
#[test]
fn executable_comments_are_code() {
    let mysql = |sql: &str| route_in(Dialect::MySql, sql);
    for (sql, reason) in [
        ("SELECT /*! GET_LOCK('x', 1) */ 1", "advisory lock"),
        ("SELECT /*M! GET_LOCK('x', 1) */ 1", "advisory lock"),
        (
            "SELECT * FROM t /*M!100000 LOCK IN SHARE MODE */",
            "locking clause",
        ),
        ("SELECT * FROM t /*!50000 FOR UPDATE */", "locking clause"),
        ("/*!40101 SET NAMES utf8mb4 */", "session state"),
        (
            "SELECT 1 /*! ; DELETE FROM t */",
            "not a read-only statement",
        ),
        ("SELECT /*! 1", "unrecognised SQL"),
    ] {
        let r = mysql(sql);
        assert_eq!((r.target, r.reason), (Target::Primary, reason), "{sql}");
    }
    for sql in [
        "/*!40101 SELECT 1 */",
        "SELECT /*!STRAIGHT_JOIN*/ u.id FROM u JOIN o ON o.u = u.id",
        "SELECT * FROM users WHERE id = 1 /*!50000 LIMIT 1 */",
        "SELECT 1 /*M!100100 + 1 */ AS two",
    ] {
        assert_eq!(mysql(sql).target, Target::Replica, "{sql}");
    }
    assert_eq!(
        mysql("SELECT /* M! not executable */ 1").target,
        Target::Replica
    );
    assert_eq!(
        mysql("SELECT /*M not executable */ 1").target,
        Target::Replica
    );
    // PostgreSQL has no executable comments.
    assert_eq!(route("SELECT /*M! x */ 1").target, Target::Replica);
}

/// MySQL statements a MariaDB replica answers or refuses, as measured on one (the MySQL
/// corpus has them all): EXPLAIN of a write is refused; DO, HELP, CHECK, ANALYZE SELECT,
/// DESCRIBE and SET STATEMENT … FOR SELECT are reads; variables of the connection are not.
#[test]
fn mysql_statements_judged_by_mariadb() {
    let mysql = |sql: &str| {
        let r = route_in(Dialect::MySql, sql);
        (r.target, r.reason)
    };
    for (sql, reason) in [
        (
            "EXPLAIN UPDATE t SET a = 1",
            "EXPLAIN of a write (a MariaDB replica refuses it)",
        ),
        (
            "DESCRIBE DELETE FROM t",
            "EXPLAIN of a write (a MariaDB replica refuses it)",
        ),
        (
            "EXPLAIN FORMAT=JSON REPLACE INTO t VALUES (1)",
            "EXPLAIN of a write (a MariaDB replica refuses it)",
        ),
        (
            "ANALYZE UPDATE t SET a = 1",
            "EXPLAIN ANALYZE executes the statement",
        ),
        ("ANALYZE TABLE t", "not a read-only statement"),
        (
            "ANALYZE NO_WRITE_TO_BINLOG TABLE t",
            "not a read-only statement",
        ),
        ("ANALYZE SELECT * FROM t FOR UPDATE", "locking clause"),
        (
            "SET STATEMENT max_statement_time = 1 FOR UPDATE t SET a = 1",
            "not a read-only statement",
        ),
        (
            "SET STATEMENT max_statement_time = 1 FOR SELECT * FROM t FOR UPDATE",
            "locking clause",
        ),
        ("SET STATEMENT max_statement_time = 1", "session state"),
        ("SET @x = 1", "session state"),
        ("SELECT @x := 1", "session state"),
        ("SELECT @uid", "session state"),
        ("SELECT @@identity", "session state"),
        ("SHOW WARNINGS", "session state"),
        ("SHOW COUNT(*) ERRORS", "session state"),
        ("DO GET_LOCK('x', 0)", "advisory lock"),
        ("SELECT IS_FREE_LOCK('x')", "advisory lock"),
        ("SELECT CONNECTION_ID()", "session-bound function"),
    ] {
        assert_eq!(mysql(sql), (Target::Primary, reason), "{sql}");
    }
    for sql in [
        "EXPLAIN SELECT * FROM t",
        "EXPLAIN users",
        "DESC `orders`",
        "DESCRIBE users",
        "ANALYZE SELECT * FROM t",
        "ANALYZE FORMAT=JSON SELECT COUNT(*) FROM t",
        "SET STATEMENT max_statement_time = 10 FOR SELECT COUNT(*) FROM t",
        "DO 1",
        "DO SLEEP(0)",
        "HELP 'SELECT'",
        "CHECK TABLE t EXTENDED",
        "CHECKSUM TABLE t, u",
        "SELECT SLEEP(0), BENCHMARK(1, MD5('x'))",
        "SELECT @@port, @@read_only, @@session.sql_mode",
        "SHOW SESSION VARIABLES LIKE 'sql_mode'",
    ] {
        assert_eq!(mysql(sql).0, Target::Replica, "{sql}");
    }
    // PostgreSQL keeps its own meanings: DO is a code block, ANALYZE writes statistics.
    assert_eq!(route("DO $$ BEGIN END $$").target, Target::Primary);
    assert_eq!(route("ANALYZE t").target, Target::Primary);
    assert_eq!(route("EXPLAIN UPDATE t SET a = 1").target, Target::Replica);
}

/// Found in review: a version-gated executable comment is code to one server and a comment
/// to another, so a replica needs both readings to agree; and `SET STATEMENT … FOR` restarts
/// the statement with its own first word.
#[test]
fn gated_comments_and_set_statement_cannot_smuggle_work_to_a_replica() {
    let mysql = |sql: &str| route_in(Dialect::MySql, sql).target;
    for sql in [
        "/*!99999 EXPLAIN */ SELECT GET_LOCK('job', 0)",
        "/*!80000 EXPLAIN */ SELECT * FROM jobs WHERE id = 1 FOR UPDATE",
        "SET /*!99999 STATEMENT a=1 FOR SELECT */ autocommit = 0",
        "SELECT 1 /*!99999 ' */, GET_LOCK('job',0) -- ' */",
        "SELECT 1 /*M!100100 ' */, GET_LOCK('job',0) -- ' */",
        "SET STATEMENT max_statement_time = 10 FOR ANALYZE TABLE orders",
        "SET STATEMENT max_statement_time = 10 FOR SHOW WARNINGS",
        "EXPLAIN FORMAT=JSON INTO @plan SELECT 1",
        "EXPLAIN FOR CONNECTION 5",
        "SELECT @'n' := 1",
        "SELECT @`n`",
        "SELECT @@session.last_insert_id",
    ] {
        assert_eq!(mysql(sql), Target::Primary, "{sql}");
    }
    // Both readings agree: a replica.
    for sql in [
        "SELECT * FROM users WHERE id = 1 /*!50000 LIMIT 1 */",
        "SELECT 1 /*M!100100 + 1 */ AS two",
        "SELECT /*!STRAIGHT_JOIN*/ 1",
    ] {
        assert_eq!(mysql(sql), Target::Replica, "{sql}");
    }
}
