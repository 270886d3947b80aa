//! [`Status`]: a snapshot of every node, printable as a table.

use std::fmt;

use serde::Serialize;

pub use crate::roles::Role;

/// A snapshot of the pool, from [`ReplicaPool::status`](crate::ReplicaPool::status).
///
/// Its `Display` is a table; it also serializes (e.g. to JSON for a health endpoint). URLs
/// have their passwords replaced by `***`.
///
/// ```text
/// NODE       ROLE                        FROM      ZONE        STATE  LAG        LATENCY  IN-FLIGHT  QUERIES  ERRORS  RETRIES  MISROUTES  URL                                     LAST ERROR
/// primary    primary (not writer)        declared  eu-west-1a  down   -           0.41ms          0       76       1        0          0  postgres://app:***@127.0.0.1:40745/app  error communicating with database: Connection refused (os error 111)
/// replica-1  replica (promoted, writer)  declared  eu-west-1a  up     -           0.38ms          1      312       0        0          0  postgres://app:***@127.0.0.1:44441/app  -
/// replica-2  replica                     declared  eu-west-1b  up     299ms/48B   0.35ms          0      940       0        2          0  postgres://app:***@127.0.0.1:33115/app  -
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Status {
    /// The node taking the writes first, then the others in configuration order.
    pub nodes: Vec<NodeStatus>,
    /// Whether the pool has been closed.
    pub closed: bool,
    /// How long the last health round took: every node probed at once, then the writer
    /// chosen and lag measured (`None` until the first round after `connect`).
    #[serde(with = "humantime_serde")]
    pub health_round: Option<std::time::Duration>,
}

/// Where a node stands in the rotation, as the `STATE` column shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum NodeState {
    /// Reachable and serving (reads on a replica, writes on the writer).
    Up,
    /// Not reachable: its last probe failed (or a connection error since).
    Down,
    /// Reachable but out of the reads for lagging behind the primary.
    Lagging,
    /// Reachable but kept out: another cluster, a deposed writer, a broken replication
    /// channel, a Patroni veto… ([`NodeStatus::excluded`] says why).
    Excluded,
    /// Up when last probed, and not probed since: the pool is idle
    /// ([`Config::idle_probe_after`](crate::Config::idle_probe_after)); the next read that
    /// picks it probes it first.
    Resting,
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeState::Up => "up",
            NodeState::Down => "down",
            NodeState::Lagging => "lagging",
            NodeState::Excluded => "excluded",
            NodeState::Resting => "resting",
        })
    }
}

/// One node in a [`Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct NodeStatus {
    /// `primary`, `replica-1`, `replica-2`, …
    pub name: String,
    /// The URL with its password redacted.
    pub url: String,
    /// The role it was configured with.
    pub role: Role,
    /// Whether it takes the writes now (the configured primary, or a promoted replica).
    pub writer: bool,
    /// Up, down, lagging or excluded (the `STATE` column).
    pub state: NodeState,
    /// Whether it is reachable (the last probe succeeded, no connection error since).
    pub healthy: bool,
    /// Whether it is out of the rotation for lagging behind the primary.
    pub lagging: bool,
    /// What the last successful probe said: `Some(true)` for a standby, `None` if unknown.
    pub in_recovery: Option<bool>,
    /// How many bytes of the primary's log it has not replayed yet (standbys only).
    pub lag_bytes: Option<u64>,
    /// How far behind the primary it is in time (standbys only; zero when caught up).
    #[serde(with = "humantime_serde")]
    pub lag: Option<std::time::Duration>,
    /// Statements (and transactions) dispatched to it.
    pub queries: u64,
    /// Statements that failed on it.
    pub errors: u64,
    /// Reads that failed on it (connection error, timeout, it left the rotation) and ran
    /// again on another node.
    pub retries: u64,
    /// Reads that failed on it because a schema change invalidated their cached plan
    /// (PostgreSQL's "cached plan must not change result type"): the connection's cached
    /// statements were dropped and the read ran again. Also `partypool_replans_total`.
    pub replans: u64,
    /// Statements it refused as writes although they were routed as reads; each then ran on
    /// the primary. Non-zero means the router misjudged something: consider
    /// `Config::write_functions`.
    pub misroutes: u64,
    /// Statements running on it now.
    pub in_flight: u32,
    /// Its recent statement latency (peak EWMA; zero before the first statement).
    #[serde(with = "humantime_serde")]
    pub latency: std::time::Duration,
    /// Open connections (idle and in use).
    pub connections: u32,
    /// Idle connections.
    pub idle: usize,
    /// The last reason it was marked unhealthy (kept after it recovers), password scrubbed.
    pub last_error: Option<String>,
    /// Why a reachable node serves neither reads nor writes, e.g. `another cluster` (its
    /// system identifier is not the primary's) or `claims the primary role while primary
    /// takes the writes` (an accidental promotion, or an unfenced old primary).
    pub excluded: Option<String>,
    /// Its timeline as the last probe saw it (PostgreSQL; a promotion increments it).
    pub timeline: Option<u64>,
    /// Its MariaDB GTID position (`@@gtid_binlog_pos` on a primary, `@@gtid_slave_pos` on a
    /// replica), server ids shown as 0.
    pub gtid_position: Option<String>,
    /// MySQL/MariaDB: its replication threads (IO/SQL state, last errors), or why the probe
    /// could not read them.
    pub replication: Option<crate::backend::Replication>,
    /// How it became a member: declared, one host of a multi-host URL, added at run time.
    pub origin: crate::roles::Origin,
    /// Its zone, when one was given ([`Builder::in_zone`](crate::Builder::in_zone), a
    /// `zone` URL parameter, a Patroni `zone` tag).
    pub zone: Option<String>,
}

