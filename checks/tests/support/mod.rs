//! Test support: the crate's testing kit (`partypool::testing`: real PostgreSQL and MariaDB
//! clusters) plus what only these tests use (Patroni, a fault proxy, the routing corpus).
#![allow(dead_code, unused_imports)]

pub mod corpus;
pub mod patroni;
pub mod proxy;
pub mod run;
pub mod tls;

pub use partypool::testing::{
    PgCluster, PgNode, SECRET, Watchdog, check, free_port, is_root, pg_bin, run_as_postgres,
    scratch_root, shared,
};

/// The MariaDB cluster, under the name these tests use.
pub mod mariadb {
    pub use partypool::testing::MariaDbCluster as MariaCluster;
}
