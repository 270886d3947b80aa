//! Log positions: where a primary's log is and how far a replica has replayed it.
//!
//! PostgreSQL's WAL position (an LSN in bytes) on a timeline, and MariaDB's GTID position per
//! replication domain ([`GtidSet`]). Pure values: the ground that backends, nodes, the
//! cluster's decisions and read-your-writes all stand on.

mod gtid;

pub use gtid::GtidSet;

/// What a backend offers for read-your-writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CausalSupport {
    /// Log positions: the primary's after a write, each replica's replayed one.
    Positions,
    /// GTID positions per replication domain (MariaDB): the primary's after a write, each
    /// replica's applied one.
    Gtids,
    /// Replicas see every committed write at once (SQLite readers of the same file).
    Immediate,
    /// Nothing: fall back to time.
    Unsupported,
}

impl CausalSupport {
    /// Whether sessions track log positions (PostgreSQL's LSNs or MariaDB's GTIDs).
    pub(crate) fn by_position(self) -> bool {
        matches!(self, CausalSupport::Positions | CausalSupport::Gtids)
    }
}

/// A point in the primary's log, as captured right after a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogPosition {
    /// The position in bytes (PostgreSQL's WAL LSN; MariaDB: [`GtidSet::total`]).
    pub position: u64,
    /// The timeline it is on (PostgreSQL), which a promotion increments.
    pub timeline: Option<u64>,
    /// MariaDB's GTID position, per replication domain.
    pub gtids: Option<GtidSet>,
}

impl LogPosition {
    /// A PostgreSQL-style position.
    pub fn new(position: u64, timeline: Option<u64>) -> Self {
        LogPosition {
            position,
            timeline,
            gtids: None,
        }
    }

    /// A MariaDB GTID position.
    pub fn gtid(gtids: GtidSet) -> Self {
        LogPosition {
            position: gtids.total(),
            timeline: None,
            gtids: Some(gtids),
        }
    }
}

/// A log position on a timeline: "my reads must see at least this".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct At {
    /// PostgreSQL's LSN; for MariaDB the total of `gtids`, which a replica that has
    /// applied `gtids` is never below (a quick first test).
    pub(crate) position: u64,
    /// PostgreSQL's timeline (a promotion starts a new one); `None` when the backend has
    /// none. Positions on different timelines are not comparable.
    pub(crate) timeline: Option<u64>,
    /// MariaDB: the GTID position per domain, which decides.
    pub(crate) gtids: Option<GtidSet>,
}

impl At {
    pub(crate) fn from_log(p: LogPosition) -> At {
        At {
            position: p.position,
            timeline: p.timeline,
            gtids: p.gtids,
        }
    }

    /// Whether `self` is past `other` somewhere (on the same timeline).
    pub(crate) fn ahead_of(&self, other: &At) -> bool {
        match (&self.gtids, &other.gtids) {
            (Some(a), Some(b)) => !b.contains(a),
            _ => self.position > other.position,
        }
    }
}
