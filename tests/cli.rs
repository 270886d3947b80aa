//! The `partypool` command-line tool.
#![cfg(feature = "cli")]

use std::io::Write;
use std::process::{Command, Stdio};

fn partypool(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_partypool"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn route_one_statement() {
    let (ok, out, _) = partypool(&["route", "SELECT * FROM jobs FOR UPDATE SKIP LOCKED"], "");
    assert!(ok);
    assert_eq!(out, "primary\tlocking clause\n");
    let (_, out, _) = partypool(&["route", "SELECT 1"], "");
    assert_eq!(out, "replica\tread-only statement\n");
    let (_, out, _) = partypool(
        &["route", "--dialect", "mysql", "SELECT 1 # ; DELETE FROM t"],
        "",
    );
    assert_eq!(out, "replica\tread-only statement\n");
    let (_, out, _) = partypool(&["route", "--write-function", "bump", "SELECT bump()"], "");
    assert_eq!(out, "primary\tconfigured write function\n");
    let (_, out, _) = partypool(&["route", "--strict", "SELECT mystery(1)"], "");
    assert_eq!(out, "primary\tfunction not on the read-only list\n");
}

#[test]
fn jsonl_keeps_order_and_survives_bad_lines() {
    let input = concat!(
        "{\"sql\": \"SELECT 1\"}\n",
        "not json\n",
        "{\"sql\": \"DELETE FROM t\"}\n",
        "{\"query\": \"SELECT 1\"}\n",
        "\n",
        "{\"sql\": \"SELECT nextval('s')\"}\n",
    );
    let (ok, out, _) = partypool(&["route", "--jsonl"], input);
    assert!(ok);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(
        lines[0],
        serde_json::json!({"target": "replica", "reason": "read-only statement"})
    );
    assert!(lines[1]["error"].is_string());
    assert_eq!(
        lines[2],
        serde_json::json!({"target": "primary", "reason": "not a read-only statement"})
    );
    assert!(lines[3]["error"].is_string());
    assert!(lines[4]["error"].is_string());
    assert_eq!(lines[5]["reason"], "sequence function");
}

#[test]
fn usage_errors_are_clear() {
    let (ok, _, err) = partypool(&["route"], "");
    assert!(!ok);
    assert!(err.contains("SQL"), "{err}");
    let (ok, _, err) = partypool(&["route", "--dialect", "oracle", "SELECT 1"], "");
    assert!(!ok);
    assert!(err.contains("oracle"), "{err}");
}

/// The clusters of the crate's testing kit (the checks' own support module needs their
/// dev-dependencies).
mod support {
    pub use partypool::testing::{PgCluster, SECRET, free_port};
}

#[test]
fn status_prints_the_topology_and_exits_by_the_primary() {
    let c = support::PgCluster::start(1);
    let dead = format!(
        "postgres://postgres:{}@127.0.0.1:{}/postgres",
        support::SECRET,
        support::free_port()
    );
    let (ok, out, err) = partypool(
        &[
            "status",
            "--primary",
            &c.primary_url(),
            "--replica",
            &c.url(1),
            "--replica",
            &dead,
        ],
        "",
    );
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("NODE") && lines[0].contains("LAG") && lines[0].contains("IN-FLIGHT"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("primary") && lines[1].contains(" up "),
        "{out}"
    );
    assert!(
        lines[2].starts_with("replica-1") && lines[2].contains(" up "),
        "{out}"
    );
    assert!(
        lines[3].starts_with("replica-2") && lines[3].contains(" down "),
        "{out}"
    );
    assert!(!out.contains(support::SECRET) && !err.contains(support::SECRET));

    // No role declared: a multi-host URL, the probes find the primary.
    let (ok, out, err) = partypool(&["status", "--nodes", &c.multi_host_url(&[1, 0])], "");
    assert!(ok, "{err}");
    let primary = format!("127.0.0.1:{}", c.primary().port);
    let row = out
        .lines()
        .find(|l| l.starts_with(&primary))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        row.contains("writer") && row.contains("multi-host"),
        "{out}"
    );

    // From the environment.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_partypool"))
        .arg("status")
        .env("PARTYPOOL_PRIMARY_URL", c.primary_url())
        .env("PARTYPOOL_REPLICA_URLS", format!("{},{}", c.url(1), dead))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 4);

    // An unreachable primary: a clear message, a non-zero exit, no password.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_partypool"))
        .args(["status", "--timeout", "1s", "--primary", &dead])
        .env_remove("PARTYPOOL_REPLICA_URLS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("primary") && err.contains("unreachable") && !err.contains(support::SECRET),
        "{err}"
    );
}
