//! Test support: the crate's testing kit (`partypool::testing`: real PostgreSQL and MariaDB
//! clusters) plus what only these tests use (Patroni, a fault proxy, the routing corpus).
#![allow(dead_code, unused_imports)]

pub mod corpus;
pub mod patroni;
pub mod proxy;
pub mod run;

use std::process::{Command, Output};

pub use partypool::testing::{
    PgCluster, PgNode, SECRET, Watchdog, free_port, pg_bin, run_as_postgres, scratch_root, shared,
};

/// The MariaDB cluster, under the name these tests use.
pub mod mariadb {
    pub use partypool::testing::MariaDbCluster as MariaCluster;
}

pub(crate) fn check(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
