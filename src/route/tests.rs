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
        "ALTER TABLE t ADD COLUMN x int",
        "DROP TABLE t",
        "COPY t FROM STDIN",
        "CALL p()",
        "DO $$ BEGIN END $$",
        "BEGIN",
        "COMMIT",
        "SET search_path = x",
        "VACUUM t",
        "LOCK TABLE t",
        "GRANT SELECT ON t TO u",
    ] {
        primary(sql, "not a read-only statement");
    }
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
        primary(sql, "write or volatile function");
    }
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
    primary(
        "EXPLAIN ANALYZE SELECT * FROM t",
        "EXPLAIN ANALYZE executes the statement",
    );
    primary(
        "EXPLAIN (ANALYZE, BUFFERS) SELECT 1",
        "EXPLAIN ANALYZE executes the statement",
    );
    primary("EXPLAIN DELETE FROM t", "not a read-only statement");
    primary("EXPLAIN", "not a read-only statement");
    primary("EXPLAIN SELECT * FROM t FOR UPDATE", "locking clause");
}

#[test]
fn multi_statement_text() {
    replica("SELECT 1; SELECT 2");
    primary("SELECT 1; DELETE FROM t", "not a read-only statement");
    primary(
        "SELECT 1; SELECT nextval('s')",
        "write or volatile function",
    );
    replica(";;SELECT 1;;");
}

#[test]
fn empty_and_garbage() {
    primary("", "empty statement");
    primary("   ", "empty statement");
    primary("-- only a comment", "empty statement");
    primary(";", "empty statement");
    primary("((( ", "unrecognised SQL");
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
