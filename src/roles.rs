//! What a node is to the pool: the role it was declared with and where it came from.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The role a node was configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Role {
    /// The write primary.
    Primary,
    /// A read replica.
    Replica,
    /// Not declared: the probes tell. It serves reads while it is a standby (in recovery)
    /// and may take the writes while it is not.
    Discovered,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Discovered => "discovered",
        })
    }
}

/// How a node became a member of the pool, as `status()` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Origin {
    /// Named with its role: `Builder::primary` / `Builder::replica` with one host.
    Declared,
    /// One host of a libpq-style multi-host URL (`postgres://h1:5432,h2:5433/db`), or a
    /// `Builder::node`.
    MultiHost,
    /// Added while the pool runs (`ReplicaPool::add_node` / `add_replica`).
    Added,
    /// One address of a DNS name (`Builder::dns`), followed as the name changes.
    Dns,
    /// A member Patroni reports (`Builder::patroni`).
    Patroni,
    /// A replica simulated on the primary's server (`Builder::simulate_replicas`).
    Simulated,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Declared => "declared",
            Origin::MultiHost => "multi-host",
            Origin::Added => "added",
            Origin::Dns => "dns",
            Origin::Patroni => "patroni",
            Origin::Simulated => "simulated",
        })
    }
}