impl Status {
    /// The node with this name, if any.
    ///
    /// ```no_run
    /// # fn demo(pool: partypool::PgReplicaPool) {
    /// let served = pool.status().node("replica-1").map(|n| n.queries);
    /// # }
    /// ```
    pub fn node(&self, name: &str) -> Option<&NodeStatus> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The node taking the writes now (the configured primary, or the node promoted in its
    /// place), if any.
    ///
    /// ```no_run
    /// # fn demo(pool: partypool::PgReplicaPool) {
    /// if let Some(writer) = pool.status().writer() {
    ///     println!("writes go to {} ({})", writer.name, writer.state);
    /// }
    /// # }
    /// ```
    pub fn writer(&self) -> Option<&NodeStatus> {
        self.nodes.iter().find(|n| n.writer)
    }
}

impl NodeStatus {
    /// The role column: the configured role, and what the node really is when that differs.
    fn role_cell(&self) -> String {
        match (self.role, self.writer, self.in_recovery) {
            (Role::Primary, true, Some(true)) => "primary (in recovery!)".into(),
            (Role::Primary, false, _) => "primary (not writer)".into(),
            (Role::Replica, true, _) => "replica (promoted, writer)".into(),
            (Role::Replica, false, Some(false)) => "replica (not in recovery!)".into(),
            (Role::Discovered, true, _) => "writer".into(),
            (Role::Discovered, false, Some(true)) => "replica".into(),
            (Role::Discovered, false, Some(false)) => "primary (not writer)".into(),
            (Role::Discovered, false, None) => "unknown".into(),
            (role, _, _) => role.to_string(),
        }
    }

    /// The state from the other fields (`resting`: not probed while the pool is idle).
    pub(crate) fn state_of(
        healthy: bool,
        excluded: bool,
        lagging: bool,
        resting: bool,
    ) -> NodeState {
        match (healthy, excluded, lagging) {
            (false, _, _) => NodeState::Down,
            (true, true, _) => NodeState::Excluded,
            (true, false, true) => NodeState::Lagging,
            (true, false, false) if resting => NodeState::Resting,
            (true, false, false) => NodeState::Up,
        }
    }

    fn lag_cell(&self) -> String {
        match (self.lag, self.lag_bytes) {
            // MariaDB's distance is in transactions (GTIDs), not bytes.
            (Some(t), Some(b)) if self.gtid_position.is_some() => {
                format!("{}ms/{b}tx", t.as_millis())
            }
            (Some(t), Some(b)) => format!("{}ms/{b}B", t.as_millis()),
            _ => "-".into(),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const COLUMNS: usize = 14;
        let header: [&str; COLUMNS] = [
            "NODE",
            "ROLE",
            "FROM",
            "ZONE",
            "STATE",
            "LAG",
            "LATENCY",
            "IN-FLIGHT",
            "QUERIES",
            "ERRORS",
            "RETRIES",
            "MISROUTES",
            "URL",
            "LAST ERROR",
        ];
        let rows: Vec<[String; COLUMNS]> = self
            .nodes
            .iter()
            .map(|n| {
                [
                    n.name.clone(),
                    n.role_cell(),
                    n.origin.to_string(),
                    n.zone.clone().unwrap_or_else(|| "-".into()),
                    n.state.to_string(),
                    n.lag_cell(),
                    format!("{:.2}ms", n.latency.as_secs_f64() * 1000.0),
                    n.in_flight.to_string(),
                    n.queries.to_string(),
                    n.errors.to_string(),
                    n.retries.to_string(),
                    n.misroutes.to_string(),
                    n.url.clone(),
                    match (&n.excluded, &n.last_error) {
                        (Some(why), _) => format!("excluded: {why}"),
                        (None, Some(e)) => e.clone(),
                        (None, None) => "-".into(),
                    },
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: &[&str]| -> fmt::Result {
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                let right = matches!(i, 6..=11);
                match (i + 1 == cells.len(), right) {
                    (true, _) => write!(f, "{cell}")?,
                    (false, true) => write!(f, "{cell:>w$}  ")?,
                    (false, false) => write!(f, "{cell:<w$}  ")?,
                }
            }
            writeln!(f)
        };
        line(f, &header)?;
        for row in &rows {
            let cells: Vec<&str> = row.iter().map(String::as_str).collect();
            line(f, &cells)?;
        }
        for n in &self.nodes {
            if let Some(why) = n.replication.as_ref().and_then(|r| r.unavailable.as_ref()) {
                writeln!(f, "{}: {why}", n.name)?;
            }
        }
        if self.closed {
            writeln!(f, "(closed)")?;
        }
        Ok(())
    }
}
